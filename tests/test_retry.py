"""Re-run from a report: ``bulk-attach retry`` and a report given to ``run``.

One world, one first run with real failures (locked instance, wrong status, unknown
instance, VPC-type instance, ClassicLink disabled, a VPC over its quota), plus the rows a
throttled or interrupted run leaves (written as such a run writes them). Between the runs
the world moves on, as it does between a failed migration and its retry: the instance
finished starting, the small VPC's quota was raised, and someone fixed one row by hand in
the console. The emulator's per-instance attach counts show exactly which rows were sent.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_attach.api.credentials import Credentials
from bulk_attach.core.outcomes import Key, RowResult, Status
from bulk_attach.core.resuming import latest_by_key
from bulk_attach.core.retrying import RetrySelection, merge_reports, select_for_retry
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.engine.pool import INTERRUPTED_IN_FLIGHT
from bulk_attach.errors import ExitCode
from bulk_attach.files.report import ReportReader, ReportWriter, read_report
from bulk_attach.job import run_job
from bulk_attach.settings import AttemptSettings, ClientSettings, ReportFormat, RunSettings

REGION = "cn-hangzhou"
AK = "LTAIretrytest00000000000"
SECRET = "retry-test-secret-0123456789abc"
FAST = AttemptSettings(base_delay=0.005, max_delay=0.05, throttle_base_delay=0.005)

# The first run's input: (instance, VPC, what happens to it).
INPUT: tuple[tuple[str, str, str], ...] = (
    ("i-ok1", "vpc-main", "attached"),
    ("i-ok2", "vpc-main", "attached"),
    ("i-locked", "vpc-main", "InvalidStatus.InstanceLocked: still locked at the retry"),
    ("i-starting", "vpc-main", "InvalidStatus.InstanceStatus: Running by the retry"),
    ("i-missing", "vpc-main", "InvalidInstanceId.NotFound"),
    ("i-vpctype", "vpc-main", "InvalidInstanceId.MalFormed"),
    ("i-off", "vpc-off", "OperationDenied: ClassicLink disabled"),
    ("i-q1", "vpc-small", "attached: fills the quota of 1"),
    ("i-q2", "vpc-small", "QuotaExceeded from the service; quota raised by the retry"),
    ("i-q3", "vpc-small", "skipped for quota; quota raised by the retry"),
)
# Rows a throttled or interrupted run writes (lines after the input's last).
WRITTEN: tuple[tuple[str, Status, str, int, str], ...] = (
    ("i-thr", Status.FAILED, "Throttling.User", 400, "Request was denied due to flow control."),
    ("i-503", Status.FAILED, "ServiceUnavailable", 503, "state unknown: read-back failed"),
    ("i-intr", Status.SKIPPED, "", 0, INTERRUPTED_IN_FLIGHT),
    ("i-fixed", Status.FAILED, "Throttling.User", 400, "Request was denied due to flow control."),
)
FIRST_RUN = {
    "i-ok1": (Status.ATTACHED, ""),
    "i-ok2": (Status.ATTACHED, ""),
    "i-locked": (Status.FAILED, "InvalidStatus.InstanceLocked"),
    "i-starting": (Status.FAILED, "InvalidStatus.InstanceStatus"),
    "i-missing": (Status.FAILED, "InvalidInstanceId.NotFound"),
    "i-vpctype": (Status.FAILED, "InvalidInstanceId.MalFormed"),
    "i-off": (Status.FAILED, "OperationDenied"),
    "i-q1": (Status.ATTACHED, ""),
    "i-q2": (Status.FAILED, "QuotaExceeded"),
    "i-q3": (Status.SKIPPED, "QuotaExceeded"),
}
NOTES = {instance: note for instance, _, note in INPUT}
MAY_PASS = {"i-locked", "i-starting", "i-q2", "i-q3", "i-thr", "i-503", "i-intr", "i-fixed"}
PERMANENT = {"i-missing", "i-vpctype", "i-off"}


@dataclass(frozen=True)
class Mixed:
    """The first run's report and the emulator after the world moved on."""

    emu: RunningEmulator
    report: Path
    rows: dict[str, RowResult]  # by instance
    env: dict[str, str]


def world() -> EcsModel:
    model = EcsModel()
    model.add_vpc(Vpc("vpc-main", REGION))
    model.add_vpc(Vpc("vpc-small", REGION, quota=1))
    model.add_vpc(Vpc("vpc-off", REGION, classic_link_enabled=False))
    for instance, _, _ in INPUT:
        if instance != "i-missing":
            model.add_instance(Instance(instance, REGION))
    model.add_instance(Instance("i-locked", REGION, locked=True))
    model.add_instance(Instance("i-starting", REGION, status="Starting"))
    model.add_instance(Instance("i-vpctype", REGION, network_type="vpc"))
    for instance, *_ in WRITTEN:
        model.add_instance(Instance(instance, REGION))
    return model


@asynccontextmanager
async def emulator() -> Any:
    options = EmulatorSettings(host="127.0.0.1", port=0, access_keys={AK: SECRET})
    async with running_emulator(world(), options) as emu:
        yield emu


async def mixed_report(tmp_path: Path, emu: RunningEmulator, fmt: ReportFormat) -> Mixed:
    """Run the input once, append the rows a throttled run leaves, then move the world on."""
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["RegionId", "InstanceId", "VpcId", "Note"])
        writer.writerows((REGION, i, v, note) for i, v, note in INPUT)
    report = tmp_path / f"pairs.report.{fmt.value}"
    settings = RunSettings(
        input_path=pairs,
        report_path=report,
        report_format=fmt,
        rate=None,
        attempts=FAST,
        concurrency=1,  # the quota rows settle in input order
        quiet=True,
    )
    client = ClientSettings(endpoint=emu.endpoint, read_timeout=5.0)
    result = await run_job(settings, client, Credentials(AK, SECRET, None, "test"))
    assert result.exit_code == ExitCode.SOME_ROWS_FAILED
    first = {r.instance_id: r for r in read_report(report)}
    assert {i: (r.status, r.error_code) for i, r in first.items()} == FIRST_RUN
    extras = ("Note",) if fmt is ReportFormat.CSV else ()
    with ReportWriter(report, fmt, extras, append=True) as appender:
        for line, (instance, status, code, http, message) in enumerate(WRITTEN, len(INPUT) + 2):
            appender.write(
                RowResult(
                    line=line,
                    region_id=REGION,
                    instance_id=instance,
                    vpc_id="vpc-main",
                    status=status,
                    request_id="5A1B2C3D-0000-4000-8000-000000000000" if http else "",
                    error_code=code,
                    http_status=http,
                    message=message,
                    attempts=6 if code else 1,
                    started_at="2024-06-05T10:00:00.000Z",
                    finished_at="2024-06-05T10:00:09.000Z",
                    extra=(("Note", "written by a throttled run"),),
                )
            )
    rows = {r.instance_id: r for r in read_report(report)}
    # The world moves on before the retry.
    model = emu.model
    model.add_instance(Instance("i-starting", REGION, status="Running"))
    model.add_vpc(Vpc("vpc-small", REGION, quota=3))
    model.link("i-fixed", "vpc-main")  # fixed by hand in the console
    model.reset_counters()
    emu.emulator.calls.clear()
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    return Mixed(emu=emu, report=report, rows=rows, env=env)


def sent(emu: RunningEmulator) -> Counter[str]:
    """Executed attaches per instance since the world moved on (the model counts every
    attach that reached it; no faults are injected here, so that is every attach sent)."""
    state = emu.emulator.state()
    total = sum(state["calls"].get("AttachClassicLinkVpc", {}).values())
    attempts = Counter(state["attach_attempts"])
    assert total == sum(attempts.values())
    return attempts


def by_instance(rows: Iterable[RowResult]) -> dict[str, RowResult]:
    found: dict[str, RowResult] = {}
    for row in rows:
        assert row.instance_id not in found, f"{row.instance_id} reported twice"
        found[row.instance_id] = row
    return found


def merged_rows(path: Path) -> dict[str, RowResult]:
    return by_instance(read_report(path))


def extra(row: RowResult, name: str) -> str:
    return dict(row.extra)[name]


# --- retry: which rows are sent --------------------------------------------------------


async def test_retry_default_sends_only_rows_whose_failure_may_pass(
    tmp_path: Path, run_cli: Any
) -> None:
    async with emulator() as emu:
        mixed = await mixed_report(tmp_path, emu, ReportFormat.CSV)
        done = await run_cli(
            "retry", mixed.report, "--endpoint", emu.endpoint, "--rate", "0", env_extra=mixed.env
        )
        attempts = sent(emu)

    # Rows are selected by their latest outcome; the one fixed by hand is read back first.
    assert f"retry: {len(MAY_PASS)} rows of {mixed.report} selected" in done.stderr
    assert attempts == Counter(MAY_PASS - {"i-fixed"})
    assert done.returncode == ExitCode.SOME_ROWS_FAILED, done.stderr  # i-locked still is
    new_report = tmp_path / "pairs.retry.report.csv"
    new = by_instance(read_report(new_report))
    assert set(new) == MAY_PASS
    assert new["i-fixed"].status is Status.ALREADY_LINKED
    assert new["i-locked"].error_code == "InvalidStatus.InstanceLocked"
    assert {i for i, r in new.items() if r.status is Status.ATTACHED} == MAY_PASS - {
        "i-fixed",
        "i-locked",
    }
    for instance, row in new.items():  # same line and extras as in the old report
        assert row.line == mixed.rows[instance].line
        assert row.extra == mixed.rows[instance].extra

    # The merged view: every row of the old report once, its latest outcome and history.
    merged_path = tmp_path / "pairs.merged.report.csv"
    assert f"merged view (latest outcome and history per row): {merged_path}" in done.stderr
    header = merged_path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[-3:] == ["Note", "History", "TotalAttempts"]
    merged = merged_rows(merged_path)
    assert set(merged) == set(mixed.rows)
    assert [r.line for r in read_report(merged_path)] == sorted(r.line for r in merged.values())
    for instance, row in merged.items():
        old = mixed.rows[instance]
        if instance in new:
            latest = new[instance]
            assert row.status is latest.status
            history = f"{old.status}({old.error_code})" if old.error_code else str(old.status)
            assert extra(row, "History") == f"{history} -> {latest.status}" + (
                f"({latest.error_code})" if latest.error_code else ""
            )
            assert extra(row, "TotalAttempts") == str(old.attempts + latest.attempts)
        else:
            assert row.status is old.status
            assert extra(row, "TotalAttempts") == str(old.attempts)
        assert extra(row, "Note") == extra(old, "Note")
    assert extra(merged["i-starting"], "History") == (
        "failed(InvalidStatus.InstanceStatus) -> attached"
    )
    assert extra(merged["i-fixed"], "History") == "failed(Throttling.User) -> already_linked"


async def test_retry_all_failed_sends_permanent_failures_too(tmp_path: Path, run_cli: Any) -> None:
    async with emulator() as emu:
        mixed = await mixed_report(tmp_path, emu, ReportFormat.CSV)
        report = tmp_path / "all.csv"
        done = await run_cli(
            "retry",
            mixed.report,
            "--all-failed",
            "--endpoint",
            emu.endpoint,
            "--rate",
            "0",
            "--report",
            report,
            "-q",
            env_extra=mixed.env,
        )
        attempts = sent(emu)

    assert done.returncode == ExitCode.SOME_ROWS_FAILED, done.stderr
    assert attempts == Counter((MAY_PASS | PERMANENT) - {"i-fixed"})
    new = by_instance(read_report(report))
    assert set(new) == MAY_PASS | PERMANENT
    for instance in PERMANENT:  # sent again, failed again the same way
        assert (new[instance].status, new[instance].error_code) == FIRST_RUN[instance]
    # One merged view per source report, whatever --report this round wrote to.
    assert (tmp_path / "pairs.merged.report.csv").exists()


async def test_retry_only_the_chosen_codes(tmp_path: Path, run_cli: Any) -> None:
    async with emulator() as emu:
        mixed = await mixed_report(tmp_path, emu, ReportFormat.CSV)
        report = tmp_path / "only.csv"
        done = await run_cli(
            "retry",
            mixed.report,
            "--only",
            "InvalidStatus.InstanceStatus",
            "--only",
            "InvalidInstanceId.NotFound",
            "--only",
            "Throttling.User",
            "--endpoint",
            emu.endpoint,
            "--rate",
            "0",
            "--report",
            report,
            env_extra=mixed.env,
        )
        attempts = sent(emu)

    assert done.returncode == ExitCode.SOME_ROWS_FAILED, done.stderr
    assert "rows with error code InvalidInstanceId.NotFound, InvalidStatus.InstanceStatus" in (
        done.stderr
    )
    chosen = {"i-starting", "i-missing", "i-thr", "i-fixed"}
    assert attempts == Counter(chosen - {"i-fixed"})
    new = by_instance(read_report(report))
    assert set(new) == chosen
    assert new["i-fixed"].status is Status.ALREADY_LINKED
    assert new["i-starting"].status is Status.ATTACHED
    assert new["i-thr"].status is Status.ATTACHED
    assert new["i-missing"].error_code == "InvalidInstanceId.NotFound"


async def test_retry_of_a_json_lines_report(tmp_path: Path, run_cli: Any) -> None:
    async with emulator() as emu:
        mixed = await mixed_report(tmp_path, emu, ReportFormat.JSONL)
        done = await run_cli(
            "retry",
            mixed.report,
            "--format",
            "jsonl",
            "--endpoint",
            emu.endpoint,
            "--rate",
            "0",
            "-q",
            env_extra=mixed.env,
        )
        attempts = sent(emu)

    assert done.returncode == ExitCode.SOME_ROWS_FAILED, done.stderr
    assert attempts == Counter(MAY_PASS - {"i-fixed"})
    new_report = tmp_path / "pairs.retry.report.jsonl"
    new = by_instance(read_report(new_report))
    assert set(new) == MAY_PASS
    assert extra(new["i-q2"], "Note") == NOTES["i-q2"]
    merged_path = tmp_path / "pairs.merged.report.jsonl"
    records = [json.loads(line) for line in merged_path.read_text().splitlines()]
    assert len(records) == len(mixed.rows)
    by_id = {r["InstanceId"]: r for r in records}
    assert by_id["i-q2"]["Extra"] == {
        "Note": NOTES["i-q2"],
        "History": "failed(QuotaExceeded) -> attached",
        "TotalAttempts": "2",
    }
    assert by_id["i-ok1"]["Extra"]["History"] == "attached"


async def test_retry_of_a_merged_view_continues_its_history(tmp_path: Path, run_cli: Any) -> None:
    """The merged view holds every row's latest outcome, so it is the natural input of the
    next retry. Retrying it sends only what still failed, and the next merged view must
    extend the history (one History and one TotalAttempts column, every attempt counted),
    not nest a second pair of columns beside the first.

    Today the old History/TotalAttempts are carried as input extras and appended to again:
    the header reads ``...,Note,History,TotalAttempts,History,TotalAttempts``.
    """
    async with emulator() as emu:
        mixed = await mixed_report(tmp_path, emu, ReportFormat.CSV)
        common = ("--endpoint", emu.endpoint, "--rate", "0", "-q")
        first = await run_cli("retry", mixed.report, *common, env_extra=mixed.env)
        assert first.returncode == ExitCode.SOME_ROWS_FAILED, first.stderr
        merged_once = tmp_path / "pairs.merged.report.csv"
        emu.model.reset_counters()
        emu.emulator.calls.clear()
        second_report = tmp_path / "second.csv"
        second = await run_cli(
            "retry", merged_once, *common, "--report", second_report, env_extra=mixed.env
        )
        attempts = sent(emu)

    assert second.returncode == ExitCode.SOME_ROWS_FAILED, second.stderr
    assert attempts == Counter({"i-locked"})  # the only row whose failure may still pass
    merged_twice = merged_once  # updated in place: the family has one merged view
    header = merged_twice.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert len(header) == len(set(header)), header
    assert header[-3:] == ["Note", "History", "TotalAttempts"]
    locked = merged_rows(merged_twice)["i-locked"]
    assert extra(locked, "History") == " -> ".join(["failed(InvalidStatus.InstanceLocked)"] * 3)
    assert extra(locked, "TotalAttempts") == "3"
    starting = merged_rows(merged_twice)["i-starting"]
    assert extra(starting, "History") == "failed(InvalidStatus.InstanceStatus) -> attached"
    assert extra(starting, "TotalAttempts") == "2"


# --- a report as the input of run ------------------------------------------------------


async def test_run_accepts_a_report_as_input(tmp_path: Path, run_cli: Any) -> None:
    """Every row of the report runs again, read against the live state first: the linked
    ones (attached before, or fixed by hand) are reported already_linked and not sent."""
    async with emulator() as emu:
        mixed = await mixed_report(tmp_path, emu, ReportFormat.CSV)
        report = tmp_path / "again.csv"
        done = await run_cli(
            "run",
            mixed.report,
            "--endpoint",
            emu.endpoint,
            "--rate",
            "0",
            "--concurrency",
            "1",
            "--report",
            report,
            "-q",
            env_extra=mixed.env,
        )
        attempts = sent(emu)

    assert done.returncode == ExitCode.SOME_ROWS_FAILED, done.stderr
    linked = {"i-ok1", "i-ok2", "i-q1", "i-fixed"}
    assert attempts == Counter(set(mixed.rows) - linked)
    new = by_instance(read_report(report))
    assert set(new) == set(mixed.rows)
    assert {i for i, r in new.items() if r.status is Status.ALREADY_LINKED} == linked
    # The report's own columns are not extras; the input's extra column is carried.
    reader = ReportReader(report)
    list(reader)
    assert reader.extra_columns == ("Note",)
    assert extra(new["i-q3"], "Note") == NOTES["i-q3"]


# --- properties of the merged view and of the selection --------------------------------

instances = st.sampled_from([f"i-p{n}" for n in range(8)])
vpcs = st.sampled_from(["vpc-a", "vpc-b"])
codes = st.sampled_from(
    [
        "",
        "Throttling.User",
        "ServiceUnavailable",
        "InvalidStatus.InstanceLocked",
        "InvalidInstanceId.NotFound",
        "QuotaExceeded",
        "Timeout",
    ]
)
results = st.builds(
    lambda i, v, s, c, line, n: RowResult(
        line=line,
        region_id=REGION,
        instance_id=i,
        vpc_id=v,
        status=s,
        error_code=c,
        attempts=n,
    ),
    instances,
    vpcs,
    st.sampled_from(list(Status)),
    codes,
    st.integers(2, 20),
    st.integers(0, 6),
)
reports = st.lists(st.lists(results, max_size=12), min_size=1, max_size=4)
only_codes = st.frozensets(codes, min_size=1, max_size=3)


def keys_of(rows: Iterable[RowResult]) -> list[Key]:
    return [r.key for r in rows]


@settings(max_examples=200, deadline=None)
@given(history=reports, only=only_codes)
def test_merged_view_and_selection_properties(
    history: list[list[RowResult]], only: frozenset[str]
) -> None:
    """Merging reports keeps one row per identity (its latest outcome, every attempt
    counted); every selection is a subset of --all-failed; --only picks its codes only; a
    retry that settles what it chose leaves nothing to choose."""
    everything = [r for report in history for r in report]
    merged = merge_reports(*history)
    identities = [m.latest for m in merged if not m.latest.rejected]
    latest = latest_by_key(everything)
    assert {r.key: r for r in identities} == latest
    for m in merged:
        assert m.history[-1] == m.latest
        assert m.total_attempts == sum(r.attempts for r in m.history)

    all_failed = keys_of(select_for_retry(everything, RetrySelection(all_failed=True)))
    default = keys_of(select_for_retry(everything))
    chosen = list(select_for_retry(everything, RetrySelection(only=only)))
    assert set(default) <= set(all_failed)
    assert set(keys_of(chosen)) <= set(all_failed)
    assert all(r.error_code in only for r in chosen)
    assert len(set(all_failed)) == len(all_failed)

    # A retry whose rows all settle: the merged view's latest outcomes leave nothing to pick.
    retry_report = [r.replace(status=Status.ATTACHED, error_code="") for r in chosen]
    after = [m.latest for m in merge_reports(*history, retry_report)]
    assert list(select_for_retry(after, RetrySelection(only=only))) == []
    assert set(keys_of(select_for_retry(after, RetrySelection(all_failed=True)))) == set(
        all_failed
    ) - set(keys_of(chosen))
