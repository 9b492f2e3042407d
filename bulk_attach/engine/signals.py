"""SIGINT and SIGTERM: stop sending at the first signal, stop at once on the second.

The first signal stops the run taking rows and closes sending (``RunControl``): nothing
waiting at the rate gate or in a retry backoff leaves any more, and the requests already
sent get ``drain_timeout`` seconds to be answered. The pool ends as soon as they are, so
the drain usually takes one round trip, not the timeout. The second signal (or the timeout)
stops at once. Either way the pool records every row, so the report stays complete.

``SignalStop`` is meant to be installed for the whole command, before the input is
validated and until the summary is written: a signal at any moment then ends the command
with its exit code and no traceback. Outside it, asyncio's own SIGINT handling (cancel the
main task) and SIGTERM's default (die at once) apply, which is what caused tracebacks and
lost summaries. ``run_command`` is the matching ``asyncio.run`` for the few instants
outside (start-up, shutdown).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from bulk_attach.engine.control import RunControl, StopReason
from bulk_attach.engine.events import Event, RunStopping
from bulk_attach.engine.pool import Pool
from bulk_attach.errors import ExitCode

__all__ = ["Interrupted", "SignalStop", "run_command", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
P = ParamSpec("P")
T = TypeVar("T")


class Interrupted(Exception):
    """A signal arrived while the command waited on something it cannot stop (validation)."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(str(reason))
        self.reason = reason

    @property
    def exit_code(self) -> int:
        return self.reason.exit_code


def _ignore(event: Event) -> None:
    pass


class SignalStop:
    """SIGINT and SIGTERM handled on the event loop for as long as the block runs.

    ``draining(pool, emit)`` marks the part where a pool runs: a first signal there gives
    the requests already sent ``drain_timeout`` seconds, a second stops the pool at once.
    ``off_loop`` runs blocking work (validating a large input) in a thread, so a signal is
    acted on at once instead of when the work ends.
    """

    __slots__ = (
        "_emit",
        "_loop",
        "_pool",
        "_signalled",
        "_timer",
        "control",
        "drain_timeout",
    )

    def __init__(
        self, control: RunControl, drain_timeout: float, emit: Callable[[Event], None] = _ignore
    ) -> None:
        self.control = control
        self.drain_timeout = drain_timeout
        self._emit = emit
        self._pool: Pool | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled: asyncio.Future[StopReason] | None = None

    def __enter__(self) -> SignalStop:
        self._loop = asyncio.get_running_loop()
        self._signalled = self._loop.create_future()
        for signum in _SIGNALS:
            self._loop.add_signal_handler(signum, self._on_signal, signum)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cancel_timer()
        if self._loop is not None:
            for signum in _SIGNALS:
                self._loop.remove_signal_handler(signum)
            self._loop = None

    @contextmanager
    def draining(self, pool: Pool, emit: Callable[[Event], None] | None = None) -> Iterator[None]:
        """While ``pool`` runs: drain on the first signal, hard stop on the second."""
        previous = self._emit
        self._pool = pool
        if emit is not None:
            self._emit = emit
        if self.control.sending_closed:
            # Interrupted before the pool started (while validating or starting up): it
            # only records its rows as skipped, and must not wait for anything.
            pool.hard_stop()
        try:
            yield
        finally:
            self._pool = None
            self._emit = previous
            self._cancel_timer()

    async def off_loop(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``func(*args, **kwargs)`` in a daemon thread; ``Interrupted`` if a signal comes
        first. The thread is abandoned then (it only reads), and a daemon thread does not
        hold up the exit the way ``asyncio.to_thread``'s executor would."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()

        def hand_over(outcome: Callable[[], None]) -> None:
            def settle() -> None:
                if not done.done():
                    outcome()

            # A closed loop means the command ended without waiting for this: drop it.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(settle)

        def work() -> None:
            try:
                value = func(*args, **kwargs)
            except BaseException as error:  # handed over to the loop, raised there
                hand_over(partial(done.set_exception, error))
            else:
                hand_over(partial(done.set_result, value))

        threading.Thread(target=work, name="bulk-attach-off-loop", daemon=True).start()
        signalled = self._signalled
        if signalled is None:
            return await done
        waiters: set[asyncio.Future[Any]] = {done, signalled}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            done.cancel()
            raise Interrupted(signalled.result())
        return done.result()

    def _on_signal(self, signum: int) -> None:
        reason = StopReason.SIGINT if signum == signal.SIGINT else StopReason.SIGTERM
        first = not self.control.sending_closed
        self.control.stop(reason)
        if self._signalled is not None and not self._signalled.done():
            self._signalled.set_result(reason)
        pool = self._pool
        if pool is None:
            if first:
                self._emit(RunStopping(f"{reason}: stopping; nothing more will be sent"))
            return
        if first:
            self._emit(
                RunStopping(
                    f"{reason}: sending nothing more; waiting up to {self.drain_timeout:g}s "
                    "for the requests already sent to be answered; press Ctrl-C again to "
                    "stop at once"
                )
            )
            self._timer = asyncio.get_running_loop().call_later(self.drain_timeout, pool.hard_stop)
        else:
            self._emit(RunStopping("stopping at once; the report is being written"))
            pool.hard_stop()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __repr__(self) -> str:
        state = "installed" if self._loop is not None else "not installed"
        pool = ", draining a pool" if self._pool is not None else ""
        return f"<SignalStop {state}{pool} {self.control!r}>"


@contextmanager
def stop_on_signals(
    control: RunControl, pool: Pool, drain_timeout: float, emit: Callable[[Event], None]
) -> Iterator[None]:
    """Signal handling for the pool's run only (``SignalStop`` covers a whole command)."""
    with SignalStop(control, drain_timeout, emit) as signals, signals.draining(pool):
        yield


def run_command(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run(main)`` whose result is an exit code, even when a signal lands outside
    ``SignalStop`` (start-up, shutdown): then 130 or 143, and no traceback."""
    previous = signal.getsignal(signal.SIGTERM)

    def terminated(signum: int, frame: object) -> None:
        raise _Terminated

    # Until the loop's own handler takes over, SIGTERM interrupts like Ctrl-C does.
    signal.signal(signal.SIGTERM, terminated)
    try:
        return asyncio.run(main)
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("bulk-attach: interrupted\n")
        return ExitCode.SIGINT
    except _Terminated:
        sys.stderr.write("bulk-attach: terminated\n")
        return ExitCode.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM outside ``SignalStop``: a BaseException, like KeyboardInterrupt, so no
    ``except Exception`` on the way swallows it."""
