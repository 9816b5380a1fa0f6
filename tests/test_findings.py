"""The findings the README states still reproduce: each file in findings/ is a reproducer that
``rmapsim explore`` wrote (its header names the variant and the failure category) and must still fail
that way.  A model change that moves the race out of this schedule fails here: explore the variant
again and replace the file and its story.  The header's record sha256 is the rerun's record: a change
that only adds a field to the record (a new cost in the recorded cost model) updates it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workloads.explore import classify, record_digest
from workloads.runner import RunFailed, run_one
from workloads.scenario import load_scenario

FINDINGS = Path(__file__).resolve().parent.parent / "findings"


@pytest.mark.parametrize("path", sorted(FINDINGS.glob("*.toml")), ids=lambda p: p.stem)
def test_a_stated_finding_still_reproduces(path: Path) -> None:
    header = re.match(r"# rmapsim explore reproducer: (\S+), (\S+)\n", path.read_text())
    assert header is not None, "not an explore reproducer"
    category = header.group(2)
    scenario = load_scenario(path)
    try:
        record = run_one(scenario, scenario.designs[0])
    except RunFailed as failed:  # a deadlock is a finding too: its record comes with the error
        assert failed.record is not None
        record = failed.record
    digest = re.search(r"^# record sha256 ([0-9a-f]{64})$", path.read_text(), flags=re.M)
    assert digest is not None and record_digest(record) == digest.group(1), "the header's record sha256"
    categories, _, _ = classify(record)
    assert category in categories
    assert path.with_name(path.stem + ".story.txt").exists(), "a finding comes with its story"
