"""Read the input CSV as a stream of valid rows and rejected-row results.

Two passes over the file, neither holding the rows:

1. validate the header and every record, and note, for each instance, the first line it is
   validly listed on and its (region, VPC) target (one small int per instance, the targets
   interned), flagging instances listed for two different targets;
2. yield, in file order, a ``Row`` for each record to run, or a ``RowResult`` for each
   record rejected: ``invalid`` (bad or missing value, or an instance listed for two VPCs:
   nothing is sent for any of its rows) or ``duplicate`` (the same instance and VPC as an
   earlier row, which runs).

The first pass also means a file that is not CSV, not UTF-8 or unreadable raises
``InputError`` (exit code 2) before anything is sent. A bulk-attach report is accepted as
input too: its own columns (Status, Message, ...) are neither required nor extras.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.rows import Columns, HeaderError, InputCode, Problem, Row, parse_record
from bulk_attach.errors import InputError
from bulk_attach.files.report import COLUMNS as REPORT_COLUMNS
from bulk_attach.files.report import REPORT_COLUMN_KEYS

__all__ = ["InputFingerprint", "PairsReader", "fingerprint", "read_pairs"]

_CHUNK = 1 << 20
# Instance -> code: (first line << _SHIFT) | target index; negative (~code) when conflicting.
_SHIFT = 32


@dataclass(frozen=True, slots=True)
class InputFingerprint:
    """What pins a report to its input: resume refuses an input that changed."""

    path: str
    size: int
    sha256: str


def fingerprint(path: str | os.PathLike[str]) -> InputFingerprint:
    """Size and SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as error:
        raise InputError(str(path), f"cannot read: {error.strerror or error}") from None
    return InputFingerprint(path=str(Path(path).resolve()), size=size, sha256=digest.hexdigest())


class _Source:
    """The file's records with the line each starts on; decoding and CSV errors located.

    ``check_bytes`` makes one fast binary pass (UTF-8, no NUL bytes); only when it finds a
    problem is the file scanned line by line to name the exact line and column.
    """

    __slots__ = ("display", "path")

    def __init__(self, path: Path, display: str) -> None:
        self.path = path
        self.display = display

    def _open(self, mode: str) -> IO[Any]:
        try:
            if mode == "rb":
                return open(self.path, "rb")
            return open(self.path, encoding="utf-8-sig", newline="")
        except OSError as error:
            raise InputError(self.display, f"cannot read: {error.strerror or error}") from None

    def check_bytes(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            with self._open("rb") as file:
                while chunk := file.read(_CHUNK):
                    if b"\x00" in chunk:
                        self._locate()
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            self._locate()
        except OSError as error:
            raise InputError(self.display, f"cannot read: {error.strerror or error}") from None

    def _locate(self) -> NoReturn:
        """Find the first line with a NUL byte or bytes that are not UTF-8, and raise."""
        with self._open("rb") as file:
            for number, raw in enumerate(file, start=1):
                data = raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw
                if b"\x00" in data:
                    raise InputError(
                        self.display,
                        f"not a CSV file: a NUL byte at column {data.index(0) + 1} (binary data?)",
                        number,
                    )
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as error:
                    column = len(data[: error.start].decode("utf-8", "replace")) + 1
                    raise InputError(
                        self.display,
                        f"not UTF-8 text (byte 0x{data[error.start]:02x} at column {column}); "
                        "save the file as UTF-8",
                        number,
                    ) from None
        raise InputError(self.display, "not UTF-8 text")

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(start line, fields) of every non-blank record."""
        with self._open("r") as file:
            reader = csv.reader(file, strict=False)
            while True:
                start = reader.line_num + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    raise InputError(self.display, f"not a CSV file: {error}", start) from None
                except UnicodeDecodeError:
                    self._locate()  # the file changed since check_bytes
                except OSError as error:
                    raise InputError(
                        self.display, f"cannot read: {error.strerror or error}", start
                    ) from None
                if not fields or (not fields[0].strip() and all(not f.strip() for f in fields)):
                    continue  # blank lines, and lines of only spaces and commas
                yield start, fields


class PairsReader:
    """The rows of one input file: iterate to get ``Row`` or rejected ``RowResult`` items.

    Construction reads the whole file once (header, validation, conflicts) and raises
    ``InputError`` on a file that cannot be used; iteration reads it again and yields.
    """

    __slots__ = (
        "_codes",
        "_conflicts",
        "_header_line",
        "_iterator",
        "_source",
        "_targets",
        "columns",
        "default_region",
        "is_report",
        "path",
        "rejected",
        "total",
    )

    def __init__(self, path: str | os.PathLike[str], default_region: str | None = None) -> None:
        self.path = Path(path)
        self.default_region = default_region or None
        self._source = _Source(self.path, str(path))
        self._targets: list[tuple[str, str]] = []
        self._codes: dict[str, int] = {}
        # Conflicting instance -> (line, target index) of the first row that conflicted.
        self._conflicts: dict[str, tuple[int, int]] = {}
        self._iterator: Iterator[Row | RowResult] | None = None
        self._header_line = 1
        self.is_report = False
        self.total = 0  # non-blank records, header excluded
        self.rejected = 0  # records that will be yielded as invalid or duplicate
        self.columns = self._first_pass()

    @property
    def extra_columns(self) -> tuple[str, ...]:
        return self.columns.extra_names

    @property
    def regions(self) -> frozenset[str]:
        """The regions of the valid rows (each gets its own lane and rate limit)."""
        return frozenset(region for region, _ in self._targets)

    def check(self) -> PairsReader:
        """Nothing more to do: construction already validated the whole file (kept so a
        caller can say "validate first" explicitly); returns the reader for chaining."""
        return self

    def _resolve(self, header: list[str]) -> Columns:
        leading = tuple(h.strip() for h in header[: len(REPORT_COLUMNS)])
        self.is_report = leading == REPORT_COLUMNS
        try:
            return Columns.from_header(
                header,
                region_optional=self.default_region is not None,
                ignore=REPORT_COLUMN_KEYS if self.is_report else (),
            )
        except HeaderError as error:
            raise InputError(
                self._source.display, error.message, self._header_line, error.column
            ) from None

    def _first_pass(self) -> Columns:
        self._source.check_bytes()
        records = self._source.records()
        try:
            self._header_line, header = next(records)
        except StopIteration:
            raise InputError(
                self._source.display,
                "the file is empty: expected a header row (RegionId,InstanceId,VpcId)",
            ) from None
        columns = self._resolve(header)
        target_index: dict[tuple[str, str], int] = {}
        codes = self._codes
        for line, fields in records:
            self.total += 1
            row = parse_record(fields, line, columns, self.default_region)
            if isinstance(row, Problem):
                self.rejected += 1
                continue
            target = (row.region_id, row.vpc_id)
            index = target_index.get(target)
            if index is None:
                index = target_index[target] = len(self._targets)
                self._targets.append(target)
            instance = row.instance_id
            code = codes.get(instance)
            if code is None:
                codes[sys.intern(instance)] = (line << _SHIFT) | index
            else:
                self.rejected += 1
                if code >= 0 and (code & 0xFFFFFFFF) != index:
                    codes[instance] = ~code  # conflicting: every row of it is rejected
                    self._conflicts[instance] = (line, index)
        # Conflicting instances reject their first row too.
        self.rejected += sum(1 for code in codes.values() if code < 0)
        return columns

    def __iter__(self) -> Iterator[Row | RowResult]:
        records = self._source.records()
        next(records, None)  # the header, checked by the first pass
        for line, fields in records:
            item = parse_record(fields, line, self.columns, self.default_region)
            if isinstance(item, Problem):
                yield self._rejected(item)
                continue
            code = self._codes.get(item.instance_id)
            if code is None:  # the file changed between the passes
                yield item
                continue
            conflicting = code < 0
            if conflicting:
                code = ~code
            first_line = code >> _SHIFT
            _, first_vpc = self._targets[code & 0xFFFFFFFF]
            if conflicting:
                if line == first_line:
                    other_line, other_index = self._conflicts[item.instance_id]
                    other = f"{self._targets[other_index][1]} at line {other_line}"
                else:
                    other = f"{first_vpc} at line {first_line}"
                yield self._rejected_row(
                    item,
                    InputCode.CONFLICTING,
                    self.columns.vpc + 1,
                    f"InstanceId {item.instance_id} is listed for more than one VPC "
                    f"(also {other}); none of its rows is sent",
                    Status.INVALID,
                )
            elif line != first_line:
                yield self._rejected_row(
                    item,
                    InputCode.DUPLICATE,
                    self.columns.instance + 1,
                    f"duplicate of line {first_line} ({item.instance_id} -> {first_vpc}); "
                    "not sent twice",
                    Status.DUPLICATE,
                )
            else:
                yield item

    def __next__(self) -> Row | RowResult:
        if self._iterator is None:
            self._iterator = iter(self)
        return next(self._iterator)

    def _rejected(self, problem: Problem) -> RowResult:
        return RowResult(
            line=problem.line,
            region_id=problem.region_id,
            instance_id=problem.instance_id,
            vpc_id=problem.vpc_id,
            status=Status.INVALID,
            error_code=problem.code.value,
            message=problem.located(self._source.display),
            extra=problem.extra,
        )

    def _rejected_row(
        self, row: Row, code: InputCode, column: int, message: str, status: Status
    ) -> RowResult:
        return RowResult(
            line=row.line,
            region_id=row.region_id,
            instance_id=row.instance_id,
            vpc_id=row.vpc_id,
            status=status,
            error_code=code.value,
            message=f"{self._source.display}:{row.line}:{column}: {message}",
            extra=row.extra,
        )

    def __repr__(self) -> str:
        return (
            f"<PairsReader {self._source.display} {self.total} rows, {self.rejected} rejected, "
            f"{len(self._codes)} instances>"
        )


def read_pairs(path: str | os.PathLike[str], default_region: str | None = None) -> PairsReader:
    """Open an input file (raises ``InputError`` if unusable) and iterate its rows."""
    return PairsReader(path, default_region)
