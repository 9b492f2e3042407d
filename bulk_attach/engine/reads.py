"""Read-only calls with their own retries: the attacher's ``_read_only``, shared.

Describe calls are idempotent, so every transient failure is retried (throttling slows the
gate of that region and API down, and a throttled call waits at the gate for as long as the
service keeps accepting anything within ``throttle_timeout``, attempts uncounted), a
permanent one is the caller's to report, and a fatal one stops the
run (``StopReason.FATAL``, exit 3). Until the service has answered once, the endpoint
itself is in question: calls the API did not answer are counted, and a wrong endpoint
stops the run after a few of them rather than after retries per row.

One object for every Describe call: the worker's (a VPC's links, a read-back), the
read-only commands' (``plan``, ``verify``) and the lookups' (``engine/lookups.py``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bulk_attach.core.attempts import AttemptPolicy, TryAgain
from bulk_attach.core.catalog import ErrorClass, LocalCode
from bulk_attach.engine.control import RunControl, StopReason
from bulk_attach.engine.events import Listener, RunStopping, Throttled
from bulk_attach.engine.gates import RateGate
from bulk_attach.errors import ApiError, EcsError, Refused, TransportError

__all__ = ["ReadOnly"]

T = TypeVar("T")

# Answers that are not the API's (an HTML page, an empty 200, another server's JSON) before
# the API has answered once: the second is a repeat, the third settles it. Concurrent first
# reads reach this in one wave, so a wrong endpoint costs a handful of requests, not retries
# per row; a single stray answer at start-up is still ridden out.
_STRANGERS_BEFORE_STOP = 3
# Calls with no answer at all (refused, dropped, timed out) before the API has answered
# once. A network can lose a few calls (the emulator's chaos faults do), so more patience;
# a server that drops every connection still reaches it in the first wave or two.
_SILENCES_BEFORE_STOP = 12


def _not_the_api(error: EcsError) -> bool:
    return isinstance(error, TransportError) and error.code == LocalCode.INVALID_RESPONSE


class ReadOnly:
    """Runs one read-only call with retries: ``await reads(region, lambda: client.x(...))``."""

    __slots__ = (
        "_control",
        "_emit",
        "_gate",
        "_policy",
        "_rand",
        "_silences",
        "_sleep",
        "_strangers",
        "reached",
    )

    def __init__(
        self,
        gate: RateGate,
        policy: AttemptPolicy,
        control: RunControl,
        *,
        emit: Listener,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._gate = gate
        self._policy = policy
        self._control = control
        self._emit = emit
        self._rand = rand

        async def pause(delay: float) -> None:
            await control.unless_closed(sleep(delay))

        self._sleep: Callable[[float], Awaitable[None]] = pause
        # Whether the service has answered anything yet (see the module docstring).
        self.reached = False
        self._strangers = 0
        self._silences = 0

    async def __call__(self, region: str, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        refused_since: float | None = None  # when this call's run of throttles began
        gate = self._gate
        while True:
            attempt += 1
            try:
                answer = await call()
            except Refused:
                raise  # not sent: the service has refused everything for the timeout
            except EcsError as error:
                self.reached = self.reached or isinstance(error, ApiError)
                if error.error_class is ErrorClass.THROTTLED:
                    attempt -= 1  # the gate paces these: they are not tries
                    refused_since = await self._throttled(region, error, refused_since)
                    continue
                refused_since = None
                if isinstance(error, ApiError):
                    gate.on_answer(region)
                exhausted = attempt >= self._policy.max_attempts
                if not self.reached and isinstance(error, TransportError):
                    if self._control.reason is StopReason.FATAL:
                        raise
                    verdict = self._endpoint_is_wrong(error, exhausted=exhausted)
                    if verdict:
                        self.stop(verdict)
                        raise
                elif error.error_class is ErrorClass.FATAL:
                    self.stop(error.code)
                    raise
                elif exhausted or error.error_class is ErrorClass.PERMANENT:
                    raise
                elif self._control.reason is StopReason.FATAL:
                    raise  # the run is wrong: asking again helps no one
                delay = self._policy.backoff(
                    attempt, error.error_class, error.retry_after, self._rand()
                )
                await self._sleep(delay)
            else:
                gate.on_answer(region)
                self.reached = True
                return answer

    async def _throttled(self, region: str, error: EcsError, since: float | None) -> float:
        """Slow the gate down and wait for the service's retry-after; raise ``error`` once
        the service has accepted nothing like it for ``throttle_timeout``."""
        gate = self._gate
        rate = gate.on_throttle(region)
        if rate is not None:
            self._emit(Throttled(region=region, rate=rate))
        now = gate.now()
        since = now if since is None else since
        accepted = gate.last_accepted(region)
        refused_for = now - (since if accepted is None else max(since, accepted))
        if self._control.reason is StopReason.FATAL:
            raise error
        decision = self._policy.after_throttle(error.retry_after, refused_for)
        if not isinstance(decision, TryAgain):
            raise error
        if decision.delay > 0:
            await self._sleep(decision.delay)
        return since

    def _endpoint_is_wrong(self, error: TransportError, *, exhausted: bool) -> str:
        if _not_the_api(error):
            self._strangers += 1
            if self._strangers >= _STRANGERS_BEFORE_STOP or exhausted:
                return (
                    f"no answer came from the ECS API: {self._strangers} answers were not the "
                    f"API's (is the endpoint right?); the last: {error}"
                )
        else:
            self._silences += 1
            if self._silences >= _SILENCES_BEFORE_STOP or exhausted:
                return (
                    f"the service was never reached: {self._silences} calls had no answer; "
                    f"the last: {error}"
                )
        return ""

    def stop(self, detail: str) -> None:
        """Stop the run as wrong (exit 3) and say why at once, not only in the summary."""
        if self._control.stop(StopReason.FATAL, detail):
            self._emit(RunStopping(f"{StopReason.FATAL}: {detail}"))

    def __repr__(self) -> str:
        state = "reached" if self.reached else "not reached yet"
        return f"<ReadOnly {state}, {self._policy!r}>"
