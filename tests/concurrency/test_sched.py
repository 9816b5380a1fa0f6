"""Task priorities (concurrency/sched.py): CFS weights, tick preemption, wake-up preemption."""

from __future__ import annotations

from typing import Any

import pytest

from concurrency.engine import Engine
from concurrency.mutex import Mutex
from concurrency.sched import SCHED_PRIO_TO_WEIGHT, enable, nice_of, set_user_nice

US = 1_000
MS = 1_000_000


def _holder_behind_a_hog(holder_nice: int) -> dict[str, int]:
    """A lock holder sharing CPU 0 with a busy nice-0 task; a waiter on CPU 1.  The holder works
    6 ms under the lock, so its turn crosses the 4 ms scheduler tick (HZ=250)."""
    engine = Engine(2, ctx_switch_ns=2 * US)
    lock = Mutex(engine, "m")
    out: dict[str, int] = {}
    stop = [False]

    async def hog() -> None:
        while not stop[0]:
            await engine.delay(10 * US)

    async def holder() -> None:
        await engine.delay(1 * US)
        await lock.lock()
        for _ in range(600):
            await engine.delay(10 * US)
        lock.unlock()

    async def waiter() -> None:
        await engine.delay(50 * US)
        start = engine.now
        await lock.lock()
        out["wait"] = engine.now - start
        lock.unlock()
        stop[0] = True

    enable(engine)
    task = engine.spawn("holder", holder, cpu=0)
    set_user_nice(engine, task, holder_nice)
    engine.spawn("hog", hog, cpu=0)
    engine.spawn("waiter", waiter, cpu=1)
    engine.run()
    return out


def test_a_low_priority_holder_preempted_at_a_tick_waits_for_the_busy_task_to_catch_up() -> None:
    """``check_preempt_tick``: at nice 19 (weight 15) the holder's slice beside a nice-0 task
    (weight 1024) is 12 ms * 15 / 1039, so the 4 ms tick preempts it; its ``vruntime`` then leads
    by 4 ms * 1024 / 15 = 273 ms, which the nice-0 task runs before the holder is picked again.
    At nice 0 it keeps the CPU to the end of its 6 ms."""
    fair = _holder_behind_a_hog(0)["wait"]
    low = _holder_behind_a_hog(19)["wait"]
    assert 5 * MS < fair < 7 * MS
    assert 250 * MS < low < 300 * MS
    assert low > 10 * fair


def _light_task_run(nice: int) -> dict[str, int]:
    """CPU 0 of two (ticks every 4 ms; min granularity 0.75 ms * 2 = 1.5 ms): a nice-0 task A
    runs 3 ms and sleeps, so B is picked mid-tick at 3 ms beside a runnable nice-0 task D.  No
    wake-up happens on CPU 0 after that: only ``check_preempt_tick`` ends B's run."""
    engine = Engine(2, ctx_switch_ns=0)
    out: dict[str, int] = {}
    stop = [False]

    async def a() -> None:
        await engine.delay(3 * MS)
        await engine.sleep(100 * MS)

    async def b() -> None:
        out["b_from"] = engine.now
        while not stop[0]:
            await engine.delay(10 * US)

    async def d() -> None:
        out["d_from"] = engine.now
        stop[0] = True

    enable(engine)
    engine.spawn("a", a, cpu=0)
    # D first: START_DEBIT places each new task one vslice past min_vruntime, and B's (taken at
    # nice 0, beside A and D) is the smaller, so B is the leftmost when A sleeps.
    engine.spawn("d", d, cpu=0)
    task = engine.spawn("b", b, cpu=0)
    set_user_nice(engine, task, nice)
    engine.run()
    return out


def test_a_light_task_runs_at_least_the_minimum_granularity_before_a_tick_preempts_it() -> None:
    """``sched_slice`` with BASE_SLICE (v5.13+): a nice-19 task's share beside a nice-0 task,
    12 ms * 15 / 1039 = 0.17 ms, is raised to the minimum granularity (1.5 ms here), and
    ``check_preempt_tick`` preempts only once ``delta_exec`` exceeds it.  B, picked at 3 ms, has
    run 1 ms at the 4 ms tick and keeps its CPU to the 8 ms tick (5 ms); without BASE_SLICE the
    4 ms tick would have ended its turn.  At nice 0 its slice (half the 12 ms period) also
    outlasts the 8 ms tick."""
    low = _light_task_run(19)
    assert low["b_from"] == 3 * MS
    assert 8 * MS <= low["d_from"] < 8 * MS + 20 * US
    fair = _light_task_run(0)
    assert fair["d_from"] >= 9 * MS


def _wake_latency(nice: int) -> int:
    """A task sleeping 20 ms wakes on a CPU a nice-0 task keeps busy: how long until it runs."""
    engine = Engine(1, ctx_switch_ns=0)
    out: dict[str, int] = {}
    stop = [False]

    async def hog() -> None:
        while not stop[0]:
            await engine.delay(10 * US)

    async def sleeper() -> None:
        start = engine.now
        await engine.sleep(20 * MS)
        out["latency"] = engine.now - start - 20 * MS
        stop[0] = True

    enable(engine)
    engine.spawn("hog", hog)
    task = engine.spawn("sleeper", sleeper)
    set_user_nice(engine, task, nice)
    engine.run()
    return out["latency"]


def test_wakeup_preemption_lets_a_nice_0_sleeper_in_at_once_but_not_a_nice_19_one() -> None:
    """``place_entity`` puts the sleeper half the latency (3 ms on one CPU) behind the running task;
    ``check_preempt_wakeup`` preempts when that lead exceeds the wake-up granularity scaled to
    the woken task's weight (one CPU: 1 ms at nice 0, 68 ms at nice 19, which waits for the tick
    and the busy task's slice instead)."""
    assert _wake_latency(0) <= 10 * US  # the busy task's current 10 us step
    assert _wake_latency(19) > 1 * MS


def test_weights_and_nice() -> None:
    assert SCHED_PRIO_TO_WEIGHT[20] == 1024 and SCHED_PRIO_TO_WEIGHT[0] == 88761 and SCHED_PRIO_TO_WEIGHT[39] == 15
    engine = Engine(1)

    async def idle() -> None:
        return None

    task = engine.spawn("t", idle)
    assert nice_of(task) == 0 and engine.sched is None
    set_user_nice(engine, task, 5)
    assert nice_of(task) == 5 and task.se is not None and task.se.weight == 335 and engine.sched is not None
    with pytest.raises(ValueError, match="nice"):
        set_user_nice(engine, task, 20)
    engine.run()


def _family_behind_hogs(nice: int) -> dict[str, Any]:
    from workloads.runner import run_one
    from workloads.scenario import scenario_from_data

    scenario = scenario_from_data({
        "name": "nice", "run": {"cpus": 2, "duration_ns": 30 * MS, "designs": ["anon_vma"]},
        "process": [{"name": "app", "regions": [{"start": 0, "pages": 64}]}],
        "actor": [{"kind": "fork_exit", "process": "app", "interval_ns": 20_000, "child_lifetime_ns": 100_000,
                   "nice": nice},
                  {"kind": "cpu_hog", "threads": 2, "nice": 0}],
    })
    return run_one(scenario, "anon_vma")


def test_an_actors_nice_reaches_its_tasks_and_their_forked_children() -> None:
    """A background app (nice 19) forking beside two busy nice-0 tasks gets a small share of the
    CPUs (weight 15 against 1024 each, forked children inheriting the nice: sched_fork): a few
    forks where at nice 0 it shares the CPUs evenly and forks every ~20 us of its time."""
    fair = _family_behind_hogs(0)
    low = _family_behind_hogs(19)
    assert fair["operations"]["fork"]["count"] > 20 * low["operations"]["fork"]["count"] > 0
