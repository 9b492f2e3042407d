"""The emulator's wire: parse a request, route it to a model verb, render the answer.

Parsing follows what the service accepts and what the SDKs send: GET or POST on ``/``,
parameters from the raw query string *and* an ``application/x-www-form-urlencoded`` body,
``+`` read as a space, blank values kept (they are part of what V1 signs: the old SDK sends
``SignatureType=``). The raw query is parsed here rather than through aiohttp's
``request.query``, so nothing is lost or normalised before the signature is checked.

Every error, whatever raised it (parsing, authentication, flow control, faults, the model),
becomes an ``ApiFault`` and is rendered by ``render_error`` only: the JSON or XML body
(RequestId, HostId, Code, Message, Recommend) and the HTTP status from the error catalog,
in the model's variant ("2018" contract page or "current" doc).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from bulk_attach.core.catalog import CATALOG, action_code
from bulk_attach.emulator.model import EcsModel, Instance, ModelError, owner_id
from bulk_attach.settings import ECS_API_VERSION, VPC_API_VERSION

__all__ = [
    "ACTIONS",
    "Action",
    "ApiFault",
    "Format",
    "Headers",
    "ParsedRequest",
    "find_action",
    "http_status",
    "new_request_id",
    "next_token",
    "parse_request",
    "parse_wire",
    "render_error",
    "render_success",
    "response_format",
    "run_action",
]

Format = Literal["JSON", "XML"]
Headers = CIMultiDictProxy[str] | CIMultiDict[str]

JSON_CONTENT_TYPE: Final = "application/json;charset=utf-8"
# The tea SDK recognises an XML error body by exactly this content type.
XML_CONTENT_TYPE: Final = "text/xml;charset=utf-8"
FORM_CONTENT_TYPE: Final = "application/x-www-form-urlencoded"

MAX_IDS = 100
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
# DescribeInstances' token paging: MaxResults 10-100 (default 10), an opaque NextToken.
MIN_MAX_RESULTS = 10
DEFAULT_MAX_RESULTS = 10
MAX_MAX_RESULTS = 100
_PAGE_MARK: Final = "after:"

# Used only when the catalog gives no HTTP status for a service code (status 0 marks a
# local code that shares the service code's name).


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """One request as the emulator reads it; everything auth and routing need."""

    method: str
    host: str
    # Query and form body merged (the body wins on a clash): what V1 signs and actions read.
    params: dict[str, str]
    # The query string alone: what V3 signs.
    query: dict[str, str]
    headers: Headers
    body: bytes

    @property
    def is_v3(self) -> bool:
        return self.headers.get("Authorization", "").startswith("ACS3-")

    @property
    def action(self) -> str:
        return self.params.get("Action") or self.headers.get("x-acs-action") or ""

    @property
    def version(self) -> str:
        return self.params.get("Version") or self.headers.get("x-acs-version") or ""


class ApiFault(Exception):
    """An error answer: a service code, a message, and optionally a fixed HTTP status."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        info = CATALOG.get(code)
        self.code = code
        self.message = message or (info.message if info else code)
        self.status = status
        self.headers = dict(headers or {})
        super().__init__(f"{code}: {self.message}")


def missing(name: str) -> ApiFault:
    return ApiFault(
        "MissingParameter",
        f'The input parameter "{name}" that is mandatory for processing this request '
        "is not supplied.",
    )


def invalid(name: str, detail: str) -> ApiFault:
    return ApiFault("InvalidParameter", f'The specified parameter "{name}" is not valid: {detail}')


# --- parsing ---------------------------------------------------------------------------


def parse_wire(
    method: str, host: str, raw_query: str, headers: Headers, body: bytes
) -> ParsedRequest:
    """Build a ``ParsedRequest`` from what came over the wire (pure; used by tests too)."""
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    params = query
    if body and headers.get("Content-Type", "").split(";", 1)[0].strip() == FORM_CONTENT_TYPE:
        params = dict(query)
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return ParsedRequest(method, host, params, query, headers, body)


async def parse_request(request: web.Request) -> ParsedRequest:
    """Read an aiohttp request: the raw query (never ``request.query``) and the body."""
    raw_query = request.raw_path.partition("?")[2]
    body = await request.read() if request.can_read_body else b""
    return parse_wire(request.method, request.host, raw_query, request.headers, body)


def response_format(request: ParsedRequest) -> Format:
    """``Format`` if given (JSON, json, XML); else JSON for V3 (the tea SDK parses JSON), XML."""
    wanted = request.params.get("Format", "").lower()
    if wanted == "json":
        return "JSON"
    if wanted == "xml":
        return "XML"
    return "JSON" if request.is_v3 else "XML"


# --- rendering -------------------------------------------------------------------------


def new_request_id() -> str:
    """RequestIds are upper-case UUIDs, like ``C0003E8B-B930-4F59-ADC0-0E209A9012A8``."""
    return str(uuid.uuid4()).upper()


def http_status(code: str, variant: str, explicit: int | None = None) -> int:
    if explicit is not None:
        return explicit
    info = CATALOG.get(code)
    if info is None:
        return 400
    status = info.current_status if variant == "current" else info.status
    return status or 400


def _xml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _xml(name: str, value: Any) -> str:
    if isinstance(value, dict):
        inner = "".join(_xml(key, item) for key, item in value.items())
        return f"<{name}>{inner}</{name}>"
    if isinstance(value, list):
        # {"Link": [a, b]} is <Link>a</Link><Link>b</Link>, as the service writes lists.
        return "".join(_xml(name, item) for item in value)
    return f"<{name}>{_xml_value(value)}</{name}>"


def _body(root: str, payload: dict[str, Any], fmt: Format) -> tuple[str, str]:
    if fmt == "JSON":
        return json.dumps(payload, separators=(",", ":")), JSON_CONTENT_TYPE
    return f'<?xml version="1.0" encoding="UTF-8"?>{_xml(root, payload)}', XML_CONTENT_TYPE


def render_success(action: str, payload: dict[str, Any], fmt: Format) -> web.Response:
    text, content_type = _body(f"{action}Response", payload, fmt)
    return web.Response(text=text, headers={"Content-Type": content_type})


def render_error(
    fault: ApiFault, *, fmt: Format, request_id: str, host_id: str, product: str, variant: str
) -> web.Response:
    """The one place an error answer is written."""
    payload = {
        "RequestId": request_id,
        "HostId": host_id,
        "Code": fault.code,
        "Message": fault.message,
        "Recommend": (
            f"https://api.aliyun.com/troubleshoot?q={fault.code}"
            f"&product={product}&requestId={request_id}"
        ),
    }
    text, content_type = _body("Error", payload, fmt)
    headers = {"Content-Type": content_type, **fault.headers}
    return web.Response(
        text=text, status=http_status(fault.code, variant, fault.status), headers=headers
    )


# --- routing ---------------------------------------------------------------------------

Handler = Callable[[EcsModel, str, dict[str, str]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Action:
    """One API action: where it lives, what it requires, and the model verb behind it."""

    name: str
    product: str  # "Ecs" or "Vpc": HostId and Recommend
    required: tuple[str, ...]
    mutating: bool  # changes state: eligible for commit-then-error / commit-then-drop
    handler: Handler


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise invalid(name, f"{value} is outside {low}-{high}")
    return value


def _page(params: Mapping[str, str]) -> tuple[int, int]:
    number = _int_param(params, "PageNumber", 1, 1, 2**31 - 1)
    size = _int_param(params, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    return number, size


def _attach(model: EcsModel, account: str, p: dict[str, str]) -> dict[str, Any]:
    model.attach(account, p["RegionId"], p["InstanceId"], p["VpcId"])
    return {}


def _detach(model: EcsModel, account: str, p: dict[str, str]) -> dict[str, Any]:
    model.detach(account, p["RegionId"], p["InstanceId"], p["VpcId"])
    return {}


def _describe_links(model: EcsModel, account: str, p: dict[str, str]) -> dict[str, Any]:
    vpc_id = p.get("VpcId") or None
    ids = [item.strip() for item in p.get("InstanceId", "").split(",") if item.strip()]
    if vpc_id is None and not ids:
        raise ApiFault(
            "MissingParameter",
            'The input parameter "VpcId" or "InstanceId" that is mandatory for processing '
            "this request is not supplied.",
        )
    if len(ids) > MAX_IDS:
        raise invalid("InstanceId", f"at most {MAX_IDS} instance IDs, got {len(ids)}")
    number, size = _page(p)
    links = model.describe_links(account, p["RegionId"], vpc_id=vpc_id, instance_ids=ids or None)
    start = (number - 1) * size
    page = links[start : start + size]
    return {
        "TotalCount": len(links),
        "PageNumber": number,
        "PageSize": size,
        "Links": {"Link": [{"InstanceId": iid, "VpcId": vid} for iid, vid in page]},
    }


def _instance_ids(raw: str) -> list[str]:
    try:
        ids = json.loads(raw)
    except ValueError:
        raise invalid("InstanceIds", "not a JSON array of strings") from None
    if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
        raise invalid("InstanceIds", "not a JSON array of strings")
    if len(ids) > MAX_IDS:
        raise invalid("InstanceIds", f"at most {MAX_IDS} instance IDs, got {len(ids)}")
    return ids


def _lock_message(reason: str) -> str:
    # The service's LockMsg wording is not documented; this text is the emulator's own.
    return f"The specified instance is locked for the reason: {reason}."


def _instance_json(instance: Instance) -> dict[str, Any]:
    return {
        "InstanceId": instance.instance_id,
        "RegionId": instance.region_id,
        "ZoneId": instance.zone_id,
        "Status": instance.status,
        "InstanceNetworkType": instance.network_type,
        "OperationLocks": {
            "LockReason": [
                {"LockReason": reason, "LockMsg": _lock_message(reason)}
                for reason in instance.lock_reasons
            ]
        },
        "VpcAttributes": {"VpcId": instance.vpc_id},
    }


def next_token(after_instance_id: str) -> str:
    """An opaque NextToken: where the next page starts (after this instance id)."""
    return base64.urlsafe_b64encode((_PAGE_MARK + after_instance_id).encode()).decode()


def _after(token: str) -> str:
    """The instance id a NextToken continues after; InvalidParameter if it is not ours."""
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (UnicodeError, binascii.Error):
        text = ""
    if not text.startswith(_PAGE_MARK):
        raise invalid("NextToken", "not a token this API gave out")
    return text.removeprefix(_PAGE_MARK)


def _describe_instances(model: EcsModel, account: str, p: dict[str, str]) -> dict[str, Any]:
    # Absent (or blank) InstanceIds: every instance; "[]": none.
    ids = _instance_ids(p["InstanceIds"]) if p.get("InstanceIds") else None
    token_paging = bool(p.get("NextToken") or p.get("MaxResults"))
    if token_paging:
        size = _int_param(p, "MaxResults", DEFAULT_MAX_RESULTS, MIN_MAX_RESULTS, MAX_MAX_RESULTS)
        after = _after(p["NextToken"]) if p.get("NextToken") else None
    else:
        number, size = _page(p)
    instances = model.describe_instances(account, p["RegionId"], ids)
    if not token_paging:
        start = (number - 1) * size
        return {
            "TotalCount": len(instances),
            "PageNumber": number,
            "PageSize": size,
            "Instances": {
                "Instance": [_instance_json(item) for item in instances[start : start + size]]
            },
        }
    rest = [i for i in instances if after is None or i.instance_id > after]
    page = rest[:size]
    more = len(rest) > size
    # With NextToken, TotalCount means nothing on the service; here it counts every match.
    return {
        "TotalCount": len(instances),
        "NextToken": next_token(page[-1].instance_id) if more else "",
        "Instances": {"Instance": [_instance_json(item) for item in page]},
    }


def _describe_vpc(model: EcsModel, account: str, p: dict[str, str]) -> dict[str, Any]:
    vpc = model.describe_vpc(account, p["RegionId"], p["VpcId"])
    return {
        "VpcId": vpc.vpc_id,
        "RegionId": vpc.region_id,
        "Status": vpc.status,
        "CidrBlock": vpc.cidr_block,
        "OwnerId": owner_id(vpc.owner),
        "ClassicLinkEnabled": vpc.classic_link_enabled,
    }


_LINK_PARAMS = ("RegionId", "InstanceId", "VpcId")

ACTIONS: Final[dict[tuple[str, str], Action]] = {
    (ECS_API_VERSION, "AttachClassicLinkVpc"): Action(
        "AttachClassicLinkVpc", "Ecs", _LINK_PARAMS, True, _attach
    ),
    (ECS_API_VERSION, "DetachClassicLinkVpc"): Action(
        "DetachClassicLinkVpc", "Ecs", _LINK_PARAMS, True, _detach
    ),
    (ECS_API_VERSION, "DescribeClassicLinkInstances"): Action(
        "DescribeClassicLinkInstances", "Ecs", ("RegionId",), False, _describe_links
    ),
    (ECS_API_VERSION, "DescribeInstances"): Action(
        "DescribeInstances", "Ecs", ("RegionId",), False, _describe_instances
    ),
    (VPC_API_VERSION, "DescribeVpcAttribute"): Action(
        "DescribeVpcAttribute", "Vpc", ("RegionId", "VpcId"), False, _describe_vpc
    ),
}
_PRODUCT_BY_VERSION: Final = {ECS_API_VERSION: "Ecs", VPC_API_VERSION: "Vpc"}


def product_for(request: ParsedRequest) -> str:
    """The product, "Ecs" or "Vpc": from the Version, else from the host name (ecs.*, vpc.*)."""
    product = _PRODUCT_BY_VERSION.get(request.version)
    if product is not None:
        return product
    return "Vpc" if request.host.lower().startswith("vpc") else "Ecs"


def find_action(request: ParsedRequest) -> Action:
    """The action a request names, told apart by Version (and host), as the service does."""
    name, version = request.action, request.version
    if not name:
        raise missing("Action")
    if not version:
        raise missing("Version")
    if version not in _PRODUCT_BY_VERSION:
        raise ApiFault("InvalidVersion", f'Specified parameter Version "{version}" is not valid.')
    host = request.host.lower()
    wrong_host = (version == ECS_API_VERSION and host.startswith("vpc")) or (
        version == VPC_API_VERSION and host.startswith("ecs")
    )
    action = None if wrong_host else ACTIONS.get((version, name))
    if action is None:
        raise ApiFault("InvalidAction.NotFound")
    return action


def run_action(
    action: Action, model: EcsModel, account: str, params: dict[str, str]
) -> dict[str, Any]:
    """Check required parameters, run the model verb; ModelError becomes ApiFault here, with
    the HTTP status the action's own pages give the code (``catalog.action_code``), if any."""
    for name in action.required:
        if not params.get(name):
            raise missing(name)
    try:
        return action.handler(model, account, params)
    except ModelError as error:
        own = action_code(action.name, error.code)
        status = own.status_for(model.variant) if own is not None else None
        raise ApiFault(error.code, error.message, status=status) from None
