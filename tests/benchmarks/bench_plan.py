"""Calls made by ``plan`` and ``verify`` for 10,000 rows over 20 VPCs, and plan's duration.

Run as a script (not collected by pytest)::

    python tests/benchmarks/bench_plan.py [--rows 10000] [--vpcs 20] [--rate 20] [--json]

The in-process emulator (127.0.0.1, any free port) holds the fleet; ``plan_job`` runs at
the given rate (the run's default, 20 requests per second per region), then every pair is
linked in the model and ``verify_job`` reads them back, by instance, at the same rate.
Calls are the emulator's own counts. Bounded in count and in time; files in a temporary
directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bulk_attach.api.credentials import Credentials
from bulk_attach.emulator.model import EcsModel, Instance, Vpc
from bulk_attach.emulator.server import EmulatorSettings, running_emulator
from bulk_attach.files.csv_input import read_pairs
from bulk_attach.plan import PlanSettings, plan_job
from bulk_attach.settings import DEFAULT_RATE, ClientSettings
from bulk_attach.verify import VerifySettings, verify_job

REGION = "cn-hangzhou"
TIME_LIMIT = 300.0  # seconds for each job, whatever happens


def calls_of(emulator: Any) -> dict[str, int]:
    return {action: sum(codes.values()) for action, codes in sorted(emulator.calls.items())}


async def measure(rows: int, vpcs: int, rate: float, work: Path) -> dict[str, Any]:
    model = EcsModel(regions=[REGION])
    pairs = work / "pairs.csv"
    lines = ["RegionId,InstanceId,VpcId"]
    for v in range(vpcs):
        model.add_vpc(Vpc(f"vpc-b{v:03d}", REGION))
    for n in range(rows):
        model.add_instance(Instance(f"i-b{n:07d}", REGION))
        lines.append(f"{REGION},i-b{n:07d},vpc-b{n % vpcs:03d}")
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    async with running_emulator(model, EmulatorSettings()) as emu:
        creds = Credentials(emu.access_key_id, emu.access_key_secret, None, "benchmark")
        client = ClientSettings(endpoint=emu.endpoint)
        started = time.monotonic()
        plan = await asyncio.wait_for(
            plan_job(read_pairs(pairs), PlanSettings(work / "plan.csv", rate=rate), client, creds),
            TIME_LIMIT,
        )
        plan_seconds = time.monotonic() - started
        plan_calls = calls_of(emu.emulator)
        for n in range(rows):  # as a run would leave them
            emu.model.link(f"i-b{n:07d}", f"vpc-b{n % vpcs:03d}")
        emu.emulator.calls.clear()
        started = time.monotonic()
        verify = await asyncio.wait_for(
            verify_job(read_pairs(pairs), VerifySettings(work / "v.csv", rate=rate), client, creds),
            TIME_LIMIT,
        )
        verify_seconds = time.monotonic() - started
        verify_calls = calls_of(emu.emulator)
    if plan.summary["by_status"]["would_attach"] != rows:
        raise RuntimeError(f"plan: {plan.summary['by_status']}")
    if verify.summary["by_status"]["linked"] != rows:
        raise RuntimeError(f"verify: {verify.summary['by_status']}")
    return {
        "rows": rows,
        "vpcs": vpcs,
        "rate": rate,
        "plan_calls": plan_calls,
        "plan_calls_total": sum(plan_calls.values()),
        "plan_seconds": round(plan_seconds, 2),
        "verify_calls": verify_calls,
        "verify_calls_total": sum(verify_calls.values()),
        "verify_seconds": round(verify_seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--vpcs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE)
    parser.add_argument("--json", action="store_true", help="print a RESULT {json} line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = asyncio.run(measure(args.rows, args.vpcs, args.rate, Path(scratch)))
    print(f"plan of {data['rows']:,} rows over {data['vpcs']} VPCs at {data['rate']:g}/s:")
    for action, n in data["plan_calls"].items():
        print(f"  {action}: {n}")
    print(f"  total {data['plan_calls_total']} calls in {data['plan_seconds']:.1f} s")
    print(f"verify of {data['rows']:,} rows (all linked), by instance:")
    for action, n in data["verify_calls"].items():
        print(f"  {action}: {n}")
    print(f"  total {data['verify_calls_total']} calls in {data['verify_seconds']:.1f} s")
    if args.json:
        print("RESULT " + json.dumps(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
