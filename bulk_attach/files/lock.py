"""One run at a time per report: an advisory ``flock`` on the report's ``.lock`` sidecar.

Two runs writing the same report (a cron job that overlaps the previous one) would each
resume the other's half-written report and attach the same rows twice. Every command that
writes a report holds this lock for its whole life. ``flock`` is tied to the open file,
so the kernel releases it when the process dies, however it dies: kill -9 never leaves a
stale lock. The lock file itself is never deleted (deleting it would let two runs lock two
different files of the same name); it holds the holder's PID, host and start time, which
a refused run names.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from bulk_attach.errors import LockedError, UsageError

__all__ = ["ReportLock"]

_POLL = 0.2  # seconds between attempts while waiting for a lock


class ReportLock:
    """An exclusive lock on a report, held from ``acquire`` until ``release`` (or exit).

    ``wait`` is how long to wait for another holder to finish (0: refuse at once with
    ``LockedError``, exit code 75). The clock and sleep are injectable for tests.
    """

    __slots__ = ("_clock", "_fd", "_sleep", "command", "path", "report")

    def __init__(
        self,
        lock_path: Path,
        report: Path,
        *,
        command: str = "run",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = lock_path
        self.report = report
        self.command = command
        self._clock = clock
        self._sleep = sleep
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> Self:
        if self._fd is not None:
            return self
        try:
            # Creating the lock file is also the first check that the report's directory
            # can be written at all: a report in /proc or on a read-only disk stops here,
            # before anything is sent.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UsageError(
                f"{self.report}: cannot write the report there: {error.strerror or error}"
            ) from None
        deadline = self._clock() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if self._clock() >= deadline:
                    holder = _holder(fd)
                    os.close(fd)
                    raise LockedError(self.report, holder, waited=wait) from None
                self._sleep(_POLL)
            except OSError as error:
                os.close(fd)
                raise UsageError(
                    f"{self.report}: cannot lock the report: {error.strerror or error}"
                ) from None
        self._fd = fd
        self._write_holder()
        return self

    def _write_holder(self) -> None:
        if self._fd is None:
            return
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        data = (json.dumps(holder) + "\n").encode()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        except OSError:
            pass  # the lock holds without its note; a refused run then says "unknown"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<ReportLock {self.path} {'held' if self._fd is not None else 'free'}>"


def _holder(fd: int) -> str:
    """Who holds the lock, as written by the holder: ``PID 123 on host, started ...``."""
    try:
        raw = os.pread(fd, 4096, 0)
        data = json.loads(raw.decode("utf-8"))
        return (
            f"{data.get('command', 'a run')} PID {int(data['pid'])} on {data.get('host', '?')}, "
            f"started {data.get('started_at', '?')}"
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "another bulk-attach run (holder unknown)"
