"""The result record as typed, frozen classes: written by workloads/runner.py, read by reports/.

``result.json`` is ``{"schema": "rmapsim.results/1", "scenario": {...}, "runs": [record, ...]}`` and
each record is a ``rmapsim.result/2`` :class:`RunRecord`.  :meth:`RunRecord.to_json` gives the
file's JSON (the same bytes as before these classes: ``dump_json`` sorts keys) and
:meth:`RunRecord.from_json` reads it back, checking every key: a missing or unknown key, or a
value of the wrong type, is a :class:`RecordError` naming its path, never a silent default.

Sections whose keys are the model's own (a design's memory and counters, lock_stat rows, the
lockdep graph, the walks, RCU) are kept as the JSON objects the runner wrote, so that
:meth:`RunRecord.to_json` gives back the same bytes; the sections every report reads (the outcome,
the per-operation latencies, the invariants, the CPU time) have classes of their own, and the
model-specific sections the reports read by fixed keys are read through typed views that check
them the same way: :meth:`RunRecord.lock_classes` (:class:`LockClass`, lock_stat's columns),
:meth:`RunRecord.lockdep_section` (:class:`LockdepSection`, the order checker's graph),
:meth:`RunRecord.walk_counts` (:class:`WalkCounts`) and :meth:`RunRecord.memory_counts`.  The sweep
and exploration documents have their readers in :mod:`records.sweep` and :mod:`records.explore`.

Dataclasses (frozen, slots), not attrs or msgspec: a record is built once per run and read once
per report, so (de)serialisation speed does not matter (a fork-heavy record round-trips in about a
millisecond against seconds of simulation), and the standard library keeps the bottom layer free
of dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from records.schema import RECORD_SCHEMA, RESULTS_SCHEMA

__all__ = [
    "PHASES",
    "WALK_FIELDS",
    "DeclaredOrder",
    "Invariants",
    "JsonObject",
    "JsonValue",
    "Latency",
    "LockClass",
    "LockDependency",
    "LockSide",
    "LockdepClass",
    "LockdepSection",
    "OrderViolation",
    "Outcome",
    "Phase",
    "PointWait",
    "RecordError",
    "ResultsFile",
    "RunRecord",
    "ScenarioInfo",
    "WalkCounts",
    "json_list",
    "json_obj",
    "json_object",
]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"


CPU_STATES = ("running", "spinning", "sleeping", "idle")
PHASES = ("setup", "workload", "wind_down")  # a run's phases, in time order (workloads/runner.py)
LOCK_WAIT_PARTS = ("total_ns", "spinning_ns", "sleeping_ns")


class RecordError(ValueError):
    """A result document whose shape is not the schema's: ``path: message``."""


def _obj(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise RecordError(f"{path}: expected an object, got {value!r}")
    return value


def _keys(data: Mapping[str, object], path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    missing = [k for k in required if k not in data]
    if missing:
        raise RecordError(f"{path}: missing {', '.join(missing)}")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise RecordError(f"{path}: unknown key(s) {', '.join(unknown)}")


def _int(value: object, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"{path}: expected an integer, got {value!r}")
    return value


def _opt_int(value: object, path: str) -> int | None:
    return None if value is None else _int(value, path)


def _num(value: object, path: str) -> int | float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise RecordError(f"{path}: expected a number, got {value!r}")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{path}: expected a string, got {value!r}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"{path}: expected true or false, got {value!r}")
    return value


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list | tuple):
        raise RecordError(f"{path}: expected a list, got {value!r}")
    return list(value)


def _json(value: object, path: str) -> JsonValue:
    """Any JSON value, checked all the way down (the sections typed as plain JSON)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_json(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {_str(k, path): _json(v, f"{path}.{k}") for k, v in value.items()}
    raise RecordError(f"{path}: not a JSON value: {value!r}")


def _json_obj(value: object, path: str) -> JsonObject:
    return {_str(k, path): _json(v, f"{path}.{k}") for k, v in _obj(value, path).items()}


def json_object(value: object, path: str = "value") -> JsonObject:
    """``value`` checked to be a JSON object, as one (for a section built from the model's dicts)."""
    return _json_obj(value, path)


def json_list(value: object, what: str) -> list[JsonValue]:
    """``value`` of a parsed result document, which its schema says is a list: narrowed, neither
    copied nor checked further (:func:`json_object` checks a whole value)."""
    if not isinstance(value, list):
        raise RecordError(f"{what}: expected a list, got {value!r}")
    return value


def json_obj(value: object, what: str) -> JsonObject:
    """``value`` of a parsed result document, which its schema says is an object: narrowed,
    neither copied nor checked further."""
    if not isinstance(value, dict):
        raise RecordError(f"{what}: expected an object, got {value!r}")
    return value


def _json_objs(value: object, path: str) -> tuple[JsonObject, ...]:
    return tuple(_json_obj(v, f"{path}[{i}]") for i, v in enumerate(_list(value, path)))


@dataclass(frozen=True, slots=True)
class Latency:
    """One operation's latency histogram: exact nearest-rank percentiles, in ns of virtual time."""

    count: int
    min_ns: int
    max_ns: int
    total_ns: int
    mean_ns: int | float  # rounded to 0.1 ns; 0 when nothing was recorded
    overflow: int  # values beyond the histogram's range (counted, not in the percentiles)
    p50_ns: int
    p90_ns: int
    p99_ns: int
    p99_9_ns: int
    hdr: str  # the HdrHistogram encoding ("" when empty)

    _INTS = ("count", "min_ns", "max_ns", "total_ns", "overflow", "p50_ns", "p90_ns", "p99_ns")

    def to_json(self) -> JsonObject:
        out: JsonObject = {k: getattr(self, k) for k in self._INTS}
        out.update({"mean_ns": self.mean_ns, "p99.9_ns": self.p99_9_ns, "hdr": self.hdr})
        return out

    @classmethod
    def from_json(cls, value: object, path: str) -> Latency:
        data = _obj(value, path)
        _keys(data, path, (*cls._INTS, "mean_ns", "p99.9_ns", "hdr"))
        ints = {k: _int(data[k], f"{path}.{k}") for k in cls._INTS}
        return cls(**ints, mean_ns=_num(data["mean_ns"], f"{path}.mean_ns"),
                   p99_9_ns=_int(data["p99.9_ns"], f"{path}.p99.9_ns"), hdr=_str(data["hdr"], f"{path}.hdr"))


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the run ended: ``completed``, ``time_limit`` or ``event_budget``, when and after how
    many events; when the workload phase began; the preemptions a perturbation injected."""

    reason: str
    end_ns: int
    events: int
    workload_start_ns: int | None
    preemptions_injected: tuple[JsonValue, ...]  # [t_ns, task, off_ns, op] each

    def to_json(self) -> JsonObject:
        return {"reason": self.reason, "end_ns": self.end_ns, "events": self.events,
                "workload_start_ns": self.workload_start_ns, "preemptions_injected": list(self.preemptions_injected)}

    @classmethod
    def from_json(cls, value: object, path: str) -> Outcome:
        data = _obj(value, path)
        _keys(data, path, ("reason", "end_ns", "events", "workload_start_ns", "preemptions_injected"))
        injected = _list(data["preemptions_injected"], f"{path}.preemptions_injected")
        return cls(_str(data["reason"], f"{path}.reason"), _int(data["end_ns"], f"{path}.end_ns"),
                   _int(data["events"], f"{path}.events"),
                   _opt_int(data["workload_start_ns"], f"{path}.workload_start_ns"),
                   tuple(_json(p, f"{path}.preemptions_injected[{i}]") for i, p in enumerate(injected)))


def _int_map(value: object, path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """An object with exactly ``keys``, each an integer (kept in ``keys``' order)."""
    data = _obj(value, path)
    _keys(data, path, keys)
    return {k: _int(data[k], f"{path}.{k}") for k in keys}


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase of a run (``setup``, ``workload``, ``wind_down``): when it began and ended, the
    machine's CPU time split within it, and the lock wait of the acquisitions that ended in it
    (``total_ns``; ``spinning_ns``: the part the waiters spent spinning, CPU burned;
    ``sleeping_ns``: the part they spent asleep, their CPU free; the rest: woken, until they ran)."""

    start_ns: int
    end_ns: int
    cpu_time: dict[str, int]
    lock_wait: dict[str, int]

    def to_json(self) -> JsonObject:
        return {"start_ns": self.start_ns, "end_ns": self.end_ns, "cpu_time": dict(self.cpu_time),
                "lock_wait": dict(self.lock_wait)}

    @classmethod
    def from_json(cls, value: object, path: str) -> Phase:
        data = _obj(value, path)
        _keys(data, path, ("start_ns", "end_ns", "cpu_time", "lock_wait"))
        return cls(_int(data["start_ns"], f"{path}.start_ns"), _int(data["end_ns"], f"{path}.end_ns"),
                   _int_map(data["cpu_time"], f"{path}.cpu_time", CPU_STATES),
                   _int_map(data["lock_wait"], f"{path}.lock_wait", LOCK_WAIT_PARTS))


@dataclass(frozen=True, slots=True)
class Invariants:
    """The run's checks: ``passed`` when ``violations`` is empty; stale migration entries
    (``corruption``) and walks that missed owed mappings (``misses``), the first of each."""

    passed: bool
    violations: tuple[str, ...]
    corruption: tuple[JsonObject, ...]
    misses: tuple[JsonObject, ...]

    def to_json(self) -> JsonObject:
        return {"passed": self.passed, "violations": list(self.violations), "corruption": list(self.corruption),
                "misses": list(self.misses)}

    @classmethod
    def from_json(cls, value: object, path: str) -> Invariants:
        data = _obj(value, path)
        _keys(data, path, ("passed", "violations", "corruption", "misses"))
        violations = _list(data["violations"], f"{path}.violations")
        return cls(_bool(data["passed"], f"{path}.passed"),
                   tuple(_str(v, f"{path}.violations[{i}]") for i, v in enumerate(violations)),
                   _json_objs(data["corruption"], f"{path}.corruption"), _json_objs(data["misses"], f"{path}.misses"))


def _str_list(value: object, path: str) -> tuple[str, ...]:
    return tuple(_str(v, f"{path}[{i}]") for i, v in enumerate(_list(value, path)))


def _count_map(value: object, path: str) -> dict[str, int]:
    """An object of counts (operation -> times, event -> times), in the record's order."""
    return {k: _int(v, f"{path}.{k}") for k, v in _obj(value, path).items()}


# -- the model-specific sections the reports read by fixed keys -----------------------------------


@dataclass(frozen=True, slots=True)
class PointWait:
    """One contention point's wait on one side of a lock class (``contention_point_wait``)."""

    contentions: int
    waittime_total_ns: int
    waittime_max_ns: int
    waittime_min_ns: int

    _KEYS = ("contentions", "waittime_total_ns", "waittime_max_ns", "waittime_min_ns")

    @classmethod
    def from_json(cls, value: object, path: str) -> PointWait:
        ints = _int_map(value, path, cls._KEYS)
        return cls(**ints)


@dataclass(frozen=True, slots=True)
class LockSide:
    """One side (write or read) of a lock class's lock_stat row (concurrency/lockstat.py
    ``LockStats.to_dict``): bounces, contentions and acquisitions, wait and hold times (ns) with
    their HdrHistogram encodings ("" when empty), and the contention / contending points.
    ``contention_point_wait`` (each contention point's own wait) is None in a record that carries
    only the side's totals."""

    con_bounces: int
    contentions: int
    waittime_min_ns: int
    waittime_max_ns: int
    waittime_total_ns: int
    waittime_spin_ns: int
    waittime_sleep_ns: int
    acq_bounces: int
    acquisitions: int
    holdtime_min_ns: int
    holdtime_max_ns: int
    holdtime_total_ns: int
    wait_overflow: int
    hold_overflow: int
    contention_points: dict[str, int]
    contending_points: dict[str, int]
    wait_hist: str
    hold_hist: str
    contention_point_wait: dict[str, PointWait] | None

    _INTS = ("con_bounces", "contentions", "waittime_min_ns", "waittime_max_ns", "waittime_total_ns",
             "waittime_spin_ns", "waittime_sleep_ns", "acq_bounces", "acquisitions", "holdtime_min_ns",
             "holdtime_max_ns", "holdtime_total_ns", "wait_overflow", "hold_overflow")

    @classmethod
    def from_json(cls, value: object, path: str) -> LockSide:
        data = _obj(value, path)
        _keys(data, path, (*cls._INTS, "contention_points", "contending_points", "wait_hist", "hold_hist"),
              ("contention_point_wait",))
        per_point = data.get("contention_point_wait")  # optional: absent means totals only
        return cls(**{k: _int(data[k], f"{path}.{k}") for k in cls._INTS},
                   contention_points=_count_map(data["contention_points"], f"{path}.contention_points"),
                   contending_points=_count_map(data["contending_points"], f"{path}.contending_points"),
                   wait_hist=_str(data["wait_hist"], f"{path}.wait_hist"),
                   hold_hist=_str(data["hold_hist"], f"{path}.hold_hist"),
                   contention_point_wait=None if per_point is None else {
                       op: PointWait.from_json(w, f"{path}.contention_point_wait.{op}")
                       for op, w in _obj(per_point, f"{path}.contention_point_wait").items()})


@dataclass(frozen=True, slots=True)
class LockClass:
    """A lock class's lock_stat row (concurrency/lockstat.py ``LockClass.to_dict``): its key
    (``name``, ``/N`` for a subclass), kind, whether it has a read side, how many instances, the
    lock model's event counts, and its sides (``read`` only for a reader-writer class)."""

    name: str
    kind: str
    rw: bool
    instances: int
    events: dict[str, int]
    write: LockSide
    read: LockSide | None

    def sides(self) -> tuple[tuple[str, LockSide], ...]:
        """The sides the row carries, write first (lock_stat prints -W before -R)."""
        if self.rw and self.read is not None:
            return (("write", self.write), ("read", self.read))
        return (("write", self.write),)

    @classmethod
    def from_json(cls, value: object, path: str) -> LockClass:
        data = _obj(value, path)
        _keys(data, path, ("name", "kind", "rw", "instances", "events", "write"), ("read",))
        read = data.get("read")  # optional: only a reader-writer class has a read side
        return cls(_str(data["name"], f"{path}.name"), _str(data["kind"], f"{path}.kind"),
                   _bool(data["rw"], f"{path}.rw"), _int(data["instances"], f"{path}.instances"),
                   _count_map(data["events"], f"{path}.events"), LockSide.from_json(data["write"], f"{path}.write"),
                   None if read is None else LockSide.from_json(read, f"{path}.read"))


@dataclass(frozen=True, slots=True)
class LockdepClass:
    """A class in the order checker's graph: its usage bits and acquisitions."""

    name: str
    usage: str
    acquisitions: int

    @classmethod
    def from_json(cls, value: object, path: str) -> LockdepClass:
        data = _obj(value, path)
        _keys(data, path, ("name", "usage", "acquisitions"))
        return cls(_str(data["name"], f"{path}.name"), _str(data["usage"], f"{path}.usage"),
                   _int(data["acquisitions"], f"{path}.acquisitions"))


@dataclass(frozen=True, slots=True)
class LockDependency:
    """A direct dependency (held -> acquired) in the order checker's graph: its lockdep types,
    how often it was taken, the (held, acquired) read modes seen, and by which operations."""

    held: str  # "from" in the record
    acquired: str  # "to"
    types: tuple[str, ...]
    count: int
    modes: tuple[JsonValue, ...]
    ops: dict[str, int]

    @classmethod
    def from_json(cls, value: object, path: str) -> LockDependency:
        data = _obj(value, path)
        _keys(data, path, ("from", "to", "types", "count", "modes", "ops"))
        modes = _list(data["modes"], f"{path}.modes")
        return cls(_str(data["from"], f"{path}.from"), _str(data["to"], f"{path}.to"),
                   _str_list(data["types"], f"{path}.types"), _int(data["count"], f"{path}.count"),
                   tuple(_json(m, f"{path}.modes[{i}]") for i, m in enumerate(modes)),
                   _count_map(data["ops"], f"{path}.ops"))


@dataclass(frozen=True, slots=True)
class OrderViolation:
    """A recorded edge against the declared order (concurrency/lockdep.py ``OrderViolation.to_dict``):
    the classes held and acquired, and the order's source text; the rest kept as recorded."""

    held: str
    acquired: str
    source: str
    detail: JsonObject  # declared, held_at, acquired_at, edge, mode, task, op, stack

    _DETAIL = ("declared", "held_at", "acquired_at", "edge", "mode", "task", "op", "stack")

    @classmethod
    def from_json(cls, value: object, path: str) -> OrderViolation:
        data = _obj(value, path)
        _keys(data, path, ("held", "acquired", "source"), cls._DETAIL)
        return cls(_str(data["held"], f"{path}.held"), _str(data["acquired"], f"{path}.acquired"),
                   _str(data["source"], f"{path}.source"),
                   {k: _json(data[k], f"{path}.{k}") for k in cls._DETAIL if k in data})


@dataclass(frozen=True, slots=True)
class DeclaredOrder:
    """The lock order a run was checked against: its source text, its file (None for an order
    given as text), the violations, where each class was declared, the write-only classes."""

    source: str
    file: str | None
    violations: tuple[OrderViolation, ...]
    declared_at: dict[str, str] | None  # None in a record that did not keep it
    write_only: tuple[str, ...]

    @classmethod
    def from_json(cls, value: object, path: str) -> DeclaredOrder:
        data = _obj(value, path)
        _keys(data, path, ("source", "file", "violations", "write_only"), ("declared_at",))
        file, declared = data["file"], data.get("declared_at")
        return cls(_str(data["source"], f"{path}.source"), None if file is None else _str(file, f"{path}.file"),
                   tuple(OrderViolation.from_json(v, f"{path}.violations[{i}]")
                         for i, v in enumerate(_list(data["violations"], f"{path}.violations"))),
                   None if declared is None else {k: _str(v, f"{path}.declared_at.{k}")
                                                  for k, v in _obj(declared, f"{path}.declared_at").items()},
                   _str_list(data["write_only"], f"{path}.write_only"))


@dataclass(frozen=True, slots=True)
class LockdepSection:
    """A run's ``lockdep`` section: the checker's findings (rendered reports), the edges, the
    declared order's violations (rendered); with the checker on, its graph (``classes``,
    ``deps``, ``cycles``, ``stats``: None when the record has none, lockdep off) and the declared
    order (None when there was none)."""

    findings: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    order_violations: tuple[str, ...]
    classes: tuple[LockdepClass, ...] | None
    deps: tuple[LockDependency, ...] | None
    cycles: tuple[tuple[str, ...], ...] | None
    stats: dict[str, int] | None
    order: DeclaredOrder | None

    _GRAPH = ("classes", "deps", "cycles", "stats", "order")

    @classmethod
    def from_json(cls, value: object, path: str) -> LockdepSection:
        data = _obj(value, path)
        _keys(data, path, ("findings", "edges", "order_violations"), cls._GRAPH)

        def edge(v: object, at: str) -> tuple[str, str]:
            pair = _str_list(v, at)
            if len(pair) != 2:
                raise RecordError(f"{at}: expected [held, acquired], got {v!r}")
            return pair[0], pair[1]

        # The graph's keys are absent when the checker did not run (lockdep.enabled = false).
        classes, deps, cycles = data.get("classes"), data.get("deps"), data.get("cycles")
        stats, order = data.get("stats"), data.get("order")
        return cls(
            _str_list(data["findings"], f"{path}.findings"),
            tuple(edge(v, f"{path}.edges[{i}]") for i, v in enumerate(_list(data["edges"], f"{path}.edges"))),
            _str_list(data["order_violations"], f"{path}.order_violations"),
            None if classes is None else tuple(LockdepClass.from_json(c, f"{path}.classes[{i}]")
                                               for i, c in enumerate(_list(classes, f"{path}.classes"))),
            None if deps is None else tuple(LockDependency.from_json(d, f"{path}.deps[{i}]")
                                            for i, d in enumerate(_list(deps, f"{path}.deps"))),
            None if cycles is None else tuple(_str_list(c, f"{path}.cycles[{i}]")
                                              for i, c in enumerate(_list(cycles, f"{path}.cycles"))),
            None if stats is None else _count_map(stats, f"{path}.stats"),
            None if order is None else DeclaredOrder.from_json(order, f"{path}.order"),
        )


WALK_FIELDS = ("walks", "contended", "vmas_visited", "false_positives", "mappings_found", "missed_mappings",
               "freed_vma_visits", "would_sleep_in_rcu", "contexts_visited")


@dataclass(frozen=True, slots=True)
class WalkCounts:
    """One kind of rmap walk's counts, checked against the oracle (mm/system.py ``WalkStats``)."""

    walks: int
    contended: int
    vmas_visited: int
    false_positives: int
    mappings_found: int
    missed_mappings: int
    freed_vma_visits: int
    would_sleep_in_rcu: int
    contexts_visited: int

    def field(self, name: str) -> int:
        """One of :data:`WALK_FIELDS` by name."""
        return int(getattr(self, name))

    @classmethod
    def from_json(cls, value: object, path: str) -> WalkCounts:
        return cls(**_int_map(value, path, WALK_FIELDS))


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One (scenario, design) run: ``rmapsim.result/2`` (the README lists every field)."""

    scenario: str
    design: str
    switches: JsonObject
    params: JsonObject
    outcome: Outcome
    operations: dict[str, Latency]
    throughput: dict[str, int | float]  # operations per second of the workload phase
    total_ops: int
    locks: tuple[JsonObject, ...]  # lock_stat rows, by class key
    lock_instances: tuple[JsonObject, ...]
    walks: JsonObject  # per walk kind, checked against the oracle
    cpu_time: dict[str, int]  # running, spinning, sleeping, idle
    phases: dict[str, Phase]  # setup, workload, wind_down: each one's span, CPU split and lock wait
    context_switches: int
    migrations: int
    memory: JsonObject  # the design's rmap metadata
    counters: JsonObject
    design_stats: JsonObject
    invariants: Invariants
    lockdep: JsonObject
    rcu: JsonObject
    variant: str | None = None  # rmapsim lockdep's NAME:SWITCH=VALUE label, when it set switches

    _JSON = ("switches", "params", "walks", "memory", "counters", "design_stats", "lockdep", "rcu")
    _INTS = ("total_ops", "context_switches", "migrations")

    def lock_classes(self) -> tuple[LockClass, ...]:
        """The lock_stat rows (``locks``), typed."""
        return tuple(LockClass.from_json(lock, f"locks[{i}]") for i, lock in enumerate(self.locks))

    def lockdep_section(self) -> LockdepSection:
        """The order checker's section (``lockdep``), typed."""
        return LockdepSection.from_json(self.lockdep, "lockdep")

    def walk_counts(self) -> dict[str, WalkCounts]:
        """Per kind of rmap walk (``walks``), typed."""
        return {kind: WalkCounts.from_json(v, f"walks.{kind}") for kind, v in self.walks.items()}

    def memory_counts(self) -> dict[str, int]:
        """The design's rmap metadata (``memory``): its keys are the design's own, each a count or bytes."""
        return _count_map(self.memory, "memory")

    def param_int(self, key: str) -> int:
        """A run parameter every record carries as an integer (``cpus``, ``seed``)."""
        if key not in self.params:
            raise RecordError(f"params: missing {key}")
        return _int(self.params[key], f"params.{key}")

    def to_json(self) -> JsonObject:
        out: JsonObject = {"schema": RECORD_SCHEMA, "scenario": self.scenario, "design": self.design}
        out.update({k: getattr(self, k) for k in (*self._JSON, *self._INTS)})
        out.update({
            "outcome": self.outcome.to_json(),
            "operations": {op: lat.to_json() for op, lat in self.operations.items()},
            "throughput": dict(self.throughput),
            "locks": list(self.locks),
            "lock_instances": list(self.lock_instances),
            "cpu_time": dict(self.cpu_time),
            "phases": {name: phase.to_json() for name, phase in self.phases.items()},
            "invariants": self.invariants.to_json(),
        })
        if self.variant is not None:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, value: object, path: str = "record") -> RunRecord:
        data = _obj(value, path)
        required = ("schema", "scenario", "design", "outcome", "operations", "throughput", "locks",
                    "lock_instances", "cpu_time", "phases", "invariants", *cls._JSON, *cls._INTS)
        _keys(data, path, required, ("variant",))
        if data["schema"] != RECORD_SCHEMA:
            raise RecordError(f"{path}.schema: {data['schema']!r}, expected {RECORD_SCHEMA!r}")
        ops = _obj(data["operations"], f"{path}.operations")
        thr = _obj(data["throughput"], f"{path}.throughput")
        cpu = _obj(data["cpu_time"], f"{path}.cpu_time")
        phases = _obj(data["phases"], f"{path}.phases")
        _keys(phases, f"{path}.phases", PHASES)
        variant = data.get("variant")
        return cls(
            scenario=_str(data["scenario"], f"{path}.scenario"), design=_str(data["design"], f"{path}.design"),
            switches=_json_obj(data["switches"], f"{path}.switches"),
            params=_json_obj(data["params"], f"{path}.params"),
            outcome=Outcome.from_json(data["outcome"], f"{path}.outcome"),
            operations={op: Latency.from_json(v, f"{path}.operations.{op}") for op, v in ops.items()},
            throughput={op: _num(v, f"{path}.throughput.{op}") for op, v in thr.items()},
            total_ops=_int(data["total_ops"], f"{path}.total_ops"),
            locks=_json_objs(data["locks"], f"{path}.locks"),
            lock_instances=_json_objs(data["lock_instances"], f"{path}.lock_instances"),
            walks=_json_obj(data["walks"], f"{path}.walks"),
            cpu_time={k: _int(v, f"{path}.cpu_time.{k}") for k, v in cpu.items()},
            phases={k: Phase.from_json(phases[k], f"{path}.phases.{k}") for k in PHASES},
            context_switches=_int(data["context_switches"], f"{path}.context_switches"),
            migrations=_int(data["migrations"], f"{path}.migrations"),
            memory=_json_obj(data["memory"], f"{path}.memory"),
            counters=_json_obj(data["counters"], f"{path}.counters"),
            design_stats=_json_obj(data["design_stats"], f"{path}.design_stats"),
            invariants=Invariants.from_json(data["invariants"], f"{path}.invariants"),
            lockdep=_json_obj(data["lockdep"], f"{path}.lockdep"),
            rcu=_json_obj(data["rcu"], f"{path}.rcu"),
            variant=None if variant is None else _str(variant, f"{path}.variant"),
        )


@dataclass(frozen=True, slots=True)
class ScenarioInfo:
    """What ``result.json`` says of the scenario: its name, description, what it mirrors, its file."""

    name: str
    description: str
    mirrors: str
    source: str

    def to_json(self) -> JsonObject:
        return {"name": self.name, "description": self.description, "mirrors": self.mirrors, "source": self.source}

    @classmethod
    def from_json(cls, value: object, path: str) -> ScenarioInfo:
        data = _obj(value, path)
        _keys(data, path, ("name", "description", "mirrors", "source"))
        return cls(*(_str(data[k], f"{path}.{k}") for k in ("name", "description", "mirrors", "source")))


@dataclass(frozen=True, slots=True)
class ResultsFile:
    """``result.json``: ``rmapsim.results/1``."""

    scenario: ScenarioInfo
    runs: tuple[RunRecord, ...]
    point: JsonObject | None = None  # a sweep point's overrides (rmapsim sweep's points/*/result.json)

    def to_json(self) -> JsonObject:
        out: JsonObject = {"schema": RESULTS_SCHEMA, "scenario": self.scenario.to_json(),
                           "runs": [run.to_json() for run in self.runs]}
        if self.point is not None:
            out["point"] = self.point
        return out

    @classmethod
    def from_json(cls, value: object) -> ResultsFile:
        data = _obj(value, "results")
        _keys(data, "results", ("schema", "scenario", "runs"), ("point",))
        if data["schema"] != RESULTS_SCHEMA:
            raise RecordError(f"results.schema: {data['schema']!r}, expected {RESULTS_SCHEMA!r}")
        runs = _list(data["runs"], "results.runs")
        point = data.get("point")
        return cls(ScenarioInfo.from_json(data["scenario"], "results.scenario"),
                   tuple(RunRecord.from_json(r, f"results.runs[{i}]") for i, r in enumerate(runs)),
                   None if point is None else _json_obj(point, "results.point"))
