"""Alibaba Cloud request signatures, as pure functions.

Two schemes are spoken by the ECS RPC API:

* **V1** (``SignatureVersion=1.0``, HMAC-SHA1): every parameter but ``Signature`` goes into
  the string to sign; the signature travels as the ``Signature`` parameter.
* **V3** (``ACS3-HMAC-SHA256``): only operation parameters are in the query; action,
  version, date and nonce travel in ``x-acs-*`` headers and the signature in
  ``Authorization``.

Both the client and the emulator sign and verify with these functions, so the test suite
pins them with the published known answers and against the official SDKs' own signers:
a symmetric bug here could not be seen any other way.

This module is part of the library's public API::

    >>> sts = v1_string_to_sign("GET", {"Action": "DescribeRegions", "AccessKeyId": "testid"})
    >>> v1_signature("testsecret", sts)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "EMPTY_SHA256",
    "V3_ALGORITHM",
    "V3Authorization",
    "canonical_query",
    "parse_v3_authorization",
    "percent_encode",
    "sha256_hex",
    "sign_v1",
    "v1_signature",
    "v1_string_to_sign",
    "v3_authorization",
    "v3_authorization_of",
    "v3_canonical_request",
    "v3_signature",
    "v3_string_to_sign",
]

V3_ALGORITHM = "ACS3-HMAC-SHA256"
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(text: str) -> str:
    """RFC 3986 encoding of UTF-8: only ``A-Z a-z 0-9 - _ . ~`` stay literal.

    Space becomes ``%20`` (never ``+``), ``*`` becomes ``%2A``, hex digits are upper-case.
    """
    # Most names and values (IDs, regions, actions) need no encoding: skip quote() for them,
    # which is the signer's (and so the emulator's) main cost.
    if _UNRESERVED.fullmatch(text):
        return text
    return quote(text, safe="~", encoding="utf-8")


def canonical_query(params: Mapping[str, str]) -> str:
    """Parameters sorted by name (code point order, which is UTF-8 byte order), encoded."""
    return "&".join(
        f"{percent_encode(name)}={percent_encode(params[name])}" for name in sorted(params)
    )


def sha256_hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# --- V1 -------------------------------------------------------------------------------


def v1_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&enc(canonical query)``; ``Signature`` itself is never signed."""
    signed = {name: value for name, value in params.items() if name != "Signature"}
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(signed))}"


def v1_signature(secret: str, string_to_sign: str) -> str:
    """``base64(HMAC-SHA1(secret + "&", string_to_sign))``."""
    # hmac.digest: the one-shot C implementation, several times cheaper than hmac.new.
    digest = hmac.digest((secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), "sha1")
    return base64.b64encode(digest).decode("ascii")


def sign_v1(method: str, params: Mapping[str, str], secret: str) -> str:
    """The V1 ``Signature`` value for these parameters."""
    return v1_signature(secret, v1_string_to_sign(method, params))


# --- V3 -------------------------------------------------------------------------------


def _canonical_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The headers to sign as (lower-case name, trimmed value) pairs, sorted by name."""
    return sorted((name.lower(), value.strip()) for name, value in headers.items())


def _canonical_request(
    method: str,
    path: str,
    query_string: str,
    headers: Sequence[tuple[str, str]],
    hashed_payload: str,
) -> tuple[str, str]:
    block = "".join(f"{name}:{value}\n" for name, value in headers)
    signed_headers = ";".join(name for name, _ in headers)
    request = (
        f"{method.upper()}\n{path or '/'}\n{query_string}\n{block}\n{signed_headers}\n"
        f"{hashed_payload}"
    )
    return request, signed_headers


def v3_canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    hashed_payload: str,
) -> tuple[str, str]:
    """The canonical request and the ``SignedHeaders`` list, for the headers given.

    ``headers`` must be exactly the headers to sign (``host`` and the ``x-acs-*`` ones).
    """
    return _canonical_request(
        method, path, canonical_query(query), _canonical_headers(headers), hashed_payload
    )


def v3_string_to_sign(canonical_request: str) -> str:
    return f"{V3_ALGORITHM}\n{sha256_hex(canonical_request.encode('utf-8'))}"


def v3_signature(secret: str, string_to_sign: str) -> str:
    """Hex HMAC-SHA256 keyed with the plain secret (no ``&``)."""
    return hmac.digest(secret.encode("utf-8"), string_to_sign.encode("utf-8"), "sha256").hex()


def v3_authorization(  # noqa: PLR0917 - mirrors the canonical request's parts, in order
    access_key_id: str,
    secret: str,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    hashed_payload: str,
) -> str:
    """The complete ``Authorization`` header value for a V3 request."""
    return v3_authorization_of(
        access_key_id,
        secret,
        method,
        path,
        canonical_query(query),
        _canonical_headers(headers),
        hashed_payload,
    )


def v3_authorization_of(  # noqa: PLR0917 - mirrors the canonical request's parts, in order
    access_key_id: str,
    secret: str,
    method: str,
    path: str,
    query_string: str,
    headers: Sequence[tuple[str, str]],
    hashed_payload: str,
) -> str:
    """``v3_authorization`` from parts already canonical: the encoded query string (as
    ``canonical_query`` gives it, and as it is sent), and the signed headers as
    (lower-case name, trimmed value) pairs sorted by name. The client's hot path: the
    query is encoded once, for the signature and the URL alike."""
    request, signed_headers = _canonical_request(
        method, path, query_string, headers, hashed_payload
    )
    signature = v3_signature(secret, v3_string_to_sign(request))
    return (
        f"{V3_ALGORITHM} Credential={access_key_id},"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )


@dataclass(frozen=True, slots=True)
class V3Authorization:
    """The parts of a V3 ``Authorization`` header, as a server reads them."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_v3_authorization(value: str) -> V3Authorization | None:
    """Parse ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..``; None if malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != V3_ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, sep, val = item.strip().partition("=")
        if not sep:
            return None
        parts[name] = val
    try:
        return V3Authorization(
            access_key_id=parts["Credential"],
            signed_headers=tuple(h for h in parts["SignedHeaders"].split(";") if h),
            signature=parts["Signature"],
        )
    except KeyError:
        return None
