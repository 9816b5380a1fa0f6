"""A migration's target folio is allocated without reclaim (mm/migrate.c ``alloc_misplaced_dst_folio``
clears ``__GFP_RECLAIM``; compaction's ``compaction_alloc`` hands out pages it isolated itself).

Before, a migrating task below the min watermark entered direct reclaim while it held the source
folio locked, and reclaim's ``folio_trylock`` met that very folio on the LRU (H8 --full at some
seeds: "kmigrate re-locks a folio it has locked")."""

from __future__ import annotations

from concurrency.engine import Engine
from mm.costs import CostModel
from mm.designs import design_class
from mm.memory import handle_mm_fault
from mm.migrate import migrate_folio
from mm.mmap import mmap_region
from mm.system import MemoryConfig, MmSystem


def test_a_migration_below_the_min_watermark_neither_reclaims_nor_wakes_kswapd() -> None:
    engine = Engine(1)
    # 8 pages in all, min and low watermarks 7: the fault's allocation (8 -> 7 free) neither reclaims nor
    # wakes kswapd, the migration's target (7 -> 6 free, back to 7 when the source goes) would
    system = MmSystem(engine, design_class("anon_vma"), costs=CostModel.free(),
                      memory=MemoryConfig(total_pages=8, wmark_min=7, wmark_low=7, wmark_high=8))
    reclaims: list[int] = []
    wakeups: list[int] = []

    async def direct_reclaim(nr: int) -> int:
        reclaims.append(nr)
        return 0

    system.direct_reclaim = direct_reclaim
    system.wakeup_kswapd = lambda: wakeups.append(engine.now)
    moved: list[bool] = []

    async def body() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, 4)
        await handle_mm_fault(system, mm, 0, True)
        assert not reclaims and not wakeups and system.free_pages == 7
        folio = mm.ptes[0].folio
        moved.append(await migrate_folio(system, folio))
        # an ordinary allocation at the same level reclaims and wakes kswapd
        await handle_mm_fault(system, mm, 1, True)

    engine.spawn("t0", body, cpu=0)
    assert engine.run().reason == "completed"
    assert moved == [True]
    assert reclaims == [1] and len(wakeups) == 1  # only the second fault's
