"""The README's quick start and CI stay in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)


def test_quick_start_is_exactly_two_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert commands[0].endswith(".venv/bin/rmapsim")
    assert "pytest" in commands[1] and "ruff check" in commands[1] and "mypy" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert _quick_start_commands()[1] in ci.splitlines()


def test_the_readme_example_scenario_runs_clean_under_anon_vma(tmp_path: Path) -> None:
    """A new user copies the README's TOML example: under mainline anon_vma it must be clean, at
    its own seed and under a perturbed schedule (what the COW context does with it is a finding
    the README states)."""
    from concurrency.perturb import Perturbation
    from workloads.explore import Job, ScenarioSource, Variant, execute

    text = (ROOT / "README.md").read_text().split("A TOML scenario:", 1)[1]
    example = re.search(r"```toml\n(.*?)\n```", text, flags=re.S)
    assert example is not None
    path = tmp_path / "example.toml"
    path.write_text(example.group(1))
    src = ScenarioSource.from_path(path, {"run.duration_ns": 2_000_000})
    for perturb in (Perturbation.none(), Perturbation(True, 0.2, ((300_000, 50_000), (900_000, 5_000)))):
        verdict = execute(Job(1, Variant("anon_vma"), 3, perturb, src))
        assert verdict["category"] == "sound", verdict["detail"]


def test_the_readme_test_command_runs_the_long_tests_too() -> None:
    """pyproject's addopts leave `long` out of the everyday suite; CI's command must put it back."""
    import shlex

    runs = [shlex.split(part) for part in _quick_start_commands()[1].split("&&")]
    pytest_runs = [words for words in runs if words[0].endswith("pytest")]
    assert len(pytest_runs) == 1
    words = pytest_runs[0]
    assert words[words.index("-m") + 1] == "long or not long"
    # the compiled build's run (.ci/test-compiled) puts them back too
    assert "-m 'long or not long'" in (ROOT / ".ci" / "test-compiled").read_text()


def test_the_readme_parameter_table_is_the_scenario_schema() -> None:
    """One source: the README's table is workloads.scenario.PARAMS, row for row."""
    from workloads.scenario import params_markdown

    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- PARAMS: generated from workloads.scenario.params_markdown() -->\n", 1)[1]
    table = table.split("<!-- /PARAMS -->", 1)[0]
    assert table == params_markdown(), "regenerate the README table with workloads.scenario.params_markdown()"
