"""RCU model (concurrency/rcu.py): grace periods, callbacks, deferred frees, misuse."""

from __future__ import annotations

from typing import Any

import pytest

from concurrency.engine import Deadlock, Engine, SimTask, SimulationError
from concurrency.instrument import Instrument
from concurrency.lock import LockMisuse
from concurrency.lockdep import OrderChecker
from concurrency.mutex import Mutex
from concurrency.rcu import Rcu


def reader(engine: Engine, rcu: Rcu, start: int, length: int, log: list[tuple[str, int]] | None = None,
           name: str = "") -> Any:
    async def run() -> None:
        await engine.delay(start)
        rcu.rcu_read_lock()
        await engine.delay(length)
        rcu.rcu_read_unlock()
        if log is not None:
            log.append((f"{name} out", engine.now))
    return run


def test_synchronize_waits_for_a_pre_existing_reader_but_not_a_later_one() -> None:
    engine = Engine(3)
    rcu = Rcu(engine, gp_min_ns=1000)
    log: list[tuple[str, int]] = []

    async def updater() -> None:
        await engine.delay(100)
        await rcu.synchronize_rcu()
        log.append(("sync done", engine.now))

    engine.spawn("early", reader(engine, rcu, 0, 5000, log, "early"))
    engine.spawn("updater", updater)
    engine.spawn("late", reader(engine, rcu, 200, 9000, log, "late"))
    engine.run()
    assert log == [("early out", 5000), ("sync done", 5000), ("late out", 9200)]
    assert rcu.gp_count == 1
    assert rcu.gp_ns.total_ns == 4900
    assert rcu.sync_wait.total_ns == 4900


def test_grace_period_lasts_at_least_gp_min_ns() -> None:
    engine = Engine(2)
    rcu = Rcu(engine, gp_min_ns=3000)
    done: list[int] = []

    async def updater() -> None:
        await engine.delay(10)
        await rcu.synchronize_rcu()
        done.append(engine.now)

    engine.spawn("short", reader(engine, rcu, 0, 100))
    engine.spawn("updater", updater)
    engine.run()
    assert done == [3010]


def test_request_during_a_running_gp_waits_for_the_next_one() -> None:
    engine = Engine(3)
    rcu = Rcu(engine, gp_min_ns=1000)
    done: dict[str, int] = {}

    async def updater(name: str, at: int) -> None:
        await engine.delay(at)
        await rcu.synchronize_rcu()
        done[name] = engine.now

    engine.spawn("u1", updater, "u1", 0)  # GP 1: [0, 1000]
    engine.spawn("r", reader(engine, rcu, 500, 2500))  # in a section when GP 2 starts at 1000
    engine.spawn("u2", updater, "u2", 600)  # needs GP 2: the reader began after GP 1 started
    engine.run()
    assert done == {"u1": 1000, "u2": 3000}
    assert rcu.gp_count == 2


def test_nested_sections_end_at_the_outermost_unlock() -> None:
    engine = Engine(2)
    rcu = Rcu(engine, gp_min_ns=0)
    done: list[int] = []
    depths: list[int] = []

    async def nested() -> None:
        rcu.rcu_read_lock()
        await engine.delay(100)
        rcu.rcu_read_lock()
        await engine.delay(100)
        rcu.rcu_read_unlock()
        assert engine.current is not None
        depths.append(engine.current.rcu_depth)
        await engine.delay(100)
        rcu.rcu_read_unlock()
        depths.append(engine.current.rcu_depth)

    async def updater() -> None:
        await engine.delay(50)
        await rcu.synchronize_rcu()
        done.append(engine.now)

    engine.spawn("nested", nested)
    engine.spawn("updater", updater)
    engine.run()
    assert done == [300] and depths == [1, 0]
    assert rcu.read_sections == 1 and rcu.read_locks == 2
    assert rcu.lclass.read.acquisitions == 1 and rcu.lclass.read.hold.total_ns == 300


def test_call_rcu_runs_after_the_grace_period() -> None:
    engine = Engine(2)
    rcu = Rcu(engine, gp_min_ns=1000)
    ran: list[tuple[str, int]] = []

    def callback(tag: str) -> None:
        ran.append((tag, engine.now))

    async def updater() -> None:
        await engine.delay(100)
        rcu.call_rcu(callback, "a")
        rcu.call_rcu(callback, "b")
        assert rcu.callbacks_invoked == 0

    engine.spawn("r", reader(engine, rcu, 0, 2000))
    engine.spawn("updater", updater)
    engine.run()
    assert ran == [("a", 2000), ("b", 2000)]
    assert rcu.callbacks_queued == 2 and rcu.callbacks_invoked == 2


def test_a_callback_may_queue_another_one_for_the_next_grace_period() -> None:
    engine = Engine(1)
    rcu = Rcu(engine, gp_min_ns=1000)
    ran: list[int] = []

    def second() -> None:
        ran.append(engine.now)

    def first() -> None:
        ran.append(engine.now)
        rcu.call_rcu(second)

    async def task() -> None:
        rcu.call_rcu(first)

    engine.spawn("t", task)
    engine.run()
    assert ran == [1000, 2000] and rcu.gp_count == 2


def test_kfree_rcu_reports_deferred_bytes_until_the_grace_period() -> None:
    engine = Engine(2)
    rcu = Rcu(engine, gp_min_ns=1000)
    seen: list[tuple[int, int, dict[str, int]]] = []
    freed: list[int] = []

    async def freer() -> None:
        await engine.delay(100)
        rcu.kfree_rcu("cow_context", 192, lambda: freed.append(engine.now))
        rcu.kfree_rcu("cow_context", 192)
        rcu.kfree_rcu("anon_vma", 88)
        seen.append((engine.now, rcu.pending_free_bytes, dict(rcu.pending_by_desc)))
        await engine.delay(2000)
        seen.append((engine.now, rcu.pending_free_bytes, dict(rcu.pending_by_desc)))

    engine.spawn("r", reader(engine, rcu, 0, 1500))
    engine.spawn("freer", freer)
    engine.run()
    assert seen == [(100, 472, {"anon_vma": 88, "cow_context": 384}), (2100, 0, {})]
    assert freed == [1500]
    assert rcu.max_pending_free_bytes == 472 and rcu.freed_bytes == 472
    assert rcu.kfree_calls == 3 and rcu.frees_done == 3
    out = rcu.to_dict()
    assert out["max_pending_free_bytes"] == 472 and out["pending_free_bytes"] == 0


def test_kfree_batching_delays_the_grace_period_request() -> None:
    engine = Engine(1)
    rcu = Rcu(engine, gp_min_ns=1000, kfree_batch_ns=5000)
    freed: list[int] = []

    async def freer() -> None:
        rcu.kfree_rcu("obj", 64, lambda: freed.append(engine.now))
        await engine.delay(2000)
        rcu.kfree_rcu("obj", 64, lambda: freed.append(engine.now))  # same batch

    engine.spawn("freer", freer)
    engine.run()
    assert freed == [6000, 6000] and rcu.gp_count == 1


def test_sleeping_in_a_read_section_is_recorded() -> None:
    engine = Engine(2)
    rcu = Rcu(engine, gp_min_ns=0)
    mutex = Mutex(engine, "some_mutex", spin=False)

    async def holder() -> None:
        await mutex.lock()
        await engine.delay(500)
        mutex.unlock()

    async def sleeper() -> None:
        engine.current.op = "rmap_walk"  # type: ignore[union-attr]
        await engine.delay(100)
        rcu.rcu_read_lock()
        await mutex.lock()  # sleeps inside the section
        mutex.unlock()
        rcu.rcu_read_unlock()

    engine.spawn("holder", holder)
    engine.spawn("sleeper", sleeper)
    engine.run()
    assert engine.rcu_sleeps == [("sleeper", 100, "some_mutex", "rmap_walk")]
    assert rcu.to_dict()["sleeps_in_read_section"] == 1


@pytest.mark.parametrize("case", ["unlock_without_lock", "synchronize_in_section"])
def test_misuse_raises(case: str) -> None:
    engine = Engine(1)
    rcu = Rcu(engine)

    async def task() -> None:
        if case == "unlock_without_lock":
            rcu.rcu_read_unlock()
        else:
            rcu.rcu_read_lock()
            await rcu.synchronize_rcu()

    engine.spawn("t", task)
    with pytest.raises(SimulationError) as exc:
        engine.run()
    assert isinstance(exc.value.__cause__, LockMisuse)


def test_a_reader_exiting_inside_its_section_is_reported() -> None:
    engine = Engine(2)
    rcu = Rcu(engine, gp_min_ns=100)

    async def leaky() -> None:
        rcu.rcu_read_lock()

    async def updater() -> None:
        await rcu.synchronize_rcu()

    engine.spawn("leaky", leaky)
    engine.spawn("updater", updater)
    # The engine catches it when the task exits (wrapped, naming the task and the time).
    with pytest.raises(SimulationError, match="'leaky' exited inside an RCU read-side") as info:
        engine.run()
    assert isinstance(info.value.__cause__, LockMisuse)


def test_waiting_for_a_grace_period_held_up_by_a_blocked_reader_is_a_deadlock() -> None:
    engine = Engine(2)
    rcu = Rcu(engine, gp_min_ns=100)
    mutex = Mutex(engine, "m", spin=False)

    async def updater() -> None:
        await mutex.lock()
        await engine.delay(10)
        await rcu.synchronize_rcu()  # waits for the reader, which waits for our mutex
        mutex.unlock()

    async def walker() -> None:
        await engine.delay(5)
        rcu.rcu_read_lock()
        await mutex.lock()
        mutex.unlock()
        rcu.rcu_read_unlock()

    engine.spawn("updater", updater)
    engine.spawn("walker", walker)
    with pytest.raises(Deadlock) as exc:
        engine.run()
    assert "updater waits for rcu_gp held by walker" in exc.value.report
    assert "wait-for cycle" in exc.value.report


def test_lockdep_sees_recursive_read_acquisitions() -> None:
    engine = Engine(1)
    calls: list[tuple[Any, ...]] = []

    class Dep(Instrument):
        def on_lock_acquire(self, task: SimTask, key: str, read: int, trylock: bool, instance: str) -> None:
            calls.append(("acquire", key, read, trylock))

        def on_lock_release(self, task: SimTask, key: str, instance: str) -> None:
            calls.append(("release", key))

    engine.add_instrument(Dep())
    rcu = Rcu(engine)

    async def task() -> None:
        rcu.rcu_read_lock()
        rcu.rcu_read_lock()
        rcu.rcu_read_unlock()
        rcu.rcu_read_unlock()

    engine.spawn("t", task)
    engine.run()
    assert calls == [("acquire", "rcu_read_lock", 2, False)] * 2 + [("release", "rcu_read_lock")] * 2


def test_nested_read_sections_are_not_recursion_for_the_order_checker() -> None:
    engine = Engine(1)
    checker = OrderChecker()
    engine.add_instrument(checker)
    rcu = Rcu(engine)
    mutex = Mutex(engine, "cow_context->lock", spin=False)

    async def walker() -> None:
        rcu.rcu_read_lock()
        rcu.rcu_read_lock()
        await mutex.lock()
        mutex.unlock()
        rcu.rcu_read_unlock()
        rcu.rcu_read_unlock()

    engine.spawn("walker", walker)
    engine.run()
    assert checker.findings == []
    assert checker.edges() == [("rcu_read_lock", "cow_context->lock")]
