"""The verify job: is every row's instance linked to its VPC now, whoever linked it?

Reads the live link state of every row and reports ``linked``, ``not_linked`` or
``linked_elsewhere`` (the message names the VPC), one report row per input row, in the run
report's formats; a row whose read failed is ``failed`` with the read's code. Invalid,
duplicate and conflicting rows are reported as ``run`` reports them. The input may be a
pairs CSV, a run report or a merged view (``PairsReader`` reads all three).

How it reads (``VerifySettings.read_by``):

``instance`` (the default)
    DescribeClassicLinkInstances with up to 100 instance IDs a call, per region: one
    answer gives each instance's VPC, so it tells ``not_linked`` from ``linked_elsewhere``
    at once. ``ceil(N / 100)`` calls for N rows in a region.
``vpc``
    Each VPC's links (its pages, 100 links each), then the rows not found there by
    instance. Never fewer calls: a VPC holds at least the input's rows that are linked to
    it, so its pages number at least ``ceil(linked rows / 100)``, and the rows not linked
    still need a read by instance to be told apart. Kept for comparison, and for a run's
    worker that has its VPCs' links in hand already.

Exit code 0 only when every row is linked to its VPC (duplicates aside, as in ``run``),
1 otherwise, 3 when a call said the run itself is wrong (credentials, endpoint).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from bulk_attach.api.credentials import CredentialsProvider
from bulk_attach.core.outcomes import RowResult, Status, Summary
from bulk_attach.core.prediction import ReadFailure
from bulk_attach.core.rows import Row
from bulk_attach.engine.control import RunControl
from bulk_attach.engine.events import Listener, RowSettled
from bulk_attach.engine.lookups import Lookups, ReadApi
from bulk_attach.engine.sources import RowSource
from bulk_attach.engine.worker import utc_now
from bulk_attach.errors import ExitCode
from bulk_attach.files.paths import ReportPaths
from bulk_attach.files.report import ReportWriter, write_summary
from bulk_attach.session import ReadJobResult, failure_of, open_session, result_row
from bulk_attach.settings import DEFAULT_RATE, AttemptSettings, ClientSettings, ReportFormat

__all__ = ["VERIFY_OK", "ReadBy", "VerifySettings", "link_state", "verify_job"]

VERIFY_OK: frozenset[Status] = frozenset({Status.LINKED, Status.DUPLICATE})
_YIELD_EVERY = 1000


class ReadBy(StrEnum):
    INSTANCE = "instance"
    VPC = "vpc"


@dataclass(frozen=True, slots=True)
class VerifySettings:
    report_path: Path
    report_format: ReportFormat = ReportFormat.CSV
    input_path: Path | None = None  # for the summary only
    rate: float | None = DEFAULT_RATE
    read_by: ReadBy = ReadBy.INSTANCE
    attempts: AttemptSettings = field(default_factory=AttemptSettings)


def link_state(row: Row, linked_to: Sequence[str] | ReadFailure) -> tuple[Status, str, str]:
    """(status, error code, message) of a row, from the VPCs its instance is linked to."""
    if isinstance(linked_to, ReadFailure):
        return Status.FAILED, linked_to.code, f"could not read the link: {linked_to.message}"
    if row.vpc_id in linked_to:
        return Status.LINKED, "", f"linked to {row.vpc_id}"
    if linked_to:
        return Status.LINKED_ELSEWHERE, "", f"linked to {', '.join(sorted(linked_to))}"
    return Status.NOT_LINKED, "", "not linked to any VPC"


async def verify_job(
    rows: RowSource,
    settings: VerifySettings,
    client_settings: ClientSettings,
    credentials: CredentialsProvider,
    *,
    listeners: Sequence[Listener] = (),
    control: RunControl | None = None,
    api: ReadApi | None = None,
) -> ReadJobResult:
    """Read every row's link; write the verify report and its JSON summary."""
    paths = ReportPaths(settings.report_path)
    summary = Summary()
    async with open_session(
        client_settings,
        credentials,
        rate=settings.rate,
        attempts=settings.attempts,
        listeners=listeners,
        control=control,
        api=api,
    ) as session:
        lookups = session.lookups
        if settings.read_by is ReadBy.VPC:
            await _round(
                rows, lookups, lambda row: lookups.vpc_links.request(row.region_id, row.vpc_id)
            )
        await _round(rows, lookups, lambda row: _ask_by_instance(lookups, row))
        with ReportWriter(paths.report, settings.report_format, rows.extra_columns) as report:
            for item in rows:
                if isinstance(item, RowResult):
                    result = item
                else:
                    status, error, message = link_state(item, _linked_to(lookups, item))
                    result = result_row(item, status, code=error, message=message)
                report.write(result)
                summary.add(result)
                session.emit(RowSettled(result))
        control = session.control
        code: int
        if control.reason is not None:
            code = control.reason.exit_code
        else:
            ok = sum(summary.count(status) for status in VERIFY_OK)
            code = ExitCode.OK if ok == summary.total else ExitCode.SOME_ROWS_FAILED
        shown = (
            Status.LINKED,
            Status.NOT_LINKED,
            Status.LINKED_ELSEWHERE,
            Status.FAILED,
            Status.INVALID,
            Status.DUPLICATE,
        )
        data: dict[str, Any] = {
            "command": "verify",
            "total": summary.total,
            "by_status": {status.value: summary.count(status) for status in shown},
            "by_error_code": summary.by_code(),
            "by_vpc": summary.by_vpc(),
            "read_by": settings.read_by.value,
            "calls": session.calls(),
            "exit_code": code,
            "stopped": str(control.reason) if control.reason else None,
            "stop_detail": control.detail or None,
            "started_at": session.started_at,
            "finished_at": utc_now(),
            "duration_seconds": round(session.duration(), 3),
            "report": str(paths.report),
            "input": str(settings.input_path) if settings.input_path else None,
        }
    write_summary(paths.summary, data)
    return ReadJobResult(code, data, paths.report, paths.summary)


async def _round(rows: RowSource, lookups: Lookups, ask: Callable[[Row], object]) -> None:
    """Ask for every valid row, full batches only until the end, then wait for the answers."""
    with lookups.hold():
        for n, item in enumerate(rows, 1):
            if isinstance(item, Row):
                ask(item)
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let full batches leave meanwhile
    await lookups.settled()


def _in_vpc_links(lookups: Lookups, row: Row) -> bool | None:
    future = lookups.vpc_links.peek(row.region_id, row.vpc_id)
    if future is None or not future.done() or future.cancelled() or future.exception():
        return None
    return row.instance_id in future.result()


def _ask_by_instance(lookups: Lookups, row: Row) -> None:
    if not _in_vpc_links(lookups, row):
        lookups.instance_links.request(row.region_id, row.instance_id)


def _linked_to(lookups: Lookups, row: Row) -> tuple[str, ...] | ReadFailure:
    if _in_vpc_links(lookups, row):
        return (row.vpc_id,)
    future = lookups.instance_links.peek(row.region_id, row.instance_id)
    if future is None or future.cancelled():
        return ReadFailure("NotRead", "the job stopped before this row was read", False)
    error = future.exception()
    return failure_of(error) if error is not None else future.result()
