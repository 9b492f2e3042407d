"""What the read-only jobs (``plan``, ``verify``) share: a session and their result.

A ``ReadSession`` is the run's gate (``RateGate``, the same per-region rate), a counting
gate around it, the client (or an injected API object: a fake in tests), the run's attempt
rules for reads (``ReadOnly``) and the four lookups. Nothing in it changes the service.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import CredentialsProvider
from bulk_attach.core.attempts import AttemptPolicy
from bulk_attach.core.catalog import ErrorClass
from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.prediction import ReadFailure
from bulk_attach.core.rows import Row
from bulk_attach.engine.control import RunControl, SendingClosed
from bulk_attach.engine.events import Event, Listener
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.lookups import CountingGate, Lookups, ReadApi
from bulk_attach.engine.reads import ReadOnly
from bulk_attach.engine.worker import utc_now
from bulk_attach.errors import EcsError
from bulk_attach.settings import AttemptSettings, ClientSettings

__all__ = ["ReadJobResult", "ReadSession", "failure_of", "open_session", "result_row"]


@dataclass(frozen=True, slots=True)
class ReadJobResult:
    """What ``plan_job`` and ``verify_job`` return (as ``JobResult`` for ``run``)."""

    exit_code: int
    summary: dict[str, Any]
    report_path: Path
    summary_path: Path


@dataclass(slots=True)
class ReadSession:
    lookups: Lookups
    gate: CountingGate
    control: RunControl
    emit: Listener
    started: float
    started_at: str

    def calls(self) -> dict[str, Any]:
        """The summary's ``calls``: per action (every request, pages and retries included),
        their total, and per lookup."""
        by_action = dict(sorted(self.gate.total.items()))
        return {
            "by_action": by_action,
            "total": sum(by_action.values()),
            "by_lookup": self.lookups.calls(),
        }

    def duration(self) -> float:
        return time.monotonic() - self.started


@asynccontextmanager
async def open_session(
    client_settings: ClientSettings,
    credentials: CredentialsProvider,
    *,
    rate: float | None,
    attempts: AttemptSettings,
    listeners: Sequence[Listener] = (),
    control: RunControl | None = None,
    api: ReadApi | None = None,
    window: float | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> AsyncIterator[ReadSession]:
    """A session for one read-only job.

    ``api`` replaces the HTTP client (a fake in tests); requests are counted by the gate
    only when the fake awaits ``session.gate`` the way the client does.
    """
    control = control or RunControl()

    def emit(event: Event) -> None:
        for listener in listeners:
            listener(event)

    rate_gate = RateGate(rate, refuse_after=attempts.throttle_timeout)
    rate_gate.close_with(control)
    gate = CountingGate(rate_gate)
    extra: dict[str, Any] = {} if sleep is None else {"sleep": sleep}
    reads = ReadOnly(rate_gate, AttemptPolicy(attempts), control, emit=emit, **extra)
    async with AsyncExitStack() as stack:
        if api is None:
            api = await stack.enter_async_context(
                EcsClient(client_settings, credentials, gate=gate)
            )
        lookups = Lookups(api, reads) if window is None else Lookups(api, reads, window=window)
        stack.callback(lookups.close)
        yield ReadSession(lookups, gate, control, emit, time.monotonic(), utc_now())


def failure_of(error: BaseException) -> ReadFailure:
    """A lookup's failure as a fact: its code, and whether the same call would fail again."""
    if isinstance(error, EcsError):
        return ReadFailure(error.code, error.message, error.error_class is ErrorClass.PERMANENT)
    if isinstance(error, SendingClosed):
        return ReadFailure("NotRead", "the job was interrupted before this call left", False)
    raise error


def result_row(row: Row, status: Status, *, code: str = "", message: str = "") -> RowResult:
    """A report row for a validated input row."""
    return RowResult(
        line=row.line,
        region_id=row.region_id,
        instance_id=row.instance_id,
        vpc_id=row.vpc_id,
        status=status,
        error_code=code,
        message=message,
        extra=row.extra,
    )
