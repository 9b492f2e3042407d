"""Read-only lookups as caches that coalesce concurrent requests into batched calls.

=================  ================================  ===================================
lookup             call                              batching
=================  ================================  ===================================
``Instances``      DescribeInstances                 up to 100 IDs a call, per region
``VpcAttributes``  DescribeVpcAttribute              one call per VPC, callers share it
``VpcLinks``       DescribeClassicLinkInstances      one read per VPC (the client pages)
``InstanceLinks``  DescribeClassicLinkInstances      up to 100 IDs a call, per region
=================  ================================  ===================================

``get(region, key)`` awaits the answer; ``request(region, key)`` registers the need and
returns the shared future at once. A batched lookup sends a region's queue when 100 IDs
are waiting, or ``window`` seconds after the first one arrived; inside ``hold()`` nothing
partial leaves until the hold ends, so a caller that knows all its IDs up front (``plan``,
``verify``) gets full batches whatever the pace of the rate gate. Answers, absent items
and failures are all remembered: each key is asked once.

Every call goes through ``ReadOnly`` (the run's retries for reads) and through the client's
gate. ``CountingGate`` wraps the run's ``RateGate`` and counts every request as it leaves,
per action, and for the lookup that made it (``calls``): pages and retries included.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, Protocol, TypeVar

from bulk_attach.api.client import MAX_IDS_PER_CALL, InstanceInfo, Link, RequestGate, VpcInfo
from bulk_attach.engine.reads import ReadOnly
from bulk_attach.errors import EcsError

__all__ = [
    "VPC_NOT_FOUND_CODES",
    "CountingGate",
    "InstanceLinks",
    "Instances",
    "Lookups",
    "ReadApi",
    "VpcAttributes",
    "VpcLinks",
]

V = TypeVar("V")

# DescribeVpcAttribute's answers for a VPC it cannot see (unknown, another account's, or in
# another region). The facts leave the code unconfirmed: the emulator and the current doc
# answer the first; public tooling also treats the other two as "not found".
VPC_NOT_FOUND_CODES = frozenset(
    {"InvalidVpcId.NotFound", "InvalidVpcID.NotFound", "Forbidden.VpcNotFound"}
)

DEFAULT_WINDOW = 0.002  # seconds a partial batch waits for company


class ReadApi(Protocol):
    """The slice of ``EcsClient`` the lookups use (a fake can stand in for it)."""

    async def describe_instances(
        self, region: str, instance_ids: Sequence[str]
    ) -> Sequence[InstanceInfo]: ...

    async def describe_vpc_attribute(self, region: str, vpc_id: str) -> VpcInfo: ...

    async def describe_classic_link_instances(
        self, region: str, *, vpc_id: str | None = None, instance_ids: Sequence[str] = ()
    ) -> Sequence[Link]: ...


# The counter of the lookup whose call is running in this task (see ``CountingGate``).
_TALLY: ContextVar[Counter[str] | None] = ContextVar("bulk_attach_tally", default=None)


class CountingGate:
    """A ``RequestGate`` that counts each request by action, then passes the inner gate."""

    __slots__ = ("_inner", "total")

    def __init__(self, inner: RequestGate | None = None) -> None:
        self._inner = inner
        self.total: Counter[str] = Counter()

    async def __call__(self, region: str, action: str) -> None:
        if self._inner is not None:
            await self._inner(region, action)
        self.total[action] += 1
        tally = _TALLY.get()
        if tally is not None:
            tally[action] += 1

    def __repr__(self) -> str:
        calls = ", ".join(f"{action} {n}" for action, n in sorted(self.total.items()))
        return f"<CountingGate {calls or 'no calls'}>"


def _retrieved(future: asyncio.Future[V]) -> None:
    """Mark a failed future's exception as seen: a remembered failure is not a lost one."""
    if not future.cancelled():
        future.exception()


class _Lookup(Generic[V]):
    """Futures per (region, key), the tasks that fill them, and the calls they made."""

    __slots__ = ("_futures", "_reads", "_tasks", "calls")

    def __init__(self, reads: ReadOnly) -> None:
        self._reads = reads
        self._futures: dict[tuple[str, str], asyncio.Future[V]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls: Counter[str] = Counter()

    async def get(self, region: str, key: str) -> V:
        # Shielded: a caller that gives up must not cancel the answer others wait for.
        return await asyncio.shield(self.request(region, key))

    def request(self, region: str, key: str) -> asyncio.Future[V]:
        raise NotImplementedError

    async def settled(self) -> None:
        """Wait until every future requested so far is done (answered, failed or cancelled)."""
        while True:
            pending = [f for f in self._futures.values() if not f.done()]
            if not pending:
                return
            await asyncio.wait(pending)

    def answers(self) -> Iterator[tuple[str, str, V]]:
        """(region, key, answer) of every key answered so far (failures left out)."""
        for (region, key), future in list(self._futures.items()):
            if future.done() and not future.cancelled() and future.exception() is None:
                yield region, key, future.result()

    def peek(self, region: str, key: str) -> asyncio.Future[V] | None:
        """The future of a key already requested (settled or not), else None."""
        return self._futures.get((region, key))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def counted() -> None:
            _TALLY.set(self.calls)  # this task's own context
            await work

        task = asyncio.get_running_loop().create_task(counted())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Cancel what is still running (the job is over)."""
        for task in list(self._tasks):
            task.cancel()

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def __repr__(self) -> str:
        settled = sum(1 for f in self._futures.values() if f.done())
        return (
            f"<{type(self).__name__} {settled}/{len(self._futures)} settled, "
            f"{self.total_calls} calls, {len(self._tasks)} running>"
        )


class _Single(_Lookup[V]):
    """One call per key; concurrent callers share it."""

    __slots__ = ()

    def request(self, region: str, key: str) -> asyncio.Future[V]:
        future = self._futures.get((region, key))
        if future is None:
            future = self._futures[region, key] = asyncio.get_running_loop().create_future()
            self._spawn(self._fill(region, key, future))
        return future

    async def _fill(self, region: str, key: str, future: asyncio.Future[V]) -> None:
        try:
            value = await self._fetch(region, key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:  # an EcsError, or SendingClosed: every waiter sees it
            future.set_exception(error.with_traceback(None))
            _retrieved(future)
        else:
            future.set_result(value)

    async def _fetch(self, region: str, key: str) -> V:
        raise NotImplementedError


class VpcAttributes(_Single[VpcInfo | None]):
    """DescribeVpcAttribute per VPC; ``None`` when the service says it cannot see it."""

    __slots__ = ("_api",)

    def __init__(self, api: ReadApi, reads: ReadOnly) -> None:
        super().__init__(reads)
        self._api = api

    async def _fetch(self, region: str, key: str) -> VpcInfo | None:
        try:
            return await self._reads(region, lambda: self._api.describe_vpc_attribute(region, key))
        except EcsError as error:
            if error.code in VPC_NOT_FOUND_CODES:
                return None
            raise


class VpcLinks(_Single[frozenset[str]]):
    """The instances linked to a VPC, as the run reads them: by VpcId in the given region."""

    __slots__ = ("_api",)

    def __init__(self, api: ReadApi, reads: ReadOnly) -> None:
        super().__init__(reads)
        self._api = api

    async def _fetch(self, region: str, key: str) -> frozenset[str]:
        links = await self._reads(
            region, lambda: self._api.describe_classic_link_instances(region, vpc_id=key)
        )
        return frozenset(link.instance_id for link in links if link.vpc_id == key)


class _Batched(_Lookup[V]):
    """Keys queue per region and leave ``MAX_IDS_PER_CALL`` at a time (see the module doc)."""

    __slots__ = ("_holds", "_queues", "_timers", "window")

    def __init__(self, reads: ReadOnly, *, window: float = DEFAULT_WINDOW) -> None:
        super().__init__(reads)
        self.window = window
        self._queues: dict[str, dict[str, asyncio.Future[V]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._holds = 0

    def request(self, region: str, key: str) -> asyncio.Future[V]:
        future = self._futures.get((region, key))
        if future is not None:
            return future
        loop = asyncio.get_running_loop()
        future = self._futures[region, key] = loop.create_future()
        queue = self._queues.setdefault(region, {})
        queue[key] = future
        if len(queue) >= MAX_IDS_PER_CALL:
            self._flush(region)
        elif not self._holds and region not in self._timers:
            self._timers[region] = loop.call_later(self.window, self._flush, region)
        return future

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Send only full batches until the block ends; then send the rest at once."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds:
                for region in list(self._queues):
                    self._flush(region)

    def _flush(self, region: str) -> None:
        timer = self._timers.pop(region, None)
        if timer is not None:
            timer.cancel()
        queue = self._queues.pop(region, None)
        if queue:
            self._spawn(self._fill(region, queue))

    async def _fill(self, region: str, queue: dict[str, asyncio.Future[V]]) -> None:
        try:
            found = await self._fetch(region, list(queue))
        except asyncio.CancelledError:
            for future in queue.values():
                future.cancel()
            raise
        except Exception as error:  # an EcsError, or SendingClosed: every waiter sees it
            for future in queue.values():
                future.set_exception(error.with_traceback(None))
                _retrieved(future)
        else:
            for key, future in queue.items():
                future.set_result(found.get(key, self._absent()))

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for queue in self._queues.values():
            for future in queue.values():
                future.cancel()
        self._queues.clear()
        super().close()

    async def _fetch(self, region: str, keys: list[str]) -> dict[str, V]:
        raise NotImplementedError

    def _absent(self) -> V:
        raise NotImplementedError


class Instances(_Batched[InstanceInfo | None]):
    """DescribeInstances, 100 IDs a call; ``None`` for an instance the answer leaves out
    (unknown, another account's, or in another region: DescribeInstances does not say)."""

    __slots__ = ("_api",)

    def __init__(self, api: ReadApi, reads: ReadOnly, *, window: float = DEFAULT_WINDOW) -> None:
        super().__init__(reads, window=window)
        self._api = api

    async def _fetch(self, region: str, keys: list[str]) -> dict[str, InstanceInfo | None]:
        found = await self._reads(region, lambda: self._api.describe_instances(region, keys))
        return {info.instance_id: info for info in found}

    def _absent(self) -> InstanceInfo | None:
        return None


class InstanceLinks(_Batched[tuple[str, ...]]):
    """The VPCs each instance is linked to now (normally none or one), 100 IDs a call."""

    __slots__ = ("_api",)

    def __init__(self, api: ReadApi, reads: ReadOnly, *, window: float = DEFAULT_WINDOW) -> None:
        super().__init__(reads, window=window)
        self._api = api

    async def _fetch(self, region: str, keys: list[str]) -> dict[str, tuple[str, ...]]:
        links = await self._reads(
            region, lambda: self._api.describe_classic_link_instances(region, instance_ids=keys)
        )
        linked: dict[str, list[str]] = {}
        for link in links:
            linked.setdefault(link.instance_id, []).append(link.vpc_id)
        return {instance: tuple(sorted(vpcs)) for instance, vpcs in linked.items()}

    def _absent(self) -> tuple[str, ...]:
        return ()


class Lookups:
    """The four lookups of one job, sharing one API, one ``ReadOnly`` and one window."""

    __slots__ = ("instance_links", "instances", "vpc_links", "vpcs")

    def __init__(self, api: ReadApi, reads: ReadOnly, *, window: float = DEFAULT_WINDOW) -> None:
        self.instances = Instances(api, reads, window=window)
        self.vpcs = VpcAttributes(api, reads)
        self.vpc_links = VpcLinks(api, reads)
        self.instance_links = InstanceLinks(api, reads, window=window)

    def _all(self) -> tuple[_Lookup[Any], ...]:
        return (self.instances, self.vpcs, self.vpc_links, self.instance_links)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Full batches only until the block ends (see ``_Batched.hold``)."""
        with self.instances.hold(), self.instance_links.hold():
            yield

    async def settled(self) -> None:
        """Wait until every key requested so far has its answer (or its failure)."""
        for lookup in self._all():
            await lookup.settled()

    def close(self) -> None:
        for lookup in self._all():
            lookup.close()

    def calls(self) -> dict[str, dict[str, int]]:
        """Requests made per lookup and action (pages and retries included)."""
        names = ("instances", "vpc_attributes", "vpc_links", "instance_links")
        return {name: dict(lookup.calls) for name, lookup in zip(names, self._all(), strict=True)}

    def __repr__(self) -> str:
        return f"<Lookups {' '.join(repr(lookup) for lookup in self._all())}>"
