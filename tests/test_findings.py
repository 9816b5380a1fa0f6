"""The findings the README states still reproduce: each file in findings/ is a reproducer that
``rmapsim explore`` wrote (its header names the variant and the failure category) and must still fail
that way.  A model change that moves the race out of this schedule fails here: explore the variant
again and replace the file and its story."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workloads.explore import classify
from workloads.runner import run_one
from workloads.scenario import load_scenario

FINDINGS = Path(__file__).resolve().parent.parent / "findings"


@pytest.mark.parametrize("path", sorted(FINDINGS.glob("*.toml")), ids=lambda p: p.stem)
def test_a_stated_finding_still_reproduces(path: Path) -> None:
    header = re.match(r"# rmapsim explore reproducer: (\S+), (\S+)\n", path.read_text())
    assert header is not None, "not an explore reproducer"
    category = header.group(2)
    scenario = load_scenario(path)
    record = run_one(scenario, scenario.designs[0])
    categories, _, _ = classify(record)
    assert category in categories
    assert path.with_name(path.stem + ".story.txt").exists(), "a finding comes with its story"
