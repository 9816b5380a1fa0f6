"""The actor kinds a scenario can name, with their parameters: the registry validation reads.

Each kind maps to a behaviour in actors/ and a table of parameters (type, default, range, help).
A scenario's ``[[actor]]`` table names a kind, the process it runs in (for process behaviours),
and parameters; :func:`start_actor` turns it into simulated tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from actors import daemons, process
from actors.process import ChildSpec, Region
from actors.world import Process, World
from concurrency.waitqueue import WaitQueue

__all__ = ["ACTORS", "NICE_PARAM", "ActorKind", "Param", "ParamValue", "Params", "as_int", "as_list", "param_bool",
           "param_int", "param_str", "start_actor"]

# A parameter's value once checked against its Param (``type`` is one of int, bool, str, list);
# None: a default that means "required" (or, for ``nice``, "unset").  A list's items are checked
# by whoever reads it (``run.designs``, ``[[process]].regions``).
ParamValue: TypeAlias = "bool | int | str | list[object] | None"
Params: TypeAlias = "dict[str, ParamValue]"


@dataclass(frozen=True)
class Param:
    type: type[int] | type[bool] | type[str] | type[list[object]]
    default: ParamValue
    help: str
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] | None = None


def as_int(value: ParamValue, what: str) -> int:
    """A checked integer (a table validated it: anything else is a bug here, not bad input)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} is {value!r}, not an integer")
    return value


def as_list(value: ParamValue, what: str) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"{what} is {value!r}, not a list")
    return value


def param_int(params: Mapping[str, ParamValue], key: str) -> int:
    """A checked integer parameter."""
    return as_int(params[key], f"parameter {key!r}")


def param_bool(params: Mapping[str, ParamValue], key: str) -> bool:
    value = params[key]
    if not isinstance(value, bool):
        raise TypeError(f"parameter {key!r} is {value!r}, not true or false")
    return value


def param_str(params: Mapping[str, ParamValue], key: str) -> str:
    value = params[key]
    if not isinstance(value, str):
        raise TypeError(f"parameter {key!r} is {value!r}, not a string")
    return value


# How a kind starts: (world, its process or None, its checked parameters, the process's regions,
# kswapd's wait queue when the scenario reclaims).
Start: TypeAlias = Callable[[World, "Process | None", Params, list[Region], "WaitQueue | None"], None]


@dataclass(frozen=True)
class ActorKind:
    name: str
    help: str
    needs_process: bool
    params: dict[str, Param]
    start: Start


def _child(p: Params) -> ChildSpec:
    return ChildSpec(cow_writes=param_int(p, "child_cow_writes"), new_pages=param_int(p, "child_new_pages"),
                     lifetime_ns=param_int(p, "child_lifetime_ns"), sleep_ns=param_int(p, "child_sleep_ns"),
                     cow_pattern=param_str(p, "child_cow_pattern"))


_CHILD_PARAMS = {
    "child_cow_writes": Param(int, 8, "inherited pages each child writes (COW)", 0, 1 << 20),
    "child_cow_pattern": Param(str, "random", "which: random pages, or every inherited page in order",
                               choices=("random", "sequential")),
    "child_new_pages": Param(int, 0, "fresh private pages each child maps and faults", 0, 1 << 20),
    "child_lifetime_ns": Param(int, 50_000, "child's compute time before exit (ns)", 0, 10**12),
    "child_sleep_ns": Param(int, 0, "then the child idles (asleep) this long before exit (ns)", 0, 10**12),
}


def _start_fault_loop(world: World, proc: Process | None, p: Params, regions: list[Region],
                      kswapd_queue: WaitQueue | None) -> None:
    assert proc is not None
    region = regions[param_int(p, "region")]
    threads = param_int(p, "threads")
    # Thread mode: the threads share the mm and split the region between them.
    share = max(1, region.pages // threads)
    for i in range(threads):
        sub = Region(region.start + i * share, share if i < threads - 1 else region.pages - i * share,
                     region.thp)
        world.spawn(proc, f"fault{i}", process.fault_loop, world, proc, sub, pattern=param_str(p, "pattern"),
                    write=param_bool(p, "write"), think_ns=param_int(p, "think_ns"),
                    unmap_each_pass=param_bool(p, "unmap_each_pass"))


def _start_fork_exit(world: World, proc: Process | None, p: Params, regions: list[Region],
                     kswapd_queue: WaitQueue | None) -> None:
    assert proc is not None
    if param_int(p, "prefork"):
        world.spawn(proc, "prefork", process.prefork_servers, world, proc, servers=param_int(p, "prefork"),
                    interval_ns=param_int(p, "interval_ns"), child=_child(p), regions=regions)
        return
    for i in range(param_int(p, "threads")):
        world.spawn(proc, f"forker{i}", process.fork_exit_loop, world, proc, interval_ns=param_int(p, "interval_ns"),
                    child=_child(p), regions=regions, max_children=param_int(p, "max_children") or None)


def _start_fork_chain(world: World, proc: Process | None, p: Params, regions: list[Region],
                      kswapd_queue: WaitQueue | None) -> None:
    assert proc is not None
    world.spawn(proc, "chain", process.fork_chain, world, proc, depth=param_int(p, "depth"), regions=regions,
                cow_writes=param_int(p, "cow_writes"), think_ns=param_int(p, "think_ns"))


def _start_fan_out(world: World, proc: Process | None, p: Params, regions: list[Region],
                   kswapd_queue: WaitQueue | None) -> None:
    assert proc is not None
    world.spawn(proc, "zygote", process.fan_out, world, proc, children=param_int(p, "children"), child=_child(p),
                regions=regions, stay_ns=param_int(p, "stay_ns"), unmap_after_fork=param_bool(p, "unmap_after_fork"))


def _start_mmap_churn(world: World, proc: Process | None, p: Params, regions: list[Region],
                      kswapd_queue: WaitQueue | None) -> None:
    assert proc is not None
    world.spawn(proc, "churn", process.mmap_churn, world, proc, start=param_int(p, "start"),
                pages=param_int(p, "pages"), touch=param_int(p, "touch"), think_ns=param_int(p, "think_ns"))


def _start_mremap(world: World, proc: Process | None, p: Params, regions: list[Region],
                  kswapd_queue: WaitQueue | None) -> None:
    assert proc is not None
    world.spawn(proc, "mremap", process.mremap_loop, world, proc, regions[param_int(p, "region")],
                other_start=param_int(p, "other_start"), think_ns=param_int(p, "think_ns"))


def _start_kswapd(world: World, proc: Process | None, p: Params, regions: list[Region],
                  kswapd_queue: WaitQueue | None) -> None:
    assert kswapd_queue is not None  # the runner installs reclaim when a scenario has a kswapd actor
    world.spawn_kthread("kswapd0", daemons.kswapd, world, kswapd_queue)


def _start_migrate(world: World, proc: Process | None, p: Params, regions: list[Region],
                   kswapd_queue: WaitQueue | None) -> None:
    for i in range(param_int(p, "threads")):
        world.spawn_kthread(f"kmigrate{i}", daemons.migrate_daemon, world, interval_ns=param_int(p, "interval_ns"),
                            batch=param_int(p, "batch"), start_ns=param_int(p, "start_ns"))


def _start_cpu_hog(world: World, proc: Process | None, p: Params, regions: list[Region],
                   kswapd_queue: WaitQueue | None) -> None:
    for i in range(param_int(p, "threads")):
        world.spawn_kthread(f"hog{i}", daemons.cpu_hog, world, chunk_ns=param_int(p, "chunk_ns"),
                            cpu=i % len(world.engine.cpus))


def _start_thp_split(world: World, proc: Process | None, p: Params, regions: list[Region],
                     kswapd_queue: WaitQueue | None) -> None:
    for i in range(param_int(p, "threads")):
        world.spawn_kthread(f"ksplit{i}", daemons.thp_split_daemon, world, interval_ns=param_int(p, "interval_ns"))


ACTORS: dict[str, ActorKind] = {
    k.name: k
    for k in [
        ActorKind("fault_loop", "fault a region page by page, forever (will-it-scale page_fault1); "
                  "threads share the mm", True, {
                      "region": Param(int, 0, "index of the process's region to fault", 0, 1000),
                      "threads": Param(int, 1, "threads in the process, each on a slice", 1, 4096),
                      "pattern": Param(str, "sequential", "page order", choices=("sequential", "random")),
                      "write": Param(bool, True, "write faults (else read faults: zero page)"),
                      "think_ns": Param(int, 0, "compute time between faults (ns)", 0, 10**12),
                      "unmap_each_pass": Param(bool, False, "munmap and re-mmap after each pass"),
                  }, _start_fault_loop),
        ActorKind("fork_exit", "a master forking short-lived workers that COW-write and exit "
                  "(exim / AIM7)", True, {
                      "interval_ns": Param(int, 20_000, "mean time between forks per thread (ns)", 1, 10**12),
                      "threads": Param(int, 1, "forking threads in the master", 1, 1024),
                      "max_children": Param(int, 0, "stop after this many forks per thread (0: no limit)",
                                            0, 10**7),
                      "prefork": Param(int, 0, "fork this many server processes first, each forking "
                                       "workers (one family, separate mmap_locks); 0: threads fork", 0, 4096),
                      **_CHILD_PARAMS,
                  }, _start_fork_exit),
        ActorKind("fork_chain", "each process forks a child and exits, to a depth ([H6])", True, {
                      "depth": Param(int, 100, "generations", 1, 100_000),
                      "cow_writes": Param(int, 0, "inherited pages each generation writes", 0, 1 << 20),
                      "think_ns": Param(int, 0, "compute time per generation (ns)", 0, 10**12),
                  }, _start_fork_chain),
        ActorKind("fan_out", "a zygote forking N long-lived apps", True, {
                      "children": Param(int, 16, "apps forked", 1, 100_000),
                      "stay_ns": Param(int, 0, "zygote stays alive this long after forking (ns)", 0, 10**12),
                      "unmap_after_fork": Param(bool, False, "the zygote munmaps its regions once it has forked"),
                      **_CHILD_PARAMS,
                  }, _start_fan_out),
        ActorKind("mmap_churn", "mmap, touch, munmap, repeat", True, {
                      "start": Param(int, 1 << 28, "page address of the churned mapping", 0, 1 << 40),
                      "pages": Param(int, 64, "pages per mapping", 1, 1 << 30),
                      "touch": Param(int, 8, "pages faulted per cycle", 0, 1 << 30),
                      "think_ns": Param(int, 0, "compute time per cycle (ns)", 0, 10**12),
                  }, _start_mmap_churn),
        ActorKind("mremap", "move a region back and forth (mremap MAYMOVE|FIXED)", True, {
                      "region": Param(int, 0, "index of the process's region to move", 0, 1000),
                      "other_start": Param(int, 1 << 29, "the second address (pages)", 0, 1 << 40),
                      "think_ns": Param(int, 10_000, "time between moves (ns)", 0, 10**12),
                  }, _start_mremap),
        ActorKind("kswapd", "reclaim: LRU aging (folio_referenced) and try_to_unmap below the low "
                  "watermark; direct reclaim below min", False, {}, _start_kswapd),
        ActorKind("migrate", "NUMA balancing / compaction: migrate random mapped folios", False, {
                      "interval_ns": Param(int, 50_000, "mean time between migrations (ns)", 1, 10**12),
                      "threads": Param(int, 1, "migrating threads", 1, 1024),
                      "batch": Param(int, 1, "folios migrated back to back per wake-up (a compaction pass)",
                                     1, 1 << 20),
                      "start_ns": Param(int, 0, "no migration before this long into the workload (ns)", 0, 10**12),
                  }, _start_migrate),
        ActorKind("cpu_hog", "busy tasks computing in steps (foreground load), one pinned per CPU in turn",
                  False, {
                      "threads": Param(int, 1, "busy tasks", 1, 4096),
                      "chunk_ns": Param(int, 100_000, "compute step (ns): the preemption granularity", 1, 10**9),
                  }, _start_cpu_hog),
        ActorKind("thp_split", "THP splits: the deferred split queue (deferred_split_scan), then a random THP", False, {
                      "interval_ns": Param(int, 200_000, "mean time between splits (ns)", 1, 10**12),
                      "threads": Param(int, 1, "splitting threads", 1, 1024),
                  }, _start_thp_split),
    ]
}


# Every kind takes a ``nice`` (set_user_nice) for the tasks it starts; their forked children inherit it.
NICE_PARAM = Param(int, None, "nice of the actor's tasks, -20..19 (unset: 0, and the fair scheduler of "
                              "concurrency/sched.py stays off unless some actor sets one)", -20, 19)


def start_actor(world: World, kind: str, proc: Process | None, params: Params,
                regions: list[Region], kswapd_queue: WaitQueue | None) -> None:
    world.spawn_nice = param_int(params, "nice") if params.get("nice") is not None else None
    try:
        ACTORS[kind].start(world, proc, params, regions, kswapd_queue)
    finally:
        world.spawn_nice = None
