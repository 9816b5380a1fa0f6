"""Run a scenario under a design and produce its result record.

A run has three phases.  Set-up: every process's main thread maps its regions and faults them in
(``populate``, recorded as the operation ``populate``, not ``fault``); daemons already run, so
kswapd may reclaim.  The workload phase starts when the last process is populated and lasts
``duration_ns`` of virtual time: every process starts its actors, and everything loops while
``world.running``; throughput is counted over this phase.  Then everything winds down on its own:
actors finish their current operation and exit their processes, daemons return, RCU callbacks
fire.  Only then is the run complete and the end-of-run invariants are checked (nothing leaked,
mapcounts balance).  The event budget stops a runaway scenario; that is reported as a violation,
never hidden.

:func:`run_one` runs synchronously; :func:`run_one_async` runs inside trio (the command line's
``trio.run``), checkpointing, beside a progress task.  Both run whichever executor the scenario's
``run.executor`` names (concurrency/engine.py); the record does not depend on it.  ``log`` (an
:class:`concurrency.trace.EventLog`) receives the run's structlog event log.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from array import array
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.daemons import install_reclaim
from actors.process import exit_process, populate
from actors.world import Process, World
from concurrency import sched
from concurrency.engine import Deadlock, Engine, RunOutcome, SimulationError
from concurrency.executors import engine_class
from concurrency.instrument import Instrument
from concurrency.lockdep import OrderChecker
from concurrency.waitqueue import WaitQueue
from mm.costs import CostModel
from mm.designs import design_class
from mm.mmap import mmap_region
from mm.story import Story
from mm.system import MemoryConfig, MmSystem
from mm.types import LargeFolio
from records.result import PHASES, Invariants, JsonObject, Outcome, Phase, RunRecord, ScenarioInfo, json_object
from workloads.actor_kinds import start_actor
from workloads.lockorder import expected_order_for
from workloads.record import RESULTS_SCHEMA, latency_record, lock_records
from workloads.scenario import Scenario

if TYPE_CHECKING:
    from concurrency.trace import ChromeTracer, EventLog
    from workloads.executor import Outcome as TaskOutcome

__all__ = ["SETUP_OPS", "RunFailed", "check_mapcounts", "run_design_task", "run_one", "run_one_async",
           "run_scenario", "run_scenario_async", "run_scenario_in_processes"]

SETUP_OPS = ("populate",)  # operations of the set-up, before the workload phase


class RunFailed(RuntimeError):
    """The simulation itself failed (a task raised, a deadlock): a finding, not bad input.

    A deadlock still has a record (``record``: what the run did up to it, its lock-order findings
    among them, ``outcome.reason`` ``deadlock``), which ``rmapsim lockdep`` reports; else None."""

    record: JsonObject | None = None


def check_mapcounts(system: MmSystem) -> list[str]:
    """Every live folio's mapcount equals the page-table entries that map it (the oracle).

    The counts go into an array indexed by folio id (ids are dense): 8 bytes per folio ever
    allocated, where a dict would add about 70 MB to the peak of a million-folio run."""
    counted = array("q", bytes(8 * system.next_folio_id))
    pmds: dict[int, int] = {}  # PMD mappings per THP (folio_entire_mapcount)
    for mm in system.mms:
        if not mm.alive:
            continue
        for table in (mm.ptes, mm.pmds):
            for pte in table.values():
                if not pte.migration and pte.folio.fid >= 0:
                    counted[pte.folio.fid] += 1
        for pmd in mm.pmds.values():
            if not pmd.migration:
                pmds[pmd.folio.fid] = pmds.get(pmd.folio.fid, 0) + 1
    problems = []
    for fid, folio in system.folios.items():
        if counted[fid] != folio.mapcount:
            problems.append(f"folio {fid}: mapcount {folio.mapcount} but {counted[fid]} "
                            "page-table entries map it")
        elif isinstance(folio, LargeFolio) and pmds.get(fid, 0) != folio.entire_mapcount:
            problems.append(f"folio {fid}: entire_mapcount {folio.entire_mapcount} but {pmds.get(fid, 0)} "
                            "PMDs map it")
        if len(problems) >= 20:
            problems.append("... (more mapcount mismatches)")
            break
    folios = system.folios
    for fid, n in enumerate(counted):
        if n and fid not in folios:
            problems.append(f"folio {fid} is mapped but was freed")
            break
    return problems


# CPython's cyclic GC during a run: the default first threshold (700 allocations) runs a young
# collection every few simulated events and promotes the run's long-lived objects (folios, page-table
# entries, locks) into generations that full collections scan again and again, a cost that grows with
# the run.  Measured on fork-heavy (anon_vma): 8-10% of the run's CPU at 1x and 8x the duration, with
# almost nothing to collect (the model makes few reference cycles).  Raised thresholds keep collection
# (a run that makes cycles still frees them) at a fraction of the cost.
GC_THRESHOLDS = (50_000, 20, 1000)


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """Freeze what exists before the run (imports, the scenario: never garbage) and raise the GC
    thresholds while it runs; both restored afterwards.  No effect on results."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _snapshot(engine: Engine) -> tuple[int, dict[str, int], dict[str, int]]:
    """Now, the CPU time split so far and the lock wait so far (every class, both sides): the
    marks between which a phase's figures are differences."""
    wait = dict.fromkeys(("total_ns", "spinning_ns", "sleeping_ns"), 0)
    for cls in engine.lock_classes.values():
        for side in (cls.write, cls.read):
            wait["total_ns"] += side.wait.total_ns
            wait["spinning_ns"] += side.wait_spin_ns
            wait["sleeping_ns"] += side.wait_sleep_ns
    return engine.now, engine.cpu_time(), wait


def _phases(marks: list[tuple[int, dict[str, int], dict[str, int]] | None],
            end: tuple[int, dict[str, int], dict[str, int]]) -> dict[str, Phase]:
    """Set-up, workload and wind-down between the marks taken at the start of the run, the start
    and the end of the workload phase (None: not reached; the phase before it lasts to the end)."""
    reached = [m for m in marks if m is not None]
    edges = [*reached, end]
    edges += [end] * (len(PHASES) + 1 - len(edges))
    return {name: Phase(a[0], b[0], {k: b[1][k] - a[1][k] for k in a[1]}, {k: b[2][k] - a[2][k] for k in a[2]})
            for name, a, b in zip(PHASES, edges[:-1], edges[1:], strict=True)}


class _PhaseEdge:
    """The start or the end of the workload phase: tasks that wait for it sleep on a wait queue
    until it is reached, and pass straight through afterwards."""

    def __init__(self, world: World, name: str) -> None:
        self.queue = WaitQueue(world.engine, name)
        self.reached = False

    async def wait(self) -> None:
        if not self.reached:
            await self.queue.sleep()

    def reach(self) -> None:
        self.reached = True
        self.queue.wake_all()


def run_one(scenario: Scenario, design: str, *, seed: int | None = None, cpus: int | None = None,
            tracer: Instrument | None = None, story: Story | None = None,
            log: EventLog | None = None) -> dict[str, Any]:
    """One (scenario, design) run: returns its result record.  ``story`` records the race story
    of a victim (mm/story.py); it is the run's tracer, so ``tracer`` must then be None."""
    steps = _run_steps(scenario, design, seed=seed, cpus=cpus, tracer=tracer, story=story, log=log)
    engine, _ = next(steps)
    try:
        with gc_tuned():
            outcome = engine.run(max_events=scenario.max_events)
    except (SimulationError, Deadlock) as exc:
        _fail(steps, exc, log)
    return _finish(steps, outcome, log)


async def run_one_async(scenario: Scenario, design: str, *, seed: int | None = None, cpus: int | None = None,
                        tracer: Instrument | None = None, story: Story | None = None, log: EventLog | None = None,
                        watch: Callable[[Engine, World], None] | None = None) -> dict[str, Any]:
    """:func:`run_one` inside trio: the run checkpoints into trio (cancellable; Ctrl-C arrives
    between two events).  ``watch(engine, world)`` is called once the run is built (progress)."""
    steps = _run_steps(scenario, design, seed=seed, cpus=cpus, tracer=tracer, story=story, log=log)
    engine, world = next(steps)
    if watch is not None:
        watch(engine, world)
    try:
        with gc_tuned():
            outcome = await engine.run_async(max_events=scenario.max_events)
    except (SimulationError, Deadlock) as exc:
        _fail(steps, exc, log)
    return _finish(steps, outcome, log)


_Steps = Generator[tuple[Engine, World], RunOutcome, JsonObject]


def _fail(steps: _Steps, exc: BaseException, log: EventLog | None) -> None:
    """The simulation failed: :func:`_run_steps` turns it into :class:`RunFailed` (raised here)."""
    try:
        steps.throw(exc)
    except RunFailed as failed:
        if log is not None:
            log.run_failed(failed)
        raise
    raise RuntimeError("_run_steps went on after a failed run")  # pragma: no cover


def _finish(steps: _Steps, outcome: RunOutcome, log: EventLog | None) -> JsonObject:
    try:
        steps.send(outcome)
    except StopIteration as stop:
        record: JsonObject = stop.value
        if log is not None:
            log.run_end(record)
        return record
    raise RuntimeError("_run_steps yielded twice")  # pragma: no cover


def _run_steps(scenario: Scenario, design: str, *, seed: int | None, cpus: int | None, tracer: Instrument | None,
               story: Story | None, log: EventLog | None) -> _Steps:
    """Build the run, yield its engine and world, receive the outcome of running it (``Engine.run`` or
    ``Engine.run_async``: the caller's choice) and return the record; a failed run is thrown in
    and comes out as :class:`RunFailed`."""
    seed = scenario.seed if seed is None else seed
    ncpus = scenario.cpus if cpus is None else cpus
    costs = CostModel().with_overrides(scenario.costs)
    engine = engine_class(scenario.executor)(ncpus, seed, ctx_switch_ns=costs.ctx_switch_ns,
                                             instance_stats=scenario.lock_instance_stats,
                                             balance=scenario.balance, perturb=scenario.perturb)
    checker: OrderChecker | None = None
    if scenario.lockdep:
        checker = engine.add_instrument(OrderChecker(expected_order_for(scenario)))
    if story is not None:
        if tracer is not None:
            raise ValueError("a run takes a tracer or a story, not both")
        story.bind(engine)
        tracer = story
    if log is not None:
        log.begin_run(engine, scenario=scenario.name, design=design, seed=seed, cpus=ncpus,
                      executor=scenario.executor, perturb=scenario.perturb.describe())
        if tracer is None:
            tracer = log  # else the caller chained it (ChromeTracer(event_log=...)), or a story listens
    if tracer is not None:
        engine.add_instrument(tracer)
    memory = MemoryConfig(scenario.total_pages, scenario.wmark_min, scenario.wmark_low, scenario.wmark_high)
    system = MmSystem(engine, design_class(design), costs=costs, switches=scenario.switches.get(design),
                      rwsem_opts=scenario.rwsem, mutex_opts=scenario.mutex, memory=memory,
                      folio_lock_unfairness=scenario.folio_lock.get("unfairness"),
                      cost_variability=scenario.cost_variability)
    system.reclaim_trylock = scenario.reclaim_trylock
    system.story = story
    world = World(engine, system, deadline_ns=None)  # set when the workload phase starts
    if any(actor.params.get("nice") is not None for actor in scenario.actors):
        sched.enable(engine)  # task priorities: the fair class decides who runs (concurrency/sched.py)
    deadline = _PhaseEdge(world, "end of workload phase")
    kswapd_queue: WaitQueue | None = None
    if any(a.kind == "kswapd" for a in scenario.actors) or scenario.wmark_min:
        kswapd_queue = install_reclaim(world)
    mapcount_problems: list[str] = []

    # The marks between the phases: the run's start, the workload's start and its end (the deadline).
    marks: list[tuple[int, dict[str, int], dict[str, int]] | None] = [_snapshot(engine), None, None]

    def at_deadline() -> None:
        marks[2] = _snapshot(engine)
        if log is not None:
            log.phase("wind_down")
        mapcount_problems.extend(check_mapcounts(system))
        deadline.reach()
        if kswapd_queue is not None:
            kswapd_queue.wake_all()

    populating = len(scenario.processes)  # main threads still in set-up
    workload_start = _PhaseEdge(world, "start of workload phase")

    def start_workload() -> None:
        """The last process is populated: the workload phase starts now."""
        world.workload_start_ns = engine.now
        marks[1] = _snapshot(engine)
        if log is not None:
            log.phase("workload")
        if scenario.duration_ns is not None:
            world.deadline_ns = engine.now + scenario.duration_ns
            engine.call_at(world.deadline_ns, at_deadline)
        workload_start.reach()
        for actor in scenario.actors:
            if actor.process is None and actor.kind != "kswapd":
                start_actor(world, actor.kind, None, actor.params, [], kswapd_queue)

    async def main_thread(proc: Process, spec_index: int) -> None:
        nonlocal populating
        spec = scenario.processes[spec_index]
        if spec.populate:
            for region in spec.regions:
                await populate(world, proc, region, write=spec.populate_write)
        populating -= 1
        if populating == 0:
            start_workload()
        else:
            await workload_start.wait()
        for actor in scenario.actors:
            if actor.process == spec.name:
                start_actor(world, actor.kind, proc, actor.params, list(spec.regions), kswapd_queue)
        await deadline.wait()
        await exit_process(world, proc)

    async def init() -> None:
        for i, spec in enumerate(scenario.processes):
            proc = await world.new_process(spec.name)
            for region in spec.regions:
                await mmap_region(system, proc.mm, region.start, region.pages, thp=region.thp)
            world.spawn(proc, "main", main_thread, proc, i)
        for actor in scenario.actors:
            if actor.process is None and actor.kind == "kswapd":
                start_actor(world, actor.kind, None, actor.params, [], kswapd_queue)  # reclaims during set-up too
        if scenario.setup is not None:
            await scenario.setup(world)
        if not scenario.processes:
            start_workload()

    engine.spawn("init", init, cpu=0)
    if log is not None:
        log.phase("setup")
    deadlock: Deadlock | None = None
    try:
        outcome = yield engine, world  # the caller runs it (run_one: Engine.run; run_one_async: Engine.run_async)
    except SimulationError as exc:
        raise RunFailed(f"{scenario.name} under {design} (seed {seed}): {exc}") from exc
    except Deadlock as exc:  # recorded as far as it went (its lockdep report), then raised below
        deadlock = exc
        outcome = RunOutcome("deadlock", engine.now, engine.events,
                             [task.name for task in engine.tasks if not task.done])

    violations = list(mapcount_problems)
    if system.corruption:
        violations.append(f"{len(system.corruption)} corrupted mapping(s), first: {system.corruption[0]}")
    completed = outcome.reason == "completed"
    if not completed:
        violations.append(f"run stopped by {outcome.reason} at t={outcome.end_ns} ns with "
                          f"{len(outcome.tasks_left)} task(s) left; end-of-run checks skipped")
    else:
        violations.extend(check_mapcounts(system))
        if system.folios:
            violations.append(f"{len(system.folios)} folio(s) still allocated after every process exited")
        if system.pgtables:
            violations.append(f"{system.pgtables} page table(s) still allocated after every process exited")
        violations.extend(system.design.check_invariants(final=True))
    if engine.rcu_sleeps:
        violations.append(f"{len(engine.rcu_sleeps)} sleep(s) inside an RCU read-side section, first: "
                          f"{engine.rcu_sleeps[0]}")

    duration = scenario.duration_ns or outcome.end_ns or 1
    operations = {op: latency_record(h) for op, h in sorted(world.latency.items())}
    # Throughput is the workload phase's: the set-up's faults have latencies but no rate.
    workload_ops = {op: rec for op, rec in operations.items() if op not in SETUP_OPS}
    throughput: dict[str, int | float] = {op: round(rec.count * 1e9 / duration, 3) for op, rec in workload_ops.items()}
    lockdep: JsonObject = {"findings": [], "edges": [], "order_violations": []}
    if checker is not None:
        order_violations = checker.order_violations()
        lockdep = {
            "findings": [f.render() for f in checker.findings],
            "edges": [list(e) for e in checker.edges()],
            "order_violations": [v.render() for v in order_violations],
            **checker.graph_record(),
        }
        order = checker.expected
        if order is not None:
            lockdep["order"] = {"source": order.source, "file": order.origin,
                                "violations": [v.to_dict() for v in order_violations],
                                "declared_at": dict(sorted(order.declared_at.items())),
                                "write_only": [c for c in sorted(order.write_only)]}
    params = scenario.params()
    params.update({"cpus": ncpus, "seed": seed, "costs": json_object(costs.to_dict()), "tasks": len(engine.tasks)})
    if deadlock is not None:  # the finding comes first among the run's violations
        violations.insert(0, str(deadlock))
    record = RunRecord(
        scenario=scenario.name,
        design=design,
        switches=dict(sorted(system.design.switches.items())),
        params=params,
        outcome=Outcome(outcome.reason, outcome.end_ns, outcome.events, world.workload_start_ns,
                        tuple(list(p) for p in engine.injected)),
        operations=operations,
        throughput=throughput,
        total_ops=sum(rec.count for rec in workload_ops.values()),
        locks=tuple(lock_records(engine)),
        lock_instances=tuple(stats.to_dict() for stats in engine.lock_instances
                             if stats.write.acquisitions or stats.read.acquisitions),
        walks=json_object({name: stats.to_dict() for name, stats in sorted(system.walks.items())}),
        cpu_time=engine.cpu_time(),
        phases=_phases(marks, _snapshot(engine)),
        context_switches=engine.context_switches,
        migrations=engine.migrations,
        memory=dict(sorted(system.metadata().items())),
        counters=dict(sorted(system.ops.counts.items())),
        design_stats=dict(sorted(system.design.stats().items())),
        invariants=Invariants(not violations, tuple(violations),
                              tuple(json_object(c) for c in system.corruption_events),
                              tuple(json_object(m) for m in system.misses)),
        lockdep=lockdep,
        rcu=system.rcu.to_dict(),
    ).to_json()
    if deadlock is not None:
        failed = RunFailed(f"{scenario.name} under {design} (seed {seed}): {deadlock}")
        failed.record = record
        raise failed from deadlock
    return record


def run_scenario(scenario: Scenario, *, designs: list[str] | None = None, seed: int | None = None,
                 cpus: int | None = None, trace_dir: Path | None = None,
                 log: EventLog | None = None) -> dict[str, Any]:
    """Every design of the scenario (or ``designs``): the result.json document."""
    runs = []
    for design in designs or list(scenario.designs):
        tracer = _tracer(trace_dir, log)
        runs.append(run_one(scenario, design, seed=seed, cpus=cpus, tracer=tracer, log=log))
        if tracer is not None and trace_dir is not None:
            tracer.dump(trace_dir / f"trace-{design}.json")
    return _results(scenario, runs)


async def run_scenario_async(scenario: Scenario, *, designs: list[str] | None = None, seed: int | None = None,
                             cpus: int | None = None, trace_dir: Path | None = None, log: EventLog | None = None,
                             watch: Callable[[int, Engine, World], None] | None = None) -> dict[str, Any]:
    """:func:`run_scenario` inside trio; ``watch(i, engine, world)`` as design ``i``'s run starts."""
    runs = []
    for i, design in enumerate(designs or list(scenario.designs)):
        tracer = _tracer(trace_dir, log)
        watch_one = None if watch is None else functools.partial(watch, i)
        runs.append(await run_one_async(scenario, design, seed=seed, cpus=cpus, tracer=tracer, log=log,
                                        watch=watch_one))
        if tracer is not None and trace_dir is not None:
            tracer.dump(trace_dir / f"trace-{design}.json")
    return _results(scenario, runs)


def run_design_task(spec: tuple[str, Mapping[str, object], str, str | None]) -> tuple[bool, JsonObject | str]:
    """One design of a run, in a worker process (:func:`run_scenario_in_processes`): the scenario
    is loaded again from its source and overrides (sources travel, never live objects).  Returns
    ``(True, record)``, or ``(False, message)`` when the run failed (:class:`RunFailed`)."""
    from workloads.scenario import load_scenario

    source, overrides, design, trace_dir = spec
    scenario = load_scenario(source, overrides)
    tracer = _tracer(None if trace_dir is None else Path(trace_dir), None)
    try:
        record = run_one(scenario, design, tracer=tracer)
    except RunFailed as exc:
        return False, str(exc)
    if tracer is not None and trace_dir is not None:
        tracer.dump(Path(trace_dir) / f"trace-{design}.json")
    return True, record


async def run_scenario_in_processes(scenario: Scenario, source: Path, overrides: Mapping[str, object], *,
                                    designs: list[str], jobs: int, trace_dir: Path | None = None,
                                    on_done: Callable[[str], None] | None = None,
                                    on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """:func:`run_scenario` with each design in its own forked process (up to ``jobs`` at a time),
    awaited as trio code (workloads/trio_pool.py).  Each run is the same deterministic function of
    (scenario, design, seed) as in one process, so the document is byte-identical to the serial
    one.  A failed run raises :class:`RunFailed` as the serial path would: the first failing design
    in ``designs`` order.  ``on_done(design)`` is called as each design finishes (progress),
    ``on_start()`` once the worker processes are forked."""
    from workloads.trio_pool import map_in_processes

    specs = [(str(source), overrides, design, None if trace_dir is None else str(trace_dir)) for design in designs]

    def done(i: int, outcome: TaskOutcome[tuple[bool, JsonObject | str]]) -> None:
        if on_done is not None:
            on_done(designs[i])

    outcomes = await map_in_processes(run_design_task, specs, jobs=jobs, on_result=done, on_start=on_start)
    runs: list[JsonObject] = []
    for design, outcome in zip(designs, outcomes, strict=True):
        if outcome.value is None:
            raise RuntimeError(f"{scenario.name} under {design}: {outcome.error}")
        _, value = outcome.value
        if isinstance(value, str):  # (False, message): the run failed
            raise RunFailed(value)
        runs.append(value)
    return _results(scenario, runs)


def _tracer(trace_dir: Path | None, log: EventLog | None) -> ChromeTracer | None:
    if trace_dir is None:
        return None
    from concurrency.trace import ChromeTracer

    return ChromeTracer(event_log=log)


def _results(scenario: Scenario, runs: list[JsonObject]) -> JsonObject:
    return {
        "schema": RESULTS_SCHEMA,
        "scenario": ScenarioInfo(scenario.name, scenario.description, scenario.mirrors,
                                 Path(scenario.source).name).to_json(),
        "runs": [*runs],
    }
