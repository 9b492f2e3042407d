"""Every path that belongs to a report, derived in one place.

A report ``R`` has sidecars beside it, named ``R`` plus a suffix::

    R.meta.json     which input R belongs to; resume refuses a changed input
    R.started       journal of rows handed to the service (resume reads them back)
    R.summary.json  the run's machine-readable summary
    R.lock          held (flock) by the one run writing R; never moved or deleted

``retry R`` writes two more files of its own, named after R's *family stem* (R's name less
``.report.<format>``, less any ``.retry``/``.merged`` the retry's own names added, so
names never stack up)::

    <stem>.retry.report.<fmt>    the rows this retry round sent, and their outcomes
    <stem>.merged.report.<fmt>   every row of R once: its latest outcome and its history

A ``run`` whose input is a report writes ``<stem>.rerun.report.<fmt>``; a plain input
``pairs.csv`` gives ``pairs.report.<fmt>``. So ``run`` and ``retry`` of the same report
never write the same file. ``plan``, ``verify`` and ``detach`` (roll back) write
``<stem>.<command>.report.<fmt>``, from a report of the job or from its pairs CSV alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bulk_attach.settings import ReportFormat

__all__ = [
    "ReportPaths",
    "command_report_for",
    "family_stem",
    "merged_view_for",
    "retry_report_for",
    "run_report_for",
]

_REPORT_MARK = ".report"
# What retry adds to a family's names; stripped so that retrying them does not stack up.
_RETRY_MARKS = (".retry", ".merged")


@dataclass(frozen=True, slots=True)
class ReportPaths:
    """A report and its sidecars."""

    report: Path

    def _beside(self, suffix: str) -> Path:
        return self.report.with_name(self.report.name + suffix)

    @property
    def meta(self) -> Path:
        return self._beside(".meta.json")

    @property
    def started(self) -> Path:
        return self._beside(".started")

    @property
    def summary(self) -> Path:
        return self._beside(".summary.json")

    @property
    def lock(self) -> Path:
        return self._beside(".lock")

    def temporary(self, purpose: str) -> Path:
        """A hidden file beside the report for an atomic rewrite (``os.replace`` onto it)."""
        return self.report.with_name(f".{self.report.name}.{purpose}")

    @property
    def sidecars(self) -> tuple[Path, ...]:
        """The files that move with the report when it is set aside (the lock stays)."""
        return (self.meta, self.started, self.summary)

    def set_aside_as(self, tag: str) -> ReportPaths:
        """Where ``--fresh`` moves this report: ``<stem>.<tag><suffix>``."""
        report = self.report
        return ReportPaths(report.with_name(f"{report.stem}.{tag}{report.suffix}"))

    def __str__(self) -> str:
        return str(self.report)


def _without_report_suffix(name: str) -> tuple[str, bool]:
    """``pairs.report.csv`` -> (``pairs``, True); ``pairs.csv`` -> (``pairs``, False)."""
    for fmt in ReportFormat:
        suffix = f"{_REPORT_MARK}.{fmt.value}"
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], True
    stem = Path(name).stem if "." in name.lstrip(".") else name
    return stem, False


def family_stem(report: Path) -> str:
    """The stem retry names its files after: ``pairs.retry.report.csv`` -> ``pairs``."""
    stem, _ = _without_report_suffix(report.name)
    while stem.endswith(_RETRY_MARKS) and "." in stem:
        stem = stem.rsplit(".", 1)[0]
    return stem


def run_report_for(input_path: Path, fmt: ReportFormat) -> Path:
    """``run``'s default report: ``pairs.csv`` -> ``pairs.report.csv``; a report given as
    input -> ``<stem>.rerun.report.csv`` (never the input itself)."""
    stem, is_report = _without_report_suffix(input_path.name)
    if is_report:
        stem += ".rerun"
    return input_path.with_name(f"{stem}{_REPORT_MARK}.{fmt.value}")


def _family_file(source: Path, mark: str, fmt: ReportFormat, *, whole_stem: bool) -> Path:
    stem = _without_report_suffix(source.name)[0] if whole_stem else family_stem(source)
    return source.with_name(f"{stem}{mark}{_REPORT_MARK}.{fmt.value}")


def retry_report_for(source: Path, fmt: ReportFormat, *, whole_stem: bool = False) -> Path:
    """``retry``'s default report for a source report (one file, reused round after round).

    ``whole_stem`` keeps the source's stem as it is: for a source report whose own name
    ends like retry's (the report of ``a.retry.csv``), so that the two never collide.
    """
    return _family_file(source, ".retry", fmt, whole_stem=whole_stem)


def merged_view_for(source: Path, fmt: ReportFormat, *, whole_stem: bool = False) -> Path:
    """The merged view of a source report: its rows' latest outcomes across every retry."""
    return _family_file(source, ".merged", fmt, whole_stem=whole_stem)


def command_report_for(input_path: Path, command: str, fmt: ReportFormat) -> Path:
    """The default report of ``plan``, ``verify`` or ``detach``: ``pairs.csv`` or
    ``pairs.report.csv`` (or its retry report or merged view) -> ``pairs.<command>.report.csv``:
    each command of one job has one report beside its input."""
    return input_path.with_name(f"{family_stem(input_path)}.{command}{_REPORT_MARK}.{fmt.value}")
