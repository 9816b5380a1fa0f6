"""Timeline traces of a run: Chrome trace-event JSON (opens in Perfetto) and a sampled event log.

Both are instruments (concurrency/instrument.py), attached with ``engine.add_instrument``: the lock
base calls ``on_contended`` / ``on_acquired`` / ``on_released`` (concurrency/lock.py) and the actors
call ``on_op`` for every timed operation.  With no instrument attached none of this runs: each hook
sits behind one ``is not None`` test.

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

:class:`EventLog` is the run's log (``rmapsim run --log FILE``): JSON lines through structlog
processors, every line stamped with the virtual time ``t_ns`` and the simulated ``cpu``, ``task``
and ``op`` it happened in (``null`` outside any task); no wall clock.  Its events are listed in the
class docstring and the README.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import structlog

from concurrency.instrument import Instrument
from records.result import JsonObject, JsonValue, RecordError, RunRecord

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask
    from concurrency.lock import SimLock

__all__ = ["LANE_TID_BASE", "ChromeTracer", "EventLog", "open_event_log"]

LANE_TID_BASE = 1000

# A slice: (cpu, start_ns, end_ns, seq, name, category, args)
_Slice = tuple[int, int, int, int, str, str, JsonObject]


class EventLog(Instrument):
    """The run's log: JSON lines through structlog processors, in virtual time.

    Processors: ``add_log_level``; a virtual-time stamp (``t_ns`` from the engine, and the
    current simulated task's ``cpu``, ``task`` and ``op`` where the event does not name them,
    ``null`` in no task's context); ``JSONRenderer(sort_keys=True)``.  Each run's lines also carry
    ``scenario``, ``design`` and ``seed`` (bound by :meth:`begin_run`).

    Events (level):

    ``run_start`` (info)
        a run begins: ``cpus``, ``executor``, ``perturb``.
    ``phase_change`` (info)
        ``phase``: ``setup`` (processes populate), ``workload`` (the measured phase starts),
        ``wind_down`` (its end: actors finish and exit).
    ``lock_contended``, ``lock_acquired``, ``lock_released`` (info, sampled)
        the hot events: every ``sample_every``-th of each (counted per event, by count, not by
        chance, so the same run logs the same lines; the first of each is always logged), each with
        ``lock`` (class), ``instance``, ``mode``, ``n`` (its number in that event's count) and
        ``sample_every``; acquisitions add ``wait_ns`` (null when uncontended), releases ``hold_ns``.
    ``lock_wait_long`` (warning)
        every acquisition that waited ``long_wait_ns`` or more: ``lock``, ``instance``, ``mode``,
        ``wait_ns``.
    ``walk_miss`` (warning)
        an rmap walk finished without visiting every mapping it owed: ``walk``, ``folio``,
        ``mappings`` ([mm, vpn] pairs).
    ``corruption`` (error)
        what the kernel would have corrupted (a stale migration entry): ``mm``, ``vpn``, ``folio``,
        ``what``.
    ``invariant_failed`` (error)
        an end-of-run check failed (leak, mapcount, design invariant): ``violation``.
    ``lockdep_finding`` (error)
        a lock-order inversion: ``finding`` (its first line).
    ``run_failed`` (error)
        a task raised or the run deadlocked: ``error``.
    ``run_end`` (info)
        ``reason``, ``end_ns``, ``events``, ``total_ops``, ``passed``.

    ``sampled`` counts the current run's hot events by name (``seen`` is their sum), ``logged`` the
    lines written, ``counts`` the lines by event name.
    """

    SAMPLED = ("lock_contended", "lock_acquired", "lock_released")

    def __init__(self, file: TextIO, *, sample_every: int = 100, long_wait_ns: int = 1_000_000) -> None:
        if sample_every < 1:
            raise ValueError(f"sample_every must be >= 1, got {sample_every}")
        self.sample_every = sample_every
        self.long_wait_ns = long_wait_ns
        self.sampled: Counter[str] = Counter()
        self.logged = 0
        self.counts: Counter[str] = Counter()
        self._engine: Engine | None = None
        self._base = structlog.wrap_logger(
            structlog.WriteLogger(file),
            processors=[structlog.processors.add_log_level, self._stamp,
                        structlog.processors.JSONRenderer(sort_keys=True)],
            wrapper_class=structlog.BoundLogger,
        )
        self._log = self._base

    def _stamp(self, _logger: object, _method: str,
               event_dict: MutableMapping[str, object]) -> MutableMapping[str, object]:
        """The virtual-time processor: ``t_ns``, ``cpu``, ``task``, ``op`` unless the event gave them."""
        engine = self._engine
        if engine is not None:
            event_dict.setdefault("t_ns", engine.now)
            task = engine.current
            if task is not None:
                event_dict.setdefault("cpu", task.cpu.index)
                event_dict.setdefault("task", task.name)
                event_dict.setdefault("op", task.op)
        for key in ("t_ns", "cpu", "task", "op"):
            event_dict.setdefault(key, None)
        return event_dict

    def _event(self, level: str, event: str, **fields: object) -> None:
        self.counts[event] += 1
        self.logged += 1
        getattr(self._log, level)(event, **fields)

    # -- the run's life (workloads/runner.py) ------------------------------------------------------

    def begin_run(self, engine: Engine, *, scenario: str, design: str, seed: int, **fields: object) -> None:
        self._engine = engine
        self.sampled.clear()  # sampling counts restart with each run: a run's log does not depend on the runs before
        self._log = self._base.bind(scenario=scenario, design=design, seed=seed)
        self._event("info", "run_start", **fields)

    def phase(self, name: str) -> None:
        self._event("info", "phase_change", phase=name)

    def run_failed(self, exc: BaseException) -> None:
        self._event("error", "run_failed", error=str(exc).splitlines()[0])
        self._end_run()

    def run_end(self, record: JsonObject) -> None:
        """The run's result record (workloads/runner.py's JSON form), read through its classes."""
        run = RunRecord.from_json(record)
        for violation in run.invariants.violations:
            self._event("error", "invariant_failed", violation=violation)
        for finding in _strings(run.lockdep["findings"], "record.lockdep.findings"):
            self._event("error", "lockdep_finding", finding=finding.strip().splitlines()[0])
        outcome = run.outcome
        self._event("info", "run_end", reason=outcome.reason, end_ns=outcome.end_ns,
                    events=outcome.events, total_ops=run.total_ops,
                    passed=run.invariants.passed)
        self._end_run()

    def _end_run(self) -> None:
        self._engine = None
        self._log = self._base

    # -- the tracer protocol (concurrency/lock.py, actors/world.py, mm/system.py) ------------------

    @property
    def seen(self) -> int:
        return sum(self.sampled.values())

    def _sampled(self, event: str) -> int | None:
        n = self.sampled[event]
        self.sampled[event] = n + 1
        return n if n % self.sample_every == 0 else None

    def _lock_event(self, event: str, n: int, task: SimTask, lock: SimLock, mode: str, key: str | None,
                    **extra: object) -> None:
        self._event("info", event, t_ns=lock.engine.now, task=task.name, cpu=task.cpu.index, op=task.op,
                    lock=key or lock.lclass.key, instance=lock.name, mode=mode, n=n,
                    sample_every=self.sample_every, **extra)

    def on_contended(self, task: SimTask, lock: SimLock, mode: str, key: str | None = None) -> None:
        n = self._sampled("lock_contended")
        if n is not None:
            self._lock_event("lock_contended", n, task, lock, mode, key)

    def on_acquired(self, task: SimTask, lock: SimLock, mode: str, wait_start: int | None,
                    key: str | None = None) -> None:
        wait = None if wait_start is None else lock.engine.now - wait_start
        if wait is not None and wait >= self.long_wait_ns:
            self._event("warning", "lock_wait_long", t_ns=lock.engine.now, task=task.name, cpu=task.cpu.index,
                        op=task.op, lock=key or lock.lclass.key, instance=lock.name, mode=mode, wait_ns=wait)
        n = self._sampled("lock_acquired")
        if n is not None:
            self._lock_event("lock_acquired", n, task, lock, mode, key, wait_ns=wait)

    def on_released(self, task: SimTask, lock: SimLock, mode: str, since: int,
                    key: str | None = None) -> None:
        n = self._sampled("lock_released")
        if n is not None:
            self._lock_event("lock_released", n, task, lock, mode, key, hold_ns=lock.engine.now - since)

    def on_op(self, task: SimTask, name: str, start_ns: int, end_ns: int) -> None:
        """Operations are not logged (the timeline has them): too hot, and the latency histograms
        already hold them."""

    def on_finding(self, kind: str, fields: dict[str, object]) -> None:
        """``walk_miss`` or ``corruption``, from mm/system.py as the oracle finds it."""
        self._event("error" if kind == "corruption" else "warning", kind, **fields)


@contextmanager
def open_event_log(path: Path | str, *, sample_every: int = 100, long_wait_ns: int = 1_000_000) -> Iterator[EventLog]:
    """An :class:`EventLog` writing ``path`` under a temporary name, renamed when the block ends.

    Interrupted (``KeyboardInterrupt``, or trio's cancellation), the file is removed instead:
    never a half-written log.  A failed run's log is kept (it ends with ``run_failed``)."""
    path = Path(path)
    created = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    keep = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            try:
                yield EventLog(f, sample_every=sample_every, long_wait_ns=long_wait_ns)
            except BaseException as exc:
                keep = not _interrupted(exc)
                raise
            keep = True
    finally:
        if keep:
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; a log is an ordinary, shareable file
            os.replace(tmp, path)
        else:
            Path(tmp).unlink(missing_ok=True)
            for folder in created:  # and the folders made for it, if nothing else went there
                try:
                    folder.rmdir()
                except OSError:
                    break


def _strings(value: JsonValue, path: str) -> list[str]:
    """A JSON list of strings, or a :class:`RecordError` naming ``path``."""
    if not isinstance(value, list):
        raise RecordError(f"{path}: expected a list, got {value!r}")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise RecordError(f"{path}: expected strings, got {item!r}")
        out.append(item)
    return out


def _interrupted(exc: BaseException) -> bool:
    import trio

    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup((KeyboardInterrupt, trio.Cancelled)) is not None
    return isinstance(exc, KeyboardInterrupt | trio.Cancelled)


class ChromeTracer(Instrument):
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

    def _slice(self, cpu: int, start: int, end: int, name: str, cat: str, args: JsonObject) -> int:
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

    def on_finding(self, kind: str, fields: dict[str, object]) -> None:
        if self.event_log is not None:
            self.event_log.on_finding(kind, fields)

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

    def events(self) -> list[JsonObject]:
        """The trace events: metadata, then slices and flows in time order."""
        lane_of = self._lanes()
        lanes_used: set[tuple[int, int]] = {(s[0], lane_of[i]) for i, s in enumerate(self._slices)}
        lanes_used.update((cpu, 0) for cpu in self._cpus)

        def tid(cpu: int, lane: int) -> int:
            return cpu + LANE_TID_BASE * lane

        out: list[JsonObject] = [
            {"name": "process_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": self.process_name}},
        ]
        for cpu, lane in sorted(lanes_used):
            label = f"CPU {cpu}" if lane == 0 else f"CPU {cpu} (lane {lane})"
            out.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid(cpu, lane),
                        "args": {"name": label}})
            out.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": tid(cpu, lane),
                        "args": {"sort_index": cpu * 100 + lane}})
        timed: list[tuple[int, int, int, JsonObject]] = []  # (ts ns, -end ns, seq, event)
        for i, (cpu, start, end, seq, name, cat, args) in enumerate(self._slices):
            timed.append((start, -end, seq, {"name": name, "cat": cat, "ph": "X", "pid": 0,
                                             "tid": tid(cpu, lane_of[i]), "ts": start / 1000,
                                             "dur": (end - start) / 1000, "args": args}))
        seq_base = self._seq + 1
        for fid, src, t_src, dst, t_dst in self._flows:
            s_cpu, d_cpu = self._slices[src][0], self._slices[dst][0]
            flow_s: JsonObject = {"name": "wake", "cat": "lock_flow", "ph": "s", "id": fid, "pid": 0,
                      "tid": tid(s_cpu, lane_of[src]), "ts": t_src / 1000}
            flow_f: JsonObject = {"name": "wake", "cat": "lock_flow", "ph": "f", "bp": "e", "id": fid, "pid": 0,
                      "tid": tid(d_cpu, lane_of[dst]), "ts": t_dst / 1000}
            timed.append((t_src, 0, seq_base + 2 * fid, flow_s))
            timed.append((t_dst, 0, seq_base + 2 * fid + 1, flow_f))
        timed.sort(key=lambda t: (t[0], t[1], t[2]))
        out.extend(ev for _, _, _, ev in timed)
        return out

    def to_json(self) -> JsonObject:
        # list(): a list[JsonObject] is not a list[JsonValue] (lists are invariant)
        return {"traceEvents": list(self.events()), "displayTimeUnit": "ns",
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
