"""The lock wait split by what the waiter did (concurrency/lock.py, lockstat.py): spinning on its
CPU, asleep, and the rest (woken, until it ran: the context switch back, the lock's pick-up)."""

from __future__ import annotations

from concurrency.engine import Engine
from concurrency.lock import LockCosts
from concurrency.mutex import Mutex
from concurrency.spinlock import QSpinlock


def test_a_spinlock_waiter_spins_for_its_whole_wait_but_the_pick_up() -> None:
    engine = Engine(2, ctx_switch_ns=500, lock_costs=LockCosts(atomic_ns=0, bounce_ns=0, handoff_ns=50))
    lock = QSpinlock(engine, "ptl")

    async def holder() -> None:
        await lock.lock()
        await engine.delay(1000)
        lock.unlock()

    async def waiter() -> None:
        await engine.delay(100)
        await lock.lock()  # spins 100..1000, owns the line at 1050
        lock.unlock()

    engine.spawn("A", holder, cpu=0)
    engine.spawn("B", waiter, cpu=1)
    engine.run()
    side = lock.lclass.write
    assert (side.wait.total_ns, side.wait_spin_ns, side.wait_sleep_ns) == (950, 900, 0)
    assert side.to_dict()["waittime_spin_ns"] == 900 and side.to_dict()["waittime_sleep_ns"] == 0


def test_a_sleeping_mutex_waiter_burns_nothing_and_waits_for_its_cpu_after_the_wake_up() -> None:
    engine = Engine(2, ctx_switch_ns=500, lock_costs=LockCosts(atomic_ns=0, bounce_ns=0, handoff_ns=50))
    lock = Mutex(engine, "mm->mmap_lock", spin=False)

    async def holder() -> None:
        await lock.lock()
        await engine.delay(1000)
        lock.unlock()

    async def waiter() -> None:
        await engine.delay(100)
        await lock.lock()  # asleep 100..1000, then the context switch back (500 ns) before it runs
        lock.unlock()

    engine.spawn("A", holder, cpu=0)
    engine.spawn("B", waiter, cpu=1)
    engine.run()
    side = lock.lclass.write
    assert side.wait_spin_ns == 0
    assert side.wait_sleep_ns == 900
    assert side.wait.total_ns == 1400  # 900 asleep + 500 runnable: the context switch back


def test_waits_without_contention_add_nothing() -> None:
    engine = Engine(1, lock_costs=LockCosts(atomic_ns=10, bounce_ns=0, handoff_ns=0))
    lock = Mutex(engine, "m")

    async def alone() -> None:
        for _ in range(3):
            await lock.lock()
            await engine.delay(100)
            lock.unlock()

    engine.spawn("A", alone)
    engine.run()
    side = lock.lclass.write
    assert (side.contentions, side.wait.total_ns, side.wait_spin_ns, side.wait_sleep_ns) == (0, 0, 0, 0)
