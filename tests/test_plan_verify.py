"""plan and verify on the emulator: call counts, verdicts, exit codes; the lookups' batching.

Calls are counted twice and the two counts must agree: by the emulator (what arrived) and
by the job's own summary (what the counting gate let out).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bulk_attach.api.credentials import Credentials
from bulk_attach.core.outcomes import Status
from bulk_attach.core.prediction import Variant
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.errors import ExitCode
from bulk_attach.files.csv_input import read_pairs
from bulk_attach.files.report import read_report
from bulk_attach.job import run_job
from bulk_attach.plan import PlanSettings, plan_job
from bulk_attach.progress import render_read_summary
from bulk_attach.session import open_session
from bulk_attach.settings import AttemptSettings, ClientSettings, RunSettings
from bulk_attach.verify import ReadBy, VerifySettings, verify_job

HZ, SH = "cn-hangzhou", "cn-shanghai"
FAST = AttemptSettings(base_delay=0.001, max_delay=0.01, throttle_base_delay=0.001)


def creds(emu: RunningEmulator) -> Credentials:
    return Credentials(emu.access_key_id, emu.access_key_secret, None, "test")


def calls(emu: RunningEmulator) -> dict[str, int]:
    return {action: sum(codes.values()) for action, codes in emu.emulator.calls.items()}


def fleet(rows: int, vpcs: int, region: str = HZ) -> tuple[EcsModel, list[tuple[str, str, str]]]:
    model = EcsModel(regions=[region])
    pairs = []
    for v in range(vpcs):
        model.add_vpc(Vpc(f"vpc-c{v:02d}", region))
    for n in range(rows):
        model.add_instance(Instance(f"i-c{n:06d}", region))
        pairs.append((region, f"i-c{n:06d}", f"vpc-c{n % vpcs:02d}"))
    return model, pairs


def write_rows(path: Path, rows: Sequence[tuple[str, str, str]]) -> Path:
    lines = ["RegionId,InstanceId,VpcId", *(",".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- plan: calls ----------------------------------------------------------------------------


async def test_plan_of_10000_rows_over_20_vpcs_takes_batched_calls(tmp_path: Path) -> None:
    model, rows = fleet(10_000, 20)
    for n in range(150):  # one VPC holds 150 other links: two pages to read
        model.add_instance(Instance(f"i-o{n:04d}", HZ))
        model.link(f"i-o{n:04d}", "vpc-c00")
    pairs = write_rows(tmp_path / "pairs.csv", rows)
    async with running_emulator(model, EmulatorSettings()) as emu:
        settings = PlanSettings(tmp_path / "plan.csv", rate=None, attempts=FAST)
        result = await plan_job(
            read_pairs(pairs), settings, ClientSettings(endpoint=emu.endpoint), creds(emu)
        )
        arrived = calls(emu)
    # 100 DescribeInstances, 20 DescribeVpcAttribute, 21 link pages of the 20 VPCs, and the
    # links of the 10,000 instances none of those pages showed (100 IDs a call).
    assert arrived == {
        "DescribeInstances": 100,
        "DescribeVpcAttribute": 20,
        "DescribeClassicLinkInstances": 21 + 100,
    }
    assert result.summary["calls"]["by_action"] == arrived
    assert result.summary["calls"]["by_lookup"]["vpc_links"] == {"DescribeClassicLinkInstances": 21}
    assert result.exit_code == ExitCode.OK
    assert result.summary["by_status"]["would_attach"] == 10_000
    assert result.summary["by_vpc"]["vpc-c00"]["linked"] == 150
    assert result.summary["by_vpc"]["vpc-c00"]["headroom"] == 1000 - 150 - 500
    assert json.loads(result.summary_path.read_text()) == result.summary


async def test_plan_reports_each_row_and_exit_1_when_any_would_not_attach(tmp_path: Path) -> None:
    model = EcsModel(regions=[HZ, SH], variant="2018")
    model.add_vpc(Vpc("vpc-a", HZ))
    model.add_vpc(Vpc("vpc-b", HZ))
    model.add_vpc(Vpc("vpc-off", HZ, classic_link_enabled=False))
    model.add_vpc(Vpc("vpc-sh", SH))
    model.add_vpc(Vpc("vpc-sh2", SH))
    for iid, kwargs in {
        "i-ok": {},
        "i-here": {},
        "i-there": {},
        "i-stopping": {"status": "Stopping"},
        "i-vpc": {"network_type": "vpc"},
        "i-theirs": {"owner": "other"},
        "i-off": {},
        "i-far": {},
    }.items():
        model.add_instance(Instance(iid, HZ, **kwargs))  # type: ignore[arg-type]
    model.link("i-here", "vpc-a")
    model.link("i-there", "vpc-b")
    rows = [
        (HZ, "i-ok", "vpc-a"),
        (HZ, "i-here", "vpc-a"),
        (HZ, "i-there", "vpc-a"),
        (HZ, "i-stopping", "vpc-a"),
        (HZ, "i-vpc", "vpc-a"),
        (HZ, "i-theirs", "vpc-a"),
        (HZ, "i-off", "vpc-off"),
        (HZ, "i-ok2", "vpc-missing"),
        (HZ, "i-far", "vpc-sh"),
        (SH, "i-sh", "vpc-sh2"),
    ]
    pairs = write_rows(tmp_path / "pairs.csv", rows)
    async with running_emulator(model, EmulatorSettings()) as emu:
        settings = PlanSettings(tmp_path / "plan.jsonl", rate=None, variant=Variant.V2018)
        result = await plan_job(
            read_pairs(pairs), settings, ClientSettings(endpoint=emu.endpoint), creds(emu)
        )
    got = {r.instance_id: (r.status, r.error_code) for r in read_report(tmp_path / "plan.jsonl")}
    assert got == {
        "i-ok": (Status.WOULD_ATTACH, ""),
        "i-here": (Status.ALREADY_LINKED, ""),
        "i-there": (Status.WOULD_FAIL, "Abs.InvalidInstanceId.MalFormed"),
        "i-stopping": (Status.WOULD_FAIL, "InvalidStatus.InstanceStatus"),
        "i-vpc": (Status.WOULD_FAIL, "InvalidInstanceId.MalFormed"),
        "i-theirs": (Status.UNDETERMINED, ""),
        "i-off": (Status.WOULD_FAIL, "OperationDenied"),
        "i-ok2": (Status.WOULD_FAIL, "InvalidVpcId.Malformed"),
        "i-far": (Status.WOULD_FAIL, "InvalidRegionId.Malformed"),
        "i-sh": (Status.UNDETERMINED, ""),
    }
    messages = {r.instance_id: r.message for r in read_report(tmp_path / "plan.jsonl")}
    assert "linked to vpc-b" in messages["i-there"]
    assert "is Stopping" in messages["i-stopping"]
    assert "InvalidInstanceId.NotBelong" in messages["i-theirs"]
    assert result.exit_code == ExitCode.SOME_ROWS_FAILED
    assert result.summary["by_status"]["undetermined"] == 2


async def test_plan_sends_nothing_and_honours_vpc_quota(tmp_path: Path) -> None:
    model, rows = fleet(10, 1)
    pairs = write_rows(tmp_path / "pairs.csv", rows)
    async with running_emulator(model, EmulatorSettings()) as emu:
        settings = PlanSettings(tmp_path / "plan.csv", rate=None, vpc_quota=4)
        result = await plan_job(
            read_pairs(pairs), settings, ClientSettings(endpoint=emu.endpoint), creds(emu)
        )
        assert "AttachClassicLinkVpc" not in calls(emu)
    statuses = [r.status for r in read_report(tmp_path / "plan.csv")]
    assert statuses == [Status.WOULD_ATTACH] * 4 + [Status.WOULD_SKIP] * 6
    assert result.summary["by_vpc"]["vpc-c00"]["headroom"] == 0
    text = render_read_summary(result.summary)
    assert "status: would_attach 4, would_skip 6" in text
    assert "vpc-c00: would_attach 4, would_skip 6 [links 0 now, 4 after the plan, of 4" in text
    assert "calls: 4 (DescribeClassicLinkInstances 2, DescribeInstances 1" in text


# --- verify -----------------------------------------------------------------------------------


async def test_verify_after_a_run_then_after_changes(tmp_path: Path) -> None:
    model, rows = fleet(250, 3)
    model.add_vpc(Vpc("vpc-other", HZ))
    pairs = write_rows(tmp_path / "pairs.csv", rows)
    async with running_emulator(model, EmulatorSettings()) as emu:
        client, key = ClientSettings(endpoint=emu.endpoint), creds(emu)
        run = RunSettings(
            input_path=pairs, report_path=tmp_path / "run.csv", rate=None, attempts=FAST
        )
        assert (await run_job(run, client, key)).exit_code == ExitCode.OK
        emu.emulator.calls.clear()

        # A run report is accepted as input.
        check = VerifySettings(tmp_path / "verify.csv", rate=None)
        result = await verify_job(read_pairs(tmp_path / "run.csv"), check, client, key)
        assert result.exit_code == ExitCode.OK
        assert result.summary["by_status"]["linked"] == 250
        assert calls(emu) == {"DescribeClassicLinkInstances": 3}  # 250 instances, 100 a call

        live = emu.model
        live.detach("default", HZ, "i-c000000", "vpc-c00")
        live.detach("default", HZ, "i-c000001", "vpc-c01")
        live.link("i-c000001", "vpc-other")
        result = await verify_job(read_pairs(pairs), check, client, key)
    got = {r.instance_id: r for r in read_report(tmp_path / "verify.csv")}
    assert got["i-c000000"].status is Status.NOT_LINKED
    assert got["i-c000001"].status is Status.LINKED_ELSEWHERE
    assert "vpc-other" in got["i-c000001"].message
    assert got["i-c000002"].status is Status.LINKED
    assert result.exit_code == ExitCode.SOME_ROWS_FAILED
    assert result.summary["by_status"] == {
        "linked": 248,
        "not_linked": 1,
        "linked_elsewhere": 1,
        "failed": 0,
        "invalid": 0,
        "duplicate": 0,
    }


@pytest.mark.parametrize(
    ("read_by", "expected"),
    [
        # 1000 rows / 100 per call
        (ReadBy.INSTANCE, {"DescribeClassicLinkInstances": 10}),
        # 5 VPCs x 200 linked rows + 100 other links each (3 pages), then the 1 row not
        # found there, by instance
        (ReadBy.VPC, {"DescribeClassicLinkInstances": 5 * 3 + 1}),
    ],
)
async def test_verify_calls_by_instance_and_by_vpc(
    tmp_path: Path, read_by: ReadBy, expected: dict[str, int]
) -> None:
    model, rows = fleet(1000, 5)
    for _, instance, vpc in rows[1:]:
        model.link(instance, vpc)
    for n in range(500):
        model.add_instance(Instance(f"i-x{n:04d}", HZ))
        model.link(f"i-x{n:04d}", f"vpc-c{n % 5:02d}")
    pairs = write_rows(tmp_path / "pairs.csv", rows)
    async with running_emulator(model, EmulatorSettings()) as emu:
        settings = VerifySettings(tmp_path / "verify.csv", rate=None, read_by=read_by)
        result = await verify_job(
            read_pairs(pairs), settings, ClientSettings(endpoint=emu.endpoint), creds(emu)
        )
        assert calls(emu) == expected
    assert result.summary["calls"]["by_action"] == expected
    assert result.summary["by_status"]["linked"] == 999
    assert result.summary["by_status"]["not_linked"] == 1


# --- the lookups --------------------------------------------------------------------------------


async def test_concurrent_gets_share_batched_calls() -> None:
    model, _ = fleet(250, 2)
    async with running_emulator(model, EmulatorSettings()) as emu:
        async with open_session(
            ClientSettings(endpoint=emu.endpoint), creds(emu), rate=None, attempts=FAST
        ) as session:
            lookups, gate = session.lookups, session.gate
            ids = [f"i-c{n:06d}" for n in range(250)] + ["i-absent"]
            found = await asyncio.gather(*(lookups.instances.get(HZ, i) for i in ids * 2))
            vpcs = await asyncio.gather(*(lookups.vpcs.get(HZ, "vpc-c00") for _ in range(50)))
            missing = await lookups.vpcs.get(HZ, "vpc-nowhere")
        assert calls(emu) == {"DescribeInstances": 3, "DescribeVpcAttribute": 2}
    assert found[-1] is None
    assert sum(info is not None for info in found) == 500
    assert all(v is not None and v.classic_link_enabled for v in vpcs)
    assert missing is None
    assert gate.total == {"DescribeInstances": 3, "DescribeVpcAttribute": 2}
    assert lookups.calls()["instances"] == {"DescribeInstances": 3}


async def test_a_partial_batch_leaves_after_its_window() -> None:
    model, _ = fleet(3, 1)
    async with running_emulator(model, EmulatorSettings()) as emu:
        async with open_session(
            ClientSettings(endpoint=emu.endpoint), creds(emu), rate=None, attempts=FAST, window=0.0
        ) as session:
            lookups = session.lookups
            first = await lookups.instance_links.get(HZ, "i-c000000")
            second = await lookups.instance_links.get(HZ, "i-c000001")
            again = await lookups.instance_links.get(HZ, "i-c000000")
        assert calls(emu) == {"DescribeClassicLinkInstances": 2}  # the third was cached
    assert first == second == again == ()
