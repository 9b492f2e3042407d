"""The emulator that remembers: a state file kept across commands, a banner that says only
what is true away from loopback, and a server that cuts off requests that never arrive."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from aiohttp import web
from conftest import RunCli

from bulk_attach.api.client import parse_endpoint
from bulk_attach.emulator import world as world_module
from bulk_attach.emulator.cli import banner
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, RunningEmulator, running_emulator
from bulk_attach.emulator.world import WorldSpec, build_world, load_world, save_state
from bulk_attach.errors import ExitCode

HZ = "cn-hangzhou"


def pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text(f"RegionId,InstanceId,VpcId\n{HZ},i-aaa1,vpc-a\n{HZ},i-bbb2,vpc-a\n")
    return path


# --- the state file across commands -------------------------------------------------------


async def test_the_state_file_carries_the_world_from_run_to_verify_to_detach(
    run_cli: RunCli, tmp_path: Path
) -> None:
    path, state = pairs(tmp_path), tmp_path / "emu.json"
    base = ("--emulator", "--rate", "0", "--emulator-state", state)
    ran = await run_cli("run", path, *base)
    assert ran.returncode == ExitCode.OK, ran
    assert "emulator state: " in ran.stderr
    saved = json.loads(state.read_text())
    assert saved["links"] == [
        {"InstanceId": "i-aaa1", "VpcId": "vpc-a"},
        {"InstanceId": "i-bbb2", "VpcId": "vpc-a"},
    ]
    # Forgotten without the file: a fresh world has no links.
    forgetful = await run_cli("verify", path, "--emulator", "--rate", "0")
    assert forgetful.returncode == ExitCode.SOME_ROWS_FAILED, forgetful
    remembered = await run_cli("verify", path, *base)
    assert remembered.returncode == ExitCode.OK, remembered
    assert "as the last command left it" in remembered.stderr
    detached = await run_cli("detach", tmp_path / "pairs.report.csv", *base, "--yes")
    assert detached.returncode == ExitCode.OK, detached
    assert json.loads(state.read_text())["links"] == []
    after = await run_cli("verify", path, *base)
    assert after.returncode == ExitCode.SOME_ROWS_FAILED, after


async def test_emulator_state_needs_emulator(run_cli: RunCli, tmp_path: Path) -> None:
    result = await run_cli("run", pairs(tmp_path), "--emulator-state", tmp_path / "s.json")
    assert result.returncode == ExitCode.USAGE
    assert "only meaningful with --emulator" in result.stderr


def test_a_state_file_replaces_the_world_and_the_input_fills_its_gaps(tmp_path: Path) -> None:
    model = EcsModel()
    model.add_instance(Instance("i-aaa1", region_id=HZ))
    model.add_vpc(Vpc("vpc-a", region_id=HZ))
    model.add_region(HZ)
    model.link("i-aaa1", "vpc-a")
    state = tmp_path / "state.json"
    save_state(model, state)
    built = build_world(WorldSpec(pairs=pairs(tmp_path), state=state))
    assert built.links == {"i-aaa1": "vpc-a"}
    assert "i-bbb2" in built.instances


def test_saving_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = EcsModel()
    model.add_region(HZ)
    state = tmp_path / "state.json"
    save_state(model, state)
    before = state.read_bytes()
    model.add_vpc(Vpc("vpc-z", region_id=HZ))

    def broken(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(world_module.os, "replace", broken)
    with pytest.raises(OSError, match="No space"):
        save_state(model, state)
    assert state.read_bytes() == before  # the old state, whole
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left
    monkeypatch.undo()
    save_state(model, state)
    assert "vpc-z" in load_world(state).vpcs


# --- the banner ---------------------------------------------------------------------------


def running(host: str, port: int = 8080) -> RunningEmulator:
    shown = f"[{host}]" if ":" in host else host
    return RunningEmulator(
        endpoint=f"http://{shown}:{port}",
        host=host,
        port=port,
        access_key_id="EMUKEY",
        access_key_secret="emusecret",
        app=web.Application(),
    )


def suggested_endpoints(lines: list[str]) -> list[tuple[str, bool]]:
    found = []
    for line in lines:
        if (match := re.search(r"--endpoint (\S+)", line)) is not None:
            found.append((match[1], "--insecure-http" in line))
    return found


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "192.0.2.10"])  # noqa: S104
def test_the_banner_suggests_only_commands_the_client_accepts(host: str) -> None:
    lines = banner(running(host), EmulatorSettings(host=host))
    endpoints = suggested_endpoints(lines)
    assert endpoints
    for endpoint, insecure in endpoints:
        if "THIS-HOST" not in endpoint:
            parse_endpoint(endpoint, allow_insecure_http=insecure)  # raises if refused


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10"])  # noqa: S104
def test_away_from_loopback_the_banner_prints_no_state_url(host: str) -> None:
    text = "\n".join(banner(running(host), EmulatorSettings(host=host)))
    assert "/_emulator/state" not in text
    assert "control endpoint (/_emulator/...): off" in text


def test_on_loopback_the_banner_prints_the_state_url() -> None:
    text = "\n".join(banner(running("127.0.0.1"), EmulatorSettings(), Path("w.json")))
    assert "http://127.0.0.1:8080/_emulator/state" in text
    assert "world kept in w.json" in text
    assert "--insecure-http" not in text


# --- requests that never finish arriving ----------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le",  # headers never complete
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\nAction=Desc",  # nor the body
    ],
    ids=["headers", "body"],
)
async def test_a_request_that_never_finishes_arriving_is_cut_off(partial: bytes) -> None:
    settings = EmulatorSettings(request_timeout=0.2)
    async with running_emulator(EcsModel(), settings) as emu:
        reader, writer = await asyncio.open_connection(emu.host, emu.port)
        writer.write(partial)
        await writer.drain()
        async with asyncio.timeout(30):  # a bound for a hang, not a measured time
            rest = await reader.read()
        writer.close()
        assert b"200 OK" not in rest  # closed without an answer
