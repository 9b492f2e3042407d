"""Resume: what a run does with each input row, given the report a previous run left.

Pure decisions over results already read (``files/report.py`` reads them). Rows are
matched by identity, ``(region, instance, VPC)``, never by position; rows rejected as input
(invalid, duplicate) are outcomes of a line, not of an identity, and never count as one.

Each identity's latest previous result decides its ``Step``:

* ``SETTLED``: it has a final outcome (attached, already linked, failed, or skipped for
  quota): keep the old report row, send nothing;
* ``RECONCILE``: it was handed to the service (started journal) but never settled: the run
  died with it in flight, so its link must be read back before anything is sent;
* ``RUN``: never started, or only skipped because the run stopped: run it normally.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable
from enum import StrEnum

from bulk_attach.core.catalog import ErrorClass, LocalCode, classify
from bulk_attach.core.outcomes import REJECTED, Key, RowResult, Status

__all__ = [
    "ResumeState",
    "Step",
    "is_settled",
    "latest_by_key",
    "resume_steps",
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


class ResumeState:
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
            f"<ResumeState {self.settled_count} settled, "
            f"{len(self._settled) - self.settled_count} unsettled, {len(self._started)} started, "
            f"{len(self._rejected_lines)} rejected lines>"
        )


def resume_steps(
    keys: Iterable[Key], previous: Iterable[RowResult], started: Collection[Key] = ()
) -> list[Step]:
    """The step of every input identity, in input order (see ``ResumeState``)."""
    state = ResumeState(previous, started)
    return [state.step(key) for key in keys]
