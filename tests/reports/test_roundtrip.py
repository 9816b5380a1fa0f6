"""result.json and .hlog round trips: what is decoded equals what was recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from concurrency.histogram import LatencyHistogram
from reports.common import check_results
from reports.hlog import hlog_text, read_hlog, write_hlogs
from workloads.record import dump_json, histogram_record


def recorded(hist: HdrHistogram) -> list[tuple[int, int]]:
    return [(int(it.value_iterated_to), int(it.count_at_value_iterated_to))
            for it in hist.get_recorded_iterator()]


def test_result_json_round_trip_keeps_every_histogram(tiny: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text(dump_json(tiny))
    loaded = json.loads(path.read_text())
    assert loaded == tiny
    assert dump_json(loaded) == path.read_text()
    for run in loaded["runs"]:
        for op, rec in run["operations"].items():
            hist = HdrHistogram.decode(rec["hdr"])
            assert hist.get_total_count() == rec["count"], op
            assert hist.get_max_value() >= rec["max_ns"]
        for lock in run["locks"]:
            for side in ("write", "read"):
                if side not in lock:
                    continue
                s = lock[side]
                # Every wait in the tiny run finished, every hold was released.
                wait = HdrHistogram.decode(s["wait_hist"]).get_total_count() if s["wait_hist"] else 0
                hold = HdrHistogram.decode(s["hold_hist"]).get_total_count() if s["hold_hist"] else 0
                assert (wait, hold) == (s["contentions"], s["acquisitions"]), lock["name"]


def test_decoded_histogram_equals_the_recorded_counts() -> None:
    hist = LatencyHistogram()
    values = [0, 1, 1, 7, 150, 150, 150, 999, 2047, 5000, 123_456, 3_000_000_000]
    for v in values:
        hist.record(v)
    hist.record(-1)  # out of range: counted, not in the histogram
    rec = json.loads(dump_json(histogram_record(hist)))
    assert rec["overflow"] == 1 and rec["count"] == len(values)
    decoded = HdrHistogram.decode(rec["hdr"])
    assert recorded(decoded) == recorded(hist.to_hdr())
    exact = {v: values.count(v) for v in values if v < 2048}  # below 2048 HDR buckets are exact at 3 digits
    for v, n in exact.items():
        assert decoded.get_count_at_value(v) == n


def test_hlog_reads_back_through_hdrhs_reader(tiny: dict[str, Any], tmp_path: Path) -> None:
    paths = write_hlogs(tiny, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["hlog/fault.hlog", "hlog/fork.hlog"]
    for path in paths:
        op = path.stem
        lines = path.read_text().splitlines()
        assert lines[0] == "#[Histogram log format version 1.3]"
        assert lines[2].startswith("#[StartTime: 0.000 (seconds since epoch), ")
        assert lines[4] == '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
        hists = read_hlog(path)
        assert [h.get_tag() for h in hists] == [r["design"] for r in tiny["runs"]]
        for hist, run in zip(hists, tiny["runs"], strict=True):
            rec = run["operations"][op]
            assert hist.get_total_count() == rec["count"]
            assert recorded(hist) == recorded(HdrHistogram.decode(rec["hdr"]))
            # The interval is the whole run, in virtual seconds.
            assert hist.get_start_time_stamp() == 0
            assert hist.get_end_time_stamp() == pytest.approx(run["outcome"]["end_ns"] / 1e6)


def test_hlog_interval_line_is_exact_in_ns() -> None:
    text = hlog_text("fork", "s", [("cow context", 1_234_567_891, 2_500_000, "HISTFAAA")])
    assert text.splitlines()[-1] == "Tag=cow_context,0.000000000,1.234567891,2.500000,HISTFAAA"


def test_reports_refuse_a_file_that_is_not_a_result() -> None:
    with pytest.raises(ValueError, match="not a result file"):
        check_results({"schema": "something/1"})
