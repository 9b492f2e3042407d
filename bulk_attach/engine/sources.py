"""Where the pool's items come from: a source of rows, split into lanes, minus what is done.

A source is re-iterable (an input file is streamed again on each pass; the rows ``retry``
picked are a tuple). ``lanes`` gives each region its own stream, so a region-sorted input
still runs its regions side by side; ``remaining`` drops what a previous run settled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bulk_attach.core.outcomes import Key, RowResult
from bulk_attach.core.resuming import ResumeState, Step
from bulk_attach.core.rows import Row

if TYPE_CHECKING:  # a value type only: the engine reads no files
    from bulk_attach.files.csv_input import InputFingerprint

__all__ = ["Item", "RowSource", "Rows", "lanes", "remaining"]

Item = Row | RowResult


@runtime_checkable
class Rows(Protocol):
    """What the engine needs of its rows: their regions (one lane each), and to iterate
    them again for each lane."""

    @property
    def regions(self) -> frozenset[str]: ...
    def __iter__(self) -> Iterator[Item]: ...


class RowSource(Rows, Protocol):
    """Rows from a file: a validated input file, or the rows ``retry`` picked from a report."""

    @property
    def extra_columns(self) -> tuple[str, ...]: ...
    @property
    def total(self) -> int: ...
    @property
    def fingerprint(self) -> InputFingerprint: ...
    def __iter__(self) -> Iterator[Item]: ...


def lanes(source: Rows) -> list[Iterable[Item]]:
    """One lane per region; rows rejected as input go to the first lane only.

    Each lane streams the whole source and keeps its region's rows: reading is cheap next
    to the API, and memory stays bounded whatever the input's order.
    """
    regions = sorted(source.regions)
    if len(regions) <= 1:
        return [source]

    def lane(region: str, rejected_too: bool) -> Iterator[Item]:
        for item in source:
            if isinstance(item, RowResult):
                if rejected_too:
                    yield item
            elif item.region_id == region:
                yield item

    return [lane(region, index == 0) for index, region in enumerate(regions)]


def remaining(
    items: Iterable[Item], resume: ResumeState | None, in_doubt: set[Key]
) -> Iterator[Item]:
    """Drop what a previous run already settled; add to ``in_doubt`` the rows it left in
    flight (sent, never settled), which the worker must read back."""
    for item in items:
        if resume is None:
            yield item
        elif isinstance(item, RowResult):
            if not resume.already_reported(item):
                yield item
        else:
            step = resume.step(item.key)
            if step is Step.SETTLED:
                continue
            if step is Step.RECONCILE:
                in_doubt.add(item.key)
            yield item
