"""What the engine and every lock model share, below both: lock costs and lock misuse.

The engine raises :class:`LockMisuse` (sleeping while atomic, exiting with a lock held) and is
built with the :class:`LockCosts` its locks default to; concurrency/lock.py re-exports both, so a
lock model imports everything from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from mypy_extensions import mypyc_attr

__all__ = ["LockCosts", "LockMisuse"]


@mypyc_attr(native_class=False, allow_interpreted_subclasses=True)  # an exception: a plain class
class LockMisuse(RuntimeError):
    """Releasing a lock not held, re-acquiring a non-recursive lock, unlocking from another task,
    or sleeping while holding a spinlock."""


@dataclass(frozen=True)
class LockCosts:
    """Per-operation costs of a lock in ns (the mm cost model sets them; 0 switches one off).

    ``atomic_ns``: the uncontended atomic on the lock word (fast path).  ASSUME 20 ns.
    ``bounce_ns``: extra when the lock word's cache line was last written on another CPU.
        ASSUME 100 ns (cross-socket line transfer is 100-300 ns on the parts in the 2013 data).
    ``handoff_ns``: from release to a spinning waiter owning the lock (line transfer).  ASSUME 50 ns.
    ``wakeup_ns``: the releasing task's ``wake_up_process`` (``try_to_wake_up``) of each sleeping
        waiter it wakes, charged to the waker (``Engine.charge``).  0 (off) by default: the woken
        task's ``ctx_switch_ns`` stands for the whole sleep and wake-up (mm/costs.py).
    """

    atomic_ns: int = 20
    bounce_ns: int = 100
    handoff_ns: int = 50
    wakeup_ns: int = 0

    @classmethod
    def free(cls) -> LockCosts:
        return cls(0, 0, 0, 0)
