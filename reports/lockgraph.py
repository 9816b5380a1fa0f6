"""The order checker's graph: /proc/lockdep and /proc/lockdep_stats listings, the dependency-graph
picture, and the order verdict beside what the locks cost.

Read from a run record's ``lockdep`` (``classes``, ``deps``, ``cycles``, ``stats``, ``order``; see
:meth:`concurrency.lockdep.OrderChecker.graph_record`) and its lock_stat ``locks``:

* ``lockdep.txt`` follows ``l_show()`` of kernel/locking/lockdep_proc.c with CONFIG_DEBUG_LOCKDEP
  and CONFIG_PROVE_LOCKING: per class ``<key> OPS: FD: BD: <usage>: <name>`` then one
  `` -> <name>`` line per direct dependency.  Substitutions: the key is a stable digest of the
  class name (``reports.common.pseudo_address``, as lockstat.txt prints call sites); each
  dependency line adds its lockdep types, how often it was taken and by which operations, and
  marks an edge that violates the declared order or lies on a dependency cycle.  FD and BD count
  the class itself, as ``lockdep_count_forward_deps()`` does.
* ``lockdep_stats.txt`` follows ``lockdep_stats_show()``: the figures the simulator has (classes,
  direct and indirect dependencies, distinct held-lock chains, the deepest stack), plus the
  checker's findings and the declared order's violations.
* ``lockgraph-<design>.svg`` is laid out by Graphviz's ``dot`` (Debian's ``graphviz`` package):
  one node per class (shaded by the wait for it), one edge per dependency labelled with how often
  it was taken.  An edge's width follows the contention of the lock it acquires: the total wait
  for that class in lock_stat, on an absolute log scale so that two designs' graphs compare.
  Edges that violate the declared order are red, edges on a dependency cycle purple, nesting
  within a class (``ptl -> ptl/1``) dashed.  The DOT text is written too
  (``lockgraph-<design>.dot``), so the picture can be redrawn anywhere.  Without ``dot`` no SVG is
  written and the report says why.
"""

from __future__ import annotations

import base64
import math
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

from records.files import atomic_write
from records.result import LockdepClass, LockDependency, LockdepSection, OrderViolation, RunRecord
from reports.common import (
    Results,
    RunInput,
    as_run,
    check_results,
    fmt_pct,
    fmt_time,
    format_table,
    pseudo_address,
    safe_name,
    wait_share,
)

__all__ = [
    "close_lockgraphs",
    "find_dot",
    "lockdep_listing",
    "lockdep_stats_text",
    "lockgraph_dot",
    "lockgraph_html",
    "order_section",
    "order_verdict",
    "render_svg",
    "run_label",
    "start_lockgraphs",
    "write_lockdep_reports",
]

_VIOLATION = "#c62828"
_CYCLE = "#6a1b9a"
_PLAIN = "#455a64"
_NESTING = "#9e9e9e"


# -- reading the record ------------------------------------------------------------------------------


def run_label(run: RunInput) -> str:
    """A run's name in these reports: its design, or the design variant ``rmapsim lockdep`` ran
    (``cow_context[walk_safety=ctx_rwsem]``)."""
    rec = as_run(run)
    return rec.variant or rec.design


def _base(key: str) -> str:
    name, sep, sub = key.rpartition("/")
    return name if sep and name and sub.isdigit() else key


def _deps(lockdep: LockdepSection) -> list[LockDependency]:
    """The graph's dependencies, by (held, acquired); none when the checker kept no graph."""
    return sorted(lockdep.deps or (), key=lambda d: (d.held, d.acquired))


def _cycle_edges(lockdep: LockdepSection) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for cycle in lockdep.cycles or ():
        for i, a in enumerate(cycle):
            out.add((a, cycle[(i + 1) % len(cycle)]))
    return out


def _violating_edges(lockdep: LockdepSection) -> dict[tuple[str, str], OrderViolation]:
    """Recorded edges (subclass kept) that violate the declared order -> the violation.  Every
    recorded edge between the two classes counts, whatever its subclass."""
    bad = {(v.held, v.acquired): v for v in (lockdep.order.violations if lockdep.order is not None else ())}
    out = {}
    for dep in lockdep.deps or ():
        pair = (_base(dep.held), _base(dep.acquired))
        if pair in bad:
            out[(dep.held, dep.acquired)] = bad[pair]
    return out


def _class_waits(run: RunRecord) -> dict[str, tuple[int, int]]:
    """lock_stat per class: (contentions, total wait ns), both sides."""
    out: dict[str, tuple[int, int]] = {}
    for lock in run.lock_classes():
        cont = wait = 0
        for _, side in lock.sides():
            cont += side.contentions
            wait += side.waittime_total_ns
        out[lock.name] = (cont, wait)
    return out


def _classes(lockdep: LockdepSection) -> list[LockdepClass]:
    classes = list(lockdep.classes or ())
    known = {c.name for c in classes}
    for dep in lockdep.deps or ():
        for key in (dep.held, dep.acquired):
            if key not in known:
                known.add(key)
                classes.append(LockdepClass(key, "....", 0))
    return sorted(classes, key=lambda c: c.name)


def _reach(succ: Mapping[str, Sequence[str]], start: str) -> int:
    """Classes reachable from ``start``, itself included (``lockdep_count_forward_deps``)."""
    seen = {start}
    todo = [start]
    while todo:
        for nxt in succ.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return len(seen)


def _ops_text(ops: Mapping[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0])))


def order_verdict(run: RunInput, *, short: bool = False) -> str:
    """One line: is the run consistent with its declared order, and did lockdep find cycles?
    ``short`` names the order by its file rather than its ``source`` text."""
    lockdep = as_run(run).lockdep_section()
    if lockdep.deps is None and not lockdep.edges:
        return "not checked (lockdep off)"
    parts = []
    order = lockdep.order
    nviol = len(lockdep.order_violations)
    if order is not None:
        name = (order.file or order.source) if short else order.source
        src = name or "the declared order"
        parts.append(f"{nviol} violation(s) of {src}" if nviol else f"consistent with {src}")
    elif nviol:
        parts.append(f"{nviol} order violation(s)")
    else:
        parts.append("no declared order")
    cycles = lockdep.cycles
    ncyc = len(cycles) if cycles is not None else sum(
        1 for f in lockdep.findings if "circular locking dependency" in f)
    if ncyc:
        parts.append(f"{ncyc} dependency cycle(s)")
    others = len(lockdep.findings) - ncyc
    if others > 0:
        parts.append(f"{others} other lockdep finding(s)")
    return "; ".join(parts)


# -- /proc/lockdep and /proc/lockdep_stats -------------------------------------------------------------


def _listing(lockdep: LockdepSection) -> list[str]:
    deps = _deps(lockdep)
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for d in deps:
        succ.setdefault(d.held, []).append(d.acquired)
        pred.setdefault(d.acquired, []).append(d.held)
    bad = _violating_edges(lockdep)
    cyc = _cycle_edges(lockdep)
    lines = ["all lock classes:"]
    for cls in _classes(lockdep):
        name = cls.name
        lines.append(f"{pseudo_address(name)} OPS:{cls.acquisitions:8d} FD:{_reach(succ, name):5d} "
                     f"BD:{_reach(pred, name):5d} {cls.usage}: {name}")
        for d in deps:
            if d.held != name:
                continue
            to = d.acquired
            marks = []
            if (name, to) in bad:
                marks.append(f"violates {bad[(name, to)].source}")
            if (name, to) in cyc:
                marks.append("on a dependency cycle")
            types = "".join(f"-({t})-" for t in d.types)
            line = f" -> [{pseudo_address(to)}] {to}  {types} x{d.count}: {_ops_text(d.ops)}"
            lines.append(line + (f"  <== {'; '.join(marks)}" if marks else ""))
        lines.append("")
    for i, cycle in enumerate(lockdep.cycles or ()):
        lines.append(f"dependency cycle #{i}: {' -> '.join(cycle)} -> {cycle[0]}")
    if lockdep.cycles:
        lines.append("")
    return lines


def _header(run: RunRecord) -> str:
    return (f"# {run_label(run)} ({run.scenario}, seed {run.param_int('seed')}, "
            f"{run.param_int('cpus')} CPUs)")


def lockdep_listing(results: Results) -> str:
    """lockdep.txt: the /proc/lockdep listing of each design's run."""
    out = []
    for run in check_results(results).runs:
        out.append(_header(run))
        lockdep = run.lockdep_section()
        if lockdep.deps is None:
            out += ["# no dependency graph in this record (lockdep off, or recorded before it was kept)", ""]
            continue
        out += _listing(lockdep)
    return "\n".join(out).rstrip("\n") + "\n"


_STATS = (
    ("lock-classes", "lock-classes"),
    ("direct dependencies", "direct dependencies"),
    ("indirect dependencies", "indirect dependencies"),
    ("dependency chains", "dependency chains"),
    ("max locking depth", "max locking depth"),
    ("acquisitions", "acquisitions"),
    ("circular dependencies found", "circular"),
    ("recursive locking found", "recursive"),
    ("bad unlock balance found", "bad_unlock"),
)


def lockdep_stats_text(results: Results) -> str:
    """lockdep_stats.txt: ``/proc/lockdep_stats``-style totals per design."""
    out = []
    for run in check_results(results).runs:
        out.append(_header(run))
        lockdep = run.lockdep_section()
        stats = lockdep.stats
        if not stats:
            out += ["# no statistics in this record (lockdep off, or recorded before they were kept)", ""]
            continue
        for label, key in _STATS:
            out.append(f" {label + ':':<31}{stats[key]:11d}")
        order = lockdep.order
        if order is not None:
            out.append(f" {'declared order violations:':<31}{len(lockdep.order_violations):11d}")
            out.append(f" {'declared order:':<31} {order.source}" + (f" ({order.file})" if order.file else ""))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# -- the picture ----------------------------------------------------------------------------------------


def _dq(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def lockgraph_dot(run: RunInput, scenario: str = "") -> str:
    """The dependency graph of one run as DOT text (deterministic)."""
    rec = as_run(run)
    lockdep = rec.lockdep_section()
    deps = _deps(lockdep)
    waits = _class_waits(rec)
    bad = _violating_edges(lockdep)
    cyc = _cycle_edges(lockdep)
    order = lockdep.order
    src = order.source if order is not None else ""
    design = run_label(rec)
    title = f"{scenario or rec.scenario} under {design}: lock dependencies ({order_verdict(rec)})"
    legend = ("edge: held -> acquired, labelled with how often it was taken; width: total wait for the acquired "
              "class (lock_stat: 1 + 1.25 per decade of us); node shade: wait for that class (full at 100 ms)")
    marks = []
    if bad:
        marks.append(f"red: violates {src}")
    if cyc:
        marks.append("purple: on a dependency cycle")
    marks.append("dashed: nesting within one class (subclass)")
    lines = [
        "digraph lockdep {",
        "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=12, labelloc=t, nodesep=0.35, ranksep=0.5, "
        f"label={_dq(title + chr(10) + legend + chr(10) + '; '.join(marks))}];",
        "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11, color=\"#607d8b\"];",
        "  edge [fontname=\"Helvetica\", fontsize=9, arrowsize=0.7];",
    ]
    for cls in _classes(lockdep):
        name = cls.name
        cont, wait = waits.get(name, (0, 0))  # a class lock_stat never saw (no instance) waited for nothing
        shade = min(1.0, _decades(wait) / 5.0)
        fill = _mix("#f5f7f8", "#ffab91", shade)
        label = f"{name}\n{{{cls.usage}}} {cls.acquisitions:,} acq"
        if wait:
            label += f"\nwaited {cont:,}x, {fmt_time(wait)}"
        tooltip = f"{name}: {cls.acquisitions} acquisitions, {cont} contentions, {wait} ns waited"
        lines.append(f"  {_dq(name)} [label={_dq(label)}, fillcolor={_dq(fill)}, tooltip={_dq(tooltip)}];")
    for d in deps:
        a, b = d.held, d.acquired
        _, wait = waits.get(b, (0, 0))
        width = 1.0 + 1.25 * _decades(wait)
        attrs = [f"label={_dq(format(d.count, ','))}", f"penwidth={width:.2f}"]
        tip = f"{a} -> {b} {' '.join(d.types)}: {d.count} times ({_ops_text(d.ops)})"
        if (a, b) in bad:
            attrs += [f"color={_dq(_VIOLATION)}", f"fontcolor={_dq(_VIOLATION)}"]
            tip += f"; violates {src}"
            what = " VIOLATION, CYCLE" if (a, b) in cyc else " VIOLATION"
            attrs[0] = f"label={_dq(format(d.count, ',') + what)}"
        elif (a, b) in cyc:
            attrs += [f"color={_dq(_CYCLE)}", f"fontcolor={_dq(_CYCLE)}"]
            attrs[0] = f"label={_dq(format(d.count, ',') + ' CYCLE')}"
        elif _base(a) == _base(b):
            attrs += [f"color={_dq(_NESTING)}", "style=dashed"]
        else:
            attrs.append(f"color={_dq(_PLAIN)}")
        if (a, b) in cyc:
            tip += "; on a dependency cycle"
            if (a, b) in bad:
                attrs.append("style=bold")
        attrs.append(f"tooltip={_dq(tip)}")
        lines.append(f"  {_dq(a)} -> {_dq(b)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _decades(wait_ns: int) -> float:
    """Decades of microseconds waited: log10(1 + wait/1 us).  An absolute scale, so that the
    graphs of two designs side by side compare (1 us -> 0.3, 1 ms -> 3, 100 ms -> 5)."""
    return math.log10(1.0 + wait_ns / 1000.0)


def _mix(a: str, b: str, t: float) -> str:
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb, strict=True))


def find_dot() -> str | None:
    """Graphviz's ``dot`` on PATH, or None."""
    return shutil.which("dot")


DOT_MISSING = ("the dependency graph is not drawn: Graphviz's dot was not found on PATH (install Debian's "
               "graphviz package: apt-get install graphviz); its DOT source is in {dot_file}")


def render_svg(dot_text: str, dot: str | None = None) -> tuple[bytes | None, str]:
    """Lay out and draw DOT text as SVG with ``dot``: (svg, "") or (None, why not)."""
    return _SvgJob(dot_text, dot).result()


class _SvgJob:
    """One ``dot -Tsvg`` started at once and collected later, so that the graphs of several
    designs are laid out side by side (and beside the rest of the reports) instead of in turn."""

    def __init__(self, dot_text: str, dot: str | None = None) -> None:
        self.binary = dot if dot is not None else find_dot()
        self.proc: subprocess.Popen[bytes] | None = None
        self.why = ""
        self.data = dot_text.encode()
        if self.binary is None:
            self.why = DOT_MISSING
            return
        try:
            self.proc = subprocess.Popen([self.binary, "-Tsvg"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        except OSError as exc:
            self.why = f"the dependency graph is not drawn: running {self.binary} failed ({exc})"

    def result(self) -> tuple[bytes | None, str]:
        proc = self.proc
        if proc is None:
            return None, self.why
        try:
            out, err_bytes = proc.communicate(self.data, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc.kill()
            proc.communicate()
            return None, f"the dependency graph is not drawn: running {self.binary} failed ({exc})"
        if proc.returncode != 0 or not out:
            err = err_bytes.decode(errors="replace").strip().splitlines()
            return None, f"the dependency graph is not drawn: {self.binary} exited {proc.returncode}" + (
                f" ({err[-1]})" if err else "")
        return out, ""

    def close(self) -> None:
        """Stop it when its result will not be asked for (the rendering failed in between)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


# A design's lockgraph to write: (design, file stem, DOT text, its dot run or None when it has no graph).
LockgraphJob = tuple[str, str, str, "_SvgJob | None"]


def start_lockgraphs(results: Results, dot: str | None = None) -> list[LockgraphJob]:
    """Every design's ``dot`` started at once (they run beside whatever comes next); hand the list
    to :func:`write_lockdep_reports`, which collects them (and stops them if it fails first)."""
    doc = check_results(results)
    scenario = doc.scenario.name
    jobs: list[LockgraphJob] = []
    try:
        for run in doc.runs:
            design = run_label(run)
            stem = f"lockgraph-{safe_name(design)}"
            if run.lockdep_section().deps is None:
                jobs.append((design, stem, "", None))
                continue
            dot_text = lockgraph_dot(run, scenario)
            jobs.append((design, stem, dot_text, _SvgJob(dot_text, dot)))
    except BaseException:
        close_lockgraphs(jobs)
        raise
    return jobs


def close_lockgraphs(jobs: list[LockgraphJob]) -> None:
    """Stop the dot runs of :func:`start_lockgraphs` that nobody will collect."""
    for *_, job in jobs:
        if job is not None:
            job.close()


def write_lockdep_reports(results: Results, outdir: Path, written: list[Path],
                          dot: str | None = None, started: list[LockgraphJob] | None = None,
                          ) -> dict[str, tuple[bytes | None, str]]:
    """lockdep.txt, lockdep_stats.txt and each design's lockgraph (.dot, and .svg when dot
    runs) into ``outdir``; returns design -> (svg or None, why there is none).  ``started``: the
    :func:`start_lockgraphs` of these results, when the caller started them earlier."""
    doc = check_results(results)
    outdir = Path(outdir)
    jobs = started if started is not None else start_lockgraphs(doc, dot)
    try:
        for name, text in (("lockdep.txt", lockdep_listing(doc)), ("lockdep_stats.txt", lockdep_stats_text(doc))):
            atomic_write(outdir / name, text)
            written.append(outdir / name)
        graphs: dict[str, tuple[bytes | None, str]] = {}
        for design, stem, dot_text, job in jobs:
            svg_path = outdir / f"{stem}.svg"
            if job is None:
                svg_path.unlink(missing_ok=True)
                graphs[design] = (None, "no dependency graph: the order checker did not run (lockdep.enabled = "
                                        "false) or the record predates the graph")
                continue
            atomic_write(outdir / f"{stem}.dot", dot_text)
            written.append(outdir / f"{stem}.dot")
            svg, why = job.result()
            if svg is None:
                svg_path.unlink(missing_ok=True)  # no stale picture of an earlier render
                graphs[design] = (None, why.format(dot_file=f"{stem}.dot"))
                continue
            atomic_write(svg_path, svg)
            written.append(svg_path)
            graphs[design] = (svg, "")
    finally:
        close_lockgraphs(jobs)
    return graphs


def lockgraph_html(run: RunRecord, graph: tuple[bytes | None, str] | None) -> str:
    """The report page's part for one run: the verdict, the graph (or why it is absent), and the
    /proc/lockdep listing folded away."""
    design = run_label(run)
    out = [f'<p class="muted">order verdict: {escape(order_verdict(run))}</p>\n']
    if graph is not None and graph[0] is not None:
        data = base64.b64encode(graph[0]).decode()
        out.append(f'<img class="plot" alt="{escape(f"lock dependency graph of {design}")}" '
                   f'src="data:image/svg+xml;base64,{data}">\n')
    elif graph is not None:
        out.append(f'<p class="muted lockgraph-absent">{escape(graph[1])}</p>\n')
    lockdep = run.lockdep_section()
    if lockdep.deps is not None:
        listing = "\n".join(_listing(lockdep)).rstrip("\n")
        out.append(f"<details><summary>/proc/lockdep ({design})</summary>\n<pre>{escape(listing)}</pre>"
                   "</details>\n")
    return "".join(out)


# -- the verdict beside the cost --------------------------------------------------------------------------


def order_rows(runs: Sequence[RunInput], label: str = "design") -> tuple[list[str], list[list[str]]]:
    """Headers and one row per run: its order verdict beside what its locks cost."""
    headers = [label, "order verdict", "classes", "deps", "cycles", "violations", "lock wait", "top wait"]
    rows = []
    for run in map(as_run, runs):
        lockdep = run.lockdep_section()
        stats = lockdep.stats  # None or empty with the checker off: "-" classes, the edges counted
        waits = _class_waits(run)
        top = max(waits.items(), key=lambda kv: (kv[1][1], kv[0]), default=None)
        top_text = f"{top[0]} {fmt_time(top[1][1])}" if top and top[1][1] else "-"
        ndeps = stats["direct dependencies"] if stats else len(lockdep.edges)
        classes = str(stats["lock-classes"]) if stats else "-"
        rows.append([run_label(run), order_verdict(run, short=True), classes, str(ndeps),
                     str(len(lockdep.cycles or ())), str(len(lockdep.order_violations)),
                     fmt_pct(wait_share(run)), top_text])
    return headers, rows


def order_section(runs: Sequence[RunInput]) -> str:
    """The order verdict of each run beside its contention (for compare.txt and the terminal)."""
    headers, rows = order_rows(runs)
    return ("Lock order (the order checker's verdict beside what the locks cost; lock wait = share of CPU "
            "time)\n" + format_table(headers, rows, align="llrrrrrl", indent="  "))
