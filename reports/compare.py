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
from typing import Any

from reports.common import (
    WAIT_PARTS,
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
WALK_FIELDS = ("walks", "contended", "vmas_visited", "false_positives", "mappings_found", "missed_mappings",
               "freed_vma_visits", "would_sleep_in_rcu", "contexts_visited")
_SAME = 0.05  # ratios within 5% of 1 are reported as "about the same"
_LONG_WIND_DOWN = 0.10  # a wind-down of 10% of the workload phase or more is named in the verdict
PHASE_LABELS = (("setup", "set-up"), ("workload", "workload"), ("wind_down", "wind-down"))


def cpu_split(run: Mapping[str, Any]) -> dict[str, float]:
    """Share of the machine's CPU time in each state (sums to 1 when any time passed)."""
    times = {s: float(run.get("cpu_time", {}).get(s, 0)) for s in CPU_STATES}
    total = sum(times.values())
    return {s: (t / total if total else 0.0) for s, t in times.items()}


def _phase_split(run: Mapping[str, Any], phase: str) -> dict[str, float]:
    """:func:`cpu_split` of one phase of the run."""
    return cpu_split({"cpu_time": run.get("phases", {}).get(phase, {}).get("cpu_time", {})})


def walk_totals(run: Mapping[str, Any]) -> dict[str, int]:
    """Walk statistics added over every kind of rmap walk."""
    total = dict.fromkeys(WALK_FIELDS, 0)
    for walk in run.get("walks", {}).values():
        for f in WALK_FIELDS:
            total[f] += int(walk.get(f, 0) or 0)
    return total


def correctness(run: Mapping[str, Any]) -> list[str]:
    """Findings that say a design did something wrong in this run (empty when nothing did)."""
    out: list[str] = []
    inv = run.get("invariants", {})
    if inv and not inv.get("passed", True):
        out.append(f"invariants failed ({len(inv.get('violations', []))} violation(s))")
    walks = walk_totals(run)
    for f, what in (("missed_mappings", "mapping(s) missed by rmap walks"),
                    ("freed_vma_visits", "visit(s) to freed VMAs in rmap walks"),
                    ("would_sleep_in_rcu", "walk(s) that would sleep under RCU")):
        if walks[f]:
            out.append(f"{walks[f]} {what}")
    lockdep = run.get("lockdep") or {}
    if lockdep.get("findings"):
        out.append(f"{len(lockdep['findings'])} lockdep finding(s)")
    if lockdep.get("order_violations"):
        out.append(f"{len(lockdep['order_violations'])} lock order violation(s)")
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


def _workload_wait(run: Mapping[str, Any]) -> float:
    return phase_wait(run)["total"]


def _wait_words(name: str, run: Mapping[str, Any]) -> str:
    """The workload phase's lock wait of one run as a share of its CPU time, with its parts."""
    w = phase_wait(run)
    return (f"{fmt_pct(w['total'])} of CPU time under {name} (spinning {fmt_pct(w['spinning'])}, "
            f"asleep {fmt_pct(w['asleep'])}, runnable {fmt_pct(w['runnable'])})")


_WAIT_NOTE = "only spinning burns CPU; asleep or runnable, the waiter leaves its CPU to other tasks"


def _wind_down(run: Mapping[str, Any]) -> str | None:
    """A sentence on the run's wind-down when it lasts 10% of the workload phase or more."""
    workload, wind = phase_ns(run, "workload"), phase_ns(run, "wind_down")
    if workload <= 0 or wind < _LONG_WIND_DOWN * workload:
        return None
    cpu = run.get("phases", {}).get("wind_down", {}).get("cpu_time", {})
    idle = int(cpu.get("idle", 0)) / max(1, sum(int(v) for v in cpu.values()))
    return (f"{run.get('design', '?')}: the wind-down after the {fmt_time(workload)} workload phase lasts "
            f"{fmt_time(wind)} with the CPUs {fmt_pct(idle)} idle; the whole-run CPU time split and wait "
            "share include it, the workload-phase figures do not")


def _ranked(metric: str, runs: Sequence[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float],
            fmt: Callable[[float], str], better: str) -> str:
    """One metric across every design, best first (``better``: "higher" or "lower"); ties keep
    the designs' order."""
    vals = [(str(r.get("design", "?")), value(r)) for r in runs]
    order = sorted(range(len(vals)), key=lambda i: (-vals[i][1] if better == "higher" else vals[i][1], i))
    sign = " > " if better == "higher" else " < "
    return f"{metric} ({better} is better): " + sign.join(f"{vals[i][0]} {fmt(vals[i][1])}" for i in order)


def _rankings(runs: Sequence[Mapping[str, Any]], *, max_ops: int) -> list[str]:
    """With three designs or more: every design on one line per headline metric (throughput, the
    workload operations whose p99 differs most between designs, lock wait, peak metadata), and
    each alternative against the next best alternative, not only against the baseline."""
    base = runs[0]
    lines = [_ranked("total throughput", runs, total_throughput, _ops_per_s, "higher")]
    common = [op for op in op_names(list(runs))
              if all(op in r.get("operations", {}) for r in runs) and op in base.get("throughput", {})]

    def p99(run: Mapping[str, Any], op: str) -> float:
        return float(run["operations"][op].get("p99_ns", 0) or 0)

    def spread(op: str) -> float:
        vals = [p99(r, op) for r in runs]
        return math.log(max(vals) / min(vals)) if min(vals) > 0 else 0.0

    for op in sorted(common, key=lambda op: (-spread(op), op))[:max_ops]:
        lines.append(_ranked(f"{op} p99", runs, functools.partial(p99, op=op), lambda v: fmt_time(int(v)), "lower"))
    lines.append(_ranked("workload-phase lock wait", runs, _workload_wait, fmt_pct, "lower"))
    if any(int(r.get("memory", {}).get("peak_total_bytes", 0) or 0) for r in runs):
        lines.append(_ranked("peak rmap metadata", runs,
                             lambda r: float(r.get("memory", {}).get("peak_total_bytes", 0) or 0),
                             lambda v: fmt_bytes(int(v)), "lower"))
    alternatives = sorted(runs[1:], key=lambda r: (-total_throughput(r), str(r.get("design", ""))))
    for a, b in itertools.pairwise(alternatives):
        lines.append(_compare("total throughput", total_throughput(b), total_throughput(a),
                              str(b.get("design", "?")), str(a.get("design", "?")), _ops_per_s, "lower", "higher"))
    return lines


def verdict(results: Mapping[str, Any], *, max_ops: int = 4) -> list[str]:
    """A few lines stating what the numbers show (no claims beyond them): each design against the
    baseline and, with three designs or more, every design ranked per headline metric."""
    runs = check_results(results)["runs"]
    if not runs:
        return ["no runs"]
    base = baseline_run(runs)
    bname = str(base.get("design", "?"))
    # Correctness first: a design that failed its checks is not made better by its speed.
    lines = [f"{run.get('design', '?')}: {finding}" for run in runs for finding in correctness(run)]
    others = [r for r in runs if r is not base]
    if not others:
        lines.append(f"{bname}: {_ops_per_s(total_throughput(base))}; lock wait in the workload phase is "
                     f"{_wait_words(bname, base)}; {_WAIT_NOTE}")
        ops = base.get("operations", {})
        worst = sorted(ops, key=lambda op: (-int(ops[op].get("p99_ns", 0)), op))[:max_ops]
        lines.extend(f"{op} p99 is {fmt_time(int(ops[op].get('p99_ns', 0)))}" for op in worst)
    for other in others:
        oname = str(other.get("design", "?"))
        lines.append(_compare("total throughput", total_throughput(base), total_throughput(other),
                              bname, oname, _ops_per_s, "lower", "higher"))
        # The workload's operations (those with a rate), not the set-up's populate faults.
        common = [op for op in op_names([base])
                  if op in other.get("operations", {}) and op in base.get("throughput", {})]

        def change(op: str, base: Mapping[str, Any] = base, other: Mapping[str, Any] = other) -> float:
            a = int(base["operations"][op].get("p99_ns", 0))
            b = int(other["operations"][op].get("p99_ns", 0))
            return abs(math.log(b / a)) if a > 0 and b > 0 else 0.0

        for op in sorted(common, key=lambda op: (-change(op), op))[:max_ops]:
            a = int(base["operations"][op].get("p99_ns", 0))
            b = int(other["operations"][op].get("p99_ns", 0))
            lines.append(_compare(f"{op} p99", a, b, bname, oname, fmt_time, "lower", "higher"))
        lines.append(f"lock wait in the workload phase is {_wait_words(oname, other)}, "
                     f"{_wait_words(bname, base)}; {_WAIT_NOTE}")
        pa = int(base.get("memory", {}).get("peak_total_bytes", 0) or 0)
        pb = int(other.get("memory", {}).get("peak_total_bytes", 0) or 0)
        if pa or pb:
            lines.append(_compare("peak rmap metadata", pa, pb, bname, oname, fmt_bytes, "smaller", "larger"))
    if len(others) >= 2:
        lines.extend(_rankings([base, *others], max_ops=max_ops))
    lines.extend(line for run in runs if (line := _wind_down(run)) is not None)
    return lines


Row = tuple[str, Sequence[float], Callable[[float], str]]


def _design_table(runs: Sequence[Mapping[str, Any]], rows: Sequence[Row], ratio: bool = True) -> str:
    """Rows of (label, one value per design, formatter); ratio columns are design / baseline."""
    names = [str(r.get("design", "?")) for r in runs]
    bi = list(runs).index(baseline_run(runs))
    ratio_cols = [i for i in range(len(runs)) if i != bi] if ratio else []
    headers = ["", *names, *(f"{names[i]}/{names[bi]}" for i in ratio_cols)]
    cells = [[label, *(fmt(v) for v in values), *(_ratio(values[bi], values[i]) for i in ratio_cols)]
             for label, values, fmt in rows]
    return format_table(headers, cells, indent="  ")


def _count(v: float) -> str:
    return f"{v:,.0f}"


def compare_text(results: Mapping[str, Any]) -> str:
    """compare.txt: every comparison table, then the verdict."""
    results = check_results(results)
    if not results["runs"]:
        return "no runs\n"
    base = baseline_run(results["runs"])
    runs = [base, *(r for r in results["runs"] if r is not base)]  # the baseline's column first
    ops = op_names(runs)
    out = [f"Design comparison, scenario {results['scenario'].get('name', '?')} "
           f"(baseline {base.get('design', '?')}; ratios are design / baseline)\n"]

    def op_value(run: Mapping[str, Any], op: str, key: str) -> float:
        return float(run.get("operations", {}).get(op, {}).get(key, 0) or 0)

    def ops_s(v: float) -> str:
        return f"{v:,.1f}"

    rows: list[Row] = [("total", [total_throughput(r) for r in runs], ops_s)]
    rows += [(op, [float(r.get("throughput", {}).get(op, 0) or 0) for r in runs], ops_s) for op in ops]
    out.append("Throughput (operations per simulated second)\n" + _design_table(runs, rows))

    rows = [(f"{op} {label}", [op_value(r, op, key) for r in runs], fmt_time)
            for op in ops for label, key in (("p99", "p99_ns"), ("p99.9", "p99.9_ns"))]
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

    splits = [cpu_split(r) for r in runs]
    out.append("CPU time split\n" + _design_table(runs, [(st, [sp[st] for sp in splits], fmt_pct)
                                                         for st in CPU_STATES], ratio=False))

    rows = [(label, [float(phase_ns(r, name)) for r in runs], fmt_time) for name, label in PHASE_LABELS]
    for name, label in PHASE_LABELS[1:]:
        phase_splits = [_phase_split(r, name) for r in runs]
        rows += [(f"{label} {st}", [sp[st] for sp in phase_splits], fmt_pct) for st in CPU_STATES]
    out.append("Run phases (set-up populates, the workload phase is measured, the wind-down lets actors exit "
               "and RCU callbacks run) and each phase's CPU time split\n" + _design_table(runs, rows, ratio=False))

    keys = sorted({k for r in runs for k in r.get("memory", {})})
    if keys:
        rows = [(k, [float(r.get("memory", {}).get(k, 0) or 0) for r in runs],
                 fmt_bytes if k.endswith("_bytes") else _count) for k in keys]
        shown = [row for row in rows if any(row[1])]
        zero = [row[0] for row in rows if not any(row[1])]
        text = "rmap metadata memory\n"
        text += _design_table(runs, shown) if shown else ""
        if zero:
            text += f"  zero in every design: {', '.join(zero)}\n"
        out.append(text)

    walk_names = sorted({w for r in runs for w in r.get("walks", {})})
    if walk_names:
        rows = []
        for w in walk_names:
            for f in WALK_FIELDS:
                vals = [float(r.get("walks", {}).get(w, {}).get(f, 0) or 0) for r in runs]
                if any(vals) or f == "walks":
                    rows.append((f"{w} {f}", vals, _count))
        out.append("rmap walks\n" + _design_table(runs, rows))

    lines = []
    for r in runs:
        lockdep = r.get("lockdep") or {}
        inv = r.get("invariants", {})
        state = "passed" if inv.get("passed", True) else "FAILED"
        lines.append(f"  {r.get('design', '?')}: invariants {state}, "
                     f"{len(lockdep.get('findings', []))} lockdep finding(s), "
                     f"{len(lockdep.get('order_violations', []))} order violation(s), "
                     f"{len(lockdep.get('edges', []))} lock order edge(s)")
        lines.extend(f"    violation: {v}" for v in inv.get("violations", []))
        for f in lockdep.get("findings", []):
            first = next((ln.strip() for ln in str(f).splitlines() if ln.strip() and set(ln.strip()) != {"-"}
                          and set(ln.strip()) != {"="}), "")
            lines.append(f"    lockdep: {first}")
        lines.extend(f"    order: {v}" for v in lockdep.get("order_violations", []))
    out.append("Checks\n" + "\n".join(lines) + "\n")
    out.append(order_section(runs))  # issue 17: each design's order verdict beside its lock wait

    out.append("Verdict\n" + "".join(f"  - {line}\n" for line in verdict(results)))
    return "\n".join(out)
