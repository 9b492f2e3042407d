"""The errors bulk-attach raises on purpose, modelled once.

::

    BulkAttachError                  everything below; carries the process exit code
    ├── UsageError         exit 2    bad options or arguments
    │   └── InputError     exit 2    a bad input file: path, line and column in the message
    ├── ConfigError        exit 3    credentials, profiles, endpoints: the run cannot start
    ├── LockedError        exit 75   another run holds the report (EX_TEMPFAIL: try later)
    ├── ReportWriteError   exit 74   the report could not be written (disk full, EX_IOERR)
    └── EcsError           exit 1    one call that did not succeed; .code and .error_class
        ├── ApiError                 the service answered: an error body (a Code or RequestId)
        └── TransportError           no answer from the service: not sent, timeout, connection
                                     lost, or an answer that is not the API's (no RequestId,
                                     no Code: an HTML page, an empty body, another server)

The transport's exceptions (aiohttp, asyncio timeouts, OS errors) are translated into
``TransportError`` in exactly one place, ``api/client.py``; any other exception is a bug
and is never translated. Messages never
contain a secret: credentials objects hide theirs, and nothing here formats request
parameters.
"""

from __future__ import annotations

from bulk_attach.core.catalog import ErrorClass, classify

__all__ = [
    "ApiError",
    "BulkAttachError",
    "ConfigError",
    "EcsError",
    "ExitCode",
    "InputError",
    "LockedError",
    "ReportWriteError",
    "TransportError",
    "UsageError",
]


class ExitCode:
    """Process exit codes a scheduler can act on (documented in the README)."""

    OK = 0
    SOME_ROWS_FAILED = 1
    USAGE = 2
    CONFIG = 3
    FAILURE_THRESHOLD = 4
    INTERNAL = 70  # EX_SOFTWARE: a bug; --debug shows the traceback
    REPORT_WRITE = 74  # EX_IOERR: the report could not be written (disk full...)
    LOCKED = 75  # EX_TEMPFAIL: another run holds the report; try again later
    SIGINT = 130
    SIGTERM = 143


class BulkAttachError(Exception):
    exit_code: int = ExitCode.SOME_ROWS_FAILED


class UsageError(BulkAttachError):
    exit_code = ExitCode.USAGE


class InputError(UsageError):
    """A problem in an input file, located as ``path:line:column: message``."""

    def __init__(self, path: str, message: str, line: int | None = None, column: int | None = None):
        self.path = path
        self.line = line
        self.column = column
        self.reason = message
        where = path
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class ConfigError(BulkAttachError):
    exit_code = ExitCode.CONFIG


class LockedError(BulkAttachError):
    """Another run holds the report's lock: nothing was sent; try again later."""

    exit_code = ExitCode.LOCKED

    def __init__(self, report: object, holder: str, *, waited: float = 0.0) -> None:
        self.report = report
        self.holder = holder
        after = f" after waiting {waited:g}s" if waited > 0 else ""
        super().__init__(
            f"{report} is in use by {holder}{after}; nothing was sent. Try again later, "
            "or pass --wait-lock SECONDS to wait for it"
        )


class ReportWriteError(BulkAttachError):
    """The report (or a sidecar) could not be written: the run stops, nothing is lost."""

    exit_code = ExitCode.REPORT_WRITE

    def __init__(self, path: object, error: OSError) -> None:
        self.path = path
        self.reason = error.strerror or str(error)
        super().__init__(f"cannot write {path}: {self.reason}")


class EcsError(BulkAttachError):
    """A call to the ECS or VPC API that did not succeed."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int = 0,
        request_id: str = "",
        host_id: str = "",
        retry_after: float | None = None,
        error_class: ErrorClass | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        self.host_id = host_id
        # Seconds the service asked us to wait (from ``x-acs-retry-after``), if any.
        self.retry_after = retry_after
        self.error_class = error_class or classify(code, http_status)
        status = f" (HTTP {http_status})" if http_status else ""
        rid = f" [RequestId {request_id}]" if request_id else ""
        super().__init__(f"{code}{status}: {message}{rid}")


class ApiError(EcsError):
    """The service answered with an error body (Code, Message, RequestId, HostId)."""


class Refused(EcsError):
    """Not sent: the service has accepted no call of this kind, in this region, for the
    throttle timeout, so the rate gate gives the request up instead of sending it again
    (the code is the service's generic throttling code: ``retry`` picks such rows)."""

    def __init__(self, region: str, action: str, refused_for: float) -> None:
        super().__init__(
            "Throttling",
            f"not sent: {region} has accepted no {action} for {refused_for:.0f} s "
            "(--throttle-timeout); the service throttled every call in that time",
            error_class=ErrorClass.THROTTLED,
        )


class TransportError(EcsError):
    """No answer from the service: the request was not sent, timed out, lost its connection,
    or was answered by something that is not the API (``http_status`` then says how)."""
