"""Parameter sweeps: a grid of scenario overrides run in worker processes, resumable.

Each point (one combination of the grid's values) runs every chosen design and writes
``OUT/points/<key=value,...>/result.json``.  ``OUT/sweep.json`` indexes the points with their status;
it is rewritten (atomically) after every finished point, so an interrupted sweep resumes without
redoing finished points.  A failing point is recorded with its error and the sweep goes on.
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rmapsim.progress import Progress
from workloads.record import atomic_write, dump_json
from workloads.scenario import ScenarioError, load_scenario, parse_value

__all__ = ["GridError", "parse_grid", "point_dir", "run_point", "run_sweep"]

SWEEP_SCHEMA = "rmapsim.sweep/1"


class GridError(ValueError):
    pass


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise GridError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. run.cpus=1,2,4,8")
        if key in grid:
            raise GridError(f"--grid {key!r} given twice")
        grid[key.strip()] = [parse_value(v.strip()) for v in values.split(",")]
    return grid


def point_dir(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items()).replace("/", "_")


def run_point(scenario_path: str, overrides: dict[str, Any], designs: list[str], out: str) -> dict[str, Any]:
    """In a worker process: run one grid point and write its result.json."""
    from workloads.runner import run_scenario

    scenario = load_scenario(scenario_path, overrides)
    results = run_scenario(scenario, designs=designs)
    results["point"] = overrides
    # Only the record: per-point reports would double a point's cost; the sweep's own report
    # covers the grid, and `rmapsim report OUT/points/<point>` renders any point on demand.
    atomic_write(Path(out) / "result.json", dump_json(results))
    return {"ok": True}


def run_sweep(scenario_path: Path, grid_items: list[str], *, designs: list[str], out: Path, jobs: int = 1,
              base_overrides: dict[str, Any] | None = None, seed: int | None = None,
              quiet: bool = False) -> dict[str, Any]:
    grid = parse_grid(grid_items)
    base = dict(base_overrides or {})
    if seed is not None:
        base["run.seed"] = seed
    keys = list(grid)
    points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    # Validate every point up front: bad input fails before any work starts.
    for params in points:
        try:
            load_scenario(scenario_path, {**base, **params})
        except ScenarioError as exc:
            raise GridError(f"grid point {point_dir(params)}: {exc}") from None
    index_path = out / "sweep.json"
    previous: dict[str, dict[str, Any]] = {}
    if index_path.exists():
        for entry in json.loads(index_path.read_text()).get("points", []):
            previous[point_dir(entry["params"])] = entry
    entries: dict[str, dict[str, Any]] = {}
    todo = []
    skipped = 0
    for params in points:
        name = point_dir(params)
        rel = f"points/{name}"
        prev = previous.get(name)
        if prev is not None and prev["status"] == "ok" and (out / rel / "result.json").exists():
            entries[name] = prev
            skipped += 1
        else:
            entries[name] = {"params": params, "status": "pending", "error": None, "result": f"{rel}/result.json"}
            todo.append((name, params, rel))

    def write_index() -> None:
        atomic_write(index_path, dump_json({
            "schema": SWEEP_SCHEMA,
            "scenario": {"source": scenario_path.name},
            "grid": grid,
            "designs": designs,
            "points": [entries[point_dir(p)] for p in points],
        }))

    write_index()
    with Progress(f"sweep {scenario_path.stem}", total=len(points), enabled=not quiet) as progress:
        progress.advance(skipped)
        if jobs <= 1:
            for name, params, rel in todo:
                _finish(entries[name], lambda p=params, r=rel: run_point(
                    str(scenario_path), {**base, **p}, designs, str(out / r)))
                write_index()
                progress.advance()
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(run_point, str(scenario_path), {**base, **params}, designs,
                                       str(out / rel)): name for name, params, rel in todo}
                for fut in as_completed(futures):
                    name = futures[fut]
                    _finish(entries[name], fut.result)
                    write_index()
                    progress.advance()
    from reports import render_sweep

    render_sweep(json.loads(index_path.read_text()), out)
    failed = sum(1 for e in entries.values() if e["status"] == "failed")
    return {"points": len(points), "ok": len(points) - failed, "failed": failed, "skipped": skipped,
            "out": str(out)}


def _finish(entry: dict[str, Any], call: Any) -> None:
    try:
        call()
        entry["status"] = "ok"
        entry["error"] = None
    except Exception as exc:  # a failed point is recorded, the sweep goes on
        entry["status"] = "failed"
        entry["error"] = f"{type(exc).__name__}: {exc}"
