"""lock_stat and perf lock layouts (golden files from a real tiny run, and by hand), latency and
comparison text.

The golden files come from the tiny run in tests/reports/tiny.py, so a deliberate change to the
mutex or qspinlock models changes them: review the diff, then regenerate with
``RMAPSIM_UPDATE_GOLDEN=1 .venv/bin/pytest tests/reports``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reports import summary_text
from reports.common import perf_time, pseudo_address
from reports.compare import WALK_FIELDS, compare_text, verdict
from reports.latency import latency_text
from reports.lockstat import format_lockstat, lockstat_text, snprint_time
from reports.perf_lock import format_contention
from tests.reports.tiny import whole_run_phases
from workloads.record import RECORD_SCHEMA, RESULTS_SCHEMA

GOLDEN = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/reports/golden/<name>; RMAPSIM_UPDATE_GOLDEN=1 rewrites it first."""
    path = GOLDEN / name
    if os.environ.get("RMAPSIM_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file"


# -- golden files from a real run ---------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1])
def test_lockstat_matches_golden_file(tiny: dict[str, Any], index: int) -> None:
    run = tiny["runs"][index]
    assert_golden(f"lockstat_{run['design']}.txt", format_lockstat(run["locks"]))


@pytest.mark.parametrize("index", [0, 1])
def test_perf_lock_matches_golden_file(tiny: dict[str, Any], index: int) -> None:
    run = tiny["runs"][index]
    assert_golden(f"perf_lock_{run['design']}.txt", format_contention(run["locks"]))


def test_perf_lock_key_and_entries_match_golden_file(tiny: dict[str, Any]) -> None:
    run = tiny["runs"][0]
    assert_golden("perf_lock_contended_E1.txt", format_contention(run["locks"], key="contended", entries=1))
    assert_golden("perf_lock_wait_min.txt", format_contention(run["locks"], key="wait_min"))


def test_lockstat_text_has_one_table_per_design(tiny: dict[str, Any]) -> None:
    text = lockstat_text(tiny)
    assert text.count("lock_stat version 0.4\n") == 2
    assert "# design: mutex_design (scenario tiny)\n" in text
    assert "# design: spin_design (scenario tiny)\n" in text


# -- lock_stat by hand -----------------------------------------------------------------------------


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0.00"), (4, "0.00"), (5, "0.01"), (994, "0.99"), (995, "1.00"), (1234, "1.23"),
    (99_999, "100.00"), (123_456_789, "123456.79"),
])
def test_snprint_time_rounds_like_the_kernel(ns: int, text: str) -> None:
    assert snprint_time(ns) == text


def side(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "con_bounces": 0, "contentions": 0, "waittime_min_ns": 0, "waittime_max_ns": 0,
        "waittime_total_ns": 0, "waittime_spin_ns": 0, "waittime_sleep_ns": 0, "acq_bounces": 0,
        "acquisitions": 0, "holdtime_min_ns": 0,
        "holdtime_max_ns": 0, "holdtime_total_ns": 0, "wait_overflow": 0, "hold_overflow": 0,
        "contention_points": {}, "contending_points": {}, "wait_hist": "", "hold_hist": "",
    }
    base.update(kw)
    return base


def row(label: str, cols: list[str]) -> str:
    """label in 41 columns, the first value in 14, each other after a space in 14."""
    return label.rjust(41) + cols[0].rjust(14) + "".join(" " + c.rjust(14) for c in cols[1:])


RWSEM: dict[str, Any] = {
    "name": "anon_vma->rwsem", "kind": "rwsem", "rw": True, "instances": 1, "events": {},
    "write": side(con_bounces=1, contentions=2, waittime_min_ns=1000, waittime_max_ns=3000,
                  waittime_total_ns=4000, acq_bounces=3, acquisitions=4, holdtime_min_ns=500,
                  holdtime_max_ns=2500, holdtime_total_ns=6000, contention_points={"fork": 2},
                  contending_points={"exit": 1, "fork": 1}),
    "read": side(contentions=1, waittime_min_ns=994, waittime_max_ns=994, waittime_total_ns=994,
                 acquisitions=10, holdtime_min_ns=5, holdtime_max_ns=100, holdtime_total_ns=300,
                 contention_points={"folio_referenced": 1}, contending_points={"fork": 1}),
}
PTL: dict[str, Any] = {"name": "ptl", "kind": "spinlock", "rw": False, "instances": 3, "events": {},
       "write": side(acq_bounces=7, acquisitions=9, holdtime_min_ns=10, holdtime_max_ns=20,
                     holdtime_total_ns=90)}
UNUSED: dict[str, Any] = {"name": "mapping->i_mmap_rwsem", "kind": "rwsem", "rw": True, "instances": 1,
                          "events": {}, "write": side(), "read": side()}
LONG: dict[str, Any] = {"name": "a_very_long_lock_class_name_that_the_kernel_cuts/1", "kind": "mutex",
                        "rw": False, "instances": 1, "events": {},
                        "write": side(acquisitions=1, holdtime_total_ns=7)}


def test_lockstat_layout_by_hand() -> None:
    lines = format_lockstat([PTL, UNUSED, LONG, RWSEM]).split("\n")
    dash = "-" * 221
    assert lines[:5] == [
        "lock_stat version 0.4", dash,
        "class name".rjust(40) + "".join(" " + c.rjust(14) for c in (
            "con-bounces", "contentions", "waittime-min", "waittime-max", "waittime-total", "waittime-avg",
            "acq-bounces", "acquisitions", "holdtime-min", "holdtime-max", "holdtime-total", "holdtime-avg")),
        dash, "",
    ]
    fork, folio, exit_ = (f"[<{pseudo_address(op)}>]".rjust(29)
                          for op in ("fork", "folio_referenced", "exit"))
    name = "anon_vma->rwsem".rjust(40)
    # Most contended first (3 = 2 write + 1 read); the others keep name order.
    assert lines[5:] == [
        row("anon_vma->rwsem-W:",
            ["1", "2", "1.00", "3.00", "4.00", "2.00", "3", "4", "0.50", "2.50", "6.00", "1.50"]),
        row("anon_vma->rwsem-R:",
            ["0", "1", "0.99", "0.99", "0.99", "0.99", "0", "10", "0.01", "0.10", "0.30", "0.03"]),
        " " * 23 + "-" * 17,
        f"{name} {'2':>14} {fork} fork",
        f"{name} {'1':>14} {folio} folio_referenced",
        " " * 23 + "-" * 17,
        f"{name} {'2':>14} {fork} fork",
        f"{name} {'1':>14} {exit_} exit",
        "",
        "." * 221,
        "",
        row("a_very_long_lock_class_name_that_th/1:", ["0", "0", "0.00", "0.00", "0.00", "0.00", "0", "1",
                                                        "0.00", "0.00", "0.01", "0.01"]),
        row("ptl:", ["0", "0", "0.00", "0.00", "0.00", "0.00", "7", "9", "0.01", "0.02", "0.09", "0.01"]),
        "",
    ]
    assert all(len(line) == 220 for line in (lines[2], lines[5], lines[6]))


def test_lockstat_read_only_class_prints_only_its_read_row() -> None:
    lock = {**RWSEM, "write": side(), "read": RWSEM["read"]}
    lines = format_lockstat([lock]).split("\n")
    assert lines[5].startswith(" " * 23 + "anon_vma->rwsem-R:")
    assert "anon_vma->rwsem-W:" not in "\n".join(lines)


# -- perf lock by hand ------------------------------------------------------------------------------


@pytest.mark.parametrize(("ns", "text"), [
    (999, "      999 ns"), (192_670, "   192.67 us"), (13_640_000, "    13.64 ms"),
    (2_500_000_000, "     2.50 s "), (90_000_000_000, "     1.50 m "), (3_600_000_000_000, "     1.00 h "),
])
def test_perf_time_uses_perfs_units_and_width(ns: int, text: str) -> None:
    assert perf_time(ns, 12) == text


def test_perf_lock_rows_types_order_and_entries() -> None:
    text = format_contention([PTL, RWSEM, LONG])
    assert text.split("\n") == [
        " contended   total wait     max wait     avg wait         type   caller",
        "",
        "         2      4.00 us      3.00 us      2.00 us      rwsem:W   anon_vma->rwsem fork",
        "         1       994 ns       994 ns       994 ns      rwsem:R   anon_vma->rwsem folio_referenced",
        "",
    ]
    by_count = format_contention([RWSEM], key="contended", entries=1).split("\n")
    assert len(by_count) == 4 and "rwsem:W" in by_count[2]
    assert format_contention([RWSEM], key="wait_min").split("\n")[0] == (
        " contended   total wait     max wait     avg wait     min wait         type   caller")
    with pytest.raises(ValueError, match="unknown sort key"):
        format_contention([RWSEM], key="acquired")


def test_perf_lock_one_row_per_contention_point_when_the_record_has_per_point_waits() -> None:
    write = side(contentions=3, waittime_total_ns=9000, waittime_max_ns=5000, waittime_min_ns=1000,
                 acquisitions=3, contention_points={"fork": 2, "exit": 1},
                 contention_point_wait={
                     "fork": {"contentions": 2, "waittime_total_ns": 6000, "waittime_max_ns": 5000,
                              "waittime_min_ns": 1000},
                     "exit": {"contentions": 1, "waittime_total_ns": 3000, "waittime_max_ns": 3000,
                              "waittime_min_ns": 3000}})
    lock = {"name": "mm->mmap_lock", "kind": "rwsem", "rw": True, "instances": 1, "events": {},
            "write": write, "read": side()}
    lines = format_contention([lock]).split("\n")
    assert lines[2] == "         2      6.00 us      5.00 us      3.00 us      rwsem:W   mm->mmap_lock fork"
    assert lines[3] == "         1      3.00 us      3.00 us      3.00 us      rwsem:W   mm->mmap_lock exit"


def test_perf_lock_with_summed_waits_names_every_waiting_operation() -> None:
    lock = {**RWSEM, "write": {**RWSEM["write"], "contention_points": {"fork": 1, "exit": 1}}}
    assert "anon_vma->rwsem exit,fork\n" in format_contention([lock])


# -- latency and comparison -------------------------------------------------------------------------


def test_latency_text_lists_every_operation_and_design(tiny: dict[str, Any]) -> None:
    text = latency_text(tiny)
    for run in tiny["runs"]:
        for op, rec in run["operations"].items():
            line = next(ln for ln in text.splitlines() if ln.split()[:2] == [op, run["design"]])
            assert line.split()[2] == str(rec["count"])


def latency(count: int, p99_ns: int) -> dict[str, Any]:
    """An operation's latency record whose percentiles are all ``p99_ns``."""
    return {"count": count, "min_ns": p99_ns, "max_ns": p99_ns, "total_ns": count * p99_ns, "mean_ns": p99_ns,
            "overflow": 0, "p50_ns": p99_ns, "p90_ns": p99_ns, "p99_ns": p99_ns, "p99.9_ns": p99_ns, "hdr": ""}


def record(design: str, *, fork_p99: int, fault_p99: int, tput: float, wait_ns: int = 0, spin_ns: int = 0,
           sleep_ns: int = 0, missed: int = 0, violations: tuple[str, ...] = ()) -> dict[str, Any]:
    lock = {"name": "anon_vma->rwsem", "kind": "rwsem", "rw": True, "instances": 1, "events": {},
            "write": side(contentions=1, waittime_total_ns=wait_ns, waittime_spin_ns=spin_ns,
                          waittime_sleep_ns=sleep_ns, acquisitions=1), "read": side()}
    return {
        "schema": RECORD_SCHEMA, "scenario": "s", "design": design, "switches": {},
        "params": {"cpus": 4, "seed": 1, "duration_ns": 1_000_000, "costs": {}, "rwsem": {}, "memory": {},
                   "tasks": 4},
        "outcome": {"reason": "time_limit", "end_ns": 1_000_000, "events": 10, "workload_start_ns": 0,
                    "preemptions_injected": []},
        "operations": {"fork": latency(10, fork_p99), "fault": latency(10, fault_p99)},
        "throughput": {"fork": tput / 2, "fault": tput / 2}, "total_ops": 20, "locks": [lock], "lock_instances": [],
        "walks": {"try_to_unmap": {**dict.fromkeys(WALK_FIELDS, 0), "walks": 5, "missed_mappings": missed}},
        "cpu_time": {"running": 3, "spinning": 1, "sleeping": 0, "idle": 0}, "context_switches": 0,
        "phases": whole_run_phases(1_000_000, {"running": 3, "spinning": 1, "sleeping": 0, "idle": 0}, [lock]),
        "migrations": 0, "memory": {"peak_total_bytes": 1000}, "counters": {}, "design_stats": {},
        "invariants": {"passed": not violations, "violations": list(violations), "corruption": [], "misses": []},
        "lockdep": {"findings": [], "edges": [], "order_violations": []}, "rcu": {},
    }


def test_verdict_states_ratios_against_the_anon_vma_baseline() -> None:
    results = {"schema": RESULTS_SCHEMA, "scenario": {"name": "s", "description": "", "mirrors": "", "source": ""},
               "runs": [
        record("cow_context", fork_p99=1000, fault_p99=1010, tput=2000.0, wait_ns=40_000, spin_ns=40_000, missed=2,
               violations=("1 corrupted mapping(s)",)),
        record("anon_vma", fork_p99=3100, fault_p99=1000, tput=1000.0, wait_ns=400_000, spin_ns=20_000,
               sleep_ns=300_000),
    ]}
    lines = verdict(results)
    # The findings first, invariant failures before the rest; the lock wait split by what the
    # waiters did (the 80 us neither spinning nor asleep were spent runnable).
    assert lines == [
        "cow_context: invariants failed (1 violation(s))",
        "cow_context: 2 mapping(s) missed by rmap walks",
        "total throughput is 2.0x higher under cow_context than under anon_vma (2,000 ops/s vs 1,000 ops/s)",
        "fork p99 is 3.1x lower under cow_context than under anon_vma (1.00 us vs 3.10 us)",
        "fault p99 is about the same under cow_context as under anon_vma (1.01 us vs 1.00 us)",
        "lock wait in the workload phase is 1.00% of CPU time under cow_context (spinning 1.00%, asleep 0.00%, "
        "runnable 0.00%), 10.00% of CPU time under anon_vma (spinning 0.50%, asleep 7.50%, runnable 2.00%); "
        "only spinning burns CPU; asleep or runnable, the waiter leaves its CPU to other tasks",
        "peak rmap metadata is about the same under cow_context as under anon_vma (1000 B vs 1000 B)",
    ]
    text = compare_text(results)
    assert "(baseline anon_vma; ratios are design / baseline)" in text
    fork_row = next(line for line in text.splitlines() if line.startswith("  fork p99 "))
    assert fork_row.split() == ["fork", "p99", "3.10", "us", "1.00", "us", "0.32x"]
    assert "Verdict\n  - cow_context: invariants failed (1 violation(s))\n  - cow_context: 2 mapping" in text


def test_summary_text_has_latency_top_locks_and_verdict(tiny: dict[str, Any]) -> None:
    text = summary_text(tiny)
    assert "Operation latency" in text
    assert "Top contended locks" in text and "ptl/1" in text
    assert "\nVerdict\n  - " in text
