"""H8's mechanism as a timeline: a low-priority rmap-lock reader preempted inside its walk, a writer
queued behind it, and kswapd's read waiting behind the writer (the 2022 stall), or giving up at
once with ``down_read_trylock`` (6d4675e60135).

kernel/locking/rwsem.c has no priority inheritance: a waiter does not lend its priority to a
reader (or writer) that owns the lock, so the owner keeps its nice-19 weight while kswapd sleeps.
A queued writer makes later readers queue too (``rwsem_read_trylock`` fails on
RWSEM_FLAG_WAITERS; the slowpath does not steal a reader-owned lock), and ``__down_read_trylock``
fails on it as well.  kernel/sched/fair.c (v6.5): the nice-19 reader beside a busy nice-0 task
is preempted at the first scheduler tick (``check_preempt_tick``) and is picked again only once
the nice-0 task's ``vruntime`` passed its own, ~68x the time it ran.
"""

from __future__ import annotations

from concurrency.engine import Engine
from concurrency.rwsem import RwSemaphore
from concurrency.sched import enable, nice_of, set_user_nice

US = 1_000
MS = 1_000_000


def _timeline(holder_nice: int, *, trylock: bool) -> dict[str, int]:
    """CPU 0: the reader (an rmap walk of 6 ms in 10 us steps: ``cond_resched`` between VMAs,
    so it may be preempted holding the lock) and a busy nice-0 task.  CPU 1: a nice-0 writer
    (fork's ``anon_vma_clone``) arriving after the 4 ms tick, and kswapd arriving after it."""
    engine = Engine(2, ctx_switch_ns=2 * US)
    sem = RwSemaphore(engine, "anon_vma->rwsem")
    out: dict[str, int] = {}
    stop = [False]

    async def hog() -> None:
        while not stop[0]:
            await engine.delay(10 * US)

    async def walker() -> None:
        await engine.delay(1 * US)
        await sem.down_read()
        out["reader_from"] = engine.now
        for _ in range(600):
            await engine.delay(10 * US)
        out["reader_nice_at_unlock"] = nice_of(walker_task)
        sem.up_read()
        out["reader_until"] = engine.now

    async def writer() -> None:
        await engine.sleep(4_500 * US)
        await sem.down_write()
        out["writer_got"] = engine.now
        await engine.delay(1 * US)
        sem.up_write()

    async def kswapd() -> None:
        await engine.sleep(5 * MS)
        start = engine.now
        if trylock:
            out["trylock_ok"] = int(sem.down_read_trylock())
            if out["trylock_ok"]:
                sem.up_read()
        else:
            await sem.down_read()
            sem.up_read()
        out["kswapd_wait"] = engine.now - start
        out["kswapd_done"] = engine.now
        stop[0] = True

    enable(engine)
    walker_task = engine.spawn("walker", walker, cpu=0)
    set_user_nice(engine, walker_task, holder_nice)
    engine.spawn("hog", hog, cpu=0)
    engine.spawn("writer", writer, cpu=1)
    engine.spawn("kswapd0", kswapd, cpu=1)
    engine.run()
    return out


def test_kswapd_waits_behind_a_writer_queued_on_a_preempted_low_priority_reader() -> None:
    """Nice 19: the reader is preempted at the 4 ms tick holding the lock and runs again ~273 ms
    later (4 ms * 1024 / 15); the writer queued at 4.5 ms and kswapd's read at 5 ms behind it wait
    that long.  Nice 0: the reader keeps its CPU to the end of its slice, a few ms."""
    low = _timeline(19, trylock=False)
    fair = _timeline(0, trylock=False)
    # the holder kept its own priority while kswapd waited: no priority inheritance
    assert low["reader_nice_at_unlock"] == 19
    # the reader let go only after kswapd arrived, and kswapd got the lock only after the writer
    assert low["reader_until"] > 5 * MS
    assert low["reader_until"] <= low["writer_got"] <= low["kswapd_done"]
    assert 250 * MS < low["kswapd_wait"] < 300 * MS
    assert fair["kswapd_wait"] < 5 * MS
    assert low["kswapd_wait"] > 10 * fair["kswapd_wait"]


def test_the_trylock_skips_the_contended_lock_at_once() -> None:
    """With ``rwc->try_lock`` (folio_referenced since 2022) kswapd's ``down_read_trylock`` fails on
    the queued writer (RWSEM_FLAG_WAITERS), so it keeps the folio and waits for nothing."""
    tried = _timeline(19, trylock=True)
    assert tried["trylock_ok"] == 0
    assert tried["kswapd_wait"] == 0
