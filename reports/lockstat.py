"""A lock_stat table in /proc/lock_stat's exact layout, from a run's lock class records.

Mirrors kernel/locking/lockdep_proc.c (CONFIG_LOCK_STAT): ``seq_header`` (version line, dash
lines of width 40 + 1 + 12 x 15, ``%40s`` + 12 x ``%14s`` column titles), ``seq_stats`` (one
``%40s:`` row per class, or ``%38s-W:`` / ``%38s-R:`` rows when both sides were acquired; the
class name cut to 37 characters, 35 with a ``/N`` subclass suffix), ``seq_lock_time`` /
``snprint_time`` (ns printed as µs with two decimals, rounded by adding 5 ns first), up to
``LOCKSTAT_POINTS`` = 4 contention points and 4 contending points per class after a short dash
line, the dot separator after a class that has contending points, and ``lock_stat_cmp``'s order:
read + write contentions, descending.

What stands in for the kernel's call sites: a contention point is the simulated operation that
waited (``task.op``), a contending point the operation holding the lock at that moment; the
``[<%p>]`` column shows a stable digest of the operation's name (the kernel hashes pointers too)
and the symbol column the operation itself.  The kernel counts points per class, so the read and
write sides' points are added.

Denominators: the ``-avg`` columns divide each side's recorded total by the number of samples
behind it (the HDR histogram's count), as ``div_s64(lt->total, lt->nr)`` does; a wait still in
progress when the run ended has no sample and no total.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from records.result import LockClass, LockSide
from reports.common import LockInput, Results, as_lock_classes, check_results, decode_hdr, pseudo_address

__all__ = ["LOCKSTAT_POINTS", "format_lockstat", "lockstat_text", "snprint_time"]

LOCKSTAT_POINTS = 4
_WIDTH = 40 + 1 + 12 * (14 + 1)
_COLUMNS = ("con-bounces", "contentions", "waittime-min", "waittime-max", "waittime-total", "waittime-avg",
            "acq-bounces", "acquisitions", "holdtime-min", "holdtime-max", "holdtime-total", "holdtime-avg")


def _c_div(n: int, d: int) -> tuple[int, int]:
    """C's truncating division and remainder (``div_s64_rem``)."""
    q = abs(n) // abs(d)
    if (n < 0) != (d < 0):
        q = -q
    return q, n - q * d


def snprint_time(ns: int) -> str:
    """``snprint_time``: ``nr += 5; div = nr / 1000; "%lld.%02d" % (div, rem / 10)``."""
    div, rem = _c_div(ns + 5, 1000)
    tenths, _ = _c_div(rem, 10)
    return f"{div}.{tenths:02d}"


def _seq_line(c: str, offset: int, length: int) -> str:
    return " " * offset + c * length + "\n"


def _header() -> str:
    out = "lock_stat version 0.4\n"
    out += _seq_line("-", 0, _WIDTH)
    out += f"{'class name':>40}" + "".join(f" {col:>14}" for col in _COLUMNS) + "\n"
    out += _seq_line("-", 0, _WIDTH)
    out += "\n"
    return out


def _samples(blob: str, fallback: int) -> int:
    hist = decode_hdr(blob)
    return int(hist.get_total_count()) if hist is not None else fallback


def _lock_time(nr: int, mn: int, mx: int, total: int, samples: int) -> str:
    """``seq_lock_time``: ``%14lu`` count, then min, max, total and avg as `` %14s`` times."""
    avg = _c_div(total, samples)[0] if samples else 0
    return f"{nr:14d}" + "".join(f" {snprint_time(t):>14}" for t in (mn, mx, total, avg))


def _side_row(label: str, side: LockSide) -> str:
    wait_n = side.contentions
    hold_n = side.acquisitions
    row = label
    row += f"{side.con_bounces:14d} "
    row += _lock_time(wait_n, side.waittime_min_ns, side.waittime_max_ns, side.waittime_total_ns,
                      _samples(side.wait_hist, wait_n))
    row += f" {side.acq_bounces:14d} "
    row += _lock_time(hold_n, side.holdtime_min_ns, side.holdtime_max_ns, side.holdtime_total_ns,
                      _samples(side.hold_hist, hold_n))
    return row + "\n"


def _class_name(key: str) -> str:
    """The name as ``seq_stats`` builds it: cut to ``namelen - 1`` chars, then ``/N`` appended."""
    m = re.fullmatch(r"(.*)/(\d+)", key)
    base, sub = (m.group(1), int(m.group(2))) if m else (key, 0)
    namelen = 38 - (2 if sub else 0)
    name = base[: namelen - 1]
    if sub:
        name += f"/{sub}"[:2]  # snprintf(name+namelen, 3, "/%d"): two characters at most
    return name


def _points(lock: LockClass, field: str) -> list[tuple[str, int]]:
    total: Counter[str] = Counter()
    for side in (lock.write, lock.read):
        if side is not None:
            points = side.contention_points if field == "contention_points" else side.contending_points
            for op, n in points.items():
                total[op] += n
    ranked = sorted(((op, n) for op, n in total.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))
    return ranked[:LOCKSTAT_POINTS]


def _contentions(lock: LockClass) -> int:
    return sum(side.contentions for side in (lock.write, lock.read) if side is not None)


def _class_block(lock: LockClass) -> str:
    """``seq_stats`` for one lock class."""
    name = _class_name(lock.name)
    write = lock.write
    read = lock.read if lock.rw else None
    w_nr = write.acquisitions
    r_nr = read.acquisitions if read is not None else 0
    out = ""
    if w_nr:
        out += _side_row(f"{name:>38}-W:" if r_nr else f"{name:>40}:", write)
    if read is not None and r_nr:
        out += _side_row(f"{name:>38}-R:", read)
    if not out or _contentions(lock) == 0:
        return out
    namelen = len(name) + (2 if r_nr else 0)
    printed = 0
    for field in ("contention_points", "contending_points"):
        printed = 0
        for op, n in _points(lock, field):
            if not printed:
                out += _seq_line("-", 40 - namelen, namelen)
            out += f"{name:>40} {n:14d} {'[<' + pseudo_address(op) + '>]':>29} {op}\n"
            printed += 1
    if printed:  # the kernel tests the contending loop's index here
        out += "\n" + _seq_line(".", 0, _WIDTH) + "\n"
    return out


def format_lockstat(locks: Sequence[LockInput]) -> str:
    """One /proc/lock_stat table for a run's lock class records (``record["locks"]``)."""
    # lock_stat_cmp: read + write contentions, descending; the kernel's sort() is not stable,
    # so ties are broken by class name to keep the output reproducible.
    ordered = sorted(as_lock_classes(locks), key=lambda lk: (-_contentions(lk), lk.name))
    return _header() + "".join(_class_block(lk) for lk in ordered)


def lockstat_text(results: Results) -> str:
    """lockstat.txt: one table per design, each after a ``# design:`` comment line."""
    parts = []
    for run in check_results(results).runs:
        parts.append(f"# design: {run.design} (scenario {run.scenario})\n" + format_lockstat(run.lock_classes()))
    return "\n".join(parts)
