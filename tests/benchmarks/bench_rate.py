"""Rate fidelity: does ``--rate 200`` give 200 requests a second, and never more?

Run as a script (not collected by pytest)::

    python tests/benchmarks/bench_rate.py [--rows 2000] [--rate 200] [--latency-ms 20]
                                          [--concurrency 32]

``run_job`` (rate 200, concurrency 32) against the emulator with 20 ms latency, its world
derived from a generated CSV of 2,000 rows in one region (500 rows to a VPC, so every VPC's
first read is part of the traffic). The emulator is built here with ``create_app`` and
given one extra outer middleware before it starts, which stamps every request as it
*arrives* at the server (``loop.time()``), before the emulator's latency, authentication or
routing: what is measured is what left the client, Describe calls included, not what the
client's gate believed.

Printed: the achieved rate over the whole run (requests / run_job's wall time, and rows/s),
the same over the span from the first arrival to the last, and the largest number of
requests in any 1-second window (exact: every window that starts at an arrival, half-open
``[t, t + 1)``). Targets: achieved >= 97 % of the rate; no 1-second window above the rate.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import csv
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from bulk_attach.api.credentials import Credentials
from bulk_attach.emulator.faults import FaultSettings
from bulk_attach.emulator.server import EMULATOR_KEY, EmulatorSettings, create_app
from bulk_attach.emulator.world import world_from_pairs
from bulk_attach.job import run_job
from bulk_attach.settings import ClientSettings, RunSettings

REGION = "cn-hangzhou"
AK = "LTAIbenchbenchbenchbench"
SECRET = "bench-secret-0123456789abcdefg"
ROWS_PER_VPC = 500
TIME_LIMIT = 120.0  # seconds for the run, whatever happens
TARGET_SHARE = 0.97

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def write_pairs(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["RegionId", "InstanceId", "VpcId"])
        for n in range(rows):
            writer.writerow([REGION, f"i-rate{n:07d}", f"vpc-rate{n // ROWS_PER_VPC:04d}"])


def max_in_window(times: list[float], window: float = 1.0) -> tuple[int, float]:
    """The most arrivals in any half-open window ``[t, t + window)``, and where it starts.

    The count only changes at an arrival, so windows starting at each arrival cover them all.
    """
    best, start = 0, times[0] if times else 0.0
    for i, t in enumerate(times):
        count = bisect.bisect_left(times, t + window, lo=i) - i
        if count > best:
            best, start = count, t
    return best, start


async def measure(
    rows: int, rate: float, latency_ms: float, concurrency: int, work: Path
) -> dict[str, float | int | bool]:
    pairs, report = work / "pairs.csv", work / "report.csv"
    write_pairs(pairs, rows)
    model = world_from_pairs(pairs)
    settings = EmulatorSettings(
        access_keys={AK: SECRET}, faults=FaultSettings(latency_ms=latency_ms)
    )
    app = create_app(model, settings)
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    @web.middleware
    async def stamp(request: web.Request, handler: Handler) -> web.StreamResponse:
        arrivals.append(loop.time())
        return await handler(request)

    app.middlewares.insert(0, stamp)  # outermost: before anything the emulator does
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        run = RunSettings(
            input_path=pairs,
            report_path=report,
            concurrency=concurrency,
            rate=rate,
            quiet=True,
            fresh=True,
        )
        creds = Credentials(
            access_key_id=AK, access_key_secret=SECRET, security_token=None, source="benchmark"
        )
        started = loop.time()
        result = await asyncio.wait_for(
            run_job(run, ClientSettings(endpoint=f"http://127.0.0.1:{port}"), creds), TIME_LIMIT
        )
        duration = loop.time() - started
        calls = app[EMULATOR_KEY].calls
    finally:
        await runner.cleanup()

    attached = result.summary["by_status"].get("attached", 0)
    if attached != rows:
        raise RuntimeError(f"{attached} of {rows} rows attached: {result.summary['by_status']}")
    arrivals.sort()
    requests = len(arrivals)
    span = arrivals[-1] - arrivals[0]
    peak, peak_start = max_in_window(arrivals)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    by_action = {action: sum(codes.values()) for action, codes in sorted(calls.items())}
    achieved = requests / duration
    figures: dict[str, float | int | bool] = {
        "requests": requests,
        "rows": rows,
        "duration_s": round(duration, 3),
        "achieved_req_per_s": round(achieved, 2),
        "rows_per_s": round(rows / duration, 2),
        "span_req_per_s": round((requests - 1) / span, 2) if span > 0 else 0.0,
        "max_1s_window": peak,
        "min_gap_ms": round(min(gaps) * 1000, 3) if gaps else 0.0,
        "pass_rate": achieved >= TARGET_SHARE * rate,
        "pass_window": peak <= rate,
    }
    print(f"requests by action: {by_action}")
    print(
        f"{requests} requests ({rows} rows) in {duration:.2f} s: achieved {achieved:.1f} req/s "
        f"= {achieved / rate:.1%} of {rate:g}/s ({rows / duration:.1f} rows/s); "
        f"first-to-last arrival {figures['span_req_per_s']} req/s"
    )
    print(
        f"largest 1-second window: {peak} requests (starting {peak_start - arrivals[0]:.3f} s "
        f"in); smallest gap between arrivals {figures['min_gap_ms']} ms"
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    args = parser.parse_args()
    rows = min(args.rows, 20_000)
    print(
        f"rate {args.rate:g}/s, {rows} rows, emulator latency {args.latency_ms:g} ms, "
        f"concurrency {args.concurrency}, {os.cpu_count()} cores"
    )
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-rate-") as tmp:
        figures = asyncio.run(
            measure(rows, args.rate, args.latency_ms, args.concurrency, Path(tmp))
        )
    passed = bool(figures["pass_rate"] and figures["pass_window"])
    print(
        f"rate fidelity: achieved {figures['achieved_req_per_s']} req/s "
        f"(target >= {TARGET_SHARE * args.rate:g}): {'PASS' if figures['pass_rate'] else 'FAIL'}; "
        f"max 1-s window {figures['max_1s_window']} (target <= {args.rate:g}): "
        f"{'PASS' if figures['pass_window'] else 'FAIL'}  [{time.perf_counter() - wall:.1f} s]"
    )
    if args.json:
        print("RESULT " + json.dumps({**figures, "pass": passed}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
