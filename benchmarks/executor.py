"""The executor's backends: per-task overhead, and a 32-point sweep on 2 local workers vs 1.

``python -m benchmarks.executor [--points 32] [--tasks 200] [--repeats 1] [--json]``

* **Overhead per task**: ``--tasks`` tasks that do nothing but return a reply the size of a real
  sweep point's (the result document of fork-heavy under both designs, about 0.3 MB of JSON), through
  each backend; the wall time per task once the backend is up, and what starting and stopping it costs.
* **Speedup**: the same sweep (fork-heavy, 2 ms of virtual time, both designs, ``--points`` seeds)
  with ``--jobs 1``, ``--jobs 2`` and ``--cluster local:2`` (taking turns ``--repeats`` times, the best
  wall time of each kept); wall time and speedup over ``--jobs 1``.
  The sweeps write into a temporary folder; their sweep.json files are compared byte for byte.

Timings are wall-clock on whatever else the machine is doing: run it on a quiet machine.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from workloads.executor import Backend, Executor, Outcome

if TYPE_CHECKING:
    from rmapsim.sweep import PointReply

BACKENDS = {"--jobs 1": Backend(), "--jobs 2": Backend("processes", 2), "--cluster local:2": Backend("dask", 2)}


@functools.cache
def _reply() -> PointReply:
    """A real point's reply, built once per process (what a task ships back)."""
    from rmapsim.cli import builtin_scenarios
    from workloads.runner import run_scenario
    from workloads.scenario import load_scenario

    scenario = load_scenario(builtin_scenarios()["fork-heavy"], {"run.duration_ns": 300_000})
    return {"results": run_scenario(scenario), "verdicts": {}, "code": ""}


def reply_task(_: int) -> PointReply:
    return _reply()


def warm_task(_: int) -> int:
    _reply()
    return 0


def overhead(backend: Backend, tasks: int) -> dict[str, float]:
    got: list[Outcome[PointReply]] = []
    start = time.perf_counter()
    with Executor(backend) as ex:
        up = time.perf_counter()
        n = max(backend.workers, 1)
        ex.map(warm_task, list(range(n)), lambda i, o: None)  # every worker builds its reply once
        t0 = time.perf_counter()
        ex.map(reply_task, list(range(tasks)), lambda i, o: got.append(o))
        t1 = time.perf_counter()
    end = time.perf_counter()
    assert len(got) == tasks and all(o.ok for o in got)
    return {"start_s": round(up - start, 3), "per_task_ms": round((t1 - t0) * 1000 / tasks, 3),
            "close_s": round(end - t1, 3)}


def sweep(backend: Backend, points: int, out: Path) -> tuple[float, int]:
    from rmapsim.cli import builtin_scenarios
    from rmapsim.sweep import run_sweep

    start = time.perf_counter()
    summary = run_sweep(builtin_scenarios()["fork-heavy"], [f"run.seed={','.join(map(str, range(1, points + 1)))}"],
                        designs=["anon_vma", "cow_context"], out=out, backend=backend, quiet=True,
                        base_overrides={"run.duration_ns": 2_000_000})
    wall = time.perf_counter() - start
    assert summary["ran"] == points, summary
    return wall, summary["ok"] + sum(1 for f in summary["failures"] if f["category"] not in ("error", "worker_lost"))


class SweepFigures(TypedDict):
    wall_s: float  # the best of the repeats
    points_run: int
    speedup: float  # against --jobs 1


def main(argv: list[str]) -> int:
    points = int(argv[argv.index("--points") + 1]) if "--points" in argv else 32
    tasks = int(argv[argv.index("--tasks") + 1]) if "--tasks" in argv else 200
    repeats = int(argv[argv.index("--repeats") + 1]) if "--repeats" in argv else 1
    reply_kb = len(json.dumps(_reply())) / 1024
    loadavg_before = os.getloadavg()[0]
    overheads = {name: overhead(backend, tasks) for name, backend in BACKENDS.items()}
    walls: dict[str, tuple[float, int]] = {}  # per backend: best wall seconds, points computed
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):  # the backends take turns; each keeps its best wall time
            for name, backend in BACKENDS.items():
                folder = Path(tmp) / f"{name.replace(' ', '')}-{r}"
                wall, ran = sweep(backend, points, folder)
                best = walls[name][0] if name in walls else float("inf")
                walls[name] = (round(min(wall, best), 2), ran)
        base = walls["--jobs 1"][0]
        sweeps: dict[str, SweepFigures] = {name: {"wall_s": w, "points_run": ran, "speedup": round(base / w, 2)}
                                           for name, (w, ran) in walls.items()}
        identical = len({p.read_bytes() for p in Path(tmp).glob("*/sweep.json")}) == 1
    loadavg_after = os.getloadavg()[0]
    if "--json" in argv:
        print(json.dumps({"reply_kb": round(reply_kb, 1), "overhead": overheads, "sweep": sweeps,
                          "cpus": os.cpu_count(), "loadavg_before": loadavg_before,
                          "sweep_json_identical": identical, "loadavg_after": loadavg_after}, sort_keys=True))
        return 0
    print(f"overhead per task (a {reply_kb:.0f} KB reply, {tasks} tasks):")
    for name, o in overheads.items():
        print(f"  {name:<18} {o['per_task_ms']:8.2f} ms per task; start {o['start_s']:.2f} s, "
              f"stop {o['close_s']:.2f} s")
    print(f"sweep of {points} points (fork-heavy, 2 ms virtual, anon_vma + cow_context):")
    for name, s in sweeps.items():
        print(f"  {name:<18} {s['wall_s']:8.2f} s  speedup {s['speedup']:.2f}x  ({s['points_run']} points computed)")
    print(f"  sweep.json identical across backends: {identical}")
    print(f"{os.cpu_count()} CPUs; 1-minute load average {loadavg_before:.1f} before, {loadavg_after:.1f} after")
    return 0


if __name__ == "__main__":  # the guard LocalCluster's spawned workers need
    raise SystemExit(main(sys.argv[1:]))
