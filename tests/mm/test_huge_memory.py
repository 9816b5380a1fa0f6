"""THP split and the COW fault on a THP: what they lock and for how long (mm/huge_memory.c)."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from concurrency.engine import Engine
from mm.costs import CostModel
from mm.designs import design_class
from mm.fork import dup_mmap
from mm.huge_memory import split_huge_folio
from mm.memory import handle_mm_fault
from mm.mmap import exit_mmap, mmap_region
from mm.system import MmSystem
from mm.types import HPAGE_PMD_NR, MmStruct, large_folio
from workloads.runner import check_mapcounts

# Only the per-entry work of the walks, the split and the shootdown cost time, so the rmap write
# lock's hold time can be written down from __folio_split's shape.
PVMW, PTE, CLEAR, SPLIT, IPI = 150, 30, 50, 5_000, 3_000
COSTS = CostModel.free().with_overrides({"pvmw_ns": PVMW, "pte_ns": PTE, "clear_ns": CLEAR, "split_ns": SPLIT,
                                         "tlb_ipi_ns": IPI})


def test_folio_split_holds_the_rmap_write_lock_for_the_unmap_and_one_remap_walk_per_small_folio() -> None:
    """``__folio_split``: ``unmap_folio`` (TTU_SPLIT_HUGE_PMD: each of the k PMDs frozen into 512
    PTE migration entries), the split, then ``remap_page``: ``remove_migration_ptes(folio, folio,
    RMP_LOCKED)`` for each of the 512 order-0 folios, each walk visiting the k VMAs.  All of it
    under ``anon_vma_lock_write``: the hold time is that shape at the unit costs."""
    engine = Engine(1)
    system = MmSystem(engine, design_class("anon_vma"), costs=COSTS)
    state: dict[str, object] = {}

    async def main() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, HPAGE_PMD_NR, thp=True)
        await handle_mm_fault(system, mm, 0, True)
        children = [await dup_mmap(system, mm) for _ in range(2)]
        thp = mm.pmds[0].folio
        mms: list[MmStruct] = [mm, *children]
        assert thp.mapcount == 3
        write = engine.lock_classes["anon_vma->rwsem"].write
        before = write.acquisitions
        assert await split_huge_folio(system, thp)
        state["acquisitions"] = write.acquisitions - before
        state["hold"] = write.hold.max_ns
        state["remap_walks"] = system.walk_stats("remove_migration_ptes").walks
        state["small"] = [[m.ptes[v].folio for v in range(HPAGE_PMD_NR)] for m in mms]
        state["pmds"] = sum(len(m.pmds) for m in mms)
        state["mapcounts"] = {(f.order, f.mapcount) for f in
                              [m.ptes[v].folio for m in mms for v in range(HPAGE_PMD_NR)]}
        assert check_mapcounts(system) == []
        for m in mms:
            await exit_mmap(system, m)

    engine.spawn("t", main)
    engine.run()
    k = 3
    unmap = k * (PVMW + CLEAR + HPAGE_PMD_NR * PTE) + IPI
    remap = HPAGE_PMD_NR * k * (PVMW + PTE)
    assert state["acquisitions"] == 1
    assert state["hold"] == unmap + SPLIT + remap
    assert state["remap_walks"] == HPAGE_PMD_NR
    assert state["pmds"] == 0
    small = state["small"]
    assert isinstance(small, list)
    # every mm maps page i through the same order-0 folio, one folio per page
    assert all(row == small[0] for row in small) and len({f.fid for f in small[0]}) == HPAGE_PMD_NR
    assert state["mapcounts"] == {(0, k)}
    assert system.walk_stats("remove_migration_ptes").missed_mappings == 0


def _cow_on_shared_thp(design: str) -> tuple[list[tuple[str, str]], dict[str, object], MmSystem]:
    """A parent faults a THP and forks; the child writes one page of it.  Returns the child's
    write fault's lock sequence and what the page tables look like after it."""
    from concurrency.locklog import LockLog

    engine = Engine(1)
    log = LockLog()
    engine.add_instrument(log)
    system = MmSystem(engine, design_class(design), costs=COSTS)
    state: dict[str, object] = {}

    async def main() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, HPAGE_PMD_NR, thp=True)
        await handle_mm_fault(system, mm, 0, True)
        child = await dup_mmap(system, mm)
        thp = large_folio(mm.pmds[0].folio)
        log.clear()
        await handle_mm_fault(system, child, 7, True)
        state["seq"] = log.acquisitions()
        state["parent_pmd"] = mm.pmds.get(0)
        state["child_pmd"] = child.pmds.get(0)
        state["child_ptes"] = [child.ptes[v].folio is thp for v in range(HPAGE_PMD_NR)]
        state["copy"] = child.ptes[7].folio.order, child.ptes[7].writable
        state["mapcount"] = thp.mapcount, thp.entire_mapcount
        state["queued"] = list(system.deferred_split)
        assert check_mapcounts(system) == []
        # The parent's PMD goes (exit): the THP is left mapped by 511 of the child's PTEs and
        # no PMD, partially mapped, so it is queued for the deferred split.
        await exit_mmap(system, mm)
        state["queued_after_exit"] = list(system.deferred_split) == [thp.fid]
        assert check_mapcounts(system) == []
        log.clear()
        from mm.huge_memory import deferred_split_scan

        state["deferred_split"] = await deferred_split_scan(system)
        state["split_seq"] = log.acquisitions()[:3]
        state["after_split"] = {child.ptes[v].folio.order for v in range(HPAGE_PMD_NR)}, thp.freed
        assert check_mapcounts(system) == []
        await exit_mmap(system, child)

    engine.spawn("t", main)
    engine.run()
    seq = state.pop("seq")
    assert isinstance(seq, list)
    return seq, state, system


def test_cow_on_a_shared_thp_splits_the_pmd_under_the_pmd_lock_only_and_copies_one_page() -> None:
    """``do_huge_pmd_wp_page`` on a THP the parent still maps: not exclusive, refcount 2, so
    ``__split_huge_pmd`` (PMD lock, no rmap lock) and VM_FAULT_FALLBACK: ``do_wp_page`` copies
    the one page written.  The folio stays whole; once no PMD maps it and a page is unmapped it
    is queued, and ``deferred_split_scan`` splits it under the rmap write lock."""
    seq, state, system = _cow_on_shared_thp("anon_vma")
    assert seq == [
        ("vma_lock", "R"),
        ("pmd_lock", "W"), ("folio_lock", "W"),  # do_huge_pmd_wp_page: pmd_same, folio_trylock
        ("pmd_lock", "W"),  # __split_huge_pmd
        ("ptl", "W"), ("ptl", "W"),  # do_wp_page -> wp_page_copy of one 4 KiB page
    ]
    assert state["parent_pmd"] is not None and state["child_pmd"] is None
    child_ptes = state["child_ptes"]
    assert isinstance(child_ptes, list)
    assert child_ptes.count(True) == HPAGE_PMD_NR - 1 and not child_ptes[7]
    assert state["copy"] == (0, True)
    assert state["mapcount"] == (1 + HPAGE_PMD_NR - 1, 1)  # the parent's PMD + the child's 511 PTEs
    assert state["queued"] == []  # a PMD still maps all of it: not partially mapped
    assert state["queued_after_exit"] is True
    assert state["deferred_split"] == 1
    assert state["split_seq"] == [("folio_lock", "W"), ("anon_vma->rwsem", "W"), ("ptl", "W")]
    assert state["after_split"] == ({0}, True)
    assert system.ops.counts["thp_split_pmd"] == 1 and system.ops.counts["thp_split"] == 1
    assert system.ops.counts["thp_split_deferred"] == 1 and system.ops.counts["thp_deferred_split_page"] == 1


def test_cow_on_an_exclusive_thp_reuses_it_whole() -> None:
    """``do_huge_pmd_wp_page``: the only mapping (refcount 1) is reused: the PMD made writable,
    nothing split, no copy."""
    engine = Engine(1)
    system = MmSystem(engine, design_class("anon_vma"), costs=COSTS)
    state: dict[str, object] = {}

    async def main() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, HPAGE_PMD_NR, thp=True)
        await handle_mm_fault(system, mm, 0, True)
        child = await dup_mmap(system, mm)
        await exit_mmap(system, child)  # the child's PMD goes: refcount 1 again, not exclusive
        pmd = mm.pmds[0]
        state["before"] = pmd.folio.exclusive, pmd.writable
        await handle_mm_fault(system, mm, 3, True)
        state["after"] = mm.pmds.get(0) is pmd, pmd.writable, pmd.folio.exclusive
        await exit_mmap(system, mm)

    engine.spawn("t", main)
    engine.run()
    assert state["before"] == (False, False)
    assert state["after"] == (True, True, True)
    assert system.ops.counts["cow_reuse_thp"] == 1 and system.ops.counts.get("thp_split_pmd", 0) == 0


THP_OPS = ["write", "read", "fork", "exit", "migrate", "unmap", "referenced", "split", "scan"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A THP PMD-mapped in the parent and PTE-mapped in the child (COW), migrated whole, then left
# partially mapped by the parent's exit and split from the deferred queue.
@example(ops=[("write", 0, 0), ("fork", 0, 0), ("write", 1, 5), ("migrate", 1, 9), ("referenced", 0, 0),
              ("exit", 0, 0), ("scan", 0, 0), ("write", 0, 7)])
@given(ops=st.lists(st.tuples(st.sampled_from(THP_OPS), st.integers(0, 7), st.integers(0, 1023)), max_size=40))
def test_random_operations_on_pmd_and_pte_mapped_thps_keep_every_mapping_found(
        ops: list[tuple[str, int, int]]) -> None:
    """THPs mapped by PMDs in some mms and by PTEs in others (COW faults split PMDs), migrated,
    unmapped, split directly or from the deferred queue: run alone, every walk reaches every
    mapping, mapcounts (and PMD counts) match the page tables after every step, and everything
    is freed at the end."""
    from mm.huge_memory import deferred_split_scan
    from mm.migrate import migrate_folio
    from mm.vmscan import folio_referenced, try_to_unmap

    engine = Engine(1)
    system = MmSystem(engine, design_class("anon_vma"), costs=CostModel.free())

    async def main() -> None:
        mms: list[MmStruct] = [await system.new_mm()]
        await mmap_region(system, mms[0], 0, 2 * HPAGE_PMD_NR, thp=True)
        for op, a, vpn in ops:
            live = [m for m in mms if m.alive]
            if not live:
                break
            mm = live[a % len(live)]
            entry = mm.pmds.get(vpn // HPAGE_PMD_NR) or mm.ptes.get(vpn)
            folio = None if entry is None or entry.migration or entry.folio.fid < 0 else entry.folio
            if op in ("write", "read"):
                await handle_mm_fault(system, mm, vpn, op == "write")
            elif op == "fork" and len(live) < 5:
                mms.append(await dup_mmap(system, mm))
            elif op == "exit" and len(live) > 1:
                await exit_mmap(system, mm)
            elif op == "scan":
                await deferred_split_scan(system)
            elif folio is not None and op == "split":
                await split_huge_folio(system, folio)
            elif folio is not None and op == "migrate":
                await migrate_folio(system, folio)
            elif folio is not None and op == "referenced":
                await folio_referenced(system, folio, is_locked=False)
            elif folio is not None and op == "unmap":
                lock = system.folio_lock_of(folio)
                await lock.folio_lock()
                folio.pins += 1
                await try_to_unmap(system, folio)
                lock.folio_unlock()
                await system.folio_put(folio)
            assert check_mapcounts(system) == [], op
        for mm in mms:
            if mm.alive:
                await exit_mmap(system, mm)

    engine.spawn("t", main)
    engine.run()
    for name, stats in system.walks.items():
        assert stats.missed_mappings == 0, (name, stats)
        assert stats.freed_vma_visits == 0, (name, stats)
    assert not system.folios and not system.deferred_split
    assert system.pgtables == 0
    assert system.design.check_invariants(final=True) == []


def test_a_cow_fault_waiting_for_the_thp_lock_frees_the_folio_if_every_mapping_went_meanwhile() -> None:
    """``do_huge_pmd_wp_page``'s slow path takes a reference (``folio_get``) and sleeps on the
    folio lock; if the PMD changed meanwhile it drops it with ``folio_put``, which frees a folio
    nothing maps any more (found by rmapsim explore on thp-migration-storm: a leaked THP)."""
    engine = Engine(1)
    system = MmSystem(engine, design_class("anon_vma"), costs=COSTS)
    state: dict[str, object] = {}

    async def main() -> None:
        parent = await system.new_mm()
        await mmap_region(system, parent, 0, HPAGE_PMD_NR, thp=True)
        await handle_mm_fault(system, parent, 0, True)
        child = await dup_mmap(system, parent)
        thp = parent.pmds[0].folio
        lock = system.folio_lock_of(thp)
        await lock.folio_lock()  # a migration holds it
        engine.spawn("cow", handle_mm_fault, system, child, 3, True)
        await engine.sleep(1_000)  # the fault now waits for the folio lock, holding a reference
        state["waiting"] = thp.pins == 1
        await exit_mmap(system, parent)
        await exit_mmap(system, child)
        state["mapped"] = thp.mapcount
        lock.folio_unlock()
        await engine.sleep(1_000)
        state["freed"] = thp.freed

    engine.spawn("t", main)
    engine.run()
    assert state == {"waiting": True, "mapped": 0, "freed": True}
    assert not system.folios
