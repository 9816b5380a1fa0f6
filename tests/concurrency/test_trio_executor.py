"""The trio executor (concurrency/trio_executor.py): each simulated CPU a trio task, control passed
between them in the heap's order, byte-identical to the stepper.

The first test is the CI check the issue asks for: every built-in scenario, both of its designs, at
a small size, plain and perturbed, gives the same result.json bytes under both executors.  The rest
are trio tests (pytest-trio, ``trio_mode``): the CPUs really are trio tasks, runs are cancellable
whatever the executor is doing, failures come out as the stepper raises them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import trio

from concurrency.engine import Deadlock, Engine, SimulationError
from concurrency.executors import engine_class
from concurrency.mutex import Mutex
from concurrency.perturb import Perturbation
from concurrency.spinlock import QSpinlock
from rmapsim.bench import draws, run_engine
from rmapsim.cli import builtin_scenarios
from workloads.record import dump_json
from workloads.runner import RunFailed, run_one
from workloads.scenario import load_scenario

SMALL = {"run.duration_ns": 300_000}

# Perturbed runs: with shuffle the stepper's continue-without-switch shortcut is part of the schedule
# (the trio executor keeps it there); without shuffle the trio executor runs without the shortcut
# and must still agree, jitter and injected preemptions included.
PERTURBATIONS = {
    "shuffle+jitter+preempt": Perturbation(True, 0.2, ((40_000, 20_000), (150_000, 3_000), (260_000, 500_000))),
    "jitter+preempt": Perturbation(False, 0.3, ((10_000, 7_000), (200_000, 80_000))),
}


def _result(scenario: Any, design: str, executor: str) -> str:
    """The run's result.json record, or how it failed: the executors must agree on either."""
    try:
        return dump_json(run_one(dataclasses.replace(scenario, executor=executor), design))
    except RunFailed as exc:
        return f"RunFailed: {exc}"


@pytest.mark.long
@pytest.mark.parametrize("name", sorted(builtin_scenarios()))
def test_every_builtin_scenario_is_byte_identical_under_the_trio_executor(name: str) -> None:
    base = load_scenario(builtin_scenarios()[name], SMALL)
    assert {"anon_vma", "cow_context"} <= set(base.designs)  # both default designs (and any other listed)
    cases = [("seed 1", base), ("seed 2", dataclasses.replace(base, seed=2))]
    cases += [(label, dataclasses.replace(base, perturb=p)) for label, p in PERTURBATIONS.items()]
    for label, scenario in cases:
        for design in scenario.designs:
            stepper = _result(scenario, design, "stepper")
            assert stepper == _result(scenario, design, "trio"), f"{name} {design} ({label}): the executors disagree"
            assert '"executor"' not in stepper  # the record does not say which executor ran it


def test_charged_wake_ups_and_the_wait_lock_agree_under_both_executors() -> None:
    """h5-exim charges the waker (Engine.charge: owed CPU time paid at its next step or by its CPU
    before the next dispatch) and runs 3.10's wait_lock: the executors must still agree."""
    from workloads.validate import SCENARIO_DIR

    base = load_scenario(SCENARIO_DIR / "h5-exim.toml", {"run.duration_ns": 200_000, "run.cpus": 8,
                                                          "switches.anon_vma.rmap_lock": "rwsem"})
    assert base.costs["wakeup_ns"] and base.rwsem["wait_lock"] and not base.rwsem["wake_q"]
    cases = [("plain", base), *((k, dataclasses.replace(base, perturb=p)) for k, p in PERTURBATIONS.items())]
    for label, scenario in cases:
        stepper = _result(scenario, "anon_vma", "stepper")
        assert '"wait_lock_sections"' in stepper, label
        assert stepper == _result(scenario, "anon_vma", "trio"), f"h5-exim ({label}): the executors disagree"


def test_the_executor_is_a_scenario_key_not_a_result() -> None:
    path = builtin_scenarios()["fork-heavy"]
    assert load_scenario(path).executor == "stepper"
    assert load_scenario(path, {"run.executor": "trio"}).executor == "trio"
    from workloads.scenario import ScenarioError

    with pytest.raises(ScenarioError, match='"fibers" not allowed; allowed: "stepper", "trio"'):
        load_scenario(path, {"run.executor": "fibers"})
    with pytest.raises(ValueError, match="executor 'fibers'"):
        engine_class("fibers")


def test_benchmark_model_agrees_under_both_executors() -> None:
    inputs = draws(tasks=8, iterations=60)
    assert run_engine(inputs, executor="trio") == run_engine(inputs)


def _workers(engine: Engine, seen: dict[str, set[Any]] | None = None) -> list[tuple[int, str]]:
    """Six tasks on three CPUs fighting over a mutex and a spinlock; the log of who got what when."""
    m = Mutex(engine, "M")
    s = QSpinlock(engine, "S")
    log: list[tuple[int, str]] = []

    async def worker() -> None:
        task = engine.current
        assert task is not None
        for _ in range(60):
            await engine.delay(task.rng.randrange(1, 2000))
            if seen is not None:
                seen.setdefault(f"cpu{task.cpu.index}", set()).add(trio.lowlevel.current_task())
            lock = m if task.rng.random() < 0.5 else s
            await lock.lock()
            log.append((engine.now, task.name))
            await engine.delay(task.rng.randrange(1, 500))
            lock.unlock()

    for i in range(6):
        engine.spawn(f"w{i}", worker)
    return log


async def test_each_simulated_cpu_is_a_trio_task() -> None:
    engine = engine_class("trio")(3, seed=11, ctx_switch_ns=500)
    seen: dict[str, set[Any]] = {}
    log = _workers(engine, seen)
    outcome = await engine.run_async()
    assert outcome.reason == "completed"
    # Model code runs inside the trio task of the CPU its simulated task is on: one per CPU.
    assert set(seen) == {"cpu0", "cpu1", "cpu2"}
    assert all(len(tasks) == 1 for tasks in seen.values())
    assert len(set.union(*seen.values())) == 3
    assert all("cpu_main" in t.name for t in set.union(*seen.values()))  # compiled: a repr, no qualname
    assert engine.handoffs > 100  # control went between the CPU tasks through trio's scheduler

    reference = Engine(3, seed=11, ctx_switch_ns=500)
    expected = _workers(reference)
    reference.run()
    assert log == expected and outcome.end_ns == reference.now and outcome.events == reference.events
    assert engine.cpu_time() == reference.cpu_time()


async def test_a_synchronous_run_inside_trio_gets_a_thread_of_its_own() -> None:
    # rmapsim validate or an in-process explore job call Engine.run() inside the CLI's trio.run.
    engine = engine_class("trio")(3, seed=5)
    log = _workers(engine)
    assert engine.run().reason == "completed"
    reference = Engine(3, seed=5)
    expected = _workers(reference)
    reference.run()
    assert log == expected


@pytest.mark.parametrize("ncpus", [1, 4])
async def test_a_trio_executor_run_is_cancellable(ncpus: int) -> None:
    engine = engine_class("trio")(ncpus, checkpoint_every=100)
    closed: list[str] = []

    async def forever() -> None:
        try:
            while True:
                await engine.delay(10)
        finally:
            closed.append("x")

    for i in range(ncpus):
        engine.spawn(f"loop{i}", forever)
    with trio.move_on_after(0.05) as scope:
        await engine.run_async()
    assert scope.cancelled_caught
    assert engine.now > 0
    assert len(closed) == ncpus  # every simulated task was unwound (abandoned), none left running


async def test_cancelling_at_any_moment_never_hands_the_baton_to_a_finished_task() -> None:
    # Cancellation can land while a CPU task is runnable with an event handed to it: it must stop,
    # not pass the baton to a CPU task that was already cancelled.
    for k in range(25):
        engine = engine_class("trio")(4, seed=k)
        _workers(engine)
        with trio.move_on_after(0.0005 * k) as scope:
            await engine.run_async()
        assert scope.cancelled_caught or engine.outcome.reason == "completed"


async def test_cancelling_while_the_cpu_tasks_start_never_hands_the_baton_to_a_cancelled_task() -> None:
    # A cancellation that lands while the driver is starting the CPU tasks aborts the parked ones
    # at once, but reaches the driver only at its next checkpoint (``nursery.start`` returns without
    # one): the driver must not then hand CPU 0 the first event (trio's "task._next_send_fn is None"
    # assertion).  A sibling cancels after n scheduler passes, so over the n the cancellation lands
    # at every step of the start-up.
    for n in range(40):
        engine = engine_class("trio")(4, seed=n)
        _workers(engine)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                async def cancel_after(passes: int) -> None:
                    for _ in range(passes):
                        await trio.lowlevel.checkpoint()
                    scope.cancel()

                nursery.start_soon(cancel_after, n // 2)
                await engine.run_async()
        assert scope.cancelled_caught or engine.outcome.reason == "completed"


async def test_limits_match_the_stepper() -> None:
    async def forever(engine: Engine) -> None:
        while True:
            await engine.delay(100)

    for kw in ({"until_ns": 10_050}, {"max_events": 501}):
        runs = []
        for executor in ("stepper", "trio"):
            engine = engine_class(executor)(2)
            engine.spawn("a", forever, engine)
            engine.spawn("b", forever, engine)
            runs.append(await engine.run_async(**kw))
        assert runs[0] == runs[1]
        assert runs[0].reason in ("time_limit", "event_budget") and runs[0].tasks_left == ["a", "b"]


async def test_failures_come_out_as_the_stepper_raises_them() -> None:
    engine = engine_class("trio")(2)
    a = Mutex(engine, "A", spin=False)
    b = Mutex(engine, "B", spin=False)

    async def ab() -> None:
        await a.lock()
        await engine.delay(10)
        await b.lock()

    async def ba() -> None:
        await b.lock()
        await engine.delay(10)
        await a.lock()

    engine.spawn("t1", ab)
    engine.spawn("t2", ba)
    with pytest.raises(Deadlock, match="wait-for cycle: t1 -> t2 -> t1"):
        await engine.run_async()

    engine2 = engine_class("trio")(2)

    async def boom() -> None:
        await engine2.delay(1234)
        raise ValueError("bad state")

    async def idle() -> None:
        await engine2.delay(99_999)

    engine2.spawn("idle", idle)
    engine2.spawn("kswapd0", boom)
    with pytest.raises(SimulationError, match=r"'kswapd0' \(cpu 1\) raised ValueError at t=1234 ns: bad state"):
        await engine2.run_async()


async def test_keyboard_interrupt_in_model_code_is_never_a_task_failure() -> None:
    async def interrupted(engine: Engine) -> None:
        await engine.delay(5)
        raise KeyboardInterrupt

    for executor in ("stepper", "trio"):
        engine = engine_class(executor)(1)
        engine.spawn("t", interrupted, engine)
        with pytest.raises(KeyboardInterrupt):
            engine.run()
