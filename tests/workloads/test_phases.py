"""A run's phases in its record (workloads/runner.py): set-up, workload and wind-down follow each
other, each phase's CPU time split and lock wait add up to the run's, and the wait's parts (spinning,
asleep) never exceed it."""

from __future__ import annotations

import functools
import itertools
from pathlib import Path
from typing import Any

import pytest

from records.result import PHASES
from reports.common import wait_parts
from workloads.runner import run_one
from workloads.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "workloads" / "scenarios"
DURATION_NS = 500_000


@functools.cache
def fork_heavy(design: str) -> dict[str, Any]:
    return run_one(load_scenario(SCENARIOS / "fork-heavy.toml", {"run.duration_ns": DURATION_NS}), design)


@pytest.mark.parametrize("design", ["anon_vma", "cow_context"])
def test_phases_tile_the_run_and_add_up_to_its_totals(design: str) -> None:
    rec = fork_heavy(design)
    phases = rec["phases"]
    assert list(phases) == list(PHASES)
    edges = [phases[p]["start_ns"] for p in PHASES] + [phases["wind_down"]["end_ns"]]
    assert edges == [0, rec["outcome"]["workload_start_ns"], rec["outcome"]["workload_start_ns"] + DURATION_NS,
                     rec["outcome"]["end_ns"]]
    for a, b in itertools.pairwise(PHASES):
        assert phases[a]["end_ns"] == phases[b]["start_ns"]
    for state, total in rec["cpu_time"].items():
        assert sum(phases[p]["cpu_time"][state] for p in PHASES) == total
    cpus = rec["params"]["cpus"]
    for p in PHASES:  # every CPU is in exactly one state at every instant
        assert sum(phases[p]["cpu_time"].values()) == cpus * (phases[p]["end_ns"] - phases[p]["start_ns"])
    whole = wait_parts(rec)
    assert sum(phases[p]["lock_wait"]["total_ns"] for p in PHASES) == whole["total"]
    assert sum(phases[p]["lock_wait"]["spinning_ns"] for p in PHASES) == whole["spinning"]
    assert sum(phases[p]["lock_wait"]["sleeping_ns"] for p in PHASES) == whole["asleep"]
    for lock in rec["locks"]:
        for side in ("write", "read") if lock["rw"] else ("write",):
            s = lock[side]
            assert s["waittime_spin_ns"] >= 0 and s["waittime_sleep_ns"] >= 0, lock["name"]
            assert s["waittime_spin_ns"] + s["waittime_sleep_ns"] <= s["waittime_total_ns"], lock["name"]


def test_fork_heavy_waiters_on_the_root_rwsem_mostly_leave_their_cpu() -> None:
    """anon_vma's hot lock is a sleeping rwsem: most of its wait is not CPU burned."""
    rec = fork_heavy("anon_vma")
    parts = wait_parts(rec)
    assert parts["total"] > 0
    assert parts["spinning"] < parts["asleep"] + parts["runnable"]


def test_cow_contexts_rcu_wind_down_is_idle_time_after_the_workload_not_in_it() -> None:
    """cow_context's deferred frees run after the last process exited: its run goes on with idle CPUs,
    which the wind-down phase holds apart from the workload phase (both designs' workload phases
    are the same length)."""
    anon, cow = fork_heavy("anon_vma")["phases"], fork_heavy("cow_context")["phases"]

    def span(phases: dict[str, Any], p: str) -> int:
        return int(phases[p]["end_ns"]) - int(phases[p]["start_ns"])

    assert span(anon, "workload") == span(cow, "workload") == DURATION_NS
    assert span(cow, "wind_down") > 10 * span(anon, "wind_down")
    cpu = cow["wind_down"]["cpu_time"]
    assert cpu["idle"] > 0.9 * sum(cpu.values())
    assert cow["workload"]["cpu_time"]["idle"] < 0.1 * sum(cow["workload"]["cpu_time"].values())
