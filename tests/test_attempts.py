"""Attempt decisions per error class, backoff bounds, and the adaptive rate."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_attach.core.attempts import (
    Abort,
    AdaptiveRate,
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
    assert POLICY.decide(5, ErrorClass.THROTTLED, None, 0.5) == GiveUp()
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
    else:
        assert decision == TryAgain(delay)


# --- the adaptive rate ------------------------------------------------------------------


def test_throttle_slows_down_and_success_recovers() -> None:
    rate = AdaptiveRate(100.0, beta=0.7, floor=0.05, recovery=0.1, cooldown=0.5)
    assert rate.current_rate(0.0) == 100.0
    assert rate.on_throttle(10.0)
    assert rate.current_rate(10.0) == pytest.approx(70.0)
    # The rest of the same wave (within the cooldown) is one signal, not many.
    assert not rate.on_throttle(10.2)
    assert rate.current_rate(10.2) == pytest.approx(70.0)
    assert rate.on_throttle(10.6)
    assert rate.current_rate(10.6) == pytest.approx(49.0)
    rate.on_success(11.6)  # one second later: +10 % of the configured rate
    assert rate.current_rate(11.6) == pytest.approx(59.0)
    rate.on_success(100.0)
    assert rate.current_rate(100.0) == 100.0
    assert rate.throttles == 2
    assert "100.00/100 per s" in repr(rate)


def test_reading_the_rate_does_not_recover_it() -> None:
    rate = AdaptiveRate(10.0, recovery=0.1)
    rate.on_throttle(0.0)
    assert rate.current_rate(1000.0) == pytest.approx(7.0)


def test_floor_holds_under_a_storm() -> None:
    rate = AdaptiveRate(200.0, floor=0.05, cooldown=0.0)
    for i in range(100):
        rate.on_throttle(float(i))
    assert rate.current_rate(100.0) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.0},
        {"rate": -1.0},
        {"rate": math.inf},
        {"rate": 1.0, "beta": 1.0},
        {"rate": 1.0, "floor": 0.0},
        {"rate": 1.0, "recovery": -1.0},
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        AdaptiveRate(**kwargs)


@settings(max_examples=300, deadline=None)
@given(
    configured=st.floats(min_value=0.1, max_value=10_000),
    floor=st.floats(min_value=0.01, max_value=1.0),
    events=st.lists(
        st.tuples(st.booleans(), st.floats(min_value=-5, max_value=50, allow_nan=False)),
        max_size=60,
    ),
)
def test_adaptive_rate_stays_between_floor_and_configured(
    configured: float, floor: float, events: list[tuple[bool, float]]
) -> None:
    rate = AdaptiveRate(configured, floor=floor)
    now = 0.0
    for throttled, step in events:
        now += step  # clocks may even step back: the bounds must still hold
        if throttled:
            rate.on_throttle(now)
        else:
            rate.on_success(now)
        current = rate.current_rate(now)
        assert configured * floor * (1 - 1e-9) <= current <= configured * (1 + 1e-9)
