"""Which proxy a request goes through, and which CAs its TLS trusts: small pure decisions.

The CLI reads ``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY`` and the CA bundle options into
``ClientSettings``; nothing here reads the environment. ``Routes`` turns those settings
into one decision per endpoint origin, which the client only applies:

- a loopback endpoint (``localhost``, ``127.0.0.0/8``, ``::1``) never goes through a proxy
  (a proxy cannot reach this machine's loopback; Go's ``ProxyFromEnvironment``, which the
  aliyun CLI uses, does the same);
- a host that ``NO_PROXY`` names goes direct: ``*`` is every host; ``example.com``,
  ``.example.com`` and ``*.example.com`` each match the domain and every name under it;
  ``host:port`` only that port; an IP address or a CIDR (``10.0.0.0/8``) the addresses in it;
- an ``https://`` endpoint goes through the ``HTTPS_PROXY`` with ``CONNECT``: the proxy
  sees the host and port, never the request, whose V1 query holds the STS token;
- an ``http://`` endpoint that the ``HTTP_PROXY`` would forward is refused with
  ``ConfigError``: a forwarding proxy reads the whole signed request in clear.

A proxy URL's user and password become a ``Proxy-Authorization`` header (sent to the proxy
only, in the ``CONNECT``), and never appear in a message.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from yarl import URL

from bulk_attach.errors import ConfigError
from bulk_attach.settings import ProxySettings

__all__ = [
    "DIRECT_NETWORK",
    "Network",
    "Route",
    "Routes",
    "bypasses",
    "is_loopback",
    "parse_proxy",
    "tls_context",
]

_PROXY_SCHEMES = ("http", "https")


def is_loopback(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Route:
    """How to reach one origin: directly (``proxy`` None) or through ``proxy``."""

    proxy: URL | None = None  # without user or password: safe to show
    # ``Proxy-Authorization`` for the proxy, from its URL's user and password; a secret.
    headers: dict[str, str] = field(default_factory=dict, repr=False)


DIRECT = Route()


def parse_proxy(text: str, source: str) -> Route:
    """A proxy URL as ``HTTPS_PROXY`` gives it (a bare ``host:port`` means http://)."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        url = URL(text)
        port = url.explicit_port
    except ValueError:
        raise ConfigError(f"{source} is not a valid proxy URL") from None
    if url.scheme not in _PROXY_SCHEMES or not url.host:
        # The text may hold a password: name the variable, not its value.
        raise ConfigError(
            f"{source}: only http:// and https:// proxies are supported "
            f"(found {url.scheme or 'no'} scheme{'' if url.host else ' and no host'})"
        )
    headers = {}
    if url.raw_user is not None or url.raw_password is not None:
        user = unquote(url.raw_user or "")
        password = unquote(url.raw_password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Proxy-Authorization"] = f"Basic {token}"
    return Route(proxy=URL.build(scheme=url.scheme, host=url.host, port=port), headers=headers)


def _no_proxy_entries(no_proxy: str) -> list[str]:
    return [entry for entry in no_proxy.replace(",", " ").split() if entry]


def bypasses(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` says ``host`` (at ``port``) goes direct."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in _no_proxy_entries(no_proxy.lower()):
        if raw == "*":
            return True
        entry, entry_port = raw, None
        if entry.startswith("["):  # [v6] or [v6]:port
            inside, _, rest = entry[1:].partition("]")
            entry = inside
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
        elif entry.count(":") == 1:
            name, _, maybe_port = entry.partition(":")
            if maybe_port.isdigit():
                entry, entry_port = name, int(maybe_port)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        domain = entry.removeprefix("*").lstrip(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


@dataclass(frozen=True, slots=True)
class Routes:
    """The proxy decision for every endpoint, from the settings the CLI resolved."""

    https: Route | None
    http: Route | None
    no_proxy: str

    @classmethod
    def from_settings(cls, proxies: ProxySettings) -> Routes:
        """``ConfigError`` for a proxy URL that cannot be used: said at start-up."""
        return cls(
            https=parse_proxy(proxies.https, "HTTPS_PROXY") if proxies.https else None,
            http=parse_proxy(proxies.http, "HTTP_PROXY") if proxies.http else None,
            no_proxy=proxies.no_proxy,
        )

    def for_url(self, url: URL) -> Route:
        """The route to ``url``'s origin; ``ConfigError`` where a proxy would read the
        signed request in clear (plain http through a forwarding proxy)."""
        host = url.host or ""
        if is_loopback(host) or bypasses(host, url.port, self.no_proxy):
            return DIRECT
        if url.scheme == "https":
            return self.https or DIRECT
        if self.http is None:
            return DIRECT
        raise ConfigError(
            f"refusing to send signed requests to http://{url.host} through the HTTP_PROXY "
            f"{self.http.proxy}: a proxy forwarding plain http reads every request (a V1 STS "
            f"token travels in the query). Use an https:// endpoint (tunnelled with CONNECT), "
            f"or add {url.host} to NO_PROXY to go direct."
        )


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext | None:
    """A verifying context that trusts only ``ca_bundle`` (a PEM file, or a directory of
    hashed certificates as OpenSSL's ``c_rehash`` makes); None: the system's default.
    ``ConfigError`` when the bundle cannot be read or holds no certificate."""
    if ca_bundle is None:
        return None
    try:
        if ca_bundle.is_dir():
            context = ssl.create_default_context(capath=str(ca_bundle))
        else:
            context = ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError, ValueError) as error:
        reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
        raise ConfigError(f"CA bundle {ca_bundle}: cannot be used ({reason})") from None
    if not ca_bundle.is_dir() and not context.get_ca_certs():
        raise ConfigError(f"CA bundle {ca_bundle}: holds no CA certificate")
    return context


@dataclass(frozen=True, slots=True)
class Network:
    """How the calls made outside ``EcsClient`` (STS's AssumeRole, AssumeRoleWithOIDC and
    GetCallerIdentity) reach their hosts: through the API calls' proxies and CA bundle, so
    a scheduler behind a proxy assumes its role the way it calls ECS."""

    routes: Routes = Routes(https=None, http=None, no_proxy="")
    ca_bundle: Path | None = None

    @classmethod
    def from_settings(cls, proxies: ProxySettings, ca_bundle: Path | None) -> Network:
        """``ConfigError`` for a proxy URL that cannot be used: said at start-up."""
        return cls(Routes.from_settings(proxies), ca_bundle)

    def request_options(self, url: URL) -> dict[str, Any]:
        """aiohttp's per-request ``proxy``, ``proxy_headers`` and ``ssl`` for ``url``
        (``ConfigError`` as ``Routes.for_url``: no signed request through a proxy in clear)."""
        route = self.routes.for_url(url)
        options: dict[str, Any] = {}
        if route.proxy is not None:
            options["proxy"] = route.proxy
            if route.headers:
                options["proxy_headers"] = route.headers
        if url.scheme == "https" and self.ca_bundle is not None:
            options["ssl"] = _tls_context_of(self.ca_bundle)
        return options


DIRECT_NETWORK = Network()


@functools.cache
def _tls_context_of(ca_bundle: Path) -> ssl.SSLContext | None:
    return tls_context(ca_bundle)
