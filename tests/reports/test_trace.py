"""The timeline tracer: well-formed trace-event JSON from a real run, and the sampled event log."""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from concurrency.trace import LANE_TID_BASE, ChromeTracer, EventLog
from tests.reports.tiny import tiny_record

REQUIRED = {"X": {"name", "cat", "ph", "pid", "tid", "ts", "dur"},
            "M": {"name", "ph", "pid", "tid", "args"},
            "s": {"name", "cat", "ph", "pid", "tid", "ts", "id"},
            "f": {"name", "cat", "ph", "pid", "tid", "ts", "id", "bp"}}


def ns(us: float) -> int:
    return round(us * 1000)


def traced(tmp_path: Path, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    tracer = ChromeTracer(**kw)
    rec = tiny_record("mutex_design", tracer=tracer)
    path = tracer.dump(tmp_path / "trace.json")
    return rec, json.loads(path.read_text())


def test_trace_is_valid_trace_event_json(tmp_path: Path) -> None:
    rec, trace = traced(tmp_path)
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    for ev in events:
        assert REQUIRED[ev["ph"]] <= set(ev), ev
        assert ev["pid"] == 0 and isinstance(ev["tid"], int)
        if ev["ph"] != "M":
            assert isinstance(ev["ts"], float | int) and ev["ts"] >= 0
        if ev["ph"] == "X":
            assert ev["dur"] >= 0
    names = {ev["tid"]: ev["args"]["name"] for ev in events if ev["name"] == "thread_name"}
    assert names[0] == "CPU 0" and names[1] == "CPU 1"
    assert all(names.get(ev["tid"]) for ev in events if ev["ph"] != "M"), "every track is named"

    slices = [ev for ev in events if ev["ph"] == "X"]
    by_cat = Counter(ev["cat"] for ev in slices)
    # One slice per operation, per completed wait and per released hold: the record's own counts.
    assert by_cat["op"] == rec["total_ops"]
    sides = [lk[s] for lk in rec["locks"] for s in ("write", "read") if s in lk]
    assert by_cat["lock_wait"] == sum(s["contentions"] for s in sides)
    assert by_cat["lock_hold"] == sum(s["acquisitions"] for s in sides)
    names_seen = {ev["name"] for ev in slices}
    # subclasses keep their lock_stat names: fork's nested source PTL is ptl/1
    assert {"fork", "fault", "wait ptl/1", "hold anon_vma->rwsem W", "hold ptl W", "hold ptl/1 W"} <= names_seen


def test_slices_on_one_track_nest(tmp_path: Path) -> None:
    _, trace = traced(tmp_path)
    tracks: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for ev in trace["traceEvents"]:
        if ev["ph"] == "X":
            start = ns(ev["ts"])
            tracks[ev["tid"]].append((start, start + ns(ev["dur"])))
    for tid, spans in tracks.items():
        stack: list[int] = []
        for start, end in sorted(spans, key=lambda se: (se[0], -se[1])):
            while stack and stack[-1] <= start:
                stack.pop()
            assert not stack or end <= stack[-1], f"partial overlap on tid {tid} at {start} ns"
            stack.append(end)
    # Hand-over-hand locking in fork overlaps partially: those slices went to an extra lane.
    assert any(tid >= LANE_TID_BASE for tid in tracks)


def test_flows_link_a_release_to_the_waiter_it_let_in(tmp_path: Path) -> None:
    _, trace = traced(tmp_path)
    events = trace["traceEvents"]
    flows: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for ev in events:
        if ev["ph"] in ("s", "f"):
            assert ev["ph"] not in flows[ev["id"]]
            flows[ev["id"]][ev["ph"]] = ev
    assert flows
    ends = {(ev["tid"], ns(ev["ts"]) + ns(ev["dur"]), ev["name"].split()[0])
            for ev in events if ev["ph"] == "X"}
    for pair in flows.values():
        s, f = pair["s"], pair["f"]
        assert s["ts"] <= f["ts"]
        assert (s["tid"], ns(s["ts"]), "hold") in ends  # starts where a hold ended
        assert (f["tid"], ns(f["ts"]), "wait") in ends  # finishes where a wait ended


def test_tracing_changes_nothing_in_the_run_and_is_reproducible(tmp_path: Path) -> None:
    rec, trace = traced(tmp_path)
    assert rec == tiny_record("mutex_design")
    again = tiny_record("mutex_design", tracer=(tracer := ChromeTracer()))
    assert again == rec
    assert tracer.to_json() == trace


def test_max_events_bounds_the_trace_and_counts_the_rest(tmp_path: Path) -> None:
    _, trace = traced(tmp_path, max_events=20)
    kept = [ev for ev in trace["traceEvents"] if ev["ph"] != "M"]
    assert len(kept) == 20
    assert trace["otherData"]["dropped_events"] > 0


def test_event_log_samples_every_nth_lock_event_in_virtual_time() -> None:
    buf = io.StringIO()
    log = EventLog(buf, sample_every=5)
    tiny_record("spin_design", tracer=ChromeTracer(event_log=log))
    lines = buf.getvalue().splitlines()
    assert log.seen > 20 and len(lines) == log.logged == sum(-(-n // 5) for n in log.sampled.values())
    times = []
    for line in lines:
        entry = json.loads(line)
        assert line == json.dumps(entry, sort_keys=True)  # JSONRenderer(sort_keys=True)
        assert entry["event"] in ("lock_contended", "lock_acquired", "lock_released")
        assert {"t_ns", "task", "cpu", "op", "lock", "instance", "mode", "level"} <= set(entry)
        assert "timestamp" not in entry
        times.append(entry["t_ns"])
    assert times == sorted(times)
