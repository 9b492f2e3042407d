"""Which host each product's calls go to: api/endpoints.py's copy of the official data, the
official SDKs' own resolution, and the endpoint options that override it."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import alibabacloud_ecs20140526.client as ecs_sdk  # type: ignore[import-untyped]
import alibabacloud_vpc20160428.client as vpc_sdk  # type: ignore[import-untyped]
import pytest
from alibabacloud_tea_openapi import models as tea_models  # type: ignore[import-untyped]
from aliyunsdkcore.endpoint.endpoint_resolver_rules import (  # type: ignore[import-untyped]
    EndpointResolverRules,
)
from aliyunsdkcore.endpoint.resolver_endpoint_request import (  # type: ignore[import-untyped]
    ResolveEndpointRequest,
)

from bulk_attach.api import endpoints
from bulk_attach.api.client import EcsClient, endpoint_for
from bulk_attach.api.credentials import Credentials
from bulk_attach.errors import ApiError, ConfigError
from bulk_attach.settings import ClientSettings, EndpointType

SDKS: dict[str, tuple[str, Any, object]] = {
    "ecs": ("alibabacloud-ecs20140526", ecs_sdk, endpoints.ECS_PUBLIC),
    "vpc": ("alibabacloud-vpc20160428", vpc_sdk, endpoints.VPC_PUBLIC),
}
# Ordinary regions (not in the maps) and every region the maps name.
REGIONS = sorted(
    {"cn-beijing", "cn-shanghai", "ap-southeast-1", "eu-central-1", "us-west-1", "me-east-1"}
    | set(endpoints.ECS_PUBLIC)
    | set(endpoints.VPC_PUBLIC)
)


def sdk_client(module: Any, region: str, network: str | None = None) -> Any:
    config = tea_models.Config(
        access_key_id="LTAI-endpoint-test",
        access_key_secret="not-a-secret",
        region_id=region,
        network=network,
    )
    return module.Client(config)


@pytest.mark.parametrize("product", ["ecs", "vpc"])
def test_the_copied_map_is_the_installed_sdks(product: str) -> None:
    package, module, ours = SDKS[product]
    installed = importlib.metadata.version(package)
    if installed != endpoints.SOURCES[package]:
        pytest.skip(
            f"{package} {installed} is installed, the copy is from "
            f"{endpoints.SOURCES[package]}: compare and re-copy api/endpoints.py"
        )
    assert dict(sdk_client(module, "cn-hangzhou")._endpoint_map) == ours


@pytest.mark.parametrize("product", ["ecs", "vpc"])
@pytest.mark.parametrize("region", REGIONS)
def test_public_hosts_are_where_the_sdk_sends(product: str, region: str) -> None:
    _, module, _ = SDKS[product]
    expected = sdk_client(module, region)._endpoint
    assert endpoints.official_host(product, region, "public") == expected  # type: ignore[arg-type]
    url = endpoint_for(ClientSettings(), product, region)  # type: ignore[arg-type]
    assert str(url) == f"https://{expected}"


@pytest.mark.parametrize("product", ["ecs", "vpc"])
@pytest.mark.parametrize("region", REGIONS)
def test_private_hosts_are_where_the_core_sdk_resolves_the_vpc_network(
    product: str, region: str
) -> None:
    request = ResolveEndpointRequest(region, product, None, None)
    request.request_network = "vpc"
    request.endpoint_regional = "regional"
    request.endpoint_map = SDKS[product][2]
    resolver = EndpointResolverRules()
    resolver.region_headers = [region.split("-", maxsplit=1)[0]]  # accept the region id as it is
    expected = resolver.resolve(request)
    assert expected == f"{product}-vpc.{region}.aliyuncs.com"
    settings = ClientSettings(endpoint_type=EndpointType.VPC)
    assert str(endpoint_for(settings, product, region)) == f"https://{expected}"  # type: ignore[arg-type]


def test_product_endpoints_override_the_shared_one() -> None:
    both = "https://both.example.com"
    settings = ClientSettings(endpoint=both, vpc_endpoint="https://vpc.example.com:8443")
    assert str(endpoint_for(settings, "ecs", "cn-beijing")) == both
    assert str(endpoint_for(settings, "vpc", "cn-beijing")) == "https://vpc.example.com:8443"
    only_ecs = ClientSettings(ecs_endpoint="ecs.example.com", endpoint_type=EndpointType.VPC)
    assert str(endpoint_for(only_ecs, "ecs", "cn-beijing")) == "https://ecs.example.com"
    assert str(endpoint_for(only_ecs, "vpc", "cn-beijing")) == (
        "https://vpc-vpc.cn-beijing.aliyuncs.com"
    )


@pytest.mark.parametrize("endpoint_type", list(EndpointType))
@pytest.mark.parametrize("region", ["evil.com#", "cn-hangzhou/x", "", "CN HZ", "a..b"])
def test_a_malformed_region_never_becomes_a_host(endpoint_type: EndpointType, region: str) -> None:
    settings = ClientSettings(endpoint_type=endpoint_type)
    for product in ("ecs", "vpc"):
        with pytest.raises(ApiError) as info:
            endpoint_for(settings, product, region)  # type: ignore[arg-type]
        assert info.value.code == "InvalidRegionId.Malformed"


@pytest.mark.parametrize(
    ("field", "option"), [("ecs_endpoint", "--ecs-endpoint"), ("vpc_endpoint", "--vpc-endpoint")]
)
def test_a_bad_product_endpoint_is_refused_at_start_naming_its_option(
    field: str, option: str
) -> None:
    settings = ClientSettings(**{field: "https://example.com/path"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"^{option} "):
        EcsClient(settings, Credentials("LTAI-x", "secret"))
    plain = ClientSettings(**{field: "http://10.1.2.3"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--insecure-http"):
        EcsClient(plain, Credentials("LTAI-x", "secret"))
