"""Seeded per-operation cost variability (mm/cost_spread.py): medians kept, floors held, draws
from the running task's own seeded generator, and a switch that gives the constants back."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from concurrency.engine import Engine
from mm.cost_spread import SPREADS, CostSpread
from mm.costs import CostModel
from workloads.runner import run_one
from workloads.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "workloads" / "scenarios"


def draws(seed: int, task: str, name: str, n: int) -> list[int]:
    """``n`` reads of cost ``name`` inside the task ``task`` of a run seeded ``seed``."""
    engine = Engine(1, seed=seed)
    spread = CostSpread(engine, CostModel(), True)
    out: list[int] = []

    async def reader() -> None:
        out.extend(spread.cost(name) for _ in range(n))

    engine.spawn(task, reader)
    engine.run()
    return out


def test_every_spread_names_a_cost_and_says_its_source() -> None:
    fields = set(CostModel().to_dict())
    for name, (floor, sigma, source) in SPREADS.items():
        assert name in fields, name
        assert 0 <= floor < 1 and sigma > 0, name
        assert source == "ASSUME" or source.startswith(("[", "§")), name


@pytest.mark.parametrize("name", ["fault_entry_ns", "pvmw_ns", "tlb_ipi_ns", "copy_page_ns"])
def test_a_draw_keeps_the_constant_as_median_and_never_goes_below_the_floor(name: str) -> None:
    base = CostModel().to_dict()[name]
    floor = SPREADS[name][0]
    values = draws(1, "t", name, 4001)
    assert min(values) >= round(floor * base) - 1
    assert abs(statistics.median(values) - base) <= 0.03 * base
    assert max(values) > 1.2 * base  # the tail is to the right
    assert len(set(values)) > 50  # not a step function


def test_fault_entry_has_the_n4_shape() -> None:
    """[N4]: a minor fault's median ~1.0 us, p95 ~4 us, min ~0.6 us (fault_entry_ns is most of it)."""
    values = sorted(draws(3, "t", "fault_entry_ns", 20001))
    p95 = values[int(0.95 * len(values))]
    assert 3.6 <= p95 / 950 <= 4.4
    assert values[0] >= 0.6 * 950 - 1


def test_draws_come_from_the_tasks_seeded_generator_not_the_global_one() -> None:
    random.seed(1)
    a = draws(7, "proc0/t0", "pvmw_ns", 50)
    random.seed(2)
    random.random()
    assert draws(7, "proc0/t0", "pvmw_ns", 50) == a  # same seed and task: the same draws
    assert draws(8, "proc0/t0", "pvmw_ns", 50) != a  # another seed
    assert draws(7, "proc1/t0", "pvmw_ns", 50) != a  # another task's stream


def test_outside_a_task_when_off_and_when_free_a_cost_is_its_constant() -> None:
    engine = Engine(1, seed=1)
    costs = CostModel().with_overrides({"pvmw_ns": 123})
    spread = CostSpread(engine, costs, True)
    assert spread.cost("pvmw_ns") == 123  # no task is running
    off = CostSpread(engine, costs, False)
    free = CostSpread(engine, CostModel.free(), True)
    seen: list[int] = []

    async def reader() -> None:
        seen.extend(off.cost("pvmw_ns") for _ in range(10))
        seen.extend(free.cost("pvmw_ns") for _ in range(10))
        seen.append(off.vary("itree_base_ns", 777))

    engine.spawn("t", reader)
    engine.run()
    assert seen == [123] * 10 + [0] * 10 + [777]  # a free cost model stays free: zero costs take no event


def test_an_unknown_or_unvaried_cost_name_is_an_error_even_when_off() -> None:
    spread = CostSpread(Engine(1, seed=1), CostModel(), False)
    with pytest.raises(KeyError):
        spread.cost("pvmw")
    with pytest.raises(KeyError):
        spread.cost("atomic_ns")  # read once where the locks are built: never drawn


def test_the_draws_do_not_move_the_tasks_own_choices() -> None:
    """The spread has its own stream per task: the task's ``rng`` (its actors' choices) stays."""
    engine = Engine(1, seed=5)
    spread = CostSpread(engine, CostModel(), True)
    seen: list[float] = []

    async def chooser() -> None:
        task = engine.current
        assert task is not None
        spread.cost("pvmw_ns")
        seen.append(task.rng.random())

    engine.spawn("t", chooser)
    engine.run()
    engine2 = Engine(1, seed=5)

    async def plain() -> None:
        task = engine2.current
        assert task is not None
        seen.append(task.rng.random())

    engine2.spawn("t", plain)
    engine2.run()
    assert seen[0] == seen[1]


def _fault(variability: bool) -> dict[str, Any]:
    sc = load_scenario(SCENARIOS / "validate" / "n4-read-fault.toml", {"run.cost_variability": variability})
    rec = run_one(sc, "anon_vma")
    assert rec["params"]["cost_variability"] is variability
    fault: dict[str, Any] = rec["operations"]["fault"]
    return fault


def test_the_switch_gives_the_step_function_back() -> None:
    off, on = _fault(False), _fault(True)
    assert off["min_ns"] == off["p50_ns"] == off["p99_ns"]  # every cost its constant
    assert on["min_ns"] < on["p50_ns"] < on["p90_ns"] < on["p99_ns"]
    assert abs(on["p50_ns"] - off["p50_ns"]) <= 0.05 * off["p50_ns"]  # the calibrated median holds


@pytest.mark.long
def test_results_are_byte_identical_across_hash_seeds(tmp_path: Path) -> None:
    outs = []
    for hashseed in ("1", "2"):
        out = tmp_path / hashseed
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        subprocess.run([sys.executable, "-m", "rmapsim", "run", "fork-heavy", "--set", "run.duration_ns=1000000",
                        "--design", "anon_vma", "--out", str(out), "--quiet"], check=True, env=env, cwd=tmp_path)
        outs.append((out / "result.json").read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("sigma", [0.3, 0.75, 1.2])
def test_the_written_out_lognormal_draws_what_random_draws(sigma: float) -> None:
    """mm/cost_spread.py's own lognormvariate (native code on the compiled build) gives the same
    floats as ``random.Random.lognormvariate`` and leaves the stream in the same place."""
    import random

    from mm.cost_spread import _lognormvariate

    theirs, mine = random.Random(11), random.Random(11)
    assert [_lognormvariate(mine, sigma) for _ in range(20_000)] == \
        [theirs.lognormvariate(0.0, sigma) for _ in range(20_000)]
    assert mine.random() == theirs.random()
