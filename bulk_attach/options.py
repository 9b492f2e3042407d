"""The command line's shared options, declared once, in groups a command takes whole.

An :class:`OptionGroup` is a builder function whose keyword-only parameters are typer
options (``Annotated`` declarations) and whose result is one frozen settings object. A
command lists the groups it needs with :func:`takes`; it gets their options on its command
line (and in ``--help``), and receives each group's built object in the parameter named
after the group::

    @app.command()
    @takes(OUTPUT, CONNECTION, CREDENTIALS, PACE)
    def plan(
        input_csv: Annotated[Path, typer.Argument(metavar="PAIRS.csv")],
        *,
        output: Output,
        connection: Connection,
        credentials: CredentialOptions,
        pace: Pace,
    ) -> None: ...

Groups appear in ``--help`` in the order they are declared here (so every command lays out
its panels alike), whatever order a command lists them in. Usage checks that concern one
group (``--world`` needs ``--emulator``) live in its builder and raise ``UsageError``.

Like ``cli.py``, this module is the command line: nothing below it reads options.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import os
import types
import typing
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import typer

from bulk_attach import logs
from bulk_attach.api.credentials import CredentialOptions
from bulk_attach.errors import UsageError
from bulk_attach.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MIN_SETTLED,
    DEFAULT_PROGRESS_INTERVAL,
    DEFAULT_RATE,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_THROTTLE_TIMEOUT,
    DEFAULT_VPC_QUOTA,
    DEFAULT_WAIT_LOCK,
    AttemptSettings,
    ClientSettings,
    EndpointType,
    LogFormat,
    ProxySettings,
    ReportFormat,
    SignatureVersion,
)

__all__ = [
    "CONNECTION",
    "CONNECTION_PANEL",
    "CREDENTIALS",
    "CREDENTIALS_PANEL",
    "INPUT",
    "INPUT_PANEL",
    "OUTPUT",
    "OUTPUT_PANEL",
    "PACE",
    "POLICY",
    "QUOTA",
    "RUN_PANEL",
    "Connection",
    "InputOptions",
    "JobPolicy",
    "OptionGroup",
    "Output",
    "Pace",
    "VerboseOpt",
    "ca_bundle_from",
    "finite",
    "proxies_from",
    "setup_logging",
    "takes",
]

T = TypeVar("T")

# --- the mechanism ---------------------------------------------------------------------

_ranks = itertools.count()


@dataclass(frozen=True, slots=True, eq=False)
class OptionGroup(Generic[T]):
    """Options declared once (``build``'s keyword-only parameters) and the object they make.

    A command taking the group receives ``build(**values)`` in its parameter ``name``.
    """

    name: str
    build: Callable[..., T]
    # Declaration order is the order in --help, for every command alike.
    rank: int = field(default_factory=_ranks.__next__, init=False)

    @property
    def parameters(self) -> tuple[inspect.Parameter, ...]:
        parameters = tuple(_evaluated(self.build).parameters.values())
        for p in parameters:
            if p.kind is not p.KEYWORD_ONLY or p.default is p.empty:
                raise TypeError(
                    f"option group {self.name}: {p.name} must be keyword-only, with a default"
                )
        return parameters

    def __repr__(self) -> str:
        return f"<OptionGroup {self.name}: {', '.join(p.name for p in self.parameters)}>"


def takes(*groups: OptionGroup[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the options of ``groups``, and their built objects by group name.

    Typer reads a command's options from its signature: the command's own parameters before
    ``*`` come first, then every group's options (annotations evaluated, as typer wants),
    then its own keyword-only ones. The parameters that receive groups' objects
    (``connection: Connection``) are not options.
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        names = [group.name for group in groups]
        own = _evaluated(command, skip=names)
        missing = [name for name in names if name not in own.parameters]
        if missing:
            raise TypeError(
                f"{command.__name__} takes the option group(s) {missing} but has no parameter "
                "of that name to receive them"
            )
        ordered = sorted(groups, key=lambda group: group.rank)
        mine = [p for p in own.parameters.values() if p.name not in names]
        # The command's arguments and options before ``*`` first, its keyword-only ones last.
        first = [p for p in mine if p.kind is not p.KEYWORD_ONLY]
        last = [p for p in mine if p.kind is p.KEYWORD_ONLY]
        shared = [p for group in ordered for p in group.parameters]
        clashes = sorted(
            name for name, n in Counter(p.name for p in (*mine, *shared)).items() if n > 1
        )
        clashes += sorted(set(names) & {p.name for p in shared})
        if clashes:
            raise TypeError(f"{command.__name__}: option names declared twice: {clashes}")

        @functools.wraps(command)
        def invoke(**values: Any) -> None:
            for group in ordered:  # in help order, so usage errors come in a fixed order
                options = {p.name: values.pop(p.name) for p in group.parameters}
                values[group.name] = group.build(**options)
            command(**values)

        visible = [*first, *shared, *last]
        invoke.__signature__ = own.replace(parameters=visible)  # type: ignore[attr-defined]
        invoke.__annotations__ = {p.name: p.annotation for p in visible} | {"return": None}
        return invoke

    return decorate


def _evaluated(function: Callable[..., Any], skip: Collection[str] = ()) -> inspect.Signature:
    """``function``'s signature, its parameters' annotations evaluated (typer reads them).

    Not those in ``skip``, nor the return annotation: a group's object is only read by type
    checkers, and its type may be imported for them alone (to keep ``--help`` fast).
    """
    raw = inspect.signature(function)
    wanted = types.SimpleNamespace(
        __annotations__={
            p.name: p.annotation
            for p in raw.parameters.values()
            if p.name not in skip and p.annotation is not p.empty
        }
    )
    namespace = getattr(inspect.unwrap(function), "__globals__", {})
    hints = typing.get_type_hints(wanted, globalns=namespace, include_extras=True)
    return raw.replace(
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation)) for p in raw.parameters.values()
        ]
    )


# --- helpers shared by every command ----------------------------------------------------


def finite(value: float | None) -> float | None:
    """Refuse inf and nan (``1e400`` parses as inf): typer's min/max let them through."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def setup_logging(verbose: int, log_format: LogFormat = LogFormat.TEXT) -> None:
    logs.setup_logging(verbose, log_format)


# The most a timeout or a wait may be: larger values overflow the event loop's timers.
MAX_SECONDS = 7 * 24 * 3600.0

CONNECTION_PANEL = "Connection"
CREDENTIALS_PANEL = "Credentials (default: the official chain; see README, Credentials)"
RUN_PANEL = "Run"
OUTPUT_PANEL = "Output"

VerboseOpt = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        help="-v info, -vv debug logging.",
        rich_help_panel=OUTPUT_PANEL,
    ),
]

# --- output ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """Where the report goes, in which format, and how much the terminal is told."""

    report: Path | None = None  # None: the command's default beside its input
    report_format: ReportFormat = ReportFormat.CSV
    quiet: bool = False
    verbose: int = 0
    log_format: LogFormat = LogFormat.TEXT
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL


def _output(
    *,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Report path \\[default: beside the input: run writes INPUT.report.csv (or "
            ".jsonl), retry STEM.retry.report.csv].",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    report_format: Annotated[
        ReportFormat,
        typer.Option("--format", help="Report format.", rich_help_panel=OUTPUT_PANEL),
    ] = ReportFormat.CSV,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress and no summary.", rich_help_panel=OUTPUT_PANEL
        ),
    ] = False,
    verbose: VerboseOpt = 0,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            "--log-format",
            help="stderr as timestamped text lines, or one JSON object per line (for log "
            "shippers).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = LogFormat.TEXT,
    progress_interval: Annotated[
        float,
        typer.Option(
            "--progress-interval",
            metavar="SECONDS",
            min=0.1,
            max=MAX_SECONDS,
            callback=finite,
            help="Seconds between progress lines when stderr is not a terminal.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = DEFAULT_PROGRESS_INTERVAL,
) -> Output:
    return Output(
        report=report,
        report_format=report_format,
        quiet=quiet,
        verbose=verbose,
        log_format=log_format,
        progress_interval=progress_interval,
    )


OUTPUT = OptionGroup("output", _output)

# --- input: how a pairs CSV is read ------------------------------------------------------

INPUT_PANEL = "Input"

_DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|", "\\t": "\t"}


@dataclass(frozen=True, slots=True)
class InputOptions:
    """How a pairs CSV is read: None means found out from the file (see ``files/csv_input``)."""

    delimiter: str | None = None
    encoding: str | None = None


def _input(
    *,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter",
            metavar="CHAR",
            help="Field separator: a character, or comma, semicolon, tab, pipe \\[default: "
            "an Excel sep= first line's, else the one that splits the header].",
            rich_help_panel=INPUT_PANEL,
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="Encoding of a file without a byte-order mark, e.g. gbk, cp1252, utf-16-le "
            "\\[default: utf-8; a file with a mark is read as its mark says].",
            rich_help_panel=INPUT_PANEL,
        ),
    ] = None,
) -> InputOptions:
    if delimiter is not None:
        delimiter = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
        if len(delimiter) != 1 or delimiter in '"\r\n' or delimiter.isalnum():
            raise UsageError(
                f"--delimiter {delimiter!r}: one character (not a letter, digit, quote or line "
                "break), or comma, semicolon, tab, pipe"
            )
    if encoding is not None:
        try:
            "".encode(encoding)  # LookupError for unknown names and bytes-to-bytes codecs
        except LookupError:
            raise UsageError(
                f"--encoding {encoding!r}: not a text encoding Python knows "
                "(e.g. utf-8, gbk, cp1252, utf-16-le)"
            ) from None
    return InputOptions(delimiter=delimiter, encoding=encoding)


INPUT = OptionGroup("reading", _input)

# --- connection --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """Where calls go: the client's settings and default region, or the embedded emulator."""

    client: ClientSettings = field(default_factory=ClientSettings)
    region: str | None = None  # the --region option (the job resolves env and profile)
    emulator: bool = False
    world: Path | None = None  # with emulator: its world JSON (else derived from the input)
    emulator_state: Path | None = None  # with emulator: the world kept across commands


def _env(env: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` set to something (an empty variable counts as unset)."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def proxies_from(env: Mapping[str, str]) -> ProxySettings:
    """The proxies the environment names; the lower-case spelling first, as curl and
    Python's urllib read them. ``api/network.py`` decides which applies where."""
    return ProxySettings(
        https=_env(env, "https_proxy", "HTTPS_PROXY"),
        http=_env(env, "http_proxy", "HTTP_PROXY"),
        no_proxy=_env(env, "no_proxy", "NO_PROXY") or "",
    )


CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


def ca_bundle_from(option: Path | None, env: Mapping[str, str]) -> Path | None:
    """``--ca-bundle``, else ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``; None: the
    system's CAs. A path that does not exist is a usage error naming where it came from."""
    if option is not None:
        path, source = option, "--ca-bundle"
    else:
        for name in CA_BUNDLE_VARIABLES:
            value = _env(env, name)
            if value:
                path, source = Path(value), name
                break
        else:
            return None
    if not path.exists():
        raise UsageError(f"{source} {str(path)!r}: no such file or directory")
    return path


def _connection(
    *,
    region: Annotated[
        str | None,
        typer.Option(
            "--region",
            help="Region for rows without a RegionId (else ALIBABA_CLOUD_REGION_ID, else the "
            "profile's region_id).",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="Base URL for both the ECS and VPC APIs (e.g. an emulator: "
            "http://127.0.0.1:8080).",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = None,
    ecs_endpoint: Annotated[
        str | None,
        typer.Option(
            "--ecs-endpoint",
            metavar="URL",
            help="Base URL for the ECS API alone (before --endpoint).",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = None,
    vpc_endpoint: Annotated[
        str | None,
        typer.Option(
            "--vpc-endpoint",
            metavar="URL",
            help="Base URL for the VPC API alone (before --endpoint).",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = None,
    endpoint_type: Annotated[
        EndpointType,
        typer.Option(
            "--endpoint-type",
            help="Without an endpoint option: the official public hosts, or the private ones "
            "reachable from inside a VPC (ecs-vpc.<region>.aliyuncs.com), as the aliyun CLI's.",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = EndpointType.PUBLIC,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            metavar="PEM",
            help="Trust these CAs (a PEM file) instead of the system's, e.g. a TLS-inspecting "
            "proxy's \\[default: SSL_CERT_FILE, else REQUESTS_CA_BUNDLE]. Proxies come from "
            "HTTPS_PROXY, HTTP_PROXY and NO_PROXY.",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = None,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http",
            help="Allow plain http:// to a non-loopback endpoint (credentials are still "
            "signed, but traffic is readable).",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = False,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout",
            min=0.1,
            max=3600.0,
            callback=finite,
            help="Seconds.",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: Annotated[
        float,
        typer.Option(
            "--read-timeout",
            min=0.1,
            max=3600.0,
            callback=finite,
            help="Seconds.",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = DEFAULT_READ_TIMEOUT,
    signature: Annotated[
        SignatureVersion,
        typer.Option(
            "--signature", help="Request signature version.", rich_help_panel=CONNECTION_PANEL
        ),
    ] = SignatureVersion.V3,
    emulator: Annotated[
        bool,
        typer.Option(
            "--emulator",
            help="Run against an in-process ECS emulator (world derived from the CSV, or --world).",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = False,
    world: Annotated[
        Path | None,
        typer.Option(
            "--world",
            help="With --emulator: the emulator's world JSON.",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = None,
    emulator_state: Annotated[
        Path | None,
        typer.Option(
            "--emulator-state",
            metavar="FILE",
            help="With --emulator: keep the emulated world in FILE across commands (loaded "
            "if it exists, saved when the command ends), so a resume or a retry sees what "
            "the last run did.",
            rich_help_panel=CONNECTION_PANEL,
        ),
    ] = None,
) -> Connection:
    if world is not None and not emulator:
        raise UsageError("--world is only meaningful with --emulator")
    if emulator_state is not None and not emulator:
        raise UsageError("--emulator-state is only meaningful with --emulator")
    given = [
        name
        for name, value in (
            ("--endpoint", endpoint),
            ("--ecs-endpoint", ecs_endpoint),
            ("--vpc-endpoint", vpc_endpoint),
        )
        if value is not None
    ]
    if emulator and given:
        raise UsageError(f"--emulator and {given[0]} cannot be used together")
    env = os.environ
    client = ClientSettings(
        endpoint=endpoint,
        ecs_endpoint=ecs_endpoint,
        vpc_endpoint=vpc_endpoint,
        endpoint_type=endpoint_type,
        proxies=proxies_from(env),
        ca_bundle=ca_bundle_from(ca_bundle, env),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        signature=signature,
        allow_insecure_http=insecure_http,
    )
    return Connection(
        client=client,
        region=region,
        emulator=emulator,
        world=world,
        emulator_state=emulator_state,
    )


CONNECTION = OptionGroup("connection", _connection)

# --- how fast: requests in flight and per second ----------------------------------------


@dataclass(frozen=True, slots=True)
class Pace:
    """Requests in flight and per second, per region."""

    concurrency: int = DEFAULT_CONCURRENCY
    rate: float | None = DEFAULT_RATE  # None: no limit


def _pace(
    *,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            min=1,
            max=1000,
            help="Requests in flight per region.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = DEFAULT_CONCURRENCY,
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            min=0.0,
            max=1e6,
            callback=finite,
            help="At most this many requests per second per region, retries and Describe "
            "calls included; under it each API's pace follows what the service accepts "
            "(0 = no ceiling: the pace is found from throttling alone).",
            rich_help_panel=RUN_PANEL,
        ),
    ] = DEFAULT_RATE,
) -> Pace:
    return Pace(concurrency=concurrency, rate=None if rate == 0 else rate)


PACE = OptionGroup("pace", _pace)

# --- the per-VPC link quota (commands that add links) ------------------------------------


def _quota(
    *,
    vpc_quota: Annotated[
        int,
        typer.Option(
            "--vpc-quota", min=1, help="Classic links a VPC takes.", rich_help_panel=RUN_PANEL
        ),
    ] = DEFAULT_VPC_QUOTA,
) -> int:
    return vpc_quota


QUOTA = OptionGroup("quota", _quota)

# --- how a job that changes links retries, stops and resumes ----------------------------


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """Retries per row, when to give up, how to stop, and whether to resume."""

    attempts: AttemptSettings = field(default_factory=AttemptSettings)
    max_failure_rate: float | None = None
    min_settled: int = DEFAULT_MIN_SETTLED
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    fresh: bool = False
    wait_lock: float = DEFAULT_WAIT_LOCK


def _policy(
    *,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts",
            min=1,
            help="Attach attempts per row (throttled ones not counted).",
            rich_help_panel=RUN_PANEL,
        ),
    ] = DEFAULT_MAX_ATTEMPTS,
    throttle_timeout: Annotated[
        float,
        typer.Option(
            "--throttle-timeout",
            metavar="SECONDS",
            min=0.0,
            max=MAX_SECONDS,
            callback=finite,
            help="A throttled row waits; it fails only once the service has accepted nothing "
            "of its kind for this long (then the rows waiting for it fail too, unsent).",
            rich_help_panel=RUN_PANEL,
        ),
    ] = DEFAULT_THROTTLE_TIMEOUT,
    max_failure_rate: Annotated[
        float | None,
        typer.Option(
            "--max-failure-rate",
            min=0.0,
            max=1.0,
            callback=finite,
            help="Stop starting rows once more than this share of settled rows failed (exit 4).",
            rich_help_panel=RUN_PANEL,
        ),
    ] = None,
    min_settled: Annotated[
        int,
        typer.Option(
            "--min-settled",
            min=1,
            help="Settled rows needed before --max-failure-rate applies.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = DEFAULT_MIN_SETTLED,
    drain_timeout: Annotated[
        float,
        typer.Option(
            "--drain-timeout",
            min=0.0,
            max=MAX_SECONDS,
            callback=finite,
            help="On Ctrl-C, seconds to let requests in flight settle.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = DEFAULT_DRAIN_TIMEOUT,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start over instead of resuming; the old report is kept under another name.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = False,
    wait_lock: Annotated[
        float,
        typer.Option(
            "--wait-lock",
            metavar="SECONDS",
            min=0.0,
            max=MAX_SECONDS,
            callback=finite,
            help="When another run holds the report, wait up to this long for it instead of "
            "stopping at once with exit code 75.",
            rich_help_panel=RUN_PANEL,
        ),
    ] = DEFAULT_WAIT_LOCK,
) -> JobPolicy:
    return JobPolicy(
        attempts=AttemptSettings(max_attempts=max_attempts, throttle_timeout=throttle_timeout),
        max_failure_rate=max_failure_rate,
        min_settled=min_settled,
        drain_timeout=drain_timeout,
        fresh=fresh,
        wait_lock=wait_lock,
    )


POLICY = OptionGroup("policy", _policy)

# --- credentials -------------------------------------------------------------------------


def _credentials(
    *,
    access_key_id: Annotated[
        str | None,
        typer.Option(
            "--access-key-id",
            help="AccessKey ID. Prefer ALIBABA_CLOUD_ACCESS_KEY_ID.",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
    access_key_secret: Annotated[
        str | None,
        typer.Option(
            "--access-key-secret",
            help="AccessKey secret. Avoid: it lands in shell history and the process list; "
            "use ALIBABA_CLOUD_ACCESS_KEY_SECRET or a profile.",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
    security_token: Annotated[
        str | None,
        typer.Option(
            "--security-token",
            help="STS token. Prefer ALIBABA_CLOUD_SECURITY_TOKEN.",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Profile in ~/.aliyun/config.json (else ALIBABA_CLOUD_PROFILE, else current).",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config-path",
            "--config-file",
            help="The aliyun CLI config file \\[default: ~/.aliyun/config.json].",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="What the access key options are: AK, StsToken, RamRoleArn (with "
            "--ram-role-arn), or EcsRamRole (the instance's role, no keys).",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
    ram_role_arn: Annotated[
        str | None,
        typer.Option(
            "--ram-role-arn",
            help="Assume this role (acs:ram::<account>:role/<name>) with the credentials "
            "found: another account's, for a cross-account job.",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
    role_session_name: Annotated[
        str | None,
        typer.Option(
            "--role-session-name",
            help="Session name of an assumed role (else ALIBABA_CLOUD_ROLE_SESSION_NAME).",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
    external_id: Annotated[
        str | None,
        typer.Option(
            "--external-id", help="ExternalId of --ram-role-arn.", rich_help_panel=CREDENTIALS_PANEL
        ),
    ] = None,
    sts_region: Annotated[
        str | None,
        typer.Option(
            "--sts-region",
            help="STS endpoint region (sts.<region>.aliyuncs.com; else ALIBABA_CLOUD_STS_REGION).",
            rich_help_panel=CREDENTIALS_PANEL,
        ),
    ] = None,
) -> CredentialOptions:
    return CredentialOptions(
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        security_token=security_token,
        profile=profile,
        config_path=config_file,
        mode=mode,
        ram_role_arn=ram_role_arn,
        role_session_name=role_session_name,
        external_id=external_id,
        sts_region=sts_region,
    )


CREDENTIALS = OptionGroup("credentials", _credentials)
