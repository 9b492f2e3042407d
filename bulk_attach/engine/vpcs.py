"""What the run knows of each VPC's links: read from the service once, then kept current.

Reading a VPC's links before its first attach gives two things at the cost of at most ten
Describe calls per VPC (1000 links, 100 a page): the link count the quota ledger starts
from, and the instances already linked, which are reported ``already_linked`` and never
sent. That read is what makes a re-run, or a resume after kill -9, safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

__all__ = ["LinkBook"]

ReadLinks = Callable[[str, str], Awaitable[Iterable[str]]]


class LinkBook:
    __slots__ = ("_linked", "_locks", "_read")

    def __init__(self, read: ReadLinks) -> None:
        self._read = read
        self._linked: dict[str, set[str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, region: str, vpc_id: str) -> None:
        """Read the VPC's links unless already known; concurrent callers share one read."""
        if vpc_id in self._linked:
            return
        lock = self._locks.setdefault(vpc_id, asyncio.Lock())
        async with lock:
            if vpc_id not in self._linked:
                self._linked[vpc_id] = set(await self._read(region, vpc_id))

    def is_linked(self, vpc_id: str, instance_id: str) -> bool:
        return instance_id in self._linked.get(vpc_id, ())

    def add(self, vpc_id: str, instance_id: str) -> None:
        self._linked.setdefault(vpc_id, set()).add(instance_id)

    def __repr__(self) -> str:
        counts = ", ".join(f"{vpc} {len(ids)}" for vpc, ids in sorted(self._linked.items()))
        return f"<LinkBook {counts or 'empty'}>"
