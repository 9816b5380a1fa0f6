"""Mainline anon_vma explores clean: every built-in scenario, under perturbed schedules.

CI runs 20 short runs per scenario (the workload phase cut to at most 2 ms); set
RMAPSIM_LONG_SCALE to scale the run count and the duration up (the issue's bar is 200 runs at the
scenarios' own sizes: ``rmapsim explore SCENARIO --design anon_vma --runs 200``)."""

from __future__ import annotations

import os

import pytest

from rmapsim.cli import builtin_scenarios
from workloads.explore import PerturbSpec, ScenarioSource, Variant, execute, plan

SCALE = float(os.environ.get("RMAPSIM_LONG_SCALE", "1"))
RUNS = max(2, round(20 * SCALE))


@pytest.mark.long
@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_mainline_anon_vma_explores_clean(name: str) -> None:
    path = builtin_scenarios()[name]
    plain = ScenarioSource.from_path(path, {})
    duration = plain.load().duration_ns or 2_000_000
    src = ScenarioSource.from_path(path, {"run.duration_ns": min(duration, round(2_000_000 * SCALE))})
    variant = Variant("anon_vma")
    first = execute(plan(src, [variant], 1, 1, PerturbSpec(), {})[0])
    jobs = plan(src, [variant], RUNS, 1, PerturbSpec(), {variant.label: first["end_ns"] or duration})
    failures = [v for v in (first, *(execute(job) for job in jobs[1:])) if v["categories"]]
    assert not failures, [(f["seed"], f["perturb"], f["detail"]) for f in failures]
