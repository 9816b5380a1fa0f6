"""THP split and the COW fault on a THP: what they lock and for how long (mm/huge_memory.c)."""

from __future__ import annotations

from concurrency.engine import Engine
from mm.costs import CostModel
from mm.fork import dup_mmap
from mm.huge_memory import split_huge_folio
from mm.memory import handle_mm_fault
from mm.mmap import exit_mmap, mmap_region
from mm.system import MmSystem
from mm.types import HPAGE_PMD_NR, MmStruct
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
    system = MmSystem(engine, "anon_vma", costs=COSTS)
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
