"""Lock statistics in /proc/lock_stat's shape, per lock class and per read/write side.

Mirrors CONFIG_LOCK_STAT (kernel/locking/lockdep.c ``__lock_contended``/``__lock_acquired``,
printed by kernel/locking/lockdep_proc.c):

* ``contentions``: acquisitions that had to wait; the wait time is recorded only for them;
* ``acquisitions``: successful acquisitions; the hold time is recorded for each at release;
* ``con_bounces`` / ``acq_bounces``: a contention / acquisition where the lock was last acquired
  on another CPU (``lock->cpu != smp_processor_id()``), i.e. the cache line moved;
* contention points: the operation that waited; contending points: the operation holding the lock
  when someone had to wait for it (the kernel's "contending" call sites).

Beyond lock_stat: each side's wait is split by what the waiter did meanwhile (``wait_spin_ns``:
spinning on its CPU, which burns it; ``wait_sleep_ns``: asleep, its CPU free for other tasks; the
rest: woken and waiting to run again, the context switch back, the lock's pick-up), because wait
time as a share of CPU time is CPU burned only for the spinning part.

Wait and hold times also go into :class:`LockTimeHistogram` in integer ns.  The kernel's lock event
counters (CONFIG_LOCK_EVENT_COUNTS, kernel/locking/lock_events_list.h) live in ``events``.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from concurrency.histogram import LockTimeHistogram, Tally

if TYPE_CHECKING:
    from records.result import JsonObject

__all__ = ["LockClass", "LockSideStats"]


class _PointWait:
    """One contention point's waits: count, total, max and min ns (native fields, updated in place:
    a list of four ints made a new int object per field per wait)."""

    __slots__ = ("max_ns", "min_ns", "total_ns", "waits")

    def __init__(self, waited: int) -> None:
        self.waits = 1
        self.total_ns = waited
        self.max_ns = waited
        self.min_ns = waited


class LockSideStats:
    __slots__ = ("acq_bounces", "acquisitions", "con_bounces", "contending_points",
                 "contention_points", "contentions", "hold", "key", "mode", "point_wait", "wait",
                 "wait_sleep_ns", "wait_spin_ns")

    def __init__(self, mode: str, key: str = "") -> None:
        self.mode = mode  # "R" or "W"
        self.key = key  # the class key, with its subclass ("ptl/1")
        # per contention point (operation): its waits, for perf-lock rows
        self.point_wait: dict[str, _PointWait] = {}
        self.contentions = 0
        self.con_bounces = 0
        self.acq_bounces = 0
        self.acquisitions = 0
        self.wait = LockTimeHistogram()
        self.wait_spin_ns = 0  # the part of the recorded waits spent spinning (CPU burned)
        self.wait_sleep_ns = 0  # the part spent asleep (CPU given up)
        self.hold = LockTimeHistogram()
        # Plain dicts, not Counters: a Counter's ``+=`` goes through Python-level __setitem__ dispatch
        # (it defines __delitem__), a third of a contention's bookkeeping on the compiled build.
        self.contention_points: dict[str, Tally] = {}
        self.contending_points: dict[str, Tally] = {}

    # -- recording: what lock_contended / lock_acquired / release note ------------------------

    def note_contended(self, op: str, bounce: bool, holder_ops: list[str]) -> None:
        self.contentions += 1
        if bounce:
            self.con_bounces += 1
        # Written out, not a helper called per point: a call each is what the pure-Python build feels.
        tally = self.contention_points.get(op)
        if tally is None:
            tally = self.contention_points[op] = Tally()
        tally.n += 1
        for holder_op in holder_ops:
            tally = self.contending_points.get(holder_op)
            if tally is None:
                tally = self.contending_points[holder_op] = Tally()
            tally.n += 1

    def note_acquired(self, op: str, bounce: bool, waited: int | None, spun: int = 0, slept: int = 0) -> None:
        """``lock_acquired``; ``spun`` and ``slept``: the parts of ``waited`` spent spinning and asleep."""
        if bounce:
            self.acq_bounces += 1
        self.acquisitions += 1
        if waited is not None:
            self.wait.record(waited)
            self.wait_spin_ns += spun
            self.wait_sleep_ns += slept
            point = self.point_wait.get(op)
            if point is None:
                self.point_wait[op] = _PointWait(waited)
            else:
                point.waits += 1
                point.total_ns += waited
                if waited > point.max_ns:
                    point.max_ns = waited
                elif waited < point.min_ns:
                    point.min_ns = waited

    def to_dict(self) -> JsonObject:
        return {
            "con_bounces": self.con_bounces,
            "contentions": self.contentions,
            "waittime_min_ns": self.wait.min_ns,
            "waittime_max_ns": self.wait.max_ns,
            "waittime_total_ns": self.wait.total_ns,
            "waittime_spin_ns": self.wait_spin_ns,
            "waittime_sleep_ns": self.wait_sleep_ns,
            "acq_bounces": self.acq_bounces,
            "acquisitions": self.acquisitions,
            "holdtime_min_ns": self.hold.min_ns,
            "holdtime_max_ns": self.hold.max_ns,
            "holdtime_total_ns": self.hold.total_ns,
            "wait_overflow": self.wait.overflow,
            "hold_overflow": self.hold.overflow,
            "contention_points": _by_count(self.contention_points),
            "contending_points": _by_count(self.contending_points),
            "contention_point_wait": {
                op: {"contentions": w.waits, "waittime_total_ns": w.total_ns, "waittime_max_ns": w.max_ns,
                     "waittime_min_ns": w.min_ns}
                for op, w in sorted(self.point_wait.items())
            },
            "wait_hist": self.wait.encode() if self.wait.count else "",
            "hold_hist": self.hold.encode() if self.hold.count else "",
        }



def _by_count(points: dict[str, Tally]) -> JsonObject:
    """Contention points, most frequent first (lock_stat's order), then by name."""
    pairs = sorted(((op, tally.n) for op, tally in points.items()), key=lambda kv: (-kv[1], kv[0]))
    return dict(pairs)


class LockClass:
    """A lockdep/lock_stat class: every instance initialised from one site shares it.

    ``name`` is the kernel's class name (``mm->mmap_lock``, ``anon_vma->rwsem``, ``ptl``);
    ``subclass`` is the ``*_nested()`` subclass, printed as ``name/1`` like lock_stat does.
    """

    __slots__ = ("events", "instances", "kind", "name", "read", "rw", "subclass", "write")

    def __init__(self, name: str, kind: str, *, rw: bool, subclass: int = 0) -> None:
        self.name = name
        self.kind = kind
        self.rw = rw
        self.subclass = subclass
        key = f"{name}/{subclass}" if subclass else name
        self.read = LockSideStats("R", key)
        self.write = LockSideStats("W", key)
        self.events: Counter[str] = Counter()
        self.instances = 0

    @property
    def key(self) -> str:
        return f"{self.name}/{self.subclass}" if self.subclass else self.name

    def to_dict(self) -> JsonObject:
        out: JsonObject = {"name": self.key, "kind": self.kind, "rw": self.rw,
                               "instances": self.instances, "write": self.write.to_dict()}
        if self.rw:
            out["read"] = self.read.to_dict()
        out["events"] = dict(sorted(self.events.items()))
        return out
