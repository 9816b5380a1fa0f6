"""The engine: virtual time, CPUs, determinism, deadlock and error reports, run limits."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import trio

from concurrency.engine import Deadlock, Engine, SimulationError, task_rng
from concurrency.histogram import LatencyHistogram
from concurrency.lock import LockMisuse
from concurrency.mutex import Mutex
from concurrency.spinlock import QSpinlock
from rmapsim.bench import draws, run_engine, run_simpy


def test_tasks_interleave_in_virtual_time_order() -> None:
    engine = Engine(2)
    log: list[tuple[int, str]] = []

    async def ticker(name: str, step: int) -> None:
        for _ in range(3):
            await engine.delay(step)
            log.append((engine.now, name))

    engine.spawn("a", ticker, "a", 10)
    engine.spawn("b", ticker, "b", 15)
    outcome = engine.run()
    assert outcome.reason == "completed"
    # at t=30 b goes first: it scheduled its event (at t=15) before a did (at t=20)
    assert log == [(10, "a"), (15, "b"), (20, "a"), (30, "b"), (30, "a"), (45, "b")]
    assert outcome.end_ns == 45


def test_equal_times_run_in_scheduling_order() -> None:
    engine = Engine(4)
    log: list[str] = []

    async def at(name: str) -> None:
        await engine.delay(100)
        log.append(name)

    for name in ("w", "x", "y", "z"):
        engine.spawn(name, at, name)
    engine.run()
    assert log == ["w", "x", "y", "z"]


def test_deadlock_report_names_the_cycle() -> None:
    engine = Engine(2)
    a = Mutex(engine, "A", spin=False)
    b = Mutex(engine, "B", spin=False)

    async def ab() -> None:
        await a.lock()
        await engine.delay(10)
        await b.lock()

    async def ba() -> None:
        await b.lock()
        await engine.delay(10)
        await a.lock()

    engine.spawn("t1", ab)
    engine.spawn("t2", ba)
    with pytest.raises(Deadlock) as info:
        engine.run()
    report = info.value.report
    assert "t1 waits for B held by t2" in report
    assert "t2 waits for A held by t1" in report
    assert "wait-for cycle: t1 -> t2 -> t1" in report


def test_exception_names_task_and_time() -> None:
    engine = Engine(1)

    async def boom() -> None:
        await engine.delay(1234)
        raise ValueError("bad state")

    engine.spawn("kswapd0", boom)
    with pytest.raises(SimulationError, match=r"'kswapd0'.*ValueError at t=1234 ns: bad state"):
        engine.run()


def test_exit_holding_a_lock_is_misuse() -> None:
    engine = Engine(1)
    m = Mutex(engine, "M")

    async def leaky() -> None:
        await m.lock()

    engine.spawn("leaky", leaky)
    with pytest.raises(SimulationError) as info:
        engine.run()
    assert isinstance(info.value.__cause__, LockMisuse)
    assert "exited holding M" in str(info.value)


def test_run_limits_stop_runaway_scenarios() -> None:
    async def forever(engine: Engine) -> None:
        while True:
            await engine.delay(100)

    engine = Engine(1)
    engine.spawn("loop", forever, engine)
    outcome = engine.run(until_ns=10_000)
    assert outcome.reason == "time_limit"
    assert outcome.end_ns == 10_000
    assert outcome.tasks_left == ["loop"]

    engine2 = Engine(1)
    engine2.spawn("loop", forever, engine2)
    outcome2 = engine2.run(max_events=500)
    assert outcome2.reason == "event_budget"
    assert outcome2.events == 500


def test_oversubscription_shares_cpus_and_pays_context_switches() -> None:
    engine = Engine(1, ctx_switch_ns=1_000)
    m = Mutex(engine, "M", spin=False)
    order: list[tuple[str, int]] = []

    async def worker(name: str) -> None:
        await m.lock()
        order.append((name, engine.now))
        await engine.delay(5_000)
        m.unlock()

    engine.spawn("t0", worker, "t0")
    engine.spawn("t1", worker, "t1")
    engine.run()
    # t1 waits for the CPU while t0 runs (no preemption): t0 runs 0..5000, t1 then switches in.
    assert order == [("t0", 0), ("t1", 6_000)]
    split = engine.cpu_time()
    assert sum(split.values()) == engine.now
    assert split["running"] == 11_000


def test_spinning_burns_cpu_and_sleeping_does_not() -> None:
    def run(lock_kind: str) -> dict[str, int]:
        engine = Engine(2)
        lock: QSpinlock | Mutex = QSpinlock(engine, "L") if lock_kind == "spin" else Mutex(engine, "L", spin=False)

        async def holder() -> None:
            await lock.lock()
            await engine.delay(10_000)
            lock.unlock()

        async def waiter() -> None:
            await engine.delay(1_000)
            await lock.lock()
            lock.unlock()

        engine.spawn("holder", holder)
        engine.spawn("waiter", waiter)
        engine.run()
        return engine.cpu_time()

    spin = run("spin")
    sleep = run("sleep")
    assert spin["spinning"] == 9_000 and spin["sleeping"] == 0
    assert sleep["spinning"] == 0 and sleep["sleeping"] == 9_000


def test_sleeping_while_holding_a_spinlock_is_a_bug() -> None:
    engine = Engine(2)
    spin = QSpinlock(engine, "S")
    m = Mutex(engine, "M", spin=False)

    async def holder() -> None:
        await m.lock()
        await engine.delay(100)
        m.unlock()

    async def bad() -> None:
        await engine.delay(10)
        await spin.lock()
        await m.lock()

    engine.spawn("holder", holder)
    engine.spawn("bad", bad)
    with pytest.raises(SimulationError, match="scheduling while atomic"):
        engine.run()


def test_task_rng_is_a_stable_split_by_name() -> None:
    assert task_rng(7, "proc1").random() == task_rng(7, "proc1").random()
    assert task_rng(7, "proc1").random() != task_rng(7, "proc2").random()
    assert task_rng(7, "proc1").random() != task_rng(8, "proc1").random()


async def test_run_async_is_a_trio_task_and_cancellable() -> None:
    engine = Engine(1, checkpoint_every=100)

    async def forever() -> None:
        while True:
            await engine.delay(10)

    engine.spawn("loop", forever)
    with trio.move_on_after(0.05) as scope:
        await engine.run_async()
    assert scope.cancelled_caught
    assert engine.now > 0

    e2 = Engine(1)

    async def short() -> None:
        await e2.delay(5)

    e2.spawn("short", short)
    outcome = await e2.run_async()
    assert outcome.end_ns == 5


def test_histogram_counts_out_of_range_values() -> None:
    h = LatencyHistogram(highest_ns=1_000)
    for v in (0, 5, 5, 999, 1_000, 1_001, -1):
        h.record(v)
    assert h.count == 5 and h.overflow == 2
    assert h.min_ns == 0 and h.max_ns == 1_000
    assert h.percentiles((50.0, 100.0)) == {"p50": 5, "p100": 1_000}
    from hdrh.histogram import HdrHistogram

    decoded = HdrHistogram.decode(h.encode())
    assert decoded.get_total_count() == 5


def test_engine_matches_simpy_on_the_benchmark_model() -> None:
    inputs = draws(tasks=8, iterations=50)
    assert run_engine(inputs) == run_simpy(inputs)


_DETERMINISM_SCRIPT = r"""
import json, sys
from concurrency.engine import Engine
from concurrency.mutex import Mutex
from concurrency.spinlock import QSpinlock
engine = Engine(3, seed=int(sys.argv[1]), ctx_switch_ns=500)
m = Mutex(engine, "M")
s = QSpinlock(engine, "S")
log = []
async def worker(i):
    task = engine.current
    for _ in range(200):
        await engine.delay(task.rng.randrange(1, 2000))
        lock = m if task.rng.random() < 0.5 else s
        await lock.lock()
        log.append((engine.now, task.name))
        await engine.delay(task.rng.randrange(1, 500))
        lock.unlock()
for i in range(6):
    engine.spawn(f"w{i}", worker, i)
out = engine.run()
stats = {k: c.to_dict() for k, c in engine.lock_classes.items()}
print(json.dumps({"log": log, "end": out.end_ns, "cpu": engine.cpu_time(), "stats": stats}, sort_keys=True))
"""


def test_determinism_across_processes_and_hash_seeds() -> None:
    digests = set()
    for hashseed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        out = subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT, "11"], env=env, check=True,
                             capture_output=True, text=True).stdout
        assert json.loads(out)["log"]
        digests.add(hashlib.sha256(out.encode()).hexdigest())
    assert len(digests) == 1


def test_timeslice_preemption_shares_a_cpu_but_never_under_a_spinlock() -> None:
    engine = Engine(1, timeslice_ns=1_000)
    spin = QSpinlock(engine, "S")
    order: list[tuple[str, int]] = []

    async def hog() -> None:
        await spin.lock()
        for _ in range(5):
            await engine.delay(1_000)  # holding a spinlock: preemption is disabled
        spin.unlock()
        order.append(("hog unlocked", engine.now))
        for _ in range(5):
            await engine.delay(1_000)  # now it is preempted at the end of its slice
        order.append(("hog done", engine.now))

    async def other() -> None:
        await spin.lock()  # would spin forever if the hog were preempted while holding S
        spin.unlock()
        order.append(("other", engine.now))

    engine.spawn("hog", hog)
    engine.spawn("other", other)
    engine.run()
    assert order == [("hog unlocked", 5_000), ("other", 6_000), ("hog done", 10_000)]


def test_per_lock_statistics_add_up_to_the_class() -> None:
    engine = Engine(2, instance_stats=True)
    a = Mutex(engine, "mm->mmap_lock", instance="mm0->mmap_lock", spin=False)
    b = Mutex(engine, "mm->mmap_lock", instance="mm1->mmap_lock", spin=False)

    async def worker(lock: Mutex, n: int) -> None:
        for _ in range(n):
            await lock.lock()
            await engine.delay(100)
            lock.unlock()
            await engine.delay(10)

    engine.spawn("w0", worker, a, 3)
    engine.spawn("w1", worker, a, 3)
    engine.spawn("w2", worker, b, 2)
    engine.run()
    per = {s.name: s.write for s in engine.lock_instances}
    cls = engine.lock_classes["mm->mmap_lock"].write
    assert per["mm0->mmap_lock"].acquisitions == 6 and per["mm1->mmap_lock"].acquisitions == 2
    assert per["mm0->mmap_lock"].acquisitions + per["mm1->mmap_lock"].acquisitions == cls.acquisitions
    assert per["mm0->mmap_lock"].contentions + per["mm1->mmap_lock"].contentions == cls.contentions > 0
    assert per["mm0->mmap_lock"].wait.total_ns + per["mm1->mmap_lock"].wait.total_ns == cls.wait.total_ns
    assert per["mm0->mmap_lock"].hold.total_ns + per["mm1->mmap_lock"].hold.total_ns == cls.hold.total_ns
