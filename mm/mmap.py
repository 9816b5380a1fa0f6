"""Mapping changes and teardown, after mm/mmap.c, mm/vma.c and mm/mremap.c.

* :func:`mmap_region` - a new anonymous mapping, merged into the previous VMA when it is adjacent
  and compatible (``vma_merge_new_range`` -> ``vma_expand`` under ``vma_prepare``);
* :func:`split_vma` - ``__split_vma``: ``anon_vma_clone`` then the boundary change under
  ``vma_prepare``/``vma_complete``;
* :func:`munmap` - ``do_vmi_munmap``: split the edges, write-lock and detach the VMAs, downgrade
  the mmap_lock, zap the PTEs and free the page tables (``unlink_anon_vmas``);
* :func:`mremap_move` - ``move_vma``: ``copy_vma`` (``anon_vma_clone``), ``move_page_tables``
  under the rmap locks (``take_rmap_locks``) and both PTLs, then unmap the old range;
* :func:`exit_mmap` - zap everything under ``mmap_read_lock``, then ``free_pgtables`` under
  ``mmap_write_lock``.
"""

from __future__ import annotations

from mm.cpu import spend
from mm.mmap_lock import mmap_write_downgrade, mmap_write_lock, mmap_write_unlock, vma_start_write
from mm.system import PAGE_TABLE_BYTES, ZERO_FOLIO, MmSystem
from mm.types import HPAGE_PMD_NR, PTRS_PER_PTE, Folio, MmStruct, Pte, Vma

__all__ = ["exit_mmap", "mmap_region", "mremap_move", "munmap", "split_vma", "unmap_vma", "zap_range"]


class _Op:
    """Set the task's current operation (lock_stat's contention point) for a block."""

    def __init__(self, system: MmSystem, name: str) -> None:
        self.task = system.engine.current
        self.name = name
        self.saved = "-"

    def __enter__(self) -> None:
        assert self.task is not None
        self.saved, self.task.op = self.task.op, self.name

    def __exit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.op = self.saved


async def mmap_region(system: MmSystem, mm: MmStruct, start: int, pages: int, *, thp: bool = False) -> Vma:
    """``mmap(MAP_PRIVATE|MAP_ANONYMOUS)`` at a fixed address (``MAP_FIXED_NOREPLACE``)."""
    with _Op(system, "mmap"):
        await mmap_write_lock(mm)
        try:
            if mm.vmas_in(start, start + pages):
                raise ValueError(f"mmap [{start},{start + pages}) overlaps a VMA of mm{mm.mid}")
            prev = mm.find_vma(start - 1) if start else None
            if prev is not None and prev.end == start and prev.thp == thp and prev.offset == 0:
                # vma_merge_new_range -> vma_expand: the previous VMA grows over the new range.
                await vma_start_write(prev)
                token = await system.design.vma_prepare([prev])
                prev.end = start + pages
                await system.design.vma_complete(token, [prev])
                system.ops.inc("mmap_merge")
                return prev
            vma = system.new_vma(mm, start, start + pages, thp=thp)
            await spend(system, system.cost("vma_dup_ns"))
            mm.insert_vma(vma)
            system.ops.inc("mmap")
            return vma
        finally:
            mmap_write_unlock(mm)


async def split_vma(system: MmSystem, vma: Vma, at: int) -> Vma:
    """``__split_vma``: returns the new VMA covering [at, vma.end); caller holds mmap write."""
    if not vma.start < at < vma.end:
        raise ValueError(f"split of {vma!r} at {at} is outside it")
    mm = vma.mm
    await vma_start_write(vma)
    new = system.new_vma(mm, at, vma.end, vma.pgoff + (at - vma.start), thp=vma.thp)
    await spend(system, system.cost("vma_dup_ns"))
    if vma.anon_vma is not None:
        await system.design.clone_vma(new, vma, "split")
    token = await system.design.vma_prepare([vma])
    vma.end = at
    mm.insert_vma(new)
    await system.design.vma_complete(token, [vma, new])
    await vma_start_write(new)
    system.ops.inc("vma_split")
    return new


async def _isolate(system: MmSystem, mm: MmStruct, start: int, end: int) -> list[Vma]:
    """Split VMAs straddling the edges of [start, end); return the VMAs inside it."""
    vmas = mm.vmas_in(start, end)
    if vmas and vmas[0].start < start:
        await split_vma(system, vmas[0], start)
    vmas = mm.vmas_in(start, end)
    if vmas and vmas[-1].end > end:
        await split_vma(system, vmas[-1], end)
    return mm.vmas_in(start, end)


async def munmap(system: MmSystem, mm: MmStruct, start: int, pages: int) -> int:
    """``do_vmi_munmap`` with ``unlock`` (the munmap syscall): returns pages unmapped."""
    with _Op(system, "munmap"):
        end = start + pages
        await mmap_write_lock(mm)
        vmas = await _isolate(system, mm, start, end)
        if not vmas:
            mmap_write_unlock(mm)
            return 0
        for vma in vmas:
            await vma_start_write(vma)
        for vma in vmas:
            mm.remove_vma(vma)  # vms_gather_munmap_vmas: detached, invisible to new faults
        mmap_write_downgrade(mm)  # vms_complete_munmap_vmas
        for vma in vmas:
            await unmap_vma(system, vma)
        await free_pgtables(system, mm, vmas)
        mm.mmap_lock.up_read()
        system.ops.inc("munmap")
        return sum(v.pages for v in vmas)


async def mremap_move(system: MmSystem, mm: MmStruct, old_start: int, pages: int, new_start: int) -> Vma:
    """``mremap(MREMAP_MAYMOVE|MREMAP_FIXED)`` of a whole range to ``new_start``."""
    with _Op(system, "mremap"):
        old_end = old_start + pages
        await mmap_write_lock(mm)
        try:
            if mm.vmas_in(new_start, new_start + pages):
                raise ValueError(f"mremap target [{new_start},{new_start + pages}) is mapped in mm{mm.mid}")
            vmas = await _isolate(system, mm, old_start, old_end)
            if len(vmas) != 1 or vmas[0].start != old_start or vmas[0].end != old_end:
                raise ValueError(f"mremap source [{old_start},{old_end}) is not one mapped VMA in mm{mm.mid}")
            vma = vmas[0]
            await vma_start_write(vma)
            # copy_vma: a new VMA at the target keeping vm_pgoff, linked into the same rmap.
            # An unfaulted VMA takes the new location as its pgoff (copy_vma), a faulted one keeps
            # its pgoff so its folios' index still finds them.
            pgoff = vma.pgoff if vma.anon_vma is not None else new_start
            new = system.new_vma(mm, new_start, new_start + pages, pgoff, thp=vma.thp)
            await spend(system, system.cost("vma_dup_ns"))
            if vma.anon_vma is not None:
                await system.design.clone_vma(new, vma, "remap")
            mm.insert_vma(new)
            await vma_start_write(new)
            # move_page_tables: copy_vma duplicated the VMA (the model never merges the target), so
            # need_rmap_locks is false for the anon_vma designs and move_ptes takes no rmap lock,
            # reading each entry under the PTL; a design whose walk gives no such order (the COW
            # context's vma_prepare: its context lock and remap bookkeeping) locks around the move.
            need_rmap_locks = system.design.MREMAP_FRESH_VMA_NEEDS_RMAP_LOCKS
            token = await system.design.vma_prepare([vma, new]) if need_rmap_locks else None
            await _move_ptes(system, vma, new)
            await system.design.vma_complete(token, [vma, new])
            await spend(system, system.cost("tlb_flush_ns"))
            # The old range, now empty, is unmapped (do_vmi_munmap without downgrade).
            mm.remove_vma(vma)
            await free_pgtables(system, mm, [vma])
            system.ops.inc("mremap")
            return new
        finally:
            mmap_write_unlock(mm)


async def _move_ptes(system: MmSystem, old: Vma, new: Vma) -> None:
    """``move_ptes``: per source table, old PTL then the new one nested."""
    mm = old.mm
    delta = new.start - old.start
    if old.thp:
        for idx in sorted(i for i in mm.pmds if old.start <= i * HPAGE_PMD_NR < old.end):
            if delta % HPAGE_PMD_NR:
                raise ValueError("mremap of a THP VMA must keep PMD alignment")
            src = system.pmd_lock(mm, idx * HPAGE_PMD_NR)
            dst = system.pmd_lock(mm, idx * HPAGE_PMD_NR + delta)
            await src.lock()
            await dst.lock(1)
            pmd = mm.pmds.pop(idx, None)  # read under the PMD lock
            if pmd is not None:
                mm.pmds[idx + delta // HPAGE_PMD_NR] = pmd
                if system.inflight_walks:
                    vpn = idx * HPAGE_PMD_NR
                    system.entry_copied(pmd.folio, (mm.mid, vpn), (mm.mid, vpn + delta))
            dst.unlock()
            src.unlock()
    first, last = old.start // PTRS_PER_PTE, (old.end - 1) // PTRS_PER_PTE
    for t in sorted(t for t in mm.ptls if first <= t <= last):
        lo, hi = max(old.start, t * PTRS_PER_PTE), min(old.end, (t + 1) * PTRS_PER_PTE)
        src = system.ptl(mm, lo)
        await src.lock()
        # The entries are read under the old PTL (``ptep_get_and_clear``): reclaim or a
        # migration walk may have changed them since the table was found.
        moving = {v: mm.ptes.pop(v) for v in range(lo, hi) if v in mm.ptes}
        # The target range may span two tables: each destination PTL is taken nested.
        for dst_table in sorted({(v + delta) // PTRS_PER_PTE for v in moving}):
            dst = system.ptl(mm, dst_table * PTRS_PER_PTE)
            if dst is not src:
                await dst.lock(1)
            for v, pte in moving.items():
                if (v + delta) // PTRS_PER_PTE == dst_table:
                    mm.ptes[v + delta] = pte
                    if system.story is not None:
                        system.story.note("entry", f"move_ptes moves mm{mm.mid} vpn {v} to vpn {v + delta} "
                                          f"(folio {pte.folio.fid})", folio=pte.folio.fid, mm=mm.mid, vpn=v)
                    if system.inflight_walks:
                        system.entry_copied(pte.folio, (mm.mid, v), (mm.mid, v + delta))
            if dst is not src:
                dst.unlock()
        await spend(system, system.cost("pte_ns") * len(moving))
        src.unlock()


async def zap_range(system: MmSystem, mm: MmStruct, start: int, end: int) -> list[Folio]:
    """``zap_pte_range`` over [start, end): clear entries under each table's PTL.

    Returns the folios whose last mapping went away; they are freed after the TLB flush, as
    ``tlb_finish_mmu`` does.
    """
    to_free: list[Folio] = []
    for idx in sorted(i for i in mm.pmds if start <= i * HPAGE_PMD_NR < end):
        lock = system.pmd_lock(mm, idx * HPAGE_PMD_NR)
        await lock.lock()
        pmd = mm.pmds.pop(idx, None)  # re-checked under the lock: reclaim may have unmapped it
        if pmd is not None and system.story is not None:
            _tell_zap(system, mm, idx * HPAGE_PMD_NR, pmd)
        if pmd is not None and not pmd.migration:
            _unmap_one(system, pmd, to_free, pmd=True)
        await spend(system, system.cost("zap_ns"))
        lock.unlock()
    first, last = start // PTRS_PER_PTE, (end - 1) // PTRS_PER_PTE
    for t in sorted(t for t in mm.ptls if first <= t <= last):
        lo, hi = max(start, t * PTRS_PER_PTE), min(end, (t + 1) * PTRS_PER_PTE)
        if not any(v in mm.ptes for v in range(lo, hi)):
            continue
        ptl = system.ptl(mm, lo)
        await ptl.lock()
        zapped = 0
        for v in range(lo, hi):  # read under the PTL: reclaim may have changed the table
            pte = mm.ptes.pop(v, None)
            if pte is None:
                continue
            if system.story is not None:
                _tell_zap(system, mm, v, pte)
            zapped += 1
            if not pte.migration and pte.folio is not ZERO_FOLIO:
                _unmap_one(system, pte, to_free)
        await spend(system, system.cost("zap_ns") * zapped)
        ptl.unlock()
    return to_free


def _tell_zap(system: MmSystem, mm: MmStruct, vpn: int, entry: Pte) -> None:
    story = system.story
    assert story is not None
    kind = "migration entry" if entry.migration else "PTE"
    story.note("entry", f"zap clears mm{mm.mid} vpn {vpn}: {kind} of folio {entry.folio.fid}",
               folio=entry.folio.fid, mm=mm.mid, vpn=vpn)


def _unmap_one(system: MmSystem, pte: Pte, to_free: list[Folio], *, pmd: bool = False) -> None:
    """``folio_remove_rmap_ptes`` (``zap_huge_pmd``: ``folio_remove_rmap_pmd``); an unmapped folio
    is pinned in the mmu_gather batch and freed (by whoever drops the last pin) after the TLB
    flush."""
    folio = pte.folio
    system.folio_remove_rmap(folio, pmd=pmd)
    if folio.mapcount == 0:
        folio.pins += 1
        to_free.append(folio)


async def unmap_vma(system: MmSystem, vma: Vma) -> None:
    """``unmap_vmas`` for one VMA, then the TLB flush and the deferred folio frees."""
    to_free = await zap_range(system, vma.mm, vma.start, vma.end)
    await spend(system, system.cost("tlb_flush_ns"))
    for folio in to_free:
        await system.folio_put(folio)


async def free_pgtables(system: MmSystem, mm: MmStruct, vmas: list[Vma]) -> None:
    """``free_pgtables``: ``unlink_anon_vmas`` per VMA, then free the PTE tables no VMA uses.

    With ``design.defer_pgtable_free`` (the COW context's tolerate-races variant) the tables are
    freed after an RCU grace period so an unlocked walker never touches freed page tables.
    """
    for vma in vmas:
        if vma.anon_vma is not None or vma.rmap is not None:
            await system.design.unlink_vma(vma)
        vma.freed = True
    # mm/memory.c free_pgtables -> free_pgd_range frees every table of the range no VMA uses any
    # more; the tables that still hold entries come from one pass over the entries (an exiting mm
    # has none) instead of a scan of all PTRS_PER_PTE slots of every table.  Same tables freed,
    # same order, same costs: only the Python search is shorter.
    occupied = {v // PTRS_PER_PTE for v in mm.ptes}
    unused = []
    for t in sorted(mm.ptls):
        if t not in occupied and not mm.vmas_in(t * PTRS_PER_PTE, (t + 1) * PTRS_PER_PTE):
            unused.append(t)
    for t in unused:
        del mm.ptls[t]
        system.pgtables -= 1
    if not unused:
        return
    if getattr(system.design, "defer_pgtable_free", False):
        nbytes = len(unused) * PAGE_TABLE_BYTES
        system.pgtables_deferred_bytes += nbytes
        system.rcu.kfree_rcu(f"mm{mm.mid} page tables", nbytes)
    else:
        await spend(system, system.cost("pgtable_free_ns") * len(unused))


async def exit_mmap(system: MmSystem, mm: MmStruct) -> None:
    """``exit_mmap``: unmap under the read lock, tear down under the write lock, drop the mm.

    Called when the last user leaves: ``mmput`` -> ``atomic_dec_and_test(&mm->mm_users)`` ->
    ``__mmput`` -> ``exit_mmap`` (kernel/fork.c), so ``mm_users`` is already 0 when the teardown
    starts and every ``mmget_not_zero`` (a COW-context walk's) fails from here on, long before
    the mm is gone (``mm.exiting``, then ``mm.alive = False`` at the end).
    """
    mm.exiting = True  # mm_users == 0
    if system.story is not None:
        system.story.note("exit", f"exit_mmap: mm{mm.mid} mm_users reached 0, teardown starts", mm=mm.mid)
    with _Op(system, "exit"):
        await mm.mmap_lock.down_read()
        for vma in mm.vmas:
            await unmap_vma(system, vma)
        mm.mmap_lock.up_read()
        await mmap_write_lock(mm)
        vmas = list(mm.vmas)
        for vma in vmas:
            mm.remove_vma(vma)  # (the kernel removes them after free_pgtables; no one looks between)
        await free_pgtables(system, mm, vmas)
        mm.alive = False
        system.mms.remove(mm)  # torn down: out of the oracle's search (MmSystem.mms)
        mmap_write_unlock(mm)
        await system.design.exit_mm(mm)
        system.ops.inc("exit")
