"""A migration in four steps, through the command line: plan, run, verify, detach.

Each step against the same in-process emulator, as a platform team runs them: the plan
changes nothing, verify proves the end state whoever made it, detach undoes exactly what
the run did (and asks first), and every command keeps run's guarantees (a lock, a report,
resume without a second send).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from conftest import emulator_settings, finish, start_cli

from bulk_attach.core.outcomes import Status
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import RunningEmulator, running_emulator
from bulk_attach.errors import ExitCode
from bulk_attach.files.paths import ReportPaths
from bulk_attach.files.report import read_report

REGION = "cn-hangzhou"


def write_input(path: Path, ids: Sequence[str], vpcs: Sequence[str]) -> Path:
    lines = ["RegionId,InstanceId,VpcId"]
    lines += [f"{REGION},{i},{vpcs[n % len(vpcs)]}" for n, i in enumerate(ids)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def world(ids: Sequence[str], vpcs: Sequence[str]) -> EcsModel:
    model = EcsModel()
    for vpc in vpcs:
        model.add_vpc(Vpc(vpc, REGION))
    for instance in ids:
        model.add_instance(Instance(instance, REGION))
    return model


@asynccontextmanager
async def emulator(model: EcsModel, **faults: Any) -> Any:
    async with running_emulator(
        model, emulator_settings(host="127.0.0.1", port=0, **faults)
    ) as emu:
        yield emu


def env_of(emu: RunningEmulator) -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.access_key_secret,
    }


def mutations(emu: RunningEmulator) -> tuple[int, int]:
    calls = emu.emulator.state()["calls"]
    return (
        sum(calls.get("AttachClassicLinkVpc", {}).values()),
        sum(calls.get("DetachClassicLinkVpc", {}).values()),
    )


def statuses(report: Path) -> Counter[Status]:
    return Counter(r.status for r in read_report(report))


async def test_a_migration_in_four_steps(tmp_path: Path, run_cli: Any) -> None:
    ids = [f"i-m{n:04d}" for n in range(30)]
    vpcs = ("vpc-a", "vpc-b", "vpc-c")
    pairs = write_input(tmp_path / "pairs.csv", ids, vpcs)
    model = world(ids, vpcs)
    model.link("i-m0000", "vpc-a")  # linked by hand before the migration
    async with emulator(model) as emu:
        env = env_of(emu)
        common = ("--endpoint", emu.endpoint, "--rate", "0")

        plan = await run_cli("plan", pairs, *common, "--variant", "2018", env_extra=env)
        assert plan.returncode == ExitCode.OK, plan.stderr
        assert mutations(emu) == (0, 0)  # the plan changed nothing
        planned = statuses(tmp_path / "pairs.plan.report.csv")
        assert planned == Counter({Status.WOULD_ATTACH: 29, Status.ALREADY_LINKED: 1})
        summary = json.loads(ReportPaths(tmp_path / "pairs.plan.report.csv").summary.read_text())
        # Batched: one DescribeInstances for 30 IDs, one attribute read per VPC.
        assert summary["calls"]["by_action"]["DescribeInstances"] == 1
        assert summary["calls"]["by_action"]["DescribeVpcAttribute"] == 3

        run = await run_cli("run", pairs, *common, env_extra=env)
        assert run.returncode == ExitCode.OK, run.stderr
        report = tmp_path / "pairs.report.csv"

        verify = await run_cli("verify", report, *common, env_extra=env)
        assert verify.returncode == ExitCode.OK, verify.stderr
        assert statuses(tmp_path / "pairs.verify.report.csv") == Counter({Status.LINKED: 30})

        # Destructive: with no terminal and no --yes it refuses, and sends nothing.
        refused = await run_cli("detach", report, *common, env_extra=env)
        assert refused.returncode == ExitCode.USAGE, refused.stderr
        assert "pass --yes" in refused.stderr
        assert "29 links in 3 VPCs" in refused.stderr
        assert mutations(emu) == (29, 0)

        rollback = await run_cli("detach", report, *common, "--yes", env_extra=env)
        assert rollback.returncode == ExitCode.OK, rollback.stderr
        detached = statuses(tmp_path / "pairs.detach.report.csv")
        assert detached == Counter({Status.DETACHED: 29})
        # Exactly what the run did: the link made by hand is still there.
        assert dict(emu.model.links) == {"i-m0000": "vpc-a"}

        after = await run_cli("verify", pairs, *common, env_extra=env)
        assert after.returncode == ExitCode.SOME_ROWS_FAILED, after.stderr
        assert statuses(tmp_path / "pairs.verify.report.csv") == Counter(
            {Status.NOT_LINKED: 29, Status.LINKED: 1}
        )

        # Rolling back again (a fresh report) sends nothing: every row is not_linked.
        again = await run_cli("detach", report, *common, "--yes", "--fresh", "-q", env_extra=env)
        assert again.returncode == ExitCode.OK, again.stderr
        assert statuses(tmp_path / "pairs.detach.report.csv") == Counter({Status.NOT_LINKED: 29})
        assert mutations(emu) == (29, 29)


async def test_detach_all_linked_and_from_a_pairs_csv(tmp_path: Path, run_cli: Any) -> None:
    ids = [f"i-d{n:04d}" for n in range(8)]
    pairs = write_input(tmp_path / "pairs.csv", ids, ("vpc-a",))
    model = world(ids, ("vpc-a",))
    model.link(ids[0], "vpc-a")
    async with emulator(model) as emu:
        env = env_of(emu)
        common = ("--endpoint", emu.endpoint, "--rate", "0", "--yes")
        assert (await run_cli("run", pairs, *common[:-1], env_extra=env)).returncode == 0
        report = tmp_path / "pairs.report.csv"
        everything = await run_cli(
            "detach", report, *common, "--all-linked", "--report", tmp_path / "all.csv",
            env_extra=env,
        )  # fmt: skip
        assert everything.returncode == ExitCode.OK, everything.stderr
        assert statuses(tmp_path / "all.csv") == Counter({Status.DETACHED: 8})
        assert dict(emu.model.links) == {}
        # From the pairs CSV: every row, each read first (nothing is linked any more).
        from_csv = await run_cli("detach", pairs, *common, env_extra=env)
        assert from_csv.returncode == ExitCode.OK, from_csv.stderr
        assert statuses(tmp_path / "pairs.detach.report.csv") == Counter({Status.NOT_LINKED: 8})
        assert mutations(emu) == (7, 8)


async def test_a_killed_detach_resumes_without_a_second_send(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    ids = [f"i-k{n:04d}" for n in range(60)]
    pairs = write_input(tmp_path / "pairs.csv", ids, ("vpc-a", "vpc-b"))
    model = world(ids, ("vpc-a", "vpc-b"))
    for n, instance in enumerate(ids):
        model.link(instance, ("vpc-a", "vpc-b")[n % 2])
    report = tmp_path / "pairs.detach.report.csv"
    async with emulator(model, latency_ms=20.0) as emu:
        env = {**cli_env, **env_of(emu)}
        args = ("detach", pairs, "--endpoint", emu.endpoint, "--rate", "0", "--yes")
        first = await start_cli(*args, "--concurrency", "2", env=env, cwd=tmp_path)
        async with asyncio.timeout(30):
            while sum(emu.model.detach_attempts.values()) < 10:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        await finish(first)
        again = await finish(await start_cli(*args, env=env, cwd=tmp_path))
        sent = Counter(emu.model.detach_attempts)
    assert again.returncode == ExitCode.OK, again.stderr
    assert dict(emu.model.links) == {}
    assert max(sent.values()) == 1  # none detached twice
    rows = list(read_report(report))
    assert sorted(r.instance_id for r in rows) == ids
    assert {r.status for r in rows} == {Status.DETACHED}
    assert json.loads(ReportPaths(report).summary.read_text())["resumed"] is True
