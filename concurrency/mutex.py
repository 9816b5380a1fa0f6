"""The sleeping mutex, after kernel/locking/mutex.c.

* Fast path (``__mutex_trylock_fast``): cmpxchg of the owner word 0 -> current.
* A free mutex with sleeping waiters can still be taken by a newcomer (``__mutex_trylock``):
  mutexes are not FIFO, unless the HANDOFF flag is set.
* Optimistic spinning (``mutex_optimistic_spin``): while the owner is running on a CPU and nobody
  else needs this CPU, contenders spin, serialised on the OSQ (FIFO), instead of sleeping; when the
  owner sleeps the spinners give up and queue.
* Unlock (``__mutex_unlock_slowpath``) wakes the first waiter, which must compete on waking; a woken
  first waiter that loses sets MUTEX_FLAG_HANDOFF so the next unlock hands it the lock directly.

``direct_handoff=True`` replaces the last rule with strict FIFO hand-off at every unlock (trio's
``Lock``, SimPy's ``Resource``): the engine benchmark's model.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from concurrency.lock import WRITE, LockCosts, LockMisuse, SimLock

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["Mutex"]

_GRANTED = "granted"
_RETRY = "retry"  # woken to compete for a free lock
_STOP_SPIN = "stop_spin"  # the owner went to sleep: stop spinning, go to sleep


class Mutex(SimLock):
    kind = "mutex"

    def __init__(self, engine: Engine, name: str, *, instance: str | None = None,
                 spin: bool = True, direct_handoff: bool = False,
                 costs: LockCosts | None = None) -> None:
        super().__init__(engine, name, instance=instance, costs=costs)
        self.spin = spin
        self.direct_handoff = direct_handoff
        self.owner: SimTask | None = None
        self.owner_since = 0
        self.owner_subclass = 0
        self.handoff = False  # MUTEX_FLAG_HANDOFF
        self.waiters: deque[tuple[SimTask, int]] = deque()  # sleeping, FIFO: (task, wait start)
        self.spinners: deque[tuple[SimTask, int]] = deque()  # on the OSQ, FIFO
        self._watching: SimTask | None = None

    def holders(self) -> list[SimTask]:
        return [self.owner] if self.owner is not None else []

    def is_locked(self) -> bool:
        return self.owner is not None

    def _take(self, task: SimTask, subclass: int, wait_start: int | None) -> None:
        self.owner = task
        self.owner_since = self.engine.now
        self.owner_subclass = subclass
        self._acquired(task, (self.class_for(subclass) if subclass else self.lclass).write, wait_start)

    def trylock(self, subclass: int = 0) -> bool:
        """``mutex_trylock``: take a free mutex unless a hand-off is pending; never waits."""
        task = self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} re-acquires a mutex it holds")
        if self.owner is not None or self.handoff or (self.direct_handoff and self.waiters):
            return False
        self._lockdep_acquire(task, subclass, WRITE, True)
        self._take(task, subclass, None)
        return True

    async def lock(self, subclass: int = 0) -> None:
        """``mutex_lock``."""
        task = self.engine.current or self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} re-acquires a mutex it holds (AA deadlock)")
        engine = self.engine
        if engine.lockdep is not None:
            self._lockdep_acquire(task, subclass, WRITE, False)
        if self.costs.atomic_ns or self.costs.bounce_ns:
            await engine.delay(self._atomic_cost(task))
        free = self.owner is None and not self.handoff
        if free and not (self.direct_handoff and (self.waiters or self.spinners)):
            self._take(task, subclass, None)
            return
        side = (self.class_for(subclass) if subclass else self.lclass).write
        self._contended(task, side)
        start = engine.now
        if self.spin and self._may_spin(task):
            self.lclass.events["mutex_opt_spin"] += 1
            self.spinners.append((task, start))
            self._watch_owner()
            if await engine.block(self, spin=True) == _GRANTED:
                self._take(task, subclass, start)
                return
        self.waiters.append((task, start))
        while True:
            verdict = await engine.block(self)
            if verdict == _GRANTED:
                self._take(task, subclass, start)
                return
            # Woken to compete (not handed the lock): take it if still free, else re-queue
            # at the head and ask for a hand-off next time.
            if self.owner is None and not self.handoff:
                self._take(task, subclass, start)
                return
            self.waiters.appendleft((task, start))
            self.handoff = True
            self.lclass.events["mutex_handoff_set"] += 1

    def _may_spin(self, task: SimTask) -> bool:
        if not self.spin or self.direct_handoff or self.owner is None:
            return False
        from concurrency.engine import TaskState

        return self.owner.state in (TaskState.RUNNING, TaskState.SPINNING) and not task.cpu.runq

    def _watch_owner(self) -> None:
        if self._watching is not self.owner and self.owner is not None:
            if self._watching is not None:
                self.engine.unwatch_sleep(self._watching, self._owner_sleeps)
            self._watching = self.owner
            self.engine.watch_sleep(self.owner, self._owner_sleeps)

    def _owner_sleeps(self, owner: SimTask) -> None:
        """``mutex_spin_on_owner`` sees ``owner->on_cpu == 0``: every spinner goes to sleep."""
        self._watching = None
        while self.spinners:
            spinner, _start = self.spinners.popleft()
            self.lclass.events["mutex_opt_fail"] += 1
            self.engine.wake(spinner, _STOP_SPIN)

    def unlock(self, subclass: int | None = None) -> None:
        """``mutex_unlock``: spinners win the free lock; else wake (or hand to) the first waiter."""
        task = self.engine.current or self._current()
        if self.owner is not task:
            holder = self.owner.name if self.owner is not None else "nobody"
            raise LockMisuse(f"{self.name}: {task.name} unlocks a mutex held by {holder}")
        sub = self.owner_subclass
        self._released(task, (self.class_for(sub) if sub else self.lclass).write, self.owner_since)
        if self.engine.lockdep is not None:
            self._lockdep_release(task, sub)
        self.owner = None
        if self._watching is not None:
            self.engine.unwatch_sleep(self._watching, self._owner_sleeps)
            self._watching = None
        engine = self.engine
        if self.spinners and not self.handoff:
            spinner, _ = self.spinners.popleft()
            self.owner = spinner  # reserved: the spinner's lock() completes the bookkeeping
            self.lclass.events["mutex_opt_lock"] += 1
            engine.wake(spinner, _GRANTED)
            if self.spinners:
                self._watching = spinner
                engine.watch_sleep(spinner, self._owner_sleeps)
            return
        if self.waiters:
            waiter, _ = self.waiters.popleft()
            if self.direct_handoff or self.handoff:
                self.handoff = False
                self.owner = waiter
                engine.wake(waiter, _GRANTED)
                if self.spinners:  # mutex_spin_on_owner: the new owner is not on a CPU
                    self._owner_sleeps(waiter)
            else:
                engine.wake(waiter, _RETRY)
