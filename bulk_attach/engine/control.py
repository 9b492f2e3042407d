"""Why and how a run stops early: one small shared object the pool and workers consult.

Two strengths of "stop". Every reason stops the run taking rows. An interruption (SIGINT,
SIGTERM) also closes sending: from that moment no request leaves, not even one already
waiting at the rate gate or in a retry backoff, because the person who pressed Ctrl-C
wants the traffic to end, not to trickle on for the length of the queue. Those waits go
through ``unless_closed``, which ends them at once with ``SendingClosed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from enum import StrEnum
from typing import TypeVar

from bulk_attach.errors import ExitCode

__all__ = ["INTERRUPTED_IN_FLIGHT", "RunControl", "SendingClosed", "StopReason"]

T = TypeVar("T")

INTERRUPTED_IN_FLIGHT = (
    "interrupted while in flight: the link may or may not exist; a re-run reads it back first"
)


class SendingClosed(Exception):
    """The run was interrupted while this request waited to leave: it was never sent."""


class StopReason(StrEnum):
    FATAL = "fatal"  # the run itself is wrong (credentials, signature)
    THRESHOLD = "failure threshold"
    SIGINT = "interrupted (SIGINT)"
    SIGTERM = "terminated (SIGTERM)"
    REPORT_WRITE = "the report could not be written"
    INPUT_CHANGED = "the input changed during the run"

    @property
    def exit_code(self) -> int:
        return {
            StopReason.FATAL: ExitCode.CONFIG,
            StopReason.THRESHOLD: ExitCode.FAILURE_THRESHOLD,
            StopReason.SIGINT: ExitCode.SIGINT,
            StopReason.SIGTERM: ExitCode.SIGTERM,
            StopReason.REPORT_WRITE: ExitCode.REPORT_WRITE,
            StopReason.INPUT_CHANGED: ExitCode.USAGE,
        }[self]

    @property
    def closes_sending(self) -> bool:
        """Whether requests not yet sent are dropped too (an operator asked to stop), or
        only new rows are (the run decided to stop, and lets its rows finish)."""
        return self in (StopReason.SIGINT, StopReason.SIGTERM)


class RunControl:
    """Holds the first reason a run was asked to stop; later reasons don't overwrite it."""

    __slots__ = ("_stopped", "_waits", "detail", "reason", "sending_closed")

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.detail = ""
        self.sending_closed = False
        self._stopped = asyncio.Event()
        # The waits to end when sending closes (each a task's own timeout scope).
        self._waits: set[asyncio.Timeout] = set()

    @property
    def stopping(self) -> bool:
        return self.reason is not None

    def stop(self, reason: StopReason, detail: str = "") -> bool:
        """Ask the run to stop taking rows; True if this was the first request.

        An interruption closes sending even when the run was already stopping for another
        reason (a threshold stop lets retries go on; Ctrl-C after it must still end them).
        """
        if reason.closes_sending:
            self._close_sending()
        if self.reason is not None:
            return False
        self.reason = reason
        self.detail = detail
        self._stopped.set()
        return True

    def _close_sending(self) -> None:
        if self.sending_closed:
            return
        self.sending_closed = True
        if self._waits:
            now = asyncio.get_running_loop().time()
            for scope in list(self._waits):
                scope.reschedule(now)  # expires on the next loop pass: TimeoutError there

    async def wait(self) -> None:
        await self._stopped.wait()

    async def unless_closed(self, waiting: Awaitable[T]) -> T:
        """Await ``waiting`` (a wait before sending: the rate gate, a backoff) unless sending
        closes first, in which case raise ``SendingClosed``.

        A timeout scope rather than a race of two tasks: nothing is spawned per request, and
        a cancellation from outside (a hard stop) stays a cancellation.
        """
        if self.sending_closed:
            if asyncio.iscoroutine(waiting):
                waiting.close()  # never started: no "was never awaited" warning
            raise SendingClosed
        try:
            async with asyncio.timeout(None) as scope:
                self._waits.add(scope)
                try:
                    return await waiting
                finally:
                    self._waits.discard(scope)
        except TimeoutError:
            if scope.expired():
                raise SendingClosed from None
            raise

    def skip_message(self, *, attempts: int = 0) -> str:
        why = f"{self.reason}: {self.detail}" if self.detail else str(self.reason)
        if attempts:
            # It was sent before and answered; the next attempt never left.
            return f"not sent again after {attempts} attempt(s): the run stopped ({why})"
        return f"not attempted: the run stopped ({why})"

    def __repr__(self) -> str:
        state = "running" if self.reason is None else str(self.reason)
        if self.sending_closed:
            state += ", sending closed"
        return f"<RunControl {state}>"
