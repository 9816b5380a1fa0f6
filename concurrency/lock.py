"""What every lock model shares: its class, statistics, ownership checks and the lockdep hooks.

A lock model is a small state machine over the engine's ``block``/``wake`` primitives.  This base
records lock_stat's fields at the two points the kernel does (``lock_contended`` when an
acquisition has to wait, ``lock_acquired`` when it gets the lock), keeps each holder's start time
for hold times, reports misuse at once, and passes every acquisition and release to the order
checker when one is attached to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from concurrency.lockstat import LockClass, LockSideStats

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["LockCosts", "LockMisuse", "SimLock"]


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
    """

    atomic_ns: int = 20
    bounce_ns: int = 100
    handoff_ns: int = 50

    @classmethod
    def free(cls) -> LockCosts:
        return cls(0, 0, 0)


READ = 1  # lockdep's read=1: a non-recursive reader (down_read)
RECURSIVE_READ = 2  # lockdep's read=2: rcu_read_lock and friends
WRITE = 0


class SimLock:
    """Base class: one lock instance belonging to a :class:`LockClass`."""

    kind = "lock"
    rw = False
    sleeping = True  # False for spinning locks: holders must not sleep
    # The last acquisition ran on another CPU than the one before it (lock_stat's acq_bounces);
    # an instance attribute from the first acquisition on, so per-folio locks stay small.
    acq_bounced = False

    def __init__(self, engine: Engine, name: str, *, instance: str | None = None,
                 costs: LockCosts | None = None) -> None:
        self.engine = engine
        self.lclass = engine.lock_class(name, self.kind, rw=self.rw)
        self.lclass.instances += 1
        self.name = instance or name
        self.costs = costs if costs is not None else engine.lock_costs
        self.last_cpu = -1
        self._subclasses: dict[int, LockClass] = {}
        # Per-lock statistics beside the class's, when the engine asks for them.
        self.istats = engine.instance_stats_for(self.lclass, self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # -- helpers for subclasses -----------------------------------------------------------------

    def class_for(self, subclass: int) -> LockClass:
        if not subclass:
            return self.lclass
        cls = self._subclasses.get(subclass)
        if cls is None:
            cls = self.engine.lock_class(self.lclass.name, self.kind, rw=self.rw, subclass=subclass)
            self._subclasses[subclass] = cls
        return cls

    def _side(self, cls: LockClass, read: bool) -> LockSideStats:
        return cls.read if read else cls.write

    def _lockdep_acquire(self, task: SimTask, subclass: int, read: int, trylock: bool) -> None:
        checker = self.engine.lockdep
        if checker is not None:
            checker.acquire(task.tid, task.name, self.class_for(subclass).key, read=read,
                            trylock=trylock, where=task.op, instance=self.name)

    def _lockdep_release(self, task: SimTask, subclass: int) -> None:
        checker = self.engine.lockdep
        if checker is not None:
            checker.release(task.tid, self.class_for(subclass).key, instance=self.name,
                            task_name=task.name, where=task.op)

    def _instance_side(self, side: LockSideStats) -> LockSideStats | None:
        inst = self.istats
        if inst is None:
            return None
        return inst.read if side.mode == "R" else inst.write

    def _contended(self, task: SimTask, side: LockSideStats) -> None:
        """``lock_contended``: this acquisition will wait; blame the holders' operations."""
        bounce = self.last_cpu >= 0 and self.last_cpu != task.cpu.index
        holder_ops = [holder.op for holder in self.holders()]
        side.note_contended(task.op, bounce, holder_ops)
        if self.istats is not None:
            inst = self._instance_side(side)
            assert inst is not None
            inst.note_contended(task.op, bounce, holder_ops)
        tracer = self.engine.tracer
        if tracer is not None:
            tracer.on_contended(task, self, side.mode, key=side.key)

    def _acquired(self, task: SimTask, side: LockSideStats, wait_start: int | None) -> None:
        """``lock_acquired``: record the wait (if it waited) and the acquisition."""
        cpu = task.cpu.index
        bounce = self.last_cpu >= 0 and self.last_cpu != cpu
        self.last_cpu = cpu
        self.acq_bounced = bounce
        waited = None if wait_start is None else self.engine.now - wait_start
        side.note_acquired(task.op, bounce, waited)
        if self.istats is not None:
            inst = self._instance_side(side)
            assert inst is not None
            inst.note_acquired(task.op, bounce, waited)
        task.held.append(self)
        if not self.sleeping:
            task.atomic_depth += 1
        tracer = self.engine.tracer
        if tracer is not None:
            tracer.on_acquired(task, self, side.mode, wait_start, key=side.key)

    def _released(self, task: SimTask, side: LockSideStats, since: int) -> None:
        engine = self.engine
        hold = engine.now - since
        side.hold.record(hold)
        if self.istats is not None:
            inst = self._instance_side(side)
            assert inst is not None
            inst.hold.record(hold)
        held = task.held
        if held[-1] is self:  # the usual LIFO release: no search
            held.pop()
        else:
            held.remove(self)
        if not self.sleeping:
            task.atomic_depth -= 1
        tracer = engine.tracer
        if tracer is not None:
            tracer.on_released(task, self, side.mode, since, key=side.key)

    async def _pick_up(self) -> None:
        """A spinner owns a released lock once the lock word's cache line has moved to its CPU
        (``handoff_ns``): the hand-over between two running CPUs is not free."""
        if self.costs.handoff_ns:
            await self.engine.delay(self.costs.handoff_ns)

    def _current(self) -> SimTask:
        task = self.engine.current
        if task is None:
            raise LockMisuse(f"{self.name}: lock operation outside a simulated task")
        return task

    def _atomic_cost(self, task: SimTask) -> int:
        """The fast-path atomic, plus a line bounce when the last acquirer ran elsewhere."""
        cost = self.costs.atomic_ns
        if self.last_cpu >= 0 and self.last_cpu != task.cpu.index:
            cost += self.costs.bounce_ns
        return cost

    # -- what the deadlock report asks -------------------------------------------------------------

    def holders(self) -> list[SimTask]:
        raise NotImplementedError
