"""A ``perf lock contention``-style summary, from a run's lock class records.

Mirrors tools/perf/builtin-lock.c in caller mode (``LOCK_AGGR_CALLER``): the header
(``%*s `` per output field, then ``  %10s   %s`` for ``type`` and ``caller`` and a blank line),
one row per entry (each field then a space, then ``  %10s   %s``), fields ``contended`` (width
10) and ``total wait`` / ``max wait`` / ``avg wait`` (width 12; ``min wait`` only when it is the
sort key, as ``select_key`` adds it), times through ``lock_stat_key_print_time`` (``192.67 us``,
``13.64 ms``, integer ``ns`` below 1 µs), rows sorted by the key descending, rows without wait
time skipped, ``-E`` limiting the rows printed.

The type column is perf's lock type string (``rwsem:W``, ``rwsem:R``, ``spinlock``, ``mutex``;
the simulator's other kinds print as ``kind`` or ``kind:R``/``kind:W``).  The caller is the
simulated operation that waited.  A row is one (lock class, side, contention point) when the
record carries per-point wait times (``contention_point_wait``); records that carry only per-side
wait totals give one row per (lock class, side), with every operation that waited named in the
caller column, most frequent first, rather than dividing one total among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reports.common import LockInput, Results, as_lock_classes, check_results, perf_time

__all__ = ["DEFAULT_KEY", "KEYS", "ContentionRow", "contention_rows", "format_contention", "perf_lock_text"]

# contention_keys[] in builtin-lock.c: name -> (header, width); the default output fields are all
# but wait_min, in this order.
_FIELDS: dict[str, tuple[str, int]] = {
    "contended": ("contended", 10),
    "wait_total": ("total wait", 12),
    "wait_max": ("max wait", 12),
    "wait_min": ("min wait", 12),
    "avg_wait": ("avg wait", 12),
}
KEYS = tuple(_FIELDS)
DEFAULT_KEY = "wait_total"
_DEFAULT_FIELDS = ("contended", "wait_total", "wait_max", "avg_wait")


@dataclass(frozen=True)
class ContentionRow:
    lock: str
    type: str
    caller: str
    contended: int
    wait_total: int
    wait_max: int
    wait_min: int

    @property
    def avg_wait(self) -> int:
        # perf: st->avg_wait_time = st->wait_time_total / st->nr_contended (u64 division)
        return self.wait_total // self.contended if self.contended else 0

    def value(self, key: str) -> int:
        return int(getattr(self, key))


def _type_str(kind: str, rw: bool, side: str) -> str:
    if kind in ("spinlock", "mutex") and not rw:
        return kind
    mode = "R" if side == "read" else "W"
    return f"{kind}:{mode}" if rw else kind


def contention_rows(locks: Sequence[LockInput]) -> list[ContentionRow]:
    """The entries perf would aggregate, unsorted: per (class, side[, contention point])."""
    rows: list[ContentionRow] = []
    for lock in as_lock_classes(locks):
        for side_name, side in lock.sides():
            if not side.contentions:
                continue
            typ = _type_str(lock.kind, lock.rw, side_name)
            per_point = side.contention_point_wait
            if per_point:
                for op in sorted(per_point):
                    pw = per_point[op]
                    rows.append(ContentionRow(lock.name, typ, op, pw.contentions, pw.waittime_total_ns,
                                              pw.waittime_max_ns, pw.waittime_min_ns))
                continue
            points = sorted(side.contention_points.items(), key=lambda kv: (-kv[1], kv[0]))
            caller = ",".join(op for op, n in points if n > 0) or "-"
            rows.append(ContentionRow(lock.name, typ, caller, side.contentions, side.waittime_total_ns,
                                      side.waittime_max_ns, side.waittime_min_ns))
    return rows


def format_contention(locks: Sequence[LockInput], *, key: str = DEFAULT_KEY,
                      entries: int | None = None) -> str:
    """``perf lock contention -k KEY -E ENTRIES`` output for a run's lock class records.

    ``entries`` None prints every row; the caller column names the lock class too
    (``anon_vma->rwsem fork``) because a simulated operation takes many locks.
    """
    if key not in _FIELDS:
        raise ValueError(f"unknown sort key {key!r}; allowed: {', '.join(KEYS)}")
    if entries is not None and entries < 0:
        raise ValueError(f"entries must be >= 0, got {entries}")
    fields = list(_DEFAULT_FIELDS)
    if key not in fields:
        fields.append(key)  # select_key(): the sort key is always shown, at the end
    rows = [r for r in contention_rows(locks) if r.wait_total]  # perf skips !wait_time_total
    # insert_to_result() keeps equal keys in insertion order; ours is class, side, caller.
    rows.sort(key=lambda r: (-r.value(key), r.lock, r.type, r.caller))
    if entries is not None:
        rows = rows[:entries]
    out = "".join(f"{_FIELDS[f][0]:>{_FIELDS[f][1]}} " for f in fields)
    out += f"  {'type':>10}   caller\n\n"
    for row in rows:
        line = ""
        for f in fields:
            _, width = _FIELDS[f]
            cell = f"{row.contended:{width}d}" if f == "contended" else perf_time(row.value(f), width)
            line += cell + " "
        line += f"  {row.type:>10}   {row.lock} {row.caller}\n"
        out += line
    return out


def perf_lock_text(results: Results, *, key: str = DEFAULT_KEY, entries: int | None = None) -> str:
    """perf_lock.txt: one summary per design, each after a ``# design:`` comment line."""
    parts = []
    for run in check_results(results).runs:
        parts.append(f"# design: {run.design} (scenario {run.scenario})\n"
                     + format_contention(run.lock_classes(), key=key, entries=entries))
    return "\n".join(parts)
