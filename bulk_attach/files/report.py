"""The report: one row per input row, written as it settles, and read back for resume.

Formats
-------
CSV (default): a header, then one record per row, UTF-8, RFC 4180 (CRLF line ends, fields
quoted when needed: a ``Message`` may hold commas, quotes and newlines)::

    line,RegionId,InstanceId,VpcId,Status,RequestId,ErrorCode,HttpStatus,Message,Attempts,StartedAt,FinishedAt[,extra...]

``HttpStatus`` is blank when there was no HTTP answer. Extra input columns follow, in input
order, under their own names.

JSON Lines: one object per line with the same keys (``line``, ``HttpStatus`` and
``Attempts`` as numbers) plus ``"Extra": {name: value}``.

Crash safety
------------
Each row is encoded first and handed to the OS in one ``write`` on an unbuffered file, so a
kill -9 loses at most the row being written, and leaves at worst a torn last record. Rows
are ``fsync``-ed every ``fsync_interval`` seconds and on close (a machine crash loses at
most that window). Reading tolerates a torn last record (it is dropped and ``torn`` is
set); opening for append first cuts such a tail off, so new rows never glue onto a
fragment.

Sidecars (beside the report, same name plus a suffix; ``files/paths.py`` names them all)
------------------------------------------------------------------------------------------
``<report>.meta.json``  written when a run starts: which input the report belongs to
                        (path, size, sha256), format and command; resume refuses a
                        changed input.
``<report>.started``    journal of rows handed to the service, one ``line<TAB>region<TAB>
                        instance<TAB>vpc`` per row, written before the attach leaves: a
                        resume reads back rows started but never settled.

A write that fails (disk full) raises ``ReportWriteError`` after cutting off whatever part
of the row reached the file, so the report stays intact up to its last whole row.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from bulk_attach.core.outcomes import Key, RowResult, Status
from bulk_attach.core.rows import normalize_column
from bulk_attach.errors import InputError, ReportWriteError
from bulk_attach.files.paths import ReportPaths
from bulk_attach.settings import ReportFormat

__all__ = [
    "COLUMNS",
    "REPORT_COLUMN_KEYS",
    "ReportMeta",
    "ReportReader",
    "ReportWriter",
    "StartedJournal",
    "detect_format",
    "is_report",
    "read_meta",
    "read_report",
    "read_started",
    "record_of",
    "repair_report",
    "result_of",
    "write_meta",
    "write_summary",
]

COLUMNS: tuple[str, ...] = (
    "line",
    "RegionId",
    "InstanceId",
    "VpcId",
    "Status",
    "RequestId",
    "ErrorCode",
    "HttpStatus",
    "Message",
    "Attempts",
    "StartedAt",
    "FinishedAt",
)
# Normalized names of the report's own columns (not the three IDs): when a report is read
# as input, these are neither required nor carried as extras.
REPORT_COLUMN_KEYS: frozenset[str] = frozenset(
    normalize_column(c) for c in COLUMNS if c not in ("RegionId", "InstanceId", "VpcId")
) | {"extra"}

_EXTRA_KEY = "Extra"
_FSYNC_INTERVAL = 1.0


# --- one row as a record ------------------------------------------------------------------


def record_of(result: RowResult) -> dict[str, Any]:
    """The report record of a result (JSON Lines shape: numbers stay numbers)."""
    return {
        "line": result.line,
        "RegionId": result.region_id,
        "InstanceId": result.instance_id,
        "VpcId": result.vpc_id,
        "Status": result.status.value,
        "RequestId": result.request_id,
        "ErrorCode": result.error_code,
        "HttpStatus": result.http_status,
        "Message": result.message,
        "Attempts": result.attempts,
        "StartedAt": result.started_at,
        "FinishedAt": result.finished_at,
        _EXTRA_KEY: dict(result.extra),
    }


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} is not a number: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if name == "HttpStatus" and text == "":
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} is not a number: {value!r}") from None


def result_of(record: Mapping[str, Any], extra_columns: Sequence[str] | None = None) -> RowResult:
    """The result a record describes; ``ValueError`` names the bad field.

    CSV records carry extras as plain keys (``extra_columns`` lists them, in order); JSON
    Lines records carry them under ``Extra``.
    """
    missing = [c for c in COLUMNS if c not in record]
    if missing:
        raise ValueError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    try:
        status = Status(str(record["Status"]).strip())
    except ValueError:
        raise ValueError(f"Status {record['Status']!r} is not a report status") from None
    if extra_columns is None:
        raw_extra = record.get(_EXTRA_KEY) or {}
        if not isinstance(raw_extra, Mapping):
            raise ValueError(f"{_EXTRA_KEY} is not an object")
        extra = tuple((str(k), str(v)) for k, v in raw_extra.items())
    else:
        extra = tuple((name, str(record.get(name, ""))) for name in extra_columns)
    return RowResult(
        line=_int(record["line"], "line"),
        region_id=str(record["RegionId"]),
        instance_id=str(record["InstanceId"]),
        vpc_id=str(record["VpcId"]),
        status=status,
        request_id=str(record["RequestId"]),
        error_code=str(record["ErrorCode"]),
        http_status=_int(record["HttpStatus"], "HttpStatus"),
        message=str(record["Message"]),
        attempts=_int(record["Attempts"], "Attempts"),
        started_at=str(record["StartedAt"]),
        finished_at=str(record["FinishedAt"]),
        extra=extra,
    )


def _csv_line(values: Iterable[Any]) -> str:
    buffer = io.StringIO()
    # RFC 4180's CRLF: with it, csv quotes any field holding a CR or LF, so a bare CR in
    # a message cannot split a record on reading.
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def _csv_values(result: RowResult) -> list[Any]:
    return [
        result.line,
        result.region_id,
        result.instance_id,
        result.vpc_id,
        result.status.value,
        result.request_id,
        result.error_code,
        result.http_status or "",
        result.message,
        result.attempts,
        result.started_at,
        result.finished_at,
    ]


# --- reading ------------------------------------------------------------------------------


def is_report(path: str | os.PathLike[str]) -> bool:
    """Whether a file is a bulk-attach report (JSON Lines, or CSV with the report's header)
    rather than a pairs CSV."""
    try:
        with open(path, "rb") as file:
            head = file.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    except OSError:
        return False
    if head.startswith(b"{"):
        return True
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return first.split(",")[: len(COLUMNS)] == list(COLUMNS)


def detect_format(path: str | os.PathLike[str]) -> ReportFormat:
    """JSON Lines when the first non-blank character is ``{``, CSV otherwise."""
    with open(path, "rb") as file:
        head = file.read(4096).lstrip(b"\xef\xbb\xbf").lstrip()
    return ReportFormat.JSONL if head.startswith(b"{") else ReportFormat.CSV


class _Lines:
    """Binary lines decoded one at a time, counting bytes and lines consumed, so a reader
    knows where the last complete record ends."""

    __slots__ = ("_file", "complete", "eof", "line_no", "offset")

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.offset = 0  # bytes consumed
        self.line_no = 0  # physical lines consumed
        self.complete = True  # the last line consumed ended with a newline
        self.eof = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self._file.readline()
        if not raw:
            self.eof = True
            raise StopIteration
        if self.offset == 0 and raw.startswith(b"\xef\xbb\xbf"):
            self.offset += 3
            raw = raw[3:]
        self.offset += len(raw)
        self.line_no += 1
        self.complete = raw.endswith(b"\n")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if not self.complete:
                # A torn multi-byte character at the very end: the caller drops this line.
                return raw.decode("utf-8", errors="replace")
            raise


class ReportReader:
    """Iterates the results in a report (CSV or JSON Lines, detected from the content).

    A torn last record (no final newline, or ending inside a quoted field) is dropped and
    ``torn`` set; ``good_size`` is then the byte length of the intact part. Anything else
    malformed raises ``InputError`` with the line.
    """

    __slots__ = ("extra_columns", "format", "good_size", "path", "rows", "torn")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.format = detect_format(self.path)
        except OSError as error:
            raise InputError(
                str(path), f"cannot read the report: {error.strerror or error}"
            ) from None
        self.extra_columns: tuple[str, ...] = ()
        self.torn = False
        self.good_size = 0
        self.rows = 0

    def __iter__(self) -> Iterator[RowResult]:
        try:
            with open(self.path, "rb") as file:
                lines = _Lines(file)
                if self.format is ReportFormat.JSONL:
                    yield from self._jsonl(lines)
                else:
                    yield from self._csv(lines)
        except OSError as error:
            raise InputError(
                str(self.path), f"cannot read the report: {error.strerror or error}"
            ) from None

    def _fail(self, message: str, line: int | None) -> InputError:
        return InputError(str(self.path), message, line)

    def _jsonl(self, lines: _Lines) -> Iterator[RowResult]:
        for text in lines:
            if not lines.complete:
                self.torn = True
                return
            if text.strip():
                try:
                    record = json.loads(text)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    result = result_of(record)
                except ValueError as error:
                    raise self._fail(f"not a report row: {error}", lines.line_no) from None
                self.rows += 1
                yield result
            self.good_size = lines.offset

    def _csv(self, lines: _Lines) -> Iterator[RowResult]:
        reader = csv.reader(lines, strict=True)
        header: list[str] | None = None
        extra: tuple[str, ...] = ()
        while True:
            start = lines.line_no + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                if lines.eof or not lines.complete:
                    self.torn = True  # a record cut inside a quoted field
                    return
                raise self._fail(f"not a CSV report: {error}", start) from None
            except UnicodeDecodeError:
                raise self._fail("not UTF-8 text", lines.line_no) from None
            if not lines.complete:
                self.torn = True  # the write of this record never finished
                return
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                self.good_size = lines.offset
                continue
            if header is None:
                header = [f.strip() for f in fields]
                if tuple(header[: len(COLUMNS)]) != COLUMNS:
                    raise self._fail(
                        "not a bulk-attach report: the header must start with " + ",".join(COLUMNS),
                        start,
                    )
                extra = tuple(header[len(COLUMNS) :])
                self.extra_columns = extra
                self.good_size = lines.offset
                continue
            if len(fields) != len(header):
                raise self._fail(
                    f"the row has {len(fields)} fields but the header has {len(header)}", start
                )
            try:
                result = result_of(dict(zip(header, fields, strict=True)), extra)
            except ValueError as error:
                raise self._fail(f"not a report row: {error}", start) from None
            self.rows += 1
            self.good_size = lines.offset
            yield result


def read_report(path: str | os.PathLike[str]) -> Iterator[RowResult]:
    """The results in a report, in file order; a torn last record is dropped silently."""
    return iter(ReportReader(path))


def repair_report(path: str | os.PathLike[str]) -> int:
    """Cut a torn last record off (before appending); returns the bytes removed."""
    reader = ReportReader(path)
    for _ in reader:
        pass
    size = os.path.getsize(path)
    if not reader.torn or reader.good_size >= size:
        return 0
    with open(path, "r+b") as file:
        file.truncate(reader.good_size)
        file.flush()
        os.fsync(file.fileno())
    return size - reader.good_size


# --- writing ------------------------------------------------------------------------------


class _ClosedOnExit:
    """``with`` support for the append-only files here: leaving the block closes them."""

    __slots__ = ()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ReportWriter(_ClosedOnExit):
    """Writes results one by one, each flushed to the OS at once (a context manager).

    ``append=True`` continues an existing report (resume): a torn tail is cut off first and
    the header is written only when the file is new or empty; an existing CSV header must
    match this writer's columns.
    """

    __slots__ = (
        "_clock",
        "_fd",
        "_last_sync",
        "_size",
        "_unsynced",
        "extra_columns",
        "format",
        "fsync_interval",
        "path",
        "written",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        format: ReportFormat = ReportFormat.CSV,
        extra_columns: Sequence[str] = (),
        *,
        append: bool = False,
        fsync_interval: float | None = _FSYNC_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.format = ReportFormat(format)
        self.extra_columns = tuple(extra_columns)
        self.fsync_interval = fsync_interval
        self._clock = clock
        self._fd: int | None = None
        self._last_sync = 0.0
        self._unsynced = False
        self._size = 0  # bytes in the file after the last whole row
        self.written = 0
        self._open(append)

    def _open(self, append: bool) -> None:
        exists = self.path.exists() and self.path.stat().st_size > 0
        if append and exists:
            repair_report(self.path)
            if self.format is ReportFormat.CSV:
                self._check_header()
            new = self.path.stat().st_size == 0
            flags = os.O_WRONLY | os.O_APPEND
        else:
            new = True
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        try:
            self._fd = os.open(self.path, flags, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError as error:
            raise ReportWriteError(self.path, error) from None
        self._last_sync = self._clock()
        if new and self.format is ReportFormat.CSV:
            self._write(_csv_line((*COLUMNS, *self.extra_columns)).encode("utf-8"))

    def _check_header(self) -> None:
        if detect_format(self.path) is not ReportFormat.CSV:
            raise InputError(str(self.path), "cannot append CSV rows to a JSON Lines report")
        reader = ReportReader(self.path)
        for _ in reader:
            break
        if reader.good_size == 0:
            return  # nothing intact yet: the header gets written again
        if reader.extra_columns != self.extra_columns:
            raise InputError(
                str(self.path),
                f"the report's extra columns {list(reader.extra_columns)} differ from the "
                f"input's {list(self.extra_columns)}",
                1,
            )

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("the report is closed")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            # Disk full, quota, I/O error: cut off the part of the row that got through, so
            # the report ends on a whole row and a re-run resumes from it.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise ReportWriteError(self.path, error) from None
        self._size += len(data)
        self._unsynced = True

    def write(self, result: RowResult) -> None:
        """Append one row: encoded whole, then handed to the OS in one write."""
        if self.format is ReportFormat.CSV:
            extras = dict(result.extra)
            values = _csv_values(result) + [extras.get(name, "") for name in self.extra_columns]
            data = _csv_line(values)
        else:
            data = json.dumps(record_of(result), ensure_ascii=False) + "\n"
        self._write(data.encode("utf-8"))
        self.written += 1
        if (
            self.fsync_interval is not None
            and self._clock() - self._last_sync >= self.fsync_interval
        ):
            self.sync()

    def write_all(self, results: Iterable[RowResult]) -> None:
        for result in results:
            self.write(result)

    def sync(self) -> None:
        """Force written rows to disk (they are already safe from a process crash)."""
        if self._fd is not None and self._unsynced:
            try:
                os.fsync(self._fd)
            except OSError as error:
                raise ReportWriteError(self.path, error) from None
            self._unsynced = False
        self._last_sync = self._clock()

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else "open"
        return f"<ReportWriter {self.path} {self.format} {state}, {self.written} rows written>"


# --- the summary and the sidecars ---------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # like the report beside it, not mkstemp's private 0600
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_summary(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> None:
    """Write the JSON summary atomically (a reader never sees a partial file)."""
    _atomic_write(Path(path), json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


@dataclass(frozen=True, slots=True)
class ReportMeta:
    """What a report belongs to; written beside it when a run starts."""

    input_path: str
    input_size: int
    input_sha256: str
    report_format: str = ReportFormat.CSV.value
    command: str = "run"
    created_at: str = ""
    version: int = 1
    # Set when the run ended without being stopped: a retry round that finished is folded
    # into the merged view, and the next retry starts a new round instead of resuming it.
    finished: bool = False
    # For a retry round and a merged view: the source report (the family's first report),
    # pinned by size and hash, the round number and the selection it ran.
    source_path: str = ""
    source_size: int = -1
    source_sha256: str = ""
    round: int = 0
    selection: str = ""

    def source_differs(self, size: int, sha256: str) -> bool:
        return self.source_size != size or self.source_sha256 != sha256

    def input_differs(self, size: int, sha256: str) -> str | None:
        """Why an input no longer matches this report, or None when it does."""
        if self.input_size != size or self.input_sha256 != sha256:
            return (
                f"the input changed since this report was started "
                f"(was {self.input_size} bytes, sha256 {self.input_sha256[:12]}...; "
                f"now {size} bytes, sha256 {sha256[:12]}...)"
            )
        return None


def write_meta(report_path: str | os.PathLike[str], meta: ReportMeta) -> Path:
    path = ReportPaths(Path(report_path)).meta
    _atomic_write(path, json.dumps(asdict(meta), indent=2) + "\n")
    return path


def read_meta(report_path: str | os.PathLike[str]) -> ReportMeta | None:
    """The report's metadata; None when it has no sidecar. A damaged one is an InputError."""
    path = ReportPaths(Path(report_path)).meta
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InputError(str(path), f"cannot read the report's metadata: {error}") from None
    try:
        return ReportMeta(
            input_path=str(data["input_path"]),
            input_size=int(data["input_size"]),
            input_sha256=str(data["input_sha256"]),
            report_format=str(data.get("report_format", ReportFormat.CSV.value)),
            command=str(data.get("command", "run")),
            created_at=str(data.get("created_at", "")),
            version=int(data.get("version", 1)),
            finished=bool(data.get("finished", False)),
            source_path=str(data.get("source_path", "")),
            source_size=int(data.get("source_size", -1)),
            source_sha256=str(data.get("source_sha256", "")),
            round=int(data.get("round", 0)),
            selection=str(data.get("selection", "")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(str(path), f"not a report metadata file: {error}") from None


class StartedJournal(_ClosedOnExit):
    """Append-only record of rows handed to the service (``<report>.started``).

    Written (one ``write``) before the attach request leaves; a resume treats rows started
    but not settled as "in flight when the run died" and reads their link state first.
    """

    __slots__ = ("_fd", "path")

    def __init__(self, path: str | os.PathLike[str], *, append: bool = True) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        if append and self.path.stat().st_size:
            # Cut a torn last line so the next entry starts on a line of its own.
            with open(self.path, "rb") as file:
                data = file.read()
            if not data.endswith(b"\n"):
                os.truncate(self.path, data.rfind(b"\n") + 1)

    def mark(self, line: int, key: Key) -> None:
        if self._fd is None:
            raise ValueError("the journal is closed")
        region, instance, vpc = key
        try:
            os.write(self._fd, f"{line}\t{region}\t{instance}\t{vpc}\n".encode())
        except OSError as error:
            raise ReportWriteError(self.path, error) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_started(path: str | os.PathLike[str]) -> set[Key]:
    """Keys in a started journal; missing file -> empty; torn or odd lines are skipped."""
    keys: set[Key] = set()
    try:
        with open(path, "rb") as file:
            for raw in file:
                if not raw.endswith(b"\n"):
                    break
                parts = raw.decode("utf-8", errors="replace").rstrip("\n").split("\t")
                if len(parts) == 4:
                    keys.add((parts[1], parts[2], parts[3]))
    except FileNotFoundError:
        return keys
    return keys


def set_aside(paths: ReportPaths, tag: str) -> Path | None:
    """``--fresh``: rename the report and its sidecars to ``<stem>.<tag><suffix>`` (the
    lock stays); returns the report's new path (None when there was no report)."""
    report = paths.report
    moved: Path | None = None
    renamed = paths.set_aside_as(tag)
    if report.exists():
        os.replace(report, renamed.report)
        moved = renamed.report
    for side, new in zip(paths.sidecars, renamed.sidecars, strict=True):
        if side.exists():
            os.replace(side, new)
    return moved
