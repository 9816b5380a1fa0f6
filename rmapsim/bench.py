"""Benchmarks: the engine against SimPy on the contended-mutex model (issue #2).

64 tasks on 64 CPUs, each 1600 iterations of think, acquire a FIFO hand-off mutex, hold, release.
Spinning and every lock overhead cost are off so both simulators model the same thing.  Durations
are pre-drawn: task i uses ``random.Random(42000 + i)`` and draws, per iteration,
``think_ns = round(rng.expovariate(1 / 10_000))`` then ``hold_ns = round(rng.expovariate(1 / 1_000))``.
The simulated results are the virtual time of the last release (``end_ns``) and the mean of
(grant - request) over all acquisitions (``mean_wait_ns``); both simulators must agree exactly.

The engine runs twice: with its default executor, the stepper, and with the trio executor (each
simulated CPU a trio task, control handed between them through trio's scheduler; see
concurrency/trio_executor.py).  Both must give the same simulated results; the benchmark prints
the acquisitions per second of each beside SimPy's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from concurrency.executors import engine_class
from concurrency.mutex import Mutex

if TYPE_CHECKING:
    from simpy.events import Event

__all__ = ["RUN_CASES", "EngineBench", "MemoryBench", "compiled_build_installed", "draws", "format_run_bench",
           "format_scale_bench", "run_engine", "run_engine_bench", "run_memory_bench", "run_run_bench",
           "run_scale_bench", "run_simpy"]

TASKS = 64
ITERATIONS = 1600


def draws(tasks: int = TASKS, iterations: int = ITERATIONS) -> list[list[tuple[int, int]]]:
    out = []
    for i in range(tasks):
        rng = random.Random(42000 + i)
        seq = []
        for _ in range(iterations):
            think = round(rng.expovariate(1 / 10_000))
            hold = round(rng.expovariate(1 / 1_000))
            seq.append((think, hold))
        out.append(seq)
    return out


def run_engine(inputs: list[list[tuple[int, int]]], executor: str = "stepper") -> tuple[int, float, int]:
    """This engine: returns (end_ns, mean_wait_ns, acquisitions)."""
    engine = engine_class(executor)(len(inputs), seed=0)
    mutex = Mutex(engine, "bench_mutex", spin=False, direct_handoff=True)
    total_wait = 0
    acquisitions = 0
    end_ns = 0

    async def worker(seq: list[tuple[int, int]]) -> None:
        nonlocal total_wait, acquisitions, end_ns
        for think, hold in seq:
            await engine.delay(think)
            requested = engine.now
            await mutex.lock()
            total_wait += engine.now - requested
            acquisitions += 1
            await engine.delay(hold)
            mutex.unlock()
            end_ns = engine.now

    for i, seq in enumerate(inputs):
        engine.spawn(f"bench{i}", worker, seq, cpu=i)
    engine.run()
    return end_ns, total_wait / acquisitions, acquisitions


def run_simpy(inputs: list[list[tuple[int, int]]]) -> tuple[int, float, int]:
    """SimPy: one ``Resource(capacity=1)`` (FIFO hand-off), same inputs."""
    import simpy

    env = simpy.Environment()
    res = simpy.Resource(env, capacity=1)
    total_wait = 0
    acquisitions = 0
    end_ns = 0

    def worker(seq: list[tuple[int, int]]) -> Generator[Event, object, None]:
        nonlocal total_wait, acquisitions, end_ns
        for think, hold in seq:
            yield env.timeout(think)
            requested = int(env.now)
            with res.request() as req:
                yield req
                total_wait += int(env.now - requested)
                acquisitions += 1
                yield env.timeout(hold)
            end_ns = int(env.now)

    for seq in inputs:
        env.process(worker(seq))
    env.run()
    return int(end_ns), total_wait / acquisitions, acquisitions


@dataclass(frozen=True)
class EngineBench:
    engine_acq_per_s: float  # the default executor, the stepper
    simpy_acq_per_s: float
    ratio: float  # stepper / SimPy
    end_ns: int
    mean_wait_ns: float
    simpy_end_ns: int
    simpy_mean_wait_ns: float
    trio_acq_per_s: float = 0.0  # the trio executor
    trio_end_ns: int = 0
    trio_mean_wait_ns: float = 0.0

    @property
    def trio_ratio(self) -> float:
        """trio executor / SimPy."""
        return self.trio_acq_per_s / self.simpy_acq_per_s

    @property
    def trio_vs_stepper(self) -> float:
        return self.trio_acq_per_s / self.engine_acq_per_s

    @property
    def agree(self) -> bool:
        return (self.end_ns == self.simpy_end_ns == self.trio_end_ns
                and self.mean_wait_ns == self.simpy_mean_wait_ns == self.trio_mean_wait_ns)

    def to_dict(self) -> dict[str, int | float | bool]:
        return {"engine_acq_per_s": round(self.engine_acq_per_s), "simpy_acq_per_s": round(self.simpy_acq_per_s),
                "ratio": round(self.ratio, 3), "end_ns": self.end_ns, "mean_wait_ns": self.mean_wait_ns,
                "trio_acq_per_s": round(self.trio_acq_per_s), "trio_ratio": round(self.trio_ratio, 3),
                "trio_vs_stepper": round(self.trio_vs_stepper, 3), "agree": self.agree}


def run_engine_bench(repeats: int = 3, tasks: int = TASKS, iterations: int = ITERATIONS) -> EngineBench:
    """Best of ``repeats`` for each simulator (the stepper, the trio executor, SimPy), interleaved
    so machine noise hits all three, in this process's CPU time: on a machine that other jobs
    share, wall time measures them too (the best wall times of two simulators came from different
    moments of load, and their ratio swung from 2x to 4x between two runs)."""
    inputs = draws(tasks, iterations)
    best_engine = best_trio = best_simpy = float("inf")
    engine_result = trio_result = simpy_result = (0, 0.0, 0)
    for _ in range(repeats):
        t0 = time.process_time()
        engine_result = run_engine(inputs)
        t1 = time.process_time()
        simpy_result = run_simpy(inputs)
        t2 = time.process_time()
        trio_result = run_engine(inputs, executor="trio")
        t3 = time.process_time()
        best_engine = min(best_engine, t1 - t0)
        best_simpy = min(best_simpy, t2 - t1)
        best_trio = min(best_trio, t3 - t2)
    acq = engine_result[2]
    return EngineBench(acq / best_engine, acq / best_simpy, best_simpy / best_engine, engine_result[0],
                       engine_result[1], simpy_result[0], simpy_result[1], acq / best_trio, trio_result[0],
                       trio_result[1])


def format_engine_bench(b: EngineBench) -> str:
    lines = [
        f"contended mutex: {TASKS} tasks x {ITERATIONS} acquisitions (best of runs, CPU time)",
        f"  rmapsim stepper       : {b.engine_acq_per_s:>12,.0f} acquisitions/s  {b.ratio:.2f}x SimPy "
        "(the default; issue 14's target: 2.5x, compiled)",
        f"  rmapsim trio executor : {b.trio_acq_per_s:>12,.0f} acquisitions/s  {b.trio_ratio:.2f}x SimPy, "
        f"{b.trio_vs_stepper:.2f}x the stepper",
        f"  SimPy                 : {b.simpy_acq_per_s:>12,.0f} acquisitions/s",
        f"  simulated             : end {b.end_ns} ns, mean wait {b.mean_wait_ns:.3f} ns "
        f"(trio executor: end {b.trio_end_ns} ns, mean wait {b.trio_mean_wait_ns:.3f} ns; "
        f"SimPy: end {b.simpy_end_ns} ns, mean wait {b.simpy_mean_wait_ns:.3f} ns) "
        f"-> {'identical' if b.agree else 'DIFFERENT'}",
    ]
    return "\n".join(lines)


# -- memory: a million resident folios ---------------------------------------------------------------


@dataclass(frozen=True)
class MemoryBench:
    design: str
    folios: int
    bytes_per_folio: float
    peak_rss_mb: float
    faults_per_s: float

    def to_dict(self) -> dict[str, str | int | float]:
        return {"design": self.design, "folios": self.folios, "bytes_per_folio": round(self.bytes_per_folio, 1),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "faults_per_s": round(self.faults_per_s)}


def run_memory_bench(folios: int = 1_000_000, design: str = "anon_vma") -> MemoryBench:
    """Fault ``folios`` pages into one process, then exit it; measure the simulator process.

    bytes/folio is the peak resident-set growth over the baseline after imports, divided by the
    folios resident at the peak (each with its PTE, LRU entry, share of page tables and PTLs).
    Run it in a fresh process (``rmapsim bench memory``): ``ru_maxrss`` is a process-wide peak.
    """
    import resource

    from actors.process import Region
    from workloads.runner import run_one
    from workloads.scenario import ProcessSpec, Scenario

    scenario = Scenario(
        name="bench-memory", designs=(design,), cpus=1, duration_ns=1, max_events=10**9, lockdep=False,
        processes=(ProcessSpec("big", (Region(0, folios),), populate=True),),
    )
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    record = run_one(scenario, design)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    faults = record["operations"]["populate"]["count"]
    return MemoryBench(design, faults, (peak_kb - base_kb) * 1024 / faults, peak_kb / 1024,
                       (faults + record["operations"]["exit"]["count"]) / wall)


def format_memory_bench(b: MemoryBench) -> str:
    return (f"{b.folios:,} resident folios under {b.design}: {b.bytes_per_folio:.0f} bytes/folio, "
            f"peak RSS {b.peak_rss_mb:.0f} MB (target: 1,000,000 folios in 1 GB); "
            f"{b.faults_per_s:,.0f} simulated operations per wall second")


# -- tracing: what a Chrome trace costs, and what it costs when off ------------------------------------


class TraceBench(TypedDict):
    """``rmapsim bench trace``: best wall seconds with tracing off and on, and what tracing adds."""

    off_s: float
    on_s: float
    overhead_pct: float
    trace_events: int
    sim_events: int


def run_trace_bench(repeats: int = 3, duration_ns: int = 2_000_000) -> TraceBench:
    """fork-heavy under anon_vma with tracing off (no tracer attached) and on (ChromeTracer).

    Off, every lock operation pays one ``engine.hooks.on_... is not None`` test; on, every acquisition,
    release, contention and operation becomes trace events.  Best of ``repeats`` each, interleaved.
    """
    from concurrency.trace import ChromeTracer
    from workloads.runner import run_one
    from workloads.scenario import load_scenario

    path = Path(__file__).resolve().parent.parent / "workloads" / "scenarios" / "fork-heavy.toml"
    scenario = load_scenario(path, {"run.duration_ns": duration_ns})
    best_off = best_on = float("inf")
    events = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        off = run_one(scenario, "anon_vma")
        t1 = time.perf_counter()
        tracer = ChromeTracer()
        on = run_one(scenario, "anon_vma", tracer=tracer)
        t2 = time.perf_counter()
        best_off, best_on = min(best_off, t1 - t0), min(best_on, t2 - t1)
        events = len(tracer.events())
        assert off["outcome"] == on["outcome"], "tracing must not change the simulation"
    return {"off_s": round(best_off, 3), "on_s": round(best_on, 3),
            "overhead_pct": round(100 * (best_on / best_off - 1), 1), "trace_events": events,
            "sim_events": int(off["outcome"]["events"])}


# -- run: what a user waits for, command by command ------------------------------------------------------

# (label, command line): the default comparison and two built-ins whose reports weigh more
RUN_CASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rmapsim (default comparison)", ()),
    ("compare reclaim-churn", ("compare", "reclaim-churn")),
    ("compare threaded-faults", ("compare", "threaded-faults")),
)


def compiled_build_installed() -> bool:
    """True when the compiled build's extensions sit beside concurrency/'s sources (setup.py)."""
    import importlib.machinery

    import concurrency

    folder = Path(concurrency.__path__[0])
    return any((folder / f"engine{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _run_once(argv: tuple[str, ...], build: str, workdir: Path) -> dict[str, float]:
    """One command in a fresh interpreter: wall seconds, the CPU split from rmapsim/timings.py and
    the simulated events of its result.json."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    timing_file = workdir / "timings.json"
    env = {**os.environ, "RMAPSIM_TIMINGS": str(timing_file)}
    env.pop("RMAPSIM_PURE", None)
    if build == "pure":
        env["RMAPSIM_PURE"] = "1"  # an installed compiled build runs its .py sources (build_check)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "rmapsim", *argv, "--quiet", "--out", str(out)], cwd=workdir,
                          env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: the run found something (a finding, not a failure)
        raise RuntimeError(f"rmapsim {' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    timing = json.loads(timing_file.read_text())
    runs = json.loads((out / "result.json").read_text())["runs"]
    phases = timing["phases"]
    return {"wall_s": wall, "import_cpu_s": timing["import_cpu_s"],
            "simulation_cpu_s": phases["simulation"]["cpu_s"], "simulation_wall_s": phases["simulation"]["wall_s"],
            "reports_cpu_s": phases["reports"]["cpu_s"], "reports_wall_s": phases["reports"]["wall_s"],
            "events": sum(r["outcome"]["events"] for r in runs)}


class RunBenchRow(TypedDict):
    """One case under one build: wall min and median, the medians of the CPU split (seconds)."""

    case: str
    build: str
    repeats: int
    wall_min_s: float
    wall_median_s: float
    import_cpu_s: float
    simulation_cpu_s: float
    simulation_wall_s: float
    reports_cpu_s: float
    reports_wall_s: float
    events: int
    events_per_sim_cpu_s: int


class RunBench(TypedDict):
    """``rmapsim bench run``: the builds measured, the build of this process, a row per case and build."""

    builds: list[str]
    this_process: str
    cases: list[RunBenchRow]


def run_run_bench(repeats: int = 3, builds: tuple[str, ...] | None = None,
                  cases: tuple[tuple[str, tuple[str, ...]], ...] = RUN_CASES) -> RunBench:
    """Each case (default :data:`RUN_CASES`) ``repeats`` times per build, the builds interleaved so machine
    noise hits both: min and median wall, the medians of the CPU split, events per simulation CPU
    second.  ``builds``: "compiled" and "pure" when the compiled build is installed, else "pure"."""
    import statistics
    import tempfile

    from concurrency.build_check import compiled

    if builds is None:
        builds = ("compiled", "pure") if compiled_build_installed() else ("pure",)
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rmapsim-bench-") as tmp:
        for _ in range(repeats):
            for label, argv in cases:
                for build in builds:
                    samples.setdefault((label, build), []).append(_run_once(argv, build, Path(tmp)))
    rows: list[RunBenchRow] = []
    for (label, build), runs in samples.items():
        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        walls = [r["wall_s"] for r in runs]
        rows.append({
            "case": label, "build": build, "repeats": len(runs),
            "wall_min_s": round(min(walls), 3), "wall_median_s": round(statistics.median(walls), 3),
            "import_cpu_s": round(med("import_cpu_s"), 3), "simulation_cpu_s": round(med("simulation_cpu_s"), 3),
            "simulation_wall_s": round(med("simulation_wall_s"), 3), "reports_cpu_s": round(med("reports_cpu_s"), 3),
            "reports_wall_s": round(med("reports_wall_s"), 3), "events": int(runs[0]["events"]),
            "events_per_sim_cpu_s": round(runs[0]["events"] / med("simulation_cpu_s")),
        })
    import concurrency.engine

    return {"builds": list(builds), "this_process": "compiled" if compiled(concurrency.engine) else "pure",
            "cases": rows}


def format_run_bench(doc: RunBench) -> str:
    lines = [f"builds: {', '.join(doc['builds'])} (fresh interpreter per run; wall min / median of "
             f"{doc['cases'][0]['repeats'] if doc['cases'] else 0}; CPU medians, worker processes included)",
             f"{'case':<30} {'build':<8} {'wall min':>8} {'median':>7} {'import':>7} {'sim CPU':>8} "
             f"{'sim wall':>8} {'reports':>8} {'rep wall':>8} {'events':>9} {'events/sim CPU s':>16}"]
    for c in doc["cases"]:
        lines.append(f"{c['case']:<30} {c['build']:<8} {c['wall_min_s']:>7.2f}s {c['wall_median_s']:>6.2f}s "
                     f"{c['import_cpu_s']:>6.2f}s {c['simulation_cpu_s']:>7.2f}s {c['simulation_wall_s']:>7.2f}s "
                     f"{c['reports_cpu_s']:>7.2f}s {c['reports_wall_s']:>7.2f}s {c['events']:>9,} "
                     f"{c['events_per_sim_cpu_s']:>16,}")
    return "\n".join(lines)


# -- scale: per-event cost as a run gets longer ---------------------------------------------------------


class ScaleRow(TypedDict):
    multiple: int  # of the scenario's default duration
    events: int
    ns_per_event: int  # CPU ns per simulated event, best of the repeats
    ratio: float  # to the first multiple's


class ScaleBench(TypedDict):
    """``rmapsim bench scale``: CPU per event at each multiple of the duration; the worst ratio."""

    scenario: str
    design: str
    repeats: int
    rows: list[ScaleRow]
    max_ratio: float


def run_scale_bench(multiples: tuple[int, ...] = (1, 2, 4, 8), repeats: int = 2, scenario: str = "fork-heavy",
                    design: str = "anon_vma") -> ScaleBench:
    """``scenario`` under ``design`` at each multiple of its default duration: CPU ns per simulated
    event (best of ``repeats``, the multiples interleaved) and its ratio to the 1x run.  Wall time is
    linear in events when the ratios stay near 1 (the target: within 10% up to 8x)."""
    import gc

    from workloads.runner import run_one
    from workloads.scenario import load_scenario

    path = Path(__file__).resolve().parent.parent / "workloads" / "scenarios" / f"{scenario}.toml"
    base = load_scenario(path)
    if base.duration_ns is None:
        raise ValueError(f"{scenario} has no duration to multiply")
    best: dict[int, float] = {}
    events: dict[int, int] = {}
    for _ in range(repeats):
        for m in multiples:
            sc = load_scenario(path, {"run.duration_ns": base.duration_ns * m})
            gc.collect()
            t0 = time.process_time()
            record = run_one(sc, design)
            cpu = time.process_time() - t0
            events[m] = int(record["outcome"]["events"])
            best[m] = min(best.get(m, float("inf")), cpu * 1e9 / events[m])
    first = best[multiples[0]]
    rows: list[ScaleRow] = [{"multiple": m, "events": events[m], "ns_per_event": round(best[m]),
             "ratio": round(best[m] / first, 3)} for m in multiples]
    return {"scenario": scenario, "design": design, "repeats": repeats, "rows": rows,
            "max_ratio": max(r["ratio"] for r in rows)}


def format_scale_bench(doc: ScaleBench) -> str:
    lines = [f"{doc['scenario']} under {doc['design']}: CPU ns per simulated event by run length "
             f"(best of {doc['repeats']})"]
    lines += [f"  {r['multiple']:>2}x duration: {r['events']:>10,} events  {r['ns_per_event']:>6,} ns/event  "
              f"{r['ratio']:.3f}x the 1x cost" for r in doc["rows"]]
    lines.append(f"  worst: {doc['max_ratio']:.3f}x (flat within 10%: {'yes' if doc['max_ratio'] <= 1.10 else 'no'})")
    return "\n".join(lines)
