"""A tiny real run for the report tests: 3 tasks on 2 CPUs, a big lock and split PTLs.

Two "designs" differ only in the big lock's type (a sleeping :class:`Mutex` or a
:class:`QSpinlock`), so the comparison has real differences to show.  ``fork`` takes the big
lock, the task's own PTL, then the shared PTL nested (``ptl/1``), drops the big lock before the
PTLs (hand-over-hand, so hold slices overlap partially); ``fault`` takes the shared PTL alone.
The record follows the ``rmapsim.result/2`` format with fixed stand-ins for the parts a lock-only
run has no model for (walks, memory).
"""

from __future__ import annotations

from typing import Any

from concurrency.engine import Engine
from concurrency.histogram import LatencyHistogram
from concurrency.lock import LockCosts
from concurrency.mutex import Mutex
from concurrency.spinlock import QSpinlock
from workloads.record import RECORD_SCHEMA, RESULTS_SCHEMA, histogram_record, lock_records

DESIGNS = ("mutex_design", "spin_design")
COSTS = LockCosts(atomic_ns=20, bounce_ns=100, handoff_ns=50)


def whole_run_phases(end_ns: int, cpu_time: dict[str, int], locks: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``phases`` of a run that is all workload: no set-up, no wind-down, every wait in it."""
    wait = {"total_ns": 0, "spinning_ns": 0, "sleeping_ns": 0}
    for lock in locks:
        for side in ("write", "read") if lock.get("rw") else ("write",):
            for key, field in (("total_ns", "waittime_total_ns"), ("spinning_ns", "waittime_spin_ns"),
                               ("sleeping_ns", "waittime_sleep_ns")):
                wait[key] += int(lock[side].get(field, 0))
    zero_cpu = dict.fromkeys(("running", "spinning", "sleeping", "idle"), 0)
    zero_wait = dict.fromkeys(wait, 0)
    return {"setup": {"start_ns": 0, "end_ns": 0, "cpu_time": zero_cpu, "lock_wait": zero_wait},
            "workload": {"start_ns": 0, "end_ns": end_ns, "cpu_time": dict(cpu_time), "lock_wait": wait},
            "wind_down": {"start_ns": end_ns, "end_ns": end_ns, "cpu_time": zero_cpu, "lock_wait": zero_wait}}


def tiny_record(design: str, *, tracer: Any = None, iterations: int = 6) -> dict[str, Any]:
    engine = Engine(2, seed=7, ctx_switch_ns=500, lock_costs=COSTS)
    if tracer is not None:
        engine.add_instrument(tracer)
    big: Mutex | QSpinlock = (Mutex(engine, "anon_vma->rwsem") if design == "mutex_design"
                              else QSpinlock(engine, "anon_vma->rwsem"))
    shared_ptl = QSpinlock(engine, "ptl", instance="ptl:shared")
    latency: dict[str, LatencyHistogram] = {}

    async def timed(op: str, body: Any) -> None:
        task = engine.current
        assert task is not None
        start = engine.now
        task.op = op
        await body()
        task.op = "-"
        latency.setdefault(op, LatencyHistogram()).record(engine.now - start)
        hook = engine.hooks.on_op
        if hook is not None:
            hook(task, op, start, engine.now)

    async def worker(index: int) -> None:
        task = engine.current
        assert task is not None
        own_ptl = QSpinlock(engine, "ptl", instance=f"ptl:{index}")

        async def fork() -> None:
            await big.lock()
            await engine.delay(task.rng.randrange(200, 800))
            await own_ptl.lock()
            await shared_ptl.lock(1)
            await engine.delay(150)
            big.unlock()
            await engine.delay(50)
            shared_ptl.unlock()
            own_ptl.unlock()

        async def fault() -> None:
            await shared_ptl.lock()
            await engine.delay(task.rng.randrange(300, 900))
            shared_ptl.unlock()

        for _ in range(iterations):
            await timed("fork", fork)
            await timed("fault", fault)
            await engine.delay(task.rng.randrange(100, 300))

    for i in range(3):
        engine.spawn(f"proc{i}/t0", worker, i)
    outcome = engine.run()
    ops = {op: histogram_record(h) for op, h in sorted(latency.items())}
    total = sum(r["count"] for r in ops.values())
    return {
        "schema": RECORD_SCHEMA,
        "scenario": "tiny",
        "design": design,
        "switches": {"big_lock": "mutex" if design == "mutex_design" else "spinlock"},
        "params": {"cpus": 2, "seed": 7, "duration_ns": None,
                   "costs": {"atomic_ns": 20, "bounce_ns": 100, "handoff_ns": 50, "ctx_switch_ns": 500},
                   "rwsem": {}, "memory": {}, "tasks": 3},
        "outcome": {"reason": outcome.reason, "end_ns": outcome.end_ns, "events": outcome.events,
                    "workload_start_ns": 0, "preemptions_injected": []},
        "operations": ops,
        "throughput": {op: r["count"] * 1e9 / outcome.end_ns for op, r in ops.items()},
        "total_ops": total,
        "locks": lock_records(engine),
        "lock_instances": [],
        "walks": {"folio_referenced": {"walks": 4, "contended": 1, "vmas_visited": 12, "false_positives": 2,
                                       "mappings_found": 10, "missed_mappings": 0, "freed_vma_visits": 0,
                                       "would_sleep_in_rcu": 0, "contexts_visited": 0}},
        "cpu_time": engine.cpu_time(),
        "phases": whole_run_phases(outcome.end_ns, engine.cpu_time(), lock_records(engine)),
        "context_switches": engine.context_switches,
        "migrations": engine.migrations,
        "memory": {"anon_vma_count": 3, "anon_vma_bytes": 264, "total_bytes": 264,
                   "peak_total_bytes": 352 if design == "mutex_design" else 264, "pgtable_bytes": 8192},
        "counters": {"forks": ops["fork"]["count"]},
        "design_stats": {},
        "invariants": {"passed": True, "violations": [], "corruption": [], "misses": []},
        "lockdep": {"findings": [], "edges": [["anon_vma->rwsem", "ptl"], ["ptl", "ptl/1"]],
                    "order_violations": []},
        "rcu": {},
    }


def tiny_results(**kw: Any) -> dict[str, Any]:
    return {"schema": RESULTS_SCHEMA,
            "scenario": {"name": "tiny", "description": "3 tasks, a big lock and split PTLs", "mirrors": "",
                         "source": "tests"},
            "runs": [tiny_record(d, **kw) for d in DESIGNS]}
