"""What every lock model shares: its class, statistics, ownership checks and the lockdep hooks.

A lock model is a small state machine over the engine's ``block``/``wake`` primitives.  This base
records lock_stat's fields at the two points the kernel does (``lock_contended`` when an
acquisition has to wait, ``lock_acquired`` when it gets the lock), keeps each holder's start time
for hold times, reports misuse at once, and passes every acquisition and release to the engine's
instruments (concurrency/instrument.py: lockdep, tracers).  :class:`SimLock`'s docstring is the
contract a lock model keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from concurrency.lock_types import LockCosts, LockMisuse
from concurrency.lockstat import LockClass, LockSideStats

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["LockCosts", "LockMisuse", "SimLock"]


READ = 1  # lockdep's read=1: a non-recursive reader (down_read)
RECURSIVE_READ = 2  # lockdep's read=2: rcu_read_lock and friends
WRITE = 0


class SimLock:
    """Base class: one lock instance belonging to a :class:`LockClass`.

    **The lock contract.**  A lock model is a state machine over the engine's ``block``/``wake``;
    this base keeps lock_stat, lockdep and the instruments right *if* the model calls its hooks at
    the kernel's points, in this order:

    ==========================================  ===============================================
    when                                        the model calls
    ==========================================  ===============================================
    every operation, first                      ``task = self._current()`` (LockMisuse outside a
                                                task); raise :class:`LockMisuse` at once on a
                                                re-acquisition by the holder
    an acquisition (or trylock) starts          ``self._lockdep_acquire(task, subclass, read,
                                                trylock)``: lockdep's ``lock_acquire``, before any
                                                wait (``read``: ``WRITE``, ``READ`` or
                                                ``RECURSIVE_READ``)
    the fast path's cost                        ``await self.engine.delay(self._atomic_cost(task))``
                                                (the atomic, plus a line bounce), skipped when 0
    it has to wait                              ``self._contended(task, side)`` (``lock_contended``),
                                                then ``await self.engine.block(self, spin=...)``:
                                                ``spin=True`` keeps the CPU (a spinner), else the
                                                task sleeps; a spinner that gets a released lock
                                                pays ``await self._pick_up()``
    it holds the lock                           ``self._acquired(task, side, wait_start)``
                                                (``lock_acquired``; ``wait_start`` None: no wait)
    release                                     ``self._released(task, side, since)`` then
                                                ``self._lockdep_release(task, subclass)``; wake
                                                the next owner with ``self.engine.wake(task)``
    ==========================================  ===============================================

    ``side`` is ``self.class_for(subclass).write`` (or ``.read`` for a reader).  Class attributes:
    ``kind`` (lock_stat's type column), ``rw`` (has a read side), ``sleeping`` (False for a
    spinning lock, whose holders must not sleep: raise ``task.atomic_depth`` while spinning as
    ``spin_lock``'s ``preempt_disable`` does).  :meth:`holders` answers the deadlock report.

    A new lock model is its module plus one registration: an entry in
    ``tests/concurrency/test_lock_contract.py``'s ``MODELS``, which runs the contract (mutual
    exclusion, no lost wake-up, exact lock_stat, misuse) on it.  Template: the acquisition of a
    FIFO ticket spinlock (README "Extending" has the whole module, which a test runs)::

        async def lock(self) -> None:
            task = self._current()
            if self.owner is task:
                raise LockMisuse(f"{self.name}: {task.name} re-acquires it")
            self._lockdep_acquire(task, 0, WRITE, False)
            task.atomic_depth += 1  # spin_lock(): preempt_disable() first
            if cost := self._atomic_cost(task):
                await self.engine.delay(cost)
            if self.owner is None and not self.queue:
                task.atomic_depth -= 1
                self._take(task, None)  # sets the owner, then self._acquired(...)
                return
            self._contended(task, self.lclass.write)
            start = self.engine.now
            self.queue.append((task, start))
            await self.engine.block(self, spin=True)
            await self._pick_up()
            task.atomic_depth -= 1
            self._take(task, start)
    """

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
        hook = self.engine.hooks.on_lock_acquire
        if hook is not None:
            hook(task, self.class_for(subclass).key, read, trylock, self.name)

    def _lockdep_release(self, task: SimTask, subclass: int) -> None:
        hook = self.engine.hooks.on_lock_release
        if hook is not None:
            hook(task, self.class_for(subclass).key, self.name)

    def _instance_side(self, side: LockSideStats) -> LockSideStats | None:
        inst = self.istats
        if inst is None:
            return None
        return inst.read if side.mode == "R" else inst.write

    def _contended(self, task: SimTask, side: LockSideStats) -> None:
        """``lock_contended``: this acquisition will wait; blame the holders' operations."""
        bounce = self.last_cpu >= 0 and self.last_cpu != task.cpu.index
        task.wait_mark = (task.spin_ns, task.sleep_ns)
        holder_ops = [holder.op for holder in self.holders()]
        side.note_contended(task.op, bounce, holder_ops)
        if self.istats is not None:
            inst = self._instance_side(side)
            assert inst is not None
            inst.note_contended(task.op, bounce, holder_ops)
        hook = self.engine.hooks.on_contended
        if hook is not None:
            hook(task, self, side.mode, side.key)

    def _acquired(self, task: SimTask, side: LockSideStats, wait_start: int | None) -> None:
        """``lock_acquired``: record the wait (if it waited) and the acquisition."""
        cpu = task.cpu.index
        bounce = self.last_cpu >= 0 and self.last_cpu != cpu
        self.last_cpu = cpu
        self.acq_bounced = bounce
        waited = None if wait_start is None else self.engine.now - wait_start
        spun = slept = 0
        if waited is not None:  # the parts of the wait spent spinning and asleep (task.wait_mark)
            spun = task.spin_ns - task.wait_mark[0]
            slept = task.sleep_ns - task.wait_mark[1]
        side.note_acquired(task.op, bounce, waited, spun, slept)
        if self.istats is not None:
            inst = self._instance_side(side)
            assert inst is not None
            inst.note_acquired(task.op, bounce, waited, spun, slept)
        task.held.append(self)
        if not self.sleeping:
            task.atomic_depth += 1
        hook = self.engine.hooks.on_acquired
        if hook is not None:
            hook(task, self, side.mode, wait_start, side.key)

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
        hook = engine.hooks.on_released
        if hook is not None:
            hook(task, self, side.mode, since, side.key)

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
