"""Read the input CSV as a stream of valid rows and rejected-row results.

Two passes over the file, neither holding the rows:

1. validate the header and every record, and note, for each instance, the first line it is
   validly listed on and its (region, VPC) target (``core/instances.py``: about 24 bytes
   per instance, the targets interned), flagging instances listed for two different targets;
2. yield, in file order, a ``Row`` for each record to run, or a ``RowResult`` for each
   record rejected: ``invalid`` (bad or missing value, or an instance listed for two VPCs:
   nothing is sent for any of its rows) or ``duplicate`` (the same instance and VPC as an
   earlier row, which runs).

The first pass also means a file that is not CSV, not UTF-8 or unreadable raises
``InputError`` (exit code 2) before anything is sent. So does a file in which a row could
vanish unreported: a quote never closed (the CSV reader would return the rest of the file as
one value), a quoted value over several lines that is not an extra column's plain text (see
``spanning_problem``), or a header that holds data. A bulk-attach report is accepted as
input too: its own columns (Status, Message, ...) are neither required nor extras.

Both passes read one open file, and the second reads exactly the bytes the first validated
(same length, same digest block by block), so a row appended or changed during the run is
never sent unvalidated; ``PairsReader.fingerprint`` is the size and SHA-256 of those bytes.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import logging
import os
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from bulk_attach.core.instances import InstanceIndex
from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.rows import (
    Columns,
    HeaderError,
    InputCode,
    Problem,
    Row,
    normalize_column,
    parse_record,
    spanning_problem,
)
from bulk_attach.errors import InputError
from bulk_attach.files.report import COLUMNS as REPORT_COLUMNS
from bulk_attach.files.report import REPORT_COLUMN_KEYS

__all__ = ["DELIMITERS", "InputFingerprint", "PairsReader", "fingerprint", "read_pairs"]

log = logging.getLogger("bulk_attach.input")

_CHUNK = 1 << 20
_END = "\x00"


# Excel's first line naming the separator ("sep=;"), quoted by some writers.
_SEP_LINE = re.compile(r'"?sep=([^"\r\n])"?')
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Tried in this order; the first that splits the header into the most known columns wins.
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_KNOWN = {"regionid", "instanceid", "vpcid"}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: its mark begins the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _encoding_of(start: bytes, option: str | None) -> tuple[str, str]:
    """The codec to read a file with, and why: its byte-order mark, else ``--encoding``,
    else UTF-8 (a mark says what the bytes are; an option cannot make them something else)."""
    for mark, codec in _BOMS:
        if start.startswith(mark):
            return codec, "byte-order mark"
    if option is not None:
        return option, "--encoding"
    return "utf-8-sig", "default"


def _blank(line: str) -> bool:
    return not line.strip(" \t\r\n,;|")


def _delimiter_of(header: str) -> tuple[str, str]:
    """The delimiter that splits ``header`` into the most required column names."""
    best, found = ",", 0
    for delimiter in DELIMITERS:
        try:
            cells = next(csv.reader([header], delimiter=delimiter, strict=False), [])
        except csv.Error:
            continue
        known = len({normalize_column(cell) for cell in cells} & _KNOWN)
        if known > found:
            best, found = delimiter, known
    return best, "the header" if found else "default"


def _no_nul(lines: Iterator[str]) -> Iterator[str]:
    """Lines of a UTF-16 or UTF-32 file, refusing a NUL character (not text)."""
    for line in lines:
        if "\x00" in line:
            raise _BadBytes
        yield line


def _name(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    names = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}
    return names.get(name, name)


def _encoding_hint(encoding: str) -> str:
    if codecs.lookup(encoding).name == "utf-8":
        return (
            "pass the file's encoding with --encoding (Excel's plain CSV is in the system's "
            "code page: e.g. --encoding gbk on Chinese Windows, cp1252 on Western European "
            "Windows), or save the file as UTF-8"
        )
    return "check --encoding, or save the file as UTF-8"


def _nul_hint(line: bytes) -> str:
    """Why a line may hold NUL bytes: UTF-16 without its mark, or not text at all."""
    if len(line) >= 4 and line[1::2].count(0) * 2 >= len(line) // 2:
        return "UTF-16 without a byte-order mark? pass --encoding utf-16-le"
    if len(line) >= 4 and line[0::2].count(0) * 2 >= len(line) // 2:
        return "UTF-16 without a byte-order mark? pass --encoding utf-16-be"
    return "binary data?"


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


class _Changed(Exception):
    """The file no longer holds the bytes the first pass validated (raised mid-read)."""


class _BadBytes(Exception):
    """A NUL byte: not text (the first pass then locates it)."""


@dataclass(frozen=True, slots=True)
class _Validated:
    """What the first pass read: its size and hash, and one digest per block."""

    size: int
    sha256: str
    blocks: tuple[bytes, ...]


class _Blocks(io.RawIOBase):
    """The source's bytes from the start, served block by block through its own offset.

    Recording (the first pass): each block is hashed, and NUL bytes refused; at the end the
    source keeps what was read as ``_Validated``. Verifying (later passes): not a byte past
    the validated length is read, and each block must match its digest before any of it is
    handed on. Each pass has its own ``_Blocks``, so lanes iterating the same reader side by
    side do not disturb each other.
    """

    def __init__(
        self, source: _Source, verify: _Validated | None = None, *, record: bool = False
    ) -> None:
        super().__init__()
        self._source = source
        self._verify = verify
        self._recording = record
        self._index = 0
        self._block = memoryview(b"")
        self._digest = hashlib.sha256()
        self._digests: list[bytes] = []
        self._size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._block:
            self._block = memoryview(self._next_block())
            if not self._block:
                return 0
        count = min(len(buffer), len(self._block))
        buffer[:count] = self._block[:count]
        self._block = self._block[count:]
        return count

    def _next_block(self) -> bytes:
        index, verify = self._index, self._verify
        if verify is not None:
            if index >= len(verify.blocks):
                return b""  # the validated length: rows appended since are not read
            block = self._source.read_block(index, verify.size - index * _CHUNK)
            if hashlib.sha256(block).digest() != verify.blocks[index]:
                raise _Changed
        else:
            block = self._source.read_block(index)
            if self._recording:
                self._record(block)
        self._index += 1
        return block

    def _record(self, block: bytes) -> None:
        if not block:  # the end: exactly what later passes will read again
            self._source.validated = _Validated(
                self._size, self._digest.hexdigest(), tuple(self._digests)
            )
            return
        if not self._source.wide and b"\x00" in block:
            raise _BadBytes  # the CSV reader would take it as text (UTF-16 checks characters)
        self._digest.update(block)
        self._digests.append(hashlib.sha256(block).digest())
        self._size += len(block)


class _Source:
    """The input file, opened once and read only through that one open file.

    Both passes read the same open file, so a file replaced by another (an editor saving by
    rename) is not seen; the second pass stops at the length the first pass read, so rows
    appended meanwhile are not run; and each of its blocks must hash as it did in the first
    pass, so a file rewritten in place stops the run (``InputError``) before any changed byte
    is used. Memory stays bounded: one 32-byte digest per MiB, never the rows.
    """

    __slots__ = (
        "__weakref__",
        "_file",
        "delimiter",
        "delimiter_origin",
        "display",
        "encoding",
        "encoding_origin",
        "path",
        "validated",
        "wide",
    )

    def __init__(
        self, path: Path, display: str, encoding: str | None = None, delimiter: str | None = None
    ) -> None:
        self.path = path
        self.display = display
        self.validated: _Validated | None = None
        try:
            self._file = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by the finalizer)
        except OSError as error:
            raise InputError(display, f"cannot read: {error.strerror or error}") from None
        # Closed when the source (the reader, and every iterator of it) is gone.
        weakref.finalize(self, self._file.close)
        self.encoding, self.encoding_origin = _encoding_of(self.read_block(0, 4), encoding)
        # UTF-16 and UTF-32 hold NUL bytes in every ASCII character: checked as characters.
        self.wide = codecs.lookup(self.encoding).name.startswith(("utf-16", "utf-32"))
        # Decided by the first pass (from a ``sep=`` line or the header), kept for the next.
        self.delimiter = delimiter
        self.delimiter_origin = "--delimiter" if delimiter is not None else ""

    def read_block(self, index: int, limit: int = _CHUNK) -> bytes:
        """Block ``index`` (``_CHUNK`` bytes, fewer at the end of the file, or at most
        ``limit``)."""
        try:
            self._file.seek(index * _CHUNK)
            parts: list[bytes] = []
            wanted = min(_CHUNK, limit)
            while wanted and (data := self._file.read(wanted)):
                parts.append(data)
                wanted -= len(data)
        except OSError as error:
            raise InputError(self.display, f"cannot read: {error.strerror or error}") from None
        return b"".join(parts)

    def _locate(self) -> NoReturn:
        """Find the first line with a NUL byte or bytes not in the encoding, and raise."""
        if self.wide:
            self._locate_wide()
        encoding = "utf-8" if self.encoding == "utf-8-sig" else self.encoding
        # latin-1 maps bytes to characters one to one: lines split as the CSV reader splits
        # them (\n, \r\n or \r), and each line's bytes come back unchanged.
        raw = io.BufferedReader(_Blocks(self), _CHUNK)
        lines = io.TextIOWrapper(raw, encoding="latin-1", newline="")
        for number, text in enumerate(lines, start=1):
            data = text.encode("latin-1")
            if number == 1 and data.startswith(codecs.BOM_UTF8):
                data = data[3:]
            if b"\x00" in data:
                raise InputError(
                    self.display,
                    f"not a CSV file: a NUL byte at column {data.index(0) + 1} ({_nul_hint(data)})",
                    number,
                )
            try:
                data.decode(encoding)
            except UnicodeDecodeError as error:
                column = len(data[: error.start].decode(encoding, "replace")) + 1
                raise InputError(
                    self.display,
                    f"not {_name(encoding)} text (byte 0x{data[error.start]:02x} at column "
                    f"{column}); {_encoding_hint(encoding)}",
                    number,
                ) from None
        raise InputError(self.display, f"not {_name(encoding)} text")

    def _locate_wide(self) -> NoReturn:
        """UTF-16 or UTF-32: the first line holding an undecodable unit or a NUL character."""
        decoder = codecs.getincrementaldecoder(self.encoding)("replace")
        raw = io.BufferedReader(_Blocks(self), _CHUNK)
        number, after_cr = 1, False
        while True:
            data = raw.read(_CHUNK)
            text = decoder.decode(data, final=not data)
            bad = min((i for i in (text.find("\ufffd"), text.find("\x00")) if i >= 0), default=-1)
            seen = text if bad < 0 else text[:bad]
            breaks = _LINE_BREAK.findall(seen)
            if after_cr and seen.startswith("\n"):
                number -= 1  # a \r\n split between two reads
            number += len(breaks)
            after_cr = seen.endswith("\r")
            if bad >= 0:
                what = "a NUL character" if text[bad] == "\x00" else "bytes that are not"
                raise InputError(
                    self.display,
                    f"not {_name(self.encoding)} text: {what}"
                    f"{'' if text[bad] == chr(0) else ' ' + _name(self.encoding)} on this line; "
                    f"{_encoding_hint(self.encoding)}",
                    number,
                )
            if not data:
                raise InputError(self.display, f"not {_name(self.encoding)} text")

    def _dialect(self, lines: Iterator[str]) -> tuple[Iterator[str], int]:
        """Skip Excel's ``sep=;`` first line, and (first pass) settle the delimiter: the
        option, else that line's, else the one that splits the header into known columns.
        Returns the lines from the first record on, and how many were skipped (0 or 1)."""
        first = next(lines, "")
        sep = _SEP_LINE.fullmatch(first.rstrip("\r\n").lstrip("\ufeff"))
        if sep is not None:
            if self.delimiter is None:
                self.delimiter, self.delimiter_origin = sep[1], "the file's sep= line"
            return lines, 1
        head = [first] if first else []
        if self.delimiter is None:
            header = first
            while _blank(header) and (header := next(lines, "")):
                head.append(header)
            self.delimiter, self.delimiter_origin = _delimiter_of(header)
        return itertools.chain(head, lines), 0

    def records(self) -> Iterator[tuple[int, int, list[str]]]:
        """(first line, last line, fields) of every non-blank record.

        The first call reads the file to its end and records what it read; later calls read
        exactly those bytes again, or raise ``InputError`` if the file no longer holds them.
        A quote still open at the end of the file raises ``InputError``: the reader would
        otherwise return everything after it as one value, silently.
        """
        raw = io.BufferedReader(
            _Blocks(self, self.validated, record=self.validated is None), _CHUNK
        )
        text = io.TextIOWrapper(raw, encoding=self.encoding, newline="")
        end = 0  # the last line of the previous record
        try:
            lines, skipped = self._dialect(_no_nul(text) if self.wide else text)
            # _END can be in no validated file (NUL bytes are refused): after the last line it
            # is a record of its own, unless a quote is still open and it ends that quote's
            # value (the line break it carries stays in a quoted value: that tells them apart).
            reader = csv.reader(
                itertools.chain(lines, (_END + "\n",)),
                delimiter=self.delimiter or ",",
                strict=False,
            )
            end = skipped  # a ``sep=`` line is no record; lines are numbered as in the file
            for fields in reader:
                start, end = end + 1, reader.line_num + skipped
                if not fields:
                    continue  # a blank line
                if end > start and fields[-1].endswith(_END + "\n"):
                    # The open quote's value is the last field: it runs to the end of the file.
                    swallowed = (
                        f"lines {start} to {end - 1} (the end of the file) would be read as "
                        "one value"
                        if end - 1 > start
                        else "it runs to the end of the file"
                    )
                    raise InputError(
                        self.display,
                        f"a quote opened in column {len(fields)} is never closed: {swallowed}. "
                        "Nothing was sent: remove the stray quote, or close it",
                        start,
                        len(fields),
                    )
                first = fields[0]
                if not first.strip() and all(not f.strip() for f in fields):
                    continue  # lines of only spaces and commas
                if first == _END and len(fields) == 1:
                    return
                yield start, end, fields
        except csv.Error as error:
            hint = ": a quote that is never closed?" if "field limit" in str(error) else ""
            raise InputError(self.display, f"not a CSV file: {error}{hint}", end + 1) from None
        except (UnicodeDecodeError, _BadBytes):
            self._locate()
        except _Changed:
            raise InputError(
                self.display,
                "the file changed since it was validated: the run stops here, before any "
                "changed byte is used; run again on the file as it is now",
                end + 1,
            ) from None


class PairsReader:
    """The rows of one input file: iterate to get ``Row`` or rejected ``RowResult`` items.

    Construction reads the whole file once (header, validation, conflicts) and raises
    ``InputError`` on a file that cannot be used; iteration reads it again and yields.
    """

    __slots__ = (
        "_header_line",
        "_instances",
        "_iterator",
        "_source",
        "_targets",
        "columns",
        "default_region",
        "fingerprint",
        "is_report",
        "path",
        "rejected",
        "total",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        default_region: str | None = None,
        *,
        encoding: str | None = None,
        delimiter: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.default_region = default_region or None
        self._source = _Source(self.path, str(path), encoding, delimiter)
        self._targets: list[tuple[str, str]] = []
        # Instance -> its first valid row and target index, and the first row that named
        # another target (a conflict), if any.
        self._instances = InstanceIndex()
        self._iterator: Iterator[Row | RowResult] | None = None
        self._header_line = 1
        self.is_report = False
        self.total = 0  # non-blank records, header excluded
        self.rejected = 0  # records that will be yielded as invalid or duplicate
        self.columns = self._first_pass()
        log.debug("%s: %s", self._source.display, self.dialect)  # also in the start event
        validated = self._source.validated
        if validated is None:  # the first pass reads to the end: a bug if not
            raise RuntimeError(f"{path}: the first pass stopped before the end")
        # Exactly the bytes validated, and the only ones iteration will read: what pins a
        # report to this input (no need to read the file a third time to hash it).
        self.fingerprint = InputFingerprint(
            path=str(self.path.resolve()), size=validated.size, sha256=validated.sha256
        )

    @property
    def delimiter(self) -> str:
        return self._source.delimiter or ","

    @property
    def encoding(self) -> str:
        """The codec the file is read with (``utf-8-sig``: UTF-8, with or without a mark)."""
        return self._source.encoding

    @property
    def dialect(self) -> str:
        """How the file was read, for the log: ``tab-separated (from the header), UTF-16
        (byte-order mark)``."""
        source = self._source
        sep = f"{DELIMITERS.get(self.delimiter, repr(self.delimiter))}-separated"
        if source.delimiter_origin not in ("", "default"):
            sep += f" (from {source.delimiter_origin})"
        enc = _name(source.encoding)
        if source.encoding_origin != "default":
            enc += f" ({source.encoding_origin})"
        return f"{sep}, {enc}"

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
        records = self._source.records()
        try:
            self._header_line, end, header = next(records)
        except StopIteration:
            raise InputError(
                self._source.display,
                "the file is empty: expected a header row (RegionId,InstanceId,VpcId)",
            ) from None
        if end > self._header_line:
            column = next(i for i, cell in enumerate(header) if "\n" in cell or "\r" in cell)
            raise InputError(
                self._source.display,
                f"a quote in the header row runs over lines {self._header_line} to {end}: "
                "remove the stray quote, or close it",
                self._header_line,
                column + 1,
            )
        columns = self._resolve(header)
        target_index: dict[tuple[str, str], int] = {}
        instances = self._instances
        display, default, spanning = self._source.display, self.default_region, spanning_problem
        for line, end, fields in records:
            if end > line and (problem := spanning(fields, columns, default)) is not None:
                column, why = problem
                raise InputError(
                    display,
                    f"a quote opened in column {column} makes one record of lines {line} to "
                    f"{end}, and {why}: a stray quote? Only a valid row whose extra column's "
                    "text runs over lines, with nothing like an ID in it, may do that. Nothing "
                    "was sent: remove the stray quote, or close it",
                    line,
                    column,
                )
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
            instances.add(row.instance_id, line, index)
        instances.freeze()
        # Repeated rows are rejected (duplicate, or conflicting), and so is the first row of
        # a conflicting instance.
        self.rejected += instances.repeats + instances.conflicting
        if self.total == 0:
            # A scheduled job fed an empty export must not look like a job well done.
            raise InputError(
                display,
                f"no rows: the file has a header (line {self._header_line}) and nothing "
                "below it; nothing was sent",
                self._header_line,
            )
        return columns

    def __iter__(self) -> Iterator[Row | RowResult]:
        # The same bytes as the first pass (or InputError): every record was checked there.
        records = self._source.records()
        next(records, None)  # the header, checked by the first pass
        for line, _, fields in records:
            item = parse_record(fields, line, self.columns, self.default_region)
            if isinstance(item, Problem):
                yield self._rejected(item)
                continue
            first_line, first_target, conflict = self._instances.first(item.instance_id)
            _, first_vpc = self._targets[first_target]
            if conflict is not None:
                if line == first_line:
                    other_line, other_index = conflict
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
            f"{len(self._instances)} instances>"
        )


def read_pairs(
    path: str | os.PathLike[str],
    default_region: str | None = None,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> PairsReader:
    """Open an input file (raises ``InputError`` if unusable) and iterate its rows.

    ``encoding``: for a file without a byte-order mark (default UTF-8); ``delimiter``: else
    taken from an Excel ``sep=`` first line, or from the header."""
    return PairsReader(path, default_region, encoding=encoding, delimiter=delimiter)
