"""The engine as one object: rows in, results out through a callback, no files.

``Engine`` composes what a run needs around one action (attach, detach): the per-region
rate gate, the quota ledger, the worker, the pool, the failure threshold and, when asked,
signal handling. It reads no file and writes none: ``job.py`` wraps it with the input
file, the report, the resume journal and the summary; a library caller hands it rows and
an API object (``bulk_attach.library``) and gets a typed ``EngineResult``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from bulk_attach.core.attempts import AttemptPolicy
from bulk_attach.core.outcomes import Key, RowResult, Summary
from bulk_attach.core.quotas import QuotaLedger
from bulk_attach.core.resuming import ResumeState
from bulk_attach.core.rows import Row
from bulk_attach.core.threshold import FailureThreshold
from bulk_attach.engine.actions import ATTACH, Action
from bulk_attach.engine.control import RunControl, StopReason
from bulk_attach.engine.events import Event, Listener, RowSettled, RunStopping
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.pool import Pool
from bulk_attach.engine.signals import SignalStop, stop_on_signals
from bulk_attach.engine.sources import Item, Rows, lanes, remaining
from bulk_attach.engine.worker import Worker, WorkerApi, utc_now
from bulk_attach.errors import ExitCode
from bulk_attach.settings import EngineSettings

__all__ = ["Engine", "EngineResult", "RowList"]

_DEFAULTS = EngineSettings()


@dataclass(frozen=True, slots=True)
class RowList:
    """Rows given in memory (a library caller's list): a re-iterable source with regions."""

    rows: tuple[Item, ...]
    extra_columns: tuple[str, ...] = ()

    @classmethod
    def of(cls, rows: Iterable[Item]) -> RowList:
        return cls(tuple(rows))

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def regions(self) -> frozenset[str]:
        return frozenset(row.region_id for row in self.rows if isinstance(row, Row))

    def __iter__(self) -> Iterator[Item]:
        return iter(self.rows)


@dataclass(frozen=True, slots=True)
class EngineResult:
    """What one run of the engine did: the rows it settled, why it stopped, if it did."""

    action: str
    summary: Summary  # the rows this run settled (its action's success set)
    stop_reason: StopReason | None
    stop_detail: str
    duration: float
    vpc_quota: dict[str, dict[str, int]] = field(default_factory=dict)
    read_back: int = 0  # rows a previous run left in flight, read back first
    # Per region/API: the pace used at the end, the limit learned, accepted and throttled.
    flow: dict[str, dict[str, float | int | None]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.stop_reason is not None:
            return self.stop_reason.exit_code
        return ExitCode.OK if self.summary.unsuccessful == 0 else ExitCode.SOME_ROWS_FAILED


class Engine:
    """One run of one action over rows; ``run`` may be awaited once.

    ``on_result`` receives every row's result as it settles (the report writer, a list,
    a queue); an exception it raises ends the run (the pool stops its workers) and leaves
    ``run``. ``journal`` is called for a row just before its first request can leave;
    ``resume`` drops what a previous run settled and ``in_doubt`` collects the rows it left
    in flight, which the worker reads back before sending anything. ``unique_instances``
    says no instance has two rows to run (a validated input file), so the worker need not
    remember the links it made for later rows.
    """

    def __init__(
        self,
        api: WorkerApi,
        settings: EngineSettings = _DEFAULTS,
        *,
        action: Action = ATTACH,
        gate: RateGate | None = None,
        control: RunControl | None = None,
        on_result: Callable[[RowResult], None] | None = None,
        listeners: Sequence[Listener] = (),
        journal: Callable[[Row], None] | None = None,
        resume: ResumeState | None = None,
        in_doubt: set[Key] | None = None,
        unique_instances: bool = False,
    ) -> None:
        self.settings = settings
        self.action = action
        self.gate = gate or RateGate.for_run(settings)
        self.control = control or RunControl()
        self.ledger = QuotaLedger(settings.vpc_quota)
        self.summary = Summary(succeeded=action.succeeded)
        self._threshold = FailureThreshold(settings.max_failure_rate, settings.min_settled)
        self._on_result = on_result
        self._listeners = tuple(listeners)
        self._resume = resume
        self.in_doubt: set[Key] = set() if in_doubt is None else in_doubt
        self.worker = Worker(
            api,
            self.gate,
            self.ledger,
            AttemptPolicy(settings.attempts),
            self.control,
            emit=self.emit,
            journal=journal,
            in_doubt=self.in_doubt,
            action=action,
            unique_instances=unique_instances,
        )

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)

    def _record(self, result: RowResult) -> None:
        if self._on_result is not None:
            self._on_result(result)
        self.summary.add(result)
        self.emit(RowSettled(result))
        if self._threshold.crossed(result) and self.control.stop(
            StopReason.THRESHOLD,
            f"{self._threshold.failed} of {self._threshold.settled} settled rows failed",
        ):
            self.emit(RunStopping(self.control.skip_message()))

    def _skip(self, row: Row, message: str) -> RowResult:
        return self.worker.skipped(row, message, started=utc_now())

    async def run(
        self,
        rows: Rows | Iterable[Item],
        *,
        signals: SignalStop | None = None,
        install_signal_handlers: bool = False,
    ) -> EngineResult:
        """Run every item of ``rows`` (a row source with ``regions``, or any iterable of
        ``Row`` and rejected ``RowResult``) to one result each."""
        source: Rows = rows if isinstance(rows, Rows) else RowList.of(rows)
        started = time.monotonic()
        pool = Pool(
            settle=self.worker.settle,
            record=self._record,
            skip=self._skip,
            control=self.control,
            concurrency=self.settings.concurrency,
            in_doubt=self.worker.may_have_sent,
        )
        handling: AbstractContextManager[None] = (
            signals.draining(pool, self.emit)
            if signals is not None
            else stop_on_signals(self.control, pool, self.settings.drain_timeout, self.emit)
            if install_signal_handlers
            else nullcontext()
        )
        with handling:
            await pool.run(
                *(remaining(lane, self._resume, self.in_doubt) for lane in lanes(source))
            )
        return self.result(time.monotonic() - started)

    def result(self, duration: float) -> EngineResult:
        return EngineResult(
            action=self.action.name,
            summary=self.summary,
            stop_reason=self.control.reason,
            stop_detail=self.control.detail,
            duration=duration,
            vpc_quota=self.ledger.snapshot() if self.action.uses_quota else {},
            read_back=len(self.in_doubt),
            flow=self.gate.snapshot(),
        )

    def __repr__(self) -> str:
        return f"<Engine {self.action.name} {self.summary!r} {self.control!r}>"
