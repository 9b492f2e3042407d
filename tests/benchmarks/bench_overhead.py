"""Our end-to-end overhead against the official async SDK's, on a server that costs nothing.

Run as a script (not collected by pytest)::

    python tests/benchmarks/bench_overhead.py [--rows 20000] [--sdk-rows 5000]
                                              [--concurrency 32] [--repeat 2]

A minimal aiohttp server (no signature check, no state: every POST answers success at
once, DescribeClassicLinkInstances an empty page) runs in a subprocess, so it has its own
core; this process is the client. Two clients make the same AttachClassicLinkVpc calls at
the same concurrency:

* ours: ``run_job`` with no rate limit, end to end: the CSV validated and read, one
  Describe per VPC (quota and already-linked check), every row attached, a report row
  written per row and the summary at the end;
* the official ``alibabacloud-ecs20140526`` async client (``attach_classic_link_vpc_async``,
  signature V3 like ours), ``asyncio.gather`` under a semaphore; it is given the pairs
  ready-made (no CSV, no report), which only flatters it.

Each side runs ``--repeat`` times, alternating; the best rows/s of each is compared.
The client CPU time per row is printed as well: it is what the wall-clock ratio
measures, but much less disturbed by other load on a shared machine. The server's CPU
share during each run is printed too: near 100 % would mean the server, not the client,
set the pace. Bounded in count and in time. ``bench_memory.py`` reuses the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulk_attach.api.credentials import Credentials
from bulk_attach.job import run_job
from bulk_attach.settings import ClientSettings, RunSettings

REGION = "cn-hangzhou"
AK = "LTAIbenchbenchbenchbench"
SECRET = "bench-secret-0123456789abcdefg"
ROWS_PER_VPC = 500  # half the default quota of 1000
TIME_LIMIT = 180.0  # seconds for one measured run, whatever happens
TARGET_RATIO = 2.5


# --- the minimal server (runs in its own process: ``bench_overhead.py --serve``) ----------


def serve() -> None:
    """Answer every API call with success at once; GET /_stats tells CPU time and count."""
    from aiohttp import web

    count = 0

    async def api(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        action = request.headers.get("x-acs-action") or request.query.get("Action", "")
        body: dict[str, object] = {"RequestId": f"BENCH-{count:012d}"}
        if action == "DescribeClassicLinkInstances":
            body.update(Links={"Link": []}, TotalCount=0, PageNumber=1, PageSize=100)
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"cpu": time.process_time(), "requests": count})

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/_stats", stats)
        app.router.add_route("*", "/", api)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        print(json.dumps({"port": port}), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@dataclass(frozen=True)
class MinimalServer:
    port: int
    pid: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> tuple[float, int]:
        """The server's CPU seconds so far and the requests it answered."""
        with urllib.request.urlopen(f"{self.endpoint}/_stats", timeout=10) as answer:  # noqa: S310 (loopback)
            data = json.load(answer)
        return float(data["cpu"]), int(data["requests"])


@contextlib.contextmanager
def minimal_server() -> Iterator[MinimalServer]:
    """The minimal server in a subprocess, stopped (SIGINT, then kill) on the way out."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("the minimal server did not start")
        yield MinimalServer(port=int(json.loads(line)["port"]), pid=process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- inputs ---------------------------------------------------------------------------


def write_pairs(path: Path, rows: int, *, region: str | None = REGION, offset: int = 0) -> None:
    """``rows`` distinct, valid pairs, ``ROWS_PER_VPC`` to a VPC (the quota is never hit)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["RegionId", "InstanceId", "VpcId"] if region else ["InstanceId", "VpcId"])
        for n in range(offset, offset + rows):
            pair = [f"i-bench{n:09d}", f"vpc-bench{n // ROWS_PER_VPC:05d}"]
            writer.writerow([region, *pair] if region else pair)


def read_plain_pairs(path: Path) -> list[tuple[str, str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [(r[0], r[1], r[2]) for r in reader]


# --- the two clients ------------------------------------------------------------------


def credentials() -> Credentials:
    return Credentials(
        access_key_id=AK, access_key_secret=SECRET, security_token=None, source="benchmark"
    )


async def run_ours(
    endpoint: str, pairs: Path, report: Path, concurrency: int, rate: float | None = None
) -> dict[str, Any]:
    """``run_job`` end to end; the summary's counts (every row must come out attached)."""
    settings = RunSettings(
        input_path=pairs,
        report_path=report,
        concurrency=concurrency,
        rate=rate,
        quiet=True,
        fresh=True,
    )
    result = await asyncio.wait_for(
        run_job(settings, ClientSettings(endpoint=endpoint), credentials()), TIME_LIMIT
    )
    return result.summary


async def run_sdk(port: int, pairs: list[tuple[str, str, str]], concurrency: int) -> int:
    """The official async client, same calls, same concurrency; the number that succeeded."""
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_ecs20140526.models import AttachClassicLinkVpcRequest
    from alibabacloud_tea_openapi.models import Config

    client = Client(
        Config(
            access_key_id=AK,
            access_key_secret=SECRET,
            endpoint=f"127.0.0.1:{port}",
            protocol="http",
            region_id=REGION,
        )
    )
    semaphore = asyncio.Semaphore(concurrency)

    async def attach(region: str, instance: str, vpc: str) -> bool:
        async with semaphore:
            request = AttachClassicLinkVpcRequest(
                region_id=region, instance_id=instance, vpc_id=vpc
            )
            answer = await client.attach_classic_link_vpc_async(request)
            return bool(answer.body and answer.body.request_id)

    done = await asyncio.wait_for(asyncio.gather(*(attach(*pair) for pair in pairs)), TIME_LIMIT)
    return sum(done)


@dataclass(frozen=True)
class Measure:
    rows: int
    seconds: float
    client_cpu: float  # CPU seconds (user + system) this process spent on the run
    server_cpu: float  # share of one core the server used meanwhile

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def cpu_per_row(self) -> float:
        return self.client_cpu / self.rows

    def __str__(self) -> str:
        return (
            f"{self.rows} rows in {self.seconds:.2f} s = {self.rate:,.0f} rows/s; client CPU "
            f"{self.cpu_per_row * 1e6:,.0f} us/row (server CPU {self.server_cpu:.0%})"
        )


def measure_ours(server: MinimalServer, rows: int, concurrency: int, work: Path) -> Measure:
    with tempfile.TemporaryDirectory(dir=work) as tmp:  # the report and its side files
        pairs, report = Path(tmp) / "ours.csv", Path(tmp) / "ours-report.csv"
        write_pairs(pairs, rows)
        cpu, _ = server.stats()
        started, client = time.perf_counter(), time.process_time()
        summary = asyncio.run(run_ours(server.endpoint, pairs, report, concurrency))
        elapsed, client = time.perf_counter() - started, time.process_time() - client
        cpu_after, _ = server.stats()
    attached = summary["by_status"].get("attached", 0)
    if summary["exit_code"] != 0 or attached != rows:
        raise RuntimeError(f"our run attached {attached} of {rows} rows: {summary['by_status']}")
    return Measure(rows, elapsed, client, (cpu_after - cpu) / elapsed)


def measure_sdk(server: MinimalServer, rows: int, concurrency: int, work: Path) -> Measure:
    pairs = work / "sdk.csv"
    write_pairs(pairs, rows)
    plain = read_plain_pairs(pairs)
    pairs.unlink()
    cpu, _ = server.stats()
    started, client = time.perf_counter(), time.process_time()
    succeeded = asyncio.run(run_sdk(server.port, plain, concurrency))
    elapsed, client = time.perf_counter() - started, time.process_time() - client
    cpu_after, _ = server.stats()
    if succeeded != rows:
        raise RuntimeError(f"the SDK attached {succeeded} of {rows} rows")
    return Measure(rows, elapsed, client, (cpu_after - cpu) / elapsed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows for our run_job")
    parser.add_argument("--sdk-rows", type=int, default=5_000, help="calls for the SDK")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    rows, sdk_rows = min(args.rows, 200_000), min(args.sdk_rows, 50_000)

    ours: list[Measure] = []
    sdk: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp, minimal_server() as server:
        work = Path(tmp)
        print(
            f"minimal server pid {server.pid} on 127.0.0.1:{server.port}, "
            f"concurrency {args.concurrency}, {os.cpu_count()} cores"
        )
        for n in range(1, args.repeat + 1):
            ours.append(measure_ours(server, rows, args.concurrency, work))
            print(f"  ours #{n}: {ours[-1]}", flush=True)
            sdk.append(measure_sdk(server, sdk_rows, args.concurrency, work))
            print(f"  sdk  #{n}: {sdk[-1]}", flush=True)
    best_ours = max(m.rate for m in ours)
    best_sdk = max(m.rate for m in sdk)
    ratio = best_ours / best_sdk
    passed = ratio >= TARGET_RATIO
    cpu_ours = min(m.cpu_per_row for m in ours)
    cpu_sdk = min(m.cpu_per_row for m in sdk)
    print(
        f"client CPU per row: ours {cpu_ours * 1e6:,.0f} us, official SDK "
        f"{cpu_sdk * 1e6:,.0f} us ({cpu_sdk / cpu_ours:.2f}x; less sensitive to other load)"
    )
    print(
        f"overhead: ours {best_ours:,.0f} rows/s, official SDK {best_sdk:,.0f} rows/s, "
        f"ratio {ratio:.2f}x (target >= {TARGET_RATIO}x): {'PASS' if passed else 'FAIL'}"
    )
    if args.json:
        print(
            "RESULT "
            + json.dumps(
                {
                    "ours_rows_per_s": round(best_ours, 1),
                    "sdk_rows_per_s": round(best_sdk, 1),
                    "ratio": round(ratio, 3),
                    "ours_cpu_us_per_row": round(cpu_ours * 1e6, 1),
                    "sdk_cpu_us_per_row": round(cpu_sdk * 1e6, 1),
                    "pass": passed,
                }
            )
        )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
