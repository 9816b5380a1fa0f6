"""The reader-writer semaphore, after kernel/locking/rwsem.c (the v5.11+ design by Waiman Long and
Peter Zijlstra).

The kernel keeps two words: ``count`` (WRITER_LOCKED, WAITERS, HANDOFF and the reader count) and
``owner`` (the writer, or the last reader with READER_OWNED, plus NONSPINNABLE).  This model keeps
the same facts as plain fields: ``owner`` (a writer), ``readers``, ``waitq`` (WAITERS is
``bool(waitq)``), ``handoff``, ``reader_owned`` and ``nonspinnable``.  Every rule below changes them
in one step of virtual time, the way the kernel changes them with one atomic or under ``wait_lock``.

Readers
    * fast path (``rwsem_read_trylock``): fails on a writer, any queued waiter or HANDOFF, so new
      readers never pass a queued writer;
    * slowpath (``rwsem_down_read_slowpath``): a reader-owned lock with other readers means queue (no
      stealing, so a stream of readers cannot starve a sleeping writer); otherwise, with no writer and
      no HANDOFF, *reader lock stealing* (``rwsem_rlock_steal``), and the first reader of the phase
      also grants the queued readers (``RWSEM_WAKE_READ_OWNED``); otherwise queue.  A queued reader
      sleeps until ``rwsem_mark_wake`` grants it the lock: it owns the lock before it runs.
    * ``down_read_trylock`` (``__down_read_trylock``) fails on writer, waiters or HANDOFF.

Writers
    * fast path: cmpxchg 0 -> WRITER_LOCKED, so anything at all (readers, waiters) fails it;
    * optimistic spinning (``rwsem_can_spin_on_owner``, ``rwsem_optimistic_spin``): spinners
      serialise on the OSQ; the head spins while the owning writer is on a CPU and takes a free lock
      with ``rwsem_try_write_lock_unqueued`` (*writer lock stealing*: queued waiters do not stop it,
      HANDOFF does).  On a reader-owned lock it spins at most ``rwsem_rspin_threshold`` =
      (10 + readers/2) µs, capped at 25 µs, then marks the lock NONSPINNABLE for that reader phase;
    * otherwise queue and loop ``rwsem_try_write_lock`` / sleep (``rwsem_down_write_slowpath``).  Only
      the first waiter is woken; it must run and retry, and others may steal the lock meanwhile.

Handoff (anti-starvation)
    A waiter that still fails after ``RWSEM_WAIT_TIMEOUT`` (``DIV_ROUND_UP(HZ, 250)`` jiffies past
    the jiffy it queued in, tested with ``time_after(jiffies, waiter->timeout)``: 4-8 ms at HZ=250)
    sets HANDOFF: a writer in ``rwsem_try_write_lock``, a reader in ``rwsem_mark_wake`` when a writer
    stole the lock in front of it.  HANDOFF stops the reader fast path, reader stealing, trylocks and
    unqueued writer stealing; only the first waiter may take the lock.  A writer that set it spins on
    a running owner to take the lock the moment it is released.

Wake-up (``rwsem_mark_wake``, from ``rwsem_wake`` on ``up_write`` and on the last ``up_read``)
    A writer at the head of the queue is woken alone.  A reader at the head starts a read phase: up to
    ``max_readers_wakeup`` (``MAX_READERS_WAKEUP`` = 256) readers are granted from anywhere in the
    queue, skipping writers ("an adaptation of the phase-fair R/W locks").

Statistics follow ``LOCK_CONTENDED(sem, __down_*_trylock, __down_*)``: an acquisition whose fast path
fails is one contention, whatever the slowpath then does (a stolen lock records a wait of 0 ns);
the wait ends and the hold starts when the task runs again (``lock_acquired``), so a woken waiter's
wait includes its wake-up latency.  The kernel's lock event counters (lock_events_list.h) go to the
class's ``events``.

Behaviour switches reproduce older kernels and test hypotheses: ``spin=False`` (no optimistic
spinning, as without CONFIG_RWSEM_SPIN_ON_OWNER), ``reader_steal=False`` (before commit 1a728dff855a,
v5.11), ``handoff=False`` (before the handoff bit, v5.3).

Spinners give up when a task is woken on their CPU (``need_resched()``, polled by ``osq_lock`` and
the spin loops), and a writer that takes the lock by spinning pays ``handoff_ns`` for the count
word's cache line to move to its CPU.

``wait_lock=True`` adds the ``wait_lock`` (concurrency/wait_lock.py): a queueing waiter
(``rwsem_down_write_failed`` / ``rwsem_down_read_failed`` in 3.10's lib/rwsem.c, the slowpaths
today), a woken writer that finds the lock free and retries (3.10's loop re-takes it after each
wake-up that sees no active locker) and ``rwsem_wake`` each run a section of it; ``wake_q=False``
wakes under it (3.10's ``__rwsem_do_wake`` calls ``wake_up_process`` with it held), True after it
(``wake_up_q``, today).  Off, the ``wait_lock`` costs nothing.

Not modelled: signals (``down_*_killable``; so ``rwsem_rlock_fail`` / ``rwsem_wlock_fail`` never
count), RT tasks, READFAIL overflow, and (without ``wait_lock``) the ``wait_lock`` hold time.
"""

from __future__ import annotations

from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, Final

from concurrency.engine import TaskState
from concurrency.lock import READ, WRITE, LockCosts, LockMisuse, SimLock
from concurrency.wait_lock import WaitLock

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["RwSemaphore"]

_GRANTED: Final = "granted"  # the waiter owns the lock (readers: mark_wake; spinners: unqueued steal)
_RETRY: Final = "retry"  # a queued writer is woken to run rwsem_try_write_lock itself
_CHANGED: Final = "changed"  # a spinner sees the lock or owner word change: look again
_OSQ_HEAD: Final = "osq_head"  # the previous OSQ holder left: this spinner now spins on the owner
_OSQ_UNQUEUE: Final = "osq_unqueue"  # need_resched() while waiting on the OSQ: give up spinning
NSEC_PER_SEC: Final = 1_000_000_000


class _Owner(Enum):
    """``enum owner_state`` of ``rwsem_owner_state``."""

    NULL = "null"
    WRITER = "writer"
    READER = "reader"
    NONSPINNABLE = "nonspinnable"


class _Wake(Enum):
    """``enum rwsem_wake_type``."""

    ANY = "any"  # wake whatever is at the head of the wait list
    READERS = "readers"  # wake readers only
    READ_OWNED = "read_owned"  # the waker holds the read lock


class _ReadHold:
    """One read hold: who, which subclass, since when (set when the task runs: ``lock_acquired``)."""

    __slots__ = ("since", "subclass", "task")

    def __init__(self, task: SimTask, subclass: int, since: int) -> None:
        self.task = task
        self.subclass = subclass
        self.since = since


class _Waiter:
    """``struct rwsem_waiter``: a queued task, its type, and when it may ask for a handoff."""

    __slots__ = ("blocked", "handoff_set", "hold", "spinning", "start", "subclass", "task",
                 "timeout", "write")

    def __init__(self, task: SimTask, write: bool, subclass: int, start: int, timeout: int) -> None:
        self.task = task
        self.write = write
        self.subclass = subclass
        self.start = start  # enqueue time
        self.timeout = timeout  # jiffies + RWSEM_WAIT_TIMEOUT
        self.handoff_set = False
        self.blocked = False  # in engine.block: a wake must go through engine.wake
        self.spinning = False  # a HANDOFF writer spinning on the owner rather than sleeping
        self.hold: _ReadHold | None = None  # a reader's grant from rwsem_mark_wake


def _on_cpu(task: SimTask) -> bool:
    """``owner_on_cpu``: running (or itself spinning on another lock) on its CPU."""
    return task.state is TaskState.RUNNING or task.state is TaskState.SPINNING


class RwSemaphore(SimLock):
    """A ``struct rw_semaphore``; see the module docstring for the rules it follows.

    Args:
        spin: writers spin optimistically (CONFIG_RWSEM_SPIN_ON_OWNER).
        reader_steal: readers steal a free lock past queued waiters (v5.11+).
        handoff: a starved waiter sets RWSEM_FLAG_HANDOFF after ``handoff_timeout_ns``.
        hz: CONFIG_HZ.  ``rwsem_down_{read,write}_slowpath`` set ``waiter.timeout = jiffies +
            RWSEM_WAIT_TIMEOUT`` with ``RWSEM_WAIT_TIMEOUT = DIV_ROUND_UP(HZ, 250)``
            (kernel/locking/rwsem.c) and ask for the handoff once ``time_after(jiffies,
            waiter.timeout)``: jiffies tick every 1/HZ s from time 0, so the wait before a handoff
            is 4-8 ms at HZ=250, 4-5 ms at HZ=1000, 10-20 ms at HZ=100.
        handoff_timeout_ns: an exact timeout in ns instead of the jiffy one (None: use ``hz``).
        max_readers_wakeup: ``MAX_READERS_WAKEUP``, readers granted per wake-up.
        wait_lock: model the ``wait_lock`` (concurrency/wait_lock.py); off, it costs nothing.
        wake_q: with ``wait_lock``, wake after dropping it (``wake_up_q``); False: under it (3.10).
    """

    kind = "rwsem"
    rw = True

    def __init__(self, engine: Engine, name: str, *, instance: str | None = None,
                 costs: LockCosts | None = None, spin: bool = True, reader_steal: bool = True,
                 handoff: bool = True, hz: int = 250, handoff_timeout_ns: int | None = None,
                 max_readers_wakeup: int = 256, wait_lock: bool = False, wake_q: bool = True) -> None:
        if hz < 1:
            raise ValueError(f"hz must be >= 1, got {hz}")
        if handoff_timeout_ns is not None and handoff_timeout_ns < 0:
            raise ValueError(f"handoff_timeout_ns must be >= 0, got {handoff_timeout_ns}")
        if max_readers_wakeup < 1:
            raise ValueError(f"max_readers_wakeup must be >= 1, got {max_readers_wakeup}")
        super().__init__(engine, name, instance=instance, costs=costs)
        self.spin = spin
        self.reader_steal = reader_steal
        self.use_handoff = handoff
        self.handoff_timeout_ns = handoff_timeout_ns
        self.hz = hz
        self.max_readers_wakeup = max_readers_wakeup
        self._wait_lock = WaitLock(self.costs, self.lclass.events, wake_q=wake_q) if wait_lock else None
        # The count word.
        self.owner: SimTask | None = None  # RWSEM_WRITER_LOCKED, and the owner word's task
        self.readers = 0  # read holds, including readers granted by a wake-up that have not run yet
        self.handoff = False  # RWSEM_FLAG_HANDOFF
        self.waitq: list[_Waiter] = []  # the wait list; RWSEM_FLAG_WAITERS is bool(waitq)
        # The owner word's flags.  READER_OWNED stays set after the readers leave (the kernel leaves
        # the last reader in the owner word), until a writer takes or releases the lock.
        self.reader_owned = False  # RWSEM_READER_OWNED
        self.nonspinnable = False  # RWSEM_NONSPINNABLE
        self._owner_since = 0
        self._owner_subclass = 0
        self._read_holds: dict[int, list[_ReadHold]] = {}  # tid -> holds, most recent last
        self._osq: deque[SimTask] = deque()  # optimistic spinners, FIFO; [0] spins on the owner
        self._poller: SimTask | None = None  # the OSQ head while it waits for the lock to change
        self._watching: SimTask | None = None  # owner whose going to sleep stops the spinners

    # -- state ----------------------------------------------------------------------------------

    def holders(self) -> list[SimTask]:
        """The writer, or the readers in task-id order (deterministic for reports)."""
        if self.owner is not None:
            return [self.owner]
        return [holds[0].task for _tid, holds in sorted(self._read_holds.items())]

    def is_locked(self) -> bool:
        """``rwsem_is_locked``."""
        return self.owner is not None or self.readers > 0

    def is_write_locked(self) -> bool:
        return self.owner is not None

    def nr_waiters(self) -> int:
        """Tasks on the wait list (optimistic spinners are not on it)."""
        return len(self.waitq)

    def _set_writer(self, task: SimTask) -> None:
        """WRITER_LOCKED plus ``rwsem_set_owner``: the owner word loses READER_OWNED/NONSPINNABLE."""
        self.owner = task
        self.reader_owned = False
        self.nonspinnable = False

    def _take_write(self, task: SimTask, subclass: int, wait_start: int | None) -> None:
        """``lock_acquired`` of a write hold, in the task's own context."""
        self._owner_since = self.engine.now
        self._owner_subclass = subclass
        self._acquired(task, self.class_for(subclass).write, wait_start)

    def _grant_read(self, task: SimTask, subclass: int) -> _ReadHold:
        """One READER_BIAS plus ``rwsem_set_reader_owned`` (NONSPINNABLE is kept)."""
        self.readers += 1
        self.reader_owned = True
        hold = _ReadHold(task, subclass, self.engine.now)
        self._read_holds.setdefault(task.tid, []).append(hold)
        return hold

    def _owner_state(self) -> _Owner:
        """``rwsem_owner_state`` from the owner word."""
        if self.owner is not None:
            return _Owner.WRITER
        if self.nonspinnable:
            return _Owner.NONSPINNABLE
        return _Owner.READER if self.reader_owned else _Owner.NULL

    # -- readers ----------------------------------------------------------------------------------

    async def down_read(self, subclass: int = 0) -> None:
        """``down_read`` (``down_read_nested`` with a subclass)."""
        task = self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} takes a read lock on an rwsem it holds for "
                             "write (self-deadlock)")
        self._lockdep_acquire(task, subclass, READ, False)
        cost = self._atomic_cost(task)
        if cost:
            await self.engine.delay(cost)
        side = self.class_for(subclass).read
        if self.owner is None and not self.waitq and not self.handoff:  # rwsem_read_trylock
            self._grant_read(task, subclass)
            self._acquired(task, side, None)
            self._kick()
            return
        self._contended(task, side)
        start = self.engine.now
        hold = await self._down_read_slowpath(task, subclass)
        hold.since = self.engine.now
        self._acquired(task, side, start)

    async def _down_read_slowpath(self, task: SimTask, subclass: int) -> _ReadHold:
        """``rwsem_down_read_slowpath``; returns once this task owns a read hold."""
        events = self.lclass.events
        # rcnt (our bias included) > 1 on a reader-owned lock: queue, so that a stream of readers
        # cannot starve a sleeping writer.  Otherwise try to steal.
        if not self.readers and self.reader_steal and self.owner is None and not self.handoff:
            hold = self._grant_read(task, subclass)
            events["rwsem_rlock_steal"] += 1
            if self.waitq:  # the first reader of this phase brings the queued readers along
                self._mark_wake(_Wake.READ_OWNED)
            self._kick()
            return hold
        if not self.waitq and self.owner is None:
            # The kernel reaches this through races between the fast-path atomic and wait_lock;
            # here every check is atomic, so it only guards an empty queue on a free lock.
            hold = self._grant_read(task, subclass)
            events["rwsem_rlock_fast"] += 1
            self._kick()
            return hold
        if self._wait_lock is not None:  # raw_spin_lock_irq(&sem->wait_lock) to queue
            await self.engine.delay(self._wait_lock.waiter_section(self.engine, task))
        now = self.engine.now
        waiter = _Waiter(task, False, subclass, now, self._wait_timeout(now))
        self.waitq.append(waiter)
        self._cond_wake()  # rwsem_cond_wake_waiter: may grant this very reader
        if waiter.hold is None:
            waiter.blocked = True
            await self.engine.block(self)
            events["rwsem_sleep_reader"] += 1
        assert waiter.hold is not None, "a reader resumed without a grant"
        events["rwsem_rlock"] += 1
        return waiter.hold

    def down_read_trylock(self, subclass: int = 0) -> bool:
        """``down_read_trylock`` (``__down_read_trylock``): fails on a writer, any waiter or HANDOFF.

        Like the kernel it simply fails for the write owner (no deadlock is possible).
        """
        task = self._current()
        if self.owner is not None or self.waitq or self.handoff:
            return False
        self._lockdep_acquire(task, subclass, READ, True)
        self._grant_read(task, subclass)
        self._acquired(task, self.class_for(subclass).read, None)
        self._kick()
        return True

    def up_read(self) -> None:
        """``up_read``: the last reader out wakes the queue (``rwsem_wake``)."""
        task = self._current()
        holds = self._read_holds.get(task.tid)
        if not holds:
            raise LockMisuse(f"{self.name}: {task.name} releases a read lock it does not hold")
        hold = holds.pop()
        if not holds:
            del self._read_holds[task.tid]
        self.readers -= 1
        self._released(task, self.class_for(hold.subclass).read, hold.since)
        self._lockdep_release(task, hold.subclass)
        if not self.readers and self.waitq:  # (count & (LOCK_MASK|WAITERS)) == WAITERS
            self.nonspinnable = False  # clear_nonspinnable: the next phase may be spun on
            self._kick()  # a spinning writer sees the free lock before the waker takes wait_lock
            self._rwsem_wake()
        else:
            self._kick()

    # -- writers ----------------------------------------------------------------------------------

    async def down_write(self, subclass: int = 0) -> None:
        """``down_write`` (``down_write_nested`` with a subclass)."""
        task = self._current()
        if self.owner is task:
            raise LockMisuse(f"{self.name}: {task.name} re-acquires an rwsem it holds for write "
                             "(AA deadlock)")
        if task.tid in self._read_holds:
            raise LockMisuse(f"{self.name}: {task.name} takes a write lock on an rwsem it holds for "
                             "read (self-deadlock)")
        self._lockdep_acquire(task, subclass, WRITE, False)
        cost = self._atomic_cost(task)
        if cost:
            await self.engine.delay(cost)
        if self.owner is None and not self.readers and not self.waitq and not self.handoff:
            self._set_writer(task)  # rwsem_write_trylock: cmpxchg 0 -> WRITER_LOCKED
            self._take_write(task, subclass, None)
            self._kick()
            return
        self._contended(task, self.class_for(subclass).write)
        start = self.engine.now
        await self._down_write_slowpath(task)
        self._take_write(task, subclass, start)

    async def _down_write_slowpath(self, task: SimTask) -> None:
        """``rwsem_down_write_slowpath``; returns once this task owns the lock."""
        engine = self.engine
        events = self.lclass.events
        if self.spin:
            if self._can_spin_on_owner(task):
                if await self._optimistic_spin(task):
                    await self._pick_up()
                    return
            else:
                events["rwsem_opt_fail"] += 1
        wait_lock = self._wait_lock
        if wait_lock is not None:  # raw_spin_lock_irq(&sem->wait_lock) to queue
            await engine.delay(wait_lock.waiter_section(engine, task))
        now = engine.now
        waiter = _Waiter(task, True, 0, now, self._wait_timeout(now))
        self.waitq.append(waiter)
        if self.waitq[0] is not waiter:
            self._cond_wake()  # the lock may be free or reader-owned with readers to wake
        while not self._try_write_lock(waiter):
            if waiter.handoff_set and self._may_spin_on_writer(task):
                # With HANDOFF set, spin on a running owner to take the lock as it is released.
                # Any wake-up means "look again": the retry either takes the lock or we sleep.
                waiter.blocked = waiter.spinning = True
                assert self.owner is not None
                self._watch(self.owner)
                task.resched = self._need_resched
                await engine.block(self, spin=True)
                task.resched = None
                continue
            waiter.blocked = True
            await engine.block(self)
            events["rwsem_sleep_writer"] += 1
            if wait_lock is not None and self.owner is None and not self.readers:
                # 3.10: woken, it sees no active locker and re-takes wait_lock to try the cmpxchg
                # (with one, it would sleep again without it: the loop's sleep below).
                await engine.delay(wait_lock.waiter_section(engine, task))
        events["rwsem_wlock"] += 1

    def _wait_timeout(self, now: int) -> int:
        """``waiter.timeout = jiffies + RWSEM_WAIT_TIMEOUT`` as the last ns at which
        ``time_after(jiffies, waiter.timeout)`` is still false (callers test ``now > timeout``)."""
        if self.handoff_timeout_ns is not None:
            return now + self.handoff_timeout_ns
        hz = self.hz
        timeout = now * hz // NSEC_PER_SEC + -(-hz // 250)  # jiffies + DIV_ROUND_UP(HZ, 250)
        # jiffies > timeout from the first tick of jiffy timeout + 1
        return -(-(timeout + 1) * NSEC_PER_SEC // hz) - 1

    def _try_write_lock(self, waiter: _Waiter) -> bool:
        """``rwsem_try_write_lock``: take a free lock, or set HANDOFF once the waiter timed out."""
        first = self.waitq[0]
        if self.handoff and first.handoff_set and waiter is not first:
            return False
        if self.owner is not None or self.readers:
            if self.handoff or not self.use_handoff or self.engine.now <= waiter.timeout:
                return False
            self.handoff = True
            first.handoff_set = True
            self.lclass.events["rwsem_wlock_handoff"] += 1
            return False
        self.handoff = False
        self.waitq.remove(waiter)  # rwsem_try_write_lock removes the waiter itself
        self._set_writer(waiter.task)
        self._kick()
        return True

    def down_write_trylock(self, subclass: int = 0) -> bool:
        """``down_write_trylock``: cmpxchg 0 -> WRITER_LOCKED; anything at all makes it fail."""
        task = self._current()
        if self.owner is not None or self.readers or self.waitq or self.handoff:
            return False
        self._lockdep_acquire(task, subclass, WRITE, True)
        self._set_writer(task)
        self._take_write(task, subclass, None)
        self._kick()
        return True

    def up_write(self) -> None:
        """``up_write``: clear the owner, then ``rwsem_wake`` if anyone is queued."""
        task = self._current()
        if self.owner is not task:
            holder = self.owner.name if self.owner is not None else "nobody"
            raise LockMisuse(f"{self.name}: {task.name} releases a write lock held by {holder}")
        subclass = self._owner_subclass
        self._released(task, self.class_for(subclass).write, self._owner_since)
        self._lockdep_release(task, subclass)
        self.owner = None  # rwsem_clear_owner: the whole owner word, flags included
        self.reader_owned = False
        self.nonspinnable = False
        self._kick()  # a spinning writer takes the free lock before the waker takes wait_lock
        if self.waitq:
            self._rwsem_wake()

    def downgrade_write(self) -> None:
        """``downgrade_write``: the writer becomes a reader and the queued readers at the head join
        it (``rwsem_downgrade_wake``, ``RWSEM_WAKE_READ_OWNED``); a writer at the head stays queued.

        lock_stat: the write hold ends and a read acquisition (no wait) starts, so each side's hold
        count equals its acquisitions.
        """
        task = self._current()
        if self.owner is not task:
            holder = self.owner.name if self.owner is not None else "nobody"
            raise LockMisuse(f"{self.name}: {task.name} downgrades a write lock held by {holder}")
        subclass = self._owner_subclass
        self._released(task, self.class_for(subclass).write, self._owner_since)
        self.owner = None
        self._grant_read(task, subclass)
        self._acquired(task, self.class_for(subclass).read, None)
        hook = self.engine.hooks.on_lock_downgrade
        if hook is not None:  # lock_downgrade: the held entry becomes a read, no new edges
            hook(task, self.class_for(subclass).key, self.name)
        if self.waitq:
            self._mark_wake(_Wake.READ_OWNED)
        self._kick()

    # -- wake-up -------------------------------------------------------------------------------------

    def _rwsem_wake(self) -> None:
        """``rwsem_wake``: ``rwsem_mark_wake`` of whatever heads the queue, in a ``wait_lock``
        section when it is modelled."""
        if self._wait_lock is None:
            self._mark_wake(_Wake.ANY)
        else:
            self._wait_lock.release(self.engine, self._wake_any)

    def _wake_any(self) -> None:
        self._mark_wake(_Wake.ANY)

    def _cond_wake(self) -> None:
        """``rwsem_cond_wake_waiter``: after queueing, wake what the lock state allows."""
        if self.owner is not None:
            return
        if self.readers:
            self._mark_wake(_Wake.READERS)
        else:
            self.nonspinnable = False  # clear_nonspinnable
            self._mark_wake(_Wake.ANY)

    def _mark_wake(self, wake_type: _Wake) -> None:
        """``rwsem_mark_wake``: wake the head writer, or grant a phase of readers."""
        first = self.waitq[0]
        events = self.lclass.events
        if first.write:
            if wake_type is _Wake.ANY:
                # Only marked for wake-up: until it runs, other writers can steal the lock, while
                # readers block on the queued writer.
                events["rwsem_wake_writer"] += 1
                self._wake_waiter(first, _RETRY)
            return
        if wake_type is not _Wake.READ_OWNED and self.owner is not None:
            # A writer stole the lock before the first reader's grant: bail out, and ask for a
            # handoff if that reader has waited too long.
            if self.use_handoff and self.engine.now > first.timeout:
                if not self.handoff:
                    self.handoff = True
                    events["rwsem_rlock_handoff"] += 1
                first.handoff_set = True
            return
        woken: list[_Waiter] = []
        rest: list[_Waiter] = []
        for waiter in self.waitq:  # phase-fair: readers from anywhere in the queue, skip writers
            if not waiter.write and len(woken) < self.max_readers_wakeup:
                woken.append(waiter)
            else:
                rest.append(waiter)
        self.waitq = rest
        events["rwsem_wake_reader"] += len(woken)
        self.handoff = False  # a reader was woken: writers need no longer be forced out
        for waiter in woken:
            waiter.hold = self._grant_read(waiter.task, waiter.subclass)
            self._wake_waiter(waiter, _GRANTED)
        self._kick()

    def _wake_waiter(self, waiter: _Waiter, verdict: str) -> None:
        """``wake_q_add``: waking a task that is not blocked (it is running towards its retry, or it
        is the caller) changes nothing."""
        if waiter.blocked:
            waiter.blocked = waiter.spinning = False
            task = waiter.task
            if self.costs.wakeup_ns and task.state is TaskState.SLEEPING:
                # wake_up_process: the waker pays a sleeper's try_to_wake_up (a spinner just sees
                # the store); outside a task (a callback) Engine.charge charges nobody
                self.engine.charge(self.costs.wakeup_ns)
            self.engine.wake(task, verdict)

    # -- optimistic spinning ------------------------------------------------------------------------

    def _can_spin_on_owner(self, task: SimTask) -> bool:
        """``rwsem_can_spin_on_owner``."""
        if task.cpu.runq:  # need_resched(): someone else wants this CPU
            return False
        if self.nonspinnable:
            return False
        # A reader-owned lock is spinnable here (the reader entry may be stale); a writer only if
        # it is running.
        return self.owner is None or _on_cpu(self.owner)

    def _may_spin_on_writer(self, task: SimTask) -> bool:
        """``rwsem_spin_on_owner`` would spin: a writer owns the lock and runs, this CPU is not wanted."""
        return self.owner is not None and _on_cpu(self.owner) and not task.cpu.runq

    def _rspin_threshold(self) -> int:
        """``rwsem_rspin_threshold``: (20 + readers) * NSEC_PER_USEC / 2, readers capped at 30."""
        return (20 + min(self.readers, 30)) * 1000 // 2

    def _try_write_lock_unqueued(self, task: SimTask) -> bool:
        """``rwsem_try_write_lock_unqueued``: writer lock stealing past the queue, unless HANDOFF."""
        if self.owner is not None or self.readers or self.handoff:
            return False
        self._set_writer(task)
        self.lclass.events["rwsem_opt_lock"] += 1
        return True

    async def _optimistic_spin(self, task: SimTask) -> bool:
        """``rwsem_optimistic_spin``: True if the lock was taken while spinning.

        Spinners queue on the OSQ (``osq_lock``); only its head looks at the lock.  The head spins
        while a writer owner runs, until the lock changes; on a reader-owned lock until the readers
        leave or the reader spin threshold passes (then NONSPINNABLE); on a free lock it cannot take
        (HANDOFF), until the lock changes.
        """
        engine = self.engine
        self._osq.append(task)
        task.resched = self._need_resched
        try:
            # Spin on our MCS node until we head the OSQ (osq_lock), or until this CPU is wanted:
            # osq_lock unqueues on need_resched() and the spin fails.
            if self._osq[0] is not task and await engine.block(self, spin=True) == _OSQ_UNQUEUE:
                self.lclass.events["rwsem_opt_fail"] += 1
                return False
            return await self._spin_as_osq_head(task)
        finally:
            task.resched = None

    async def _spin_as_osq_head(self, task: SimTask) -> bool:
        """The OSQ head's loop of ``rwsem_optimistic_spin``; hands the OSQ on when it leaves."""
        engine = self.engine
        taken = False
        prev = _Owner.NULL
        deadline = 0
        while True:
            state = self._owner_state()
            if state is _Owner.WRITER and not self._may_spin_on_writer(task):
                break  # the owner sleeps (or is not on a CPU), or this CPU is wanted
            if state is _Owner.NONSPINNABLE:
                break
            if self._try_write_lock_unqueued(task):
                taken = True
                break
            if state is _Owner.READER:
                if prev is not _Owner.READER:
                    # A new reader phase restarts the clock: a writer may steal the lock between
                    # two reader phases and spin afresh on the second one.
                    deadline = engine.now + self._rspin_threshold()
                elif engine.now >= deadline:
                    self.nonspinnable = True  # rwsem_set_nonspinnable (the owner word is reader-owned)
                    self.lclass.events["rwsem_opt_nospin"] += 1
                    break
            if state is not _Owner.WRITER and task.cpu.runq:
                break
            prev = state
            if await self._spin_wait(task, state, deadline) == _GRANTED:
                taken = True
                break
        self._osq.popleft()  # osq_unlock: the next spinner in line heads the OSQ
        if self._osq:
            engine.wake(self._osq[0], _OSQ_HEAD)
        if not taken:
            self.lclass.events["rwsem_opt_fail"] += 1
        return taken

    async def _spin_wait(self, task: SimTask, state: _Owner, deadline: int) -> object:
        """Burn the CPU until the lock word changes (:meth:`_kick`), the owning writer sleeps, or,
        on a reader-owned lock, the spin threshold passes."""
        if state is _Owner.WRITER:
            assert self.owner is not None
            self._watch(self.owner)
        self._poller = task
        timeout = deadline - self.engine.now if state is _Owner.READER else None
        verdict = await self.engine.block(self, spin=True, timeout_ns=timeout)
        self._poller = None  # a timeout resumes the spinner without a kick
        return verdict

    def _need_resched(self, task: SimTask) -> None:
        """A task became runnable on a spinner's CPU.  The spin loops poll ``need_resched()``: the
        OSQ head and a HANDOFF waiter look again (and stop spinning); a spinner still queued on the
        OSQ unqueues (``osq_lock``) and its optimistic spin fails."""
        if self._poller is task:
            self._poller = None
            self.engine.wake(task, _CHANGED)
        elif self.waitq and self.waitq[0].task is task and self.waitq[0].spinning:
            self._wake_waiter(self.waitq[0], _CHANGED)
        elif task in self._osq and self._osq[0] is not task:
            self._osq.remove(task)
            self.engine.wake(task, _OSQ_UNQUEUE)

    def _kick(self) -> None:
        """The lock word changed: the spinners polling it look again.

        The OSQ head takes a free lock at once (``rwsem_try_write_lock_unqueued`` from its spin
        loop), ahead of a releasing task's ``rwsem_wake``, which must first take ``wait_lock``.
        """
        head = self._poller
        if head is not None:
            self._poller = None
            self.engine.wake(head, _GRANTED if self._try_write_lock_unqueued(head) else _CHANGED)
        if self.waitq:
            first = self.waitq[0]
            if first.spinning:
                self._wake_waiter(first, _CHANGED)

    def _watch(self, owner: SimTask) -> None:
        if self._watching is not owner:
            if self._watching is not None:
                self.engine.unwatch_sleep(self._watching, self._owner_sleeps)
            self._watching = owner
            self.engine.watch_sleep(owner, self._owner_sleeps)

    def _owner_sleeps(self, owner: SimTask) -> None:
        """``owner_on_cpu()`` turned false: ``rwsem_spin_on_owner`` returns OWNER_NONSPINNABLE."""
        self._watching = None
        if self.owner is not owner:
            return  # a stale watch: that task no longer owns this lock
        head = self._poller
        if head is not None:
            self._poller = None
            self.engine.wake(head, _CHANGED)
        if self.waitq and self.waitq[0].spinning:
            self._wake_waiter(self.waitq[0], _CHANGED)
