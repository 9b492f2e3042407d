"""The network half of the credentials chain: STS, the ECS metadata service, a credentials URI.

Imported only when a source needs the network (``credentials.py`` stays cheap for ``--help``).
Every function returns ``Credentials`` with their ``Expiration`` or raises ``FetchError``,
whose message is safe to print: it names the endpoint, the HTTP status and the service's
error code, and never quotes an answer's body (a body that lacks one field may well hold
the others: the secret and the token). Messages taken from STS are scrubbed of the source
credentials' secret and token (a V1 ``SignatureDoesNotMatch`` echoes the string to sign).

The facts (``shared/spec/lifecycle-facts.md``): AssumeRole and AssumeRoleWithOIDC are
``Version=2015-04-01`` actions of ``sts.aliyuncs.com`` (``sts.<region>.aliyuncs.com``);
AssumeRole is V1-signed with the source credentials, AssumeRoleWithOIDC is anonymous; the
metadata service is IMDSv2 (``PUT /latest/api/token`` then the token in a header).
"""

from __future__ import annotations

import calendar
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from bulk_attach.api.credentials import Credentials, FetchError
from bulk_attach.api.network import DIRECT_NETWORK, Network
from bulk_attach.api.signing import canonical_query, percent_encode, sign_v1

__all__ = [
    "METADATA_TOKEN_TTL",
    "STS_VERSION",
    "Identity",
    "assume_role",
    "assume_role_with_oidc",
    "from_metadata",
    "from_uri",
    "get_caller_identity",
]

STS_VERSION = "2015-04-01"
METADATA_TOKEN_TTL = 21600
_ROLE_PATH = "/latest/meta-data/ram/security-credentials/"
_MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Identity:
    """What STS GetCallerIdentity says about the caller (no secret in any field)."""

    account_id: str
    arn: str
    identity_type: str
    principal_id: str = ""

    def __str__(self) -> str:
        return f"{self.arn} (account {self.account_id}, {self.identity_type})"


def _scrub(text: str, hidden: Iterable[str | None]) -> str:
    for secret in hidden:
        if not secret:
            continue
        once = percent_encode(secret)
        for form in (percent_encode(once), once, secret):
            text = text.replace(form, "****")
    return text


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    what: str,
    *,
    headers: Mapping[str, str] | None = None,
    limit: float | None = None,
    network: Network | None = None,
) -> tuple[int, bytes]:
    """One request; transport failures become ``FetchError`` naming the origin only."""
    origin = url.origin()
    extra: dict[str, Any] = (network or DIRECT_NETWORK).request_options(url)
    if limit is not None:
        extra["timeout"] = aiohttp.ClientTimeout(total=limit)
    try:
        async with session.request(
            method, url, headers=dict(headers or {}), allow_redirects=False, **extra
        ) as response:
            body = await response.content.read(_MAX_BODY)
            return response.status, body
    except TimeoutError:
        raise FetchError(f"{what}: no answer from {origin} within the timeout") from None
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        raise FetchError(f"{what}: cannot connect to {origin}: {reason}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise FetchError(f"{what}: request to {origin} failed: {type(exc).__name__}") from None


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _expiration(value: Any, what: str) -> float:
    if not isinstance(value, str):
        raise FetchError(f"{what}: the answer has no Expiration")
    try:
        return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        raise FetchError(f"{what}: the answer's Expiration is not YYYY-MM-DDTHH:MM:SSZ") from None


def _credentials(doc: Mapping[str, Any], what: str, source: str) -> Credentials:
    """The four fields of an STS or metadata credentials object; names what is missing only."""
    fields = ("AccessKeyId", "AccessKeySecret", "SecurityToken")
    missing = [name for name in fields if not isinstance(doc.get(name), str) or not doc[name]]
    if missing:
        raise FetchError(f"{what}: the answer has no {', '.join(missing)}")
    return Credentials(
        access_key_id=doc["AccessKeyId"],
        access_key_secret=doc["AccessKeySecret"],
        security_token=doc["SecurityToken"],
        source=source,
        expiration=_expiration(doc.get("Expiration"), what),
    )


def _sts_error(status: int, body: bytes, what: str, hidden: Iterable[str | None]) -> FetchError:
    doc = _json(body)
    if doc is not None and isinstance(doc.get("Code"), str):
        message = doc.get("Message") if isinstance(doc.get("Message"), str) else ""
        request_id = doc.get("RequestId") if isinstance(doc.get("RequestId"), str) else ""
        text = f"{what}: HTTP {status} {doc['Code']}: {_scrub(str(message), hidden)}"
        if request_id:
            text += f" [RequestId {request_id}]"
        return FetchError(text, code=doc["Code"])
    return FetchError(f"{what}: HTTP {status}, not an STS answer ({len(body)} bytes)")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _sts_call(
    session: aiohttp.ClientSession,
    endpoint: URL,
    action: str,
    params: Mapping[str, str],
    *,
    signer: Credentials | None,
    what: str,
    network: Network | None,
) -> dict[str, Any]:
    query = {
        **params,
        "Action": action,
        "Version": STS_VERSION,
        "Format": "JSON",
        "Timestamp": _now(),
        "SignatureNonce": secrets.token_hex(16),
    }
    if signer is not None:
        query.update(
            {
                "AccessKeyId": signer.access_key_id,
                "SignatureMethod": "HMAC-SHA1",
                "SignatureVersion": "1.0",
            }
        )
        if signer.security_token:
            query["SecurityToken"] = signer.security_token
        query["Signature"] = sign_v1("POST", query, signer.access_key_secret)
    url = URL(f"{endpoint.origin()}/?{canonical_query(query)}", encoded=True)
    status, body = await _send(session, "POST", url, what, network=network)
    hidden = (signer.access_key_secret, signer.security_token) if signer else ()
    doc = _json(body)
    if status != 200 or doc is None:
        raise _sts_error(status, body, what, hidden)
    return doc


async def assume_role(
    session: aiohttp.ClientSession,
    endpoint: URL,
    signer: Credentials,
    *,
    role_arn: str,
    session_name: str,
    duration: int,
    policy: str | None,
    external_id: str | None,
    source: str,
    network: Network | None = None,
) -> Credentials:
    what = f"AssumeRole {role_arn} at {endpoint.origin()}"
    params = {"RoleArn": role_arn, "RoleSessionName": session_name}
    params["DurationSeconds"] = str(duration)
    if policy:
        params["Policy"] = policy
    if external_id:
        params["ExternalId"] = external_id
    doc = await _sts_call(
        session, endpoint, "AssumeRole", params, signer=signer, what=what, network=network
    )
    box = doc.get("Credentials")
    if not isinstance(box, dict):
        raise FetchError(f"{what}: the answer has no Credentials")
    return _credentials(box, what, source)


async def assume_role_with_oidc(
    session: aiohttp.ClientSession,
    endpoint: URL,
    *,
    role_arn: str,
    provider_arn: str,
    token: str,
    session_name: str,
    duration: int,
    source: str,
    network: Network | None = None,
) -> Credentials:
    what = f"AssumeRoleWithOIDC {role_arn} at {endpoint.origin()}"
    params = {
        "RoleArn": role_arn,
        "OIDCProviderArn": provider_arn,
        "OIDCToken": token,
        "RoleSessionName": session_name,
        "DurationSeconds": str(duration),
    }
    try:
        doc = await _sts_call(
            session,
            endpoint,
            "AssumeRoleWithOIDC",
            params,
            signer=None,
            what=what,
            network=network,
        )
    except FetchError as error:
        raise FetchError(_scrub(str(error), [token]), code=error.code) from None
    box = doc.get("Credentials")
    if not isinstance(box, dict):
        raise FetchError(f"{what}: the answer has no Credentials")
    return _credentials(box, what, source)


async def get_caller_identity(
    session: aiohttp.ClientSession,
    endpoint: URL,
    signer: Credentials,
    *,
    network: Network | None = None,
) -> Identity:
    what = f"GetCallerIdentity at {endpoint.origin()}"
    doc = await _sts_call(
        session, endpoint, "GetCallerIdentity", {}, signer=signer, what=what, network=network
    )

    def text(name: str) -> str:
        value = doc.get(name)
        return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""

    if not text("Arn"):
        raise FetchError(f"{what}: the answer has no Arn")
    return Identity(text("AccountId"), text("Arn"), text("IdentityType"), text("PrincipalId"))


async def from_metadata(
    session: aiohttp.ClientSession,
    base: URL,
    role_name: str | None,
    *,
    limit: float,
    source: str,
) -> Credentials:
    """IMDSv2: a session token, the role's name (unless given), then its credentials."""
    what = f"ECS metadata service at {base.origin()}"
    status, body = await _send(
        session,
        "PUT",
        base.with_path("/latest/api/token"),
        what,
        headers={"X-aliyun-ecs-metadata-token-ttl-seconds": str(METADATA_TOKEN_TTL)},
        limit=limit,
    )
    if status != 200 or not body.strip():
        raise FetchError(f"{what}: the token request answered HTTP {status}")
    token = {"X-aliyun-ecs-metadata-token": body.decode("utf-8", "replace").strip()}
    if not role_name:
        status, body = await _send(
            session, "GET", base.with_path(_ROLE_PATH), what, headers=token, limit=limit
        )
        names = body.decode("utf-8", "replace").split() if status == 200 else []
        if status == 404 or (status == 200 and not names):
            raise FetchError(f"{what}: this instance has no RAM role attached")
        if status != 200:
            raise FetchError(f"{what}: the role name request answered HTTP {status}")
        role_name = names[0]
    status, body = await _send(
        session,
        "GET",
        base.with_path(_ROLE_PATH + role_name),
        what,
        headers=token,
        limit=limit,
    )
    doc = _json(body)
    if status != 200 or doc is None:
        raise FetchError(f"{what}: role {role_name!r} answered HTTP {status}, not credentials JSON")
    if doc.get("Code") != "Success":
        code = doc.get("Code") if isinstance(doc.get("Code"), str) else "(none)"
        raise FetchError(f"{what}: role {role_name!r} answered Code {code!r}")
    return _credentials(doc, f"{what}, role {role_name!r}", source)


async def from_uri(session: aiohttp.ClientSession, uri: URL, *, source: str) -> Credentials:
    """A plain GET answering the metadata service's JSON (status 200)."""
    shown = uri.origin().with_path(uri.path)  # never the query: it may hold a secret
    what = f"credentials URI {shown}"
    status, body = await _send(session, "GET", uri, what)
    doc = _json(body)
    if status != 200 or doc is None:
        raise FetchError(f"{what}: HTTP {status}, not credentials JSON")
    code = doc.get("Code")
    if code is not None and code != "Success":
        raise FetchError(f"{what}: answered Code {code if isinstance(code, str) else '?'!r}")
    return _credentials(doc, what, source)
