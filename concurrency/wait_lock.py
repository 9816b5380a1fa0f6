"""A sleeping lock's ``wait_lock``: the raw spinlock that guards its wait list (``raw_spinlock_t
wait_lock`` of ``struct rw_semaphore`` and ``struct mutex``), as a FIFO timeline of critical
sections.

Where the kernel takes it (3.10: lib/rwsem.c and kernel/mutex.c; today: kernel/locking/rwsem.c and
mutex.c): a waiter that queues (``rwsem_down_write_failed`` / ``rwsem_down_read_failed``, the
sleeping path of ``__mutex_lock_common``: ``list_add_tail`` and the count update under it), a woken
waiter that retries (3.10's writer re-takes it after each wake-up that finds the lock free, the mutex
after every wake-up), and the release that wakes (``rwsem_wake`` -> ``__rwsem_do_wake``,
``__mutex_unlock_common_slowpath``).  In 3.10 the release calls ``wake_up_process`` with it held;
since the wake_q conversions the release only queues the task under it and wakes it after
``raw_spin_unlock`` (``wake_up_q``).

**Why a timeline, not a QSpinlock** (concurrency/spinlock.py): the release is one of the sections,
and the model's releases are synchronous calls (``up_write()``, ``unlock()``: some 60 call sites),
which cannot spin on a lock.  The kernel's spinlock is FIFO (3.10's ticket lock, the queued
spinlock since 4.2), so a section that arrives at ``now`` starts when the one before it ends,
``max(now, free_at)``, and its CPU burns the wait and the section: an async caller (a waiter
queueing or retrying) waits it out with ``delay``, a release is charged it (``Engine.charge``, paid at
its next step).

**A section's cost**: taking the spinlock, the lock word's atomic plus a line bounce when the last
section ran on another CPU (``LockCosts.atomic_ns``/``bounce_ns``, as every lock's fast path), then
its body: a waiter's count update (``rwsem_atomic_update`` / the retry's ``cmpxchg`` / the mutex's
``atomic_xchg``: one more atomic on a line the other CPUs write, ``atomic_ns + bounce_ns``), or a
release's wake-ups when they happen under it (3.10: ``wakeup_ns`` each).

What it approximates: the wait for the spinlock counts as running CPU time, not spinning, and
lock_stat has no class for it (the owning lock's ``events`` count ``wait_lock`` sections and the
ns spent waiting for one); the state change a section makes (the queueing, the wake-up) takes
effect at the call, up to one section early.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from concurrency.lock_types import LockCosts

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["WaitLock"]


class WaitLock:
    """The ``wait_lock`` of one rwsem or mutex; ``wake_q`` False: wake-ups happen under it (3.10)."""

    __slots__ = ("costs", "events", "free_at", "last_cpu", "wake_q")

    def __init__(self, costs: LockCosts, events: dict[str, int], *, wake_q: bool) -> None:
        self.costs = costs
        self.events = events  # the owning lock class's event counters
        self.wake_q = wake_q
        self.free_at = 0
        self.last_cpu = -1

    def section(self, now: int, cpu: int, body_ns: int) -> int:
        """A section of ``body_ns`` run by a task on ``cpu`` arriving at ``now``: the CPU time it
        burns, waiting for the spinlock, taking it, and the body."""
        costs = self.costs
        take = costs.atomic_ns
        if self.last_cpu >= 0 and self.last_cpu != cpu:
            take += costs.bounce_ns
        start = max(now, self.free_at)
        self.free_at = start + take + body_ns
        self.last_cpu = cpu
        self.events["wait_lock_sections"] += 1
        if start > now:
            self.events["wait_lock_spin_ns"] += start - now
        return self.free_at - now

    def waiter_section(self, engine: Engine, task: SimTask) -> int:
        """A waiter's section (queueing, or a retry): take the lock, update the count word."""
        costs = self.costs
        return self.section(engine.now, task.cpu.index, costs.atomic_ns + costs.bounce_ns)

    def release(self, engine: Engine, wake: Callable[[], None]) -> None:
        """A release that wakes (``rwsem_wake``, ``__mutex_unlock_common_slowpath``): run ``wake``
        (which charges the releasing task ``wakeup_ns`` per sleeper it wakes) and charge the section
        it runs in; in 3.10 the wake-ups are its body, with wake_q they follow it."""
        task = engine.current
        if task is None:  # from a callback: nobody to charge
            wake()
            return
        owed = task.debt_ns
        wake()
        inside = 0 if self.wake_q else task.debt_ns - owed
        engine.charge(self.section(engine.now, task.cpu.index, inside) - inside)
