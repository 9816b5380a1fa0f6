"""Contended atomic counter (concurrency/atomic.py): cost, bounces, FIFO serialisation."""

from __future__ import annotations

from concurrency.atomic import ContendedAtomic
from concurrency.engine import Engine
from concurrency.lock import LockCosts

COSTS = LockCosts(atomic_ns=20, bounce_ns=100, handoff_ns=0)


def test_same_cpu_ops_cost_the_atomic_only() -> None:
    engine = Engine(1, lock_costs=COSTS)
    ref = ContendedAtomic(engine, "ctx->refcount")
    times: list[int] = []

    async def a() -> None:
        await ref.inc()
        times.append(engine.now)
        await engine.delay(1000)
        await ref.inc()
        times.append(engine.now)

    async def b() -> None:  # same CPU, after a: the line stays put
        await ref.dec()
        times.append(engine.now)

    engine.spawn("a", a, cpu=0)
    engine.spawn("b", b, cpu=0)
    engine.run()
    assert ref.value == 1
    side = engine.lock_classes["ctx->refcount"].write
    assert side.acquisitions == 3 and side.acq_bounces == 0 and side.contentions == 0
    assert engine.lock_classes["ctx->refcount"].kind == "atomic"
    assert times == [20, 1040, 1060]  # b runs when a leaves the CPU (no preemption)


def test_bounce_charged_only_when_the_last_writer_ran_on_another_cpu() -> None:
    engine = Engine(2, lock_costs=COSTS)
    ref = ContendedAtomic(engine, "ref")
    times: list[tuple[str, int]] = []

    async def on_cpu(name: str, starts: list[int]) -> None:
        for t in starts:
            await engine.delay(t - engine.now)
            await ref.inc()
            times.append((name, engine.now))

    engine.spawn("x", on_cpu, "x", [0, 200, 400], cpu=0)
    engine.spawn("y", on_cpu, "y", [250], cpu=1)
    engine.run()
    # x@0: first use, no bounce; x@200: still on cpu0; y@250: bounce; x@400: bounce back.
    assert times == [("x", 20), ("x", 220), ("y", 370), ("x", 520)]
    side = ref.lclass.write
    assert side.acq_bounces == 2 and side.contentions == 0


def test_concurrent_ops_serialise_fifo_and_the_waiters_spin() -> None:
    engine = Engine(4, lock_costs=COSTS)
    ref = ContendedAtomic(engine, "hot")
    done: dict[str, int] = {}

    async def incer(name: str) -> None:
        await ref.inc()
        done[name] = engine.now

    for i in range(4):
        engine.spawn(f"t{i}", incer, f"t{i}", cpu=i)
    engine.run()
    # t0 takes the cold line (20); each later op waits for the line and then moves it (120).
    assert done == {"t0": 20, "t1": 140, "t2": 260, "t3": 380}
    side = ref.lclass.write
    assert side.contentions == 3 and side.con_bounces == 3 and side.acq_bounces == 3
    assert side.wait.total_ns == 20 + 140 + 260
    cpu = engine.cpu_time()
    assert cpu["spinning"] == 20 + 140 + 260
    assert cpu["running"] == 20 + 3 * 120
    assert ref.value == 4


def test_values_change_in_queue_order_for_conditional_ops() -> None:
    engine = Engine(3, lock_costs=COSTS)
    ref = ContendedAtomic(engine, "ref", value=1)
    results: dict[str, bool] = {}

    async def put() -> None:
        results["put"] = await ref.dec_and_test()  # first in line: 1 -> 0

    async def get() -> None:
        results["get"] = await ref.inc_not_zero()  # queued behind put: sees 0, fails

    async def late_add() -> None:
        await engine.delay(1000)
        results["add"] = await ref.add(5) == 5

    engine.spawn("put", put, cpu=0)
    engine.spawn("get", get, cpu=1)
    engine.spawn("late", late_add, cpu=2)
    engine.run()
    assert results == {"put": True, "get": False, "add": True}
    assert ref.value == 5


def test_inc_not_zero_succeeds_on_a_live_count() -> None:
    engine = Engine(1)
    ref = ContendedAtomic(engine, "ref", value=2)
    out: list[bool] = []

    async def task() -> None:
        out.append(await ref.inc_not_zero())
        out.append(await ref.dec_and_test())
        out.append(await ref.dec_and_test())

    engine.spawn("t", task)
    engine.run()
    assert out == [True, False, False] and ref.value == 1


def test_add_nowait_charges_nothing_and_records_nothing() -> None:
    engine = Engine(2, lock_costs=COSTS)
    ref = ContendedAtomic(engine, "ref")
    times: list[int] = []

    async def batcher() -> None:
        for _ in range(10):
            ref.add_nowait(1)
        times.append(engine.now)

    async def other() -> None:
        await engine.delay(100)
        await ref.inc()  # the line was last written on cpu 0 by the batcher: a bounce
        times.append(engine.now)

    engine.spawn("batcher", batcher, cpu=0)
    engine.spawn("other", other, cpu=1)
    engine.run()
    assert times == [0, 220]
    side = ref.lclass.write
    assert side.acquisitions == 1 and side.acq_bounces == 1
    assert ref.value == 11


def test_instances_share_their_class_stats() -> None:
    engine = Engine(1, lock_costs=COSTS)
    refs = [ContendedAtomic(engine, "folio->_refcount", instance=f"folio{i}") for i in range(3)]

    async def task() -> None:
        for r in refs:
            await r.inc()

    engine.spawn("t", task)
    engine.run()
    cls = engine.lock_classes["folio->_refcount"]
    assert cls.instances == 3 and cls.write.acquisitions == 3
    assert repr(refs[1]) == "<ContendedAtomic folio1=1>"
