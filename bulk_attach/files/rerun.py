"""``retry`` from a report: the rows it picks, and the merged view it writes afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from bulk_attach.core.outcomes import RowResult
from bulk_attach.core.planning import (
    MERGED_COLUMNS,
    RetrySelection,
    merge_reports,
    row_of,
    select_for_retry,
    without_merged_columns,
)
from bulk_attach.core.rows import Row
from bulk_attach.files.report import ReportReader, ReportWriter, read_report
from bulk_attach.settings import ReportFormat

__all__ = ["PickedRows", "merged_path_for", "pick_rows", "write_merged"]


@dataclass(frozen=True, slots=True)
class PickedRows:
    """The rows ``retry`` chose from a report, in line order (a re-iterable row source)."""

    rows: tuple[Row, ...]
    extra_columns: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def regions(self) -> frozenset[str]:
        return frozenset(row.region_id for row in self.rows)

    def __iter__(self) -> Iterator[Row | RowResult]:
        return iter(self.rows)


def pick_rows(report_path: Path, selection: RetrySelection) -> PickedRows:
    """The rows of a report that ``selection`` sends again (latest outcome per identity)."""
    reader = ReportReader(report_path)
    # A merged view's History and TotalAttempts are not input: the next merge recomputes them.
    chosen = [
        replace(row, extra=without_merged_columns(row.extra))
        for row in map(row_of, select_for_retry(reader, selection))
    ]
    extras = tuple(name for name in reader.extra_columns if name not in MERGED_COLUMNS)
    if not extras and chosen:  # JSON Lines keeps extras per row
        extras = tuple(name for name, _ in chosen[0].extra)
    return PickedRows(rows=tuple(sorted(chosen, key=lambda r: r.line)), extra_columns=extras)


def merged_path_for(report_path: Path) -> Path:
    return report_path.with_name(report_path.stem + ".merged" + report_path.suffix)


def write_merged(old_report: Path, new_report: Path, report_format: ReportFormat) -> Path:
    """The merged view: each row's latest outcome, with its history of attempts."""
    merged = merge_reports(read_report(old_report), read_report(new_report))
    path = merged_path_for(new_report)
    results = sorted((m.as_result() for m in merged), key=lambda r: r.line)
    extras = tuple(name for name, _ in results[0].extra) if results else ()
    tmp = path.with_name(f".{path.name}.tmp")
    with ReportWriter(tmp, report_format, extras) as writer:
        writer.write_all(results)
    tmp.replace(path)
    return path
