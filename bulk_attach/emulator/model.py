"""The emulated cloud's state and rules: regions, instances, VPCs and ClassicLinks.

Moto style: plain Python state plus verbs that raise :class:`ModelError` with a service code.
No HTTP, no asyncio, no clock: the HTTP layer (``emulator/http.py``) parses requests, picks the
HTTP status for a code from ``core/catalog.py`` and the model's ``variant``, and serialises.

Variants
    ``"2018"`` follows the contract page (``AttachClassicLinkVpc.md``); ``"current"`` follows the
    2024-12 doc. The model only chooses *codes*; statuses come from the catalog
    (``CodeInfo.status`` for 2018, ``CodeInfo.current_status`` for current).

AttachClassicLinkVpc checks, in this order (the first failing check answers):

    #   condition                                  2018 code / current code
    1   RegionId not a known region                InvalidRegionId.Malformed / .NotFound
    2   VpcId does not start with ``vpc-``         InvalidVpcId.Malformed (both)
    3   VPC unknown, or of another account         InvalidVpcId.Malformed (both)
    4   instance unknown                           InvalidInstanceId.NotFound (both)
    5   instance of another account                InvalidInstanceId.NotBelong (both)
    6   network type is not ``classic``            InvalidInstanceId.MalFormed (both)
    7   request, instance, VPC regions differ      InvalidRegionId.Malformed /
                                                   InvalidInstanceId.LimitedRegion
    8   instance locked (another task running)     InvalidStatus.InstanceLocked (both)
    9   status neither Running nor Stopped         InvalidStatus.InstanceStatus (both)
    10  VPC has ClassicLink disabled               OperationDenied (both)
    11  instance linked to *another* VPC           Abs.InvalidInstanceId.MalFormed /
                                                   OperationDenied
    12  instance linked to *this* VPC              success, no change (see below)
    13  VPC already holds ``quota`` links          QuotaExceeded (both)

Assumptions (nothing documents these; the README repeats them):

* Attaching an instance already linked to the same VPC **succeeds idempotently**: no state
  change, no quota used, and ``repeat_attaches[instance_id]`` counts it, so tests can prove that
  a client never re-sent an attach that had already been committed.
* A VPC of another account is indistinguishable from an unknown VPC (``InvalidVpcId.Malformed``),
  so its existence does not leak; an instance of another account answers ``NotBelong`` as the
  contract page documents.
* IDs are unique across regions and looked up globally; any disagreement between the request's
  RegionId, the instance's region and the VPC's region is check 7.
* The quota counts every link in the VPC, whoever owns the instance; seeded links may exceed it.
* DetachClassicLinkVpc runs checks 1-5 and 7-9 above, then answers ``OperationDenied`` if the
  instance is not linked to that VPC (it does not succeed silently).
* Describe verbs check the region (check 1) and silently leave out resources the caller does not
  own, as the real DescribeInstances / DescribeClassicLinkInstances do; ``describe_vpc`` answers
  ``InvalidVpcId.NotFound`` for a VPC that is unknown, foreign or in another region.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from bulk_attach.core.catalog import lookup

__all__ = [
    "ATTACHABLE_STATUSES",
    "DEFAULT_ACCOUNT",
    "DEFAULT_QUOTA",
    "INSTANCE_STATUSES",
    "NETWORK_TYPES",
    "VARIANTS",
    "EcsModel",
    "Instance",
    "ModelError",
    "Vpc",
]

VARIANTS: Final = ("2018", "current")
DEFAULT_QUOTA: Final = 1000
DEFAULT_ACCOUNT: Final = "default"
# ECS instance states (DescribeInstances ``Status``); only two allow a ClassicLink change.
INSTANCE_STATUSES: Final = ("Pending", "Running", "Starting", "Stopping", "Stopped")
ATTACHABLE_STATUSES: Final = frozenset({"Running", "Stopped"})
NETWORK_TYPES: Final = ("classic", "vpc")

LINKED_ELSEWHERE_MESSAGE: Final = "The specified instance has already been linked to another VPC."
NOT_LINKED_MESSAGE: Final = "The specified instance is not linked to the specified VPC."


class ModelError(Exception):
    """A rule refused the call. ``code`` is the service's error code; ``message`` its text."""

    def __init__(self, code: str, message: str | None = None) -> None:
        if message is None:
            info = lookup(code)
            message = info.message if info is not None else code
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(slots=True)
class Instance:
    instance_id: str
    region_id: str
    status: str = "Running"
    network_type: str = "classic"
    owner: str = DEFAULT_ACCOUNT
    locked: bool = False


@dataclass(slots=True)
class Vpc:
    vpc_id: str
    region_id: str
    owner: str = DEFAULT_ACCOUNT
    classic_link_enabled: bool = True
    quota: int | None = None  # None: the model's default_quota


class EcsModel:
    """The whole emulated cloud. Seeding verbs trust their caller; API verbs enforce the rules."""

    __slots__ = (
        "_instances",
        "_links",
        "_members",
        "_regions",
        "_vpcs",
        "attach_attempts",
        "default_quota",
        "detach_attempts",
        "repeat_attaches",
        "variant",
    )

    def __init__(
        self,
        *,
        regions: Iterable[str] = (),
        default_quota: int = DEFAULT_QUOTA,
        variant: str = "2018",
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        if default_quota < 0:
            raise ValueError(f"default_quota must be >= 0, not {default_quota}")
        self.variant = variant
        self.default_quota = default_quota
        self._regions: set[str] = set(regions)
        self._instances: dict[str, Instance] = {}
        self._vpcs: dict[str, Vpc] = {}
        self._links: dict[str, str] = {}  # instance_id -> vpc_id
        self._members: dict[str, set[str]] = {}  # vpc_id -> instance_ids (mirror of _links)
        # Every AttachClassicLinkVpc call per InstanceId, whatever its outcome.
        self.attach_attempts: Counter[str] = Counter()
        self.detach_attempts: Counter[str] = Counter()
        # Attach calls that found the instance already linked to the same VPC.
        self.repeat_attaches: Counter[str] = Counter()

    def __repr__(self) -> str:
        return (
            f"<EcsModel variant={self.variant} regions={len(self._regions)} "
            f"instances={len(self._instances)} vpcs={len(self._vpcs)} links={len(self._links)}>"
        )

    # ------------------------------------------------------------------ read-only views
    @property
    def regions(self) -> frozenset[str]:
        return frozenset(self._regions)

    @property
    def instances(self) -> Mapping[str, Instance]:
        return MappingProxyType(self._instances)

    @property
    def vpcs(self) -> Mapping[str, Vpc]:
        return MappingProxyType(self._vpcs)

    @property
    def links(self) -> Mapping[str, str]:
        """instance_id -> vpc_id for every link (read-only)."""
        return MappingProxyType(self._links)

    def link_count(self, vpc_id: str) -> int:
        return len(self._members.get(vpc_id, ()))

    def quota_of(self, vpc_id: str) -> int:
        """The VPC's link quota: its own override, else the model's default."""
        vpc = self._vpcs.get(vpc_id)
        if vpc is None or vpc.quota is None:
            return self.default_quota
        return vpc.quota

    # ------------------------------------------------------------------ seeding (no rules)
    def add_region(self, region_id: str) -> None:
        self._regions.add(region_id)

    def add_instance(self, instance: Instance) -> None:
        """Add or replace an instance; its region is added too."""
        self._regions.add(instance.region_id)
        self._instances[instance.instance_id] = instance

    def add_vpc(self, vpc: Vpc) -> None:
        """Add or replace a VPC; its region is added too."""
        self._regions.add(vpc.region_id)
        self._vpcs[vpc.vpc_id] = vpc
        self._members.setdefault(vpc.vpc_id, set())

    def link(self, instance_id: str, vpc_id: str) -> None:
        """Seed a link, bypassing the rules (quota included). Both sides must exist.

        Raises ValueError for an unknown instance or VPC, or an instance already linked to
        another VPC: the one invariant seeding may not break.
        """
        if instance_id not in self._instances:
            raise ValueError(f"unknown instance {instance_id!r}")
        if vpc_id not in self._vpcs:
            raise ValueError(f"unknown VPC {vpc_id!r}")
        current = self._links.get(instance_id)
        if current is not None and current != vpc_id:
            raise ValueError(f"instance {instance_id!r} is already linked to {current!r}")
        self._put_link(instance_id, vpc_id)

    def reset_counters(self) -> None:
        self.attach_attempts.clear()
        self.detach_attempts.clear()
        self.repeat_attaches.clear()

    # ------------------------------------------------------------------ API verbs
    def attach(self, account: str, region: str, instance_id: str, vpc_id: str) -> None:
        """AttachClassicLinkVpc: link the instance or raise ModelError (order: module doc)."""
        self.attach_attempts[instance_id] += 1
        instance, vpc = self._check_pair(account, region, instance_id, vpc_id)
        if instance.network_type != "classic":
            raise ModelError("InvalidInstanceId.MalFormed")
        self._check_regions(region, instance, vpc)
        self._check_status(instance)
        if not vpc.classic_link_enabled:
            raise ModelError("OperationDenied")
        current = self._links.get(instance_id)
        if current == vpc_id:
            self.repeat_attaches[instance_id] += 1
            return
        if current is not None:
            if self.variant == "current":
                raise ModelError("OperationDenied", LINKED_ELSEWHERE_MESSAGE)
            raise ModelError("Abs.InvalidInstanceId.MalFormed")
        if self.link_count(vpc_id) >= self.quota_of(vpc_id):
            raise ModelError("QuotaExceeded")
        self._put_link(instance_id, vpc_id)

    def detach(self, account: str, region: str, instance_id: str, vpc_id: str) -> None:
        """DetachClassicLinkVpc: remove the link or raise ModelError."""
        self.detach_attempts[instance_id] += 1
        instance, vpc = self._check_pair(account, region, instance_id, vpc_id)
        self._check_regions(region, instance, vpc)
        self._check_status(instance)
        if self._links.get(instance_id) != vpc_id:
            raise ModelError("OperationDenied", NOT_LINKED_MESSAGE)
        del self._links[instance_id]
        self._members[vpc_id].discard(instance_id)

    def describe_links(
        self,
        account: str,
        region: str,
        *,
        vpc_id: str | None = None,
        instance_ids: Iterable[str] | None = None,
    ) -> list[tuple[str, str]]:
        """DescribeClassicLinkInstances: (instance_id, vpc_id) sorted by instance id.

        Filters combine with AND; without filters every link of the caller in the region.
        Unknown IDs and other accounts' instances are left out.
        """
        self._check_region(region)
        if instance_ids is not None:
            wanted = set(instance_ids)
            candidates: Iterable[str] = (i for i in wanted if i in self._links)
        elif vpc_id is not None:
            candidates = self._members.get(vpc_id, ())
        else:
            candidates = self._links
        found: list[tuple[str, str]] = []
        for iid in candidates:
            linked_vpc = self._links[iid]
            if vpc_id is not None and linked_vpc != vpc_id:
                continue
            inst = self._instances[iid]
            if inst.region_id != region or inst.owner != account:
                continue
            found.append((iid, linked_vpc))
        found.sort()
        return found

    def describe_instances(
        self, account: str, region: str, instance_ids: Iterable[str]
    ) -> list[Instance]:
        """DescribeInstances: the caller's instances in the region, sorted by id."""
        self._check_region(region)
        found = []
        for iid in sorted(set(instance_ids)):
            inst = self._instances.get(iid)
            if inst is not None and inst.region_id == region and inst.owner == account:
                found.append(inst)
        return found

    def describe_vpc(self, account: str, region: str, vpc_id: str) -> Vpc:
        """DescribeVpcAttribute (VPC API)."""
        self._check_region(region)
        vpc = self._vpcs.get(vpc_id)
        if vpc is None or vpc.owner != account or vpc.region_id != region:
            raise ModelError("InvalidVpcId.NotFound")
        return vpc

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state for the control endpoint and tests."""
        return {
            "variant": self.variant,
            "default_quota": self.default_quota,
            "links": [{"InstanceId": i, "VpcId": v} for i, v in sorted(self._links.items())],
            "link_counts": {v: len(m) for v, m in sorted(self._members.items())},
            "attach_attempts": dict(sorted(self.attach_attempts.items())),
            "detach_attempts": dict(sorted(self.detach_attempts.items())),
            "repeat_attaches": dict(sorted(self.repeat_attaches.items())),
            "total_attach_attempts": sum(self.attach_attempts.values()),
            "total_repeat_attaches": sum(self.repeat_attaches.values()),
        }

    # ------------------------------------------------------------------ rules
    def _put_link(self, instance_id: str, vpc_id: str) -> None:
        self._links[instance_id] = vpc_id
        self._members.setdefault(vpc_id, set()).add(instance_id)

    def _check_region(self, region: str) -> None:
        if region not in self._regions:
            if self.variant == "current":
                raise ModelError("InvalidRegionId.NotFound")
            raise ModelError("InvalidRegionId.Malformed")

    def _check_pair(
        self, account: str, region: str, instance_id: str, vpc_id: str
    ) -> tuple[Instance, Vpc]:
        """Checks 1-5: region, VPC id and existence, instance existence and owner."""
        self._check_region(region)
        if not vpc_id.startswith("vpc-"):
            raise ModelError("InvalidVpcId.Malformed")
        vpc = self._vpcs.get(vpc_id)
        if vpc is None or vpc.owner != account:
            raise ModelError("InvalidVpcId.Malformed")
        instance = self._instances.get(instance_id)
        if instance is None:
            raise ModelError("InvalidInstanceId.NotFound")
        if instance.owner != account:
            raise ModelError("InvalidInstanceId.NotBelong")
        return instance, vpc

    def _check_regions(self, region: str, instance: Instance, vpc: Vpc) -> None:
        if instance.region_id == region == vpc.region_id:
            return
        if self.variant == "current":
            raise ModelError("InvalidInstanceId.LimitedRegion")
        raise ModelError("InvalidRegionId.Malformed")

    @staticmethod
    def _check_status(instance: Instance) -> None:
        if instance.locked:
            raise ModelError("InvalidStatus.InstanceLocked")
        if instance.status not in ATTACHABLE_STATUSES:
            raise ModelError("InvalidStatus.InstanceStatus")
