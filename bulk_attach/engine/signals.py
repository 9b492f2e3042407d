"""SIGINT and SIGTERM during a run: drain first, stop hard on the second signal.

The first signal stops the run taking rows and gives the requests in flight
``drain_timeout`` seconds to settle; the second (or the timeout) stops at once. Either
way the pool records every row, so the report stays complete.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from bulk_attach.engine.control import RunControl, StopReason
from bulk_attach.engine.events import Event, RunStopping
from bulk_attach.engine.pool import Pool

__all__ = ["stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(
    control: RunControl, pool: Pool, drain_timeout: float, emit: Callable[[Event], None]
) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        reason = StopReason.SIGINT if signum == signal.SIGINT else StopReason.SIGTERM
        if control.stop(reason):
            emit(
                RunStopping(
                    f"{reason}: letting {pool.in_flight} requests in flight settle "
                    f"(up to {drain_timeout:g}s); press Ctrl-C again to stop at once"
                )
            )
            loop.call_later(drain_timeout, pool.hard_stop)
        else:
            emit(RunStopping("stopping at once; the report is being written"))
            pool.hard_stop()

    for signum in _SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
