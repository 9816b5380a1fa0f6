"""HdrHistogram interval logs (.hlog), one file per operation, one tagged line per design.

The standard log format (HdrHistogram's ``HistogramLogWriter``, version 1.3): comment lines
``#[Histogram log format version 1.3]``, ``#[StartTime: <s> (seconds since epoch), <date>]``,
``#[BaseTime: ...]``, the legend
``"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"`` and one
line per interval: ``Tag=<design>,<start s>,<length s>,<max ms>,<base64 histogram>``.

A run records one histogram per operation over the whole run, so each design contributes one
interval, ``[0, end_ns]`` of virtual time; StartTime is the virtual epoch 0 (never a wall clock)
so the file is the same every time.  Values are integer ns as recorded; Interval_Max is in ms
(the writer's default ``max_value_unit_ratio`` of 10^6).  Readable by ``hdrh.log.HistogramLogReader``
and the Java/C HdrHistogram tools (HistogramLogProcessor, hdr-plot).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from records.files import atomic_write
from reports.common import Results, check_results, op_names, safe_name

__all__ = ["FORMAT_VERSION", "HIGHEST_NS", "hlog_text", "read_hlog", "write_hlogs"]

FORMAT_VERSION = "1.3"
HIGHEST_NS = 3_600_000_000_000  # concurrency.histogram's range: the records' histograms use it


def _seconds(ns: int) -> str:
    """Integer ns as decimal seconds, exact (no float rounding)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _millis(ns: int) -> str:
    return f"{ns // 1_000_000}.{ns % 1_000_000:06d}"


def hlog_text(op: str, scenario: str, intervals: Sequence[tuple[str, int, int, str]]) -> str:
    """The log of one operation; ``intervals`` are (tag, end_ns, max_ns, base64 histogram)."""
    lines = [
        f"#[Histogram log format version {FORMAT_VERSION}]",
        f"#[rmapsim: scenario {scenario}, operation {op}; virtual time, values in ns, "
        "one interval per design]",
        "#[StartTime: 0.000 (seconds since epoch), Thu Jan 01 00:00:00 UTC 1970]",
        "#[BaseTime: 0.000 (seconds since epoch)]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    ]
    for tag, end_ns, max_ns, blob in intervals:
        lines.append(f"Tag={safe_name(tag)},{_seconds(0)},{_seconds(end_ns)},{_millis(max_ns)},{blob}")
    return "\n".join(lines) + "\n"


def write_hlogs(results: Results, outdir: Path) -> list[Path]:
    """``outdir/hlog/<operation>.hlog`` for every operation with recorded values."""
    doc = check_results(results)
    runs = doc.runs
    scenario = doc.scenario.name
    paths = []
    for op in op_names(runs):
        intervals = []
        for run in runs:
            rec = run.operations.get(op)  # a design that never ran the operation has no interval
            if rec is None or not rec.hdr:
                continue
            intervals.append((run.design, run.outcome.end_ns, rec.max_ns, rec.hdr))
        if intervals:
            path = outdir / "hlog" / f"{safe_name(op)}.hlog"
            atomic_write(path, hlog_text(op, scenario, intervals))
            paths.append(path)
    return paths


def read_hlog(path: Path) -> list[HdrHistogram]:
    """Every interval histogram of a log, in file order, through hdrh's own reader."""
    reader = HistogramLogReader(str(path), HdrHistogram(1, HIGHEST_NS, 3))
    out = []
    try:
        while True:
            hist = reader.get_next_interval_histogram()
            if hist is None:
                break
            out.append(hist)
    finally:
        reader.close()
    return out
