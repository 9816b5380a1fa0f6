"""The sleeping mutex, after kernel/locking/mutex.c.

* Fast path (``__mutex_trylock_fast``): cmpxchg of the owner word 0 -> current.
* A free mutex with sleeping waiters can still be taken by a newcomer (``__mutex_trylock``):
  mutexes are not FIFO, unless the HANDOFF flag is set.
* Optimistic spinning (``mutex_optimistic_spin``): while the owner is running on a CPU and nobody
  else needs this CPU, contenders spin, serialised on the OSQ (FIFO), instead of sleeping; when the
  owner sleeps, or a task is woken on a spinner's CPU (``need_resched()``), the spinner gives up
  and queues.  The OSQ head takes the lock the moment it is freed, paying ``handoff_ns`` for the
  owner word's cache line to move to its CPU.
* Unlock (``__mutex_unlock_slowpath``) frees the lock and wakes the first waiter whenever there are
  waiters (MUTEX_FLAG_WAITERS), even when a spinner is about to take the lock; the woken waiter
  stays at the head of the wait list and must compete when it runs (``__mutex_trylock``).  While
  it is woken and not yet running, further unlocks wake nobody else (``wake_up_process`` of a
  runnable task is a no-op).
* HANDOFF (``handoff=True``, v4.10+: 9d659ae14b54 "locking/mutex: Add lock handoff to avoid
  starvation" and "locking/mutex: Enable optimistic spinning of woken waiter"): a woken first
  waiter that loses sets MUTEX_FLAG_HANDOFF (``__mutex_trylock_or_handoff``) and spins on the owner
  as a waiter (``mutex_optimistic_spin`` with ``waiter``, no OSQ) while the owner runs; the next
  unlock hands it the lock (``__mutex_handoff``), so it gets it without a wake-up if it is still
  spinning.
  With ``handoff=False`` (the 2.6.30-4.9 mutex of the 2011-2013 results) a waiter that loses
  simply sleeps again, still first, and is woken by the next unlock.

``wait_lock=True`` adds the ``wait_lock`` (concurrency/wait_lock.py): a task that queues (the
sleeping path of ``__mutex_lock_common``: ``spin_lock_mutex(&lock->wait_lock)``, ``list_add_tail``,
the ``atomic_xchg``), a woken waiter (it re-takes it after every ``schedule()`` to try again) and an
unlock with waiters (``__mutex_unlock_common_slowpath`` in 3.10, ``__mutex_unlock_slowpath`` today)
each run a section of it; ``wake_q=False`` wakes under it (3.10's ``wake_up_process`` with it held),
True after it (``wake_up_q``, today).  Off, the ``wait_lock`` costs nothing.

``direct_handoff=True`` replaces the wake-and-compete rules with strict FIFO hand-off at every
unlock (trio's ``Lock``, SimPy's ``Resource``): the engine benchmark's model.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Final

from concurrency.engine import TaskState
from concurrency.lock import WRITE, LockCosts, LockMisuse, SimLock
from concurrency.wait_lock import WaitLock

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["Mutex"]

_GRANTED: Final = "granted"
_RETRY: Final = "retry"  # woken to compete for a free lock
_STOP_SPIN: Final = "stop_spin"  # the owner went to sleep: stop spinning, go to sleep


class Mutex(SimLock):
    kind = "mutex"

    def __init__(self, engine: Engine, name: str, *, instance: str | None = None,
                 spin: bool = True, handoff: bool = True, direct_handoff: bool = False,
                 costs: LockCosts | None = None, wait_lock: bool = False, wake_q: bool = True) -> None:
        super().__init__(engine, name, instance=instance, costs=costs)
        self._wait_lock = WaitLock(self.costs, self.lclass.events, wake_q=wake_q) if wait_lock else None
        self.spin = spin
        self.handoff_enabled = handoff
        self.direct_handoff = direct_handoff
        self.owner: SimTask | None = None
        self.owner_since = 0
        self.owner_subclass = 0
        self.handoff = False  # MUTEX_FLAG_HANDOFF
        self.waiters: deque[tuple[SimTask, int]] = deque()  # the wait list, FIFO: (task, wait start)
        self.waiter_spinning: SimTask | None = None  # the first waiter spinning on the owner (HANDOFF)
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
        """``mutex_lock``: ``__mutex_lock_common``."""
        task = self.engine.current or self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} re-acquires a mutex it holds (AA deadlock)")
        engine = self.engine
        if engine.hooks.on_lock_acquire is not None:
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
            if await self._spin(task):
                self._take(task, subclass, start)
                return
        wait_lock = self._wait_lock
        if wait_lock is not None:  # spin_lock_mutex(&lock->wait_lock) to queue
            await engine.delay(wait_lock.waiter_section(engine, task))
        self.waiters.append((task, start))
        while True:
            # __mutex_trylock, also before every sleep: the kernel retries under wait_lock after
            # set_current_state, so a release between the last look and the sleep is never missed.
            if self.owner is None and not self.handoff and not self.direct_handoff:
                self.waiters.remove((task, start))
                self._take(task, subclass, start)
                return
            verdict = await engine.block(self)
            if wait_lock is not None:  # woken: spin_lock_mutex(&lock->wait_lock) again to retry
                await engine.delay(wait_lock.waiter_section(engine, task))
            if verdict == _GRANTED:  # handed over (HANDOFF, or the FIFO benchmark mutex)
                self._take(task, subclass, start)
                return
            if self.owner is None and not self.handoff:
                continue  # free: the trylock at the top takes it
            if not self.handoff_enabled or self.waiters[0][0] is not task:
                continue  # lost to a spinner or newcomer: sleep again, keeping its place
            # __mutex_trylock_or_handoff (first waiter): ask for the lock to be handed over, then
            # spin on the owner while it runs; back to sleep when it does not.
            if not self.handoff:
                self.handoff = True
                self.lclass.events["mutex_handoff_set"] += 1
            if self.spin and self._may_spin(task):
                self.waiter_spinning = task
                if await self._spin(task):
                    self._take(task, subclass, start)
                    return

    async def _spin(self, task: SimTask) -> bool:
        """Spin on the running owner (``mutex_spin_on_owner``) until handed the released lock
        (True, after the pick-up) or told to stop: the owner slept, or this CPU is wanted."""
        self._watch_owner()
        task.resched = self._need_resched
        verdict = await self.engine.block(self, spin=True)
        task.resched = None
        if verdict != _GRANTED:
            return False
        await self._pick_up()
        return True

    def _may_spin(self, task: SimTask) -> bool:
        """``mutex_can_spin_on_owner``: the owner is on a CPU and this CPU has nothing else to run."""
        if not self.spin or self.direct_handoff or self.owner is None:
            return False
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
        if self.waiter_spinning is not None:
            spinner, self.waiter_spinning = self.waiter_spinning, None
            self.lclass.events["mutex_opt_fail"] += 1
            self.engine.wake(spinner, _STOP_SPIN)

    def _need_resched(self, task: SimTask) -> None:
        """A task became runnable on a spinner's CPU: ``mutex_spin_on_owner`` and ``osq_lock``
        poll ``need_resched()`` and give up, the spinner queues and sleeps."""
        if self.waiter_spinning is task:
            self.waiter_spinning = None
        else:
            for i, (spinner, _start) in enumerate(self.spinners):
                if spinner is task:
                    del self.spinners[i]
                    break
            else:
                return
        self.lclass.events["mutex_opt_fail"] += 1
        self.engine.wake(task, _STOP_SPIN)

    def unlock(self, subclass: int | None = None) -> None:
        """``mutex_unlock`` / ``__mutex_unlock_slowpath``."""
        task = self.engine.current or self._current()
        if self.owner is not task:
            holder = self.owner.name if self.owner is not None else "nobody"
            raise LockMisuse(f"{self.name}: {task.name} unlocks a mutex held by {holder}")
        sub = self.owner_subclass
        self._released(task, (self.class_for(sub) if sub else self.lclass).write, self.owner_since)
        if self.engine.hooks.on_lock_release is not None:
            self._lockdep_release(task, sub)
        self.owner = None
        if self._watching is not None:
            self.engine.unwatch_sleep(self._watching, self._owner_sleeps)
            self._watching = None
        if self.direct_handoff:
            self._fifo_handoff()
            return
        if self._wait_lock is not None and self.waiters:  # the unlock slowpath takes wait_lock
            self._wait_lock.release(self.engine, self._unlock_wake)
        else:
            self._unlock_wake()

    def _unlock_wake(self) -> None:
        """What the unlock hands over and wakes once the owner word is clear."""
        engine = self.engine
        if self.handoff:
            # __mutex_handoff: the first waiter owns the lock before it runs.
            waiter, _ = self.waiters.popleft()
            self.handoff = False
            self.owner = waiter
            if waiter is self.waiter_spinning:
                self.waiter_spinning = None
                engine.wake(waiter, _GRANTED)
                if self.spinners:  # the OSQ goes on spinning, now on the new owner
                    self._watch_owner()
            else:
                if self.costs.wakeup_ns and waiter.state is TaskState.SLEEPING:  # the unlocker's try_to_wake_up
                    engine.charge(self.costs.wakeup_ns)
                engine.wake(waiter, _GRANTED)
                if self.spinners:  # mutex_spin_on_owner: the new owner is not on a CPU
                    self._owner_sleeps(waiter)
            return
        if self.spinners:
            # The OSQ head is polling the owner word: it wins the released lock.
            spinner, _ = self.spinners.popleft()
            self.owner = spinner  # reserved: the spinner's lock() completes the bookkeeping
            self.lclass.events["mutex_opt_lock"] += 1
            engine.wake(spinner, _GRANTED)
            if self.spinners:
                self._watch_owner()
        if self.waiters:
            # MUTEX_FLAG_WAITERS: wake the first waiter to compete, whoever takes the lock now
            # (a no-op when it is already awake: woken earlier, or about to go back to sleep).
            waiter = self.waiters[0][0]
            if waiter.state is TaskState.SLEEPING:
                if self.costs.wakeup_ns:  # wake_up_process: the unlocker pays try_to_wake_up
                    engine.charge(self.costs.wakeup_ns)
                engine.wake(waiter, _RETRY)

    def _fifo_handoff(self) -> None:
        """The benchmark's strict FIFO: the first waiter owns the lock before it runs."""
        if self.waiters:
            waiter, _ = self.waiters.popleft()
            self.owner = waiter
            if self.costs.wakeup_ns and waiter.state is TaskState.SLEEPING:  # the unlocker's try_to_wake_up
                self.engine.charge(self.costs.wakeup_ns)
            self.engine.wake(waiter, _GRANTED)
