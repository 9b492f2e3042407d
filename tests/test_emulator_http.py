"""The emulator's HTTP layer over raw HTTP: parsing, auth, routing, errors, faults, control.

Requests are built by hand with aiohttp and ``bulk_attach.api.signing``; the official SDKs
check the same server independently in ``test_emulator_sdk.py``. Time comes from a fake
clock the tests move, so skew, nonce expiry and flow control never depend on real time.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import aiohttp
import pytest
from conftest import emulator_settings
from multidict import CIMultiDict

from bulk_attach.api.signing import (
    canonical_query,
    percent_encode,
    sha256_hex,
    sign_v1,
    v1_string_to_sign,
    v3_authorization,
    v3_canonical_request,
    v3_string_to_sign,
)
from bulk_attach.emulator.auth import NonceMemory
from bulk_attach.emulator.faults import Fault, FaultSettings, LimiterShape, RateLimiter
from bulk_attach.emulator.http import parse_wire
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import (
    EmulatorSettings,
    RunningEmulator,
    create_app,
    generate_credentials,
    running_emulator,
    serve,
)

REGION = "cn-hangzhou"
ECS = "2014-05-26"
VPC = "2016-04-28"
AK = "LTAI0123456789abcdefghij"
SECRET = "s3cr3t-0123456789-abcdefghijkl"
START = 1_800_000_000.0
UUID_UPPER = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def parse_xml(text: str) -> ElementTree.Element:
    """Parse the emulator's own XML (trusted: it is the code under test)."""
    return ElementTree.fromstring(text)  # noqa: S314


def stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_world(variant: str = "2018") -> EcsModel:
    model = EcsModel(variant=variant)
    model.add_region(REGION)
    for name in ("i-a", "i-b", "i-c"):
        model.add_instance(Instance(name, REGION))
    model.add_instance(Instance("i-vpc", REGION, network_type="vpc"))
    model.add_vpc(Vpc("vpc-a", REGION))
    model.add_vpc(Vpc("vpc-off", REGION, classic_link_enabled=False))
    model.add_vpc(Vpc("vpc-tiny", REGION, quota=0))
    model.link("i-c", "vpc-a")
    return model


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def code(self) -> str:
        return str(self.json["Code"])


class Harness:
    """A running emulator, a fake clock and a session that signs like a client."""

    def __init__(self, running: RunningEmulator, session: aiohttp.ClientSession, clock: FakeClock):
        self.running = running
        self.session = session
        self.clock = clock

    @property
    def url(self) -> str:
        return self.running.endpoint + "/"

    def v1_params(
        self,
        action: str,
        params: Mapping[str, str],
        *,
        method: str = "GET",
        version: str = ECS,
        fmt: str | None = "JSON",
        ak: str = AK,
        secret: str = SECRET,
        nonce: str | None = None,
        timestamp: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        signed = {
            "Action": action,
            "Version": version,
            "AccessKeyId": ak,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "Timestamp": timestamp or stamp(self.clock.now),
            **params,
            **(extra or {}),
        }
        if fmt is not None:
            signed["Format"] = fmt
        signed["Signature"] = sign_v1(method, signed, secret)
        return signed

    async def raw(
        self,
        method: str,
        query: str = "",
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        client_timeout: float | None = None,
    ) -> Answer:
        url = self.url + (f"?{query}" if query else "")
        timeout = aiohttp.ClientTimeout(total=client_timeout)
        async with self.session.request(
            method, url, data=body, headers=headers, timeout=timeout
        ) as response:
            return Answer(response.status, dict(response.headers), await response.text())

    async def v1(self, action: str, params: Mapping[str, str], **kw: Any) -> Answer:
        # POST, as the SDKs send; aiohttp resends a GET whose connection drops.
        method = kw.pop("method", "POST")
        signed = self.v1_params(action, params, method=method, **kw)
        return await self.raw(method, canonical_query(signed))

    def v3_request(
        self,
        action: str,
        query: Mapping[str, str],
        *,
        version: str = ECS,
        secret: str = SECRET,
        nonce: str | None = None,
        date: str | None = None,
        body: bytes = b"",
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[str, dict[str, str]]:
        signed = {
            "host": f"127.0.0.1:{self.running.port}",
            "x-acs-action": action,
            "x-acs-version": version,
            "x-acs-date": date or stamp(self.clock.now),
            "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
            "x-acs-content-sha256": sha256_hex(body),
            **(extra_headers or {}),
        }
        auth = v3_authorization(
            AK, secret, "POST", "/", query, signed, signed["x-acs-content-sha256"]
        )
        headers = {name: value for name, value in signed.items() if name != "host"}
        headers["Authorization"] = auth
        return canonical_query(query), headers

    async def v3(self, action: str, query: Mapping[str, str], **kw: Any) -> Answer:
        raw_query, headers = self.v3_request(action, query, **kw)
        return await self.raw("POST", raw_query, headers=headers)

    async def state(self) -> dict[str, Any]:
        async with self.session.get(self.running.endpoint + "/_emulator/state") as response:
            assert response.status == 200
            data: dict[str, Any] = await response.json()
            return data

    async def control(self, path: str, payload: Any = None) -> tuple[int, Any]:
        async with self.session.post(
            self.running.endpoint + f"/_emulator/{path}", json=payload
        ) as response:
            return response.status, await response.json()


@asynccontextmanager
async def harness(model: EcsModel | None = None, **settings: Any) -> AsyncIterator[Harness]:
    clock = FakeClock()
    options: dict[str, Any] = {"access_keys": {AK: SECRET}, "clock": clock, **settings}
    async with (
        running_emulator(model or make_world(), emulator_settings(**options)) as running,
        aiohttp.ClientSession() as session,
    ):
        yield Harness(running, session, clock)


ATTACH_A = {"RegionId": REGION, "InstanceId": "i-a", "VpcId": "vpc-a"}
LINKS_A = {"RegionId": REGION, "VpcId": "vpc-a"}


# --- parsing ---------------------------------------------------------------------------


async def test_get_with_query_attaches_and_answers_json() -> None:
    async with harness() as h:
        answer = await h.v1("AttachClassicLinkVpc", ATTACH_A, method="GET")
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("application/json")
        assert UUID_UPPER.match(answer.json["RequestId"])
        assert h.running.model.links["i-a"] == "vpc-a"


async def test_post_with_query_and_empty_body_like_the_sdks() -> None:
    async with harness() as h:
        signed = h.v1_params("AttachClassicLinkVpc", ATTACH_A, method="POST")
        answer = await h.raw("POST", canonical_query(signed))
        assert answer.status == 200, answer.text
        assert h.running.model.links["i-a"] == "vpc-a"


async def test_post_form_body_parameters_are_read_and_signed() -> None:
    async with harness() as h:
        signed = h.v1_params("AttachClassicLinkVpc", ATTACH_A, method="POST")
        in_query = {k: v for k, v in signed.items() if k in ("Action", "Signature")}
        in_body = {k: v for k, v in signed.items() if k not in in_query}
        answer = await h.raw(
            "POST",
            canonical_query(in_query),
            body=canonical_query(in_body).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status == 200, answer.text
        assert h.running.model.links["i-a"] == "vpc-a"


async def test_plus_in_the_query_is_a_space() -> None:
    async with harness() as h:
        h.running.model.link("i-b", "vpc-a")
        # Signed with a space; sent form-style with "+", as one SDK does.
        signed = h.v1_params(
            "DescribeClassicLinkInstances", {"RegionId": REGION, "InstanceId": "i-b, i-c"}
        )
        query = canonical_query(signed).replace("%20", "+")
        assert "+" in query
        answer = await h.raw("GET", query)
        assert answer.status == 200, answer.text
        links = answer.json["Links"]["Link"]
        assert [link["InstanceId"] for link in links] == ["i-b", "i-c"]


async def test_blank_values_are_kept_and_signed() -> None:
    async with harness() as h:
        extra = {"SignatureType": ""}
        signed = h.v1_params("DescribeClassicLinkInstances", LINKS_A, extra=extra)
        answer = await h.raw("GET", canonical_query(signed))
        assert answer.status == 200, answer.text
        # The blank parameter is part of what is signed: leave it out of the signature and
        # the server's recomputation (which keeps it) no longer matches.
        unsigned = h.v1_params("DescribeClassicLinkInstances", LINKS_A)
        answer = await h.raw("GET", canonical_query(unsigned) + "&SignatureType=")
        assert answer.status == 400
        assert answer.code == "SignatureDoesNotMatch"


def test_parse_wire_merges_query_and_form_and_keeps_blanks() -> None:
    headers = CIMultiDict({"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    parsed = parse_wire("POST", "h", "A=1&B=&C=x+y", headers, b"D=%2B&A=2")
    assert parsed.query == {"A": "1", "B": "", "C": "x y"}
    assert parsed.params == {"A": "2", "B": "", "C": "x y", "D": "+"}
    other = parse_wire("POST", "h", "A=1", CIMultiDict({"Content-Type": "text/plain"}), b"D=1")
    assert other.params == {"A": "1"}


async def test_xml_is_the_default_without_format_and_on_request() -> None:
    async with harness() as h:
        answer = await h.v1("AttachClassicLinkVpc", ATTACH_A, fmt=None)
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/xml")
        root = parse_xml(answer.text)
        assert root.tag == "AttachClassicLinkVpcResponse"
        assert UUID_UPPER.match(root.findtext("RequestId") or "")

        answer = await h.v1("DescribeClassicLinkInstances", LINKS_A, fmt="XML")
        root = parse_xml(answer.text)
        assert root.findtext("TotalCount") == "2"
        assert [e.findtext("InstanceId") for e in root.iter("Link")] == ["i-a", "i-c"]

        error = await h.v1("AttachClassicLinkVpc", {**ATTACH_A, "InstanceId": "i-nope"}, fmt="XML")
        assert error.status == 404
        root = parse_xml(error.text)
        assert root.tag == "Error"
        assert {child.tag for child in root} == ERROR_KEYS
        assert root.findtext("Code") == "InvalidInstanceId.NotFound"


async def test_lower_case_json_format() -> None:
    async with harness() as h:
        answer = await h.v1("DescribeClassicLinkInstances", LINKS_A, fmt="json")
        assert answer.json["TotalCount"] == 1


async def test_v3_answers_json_without_format_and_xml_when_asked() -> None:
    async with harness() as h:
        answer = await h.v3("DescribeClassicLinkInstances", LINKS_A)
        assert answer.status == 200, answer.text
        assert answer.json["Links"]["Link"] == [{"InstanceId": "i-c", "VpcId": "vpc-a"}]
        answer = await h.v3("DescribeClassicLinkInstances", {**LINKS_A, "Format": "XML"})
        assert parse_xml(answer.text).tag == "DescribeClassicLinkInstancesResponse"


async def test_unsupported_method() -> None:
    async with harness() as h:
        answer = await h.raw(
            "PUT", canonical_query(h.v1_params("DescribeClassicLinkInstances", LINKS_A))
        )
        assert (answer.status, answer.code) == (400, "UnsupportedHTTPMethod")


# --- authentication --------------------------------------------------------------------


async def test_unknown_access_key() -> None:
    async with harness() as h:
        answer = await h.v1("DescribeClassicLinkInstances", LINKS_A, ak="LTAInobody")
        assert (answer.status, answer.code) == (404, "InvalidAccessKeyId.NotFound")
        answer = await h.v3("DescribeClassicLinkInstances", LINKS_A, extra_headers={})
        assert answer.status == 200


async def test_v1_wrong_secret_carries_the_server_string_to_sign() -> None:
    async with harness() as h:
        signed = h.v1_params("DescribeClassicLinkInstances", LINKS_A, secret="wrong")
        answer = await h.raw("GET", canonical_query(signed))
        assert (answer.status, answer.code) == (400, "SignatureDoesNotMatch")
        expected = v1_string_to_sign("GET", signed)
        assert answer.json["Message"].endswith(f"server string to sign is:{expected}")
        assert set(answer.json) == ERROR_KEYS


async def test_v1_method_is_part_of_the_signature() -> None:
    async with harness() as h:
        signed = h.v1_params("DescribeClassicLinkInstances", LINKS_A, method="GET")
        answer = await h.raw("POST", canonical_query(signed))
        assert answer.code == "SignatureDoesNotMatch"
        assert answer.json["Message"].endswith(v1_string_to_sign("POST", signed))


@pytest.mark.parametrize("name", ["AccessKeyId", "Signature", "SignatureNonce", "Timestamp"])
async def test_v1_missing_pieces(name: str) -> None:
    async with harness() as h:
        signed = h.v1_params("DescribeClassicLinkInstances", LINKS_A)
        del signed[name]
        answer = await h.raw("GET", canonical_query(signed))
        assert (answer.status, answer.code) == (400, "MissingParameter")
        assert f'"{name}"' in answer.json["Message"]


async def test_v1_wrong_signature_method_is_incomplete() -> None:
    async with harness() as h:
        answer = await h.v1(
            "DescribeClassicLinkInstances", LINKS_A, extra={"SignatureMethod": "MD5"}
        )
        assert (answer.status, answer.code) == (400, "IncompleteSignature")


async def test_v3_wrong_secret_carries_the_server_string_to_sign() -> None:
    async with harness() as h:
        query, headers = h.v3_request("DescribeClassicLinkInstances", LINKS_A, secret="wrong")
        answer = await h.raw("POST", query, headers=headers)
        assert (answer.status, answer.code) == (400, "SignatureDoesNotMatch")
        signed = {k: v for k, v in headers.items() if k != "Authorization"}
        signed["host"] = f"127.0.0.1:{h.running.port}"
        canonical, _ = v3_canonical_request(
            "POST", "/", LINKS_A, signed, headers["x-acs-content-sha256"]
        )
        assert answer.json["Message"].endswith(
            f"server string to sign is:{v3_string_to_sign(canonical)}"
        )


async def test_v3_malformed_authorization_and_missing_headers() -> None:
    async with harness() as h:
        query, headers = h.v3_request("DescribeClassicLinkInstances", LINKS_A)
        bad = {**headers, "Authorization": "ACS3-HMAC-SHA256 nonsense"}
        answer = await h.raw("POST", query, headers=bad)
        assert (answer.status, answer.code) == (400, "IncompleteSignature")

        no_date = {k: v for k, v in headers.items() if k != "x-acs-date"}
        answer = await h.raw("POST", query, headers=no_date)
        assert (answer.status, answer.code) == (400, "MissingParameter")
        assert "x-acs-date" in answer.json["Message"]


async def test_v3_body_hash_must_match_the_body() -> None:
    async with harness() as h:
        query, headers = h.v3_request("DescribeClassicLinkInstances", LINKS_A)  # hash of b""
        answer = await h.raw("POST", query, headers=headers, body=b"X=1")
        assert (answer.status, answer.code) == (400, "IncompleteSignature")
        assert "x-acs-content-sha256" in answer.json["Message"]


async def test_v3_with_a_signed_form_body() -> None:
    async with harness() as h:
        body = canonical_query({"InstanceId": "i-a", "VpcId": "vpc-a"}).encode()
        query, headers = h.v3_request(
            "AttachClassicLinkVpc",
            {"RegionId": REGION},
            body=body,
            extra_headers={"content-type": "application/x-www-form-urlencoded"},
        )
        headers["Content-Type"] = headers.pop("content-type")
        answer = await h.raw("POST", query, headers=headers, body=body)
        assert answer.status == 200, answer.text
        assert h.running.model.links["i-a"] == "vpc-a"


async def test_v3_unsigned_acs_header_is_refused() -> None:
    async with harness() as h:
        query, headers = h.v3_request("DescribeClassicLinkInstances", LINKS_A)
        answer = await h.raw("POST", query, headers={**headers, "x-acs-extra": "1"})
        assert (answer.status, answer.code) == (400, "IncompleteSignature")


async def test_sts_token_is_required_for_sts_keys() -> None:
    async with harness(security_tokens={AK: "token-1"}) as h:
        answer = await h.v1("DescribeClassicLinkInstances", LINKS_A)
        assert (answer.status, answer.code) == (400, "InvalidSecurityToken.Malformed")
        answer = await h.v1(
            "DescribeClassicLinkInstances", LINKS_A, extra={"SecurityToken": "token-2"}
        )
        assert answer.code == "InvalidSecurityToken.Malformed"
        answer = await h.v1(
            "DescribeClassicLinkInstances", LINKS_A, extra={"SecurityToken": "token-1"}
        )
        assert answer.status == 200, answer.text
        answer = await h.v3(
            "DescribeClassicLinkInstances",
            LINKS_A,
            extra_headers={"x-acs-security-token": "token-1"},
        )
        assert answer.status == 200, answer.text
        assert h.running.security_token == "token-1"


async def test_token_for_a_plain_key_is_refused() -> None:
    async with harness() as h:
        answer = await h.v1("DescribeClassicLinkInstances", LINKS_A, extra={"SecurityToken": "t"})
        assert answer.code == "InvalidSecurityToken.Malformed"


async def test_replayed_nonce_is_refused_for_v1_and_v3() -> None:
    async with harness() as h:
        signed = h.v1_params("AttachClassicLinkVpc", ATTACH_A)
        first = await h.raw("GET", canonical_query(signed))
        again = await h.raw("GET", canonical_query(signed))
        assert first.status == 200
        assert (again.status, again.code) == (400, "SignatureNonceUsed")

        query, headers = h.v3_request("DescribeClassicLinkInstances", LINKS_A, nonce="n-1")
        assert (await h.raw("POST", query, headers=headers)).status == 200
        replay = await h.raw("POST", query, headers=headers)
        assert replay.code == "SignatureNonceUsed"
        state = await h.state()
        assert state["calls"]["AttachClassicLinkVpc"] == {"OK": 1, "SignatureNonceUsed": 1}


async def test_a_forged_request_does_not_burn_the_nonce() -> None:
    async with harness() as h:
        forged = await h.v1("DescribeClassicLinkInstances", LINKS_A, secret="x", nonce="n-9")
        assert forged.code == "SignatureDoesNotMatch"
        honest = await h.v1("DescribeClassicLinkInstances", LINKS_A, nonce="n-9")
        assert honest.status == 200


def test_nonce_memory_forgets_after_its_window_and_beyond_capacity() -> None:
    memory = NonceMemory(window=10.0, capacity=3)
    assert memory.remember("a", 0.0)
    assert not memory.remember("a", 9.0)
    assert memory.remember("a", 10.5)  # the first "a" expired at 10
    for name in ("b", "c", "d"):
        assert memory.remember(name, 11.0)
    assert len(memory) == 3
    assert memory.remember("a", 11.0)  # "a" was evicted as the oldest


@pytest.mark.parametrize(("skew", "ok"), [(900, True), (-900, True), (901, False), (-901, False)])
async def test_timestamp_skew_v1(skew: int, ok: bool) -> None:
    async with harness() as h:
        answer = await h.v1("DescribeClassicLinkInstances", LINKS_A, timestamp=stamp(START + skew))
        if ok:
            assert answer.status == 200, answer.text
        else:
            assert (answer.status, answer.code) == (400, "InvalidTimeStamp.Expired")


async def test_timestamp_skew_v3_and_bad_format() -> None:
    async with harness() as h:
        answer = await h.v3("DescribeClassicLinkInstances", LINKS_A, date=stamp(START - 1000))
        assert (answer.status, answer.code) == (400, "InvalidTimeStamp.Expired")
        h.clock.now = START - 1000  # the server's clock agrees now
        answer = await h.v3("DescribeClassicLinkInstances", LINKS_A, date=stamp(START - 1000))
        assert answer.status == 200
        answer = await h.v1("DescribeClassicLinkInstances", LINKS_A, timestamp="yesterday")
        assert (answer.status, answer.code) == (400, "InvalidTimeStamp.Format")


# --- routing and errors ----------------------------------------------------------------


async def test_unknown_action_and_version() -> None:
    async with harness() as h:
        answer = await h.v1("RunInstances", LINKS_A)
        assert (answer.status, answer.code) == (404, "InvalidAction.NotFound")
        answer = await h.v1("DescribeVpcAttribute", {"RegionId": REGION, "VpcId": "vpc-a"})
        assert answer.code == "InvalidAction.NotFound"  # an ECS version names no VPC action
        answer = await h.v1("DescribeClassicLinkInstances", LINKS_A, version="2099-01-01")
        assert (answer.status, answer.code) == (400, "InvalidVersion")


@pytest.mark.parametrize("name", ["RegionId", "InstanceId", "VpcId"])
async def test_missing_required_parameter_is_named(name: str) -> None:
    async with harness() as h:
        params = {k: v for k, v in ATTACH_A.items() if k != name}
        answer = await h.v1("AttachClassicLinkVpc", params)
        assert (answer.status, answer.code) == (400, "MissingParameter")
        assert f'"{name}"' in answer.json["Message"]
        assert not h.running.model.links.get("i-a")


async def test_error_body_shape_and_host_id() -> None:
    async with harness() as h:
        answer = await h.v1("AttachClassicLinkVpc", {**ATTACH_A, "InstanceId": "i-nope"})
        body = answer.json
        assert set(body) == ERROR_KEYS
        assert (answer.status, body["Code"]) == (404, "InvalidInstanceId.NotFound")
        assert body["HostId"] == f"ecs.{REGION}.aliyuncs.com"
        assert UUID_UPPER.match(body["RequestId"])
        assert body["RequestId"] in body["Recommend"]


@pytest.mark.parametrize(
    ("variant", "instance", "vpc", "code", "status"),
    [
        ("2018", "i-nope", "vpc-a", "InvalidInstanceId.NotFound", 404),
        ("current", "i-nope", "vpc-a", "InvalidInstanceId.NotFound", 403),
        ("2018", "i-vpc", "vpc-a", "InvalidInstanceId.MalFormed", 400),
        ("current", "i-vpc", "vpc-a", "InvalidInstanceId.MalFormed", 403),
        ("2018", "i-a", "vpc-off", "OperationDenied", 403),
        ("2018", "i-a", "vpc-tiny", "QuotaExceeded", 403),
        ("current", "i-a", "vpc-tiny", "QuotaExceeded", 403),
    ],
)
async def test_model_errors_take_their_status_from_the_catalog(
    variant: str, instance: str, vpc: str, code: str, status: int
) -> None:
    async with harness(make_world(variant)) as h:
        answer = await h.v1(
            "AttachClassicLinkVpc", {**ATTACH_A, "InstanceId": instance, "VpcId": vpc}
        )
        assert (answer.status, answer.code) == (status, code)


async def test_detach_and_describe_links_paging() -> None:
    async with harness() as h:
        for name in ("i-a", "i-b"):
            assert (
                await h.v1("AttachClassicLinkVpc", {**ATTACH_A, "InstanceId": name})
            ).status == 200
        page = await h.v1(
            "DescribeClassicLinkInstances", {**LINKS_A, "PageSize": "2", "PageNumber": "2"}
        )
        assert page.json["TotalCount"] == 3
        assert (page.json["PageNumber"], page.json["PageSize"]) == (2, 2)
        assert page.json["Links"]["Link"] == [{"InstanceId": "i-c", "VpcId": "vpc-a"}]
        assert (await h.v1("DetachClassicLinkVpc", {**ATTACH_A, "InstanceId": "i-c"})).status == 200
        count = await h.v1("DescribeClassicLinkInstances", {**LINKS_A, "PageSize": "1"})
        assert count.json["TotalCount"] == 2
        assert len(count.json["Links"]["Link"]) == 1


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"RegionId": REGION}, "MissingParameter"),
        ({**LINKS_A, "PageSize": "101"}, "InvalidParameter"),
        ({**LINKS_A, "PageSize": "0"}, "InvalidParameter"),
        ({**LINKS_A, "PageNumber": "0"}, "InvalidParameter"),
        ({**LINKS_A, "PageNumber": "x"}, "InvalidParameter"),
        (
            {"RegionId": REGION, "InstanceId": ",".join(f"i-{n}" for n in range(101))},
            "InvalidParameter",
        ),
    ],
)
async def test_describe_links_parameter_rules(params: dict[str, str], code: str) -> None:
    async with harness() as h:
        answer = await h.v1("DescribeClassicLinkInstances", params)
        assert (answer.status, answer.code) == (400, code)


async def test_describe_instances_takes_a_json_array() -> None:
    async with harness() as h:
        ids = json.dumps(["i-a", "i-vpc", "i-nope"])
        answer = await h.v1(
            "DescribeInstances", {"RegionId": REGION, "InstanceIds": ids, "PageSize": "100"}
        )
        assert answer.status == 200, answer.text
        body = answer.json
        assert body["TotalCount"] == 2
        instances = {i["InstanceId"]: i for i in body["Instances"]["Instance"]}
        assert instances["i-vpc"]["InstanceNetworkType"] == "vpc"
        assert instances["i-a"] == {
            "InstanceId": "i-a",
            "RegionId": REGION,
            "ZoneId": f"{REGION}-a",
            "Status": "Running",
            "InstanceNetworkType": "classic",
            "OperationLocks": {"LockReason": []},
            "VpcAttributes": {"VpcId": ""},
        }
        for bad in ("[1, 2]", "i-a,i-b", json.dumps([f"i-{n}" for n in range(101)])):
            answer = await h.v1("DescribeInstances", {"RegionId": REGION, "InstanceIds": bad})
            assert (answer.status, answer.code) == (400, "InvalidParameter")


async def test_describe_instances_empty_array_matches_nothing_absent_matches_all() -> None:
    async with harness() as h:
        empty = await h.v1("DescribeInstances", {"RegionId": REGION, "InstanceIds": "[]"})
        assert (empty.json["TotalCount"], empty.json["Instances"]["Instance"]) == (0, [])
        every = await h.v1("DescribeInstances", {"RegionId": REGION, "PageSize": "100"})
        names = [i["InstanceId"] for i in every.json["Instances"]["Instance"]]
        assert names == ["i-a", "i-b", "i-c", "i-vpc"]
        blank = await h.v1("DescribeInstances", {"RegionId": REGION, "InstanceIds": ""})
        assert blank.json["TotalCount"] == 4  # a blank parameter is an absent one


async def test_describe_instances_lock_reasons_status_zone_and_own_vpc() -> None:
    model = make_world()
    model.add_instance(
        Instance("i-held", REGION, status="Stopping", lock_reasons=("financial", "security"))
    )
    model.add_instance(Instance("i-old", REGION, locked=True, zone_id="cn-hangzhou-h"))
    model.add_instance(Instance("i-in", REGION, network_type="vpc", vpc_id="vpc-a"))
    async with harness(model) as h:
        ids = json.dumps(["i-held", "i-old", "i-in"])
        answer = await h.v1("DescribeInstances", {"RegionId": REGION, "InstanceIds": ids})
        found = {i["InstanceId"]: i for i in answer.json["Instances"]["Instance"]}
        held = found["i-held"]
        assert held["Status"] == "Stopping"
        assert [lock["LockReason"] for lock in held["OperationLocks"]["LockReason"]] == [
            "financial",
            "security",
        ]
        assert all(lock["LockMsg"] for lock in held["OperationLocks"]["LockReason"])
        assert found["i-old"]["OperationLocks"]["LockReason"][0]["LockReason"] == "security"
        assert found["i-old"]["ZoneId"] == "cn-hangzhou-h"
        assert found["i-in"]["VpcAttributes"]["VpcId"] == "vpc-a"
        xml = await h.v1("DescribeInstances", {"RegionId": REGION, "InstanceIds": ids}, fmt="XML")
        root = parse_xml(xml.text)
        reasons = root.findall("./Instances/Instance/OperationLocks/LockReason/LockReason")
        assert sorted(r.text or "" for r in reasons) == ["financial", "security", "security"]


async def test_describe_instances_pages_with_max_results_and_next_token() -> None:
    model = make_world()
    for n in range(25):
        model.add_instance(Instance(f"i-p{n:02}", REGION))
    wanted = [f"i-p{n:02}" for n in range(25)]
    async with harness(model) as h:
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            params = {"RegionId": REGION, "InstanceIds": json.dumps(wanted), "MaxResults": "10"}
            if token:
                params["NextToken"] = token
            answer = await h.v1("DescribeInstances", params)
            assert answer.status == 200, answer.text
            seen += [i["InstanceId"] for i in answer.json["Instances"]["Instance"]]
            pages += 1
            token = answer.json["NextToken"]
            if not token:
                break
        assert (seen, pages) == (wanted, 3)
        # NextToken alone pages by the default of 10; the old PageNumber paging still works.
        first = await h.v1("DescribeInstances", {"RegionId": REGION, "MaxResults": "10"})
        second = await h.v1(
            "DescribeInstances", {"RegionId": REGION, "NextToken": first.json["NextToken"]}
        )
        assert len(second.json["Instances"]["Instance"]) == 10
        old = await h.v1(
            "DescribeInstances", {"RegionId": REGION, "PageNumber": "3", "PageSize": "10"}
        )
        assert (old.json["PageNumber"], old.json["TotalCount"]) == (3, 29)
        assert len(old.json["Instances"]["Instance"]) == 9


@pytest.mark.parametrize(
    "params",
    [{"MaxResults": "9"}, {"MaxResults": "101"}, {"MaxResults": "x"}, {"NextToken": "bogus"}],
)
async def test_describe_instances_paging_rules(params: dict[str, str]) -> None:
    async with harness() as h:
        answer = await h.v1("DescribeInstances", {"RegionId": REGION, **params})
        assert (answer.status, answer.code) == (400, "InvalidParameter")


async def test_describe_links_by_instance_ids_with_and_without_vpc() -> None:
    model = make_world()
    model.add_vpc(Vpc("vpc-b", REGION))
    model.link("i-b", "vpc-b")
    async with harness(model) as h:
        ids = {"RegionId": REGION, "InstanceId": "i-a,i-b,i-c,i-nope"}
        answer = await h.v1("DescribeClassicLinkInstances", ids)
        assert answer.json["Links"]["Link"] == [
            {"InstanceId": "i-b", "VpcId": "vpc-b"},
            {"InstanceId": "i-c", "VpcId": "vpc-a"},
        ]
        narrowed = await h.v1("DescribeClassicLinkInstances", {**ids, "VpcId": "vpc-b"})
        assert narrowed.json["Links"]["Link"] == [{"InstanceId": "i-b", "VpcId": "vpc-b"}]
        hundred = ",".join(["i-b"] + [f"i-x{n}" for n in range(99)])
        full = await h.v1(
            "DescribeClassicLinkInstances", {"RegionId": REGION, "InstanceId": hundred}
        )
        assert full.json["TotalCount"] == 1


DETACH_STATUSES = [
    # (variant, instance, vpc, region, code, status)
    ("2018", "i-c", "vpc-x", REGION, "InvalidVpcId.Malformed", 400),
    ("current", "i-c", "vpc-x", REGION, "InvalidVpcId.Malformed", 403),
    ("2018", "i-c", "vpc-a", "cn-nowhere", "InvalidRegionId.Malformed", 400),
    ("current", "i-c", "vpc-a", "cn-nowhere", "InvalidRegionId.Malformed", 403),
    ("2018", "i-vpc", "vpc-a", REGION, "InvalidInstanceId.MalFormed", 400),
    ("current", "i-vpc", "vpc-a", REGION, "InvalidInstanceId.MalFormed", 403),
    ("2018", "i-nope", "vpc-a", REGION, "InvalidInstanceId.NotFound", 403),
    ("2018", "i-theirs", "vpc-a", REGION, "InvalidInstanceId.NotBelong", 403),
    ("current", "i-theirs", "vpc-a", REGION, "InvalidInstanceId.NotFound", 403),
    ("2018", "i-a", "vpc-a", REGION, "OperationDenied", 403),
    ("current", "i-a", "vpc-a", REGION, "OperationDenied", 403),
]


@pytest.mark.parametrize(
    ("variant", "instance", "vpc", "region", "code", "status"), DETACH_STATUSES
)
async def test_detach_errors_take_the_detach_pages_statuses(
    *, variant: str, instance: str, vpc: str, region: str, code: str, status: int
) -> None:
    model = make_world(variant)
    model.add_instance(Instance("i-theirs", REGION, owner="other"))
    async with harness(model) as h:
        params = {"RegionId": region, "InstanceId": instance, "VpcId": vpc}
        answer = await h.v1("DetachClassicLinkVpc", params)
        assert (answer.status, answer.code) == (status, code)
        assert h.running.model.links == {"i-c": "vpc-a"}


async def test_describe_vpc_attribute_on_the_vpc_api() -> None:
    model = make_world()
    model.add_vpc(Vpc("vpc-new", REGION, status="Pending", cidr_block="10.0.0.0/8"))
    async with harness(model) as h:
        answer = await h.v1(
            "DescribeVpcAttribute", {"RegionId": REGION, "VpcId": "vpc-off"}, version=VPC
        )
        assert answer.status == 200, answer.text
        body = answer.json
        assert body["ClassicLinkEnabled"] is False
        assert (body["VpcId"], body["RegionId"], body["Status"]) == ("vpc-off", REGION, "Available")
        assert body["CidrBlock"] == "172.16.0.0/12"
        assert isinstance(body["OwnerId"], int)
        new = await h.v1(
            "DescribeVpcAttribute", {"RegionId": REGION, "VpcId": "vpc-new"}, version=VPC
        )
        assert (new.json["Status"], new.json["CidrBlock"]) == ("Pending", "10.0.0.0/8")
        xml = await h.v1(
            "DescribeVpcAttribute", {"RegionId": REGION, "VpcId": "vpc-a"}, version=VPC, fmt="XML"
        )
        assert parse_xml(xml.text).findtext("ClassicLinkEnabled") == "true"
        missing = await h.v1(
            "DescribeVpcAttribute", {"RegionId": REGION, "VpcId": "vpc-x"}, version=VPC
        )
        assert (missing.status, missing.code) == (404, "InvalidVpcID.NotFound")
        assert missing.json["HostId"] == f"vpc.{REGION}.aliyuncs.com"


async def test_accounts_follow_the_access_key() -> None:
    model = make_world()
    model.add_instance(Instance("i-theirs", REGION, owner="other"))
    other_ak, other_secret = "LTAIotherotherotherother", "other-secret"
    async with harness(
        model, access_keys={AK: SECRET, other_ak: other_secret}, accounts={other_ak: "other"}
    ) as h:
        params = {**ATTACH_A, "InstanceId": "i-theirs"}
        answer = await h.v1("AttachClassicLinkVpc", params)
        assert (answer.status, answer.code) == (403, "InvalidInstanceId.NotBelong")
        answer = await h.v1(
            "DescribeInstances",
            {"RegionId": REGION, "InstanceIds": '["i-theirs"]'},
            ak=other_ak,
            secret=other_secret,
        )
        assert answer.json["TotalCount"] == 1


# --- flow control and faults -----------------------------------------------------------


async def test_rate_limit_per_action_with_retry_after() -> None:
    async with harness(qps=2, retry_after_ms=1500) as h:
        codes = [(await h.v1("DescribeClassicLinkInstances", LINKS_A)).status for _ in range(3)]
        assert codes == [200, 200, 400]
        throttled = await h.v1("DescribeClassicLinkInstances", LINKS_A)
        assert throttled.code == "Throttling.User"
        assert throttled.headers["x-acs-retry-after"] == "1500"
        # Another action has its own bucket; time refills this one.
        assert (await h.v1("AttachClassicLinkVpc", ATTACH_A)).status == 200
        h.clock.now += 0.5
        assert (await h.v1("DescribeClassicLinkInstances", LINKS_A)).status == 200
        assert (await h.v1("DescribeClassicLinkInstances", LINKS_A)).status == 400
        state = await h.state()
        assert state["calls"]["DescribeClassicLinkInstances"] == {"OK": 3, "Throttling.User": 3}
        assert state["faults"]["injected"]["throttled"] == 3


async def test_throttled_answer_without_retry_after_by_default() -> None:
    async with harness(qps=1) as h:
        await h.v1("AttachClassicLinkVpc", ATTACH_A)
        answer = await h.v1("AttachClassicLinkVpc", {**ATTACH_A, "InstanceId": "i-b"})
        assert (answer.status, answer.code) == (400, "Throttling.User")
        assert "x-acs-retry-after" not in answer.headers
        assert "i-b" not in h.running.model.links  # a throttled call was not executed


def test_rate_limiter_refills_with_the_clock() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(clock)
    assert [limiter.admit("k", 10.0) for _ in range(10)] == [None] * 10
    wait = limiter.admit("k", 10.0)
    assert wait == pytest.approx(0.1)
    clock.now = 0.1
    assert limiter.admit("k", 10.0) is None
    assert limiter.admit("other", 10.0) is None


def test_fixed_windows_refuse_until_the_next_window_and_are_aligned_to_the_clock() -> None:
    clock = FakeClock(0.0)
    clock.now = 125.0  # 5 s into minute 2
    limiter = RateLimiter(clock)
    window = LimiterShape.WINDOW
    assert [limiter.admit("k", 0.5, window, 60.0) for _ in range(30)] == [None] * 30
    assert limiter.admit("k", 0.5, window, 60.0) == pytest.approx(55.0)
    clock.now = 179.9  # still minute 2: a throttled minute stays throttled
    assert limiter.admit("k", 0.5, window, 60.0) is not None
    clock.now = 180.0  # minute 3: the whole budget again, at once
    assert [limiter.admit("k", 0.5, window, 60.0) for _ in range(30)] == [None] * 30
    assert limiter.admit("k", 0.5, window, 60.0) is not None
    # One-second windows, and a limit under one call per window still lets one through.
    assert [limiter.admit("s", 3.0, window, 1.0) for _ in range(4)] == [None, None, None, 0.0 + 1.0]
    assert limiter.admit("tiny", 0.01, window, 1.0) is None


async def test_limits_per_api_and_region_and_changed_at_run_time() -> None:
    describe, attach = "DescribeClassicLinkInstances", "AttachClassicLinkVpc"
    async with harness(
        qps=100,
        limiter=LimiterShape.WINDOW,
        window_seconds=60,
        limits={attach: 1 / 60, f"{REGION}/{describe}": 2 / 60},
    ) as h:
        codes = [(await h.v1(describe, LINKS_A)).status for _ in range(3)]
        assert codes == [200, 200, 400]
        assert (await h.v1(attach, ATTACH_A)).status == 200
        refused = await h.v1(attach, {**ATTACH_A, "InstanceId": "i-b"})
        assert refused.code == "Throttling.User"
        assert "i-b" not in h.running.model.links  # not executed
        # Another tool starts sharing the quota: the control endpoint changes the limit.
        status, faults = await h.control("faults", {"limits": {attach: 100}, "qps": None})
        assert status == 200
        assert faults["settings"]["limits"] == {attach: 100.0}
        assert faults["settings"]["limiter"] == "window"
        assert (await h.v1(attach, {**ATTACH_A, "InstanceId": "i-b"})).status == 200
        assert (await h.v1(describe, LINKS_A)).status == 200  # no limit for it any more
        status, error = await h.control("faults", {"limiter": "leaky"})
        assert status == 400
        assert "limiter" in error["error"]
        status, error = await h.control("faults", {"limits": {attach: -1}})
        assert status == 400
        assert "positive" in error["error"]


async def outcomes(h: Harness, count: int) -> list[str]:
    """One sequential call after another: the status, or "drop" for a lost connection.

    POST, because aiohttp silently resends a GET once when a reused connection drops (with
    the same nonce, so the emulator rightly answers SignatureNonceUsed).
    """
    seen = []
    for _ in range(count):
        try:
            answer = await h.v1("DescribeClassicLinkInstances", LINKS_A)
        except aiohttp.ServerDisconnectedError:
            seen.append("drop")
        else:
            seen.append(str(answer.status))
    return seen


FAULTY: dict[str, Any] = {
    "error_rate": 0.2,
    "unavailable_rate": 0.2,
    "drop_rate": 0.2,
    "jitter_ms": 1.0,
}


async def test_faults_are_reproducible_under_a_seed() -> None:
    async with harness(seed=7, **FAULTY) as h:
        first = await outcomes(h, 40)
    async with harness(seed=7, **FAULTY) as h:
        second = await outcomes(h, 40)
    async with harness(seed=8, **FAULTY) as h:
        other = await outcomes(h, 40)
    assert first == second
    assert first != other
    assert set(first) == {"200", "500", "503", "drop"}


async def test_control_reseed_replays_the_same_sequence() -> None:
    async with harness(seed=3, **FAULTY) as h:
        first = await outcomes(h, 20)
        status, _ = await h.control("faults", {"seed": 3})
        assert status == 200
        assert await outcomes(h, 20) == first


def test_fault_layout_is_fixed_and_commit_faults_need_a_mutating_call() -> None:
    settings = FaultSettings(
        error_rate=0.1,
        unavailable_rate=0.1,
        drop_rate=0.1,
        hang_rate=0.1,
        commit_then_error_rate=0.1,
        commit_then_drop_rate=0.1,
    )
    draws = [0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65]
    assert [settings.fault_for(d, mutating=True) for d in draws] == [
        Fault.INTERNAL_ERROR,
        Fault.UNAVAILABLE,
        Fault.DROP,
        Fault.HANG,
        Fault.COMMIT_THEN_ERROR,
        Fault.COMMIT_THEN_DROP,
        Fault.NONE,
    ]
    assert settings.fault_for(0.45, mutating=False) is Fault.NONE
    assert FaultSettings(latency_ms=10, jitter_ms=20).latency_for(0.5) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="more than 1"):
        FaultSettings(error_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError, match="unknown"):
        settings.updated({"eror_rate": 0.1})


async def test_injected_errors_do_not_execute() -> None:
    async with harness(error_rate=1.0) as h:
        answer = await h.v1("AttachClassicLinkVpc", ATTACH_A)
        assert (answer.status, answer.code) == (500, "InternalError")
        assert "i-a" not in h.running.model.links
    async with harness(unavailable_rate=1.0) as h:
        answer = await h.v1("AttachClassicLinkVpc", ATTACH_A)
        assert (answer.status, answer.code) == (503, "ServiceUnavailable")
        assert "i-a" not in h.running.model.links


async def test_dropped_connection_does_not_execute() -> None:
    async with harness(drop_rate=1.0) as h:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await h.v1("AttachClassicLinkVpc", ATTACH_A)
        state = await h.state()
        assert "i-a" not in h.running.model.links
        assert state["calls"]["AttachClassicLinkVpc"] == {"Dropped": 1}


async def test_commit_then_error_leaves_the_link() -> None:
    async with harness(commit_then_error_rate=1.0) as h:
        answer = await h.v1("AttachClassicLinkVpc", ATTACH_A)
        assert (answer.status, answer.code) == (500, "InternalError")
        state = await h.state()
        assert {"InstanceId": "i-a", "VpcId": "vpc-a"} in state["links"]
        assert state["faults"]["injected"] == {"commit_then_error": 1}
        # Reads are never "committed": the same draw range means no fault for them.
        assert (await h.v1("DescribeClassicLinkInstances", LINKS_A)).status == 200
        # A refused attach commits nothing, so it answers its own error, not a 500.
        refused = await h.v1("AttachClassicLinkVpc", {**ATTACH_A, "InstanceId": "i-nope"})
        assert refused.code == "InvalidInstanceId.NotFound"


async def test_commit_then_drop_leaves_the_link() -> None:
    async with harness(commit_then_drop_rate=1.0) as h:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await h.v1("AttachClassicLinkVpc", ATTACH_A)
        assert h.running.model.links["i-a"] == "vpc-a"
        state = await h.state()
        assert state["calls"]["AttachClassicLinkVpc"] == {"Dropped": 1}


async def test_hang_outlasts_the_client_timeout_then_serves() -> None:
    async with harness(hang_rate=1.0, hang_seconds=0.5) as h:
        with pytest.raises(asyncio.TimeoutError):
            await h.raw(
                "GET",
                canonical_query(h.v1_params("AttachClassicLinkVpc", ATTACH_A)),
                client_timeout=0.05,
            )
        state = await h.state()
        assert state["faults"]["injected"] == {"hang": 1}
        # The hung request is still served once the hang is over: a late commit.
        for _ in range(100):
            if "i-a" in h.running.model.links:
                break
            await asyncio.sleep(0.05)
        assert h.running.model.links["i-a"] == "vpc-a"


async def test_latency_delays_but_answers() -> None:
    async with harness(latency_ms=5, jitter_ms=5) as h:
        assert (await h.v1("DescribeClassicLinkInstances", LINKS_A)).status == 200


async def test_faults_never_touch_the_control_endpoint() -> None:
    async with harness(error_rate=0.5, drop_rate=0.5, qps=1) as h:
        for _ in range(5):
            state = await h.state()
        assert state["faults"]["draws"] == 0
        assert state["calls"] == {}


# --- the control endpoint --------------------------------------------------------------


async def test_state_shape() -> None:
    async with harness() as h:
        await h.v1("AttachClassicLinkVpc", ATTACH_A)
        await h.v1("AttachClassicLinkVpc", ATTACH_A)
        await h.v1("AttachClassicLinkVpc", {**ATTACH_A, "InstanceId": "i-nope"})
        state = await h.state()
        assert state["links"] == [
            {"InstanceId": "i-a", "VpcId": "vpc-a"},
            {"InstanceId": "i-c", "VpcId": "vpc-a"},
        ]
        assert state["link_counts"]["vpc-a"] == 2
        assert state["calls"] == {
            "AttachClassicLinkVpc": {"OK": 2, "InvalidInstanceId.NotFound": 1}
        }
        assert state["attach_attempts"] == {"i-a": 2, "i-nope": 1}
        assert state["repeat_attaches"] == {"i-a": 1}
        assert state["faults"]["settings"]["error_rate"] == 0.0
        assert state["faults"]["draws"] == 3


async def test_change_faults_at_runtime() -> None:
    async with harness() as h:
        status, faults = await h.control("faults", {"error_rate": 1, "retry_after_ms": None})
        assert status == 200
        assert faults["settings"]["error_rate"] == 1.0
        assert (await h.v1("DescribeClassicLinkInstances", LINKS_A)).status == 500
        for bad in ({"error_rate": 2}, {"nope": 1}, {"error_rate": "x"}, [1]):
            status, body = await h.control("faults", bad)
            assert status == 400
            assert "error" in body
        await h.control("faults", {"error_rate": 0})
        assert (await h.v1("DescribeClassicLinkInstances", LINKS_A)).status == 200


async def test_reset_restores_the_world_and_clears_counters() -> None:
    async with harness() as h:
        await h.control("faults", {"error_rate": 1})
        await h.v1("AttachClassicLinkVpc", ATTACH_A)
        await h.control("faults", {"error_rate": 0})
        await h.v1("AttachClassicLinkVpc", ATTACH_A)
        assert "i-a" in h.running.model.links
        status, state = await h.control("reset")
        assert status == 200
        assert state["links"] == [{"InstanceId": "i-c", "VpcId": "vpc-a"}]
        assert state["calls"] == {}
        assert state["attach_attempts"] == {}
        assert state["faults"]["draws"] == 0
        assert "i-a" not in h.running.model.links


async def test_load_a_world() -> None:
    async with harness() as h:
        world = {
            "instances": [{"InstanceId": "i-new", "RegionId": "cn-beijing"}],
            "vpcs": [{"VpcId": "vpc-new", "RegionId": "cn-beijing"}],
            "links": [{"InstanceId": "i-new", "VpcId": "vpc-new"}],
        }
        status, state = await h.control("world", world)
        assert status == 200
        assert state["links"] == [{"InstanceId": "i-new", "VpcId": "vpc-new"}]
        answer = await h.v1(
            "DescribeClassicLinkInstances", {"RegionId": "cn-beijing", "VpcId": "vpc-new"}
        )
        assert answer.json["TotalCount"] == 1
        status, body = await h.control("world", {"instances": "nope"})
        assert status == 400
        assert "error" in body
        _, state = await h.control("reset")  # back to the loaded world, not the first one
        assert state["links"] == [{"InstanceId": "i-new", "VpcId": "vpc-new"}]


def test_control_endpoint_only_on_loopback_by_default() -> None:
    def routes(settings: EmulatorSettings) -> set[str]:
        app = create_app(make_world(), settings)
        return {resource.canonical for resource in app.router.resources()}

    assert "/_emulator/state" in routes(EmulatorSettings())
    assert "/_emulator/state" in routes(EmulatorSettings(host="::1"))
    assert "/_emulator/state" not in routes(EmulatorSettings(host="0.0.0.0"))  # noqa: S104
    assert "/_emulator/state" in routes(EmulatorSettings(host="0.0.0.0", control=True))  # noqa: S104


def test_generated_credentials_look_like_alibabas() -> None:
    key_id, secret = generate_credentials()
    assert re.fullmatch(r"LTAI[A-Za-z0-9]{20}", key_id)
    assert re.fullmatch(r"[A-Za-z0-9]{30}", secret)
    assert generate_credentials() != (key_id, secret)


async def test_running_emulator_generates_credentials_that_work() -> None:
    clock = FakeClock()
    async with (
        running_emulator(make_world(), EmulatorSettings(clock=clock)) as running,
        aiohttp.ClientSession() as session,
    ):
        assert running.access_key_id.startswith("LTAI")
        assert running.endpoint == f"http://127.0.0.1:{running.port}"
        assert running.port > 0
        h = Harness(running, session, clock)
        answer = await h.v1(
            "DescribeClassicLinkInstances",
            LINKS_A,
            ak=running.access_key_id,
            secret=running.access_key_secret,
        )
        assert answer.status == 200, answer.text
        assert SECRET not in repr(running)
        assert running.access_key_secret not in repr(running)


async def test_serve_runs_until_cancelled() -> None:
    ready: asyncio.Queue[RunningEmulator] = asyncio.Queue()
    task = asyncio.create_task(serve(make_world(), EmulatorSettings(), on_ready=ready.put_nowait))
    running = await ready.get()
    async with aiohttp.ClientSession() as session:
        async with session.get(running.endpoint + "/_emulator/state") as response:
            assert response.status == 200
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(running.endpoint + "/_emulator/state")


def test_percent_encoding_matches_the_wire() -> None:
    # The helper above sends canonical_query() as the raw query: spaces as %20, "*" as %2A.
    assert percent_encode("a b*~") == "a%20b%2A~"
