"""No input row may vanish: stray quotes, broken headers, and a file that changes mid-run.

A stray quote makes the CSV reader take every following line as one value; a header joined
to a row hides that row. Either way the rows never ran and were in no report, and the run
said all was well. The reader now refuses such a file (``InputError``, exit 2, nothing sent),
and runs exactly the bytes it validated.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulk_attach.core.outcomes import RowResult
from bulk_attach.core.rows import Row
from bulk_attach.errors import ExitCode, InputError
from bulk_attach.files import csv_input
from bulk_attach.files.csv_input import fingerprint, read_pairs

HEADER = "RegionId,InstanceId,VpcId,Note"
ROWS = [
    "cn-hangzhou,i-aaa1,vpc-a,web-tier",
    "cn-hangzhou,i-bbb2,vpc-a,db-tier",
    "cn-shanghai,i-ccc3,vpc-b,batch",
    "cn-shanghai,i-ddd4,vpc-b,batch",
]


def write(tmp_path: Path, content: str | bytes, name: str = "pairs.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def refused(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        read_pairs(path)
    assert info.value.exit_code == ExitCode.USAGE == 2
    assert info.value.path == str(path)
    return info.value


# --- stray quotes ------------------------------------------------------------------------


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize(
    ("lines", "where", "words"),
    [
        # The tester's case: an extra column's text opens a quote and never closes it.
        ([HEADER, ROWS[0], 'cn-hangzhou,i-bbb2,vpc-a,"rack A', *ROWS[2:]], (3, 4), "never closed"),
        # A quote typed before a VPC ID, never closed.
        ([HEADER, ROWS[0], 'cn-hangzhou,i-bbb2,"vpc-a,x', *ROWS[2:]], (3, 3), "never closed"),
        # ... closed by a quoted note further down: the rows between are swallowed.
        (
            [
                HEADER,
                'cn-hangzhou,i-aaa1,"vpc-a,x',
                ROWS[1],
                ROWS[2],
                'cn-shanghai,i-ddd4,vpc-b,"y"',
            ],
            (2, 3),
            "VpcId value runs over several lines",
        ),
        # A note opened on one row and closed on a later one: a row's IDs are in it.
        (
            [
                HEADER,
                'cn-hangzhou,i-aaa1,vpc-a,"web',
                ROWS[1],
                'cn-shanghai,i-ccc3,vpc-b,x"',
                ROWS[3],
            ],
            (2, 4),
            "looks like a region ID",
        ),
        # The closing quote is the next row's first character: its fields follow the note.
        (
            [HEADER, 'cn-hangzhou,i-aaa1,vpc-a,"web', '"cn-hangzhou,i-bbb2,vpc-a', *ROWS[2:]],
            (2, 4),
            "has 6 fields but the header has 4",
        ),
        # Found by the property below: a note over lines, then the next row quoted whole.
        (
            [
                "Note,RegionId,InstanceId,VpcId",
                '"aaaaa""',
                '","cn-hangzhou,i-bbb2,"vpc-a"',
                ",cn-hangzhou,i-ccc3,vpc-a",
            ],
            (2, 1),
            "not a valid row",
        ),
        # A note put first: the quote swallows its own row's IDs and closes in the next row.
        (
            [
                "Note,RegionId,InstanceId,VpcId",
                '"web,cn-hangzhou,i-aaa1,vpc-a',
                '"x",cn-hangzhou,i-bbb2,vpc-a',
            ],
            (2, 1),
            "looks like a region ID",
        ),
        # A quote at the very end of the file, or alone on the last line.
        ([HEADER, *ROWS, '"'], (6, 1), "never closed"),
        ([HEADER, *ROWS[:-1], ROWS[-1] + ',"'], (5, 5), "never closed"),
        ([HEADER, *ROWS[:-1], 'cn-shanghai,i-ddd4,vpc-b,"batch'], (5, 4), "never closed"),
        # In the header itself.
        ([HEADER + ',"owner', *ROWS], (1, 5), "never closed"),
        ([HEADER + ',"owner', *ROWS[:-1], ROWS[-1] + ',x"'], (1, 5), "a quote in the header row"),
    ],
)
def test_a_stray_quote_that_swallows_lines_is_refused_where_it_opens(
    tmp_path: Path, lines: list[str], where: tuple[int, int], words: str, eol: str
) -> None:
    for text in (eol.join(lines), eol.join(lines) + eol):  # with and without a final line end
        path = write(tmp_path, text)
        error = refused(path)
        assert (error.line, error.column) == where
        assert words in error.reason
        assert str(error).startswith(f"{path}:{where[0]}:{where[1]}: ")


def test_the_error_says_which_lines_the_quote_swallows(tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join([HEADER, 'cn-hangzhou,i-aaa1,vpc-a,"web', *ROWS[1:]]) + "\n")
    assert "lines 2 to 5 (the end of the file)" in refused(path).reason


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_an_extra_columns_text_may_run_over_lines(tmp_path: Path, eol: str) -> None:
    lines = [
        "Note,RegionId,InstanceId,VpcId,Owner",
        '"rack A,',
        'row 3",cn-hangzhou,i-aaa1,vpc-a,"bob',
        'and ""alice"""',
        "x,cn-hangzhou,i-bbb2,vpc-a,",
    ]
    items = list(read_pairs(write(tmp_path, eol.join(lines))))
    assert items == [
        Row(
            2,
            "cn-hangzhou",
            "i-aaa1",
            "vpc-a",
            (("Note", f"rack A,{eol}row 3"), ("Owner", f'bob{eol}and "alice"')),
        ),
        Row(5, "cn-hangzhou", "i-bbb2", "vpc-a", (("Note", "x"), ("Owner", ""))),
    ]


def test_quotes_that_close_on_their_line_are_not_errors(tmp_path: Path) -> None:
    content = (
        "RegionId,InstanceId,VpcId,Note\n"
        'cn-hangzhou,i-aaa1,vpc-a,"web, ""tier"""\n'
        'cn-hangzhou,i-bbb2,vpc-a,rack "A"\n'  # a quote inside a value is a character
        'cn-hangzhou,"i-ccc3,vpc-a"\n'  # closed on its line: one bad row, reported
    )
    first, second, third = read_pairs(write(tmp_path, content))
    assert isinstance(first, Row)
    assert first.extra == (("Note", 'web, "tier"'),)
    assert isinstance(second, Row)
    assert second.extra == (("Note", 'rack "A"'),)
    assert isinstance(third, RowResult)
    assert third.line == 4


def test_a_huge_unclosed_value_is_refused_too(tmp_path: Path) -> None:
    body = "".join(f"cn-hangzhou,i-a{n:06d},vpc-a,x\n" for n in range(10_000))
    path = write(tmp_path, f'{HEADER}\ncn-hangzhou,i-zzz9,vpc-a,"x\n{body}')
    error = refused(path)
    assert error.line == 2
    assert "never closed" in error.reason


# --- a header that is missing, broken or joined to a row ---------------------------------


@pytest.mark.parametrize(
    ("content", "column"),
    [
        ("\n".join(ROWS), 1),  # no header: the first row would be taken as one
        ("RegionId,InstanceId,VpcId " + "\n".join(ROWS), 3),  # lost line break, a space left
        ("RegionId,InstanceId,VpcId,Note" + "\n".join(ROWS), 5),  # lost line break
        ("RegionId,InstanceId,VpcId,Note," + "\n".join(ROWS), 5),  # lost, a comma left
        ("\r".join([HEADER.replace("VpcId", "vpc-a"), *ROWS]), 3),  # a cell replaced by data
    ],
)
def test_a_header_that_holds_data_is_refused(tmp_path: Path, content: str, column: int) -> None:
    error = refused(write(tmp_path, content))
    assert (error.line, error.column) == (1, column)
    assert "looks like" in error.reason


# --- the run uses exactly the bytes it validated -----------------------------------------


def test_rows_appended_after_validation_are_not_run(tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join([HEADER, *ROWS[:2]]) + "\n")
    reader = read_pairs(path)
    with path.open("a") as file:
        file.write("cn-hangzhou,i-new9,vpc-z,never validated\n")
    assert [item.line for item in reader] == [2, 3]
    assert reader.total == 2


def test_a_file_rewritten_in_place_stops_before_a_changed_byte_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_input, "_CHUNK", 64)  # several blocks from a small file
    lines = [HEADER, *(f"cn-hangzhou,i-a{n:04d},vpc-a,x" for n in range(20))]
    path = write(tmp_path, "\n".join(lines) + "\n")
    reader = read_pairs(path)
    data = path.read_bytes()
    at = data.index(b"i-a0015")
    with path.open("r+b") as file:  # same inode, same size: another VPC for one row
        file.seek(data.index(b"vpc-a", at))
        file.write(b"vpc-b")
    seen: list[Row | RowResult] = []
    with pytest.raises(InputError, match="changed since it was validated") as info:
        seen.extend(reader)
    assert info.value.exit_code == 2
    assert seen  # the blocks before the change were used, none from it on
    assert all(isinstance(item, Row) and item.vpc_id == "vpc-a" for item in seen)
    assert max(item.line for item in seen) < 17
    assert any(isinstance(item, Row) and item.vpc_id == "vpc-b" for item in read_pairs(path))


@pytest.mark.skipif(os.name != "posix", reason="replacing an open file is POSIX behaviour")
def test_a_file_replaced_by_another_is_not_read(tmp_path: Path) -> None:
    path = write(tmp_path, "\n".join([HEADER, *ROWS]) + "\n")
    reader = read_pairs(path)
    other = write(tmp_path, f"{HEADER}\ncn-beijing,i-zzz9,vpc-z,x\n", "other.csv")
    other.replace(path)  # how editors save
    assert [item.line for item in reader] == [2, 3, 4, 5]


def test_fingerprint_is_of_the_validated_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + "\r\n".join([HEADER, *ROWS]).encode())
    before = fingerprint(path)
    reader = read_pairs(path)
    assert reader.fingerprint == before
    with path.open("ab") as file:
        file.write(b"\r\ncn-hangzhou,i-new9,vpc-z,x")
    assert reader.fingerprint == before  # what was validated, not what is there now
    assert fingerprint(path) != before


def test_lanes_iterating_side_by_side_do_not_disturb_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_input, "_CHUNK", 32)
    path = write(tmp_path, "\n".join([HEADER, *ROWS] * 1).replace("\n", "\r\n"))
    reader = read_pairs(path)
    one, two = iter(reader), iter(reader)
    pairs = list(zip(one, two, strict=True))
    assert [a for a, _ in pairs] == [b for _, b in pairs] == list(reader)
    assert len(pairs) == 4


# --- the general property -----------------------------------------------------------------

INSTANCE = re.compile(r"i-[a-z0-9]{2,40}")
_regions = st.sampled_from(["cn-hangzhou", "cn-shanghai", "ap-southeast-1", "us-east-1"])
_notes = st.text(alphabet="abxyz ,\"'\n\r", max_size=12)


@st.composite
def valid_csv(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, str, str]]]:
    """A valid input, written as a spreadsheet would: notes quoted when they need it."""
    count = draw(st.integers(1, 6))
    ids = draw(st.lists(st.integers(0, 10**6), min_size=count, max_size=count, unique=True))
    rows = [
        (draw(_regions), f"i-t{n:07d}", f"vpc-{draw(st.sampled_from('abc'))}", draw(_notes))
        for n in ids
    ]
    note_first = draw(st.booleans())
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))

    def cell(value: str) -> str:
        # Quoted when it must be (csv.writer leaves a lone "\r" unquoted under "\n").
        if any(c in value for c in ',"\r\n') or draw(st.booleans()):
            return '"' + value.replace('"', '""') + '"'
        return value

    order = (3, 0, 1, 2) if note_first else (0, 1, 2, 3)
    names = ("RegionId", "InstanceId", "VpcId", "Note")
    records = [[names[i] for i in order]] + [[cell(row[i]) for i in order] for row in rows]
    text = eol.join(",".join(record) for record in records) + eol
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    return text, rows


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(valid_csv())
def test_a_valid_file_runs_every_row(
    tmp_path: Path, case: tuple[str, list[tuple[str, ...]]]
) -> None:
    """No false alarm: notes with commas, quotes and line breaks are fine."""
    text, rows = case
    items = list(read_pairs(write(tmp_path, text)))
    assert [(i.region_id, i.instance_id, i.vpc_id, dict(i.extra)["Note"]) for i in items] == rows


@st.composite
def mutated_csv(draw: st.DrawFn) -> str:
    text, _ = draw(valid_csv())
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["quote", "quote", "join", "cr", "header"]))
        breaks = [m.end() for m in re.finditer(r"\r\n|\r|\n", text)]
        if kind == "quote":  # a quote typed anywhere
            at = draw(st.integers(0, len(text)))
            text = text[:at] + '"' + text[at:]
        elif kind == "join" and breaks:  # a lost line break, or one replaced by a space
            end = draw(st.sampled_from(breaks))
            start = end - (2 if text[end - 2 : end] == "\r\n" else 1)
            text = text[:start] + draw(st.sampled_from(["", " ", ","])) + text[end:]
        elif kind == "cr":  # line ends turned into CR only
            text = re.sub(r"\r\n|\n", "\r", text)
        elif kind == "header":  # a header cell replaced by a value from a row
            cells = re.findall(r"i-t\d{7}|vpc-[abc]|cn-hangzhou|us-east-1", text)
            if cells:
                name = draw(st.sampled_from(["RegionId", "InstanceId", "VpcId"]))
                text = text.replace(name, draw(st.sampled_from(cells)), 1)
    return text


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutated_csv())
def test_every_line_holding_an_instance_is_reported_or_the_file_refused(
    tmp_path: Path, text: str
) -> None:
    path = write(tmp_path, text)
    try:
        reader = read_pairs(path)
    except InputError:
        return  # refused before anything is sent (exit 2)
    items = list(reader)  # and a file accepted never fails half-way
    lines = {item.line for item in items}
    # Quotes removed on both sides: a quote typed inside an ID splits it differently in the
    # raw line and in the parsed value.
    instances = set(INSTANCE.findall(" ".join(item.instance_id for item in items).replace('"', "")))
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        held = INSTANCE.findall(line.replace('"', ""))
        # Reported by its line, or (a value over lines before the IDs) by its instance.
        assert not held or number in lines or instances.intersection(held), (number, line)
