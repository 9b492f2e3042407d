"""Flow control against a service whose limit nobody told us: time, throttled share, failures.

Run as a script (not collected by pytest)::

    python tests/benchmarks/bench_flow.py [--quick] [--only SHAPE] [--json] [--virtual]

For each server-side limiter shape (fixed 1-second windows, fixed 60-second windows, a
token bucket), each limit S (10, 40, 200 attaches per second), the user asking ``--rate``
10 x S and ``--rate 0`` (no ceiling): ``run_job`` attaches N rows against the emulator,
in process, on 127.0.0.1. N makes the ideal N / S at least 30 s (60-second windows: two
windows, 120 s). A second set of cells halves the limit half-way through the attach
phase (another tool of the account starts using the same quota), through the emulator's
own flow-control settings, as the control endpoint does.

Measured at the server: the attach phase (first to last attach that arrives), over the
ideal (N / S; with the halving, D/2 + N/2 / (S/2) for D = N / S); the share of attach
requests answered Throttling.User; rows failed. Goals: time <= 1.10 x ideal (1.15 with
the halving), throttled <= 3 % (5 %), no row failed. ``--quick`` runs four cells.

``--virtual`` runs the same cells through ``tests/flowsim.py`` instead: the same engine,
client and emulator on an event loop whose clock jumps over idle waits (an infinitely
fast machine), the whole matrix in about a minute. It answers "is the controller right",
the wall-clock run "is it right on this machine".
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from bulk_attach.api.credentials import Credentials
from bulk_attach.emulator.faults import FaultSettings, LimiterShape
from bulk_attach.emulator.server import EMULATOR_KEY, EmulatorSettings, create_app
from bulk_attach.emulator.world import world_from_pairs
from bulk_attach.job import run_job
from bulk_attach.settings import ClientSettings, RunSettings

REGION = "cn-hangzhou"
AK = "LTAIbenchbenchbenchbench"
SECRET = "bench-secret-0123456789abcdefg"
ATTACH = "AttachClassicLinkVpc"
ROWS_PER_VPC = 1000
SHAPES = {
    "1s-windows": (LimiterShape.WINDOW, 1.0),
    "60s-windows": (LimiterShape.WINDOW, 60.0),
    "bucket": (LimiterShape.BUCKET, 1.0),
}


@dataclass(frozen=True)
class Cell:
    shape: str
    limit: float
    ask: float  # --rate; 0: no ceiling
    halve: bool = False

    @property
    def ideal_plain(self) -> float:
        return 120.0 if self.shape == "60s-windows" else 30.0

    @property
    def rows(self) -> int:
        return int(self.limit * self.ideal_plain)

    @property
    def ideal(self) -> float:
        d = self.rows / self.limit
        return d / 2 + (self.rows / 2) / (self.limit / 2) if self.halve else d

    @property
    def goals(self) -> tuple[float, float]:
        return (1.15, 0.05) if self.halve else (1.10, 0.03)

    def __str__(self) -> str:
        ask = "rate 0" if self.ask == 0 else f"rate {self.ask:g}"
        return f"{self.shape:11} S={self.limit:<4g} {ask:9}{' halved' if self.halve else ''}"


def write_pairs(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["RegionId", "InstanceId", "VpcId"])
        for n in range(rows):
            writer.writerow([REGION, f"i-flow{n:07d}", f"vpc-flow{n // ROWS_PER_VPC:04d}"])


async def measure(cell: Cell, work: Path) -> dict[str, object]:
    pairs, report = work / "pairs.csv", work / "report.csv"
    write_pairs(pairs, cell.rows)
    shape, window = SHAPES[cell.shape]
    faults = FaultSettings(qps=cell.limit, limiter=shape, window_seconds=window, latency_ms=2.0)
    app = create_app(
        world_from_pairs(pairs), EmulatorSettings(access_keys={AK: SECRET}, faults=faults)
    )
    emulator = app[EMULATOR_KEY]
    loop = asyncio.get_running_loop()
    attaches: list[float] = []
    first = asyncio.Event()

    @web.middleware
    async def stamp(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if ATTACH in (request.headers.get("x-acs-action", ""), request.query.get("Action")):
            attaches.append(loop.time())
            first.set()
        return await handler(request)

    async def halve() -> None:
        await first.wait()
        await asyncio.sleep(cell.rows / cell.limit / 2)
        emulator.change_faults({"qps": cell.limit / 2})

    app.middlewares.insert(0, stamp)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    halver = asyncio.create_task(halve()) if cell.halve else None
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        run = RunSettings(
            input_path=pairs,
            report_path=report,
            concurrency=64,
            rate=cell.ask or None,
            quiet=True,
            fresh=True,
        )
        creds = Credentials(
            access_key_id=AK, access_key_secret=SECRET, security_token=None, source="benchmark"
        )
        result = await run_job(run, ClientSettings(endpoint=f"http://127.0.0.1:{port}"), creds)
        calls = dict(emulator.calls.get(ATTACH, {}))
    finally:
        if halver is not None:
            halver.cancel()
        await runner.cleanup()
    by_status = result.summary["by_status"]
    failed = int(by_status.get("failed", 0))
    with report.open(encoding="utf-8") as handle:
        throttled_rows = sum(
            1 for r in csv.DictReader(handle) if r.get("error_code", "").startswith("Throttling")
        )
    total = sum(calls.values())
    throttled = calls.get("Throttling.User", 0)
    phase = attaches[-1] - attaches[0] if attaches else 0.0
    ratio = phase / cell.ideal
    share = throttled / total if total else 0.0
    time_goal, share_goal = cell.goals
    return {
        "cell": str(cell),
        "rows": cell.rows,
        "attached": int(by_status.get("attached", 0)),
        "phase_s": round(phase, 2),
        "ideal_s": round(cell.ideal, 2),
        "ratio": round(ratio, 3),
        "throttled": throttled,
        "attach_requests": total,
        "throttled_share": round(share, 4),
        "failed": failed,
        "failed_throttling": throttled_rows,
        "pass": ratio <= time_goal and share <= share_goal and failed == 0,
    }


def cells(quick: bool, only: str | None) -> list[Cell]:
    if quick:
        chosen = [
            Cell("1s-windows", 40, 400),
            Cell("bucket", 40, 0),
            Cell("60s-windows", 10, 100),
            Cell("1s-windows", 40, 400, halve=True),
        ]
    else:
        chosen = [
            Cell(shape, limit, ask)
            for shape in SHAPES
            for limit in (10.0, 40.0, 200.0)
            for ask in (10 * limit, 0.0)
        ]
        chosen += [
            Cell(shape, limit, 10 * limit, halve=True)
            for shape in SHAPES
            for limit in (10.0, 40.0, 200.0)
        ]
    return [c for c in chosen if only is None or c.shape == only]


def measure_virtual(cell: Cell) -> dict[str, object]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from flowsim import Scenario, simulate

    halve_at = cell.rows / cell.limit / 2 if cell.halve else None
    outcome = simulate(Scenario(cell.shape, cell.limit, cell.ask, cell.rows, halve_at=halve_at))
    ratio = outcome.phase / cell.ideal
    time_goal, share_goal = cell.goals
    return {
        "cell": str(cell),
        "rows": cell.rows,
        "attached": outcome.attached,
        "phase_s": round(outcome.phase, 2),
        "ideal_s": round(cell.ideal, 2),
        "ratio": round(ratio, 3),
        "throttled": outcome.throttled,
        "attach_requests": outcome.attach_requests,
        "throttled_share": round(outcome.throttled_share, 4),
        "failed": outcome.failed,
        "failed_throttling": sum(
            1 for r in outcome.results if r.error_code.startswith("Throttling")
        ),
        "pass": ratio <= time_goal
        and outcome.throttled_share <= share_goal
        and outcome.failed == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="four cells, a smoke run")
    parser.add_argument("--only", choices=sorted(SHAPES), help="one limiter shape")
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    parser.add_argument(
        "--virtual", action="store_true", help="in virtual time (tests/flowsim.py), not wall time"
    )
    args = parser.parse_args()
    figures = []
    started = time.monotonic()
    print(f"{'cell':34} {'time/ideal':>10} {'throttled':>14} {'failed':>6}")
    for cell in cells(args.quick, args.only):
        if args.virtual:
            data = measure_virtual(cell)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-flow-") as tmp:
                data = asyncio.run(measure(cell, Path(tmp)))
        figures.append(data)
        print(
            f"{cell!s:34} {data['ratio']:>10.3f} "
            f"{data['throttled_share']:>8.2%} ({data['throttled']:>4}) {data['failed']:>6}"
            f"  {data['phase_s']} s / {data['ideal_s']} s  {'PASS' if data['pass'] else 'FAIL'}",
            flush=True,
        )
    passed = all(bool(f["pass"]) for f in figures)
    print(
        f"{len(figures)} cells in {time.monotonic() - started:.0f} s: "
        f"{'PASS' if passed else 'FAIL'}"
    )
    if args.json:
        print("RESULT " + json.dumps({"cells": figures, "pass": passed}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
