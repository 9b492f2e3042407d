"""The error catalog's view of DetachClassicLinkVpc and the lifecycle reads."""

from __future__ import annotations

import pytest

from bulk_attach.core.catalog import (
    CATALOG,
    DETACH_CODES,
    ErrorClass,
    action_code,
    classify,
    may_pass_later,
)

# Every code of either detach page, and what a row that meets it should do.
DETACH_CLASSES = {
    "InvalidInstanceId.NotFound": (ErrorClass.PERMANENT, False),
    "InvalidRegionId.Malformed": (ErrorClass.PERMANENT, False),
    "InvalidVpcId.Malformed": (ErrorClass.PERMANENT, False),
    "InvalidInstanceId.MalFormed": (ErrorClass.PERMANENT, False),
    "OperationDenied": (ErrorClass.PERMANENT, False),
    "InvalidInstanceId.NotBelong": (ErrorClass.PERMANENT, False),
    # A lock or a transition ends: a later try may pass.
    "InvalidStatus.InstanceLocked": (ErrorClass.PERMANENT, True),
    "InvalidStatus.InstanceStatus": (ErrorClass.PERMANENT, True),
}


def test_detach_lists_exactly_both_pages_codes() -> None:
    assert set(DETACH_CODES) == set(DETACH_CLASSES)


@pytest.mark.parametrize("code", sorted(DETACH_CLASSES))
def test_detach_codes_are_classified(code: str) -> None:
    error_class, passes_later = DETACH_CLASSES[code]
    own = DETACH_CODES[code]
    for variant in ("2018", "current"):
        status = own.status_for(variant)
        if status is not None:
            assert classify(code, status) is error_class
    assert may_pass_later(code) is passes_later
    assert code in CATALOG
    assert action_code("DetachClassicLinkVpc", code) is own


def test_detach_statuses_per_page() -> None:
    older = {code: own.status for code, own in DETACH_CODES.items()}
    current = {code: own.current_status for code, own in DETACH_CODES.items()}
    assert {code for code, status in older.items() if status == 400} == {
        "InvalidRegionId.Malformed",
        "InvalidVpcId.Malformed",
        "InvalidInstanceId.MalFormed",
    }
    assert set(older.values()) == {400, 403}
    assert set(current.values()) == {403, None}
    assert [code for code, status in current.items() if status is None] == [
        "InvalidInstanceId.NotBelong"
    ]
    # Attach keeps its own statuses: NotFound is 404 on the attach contract page.
    assert CATALOG["InvalidInstanceId.NotFound"].status == 404
    assert action_code("AttachClassicLinkVpc", "InvalidInstanceId.NotFound") is None


def test_detach_messages_are_the_detach_pages() -> None:
    assert "not a classic network instance" in DETACH_CODES["InvalidInstanceId.MalFormed"].message
    assert "detach" in DETACH_CODES["OperationDenied"].message


@pytest.mark.parametrize("code", ["InvalidVpcID.NotFound", "Forbidden.VpcNotFound"])
def test_unknown_vpc_codes_are_permanent(code: str) -> None:
    # Not Forbidden.RAM-like: a missing VPC is the row's problem, not the run's.
    assert classify(code, CATALOG[code].status) is ErrorClass.PERMANENT
    assert may_pass_later(code) is False
