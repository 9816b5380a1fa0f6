"""The ANON_VMA_LAZY design (mm/anon_vma_lazy.py): the exact lock sequence of the lazy first fault
([P10] ``__vmf_anon_prepare`` -> ``vma_prepare_anon_vma_lazy``), of the fork upgrade ([P10]
``anon_vma_fork``: the parent upgraded, the child ANON_VMA_TREE_PARENT) and of the lazy rmap walk
([P08] ``anon_rmap_*``, [P09] ``folio_lock_anon_rmap_read``), the other operations on lazy VMAs,
memory counts, the pins against free_pgtables, the fork-upgrade race with a walk that saw the
lazy state (and its ``drain`` correction), and random operation sequences against the oracle.

Patch tags resolve in the module docstring of mm/anon_vma_lazy.py.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concurrency.engine import Engine
from concurrency.lockdep import OrderChecker
from concurrency.locklog import LockLog
from mm.anon_vma import ANON_VMA_BYTES, AVC_BYTES, AnonVma
from mm.anon_vma_lazy import AnonVmaLazyDesign, LazyRoot, TreeParent
from mm.costs import CostModel
from mm.designs import DESIGNS, design_class
from mm.fork import dup_mmap
from mm.huge_memory import split_huge_folio
from mm.memory import handle_mm_fault
from mm.migrate import migrate_folio
from mm.mmap import exit_mmap, mmap_region, mremap_move, munmap
from mm.rmap import page_vma_mapped, rmap_walk
from mm.rmap_design import RmapWalkControl
from mm.system import MmSystem
from mm.types import MmStruct, Vma
from mm.vmscan import folio_referenced, try_to_unmap
from tests.mm.test_operations import _random_ops
from workloads.lockorder import rmap_order
from workloads.record import dump_json
from workloads.runner import check_mapcounts, run_one
from workloads.scenario import load_scenario

Seq = list[tuple[str, str]]
W, R = "W", "R"
RW = "anon_vma->rwsem"
PTL = "mm->page_table_lock"


def make(*, costs: CostModel | None = None, ncpus: int = 1, log: bool = True,
         **switches: Any) -> tuple[Engine, MmSystem, AnonVmaLazyDesign, LockLog]:
    engine = Engine(ncpus)
    tracer = LockLog()
    if log:
        engine.add_instrument(tracer)
    system = MmSystem(engine, design_class("anon_vma_lazy"), costs=costs or CostModel.free(), switches=switches)
    design = system.design
    assert isinstance(design, AnonVmaLazyDesign)
    return engine, system, design, tracer


def run(engine: Engine, **tasks: Callable[[], Awaitable[None]]) -> None:
    for name, fn in tasks.items():
        engine.spawn(name, fn)
    outcome = engine.run()
    assert outcome.reason == "completed"


# -- registration ------------------------------------------------------------------------------------


def test_three_designs_registered_with_documented_switches() -> None:
    assert sorted(DESIGNS) == ["anon_vma", "anon_vma_lazy", "cow_context"]
    cls = DESIGNS["anon_vma_lazy"]
    assert cls is AnonVmaLazyDesign
    assert set(cls.SWITCHES) == {"child", "child_folio", "upgrade_sync"}
    for name, sw in cls.SWITCHES.items():
        assert sw.default in sw.allowed and sw.help, name
    _, _, design, _ = make()
    # the record shows the lazy switches only; mainline's history switches run at their defaults
    assert design.switches == {"child": "tree_parent", "child_folio": "lazy", "upgrade_sync": "none"}
    assert design.describe()["switches"] == design.switches
    assert design.reuse and not design.alloc_under_lock and not design.use_mutex and not design.single
    with pytest.raises(KeyError):
        AnonVmaLazyDesign.resolve_switches({"reuse": False})


def test_the_lazy_hook_does_nothing_for_the_other_designs() -> None:
    """The one hook added to the seam: its default returns False at once and takes no time, so
    anon_vma and cow_context run exactly as before."""
    for name in ("anon_vma", "cow_context"):
        engine = Engine(1)
        system = MmSystem(engine, design_class(name), costs=CostModel())
        got: list[Any] = []

        async def body(system: MmSystem = system, got: list[Any] = got) -> None:
            mm = await system.new_mm()
            vma = system.new_vma(mm, 0, 4)
            mm.insert_vma(vma)
            t = system.engine.now
            got.append(await system.design.vma_prepare_anon_vma_lazy(vma))
            got.append(system.engine.now - t)
            got.append(vma.anon_vma)

        run(engine, t=body)
        assert got == [False, 0, None], name


# -- the lock sequence of every operation on lazy VMAs -----------------------------------------------


def script(**switches: Any) -> tuple[dict[str, Seq], dict[str, Any], MmSystem, Engine]:
    """One of each operation, lazy VMAs first (before any fork), then the fork upgrade and the
    operations on the upgraded parent and its TREE_PARENT child."""
    engine, system, design, log = make(**switches)
    checker = engine.add_instrument(OrderChecker(rmap_order()))
    out: dict[str, Seq] = {}
    facts: dict[str, Any] = {}

    def grab(name: str) -> None:
        out[name] = log.acquisitions()
        log.clear()

    async def main() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, 16)
        log.clear()
        await handle_mm_fault(system, mm, 0, True)
        grab("lazy_fault_first_touch")
        facts["after_first_touch"] = design.metadata()
        await handle_mm_fault(system, mm, 1, True)
        grab("lazy_fault")
        folio = mm.ptes[1].folio
        facts["mapping"] = folio.mapping
        await folio_referenced(system, folio, is_locked=False)
        grab("lazy_folio_referenced")
        await migrate_folio(system, folio)
        grab("lazy_migrate")
        folio = mm.ptes[1].folio
        lock = system.folio_lock_of(folio)
        await lock.folio_lock()
        folio.pins += 1
        log.clear()
        await try_to_unmap(system, folio)
        grab("lazy_try_to_unmap")
        lock.folio_unlock()
        await system.folio_put(folio)
        await handle_mm_fault(system, mm, 1, True)
        await mmap_region(system, mm, 4096, 1024, thp=True)
        await handle_mm_fault(system, mm, 4096, True)
        log.clear()
        await split_huge_folio(system, mm.pmds[8].folio)
        grab("lazy_thp_split")
        await munmap(system, mm, 4096 + 8, 4)
        grab("lazy_munmap")
        await mmap_region(system, mm, 8192, 16)
        await handle_mm_fault(system, mm, 8192, True)
        log.clear()
        await mremap_move(system, mm, 8192, 16, 12288)
        grab("lazy_mremap")
        facts["before_fork"] = design.metadata()
        child = await dup_mmap(system, mm)
        grab("fork_upgrade")
        facts["after_fork"] = design.metadata()
        facts["parent_anchor"] = mm.find_vma(0).anon_vma  # type: ignore[union-attr]
        facts["child_anchor"] = child.find_vma(0).anon_vma  # type: ignore[union-attr]
        facts["handle_resolves"] = facts["mapping"].upgraded
        second = await dup_mmap(system, mm)
        grab("fork_again")
        facts["after_second_fork"] = design.metadata()
        await folio_referenced(system, mm.ptes[0].folio, is_locked=False)
        grab("resolved_folio_referenced")
        await handle_mm_fault(system, child, 0, True)
        grab("child_cow_copy")
        facts["child_folio_mapping"] = child.ptes[0].folio.mapping
        await folio_referenced(system, child.ptes[0].folio, is_locked=False)
        grab("child_lazy_folio_referenced")
        grandchild = await dup_mmap(system, child)
        grab("child_fork_upgrade")
        facts["child_anchor_after_fork"] = child.find_vma(0).anon_vma  # type: ignore[union-attr]
        await exit_mmap(system, grandchild)
        grab("exit_tree_parent")
        await exit_mmap(system, second)
        await exit_mmap(system, child)
        await exit_mmap(system, mm)
        log.clear()
        lone = await system.new_mm()
        await mmap_region(system, lone, 0, 8)
        await handle_mm_fault(system, lone, 0, True)
        log.clear()
        await exit_mmap(system, lone)
        grab("exit_lazy")

    engine.spawn("t", main)
    assert engine.run().reason == "completed"
    facts["lockdep"] = (checker.findings, checker.order_violations())
    return out, facts, system, engine


EXPECTED: dict[str, Seq] = {
    # [P10] __vmf_anon_prepare -> vma_prepare_anon_vma_lazy under the VMA lock alone: no
    # mmap_read_trylock, no anon_vma->rwsem, no mm->page_table_lock; then the PTE lock.
    "lazy_fault_first_touch": [("vma_lock", R), ("ptl", W)],
    "lazy_fault": [("vma_lock", R), ("ptl", W)],
    # [P08]/[P09]: the lazy walk takes no anon_vma lock (RCU lookup and a pin on the root VMA)
    "lazy_folio_referenced": [("folio_lock", W), ("ptl", W)],
    "lazy_migrate": [("folio_lock", W), ("ptl", W), ("ptl", W)],
    "lazy_try_to_unmap": [("ptl", W)],
    # no anon_vma to lock for a THP split of a lazy folio: folio lock, the PMD lock (frozen into
    # PTE migration entries), then one PTL per order-0 folio's remap walk
    "lazy_thp_split": [("folio_lock", W), ("pmd_lock", W)] + [("ptl", W)] * 512,
    # two splits (a lazy clone shares the root VMA: no lock), detach, downgrade, zap (the split THP's
    # PTEs), unlink: no rmap lock
    "lazy_munmap": [("mm->mmap_lock", W), ("vma_lock", W), ("vma_lock", W), ("vma_lock", W), ("mm->mmap_lock", R),
                    ("ptl", W)],
    "lazy_mremap": [("mm->mmap_lock", W), ("vma_lock", W), ("vma_lock", W), ("ptl", W), ("ptl/1", W)],
    # [P10] anon_vma_fork of a lazy parent VMA: the upgrade (the new root's rwsem written,
    # mm->page_table_lock nested), then anon_vma_clone of the child (root W again), then
    # copy_page_range.  Four VMAs: [0,16); the split THP region's [4096,4104), whose upgrade also
    # links [4108,5120) (the two halves share one root VMA), so the third VMA only clones; the
    # moved [12288,12304).
    "fork_upgrade": [("mm->mmap_lock", W), ("mm->mmap_lock/1", W),
                     ("vma_lock", W), (RW, W), (PTL, W), (RW, W), ("ptl", W), ("ptl/1", W),
                     ("vma_lock", W), (RW, W), (PTL, W), (RW, W), ("ptl", W), ("ptl/1", W),
                     ("vma_lock", W), (RW, W), ("ptl", W), ("ptl/1", W),
                     ("vma_lock", W), (RW, W), (PTL, W), (RW, W), ("ptl", W), ("ptl/1", W)],
    # already regular: no upgrade, only the TREE_PARENT child's clone under root W
    "fork_again": [("mm->mmap_lock", W), ("mm->mmap_lock/1", W),
                   *[("vma_lock", W), (RW, W), ("ptl", W), ("ptl/1", W)] * 4],
    # the lazy handle resolves through the upgraded root VMA: mainline read-trylock
    "resolved_folio_referenced": [("folio_lock", W), (RW, R), ("ptl", W), ("ptl", W), ("ptl", W)],
    # the TREE_PARENT child's COW copy is anchored lazily on the child VMA: no rmap lock
    "child_cow_copy": [("vma_lock", R), ("ptl", W), ("ptl", W)],
    "child_lazy_folio_referenced": [("folio_lock", W), ("ptl", W)],
    # the child forks: its VMA gets an anon_vma of its own under the family root (the deferred
    # half of anon_vma_fork), then the grandchild's clone; its other VMAs hold no lazy folios
    "child_fork_upgrade": [("mm->mmap_lock", W), ("mm->mmap_lock/1", W),
                           ("vma_lock", W), (RW, W), (RW, W), ("ptl", W), ("ptl/1", W),
                           *[("vma_lock", W), (RW, W), ("ptl", W), ("ptl/1", W)] * 3],
    # a TREE_PARENT VMA's AVCs are unlinked under the root write lock, one per VMA
    "exit_tree_parent": [("mm->mmap_lock", R), ("ptl", W), ("ptl", W), ("ptl", W), ("ptl", W), ("mm->mmap_lock", W),
                         (RW, W), (RW, W), (RW, W), (RW, W)],
    # an mm that never forked: no rmap lock at all
    "exit_lazy": [("mm->mmap_lock", R), ("ptl", W), ("mm->mmap_lock", W)],
}


def test_lock_sequence_of_every_operation_on_lazy_and_upgraded_vmas() -> None:
    seqs, facts, system, _ = script()
    assert set(seqs) == set(EXPECTED)
    for op, seq in EXPECTED.items():
        assert seqs[op] == seq, f"{op}: {seqs[op]}"
    assert facts["lockdep"] == ([], [])
    assert not system.folios and system.design.check_invariants(final=True) == []
    assert system.pgtables == 0


def test_lazy_first_touch_allocates_nothing_and_folios_point_at_the_root_vma() -> None:
    """[P10] no anon_vma or AVC at first touch; [P05] folio->mapping is the root VMA."""
    _, facts, _, _ = script()
    meta = facts["after_first_touch"]
    assert meta["anon_vma_count"] == 0 and meta["avc_count"] == 0 and meta["total_bytes"] == 0
    assert meta["lazy_root_count"] == 1 and meta["lazy_vma_count"] == 1
    assert isinstance(facts["mapping"], LazyRoot)


def test_fork_upgrades_the_parent_and_makes_the_child_tree_parent() -> None:
    """[P10]: the parent's three lazy VMAs get an anon_vma each; the child VMAs get none."""
    _, facts, _, _ = script()
    before, after, second = facts["before_fork"], facts["after_fork"], facts["after_second_fork"]
    assert before["anon_vma_count"] == 0 and before["avc_count"] == 0
    # three roots upgraded (the split halves share one anon_vma): 4 VMAs linked, 4 cloned
    assert after["anon_vma_count"] == 3 and after["avc_count"] == 8
    assert second["anon_vma_count"] == 3 and second["avc_count"] == 12  # mainline: 11 and 20
    assert isinstance(facts["parent_anchor"], AnonVma)
    child = facts["child_anchor"]
    assert isinstance(child, TreeParent) and child.av is facts["parent_anchor"]
    assert facts["handle_resolves"] is facts["parent_anchor"]  # no folio re-pointed
    assert isinstance(facts["child_folio_mapping"], LazyRoot)
    assert isinstance(facts["child_anchor_after_fork"], AnonVma)
    assert facts["child_anchor_after_fork"].parent is facts["parent_anchor"]


def test_child_folio_switch_puts_child_folios_in_the_trees_anon_vma() -> None:
    seqs, facts, system, _ = script(child_folio="parent_anon_vma")
    assert facts["child_folio_mapping"] is facts["parent_anchor"]
    # the walk locks the family root and visits the parent and both children
    assert seqs["child_lazy_folio_referenced"] == [("folio_lock", W), (RW, R), ("ptl", W), ("ptl", W), ("ptl", W)]
    # nothing lazy left in the child: its fork needs no upgrade
    assert seqs["child_fork_upgrade"][:6] == [("mm->mmap_lock", W), ("mm->mmap_lock/1", W), ("vma_lock", W),
                                              (RW, W), ("ptl", W), ("ptl/1", W)]
    assert system.design.check_invariants(final=True) == []


def test_child_own_anon_vma_switch_runs_mainline_anon_vma_fork() -> None:
    seqs, facts, system, _ = script(child="own_anon_vma")
    # the upgrade, then mainline's two root write locks (clone, then the child's own anon_vma)
    assert seqs["fork_upgrade"][:8] == [("mm->mmap_lock", W), ("mm->mmap_lock/1", W), ("vma_lock", W), (RW, W),
                                        (PTL, W), (RW, W), (RW, W), ("ptl", W)]
    assert facts["after_fork"]["anon_vma_count"] == 7 and facts["after_fork"]["avc_count"] == 12  # as mainline
    assert isinstance(facts["child_anchor"], AnonVma)
    assert system.design.check_invariants(final=True) == []


# -- memory counts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("child", "anon_vmas", "avcs"), [("tree_parent", 3, 3 * (1 + 4)),
                                                          ("own_anon_vma", 3 * (1 + 4), 3 * (1 + 2 * 4))])
def test_fan_out_counts(child: str, anon_vmas: int, avcs: int) -> None:
    """Z faulted VMAs, A children: TREE_PARENT children cost one AVC per inherited VMA and no
    anon_vma (mainline: one anon_vma and two AVCs); a private lazy VMA costs nothing."""
    engine, system, design, _ = make(log=False, child=child)
    out: dict[str, Any] = {}

    async def body() -> None:
        zygote = await system.new_mm()
        for i in range(3):
            await mmap_region(system, zygote, 64 * i, 8)
            await handle_mm_fault(system, zygote, 64 * i, True)
        private = await system.new_mm()
        for i in range(5):
            await mmap_region(system, private, 64 * i, 8)
            await handle_mm_fault(system, private, 64 * i, True)
        apps = [await dup_mmap(system, zygote) for _ in range(4)]
        out["meta"] = design.metadata()
        for mm in [*apps, zygote, private]:
            await exit_mmap(system, mm)

    run(engine, t=body)
    meta = out["meta"]
    assert (meta["anon_vma_count"], meta["avc_count"]) == (anon_vmas, avcs)
    assert meta["total_bytes"] == anon_vmas * ANON_VMA_BYTES + avcs * AVC_BYTES
    assert meta["lazy_vma_count"] == 5  # the private VMAs; the zygote's were upgraded
    assert meta["tree_parent_vma_count"] == (3 * 4 if child == "tree_parent" else 0)
    assert design.metadata()["total_bytes"] == 0 and design.check_invariants(final=True) == []


def test_a_forking_chain_stays_bounded_by_the_reuse_rule() -> None:
    """Each generation COW-writes (lazy folios in its TREE_PARENT VMA) and forks: the deferred
    anon_vma of the child still goes through maybe_reuse_anon_vma, so the chain does not grow."""
    engine, system, design, _ = make(log=False)
    peak: list[int] = []

    async def body() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, 8)
        await handle_mm_fault(system, mm, 0, True)
        for _ in range(60):
            child = await dup_mmap(system, mm)
            await exit_mmap(system, mm)
            await handle_mm_fault(system, child, 1, True)  # a lazy folio of the child's own
            peak.append(design.metadata()["anon_vma_count"])
            mm = child
        await exit_mmap(system, mm)

    run(engine, t=body)
    assert max(peak) <= 2
    assert design.counts["fork_reuse"] >= 50
    assert design.check_invariants(final=True) == []


# -- pins: free_pgtables waits for a walker ([L2g]) ---------------------------------------------------


def test_unlink_of_a_lazy_vma_waits_for_the_pin_of_a_walker() -> None:
    """folio_get_anon_vma pins the root VMA; munmap's free_pgtables sleeps until it is dropped."""
    engine, system, design, _ = make(costs=CostModel(), ncpus=2, log=False)
    state: dict[str, Any] = {}

    async def setup_and_pin() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, 8)
        await handle_mm_fault(system, mm, 0, True)
        state["mm"] = mm
        pin = design.folio_get_anon_vma(mm.ptes[0].folio)
        assert isinstance(pin, LazyRoot) and pin.pins == 1
        state["pinned_at"] = engine.now
        await engine.sleep(50_000)
        state["unpin_at"] = engine.now
        await design.put_anon_vma(pin)
        await engine.sleep(100_000)
        await exit_mmap(system, mm)

    async def unmapper() -> None:
        await engine.sleep(10_000)
        assert state["pinned_at"] < engine.now
        await munmap(system, state["mm"], 0, 8)
        state["munmap_done"] = engine.now

    run(engine, pin=setup_and_pin, unmap=unmapper)
    assert state["munmap_done"] >= state["unpin_at"]
    assert design.counts["lazy_pin_wait"] == 1 and design.counts["lazy_pin_wait_ns"] > 0
    assert design.check_invariants(final=True) == []


def test_mremap_during_a_lazy_walk_visits_the_copy_appended_to_the_root() -> None:
    """A walker pinned on the root VMA sleeps in its first rmap_one; mremap moves the VMA (the copy
    joins the root VMA's list) and the old VMA's free_pgtables waits for the pin; the walker, which
    reads the list live, goes on to the copy and finds the moved entry there too."""
    engine, system, design, _ = make(costs=CostModel(), ncpus=2, log=False)
    state: dict[str, Any] = {}

    async def walker() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, 8)
        await handle_mm_fault(system, mm, 3, True)
        state["mm"] = mm
        folio = mm.ptes[3].folio
        first = True

        async def rmap_one(vma: Vma, vpn: int) -> bool:
            nonlocal first
            if first:
                first = False
                await engine.sleep(50_000)  # mremap runs now
            return True

        state["walk"] = await rmap_walk(system, folio, RmapWalkControl("probe", rmap_one))
        await engine.sleep(100_000)
        await exit_mmap(system, mm)

    async def mover() -> None:
        await engine.sleep(20_000)
        await mremap_move(system, state["mm"], 0, 8, 1024)
        state["moved_at"] = engine.now

    run(engine, walker=walker, mover=mover)
    assert state["walk"].vmas_visited == 2
    stats = system.walks["probe"]
    assert stats.missed_mappings == 0 and stats.mappings_found == 2 and stats.freed_vma_visits == 0
    assert state["moved_at"] > 50_000  # mremap finished only after the walker dropped its pin
    assert design.counts["lazy_pin_wait"] == 1
    assert design.check_invariants(final=True) == []


# -- the fork upgrade racing with a walk that saw the lazy state ---------------------------------------


def _upgrade_race(design: str, **switches: Any) -> tuple[MmSystem, dict[str, Any]]:
    """A walker reads a lazy folio's handle and is slow to reach its first VMA (the lookup's cost,
    ``list_op_ns``, and mainline's interval-tree query, ``itree_query_base_ns``, stretched to 50
    us); meanwhile the mm forks: upgrade, clone, copy_page_range copies the entry."""
    engine = Engine(2)
    costs = CostModel().with_overrides({"list_op_ns": 50_000, "itree_query_base_ns": 50_000})
    system = MmSystem(engine, design_class(design), costs=costs, switches=switches or None)
    state: dict[str, Any] = {}

    async def walker() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, 8)
        await handle_mm_fault(system, mm, 0, True)
        state["mm"] = mm
        folio = mm.ptes[0].folio

        async def rmap_one(vma: Vma, vpn: int) -> bool:
            ptl = system.ptl(vma.mm, vpn)
            await ptl.lock()
            page_vma_mapped(vma, vpn, folio)
            ptl.unlock()
            return True

        await rmap_walk(system, folio, RmapWalkControl("probe", rmap_one))
        state["walk_done"] = engine.now

    async def forker() -> None:
        await engine.sleep(20_000)
        state["child"] = await dup_mmap(system, state["mm"])
        state["fork_done"] = engine.now

    async def teardown() -> None:
        await engine.sleep(1_000_000)
        await exit_mmap(system, state["child"])
        await exit_mmap(system, state["mm"])

    for name, fn in (("walker", walker), ("forker", forker), ("teardown", teardown)):
        engine.spawn(name, fn)
    assert engine.run().reason == "completed"
    return system, state


def test_a_walk_that_saw_the_lazy_state_misses_the_childs_copy() -> None:
    """The finding: nothing orders the upgrade against the pinned walker, so the PTE fork copies
    before the walker reaches the parent's is owed and never visited (anon_vma's root lock, held
    for read by the walker, makes the fork's clone wait; see the mainline case below)."""
    system, state = _upgrade_race("anon_vma_lazy")
    stats = system.walks["probe"]
    assert state["fork_done"] < state["walk_done"]
    assert stats.missed_mappings == 1
    assert system.misses[0]["mappings"] == [[state["child"].mid, 0]]
    assert system.design.check_invariants(final=True) == []


def test_the_drain_correction_and_mainline_do_not_miss_it() -> None:
    system, state = _upgrade_race("anon_vma_lazy", upgrade_sync="drain")
    design = system.design
    assert isinstance(design, AnonVmaLazyDesign)
    assert system.walks["probe"].missed_mappings == 0
    assert state["walk_done"] <= state["fork_done"]  # the upgrade waited for the walker's pin
    assert design.counts["lazy_upgrade_wait"] == 1
    assert design.check_invariants(final=True) == []
    system, state = _upgrade_race("anon_vma")
    assert system.walks["probe"].missed_mappings == 0


def test_drain_makes_a_try_lock_walker_give_up_during_the_upgrade() -> None:
    engine, system, design, _ = make(costs=CostModel(), ncpus=2, log=False, upgrade_sync="drain")
    state: dict[str, Any] = {}

    async def holder() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, 8)
        await handle_mm_fault(system, mm, 0, True)
        await handle_mm_fault(system, mm, 1, True)
        state["mm"] = mm
        pin = design.folio_get_anon_vma(mm.ptes[0].folio)  # keeps the upgrade draining
        await engine.sleep(50_000)
        await design.put_anon_vma(pin)

    async def forker() -> None:
        await engine.sleep(10_000)
        state["child"] = await dup_mmap(system, state["mm"])

    async def ager() -> None:
        await engine.sleep(20_000)
        state["referenced"] = await folio_referenced(system, state["mm"].ptes[1].folio, is_locked=False)
        await engine.sleep(100_000)
        await exit_mmap(system, state["child"])
        await exit_mmap(system, state["mm"])

    run(engine, holder=holder, forker=forker, ager=ager)
    assert state["referenced"] == -1  # contended: PAGEREF_KEEP
    assert system.walks["folio_referenced"].contended == 1
    assert design.check_invariants(final=True) == []


# -- random operation sequences against the oracle ---------------------------------------------------------


@pytest.mark.parametrize("switches", [{}, {"child_folio": "parent_anon_vma"}, {"child": "own_anon_vma"},
                                      {"upgrade_sync": "drain"}])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.sampled_from(["fault", "read", "cow", "fork", "exit", "munmap", "mremap",
                                               "referenced", "unmap", "migrate"]),
                              st.integers(0, 7), st.integers(0, 63)), max_size=60))
def test_random_operations_walk_exactly_what_the_oracle_knows(switches: dict[str, Any],
                                                             ops: list[tuple[str, int, int]]) -> None:
    engine = Engine(1)
    system = MmSystem(engine, design_class("anon_vma_lazy"), costs=CostModel.free(), switches=switches)

    async def main() -> None:
        await _random_ops(system, ops)

    engine.spawn("t", main)
    engine.run()
    for name, stats in system.walks.items():
        assert stats.missed_mappings == 0, (name, stats)
        assert stats.freed_vma_visits == 0, (name, stats)
    assert check_mapcounts(system) == []
    assert not system.folios
    assert system.pgtables == 0
    assert system.design.check_invariants(final=True) == []
    assert system.design.metadata()["total_bytes"] == 0


def test_lazy_vmas_of_one_mm_and_their_split_share_one_root() -> None:
    engine, system, design, _ = make(log=False)
    out: dict[str, Any] = {}

    async def body() -> None:
        mm: MmStruct = await system.new_mm()
        await mmap_region(system, mm, 0, 16)
        for vpn in (0, 12):
            await handle_mm_fault(system, mm, vpn, True)
        await munmap(system, mm, 4, 4)  # splits into [0,4) and [8,16)
        out["anchors"] = [v.anon_vma for v in mm.vmas]
        out["vids"] = [v.vid for v in mm.vmas]
        out["outlived"] = design.counts["lazy_root_outlived"]
        await munmap(system, mm, 0, 4)  # the root VMA goes; [8,16) still anchors on it
        out["outlived_after"] = design.counts["lazy_root_outlived"]
        folio = mm.ptes[12].folio
        await folio_referenced(system, folio, is_locked=False)
        await exit_mmap(system, mm)

    run(engine, t=body)
    a, b = out["anchors"]
    assert isinstance(a, LazyRoot) and a is b and a.vid == out["vids"][0]  # the first VMA is the root
    assert out["outlived"] == 0 and out["outlived_after"] == 1
    assert system.walks["folio_referenced"].mappings_found == 1
    assert design.check_invariants(final=True) == []


# -- the reproducer exploration found (README, "ANON_VMA_LAZY") --------------------------------------------

REPRO = Path(__file__).resolve().parents[2] / "workloads" / "scenarios" / "anon_vma_lazy"


def test_the_explored_reproducer_leaves_a_stale_migration_entry_and_drain_closes_it() -> None:
    """``rmapsim explore workloads/scenarios/anon_vma_lazy/lazy-upgrade-race.toml --design
    anon_vma_lazy --runs 200 --perturb shuffle,jitter=0.2,preempt=20``, run 58 shrunk: a
    remove_migration_ptes walk pinned a lazy root VMA just before its mm forked; the fork copied
    the migration entry into the child and the walk, which only knows the root VMA's list, never
    restored it.  The record is byte-identical to the one explore wrote (its header's sha256)."""
    path = REPRO / "repro-anon_vma_lazy-corruption.toml"
    digest = re.search(r"^# record sha256 ([0-9a-f]{64})$", path.read_text(), flags=re.M)
    assert digest is not None
    rec = run_one(load_scenario(path), "anon_vma_lazy")
    assert hashlib.sha256(dump_json(rec).encode()).hexdigest() == digest.group(1)
    assert not rec["invariants"]["passed"]
    assert any("stale migration entry" in v for v in rec["invariants"]["violations"])
    assert rec["walks"]["remove_migration_ptes"]["missed_mappings"] == 1
    fixed = run_one(load_scenario(path, {"switches.anon_vma_lazy.upgrade_sync": "drain"}), "anon_vma_lazy")
    assert fixed["invariants"]["passed"], fixed["invariants"]["violations"]
    assert all(w["missed_mappings"] == 0 for w in fixed["walks"].values())
