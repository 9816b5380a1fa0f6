"""Strict scenario validation: one clear error naming file, line, key path, value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads.scenario import ScenarioError, apply_overrides, load_scenario, parse_value

GOOD = """\
name = "t"
[run]
cpus = 2
duration_ns = 100_000
designs = ["anon_vma"]

[[process]]
name = "p"
regions = [{start = 0, pages = 8}]

[[actor]]
kind = "fork_exit"
process = "p"
interval_ns = 10_000
"""


def load(tmp_path: Path, text: str) -> ScenarioError:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value


def test_a_good_scenario_loads(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GOOD)
    scenario = load_scenario(path)
    assert scenario.cpus == 2 and scenario.designs == ("anon_vma",)
    assert scenario.actors[0].params["interval_ns"] == 10_000


@pytest.mark.parametrize(
    ("old", "new", "line", "key", "words"),
    [
        ("cpus = 2", "cpsu = 2", 3, "run.cpsu", ["unknown key", "did you mean 'cpus'", "allowed:"]),
        ("cpus = 2", 'cpus = "two"', 3, "run.cpus", ['"two" is not an integer']),
        ("cpus = 2", "cpus = 0", 3, "run.cpus", ["0 out of range", "1..4096"]),
        ('designs = ["anon_vma"]', 'designs = ["anon_vmaa"]', 5, "run.designs",
         ['unknown design "anon_vmaa"', "did you mean 'anon_vma'", "cow_context"]),
        ('kind = "fork_exit"', 'kind = "fork_exti"', 12, "actor[0].kind",
         ['unknown actor "fork_exti"', "did you mean 'fork_exit'", "kswapd"]),
        ('process = "p"', 'process = "q"', 13, "actor[0].process", ['no process named "q"', "defined: p"]),
        ("interval_ns = 10_000", "interval_ns = -5", 14, "actor[0].interval_ns", ["-5 out of range"]),
        ("interval_ns = 10_000", "intervall_ns = 5", 14, "actor[0].intervall_ns",
         ["did you mean 'interval_ns'"]),
        ('name = "p"', 'name = 3', 8, "process[0].name", ["3 is not a string"]),
    ],
)
def test_each_error_names_file_line_key_value_and_allowed(tmp_path: Path, old: str, new: str, line: int,
                                                           key: str, words: list[str]) -> None:
    assert old in GOOD
    err = load(tmp_path, GOOD.replace(old, new, 1))
    text = str(err)
    assert text.startswith(f"{tmp_path / 's.toml'}:{line}: {key}: "), text
    for word in words:
        assert word in text, text


def test_switch_values_are_checked_against_the_design(tmp_path: Path) -> None:
    err = load(tmp_path, GOOD + '\n[switches.cow_context]\nwalk_safety = "locks"\n')
    assert "switches.cow_context.walk_safety" in str(err) and '"rcu"' in str(err)
    err = load(tmp_path, GOOD + "\n[switches.anon_vma]\nreuze = true\n")
    assert "did you mean 'reuse'" in str(err)


def test_costs_and_memory_are_validated(tmp_path: Path) -> None:
    err = load(tmp_path, GOOD + "\n[costs]\nslab_nss = 5\n")
    assert "costs.slab_nss" in str(err) and "did you mean 'slab_ns'" in str(err)
    err = load(tmp_path, GOOD + "\n[memory]\ntotal_pages = 100\nwmark_low = 50\nwmark_min = 60\n")
    assert "wmark_min <= wmark_low" in str(err)


def test_mutex_and_balance_switches_are_validated_and_recorded(tmp_path: Path) -> None:
    err = load(tmp_path, GOOD + "\n[mutex]\nhandof = false\n")
    assert "mutex.handof" in str(err) and "did you mean 'handoff'" in str(err)
    err = load(tmp_path, GOOD + "\n[mutex]\nspin = 1\n")
    assert "mutex.spin" in str(err) and "true or false" in str(err)
    path = tmp_path / "s.toml"
    path.write_text(GOOD.replace("cpus = 2", "cpus = 2\nbalance = false") + "\n[mutex]\nhandoff = false\n")
    scenario = load_scenario(path)
    assert scenario.mutex == {"handoff": False} and scenario.balance is False
    assert scenario.params()["mutex"] == {"handoff": False} and scenario.params()["balance"] is False


def test_syntax_errors_and_missing_files(tmp_path: Path) -> None:
    err = load(tmp_path, GOOD.replace("cpus = 2", "cpus = = 2"))
    assert "not valid TOML" in str(err) and err.line == 3
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "missing.toml")


def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GOOD)
    assert load_scenario(path, {"run.cpus": 8}).cpus == 8
    with pytest.raises(ScenarioError, match=r"run\.cpus"):
        load_scenario(path, {"run.cpus": 0})
    assert parse_value("8") == 8 and parse_value("true") is True and parse_value("rcu") == "rcu"
    assert apply_overrides({"a": {"b": 1}}, {"a.c": 2}) == {"a": {"b": 1, "c": 2}}


def test_a_python_scenario_uses_the_same_api(tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text(
        "from workloads.scenario import Scenario, ProcessSpec\n"
        "from actors.process import Region\n"
        "def scenario():\n"
        "    return Scenario(name='py', designs=('anon_vma',), duration_ns=50_000,\n"
        "                    processes=(ProcessSpec('p', (Region(0, 4),)),))\n"
    )
    scenario = load_scenario(path)
    from workloads.runner import run_one

    record = run_one(scenario, "anon_vma")
    assert record["operations"]["populate"]["count"] == 4
    assert record["invariants"]["passed"]


def test_the_workload_phase_starts_after_populate(tmp_path: Path) -> None:
    # Populating 2,048 pages takes about 2 ms of virtual time, ten times the workload phase: the
    # forks still get their 200 us, and populate's faults are not the workload's faults.
    path = tmp_path / "s.toml"
    path.write_text(GOOD.replace("duration_ns = 100_000", "duration_ns = 200_000")
                    .replace("regions = [{start = 0, pages = 8}]", "regions = [{start = 0, pages = 2048}]"))
    from workloads.runner import run_one

    record = run_one(load_scenario(path), "anon_vma")
    assert record["operations"]["populate"]["count"] == 2048
    assert "fault" not in record["operations"]
    forks = record["operations"]["fork"]["count"]
    assert forks > 0
    assert record["throughput"]["fork"] == forks * 1e9 / 200_000
    assert "populate" not in record["throughput"]  # the set-up has latencies, not a rate
    assert record["outcome"]["workload_start_ns"] > 1_000_000  # 2,048 faults of about 1 us
