"""How many signed API requests per second the emulator answers on one core.

Run as a script (not collected by pytest)::

    python tests/benchmarks/bench_emulator.py [--requests 20000] [--connections 32]

The emulator runs in a subprocess (its own core); this process is the load generator. To
keep the client from being the bottleneck, every request is signed (V1, a unique nonce each,
so the replay check does real work) *before* the clock starts, as raw HTTP/1.1 bytes, and
sent over keep-alive connections with plain asyncio streams: the cost measured is the
emulator's (parse, verify the signature, remember the nonce, route, run the model, render).

Two workloads: DescribeClassicLinkInstances for one instance, and AttachClassicLinkVpc of
distinct instances (every one a real state change). Bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

from bulk_attach.api.signing import canonical_query, sign_v1

REGION = "cn-hangzhou"
AK = "LTAIbenchbenchbenchbench"
SECRET = "bench-secret-0123456789abcdefg"
VPCS = 40  # 40 x 1000 links of room
TIME_LIMIT = 120.0  # seconds for the whole run, whatever happens

SERVER = f"""
import asyncio, json, sys
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, serve

count = int(sys.argv[1])
model = EcsModel(regions=[{REGION!r}])
for n in range(count):
    model.add_instance(Instance(f"i-{{n:07d}}", {REGION!r}))
for v in range({VPCS}):
    model.add_vpc(Vpc(f"vpc-{{v:03d}}", {REGION!r}))
model.link("i-0000000", "vpc-000")

def ready(running):
    print(json.dumps({{"port": running.port}}), flush=True)

try:
    asyncio.run(serve(model, EmulatorSettings(access_keys={{{AK!r}: {SECRET!r}}}), on_ready=ready))
except KeyboardInterrupt:
    pass
"""


def signed_request(port: int, action: str, params: dict[str, str], now: str) -> bytes:
    all_params = {
        "Action": action,
        "Version": "2014-05-26",
        "Format": "JSON",
        "AccessKeyId": AK,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": now,
        **params,
    }
    all_params["Signature"] = sign_v1("POST", all_params, SECRET)
    return (
        f"POST /?{canonical_query(all_params)} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def build(port: int, workload: str, count: int) -> list[bytes]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    requests = []
    for n in range(count):
        if workload == "describe":
            params = {"RegionId": REGION, "InstanceId": "i-0000000"}
            requests.append(signed_request(port, "DescribeClassicLinkInstances", params, now))
        else:
            params = {
                "RegionId": REGION,
                "InstanceId": f"i-{n + 1:07d}",
                "VpcId": f"vpc-{(n + 1) % VPCS:03d}",
            }
            requests.append(signed_request(port, "AttachClassicLinkVpc", params, now))
    return requests


async def worker(port: int, queue: list[bytes], statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue:
            writer.write(queue.pop())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()
        await writer.wait_closed()


async def measure(port: int, workload: str, count: int, connections: int) -> float:
    queue = build(port, workload, count)
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(worker(port, queue, statuses) for _ in range(connections))),
        TIME_LIMIT,
    )
    elapsed = time.perf_counter() - started
    rate = count / elapsed
    print(f"{workload:>8}: {count} requests in {elapsed:.2f} s = {rate:,.0f} req/s  {statuses}")
    if set(statuses) != {200}:
        print("  (not every answer was 200: the figure is not a clean one)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    count = min(args.requests, 39_000)  # attach needs that many instances (40 VPCs of 1000)

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(count + 1)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert server.stdout is not None
        port = int(json.loads(server.stdout.readline())["port"])
        print(f"emulator pid {server.pid} on 127.0.0.1:{port}, {args.connections} connections")
        for workload in ("describe", "attach"):
            asyncio.run(measure(port, workload, count, args.connections))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
