"""fork's address-space copy, after kernel/fork.c ``dup_mmap`` and mm/memory.c ``copy_page_range``.

The parent's mmap_lock is held for write for the whole fork and every parent VMA is write-locked
as it is copied (``vma_start_write_killable``), so the parent's own threads cannot fault until
``mmap_write_unlock(oldmm)``; that stall is the same for every rmap design.  Per VMA with an
anon_vma the design's ``anon_vma_fork`` runs, then the page tables are copied under the child's
and the parent's PTE locks (``spin_lock_nested(src_ptl, SINGLE_DEPTH_NESTING)``), write-protecting
both sides and marking every anon folio shared (``folio_try_dup_anon_rmap_ptes``).
"""

from __future__ import annotations

from mm.memory import spend
from mm.mmap_lock import mmap_write_lock, mmap_write_unlock, vma_start_write
from mm.system import ZERO_FOLIO, MmSystem
from mm.types import HPAGE_PMD_NR, PTRS_PER_PTE, MmStruct, Pte, Vma

__all__ = ["copy_page_range", "dup_mmap"]

SINGLE_DEPTH_NESTING = 1


async def dup_mmap(system: MmSystem, oldmm: MmStruct) -> MmStruct:
    """``copy_mm`` -> ``dup_mm`` -> ``dup_mmap``: returns the child's mm."""
    task = system.engine.current
    assert task is not None
    saved, task.op = task.op, "fork"
    try:
        mm = await system.new_mm(parent=oldmm)
        design = system.design
        costs = system.costs
        await mmap_write_lock(oldmm)
        await mmap_write_lock(mm, SINGLE_DEPTH_NESTING)
        await spend(system, costs.mt_dup_per_vma_ns * len(oldmm.vmas))  # __mt_dup
        for mpnt in list(oldmm.vmas):
            await vma_start_write(mpnt)
            tmp = system.new_vma(mm, mpnt.start, mpnt.end, mpnt.pgoff, thp=mpnt.thp)
            await spend(system, costs.vma_dup_ns)  # vm_area_dup
            mm.insert_vma(tmp)
            if mpnt.anon_vma is not None:
                await design.fork_vma(tmp, mpnt)
                await copy_page_range(system, tmp, mpnt)
        await design.fork_mm(mm, oldmm)
        mmap_write_unlock(mm)
        await spend(system, costs.tlb_ipi_ns)  # flush_tlb_mm(oldmm): write-protected PTEs
        mmap_write_unlock(oldmm)
        system.ops.inc("fork")
        return mm
    finally:
        task.op = saved


async def copy_page_range(system: MmSystem, dst_vma: Vma, src_vma: Vma) -> None:
    """``copy_page_range``: one PTE table at a time under dst then (nested) src PTL."""
    src_mm, dst_mm = src_vma.mm, dst_vma.mm
    costs = system.costs
    if src_vma.thp:
        for idx in range(src_vma.start // HPAGE_PMD_NR, (src_vma.end - 1) // HPAGE_PMD_NR + 1):
            pmd = src_mm.pmds.get(idx)
            if pmd is None:
                continue
            # copy_huge_pmd
            dst_lock = system.pmd_lock(dst_mm, idx * HPAGE_PMD_NR)
            src_lock = system.pmd_lock(src_mm, idx * HPAGE_PMD_NR)
            await dst_lock.lock()
            await src_lock.lock(SINGLE_DEPTH_NESTING)
            folio = pmd.folio
            copy = Pte(folio, False)
            if pmd.migration:
                copy.migration = True
                folio.exclusive = False  # copy_nonpresent_pte: the entry becomes a readable one
            else:
                folio.mapcount += 1
                folio.exclusive = False
                system.design.folio_dup_rmap(folio, dst_vma)
                pmd.writable = False
            dst_mm.pmds[idx] = copy
            await spend(system, costs.pte_copy_ns)
            src_lock.unlock()
            dst_lock.unlock()
    first = src_vma.start // PTRS_PER_PTE
    last = (src_vma.end - 1) // PTRS_PER_PTE
    tables = sorted(t for t in src_mm.ptls if first <= t <= last)
    for t in tables:
        lo = max(src_vma.start, t * PTRS_PER_PTE)
        hi = min(src_vma.end, (t + 1) * PTRS_PER_PTE)
        entries = [(vpn, src_mm.ptes[vpn]) for vpn in range(lo, hi) if vpn in src_mm.ptes]
        if not entries:
            continue
        dst_ptl = system.ptl(dst_mm, lo)  # pte_alloc_map_lock
        src_ptl = system.ptl(src_mm, lo)
        await dst_ptl.lock()
        await src_ptl.lock(SINGLE_DEPTH_NESTING)
        for vpn, pte in entries:
            folio = pte.folio
            copy = Pte(folio, False)
            copy.young = pte.young
            if pte.migration:
                copy.migration = True  # copy_nonpresent_pte: copied, made readable (not exclusive)
                folio.exclusive = False
            elif folio is not ZERO_FOLIO:
                folio.mapcount += 1  # folio_try_dup_anon_rmap_ptes
                folio.exclusive = False
                system.design.folio_dup_rmap(folio, dst_vma)
                pte.writable = False  # ptep_set_wrprotect on the parent
            dst_mm.ptes[vpn] = copy
        await spend(system, costs.pte_copy_ns * len(entries))
        src_ptl.unlock()
        dst_ptl.unlock()
