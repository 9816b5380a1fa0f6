"""Designs side by side: throughput, tail latency, lock wait, CPU time, phases, memory, walks, findings.

Every number is read from the result records; ratios are other-design / baseline (the baseline
is mainline ``anon_vma`` when it ran, else the first design).  The verdict states what these
numbers show and nothing else: correctness findings first (invariant violations, then missed
mappings, visits to freed VMAs, sleeps under RCU, lockdep reports), then which design has the
lower tail latency or the higher throughput and by what factor, and how much of the workload
phase's CPU time went to lock wait, split by what the waiters did (spinning burns the CPU; asleep
or runnable, the waiter leaves it to other tasks), and any wind-down after the workload phase
long enough to weigh on the whole-run figures (a design whose RCU callbacks run on for
milliseconds after its last process exited shows them as idle CPU).
Any number of designs: one column per design, one ratio column per design against the baseline,
and with three designs or more the verdict also ranks every design per headline metric and
compares the alternatives with each other (two designs give exactly the pairwise verdict).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence

from records.result import WALK_FIELDS, RunRecord
from reports.common import (
    WAIT_PARTS,
    Results,
    baseline_run,
    check_results,
    fmt_bytes,
    fmt_pct,
    fmt_time,
    format_table,
    op_names,
    phase_ns,
    phase_wait,
    total_throughput,
    wait_parts,
    wait_share,
    wait_total_ns,
)
from reports.lockgraph import order_section

__all__ = [
    "CPU_STATES",
    "WALK_FIELDS",
    "compare_text",
    "correctness",
    "cpu_split",
    "verdict",
    "walk_totals",
]

CPU_STATES = ("running", "spinning", "sleeping", "idle")
_SAME = 0.05  # ratios within 5% of 1 are reported as "about the same"
_LONG_WIND_DOWN = 0.10  # a wind-down of 10% of the workload phase or more is named in the verdict
PHASE_LABELS = (("setup", "set-up"), ("workload", "workload"), ("wind_down", "wind-down"))


def cpu_split(cpu_time: Mapping[str, int]) -> dict[str, float]:
    """Share of the machine's CPU time in each state (sums to 1 when any time passed), from a
    run's or a phase's ``cpu_time``."""
    times = {s: float(cpu_time[s]) for s in CPU_STATES}
    total = sum(times.values())
    return {s: (t / total if total else 0.0) for s, t in times.items()}


def _phase_split(run: RunRecord, phase: str) -> dict[str, float]:
    """:func:`cpu_split` of one phase of the run."""
    return cpu_split(run.phases[phase].cpu_time)


def walk_totals(run: RunRecord) -> dict[str, int]:
    """Walk statistics added over every kind of rmap walk."""
    total = dict.fromkeys(WALK_FIELDS, 0)
    for walk in run.walk_counts().values():
        for f in WALK_FIELDS:
            total[f] += walk.field(f)
    return total


def _peak_bytes(run: RunRecord) -> int:
    """The design's peak rmap metadata; 0 for a record whose model keeps no memory account (the
    memory section's keys are the design's own: a lock-only record has none)."""
    return run.memory_counts().get("peak_total_bytes", 0)


def correctness(run: RunRecord) -> list[str]:
    """Findings that say a design did something wrong in this run (empty when nothing did)."""
    out: list[str] = []
    inv = run.invariants
    if not inv.passed:
        out.append(f"invariants failed ({len(inv.violations)} violation(s))")
    walks = walk_totals(run)
    for f, what in (("missed_mappings", "mapping(s) missed by rmap walks"),
                    ("freed_vma_visits", "visit(s) to freed VMAs in rmap walks"),
                    ("would_sleep_in_rcu", "walk(s) that would sleep under RCU")):
        if walks[f]:
            out.append(f"{walks[f]} {what}")
    lockdep = run.lockdep_section()
    if lockdep.findings:
        out.append(f"{len(lockdep.findings)} lockdep finding(s)")
    if lockdep.order_violations:
        out.append(f"{len(lockdep.order_violations)} lock order violation(s)")
    return out


def _times(r: float) -> str:
    return f"{r:.2f}x" if r < 2 else f"{r:.1f}x"


def _ratio(a: float, b: float) -> str:
    """b / a as text ("-" when a is 0)."""
    return _times(b / a) if a else "-"


def _compare(metric: str, a: float, b: float, name_a: str, name_b: str, fmt: Callable[[float], str],
             lower: str, higher: str) -> str:
    """A sentence comparing b (design name_b) with the baseline a, in the numbers' own words."""
    if a <= 0 or b <= 0:
        return f"{metric}: {fmt(b)} under {name_b}, {fmt(a)} under {name_a}"
    r = b / a
    if abs(r - 1) <= _SAME:
        return f"{metric} is about the same under {name_b} as under {name_a} ({fmt(b)} vs {fmt(a)})"
    values = f"({fmt(b)} vs {fmt(a)})"
    if r < 1:
        return f"{metric} is {_times(1 / r)} {lower} under {name_b} than under {name_a} {values}"
    return f"{metric} is {_times(r)} {higher} under {name_b} than under {name_a} {values}"


def _ops_per_s(x: float) -> str:
    return f"{x:,.0f} ops/s"


def _workload_wait(run: RunRecord) -> float:
    return phase_wait(run)["total"]


def _wait_words(name: str, run: RunRecord) -> str:
    """The workload phase's lock wait of one run as a share of its CPU time, with its parts."""
    w = phase_wait(run)
    return (f"{fmt_pct(w['total'])} of CPU time under {name} (spinning {fmt_pct(w['spinning'])}, "
            f"asleep {fmt_pct(w['asleep'])}, runnable {fmt_pct(w['runnable'])})")


_WAIT_NOTE = "only spinning burns CPU; asleep or runnable, the waiter leaves its CPU to other tasks"


def _wind_down(run: RunRecord) -> str | None:
    """A sentence on the run's wind-down when it lasts 10% of the workload phase or more."""
    workload, wind = phase_ns(run, "workload"), phase_ns(run, "wind_down")
    if workload <= 0 or wind < _LONG_WIND_DOWN * workload:
        return None
    cpu = run.phases["wind_down"].cpu_time
    idle = cpu["idle"] / max(1, sum(cpu.values()))
    return (f"{run.design}: the wind-down after the {fmt_time(workload)} workload phase lasts "
            f"{fmt_time(wind)} with the CPUs {fmt_pct(idle)} idle; the whole-run CPU time split and wait "
            "share include it, the workload-phase figures do not")


def _ranked(metric: str, runs: Sequence[RunRecord], value: Callable[[RunRecord], float],
            fmt: Callable[[float], str], better: str) -> str:
    """One metric across every design, best first (``better``: "higher" or "lower"); ties keep
    the designs' order."""
    vals = [(r.design, value(r)) for r in runs]
    order = sorted(range(len(vals)), key=lambda i: (-vals[i][1] if better == "higher" else vals[i][1], i))
    sign = " > " if better == "higher" else " < "
    return f"{metric} ({better} is better): " + sign.join(f"{vals[i][0]} {fmt(vals[i][1])}" for i in order)


def _rankings(runs: Sequence[RunRecord], *, max_ops: int) -> list[str]:
    """With three designs or more: every design on one line per headline metric (throughput, the
    workload operations whose p99 differs most between designs, lock wait, peak metadata), and
    each alternative against the next best alternative, not only against the baseline."""
    base = runs[0]
    lines = [_ranked("total throughput", runs, total_throughput, _ops_per_s, "higher")]
    common = [op for op in op_names(list(runs))
              if all(op in r.operations for r in runs) and op in base.throughput]

    def p99(run: RunRecord, op: str) -> float:
        return float(run.operations[op].p99_ns)

    def spread(op: str) -> float:
        vals = [p99(r, op) for r in runs]
        return math.log(max(vals) / min(vals)) if min(vals) > 0 else 0.0

    for op in sorted(common, key=lambda op: (-spread(op), op))[:max_ops]:
        lines.append(_ranked(f"{op} p99", runs, functools.partial(p99, op=op), lambda v: fmt_time(int(v)), "lower"))
    lines.append(_ranked("workload-phase lock wait", runs, _workload_wait, fmt_pct, "lower"))
    if any(_peak_bytes(r) for r in runs):
        lines.append(_ranked("peak rmap metadata", runs, lambda r: float(_peak_bytes(r)),
                             lambda v: fmt_bytes(int(v)), "lower"))
    alternatives = sorted(runs[1:], key=lambda r: (-total_throughput(r), r.design))
    for a, b in itertools.pairwise(alternatives):
        lines.append(_compare("total throughput", total_throughput(b), total_throughput(a),
                              b.design, a.design, _ops_per_s, "lower", "higher"))
    return lines


def verdict(results: Results, *, max_ops: int = 4) -> list[str]:
    """A few lines stating what the numbers show (no claims beyond them): each design against the
    baseline and, with three designs or more, every design ranked per headline metric."""
    runs = check_results(results).runs
    if not runs:
        return ["no runs"]
    base = baseline_run(runs)
    bname = base.design
    # Correctness first: a design that failed its checks is not made better by its speed.
    lines = [f"{run.design}: {finding}" for run in runs for finding in correctness(run)]
    others = [r for r in runs if r is not base]
    if not others:
        lines.append(f"{bname}: {_ops_per_s(total_throughput(base))}; lock wait in the workload phase is "
                     f"{_wait_words(bname, base)}; {_WAIT_NOTE}")
        ops = base.operations
        worst = sorted(ops, key=lambda op: (-ops[op].p99_ns, op))[:max_ops]
        lines.extend(f"{op} p99 is {fmt_time(ops[op].p99_ns)}" for op in worst)
    for other in others:
        oname = other.design
        lines.append(_compare("total throughput", total_throughput(base), total_throughput(other),
                              bname, oname, _ops_per_s, "lower", "higher"))
        # The workload's operations (those with a rate), not the set-up's populate faults.
        common = [op for op in op_names([base]) if op in other.operations and op in base.throughput]

        def change(op: str, base: RunRecord = base, other: RunRecord = other) -> float:
            a = base.operations[op].p99_ns
            b = other.operations[op].p99_ns
            return abs(math.log(b / a)) if a > 0 and b > 0 else 0.0

        for op in sorted(common, key=lambda op: (-change(op), op))[:max_ops]:
            a = base.operations[op].p99_ns
            b = other.operations[op].p99_ns
            lines.append(_compare(f"{op} p99", a, b, bname, oname, fmt_time, "lower", "higher"))
        lines.append(f"lock wait in the workload phase is {_wait_words(oname, other)}, "
                     f"{_wait_words(bname, base)}; {_WAIT_NOTE}")
        pa = _peak_bytes(base)
        pb = _peak_bytes(other)
        if pa or pb:
            lines.append(_compare("peak rmap metadata", pa, pb, bname, oname, fmt_bytes, "smaller", "larger"))
    if len(others) >= 2:
        lines.extend(_rankings([base, *others], max_ops=max_ops))
    lines.extend(line for run in runs if (line := _wind_down(run)) is not None)
    return lines


Row = tuple[str, Sequence[float], Callable[[float], str]]


def _design_table(runs: Sequence[RunRecord], rows: Sequence[Row], ratio: bool = True) -> str:
    """Rows of (label, one value per design, formatter); ratio columns are design / baseline."""
    names = [r.design for r in runs]
    bi = list(runs).index(baseline_run(runs))
    ratio_cols = [i for i in range(len(runs)) if i != bi] if ratio else []
    headers = ["", *names, *(f"{names[i]}/{names[bi]}" for i in ratio_cols)]
    cells = [[label, *(fmt(v) for v in values), *(_ratio(values[bi], values[i]) for i in ratio_cols)]
             for label, values, fmt in rows]
    return format_table(headers, cells, indent="  ")


def _count(v: float) -> str:
    return f"{v:,.0f}"


def compare_text(results: Results) -> str:
    """compare.txt: every comparison table, then the verdict."""
    doc = check_results(results)
    if not doc.runs:
        return "no runs\n"
    base = baseline_run(doc.runs)
    runs = [base, *(r for r in doc.runs if r is not base)]  # the baseline's column first
    ops = op_names(runs)
    out = [f"Design comparison, scenario {doc.scenario.name} "
           f"(baseline {base.design}; ratios are design / baseline)\n"]

    def op_value(run: RunRecord, op: str, p99_9: bool) -> float:
        rec = run.operations.get(op)  # 0 for a design that never ran the operation
        return 0.0 if rec is None else float(rec.p99_9_ns if p99_9 else rec.p99_ns)

    def ops_s(v: float) -> str:
        return f"{v:,.1f}"

    rows: list[Row] = [("total", [total_throughput(r) for r in runs], ops_s)]
    rows += [(op, [float(r.throughput.get(op, 0)) for r in runs], ops_s) for op in ops]  # 0: not run
    out.append("Throughput (operations per simulated second)\n" + _design_table(runs, rows))

    rows = [(f"{op} {label}", [op_value(r, op, p99_9) for r in runs], fmt_time)
            for op in ops for label, p99_9 in (("p99", False), ("p99.9", True))]
    out.append("Tail latency\n" + _design_table(runs, rows))

    parts = [wait_parts(r) for r in runs]
    phase = [phase_wait(r) for r in runs]
    rows = [("wait share", [wait_share(r) for r in runs], fmt_pct)]
    rows += [(f"  {p}", [float(w[p]) / max(1, w["total"]) * wait_share(r) for w, r in zip(parts, runs, strict=True)],
              fmt_pct) for p in WAIT_PARTS]
    rows += [("workload share", [w["total"] for w in phase], fmt_pct)]
    rows += [(f"  {p}", [w[p] for w in phase], fmt_pct) for p in WAIT_PARTS]
    rows += [("total wait", [float(wait_total_ns(r)) for r in runs], fmt_time)]
    rows += [(f"  {p}", [float(w[p]) for w in parts], fmt_time) for p in WAIT_PARTS]
    out.append("Lock wait (share = wait / (cpus x run time), or of the workload phase's CPU time; spinning burns "
               "the waiter's CPU, asleep it gave the CPU up, runnable it was woken and waited for a CPU)\n"
               + _design_table(runs, rows))

    splits = [cpu_split(r.cpu_time) for r in runs]
    out.append("CPU time split\n" + _design_table(runs, [(st, [sp[st] for sp in splits], fmt_pct)
                                                         for st in CPU_STATES], ratio=False))

    rows = [(label, [float(phase_ns(r, name)) for r in runs], fmt_time) for name, label in PHASE_LABELS]
    for name, label in PHASE_LABELS[1:]:
        phase_splits = [_phase_split(r, name) for r in runs]
        rows += [(f"{label} {st}", [sp[st] for sp in phase_splits], fmt_pct) for st in CPU_STATES]
    out.append("Run phases (set-up populates, the workload phase is measured, the wind-down lets actors exit "
               "and RCU callbacks run) and each phase's CPU time split\n" + _design_table(runs, rows, ratio=False))

    # Each design keeps its own memory account: a key another design has is 0 here.
    memory = [r.memory_counts() for r in runs]
    keys = sorted({k for m in memory for k in m})
    if keys:
        rows = [(k, [float(m.get(k, 0)) for m in memory],
                 fmt_bytes if k.endswith("_bytes") else _count) for k in keys]
        shown = [row for row in rows if any(row[1])]
        zero = [row[0] for row in rows if not any(row[1])]
        text = "rmap metadata memory\n"
        text += _design_table(runs, shown) if shown else ""
        if zero:
            text += f"  zero in every design: {', '.join(zero)}\n"
        out.append(text)

    walks = [r.walk_counts() for r in runs]
    walk_names = sorted({w for counts in walks for w in counts})
    if walk_names:
        rows = []
        for w in walk_names:
            for f in WALK_FIELDS:  # 0 for a design that never walked this way
                vals = [float(counts[w].field(f)) if w in counts else 0.0 for counts in walks]
                if any(vals) or f == "walks":
                    rows.append((f"{w} {f}", vals, _count))
        out.append("rmap walks\n" + _design_table(runs, rows))

    lines = []
    for r in runs:
        lockdep = r.lockdep_section()
        inv = r.invariants
        state = "passed" if inv.passed else "FAILED"
        lines.append(f"  {r.design}: invariants {state}, "
                     f"{len(lockdep.findings)} lockdep finding(s), "
                     f"{len(lockdep.order_violations)} order violation(s), "
                     f"{len(lockdep.edges)} lock order edge(s)")
        lines.extend(f"    violation: {v}" for v in inv.violations)
        for f in lockdep.findings:
            first = next((ln.strip() for ln in str(f).splitlines() if ln.strip() and set(ln.strip()) != {"-"}
                          and set(ln.strip()) != {"="}), "")
            lines.append(f"    lockdep: {first}")
        lines.extend(f"    order: {v}" for v in lockdep.order_violations)
    out.append("Checks\n" + "\n".join(lines) + "\n")
    out.append(order_section(runs))  # issue 17: each design's order verdict beside its lock wait

    out.append("Verdict\n" + "".join(f"  - {line}\n" for line in verdict(doc)))
    return "\n".join(out)
