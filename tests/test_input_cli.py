"""The input options on the command line: --delimiter and --encoding reach every command that
reads a pairs CSV (run, plan, verify, detach), and the embedded emulator's world is read the
same way; a header with no rows exits 2."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from conftest import RunCli

from bulk_attach.errors import ExitCode

TAB_UTF16 = codecs.BOM_UTF16_LE + (
    "RegionId\tInstanceId\tVpcId\r\ncn-hangzhou\ti-aaa1\tvpc-a\r\ncn-hangzhou\ti-bbb2\tvpc-a\r\n"
).encode("utf-16-le")
GBK_SEMI = "RegionId;InstanceId;VpcId;备注\ncn-hangzhou;i-aaa1;vpc-a;生产\n".encode("gbk")


async def test_excel_unicode_text_runs_against_the_emulator(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path = tmp_path / "pairs.txt"
    path.write_bytes(TAB_UTF16)
    result = await run_cli("run", path, "--emulator", "--rate", "0", "-v")
    assert result.returncode == ExitCode.OK, result
    assert "tab-separated (from the header), UTF-16 (byte-order mark)" in result.stderr
    assert "attached 2" in result.stderr


@pytest.mark.parametrize("command", ["run", "plan", "verify", "detach"])
async def test_encoding_reaches_every_command_reading_pairs(
    run_cli: RunCli, tmp_path: Path, command: str
) -> None:
    path = tmp_path / "pairs.csv"
    path.write_bytes(GBK_SEMI)
    extra = ["--yes"] if command == "detach" else []
    refused = await run_cli(command, path, "--emulator", "--rate", "0", *extra)
    assert refused.returncode == ExitCode.USAGE, refused
    assert "--encoding gbk" in refused.stderr
    result = await run_cli(command, path, "--emulator", "--rate", "0", "--encoding", "gbk", *extra)
    assert result.returncode in (ExitCode.OK, ExitCode.SOME_ROWS_FAILED), result
    assert "error:" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--encoding", "nope"), "not a text encoding"),
        (("--encoding", "base64"), "not a text encoding"),
        (("--delimiter", "ab"), "one character"),
        (("--delimiter", '"'), "one character"),
    ],
)
async def test_bad_input_options_are_usage_errors(
    run_cli: RunCli, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "pairs.csv"
    path.write_bytes(GBK_SEMI)
    result = await run_cli("run", path, "--emulator", *args)
    assert result.returncode == ExitCode.USAGE, result
    assert message in result.stderr


async def test_a_header_with_no_rows_exits_2(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_bytes(b"RegionId,InstanceId,VpcId\r\n")
    result = await run_cli("run", path, "--emulator")
    assert result.returncode == ExitCode.USAGE, result
    assert "no rows" in result.stderr
    assert not (tmp_path / "pairs.report.csv").exists()
