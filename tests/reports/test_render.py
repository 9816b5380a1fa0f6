"""render_run / render_sweep / render_dir: the files, their reproducibility, the page's
self-containment."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from reports import render_dir, render_sweep, summary_text
from reports.common import SWEEP_SCHEMA
from tests.reports.tiny import tiny_results
from workloads.record import atomic_write, dump_json

PLOTS = ("latency", "throughput", "lock_wait", "cpu_time")
RUN_FILES = {"lockstat.txt", "perf_lock.txt", "latency.txt", "compare.txt", "report.html",
             "lockdep.txt", "lockdep_stats.txt",
             *(f"{name}.{ext}" for name in PLOTS for ext in ("png", "svg")),
             "hlog/fault.hlog", "hlog/fork.hlog"}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_render_run_writes_every_report(rendered: tuple[Path, list[Path]]) -> None:
    outdir, written = rendered
    assert {p.relative_to(outdir).as_posix() for p in written} == RUN_FILES
    assert len(written) == len(RUN_FILES)
    assert all(p.stat().st_size > 0 for p in written)
    assert (outdir / "latency.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    svg = (outdir / "latency.svg").read_text()
    assert svg.startswith("<?xml") and "<dc:date>" not in svg


@pytest.mark.long
def test_rerendering_gives_identical_bytes(rendered: tuple[Path, list[Path]], tmp_path: Path) -> None:
    outdir, _ = rendered
    before = snapshot(outdir)
    again = tmp_path / "again"
    atomic_write(again / "result.json", (outdir / "result.json").read_bytes())
    render_dir(again)
    assert snapshot(again) == before
    render_dir(again)  # over its own output, too
    assert snapshot(again) == before


def test_html_is_self_contained(rendered: tuple[Path, list[Path]]) -> None:
    outdir, _ = rendered
    page = (outdir / "report.html").read_text()
    # Nothing to fetch: no external stylesheet, script, font, frame or image.
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", page)
    assert "@import" not in page and "url(" not in page and "<link" not in page
    images = re.findall(r'<img class="plot" alt="[^"]*" src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(images) == 4
    for blob in images:
        assert base64.b64decode(blob).startswith(b"<?xml")
    for text in ("lock_stat version 0.4", "contended   total wait", "Verdict", "p99.9", "spin_design"):
        assert text in page


def test_summary_text_is_the_terminal_view(tiny: dict[str, Any]) -> None:
    text = summary_text(tiny)
    assert text.startswith("Operation latency (virtual time), scenario tiny")
    assert text.rstrip().splitlines()[-1].startswith("  - ")


def make_sweep(folder: Path) -> dict[str, Any]:
    points = []
    for n in (2, 4):
        rel = f"points/iterations={n}/result.json"
        atomic_write(folder / rel, dump_json(tiny_results(iterations=n)))
        points.append({"params": {"iterations": n}, "status": "ok", "error": None, "result": rel})
    points.append({"params": {"iterations": 8}, "status": "failed", "error": "SimulationError: boom",
                   "result": None})
    sweep = {"schema": SWEEP_SCHEMA, "scenario": {"name": "tiny", "description": "", "source": "tests"},
             "grid": {"iterations": [2, 4, 8]}, "points": points}
    atomic_write(folder / "sweep.json", dump_json(sweep))
    return sweep


def test_sweep_renders_table_curves_and_page_reproducibly(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path)
    written = render_sweep(sweep, tmp_path)
    assert {p.name for p in written} == {"sweep.txt", "scaling_iterations.png", "scaling_iterations.svg",
                                         "report.html"}
    table = (tmp_path / "sweep.txt").read_text()
    rows = [line.split() for line in table.splitlines()[4:] if line.strip() and not line.startswith(" ")]
    assert [r[:3] for r in rows[:5]] == [["2", "mutex_design", "ok"], ["2", "spin_design", "ok"],
                                         ["4", "mutex_design", "ok"], ["4", "spin_design", "ok"],
                                         ["8", "-", "failed"]]
    assert "SimulationError: boom" in table
    page = (tmp_path / "report.html").read_text()
    assert "Failed points" in page and page.count('<img class="plot"') == 1
    before = snapshot(tmp_path)
    render_dir(tmp_path)
    assert snapshot(tmp_path) == before


def test_render_dir_needs_a_result_or_sweep(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"neither result\.json nor sweep\.json"):
        render_dir(tmp_path)
