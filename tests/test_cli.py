"""The command line as a user meets it: ``python -m bulk_attach`` in a child process.

The child gets an environment without any ALIBABA_CLOUD_* / ALICLOUD_* variable and a HOME
inside tmp_path, so no real credentials or aliyun config can be read. Where a command could
send something, it is pointed at an emulator this test runs on 127.0.0.1, and the emulator's
call counters prove what was (or was not) sent.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from conftest import CLI_TIMEOUT, CliResult, RunCli, WritePairs, finish, start_cli

from bulk_attach.emulator.faults import FaultSettings
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.errors import ExitCode
from bulk_attach.files.report import read_report

HZ = "cn-hangzhou"
SAMPLES = Path(__file__).resolve().parent.parent / "samples"
HEADER = ("RegionId", "InstanceId", "VpcId")


def pairs(count: int, vpcs: Sequence[str] = ("vpc-a", "vpc-b")) -> list[tuple[str, str, str]]:
    return [(HZ, f"i-c{n:05d}", vpcs[n % len(vpcs)]) for n in range(count)]


def world_for(rows: Sequence[Sequence[str]]) -> EcsModel:
    model = EcsModel()
    for region, instance, vpc in rows:
        model.add_instance(Instance(instance, region))
        if vpc not in model.vpcs:
            model.add_vpc(Vpc(vpc, region))
    return model


def env_for(emu: RunningEmulator) -> dict[str, str]:
    return {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": emu.access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": emu.access_key_secret,
    }


def calls_made(emu: RunningEmulator) -> int:
    return sum(sum(codes.values()) for codes in emu.emulator.calls.values())


def data_rows(report: Path) -> int:
    """Complete report records (a record ends with CRLF; a torn tail is not counted)."""
    try:
        text = report.read_bytes()
    except FileNotFoundError:
        return 0
    return max(text.count(b"\r\n") - 1, 0)


def assert_clean_error(result: CliResult, code: int) -> None:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr + result.stdout
    assert "internal error" not in result.stderr


# --- help and usage --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("--help",), ("run", "--help"), ("emulator", "--help")],
    ids=["root", "run", "emulator"],
)
async def test_help_exits_0(run_cli: RunCli, args: tuple[str, ...]) -> None:
    result = await run_cli(*args)
    assert result.returncode == 0, result
    assert "Usage" in result.stdout
    assert result.stderr == ""


async def test_version(run_cli: RunCli) -> None:
    result = await run_cli("--version")
    assert result.returncode == 0
    assert re.match(r"bulk-attach \d", result.stdout)


async def test_run_help_shows_the_documented_defaults(run_cli: RunCli) -> None:
    """Bracketed text in help strings must survive rich's markup (``[default: ...]``)."""
    result = await run_cli("run", "--help")
    assert "INPUT.report.csv" in result.stdout
    assert "~/.aliyun/config.json" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("run",),
        ("run", "pairs.csv", "--rate", "fast"),
        ("run", "pairs.csv", "--no-such-option"),
        ("run", "pairs.csv", "--concurrency", "0"),
        ("run", "pairs.csv", "--world", "w.json"),
        ("run", "pairs.csv", "--emulator", "--endpoint", "http://127.0.0.1:9"),
        ("emulator", "--variant", "1999"),
        ("nonsense",),
    ],
    ids=[
        "missing-argument",
        "bad-number",
        "unknown-option",
        "out-of-range",
        "world-without-emulator",
        "emulator-and-endpoint",
        "bad-variant",
        "unknown-command",
    ],
)
async def test_usage_errors_exit_2_without_a_traceback(
    run_cli: RunCli, write_pairs: WritePairs, args: tuple[str, ...]
) -> None:
    write_pairs(pairs(2))
    result = await run_cli(*args)
    assert_clean_error(result, ExitCode.USAGE)
    assert result.stderr.strip()


# --- bad input: exit 2, nothing sent ---------------------------------------------------------


@asynccontextmanager
async def emulator_for(rows: Sequence[Sequence[str]] = ()) -> AsyncIterator[RunningEmulator]:
    async with running_emulator(world_for(rows), EmulatorSettings()) as emu:
        yield emu


def make_bad_input(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.csv"
    good = "RegionId,InstanceId,VpcId\r\ncn-hangzhou,i-abc,vpc-abc\r\n"
    if kind == "missing":
        return path
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" * 8)
    elif kind == "json":
        path.write_text('{"pairs": [["i-abc", "vpc-abc"]]}\n', encoding="utf-8")
    elif kind == "missing-column":
        path.write_text("RegionId,InstanceId\ncn-hangzhou,i-abc\n", encoding="utf-8")
    elif kind == "not-utf8":
        path.write_bytes(good.encode() + "cn-hangzhou,i-abd,vpc-abc,Café\n".encode("latin-1"))
    elif kind == "empty":
        path.write_bytes(b"")
    else:  # pragma: no cover - a typo in the parameter list
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    "kind",
    ["missing", "directory", "binary", "json", "missing-column", "not-utf8", "empty"],
)
async def test_a_bad_input_file_exits_2_and_sends_nothing(
    run_cli: RunCli, tmp_path: Path, kind: str
) -> None:
    path = make_bad_input(kind, tmp_path)
    report = tmp_path / "out.csv"
    async with emulator_for([(HZ, "i-abc", "vpc-abc")]) as emu:
        result = await run_cli(
            "run", path, "--endpoint", emu.endpoint, "--report", report, env_extra=env_for(emu)
        )
        assert calls_made(emu) == 0
    assert_clean_error(result, ExitCode.USAGE)
    assert result.stderr.startswith("bulk-attach: error: ")
    assert path.name in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one clear line
    assert not report.exists()


async def test_a_bad_input_file_exits_2_even_without_credentials(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """Input is checked before credentials: the input error is the one to fix first."""
    path = make_bad_input("missing-column", tmp_path)
    result = await run_cli("run", path, "--endpoint", "http://127.0.0.1:9")
    assert_clean_error(result, ExitCode.USAGE)


async def test_malformed_ids_are_reported_rows_not_a_fatal_error(
    run_cli: RunCli, write_pairs: WritePairs, tmp_path: Path
) -> None:
    path = write_pairs(
        [(HZ, "x-123", "vpc-a"), (HZ, "i-ok1", "subnet-1"), ("Hang Zhou", "i-ok2", "vpc-a")]
    )
    report = tmp_path / "out.csv"
    async with emulator_for() as emu:
        result = await run_cli(
            "run", path, "--endpoint", emu.endpoint, "--report", report, env_extra=env_for(emu)
        )
        assert calls_made(emu) == 0
    assert_clean_error(result, ExitCode.SOME_ROWS_FAILED)
    rows = list(read_report(report))
    assert [row.line for row in rows] == [2, 3, 4]
    assert {row.status.value for row in rows} == {"invalid"}
    assert {row.error_code for row in rows} == {"Input.MalformedId"}
    assert rows[0].message.startswith(f"{path}:2:2: ")
    assert rows[1].message.startswith(f"{path}:3:3: ")
    assert rows[2].message.startswith(f"{path}:4:1: ")


# --- credentials -----------------------------------------------------------------------------


async def test_missing_credentials_exit_3_listing_what_was_tried(
    run_cli: RunCli, write_pairs: WritePairs, tmp_path: Path
) -> None:
    path = write_pairs(pairs(3))
    async with emulator_for(pairs(3)) as emu:
        result = await run_cli("run", path, "--endpoint", emu.endpoint)
        assert calls_made(emu) == 0
    assert_clean_error(result, ExitCode.CONFIG)
    message = result.stderr
    for tried in (
        "--access-key-id",
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALICLOUD_ACCESS_KEY",
        str(tmp_path / "home" / ".aliyun" / "config.json"),
    ):
        assert tried in message, tried


async def test_credentials_from_the_environment_reach_the_endpoint(
    run_cli: RunCli, write_pairs: WritePairs, tmp_path: Path
) -> None:
    rows = pairs(6)
    path = write_pairs(rows)
    async with emulator_for(rows) as emu:
        result = await run_cli(
            "run", path, "--endpoint", emu.endpoint, "--rate", "0", env_extra=env_for(emu)
        )
        links = dict(emu.model.links)
    assert result.returncode == ExitCode.OK, result
    assert links == {instance: vpc for _, instance, vpc in rows}
    # The default report sits beside the input, and the summary beside the report.
    assert (tmp_path / "pairs.report.csv").exists()
    assert (tmp_path / "pairs.report.csv.summary.json").exists()


async def test_the_region_can_come_from_the_environment(
    run_cli: RunCli, write_pairs: WritePairs, tmp_path: Path
) -> None:
    path = write_pairs([row[1:] for row in pairs(4)], header=HEADER[1:])
    result = await run_cli(
        "run", path, "--emulator", "--rate", "0", env_extra={"ALIBABA_CLOUD_REGION_ID": HZ}
    )
    assert result.returncode == ExitCode.OK, result
    rows = list(read_report(tmp_path / "pairs.report.csv"))
    assert [(row.region_id, row.status.value) for row in rows] == [(HZ, "attached")] * 4


async def test_no_region_column_and_no_region_is_a_usage_error(
    run_cli: RunCli, write_pairs: WritePairs
) -> None:
    path = write_pairs([row[1:] for row in pairs(4)], header=HEADER[1:])
    result = await run_cli("run", path, "--emulator")
    assert_clean_error(result, ExitCode.USAGE)
    assert "RegionId" in result.stderr


# --- the embedded emulator, progress and --quiet ---------------------------------------------


async def test_run_with_the_embedded_emulator(run_cli: RunCli, write_pairs: WritePairs) -> None:
    rows = [(*row, f"note {n}") for n, row in enumerate(pairs(40, ("vpc-a", "vpc-b", "vpc-c")))]
    path = write_pairs(rows, header=(*HEADER, "Note"), name="fleet.csv")
    result = await run_cli("run", path, "--emulator", "--rate", "0")
    assert result.returncode == ExitCode.OK, result
    report = path.with_name("fleet.report.csv")
    summary = json.loads(path.with_name("fleet.report.csv.summary.json").read_text())
    assert summary["by_status"]["attached"] == 40
    assert summary["exit_code"] == 0
    assert len(list(read_report(report))) == 40
    # Not a terminal: plain progress lines, no carriage returns, then the summary.
    assert "\r" not in result.stderr
    # Timestamped (ISO-8601 UTC), for log files.
    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z progress: 40/40 rows settled", result.stderr, re.M)
    assert f"report: {report}" in result.stderr
    assert "attached 40" in result.stderr
    assert result.stdout == ""


async def test_json_lines_report_by_default_name(run_cli: RunCli, write_pairs: WritePairs) -> None:
    path = write_pairs(pairs(5))
    result = await run_cli("run", path, "--emulator", "--rate", "0", "--format", "jsonl", "-q")
    assert result.returncode == ExitCode.OK, result
    lines = path.with_name("pairs.report.jsonl").read_text().splitlines()
    assert [json.loads(line)["Status"] for line in lines] == ["attached"] * 5


async def test_quiet_prints_nothing(run_cli: RunCli, write_pairs: WritePairs) -> None:
    path = write_pairs(pairs(10))
    result = await run_cli("run", path, "--emulator", "--rate", "0", "--quiet")
    assert result.returncode == ExitCode.OK, result
    assert result.stdout == ""
    assert result.stderr == ""
    assert len(list(read_report(path.with_name("pairs.report.csv")))) == 10


async def test_quiet_still_prints_errors(run_cli: RunCli, tmp_path: Path) -> None:
    path = make_bad_input("missing-column", tmp_path)
    result = await run_cli("run", path, "--emulator", "--quiet")
    assert_clean_error(result, ExitCode.USAGE)
    assert result.stderr.startswith("bulk-attach: error: ")


async def test_failed_rows_give_exit_1(run_cli: RunCli, tmp_path: Path) -> None:
    report = tmp_path / "samples.csv"
    result = await run_cli(
        "run",
        SAMPLES / "pairs.csv",
        "--emulator",
        "--world",
        SAMPLES / "world.json",
        "--rate",
        "0",
        "--report",
        report,
    )
    assert result.returncode == ExitCode.SOME_ROWS_FAILED, result
    assert len(list(read_report(report))) == 300
    assert "OperationDenied" in result.stderr  # the terminal summary counts error codes


# --- the emulator command --------------------------------------------------------------------


async def test_the_emulator_command_serves_a_run(
    run_cli: RunCli, write_pairs: WritePairs, cli_env: dict[str, str], tmp_path: Path
) -> None:
    rows = pairs(8)
    path = write_pairs(rows)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulk_attach",
        "emulator",
        "--port",
        "0",
        "--world-from",
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    try:
        printed: list[str] = []
        async with asyncio.timeout(CLI_TIMEOUT):
            while not any("bulk-attach run" in line for line in printed):
                line = (await process.stdout.readline()).decode()
                assert line, f"the emulator exited early: {printed}"
                printed.append(line)
        text = "".join(printed)
        endpoint = re.search(r"listening on (http://127\.0\.0\.1:\d+)", text)
        key = re.search(r"ALIBABA_CLOUD_ACCESS_KEY_ID=(\S+)", text)
        secret = re.search(r"ALIBABA_CLOUD_ACCESS_KEY_SECRET=(\S+)", text)
        assert endpoint, text
        assert key, text
        assert secret, text
        assert not endpoint.group(1).endswith(":0")
        result = await run_cli(
            "run",
            path,
            "--endpoint",
            endpoint.group(1),
            "--rate",
            "0",
            env_extra={
                "ALIBABA_CLOUD_ACCESS_KEY_ID": key.group(1),
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret.group(1),
            },
        )
        assert result.returncode == ExitCode.OK, result
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{endpoint.group(1)}/_emulator/state") as response,
        ):
            state = await response.json()
        assert state["links"] == [
            {"InstanceId": instance, "VpcId": vpc} for _, instance, vpc in sorted(rows)
        ]
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(CLI_TIMEOUT):
            await process.wait()
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- signals ---------------------------------------------------------------------------------


async def start_run(
    args: Sequence[str | os.PathLike[str]], env: dict[str, str], cwd: Path
) -> asyncio.subprocess.Process:
    return await start_cli(*args, env=env, cwd=cwd)


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, ExitCode.SIGINT), (signal.SIGTERM, ExitCode.SIGTERM)],
    ids=["SIGINT", "SIGTERM"],
)
async def test_a_signal_mid_run_leaves_a_complete_report(
    write_pairs: WritePairs,
    cli_env: dict[str, str],
    tmp_path: Path,
    signum: signal.Signals,
    code: int,
) -> None:
    rows = pairs(400, ("vpc-a", "vpc-b", "vpc-c", "vpc-d"))
    path = write_pairs(rows)
    report = tmp_path / "out.csv"
    process = await start_run(
        ["run", path, "--emulator", "--rate", "20", "--report", report], cli_env, tmp_path
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT):
            while data_rows(report) < 5:
                assert process.returncode is None, "the run ended before the signal"
                await asyncio.sleep(0.05)
        process.send_signal(signum)
    finally:
        result = await finish(process)

    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    records = list(read_report(report))
    assert sorted(record.line for record in records) == list(range(2, 402))
    by_status: dict[str, int] = {}
    for record in records:
        by_status[record.status.value] = by_status.get(record.status.value, 0) + 1
    assert by_status.get("attached", 0) >= 5
    assert by_status.get("skipped", 0) > 0
    assert set(by_status) <= {"attached", "skipped"}
    summary = json.loads(report.with_name("out.csv.summary.json").read_text())
    assert summary["total"] == 400
    assert summary["exit_code"] == code
    assert summary["stopped"]
    # The report is a well-formed CSV to its last byte (nothing torn, nothing buffered).
    with report.open(newline="", encoding="utf-8") as file:
        assert sum(1 for _ in csv.reader(file)) == 401


async def test_a_second_sigint_stops_at_once_and_still_flushes(
    write_pairs: WritePairs, cli_env: dict[str, str], tmp_path: Path
) -> None:
    rows = pairs(50, ("vpc-a", "vpc-b", "vpc-c", "vpc-d"))
    path = write_pairs(rows)
    report = tmp_path / "out.csv"
    # Every answer takes far longer than the test waits: requests stay in flight.
    slow = EmulatorSettings(faults=FaultSettings(latency_ms=20_000))
    async with running_emulator(world_for(rows), slow) as emu:
        process = await start_run(
            [
                "run",
                path,
                "--endpoint",
                emu.endpoint,
                "--rate",
                "0",
                "--concurrency",
                "4",
                "--drain-timeout",
                "600",
                "--report",
                report,
            ],
            {**cli_env, **env_for(emu)},
            tmp_path,
        )
        try:
            async with asyncio.timeout(CLI_TIMEOUT):
                # Polling another process's effect: there is no event to wait on.
                while emu.emulator.injector.draws == 0:  # noqa: ASYNC110 - a request arrived
                    await asyncio.sleep(0.05)
            process.send_signal(signal.SIGINT)
            await asyncio.sleep(0.2)
            process.send_signal(signal.SIGINT)
        finally:
            result = await finish(process)

    assert result.returncode == ExitCode.SIGINT, result
    records = list(read_report(report))
    assert sorted(record.line for record in records) == list(range(2, 52))
    assert {record.status.value for record in records} == {"skipped"}
    # Only the VPC's link read was on the wire (it hangs): no attach left, so no row is in
    # doubt; every row is "not attempted" and runs on resume.
    assert not any("interrupted while in flight" in record.message for record in records)
    assert all("not attempted" in record.message for record in records)
    assert json.loads(report.with_name("out.csv.summary.json").read_text())["total"] == 50


async def test_kill_9_loses_no_settled_row(
    write_pairs: WritePairs, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Rows are handed to the OS as they settle: what the report says happened, happened."""
    rows = pairs(300, ("vpc-a", "vpc-b"))
    path = write_pairs(rows)
    report = tmp_path / "out.csv"
    async with running_emulator(world_for(rows), EmulatorSettings()) as emu:
        process = await start_run(
            ["run", path, "--endpoint", emu.endpoint, "--rate", "30", "--report", report],
            {**cli_env, **env_for(emu)},
            tmp_path,
        )
        try:
            async with asyncio.timeout(CLI_TIMEOUT):
                while data_rows(report) < 5:
                    assert process.returncode is None, "the run ended before the kill"
                    await asyncio.sleep(0.05)
            process.kill()
        finally:
            result = await finish(process)
        links = dict(emu.model.links)

    assert result.returncode == -signal.SIGKILL
    records = list(read_report(report))
    assert len(records) >= 5
    assert len({record.line for record in records}) == len(records)
    for record in records:
        assert record.status.value == "attached", record
        assert links.get(record.instance_id) == record.vpc_id


async def test_run_emulator_applies_the_world_flow_control(
    run_cli: RunCli, write_pairs: WritePairs, tmp_path: Path
) -> None:
    """The embedded emulator throttles as the world file says (here 10 attaches a second,
    fixed windows), and the run, asked for no rate at all, learns that limit: every row
    attached, some answers throttled, the learned limit near 10 in the summary."""
    rows = pairs(40)
    path = write_pairs(rows)
    world = tmp_path / "world.json"
    world.write_text(
        json.dumps(
            {
                "instances": [{"InstanceId": i, "RegionId": r} for r, i, _ in rows],
                "vpcs": [{"VpcId": v, "RegionId": "cn-hangzhou"} for v in ("vpc-a", "vpc-b")],
                "flow_control": {"limiter": "window", "limits": {"AttachClassicLinkVpc": 10}},
            }
        )
    )
    report = tmp_path / "out.csv"
    result = await run_cli(
        "run", path, "--emulator", "--world", world, "--rate", "0", "--report", report
    )
    assert result.returncode == ExitCode.OK, result
    summary = json.loads(report.with_name("out.csv.summary.json").read_text())
    assert summary["by_status"]["attached"] == 40
    attach = summary["flow"]["cn-hangzhou/AttachClassicLinkVpc"]
    assert attach["throttled"] > 0
    assert 5 <= attach["learned_limit"] <= 20
