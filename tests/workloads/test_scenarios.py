"""The built-in scenario library: every scenario validates, runs at a small size under both
designs, keeps its invariants, and shows the direction it exists to show."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from workloads.runner import run_one
from workloads.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "workloads" / "scenarios"
# CI runs the long marker at this scale; RMAPSIM_LONG_SCALE=10 runs ten times longer.
SCALE = float(os.environ.get("RMAPSIM_LONG_SCALE", "1"))


@cache
def run(name: str, design: str, duration_ns: int, **extra: Any) -> dict[str, Any]:
    overrides: dict[str, Any] = {"run.duration_ns": int(duration_ns * SCALE)}
    overrides.update({k.replace("__", "."): v for k, v in extra.items()})
    return run_one(load_scenario(SCENARIOS / f"{name}.toml", overrides), design)


def contentions(record: dict[str, Any]) -> dict[str, int]:
    out = {}
    for lock in record["locks"]:
        total = lock["write"]["contentions"] + lock.get("read", {}).get("contentions", 0)
        out[lock["name"]] = total
    return out


def most_contended(record: dict[str, Any]) -> str:
    """By total wait time, as `perf lock contention` ranks by default."""
    waits: dict[str, int] = {
        lk["name"]: lk["write"]["waittime_total_ns"] + lk.get("read", {}).get("waittime_total_ns", 0)
        for lk in record["locks"]
    }
    return max(sorted(waits), key=lambda k: waits[k])


def test_every_builtin_scenario_validates_and_says_what_it_mirrors() -> None:
    files = sorted(SCENARIOS.glob("*.toml"))
    assert len(files) >= 8
    for path in files:
        scenario = load_scenario(path)
        assert scenario.description and scenario.mirrors, path.name
        assert set(scenario.designs) == {"anon_vma", "cow_context", "anon_vma_lazy"}


@pytest.mark.long
def test_fork_heavy_root_rwsem_is_the_hot_lock_only_under_anon_vma() -> None:
    anon = run("fork-heavy", "anon_vma", 3_000_000)
    cow = run("fork-heavy", "cow_context", 3_000_000)
    assert anon["invariants"]["passed"], anon["invariants"]
    assert cow["invariants"]["passed"], cow["invariants"]
    assert most_contended(anon) == "anon_vma->rwsem"
    assert "anon_vma->rwsem" not in contentions(cow)
    assert cow["operations"]["fork"]["p99_ns"] < anon["operations"]["fork"]["p99_ns"]
    assert cow["operations"]["fork"]["count"] > anon["operations"]["fork"]["count"]


@pytest.mark.long
def test_reclaim_churn_aging_gives_up_on_the_contended_rmap_lock() -> None:
    anon = run("reclaim-churn", "anon_vma", 2_000_000)
    cow = run("reclaim-churn", "cow_context", 2_000_000)
    assert anon["invariants"]["passed"], anon["invariants"]
    assert anon["walks"]["folio_referenced"]["contended"] > 0
    assert anon["counters"]["reclaim_keep_contended"] > 0
    assert cow["walks"]["folio_referenced"]["walks"] > 0
    assert cow["walks"]["folio_referenced"]["contended"] == 0


def test_reclaim_churn_blocking_read_stalls_kswapd_without_the_trylock() -> None:
    trylock = run("reclaim-churn", "anon_vma", 2_000_000)
    blocking = run("reclaim-churn", "anon_vma", 2_000_000, reclaim__trylock=False)
    assert blocking["walks"]["folio_referenced"]["contended"] == 0
    read = next(lk for lk in blocking["locks"] if lk["name"] == "anon_vma->rwsem")["read"]
    tried = next(lk for lk in trylock["locks"] if lk["name"] == "anon_vma->rwsem")["read"]
    # Blocking: kswapd sleeps behind the writers; trying: it never waits, it keeps the folio.
    assert read["contention_points"].get("folio_referenced", 0) > 0 and read["waittime_total_ns"] > 0
    assert "folio_referenced" not in tried["contention_points"]
    assert blocking["counters"].get("reclaim_keep_contended", 0) == 0


def test_deep_chain_walks_run_inside_rcu_only_under_cow_context() -> None:
    anon = run("deep-chain", "anon_vma", 3_000_000)
    cow = run("deep-chain", "cow_context", 3_000_000)
    assert anon["operations"]["fork"]["count"] > 100
    assert anon["invariants"]["passed"], anon["invariants"]
    assert anon["walks"]["try_to_migrate"]["would_sleep_in_rcu"] == 0
    assert cow["walks"]["try_to_migrate"]["would_sleep_in_rcu"] > 0
    assert cow["walks"]["try_to_migrate"]["contexts_visited"] > 0


def test_wide_fanout_walks_cover_the_family() -> None:
    anon = run("wide-fanout", "anon_vma", 5_000_000)
    cow = run("wide-fanout", "cow_context", 5_000_000)
    assert anon["invariants"]["passed"], anon["invariants"]
    for rec in (anon, cow):
        walks = rec["walks"]["try_to_migrate"]
        assert walks["walks"] > 0
        assert walks["vmas_visited"] / walks["walks"] > 5  # many processes map each folio


def test_thp_migration_storm_splits_and_blocks_walkers_under_anon_vma() -> None:
    anon = run("thp-migration-storm", "anon_vma", 2_000_000)
    cow = run("thp-migration-storm", "cow_context", 2_000_000)
    assert anon["invariants"]["passed"], anon["invariants"]
    assert anon["counters"].get("thp_split", 0) > 0 and cow["counters"].get("thp_split", 0) > 0
    assert contentions(anon)["anon_vma->rwsem"] > 0


def test_threaded_faults_make_the_context_refcount_the_hot_line() -> None:
    anon = run("threaded-faults", "anon_vma", 500_000)
    cow = run("threaded-faults", "cow_context", 500_000)
    assert anon["invariants"]["passed"], anon["invariants"]
    assert cow["invariants"]["passed"], cow["invariants"]
    assert most_contended(cow) == "cow_context->refcnt"
    assert "cow_context->refcnt" not in contentions(anon)


def test_fork_exit_threads_stall_on_mmap_lock_under_both_designs() -> None:
    anon = run("fork-exit-threads", "anon_vma", 1_000_000)
    cow = run("fork-exit-threads", "cow_context", 1_000_000)
    assert most_contended(anon) == "mm->mmap_lock"
    assert most_contended(cow) == "mm->mmap_lock"


def test_zygote_rmap_metadata_is_far_smaller_with_cow_contexts() -> None:
    anon = run("zygote", "anon_vma", 1_000_000)
    cow = run("zygote", "cow_context", 1_000_000)
    assert anon["memory"]["peak_total_bytes"] > 5 * cow["memory"]["peak_total_bytes"]
    assert anon["invariants"]["passed"] and cow["invariants"]["passed"]


@pytest.mark.long
def test_long_default_comparison_completes_cleanly() -> None:
    for design in ("anon_vma", "cow_context"):
        rec = run("fork-heavy", design, 10_000_000)
        assert rec["outcome"]["reason"] == "completed"
        assert rec["invariants"]["passed"], rec["invariants"]
