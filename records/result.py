"""The result record as typed, frozen classes: written by workloads/runner.py, read by reports/.

``result.json`` is ``{"schema": "rmapsim.results/1", "scenario": {...}, "runs": [record, ...]}`` and
each record is a ``rmapsim.result/2`` :class:`RunRecord`.  :meth:`RunRecord.to_json` gives the
file's JSON (the same bytes as before these classes: ``dump_json`` sorts keys) and
:meth:`RunRecord.from_json` reads it back, checking every key: a missing or unknown key, or a
value of the wrong type, is a :class:`RecordError` naming its path, never a silent default.

Sections whose keys are the model's own (a design's memory and counters, lock_stat rows, the
lockdep graph, RCU) are typed as JSON objects; the sections every report reads (the outcome, the
per-operation latencies, the invariants, the CPU time) have classes of their own.

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
    "Invariants",
    "JsonObject",
    "JsonValue",
    "Latency",
    "Outcome",
    "Phase",
    "RecordError",
    "ResultsFile",
    "RunRecord",
    "ScenarioInfo",
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
