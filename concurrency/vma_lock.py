"""The per-VMA lock, after include/linux/mmap_lock.h and mm/mmap_lock.c (CONFIG_PER_VMA_LOCK).

The kernel's per-VMA lock is "an rwsem in practice" built from a reference count and a sequence
number (``vma->vm_refcnt``, ``vma->vm_lock_seq`` against ``mm->mm_lock_seq``):

* Readers only ever *try* (``vma_start_read``, called by ``lock_vma_under_rcu`` from the page
  fault path).  A try fails when the VMA is write-locked in the current mmap write cycle
  (``vm_lock_seq == mm_lock_seq``) or when a writer has raised ``VMA_LOCK_OFFSET`` to exclude
  readers; the fault then falls back to ``mmap_read_lock``.  A reader never blocks.
  ``vma_end_read`` drops the reference and wakes a writer waiting for readers to drain.
* Writers (``vma_start_write``) must hold ``mmap_lock`` for write (``mmap_assert_write_locked``).
  ``__vma_start_write`` -> ``__vma_enter_locked`` raises ``VMA_LOCK_OFFSET`` and sleeps
  (``rcuwait_wait_event``, TASK_UNINTERRUPTIBLE) until the readers have left, then stores
  ``vm_lock_seq = mm_lock_seq``.  Re-locking an already write-locked VMA is a no-op.
* There is no per-VMA unlock: ``mmap_write_unlock`` / ``mmap_write_downgrade`` call
  ``vma_end_write_all``, which bumps ``mm->mm_lock_seq`` so every VMA write-locked in that cycle
  becomes unlocked at once.  Here :class:`MmLockSeq` is that per-mm sequence; the mm calls
  :meth:`MmLockSeq.vma_end_write_all` (or :meth:`VmaLock.mark_unlocked` per VMA).

Statistics: the read side counts successful ``vma_start_read`` (never contended); failed tries are
the event ``vma_read_fail`` (split into ``vma_read_fail_locked`` / ``vma_read_fail_writer``).  The
write side counts ``vma_start_write`` with a contention when it had to wait for readers; its hold
time runs until the VMA is unlocked by the mm.

Lockdep follows the kernel's ``vmlock_dep_map``: readers are trylock readers held until
``vma_end_read``; a writer is "held" only while it waits for readers (``rwsem_acquire`` in
``__vma_enter_locked``, ``rwsem_release`` in ``__vma_exit_locked``), which is why fork may
write-lock every VMA of an mm without lockdep seeing recursion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from concurrency.lock import READ, WRITE, LockCosts, LockMisuse, SimLock

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["MmLockSeq", "VmaLock"]


class MmLockSeq:
    """``mm->mm_lock_seq`` and the VMAs write-locked in the current mmap write cycle.

    ``mmap_write_held`` is the ``mmap_assert_write_locked(mm)`` check shared by the mm's VMAs.
    """

    __slots__ = ("locked", "mmap_write_held", "seq")

    def __init__(self, mmap_write_held: Callable[[], bool] | None = None) -> None:
        self.seq = 0
        self.locked: list[VmaLock] = []
        self.mmap_write_held = mmap_write_held

    def vma_end_write_all(self) -> None:
        """``vma_end_write_all`` (from ``mmap_write_unlock`` / ``mmap_write_downgrade``).

        The kernel only increments ``mm_lock_seq``; the simulator also closes each locked VMA's
        hold time, which is why it keeps the list.
        """
        locked = self.locked
        for vma in locked:
            vma._check_writer()  # all or nothing: a misuse leaves every VMA locked
        self.locked = []
        for vma in locked:
            vma._end_write()
        self.seq += 1


class VmaLock(SimLock):
    """One VMA's lock (``vma->vm_refcnt`` + ``vma->vm_lock_seq``).

    ``mm_seq`` is the mm's :class:`MmLockSeq` (a private one when omitted);
    ``mmap_write_held`` overrides its write-held check: ``vma_start_write`` raises
    :class:`LockMisuse` when the check returns False.  Without any check the caller is trusted.
    """

    kind = "vma_lock"
    rw = True

    def __init__(self, engine: Engine, name: str = "vma_lock", *, instance: str | None = None,
                 mm_seq: MmLockSeq | None = None,
                 mmap_write_held: Callable[[], bool] | None = None,
                 costs: LockCosts | None = None) -> None:
        super().__init__(engine, name, instance=instance, costs=costs)
        self.mm = mm_seq if mm_seq is not None else MmLockSeq()
        self.mmap_write_held = mmap_write_held
        self.vm_lock_seq = -1  # equals mm.seq while write-locked
        self.readers: dict[SimTask, int] = {}  # reader -> when it got the lock (insertion-ordered)
        self.writer: SimTask | None = None  # the write-locker, or the writer waiting for readers
        self.writer_waiting = False  # VMA_LOCK_OFFSET raised: new readers fail
        self.write_since = 0

    # -- queries ---------------------------------------------------------------------------------

    def is_write_locked(self) -> bool:
        """``__is_vma_write_locked``: locked in the mm's current write cycle."""
        return self.vm_lock_seq == self.mm.seq

    def is_locked(self) -> bool:
        return bool(self.readers) or self.is_write_locked()

    def holders(self) -> list[SimTask]:
        out = list(self.readers)
        if self.writer is not None and self.is_write_locked():
            out.append(self.writer)
        return out

    # -- read side ---------------------------------------------------------------------------------

    def vma_start_read(self) -> bool:
        """``vma_start_read``: take a read reference unless a writer has or wants the VMA.

        Never blocks; the caller charges the refcount atomic in its own cost model and falls back
        to ``mmap_read_lock`` on failure (``lock_vma_under_rcu`` returning NULL).
        """
        task = self._current()
        if task in self.readers:
            raise LockMisuse(f"{self.name}: {task.name} read-locks a VMA it already read-locks")
        events = self.lclass.events
        if self.vm_lock_seq == self.mm.seq:
            events["vma_read_fail"] += 1
            events["vma_read_fail_locked"] += 1
            return False
        if self.writer_waiting:
            # __refcount_inc_not_zero_limited_acquire fails: VMA_LOCK_OFFSET is set.
            events["vma_read_fail"] += 1
            events["vma_read_fail_writer"] += 1
            return False
        self._lockdep_acquire(task, 0, READ, True)
        self.readers[task] = self.engine.now
        self._acquired(task, self.lclass.read, None)
        return True

    def vma_end_read(self) -> None:
        """``vma_end_read``: drop the reference; the last reader wakes a waiting writer."""
        task = self._current()
        since = self.readers.pop(task, None)
        if since is None:
            raise LockMisuse(f"{self.name}: {task.name} vma_end_read without holding the read lock")
        self._released(task, self.lclass.read, since)
        self._lockdep_release(task, 0)
        writer = self.writer
        # rcuwait_wake_up: only a writer actually asleep in __vma_enter_locked needs the wake;
        # one still paying its atomic re-checks the readers itself.
        if self.writer_waiting and not self.readers and writer is not None \
                and writer.waiting_for is self:
            self.engine.wake(writer)

    # -- write side --------------------------------------------------------------------------------

    async def vma_start_write(self) -> None:
        """``vma_start_write``: exclude new readers, sleep until current readers drain, then mark
        the VMA write-locked until the mm's ``vma_end_write_all``."""
        task = self._current()
        check = self.mmap_write_held if self.mmap_write_held is not None else self.mm.mmap_write_held
        if check is not None and not check():
            raise LockMisuse(f"{self.name}: {task.name} vma_start_write without mmap_lock held "
                             f"for write (mmap_assert_write_locked)")
        if self.vm_lock_seq == self.mm.seq:
            if self.writer is task:
                self.lclass.events["vma_write_relock"] += 1  # __is_vma_write_locked: nothing to do
                return
            holder = self.writer.name if self.writer is not None else "nobody"
            raise LockMisuse(f"{self.name}: {task.name} write-locks a VMA write-locked by {holder} "
                             f"in the same mmap write cycle")
        if self.writer_waiting:
            assert self.writer is not None
            raise LockMisuse(f"{self.name}: {task.name} write-locks a VMA while {self.writer.name} "
                             f"waits to write-lock it (mmap_lock not held for write?)")
        if task in self.readers:
            raise LockMisuse(f"{self.name}: {task.name} write-locks a VMA it read-locks "
                             f"(waits for its own reference)")
        self._lockdep_acquire(task, 0, WRITE, False)
        self.writer = task
        self.writer_waiting = True  # refcount_add(VMA_LOCK_OFFSET): readers fail from here on
        cost = self._atomic_cost(task)
        if cost:
            await self.engine.delay(cost)
        wait_start: int | None = None
        if self.readers:
            side = self.lclass.write
            self._contended(task, side)
            wait_start = self.engine.now
            await self.engine.block(self)  # rcuwait_wait_event(..., TASK_UNINTERRUPTIBLE)
        self.writer_waiting = False  # __vma_exit_locked: refcount_sub(VMA_LOCK_OFFSET)
        self.vm_lock_seq = self.mm.seq
        self.write_since = self.engine.now
        self.mm.locked.append(self)
        self._acquired(task, self.lclass.write, wait_start)
        self._lockdep_release(task, 0)

    def mark_unlocked(self) -> None:
        """This VMA's part of ``vma_end_write_all``: a no-op when it is not write-locked (the mm
        may call it on every VMA at ``mmap_write_unlock``)."""
        if self.vm_lock_seq != self.mm.seq:
            return
        self._check_writer()
        self.mm.locked.remove(self)
        self._end_write()

    def _check_writer(self) -> SimTask:
        writer = self.writer
        assert writer is not None
        task = self.engine.current
        if task is not writer:
            who = task.name if task is not None else "no task"
            raise LockMisuse(f"{self.name}: {who} ends the VMA write lock held by {writer.name} "
                             f"(mmap_write_unlock from another task)")
        return writer

    def _end_write(self) -> None:
        writer = self._check_writer()
        self.vm_lock_seq = -1
        self.writer = None
        self._released(writer, self.lclass.write, self.write_since)
