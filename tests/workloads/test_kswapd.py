"""kswapd when nothing can be reclaimed: it gives up a pass after scanning the whole LRU without
freeing a page and backs off, instead of rescanning the same folios for ever (which, with every
folio kept, used to spin without virtual time advancing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import actors.daemons
from mm.system import MmSystem
from mm.types import Folio
from mm.vmscan import Reclaim
from workloads.runner import run_one
from workloads.scenario import load_scenario

SCENARIO = """
name = "kswapd-nothing-reclaimable"
description = "memory below the low watermark and every folio kept"
mirrors = "balance_pgdat giving up (kswapd_failures)"

[run]
cpus = 2
duration_ns = 2_000_000
max_events = 200_000
designs = ["anon_vma"]

[memory]
total_pages = 300
wmark_low = 200
wmark_high = 250

[[process]]
name = "p"
regions = [{start = 0, pages = 256}]

[[actor]]
kind = "kswapd"
"""


@pytest.mark.parametrize("keep", [Reclaim.KEEP_CONTENDED, Reclaim.KEEP_LOCKED])
def test_kswapd_backs_off_when_every_folio_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    keep: Reclaim) -> None:
    async def never(system: MmSystem, folio: Folio) -> Reclaim:
        return keep  # the worst case: kept at once, at no cost of its own

    monkeypatch.setattr(actors.daemons, "shrink_folio", never)
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    record: dict[str, Any] = run_one(load_scenario(path), "anon_vma")
    assert record["outcome"]["reason"] == "completed"  # not the event budget
    counters = record["counters"]
    assert counters["kswapd_failures"] >= 2
    scanned = counters[f"reclaim_{keep.value}"]
    # Each pass scans about one LRU's worth (256 folios, in batches of 32) and then sleeps 100 µs.
    assert scanned <= (counters["kswapd_failures"] + 1) * (256 + 32)
    assert record["operations"]["kswapd_batch"]["min_ns"] > 0  # isolation costs time
