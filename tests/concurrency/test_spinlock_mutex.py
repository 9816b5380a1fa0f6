"""Timelines for QSpinlock and Mutex (concurrency/spinlock.py, concurrency/mutex.py), and
Hypothesis state machines over random workloads of both."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from concurrency.engine import Engine, SimulationError
from concurrency.lock import LockCosts, LockMisuse
from concurrency.mutex import Mutex
from concurrency.spinlock import QSpinlock
from tests.concurrency.test_lock_contract import MODELS, Model, Step, Workload, assert_stats_match


class Gate:
    """Something to sleep on until a test wakes the task."""

    name = "gate"

    def holders(self) -> list[Any]:
        return []


# -- QSpinlock ---------------------------------------------------------------------------------


def test_qspinlock_serves_waiters_in_arrival_order_and_newcomers_cannot_barge() -> None:
    engine = Engine(6, lock_costs=LockCosts(atomic_ns=0, bounce_ns=0, handoff_ns=50))
    lock = QSpinlock(engine, "ptl")
    order: list[tuple[str, int]] = []

    async def holder() -> None:
        await lock.lock()
        await engine.delay(1000)
        lock.unlock()

    async def waiter(name: str, arrive: int) -> None:
        await engine.delay(arrive)
        await lock.lock()
        order.append((name, engine.now))
        await engine.delay(100)
        lock.unlock()

    async def barger() -> None:
        await engine.delay(1020)  # A released at 1000; B owns the lock word during the hand-off
        order.append(("trylock", int(lock.trylock())))

    engine.spawn("A", holder)
    engine.spawn("C", waiter, "C", 200)
    engine.spawn("B", waiter, "B", 100)
    engine.spawn("D", waiter, "D", 300)
    engine.spawn("E", barger)
    engine.run()
    assert order == [("trylock", 0), ("B", 1050), ("C", 1200), ("D", 1350)]
    events = lock.lclass.events
    assert events["lock_pending"] == 1 and events["lock_slowpath"] == 2  # B pending, C/D on MCS


def test_spinning_burns_cpu_while_mutex_sleepers_do_not() -> None:
    def run(make: Any) -> tuple[dict[str, int], int, int]:
        engine = Engine(2, ctx_switch_ns=0)
        lock = make(engine)

        async def holder() -> None:
            await lock.lock()
            await engine.delay(1000)
            lock.unlock()

        async def waiter() -> None:
            await engine.delay(200)
            await lock.lock()
            await engine.delay(10)
            lock.unlock()

        engine.spawn("holder", holder)
        w = engine.spawn("waiter", waiter)
        engine.run()
        return engine.cpu_time(), w.spin_ns, w.sleep_ns

    cpu, spin, sleep = run(lambda e: QSpinlock(e, "spin"))
    assert (spin, sleep) == (800, 0)
    assert cpu["spinning"] == 800 and cpu["running"] == 1000 + 200 + 10
    cpu, spin, sleep = run(lambda e: Mutex(e, "mutex", spin=False))
    assert (spin, sleep) == (0, 800)
    assert cpu["spinning"] == 0 and cpu["sleeping"] >= 800


def test_sleeping_while_holding_a_spinlock_is_scheduling_while_atomic() -> None:
    engine = Engine(2)
    spin = QSpinlock(engine, "ptl")
    mutex = Mutex(engine, "m", spin=False)

    async def mutex_holder() -> None:
        await mutex.lock()
        await engine.delay(1000)
        mutex.unlock()

    async def bad() -> None:
        await engine.delay(10)
        await spin.lock()
        await mutex.lock()  # contended: would sleep with the PTL held

    engine.spawn("holder", mutex_holder)
    engine.spawn("bad", bad)
    with pytest.raises(SimulationError) as exc:
        engine.run()
    assert isinstance(exc.value.__cause__, LockMisuse)
    assert "scheduling while atomic" in str(exc.value) and "ptl" in str(exc.value)
    assert exc.value.task_name == "bad" and exc.value.now_ns == 10


# -- Mutex ---------------------------------------------------------------------------------------


def test_mutex_spinner_spins_while_the_owner_runs_and_skips_the_context_switch() -> None:
    engine = Engine(2, ctx_switch_ns=500)
    mutex = Mutex(engine, "m")
    got: list[int] = []

    async def owner() -> None:
        await mutex.lock()
        await engine.delay(1000)
        mutex.unlock()

    async def spinner() -> None:
        await engine.delay(100)
        await mutex.lock()
        got.append(engine.now)
        mutex.unlock()

    engine.spawn("owner", owner)
    s = engine.spawn("spinner", spinner)
    engine.run()
    assert got == [1000]  # no wake-up cost: it was spinning on its CPU
    assert (s.spin_ns, s.sleep_ns) == (900, 0)
    events = mutex.lclass.events
    assert events["mutex_opt_spin"] == 1 and events["mutex_opt_lock"] == 1
    assert events["mutex_opt_fail"] == 0


def test_mutex_spinner_stops_spinning_when_the_owner_sleeps() -> None:
    engine = Engine(3, ctx_switch_ns=0)
    mutex = Mutex(engine, "m")
    gate = Gate()
    got: list[int] = []

    async def owner() -> None:
        await mutex.lock()
        await engine.delay(300)
        await engine.block(gate)  # sleeps holding the mutex (e.g. waits for I/O)
        await engine.delay(100)
        mutex.unlock()

    async def spinner() -> None:
        await engine.delay(100)
        await mutex.lock()
        got.append(engine.now)
        mutex.unlock()

    async def waker() -> None:
        await engine.delay(700)
        engine.wake(o)

    o = engine.spawn("owner", owner)
    s = engine.spawn("spinner", spinner)
    engine.spawn("waker", waker, cpu=2)
    engine.run()
    assert got == [800]
    assert s.spin_ns == 200  # spun from 100 until the owner slept at 300
    assert s.sleep_ns == 500  # then slept until the unlock at 800
    events = mutex.lclass.events
    assert events["mutex_opt_spin"] == 1 and events["mutex_opt_fail"] == 1


def test_mutex_woken_waiter_losing_to_a_stealer_sets_handoff() -> None:
    engine = Engine(4, ctx_switch_ns=1000)
    mutex = Mutex(engine, "m", spin=False)
    log: list[tuple[str, int]] = []
    flags: list[tuple[int, bool]] = []

    async def first() -> None:
        await mutex.lock()
        await engine.delay(100)
        mutex.unlock()  # wakes B to compete for the free lock; B runs at 1100

    async def waiter() -> None:
        await engine.delay(10)
        await mutex.lock()
        log.append(("B", engine.now))
        mutex.unlock()

    async def stealer() -> None:
        await engine.delay(500)
        await mutex.lock()  # free and no hand-off pending: a newcomer takes it
        log.append(("C", engine.now))
        await engine.delay(1500)
        flags.append((engine.now, mutex.handoff))
        mutex.unlock()  # HANDOFF: the lock goes straight to B

    async def trier() -> None:
        await engine.delay(2010)  # after C's unlock, before B has run
        log.append(("D trylock", int(mutex.trylock())))

    engine.spawn("A", first)
    b = engine.spawn("B", waiter)
    engine.spawn("C", stealer)
    engine.spawn("D", trier)
    engine.run()
    assert log == [("C", 500), ("D trylock", 0), ("B", 3000)]
    assert flags == [(2000, True)]  # B found C owning at 1100 and asked for a hand-off
    assert mutex.handoff is False
    assert mutex.lclass.events["mutex_handoff_set"] == 1
    assert b.sleep_ns == (100 - 10) + (2000 - 1100)  # two sleeps, each until its wake-up
    assert mutex.lclass.write.contentions == 1


def test_mutex_without_a_stealer_the_woken_waiter_just_takes_it() -> None:
    engine = Engine(2, ctx_switch_ns=1000)
    mutex = Mutex(engine, "m", spin=False)
    got: list[int] = []

    async def first() -> None:
        await mutex.lock()
        await engine.delay(100)
        mutex.unlock()

    async def waiter() -> None:
        await engine.delay(10)
        await mutex.lock()
        got.append(engine.now)
        mutex.unlock()

    engine.spawn("A", first)
    engine.spawn("B", waiter)
    engine.run()
    assert got == [1100]
    assert mutex.lclass.events["mutex_handoff_set"] == 0


def test_spinner_stops_when_lock_handed_to_waiter_on_its_cpu() -> None:
    engine = Engine(4, ctx_switch_ns=1000)
    mutex = Mutex(engine, "m")  # kernel defaults: spinning, hand-off only after a lost race
    gate = Gate()
    log: list[tuple[str, int]] = []

    async def a() -> None:  # cpu0
        await mutex.lock()
        await engine.delay(100)
        mutex.unlock()  # wakes Y to compete (it runs at 2010, see below)

    async def y() -> None:  # cpu1: C is runnable there, so Y sleeps instead of spinning
        await engine.delay(10)
        await mutex.lock()
        log.append(("Y", engine.now))
        mutex.unlock()

    async def c() -> None:  # cpu1
        await engine.block(gate)  # woken at 1500 by D; runs at 3010, spins on B
        await mutex.lock()
        log.append(("C", engine.now))
        mutex.unlock()

    async def b() -> None:  # cpu2: takes the free lock while Y wakes up
        await engine.delay(500)
        await mutex.lock()
        await engine.delay(6000)  # Y runs at 2010, loses, sets HANDOFF and sleeps
        mutex.unlock()  # 6500: hands the lock to Y, whose CPU C is spinning on

    async def d() -> None:  # cpu3
        await engine.delay(1500)
        engine.wake(tc)

    engine.spawn("A", a, cpu=0)
    engine.spawn("Y", y, cpu=1)
    tc = engine.spawn("C", c, cpu=1)
    engine.spawn("B", b, cpu=2)
    engine.spawn("D", d, cpu=3)
    engine.run()
    assert [name for name, _ in log] == ["Y", "C"]


# -- Hypothesis state machines ---------------------------------------------------------------------

steps = st.lists(st.tuples(st.integers(0, 8), st.integers(0, 40), st.booleans()), min_size=1, max_size=6)
MAX_TASKS_PER_RUN = 6


class LockMachine(RuleBasedStateMachine):
    """Spawn workers with random scripts, run the engine to quiescence, repeat.

    Invariants: at most one owner (the workers assert it at every acquisition), no lost wake-up
    (every run completes with every task done: a lost wake-up is a Deadlock), the lock's
    lock_stat fields match the workers' own account, FIFO locks serve waiters in arrival order.
    """

    variants: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.engine: Engine | None = None

    @initialize(data=st.data(), ncpus=st.integers(1, 4), ctx=st.sampled_from([0, 1, 300, 1000]))
    def setup(self, data: st.DataObject, ncpus: int, ctx: int) -> None:
        self.variant = data.draw(st.sampled_from(self.variants), label="variant")
        self.model: Model = MODELS[self.variant]()
        self.one_task_per_cpu = False
        self.ncpus = MAX_TASKS_PER_RUN if self.one_task_per_cpu else ncpus
        self.engine = Engine(self.ncpus, ctx_switch_ns=ctx)
        self.lock = self.model.make(self.engine)
        self.load = Workload(self.engine, self.model, self.lock)
        if self.variant == "qspinlock":
            self.load.fifo_busy = lambda lk: lk.owner is not None or bool(lk.queue)
        elif self.variant.startswith("mutex-fifo"):
            self.load.fifo_busy = lambda lk: lk.owner is not None or bool(lk.waiters)
        self.spawned = 0
        self.this_run = 0
        self.scripts: list[list[Step]] = []

    @precondition(lambda self: self.engine is not None and self.this_run < MAX_TASKS_PER_RUN)
    @rule(cpu=st.integers(0, 3), script=steps)
    def spawn(self, cpu: int, script: list[Step]) -> None:
        assert self.engine is not None
        where = self.this_run if self.one_task_per_cpu else cpu % self.ncpus
        self.engine.spawn(f"w{self.spawned}", self.load.worker, script, cpu=where)
        self.spawned += 1
        self.this_run += 1
        self.scripts.append(script)

    @precondition(lambda self: self.engine is not None)
    @rule()
    def run(self) -> None:
        assert self.engine is not None
        outcome = self.engine.run()
        assert outcome.reason == "completed" and outcome.tasks_left == []
        assert self.load.finished == self.spawned
        self.this_run = 0
        attempts = sum(len(s) for s in self.scripts)
        assert self.load.acquired + self.load.try_failed == attempts
        assert_stats_match(self.model, self.lock, self.load)
        assert not self.lock.is_locked() and self.lock.holders() == []
        assert not self.load.fifo

    @invariant()
    def at_most_one_owner(self) -> None:
        if self.engine is not None:
            assert len(self.lock.holders()) <= 1

    def teardown(self) -> None:
        if self.engine is not None and self.this_run:
            self.run()


class MutexMachine(LockMachine):
    variants = ("mutex", "mutex-nospin", "mutex-pre-4.10", "mutex-pre-4.10-nospin", "mutex-fifo", "mutex-fifo-nospin")


class QSpinlockMachine(LockMachine):
    variants = ("qspinlock",)


machine_settings = settings(max_examples=40, stateful_step_count=12, deadline=None)
TestMutexMachine = MutexMachine.TestCase
TestMutexMachine.settings = machine_settings
TestQSpinlockMachine = QSpinlockMachine.TestCase
TestQSpinlockMachine.settings = machine_settings


def test_a_spinlock_handed_over_is_never_preempted_before_it_is_taken() -> None:
    """The waiter's slice is long used up and a task waits for its CPU when the lock is handed
    over: the pick-up (handoff_ns) is part of spin_lock, under preempt_disable, so the new owner
    keeps its CPU.  Preempted there, it would own the lock off-CPU while the task that got its
    CPU spins on that lock for ever."""
    engine = Engine(2, timeslice_ns=1_000, lock_costs=LockCosts(handoff_ns=100))
    lock = QSpinlock(engine, "ptl")
    order: list[tuple[str, int]] = []

    async def holder() -> None:
        await lock.lock()
        await engine.delay(5_000)
        lock.unlock()

    async def waiter() -> None:
        await engine.delay(10)
        await lock.lock()  # spins on cpu1 from t=10; handed over at 5000
        order.append(("waiter owns", engine.now))
        await engine.delay(50)
        lock.unlock()

    async def queued() -> None:
        await lock.lock()  # first gets cpu1 when the waiter leaves it
        order.append(("queued owns", engine.now))
        lock.unlock()

    engine.spawn("holder", holder, cpu=0)
    engine.spawn("waiter", waiter, cpu=1)
    engine.spawn("queued", queued, cpu=1)
    assert engine.run().reason == "completed"  # before the fix: a deadlock, both on cpu1
    assert [name for name, _ in order] == ["waiter owns", "queued owns"]
    assert 5_100 <= order[0][1] < 5_200  # the hand-over plus the pick-up, no context switch
