"""The real ``EcsClient`` against a small aiohttp server on loopback.

The server checks every request with the official SDKs' signers (``aliyun-python-sdk-core``
and ``alibabacloud-tea-openapi`` for V1, tea for V3), never with ours, and checks that the
query bytes on the wire are the RFC 3986 canonical form that was signed. Then it answers
whatever shape a test asks for: success, every error class, XML, garbage, a hang, a drop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import aliyunsdkcore.auth.composer.rpc_signature_composer as core_composer  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from alibabacloud_tea_openapi.utils import Utils as TeaUtils  # type: ignore[import-untyped]
from conftest import emulator_settings

from bulk_attach.api import client as client_module
from bulk_attach.api.client import (
    EcsClient,
    InstanceInfo,
    Link,
    VpcInfo,
    endpoint_for,
    parse_endpoint,
)
from bulk_attach.api.credentials import Credentials
from bulk_attach.core.catalog import ErrorClass, LocalCode
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import running_emulator
from bulk_attach.errors import ApiError, ConfigError, EcsError, TransportError
from bulk_attach.settings import ClientSettings, SignatureVersion

core_string_to_sign: Any = getattr(core_composer, "__compose_string_to_sign")
core_signature: Any = getattr(core_composer, "__get_signature")

AK = "LTAI5tClientTestKey01"
SECRET = "client-test-secret-Zq81"
STS_AK = "STS.NTestStsKey0000002"
STS_SECRET = "sts-test-secret-Wp22"
TOKEN = "CAIS-test-sts-token+/=value"
REGION = "cn-hangzhou"
HEX32 = re.compile(r"[0-9a-f]{32}")
AUTH = re.compile(
    r"ACS3-HMAC-SHA256 Credential=(?P<ak>[^,]+),SignedHeaders=(?P<signed>[^,]+),"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)
SIGNATURES = [SignatureVersion.V3, SignatureVersion.V1]

Responder = Callable[["Seen"], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request as the server received it, after the official signers accepted it."""

    signature: str  # "v1" or "v3"
    action: str
    version: str
    params: dict[str, str]  # operation parameters only
    access_key_id: str
    nonce: str
    headers: dict[str, str]
    request: web.Request | None = field(default=None, repr=False)


def _canonical_raw_query(params: dict[str, str]) -> str:
    """What the raw query must be: sorted, RFC 3986 (stdlib here, not our encoder)."""
    return urlencode(sorted(params.items()), safe="~", quote_via=quote)


def _check_time(value: str) -> None:
    moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(moment.timestamp() - time.time()) < 15 * 60


def _check_v1(request: web.Request, secrets: dict[str, str], tokens: dict[str, str]) -> Seen:
    params = dict(request.query)
    assert len(params) == len(request.query), "a parameter was sent twice"
    signature = params.pop("Signature")
    ak = params["AccessKeyId"]
    string_to_sign = core_string_to_sign(request.method, dict(params))
    assert signature == core_signature(string_to_sign, secrets[ak]), "sdk-core disagrees"
    assert signature == TeaUtils.get_rpcsignature(dict(params), request.method, secrets[ak])
    assert params.pop("Format") == "JSON"
    assert params.pop("SignatureMethod") == "HMAC-SHA1"
    assert params.pop("SignatureVersion") == "1.0"
    assert tokens.get(ak) == params.pop("SecurityToken", None)
    nonce = params.pop("SignatureNonce")
    _check_time(params.pop("Timestamp"))
    del params["AccessKeyId"]
    action, version = params.pop("Action"), params.pop("Version")
    return Seen("v1", action, version, params, ak, nonce, dict(request.headers))


def _check_v3(
    request: web.Request, body: bytes, secrets: dict[str, str], tokens: dict[str, str]
) -> Seen:
    match = AUTH.fullmatch(request.headers["Authorization"])
    assert match, request.headers["Authorization"]
    ak, signed = match["ak"], match["signed"].split(";")
    sent = {name.lower() for name in request.headers}
    assert "host" in signed
    assert {name for name in sent if name.startswith("x-acs-")} <= set(signed)
    payload = hashlib.sha256(body).hexdigest()
    assert request.headers["x-acs-content-sha256"] == payload
    official = SimpleNamespace(
        method=request.method,
        pathname=request.path,
        query=dict(request.query),
        headers={name: request.headers[name] for name in signed},
    )
    expected = TeaUtils.get_authorization(official, "ACS3-HMAC-SHA256", payload, ak, secrets[ak])
    assert request.headers["Authorization"] == expected, "tea-openapi disagrees"
    assert tokens.get(ak) == request.headers.get("x-acs-security-token")
    if ak in tokens:
        assert request.headers["x-acs-accesskey-id"] == ak
    _check_time(request.headers["x-acs-date"])
    return Seen(
        "v3",
        request.headers["x-acs-action"],
        request.headers["x-acs-version"],
        dict(request.query),
        ak,
        request.headers["x-acs-signature-nonce"],
        dict(request.headers),
    )


def reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(payload),
        content_type="application/json",
        headers=headers,
    )


def error_body(code: str, message: str = "it went wrong") -> dict[str, str]:
    return {
        "RequestId": "E0000000-0000-4000-8000-000000000001",
        "HostId": "ecs.cn-hangzhou.aliyuncs.com",
        "Code": code,
        "Message": message,
        "Recommend": "https://api.aliyun.com/troubleshoot?q=" + code,
    }


@dataclass
class FakeEcs:
    """A loopback ECS that trusts only the official signers."""

    secrets: dict[str, str] = field(default_factory=lambda: {AK: SECRET, STS_AK: STS_SECRET})
    tokens: dict[str, str] = field(default_factory=lambda: {STS_AK: TOKEN})
    seen: list[Seen] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    timeline: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    respond: Responder | None = None
    endpoint: str = ""
    # DescribeInstances: at most this many per page, whatever MaxResults asks (a capped server).
    instance_page_cap: int = 100

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            assert request.method == "POST"
            assert request.path == "/"
            assert body == b""
            assert "Content-Type" not in request.headers
            raw_query = request.raw_path.partition("?")[2]
            assert raw_query == _canonical_raw_query(dict(request.query)), raw_query
            if "Authorization" in request.headers:
                seen = _check_v3(request, body, self.secrets, self.tokens)
            else:
                seen = _check_v1(request, self.secrets, self.tokens)
            assert HEX32.fullmatch(seen.nonce), seen.nonce
            expected_version = (
                "2016-04-28" if seen.action == "DescribeVpcAttribute" else ("2014-05-26")
            )
            assert seen.version == expected_version
        except Exception as exc:  # any check that fails is a failure of the client
            self.failures.append(f"{type(exc).__name__}: {exc}")
            return reply(400, error_body("SignatureDoesNotMatch", "rejected by the test server"))
        seen.request = request
        self.seen.append(seen)
        self.timeline.append(("request", seen.action))
        if self.respond is not None:
            return await self.respond(seen)
        return self.default(seen)

    def default(self, seen: Seen) -> web.Response:
        rid = f"R{len(self.seen):07d}-0000-4000-8000-000000000000"
        if seen.action in ("AttachClassicLinkVpc", "DetachClassicLinkVpc"):
            return reply(200, {"RequestId": rid, "Echo": seen.params})
        if seen.action == "DescribeClassicLinkInstances":
            wanted = set(seen.params.get("InstanceId", "").split(",")) - {""}
            matching = [
                (i, v)
                for i, v in self.links
                if (not wanted or i in wanted) and v == seen.params.get("VpcId", v)
            ]
            size, number = int(seen.params["PageSize"]), int(seen.params["PageNumber"])
            page = matching[(number - 1) * size : number * size]
            return reply(
                200,
                {
                    "RequestId": rid,
                    "TotalCount": len(matching),
                    "PageNumber": number,
                    "PageSize": size,
                    "Links": {"Link": [{"InstanceId": i, "VpcId": v} for i, v in page]},
                },
            )
        if seen.action == "DescribeInstances":
            ids = json.loads(seen.params["InstanceIds"])
            instances = [
                {
                    "InstanceId": i,
                    "RegionId": seen.params["RegionId"],
                    "ZoneId": seen.params["RegionId"] + "-b",
                    "Status": "Running" if n % 2 == 0 else "Stopped",
                    "InstanceNetworkType": "vpc" if i.startswith("i-vpc") else "classic",
                    "OperationLocks": {
                        "LockReason": [{"LockReason": "security", "LockMsg": "held"}]
                        if i.startswith("i-locked")
                        else []
                    },
                    "VpcAttributes": {"VpcId": "vpc-home" if i.startswith("i-vpc") else ""},
                }
                for n, i in enumerate(ids)
                if not i.startswith("i-gone")
            ]
            size = min(int(seen.params["MaxResults"]), self.instance_page_cap)
            start = int(seen.params.get("NextToken", "t0")[1:])
            more = start + size < len(instances)
            return reply(
                200,
                {
                    "RequestId": rid,
                    "TotalCount": len(instances),
                    "NextToken": f"t{start + size}" if more else "",
                    "Instances": {"Instance": instances[start : start + size]},
                },
            )
        if seen.action == "DescribeVpcAttribute":
            return reply(
                200,
                {
                    "RequestId": rid,
                    "VpcId": seen.params["VpcId"],
                    "RegionId": seen.params["RegionId"],
                    "ClassicLinkEnabled": seen.params["VpcId"] != "vpc-off",
                    "Status": "Available",
                    "CidrBlock": "192.168.0.0/16",
                    "OwnerId": 1234567890123456,
                },
            )
        return reply(404, error_body("InvalidAction.NotFound"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeEcs]:
    server = FakeEcs()
    app = web.Application()
    app.router.add_route("*", "/", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.endpoint = f"http://127.0.0.1:{port}"
    yield server
    server.release.set()
    await runner.cleanup()
    assert server.failures == [], server.failures


class SpyGate:
    def __init__(self, timeline: list[tuple[str, str]]) -> None:
        self.calls: list[tuple[str, str]] = []
        self._timeline = timeline

    async def __call__(self, region: str, action: str) -> None:
        self.calls.append((region, action))
        self._timeline.append(("gate", action))


def make_client(
    fake: FakeEcs | str,
    signature: SignatureVersion = SignatureVersion.V3,
    *,
    sts: bool = False,
    read_timeout: float = 10.0,
    gate: SpyGate | None = None,
) -> EcsClient:
    endpoint = fake if isinstance(fake, str) else fake.endpoint
    settings = ClientSettings(
        endpoint=endpoint, signature=signature, read_timeout=read_timeout, connect_timeout=5.0
    )
    creds = (
        Credentials(STS_AK, STS_SECRET, TOKEN, source="test (sts)")
        if sts
        else Credentials(AK, SECRET, source="test")
    )
    return EcsClient(settings, creds, gate=gate, user_agent="tests/1")


# --- signatures and the wire ---------------------------------------------------------------


@pytest.mark.parametrize("signature", SIGNATURES)
@pytest.mark.parametrize("sts", [False, True])
async def test_attach_is_signed_as_the_official_sdks_sign(
    fake: FakeEcs, signature: SignatureVersion, sts: bool
) -> None:
    async with make_client(fake, signature, sts=sts) as client:
        request_id = await client.attach_classic_link_vpc(REGION, "i-bp1abc", "vpc-bp1xyz")
    assert request_id.startswith("R0000001")
    [seen] = fake.seen
    assert seen.signature == signature.value
    assert seen.action == "AttachClassicLinkVpc"
    assert seen.access_key_id == (STS_AK if sts else AK)
    assert seen.params == {"RegionId": REGION, "InstanceId": "i-bp1abc", "VpcId": "vpc-bp1xyz"}
    assert "tests/1" in seen.headers["User-Agent"]
    assert seen.headers["Accept"] == "application/json"


@pytest.mark.parametrize("signature", SIGNATURES)
async def test_tricky_values_arrive_exactly_as_signed(
    fake: FakeEcs, signature: SignatureVersion
) -> None:
    tricky = ["i-ü x*~+/=&%?#中", "", "a" * 600, "  spaced  ", "%41%2B"]
    async with make_client(fake, signature) as client:
        for value in tricky:
            await client.detach_classic_link_vpc(REGION, value, "vpc-" + value)
    assert [seen.params["InstanceId"] for seen in fake.seen] == tricky
    assert [seen.params["VpcId"] for seen in fake.seen] == ["vpc-" + v for v in tricky]


@pytest.mark.parametrize("signature", SIGNATURES)
async def test_nonce_fresh_per_request(fake: FakeEcs, signature: SignatureVersion) -> None:
    async with make_client(fake, signature) as client:
        for _ in range(5):
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    assert len({seen.nonce for seen in fake.seen}) == 5


async def test_wrong_secret_is_caught_by_the_official_signer(fake: FakeEcs) -> None:
    fake.secrets[AK] = "not-the-secret-the-client-has"
    async with make_client(fake) as client:
        with pytest.raises(ApiError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.error_class is ErrorClass.FATAL
    assert len(fake.failures) == 1
    fake.failures.clear()


# --- the actions ---------------------------------------------------------------------------


@pytest.mark.parametrize("signature", SIGNATURES)
async def test_describe_classic_links_fetches_every_page_through_the_gate(
    fake: FakeEcs, signature: SignatureVersion
) -> None:
    fake.links = [(f"i-{n:04d}", "vpc-a") for n in range(250)] + [("i-other", "vpc-b")]
    gate = SpyGate(fake.timeline)
    async with make_client(fake, signature, gate=gate) as client:
        links = await client.describe_classic_link_instances(REGION, vpc_id="vpc-a")
    assert links == [Link(f"i-{n:04d}", "vpc-a") for n in range(250)]
    assert [(s.params["PageNumber"], s.params["PageSize"]) for s in fake.seen] == [
        ("1", "100"),
        ("2", "100"),
        ("3", "100"),
    ]
    assert gate.calls == [(REGION, "DescribeClassicLinkInstances")] * 3
    # The gate is awaited before each request, once.
    assert (
        fake.timeline
        == [("gate", "DescribeClassicLinkInstances"), ("request", "DescribeClassicLinkInstances")]
        * 3
    )


async def test_describe_classic_links_by_instance_ids(fake: FakeEcs) -> None:
    fake.links = [("i-1", "vpc-a"), ("i-2", "vpc-b"), ("i-3", "vpc-a")]
    async with make_client(fake) as client:
        links = await client.describe_classic_link_instances(
            REGION, instance_ids=["i-1", "i-2", "i-9"]
        )
        both = await client.describe_classic_link_instances(
            REGION, vpc_id="vpc-a", instance_ids=["i-1", "i-2"]
        )
    assert links == [Link("i-1", "vpc-a"), Link("i-2", "vpc-b")]
    assert both == [Link("i-1", "vpc-a")]
    assert fake.seen[0].params["InstanceId"] == "i-1,i-2,i-9"
    assert "VpcId" not in fake.seen[0].params


async def test_describe_classic_links_empty(fake: FakeEcs) -> None:
    async def empty(seen: Seen) -> web.Response:
        return reply(200, {"RequestId": "R1", "TotalCount": 0, "Links": {"Link": []}})

    fake.respond = empty
    async with make_client(fake) as client:
        assert await client.describe_classic_link_instances(REGION, vpc_id="vpc-a") == []


async def test_describe_classic_links_argument_checks(fake: FakeEcs) -> None:
    async with make_client(fake) as client:
        with pytest.raises(ValueError, match="vpc_id or instance_ids"):
            await client.describe_classic_link_instances(REGION)
        with pytest.raises(ValueError, match="100"):
            await client.describe_classic_link_instances(
                REGION, instance_ids=[f"i-{n}" for n in range(101)]
            )
    assert fake.seen == []


async def test_count_classic_links(fake: FakeEcs) -> None:
    fake.links = [(f"i-{n}", "vpc-a") for n in range(998)]
    gate = SpyGate(fake.timeline)
    async with make_client(fake, gate=gate) as client:
        assert await client.count_classic_links(REGION, "vpc-a") == 998
    [seen] = fake.seen
    assert seen.params["PageSize"] == "1"
    assert gate.calls == [(REGION, "DescribeClassicLinkInstances")]


@pytest.mark.parametrize("signature", SIGNATURES)
async def test_describe_instances(fake: FakeEcs, signature: SignatureVersion) -> None:
    async with make_client(fake, signature) as client:
        found = await client.describe_instances(REGION, ["i-a", "i-gone", "i-locked", "i-vpc1"])
        assert await client.describe_instances(REGION, []) == []
    zone = REGION + "-b"
    assert found == [
        InstanceInfo("i-a", REGION, "Running", "classic", zone_id=zone),
        InstanceInfo("i-locked", REGION, "Running", "classic", ("security",), zone_id=zone),
        InstanceInfo("i-vpc1", REGION, "Stopped", "vpc", vpc_id="vpc-home", zone_id=zone),
    ]
    assert [info.locked for info in found] == [False, True, False]
    [seen] = fake.seen  # the empty list sent nothing: it would have listed every instance
    assert json.loads(seen.params["InstanceIds"]) == ["i-a", "i-gone", "i-locked", "i-vpc1"]
    assert seen.params["MaxResults"] == "100"
    assert "PageNumber" not in seen.params
    assert "NextToken" not in seen.params


async def test_describe_instances_follows_next_token(fake: FakeEcs) -> None:
    fake.instance_page_cap = 2
    ids = [f"i-{n}" for n in range(5)]
    gate = SpyGate(fake.timeline)
    async with make_client(fake, gate=gate) as client:
        found = await client.describe_instances(REGION, ids)
    assert [info.instance_id for info in found] == ids
    assert [seen.params.get("NextToken") for seen in fake.seen] == [None, "t2", "t4"]
    assert gate.calls == [(REGION, "DescribeInstances")] * 3  # the gate sees every page


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        ({"NextToken": "same", "Instances": {"Instance": []}}, "NextToken"),
        ({"NextToken": 7, "Instances": {"Instance": []}}, "NextToken"),
        (
            {"Instances": {"Instance": [{"InstanceId": "i-1", "OperationLocks": "x"}]}},
            "OperationLocks.LockReason",
        ),
        (
            {
                "Instances": {
                    "Instance": [
                        {"InstanceId": "i-1", "OperationLocks": {"LockReason": [{"LockMsg": "?"}]}}
                    ]
                }
            },
            "OperationLocks.LockReason",
        ),
    ],
)
async def test_describe_instances_refuses_malformed_answers(
    fake: FakeEcs, answer: dict[str, Any], what: str
) -> None:
    async def respond(seen: Seen) -> web.Response:
        return reply(200, {"RequestId": "R-1", **answer})

    fake.respond = respond
    async with make_client(fake) as client:
        with pytest.raises(ApiError) as info:
            await client.describe_instances(REGION, ["i-1"])
    assert info.value.code == LocalCode.INVALID_RESPONSE
    assert what in str(info.value)
    assert info.value.request_id == "R-1"
    assert len(fake.seen) <= 2  # a repeated token stops at once, it does not page forever


async def test_describe_instances_reads_a_lone_lock_and_absent_parts(fake: FakeEcs) -> None:
    async def respond(seen: Seen) -> web.Response:
        lone = {"LockReason": {"LockReason": "financial", "LockMsg": ""}}
        instances = [
            {"InstanceId": "i-1", "Status": "Running", "OperationLocks": lone},
            {"InstanceId": "i-2", "Status": "Pending", "OperationLocks": {}, "VpcAttributes": ""},
        ]
        return reply(200, {"RequestId": "R-1", "Instances": {"Instance": instances}})

    fake.respond = respond
    async with make_client(fake) as client:
        one, two = await client.describe_instances(REGION, ["i-1", "i-2"])
    assert (one.lock_reasons, one.vpc_id, one.region_id) == (("financial",), None, REGION)
    assert (two.lock_reasons, two.vpc_id, two.status) == ((), None, "Pending")


@pytest.mark.parametrize("signature", SIGNATURES)
async def test_describe_vpc_attribute_uses_the_vpc_api_version(
    fake: FakeEcs, signature: SignatureVersion
) -> None:
    async with make_client(fake, signature) as client:
        on = await client.describe_vpc_attribute(REGION, "vpc-on")
        off = await client.describe_vpc_attribute(REGION, "vpc-off")
    lifecycle = {"status": "Available", "cidr_block": "192.168.0.0/16"}
    assert on == VpcInfo("vpc-on", REGION, True, **lifecycle, owner_id="1234567890123456")
    assert off == VpcInfo("vpc-off", REGION, False, **lifecycle, owner_id="1234567890123456")
    assert {seen.version for seen in fake.seen} == {"2016-04-28"}


# --- the client against the emulator: the lifecycle reads, end to end ----------------------


def lifecycle_world() -> EcsModel:
    model = EcsModel(variant="current")
    model.add_region(REGION)
    for n in range(120):
        model.add_instance(Instance(f"i-{n:03}", REGION))
    model.add_instance(
        Instance("i-held", REGION, status="Stopped", lock_reasons=("financial", "security"))
    )
    model.add_instance(Instance("i-inner", REGION, network_type="vpc", vpc_id="vpc-a"))
    model.add_instance(Instance("i-theirs", REGION, owner="other"))
    model.add_vpc(Vpc("vpc-a", REGION))
    model.add_vpc(Vpc("vpc-b", REGION, classic_link_enabled=False, status="Pending"))
    for n in range(0, 120, 3):
        model.link(f"i-{n:03}", "vpc-a")
    return model


@asynccontextmanager
async def emulated_client() -> AsyncIterator[tuple[EcsClient, EcsModel]]:
    async with running_emulator(lifecycle_world(), emulator_settings()) as running:
        settings = ClientSettings(endpoint=running.endpoint, connect_timeout=5.0)
        creds = Credentials(running.access_key_id, running.access_key_secret, source="test")
        async with EcsClient(settings, creds) as client:
            yield client, running.model


async def test_lifecycle_reads_against_the_emulator() -> None:
    async with emulated_client() as (client, model):
        ids = [f"i-{n:03}" for n in range(97)] + ["i-held", "i-inner", "i-theirs"]
        found = {info.instance_id: info for info in await client.describe_instances(REGION, ids)}
        assert len(found) == 99  # another account's instance is absent
        assert found["i-held"].lock_reasons == ("financial", "security")
        assert found["i-held"].status == "Stopped"
        assert found["i-inner"].vpc_id == "vpc-a"
        assert found["i-000"] == InstanceInfo(
            "i-000", REGION, "Running", "classic", zone_id=f"{REGION}-a"
        )
        vpc_b = await client.describe_vpc_attribute(REGION, "vpc-b")
        assert (vpc_b.classic_link_enabled, vpc_b.status, vpc_b.cidr_block) == (
            False,
            "Pending",
            "172.16.0.0/12",
        )
        assert vpc_b.owner_id.isdigit()
        with pytest.raises(ApiError) as info:
            await client.describe_vpc_attribute(REGION, "vpc-nope")
        assert (info.value.code, info.value.http_status) == ("InvalidVpcID.NotFound", 404)
        assert info.value.error_class is ErrorClass.PERMANENT
        links = await client.describe_classic_link_instances(REGION, instance_ids=ids[:100])
        assert links == [Link(f"i-{n:03}", "vpc-a") for n in range(0, 97, 3)]
        assert len(model.links) == 40


async def test_detach_against_the_emulator_answers_the_current_page() -> None:
    async with emulated_client() as (client, model):
        assert await client.detach_classic_link_vpc(REGION, "i-000", "vpc-a")
        assert "i-000" not in model.links
        with pytest.raises(ApiError) as info:
            await client.detach_classic_link_vpc(REGION, "i-000", "vpc-a")  # not linked now
        assert (info.value.code, info.value.http_status) == ("OperationDenied", 403)
        assert info.value.error_class is ErrorClass.PERMANENT
        with pytest.raises(ApiError) as info:
            await client.detach_classic_link_vpc(REGION, "i-theirs", "vpc-a")
        assert (info.value.code, info.value.http_status) == ("InvalidInstanceId.NotFound", 403)


# --- error answers ---------------------------------------------------------------------------

T, A, N, P, F = (
    ErrorClass.THROTTLED,
    ErrorClass.AMBIGUOUS,
    ErrorClass.NOT_SENT,
    ErrorClass.PERMANENT,
    ErrorClass.FATAL,
)


@pytest.mark.parametrize(
    ("status", "code", "retry_after_header", "error_class", "retry_after"),
    [
        (400, "Throttling.User", "1500", T, 1.5),
        (400, "Throttling", None, T, None),
        (400, "Throttling.Api", "abc", T, None),
        (400, "Throttling.Api", "0", T, None),
        (500, "InternalError", None, A, None),
        (503, "ServiceUnavailable", None, A, None),
        (403, "OperationDenied", None, P, None),
        (400, "Abs.InvalidInstanceId.MalFormed", None, P, None),
        (404, "InvalidInstanceId.NotFound", None, P, None),
        (403, "InvalidInstanceId.NotFound", None, P, None),
        (403, "QuotaExceeded", None, P, None),
        (403, "InvalidStatus.InstanceLocked", None, P, None),
        (400, "SignatureDoesNotMatch", None, F, None),
        (404, "InvalidAccessKeyId.NotFound", None, F, None),
        (400, "InvalidAccessKeyId.NotFound", None, F, None),
        (403, "Forbidden.RAM", None, F, None),
        (400, "SignatureNonceUsed", None, N, None),
        (400, "Brand.New.Code", None, P, None),
        (503, "Brand.New.Code", None, A, None),
        (429, "Brand.New.Code", "250", T, 0.25),
        (400, "Throttling.Brand.New", None, T, None),
    ],
)
async def test_error_answers_are_classified(
    fake: FakeEcs,
    *,
    status: int,
    code: str,
    retry_after_header: str | None,
    error_class: ErrorClass,
    retry_after: float | None,
) -> None:
    async def answer(seen: Seen) -> web.Response:
        headers = {"x-acs-retry-after": retry_after_header} if retry_after_header else None
        return reply(status, error_body(code, f"message for {code}"), headers)

    fake.respond = answer
    async with make_client(fake) as client:
        with pytest.raises(ApiError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    error = info.value
    assert (error.code, error.http_status, error.error_class, error.retry_after) == (
        code,
        status,
        error_class,
        retry_after,
    )
    assert error.message == f"message for {code}"
    assert error.request_id == "E0000000-0000-4000-8000-000000000001"
    assert error.host_id == "ecs.cn-hangzhou.aliyuncs.com"


async def test_xml_error_body(fake: FakeEcs) -> None:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><Error><RequestId>X-1</RequestId>'
        "<HostId>ecs.aliyuncs.com</HostId><Code>OperationDenied</Code>"
        "<Message>The specified VPC are unable to attach &amp; link</Message></Error>"
    )

    async def answer(seen: Seen) -> web.Response:
        return web.Response(status=403, text=xml, content_type="text/xml")

    fake.respond = answer
    async with make_client(fake) as client:
        with pytest.raises(ApiError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    error = info.value
    assert (error.code, error.http_status, error.request_id, error.host_id) == (
        "OperationDenied",
        403,
        "X-1",
        "ecs.aliyuncs.com",
    )
    assert error.message == "The specified VPC are unable to attach & link"
    assert error.error_class is ErrorClass.PERMANENT


NGINX_404 = (
    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    "<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    ("status", "body", "content_type", "error_class"),
    [
        (502, "<html><body>502 Bad Gateway</body></html>", "text/html", A),
        (403, "<html>denied by a proxy</html>", "text/html", P),
        (404, NGINX_404, "text/html", P),
        (200, "<html>a captive portal</html>", "text/html", A),
        (200, "", "text/plain", A),
        (200, '{"NoRequestId": true}', "application/json", A),
        (200, '{"status": "ok", "data": {"items": []}}', "application/json", A),
        (404, '{"message": "Not Found", "code": 404}', "application/json", P),
        (200, "[1, 2, 3]", "application/json", A),
        (500, "\xff\xfe garbage", "application/octet-stream", A),
        (429, "slow down", "text/plain", T),
        (301, "moved", "text/plain", A),
    ],
)
async def test_answers_that_are_not_the_api_are_transport_errors_naming_the_endpoint(
    fake: FakeEcs, status: int, body: str, content_type: str, error_class: ErrorClass
) -> None:
    """No RequestId and no Code: some other server answered, so the service was not
    reached (a TransportError); the class still follows the HTTP status."""

    async def answer(seen: Seen) -> web.Response:
        return web.Response(status=status, text=body, content_type=content_type)

    fake.respond = answer
    async with make_client(fake) as client:
        with pytest.raises(TransportError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    error = info.value
    assert error.code == LocalCode.INVALID_RESPONSE
    assert error.http_status == status
    assert error.error_class is error_class
    assert error.__cause__ is None
    assert f"{fake.endpoint} answered AttachClassicLinkVpc with HTTP {status}" in error.message
    assert "not an ECS API answer" in error.message


async def test_the_title_of_an_html_page_says_what_answered(fake: FakeEcs) -> None:
    async def answer(seen: Seen) -> web.Response:
        return web.Response(status=404, text=NGINX_404, content_type="text/html")

    fake.respond = answer
    async with make_client(fake) as client:
        with pytest.raises(TransportError) as info:
            await client.describe_classic_link_instances(REGION, vpc_id="vpc-a")
    assert "titled '404 Not Found'" in info.value.message


async def test_an_error_with_a_request_id_but_no_code_is_the_api_speaking(fake: FakeEcs) -> None:
    async def answer(seen: Seen) -> web.Response:
        return reply(400, {"RequestId": "R-9", "Message": "no code"})

    fake.respond = answer
    async with make_client(fake) as client:
        with pytest.raises(ApiError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    assert info.value.code == LocalCode.INVALID_RESPONSE
    assert (info.value.http_status, info.value.request_id) == (400, "R-9")
    assert info.value.error_class is ErrorClass.PERMANENT


async def test_a_redirect_is_never_followed(fake: FakeEcs) -> None:
    """The API never redirects; following one would send the signed request elsewhere."""
    elsewhere: list[str] = []

    async def record(request: web.Request) -> web.Response:
        elsewhere.append(request.path_qs)
        return reply(200, {"RequestId": "R-elsewhere"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    target = f"http://127.0.0.1:{runner.addresses[0][1]}/"

    async def redirect(seen: Seen) -> web.Response:
        return web.Response(status=307, headers={"Location": target})

    fake.respond = redirect
    try:
        for signature in SIGNATURES:
            async with make_client(fake, signature, sts=True) as client:
                with pytest.raises(TransportError) as info:
                    await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
            assert info.value.http_status == 307
    finally:
        await runner.cleanup()
    assert elsewhere == []


async def test_malformed_success_is_invalid_response(fake: FakeEcs) -> None:
    async def answer(seen: Seen) -> web.Response:
        return reply(200, {"RequestId": "R-7", "Links": {"Link": "nope"}, "TotalCount": 3})

    fake.respond = answer
    async with make_client(fake) as client:
        with pytest.raises(ApiError) as info:
            await client.describe_classic_link_instances(REGION, vpc_id="vpc-a")
    assert info.value.code == LocalCode.INVALID_RESPONSE
    assert info.value.request_id == "R-7"


async def test_service_messages_are_scrubbed_of_the_token(fake: FakeEcs) -> None:
    """A V1 SignatureDoesNotMatch echoes the string to sign, STS token included."""

    async def answer(seen: Seen) -> web.Response:
        once = quote(TOKEN, safe="~")
        message = (
            "Specified signature is not matched with our calculation. server string to sign "
            f"is:POST&%2F&SecurityToken%3D{quote(once, safe='~')} raw {TOKEN} once {once} "
            f"secret {STS_SECRET}"
        )
        return reply(400, error_body("SignatureDoesNotMatch", message))

    fake.respond = answer
    async with make_client(fake, SignatureVersion.V1, sts=True) as client:
        with pytest.raises(ApiError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    text = f"{info.value} {info.value!r} {info.value.message}"
    assert "server string to sign" in text
    assert TOKEN not in text
    assert quote(TOKEN, safe="~") not in text
    assert quote(quote(TOKEN, safe="~"), safe="~") not in text
    assert STS_SECRET not in text


# --- transport failures ------------------------------------------------------------------


async def test_timeout_is_ambiguous(fake: FakeEcs) -> None:
    async def hang(seen: Seen) -> web.Response:
        await asyncio.wait_for(fake.release.wait(), 30)
        return reply(200, {"RequestId": "late"})

    fake.respond = hang
    async with make_client(fake, read_timeout=0.2) as client:
        with pytest.raises(TransportError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    assert info.value.code == LocalCode.TIMEOUT
    assert info.value.error_class is ErrorClass.AMBIGUOUS
    assert fake.endpoint in info.value.message  # a wrong --endpoint shows
    assert len(fake.seen) == 1  # it was sent: hence ambiguous


async def test_dropped_connection_is_ambiguous(fake: FakeEcs) -> None:
    async def close_transport(seen: Seen) -> web.StreamResponse:
        assert seen.request is not None
        assert seen.request.transport is not None
        seen.request.transport.abort()  # the request was read; no answer will come
        await asyncio.sleep(0)
        return web.Response()

    fake.respond = close_transport
    async with make_client(fake) as client:
        with pytest.raises(TransportError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    assert info.value.code == LocalCode.CONNECTION_LOST
    assert info.value.error_class is ErrorClass.AMBIGUOUS
    assert fake.endpoint in info.value.message
    assert len(fake.seen) == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_not_sent() -> None:
    gate = SpyGate([])
    async with make_client(f"http://127.0.0.1:{closed_port()}", gate=gate) as client:
        with pytest.raises(TransportError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    assert info.value.code == LocalCode.CONNECT_FAILED
    assert info.value.error_class is ErrorClass.NOT_SENT
    assert info.value.__cause__ is None
    assert gate.calls == [(REGION, "AttachClassicLinkVpc")]


@dataclass
class RawServer:
    """A TCP server that answers any request with fixed bytes, then closes."""

    answer: bytes
    endpoint: str = ""
    _server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.answer)
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (b"", LocalCode.CONNECTION_LOST),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"Req', LocalCode.CONNECTION_LOST),
        (b"BANANA 200 nope\r\n\r\n", LocalCode.INVALID_RESPONSE),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n",
            LocalCode.INVALID_RESPONSE,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
            LocalCode.CONNECTION_LOST,
        ),
    ],
)
async def test_broken_http_answers(answer: bytes, code: LocalCode) -> None:
    async with RawServer(answer) as raw, make_client(raw.endpoint) as client:
        with pytest.raises(TransportError) as info:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    assert info.value.code == code
    assert raw.endpoint in info.value.message
    assert info.value.error_class is ErrorClass.AMBIGUOUS
    assert info.value.__cause__ is None


async def test_no_foreign_exception_slips_through(fake: FakeEcs) -> None:
    """Every failure mode, V1 and V3: only EcsError subclasses come out."""

    async def hang(seen: Seen) -> web.Response:
        await asyncio.wait_for(fake.release.wait(), 30)
        return reply(200, {})

    async def html(seen: Seen) -> web.Response:
        return web.Response(status=502, text="<html/>", content_type="text/html")

    async def throttled(seen: Seen) -> web.Response:
        return reply(400, error_body("Throttling.User"), {"x-acs-retry-after": "x"})

    async def empty_200(seen: Seen) -> web.Response:
        return web.Response(status=200, body=b"")

    modes: list[Responder] = [hang, html, throttled, empty_200]
    outcomes: list[type[BaseException]] = []
    for signature in SIGNATURES:
        for responder in modes:
            fake.respond = responder
            async with make_client(fake, signature, read_timeout=0.2) as client:
                with pytest.raises(EcsError) as info:
                    await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
                outcomes.append(type(info.value))
        for answer in (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{", b"NOPE\r\n\r\n"):
            async with RawServer(answer) as raw, make_client(raw.endpoint, signature) as client:
                with pytest.raises(EcsError) as info:
                    await client.describe_instances(REGION, ["i-1"])
                outcomes.append(type(info.value))
        async with make_client(f"http://127.0.0.1:{closed_port()}", signature) as client:
            with pytest.raises(EcsError) as info:
                await client.describe_vpc_attribute(REGION, "vpc-1")
            outcomes.append(type(info.value))
    assert set(outcomes) == {ApiError, TransportError}


# --- the boundary translates the transport's exceptions, and only those --------------------


class FailingGate:
    """A rate gate with a bug: our own code, raising before anything is sent."""

    async def __call__(self, region: str, action: str) -> None:
        raise RuntimeError("a bug in the gate")


async def test_a_bug_in_a_gate_is_not_dressed_up_as_a_network_error(fake: FakeEcs) -> None:
    settings = ClientSettings(endpoint=fake.endpoint)
    async with EcsClient(settings, Credentials(AK, SECRET), gate=FailingGate()) as client:
        with pytest.raises(RuntimeError, match="a bug in the gate"):
            await client.describe_classic_link_instances(REGION, vpc_id="vpc-a")
    assert fake.seen == []


async def test_a_header_we_built_wrong_is_a_bug_not_a_lost_connection(fake: FakeEcs) -> None:
    """aiohttp refuses a control character in a header with a ValueError: that is our
    header, so it must surface as a bug (internal error, --debug traceback), not be
    retried and read back as ``ConnectionLost``."""
    settings = ClientSettings(endpoint=fake.endpoint)
    creds = Credentials(AK, SECRET)
    async with EcsClient(settings, creds, user_agent="tests/1\r\nX-Injected: 1") as client:
        with pytest.raises(ValueError, match="control character"):
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    assert fake.seen == []


async def test_a_bug_while_reading_the_answer_is_not_a_lost_connection(
    fake: FakeEcs, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_read(response: object) -> bytes:
        raise TypeError("a bug in our body reader")

    monkeypatch.setattr(client_module, "_read_body", broken_read)
    async with make_client(fake) as client:
        with pytest.raises(TypeError, match="a bug in our body reader"):
            await client.describe_classic_link_instances(REGION, vpc_id="vpc-a")
    assert len(fake.seen) == 1


@pytest.mark.parametrize("field", ["access_key_id", "security_token"])
def test_a_control_character_in_a_header_credential_is_a_configuration_error(
    field: str,
) -> None:
    values = {"access_key_id": STS_AK, "access_key_secret": STS_SECRET, "security_token": TOKEN}
    values[field] += "\n"
    creds = Credentials(**values, source="profile 'x'")
    with pytest.raises(ConfigError, match="control character") as info:
        EcsClient(ClientSettings(), creds)
    assert values[field] not in str(info.value)


async def test_cancellation_goes_through_untouched(fake: FakeEcs) -> None:
    arrived = asyncio.Event()

    async def hang(seen: Seen) -> web.Response:
        arrived.set()
        await asyncio.wait_for(fake.release.wait(), 30)
        return reply(200, {"RequestId": "late"})

    fake.respond = hang
    async with make_client(fake) as client:
        task = asyncio.create_task(client.attach_classic_link_vpc(REGION, "i-1", "vpc-1"))
        await asyncio.wait_for(arrived.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert task.cancelled()


async def test_tls_to_a_plain_http_server_is_not_sent() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(16)  # the start of a TLS ClientHello, answered in plain HTTP
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(plain, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with make_client(f"https://127.0.0.1:{port}") as client:
            with pytest.raises(TransportError) as info:
                await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.code == LocalCode.CONNECT_FAILED
    assert info.value.error_class is ErrorClass.NOT_SENT


# --- endpoints and configuration ---------------------------------------------------------


def test_default_endpoints() -> None:
    # The official SDKs' hosts (api/endpoints.py): cn-hangzhou is in their maps, others not.
    settings = ClientSettings()
    assert (
        str(endpoint_for(settings, "ecs", "cn-hangzhou")) == "https://ecs-cn-hangzhou.aliyuncs.com"
    )
    assert str(endpoint_for(settings, "vpc", "cn-hangzhou")) == "https://vpc.aliyuncs.com"
    assert str(endpoint_for(settings, "vpc", "ap-southeast-1")) == (
        "https://vpc.ap-southeast-1.aliyuncs.com"
    )
    override = ClientSettings(endpoint="https://proxy.example.com:8443")
    assert str(endpoint_for(override, "vpc", "cn-hangzhou")) == "https://proxy.example.com:8443"


@pytest.mark.parametrize("region", ["evil.com#", "cn-hangzhou/x", "", "CN HZ", "a..b"])
def test_malformed_region_never_becomes_a_host(region: str) -> None:
    with pytest.raises(ApiError) as info:
        endpoint_for(ClientSettings(), "ecs", region)
    assert info.value.code == "InvalidRegionId.Malformed"
    assert info.value.error_class is ErrorClass.PERMANENT


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://[::1]:9", "http://[::1]:9"),
        ("http://127.5.6.7", "http://127.5.6.7"),
        ("ecs.cn-hangzhou.aliyuncs.com", "https://ecs.cn-hangzhou.aliyuncs.com"),
        ("https://ecs.cn-hangzhou.aliyuncs.com/", "https://ecs.cn-hangzhou.aliyuncs.com"),
    ],
)
def test_endpoint_accepted(endpoint: str, expected: str) -> None:
    assert str(parse_endpoint(endpoint)) == expected


@pytest.mark.parametrize(
    ("endpoint", "match"),
    [
        ("http://ecs.cn-hangzhou.aliyuncs.com", "--insecure-http"),
        ("http://10.0.0.1:8080", "--insecure-http"),
        ("ftp://127.0.0.1", "http"),
        ("https://user:pw@example.com", "password"),
        ("https://example.com/base", "path"),
        ("https://example.com/?a=b", "query"),
        ("http://", "host"),
    ],
)
def test_endpoint_refused(endpoint: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_endpoint(endpoint)
    with pytest.raises(ConfigError):
        EcsClient(ClientSettings(endpoint=endpoint), Credentials(AK, SECRET))


def test_insecure_http_with_the_flag() -> None:
    settings = ClientSettings(endpoint="http://ecs.example.com", allow_insecure_http=True)
    client = EcsClient(settings, Credentials(AK, SECRET))
    assert "http://ecs.example.com" in repr(client)


def test_repr_shows_endpoint_and_signature_never_secrets() -> None:
    creds = Credentials(AK, SECRET, TOKEN, source="environment (X)")
    client = EcsClient(ClientSettings(signature=SignatureVersion.V1), creds)
    text = repr(client)
    assert "ecs=official public,vpc=official public" in text
    split = EcsClient(ClientSettings(vpc_endpoint="https://vpc.example.com"), creds)
    assert "ecs=official public,vpc=https://vpc.example.com" in repr(split)
    assert "v1" in text
    assert "environment (X)" in text
    for secret in (SECRET, TOKEN, AK):
        assert secret not in text


async def test_use_outside_context_is_a_programming_error() -> None:
    client = make_client("http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="async with"):
        await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")


async def test_waiting_for_a_pooled_connection_too_long_is_not_sent(fake: FakeEcs) -> None:
    """``connect`` covers the wait for a pool slot: nothing was written, so NOT_SENT."""

    arrived = asyncio.Event()

    async def hang(seen: Seen) -> web.Response:
        arrived.set()
        await asyncio.wait_for(fake.release.wait(), 30)
        return reply(200, {"RequestId": "R-slow"})

    fake.respond = hang
    settings = ClientSettings(endpoint=fake.endpoint, max_connections=1, connect_timeout=0.2)
    async with EcsClient(settings, Credentials(AK, SECRET)) as client:
        slow = asyncio.create_task(client.attach_classic_link_vpc(REGION, "i-1", "vpc-1"))
        await asyncio.wait_for(arrived.wait(), 30)  # the one connection is now busy
        with pytest.raises(TransportError) as info:
            await client.attach_classic_link_vpc(REGION, "i-2", "vpc-1")
        fake.release.set()
        assert await slow == "R-slow"
    assert info.value.code == LocalCode.CONNECT_FAILED
    assert info.value.error_class is ErrorClass.NOT_SENT
    assert [seen.params["InstanceId"] for seen in fake.seen] == ["i-1"]


async def test_debug_logs_never_hold_secrets(
    fake: FakeEcs, caplog: pytest.LogCaptureFixture
) -> None:
    async def deny(seen: Seen) -> web.Response:
        message = f"server string to sign is:POST&%2F&SecurityToken%3D{quote(TOKEN, safe='~')}"
        return reply(400, error_body("SignatureDoesNotMatch", message))

    caplog.set_level("DEBUG")
    for signature in SIGNATURES:
        fake.respond = None
        async with make_client(fake, signature, sts=True) as client:
            await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
            fake.respond = deny
            with pytest.raises(ApiError):
                await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
        async with make_client(f"http://127.0.0.1:{closed_port()}", signature, sts=True) as client:
            with pytest.raises(TransportError):
                await client.attach_classic_link_vpc(REGION, "i-1", "vpc-1")
    # Our records only: the test server's own access log prints the V1 query, token and all.
    logged = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("bulk_attach")
    )
    assert "SignatureDoesNotMatch" in logged
    assert "ConnectFailed" in logged
    for secret in (STS_SECRET, TOKEN, quote(TOKEN, safe="~")):
        assert secret not in logged
