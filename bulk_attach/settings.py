"""Frozen settings, built once by the CLI (or a test) and passed down.

Only ``cli.py`` reads options and the environment; everything below it receives one of
these objects. Defaults live here as ``DEFAULT_*`` constants so the CLI help, the README
and the code agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

# --- the API client -------------------------------------------------------------------
DEFAULT_CONNECT_TIMEOUT = 5.0  # seconds, as the official SDKs
DEFAULT_READ_TIMEOUT = 14.0  # seconds, the SDKs' value for Attach/Detach
DEFAULT_MAX_CONNECTIONS = 100

ECS_API_VERSION = "2014-05-26"
VPC_API_VERSION = "2016-04-28"

# --- the bulk run ---------------------------------------------------------------------
DEFAULT_CONCURRENCY = 16
# No published per-API limit exists; the service allows tens to a few hundred per second.
DEFAULT_RATE = 20.0
DEFAULT_VPC_QUOTA = 1000
DEFAULT_MAX_ATTEMPTS = 6
# A throttled request waits, however often: it fails only when the service has accepted
# nothing of its kind for this long (the limit is shared with every tool of the account).
DEFAULT_THROTTLE_TIMEOUT = 300.0
DEFAULT_MIN_SETTLED = 100
DEFAULT_DRAIN_TIMEOUT = 30.0  # seconds to let in-flight requests settle after Ctrl-C
DEFAULT_WAIT_LOCK = 0.0  # seconds to wait for another run holding the report (0: refuse)


class EndpointType(StrEnum):
    """Which official host names a region's calls go to, as the aliyun CLI's
    ``--endpoint-type``: the public ones, or the private ones reachable from inside a VPC."""

    PUBLIC = "public"
    VPC = "vpc"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The proxies the environment names (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``), as
    given: ``api/network.py`` decides which applies to which URL. Read by the CLI only."""

    https: str | None = None  # for https:// endpoints (tunnelled with CONNECT)
    http: str | None = None  # for http:// endpoints
    no_proxy: str = ""  # comma-separated hosts, domains, IPs or CIDRs; "*" is every host


class SignatureVersion(StrEnum):
    V1 = "v1"
    V3 = "v3"


class LogFormat(StrEnum):
    """What stderr carries: timestamped text lines, or one JSON object per line."""

    TEXT = "text"
    JSON = "json"


DEFAULT_PROGRESS_INTERVAL = 10.0  # seconds between plain progress lines (no terminal)


class ReportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach and talk to the API."""

    # Overrides both the ECS and the VPC endpoint (how the emulator is reached).
    endpoint: str | None = None
    # Override one product's endpoint (before ``endpoint``).
    ecs_endpoint: str | None = None
    vpc_endpoint: str | None = None
    # For endpoints not overridden: the official public or private (VPC) host names.
    endpoint_type: EndpointType = EndpointType.PUBLIC
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    signature: SignatureVersion = SignatureVersion.V3
    # Plain http:// is always allowed to loopback; elsewhere only with this set.
    allow_insecure_http: bool = False
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    proxies: ProxySettings = ProxySettings()
    # A PEM file (or an OpenSSL hashed directory) of the CAs to trust instead of the system's.
    ca_bundle: Path | None = None


@dataclass(frozen=True, slots=True)
class AttemptSettings:
    """How often and how patiently one row's request is tried within a run (not ``retry``,
    the command that re-runs rows from a report)."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = 0.2  # seconds; doubled each attempt, with full jitter
    max_delay: float = 20.0
    throttle_base_delay: float = 0.5  # the SDKs' 500 ms for throttling
    # Seconds a throttled row waits while the service accepts nothing of its kind; throttled
    # attempts do not count against max_attempts (the rate gate paces them).
    throttle_timeout: float = DEFAULT_THROTTLE_TIMEOUT


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """How the engine runs rows, whatever they come from (a file, a report, a library
    caller's list): the rate, the pool, the quota, attempts, the failure threshold."""

    concurrency: int = DEFAULT_CONCURRENCY
    rate: float | None = DEFAULT_RATE  # requests per second per region; None = unlimited
    vpc_quota: int = DEFAULT_VPC_QUOTA
    attempts: AttemptSettings = AttemptSettings()
    max_failure_rate: float | None = None
    min_settled: int = DEFAULT_MIN_SETTLED
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSettings(EngineSettings):
    """What one bulk run from a file does: the engine's settings plus files and output."""

    input_path: Path
    # None: the default beside the input (``files/paths.py``), or retry's own report.
    report_path: Path | None = None
    report_format: ReportFormat = ReportFormat.CSV
    default_region: str | None = None
    quiet: bool = False
    fresh: bool = False
    wait_lock: float = DEFAULT_WAIT_LOCK
    # How the pairs CSV is read; None: from the file (a byte-order mark, a sep= line, the
    # header), else UTF-8 (see ``files/csv_input.py``).
    delimiter: str | None = None
    encoding: str | None = None
    log_format: LogFormat = LogFormat.TEXT
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
