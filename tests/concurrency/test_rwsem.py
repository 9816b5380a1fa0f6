"""The rwsem model against kernel/locking/rwsem.c's rules, in virtual time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from concurrency.engine import Deadlock, Engine, SimTask, SimulationError, TaskState
from concurrency.instrument import Instrument
from concurrency.lock import LockCosts, LockMisuse
from concurrency.lockdep import OrderChecker
from concurrency.mutex import Mutex
from concurrency.rwsem import RwSemaphore

US = 1000
MS = 1_000_000

Log = list[tuple[int, str, str]]


def _me(engine: Engine) -> SimTask:
    task = engine.current
    assert task is not None
    return task


def reader(engine: Engine, sem: RwSemaphore, log: Log, *, at: int = 0, hold: int = 0,
           times: int = 1, think: int = 0) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        me = _me(engine).name
        if at:
            await engine.delay(at)
        for _ in range(times):
            await sem.down_read()
            log.append((engine.now, me, "R+"))
            if hold:
                await engine.delay(hold)
            log.append((engine.now, me, "R-"))
            sem.up_read()
            if think:
                await engine.delay(think)
    return body


def writer(engine: Engine, sem: RwSemaphore, log: Log, *, at: int = 0, hold: int = 0,
           times: int = 1, think: int = 0) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        me = _me(engine).name
        if at:
            await engine.delay(at)
        for _ in range(times):
            await sem.down_write()
            log.append((engine.now, me, "W+"))
            if hold:
                await engine.delay(hold)
            log.append((engine.now, me, "W-"))
            sem.up_write()
            if think:
                await engine.delay(think)
    return body


def first(log: Log, who: str, what: str) -> int:
    return next(t for t, name, op in log if name == who and op == what)


def last(log: Log, who: str, what: str) -> int:
    return [t for t, name, op in log if name == who and op == what][-1]


# -- basic sharing and exclusion --------------------------------------------------------------


def test_readers_share_the_lock() -> None:
    engine = Engine(3)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []
    seen: list[tuple[int, list[str]]] = []

    async def look() -> None:
        await engine.delay(5 * US)
        seen.append((sem.readers, [t.name for t in sem.holders()]))

    engine.spawn("r0", reader(engine, sem, log, hold=10 * US))
    engine.spawn("r1", reader(engine, sem, log, at=1 * US, hold=10 * US))
    engine.spawn("look", look)
    engine.run()
    assert seen == [(2, ["r0", "r1"])]
    assert first(log, "r1", "R+") == 1 * US  # no wait behind r0
    assert sem.lclass.read.contentions == 0
    assert sem.lclass.read.acquisitions == 2
    assert not sem.is_locked()


def test_writer_excludes_readers_and_writers() -> None:
    engine = Engine(3)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []
    engine.spawn("w0", writer(engine, sem, log, hold=50 * US))
    engine.spawn("r", reader(engine, sem, log, at=1 * US, hold=1 * US))
    engine.spawn("w1", writer(engine, sem, log, at=2 * US, hold=1 * US))
    engine.run()
    released = first(log, "w0", "W-")
    assert first(log, "r", "R+") >= released
    assert first(log, "w1", "W+") >= released
    # Never a reader beside a writer, never two writers.
    assert _max_overlap(log) == (1, 0)
    assert sem.lclass.write.contentions == 1
    assert sem.lclass.read.contentions == 1


def _max_overlap(log: Log) -> tuple[int, int]:
    """(max writers at once, max readers while a writer held) from an ordered +/- log."""
    writers = readers = max_w = max_rw = 0
    for _t, _name, op in sorted(log, key=lambda e: (e[0], e[2][1] == "+")):  # releases first
        if op == "W+":
            writers += 1
        elif op == "W-":
            writers -= 1
        elif op == "R+":
            readers += 1
        else:
            readers -= 1
        max_w = max(max_w, writers)
        if writers:
            max_rw = max(max_rw, readers)
    return max_w, max_rw


def test_queued_writer_blocks_new_readers_and_read_trylock() -> None:
    engine = Engine(4)
    sem = RwSemaphore(engine, "mm->mmap_lock", spin=False)
    log: Log = []
    tries: list[bool] = []

    async def try_read() -> None:
        await engine.delay(3 * US)
        ok = sem.down_read_trylock()
        tries.append(ok)
        if ok:
            sem.up_read()

    engine.spawn("r0", reader(engine, sem, log, hold=20 * US))
    engine.spawn("w", writer(engine, sem, log, at=1 * US, hold=5 * US))
    engine.spawn("r1", reader(engine, sem, log, at=2 * US, hold=1 * US))
    engine.spawn("try", try_read)
    engine.run()
    # The lock was reader-owned, yet r1 queued behind the writer and the trylock failed.
    assert tries == [False]
    assert first(log, "w", "W+") == 20 * US
    assert first(log, "r1", "R+") == 25 * US
    assert sem.lclass.events["rwsem_rlock"] == 1
    assert sem.lclass.events["rwsem_rlock_steal"] == 0


def test_read_trylock_succeeds_on_reader_owned_lock_without_waiters() -> None:
    engine = Engine(2)
    sem = RwSemaphore(engine, "mm->mmap_lock")
    results: list[bool] = []

    async def holder() -> None:
        await sem.down_read()
        await engine.delay(10 * US)
        sem.up_read()

    async def trier() -> None:
        await engine.delay(1 * US)
        results.append(sem.down_read_trylock())
        results.append(sem.down_write_trylock())
        sem.up_read()
        results.append(sem.down_write_trylock())
        await engine.delay(20 * US)
        results.append(sem.down_write_trylock())
        sem.up_write()

    engine.spawn("holder", holder)
    engine.spawn("trier", trier)
    engine.run()
    assert results == [True, False, False, True]
    assert sem.lclass.read.acquisitions == 2
    assert sem.lclass.write.acquisitions == 1


# -- wake-up: phase-fair batches ------------------------------------------------------------------


def test_reader_batch_wakeup_is_capped_at_256() -> None:
    engine = Engine(9)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False)
    log: Log = []
    after_release: list[tuple[int, int]] = []

    async def w0() -> None:
        await sem.down_write()
        await engine.delay(100 * US)
        sem.up_write()
        # Granted readers own the lock before they run.
        after_release.append((sem.readers, sem.nr_waiters()))

    engine.spawn("w0", w0, cpu=8)
    for i in range(300):
        engine.spawn(f"r{i:03d}", reader(engine, sem, log, at=1 * US, hold=2 * US), cpu=i % 8)
    engine.run()
    assert after_release == [(256, 44)]
    acquired = sorted((t, name) for t, name, op in log if op == "R+")
    first_batch = {n for _t, n in acquired[:256]}
    late = [t for t, n in acquired if n not in first_batch]
    assert len(late) == 44
    # The other 44 wait for the whole first phase to end (the last up_read wakes them).
    last_release_of_first = max(t for t, n, op in log if op == "R-" and n in first_batch)
    assert min(late) >= last_release_of_first
    assert sem.lclass.events["rwsem_wake_reader"] == 300
    assert sem.lclass.events["rwsem_rlock"] == 300
    assert sem.lclass.read.contentions == 300


def test_batch_size_is_a_parameter() -> None:
    engine = Engine(2)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False, max_readers_wakeup=3)
    seen: list[int] = []

    async def w0() -> None:
        await sem.down_write()
        await engine.delay(10 * US)
        sem.up_write()
        seen.append(sem.readers)

    engine.spawn("w0", w0)
    for i in range(5):
        engine.spawn(f"r{i}", reader(engine, sem, [], at=1 * US, hold=1 * US))
    engine.run()
    assert seen == [3]


def test_readers_are_granted_past_a_queued_writer() -> None:
    engine = Engine(4)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False)
    log: Log = []
    state: list[tuple[int, list[str]]] = []

    async def w0() -> None:
        await sem.down_write()
        await engine.delay(20 * US)
        sem.up_write()
        state.append((sem.readers, [w.task.name for w in sem.waitq]))

    engine.spawn("w0", w0)
    engine.spawn("r1", reader(engine, sem, log, at=1 * US, hold=10 * US))
    engine.spawn("w1", writer(engine, sem, log, at=2 * US, hold=1 * US))
    engine.spawn("r2", reader(engine, sem, log, at=3 * US, hold=10 * US))
    engine.run()
    # Queue was [r1, w1, r2]: the read phase takes r1 and r2, w1 keeps its place.
    assert state == [(2, ["w1"])]
    assert first(log, "r2", "R+") == 20 * US
    assert first(log, "w1", "W+") == 30 * US


def test_writer_at_head_is_woken_alone() -> None:
    engine = Engine(4)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False)
    log: Log = []
    engine.spawn("w0", writer(engine, sem, log, hold=20 * US))
    engine.spawn("w1", writer(engine, sem, log, at=1 * US, hold=10 * US))
    engine.spawn("r1", reader(engine, sem, log, at=2 * US, hold=1 * US))
    engine.run()
    assert first(log, "w1", "W+") == 20 * US
    assert first(log, "r1", "R+") == 30 * US
    assert sem.lclass.events["rwsem_wake_writer"] == 1
    assert sem.lclass.events["rwsem_wake_reader"] == 1


# -- reader lock stealing -------------------------------------------------------------------------


def _woken_writer_window(reader_steal: bool) -> tuple[Log, RwSemaphore]:
    """r0 releases with a writer queued; the writer needs 5 µs to get back on a CPU; r1 arrives
    in that window."""
    engine = Engine(3, ctx_switch_ns=5 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False, reader_steal=reader_steal)
    log: Log = []
    engine.spawn("r0", reader(engine, sem, log, hold=10 * US))
    engine.spawn("w", writer(engine, sem, log, at=1 * US, hold=10 * US))
    engine.spawn("r1", reader(engine, sem, log, at=12 * US, hold=10 * US))
    engine.run()
    return log, sem


def test_reader_steals_a_free_lock_past_a_woken_writer() -> None:
    log, sem = _woken_writer_window(reader_steal=True)
    assert first(log, "r1", "R+") == 12 * US
    assert sem.lclass.events["rwsem_rlock_steal"] == 1
    # The writer ran at 15 µs, found r1 inside, slept again, and got it after r1's release.
    assert first(log, "w", "W+") == 22 * US + 5 * US
    assert sem.lclass.events["rwsem_sleep_writer"] == 2


def test_without_reader_stealing_the_reader_queues() -> None:
    log, sem = _woken_writer_window(reader_steal=False)
    assert first(log, "w", "W+") == 15 * US
    assert first(log, "r1", "R+") > last(log, "w", "W-")
    assert sem.lclass.events["rwsem_rlock_steal"] == 0


# -- optimistic spinning --------------------------------------------------------------------------


def _spin_vs_sleep(spin: bool) -> tuple[Engine, RwSemaphore, Log]:
    engine = Engine(2)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=spin)
    log: Log = []
    engine.spawn("w0", writer(engine, sem, log, hold=50 * US))
    engine.spawn("w1", writer(engine, sem, log, at=10 * US, hold=5 * US))
    engine.run()
    return engine, sem, log


def test_spinning_on_a_running_writer_burns_cpu() -> None:
    engine, sem, log = _spin_vs_sleep(spin=True)
    assert engine.cpu_time()["spinning"] == 40 * US
    assert first(log, "w1", "W+") == 50 * US
    assert sem.lclass.events["rwsem_opt_lock"] == 1
    assert sem.lclass.events["rwsem_wlock"] == 0
    assert sem.lclass.events["rwsem_sleep_writer"] == 0


def test_sleeping_writer_does_not_burn_cpu() -> None:
    engine, sem, log = _spin_vs_sleep(spin=False)
    cpu = engine.cpu_time()
    assert cpu["spinning"] == 0
    assert cpu["sleeping"] == 40 * US
    assert first(log, "w1", "W+") == 50 * US
    assert sem.lclass.events["rwsem_wlock"] == 1
    assert sem.lclass.events["rwsem_sleep_writer"] == 1
    assert sem.lclass.events["rwsem_opt_lock"] == 0


def test_spinner_stops_when_the_owner_sleeps() -> None:
    engine = Engine(3)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    mutex = Mutex(engine, "other", spin=False)
    log: Log = []

    async def mutex_holder() -> None:
        await mutex.lock()
        await engine.delay(100 * US)
        mutex.unlock()

    async def w0() -> None:
        await engine.delay(1 * US)
        await sem.down_write()
        await engine.delay(20 * US)
        await mutex.lock()  # sleeps holding the rwsem: at 21 µs
        mutex.unlock()
        sem.up_write()

    engine.spawn("m", mutex_holder)
    engine.spawn("w0", w0)
    engine.spawn("w1", writer(engine, sem, log, at=5 * US, hold=1 * US))
    engine.run()
    w1 = next(t for t in engine.tasks if t.name == "w1")
    assert w1.spin_ns == 21 * US - 5 * US
    assert sem.lclass.events["rwsem_opt_fail"] == 1
    assert first(log, "w1", "W+") == 100 * US
    assert sem.lclass.events["rwsem_wlock"] == 1


def test_no_spinning_when_the_cpu_is_wanted() -> None:
    engine = Engine(2)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []

    async def idle() -> None:
        return None

    engine.spawn("w0", writer(engine, sem, log, hold=50 * US), cpu=0)
    engine.spawn("w1", writer(engine, sem, log, at=1 * US, hold=1 * US), cpu=1)
    engine.spawn("other", idle, cpu=1)  # runnable behind w1: need_resched()
    engine.run()
    assert engine.cpu_time()["spinning"] == 0
    assert sem.lclass.events["rwsem_opt_fail"] == 1
    assert sem.lclass.events["rwsem_wlock"] == 1


@pytest.mark.parametrize(("nreaders", "spin_ns"), [(1, 10_500), (10, 15_000), (30, 25_000), (40, 25_000)])
def test_reader_owned_spin_threshold(nreaders: int, spin_ns: int) -> None:
    engine = Engine(nreaders + 1)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []
    for i in range(nreaders):
        engine.spawn(f"r{i}", reader(engine, sem, log, hold=200 * US))
    w = engine.spawn("w", writer(engine, sem, log, at=1 * US, hold=1 * US))
    engine.run()
    assert w.spin_ns == spin_ns
    assert engine.cpu_time()["spinning"] == spin_ns
    assert sem.lclass.events["rwsem_opt_nospin"] == 1
    assert sem.lclass.events["rwsem_opt_fail"] == 1
    assert first(log, "w", "W+") == 200 * US  # woken by the last up_read


def test_nonspinnable_reader_phase_then_spinning_again() -> None:
    """After a writer gave up on a reader phase, a second writer does not spin on it; once the
    phase ends the flag is cleared."""
    engine = Engine(4)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []
    engine.spawn("r", reader(engine, sem, log, hold=100 * US))
    w1 = engine.spawn("w1", writer(engine, sem, log, at=1 * US, hold=30 * US))
    w2 = engine.spawn("w2", writer(engine, sem, log, at=50 * US, hold=1 * US))
    engine.run()
    assert w1.spin_ns == 10_500
    assert sem.lclass.events["rwsem_opt_nospin"] == 1
    # w2 came while the lock was still the non-spinnable reader phase: no spin, queued.
    assert first(log, "w1", "W+") == 100 * US
    assert first(log, "w2", "W+") == 130 * US
    assert w2.spin_ns == 0
    assert sem.lclass.events["rwsem_opt_fail"] == 2


def test_spinner_takes_a_lock_freed_by_the_last_reader() -> None:
    engine = Engine(3)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []
    engine.spawn("r", reader(engine, sem, log, hold=5 * US))
    w = engine.spawn("w", writer(engine, sem, log, at=1 * US, hold=1 * US))
    engine.run()
    assert first(log, "w", "W+") == 5 * US
    assert w.spin_ns == 4 * US
    assert sem.lclass.events["rwsem_opt_lock"] == 1


def test_spinner_beats_the_woken_queued_writer() -> None:
    """The last reader leaves with a writer queued: the spinning writer takes the lock at once
    (writer lock stealing), the queued one wakes, fails, and sleeps again."""
    engine = Engine(3, ctx_switch_ns=1 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []

    async def idle() -> None:
        return None

    engine.spawn("r", reader(engine, sem, log, hold=8 * US), cpu=0)
    engine.spawn("queued", writer(engine, sem, log, at=1 * US, hold=1 * US), cpu=1)
    engine.spawn("other", idle, cpu=1)  # need_resched() on cpu1: "queued" does not spin
    engine.spawn("spinner", writer(engine, sem, log, at=2 * US, hold=5 * US), cpu=2)
    engine.run()
    assert first(log, "spinner", "W+") == 8 * US
    assert first(log, "queued", "W+") == 13 * US + 1 * US
    ev = sem.lclass.events
    assert ev["rwsem_opt_lock"] == 1 and ev["rwsem_wlock"] == 1
    assert ev["rwsem_sleep_writer"] == 2 and ev["rwsem_wake_writer"] == 2


def test_osq_serialises_spinners() -> None:
    engine = Engine(4)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []
    engine.spawn("w0", writer(engine, sem, log, hold=10 * US))
    engine.spawn("w1", writer(engine, sem, log, at=1 * US, hold=10 * US))
    engine.spawn("w2", writer(engine, sem, log, at=2 * US, hold=10 * US))
    engine.run()
    assert first(log, "w1", "W+") == 10 * US
    assert first(log, "w2", "W+") == 20 * US  # behind w1 on the OSQ, then spun on w1
    assert sem.lclass.events["rwsem_opt_lock"] == 2
    assert engine.cpu_time()["spinning"] == 9 * US + 18 * US


# -- handoff ----------------------------------------------------------------------------------------


def _starved_writer(handoff: bool) -> tuple[Log, RwSemaphore]:
    """One reader keeps stealing the lock in the window in which the woken writer waits for its
    CPU (5.5 µs reader cycle, 2 µs wake-up)."""
    engine = Engine(2, ctx_switch_ns=2 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False, handoff=handoff)
    log: Log = []
    engine.spawn("r", reader(engine, sem, log, hold=5 * US, think=500, times=2400))
    engine.spawn("w", writer(engine, sem, log, at=1 * US, hold=1 * US))
    engine.run()
    return log, sem


def test_handoff_ends_reader_stealing_after_the_timeout_jiffy() -> None:
    """Queued at 1 us, in jiffy 0 (HZ=250): ``time_after(jiffies, 0 + 1)`` from 8 ms on."""
    log, sem = _starved_writer(handoff=True)
    got = first(log, "w", "W+")
    assert 8 * MS < got < 8 * MS + 20 * US
    assert last(log, "r", "R-") > got  # the reader was not done: the writer cut in
    assert sem.lclass.events["rwsem_wlock_handoff"] == 1
    assert sem.lclass.events["rwsem_rlock_steal"] > 1400
    assert sem.lclass.write.wait.max_ns == got - 1 * US
    assert not sem.handoff


def test_without_handoff_the_writer_starves() -> None:
    log, sem = _starved_writer(handoff=False)
    assert first(log, "w", "W+") > last(log, "r", "R-")  # only after the reader stopped
    assert sem.lclass.events["rwsem_wlock_handoff"] == 0


def test_handoff_reserves_the_lock_for_the_first_waiter() -> None:
    engine = Engine(5, ctx_switch_ns=5 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False, handoff_timeout_ns=10 * US)
    log: Log = []
    tries: list[bool] = []

    async def trier() -> None:
        await engine.delay(43 * US)
        tries.append(sem.handoff)
        tries.append(sem.down_read_trylock())
        tries.append(sem.down_write_trylock())

    engine.spawn("r", reader(engine, sem, log, hold=30 * US))
    engine.spawn("w", writer(engine, sem, log, at=1 * US, hold=10 * US))  # queued, times out at 11 µs
    engine.spawn("r2", reader(engine, sem, log, at=32 * US, hold=10 * US))  # steals at 32 µs
    engine.spawn("late", writer(engine, sem, log, at=44 * US, hold=1 * US))
    engine.spawn("trier", trier)
    engine.run()
    # w ran at 35 µs, still failed and set HANDOFF; r2's release at 42 woke it again (at 47 µs).
    # In that window the lock is free, yet the trylocks fail and the queued "late" writer (a
    # non-first waiter trying rwsem_try_write_lock) may not take it.
    assert tries == [True, False, False]
    assert first(log, "w", "W+") == 47 * US
    assert first(log, "late", "W+") > last(log, "w", "W-")
    assert sem.lclass.events["rwsem_wlock_handoff"] == 1


def _writers_ping_pong(handoff: bool, queued: str) -> tuple[Log, RwSemaphore, Engine]:
    """Two spinning writers hand the lock to each other for 6 ms; ``queued`` (a reader or a
    writer that cannot spin because its CPU is wanted) waits in the queue."""
    engine = Engine(3, ctx_switch_ns=1 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem", handoff=handoff)
    log: Log = []

    async def idle() -> None:
        return None

    engine.spawn("w1", writer(engine, sem, log, hold=10 * US, think=1 * US, times=500), cpu=0)
    engine.spawn("w2", writer(engine, sem, log, at=500, hold=10 * US, think=1 * US, times=500), cpu=1)
    if queued == "reader":
        async def q() -> None:
            await engine.delay(2 * US)
            await sem.down_read()
            log.append((engine.now, "q", "R+"))
            log.append((engine.now, "q", "handoff" if sem.handoff else "no-handoff"))
            await engine.delay(1 * US)
            log.append((engine.now, "q", "R-"))
            sem.up_read()

        engine.spawn("q", q, cpu=2)
    else:
        engine.spawn("q", writer(engine, sem, log, at=2 * US, hold=1 * US), cpu=2)
        engine.spawn("other", idle, cpu=2)  # keeps q from spinning at first
    engine.run()
    return log, sem, engine


def test_reader_sets_handoff_when_writers_keep_stealing() -> None:
    log, sem, _ = _writers_ping_pong(handoff=True, queued="reader")
    got = first(log, "q", "R+")
    assert 8 * MS < got < 8 * MS + 40 * US  # queued in jiffy 0 (HZ=250): time_after from 8 ms
    assert sem.lclass.events["rwsem_rlock_handoff"] == 1
    assert sem.lclass.events["rwsem_opt_lock"] > 300
    # The grant to the reader cleared HANDOFF: the writers can spin and steal again.
    assert first(log, "q", "no-handoff") == got


def test_reader_starves_behind_stealing_writers_without_handoff() -> None:
    log, sem, _ = _writers_ping_pong(handoff=False, queued="reader")
    assert first(log, "q", "R+") >= max(last(log, "w1", "W-"), last(log, "w2", "W-"))
    assert sem.lclass.events["rwsem_rlock_handoff"] == 0


def test_queued_writer_sets_handoff_and_spins_for_the_lock() -> None:
    log, sem, engine = _writers_ping_pong(handoff=True, queued="writer")
    got = first(log, "q", "W+")
    assert 8 * MS < got < 8 * MS + 40 * US  # queued in jiffy 0 (HZ=250): time_after from 8 ms
    assert sem.lclass.events["rwsem_wlock_handoff"] == 1
    q = next(t for t in engine.tasks if t.name == "q")
    assert q.spin_ns > 0  # after setting HANDOFF it spun on the running owner
    assert sem.lclass.events["rwsem_sleep_writer"] > 100  # woken and beaten, again and again


def test_queued_writer_starves_without_handoff() -> None:
    log, sem, _ = _writers_ping_pong(handoff=False, queued="writer")
    assert first(log, "q", "W+") >= max(last(log, "w1", "W-"), last(log, "w2", "W-"))
    assert sem.lclass.events["rwsem_wlock_handoff"] == 0


def test_handoff_timeout_is_a_parameter() -> None:
    engine = Engine(2, ctx_switch_ns=2 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False, handoff_timeout_ns=100 * US)
    log: Log = []
    engine.spawn("r", reader(engine, sem, log, hold=5 * US, think=500, times=100))
    engine.spawn("w", writer(engine, sem, log, at=1 * US, hold=1 * US))
    engine.run()
    assert 101 * US < first(log, "w", "W+") < 120 * US


@pytest.mark.parametrize(("hz", "queued_at", "handoff_at"), [
    (250, 1_000 * US, 8_000 * US),  # queued in jiffy 0: timeout jiffy 1, handoff once jiffies = 2
    (250, 3_990 * US, 8_000 * US),  # still jiffy 0: a 4.01 ms wait
    (250, 4_010 * US, 12_000 * US),  # jiffy 1: a 7.99 ms wait
    (1000, 1_000 * US, 6_000 * US),  # DIV_ROUND_UP(1000, 250) = 4 jiffies of 1 ms
    (100, 1_000 * US, 20_000 * US),  # 1 jiffy of 10 ms
])
def test_the_handoff_timeout_counts_jiffies(hz: int, queued_at: int, handoff_at: int) -> None:
    """``waiter.timeout = jiffies + RWSEM_WAIT_TIMEOUT`` (``DIV_ROUND_UP(HZ, 250)``) and the handoff
    once ``time_after(jiffies, waiter.timeout)``: a writer starved by overlapping readers gets the
    lock at the first jiffy tick after its timeout jiffy, 4-8 ms after it queued at HZ=250."""
    engine = Engine(2, ctx_switch_ns=2 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False, hz=hz)
    log: Log = []
    # One reader steals the lock in the window in which the woken writer waits for its CPU.
    engine.spawn("r", reader(engine, sem, log, hold=5 * US, think=500, times=4000))
    engine.spawn("w", writer(engine, sem, log, at=queued_at, hold=1 * US))
    engine.run()
    granted = first(log, "w", "W+")
    assert handoff_at < granted < handoff_at + 20 * US
    assert sem.lclass.events["rwsem_wlock_handoff"] == 1


# -- downgrade ----------------------------------------------------------------------------------------


def test_downgrade_grants_queued_readers() -> None:
    engine = Engine(4)
    sem = RwSemaphore(engine, "mm->mmap_lock", spin=False)
    log: Log = []
    seen: list[tuple[bool, int, list[str]]] = []

    async def w() -> None:
        await sem.down_write()
        await engine.delay(10 * US)
        sem.downgrade_write()
        seen.append((sem.is_write_locked(), sem.readers, [x.task.name for x in sem.waitq]))
        await engine.delay(10 * US)
        sem.up_read()

    engine.spawn("w", w)
    engine.spawn("r1", reader(engine, sem, log, at=1 * US, hold=1 * US))
    engine.spawn("r2", reader(engine, sem, log, at=2 * US, hold=1 * US))
    engine.spawn("w2", writer(engine, sem, log, at=3 * US, hold=1 * US))
    engine.run()
    assert seen == [(False, 3, ["w2"])]
    assert first(log, "r1", "R+") == 10 * US
    assert first(log, "w2", "W+") == 20 * US
    stats = sem.lclass
    assert stats.write.acquisitions == 2 and stats.write.hold.count == 2
    assert stats.read.acquisitions == 3 and stats.read.hold.count == 3


def test_downgrade_leaves_a_head_writer_queued() -> None:
    engine = Engine(4)
    sem = RwSemaphore(engine, "mm->mmap_lock", spin=False)
    log: Log = []
    seen: list[int] = []

    async def w() -> None:
        await sem.down_write()
        await engine.delay(10 * US)
        sem.downgrade_write()
        seen.append(sem.readers)
        await engine.delay(10 * US)
        sem.up_read()

    engine.spawn("w", w)
    engine.spawn("w2", writer(engine, sem, log, at=1 * US, hold=1 * US))
    engine.spawn("r1", reader(engine, sem, log, at=2 * US, hold=1 * US))
    engine.run()
    assert seen == [1]
    assert first(log, "w2", "W+") == 20 * US
    assert first(log, "r1", "R+") == 21 * US


# -- misuse -------------------------------------------------------------------------------------------


def _misuse(body: Callable[[Engine, RwSemaphore], Awaitable[None]]) -> str:
    engine = Engine(1)
    sem = RwSemaphore(engine, "anon_vma->rwsem")

    async def task() -> None:
        await body(engine, sem)

    engine.spawn("t", task)
    with pytest.raises(SimulationError) as info:
        engine.run()
    assert isinstance(info.value.__cause__, LockMisuse)
    return str(info.value.__cause__)


def test_up_read_without_holding_is_misuse() -> None:
    async def body(engine: Engine, sem: RwSemaphore) -> None:
        sem.up_read()

    assert "does not hold" in _misuse(body)


def test_up_read_by_the_writer_is_misuse() -> None:
    async def body(engine: Engine, sem: RwSemaphore) -> None:
        await sem.down_write()
        sem.up_read()

    assert "does not hold" in _misuse(body)


def test_up_write_by_a_reader_is_misuse() -> None:
    async def body(engine: Engine, sem: RwSemaphore) -> None:
        await sem.down_read()
        sem.up_write()

    assert "held by nobody" in _misuse(body)


def test_up_write_by_another_task_is_misuse() -> None:
    engine = Engine(2)
    sem = RwSemaphore(engine, "anon_vma->rwsem")

    async def owner() -> None:
        await sem.down_write()
        await engine.delay(10 * US)
        sem.up_write()

    async def other() -> None:
        await engine.delay(1 * US)
        sem.up_write()

    engine.spawn("owner", owner)
    engine.spawn("other", other)
    with pytest.raises(SimulationError, match="held by owner"):
        engine.run()


def test_write_reacquire_is_misuse() -> None:
    async def body(engine: Engine, sem: RwSemaphore) -> None:
        await sem.down_write()
        await sem.down_write()

    assert "AA deadlock" in _misuse(body)


def test_read_by_the_write_owner_is_misuse() -> None:
    async def body(engine: Engine, sem: RwSemaphore) -> None:
        await sem.down_write()
        await sem.down_read()

    assert "holds for write" in _misuse(body)


def test_write_while_holding_read_is_misuse() -> None:
    async def body(engine: Engine, sem: RwSemaphore) -> None:
        await sem.down_read()
        await sem.down_write()

    assert "holds for read" in _misuse(body)


def test_downgrade_without_write_is_misuse() -> None:
    async def body(engine: Engine, sem: RwSemaphore) -> None:
        await sem.down_read()
        sem.downgrade_write()

    assert "downgrades" in _misuse(body)


def test_trylocks_by_the_write_owner_fail_like_the_kernel() -> None:
    engine = Engine(1)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    results: list[bool] = []

    async def task() -> None:
        await sem.down_write()
        results.append(sem.down_read_trylock())
        results.append(sem.down_write_trylock())
        sem.up_write()

    engine.spawn("t", task)
    engine.run()
    assert results == [False, False]


def test_bad_parameters() -> None:
    engine = Engine(1)
    with pytest.raises(ValueError, match="max_readers_wakeup"):
        RwSemaphore(engine, "x", max_readers_wakeup=0)
    with pytest.raises(ValueError, match="handoff_timeout_ns"):
        RwSemaphore(engine, "x", handoff_timeout_ns=-1)


def test_recursive_read_deadlocks_behind_a_queued_writer() -> None:
    """down_read twice with a writer queued in between: lockdep's classic rwsem self-deadlock."""
    engine = Engine(2)
    sem = RwSemaphore(engine, "anon_vma->rwsem", spin=False)

    async def r() -> None:
        await sem.down_read()
        await engine.delay(10 * US)
        await sem.down_read()

    engine.spawn("r", r)
    engine.spawn("w", writer(engine, sem, [], at=1 * US))
    with pytest.raises(Deadlock, match="r waits for anon_vma->rwsem held by r"):
        engine.run()


# -- statistics, costs, lockdep ------------------------------------------------------------------------


def test_stats_and_events_are_consistent() -> None:
    engine = Engine(4, seed=3, ctx_switch_ns=1 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem", handoff_timeout_ns=50 * US)
    waits: list[tuple[str, int]] = []

    def worker(i: int) -> Callable[[], Awaitable[None]]:
        async def body() -> None:
            task = _me(engine)
            for _ in range(60):
                write = task.rng.random() < 0.3
                t0 = engine.now
                if write:
                    await sem.down_write()
                else:
                    await sem.down_read()
                waits.append(("W" if write else "R", engine.now - t0))
                await engine.delay(task.rng.randrange(100, 5000))
                if write:
                    sem.up_write()
                else:
                    sem.up_read()
                await engine.delay(task.rng.randrange(0, 3000))
        return body

    for i in range(8):
        engine.spawn(f"t{i}", worker(i))
    engine.run()
    cls = sem.lclass
    for side, mode in ((cls.read, "R"), (cls.write, "W")):
        mine = [w for m, w in waits if m == mode]
        assert side.acquisitions == len(mine) == side.hold.count
        assert 0 < side.contentions <= side.acquisitions
        assert side.wait.count == side.contentions
        assert side.wait.total_ns == sum(mine)  # free costs: uncontended waits are 0
        assert side.wait.max_ns == max(mine)
    ev = cls.events
    assert ev["rwsem_rlock"] + ev["rwsem_rlock_steal"] + ev["rwsem_rlock_fast"] == cls.read.contentions
    assert ev["rwsem_opt_lock"] + ev["rwsem_wlock"] == cls.write.contentions
    assert ev["rwsem_wake_reader"] == ev["rwsem_rlock"]
    assert ev["rwsem_sleep_writer"] > 0 and ev["rwsem_wake_writer"] > 0
    assert not sem.is_locked() and not sem.waitq and not sem.handoff


def test_atomic_costs_are_charged() -> None:
    engine = Engine(2, lock_costs=LockCosts(atomic_ns=20, bounce_ns=100, handoff_ns=0))
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    log: Log = []
    engine.spawn("r0", reader(engine, sem, log, hold=1 * US))
    engine.spawn("r1", reader(engine, sem, log, at=5 * US, hold=1 * US))
    engine.spawn("w", writer(engine, sem, log, at=1 * US, hold=1 * US), cpu=1)  # runs after r1
    engine.run()
    assert first(log, "r0", "R+") == 20
    assert first(log, "r1", "R+") == 5 * US + 20 + 100  # the line last moved on the other CPU
    assert first(log, "w", "W+") == 6120 + 1 * US + 20  # same CPU as the last acquirer: no bounce
    assert sem.lclass.read.acq_bounces == 1


class _RecordingChecker(Instrument):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_lock_acquire(self, task: SimTask, key: str, read: int, trylock: bool, instance: str) -> None:
        self.calls.append(("acquire", task.name, key, read, trylock))

    def on_lock_release(self, task: SimTask, key: str, instance: str) -> None:
        self.calls.append(("release", key))

    def on_lock_downgrade(self, task: SimTask, key: str, instance: str) -> None:
        self.calls.append(("downgrade", key))


def test_lockdep_sees_read_write_trylock_and_subclass() -> None:
    engine = Engine(1)
    checker = _RecordingChecker()
    engine.add_instrument(checker)
    sem = RwSemaphore(engine, "anon_vma->rwsem")

    async def task() -> None:
        await sem.down_read()
        sem.up_read()
        await sem.down_write(subclass=1)
        sem.downgrade_write()
        sem.up_read()
        assert sem.down_read_trylock()
        sem.up_read()
        assert sem.down_write_trylock()
        sem.up_write()

    engine.spawn("t", task)
    engine.run()
    assert checker.calls == [
        ("acquire", "t", "anon_vma->rwsem", 1, False), ("release", "anon_vma->rwsem"),
        ("acquire", "t", "anon_vma->rwsem/1", 0, False), ("downgrade", "anon_vma->rwsem/1"),
        ("release", "anon_vma->rwsem/1"),
        ("acquire", "t", "anon_vma->rwsem", 1, True), ("release", "anon_vma->rwsem"),
        ("acquire", "t", "anon_vma->rwsem", 0, True), ("release", "anon_vma->rwsem"),
    ]
    assert engine.lock_classes["anon_vma->rwsem/1"].write.acquisitions == 1
    assert engine.lock_classes["anon_vma->rwsem/1"].read.acquisitions == 1


def test_order_checker_sees_downgrade_as_a_read_hold() -> None:
    """mmap_lock write -> anon_vma read, downgrade, then a task taking them in the other order:
    with the writer downgraded to a reader the inversion is still reported (the read holder of
    mmap_lock blocks a writer that holds anon_vma->rwsem), and no unlock imbalance appears."""
    engine = Engine(1)
    checker = OrderChecker()
    engine.add_instrument(checker)
    mmap_lock = RwSemaphore(engine, "mm->mmap_lock")
    anon = RwSemaphore(engine, "anon_vma->rwsem")

    async def a() -> None:
        await mmap_lock.down_write()
        mmap_lock.downgrade_write()
        assert checker.held(_me(engine).tid) == ["mm->mmap_lock"]
        await anon.down_write()
        anon.up_write()
        mmap_lock.up_read()

    async def b() -> None:
        await anon.down_write()
        await mmap_lock.down_write()
        mmap_lock.up_write()
        anon.up_write()

    engine.spawn("a", a)
    engine.spawn("b", b)
    engine.run()
    assert [f.kind for f in checker.findings] == ["circular"]
    assert checker.held(0) == [] and checker.held(1) == []


# -- determinism ------------------------------------------------------------------------------------


def _random_workload(seed: int) -> tuple[Log, dict[str, Any], int]:
    engine = Engine(3, seed=seed, ctx_switch_ns=700)
    sem = RwSemaphore(engine, "anon_vma->rwsem", handoff_timeout_ns=30 * US)
    log: Log = []

    async def body() -> None:
        task = _me(engine)
        for _ in range(40):
            op = task.rng.random()
            if op < 0.25:
                await sem.down_write()
                log.append((engine.now, task.name, "W+"))
                await engine.delay(task.rng.randrange(1, 4000))
                log.append((engine.now, task.name, "W-"))
                sem.up_write()
            elif op < 0.35 and sem.down_read_trylock():
                log.append((engine.now, task.name, "R+"))
                await engine.delay(task.rng.randrange(1, 4000))
                log.append((engine.now, task.name, "R-"))
                sem.up_read()
            else:
                await sem.down_read()
                log.append((engine.now, task.name, "R+"))
                await engine.delay(task.rng.randrange(1, 4000))
                log.append((engine.now, task.name, "R-"))
                sem.up_read()
            await engine.delay(task.rng.randrange(0, 2000))

    for i in range(7):
        engine.spawn(f"t{i}", body)
    out = engine.run()
    return log, sem.lclass.to_dict(), out.events


def test_same_seed_same_run() -> None:
    a = _random_workload(11)
    b = _random_workload(11)
    assert a == b
    assert _max_overlap(a[0]) == (1, 0)
    assert a[0] != _random_workload(12)[0]


# -- stateful: random programs of acquire / release / trylock / downgrade / time ----------------------

_N_WORKERS = 5
_WORKER = st.integers(0, _N_WORKERS - 1)
_HOLDS = st.sampled_from([0, 300, 2 * US, 9 * US, 30 * US])


class RwsemMachine(RuleBasedStateMachine):
    """Builds one program per worker, then runs them together in teardown (an engine runs a
    scenario once, so the rules compose the scenario and the run checks it).

    Rules keep every program deadlock-free: a worker acquires only when it holds nothing, and each
    program (repeated ``repeat`` times) ends by releasing what it holds.  So every task must finish
    (a lost wake-up shows as Deadlock, a livelock as the event budget).  The invariants are checked
    inside the run, after every worker step and every 700 ns by a monitor: no reader beside a
    writer, a writer alone, a free lock never left with only sleeping waiters.  At the end the
    lock statistics and event counters must match what the workers themselves observed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.programs: list[list[tuple[str, int]]] = [[] for _ in range(_N_WORKERS)]
        self.holding: list[str] = [""] * _N_WORKERS  # "", "R", "W" or "?" (a trylock's outcome)
        self.opts: dict[str, Any] = {}
        self.ctx_switch_ns = 0
        self.ncpus = 2
        self.repeat = 1

    @initialize(spin=st.booleans(), reader_steal=st.booleans(), handoff=st.booleans(),
                ctx=st.sampled_from([0, 500, 3 * US]), batch=st.sampled_from([1, 2, 256]),
                ncpus=st.sampled_from([2, 3, 6]), repeat=st.sampled_from([1, 4]),
                timeout=st.sampled_from([5 * US, 40 * US]))
    def configure(self, spin: bool, reader_steal: bool, handoff: bool, ctx: int, batch: int,
                  ncpus: int, repeat: int, timeout: int) -> None:
        self.opts = {"spin": spin, "reader_steal": reader_steal, "handoff": handoff,
                     "handoff_timeout_ns": timeout, "max_readers_wakeup": batch}
        self.ctx_switch_ns = ctx
        self.ncpus = ncpus
        self.repeat = repeat

    @rule(w=_WORKER, write=st.booleans(), hold=_HOLDS)
    def acquire(self, w: int, write: bool, hold: int) -> None:
        if self.holding[w]:
            return
        self.programs[w] += [("down_write" if write else "down_read", 0), ("delay", hold)]
        self.holding[w] = "W" if write else "R"

    @rule(writes=st.lists(st.booleans(), min_size=_N_WORKERS, max_size=_N_WORKERS), hold=_HOLDS)
    def everyone(self, writes: list[bool], hold: int) -> None:
        """Every idle worker asks at once: the contended cases come quickly."""
        for w, write in enumerate(writes):
            self.acquire(w, write, hold)

    @rule(w=_WORKER, write=st.booleans(), hold=_HOLDS)
    def trylock(self, w: int, write: bool, hold: int) -> None:
        if self.holding[w]:
            return
        self.programs[w] += [("trywrite" if write else "tryread", 0), ("delay", hold)]
        self.holding[w] = "?"

    @rule(w=_WORKER)
    def release(self, w: int) -> None:
        if self.holding[w]:
            self.programs[w].append(("release", 0))
            self.holding[w] = ""

    @precondition(lambda self: "W" in self.holding)
    @rule(data=st.data(), hold=_HOLDS)
    def downgrade(self, data: st.DataObject, hold: int) -> None:
        w = data.draw(st.sampled_from([i for i, h in enumerate(self.holding) if h == "W"]))
        self.programs[w] += [("downgrade", 0), ("delay", hold)]
        self.holding[w] = "R"

    @rule(w=_WORKER, ns=_HOLDS)
    def advance(self, w: int, ns: int) -> None:
        self.programs[w].append(("delay", ns))

    def teardown(self) -> None:
        if not self.opts:
            return
        # One CPU more for the monitor, so that it never keeps a worker off its CPU.
        engine = Engine(self.ncpus + 1, seed=1, ctx_switch_ns=self.ctx_switch_ns)
        sem = RwSemaphore(engine, "anon_vma->rwsem", **self.opts)
        acquired = {"R": 0, "W": 0}
        waits = {"R": 0, "W": 0}
        violations: list[str] = []

        def check(who: str) -> None:
            if sem.owner is not None and sem.readers:
                violations.append(f"{who}: reader beside writer at {engine.now}")
            holders = sem.holders()
            if sem.owner is not None and holders != [sem.owner]:
                violations.append(f"{who}: writer not alone at {engine.now}")
            if not sem.is_locked() and sem.waitq and all(w.blocked for w in sem.waitq):
                # A free lock with waiters is legal only while a woken one is on its way.
                violations.append(f"{who}: free lock, every waiter asleep at {engine.now}")

        def program(steps: list[tuple[str, int]]) -> Callable[[], Awaitable[None]]:
            async def body() -> None:
                me = _me(engine)
                held = ""
                for op, ns in [*steps, ("release", 0)] * self.repeat:
                    if op in ("down_read", "down_write"):
                        t0 = engine.now
                        if op == "down_read":
                            await sem.down_read()
                            held = "R"
                            if sem.owner is not None or me not in sem.holders():
                                violations.append(f"{me.name} read without holding")
                        else:
                            await sem.down_write()
                            held = "W"
                            if sem.owner is not me or sem.readers:
                                violations.append(f"{me.name} write without exclusion")
                        acquired[held] += 1
                        waits[held] += engine.now - t0
                    elif op in ("tryread", "trywrite"):
                        if op == "tryread" and sem.down_read_trylock():
                            held = "R"
                            acquired["R"] += 1
                        elif op == "trywrite" and sem.down_write_trylock():
                            held = "W"
                            acquired["W"] += 1
                    elif op == "release":
                        if held == "R":
                            sem.up_read()
                        elif held == "W":
                            sem.up_write()
                        held = ""
                    elif op == "downgrade":
                        if held == "W":
                            sem.downgrade_write()
                            held = "R"
                            acquired["R"] += 1
                    else:
                        await engine.delay(ns)
                    check(me.name)
            return body

        async def monitor() -> None:
            # Look between the workers' own steps while any of them can still make progress; then
            # stop, so that workers left blocked for good end the run with Deadlock.
            me = _me(engine)
            while any(t.state in (TaskState.RUNNING, TaskState.RUNNABLE, TaskState.SPINNING)
                      for t in engine.tasks if t is not me):
                await engine.delay(700)
                check("monitor")

        for i, steps in enumerate(self.programs):
            engine.spawn(f"w{i}", program(steps), cpu=i % self.ncpus)
        engine.spawn("monitor", monitor, cpu=self.ncpus)
        outcome = engine.run(max_events=20_000)  # Deadlock here would be a lost wake-up
        assert outcome.reason == "completed", (
            f"livelock: {outcome}; {[(t.name, t.state.value) for t in engine.tasks]}; "
            f"owner={sem.owner} readers={sem.readers} handoff={sem.handoff} "
            f"waitq={[(w.task.name, w.write, w.blocked) for w in sem.waitq]}")
        assert violations == []
        assert all(t.done for t in engine.tasks)
        assert not sem.is_locked() and not sem.waitq and not sem.handoff
        cls = sem.lclass
        for side, mode in ((cls.read, "R"), (cls.write, "W")):
            assert side.acquisitions == acquired[mode] == side.hold.count
            assert side.contentions <= side.acquisitions
            assert side.wait.count == side.contentions
            assert side.wait.total_ns == waits[mode]
        ev = cls.events
        assert ev["rwsem_rlock"] + ev["rwsem_rlock_steal"] + ev["rwsem_rlock_fast"] == cls.read.contentions
        assert ev["rwsem_opt_lock"] + ev["rwsem_wlock"] == cls.write.contentions
        assert ev["rwsem_wake_reader"] == ev["rwsem_rlock"]


RwsemMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_rwsem_state_machine = RwsemMachine.TestCase
