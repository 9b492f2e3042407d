"""The promises under cron: one run at a time, retries that keep retrying, honest numbers,
and ordinary mistakes that get an ordinary exit code.

Each test here failed before the change it comes with (issue 8): two overlapping runs of
the same job attached nearly everything twice; a retry stopped re-sending rows after its
own previous round; ``--rate inf`` and an unwritable ``--report`` were internal errors;
``--fresh`` set the old report aside before a run that then failed at once; a full disk
tore the report and ended with exit 70; a resume with nothing to do reported 300 rows and
300 attach attempts.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import emulator_settings, finish
from conftest import start_cli as start_child
from hypothesis import given
from hypothesis import strategies as st

from bulk_attach.core.outcomes import SUCCEEDED, Status
from bulk_attach.core.retrying import RetrySelection
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import RunningEmulator, running_emulator
from bulk_attach.errors import ExitCode, LockedError
from bulk_attach.files.csv_input import fingerprint
from bulk_attach.files.lock import ReportLock
from bulk_attach.files.paths import (
    ReportPaths,
    family_stem,
    merged_view_for,
    retry_report_for,
    run_report_for,
)
from bulk_attach.files.report import ReportReader, read_meta, read_report, write_meta
from bulk_attach.files.rerun import plan_round, retry_family
from bulk_attach.progress import LogProgress, render_summary
from bulk_attach.settings import ReportFormat

REGION = "cn-hangzhou"


# --- helpers ---------------------------------------------------------------------------


def instances(count: int, prefix: str = "i-c") -> list[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


def world(ids: Sequence[str], vpcs: Sequence[str] = ("vpc-a", "vpc-b")) -> EcsModel:
    model = EcsModel()
    for vpc in vpcs:
        model.add_vpc(Vpc(vpc, REGION))
    for instance in ids:
        model.add_instance(Instance(instance, REGION))
    return model


def write_input(path: Path, ids: Sequence[str], vpcs: Sequence[str] = ("vpc-a", "vpc-b")) -> Path:
    lines = ["RegionId,InstanceId,VpcId"]
    lines += [f"{REGION},{i},{vpcs[n % len(vpcs)]}" for n, i in enumerate(ids)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@asynccontextmanager
async def emulator(model: EcsModel, **faults: Any) -> Any:
    async with running_emulator(
        model, emulator_settings(host="127.0.0.1", port=0, **faults)
    ) as emu:
        yield emu


def env_for(emu: RunningEmulator) -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.access_key_secret,
    }


def attaches(emu: RunningEmulator) -> Counter[str]:
    """Attaches that reached the model, per instance."""
    return Counter(emu.emulator.state()["attach_attempts"])


async def start_cli(
    cli_env: dict[str, str],
    cwd: Path,
    *args: str | os.PathLike[str],
    env_extra: dict[str, str] | None = None,
    file_size_limit: int | None = None,
) -> asyncio.subprocess.Process:
    def limit() -> None:  # in the child: a small "disk", and EFBIG instead of SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        assert file_size_limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return await start_child(
        *args,
        env={**cli_env, **(env_extra or {})},
        cwd=cwd,
        preexec_fn=limit if file_size_limit is not None else None,
    )


async def wait_for(predicate: Any, what: str) -> None:
    """Poll a file-system condition another process makes true (no event to wait on)."""
    async with asyncio.timeout(20.0):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert predicate(), what


def holder_written(lock: Path) -> bool:
    try:
        return '"pid"' in lock.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def settled_rows(report: Path) -> int:
    try:
        return sum(1 for _ in ReportReader(report))
    except Exception:  # the header may not be there yet
        return 0


# --- 1. one run at a time ----------------------------------------------------------------


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path: Path) -> None:
    report = tmp_path / "pairs.report.csv"
    paths = ReportPaths(report)
    first = ReportLock(paths.lock, report, command="run").acquire()
    try:
        with pytest.raises(LockedError) as refused:
            ReportLock(paths.lock, report).acquire()
        assert refused.value.exit_code == ExitCode.LOCKED == 75
        message = str(refused.value)
        assert f"PID {os.getpid()}" in message
        assert os.uname().nodename in message
        assert "started 20" in message
        assert "--wait-lock" in message
    finally:
        first.release()
    ReportLock(paths.lock, report).acquire().release()  # free again
    assert paths.lock.exists()  # never deleted: a deleted lock file splits the lock


def test_waiting_for_a_lock_gets_it_once_the_holder_lets_go(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    paths = ReportPaths(report)
    holder = ReportLock(paths.lock, report).acquire()
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) == 3:
            holder.release()

    waiter = ReportLock(paths.lock, report, clock=lambda: now[0], sleep=sleep)
    assert waiter.acquire(wait=10.0).held
    waiter.release()
    assert len(sleeps) == 3

    # And a wait that runs out is refused like no wait at all, saying it waited.
    holder.acquire()
    late = ReportLock(paths.lock, report, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(LockedError, match="after waiting 1s"):
        late.acquire(wait=1.0)
    holder.release()


def test_kill_9_never_leaves_a_stale_lock(tmp_path: Path) -> None:
    report = tmp_path / "r.csv"
    paths = ReportPaths(report)
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from bulk_attach.files.lock import ReportLock\n"
        f"ReportLock(Path({str(paths.lock)!r}), Path({str(report)!r})).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"held"
        with pytest.raises(LockedError, match=f"PID {child.pid} "):
            ReportLock(paths.lock, report).acquire()
    finally:
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
    ReportLock(paths.lock, report).acquire().release()


def test_an_unwritable_report_place_is_a_usage_error(tmp_path: Path) -> None:
    from bulk_attach.errors import UsageError

    for place in (Path("/proc/r.csv"), tmp_path / "no" / "such" / "dir" / "r.csv"):
        with pytest.raises(UsageError, match="cannot write the report there"):
            ReportLock(ReportPaths(place).lock, place).acquire()


async def test_overlapping_runs_of_one_job_never_attach_twice(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """A cron job that overlaps the previous one: the second stops (exit 75) before it
    reads or sends anything; with --wait-lock it waits, then resumes with nothing to do."""
    ids = instances(240)
    pairs = write_input(tmp_path / "pairs.csv", ids)
    report = tmp_path / "pairs.report.csv"
    async with emulator(world(ids), latency_ms=25.0) as emu:
        args = ("run", pairs, "--endpoint", emu.endpoint, "--rate", "0", "--concurrency", "2")
        first = await start_cli(cli_env, tmp_path, *args, env_extra=env_for(emu))
        await wait_for(lambda: settled_rows(report) >= 5, "the first run attaching")
        second = await finish(await start_cli(cli_env, tmp_path, *args, env_extra=env_for(emu)))
        waiting = await start_cli(
            cli_env, tmp_path, *args, "--wait-lock", "60", env_extra=env_for(emu)
        )
        done_first = await finish(first)
        done_waiting = await finish(waiting)
        sent = attaches(emu)

    assert second.returncode == ExitCode.LOCKED, second.stderr
    assert f"is in use by run PID {first.pid} on {os.uname().nodename}" in second.stderr
    assert "nothing was sent" in second.stderr
    assert "Traceback" not in second.stderr
    assert done_first.returncode == ExitCode.OK, done_first.stderr
    assert done_waiting.returncode == ExitCode.OK, done_waiting.stderr
    # Every instance was attached exactly once, by the first run.
    assert sent == Counter(ids)
    # The run that waited resumed a finished report: it says so and claims no work.
    summary = json.loads(ReportPaths(report).summary.read_text())
    assert summary["kept_from_earlier_runs"] == len(ids)
    assert summary["this_run"]["rows"] == 0
    assert summary["attempts"] == 0
    assert f"{len(ids)} rows in the report: {len(ids)} kept from earlier runs, 0 settled" in (
        done_waiting.stderr
    )
    rows = list(read_report(report))
    assert len(rows) == len(ids)
    assert {r.status for r in rows} == {Status.ATTACHED}


async def test_run_and_retry_of_one_report_exclude_each_other(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    ids = instances(160)
    pairs = write_input(tmp_path / "pairs.csv", ids)
    report = tmp_path / "pairs.report.csv"
    async with emulator(world(ids), latency_ms=25.0) as emu:
        run = await start_cli(
            cli_env,
            tmp_path,
            "run",
            pairs,
            "--endpoint",
            emu.endpoint,
            "--rate",
            "0",
            "--concurrency",
            "2",
            env_extra=env_for(emu),
        )
        await wait_for(lambda: settled_rows(report) >= 5, "the run attaching")
        retry = await finish(
            await start_cli(
                cli_env,
                tmp_path,
                "retry",
                report,
                "--endpoint",
                emu.endpoint,
                env_extra=env_for(emu),
            )
        )
        await finish(run)
        sent = attaches(emu)
    assert retry.returncode == ExitCode.LOCKED, retry.stderr
    assert sent == Counter(ids)


# --- 2. retries that keep retrying ----------------------------------------------------


@given(st.sampled_from(["pairs", "my.data", "x.report", "a.retry", "b.merged"]))
def test_default_paths_never_collide_and_never_stack_up(stem: str) -> None:
    folder = Path("/data")
    # A source whose name ends like retry's own files keeps its whole stem (retry_family
    # decides so from the source's metadata; see the test below).
    whole = stem.endswith((".retry", ".merged"))
    for fmt in ReportFormat:
        source = run_report_for(folder / f"{stem}.csv", fmt)
        retry = retry_report_for(source, fmt, whole_stem=whole)
        merged = merged_view_for(source, fmt, whole_stem=whole)
        rerun = run_report_for(source, fmt)
        assert len({source, retry, merged, rerun}) == 4
        if whole:
            continue
        # Naming a retry's own files again gives the same files, not longer names.
        assert retry_report_for(retry, fmt) == retry == retry_report_for(merged, fmt)
        assert merged_view_for(merged, fmt) == merged == merged_view_for(retry, fmt)
        assert family_stem(merged) == family_stem(retry) == family_stem(source)


def test_a_source_named_like_a_retry_report_keeps_its_own_family(tmp_path: Path) -> None:
    from bulk_attach.files.report import ReportMeta

    source = tmp_path / "a.retry.report.csv"  # what run writes for a.retry.csv
    source.write_text("x", encoding="utf-8")
    write_meta(source, ReportMeta("/a.retry.csv", 1, "x"))
    family = retry_family(source, ReportFormat.CSV)
    assert family.source.report == source
    assert family.retry.report.name == "a.retry.retry.report.csv"
    assert family.merged.report.name == "a.retry.merged.report.csv"


def test_report_paths_derive_every_sidecar() -> None:
    paths = ReportPaths(Path("/d/pairs.report.csv"))
    assert [p.name for p in (paths.meta, paths.started, paths.summary, paths.lock)] == [
        "pairs.report.csv.meta.json",
        "pairs.report.csv.started",
        "pairs.report.csv.summary.json",
        "pairs.report.csv.lock",
    ]
    aside = paths.set_aside_as("20260101T000000Z")
    assert aside.report.name == "pairs.report.20260101T000000Z.csv"
    assert paths.lock not in paths.sidecars  # the lock stays with the path


async def test_every_retry_resends_every_row_that_may_still_pass(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """The issue's scenario: some instances locked for a while, 503s on a share of the
    calls, one attempt per run. Each retry must select exactly the rows whose latest
    outcome is not a success, and send each of them (today: from the second retry on, the
    rows that failed in the previous retry were taken as settled and never sent again, so
    the rows left never reach zero)."""
    ids = instances(60)
    locked = set(ids[::10])  # 10 % of the instances
    model = world(ids)
    for instance in locked:
        model.add_instance(Instance(instance, REGION, locked=True))
    pairs = write_input(tmp_path / "pairs.csv", ids)
    report = tmp_path / "pairs.report.csv"
    merged = tmp_path / "pairs.merged.report.csv"
    retry_report = tmp_path / "pairs.retry.report.csv"
    async with emulator(model, unavailable_rate=0.2, seed=7) as emu:
        common = ("--endpoint", emu.endpoint, "--rate", "0", "--max-attempts", "1")
        first = await finish(
            await start_cli(cli_env, tmp_path, "run", pairs, *common, env_extra=env_for(emu))
        )
        assert first.returncode == ExitCode.SOME_ROWS_FAILED, first.stderr
        remaining_history: list[int] = []
        for round_number in range(1, 16):
            latest = merged if merged.exists() else report
            left = {r.instance_id for r in read_report(latest) if r.status not in SUCCEEDED}
            remaining_history.append(len(left))
            if not left:
                break
            if round_number == 3:  # the locks are lifted after the second retry
                for instance in locked:
                    emu.model.add_instance(Instance(instance, REGION))
            before = attaches(emu)
            linked_before = set(emu.model.links)
            done = await finish(
                await start_cli(cli_env, tmp_path, "retry", report, *common, env_extra=env_for(emu))
            )
            assert done.returncode in (ExitCode.OK, ExitCode.SOME_ROWS_FAILED), done.stderr
            assert f"retry: {len(left)} rows of {latest} selected" in done.stderr
            # Every row left (none of them linked) was picked, and sent again once, unless
            # its VPC's link read failed first (the 503s hit Describe calls too).
            sent_now = attaches(emu) - before
            assert not left & linked_before
            this_round = {r.instance_id: r for r in read_report(retry_report)}
            assert set(this_round) == left
            # (an attach the 503 fault answered never reached the model: sent, not counted)
            assert set(sent_now) <= {i for i, r in this_round.items() if r.attempts}
            assert set(sent_now.values()) <= {1}
            unsent = [r for r in this_round.values() if not r.attempts]
            assert all("could not read the VPC's links" in r.message for r in unsent)
    assert remaining_history[-1] == 0, remaining_history
    assert all(a >= b for a, b in itertools.pairwise(remaining_history))
    final = {r.instance_id: r for r in read_report(merged)}
    assert set(final) == set(ids)
    assert all(r.status in SUCCEEDED for r in final.values())
    assert not (tmp_path / "pairs.merged.report.merged.csv").exists()


def _finished_round(tmp_path: Path, *, finished: bool) -> tuple[Path, Any]:
    """A source report with two failed rows, and a retry round's report of one of them."""
    from bulk_attach.core.outcomes import RowResult
    from bulk_attach.files.report import ReportWriter
    from bulk_attach.files.resume import Previous, RoundPin, prepare_report

    source = tmp_path / "pairs.report.csv"
    rows = [
        RowResult(2, REGION, "i-1", "vpc-a", Status.FAILED, error_code="Throttling.User"),
        RowResult(3, REGION, "i-2", "vpc-a", Status.FAILED, error_code="Throttling.User"),
        RowResult(4, REGION, "i-3", "vpc-a", Status.ATTACHED, request_id="R"),
    ]
    with ReportWriter(source, ReportFormat.CSV) as writer:
        writer.write_all(rows)
    from bulk_attach.files.report import ReportMeta

    write_meta(source, ReportMeta("/in.csv", 1, "x"))
    family = retry_family(source, ReportFormat.CSV)
    selection = RetrySelection()
    pin = RoundPin(source=fingerprint(source), round=1, selection=selection.describe())
    plan = prepare_report(
        family.retry,
        fingerprint(source),
        ReportFormat.CSV,
        previous=Previous.REPLACE,
        command="retry",
        round_pin=pin,
    )
    plan.begin()
    with ReportWriter(family.retry.report, ReportFormat.CSV) as writer:
        writer.write(rows[0].replace(error_code="InvalidStatus.InstanceLocked"))
    if finished:
        plan.finish()
    return source, family


def test_an_interrupted_round_resumes_and_a_finished_one_is_folded(tmp_path: Path) -> None:
    source, family = _finished_round(tmp_path, finished=False)
    selection = RetrySelection()
    again = plan_round(family, selection)
    assert again.resume
    assert again.pin.round == 1
    assert again.base == source
    assert not family.merged.report.exists()

    # The same round with another selection is not the same round: fold it, start round 2.
    other = plan_round(family, RetrySelection(all_failed=True))
    assert not other.resume
    assert other.pin.round == 2
    assert other.base == family.merged.report == other.folded

    (tmp_path / "b").mkdir()
    _, finished_family = _finished_round(tmp_path / "b", finished=True)
    nxt = plan_round(finished_family, selection)
    assert not nxt.resume
    assert nxt.pin.round == 2
    merged = {r.instance_id: r for r in read_report(finished_family.merged.report)}
    assert merged["i-1"].error_code == "InvalidStatus.InstanceLocked"
    assert dict(merged["i-1"].extra)["History"] == (
        "failed(Throttling.User) -> failed(InvalidStatus.InstanceLocked)"
    )
    assert merged["i-2"].error_code == "Throttling.User"
    meta = read_meta(finished_family.merged.report)
    assert meta is not None
    assert (meta.round, meta.command) == (1, "merge")
    # Folding is idempotent across invocations: the next plan does not fold again.
    assert plan_round(finished_family, selection).folded is None


def test_retry_of_a_retry_report_or_merged_view_retries_their_source(tmp_path: Path) -> None:
    source, family = _finished_round(tmp_path, finished=True)
    plan_round(family, RetrySelection())  # folds: the merged view now exists
    for named in (family.retry.report, family.merged.report):
        again = retry_family(named, ReportFormat.CSV)
        assert again.source.report == source
        assert again.redirected
        assert again.merged.report == family.merged.report


async def test_retry_says_when_there_is_nothing_to_retry(
    tmp_path: Path, cli_env: dict[str, str], run_cli: Any
) -> None:
    ids = instances(6)
    model = world(ids[:5])  # the last instance does not exist: a permanent failure
    pairs = write_input(tmp_path / "pairs.csv", ids)
    report = tmp_path / "pairs.report.csv"
    async with emulator(model) as emu:
        common = ("--endpoint", emu.endpoint, "--rate", "0")
        first = await run_cli("run", pairs, *common, env_extra=env_for(emu))
        assert first.returncode == ExitCode.SOME_ROWS_FAILED
        before = attaches(emu)
        nothing = await run_cli("retry", report, *common, env_extra=env_for(emu))
        absent = await run_cli(
            "retry", report, *common, "--only", "Throttling.User", env_extra=env_for(emu)
        )
        assert attaches(emu) == before  # neither sent anything
        everything = await run_cli("retry", report, "--all-failed", *common, env_extra=env_for(emu))

    assert nothing.returncode == ExitCode.SOME_ROWS_FAILED, nothing.stderr
    assert "nothing to retry: 1 rows" in nothing.stderr
    assert "InvalidInstanceId.NotFound (1)" in nothing.stderr
    assert absent.returncode == ExitCode.USAGE, absent.stderr
    assert "--only Throttling.User: no row" in absent.stderr
    assert "InvalidInstanceId.NotFound (1)" in absent.stderr
    assert everything.returncode == ExitCode.SOME_ROWS_FAILED, everything.stderr
    assert "retry: 1 rows of" in everything.stderr


# --- 5. ordinary mistakes, ordinary exit codes ----------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ("--rate", "inf"),
        ("--rate", "1e400"),
        ("--rate", "nan"),
        ("--connect-timeout", "inf"),
        ("--read-timeout", "1e400"),
        ("--drain-timeout", "nan"),
        ("--wait-lock", "inf"),
        ("--max-failure-rate", "nan"),
    ],
)
async def test_option_values_that_are_not_finite_are_usage_errors(
    tmp_path: Path, run_cli: Any, option: tuple[str, str]
) -> None:
    pairs = write_input(tmp_path / "pairs.csv", instances(2))
    done = await run_cli("run", pairs, "--emulator", *option)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert option[0] in done.stderr
    assert "internal error" not in done.stderr
    assert not (tmp_path / "pairs.report.csv").exists()


async def test_a_report_that_cannot_be_written_stops_before_anything_starts(
    tmp_path: Path, run_cli: Any
) -> None:
    pairs = write_input(tmp_path / "pairs.csv", instances(2))
    done = await run_cli("run", pairs, "--emulator", "--report", "/proc/r.csv")
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "/proc/r.csv: cannot write the report there" in done.stderr
    assert "emulator:" not in done.stderr  # stopped before the emulator started


async def test_fresh_sets_the_old_report_aside_only_when_the_run_really_starts(
    tmp_path: Path, run_cli: Any
) -> None:
    pairs = write_input(tmp_path / "pairs.csv", instances(3))
    first = await run_cli("run", pairs, "--emulator", "-q")
    assert first.returncode == ExitCode.OK, first.stderr
    before = listing(tmp_path)
    report = tmp_path / "pairs.report.csv"
    content = report.read_bytes()
    # An endpoint the client refuses at start-up (no request can leave for it).
    failed = await run_cli(
        "run", pairs, "--fresh", "--endpoint", "ftp://127.0.0.1:1", "-q",
        env_extra={"ALIBABA_CLOUD_ACCESS_KEY_ID": "x", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "y"},
    )  # fmt: skip
    assert failed.returncode == ExitCode.CONFIG, failed.stderr
    assert listing(tmp_path) == before
    assert report.read_bytes() == content
    # When the run does start, the report and every sidecar move together.
    again = await run_cli("run", pairs, "--emulator", "--fresh", "-q")
    assert again.returncode == ExitCode.OK, again.stderr
    aside = [name for name in listing(tmp_path) if name.startswith("pairs.report.2")]
    assert len(aside) == 4, aside  # the report, its meta, journal and summary
    summary = json.loads(ReportPaths(report).summary.read_text())
    assert summary["previous_report"].endswith(".csv")


async def test_a_full_disk_stops_cleanly_and_the_next_run_resumes(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    ids = instances(300)
    pairs = write_input(tmp_path / "pairs.csv", ids)
    report = tmp_path / "pairs.report.csv"
    async with emulator(world(ids)) as emu:
        args = ("run", pairs, "--endpoint", emu.endpoint, "--rate", "0")
        full = await finish(
            await start_cli(
                cli_env, tmp_path, *args, env_extra=env_for(emu), file_size_limit=16_000
            )
        )
        assert full.returncode == ExitCode.REPORT_WRITE == 74, full.stderr
        assert "Traceback" not in full.stderr
        assert "internal error" not in full.stderr
        assert "intact up to its last whole row" in full.stderr
        assert "running the same command again resumes" in full.stderr
        reader = ReportReader(report)
        written = list(reader)
        assert not reader.torn  # no half row at the end
        assert 0 < len(written) < len(ids)
        summary = json.loads(ReportPaths(report).summary.read_text())
        assert summary["exit_code"] == 74

        resumed = await finish(await start_cli(cli_env, tmp_path, *args, env_extra=env_for(emu)))
        sent = attaches(emu)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert sent == Counter(ids)  # none twice, none missing
    final = list(read_report(report))
    assert sorted(r.instance_id for r in final) == sorted(ids)
    assert all(r.status in SUCCEEDED for r in final)


# --- 7. numbers that tell the truth -----------------------------------------------------------


def test_progress_counts_each_status_under_its_own_name() -> None:
    from bulk_attach.core.outcomes import RowResult
    from bulk_attach.engine.events import RowSettled

    lines: list[str] = []
    progress = LogProgress(4, lines.append, interval=1e9)
    for status in (Status.ATTACHED, Status.ALREADY_LINKED, Status.INVALID, Status.FAILED):
        progress(RowSettled(RowResult(2, REGION, "i-1", "vpc-a", status)))
    line = progress.line()
    assert "attached=1 " in line
    assert "already_linked=1 " in line
    assert "invalid=1 " in line
    assert "failed=1 " in line


def test_the_summary_separates_rows_kept_from_earlier_runs() -> None:
    from bulk_attach.core.outcomes import RowResult, Summary

    old = [RowResult(n, REGION, f"i-{n}", "vpc-a", Status.ATTACHED, attempts=1) for n in range(9)]
    new = [RowResult(9, REGION, "i-9", "vpc-a", Status.ATTACHED, attempts=2)]
    data = Summary(old + new).to_dict(duration=2.0, this_run=Summary(new))
    assert data["total"] == 10
    assert data["kept_from_earlier_runs"] == 9
    assert data["this_run"] == {"rows": 1, "by_status": {"attached": 1}}
    assert data["attempts"] == 2
    assert data["rows_per_second"] == 0.5
    text = render_summary(data)
    assert text.startswith("10 rows in the report: 9 kept from earlier runs, 1 settled by this")


# --- 3. a signal at any moment: before the run too ----------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_a_signal_while_the_input_is_validated_acts_at_once(
    tmp_path: Path, cli_env: dict[str, str], signum: int, code: int
) -> None:
    """The input is a FIFO nobody writes to: validation would never end by itself, so only
    a signal handled while it runs can end the command (before: asyncio's handler waited for
    the validation to give the loop back, which it never did)."""
    fifo = tmp_path / "pairs.csv"
    os.mkfifo(fifo)
    report = tmp_path / "pairs.report.csv"
    process = await start_cli(
        cli_env,
        tmp_path,
        "run",
        fifo,
        "--endpoint",
        "http://127.0.0.1:9",
        env_extra={"ALIBABA_CLOUD_ACCESS_KEY_ID": "x", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "y"},
    )
    await wait_for(lambda: holder_written(ReportPaths(report).lock), "the run holding its lock")
    await asyncio.sleep(0.3)  # validation has begun: it blocks opening the FIFO
    process.send_signal(signum)
    done = await finish(process)
    assert done.returncode == code, done.stderr
    assert "nothing was sent" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_signal_while_waiting_for_the_lock_acts_at_once(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    pairs = write_input(tmp_path / "pairs.csv", instances(2))
    report = tmp_path / "pairs.report.csv"
    paths = ReportPaths(report)
    with ReportLock(paths.lock, report):
        process = await start_cli(
            cli_env, tmp_path, "run", pairs, "--emulator", "--wait-lock", "600"
        )
        await asyncio.sleep(1.5)  # started, and waiting for the lock held here
        process.send_signal(signal.SIGINT)
        done = await finish(process)
    assert done.returncode == ExitCode.SIGINT, done.stderr
    assert "Traceback" not in done.stderr
    assert not report.exists()


async def test_a_retry_killed_mid_round_resumes_without_resending(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """kill -9 in the middle of a retry round, then the same command: the round resumes.
    Rows the killed round already settled (failed again: still locked) are not sent again;
    the rest are sent once; and only then is the round folded into the merged view."""
    ids = instances(60)
    model = world(ids)
    for instance in ids:
        model.add_instance(Instance(instance, REGION, locked=True))
    pairs = write_input(tmp_path / "pairs.csv", ids)
    report = tmp_path / "pairs.report.csv"
    retry_report = tmp_path / "pairs.retry.report.csv"
    async with emulator(model, latency_ms=20.0) as emu:
        env = env_for(emu)
        common = ("--endpoint", emu.endpoint, "--rate", "0", "--max-attempts", "1")
        first = await finish(
            await start_cli(cli_env, tmp_path, "run", pairs, *common, env_extra=env)
        )
        assert first.returncode == ExitCode.SOME_ROWS_FAILED, first.stderr
        emu.model.reset_counters()
        args = ("retry", report, *common, "--concurrency", "1")
        killed = await start_cli(cli_env, tmp_path, *args, env_extra=env)
        await wait_for(lambda: settled_rows(retry_report) >= 10, "the round under way")
        killed.send_signal(signal.SIGKILL)
        await finish(killed)
        settled_before = {r.instance_id for r in read_report(retry_report)}
        assert not (tmp_path / "pairs.merged.report.csv").exists()  # not folded
        resumed = await finish(await start_cli(cli_env, tmp_path, *args, env_extra=env))
        sent = attaches(emu)
    assert resumed.returncode == ExitCode.SOME_ROWS_FAILED, resumed.stderr
    assert "resuming the interrupted round" in resumed.stderr
    # Rows the killed round settled are not sent again; the one whose attach was in
    # flight at the kill (concurrency 1) is read back first, found not linked (the
    # service refused it), and only then sent again; every other row is sent once.
    assert set(sent) == set(ids)
    assert all(sent[i] == 1 for i in settled_before)
    again = [i for i, n in sent.items() if n > 1]
    assert len(again) <= 1
    assert all(sent[i] == 2 for i in again)
    merged = {r.instance_id: r for r in read_report(tmp_path / "pairs.merged.report.csv")}
    assert set(merged) == set(ids)
    assert all(r.error_code == "InvalidStatus.InstanceLocked" for r in merged.values())


# --- issue 10: what flow control learned is told -------------------------------------------


async def test_the_summary_records_the_learned_rate_per_region_and_api(tmp_path: Path) -> None:
    """An attach limit of 40/s (1-second windows), asked 400/s: the summary names, per
    region and API, the limit learned and the throttled answers; Describe is not throttled
    and keeps its own pace."""
    from bulk_attach.api.credentials import Credentials
    from bulk_attach.job import run_job
    from bulk_attach.settings import AttemptSettings, ClientSettings, RunSettings

    ids = instances(160)
    pairs = write_input(tmp_path / "pairs.csv", ids)
    async with emulator(world(ids), limiter="window", limits={"AttachClassicLinkVpc": 40.0}) as emu:
        result = await run_job(
            RunSettings(
                input_path=pairs,
                report_path=tmp_path / "r.csv",
                rate=400.0,
                concurrency=32,
                attempts=AttemptSettings(base_delay=0.01, max_delay=0.1),
            ),
            ClientSettings(endpoint=emu.endpoint),
            Credentials(emu.access_key_id, emu.access_key_secret, None, "test"),
        )
        throttled_answers = emu.emulator.state()["calls"]["AttachClassicLinkVpc"].get(
            "Throttling.User", 0
        )
    assert result.exit_code == ExitCode.OK
    flow = result.summary["flow"]
    attach = flow[f"{REGION}/AttachClassicLinkVpc"]
    assert throttled_answers > 0  # the limit was reached, so there was something to learn
    assert attach["throttled"] == throttled_answers
    assert attach["learned_limit"] is not None
    assert attach["learned_limit"] <= 60
    describe = flow[f"{REGION}/DescribeClassicLinkInstances"]
    assert describe["throttled"] == 0
    assert describe["learned_limit"] is None
    assert f"{REGION}/AttachClassicLinkVpc learned" in render_summary(result.summary)


def test_the_progress_line_shows_the_pace_in_use() -> None:
    from bulk_attach.engine.events import Throttled

    lines: list[str] = []
    progress = LogProgress(10, lines.append, interval=1e9)
    progress(Throttled(region=REGION, rate=38.5, api="AttachClassicLinkVpc"))
    assert progress.line().endswith(f"pace {REGION}/AttachClassicLinkVpc 38.5/s")
