"""Per-operation latency table: count, p50, p90, p99, p99.9 and max for every design.

The percentiles are the exact nearest-rank values the run recorded (``p99_ns``...); the HDR
encoding is only needed for the distribution plots and the .hlog files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports.common import check_results, fmt_time, format_table, typed_runs

__all__ = ["PERCENTILE_KEYS", "latency_rows", "latency_text"]

PERCENTILE_KEYS = (("p50", "p50_ns"), ("p90", "p90_ns"), ("p99", "p99_ns"), ("p99.9", "p99.9_ns"))


def latency_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per (operation, design) that recorded the operation, in operation-name order."""
    runs = typed_runs(results)
    rows: list[dict[str, Any]] = []
    for op in sorted({op for run in runs for op in run.operations}):
        for run in runs:
            rec = run.operations.get(op)
            if rec is None:
                continue
            row: dict[str, Any] = {"op": op, "design": run.design, "count": rec.count, "max_ns": rec.max_ns,
                                   "overflow": rec.overflow}
            for label, value in zip((label for label, _ in PERCENTILE_KEYS),
                                    (rec.p50_ns, rec.p90_ns, rec.p99_ns, rec.p99_9_ns), strict=True):
                row[label] = value
            rows.append(row)
    return rows


def latency_text(results: Mapping[str, Any]) -> str:
    """latency.txt: the table, operations grouped so designs sit next to each other."""
    results = check_results(results)
    rows = latency_rows(results)
    headers = ["operation", "design", "count", *(label for label, _ in PERCENTILE_KEYS), "max"]
    cells = [[r["op"], r["design"], str(r["count"]), *(fmt_time(r[label]) for label, _ in PERCENTILE_KEYS),
              fmt_time(r["max_ns"])] for r in rows]
    title = f"Operation latency (virtual time), scenario {results['scenario'].get('name', '?')}\n\n"
    text = title + format_table(headers, cells, align="llrrrrrr")
    overflow = [r for r in rows if r["overflow"]]
    if overflow:
        text += "\nvalues beyond the histogram's range (counted, not in the percentiles):\n"
        text += "".join(f"  {r['op']} ({r['design']}): {r['overflow']}\n" for r in overflow)
    return text
