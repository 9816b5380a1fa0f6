"""The engine's load balancing (``Engine(balance=True)``): a woken task whose CPU is busy runs on an
idle CPU (``select_idle_sibling``), a CPU going idle pulls a queued task (``newidle_balance``), and
tasks spawned on an explicit CPU never move."""

from __future__ import annotations

from typing import Any

import pytest

from concurrency.engine import Engine


class Gate:
    name = "gate"

    def holders(self) -> list[Any]:
        return []


def _wake_onto_busy_cpu(balance: bool, *, pinned: bool = False) -> tuple[Engine, list[tuple[str, int, int]]]:
    """cpu0 runs H from 100 to 5100; W (also on cpu0) sleeps at once and is woken at 1000 by R, which
    is still running on cpu1 at that moment: cpu2 is the idle one."""
    engine = Engine(3, ctx_switch_ns=100, balance=balance)
    gate = Gate()
    log: list[tuple[str, int, int]] = []

    async def sleeper() -> None:
        await engine.block(gate)
        assert engine.current is not None
        log.append(("W", engine.now, engine.current.cpu.index))
        await engine.delay(100)

    async def hog() -> None:
        await engine.delay(5000)
        log.append(("H", engine.now, 0))

    async def waker() -> None:
        await engine.delay(1000)
        engine.wake(w)

    w = engine.spawn("W", sleeper, cpu=0 if pinned else None)  # tid 0: cpu0 when not pinned too
    engine.spawn("H", hog, cpu=0)
    engine.spawn("R", waker, cpu=1)
    engine.run()
    return engine, log


def test_a_woken_task_runs_on_an_idle_cpu_instead_of_queueing_behind_a_busy_one() -> None:
    engine, log = _wake_onto_busy_cpu(True)
    assert ("W", 1100, 2) in log  # woken onto the idle cpu2 (+100 switch)
    assert engine.migrations == 1
    total = engine.cpu_time()
    assert sum(total.values()) == 3 * engine.now


def test_without_balancing_the_woken_task_waits_for_its_cpu() -> None:
    engine, log = _wake_onto_busy_cpu(False)
    assert ("W", 5200, 0) in log  # after H, plus the switch
    assert engine.migrations == 0


def test_a_task_spawned_on_an_explicit_cpu_is_never_moved() -> None:
    engine, log = _wake_onto_busy_cpu(True, pinned=True)
    assert ("W", 5200, 0) in log
    assert engine.migrations == 0


@pytest.mark.parametrize("balance", [False, True])
def test_newidle_pull_moves_the_waiting_task(balance: bool) -> None:
    engine = Engine(2, ctx_switch_ns=100, balance=balance)
    ran: dict[str, tuple[int, int]] = {}

    async def worker(name: str, work: int) -> None:
        assert engine.current is not None
        ran[name] = (engine.now, engine.current.cpu.index)
        await engine.delay(work)

    engine.spawn("A", worker, "A", 1000, cpu=0)
    engine.spawn("S", worker, "S", 300, cpu=1)
    engine.spawn("B", worker, "B", 1000)  # tid 2 -> cpu0: both busy, queued behind A
    engine.run()
    if balance:
        assert ran["B"] == (400, 1)  # cpu1 went idle at 300 and pulled B (+100 switch)
        assert engine.migrations == 1
    else:
        assert ran["B"] == (1100, 0)
        assert engine.migrations == 0
