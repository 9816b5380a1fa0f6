"""Measure the figures behind the run-size estimate (workloads/scenario_checks.py CALIBRATION).

``python benchmarks/estimate.py [NAME...]`` runs the built-in scenarios (each design) and prints
events per populated page, per CPU-microsecond of workload phase and per wall second.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from workloads.runner import run_one
from workloads.scenario import load_scenario


def calibrate(names: Sequence[str] | None = None) -> dict[str, float]:
    """Run the built-in scenarios (each design) and measure :data:`CALIBRATION`'s three figures:
    events per populated page (a run cut at 1 ns of workload phase), events per CPU-microsecond of
    workload phase (the default run minus that) and events per wall second (the default run)."""

    per_page = per_cpu_us = 0.0
    per_s = float("inf")
    scenarios = Path(__file__).resolve().parent.parent / "workloads" / "scenarios"
    builtin = sorted([*scenarios.glob("*.toml"), *(p for p in scenarios.glob("*.py") if p.stem != "__init__")])
    for path in builtin:
        name = path.stem
        if names and name not in names:
            continue
        sc = load_scenario(path)
        for design in sc.designs:
            setup = run_one(dataclasses.replace(sc, duration_ns=1), design)["outcome"]["events"]
            t0 = time.perf_counter()
            events = run_one(sc, design)["outcome"]["events"]
            wall = time.perf_counter() - t0
            pages = sum(r.pages for p in sc.processes if p.populate for r in p.regions)
            page_rate = setup / pages if pages else 0.0
            cpu_us = sc.cpus * (sc.duration_ns or 0) / 1000
            cpu_rate = (events - setup) / cpu_us if cpu_us else 0.0
            print(f"{name:20} {design:14} {events:>10,} events {wall:6.2f} s {events / wall:>10,.0f} events/s "
                  f"{page_rate:6.1f}/page {cpu_rate:7.1f}/cpu-us", flush=True)
            per_page, per_cpu_us, per_s = max(per_page, page_rate), max(per_cpu_us, cpu_rate), min(per_s, events / wall)
    return {"events_per_page": per_page, "events_per_cpu_us": per_cpu_us, "events_per_s": per_s}



if __name__ == "__main__":
    print(calibrate(sys.argv[1:] or None))
