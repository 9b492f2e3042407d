"""The whole run against the emulator in virtual time: flow control end to end, in seconds.

The real engine, the real ``EcsClient`` (signed requests over loopback TCP) and the real
emulator with its limiter, on an event loop whose clock only moves when every task waits:
when nothing is ready to run, the loop's selector, instead of sleeping until the next
timer, moves the clock to it. Loopback data written by one task is readable at once by
another in the same process, so "nothing ready" means "only timers pending", and a
120-second run of 60-second windows takes a few seconds of CPU. CPU costs nothing in this
time (an infinitely fast machine); what is measured is the controller's decisions with
concurrent workers, retries and in-flight waves, which a sequential simulation misses.

The gate and the emulator share one wall clock: ``start`` (a chosen position in the
minute, since the service's windows are whole seconds and minutes of the clock) plus the
loop's virtual time. Not a benchmark of speed; ``tests/benchmarks/bench_flow.py`` is the
wall-clock one.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from bulk_attach.api.client import EcsClient
from bulk_attach.api.credentials import Credentials
from bulk_attach.core.outcomes import RowResult, Status
from bulk_attach.core.rows import Row
from bulk_attach.emulator.faults import FaultSettings, LimiterShape
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EMULATOR_KEY, EmulatorSettings, create_app
from bulk_attach.engine.gates import RateGate
from bulk_attach.engine.runner import Engine, EngineResult
from bulk_attach.settings import AttemptSettings, ClientSettings, EngineSettings

T = TypeVar("T")

REGION = "cn-hangzhou"
AK = "LTAIflowsimflowsimflowsim"
SECRET = "flowsim-secret-0123456789abc"
ATTACH = "AttachClassicLinkVpc"
SHAPES = {
    "1s-windows": (LimiterShape.WINDOW, 1.0),
    "60s-windows": (LimiterShape.WINDOW, 60.0),
    "bucket": (LimiterShape.BUCKET, 1.0),
    "1h-windows": (LimiterShape.WINDOW, 3600.0),  # one call an hour: a service that refuses
}


class _WarpSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that never sleeps: with nothing ready it moves the clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer at all: wait for real I/O
            return list(super().select(None))
        self.now += timeout
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and jumps over idle waits.

    With ``cpu_counts`` the real time spent running (CPU, a loaded machine) passes too: the
    clock is the real monotonic clock plus every idle wait skipped, so an overloaded event
    loop is as late as it would be for real, while a 60-second wait still costs nothing.
    """

    def __init__(self, cpu_counts: bool = False) -> None:
        self._warp = _WarpSelector()
        self._base = time.monotonic() if cpu_counts else None
        super().__init__(self._warp)

    def time(self) -> float:
        if self._base is None:
            return self._warp.now
        return time.monotonic() - self._base + self._warp.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]], cpu_counts: bool = False) -> T:
    loop = VirtualLoop(cpu_counts)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@dataclass(frozen=True)
class Scenario:
    shape: str  # a key of SHAPES
    limit: float  # the service's attaches per second
    ask: float  # --rate; 0: no ceiling
    rows: int
    halve_at: float | None = None  # seconds after the first attach: the limit halves
    start: float = 1_800_000_021.15  # the wall clock at the start (21.15 s into a minute)
    concurrency: int = 64
    latency_ms: float = 2.0
    throttle_timeout: float = 300.0
    cpu_counts: bool = False  # real CPU time passes too (see ``VirtualLoop``)
    deadline: float = 3600.0  # virtual seconds: a run still going then has stalled


class Stalled(AssertionError):
    """The run did not finish by the scenario's deadline (virtual time)."""


@dataclass(frozen=True)
class Outcome:
    phase: float  # first to last attach that reached the service, seconds
    attach_requests: int
    throttled: int
    attached: int
    failed: int
    ended: float  # the wall clock (virtual) when the run returned
    result: EngineResult
    results: tuple[RowResult, ...]  # every row's, as settled
    arrivals: tuple[float, ...]  # wall time of every attach request at the service
    accepted_at: tuple[float, ...]  # wall time of every attach the service accepted

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.attach_requests if self.attach_requests else 0.0


def simulate(scenario: Scenario) -> Outcome:
    return run_virtual(lambda: _simulate(scenario), scenario.cpu_counts)


async def _simulate(s: Scenario) -> Outcome:
    loop = asyncio.get_running_loop()

    def clock() -> float:
        return s.start + loop.time()

    rows = [
        Row(
            line=n + 2,
            region_id=REGION,
            instance_id=f"i-sim{n:07d}",
            vpc_id=f"vpc-sim{n // 1000:04d}",
        )
        for n in range(s.rows)
    ]
    shape, window = SHAPES[s.shape]
    faults = FaultSettings(
        qps=s.limit, limiter=shape, window_seconds=window, latency_ms=s.latency_ms
    )
    world = EcsModel()
    world.add_region(REGION)
    for row in rows:
        world.add_instance(Instance(row.instance_id, region_id=REGION))
        if row.vpc_id not in world.vpcs:
            world.add_vpc(Vpc(row.vpc_id, region_id=REGION))
    app = create_app(
        world,
        EmulatorSettings(access_keys={AK: SECRET}, faults=faults, clock=clock, max_clock_skew=1e12),
    )
    emulator = app[EMULATOR_KEY]
    arrivals: list[float] = []
    results: list[RowResult] = []
    accepted: list[float] = []
    first = asyncio.Event()

    @web.middleware
    async def stamp(request: web.Request, handler: Any) -> web.StreamResponse:
        attach = ATTACH in (request.headers.get("x-acs-action", ""), request.query.get("Action"))
        if attach:
            arrivals.append(clock())
            first.set()
        response: web.StreamResponse = await handler(request)
        if attach and response.status == 200:
            accepted.append(clock())
        return response

    async def halve(after: float) -> None:
        await first.wait()
        await asyncio.sleep(after)
        emulator.change_faults({"qps": s.limit / 2})

    app.middlewares.insert(0, stamp)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    halver = None if s.halve_at is None else asyncio.create_task(halve(s.halve_at))
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        settings = EngineSettings(
            concurrency=s.concurrency,
            rate=s.ask or None,
            attempts=AttemptSettings(throttle_timeout=s.throttle_timeout),
        )
        gate = RateGate.for_run(settings, clock)
        credentials = Credentials(
            access_key_id=AK, access_key_secret=SECRET, security_token=None, source="flowsim"
        )
        client = ClientSettings(endpoint=f"http://127.0.0.1:{port}")
        async with EcsClient(client, credentials, gate=gate) as api:
            try:
                async with asyncio.timeout(s.deadline):
                    result = await Engine(api, settings, gate=gate, on_result=results.append).run(
                        rows
                    )
            except TimeoutError:
                accepted_by_now = len(accepted)
                raise Stalled(
                    f"{accepted_by_now}/{s.rows} attaches accepted after {s.deadline:g} s; {gate!r}"
                ) from None
        ended = clock()
        calls = dict(emulator.calls.get(ATTACH, {}))
    finally:
        if halver is not None:
            halver.cancel()
        await runner.cleanup()
    summary = result.summary
    return Outcome(
        phase=arrivals[-1] - arrivals[0] if arrivals else 0.0,
        attach_requests=sum(calls.values()),
        throttled=calls.get("Throttling.User", 0),
        attached=summary.count(Status.ATTACHED),
        failed=summary.failed,
        ended=ended,
        result=result,
        results=tuple(results),
        arrivals=tuple(arrivals),
        accepted_at=tuple(accepted),
    )


def busiest(times: tuple[float, ...], period: float) -> int:
    """The most events in any clock-aligned window of ``period`` seconds."""
    counts: dict[int, int] = {}
    for t in times:
        key = math.floor(t / period)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)
