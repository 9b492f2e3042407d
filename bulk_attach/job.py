"""The composition root: wire reader, gates, ledger, client, pool and report for one run.

``main`` is what the CLI calls: it settles credentials and the endpoint (or starts the
embedded emulator), runs the job and prints the summary. ``run_job`` is the run itself,
free of any terminal concerns, so tests call it directly.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bulk_attach import logs
from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import (
    CredentialOptions,
    Credentials,
    CredentialsProvider,
    FetchError,
    open_credentials,
    resolve_region,
)
from bulk_attach.core.outcomes import RowResult, Summary
from bulk_attach.core.retrying import RetrySelection
from bulk_attach.engine.actions import ATTACH, Action
from bulk_attach.engine.control import RunControl, StopReason
from bulk_attach.engine.events import Event, Listener, RunStopping
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.runner import Engine, EngineResult
from bulk_attach.engine.signals import Interrupted, SignalStop
from bulk_attach.engine.sources import RowSource
from bulk_attach.engine.worker import utc_now
from bulk_attach.errors import ConfigError, ExitCode, InputError, ReportWriteError, UsageError
from bulk_attach.files.csv_input import PairsReader, read_pairs
from bulk_attach.files.lock import ReportLock
from bulk_attach.files.paths import ReportPaths, run_report_for
from bulk_attach.files.report import ReportWriter, StartedJournal, read_report, write_summary
from bulk_attach.files.rerun import (
    RETRY_COMMAND,
    PickedRows,
    fold_round,
    pick_rows,
    plan_round,
    retry_family,
)
from bulk_attach.files.resume import (
    Previous,
    ReportOpening,
    RoundPin,
    compact_report,
    prepare_report,
)
from bulk_attach.logs import EventLog
from bulk_attach.progress import LogProgress, TqdmProgress, render_summary
from bulk_attach.settings import ClientSettings, LogFormat, RunSettings

__all__ = [
    "JobResult",
    "Link",
    "announce",
    "connect",
    "guarded",
    "launch",
    "main",
    "print_result",
    "progress_for",
    "read_input",
    "run_job",
    "say_to",
    "show_summary",
]

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
    gate = RateGate(settings.rate)
    this_run = Summary(succeeded=action.succeeded)
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
            this_run.add(result)

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
            this_run=this_run,
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
    emulator_state: Path | None = None,
) -> int:
    """Run (or, with ``retry``, re-run the chosen rows of a report) and print the summary.

    Signals are handled for the whole command: Ctrl-C while waiting for the lock or while
    the input is validated ends it at once (nothing was sent), and during the run it stops
    sending. The report's lock is taken first: a second run of the same job stops there
    (exit 75), before it reads, validates or sends anything.
    """
    region = resolve_region(region_option, env, options)
    settings = replace(settings, default_region=region)
    link = Link(client_settings, options, env, emulator, world, emulator_state)
    if retry is not None:
        chosen = retry
        return await guarded(settings, lambda sig: _retry(settings, link, chosen, sig))
    return await guarded(settings, lambda sig: _run(settings, link, sig))


async def guarded(settings: RunSettings, body: Callable[[SignalStop], Awaitable[int]]) -> int:
    """Run a command's body with signals handled for all of it: a signal before its run
    starts (waiting for the lock, validating the input) ends it at once, nothing sent."""
    say = say_to(settings)

    def early(event: Event) -> None:  # before the run's own listeners exist
        if isinstance(event, RunStopping):
            say(f"stopping: {event.reason}")

    with SignalStop(RunControl(), settings.drain_timeout, emit=early) as sig:
        try:
            return await body(sig)
        except Interrupted as stop:
            sys.stderr.write(
                f"bulk-attach: {stop.reason} before the run started; nothing was sent\n"
            )
            return stop.exit_code


async def _run(settings: RunSettings, link: Link, sig: SignalStop) -> int:
    paths = ReportPaths(report_path_of(settings))
    settings = replace(settings, report_path=paths.report)
    lock = ReportLock(paths.lock, paths.report, command="run")
    await sig.off_loop(lock.acquire, settings.wait_lock)
    with lock:
        # Validate the whole input before anything touches the network (InputError: exit 2).
        rows = await sig.off_loop(read_input, settings)
        result = await launch(settings, link, rows, lock=lock, signals=sig)
    print_result(settings, result)
    return result.exit_code


@dataclass(frozen=True, slots=True)
class Link:
    """How to reach the service: settings, credentials, or the embedded emulator."""

    client: ClientSettings
    options: CredentialOptions
    env: Mapping[str, str]
    emulator: bool
    world: Path | None
    emulator_state: Path | None = None


async def _retry(
    settings: RunSettings, link: Link, selection: RetrySelection, sig: SignalStop
) -> int:
    """One round of retry (see ``files/rerun.py``), under the source report's lock."""
    family = retry_family(settings.input_path, settings.report_format, settings.report_path)
    source = family.source
    say = say_to(settings)
    lock = ReportLock(source.lock, source.report, command=RETRY_COMMAND)
    await sig.off_loop(lock.acquire, settings.wait_lock)
    with lock:
        rnd = plan_round(family, selection)
        rows = await sig.off_loop(pick_rows, rnd.base, selection)
        if family.redirected:
            say(f"retry: {family.given} belongs to {source.report}; retrying that report")
        if rnd.folded is not None:
            say(f"retry: the previous round's outcomes were folded into {rnd.folded}")
        _check_only(selection, rows, rnd.base)
        if rows.total == 0:
            return _nothing_to_retry(rows, rnd.base, say)
        what = "resuming the interrupted round" if rnd.resume else f"round {rnd.pin.round}"
        say(f"retry: {rows.total} rows of {rnd.base} selected ({selection.describe()}); {what}")
        settings = replace(settings, input_path=rnd.base, report_path=family.retry.report)
        result = await launch(
            settings,
            link,
            rows,
            lock=lock,
            signals=sig,
            command=RETRY_COMMAND,
            previous=Previous.RESUME if rnd.resume else Previous.REPLACE,
            round_pin=rnd.pin,
        )
        merged: Path | None = None
        code = result.exit_code
        if result.stop_reason is None:
            merged = fold_round(family, rnd.base, rnd.pin.source, rnd.pin.round)
            # The exit code speaks for the whole report: 0 once every row has succeeded.
            code = exit_code_for(Summary(read_report(merged)), None)
    print_result(settings, result, exit_code=code)
    if merged is not None:
        say(f"merged view (latest outcome and history per row): {merged}")
    else:
        say(
            "merged view not updated: the round was stopped; run the same command again "
            "to resume it"
        )
    return code


def _check_only(selection: RetrySelection, rows: PickedRows, base: Path) -> None:
    if not selection.only:
        return
    absent = sorted(selection.only - set(rows.codes))
    if not absent:
        return
    present = ", ".join(f"{code} ({n})" for code, n in rows.codes.most_common()) or "none"
    if len(absent) == len(selection.only):
        raise UsageError(
            f"--only {', '.join(absent)}: no row of {base} that did not succeed has "
            f"{'this code' if len(absent) == 1 else 'these codes'}; the codes there: {present}"
        )
    sys.stderr.write(
        f"bulk-attach: warning: --only {', '.join(absent)}: no row of {base} has "
        f"{'this code' if len(absent) == 1 else 'these codes'}\n"
    )


def _nothing_to_retry(rows: PickedRows, base: Path, say: Callable[[str], None]) -> int:
    if rows.not_succeeded == 0:
        say(f"retry: nothing to retry: every row of {base} has succeeded")
        return ExitCode.OK
    codes = ", ".join(f"{code} ({n})" for code, n in rows.codes.most_common())
    sys.stderr.write(
        f"bulk-attach: nothing to retry: {rows.not_succeeded} rows of {base} did not succeed, "
        f"and the selection takes none of them ({codes}). --all-failed sends them all, "
        "--only CODE the rows with that code.\n"
    )
    return ExitCode.SOME_ROWS_FAILED


def say_to(settings: RunSettings) -> Callable[[str], None]:
    def say(text: str) -> None:
        if settings.quiet:
            return
        if settings.log_format is LogFormat.JSON:
            logs.record("note", text)
        else:
            sys.stderr.write(text + "\n")

    return say


async def launch(
    settings: RunSettings,
    link: Link,
    rows: RowSource,
    *,
    lock: ReportLock,
    signals: SignalStop,
    command: str = "run",
    previous: Previous | None = None,
    round_pin: RoundPin | None = None,
    action: Action = ATTACH,
) -> JobResult:
    """Credentials (or the embedded emulator), progress, and the run itself."""
    async with AsyncExitStack() as stack:
        credentials, client_settings = await connect(stack, settings, link)
        announce(command, settings, rows, client_settings.endpoint)
        listeners, close = progress_for(settings, rows.total)
        try:
            return await run_job(
                settings,
                client_settings,
                credentials,
                listeners=listeners,
                install_signal_handlers=True,
                rows=rows,
                command=command,
                previous=previous,
                round_pin=round_pin,
                lock=lock,
                control=signals.control,
                signals=signals,
                action=action,
            )
        finally:
            close()


async def connect(
    stack: AsyncExitStack, settings: RunSettings, link: Link
) -> tuple[CredentialsProvider, ClientSettings]:
    """The credentials and client settings a command calls the service with: resolved from
    options, environment and profile (the first fetch done, so a source that does not work
    stops the command here: ``ConfigError``, exit 3), or the embedded emulator's (started
    on ``stack``). With ``-v`` the source and the caller's identity are logged."""
    credentials: CredentialsProvider
    if link.emulator:
        credentials, client_settings = await _start_emulator(
            stack, settings, link.client, link.world, link.emulator_state
        )
    else:
        credentials = await open_credentials(link.options, link.env)
        stack.push_async_callback(credentials.aclose)
        client_settings = link.client
    log.info("credentials from %s", credentials.source)
    if log.isEnabledFor(logging.INFO):
        await log_identity(credentials, link.env, client_settings)
    return credentials, client_settings


async def log_identity(
    credentials: CredentialsProvider, env: Mapping[str, str], client_settings: ClientSettings
) -> None:
    """Log who the run acts as (STS GetCallerIdentity); a failure is a warning, not a stop:
    the identity is information, and the ECS calls say soon enough if the keys are bad."""
    from bulk_attach.api.identity import caller_identity

    try:
        identity = await caller_identity(credentials, env, client_settings)
    except (FetchError, ConfigError) as error:  # only loses the log line
        log.warning("could not tell who the credentials belong to: %s", error)
        return
    log.info("acting as %s", identity)


def print_result(settings: RunSettings, result: JobResult, *, exit_code: int | None = None) -> None:
    if settings.quiet:
        return
    summary = dict(result.summary)
    if exit_code is not None:
        summary["exit_code"] = exit_code
    show_summary(settings, summary, render_summary, result.report_path, result.summary_path)


def show_summary(
    settings: RunSettings,
    summary: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
    report: Path,
    summary_path: Path,
) -> None:
    """The final summary: for a person (per-VPC lines capped), or one JSON ``summary`` event
    holding all of it (every VPC)."""
    if settings.log_format is LogFormat.JSON:
        logs.record(
            "summary",
            f"{summary.get('total', 0)} rows; exit code {summary.get('exit_code')}",
            **{
                **summary,
                "report": str(report),
                "summary_file": str(summary_path),
            },
        )
        return
    sys.stderr.write(render(summary) + "\n")
    sys.stderr.write(f"report: {report}\nsummary: {summary_path}\n")


async def _start_emulator(
    stack: AsyncExitStack,
    settings: RunSettings,
    client_settings: ClientSettings,
    world: Path | None,
    state: Path | None = None,
) -> tuple[Credentials, ClientSettings]:
    from bulk_attach.emulator.server import EmulatorSettings, running_emulator
    from bulk_attach.emulator.world import WorldSpec, build_world, save_state

    # The world as `bulk-attach emulator` builds it: from --world alone, else from the input,
    # read by the run's own reader (a retry's input is the report it retries). A state file
    # left by an earlier command replaces --world; the input still adds what it lacks.
    spec = (
        WorldSpec(world=world, state=state)
        if world is not None
        else WorldSpec(
            pairs=settings.input_path,
            default_region=settings.default_region,
            encoding=settings.encoding,
            delimiter=settings.delimiter,
            state=state,
        )
    )
    resuming = spec.resumes_state
    model = build_world(spec)
    emu = await stack.enter_async_context(running_emulator(model, EmulatorSettings()))
    if state is not None:
        say_to(settings)(
            f"emulator state: {state} ({'as the last command left it' if resuming else 'new'}; "
            "saved when this command ends)"
        )

        def save() -> None:  # on the way out, however the command ends
            try:
                save_state(emu.model, state)
            except OSError as error:
                log.warning("could not save the emulator state %s: %s", state, error)

        stack.callback(save)
    credentials = Credentials(
        access_key_id=emu.access_key_id,
        access_key_secret=emu.access_key_secret,
        security_token=None,
        source="the embedded emulator",
    )
    say_to(settings)(f"emulator: {emu.endpoint} (in-process, nothing leaves this machine)")
    return credentials, replace(client_settings, endpoint=emu.endpoint)


def progress_for(settings: RunSettings, total: int) -> tuple[list[Listener], Callable[[], None]]:
    """The listeners for a command's rows: the event log (retries, settled rows, throttling,
    stops), and progress (a bar on a terminal, periodic lines elsewhere and in JSON); and
    the function that closes them."""
    if settings.quiet:
        return [], lambda: None
    if sys.stderr.isatty() and settings.log_format is LogFormat.TEXT:
        bar = TqdmProgress(total, sys.stderr)
        return [EventLog(stops=False), bar], bar.close
    lines = LogProgress(
        total,
        lambda text: logs.record("progress", text),
        interval=settings.progress_interval,
        figures=lambda text, figures: logs.record("progress", text, **figures),
    )
    return [EventLog(), lines], lines.close


def announce(command: str, settings: RunSettings, rows: RowSource, endpoint: str | None) -> None:
    """The start event: what runs, on what, with the options that matter (never a secret:
    settings hold none, and an endpoint's user and password are left out)."""
    if settings.quiet:
        return
    dialect = getattr(rows, "dialect", None)
    fields: dict[str, Any] = {
        "command": command,
        "input": str(settings.input_path),
        "report": str(settings.report_path) if settings.report_path else None,
        "rows": rows.total,
        "input_format": dialect,
        "endpoint": _without_userinfo(endpoint),
        "region": settings.default_region,
        "concurrency": settings.concurrency,
        "rate": settings.rate,
        "vpc_quota": settings.vpc_quota,
        "max_attempts": settings.attempts.max_attempts,
        "max_failure_rate": settings.max_failure_rate,
        "fresh": settings.fresh,
    }
    text = f"{command}: {rows.total} rows of {settings.input_path}" + (
        f" ({dialect})" if dialect else ""
    )
    logs.record("start", text, level=logging.INFO, **fields)


def _without_userinfo(endpoint: str | None) -> str | None:
    if not endpoint:
        return endpoint
    scheme, sep, rest = endpoint.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}"
