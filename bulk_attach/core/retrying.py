"""``retry`` (the command): which rows of a report it sends again, and the merged view.

Pure decisions over results already read. ``RetrySelection`` picks, from a report's latest
results, the rows worth sending again; by default those whose failure may pass (the
catalog's ``may_pass_later``). ``merge_reports`` folds reports into one row per identity
with its history. (The in-run policy that tries one request again is ``core/attempts.py``.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from bulk_attach.core.catalog import may_pass_later
from bulk_attach.core.outcomes import REJECTED, SUCCEEDED, RowResult, Status
from bulk_attach.core.resuming import latest_by_key
from bulk_attach.core.rows import Row

__all__ = [
    "MERGED_COLUMNS",
    "MergedRow",
    "RetrySelection",
    "merge_reports",
    "row_of",
    "select_for_retry",
    "without_merged_columns",
]


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
