"""What the engine tells its listeners (progress bar, log lines, tests), as frozen events.

Listeners are plain callables taking one event; they must not block. The engine knows
nothing of how events are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bulk_attach.core.outcomes import RowResult

__all__ = [
    "Event",
    "Listener",
    "RowRetrying",
    "RowSettled",
    "RowStarted",
    "RunStopping",
    "Throttled",
]


@dataclass(frozen=True, slots=True)
class RowStarted:
    line: int


@dataclass(frozen=True, slots=True)
class RowRetrying:
    line: int
    code: str
    delay: float
    attempt: int
    # The row and the answer, for logs (empty when the emitter does not know them).
    region_id: str = ""
    instance_id: str = ""
    vpc_id: str = ""
    http_status: int | None = None
    reason: str = ""  # the error's message


@dataclass(frozen=True, slots=True)
class RowSettled:
    result: RowResult
    retried: bool = False  # True when the row had been in the retrying state before


@dataclass(frozen=True, slots=True)
class Throttled:
    region: str
    rate: float  # the pace the run slowed down to, requests per second
    api: str = ""  # the API action throttled (paces are per region and API)


@dataclass(frozen=True, slots=True)
class RunStopping:
    reason: str


Event = RowStarted | RowRetrying | RowSettled | Throttled | RunStopping
Listener = Callable[[Event], None]
