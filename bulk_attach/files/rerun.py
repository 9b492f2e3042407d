"""``retry`` from a report: its family of files, its rounds, the rows it picks, the merged view.

A source report ``R`` (what ``run`` wrote) has one retry report ``P`` and one merged view
``M`` (names in ``files/paths.py``). Each ``retry R`` is a *round*:

1. the rows are picked from the latest outcome of each row: the merged view once one
   exists (it holds every earlier round), else ``R``;
2. the chosen rows run into ``P``;
3. when the round finishes (it was not stopped), ``P`` is folded into ``M``: every row of
   ``R`` once, its latest outcome, its history of outcomes and its total attempts.

So every retry tries again every row that has not succeeded and whose failure may pass,
whatever earlier rounds did. A round that was interrupted (Ctrl-C, kill -9, a fatal stop)
is not folded: running the same command again *resumes* it, like any run, without sending
again what it already settled and reading back what it left in flight. ``retry`` of ``P``
or ``M`` is ``retry`` of their source (their metadata names it).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from bulk_attach.core.outcomes import REJECTED, SUCCEEDED, RowResult
from bulk_attach.core.resuming import latest_by_key
from bulk_attach.core.retrying import (
    MERGED_COLUMNS,
    RetrySelection,
    merge_reports,
    row_of,
    without_merged_columns,
)
from bulk_attach.core.rows import Row
from bulk_attach.errors import UsageError
from bulk_attach.files.csv_input import InputFingerprint, fingerprint
from bulk_attach.files.paths import ReportPaths, merged_view_for, retry_report_for
from bulk_attach.files.report import (
    ReportMeta,
    ReportReader,
    ReportWriter,
    read_meta,
    read_report,
    write_meta,
)
from bulk_attach.files.resume import RoundPin
from bulk_attach.settings import ReportFormat

__all__ = [
    "MERGE_COMMAND",
    "RETRY_COMMAND",
    "PickedRows",
    "RetryFamily",
    "RetryRound",
    "Selection",
    "fold_round",
    "pick_rows",
    "plan_round",
    "retry_family",
]

RETRY_COMMAND = "retry"
MERGE_COMMAND = "merge"
_RETRY_FILES = (RETRY_COMMAND, MERGE_COMMAND)


@dataclass(frozen=True, slots=True)
class RetryFamily:
    """The files of one source report's retries."""

    source: ReportPaths  # what ``run`` wrote: the rows every round is about
    retry: ReportPaths  # the current round's report
    merged: ReportPaths  # every row once, latest outcome and history
    given: Path  # what the user named (the source, or its retry report or merged view)

    @property
    def redirected(self) -> bool:
        return self.given.resolve() != self.source.report.resolve()


def retry_family(given: Path, fmt: ReportFormat, report: Path | None = None) -> RetryFamily:
    """The family of the report the user named; ``P`` and ``M`` name their source."""
    source = given
    meta = read_meta(given) if given.exists() else None
    if meta is not None and meta.command in _RETRY_FILES and meta.source_path:
        source = Path(meta.source_path)
        if not source.exists():
            raise UsageError(
                f"{given} belongs to the report {source}, which no longer exists; "
                "retry cannot tell what the rows were"
            )
    # A source whose own name ends like retry's files (the report of ``a.retry.csv``)
    # keeps its whole stem, so its family's files never take its name.
    whole = meta is not None and source == given and meta.command not in _RETRY_FILES
    whole = whole or retry_report_for(source, fmt).name == source.name
    whole = whole or merged_view_for(source, fmt).name == source.name
    family = RetryFamily(
        source=ReportPaths(source),
        retry=ReportPaths(report or retry_report_for(source, fmt, whole_stem=whole)),
        merged=ReportPaths(merged_view_for(source, fmt, whole_stem=whole)),
        given=given,
    )
    resolved = source.resolve()
    for own, what in ((family.retry, "retry report"), (family.merged, "merged view")):
        if own.report.resolve() == resolved:
            raise UsageError(
                f"{given} looks like a {what} of bulk-attach retry, but it names no source "
                "report (no .meta.json beside it); retry the report that run wrote"
            )
    return family


@dataclass(frozen=True, slots=True)
class RetryRound:
    """One round of ``retry``: where its rows come from, what it pins, whether it resumes."""

    family: RetryFamily
    base: Path  # the rows are picked from here
    pin: RoundPin
    resume: bool  # continue an interrupted round
    folded: Path | None  # a finished earlier round folded into the merged view just now


def _merged_round(family: RetryFamily, source: InputFingerprint) -> int:
    """The last round folded into the merged view; 0 when there is no current one."""
    merged = family.merged.report
    if not merged.exists():
        return 0
    meta = read_meta(merged)
    if meta is None or meta.command != MERGE_COMMAND:
        raise UsageError(
            f"{merged} exists but is not the merged view of {family.source.report}; "
            "move it away, or name another --report"
        )
    if meta.source_differs(source.size, source.sha256):
        # The source report changed (a later run resumed into it): the old merged view
        # describes rows that no longer are; the next fold starts a new one.
        return 0
    return meta.round


def plan_round(family: RetryFamily, selection: RetrySelection) -> RetryRound:
    """Resume an interrupted round, or fold a finished one and start the next."""
    source = fingerprint(family.source.report)
    folded = _merged_round(family, source)
    fresh_fold: Path | None = None
    previous = _round_meta(family.retry.report)
    if (
        previous is not None
        and previous.command == RETRY_COMMAND
        and not previous.source_differs(source.size, source.sha256)
        and previous.round == folded + 1
    ):
        if not previous.finished and previous.selection == selection.describe():
            base = family.merged.report if folded else family.source.report
            pin = RoundPin(source=source, round=folded + 1, selection=selection.describe())
            return RetryRound(family, base, pin, resume=True, folded=None)
        # It finished (or ran another selection) but was never folded: fold it now.
        base = family.merged.report if folded else family.source.report
        fresh_fold = fold_round(family, base, source, previous.round)
        folded = previous.round
    base = family.merged.report if folded else family.source.report
    pin = RoundPin(source=source, round=folded + 1, selection=selection.describe())
    return RetryRound(family, base, pin, resume=False, folded=fresh_fold)


def _round_meta(path: Path) -> ReportMeta | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    return read_meta(path)


def fold_round(
    family: RetryFamily, base: Path, source: InputFingerprint, round_number: int
) -> Path:
    """Write the merged view: ``base`` (the source, or the last merged view) with the
    round's outcomes on top; atomic, then its metadata."""
    merged = merge_reports(read_report(base), read_report(family.retry.report))
    results = sorted((m.as_result() for m in merged), key=lambda r: r.line)
    extras = tuple(name for name, _ in results[0].extra) if results else ()
    path = family.merged.report
    fmt = ReportFormat(path.suffix.lstrip("."))
    tmp = family.merged.temporary("tmp")
    with ReportWriter(tmp, fmt, extras) as writer:
        writer.write_all(results)
    os.replace(tmp, path)
    write_meta(
        path,
        ReportMeta(
            input_path=source.path,
            input_size=source.size,
            input_sha256=source.sha256,
            report_format=fmt.value,
            command=MERGE_COMMAND,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            finished=True,
            source_path=source.path,
            source_size=source.size,
            source_sha256=source.sha256,
            round=round_number,
        ),
    )
    return path


@dataclass(frozen=True, slots=True)
class PickedRows:
    """The rows ``retry`` chose from a report, in line order (a re-iterable row source),
    and what the report says of the rest."""

    rows: tuple[Row, ...]
    extra_columns: tuple[str, ...]
    not_succeeded: int  # rows (not rejected as input) whose latest outcome is no success
    codes: Counter[str]  # their error codes
    pinned: InputFingerprint

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def regions(self) -> frozenset[str]:
        return frozenset(row.region_id for row in self.rows)

    @property
    def fingerprint(self) -> InputFingerprint:
        return self.pinned

    def __iter__(self) -> Iterator[Row | RowResult]:
        return iter(self.rows)


class Selection(Protocol):
    """Which rows of a report a command takes (retry's ``RetrySelection``, detach's)."""

    def selects(self, result: RowResult) -> bool: ...


def pick_rows(report_path: Path, selection: Selection) -> PickedRows:
    """The rows of a report that ``selection`` takes (latest outcome per identity), and
    what the report says of the rows that did not succeed."""
    pinned = fingerprint(report_path)
    reader = ReportReader(report_path)
    chosen: list[Row] = []
    codes: Counter[str] = Counter()
    not_succeeded = 0
    for result in latest_by_key(reader).values():
        if result.status in REJECTED:
            continue
        if result.status not in SUCCEEDED:
            not_succeeded += 1
            codes[result.error_code or str(result.status)] += 1
        if selection.selects(result):
            # A merged view's History and TotalAttempts are not input: the next fold
            # recomputes them.
            chosen.append(replace(row_of(result), extra=without_merged_columns(result.extra)))
    extras = tuple(name for name in reader.extra_columns if name not in MERGED_COLUMNS)
    if not extras and chosen:  # JSON Lines keeps extras per row
        extras = tuple(name for name, _ in chosen[0].extra)
    return PickedRows(
        rows=tuple(sorted(chosen, key=lambda r: r.line)),
        extra_columns=extras,
        not_succeeded=not_succeeded,
        codes=codes,
        pinned=pinned,
    )
