"""Timeline traces of a run: Chrome trace-event JSON (opens in Perfetto) and a sampled event log.

Attach a tracer as ``engine.tracer``; the lock base calls ``on_contended`` / ``on_acquired`` /
``on_released`` (concurrency/lock.py) and the actors call ``on_op`` for every timed operation.
With ``engine.tracer`` None none of this runs: the hooks sit behind one ``is not None`` test.

:class:`ChromeTracer` writes the Trace Event Format (``{"traceEvents": [...]}``):

* one track per simulated CPU: ``pid`` 0, ``tid`` = CPU index, ``thread_name`` "CPU n";
* complete (``"X"``) slices for operations (the op name), lock waits (``wait <class>``) and lock
  holds (``hold <class> R|W``), ``ts``/``dur`` in µs as floats (ns / 1000).  The class is the
  ``key`` the lock passes (``ptl/1`` for a nested subclass) or, when it passes none, the lock's
  base class;
* flow events (``"s"`` at the release, ``"f"`` with ``bp: "e"`` at the acquisition) from a
  releasing holder to each waiter that got the lock after waiting across that release.

Slices on one track must nest.  A task's own slices mostly do, but not always (a lock dropped
before one taken after it, hand-over-hand), and tasks sharing a CPU interleave while one sleeps.
Slices that would overlap partially go to an extra lane of the same CPU (``tid`` =
``LANE_TID_BASE * lane + cpu``, named "CPU n (lane k)", sorted next to its CPU), so the file is
always well formed.

:class:`EventLog` samples every N-th lock event into a JSON-lines log through structlog
(``JSONRenderer(sort_keys=True)``), stamped with the virtual time ``t_ns``; no wall clock.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import structlog

if TYPE_CHECKING:
    from concurrency.engine import SimTask
    from concurrency.lock import SimLock

__all__ = ["LANE_TID_BASE", "ChromeTracer", "EventLog"]

LANE_TID_BASE = 1000

# A slice: (cpu, start_ns, end_ns, seq, name, category, args)
_Slice = tuple[int, int, int, int, str, str, dict[str, Any]]


class EventLog:
    """Every ``sample_every``-th lock event as one JSON line (structlog), virtual time ``t_ns``.

    Sampling is by count, not by chance, so the same run logs the same lines.
    """

    def __init__(self, file: TextIO, *, sample_every: int = 100) -> None:
        if sample_every < 1:
            raise ValueError(f"sample_every must be >= 1, got {sample_every}")
        self.sample_every = sample_every
        self.seen = 0
        self.logged = 0
        self._log = structlog.wrap_logger(
            structlog.WriteLogger(file),
            processors=[structlog.processors.add_log_level,
                        structlog.processors.JSONRenderer(sort_keys=True)],
            wrapper_class=structlog.BoundLogger,
        )

    def _sampled(self) -> bool:
        n = self.seen
        self.seen = n + 1
        return n % self.sample_every == 0

    def _emit(self, event: str, task: SimTask, lock: SimLock, mode: str, key: str | None,
              **extra: Any) -> None:
        self.logged += 1
        self._log.info(event, t_ns=lock.engine.now, task=task.name, cpu=task.cpu.index, op=task.op,
                       lock=key or lock.lclass.key, instance=lock.name, mode=mode, **extra)

    def on_contended(self, task: SimTask, lock: SimLock, mode: str, key: str | None = None) -> None:
        if self._sampled():
            self._emit("lock_contended", task, lock, mode, key)

    def on_acquired(self, task: SimTask, lock: SimLock, mode: str, wait_start: int | None,
                    key: str | None = None) -> None:
        if self._sampled():
            wait = None if wait_start is None else lock.engine.now - wait_start
            self._emit("lock_acquired", task, lock, mode, key, wait_ns=wait)

    def on_released(self, task: SimTask, lock: SimLock, mode: str, since: int,
                    key: str | None = None) -> None:
        if self._sampled():
            self._emit("lock_released", task, lock, mode, key, hold_ns=lock.engine.now - since)

    def on_op(self, task: SimTask, name: str, start_ns: int, end_ns: int) -> None:
        """Operations are not lock events: the log ignores them (the timeline has them)."""


class ChromeTracer:
    """Collects slices and flows during a run; :meth:`dump` writes ``trace.json``.

    ``max_events`` bounds memory on long runs: past it, events are counted in ``dropped`` (and
    reported in the file's ``otherData``) instead of kept.  ``event_log`` also receives every
    lock event, so one tracer slot serves both.
    """

    def __init__(self, *, event_log: EventLog | None = None, max_events: int | None = None,
                 process_name: str = "rmapsim") -> None:
        self.event_log = event_log
        self.max_events = max_events
        self.process_name = process_name
        self.dropped = 0
        self._slices: list[_Slice] = []
        # flows: (flow id, from slice index, from ns, to slice index, to ns)
        self._flows: list[tuple[int, int, int, int, int]] = []
        # Per lock instance (looked up by identity, never iterated): the last release and the
        # index of the hold slice it closed.  A waiter whose wait spans it was woken by it.
        self._last_release: dict[int, tuple[int, int]] = {}
        self._cpus: set[int] = set()
        self._seq = 0

    # -- hooks ---------------------------------------------------------------------------------

    def _full(self, need: int = 1) -> bool:
        """True (and the event counted as dropped) when ``need`` more events would pass the cap."""
        if self.max_events is not None and len(self._slices) + 2 * len(self._flows) + need > self.max_events:
            self.dropped += need
            return True
        return False

    def _slice(self, cpu: int, start: int, end: int, name: str, cat: str, args: dict[str, Any]) -> int:
        self._cpus.add(cpu)
        self._seq += 1
        self._slices.append((cpu, start, end, self._seq, name, cat, args))
        return len(self._slices) - 1

    def on_contended(self, task: SimTask, lock: SimLock, mode: str, key: str | None = None) -> None:
        if self.event_log is not None:
            self.event_log.on_contended(task, lock, mode, key)

    def on_acquired(self, task: SimTask, lock: SimLock, mode: str, wait_start: int | None,
                    key: str | None = None) -> None:
        if self.event_log is not None:
            self.event_log.on_acquired(task, lock, mode, wait_start, key)
        if wait_start is None or self._full():
            return
        now = lock.engine.now
        idx = self._slice(task.cpu.index, wait_start, now, f"wait {key or lock.lclass.key}", "lock_wait",
                          {"task": task.name, "op": task.op, "lock": lock.name, "mode": mode})
        rel = self._last_release.get(id(lock))
        if rel is not None and rel[0] >= wait_start and not self._full(2):
            self._flows.append((len(self._flows) + 1, rel[1], rel[0], idx, now))

    def on_released(self, task: SimTask, lock: SimLock, mode: str, since: int,
                    key: str | None = None) -> None:
        if self.event_log is not None:
            self.event_log.on_released(task, lock, mode, since, key)
        if self._full():
            return
        now = lock.engine.now
        idx = self._slice(task.cpu.index, since, now, f"hold {key or lock.lclass.key} {mode}", "lock_hold",
                          {"task": task.name, "op": task.op, "lock": lock.name})
        self._last_release[id(lock)] = (now, idx)

    def on_op(self, task: SimTask, name: str, start_ns: int, end_ns: int) -> None:
        if self.event_log is not None:
            self.event_log.on_op(task, name, start_ns, end_ns)
        if self._full():
            return
        self._slice(task.cpu.index, start_ns, end_ns, name, "op", {"task": task.name})

    # -- output --------------------------------------------------------------------------------

    def _lanes(self) -> list[int]:
        """Lane of each slice: slices in one lane of a CPU nest or are disjoint."""
        lane_of = [0] * len(self._slices)
        slices = self._slices
        # By CPU, then start; a longer slice before a shorter one starting with it (the parent).
        order = sorted(range(len(slices)),
                       key=lambda i: (slices[i][0], slices[i][1], -slices[i][2], slices[i][3]))
        stacks: dict[int, list[list[int]]] = {}  # cpu -> per lane, the end times of open slices
        for i in order:
            cpu, start, end = self._slices[i][:3]
            lanes = stacks.setdefault(cpu, [])
            for k, stack in enumerate(lanes):
                while stack and stack[-1] <= start:
                    stack.pop()
                if not stack or stack[-1] >= end:
                    stack.append(end)
                    lane_of[i] = k
                    break
            else:
                lanes.append([end])
                lane_of[i] = len(lanes) - 1
        return lane_of

    def events(self) -> list[dict[str, Any]]:
        """The trace events: metadata, then slices and flows in time order."""
        lane_of = self._lanes()
        lanes_used: set[tuple[int, int]] = {(s[0], lane_of[i]) for i, s in enumerate(self._slices)}
        lanes_used.update((cpu, 0) for cpu in self._cpus)

        def tid(cpu: int, lane: int) -> int:
            return cpu + LANE_TID_BASE * lane

        out: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": self.process_name}},
        ]
        for cpu, lane in sorted(lanes_used):
            label = f"CPU {cpu}" if lane == 0 else f"CPU {cpu} (lane {lane})"
            out.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid(cpu, lane),
                        "args": {"name": label}})
            out.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": tid(cpu, lane),
                        "args": {"sort_index": cpu * 100 + lane}})
        timed: list[tuple[int, int, int, dict[str, Any]]] = []  # (ts ns, -end ns, seq, event)
        for i, (cpu, start, end, seq, name, cat, args) in enumerate(self._slices):
            timed.append((start, -end, seq, {"name": name, "cat": cat, "ph": "X", "pid": 0,
                                             "tid": tid(cpu, lane_of[i]), "ts": start / 1000,
                                             "dur": (end - start) / 1000, "args": args}))
        seq_base = self._seq + 1
        for fid, src, t_src, dst, t_dst in self._flows:
            s_cpu, d_cpu = self._slices[src][0], self._slices[dst][0]
            flow_s = {"name": "wake", "cat": "lock_flow", "ph": "s", "id": fid, "pid": 0,
                      "tid": tid(s_cpu, lane_of[src]), "ts": t_src / 1000}
            flow_f = {"name": "wake", "cat": "lock_flow", "ph": "f", "bp": "e", "id": fid, "pid": 0,
                      "tid": tid(d_cpu, lane_of[dst]), "ts": t_dst / 1000}
            timed.append((t_src, 0, seq_base + 2 * fid, flow_s))
            timed.append((t_dst, 0, seq_base + 2 * fid + 1, flow_f))
        timed.sort(key=lambda t: (t[0], t[1], t[2]))
        out.extend(ev for _, _, _, ev in timed)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"traceEvents": self.events(), "displayTimeUnit": "ns",
                "otherData": {"clock": "virtual ns (ts in us)", "dropped_events": self.dropped}}

    def dump(self, path: Path | str) -> Path:
        """Write the trace (``trace.json``) atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), separators=(",", ":")) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a trace is an ordinary, shareable file
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
