"""The schema name of every file the simulator writes, each defined once."""

from __future__ import annotations

from typing import Final

__all__ = ["EXPLORE_SCHEMA", "RECORD_SCHEMA", "RESULTS_SCHEMA", "SWEEP_SCHEMA"]

RECORD_SCHEMA: Final = "rmapsim.result/1"  # one run's record (one design)
RESULTS_SCHEMA: Final = "rmapsim.results/1"  # result.json: a scenario and one record per design
SWEEP_SCHEMA: Final = "rmapsim.sweep/1"  # sweep.json
EXPLORE_SCHEMA: Final = "rmapsim.explore/1"  # explore.json
