"""The command line: options in, frozen settings out, one call into ``job``, an exit code back.

This is, with ``options.py`` (the shared options, in groups) and ``emulator/cli.py`` (the
emulator's own command), the only code that reads options and the environment. Every error
the package raises on purpose arrives here as a ``BulkAttachError`` and leaves as one clear
line on stderr and its exit code; a traceback is only shown for a bug, with ``--debug``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from bulk_attach import __version__
from bulk_attach.api.credentials import CredentialOptions
from bulk_attach.core.planning import RetrySelection
from bulk_attach.errors import BulkAttachError, ExitCode, UsageError
from bulk_attach.files.paths import run_report_for
from bulk_attach.options import (
    CONNECTION,
    CREDENTIALS,
    OUTPUT,
    PACE,
    POLICY,
    QUOTA,
    RUN_PANEL,
    Connection,
    JobPolicy,
    Output,
    Pace,
    VerboseOpt,
    setup_logging,
    takes,
)
from bulk_attach.settings import RunSettings

app = typer.Typer(
    name="bulk-attach",
    help=(
        "Link classic-network ECS instances to VPCs in bulk (AttachClassicLinkVpc), "
        "rate-limited, quota-aware, safe to re-run."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(f"bulk-attach {__version__}")
        raise typer.Exit(0)


@app.command()
@takes(OUTPUT, CONNECTION, PACE, QUOTA, POLICY, CREDENTIALS)
def run(
    input_csv: Annotated[
        Path, typer.Argument(metavar="PAIRS.csv", help="CSV of RegionId,InstanceId,VpcId rows.")
    ],
    *,
    output: Output,
    connection: Connection,
    pace: Pace,
    quota: int,
    policy: JobPolicy,
    credentials: CredentialOptions,
) -> None:
    """Attach every (instance, VPC) pair of a CSV, writing one report row per input row.

    Running the same command again resumes: settled rows are kept, the rest run. A report
    is accepted as input too.
    """
    report = output.report
    if report is None:
        report = run_report_for(input_csv, output.report_format)
    settings = _run_settings(input_csv, report, output, connection, pace, quota, policy)
    _start_job(settings, output, connection, credentials)


@app.command()
@takes(OUTPUT, CONNECTION, PACE, QUOTA, POLICY, CREDENTIALS)
def retry(
    source_report: Annotated[
        Path, typer.Argument(metavar="REPORT", help="A report written by bulk-attach.")
    ],
    all_failed: Annotated[
        bool,
        typer.Option(
            "--all-failed", help="Every row that did not succeed.", rich_help_panel=RUN_PANEL
        ),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="CODE",
            help="Only rows with this error code (repeatable).",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    *,
    output: Output,
    connection: Connection,
    pace: Pace,
    quota: int,
    policy: JobPolicy,
    credentials: CredentialOptions,
) -> None:
    """Run again the rows of a report that did not succeed; writes a retry report and a merged view.

    By default the rows whose failure may pass (throttled, ambiguous, locked instance, bad
    instance state, skipped, quota), as of each row's latest outcome across every earlier
    retry. Every row is read back against the live link state first: one fixed by hand is
    reported already_linked and not sent. An interrupted retry resumes when run again.
    """
    selection = RetrySelection(all_failed=all_failed, only=frozenset(only or ()))
    # None: retry names its own report after the report it retries (``files/rerun.py``).
    settings = _run_settings(source_report, output.report, output, connection, pace, quota, policy)
    _start_job(settings, output, connection, credentials, selection)


def _run_settings(
    input_path: Path,
    report: Path | None,
    output: Output,
    connection: Connection,
    pace: Pace,
    quota: int,
    policy: JobPolicy,
) -> RunSettings:
    return RunSettings(
        input_path=input_path,
        report_path=report,
        report_format=output.report_format,
        default_region=connection.region,  # the job completes it from env and profile
        concurrency=pace.concurrency,
        rate=pace.rate,
        vpc_quota=quota,
        retry=policy.retry,
        max_failure_rate=policy.max_failure_rate,
        min_settled=policy.min_settled,
        drain_timeout=policy.drain_timeout,
        quiet=output.quiet,
        fresh=policy.fresh,
        wait_lock=policy.wait_lock,
    )


def _start_job(
    settings: RunSettings,
    output: Output,
    connection: Connection,
    credentials: CredentialOptions,
    selection: RetrySelection | None = None,
) -> None:
    """One call into the job, and its exit code."""
    from bulk_attach import job
    from bulk_attach.engine.signals import run_command

    setup_logging(output.verbose)
    code = run_command(
        job.main(
            settings,
            connection.client,
            credentials,
            env=dict(os.environ),
            region_option=connection.region,
            emulator=connection.emulator,
            world=connection.world,
            retry=selection,
        )
    )
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point: every expected error becomes one line and an exit code.

    Typer handles usage errors (exit 2) and ``--help`` itself; what reaches us is ours.
    """
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except BulkAttachError as error:
        sys.stderr.write(f"bulk-attach: error: {error}\n")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("bulk-attach: interrupted\n")
        sys.exit(ExitCode.SIGINT)
    except Exception as error:  # a bug: say so plainly, traceback only when asked for
        if debug:
            raise
        sys.stderr.write(
            f"bulk-attach: internal error: {type(error).__name__}: {error}\n"
            "Run again with --debug for a traceback, and please report it.\n"
        )
        sys.exit(ExitCode.INTERNAL)


_EMU = "Emulator"
_FAULTS = "Flow control and faults (deterministic under --seed)"


@app.command()
def emulator(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, rich_help_panel=_EMU)] = 8080,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Bind address (loopback unless you mean it).", rich_help_panel=_EMU
        ),
    ] = "127.0.0.1",
    world: Annotated[
        Path | None, typer.Option("--world", help="World JSON file.", rich_help_panel=_EMU)
    ] = None,
    world_from: Annotated[
        Path | None,
        typer.Option(
            "--world-from",
            metavar="PAIRS.csv",
            help="Derive (or, with --world, complete) the world from a pairs CSV.",
            rich_help_panel=_EMU,
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="Region for CSV rows without one.", rich_help_panel=_EMU),
    ] = None,
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="Error codes and statuses: '2018' (the contract page) or 'current' "
            "(the 2024 doc: all 403, OperationDenied for linked elsewhere).",
            rich_help_panel=_EMU,
        ),
    ] = "2018",
    vpc_quota: Annotated[
        int | None,
        typer.Option(
            "--vpc-quota", min=0, help="Links per VPC \\[default: 1000].", rich_help_panel=_EMU
        ),
    ] = None,
    access_key_id: Annotated[
        str | None,
        typer.Option("--access-key-id", help="\\[default: generated]", rich_help_panel=_EMU),
    ] = None,
    access_key_secret: Annotated[
        str | None,
        typer.Option("--access-key-secret", help="\\[default: generated]", rich_help_panel=_EMU),
    ] = None,
    qps: Annotated[
        float | None,
        typer.Option(
            "--qps",
            min=0.0,
            help="Requests/s per API before Throttling.User.",
            rich_help_panel=_FAULTS,
        ),
    ] = None,
    retry_after_ms: Annotated[
        int | None,
        typer.Option(
            "--retry-after-ms",
            help="Send x-acs-retry-after on throttled answers.",
            rich_help_panel=_FAULTS,
        ),
    ] = None,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0.0, rich_help_panel=_FAULTS)
    ] = 0.0,
    jitter_ms: Annotated[
        float, typer.Option("--jitter-ms", min=0.0, rich_help_panel=_FAULTS)
    ] = 0.0,
    error_rate: Annotated[
        float,
        typer.Option(
            "--error-rate", min=0.0, max=1.0, help="500 InternalError.", rich_help_panel=_FAULTS
        ),
    ] = 0.0,
    unavailable_rate: Annotated[
        float,
        typer.Option(
            "--unavailable-rate",
            min=0.0,
            max=1.0,
            help="503 ServiceUnavailable.",
            rich_help_panel=_FAULTS,
        ),
    ] = 0.0,
    drop_rate: Annotated[
        float,
        typer.Option(
            "--drop-rate", min=0.0, max=1.0, help="Dropped connections.", rich_help_panel=_FAULTS
        ),
    ] = 0.0,
    hang_rate: Annotated[
        float,
        typer.Option(
            "--hang-rate",
            min=0.0,
            max=1.0,
            help="Hang for --hang-seconds.",
            rich_help_panel=_FAULTS,
        ),
    ] = 0.0,
    hang_seconds: Annotated[
        float, typer.Option("--hang-seconds", min=0.0, rich_help_panel=_FAULTS)
    ] = 30.0,
    commit_then_error_rate: Annotated[
        float,
        typer.Option(
            "--commit-then-error-rate",
            min=0.0,
            max=1.0,
            help="Attach commits, then a 5xx.",
            rich_help_panel=_FAULTS,
        ),
    ] = 0.0,
    commit_then_drop_rate: Annotated[
        float,
        typer.Option(
            "--commit-then-drop-rate",
            min=0.0,
            max=1.0,
            help="Attach commits, then the connection drops.",
            rich_help_panel=_FAULTS,
        ),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", rich_help_panel=_FAULTS)] = 0,
    verbose: VerboseOpt = 0,
) -> None:
    """Serve a local ECS (and VPC) API emulator until Ctrl-C."""
    from bulk_attach.emulator.faults import FaultSettings
    from bulk_attach.emulator.model import DEFAULT_QUOTA, EcsModel
    from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, serve
    from bulk_attach.emulator.world import load_world, world_from_pairs

    setup_logging(verbose)
    if variant not in ("2018", "current"):
        raise UsageError(f"--variant must be '2018' or 'current', not {variant!r}")
    if (access_key_id is None) != (access_key_secret is None):
        raise UsageError("give both --access-key-id and --access-key-secret, or neither")
    quota = DEFAULT_QUOTA if vpc_quota is None else vpc_quota
    model: EcsModel | None = None
    if world is not None:
        model = load_world(world, variant=variant, default_quota=vpc_quota)
    if world_from is not None:
        model = world_from_pairs(
            world_from, model, default_region=region, variant=variant, default_quota=quota
        )
    if model is None:
        model = EcsModel(variant=variant, default_quota=quota)
    try:
        faults = FaultSettings(
            qps=qps or None,
            retry_after_ms=retry_after_ms,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            error_rate=error_rate,
            unavailable_rate=unavailable_rate,
            drop_rate=drop_rate,
            hang_rate=hang_rate,
            hang_seconds=hang_seconds,
            commit_then_error_rate=commit_then_error_rate,
            commit_then_drop_rate=commit_then_drop_rate,
        )
    except ValueError as error:  # e.g. fault rates that add up to more than 1
        raise UsageError(str(error)) from None
    settings = EmulatorSettings(
        host=host,
        port=port,
        faults=faults,
        seed=seed,
        access_keys={access_key_id: access_key_secret}
        if access_key_id and access_key_secret
        else {},
    )

    def ready(running: RunningEmulator) -> None:
        # The emulator's own credentials are printed on purpose: they exist only here.
        typer.echo(f"ECS emulator listening on {running.endpoint}  (Ctrl-C to stop)")
        typer.echo(f"  state:   {running.endpoint}/_emulator/state")
        typer.echo(f"  export ALIBABA_CLOUD_ACCESS_KEY_ID={running.access_key_id}")
        typer.echo(f"  export ALIBABA_CLOUD_ACCESS_KEY_SECRET={running.access_key_secret}")
        typer.echo(f"  bulk-attach run PAIRS.csv --endpoint {running.endpoint}")

    # SIGTERM (a service manager, `kill`) stops it as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(serve(model, settings, on_ready=ready))
    except KeyboardInterrupt:
        typer.echo("emulator stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
