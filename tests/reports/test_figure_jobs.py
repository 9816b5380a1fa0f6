"""The pictures drawn in forked processes are the bytes one process draws (reports/figure_jobs.py)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from matplotlib.figure import Figure

from records.result import RunRecord
from reports.common import typed_runs
from reports.figure_jobs import FigureJobs
from reports.plots import RUN_FIGURES, figure_bytes, run_figures

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forked drawing needs os.fork")


def _makers(runs: Sequence[RunRecord]) -> dict[str, Callable[[], Figure]]:
    return {name: functools.partial(make, runs) for name, make in RUN_FIGURES.items()}


def test_forked_pictures_are_the_bytes_of_one_process(tiny: dict[str, Any]) -> None:
    # The old way: every figure built first, then each drawn as PNG and then SVG in this process.
    serial = {name: (figure_bytes(fig, "png"), figure_bytes(fig, "svg"))
              for name, fig in run_figures(typed_runs(tiny)).items()}
    for drawers in (0, 1, len(RUN_FIGURES)):
        with FigureJobs(_makers(typed_runs(tiny)), drawers=drawers) as jobs:
            drawn = jobs.results()
        assert list(drawn) == list(serial), drawers  # file order
        assert drawn == serial, f"{drawers} drawer(s)"


def test_a_failed_drawer_costs_time_not_pictures(tiny: dict[str, Any]) -> None:
    parent = os.getpid()

    def fails_when_forked() -> Figure:
        if os.getpid() != parent:
            raise RuntimeError("a drawer that fails")
        return RUN_FIGURES["latency"](typed_runs(tiny))

    makers = _makers(typed_runs(tiny))
    makers["latency"] = fails_when_forked
    with FigureJobs(makers, drawers=2) as jobs:
        drawn = jobs.results()
    fig = RUN_FIGURES["latency"](typed_runs(tiny))
    assert drawn["latency"] == (figure_bytes(fig, "png"), figure_bytes(fig, "svg"))


def test_leaving_early_reaps_the_drawers(tiny: dict[str, Any]) -> None:
    jobs = FigureJobs(_makers(typed_runs(tiny)), drawers=2)
    pids = [drawer.pid for drawer in jobs._drawers.values()]
    assert len(pids) == 2
    jobs.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):  # reaped: no longer this process's child
            os.waitpid(pid, os.WNOHANG)
