"""The H1 scenario's set-up (workloads/scenarios/validate/h1-single-anon-vma.toml): every child
copies each page it inherited (``child_cow_pattern = "sequential"``), the parent unmaps its own
(``unmap_after_fork``), and the migration walks start once the forks are done (``migrate``'s
``start_ns``, tested in test_migrate_batch.py), so that every walk is of a child's COW copy: under
anon_vma chains it visits that child's VMA alone, under one family anon_vma every child's."""

from __future__ import annotations

import dataclasses
from typing import Any

from workloads.runner import run_one
from workloads.scenario import Scenario, load_scenario
from workloads.validate.common import SCENARIO_DIR

H1 = SCENARIO_DIR / "h1-single-anon-vma.toml"


def _walks(rec: dict[str, Any]) -> tuple[int, int]:
    walks = sum(w["walks"] for w in rec["walks"].values())
    return walks, sum(w["vmas_visited"] for w in rec["walks"].values())


def test_every_walk_is_of_a_childs_copy_at_any_seed() -> None:
    for seed in (1, 2, 3, 4):
        chains = run_one(load_scenario(H1, {"run.seed": seed}), "anon_vma")
        walks, visited = _walks(chains)
        assert walks > 0 and visited == walks, (seed, walks, visited)  # one VMA a walk
        assert chains["operations"]["cow_fault"]["count"] == 16 * 4  # each child, each page, once
        assert chains["operations"]["munmap"]["count"] == 1  # the parent's one region
        single = run_one(load_scenario(H1, {"run.seed": seed, "switches.anon_vma.single_anon_vma": True}),
                         "anon_vma")
        walks, visited = _walks(single)
        # every child's VMA for remove_migration_ptes; try_to_migrate stops at the one that maps it
        assert visited >= 8 * walks, (seed, walks, visited)


def test_without_the_set_up_a_walk_of_the_parents_page_visits_every_child_under_chains_too() -> None:
    """The parent keeps its pages (its main thread holds its mm to the deadline) and random writes may
    miss some: walks from the start include the parent's pages, which are on the root anon_vma's tree
    with every child's VMA."""
    rec = run_one(load_scenario(H1, {"run.seed": 1}), "anon_vma")
    clean = _walks(rec)
    raw = run_one(_without_set_up(), "anon_vma")
    walks, visited = _walks(raw)
    assert clean[0] == clean[1] and visited > walks


def _without_set_up() -> Scenario:
    scenario = load_scenario(H1, {"run.seed": 1})
    specs = []
    for spec in scenario.actors:
        params = dict(spec.params)
        if spec.kind == "fan_out":
            params.update(unmap_after_fork=False, child_cow_pattern="random", child_cow_writes=32)
        if spec.kind == "migrate":
            params.update(start_ns=0)
        specs.append(dataclasses.replace(spec, params=params))
    scenario.actors = tuple(specs)
    return scenario
