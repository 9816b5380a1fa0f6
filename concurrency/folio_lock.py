"""The folio lock (``PG_locked``), after include/linux/pagemap.h and mm/filemap.c.

* ``folio_trylock`` is ``test_and_set_bit_lock(PG_locked)``: it takes a clear bit whoever else is
  waiting (there is no waiter check), and fails on a set bit.
* ``folio_lock`` tries the same bit, then ``__folio_lock`` ->
  ``folio_wait_bit_common(folio, PG_locked, TASK_UNINTERRUPTIBLE, EXCLUSIVE)``: the task sets
  PG_waiters, queues at the tail of the (hashed) wait queue and sleeps.
* ``folio_unlock`` clears the bit and, with PG_waiters set, ``folio_wake_bit`` walks the queue;
  ``wake_page_function`` wakes the first exclusive waiter.  Since v5.9 (commit 2a9127fcf229
  "mm: rewrite wait_on_page_bit_common() logic") the waker takes ``PG_locked`` on the waiter's
  behalf (``WQ_FLAG_DONE``): the lock is handed to the first waiter.  v5.11 (commit 5ef64cc8987a
  "mm: allow a controlled amount of unfairness in the page lock") hands off only after a waiter
  has lost ``sysctl_page_lock_unfairness`` (default 5) races: until then it is merely woken, tries
  the bit itself when it runs, and re-queues at the tail if a ``folio_trylock``/``folio_lock``
  took the bit during its wake-up.  :attr:`FolioLock.unfairness` selects the behaviour: 0 is the
  v5.9 hand-off, :class:`FolioLockUnfair` is mainline's 5 (``sysctl_page_lock_unfairness``, the
  default of the simulated system: :func:`folio_lock_class`).

Events: ``folio_lock_handoff`` (unlock handed the bit to a waiter), ``folio_lock_stolen`` (a woken
waiter found the bit taken and re-queued).

The folio lock has no owner in the kernel (I/O completion may unlock a folio locked by the
submitter); rmap, migration and reuse always unlock in the locking task, and the model holds them
to that so hold times and misuse checks work.

There may be a million folios, so an instance is kept small: the waiter queue is allocated only
while someone waits, and the base class's per-instance subclass map is never created (the folio
lock has no ``*_nested`` variants).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from concurrency.lock import WRITE, LockCosts, LockMisuse, SimLock
from concurrency.lockstat import LockClass

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["FolioLock", "FolioLockTunable", "FolioLockUnfair", "folio_lock_class"]

_GRANTED = "granted"  # WQ_FLAG_DONE: the waker took PG_locked for us


class FolioLock(SimLock):
    """``PG_locked`` of one folio: a sleeping bit lock with a FIFO exclusive wait queue."""

    kind = "folio_lock"
    # sysctl_page_lock_unfairness: lost races before a waiter gets the lock handed to it.
    unfairness = 0

    __slots__ = ("owner", "owner_since", "waiters")

    def __init__(self, engine: Engine, name: str = "folio_lock", *, instance: str | None = None,
                 costs: LockCosts | None = None) -> None:
        # SimLock.__init__ is not called: it would allocate a subclass map per folio.  These are
        # exactly the base attributes (test_folio_lock checks the two stay in step).
        self.engine = engine
        self.lclass = engine.lock_class(name, self.kind, rw=self.rw)
        self.lclass.instances += 1
        self.name = instance or name
        self.costs = costs if costs is not None else engine.lock_costs
        self.last_cpu = -1
        self.istats = engine.instance_stats_for(self.lclass, self.name)
        self.owner: SimTask | None = None
        self.owner_since = 0
        # (task, handoff) in queue order; None while nobody waits.  ``handoff`` is WQ_FLAG_CUSTOM.
        self.waiters: deque[tuple[SimTask, bool]] | None = None

    def class_for(self, subclass: int) -> LockClass:
        if subclass:
            raise ValueError(f"{self.name}: the folio lock has no nesting subclasses")
        return self.lclass

    def holders(self) -> list[SimTask]:
        return [self.owner] if self.owner is not None else []

    def is_locked(self) -> bool:
        """``folio_test_locked``."""
        return self.owner is not None

    def nr_waiters(self) -> int:
        return len(self.waiters) if self.waiters is not None else 0

    def _take(self, task: SimTask, wait_start: int | None) -> None:
        self.owner = task
        self.owner_since = self.engine.now
        self._acquired(task, self.lclass.write, wait_start)

    def _unlocked(self) -> bool:
        """``PG_locked`` clear.  A method, not ``self.owner is None`` inline: a check narrowed before
        an ``await`` would be trusted after it (mypy), and compiled code then rejects the new owner."""
        return self.owner is None

    def folio_trylock(self) -> bool:
        """``folio_trylock``: take a clear ``PG_locked``; never waits (the caller charges the
        atomic)."""
        task = self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} re-locks a folio it has locked")
        if self.owner is not None:
            return False
        self._lockdep_acquire(task, 0, WRITE, True)
        self._take(task, None)
        return True

    async def folio_lock(self) -> None:
        """``folio_lock``: the bit, or sleep in ``folio_wait_bit_common`` (EXCLUSIVE)."""
        task = self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} re-locks a folio it has locked (self-deadlock)")
        self._lockdep_acquire(task, 0, WRITE, False)
        engine = self.engine
        cost = self._atomic_cost(task)
        if cost:
            await engine.delay(cost)
        if self._unlocked():
            self._take(task, None)
            return
        self._contended(task, self.lclass.write)
        start = engine.now
        unfairness = self.unfairness
        while True:
            unfairness -= 1
            waiters = self.waiters
            if waiters is None:
                waiters = self.waiters = deque()
            waiters.append((task, unfairness < 0))
            verdict = await engine.block(self)
            # Handed the bit, or woken to try it ourselves (test_and_set_bit in the wait loop).
            if verdict == _GRANTED or self._unlocked():
                self._take(task, start)
                return
            # Someone took the bit while we were waking up: queue again, at the tail.
            self.lclass.events["folio_lock_stolen"] += 1

    def folio_unlock(self) -> None:
        """``folio_unlock``: clear the bit and wake (or hand the bit to) the first waiter."""
        task = self._current()
        if self.owner is not task:
            holder = self.owner.name if self.owner is not None else "nobody"
            raise LockMisuse(f"{self.name}: {task.name} unlocks a folio locked by {holder}")
        self._released(task, self.lclass.write, self.owner_since)
        self._lockdep_release(task, 0)
        self.owner = None
        waiters = self.waiters
        if not waiters:
            return
        waiter, handoff = waiters.popleft()
        if not waiters:
            self.waiters = None  # the queue lives only while someone waits
        if handoff:
            self.owner = waiter  # reserved: wake_page_function set PG_locked for it
            self.lclass.events["folio_lock_handoff"] += 1
            self.engine.wake(waiter, _GRANTED)
        else:
            self.engine.wake(waiter)

    # The generic names (Mutex, QSpinlock) for code written against any exclusive lock; methods,
    # not aliases assigned in the class body (mypyc does not compile those).
    def trylock(self) -> bool:
        return self.folio_trylock()

    async def lock(self) -> None:
        await self.folio_lock()

    def unlock(self) -> None:
        self.folio_unlock()


class FolioLockUnfair(FolioLock):
    """Mainline since v5.11: ``sysctl_page_lock_unfairness = 5`` lost races before hand-off."""

    __slots__ = ()
    unfairness = 5


class FolioLockTunable(FolioLock):
    """Any other ``sysctl_page_lock_unfairness``: the value kept per lock (a scenario that sets or
    sweeps it; the two usual values above keep it in the class).  A class made at run time would
    do the same in one less slot, but the compiled build cannot subclass a compiled class at run
    time."""

    __slots__ = ("unfairness",)

    def __init__(self, engine: Engine, name: str = "folio_lock", *, instance: str | None = None,
                 costs: LockCosts | None = None, unfairness: int = 0) -> None:
        super().__init__(engine, name, instance=instance, costs=costs)
        self.unfairness = unfairness


FolioLockFactory = Callable[..., FolioLock]
_FACTORIES: dict[int, FolioLockFactory] = {0: FolioLock, 5: FolioLockUnfair}


def folio_lock_class(unfairness: int) -> FolioLockFactory:
    """What makes the folio lock for ``sysctl_page_lock_unfairness = unfairness`` (mm/filemap.c;
    5 by default since v5.11, 0 is the v5.9 hand-off): called like the lock class."""
    if unfairness < 0:
        raise ValueError(f"sysctl_page_lock_unfairness must be >= 0, got {unfairness}")
    factory = _FACTORIES.get(unfairness)
    if factory is None:
        factory = _FACTORIES[unfairness] = functools.partial(FolioLockTunable, unfairness=unfairness)
    return factory
