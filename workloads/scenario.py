"""Scenarios: TOML files or Python scripts, strictly validated.

A TOML scenario (see workloads/scenarios/*.toml) has top-level ``name``, ``description``,
``mirrors`` and the tables ``[run]``, ``[memory]``, ``[costs]``, ``[rwsem]``, ``[mutex]``, ``[reclaim]``,
``[lockdep]``, ``[switches.<design>]``, ``[[process]]`` and ``[[actor]]``.  A Python scenario is a
module with a ``scenario()`` function returning a :class:`Scenario` (optionally with a ``setup``
coroutine for what TOML cannot say).

Every error names the file, the line, the key path, the bad value and what is allowed
(:class:`ScenarioError`); the command line turns it into exit status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import re
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

from actors.process import Region
from actors.world import World
from concurrency.input_error import spell
from concurrency.perturb import PERTURB_KEYS, Perturbation
from mm.costs import CostModel
from mm.designs import DESIGNS
from records.result import JsonObject
from workloads.actor_kinds import (
    ACTORS,
    NICE_PARAM,
    Param,
    Params,
    as_int,
    as_list,
    param_bool,
    param_int,
    param_str,
)
from workloads.inputfile import ScenarioError, _Checker, _Locator, read_text_file
from workloads.lockorder import load_order_file

__all__ = [
    "ActorSpec",
    "ProcessSpec",
    "Scenario",
    "ScenarioError",
    "apply_overrides",
    "load_scenario",
    "parse_value",
    "scenario_from_data",
]


# -- the TOML shape ---------------------------------------------------------------------------

# Every scenario parameter, once: its TOML key path, the Scenario attribute ``--set`` may set on a
# Python scenario (None: the table's value goes elsewhere, e.g. into ``Scenario.rwsem``) and its
# Param (type, default, range, help).  The section tables the TOML loader checks, the Python
# scenarios' overridable keys, the Scenario defaults, ``rmapsim list`` and the README's parameter
# table all come from here.
PARAMS: dict[str, tuple[str | None, Param]] = {
    "run.cpus": ("cpus", Param(int, 4, "simulated CPUs", 1, 4096)),
    "run.duration_ns": ("duration_ns", Param(int, 10_000_000, "virtual length of the workload phase, after populate "
                                                              "(ns)", 1, 10**13)),
    "run.max_events": ("max_events", Param(int, 20_000_000, "event budget (a runaway scenario stops here)", 1,
                                           10**10)),
    "run.seed": ("seed", Param(int, 1, "the run's seed", 0, 2**63 - 1)),
    "run.designs": (None, Param(list, ["anon_vma", "cow_context"], "reverse-map designs to run")),
    "run.lock_instance_stats": ("lock_instance_stats", Param(bool, False, "also keep statistics per lock instance "
                                                                          "(per mm, per family)")),
    "run.balance": ("balance", Param(bool, True, "load balancing: a woken task runs on an idle CPU, an idle CPU "
                                                 "pulls a waiting task (false: every task stays on its CPU)")),
    "run.cost_variability": ("cost_variability", Param(bool, True, "seeded per-operation spread of the cost "
                                                                   "model's constants (mm/cost_spread.py; false: "
                                                                   "every cost its constant)")),
    # Not a parameter of the model: both executors give byte-identical results, so it is not recorded.
    "run.executor": ("executor", Param(str, "stepper", "who steps the simulated tasks: 'stepper' (default, "
                                                       "fastest) or 'trio' (each simulated CPU a trio task; same "
                                                       "results)", choices=("stepper", "trio"))),
    "memory.total_pages": ("total_pages", Param(int, 1 << 30, "memory in 4 KiB pages", 1, 1 << 40)),
    "memory.wmark_min": ("wmark_min", Param(int, 0, "min watermark (pages): below it allocations reclaim "
                                                    "directly", 0, 1 << 40)),
    "memory.wmark_low": ("wmark_low", Param(int, 0, "low watermark (pages): below it kswapd wakes", 0, 1 << 40)),
    "memory.wmark_high": ("wmark_high", Param(int, 0, "high watermark (pages): kswapd reclaims up to it", 0,
                                              1 << 40)),
    "rwsem.spin": (None, Param(bool, True, "writer optimistic spinning")),
    "rwsem.reader_steal": (None, Param(bool, True, "reader lock stealing (v5.11+)")),
    "rwsem.handoff": (None, Param(bool, True, "handoff after the wait timeout")),
    "rwsem.hz": (None, Param(int, 250, "CONFIG_HZ: a waiter may ask for the handoff once time_after(jiffies, its "
                                       "enqueue jiffy + RWSEM_WAIT_TIMEOUT), RWSEM_WAIT_TIMEOUT = "
                                       "DIV_ROUND_UP(HZ, 250) jiffies (4-8 ms at HZ=250)", 1, 100_000)),
    "rwsem.handoff_timeout_ns": (None, Param(int, 4_000_000, "an exact handoff timeout in ns, used instead of the "
                                                             "jiffy one only when given (the model before HZ)",
                                             1, 10**12)),
    "rwsem.wait_lock": (None, Param(bool, False, "model the wait_lock: each queueing, woken writer's retry and "
                                                 "rwsem_wake runs a section of it (concurrency/wait_lock.py)")),
    "rwsem.wake_q": (None, Param(bool, True, "with wait_lock: wake after dropping it (wake_up_q); false: "
                                             "wake_up_process under it (3.10's __rwsem_do_wake)")),
    "mutex.spin": (None, Param(bool, True, "optimistic spinning on a running owner (MUTEX_SPIN_ON_OWNER)")),
    "mutex.handoff": (None, Param(bool, True, "MUTEX_FLAG_HANDOFF (v4.10+); false: the earlier mutex of the "
                                              "2011-2013 results")),
    "mutex.wait_lock": (None, Param(bool, False, "model the wait_lock: each queueing, woken waiter's retry and unlock "
                                                 "with waiters runs a section of it (concurrency/wait_lock.py)")),
    "mutex.wake_q": (None, Param(bool, True, "with wait_lock: wake after dropping it (wake_up_q); false: "
                                             "wake_up_process under it (3.10's __mutex_unlock_common_slowpath)")),
    "folio_lock.unfairness": (None, Param(int, 5, "sysctl_page_lock_unfairness: races a woken waiter may lose "
                                                  "before the unlocker hands it the lock (5 since v5.11; 0 = v5.9 "
                                                  "hand-off)", 0, 10**6)),
    "reclaim.trylock": ("reclaim_trylock", Param(bool, True, "folio_referenced only tries the rmap lock (2022+)")),
    "lockdep.enabled": ("lockdep", Param(bool, True, "run the lock-order checker")),
    "lockdep.expected_order": (None, Param(str, "rmap", "declared order to check: 'rmap' (the mm/rmap.c header "
                                                        "order), 'none', or the path of an order file in "
                                                        "mm/rmap_lock_order.toml's format (relative to the "
                                                        "scenario file)")),
}


def _section(name: str) -> dict[str, Param]:
    """One TOML table's keys, in :data:`PARAMS` order."""
    return {key.partition(".")[2]: param for key, (_, param) in PARAMS.items() if key.partition(".")[0] == name}


# The defaults, read at their types by the Scenario dataclass below.
_DEFAULTS: Params = {key: param.default for key, (_, param) in PARAMS.items()}


def _default_int(key: str) -> int:
    return param_int(_DEFAULTS, key)


def _default_bool(key: str) -> bool:
    return param_bool(_DEFAULTS, key)


def _default_str(key: str) -> str:
    return param_str(_DEFAULTS, key)


def _str_tuple(values: list[object], what: str) -> tuple[str, ...]:
    out = tuple(v for v in values if isinstance(v, str))
    if len(out) != len(values):
        raise TypeError(f"{what} is {values!r}, not a list of strings")
    return out


# A design switch's value: mm/rmap_design.py's ``Switch.allowed`` are strings and booleans.
SwitchValue: TypeAlias = "bool | str"


_RUN = _section("run")
_PERTURB_HELP = ("schedule perturbation: shuffle (random order among events due at the same time), jitter "
                 "(costs scaled by a seeded factor in [1-j, 1+j], 0 <= j <= 0.9), preempt (injected "
                 "preemptions: a list of [at_ns, off_ns])")
_MEMORY = _section("memory")
_RWSEM = _section("rwsem")
_MUTEX = _section("mutex")
_FOLIO_LOCK = _section("folio_lock")
_RECLAIM = _section("reclaim")
_LOCKDEP = _section("lockdep")
# The lock and checker switches ``rmapsim list`` shows beside the designs' switches.
SWITCH_SECTIONS = ("rwsem", "mutex", "folio_lock", "reclaim", "lockdep")


def toml_literal(value: object) -> str:
    """A default as it is written in a scenario file (``true``, ``4000000``, ``"rmap"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return str(value)


def params_markdown() -> str:
    """The README's parameter table: every row of :data:`PARAMS` (a test keeps the README equal)."""
    kinds = {int: "integer", bool: "boolean", str: "string", list: "list"}
    rows = ["| key | type | default | allowed | what |", "|---|---|---|---|---|"]
    for key, (_, param) in PARAMS.items():
        if param.choices is not None:
            allowed = ", ".join(toml_literal(c) for c in param.choices)
        elif param.min is not None or param.max is not None:
            allowed = f"{'' if param.min is None else param.min}..{'' if param.max is None else param.max}"
        else:
            allowed = ""
        rows.append(f"| `{key}` | {kinds[param.type]} | `{toml_literal(param.default)}` | {allowed} | {param.help} |")
    return "\n".join(rows) + "\n"


def switch_help() -> dict[str, str]:
    """``rmapsim list``'s switches: every design's (mm/designs' ``SWITCHES``) and the lock and
    checker parameters of :data:`SWITCH_SECTIONS`, each key with its help, default (and the
    designs' allowed values), from their tables."""
    out = {f"switches.{name}.{key}": f"{sw.help} (default {spell(sw.default)}; allowed "
                                     f"{', '.join(map(spell, sw.allowed))})"
           for name, cls in sorted(DESIGNS.items()) for key, sw in cls.SWITCHES.items()}
    out.update({key: f"{param.help} (default {toml_literal(param.default)})"
                for key, (_, param) in PARAMS.items() if key.partition(".")[0] in SWITCH_SECTIONS})
    return out


def set_help() -> str:
    """The command line's ``--set`` help: the tables it reaches, from :data:`PARAMS`."""
    sections = ", ".join(f"{s}.*" for s in dict.fromkeys(key.partition(".")[0] for key in PARAMS))
    example = _default_int("run.duration_ns") // 2
    return (f"override a scenario key ({sections}, costs.*, switches.DESIGN.*: `rmapsim list`, the README's "
            f"parameter table), e.g. run.duration_ns={example} (repeatable)")


def flag_help(key: str) -> str:
    """The help of a flag that stands for ``--set KEY=VALUE`` (``--executor``): the table's."""
    return f"{PARAMS[key][1].help}; same as --set {key}=NAME"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    regions: tuple[Region, ...]
    populate: bool = True
    populate_write: bool = True


@dataclass(frozen=True)
class ActorSpec:
    kind: str
    process: str | None
    params: Params


@dataclass
class Scenario:
    name: str
    description: str = ""
    mirrors: str = ""
    source: str = "<python>"
    cpus: int = _default_int("run.cpus")
    duration_ns: int | None = _default_int("run.duration_ns")
    max_events: int = _default_int("run.max_events")
    seed: int = _default_int("run.seed")
    designs: tuple[str, ...] = _str_tuple(as_list(_DEFAULTS["run.designs"], "run.designs"), "run.designs")
    total_pages: int = _default_int("memory.total_pages")
    wmark_min: int = _default_int("memory.wmark_min")
    wmark_low: int = _default_int("memory.wmark_low")
    wmark_high: int = _default_int("memory.wmark_high")
    costs: dict[str, int] = field(default_factory=dict)
    # The lock tables' keys a scenario gave (their values are booleans and integers).
    rwsem: dict[str, int | bool] = field(default_factory=dict)
    mutex: dict[str, int | bool] = field(default_factory=dict)
    folio_lock: dict[str, int | bool] = field(default_factory=dict)
    reclaim_trylock: bool = _default_bool("reclaim.trylock")
    lockdep: bool = _default_bool("lockdep.enabled")
    lock_instance_stats: bool = _default_bool("run.lock_instance_stats")
    balance: bool = _default_bool("run.balance")
    cost_variability: bool = _default_bool("run.cost_variability")
    expected_order: str | None = _default_str("lockdep.expected_order")  # "rmap", None ("none") or a file's path
    order_path: str | None = None  # that file, resolved (relative paths are the scenario file's)
    switches: dict[str, dict[str, SwitchValue]] = field(default_factory=dict)
    processes: tuple[ProcessSpec, ...] = ()
    actors: tuple[ActorSpec, ...] = ()
    setup: Callable[[World], Awaitable[None]] | None = None
    perturb: Perturbation = field(default_factory=Perturbation.none)
    # concurrency/executors.py; not in params(): results do not depend on it
    executor: str = _default_str("run.executor")
    raw: Mapping[str, object] = field(default_factory=dict)  # the TOML document, as parsed

    def params(self) -> JsonObject:
        """The parameters a result records (everything but the process/actor lists)."""
        return {
            "cpus": self.cpus, "duration_ns": self.duration_ns, "max_events": self.max_events,
            "seed": self.seed, "designs": list(self.designs), "costs": dict(sorted(self.costs.items())),
            "rwsem": dict(sorted(self.rwsem.items())),
            "mutex": dict(sorted(self.mutex.items())), "reclaim_trylock": self.reclaim_trylock,
            "memory": {"total_pages": self.total_pages, "wmark_min": self.wmark_min,
                       "wmark_low": self.wmark_low, "wmark_high": self.wmark_high},
            "lockdep": self.lockdep, "expected_order": self.expected_order,
            "lock_instance_stats": self.lock_instance_stats, "balance": self.balance,
            "cost_variability": self.cost_variability, "perturb": self.perturb.to_dict(),
            # only when a scenario sets it: records of runs that do not stay as they were
            **({"folio_lock": dict(sorted(self.folio_lock.items()))} if self.folio_lock else {}),
        }


# -- the TOML shape of processes, regions and the rest -------------------------------------------

_PROCESS = {
    "name": Param(str, None, "process name (actors refer to it)"),
    "regions": Param(list, [], "anonymous mappings: [{start, pages, thp}]"),
    "populate": Param(bool, True, "fault every region in before the workload starts"),
    "populate_write": Param(bool, True, "populate with write faults (else the zero page)"),
}
_REGION = {
    "start": Param(int, None, "first page", 0, 1 << 40),
    "pages": Param(int, None, "length in pages", 1, 1 << 30),
    "thp": Param(bool, False, "THP-eligible (PMD-mapped order-9 folios)"),
}
_TOP = {"name", "description", "mirrors", "run", "memory", "costs", "rwsem", "mutex", "folio_lock", "reclaim",
        "lockdep", "switches", "process", "actor"}
def _flags(data: Mapping[str, object], section: str, checked: Params) -> dict[str, int | bool]:
    """The keys of a lock table a scenario gave, in its order, checked (booleans and integers)."""
    given = data.get(section, {})
    assert isinstance(given, dict)  # _Checker.table checked it
    out: dict[str, int | bool] = {}
    for key in given:
        value = checked[key]
        if not isinstance(value, int):
            raise TypeError(f"{section}.{key} is {value!r}: the lock tables hold booleans and integers")
        out[key] = value
    return out


def _from_dict(data: Mapping[str, object], file: str, text: str) -> Scenario:
    ck = _Checker(file, text)
    for key in data:
        if key not in _TOP:
            raise ck.unknown([], key, sorted(_TOP))
    texts: dict[str, str] = {}
    for key in ("name", "description", "mirrors"):
        value = data.get(key, "")
        if not isinstance(value, str):
            raise ck.fail([key], f"{spell(value)} is not a string")
        texts[key] = value
    if "name" not in data:
        raise ck.fail(["name"], "missing; every scenario has a name")
    run_raw = data.get("run", {})
    perturb = Perturbation.none()
    if isinstance(run_raw, dict) and "perturb" in run_raw:
        run_raw = dict(run_raw)
        perturb = _perturb(ck, run_raw.pop("perturb"))
    run = ck.table(run_raw, ["run"], _RUN)
    designs = as_list(run["designs"], "run.designs")
    if not designs:
        raise ck.fail(["run", "designs"], "empty; name at least one design")
    for i, name in enumerate(designs):
        if not isinstance(name, str) or name not in DESIGNS:
            close = difflib.get_close_matches(str(name), list(DESIGNS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ck.fail(["run", "designs"], f"unknown design {spell(name)}{hint} at position {i}; "
                                              f"allowed: {', '.join(sorted(DESIGNS))}")
    memory = ck.table(data.get("memory", {}), ["memory"], _MEMORY)
    wmark_min, wmark_low, wmark_high, total_pages = (
        param_int(memory, k) for k in ("wmark_min", "wmark_low", "wmark_high", "total_pages"))
    if not wmark_min <= wmark_low <= wmark_high <= total_pages:
        raise ck.fail(["memory"], "watermarks must satisfy wmark_min <= wmark_low <= wmark_high <= total_pages; "
                                  f"got {memory}")
    cost_schema = {f.name: Param(int, _cost_default(f), "cost (ns)", 0, 10**12) for f in dataclasses.fields(CostModel)}
    costs_raw = data.get("costs", {})
    if not isinstance(costs_raw, dict):
        raise ck.fail(["costs"], f"expected a table, got {spell(costs_raw)}")
    costs: dict[str, int] = {}
    for key, value in costs_raw.items():
        if key not in cost_schema:
            raise ck.unknown(["costs"], key, list(cost_schema))
        costs[key] = as_int(ck.value(value, ["costs", key], cost_schema[key]), f"costs.{key}")
    rwsem = ck.table(data.get("rwsem", {}), ["rwsem"], _RWSEM)
    mutex = ck.table(data.get("mutex", {}), ["mutex"], _MUTEX)
    folio_lock = ck.table(data.get("folio_lock", {}), ["folio_lock"], _FOLIO_LOCK)
    reclaim = ck.table(data.get("reclaim", {}), ["reclaim"], _RECLAIM)
    lockdep = ck.table(data.get("lockdep", {}), ["lockdep"], _LOCKDEP)
    expected_order = param_str(lockdep, "expected_order")
    order_path = _order_path(ck, expected_order, file)
    switches_raw = data.get("switches", {})
    if not isinstance(switches_raw, dict):
        raise ck.fail(["switches"], f"expected a table of designs, got {spell(switches_raw)}")
    switches: dict[str, dict[str, SwitchValue]] = {}
    for dname, given in switches_raw.items():
        cls = DESIGNS.get(dname)
        if cls is None:
            raise ck.unknown(["switches"], dname, list(DESIGNS))
        if not isinstance(given, dict):
            raise ck.fail(["switches", dname], f"expected a table, got {spell(given)}")
        checked: dict[str, SwitchValue] = {}
        for key, value in given.items():
            sw = cls.SWITCHES.get(key)
            if sw is None:
                raise ck.unknown(["switches", dname], key, list(cls.SWITCHES))
            if not isinstance(value, bool | str) or value not in sw.allowed or type(value) is not type(sw.default):
                raise ck.fail(["switches", dname, key],
                              f"{spell(value)} not allowed; allowed: {', '.join(map(spell, sw.allowed))}")
            checked[key] = value
        switches[dname] = checked
    processes = _processes(ck, data.get("process", []))
    actors = _actors(ck, data.get("actor", []), {p.name: p for p in processes})
    return Scenario(
        name=texts["name"], description=texts["description"], mirrors=texts["mirrors"],
        source=file, cpus=param_int(run, "cpus"), duration_ns=param_int(run, "duration_ns"),
        max_events=param_int(run, "max_events"), seed=param_int(run, "seed"),
        designs=_str_tuple(designs, "run.designs"), total_pages=total_pages,
        wmark_min=wmark_min, wmark_low=wmark_low, wmark_high=wmark_high,
        lock_instance_stats=param_bool(run, "lock_instance_stats"), balance=param_bool(run, "balance"),
        cost_variability=param_bool(run, "cost_variability"), costs=costs,
        rwsem=_flags(data, "rwsem", rwsem), mutex=_flags(data, "mutex", mutex),
        folio_lock=_flags(data, "folio_lock", folio_lock),
        reclaim_trylock=param_bool(reclaim, "trylock"), lockdep=param_bool(lockdep, "enabled"),
        expected_order=None if expected_order == "none" else expected_order,
        order_path=order_path,
        switches=switches, processes=processes, actors=actors, perturb=perturb, executor=param_str(run, "executor"),
        raw=data,
    )


def _cost_default(f: dataclasses.Field[object]) -> int:
    """A CostModel field's default (every cost is an integer of ns)."""
    if not isinstance(f.default, int):
        raise TypeError(f"CostModel.{f.name} has no integer default")
    return f.default


def _order_path(ck: _Checker, value: str, file: str) -> str | None:
    """``lockdep.expected_order``: ``rmap``, ``none`` or an order file, found relative to the
    scenario file and validated now (its errors name the order file's own lines)."""
    if value in ("rmap", "none"):
        return None
    path = Path(value)
    if not path.is_absolute():
        path = Path(file).parent / path
    if not path.is_file():
        raise ck.fail(["lockdep", "expected_order"],
                      f"{spell(value)}: no such order file ({path}); allowed: \"rmap\" (the mm/rmap.c header "
                      "order), \"none\", or the path of an order file in mm/rmap_lock_order.toml's format")
    load_order_file(path)
    return str(path)


def _perturb(ck: _Checker, raw: object) -> Perturbation:
    """``[run.perturb]``: see concurrency/perturb.py."""
    path: list[str | int] = ["run", "perturb"]
    if not isinstance(raw, dict):
        raise ck.fail(path, f"expected a table ({_PERTURB_HELP}), got {spell(raw)}")
    for key in raw:
        if key not in PERTURB_KEYS:
            raise ck.unknown(path, key, list(PERTURB_KEYS))
    shuffle = raw.get("shuffle", False)
    if not isinstance(shuffle, bool):
        raise ck.fail([*path, "shuffle"], f"{spell(shuffle)} is not true or false")
    jitter = raw.get("jitter", 0.0)
    if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 0.9:
        raise ck.fail([*path, "jitter"], f"{spell(jitter)} is not a number in 0..0.9")
    preempt = raw.get("preempt", [])
    if not isinstance(preempt, list):
        raise ck.fail([*path, "preempt"], f"{spell(preempt)} is not a list of [at_ns, off_ns]")
    for i, item in enumerate(preempt):
        ok = (isinstance(item, list) and len(item) == 2
              and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
              and 0 <= item[0] <= 10**13 and 1 <= item[1] <= 10**12)
        if not ok:
            raise ck.fail([*path, "preempt"], f"entry {i} is {spell(item)}; allowed: [at_ns, off_ns] with "
                                              "0 <= at_ns <= 10^13 and 1 <= off_ns <= 10^12")
    return Perturbation.from_dict({"shuffle": shuffle, "jitter": float(jitter), "preempt": preempt})


def _processes(ck: _Checker, raw: object) -> tuple[ProcessSpec, ...]:
    if not isinstance(raw, list):
        raise ck.fail(["process"], "expected [[process]] tables")
    out = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        p = ck.table(item, ["process", i], _PROCESS)
        name = param_str(p, "name")
        if name in seen:
            raise ck.fail(["process", i, "name"], f"{spell(name)} used twice; process names are unique")
        seen.add(name)
        regions = []
        for j, region in enumerate(as_list(p["regions"], "regions")):
            r = ck.table(region, ["process", i, "regions", j], _REGION)
            regions.append(Region(param_int(r, "start"), param_int(r, "pages"), param_bool(r, "thp")))
        out.append(ProcessSpec(name, tuple(regions), param_bool(p, "populate"), param_bool(p, "populate_write")))
    return tuple(out)


def _actors(ck: _Checker, raw: object, processes: dict[str, ProcessSpec]) -> tuple[ActorSpec, ...]:
    if not isinstance(raw, list):
        raise ck.fail(["actor"], "expected [[actor]] tables")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ck.fail(["actor", i], f"expected a table, got {spell(item)}")
        kind_name = item.get("kind")
        if not isinstance(kind_name, str) or kind_name not in ACTORS:
            close = difflib.get_close_matches(str(kind_name), list(ACTORS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ck.fail(["actor", i, "kind"], f"unknown actor {spell(kind_name)}{hint}; "
                                                f"allowed: {', '.join(sorted(ACTORS))}")
        kind = ACTORS[kind_name]
        schema = dict(kind.params)
        schema["kind"] = Param(str, kind_name, "actor kind")
        if kind.needs_process:
            schema["process"] = Param(str, None, "the [[process]] this actor runs in")
        # ``nice`` (every kind) is optional with no default: unset keeps the fair scheduler off.
        params = ck.table({k: v for k, v in item.items() if k != "nice"}, ["actor", i], schema)
        if "nice" in item:
            params["nice"] = ck.value(item["nice"], ["actor", i, "nice"], NICE_PARAM)
        given_proc = params.pop("process", None)
        params.pop("kind")
        proc = None if given_proc is None else param_str({"process": given_proc}, "process")
        if proc is not None and proc not in processes:
            raise ck.fail(["actor", i, "process"], f"no process named {spell(proc)}; defined: "
                                                   f"{', '.join(sorted(processes)) or 'none'}")
        if proc is not None:
            nregions = len(processes[proc].regions)
            if "region" in params and param_int(params, "region") >= nregions:
                raise ck.fail(["actor", i, "region"], f"{params['region']} out of range; process {proc!r} "
                                                      f"has {nregions} region(s)")
        out.append(ActorSpec(kind_name, proc, params))
    return tuple(out)


def parse_value(text: str) -> object:
    """A ``--set``/``--grid`` value: TOML syntax (``8``, ``true``, ``"rcu"``) or a bare string."""
    try:
        value: object = tomllib.loads(f"v = {text}")["v"]
        return value
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Mapping[str, object], overrides: Mapping[str, object]) -> dict[str, object]:
    """``--set run.cpus=8`` on the raw TOML data (a deep copy), before validation."""
    import copy

    out = copy.deepcopy(dict(data))
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ScenarioError("--set", None, dotted, f"{part!r} is not a table")
            node = nxt
        node[parts[-1]] = value
    return out


# ``--set`` keys a Python scenario understands (the TOML keys that map to one Scenario field).
# What ``--set`` may change on a Python scenario: the parameters with a Scenario attribute.
_FIELD_KEYS = {key: (attr, param) for key, (attr, param) in PARAMS.items() if attr is not None}


def _override_field(scenario: Scenario, file: str, key: str, value: object) -> None:
    entry = _FIELD_KEYS.get(key)
    if entry is None:
        close = difflib.get_close_matches(key, list(_FIELD_KEYS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScenarioError(file, None, key, f"cannot override a Python scenario's {key!r}{hint}; "
                                             f"allowed: {', '.join(sorted(_FIELD_KEYS))}")
    name, param = entry
    _Checker(file, "").value(value, [key], param)
    setattr(scenario, name, value)


def scenario_from_data(data: Mapping[str, object], file: str = "<data>") -> Scenario:
    """Validate an already parsed TOML scenario (``rmapsim explore`` shrinks scenarios as data);
    error lines cannot be given, the key path and the allowed values are."""
    return _from_dict(data, file, "")


def load_scenario(path: str | Path, overrides: Mapping[str, object] | None = None, *,
                  flags: dict[str, str] | None = None) -> Scenario:
    """Load and validate a TOML or Python scenario; raises :class:`ScenarioError`.

    Besides its shape (the parameter tables), what it means is checked now, not mid-run
    (workloads/scenario_checks.py).  An error in an override is blamed on the flag that gave it
    (``flags[key]``, else ``--set``), not on a line of the file."""
    path = Path(path)
    file = str(path)
    try:
        text = read_text_file(path, file)
        if path.suffix == ".py":
            return _load_python(path, file, overrides)
        if path.suffix != ".toml":
            raise ScenarioError(file, None, "", "a scenario is a .toml or .py file")
        try:
            data: dict[str, object] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise ScenarioError(file, int(m.group(1)) if m else None, "", f"not valid TOML: {exc}") from None
        if overrides:
            data = apply_overrides(data, overrides)
        scenario = _from_dict(data, file, text)
        from workloads.scenario_checks import check_semantics

        check_semantics(scenario, file, _Locator(text).line_of)
        return scenario
    except ScenarioError as exc:
        raise _blame_flag(exc, overrides or {}, flags or {}) from None


def _blame_flag(exc: ScenarioError, overrides: Mapping[str, object], flags: dict[str, str]) -> ScenarioError:
    """An error in a key that an override set is the flag's, not the file's."""
    for key in overrides:
        if exc.key and (exc.key == key or exc.key.startswith(f"{key}.") or key.startswith(f"{exc.key}.")):
            return ScenarioError(flags.get(key, "--set"), None, exc.key, exc.message)
    return exc


def _raised(file: str, exc: BaseException, where: str) -> ScenarioError:
    """A Python scenario that raised: the error names the file's line it raised from."""
    import traceback

    line = None
    mine = Path(file).resolve()  # the import machinery names it by its absolute path
    if isinstance(exc, SyntaxError) and exc.filename is not None and Path(exc.filename).resolve() == mine:
        return ScenarioError(file, exc.lineno, "", f"Python syntax error: {exc.msg}; allowed: a Python module "
                                                   "defining scenario() -> Scenario")
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename and not frame.filename.startswith("<") and Path(frame.filename).resolve() == mine:
            line = frame.lineno
    return ScenarioError(file, line, "", f"{where} raised {type(exc).__name__}: {exc}; allowed: a Python module "
                                         "whose scenario() returns a Scenario")


def _load_python(path: Path, file: str, overrides: Mapping[str, object] | None) -> Scenario:
    """A Python scenario: imported, called, then validated like a TOML one (the same tables and
    messages, on the TOML form of what ``scenario()`` returned: workloads/scenario_checks.py)."""
    import inspect

    spec = importlib.util.spec_from_file_location(f"rmapsim_scenario_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ScenarioError(file, None, "", "cannot import this Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's module: whatever it raises is bad input
        raise _raised(file, exc, "importing it") from None
    factory = getattr(module, "scenario", None)
    if not callable(factory):
        raise ScenarioError(file, None, "scenario", "a Python scenario defines scenario() -> Scenario")
    try:
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        takes_kwargs = False
    try:
        scenario = factory(**(overrides or {})) if takes_kwargs else factory()
    except (Exception, SystemExit) as exc:
        raise _raised(file, exc, "scenario()") from None
    if not isinstance(scenario, Scenario):
        raise ScenarioError(file, None, "scenario", f"scenario() returned {type(scenario).__name__}, "
                                                    "not a Scenario; allowed: a workloads.scenario.Scenario")
    scenario.source = file
    for key, value in (overrides or {}).items():
        _override_field(scenario, file, key, value)
    from workloads.scenario_checks import check_semantics

    checked = _from_dict(scenario_data(scenario), file, "")
    scenario.actors = checked.actors  # every actor parameter, defaults filled in, as from TOML
    if scenario.expected_order is not None and scenario.order_path is None:
        scenario.order_path = checked.order_path
    check_semantics(scenario, file)
    return scenario


# -- a Scenario in the TOML shape (how a Python scenario is validated like a TOML one) ------------


def _region(region: object) -> object:
    if dataclasses.is_dataclass(region) and not isinstance(region, type):
        return {f.name: getattr(region, f.name) for f in dataclasses.fields(region)}
    return region  # not a Region: the table check says what it is



def _process(proc: object) -> object:
    if not isinstance(proc, ProcessSpec):
        return proc
    regions = [_region(r) for r in proc.regions] if isinstance(proc.regions, tuple | list) else proc.regions
    return {"name": proc.name, "regions": regions, "populate": proc.populate, "populate_write": proc.populate_write}



def _actor(actor: object) -> object:
    if not isinstance(actor, ActorSpec):
        return actor
    out: dict[str, object] = {"kind": actor.kind}
    if actor.process is not None:
        out["process"] = actor.process
    if isinstance(actor.params, dict):
        out.update(actor.params)
    return out



def _listed(value: object, convert: Callable[[object], object]) -> object:
    return [convert(v) for v in value] if isinstance(value, tuple | list) else value



def scenario_data(sc: Scenario) -> dict[str, object]:
    """``sc`` as the TOML document that says the same (what ``scenario_from_data`` validates)."""
    run: dict[str, object] = {"cpus": sc.cpus, "max_events": sc.max_events, "seed": sc.seed,
                           "designs": list(sc.designs) if isinstance(sc.designs, tuple | list) else sc.designs,
                           "lock_instance_stats": sc.lock_instance_stats, "balance": sc.balance,
                           "cost_variability": sc.cost_variability, "executor": sc.executor}
    if sc.duration_ns is not None:  # a Python scenario may run until every task is done
        run["duration_ns"] = sc.duration_ns
    perturb = getattr(sc.perturb, "to_dict", None)
    if perturb is not None and getattr(sc.perturb, "active", False):
        run["perturb"] = perturb()
    data: dict[str, object] = {
        "name": sc.name, "description": sc.description, "mirrors": sc.mirrors, "run": run,
        "memory": {"total_pages": sc.total_pages, "wmark_min": sc.wmark_min, "wmark_low": sc.wmark_low,
                   "wmark_high": sc.wmark_high},
        "costs": sc.costs, "rwsem": sc.rwsem, "mutex": sc.mutex, "reclaim": {"trylock": sc.reclaim_trylock},
        # an order file already found (a scenario loaded from elsewhere, then returned) by its resolved path
        "lockdep": {"enabled": sc.lockdep,
                    "expected_order": "none" if sc.expected_order is None else (sc.order_path or sc.expected_order)},
        "switches": sc.switches, "process": _listed(sc.processes, _process), "actor": _listed(sc.actors, _actor),
    }
    return data

