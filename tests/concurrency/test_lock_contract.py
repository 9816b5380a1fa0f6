"""The contract every exclusive lock model keeps, whatever its wait policy.

Parametrised over Mutex (optimistic spinning on/off, kernel hand-off or strict FIFO hand-off),
QSpinlock, FolioLock (v5.9 hand-off and mainline unfairness) and, once concurrency/rwsem.py
exists, the write side of RwSemaphore:

* mutual exclusion under N tasks, and every task finishes (no lost wake-up);
* trylock fails while the lock is held and succeeds when it is free;
* lock_stat consistency: acquisitions = successful acquisitions, contentions = acquisitions that
  waited, wait and hold totals = the waits and holds observed in virtual time;
* misuse raises at once: unlock when not held, unlock from another task, re-acquire.

How "waited" is observed without ties: with free lock costs an uncontended acquisition returns at
the time it was asked for, and the workers below only ever ask at odd times and release at even
times, so an acquisition that had to wait always returns strictly later than it asked.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from concurrency.engine import Engine, SimTask, SimulationError
from concurrency.folio_lock import FolioLock, FolioLockUnfair
from concurrency.lock import LockMisuse
from concurrency.mutex import Mutex
from concurrency.spinlock import QSpinlock


@dataclass(frozen=True)
class Model:
    """How to make and drive one exclusive lock model."""

    make: Callable[[Engine], Any]
    lock: Callable[[Any], Awaitable[None]]
    unlock: Callable[[Any], None]
    trylock: Callable[[Any], bool]
    sleeps: bool  # waiters sleep (False: they spin)
    # Every contention waits a positive time.  The rwsem's fast path also fails on a free lock
    # with queued waiters, and lock_stat counts that as a contention even when the slow path
    # then steals the lock at once (LOCK_CONTENDED: lock_contended after any failed trylock).
    exact_contentions: bool = True


def _generic(make: Callable[[Engine], Any], *, sleeps: bool) -> Model:
    return Model(make, lambda lk: lk.lock(), lambda lk: lk.unlock(), lambda lk: lk.trylock(), sleeps)


def _rwsem_write(**options: bool) -> Model:
    rwsem = pytest.importorskip("concurrency.rwsem")
    return Model(lambda e: rwsem.RwSemaphore(e, "contract", **options), lambda lk: lk.down_write(),
                 lambda lk: lk.up_write(), lambda lk: lk.down_write_trylock(), True,
                 exact_contentions=False)


MODELS: dict[str, Callable[[], Model]] = {
    "mutex": lambda: _generic(lambda e: Mutex(e, "contract"), sleeps=True),
    "mutex-nospin": lambda: _generic(lambda e: Mutex(e, "contract", spin=False), sleeps=True),
    "mutex-pre-4.10": lambda: _generic(lambda e: Mutex(e, "contract", handoff=False), sleeps=True),
    "mutex-pre-4.10-nospin": lambda: _generic(lambda e: Mutex(e, "contract", handoff=False, spin=False),
                                              sleeps=True),
    "mutex-fifo": lambda: _generic(lambda e: Mutex(e, "contract", direct_handoff=True), sleeps=True),
    "mutex-fifo-nospin": lambda: _generic(
        lambda e: Mutex(e, "contract", direct_handoff=True, spin=False), sleeps=True),
    "qspinlock": lambda: _generic(lambda e: QSpinlock(e, "contract"), sleeps=False),
    "folio_lock": lambda: Model(lambda e: FolioLock(e, "contract"), lambda lk: lk.folio_lock(),
                                lambda lk: lk.folio_unlock(), lambda lk: lk.folio_trylock(), True),
    "folio_lock-unfair": lambda: _generic(lambda e: FolioLockUnfair(e, "contract"), sleeps=True),
    "rwsem-write": _rwsem_write,
    # 3.10's wait_lock (concurrency/wait_lock.py), wake-ups under it: one more step per queueing and retry
    "mutex-3.10-wait-lock": lambda: _generic(
        lambda e: Mutex(e, "contract", handoff=False, wait_lock=True, wake_q=False), sleeps=True),
    "rwsem-write-3.10-wait-lock": lambda: _rwsem_write(spin=False, reader_steal=False, handoff=False, wait_lock=True,
                                                       wake_q=False),
}

model_names = pytest.mark.parametrize("name", list(MODELS))


def odd_time_gap(now: int, base: int) -> int:
    """A gap of about 2*base that ends at an odd time."""
    return 2 * base + (1 if now % 2 == 0 else 2)


def even_time_hold(now: int, base: int) -> int:
    """A hold of about 2*base that ends at an even time."""
    return 2 * base + (2 if now % 2 == 0 else 1)


Step = tuple[int, int, bool]  # (gap base, hold base, use trylock)


class Workload:
    """Workers that take the lock per their scripts and keep their own account of what happened."""

    def __init__(self, engine: Engine, model: Model, lock: Any) -> None:
        self.engine = engine
        self.model = model
        self.lock = lock
        self.owner: SimTask | None = None
        self.acquired = 0
        self.waited = 0
        self.wait_total = 0
        self.hold_total = 0
        self.try_failed = 0
        self.finished = 0
        self.order: list[str] = []
        # For FIFO locks: "would this lock() wait?"; contended callers must then be served in
        # arrival order and nobody may get the lock past them.
        self.fifo_busy: Callable[[Any], bool] | None = None
        self.fifo: deque[SimTask] = deque()

    async def worker(self, script: list[Step]) -> None:
        engine = self.engine
        me = engine.current
        assert me is not None
        for gap, hold, use_try in script:
            await engine.delay(odd_time_gap(engine.now, gap))
            asked = engine.now
            if use_try:
                if not self.model.trylock(self.lock):
                    self.try_failed += 1
                    continue
            else:
                if self.fifo_busy is not None and self.fifo_busy(self.lock):
                    self.fifo.append(me)
                await self.model.lock(self.lock)
            if self.fifo_busy is not None:
                if self.fifo and self.fifo[0] is me:
                    self.fifo.popleft()
                else:
                    assert not self.fifo, f"{me.name} got the lock past waiters {self.fifo}"
            got = engine.now
            assert self.owner is None, f"{me.name} got the lock held by {self.owner.name}"
            self.owner = me
            self.order.append(me.name)
            self.acquired += 1
            if got > asked:
                self.waited += 1
                self.wait_total += got - asked
            await engine.delay(even_time_hold(engine.now, hold))
            assert self.owner is me
            self.owner = None
            self.hold_total += engine.now - got
            self.model.unlock(self.lock)
        self.finished += 1


def run_workload(model: Model, scripts: list[list[Step]], *, ncpus: int, ctx_switch_ns: int = 0,
                 seed: int = 0, balance: bool = False) -> tuple[Engine, Any, Workload]:
    engine = Engine(ncpus, seed=seed, ctx_switch_ns=ctx_switch_ns, balance=balance)
    lock = model.make(engine)
    load = Workload(engine, model, lock)
    for i, script in enumerate(scripts):
        engine.spawn(f"w{i}", load.worker, script)
    engine.run()
    assert all(t.done for t in engine.tasks)
    assert load.finished == len(scripts)
    return engine, lock, load


def random_scripts(rng: random.Random, ntasks: int, steps: int, *, try_share: float) -> list[list[Step]]:
    return [[(rng.randrange(0, 60), rng.randrange(0, 40), rng.random() < try_share)
             for _ in range(steps)] for _ in range(ntasks)]


def assert_stats_match(model: Model, lock: Any, load: Workload) -> None:
    side = lock.lclass.write
    assert side.acquisitions == load.acquired
    assert side.wait.count == side.contentions  # a wait is recorded for every contention
    if model.exact_contentions:
        assert side.contentions == load.waited
    else:
        assert side.contentions >= load.waited
        assert side.contentions - load.waited == dict(side.wait.items()).get(0, 0)  # zero-length waits
    assert side.wait.total_ns == load.wait_total
    assert side.hold.count == load.acquired
    assert side.hold.total_ns == load.hold_total
    assert side.wait.overflow == 0 and side.hold.overflow == 0


@model_names
@pytest.mark.parametrize("ctx_switch_ns", [0, 700])
def test_mutual_exclusion_and_everyone_finishes(name: str, ctx_switch_ns: int) -> None:
    model = MODELS[name]()
    rng = random.Random(f"contract:{name}:{ctx_switch_ns}")
    scripts = random_scripts(rng, 6, 40, try_share=0.0)
    _engine, lock, load = run_workload(model, scripts, ncpus=6, ctx_switch_ns=ctx_switch_ns)
    assert load.acquired == 6 * 40
    assert load.waited > 0  # the workload really contends
    assert_stats_match(model, lock, load)


@model_names
def test_oversubscribed_cpus(name: str) -> None:
    """Two workers per CPU: sleepers give their CPU up, spinners keep it."""
    model = MODELS[name]()
    rng = random.Random(f"oversubscribed:{name}")
    scripts = random_scripts(rng, 6, 30, try_share=0.2)
    _engine, lock, load = run_workload(model, scripts, ncpus=3, ctx_switch_ns=300)
    assert_stats_match(model, lock, load)


@model_names
def test_oversubscribed_cpus_with_load_balancing(name: str) -> None:
    """The same with woken tasks moving to idle CPUs, and idle CPUs pulling queued ones."""
    model = MODELS[name]()
    rng = random.Random(f"balanced:{name}")
    scripts = random_scripts(rng, 7, 30, try_share=0.2)
    engine, lock, load = run_workload(model, scripts, ncpus=3, ctx_switch_ns=300, balance=True)
    assert_stats_match(model, lock, load)
    assert engine.migrations > 0


@model_names
def test_statistics_match_with_trylocks_mixed_in(name: str) -> None:
    model = MODELS[name]()
    rng = random.Random(f"stats:{name}")
    scripts = random_scripts(rng, 5, 50, try_share=0.3)
    _engine, lock, load = run_workload(model, scripts, ncpus=5, ctx_switch_ns=200)
    assert load.try_failed > 0
    assert load.acquired + load.try_failed == 5 * 50
    assert_stats_match(model, lock, load)


@model_names
def test_trylock_fails_when_held_and_succeeds_when_free(name: str) -> None:
    model = MODELS[name]()
    engine = Engine(2)
    lock = model.make(engine)
    seen: list[tuple[int, bool]] = []

    async def holder() -> None:
        await model.lock(lock)
        await engine.delay(100)
        model.unlock(lock)

    async def trier() -> None:
        await engine.delay(50)
        seen.append((engine.now, model.trylock(lock)))
        await engine.delay(100)
        ok = model.trylock(lock)
        seen.append((engine.now, ok))
        if ok:
            model.unlock(lock)

    engine.spawn("holder", holder)
    engine.spawn("trier", trier)
    engine.run()
    assert seen == [(50, False), (150, True)]
    side = lock.lclass.write
    assert side.acquisitions == 2 and side.contentions == 0


@model_names
def test_waiters_sleep_or_spin_as_the_model_says(name: str) -> None:
    model = MODELS[name]()
    engine = Engine(2)
    lock = model.make(engine)

    async def holder() -> None:
        await model.lock(lock)
        await engine.delay(1000)
        model.unlock(lock)

    async def waiter() -> None:
        await engine.delay(1)
        await model.lock(lock)
        model.unlock(lock)

    engine.spawn("holder", holder)
    w = engine.spawn("waiter", waiter)
    engine.run()
    if model.sleeps and not name.startswith(("mutex", "rwsem")):
        assert (w.sleep_ns, w.spin_ns) == (999, 0)
    elif model.sleeps:  # optimistic spinning on a running owner is allowed, then the lock passes
        assert w.sleep_ns + w.spin_ns == 999
    else:
        assert (w.sleep_ns, w.spin_ns) == (0, 999)
    assert engine.cpu_time()["spinning"] == w.spin_ns


MISUSES = ["unlock_not_held", "unlock_by_other_task", "relock"]


@model_names
@pytest.mark.parametrize("misuse", MISUSES)
def test_misuse_raises_at_once(name: str, misuse: str) -> None:
    model = MODELS[name]()
    engine = Engine(2)
    lock = model.make(engine)

    async def first() -> None:
        if misuse == "unlock_not_held":
            model.unlock(lock)
            return
        await model.lock(lock)
        if misuse == "relock":
            await model.lock(lock)
        await engine.delay(100)
        model.unlock(lock)

    async def second() -> None:
        await engine.delay(10)
        model.unlock(lock)

    engine.spawn("first", first)
    if misuse == "unlock_by_other_task":
        engine.spawn("second", second)
    with pytest.raises(SimulationError) as exc:
        engine.run()
    assert isinstance(exc.value.__cause__, LockMisuse), exc.value.__cause__
    expected_task = "second" if misuse == "unlock_by_other_task" else "first"
    assert exc.value.task_name == expected_task
    assert exc.value.now_ns == (10 if misuse == "unlock_by_other_task" else 0)


@model_names
def test_trylock_by_the_owner_never_succeeds(name: str) -> None:
    """Mutex, QSpinlock and FolioLock raise LockMisuse; the kernel's trylocks just fail, which
    a model may also do."""
    model = MODELS[name]()
    engine = Engine(1)
    lock = model.make(engine)
    outcome: list[str] = []

    async def owner() -> None:
        await model.lock(lock)
        try:
            outcome.append("acquired" if model.trylock(lock) else "failed")
        except LockMisuse:
            outcome.append("misuse")
        model.unlock(lock)

    engine.spawn("owner", owner)
    engine.run()
    assert outcome in (["failed"], ["misuse"])
    if not name.startswith("rwsem"):
        assert outcome == ["misuse"]
    assert lock.lclass.write.acquisitions == 1
