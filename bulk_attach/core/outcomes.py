"""What happened to a row, as data: a ``Status``, a ``RowResult`` and a running ``Summary``.

Every input row ends as exactly one ``RowResult``; the report is those results, written as
they settle. Statuses come with named sets so that callers ask ``status in SUCCEEDED``
instead of re-listing values (one place decides what "success" means for the exit code).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "FAILED_SET",
    "FINAL",
    "NOT_SUCCEEDED",
    "REJECTED",
    "SENT",
    "SUCCEEDED",
    "Key",
    "RowResult",
    "Status",
    "Summary",
]

# (region, instance, VPC): how a row is recognised across runs, never by its position.
Key = tuple[str, str, str]


class Status(StrEnum):
    """The final status of one input row (the report's ``Status`` column)."""

    ATTACHED = "attached"  # this run linked it
    ALREADY_LINKED = "already_linked"  # found linked to its VPC; not sent
    FAILED = "failed"  # sent and refused, or gave up (ErrorCode says why)
    SKIPPED = "skipped"  # not attempted: quota, stop, failure threshold
    INVALID = "invalid"  # rejected input (bad ID, missing value, conflicting rows)
    DUPLICATE = "duplicate"  # the same instance and VPC as an earlier row, which runs
    # detach (roll back)
    DETACHED = "detached"  # this run unlinked it
    NOT_LINKED = "not_linked"  # detach: found not linked, not sent; verify: not linked
    # verify
    LINKED = "linked"  # linked to its VPC now, whoever linked it
    LINKED_ELSEWHERE = "linked_elsewhere"  # linked to another VPC (the message names it)
    # plan: what run would do, with nothing changed
    WOULD_ATTACH = "would_attach"
    WOULD_FAIL = "would_fail"  # ErrorCode: the code the service would answer
    WOULD_SKIP = "would_skip"  # ErrorCode: QuotaExceeded
    UNDETERMINED = "undetermined"  # Describe cannot tell the outcomes apart (message names them)


# Success for attach (run, retry). Each other command (plan, verify, detach) names its own
# success set in its action spec; these sets are attach's, the default.
SUCCEEDED: frozenset[Status] = frozenset({Status.ATTACHED, Status.ALREADY_LINKED})
# Every status that makes the run's exit code 1.
NOT_SUCCEEDED: frozenset[Status] = frozenset(Status) - SUCCEEDED
FAILED_SET = NOT_SUCCEEDED
# Rows that reached the service (the failure threshold counts these).
SENT: frozenset[Status] = frozenset({Status.ATTACHED, Status.ALREADY_LINKED, Status.FAILED})
# Rows rejected by input validation: nothing about them is ever sent.
REJECTED: frozenset[Status] = frozenset({Status.INVALID, Status.DUPLICATE})
# Every status is final: a row is written once, when it settles.
FINAL: frozenset[Status] = frozenset(Status)


@dataclass(frozen=True, slots=True)
class RowResult:
    """One report row. Times are ISO-8601 UTC strings; empty when the row never started."""

    line: int
    region_id: str
    instance_id: str
    vpc_id: str
    status: Status
    request_id: str = ""
    error_code: str = ""
    http_status: int = 0
    message: str = ""
    attempts: int = 0
    started_at: str = ""
    finished_at: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> Key:
        return (self.region_id, self.instance_id, self.vpc_id)

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCEEDED

    @property
    def rejected(self) -> bool:
        return self.status in REJECTED

    def replace(self, **changes: Any) -> RowResult:
        """A copy with some fields changed (``dataclasses.replace`` with a shorter name)."""
        return dataclasses.replace(self, **changes)


class Summary:
    """Counts of a run, built one result at a time (pure: times are passed in).

    ``to_dict`` is the machine-readable JSON summary written beside the report.
    """

    __slots__ = ("_attempts", "_by_code", "_by_status", "_by_vpc", "success", "total")

    def __init__(
        self, results: Iterable[RowResult] = (), *, succeeded: frozenset[Status] = SUCCEEDED
    ) -> None:
        # What success means for the command counted (attach's by default; detach, verify
        # and plan have their own).
        self.success = succeeded
        self.total = 0
        self._attempts = 0
        self._by_status: Counter[Status] = Counter()
        self._by_code: Counter[str] = Counter()
        self._by_vpc: dict[str, Counter[Status]] = {}
        for result in results:
            self.add(result)

    def add(self, result: RowResult) -> None:
        self.total += 1
        self._attempts += result.attempts
        self._by_status[result.status] += 1
        if result.error_code and result.status not in self.success:
            self._by_code[result.error_code] += 1
        if result.status not in REJECTED and result.vpc_id:
            self._by_vpc.setdefault(result.vpc_id, Counter())[result.status] += 1

    def count(self, *statuses: Status) -> int:
        return sum(self._by_status[s] for s in statuses)

    @property
    def succeeded(self) -> int:
        return self.count(*self.success)

    @property
    def not_succeeded(self) -> int:
        return self.total - self.succeeded

    @property
    def failed(self) -> int:
        return self._by_status[Status.FAILED]

    @property
    def sent(self) -> int:
        return self.count(*SENT)

    @property
    def attempts(self) -> int:
        return self._attempts

    @property
    def all_succeeded(self) -> bool:
        return self.not_succeeded == 0

    @property
    def unsuccessful(self) -> int:
        """Rows that make the exit code 1: duplicates do not, the row they repeat ran."""
        return self.not_succeeded - self.count(Status.DUPLICATE)

    def by_status(self) -> dict[str, int]:
        """The statuses of this command (its success set, failed, skipped, rejected), zeros
        included, then any other status seen, in declaration order."""
        shown = self.success | {Status.FAILED, Status.SKIPPED} | REJECTED
        return {
            status.value: self._by_status[status]
            for status in Status
            if status in shown or self._by_status[status]
        }

    def by_code(self) -> dict[str, int]:
        """Error codes of rows that did not succeed, most frequent first."""
        return dict(sorted(self._by_code.items(), key=lambda item: (-item[1], item[0])))

    def by_vpc(self) -> dict[str, dict[str, int]]:
        """Per VPC (sorted), the non-zero count of each status."""
        return {
            vpc: {status.value: counts[status] for status in Status if counts[status]}
            for vpc, counts in sorted(self._by_vpc.items())
        }

    def vpc_attached(self, vpc_id: str) -> int:
        counts = self._by_vpc.get(vpc_id)
        return counts[Status.ATTACHED] if counts else 0

    @staticmethod
    def throughput(rows: int, duration: float) -> float:
        return rows / duration if duration > 0 else 0.0

    def to_dict(
        self,
        *,
        duration: float,
        started_at: str = "",
        finished_at: str = "",
        vpc_quota: Mapping[str, Mapping[str, int]] | None = None,
        this_run: Summary | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The JSON summary.

        The counts describe the report (every row once). ``this_run``, for a resumed run,
        is what this run itself settled: attempts and speeds are its own, and the rows
        kept from earlier runs are counted apart. ``vpc_quota`` maps a VPC to its ledger
        figures (e.g. ``linked``, ``quota``, ``headroom``), merged into that VPC's entry.
        ``extra`` keys (exit code, report path, stop reason...) are added at the top level.
        """
        ran = self if this_run is None else this_run
        vpcs: dict[str, dict[str, int]] = self.by_vpc()
        for vpc, figures in (vpc_quota or {}).items():
            vpcs.setdefault(vpc, {}).update(figures)
        data: dict[str, Any] = {
            "total": self.total,
            "succeeded": self.succeeded,
            "not_succeeded": self.not_succeeded,
            "by_status": self.by_status(),
            "by_error_code": self.by_code(),
            "by_vpc": dict(sorted(vpcs.items())),
            "this_run": {
                "rows": ran.total,
                "by_status": {name: n for name, n in ran.by_status().items() if n},
            },
            "kept_from_earlier_runs": self.total - ran.total,
            "attempts": ran.attempts,
            "started_at": started_at,
            "finished_at": finished_at,
            "duration_seconds": round(duration, 3),
            "rows_per_second": round(self.throughput(ran.total, duration), 2),
            "sent_per_second": round(self.throughput(ran.sent, duration), 2),
        }
        data.update(extra)
        return data

    def __repr__(self) -> str:
        counts = " ".join(f"{s}={n}" for s, n in self.by_status().items() if n)
        return f"<Summary {self.total} rows{': ' + counts if counts else ''}>"
