"""The rate gate in virtual time: no 1-second window above the rate, and the rate reached.

The gate runs on a real asyncio event loop whose clock is virtual: its selector, instead of
sleeping, moves the clock forward by the timeout it was given, plus a configurable
lateness that stands for the event loop waking timers late (the cause of the original
shortfall). Nothing sleeps, so these tests are exact and take milliseconds.
"""

from __future__ import annotations

import asyncio
import selectors
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulk_attach.engine.gates import RateGate


class _VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: a timeout moves the virtual clock instead (plus the lateness)."""

    def __init__(self, clock: _VirtualClock, lateness: float) -> None:
        super().__init__()
        self._clock = clock
        self._lateness = lateness

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Every pass of the loop costs a microsecond, as on a real clock: the bucket's float
        # arithmetic can leave a waiter a hair short of capacity, which only time resolves.
        self._clock.now += 1e-6
        if timeout is not None and timeout > 0:
            self._clock.now += timeout + self._lateness
        return super().select(0)


def _send_times(rate: float, requests: int, *, workers: int, lateness: float) -> list[float]:
    clock = _VirtualClock()
    loop = asyncio.SelectorEventLoop(_VirtualSelector(clock, lateness))
    loop.time = lambda: clock.now  # type: ignore[method-assign]
    sent: list[float] = []

    async def main() -> None:
        gate = RateGate(rate, clock=lambda: clock.now)

        async def worker() -> None:
            while len(sent) < requests:
                await gate("cn-hangzhou", "AttachClassicLinkVpc")
                sent.append(clock.now)

        await asyncio.gather(*(worker() for _ in range(workers)))

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return sent


def _largest_window(times: list[float]) -> int:
    """Most sends in any half-open 1-second window (windows start at a send)."""
    times = sorted(times)
    return max(bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


@settings(max_examples=25, deadline=None)
@given(
    rate=st.sampled_from([1.0, 5.0, 20.0, 34.0, 35.0, 50.0, 200.0, 500.0, 1000.0]),
    lateness=st.sampled_from([0.0, 0.0005, 0.001, 0.002]),
)
def test_no_window_above_the_rate_and_at_least_97_percent_of_it(
    rate: float, lateness: float
) -> None:
    seconds = 5
    times = _send_times(rate, int(rate * seconds), workers=32, lateness=lateness)
    assert _largest_window(times) <= rate
    if rate >= 35 or lateness <= 0.0005:
        # Below 35/s a single token is kept on purpose (a spare one would cost a whole
        # request per second); a late wake-up then costs rate x lateness, under 7 % at 2 ms.
        achieved = (len(times) - 1) / (times[-1] - times[0])
        assert achieved >= 0.97 * rate, (rate, lateness, achieved)


def test_no_start_up_burst() -> None:
    times = _send_times(200.0, 400, workers=64, lateness=0.0)
    # Whatever the number of waiting workers, the first second sends at most the rate.
    assert sum(t < times[0] + 1.0 for t in times) <= 200


async def test_slowed_down_per_region_and_api_and_even_without_a_rate() -> None:
    now = [10.5]
    for ceiling in (100.0, None):
        gate = RateGate(ceiling, clock=lambda: now[0])
        now[0] = 10.5
        for _ in range(20):
            now[0] += 0.02
            await gate("cn-hangzhou", "AttachClassicLinkVpc")
            gate.on_answer("cn-hangzhou")
        now[0] += 0.02
        await gate("cn-hangzhou", "AttachClassicLinkVpc")
        lowered = gate.on_throttle("cn-hangzhou")
        assert lowered is not None
        assert lowered < 21  # what the service accepted this second, not the ceiling
        assert gate.on_throttle("cn-hangzhou") is None  # one wave, one decrease
        learned = gate.learned()
        assert learned["cn-hangzhou", "AttachClassicLinkVpc"].stalled
        # Describe has its own pace: throttling on Attach does not slow it.
        await gate("cn-hangzhou", "DescribeClassicLinkInstances")
        assert not learned.get(("cn-hangzhou", "DescribeClassicLinkInstances"), None) or (
            not gate.learned()["cn-hangzhou", "DescribeClassicLinkInstances"].stalled
        )
        assert "AttachClassicLinkVpc" in repr(gate)
    with pytest.raises(ValueError, match="positive"):
        RateGate(0)
