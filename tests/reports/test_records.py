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
