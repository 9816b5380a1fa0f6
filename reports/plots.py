"""Pictures of a run or a sweep (matplotlib, Agg; PNG and SVG with reproducible bytes).

* latency distribution per operation and design on HdrHistogram's "nines" axis
  (x = 1/(1-p), log scale, labelled 0%, 90%, 99%, 99.9%, ...);
* throughput per operation and design (bars);
* lock wait time by lock class and design (bars);
* CPU time split per design (stacked bars);
* scaling curves from a sweep: total throughput and p99 against each numeric swept key (never the
  seed: seeds give a mean with a min-max band), one line per design; legends outside the plots.

Reproducible bytes: figures are built on :class:`matplotlib.figure.Figure` (no pyplot state),
under a fixed style (``svg.hashsalt`` fixed so SVG ids do not come from random UUIDs), and saved
without dates or version strings in their metadata.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from pathlib import Path
from typing import TypeGuard

import matplotlib
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter
from matplotlib.typing import RcKeyType

from records.files import atomic_write
from records.result import JsonValue, LockClass, RunRecord
from reports.common import RunInput, as_run, decode_hdr, fmt_time, op_names, total_throughput
from reports.compare import CPU_STATES

__all__ = [
    "RUN_FIGURES",
    "cpu_time_figure",
    "figure_bytes",
    "is_seed_key",
    "latency_figure",
    "lock_wait_figure",
    "run_figures",
    "save_figure",
    "scaling_figures",
    "scaling_keys",
    "throughput_figure",
]

_STYLE: dict[RcKeyType, object] = {  # rcParams
    "svg.hashsalt": "rmapsim",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100.0,
    "savefig.dpi": 100.0,
}
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
_CPU_COLORS = {"running": "#2ca02c", "spinning": "#d62728", "sleeping": "#1f77b4", "idle": "#c7c7c7"}
_LINESTYLES = ("-", "--", ":", "-.")
_NINES = ((1.0, "0%"), (10.0, "90%"), (100.0, "99%"), (1e3, "99.9%"), (1e4, "99.99%"), (1e5, "99.999%"),
          (1e6, "99.9999%"))


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_STYLE):
        yield


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas (no pyplot, no GUI backend, no global figure registry), laid out
    by the constrained layout."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes, identical for identical figures."""
    buf = io.BytesIO()
    with _style(), warnings.catch_warnings():
        # a crowded legend can squeeze the axes; the picture is still drawn, so keep stderr quiet
        warnings.filterwarnings("ignore", message="constrained_layout not applied")
        if fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "rmapsim"})
        elif fmt == "png":
            fig.savefig(buf, format="png", metadata={"Software": "rmapsim"})
        else:
            raise ValueError(f"unknown figure format {fmt!r}")
    return buf.getvalue()


def save_figure(fig: Figure, outdir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.svg`` into ``outdir``."""
    paths = []
    for fmt in ("png", "svg"):
        path = outdir / f"{name}.{fmt}"
        atomic_write(path, figure_bytes(fig, fmt))
        paths.append(path)
    return paths


def _time_unit(max_ns: float) -> tuple[float, str]:
    """A unit that keeps the largest value between 1 and 1000: (ns per unit, unit label)."""
    for scale, unit in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if max_ns >= scale:
            return scale, unit
    return 1.0, "ns"


def _plain_numbers(axis: Axis) -> None:
    """Tick labels as 1,234,567 rather than an offset and an exponent."""
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


# -- latency distribution ----------------------------------------------------------------------


def _nines_points(count: int) -> list[float]:
    """x = 1/(1-p) at ten points a decade, up to the last rank the histogram resolves."""
    xs = []
    k = 0
    while True:
        x = 10 ** (k / 10)
        if x > max(count, 1):
            break
        xs.append(x)
        k += 1
    return xs


def latency_figure(runs: Sequence[RunRecord]) -> Figure:
    """Latency percentile distribution, one panel per operation, one line per design."""
    ops = op_names(runs)
    with _style():
        ncols = max(1, min(3, len(ops)))
        nrows = max(1, math.ceil(len(ops) / ncols))
        fig = _new_figure(figsize=(4.8 * ncols, 3.4 * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False)
        flat = [ax for row in axes for ax in row]
        if not ops:
            _no_data(flat[0], "no operations recorded")
        for ax in flat[len(ops):]:
            ax.set_visible(False)
        for ax, op in zip(flat, ops, strict=False):
            curves = []
            for i, run in enumerate(runs):
                rec = run.operations.get(op)  # no curve for a design that never ran the operation
                hist = decode_hdr(rec.hdr) if rec is not None else None
                if hist is None:
                    continue
                xs = _nines_points(int(hist.get_total_count()))
                pcts = [100.0 * (1 - 1 / x) for x in xs]
                values = hist.get_percentile_to_value_dict(pcts)
                curves.append((i, run.design, xs, [float(values[p]) for p in pcts]))
            ymax = max((max(ys) for _, _, _, ys in curves), default=0.0)
            ymin = min((y for _, _, _, ys in curves for y in ys if y > 0), default=math.inf)
            xmax = max((xs[-1] for _, _, xs, _ in curves), default=1.0)
            scale, unit = _time_unit(ymax)
            for i, design, xs, ys in curves:
                ax.plot(xs, [y / scale for y in ys], color=_color(i), label=design, linewidth=1.4)
            ax.set_xscale("log")
            ticks = [(x, lab) for x, lab in _NINES if x <= max(xmax, 10.0) * 1.0001]
            ax.set_xticks([x for x, _ in ticks], [lab for _, lab in ticks])
            ax.minorticks_off()
            ax.set_xlim(1.0, max(xmax, 10.0))
            if ymax > 0 and ymin < math.inf and ymax / ymin > 100:
                ax.set_yscale("log")
            ax.set_title(op)
            ax.set_xlabel("percentile")
            ax.set_ylabel(f"latency ({unit})")
            if ax.lines:
                ax.legend(loc="best", fontsize=8)
        fig.suptitle("Operation latency by percentile (virtual time)")
    return fig


# -- bars ------------------------------------------------------------------------------------------


def _grouped_barh(ax: Axes, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]],
                  values_text: Sequence[Sequence[str]] | None = None) -> None:
    """Horizontal bars, one group per label, one bar per series; optional text at each bar's end."""
    n = max(1, len(series))
    height = 0.8 / n
    for i, (name, values) in enumerate(series):
        ys = [j + (i - (n - 1) / 2) * height for j in range(len(labels))]
        bars = ax.barh(ys, values, height=height, color=_color(i), label=name)
        if values_text is not None:
            ax.bar_label(bars, labels=list(values_text[i]), padding=3, fontsize=7)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)


def throughput_figure(runs: Sequence[RunRecord]) -> Figure:
    """Throughput per operation and design."""
    ops = op_names(runs)
    with _style():
        fig = _new_figure(figsize=(8, 1.2 + 0.45 * max(1, len(ops)) * max(1, len(runs))))
        ax = fig.subplots()
        if not ops:
            _no_data(ax, "no operations recorded")
        else:  # 0 for an operation a design never ran
            series = [(r.design, [float(r.throughput.get(op, 0)) for op in ops]) for r in runs]
            _grouped_barh(ax, ops, series)
            _plain_numbers(ax.xaxis)
            ax.set_xlabel("throughput (operations per simulated second)")
        ax.set_title("Throughput by operation")
    return fig


def _lock_wait_ns(lock: LockClass) -> float:
    return float(sum(side.waittime_total_ns for _, side in lock.sides()))


def lock_wait_figure(runs: Sequence[RunRecord], top: int = 12) -> Figure:
    """Total lock wait time per lock class (read + write), one bar per design; top classes only."""
    waits: list[dict[str, float]] = [{lk.name: _lock_wait_ns(lk) for lk in r.lock_classes()} for r in runs]
    names = sorted({n for w in waits for n, v in w.items() if v > 0},
                   key=lambda n: (-max(w.get(n, 0.0) for w in waits), n))[:top]
    with _style():
        fig = _new_figure(figsize=(8, 1.2 + 0.4 * max(1, len(names)) * max(1, len(runs))))
        ax = fig.subplots()
        if not names:
            _no_data(ax, "no lock was ever waited for")
        else:
            scale, unit = _time_unit(max(max(w.values(), default=0.0) for w in waits))
            # Bars share one linear axis; the text keeps waits far below the largest readable.
            texts = [[fmt_time(w.get(n, 0.0)) if w.get(n, 0.0) else "" for n in names] for w in waits]
            _grouped_barh(ax, names, [(r.design, [w.get(n, 0.0) / scale for n in names])
                                      for r, w in zip(runs, waits, strict=True)], texts)
            ax.margins(x=0.15)
            ax.set_xlabel(f"total wait time ({unit}, virtual)")
        ax.set_title("Lock wait time by lock class")
    return fig


def cpu_time_figure(runs: Sequence[RunRecord]) -> Figure:
    """CPU time split per design, stacked to 100%."""
    with _style():
        fig = _new_figure(figsize=(8, 1.4 + 0.5 * max(1, len(runs))))
        ax = fig.subplots()
        designs = [r.design for r in runs]
        left = [0.0] * len(runs)
        for state in CPU_STATES:
            vals = []
            for r in runs:
                ct = {s: float(r.cpu_time[s]) for s in CPU_STATES}
                total = sum(ct.values())
                vals.append(100.0 * ct[state] / total if total else 0.0)
            ax.barh(range(len(runs)), vals, left=left, color=_CPU_COLORS[state], label=state, height=0.6)
            left = [a + b for a, b in zip(left, vals, strict=True)]
        ax.set_yticks(range(len(runs)), designs)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("share of CPU time (%)")
        ax.set_title("CPU time split")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncols=4, fontsize=8)
    return fig


# Every picture of one run, by file stem, in file order (the dearest to draw first: reports/figure_jobs.py
# hands the first ones to other processes).
RUN_FIGURES: dict[str, Callable[[Sequence[RunRecord]], Figure]] = {
    "latency": latency_figure,
    "throughput": throughput_figure,
    "lock_wait": lock_wait_figure,
    "cpu_time": cpu_time_figure,
}


def run_figures(runs: Sequence[RunRecord]) -> dict[str, Figure]:
    """Every picture of one run (one or more designs), by file stem."""
    return {name: make(runs) for name, make in RUN_FIGURES.items()}


# -- sweeps ----------------------------------------------------------------------------------------


def is_seed_key(key: str) -> bool:
    """A grid key that only reseeds the run (``run.seed``): aggregated over, never an x axis."""
    return key.rsplit(".", 1)[-1] == "seed"


def _is_number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def scaling_keys(grid: Mapping[str, Sequence[JsonValue]]) -> list[str]:
    """The swept keys a scaling curve is drawn against: numeric (CPUs, sizes, intervals), more than
    one value, not a seed."""
    return [k for k, vals in grid.items()
            if len(vals) > 1 and not is_seed_key(k) and all(_is_number(v) for v in vals)]


def _p99(run: RunRecord, op: str) -> float:
    rec = run.operations.get(op)  # 0 for a design that never ran the operation
    return float(rec.p99_ns) if rec is not None else 0.0


def scaling_figures(points: Sequence[tuple[Mapping[str, JsonValue], Sequence[RunInput], Set[str]]],
                    grid: Mapping[str, Sequence[JsonValue]]) -> dict[str, Figure]:
    """Per numeric swept key (:func:`scaling_keys`): throughput and p99 against it.

    ``points`` holds each point's params, its runs and the designs whose run failed its checks
    (drawn, marked with a red ring).  One line per design and combination of the other swept keys
    (named in the legend); seeds are not a line but a spread: each line is the mean over the
    grid's seeds with a min-max band.  p99 panels use one line style per operation.  Legends sit
    to the right of the plots.
    """
    swept = [k for k in grid if len(grid[k]) > 1]
    seeds = [k for k in swept if is_seed_key(k)]
    nseeds = 1
    for k in seeds:
        nseeds *= len(grid[k])
    figs: dict[str, Figure] = {}
    for key in scaling_keys(grid):
        others = [k for k in swept if k != key and not is_seed_key(k)]
        # (design, other values) -> x -> runs at that x (one per seed) and whether any failed
        lines: dict[tuple[str, str], dict[float, list[tuple[RunRecord, bool]]]] = {}
        designs: list[str] = []
        typed = [(params, [as_run(r) for r in runs], failed) for params, runs, failed in points]
        for params, runs, failed in typed:
            x = params[key]
            if not _is_number(x):
                continue
            rest = ", ".join(f"{k}={json.dumps(params[k])}" for k in others)
            for run in runs:
                design = run.design
                if design not in designs:
                    designs.append(design)
                lines.setdefault((design, rest), {}).setdefault(float(x), []).append((run, design in failed))
        ops = op_names([run for _, runs, _ in typed for run in runs])
        p99_max = max((_p99(r, op) for _, runs, _ in typed for r in runs for op in ops), default=0.0)
        scale, unit = _time_unit(p99_max)
        xs_all = sorted({float(v) for v in grid[key] if _is_number(v)})  # all are (scaling_keys)
        any_failed = False
        with _style():
            entries = len(lines) * (1 + len(ops))
            fig = _new_figure(figsize=(11, max(6.5, 1.2 + 0.16 * entries)))
            ax_t, ax_p = fig.subplots(2, 1)
            ordered = sorted(lines.items(), key=lambda kv: (designs.index(kv[0][0]), kv[0][1]))
            for n, ((design, rest), by_x) in enumerate(ordered):
                xv = sorted(by_x)
                color = _color(n) if others else _color(designs.index(design))
                label = design + (f" ({rest})" if rest else "")
                bad = [x for x in xv if any(f for _, f in by_x[x])]
                any_failed = any_failed or bool(bad)
                series: list[tuple[Axes, str, str, str | None]] = [(ax_t, "-", label, None)]
                series += [(ax_p, _LINESTYLES[j % len(_LINESTYLES)], f"{label} {op}", op) for j, op in enumerate(ops)]
                for ax, style, name, op_name in series:
                    per_x = [[_p99(r, op_name) / scale if op_name else total_throughput(r) for r, _ in by_x[x]]
                             for x in xv]
                    mean = [sum(v) / len(v) for v in per_x]
                    ax.plot(xv, mean, marker="o", markersize=4, color=color, linestyle=style, label=name)
                    if nseeds > 1:
                        ax.fill_between(xv, [min(v) for v in per_x], [max(v) for v in per_x], color=color,
                                        alpha=0.15, linewidth=0)
                    if bad:
                        ax.plot(bad, [mean[xv.index(x)] for x in bad], linestyle="none", marker="o", markersize=10,
                                markerfacecolor="none", markeredgecolor="#b00020", markeredgewidth=1.5)
            spread = f", mean of {nseeds} seeds (band: min-max)" if nseeds > 1 else ""
            for ax in (ax_t, ax_p):
                ax.set_xlabel(key)
                ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
                if ax.lines:
                    handles, labels = ax.get_legend_handles_labels()
                    if any_failed:
                        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=8,
                                              markerfacecolor="none", markeredgecolor="#b00020"))
                        labels.append("run failed its checks")
                    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                              fontsize=7)
            _plain_numbers(ax_t.yaxis)
            ax_t.set_ylabel("throughput (ops per simulated s)")
            ax_t.set_title(f"Throughput vs {key}{spread}")
            ax_p.set_ylabel(f"p99 latency ({unit})")
            ax_p.set_title(f"p99 latency vs {key}{spread}")
        figs[f"scaling_{key}"] = fig
    return figs
