"""The report: written row by row, read back, torn tails recovered, sidecars."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.errors import InputError
from bulk_attach.files.paths import ReportPaths
from bulk_attach.files.report import (
    COLUMNS,
    ReportMeta,
    ReportReader,
    ReportWriter,
    StartedJournal,
    detect_format,
    read_meta,
    read_report,
    read_started,
    repair_report,
    set_aside,
    write_meta,
    write_summary,
)
from bulk_attach.settings import ReportFormat

FORMATS = [ReportFormat.CSV, ReportFormat.JSONL]


def sample(line: int, **changes: object) -> RowResult:
    base = RowResult(
        line=line,
        region_id="cn-hangzhou",
        instance_id=f"i-test{line}",
        vpc_id="vpc-a",
        status=Status.FAILED,
        request_id="8A2C-11",
        error_code="InvalidStatus.InstanceLocked",
        http_status=403,
        message='locked, "busy"\nsee console',
        attempts=2,
        started_at="2024-05-01T10:00:00.000Z",
        finished_at="2024-05-01T10:00:01.250Z",
        extra=(("owner", "bob"), ("note", "a,b")),
    )
    return base.replace(**changes)


def write(path: Path, fmt: ReportFormat, results: list[RowResult], **kw: object) -> None:
    with ReportWriter(path, fmt, ("owner", "note"), **kw) as writer:  # type: ignore[arg-type]
        writer.write_all(results)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, fmt: ReportFormat) -> None:
    path = tmp_path / f"report.{fmt}"
    results = [
        sample(2),
        sample(3, status=Status.ATTACHED, error_code="", http_status=0, message=""),
        sample(4, status=Status.INVALID, extra=(("owner", ""), ("note", "é ✓"))),
    ]
    write(path, fmt, results)
    assert detect_format(path) is fmt
    assert list(read_report(path)) == results


def test_csv_layout(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write(path, ReportFormat.CSV, [sample(2, http_status=0)])
    text = path.read_bytes().decode("utf-8")
    header, first = text.split("\r\n", 1)
    assert header == ",".join(COLUMNS) + ",owner,note"
    assert first.startswith(
        "2,cn-hangzhou,i-test2,vpc-a,failed,8A2C-11,InvalidStatus.InstanceLocked,,"
    )
    assert text.endswith("\r\n")


def test_jsonl_layout(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    write(path, ReportFormat.JSONL, [sample(2)])
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["HttpStatus"] == 403
    assert record["Attempts"] == 2
    assert record["line"] == 2
    assert record["Extra"] == {"owner": "bob", "note": "a,b"}
    assert list(record)[: len(COLUMNS)] == list(COLUMNS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_row_reaches_the_file_before_close(tmp_path: Path, fmt: ReportFormat) -> None:
    path = tmp_path / "report"
    writer = ReportWriter(path, fmt, ("owner", "note"), fsync_interval=None)
    writer.write(sample(2))
    writer.write(sample(3))
    # Not closed: a crash now must still find both rows (they were handed to the OS).
    assert [r.line for r in read_report(path)] == [2, 3]
    writer.close()
    writer.close()  # idempotent
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.write(sample(4))


def test_fsync_at_intervals_with_a_fake_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    now = [0.0]
    writer = ReportWriter(tmp_path / "r.csv", fsync_interval=1.0, clock=lambda: now[0])
    writer.write(sample(2, extra=()))
    assert synced == []
    now[0] = 1.5
    writer.write(sample(3, extra=()))
    assert len(synced) == 1
    writer.write(sample(4, extra=()))
    assert len(synced) == 1
    writer.close()
    assert len(synced) == 2  # and on close


@pytest.mark.parametrize("fmt", FORMATS)
def test_torn_last_record_is_dropped_not_fatal(tmp_path: Path, fmt: ReportFormat) -> None:
    path = tmp_path / "report"
    write(path, fmt, [sample(2), sample(3)])
    full = path.read_bytes()
    intact = len(full) - len(full.splitlines(keepends=True)[-1])
    if fmt is ReportFormat.CSV:
        # The last record spans two physical lines (the message has a newline).
        intact = full.rfind(b"\n3,") + 1
    for cut in range(intact + 1, len(full)):
        path.write_bytes(full[:cut])
        reader = ReportReader(path)
        assert [r.line for r in reader] == [2], cut
        assert reader.torn
        assert reader.good_size == intact


def test_torn_multibyte_character(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    write(path, ReportFormat.JSONL, [sample(2), sample(3, message="✓✓✓")])
    data = path.read_bytes()
    cut = data.rfind("✓".encode()) + 1
    path.write_bytes(data[:cut])
    assert [r.line for r in read_report(path)] == [2]


@pytest.mark.parametrize("fmt", FORMATS)
def test_append_repairs_the_tail_then_continues(tmp_path: Path, fmt: ReportFormat) -> None:
    path = tmp_path / "report"
    write(path, fmt, [sample(2), sample(3)])
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # kill -9 in the middle of row 3
    write(path, fmt, [sample(3), sample(4)], append=True)
    assert [r.line for r in read_report(path)] == [2, 3, 4]
    assert list(read_report(path))[1] == sample(3)


def test_append_to_empty_or_missing_file_writes_header(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write(path, ReportFormat.CSV, [sample(2)], append=True)
    path.write_bytes(b"line,Reg")  # torn header
    write(path, ReportFormat.CSV, [sample(5)], append=True)
    assert [r.line for r in read_report(path)] == [5]


def test_append_refuses_other_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write(path, ReportFormat.CSV, [sample(2)])
    with pytest.raises(InputError, match="extra columns"):
        ReportWriter(path, ReportFormat.CSV, ("team",), append=True)
    path2 = tmp_path / "report.jsonl"
    write(path2, ReportFormat.JSONL, [sample(2)])
    with pytest.raises(InputError, match="JSON Lines"):
        ReportWriter(path2, ReportFormat.CSV, ("owner", "note"), append=True)


def test_overwrite_without_append(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write(path, ReportFormat.CSV, [sample(2), sample(3)])
    write(path, ReportFormat.CSV, [sample(9)])
    assert [r.line for r in read_report(path)] == [9]


def test_repair_report_returns_bytes_cut(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    write(path, ReportFormat.CSV, [sample(2)])
    assert repair_report(path) == 0
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"3,cn-hang")
    assert repair_report(path) == 9
    assert path.stat().st_size == size


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hello,world\n1,2\n", "not a bulk-attach report"),
        (",".join(COLUMNS) + "\n2,cn-hangzhou,i-a,vpc-a,weird,,,,,0,,\n", "not a report status"),
        (",".join(COLUMNS) + "\n2,cn-hangzhou\n3,x\n", "fields but the header has"),
        (",".join(COLUMNS) + "\nx,cn-hangzhou,i-a,vpc-a,failed,,,,,0,,\n", "line is not a number"),
        ('{"line": 1}\n', "missing fields"),
        ('{"x": 1}\n[1, 2]\n', "not a report row"),
    ],
)
def test_damage_in_the_middle_is_an_input_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "report"
    path.write_bytes((content + "\n").encode())
    with pytest.raises(InputError, match=message) as info:
        list(read_report(path))
    assert info.value.line is not None


def test_missing_report_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        list(read_report(tmp_path / "nope.csv"))


def test_write_summary_is_atomic_json(tmp_path: Path) -> None:
    path = tmp_path / "out" / "report.csv.summary.json"
    write_summary(path, {"total": 3, "name": "ü"})
    write_summary(path, {"total": 4})
    assert json.loads(path.read_text(encoding="utf-8")) == {"total": 4}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_meta_sidecar_round_trip_and_input_check(tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    assert read_meta(report) is None
    meta = ReportMeta("/data/pairs.csv", 120, "ab" * 32, created_at="2024-05-01T10:00:00Z")
    assert write_meta(report, meta) == ReportPaths(report).meta == tmp_path / "report.csv.meta.json"
    assert read_meta(report) == meta
    assert meta.input_differs(120, "ab" * 32) is None
    assert "input changed" in (meta.input_differs(121, "cd" * 32) or "")
    ReportPaths(report).meta.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="metadata"):
        read_meta(report)
    ReportPaths(report).meta.write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match="not a report metadata"):
        read_meta(report)


def test_started_journal(tmp_path: Path) -> None:
    path = ReportPaths(tmp_path / "report.csv").started
    assert read_started(path) == set()
    with StartedJournal(path) as journal:
        journal.mark(2, ("cn-hangzhou", "i-a1", "vpc-a"))
        journal.mark(3, ("cn-hangzhou", "i-b2", "vpc-a"))
    with open(path, "ab") as f:
        f.write(b"4\tcn-hangzhou\ti-c")  # torn by kill -9
    assert read_started(path) == {
        ("cn-hangzhou", "i-a1", "vpc-a"),
        ("cn-hangzhou", "i-b2", "vpc-a"),
    }
    with StartedJournal(path) as journal:  # reopening cuts the torn line
        journal.mark(5, ("cn-hangzhou", "i-d4", "vpc-b"))
    assert ("cn-hangzhou", "i-d4", "vpc-b") in read_started(path)
    assert len(path.read_text().splitlines()) == 3


def test_set_aside_moves_report_and_sidecars(tmp_path: Path) -> None:
    report = tmp_path / "pairs.report.csv"
    write(report, ReportFormat.CSV, [sample(2)])
    write_meta(report, ReportMeta("p", 1, "x"))
    paths = ReportPaths(report)
    StartedJournal(paths.started).close()
    paths.summary.write_text("{}", encoding="utf-8")
    paths.lock.touch()  # the lock belongs to the path, not to this report: it stays
    moved = set_aside(paths, "20240501T100000")
    assert moved == tmp_path / "pairs.report.20240501T100000.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pairs.report.20240501T100000.csv",
        "pairs.report.20240501T100000.csv.meta.json",
        "pairs.report.20240501T100000.csv.started",
        "pairs.report.20240501T100000.csv.summary.json",
        "pairs.report.csv.lock",
    ]
    assert set_aside(paths, "again") is None


text = st.text(st.characters(codec="utf-8"), max_size=30)
results = st.builds(
    RowResult,
    line=st.integers(1, 10**7),
    region_id=text,
    instance_id=text,
    vpc_id=text,
    status=st.sampled_from(list(Status)),
    request_id=text,
    error_code=text,
    http_status=st.integers(0, 599),
    message=text,
    attempts=st.integers(0, 100),
    started_at=text,
    finished_at=text,
    extra=st.tuples(st.tuples(st.just("owner"), text), st.tuples(st.just("note"), text)),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(results, max_size=8), fmt=st.sampled_from(FORMATS))
def test_round_trip_property(tmp_path: Path, rows: list[RowResult], fmt: ReportFormat) -> None:
    path = tmp_path / f"prop.{fmt}"
    write(path, fmt, rows)
    reader = ReportReader(path)
    assert list(reader) == rows
    assert not reader.torn
