"""The worker pool: a bounded queue between the reader and N workers.

The pool knows rows, results and stopping; nothing of rates, quotas or HTTP. Every input
item leaves as exactly one recorded result: settled by a worker, rejected by the reader,
skipped because the run is stopping, or marked as interrupted while in flight.

Stopping comes in two strengths. A soft stop (``RunControl.stop``: fatal error, failure
threshold, first Ctrl-C) stops taking rows and lets the ones in flight settle (after Ctrl-C
the gates send nothing more, so only requests already sent are waited for). A hard stop
(second Ctrl-C, or the drain timeout) cancels the workers at once; the rows they held are
recorded as interrupted in flight when ``in_doubt`` says their attach may have left, else
as not attempted, so the report stays complete and says no more than is known.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from bulk_attach.core.outcomes import RowResult
from bulk_attach.core.rows import Row
from bulk_attach.engine.control import INTERRUPTED_IN_FLIGHT, RunControl

__all__ = ["INTERRUPTED_IN_FLIGHT", "Pool"]

Settle = Callable[[Row], Awaitable[RowResult]]
Record = Callable[[RowResult], None]
Skip = Callable[[Row, str], RowResult]
InDoubt = Callable[[Row], bool]


def _always(row: Row) -> bool:
    return True


_YIELD_EVERY = 256  # let the loop breathe while the reader records rejected rows


class _Lane:
    """One stream of items, its bounded queue, and the row its producer is handing over."""

    __slots__ = ("items", "pending", "queue")

    def __init__(self, items: Iterator[Row | RowResult], size: int) -> None:
        self.items = items
        self.queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=size)
        self.pending: Row | None = None


class Pool:
    __slots__ = (
        "_concurrency",
        "_control",
        "_hard_stop",
        "_in_doubt",
        "_in_flight",
        "_record",
        "_settle",
        "_skip",
    )

    def __init__(
        self,
        *,
        settle: Settle,
        record: Record,
        skip: Skip,
        control: RunControl,
        concurrency: int,
        in_doubt: InDoubt = _always,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._settle = settle
        self._record = record
        self._skip = skip
        self._control = control
        self._concurrency = concurrency
        # Whether a row cancelled mid-settle may have changed the service (the worker's
        # ``may_have_sent``); by default every such row is assumed to.
        self._in_doubt = in_doubt
        self._in_flight: dict[int, Row] = {}
        self._hard_stop = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def hard_stop(self) -> None:
        """Cancel the workers now (second Ctrl-C); their rows are recorded as interrupted."""
        self._hard_stop.set()

    async def run(self, *lanes: Iterable[Row | RowResult]) -> None:
        """Run every item of every lane; each lane has its own queue and workers.

        Lanes let independent streams (one per region, each under its own rate limit) make
        progress side by side even when the input is sorted by region.
        """
        states = [_Lane(iter(items), self._concurrency) for items in lanes]
        tasks: list[asyncio.Task[None]] = []
        for index, lane in enumerate(states):
            workers = [
                asyncio.create_task(self._work(index * self._concurrency + n, lane.queue))
                for n in range(self._concurrency)
            ]
            tasks += [asyncio.create_task(self._produce(lane, len(workers))), *workers]
        everything = asyncio.gather(*tasks)
        hard = asyncio.create_task(self._hard_stop.wait())
        try:
            waiters: set[asyncio.Future[Any]] = {everything, hard}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hard.cancel()
            finished = everything.done() and not everything.cancelled()
            failure = everything.exception() if finished else None
            if not finished or failure is not None:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            if everything.done() and not everything.cancelled():
                # Read, so asyncio does not log "exception was never retrieved" (with a
                # traceback) when the gathering future is collected after a hard stop.
                everything.exception()
        if failure is not None:
            raise failure  # a bug in a worker: never swallow it
        # After a hard stop: whatever the queues and the readers still hold is skipped.
        message = self._control.skip_message()
        for lane in states:
            if lane.pending is not None:
                self._record(self._skip(lane.pending, message))
                lane.pending = None
            while not lane.queue.empty():
                row = lane.queue.get_nowait()
                if row is not None:
                    self._record(self._skip(row, message))
            self._record_rest(lane.items, message)

    async def _produce(self, lane: _Lane, workers: int) -> None:
        for count, item in enumerate(lane.items, 1):
            if isinstance(item, RowResult):
                self._record(item)  # rejected by the reader: nothing to send
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                continue
            if self._control.stopping:
                self._record(self._skip(item, self._control.skip_message()))
                if count % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                continue
            lane.pending = item
            await lane.queue.put(item)
            lane.pending = None
        for _ in range(workers):
            await lane.queue.put(None)

    async def _work(self, number: int, queue: asyncio.Queue[Row | None]) -> None:
        while (row := await queue.get()) is not None:
            if self._control.stopping:
                self._record(self._skip(row, self._control.skip_message()))
                continue
            self._in_flight[number] = row
            try:
                result = await self._settle(row)
            except asyncio.CancelledError:
                doubt = self._in_doubt(row)
                self._record(self._skip(row, INTERRUPTED_IN_FLIGHT if doubt else self._unsent()))
                raise
            finally:
                del self._in_flight[number]
            self._record(result)

    def _unsent(self) -> str:
        return self._control.skip_message() if self._control.stopping else "not attempted"

    def _record_rest(self, iterator: Iterator[Row | RowResult], message: str) -> None:
        for item in iterator:
            self._record(item if isinstance(item, RowResult) else self._skip(item, message))

    def __repr__(self) -> str:
        return f"<Pool concurrency={self._concurrency} in_flight={len(self._in_flight)}>"
