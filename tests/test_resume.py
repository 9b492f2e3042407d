"""Resume after an interruption: kill -9 at random moments, a torn report, a changed input,
identity matching, and rows left in flight by a hard stop.

The product's promise (issue 5): running the same command again continues where it
stopped; settled rows are not sent again; rows in flight when the run died are read back
before anything is sent; every input row ends with exactly one report row. The emulator is
the witness: ``GET /_emulator/state`` counts every executed attach per instance and every
*repeat* attach (an attach that reached an instance already linked to that VPC), which is
exactly what a careless resume would produce.
"""

from __future__ import annotations

import asyncio
import csv
import json
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import emulator_settings

from bulk_attach.api.credentials import Credentials
from bulk_attach.core.outcomes import SUCCEEDED, Key, RowResult, Status
from bulk_attach.core.resuming import is_settled
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import RunningEmulator, running_emulator
from bulk_attach.engine.pool import INTERRUPTED_IN_FLIGHT
from bulk_attach.errors import ExitCode
from bulk_attach.files.paths import ReportPaths
from bulk_attach.files.report import ReportWriter, read_report
from bulk_attach.job import JobResult, run_job
from bulk_attach.settings import AttemptSettings, ClientSettings, RunSettings

REGION = "cn-hangzhou"
AK = "LTAIresumetest0000000000"
SECRET = "resume-test-secret-0123456789ab"
FAST = AttemptSettings(base_delay=0.005, max_delay=0.05, throttle_base_delay=0.005)
READ_BACK = "sent by an interrupted run; confirmed linked by read-back"
# A child process or a wait may take at most this long; a hang fails the test, not the suite.
DEADLINE = 60.0

Pair = tuple[str, str, str]  # (region, instance, vpc)


# --- helpers ---------------------------------------------------------------------------


def make_pairs(count: int, vpcs: int, prefix: str = "i-r") -> list[Pair]:
    return [(REGION, f"{prefix}{n:05d}", f"vpc-r{n % vpcs}") for n in range(count)]


def write_pairs(path: Path, pairs: Iterable[Pair]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["RegionId", "InstanceId", "VpcId"])
        writer.writerows(pairs)
    return path


def world_for(pairs: Iterable[Pair]) -> EcsModel:
    model = EcsModel()
    for region, instance, vpc in pairs:
        model.add_instance(Instance(instance, region))
        if vpc not in model.vpcs:
            model.add_vpc(Vpc(vpc, region))
    return model


def settings_for(input_path: Path, report: Path, **changes: Any) -> RunSettings:
    options: dict[str, Any] = {"rate": None, "attempts": FAST, "concurrency": 8, "quiet": True}
    return RunSettings(input_path=input_path, report_path=report, **{**options, **changes})


async def run_in_process(emu: RunningEmulator, settings: RunSettings) -> JobResult:
    client = ClientSettings(endpoint=emu.endpoint, read_timeout=5.0)
    credentials = Credentials(AK, SECRET, None, "test")
    return await run_job(settings, client, credentials)


@asynccontextmanager
async def emulator(model: EcsModel, **faults: Any) -> Any:
    options = emulator_settings(host="127.0.0.1", port=0, access_keys={AK: SECRET}, **faults)
    async with running_emulator(model, options) as emu:
        yield emu


def fetch_state(endpoint: str) -> dict[str, Any]:
    """The emulator's control endpoint (no proxy: the emulator is on 127.0.0.1)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{endpoint}/_emulator/state", timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def links_of(state: dict[str, Any]) -> set[tuple[str, str]]:
    return {(link["InstanceId"], link["VpcId"]) for link in state["links"]}


def attach_calls(state: dict[str, Any]) -> int:
    """Every AttachClassicLinkVpc request that reached the emulator, whatever its answer."""
    return sum(state["calls"].get("AttachClassicLinkVpc", {}).values())


def one_row_per_input(rows: Sequence[RowResult], pairs: Sequence[Pair]) -> dict[int, RowResult]:
    """Lines 2..len(pairs)+1, each exactly once and with the identity of that input line."""
    by_line: dict[int, RowResult] = {}
    for row in rows:
        assert row.line not in by_line, f"line {row.line} reported twice"
        by_line[row.line] = row
    assert sorted(by_line) == list(range(2, len(pairs) + 2))
    for line, row in by_line.items():
        assert row.key == pairs[line - 2], f"line {line}: {row.key} != {pairs[line - 2]}"
    return dict(sorted(by_line.items()))  # in line order (the report is in settle order)


def complete_journal_end(path: Path) -> int:
    """Byte offset just after the journal's last complete line (0 when there is none)."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    return data.rfind(b"\n") + 1


def journal_keys(path: Path, start: int = 0) -> set[Key]:
    """Keys of the complete journal lines from byte ``start`` on."""
    if not path.exists():
        return set()
    keys: set[Key] = set()
    with path.open("rb") as file:
        file.seek(start)
        for raw in file:
            if not raw.endswith(b"\n"):
                break
            _, region, instance, vpc = raw.decode().rstrip("\n").split("\t")
            keys.add((region, instance, vpc))
    return keys


def settled_keys(report: Path) -> set[Key]:
    if not report.exists():
        return set()
    return {r.key for r in read_report(report) if is_settled(r)}


def report_records(report: Path) -> int:
    """Physical records in a CSV report so far (a trigger only, not an assertion)."""
    try:
        return max(report.read_bytes().count(b"\r\n") - 1, 0)
    except FileNotFoundError:
        return 0


# --- the kill -9 test ------------------------------------------------------------------

KILL_ROWS = 2400
KILL_VPCS = 6
KILL_TRIALS = 6
KILL_SEED = 20240605


@dataclass
class Kill:
    """What one SIGKILL left behind."""

    trial: int
    settled_before: int
    settled_after: int
    in_flight: set[Key]  # started in this run, not settled at the kill
    unsettled: set[Key]  # started in any run, not settled at the kill
    linked_in_flight: set[Key] = field(default_factory=set)  # unsettled, yet linked at the kill


@contextmanager
def emulator_process(pairs_csv: Path, env: dict[str, str], seed: int, log: Path) -> Iterator[str]:
    """``python -m bulk_attach emulator`` on 127.0.0.1, port 0, with latency and faults."""
    command = [
        sys.executable,
        "-m",
        "bulk_attach",
        "emulator",
        "--port",
        "0",
        "--world-from",
        str(pairs_csv),
        "--latency-ms",
        "5",
        "--jitter-ms",
        "5",
        "--commit-then-drop-rate",
        "0.03",
        "--unavailable-rate",
        "0.03",
        "--seed",
        str(seed),
        "--access-key-id",
        AK,
        "--access-key-secret",
        SECRET,
    ]
    with log.open("wb") as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, env=env, text=True
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
            assert found, f"the emulator did not start: {first!r} {log.read_text()}"
            yield found.group(1)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def run_command(pairs_csv: Path, report: Path, endpoint: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bulk_attach",
        "run",
        str(pairs_csv),
        "--endpoint",
        endpoint,
        "--rate",
        "0",
        "--concurrency",
        "32",
        "--report",
        str(report),
        "-q",
    ]


def start_run(
    pairs_csv: Path, report: Path, endpoint: str, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            run_command(pairs_csv, report, endpoint),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env,
        )


def wait_for_records(process: subprocess.Popen[bytes], report: Path, target: int) -> None:
    """Poll until the report holds ``target`` records or the run ends (bounded)."""
    give_up = time.monotonic() + DEADLINE
    while process.poll() is None and report_records(report) < target:
        if time.monotonic() > give_up:
            process.kill()
            pytest.fail(f"the run made no progress to {target} records")
        time.sleep(0.003)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_to_completion(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Kill -9 a run of a few thousand rows several times, resume each time, then finish.

    The emulator runs in its own process (latency, 3% 503 before execution, 3% attach
    committed then the connection dropped), so only the run dies. At the end: one report
    row per input row; the succeeded rows are exactly the emulator's links; no attach ever
    reached an instance already linked (repeat attaches: 0); an instance received more
    than one executed attach only if it was in flight at a kill; and every row in flight at
    a kill whose link existed was settled by reading it back, not by sending again.
    """
    rng = random.Random(KILL_SEED)
    pairs = make_pairs(KILL_ROWS, KILL_VPCS, prefix="i-k")
    pairs_csv = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "report.csv"
    journal = ReportPaths(report).started
    run_log = tmp_path / "runs.log"
    env = {
        **cli_env,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": AK,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
    }
    kills: list[Kill] = []
    with emulator_process(pairs_csv, env, KILL_SEED, tmp_path / "emulator.log") as endpoint:
        for trial in range(1, KILL_TRIALS + 1):
            offset = complete_journal_end(journal)
            before = len(settled_keys(report))
            remaining = KILL_ROWS - before
            # A random moment, measured in progress rather than seconds so that every trial
            # dies mid-run whatever the machine's speed.
            target = report_records(report) + rng.randint(1, min(350, remaining - 100))
            process = start_run(pairs_csv, report, endpoint, env, run_log)
            wait_for_records(process, report, target)
            time.sleep(rng.uniform(0.0, 0.02))
            assert process.poll() is None, "the run ended before it could be killed"
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=DEADLINE) == -signal.SIGKILL
            state = fetch_state(endpoint)
            settled = settled_keys(report)
            kill = Kill(
                trial=trial,
                settled_before=before,
                settled_after=len(settled),
                in_flight=journal_keys(journal, offset) - settled,
                unsettled=journal_keys(journal) - settled,
            )
            kill.linked_in_flight = {k for k in kill.unsettled if (k[1], k[2]) in links_of(state)}
            kills.append(kill)
        final = subprocess.run(
            run_command(pairs_csv, report, endpoint),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=DEADLINE,
            check=False,
        )
        state = fetch_state(endpoint)
    assert final.returncode == ExitCode.OK, final.stderr

    # Every trial made progress and died with rows in flight.
    assert all(k.settled_after > k.settled_before for k in kills)
    # 1. Exactly one final report row per input row, by line and by identity.
    rows = one_row_per_input(list(read_report(report)), pairs)
    not_ok = [r for r in rows.values() if r.status not in SUCCEEDED]
    assert not not_ok, not_ok[:5]
    # 2. The succeeded rows are the emulator's links, exactly (the world had none).
    assert {(r.instance_id, r.vpc_id) for r in rows.values()} == links_of(state)
    # Every link was made by one of these runs and journaled first, so none is reported
    # already_linked: a row linked behind the journal's back would show up here.
    assert [r for r in rows.values() if r.status is Status.ALREADY_LINKED] == []
    # 3. No attach ever reached an instance already linked to that VPC.
    assert state["total_repeat_attaches"] == 0, state["repeat_attaches"]
    attempts: dict[str, int] = state["attach_attempts"]
    in_flight_ever = set().union(*(k.in_flight for k in kills))
    assert set().union(*(k.unsettled for k in kills)) == in_flight_ever
    more_than_once = {i for i, n in attempts.items() if n > 1}
    assert more_than_once <= {k[1] for k in in_flight_ever}
    assert all(attempts.get(r.instance_id, 0) >= 1 for r in rows.values())
    # 4. Rows in flight at a kill: each one ends attached; those already linked at the kill
    #    were settled by reading back (no second attach), and only such rows were.
    read_back = {r.key for r in rows.values() if r.message == READ_BACK}
    assert read_back <= in_flight_ever
    for kill in kills:
        assert kill.linked_in_flight <= read_back, kill.trial
    for key in in_flight_ever:
        row = next(r for r in rows.values() if r.key == key)
        assert row.status is Status.ATTACHED, row
        if row.message == READ_BACK:
            assert row.attempts == 0
    # The last resume read back exactly the rows the last kill left unsettled.
    summary = json.loads(ReportPaths(report).summary.read_text())
    assert summary["resumed"] is True
    assert summary["read_back_in_flight"] == len(kills[-1].unsettled)

    total_attempts = sum(attempts.values())
    print(
        f"\nkill -9: {len(kills)} trials over {KILL_ROWS} rows ({KILL_VPCS} VPCs)\n"
        f"  rows settled before each kill: {[k.settled_after for k in kills]}\n"
        f"  rows in flight at each kill (journaled by that run, not settled): "
        f"{[len(k.in_flight) for k in kills]} (total {sum(len(k.in_flight) for k in kills)})\n"
        f"  rows unsettled at each kill (journaled by any run, not settled): "
        f"{[len(k.unsettled) for k in kills]}; of those, linked at the kill: "
        f"{[len(k.linked_in_flight) for k in kills]}\n"
        f"  rows resolved by read-back (no second attach): {len(read_back)}\n"
        f"  last resume's read_back_in_flight: {summary['read_back_in_flight']}\n"
        f"  repeat attaches: {state['total_repeat_attaches']}\n"
        f"  executed attach attempts: {total_attempts} for {KILL_ROWS} rows "
        f"(instances with more than one: {len(more_than_once)}); "
        f"AttachClassicLinkVpc requests incl. 503 and drops: {attach_calls(state)}\n"
        f"  faults injected: {state['faults']['injected']}"
    )


# --- a torn report ---------------------------------------------------------------------


async def test_torn_last_row_is_recovered_and_read_back_not_resent(tmp_path: Path) -> None:
    """kill -9 mid-write: the report ends inside a row. The resume cuts the fragment off,
    and the rows the report lost (the torn one and three whole rows after the last intact
    one) are in the started journal, so they are read back, found linked, and reported
    attached without a second attach."""
    pairs = make_pairs(40, 2)
    pairs_csv = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "report.csv"
    async with emulator(world_for(pairs)) as emu:
        first = await run_in_process(emu, settings_for(pairs_csv, report))
        assert first.exit_code == ExitCode.OK
        written = list(read_report(report))
        data = report.read_bytes()
        records = data.split(b"\r\n")  # header, 40 rows, "" (messages hold no newline)
        assert len(records) == 42
        kept = b"\r\n".join(records[:37]) + b"\r\n"
        torn = records[37][: len(records[37]) // 2]
        report.write_bytes(kept + torn)
        lost = {r.key for r in written[36:]}
        assert len(lost) == 4
        assert len(list(read_report(report))) == 36  # the fragment is dropped, not fatal

        second = await run_in_process(emu, settings_for(pairs_csv, report))
        state = emu.model.snapshot()

    assert second.exit_code == ExitCode.OK
    assert second.summary["resumed"] is True
    assert second.summary["read_back_in_flight"] == 4
    rows = one_row_per_input(list(read_report(report)), pairs)
    assert {r.key for r in rows.values() if r.message == READ_BACK} == lost
    assert all(r.status is Status.ATTACHED for r in rows.values())
    # Nothing was sent again: one executed attach per instance, no repeat.
    assert state["attach_attempts"] == {p[1]: 1 for p in pairs}
    assert state["total_repeat_attaches"] == 0
    # The rows the first run settled are kept as they were (same RequestId).
    before = {r.key: r for r in written[:36]}
    for row in rows.values():
        if row.key in before:
            assert row == before[row.key]


# --- a changed input, --fresh ----------------------------------------------------------


async def test_changed_input_is_refused_and_fresh_starts_over(tmp_path: Path, run_cli: Any) -> None:
    pairs = make_pairs(10, 2)
    added = (REGION, "i-radded", "vpc-r0")
    pairs_csv = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "report.csv"
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    async with emulator(world_for([*pairs, added])) as emu:
        common = ("--endpoint", emu.endpoint, "--rate", "0", "--report", report, "-q")
        first = await run_cli("run", pairs_csv, *common, env_extra=env)
        assert first.returncode == ExitCode.OK, first.stderr
        old_report = report.read_bytes()
        calls = emu.emulator.state()["calls"]

        write_pairs(pairs_csv, [*pairs, added])  # the input changes
        refused = await run_cli("run", pairs_csv, *common, env_extra=env)
        assert refused.returncode == ExitCode.USAGE
        assert "cannot resume" in refused.stderr
        assert "the input changed" in refused.stderr
        assert "--fresh" in refused.stderr
        # Nothing was sent and the report is untouched.
        assert emu.emulator.state()["calls"] == calls
        assert report.read_bytes() == old_report

        fresh = await run_cli("run", pairs_csv, *common, "--fresh", env_extra=env)
        assert fresh.returncode == ExitCode.OK, fresh.stderr
        state = emu.model.snapshot()

    summary = json.loads(ReportPaths(report).summary.read_text())
    assert summary["resumed"] is False
    aside = Path(summary["previous_report"])
    assert aside.parent == tmp_path
    assert aside != report
    assert aside.read_bytes() == old_report  # noqa: ASYNC240 - kept under another name
    rows = one_row_per_input(list(read_report(report)), [*pairs, added])
    # Read from the live state: the old rows are linked, so reported and not sent again.
    assert [r.status for r in rows.values()] == [Status.ALREADY_LINKED] * 10 + [Status.ATTACHED]
    assert state["attach_attempts"] == {p[1]: 1 for p in [*pairs, added]}
    assert state["total_repeat_attaches"] == 0


# --- identity, never position ----------------------------------------------------------


async def test_resume_matches_rows_by_identity_not_position(tmp_path: Path) -> None:
    """A report is written in the order rows settle, not in input order. Keep a scattered
    subset of a finished run's rows, in reverse order, as if the run had died after
    settling only those: the resume keeps exactly those rows (same RequestId, never sent
    again) and runs exactly the others, whatever their position in either file."""
    pairs = make_pairs(30, 3)
    pairs_csv = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "report.csv"
    async with emulator(world_for(pairs)) as emu:
        first = await run_in_process(emu, settings_for(pairs_csv, report))
        assert first.exit_code == ExitCode.OK
        done = sorted(read_report(report), key=lambda r: r.line)
        kept = [r for r in done if r.line % 3 == 0 or r.line in (5, 29)][::-1]
        dropped = [r for r in done if r not in kept]
        # Rewrite the report with only the kept rows, reversed; forget the rest entirely
        # (links removed, nothing journaled), as if they had never been started.
        with ReportWriter(report) as writer:
            writer.write_all(kept)
        ReportPaths(report).started.unlink()
        for row in dropped:
            emu.model.detach("default", REGION, row.instance_id, row.vpc_id)
        emu.model.reset_counters()

        second = await run_in_process(emu, settings_for(pairs_csv, report))
        state = emu.model.snapshot()

    assert second.exit_code == ExitCode.OK
    assert second.summary["read_back_in_flight"] == 0
    rows = one_row_per_input(list(read_report(report)), pairs)
    for row in kept:
        assert rows[row.line] == row  # kept as it was: not re-run, not re-numbered
    assert state["attach_attempts"] == {r.instance_id: 1 for r in dropped}
    assert all(rows[r.line].status is Status.ATTACHED for r in dropped)
    assert state["total_repeat_attaches"] == 0


# --- rows in flight at a hard stop -----------------------------------------------------


class Hooked(EcsModel):
    """A world that calls a hook once, right after the first read of links or attach.

    The hooks change the emulator's faults at a precise point in the run, e.g. "every
    request hangs once the VPC's links were read", without any timing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.after_first_read: Any = None
        self.after_first_attach: Any = None

    def describe_links(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        found = super().describe_links(*args, **kwargs)
        hook, self.after_first_read = self.after_first_read, None
        if hook is not None:
            hook()
        return found

    def attach(self, account: str, region: str, instance_id: str, vpc_id: str) -> None:
        super().attach(account, region, instance_id, vpc_id)
        hook, self.after_first_attach = self.after_first_attach, None
        if hook is not None:
            hook()


async def read_until(stream: asyncio.StreamReader, text: str) -> str:
    seen = ""
    async with asyncio.timeout(DEADLINE):
        while text not in seen:
            line = await stream.readline()
            assert line, f"the stream ended before {text!r}: {seen}"
            seen += line.decode()
    return seen


async def test_rows_in_flight_at_a_hard_stop_are_read_back_on_resume(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Ctrl-C twice stops at once: the rows in flight are reported skipped, "interrupted
    while in flight". Two of them then turn out linked (the attach committed, its answer
    never came), two not. The resume reads all four back: the linked ones are reported
    attached without being sent, the others are sent once."""
    pairs = make_pairs(20, 1)
    pairs_csv = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "report.csv"
    model = Hooked()
    for region, instance, vpc in pairs:
        model.add_instance(Instance(instance, region))
        model.add_vpc(Vpc(vpc, region))
    async with emulator(model) as emu:
        # The run reads the VPC, then attaches: every attach it sends hangs before it
        # executes, so the rows stay in flight until the run is stopped.
        model.after_first_read = lambda: emu.emulator.change_faults(
            {"hang_rate": 1.0, "hang_seconds": 120.0}
        )
        env = {
            **cli_env,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": AK,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bulk_attach",
            "run",
            str(pairs_csv),
            "--endpoint",
            emu.endpoint,
            "--rate",
            "0",
            "--concurrency",
            "4",
            "--report",
            str(report),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        try:
            journal = ReportPaths(report).started
            async with asyncio.timeout(DEADLINE):
                # The child writes the journal: no event to wait on, so poll it.
                while len(journal_keys(journal)) < 4:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            assert process.stderr is not None
            process.send_signal(signal.SIGINT)
            await read_until(process.stderr, "press Ctrl-C again")
            process.send_signal(signal.SIGINT)
            async with asyncio.timeout(DEADLINE):
                rest = await process.stderr.read()
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert code == ExitCode.SIGINT, rest.decode()

        interrupted = list(read_report(report))
        in_flight = [r for r in interrupted if r.message == INTERRUPTED_IN_FLIGHT]
        assert len(interrupted) == 20
        assert len(in_flight) == 4
        assert {r.status for r in interrupted} == {Status.SKIPPED}
        assert {r.key for r in in_flight} == journal_keys(journal)
        assert emu.model.snapshot()["attach_attempts"] == {}  # every attach is still hanging

        emu.emulator.change_faults({"hang_rate": 0.0})
        committed = in_flight[:2]
        for row in committed:  # their attach went through; the answer was lost
            emu.model.link(row.instance_id, row.vpc_id)

        resumed = await run_in_process(emu, settings_for(pairs_csv, report))
        state = emu.model.snapshot()

    assert resumed.exit_code == ExitCode.OK
    assert resumed.summary["read_back_in_flight"] == 4
    rows = one_row_per_input(list(read_report(report)), pairs)
    assert all(r.status is Status.ATTACHED for r in rows.values())
    assert {r.key for r in rows.values() if r.message == READ_BACK} == {r.key for r in committed}
    # The committed ones were never sent again; every other row was sent exactly once.
    assert state["attach_attempts"] == {
        p[1]: 1 for p in pairs if p[1] not in {r.instance_id for r in committed}
    }
    assert state["total_repeat_attaches"] == 0


# --- a row whose state could not be read back -------------------------------------------


async def test_a_row_left_in_an_unknown_state_is_read_back_when_run_again(
    tmp_path: Path,
) -> None:
    """The attach commits, its answer is lost, and every read-back fails: the row is
    reported failed, "state unknown: read-back failed (...); a re-run reads it again".
    Running the same command again must do what that message says: read the link back
    and report the row attached (the link exists), without sending it again.

    Today the resume treats every failed row as settled, so the re-run keeps the row
    failed while the emulator holds its link (see the final report).
    """
    pairs = make_pairs(1, 1)
    pairs_csv = write_pairs(tmp_path / "pairs.csv", pairs)
    report = tmp_path / "report.csv"
    model = Hooked()
    for region, instance, vpc in pairs:
        model.add_instance(Instance(instance, region))
        model.add_vpc(Vpc(vpc, region))
    async with emulator(model, commit_then_drop_rate=1.0) as emu:
        # The first attach commits and its connection drops; from then on every request
        # answers 503, so the read-back fails too.
        model.after_first_attach = lambda: emu.emulator.change_faults(
            {"commit_then_drop_rate": 0.0, "unavailable_rate": 1.0}
        )
        first = await run_in_process(emu, settings_for(pairs_csv, report))
        (unknown,) = read_report(report)
        assert unknown.status is Status.FAILED
        assert "state unknown" in unknown.message
        assert "a re-run reads it again" in unknown.message
        assert (unknown.instance_id, unknown.vpc_id) in emu.model.links.items()
        assert first.exit_code == ExitCode.SOME_ROWS_FAILED

        emu.emulator.change_faults({"unavailable_rate": 0.0})
        again = await run_in_process(emu, settings_for(pairs_csv, report))
        state = emu.model.snapshot()

    (row,) = one_row_per_input(list(read_report(report)), pairs).values()
    assert row.status is Status.ATTACHED, row
    assert again.exit_code == ExitCode.OK
    assert state["attach_attempts"][unknown.instance_id] == 1
    assert state["total_repeat_attaches"] == 0
