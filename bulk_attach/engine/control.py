"""Why and how a run stops early: one small shared object the pool and workers consult."""

from __future__ import annotations

import asyncio
from enum import StrEnum

from bulk_attach.errors import ExitCode

__all__ = ["RunControl", "StopReason"]


class StopReason(StrEnum):
    FATAL = "fatal"  # the run itself is wrong (credentials, signature)
    THRESHOLD = "failure threshold"
    SIGINT = "interrupted (SIGINT)"
    SIGTERM = "terminated (SIGTERM)"
    REPORT_WRITE = "the report could not be written"

    @property
    def exit_code(self) -> int:
        return {
            StopReason.FATAL: ExitCode.CONFIG,
            StopReason.THRESHOLD: ExitCode.FAILURE_THRESHOLD,
            StopReason.SIGINT: ExitCode.SIGINT,
            StopReason.SIGTERM: ExitCode.SIGTERM,
            StopReason.REPORT_WRITE: ExitCode.REPORT_WRITE,
        }[self]


class RunControl:
    """Holds the first reason a run was asked to stop; later reasons don't overwrite it."""

    __slots__ = ("_stopped", "detail", "reason")

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.detail = ""
        self._stopped = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self.reason is not None

    def stop(self, reason: StopReason, detail: str = "") -> bool:
        """Ask the run to stop taking rows; True if this was the first request."""
        if self.reason is not None:
            return False
        self.reason = reason
        self.detail = detail
        self._stopped.set()
        return True

    async def wait(self) -> None:
        await self._stopped.wait()

    def skip_message(self) -> str:
        why = f"{self.reason}: {self.detail}" if self.detail else str(self.reason)
        return f"not attempted: the run stopped ({why})"

    def __repr__(self) -> str:
        return f"<RunControl {'running' if self.reason is None else self.reason}>"
