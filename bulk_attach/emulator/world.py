"""Worlds for the emulator: read from a JSON file, derived from a pairs CSV, or both.

A rehearsal needs a cloud that looks like the user's; a test needs one it can state in a few
lines. The JSON format (the README documents it; keys follow the API's spelling)::

    {
      "comment": "free text, ignored",
      "quota": 1000,                      # default links per VPC (optional, default 1000)
      "regions": ["cn-hangzhou"],         # optional: regions of the entries below are added
      "instances": [
        {"InstanceId": "i-bp1...", "RegionId": "cn-hangzhou",
         "Status": "Running",             # Pending|Running|Starting|Stopping|Stopped
         "InstanceNetworkType": "classic",# classic|vpc (defaults: Running, classic)
         "Owner": "default",              # owning account (default "default")
         "Locked": false,                 # busy with another task (default false) ...
         "LockReasons": ["security"],     # ... or why: financial|security|Recycling|
                                          #   dedicatedhostfinancial|refunded (default [])
         "ZoneId": "cn-hangzhou-a",       # default: the region + "-a"
         "VpcId": "vpc-bp1..."}           # a VPC-type instance's own VPC (not a link)
      ],
      "vpcs": [
        {"VpcId": "vpc-bp1...", "RegionId": "cn-hangzhou", "Owner": "default",
         "ClassicLinkEnabled": true,      # default true
         "Quota": null,                   # this VPC's own link quota (default: "quota")
         "Status": "Available",           # Available|Pending (default Available)
         "CidrBlock": "172.16.0.0/12"}    # (default 172.16.0.0/12)
      ],
      "links": [{"InstanceId": "i-bp1...", "VpcId": "vpc-bp1..."}],
      "flow_control": {                   # optional: the emulator's flow control
        "qps": 40,                        # per account, region and API (null: none)
        "limiter": "window",              # bucket|window (default bucket)
        "window_seconds": 60,             # a window's length (default 1)
        "limits": {"AttachClassicLinkVpc": 10, "cn-beijing/DescribeClassicLinkInstances": 5}
      }
    }

Every problem is an :class:`~bulk_attach.errors.InputError` naming the file and the entry
(``world.json: instances[3] (i-bp1...): Status 'Runing' is not one of ...``). Unknown keys are
errors, so a typo cannot silently fall back to a default. Seeded links must join a classic
instance to a VPC of the same region and owner, and may exceed the quota (to model a VPC that
is already over it). ``"Locked": true`` without ``LockReasons`` means locked for "security";
``"Locked": false`` with reasons is a contradiction, and an error.

From a pairs CSV (``world_from_pairs``) every listed instance exists (classic, Running, owned
by ``owner``) and every listed VPC exists with ClassicLink enabled, both in the row's region.
Given an existing model (from a file), the CSV only fills the gaps: what the file defines wins.
The CSV is read by the reader ``bulk-attach run`` uses (``files/csv_input.py``): a file the
run refuses is refused here with the same error, and the world holds exactly the pairs a run
of that file would send (rows it rejects, such as an instance listed for two VPCs, are left
out).

``build_world`` is the one way the command line makes a world, from a ``WorldSpec``: both
``bulk-attach emulator --world/--world-from`` and ``bulk-attach run --emulator`` use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bulk_attach.core.rows import Row, is_region_id
from bulk_attach.emulator.faults import FaultSettings
from bulk_attach.emulator.model import (
    DEFAULT_ACCOUNT,
    DEFAULT_CIDR_BLOCK,
    DEFAULT_QUOTA,
    INSTANCE_STATUSES,
    LOCK_REASONS,
    NETWORK_TYPES,
    VPC_STATUSES,
    EcsModel,
    Instance,
    Vpc,
)
from bulk_attach.errors import InputError
from bulk_attach.files.csv_input import read_pairs

__all__ = [
    "WorldSpec",
    "build_world",
    "dump_world",
    "flow_control_of",
    "load_world",
    "save_state",
    "save_world",
    "world_from_dict",
    "world_from_pairs",
]

_TOP_KEYS: Final = frozenset(
    {"comment", "quota", "regions", "instances", "vpcs", "links", "flow_control"}
)
_FLOW_KEYS: Final = frozenset({"qps", "limiter", "window_seconds", "limits", "retry_after_ms"})
_INSTANCE_KEYS: Final = frozenset(
    {
        "InstanceId",
        "RegionId",
        "Status",
        "InstanceNetworkType",
        "Owner",
        "Locked",
        "LockReasons",
        "ZoneId",
        "VpcId",
        "Comment",
    }
)
_VPC_KEYS: Final = frozenset(
    {"VpcId", "RegionId", "Owner", "ClassicLinkEnabled", "Quota", "Status", "CidrBlock", "Comment"}
)
_LINK_KEYS: Final = frozenset({"InstanceId", "VpcId", "Comment"})


class _Problems:
    """Builds InputErrors that name the file and the entry."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: str, message: str) -> InputError:
        return InputError(self.source, f"{where}: {message}" if where else message)


def _check_keys(
    p: _Problems, where: str, entry: Mapping[str, Any], allowed: frozenset[str]
) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise p.error(where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _string(
    p: _Problems, where: str, entry: Mapping[str, Any], key: str, default: str | None
) -> str:
    value = entry.get(key, default)
    if value is None:
        raise p.error(where, f"missing {key}")
    if not isinstance(value, str) or not value.strip():
        raise p.error(where, f"{key} must be a non-empty string, not {value!r}")
    return value.strip()


def _bool(p: _Problems, where: str, entry: Mapping[str, Any], key: str, default: bool) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise p.error(where, f"{key} must be true or false, not {value!r}")
    return value


def _quota(p: _Problems, where: str, value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise p.error(where, f"{key} must be a whole number >= 0, not {value!r}")
    return value


def _lock_reasons(p: _Problems, where: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
    """``LockReasons`` (a list of known reasons), reconciled with the older ``Locked``."""
    reasons = entry.get("LockReasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise p.error(where, f"LockReasons must be a list of strings, not {reasons!r}")
    for reason in reasons:
        if reason not in LOCK_REASONS:
            raise p.error(where, f"LockReason {reason!r} is not one of {list(LOCK_REASONS)}")
    if len(set(reasons)) != len(reasons):
        raise p.error(where, f"LockReasons {reasons!r} lists a reason twice")
    if reasons and entry.get("Locked") is False:
        raise p.error(where, "Locked is false but LockReasons are given")
    return tuple(reasons)


def _region(p: _Problems, where: str, value: str) -> str:
    if not is_region_id(value):  # what a run accepts as a region, no more, no less
        raise p.error(where, f"RegionId {value!r} does not look like a region (cn-hangzhou)")
    return value


def _entries(
    p: _Problems, data: Mapping[str, Any], key: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise p.error(key, "must be a list")
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise p.error(where, "must be an object")
        yield where, item


def _with_id(where: str, entry: Mapping[str, Any], key: str) -> str:
    value = entry.get(key)
    return f"{where} ({value})" if isinstance(value, str) else where


def _read_instance(p: _Problems, where: str, entry: Mapping[str, Any]) -> Instance:
    where = _with_id(where, entry, "InstanceId")
    _check_keys(p, where, entry, _INSTANCE_KEYS)
    instance_id = _string(p, where, entry, "InstanceId", None)
    if not instance_id.startswith("i-"):
        raise p.error(where, f"InstanceId {instance_id!r} must start with 'i-'")
    status = _string(p, where, entry, "Status", "Running")
    if status not in INSTANCE_STATUSES:
        raise p.error(where, f"Status {status!r} is not one of {list(INSTANCE_STATUSES)}")
    network = _string(p, where, entry, "InstanceNetworkType", "classic")
    if network not in NETWORK_TYPES:
        raise p.error(where, f"InstanceNetworkType {network!r} is not one of {list(NETWORK_TYPES)}")
    own_vpc = ""
    if "VpcId" in entry:
        own_vpc = _string(p, where, entry, "VpcId", None)
        if network != "vpc" or not own_vpc.startswith("vpc-"):
            raise p.error(where, "VpcId is for a VPC-type instance and must start with 'vpc-'")
    region = _region(p, where, _string(p, where, entry, "RegionId", None))
    return Instance(
        instance_id=instance_id,
        region_id=region,
        status=status,
        network_type=network,
        owner=_string(p, where, entry, "Owner", DEFAULT_ACCOUNT),
        locked=_bool(p, where, entry, "Locked", False),
        lock_reasons=_lock_reasons(p, where, entry),
        zone_id=_string(p, where, entry, "ZoneId", f"{region}-a"),
        vpc_id=own_vpc,
    )


def _read_vpc(p: _Problems, where: str, entry: Mapping[str, Any]) -> Vpc:
    where = _with_id(where, entry, "VpcId")
    _check_keys(p, where, entry, _VPC_KEYS)
    vpc_id = _string(p, where, entry, "VpcId", None)
    if not vpc_id.startswith("vpc-"):
        raise p.error(where, f"VpcId {vpc_id!r} must start with 'vpc-'")
    status = _string(p, where, entry, "Status", "Available")
    if status not in VPC_STATUSES:
        raise p.error(where, f"Status {status!r} is not one of {list(VPC_STATUSES)}")
    return Vpc(
        vpc_id=vpc_id,
        region_id=_region(p, where, _string(p, where, entry, "RegionId", None)),
        owner=_string(p, where, entry, "Owner", DEFAULT_ACCOUNT),
        classic_link_enabled=_bool(p, where, entry, "ClassicLinkEnabled", True),
        quota=_quota(p, where, entry.get("Quota"), "Quota"),
        status=status,
        cidr_block=_string(p, where, entry, "CidrBlock", DEFAULT_CIDR_BLOCK),
    )


def _read_link(p: _Problems, where: str, entry: Mapping[str, Any], model: EcsModel) -> None:
    where = _with_id(where, entry, "InstanceId")
    _check_keys(p, where, entry, _LINK_KEYS)
    instance_id = _string(p, where, entry, "InstanceId", None)
    vpc_id = _string(p, where, entry, "VpcId", None)
    instance = model.instances.get(instance_id)
    vpc = model.vpcs.get(vpc_id)
    if instance is None:
        raise p.error(where, f"InstanceId {instance_id!r} is not in 'instances'")
    if vpc is None:
        raise p.error(where, f"VpcId {vpc_id!r} is not in 'vpcs'")
    linked = model.links.get(instance_id)
    if linked is not None:
        raise p.error(where, f"{instance_id} is already linked to {linked}")
    if instance.network_type != "classic":
        raise p.error(where, f"{instance_id} is not a classic instance and cannot be linked")
    if instance.region_id != vpc.region_id:
        raise p.error(
            where, f"{instance_id} ({instance.region_id}) and {vpc_id} ({vpc.region_id}) differ"
        )
    if instance.owner != vpc.owner:
        raise p.error(where, f"{instance_id} and {vpc_id} belong to different accounts")
    model.link(instance_id, vpc_id)


def world_from_dict(
    data: Any,
    *,
    source: str = "<world>",
    variant: str = "2018",
    default_quota: int | None = None,
) -> EcsModel:
    """A model from parsed world JSON. ``default_quota`` (if given) overrides ``"quota"``."""
    p = _Problems(source)
    if not isinstance(data, dict):
        raise p.error("", "a world must be a JSON object")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise p.error("", f"unknown top-level key(s) {unknown}; allowed: {sorted(_TOP_KEYS)}")
    _flow_control(p, data.get("flow_control"))
    file_quota = _quota(p, "quota", data.get("quota"), "quota")
    quota = default_quota if default_quota is not None else file_quota
    model = EcsModel(variant=variant, default_quota=DEFAULT_QUOTA if quota is None else quota)

    regions = data.get("regions", [])
    if not isinstance(regions, list):
        raise p.error("regions", "must be a list")
    for index, region in enumerate(regions):
        if not isinstance(region, str):
            raise p.error(f"regions[{index}]", f"must be a string, not {region!r}")
        model.add_region(_region(p, f"regions[{index}]", region))

    for where, entry in _entries(p, data, "instances"):
        instance = _read_instance(p, where, entry)
        if instance.instance_id in model.instances:
            raise p.error(_with_id(where, entry, "InstanceId"), "duplicate InstanceId")
        model.add_instance(instance)
    for where, entry in _entries(p, data, "vpcs"):
        vpc = _read_vpc(p, where, entry)
        if vpc.vpc_id in model.vpcs:
            raise p.error(_with_id(where, entry, "VpcId"), "duplicate VpcId")
        model.add_vpc(vpc)
    for where, entry in _entries(p, data, "links"):
        _read_link(p, where, entry, model)
    return model


def _flow_control(p: _Problems, value: Any) -> dict[str, Any]:
    """The world's ``flow_control`` object, checked as the control endpoint checks it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise p.error("flow_control", "must be an object")
    _check_keys(p, "flow_control", value, _FLOW_KEYS)
    try:
        FaultSettings().updated(value)
    except ValueError as error:
        raise p.error("flow_control", str(error)) from None
    return dict(value)


def flow_control_of(path: str | Path) -> dict[str, Any]:
    """The flow-control settings a world file asks for (``{}`` when none)."""
    data = _read_json(path)
    if not isinstance(data, dict):
        return {}
    return _flow_control(_Problems(str(path)), data.get("flow_control"))


def _read_json(path: str | Path) -> Any:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(source, f"cannot read world file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(source, f"not UTF-8 text: {exc.reason}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source, f"not valid JSON: {exc.msg}", exc.lineno, exc.colno) from exc


def load_world(
    path: str | Path, *, variant: str = "2018", default_quota: int | None = None
) -> EcsModel:
    """A model from a world JSON file; InputError (naming the file) for any problem."""
    data = _read_json(path)
    return world_from_dict(data, source=str(path), variant=variant, default_quota=default_quota)


def world_from_pairs(
    csv_path: str | Path,
    model: EcsModel | None = None,
    *,
    default_region: str | None = None,
    owner: str = DEFAULT_ACCOUNT,
    variant: str = "2018",
    default_quota: int = DEFAULT_QUOTA,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> EcsModel:
    """Fill ``model`` (or a new one) so that every pair a run of the CSV sends can be attached.

    The CSV is read as ``bulk-attach run`` reads it (``read_pairs``): a file it refuses raises
    the same ``InputError``, and the rows it rejects (malformed, conflicting) add nothing.
    Missing instances are created classic and Running; missing VPCs with ClassicLink enabled;
    both in the row's region (``default_region`` when the CSV has no region column or cell).
    Existing entries are left as they are. ``variant`` and ``default_quota`` apply only to a
    new model.
    """
    rows = read_pairs(csv_path, default_region, encoding=encoding, delimiter=delimiter)
    if model is None:
        model = EcsModel(variant=variant, default_quota=default_quota)
    for row in rows:
        if not isinstance(row, Row):
            continue  # rejected: a run sends nothing for it
        if row.instance_id not in model.instances:
            model.add_instance(Instance(row.instance_id, region_id=row.region_id, owner=owner))
        if row.vpc_id not in model.vpcs:
            model.add_vpc(Vpc(row.vpc_id, region_id=row.region_id, owner=owner))
        model.add_region(row.region_id)
    return model


@dataclass(frozen=True, slots=True)
class WorldSpec:
    """Where a world comes from: a world JSON file, a pairs CSV, both, or neither (empty).

    With both, the file comes first and the CSV fills its gaps.
    """

    world: Path | None = None
    pairs: Path | None = None
    default_region: str | None = None  # for CSV rows without a region
    variant: str = "2018"
    quota: int | None = None  # links per VPC; None: the file's "quota", else DEFAULT_QUOTA
    encoding: str | None = None  # how the CSV is read (as the run reads it)
    delimiter: str | None = None
    # A state file: once it exists, the world it holds replaces ``world`` (the world as the
    # last run left it); the CSV still fills its gaps. Saved by whoever runs the emulator.
    state: Path | None = None

    @property
    def resumes_state(self) -> bool:
        return self.state is not None and self.state.exists()


def build_world(spec: WorldSpec) -> EcsModel:
    """The model ``spec`` describes; ``InputError`` (naming the file) for a bad file."""
    model: EcsModel | None = None
    base = spec.state if spec.resumes_state else spec.world
    if base is not None:
        model = load_world(base, variant=spec.variant, default_quota=spec.quota)
    quota = DEFAULT_QUOTA if spec.quota is None else spec.quota
    if spec.pairs is not None:
        model = world_from_pairs(
            spec.pairs,
            model,
            default_region=spec.default_region,
            variant=spec.variant,
            default_quota=quota,
            encoding=spec.encoding,
            delimiter=spec.delimiter,
        )
    if model is None:
        model = EcsModel(variant=spec.variant, default_quota=quota)
    return model


def _dump_instance(inst: Instance) -> dict[str, Any]:
    entry: dict[str, Any] = {"InstanceId": inst.instance_id, "RegionId": inst.region_id}
    if inst.status != "Running":
        entry["Status"] = inst.status
    if inst.network_type != "classic":
        entry["InstanceNetworkType"] = inst.network_type
    if inst.owner != DEFAULT_ACCOUNT:
        entry["Owner"] = inst.owner
    if inst.lock_reasons:
        entry["LockReasons"] = list(inst.lock_reasons)
    if inst.zone_id != f"{inst.region_id}-a":
        entry["ZoneId"] = inst.zone_id
    if inst.vpc_id:
        entry["VpcId"] = inst.vpc_id
    return entry


def _dump_vpc(vpc: Vpc) -> dict[str, Any]:
    entry: dict[str, Any] = {"VpcId": vpc.vpc_id, "RegionId": vpc.region_id}
    if vpc.owner != DEFAULT_ACCOUNT:
        entry["Owner"] = vpc.owner
    if not vpc.classic_link_enabled:
        entry["ClassicLinkEnabled"] = False
    if vpc.quota is not None:
        entry["Quota"] = vpc.quota
    if vpc.status != "Available":
        entry["Status"] = vpc.status
    if vpc.cidr_block != DEFAULT_CIDR_BLOCK:
        entry["CidrBlock"] = vpc.cidr_block
    return entry


def dump_world(model: EcsModel) -> dict[str, Any]:
    """The model's world in the JSON format above (defaults omitted, entries sorted)."""
    return {
        "quota": model.default_quota,
        "regions": sorted(model.regions),
        "instances": [
            _dump_instance(inst)
            for inst in sorted(model.instances.values(), key=lambda i: i.instance_id)
        ],
        "vpcs": [_dump_vpc(vpc) for vpc in sorted(model.vpcs.values(), key=lambda v: v.vpc_id)],
        "links": [{"InstanceId": i, "VpcId": v} for i, v in sorted(model.links.items())],
    }


def save_state(model: EcsModel, path: str | Path) -> None:
    """Save the world for the next run, atomically: a run stopped mid-write (or two saving
    at once) leaves the old state or the new one whole, never half of either."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save_world(model, temporary)
        with temporary.open("rb") as file:
            os.fsync(file.fileno())
        os.replace(temporary, target)  # OSError: the caller says so; the old state stays
    finally:
        temporary.unlink(missing_ok=True)


def save_world(model: EcsModel, path: str | Path) -> None:
    """Write ``dump_world(model)`` as JSON, one entry per line so diffs stay readable."""
    world = dump_world(model)
    lines = ["{"]
    lines.append(f'  "quota": {json.dumps(world["quota"])},')
    lines.append(f'  "regions": {json.dumps(world["regions"])},')
    for key in ("instances", "vpcs", "links"):
        entries = [f"    {json.dumps(e)}" for e in world[key]]
        body = ",\n".join(entries)
        end = "" if key == "links" else ","
        lines.append(f'  "{key}": [\n{body}\n  ]{end}' if entries else f'  "{key}": []{end}')
    lines.append("}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
