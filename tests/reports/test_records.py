"""The typed result record (records/result.py): a real run's JSON round-trips byte for byte, and
schema drift is an error naming the key path, never a silent default."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from records.files import dump_json
from records.result import RecordError, ResultsFile, RunRecord
from reports.common import check_results, typed_runs


def test_a_real_run_round_trips_byte_for_byte(tiny: dict[str, Any]) -> None:
    from rmapsim.cli import builtin_scenarios
    from workloads.runner import run_scenario
    from workloads.scenario import load_scenario

    scenario = load_scenario(builtin_scenarios()["reclaim-churn"], {"run.duration_ns": 300_000})
    results = run_scenario(scenario, designs=["anon_vma", "cow_context"])
    typed = ResultsFile.from_json(results)
    assert dump_json(typed.to_json()) == dump_json(results)
    assert [run.design for run in typed.runs] == ["anon_vma", "cow_context"]
    assert typed.runs[0].operations["fork"].count == results["runs"][0]["operations"]["fork"]["count"]
    assert dump_json(ResultsFile.from_json(tiny).to_json()["runs"]) == dump_json(tiny["runs"])


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.pop("migrations"), r"runs\[0\]: missing migrations"),
    (lambda r: r.update(color="red"), r"runs\[0\]: unknown key\(s\) color"),
    (lambda r: r["outcome"].update(events="many"), r"runs\[0\]\.outcome\.events: expected an integer"),
    (lambda r: r["operations"]["fork"].pop("p99.9_ns"), r"runs\[0\]\.operations\.fork: missing p99\.9_ns"),
    (lambda r: r["invariants"].update(passed=1), r"runs\[0\]\.invariants\.passed: expected true or false"),
    (lambda r: r.pop("phases"), r"runs\[0\]: missing phases"),
    (lambda r: r["phases"].pop("wind_down"), r"runs\[0\]\.phases: missing wind_down"),
    (lambda r: r["phases"]["workload"]["lock_wait"].pop("spinning_ns"),
     r"runs\[0\]\.phases\.workload\.lock_wait: missing spinning_ns"),
])
def test_schema_drift_is_an_error_naming_the_key(tiny: dict[str, Any], change: Any, message: str) -> None:
    broken = copy.deepcopy(tiny)
    change(broken["runs"][0])
    with pytest.raises(RecordError, match=message):
        check_results(broken)
    with pytest.raises(RecordError, match=message):
        typed_runs(broken)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["locks"][0]["write"].pop("acquisitions"), r"runs\[0\]\.locks\[0\]\.write: missing acquisitions"),
    (lambda r: r["locks"][0].update(rw="yes"), r"runs\[0\]\.locks\[0\]\.rw: expected true or false"),
    (lambda r: r["locks"][0]["write"]["contention_points"].update(fork="2"),
     r"runs\[0\]\.locks\[0\]\.write\.contention_points\.fork: expected an integer"),
    (lambda r: r["lockdep"].pop("findings"), r"runs\[0\]\.lockdep: missing findings"),
    (lambda r: r["lockdep"]["edges"].append(["a"]), r"runs\[0\]\.lockdep\.edges\[2\]: expected \[held, acquired\]"),
    (lambda r: r["walks"]["folio_referenced"].pop("walks"), r"runs\[0\]\.walks\.folio_referenced: missing walks"),
    (lambda r: r["memory"].update(total_bytes=1.5), r"runs\[0\]\.memory\.total_bytes: expected an integer"),
])
def test_drift_in_the_sections_reports_read_by_key_is_an_error_on_load(tiny: dict[str, Any], change: Any,
                                                                      message: str) -> None:
    """lock_stat rows, the lockdep section, the walks and the memory account are the model's own
    JSON in the record, but the reports read them by fixed keys: a changed key fails on load."""
    broken = copy.deepcopy(tiny)
    change(broken["runs"][0])
    with pytest.raises(RecordError, match=message):
        check_results(broken)


def test_the_typed_views_read_what_the_record_holds(tiny: dict[str, Any]) -> None:
    raw = tiny["runs"][0]
    run = RunRecord.from_json(raw)
    for lock, row in zip(run.lock_classes(), raw["locks"], strict=True):
        assert (lock.name, lock.rw, lock.write.acquisitions) == (row["name"], row["rw"], row["write"]["acquisitions"])
        assert [name for name, _ in lock.sides()] == (["write", "read"] if row["rw"] else ["write"])
    lockdep = run.lockdep_section()
    assert lockdep.edges == (("anon_vma->rwsem", "ptl"), ("ptl", "ptl/1")) and lockdep.deps is None
    assert run.walk_counts()["folio_referenced"].vmas_visited == 12
    assert run.memory_counts()["peak_total_bytes"] == raw["memory"]["peak_total_bytes"]


def test_a_record_of_the_previous_schema_is_refused_not_read_as_zeros(tiny: dict[str, Any]) -> None:
    """/1 records had no phases and no spinning/sleeping parts of the wait: a reader must not take
    them for zero, so the record schema's number moved on (records/schema.py)."""
    old = copy.deepcopy(tiny)
    old["runs"][0]["schema"] = "rmapsim.result/1"
    with pytest.raises(ValueError, match=r"runs\[0\]: not a 'rmapsim\.result/2' record"):
        check_results(old)


def test_a_record_is_frozen(tiny: dict[str, Any]) -> None:
    run = RunRecord.from_json(tiny["runs"][0])
    with pytest.raises(AttributeError):
        run.design = "other"  # type: ignore[misc]


def test_the_sweep_reader_checks_the_keys_the_sweep_report_reads() -> None:
    from records.schema import SWEEP_SCHEMA
    from records.sweep import SweepFile

    with pytest.raises(ValueError, match=r"not a sweep file: schema is 'rmapsim\.sweep/0'"):
        SweepFile.from_json({"schema": "rmapsim.sweep/0", "points": []})
    point: dict[str, Any] = {"params": {"run.cpus": 1}, "status": 3, "error": None, "result": None}
    sweep = {"schema": SWEEP_SCHEMA, "scenario": {"name": "t", "description": "", "source": "t.toml"},
             "grid": {"run.cpus": [1, 2]}, "points": [point]}
    with pytest.raises(RecordError, match=r"sweep\.points\[0\]\.status: expected a string"):
        SweepFile.from_json(sweep)
    point.update(status="failed", designs={"anon_vma": {"categories": ["crash"], "detail": "boom"}})
    doc = SweepFile.from_json(sweep)
    assert doc.grid == {"run.cpus": (1, 2)} and doc.points[0].designs == {"anon_vma": ("crash",)}
    point["designs"] = {"anon_vma": {"detail": "boom"}}
    with pytest.raises(RecordError, match=r"sweep\.points\[0\]\.designs\.anon_vma: missing categories"):
        SweepFile.from_json(sweep)


def test_the_explore_reader_checks_the_keys_the_explore_report_reads() -> None:
    from records.explore import ExploreFile
    from records.schema import EXPLORE_SCHEMA

    doc: dict[str, Any] = {
        "schema": EXPLORE_SCHEMA, "scenario": {"name": "s", "source": "s.toml"}, "runs_per_variant": 2,
        "seed_base": 1, "perturb": {"shuffle": True, "jitter": 0.2, "preemptions": 3}, "complete": True,
        "summary": {"anon_vma": {"runs": 2, "failed": 0, "by_category": {}}}, "runs": [], "reproducers": []}
    assert ExploreFile.from_json(doc).summary["anon_vma"].runs == 2
    del doc["summary"]
    with pytest.raises(RecordError, match=r"explore: missing summary"):
        ExploreFile.from_json(doc)
