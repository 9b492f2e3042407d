"""Opening a report for a run: fresh, resumed, replaced by a new retry round, or set aside.

The report is the record of a run. Running the same command again finds it, checks that
it belongs to the same input (path, size, sha256 pinned in ``<report>.meta.json``), and
decides from it: settled rows are kept, rows started but never settled are read back first,
the rest run. At the end, ``compact_report`` rewrites a resumed report so it again holds
exactly one row per input row (the latest outcome of each), in input order.

Deciding (``prepare_report``) only reads; ``ReportOpening.begin`` makes the changes (sets the
old report aside, starts a fresh journal, pins the input) once the run really starts, so
a run that fails before it sends anything leaves the old report where it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from bulk_attach.core.outcomes import REJECTED, SUCCEEDED, RowResult, Status, Summary
from bulk_attach.core.resuming import ResumeState
from bulk_attach.errors import UsageError
from bulk_attach.files.csv_input import InputFingerprint
from bulk_attach.files.paths import ReportPaths
from bulk_attach.files.report import (
    ReportMeta,
    ReportWriter,
    read_meta,
    read_report,
    read_started,
    set_aside,
    write_meta,
)
from bulk_attach.settings import ReportFormat

__all__ = ["Previous", "ReportOpening", "RoundPin", "compact_report", "prepare_report"]


class Previous(StrEnum):
    """What a run does with a report that already exists at its path."""

    RESUME = "resume"  # the same input: keep its settled rows, run the rest (run's default)
    SET_ASIDE = "set_aside"  # --fresh: keep it under another name and start over
    REPLACE = "replace"  # a new retry round: the old round is already in the merged view


@dataclass(frozen=True, slots=True)
class RoundPin:
    """What a retry round pins in its report's metadata (see ``files/rerun.py``)."""

    source: InputFingerprint
    round: int
    selection: str


@dataclass(frozen=True, slots=True)
class ReportOpening:
    """How this run treats its report; ``begin`` and ``finish`` write what it decided."""

    paths: ReportPaths
    resume: ResumeState | None  # None: a fresh report
    meta: ReportMeta  # written by ``begin``
    set_aside_old: bool  # ``begin`` moves the old report away first

    @property
    def resuming(self) -> bool:
        return self.resume is not None

    def begin(self) -> Path | None:
        """The run really starts: set the old report aside (returns where it went), start a
        fresh journal unless resuming, and pin the input."""
        moved = None
        if self.set_aside_old:
            moved = set_aside(self.paths, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"))
        if self.resume is None:
            with contextlib.suppress(FileNotFoundError):
                self.paths.started.unlink()
        write_meta(self.paths.report, self.meta)
        return moved

    def finish(self) -> None:
        """The run ended without being stopped: say so in the metadata."""
        write_meta(self.paths.report, dataclasses.replace(self.meta, finished=True))


def _has_report(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def prepare_report(
    paths: ReportPaths,
    pinned: InputFingerprint,
    report_format: ReportFormat,
    *,
    previous: Previous = Previous.RESUME,
    command: str = "run",
    round_pin: RoundPin | None = None,
) -> ReportOpening:
    """Decide fresh or resume and refuse a changed input; reads only (see ``begin``)."""
    report_path = paths.report
    if report_path.resolve() == Path(pinned.path).resolve():
        raise UsageError(f"{report_path}: the report would overwrite its own input")
    resume: ResumeState | None = None
    exists = _has_report(report_path)
    if exists and previous is not Previous.SET_ASIDE:
        meta = read_meta(report_path)
        if meta is None:
            raise UsageError(
                f"{report_path} exists but was not written by bulk-attach for this input "
                "(no .meta.json beside it); choose another --report, or --fresh to set it aside"
            )
        if previous is Previous.RESUME:
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
            resume = ResumeState(read_report(report_path), read_started(paths.started))
    meta = ReportMeta(
        input_path=str(pinned.path),
        input_size=pinned.size,
        input_sha256=pinned.sha256,
        report_format=report_format.value,
        command=command,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if round_pin is not None:
        meta = dataclasses.replace(
            meta,
            source_path=round_pin.source.path,
            source_size=round_pin.source.size,
            source_sha256=round_pin.source.sha256,
            round=round_pin.round,
            selection=round_pin.selection,
        )
    return ReportOpening(
        paths=paths,
        resume=resume,
        meta=meta,
        set_aside_old=previous is Previous.SET_ASIDE,
    )


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
    paths: ReportPaths,
    report_format: ReportFormat,
    extra_columns: tuple[str, ...],
    *,
    succeeded: frozenset[Status] = SUCCEEDED,
) -> Summary:
    """Rewrite a resumed report: the latest row per identity, in line order; atomic.

    Holds one result per input row in memory; only resumed runs need it.
    """
    path = paths.report
    rows = _latest_rows(path)
    tmp = paths.temporary("compact")
    with ReportWriter(tmp, report_format, extra_columns) as writer:
        writer.write_all(rows)
    os.replace(tmp, path)
    return Summary(rows, succeeded=succeeded)
