"""The file-backed run: one action over the rows of an input file, into a report.

``run_job`` is the run itself, free of any terminal concerns (tests and benchmarks call
it directly): the report's lock, resume from the report and its journal, the ``Engine``
(``engine/runner.py``) with the report writer as its ``on_result``, the summary. The
commands that wrap it live in ``runs.py`` (run, retry), ``rollback.py`` (detach), with
their shared plumbing in ``commands.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import (
    CredentialsProvider,
)
from bulk_attach.core.outcomes import RowResult, Summary
from bulk_attach.engine.actions import ATTACH, Action
from bulk_attach.engine.control import RunControl, StopReason
from bulk_attach.engine.events import Listener, RunStopping
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.runner import Engine, EngineResult
from bulk_attach.engine.signals import SignalStop
from bulk_attach.engine.sources import RowSource
from bulk_attach.engine.worker import utc_now
from bulk_attach.errors import ExitCode, InputError, ReportWriteError
from bulk_attach.files.csv_input import PairsReader, read_pairs
from bulk_attach.files.lock import ReportLock
from bulk_attach.files.paths import ReportPaths, run_report_for
from bulk_attach.files.report import ReportWriter, StartedJournal, read_report, write_summary
from bulk_attach.files.resume import (
    Previous,
    ReportOpening,
    RoundPin,
    compact_report,
    prepare_report,
)
from bulk_attach.settings import ClientSettings, RunSettings

__all__ = ["JobResult", "exit_code_for", "read_input", "report_path_of", "run_job"]

log = logging.getLogger("bulk_attach.job")


@dataclass(frozen=True, slots=True)
class JobResult:
    exit_code: int
    summary: dict[str, Any]
    report_path: Path
    summary_path: Path
    stop_reason: StopReason | None


def exit_code_for(summary: Summary, reason: StopReason | None) -> int:
    if reason is not None:
        return reason.exit_code
    return ExitCode.OK if summary.unsuccessful == 0 else ExitCode.SOME_ROWS_FAILED


def read_input(settings: RunSettings) -> PairsReader:
    """The command's pairs CSV, read as the options say (``InputError`` if unusable)."""
    return read_pairs(
        settings.input_path,
        settings.default_region,
        encoding=settings.encoding,
        delimiter=settings.delimiter,
    )


def report_path_of(settings: RunSettings) -> Path:
    return settings.report_path or run_report_for(settings.input_path, settings.report_format)


async def run_job(
    settings: RunSettings,
    client_settings: ClientSettings,
    credentials: CredentialsProvider,
    *,
    listeners: Sequence[Listener] = (),
    install_signal_handlers: bool = False,
    rows: RowSource | None = None,
    command: str = "run",
    previous: Previous | None = None,
    round_pin: RoundPin | None = None,
    lock: ReportLock | None = None,
    control: RunControl | None = None,
    signals: SignalStop | None = None,
    action: Action = ATTACH,
) -> JobResult:
    """Run ``action`` (attach by default) for every row of ``settings.input_path``; one
    report row per input row.

    Resumes when the report already exists for the same input (unless ``settings.fresh``,
    or ``previous`` says otherwise). ``rows`` is the already-validated source when the
    caller has one. The report's lock is held for the whole run: taken here unless the
    caller already holds it (``lock``); a report held by another run raises
    ``LockedError`` before anything is read or sent. ``signals`` is the command's signal
    handling when the caller installed it for the whole command (with its ``control``).
    """
    paths = ReportPaths(report_path_of(settings))
    owned = lock is None
    held = lock or ReportLock(paths.lock, paths.report, command=command)
    held.acquire(settings.wait_lock)
    try:
        return await _run_locked(
            settings,
            client_settings,
            credentials,
            paths,
            listeners=listeners,
            install_signal_handlers=install_signal_handlers,
            rows=rows,
            command=command,
            previous=previous,
            round_pin=round_pin,
            control=control or RunControl(),
            signals=signals,
            action=action,
        )
    finally:
        if owned:
            held.release()


async def _run_locked(
    settings: RunSettings,
    client_settings: ClientSettings,
    credentials: CredentialsProvider,
    paths: ReportPaths,
    *,
    listeners: Sequence[Listener],
    install_signal_handlers: bool,
    rows: RowSource | None,
    command: str,
    previous: Previous | None,
    round_pin: RoundPin | None,
    control: RunControl,
    signals: SignalStop | None,
    action: Action,
) -> JobResult:
    if rows is None:
        rows = read_input(settings)  # InputError here
    if previous is None:
        previous = Previous.SET_ASIDE if settings.fresh else Previous.RESUME
    opening = prepare_report(
        paths,
        rows.fingerprint,  # exactly the bytes validated and run
        settings.report_format,
        previous=previous,
        command=command,
        round_pin=round_pin,
    )
    gate = RateGate.for_run(settings)
    started_at, started = utc_now(), time.monotonic()
    write_failure: ReportWriteError | None = None
    moved: Path | None = None

    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(EcsClient(client_settings, credentials, gate=gate))
        # Only now does the run really start: the old report is set aside (--fresh), the
        # input pinned. A run refused before this point leaves the old report untouched.
        moved = opening.begin()
        report = stack.enter_context(
            ReportWriter(
                paths.report, settings.report_format, rows.extra_columns, append=opening.resuming
            )
        )
        journal = stack.enter_context(StartedJournal(paths.started))

        def record(result: RowResult) -> None:
            nonlocal write_failure
            if write_failure is not None:
                return  # the report stopped at its last whole row; a re-run resumes from it
            try:
                report.write(result)
            except ReportWriteError as error:  # ends the run (see below)
                write_failure = error
                raise
            # Counted by the engine's summary once this returns: what this run settled.

        engine = Engine(
            client,
            settings,
            action=action,
            gate=gate,
            control=control,
            on_result=record,
            listeners=listeners,
            journal=lambda row: journal.mark(row.line, row.key),
            resume=opening.resume,
            # The reader's duplicate check leaves each instance one row to run at most.
            unique_instances=isinstance(rows, PairsReader),
        )
        try:
            await engine.run(rows, signals=signals, install_signal_handlers=install_signal_handlers)
        except ReportWriteError as error:
            # Disk full (or the like): every worker was stopped; the rows still in flight
            # are in the journal and are read back by the next run.
            write_failure = error
            control.stop(StopReason.REPORT_WRITE, str(error))
            engine.emit(RunStopping(f"{error}; stopping"))
        except InputError as error:
            # The input was rewritten under the run: nothing past the change was sent; the
            # rows before it are in the report, which a run on the new file resumes only
            # with --fresh (its input pin no longer matches).
            control.stop(StopReason.INPUT_CHANGED, str(error))
            engine.emit(RunStopping(str(error)))

    return _conclude(
        settings,
        paths,
        opening,
        _Outcome(
            this_run=engine.summary,
            control=control,
            engine=engine.result(time.monotonic() - started),
            write_failure=write_failure,
            started_at=started_at,
            duration=time.monotonic() - started,
            moved=moved,
            in_doubt=len(engine.in_doubt),
            extra_columns=rows.extra_columns,
        ),
    )


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What a run leaves for its summary."""

    this_run: Summary
    control: RunControl
    engine: EngineResult
    write_failure: ReportWriteError | None
    started_at: str
    duration: float
    moved: Path | None
    in_doubt: int
    extra_columns: tuple[str, ...]


def _conclude(
    settings: RunSettings, paths: ReportPaths, opening: ReportOpening, outcome: _Outcome
) -> JobResult:
    """Compact a resumed report, mark a finished one, and write the summary."""
    control, this_run = outcome.control, outcome.this_run
    summary = this_run
    if outcome.write_failure is not None:
        summary = Summary(read_report(paths.report), succeeded=this_run.success)
    elif opening.resuming:
        # The report now holds the old rows and this run's: keep the latest of each.
        summary = compact_report(
            paths, settings.report_format, outcome.extra_columns, succeeded=this_run.success
        )
    if control.reason is None:
        opening.finish()
    code = exit_code_for(summary, control.reason)
    stop_detail = control.detail or None
    if outcome.write_failure is not None:
        stop_detail = (
            f"{outcome.write_failure}. The report is intact up to its last whole row "
            f"({summary.total} rows); running the same command again resumes from there"
        )
    data = summary.to_dict(
        duration=outcome.duration,
        started_at=outcome.started_at,
        finished_at=utc_now(),
        vpc_quota=outcome.engine.vpc_quota,
        action=outcome.engine.action,
        flow=outcome.engine.flow,
        this_run=this_run if summary is not this_run else None,
        exit_code=code,
        stopped=str(control.reason) if control.reason else None,
        stop_detail=stop_detail,
        report=str(paths.report),
        input=str(settings.input_path),
        resumed=opening.resuming,
        read_back_in_flight=outcome.in_doubt,
        previous_report=str(outcome.moved) if outcome.moved else None,
    )
    try:
        write_summary(paths.summary, data)
    except OSError as error:
        log.warning("could not write the summary %s: %s", paths.summary, error.strerror or error)
    return JobResult(code, data, paths.report, paths.summary, control.reason)
