"""The worker pool: a bounded queue between the reader and N workers.

The pool knows rows, results and stopping; nothing of rates, quotas or HTTP. Every input
item leaves as exactly one recorded result: settled by a worker, rejected by the reader,
skipped because the run is stopping, or marked as interrupted while in flight.

Stopping comes in two strengths. A soft stop (``RunControl.stop``: fatal error, failure
threshold, first Ctrl-C) stops taking rows and lets the ones in flight settle. A hard stop
(second Ctrl-C, or the drain timeout) cancels the workers at once; the rows they held are
recorded as interrupted, so the report stays complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from bulk_attach.core.outcomes import RowResult
from bulk_attach.core.rows import Row
from bulk_attach.engine.control import RunControl

__all__ = ["Pool"]

Settle = Callable[[Row], Awaitable[RowResult]]
Record = Callable[[RowResult], None]
Skip = Callable[[Row, str], RowResult]

INTERRUPTED_IN_FLIGHT = (
    "interrupted while in flight: the link may or may not exist; a re-run reads it back first"
)
_YIELD_EVERY = 256  # let the loop breathe while the reader records rejected rows


class Pool:
    __slots__ = (
        "_concurrency",
        "_control",
        "_hard_stop",
        "_in_flight",
        "_pending",
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
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._settle = settle
        self._record = record
        self._skip = skip
        self._control = control
        self._concurrency = concurrency
        self._in_flight: dict[int, Row] = {}
        self._pending: Row | None = None
        self._hard_stop = asyncio.Event()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def hard_stop(self) -> None:
        """Cancel the workers now (second Ctrl-C); their rows are recorded as interrupted."""
        self._hard_stop.set()

    async def run(self, items: Iterable[Row | RowResult]) -> None:
        iterator = iter(items)
        queue: asyncio.Queue[Row | None] = asyncio.Queue(maxsize=self._concurrency)
        workers = [
            asyncio.create_task(self._work(n, queue), name=f"worker-{n}")
            for n in range(self._concurrency)
        ]
        producer = asyncio.create_task(self._produce(iterator, queue, len(workers)))
        everything = asyncio.gather(producer, *workers)
        hard = asyncio.create_task(self._hard_stop.wait())
        tasks = (producer, *workers)
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
        if failure is not None:
            raise failure  # a bug in a worker: never swallow it
        # After a hard stop: whatever the queue and the reader still hold is skipped.
        message = self._control.skip_message()
        if self._pending is not None:
            self._record(self._skip(self._pending, message))
            self._pending = None
        while not queue.empty():
            row = queue.get_nowait()
            if row is not None:
                self._record(self._skip(row, message))
        self._record_rest(iterator, message)

    async def _produce(
        self, iterator: Iterator[Row | RowResult], queue: asyncio.Queue[Row | None], workers: int
    ) -> None:
        for count, item in enumerate(iterator, 1):
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
            self._pending = item
            await queue.put(item)
            self._pending = None
        for _ in range(workers):
            await queue.put(None)

    async def _work(self, number: int, queue: asyncio.Queue[Row | None]) -> None:
        while (row := await queue.get()) is not None:
            if self._control.stopping:
                self._record(self._skip(row, self._control.skip_message()))
                continue
            self._in_flight[number] = row
            try:
                result = await self._settle(row)
            except asyncio.CancelledError:
                self._record(self._skip(row, INTERRUPTED_IN_FLIGHT))
                raise
            finally:
                del self._in_flight[number]
            self._record(result)

    def _record_rest(self, iterator: Iterator[Row | RowResult], message: str) -> None:
        for item in iterator:
            self._record(item if isinstance(item, RowResult) else self._skip(item, message))

    def __repr__(self) -> str:
        return f"<Pool concurrency={self._concurrency} in_flight={len(self._in_flight)}>"
