"""CSV files as people save them: semicolons, tabs, ``sep=`` lines, UTF-16, other encodings,
Excel's trailing empty columns, and a header with no rows.

The integrity properties of ``test_csv_integrity.py`` hold in every dialect and encoding: a
valid file runs every row, a damaged one has every line holding an instance reported or is
refused, and the run uses exactly the validated bytes.
"""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.rows import InputCode, Row
from bulk_attach.errors import ExitCode, InputError
from bulk_attach.files import csv_input
from bulk_attach.files.csv_input import read_pairs

ROWS = [
    ("cn-hangzhou", "i-aaa1", "vpc-a", "web, tier"),
    ("cn-shanghai", "i-bbb2", "vpc-b", "db"),
]


def text_of(delimiter: str, *, sep_line: bool = False, eol: str = "\r\n") -> str:
    lines = [delimiter.join(("RegionId", "InstanceId", "VpcId", "Note"))]
    for row in ROWS:
        note = f'"{row[3]}"' if delimiter in row[3] or "," in row[3] else row[3]
        lines.append(delimiter.join((*row[:3], note)))
    return (f"sep={delimiter}{eol}" if sep_line else "") + eol.join(lines) + eol


def write(tmp_path: Path, data: bytes, name: str = "pairs.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rows_of(path: Path, **options: str) -> list[tuple[int, str, str, str, str]]:
    items = list(read_pairs(path, **options))
    assert all(isinstance(item, Row) for item in items), items
    return [(i.line, i.region_id, i.instance_id, i.vpc_id, dict(i.extra)["Note"]) for i in items]


EXPECTED = [(n + 2, *row) for n, row in enumerate(ROWS)]


# --- separators -------------------------------------------------------------------------


@pytest.mark.parametrize(("delimiter", "name"), [(",", "comma"), (";", "semicolon"), ("\t", "tab")])
def test_the_separator_is_taken_from_the_header(
    tmp_path: Path, delimiter: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, text_of(delimiter).encode())
    with caplog.at_level(logging.DEBUG, logger="bulk_attach.input"):
        reader = read_pairs(path)
    assert reader.delimiter == delimiter
    assert rows_of(path) == EXPECTED
    assert f"{name}-separated" in caplog.text  # the log says which


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_an_excel_sep_line_names_the_separator_and_is_no_record(
    tmp_path: Path, delimiter: str
) -> None:
    path = write(tmp_path, text_of(delimiter, sep_line=True).encode())
    reader = read_pairs(path)
    assert reader.delimiter == delimiter
    assert "sep= line" in reader.dialect
    # Lines are numbered as in the file: the sep= line is line 1.
    assert rows_of(path) == [(line + 1, *rest) for line, *rest in EXPECTED]


def test_the_delimiter_option_wins(tmp_path: Path) -> None:
    path = write(tmp_path, text_of(";").encode())
    # Told commas, the header is one column: the option is honoured, never second-guessed.
    with pytest.raises(InputError, match="missing required columns"):
        read_pairs(path, delimiter=",")
    reader = read_pairs(path, delimiter=";")
    assert reader.dialect == "semicolon-separated (from --delimiter), UTF-8"
    assert rows_of(path, delimiter=";") == EXPECTED


def test_a_sep_line_with_a_bad_row_is_located_on_its_file_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"sep=;\nRegionId;InstanceId;VpcId\ncn-hangzhou;x-1;vpc-a\n")
    (item,) = read_pairs(path)
    assert isinstance(item, RowResult)
    assert item.line == 3
    assert f"{path}:3:2:" in item.message


# --- encodings --------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_excel_unicode_text_utf16_with_a_mark_is_read(tmp_path: Path, codec: str) -> None:
    mark = codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE
    path = write(tmp_path, mark + text_of("\t").encode(codec))
    reader = read_pairs(path)
    assert reader.delimiter == "\t"
    assert reader.dialect == "tab-separated (from the header), UTF-16 (byte-order mark)"
    assert rows_of(path) == EXPECTED


def test_utf16_without_a_mark_is_named_with_the_option_to_pass(tmp_path: Path) -> None:
    path = write(tmp_path, text_of("\t").encode("utf-16-le"))
    with pytest.raises(InputError, match="--encoding utf-16-le") as info:
        read_pairs(path)
    assert info.value.line == 1
    assert rows_of(path, encoding="utf-16-le") == EXPECTED


def test_another_encoding_is_named_in_the_error_and_read_with_the_option(tmp_path: Path) -> None:
    text = text_of(";").replace("db", "Société")
    path = write(tmp_path, text.encode("cp1252"))
    with pytest.raises(InputError, match="not UTF-8 text") as info:
        read_pairs(path)
    assert "--encoding" in str(info.value)
    assert info.value.line == 3
    assert info.value.exit_code == ExitCode.USAGE
    (_, second) = rows_of(path, encoding="cp1252")
    assert second[-1] == "Société"


def test_gbk_read_with_the_option(tmp_path: Path) -> None:
    text = "RegionId,InstanceId,VpcId,备注\ncn-hangzhou,i-aaa1,vpc-a,生产\n"
    path = write(tmp_path, text.encode("gbk"))
    with pytest.raises(InputError, match="--encoding gbk"):
        read_pairs(path)
    (item,) = read_pairs(path, encoding="gbk")
    assert isinstance(item, Row)
    assert item.extra == (("备注", "生产"),)


def test_a_byte_order_mark_wins_over_the_option(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + text_of(",").replace("db", "é").encode())
    reader = read_pairs(path, encoding="cp1252")
    assert reader.encoding == "utf-8-sig"
    assert [dict(i.extra)["Note"] for i in reader] == ["web, tier", "é"]


def test_a_utf16_file_with_a_bad_unit_is_located(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + text_of("\t").encode("utf-16-le")
    at = data.index("i-bbb2".encode("utf-16-le"))
    path = write(tmp_path, data[:at] + b"\x00\xdc" + data[at + 2 :])  # a lone low surrogate
    with pytest.raises(InputError, match="not UTF-16 text") as info:
        read_pairs(path)
    assert info.value.line == 3


def test_a_nul_character_in_utf16_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path, codecs.BOM_UTF16_LE + text_of("\t").replace("db", "d\x00b").encode("utf-16-le")
    )
    with pytest.raises(InputError, match="NUL") as info:
        read_pairs(path)
    assert info.value.line == 3


def test_a_utf16_file_rewritten_in_place_stops_before_the_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_input, "_CHUNK", 63)  # odd: blocks split UTF-16 code units
    lines = ["RegionId\tInstanceId\tVpcId", *(f"cn-hangzhou\ti-a{n:04d}\tvpc-a" for n in range(20))]
    path = write(tmp_path, codecs.BOM_UTF16_LE + "\r\n".join(lines).encode("utf-16-le"))
    reader = read_pairs(path)
    assert [item.line for item in read_pairs(path)] == list(range(2, 22))
    data = path.read_bytes()
    at = data.index("i-a0015".encode("utf-16-le"))
    with path.open("r+b") as file:
        file.seek(data.index("vpc-a".encode("utf-16-le"), at))
        file.write("vpc-b".encode("utf-16-le"))
    seen: list[Row | RowResult] = []
    with pytest.raises(InputError, match="changed since it was validated"):
        seen.extend(reader)
    assert seen
    assert all(isinstance(i, Row) and i.vpc_id == "vpc-a" for i in seen)


# --- Excel's trailing empty columns -----------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_trailing_empty_columns_and_trailing_delimiters_are_tolerated(
    tmp_path: Path, delimiter: str
) -> None:
    d = delimiter
    data = (
        f"RegionId{d}InstanceId{d}VpcId{d}{d}\n"
        f"cn-hangzhou{d}i-aaa1{d}vpc-a{d}{d}\n"
        f"cn-hangzhou{d}i-bbb2{d}vpc-a{d}\n"
        f"cn-hangzhou{d}i-ccc3{d}vpc-a\n"
        f"cn-hangzhou{d}i-ddd4{d}vpc-a{d}{d}{d}{d}\n"
    )
    reader = read_pairs(write(tmp_path, data.encode()))
    assert reader.columns.width == 3
    items = list(reader)
    assert [type(i) for i in items] == [Row] * 4
    assert reader.rejected == 0


def test_a_trailing_value_beyond_the_header_is_still_a_malformed_row(tmp_path: Path) -> None:
    path = write(tmp_path, b"RegionId,InstanceId,VpcId,,\ncn-hangzhou,i-aaa1,vpc-a,,oops\n")
    (item,) = read_pairs(path)
    assert isinstance(item, RowResult)
    assert item.status == Status.INVALID
    assert item.error_code == InputCode.MALFORMED_ROW


def test_an_empty_column_name_between_columns_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="column 2 has no name"):
        read_pairs(write(tmp_path, b"RegionId,,InstanceId,VpcId\ncn-hangzhou,x,i-aaa1,vpc-a\n"))


# --- a header and no rows ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"RegionId,InstanceId,VpcId\n",
        b"RegionId,InstanceId,VpcId\r\n\r\n,,\n",
        b"sep=;\nRegionId;InstanceId;VpcId",
    ],
)
def test_a_header_with_no_rows_is_refused(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data)
    with pytest.raises(InputError, match="no rows") as info:
        read_pairs(path)
    assert info.value.exit_code == ExitCode.USAGE == 2


# --- the integrity properties in every dialect -------------------------------------------

_regions = st.sampled_from(["cn-hangzhou", "cn-shanghai", "ap-southeast-1", "us-east-1"])
_notes = st.text(alphabet="abxyz ,;\t\"'\n\ré", max_size=12)
_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom", "cp1252"]


def encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-be-bom":
        return codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    return text.encode(encoding)


def option_for(encoding: str) -> str | None:
    return "cp1252" if encoding == "cp1252" else None


@st.composite
def dialect_csv(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str, str, str]]]:
    """A valid input in some dialect and encoding, notes quoted when they need it."""
    count = draw(st.integers(1, 6))
    ids = draw(st.lists(st.integers(0, 10**6), min_size=count, max_size=count, unique=True))
    rows = [
        (draw(_regions), f"i-t{n:07d}", f"vpc-{draw(st.sampled_from('abc'))}", draw(_notes))
        for n in ids
    ]
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    encoding = draw(st.sampled_from(_ENCODINGS))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))

    def cell(value: str) -> str:
        if any(c in value for c in f'{delimiter}"\r\n') or draw(st.booleans()):
            return '"' + value.replace('"', '""') + '"'
        return value

    names = ["RegionId", "InstanceId", "VpcId", "Note"] + [""] * draw(st.integers(0, 2))
    records = [names] + [[cell(v) for v in row] for row in rows]
    text = eol.join(delimiter.join(record) for record in records) + eol
    if draw(st.booleans()):
        text = f"sep={delimiter}{eol}" + text
    return encode(text, encoding).decode("latin-1"), encoding, rows


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(dialect_csv())
def test_a_valid_file_in_any_dialect_runs_every_row(
    tmp_path: Path, case: tuple[str, str, list[tuple[str, ...]]]
) -> None:
    data, encoding, rows = case
    path = write(tmp_path, data.encode("latin-1"))
    items = list(read_pairs(path, encoding=option_for(encoding)))
    assert [(i.region_id, i.instance_id, i.vpc_id, dict(i.extra)["Note"]) for i in items] == rows


@st.composite
def mutated_dialect_csv(draw: st.DrawFn) -> tuple[str, str]:
    data, encoding, _ = draw(dialect_csv())
    raw = data.encode("latin-1")
    codec = {"utf-16": "utf-16", "utf-16-be-bom": "utf-16"}.get(encoding, encoding)
    text = raw.decode(codec)
    text = text.removeprefix("\ufeff")
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["quote", "quote", "join", "cr", "header"]))
        breaks = [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
        if kind == "quote":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + '"' + text[at:]
        elif kind == "join" and breaks:
            end = draw(st.sampled_from(breaks))
            start = end - (2 if text[end - 2 : end] == "\r\n" else 1)
            text = text[:start] + draw(st.sampled_from(["", " ", ",", ";", "\t"])) + text[end:]
        elif kind == "cr":
            text = re.sub(r"\r\n|\n", "\r", text)
        elif kind == "header":
            cells = re.findall(r"i-t\d{7}|vpc-[abc]|cn-hangzhou|us-east-1", text)
            if cells:
                name = draw(st.sampled_from(["RegionId", "InstanceId", "VpcId"]))
                text = text.replace(name, draw(st.sampled_from(cells)), 1)
    return text, encoding


INSTANCE = re.compile(r"i-[a-z0-9]{2,40}")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutated_dialect_csv())
def test_every_line_holding_an_instance_is_reported_or_refused_in_any_dialect(
    tmp_path: Path, case: tuple[str, str]
) -> None:
    text, encoding = case
    path = write(tmp_path, encode(text, encoding if encoding != "utf-8-sig" else "utf-8-sig"))
    try:
        reader = read_pairs(path, encoding=option_for(encoding))
    except InputError:
        return
    items = list(reader)
    lines = {item.line for item in items}
    instances = set(INSTANCE.findall(" ".join(item.instance_id for item in items).replace('"', "")))
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        held = INSTANCE.findall(line.replace('"', ""))
        assert not held or number in lines or instances.intersection(held), (number, line)
