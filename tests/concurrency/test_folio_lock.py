"""The folio lock model (concurrency/folio_lock.py): trylock, FIFO hand-off, unfairness, size."""

from __future__ import annotations

import tracemalloc

import pytest

from concurrency.engine import Engine, SimulationError
from concurrency.folio_lock import FolioLock, FolioLockTunable, FolioLockUnfair
from concurrency.lock import LockCosts, LockMisuse, SimLock


def test_trylock_fails_when_locked_and_succeeds_when_free() -> None:
    engine = Engine(2)
    folio = FolioLock(engine)
    log: list[tuple[int, bool]] = []

    async def holder() -> None:
        assert folio.folio_trylock()
        await engine.delay(100)
        folio.folio_unlock()

    async def other() -> None:
        await engine.delay(50)
        log.append((engine.now, folio.folio_trylock()))
        await engine.delay(100)
        log.append((engine.now, folio.folio_trylock()))
        folio.folio_unlock()

    engine.spawn("holder", holder)
    engine.spawn("other", other)
    engine.run()
    assert log == [(50, False), (150, True)]
    assert folio.lclass.write.acquisitions == 2 and folio.lclass.write.contentions == 0


def test_fifo_handoff_to_first_waiter_even_against_a_trylock_during_its_wakeup() -> None:
    engine = Engine(5, ctx_switch_ns=1000)
    folio = FolioLock(engine)
    order: list[tuple[str, int]] = []

    async def owner() -> None:
        await folio.folio_lock()
        await engine.delay(100)
        folio.folio_unlock()

    async def waiter(name: str, arrive: int) -> None:
        await engine.delay(arrive)
        await folio.folio_lock()
        order.append((name, engine.now))
        await engine.delay(10)
        folio.folio_unlock()

    async def stealer() -> None:
        await engine.delay(150)  # the bit was handed to B at 100; B runs only at 1100
        order.append(("trylock", int(folio.folio_trylock())))

    engine.spawn("A", owner)
    for i, name in enumerate("BCD"):
        engine.spawn(name, waiter, name, 10 * (i + 1))
    engine.spawn("E", stealer)
    engine.run()
    # B is handed the lock at 100 and runs after its context switch; C and D follow in order.
    assert order == [("trylock", 0), ("B", 1100), ("C", 2110), ("D", 3120)]
    cls = folio.lclass
    assert cls.events["folio_lock_handoff"] == 3 and cls.events["folio_lock_stolen"] == 0
    assert cls.write.contentions == 3
    assert folio.waiters is None  # the queue is dropped once empty


def test_unfair_waiter_loses_five_races_then_gets_a_handoff() -> None:
    """Mainline (v5.11+): a woken waiter must take the bit itself and re-queues at the tail
    when a trylock got there first; after sysctl_page_lock_unfairness losses it is handed off."""
    engine = Engine(2, ctx_switch_ns=1000)
    folio = FolioLockUnfair(engine)
    got: list[int] = []
    stealer_fail: list[int] = []

    async def stealer() -> None:
        await folio.folio_lock()
        while True:
            await engine.delay(50)
            folio.folio_unlock()
            await engine.delay(10)
            if not folio.folio_trylock():
                stealer_fail.append(engine.now)
                return

    async def victim() -> None:
        await engine.delay(5)
        await folio.folio_lock()
        got.append(engine.now)
        folio.folio_unlock()

    engine.spawn("stealer", stealer)
    engine.spawn("victim", victim)
    engine.run()
    cls = folio.lclass
    assert cls.events["folio_lock_stolen"] == 5
    assert cls.events["folio_lock_handoff"] == 1
    assert len(got) == 1 and len(stealer_fail) == 1 and stealer_fail[0] < got[0]
    assert cls.write.contentions == 1  # one acquisition that waited, however often it re-queued


def test_fair_default_never_lets_a_trylock_steal() -> None:
    engine = Engine(2, ctx_switch_ns=1000)
    folio = FolioLock(engine)
    steals = [0]

    async def stealer() -> None:
        await folio.folio_lock()
        for _ in range(20):
            await engine.delay(50)
            folio.folio_unlock()
            await engine.delay(10)
            if not folio.folio_trylock():
                return
            steals[0] += 1
        folio.folio_unlock()

    async def victim() -> None:
        await engine.delay(5)
        await folio.folio_lock()
        folio.folio_unlock()

    engine.spawn("stealer", stealer)
    engine.spawn("victim", victim)
    engine.run()
    assert steals[0] == 0
    assert folio.lclass.events["folio_lock_handoff"] == 1


def test_lock_charges_the_atomic_and_a_bounce() -> None:
    engine = Engine(2, lock_costs=LockCosts(atomic_ns=20, bounce_ns=100, handoff_ns=0))
    folio = FolioLock(engine)
    times: list[int] = []

    async def first() -> None:
        await folio.folio_lock()
        times.append(engine.now)
        folio.folio_unlock()

    async def second() -> None:
        await engine.delay(1000)
        await folio.folio_lock()
        times.append(engine.now)
        folio.folio_unlock()

    engine.spawn("a", first, cpu=0)
    engine.spawn("b", second, cpu=1)
    engine.run()
    assert times == [20, 1120]
    assert folio.lclass.write.acq_bounces == 1


@pytest.mark.parametrize("case", ["unlock_not_held", "unlock_by_other", "relock", "retrylock"])
def test_misuse_raises(case: str) -> None:
    engine = Engine(2)
    folio = FolioLock(engine, instance="folio7")

    async def first() -> None:
        if case == "unlock_not_held":
            folio.folio_unlock()
            return
        await folio.folio_lock()
        if case == "relock":
            await folio.folio_lock()
        elif case == "retrylock":
            folio.folio_trylock()
        await engine.delay(100)
        folio.folio_unlock()

    async def second() -> None:
        await engine.delay(10)
        folio.folio_unlock()

    engine.spawn("first", first)
    if case == "unlock_by_other":
        engine.spawn("second", second)
    with pytest.raises(SimulationError) as exc:
        engine.run()
    assert isinstance(exc.value.__cause__, LockMisuse)
    assert "folio7" in str(exc.value)


def test_generic_names_are_the_kernel_operations() -> None:
    # lock/unlock/trylock (the names any exclusive lock has) do what folio_lock & co. do: the same
    # contention, hand-off and statistics (methods, not class-body aliases: those do not compile).
    def run(generic: bool) -> tuple[list[tuple[str, int, bool]], int, int]:
        engine = Engine(2, ctx_switch_ns=100)
        folio = FolioLock(engine)
        lock, unlock, trylock = ((folio.lock, folio.unlock, folio.trylock) if generic else
                                 (folio.folio_lock, folio.folio_unlock, folio.folio_trylock))
        log: list[tuple[str, int, bool]] = []

        async def task(name: str, start: int) -> None:
            await engine.delay(start)
            log.append((name, engine.now, trylock()))
            if log[-1][2]:
                unlock()
            await lock()
            log.append((name, engine.now, folio.owner is engine.current))
            await engine.delay(100)
            unlock()

        engine.spawn("A", task, "A", 0)
        engine.spawn("B", task, "B", 50)
        engine.run()
        return log, folio.lclass.write.acquisitions, folio.lclass.write.contentions

    assert run(generic=True) == run(generic=False)
    log, acquisitions, contentions = run(generic=True)
    assert contentions == 1 and acquisitions == 3 and log[-1][0] == "B"  # B's trylock failed: A held it


def test_nesting_subclass_is_rejected() -> None:
    folio = FolioLock(Engine(1))
    assert folio.class_for(0) is folio.lclass
    with pytest.raises(ValueError, match="no nesting"):
        folio.class_for(1)


def test_sets_every_attribute_the_base_class_sets() -> None:
    """FolioLock skips SimLock.__init__ to stay small; it must still set what the base sets."""
    engine = Engine(1)
    base = SimLock(engine, "some_lock")
    folio = FolioLock(engine)
    # dir(), not vars(): a compiled instance has no __dict__ (and an attribute declared but never set
    # is missing from hasattr there, as it is here)
    data = [a for a in dir(base) if not a.startswith("__") and not callable(getattr(base, a))]
    missing = [a for a in data if a != "_subclasses" and not hasattr(folio, a)]
    assert "lclass" in data and "last_cpu" in data
    assert missing == []
    assert folio.lclass.instances == 1
    assert folio.name == "folio_lock"


def test_a_folio_lock_is_small() -> None:
    engine = Engine(1)
    n = 20_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        locks = [FolioLock(engine) for _ in range(n)]
        per_lock = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert len(locks) == n and engine.lock_classes["folio_lock"].instances == n
    # ~136 bytes on CPython 3.11 (object + inline attribute values); SimLock.__init__ would add a
    # dict per instance (~220 bytes).
    assert per_lock < 180, per_lock


def test_the_simulated_system_runs_mainline_unfairness_unless_a_scenario_says_otherwise() -> None:
    """``sysctl_page_lock_unfairness`` defaults to 5 (mm/filemap.c since v5.11); a scenario's
    ``[folio_lock] unfairness`` picks another value, 0 being the v5.9 hand-off."""
    from concurrency.folio_lock import folio_lock_class
    from mm.designs import design_class
    from mm.system import MmSystem
    from mm.types import Folio
    from workloads.scenario import scenario_from_data

    engine = Engine(1)
    assert type(MmSystem(engine, design_class("anon_vma")).folio_lock_of(Folio(0, 0))) is FolioLockUnfair
    lock = MmSystem(engine, design_class("anon_vma"), folio_lock_unfairness=0).folio_lock_of(Folio(1, 0))
    assert type(lock) is FolioLock
    odd = folio_lock_class(3)
    assert folio_lock_class(3) is odd and odd(engine).unfairness == 3
    assert type(odd(engine)) is FolioLockTunable and folio_lock_class(5)(engine).unfairness == 5
    with pytest.raises(ValueError, match="unfairness"):
        folio_lock_class(-1)
    scenario = scenario_from_data({"name": "s", "folio_lock": {"unfairness": 0}})
    assert scenario.folio_lock == {"unfairness": 0} and scenario.params()["folio_lock"] == {"unfairness": 0}
