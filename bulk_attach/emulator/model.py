"""The emulated cloud's state and rules: regions, instances, VPCs and ClassicLinks.

Moto style: plain Python state plus verbs that raise :class:`ModelError` with a service code.
No HTTP, no asyncio, no clock: the HTTP layer (``emulator/http.py``) parses requests, picks the
HTTP status for a code from ``core/catalog.py`` and the model's ``variant``, and serialises.

Variants
    ``"2018"`` follows the contract page (``AttachClassicLinkVpc.md``); ``"current"`` follows the
    2024-12 doc. For detach, "2018" means the older detach page. The model only chooses
    *codes*; statuses come from the catalog (``CodeInfo.status`` for 2018,
    ``CodeInfo.current_status`` for current; an action's own table, ``DETACH_CODES``, first).

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
* Describe verbs check the region (check 1) and silently leave out resources the caller does not
  own, as the real DescribeInstances / DescribeClassicLinkInstances do; ``describe_vpc`` answers
  ``VPC_NOT_FOUND`` (``InvalidVpcID.NotFound``, unconfirmed) for a VPC that is unknown, foreign
  or in another region.
* An instance locked without a stated reason is locked for ``"security"``
  (``DEFAULT_LOCK_REASON``); any lock reason blocks attach and detach alike.
* ``OwnerId`` (DescribeVpcAttribute) is a number: an account named by digits is that number,
  any other account name maps to a stable 16-digit number (``owner_id``).

DetachClassicLinkVpc checks, in this order (codes and statuses: ``catalog.DETACH_CODES``)::

    #   condition                                  2018 code / current code
    1   RegionId not a known region                InvalidRegionId.Malformed (both)
    2   VpcId does not start with ``vpc-``         InvalidVpcId.Malformed (both)
    3   VPC unknown, or of another account         InvalidVpcId.Malformed (both)
    4   instance unknown                           InvalidInstanceId.NotFound (both)
    5   instance of another account                InvalidInstanceId.NotBelong /
                                                   InvalidInstanceId.NotFound
    6   network type is not ``classic``            InvalidInstanceId.MalFormed (both)
    7   request, instance, VPC regions differ      InvalidRegionId.Malformed (both)
    8   instance locked                            InvalidStatus.InstanceLocked (both)
    9   status neither Running nor Stopped         InvalidStatus.InstanceStatus (both)
    10  not linked, or linked to another VPC       ``DETACH_WHEN_NOT_LINKED`` (UNCONFIRMED)

The current detach page lists neither ``NotBelong`` nor ``LimitedRegion`` nor
``InvalidRegionId.NotFound``: there, another account's instance is simply not found (5), and
every region problem is ``InvalidRegionId.Malformed`` (1, 7). Its page does not list the lock
and status codes either; the emulator keeps those rules (8, 9) in both variants.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from bulk_attach.core.catalog import DETACH_CODES, lookup

__all__ = [
    "ATTACHABLE_STATUSES",
    "DEFAULT_ACCOUNT",
    "DEFAULT_CIDR_BLOCK",
    "DEFAULT_LOCK_REASON",
    "DEFAULT_QUOTA",
    "DETACH_WHEN_NOT_LINKED",
    "INSTANCE_STATUSES",
    "LOCK_REASONS",
    "NETWORK_TYPES",
    "VARIANTS",
    "VPC_NOT_FOUND",
    "VPC_STATUSES",
    "EcsModel",
    "Instance",
    "ModelError",
    "Vpc",
    "owner_id",
]

VARIANTS: Final = ("2018", "current")
DEFAULT_QUOTA: Final = 1000
DEFAULT_ACCOUNT: Final = "default"
# ECS instance states (DescribeInstances ``Status``); only two allow a ClassicLink change.
INSTANCE_STATUSES: Final = ("Pending", "Running", "Starting", "Stopping", "Stopped")
ATTACHABLE_STATUSES: Final = frozenset({"Running", "Stopped"})
NETWORK_TYPES: Final = ("classic", "vpc")
# DescribeInstances ``OperationLocks.LockReason[].LockReason`` values.
LOCK_REASONS: Final = ("financial", "security", "Recycling", "dedicatedhostfinancial", "refunded")
DEFAULT_LOCK_REASON: Final = "security"
VPC_STATUSES: Final = ("Available", "Pending")
DEFAULT_CIDR_BLOCK: Final = "172.16.0.0/12"

LINKED_ELSEWHERE_MESSAGE: Final = "The specified instance has already been linked to another VPC."
NOT_LINKED_MESSAGE: Final = "The specified instance is not linked to the specified VPC."
DETACH_ELSEWHERE_MESSAGE: Final = "The specified instance is linked to another VPC."

# UNCONFIRMED (lifecycle-facts.md): no source says what DetachClassicLinkVpc answers when the
# instance is not linked at all, or is linked to another VPC. ASSUMED: ``OperationDenied``
# (403, permanent) in both variants, with a message that tells the two cases apart. This table
# is the one place to change it: an entry of None makes that case succeed without a change
# (counted in ``EcsModel.noop_detaches``). A model can also be given its own table.
DETACH_WHEN_NOT_LINKED: Final[Mapping[str, tuple[str, str] | None]] = MappingProxyType(
    {
        "not_linked": ("OperationDenied", NOT_LINKED_MESSAGE),
        "linked_elsewhere": ("OperationDenied", DETACH_ELSEWHERE_MESSAGE),
    }
)

# UNCONFIRMED: DescribeVpcAttribute's code for an unknown VPC. Public tooling treats this one
# (and ``Forbidden.VpcNotFound``) as "not found"; its status comes from the catalog (404).
VPC_NOT_FOUND: Final = "InvalidVpcID.NotFound"


def owner_id(account: str) -> int:
    """The numeric ``OwnerId`` of an account: its name if that is a number, else a stable hash."""
    if account.isdigit():
        return int(account)
    digest = hashlib.sha256(account.encode("utf-8")).digest()
    return 1_000_000_000_000_000 + int.from_bytes(digest[:8], "big") % 9_000_000_000_000_000


class ModelError(Exception):
    """A rule refused the call. ``code`` is the service's error code; ``message`` its text."""

    def __init__(self, code: str, message: str | None = None) -> None:
        if message is None:
            info = lookup(code)
            message = info.message if info is not None else code
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(slots=True, init=False)
class Instance:
    """An ECS instance. ``locked`` is a view of ``lock_reasons`` (locked: at least one).

    ``Instance(iid, region, locked=True)`` is locked for ``DEFAULT_LOCK_REASON``; setting
    ``locked`` keeps the reasons it has, or sets or clears that default one.
    """

    instance_id: str
    region_id: str
    status: str
    network_type: str
    owner: str
    lock_reasons: tuple[str, ...]
    zone_id: str
    # VpcAttributes.VpcId: the VPC a VPC-type instance lives in ("" for classic). Not a link.
    vpc_id: str

    def __init__(
        self,
        instance_id: str,
        region_id: str,
        status: str = "Running",
        network_type: str = "classic",
        *,
        owner: str = DEFAULT_ACCOUNT,
        locked: bool = False,
        lock_reasons: Iterable[str] = (),
        zone_id: str | None = None,
        vpc_id: str = "",
    ) -> None:
        self.instance_id = instance_id
        self.region_id = region_id
        self.status = status
        self.network_type = network_type
        self.owner = owner
        self.lock_reasons = tuple(lock_reasons)
        self.zone_id = zone_id or f"{region_id}-a"
        self.vpc_id = vpc_id
        if locked:
            self.locked = True

    @property
    def locked(self) -> bool:
        return bool(self.lock_reasons)

    @locked.setter
    def locked(self, value: bool) -> None:
        if not value:
            self.lock_reasons = ()
        elif not self.lock_reasons:
            self.lock_reasons = (DEFAULT_LOCK_REASON,)


@dataclass(slots=True)
class Vpc:
    vpc_id: str
    region_id: str
    owner: str = DEFAULT_ACCOUNT
    classic_link_enabled: bool = True
    quota: int | None = None  # None: the model's default_quota
    status: str = "Available"  # Available or Pending (DescribeVpcAttribute only)
    cidr_block: str = DEFAULT_CIDR_BLOCK


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
        "detach_when_not_linked",
        "noop_detaches",
        "repeat_attaches",
        "variant",
    )

    def __init__(
        self,
        *,
        regions: Iterable[str] = (),
        default_quota: int = DEFAULT_QUOTA,
        variant: str = "2018",
        detach_when_not_linked: Mapping[str, tuple[str, str] | None] = DETACH_WHEN_NOT_LINKED,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        if default_quota < 0:
            raise ValueError(f"default_quota must be >= 0, not {default_quota}")
        if set(detach_when_not_linked) != set(DETACH_WHEN_NOT_LINKED):
            raise ValueError(f"detach_when_not_linked needs exactly {set(DETACH_WHEN_NOT_LINKED)}")
        self.variant = variant
        self.default_quota = default_quota
        self.detach_when_not_linked = MappingProxyType(dict(detach_when_not_linked))
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
        # Detach calls that succeeded without a link to remove (only if the table says so).
        self.noop_detaches: Counter[str] = Counter()

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
        self.noop_detaches.clear()

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
        """DetachClassicLinkVpc: remove the link or raise ModelError (order: module doc)."""
        self.detach_attempts[instance_id] += 1
        if region not in self._regions:
            raise _detach_error("InvalidRegionId.Malformed")
        vpc = self._find_vpc(account, vpc_id)
        instance = self._instances.get(instance_id)
        if instance is None:
            raise _detach_error("InvalidInstanceId.NotFound")
        if instance.owner != account:
            if self.variant == "current":
                raise _detach_error("InvalidInstanceId.NotFound")
            raise _detach_error("InvalidInstanceId.NotBelong")
        if instance.network_type != "classic":
            raise _detach_error("InvalidInstanceId.MalFormed")
        if not instance.region_id == region == vpc.region_id:
            raise _detach_error("InvalidRegionId.Malformed")
        self._check_status(instance)
        current = self._links.get(instance_id)
        if current != vpc_id:
            case = "not_linked" if current is None else "linked_elsewhere"
            answer = self.detach_when_not_linked[case]
            if answer is not None:
                raise ModelError(*answer)
            self.noop_detaches[instance_id] += 1
            return
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
        self, account: str, region: str, instance_ids: Iterable[str] | None = None
    ) -> list[Instance]:
        """DescribeInstances: the caller's instances in the region, sorted by id.

        ``instance_ids`` None: every one of them; an empty filter matches nothing.
        """
        self._check_region(region)
        wanted = self._instances.keys() if instance_ids is None else set(instance_ids)
        found = []
        for iid in sorted(wanted):
            inst = self._instances.get(iid)
            if inst is not None and inst.region_id == region and inst.owner == account:
                found.append(inst)
        return found

    def describe_vpc(self, account: str, region: str, vpc_id: str) -> Vpc:
        """DescribeVpcAttribute (VPC API)."""
        self._check_region(region)
        vpc = self._vpcs.get(vpc_id)
        if vpc is None or vpc.owner != account or vpc.region_id != region:
            raise ModelError(VPC_NOT_FOUND)
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
            "noop_detaches": dict(sorted(self.noop_detaches.items())),
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
        vpc = self._find_vpc(account, vpc_id)
        instance = self._instances.get(instance_id)
        if instance is None:
            raise ModelError("InvalidInstanceId.NotFound")
        if instance.owner != account:
            raise ModelError("InvalidInstanceId.NotBelong")
        return instance, vpc

    def _find_vpc(self, account: str, vpc_id: str) -> Vpc:
        """Checks 2-3: a well-formed VpcId of the caller's (else ``InvalidVpcId.Malformed``)."""
        vpc = self._vpcs.get(vpc_id) if vpc_id.startswith("vpc-") else None
        if vpc is None or vpc.owner != account:
            raise ModelError("InvalidVpcId.Malformed")
        return vpc

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


def _detach_error(code: str) -> ModelError:
    """A detach refusal with the detach page's message for its code."""
    return ModelError(code, DETACH_CODES[code].message)
