"""Validation of one CSV record, and the header resolution it relies on."""

from __future__ import annotations

import pytest

from bulk_attach.core.rows import (
    Columns,
    HeaderError,
    InputCode,
    Problem,
    Row,
    is_instance_id,
    is_region_id,
    is_vpc_id,
    normalize_column,
    parse_record,
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
