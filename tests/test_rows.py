"""Validation of one CSV record, and the header resolution it relies on."""

from __future__ import annotations

import pytest

from bulk_attach.core.rows import (
    Columns,
    HeaderError,
    InputCode,
    Problem,
    Row,
    id_like,
    is_instance_id,
    is_region_id,
    is_vpc_id,
    normalize_column,
    parse_record,
    spanning_problem,
)

COLS = Columns.from_header(["RegionId", "InstanceId", "VpcId"], region_optional=False)


@pytest.mark.parametrize("value", ["i-bp1abcdefghijklmnop", "i-test", "i-01", "i-" + "a" * 40])
def test_instance_ids_accepted(value: str) -> None:
    assert is_instance_id(value)


@pytest.mark.parametrize(
    "value", ["", "i-", "i-a", "x-1", "I-bp1abc", "i-BP1ABC", "i-bp1_abc", "i-" + "a" * 41, "i-ab "]
)
def test_instance_ids_rejected(value: str) -> None:
    assert not is_instance_id(value)


def test_vpc_ids() -> None:
    assert is_vpc_id("vpc-bp1abc")
    assert is_vpc_id("vpc-a")
    assert not is_vpc_id("vpc-")
    assert not is_vpc_id("vsw-abc")
    assert not is_vpc_id("VPC-abc")


@pytest.mark.parametrize(
    "value",
    [
        "cn-hangzhou",
        "ap-southeast-1",
        "us-west-1",
        "eu-central-1",
        "cn-hongkong",
        "me-east-1",
        "cn-beijing-finance-1",
    ],
)
def test_regions_accepted(value: str) -> None:
    assert is_region_id(value)


@pytest.mark.parametrize(
    "value", ["hangzhou", "cn_hangzhou", "CN-HANGZHOU", "-cn", "cn-", "a-b-c-d-e"]
)
def test_regions_rejected(value: str) -> None:
    assert not is_region_id(value)


def test_header_names_are_case_and_style_insensitive() -> None:
    cols = Columns.from_header(
        ["\ufeffnote", " instance_id ", "VPCID", "region_id", "owner"], region_optional=False
    )
    assert (cols.region, cols.instance, cols.vpc, cols.width) == (3, 1, 2, 5)
    assert cols.extra_names == ("note", "owner")
    assert normalize_column(" Region-Id ") == "regionid"


def test_header_missing_columns_names_them() -> None:
    with pytest.raises(HeaderError, match=r"missing required columns InstanceId, VpcId"):
        Columns.from_header(["RegionId", "Instance"], region_optional=False)
    with pytest.raises(HeaderError, match=r"RegionId \(or give a default region"):
        Columns.from_header(["InstanceId", "VpcId"], region_optional=False)


def test_header_region_optional_with_default() -> None:
    cols = Columns.from_header(["InstanceId", "VpcId"], region_optional=True)
    assert cols.region is None
    row = parse_record(["i-abc", "vpc-a"], 2, cols, "cn-shanghai")
    assert row == Row(line=2, region_id="cn-shanghai", instance_id="i-abc", vpc_id="vpc-a")


def test_header_duplicates_refused() -> None:
    with pytest.raises(HeaderError) as info:
        Columns.from_header(
            ["RegionId", "InstanceId", "instance_id", "VpcId"], region_optional=False
        )
    assert info.value.column == 3
    with pytest.raises(HeaderError, match="appears twice"):
        Columns.from_header(["InstanceId", "VpcId", "x", "x"], region_optional=True)
    with pytest.raises(HeaderError, match="no name"):
        Columns.from_header(["InstanceId", "", "VpcId"], region_optional=True)


def test_header_trailing_delimiter_tolerated() -> None:
    cols = Columns.from_header(["RegionId", "InstanceId", "VpcId", ""], region_optional=False)
    assert cols.extras == ()


def test_header_ignores_given_columns() -> None:
    cols = Columns.from_header(
        ["line", "RegionId", "InstanceId", "VpcId", "Status", "team"],
        region_optional=False,
        ignore={"line", "status"},
    )
    assert cols.extra_names == ("team",)


def test_valid_record_is_stripped() -> None:
    row = parse_record([" cn-hangzhou ", "\ti-bp1abc ", " vpc-x"], 7, COLS)
    assert row == Row(7, "cn-hangzhou", "i-bp1abc", "vpc-x")
    assert isinstance(row, Row)
    assert row.key == ("cn-hangzhou", "i-bp1abc", "vpc-x")


def test_malformed_instance_message_has_line_and_column() -> None:
    problem = parse_record(["cn-hangzhou", "x-1", "vpc-a"], 12, COLS)
    assert isinstance(problem, Problem)
    assert problem.code is InputCode.MALFORMED_ID
    assert problem.located("pairs.csv") == (
        "pairs.csv:12:2: InstanceId 'x-1' is not an instance ID (expected i-...)"
    )
    assert problem.instance_id == "x-1"


def test_every_problem_is_listed_first_column_first() -> None:
    problem = parse_record(["", "i-abc", "subnet-1"], 3, COLS)
    assert isinstance(problem, Problem)
    assert problem.column == 1
    assert problem.code is InputCode.MISSING_VALUE
    assert "RegionId is empty" in problem.message
    assert "VpcId 'subnet-1'" in problem.message


def test_missing_region_value_falls_back_on_default() -> None:
    row = parse_record(["", "i-abc", "vpc-a"], 3, COLS, "cn-beijing")
    assert isinstance(row, Row)
    assert row.region_id == "cn-beijing"


def test_bad_region_reported_at_its_column() -> None:
    problem = parse_record(["Hangzhou", "i-abc", "vpc-a"], 4, COLS)
    assert isinstance(problem, Problem)
    assert problem.column == 1
    assert "RegionId 'Hangzhou' is not a region ID" in problem.message


def test_short_and_long_records() -> None:
    short = parse_record(["cn-hangzhou", "i-abc"], 5, COLS)
    assert isinstance(short, Problem)
    assert short.column == 3
    assert "VpcId is empty" in short.message
    long = parse_record(["cn-hangzhou", "i-abc", "vpc-a", "surplus"], 6, COLS)
    assert isinstance(long, Problem)
    assert long.code is InputCode.MALFORMED_ROW
    assert long.column == 4


def test_extras_carried_untouched() -> None:
    cols = Columns.from_header(["InstanceId", "owner", "VpcId", "note"], region_optional=True)
    row = parse_record(["i-abc", " Bob ", "vpc-a"], 2, cols, "cn-hangzhou")
    assert isinstance(row, Row)
    assert row.extra == (("owner", " Bob "), ("note", ""))


# --- a header that looks like data; a record that runs over lines ------------------------


@pytest.mark.parametrize(
    ("header", "column", "token"),
    [
        (["cn-hangzhou", "i-aaa1", "vpc-a"], 1, "cn-hangzhou"),  # no header at all
        (["RegionId", "InstanceId", "VpcId cn-hangzhou", "i-aaa1", "vpc-a"], 3, "cn-hangzhou"),
        (["RegionId", "InstanceId", "VpcIdcn-hangzhou", "i-aaa1", "vpc-a"], 4, "i-aaa1"),
        (["RegionId", "InstanceId", "VpcId", "cn-hangzhou", "i-aaa1", "vpc-a"], 4, "cn-hangzhou"),
        (["InstanceId", "VpcId", "vpc-bp1abc"], 3, "vpc-bp1abc"),
        (["RegionId", "InstanceId", "VpcId", "owner ap-southeast-1"], 4, "ap-southeast-1"),
    ],
)
def test_header_cell_that_looks_like_data_is_refused(
    header: list[str], column: int, token: str
) -> None:
    with pytest.raises(HeaderError) as info:
        Columns.from_header(header, region_optional=True)
    assert info.value.column == column
    assert repr(token) in info.value.message
    assert "header row missing" in info.value.message


def test_header_names_that_merely_have_dashes_are_fine() -> None:
    cols = Columns.from_header(
        ["region-id", "instance-id", "vpc-id", "web-tier-30", "cost-center", "Note"],
        region_optional=False,
    )
    assert cols.extra_names == ("web-tier-30", "cost-center", "Note")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('"i-bp1abc', ("i-bp1abc", "an instance ID")),
        ("see (vpc-a) too", ("vpc-a", "a VPC ID")),
        ("rack A\ncn-hangzhou,x", ("cn-hangzhou", "a region ID")),
        ("us-east-1", ("us-east-1", "a region ID")),
        ("web-tier-30, rack A, cost-center", None),
        ("", None),
    ],
)
def test_id_like(text: str, found: tuple[str, str] | None) -> None:
    assert id_like(text) == found


NOTED = Columns.from_header(["RegionId", "InstanceId", "VpcId", "note"], region_optional=False)


def test_a_note_may_run_over_lines_when_none_of_it_looks_like_a_row() -> None:
    assert spanning_problem(["cn-hangzhou", "i-abc", "vpc-a", "rack A\nrow 3"], NOTED) is None
    assert spanning_problem(["cn-hangzhou", "i-abc", "vpc-a", "one line"], NOTED) is None


@pytest.mark.parametrize(
    ("fields", "column", "why"),
    [
        # A quote before the VPC ID swallowed the next row, up to a quote in a later line.
        (["cn-hangzhou", "i-abc", "vpc-a\ncn-hangzhou,i-b,vpc-b,x\n"], 3, "VpcId value"),
        (["cn-hangzhou", "i-abc\r", "vpc-a"], 2, "InstanceId value"),
        (["cn-hangzhou", "i-abc", "vpc-a", "rack A\ncn-hangzhou,i-b,vpc-a,"], 4, "'cn-hangzhou'"),
        (["cn-hangzhou", "i-abc", "vpc-a", "web-tier,i-zz9 rack\nA"], 4, "'i-zz9'"),
        (["cn-hangzhou", "i-abc", "vpc-a", "x", "y\nz"], 5, "beyond the header"),
        # The quote closed inside a later row, whose fields then follow the note.
        (["cn-hangzhou", "i-abc", "vpc-a", "rack\nA", "i-b", "vpc-b"], 4, "has 6 fields"),
    ],
)
def test_a_record_over_lines_that_may_hide_rows_is_a_problem(
    fields: list[str], column: int, why: str
) -> None:
    problem = spanning_problem(fields, NOTED)
    assert problem is not None
    assert problem[0] == column
    assert why in problem[1]


def test_after_a_note_over_lines_the_fields_must_be_a_valid_row_of_its_own() -> None:
    """The fields after a note over lines come from a later line: a row quoted whole there
    would land in one field, and be reported under the note's line with no instance."""
    cols = Columns.from_header(
        ["note", "RegionId", "InstanceId", "VpcId", "owner"], region_optional=False
    )
    assert spanning_problem(["rack\nA", "cn-hangzhou", "i-bb2", "vpc-b", "bob"], cols) is None
    problem = spanning_problem(["rack\nA", "cn-hangzhou,i-bb2,vpc-b"], cols)
    assert problem is not None
    assert problem[0] == 1
    assert "not a valid row (RegionId 'cn-hangzhou,i-bb2,vpc-b' is not a region ID" in problem[1]
    problem = spanning_problem(["rack\nA", "cn-hangzhou", "i-bb2", "vpc-b", "x,i-cc3,vpc-c"], cols)
    assert problem == (1, "its owner value holds 'i-cc3', which looks like an instance ID")
    # The default region counts as it does for any row.
    short = Columns.from_header(["note", "InstanceId", "VpcId"], region_optional=True)
    assert spanning_problem(["rack\nA", "i-bb2", "vpc-b"], short, "cn-hangzhou") is None
