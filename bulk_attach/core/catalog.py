"""Every ECS error code bulk-attach knows, and what each one means for a row.

One table answers, for any code: is it throttling (not executed, retry later), ambiguous
(may have been executed: read the state back), not sent (safe to retry), permanent (the
row's own problem) or fatal (the whole run is wrong). The client, the retry policy and the
emulator all read this table; nothing else decides retryability.

Codes follow both the 2018 contract page (``AttachClassicLinkVpc.md``) and the current
(2024-12) doc, where every AttachClassicLinkVpc error answers 403 and "already linked to
another VPC" is ``OperationDenied``. Unknown codes fall back on their HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CATALOG",
    "CodeInfo",
    "ErrorClass",
    "LocalCode",
    "classify",
    "lookup",
    "may_pass_later",
]


class ErrorClass(StrEnum):
    """What an error means for the row that met it."""

    THROTTLED = "throttled"  # rejected by flow control: not executed, retry after a pause
    AMBIGUOUS = "ambiguous"  # 5xx, timeout, connection lost after sending: may have happened
    NOT_SENT = "not_sent"  # nothing reached the service, or it refused before executing
    PERMANENT = "permanent"  # the row's own problem: retrying the same call cannot help
    FATAL = "fatal"  # the run itself is wrong (credentials, signature): stop everything


class LocalCode(StrEnum):
    """Codes bulk-attach gives to failures that carry no service code."""

    CONNECT_FAILED = "ConnectFailed"  # refused, DNS, TLS handshake: request never sent
    TIMEOUT = "Timeout"  # no answer within the read timeout
    CONNECTION_LOST = "ConnectionLost"  # dropped after the request was (maybe) sent
    INVALID_RESPONSE = "InvalidResponse"  # an answer we cannot parse
    # The ledger's own verdict reuses the service's code (same meaning, never sent); its
    # catalog entry is the service's.
    QUOTA_EXCEEDED = "QuotaExceeded"


@dataclass(frozen=True, slots=True)
class CodeInfo:
    code: str
    error_class: ErrorClass
    message: str
    # HTTP status as the 2018 contract page gives it, and as the current doc gives it.
    status: int
    current_status: int
    # A permanent error that may pass if the row is tried again later (retry command).
    transient: bool = False


def _info(
    code: str,
    error_class: ErrorClass,
    status: int,
    message: str,
    *,
    current_status: int | None = None,
    transient: bool = False,
) -> CodeInfo:
    return CodeInfo(
        code=code,
        error_class=error_class,
        message=message,
        status=status,
        current_status=status if current_status is None else current_status,
        transient=transient,
    )


_T, _A, _N, _P, _F = (
    ErrorClass.THROTTLED,
    ErrorClass.AMBIGUOUS,
    ErrorClass.NOT_SENT,
    ErrorClass.PERMANENT,
    ErrorClass.FATAL,
)

_ENTRIES = [
    # --- AttachClassicLinkVpc, 2018 contract page (current doc: every one is 403) ---
    _info(
        "Abs.InvalidInstanceId.MalFormed",
        _P,
        400,
        "The specified instance has already been linked to another VPC.",
        current_status=403,
    ),
    _info(
        "InvalidInstanceId.MalFormed",
        _P,
        400,
        "The specified instance is not a classic network type instance.",
        current_status=403,
    ),
    _info(
        "InvalidRegionId.Malformed",
        _P,
        400,
        "The specified RegionId is invalid.",
        current_status=403,
    ),
    _info("InvalidVpcId.Malformed", _P, 400, "The specified VpcId is invalid.", current_status=403),
    _info("InvalidInstanceId.NotBelong", _P, 403, "The user does not own the specified instance."),
    _info(
        "InvalidStatus.InstanceLocked",
        _P,
        403,
        "The specified instance is in another processing list.",
        transient=True,
    ),
    _info(
        "InvalidStatus.InstanceStatus",
        _P,
        403,
        "Only the Running or Stopped InstanceStatus is allowed.",
        transient=True,
    ),
    _info("OperationDenied", _P, 403, "The specified VPC are unable to attach ClassicLink."),
    _info(
        "QuotaExceeded",
        _P,
        403,
        "The maximum number of links in the specified VPC exceeds.",
        transient=True,
    ),
    _info(
        "InvalidInstanceId.NotFound",
        _P,
        404,
        "The specified InstanceId does not exist.",
        current_status=403,
    ),
    # --- added by the current doc ---
    _info(
        "InvalidInstanceId.LimitedRegion",
        _P,
        403,
        "The instance and the VPC are not in the same region.",
    ),
    _info(
        "InvalidParameter.InvalidInstanceIdAndVpcId",
        _P,
        403,
        "The specified InstanceId and VpcId do not match.",
    ),
    _info("InvalidVpcId.NotFound", _P, 404, "The specified VpcId does not exist."),
    _info(
        "InvalidRegionId.NotFound",
        _F,
        403,
        "The specified RegionId does not exist or you are not authorized to access it.",
    ),
    _info("Forbidden.SubUser", _F, 403, "The specified action is not available for you."),
    # --- common request errors ---
    _info("MissingParameter", _P, 400, "A required parameter is missing."),
    _info("InvalidParameter", _P, 400, "A parameter is invalid."),
    _info(
        "IncompleteSignature", _F, 400, "The request signature does not conform to the standards."
    ),
    _info(
        "SignatureDoesNotMatch", _F, 400, "Specified signature is not matched with our calculation."
    ),
    _info("InvalidAccessKeyId.NotFound", _F, 404, "Specified access key is not found."),
    _info("InvalidAccessKeyId.Inactive", _F, 400, "Specified access key is disabled."),
    _info("InvalidSecurityToken.Expired", _F, 400, "Specified SecurityToken is expired."),
    _info("InvalidSecurityToken.Malformed", _F, 400, "Specified SecurityToken is malformed."),
    _info("InvalidTimeStamp.Expired", _F, 400, "Specified time stamp or date value is expired."),
    # A replayed nonce is refused before anything runs: safe to send again with a new one.
    _info("SignatureNonceUsed", _N, 400, "Specified signature nonce was used already."),
    _info("Forbidden.RAM", _F, 403, "User not authorized to operate on the specified resource."),
    _info("Forbidden", _F, 403, "User not authorized to operate on the specified resource."),
    _info("UnsupportedHTTPMethod", _F, 400, "This http method is not supported."),
    _info(
        "InvalidAction.NotFound",
        _F,
        404,
        "Specified api is not found, please check your url and method.",
    ),
    # --- flow control ---
    _info("Throttling", _T, 400, "Request was denied due to request throttling."),
    _info("Throttling.User", _T, 400, "Request was denied due to user flow control."),
    _info("Throttling.Api", _T, 400, "Request was denied due to api flow control."),
    _info("Throttling.Resource", _T, 400, "Request was denied due to resource flow control."),
    _info(
        "ServiceUnavailableTemporary",
        _T,
        503,
        "The request has failed due to a temporary failure of the server.",
    ),
    # --- the service's own failures: the call may or may not have run ---
    _info("InternalError", _A, 500, "The request processing has failed due to some unknown error."),
    _info("UnknownError", _A, 500, "The request processing has failed due to some unknown error."),
    _info(
        "ServiceUnavailable",
        _A,
        503,
        "The request has failed due to a temporary failure of the server.",
    ),
    # --- local codes for answers that carry none ---
    _info(LocalCode.CONNECT_FAILED, _N, 0, "Could not connect to the endpoint."),
    _info(LocalCode.TIMEOUT, _A, 0, "No answer within the read timeout."),
    _info(LocalCode.CONNECTION_LOST, _A, 0, "The connection was lost before an answer came."),
    _info(LocalCode.INVALID_RESPONSE, _A, 0, "The answer could not be understood."),
]

CATALOG: dict[str, CodeInfo] = {entry.code: entry for entry in _ENTRIES}
if len(CATALOG) != len(_ENTRIES):  # pragma: no cover - a typo guard, checked at import
    raise RuntimeError("a code is listed twice in the catalog")


def lookup(code: str) -> CodeInfo | None:
    return CATALOG.get(code)


def _fallback(code: str, http_status: int) -> ErrorClass:
    if code.startswith("Throttling") or http_status == 429:
        return ErrorClass.THROTTLED
    if code.startswith(("InvalidAccessKeyId", "InvalidSecurityToken", "Forbidden.RAM")):
        return ErrorClass.FATAL
    if http_status >= 500:
        return ErrorClass.AMBIGUOUS
    if http_status in (401,):
        return ErrorClass.FATAL
    if http_status >= 400:
        return ErrorClass.PERMANENT
    # A 2xx/3xx with an error code, or no status at all: we cannot tell what happened.
    return ErrorClass.AMBIGUOUS


def classify(code: str, http_status: int) -> ErrorClass:
    """The class of an error: from the catalog, else from the code's family and HTTP status."""
    entry = CATALOG.get(code)
    if entry is not None:
        return entry.error_class
    return _fallback(code, http_status)


def may_pass_later(code: str, http_status: int = 0) -> bool:
    """Whether trying the same row again later may succeed (used to pick rows to retry)."""
    entry = CATALOG.get(code)
    if entry is not None and entry.transient:
        return True
    return classify(code, http_status) in (
        ErrorClass.THROTTLED,
        ErrorClass.AMBIGUOUS,
        ErrorClass.NOT_SENT,
    )
