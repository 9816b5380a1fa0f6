"""Timelines for the mutex's wake-and-compete rules in both eras (concurrency/mutex.py): the
pre-4.10 mutex without hand-off, the hand-off to a first waiter spinning on the owner, the wake-up
that every unlock with waiters sends, and optimistic spinners giving up on ``need_resched()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from concurrency.engine import Engine
from concurrency.mutex import Mutex
from concurrency.rwsem import RwSemaphore


class Gate:
    """Something to sleep on until a test wakes the task."""

    name = "gate"

    def holders(self) -> list[Any]:
        return []


def test_pre_4_10_waiter_that_loses_sleeps_again_keeps_its_place_and_sets_no_handoff() -> None:
    engine = Engine(4, ctx_switch_ns=1000)
    mutex = Mutex(engine, "m", spin=False, handoff=False)
    log: list[tuple[str, int]] = []

    async def first() -> None:
        await mutex.lock()
        await engine.delay(100)
        mutex.unlock()  # wakes B to compete; B runs at 1100

    async def waiter() -> None:
        await engine.delay(10)
        await mutex.lock()
        log.append(("B", engine.now))
        mutex.unlock()

    async def stealer(name: str, arrive: int, hold: int) -> None:
        await engine.delay(arrive)
        await mutex.lock()  # free: a newcomer takes it, no hand-off ever stops it
        log.append((name, engine.now))
        await engine.delay(hold)
        mutex.unlock()

    engine.spawn("A", first)
    b = engine.spawn("B", waiter)
    engine.spawn("C", stealer, "C", 500, 1500)  # owns 500..2000: B runs at 1100, loses, sleeps again
    engine.spawn("D", stealer, "D", 2500, 100)  # 2000 woke B again (it runs at 3000); D steals at 2500
    engine.run()
    # With hand-off (v4.10+) B would have set HANDOFF at 1100 and D could not have stolen the lock.
    assert log == [("C", 500), ("D", 2500), ("B", 3000)]
    assert mutex.lclass.events["mutex_handoff_set"] == 0
    assert b.sleep_ns == (100 - 10) + (2000 - 1100)  # two sleeps, each ended by an unlock's wake-up
    assert mutex.lclass.write.contentions == 1


def test_handoff_goes_to_a_first_waiter_spinning_on_the_running_owner_without_a_wake_up() -> None:
    engine = Engine(4, ctx_switch_ns=1000)
    mutex = Mutex(engine, "m")  # v4.10+: spinning and hand-off
    gate = Gate()
    log: list[tuple[str, int]] = []

    async def first() -> None:  # cpu0
        await mutex.lock()
        await engine.delay(100)
        mutex.unlock()  # wakes B (runs at 1100)

    async def waiter() -> None:  # cpu1: X is queued there at 10, so B sleeps instead of spinning
        await engine.delay(10)
        await mutex.lock()
        log.append(("B", engine.now))
        mutex.unlock()

    async def other() -> None:  # cpu1: runs 1010 (after its switch) and blocks, B runs at 2010
        await engine.block(gate)

    async def stealer() -> None:  # cpu2: owns 500..3000, running all along
        await engine.delay(500)
        await mutex.lock()
        log.append(("C", engine.now))
        await engine.delay(2500)
        mutex.unlock()  # HANDOFF: straight to the spinning B, no wake-up cost

    async def releaser() -> None:  # cpu3
        await engine.delay(5000)
        engine.wake(x)

    engine.spawn("A", first, cpu=0)
    b = engine.spawn("B", waiter, cpu=1)
    x = engine.spawn("X", other, cpu=1)
    engine.spawn("C", stealer, cpu=2)
    engine.spawn("R", releaser, cpu=3)
    engine.run()
    assert log == [("C", 500), ("B", 3000)]  # handed over at C's unlock, no wake-up cost
    events = mutex.lclass.events
    assert events["mutex_handoff_set"] == 1
    assert b.spin_ns == 3000 - 2010  # lost at 2010, set HANDOFF and spun on the running C
    assert mutex.handoff is False


def test_every_unlock_with_waiters_wakes_the_first_even_when_a_spinner_takes_the_lock() -> None:
    engine = Engine(3, ctx_switch_ns=200)
    mutex = Mutex(engine, "m", handoff=False)
    log: list[tuple[str, int]] = []

    async def owner() -> None:  # cpu0
        await mutex.lock()
        await engine.delay(1000)
        mutex.unlock()  # S (spinning) takes it; W is woken all the same, loses, sleeps again

    async def sleeper() -> None:  # cpu1: Z is runnable there, so W sleeps
        await engine.delay(10)
        await mutex.lock()
        log.append(("W", engine.now))
        mutex.unlock()

    async def busy() -> None:  # cpu1: queued behind W, runs 210..260
        await engine.delay(50)

    async def spinner() -> None:  # cpu2
        await engine.delay(100)
        await mutex.lock()
        log.append(("S", engine.now))
        await engine.delay(500)
        mutex.unlock()  # wakes W again: now it gets the lock

    engine.spawn("O", owner, cpu=0)
    w = engine.spawn("W", sleeper, cpu=1)
    engine.spawn("Z", busy, cpu=1)
    engine.spawn("S", spinner, cpu=2)
    engine.run()
    assert log == [("S", 1000), ("W", 1700)]
    assert w.sleep_ns == (1000 - 10) + (1500 - 1200)  # woken at 1000 (ran 1200, lost), again at 1500


def _mutex(engine: Engine) -> tuple[Any, Any, Any]:
    mutex = Mutex(engine, "m")
    return mutex, mutex.lock, mutex.unlock


def _rwsem_write(engine: Engine) -> tuple[Any, Any, Any]:
    sem = RwSemaphore(engine, "s")
    return sem, sem.down_write, sem.up_write


@pytest.mark.parametrize(("make", "fail_events"), [
    (_mutex, {"mutex_opt_spin": 1, "mutex_opt_fail": 1}),
    (_rwsem_write, {"rwsem_opt_fail": 1}),  # the OSQ head gives up
])
def test_an_optimistic_spinner_gives_up_when_a_task_wakes_on_its_cpu(
        make: Callable[[Engine], tuple[Any, Any, Any]], fail_events: dict[str, int]) -> None:
    engine = Engine(3, ctx_switch_ns=100)
    lock, acquire, release = make(engine)
    gate = Gate()
    log: list[tuple[str, int]] = []

    async def owner() -> None:  # cpu0
        await acquire()
        await engine.delay(2000)
        release()

    async def spinner() -> None:  # cpu1
        await engine.delay(100)
        await acquire()  # spins from 200; need_resched at 500: queues and sleeps
        log.append(("S", engine.now))
        release()

    async def sleeper() -> None:  # cpu1: sleeps first, is woken at 500 by R
        await engine.block(gate)
        log.append(("Z runs", engine.now))
        await engine.delay(100)

    async def waker() -> None:  # cpu2
        await engine.delay(500)
        engine.wake(z)

    engine.spawn("O", owner, cpu=0)
    z = engine.spawn("Z", sleeper, cpu=1)  # first on cpu1: sleeps at 0, S runs from 100
    s = engine.spawn("S", spinner, cpu=1)
    engine.spawn("R", waker, cpu=2)
    engine.run()
    assert log == [("Z runs", 600), ("S", 2100)]  # Z gets the CPU at once (+100 switch); S at the unlock
    assert s.spin_ns == 500 - 200
    events = lock.lclass.events
    assert {k: events[k] for k in fail_events} == fail_events
