"""The flow controller in virtual time: it finds the service's limit and runs just under it.

A tiny simulated service (fixed windows or a token bucket, as the emulator's) answers each
send at once; the clock is a number moved by the controller's own ``delay``. Nothing
sleeps, so these are exact and fast; the wall-clock figures are the benchmark's
(``tests/benchmarks/bench_flow.py``).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_attach.core.flow import LONG_WINDOW, MARGIN, PROBE_TIMEOUT, FlowControl


class Windows:
    def __init__(self, limit: float, length: float) -> None:
        self.limit, self.length = limit, length
        self.window, self.count = -1, 0

    def admit(self, now: float) -> bool:
        window = math.floor(now / self.length)
        if window != self.window:
            self.window, self.count = window, 0
        if self.count < max(1, math.floor(self.limit * self.length + 1e-9)):
            self.count += 1
            return True
        return False


class Bucket:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.tokens, self.last = max(1.0, limit), 0.0

    def admit(self, now: float) -> bool:
        cap = max(1.0, self.limit)
        self.tokens = min(cap, self.tokens + (now - self.last) * self.limit)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def drive(
    control: FlowControl, service: Windows | Bucket, sends: int, start: float = 1000.3
) -> tuple[float, int]:
    """Send ``sends`` accepted requests one after another; (seconds taken, throttled)."""
    now, done, throttled = start, 0, 0
    while done < sends:
        now += control.delay(now)
        control.sent(now)
        answered = now + 0.002  # 2 ms round trip
        if service.admit(now):
            control.on_accepted(answered)
            done += 1
        else:
            control.on_throttle(answered)
            throttled += 1
    return now - start, throttled


@pytest.mark.parametrize("limit", [10.0, 40.0, 200.0])
@pytest.mark.parametrize("ceiling", [None, 10.0])  # 10 x the limit, or no --rate at all
@pytest.mark.parametrize("shape", ["second", "minute", "bucket"])
def test_finds_the_limit_and_runs_just_under_it(
    limit: float, ceiling: float | None, shape: str
) -> None:
    ceiling = None if ceiling is None else ceiling * limit
    seconds = 150 if shape == "minute" else 40
    service = {
        "second": lambda: Windows(limit, 1.0),
        "minute": lambda: Windows(limit, 60.0),
        "bucket": lambda: Bucket(limit),
    }[shape]()
    control = FlowControl(ceiling)
    sends = int(limit * seconds)
    took, throttled = drive(control, service, sends)
    ideal = sends / limit
    assert took <= 1.10 * ideal, (took, ideal, control)
    assert throttled <= 0.03 * (sends + throttled), (throttled, control)
    assert control.limit is not None
    assert control.pace <= control.ceiling_pace


def test_the_limit_halving_is_followed() -> None:
    service = Windows(40.0, 1.0)
    control = FlowControl(400.0)
    drive(control, service, 40 * 20)
    service.limit = 20.0
    took, throttled = drive(control, service, 20 * 20, start=1030.3)
    assert took <= 1.15 * 20
    assert throttled <= 0.05 * 400
    assert control.pace <= 20.0


def test_a_stall_sends_one_probe_at_a_time_and_a_long_window_waits_for_the_next_minute() -> None:
    control = FlowControl(100.0)
    now = 120.5
    for _ in range(10):
        control.sent(now)
        control.on_accepted(now)
    assert control.on_throttle(now)
    assert control.stalled
    assert control.pace <= 10 * MARGIN + 1e-9
    control.sent(now + control.delay(now))
    assert control.delay(now) > 0  # the probe is out: nobody else goes
    later = 121.2
    assert not control.on_throttle(later)  # the same wave
    refused = 122.0 + 0.05
    control.on_throttle(refused)  # refused past a second boundary: a per-minute window
    assert control.pace == pytest.approx(MARGIN * 10 / 60)
    assert control.delay(refused) == pytest.approx(180.01 - refused)
    assert control.on_accepted(180.02)
    assert not control.stalled


def test_the_wave_that_began_a_stall_is_one_signal_and_only_the_probe_is_its_answer() -> None:
    """64 requests in flight when the budget runs out come back throttled together: that
    is one signal. It neither stretches the probes' pauses (once doubled per answer, the
    64th answer asked for a pause of 2**63 times the first) nor, when one of them was
    accepted late, ends the stall: only the answer of a request sent after it began does."""
    control = FlowControl(None)
    now = 600.2
    for _ in range(50):  # learn a pace: 50 accepted in this second
        control.sent(now)
        control.on_accepted(now + 0.001)
        now += 0.01
    wave = [now + i * 0.0001 for i in range(64)]
    for sent_at in wave:
        control.sent(sent_at)
    answered = wave[-1] + 0.002
    assert control.on_throttle(answered, wave[0])
    first_probe = answered + control.delay(answered)
    for sent_at in wave[1:-1]:
        assert not control.on_throttle(answered, sent_at)
    assert not control.on_accepted(answered, wave[-1])  # accepted late: still stalled
    assert control.stalled
    assert answered + control.delay(answered) == pytest.approx(first_probe)
    control.sent(first_probe)
    assert control.delay(first_probe) == pytest.approx(PROBE_TIMEOUT)  # one probe out
    control.on_throttle(first_probe + 0.002, first_probe)  # the probe's own answer
    second_probe = first_probe + 0.002 + control.delay(first_probe + 0.002)
    assert second_probe - first_probe < 0.1  # doubled once, not 64 times
    control.sent(second_probe)
    assert control.on_accepted(second_probe + 0.002, second_probe)
    assert not control.stalled


@settings(max_examples=300, deadline=None)
@given(
    ceiling=st.none() | st.floats(min_value=0.5, max_value=5000),
    events=st.lists(
        st.tuples(
            st.sampled_from(["send", "ok", "throttle"]),
            st.floats(min_value=0, max_value=30, allow_nan=False),
        ),
        max_size=80,
    ),
)
def test_the_pace_stays_positive_and_under_the_ceiling(
    ceiling: float | None, events: list[tuple[str, float]]
) -> None:
    control = FlowControl(ceiling)
    now = 50.0
    for event, step in events:
        now += step
        if event == "send":
            wait = control.delay(now)
            assert wait >= 0
            now += wait
            control.sent(now)
        elif event == "ok":
            control.on_accepted(now)
        else:
            control.on_throttle(now)
        assert control.pace > 0
        # Never a wait past the next minute's window (plus the time a lost probe is given).
        assert control.delay(now) <= LONG_WINDOW + PROBE_TIMEOUT
        if ceiling is not None:
            assert control.pace <= ceiling
            assert control.limit is None or control.limit <= ceiling * (1 + 1e-9)
    repr(control)


@pytest.mark.parametrize("ceiling", [None, 1e6])
def test_a_service_that_never_throttles_does_not_grow_the_pace_without_bound(
    ceiling: float | None,
) -> None:
    """A run held back by its concurrency (here 30 answers a second) against a service that
    never throttles: the pace grows only as far as it is used. Unbounded, the slow start's
    doubling four times a second reached infinity after about four minutes and the run
    ended on an OverflowError."""
    control = FlowControl(ceiling)
    now = 0.5
    for _ in range(30 * 600):  # ten minutes at 30 a second
        now += 1 / 30
        control.sent(now)
        control.on_accepted(now + 0.001)
        assert math.isfinite(control.pace)
        assert math.isfinite(control.delay(now))
    bound = 2 * max(30, 100) if ceiling is None else control.ceiling_pace
    assert control.pace <= bound
