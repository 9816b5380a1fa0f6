"""A contended atomic counter: one cache line that CPUs take turns to own.

An atomic read-modify-write (``atomic_inc``, ``atomic_add``, ``atomic_inc_not_zero``,
``atomic_dec_and_test``, ``refcount_*``; include/linux/atomic/atomic-instrumented.h) needs the
line in the Modified state on the executing CPU.  Cost model:

* each operation costs ``atomic_ns``, plus ``bounce_ns`` when the previous operation on the line
  ran on another CPU (the line has to move: MESI read-for-ownership);
* operations on one line serialise: the line is a FIFO of requesters, and an operation arriving
  while the line is busy waits (spinning, its CPU stalls on the load) until the earlier ones are
  done.  The order is fixed when an operation arrives, so the next owner's CPU, and therefore
  whether it bounces, is known then.

Statistics go to the lock class ``name`` (kind ``atomic``), on the write side in lock_stat's
terms: ``acquisitions`` = operations, ``acq_bounces`` = operations that moved the line,
``contentions`` = operations that had to wait for the line (with their wait time; ``con_bounces``
those that also moved it).  Hold times are not recorded: an operation's length is its cost.

:meth:`ContendedAtomic.add_nowait` changes the value and the line's owner without charging time or
recording statistics, for models that charge a batch of operations themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from concurrency.lock import LockCosts

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["ContendedAtomic"]


class ContendedAtomic:
    """``atomic_t`` / ``refcount_t`` on its own cache line."""

    __slots__ = ("atomic_ns", "bounce_ns", "engine", "free_at", "last_cpu", "lclass", "name", "value")

    def __init__(self, engine: Engine, name: str, *, value: int = 0, instance: str | None = None,
                 costs: LockCosts | None = None) -> None:
        costs = costs if costs is not None else engine.lock_costs
        self.engine = engine
        self.name = instance or name
        self.lclass = engine.lock_class(name, "atomic", rw=False)
        self.lclass.instances += 1
        self.atomic_ns = costs.atomic_ns
        self.bounce_ns = costs.bounce_ns
        self.value = value
        self.last_cpu = -1  # CPU of the last operation queued on the line
        self.free_at = 0  # when the last queued operation finishes

    def __repr__(self) -> str:
        return f"<ContendedAtomic {self.name}={self.value}>"

    def holders(self) -> list[SimTask]:
        return []  # a line is never held across a wait: waiting on it cannot deadlock

    async def _op(self) -> None:
        """Queue on the line, wait (spinning) for the earlier operations, then run this one."""
        engine = self.engine
        task = engine.current
        assert task is not None, "atomic operation outside a simulated task"
        now = engine.now
        cpu = task.cpu.index
        side = self.lclass.write
        side.acquisitions += 1
        cost = self.atomic_ns
        bounced = self.last_cpu >= 0 and self.last_cpu != cpu
        if bounced:
            cost += self.bounce_ns
            side.acq_bounces += 1
        self.last_cpu = cpu
        start = self.free_at
        if start > now:
            side.note_contended(task.op, bounced, [])
            side.wait.record(start - now)
            self.free_at = start + cost
            await engine.block(self, spin=True, timeout_ns=start - now)
        else:
            self.free_at = now + cost
        if cost:
            await engine.delay(cost)

    # The value changes when the operation completes, so concurrent callers see FIFO results.

    async def inc(self) -> None:
        """``atomic_inc``."""
        await self._op()
        self.value += 1

    async def dec(self) -> None:
        """``atomic_dec``."""
        await self._op()
        self.value -= 1

    async def add(self, n: int) -> int:
        """``atomic_add_return``: the new value."""
        await self._op()
        self.value += n
        return self.value

    async def inc_not_zero(self) -> bool:
        """``atomic_inc_not_zero`` (``refcount_inc_not_zero``, ``get_page_unless_zero``)."""
        await self._op()
        if self.value == 0:
            return False
        self.value += 1
        return True

    async def dec_and_test(self) -> bool:
        """``atomic_dec_and_test``: True when the count reaches zero."""
        await self._op()
        self.value -= 1
        return self.value == 0

    def add_nowait(self, n: int) -> None:
        """Change the value at no cost; the line still moves to the current task's CPU."""
        self.value += n
        task = self.engine.current
        if task is not None:
            self.last_cpu = task.cpu.index
