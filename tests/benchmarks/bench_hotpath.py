"""The hot path, whole process against whole process: ours, the official async SDK, raw aiohttp.

Run as a script (not collected by pytest)::

    python tests/benchmarks/bench_hotpath.py [--rows 4000] [--concurrency 64] [--repeat 3]
                                             [--server emulator|minimal] [--starts 7] [--json]

One server runs in its own process for the whole benchmark: by default the project's
emulator (``python -m bulk_attach emulator --port 0``), which checks every signature, with a
world holding every pair of every run (500 pairs to a VPC, under its quota of 1000), so each
run attaches rows nobody attached before; ``--server minimal`` takes ``bench_overhead.py``'s
server instead (no signature check, no state) should the emulator's own CPU set the pace.
Three clients then make the same AttachClassicLinkVpc calls at the same concurrency, each a
**whole separate process**, timed from exec to exit, its CPU time (user + system) taken
from ``os.wait4``:

* ours: ``python -m bulk_attach run CSV --report R --endpoint URL --rate 1000000
  --concurrency 64 --quiet --fresh``: the CSV validated and read, one Describe per VPC,
  every row attached, a report row written per row, the summary at the end. ``--rate``
  1,000,000 is a ceiling that never binds (0 would mean "learn the limit from throttling");
* sdk: the official ``alibabacloud-ecs20140526`` async client (``attach_classic_link_vpc_async``,
  signature V3 like ours), ``asyncio.gather`` under a semaphore of the same size, reading
  the pairs from the same kind of CSV with ``csv.reader`` (no validation, no report);
* raw: ``aiohttp`` with one session and V1 signing (HMAC-SHA1, ``hmac`` + ``urllib.parse``),
  the same number of workers taking pairs from the CSV, answers parsed with ``json.loads``:
  the floor, the least a Python client on this event loop can cost.

The three alternate, ``--repeat`` times. For each run: rows/s (wall) and CPU us per row,
and the server's CPU share (from ``/proc/PID/stat``) to show it does not set the pace; then
the medians and ranges, and the ratios ours/SDK and ours/raw on both. Targets (issue 10):
ours >= 3x the SDK and >= 0.7x raw, on wall and CPU (medians). ``bulk-attach --help`` and
``--version`` are timed as whole processes too (best and median of ``--starts``; target
<= 0.3 s median). Exit 1 when a target is missed; ``--json`` adds a ``RESULT {json}`` line.

Only 127.0.0.1; bounded in count (``--rows`` <= 50,000) and in time (each process is killed
after ``TIME_LIMIT``); generated files live in a temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the checkout whose package is measured
REGION = "cn-hangzhou"
AK = "LTAIhotpathbenchmark0001"
SECRET = "hotpath-secret-0123456789abcdef"
ROWS_PER_VPC = 500
TIME_LIMIT = 120.0  # seconds for one client process, whatever happens
SDK_TARGET = 3.0
RAW_TARGET = 0.7
START_TARGET = 0.3  # seconds, --help and --version as whole processes
CLIENTS = ("ours", "sdk", "raw")


def child_env() -> dict[str, str]:
    """The environment of every child: this checkout's package first, keys, no proxies."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        ALIBABA_CLOUD_ACCESS_KEY_ID=AK,
        ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
        ALIBABA_CLOUD_CLI_PROFILE_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    return env


# --- the two foreign clients (each runs as ``bench_hotpath.py --client NAME``) -------------


def read_pairs_plain(path: str) -> list[tuple[str, str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return [(r[0], r[1], r[2]) for r in reader]


def client_sdk(endpoint: str, pairs_path: str, concurrency: int) -> int:
    import asyncio

    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_ecs20140526.models import AttachClassicLinkVpcRequest
    from alibabacloud_tea_openapi.models import Config

    pairs = read_pairs_plain(pairs_path)
    host = endpoint.removeprefix("http://")

    async def main() -> int:
        client = Client(
            Config(
                access_key_id=AK,
                access_key_secret=SECRET,
                endpoint=host,
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

        return sum(await asyncio.gather(*(attach(*p) for p in pairs)))

    return asyncio.run(main())


def client_raw(endpoint: str, pairs_path: str, concurrency: int) -> int:
    """aiohttp, one session, V1 signatures: as lean as a Python client gets."""
    import asyncio
    import base64
    import hashlib
    import hmac
    import uuid
    from datetime import UTC, datetime
    from urllib.parse import quote

    import aiohttp

    pairs = iter(read_pairs_plain(pairs_path))
    key = (SECRET + "&").encode()

    def enc(value: str) -> str:
        return quote(value, safe="-_.~")

    def signed_query(params: dict[str, str]) -> str:
        canonical = "&".join(f"{enc(k)}={enc(params[k])}" for k in sorted(params))
        to_sign = "POST&%2F&" + enc(canonical)
        digest = hmac.new(key, to_sign.encode(), hashlib.sha1).digest()
        return canonical + "&Signature=" + enc(base64.b64encode(digest).decode())

    async def main() -> int:
        done = 0
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                nonlocal done
                for region, instance, vpc in pairs:
                    query = signed_query(
                        {
                            "Action": "AttachClassicLinkVpc",
                            "Version": "2014-05-26",
                            "Format": "JSON",
                            "AccessKeyId": AK,
                            "SignatureMethod": "HMAC-SHA1",
                            "SignatureVersion": "1.0",
                            "SignatureNonce": uuid.uuid4().hex,
                            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "RegionId": region,
                            "InstanceId": instance,
                            "VpcId": vpc,
                        }
                    )
                    async with session.post(f"{endpoint}/?{query}") as answer:
                        body = json.loads(await answer.read())
                    if answer.status == 200 and "RequestId" in body and "Code" not in body:
                        done += 1

            async with asyncio.TaskGroup() as group:
                for _ in range(concurrency):
                    group.create_task(worker())
        return done

    return asyncio.run(main())


# --- the server --------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    endpoint: str
    pid: int

    def cpu(self) -> float:
        """The server's CPU seconds so far (user + system), from /proc."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server(kind: str, world_csv: Path) -> Iterator[Server]:
    """The emulator (or the minimal server) in its own process, stopped on the way out."""
    if kind == "emulator":
        command = [
            sys.executable,
            "-m",
            "bulk_attach",
            "emulator",
            "--port=0",
            f"--world-from={world_csv}",
            f"--access-key-id={AK}",
            f"--access-key-secret={SECRET}",
        ]
    else:
        command = [sys.executable, str(HERE / "bench_overhead.py"), "--serve"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=child_env())
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {kind} server did not start")
        if kind == "emulator":  # "ECS emulator listening on http://127.0.0.1:PORT  (...)"
            endpoint = line.split(" on ", 1)[1].split()[0]
        else:
            endpoint = f"http://127.0.0.1:{json.loads(line)['port']}"
        if not endpoint.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the server is not on loopback: {line!r}")
        # Drain the rest of its banner so it never blocks on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield Server(endpoint=endpoint, pid=process.pid)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- one whole process, timed ------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    code: int
    seconds: float
    cpu: float  # user + system of the child (and of anything it waited for)
    output: str


def timed(command: Sequence[str], cwd: Path, limit: float = TIME_LIMIT) -> Timed:
    """Run ``command`` as its own process: wall time from exec to exit, CPU from wait4."""
    with tempfile.TemporaryFile(dir=cwd) as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=child_env()
        )
        watchdog = threading.Timer(limit, process.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode(errors="replace")
    return Timed(process.returncode, seconds, usage.ru_utime + usage.ru_stime, output)


@dataclass(frozen=True)
class Measure:
    client: str
    rows: int
    seconds: float
    cpu: float
    server_share: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.rows * 1e6

    def __str__(self) -> str:
        return (
            f"{self.client:4} {self.rows} rows in {self.seconds:5.2f} s = {self.rate:6,.0f} rows/s;"
            f" CPU {self.cpu:5.2f} s = {self.cpu_us:4,.0f} us/row"
            f" (server CPU {self.server_share:.0%})"
        )


def write_pairs(path: Path, first: int, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["RegionId", "InstanceId", "VpcId"])
        for n in range(first, first + rows):
            writer.writerow([REGION, f"i-hot{n:012d}", f"vpc-hot{n // ROWS_PER_VPC:07d}"])


def count_attached(report: Path) -> int:
    with report.open(encoding="utf-8", newline="") as handle:
        return sum(1 for row in csv.DictReader(handle) if row["Status"] == "attached")


def measure(client: str, srv: Server, pairs: Path, rows: int, args: argparse.Namespace) -> Measure:
    work = pairs.parent
    if client == "ours":
        report = work / f"{pairs.stem}.report.csv"
        command = [
            sys.executable,
            "-m",
            "bulk_attach",
            "run",
            str(pairs),
            f"--report={report}",
            f"--endpoint={srv.endpoint}",
            "--rate=1000000",
            f"--concurrency={args.concurrency}",
            "--quiet",
            "--fresh",
        ]
    else:
        command = [
            sys.executable,
            __file__,
            f"--client={client}",
            f"--csv={pairs}",
            f"--endpoint={srv.endpoint}",
            f"--concurrency={args.concurrency}",
        ]
    server_cpu = srv.cpu()
    run = timed(command, work)
    server_share = (srv.cpu() - server_cpu) / run.seconds
    if run.code != 0:
        raise RuntimeError(f"{client} exited {run.code}:\n{run.output[-3000:]}")
    done = count_attached(report) if client == "ours" else int(run.output.split()[-1])
    if done != rows:
        raise RuntimeError(f"{client} attached {done} of {rows} rows:\n{run.output[-3000:]}")
    return Measure(client, rows, run.seconds, run.cpu, server_share)


def time_starts(argv: Sequence[str], n: int, work: Path) -> list[float]:
    times = []
    for _ in range(n):
        run = timed([sys.executable, "-m", "bulk_attach", *argv], work, limit=30)
        if run.code != 0:
            raise RuntimeError(f"bulk-attach {' '.join(argv)} exited {run.code}: {run.output}")
        times.append(run.seconds)
    return times


def spread(values: Sequence[float], fmt: str) -> str:
    middle, low, high = (
        format(v, fmt) for v in (statistics.median(values), min(values), max(values))
    )
    return f"{middle} ({low}-{high})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server", choices=("emulator", "minimal"), default="emulator")
    parser.add_argument("--starts", type=int, default=7, help="runs of --help and --version")
    parser.add_argument("--json", action="store_true", help="also print one JSON result line")
    parser.add_argument("--client", choices=("sdk", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        if not args.endpoint.startswith("http://127.0.0.1:"):
            parser.error("loopback only")
        run_client = client_sdk if args.client == "sdk" else client_raw
        print(run_client(args.endpoint, args.csv, args.concurrency))
        return 0

    rows = max(1, min(args.rows, 50_000))
    repeat = max(1, min(args.repeat, 20))
    results: dict[str, list[Measure]] = {name: [] for name in CLIENTS}
    with tempfile.TemporaryDirectory(prefix="bench-hotpath-") as tmp:
        work = Path(tmp)
        # Every client runs from bytecode, as an installed package does (pip compiles at
        # install time): an editable checkout under PYTHONDONTWRITEBYTECODE would compile
        # our ~50 modules from source in every process (~60 ms) and no one else's.
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        world = work / "world.csv"  # every pair of every run, so every attach is new
        warm = 20
        write_pairs(world, 0, rows * len(CLIENTS) * repeat + warm * len(CLIENTS))
        with server(args.server, world) as srv:
            print(
                f"{args.server} server pid {srv.pid} at {srv.endpoint}; {rows} rows, "
                f"concurrency {args.concurrency}, {os.cpu_count()} cores; each client a whole "
                "process (exec to exit), alternating, after one unmeasured warm-up run each"
            )
            first = 0
            for client in CLIENTS:  # writes every client's bytecode
                pairs = work / f"{client}-warm.csv"
                write_pairs(pairs, first, warm)
                first += warm
                measure(client, srv, pairs, warm, args)
            for n in range(repeat):
                for client in CLIENTS:
                    pairs = work / f"{client}-{n}.csv"
                    write_pairs(pairs, first, rows)
                    first += rows
                    results[client].append(measure(client, srv, pairs, rows, args))
                    print(f"  #{n + 1} {results[client][-1]}", flush=True)
        helps = time_starts(["--help"], args.starts, work)
        versions = time_starts(["--version"], args.starts, work)

    rate = {c: statistics.median(m.rate for m in results[c]) for c in CLIENTS}
    cpu = {c: statistics.median(m.cpu_us for m in results[c]) for c in CLIENTS}
    for c in CLIENTS:
        print(
            f"{c:4}: {spread([m.rate for m in results[c]], ',.0f')} rows/s, "
            f"{spread([m.cpu_us for m in results[c]], ',.0f')} CPU us/row (median (range)); "
            f"server CPU {spread([m.server_share * 100 for m in results[c]], '.0f')} %"
        )
    ratios = {
        "sdk_wall": rate["ours"] / rate["sdk"],
        "sdk_cpu": cpu["sdk"] / cpu["ours"],
        "raw_wall": rate["ours"] / rate["raw"],
        "raw_cpu": cpu["raw"] / cpu["ours"],
    }
    per_round = {
        key: [
            (o.rate / f.rate) if key.endswith("wall") else (f.cpu_us / o.cpu_us)
            for o, f in zip(results["ours"], results[key.split("_")[0]], strict=True)
        ]
        for key in ratios
    }
    passed = {
        key: value >= (SDK_TARGET if key.startswith("sdk") else RAW_TARGET)
        for key, value in ratios.items()
    }
    for key, value in ratios.items():
        target = SDK_TARGET if key.startswith("sdk") else RAW_TARGET
        other, what = key.split("_")
        print(
            f"ours / {other} ({what}): {value:.2f}x (per round {min(per_round[key]):.2f}-"
            f"{max(per_round[key]):.2f}; target >= {target}x): "
            f"{'PASS' if passed[key] else 'FAIL'}"
        )
    starts_ok = statistics.median(helps) <= START_TARGET and (
        statistics.median(versions) <= START_TARGET
    )
    print(
        f"bulk-attach --help: best {min(helps):.3f} s, median {statistics.median(helps):.3f} s; "
        f"--version: best {min(versions):.3f} s, median {statistics.median(versions):.3f} s "
        f"(target <= {START_TARGET} s): {'PASS' if starts_ok else 'FAIL'}"
    )
    ok = all(passed.values()) and starts_ok
    if args.json:
        figures: dict[str, Any] = {
            "rows": rows,
            "concurrency": args.concurrency,
            "server": args.server,
            **{f"{c}_rows_per_s": round(rate[c], 1) for c in CLIENTS},
            **{f"{c}_cpu_us_per_row": round(cpu[c], 1) for c in CLIENTS},
            **{f"ratio_{k}": round(v, 3) for k, v in ratios.items()},
            "server_cpu_share_max": round(
                max(m.server_share for ms in results.values() for m in ms), 3
            ),
            "help_s": round(statistics.median(helps), 3),
            "version_s": round(statistics.median(versions), 3),
            "pass": ok,
        }
        print("RESULT " + json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
