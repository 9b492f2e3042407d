"""One world builder behind ``bulk-attach emulator --world-from`` and ``run --emulator``.

Both read a pairs CSV with the reader ``run`` uses: a file ``run`` refuses is refused by each,
with the same line and exit code 2, and a file ``run`` accepts makes a world in which every
row it sends can be attached.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import RunCli

from bulk_attach.errors import ExitCode
from bulk_attach.files.report import read_report

# Each of these once built a world (or failed with another message) but stops a run.
REFUSED = {
    "names-without-id": "Region,Instance,Vpc\ncn-hangzhou,i-aa,vpc-a\n",
    "no-region-column": "InstanceId,VpcId\ni-aa,vpc-a\n",
    "column-twice": "RegionId,InstanceId,VpcId,VpcId\ncn-hangzhou,i-aa,vpc-a,vpc-b\n",
    "no-header": "cn-hangzhou,i-aa,vpc-a\ncn-hangzhou,i-bb,vpc-b\n",
    "empty": "",
    "quote-never-closed": (
        'RegionId,InstanceId,VpcId\ncn-hangzhou,"i-aa,vpc-a\ncn-hangzhou,i-bb,vpc-b\n'
    ),
    "nul-byte": "RegionId,InstanceId,VpcId\ncn-hangzhou,i-aa,vpc-a\x00\n",
}


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
async def test_a_file_run_refuses_is_refused_alike_by_both_world_builders(
    run_cli: RunCli, tmp_path: Path, text: str
) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(text, encoding="utf-8")
    # Side by side, so each run has its own report (and so its own lock).
    ran, rehearsed, served = await asyncio.gather(
        run_cli("run", path, "--report", tmp_path / "real.csv"),
        run_cli("run", path, "--emulator", "--report", tmp_path / "rehearsal.csv"),
        run_cli("emulator", "--port", "0", "--world-from", path),
    )
    for result in (ran, rehearsed, served):
        assert result.returncode == ExitCode.USAGE, result
        assert result.stdout == ""  # the emulator never listened
    assert ran.stderr.startswith(f"bulk-attach: error: {path}")
    assert ran.stderr.count("\n") == 1
    assert served.stderr == rehearsed.stderr == ran.stderr


async def test_a_world_from_a_file_run_accepts_attaches_every_row(
    run_cli: RunCli, tmp_path: Path
) -> None:
    # A region the run accepts that the world's own pattern once skipped (two letters first).
    path = tmp_path / "pairs.csv"
    path.write_text(
        "RegionId,InstanceId,VpcId\nx9-lab-1,i-aa,vpc-a\ncn-hangzhou,i-bb,vpc-b\n",
        encoding="utf-8",
    )
    result = await run_cli("run", path, "--emulator", "--rate", "0", "-q")
    assert result.returncode == ExitCode.OK, result
    statuses = {row.instance_id: row.status for row in read_report(tmp_path / "pairs.report.csv")}
    assert statuses == {"i-aa": "attached", "i-bb": "attached"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--access-key-id", "AK"), "give both --access-key-id and --access-key-secret"),
        (("--error-rate", "0.6", "--drop-rate", "0.6"), "fault rates add up to more than 1"),
        (("--world-from", "absent.csv"), "absent.csv: cannot read"),
        (("--limit", "AttachClassicLinkVpc"), "--limit takes KEY=QPS"),
        (("--limiter", "leaky"), "limiter must be one of"),
    ],
    ids=["half-a-key", "rates-over-1", "missing-csv", "limit-without-qps", "unknown-limiter"],
)
async def test_emulator_usage_errors_exit_2_before_listening(
    run_cli: RunCli, args: tuple[str, ...], message: str
) -> None:
    result = await run_cli("emulator", "--port", "0", *args)
    assert result.returncode == ExitCode.USAGE, result
    assert result.stdout == ""
    assert result.stderr.startswith("bulk-attach: error: ")
    assert message in result.stderr


def test_flow_control_from_the_world_file_under_the_command_line(tmp_path: Path) -> None:
    from bulk_attach.emulator.cli import _serving, _with_world_flow_control
    from bulk_attach.emulator.faults import LimiterShape
    from bulk_attach.emulator.world import WorldSpec, load_world

    world = tmp_path / "world.json"
    world.write_text(
        '{"flow_control": {"qps": 10, "limiter": "window", "window_seconds": 60,'
        ' "limits": {"AttachClassicLinkVpc": 5}}}'
    )
    load_world(world)  # the world itself accepts the key
    spec = WorldSpec(world=world)
    from_file = _with_world_flow_control(_serving(), spec).faults
    assert (from_file.qps, from_file.limiter, from_file.window_seconds) == (
        10,
        LimiterShape.WINDOW,
        60,
    )
    assert from_file.limit_for("cn-hangzhou", "AttachClassicLinkVpc") == 5
    assert from_file.limit_for("cn-hangzhou", "DescribeClassicLinkInstances") == 10
    given = _serving(qps=40, window_seconds=1.0, limiter="bucket", limit=["cn-beijing=3"])
    merged = _with_world_flow_control(given, spec).faults
    assert merged.qps == 40
    assert merged.limiter is LimiterShape.WINDOW
    assert merged.limit_for("cn-beijing", "DescribeClassicLinkInstances") == 3
    assert merged.limit_for("cn-beijing", "AttachClassicLinkVpc") == 5  # most specific


def test_a_bad_flow_control_in_the_world_names_the_file(tmp_path: Path) -> None:
    from bulk_attach.emulator.world import load_world
    from bulk_attach.errors import InputError

    world = tmp_path / "world.json"
    world.write_text('{"flow_control": {"limiter": "window", "burst": 3}}')
    with pytest.raises(InputError, match="flow_control: unknown key"):
        load_world(world)
    world.write_text('{"flow_control": {"window_seconds": 0}}')
    with pytest.raises(InputError, match="window_seconds must be a positive"):
        load_world(world)
