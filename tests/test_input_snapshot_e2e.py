"""A whole run uses exactly the input bytes it validated (issue 8, part 6).

The reader's second pass used to reopen the live file: rows appended during a run were
attached without validation. These run the real job against the emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_run_e2e import FAST, HZ, credentials_of, pairs_for, world_for, write_csv

from bulk_attach.emulator.server import EmulatorSettings, running_emulator
from bulk_attach.engine.control import StopReason
from bulk_attach.files import csv_input
from bulk_attach.files.csv_input import read_pairs
from bulk_attach.job import run_job
from bulk_attach.settings import ClientSettings, RunSettings


def settings(tmp_path: Path, csv_path: Path) -> RunSettings:
    return RunSettings(
        input_path=csv_path, report_path=tmp_path / "report.csv", rate=None, attempts=FAST
    )


async def test_rows_appended_after_validation_are_never_sent(tmp_path: Path) -> None:
    validated = pairs_for(6, ["vpc-a"])
    appended = [(HZ, "i-late9", "vpc-a")]
    path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], validated)
    async with running_emulator(world_for(validated + appended), EmulatorSettings()) as emu:
        rows = read_pairs(path)  # validated here, as the CLI does before the run
        with path.open("a") as file:
            file.write(f"{HZ},i-late9,vpc-a\n")
        client = ClientSettings(endpoint=emu.endpoint, read_timeout=5.0)
        result = await run_job(settings(tmp_path, path), client, credentials_of(emu), rows=rows)
        links = dict(emu.model.links)
    assert result.exit_code == 0
    assert "i-late9" not in links
    assert sorted(links) == sorted(instance for _, instance, _ in validated)


async def test_a_file_rewritten_in_place_stops_the_run_before_a_changed_row_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_input, "_CHUNK", 64)  # small blocks: the change is in a later one
    pairs = pairs_for(12, ["vpc-a"])
    path = write_csv(tmp_path / "pairs.csv", ["RegionId", "InstanceId", "VpcId"], pairs)
    async with running_emulator(
        world_for([*pairs, (HZ, "i-t00011", "vpc-b")]), EmulatorSettings()
    ) as emu:
        rows = read_pairs(path)
        data = path.read_bytes()
        path.write_bytes(data.replace(b"i-t00011,vpc-a", b"i-t00011,vpc-b"))  # same size
        client = ClientSettings(endpoint=emu.endpoint, read_timeout=5.0)
        result = await run_job(settings(tmp_path, path), client, credentials_of(emu), rows=rows)
        links = dict(emu.model.links)
    # The run stops as an input error (exit 2), and its summary says why.
    assert result.exit_code == 2
    assert result.stop_reason is StopReason.INPUT_CHANGED
    assert "changed since it was validated" in result.summary["stop_detail"]
    assert links.get("i-t00011") != "vpc-b"
    # The report is flushed: the rows in flight when the run stopped are marked so.
    report = (tmp_path / "report.csv").read_text()
    assert "i-t00011,vpc-b" not in report
