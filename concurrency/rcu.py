"""RCU: read-side sections, grace periods and deferred callbacks/frees, after kernel/rcu/tree.c.

* ``rcu_read_lock`` / ``rcu_read_unlock`` (include/linux/rcupdate.h) nest per task
  (``task.rcu_depth``) and cost nothing; lockdep sees a recursive reader (``read=2``) of the class
  ``rcu_read_lock``.  Sleeping inside a section is what the kernel reports as "Voluntary context
  switch within RCU read-side critical section!"; the engine records it in ``engine.rcu_sleeps``.
* A grace period (``rcu_gp_init`` .. ``rcu_gp_cleanup``) starts when a request needs one and none
  is running.  It ends when every task that was inside a read-side section at its start has left
  that section, and not before ``gp_min_ns`` has passed (the quiescent-state reporting through
  ticks and context switches that makes a real GP last milliseconds even with no readers).
* A request made while a GP is running needs the *next* GP (``rcu_seq_snap``): readers that began
  after the running GP started are not covered by it.  When a GP ends, the requests it satisfies
  complete in the order made, and a new GP starts at once if requests are left.
* ``synchronize_rcu`` sleeps until its GP ends; ``call_rcu(fn, *args)`` runs ``fn`` after it (in
  callback context, like RCU_SOFTIRQ / rcuc); ``kfree_rcu`` / ``kvfree_rcu`` free after it.
  mm/slab_common.c batches kfree_rcu for up to ``KFREE_DRAIN_JIFFIES`` (5 s since v6.0, HZ/50 once
  a page of pointers fills) before asking for a GP; ``kfree_batch_ns`` models that delay
  (default 0: straight to the GP queue).

Deferred memory is reported: ``pending_free_bytes`` (waiting for a GP), ``max_pending_free_bytes``
and per-object-kind ``pending_by_desc``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from concurrency.histogram import LatencyHistogram
from concurrency.lock import RECURSIVE_READ, LockMisuse

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask
    from records.result import JsonObject

__all__ = ["DEFAULT_GP_MIN_NS", "Rcu"]

# ASSUME: a normal (non-expedited) grace period on an idle-to-moderately-busy HZ=1000 server lasts
# a few ms (a few ticks for every CPU to report a quiescent state); the mm cost model overrides it
# (its T_gp).  "synchronize_rcu can take hundreds of milliseconds" under load [N6].
DEFAULT_GP_MIN_NS = 3_000_000

_SYNC = 0
_CALLBACK = 1
_FREE = 2


class Rcu:
    """The run's RCU flavour (one per engine).  Also the Waitable that ``synchronize_rcu`` sleeps
    on: its "holders" are the readers the running grace period waits for."""

    name = "rcu_gp"

    def __init__(self, engine: Engine, *, gp_min_ns: int = DEFAULT_GP_MIN_NS,
                 kfree_batch_ns: int = 0) -> None:
        if gp_min_ns < 0 or kfree_batch_ns < 0:
            raise ValueError("gp_min_ns and kfree_batch_ns must be >= 0")
        self.engine = engine
        self.gp_min_ns = gp_min_ns
        self.kfree_batch_ns = kfree_batch_ns
        # Read sections appear in lock_stat as the read side of "rcu_read_lock".
        self.lclass = engine.lock_class("rcu_read_lock", "rcu", rw=True)
        self.lclass.instances += 1
        self._readers: dict[SimTask, int] = {}  # task in a section -> outermost section start
        self._holdouts: dict[SimTask, None] = {}  # readers the running GP waits for
        self.gp_in_progress = False
        self.gp_start_ns = 0
        self._gp_timer_done = False
        self._gp_end_queued = False
        self._gp_start_queued = False
        # (GP number that satisfies it, kind, payload) in request order; GP numbers never decrease.
        # The kind tags the payload (the task to wake, (fn, args), or a kfree item): mypy cannot
        # narrow a union by a separate tag, so the payload stays Any rather than be re-checked.
        self._requests: deque[tuple[int, int, Any]] = deque()
        self._kfree_batch: list[tuple[str, int, Callable[[], None] | None]] = []
        # statistics
        self.gp_count = 0  # completed grace periods
        self.gp_ns = LatencyHistogram()  # grace-period lengths
        self.read_sections = 0  # outermost rcu_read_lock
        self.read_locks = 0  # every rcu_read_lock, nested ones included
        self.synchronize_calls = 0
        self.sync_wait = LatencyHistogram()  # how long synchronize_rcu slept
        self.callbacks_queued = 0
        self.callbacks_invoked = 0
        self.kfree_calls = 0
        self.frees_done = 0
        self.freed_bytes = 0
        self.pending_free_bytes = 0
        self.max_pending_free_bytes = 0
        self.pending_by_desc: Counter[str] = Counter()

    # -- Waitable ----------------------------------------------------------------------------------

    def holders(self) -> list[SimTask]:
        return list(self._holdouts)

    def readers(self) -> list[SimTask]:
        """Tasks inside a read-side section now."""
        return list(self._readers)

    # -- read side -------------------------------------------------------------------------------

    def rcu_read_lock(self) -> None:
        """``rcu_read_lock``: enter (or nest) a read-side critical section."""
        engine = self.engine
        task = engine.current
        if task is None:
            raise LockMisuse("rcu_read_lock outside a simulated task")
        depth = task.rcu_depth
        task.rcu_depth = depth + 1
        self.read_locks += 1
        if not depth:
            self._readers[task] = engine.now
            self.read_sections += 1
            self.lclass.read.acquisitions += 1
        hook = engine.hooks.on_lock_acquire
        if hook is not None:
            hook(task, self.lclass.key, RECURSIVE_READ, False, "rcu_read_lock")

    def rcu_read_unlock(self) -> None:
        """``rcu_read_unlock``: leave the section; the last holdout out may end the GP."""
        engine = self.engine
        task = engine.current
        if task is None:
            raise LockMisuse("rcu_read_unlock outside a simulated task")
        depth = task.rcu_depth
        if depth <= 0:
            raise LockMisuse(f"rcu_read_unlock by {task.name} outside an RCU read-side section")
        hook = engine.hooks.on_lock_release
        if hook is not None:
            hook(task, self.lclass.key, "rcu_read_lock")
        task.rcu_depth = depth - 1
        if depth > 1:
            return
        since = self._readers.pop(task)
        self.lclass.read.hold.record(engine.now - since)
        holdouts = self._holdouts
        if task in holdouts:
            del holdouts[task]
            if not holdouts and self._gp_timer_done and not self._gp_end_queued:
                # End the GP from the engine loop, not inside this task: callbacks then run in
                # callback context, as they do in RCU_SOFTIRQ.
                self._gp_end_queued = True
                engine.call_at(engine.now, self._end_gp)

    # -- update side -----------------------------------------------------------------------------

    async def synchronize_rcu(self) -> None:
        """``synchronize_rcu``: sleep until a full grace period has passed since the call."""
        engine = self.engine
        task = engine.current
        if task is None:
            raise LockMisuse("synchronize_rcu outside a simulated task")
        if task.rcu_depth:
            raise LockMisuse(f"{task.name}: illegal synchronize_rcu() in RCU read-side critical "
                             f"section (it would wait for itself)")
        self.synchronize_calls += 1
        start = engine.now
        self._request(_SYNC, task)
        await engine.block(self)
        self.sync_wait.record(engine.now - start)

    def call_rcu(self, fn: Callable[..., None], *args: object) -> None:
        """``call_rcu``: run ``fn(*args)`` after a grace period (from callback context)."""
        self.callbacks_queued += 1
        self._request(_CALLBACK, (fn, args))

    def kfree_rcu(self, obj_desc: str, nbytes: int, on_free: Callable[[], None] | None = None) -> None:
        """``kfree_rcu`` / ``kvfree_rcu``: free ``nbytes`` of ``obj_desc`` after a grace period;
        ``on_free`` runs when the memory is actually freed."""
        if nbytes < 0:
            raise ValueError(f"kfree_rcu of {obj_desc}: negative size {nbytes}")
        self.kfree_calls += 1
        self.pending_free_bytes += nbytes
        if self.pending_free_bytes > self.max_pending_free_bytes:
            self.max_pending_free_bytes = self.pending_free_bytes
        self.pending_by_desc[obj_desc] += nbytes
        item = (obj_desc, nbytes, on_free)
        if not self.kfree_batch_ns:
            self._request(_FREE, item)
            return
        # kvfree_call_rcu: the object joins this CPU's batch; the monitor work hands the batch to
        # RCU (queue_rcu_work) when it fires.
        if not self._kfree_batch:
            self.engine.call_at(self.engine.now + self.kfree_batch_ns, self._flush_kfree_batch)
        self._kfree_batch.append(item)

    def _flush_kfree_batch(self) -> None:
        batch = self._kfree_batch
        self._kfree_batch = []
        for item in batch:
            self._request(_FREE, item)

    # -- grace-period machinery ----------------------------------------------------------------------

    def _request(self, kind: int, payload: Any) -> None:
        # rcu_seq_snap: the next GP to *start* is the first one that covers this request.
        target = self.gp_count + (2 if self.gp_in_progress else 1)
        self._requests.append((target, kind, payload))
        if not self.gp_in_progress and not self._gp_start_queued:
            # rcu_gp_kthread_wake: the GP kthread starts the GP a moment later, so requests made
            # at the same instant share it.
            self._gp_start_queued = True
            self.engine.call_at(self.engine.now, self._start_gp)

    def _start_gp(self) -> None:
        """``rcu_gp_init``: snapshot the readers this GP must wait for and arm its minimum."""
        engine = self.engine
        self._gp_start_queued = False
        self.gp_in_progress = True
        self.gp_start_ns = engine.now
        self._holdouts = dict.fromkeys(self._readers)
        self._gp_timer_done = False
        engine.call_at(engine.now + self.gp_min_ns, self._gp_timer)

    def _gp_timer(self) -> None:
        self._gp_timer_done = True
        if not self._holdouts:
            self._end_gp()
            return
        for task in self._holdouts:
            if task.done:
                raise LockMisuse(f"task {task.name!r} exited inside an RCU read-side critical section")

    def _end_gp(self) -> None:
        """``rcu_gp_cleanup`` then callback invocation: complete every satisfied request in order,
        and start the next GP if requests remain."""
        engine = self.engine
        self._gp_end_queued = False
        self.gp_in_progress = False
        self.gp_count += 1
        self.gp_ns.record(engine.now - self.gp_start_ns)
        requests = self._requests
        done = self.gp_count
        while requests and requests[0][0] <= done:
            _target, kind, payload = requests.popleft()
            if kind == _SYNC:
                engine.wake(payload)
            elif kind == _CALLBACK:
                fn, args = payload
                self.callbacks_invoked += 1
                fn(*args)
            else:
                desc, nbytes, on_free = payload
                self.pending_free_bytes -= nbytes
                self.freed_bytes += nbytes
                self.frees_done += 1
                left = self.pending_by_desc[desc] - nbytes
                if left:
                    self.pending_by_desc[desc] = left
                else:
                    del self.pending_by_desc[desc]
                if on_free is not None:
                    on_free()
        if requests and not self.gp_in_progress and not self._gp_start_queued:
            self._start_gp()

    # -- results ---------------------------------------------------------------------------------------

    def to_dict(self) -> JsonObject:
        return {
            "gp_min_ns": self.gp_min_ns,
            "gp_count": self.gp_count,
            "gp_ns": self.gp_ns.summary(),
            "read_sections": self.read_sections,
            "read_locks": self.read_locks,
            "read_section_ns": self.lclass.read.hold.summary(),
            "synchronize_calls": self.synchronize_calls,
            "sync_wait_ns": self.sync_wait.summary(),
            "callbacks_queued": self.callbacks_queued,
            "callbacks_invoked": self.callbacks_invoked,
            "kfree_calls": self.kfree_calls,
            "frees_done": self.frees_done,
            "freed_bytes": self.freed_bytes,
            "pending_free_bytes": self.pending_free_bytes,
            "max_pending_free_bytes": self.max_pending_free_bytes,
            "pending_by_desc": dict(sorted(self.pending_by_desc.items())),
            "sleeps_in_read_section": len(self.engine.rcu_sleeps),
        }
