"""The client through a proxy and over TLS with a test CA, everything on 127.0.0.1.

The emulator serves https with a certificate of a test CA (trustme) for the official host
names. A small asyncio proxy in front of it answers ``CONNECT`` (tunnelling every requested
host to the emulator, so the real host names are used and nothing leaves this machine) and
plain forwarding requests (which it records and never forwards). It keeps every byte it
can read in clear; the tests assert that no secret, token or signed query is among them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import trustme

from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import CredentialOptions, Credentials, open_credentials
from bulk_attach.api.identity import caller_identity
from bulk_attach.api.network import Network
from bulk_attach.core.catalog import LocalCode
from bulk_attach.core.outcomes import Status
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.errors import ConfigError, ExitCode, TransportError
from bulk_attach.files.report import read_report
from bulk_attach.job import run_job
from bulk_attach.settings import (
    AttemptSettings,
    ClientSettings,
    ProxySettings,
    RunSettings,
    SignatureVersion,
)

REGION = "cn-hangzhou"
STS_AK = "STS.NProxyTestKey00001"
STS_SECRET = "proxy-test-secret-Kq93"
TOKEN = "CAIS-proxy-test-token+/=value"
PROXY_USER, PROXY_PASSWORD = "alice", "proxy-pass-77"
# The official hosts a cn-hangzhou run reaches (api/endpoints.py), and one more region's.
HOSTS = (
    "ecs-cn-hangzhou.aliyuncs.com",
    "vpc.aliyuncs.com",
    "ecs.cn-shanghai.aliyuncs.com",
    "sts.aliyuncs.com",
)
# Each secret whole, and the token's part that reads the same however it is encoded.
TOKEN_CORE = TOKEN.split("+", 1)[0]
SECRETS = (STS_SECRET, TOKEN, TOKEN_CORE, PROXY_PASSWORD)
# What a signed request shows in clear: the action, the V1 query's names.
SIGNED = (b"AttachClassicLinkVpc", b"Signature=", b"SecurityToken", b"x-acs-")


@dataclass
class Proxy:
    """A CONNECT and forwarding proxy on 127.0.0.1 that records what it reads in clear."""

    upstream_port: int
    deny: bool = False
    port: int = 0
    heads: list[bytes] = field(default_factory=list)  # every request head received
    tunnels: list[str] = field(default_factory=list)  # CONNECT targets served
    forwarded: list[bytes] = field(default_factory=list)  # absolute-form requests
    tunnelled: bytearray = field(default_factory=bytearray)  # client bytes in tunnels

    @property
    def clear(self) -> bytes:
        """Everything the proxy could read: heads, and the tunnelled (TLS) bytes."""
        return b"".join(self.heads) + bytes(self.tunnelled)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "CONNECT":
                self.forwarded.append(head)
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            if self.deny:
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
                )
                await writer.drain()
                return
            self.tunnels.append(target)
            # Every target is the emulator: the host names are checked by TLS, not by DNS.
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(
                self._pipe(reader, up_writer, record=True),
                self._pipe(up_reader, writer, record=False),
            )
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, record: bool
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if record:
                    self.tunnelled += chunk
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()

    def url(self, *, credentials: bool = False) -> str:
        auth = f"{PROXY_USER}:{PROXY_PASSWORD}@" if credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running_proxy(upstream_port: int, *, deny: bool = False) -> AsyncIterator[Proxy]:
    proxy = Proxy(upstream_port=upstream_port, deny=deny)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Tls:
    server: ssl.SSLContext
    bundle: Path  # the test CA, as --ca-bundle takes it


@pytest.fixture(autouse=True)
def _loopback_names_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The official host names are used here on purpose; should a bug ever skip the proxy,
    resolving one must fail at once rather than reach a real DNS server."""
    real = socket.getaddrinfo

    def guarded(host: object, *args: object, **kwargs: object) -> object:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not (name in ("localhost", "::1", "None") or name.startswith("127.")):
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: not resolved in the tests")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert(*HOSTS, "127.0.0.1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    bundle = tmp_path_factory.mktemp("ca") / "test-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return Tls(server=server, bundle=bundle)


def world(count: int = 3) -> EcsModel:
    model = EcsModel()
    model.add_vpc(Vpc("vpc-p", REGION))
    for n in range(count):
        model.add_instance(Instance(f"i-p{n:04d}", REGION))
    return model


def emulator_settings() -> EmulatorSettings:
    return EmulatorSettings(access_keys={STS_AK: STS_SECRET}, security_tokens={STS_AK: TOKEN})


CREDS = Credentials(STS_AK, STS_SECRET, TOKEN, source="test")


@contextlib.asynccontextmanager
async def tls_world(
    tls: Tls, *, deny: bool = False
) -> AsyncIterator[tuple[RunningEmulator, Proxy]]:
    async with (
        running_emulator(world(), emulator_settings(), ssl_context=tls.server) as emu,
        running_proxy(emu.port, deny=deny) as proxy,
    ):
        yield emu, proxy


def assert_nothing_secret_in_clear(proxy: Proxy) -> None:
    clear = proxy.clear
    for secret in SECRETS:
        assert secret.encode() not in clear
    for marker in SIGNED:
        assert marker not in clear


@pytest.mark.parametrize("signature", [SignatureVersion.V1, SignatureVersion.V3])
async def test_the_official_hosts_through_connect_and_the_proxy_reads_no_secret(
    tls: Tls, signature: SignatureVersion
) -> None:
    async with tls_world(tls) as (emu, proxy):
        settings = ClientSettings(
            signature=signature,
            proxies=ProxySettings(https=proxy.url(credentials=True)),
            ca_bundle=tls.bundle,
        )
        async with EcsClient(settings, CREDS) as client:
            await client.attach_classic_link_vpc(REGION, "i-p0000", "vpc-p")
            vpc = await client.describe_vpc_attribute(REGION, "vpc-p")
            links = await client.describe_classic_link_instances(REGION, vpc_id="vpc-p")
    assert emu.model.links == {"i-p0000": "vpc-p"}
    assert vpc.classic_link_enabled
    assert [link.instance_id for link in links] == ["i-p0000"]
    # One tunnel per official host (connections are kept), the proxy's own password in the
    # CONNECT only, and nothing forwarded in clear.
    assert sorted(set(proxy.tunnels)) == [
        "ecs-cn-hangzhou.aliyuncs.com:443",
        "vpc.aliyuncs.com:443",
    ]
    assert proxy.forwarded == []
    auth = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    assert all(f"Proxy-Authorization: Basic {auth}".encode() in head for head in proxy.heads)
    assert len(proxy.tunnelled) > 0
    assert_nothing_secret_in_clear(proxy)


async def test_without_the_test_ca_the_certificate_is_refused(tls: Tls) -> None:
    async with tls_world(tls) as (emu, proxy):
        settings = ClientSettings(proxies=ProxySettings(https=proxy.url()))
        async with EcsClient(settings, CREDS) as client:
            with pytest.raises(TransportError) as info:
                await client.attach_classic_link_vpc(REGION, "i-p0000", "vpc-p")
    assert info.value.code == LocalCode.CONNECT_FAILED
    assert "certificate" in str(info.value)
    assert proxy.tunnels == ["ecs-cn-hangzhou.aliyuncs.com:443"]
    assert emu.model.links == {}
    assert_nothing_secret_in_clear(proxy)


async def test_a_refused_tunnel_is_not_sent_and_names_the_proxy_without_its_password(
    tls: Tls,
) -> None:
    async with tls_world(tls, deny=True) as (emu, proxy):
        settings = ClientSettings(
            signature=SignatureVersion.V1,
            proxies=ProxySettings(https=proxy.url(credentials=True)),
            ca_bundle=tls.bundle,
        )
        async with EcsClient(settings, CREDS) as client:
            with pytest.raises(TransportError) as info:
                await client.attach_classic_link_vpc(REGION, "i-p0000", "vpc-p")
    assert info.value.code == LocalCode.CONNECT_FAILED
    message = str(info.value)
    assert f"127.0.0.1:{proxy.port}" in message
    assert "407" in message
    assert PROXY_PASSWORD not in message
    assert emu.model.links == {}
    assert_nothing_secret_in_clear(proxy)


async def test_no_proxy_sends_direct(tls: Tls) -> None:
    # The endpoint's host is in NO_PROXY: the client connects itself, the proxy sees nothing.
    async with tls_world(tls) as (emu, proxy):
        settings = ClientSettings(
            endpoint=f"https://127.0.0.1:{emu.port}",
            proxies=ProxySettings(https=proxy.url(), no_proxy="127.0.0.0/8"),
            ca_bundle=tls.bundle,
        )
        async with EcsClient(settings, CREDS) as client:
            await client.attach_classic_link_vpc(REGION, "i-p0001", "vpc-p")
    assert emu.model.links == {"i-p0001": "vpc-p"}
    assert proxy.heads == []


async def test_a_loopback_http_endpoint_never_goes_through_the_http_proxy() -> None:
    async with (
        running_emulator(world(), emulator_settings()) as emu,
        running_proxy(emu.port) as proxy,
    ):
        settings = ClientSettings(
            endpoint=emu.endpoint,
            signature=SignatureVersion.V1,
            proxies=ProxySettings(http=proxy.url(), https=proxy.url()),
        )
        async with EcsClient(settings, CREDS) as client:
            await client.attach_classic_link_vpc(REGION, "i-p0002", "vpc-p")
    assert emu.model.links == {"i-p0002": "vpc-p"}
    assert proxy.heads == []


async def test_plain_http_through_a_forwarding_proxy_is_refused_before_any_traffic() -> None:
    async with running_proxy(9) as proxy:
        settings = ClientSettings(
            endpoint="http://10.1.2.3:8080",
            allow_insecure_http=True,
            signature=SignatureVersion.V1,
            proxies=ProxySettings(http=proxy.url()),
        )
        with pytest.raises(ConfigError, match="HTTP_PROXY"):
            EcsClient(settings, CREDS)
        split = ClientSettings(
            vpc_endpoint="http://10.1.2.3:8080",
            allow_insecure_http=True,
            proxies=ProxySettings(http=proxy.url()),
        )
        with pytest.raises(ConfigError, match="NO_PROXY"):
            EcsClient(split, CREDS)
    assert proxy.heads == []


async def test_the_forwarding_proxy_does_read_what_plain_http_sends() -> None:
    # The control for the tests above: what a client sends through it in absolute form,
    # query and token included, is exactly what this proxy records.
    async with running_proxy(9) as proxy:
        query = f"Action=AttachClassicLinkVpc&SecurityToken={quote(TOKEN, safe='')}"
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://api.invalid/?{query}", proxy=proxy.url()) as response,
        ):
            assert response.status == 502
    assert len(proxy.forwarded) == 1
    assert TOKEN_CORE.encode() in proxy.clear
    with pytest.raises(AssertionError):
        assert_nothing_secret_in_clear(proxy)


async def test_a_whole_run_through_the_proxy_over_tls(tls: Tls, tmp_path: Path) -> None:
    pairs = [(REGION, f"i-p{n:04d}", "vpc-p") for n in range(3)]
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(
        "RegionId,InstanceId,VpcId\n" + "".join(f"{','.join(p)}\n" for p in pairs),
        encoding="utf-8",
    )
    async with tls_world(tls) as (emu, proxy):
        client = ClientSettings(
            signature=SignatureVersion.V1,
            proxies=ProxySettings(https=proxy.url()),
            ca_bundle=tls.bundle,
            read_timeout=5.0,
        )
        settings = RunSettings(
            input_path=csv_path,
            report_path=tmp_path / "report.csv",
            rate=None,
            attempts=AttemptSettings(base_delay=0.005, max_delay=0.05),
        )
        result = await run_job(settings, client, CREDS)
    assert result.exit_code == ExitCode.OK
    assert {row.status for row in read_report(result.report_path)} == {Status.ATTACHED}
    assert emu.model.links == {instance: vpc for _, instance, vpc in pairs}
    assert set(proxy.tunnels) <= {"ecs-cn-hangzhou.aliyuncs.com:443", "vpc.aliyuncs.com:443"}
    assert proxy.forwarded == []
    assert_nothing_secret_in_clear(proxy)


async def test_sts_is_reached_through_the_proxy_and_the_ca_bundle_too(tls: Tls) -> None:
    """A scheduler behind a proxy assumes its role (--ram-role-arn) and asks who it is
    (-v, whoami) through the same proxy and CA bundle as its API calls: once, STS went
    direct with the system's CAs, which a proxied network cannot reach."""
    async with tls_world(tls) as (_, proxy):
        proxies = ProxySettings(https=proxy.url(credentials=True))
        options = CredentialOptions(
            access_key_id=STS_AK,
            access_key_secret=STS_SECRET,
            security_token=TOKEN,
            ram_role_arn="acs:ram::1234567890123456:role/bulk-attach-proxy",
            network=Network.from_settings(proxies, tls.bundle),
        )
        provider = await open_credentials(options, {})
        try:
            assumed = await provider.current()
            identity = await caller_identity(
                provider, {}, ClientSettings(proxies=proxies, ca_bundle=tls.bundle)
            )
        finally:
            await provider.aclose()
    assert assumed.security_token
    assert assumed.access_key_id != STS_AK
    assert "assumed-role/bulk-attach-proxy" in identity.arn
    assert proxy.tunnels == ["sts.aliyuncs.com:443", "sts.aliyuncs.com:443"]
    assert proxy.forwarded == []
    assert_nothing_secret_in_clear(proxy)
    assert assumed.access_key_secret.encode() not in proxy.clear
    assert (assumed.security_token or "").encode() not in proxy.clear
