"""Shared fixtures for the end-to-end, CLI and secret-scan tests.

Kept small on purpose: a pairs-CSV writer, a clean environment for child processes (no real
credentials or config can leak in), and a runner for ``python -m bulk_attach`` that works
while an in-process emulator keeps serving on the same event loop.
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bulk_attach.emulator.faults import FaultSettings
from bulk_attach.emulator.server import EmulatorSettings

WritePairs = Callable[..., Path]
RunCli = Callable[..., Awaitable["CliResult"]]

# A child process may run at most this long; a hang fails the test instead of the suite.
CLI_TIMEOUT = 60.0


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def write_pairs(tmp_path: Path) -> WritePairs:
    """Write a pairs CSV: ``write_pairs(rows, name=..., header=...)`` -> its path."""

    def write(
        rows: Iterable[Sequence[str]],
        *,
        name: str = "pairs.csv",
        header: Sequence[str] = ("RegionId", "InstanceId", "VpcId"),
    ) -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows(rows)
        return path

    return write


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment for a child process: no cloud credentials, HOME inside tmp_path."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ALIBABA_CLOUD_", "ALICLOUD_"))
    }
    env["HOME"] = str(home)
    # Never the real metadata service (100.100.100.200): tests that want it set an endpoint.
    env["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
    # Nor the real STS: a closed local port unless a test points it at the emulator.
    env["BULK_ATTACH_STS_ENDPOINT"] = "http://127.0.0.1:9"
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"  # help text on one line per option, whatever the terminal
    env.pop("PYTHONWARNINGS", None)
    return env


async def start_cli(
    *args: str | os.PathLike[str],
    env: Mapping[str, str],
    cwd: Path,
    preexec_fn: Callable[[], None] | None = None,
) -> asyncio.subprocess.Process:
    """Start ``python -m bulk_attach ARGS`` with piped output, for a test to signal or watch."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulk_attach",
        *map(str, args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        preexec_fn=preexec_fn,
    )


async def finish(process: asyncio.subprocess.Process) -> CliResult:
    """Wait for a child (at most ``CLI_TIMEOUT``; a hang kills it and fails the test)."""
    try:
        async with asyncio.timeout(CLI_TIMEOUT):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


@pytest.fixture
def run_cli(cli_env: dict[str, str], tmp_path: Path) -> RunCli:
    """``await run_cli("run", "pairs.csv", ..., env_extra={...})`` -> CliResult.

    Runs ``python -m bulk_attach`` with asyncio's subprocess support, so an emulator
    started by the test in this event loop keeps answering while the child runs.
    """

    async def run(
        *args: str | os.PathLike[str],
        env_extra: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> CliResult:
        env = {**cli_env, **(env_extra or {})}
        return await finish(await start_cli(*args, env=env, cwd=cwd or tmp_path))

    return run


_FAULT_FIELDS = frozenset(FaultSettings.__dataclass_fields__)


def emulator_settings(**options: object) -> EmulatorSettings:
    """``EmulatorSettings`` from flat keywords: fault and flow-control ones go to ``faults``."""
    faults = {k: options.pop(k) for k in list(options) if k in _FAULT_FIELDS}
    return EmulatorSettings(faults=FaultSettings(**faults), **options)  # type: ignore[arg-type]
