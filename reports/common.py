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
from typing import TypeAlias

import numpy as np
from hdrh.histogram import HdrHistogram

from records.result import LockClass, RecordError, ResultsFile, RunRecord, ScenarioInfo, json_object
from records.schema import RECORD_SCHEMA, RESULTS_SCHEMA, SWEEP_SCHEMA

__all__ = [
    "BASELINE_DESIGN",
    "SWEEP_SCHEMA",
    "WAIT_PARTS",
    "LockInput",
    "Results",
    "RunInput",
    "as_lock_classes",
    "as_run",
    "baseline_run",
    "check_results",
    "decode_hdr",
    "fmt_bytes",
    "fmt_pct",
    "fmt_time",
    "format_table",
    "op_names",
    "perf_time",
    "phase_ns",
    "phase_wait",
    "pseudo_address",
    "safe_name",
    "total_throughput",
    "typed_runs",
    "wait_parts",
    "wait_share",
    "wait_total_ns",
]

BASELINE_DESIGN = "anon_vma"  # mainline: what every other design is compared against when present

# What a report is given: the typed result, or the JSON document as read from result.json (checked
# and typed on the way in by :func:`check_results`).
Results: TypeAlias = ResultsFile | Mapping[str, object]
RunInput: TypeAlias = RunRecord | Mapping[str, object]


def check_results(data: Results) -> ResultsFile:
    """A ``rmapsim.results/1`` document, typed; a bare ``rmapsim.result/2`` record is wrapped into
    one.  Every key is checked (:meth:`records.result.RunRecord.from_json`): schema drift is an
    error here, never a silent default further down."""
    if isinstance(data, ResultsFile):
        return data
    schema = data.get("schema")
    if schema == RECORD_SCHEMA:
        run = _checked(RunRecord.from_json(data, "record"), "record")
        return ResultsFile(ScenarioInfo(run.scenario, "", "", ""), (run,))
    if schema != RESULTS_SCHEMA:
        raise ValueError(f"not a result file: schema is {schema!r}, expected {RESULTS_SCHEMA!r} "
                         f"(or a single {RECORD_SCHEMA!r} record)")
    runs = data.get("runs")
    if not isinstance(runs, list):
        raise ValueError("result file has no 'runs' list")
    typed = []
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or run.get("schema") != RECORD_SCHEMA:
            raise ValueError(f"runs[{i}]: not a {RECORD_SCHEMA!r} record")
        typed.append(_checked(RunRecord.from_json(run, f"runs[{i}]"), f"runs[{i}]"))
    unknown = sorted(set(data) - {"schema", "scenario", "runs", "point"})
    if unknown:
        raise RecordError(f"results: unknown key(s) {', '.join(unknown)}")
    if "scenario" not in data:
        raise RecordError("results: missing scenario")
    point = data.get("point")  # only a sweep point's result file has one
    return ResultsFile(ScenarioInfo.from_json(data["scenario"], "results.scenario"), tuple(typed),
                       None if point is None else json_object(point, "results.point"))


def _checked(run: RunRecord, path: str) -> RunRecord:
    """``run`` with the sections the reports read by fixed keys checked too (lock_stat rows, the
    order checker's section, the walks, the memory account): drift there is an error on load,
    naming its path, rather than halfway through writing the reports."""
    try:
        run.lock_classes()
        run.lockdep_section()
        run.walk_counts()
        run.memory_counts()
    except RecordError as exc:
        raise RecordError(f"{path}.{exc}") from None
    return run


def typed_runs(results: Results) -> tuple[RunRecord, ...]:
    """The runs of a result document as :class:`records.result.RunRecord` (what the reports read)."""
    return check_results(results).runs


def as_run(run: RunInput) -> RunRecord:
    """One run record, typed (a record as read from JSON is checked on the way in)."""
    return run if isinstance(run, RunRecord) else RunRecord.from_json(run)


LockInput: TypeAlias = LockClass | Mapping[str, object]


def as_lock_classes(locks: Sequence[LockInput]) -> tuple[LockClass, ...]:
    """Lock_stat rows, typed (rows as read from JSON are checked on the way in)."""
    return tuple(lock if isinstance(lock, LockClass) else LockClass.from_json(lock, f"locks[{i}]")
                 for i, lock in enumerate(locks))


def baseline_run(runs: Sequence[RunRecord]) -> RunRecord:
    """The run the others are compared with: mainline ``anon_vma`` if present, else the first."""
    for run in runs:
        if run.design == BASELINE_DESIGN:
            return run
    return runs[0]


def op_names(runs: Sequence[RunRecord]) -> list[str]:
    """Every operation recorded by any run, sorted by name."""
    names: set[str] = set()
    for run in runs:
        names.update(run.operations)
    return sorted(names)


def decode_hdr(blob: str) -> HdrHistogram | None:
    """The HdrHistogram behind a record's base64 ``hdr``/``wait_hist``/``hold_hist`` (None if empty)."""
    if not blob:
        return None
    return HdrHistogram.decode(blob)


def wait_total_ns(run: RunRecord) -> int:
    """Total lock wait time of a run over all classes and sides."""
    return sum(side.waittime_total_ns for lock in run.lock_classes() for _, side in lock.sides())


def wait_share(run: RunRecord) -> float:
    """Lock wait time as a share of the machine's CPU time: total wait / (cpus x end_ns)."""
    cpus = run.param_int("cpus") or 1
    end_ns = run.outcome.end_ns
    if end_ns <= 0:
        return 0.0
    return wait_total_ns(run) / (cpus * end_ns)


# What a waiter did while it waited (lock sides' waittime_spin_ns / waittime_sleep_ns, the phases'
# lock_wait): only spinning burns its CPU; asleep it gave the CPU up; runnable it had been woken
# and waited for a CPU (the run queue, the context switch back, the lock's pick-up).
WAIT_PARTS = ("spinning", "asleep", "runnable")


def _parts(total: int, spinning: int, sleeping: int) -> dict[str, int]:
    return {"total": total, "spinning": spinning, "asleep": sleeping, "runnable": total - spinning - sleeping}


def wait_parts(run: RunInput) -> dict[str, int]:
    """A run's lock wait (ns, every class and side) and its parts: ``total``, ``spinning``,
    ``asleep`` and ``runnable`` (the parts add up to the total)."""
    total = spin = sleep = 0
    for lock in as_run(run).lock_classes():
        for _, side in lock.sides():
            total += side.waittime_total_ns
            spin += side.waittime_spin_ns
            sleep += side.waittime_sleep_ns
    return _parts(total, spin, sleep)


def phase_ns(run: RunRecord, phase: str) -> int:
    """How long a phase (``setup``, ``workload``, ``wind_down``) of the run lasted."""
    span = run.phases[phase]
    return span.end_ns - span.start_ns


def phase_wait(run: RunRecord, phase: str = "workload") -> dict[str, float]:
    """The lock wait that ended in a phase as a share of the machine's CPU time in that phase
    (``total`` and each of :data:`WAIT_PARTS`); 0 for a phase of no length."""
    wait = run.phases[phase].lock_wait
    parts = _parts(wait["total_ns"], wait["spinning_ns"], wait["sleeping_ns"])
    cpu_ns = (run.param_int("cpus") or 1) * phase_ns(run, phase)
    return {k: (v / cpu_ns if cpu_ns > 0 else 0.0) for k, v in parts.items()}


def total_throughput(run: RunInput) -> float:
    """All operations per simulated second."""
    return float(sum(float(v) for v in as_run(run).throughput.values()))


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
