"""Run every benchmark, each in its own subprocess, and print one table of the figures.

Run as a script (not collected by pytest)::

    python tests/benchmarks/run_all.py [--only rate,overhead,hotpath,memory,emulator,flow]

Each benchmark's own output is shown as it runs; the table at the end repeats the figures
that matter, with their targets. The exit status is 1 when any target is missed or any
benchmark failed, 0 otherwise. Everything talks to 127.0.0.1 only; every benchmark is
bounded in count and in time, and this runner kills one that overruns ``TIME_LIMIT``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIME_LIMIT = 600.0  # seconds for one benchmark, whatever happens


@dataclass
class Figure:
    benchmark: str
    name: str
    value: str
    target: str = ""
    passed: bool | None = None  # None: no target, only a figure


@dataclass
class Outcome:
    figures: list[Figure] = field(default_factory=list)
    failed: str = ""  # why the benchmark itself failed (crash, timeout, no result)


def run(script: str, *args: str) -> tuple[int, str]:
    """The script's exit status and its whole output, echoed line by line as it comes."""
    command = [sys.executable, str(HERE / script), *args]
    print(f"\n$ python {script} {' '.join(args)}", flush=True)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + TIME_LIMIT
    lines: list[str] = []
    for line in process.stdout:  # the benchmarks bound themselves; this is the backstop
        print(f"  {line}", end="", flush=True)
        lines.append(line)
        if time.monotonic() > deadline:
            process.kill()
            break
    try:
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    return code, "".join(lines)


def result_of(output: str) -> dict[str, Any] | None:
    for line in reversed(output.splitlines()):
        if line.startswith("RESULT "):
            data: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return data
    return None


def rate_figures(data: dict[str, Any]) -> list[Figure]:
    name = "rate fidelity"
    return [
        Figure(
            name,
            "achieved (requests / run time)",
            f"{data['achieved_req_per_s']:.1f} req/s ({data['rows_per_s']:.1f} rows/s)",
            ">= 194 req/s (97 % of 200)",
            bool(data["pass_rate"]),
        ),
        Figure(
            name,
            "largest 1-second window",
            f"{data['max_1s_window']} requests",
            "<= 200",
            bool(data["pass_window"]),
        ),
    ]


def overhead_figures(data: dict[str, Any]) -> list[Figure]:
    name = "overhead"
    return [
        Figure(name, "ours, run_job end to end", f"{data['ours_rows_per_s']:,.0f} rows/s"),
        Figure(name, "official async SDK", f"{data['sdk_rows_per_s']:,.0f} rows/s"),
        Figure(name, "ratio", f"{data['ratio']:.2f}x", ">= 2.5x", bool(data["pass"])),
        Figure(
            name,
            "client CPU per row (ours / SDK)",
            f"{data['ours_cpu_us_per_row']:.0f} / {data['sdk_cpu_us_per_row']:.0f} us "
            f"({data['sdk_cpu_us_per_row'] / data['ours_cpu_us_per_row']:.2f}x)",
        ),
    ]


def hotpath_figures(data: dict[str, Any]) -> list[Figure]:
    name = "hot path"
    figures = [
        Figure(
            name,
            f"{who}, whole process, {data['rows']:,} rows",
            f"{data[f'{key}_rows_per_s']:,.0f} rows/s, "
            f"{data[f'{key}_cpu_us_per_row']:.0f} us CPU/row",
        )
        for key, who in (("ours", "ours"), ("sdk", "official async SDK"), ("raw", "raw aiohttp"))
    ]
    for key, target in (("sdk", 3.0), ("raw", 0.7)):
        wall, cpu = data[f"ratio_{key}_wall"], data[f"ratio_{key}_cpu"]
        figures.append(
            Figure(
                name,
                f"ours / {key} (wall, CPU)",
                f"{wall:.2f}x, {cpu:.2f}x",
                f">= {target}x",
                wall >= target and cpu >= target,
            )
        )
    starts = f"--help {data['help_s']:.2f} s, --version {data['version_s']:.2f} s"
    figures.append(
        Figure(
            name,
            "start-up, median",
            starts,
            "<= 0.3 s",
            max(data["help_s"], data["version_s"]) <= 0.3,
        )
    )
    return figures


def memory_figures(data: dict[str, Any]) -> list[Figure]:
    name = "memory"
    return [
        Figure(name, "baseline (import only)", f"{data['baseline_mb']:.0f} MB"),
        Figure(
            name,
            f"peak RSS, run_job {data['run_rows']:,} rows",
            f"{data['run_peak_mb']:.0f} MB",
            "< 150 MB",
            data["run_peak_mb"] < 150,
        ),
        Figure(
            name,
            f"peak RSS, validate {data['validate_rows']:,} rows",
            f"{data['validate_peak_mb']:.0f} MB",
            "< 400 MB",
            data["validate_peak_mb"] < 400,
        ),
    ]


def plan_figures(data: dict[str, Any]) -> list[Figure]:
    name = "plan/verify"
    rows = f"{data['rows']:,} rows over {data['vpcs']} VPCs"
    plan = ", ".join(f"{action} {n}" for action, n in data["plan_calls"].items())
    return [
        Figure(name, f"plan calls, {rows}", f"{data['plan_calls_total']} ({plan})"),
        Figure(name, f"plan duration at {data['rate']:g}/s", f"{data['plan_seconds']:.1f} s"),
        Figure(name, f"verify calls, {data['rows']:,} rows", f"{data['verify_calls_total']}"),
    ]


def flow_figures(data: dict[str, Any]) -> list[Figure]:
    figures = []
    for cell in data["cells"]:
        halved = "halved" in cell["cell"]
        target = "<= 1.15x, <= 5 %, 0 failed" if halved else "<= 1.10x, <= 3 %, 0 failed"
        figures.append(
            Figure(
                "flow",
                cell["cell"],
                f"{cell['ratio']:.2f}x, {cell['throttled_share']:.1%} throttled, "
                f"{cell['failed']} failed",
                target,
                bool(cell["pass"]),
            )
        )
    return figures


_EMULATOR_LINE = re.compile(r"^\s*(\w+): (\d+) requests in [\d.]+ s = ([\d,]+) req/s", re.M)


def emulator_outcome(code: int, output: str) -> Outcome:
    """bench_emulator.py has no targets and no RESULT line: read its two summary lines."""
    figures = [
        Figure("emulator", f"{workload}, signed, one core", f"{rate} req/s")
        for workload, _, rate in _EMULATOR_LINE.findall(output)
    ]
    if code != 0 or len(figures) != 2:
        return Outcome(figures, f"exit status {code}, {len(figures)} of 2 figures")
    return Outcome(figures)


def json_outcome(
    figures_of: Callable[[dict[str, Any]], list[Figure]], code: int, output: str
) -> Outcome:
    data = result_of(output)
    if data is None:
        return Outcome(failed=f"exit status {code}, no RESULT line")
    return Outcome(figures_of(data))


BENCHMARKS: dict[str, tuple[str, Callable[[int, str], Outcome]]] = {
    "emulator": ("bench_emulator.py", emulator_outcome),
    "rate": ("bench_rate.py", lambda c, o: json_outcome(rate_figures, c, o)),
    "overhead": ("bench_overhead.py", lambda c, o: json_outcome(overhead_figures, c, o)),
    "hotpath": ("bench_hotpath.py", lambda c, o: json_outcome(hotpath_figures, c, o)),
    "memory": ("bench_memory.py", lambda c, o: json_outcome(memory_figures, c, o)),
    "plan": ("bench_plan.py", lambda c, o: json_outcome(plan_figures, c, o)),
    # The full matrix takes about half an hour; run_all takes the quick one.
    "flow": ("bench_flow.py", lambda c, o: json_outcome(flow_figures, c, o)),
}


def table(figures: list[Figure]) -> str:
    rows = [("benchmark", "figure", "value", "target", "")]
    for f in figures:
        verdict = "" if f.passed is None else ("PASS" if f.passed else "FAIL")
        rows.append((f.benchmark, f.name, f.value, f.target, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS)
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)}")

    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform(terse=True)}"
    )
    started = time.monotonic()
    figures: list[Figure] = []
    failures: list[str] = []
    for name in chosen:
        script, outcome_of = BENCHMARKS[name]
        extra: tuple[str, ...] = () if name == "emulator" else ("--json",)
        if name == "flow":
            extra = ("--json", "--quick")
        code, output = run(script, *extra)
        outcome = outcome_of(code, output)
        figures.extend(outcome.figures)
        if outcome.failed:
            failures.append(f"{name}: {outcome.failed}")

    print(f"\nbenchmarks: {time.monotonic() - started:.0f} s on {os.cpu_count()} cores\n")
    print(table(figures))
    missed = [f"{f.benchmark}: {f.name}" for f in figures if f.passed is False]
    for problem in failures:
        print(f"FAILED  {problem}")
    for problem in missed:
        print(f"MISSED  {problem}")
    if failures or missed:
        return 1
    print("every target met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
