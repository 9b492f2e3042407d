"""Who am I: the caller's identity (STS GetCallerIdentity) and whether a region's ECS and
VPC endpoints answer these credentials. Used by ``-v`` at the start of a run and by
``bulk-attach whoami``, the check a scheduled job runs before anything else."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from bulk_attach.api import sts
from bulk_attach.api.client import EcsClient, Product, _is_loopback, parse_endpoint
from bulk_attach.api.credentials import (
    ENV_STS_ENDPOINT,
    ENV_STS_REGION,
    CredentialsProvider,
)
from bulk_attach.api.network import Network
from bulk_attach.errors import ApiError, EcsError
from bulk_attach.settings import ClientSettings

__all__ = ["EndpointCheck", "caller_identity", "check_endpoint", "sts_endpoint_for"]

# Answers that mean the endpoint spoke but refused these credentials.
_AUTH_PREFIXES = (
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "Forbidden",
    "InvalidTimeStamp",
)


def sts_endpoint_for(env: Mapping[str, str], client_settings: ClientSettings) -> URL:
    """``BULK_ATTACH_STS_ENDPOINT``; else a loopback ``--endpoint`` (an emulator serves STS
    too); else ``sts.<ALIBABA_CLOUD_STS_REGION>.aliyuncs.com`` or ``sts.aliyuncs.com``."""
    override = env.get(ENV_STS_ENDPOINT)
    if override:
        return parse_endpoint(override)
    if client_settings.endpoint:
        base = parse_endpoint(
            client_settings.endpoint, allow_insecure_http=client_settings.allow_insecure_http
        )
        if base.host and _is_loopback(base.host):
            return base
    region = env.get(ENV_STS_REGION)
    host = f"sts.{region}.aliyuncs.com" if region else "sts.aliyuncs.com"
    return URL.build(scheme="https", host=host)


async def caller_identity(
    credentials: CredentialsProvider, env: Mapping[str, str], client_settings: ClientSettings
) -> sts.Identity:
    """GetCallerIdentity with the current credentials; ``FetchError`` if it fails."""
    creds = await credentials.current()
    timeout = aiohttp.ClientTimeout(
        connect=client_settings.connect_timeout, sock_read=client_settings.read_timeout
    )
    network = Network.from_settings(client_settings.proxies, client_settings.ca_bundle)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return await sts.get_caller_identity(
            session, sts_endpoint_for(env, client_settings), creds, network=network
        )


@dataclass(frozen=True, slots=True)
class EndpointCheck:
    product: Product
    region: str
    ok: bool
    detail: str


async def check_endpoint(client: EcsClient, product: Product, region: str) -> EndpointCheck:
    """One cheap read: any answer but an authentication refusal means the endpoint works
    with these credentials (an unknown id's NotFound is such an answer)."""
    try:
        if product == "ecs":
            await client.describe_instances(region, ["i-bulkattachwhoami"])
        else:
            await client.describe_vpc_attribute(region, "vpc-bulkattachwhoami")
    except ApiError as error:
        if error.code.startswith(_AUTH_PREFIXES):
            return EndpointCheck(product, region, False, f"refused: {error}")
        return EndpointCheck(product, region, True, f"answers ({error.code})")
    except EcsError as error:
        return EndpointCheck(product, region, False, f"no answer: {error}")
    return EndpointCheck(product, region, True, "answers")
