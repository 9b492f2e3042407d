"""Flow-control gates every request passes before it leaves: one rate limiter per region.

The gate is a small object with the client's ``RequestGate`` hook (awaited before each HTTP
request, retries and Describe calls included) plus two feedback hooks the worker calls:
``on_throttle`` and ``on_success``. The pool knows nothing of rates.

Why a small bucket: ``AsyncLimiter(rate, 1)`` would let a full second's worth of requests
out at once on start-up and then keep dripping, so a 1-second window could see twice the
rate. A bucket of ``capacity`` tokens leaking ``leak`` per second lets at most
``capacity + leak - 1`` requests out in any 1-second window, so ``leak = rate - capacity + 1``
keeps every window at ``rate``. A capacity of 1 would space requests exactly, but the event
loop wakes a timer up to a millisecond late and a 1-token bucket can never catch up: at 200/s
that cost 16 % of the rate. From 35/s up, a second token (more at very high rates) absorbs the
lateness for at most one request per window (see ``bucket_for``).

Adaptive slow-down (like the AWS SDKs' adaptive retry mode): when the service throttles,
the region's allowed rate drops; it recovers gradually on success. The limiter itself keeps
the configured rate; a slowed-down region pays more than one token per request
(``configured / current``), carried as a fractional debt so the average is exact.

Stopping: the gate is the last place a request waits before it leaves, so it is where an
interrupted run (``RunControl.sending_closed``) stops it: a wait at the gate ends at once
with ``SendingClosed``, and a request is let through only while sending is open. Nothing
is awaited between that check and the send (``EcsClient._call``), so "admitted" means
"on its way to the wire".

An attach passes the gate through ``admitted`` rather than inside the client: the
worker journals the row between admission and sending, so a row is in the resume journal
exactly when its attach may reach the service, not while it merely waited for a token.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

from aiolimiter import AsyncLimiter

from bulk_attach.core.attempts import AdaptiveRate
from bulk_attach.engine.control import RunControl, SendingClosed

__all__ = ["RateGate", "RegionGate", "bucket_for"]


def bucket_for(rate: float) -> AsyncLimiter:
    """A leaky bucket that lets at most ``rate`` requests out in any 1-second window."""
    capacity = 1 if rate < _SLACK_FROM else max(2, math.ceil(rate / 100))
    # A hair under the exact figure, so that a few ms of jitter between leaving here and
    # arriving there cannot put one request too many into a second at the service.
    leak = (rate - capacity + 1) * (1 - _JITTER_MARGIN)  # per second
    return AsyncLimiter(capacity, capacity / leak)


# Below this rate a 1 ms late wake-up costs under 3.5 % of the rate, and a spare token (which
# costs one request per second of sustained rate) would cost more.
_SLACK_FROM = 35.0
_JITTER_MARGIN = 0.005


class RegionGate:
    """The limiter and adaptive state of one region."""

    __slots__ = ("_adaptive", "_clock", "_debt", "_limiter", "rate", "region", "sent")

    def __init__(self, region: str, rate: float, clock: Callable[[], float]) -> None:
        self.region = region
        self.rate = rate
        self._limiter = bucket_for(rate)
        self._adaptive = AdaptiveRate(rate)
        self._clock = clock
        self._debt = 0.0
        self.sent = 0

    def current_rate(self) -> float:
        return self._adaptive.current_rate(self._clock())

    async def acquire(self) -> None:
        self._debt += self.rate / max(self.current_rate(), 1e-9)
        tokens = int(self._debt)
        self._debt -= tokens
        for _ in range(tokens):
            await self._limiter.acquire()
        self.sent += 1

    def on_throttle(self) -> float:
        self._adaptive.on_throttle(self._clock())
        return self.current_rate()

    def on_success(self) -> None:
        self._adaptive.on_success(self._clock())

    def __repr__(self) -> str:
        return (
            f"<RegionGate {self.region} {self.current_rate():.1f}/{self.rate:g} per s, "
            f"sent={self.sent}>"
        )


# The gate a task has already passed for the request it sends next (see ``admitted``).
# Task-local by nature: each worker is its own task, so one row's admission is never
# spent by another's request.
_ADMITTED: ContextVar[RateGate | None] = ContextVar("bulk_attach_admitted", default=None)


class RateGate:
    """Per-region rate limits for a run; ``rate=None`` lets everything through."""

    __slots__ = ("_clock", "_control", "_regions", "rate")

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._clock = clock
        self._regions: dict[str, RegionGate] = {}
        self._control: RunControl | None = None

    def close_with(self, control: RunControl) -> None:
        """Let nothing through once ``control`` closes sending (an interrupted run)."""
        self._control = control

    def _region(self, region: str) -> RegionGate | None:
        if self.rate is None:
            return None
        gate = self._regions.get(region)
        if gate is None:
            gate = self._regions[region] = RegionGate(region, self.rate, self._clock)
        return gate

    async def __call__(self, region: str, action: str) -> None:
        """The client's hook, awaited right before each request is sent."""
        if _ADMITTED.get() is self:
            _ADMITTED.set(None)  # paid for by ``admitted``; the next request pays again
            return
        await self._pass(region)

    @asynccontextmanager
    async def admitted(self, region: str, action: str) -> AsyncIterator[None]:
        """Pass the gate now for the one request this task sends inside the block.

        Raises ``SendingClosed`` instead when the run is interrupted before admission.
        """
        await self._pass(region)
        token = _ADMITTED.set(self)
        try:
            yield
        finally:
            _ADMITTED.reset(token)  # unspent if the block sent nothing through this gate

    async def _pass(self, region: str) -> None:
        control = self._control
        gate = self._region(region)
        if gate is None:
            await asyncio.sleep(0)
        elif control is None:
            await gate.acquire()
        else:
            await control.unless_closed(gate.acquire())
        # Checked after the wait too: sending may have closed while this task was woken.
        if control is not None and control.sending_closed:
            raise SendingClosed

    def on_throttle(self, region: str) -> float | None:
        """Slow the region down; returns its new rate (None when unlimited)."""
        gate = self._region(region)
        return gate.on_throttle() if gate is not None else None

    def on_success(self, region: str) -> None:
        gate = self._region(region)
        if gate is not None:
            gate.on_success()

    def __repr__(self) -> str:
        if self.rate is None:
            return "<RateGate unlimited>"
        inner = ", ".join(repr(g) for g in self._regions.values())
        closed = " closed" if self._control is not None and self._control.sending_closed else ""
        return f"<RateGate {self.rate:g}/s per region{closed} [{inner}]>"
