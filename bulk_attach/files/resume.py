"""Opening a report for a run: fresh, resumed, or set aside with ``--fresh``.

The report is the record of a run. Running the same command again finds it, checks that
it belongs to the same input (path, size, sha256 pinned in ``<report>.meta.json``), and
plans from it: settled rows are kept, rows started but never settled are read back first,
the rest run. At the end, ``compact_report`` rewrites a resumed report so it again holds
exactly one row per input row (the latest outcome of each), in input order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bulk_attach.core.outcomes import REJECTED, RowResult, Summary
from bulk_attach.core.planning import ResumePlanner
from bulk_attach.errors import UsageError
from bulk_attach.files.csv_input import fingerprint
from bulk_attach.files.report import (
    ReportMeta,
    ReportWriter,
    read_meta,
    read_report,
    read_started,
    set_aside,
    started_path,
    write_meta,
)
from bulk_attach.settings import ReportFormat

__all__ = ["ReportPlan", "compact_report", "prepare_report"]


@dataclass(frozen=True, slots=True)
class ReportPlan:
    """How this run treats its report."""

    planner: ResumePlanner | None  # None: a fresh report
    set_aside: Path | None  # where --fresh moved the old report, if it did

    @property
    def resuming(self) -> bool:
        return self.planner is not None


def _has_report(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def prepare_report(
    report_path: Path,
    input_path: Path,
    report_format: ReportFormat,
    *,
    fresh: bool,
    command: str = "run",
) -> ReportPlan:
    """Decide fresh or resume, refuse a changed input, and pin the input in the sidecar."""
    if report_path.resolve() == input_path.resolve():
        raise UsageError(f"{report_path}: the report would overwrite its own input")
    pinned = fingerprint(input_path)
    planner: ResumePlanner | None = None
    moved: Path | None = None
    if _has_report(report_path) and not fresh:
        meta = read_meta(report_path)
        if meta is None:
            raise UsageError(
                f"{report_path} exists but was not written by bulk-attach for this input "
                "(no .meta.json beside it); choose another --report, or --fresh to set it aside"
            )
        why = meta.input_differs(pinned.size, pinned.sha256)
        if why is not None:
            raise UsageError(
                f"{report_path}: cannot resume: {why}. Run with --fresh to start over "
                "(the old report is kept under another name)."
            )
        if meta.report_format != report_format.value:
            raise UsageError(
                f"{report_path} is a {meta.report_format} report; resume with "
                f"--format {meta.report_format}, or --fresh"
            )
        planner = ResumePlanner(read_report(report_path), read_started(started_path(report_path)))
    elif fresh or _has_report(report_path):
        moved = set_aside(report_path, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
    if planner is None:
        # A fresh run starts a fresh journal too.
        started = started_path(report_path)
        if started.exists():
            started.unlink()
    write_meta(
        report_path,
        ReportMeta(
            input_path=str(pinned.path),
            input_size=pinned.size,
            input_sha256=pinned.sha256,
            report_format=report_format.value,
            command=command,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        ),
    )
    return ReportPlan(planner=planner, set_aside=moved)


def _latest_rows(path: Path) -> list[RowResult]:
    latest: dict[object, RowResult] = {}
    for result in read_report(path):
        group: object = (
            ("rejected", result.line, result.status) if result.status in REJECTED else result.key
        )
        latest.pop(group, None)  # re-insert so the dict keeps no stale order
        latest[group] = result
    return sorted(latest.values(), key=lambda r: r.line)


def compact_report(
    path: Path, report_format: ReportFormat, extra_columns: tuple[str, ...]
) -> Summary:
    """Rewrite a resumed report: the latest row per identity, in line order; atomic.

    Holds one result per input row in memory; only resumed runs need it.
    """
    rows = _latest_rows(path)
    tmp = path.with_name(f".{path.name}.compact")
    with ReportWriter(tmp, report_format, extra_columns) as writer:
        writer.write_all(rows)
    os.replace(tmp, path)
    return Summary(rows)
