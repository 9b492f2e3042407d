"""The command line: options in, frozen settings out, one call into ``job``, an exit code back.

This is the only module that reads options and the environment. Every error the package
raises on purpose arrives here as a ``BulkAttachError`` and leaves as one clear line on
stderr and its exit code; a traceback is only shown for a bug, with ``--debug``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from bulk_attach import __version__
from bulk_attach.api.credentials import CredentialOptions
from bulk_attach.core.retrying import RetrySelection
from bulk_attach.errors import BulkAttachError, ExitCode, UsageError
from bulk_attach.files.paths import run_report_for
from bulk_attach.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MIN_SETTLED,
    DEFAULT_RATE,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_VPC_QUOTA,
    DEFAULT_WAIT_LOCK,
    AttemptSettings,
    ClientSettings,
    ReportFormat,
    RunSettings,
    SignatureVersion,
)

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

log = logging.getLogger("bulk_attach")

# --- shared option types ---------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    """Refuse inf and nan (``1e400`` parses as inf): typer's min/max let them through."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


# The most a timeout or a wait may be: larger values overflow the event loop's timers.
_MAX_SECONDS = 7 * 24 * 3600.0

_CONN = "Connection"
_CRED = "Credentials (prefer the environment or ~/.aliyun/config.json)"
_RUN = "Run"
_OUT = "Output"

EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        help="Base URL for both the ECS and VPC APIs (e.g. an emulator: http://127.0.0.1:8080).",
        rich_help_panel=_CONN,
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure-http",
        help="Allow plain http:// to a non-loopback endpoint (credentials are still signed, "
        "but traffic is readable).",
        rich_help_panel=_CONN,
    ),
]
ConnectTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        min=0.1,
        max=3600.0,
        callback=_finite,
        help="Seconds.",
        rich_help_panel=_CONN,
    ),
]
ReadTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--read-timeout",
        min=0.1,
        max=3600.0,
        callback=_finite,
        help="Seconds.",
        rich_help_panel=_CONN,
    ),
]
SignatureOpt = Annotated[
    SignatureVersion,
    typer.Option("--signature", help="Request signature version.", rich_help_panel=_CONN),
]
RegionOpt = Annotated[
    str | None,
    typer.Option(
        "--region",
        help="Region for rows without a RegionId (else ALIBABA_CLOUD_REGION_ID, else the "
        "profile's region_id).",
        rich_help_panel=_CONN,
    ),
]
AkOpt = Annotated[
    str | None,
    typer.Option(
        "--access-key-id",
        help="AccessKey ID. Prefer ALIBABA_CLOUD_ACCESS_KEY_ID.",
        rich_help_panel=_CRED,
    ),
]
SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--access-key-secret",
        help="AccessKey secret. Avoid: it lands in shell history and the process list; "
        "use ALIBABA_CLOUD_ACCESS_KEY_SECRET or a profile.",
        rich_help_panel=_CRED,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--security-token",
        help="STS token. Prefer ALIBABA_CLOUD_SECURITY_TOKEN.",
        rich_help_panel=_CRED,
    ),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="Profile in ~/.aliyun/config.json (else ALIBABA_CLOUD_PROFILE, else current).",
        rich_help_panel=_CRED,
    ),
]
ConfigFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--config-file",
        help="The aliyun CLI config file \\[default: ~/.aliyun/config.json].",
        rich_help_panel=_CRED,
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        help="Report path \\[default: beside the input: run writes INPUT.report.csv (or "
        ".jsonl), retry STEM.retry.report.csv].",
        rich_help_panel=_OUT,
    ),
]
FormatOpt = Annotated[
    ReportFormat, typer.Option("--format", help="Report format.", rich_help_panel=_OUT)
]
ConcurrencyOpt = Annotated[
    int,
    typer.Option(
        "--concurrency",
        min=1,
        max=1000,
        help="Requests in flight per region.",
        rich_help_panel=_RUN,
    ),
]
RateOpt = Annotated[
    float,
    typer.Option(
        "--rate",
        min=0.0,
        max=1e6,
        callback=_finite,
        help="Requests per second per region, retries and Describe calls included (0 = no limit).",
        rich_help_panel=_RUN,
    ),
]
QuotaOpt = Annotated[
    int,
    typer.Option("--vpc-quota", min=1, help="Classic links a VPC takes.", rich_help_panel=_RUN),
]
AttemptsOpt = Annotated[
    int,
    typer.Option("--max-attempts", min=1, help="Attach attempts per row.", rich_help_panel=_RUN),
]
FailureRateOpt = Annotated[
    float | None,
    typer.Option(
        "--max-failure-rate",
        min=0.0,
        max=1.0,
        callback=_finite,
        help="Stop starting rows once more than this share of settled rows failed (exit 4).",
        rich_help_panel=_RUN,
    ),
]
MinSettledOpt = Annotated[
    int,
    typer.Option(
        "--min-settled",
        min=1,
        help="Settled rows needed before --max-failure-rate applies.",
        rich_help_panel=_RUN,
    ),
]
DrainOpt = Annotated[
    float,
    typer.Option(
        "--drain-timeout",
        min=0.0,
        max=_MAX_SECONDS,
        callback=_finite,
        help="On Ctrl-C, seconds to let requests in flight settle.",
        rich_help_panel=_RUN,
    ),
]
WaitLockOpt = Annotated[
    float,
    typer.Option(
        "--wait-lock",
        metavar="SECONDS",
        min=0.0,
        max=_MAX_SECONDS,
        callback=_finite,
        help="When another run holds the report, wait up to this long for it instead of "
        "stopping at once with exit code 75.",
        rich_help_panel=_RUN,
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress and no summary.", rich_help_panel=_OUT)
]
VerboseOpt = Annotated[
    int,
    typer.Option(
        "--verbose", "-v", count=True, help="-v info, -vv debug logging.", rich_help_panel=_OUT
    ),
]
EmulatorOpt = Annotated[
    bool,
    typer.Option(
        "--emulator",
        help="Run against an in-process ECS emulator (world derived from the CSV, or --world).",
        rich_help_panel=_CONN,
    ),
]
WorldOpt = Annotated[
    Path | None,
    typer.Option(
        "--world", help="With --emulator: the emulator's world JSON.", rich_help_panel=_CONN
    ),
]
FreshOpt = Annotated[
    bool,
    typer.Option(
        "--fresh",
        help="Start over instead of resuming; the old report is kept under another name.",
        rich_help_panel=_RUN,
    ),
]


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Third-party debug chatter is not ours to show.
    for name in ("asyncio", "aiohttp"):
        logging.getLogger(name).setLevel(max(level, logging.INFO))


def _rate(value: float) -> float | None:
    return None if value == 0 else value


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(f"bulk-attach {__version__}")
        raise typer.Exit(0)


def _launch(
    *,
    input_csv: Path,
    selection: RetrySelection | None = None,
    report: ReportOpt = None,
    report_format: FormatOpt = ReportFormat.CSV,
    region: RegionOpt = None,
    concurrency: ConcurrencyOpt = DEFAULT_CONCURRENCY,
    rate: RateOpt = DEFAULT_RATE,
    vpc_quota: QuotaOpt = DEFAULT_VPC_QUOTA,
    max_attempts: AttemptsOpt = DEFAULT_MAX_ATTEMPTS,
    max_failure_rate: FailureRateOpt = None,
    min_settled: MinSettledOpt = DEFAULT_MIN_SETTLED,
    drain_timeout: DrainOpt = DEFAULT_DRAIN_TIMEOUT,
    fresh: FreshOpt = False,
    wait_lock: WaitLockOpt = DEFAULT_WAIT_LOCK,
    endpoint: EndpointOpt = None,
    insecure_http: InsecureOpt = False,
    connect_timeout: ConnectTimeoutOpt = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: ReadTimeoutOpt = DEFAULT_READ_TIMEOUT,
    signature: SignatureOpt = SignatureVersion.V3,
    access_key_id: AkOpt = None,
    access_key_secret: SecretOpt = None,
    security_token: TokenOpt = None,
    profile: ProfileOpt = None,
    config_file: ConfigFileOpt = None,
    emulator: EmulatorOpt = False,
    world: WorldOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Options to frozen settings, one call into the job, and its exit code."""
    from bulk_attach import job
    from bulk_attach.engine.signals import run_command

    _setup_logging(verbose)
    if world is not None and not emulator:
        raise UsageError("--world is only meaningful with --emulator")
    if emulator and endpoint is not None:
        raise UsageError("--emulator and --endpoint cannot be used together")
    options = CredentialOptions(
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        security_token=security_token,
        profile=profile,
        config_path=config_file,
    )
    settings = RunSettings(
        input_path=input_csv,
        # retry names its own report after the report it retries (``files/rerun.py``).
        report_path=report
        if report is not None or selection is not None
        else run_report_for(input_csv, report_format),
        report_format=report_format,
        default_region=region,
        concurrency=concurrency,
        rate=_rate(rate),
        vpc_quota=vpc_quota,
        attempts=AttemptSettings(max_attempts=max_attempts),
        max_failure_rate=max_failure_rate,
        min_settled=min_settled,
        drain_timeout=drain_timeout,
        quiet=quiet,
        fresh=fresh,
        wait_lock=wait_lock,
    )
    client = ClientSettings(
        endpoint=endpoint,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        signature=signature,
        allow_insecure_http=insecure_http,
    )
    code = run_command(
        job.main(
            settings,
            client,
            options,
            env=dict(os.environ),
            region_option=region,
            emulator=emulator,
            world=world,
            retry=selection,
        )
    )
    raise typer.Exit(code)


# Parameters of _launch that are not command-line options.
_NOT_OPTIONS = frozenset({"input_csv", "selection"})


def _takes_job_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a job command (run, retry) every option ``_launch`` declares, declared once.

    Typer reads a command's options from its signature; the command's own parameters come
    first, then ``_launch``'s keyword-only options (annotations evaluated, as typer wants).
    """
    own = inspect.signature(command, eval_str=True)
    mine = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = [
        p
        for name, p in inspect.signature(_launch, eval_str=True).parameters.items()
        if name not in own.parameters and name not in _NOT_OPTIONS
    ]
    command.__signature__ = own.replace(parameters=[*mine, *shared])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in (*mine, *shared)} | {"return": None}
    return command


@app.command()
@_takes_job_options
def run(
    input_csv: Annotated[
        Path, typer.Argument(metavar="PAIRS.csv", help="CSV of RegionId,InstanceId,VpcId rows.")
    ],
    **options: Any,
) -> None:
    """Attach every (instance, VPC) pair of a CSV, writing one report row per input row.

    Running the same command again resumes: settled rows are kept, the rest run. A report
    is accepted as input too.
    """
    _launch(input_csv=input_csv, **options)


@app.command()
@_takes_job_options
def retry(
    source_report: Annotated[
        Path, typer.Argument(metavar="REPORT", help="A report written by bulk-attach.")
    ],
    all_failed: Annotated[
        bool,
        typer.Option("--all-failed", help="Every row that did not succeed.", rich_help_panel=_RUN),
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="CODE",
            help="Only rows with this error code (repeatable).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    **options: Any,
) -> None:
    """Run again the rows of a report that did not succeed; writes a retry report and a merged view.

    By default the rows whose failure may pass (throttled, ambiguous, locked instance, bad
    instance state, skipped, quota), as of each row's latest outcome across every earlier
    retry. Every row is read back against the live link state first: one fixed by hand is
    reported already_linked and not sent. An interrupted retry resumes when run again.
    """
    selection = RetrySelection(all_failed=all_failed, only=frozenset(only or ()))
    _launch(input_csv=source_report, selection=selection, **options)


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

    _setup_logging(verbose)
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
