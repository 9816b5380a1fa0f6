"""The ``wait_lock`` of an rwsem and a mutex (concurrency/wait_lock.py): the queueing, the woken
waiter's retry and the waking release each run a FIFO section of it; 3.10 wakes inside the
release's section (``__rwsem_do_wake`` / ``__mutex_unlock_common_slowpath`` call
``wake_up_process`` with it held), wake_q after it."""

from __future__ import annotations

import pytest

from concurrency.engine import Engine
from concurrency.lock import LockCosts
from concurrency.rwsem import RwSemaphore
from mm.system import mutex_options, rwsem_options
from tests.concurrency.release_timeline import release_timeline

CTX = 500
BOUNCE = 100
WAKEUP = 700


def _run(kind: str, *, wait_lock: bool, wake_q: bool) -> tuple[dict[str, int], dict[str, int]]:
    """The shared timeline (release_timeline.py): A releases at 1000, waking B, and works 200 ns
    more.  Returns when A's step ended and B got the lock, and the lock's ``wait_lock`` events."""
    seen, events = release_timeline(kind, LockCosts(atomic_ns=0, bounce_ns=BOUNCE, handoff_ns=0, wakeup_ns=WAKEUP),
                                    CTX, wait_lock=wait_lock, wake_q=wake_q)
    return seen, {k: v for k, v in events.items() if k.startswith("wait_lock")}


@pytest.mark.parametrize("kind", ["rwsem", "mutex"])
def test_3_10_wakes_under_the_wait_lock_and_the_woken_waiter_s_retry_waits_for_it(kind: str) -> None:
    seen, events = _run(kind, wait_lock=True, wake_q=False)
    # B queues at 200 (after the fast path's bounce): a section of 100 (the count word's line).
    # A's release at 1000: the section takes the line from CPU 1 (100) and wakes B inside it (700):
    # wait_lock is held until 1800, A owes 800, its next step ends at 1000 + 800 + 200.
    assert seen["waker_step_end"] == 2000
    # B runs at 1000 + CTX = 1500, spins for wait_lock until 1800, then its section (take 100,
    # count 100): it holds the lock at 2000.
    assert seen["woken_holds"] == 2000
    assert events == {"wait_lock_sections": 3, "wait_lock_spin_ns": 300}


@pytest.mark.parametrize("kind", ["rwsem", "mutex"])
def test_wake_q_wakes_after_the_wait_lock_so_the_woken_waiter_does_not_wait_for_it(kind: str) -> None:
    seen, events = _run(kind, wait_lock=True, wake_q=True)
    # A's section ends at 1100; the wake-up (700) is still A's CPU time, after it.
    assert seen["waker_step_end"] == 2000
    # B's retry at 1500 finds wait_lock free: 200 ns, the lock at 1700.
    assert seen["woken_holds"] == 1700
    assert events == {"wait_lock_sections": 3}


@pytest.mark.parametrize("kind", ["rwsem", "mutex"])
def test_without_the_wait_lock_only_the_wake_up_is_charged(kind: str) -> None:
    seen, events = _run(kind, wait_lock=False, wake_q=True)
    assert seen["waker_step_end"] == 1000 + WAKEUP + 200
    assert seen["woken_holds"] == 1000 + CTX
    assert events == {}


def test_the_scenario_options_reach_the_locks() -> None:
    assert rwsem_options({"wait_lock": True, "wake_q": False}) == {"wait_lock": True, "wake_q": False}
    assert mutex_options({"wait_lock": True, "wake_q": False}) == {"wait_lock": True, "wake_q": False}
    with pytest.raises(TypeError):
        rwsem_options({"wait_lock": 1})


def test_3_10_wakes_a_batch_of_readers_inside_one_section_and_the_waker_pays_each_wake_up() -> None:
    """``__rwsem_do_wake`` grants the queued readers in one pass under wait_lock, calling
    ``wake_up_process`` for each: the section lasts the take plus one ``wakeup_ns`` per reader."""
    engine = Engine(3, ctx_switch_ns=CTX,
                    lock_costs=LockCosts(atomic_ns=0, bounce_ns=BOUNCE, handoff_ns=0, wakeup_ns=WAKEUP))
    sem = RwSemaphore(engine, "s", spin=False, reader_steal=False, handoff=False, wait_lock=True, wake_q=False)
    seen: dict[str, int] = {}

    async def writer() -> None:
        await sem.down_write()
        await engine.delay(1000)
        sem.up_write()  # grants both readers
        await engine.delay(200)
        seen["waker_step_end"] = engine.now

    async def reader(name: str, start: int) -> None:
        await engine.delay(start)
        await sem.down_read()
        seen[name] = engine.now
        sem.up_read()

    engine.spawn("W", writer, cpu=0)
    engine.spawn("R1", reader, "R1", 100, cpu=1)
    engine.spawn("R2", reader, "R2", 150, cpu=2)
    engine.run()
    # R1 queues 200..300; R2 arrives at 250 and waits for wait_lock until 300, then 200 ns (the line
    # from CPU 1, the count word): queued at 500.  W's rwsem_wake at 1000: take (100) + 2 wake-ups
    # (1400) under wait_lock, all W's CPU time: its next step ends at 1000 + 1500 + 200.
    assert seen["waker_step_end"] == 2700
    assert seen["R1"] == seen["R2"] == 1000 + CTX  # granted by the wake-up: no retry
    wait_lock = sem._wait_lock
    assert wait_lock is not None and wait_lock.free_at == 1000 + BOUNCE + 2 * WAKEUP  # held across both wakes
    events = sem.lclass.events
    assert (events["wait_lock_sections"], events["wait_lock_spin_ns"]) == (3, 50)
