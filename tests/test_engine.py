"""The engine (worker + pool) against a fake API: decisions, quota, read-back, stopping.

The fake keeps link state like the service and can be scripted per call, so each safety
rule is checked without HTTP; the end-to-end tests repeat the important ones against the
real emulator.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from bulk_attach.core.attempts import AttemptPolicy
from bulk_attach.core.catalog import LocalCode
from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.quotas import QuotaLedger
from bulk_attach.core.rows import Row
from bulk_attach.engine.control import RunControl, StopReason
from bulk_attach.engine.events import Event, RunStopping
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.pool import INTERRUPTED_IN_FLIGHT, Pool
from bulk_attach.engine.worker import Worker
from bulk_attach.errors import ApiError, EcsError, TransportError
from bulk_attach.settings import AttemptSettings

REGION = "cn-hangzhou"


@dataclass(frozen=True)
class FakeLink:
    instance_id: str
    vpc_id: str


class FakeApi:
    """Link state plus a script: ``faults[instance]`` is a list of errors for its next calls.

    A fault may be ``("commit", error)``: the link is made, then the error is raised, the
    worst case for a call that is not idempotent.
    """

    def __init__(self, links: dict[str, str] | None = None, quota: int = 1000) -> None:
        self.links: dict[str, str] = dict(links or {})
        self.quota = quota
        self.faults: dict[str, list[EcsError | tuple[str, EcsError]]] = {}
        self.attach_calls: Counter[str] = Counter()
        self.describe_calls = 0
        self.in_flight = 0
        self.peak_in_flight = 0

    async def attach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str:
        self.attach_calls[instance_id] += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            script = self.faults.get(instance_id)
            if script:
                fault = script.pop(0)
                if isinstance(fault, tuple):
                    self.links[instance_id] = vpc_id
                    raise fault[1]
                raise fault
            if instance_id in self.links and self.links[instance_id] != vpc_id:
                raise ApiError(
                    "Abs.InvalidInstanceId.MalFormed", "linked elsewhere", http_status=400
                )
            if sum(v == vpc_id for v in self.links.values()) >= self.quota:
                raise ApiError("QuotaExceeded", "quota", http_status=403)
            self.links[instance_id] = vpc_id
            return f"RID-{instance_id}-{self.attach_calls[instance_id]}"
        finally:
            self.in_flight -= 1

    async def describe_classic_link_instances(
        self, region: str, *, vpc_id: str | None = None, instance_ids: Sequence[str] = ()
    ) -> list[FakeLink]:
        self.describe_calls += 1
        await asyncio.sleep(0)
        return [
            FakeLink(i, v)
            for i, v in sorted(self.links.items())
            if (vpc_id is None or v == vpc_id) and (not instance_ids or i in instance_ids)
        ]


def rows(n: int, vpc: str = "vpc-a", start: int = 0) -> list[Row]:
    return [
        Row(line=start + k + 2, region_id=REGION, instance_id=f"i-{start + k:04d}", vpc_id=vpc)
        for k in range(n)
    ]


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


def make(
    api: FakeApi, *, quota: int = 1000, max_attempts: int = 4, throttle_timeout: float = 300.0
):
    control = RunControl()
    events: list[Event] = []
    worker = Worker(
        api,
        RateGate(None),
        QuotaLedger(quota),
        AttemptPolicy(
            AttemptSettings(max_attempts=max_attempts, throttle_timeout=throttle_timeout)
        ),
        control,
        emit=events.append,
        rand=lambda: 0.5,
        sleep=no_sleep,
    )
    return worker, control, events


async def run_all(worker: Worker, control: RunControl, items, concurrency: int = 4):
    results: list[RowResult] = []
    pool = Pool(
        settle=worker.settle,
        record=results.append,
        skip=worker.skipped,
        control=control,
        concurrency=concurrency,
    )
    await pool.run(items)
    return results


async def test_every_row_attached_once_and_concurrency_is_bounded() -> None:
    api = FakeApi()
    worker, control, _ = make(api)
    results = await run_all(worker, control, rows(50), concurrency=5)
    assert sorted(r.line for r in results) == [r.line for r in rows(50)]
    assert {r.status for r in results} == {Status.ATTACHED}
    assert all(r.request_id.startswith("RID-") for r in results)
    assert set(api.attach_calls.values()) == {1}
    assert api.peak_in_flight <= 5


async def test_quota_boundary_998_links_and_5_rows_gives_2_attached_3_skipped() -> None:
    api = FakeApi({f"i-old{k}": "vpc-a" for k in range(998)})
    worker, control, _ = make(api)
    results = await run_all(worker, control, rows(5))
    by_status = Counter(r.status for r in results)
    assert by_status == {Status.ATTACHED: 2, Status.SKIPPED: 3}
    skipped = [r for r in results if r.status is Status.SKIPPED]
    assert all(r.error_code == LocalCode.QUOTA_EXCEEDED for r in skipped)
    # The skipped rows were never sent.
    assert sum(api.attach_calls.values()) == 2


async def test_already_linked_rows_are_not_sent() -> None:
    api = FakeApi({"i-0001": "vpc-a"})
    worker, control, _ = make(api)
    results = {r.instance_id: r for r in await run_all(worker, control, rows(3))}
    assert results["i-0001"].status is Status.ALREADY_LINKED
    assert "i-0001" not in api.attach_calls
    assert results["i-0000"].status is Status.ATTACHED


async def test_commit_then_5xx_is_read_back_and_never_resent() -> None:
    api = FakeApi()
    api.faults["i-0000"] = [("commit", ApiError("InternalError", "boom", http_status=500))]
    api.faults["i-0001"] = [("commit", TransportError(LocalCode.CONNECTION_LOST, "dropped"))]
    worker, control, _ = make(api)
    results = {r.instance_id: r for r in await run_all(worker, control, rows(2))}
    for instance in ("i-0000", "i-0001"):
        assert results[instance].status is Status.ATTACHED
        assert "read-back" in results[instance].message
        assert api.attach_calls[instance] == 1


async def test_ambiguous_without_commit_is_retried_after_read_back() -> None:
    api = FakeApi()
    api.faults["i-0000"] = [ApiError("ServiceUnavailable", "busy", http_status=503)]
    worker, control, _ = make(api)
    (result,) = await run_all(worker, control, rows(1))
    assert result.status is Status.ATTACHED
    assert result.attempts == 2
    assert api.attach_calls["i-0000"] == 2


async def test_throttling_is_retried_and_permanent_errors_settle_with_their_code() -> None:
    api = FakeApi({"i-0001": "vpc-b"})
    api.faults["i-0000"] = [ApiError("Throttling.User", "slow down", http_status=400)] * 2
    worker, control, _events = make(api)
    results = {r.instance_id: r for r in await run_all(worker, control, rows(2))}
    assert results["i-0000"].status is Status.ATTACHED
    assert results["i-0000"].attempts == 3
    assert results["i-0001"].status is Status.FAILED
    assert results["i-0001"].error_code == "Abs.InvalidInstanceId.MalFormed"
    assert results["i-0001"].http_status == 400
    assert control.reason is None


async def test_throttled_attempts_do_not_count_and_a_refusing_service_fails_rows_in_time() -> None:
    # Issue 10: rows failed after 6 throttled attempts while the service accepted others.
    api = FakeApi()
    api.faults["i-0000"] = [ApiError("Throttling", "slow", http_status=400)] * 4
    worker, control, _ = make(api, max_attempts=3)
    (result,) = await run_all(worker, control, rows(1))
    assert result.status is Status.ATTACHED
    assert result.attempts == 5
    # Only a service that has accepted nothing for the whole timeout fails the row.
    api = FakeApi()
    api.faults["i-0000"] = [ApiError("Throttling", "slow", http_status=400)] * 4
    worker, control, _ = make(api, max_attempts=3, throttle_timeout=0.0)
    (result,) = await run_all(worker, control, rows(1))
    assert result.status is Status.FAILED
    assert result.error_code == "Throttling"
    assert api.attach_calls["i-0000"] == 1


async def test_retries_stop_at_max_attempts() -> None:
    api = FakeApi()
    api.faults["i-0000"] = [TransportError(LocalCode.CONNECT_FAILED, "refused")] * 10
    worker, control, _ = make(api, max_attempts=3)
    (result,) = await run_all(worker, control, rows(1))
    assert result.status is Status.FAILED
    assert api.attach_calls["i-0000"] == 3


async def test_fatal_error_stops_the_run_and_skips_the_rest() -> None:
    api = FakeApi()
    api.faults["i-0000"] = [ApiError("SignatureDoesNotMatch", "bad", http_status=400)]
    worker, control, _ = make(api)
    results = await run_all(worker, control, rows(40), concurrency=1)
    assert control.reason is StopReason.FATAL
    assert len(results) == 40
    statuses = Counter(r.status for r in results)
    assert statuses[Status.FAILED] == 1
    assert statuses[Status.SKIPPED] == 39
    assert sum(api.attach_calls.values()) == 1


async def test_api_quota_exceeded_closes_the_vpc() -> None:
    api = FakeApi(quota=3)  # the service's quota is lower than the ledger believes
    worker, control, _ = make(api, quota=1000)
    results = await run_all(worker, control, rows(10), concurrency=1)
    statuses = Counter(r.status for r in results)
    assert statuses[Status.ATTACHED] == 3
    assert statuses[Status.FAILED] == 1  # the one the service refused
    assert statuses[Status.SKIPPED] == 6  # never sent once the VPC was known full
    assert sum(api.attach_calls.values()) == 4


async def test_rejected_rows_pass_through_and_hard_stop_records_every_row() -> None:
    api = FakeApi()
    worker, control, _ = make(api)
    gate = asyncio.Event()
    all_busy = asyncio.Event()
    started = 0

    async def stuck(row: Row) -> RowResult:
        nonlocal started
        started += 1
        if started == 3:
            all_busy.set()
        await gate.wait()
        raise AssertionError("never released")

    results: list[RowResult] = []
    pool = Pool(
        settle=stuck,
        record=results.append,
        skip=worker.skipped,
        control=control,
        concurrency=3,
    )
    invalid = RowResult(line=1, region_id="", instance_id="x", vpc_id="", status=Status.INVALID)
    items: list[Row | RowResult] = [invalid, *rows(20)]
    task = asyncio.create_task(pool.run(items))
    await all_busy.wait()
    assert pool.in_flight == 3
    control.stop(StopReason.SIGINT)
    pool.hard_stop()
    await task
    assert len(results) == 21
    assert sorted(r.line for r in results) == sorted(i.line for i in items)
    interrupted = [r for r in results if r.message == INTERRUPTED_IN_FLIGHT]
    assert len(interrupted) == 3


async def test_a_bug_in_a_worker_is_raised_not_swallowed() -> None:
    control = RunControl()

    async def broken(row: Row) -> RowResult:
        raise RuntimeError("bug")

    pool = Pool(
        settle=broken,
        record=lambda r: None,
        skip=lambda row, msg: pytest.fail("not expected"),
        control=control,
        concurrency=2,
    )
    with pytest.raises(RuntimeError, match="bug"):
        await pool.run(rows(5))


async def test_lanes_run_side_by_side_and_record_every_item_once() -> None:
    api = FakeApi()
    worker, control, _ = make(api)
    started: list[str] = []
    release = asyncio.Event()

    async def settle(row: Row) -> RowResult:
        started.append(row.vpc_id)
        if len(set(started)) == 2:
            release.set()  # both lanes have a row in flight at once
        await release.wait()
        return await worker.settle(row)

    results: list[RowResult] = []
    pool = Pool(
        settle=settle,
        record=results.append,
        skip=worker.skipped,
        control=control,
        concurrency=1,
    )
    invalid = RowResult(line=1, region_id="", instance_id="x", vpc_id="", status=Status.INVALID)
    lane_a: list[Row | RowResult] = [invalid, *rows(5, vpc="vpc-a")]
    lane_b: list[Row | RowResult] = rows(5, vpc="vpc-b", start=100)
    # Were the lanes run one after the other, the first row would wait for ever.
    async with asyncio.timeout(10):
        await pool.run(lane_a, lane_b)
    assert sorted(r.line for r in results) == sorted(i.line for i in (*lane_a, *lane_b))
    assert Counter(r.status for r in results) == {Status.ATTACHED: 10, Status.INVALID: 1}


class UnreachableApi(FakeApi):
    """Connection refused for every call after the first ``answers`` ones."""

    def __init__(self, answers: int = 0) -> None:
        super().__init__()
        self.answers = answers

    async def describe_classic_link_instances(
        self, region: str, *, vpc_id: str | None = None, instance_ids: Sequence[str] = ()
    ) -> list[FakeLink]:
        if self.answers > 0:
            self.answers -= 1
            return await super().describe_classic_link_instances(
                region, vpc_id=vpc_id, instance_ids=instance_ids
            )
        raise TransportError(LocalCode.CONNECT_FAILED, "cannot connect: Connection refused")


async def test_an_endpoint_never_reached_stops_the_run_as_a_configuration_error() -> None:
    api = UnreachableApi()
    worker, control, _ = make(api)
    results = await run_all(worker, control, rows(30), concurrency=2)
    assert control.reason is StopReason.FATAL
    assert "never reached" in control.detail
    assert len(results) == 30
    assert Counter(r.status for r in results)[Status.SKIPPED] >= 28
    assert sum(api.attach_calls.values()) == 0


async def test_connection_failures_after_the_service_answered_fail_rows_not_the_run() -> None:
    api = UnreachableApi(answers=1)  # vpc-a is read; vpc-b never can be
    worker, control, _ = make(api)
    items = [*rows(3, vpc="vpc-a"), *rows(3, vpc="vpc-b", start=10)]
    results = {r.instance_id: r for r in await run_all(worker, control, items, concurrency=1)}
    assert control.reason is None
    assert {results[f"i-{k:04d}"].status for k in range(3)} == {Status.ATTACHED}
    assert {results[f"i-{k:04d}"].error_code for k in range(10, 13)} == {LocalCode.CONNECT_FAILED}


# --- an endpoint that answers, but is not the API ----------------------------------------

ENDPOINT = "http://127.0.0.1:8080"


def not_the_api(status: int) -> TransportError:
    """What the client raises for an answer with neither a RequestId nor a Code."""
    return TransportError(
        LocalCode.INVALID_RESPONSE,
        f"{ENDPOINT} answered DescribeClassicLinkInstances with HTTP {status} "
        "(text/html, 615 bytes), not an ECS API answer (no RequestId)",
        http_status=status,
    )


class StrangerApi(FakeApi):
    """Answers the first ``answers`` describe calls as the API, then raises ``error``
    (once per call) for every describe of a VPC in ``broken`` (all VPCs when None)."""

    def __init__(
        self, error: EcsError, *, answers: int = 0, broken: set[str] | None = None
    ) -> None:
        super().__init__()
        self.error = error
        self.answers = answers
        self.broken = broken
        self.describes_of: Counter[str | None] = Counter()

    async def describe_classic_link_instances(
        self, region: str, *, vpc_id: str | None = None, instance_ids: Sequence[str] = ()
    ) -> list[FakeLink]:
        self.describes_of[vpc_id] += 1
        if self.answers > 0 or (self.broken is not None and vpc_id not in self.broken):
            self.answers -= 1
            return await super().describe_classic_link_instances(
                region, vpc_id=vpc_id, instance_ids=instance_ids
            )
        self.describe_calls += 1
        await asyncio.sleep(0)
        raise self.error


def spread(n: int, vpcs: int) -> list[Row]:
    return [
        Row(line=k + 2, region_id=REGION, instance_id=f"i-{k:04d}", vpc_id=f"vpc-{k % vpcs}")
        for k in range(n)
    ]


@pytest.mark.parametrize("vpcs", [1, 4, 200])
@pytest.mark.parametrize(
    "error",
    [
        not_the_api(200),  # a web page, an empty 200, another product's JSON
        not_the_api(404),  # nginx's 404 page: PERMANENT by its status, yet not the row's fault
        not_the_api(502),
        TransportError(LocalCode.INVALID_RESPONSE, f"malformed HTTP answer from {ENDPOINT}"),
    ],
    ids=["200", "404", "502", "not-http"],
)
async def test_answers_that_are_not_the_api_stop_the_run_within_a_few_requests(
    error: TransportError, vpcs: int
) -> None:
    api = StrangerApi(error)
    worker, control, events = make(api, max_attempts=6)
    results = await run_all(worker, control, spread(200, vpcs), concurrency=16)
    assert control.reason is StopReason.FATAL
    assert ENDPOINT in control.detail
    assert "not the API" in control.detail
    assert len(results) == 200
    # A handful of reads, not max_attempts for every row (1200 before).
    assert sum(api.describes_of.values()) <= 16 + 3
    assert sum(api.attach_calls.values()) == 0
    statuses = Counter(r.status for r in results)
    assert statuses[Status.FAILED] <= min(vpcs, 16)  # only rows whose own read was refused
    assert statuses[Status.SKIPPED] == 200 - statuses[Status.FAILED]
    # Said at once (the progress listeners print it), not only in the summary.
    stopping = [e for e in events if isinstance(e, RunStopping)]
    assert len(stopping) == 1
    assert ENDPOINT in stopping[0].reason


@pytest.mark.parametrize("vpcs", [1, 4, 200])
@pytest.mark.parametrize(
    "code", [LocalCode.CONNECTION_LOST, LocalCode.TIMEOUT, LocalCode.CONNECT_FAILED]
)
async def test_an_endpoint_that_never_answers_stops_the_run(code: LocalCode, vpcs: int) -> None:
    """A server that closes every connection (or never answers) gets no answer counted
    for the API; the run stops after a bounded number of calls, not 6 per row."""
    api = StrangerApi(TransportError(code, f"connection to {ENDPOINT} lost"))
    worker, control, _ = make(api, max_attempts=6)
    results = await run_all(worker, control, spread(200, vpcs), concurrency=16)
    assert control.reason is StopReason.FATAL
    assert "never reached" in control.detail
    assert ENDPOINT in control.detail
    assert len(results) == 200
    assert sum(api.describes_of.values()) <= 16 + 12
    assert sum(api.attach_calls.values()) == 0


async def test_odd_answers_after_the_api_answered_fail_rows_not_the_run() -> None:
    api = StrangerApi(not_the_api(200), broken={"vpc-b"})
    worker, control, _ = make(api, max_attempts=4)
    items = [*rows(3, vpc="vpc-a"), *rows(5, vpc="vpc-b", start=10)]
    results = {r.instance_id: r for r in await run_all(worker, control, items, concurrency=1)}
    assert control.reason is None
    assert {results[f"i-{k:04d}"].status for k in range(3)} == {Status.ATTACHED}
    failed = [results[f"i-{k:04d}"] for k in range(10, 15)]
    assert {r.status for r in failed} == {Status.FAILED}
    assert {r.error_code for r in failed} == {LocalCode.INVALID_RESPONSE}
    assert len({r.message for r in failed}) == 1
    # vpc-b was read max_attempts times for its first row; its other four rows failed at
    # once with the same error instead of reading it again (20 reads before).
    assert api.describes_of["vpc-b"] == 4


async def test_a_vpc_whose_read_failed_is_not_read_again_by_each_of_its_rows() -> None:
    api = StrangerApi(
        ApiError("InvalidVpcId.NotFound", "no such VPC", http_status=404, request_id="R-1"),
        broken={"vpc-gone"},
    )
    worker, control, _ = make(api)
    items = [*rows(2, vpc="vpc-a"), *rows(6, vpc="vpc-gone", start=10)]
    results = await run_all(worker, control, items, concurrency=4)
    assert control.reason is None
    gone = [r for r in results if r.vpc_id == "vpc-gone"]
    assert {r.status for r in gone} == {Status.FAILED}
    assert {r.error_code for r in gone} == {"InvalidVpcId.NotFound"}
    assert api.describes_of["vpc-gone"] == 1
    assert "vpc-gone InvalidVpcId.NotFound" in repr(worker.links)


async def test_a_pair_listed_twice_is_sent_once_unless_the_source_promises_unique_rows() -> None:
    # A library caller's list may repeat a pair: the worker remembers the links it made,
    # so the repeat is already_linked and not sent. A validated file cannot repeat one
    # (its reader rejects duplicates), so that memory is spared there: nothing is kept.
    twice = [*rows(1), Row(line=9, region_id=REGION, instance_id="i-0000", vpc_id="vpc-a")]
    api = FakeApi()
    worker, control, _ = make(api)
    results = await run_all(worker, control, twice, concurrency=1)
    assert [r.status for r in results] == [Status.ATTACHED, Status.ALREADY_LINKED]
    assert api.attach_calls["i-0000"] == 1

    control = RunControl()
    unique = Worker(
        FakeApi(),
        RateGate(None),
        QuotaLedger(1000),
        AttemptPolicy(AttemptSettings()),
        control,
        emit=lambda _: None,
        unique_instances=True,
    )
    done = await run_all(unique, control, rows(20), concurrency=4)
    assert {r.status for r in done} == {Status.ATTACHED}
    assert not unique.links.is_linked("vpc-a", "i-0000")  # not remembered
