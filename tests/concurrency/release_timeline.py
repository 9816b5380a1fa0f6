"""The two-task timeline the wake-up tests share (test_wakeup_charge.py, test_wait_lock.py): A (CPU 0)
takes the lock and holds it 1000 ns; B (CPU 1) contends at 100 ns and sleeps; A releases at 1000,
waking B, and works 200 ns more; B takes the lock and releases it."""

from __future__ import annotations

from concurrency.engine import Engine
from concurrency.lock import LockCosts
from concurrency.mutex import Mutex
from concurrency.rwsem import RwSemaphore


def release_timeline(kind: str, costs: LockCosts, ctx_switch_ns: int, *, wait_lock: bool = False,
                     wake_q: bool = True) -> tuple[dict[str, int], dict[str, int]]:
    """Run it on a ``"mutex"`` or an ``"rwsem"`` (both without spinning or hand-off; ``wait_lock``
    and ``wake_q`` as the locks take them).  Returns when A's step after the release ended (``waker_step_end``), when B
    held the lock (``woken_holds``) and A's run time (``run_ns_A``), and the lock's events."""
    engine = Engine(2, ctx_switch_ns=ctx_switch_ns, lock_costs=costs)
    lock: Mutex | RwSemaphore
    if kind == "mutex":
        lock = Mutex(engine, "m", spin=False, handoff=False, wait_lock=wait_lock, wake_q=wake_q)
    else:
        lock = RwSemaphore(engine, "s", spin=False, reader_steal=False, handoff=False, wait_lock=wait_lock,
                           wake_q=wake_q)
    seen: dict[str, int] = {}

    async def take() -> None:
        if isinstance(lock, Mutex):
            await lock.lock()
        else:
            await lock.down_write()

    def release() -> None:
        if isinstance(lock, Mutex):
            lock.unlock()
        else:
            lock.up_write()

    async def holder() -> None:
        await take()
        await engine.delay(1000)
        release()
        await engine.delay(200)
        seen["waker_step_end"] = engine.now

    async def waiter() -> None:
        await engine.delay(100)
        await take()
        seen["woken_holds"] = engine.now
        release()

    engine.spawn("A", holder, cpu=0)
    engine.spawn("B", waiter, cpu=1)
    engine.run()
    seen["run_ns_A"] = engine.tasks[0].run_ns
    return seen, dict(lock.lclass.events)
