"""Authentication as the service does it, over parsed requests (no aiohttp, no I/O).

Both signatures are recomputed with ``bulk_attach.api.signing``, the functions the client
signs with; the official SDKs' tests against the emulator are what keep that symmetric pair
honest.

* **V1**: every parameter (query and form body) except ``Signature`` is signed, with the
  HTTP method as received. Spaces may arrive as ``+``; they were decoded before this point.
* **V3**: the ``Authorization`` header names the signed headers; the canonical request is
  rebuilt from those headers as received, the query as received, and the body's SHA-256,
  which must also equal ``x-acs-content-sha256``.

Checks run in this order, each with the service's code: the pieces are there
(``MissingParameter`` / ``IncompleteSignature``), the key is known
(``InvalidAccessKeyId.NotFound``), the STS token matches, the timestamp is within 15 minutes
(``InvalidTimeStamp.Expired``), the signature matches (``SignatureDoesNotMatch``, whose
message ends with the server's string to sign, which the old SDK compares with its own),
and only then is the nonce remembered (``SignatureNonceUsed`` on a replay), so a forged
request cannot burn a nonce.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from bulk_attach.api.signing import (
    V3Authorization,
    parse_v3_authorization,
    sha256_hex,
    v1_signature,
    v1_string_to_sign,
    v3_canonical_request,
    v3_signature,
    v3_string_to_sign,
)
from bulk_attach.emulator.http import ApiFault, ParsedRequest, missing

__all__ = [
    "DEFAULT_MAX_SKEW",
    "Authenticator",
    "Caller",
    "Keyring",
    "NonceMemory",
    "check_timestamp",
    "parse_timestamp",
    "verify_v1",
    "verify_v3",
]

DEFAULT_MAX_SKEW: Final = 15 * 60.0  # seconds between the client's clock and ours
DEFAULT_NONCE_CAPACITY: Final = 200_000

_MISMATCH: Final = "Specified signature is not matched with our calculation."


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent an authenticated request."""

    access_key_id: str
    account: str
    signature_version: str  # "v1" or "v3"


@dataclass(frozen=True, slots=True)
class Keyring:
    """Configured access keys; STS keys also need their token; each key maps to an account."""

    secrets: Mapping[str, str]
    tokens: Mapping[str, str] = field(default_factory=dict)  # access key id -> STS token
    accounts: Mapping[str, str] = field(default_factory=dict)  # access key id -> account
    default_account: str = "default"
    # access key id -> when its STS token expires (epoch seconds): keys STS issued.
    expires: Mapping[str, float] = field(default_factory=dict)

    def account_for(self, access_key_id: str) -> str:
        return self.accounts.get(access_key_id, self.default_account)


# --- pure checks -----------------------------------------------------------------------


def _mismatch(string_to_sign: str) -> ApiFault:
    return ApiFault(
        "SignatureDoesNotMatch", f"{_MISMATCH} server string to sign is:{string_to_sign}"
    )


def parse_timestamp(value: str) -> float:
    """ISO-8601 UTC (``2016-02-23T12:46:24Z``) to epoch seconds; naive values are UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiFault(
            "InvalidTimeStamp.Format", f'Specified time stamp "{value}" is not valid.', status=400
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_timestamp(value: str, now: float, max_skew: float = DEFAULT_MAX_SKEW) -> None:
    if abs(parse_timestamp(value) - now) > max_skew:
        raise ApiFault("InvalidTimeStamp.Expired")


def verify_v1(request: ParsedRequest, secret: str) -> None:
    """Recompute the V1 signature over all parameters but ``Signature``."""
    string_to_sign = v1_string_to_sign(request.method, request.params)
    expected = v1_signature(secret, string_to_sign)
    if not hmac.compare_digest(expected, request.params.get("Signature", "")):
        raise _mismatch(string_to_sign)


def _signed_header_values(request: ParsedRequest, auth: V3Authorization) -> dict[str, str]:
    names = {name.lower() for name in auth.signed_headers}
    if "host" not in names:
        raise ApiFault("IncompleteSignature", "SignedHeaders must include host.")
    unsigned = sorted(
        name.lower()
        for name in request.headers
        if name.lower().startswith("x-acs-") and name.lower() not in names
    )
    if unsigned:
        raise ApiFault(
            "IncompleteSignature", f"Header {unsigned[0]} must be listed in SignedHeaders."
        )
    values: dict[str, str] = {}
    for name in names:
        received = request.headers.getall(name, [])
        if not received:
            raise ApiFault("IncompleteSignature", f"Signed header {name} is not in the request.")
        values[name] = ",".join(sorted(item.strip() for item in received))
    return values


def verify_v3(request: ParsedRequest, auth: V3Authorization, secret: str) -> None:
    """Recompute the V3 canonical request over the listed headers, query and body hash."""
    declared = request.headers.get("x-acs-content-sha256", "")
    if not declared:
        raise missing("x-acs-content-sha256")
    if declared.lower() != sha256_hex(request.body):
        raise ApiFault(
            "IncompleteSignature", "The x-acs-content-sha256 header does not match the body."
        )
    headers = _signed_header_values(request, auth)
    canonical, _ = v3_canonical_request(request.method, "/", request.query, headers, declared)
    string_to_sign = v3_string_to_sign(canonical)
    if not hmac.compare_digest(v3_signature(secret, string_to_sign), auth.signature.lower()):
        raise _mismatch(string_to_sign)


class NonceMemory:
    """Nonces seen recently, forgotten after ``window`` seconds or beyond ``capacity``.

    A request can only be replayed while its timestamp is valid (within the skew either
    side of our clock), so twice the skew is enough memory; the capacity bound keeps a long
    benchmark from growing without limit (a replay of a forgotten nonce would then pass).
    """

    __slots__ = ("_order", "_seen", "capacity", "window")

    def __init__(
        self, window: float = 2 * DEFAULT_MAX_SKEW, capacity: int = DEFAULT_NONCE_CAPACITY
    ):
        self.window = window
        self.capacity = capacity
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()

    def remember(self, nonce: str, now: float) -> bool:
        """Record ``nonce``; False if it was already seen (a replay)."""
        order, seen = self._order, self._seen
        while order and (order[0][0] <= now or len(order) >= self.capacity):
            seen.discard(order.popleft()[1])
        if nonce in seen:
            return False
        seen.add(nonce)
        order.append((now + self.window, nonce))
        return True

    def clear(self) -> None:
        self._seen.clear()
        self._order.clear()

    def __len__(self) -> int:
        return len(self._seen)

    def __repr__(self) -> str:
        return f"<NonceMemory {len(self._seen)}/{self.capacity} window={self.window:g}s>"


class Authenticator:
    """Applies the checks above to each request, with the keyring, a clock and nonce memory."""

    __slots__ = ("clock", "keyring", "max_skew", "nonces")

    def __init__(
        self,
        keyring: Keyring,
        clock: Callable[[], float],
        *,
        max_skew: float = DEFAULT_MAX_SKEW,
        nonce_capacity: int = DEFAULT_NONCE_CAPACITY,
    ) -> None:
        self.keyring = keyring
        self.clock = clock
        self.max_skew = max_skew
        self.nonces = NonceMemory(2 * max_skew, nonce_capacity)

    def authenticate(self, request: ParsedRequest) -> Caller:
        if request.is_v3 or "Authorization" in request.headers:
            return self._v3(request)
        return self._v1(request)

    def _secret(self, access_key_id: str, token: str) -> str:
        secret = self.keyring.secrets.get(access_key_id)
        if secret is None:
            raise ApiFault("InvalidAccessKeyId.NotFound")
        expected = self.keyring.tokens.get(access_key_id)
        if expected is None and token:
            raise ApiFault(
                "InvalidSecurityToken.Malformed",
                "A security token was given for an access key that is not an STS key.",
            )
        if expected is not None and not hmac.compare_digest(expected, token):
            raise ApiFault("InvalidSecurityToken.Malformed")
        expires = self.keyring.expires.get(access_key_id)
        if expires is not None and self.clock() >= expires:
            raise ApiFault("InvalidSecurityToken.Expired")
        return secret

    def _remember(self, access_key_id: str, nonce: str, now: float) -> None:
        if not self.nonces.remember(f"{access_key_id}\n{nonce}", now):
            raise ApiFault("SignatureNonceUsed")

    def _v1(self, request: ParsedRequest) -> Caller:
        params = request.params
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                raise missing(name)
        if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
            raise ApiFault("IncompleteSignature", "SignatureMethod must be HMAC-SHA1.")
        if params.get("SignatureVersion", "1.0") != "1.0":
            raise ApiFault("IncompleteSignature", "SignatureVersion must be 1.0.")
        access_key_id = params["AccessKeyId"]
        secret = self._secret(access_key_id, params.get("SecurityToken", ""))
        now = self.clock()
        check_timestamp(params["Timestamp"], now, self.max_skew)
        verify_v1(request, secret)
        self._remember(access_key_id, params["SignatureNonce"], now)
        return Caller(access_key_id, self.keyring.account_for(access_key_id), "v1")

    def _v3(self, request: ParsedRequest) -> Caller:
        auth = parse_v3_authorization(request.headers.get("Authorization", ""))
        if auth is None:
            raise ApiFault(
                "IncompleteSignature", "The Authorization header is not ACS3-HMAC-SHA256."
            )
        for name in ("x-acs-date", "x-acs-signature-nonce"):
            if not request.headers.get(name):
                raise missing(name)
        secret = self._secret(auth.access_key_id, request.headers.get("x-acs-security-token", ""))
        now = self.clock()
        check_timestamp(request.headers["x-acs-date"], now, self.max_skew)
        verify_v3(request, auth, secret)
        self._remember(auth.access_key_id, request.headers["x-acs-signature-nonce"], now)
        return Caller(auth.access_key_id, self.keyring.account_for(auth.access_key_id), "v3")

    def reset(self) -> None:
        self.nonces.clear()

    def __repr__(self) -> str:
        return f"<Authenticator keys={len(self.keyring.secrets)} {self.nonces!r}>"
