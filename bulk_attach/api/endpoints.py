"""The official host names of the ECS and VPC APIs, per region and endpoint type.

Copied from Alibaba Cloud's own Python SDKs, so that bulk-attach sends where they send
without depending on them at run time (they are test-only packages here):

- ``ECS_PUBLIC``: ``alibabacloud_ecs20140526/client.py`` (``Client._endpoint_map``),
  package ``alibabacloud-ecs20140526`` 7.11.8;
- ``VPC_PUBLIC``: ``alibabacloud_vpc20160428/client.py`` (``Client._endpoint_map``),
  package ``alibabacloud-vpc20160428`` 7.2.2;
- the rule for every other region (the SDKs' ``endpoint_rule`` is ``regional``):
  ``<product>.<region>.aliyuncs.com``, from ``alibabacloud_tea_openapi/utils.py``
  (``Utils.get_endpoint_rules``);
- private (VPC) endpoints: ``<product>-vpc.<region>.aliyuncs.com`` for every region, the map
  not consulted, as ``aliyun-python-sdk-core``'s ``EndpointResolverRules`` resolves a
  request whose network is not ``public`` and as the aliyun CLI's ``--endpoint-type vpc``.

``tests/test_endpoints.py`` checks the copies against the installed SDKs' maps. To refresh:
copy the two ``_endpoint_map`` dicts verbatim and update the versions above.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

__all__ = ["ECS_PUBLIC", "SOURCES", "VPC_PUBLIC", "official_host"]

# The SDK packages (and their versions) the maps below were copied from.
SOURCES: Mapping[str, str] = {
    "alibabacloud-ecs20140526": "7.11.8",
    "alibabacloud-vpc20160428": "7.2.2",
}

ECS_PUBLIC: Mapping[str, str] = {
    "cn-hangzhou": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-shanghai-finance-1": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-shenzhen-finance-1": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-north-2-gov-1": "ecs.aliyuncs.com",
    "ap-northeast-2-pop": "ecs.aliyuncs.com",
    "cn-beijing-finance-pop": "ecs.aliyuncs.com",
    "cn-beijing-gov-1": "ecs.aliyuncs.com",
    "cn-beijing-nu16-b01": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-edge-1": "ecs.cn-qingdao-nebula.aliyuncs.com",
    "cn-fujian": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-haidian-cm12-c01": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-bj-b01": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-finance": "ecs.aliyuncs.com",
    "cn-hangzhou-internal-prod-1": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-internal-test-1": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-internal-test-2": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-internal-test-3": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-test-306": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-hongkong-finance-pop": "ecs.aliyuncs.com",
    "cn-huhehaote-nebula-1": "ecs.cn-qingdao-nebula.aliyuncs.com",
    "cn-shanghai-et15-b01": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-shanghai-et2-b01": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-shanghai-inner": "ecs.aliyuncs.com",
    "cn-shanghai-internal-test-1": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-shenzhen-inner": "ecs.aliyuncs.com",
    "cn-shenzhen-st4-d01": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-shenzhen-su18-b01": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-wuhan": "ecs.aliyuncs.com",
    "cn-yushanfang": "ecs.aliyuncs.com",
    "cn-zhangbei": "ecs.aliyuncs.com",
    "cn-zhangbei-na61-b01": "ecs-cn-hangzhou.aliyuncs.com",
    "cn-zhangjiakou-na62-a01": "ecs.cn-zhangjiakou.aliyuncs.com",
    "cn-zhengzhou-nebula-1": "ecs.cn-qingdao-nebula.aliyuncs.com",
    "eu-west-1-oxs": "ecs.cn-shenzhen-cloudstone.aliyuncs.com",
    "rus-west-1-pop": "ecs.aliyuncs.com",
}

VPC_PUBLIC: Mapping[str, str] = {
    "cn-hangzhou": "vpc.aliyuncs.com",
    "cn-shanghai-finance-1": "vpc.aliyuncs.com",
    "cn-shenzhen-finance-1": "vpc.aliyuncs.com",
    "cn-north-2-gov-1": "vpc.aliyuncs.com",
    "ap-northeast-2-pop": "vpc.aliyuncs.com",
    "cn-beijing-finance-pop": "vpc.aliyuncs.com",
    "cn-beijing-gov-1": "vpc.aliyuncs.com",
    "cn-beijing-nu16-b01": "vpc.aliyuncs.com",
    "cn-edge-1": "vpc-nebula.cn-qingdao-nebula.aliyuncs.com",
    "cn-fujian": "vpc.aliyuncs.com",
    "cn-haidian-cm12-c01": "vpc.aliyuncs.com",
    "cn-hangzhou-bj-b01": "vpc.aliyuncs.com",
    "cn-hangzhou-finance": "vpc.aliyuncs.com",
    "cn-hangzhou-internal-prod-1": "vpc.aliyuncs.com",
    "cn-hangzhou-internal-test-1": "vpc-pre.cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-internal-test-2": "vpc-inner-pre.cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-internal-test-3": "vpc-pre.cn-hangzhou.aliyuncs.com",
    "cn-hangzhou-test-306": "vpc-pre.cn-hangzhou.aliyuncs.com",
    "cn-hongkong-finance-pop": "vpc.aliyuncs.com",
    "cn-huhehaote-nebula-1": "vpc-nebula.cn-qingdao-nebula.aliyuncs.com",
    "cn-qingdao-nebula": "vpc-nebula.cn-qingdao-nebula.aliyuncs.com",
    "cn-shanghai-et15-b01": "vpc-pre.cn-hangzhou.aliyuncs.com",
    "cn-shanghai-et2-b01": "vpc.aliyuncs.com",
    "cn-shanghai-inner": "vpc.aliyuncs.com",
    "cn-shanghai-internal-test-1": "vpc-pre.cn-hangzhou.aliyuncs.com",
    "cn-shenzhen-inner": "vpc.aliyuncs.com",
    "cn-shenzhen-st4-d01": "vpc.aliyuncs.com",
    "cn-shenzhen-su18-b01": "vpc.aliyuncs.com",
    "cn-wuhan": "vpc.aliyuncs.com",
    "cn-yushanfang": "vpc.aliyuncs.com",
    "cn-zhangbei": "vpc.aliyuncs.com",
    "cn-zhangbei-na61-b01": "vpc.aliyuncs.com",
    "cn-zhangjiakou-na62-a01": "vpc.cn-zhangjiakou.aliyuncs.com",
    "cn-zhengzhou-nebula-1": "vpc-nebula.cn-qingdao-nebula.aliyuncs.com",
    "eu-west-1-oxs": "vpc-nebula.cn-shenzhen-cloudstone.aliyuncs.com",
    "rus-west-1-pop": "vpc.aliyuncs.com",
}

_PUBLIC: Mapping[str, Mapping[str, str]] = {"ecs": ECS_PUBLIC, "vpc": VPC_PUBLIC}
_REGION_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def official_host(product: Literal["ecs", "vpc"], region: str, endpoint_type: str) -> str:
    """The host name the official SDKs use for ``product`` in ``region``.

    ``endpoint_type`` is ``public`` or ``vpc``. ``ValueError`` for a region id that could
    not be part of a host name (callers refuse it before any traffic).
    """
    if not _REGION_RE.fullmatch(region):
        raise ValueError(f"{region!r} is not a valid region id")
    if endpoint_type == "vpc":
        return f"{product}-vpc.{region}.aliyuncs.com"
    if endpoint_type != "public":
        raise ValueError(f"unknown endpoint type {endpoint_type!r}")
    return _PUBLIC[product].get(region) or f"{product}.{region}.aliyuncs.com"
