"""One input row, and the validation of one CSV record into it.

Pure: the caller (``files/csv_input.py``) reads the file and turns a ``Problem`` or a
``HeaderError`` into a report row or an ``InputError``. Column positions are resolved once
from the header (``Columns``), so checking a record is a few index lookups and three
compiled regular expressions: a million rows stay cheap.

Every problem carries the 1-based line and column of the field it is about, so a message
reads ``pairs.csv:12:2: InstanceId 'x-1' is not an instance ID (expected i-...)``.

Two checks guard against rows that would vanish without a word: a header cell that looks
like data (the header is missing, or a lost line break joined it to a row), and a record
whose quoted value runs over several lines (``spanning_problem``): a stray quote swallows
every following line into one field, so only an extra column's text may do that, and only
when none of it looks like a row.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bulk_attach.core.outcomes import Key

__all__ = [
    "INSTANCE_ID",
    "REGION_ID",
    "VPC_ID",
    "Columns",
    "HeaderError",
    "InputCode",
    "Problem",
    "Row",
    "id_like",
    "is_instance_id",
    "is_region_id",
    "is_vpc_id",
    "normalize_column",
    "parse_record",
    "spanning_problem",
]

# Lenient on purpose: real IDs look like ``i-bp1hyp5b...`` but test fleets use ``i-test``.
INSTANCE_ID = re.compile(r"i-[a-z0-9]{2,40}")
VPC_ID = re.compile(r"vpc-[a-z0-9]{1,40}")
# cn-hangzhou, ap-southeast-1, us-west-1, eu-central-1, cn-hongkong, me-east-1, cn-beijing-finance-1
REGION_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+){1,3}")


def is_instance_id(value: str) -> bool:
    return INSTANCE_ID.fullmatch(value) is not None


def is_vpc_id(value: str) -> bool:
    return VPC_ID.fullmatch(value) is not None


def is_region_id(value: str) -> bool:
    return REGION_ID.fullmatch(value) is not None and len(value) <= 40


# Where text that should hold no data (a header cell, a note that runs over lines) is
# searched for IDs, regions are recognized by Alibaba Cloud's prefixes (cn-hangzhou,
# ap-southeast-1, us-east-1, eu-central-1, me-east-1, na-south-1, ...): REGION_ID is lenient
# and would take a note such as "web-tier-30" or a column named "cost-center" for a region.
_REGION_LIKE = re.compile(r"(?:cn|ap|us|eu|me|na|sa|af|rus)-[a-z]+(?:-[a-z0-9]+){0,2}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def id_like(text: str) -> tuple[str, str] | None:
    """The first word of ``text`` that looks like an ID, with its kind, or None.

    Words are runs of letters, digits, ``-`` and ``_``, so ``"i-abc`` and ``(vpc-a)`` count.
    """
    for token in _TOKEN.findall(text):
        if INSTANCE_ID.fullmatch(token):
            return token, "an instance ID"
        if VPC_ID.fullmatch(token):
            return token, "a VPC ID"
        if _REGION_LIKE.fullmatch(token):
            return token, "a region ID"
    return None


@dataclass(frozen=True, slots=True)
class Row:
    """A valid input row: what to link, and the line it came from."""

    line: int
    region_id: str
    instance_id: str
    vpc_id: str
    # Extra columns, carried untouched into the report: ((name, value), ...).
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> Key:
        return (self.region_id, self.instance_id, self.vpc_id)


class InputCode(StrEnum):
    """The report's ``ErrorCode`` for rows rejected before anything is sent."""

    MISSING_VALUE = "Input.MissingValue"
    MALFORMED_ID = "Input.MalformedId"
    MALFORMED_ROW = "Input.MalformedRow"  # more fields than the header has
    CONFLICTING = "Input.ConflictingVpc"  # the same instance listed for two VPCs
    DUPLICATE = "Input.Duplicate"  # the same instance and VPC as an earlier row


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a record was rejected, located at the first offending field."""

    line: int
    column: int
    code: InputCode
    message: str
    # What could be read of the row, so the report row still names it.
    region_id: str = ""
    instance_id: str = ""
    vpc_id: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def located(self, source: str) -> str:
        """``source:line:column: message``, as compilers print it."""
        return f"{source}:{self.line}:{self.column}: {self.message}"


class HeaderError(ValueError):
    """The header lacks a required column or names one twice (``column`` is 1-based)."""

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.column = column


def normalize_column(name: str) -> str:
    """``RegionId``, ``region_id``, `` REGION-ID `` all become ``regionid``."""
    return name.strip().lstrip("\ufeff").lower().replace("_", "").replace("-", "")


_REQUIRED = {"regionid": "RegionId", "instanceid": "InstanceId", "vpcid": "VpcId"}


@dataclass(frozen=True, slots=True)
class Columns:
    """Where the required fields sit in each record (0-based), resolved once from the header."""

    region: int | None
    instance: int
    vpc: int
    width: int
    # (index, name) of every column carried as an extra.
    extras: tuple[tuple[int, str], ...] = ()

    @property
    def extra_names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.extras)

    @classmethod
    def from_header(
        cls,
        header: Sequence[str],
        *,
        region_optional: bool,
        ignore: Collection[str] = (),
    ) -> Columns:
        """Resolve the header. ``ignore`` lists normalized names that are neither required
        nor extras (the report's own columns when a report is read back as input)."""
        found: dict[str, int] = {}
        extras: list[tuple[int, str]] = []
        seen_extra: set[str] = set()
        # Spreadsheets save empty trailing columns as trailing delimiters: not columns.
        width = len(header)
        while width > 1 and not header[width - 1].strip():
            width -= 1
        header = header[:width]
        for index, raw in enumerate(header):
            norm = normalize_column(raw)
            if norm not in _REQUIRED and (data := id_like(raw)) is not None:
                # Read on, and the rows below would be taken as a header and lost, or this
                # row as column names: refuse the file instead.
                token, kind = data
                raise HeaderError(
                    f"the header's column {index + 1} holds {token!r}, which looks like "
                    f"{kind}, not a column name: is the header row missing, or joined to a "
                    "data row by a lost line break? (rename a column whose name looks like an ID)",
                    index + 1,
                )
            if norm in _REQUIRED:
                if norm in found:
                    raise HeaderError(
                        f"column {_REQUIRED[norm]} appears twice "
                        f"(columns {found[norm] + 1} and {index + 1})",
                        index + 1,
                    )
                found[norm] = index
            elif norm in ignore:
                continue
            else:
                name = raw.strip().lstrip("\ufeff")
                if not name:
                    raise HeaderError(f"column {index + 1} has no name", index + 1)
                if name in seen_extra:
                    raise HeaderError(f"column {name!r} appears twice", index + 1)
                seen_extra.add(name)
                extras.append((index, sys.intern(name)))
        needed = ["instanceid", "vpcid"] + ([] if region_optional else ["regionid"])
        missing = [
            _REQUIRED[n]
            for n in ("regionid", "instanceid", "vpcid")
            if n in needed and n not in found
        ]
        if missing:
            shown = ", ".join(h.strip() for h in header[:6]) + (", ..." if len(header) > 6 else "")
            hint = " (or give a default region with --region)" if "RegionId" in missing else ""
            raise HeaderError(
                f"missing required column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)}{hint}; the header has: {shown or '(nothing)'}"
            )
        return cls(
            region=found.get("regionid"),
            instance=found["instanceid"],
            vpc=found["vpcid"],
            width=width,
            extras=tuple(extras),
        )


def _has_line_break(value: str) -> bool:
    return "\n" in value or "\r" in value


def spanning_problem(
    fields: Sequence[str], columns: Columns, default_region: str | None = None
) -> tuple[int, str] | None:
    """Why a record that runs over several lines cannot be trusted, or None if it can.

    Only a quoted value holds a line break, and a stray quote makes one value of every line
    that follows it, up to the next quote: those rows would never run and be in no report.
    The fields after that value come from a later line, and may be a swallowed row's. So a
    record over lines is trusted only when every value with a line break is in an extra
    column (a note), no extra value of it looks like an ID (then it holds rows), it has no
    more fields than the header, and it is a valid row: its IDs are then its own.
    Returns (1-based column of the first multi-line value, i.e. where the quote opened, why).
    """
    spanning = [index for index, value in enumerate(fields) if _has_line_break(value)]
    if not spanning:
        return None
    column = spanning[0] + 1
    extras = dict(columns.extras)
    names = {columns.instance: "InstanceId", columns.vpc: "VpcId"}
    if columns.region is not None:
        names[columns.region] = "RegionId"
    for index in spanning:
        if index not in extras:
            name = names.get(index, f"column {index + 1}, beyond the header's {columns.width},")
            return column, f"the {name} value runs over several lines"
    if len(fields) > columns.width:
        return column, f"the record has {len(fields)} fields but the header has {columns.width}"
    for index, name in columns.extras:
        if index < len(fields) and (data := id_like(fields[index])) is not None:
            token, kind = data
            return column, f"its {name} value holds {token!r}, which looks like {kind}"
    parsed = parse_record(fields, 0, columns, default_region)
    if isinstance(parsed, Problem):
        return column, f"it is not a valid row ({parsed.message})"
    return None


def _blank_after(fields: Sequence[str], width: int) -> bool:
    """More fields than columns, all of them empty: Excel's trailing delimiters."""
    return len(fields) > width and not any(value.strip() for value in fields[width:])


def _field(fields: Sequence[str], index: int) -> str | None:
    return fields[index].strip() if index < len(fields) else None


_match_instance = INSTANCE_ID.fullmatch
_match_vpc = VPC_ID.fullmatch
_match_region = REGION_ID.fullmatch


def parse_record(
    fields: Sequence[str],
    line: int,
    columns: Columns,
    default_region: str | None = None,
) -> Row | Problem:
    """Check one record: IDs well formed, nothing missing. ``line`` is where it starts."""
    # The fast path: a well-formed record costs three regex matches and one Row.
    if len(fields) == columns.width or _blank_after(fields, columns.width):
        instance = fields[columns.instance].strip()
        vpc = fields[columns.vpc].strip()
        region = fields[columns.region].strip() if columns.region is not None else ""
        region = region or default_region or ""
        if (
            _match_instance(instance)
            and _match_vpc(vpc)
            and _match_region(region)
            and len(region) <= 40
        ):
            extra = tuple((name, fields[i]) for i, name in columns.extras) if columns.extras else ()
            return Row(line, sys.intern(region), instance, sys.intern(vpc), extra)
    return _examine(fields, line, columns, default_region)


_VALID: dict[str, Callable[[str], bool]] = {
    "RegionId": is_region_id,
    "InstanceId": is_instance_id,
    "VpcId": is_vpc_id,
}


def _check_id(
    problems: list[tuple[int, InputCode, str]],
    value: str,
    column: int,
    name: str,
    *,
    noun: str,
    example: str,
) -> None:
    """Note a missing or malformed ID (``name`` is the column: RegionId, InstanceId, VpcId)."""
    if not value:
        problems.append((column, InputCode.MISSING_VALUE, f"{name} is empty"))
    elif not _VALID[name](value):
        problems.append(
            (column, InputCode.MALFORMED_ID, f"{name} {value!r} is not {noun} (expected {example})")
        )


def _examine(
    fields: Sequence[str],
    line: int,
    columns: Columns,
    default_region: str | None,
) -> Row | Problem:
    """The slow path: find every problem of a record, first column first."""
    problems: list[tuple[int, InputCode, str]] = []

    if columns.region is None:
        region = default_region or ""
    else:
        value = _field(fields, columns.region)
        region = value or default_region or ""
        if not region:
            problems.append(
                (
                    columns.region + 1,
                    InputCode.MISSING_VALUE,
                    "RegionId is empty and no default region is given",
                )
            )
    if region:
        region_column = (columns.region + 1) if columns.region is not None else 1
        _check_id(
            problems,
            region,
            region_column,
            "RegionId",
            noun="a region ID",
            example="e.g. cn-hangzhou",
        )
    instance = _field(fields, columns.instance) or ""
    _check_id(
        problems,
        instance,
        columns.instance + 1,
        "InstanceId",
        noun="an instance ID",
        example="i-...",
    )
    vpc = _field(fields, columns.vpc) or ""
    _check_id(problems, vpc, columns.vpc + 1, "VpcId", noun="a VPC ID", example="vpc-...")

    if len(fields) > columns.width and not _blank_after(fields, columns.width):
        problems.append(
            (
                columns.width + 1,
                InputCode.MALFORMED_ROW,
                f"the row has {len(fields)} fields but the header has {columns.width}",
            )
        )

    extra = tuple(
        (name, fields[index] if index < len(fields) else "") for index, name in columns.extras
    )
    if problems:
        problems.sort(key=lambda p: p[0])
        column, code, _ = problems[0]
        return Problem(
            line=line,
            column=column,
            code=code,
            message="; ".join(message for _, _, message in problems),
            region_id=region,
            instance_id=instance,
            vpc_id=vpc,
            extra=extra,
        )
    return Row(
        line=line,
        region_id=sys.intern(region),
        instance_id=instance,
        vpc_id=sys.intern(vpc),
        extra=extra,
    )
