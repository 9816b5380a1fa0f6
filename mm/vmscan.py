"""Reclaim's reverse-map users, after mm/vmscan.c and mm/rmap.c.

* :func:`folio_referenced` - aging: the folio lock is only tried (unless the caller holds it) and
  the rmap lock is only tried (``rwc->try_lock``); contention returns -1, which
  ``folio_check_references`` turns into PAGEREF_KEEP (the folio goes back, whatever its age).
* :func:`try_to_unmap` - the folio is locked; the rmap read lock may be waited for (no try_lock).
* :func:`shrink_folio` - ``shrink_folio_list`` for one folio: trylock, check references,
  unmap, swap out and free.
"""

from __future__ import annotations

from enum import Enum

from concurrency.spinlock import QSpinlock
from mm.cpu import spend
from mm.rmap import folio_ptes, page_vma_mapped, rmap_walk
from mm.rmap_design import RmapWalkControl
from mm.system import MmSystem
from mm.types import HPAGE_PMD_NR, Folio, Pte, Vma

__all__ = ["Reclaim", "folio_referenced", "shrink_folio", "try_to_unmap"]


class Reclaim(Enum):
    FREED = "freed"
    KEEP_LOCKED = "keep_locked"  # folio_trylock failed
    KEEP_CONTENDED = "keep_contended"  # rmap lock contended: PAGEREF_KEEP
    ACTIVATED = "activated"  # referenced: rotated back
    STILL_MAPPED = "still_mapped"  # try_to_unmap left mappings behind
    GONE = "gone"


async def _lock_for(system: MmSystem, vma: Vma, vpn: int, folio: Folio) -> QSpinlock:
    """Take and return the PMD lock for a PMD-mapped THP, else the PTE lock (a small folio, or a
    THP whose PMD ``__split_huge_pmd`` turned into PTEs).  ``page_vma_mapped_walk`` checks the
    PMD again under its lock: a PMD split while we waited sends us on to the PTE lock."""
    mm = vma.mm
    if folio.order and mm.pmds.get(vpn // HPAGE_PMD_NR) is not None:
        lock = system.pmd_lock(mm, vpn)
        await lock.lock()
        if mm.pmds.get(vpn // HPAGE_PMD_NR) is not None:
            return lock
        lock.unlock()
    lock = system.ptl(mm, vpn)
    await lock.lock()
    return lock


def _entries(vma: Vma, vpn: int, folio: Folio) -> list[Pte]:
    """Every present entry of ``folio`` in ``vma`` (``page_vma_mapped_walk``'s steps)."""
    mm = vma.mm
    if folio.order and mm.pmds.get(vpn // HPAGE_PMD_NR) is None:
        return [mm.ptes[v] for v in folio_ptes(vma, vpn, folio)]
    pte = page_vma_mapped(vma, vpn, folio)
    return [] if pte is None else [pte]


async def folio_referenced(system: MmSystem, folio: Folio, *, is_locked: bool) -> int:
    """``folio_referenced``: the number of young mappings (clearing them), or -1 if contended."""
    lock = system.folio_lock_of(folio)
    if not is_locked and not lock.folio_trylock():
        return 1  # "we_locked" failed: treat as referenced
    try:
        if folio.mapcount == 0:
            return 0
        referenced = 0

        async def folio_referenced_one(vma: Vma, vpn: int) -> bool:
            nonlocal referenced
            ptl = await _lock_for(system, vma, vpn, folio)
            for pte in _entries(vma, vpn, folio):
                if pte.young:
                    referenced += 1
                    pte.young = False  # clear_flush_young
            await spend(system, system.cost("pvmw_ns") + system.cost("young_ns"))
            ptl.unlock()
            return True

        # try_lock since 2022 (6d4675e60135); the reclaim_trylock switch restores the blocking read.
        rwc = RmapWalkControl("folio_referenced", folio_referenced_one, try_lock=system.reclaim_trylock,
                              anon_lock=True)
        result = await rmap_walk(system, folio, rwc)
        return -1 if result.contended else referenced
    finally:
        if not is_locked:
            lock.folio_unlock()


async def try_to_unmap(system: MmSystem, folio: Folio) -> bool:
    """``try_to_unmap`` (folio locked): replace every PTE by a swap entry; True if unmapped."""
    to_flush = 0

    async def try_to_unmap_one(vma: Vma, vpn: int) -> bool:
        nonlocal to_flush
        ptl = await _lock_for(system, vma, vpn, folio)
        mm = vma.mm
        pmd = mm.pmds.get(vpn // HPAGE_PMD_NR) if folio.order else None
        if pmd is not None and pmd.folio is folio and not pmd.migration:
            where = [(mm.pmds, vpn // HPAGE_PMD_NR, vpn)]
        elif folio.order:
            where = [(mm.ptes, v, v) for v in folio_ptes(vma, vpn, folio)]  # a PTE-mapped THP
        else:
            where = [(mm.ptes, vpn, vpn)] if page_vma_mapped(vma, vpn, folio) is not None else []
        for table, key, v in where:
            del table[key]  # the swap entry: not present, not a mapping
            system.folio_remove_rmap(folio, pmd=table is mm.pmds)
            to_flush += 1
            if system.story is not None:
                system.story.note("entry", f"try_to_unmap_one clears mm{mm.mid} vpn {v} (folio {folio.fid}, "
                                  f"mapcount now {folio.mapcount})", folio=folio.fid, mm=mm.mid, vpn=v)
        await spend(system, system.cost("pvmw_ns") + system.cost("clear_ns") * max(1, len(where)))
        ptl.unlock()
        return True

    rwc = RmapWalkControl("try_to_unmap", try_to_unmap_one, anon_lock=True, may_sleep=True,
                          done=lambda: folio.mapcount == 0)
    await rmap_walk(system, folio, rwc)
    if to_flush:
        await spend(system, system.cost("tlb_ipi_ns"))  # try_to_unmap_flush: batched shootdown
    return folio.mapcount == 0


async def shrink_folio(system: MmSystem, folio: Folio) -> Reclaim:
    """``shrink_folio_list`` for one folio the caller isolated (and pinned).

    FREED means unmapped and swapped out: the caller's dropped pin frees it.
    """
    if folio.freed:
        return Reclaim.GONE
    lock = system.folio_lock_of(folio)
    if not lock.folio_trylock():
        return Reclaim.KEEP_LOCKED
    try:
        refs = await folio_referenced(system, folio, is_locked=True)
        if refs < 0:
            system.ops.inc("reclaim_keep_contended")
            return Reclaim.KEEP_CONTENDED
        if refs > 0:
            system.ops.inc("reclaim_activate")
            return Reclaim.ACTIVATED
        if folio.mapcount and not await try_to_unmap(system, folio):
            system.ops.inc("reclaim_still_mapped")
            return Reclaim.STILL_MAPPED
        await spend(system, system.cost("swap_out_ns"))
    finally:
        lock.folio_unlock()
    system.ops.inc("reclaim_freed")
    return Reclaim.FREED
