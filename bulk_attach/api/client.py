"""The ECS (and VPC) RPC client: one connection pool, signed requests, typed answers.

Every call is a ``POST /`` with all parameters in the query string and an empty body, as
the official SDKs send it. The query is encoded once, by ``signing.percent_encode``, and
sent verbatim, so the bytes on the wire are exactly the bytes that were signed. A direct
route goes through ``api/transport.py`` (a small keep-alive HTTP/1.1 client, cheaper per
request than aiohttp); a route through a proxy goes through aiohttp, imported only then
(``yarl.URL(..., encoded=True)`` keeps the query verbatim there). Signature V3
(``ACS3-HMAC-SHA256``) is the default, like the current SDK; V1 (HMAC-SHA1) on request.

Every outcome is either a typed success carrying its RequestId or one ``EcsError``:
``ApiError`` when the service answered, ``TransportError`` when it did not. The transport's
exceptions (its own, aiohttp's, OS errors) are translated in exactly one place,
``EcsClient._translate``, and only those: any other exception is a bug of ours and goes up
untouched, never retried as a lost connection. Answer bodies are decoded without raising.
The client never retries: deciding whether a lost attach may be sent again is the engine's
job, and it needs to see every failure.

A secret never leaves this module in text: messages taken from the service are scrubbed of
the access key secret and the STS token (a V1 ``SignatureDoesNotMatch`` message echoes the
string to sign, token included), and URLs (which hold the V1 token) are never formatted.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import ssl
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from yarl import URL

from bulk_attach import __version__
from bulk_attach.api.credentials import (
    EXPIRED_TOKEN_CODES,
    Credentials,
    CredentialsProvider,
    FetchError,
)
from bulk_attach.api.endpoints import official_host
from bulk_attach.api.network import Route, Routes, is_loopback, tls_context
from bulk_attach.api.signing import (
    EMPTY_SHA256,
    canonical_query,
    percent_encode,
    sign_v1,
    v3_authorization_of,
)
from bulk_attach.api.transport import (
    DEFAULT_PORTS,
    CertificateFailed,
    ConnectFailed,
    ConnectionLost,
    ConnectTimeout,
    HttpFailure,
    HttpPool,
    MalformedAnswer,
    NotSent,
    ReadTimeout,
    Response,
    origin_of,
)
from bulk_attach.core.catalog import LocalCode, classify
from bulk_attach.errors import ApiError, ConfigError, EcsError, TransportError
from bulk_attach.settings import (
    ECS_API_VERSION,
    VPC_API_VERSION,
    ClientSettings,
    SignatureVersion,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "MAX_IDS_PER_CALL",
    "EcsClient",
    "InstanceInfo",
    "Link",
    "Product",
    "RequestGate",
    "VpcInfo",
    "endpoint_for",
    "parse_endpoint",
]

log = logging.getLogger("bulk_attach.api")

Product = Literal["ecs", "vpc"]
MAX_IDS_PER_CALL = 100
PAGE_SIZE = 100
# DescribeInstances pages by MaxResults (10-100) and NextToken; PageNumber is being retired.
MAX_RESULTS = 100
# A NextToken chain longer than this is the server's bug, not a long list (100 ids per call).
MAX_PAGES = 100
# Bigger answers are refused rather than buffered (100 instances are well under 1 MiB).
MAX_BODY_BYTES = 16 * 1024 * 1024

_VERSIONS: Mapping[Product, str] = {"ecs": ECS_API_VERSION, "vpc": VPC_API_VERSION}
# Sent after the signed headers, as aiohttp sent them before: its decoding is kept too.
_TRAILING_HEADERS = (("Accept-Encoding", "gzip, deflate"), ("Content-Length", "0"))


class RequestGate(Protocol):
    """Awaited before every HTTP request (each page included): the engine's rate limit."""

    async def __call__(self, region: str, action: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Link:
    """One ClassicLink: a classic instance linked to a VPC."""

    instance_id: str
    vpc_id: str


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """One instance as DescribeInstances shows it."""

    instance_id: str
    region_id: str
    status: str  # Pending, Running, Starting, Stopping, Stopped
    network_type: str  # classic or vpc
    # OperationLocks: why the instance is locked (financial, security, ...); empty: not locked.
    lock_reasons: tuple[str, ...] = ()
    # VpcAttributes.VpcId: the VPC a VPC-type instance lives in (not a ClassicLink); else None.
    vpc_id: str | None = None
    zone_id: str = ""

    @property
    def locked(self) -> bool:
        return bool(self.lock_reasons)


@dataclass(frozen=True, slots=True)
class VpcInfo:
    """One VPC as the VPC API's DescribeVpcAttribute shows it."""

    vpc_id: str
    region_id: str
    classic_link_enabled: bool
    status: str = ""  # Available or Pending ("" if the answer had none)
    cidr_block: str = ""
    owner_id: str = ""  # the owning account's number, as text


# --- endpoints ---------------------------------------------------------------------------


# The name ``api/identity.py`` imports; the rule lives with the proxy decision now.
_is_loopback = is_loopback


def parse_endpoint(
    endpoint: str, *, allow_insecure_http: bool = False, option: str = "--endpoint"
) -> URL:
    """An endpoint option as an origin URL; a bare host means https. ``ConfigError`` if
    unusable (``option`` names it in the message).

    Plain ``http://`` sends signed requests (and a V1 STS token) in clear text, so it is
    accepted for loopback addresses only, unless ``allow_insecure_http`` says otherwise.
    """
    text = endpoint.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        url = URL(text)
        port = url.explicit_port
    except ValueError:
        raise ConfigError(f"{option} {endpoint!r} is not a valid URL") from None
    if url.scheme not in DEFAULT_PORTS or not url.host:
        raise ConfigError(f"{option} {endpoint!r} must be an http:// or https:// URL with a host")
    if url.user is not None or url.password is not None:
        raise ConfigError(f"{option} must not carry a user name or password")
    if url.path not in ("", "/") or url.query_string or url.fragment:
        raise ConfigError(f"{option} {endpoint!r} must have no path, query or fragment")
    if url.scheme == "http" and not allow_insecure_http and not is_loopback(url.host):
        raise ConfigError(
            f"refusing plain http:// to {url.host}: requests would travel unencrypted. Use "
            "https://, or pass --insecure-http if you really mean it."
        )
    return URL.build(scheme=url.scheme, host=url.host, port=port)


def _override(settings: ClientSettings, product: Product) -> tuple[str, str] | None:
    """The endpoint option that sets ``product``'s endpoint, and its name; None: derived."""
    own = settings.ecs_endpoint if product == "ecs" else settings.vpc_endpoint
    if own:
        return own, f"--{product}-endpoint"
    if settings.endpoint:
        return settings.endpoint, "--endpoint"
    return None


def endpoint_for(settings: ClientSettings, product: Product, region: str) -> URL:
    """The product's own endpoint option, else ``settings.endpoint`` (both products), else
    the official host of ``settings.endpoint_type`` for the region (``api/endpoints.py``).

    The region becomes part of a host name, so a malformed one is refused before any
    traffic (``InvalidRegionId.Malformed``, permanent for its row).
    """
    override = _override(settings, product)
    if override is not None:
        return parse_endpoint(
            override[0], allow_insecure_http=settings.allow_insecure_http, option=override[1]
        )
    try:
        host = official_host(product, region, settings.endpoint_type.value)
    except ValueError:
        raise ApiError(
            "InvalidRegionId.Malformed", f"{region!r} is not a valid region id"
        ) from None
    return URL.build(scheme="https", host=host)


def _host_header(base: URL) -> str:
    host = base.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    port = base.explicit_port
    if port is not None and port != DEFAULT_PORTS.get(base.scheme or ""):
        host = f"{host}:{port}"
    return host


_stamp: tuple[int, str] = (-1, "")


def _timestamp() -> str:
    """UTC now as the API wants it (whole seconds), formatted once per second."""
    global _stamp  # noqa: PLW0603 - a one-entry cache of pure formatting
    second = int(time.time())
    if _stamp[0] != second:
        _stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _stamp[1]


# --- answer decoding (never raises) ------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


_XML_ERROR = re.compile(rb"<Error\b[^>]*>(.*)</Error\s*>", re.DOTALL)


def _xml_error(body: bytes) -> dict[str, str] | None:
    """The fields of an ``<Error>`` document, read without an XML parser (no entities)."""
    match = _XML_ERROR.search(body)
    if match is None:
        return None
    fields: dict[str, str] = {}
    for name in ("Code", "Message", "RequestId", "HostId", "Recommend"):
        found = re.search(
            rb"<" + name.encode() + rb">(.*?)</" + name.encode() + rb">", match.group(1), re.DOTALL
        )
        if found:
            fields[name] = unescape(found.group(1).decode("utf-8", "replace")).strip()
    return fields


def _field(doc: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = doc.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _retry_after(value: str | None) -> float | None:
    """``x-acs-retry-after`` is milliseconds; only a positive integer counts (as tea reads it)."""
    if not value:
        return None
    try:
        millis = int(value.strip())
    except ValueError:
        return None
    return millis / 1000.0 if millis > 0 else None


def _describe_body(body: bytes, content_type: str) -> str:
    kind = content_type.split(";", maxsplit=1)[0].strip() or "no content type"
    return f"{kind}, {len(body)} bytes"


_HTML_TITLE = re.compile(rb"<title[^>]*>([^<]{1,200})</title", re.IGNORECASE)


def _html_title(body: bytes) -> str:
    """An HTML page's title, short and on one line: what a wrong endpoint answered."""
    match = _HTML_TITLE.search(body[:65536])
    if match is None:
        return ""
    text = unescape(match.group(1).decode("utf-8", "replace"))
    return " ".join(text.split())[:80]


# --- the client --------------------------------------------------------------------------


class EcsClient:
    """Async context manager around one bounded connection pool (and, for routes through a
    proxy, one ``aiohttp.ClientSession``, made on first use).

    >>> async with EcsClient(ClientSettings(), credentials) as client:  # doctest: +SKIP
    ...     request_id = await client.attach_classic_link_vpc("cn-hangzhou", "i-1", "vpc-1")
    """

    def __init__(
        self,
        settings: ClientSettings,
        credentials: CredentialsProvider,
        *,
        gate: RequestGate | None = None,
        user_agent: str | None = None,
    ) -> None:
        self._settings = settings
        # Fixed ``Credentials`` are their own provider; temporary ones are refreshed by theirs.
        self._credentials = credentials
        self._gate = gate
        # Every secret and token this client has signed with: scrubbed from service text.
        self._hidden: set[str] = set()
        self._checked: Credentials | None = None
        if isinstance(credentials, Credentials):
            self._check(credentials)
        # Validate the endpoints, the proxies and the CA bundle now: each is a configuration
        # error at start-up, never a failure of the rows sent later.
        self._endpoints: dict[Product, URL | None] = {
            product: endpoint_for(settings, product, "") if _override(settings, product) else None
            for product in _VERSIONS
        }
        self._routes = Routes.from_settings(settings.proxies)
        self._route_cache: dict[URL, Route] = {}
        for endpoint in self._endpoints.values():
            if endpoint is not None:
                self._route(endpoint)
        # Only a client that may speak https needs (and checks) the CA bundle: a plain-http
        # run (the emulator, a local server) builds no TLS context at all.
        may_use_tls = any(e is None or e.scheme == "https" for e in self._endpoints.values())
        self._tls = tls_context(settings.ca_bundle) if may_use_tls else None
        agent = (
            f"bulk-attach/{__version__} Python/{sys.version_info.major}.{sys.version_info.minor}"
        )
        self._user_agent = f"{agent} {user_agent}" if user_agent else agent
        self._pool: HttpPool | None = None
        self._session: aiohttp.ClientSession | None = None  # for proxied routes only

    def _check(self, credentials: Credentials) -> None:
        """Remember the secrets to scrub; refuse control characters, which travel in headers
        (V3), where aiohttp refuses them with a ValueError: a stray newline in a profile is
        a configuration error, said at start."""
        if credentials is self._checked:
            return
        for what, value in (
            ("access key id", credentials.access_key_id),
            ("security token", credentials.security_token or ""),
        ):
            if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
                raise ConfigError(
                    f"the {what} from {credentials.source} contains a control character "
                    "(a stray newline?)"
                )
        self._hidden.update(
            secret
            for secret in (credentials.access_key_secret, credentials.security_token)
            if secret
        )
        self._checked = credentials

    def __repr__(self) -> str:
        where = ",".join(
            f"{product}={endpoint or 'official ' + self._settings.endpoint_type.value}"
            for product, endpoint in self._endpoints.items()
        )
        return (
            f"<EcsClient endpoints {where} signature={self._settings.signature.value} "
            f"credentials from {self._credentials.source}>"
        )

    async def __aenter__(self) -> Self:
        if self._pool is None:
            settings = self._settings
            self._pool = HttpPool(
                limit=settings.max_connections,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                tls=self._tls_context,
            )
        return self

    def _tls_context(self) -> ssl.SSLContext:
        """The context of the first https connection: the CA bundle's, else the system's
        (which honours ``SSL_CERT_FILE``), offering http/1.1 as aiohttp's did."""
        context = self._tls if self._tls is not None else ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        return context

    def _proxy_session(self) -> aiohttp.ClientSession:
        """The aiohttp session for routes through a proxy, made (and aiohttp imported) on
        the first such request: a direct run never loads aiohttp."""
        if self._session is None:
            import aiohttp  # noqa: PLC0415 - lazily: it costs ~0.1 s to import

            settings = self._settings
            # trust_env=False: the proxies are the CLI's (settings.proxies), never read here.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=settings.max_connections,
                    ssl=self._tls if self._tls is not None else True,
                ),
                trust_env=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=settings.connect_timeout,
                    sock_connect=settings.connect_timeout,
                    sock_read=settings.read_timeout,
                ),
            )
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # --- actions ---------------------------------------------------------------------

    async def attach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str:
        """Link a classic instance to a VPC; the RequestId. Not idempotent: never resent here."""
        doc = await self._call(
            "ecs",
            region,
            "AttachClassicLinkVpc",
            {"RegionId": region, "InstanceId": instance_id, "VpcId": vpc_id},
        )
        return str(doc["RequestId"])

    async def detach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str:
        doc = await self._call(
            "ecs",
            region,
            "DetachClassicLinkVpc",
            {"RegionId": region, "InstanceId": instance_id, "VpcId": vpc_id},
        )
        return str(doc["RequestId"])

    async def describe_classic_link_instances(
        self, region: str, *, vpc_id: str | None = None, instance_ids: Sequence[str] = ()
    ) -> list[Link]:
        """Every link matching the VPC and/or up to 100 instances, all pages fetched."""
        if not vpc_id and not instance_ids:
            raise ValueError("describe_classic_link_instances needs vpc_id or instance_ids")
        _check_ids(instance_ids)
        params = {"RegionId": region}
        if vpc_id:
            params["VpcId"] = vpc_id
        if instance_ids:
            params["InstanceId"] = ",".join(instance_ids)
        links: list[Link] = []
        seen: set[Link] = set()
        page, received = 1, 0
        while True:
            doc = await self._call(
                "ecs",
                region,
                "DescribeClassicLinkInstances",
                {**params, "PageNumber": str(page), "PageSize": str(PAGE_SIZE)},
            )
            total = _count(doc, "DescribeClassicLinkInstances")
            items = _items(doc, "Links", "Link", "DescribeClassicLinkInstances")
            for item in items:
                link = Link(
                    instance_id=_required(item, "InstanceId", doc, "DescribeClassicLinkInstances"),
                    vpc_id=_required(item, "VpcId", doc, "DescribeClassicLinkInstances"),
                )
                # Pages can shift under concurrent changes; a link is reported once.
                if link not in seen:
                    seen.add(link)
                    links.append(link)
            # Count what arrived rather than trusting the page size we asked for.
            received += len(items)
            if not items or received >= total:
                return links
            page += 1

    async def count_classic_links(self, region: str, vpc_id: str) -> int:
        """How many instances are linked to the VPC (one call, ``TotalCount``)."""
        doc = await self._call(
            "ecs",
            region,
            "DescribeClassicLinkInstances",
            {"RegionId": region, "VpcId": vpc_id, "PageNumber": "1", "PageSize": "1"},
        )
        return _count(doc, "DescribeClassicLinkInstances")

    async def describe_instances(
        self, region: str, instance_ids: Sequence[str]
    ) -> list[InstanceInfo]:
        """Status, network type, locks and VPC of up to 100 instances, every page fetched.

        Unknown ids, and instances of another account, are simply absent (so is everything
        when the caller may not DescribeInstances: the service answers an empty list).
        """
        _check_ids(instance_ids)
        if not instance_ids:
            return []  # no filter at all would list every instance in the region
        params = {
            "RegionId": region,
            "InstanceIds": json.dumps(list(instance_ids)),
            "MaxResults": str(MAX_RESULTS),
        }
        found: dict[str, InstanceInfo] = {}
        tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            doc = await self._call("ecs", region, "DescribeInstances", params)
            for item in _items(doc, "Instances", "Instance", "DescribeInstances"):
                info = _instance_info(item, doc, region)
                found.setdefault(info.instance_id, info)
            token = doc.get("NextToken")
            if token in (None, ""):
                return list(found.values())
            if not isinstance(token, str) or token in tokens:
                # A token that repeats would page forever.
                raise _malformed(doc, "DescribeInstances", "NextToken")
            tokens.add(token)
            params["NextToken"] = token
        raise _malformed(doc, "DescribeInstances", f"NextToken chain (over {MAX_PAGES} pages)")

    async def describe_vpc_attribute(self, region: str, vpc_id: str) -> VpcInfo:
        """The VPC API's view of one VPC: is ClassicLink enabled, and is the VPC available?"""
        doc = await self._call(
            "vpc", region, "DescribeVpcAttribute", {"RegionId": region, "VpcId": vpc_id}
        )
        enabled = doc.get("ClassicLinkEnabled")
        if isinstance(enabled, str) and enabled.lower() in ("true", "false"):
            enabled = enabled.lower() == "true"
        if not isinstance(enabled, bool):
            raise _malformed(doc, "DescribeVpcAttribute", "ClassicLinkEnabled")
        owner = doc.get("OwnerId")
        return VpcInfo(
            vpc_id=_field(doc, "VpcId") or vpc_id,
            region_id=_field(doc, "RegionId") or region,
            classic_link_enabled=enabled,
            status=_field(doc, "Status"),
            cidr_block=_field(doc, "CidrBlock"),
            owner_id=str(owner) if isinstance(owner, int | str) and owner != "" else "",
        )

    # --- one request -----------------------------------------------------------------

    def _prepare(
        self,
        base: URL,
        product: Product,
        action: str,
        params: Mapping[str, str],
        creds: Credentials | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The request target (``/?query``, exactly as signed) and the headers for one
        request; fresh nonce and time every call.

        Signed with ``creds``: the provider's current credentials when the request leaves.
        """
        if creds is None:
            creds = self._credentials if isinstance(self._credentials, Credentials) else None
        if creds is None:
            raise RuntimeError("_prepare needs the credentials of a refreshing provider")
        version = _VERSIONS[product]
        now = _timestamp()
        nonce = secrets.token_hex(16)
        host = _host_header(base)
        headers = {"Host": host, "User-Agent": self._user_agent, "Accept": "application/json"}
        if self._settings.signature is SignatureVersion.V1:
            query = {
                **params,
                "Action": action,
                "Version": version,
                "Format": "JSON",
                "AccessKeyId": creds.access_key_id,
                "SignatureMethod": "HMAC-SHA1",
                "SignatureVersion": "1.0",
                "SignatureNonce": nonce,
                "Timestamp": now,
            }
            if creds.security_token:
                query["SecurityToken"] = creds.security_token
            query["Signature"] = sign_v1("POST", query, creds.access_key_secret)
        else:
            token = creds.security_token
            # The signed headers, lower-case and sorted by name, as the signature wants them.
            signed = [
                ("host", host),
                ("x-acs-action", action),
                ("x-acs-content-sha256", EMPTY_SHA256),
                ("x-acs-date", now),
                ("x-acs-signature-nonce", nonce),
                ("x-acs-version", version),
            ]
            if token:
                # As the tea SDK sends an STS request: the key id travels beside the token.
                signed += [
                    ("x-acs-accesskey-id", creds.access_key_id),
                    ("x-acs-security-token", token),
                ]
                signed.sort()
            headers.update(header for header in signed if header[0] != "host")
            # Encoded once: what is signed is what is sent.
            query_string = canonical_query(params)
            headers["Authorization"] = v3_authorization_of(
                creds.access_key_id,
                creds.access_key_secret,
                "POST",
                "/",
                query_string,
                [(name, value.strip()) for name, value in signed],
                EMPTY_SHA256,
            )
            return f"/?{query_string}", headers
        return f"/?{canonical_query(query)}", headers

    async def _call(
        self, product: Product, region: str, action: str, params: Mapping[str, str]
    ) -> dict[str, Any]:
        """Send one request and return the answer's JSON object, or raise one ``EcsError``.

        A request refused because its STS token expired was not executed: the provider is
        asked once for fresh credentials and the request is sent again with them. It is
        fatal (the error goes up) only when there are none, or a fresh token is refused too.
        """
        creds = await self._current(region, action)
        try:
            return await self._send(product, region, action, params, creds)
        except ApiError as error:
            if error.code not in EXPIRED_TOKEN_CODES:
                raise
            fresh = await self._credentials.refreshed(creds)
            if fresh is None:
                raise
            self._check(fresh)
            log.info(
                "%s %s: %s; sending again with refreshed credentials", region, action, error.code
            )
            return await self._send(product, region, action, params, fresh)

    async def _current(self, region: str, action: str) -> Credentials:
        """The provider's credentials now; a provider that cannot give any (its refresh
        failed and the old ones expired) is a fatal expired-token answer for this request."""
        try:
            creds = await self._credentials.current()
        except (ConfigError, FetchError) as error:
            raise ApiError(
                "InvalidSecurityToken.Expired",
                f"{action}: no valid credentials from {self._credentials.source}: {error}",
            ) from None
        self._check(creds)
        return creds

    async def _send(
        self,
        product: Product,
        region: str,
        action: str,
        params: Mapping[str, str],
        creds: Credentials,
    ) -> dict[str, Any]:
        pool = self._pool
        if pool is None:
            raise RuntimeError("EcsClient is used outside `async with`")
        base = self._endpoints[product] or endpoint_for(self._settings, product, region)
        route = self._route(base)
        if self._gate is not None:
            await self._gate(region, action)
        target, headers = self._prepare(base, product, action, params, creds)
        if route.proxy is not None:
            status, retry_after, content_type, body = await self._send_proxied(
                base, route, action, target, headers
            )
        else:
            origin = origin_of(base.scheme, base.raw_host or "", base.explicit_port)
            try:
                # No Content-Type, as the SDKs send an empty body. The API never redirects:
                # a 3xx is some other server's, and following it would send a signed
                # request (a V1 token in its query) wherever its Location points.
                async with pool.request(
                    origin, "POST", target, [*headers.items(), *_TRAILING_HEADERS]
                ) as response:
                    status = response.status
                    retry_after = _retry_after(response.headers.get("x-acs-retry-after"))
                    content_type = response.headers.get("content-type", "")
                    body = await _read_body(response)
            except HttpFailure as exc:
                lost = self._translate(exc, base)
                log.debug("%s %s: %s", region, action, lost)
                raise lost from None
        if body is None:
            raise self._not_the_api(
                base, action, status, f"a body over {MAX_BODY_BYTES} bytes", retry_after
            )
        doc = _json_object(body)
        if 200 <= status < 300 and doc is not None and _field(doc, "RequestId"):
            log.debug("%s %s: HTTP %s [RequestId %s]", region, action, status, doc["RequestId"])
            return doc
        error = self._answer_error(
            base,
            action,
            status=status,
            doc=doc,
            body=body,
            content_type=content_type,
            retry_after=retry_after,
        )
        log.debug("%s %s: %s", region, action, error)
        raise error

    async def _send_proxied(
        self, base: URL, route: Route, action: str, target: str, headers: dict[str, str]
    ) -> tuple[int, float | None, str, bytes | None]:
        """One request through the route's proxy, by aiohttp: status, retry-after, content
        type and body (None: too big)."""
        session = self._proxy_session()
        import aiohttp  # noqa: PLC0415 - loaded by _proxy_session already

        url = URL(f"{base.scheme}://{headers['Host']}{target}", encoded=True)
        try:
            async with session.post(
                url,
                headers=headers,
                skip_auto_headers=("Content-Type",),
                allow_redirects=False,
                proxy=route.proxy,
                proxy_headers=route.headers or None,
            ) as response:
                return (
                    response.status,
                    _retry_after(response.headers.get("x-acs-retry-after")),
                    response.headers.get("Content-Type", ""),
                    await _read_proxied_body(response),
                )
        except aiohttp.InvalidURL:
            # Only a URL we built can be refused here: a bug, not the network. Its text
            # holds the URL (and a V1 token), so it is not carried along.
            raise RuntimeError(f"aiohttp refused the URL built for {action}") from None
        except (aiohttp.ClientError, OSError) as exc:
            # aiohttp's own errors, and the OS's (TimeoutError, the asyncio timeouts' class
            # since 3.11, and ssl.SSLError are OSErrors). Nothing else is translated.
            lost = self._translate(exc, base)
            log.debug("%s: %s", action, lost)
            raise lost from None

    def _route(self, base: URL) -> Route:
        """Direct or through which proxy (``api/network.py``), decided once per origin."""
        route = self._route_cache.get(base)
        if route is None:
            route = self._route_cache[base] = self._routes.for_url(base)
        return route

    def _answer_error(
        self,
        base: URL,
        action: str,
        *,
        status: int,
        doc: dict[str, Any] | None,
        body: bytes,
        content_type: str,
        retry_after: float | None,
    ) -> EcsError:
        """An error answer (JSON or XML ``<Error>``), or an answer that is not the API's.

        The API puts a RequestId in every answer and a Code in every error: a document with
        either is the API speaking (``ApiError``). Anything else (an HTML page, an empty
        body, another product's JSON) came from some other server: ``TransportError``, so
        it never counts as the service having answered.
        """
        fields: Mapping[str, Any] | None = doc if doc is not None else _xml_error(body)
        if fields is not None:
            code = _field(fields, "Code", "code")
            request_id = _field(fields, "RequestId", "requestId")
            host_id = _field(fields, "HostId", "hostId")
            if code:
                message = _field(fields, "Message", "message") or "(no message)"
                return ApiError(
                    code,
                    self._scrub(message),
                    http_status=status,
                    request_id=request_id,
                    host_id=host_id,
                    retry_after=retry_after,
                )
            if request_id:
                return ApiError(
                    LocalCode.INVALID_RESPONSE,
                    f"{action}: HTTP {status}, an error without a Code",
                    http_status=status,
                    request_id=request_id,
                    host_id=host_id,
                    retry_after=retry_after,
                    error_class=classify("", status),
                )
        what = _describe_body(body, content_type)
        title = _html_title(body)
        if title:
            what += f", titled {self._scrub(title)!r}"
        return self._not_the_api(base, action, status, what, retry_after)

    def _not_the_api(
        self, base: URL, action: str, status: int, what: str, retry_after: float | None
    ) -> TransportError:
        """An HTTP answer with neither a RequestId nor a Code: named with its endpoint, so a
        wrong ``--endpoint`` shows in the message (an origin holds no secret)."""
        return TransportError(
            LocalCode.INVALID_RESPONSE,
            f"{base} answered {action} with HTTP {status} ({what}), not an ECS API answer "
            "(no RequestId)",
            http_status=status,
            retry_after=retry_after,
            error_class=classify("", status),
        )

    def _translate(
        self, exc: HttpFailure | aiohttp.ClientError | OSError, base: URL
    ) -> TransportError:
        """The one place transport exceptions become ``TransportError``; its class is what
        was sent. Only the transport's failures (``HttpFailure``, direct routes) and
        aiohttp's and the OS's (proxied routes) arrive here: anything else is a bug of ours
        and must reach the CLI's internal-error path, not be retried as a lost connection.

        Order matters: aiohttp's connect errors are ``OSError`` subclasses, and its timeouts
        are ``TimeoutError`` (itself an ``OSError``). Messages name the endpoint (an origin
        holds no secret), so a wrong ``--endpoint`` shows in them.
        """
        if isinstance(exc, HttpFailure):
            return TransportError(*self._direct_failure(exc, base))
        import aiohttp  # noqa: PLC0415 - loaded already: only its requests raise these

        code: LocalCode
        proxy = self._route_cache[base].proxy if base in self._route_cache else None
        if isinstance(exc, aiohttp.ClientHttpProxyError):
            # The proxy refused the CONNECT (407, 403, 502 ...): the request was not sent.
            code = LocalCode.CONNECT_FAILED
            message = (
                f"the proxy {proxy} refused a tunnel to {base}: HTTP {exc.status} "
                f"{self._scrub(exc.message)}"
            )
        elif isinstance(exc, aiohttp.ClientProxyConnectionError):
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            code = LocalCode.CONNECT_FAILED
            message = f"cannot connect to the proxy {proxy} (for {base}): {reason}"
        elif isinstance(exc, aiohttp.ConnectionTimeoutError):
            # Raised while acquiring or opening the connection: the request was not written.
            code = LocalCode.CONNECT_FAILED
            message = f"no connection to {base} within {self._settings.connect_timeout:g} s"
        elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
            code = LocalCode.CONNECT_FAILED
            message = f"TLS certificate verification failed for {exc.host}: {exc.certificate_error}"
        elif isinstance(exc, aiohttp.ClientConnectorError):
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            code = LocalCode.CONNECT_FAILED
            message = f"cannot connect to {exc.host}:{exc.port}: {reason}"
        elif isinstance(exc, TimeoutError):
            code = LocalCode.TIMEOUT
            message = (
                f"no answer from {base} within the read timeout ({self._settings.read_timeout:g} s)"
            )
        elif isinstance(exc, aiohttp.ClientResponseError):
            # A malformed HTTP answer (status line, headers): str(exc) would show the URL.
            code = LocalCode.INVALID_RESPONSE
            message = f"malformed HTTP answer from {base}: {self._scrub(exc.message)}"
        elif isinstance(
            exc,
            aiohttp.ServerDisconnectedError
            | aiohttp.ClientPayloadError
            | ConnectionError
            | aiohttp.ClientOSError,
        ):
            code = LocalCode.CONNECTION_LOST
            reason = self._scrub(str(exc)) or type(exc).__name__
            message = f"connection to {base} lost: {reason}"
        else:
            # Any other aiohttp or OS error (TLS, a closed socket): it may have been sent.
            code = LocalCode.CONNECTION_LOST
            message = f"request to {base} failed: {type(exc).__name__}"
        return TransportError(code, message)

    def _direct_failure(self, exc: HttpFailure, base: URL) -> tuple[LocalCode, str]:
        """The code and message of a direct route's failure (``api/transport.py``): its
        class says whether anything was written, and so whether the request may have run."""
        settings = self._settings
        if isinstance(exc, CertificateFailed):
            code = LocalCode.CONNECT_FAILED
            message = f"TLS certificate verification failed for {exc.host}: {exc.reason}"
        elif isinstance(exc, ConnectFailed):
            code = LocalCode.CONNECT_FAILED
            message = f"cannot connect to {exc.host}:{exc.port}: {exc.reason}"
        elif isinstance(exc, ConnectTimeout):
            # Waiting for a pool slot, or opening the connection: nothing was written.
            code = LocalCode.CONNECT_FAILED
            message = f"no connection to {base} within {settings.connect_timeout:g} s"
        elif isinstance(exc, ReadTimeout):
            code = LocalCode.TIMEOUT
            message = f"no answer from {base} within the read timeout ({settings.read_timeout:g} s)"
        elif isinstance(exc, MalformedAnswer):
            code = LocalCode.INVALID_RESPONSE
            message = f"malformed HTTP answer from {base}: {self._scrub(str(exc))}"
        elif isinstance(exc, ConnectionLost):
            code = LocalCode.CONNECTION_LOST
            message = f"connection to {base} lost: {self._scrub(str(exc))}"
        elif isinstance(exc, NotSent):  # a failure class added later: judged by its kind
            code = LocalCode.CONNECT_FAILED
            message = f"request to {base} not sent: {type(exc).__name__}"
        else:
            code = LocalCode.CONNECTION_LOST
            message = f"request to {base} failed: {type(exc).__name__}"
        return code, message

    def _scrub(self, text: str) -> str:
        """Remove every secret and token signed with, raw or (doubly) percent-encoded."""
        for secret in self._hidden:
            once = percent_encode(secret)
            for form in (percent_encode(once), once, secret):
                text = text.replace(form, "****")
        return text


async def _read_body(response: Response) -> bytes | None:
    """The whole body, or None when it exceeds ``MAX_BODY_BYTES``."""
    return await response.read(MAX_BODY_BYTES)


async def _read_proxied_body(response: aiohttp.ClientResponse) -> bytes | None:
    """The whole body from aiohttp, or None when it exceeds ``MAX_BODY_BYTES``."""
    length = response.content_length
    if length is not None and length <= MAX_BODY_BYTES:
        # The usual answer: its length is declared (and held to by the parser), read at once.
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# --- success decoding --------------------------------------------------------------------


def _check_ids(instance_ids: Sequence[str]) -> None:
    if isinstance(instance_ids, str):
        raise TypeError("instance_ids must be a sequence of ids, not one string")
    if len(instance_ids) > MAX_IDS_PER_CALL:
        raise ValueError(f"at most {MAX_IDS_PER_CALL} instance ids per call")


def _malformed(doc: Mapping[str, Any], action: str, what: str) -> ApiError:
    return ApiError(
        LocalCode.INVALID_RESPONSE,
        f"{action}: the answer has no usable {what}",
        http_status=200,
        request_id=_field(doc, "RequestId"),
    )


def _count(doc: Mapping[str, Any], action: str) -> int:
    value = doc.get("TotalCount")
    if isinstance(value, bool):
        raise _malformed(doc, action, "TotalCount")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise _malformed(doc, action, "TotalCount")


def _items(doc: Mapping[str, Any], outer: str, inner: str, action: str) -> list[Mapping[str, Any]]:
    """``doc[outer][inner]`` as a list of objects; an absent or empty ``outer`` is no items."""
    box = doc.get(outer)
    if box is None or box in ("", {}):
        return []
    items = box.get(inner, []) if isinstance(box, dict) else None
    if isinstance(items, dict):  # a lone item, as XML-to-JSON converters sometimes give
        items = [items]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise _malformed(doc, action, f"{outer}.{inner}")
    return items


def _lock_reasons(item: Mapping[str, Any], doc: Mapping[str, Any]) -> tuple[str, ...]:
    """``OperationLocks.LockReason[].LockReason``; absent or empty means not locked."""
    box = item.get("OperationLocks")
    if box is None or box in ("", {}):
        return ()
    locks = box.get("LockReason", []) if isinstance(box, dict) else None
    if isinstance(locks, dict):  # a lone lock, as XML-to-JSON converters sometimes give
        locks = [locks]
    if not isinstance(locks, list) or not all(
        isinstance(lock, dict) and _field(lock, "LockReason") for lock in locks
    ):
        raise _malformed(doc, "DescribeInstances", "OperationLocks.LockReason")
    return tuple(_field(lock, "LockReason") for lock in locks)


def _instance_info(item: Mapping[str, Any], doc: Mapping[str, Any], region: str) -> InstanceInfo:
    vpc = item.get("VpcAttributes")
    return InstanceInfo(
        instance_id=_required(item, "InstanceId", doc, "DescribeInstances"),
        region_id=_field(item, "RegionId") or region,
        status=_field(item, "Status"),
        network_type=_field(item, "InstanceNetworkType"),
        lock_reasons=_lock_reasons(item, doc),
        vpc_id=(_field(vpc, "VpcId") or None) if isinstance(vpc, Mapping) else None,
        zone_id=_field(item, "ZoneId"),
    )


def _required(item: Mapping[str, Any], name: str, doc: Mapping[str, Any], action: str) -> str:
    value = _field(item, name)
    if not value:
        raise _malformed(doc, action, name)
    return value
