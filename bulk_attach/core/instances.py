"""Where each instance is first listed, and for which target: the input's duplicate check,
in about 24 bytes per instance.

The validating pass notes every valid row's instance; the yielding pass asks, for each row,
whether it is its instance's first row, a repeat (``duplicate``) or one of an instance
listed for two targets (every row of it ``invalid``). A dict of instance IDs did that at
about 180 bytes per instance (the string, the int, the table), 180 MB for a million rows,
held for the whole run. Here an instance is its 128-bit BLAKE2b digest, kept in sorted
``array`` columns and found by bisection; two distinct IDs of a million share a digest with
a probability near 1e-27, far below the SHA-256 the input's bytes are pinned with.

Pure: no I/O; ``add`` in line order, then ``freeze`` once, then ``first``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from hashlib import blake2b
from typing import NamedTuple

__all__ = ["FirstRow", "InstanceIndex"]

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1


def _digest(instance: str) -> int:
    return int.from_bytes(blake2b(instance.encode(), digest_size=16).digest(), "big")


class FirstRow(NamedTuple):
    """An instance's first valid row, its target, and, when the instance is listed for two
    targets, the first row that named another one (its line and target)."""

    line: int
    target: int
    conflict: tuple[int, int] | None


class InstanceIndex:
    """Instance -> its first row, target and conflict, for every instance ``add``-ed."""

    __slots__ = ("_codes", "_conflicts", "_high", "_low", "_pending", "repeats")

    def __init__(self) -> None:
        # While adding: (digest << 64 | line << 32 | target) per row, sorted by ``freeze``.
        self._pending: list[int] | None = []
        self._high = array("Q")  # digest's upper half, sorted
        self._low = array("Q")  # its lower half, same order
        self._codes = array("Q")  # line << 32 | target of the instance's first row
        self._conflicts: dict[int, tuple[int, int]] = {}  # digest -> the conflicting row
        self.repeats = 0  # rows after their instance's first: duplicate or conflicting

    def add(self, instance: str, line: int, target: int) -> None:
        if self._pending is None:
            raise RuntimeError("the index is frozen")
        if not (0 <= line <= _MASK32 and 0 <= target <= _MASK32):
            raise ValueError("a line and a target index must fit in 32 bits")
        self._pending.append((_digest(instance) << 64) | (line << 32) | target)

    def freeze(self) -> None:
        """Sort what was added and keep one entry per instance; ``add`` no more."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        pending.sort()  # by digest, then by line: each instance's rows together, in order
        high, low, codes, conflicts = self._high, self._low, self._codes, self._conflicts
        digest = -1
        first_target = 0
        for packed in pending:
            code = packed & _MASK64
            if packed >> 64 != digest:
                digest = packed >> 64
                first_target = code & _MASK32
                high.append(digest >> 64)
                low.append(digest & _MASK64)
                codes.append(code)
                continue
            self.repeats += 1
            if digest not in conflicts and code & _MASK32 != first_target:
                conflicts[digest] = (code >> 32, code & _MASK32)
        pending.clear()

    @property
    def conflicting(self) -> int:
        """Instances listed for more than one target."""
        return len(self._conflicts)

    def first(self, instance: str) -> FirstRow:
        """The instance's first row (``KeyError`` if it was never added)."""
        digest = _digest(instance)
        high, low = digest >> 64, digest & _MASK64
        column = self._high
        index = bisect_left(column, high)
        while index < len(column) and column[index] == high:
            if self._low[index] == low:
                code = self._codes[index]
                return FirstRow(code >> 32, code & _MASK32, self._conflicts.get(digest))
            index += 1
        raise KeyError(instance)

    def __len__(self) -> int:
        return len(self._high) if self._pending is None else len(self._pending)

    def __repr__(self) -> str:
        state = "frozen" if self._pending is None else "adding"
        return (
            f"<InstanceIndex {len(self)} {state}, {self.repeats} repeats, "
            f"{self.conflicting} conflicting>"
        )
