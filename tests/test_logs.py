"""Logs for schedulers and log shippers: timestamped text lines or one JSON object per line,
every engine event written with its fields, the per-VPC summary capped for people only."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RunCli

from bulk_attach import logs
from bulk_attach.commands import progress_for
from bulk_attach.core.outcomes import RowResult, Status, Summary
from bulk_attach.engine.events import RowRetrying, RowSettled, RunStopping, Throttled
from bulk_attach.errors import ExitCode
from bulk_attach.logs import EventLog, setup_logging
from bulk_attach.progress import LogProgress, render_read_summary, render_summary
from bulk_attach.settings import LogFormat, RunSettings

HZ = "cn-hangzhou"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test sets up logging on its captured stderr; leave none of it behind."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)
    root.setLevel(level)
    logs._Chosen.format = LogFormat.TEXT


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one object


def feed_events(listener: EventLog) -> None:
    listener(
        RowRetrying(
            line=12,
            code="ServiceUnavailable",
            delay=0.8,
            attempt=2,
            region_id=HZ,
            instance_id="i-aaa1",
            vpc_id="vpc-a",
            http_status=503,
            reason="The service is unavailable",
        )
    )
    listener(Throttled(region=HZ, rate=10.0))
    listener(RowSettled(RowResult(12, HZ, "i-aaa1", "vpc-a", Status.ATTACHED, attempts=3)))
    listener(RunStopping("failure threshold: stopping"))


def test_json_events_carry_their_fields(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(1, LogFormat.JSON)
    feed_events(EventLog())
    events = json_lines(capsys.readouterr().err)
    assert [e["event"] for e in events] == [
        "row_retrying",
        "throttled",
        "row_settled",
        "run_stopping",
    ]
    retry, throttle, settled, stop = events
    assert retry["level"] == "INFO"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", retry["timestamp"])
    assert {k: retry[k] for k in ("line", "instance", "vpc", "code", "attempt", "delay")} == {
        "line": 12,
        "instance": "i-aaa1",
        "vpc": "vpc-a",
        "code": "ServiceUnavailable",
        "attempt": 2,
        "delay": 0.8,
    }
    assert retry["http_status"] == 503  # a retried 5xx answer is logged at -v
    assert retry["reason"] == "The service is unavailable"
    assert throttle["rate"] == 10.0
    assert throttle["region"] == HZ
    assert settled["status"] == "attached"
    assert settled["attempts"] == 3
    assert stop["level"] == "WARNING"
    assert stop["reason"] == "failure threshold: stopping"


def test_rows_are_logged_at_v_only(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(0, LogFormat.JSON)
    feed_events(EventLog())
    events = json_lines(capsys.readouterr().err)
    # Throttling and stops at the default verbosity; retries and settled rows need -v.
    assert [e["event"] for e in events] == ["throttled", "run_stopping"]


def test_text_lines_carry_a_utc_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(1, LogFormat.TEXT)
    feed_events(EventLog())
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    assert all(STAMP.match(line) for line in lines), lines
    assert "line 12 (i-aaa1 -> vpc-a): ServiceUnavailable HTTP 503, attempt 2" in lines[0]


def test_an_event_added_later_is_written_with_its_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @dataclass(frozen=True)
    class ThrottleRecovered:
        region: str
        rate: float

    setup_logging(0, LogFormat.JSON)
    EventLog()(ThrottleRecovered(HZ, 20.0))
    (event,) = json_lines(capsys.readouterr().err)
    assert event["event"] == "throttle_recovered"
    assert (event["region"], event["rate"]) == (HZ, 20.0)


def test_progress_lines_as_json_hold_their_figures(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(0, LogFormat.JSON)
    settings = RunSettings(input_path=Path("x.csv"), log_format=LogFormat.JSON)
    listeners, close = progress_for(settings, 2)
    for listener in listeners:
        listener(RowSettled(RowResult(2, HZ, "i-aaa1", "vpc-a", Status.ATTACHED)))
    close()
    (progress,) = json_lines(capsys.readouterr().err)
    assert progress["event"] == "progress"
    assert (progress["settled"], progress["total"], progress["attached"]) == (1, 2, 1)


def test_the_progress_interval_is_an_option() -> None:
    settings = RunSettings(input_path=Path("x.csv"), progress_interval=0.5)
    listeners, _ = progress_for(settings, 2)
    (lines,) = [x for x in listeners if isinstance(x, LogProgress)]
    assert lines._interval == 0.5


def many_vpcs(count: int) -> dict[str, Any]:
    rows = [RowResult(n, HZ, f"i-{n:04d}", f"vpc-{n:03d}", Status.ATTACHED) for n in range(count)]
    rows += [RowResult(900 + n, HZ, f"i-f{n}", "vpc-007", Status.FAILED) for n in range(3)]
    rows += [RowResult(950, HZ, "i-g1", "vpc-019", Status.FAILED)]
    return Summary(rows).to_dict(duration=1.0)


def test_the_terminal_summary_caps_its_vpc_lines_worst_first() -> None:
    data = many_vpcs(30)
    text = render_summary(data)
    vpc_lines = [line for line in text.splitlines() if line.startswith("    vpc-")]
    assert len(vpc_lines) == 20
    assert vpc_lines[0].startswith("    vpc-007:")  # 3 failed
    assert vpc_lines[1].startswith("    vpc-019:")  # 1 failed
    assert "the 20 worst of 30" in text
    assert "    and 10 more" in text
    assert len(data["by_vpc"]) == 30  # the summary file keeps them all
    assert "and 10 more" in render_read_summary({**data, "command": "verify"})


def test_a_small_summary_lists_every_vpc_in_order() -> None:
    text = render_summary(many_vpcs(5))
    assert "more" not in text


async def test_run_in_json_is_one_object_per_line(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    body = "".join(f"{HZ},i-a{n:03d},vpc-{n % 25:02d}\n" for n in range(50))
    path.write_text("RegionId,InstanceId,VpcId\n" + body + f"{HZ},bad,vpc-00\n")
    result = await run_cli("run", path, "--emulator", "--rate", "0", "--log-format", "json", "-v")
    assert result.returncode == ExitCode.SOME_ROWS_FAILED, result
    assert result.stdout == ""
    events = json_lines(result.stderr)
    names = [e["event"] for e in events]
    assert names[0] == "note"  # the embedded emulator's endpoint
    assert "start" in names
    assert names.count("row_settled") == 51
    assert names[-1] == "summary"
    start = events[names.index("start")]
    assert start["rows"] == 51
    assert start["input_format"] == "comma-separated (from the header), UTF-8"
    assert not any("secret" in key.lower() for key in start)
    summary = events[-1]
    assert len(summary["by_vpc"]) == 25  # all of them, never capped
    assert summary["exit_code"] == 1


async def test_quiet_json_says_nothing_but_errors(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(f"RegionId,InstanceId,VpcId\n{HZ},i-aaa1,vpc-a\n")
    quiet = await run_cli("run", path, "--emulator", "--log-format", "json", "-q")
    assert quiet.returncode == ExitCode.OK, quiet
    assert quiet.stderr == ""
    empty = tmp_path / "empty.csv"
    empty.write_text("RegionId,InstanceId,VpcId\n")
    failed = await run_cli("run", empty, "--emulator", "--log-format", "json", "-q")
    (error,) = json_lines(failed.stderr)
    assert (error["event"], error["level"], error["exit_code"]) == ("error", "ERROR", 2)
    assert "no rows" in error["message"]
