"""Result records: what a run produces and what reports/ reads (schema ``rmapsim.result/2``).

One record per (scenario, design) run; ``result.json`` holds ``{"schema": "rmapsim.results/1",
"scenario": {...}, "runs": [record, ...]}``.  Everything here is plain JSON with sorted keys so the
same run gives byte-identical files.  The README documents every field.  The schema names and the
file writing live in the bottom layer (records/), re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from records.files import atomic_write, dump_json
from records.result import JsonObject, Latency
from records.schema import RECORD_SCHEMA, RESULTS_SCHEMA

if TYPE_CHECKING:
    from concurrency.engine import Engine
    from concurrency.histogram import LatencyHistogram

__all__ = [
    "RECORD_SCHEMA",
    "RESULTS_SCHEMA",
    "atomic_write",
    "dump_json",
    "histogram_record",
    "latency_record",
    "lock_records",
]

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def latency_record(hist: LatencyHistogram) -> Latency:
    """count, min/mean/max, p50/p90/p99/p99.9 (exact, ns), overflow and the HDR encoding."""
    count = hist.count
    p = hist.percentiles(PERCENTILES)
    return Latency(count=count, min_ns=hist.min_ns, max_ns=hist.max_ns, total_ns=hist.total_ns,
                   mean_ns=round(hist.total_ns / count, 1) if count else 0, overflow=hist.overflow,
                   p50_ns=p["p50"], p90_ns=p["p90"], p99_ns=p["p99"], p99_9_ns=p["p99.9"],
                   hdr=hist.encode() if count else "")


def histogram_record(hist: LatencyHistogram) -> dict[str, Any]:
    """:func:`latency_record` as the record's JSON (read by index in tests/reports/tiny.py)."""
    return latency_record(hist).to_json()


def lock_records(engine: Engine) -> list[JsonObject]:
    """Per lock class (lock_stat's rows), sorted by class key."""
    return [engine.lock_classes[key].to_dict() for key in sorted(engine.lock_classes)]
