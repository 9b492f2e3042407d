"""Resume and retry planning: identity, never position; settled rows are never chosen."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_attach.core.outcomes import Key, RowResult, Status
from bulk_attach.core.resuming import ResumeState, Step, is_settled, latest_by_key, resume_steps
from bulk_attach.core.retrying import (
    MergedRow,
    RetrySelection,
    merge_reports,
    row_of,
    select_for_retry,
)
from bulk_attach.core.rows import Row


def res(
    instance: str,
    status: Status,
    code: str = "",
    *,
    line: int = 2,
    vpc: str = "vpc-a",
    http: int = 0,
    attempts: int = 1,
) -> RowResult:
    return RowResult(
        line=line,
        region_id="cn-hangzhou",
        instance_id=instance,
        vpc_id=vpc,
        status=status,
        error_code=code,
        http_status=http,
        attempts=attempts,
    )


def key(instance: str, vpc: str = "vpc-a") -> Key:
    return ("cn-hangzhou", instance, vpc)


def test_settled_statuses() -> None:
    assert is_settled(res("i-a1", Status.ATTACHED))
    assert is_settled(res("i-a1", Status.ALREADY_LINKED))
    assert is_settled(res("i-a1", Status.FAILED, "InvalidInstanceId.NotFound"))
    assert is_settled(res("i-a1", Status.SKIPPED, "QuotaExceeded"))
    # Skipped because the run stopped: never attempted, so it runs on resume.
    assert not is_settled(res("i-a1", Status.SKIPPED, ""))


def test_resume_steps_by_identity_not_position() -> None:
    previous = [
        res("i-a1", Status.ATTACHED, line=9),  # lines moved: identity still matches
        res("i-b2", Status.SKIPPED, line=3),
        res("i-c3", Status.FAILED, "Forbidden.RAM", line=4),
    ]
    started = {key("i-d4"), key("i-a1")}
    keys = [key("i-c3"), key("i-a1"), key("i-b2"), key("i-d4"), key("i-e5"), key("i-a1", "vpc-b")]
    assert resume_steps(keys, previous, started) == [
        Step.SETTLED,
        Step.SETTLED,
        Step.RUN,
        Step.RECONCILE,
        Step.RUN,
        Step.RUN,
    ]


def test_latest_result_per_identity_wins() -> None:
    previous = [res("i-a1", Status.SKIPPED), res("i-a1", Status.ATTACHED)]
    assert ResumeState(previous).step(key("i-a1")) is Step.SETTLED
    previous = [res("i-a1", Status.ATTACHED), res("i-a1", Status.SKIPPED)]
    assert ResumeState(previous).step(key("i-a1")) is Step.RUN
    assert list(latest_by_key(previous).values()) == [previous[1]]


def test_rejected_rows_are_remembered_by_line_not_identity() -> None:
    dup = res("i-a1", Status.DUPLICATE, "Input.Duplicate", line=5)
    state = ResumeState([res("i-a1", Status.SKIPPED, line=2), dup])
    # The duplicate's identity is the first row's: it must not settle (or hide) it.
    assert state.step(key("i-a1")) is Step.RUN
    assert state.already_reported(dup)
    assert not state.already_reported(dup.replace(line=6))
    assert "1 rejected lines" in repr(state)


def test_retry_default_selection() -> None:
    report = [
        res("i-a1", Status.ATTACHED),
        res("i-b2", Status.FAILED, "Throttling", http=400),
        res("i-c3", Status.FAILED, "InternalError", http=500),
        res("i-d4", Status.FAILED, "InvalidStatus.InstanceLocked", http=403),
        res("i-e5", Status.SKIPPED, "QuotaExceeded"),
        res("i-f6", Status.SKIPPED, ""),
        res("i-g7", Status.FAILED, "InvalidInstanceId.NotFound", http=404),
        res("i-h8", Status.FAILED, "QuotaExceeded", http=403),
        res("i-i9", Status.INVALID, "Input.MalformedId"),
        res("i-j10", Status.FAILED, "Timeout"),
        res("i-k11", Status.ALREADY_LINKED),
    ]
    chosen = [r.instance_id for r in select_for_retry(report)]
    assert chosen == ["i-b2", "i-c3", "i-d4", "i-e5", "i-f6", "i-h8", "i-j10"]


def test_retry_all_failed_and_only() -> None:
    report = [
        res("i-a1", Status.ATTACHED),
        res("i-b2", Status.FAILED, "Throttling"),
        res("i-g7", Status.FAILED, "InvalidInstanceId.NotFound"),
        res("i-f6", Status.SKIPPED, ""),
        res("i-d5", Status.DUPLICATE, "Input.Duplicate"),
    ]
    everything = RetrySelection(all_failed=True)
    assert [r.instance_id for r in select_for_retry(report, everything)] == ["i-b2", "i-g7", "i-f6"]
    only = RetrySelection(only=frozenset({"InvalidInstanceId.NotFound"}))
    assert [r.instance_id for r in select_for_retry(report, only)] == ["i-g7"]
    assert "InvalidInstanceId.NotFound" in only.describe()
    assert "did not succeed" in everything.describe()
    assert "may pass" in RetrySelection().describe()


def test_retry_looks_at_the_latest_outcome_only() -> None:
    report = [res("i-a1", Status.FAILED, "Throttling"), res("i-a1", Status.ATTACHED)]
    assert list(select_for_retry(report)) == []


def test_row_of_keeps_line_identity_and_extras() -> None:
    result = res("i-a1", Status.FAILED, "Throttling", line=7).replace(extra=(("owner", "bob"),))
    assert row_of(result) == Row(7, "cn-hangzhou", "i-a1", "vpc-a", (("owner", "bob"),))


def test_merged_view_history() -> None:
    first = [
        res("i-a1", Status.FAILED, "Throttling", attempts=6),
        res("i-b2", Status.ATTACHED),
        res("i-c3", Status.INVALID, "Input.MalformedId", line=4),
    ]
    second = [res("i-a1", Status.ATTACHED, attempts=1)]
    merged = merge_reports(first, second)
    assert [m.latest.instance_id for m in merged] == ["i-a1", "i-b2", "i-c3"]
    a1 = merged[0]
    assert isinstance(a1, MergedRow)
    assert a1.latest.status is Status.ATTACHED
    assert a1.total_attempts == 7
    assert a1.history_text() == "failed(Throttling) -> attached"
    assert a1.as_result().extra == (
        ("History", "failed(Throttling) -> attached"),
        ("TotalAttempts", "7"),
    )


# --- properties -------------------------------------------------------------------------

instances = st.sampled_from([f"i-t{n}" for n in range(12)])
vpcs = st.sampled_from(["vpc-a", "vpc-b"])
statuses = st.sampled_from(list(Status))
codes = st.sampled_from(["", "QuotaExceeded", "Throttling", "InternalError", "Forbidden.RAM"])
previous_results = st.lists(
    st.builds(
        lambda i, v, s, c, line: res(i, s, c, vpc=v, line=line),
        instances,
        vpcs,
        statuses,
        codes,
        st.integers(1, 30),
    ),
    max_size=30,
)
input_keys = st.lists(st.builds(key, instances, vpcs), max_size=30)
started_keys = st.sets(st.builds(key, instances, vpcs), max_size=10)


@settings(max_examples=300, deadline=None)
@given(keys=input_keys, previous=previous_results, started=started_keys)
def test_planning_never_selects_a_settled_row(
    keys: list[Key], previous: list[RowResult], started: set[Key]
) -> None:
    steps = resume_steps(keys, previous, started)
    latest = latest_by_key(previous)
    for k, step in zip(keys, steps, strict=True):
        settled = k in latest and is_settled(latest[k])
        assert (step is Step.SETTLED) == settled
        if step is Step.RECONCILE:
            assert k in started


@settings(max_examples=300, deadline=None)
@given(keys=input_keys, previous=previous_results, started=started_keys)
def test_planning_is_idempotent(
    keys: list[Key], previous: list[RowResult], started: set[Key]
) -> None:
    steps = resume_steps(keys, previous, started)
    assert resume_steps(keys, previous, started) == steps
    # Re-planning by position-independent identity: shuffling input order maps steps along.
    reordered = list(reversed(keys))
    assert resume_steps(reordered, previous, started) == list(reversed(steps))
    # A resume that settles every row it ran leaves nothing to run the next time.
    settled_now = [
        res(k[1], Status.ATTACHED, vpc=k[2])
        for k, s in zip(keys, steps, strict=True)
        if s is not Step.SETTLED
    ]
    again = resume_steps(keys, previous + settled_now, started)
    assert all(step is Step.SETTLED for step in again)


@settings(max_examples=200, deadline=None)
@given(previous=previous_results, all_failed=st.booleans())
def test_retry_never_selects_success_or_rejected_rows(
    previous: list[RowResult], all_failed: bool
) -> None:
    chosen = list(select_for_retry(previous, RetrySelection(all_failed=all_failed)))
    assert all(not r.succeeded and not r.rejected for r in chosen)
    assert len({r.key for r in chosen}) == len(chosen)
