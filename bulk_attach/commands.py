"""What every command shares around its run: signals for the whole command, how the
service is reached (credentials, or the embedded emulator), progress and the summary."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bulk_attach import logs
from bulk_attach.api.credentials import (
    CredentialOptions,
    Credentials,
    CredentialsProvider,
    FetchError,
    open_credentials,
    resolve_region,
)
from bulk_attach.engine.actions import ATTACH, Action
from bulk_attach.engine.control import RunControl
from bulk_attach.engine.events import Event, Listener, RunStopping
from bulk_attach.engine.signals import Interrupted, SignalStop
from bulk_attach.engine.sources import RowSource
from bulk_attach.errors import ConfigError
from bulk_attach.files.lock import ReportLock
from bulk_attach.files.resume import (
    Previous,
    RoundPin,
)
from bulk_attach.job import JobResult, run_job
from bulk_attach.logs import EventLog
from bulk_attach.progress import LogProgress, TqdmProgress, render_summary
from bulk_attach.settings import ClientSettings, LogFormat, RunSettings

__all__ = [
    "Link",
    "announce",
    "connect",
    "guarded",
    "launch",
    "log_identity",
    "print_result",
    "progress_for",
    "say_to",
    "show_summary",
    "start",
]

log = logging.getLogger("bulk_attach.commands")


@dataclass(frozen=True, slots=True)
class Link:
    """How to reach the service: settings, credentials, or the embedded emulator."""

    client: ClientSettings
    options: CredentialOptions
    env: Mapping[str, str]
    emulator: bool = False
    world: Path | None = None
    emulator_state: Path | None = None
    region_option: str | None = None  # --region; else the environment, else the profile

    def region(self) -> str | None:
        return resolve_region(self.region_option, self.env, self.options)

    def credential_options(self) -> CredentialOptions:
        """The credential options, with STS reached as the API is (proxies, CA bundle)."""
        from bulk_attach.api.network import Network

        network = Network.from_settings(self.client.proxies, self.client.ca_bundle)
        return replace(self.options, network=network)


async def start(
    settings: RunSettings,
    link: Link,
    body: Callable[[RunSettings, SignalStop], Awaitable[int]],
) -> int:
    """A command's body, with its settings completed (the default region from the option,
    the environment or the profile) and signals handled for all of it (``guarded``)."""
    settings = replace(settings, default_region=link.region())

    async def guarded_body(sig: SignalStop) -> int:
        return await body(settings, sig)

    return await guarded(settings, guarded_body)


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
        credentials = await open_credentials(link.credential_options(), link.env)
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
    from bulk_attach.emulator.faults import FaultSettings
    from bulk_attach.emulator.server import EmulatorSettings, running_emulator
    from bulk_attach.emulator.world import WorldSpec, build_world, flow_control_of, save_state

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
    # The world's flow control, as `bulk-attach emulator --world` applies it: a demo of
    # the rate the run learns needs no second terminal.
    faults = FaultSettings() if world is None else FaultSettings().updated(flow_control_of(world))
    emu = await stack.enter_async_context(running_emulator(model, EmulatorSettings(faults=faults)))
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
