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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from records.files import atomic_write
from reports.common import SWEEP_SCHEMA, check_results, fmt_pct, fmt_time, format_table, op_names, side_names
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
    "TEXT_REPORTS",
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
TEXT_REPORTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "lockstat.txt": lockstat_text,
    "perf_lock.txt": perf_lock_text,
    "latency.txt": latency_text,
    "compare.txt": compare_text,
}


def render_run(results: dict[str, Any], outdir: Path) -> list[Path]:
    """Every report of one run (all its designs) into ``outdir``; returns the files written."""
    results = check_results(results)
    outdir = Path(outdir)
    written: list[Path] = []
    from reports.figure_jobs import FigureJobs
    from reports.plots import RUN_FIGURES  # matplotlib is imported only when a picture is drawn

    runs = results["runs"]
    # The pictures are drawn in forked processes (the first ones) while this one writes the text
    # reports and draws the rest: the same bytes, off the critical path (reports/figure_jobs.py).
    # Graphviz lays the lock graphs out beside them too.
    graph_jobs = start_lockgraphs(results)
    try:
        with FigureJobs({name: functools.partial(make, runs) for name, make in RUN_FIGURES.items()}) as jobs:
            for name, text in TEXT_REPORTS.items():
                _write(outdir / name, text(results), written)
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
    lockgraphs = write_lockdep_reports(results, outdir, written, started=graph_jobs)
    _write(outdir / "report.html", run_html(results, svgs, lockgraphs=lockgraphs), written)
    written += write_hlogs(results, outdir)
    return written


def load_sweep_points(sweep: Mapping[str, Any], outdir: Path) -> list[dict[str, Any]]:
    """The sweep's points, each with its verdict and ``runs`` loaded from its result file (``[]``
    when it has none: a point that crashed before any record, a lost worker, a pending point)."""
    if sweep.get("schema") != SWEEP_SCHEMA:
        raise ValueError(f"not a sweep file: schema is {sweep.get('schema')!r}, expected {SWEEP_SCHEMA!r}")
    points = []
    for p in sweep.get("points", []):
        status = p.get("status", "failed")
        point = {"params": dict(p.get("params", {})), "status": status, "error": p.get("error"),
                 "category": p.get("category"), "designs": dict(p.get("designs") or {}), "runs": []}
        if p.get("result") and status in ("ok", "failed"):
            path = Path(outdir) / str(p["result"])
            if path.exists():
                point["runs"] = check_results(json.loads(path.read_text()))["runs"]
            elif status == "ok":
                point["status"], point["error"] = "missing", f"result file {p['result']} not found"
        points.append(point)
    return points


def sweep_title(sweep: Mapping[str, Any]) -> str:
    """``<scenario> over <key> (values) x <key> (values)``: what the sweep is of."""
    scen = sweep.get("scenario", {})
    name = scen.get("name") or str(scen.get("source") or "?").rsplit(".", 1)[0]
    grid = sweep.get("grid", {})
    parts = []
    for k, vals in grid.items():
        shown = [json.dumps(v) for v in vals]
        if len(shown) > 8:  # a long list of seeds: its ends and its length
            shown = [*shown[:3], "...", f"{shown[-1]}: {len(vals)} values"]
        parts.append(f"{k} ({', '.join(shown)})")
    return f"{name} over {' x '.join(parts)}" if parts else str(name)


def sweep_counts(points: Sequence[Mapping[str, Any]]) -> str:
    """``N points: X ok, Y failed (category n, ...), Z not run``."""
    failed: dict[str, int] = {}
    for p in points:
        if p["status"] != "ok" and p["status"] != "pending":
            cat = str(p.get("category") or p["status"])
            failed[cat] = failed.get(cat, 0) + 1
    ok = sum(1 for p in points if p["status"] == "ok")
    pending = sum(1 for p in points if p["status"] == "pending")
    text = f"{len(points)} points: {ok} ok, {sum(failed.values())} failed"
    if failed:
        text += " (" + ", ".join(f"{c} {n}" for c, n in sorted(failed.items())) + ")"
    if pending:
        text += f", {pending} not run"
    return text


def _design_verdict(point: Mapping[str, Any], design: str) -> str:
    """``ok`` or the failure categories of one design's run at a point."""
    cats = (point.get("designs") or {}).get(design, {}).get("categories") or []
    return ",".join(cats) if cats else "ok"


def sweep_text(sweep: Mapping[str, Any], points: Sequence[Mapping[str, Any]]) -> str:
    """sweep.txt: one row per (point, design): parameters, the point's status (``point``), the design
    run's verdict (``run``: ok or its failure categories), throughput, p99 per operation, wait share;
    then the counts and every failed point with its category and why."""
    keys = list(sweep.get("grid", {}))
    ops = op_names([run for p in points for run in p["runs"]])
    headers = [*keys, "design", "point", "run", "ops/s", *(f"{op} p99" for op in ops), "lock wait"]
    rows = []
    for p in points:
        params = [json.dumps(p["params"].get(k)) for k in keys]
        if not p["runs"]:
            rows.append([*params, "-", str(p["status"]), str(p.get("category") or "-"), "-", *("-" for _ in ops), "-"])
            continue
        for run in p["runs"]:
            lat = [fmt_time(int(run.get("operations", {}).get(op, {}).get("p99_ns", 0) or 0))
                   if op in run.get("operations", {}) else "-" for op in ops]
            design = str(run.get("design", "?"))
            rows.append([*params, design, str(p["status"]), _design_verdict(p, design),
                         f"{_total_throughput(run):,.1f}", *lat, fmt_pct(_wait_share(run))])
    title = f"Sweep of scenario {sweep_title(sweep)}\n\n"
    text = title + format_table(headers, rows, align="l" * (len(keys) + 3) + "r" * (len(ops) + 2))
    text += f"\n{sweep_counts(points)}\n"
    failed = [p for p in points if p["status"] not in ("ok", "pending")]
    if failed:
        text += "\nfailed points:\n" + "".join(
            f"  {json.dumps(p['params'], sort_keys=True)}: {p.get('category') or p['status']}: {p['error']}\n"
            for p in failed)
    return text


def render_sweep(sweep: dict[str, Any], outdir: Path) -> list[Path]:
    """The sweep's table, scaling curves and page into ``outdir`` (point results read from there)."""
    outdir = Path(outdir)
    points = load_sweep_points(sweep, outdir)
    written: list[Path] = []
    table = sweep_text(sweep, points)
    _write(outdir / "sweep.txt", table, written)
    # Every run with a record is drawn; a run that failed its checks is marked on the curve.
    drawn = [(p["params"], p["runs"], {str(r.get("design")) for r in p["runs"]
                                       if _design_verdict(p, str(r.get("design"))) != "ok"})
             for p in points if p["runs"]]
    from reports.plots import scaling_figures

    svgs: dict[str, bytes] = {}
    for name, fig in scaling_figures(drawn, sweep.get("grid", {})).items():
        svgs[name] = _save(fig, outdir, name, written)
    for stale in sorted(outdir.glob("scaling_*")):  # curves an earlier rendering drew, no longer asked for
        if stale.suffix in (".png", ".svg") and stale.stem not in svgs:
            stale.unlink()
    _write(outdir / "report.html", sweep_html(sweep, table, svgs, title=sweep_title(sweep),
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


def top_contended(run: Mapping[str, Any], n: int = 5) -> list[tuple[str, str, int, int, int]]:
    """The ``n`` lock sides with the most wait time: (class, R/W, contentions, total wait, max wait)."""
    out = []
    for lock in run.get("locks", []):
        for side in side_names(lock):
            s = lock[side]
            if int(s.get("contentions", 0)):
                out.append((str(lock["name"]), "R" if side == "read" else "W", int(s["contentions"]),
                            int(s.get("waittime_total_ns", 0)), int(s.get("waittime_max_ns", 0))))
    out.sort(key=lambda t: (-t[3], -t[2], t[0], t[1]))
    return out[:n]


def summary_text(results: Mapping[str, Any]) -> str:
    """What the terminal shows after a run: latency percentiles, top contended locks, verdict."""
    results = check_results(results)
    out = [latency_text(results)]
    lines = ["Top contended locks (by total wait)"]
    for run in results["runs"]:
        top = top_contended(run)
        lines.append(f"  {run.get('design', '?')}:" + ("" if top else " no lock was waited for"))
        if top:
            cells = [[name, mode, f"{c:,}", fmt_time(t), fmt_time(m)] for name, mode, c, t, m in top]
            table = format_table(["lock", "mode", "contended", "total wait", "max wait"], cells,
                                 align="llrrr", indent="    ")
            lines.append(table.rstrip("\n"))
    out.append("\n".join(lines) + "\n")
    out.append(order_section(results["runs"]))  # issue 17: the order verdict beside the lock wait
    out.append("Verdict\n" + "".join(f"  - {line}\n" for line in verdict(results)))
    return "\n".join(out)
