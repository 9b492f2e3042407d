"""Every ECS error code bulk-attach knows, and what each one means for a row.

One table answers, for any code: is it throttling (not executed, retry later), ambiguous
(may have been executed: read the state back), not sent (safe to retry), permanent (the
row's own problem) or fatal (the whole run is wrong). The client, the retry policy and the
emulator all read this table; nothing else decides retryability.

Codes follow both the 2018 contract page (``AttachClassicLinkVpc.md``) and the current
(2024-12) doc, where every AttachClassicLinkVpc error answers 403 and "already linked to
another VPC" is ``OperationDenied``. Unknown codes fall back on their HTTP status.

A code means the same for every action (its class), but its HTTP status and message are the
ones the *attach* pages give. Another action whose pages give other statuses or messages lists
them in its own table (``DETACH_CODES``); ``action_code`` reads it.

DetachClassicLinkVpc's pages: the current one gives every code 403; an older one gives the three
``Malformed`` codes 400 and adds ``NotBelong``, ``InstanceLocked`` and ``InstanceStatus`` (403).
Unconfirmed, and assumed by the emulator (``emulator/model.py``, ``DETACH_WHEN_NOT_LINKED``):
detaching an instance that is not linked, or linked to another VPC, answers ``OperationDenied``.
Whatever the service really answers, a detach settles by reading the link back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "CATALOG",
    "DETACH_CODES",
    "ActionCode",
    "CodeInfo",
    "ErrorClass",
    "LocalCode",
    "action_code",
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
    # --- DescribeVpcAttribute (VPC API): an unknown VPC. Unconfirmed codes and statuses;
    # public tooling treats both as "not found". The emulator answers the first, with 404.
    _info("InvalidVpcID.NotFound", _P, 404, "The specified VPC does not exist."),
    _info("Forbidden.VpcNotFound", _P, 403, "The specified VPC is not found."),
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


@dataclass(frozen=True, slots=True)
class ActionCode:
    """A code as one action's own pages give it. A status of None: that page does not list it."""

    code: str
    message: str
    status: int | None  # the older page (the emulator's "2018" variant)
    current_status: int | None  # the current page

    def status_for(self, variant: str) -> int | None:
        return self.current_status if variant == "current" else self.status


def _detach(code: str, message: str, status: int | None, current: int | None) -> ActionCode:
    if code not in CATALOG:  # pragma: no cover - a typo guard, checked at import
        raise RuntimeError(f"{code} has no catalog entry (its class)")
    return ActionCode(code, message, status, current)


# DetachClassicLinkVpc (see the module doc). NotFound and OperationDenied are assumed 403 on the
# older page too (it changed only the Malformed codes). The lock and status codes are not on the
# current page; an emulator that still checks them answers them with 403, as every code there.
DETACH_CODES: Final[Mapping[str, ActionCode]] = MappingProxyType(
    {
        entry.code: entry
        for entry in (
            _detach(
                "InvalidInstanceId.NotFound", "The specified InstanceId does not exist.", 403, 403
            ),
            _detach("InvalidRegionId.Malformed", "The specified RegionId is invalid.", 400, 403),
            _detach("InvalidVpcId.Malformed", "The specified VpcId is invalid.", 400, 403),
            _detach(
                "InvalidInstanceId.MalFormed",
                "The specified instance is not a classic network instance.",
                400,
                403,
            ),
            _detach(
                "OperationDenied",
                "The instances are not allowed to detach from the linked vpc.",
                403,
                403,
            ),
            _detach(
                "InvalidInstanceId.NotBelong",
                "The user does not own the specified instance.",
                403,
                None,
            ),
            _detach(
                "InvalidStatus.InstanceLocked",
                "The specified instance is in another processing list.",
                403,
                403,
            ),
            _detach(
                "InvalidStatus.InstanceStatus",
                "Only the Running or Stopped InstanceStatus is allowed.",
                403,
                403,
            ),
        )
    }
)
_ACTION_CODES: Final[Mapping[str, Mapping[str, ActionCode]]] = {
    "DetachClassicLinkVpc": DETACH_CODES
}


def action_code(action: str, code: str) -> ActionCode | None:
    """The code as ``action``'s own pages give it, when they differ from the catalog's."""
    return _ACTION_CODES.get(action, {}).get(code)


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
