"""The migrate actor's ``batch``: a compaction pass migrates its folios back to back (``compact_zone``
only ``cond_resched()``s between them), which is what lets a low-priority compactor run through a
scheduler tick inside an rmap walk (H8 --full)."""

from __future__ import annotations

from typing import Any

from workloads.runner import run_one
from workloads.scenario import scenario_from_data


def _migrations(batch: int) -> int:
    scenario = scenario_from_data({
        "name": "compaction-pass", "run": {"cpus": 2, "duration_ns": 3_000_000, "designs": ["anon_vma"]},
        "process": [{"name": "app", "regions": [{"start": 0, "pages": 64}], "populate": True}],
        "actor": [{"kind": "migrate", "interval_ns": 1_000_000, "batch": batch}],
    })
    rec: dict[str, Any] = run_one(scenario, "anon_vma")
    count: int = rec["operations"].get("migrate", {}).get("count", 0)
    return count


def test_a_pass_migrates_its_batch_back_to_back() -> None:
    """With a pass every ~1 ms, one folio per pass gives a few migrations in 3 ms; 64 per pass
    gives at least one whole pass, many times more."""
    single = _migrations(1)
    passes = _migrations(64)
    assert 0 < single < 16
    assert passes >= 64 and passes > 8 * single
