"""Reading the input CSV: header, validation, duplicates, conflicts, unusable files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.rows import InputCode, Row
from bulk_attach.errors import ExitCode, InputError
from bulk_attach.files.csv_input import fingerprint, read_pairs
from bulk_attach.files.report import ReportWriter
from bulk_attach.settings import ReportFormat


def write(tmp_path: Path, content: str | bytes, name: str = "pairs.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def items(path: Path, region: str | None = None) -> list[Row | RowResult]:
    return list(read_pairs(path, region))


def test_plain_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "RegionId,InstanceId,VpcId\ncn-hangzhou,i-aaa1,vpc-a\ncn-shanghai,i-bbb2,vpc-b\n",
    )
    reader = read_pairs(path)
    assert reader.total == 2
    assert reader.rejected == 0
    assert reader.extra_columns == ()
    assert reader.check() is reader
    assert list(reader) == [
        Row(2, "cn-hangzhou", "i-aaa1", "vpc-a"),
        Row(3, "cn-shanghai", "i-bbb2", "vpc-b"),
    ]
    assert list(reader) == list(reader)  # iterable again (a second pass over the file)
    assert next(reader) == Row(2, "cn-hangzhou", "i-aaa1", "vpc-a")


def test_bom_blank_lines_whitespace_and_crlf(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        b"\xef\xbb\xbf instance_id , VPCID \r\n\r\n  i-aaa1 ,  vpc-a \r\n   \r\n,\r\ni-bbb2,vpc-a",
    )
    assert items(path, "cn-hangzhou") == [
        Row(3, "cn-hangzhou", "i-aaa1", "vpc-a"),
        Row(6, "cn-hangzhou", "i-bbb2", "vpc-a"),
    ]


def test_extra_columns_carried(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'owner,RegionId,InstanceId,VpcId,note\nbob,cn-hangzhou,i-aaa1,vpc-a,"x, ""y"""\n'
    )
    reader = read_pairs(path)
    assert reader.extra_columns == ("owner", "note")
    (row,) = list(reader)
    assert isinstance(row, Row)
    assert row.extra == (("owner", "bob"), ("note", 'x, "y"'))


def test_multiline_field_keeps_start_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'RegionId,InstanceId,VpcId,note\ncn-hangzhou,i-aaa1,vpc-a,"two\nlines"\ncn-hangzhou,x,vpc-a,\n',
    )
    first, second = items(path)
    assert isinstance(first, Row)
    assert first.line == 2
    assert isinstance(second, RowResult)
    assert second.line == 4
    assert second.message.startswith(f"{path}:4:2: InstanceId 'x'")


def test_invalid_rows_become_results_with_location(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "RegionId,InstanceId,VpcId\ncn-hangzhou,x-1,vpc-a\ncn-hangzhou,i-aaa1,\ncn-hangzhou,i-bbb2,vpc-b\n",
    )
    bad1, bad2, good = items(path)
    assert isinstance(bad1, RowResult)
    assert bad1.status is Status.INVALID
    assert bad1.error_code == InputCode.MALFORMED_ID
    assert bad1.message == f"{path}:2:2: InstanceId 'x-1' is not an instance ID (expected i-...)"
    assert isinstance(bad2, RowResult)
    assert bad2.error_code == InputCode.MISSING_VALUE
    assert bad2.message == f"{path}:3:3: VpcId is empty"
    assert bad2.instance_id == "i-aaa1"
    assert good == Row(4, "cn-hangzhou", "i-bbb2", "vpc-b")


def test_same_instance_same_vpc_first_runs_later_are_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "RegionId,InstanceId,VpcId\n"
        "cn-hangzhou,i-aaa1,vpc-a\n"
        "cn-hangzhou,i-bbb2,vpc-a\n"
        "cn-hangzhou, i-aaa1 ,vpc-a\n"
        "cn-hangzhou,i-aaa1,vpc-a\n",
    )
    reader = read_pairs(path)
    out = list(reader)
    assert [type(x).__name__ for x in out] == ["Row", "Row", "RowResult", "RowResult"]
    for dup in out[2:]:
        assert isinstance(dup, RowResult)
        assert dup.status is Status.DUPLICATE
        assert dup.error_code == InputCode.DUPLICATE
        assert "duplicate of line 2" in dup.message
    assert reader.rejected == 2


def test_invalid_first_occurrence_does_not_hide_a_later_valid_one(tmp_path: Path) -> None:
    path = write(tmp_path, "InstanceId,VpcId\ni-aaa1,\ni-aaa1,vpc-a\n")
    bad, good = items(path, "cn-hangzhou")
    assert isinstance(bad, RowResult)
    assert bad.status is Status.INVALID
    assert good == Row(3, "cn-hangzhou", "i-aaa1", "vpc-a")


def test_same_instance_two_vpcs_rejects_every_row_of_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "RegionId,InstanceId,VpcId\n"
        "cn-hangzhou,i-aaa1,vpc-a\n"
        "cn-hangzhou,i-bbb2,vpc-a\n"
        "cn-hangzhou,i-aaa1,vpc-b\n"
        "cn-hangzhou,i-aaa1,vpc-a\n"
        "cn-shanghai,i-ccc3,vpc-c\n"
        "cn-beijing,i-ccc3,vpc-c\n",
    )
    reader = read_pairs(path)
    out = list(reader)
    rows = [x for x in out if isinstance(x, Row)]
    assert [r.instance_id for r in rows] == ["i-bbb2"]
    rejected = [x for x in out if isinstance(x, RowResult)]
    assert [(r.line, r.status) for r in rejected] == [
        (2, Status.INVALID),
        (4, Status.INVALID),
        (5, Status.INVALID),
        (6, Status.INVALID),
        (7, Status.INVALID),
    ]
    assert all(r.error_code == InputCode.CONFLICTING for r in rejected)
    assert "vpc-b at line 4" in rejected[0].message
    assert "vpc-a at line 2" in rejected[1].message
    assert reader.rejected == 5


@pytest.mark.parametrize(
    ("content", "message", "line", "column"),
    [
        (b"", "the file is empty", None, None),
        (b"\n\n  \n", "the file is empty", None, None),
        (b"hello world\nfoo\n", "missing required columns", 1, None),
        (b'{"RegionId": "cn-hangzhou"}\n', "'cn-hangzhou', which looks like a region ID", 1, 1),
        (b"RegionId,InstanceId\ncn-hangzhou,i-a\n", "missing required column VpcId", 1, None),
        (b"InstanceId,VpcId\ni-aaa1,vpc-a\n", "RegionId (or give a default region", 1, None),
        (b"RegionId,InstanceId,VpcId,vpcid\n", "VpcId appears twice", 1, 4),
        (
            b"RegionId,InstanceId,VpcId\ncn-hangzhou,i-aaa1,vpc-a\n\xff\xfe,x\n",
            "not UTF-8",
            3,
            None,
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8", 1, None),
        (b"RegionId,InstanceId,VpcId\ncn-hangzhou,i-a\x00b,vpc-a\n", "not a CSV file", 2, None),
    ],
)
def test_unusable_files_raise_input_error(
    tmp_path: Path, content: bytes, message: str, line: int | None, column: int | None
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(InputError) as info:
        read_pairs(path)
    error = info.value
    assert message in str(error)
    assert error.exit_code == ExitCode.USAGE == 2
    assert error.path == str(path)
    assert (error.line, error.column) == (line, column)
    assert str(error).startswith(str(path))


def test_bad_bytes_far_down_are_found_before_anything_is_yielded(tmp_path: Path) -> None:
    body = "".join(f"cn-hangzhou,i-a{n:05d},vpc-a\n" for n in range(5000)).encode()
    path = write(tmp_path, b"RegionId,InstanceId,VpcId\n" + body + b"cn-hangzhou,i-\xe9,vpc-a\n")
    with pytest.raises(InputError) as info:
        read_pairs(path)
    assert info.value.line == 5002


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_pairs(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="cannot read"):
        read_pairs(tmp_path)


def test_a_report_is_accepted_as_input(tmp_path: Path) -> None:
    report = tmp_path / "old.report.csv"
    with ReportWriter(report, ReportFormat.CSV, ("owner",)) as writer:
        writer.write(
            RowResult(
                line=2,
                region_id="cn-hangzhou",
                instance_id="i-aaa1",
                vpc_id="vpc-a",
                status=Status.FAILED,
                error_code="Throttling",
                message="slow, down",
                extra=(("owner", "bob"),),
            )
        )
    reader = read_pairs(report)
    assert reader.is_report
    assert reader.extra_columns == ("owner",)  # Status, Message... are not extras
    assert list(reader) == [Row(2, "cn-hangzhou", "i-aaa1", "vpc-a", (("owner", "bob"),))]


def test_input_columns_named_like_report_columns_are_extras(tmp_path: Path) -> None:
    path = write(tmp_path, "RegionId,InstanceId,VpcId,Status\ncn-hangzhou,i-aaa1,vpc-a,prod\n")
    reader = read_pairs(path)
    assert not reader.is_report
    assert reader.extra_columns == ("Status",)


def test_fingerprint(tmp_path: Path) -> None:
    path = write(tmp_path, "RegionId,InstanceId,VpcId\n")
    fp = fingerprint(path)
    assert fp.size == 26
    assert fp.sha256 == hashlib.sha256(b"RegionId,InstanceId,VpcId\n").hexdigest()
    assert Path(fp.path).is_absolute()
    path.write_text("RegionId,InstanceId,VpcId\ncn-hangzhou,i-a1,vpc-a\n")
    assert fingerprint(path).sha256 != fp.sha256
    with pytest.raises(InputError):
        fingerprint(tmp_path / "nope")
