"""The composition root: wire reader, gates, ledger, client, pool and report for one run.

``main`` is what the CLI calls: it settles credentials and the endpoint (or starts the
embedded emulator), runs the job and prints the summary. ``run_job`` is the run itself,
free of any terminal concerns, so tests call it directly.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import (
    CredentialOptions,
    Credentials,
    resolve_credentials,
    resolve_region,
)
from bulk_attach.core.outcomes import Key, RowResult, Status, Summary
from bulk_attach.core.planning import RetrySelection
from bulk_attach.core.quotas import QuotaLedger
from bulk_attach.core.retrying import RetryPolicy
from bulk_attach.core.rows import Row
from bulk_attach.core.threshold import FailureThreshold
from bulk_attach.engine.attacher import Attacher, utc_now
from bulk_attach.engine.control import RunControl, StopReason
from bulk_attach.engine.events import Event, Listener, RowSettled, RunStopping
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.pool import Pool
from bulk_attach.engine.signals import stop_on_signals
from bulk_attach.engine.sources import RowSource, lanes, planned
from bulk_attach.errors import ExitCode
from bulk_attach.files.csv_input import read_pairs
from bulk_attach.files.report import ReportWriter, StartedJournal, started_path, write_summary
from bulk_attach.files.rerun import pick_rows, write_merged
from bulk_attach.files.resume import compact_report, prepare_report
from bulk_attach.progress import LogProgress, TqdmProgress, render_summary
from bulk_attach.settings import ClientSettings, RunSettings

__all__ = ["JobResult", "main", "run_job"]

log = logging.getLogger("bulk_attach.job")


@dataclass(frozen=True, slots=True)
class JobResult:
    exit_code: int
    summary: dict[str, Any]
    report_path: Path
    summary_path: Path
    stop_reason: StopReason | None


def summary_path_for(report_path: Path) -> Path:
    return report_path.with_name(report_path.name + ".summary.json")


def exit_code_for(summary: Summary, reason: StopReason | None) -> int:
    if reason is not None:
        return reason.exit_code
    # Duplicates do not fail a run: the row they repeat ran and has its own outcome.
    unsuccessful = summary.not_succeeded - summary.count(Status.DUPLICATE)
    return ExitCode.OK if unsuccessful == 0 else ExitCode.SOME_ROWS_FAILED


async def run_job(
    settings: RunSettings,
    client_settings: ClientSettings,
    credentials: Credentials,
    *,
    listeners: Sequence[Listener] = (),
    install_signal_handlers: bool = False,
    rows: RowSource | None = None,
    command: str = "run",
) -> JobResult:
    """Run every row of ``settings.input_path``; one report row per input row.

    Resumes when the report already exists for the same input (unless ``settings.fresh``).
    ``rows`` is the already-validated source when the caller has one (validation reads the
    whole file once; there is no need to do it twice).
    """
    if rows is None:
        rows = read_pairs(settings.input_path, settings.default_region)  # InputError here
    plan = prepare_report(
        settings.report_path,
        settings.input_path,
        settings.report_format,
        fresh=settings.fresh,
        command=command,
    )
    control = RunControl()
    gate = RateGate(settings.rate)
    ledger = QuotaLedger(settings.vpc_quota)
    summary = Summary()
    threshold = FailureThreshold(settings.max_failure_rate, settings.min_settled)
    started_at, started = utc_now(), time.monotonic()
    in_doubt: set[Key] = set()

    def emit(event: Event) -> None:
        for listener in listeners:
            listener(event)

    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(EcsClient(client_settings, credentials, gate=gate))
        report = stack.enter_context(
            ReportWriter(
                settings.report_path,
                settings.report_format,
                rows.extra_columns,
                append=plan.resuming,
            )
        )
        journal = stack.enter_context(StartedJournal(started_path(settings.report_path)))
        attacher = Attacher(
            client,
            gate,
            ledger,
            RetryPolicy(settings.retry),
            control,
            emit=emit,
            journal=lambda row: journal.mark(row.line, row.key),
            in_doubt=in_doubt,
        )

        def record(result: RowResult) -> None:
            report.write(result)
            summary.add(result)
            emit(RowSettled(result))
            if threshold.crossed(result) and control.stop(
                StopReason.THRESHOLD,
                f"{threshold.failed} of {threshold.settled} settled rows failed",
            ):
                emit(RunStopping(control.skip_message()))

        def skip(row: Row, message: str) -> RowResult:
            return attacher.skipped(row, message, started=utc_now())

        pool = Pool(
            settle=attacher.settle,
            record=record,
            skip=skip,
            control=control,
            concurrency=settings.concurrency,
        )
        signals = (
            stop_on_signals(control, pool, settings.drain_timeout, emit)
            if install_signal_handlers
            else nullcontext()
        )
        with signals:
            await pool.run(*(planned(lane, plan.planner, in_doubt) for lane in lanes(rows)))

    if plan.resuming:
        # The report now holds the old rows and this run's: keep the latest of each.
        summary = compact_report(settings.report_path, settings.report_format, rows.extra_columns)
    duration = time.monotonic() - started
    code = exit_code_for(summary, control.reason)
    data = summary.to_dict(
        duration=duration,
        started_at=started_at,
        finished_at=utc_now(),
        vpc_quota=ledger.snapshot(),
        exit_code=code,
        stopped=str(control.reason) if control.reason else None,
        stop_detail=control.detail or None,
        report=str(settings.report_path),
        input=str(settings.input_path),
        resumed=plan.resuming,
        read_back_in_flight=len(in_doubt),
        previous_report=str(plan.set_aside) if plan.set_aside else None,
    )
    summary_path = summary_path_for(settings.report_path)
    write_summary(summary_path, data)
    return JobResult(code, data, settings.report_path, summary_path, control.reason)


# --- the CLI's entry -------------------------------------------------------------------


async def main(
    settings: RunSettings,
    client_settings: ClientSettings,
    options: CredentialOptions,
    *,
    env: Mapping[str, str],
    region_option: str | None,
    emulator: bool,
    world: Path | None,
    retry: RetrySelection | None = None,
) -> int:
    """Run (or, with ``retry``, re-run the chosen rows of a report) and print the summary."""
    region = resolve_region(region_option, env, options)
    settings = replace(settings, default_region=region)
    # Validate the whole input before anything touches the network (InputError: exit 2).
    rows: RowSource
    if retry is None:
        rows = read_pairs(settings.input_path, settings.default_region)
    else:
        rows = pick_rows(settings.input_path, retry)
        if not settings.quiet:
            sys.stderr.write(
                f"retry: {rows.total} rows of {settings.input_path} selected ({retry.describe()})\n"
            )
    async with AsyncExitStack() as stack:
        if emulator:
            credentials, client_settings = await _start_emulator(
                stack, settings, client_settings, world
            )
        else:
            credentials = resolve_credentials(options, env)
        log.info("credentials from %s", credentials.source)
        listeners, close = _progress(settings, rows.total)
        try:
            result = await run_job(
                settings,
                client_settings,
                credentials,
                listeners=listeners,
                install_signal_handlers=True,
                rows=rows,
                command="run" if retry is None else "retry",
            )
        finally:
            close()
    merged = None
    if retry is not None:
        merged = write_merged(settings.input_path, result.report_path, settings.report_format)
    if not settings.quiet:
        sys.stderr.write(render_summary(result.summary) + "\n")
        sys.stderr.write(f"report: {result.report_path}\nsummary: {result.summary_path}\n")
        if merged is not None:
            sys.stderr.write(f"merged view (latest outcome and history per row): {merged}\n")
    return result.exit_code


async def _start_emulator(
    stack: AsyncExitStack,
    settings: RunSettings,
    client_settings: ClientSettings,
    world: Path | None,
) -> tuple[Credentials, ClientSettings]:
    from bulk_attach.emulator.server import EmulatorSettings, running_emulator
    from bulk_attach.emulator.world import load_world, world_from_pairs

    if world is not None:
        model = load_world(world)
    else:
        model = world_from_pairs(settings.input_path, default_region=settings.default_region)
    emu = await stack.enter_async_context(running_emulator(model, EmulatorSettings()))
    credentials = Credentials(
        access_key_id=emu.access_key_id,
        access_key_secret=emu.access_key_secret,
        security_token=None,
        source="the embedded emulator",
    )
    if not settings.quiet:
        sys.stderr.write(f"emulator: {emu.endpoint} (in-process, nothing leaves this machine)\n")
    return credentials, replace(client_settings, endpoint=emu.endpoint)


def _progress(settings: RunSettings, total: int) -> tuple[list[Listener], Callable[[], None]]:
    if settings.quiet:
        return [], lambda: None
    if sys.stderr.isatty():
        bar = TqdmProgress(total, sys.stderr)
        return [bar], bar.close
    lines = LogProgress(total, lambda text: print(text, file=sys.stderr, flush=True))
    return [lines], lines.close
