"""H8 (2022): reclaim sleeping on the rmap read lock vs the trylock.

Small sizes check the direction on ``h8-reclaim-stall`` (kswapd behind the family's fork/exit
writers, blocking read vs trylock).  ``--full`` reproduces the published magnitude on
``h8-low-priority-holder``, where the stall comes from task priorities, as in the Android traces:
a nice-19 task (a background app's compaction) holds the family's anon_vma rwsem for read in a
migration walk (``try_to_migrate`` / ``remove_migration_ptes``: ``rmap_walk_anon`` holds
``anon_vma_lock_read`` across the walk) and a scheduler tick preempts it there
(kernel/sched/fair.c ``check_preempt_tick``: its share beside a nice-0 task, 15/1039 of the
period, is raised to the minimum granularity by BASE_SLICE, 2.25 ms on 4 CPUs, so the first tick
after that ends its turn).  Busy nice-0 tasks then run before it until their ``vruntime`` passes
its own, ~68x the time it ran (``calc_delta_fair``: 1024/15): up to ~270 ms for 4 ms.  Most of its
runs end sooner, at a nice-0 task's wake-up (``check_preempt_wakeup``), so only a few long runs
per 600 ms end inside a read hold of the family's lock while kswapd reclaims the family: the
longest wait depends on the seed (README, H8).  The rwsem does not boost its owner
(kernel/locking/rwsem.c has no priority inheritance).  A fork or exit of the family queues for the
write lock behind the reader, and kswapd's ``down_read`` in ``folio_referenced`` queues behind
that writer (``rwsem_read_trylock`` fails on RWSEM_FLAG_WAITERS and the slowpath does not steal a
reader-owned lock).  With 6d4675e60135 ``folio_referenced`` only tries (``rwc->try_lock``):
``down_read_trylock`` fails on the queued writer and the folio is kept.  The same scenario with the
compactor at nice 0 is the comparison: preempted at a tick it is back within a slice of the nice-0
tasks, a few ms.

``--full`` runs the scenario :data:`EPISODES` times, at the seed N and at N + i * 2**32, and takes
the longest wait over them, at nice 19 and at nice 0 alike (totals and kept folios add up).  The
published figure is the worst seen in field traces ("300ms+ (worst case, a sec)"), and one 600 ms
run holds a single chance: the family stops within its first ~100 ms, behind the first long-preempted
compactor, and a longer run adds none (docs/validate-h8.md).  One run reaches 100 ms and ten times
the nice-0 wait at 62 of seeds 1-120; twelve runs drawn from those 120 miss in 0.24% of draws, eight
in 1.3% (``benchmarks/h8_runs.py``, docs/validate-h8.md).
``tests/concurrency/test_h8_priority_inversion.py`` pins the chain as a timeline.
"""

from __future__ import annotations

from records.result import RunRecord
from workloads.scenario import Scenario
from workloads.validate.common import (
    BANDS,
    MS,
    Check,
    CheckResult,
    _at,
    _lock,
    _n,
    _result,
    _run,
    _scenario,
)

__all__ = ["CHECK", "EPISODES", "priority_stall"]

# --full: independent 600 ms runs of the scenario per setting, the longest wait over them counted
# (the module docstring says why).
EPISODES = 12


def _reclaim_waits(rec: RunRecord) -> dict[str, int | float]:
    """folio_referenced's read waits on the family rwsem (kswapd and direct reclaim), and
    try_to_unmap's blocking read beside them."""
    lock = _lock(rec, "anon_vma->rwsem")
    # folio_referenced's waits: the 2022 trylock is there; try_to_unmap still blocks on the read lock.
    wait = _at(lock, "read", "contention_point_wait", "folio_referenced")
    unmap = _at(lock, "read", "contention_point_wait", "try_to_unmap")
    kswapd_batch = rec.operations.get("kswapd_batch")
    return {"read_waits": _n(wait, "contentions"),
            "read_wait_total_ns": _n(wait, "waittime_total_ns"),
            "read_wait_max_ns": _n(wait, "waittime_max_ns"),
            "keep_contended": _n(rec.counters, "reclaim_keep_contended"),
            "direct_reclaims": _n(rec.counters, "direct_reclaim"),
            "kswapd_batch_max_ns": 0 if kswapd_batch is None else kswapd_batch.max_ns,
            "folio_referenced_walks": _n(rec.walks, "folio_referenced", "walks"),
            "try_to_unmap_read_wait_total_ns": _n(unmap, "waittime_total_ns"),
            # how long a reader kept the lock (the low-priority holder off its CPU shows here)
            "read_hold_max_ns": _n(lock, "read", "holdtime_max_ns")}


def _worst(runs: list[dict[str, int | float]]) -> dict[str, int | float]:
    """Several runs' figures as one: the longest of each ``_max_ns`` figure, the sum of the rest."""
    return {key: max(r[key] for r in runs) if key.endswith("_max_ns") else sum(r[key] for r in runs)
            for key in runs[0]}


def priority_stall(worst_ns: float, fair_ns: float) -> tuple[float, bool]:
    """--full's verdict on the low-priority holder: the growth of the longest wait from the nice-0
    holder's (``fair_ns``) to the nice-19 holder's (``worst_ns``), and whether that wait reaches the
    published order and grows by the band's factor (benchmarks/h8_runs.py judges draws of runs by it)."""
    growth = worst_ns / max(1, fair_ns)
    return growth, growth in BANDS["H8_priority_growth"] and worst_ns / MS in BANDS["H8_stall_ms"]


def _h8(check: Check, full: bool) -> CheckResult:
    """Reclaim's read-side waits on the family rwsem in folio_referenced, blocking read vs
    trylock; at ``--full`` also with the rmap-lock holder at nice 19 vs nice 0, over
    :data:`EPISODES` runs each."""
    name = "h8-low-priority-holder" if full else "h8-reclaim-stall"
    episodes = EPISODES if full else 1
    runs: dict[str, list[dict[str, int | float]]] = {}  # by setting, each run's figures
    first: list[Scenario] = []  # the first setting's runs: seeds and length are the same for every one
    for key, trylock, nice in (("blocking", False, 19), ("trylock", True, 19), ("fair", False, 0)):
        if key == "fair" and not full:
            break
        # Only the compactor's nice differs between "blocking" and "fair" (small: no compactor).
        actors = {"migrate": {"nice": nice}} if full else None
        scenarios = [_scenario(name, {"reclaim.trylock": trylock}, actors=actors, episode=i) for i in range(episodes)]
        first = first or scenarios
        runs[key] = [_reclaim_waits(_run(scenario)) for scenario in scenarios]
    out = {key: _worst(figures) for key, figures in runs.items()}
    blocking, trying = out["blocking"], out["trylock"]
    ratio = blocking["read_wait_total_ns"] / max(1, trying["read_wait_total_ns"])
    passed = (blocking["read_wait_total_ns"] > 0 and ratio in BANDS["H8_wait_ratio"]
              and trying["keep_contended"] in BANDS["H8_keep_contended"])
    worst_ms = blocking["read_wait_max_ns"] / MS
    expected = (f"blocking read waits > 0 and >= {BANDS['H8_wait_ratio'].lo:.0f}x the trylock's (published: kswapd "
                "waits 300 ms+, the trylock removes it); trylock keeps contended folios (> 0)")
    text = (f"blocking {blocking['read_wait_total_ns'] / MS:.3f} ms total (max {worst_ms:.3f} ms) vs trylock "
            f"{trying['read_wait_total_ns'] / MS:.3f} ms; {trying['keep_contended']} folios kept")
    if not full:
        notes = [f"longest reclaim wait on the rmap read lock: {worst_ms:.3f} ms (published: 300 ms+, worst ~1 s); "
                 "small mode checks the direction only, without task priorities (--full: a nice-19 rmap-lock "
                 "holder, the published order)"]
        return _result(check, worst_ms, text, expected, passed, out, notes)
    fair = out["fair"]
    fair_ms = fair["read_wait_max_ns"] / MS
    seeds, run_ms = [scenario.seed for scenario in first], (first[0].duration_ns or 0) / MS
    longest = {key: [r["read_wait_max_ns"] / MS for r in figures] for key, figures in runs.items()}
    details: dict[str, object] = {**out, "episodes": {"seeds": seeds, "longest_wait_ms": longest}}
    growth, stalled = priority_stall(blocking["read_wait_max_ns"], fair["read_wait_max_ns"])
    passed = passed and stalled
    expected += (f"; with the rmap-lock holder at nice 19 the longest wait over {episodes} runs >= "
                 f"{BANDS['H8_stall_ms'].lo:.0f} ms and >= {BANDS['H8_priority_growth'].lo:.0f}x the nice-0 holder's")
    text = (f"nice-19 holder: {text}; nice-0 holder: {fair['read_wait_total_ns'] / MS:.3f} ms total "
            f"(max {fair_ms:.3f} ms), longest wait x{growth:.1f}")
    runs_text = ", ".join(f"{b:.1f}/{f:.1f}" for b, f in zip(longest["blocking"], longest["fair"], strict=True))
    notes = [f"longest reclaim wait on the rmap read lock over {episodes} runs of {run_ms:.0f} ms (seeds {seeds[0]} + "
             f"i * 2**32): {worst_ms:.3f} ms with a nice-19 holder, {fair_ms:.3f} ms with the same holder at "
             f"nice 0 (published: 300 ms+, worst ~1 s); longest read hold {blocking['read_hold_max_ns'] / MS:.3f} ms "
             f"vs {fair['read_hold_max_ns'] / MS:.3f} ms",
             f"each run's longest wait, nice 19/nice 0, ms: {runs_text} (one run holds one chance: the family "
             "stops behind the first long-preempted compactor, docs/validate-h8.md)",
             "mechanism: a nice-19 task's compaction holds the family's anon_vma rwsem for read in a migration walk "
             "and is preempted there at a scheduler tick (check_preempt_tick); busy nice-0 tasks run ~68x the time "
             "it ran before it is picked again (vruntime += delta_exec * 1024/15) and the rwsem lends it no priority; "
             "a fork/exit writer queues behind it and kswapd's folio_referenced read queues behind the writer; the "
             "2022 trylock fails on the queued writer and keeps the folio"]
    return _result(check, worst_ms, text, expected, passed, details, notes)


CHECK = Check("H8", "reclaim sleeps on the rmap read lock behind fork/exit/mmap/munmap and behind a low-priority "
              "holder kept off its CPU; the trylock removes the stall and keeps contended folios",
              "[H8] M. Kim, 6d4675e60135 (2022)", "kswapd waiting 300 ms+ (worst ~1 s)", _h8)
