"""Progress on long runs, as event listeners: a tqdm bar on a terminal, log lines elsewhere.

Both listen to the engine's events and keep their own counts; neither can slow the run
(the bar refreshes at most a few times a second, log lines at a fixed interval).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

from bulk_attach.core.outcomes import Status
from bulk_attach.engine.events import Event, RowRetrying, RowSettled, RunStopping, Throttled

__all__ = ["LogProgress", "TqdmProgress", "render_read_summary", "render_summary", "worst_vpcs"]

log = logging.getLogger("bulk_attach.progress")


class _Counts:
    __slots__ = ("by_status", "paces", "retrying", "settled", "started_at")

    def __init__(self) -> None:
        self.by_status: Counter[Status] = Counter()
        self.retrying: set[int] = set()
        self.settled = 0
        self.started_at = time.monotonic()
        # The pace each region/API slowed down to last (requests per second).
        self.paces: dict[str, float] = {}

    def update(self, event: Event) -> None:
        if isinstance(event, Throttled):
            self.paces[f"{event.region}/{event.api}" if event.api else event.region] = event.rate
        elif isinstance(event, RowRetrying):
            self.retrying.add(event.line)
        elif isinstance(event, RowSettled):
            self.retrying.discard(event.result.line)
            self.by_status[event.result.status] += 1
            self.settled += 1

    def fields(self) -> dict[str, int]:
        """Each status under its own name (zeros left out), then the rows being retried."""
        counts = {status.value: self.by_status[status] for status in Status}
        return {name: n for name, n in counts.items() if n} | {"retrying": len(self.retrying)}


class TqdmProgress:
    """A live bar with rate, ETA and counts; for a terminal."""

    _REDRAW_EVERY = 0.2  # seconds: the bar redraws no more often (its mininterval)

    def __init__(self, total: int | None, stream: IO[str]) -> None:
        from tqdm import tqdm  # a terminal's only: plain and quiet runs never import it

        self._counts = _Counts()
        self._bar: Any = tqdm(
            total=total,
            file=stream,
            unit="row",
            dynamic_ncols=True,
            mininterval=self._REDRAW_EVERY,
            smoothing=0.1,
        )
        self._postfix_at = 0.0

    def __call__(self, event: Event) -> None:
        self._counts.update(event)
        if isinstance(event, RowSettled):
            # The counts are formatted when the bar can show them, not for every row.
            now = time.monotonic()
            if now >= self._postfix_at:
                self._postfix_at = now + self._REDRAW_EVERY
                self._bar.set_postfix(self._counts.fields(), refresh=False)
            self._bar.update(1)
        elif isinstance(event, Throttled):
            self._bar.set_description_str(f"throttled: {event.region} at {event.rate:.1f}/s")
        elif isinstance(event, RunStopping):
            self._bar.write(f"stopping: {event.reason}")

    def close(self) -> None:
        self._bar.set_postfix(self._counts.fields(), refresh=False)
        self._bar.close()


class LogProgress:
    """Plain periodic lines, no carriage returns: for cron, CI and log files.

    ``write`` takes each line, and ``figures`` (when given) the same as fields, for a JSON
    log; stops and throttling are the event log's to tell (``logs.EventLog``).
    """

    def __init__(
        self,
        total: int | None,
        write: Callable[[str], None],
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        figures: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._counts = _Counts()
        self._total = total
        self._write = write
        self._figures = figures
        self._interval = interval
        self._clock = clock
        self._next = clock() + interval

    def __call__(self, event: Event) -> None:
        self._counts.update(event)
        if self._clock() >= self._next:
            self._next = self._clock() + self._interval
            self._report()

    def _report(self) -> None:
        if self._figures is None:
            self._write(self.line())
        else:
            self._figures(self.line(), self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        """The progress line's figures: settled, total, rows per second, counts by status."""
        elapsed = max(self._clock() - self._counts.started_at, 1e-9)
        return {
            "settled": self._counts.settled,
            "total": self._total,
            "rows_per_second": round(self._counts.settled / elapsed, 2),
            **self._counts.fields(),
        }

    def line(self) -> str:
        elapsed = max(self._clock() - self._counts.started_at, 1e-9)
        done = self._counts.settled
        total = f"/{self._total}" if self._total is not None else ""
        rate = done / elapsed
        fields = " ".join(f"{name}={value}" for name, value in self._counts.fields().items())
        paces = "".join(
            f", pace {key} {value:.1f}/s" for key, value in sorted(self._counts.paces.items())
        )
        return f"progress: {done}{total} rows settled, {rate:.1f} rows/s, {fields}{paces}"

    def close(self) -> None:
        if self._counts.settled:  # a run that failed before its first row says so elsewhere
            self._report()


# The terminal summary's per-VPC lines (the JSON summary and summary file keep them all).
MAX_VPC_LINES = 20
# Statuses that make a VPC worth a look (rows that did not go as asked).
_BAD = frozenset(
    {"failed", "skipped", "invalid", "linked_elsewhere", "would_fail", "would_skip", "undetermined"}
)


def worst_vpcs(vpcs: dict[str, dict[str, int]], limit: int) -> tuple[list[str], int]:
    """The ``limit`` VPCs with the most rows that did not succeed (then the least headroom),
    and how many more there are."""

    def badness(vpc: str) -> tuple[int, int, str]:
        figures = vpcs[vpc]
        bad = sum(n for name, n in figures.items() if name in _BAD)
        return (-bad, figures.get("headroom", 1 << 62), vpc)

    if len(vpcs) <= limit:
        return list(vpcs), 0
    return sorted(vpcs, key=badness)[:limit], len(vpcs) - limit


def render_summary(summary: dict[str, Any], *, max_vpcs: int = MAX_VPC_LINES) -> str:
    """The end-of-run summary for a person: statuses, error codes, VPC headroom, speed."""
    kept = summary.get("kept_from_earlier_runs", 0)
    ran = summary.get("this_run", {}).get("rows", summary["total"])
    speed = (
        f"{summary['duration_seconds']:.1f}s ({summary['rows_per_second']:.1f} rows/s, "
        f"{summary['attempts']} {summary.get('action', 'attach')} attempts)"
    )
    if kept:
        first = (
            f"{summary['total']} rows in the report: {kept} kept from earlier runs, "
            f"{ran} settled by this run in {speed}"
        )
    else:
        first = f"{summary['total']} rows in {speed}"
    extra = []
    throttled = {key: f for key, f in (summary.get("flow") or {}).items() if f.get("throttled")}
    if throttled:
        paces = ", ".join(
            f"{key} learned {f['learned_limit']}/s ({f['throttled']} throttled)"
            for key, f in throttled.items()
        )
        extra.append(f"  flow control: {paces}")
    return _render(
        summary, first, codes_label="errors", quota=_quota_now, extra=extra, max_vpcs=max_vpcs
    )


def render_read_summary(summary: dict[str, Any], *, max_vpcs: int = MAX_VPC_LINES) -> str:
    """The end-of-job summary of ``plan`` or ``verify`` for a person: counts by outcome,
    per VPC (with the headroom a plan leaves), and the calls made."""
    command = summary.get("command", "plan")
    first = f"{command}: {summary['total']} rows in {summary['duration_seconds']:.1f}s"
    extra = []
    calls = summary.get("calls") or {}
    if calls:
        kinds = ", ".join(f"{action} {n}" for action, n in calls.get("by_action", {}).items())
        extra.append(f"  calls: {calls.get('total', 0)} ({kinds or 'none'})")
    return _render(
        summary,
        first,
        codes_label="codes",
        quota=_quota_after_plan,
        extra=extra,
        max_vpcs=max_vpcs,
    )


_QUOTA_FIGURES = frozenset({"linked", "quota", "headroom", "in_flight", "linked_after"})


def _quota_now(figures: dict[str, int]) -> str:
    linked, headroom = figures.get("linked", 0), figures.get("headroom", 0)
    return f" [links {linked}/{figures['quota']}, headroom {headroom}]"


def _quota_after_plan(figures: dict[str, int]) -> str:
    return (
        f" [links {figures['linked']} now, {figures['linked_after']} after the plan, "
        f"of {figures['quota']}; headroom {figures['headroom']}]"
    )


def _render(
    summary: dict[str, Any],
    first: str,
    *,
    codes_label: str,
    quota: Callable[[dict[str, int]], str],
    extra: list[str],
    max_vpcs: int,
) -> str:
    """The lines every command's summary shares: statuses, codes, the worst VPCs (quota
    figures as ``quota`` words them), the command's own ``extra`` lines, why it stopped
    and the exit code."""
    lines = [first]
    statuses = ", ".join(f"{name} {n}" for name, n in summary["by_status"].items() if n)
    lines.append(f"  status: {statuses or 'none'}")
    if summary["by_error_code"]:
        codes = ", ".join(f"{code} {n}" for code, n in summary["by_error_code"].items())
        lines.append(f"  {codes_label}: {codes}")
    vpcs = summary.get("by_vpc") or {}
    if vpcs:
        shown, more = worst_vpcs(vpcs, max_vpcs)
        lines.append("  per VPC:" + (f" (the {len(shown)} worst of {len(vpcs)})" if more else ""))
        for vpc in shown:
            figures = vpcs[vpc]
            counts = ", ".join(
                f"{name} {n}" for name, n in figures.items() if name not in _QUOTA_FIGURES
            )
            room = quota(figures) if "quota" in figures else ""
            lines.append(f"    {vpc}: {counts}{room}")
        if more:
            lines.append(f"    and {more} more (all of them in the summary file)")
    lines += extra
    if summary.get("stopped"):
        detail = f" ({summary['stop_detail']})" if summary.get("stop_detail") else ""
        lines.append(f"  stopped early: {summary['stopped']}{detail}")
    lines.append(f"  exit code {summary.get('exit_code', '?')}")
    return "\n".join(lines)
