"""What to run: resume after an interruption, re-run from a report, the merged view.

Pure decisions over results already read (``files/report.py`` reads them). Rows are
matched by identity, ``(region, instance, VPC)``, never by position; rows rejected as input
(invalid, duplicate) are outcomes of a line, not of an identity, and never count as one.

Resume: each identity's latest previous result decides its ``Step``:

* ``SETTLED``: it has a final outcome (attached, already linked, failed, or skipped for
  quota): keep the old report row, send nothing;
* ``RECONCILE``: it was handed to the service (started journal) but never settled: the run
  died with it in flight, so its link must be read back before anything is sent;
* ``RUN``: never started, or only skipped because the run stopped: run it normally.

Retry: ``RetrySelection`` picks, from a report's latest results, the rows worth sending
again; by default those whose failure may pass (the catalog's ``may_pass_later``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from bulk_attach.core.catalog import ErrorClass, LocalCode, classify, may_pass_later
from bulk_attach.core.outcomes import REJECTED, SUCCEEDED, Key, RowResult, Status
from bulk_attach.core.rows import Row

__all__ = [
    "MERGED_COLUMNS",
    "MergedRow",
    "ResumePlanner",
    "RetrySelection",
    "Step",
    "is_settled",
    "latest_by_key",
    "merge_reports",
    "plan_resume",
    "row_of",
    "select_for_retry",
    "without_merged_columns",
]


class Step(StrEnum):
    SETTLED = "settled"
    RECONCILE = "reconcile"
    RUN = "run"


def is_settled(result: RowResult) -> bool:
    """Whether a previous outcome is final for resume (the row is not sent again).

    A row skipped because the run stopped (Ctrl-C, fatal error, failure threshold) was
    never attempted: it runs on resume. A row skipped for quota was decided: it stays
    (``retry`` may pick it up once quota is freed).
    """
    if result.status is Status.SKIPPED:
        return result.error_code == LocalCode.QUOTA_EXCEEDED
    if result.status is Status.FAILED:
        # An ambiguous failure left the link in an unknown state (the read-back failed, or
        # the attach kept failing ambiguously): a resume reads it back again.
        return classify(result.error_code, result.http_status) is not ErrorClass.AMBIGUOUS
    return True


def _interned(key: Key) -> Key:
    region, instance, vpc = key
    return (sys.intern(region), instance, sys.intern(vpc))


def latest_by_key(results: Iterable[RowResult]) -> dict[Key, RowResult]:
    """The latest result per identity (later rows win); rejected input rows are left out.

    The dict keeps the order in which identities first appeared.
    """
    latest: dict[Key, RowResult] = {}
    for result in results:
        if result.status not in REJECTED:
            latest[result.key] = result
    return latest


class ResumePlanner:
    """Decides each input row's ``Step`` from a previous report and started journal.

    Holds one bool per identity (not the results), so resuming a million-row report stays
    small. ``rejected_lines`` remembers input lines already reported invalid or duplicate,
    so a resume does not write them twice.
    """

    __slots__ = ("_rejected_lines", "_settled", "_started")

    def __init__(self, previous: Iterable[RowResult] = (), started: Collection[Key] = ()) -> None:
        self._settled: dict[Key, bool] = {}
        self._rejected_lines: set[tuple[int, Status]] = set()
        for result in previous:
            if result.status in REJECTED:
                self._rejected_lines.add((result.line, result.status))
            else:
                self._settled[_interned(result.key)] = is_settled(result)
        self._started = frozenset(started)

    def step(self, key: Key) -> Step:
        if self._settled.get(key, False):
            return Step.SETTLED
        if key in self._started:
            return Step.RECONCILE
        return Step.RUN

    def already_reported(self, result: RowResult) -> bool:
        """Whether this rejected input row (same line, same status) is in the report."""
        return (result.line, result.status) in self._rejected_lines

    @property
    def settled_count(self) -> int:
        return sum(self._settled.values())

    def __repr__(self) -> str:
        return (
            f"<ResumePlanner {self.settled_count} settled, "
            f"{len(self._settled) - self.settled_count} unsettled, {len(self._started)} started, "
            f"{len(self._rejected_lines)} rejected lines>"
        )


def plan_resume(
    keys: Iterable[Key], previous: Iterable[RowResult], started: Collection[Key] = ()
) -> list[Step]:
    """The step of every input identity, in input order (see ``ResumePlanner``)."""
    planner = ResumePlanner(previous, started)
    return [planner.step(key) for key in keys]


@dataclass(frozen=True, slots=True)
class RetrySelection:
    """Which rows of a report ``retry`` sends again.

    Default: rows whose failure may pass later (throttled, ambiguous, not sent, locked
    instance or bad instance status, QuotaExceeded) and every skipped row. ``all_failed``:
    every row that did not succeed. ``only``: rows with one of these error codes. Rows
    rejected as input are never selected: sending them cannot help.
    """

    all_failed: bool = False
    only: frozenset[str] = frozenset()

    def selects(self, result: RowResult) -> bool:
        if result.status in SUCCEEDED or result.status in REJECTED:
            return False
        if self.only:
            return result.error_code in self.only
        if self.all_failed or result.status is Status.SKIPPED:
            return True
        return may_pass_later(result.error_code, result.http_status)

    def describe(self) -> str:
        if self.only:
            return "rows with error code " + ", ".join(sorted(self.only))
        if self.all_failed:
            return "every row that did not succeed"
        return "rows whose failure may pass (throttled, ambiguous, locked, skipped, quota)"


def select_for_retry(
    results: Iterable[RowResult], selection: RetrySelection | None = None
) -> Iterator[RowResult]:
    """The latest result of each identity that ``selection`` picks, in first-seen order."""
    chosen = selection or RetrySelection()
    for result in latest_by_key(results).values():
        if chosen.selects(result):
            yield result


def row_of(result: RowResult) -> Row:
    """The input row a result stands for (same line, identity and extras)."""
    return Row(
        line=result.line,
        region_id=result.region_id,
        instance_id=result.instance_id,
        vpc_id=result.vpc_id,
        extra=result.extra,
    )


@dataclass(frozen=True, slots=True)
class MergedRow:
    """One identity across several reports: its latest outcome and every earlier one."""

    latest: RowResult
    history: tuple[RowResult, ...]  # oldest first, the latest included

    @property
    def total_attempts(self) -> int:
        return sum(_carried(r, "TotalAttempts", str(r.attempts), int) for r in self.history)

    def history_text(self) -> str:
        """``failed(Throttling) -> attached``: each outcome, with its code when it had one.

        A row of an earlier merged view brings its own history along, so retrying a merged
        view continues the chain instead of restarting it.
        """
        return " -> ".join(
            _carried(r, "History", f"{r.status}({r.error_code})" if r.error_code else r.status, str)
            for r in self.history
        )

    def as_result(self) -> RowResult:
        """The latest result with ``History`` and ``TotalAttempts`` as its last extras."""
        extra = (
            *without_merged_columns(self.latest.extra),
            ("History", self.history_text()),
            ("TotalAttempts", str(self.total_attempts)),
        )
        return self.latest.replace(extra=extra)


_T = TypeVar("_T")

# The columns a merged view adds; rows read back from one carry them as extras.
MERGED_COLUMNS = ("History", "TotalAttempts")


def without_merged_columns(extra: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, value in extra if name not in MERGED_COLUMNS)


def _carried(result: RowResult, column: str, own: str, convert: Callable[[str], _T]) -> _T:
    """A merged-view column the row carries from an earlier merge, else its own value."""
    for name, value in result.extra:
        if name == column:
            try:
                return convert(value)
            except ValueError:
                break
    return convert(own)


def merge_reports(*reports: Iterable[RowResult]) -> list[MergedRow]:
    """Merge reports given oldest first: one ``MergedRow`` per identity (first-seen order);
    rejected input rows appear once per (line, status)."""
    histories: dict[object, list[RowResult]] = {}
    for report in reports:
        for result in report:
            group: object = (
                ("rejected", result.line, result.status)
                if result.status in REJECTED
                else result.key
            )
            histories.setdefault(group, []).append(result)
    return [MergedRow(latest=h[-1], history=tuple(h)) for h in histories.values()]
