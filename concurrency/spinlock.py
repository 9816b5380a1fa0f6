"""The queued spinlock, after kernel/locking/qspinlock.c.

The lock word holds a locked byte, a pending bit and an MCS tail.  The fast path is a cmpxchg
0 -> locked.  The first contender sets *pending* and spins on the word (event ``lock_pending``);
later contenders queue on the MCS tail (``lock_slowpath``), each spinning on its own node.  Any
pending bit or tail makes the fast path fail, so newcomers never barge: the lock is FIFO (pending
waiter first, then MCS order).  A waiter spins: its CPU burns the whole wait.  Holders must not
sleep (the engine raises "scheduling while atomic").
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from concurrency.lock import WRITE, LockCosts, LockMisuse, SimLock

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["QSpinlock"]


class QSpinlock(SimLock):
    kind = "spinlock"
    sleeping = False

    def __init__(self, engine: Engine, name: str, *, instance: str | None = None,
                 costs: LockCosts | None = None) -> None:
        super().__init__(engine, name, instance=instance, costs=costs)
        self.owner: SimTask | None = None
        self.owner_since = 0
        self.owner_subclass = 0
        self.queue: deque[tuple[SimTask, int, int]] = deque()  # (task, wait start, subclass)

    def holders(self) -> list[SimTask]:
        return [self.owner] if self.owner is not None else []

    def is_locked(self) -> bool:
        return self.owner is not None

    def _take(self, task: SimTask, subclass: int, wait_start: int | None) -> None:
        self.owner = task
        self.owner_since = self.engine.now
        self.owner_subclass = subclass
        self._acquired(task, self.class_for(subclass).write, wait_start)

    def trylock(self, subclass: int = 0) -> bool:
        """``spin_trylock``: cmpxchg 0 -> locked; fails on any owner, pending bit or tail."""
        task = self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} re-acquires a spinlock it holds")
        if self.owner is not None or self.queue:
            return False
        self._lockdep_acquire(task, subclass, WRITE, True)
        self._take(task, subclass, None)
        return True

    async def lock(self, subclass: int = 0) -> None:
        """``spin_lock`` (``spin_lock_nested`` with a subclass)."""
        task = self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} re-acquires a spinlock it holds (AA deadlock)")
        self._lockdep_acquire(task, subclass, WRITE, False)
        # spin_lock() starts with preempt_disable(): nothing of the acquisition is preemptible,
        # not the atomic, not the spinning, not the pick-up of a lock handed over (a waiter
        # preempted after the hand-over would own the lock off its CPU while the others spin).
        task.atomic_depth += 1
        cost = self._atomic_cost(task)
        if cost:
            await self.engine.delay(cost)
        if self.owner is None and not self.queue:
            task.atomic_depth -= 1  # _take counts the held lock
            self._take(task, subclass, None)
            return
        side = self.class_for(subclass).write
        self._contended(task, side)
        events = self.lclass.events
        events["lock_pending" if not self.queue else "lock_slowpath"] += 1
        start = self.engine.now
        self.queue.append((task, start, subclass))
        await self.engine.block(self, spin=True)
        await self._pick_up()
        task.atomic_depth -= 1
        self._take(task, subclass, start)

    def unlock(self) -> None:
        """``spin_unlock``: the queue head (pending waiter or MCS head) claims the lock next."""
        task = self._current()
        if self.owner is not task:
            holder = self.owner.name if self.owner is not None else "nobody"
            raise LockMisuse(f"{self.name}: {task.name} unlocks a spinlock held by {holder}")
        sub = self.owner_subclass
        self._released(task, self.class_for(sub).write, self.owner_since)
        self._lockdep_release(task, sub)
        self.owner = None
        if self.queue:
            nxt, _start, _sub = self.queue.popleft()
            self.owner = nxt  # reserved: nobody can barge past the pending/MCS head
            self.engine.wake(nxt)
