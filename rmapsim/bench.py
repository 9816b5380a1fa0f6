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
from typing import Any

from concurrency.executors import engine_class
from concurrency.mutex import Mutex

__all__ = ["EngineBench", "MemoryBench", "draws", "run_engine", "run_engine_bench", "run_memory_bench",
           "run_simpy"]

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

    def worker(seq: list[tuple[int, int]]) -> Generator[Any, Any, None]:
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

    def to_dict(self) -> dict[str, Any]:
        return {"engine_acq_per_s": round(self.engine_acq_per_s), "simpy_acq_per_s": round(self.simpy_acq_per_s),
                "ratio": round(self.ratio, 3), "end_ns": self.end_ns, "mean_wait_ns": self.mean_wait_ns,
                "trio_acq_per_s": round(self.trio_acq_per_s), "trio_ratio": round(self.trio_ratio, 3),
                "trio_vs_stepper": round(self.trio_vs_stepper, 3), "agree": self.agree}


def run_engine_bench(repeats: int = 3, tasks: int = TASKS, iterations: int = ITERATIONS) -> EngineBench:
    """Best of ``repeats`` for each simulator (the stepper, the trio executor, SimPy), interleaved
    so machine noise hits all three."""
    inputs = draws(tasks, iterations)
    best_engine = best_trio = best_simpy = float("inf")
    engine_result = trio_result = simpy_result = (0, 0.0, 0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        engine_result = run_engine(inputs)
        t1 = time.perf_counter()
        simpy_result = run_simpy(inputs)
        t2 = time.perf_counter()
        trio_result = run_engine(inputs, executor="trio")
        t3 = time.perf_counter()
        best_engine = min(best_engine, t1 - t0)
        best_simpy = min(best_simpy, t2 - t1)
        best_trio = min(best_trio, t3 - t2)
    acq = engine_result[2]
    return EngineBench(acq / best_engine, acq / best_simpy, best_simpy / best_engine, engine_result[0],
                       engine_result[1], simpy_result[0], simpy_result[1], acq / best_trio, trio_result[0],
                       trio_result[1])


def format_engine_bench(b: EngineBench) -> str:
    lines = [
        f"contended mutex: {TASKS} tasks x {ITERATIONS} acquisitions (best of runs, wall clock)",
        f"  rmapsim stepper       : {b.engine_acq_per_s:>12,.0f} acquisitions/s  {b.ratio:.2f}x SimPy "
        "(the default; target >= 1.0)",
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

    def to_dict(self) -> dict[str, Any]:
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


def run_trace_bench(repeats: int = 3, duration_ns: int = 2_000_000) -> dict[str, Any]:
    """fork-heavy under anon_vma with tracing off (no tracer attached) and on (ChromeTracer).

    Off, every lock operation pays one ``engine.hooks.on_... is not None`` test; on, every acquisition,
    release, contention and operation becomes trace events.  Best of ``repeats`` each, interleaved.
    """
    from pathlib import Path

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
            "sim_events": off["outcome"]["events"]}
