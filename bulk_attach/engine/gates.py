"""Flow-control gates every request passes before it leaves: one per region and API.

The gate is a small object with the client's ``RequestGate`` hook (awaited before each HTTP
request, retries and Describe calls included) plus the feedback hooks the worker and the
reads call with each answer: ``on_answer`` (the service answered) and ``on_throttle``. The
pool knows nothing of rates.

The decisions are ``core/flow.FlowControl``'s, one per (region, API action): it learns the
service's limit from what the service accepts and runs just under it. Limits are per API at
ECS, so throttling on Attach does not slow Describe, nor the other way round. The user's
``--rate`` stays what it always was, a ceiling on all requests to a region together (none
with ``--rate 0``): one more ``FlowControl`` per region that only paces, never learns.
This module is their async shell: requests of one (region, API) queue in arrival order,
and only the head waits for the controller's ``delay``; an answer that ends a stall wakes
it at once.

A task's answer is fed back to the (region, API) it last passed, with the time its request
left (a task sends one request at a time; the controller tells a stall's probe from the
wave that began the stall by that time), so ``ReadOnly``, which does not know which
Describe call it is running, needs no more than the region.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

from bulk_attach.core.flow import FlowControl
from bulk_attach.engine.control import RunControl, SendingClosed
from bulk_attach.errors import Refused
from bulk_attach.settings import EngineSettings

__all__ = ["ApiGate", "RateGate"]


class ApiGate:
    """The queue and the controller of one region and API action."""

    __slots__ = (
        "_changed",
        "_clock",
        "_lock",
        "action",
        "control",
        "refuse_after",
        "region",
        "sent",
    )

    def __init__(
        self,
        region: str,
        action: str,
        rate: float | None,
        clock: Callable[[], float],
        refuse_after: float = math.inf,
    ) -> None:
        self.region = region
        self.action = action
        self.control = FlowControl(rate)
        self.refuse_after = refuse_after
        self._clock = clock
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.sent = 0

    def try_acquire(self) -> float | None:
        """This API's turn now, without waiting (the common case at speed: no queue, no
        wait); returns when the request left, or None when it must wait (``acquire``)."""
        control = self.control
        if self._lock.locked() or control.delay(now := self._clock()) > 0:
            return None
        control.sent(now)
        self.sent += 1
        return now

    async def acquire(self) -> float:
        """Wait for this API's turn; returns when the request left (the gate's clock)."""
        if (now := self.try_acquire()) is not None:
            return now
        control = self.control
        clock = self._clock
        async with self._lock:
            while (wait := control.delay(now := clock())) > 0:
                refused_for = control.refused_for(now)
                if refused_for >= self.refuse_after:
                    raise Refused(self.region, self.action, refused_for)
                wait = min(wait, self.refuse_after - refused_for)
                self._changed.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._changed.wait()
                except TimeoutError:
                    pass
            control.sent(now := clock())
            self.sent += 1
            return now

    def on_answer(self, sent_at: float | None = None) -> None:
        if self.control.on_accepted(self._clock(), sent_at):
            self._changed.set()  # a stall ended: the head of the queue goes now

    def on_throttle(self, sent_at: float | None = None) -> bool:
        lowered = self.control.on_throttle(self._clock(), sent_at)
        # The next probe's time may have moved earlier: the head of the queue looks again.
        self._changed.set()
        return lowered

    @property
    def rate(self) -> float:
        return self.control.pace

    def __repr__(self) -> str:
        return f"<ApiGate {self.region} {self.action} sent={self.sent} {self.control!r}>"


# The gate a task has already passed for the request it sends next (see ``admitted``).
# Task-local by nature: each worker is its own task, so one row's admission is never
# spent by another's request.
_ADMITTED: ContextVar[RateGate | None] = ContextVar("bulk_attach_admitted", default=None)
# The gate this task last passed and when its request left: its answer is that gate's
# feedback (the controller tells a stall's probe from the wave that began it by the time).
_LAST: ContextVar[tuple[ApiGate, float] | None] = ContextVar("bulk_attach_last_gate", default=None)


class RateGate:
    """Flow control for a run: per region and API, under ``rate`` per second (None: no
    ceiling, but still slowed down by throttling). A request that would wait while the
    service has accepted nothing of its kind for ``refuse_after`` seconds is not sent:
    ``Refused`` (the throttle timeout; rows then fail at once rather than one per probe)."""

    __slots__ = ("_ceilings", "_clock", "_control", "_gates", "rate", "refuse_after")

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.time,
        *,
        refuse_after: float = math.inf,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.refuse_after = refuse_after
        # Wall time: the service's windows are whole seconds and minutes of the clock.
        self._clock = clock
        self._gates: dict[tuple[str, str], ApiGate] = {}
        self._ceilings: dict[str, ApiGate] = {}  # --rate, per region, all APIs together
        self._control: RunControl | None = None

    @classmethod
    def for_run(cls, settings: EngineSettings, clock: Callable[[], float] = time.time) -> RateGate:
        """The gate of a run with these settings: their ceiling and throttle timeout."""
        return cls(settings.rate, clock, refuse_after=settings.attempts.throttle_timeout)

    def close_with(self, control: RunControl) -> None:
        """Let nothing through once ``control`` closes sending (an interrupted run)."""
        self._control = control

    def now(self) -> float:
        return self._clock()

    def gate(self, region: str, action: str) -> ApiGate:
        gate = self._gates.get((region, action))
        if gate is None:
            gate = self._gates[(region, action)] = ApiGate(
                region, action, self.rate, self._clock, self.refuse_after
            )
        return gate

    def _ceiling(self, region: str) -> ApiGate:
        ceiling = self._ceilings.get(region)
        if ceiling is None:
            ceiling = self._ceilings[region] = ApiGate(region, "*", self.rate, self._clock)
        return ceiling

    async def __call__(self, region: str, action: str) -> None:
        """The client's hook, awaited right before each request is sent."""
        if _ADMITTED.get() is self:
            _ADMITTED.set(None)  # paid for by ``admitted``; the next request pays again
            return
        await self._pass(region, action)

    @asynccontextmanager
    async def admitted(self, region: str, action: str) -> AsyncIterator[None]:
        """Pass the gate now for the one request this task sends inside the block.

        Raises ``SendingClosed`` instead when the run is interrupted before admission.
        """
        await self._pass(region, action)
        token = _ADMITTED.set(self)
        try:
            yield
        finally:
            _ADMITTED.reset(token)  # unspent if the block sent nothing through this gate

    async def _pass(self, region: str, action: str) -> None:
        """This (region, API)'s turn, then the region's ceiling's (each without a wait
        when its turn is now: no coroutine, no timeout scope per request at speed)."""
        control = self._control
        if control is not None and control.sending_closed:
            raise SendingClosed
        gate = self.gate(region, action)
        sent_at = gate.try_acquire()
        if sent_at is None:
            sent_at = await self._wait(gate.acquire())
        _LAST.set((gate, sent_at))
        if self.rate is not None:
            ceiling = self._ceiling(region)
            if ceiling.try_acquire() is None:
                await self._wait(ceiling.acquire())
        # Checked after the wait too: sending may have closed while this task was woken.
        if control is not None and control.sending_closed:
            raise SendingClosed

    async def _wait(self, waiting: Awaitable[float]) -> float:
        control = self._control
        return await (waiting if control is None else control.unless_closed(waiting))

    def _last(self, region: str) -> tuple[ApiGate, float | None]:
        last = _LAST.get()
        if last is None or last[0].region != region:
            return self.gate(region, ""), None
        return last

    def on_throttle(self, region: str) -> float | None:
        """The request this task last sent to ``region`` was throttled; returns the new
        pace when this lowered it, else None."""
        gate, sent_at = self._last(region)
        return gate.rate if gate.on_throttle(sent_at) else None

    def on_answer(self, region: str) -> None:
        """The request this task last sent to ``region`` was answered (not throttled)."""
        gate, sent_at = self._last(region)
        gate.on_answer(sent_at)

    def last_accepted(self, region: str) -> float | None:
        """When the service last accepted a request like this task's last one."""
        return self._last(region)[0].control.last_accepted

    def learned(self) -> dict[tuple[str, str], FlowControl]:
        """Each (region, API)'s controller: its pace, learned limit and counts."""
        return {key: gate.control for key, gate in self._gates.items()}

    def snapshot(self) -> dict[str, dict[str, float | int | None]]:
        """For the summary: per ``region/API``, the pace in use, the limit learned (None
        when the service never throttled), and the answers accepted and throttled."""

        def rounded(value: float | None) -> float | None:
            return None if value is None or not math.isfinite(value) else round(value, 2)

        return {
            f"{region}/{api}": {
                "pace": rounded(control.pace),
                "learned_limit": rounded(control.limit),
                "accepted": control.accepted,
                "throttled": control.throttled,
            }
            for (region, api), control in sorted(self.learned().items())
        }

    def __repr__(self) -> str:
        inner = ", ".join(repr(g) for g in self._gates.values())
        ceiling = "no ceiling" if self.rate is None else f"at most {self.rate:g}/s per region"
        closed = " closed" if self._control is not None and self._control.sending_closed else ""
        return f"<RateGate {ceiling}{closed} [{inner}]>"
