"""Per-operation latency table: count, p50, p90, p99, p99.9 and max for every design.

The percentiles are the exact nearest-rank values the run recorded (``p99_ns``...); the HDR
encoding is only needed for the distribution plots and the .hlog files.
"""

from __future__ import annotations

from dataclasses import dataclass

from records.result import Latency
from reports.common import Results, check_results, fmt_time, format_table

__all__ = ["PERCENTILE_KEYS", "LatencyRow", "latency_rows", "latency_text"]

PERCENTILE_KEYS = (("p50", "p50_ns"), ("p90", "p90_ns"), ("p99", "p99_ns"), ("p99.9", "p99.9_ns"))


@dataclass(frozen=True, slots=True)
class LatencyRow:
    """One (operation, design) row: the count, the percentiles of :data:`PERCENTILE_KEYS` in
    their order, the maximum and the values beyond the histogram's range."""

    op: str
    design: str
    count: int
    percentiles: tuple[int, int, int, int]
    max_ns: int
    overflow: int

    @classmethod
    def of(cls, op: str, design: str, rec: Latency) -> LatencyRow:
        return cls(op, design, rec.count, (rec.p50_ns, rec.p90_ns, rec.p99_ns, rec.p99_9_ns), rec.max_ns,
                   rec.overflow)


def latency_rows(results: Results) -> list[LatencyRow]:
    """One row per (operation, design) that recorded the operation, in operation-name order."""
    runs = check_results(results).runs
    rows: list[LatencyRow] = []
    for op in sorted({op for run in runs for op in run.operations}):
        for run in runs:
            rec = run.operations.get(op)  # a design that never ran the operation has no row
            if rec is not None:
                rows.append(LatencyRow.of(op, run.design, rec))
    return rows


def latency_text(results: Results) -> str:
    """latency.txt: the table, operations grouped so designs sit next to each other."""
    doc = check_results(results)
    rows = latency_rows(doc)
    headers = ["operation", "design", "count", *(label for label, _ in PERCENTILE_KEYS), "max"]
    cells = [[r.op, r.design, str(r.count), *(fmt_time(v) for v in r.percentiles), fmt_time(r.max_ns)]
             for r in rows]
    title = f"Operation latency (virtual time), scenario {doc.scenario.name}\n\n"
    text = title + format_table(headers, cells, align="llrrrrrr")
    overflow = [r for r in rows if r.overflow]
    if overflow:
        text += "\nvalues beyond the histogram's range (counted, not in the percentiles):\n"
        text += "".join(f"  {r.op} ({r.design}): {r.overflow}\n" for r in overflow)
    return text
