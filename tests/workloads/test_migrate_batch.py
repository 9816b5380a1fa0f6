"""The migrate actor's ``batch``: a compaction pass migrates its folios back to back (``compact_zone``
only ``cond_resched()``s between them), which is what lets a low-priority compactor run through a
scheduler tick inside an rmap walk (H8 --full).  And its ``start_ns`` (H1's walks after the forks)."""

from __future__ import annotations

from typing import Any

from workloads.runner import run_one
from workloads.scenario import scenario_from_data


def _migrations(batch: int = 1, *, interval_ns: int = 1_000_000, start_ns: int = 0,
                duration_ns: int = 3_000_000) -> int:
    scenario = scenario_from_data({
        "name": "compaction-pass", "run": {"cpus": 2, "duration_ns": duration_ns, "designs": ["anon_vma"]},
        "process": [{"name": "app", "regions": [{"start": 0, "pages": 64}], "populate": True}],
        "actor": [{"kind": "migrate", "interval_ns": interval_ns, "batch": batch, "start_ns": start_ns}],
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


def test_start_ns_holds_the_first_pass_back() -> None:
    """No migration before ``start_ns`` into the workload: none when it is past the run, about half
    as many when it is half-way."""
    whole, half, none = (_migrations(interval_ns=20_000, start_ns=start, duration_ns=2_000_000)
                         for start in (0, 1_000_000, 3_000_000))
    assert none == 0
    assert whole > 40 and 0.3 * whole < half < 0.7 * whole, (whole, half)
