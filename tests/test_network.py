"""The proxy and CA decisions on their own (api/network.py), and where the CLI reads them."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from yarl import URL

from bulk_attach.api.network import Routes, bypasses, is_loopback, parse_proxy, tls_context
from bulk_attach.errors import ConfigError, UsageError
from bulk_attach.options import ca_bundle_from, proxies_from
from bulk_attach.settings import ProxySettings

PROXY = "http://proxy.corp.example:3128"


def routes(no_proxy: str = "", http: str | None = PROXY) -> Routes:
    return Routes.from_settings(ProxySettings(https=PROXY, http=http, no_proxy=no_proxy))


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("ecs.cn-hangzhou.aliyuncs.com", 443, "", False),
        ("ecs.cn-hangzhou.aliyuncs.com", 443, "*", True),
        ("ecs.cn-hangzhou.aliyuncs.com", 443, "aliyuncs.com", True),
        ("ecs.cn-hangzhou.aliyuncs.com", 443, ".aliyuncs.com", True),
        ("ecs.cn-hangzhou.aliyuncs.com", 443, "*.aliyuncs.com", True),
        ("aliyuncs.com", 443, ".aliyuncs.com", True),
        ("ECS.cn-hangzhou.Aliyuncs.COM.", 443, "aliyuncs.com", True),
        ("notaliyuncs.com", 443, "aliyuncs.com", False),
        ("ecs.cn-hangzhou.aliyuncs.com", 443, "example.com, other.org", False),
        ("ecs.cn-hangzhou.aliyuncs.com", 443, "example.com,aliyuncs.com", True),
        ("ecs.cn-hangzhou.aliyuncs.com", 443, "aliyuncs.com:443", True),
        ("ecs.cn-hangzhou.aliyuncs.com", 8443, "aliyuncs.com:443", False),
        ("10.1.2.3", 443, "10.0.0.0/8", True),
        ("10.1.2.3", 443, "10.1.2.3", True),
        ("11.1.2.3", 443, "10.0.0.0/8", False),
        ("fd00::5", 443, "fd00::/8", True),
        ("fd00::5", 443, "[fd00::5]:443", True),
        ("10.1.2.3", 443, "example.com", False),
        ("ecs.cn-hangzhou.aliyuncs.com", 443, "10.0.0.0/8", False),
    ],
)
def test_no_proxy(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert bypasses(host, port, no_proxy) is expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("ecs.aliyuncs.com", False),
    ],
)
def test_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_https_goes_through_the_https_proxy_and_its_password_only_in_a_header() -> None:
    decided = Routes.from_settings(
        ProxySettings(https="http://alice:s%40cret@proxy.corp.example:3128")
    ).for_url(URL("https://ecs-cn-hangzhou.aliyuncs.com"))
    assert decided.proxy == URL("http://proxy.corp.example:3128")
    expected = base64.b64encode(b"alice:s@cret").decode()
    assert decided.headers == {"Proxy-Authorization": f"Basic {expected}"}
    assert "s@cret" not in repr(decided)
    assert "cret" not in str(decided.proxy)


def test_a_bare_host_port_proxy_is_http() -> None:
    assert parse_proxy("proxy:8080", "HTTPS_PROXY").proxy == URL("http://proxy:8080")
    assert parse_proxy("https://proxy:8443", "HTTPS_PROXY").proxy == URL("https://proxy:8443")


@pytest.mark.parametrize("text", ["socks5://user:pw@proxy:1080", "http://", "ftp://proxy"])
def test_an_unusable_proxy_is_refused_without_showing_it(text: str) -> None:
    with pytest.raises(ConfigError, match="HTTPS_PROXY") as info:
        Routes.from_settings(ProxySettings(https=text))
    assert "pw" not in str(info.value)


def test_loopback_and_no_proxy_hosts_go_direct() -> None:
    decide = routes(no_proxy="internal.example")
    for url in ("http://127.0.0.1:8080", "https://localhost:1", "http://[::1]:9"):
        assert decide.for_url(URL(url)).proxy is None
    assert decide.for_url(URL("http://api.internal.example")).proxy is None
    assert decide.for_url(URL("https://ecs.cn-beijing.aliyuncs.com")).proxy == URL(PROXY)


def test_no_proxy_configured_is_direct() -> None:
    empty = Routes.from_settings(ProxySettings())
    assert empty.for_url(URL("https://ecs.cn-beijing.aliyuncs.com")).proxy is None
    assert empty.for_url(URL("http://10.1.2.3")).proxy is None


def test_plain_http_through_a_forwarding_proxy_is_refused() -> None:
    with pytest.raises(ConfigError, match="NO_PROXY") as info:
        routes().for_url(URL("http://10.1.2.3:8080"))
    assert "HTTP_PROXY" in str(info.value)
    # The https proxy does not carry http: without HTTP_PROXY it goes direct.
    assert routes(http=None).for_url(URL("http://10.1.2.3:8080")).proxy is None


# --- the CLI's reading of the environment ------------------------------------------------


def test_proxies_from_the_environment_lower_case_first() -> None:
    env = {
        "HTTPS_PROXY": "http://upper:1",
        "https_proxy": "http://lower:1",
        "HTTP_PROXY": "http://plain:2",
        "no_proxy": "",
        "NO_PROXY": ".internal",
    }
    assert proxies_from(env) == ProxySettings(
        https="http://lower:1", http="http://plain:2", no_proxy=".internal"
    )
    assert proxies_from({}) == ProxySettings()


def test_ca_bundle_option_then_ssl_cert_file_then_requests_ca_bundle(tmp_path: Path) -> None:
    a, b, c = (tmp_path / name for name in ("a.pem", "b.pem", "c.pem"))
    for path in (a, b, c):
        path.write_text("x")
    env = {"SSL_CERT_FILE": str(b), "REQUESTS_CA_BUNDLE": str(c)}
    assert ca_bundle_from(a, env) == a
    assert ca_bundle_from(None, env) == b
    assert ca_bundle_from(None, {"REQUESTS_CA_BUNDLE": str(c)}) == c
    assert ca_bundle_from(None, {"SSL_CERT_FILE": ""}) is None
    with pytest.raises(UsageError, match=r"^SSL_CERT_FILE "):
        ca_bundle_from(None, {"SSL_CERT_FILE": str(tmp_path / "missing.pem")})


def test_the_connection_group_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bulk_attach.options import CONNECTION

    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    monkeypatch.setenv("NO_PROXY", ".internal")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    for name in ("https_proxy", "no_proxy", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    defaults = {p.name: p.default for p in CONNECTION.parameters}
    client = CONNECTION.build(**defaults).client
    assert client.proxies.https == PROXY
    assert client.proxies.no_proxy == ".internal"
    assert client.ca_bundle == bundle


# --- the CA bundle -----------------------------------------------------------------------


def test_a_ca_bundle_is_trusted_alone_and_verifies(tmp_path: Path) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    context = tls_context(bundle)
    assert context is not None
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the system's CAs are not added
    assert tls_context(None) is None


def test_an_unusable_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    with pytest.raises(ConfigError, match=r"empty\.pem"):
        tls_context(empty)
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        tls_context(tmp_path / "missing.pem")


def test_only_a_client_that_may_speak_https_reads_the_ca_bundle(tmp_path: Path) -> None:
    from bulk_attach.api.client import EcsClient
    from bulk_attach.api.credentials import Credentials
    from bulk_attach.settings import ClientSettings

    creds = Credentials("LTAIexample", "secret", None, "test")
    unusable = tmp_path / "empty.pem"
    unusable.write_text("no certificate here\n")
    # Plain http to loopback (the emulator): no TLS context is built, so none is checked.
    local = EcsClient(ClientSettings(endpoint="http://127.0.0.1:1", ca_bundle=unusable), creds)
    assert local._tls is None
    for https in (
        ClientSettings(ca_bundle=unusable),  # the official hosts
        ClientSettings(
            endpoint="http://127.0.0.1:1", vpc_endpoint="https://vpc.example", ca_bundle=unusable
        ),
    ):
        with pytest.raises(ConfigError, match=r"empty\.pem"):
            EcsClient(https, creds)


def test_a_plain_http_run_loads_neither_aiohttp_nor_pydantic(tmp_path: Path) -> None:
    """Start-up is paid by every run (issue 10): a direct plain-http run speaks through
    our own transport (aiohttp only for proxied routes and the emulator), and the CLI's
    parameters are parsed without pydantic."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("RegionId,InstanceId,VpcId\ncn-hangzhou,i-imports01,vpc-imports\n")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIimportsimportsimport",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "imports-secret-0123456789abc",
    }
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        env.pop(name, None)
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "bulk_attach",
            "run",
            str(pairs),
            "--endpoint",
            f"http://127.0.0.1:{port}",
            "--report",
            str(tmp_path / "report.csv"),
            "--max-attempts",
            "1",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "bulk_attach.job" in imported, done.stderr[-2000:]  # the run really started
    assert not {m for m in imported if m.split(".")[0] in ("aiohttp", "pydantic")}
