"""What the run knows of each VPC's links: read from the service once, then kept current.

Reading a VPC's links before its first attach gives two things at the cost of at most ten
Describe calls per VPC (1000 links, 100 a page): the link count the quota ledger starts
from, and the instances already linked, which are reported ``already_linked`` and never
sent. That read is what makes a re-run, or a resume after kill -9, safe.

A read that failed (after its own retries) is remembered for the run too: the VPC's other
rows fail at once with the same error instead of each repeating the whole series of
retries against an endpoint that has already said no. A re-run reads the VPC again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from bulk_attach.errors import EcsError

__all__ = ["LinkBook"]

ReadLinks = Callable[[str, str], Awaitable[Iterable[str]]]


class LinkBook:
    __slots__ = ("_check", "_failed", "_linked", "_locks", "_read")

    def __init__(self, read: ReadLinks, *, check: Callable[[], None] | None = None) -> None:
        self._read = read
        # Called, once a caller holds the VPC's lock, before it is given a read or a
        # remembered failure: it may raise to turn the caller away (the run is stopping).
        self._check = check
        self._linked: dict[str, set[str]] = {}
        self._failed: dict[str, EcsError] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, region: str, vpc_id: str) -> None:
        """Read the VPC's links unless already known; concurrent callers share one read.

        Raises the ``EcsError`` of the VPC's failed read, for every caller, every time.
        """
        if vpc_id in self._linked:
            return
        async with self._locks.setdefault(vpc_id, asyncio.Lock()):
            if vpc_id in self._linked:
                return
            if self._check is not None:
                self._check()
            self._raise_if_failed(vpc_id)
            try:
                links = await self._read(region, vpc_id)
            except EcsError as error:
                self._failed[vpc_id] = error
                raise
            self._linked[vpc_id] = set(links)

    def _raise_if_failed(self, vpc_id: str) -> None:
        error = self._failed.get(vpc_id)
        if error is not None:
            # One exception object serves every row: drop the traceback each raise adds.
            raise error.with_traceback(None)

    def is_linked(self, vpc_id: str, instance_id: str) -> bool:
        return instance_id in self._linked.get(vpc_id, ())

    def add(self, vpc_id: str, instance_id: str) -> None:
        self._linked.setdefault(vpc_id, set()).add(instance_id)

    def remove(self, vpc_id: str, instance_id: str) -> None:
        self._linked.get(vpc_id, set()).discard(instance_id)

    def __repr__(self) -> str:
        counts = ", ".join(f"{vpc} {len(ids)}" for vpc, ids in sorted(self._linked.items()))
        failed = ", ".join(f"{vpc} {error.code}" for vpc, error in sorted(self._failed.items()))
        failed = f"; unreadable: {failed}" if failed else ""
        return f"<LinkBook {counts or 'empty'}{failed}>"
