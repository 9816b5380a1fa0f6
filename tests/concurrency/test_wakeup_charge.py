"""The waker pays for the wake-up (``LockCosts.wakeup_ns``, ``Engine.charge``): a lock release that
wakes a sleeping waiter charges the releasing task ``try_to_wake_up``, at its next step, and the
woken task's dispatch is unchanged."""

from __future__ import annotations

from concurrency.engine import CpuState, Engine
from concurrency.lock import LockCosts
from concurrency.mutex import Mutex
from tests.concurrency.release_timeline import release_timeline

WAKEUP = 700
CTX = 500


def _costs(wakeup_ns: int) -> LockCosts:
    return LockCosts(atomic_ns=0, bounce_ns=0, handoff_ns=0, wakeup_ns=wakeup_ns)


def _release_and_step(kind: str, wakeup_ns: int) -> dict[str, int]:
    """The shared timeline (release_timeline.py) with only ``wakeup_ns`` costing anything."""
    seen, _ = release_timeline(kind, _costs(wakeup_ns), CTX)
    return seen


def test_the_waker_s_next_step_ends_wakeup_ns_later_and_the_woken_task_s_dispatch_is_unchanged() -> None:
    for kind in ("mutex", "rwsem"):
        off = _release_and_step(kind, 0)
        on = _release_and_step(kind, WAKEUP)
        assert off["waker_step_end"] == 1200, kind
        assert on["waker_step_end"] == 1200 + WAKEUP, kind
        # B was woken at the release (1000) and runs after its context switch either way.
        assert off["woken_holds"] == on["woken_holds"] == 1000 + CTX, kind


def test_no_charge_without_a_sleeping_waiter() -> None:
    engine = Engine(1, lock_costs=_costs(WAKEUP))
    mutex = Mutex(engine, "m")

    async def alone() -> None:
        await mutex.lock()
        mutex.unlock()
        await engine.delay(100)

    engine.spawn("A", alone)
    engine.run()
    assert engine.now == 100


def test_a_waker_that_sleeps_owing_keeps_its_cpu_busy_before_the_next_dispatch() -> None:
    """A releases (waking B on CPU 1), then sleeps at once on a second lock: CPU 0 stays busy for
    the owed wake-up before it runs C, which was waiting for it."""
    engine = Engine(2, ctx_switch_ns=0, lock_costs=_costs(WAKEUP))
    first = Mutex(engine, "first", spin=False, handoff=False)
    second = Mutex(engine, "second", spin=False, handoff=False)
    seen: dict[str, int] = {}

    async def holder_a() -> None:
        await first.lock()
        await engine.delay(1000)
        first.unlock()  # wakes B: 700 ns owed
        await second.lock()  # held by D: A sleeps owing the wake-up
        second.unlock()

    async def waiter_b() -> None:
        await engine.delay(100)
        await first.lock()
        first.unlock()

    async def runnable_c() -> None:
        await engine.delay(10)  # then waits behind A for CPU 0
        seen["c_runs"] = engine.now

    async def holder_d() -> None:
        await second.lock()
        await engine.delay(5000)
        second.unlock()

    engine.spawn("A", holder_a, cpu=0)
    engine.spawn("B", waiter_b, cpu=1)
    engine.spawn("D", holder_d, cpu=1)
    engine.spawn("C", runnable_c, cpu=0)
    engine.run()
    # C waited for CPU 0 behind A; it starts once A slept and the owed wake-up passed, then works 10 ns.
    assert seen["c_runs"] == 1000 + WAKEUP + 10


def test_a_waker_that_exits_owing_leaves_its_cpu_running_for_the_owed_time() -> None:
    engine = Engine(2, ctx_switch_ns=0, lock_costs=_costs(WAKEUP))
    mutex = Mutex(engine, "m", spin=False, handoff=False)

    async def holder() -> None:
        await mutex.lock()
        await engine.delay(1000)
        mutex.unlock()  # wakes B, then exits owing the wake-up

    async def waiter() -> None:
        await engine.delay(100)
        await mutex.lock()
        mutex.unlock()
        await engine.delay(5000)

    engine.spawn("A", holder, cpu=0)
    engine.spawn("B", waiter, cpu=1)
    engine.run()
    cpu0 = engine.cpus[0]
    assert cpu0.running_ns == 1000 + WAKEUP
    assert cpu0.state is CpuState.IDLE


def test_charge_outside_a_task_charges_nobody() -> None:
    engine = Engine(1)
    engine.charge(WAKEUP)  # no current task: nothing to charge
    assert all(task.debt_ns == 0 for task in engine.tasks)
