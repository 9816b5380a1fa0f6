"""The protected data's cache lines under a contended rmap lock: a writer that takes the lock on
another CPU than its previous owner pays ``bounce_ns`` inside the critical section
(``MmSystem.pull_locked_lines``); the same CPU again pays nothing."""

from __future__ import annotations

import dataclasses

from concurrency.engine import Engine
from mm.costs import CostModel
from mm.designs import design_class
from mm.system import MmSystem


def test_a_change_of_cpu_costs_one_bounce_inside_the_critical_section() -> None:
    costs = dataclasses.replace(CostModel.free(), bounce_ns=150)
    engine = Engine(2)
    system = MmSystem(engine, design_class("anon_vma"), costs=costs)
    lock = system.new_rwsem("anon_vma->rwsem", "anon_vma0->rwsem")
    held: list[tuple[str, int]] = []

    async def writer(name: str, start: int) -> None:
        await engine.delay(start)
        await lock.down_write()
        t0 = engine.now
        await system.pull_locked_lines(lock)
        held.append((name, engine.now - t0))
        lock.up_write()

    engine.spawn("a", writer, "a", 0, cpu=0)  # first ever: nothing to pull
    engine.spawn("b", writer, "b", 10, cpu=1)  # moved from cpu0
    engine.spawn("c", writer, "c", 1000, cpu=1)  # cpu1 again
    engine.spawn("d", writer, "d", 2000, cpu=0)  # moved back
    engine.run()
    assert held == [("a", 0), ("b", 150), ("c", 0), ("d", 150)]
