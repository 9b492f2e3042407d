"""The plan job: what ``run`` would do with every row, with nothing changed.

Describe calls only, through the run's rate gate and retry rules for reads. The facts are
gathered in batches (``engine/lookups.py``), then each row is predicted in input order
(``core/prediction.py``) and written to the plan report, one row per input row, in the run
report's formats: the predicted status in ``Status``, the code the service would answer in
``ErrorCode``, the evidence in ``Message``. Invalid, duplicate and conflicting rows are
reported as the run reports them.

Calls, for N valid rows over V VPCs in one region:

1. DescribeInstances for every instance (N / 100 calls), DescribeVpcAttribute per VPC (V),
   and each VPC's links, read as the run reads them (V calls, plus one per extra 100 links);
2. for an instance or VPC the row's region does not show: the same lookups in the input's
   other regions (none when everything is where the rows say);
3. the links of the instances that could be attached and are not in a VPC read in step 1
   (at most N / 100 calls): an instance linked to another VPC fails the attach.

Exit code 0 when every row would attach or is already linked (duplicates aside, as in
``run``), 1 otherwise, 3 when a call said the run itself is wrong (credentials, endpoint).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bulk_attach.api.client import InstanceInfo
from bulk_attach.api.credentials import CredentialsProvider
from bulk_attach.core.outcomes import RowResult, Status, Summary
from bulk_attach.core.prediction import (
    DOCUMENTED_VPC_QUOTA,
    Forecast,
    ReadFailure,
    RowFacts,
    SeenInstance,
    SeenVpc,
    Variant,
)
from bulk_attach.core.rows import Row
from bulk_attach.engine.control import RunControl
from bulk_attach.engine.events import Listener, RowSettled
from bulk_attach.engine.lookups import Lookups, ReadApi
from bulk_attach.engine.sources import RowSource
from bulk_attach.engine.worker import utc_now
from bulk_attach.errors import ExitCode
from bulk_attach.files.paths import ReportPaths
from bulk_attach.files.report import ReportWriter, write_summary
from bulk_attach.session import ReadJobResult, ReadSession, failure_of, open_session, result_row
from bulk_attach.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_RATE,
    DEFAULT_VPC_QUOTA,
    AttemptSettings,
    ClientSettings,
    ReportFormat,
)

__all__ = ["PLAN_OK", "PlanSettings", "plan_job"]

V = TypeVar("V")

# The statuses that leave a plan's exit code at 0 (duplicates repeat a row that has its own).
PLAN_OK: frozenset[Status] = frozenset(
    {Status.WOULD_ATTACH, Status.ALREADY_LINKED, Status.DUPLICATE}
)
_YIELD_EVERY = 1000  # rows registered between two passes of the event loop


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """What one plan does. ``vpc_quota``, ``concurrency`` and ``variant`` describe the run
    being planned; ``service_quota`` is the stated assumption about the service's quota."""

    report_path: Path
    report_format: ReportFormat = ReportFormat.CSV
    input_path: Path | None = None  # for the summary only
    rate: float | None = DEFAULT_RATE
    vpc_quota: int = DEFAULT_VPC_QUOTA
    service_quota: int = DOCUMENTED_VPC_QUOTA
    variant: Variant = Variant.CURRENT
    concurrency: int = DEFAULT_CONCURRENCY
    attempts: AttemptSettings = field(default_factory=AttemptSettings)


async def plan_job(
    rows: RowSource,
    settings: PlanSettings,
    client_settings: ClientSettings,
    credentials: CredentialsProvider,
    *,
    listeners: Sequence[Listener] = (),
    control: RunControl | None = None,
    api: ReadApi | None = None,
) -> ReadJobResult:
    """Predict every row of ``rows``; write the plan report and its JSON summary."""
    paths = ReportPaths(settings.report_path)
    forecast = Forecast(
        vpc_quota=settings.vpc_quota,
        service_quota=settings.service_quota,
        variant=settings.variant,
        concurrency=settings.concurrency,
    )
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
        facts = await _Facts.gather(rows, session.lookups)
        with ReportWriter(paths.report, settings.report_format, rows.extra_columns) as report:
            for item in rows:
                result = item if isinstance(item, RowResult) else _predicted(item, forecast, facts)
                report.write(result)
                summary.add(result)
                session.emit(RowSettled(result))
        data = _summary(settings, paths, session, summary, forecast)
    write_summary(paths.summary, data)
    return ReadJobResult(data["exit_code"], data, paths.report, paths.summary)


def _predicted(row: Row, forecast: Forecast, facts: _Facts) -> RowResult:
    prediction = forecast.predict(row, facts.of(row))
    return result_row(row, prediction.status, code=prediction.code, message=prediction.message)


def _summary(
    settings: PlanSettings,
    paths: ReportPaths,
    session: ReadSession,
    summary: Summary,
    forecast: Forecast,
) -> dict[str, Any]:
    control = session.control
    if control.reason is not None:
        code = control.reason.exit_code
    else:
        ok = sum(summary.count(status) for status in PLAN_OK)
        code = ExitCode.OK if ok == summary.total else ExitCode.SOME_ROWS_FAILED
    by_vpc: dict[str, dict[str, Any]] = dict(summary.by_vpc())
    for vpc, figures in forecast.headroom().items():
        by_vpc.setdefault(vpc, {}).update(figures)
    shown = (*PLAN_OK, Status.WOULD_FAIL, Status.WOULD_SKIP, Status.UNDETERMINED, Status.INVALID)
    return {
        "command": "plan",
        "total": summary.total,
        "by_status": {status.value: summary.count(status) for status in shown},
        "by_error_code": summary.by_code(),
        "by_vpc": dict(sorted(by_vpc.items())),
        "calls": session.calls(),
        "assumptions": {
            "service_vpc_quota": settings.service_quota,
            "vpc_quota": settings.vpc_quota,
            "error_codes": settings.variant.value,
            "run_concurrency": settings.concurrency,
        },
        "exit_code": code,
        "stopped": str(control.reason) if control.reason else None,
        "stop_detail": control.detail or None,
        "started_at": session.started_at,
        "finished_at": utc_now(),
        "duration_seconds": round(session.duration(), 3),
        "report": str(paths.report),
        "input": str(settings.input_path) if settings.input_path else None,
    }


# --- the facts ---------------------------------------------------------------------------------


def _valid(rows: RowSource) -> Iterator[Row]:
    return (item for item in rows if isinstance(item, Row))


def _value(future: asyncio.Future[V] | None) -> V | ReadFailure | None:
    """A settled lookup's answer, its failure as a fact, or None when never asked."""
    if future is None:
        return None
    if future.cancelled():
        return ReadFailure("NotRead", "the job stopped before this call was answered", False)
    error = future.exception()
    if error is not None:
        return failure_of(error)
    return future.result()


def _seen(info: InstanceInfo) -> SeenInstance:
    # The client does not read OperationLocks yet: None says "not read" to the prediction.
    reasons = getattr(info, "lock_reasons", None)
    return SeenInstance(
        info.instance_id,
        info.region_id,
        info.status,
        info.network_type,
        tuple(reasons) if reasons is not None else None,
    )


class _Facts:
    """What the lookups found for every row, gathered in three rounds (module doc)."""

    __slots__ = ("_linked", "_lookups", "_regions", "_vpc_regions")

    def __init__(self, lookups: Lookups, regions: frozenset[str]) -> None:
        self._lookups = lookups
        self._regions = tuple(sorted(regions))
        self._vpc_regions: dict[str, set[str]] = {}
        # instance -> VPC, from every VPC's links read: an instance has at most one link.
        self._linked: dict[str, str] = {}

    @classmethod
    async def gather(cls, rows: RowSource, lookups: Lookups) -> _Facts:
        facts = cls(lookups, rows.regions)
        await facts._round(rows, facts._first)
        for _, vpc, links in lookups.vpc_links.answers():
            facts._linked.update(dict.fromkeys(links, vpc))
        await facts._round(rows, facts._elsewhere)
        await facts._round(rows, facts._links)
        return facts

    async def _round(self, rows: RowSource, ask: Callable[[Row], None]) -> None:
        with self._lookups.hold():
            for n, row in enumerate(_valid(rows), 1):
                ask(row)
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # let full batches leave meanwhile
        await self._lookups.settled()

    def _first(self, row: Row) -> None:
        lookups = self._lookups
        lookups.instances.request(row.region_id, row.instance_id)
        lookups.vpcs.request(row.region_id, row.vpc_id)
        lookups.vpc_links.request(row.region_id, row.vpc_id)
        self._vpc_regions.setdefault(row.vpc_id, set()).add(row.region_id)

    def _others(self, row: Row) -> tuple[str, ...]:
        return tuple(region for region in self._regions if region != row.region_id)

    def _elsewhere(self, row: Row) -> None:
        """Look in the input's other regions for what the row's region does not show."""
        lookups = self._lookups
        if _value(lookups.instances.peek(row.region_id, row.instance_id)) is None:
            for region in self._others(row):
                lookups.instances.request(region, row.instance_id)
        if _value(lookups.vpcs.peek(row.region_id, row.vpc_id)) is None:
            for region in self._others(row):
                lookups.vpcs.request(region, row.vpc_id)

    def _links(self, row: Row) -> None:
        """Ask for the instance's link where no VPC read has shown it (check 11)."""
        instance = self._instance(row)
        if not isinstance(instance, SeenInstance) or instance.network_type != "classic":
            return
        links = _value(self._lookups.vpc_links.peek(row.region_id, row.vpc_id))
        if isinstance(links, frozenset) and row.instance_id in links:
            return
        if row.instance_id not in self._linked:
            self._lookups.instance_links.request(instance.region_id, row.instance_id)

    def _instance(self, row: Row) -> SeenInstance | ReadFailure | None:
        lookups = self._lookups
        for region in (row.region_id, *self._others(row)):
            found = _value(lookups.instances.peek(region, row.instance_id))
            if found is not None:
                return found if isinstance(found, ReadFailure) else _seen(found)
        return None

    def _vpc(self, row: Row) -> SeenVpc | ReadFailure | None:
        for region in (row.region_id, *self._others(row)):
            found = _value(self._lookups.vpcs.peek(region, row.vpc_id))
            if isinstance(found, ReadFailure):
                return found
            if found is not None:
                return SeenVpc(found.vpc_id, found.region_id, found.classic_link_enabled)
        return None

    def _linked_to(
        self, row: Row, instance: SeenInstance | ReadFailure | None
    ) -> tuple[str, ...] | ReadFailure | None:
        vpc = self._linked.get(row.instance_id)
        if vpc is not None:
            return (vpc,)
        if not isinstance(instance, SeenInstance):
            return None
        return _value(self._lookups.instance_links.peek(instance.region_id, row.instance_id))

    def of(self, row: Row) -> RowFacts:
        links = _value(self._lookups.vpc_links.peek(row.region_id, row.vpc_id))
        instance = self._instance(row)
        return RowFacts(
            searched=(row.region_id, *self._others(row)),
            instance=instance,
            vpc=self._vpc(row),
            vpc_links=links if links is not None else frozenset(),
            linked_to=self._linked_to(row, instance),
            vpc_regions=len(self._vpc_regions.get(row.vpc_id, ())),
        )
