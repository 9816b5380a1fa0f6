"""The schema name of every file the simulator writes, each defined once."""

from __future__ import annotations

from typing import Final

__all__ = ["EXPLORE_SCHEMA", "RECORD_SCHEMA", "RESULTS_SCHEMA", "SWEEP_SCHEMA"]

# one run's record (one design).  A record whose keys change gets the next number, so that a
# reader never takes an old record's missing field for zero: /2 added ``phases`` and the lock
# sides' ``waittime_spin_ns`` and ``waittime_sleep_ns``.
RECORD_SCHEMA: Final = "rmapsim.result/2"
RESULTS_SCHEMA: Final = "rmapsim.results/1"  # result.json: a scenario and one record per design
SWEEP_SCHEMA: Final = "rmapsim.sweep/1"  # sweep.json
EXPLORE_SCHEMA: Final = "rmapsim.explore/1"  # explore.json
