"""fork's address-space copy, after kernel/fork.c ``dup_mmap`` and mm/memory.c ``copy_page_range``.

The parent's mmap_lock is held for write for the whole fork and every parent VMA is write-locked
as it is copied (``vma_start_write_killable``), so the parent's own threads cannot fault until
``mmap_write_unlock(oldmm)``; that stall is the same for every rmap design.  Per VMA with an
anon_vma the design's ``anon_vma_fork`` runs, then the page tables are copied under the child's
and the parent's PTE locks (``spin_lock_nested(src_ptl, SINGLE_DEPTH_NESTING)``), write-protecting
both sides and marking every anon folio shared (``folio_try_dup_anon_rmap_ptes``).
"""

from __future__ import annotations

from mm.cpu import spend
from mm.mmap_lock import mmap_write_lock, mmap_write_unlock, vma_start_write
from mm.system import ZERO_FOLIO, MmSystem
from mm.types import HPAGE_PMD_NR, PTRS_PER_PTE, MmStruct, Pte, Vma, large_folio

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
        story = system.story
        if story is not None:
            story.note("fork", f"dup_mmap: mm{oldmm.mid} forks mm{mm.mid}", mm=oldmm.mid, mm2=mm.mid)
        await mmap_write_lock(oldmm)
        await mmap_write_lock(mm, SINGLE_DEPTH_NESTING)
        await spend(system, system.cost("mt_dup_per_vma_ns") * len(oldmm.vmas))  # __mt_dup
        for mpnt in list(oldmm.vmas):
            await vma_start_write(mpnt)
            tmp = system.new_vma(mm, mpnt.start, mpnt.end, mpnt.pgoff, thp=mpnt.thp)
            await spend(system, system.cost("vma_dup_ns"))  # vm_area_dup
            mm.insert_vma(tmp)
            if mpnt.anon_vma is not None:
                await design.fork_vma(tmp, mpnt)
                if story is not None:
                    story.note("fork", f"anon_vma_fork: vma{tmp.vid} linked into vma{mpnt.vid}'s rmap "
                               f"[{mpnt.start},{mpnt.end})", mm=oldmm.mid, mm2=mm.mid)
                await copy_page_range(system, tmp, mpnt)
        await design.fork_mm(mm, oldmm)
        if story is not None:
            story.note("fork", f"end of dup_mmap: mm{mm.mid} complete (design's fork_mm done)",
                       mm=oldmm.mid, mm2=mm.mid)
        mmap_write_unlock(mm)
        await spend(system, system.cost("tlb_ipi_ns"))  # flush_tlb_mm(oldmm): write-protected PTEs
        mmap_write_unlock(oldmm)
        system.ops.inc("fork")
        return mm
    finally:
        task.op = saved


async def copy_page_range(system: MmSystem, dst_vma: Vma, src_vma: Vma) -> None:
    """``copy_page_range``: one page table at a time, read under both locks.

    ``copy_huge_pmd`` and ``copy_pte_range`` take the child's lock first (``pmd_lock`` /
    ``pte_alloc_map_lock``), then the parent's nested (``spin_lock_nested(src_ptl,
    SINGLE_DEPTH_NESTING)``), and only then read each source entry (``*src_pmd``,
    ``ptep_get(src_pte)``).  Reading under the parent's lock is what makes fork sound against an
    rmap walk: a walker that changed the entry (a migration entry installed or restored) did so
    under that same lock, so the child gets the entry as it is now, never a stale copy.
    A table is copied when the parent has one (``pmd_none_or_clear_bad`` skips the rest), even if
    none of its entries is present.  Not modelled: the ``need_resched``/``spin_needbreak`` break
    every 32 entries.
    """
    src_mm, dst_mm = src_vma.mm, dst_vma.mm
    if src_vma.thp:
        for idx in range(src_vma.start // HPAGE_PMD_NR, (src_vma.end - 1) // HPAGE_PMD_NR + 1):
            if idx not in src_mm.pmds:
                continue  # no huge PMD here (not present, or already split to PTEs)
            # copy_huge_pmd
            dst_lock = system.pmd_lock(dst_mm, idx * HPAGE_PMD_NR)
            src_lock = system.pmd_lock(src_mm, idx * HPAGE_PMD_NR)
            await dst_lock.lock()
            await src_lock.lock(SINGLE_DEPTH_NESTING)
            pmd = src_mm.pmds.get(idx)  # pmd = *src_pmd, under both locks
            if pmd is not None:
                if system.story is not None:
                    _tell_copy(system, pmd, src_mm.mid, dst_mm.mid, idx * HPAGE_PMD_NR)
                _copy_entry(system, pmd, dst_vma)
                if not pmd.migration:
                    large_folio(pmd.folio).entire_mapcount += 1  # folio_try_dup_anon_rmap_pmd
                dst_mm.pmds[idx] = _child_entry(pmd)
                if system.inflight_walks:
                    vpn = idx * HPAGE_PMD_NR
                    system.entry_copied(pmd.folio, (src_mm.mid, vpn), (dst_mm.mid, vpn))
                await spend(system, system.cost("pte_copy_ns"))
            src_lock.unlock()
            dst_lock.unlock()
    first = src_vma.start // PTRS_PER_PTE
    last = (src_vma.end - 1) // PTRS_PER_PTE
    # The parent's tables cannot come or go under us: fork holds its mmap_lock for write.
    tables = sorted(t for t in src_mm.ptls if first <= t <= last)
    ptes = src_mm.ptes
    dst_ptes = dst_mm.ptes
    dup_rmap = system.design.folio_dup_rmap
    for t in tables:
        lo = max(src_vma.start, t * PTRS_PER_PTE)
        hi = min(src_vma.end, (t + 1) * PTRS_PER_PTE)
        dst_ptl = system.ptl(dst_mm, lo)  # pte_alloc_map_lock
        src_ptl = system.ptl(src_mm, lo)
        await dst_ptl.lock()
        await src_ptl.lock(SINGLE_DEPTH_NESTING)
        copied = 0
        # The loop never awaits: story and in-flight walks cannot change under it.  The per-entry
        # work is _copy_entry and _child_entry inlined for present entries (the hot path of fork).
        story = system.story
        walks = system.inflight_walks
        for vpn in range(lo, hi):
            pte = ptes.get(vpn)  # ptep_get(src_pte), under both PTLs
            if pte is None:
                continue
            if story is not None:
                _tell_copy(system, pte, src_mm.mid, dst_mm.mid, vpn)
            folio = pte.folio
            if pte.migration or folio is ZERO_FOLIO:
                _copy_entry(system, pte, dst_vma)
                dst_ptes[vpn] = _child_entry(pte)
            else:
                folio.mapcount += 1
                folio.exclusive = False
                dup_rmap(folio, dst_vma)
                pte.writable = False
                copy = Pte(folio, False)
                copy.young = False  # pte_mkold
                dst_ptes[vpn] = copy
            copied += 1
            if walks:
                system.entry_copied(folio, (src_mm.mid, vpn), (dst_mm.mid, vpn))
        await spend(system, system.cost("pte_copy_ns") * copied)
        src_ptl.unlock()
        dst_ptl.unlock()


def _copy_entry(system: MmSystem, entry: Pte, dst_vma: Vma) -> None:
    """What copying one entry does to the parent's entry and the folio (both PTLs held).

    A migration entry (``copy_nonpresent_pte``): a writable one becomes readable in the parent
    too (``make_readable_migration_entry`` + ``set_pte_at(src_mm, ...)``), so parent and child
    both COW once the migration restores it, and the folio is no longer exclusive.  A present
    entry (``copy_present_ptes`` / ``copy_huge_pmd``): ``folio_try_dup_anon_rmap_ptes`` takes a
    mapping (PageAnonExclusive cleared) and ``ptep_set_wrprotect`` write-protects the parent.
    The shared zero page has no rmap.
    """
    folio = entry.folio
    if entry.migration:
        entry.writable = False
        folio.exclusive = False
    elif folio is not ZERO_FOLIO:
        folio.mapcount += 1
        folio.exclusive = False
        system.design.folio_dup_rmap(folio, dst_vma)
        entry.writable = False


def _tell_copy(system: MmSystem, entry: Pte, src: int, dst: int, vpn: int) -> None:
    story = system.story
    assert story is not None
    kind = "migration entry" if entry.migration else ("writable PTE" if entry.writable else "PTE")
    story.note("entry", f"copy_page_range reads mm{src} vpn {vpn}: {kind} of folio {entry.folio.fid}; "
               f"copies it to mm{dst}", folio=entry.folio.fid, mm=src, vpn=vpn)


def _child_entry(entry: Pte) -> Pte:
    """The child's copy: never writable (a COW mapping) and, when present, old (``pte_mkold`` in
    ``__copy_present_ptes``, ``pmd_mkold`` in ``copy_huge_pmd``)."""
    copy = Pte(entry.folio, False)
    copy.migration = entry.migration
    copy.young = entry.migration and entry.young
    return copy
