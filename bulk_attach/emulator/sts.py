"""STS, the ECS metadata service and a credentials URI, emulated beside the ECS API.

* STS (``Version=2015-04-01`` on ``/``): AssumeRole (signed with the source credentials,
  checked by the same ``Authenticator`` as ECS; RoleArn and RoleSessionName validated;
  DurationSeconds 900 up to ``max_duration``), AssumeRoleWithOIDC (anonymous; the token is
  checked when ``oidc_tokens`` is set) and GetCallerIdentity.
* The metadata service, IMDSv2: ``PUT /latest/api/token`` then, with the token header,
  ``GET /latest/meta-data/ram/security-credentials/[<role>]``.
* ``GET /credentials-uri``: the same JSON as the metadata service.

Every issued key joins the keyring with its token and an expiry; the ECS API then answers
``InvalidSecurityToken.Expired`` once it has passed. ``lifetime`` shortens every issued
credential (a few seconds) so that tests exercise refresh in a run that lasts seconds.
``answer`` makes the metadata service and the URI misbehave: "garbage" or "hang".
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final, cast

from aiohttp import web

from bulk_attach.emulator.auth import Authenticator
from bulk_attach.emulator.http import ApiFault, new_request_id, parse_request
from bulk_attach.emulator.model import owner_id

__all__ = ["STS_VERSION", "StsService", "StsSettings"]

STS_VERSION: Final = "2015-04-01"
_ROLE_ARN = re.compile(r"acs:ram::(\d+):role/([^\s/]+)")
_SESSION_NAME = re.compile(r"[A-Za-z0-9.@_-]{2,64}")
_ROLE_PATH: Final = "/latest/meta-data/ram/security-credentials/"
_STATUS = {
    "EntityNotExist.Role": 404,
    "NoPermission": 403,
    "InvalidParameter.OIDCToken": 400,
}


@dataclass(frozen=True)
class StsSettings:
    # Role ARNs that can be assumed; None: any well-formed ARN.
    roles: frozenset[str] | None = None
    # Seconds every issued credential lives, whatever DurationSeconds says (None: honour it).
    lifetime: float | None = None
    max_duration: int = 3600
    # OIDC tokens accepted; None: any non-empty token.
    oidc_tokens: frozenset[str] | None = None
    # The ECS instance's RAM role name; None: the instance has no role attached.
    instance_role: str | None = "EcsRamRoleBulkAttach"


def _expiration(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(moment)))


class StsService:
    """Issues temporary keys into the ECS API's keyring; counts what it issued."""

    def __init__(
        self, settings: StsSettings, authenticator: Authenticator, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.clock = clock
        self.answer = "ok"  # "ok", "garbage" or "hang" (metadata service and URI)
        self.hang_seconds = 30.0
        self.issued: Counter[str] = Counter()
        self._identities: dict[str, tuple[str, str]] = {}
        self._imds_tokens: dict[str, float] = {}

    # --- keys ------------------------------------------------------------------------

    def _issue(self, account: str, arn: str, duration: float, how: str) -> dict[str, str]:
        alphabet = string.ascii_letters + string.digits
        key_id = "STS." + "".join(secrets.choice(alphabet) for _ in range(24))
        secret = "".join(secrets.choice(alphabet) for _ in range(40))
        token = "CAIS" + "".join(secrets.choice(alphabet) for _ in range(96))
        keyring = self.authenticator.keyring
        lifetime = self.settings.lifetime if self.settings.lifetime is not None else duration
        expires = self.clock() + lifetime
        cast(MutableMapping[str, str], keyring.secrets)[key_id] = secret
        cast(MutableMapping[str, str], keyring.tokens)[key_id] = token
        cast(MutableMapping[str, float], keyring.expires)[key_id] = expires
        cast(MutableMapping[str, str], keyring.accounts)[key_id] = account
        self._identities[key_id] = (arn, "AssumedRoleUser")
        self.issued[how] += 1
        return {
            "AccessKeyId": key_id,
            "AccessKeySecret": secret,
            "SecurityToken": token,
            "Expiration": _expiration(expires),
        }

    def _role(self, params: dict[str, str]) -> tuple[str, str, int]:
        arn = params.get("RoleArn", "")
        if not arn:
            raise ApiFault("MissingParameter", "RoleArn is mandatory for this action.")
        match = _ROLE_ARN.fullmatch(arn)
        if match is None:
            raise ApiFault("InvalidParameter.RoleArn", "The parameter RoleArn is wrongly formed.")
        if self.settings.roles is not None and arn not in self.settings.roles:
            raise ApiFault("EntityNotExist.Role", "The role not exists: " + arn)
        name = params.get("RoleSessionName", "")
        if not _SESSION_NAME.fullmatch(name):
            raise ApiFault(
                "InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrong."
            )
        text = params.get("DurationSeconds") or "3600"
        if not text.isdigit() or not 900 <= int(text) <= self.settings.max_duration:
            raise ApiFault(
                "InvalidParameter.DurationSeconds",
                f"The Min/Max value of DurationSeconds is 900/{self.settings.max_duration} s.",
            )
        return f"acs:ram::{match.group(1)}:assumed-role/{match.group(2)}/{name}", name, int(text)

    # --- STS -------------------------------------------------------------------------

    @staticmethod
    def handles(request: web.Request) -> bool:
        version = request.query.get("Version") or request.headers.get("x-acs-version")
        return version == STS_VERSION

    async def handle(self, request: web.Request) -> web.Response:
        request_id = new_request_id()
        try:
            parsed = await parse_request(request)
            action = parsed.action
            if action == "AssumeRoleWithOIDC":
                payload = self._assume_with_oidc(parsed.params)
            else:
                caller = self.authenticator.authenticate(parsed)
                if action == "AssumeRole":
                    assumed_arn, _, duration = self._role(parsed.params)
                    credentials = self._issue(caller.account, assumed_arn, duration, "AssumeRole")
                    payload = {
                        "Credentials": credentials,
                        "AssumedRoleUser": {"Arn": assumed_arn, "AssumedRoleId": "3" * 18},
                    }
                elif action == "GetCallerIdentity":
                    payload = self._identity(caller.access_key_id, caller.account)
                else:
                    raise ApiFault("InvalidAction.NotFound")
        except ApiFault as error:
            status = (
                error.status
                or _STATUS.get(error.code)
                or (404 if error.code.startswith("InvalidAccessKeyId") else 400)
            )
            body = {
                "RequestId": request_id,
                "HostId": "sts.aliyuncs.com",
                "Code": error.code,
                "Message": error.message,
            }
            return web.json_response(body, status=status)
        return web.json_response({"RequestId": request_id, **payload})

    def _assume_with_oidc(self, params: dict[str, str]) -> dict[str, Any]:
        for name in ("OIDCProviderArn", "OIDCToken"):
            if not params.get(name):
                raise ApiFault("MissingParameter", f"{name} is mandatory for this action.")
        allowed = self.settings.oidc_tokens
        if allowed is not None and params["OIDCToken"] not in allowed:
            raise ApiFault("InvalidParameter.OIDCToken", "The OIDC token is invalid.")
        assumed_arn, _, duration = self._role(params)
        # The role's keys act in the emulator's one account (its world has no other).
        account = self.authenticator.keyring.default_account
        credentials = self._issue(account, assumed_arn, duration, "AssumeRoleWithOIDC")
        return {"Credentials": credentials, "AssumedRoleUser": {"Arn": assumed_arn}}

    def _identity(self, key_id: str, account: str) -> dict[str, str]:
        arn, kind = self._identities.get(key_id, ("", ""))
        number = str(owner_id(account))
        if not arn:
            arn, kind = f"acs:ram::{number}:root", "Account"
        return {
            "AccountId": number,
            "Arn": arn,
            "IdentityType": kind,
            "PrincipalId": key_id[:8] + "0" * 8,
            "UserId": number,
        }

    # --- the metadata service and the URI --------------------------------------------

    async def _misbehave(self) -> web.Response | None:
        if self.answer == "hang":
            await asyncio.sleep(self.hang_seconds)
        if self.answer == "garbage":
            return web.Response(text='{"Code": "Success", "AccessKeyId": 12, "Nonsense"')
        return None

    def _credentials_json(self, account: str, arn: str, how: str) -> web.Response:
        body = {"Code": "Success", **self._issue(account, arn, 21600, how)}
        body["LastUpdated"] = _expiration(self.clock())
        return web.Response(text=json.dumps(body), content_type="text/plain")

    async def imds_token(self, request: web.Request) -> web.Response:
        ttl = request.headers.get("X-aliyun-ecs-metadata-token-ttl-seconds", "")
        if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return web.Response(status=400, text="invalid ttl")
        token = secrets.token_urlsafe(32)
        self._imds_tokens[token] = self.clock() + int(ttl)
        return web.Response(text=token)

    def _authorized(self, request: web.Request) -> bool:
        expires = self._imds_tokens.get(request.headers.get("X-aliyun-ecs-metadata-token", ""))
        return expires is not None and self.clock() < expires

    async def imds_role(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        role = self.settings.instance_role
        if role is None:
            return web.Response(status=404, text="Not Found")
        return (await self._misbehave()) or web.Response(text=role)

    async def imds_credentials(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401, text="Unauthorized")
        role = request.match_info["role"]
        if role != self.settings.instance_role:
            return web.Response(status=404, text="Not Found")
        bad = await self._misbehave()
        if bad is not None:
            return bad
        number = owner_id(self.authenticator.keyring.default_account)
        arn = f"acs:ram::{number}:assumed-role/{role}/vm-ram-i-bulkattach"
        return self._credentials_json(self.authenticator.keyring.default_account, arn, "metadata")

    async def credentials_uri(self, request: web.Request) -> web.Response:
        bad = await self._misbehave()
        if bad is not None:
            return bad
        account = self.authenticator.keyring.default_account
        arn = f"acs:ram::{owner_id(account)}:assumed-role/uri-role/uri"
        return self._credentials_json(account, arn, "credentials-uri")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_put("/latest/api/token", self.imds_token)
        app.router.add_get(_ROLE_PATH, self.imds_role)
        app.router.add_get(_ROLE_PATH + "{role}", self.imds_credentials)
        app.router.add_get("/credentials-uri", self.credentials_uri)
