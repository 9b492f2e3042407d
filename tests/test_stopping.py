"""Stopping a run: after the first SIGINT or SIGTERM no request leaves, and the report says
exactly which rows may have changed the service.

Engine tests use a fake API that, like ``EcsClient``, awaits the run's real ``RateGate``
right before "sending" and then holds each request on a "wire" the test releases, so "what
left after the stop" is counted exactly. End-to-end tests send real signals to a
``python -m bulk_attach run`` child talking to an emulator in this process.
"""

from __future__ import annotations

import asyncio
import csv
import gc
import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI_TIMEOUT, CliResult, finish, start_cli

from bulk_attach.api.credentials import Credentials
from bulk_attach.core.attempts import AttemptPolicy
from bulk_attach.core.outcomes import Key, RowResult, Status
from bulk_attach.core.quotas import QuotaLedger
from bulk_attach.core.rows import Row
from bulk_attach.emulator.faults import FaultSettings
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.engine.control import INTERRUPTED_IN_FLIGHT, RunControl, StopReason
from bulk_attach.engine.events import Event, RowRetrying, RunStopping
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.pool import Pool
from bulk_attach.engine.signals import Interrupted, SignalStop, run_command
from bulk_attach.engine.worker import Worker
from bulk_attach.errors import ApiError, EcsError, ExitCode, TransportError
from bulk_attach.files.paths import ReportPaths
from bulk_attach.files.report import read_report, read_started
from bulk_attach.job import run_job
from bulk_attach.settings import AttemptSettings, ClientSettings, RunSettings

REGION = "cn-hangzhou"
# A test that would hang on the old code fails here instead of stalling the suite.
DEADLINE = 20.0


# --- a fake API that goes through the gate, and holds requests "on the wire" ------------------


@dataclass(frozen=True)
class FakeLink:
    instance_id: str
    vpc_id: str


@dataclass
class WireApi:
    """Awaits the gate like ``EcsClient._call``, then counts the request as sent. Attaches
    (when ``hold``) and the reads of ``held_reads`` VPCs stay on the wire until
    ``release()``. ``attach_errors[instance]`` scripts errors for its next attaches."""

    gate: RateGate
    hold: bool = True
    held_reads: set[str] = field(default_factory=set)
    journal: list[Key] = field(default_factory=list)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (action, instance or VPC)
    attach_errors: dict[str, list[EcsError]] = field(default_factory=dict)
    on_attach: Any = None  # called as each attach is sent (a test's hook)
    journaled_when_sent: list[bool] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self._released.set()

    async def until_sent(self, count: int) -> None:
        async with asyncio.timeout(DEADLINE):
            while len(self.sent) < count:
                self._changed.clear()
                await self._changed.wait()

    async def _wire(self, action: str, what: str, hold: bool) -> None:
        self.sent.append((action, what))
        self._changed.set()
        if hold:
            await self._released.wait()

    async def attach_classic_link_vpc(self, region: str, instance_id: str, vpc_id: str) -> str:
        await self.gate(region, "AttachClassicLinkVpc")
        self.journaled_when_sent.append((region, instance_id, vpc_id) in self.journal)
        if self.on_attach is not None:
            self.on_attach()
        await self._wire("attach", instance_id, self.hold)
        script = self.attach_errors.get(instance_id)
        if script:
            raise script.pop(0)
        return f"RID-{instance_id}"

    async def describe_classic_link_instances(
        self, region: str, *, vpc_id: str | None = None, instance_ids: Sequence[str] = ()
    ) -> list[FakeLink]:
        await self.gate(region, "DescribeClassicLinkInstances")
        await self._wire("describe", vpc_id or ",".join(instance_ids), vpc_id in self.held_reads)
        return []


def rows(n: int, vpc: str = "vpc-a") -> list[Row]:
    return [
        Row(line=k + 2, region_id=REGION, instance_id=f"i-{k:04d}", vpc_id=vpc) for k in range(n)
    ]


@dataclass
class Engine:
    api: WireApi
    control: RunControl
    worker: Worker
    events: list[Event]
    results: list[RowResult]
    pool: Pool


def engine(
    rate: float | None,
    *,
    sleep: Any = None,
    retry: AttemptSettings | None = None,
    in_doubt: bool = False,
    concurrency: int = 4,
) -> Engine:
    control = RunControl()
    gate = RateGate(rate)
    api = WireApi(gate)
    events: list[Event] = []
    worker = Worker(
        api,
        gate,
        QuotaLedger(1000),
        AttemptPolicy(retry or AttemptSettings()),
        control,
        emit=events.append,
        rand=lambda: 1.0,
        journal=lambda row: api.journal.append(row.key),
        **({"sleep": sleep} if sleep is not None else {}),
    )
    results: list[RowResult] = []
    extra: dict[str, Any] = {"in_doubt": worker.may_have_sent} if in_doubt else {}
    pool = Pool(
        settle=worker.settle,
        record=results.append,
        skip=worker.skipped,
        control=control,
        concurrency=concurrency,
        **extra,
    )
    return Engine(api, control, worker, events, results, pool)


def by_instance(results: Sequence[RowResult]) -> dict[str, RowResult]:
    return {r.instance_id: r for r in results}


# --- the gate: nothing leaves after the stop --------------------------------------------------


async def test_after_an_interruption_no_request_leaves_the_rate_gate() -> None:
    """At 4 requests/s with 4 workers, rows queue at the gate behind the first attach. The
    run is interrupted while that attach is on the wire: it settles, and the rows that were
    waiting for a token are skipped, never sent (they were sent during the drain before)."""
    e = engine(rate=4.0)
    run = asyncio.create_task(e.pool.run(rows(12)))
    await e.api.until_sent(2)  # the VPC's links, then the first attach
    assert e.api.sent[-1][0] == "attach"
    e.control.stop(StopReason.SIGINT)
    sent_at_stop = list(e.api.sent)
    e.api.release()
    async with asyncio.timeout(DEADLINE):
        await run

    assert e.api.sent == sent_at_stop
    results = by_instance(e.results)
    assert len(results) == 12
    attached = [r for r in results.values() if r.status is Status.ATTACHED]
    assert [r.instance_id for r in attached] == [sent_at_stop[-1][1]]
    others = [r for r in results.values() if r.status is not Status.ATTACHED]
    assert {r.status for r in others} == {Status.SKIPPED}
    assert all(r.message.startswith("not attempted: the run stopped") for r in others)
    # Only the row whose attach left is in the journal: the others only waited for a token.
    assert e.api.journal == [attached[0].key]


async def test_the_journal_is_written_after_admission_and_before_the_attach_leaves() -> None:
    e = engine(rate=None, concurrency=2)
    e.api.hold = False
    async with asyncio.timeout(DEADLINE):
        await e.pool.run(rows(5))
    assert {r.status for r in e.results} == {Status.ATTACHED}
    assert e.api.journaled_when_sent == [True] * 5  # crash safety: journaled before sending
    assert sorted(e.api.journal) == sorted(r.key for r in rows(5))


async def test_a_row_in_a_retry_backoff_is_skipped_not_sent_again() -> None:
    """Throttled, then waiting a long backoff: an interruption ends the wait at once."""
    backoff_started = asyncio.Event()

    async def endless(delay: float) -> None:
        backoff_started.set()
        await asyncio.Event().wait()  # a backoff far longer than the test

    e = engine(rate=None, sleep=endless, concurrency=1)
    e.api.hold = False
    e.api.attach_errors["i-0000"] = [ApiError("Throttling.User", "slow down", http_status=400)]
    run = asyncio.create_task(e.pool.run(rows(1)))
    async with asyncio.timeout(DEADLINE):
        await backoff_started.wait()
    assert any(isinstance(event, RowRetrying) for event in e.events)
    e.control.stop(StopReason.SIGTERM)
    async with asyncio.timeout(DEADLINE):
        await run

    [result] = e.results
    assert result.status is Status.SKIPPED
    assert result.attempts == 1
    assert result.message.startswith("not sent again after 1 attempt(s): the run stopped")
    assert [action for action, _ in e.api.sent] == ["describe", "attach"]


async def test_an_ambiguous_attach_whose_read_back_never_left_is_in_doubt() -> None:
    """The attach left and its answer was lost; the run is interrupted before the read-back
    is sent: the row may be linked, so it is reported in flight (and read back on resume)."""
    e = engine(rate=None, concurrency=1)
    e.api.hold = False
    lost = TransportError("ConnectionLost", "connection lost")
    e.api.attach_errors["i-0000"] = [lost]
    e.api.on_attach = lambda: e.control.stop(StopReason.SIGINT)
    async with asyncio.timeout(DEADLINE):
        await e.pool.run(rows(1))

    [result] = e.results
    assert result.status is Status.SKIPPED
    assert result.message == INTERRUPTED_IN_FLIGHT
    assert [action for action, _ in e.api.sent] == ["describe", "attach"]  # no read-back
    assert e.api.journal == [result.key]


async def test_a_hard_stop_calls_in_doubt_only_rows_whose_attach_left() -> None:
    """Two VPCs: one row's attach is on the wire, the other's VPC read is. A hard stop
    cancels both; only the first may have changed anything."""
    e = engine(rate=None, in_doubt=True, concurrency=2)
    items = [*rows(1, "vpc-a"), Row(line=3, region_id=REGION, instance_id="i-b", vpc_id="vpc-b")]
    e.api.held_reads.add("vpc-b")
    run = asyncio.create_task(e.pool.run(items))
    await e.api.until_sent(3)
    assert sorted(e.api.sent) == [
        ("attach", "i-0000"),
        ("describe", "vpc-a"),
        ("describe", "vpc-b"),
    ]
    e.control.stop(StopReason.SIGINT)
    e.pool.hard_stop()
    async with asyncio.timeout(DEADLINE):
        await run

    results = by_instance(e.results)
    assert results["i-0000"].message == INTERRUPTED_IN_FLIGHT
    assert results["i-b"].status is Status.SKIPPED
    assert results["i-b"].message.startswith("not attempted: the run stopped")


async def test_a_hard_stop_leaves_no_exception_for_asyncio_to_log() -> None:
    """The second Ctrl-C printed "_GatheringFuture exception was never retrieved" and a
    CancelledError traceback: the pool left the gathering future's exception unread."""
    logged: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: logged.append(context))
    try:
        e = engine(rate=None, concurrency=2)
        run = asyncio.create_task(e.pool.run(rows(4)))
        await e.api.until_sent(2)
        e.control.stop(StopReason.SIGINT)
        e.pool.hard_stop()
        async with asyncio.timeout(DEADLINE):
            await run
        del run, e
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert logged == []


# --- SignalStop ------------------------------------------------------------------------------


async def test_a_signal_during_blocking_validation_acts_at_once() -> None:
    control = RunControl()
    release = threading.Event()
    try:
        with SignalStop(control, drain_timeout=30.0) as signals:
            validating = asyncio.create_task(signals.off_loop(release.wait, 60.0))
            await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGTERM)
            with pytest.raises(Interrupted) as caught:
                async with asyncio.timeout(DEADLINE):
                    await validating
    finally:
        release.set()  # let the abandoned thread end
    assert caught.value.exit_code == ExitCode.SIGTERM
    assert control.reason is StopReason.SIGTERM
    assert control.sending_closed


async def test_off_loop_returns_the_value_or_raises_the_error() -> None:
    with SignalStop(RunControl(), drain_timeout=1.0) as signals:
        assert await signals.off_loop(sum, [1, 2, 3]) == 6
        with pytest.raises(ZeroDivisionError):
            await signals.off_loop(divmod, 1, 0)


async def test_a_pool_started_after_an_interruption_sends_nothing() -> None:
    """A signal during start-up: the pool then only records its rows, all skipped."""
    e = engine(rate=None)
    stopping: list[Event] = []
    with SignalStop(e.control, drain_timeout=600.0, emit=stopping.append) as signals:
        os.kill(os.getpid(), signal.SIGINT)
        async with asyncio.timeout(DEADLINE):
            while not e.control.stopping:  # noqa: ASYNC110 - the handler runs on the loop
                await asyncio.sleep(0)
        with signals.draining(e.pool):
            async with asyncio.timeout(DEADLINE):
                await e.pool.run(rows(6))
    assert e.api.sent == []
    assert len(e.results) == 6
    assert {r.status for r in e.results} == {Status.SKIPPED}
    assert [type(event) for event in stopping] == [RunStopping]


def test_run_command_turns_a_stray_signal_into_its_exit_code(capsys: Any) -> None:
    async def terminated_at_start_up() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(DEADLINE)
        return 0

    async def cancelled() -> int:
        raise asyncio.CancelledError

    assert run_command(terminated_at_start_up()) == ExitCode.SIGTERM
    assert run_command(cancelled()) == ExitCode.SIGINT
    assert "Traceback" not in capsys.readouterr().err


# --- end to end: real signals to a child process -------------------------------------------------


def world_for(pairs: Sequence[tuple[str, str, str]]) -> EcsModel:
    model = EcsModel(variant="2018", default_quota=1000)
    for region, instance, vpc in pairs:
        model.add_instance(Instance(instance, region))
        if vpc not in model.vpcs:
            model.add_vpc(Vpc(vpc, region))
    return model


def write_pairs(path: Path, pairs: Sequence[tuple[str, str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("RegionId", "InstanceId", "VpcId"))
        writer.writerows(pairs)
    return path


def make_pairs(count: int, vpcs: int = 4) -> list[tuple[str, str, str]]:
    return [(REGION, f"i-s{n:05d}", f"vpc-{n % vpcs}") for n in range(count)]


async def start_child(
    emu: RunningEmulator, env: dict[str, str], cwd: Path, *args: str | Path
) -> asyncio.subprocess.Process:
    keys = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.access_key_secret,
    }
    return await start_cli("run", *args, "--endpoint", emu.endpoint, env={**env, **keys}, cwd=cwd)


async def until_requests(emu: RunningEmulator, count: int) -> None:
    async with asyncio.timeout(CLI_TIMEOUT):
        # Another process's effect: there is no event to wait on, so poll the emulator.
        while emu.emulator.injector.draws < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def statuses(report: Path) -> Counter[tuple[Status, str]]:
    return Counter((r.status, r.message.split(":")[0]) for r in read_report(report))


def assert_complete(report: Path, total: int, code: int, child: CliResult) -> list[RowResult]:
    assert child.returncode == code, child.stderr
    assert "Traceback" not in child.stderr
    assert "never retrieved" not in child.stderr
    records = list(read_report(report))
    assert sorted(r.line for r in records) == list(range(2, total + 2))
    summary = json.loads(report.with_name(report.name + ".summary.json").read_text())
    assert summary["total"] == total
    assert summary["exit_code"] == code
    return records


async def test_sigint_at_rate_5_sends_nothing_more(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The tester's case: --rate 5, 300 ms latency. Requests reaching the emulator after
    the signal were 14 before the fix; one may still be leaving as the signal lands."""
    pairs = make_pairs(200)
    csv_path = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "out.csv"
    slow = EmulatorSettings(faults=FaultSettings(latency_ms=300))
    async with running_emulator(world_for(pairs), slow) as emu:
        process = await start_child(
            emu, cli_env, tmp_path, csv_path, "--rate", "5", "--report", report
        )
        await until_requests(emu, 8)
        before = emu.emulator.injector.draws
        process.send_signal(signal.SIGINT)
        child = await finish(process)
        after = emu.emulator.injector.draws - before
        attempts = emu.model.snapshot()["attach_attempts"]

    records = assert_complete(report, 200, ExitCode.SIGINT, child)
    assert after <= 1, f"{after} requests reached the service after the signal"
    sent = {r.instance_id for r in records if r.status is Status.ATTACHED}
    assert sent == set(attempts)  # every attach the service saw was answered and reported
    rest = Counter(r.message.split(":")[0] for r in records if r.status is not Status.ATTACHED)
    assert set(rest) == {"not attempted"}


async def test_sigterm_with_every_row_at_the_gate_ends_at_once_and_resumes_cleanly(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """At --rate 0.001 one request leaves and the rest wait for a token for 1000 s. SIGTERM
    used to wait out the drain timeout (600 s here: the test's deadline fails first) and
    call those rows "may or may not exist"; they never left, so a resume sends them plainly."""
    pairs = make_pairs(40)
    csv_path = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "out.csv"
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        process = await start_child(
            emu,
            cli_env,
            tmp_path,
            csv_path,
            "--rate",
            "0.001",
            "--drain-timeout",
            "600",
            "--report",
            report,
        )
        await until_requests(emu, 1)
        process.send_signal(signal.SIGTERM)
        child = await finish(process)
        assert emu.emulator.injector.draws == 1
        records = assert_complete(report, 40, ExitCode.SIGTERM, child)
        assert {r.status for r in records} == {Status.SKIPPED}
        assert all(r.message.startswith("not attempted: the run stopped") for r in records)
        assert read_started(ReportPaths(report).started) == set()

        settings = RunSettings(input_path=csv_path, report_path=report, rate=None)
        client = ClientSettings(endpoint=emu.endpoint, read_timeout=5.0)
        credentials = Credentials(emu.access_key_id, emu.access_key_secret, None, "test")
        resumed = await run_job(settings, client, credentials)
        attempts = emu.model.snapshot()["attach_attempts"]

    assert resumed.exit_code == ExitCode.OK
    assert resumed.summary["read_back_in_flight"] == 0
    assert attempts == {instance: 1 for _, instance, _ in pairs}


async def test_a_second_sigint_prints_no_traceback(tmp_path: Path, cli_env: dict[str, str]) -> None:
    pairs = make_pairs(60)
    csv_path = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "out.csv"
    slow = EmulatorSettings(faults=FaultSettings(latency_ms=20_000))
    async with running_emulator(world_for(pairs), slow) as emu:
        process = await start_child(
            emu,
            cli_env,
            tmp_path,
            csv_path,
            "--rate",
            "0",
            "--concurrency",
            "4",
            "--drain-timeout",
            "600",
            "--report",
            report,
        )
        await until_requests(emu, 4)
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        seen = b""
        async with asyncio.timeout(CLI_TIMEOUT):
            while b"press Ctrl-C again" not in seen:
                line = await process.stderr.readline()
                assert line, seen
                seen += line
        process.send_signal(signal.SIGINT)
        child = await finish(process)

    child = CliResult(child.returncode, child.stdout, seen.decode() + child.stderr)
    records = assert_complete(report, 60, ExitCode.SIGINT, child)
    assert {r.status for r in records} == {Status.SKIPPED}
