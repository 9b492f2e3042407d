"""The official SDKs as independent clients of the emulator.

Three clients, none of them ours: ``alibabacloud-ecs20140526`` in its default V3 mode and in
V1 mode (``signature_algorithm='v2'``), and the older ``aliyun-python-sdk-core`` (V1). If
the emulator's parsing, signature checks or error bodies drifted from the service, these
SDKs would fail here even where our own client (which shares our signer) would not.

The SDKs are synchronous: each call runs in a worker thread while the emulator serves in
the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsSdkClient
from alibabacloud_tea_openapi import utils_models
from alibabacloud_tea_openapi.client import Client as OpenApiClient
from alibabacloud_tea_openapi.exceptions import (
    AlibabaCloudException,
    ClientException,
    ServerException,
    ThrottlingException,
)
from alibabacloud_tea_openapi.models import Config
from aliyunsdkcore.acs_exception.exceptions import ServerException as CoreServerException
from aliyunsdkcore.auth.credentials import StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from conftest import emulator_settings
from darabonba.runtime import RuntimeOptions

from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import RunningEmulator, running_emulator

REGION = "cn-hangzhou"
OTHER_REGION = "cn-shanghai"
AK = "LTAIsdktestsdktestsdktest"
SECRET = "sdk-secret-0123456789abcdefghi"


@dataclass
class SdkError(Exception):
    """What the SDK's exception said, whatever its class."""

    code: str
    status: int
    kind: type[BaseException]


class Sdk(Protocol):
    def attach(self, region: str, instance: str, vpc: str) -> dict[str, Any]: ...
    def detach(self, region: str, instance: str, vpc: str) -> dict[str, Any]: ...
    def links(self, region: str, vpc: str) -> dict[str, Any]: ...
    def instances(self, region: str, ids: list[str]) -> dict[str, Any]: ...
    def instances_page(
        self, region: str, ids: list[str], max_results: int, token: str
    ) -> dict[str, Any]: ...
    def links_of(self, region: str, ids: list[str], vpc: str | None) -> dict[str, Any]: ...
    def vpc(self, region: str, vpc: str) -> dict[str, Any]: ...


class TeaSdk:
    """alibabacloud-ecs20140526 (V3 by default, V1 with signature_algorithm='v2')."""

    def __init__(
        self, running: RunningEmulator, *, v1: bool, key: str, secret: str, token: str | None
    ):
        config = Config(
            access_key_id=key,
            access_key_secret=secret,
            security_token=token,
            endpoint=f"127.0.0.1:{running.port}",
            protocol="http",
            region_id=REGION,
        )
        if v1:
            config.signature_algorithm = "v2"
        self.ecs = EcsSdkClient(config)
        self.generic = OpenApiClient(config)

    @staticmethod
    def _run(call: Callable[[], Any]) -> dict[str, Any]:
        try:
            response = call()
        except AlibabaCloudException as error:
            raise SdkError(str(error.code), int(error.status_code), type(error)) from error
        body = response.body if hasattr(response, "body") else response["body"]
        result: dict[str, Any] = body.to_map() if hasattr(body, "to_map") else body
        return result

    def attach(self, region: str, instance: str, vpc: str) -> dict[str, Any]:
        request = ecs_models.AttachClassicLinkVpcRequest(
            region_id=region, instance_id=instance, vpc_id=vpc
        )
        return self._run(lambda: self.ecs.attach_classic_link_vpc(request))

    def detach(self, region: str, instance: str, vpc: str) -> dict[str, Any]:
        request = ecs_models.DetachClassicLinkVpcRequest(
            region_id=region, instance_id=instance, vpc_id=vpc
        )
        return self._run(lambda: self.ecs.detach_classic_link_vpc(request))

    def links(self, region: str, vpc: str) -> dict[str, Any]:
        request = ecs_models.DescribeClassicLinkInstancesRequest(region_id=region, vpc_id=vpc)
        return self._run(lambda: self.ecs.describe_classic_link_instances(request))

    def instances(self, region: str, ids: list[str]) -> dict[str, Any]:
        request = ecs_models.DescribeInstancesRequest(
            region_id=region, instance_ids=json.dumps(ids), page_size=100
        )
        return self._run(lambda: self.ecs.describe_instances(request))

    def instances_page(
        self, region: str, ids: list[str], max_results: int, token: str
    ) -> dict[str, Any]:
        request = ecs_models.DescribeInstancesRequest(
            region_id=region,
            instance_ids=json.dumps(ids),
            max_results=max_results,
            next_token=token or None,
        )
        return self._run(lambda: self.ecs.describe_instances(request))

    def links_of(self, region: str, ids: list[str], vpc: str | None) -> dict[str, Any]:
        request = ecs_models.DescribeClassicLinkInstancesRequest(
            region_id=region, instance_id=",".join(ids), vpc_id=vpc, page_size="100"
        )
        return self._run(lambda: self.ecs.describe_classic_link_instances(request))

    def vpc(self, region: str, vpc: str) -> dict[str, Any]:
        # The VPC SDK is not installed; the generic OpenAPI call signs the same way.
        params = utils_models.Params(
            action="DescribeVpcAttribute",
            version="2016-04-28",
            protocol="HTTP",
            pathname="/",
            method="POST",
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        request = utils_models.OpenApiRequest(query={"RegionId": region, "VpcId": vpc})
        return self._run(lambda: self.generic.call_api(params, request, RuntimeOptions()))


class CoreSdk:
    """aliyun-python-sdk-core: AcsClient + RpcRequest, always signature V1."""

    def __init__(self, running: RunningEmulator, *, key: str, secret: str, token: str | None):
        self.domain = f"127.0.0.1:{running.port}"
        if token is None:
            self.client = AcsClient(key, secret, REGION, auto_retry=False, max_retry_time=0)
        else:
            credential = StsTokenCredential(key, secret, token)
            self.client = AcsClient(
                region_id=REGION, credential=credential, auto_retry=False, max_retry_time=0
            )

    def _run(
        self, action: str, params: dict[str, str], *, version: str = "2014-05-26", post: bool
    ) -> dict[str, Any]:
        # RpcRequest (what generated product SDKs subclass) rather than CommonRequest: only
        # it keeps its string to sign where the client compares it with the server's.
        request = RpcRequest("Ecs" if version == "2014-05-26" else "Vpc", version, action)
        request.set_endpoint(self.domain)
        request.set_protocol_type("http")
        request.set_method("POST" if post else "GET")
        for name, value in params.items():
            request.add_query_param(name, value)
        try:
            body = self.client.do_action_with_exception(request)
        except CoreServerException as error:
            raise SdkError(error.get_error_code(), error.get_http_status(), type(error)) from error
        result: dict[str, Any] = json.loads(body)
        return result

    def attach(self, region: str, instance: str, vpc: str) -> dict[str, Any]:
        params = {"RegionId": region, "InstanceId": instance, "VpcId": vpc}
        return self._run("AttachClassicLinkVpc", params, post=True)

    def detach(self, region: str, instance: str, vpc: str) -> dict[str, Any]:
        params = {"RegionId": region, "InstanceId": instance, "VpcId": vpc}
        return self._run("DetachClassicLinkVpc", params, post=True)

    def links(self, region: str, vpc: str) -> dict[str, Any]:
        return self._run(
            "DescribeClassicLinkInstances", {"RegionId": region, "VpcId": vpc}, post=False
        )

    def instances(self, region: str, ids: list[str]) -> dict[str, Any]:
        params = {"RegionId": region, "InstanceIds": json.dumps(ids), "PageSize": "100"}
        return self._run("DescribeInstances", params, post=False)

    def instances_page(
        self, region: str, ids: list[str], max_results: int, token: str
    ) -> dict[str, Any]:
        params = {
            "RegionId": region,
            "InstanceIds": json.dumps(ids),
            "MaxResults": str(max_results),
        }
        if token:
            params["NextToken"] = token
        return self._run("DescribeInstances", params, post=True)

    def links_of(self, region: str, ids: list[str], vpc: str | None) -> dict[str, Any]:
        params = {"RegionId": region, "InstanceId": ",".join(ids), "PageSize": "100"}
        if vpc:
            params["VpcId"] = vpc
        return self._run("DescribeClassicLinkInstances", params, post=True)

    def vpc(self, region: str, vpc: str) -> dict[str, Any]:
        params = {"RegionId": region, "VpcId": vpc}
        return self._run("DescribeVpcAttribute", params, version="2016-04-28", post=True)


SDKS = ["tea-v3", "tea-v1", "core"]


def make_sdk(
    kind: str,
    running: RunningEmulator,
    *,
    key: str | None = None,
    secret: str | None = None,
    token: str | None = None,
) -> Sdk:
    key = key or running.access_key_id
    secret = secret or running.access_key_secret
    if kind == "core":
        return CoreSdk(running, key=key, secret=secret, token=token)
    return TeaSdk(running, v1=kind == "tea-v1", key=key, secret=secret, token=token)


def make_world(variant: str) -> EcsModel:
    """One instance or VPC per documented error, plus a plain pair that works."""
    model = EcsModel(variant=variant)
    model.add_region(REGION)
    for name in ("i-ok", "i-ok2", "i-linked", "i-full"):
        model.add_instance(Instance(name, REGION))
    model.add_instance(Instance("i-vpc", REGION, network_type="vpc"))
    model.add_instance(Instance("i-locked", REGION, locked=True))
    model.add_instance(Instance("i-stopping", REGION, status="Stopping"))
    model.add_instance(Instance("i-theirs", REGION, owner="someone-else"))
    model.add_instance(Instance("i-far", OTHER_REGION))
    model.add_instance(
        Instance(
            "i-held",
            REGION,
            status="Stopped",
            lock_reasons=("financial", "Recycling"),
            zone_id="cn-hangzhou-h",
        )
    )
    model.add_instance(Instance("i-inner", REGION, network_type="vpc", vpc_id="vpc-ok"))
    model.add_vpc(Vpc("vpc-ok", REGION))
    model.add_vpc(Vpc("vpc-other", REGION))
    model.add_vpc(Vpc("vpc-off", REGION, classic_link_enabled=False))
    model.add_vpc(Vpc("vpc-full", REGION, quota=1))
    model.add_vpc(Vpc("vpc-new", REGION, status="Pending", cidr_block="10.0.0.0/8"))
    model.link("i-linked", "vpc-other")
    model.link("i-full", "vpc-full")
    return model


@asynccontextmanager
async def emulator(variant: str = "2018", **settings: Any) -> AsyncIterator[RunningEmulator]:
    options: dict[str, Any] = {"access_keys": {AK: SECRET}, **settings}
    async with running_emulator(make_world(variant), emulator_settings(**options)) as running:
        yield running


async def in_thread(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.to_thread(call)


async def expect_error(call: Callable[[], dict[str, Any]]) -> SdkError:
    with pytest.raises(SdkError) as caught:
        await in_thread(call)
    return caught.value


def expected_class(kind: str, status: int) -> type[BaseException]:
    """The exception class each SDK chooses: core always ServerException; tea by status."""
    if kind == "core":
        return CoreServerException
    return ClientException if status < 500 else ServerException


@pytest.mark.parametrize("kind", SDKS)
async def test_attach_describe_detach(kind: str) -> None:
    async with emulator() as running:
        sdk = make_sdk(kind, running)
        answer = await in_thread(lambda: sdk.attach(REGION, "i-ok", "vpc-ok"))
        assert answer["RequestId"]
        assert running.model.links["i-ok"] == "vpc-ok"

        links = await in_thread(lambda: sdk.links(REGION, "vpc-ok"))
        assert links["TotalCount"] == 1
        assert links["Links"]["Link"] == [{"InstanceId": "i-ok", "VpcId": "vpc-ok"}]

        instances = await in_thread(lambda: sdk.instances(REGION, ["i-ok", "i-vpc"]))
        found = {i["InstanceId"]: i for i in instances["Instances"]["Instance"]}
        assert found["i-ok"]["Status"] == "Running"
        assert found["i-vpc"]["InstanceNetworkType"] == "vpc"

        vpc = await in_thread(lambda: sdk.vpc(REGION, "vpc-off"))
        assert vpc["ClassicLinkEnabled"] is False

        await in_thread(lambda: sdk.detach(REGION, "i-ok", "vpc-ok"))
        assert "i-ok" not in running.model.links
        state = running.emulator.state()
        assert state["calls"]["AttachClassicLinkVpc"] == {"OK": 1}
        assert state["calls"]["DetachClassicLinkVpc"] == {"OK": 1}


# (instance, vpc, region) -> 2018 code and status (the contract page), current code (403).
ATTACH_ERRORS = [
    ("i-linked", "vpc-ok", REGION, "Abs.InvalidInstanceId.MalFormed", 400, "OperationDenied"),
    ("i-vpc", "vpc-ok", REGION, "InvalidInstanceId.MalFormed", 400, "InvalidInstanceId.MalFormed"),
    (
        "i-ok",
        "vpc-ok",
        "xx-nowhere-1",
        "InvalidRegionId.Malformed",
        400,
        "InvalidRegionId.NotFound",
    ),
    ("i-ok", "bad-id", REGION, "InvalidVpcId.Malformed", 400, "InvalidVpcId.Malformed"),
    (
        "i-theirs",
        "vpc-ok",
        REGION,
        "InvalidInstanceId.NotBelong",
        403,
        "InvalidInstanceId.NotBelong",
    ),
    (
        "i-locked",
        "vpc-ok",
        REGION,
        "InvalidStatus.InstanceLocked",
        403,
        "InvalidStatus.InstanceLocked",
    ),
    (
        "i-stopping",
        "vpc-ok",
        REGION,
        "InvalidStatus.InstanceStatus",
        403,
        "InvalidStatus.InstanceStatus",
    ),
    ("i-ok", "vpc-off", REGION, "OperationDenied", 403, "OperationDenied"),
    ("i-ok", "vpc-full", REGION, "QuotaExceeded", 403, "QuotaExceeded"),
    ("i-nope", "vpc-ok", REGION, "InvalidInstanceId.NotFound", 404, "InvalidInstanceId.NotFound"),
    (
        "i-far",
        "vpc-ok",
        REGION,
        "InvalidRegionId.Malformed",
        400,
        "InvalidInstanceId.LimitedRegion",
    ),
]


@pytest.mark.parametrize("variant", ["2018", "current"])
@pytest.mark.parametrize("kind", SDKS)
async def test_every_documented_attach_error(kind: str, variant: str) -> None:
    async with emulator(variant) as running:
        sdk = make_sdk(kind, running)
        for instance, vpc, region, code_2018, status_2018, code_current in ATTACH_ERRORS:
            code, status = (code_2018, status_2018) if variant == "2018" else (code_current, 403)
            error = await expect_error(lambda: sdk.attach(region, instance, vpc))  # noqa: B023
            assert (error.code, error.status) == (code, status), (instance, vpc, region)
            assert issubclass(error.kind, expected_class(kind, status))
        assert running.model.links.get("i-ok") is None


# (instance, vpc, region) -> 2018 code and status (the older detach page), current code (403).
DETACH_ERRORS = [
    # Not linked, and linked to another VPC: both assumed (model.DETACH_WHEN_NOT_LINKED).
    ("i-ok", "vpc-ok", REGION, "OperationDenied", 403, "OperationDenied"),
    ("i-linked", "vpc-ok", REGION, "OperationDenied", 403, "OperationDenied"),
    ("i-nope", "vpc-ok", REGION, "InvalidInstanceId.NotFound", 403, "InvalidInstanceId.NotFound"),
    (
        "i-theirs",
        "vpc-ok",
        REGION,
        "InvalidInstanceId.NotBelong",
        403,
        "InvalidInstanceId.NotFound",
    ),
    ("i-vpc", "vpc-ok", REGION, "InvalidInstanceId.MalFormed", 400, "InvalidInstanceId.MalFormed"),
    ("i-ok", "bad-id", REGION, "InvalidVpcId.Malformed", 400, "InvalidVpcId.Malformed"),
    (
        "i-ok",
        "vpc-ok",
        "xx-nowhere-1",
        "InvalidRegionId.Malformed",
        400,
        "InvalidRegionId.Malformed",
    ),
    ("i-far", "vpc-ok", REGION, "InvalidRegionId.Malformed", 400, "InvalidRegionId.Malformed"),
    (
        "i-locked",
        "vpc-ok",
        REGION,
        "InvalidStatus.InstanceLocked",
        403,
        "InvalidStatus.InstanceLocked",
    ),
    (
        "i-stopping",
        "vpc-ok",
        REGION,
        "InvalidStatus.InstanceStatus",
        403,
        "InvalidStatus.InstanceStatus",
    ),
]


@pytest.mark.parametrize("variant", ["2018", "current"])
@pytest.mark.parametrize("kind", SDKS)
async def test_every_detach_error(kind: str, variant: str) -> None:
    async with emulator(variant) as running:
        sdk = make_sdk(kind, running)
        for instance, vpc, region, code_2018, status_2018, code_current in DETACH_ERRORS:
            code, status = (code_2018, status_2018) if variant == "2018" else (code_current, 403)
            error = await expect_error(lambda: sdk.detach(region, instance, vpc))  # noqa: B023
            assert (error.code, error.status) == (code, status), (instance, vpc, region)
            assert issubclass(error.kind, expected_class(kind, status))
        assert running.model.links == {"i-linked": "vpc-other", "i-full": "vpc-full"}
        # Stopped is allowed as well as Running.
        running.model.instances["i-linked"].status = "Stopped"
        assert (await in_thread(lambda: sdk.detach(REGION, "i-linked", "vpc-other")))["RequestId"]
        assert "i-linked" not in running.model.links


@pytest.mark.parametrize("kind", SDKS)
async def test_describe_instances_lifecycle_fields(kind: str) -> None:
    async with emulator() as running:
        sdk = make_sdk(kind, running)
        ids = ["i-held", "i-locked", "i-inner", "i-ok", "i-theirs", "i-far", "i-nope"]
        body = await in_thread(lambda: sdk.instances(REGION, ids))
        found = {i["InstanceId"]: i for i in body["Instances"]["Instance"]}
        assert sorted(found) == ["i-held", "i-inner", "i-locked", "i-ok"]  # mine, here
        held = found["i-held"]
        assert (held["Status"], held["ZoneId"], held["RegionId"]) == (
            "Stopped",
            "cn-hangzhou-h",
            REGION,
        )
        assert held["InstanceNetworkType"] == "classic"
        locks = held["OperationLocks"]["LockReason"]
        assert [lock["LockReason"] for lock in locks] == ["financial", "Recycling"]
        assert all(isinstance(lock["LockMsg"], str) and lock["LockMsg"] for lock in locks)
        assert found["i-locked"]["OperationLocks"]["LockReason"][0]["LockReason"] == "security"
        assert found["i-ok"]["OperationLocks"]["LockReason"] == []
        assert found["i-inner"]["VpcAttributes"]["VpcId"] == "vpc-ok"
        assert found["i-ok"]["VpcAttributes"]["VpcId"] == ""
        empty = await in_thread(lambda: sdk.instances(REGION, []))
        assert empty["TotalCount"] == 0
        assert empty["Instances"]["Instance"] == []


@pytest.mark.parametrize("kind", SDKS)
async def test_describe_instances_pages_by_next_token(kind: str) -> None:
    async with emulator() as running:
        wanted = [f"i-p{n:02}" for n in range(23)]
        for name in wanted:
            running.model.add_instance(Instance(name, REGION))
        sdk = make_sdk(kind, running)
        seen: list[str] = []
        token = ""
        for _ in range(5):
            body = await in_thread(
                lambda: sdk.instances_page(REGION, wanted, 10, token)  # noqa: B023
            )
            seen += [i["InstanceId"] for i in body["Instances"]["Instance"]]
            token = body["NextToken"]
            if not token:
                break
        assert seen == wanted


@pytest.mark.parametrize("kind", SDKS)
async def test_describe_vpc_attribute(kind: str) -> None:
    async with emulator() as running:
        sdk = make_sdk(kind, running)
        on = await in_thread(lambda: sdk.vpc(REGION, "vpc-ok"))
        assert on["ClassicLinkEnabled"] is True
        assert (on["VpcId"], on["RegionId"], on["Status"]) == ("vpc-ok", REGION, "Available")
        assert on["CidrBlock"] == "172.16.0.0/12"
        assert isinstance(on["OwnerId"], int)
        new = await in_thread(lambda: sdk.vpc(REGION, "vpc-new"))
        assert (new["Status"], new["CidrBlock"]) == ("Pending", "10.0.0.0/8")
        error = await expect_error(lambda: sdk.vpc(REGION, "vpc-nope"))
        assert (error.code, error.status) == ("InvalidVpcID.NotFound", 404)
        assert issubclass(error.kind, expected_class(kind, 404))


@pytest.mark.parametrize("kind", SDKS)
async def test_describe_links_by_instance_ids(kind: str) -> None:
    async with emulator() as running:
        sdk = make_sdk(kind, running)
        ids = ["i-linked", "i-full", "i-ok"] + [f"i-x{n}" for n in range(97)]
        body = await in_thread(lambda: sdk.links_of(REGION, ids, None))
        assert body["TotalCount"] == 2
        assert body["Links"]["Link"] == [
            {"InstanceId": "i-full", "VpcId": "vpc-full"},
            {"InstanceId": "i-linked", "VpcId": "vpc-other"},
        ]
        narrowed = await in_thread(lambda: sdk.links_of(REGION, ids, "vpc-full"))
        assert narrowed["Links"]["Link"] == [{"InstanceId": "i-full", "VpcId": "vpc-full"}]
        too_many = [*ids, "i-one-more"]
        error = await expect_error(lambda: sdk.links_of(REGION, too_many, None))
        assert (error.code, error.status) == ("InvalidParameter", 400)


@pytest.mark.parametrize("kind", SDKS)
async def test_wrong_secret(kind: str) -> None:
    async with emulator() as running:
        sdk = make_sdk(kind, running, secret="not-the-secret")
        error = await expect_error(lambda: sdk.links(REGION, "vpc-ok"))
        assert error.status == 400
        if kind == "core":
            # The old SDK compares our "server string to sign is:..." with its own: equal
            # strings mean only the secret can be wrong, and it says so.
            assert error.code == "InvalidAccessKeySecret"
        else:
            assert error.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("kind", SDKS)
async def test_unknown_access_key(kind: str) -> None:
    async with emulator() as running:
        sdk = make_sdk(kind, running, key="LTAInobodynobodynobody00")
        error = await expect_error(lambda: sdk.links(REGION, "vpc-ok"))
        assert (error.code, error.status) == ("InvalidAccessKeyId.NotFound", 404)


@pytest.mark.parametrize("kind", SDKS)
async def test_sts_token(kind: str) -> None:
    async with emulator(security_tokens={AK: "sts-token-1"}) as running:
        sdk = make_sdk(kind, running, token="sts-token-1")
        assert (await in_thread(lambda: sdk.links(REGION, "vpc-ok")))["TotalCount"] == 0
        wrong = make_sdk(kind, running, token="sts-token-2")
        error = await expect_error(lambda: wrong.links(REGION, "vpc-ok"))
        assert (error.code, error.status) == ("InvalidSecurityToken.Malformed", 400)


@pytest.mark.parametrize("kind", SDKS)
async def test_missing_parameter(kind: str) -> None:
    async with emulator() as running:
        sdk = make_sdk(kind, running)
        error = await expect_error(lambda: sdk.attach(REGION, "", "vpc-ok"))
        assert (error.code, error.status) == ("MissingParameter", 400)


@pytest.mark.parametrize("kind", SDKS)
async def test_server_errors_and_no_sdk_retry(kind: str) -> None:
    async with emulator(unavailable_rate=1.0) as running:
        sdk = make_sdk(kind, running)
        error = await expect_error(lambda: sdk.attach(REGION, "i-ok", "vpc-ok"))
        assert (error.code, error.status) == ("ServiceUnavailable", 503)
        assert issubclass(error.kind, expected_class(kind, 503))
        # Neither SDK (as configured here) resent the non-idempotent call.
        assert running.emulator.state()["calls"]["AttachClassicLinkVpc"] == {
            "ServiceUnavailable": 1
        }


@pytest.mark.parametrize("kind", SDKS)
async def test_commit_then_error_through_the_sdk(kind: str) -> None:
    async with emulator(commit_then_error_rate=1.0) as running:
        sdk = make_sdk(kind, running)
        error = await expect_error(lambda: sdk.attach(REGION, "i-ok", "vpc-ok"))
        assert (error.code, error.status) == ("InternalError", 500)
        assert running.model.links["i-ok"] == "vpc-ok"


@pytest.mark.parametrize("kind", SDKS)
async def test_throttling_with_retry_after(kind: str) -> None:
    async with emulator(qps=1, retry_after_ms=2000) as running:
        sdk = make_sdk(kind, running)
        await in_thread(lambda: sdk.links(REGION, "vpc-ok"))
        error = await expect_error(lambda: sdk.links(REGION, "vpc-ok"))
        assert (error.code, error.status) == ("Throttling.User", 400)
        if kind != "core":
            # The tea SDK reads x-acs-retry-after into a ThrottlingException.
            assert issubclass(error.kind, ThrottlingException)
