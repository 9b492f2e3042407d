"""What ``run`` would do with a row, predicted from what Describe returns (pure, no I/O).

``Forecast.predict`` takes the rows in input order, each with its ``RowFacts`` (what
DescribeInstances, DescribeVpcAttribute and DescribeClassicLinkInstances said), and replays
the run for it: the engine's own steps first, then the service's checks in the service's
order (the emulator model, ``emulator/model.py``, is the reference):

    run   the VPC's links could not be read         would_fail (the read's code)
    run   the instance is in the VPC's links         already_linked (not sent)
    run   the ledger has no room (--vpc-quota)       would_skip QuotaExceeded (not sent)
    3     VPC not found                              would_fail InvalidVpcId.Malformed
    4/5   instance not found                         undetermined (see below)
    6     not a classic instance                     would_fail InvalidInstanceId.MalFormed
    7     instance, VPC and request regions differ   would_fail (variant's code)
    8     instance locked (names the lock reasons)   would_fail InvalidStatus.InstanceLocked
    9     status not Running/Stopped (names it)      would_fail InvalidStatus.InstanceStatus
    10    ClassicLink disabled on the VPC            would_fail OperationDenied
    11    linked to another VPC (names it)           would_fail (variant's code)
    12    linked to this VPC, unseen by the run      would_attach (the service answers success)
    13    the service's quota is reached             would_fail QuotaExceeded
          otherwise                                  would_attach

The ledger is replayed in input order: a row that would attach takes a slot, and the VPC
is closed for the rest of the run once the service would answer QuotaExceeded, as
``QuotaLedger.mark_full`` does.

Stated assumptions (nothing Describe returns settles them; each shows in the row's message):

* The service's per-VPC quota is invisible to Describe: it is taken as the documented 1000
  (``DOCUMENTED_VPC_QUOTA``; ``service_quota`` changes it), and ``--vpc-quota`` applies
  first when it is lower, as the run's ledger does.
* Both generations of error codes exist (``Variant``): the region mismatch and "linked to
  another VPC" answers differ between them, so the plan names the variant it assumed
  (the current doc by default) and gives the other variant's code in the message.
* A VPC that DescribeVpcAttribute finds in none of the regions searched (the row's region,
  then the input's other regions) is taken not to exist, or to be another account's: both
  answer ``InvalidVpcId.Malformed``. A VPC that exists only in a region no row names would
  get an answer about the instance or the region instead.
* Where DescribeInstances did not report ``OperationLocks`` (``lock_reasons`` is None: the
  client does not read them yet), the instance is taken as unlocked, and the message says so.

``undetermined`` cases (Describe cannot tell the outcomes apart; the message names them):

* **Instance not visible.** DescribeInstances leaves out an instance that does not exist
  and one of another account alike (and one in a region the input does not name): the
  attach answers ``InvalidInstanceId.NotFound`` or ``InvalidInstanceId.NotBelong``.
* **A read failed.** A Describe call that failed after its retries (other than the VPC's
  links, whose permanent failure the run reports as the row's failure) leaves the row's
  facts unknown.
* **A VPC named under several regions.** The run reads a VPC's links once, keyed by VPC,
  in the region of whichever row gets there first (lanes run side by side), so its rows
  may be ``already_linked`` or sent again, and its quota count may differ.
* **Quota contested.** A row depends on the ledger's room when an earlier row of the same
  VPC is undetermined (it may or may not take a slot), or, with ``concurrency`` above 1,
  when rows that would fail hold their reservation while it is tried (a concurrent run
  can skip it for QuotaExceeded; one worker cannot).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from bulk_attach.core.catalog import LocalCode, lookup
from bulk_attach.core.outcomes import Status
from bulk_attach.core.rows import Row
from bulk_attach.settings import DEFAULT_VPC_QUOTA

__all__ = [
    "ATTACHABLE_STATUSES",
    "DOCUMENTED_VPC_QUOTA",
    "Code",
    "Forecast",
    "Prediction",
    "ReadFailure",
    "RowFacts",
    "SeenInstance",
    "SeenVpc",
    "Variant",
]

# "At most 1,000 classic instances per VPC" (lifecycle facts); the run's default ledger too.
DOCUMENTED_VPC_QUOTA: Final = DEFAULT_VPC_QUOTA
# The catalog's InvalidStatus.InstanceStatus: "Only the Running or Stopped InstanceStatus".
ATTACHABLE_STATUSES: Final = frozenset({"Running", "Stopped"})


def _known(code: str) -> str:
    """A service code, checked against the catalog at import (a typo guard)."""
    if lookup(code) is None:  # pragma: no cover - checked at import
        raise RuntimeError(f"{code} is not in the catalog")
    return code


class Code:
    """The AttachClassicLinkVpc codes a prediction names (each one in ``core/catalog.py``)."""

    VPC_MALFORMED: Final = _known("InvalidVpcId.Malformed")
    NOT_FOUND: Final = _known("InvalidInstanceId.NotFound")
    NOT_BELONG: Final = _known("InvalidInstanceId.NotBelong")
    NOT_CLASSIC: Final = _known("InvalidInstanceId.MalFormed")
    REGION_2018: Final = _known("InvalidRegionId.Malformed")
    REGION_CURRENT: Final = _known("InvalidInstanceId.LimitedRegion")
    LOCKED: Final = _known("InvalidStatus.InstanceLocked")
    STATUS: Final = _known("InvalidStatus.InstanceStatus")
    DENIED: Final = _known("OperationDenied")
    ELSEWHERE_2018: Final = _known("Abs.InvalidInstanceId.MalFormed")
    QUOTA: Final = _known(LocalCode.QUOTA_EXCEEDED)


class Variant(StrEnum):
    """Which generation of error codes the service answers (as the emulator's ``--variant``)."""

    V2018 = "2018"
    CURRENT = "current"

    @property
    def region_code(self) -> str:
        return Code.REGION_2018 if self is Variant.V2018 else Code.REGION_CURRENT

    @property
    def elsewhere_code(self) -> str:
        return Code.ELSEWHERE_2018 if self is Variant.V2018 else Code.DENIED

    @property
    def other(self) -> Variant:
        return Variant.CURRENT if self is Variant.V2018 else Variant.V2018


# --- the facts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeenInstance:
    """One instance as DescribeInstances returned it."""

    instance_id: str
    region_id: str
    status: str
    network_type: str
    # OperationLocks.LockReason; None when the answer did not say (the client does not read
    # them yet): the prediction then says it assumed the instance unlocked.
    lock_reasons: tuple[str, ...] | None = ()


@dataclass(frozen=True, slots=True)
class SeenVpc:
    vpc_id: str
    region_id: str
    classic_link_enabled: bool


@dataclass(frozen=True, slots=True)
class ReadFailure:
    """A Describe call that failed after its retries."""

    code: str
    message: str
    permanent: bool  # the same call would fail again (a run would fail the row with it)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True, slots=True)
class RowFacts:
    """What Describe said about one row's instance and VPC.

    ``searched`` are the regions looked in, the row's first: an instance or VPC absent
    from all of them is ``None``. ``vpc_links`` are the VPC's links as the run would read
    them (in the row's region). ``linked_to`` are the VPCs the instance is linked to now
    (``None``: not read, because no check needs it). ``vpc_regions`` counts the regions
    the input names the VPC under.
    """

    searched: tuple[str, ...]
    instance: SeenInstance | ReadFailure | None
    vpc: SeenVpc | ReadFailure | None
    vpc_links: frozenset[str] | ReadFailure
    linked_to: tuple[str, ...] | ReadFailure | None = None
    vpc_regions: int = 1


@dataclass(frozen=True, slots=True)
class Prediction:
    status: Status
    code: str = ""
    message: str = ""


# --- the service's checks --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fails:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class _Succeeds:
    new_link: bool  # False: linked to this VPC already, the service changes nothing
    message: str


@dataclass(frozen=True, slots=True)
class _Unknown:
    message: str


_Answer = _Fails | _Succeeds | _Unknown


def _regions(searched: Iterable[str]) -> str:
    return ", ".join(searched)


def service_answer(  # noqa: PLR0911 - one return per check of the service, in its order
    row: Row, facts: RowFacts, variant: Variant
) -> _Answer:
    """What AttachClassicLinkVpc would answer, checks in the service's order (module doc)."""
    vpc, instance = facts.vpc, facts.instance
    if isinstance(vpc, ReadFailure):
        return _Unknown(f"DescribeVpcAttribute failed ({vpc}); the VPC's state is unknown")
    if vpc is None:
        return _Fails(
            Code.VPC_MALFORMED,
            f"{row.vpc_id} not found by DescribeVpcAttribute in {_regions(facts.searched)}; "
            "assumed not to exist or to be another account's",
        )
    if isinstance(instance, ReadFailure):
        return _Unknown(f"DescribeInstances failed ({instance}); the instance's state is unknown")
    if instance is None:
        return _Unknown(
            f"{row.instance_id} is absent from DescribeInstances in {_regions(facts.searched)}: "
            f"{Code.NOT_FOUND} if it does not exist, {Code.NOT_BELONG} if another account owns "
            "it (or another answer if it is in a region the input does not name)"
        )
    if instance.network_type != "classic":
        return _Fails(
            Code.NOT_CLASSIC, f"{row.instance_id} is a {instance.network_type or '?'} instance"
        )
    if not instance.region_id == row.region_id == vpc.region_id:
        return _Fails(
            variant.region_code,
            f"request {row.region_id}, instance in {instance.region_id}, VPC in "
            f"{vpc.region_id}{_variant_note(variant, variant.other.region_code)}",
        )
    if instance.lock_reasons:
        reasons = ", ".join(instance.lock_reasons)
        return _Fails(Code.LOCKED, f"{row.instance_id} is locked ({reasons})")
    if instance.status not in ATTACHABLE_STATUSES:
        return _Fails(Code.STATUS, f"{row.instance_id} is {instance.status or 'of no status'}")
    if not vpc.classic_link_enabled:
        return _Fails(Code.DENIED, f"ClassicLink is not enabled on {row.vpc_id}")
    linked = facts.linked_to
    if isinstance(linked, ReadFailure):
        return _Unknown(f"could not read the instance's link ({linked})")
    others = sorted(v for v in linked or () if v != row.vpc_id)
    if others:
        return _Fails(
            variant.elsewhere_code,
            f"{row.instance_id} is linked to {', '.join(others)}"
            f"{_variant_note(variant, variant.other.elsewhere_code)}",
        )
    unlocked = "" if instance.lock_reasons is not None else "; lock state not read, assumed none"
    if linked and row.vpc_id in linked:
        return _Succeeds(
            new_link=False,
            message=f"linked to {row.vpc_id} already, though not in the links the run reads: "
            f"it is sent and the service answers success{unlocked}",
        )
    return _Succeeds(
        new_link=True,
        message=f"{instance.status} classic instance, ClassicLink enabled on "
        f"{row.vpc_id}{unlocked}",
    )


def _unreadable(links: ReadFailure) -> Prediction:
    if links.permanent:
        return Prediction(
            Status.WOULD_FAIL,
            links.code,
            f"the run could not read the VPC's links: {links.message}",
        )
    return Prediction(
        Status.UNDETERMINED,
        message=f"the VPC's links could not be read ({links}); the run would read them again: "
        "it may fail with that code or go on",
    )


def _variant_note(variant: Variant, other_code: str) -> str:
    return f" (assuming the {variant} error codes; the {variant.other} ones say {other_code})"


# --- the run's bookkeeping -------------------------------------------------------------------


class _Book:
    """One VPC as the run's ledger would see it."""

    __slots__ = ("failing", "full", "ledger", "linked", "maybe", "service")

    def __init__(self, linked: int) -> None:
        self.linked = linked  # the live link count the run reads
        self.ledger = linked  # + rows that would attach (the ledger's commits)
        self.service = linked  # + rows that would create a link (what the service counts)
        self.failing = 0  # rows that take a slot, then fail at the service
        self.maybe = 0  # undetermined rows that may take a slot for good
        self.full = False  # the service would have answered QuotaExceeded


class Forecast:
    """Predicts rows in input order; one per plan (it keeps each VPC's book)."""

    __slots__ = ("_books", "concurrency", "service_quota", "variant", "vpc_quota")

    def __init__(
        self,
        *,
        vpc_quota: int = DEFAULT_VPC_QUOTA,
        service_quota: int = DOCUMENTED_VPC_QUOTA,
        variant: Variant = Variant.CURRENT,
        concurrency: int = 1,
    ) -> None:
        if vpc_quota < 0 or service_quota < 0:
            raise ValueError("quotas must not be negative")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.vpc_quota = vpc_quota
        self.service_quota = service_quota
        self.variant = variant
        self.concurrency = concurrency
        self._books: dict[str, _Book] = {}

    def predict(self, row: Row, facts: RowFacts) -> Prediction:
        prediction = self._predict(row, facts)
        if facts.vpc_regions > 1:
            return Prediction(
                Status.UNDETERMINED,
                prediction.code,
                f"{row.vpc_id} is named under {facts.vpc_regions} regions; the run reads its "
                "links once, in the region of whichever row comes first, so this row may be "
                f"{prediction.status} ({prediction.message}), or be sent again and attach, or "
                "meet QuotaExceeded",
            )
        return prediction

    def _predict(self, row: Row, facts: RowFacts) -> Prediction:
        links = facts.vpc_links
        if isinstance(links, ReadFailure):
            return _unreadable(links)
        if row.instance_id in links:
            return Prediction(Status.ALREADY_LINKED, message=f"in the links of {row.vpc_id} now")
        book = self._books.get(row.vpc_id)
        if book is None:
            book = self._books[row.vpc_id] = _Book(len(links))
        skip = self._ledger_refuses(row, book)
        if skip is not None:
            return skip
        contested = self._contested(book)
        return self._unless(
            contested, self._settle(row, book, service_answer(row, facts, self.variant))
        )

    def _settle(self, row: Row, book: _Book, answer: _Answer) -> Prediction:
        """The row took a slot in the ledger: what the service's answer makes of it."""
        if isinstance(answer, _Unknown):
            book.maybe += 1
            return Prediction(Status.UNDETERMINED, message=answer.message)
        if isinstance(answer, _Fails):
            book.failing += 1
            return Prediction(Status.WOULD_FAIL, answer.code, answer.message)
        if answer.new_link and book.service >= self.service_quota:
            book.full = True
            return Prediction(
                Status.WOULD_FAIL,
                Code.QUOTA,
                f"{row.vpc_id} would hold {book.service} links, the service's quota "
                f"(assumed {self.service_quota}, the documented figure)",
            )
        book.ledger += 1
        if answer.new_link:
            book.service += 1
        room = f"{book.ledger}/{min(self.vpc_quota, self.service_quota)} linked after this row"
        return Prediction(Status.WOULD_ATTACH, message=f"{answer.message}; {room}")

    def _ledger_refuses(self, row: Row, book: _Book) -> Prediction | None:
        """The run's ledger check, before anything is sent."""
        if book.full or book.ledger >= self.vpc_quota:
            limit = (
                "closed after QuotaExceeded"
                if book.full
                else f"{book.ledger}/{self.vpc_quota} linked (--vpc-quota)"
            )
            return Prediction(
                Status.WOULD_SKIP, Code.QUOTA, f"{row.vpc_id} has no room: {limit}; not sent"
            )
        if book.ledger + book.maybe >= self.vpc_quota:
            return Prediction(
                Status.UNDETERMINED,
                Code.QUOTA,
                f"{row.vpc_id} has room for it only if undetermined rows before it do not "
                f"attach ({book.ledger}+{book.maybe}/{self.vpc_quota}): would_skip "
                "QuotaExceeded, or tried",
            )
        return None

    def _contested(self, book: _Book) -> str:
        """Why the ledger's room for this row depends on timing, or ""."""
        room = self.vpc_quota - book.ledger
        holders = min(book.failing, self.concurrency - 1)
        if room <= holders:
            return (
                f"with {self.concurrency} rows in flight, earlier rows that fail may still hold "
                f"the last {room} slot(s) of the ledger when it is tried: skipped QuotaExceeded, "
                "or as predicted"
            )
        return ""

    @staticmethod
    def _unless(contested: str, prediction: Prediction) -> Prediction:
        if not contested or prediction.status is Status.UNDETERMINED:
            return prediction
        return Prediction(
            Status.UNDETERMINED,
            prediction.code,
            f"{contested} ({prediction.status}: {prediction.message})",
        )

    def headroom(self) -> dict[str, dict[str, Any]]:
        """Per VPC: links now, links after the plan (as the run's ledger would count them),
        the quota assumed and the room left after the plan."""
        quota = min(self.vpc_quota, self.service_quota)
        return {
            vpc: {
                "linked": book.linked,
                "linked_after": book.ledger,
                "quota": quota,
                "headroom": 0 if book.full else max(0, quota - book.ledger),
            }
            for vpc, book in sorted(self._books.items())
        }

    def __repr__(self) -> str:
        return (
            f"<Forecast {len(self._books)} VPCs, vpc_quota={self.vpc_quota} "
            f"service_quota={self.service_quota} variant={self.variant}>"
        )
