"""The sweep report (issue 13): titled with the scenario and the grid, legends outside the plots,
scaling curves only against numeric non-seed keys, seeds as a mean with a min-max band."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection

from reports import render_sweep, sweep_title
from reports.common import SWEEP_SCHEMA, total_throughput
from reports.plots import scaling_figures, scaling_keys
from tests.reports.tiny import tiny_results
from workloads.record import atomic_write, dump_json

GRID: dict[str, list[Any]] = {"run.cpus": [1, 2], "run.seed": [1, 2, 3], "switches.anon_vma.reuse": [True, False]}


def _results(cpus: int, seed: int) -> dict[str, Any]:
    return tiny_results(iterations=2 + 2 * cpus + seed)


def make_sweep(folder: Path) -> dict[str, Any]:
    points = []
    for cpus in GRID["run.cpus"]:
        for seed in GRID["run.seed"]:
            for reuse in GRID["switches.anon_vma.reuse"]:
                params = {"run.cpus": cpus, "run.seed": seed, "switches.anon_vma.reuse": reuse}
                rel = f"points/{cpus}-{seed}-{reuse}/result.json"
                atomic_write(folder / rel, dump_json(_results(cpus, seed)))
                points.append({"params": params, "status": "ok", "category": None, "error": None, "result": rel,
                               "designs": {}})
    points[-1].update(status="failed", category="worker_lost", error="worker lost (pid 1, killed by SIGKILL)",
                      result=None)
    sweep = {"schema": SWEEP_SCHEMA, "scenario": {"name": "tiny", "description": "", "source": "tiny.toml"},
             "grid": GRID, "points": points}
    atomic_write(folder / "sweep.json", dump_json(sweep))
    return sweep


def test_the_report_is_titled_with_the_scenario_and_the_grid(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    render_sweep(sweep, tmp_path)
    title = 'tiny over run.cpus (1, 2) x run.seed (1, 2, 3) x switches.anon_vma.reuse (true, false)'
    assert sweep_title(sweep) == title
    page = (tmp_path / "report.html").read_text()
    assert f"<title>rmapsim sweep: {title}</title>" in page and f"<h1>rmapsim sweep: {title}</h1>" in page
    assert "12 points: 11 ok, 1 failed (worker_lost 1)" in page
    text = (tmp_path / "sweep.txt").read_text()
    assert text.startswith(f"Sweep of scenario {title}\n")
    assert "worker_lost: worker lost (pid 1" in text


def test_scaling_curves_only_against_numeric_keys_never_the_seed(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    assert scaling_keys(GRID) == ["run.cpus"]
    written = {p.name for p in render_sweep(sweep, tmp_path)}
    assert {n for n in written if n.startswith("scaling_")} == {"scaling_run.cpus.png", "scaling_run.cpus.svg"}
    assert scaling_figures([], {"run.seed": [1, 2], "switches.x.on": [True, False], "mode": ["a", "b"]}) == {}


def _drawn(tmp_path: Path) -> list[tuple[dict[str, Any], list[dict[str, Any]], set[str]]]:
    sweep = make_sweep(tmp_path)
    return [(p["params"], json.loads((tmp_path / p["result"]).read_text())["runs"], set())
            for p in sweep["points"] if p["result"]]


def test_seeds_are_a_mean_with_a_min_max_band(tmp_path: Path) -> None:
    fig = scaling_figures(_drawn(tmp_path), GRID)["scaling_run.cpus"]
    ax_t = fig.axes[0]
    # One line per design and reuse value (2 x 2), not one per seed; each a mean over the 3 seeds.
    labels = [str(line.get_label()) for line in ax_t.lines]
    assert len(labels) == 4 and all("seed" not in label for label in labels)
    line = next(ln for ln in ax_t.lines if ln.get_label() == "mutex_design (switches.anon_vma.reuse=true)")
    xs: Any = line.get_xdata()
    ys: Any = line.get_ydata()
    for x, y in zip(xs, ys, strict=True):
        runs = [_results(int(x), seed)["runs"][0] for seed in GRID["run.seed"]]
        assert y == sum(total_throughput(r) for r in runs) / 3
    assert len([c for c in ax_t.collections if isinstance(c, PolyCollection)]) == 4  # the bands
    assert "mean of 3 seeds (band: min-max)" in ax_t.get_title()


def test_legends_sit_outside_the_plots(tmp_path: Path) -> None:
    fig = scaling_figures(_drawn(tmp_path), GRID)["scaling_run.cpus"]
    assert isinstance(fig.canvas, FigureCanvasAgg)
    canvas: Any = fig.canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    checked = 0
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        box, plot = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert box.x0 >= plot.x1 or box.y1 <= plot.y0, (box, plot)  # beside or below, never over
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 + 1  # and still on the picture
        checked += 1
    assert checked == 2
