"""Status sets and the running Summary."""

from __future__ import annotations

import json

import pytest

from bulk_attach.core.outcomes import (
    FAILED_SET,
    FINAL,
    NOT_SUCCEEDED,
    REJECTED,
    SENT,
    SUCCEEDED,
    RowResult,
    Status,
    Summary,
)


def result(
    line: int, status: Status, vpc: str = "vpc-a", code: str = "", attempts: int = 1
) -> RowResult:
    return RowResult(
        line=line,
        region_id="cn-hangzhou",
        instance_id=f"i-test{line}",
        vpc_id=vpc,
        status=status,
        error_code=code,
        attempts=attempts,
    )


def test_status_values_are_the_report_words() -> None:
    assert [s.value for s in Status] == [
        "attached",
        "already_linked",
        "failed",
        "skipped",
        "invalid",
        "duplicate",
        "detached",
        "not_linked",
        "linked",
        "linked_elsewhere",
        "would_attach",
        "would_fail",
        "would_skip",
        "undetermined",
    ]
    assert Status("already_linked") is Status.ALREADY_LINKED


def test_named_sets_partition_the_statuses() -> None:
    assert {Status.ATTACHED, Status.ALREADY_LINKED} == SUCCEEDED
    assert SUCCEEDED | NOT_SUCCEEDED == FINAL == set(Status)
    assert not SUCCEEDED & NOT_SUCCEEDED
    assert FAILED_SET == NOT_SUCCEEDED
    assert Status.FAILED in SENT
    assert Status.SKIPPED not in SENT
    assert {Status.INVALID, Status.DUPLICATE} == REJECTED


def test_row_result_key_and_helpers() -> None:
    r = result(3, Status.FAILED, code="Throttling")
    assert r.key == ("cn-hangzhou", "i-test3", "vpc-a")
    assert not r.succeeded
    done = r.replace(status=Status.ATTACHED, error_code="")
    assert done.succeeded
    assert done.line == 3
    assert r.status is Status.FAILED
    assert result(1, Status.DUPLICATE).rejected


def test_row_result_is_frozen() -> None:
    r = result(1, Status.ATTACHED)
    with pytest.raises(AttributeError):
        r.status = Status.FAILED  # type: ignore[misc]


def test_summary_counts_by_status_code_and_vpc() -> None:
    summary = Summary(
        [
            result(1, Status.ATTACHED, attempts=2),
            result(2, Status.ALREADY_LINKED, attempts=0),
            result(3, Status.FAILED, code="InvalidInstanceId.NotFound"),
            result(4, Status.FAILED, code="Throttling", vpc="vpc-b"),
            result(5, Status.FAILED, code="Throttling", vpc="vpc-b"),
            result(6, Status.SKIPPED, code="QuotaExceeded", attempts=0),
            result(7, Status.INVALID, code="Input.MalformedId", attempts=0),
        ]
    )
    assert summary.total == 7
    assert summary.succeeded == 2
    assert summary.not_succeeded == 5
    assert summary.failed == 3
    assert summary.sent == 5
    assert summary.attempts == 5
    assert not summary.all_succeeded
    assert summary.by_status()["failed"] == 3
    assert summary.by_status()["duplicate"] == 0
    assert list(summary.by_code().items()) == [
        ("Throttling", 2),
        ("Input.MalformedId", 1),
        ("InvalidInstanceId.NotFound", 1),
        ("QuotaExceeded", 1),
    ]
    assert summary.by_vpc() == {
        "vpc-a": {"attached": 1, "already_linked": 1, "failed": 1, "skipped": 1},
        "vpc-b": {"failed": 2},
    }
    assert summary.vpc_attached("vpc-a") == 1
    assert summary.vpc_attached("vpc-x") == 0


def test_summary_to_dict_is_json_with_throughput_and_quota() -> None:
    summary = Summary([result(i, Status.ATTACHED) for i in range(1, 11)])
    data = summary.to_dict(
        duration=2.0,
        started_at="2024-01-01T00:00:00Z",
        finished_at="2024-01-01T00:00:02Z",
        vpc_quota={"vpc-a": {"linked": 10, "quota": 1000, "headroom": 990}, "vpc-z": {"linked": 3}},
        exit_code=0,
    )
    assert json.loads(json.dumps(data)) == data
    assert data["rows_per_second"] == 5.0
    assert data["sent_per_second"] == 5.0
    assert data["by_vpc"]["vpc-a"] == {"attached": 10, "linked": 10, "quota": 1000, "headroom": 990}
    assert data["by_vpc"]["vpc-z"] == {"linked": 3}
    assert data["exit_code"] == 0
    assert data["duration_seconds"] == 2.0


def test_summary_zero_duration_does_not_divide() -> None:
    assert Summary().to_dict(duration=0.0)["rows_per_second"] == 0.0
    assert Summary().all_succeeded


def test_rejected_rows_do_not_count_towards_a_vpc() -> None:
    summary = Summary([result(1, Status.DUPLICATE), result(2, Status.INVALID, vpc="")])
    assert summary.by_vpc() == {}
    assert "duplicate=1" in repr(summary)
