"""The bulk run end to end: ``run_job`` against the real emulator over HTTP on 127.0.0.1.

Each test builds a small world, writes a pairs CSV, runs the whole job (reader, gates,
ledger, client, pool, report) and then checks three things that must agree: the report
(one row per input row), the JSON summary beside it, and the emulator's own view (its
model and ``GET /_emulator/state``: links, attach calls per instance, repeat attaches).
Rates are unlimited and retries fast wherever they are not the point, so the file stays quick.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bulk_attach.api.credentials import Credentials
from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.emulator.faults import FaultSettings
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.emulator.world import load_world
from bulk_attach.engine.control import StopReason
from bulk_attach.errors import ExitCode
from bulk_attach.files.report import COLUMNS, read_report
from bulk_attach.job import JobResult, run_job
from bulk_attach.settings import (
    AttemptSettings,
    ClientSettings,
    ReportFormat,
    RunSettings,
    SignatureVersion,
)

HZ = "cn-hangzhou"
SH = "cn-shanghai"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
UUID_UPPER = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
# Fast retries: the delays are not what these tests are about.
FAST = AttemptSettings(base_delay=0.005, max_delay=0.05, throttle_base_delay=0.005)

Pair = tuple[str, str, str]  # (region, instance, vpc)


# --- helpers ---------------------------------------------------------------------------------


def pairs_for(count: int, vpcs: Sequence[str], region: str = HZ, prefix: str = "i-t") -> list[Pair]:
    """``count`` distinct instances spread round-robin over ``vpcs``."""
    return [(region, f"{prefix}{n:05d}", vpcs[n % len(vpcs)]) for n in range(count)]


def world_for(
    pairs: Iterable[Pair], *, variant: str = "2018", default_quota: int = 1000
) -> EcsModel:
    """A model where every pair can be attached: classic Running instances, open VPCs."""
    model = EcsModel(variant=variant, default_quota=default_quota)
    for region, instance, vpc in pairs:
        if instance not in model.instances:
            model.add_instance(Instance(instance, region))
        if vpc not in model.vpcs:
            model.add_vpc(Vpc(vpc, region))
    return model


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Path:
    lines = [",".join(header), *(",".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def settings_for(tmp_path: Path, csv_path: Path, **changes: Any) -> RunSettings:
    fmt = changes.get("report_format", ReportFormat.CSV)
    defaults: dict[str, Any] = {
        "report_path": tmp_path / f"report.{ReportFormat(fmt).value}",
        "rate": None,
        "attempts": FAST,
    }
    return RunSettings(input_path=csv_path, **{**defaults, **changes})


def credentials_of(emu: RunningEmulator, *, secret: str | None = None) -> Credentials:
    return Credentials(
        access_key_id=emu.access_key_id,
        access_key_secret=emu.access_key_secret if secret is None else secret,
        security_token=None,
        source="test",
    )


async def run(
    emu: RunningEmulator,
    settings: RunSettings,
    *,
    signature: SignatureVersion = SignatureVersion.V3,
    credentials: Credentials | None = None,
) -> JobResult:
    client = ClientSettings(endpoint=emu.endpoint, signature=signature, read_timeout=5.0)
    return await run_job(settings, client, credentials or credentials_of(emu))


async def state(emu: RunningEmulator) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emu.endpoint}/_emulator/state") as response,
    ):
        assert response.status == 200
        data: dict[str, Any] = await response.json()
        return data


async def set_faults(emu: RunningEmulator, **faults: Any) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{emu.endpoint}/_emulator/faults", json=faults) as response,
    ):
        assert response.status == 200, await response.text()


def report_rows(result: JobResult) -> list[RowResult]:
    return list(read_report(result.report_path))


def by_line(rows: Iterable[RowResult]) -> dict[int, RowResult]:
    found: dict[int, RowResult] = {}
    for row in rows:
        assert row.line not in found, f"line {row.line} reported twice"
        found[row.line] = row
    return found


def assert_one_row_per_input(rows: Sequence[RowResult], input_rows: int) -> dict[int, RowResult]:
    """Lines 2..input_rows+1 (line 1 is the header), each exactly once."""
    lines = by_line(rows)
    assert sorted(lines) == list(range(2, input_rows + 2))
    return lines


def statuses(rows: Iterable[RowResult]) -> Counter[Status]:
    return Counter(row.status for row in rows)


def read_summary(result: JobResult) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.summary_path.read_text(encoding="utf-8"))
    return data


def call_codes(snapshot: dict[str, Any], action: str) -> dict[str, int]:
    codes: dict[str, int] = snapshot["calls"].get(action, {})
    return codes


# --- all rows succeed ------------------------------------------------------------------------


async def test_every_row_attaches_and_the_three_views_agree(tmp_path: Path) -> None:
    pairs = pairs_for(30, ["vpc-a", "vpc-b", "vpc-c"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path))
        snapshot = await state(emu)

    assert result.exit_code == ExitCode.OK
    assert result.stop_reason is None
    rows = report_rows(result)
    lines = assert_one_row_per_input(rows, len(pairs))
    for number, (region, instance, vpc) in enumerate(pairs, start=2):
        row = lines[number]
        assert (row.region_id, row.instance_id, row.vpc_id) == (region, instance, vpc)
        assert row.status is Status.ATTACHED
        assert UUID_UPPER.match(row.request_id), row.request_id
        assert row.error_code == ""
        assert row.attempts == 1
        assert row.started_at
        assert row.finished_at
        assert row.started_at <= row.finished_at
    # Every RequestId is the service's own, one per call.
    assert len({row.request_id for row in rows}) == len(rows)

    # The emulator agrees: exactly the input's links, one attach call per instance.
    assert dict(emu.model.links) == {instance: vpc for _, instance, vpc in pairs}
    assert snapshot["attach_attempts"] == {instance: 1 for _, instance, _ in pairs}
    assert snapshot["total_repeat_attaches"] == 0
    assert call_codes(snapshot, "AttachClassicLinkVpc") == {"OK": len(pairs)}

    # The report's header, and the summary beside it.
    header = result.report_path.read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == list(COLUMNS)
    assert result.summary_path.parent == result.report_path.parent
    summary = read_summary(result)
    assert summary["total"] == len(pairs)
    assert summary["by_status"]["attached"] == len(pairs)
    assert summary["not_succeeded"] == 0
    assert summary["exit_code"] == ExitCode.OK
    assert {vpc: figures["attached"] for vpc, figures in summary["by_vpc"].items()} == {
        "vpc-a": 10,
        "vpc-b": 10,
        "vpc-c": 10,
    }
    assert summary["by_vpc"]["vpc-a"]["linked"] == 10
    assert summary == result.summary


async def test_a_second_run_sends_nothing_and_reports_already_linked(tmp_path: Path) -> None:
    pairs = pairs_for(12, ["vpc-a", "vpc-b"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        first = await run(emu, settings_for(tmp_path, csv_path))
        second = await run(emu, settings_for(tmp_path, csv_path, report_path=tmp_path / "2.csv"))
        snapshot = await state(emu)

    assert first.exit_code == second.exit_code == ExitCode.OK
    assert statuses(report_rows(second)) == {Status.ALREADY_LINKED: len(pairs)}
    assert snapshot["total_attach_attempts"] == len(pairs)  # the first run's, nothing more


# --- every documented error lands in the report with its code -------------------------------

# instance -> (its VPC, the 2018 code, its HTTP status, the current doc's code if it differs);
# the current doc answers every one of them with 403.
ERRORS: dict[str, tuple[str, str, int, str | None]] = {
    "i-starting": ("vpc-main", "InvalidStatus.InstanceStatus", 403, None),
    "i-locked": ("vpc-main", "InvalidStatus.InstanceLocked", 403, None),
    "i-foreign": ("vpc-main", "InvalidInstanceId.NotBelong", 403, None),
    "i-missing": ("vpc-main", "InvalidInstanceId.NotFound", 404, None),
    "i-vpctype": ("vpc-main", "InvalidInstanceId.MalFormed", 400, None),
    "i-elsewhere": ("vpc-main", "Abs.InvalidInstanceId.MalFormed", 400, "OperationDenied"),
    "i-toclosed": ("vpc-closed", "OperationDenied", 403, None),
    "i-tomissing": ("vpc-missing", "InvalidVpcId.Malformed", 400, None),
    "i-insh": ("vpc-main", "InvalidRegionId.Malformed", 400, "InvalidInstanceId.LimitedRegion"),
    "i-tofull": ("vpc-full", "QuotaExceeded", 403, None),
}


def expected_error(instance: str, variant: str) -> tuple[str, int]:
    _, code, status, current = ERRORS[instance]
    return (code, status) if variant == "2018" else (current or code, 403)


def error_world(variant: str) -> EcsModel:
    model = EcsModel(variant=variant)
    for vpc in ("vpc-main", "vpc-other"):
        model.add_vpc(Vpc(vpc, HZ))
    model.add_vpc(Vpc("vpc-closed", HZ, classic_link_enabled=False))
    model.add_vpc(Vpc("vpc-full", HZ, quota=0))  # the service's quota, unknown to the run
    for name in ("i-ok", "i-linked", "i-elsewhere", "i-toclosed", "i-tomissing", "i-tofull"):
        model.add_instance(Instance(name, HZ))
    model.add_instance(Instance("i-starting", HZ, status="Starting"))
    model.add_instance(Instance("i-locked", HZ, locked=True))
    model.add_instance(Instance("i-foreign", HZ, owner="another-account"))
    model.add_instance(Instance("i-vpctype", HZ, network_type="vpc"))
    model.add_instance(Instance("i-insh", SH))
    model.link("i-linked", "vpc-main")
    model.link("i-elsewhere", "vpc-other")
    return model


@pytest.mark.parametrize("variant", ["2018", "current"])
async def test_every_documented_error_is_reported_with_its_code(
    tmp_path: Path, variant: str
) -> None:
    rows = [(HZ, "i-ok", "vpc-main"), (HZ, "i-linked", "vpc-main")]
    rows += [(HZ, instance, vpc) for instance, (vpc, *_) in ERRORS.items()]
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], rows)
    async with running_emulator(error_world(variant), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path, concurrency=4))
        snapshot = await state(emu)

    assert result.exit_code == ExitCode.SOME_ROWS_FAILED
    assert result.stop_reason is None  # a row's own error never stops the run
    lines = assert_one_row_per_input(report_rows(result), len(rows))
    assert lines[2].status is Status.ATTACHED
    assert lines[3].status is Status.ALREADY_LINKED
    assert lines[3].attempts == 0
    for number, instance in enumerate(ERRORS, start=4):
        row = lines[number]
        code, status = expected_error(instance, variant)
        assert (row.instance_id, row.vpc_id) == (instance, ERRORS[instance][0])
        assert (row.status, row.error_code, row.http_status) == (Status.FAILED, code, status), row
        assert row.message, row
        assert UUID_UPPER.match(row.request_id), row
        assert row.attempts == 1, row  # permanent: never sent twice
    assert emu.model.links.get("i-ok") == "vpc-main"
    assert snapshot["total_repeat_attaches"] == 0
    assert "i-linked" not in snapshot["attach_attempts"]  # already linked: not sent
    summary = read_summary(result)
    expected_codes = Counter(expected_error(instance, variant)[0] for instance in ERRORS)
    assert summary["by_error_code"] == dict(expected_codes)


@pytest.mark.parametrize("variant", ["2018", "current"])
async def test_the_samples_world_gives_what_its_comments_promise(
    tmp_path: Path, variant: str
) -> None:
    """samples/world.json documents its traps; the run must meet each one."""
    world = load_world(SAMPLES / "world.json", variant=variant)
    full_vpc, closed_vpc = "vpc-bp1on8j1dybv7zxg02vdh", "vpc-uf6ok50llsd9d2veyx0gs"
    async with running_emulator(world, EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, SAMPLES / "pairs.csv"))
        model = emu.model

    rows = report_rows(result)
    lines = assert_one_row_per_input(rows, 300)
    assert result.exit_code == ExitCode.SOME_ROWS_FAILED
    codes = Counter(row.error_code for row in rows if not row.succeeded)
    linked_elsewhere = "Abs.InvalidInstanceId.MalFormed" if variant == "2018" else "OperationDenied"
    by_instance = {row.instance_id: row for row in lines.values()}
    assert by_instance["i-bp1bvfivn6lcjzwxptfq"].error_code == "InvalidInstanceId.NotBelong"
    assert by_instance["i-bp1hbn5k25c6co96tq0i"].error_code == "InvalidInstanceId.MalFormed"
    assert by_instance["i-bp1mzf2b35qfw7d8l65z"].error_code == "InvalidStatus.InstanceStatus"
    assert by_instance["i-bp1xxo68uov65g0f2e6i"].error_code == "InvalidStatus.InstanceLocked"
    assert by_instance["i-uf6d73lly660mfoolbdo"].error_code == linked_elsewhere
    assert by_instance["i-uf671vr1vr1viod06p3s"].error_code == "InvalidInstanceId.NotFound"
    assert by_instance["i-uf6urfkv1ufb47oypc6l"].status is Status.ALREADY_LINKED
    closed = [row for row in rows if row.vpc_id == closed_vpc]
    assert len(closed) == 4
    assert {row.error_code for row in closed} == {"OperationDenied"}
    # Quota 30 with 26 links: 4 of its 8 rows attach, 4 end with QuotaExceeded.
    full = [row for row in rows if row.vpc_id == full_vpc]
    assert statuses(full)[Status.ATTACHED] == 4
    assert [r.error_code for r in full if r.status is not Status.ATTACHED] == ["QuotaExceeded"] * 4
    assert model.link_count(full_vpc) == 30
    # Nothing else went wrong.
    assert statuses(rows)[Status.ATTACHED] == 300 - 1 - 6 - 4 - 4
    assert sum(codes.values()) == 6 + 4 + 4


# --- quotas ----------------------------------------------------------------------------------


async def test_a_vpc_with_998_links_takes_exactly_two_more(tmp_path: Path) -> None:
    new = pairs_for(5, ["vpc-q"])
    model = world_for(new)
    for n in range(998):
        model.add_instance(Instance(f"i-seed{n:04d}", HZ))
        model.link(f"i-seed{n:04d}", "vpc-q")
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], new)
    async with running_emulator(model, EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path, vpc_quota=1000))
        snapshot = await state(emu)

    rows = report_rows(result)
    assert_one_row_per_input(rows, 5)
    assert statuses(rows) == {Status.ATTACHED: 2, Status.SKIPPED: 3}
    for row in rows:
        if row.status is Status.SKIPPED:
            assert row.error_code == "QuotaExceeded"
            assert row.attempts == 0
            assert row.http_status == 0
            assert row.request_id == ""
    assert snapshot["total_attach_attempts"] == 2
    assert call_codes(snapshot, "AttachClassicLinkVpc") == {"OK": 2}
    assert emu.model.link_count("vpc-q") == 1000
    assert result.exit_code == ExitCode.SOME_ROWS_FAILED
    assert read_summary(result)["by_vpc"]["vpc-q"]["headroom"] == 0


async def test_the_vpc_quota_option_is_the_ceiling(tmp_path: Path) -> None:
    pairs = pairs_for(8, ["vpc-small"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path, vpc_quota=3))
        snapshot = await state(emu)
    assert statuses(report_rows(result)) == {Status.ATTACHED: 3, Status.SKIPPED: 5}
    assert snapshot["total_attach_attempts"] == 3


async def test_the_services_quota_exceeded_closes_the_vpc_for_the_run(tmp_path: Path) -> None:
    concurrency = 4
    tight = pairs_for(20, ["vpc-tight"], prefix="i-q")
    roomy = pairs_for(10, ["vpc-roomy"], prefix="i-r")
    pairs = [pair for n, pair in enumerate(tight) for pair in [pair, *roomy[n : n + 1]]]
    model = world_for(pairs)
    model.add_vpc(Vpc("vpc-tight", HZ, quota=3))  # the service says 3; the run thinks 1000
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(model, EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path, concurrency=concurrency))
        snapshot = await state(emu)

    rows = report_rows(result)
    assert_one_row_per_input(rows, len(pairs))
    tight_rows = [row for row in rows if row.vpc_id == "vpc-tight"]
    roomy_rows = [row for row in rows if row.vpc_id == "vpc-roomy"]
    assert statuses(roomy_rows) == {Status.ATTACHED: 10}  # another VPC is not affected
    assert statuses(tight_rows)[Status.ATTACHED] == 3
    refused = [row for row in tight_rows if row.status is Status.FAILED]
    skipped = [row for row in tight_rows if row.status is Status.SKIPPED]
    assert len(refused) + len(skipped) == 17
    assert refused, "the service's QuotaExceeded must have been met at least once"
    assert {(row.error_code, row.http_status) for row in refused} == {("QuotaExceeded", 403)}
    # Only rows already in flight when the first refusal came back were sent after it.
    assert len(refused) <= concurrency
    assert {(row.error_code, row.attempts) for row in skipped} == {("QuotaExceeded", 0)}
    tight_calls = sum(n for i, n in snapshot["attach_attempts"].items() if i.startswith("i-q"))
    assert tight_calls == 3 + len(refused)
    assert emu.model.link_count("vpc-tight") == 3


async def test_the_corrected_quota_count_matches_the_service(tmp_path: Path) -> None:
    """After the service's QuotaExceeded, the summary's link count is the VPC's real one."""
    pairs = pairs_for(6, ["vpc-tight"])
    model = world_for(pairs)
    model.add_vpc(Vpc("vpc-tight", HZ, quota=2))
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(model, EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path, concurrency=1))
        real = emu.model.link_count("vpc-tight")
    rows = report_rows(result)
    assert statuses(rows) == {Status.ATTACHED: 2, Status.FAILED: 1, Status.SKIPPED: 3}
    figures = read_summary(result)["by_vpc"]["vpc-tight"]
    assert figures["headroom"] == 0
    assert figures["linked"] == real == 2
    for row in rows:
        if row.status is Status.SKIPPED:
            assert f"({real}/" in row.message, row.message


# --- throttling, ambiguous answers ---------------------------------------------------------


async def test_a_throttling_storm_ends_with_every_row_attached(tmp_path: Path) -> None:
    pairs = pairs_for(100, ["vpc-a", "vpc-b"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    emulator = EmulatorSettings(faults=FaultSettings(qps=40, retry_after_ms=50))
    async with running_emulator(world_for(pairs), emulator) as emu:
        # The product's own retry settings: surviving a storm is what they are for.
        settings = settings_for(tmp_path, csv_path, rate=120.0, attempts=AttemptSettings())
        result = await run(emu, settings)
        snapshot = await state(emu)

    rows = report_rows(result)
    assert_one_row_per_input(rows, len(pairs))
    assert statuses(rows) == {Status.ATTACHED: len(pairs)}
    assert result.exit_code == ExitCode.OK
    assert call_codes(snapshot, "AttachClassicLinkVpc").get("Throttling.User", 0) > 0, (
        "no storm happened: the test proves nothing"
    )
    assert snapshot["total_repeat_attaches"] == 0
    assert dict(emu.model.links) == {instance: vpc for _, instance, vpc in pairs}


@pytest.mark.parametrize("fault", ["commit_then_error_rate", "commit_then_drop_rate"])
async def test_an_answer_lost_after_the_commit_is_read_back_not_resent(
    tmp_path: Path, fault: str
) -> None:
    pairs = pairs_for(10, ["vpc-a", "vpc-b"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        await set_faults(emu, **{fault: 1.0})  # scripted through the control endpoint
        result = await run(emu, settings_for(tmp_path, csv_path))
        snapshot = await state(emu)

    rows = report_rows(result)
    assert_one_row_per_input(rows, len(pairs))
    assert statuses(rows) == {Status.ATTACHED: len(pairs)}
    assert result.exit_code == ExitCode.OK
    assert snapshot["attach_attempts"] == {instance: 1 for _, instance, _ in pairs}
    assert snapshot["repeat_attaches"] == {}
    assert snapshot["faults"]["injected"] == {fault.removesuffix("_rate"): len(pairs)}
    assert dict(emu.model.links) == {instance: vpc for _, instance, vpc in pairs}


async def test_ambiguous_faults_never_cause_a_second_attach(tmp_path: Path) -> None:
    pairs = pairs_for(200, ["vpc-a", "vpc-b", "vpc-c", "vpc-d"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    faults = EmulatorSettings(
        seed=20240611,
        faults=FaultSettings(
            error_rate=0.06,
            unavailable_rate=0.06,
            drop_rate=0.06,
            commit_then_error_rate=0.05,
            commit_then_drop_rate=0.05,
        ),
    )
    async with running_emulator(world_for(pairs), faults) as emu:
        # Enough attempts that 20-30 % faults cannot exhaust a row (0.3**12 per row).
        settings = settings_for(tmp_path, csv_path, attempts=AttemptSettings(
            max_attempts=12, base_delay=0.005, max_delay=0.05, throttle_base_delay=0.005
        ))  # fmt: skip
        result = await run(emu, settings)
        snapshot = await state(emu)

    rows = report_rows(result)
    assert_one_row_per_input(rows, len(pairs))
    assert statuses(rows) == {Status.ATTACHED: len(pairs)}, [
        row for row in rows if row.status is not Status.ATTACHED
    ]
    assert dict(emu.model.links) == {instance: vpc for _, instance, vpc in pairs}
    assert snapshot["total_repeat_attaches"] == 0
    injected = snapshot["faults"]["injected"]
    for kind in ("internal_error", "unavailable", "drop", "commit_then_error", "commit_then_drop"):
        assert injected.get(kind, 0) > 0, f"no {kind} was injected: {injected}"
    # Attach calls faulted before running were sent again (after a read-back found no
    # link), yet every instance's attach ran exactly once.
    assert sum(call_codes(snapshot, "AttachClassicLinkVpc").values()) > len(pairs)
    assert snapshot["attach_attempts"] == {instance: 1 for _, instance, _ in pairs}


async def test_hung_requests_time_out_and_every_row_still_attaches(tmp_path: Path) -> None:
    """A hang outlives the read timeout, then commits late: the read-back decides."""
    pairs = pairs_for(30, ["vpc-a", "vpc-b"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    hangs = EmulatorSettings(seed=3, faults=FaultSettings(hang_rate=0.1, hang_seconds=0.6))
    async with running_emulator(world_for(pairs), hangs) as emu:
        settings = settings_for(tmp_path, csv_path, attempts=AttemptSettings(
            max_attempts=10, base_delay=0.005, max_delay=0.05, throttle_base_delay=0.005
        ))  # fmt: skip
        client = ClientSettings(endpoint=emu.endpoint, read_timeout=0.2)
        result = await run_job(settings, client, credentials_of(emu))
        snapshot = await state(emu)

    rows = report_rows(result)
    assert_one_row_per_input(rows, len(pairs))
    assert statuses(rows) == {Status.ATTACHED: len(pairs)}, rows
    assert snapshot["faults"]["injected"].get("hang", 0) > 0
    assert dict(emu.model.links) == {instance: vpc for _, instance, vpc in pairs}


# --- stopping early --------------------------------------------------------------------------


@pytest.mark.parametrize("wrong", ["secret", "key id"])
async def test_a_credential_error_stops_the_run_with_exit_3(tmp_path: Path, wrong: str) -> None:
    concurrency = 4
    pairs = pairs_for(60, ["vpc-a", "vpc-b", "vpc-c", "vpc-d", "vpc-e"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        good = credentials_of(emu)
        bad = Credentials(
            access_key_id=good.access_key_id if wrong == "secret" else "LTAIunknownunknown00",
            access_key_secret="not-the-secret-at-all-0123456789",
            source="test",
        )
        result = await run(
            emu, settings_for(tmp_path, csv_path, concurrency=concurrency), credentials=bad
        )
        snapshot = await state(emu)

    expected = "SignatureDoesNotMatch" if wrong == "secret" else "InvalidAccessKeyId.NotFound"
    assert result.exit_code == ExitCode.CONFIG
    assert result.stop_reason is StopReason.FATAL
    rows = report_rows(result)
    assert_one_row_per_input(rows, len(pairs))
    counts = statuses(rows)
    assert set(counts) <= {Status.FAILED, Status.SKIPPED}
    assert counts[Status.FAILED] >= 1
    assert counts[Status.SKIPPED] >= len(pairs) - concurrency
    for row in rows:
        if row.status is Status.FAILED:
            assert row.error_code == expected, row
        else:
            assert row.attempts == 0
            assert "not attempted" in row.message, row.message
    total_calls = sum(sum(codes.values()) for codes in snapshot["calls"].values())
    assert total_calls <= 2 * concurrency, snapshot["calls"]
    assert sum(call_codes(snapshot, "AttachClassicLinkVpc").values()) <= concurrency
    assert snapshot["total_attach_attempts"] == 0  # nothing got past authentication
    assert emu.model.links == {}
    summary = read_summary(result)
    assert summary["exit_code"] == ExitCode.CONFIG
    assert summary["stopped"]


async def test_the_failure_threshold_stops_new_rows_with_exit_4(tmp_path: Path) -> None:
    # Three of every four rows go to a VPC with ClassicLink disabled.
    pairs = pairs_for(80, ["vpc-closed", "vpc-closed", "vpc-open", "vpc-closed"])
    model = world_for(pairs)
    model.add_vpc(Vpc("vpc-closed", HZ, classic_link_enabled=False))
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(model, EmulatorSettings()) as emu:
        settings = settings_for(
            tmp_path, csv_path, concurrency=2, max_failure_rate=0.5, min_settled=10
        )
        result = await run(emu, settings)
        snapshot = await state(emu)

    assert result.exit_code == ExitCode.FAILURE_THRESHOLD
    assert result.stop_reason is StopReason.THRESHOLD
    rows = report_rows(result)
    assert_one_row_per_input(rows, len(pairs))
    counts = statuses(rows)
    assert counts[Status.SKIPPED] >= len(pairs) // 2
    sent = counts[Status.FAILED] + counts[Status.ATTACHED]
    assert sent >= 10
    assert snapshot["total_attach_attempts"] == sent
    assert all(
        "not attempted" in row.message and row.attempts == 0
        for row in rows
        if row.status is Status.SKIPPED
    )


# --- the shape of the input and the report ---------------------------------------------------


async def test_rows_over_two_regions_with_extra_columns(tmp_path: Path) -> None:
    pairs = pairs_for(10, ["vpc-hz1", "vpc-hz2"]) + pairs_for(10, ["vpc-sh1"], SH, "i-s")
    header = ["Note", "RegionId", "InstanceId", "VpcId", "Owner"]
    rows = [(f"note {n}", *pair, f"team-{n % 3}") for n, pair in enumerate(pairs)]
    csv_path = write_csv(tmp_path / "pairs.csv", header, rows)
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path, rate=500.0))
        snapshot = await state(emu)

    lines = assert_one_row_per_input(report_rows(result), len(rows))
    assert result.exit_code == ExitCode.OK
    for number, (note, region, instance, vpc, owner) in enumerate(rows, start=2):
        row = lines[number]
        assert (row.region_id, row.instance_id, row.vpc_id) == (region, instance, vpc)
        assert row.status is Status.ATTACHED
        assert row.extra == (("Note", note), ("Owner", owner))
    assert dict(emu.model.links) == {instance: vpc for _, instance, vpc in pairs}
    assert snapshot["total_attach_attempts"] == len(pairs)
    # Extra columns follow the report's own, in input order.
    header_line = result.report_path.read_text(encoding="utf-8").splitlines()[0]
    assert header_line.split(",") == [*COLUMNS, "Note", "Owner"]


async def test_region_from_the_settings_when_the_csv_has_none(tmp_path: Path) -> None:
    pairs = pairs_for(6, ["vpc-a"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["InstanceId", "VpcId"], [p[1:] for p in pairs])
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path, default_region=HZ))
    rows = report_rows(result)
    assert statuses(rows) == {Status.ATTACHED: 6}
    assert {row.region_id for row in rows} == {HZ}


async def test_a_json_lines_report(tmp_path: Path) -> None:
    pairs = pairs_for(8, ["vpc-a"])
    header = ["RegionId", "InstanceId", "VpcId", "Ticket"]
    rows = [(*pair, f"CHG-{n}") for n, pair in enumerate(pairs)]
    csv_path = write_csv(tmp_path / "pairs.csv", header, rows)
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path, report_format=ReportFormat.JSONL))

    assert result.report_path.suffix == ".jsonl"
    records = [json.loads(line) for line in result.report_path.read_text().splitlines()]
    assert len(records) == len(rows)
    assert sorted(record["line"] for record in records) == list(range(2, len(rows) + 2))
    for record in records:
        assert set(COLUMNS) <= set(record)
        assert record["Status"] == "attached"
        assert isinstance(record["Attempts"], int)
        assert record["Extra"] == {"Ticket": f"CHG-{record['line'] - 2}"}
        assert UUID_UPPER.match(record["RequestId"])
    assert statuses(report_rows(result)) == {Status.ATTACHED: len(rows)}


async def test_duplicate_and_conflicting_rows(tmp_path: Path) -> None:
    rows = [
        (HZ, "i-dup", "vpc-a"),  # 2: runs
        (HZ, "i-dup", "vpc-a"),  # 3: duplicate of 2
        (HZ, "i-conflict", "vpc-a"),  # 4: conflicting with 5: neither is sent
        (HZ, "i-conflict", "vpc-b"),  # 5
        (HZ, "i-fine", "vpc-b"),  # 6: runs
        (HZ, "i-dup", "vpc-a"),  # 7: duplicate again
    ]
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], rows)
    async with running_emulator(world_for(rows), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path))
        snapshot = await state(emu)

    lines = assert_one_row_per_input(report_rows(result), len(rows))
    assert lines[2].status is Status.ATTACHED
    assert lines[6].status is Status.ATTACHED
    for number in (3, 7):
        assert (lines[number].status, lines[number].error_code) == (
            Status.DUPLICATE,
            "Input.Duplicate",
        )
        assert "line 2" in lines[number].message
    for number in (4, 5):
        assert (lines[number].status, lines[number].error_code) == (
            Status.INVALID,
            "Input.ConflictingVpc",
        )
    assert snapshot["attach_attempts"] == {"i-dup": 1, "i-fine": 1}
    assert "i-conflict" not in emu.model.links
    # The invalid rows make the run unsuccessful; duplicates alone would not.
    assert result.exit_code == ExitCode.SOME_ROWS_FAILED


async def test_duplicates_alone_do_not_fail_the_run(tmp_path: Path) -> None:
    rows = [(HZ, "i-one", "vpc-a"), (HZ, "i-one", "vpc-a")]
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], rows)
    async with running_emulator(world_for(rows), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path))
    assert result.exit_code == ExitCode.OK
    assert statuses(report_rows(result)) == {Status.ATTACHED: 1, Status.DUPLICATE: 1}


async def test_invalid_rows_are_reported_and_never_sent(tmp_path: Path) -> None:
    rows = [
        (HZ, "i-good", "vpc-a"),
        (HZ, "x-bad", "vpc-a"),
        (HZ, "i-good2", "notavpc"),
        ("Hangzhou!", "i-good3", "vpc-a"),
        (HZ, "", "vpc-a"),
    ]
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], rows)
    async with running_emulator(world_for(rows[:1]), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path))
        snapshot = await state(emu)
    lines = assert_one_row_per_input(report_rows(result), len(rows))
    assert lines[2].status is Status.ATTACHED
    for number in (3, 4, 5, 6):
        assert lines[number].status is Status.INVALID
        assert lines[number].error_code.startswith("Input."), lines[number]
        assert f"pairs.csv:{number}:" in lines[number].message
    assert snapshot["attach_attempts"] == {"i-good": 1}
    assert result.exit_code == ExitCode.SOME_ROWS_FAILED


async def test_signature_v1_end_to_end(tmp_path: Path) -> None:
    pairs = pairs_for(10, ["vpc-a", "vpc-b"])
    csv_path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(world_for(pairs), EmulatorSettings()) as emu:
        result = await run(emu, settings_for(tmp_path, csv_path), signature=SignatureVersion.V1)
        snapshot = await state(emu)
    assert result.exit_code == ExitCode.OK
    assert statuses(report_rows(result)) == {Status.ATTACHED: len(pairs)}
    assert call_codes(snapshot, "AttachClassicLinkVpc") == {"OK": len(pairs)}
    assert dict(emu.model.links) == {instance: vpc for _, instance, vpc in pairs}


async def test_sts_credentials_end_to_end(tmp_path: Path) -> None:
    pairs = pairs_for(8, ["vpc-a"])
    key, secret, token = "STS.NKeyForTheTest0001", "sts-secret-for-the-test-000000", "tok" * 20
    emulator = EmulatorSettings(access_keys={key: secret}, security_tokens={key: token})
    creds = Credentials(key, secret, token, source="test")
    async with running_emulator(world_for(pairs), emulator) as emu:
        for n, signature in enumerate(SignatureVersion):
            half = pairs[n * 4 : n * 4 + 4]
            csv_path = write_csv(
                tmp_path / f"{signature}.csv", ["RegionId", "InstanceId", "VpcId"], half
            )
            settings = settings_for(tmp_path, csv_path, report_path=tmp_path / f"{signature}.r")
            result = await run(emu, settings, signature=signature, credentials=creds)
            assert result.exit_code == ExitCode.OK, signature
            assert statuses(report_rows(result)) == {Status.ATTACHED: 4}
        snapshot = await state(emu)
    assert snapshot["total_attach_attempts"] == len(pairs)
