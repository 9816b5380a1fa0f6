"""Parameter sweeps: a grid of scenario overrides, one task per point, resumable by identity.

Each point (one combination of the grid's values) runs every chosen design as one task of the
executor (workloads/executor.py: in this process, local worker processes or Dask distributed, with
identical results).  The task travels as the scenario's source and overrides; its results come back
here and are written as each finishes: ``OUT/points/<key=value,...>/result.json``.  ``OUT/sweep.json``
indexes the points (rewritten atomically as points finish, at most twice a second, and at the end).

**Identity.**  A point's ``key`` is the sha256 of everything that determines its result: the
scenario file's content, every override (``--set``, ``--seed`` and the grid's), the designs, the
seed and perturbation the scenario ends up with, and the code version (the simulator's sources).
Rerunning a sweep resumes a point only when its key is unchanged and it finished; any other point
runs again, and the summary says how many were resumed, how many ran, and why.

**Verdicts.**  A point is ``ok`` only if every design ran to completion with its invariants
holding, no rmap walk missed a mapping and lockdep found no lock-order violation.  Otherwise it is
``failed`` with its ``category`` (workloads/explore.py's: ``crash``, ``deadlock``, ``corruption``,
``missed_mapping``, ``lock_order``, ``invariant``; or ``worker_lost`` when its worker died under it,
``error`` when the executor could not run it) and a one-line ``error``, in sweep.json, sweep.txt and
the HTML report; the sweep goes on, and exits 1.

**Interrupts.**  SIGINT or SIGTERM stops dispatching, cancels the running points and keeps the
finished ones (the others stay ``pending``): rerunning the same command resumes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from records.result import JsonObject, json_list, json_obj, json_object
from records.schema import SWEEP_SCHEMA
from rmapsim.progress import Progress
from workloads.executor import Backend, Executor, Outcome, code_version, interrupts
from workloads.explore import CATEGORIES, ScenarioSource, classify
from workloads.record import atomic_write, dump_json
from workloads.scenario import Scenario, ScenarioError, parse_value

__all__ = ["GridError", "PointTask", "parse_grid", "point_dir", "point_key", "run_point", "run_sweep"]

# Failures that say nothing about the point itself: rerun on resume even with an unchanged key.
TRANSIENT = ("worker_lost", "error")
POINT_CATEGORIES = (*CATEGORIES, "worker_lost", "error")
_IDENTITY_FIELDS = (("scenario", "scenario file"), ("overrides", "overrides"), ("designs", "designs"),
                    ("seed", "seed"), ("perturb", "perturbation"), ("code", "code"))


class GridError(ValueError):
    pass


class DesignVerdict(TypedDict):
    """One design's verdict at a point: its failure categories (none: sound) and a one-line detail."""

    categories: list[str]
    detail: str


class PointReply(TypedDict):
    """What :func:`run_point` sends back from its worker."""

    results: JsonObject | None  # the point's result.json (None when no design produced a record)
    verdicts: dict[str, DesignVerdict]
    code: str  # the code version that ran it


class PointEntry(TypedDict):
    """One point of sweep.json's ``points``."""

    params: dict[str, object]  # the grid's values at this point
    key: str  # sha256 of its identity
    identity: dict[str, object]  # everything that determines its result
    status: str  # pending, ok or failed
    category: str | None  # the first of ``categories``, when failed
    categories: list[str]
    error: str | None
    result: str | None  # its result.json, relative to the sweep folder
    designs: dict[str, DesignVerdict]


class Failure(TypedDict):
    params: dict[str, object]
    category: str | None
    error: str | None


class SweepSummary(TypedDict):
    """What :func:`run_sweep` returns (and ``rmapsim sweep --json`` prints)."""

    points: int
    ok: int
    failed: int
    pending: int
    resumed: int
    ran: int
    reasons: dict[str, int]  # why points ran again, and how many
    categories: dict[str, int]  # failed points per category
    failures: list[Failure]
    interrupted: bool
    backend: str
    out: str


def parse_grid(items: list[str]) -> dict[str, list[object]]:
    grid: dict[str, list[object]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise GridError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. run.cpus=1,2,4,8")
        if key in grid:
            raise GridError(f"--grid {key!r} given twice")
        grid[key.strip()] = [parse_value(v.strip()) for v in values.split(",")]
    return grid


def point_dir(params: Mapping[str, object]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items()).replace("/", "_")


def point_key(identity: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- one point, in whatever worker ------------------------------------------------------------------


@dataclass(frozen=True)
class PointTask:
    """What a worker needs to run one point: the scenario's source with the point's overrides
    applied (TOML data, or a Python file and its overrides) and the designs."""

    source: ScenarioSource
    designs: tuple[str, ...]


def run_point(task: PointTask) -> PointReply:
    """Run every design of one point and judge each run; returns the result document (None when no
    design produced a record), each design's verdict, and the code version that ran it."""
    from concurrency.engine import Deadlock
    from workloads.runner import RunFailed, run_scenario

    doc: JsonObject | None = None
    runs: list[JsonObject] = []
    verdicts: dict[str, DesignVerdict] = {}
    try:
        scenario = task.source.load()
    except ScenarioError as exc:
        return {"results": None, "verdicts": {d: {"categories": ["crash"], "detail": str(exc)} for d in task.designs},
                "code": code_version()}
    for design in task.designs:
        try:
            part = run_scenario(scenario, designs=[design])
        except RunFailed as exc:
            category = "deadlock" if isinstance(exc.__cause__, Deadlock) else "crash"
            verdicts[design] = {"categories": [category], "detail": str(exc).splitlines()[0]}
            continue
        except Exception as exc:  # the model broke outside a task (set-up, end-of-run checks)
            verdicts[design] = {"categories": ["crash"], "detail": f"{type(exc).__name__}: {exc}"}
            continue
        record = json_obj(json_list(part["runs"], "runs")[0], "runs[0]")
        categories, detail, _ = classify(record)
        verdicts[design] = {"categories": categories, "detail": detail}
        if doc is None:
            doc = {**part, "runs": []}
        runs.append(record)
        doc["runs"] = [*runs]
    return {"results": doc, "verdicts": verdicts, "code": code_version()}


# -- the sweep ------------------------------------------------------------------------------------------


def _why_rerun(prev: Mapping[str, object] | None, identity: dict[str, object], out: Path) -> str | None:
    """Why a point runs again (None: its previous result stands)."""
    if prev is None:
        return "new point"
    old = prev.get("identity")
    if not isinstance(old, dict):
        return "no identity recorded (an older sweep)"
    changed = [name for field, name in _IDENTITY_FIELDS if old.get(field) != identity[field]]
    if changed:
        return "changed: " + ", ".join(changed)
    if prev.get("status") not in ("ok", "failed"):
        return "not finished"
    if prev.get("category") in TRANSIENT:
        return f"{prev['category']} before"
    if prev.get("result") and not (out / str(prev["result"])).exists():
        return "result file missing"
    return None


def _mapping(value: object) -> Mapping[str, object]:
    """A JSON object of a previous sweep.json (anything else: that file is unreadable)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {value!r}")
    return value


def _opt_str(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected a string or null, got {value!r}")
    return value


def _strs(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return [str(v) for v in value]


def _resumed(prev: Mapping[str, object], params: dict[str, object], identity: dict[str, object]) -> PointEntry | None:
    """A finished point of a previous sweep.json, kept as it was (None: it does not read as one,
    and runs again)."""
    try:
        designs: dict[str, DesignVerdict] = {}
        for design, verdict in _mapping(prev.get("designs", {})).items():
            v = _mapping(verdict)
            designs[design] = {"categories": _strs(v["categories"]), "detail": str(v["detail"])}
        return {"params": params, "key": point_key(identity), "identity": identity, "status": str(prev["status"]),
                "category": _opt_str(prev.get("category")), "categories": _strs(prev.get("categories", [])),
                "error": _opt_str(prev.get("error")), "result": _opt_str(prev.get("result")), "designs": designs}
    except (KeyError, TypeError):
        return None


def _verdict(entry: PointEntry, outcome: Outcome[PointReply], out: Path, rel: str) -> None:
    """Fill a point's index entry from what came back (and write its result file first).  The entry
    changes in one step, so an interrupt never leaves it half-updated."""
    new: PointEntry = {**entry, "status": "failed", "category": None, "categories": [], "error": None,
                       "result": None, "designs": {}}
    reply: PointReply | None = outcome.value if outcome.ok else None  # run_point's, from its worker
    if reply is None:
        category = "worker_lost" if outcome.lost else "error"
        new.update({"category": category, "categories": [category], "error": outcome.error})
    elif reply.get("code") != code_version():
        new.update({"category": "error", "categories": ["error"],
                    "error": f"the worker runs rmapsim {reply.get('code')}, this sweep {code_version()}: "
                             "install the same code on every worker"})
    else:
        if reply["results"] is not None:
            results = dict(reply["results"])
            results["point"] = json_object(entry["identity"]["overrides"], "identity.overrides")
            atomic_write(out / rel / "result.json", dump_json(results))
            new["result"] = f"{rel}/result.json"
        verdicts = reply["verdicts"]
        new["designs"] = verdicts
        found = {c for v in verdicts.values() for c in v["categories"]}
        cats = [c for c in POINT_CATEGORIES if c in found]
        if cats:
            first = next(d for d, v in verdicts.items() if cats[0] in v["categories"])
            new.update({"category": cats[0], "categories": cats, "error": f"{first}: {verdicts[first]['detail']}"})
        else:
            new["status"] = "ok"
    entry.update(new)


def run_sweep(scenario_path: Path, grid_items: list[str], *, designs: list[str], out: Path,
              backend: Backend | None = None, base_overrides: Mapping[str, object] | None = None,
              seed: int | None = None, quiet: bool = False,
              check: Callable[[Scenario], None] | None = None) -> SweepSummary:
    """Run (or resume) a sweep; returns its summary (``interrupted`` True when a signal stopped it:
    the finished points are in sweep.json, the report is not rendered).  Raises :class:`GridError`
    for a bad grid or point, and :class:`~workloads.executor.BackendError` for an unusable backend,
    before any work starts; ``check(scenario)`` of each point (the command line's size check) too."""
    backend = backend or Backend()
    grid = parse_grid(grid_items)
    base = dict(base_overrides or {})
    if seed is not None:
        base["run.seed"] = seed
    keys = list(grid)
    combos = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    content = hashlib.sha256(scenario_path.read_bytes()).hexdigest()
    # Validate every point up front: bad input fails before any work starts.
    points: list[tuple[str, dict[str, object], PointTask, dict[str, object]]] = []
    scenario_name, description = scenario_path.stem, ""
    for params in combos:
        overrides = {**base, **params}
        try:
            source = ScenarioSource.from_path(scenario_path, overrides)
            scenario = source.load()
        except ScenarioError as exc:
            if exc.file == "--set" and exc.key in params:  # the grid's value, not a --set
                exc = ScenarioError("--grid", None, exc.key, exc.message)
            raise GridError(f"grid point {point_dir(params)}: {exc}") from None
        if check is not None:
            check(scenario)
        if not points:
            scenario_name, description = scenario.name, scenario.description
        identity: dict[str, object] = {"scenario": {"file": scenario_path.name, "sha256": content},
                    "overrides": dict(sorted(overrides.items())), "designs": list(designs),
                    "seed": scenario.seed, "perturb": scenario.perturb.to_dict(), "code": code_version()}
        points.append((point_dir(params), params, PointTask(source, tuple(designs)), identity))

    index_path = out / "sweep.json"
    previous: dict[str, Mapping[str, object]] = {}
    if index_path.exists():
        try:
            for entry in json.loads(index_path.read_text()).get("points", []):
                previous[point_dir(entry["params"])] = _mapping(entry)
        except (ValueError, KeyError, TypeError, AttributeError):
            previous = {}  # unreadable: every point runs again ("new point")
    entries: dict[str, PointEntry] = {}
    todo: list[int] = []
    reasons: dict[str, int] = {}
    for i, (name, params, _, identity) in enumerate(points):
        prev = previous.get(name)
        why = _why_rerun(prev, identity, out)
        kept = _resumed(prev, params, identity) if why is None and prev is not None else None
        if kept is not None:
            entries[name] = kept
            continue
        why = why or "unreadable entry"
        reasons[why] = reasons.get(why, 0) + 1
        entries[name] = {"params": params, "key": point_key(identity), "identity": identity, "status": "pending",
                         "category": None, "categories": [], "error": None, "result": None, "designs": {}}
        todo.append(i)
    resumed = len(points) - len(todo)

    def write_index() -> None:
        atomic_write(index_path, dump_json({
            "schema": SWEEP_SCHEMA,
            "scenario": {"name": scenario_name, "description": description, "source": scenario_path.name,
                         "sha256": content},
            "grid": grid,
            "overrides": dict(sorted(base.items())),
            "designs": designs,
            "code": code_version(),
            "points": [entries[name] for name, _, _, _ in points],
        }))

    executor = Executor(backend).start()  # an unusable backend is bad input: nothing written yet
    interrupted = False
    with interrupts():
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_index()
            last = [time.monotonic()]

            def on_result(j: int, outcome: Outcome[PointReply]) -> None:
                name = points[todo[j]][0]
                _verdict(entries[name], outcome, out, f"points/{name}")
                progress.advance()
                if time.monotonic() - last[0] >= 0.5:
                    write_index()
                    last[0] = time.monotonic()

            with executor, Progress(f"sweep {scenario_name}", total=len(points), enabled=not quiet) as progress:
                progress.advance(resumed)
                executor.map(run_point, [points[i][2] for i in todo], on_result)
            write_index()
            from reports import render_sweep
            from rmapsim.outputs import uninterrupted

            # Ctrl-C while the report is drawn lets it finish: never a partial report set.
            uninterrupted(render_sweep, json.loads(index_path.read_text()), out)
        except KeyboardInterrupt:
            interrupted = True
            write_index()
        finally:
            executor.close(hard=True)  # a no-op after a normal end
    statuses = [entries[name] for name, _, _, _ in points]
    failed = [e for e in statuses if e["status"] == "failed"]
    by_category: dict[str, int] = {}
    for e in failed:
        category = str(e["category"])  # a failed point has one
        by_category[category] = by_category.get(category, 0) + 1
    return {
        "points": len(points),
        "ok": sum(1 for e in statuses if e["status"] == "ok"),
        "failed": len(failed),
        "pending": sum(1 for e in statuses if e["status"] == "pending"),
        "resumed": resumed,
        "ran": len(todo),
        "reasons": dict(sorted(reasons.items())),
        "categories": dict(sorted(by_category.items())),
        "failures": [{"params": e["params"], "category": e["category"], "error": e["error"]} for e in failed],
        "interrupted": interrupted,
        "backend": backend.describe(),
        "out": str(out),
    }
