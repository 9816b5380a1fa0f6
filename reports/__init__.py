"""Reports: pure functions of saved result records (``result.json``, ``sweep.json``).

``render_run`` writes, next to a run's result.json: ``lockstat.txt`` (/proc/lock_stat layout),
``perf_lock.txt`` (``perf lock contention`` layout), ``latency.txt``, ``compare.txt``, the
pictures (``*.png`` and ``*.svg``), ``report.html`` (self-contained) and ``hlog/<op>.hlog``
(HdrHistogram interval logs).  ``render_sweep`` writes ``sweep.txt``, the scaling curves and a
sweep ``report.html``.  ``render_dir`` re-renders a folder from its result.json or sweep.json
alone; the same input always gives the same bytes, and every file is written atomically.

This package never imports the engine, mm, actors or workloads' runners: a report knows nothing
of how a result was produced.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from records.files import atomic_write
from records.result import JsonObject, RunRecord
from records.sweep import SweepFile
from reports.common import (
    SWEEP_SCHEMA,
    Results,
    RunInput,
    as_run,
    check_results,
    fmt_pct,
    fmt_time,
    format_table,
    op_names,
)
from reports.common import total_throughput as _total_throughput
from reports.common import wait_share as _wait_share
from reports.compare import compare_text, verdict
from reports.hlog import write_hlogs
from reports.html import run_html, sweep_html
from reports.latency import latency_text
from reports.lockgraph import close_lockgraphs, order_section, start_lockgraphs, write_lockdep_reports
from reports.lockstat import lockstat_text
from reports.perf_lock import perf_lock_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "SWEEP_SCHEMA",
    "TEXT_REPORTS",
    "LoadedPoint",
    "load_sweep_points",
    "render_dir",
    "render_run",
    "render_sweep",
    "summary_text",
    "sweep_counts",
    "sweep_text",
    "sweep_title",
    "top_contended",
]

SweepInput = SweepFile | Mapping[str, object]  # the typed sweep, or sweep.json as read


def _write(path: Path, text: str | bytes, written: list[Path]) -> None:
    atomic_write(path, text)
    written.append(path)


def _save(fig: Figure, outdir: Path, name: str, written: list[Path]) -> bytes:
    """Write ``name.png`` and ``name.svg``; return the SVG for the page."""
    from reports.plots import figure_bytes  # matplotlib is imported only when a picture is drawn

    _write(outdir / f"{name}.png", figure_bytes(fig, "png"), written)
    svg = figure_bytes(fig, "svg")
    _write(outdir / f"{name}.svg", svg, written)
    return svg


# The text reports of a run, by file name: a new report is its module plus one line here.
TEXT_REPORTS: dict[str, Callable[[Results], str]] = {
    "lockstat.txt": lockstat_text,
    "perf_lock.txt": perf_lock_text,
    "latency.txt": latency_text,
    "compare.txt": compare_text,
}


def render_run(results: Results, outdir: Path) -> list[Path]:
    """Every report of one run (all its designs) into ``outdir``; returns the files written."""
    doc = check_results(results)
    outdir = Path(outdir)
    written: list[Path] = []
    from reports.figure_jobs import FigureJobs
    from reports.plots import RUN_FIGURES  # matplotlib is imported only when a picture is drawn

    runs = doc.runs
    # The pictures are drawn in forked processes (the first ones) while this one writes the text
    # reports and draws the rest: the same bytes, off the critical path (reports/figure_jobs.py).
    # Graphviz lays the lock graphs out beside them too.
    graph_jobs = start_lockgraphs(doc)
    try:
        with FigureJobs({name: functools.partial(make, runs) for name, make in RUN_FIGURES.items()}) as jobs:
            for name, text in TEXT_REPORTS.items():
                _write(outdir / name, text(doc), written)
            drawn = jobs.results()
    except BaseException:
        close_lockgraphs(graph_jobs)
        raise
    svgs: dict[str, bytes] = {}
    for name, (png, svg) in drawn.items():
        _write(outdir / f"{name}.png", png, written)
        _write(outdir / f"{name}.svg", svg, written)
        svgs[name] = svg
    # lockdep.txt, lockdep_stats.txt, lockgraph-* (and it stops the dot runs if anything above failed)
    lockgraphs = write_lockdep_reports(doc, outdir, written, started=graph_jobs)
    _write(outdir / "report.html", run_html(doc, svgs, lockgraphs=lockgraphs), written)
    written += write_hlogs(doc, outdir)
    return written


def _sweep(sweep: SweepInput) -> SweepFile:
    return sweep if isinstance(sweep, SweepFile) else SweepFile.from_json(sweep)


@dataclass(frozen=True, slots=True)
class LoadedPoint:
    """A sweep point with its runs read from its result file (none when it has no file: a point
    that crashed before any record, a lost worker, a pending point); ``status`` is ``missing``
    for an ``ok`` point whose file is gone."""

    params: JsonObject
    status: str
    error: str | None
    category: str | None
    designs: dict[str, tuple[str, ...]]  # design -> its run's failure categories
    runs: tuple[RunRecord, ...]

    def design_verdict(self, design: str) -> str:
        """``ok`` or the failure categories of one design's run at this point."""
        cats = self.designs.get(design, ())  # a design with no recorded verdict passed
        return ",".join(cats) if cats else "ok"


def load_sweep_points(sweep: SweepInput, outdir: Path) -> list[LoadedPoint]:
    """The sweep's points, each with its verdict and ``runs`` loaded from its result file (empty
    when it has none: a point that crashed before any record, a lost worker, a pending point)."""
    points = []
    for p in _sweep(sweep).points:
        status, error = p.status, p.error
        runs: tuple[RunRecord, ...] = ()
        if p.result and status in ("ok", "failed"):
            path = Path(outdir) / p.result
            if path.exists():
                runs = check_results(json.loads(path.read_text())).runs
            elif status == "ok":
                status, error = "missing", f"result file {p.result} not found"
        points.append(LoadedPoint(dict(p.params), status, error, p.category, dict(p.designs), runs))
    return points


def sweep_title(sweep: SweepInput) -> str:
    """``<scenario> over <key> (values) x <key> (values)``: what the sweep is of."""
    doc = _sweep(sweep)
    name = doc.scenario.name or (doc.scenario.source or "?").rsplit(".", 1)[0]
    parts = []
    for k, vals in doc.grid.items():
        shown = [json.dumps(v) for v in vals]
        if len(shown) > 8:  # a long list of seeds: its ends and its length
            shown = [*shown[:3], "...", f"{shown[-1]}: {len(vals)} values"]
        parts.append(f"{k} ({', '.join(shown)})")
    return f"{name} over {' x '.join(parts)}" if parts else name


def sweep_counts(points: Sequence[LoadedPoint]) -> str:
    """``N points: X ok, Y failed (category n, ...), Z not run``."""
    failed: dict[str, int] = {}
    for p in points:
        if p.status != "ok" and p.status != "pending":
            cat = p.category or p.status
            failed[cat] = failed.get(cat, 0) + 1
    ok = sum(1 for p in points if p.status == "ok")
    pending = sum(1 for p in points if p.status == "pending")
    text = f"{len(points)} points: {ok} ok, {sum(failed.values())} failed"
    if failed:
        text += " (" + ", ".join(f"{c} {n}" for c, n in sorted(failed.items())) + ")"
    if pending:
        text += f", {pending} not run"
    return text


def sweep_text(sweep: SweepInput, points: Sequence[LoadedPoint]) -> str:
    """sweep.txt: one row per (point, design): parameters, the point's status (``point``), the design
    run's verdict (``run``: ok or its failure categories), throughput, p99 per operation, wait share;
    then the counts and every failed point with its category and why."""
    doc = _sweep(sweep)
    keys = list(doc.grid)
    ops = op_names([run for p in points for run in p.runs])
    headers = [*keys, "design", "point", "run", "ops/s", *(f"{op} p99" for op in ops), "lock wait"]
    rows = []
    for p in points:
        params = [json.dumps(p.params[k]) for k in keys]
        if not p.runs:
            rows.append([*params, "-", p.status, p.category or "-", "-", *("-" for _ in ops), "-"])
            continue
        for run in p.runs:
            lat = [fmt_time(run.operations[op].p99_ns) if op in run.operations else "-" for op in ops]
            rows.append([*params, run.design, p.status, p.design_verdict(run.design),
                         f"{_total_throughput(run):,.1f}", *lat, fmt_pct(_wait_share(run))])
    title = f"Sweep of scenario {sweep_title(doc)}\n\n"
    text = title + format_table(headers, rows, align="l" * (len(keys) + 3) + "r" * (len(ops) + 2))
    text += f"\n{sweep_counts(points)}\n"
    failed = [p for p in points if p.status not in ("ok", "pending")]
    if failed:
        text += "\nfailed points:\n" + "".join(
            f"  {json.dumps(p.params, sort_keys=True)}: {p.category or p.status}: {p.error}\n" for p in failed)
    return text


def render_sweep(sweep: SweepInput, outdir: Path) -> list[Path]:
    """The sweep's table, scaling curves and page into ``outdir`` (point results read from there)."""
    doc = _sweep(sweep)
    outdir = Path(outdir)
    points = load_sweep_points(doc, outdir)
    written: list[Path] = []
    table = sweep_text(doc, points)
    _write(outdir / "sweep.txt", table, written)
    # Every run with a record is drawn; a run that failed its checks is marked on the curve.
    drawn = [(p.params, p.runs, {r.design for r in p.runs if p.design_verdict(r.design) != "ok"})
             for p in points if p.runs]
    from reports.plots import scaling_figures

    svgs: dict[str, bytes] = {}
    for name, fig in scaling_figures(drawn, doc.grid).items():
        svgs[name] = _save(fig, outdir, name, written)
    for stale in sorted(outdir.glob("scaling_*")):  # curves an earlier rendering drew, no longer asked for
        if stale.suffix in (".png", ".svg") and stale.stem not in svgs:
            stale.unlink()
    _write(outdir / "report.html", sweep_html(doc, table, svgs, title=sweep_title(doc),
                                              counts=sweep_counts(points)), written)
    return written


def render_dir(outdir: Path) -> list[Path]:
    """Re-render a run or sweep folder from its ``sweep.json`` or ``result.json`` alone."""
    outdir = Path(outdir)
    sweep_path = outdir / "sweep.json"
    if sweep_path.exists():
        return render_sweep(json.loads(sweep_path.read_text()), outdir)
    result_path = outdir / "result.json"
    if not result_path.exists():
        raise FileNotFoundError(f"{outdir}: neither result.json nor sweep.json")
    return render_run(json.loads(result_path.read_text()), outdir)


def top_contended(run: RunInput, n: int = 5) -> list[tuple[str, str, int, int, int]]:
    """The ``n`` lock sides with the most wait time: (class, R/W, contentions, total wait, max wait)."""
    out = []
    for lock in as_run(run).lock_classes():
        for side_name, side in lock.sides():
            if side.contentions:
                out.append((lock.name, "R" if side_name == "read" else "W", side.contentions,
                            side.waittime_total_ns, side.waittime_max_ns))
    out.sort(key=lambda t: (-t[3], -t[2], t[0], t[1]))
    return out[:n]


def summary_text(results: Results) -> str:
    """What the terminal shows after a run: latency percentiles, top contended locks, verdict."""
    doc = check_results(results)
    out = [latency_text(doc)]
    lines = ["Top contended locks (by total wait)"]
    for run in doc.runs:
        top = top_contended(run)
        lines.append(f"  {run.design}:" + ("" if top else " no lock was waited for"))
        if top:
            cells = [[name, mode, f"{c:,}", fmt_time(t), fmt_time(m)] for name, mode, c, t, m in top]
            table = format_table(["lock", "mode", "contended", "total wait", "max wait"], cells,
                                 align="llrrr", indent="    ")
            lines.append(table.rstrip("\n"))
    out.append("\n".join(lines) + "\n")
    out.append(order_section(doc.runs))  # issue 17: the order verdict beside the lock wait
    out.append("Verdict\n" + "".join(f"  - {line}\n" for line in verdict(doc)))
    return "\n".join(out)
