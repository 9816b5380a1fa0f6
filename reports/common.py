"""What every report shares: reading result records, units, ratios and plain-text tables.

Reports are pure functions of saved result records (``rmapsim.results/1``, see
:mod:`records`): nothing here knows how a record was produced.  Every helper is
deterministic (no dict or set iteration whose order depends on object identity), so a report
rendered twice from the same record gives the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from records.result import RunRecord
from records.schema import RECORD_SCHEMA, RESULTS_SCHEMA, SWEEP_SCHEMA

__all__ = [
    "BASELINE_DESIGN",
    "SWEEP_SCHEMA",
    "WAIT_PARTS",
    "baseline_run",
    "check_results",
    "decode_hdr",
    "fmt_bytes",
    "fmt_pct",
    "fmt_time",
    "format_table",
    "op_names",
    "percentile_ns",
    "perf_time",
    "phase_ns",
    "phase_wait",
    "pseudo_address",
    "safe_name",
    "side_names",
    "total_throughput",
    "wait_parts",
    "wait_share",
    "wait_total_ns",
]

BASELINE_DESIGN = "anon_vma"  # mainline: what every other design is compared against when present


def check_results(data: Mapping[str, Any]) -> dict[str, Any]:
    """A ``rmapsim.results/1`` document; a bare ``rmapsim.result/1`` record is wrapped into one."""
    schema = data.get("schema")
    if schema == RECORD_SCHEMA:
        scen = data.get("scenario", "")
        return {"schema": RESULTS_SCHEMA, "scenario": {"name": scen, "description": "", "source": ""},
                "runs": [dict(data)]}
    if schema != RESULTS_SCHEMA:
        raise ValueError(f"not a result file: schema is {schema!r}, expected {RESULTS_SCHEMA!r} "
                         f"(or a single {RECORD_SCHEMA!r} record)")
    runs = data.get("runs")
    if not isinstance(runs, list):
        raise ValueError("result file has no 'runs' list")
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or run.get("schema") != RECORD_SCHEMA:
            raise ValueError(f"runs[{i}]: not a {RECORD_SCHEMA!r} record")
        RunRecord.from_json(run, f"runs[{i}]")  # every key, typed: schema drift is an error here
    return dict(data)


def typed_runs(results: Mapping[str, Any]) -> tuple[RunRecord, ...]:
    """The runs of a result document as :class:`records.result.RunRecord` (what the reports read)."""
    return tuple(RunRecord.from_json(run, f"runs[{i}]") for i, run in enumerate(check_results(results)["runs"]))


def baseline_run(runs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The run the others are compared with: mainline ``anon_vma`` if present, else the first."""
    for run in runs:
        if run.get("design") == BASELINE_DESIGN:
            return run
    return runs[0]


def op_names(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every operation recorded by any run, sorted by name."""
    names: set[str] = set()
    for run in runs:
        names.update(run.get("operations", {}))
    return sorted(names)


def side_names(lock: Mapping[str, Any]) -> list[str]:
    """The sides a lock class record carries, write first (lock_stat prints -W before -R)."""
    return ["write", "read"] if lock.get("rw") and "read" in lock else ["write"]


def decode_hdr(blob: str) -> HdrHistogram | None:
    """The HdrHistogram behind a record's base64 ``hdr``/``wait_hist``/``hold_hist`` (None if empty)."""
    if not blob:
        return None
    return HdrHistogram.decode(blob)


def percentile_ns(op: Mapping[str, Any], key: str) -> int:
    """A recorded exact percentile (``p99_ns``...) of an operation record, 0 when absent."""
    value = op.get(key, 0)
    return int(value) if value else 0


def wait_total_ns(run: Mapping[str, Any]) -> int:
    """Total lock wait time of a run over all classes and sides."""
    total = 0
    for lock in run.get("locks", []):
        for side in side_names(lock):
            total += int(lock[side].get("waittime_total_ns", 0))
    return total


def wait_share(run: Mapping[str, Any]) -> float:
    """Lock wait time as a share of the machine's CPU time: total wait / (cpus x end_ns)."""
    cpus = int(run.get("params", {}).get("cpus", 1) or 1)
    end_ns = int(run.get("outcome", {}).get("end_ns", 0) or 0)
    if end_ns <= 0:
        return 0.0
    return wait_total_ns(run) / (cpus * end_ns)


# What a waiter did while it waited (lock sides' waittime_spin_ns / waittime_sleep_ns, the phases'
# lock_wait): only spinning burns its CPU; asleep it gave the CPU up; runnable it had been woken
# and waited for a CPU (the run queue, the context switch back, the lock's pick-up).
WAIT_PARTS = ("spinning", "asleep", "runnable")


def _parts(total: int, spinning: int, sleeping: int) -> dict[str, int]:
    return {"total": total, "spinning": spinning, "asleep": sleeping, "runnable": total - spinning - sleeping}


def wait_parts(run: Mapping[str, Any]) -> dict[str, int]:
    """A run's lock wait (ns, every class and side) and its parts: ``total``, ``spinning``,
    ``asleep`` and ``runnable`` (the parts add up to the total)."""
    total = spin = sleep = 0
    for lock in run.get("locks", []):
        for side in side_names(lock):
            total += int(lock[side].get("waittime_total_ns", 0))
            spin += int(lock[side].get("waittime_spin_ns", 0))
            sleep += int(lock[side].get("waittime_sleep_ns", 0))
    return _parts(total, spin, sleep)


def phase_ns(run: Mapping[str, Any], phase: str) -> int:
    """How long a phase (``setup``, ``workload``, ``wind_down``) of the run lasted."""
    span = run.get("phases", {}).get(phase, {})
    return int(span.get("end_ns", 0)) - int(span.get("start_ns", 0))


def phase_wait(run: Mapping[str, Any], phase: str = "workload") -> dict[str, float]:
    """The lock wait that ended in a phase as a share of the machine's CPU time in that phase
    (``total`` and each of :data:`WAIT_PARTS`); 0 for a phase of no length."""
    wait = run.get("phases", {}).get(phase, {}).get("lock_wait", {})
    parts = _parts(int(wait.get("total_ns", 0)), int(wait.get("spinning_ns", 0)), int(wait.get("sleeping_ns", 0)))
    cpu_ns = int(run.get("params", {}).get("cpus", 1) or 1) * phase_ns(run, phase)
    return {k: (v / cpu_ns if cpu_ns > 0 else 0.0) for k, v in parts.items()}


def total_throughput(run: Mapping[str, Any]) -> float:
    """All operations per simulated second."""
    return float(sum(float(v) for v in run.get("throughput", {}).values()))


# -- units ------------------------------------------------------------------------------------------

# perf's lock_stat_key_print_time table (tools/perf/builtin-lock.c): the first unit whose base the
# value reaches, printed "%.2f <unit>"; below 1 µs, integer ns.
_PERF_UNITS = ((1e9 * 3600, "h "), (1e9 * 60, "m "), (1e9, "s "), (1e6, "ms"), (1e3, "us"))


def perf_time(nsec: int, width: int = 0) -> str:
    """perf's ``lock_stat_key_print_time(nsec, len)``: ``%*.2f unit`` (width ``len - 3``).

    perf divides in single precision (``nsec / table[i].base`` with a ``float`` base), so this does
    too: the two decimals match perf's own output digit for digit.
    """
    pad = max(width - 3, 0)
    for base, unit in _PERF_UNITS:
        if nsec < base:
            continue
        value = float(np.float32(nsec) / np.float32(base))
        return f"{value:{pad}.2f} {unit}"
    return f"{int(nsec):{pad}d} ns"


def fmt_time(ns: float) -> str:
    """A duration for people: perf's units without the padding (``192.67 us``, ``850 ns``)."""
    n = round(ns)
    return f"{n} ns" if n < 1000 else perf_time(n).strip()


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def fmt_pct(x: float) -> str:
    return f"{100.0 * x:.2f}%"


def safe_name(name: str) -> str:
    """A file-name and hlog-tag safe form of a name (no separators, commas or spaces)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "_"


def pseudo_address(symbol: str) -> str:
    """A stable stand-in for a kernel code address: 16 hex digits digested from the symbol.

    /proc/lock_stat prints call sites as ``[<%p>]``, which today's kernels hash; a digest of the
    simulated operation's name plays the same role (unique per site, meaningless as a number).
    """
    return hashlib.sha256(symbol.encode()).hexdigest()[:16]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "",
                 indent: str = "") -> str:
    """Columns padded to their widest cell; ``align`` is one letter per column, ``l`` or ``r``
    (default: first column left, the others right)."""
    ncols = len(headers)
    if not align:
        align = "l" + "r" * (ncols - 1)
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i]) for i, c in enumerate(cells)]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(headers), indent + "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in rows)
    return "\n".join(out) + "\n"
