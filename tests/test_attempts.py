"""Attempt decisions per error class, backoff bounds, and a throttled row's time budget."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_attach.core.attempts import (
    Abort,
    AttemptPolicy,
    GiveUp,
    Reconcile,
    TryAgain,
)
from bulk_attach.core.catalog import ErrorClass
from bulk_attach.settings import AttemptSettings

SETTINGS = AttemptSettings(max_attempts=5, base_delay=0.2, max_delay=20.0, throttle_base_delay=0.5)
POLICY = AttemptPolicy(SETTINGS)


def test_each_class_gets_its_decision() -> None:
    assert POLICY.decide(1, ErrorClass.FATAL, None, 0.5) == Abort()
    assert POLICY.decide(1, ErrorClass.PERMANENT, None, 0.5) == GiveUp()
    assert POLICY.decide(1, ErrorClass.AMBIGUOUS, None, 0.5) == Reconcile()
    assert isinstance(POLICY.decide(1, ErrorClass.THROTTLED, None, 0.5), TryAgain)
    assert isinstance(POLICY.decide(1, ErrorClass.NOT_SENT, None, 0.5), TryAgain)


def test_attempts_run_out() -> None:
    assert POLICY.decide(5, ErrorClass.NOT_SENT, None, 0.5) == GiveUp()
    # Fatal still aborts and ambiguous still reads back on the last attempt.
    assert POLICY.decide(5, ErrorClass.FATAL, None, 0.5) == Abort()
    assert POLICY.decide(9, ErrorClass.AMBIGUOUS, None, 0.5) == Reconcile()
    assert POLICY.max_attempts == 5


def test_after_reconcile_retries_while_attempts_remain() -> None:
    decision = POLICY.after_reconcile(1, 1.0)
    assert isinstance(decision, TryAgain)
    assert decision.delay == pytest.approx(0.2)
    assert POLICY.after_reconcile(5, 0.5) == GiveUp()


def test_exponential_ceiling_with_full_jitter() -> None:
    ceilings = [POLICY.backoff(a, ErrorClass.NOT_SENT, None, 1.0) for a in range(1, 6)]
    assert ceilings == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2])
    throttled = [POLICY.backoff(a, ErrorClass.THROTTLED, None, 1.0) for a in range(1, 4)]
    assert throttled == pytest.approx([0.5, 1.0, 2.0])
    assert POLICY.backoff(3, ErrorClass.THROTTLED, None, 0.0) == 0.0
    assert POLICY.backoff(3, ErrorClass.THROTTLED, None, 0.25) == pytest.approx(0.5)
    assert POLICY.backoff(1000, ErrorClass.THROTTLED, None, 1.0) == 20.0


def test_retry_after_is_a_floor() -> None:
    decision = POLICY.decide(1, ErrorClass.THROTTLED, 3.0, 0.0)
    assert decision == TryAgain(3.0)
    # ... but never beyond max_delay.
    assert POLICY.backoff(1, ErrorClass.THROTTLED, 600.0, 0.0) == 20.0
    # A nonsense retry-after is ignored.
    assert POLICY.backoff(1, ErrorClass.THROTTLED, math.nan, 0.0) == 0.0
    assert POLICY.backoff(1, ErrorClass.THROTTLED, -1.0, 0.0) == 0.0


def test_default_settings_and_repr() -> None:
    policy = AttemptPolicy()
    assert policy.max_attempts == AttemptSettings().max_attempts
    assert "max_attempts=" in repr(policy)


@settings(max_examples=400, deadline=None)
@given(
    attempt=st.integers(1, 10_000),
    error_class=st.sampled_from([ErrorClass.THROTTLED, ErrorClass.NOT_SENT, ErrorClass.AMBIGUOUS]),
    retry_after=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
    max_delay=st.floats(min_value=0.01, max_value=120),
)
def test_backoff_stays_within_bounds(
    attempt: int,
    error_class: ErrorClass,
    retry_after: float | None,
    rand: float,
    max_delay: float,
) -> None:
    policy = AttemptPolicy(AttemptSettings(max_attempts=10**6, max_delay=max_delay))
    delay = policy.backoff(attempt, error_class, retry_after, rand)
    assert 0.0 <= delay <= max_delay
    if retry_after is not None and retry_after <= max_delay:
        assert delay >= retry_after
    decision = policy.decide(attempt, error_class, retry_after, rand)
    if error_class is ErrorClass.AMBIGUOUS:
        assert decision == Reconcile()
    elif error_class is ErrorClass.THROTTLED:
        # Paced by the gate: only the service's own retry-after is waited here.
        assert decision == TryAgain(min(retry_after or 0.0, max_delay))
    else:
        assert decision == TryAgain(delay)


# --- a throttled row's budget is time -----------------------------------------------------


def test_a_throttled_row_waits_however_often_until_the_service_refuses_for_too_long() -> None:
    policy = AttemptPolicy(AttemptSettings(max_attempts=2, throttle_timeout=300.0))
    # The 10,000th throttle is no reason to give up while the service accepts others.
    assert policy.decide(10_000, ErrorClass.THROTTLED, None, 0.5, refused_for=299.0) == (
        TryAgain(0.0)
    )
    assert policy.decide(1, ErrorClass.THROTTLED, 2.5, 0.5, refused_for=0.0) == TryAgain(2.5)
    assert policy.decide(1, ErrorClass.THROTTLED, None, 0.5, refused_for=300.0) == GiveUp()
    # Every other rule keeps counting attempts.
    assert policy.decide(2, ErrorClass.NOT_SENT, None, 0.5) == GiveUp()
    assert "throttle_timeout=300s" in repr(policy)


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(1, 10**6),
    refused_for=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    timeout=st.floats(min_value=0, max_value=1e4, allow_nan=False),
    retry_after=st.none() | st.floats(allow_nan=True),
)
def test_throttling_gives_up_exactly_at_the_timeout(
    attempt: int, refused_for: float, timeout: float, retry_after: float | None
) -> None:
    policy = AttemptPolicy(AttemptSettings(max_attempts=1, throttle_timeout=timeout))
    decision = policy.decide(
        attempt, ErrorClass.THROTTLED, retry_after, 0.5, refused_for=refused_for
    )
    if refused_for >= timeout:
        assert decision == GiveUp()
    else:
        assert isinstance(decision, TryAgain)
        assert 0.0 <= decision.delay <= policy.settings.max_delay
