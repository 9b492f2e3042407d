"""What a run tells stderr, for people and for log shippers: text lines or JSON objects.

Every line on stderr goes through ``logging`` once ``setup_logging`` has run: log records,
progress lines, stop notices, notes, the final summary. ``--log-format text`` prefixes each
line with an ISO-8601 UTC timestamp; ``--log-format json`` writes one object per line::

    {"timestamp": "2024-05-01T12:00:00.123Z", "level": "INFO", "event": "row_retrying",
     "line": 12, "instance": "i-...", "vpc": "vpc-...", "code": "Throttling", "attempt": 2,
     "delay": 0.8, "message": "..."}

``event`` names what happened: ``start``, ``row_retrying``, ``row_settled``, ``throttled``,
``run_stopping``, ``progress``, ``summary``, ``note``, ``error``, or ``log`` for any other
log record (its ``logger`` says whose). An engine event this module does not know (a new
one) is still written, named after its class, with its fields. Nothing here formats a
secret: events carry IDs, codes and counts, and the start event only options that hold none.

Levels: the start, progress, stops, throttling and the summary are shown at the default
verbosity; retries and settled rows at ``-v``; ``--quiet`` leaves only warnings and errors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

from bulk_attach.engine.events import (
    Event,
    RowRetrying,
    RowSettled,
    RowStarted,
    RunStopping,
    Throttled,
)
from bulk_attach.settings import LogFormat

__all__ = [
    "EventLog",
    "LogFormat",
    "is_json",
    "record",
    "setup_logging",
]

# Shown at the default verbosity whatever -v says (the run's own story, not chatter).
RUN_LOGGER = "bulk_attach.run"
# Per-row events: retries and settled rows, at -v.
ROWS_LOGGER = "bulk_attach.rows"


class _Chosen:
    format = LogFormat.TEXT


def is_json() -> bool:
    """Whether stderr speaks JSON (set by ``setup_logging``)."""
    return _Chosen.format is LogFormat.JSON


def timestamp(seconds: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds: ``2024-05-01T12:00:00.123Z``."""
    now = time.time() if seconds is None else seconds
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{whole}.{int(now % 1 * 1000):03d}Z"


class _TextFormatter(logging.Formatter):
    """``TIMESTAMP LEVEL logger: message``; the run's own lines as ``TIMESTAMP message``."""

    def format(self, rec: logging.LogRecord) -> str:
        message = rec.getMessage()
        if rec.exc_info:
            message += "\n" + self.formatException(rec.exc_info)
        if getattr(rec, "event", None) is not None and rec.levelno < logging.WARNING:
            return f"{timestamp(rec.created)} {message}"
        return f"{timestamp(rec.created)} {rec.levelname} {rec.name}: {message}"


class _JsonFormatter(logging.Formatter):
    def format(self, rec: logging.LogRecord) -> str:
        event = getattr(rec, "event", None)
        data: dict[str, Any] = {
            "timestamp": timestamp(rec.created),
            "level": rec.levelname,
            "event": event or "log",
        }
        if event is None:
            data["logger"] = rec.name
        fields = getattr(rec, "fields", None)
        if isinstance(fields, Mapping):
            data.update(fields)
        if "message" not in data:
            data["message"] = rec.getMessage()
        if rec.exc_info:
            data["traceback"] = self.formatException(rec.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so a second ``setup_logging`` replaces it and nothing else."""


def setup_logging(verbose: int, log_format: LogFormat = LogFormat.TEXT) -> None:
    """One handler on stderr, in the chosen format; -v info, -vv debug."""
    _Chosen.format = log_format
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = _Handler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if is_json() else _TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)  # ours from an earlier call (tests); others are left alone
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger(RUN_LOGGER).setLevel(min(level, logging.INFO))
    # Third-party debug chatter is not ours to show.
    for name in ("asyncio", "aiohttp"):
        logging.getLogger(name).setLevel(max(level, logging.INFO))


def record(
    event: str,
    message: str,
    *,
    level: int = logging.INFO,
    logger: str = RUN_LOGGER,
    **fields: Any,
) -> None:
    """Log one event: ``message`` for people, ``fields`` for machines (JSON keeps both)."""
    logging.getLogger(logger).log(
        level, "%s", message, extra={"event": event, "fields": {**fields, "message": message}}
    )


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class EventLog:
    """A listener writing the engine's events as log records (see the module docstring)."""

    __slots__ = ("_stops",)

    def __init__(self, *, stops: bool = True) -> None:
        # False beside a progress bar, which writes the stop notices above itself.
        self._stops = stops

    def __call__(self, event: Event | object) -> None:  # object: an event added since
        if isinstance(event, RowSettled):
            result = event.result
            record(
                "row_settled",
                f"line {result.line}: {result.instance_id} -> {result.vpc_id}: {result.status}"
                + (f" ({result.error_code})" if result.error_code else "")
                + (f" after {result.attempts} attempts" if result.attempts > 1 else ""),
                logger=ROWS_LOGGER,
                line=result.line,
                region=result.region_id,
                instance=result.instance_id,
                vpc=result.vpc_id,
                status=str(result.status),
                code=result.error_code or None,
                http_status=result.http_status or None,
                attempts=result.attempts,
                request_id=result.request_id or None,
                detail=result.message or None,
            )
        elif isinstance(event, RowRetrying):
            where = f" ({event.instance_id} -> {event.vpc_id})" if event.instance_id else ""
            status = f" HTTP {event.http_status}" if event.http_status else ""
            record(
                "row_retrying",
                f"line {event.line}{where}: {event.code}{status}, attempt {event.attempt} "
                f"failed; retrying in {event.delay:.2f}s",
                logger=ROWS_LOGGER,
                line=event.line,
                region=event.region_id or None,
                instance=event.instance_id or None,
                vpc=event.vpc_id or None,
                code=event.code,
                http_status=event.http_status or None,
                attempt=event.attempt,
                delay=round(event.delay, 3),
                reason=event.reason or None,
            )
        elif isinstance(event, Throttled):
            record(
                "throttled",
                f"throttled in {event.region}: slowing to {event.rate:.1f} requests/s",
                region=event.region,
                rate=round(event.rate, 3),
            )
        elif isinstance(event, RunStopping):
            if self._stops:
                record(
                    "run_stopping",
                    f"stopping: {event.reason}",
                    level=logging.WARNING,
                    reason=event.reason,
                )
        elif isinstance(event, RowStarted):
            record(
                "row_started",
                f"line {event.line}: started",
                level=logging.DEBUG,
                logger=ROWS_LOGGER,
                line=event.line,
            )
        else:  # an event added since (say, a throttle recovery): written with its fields
            name = type(event).__name__
            fields: dict[str, Any] = {}
            if dataclasses.is_dataclass(event) and not isinstance(event, type):
                fields = dataclasses.asdict(event)
            shown = ", ".join(f"{k}={v}" for k, v in fields.items())
            record(_snake(name), f"{_snake(name).replace('_', ' ')}: {shown}", **fields)
