"""Anonymous page faults, after mm/memory.c (and the THP fault of mm/huge_memory.c).

Entry is :func:`handle_mm_fault` as the arch fault handler drives it: try the per-VMA lock
(``lock_vma_under_rcu``), handle the fault under it, and on ``VM_FAULT_RETRY`` (first touch that
cannot take the mmap_lock) or a failed VMA read lock, retry under ``mmap_read_lock``.
"""

from __future__ import annotations

from enum import Enum

from concurrency.spinlock import QSpinlock
from mm.cpu import spend
from mm.mmap_lock import lock_vma_under_rcu
from mm.system import ZERO_FOLIO, MmSystem
from mm.types import HPAGE_PMD_NR, Folio, MmStruct, Pte, Vma, large_folio

__all__ = ["Fault", "handle_mm_fault", "spend", "wp_can_reuse_anon_folio"]


class Fault(Enum):
    OK = "ok"
    RETRY = "retry"  # VM_FAULT_RETRY
    SIGSEGV = "sigsegv"
    FALLBACK = "fallback"  # VM_FAULT_FALLBACK: the huge PMD was split, handle the fault per PTE


async def handle_mm_fault(system: MmSystem, mm: MmStruct, vpn: int, write: bool) -> Fault:
    """The arch fault path: per-VMA lock first, then the mmap_lock fallback."""
    task = system.engine.current
    assert task is not None
    saved, task.op = task.op, "fault"
    try:
        await spend(system, system.cost("fault_entry_ns"))
        while True:
            vma = lock_vma_under_rcu(system, mm, vpn)
            if vma is not None:
                ret = await _handle_fault(system, vma, vpn, write, vma_locked=True)
                vma.lock.vma_end_read()
                if ret is not Fault.RETRY:
                    system.ops.inc("fault_vma_locked")
                    return ret
                system.ops.inc("fault_retry")
            await mm.mmap_lock.down_read()
            vma = mm.find_vma(vpn)
            if vma is None:
                mm.mmap_lock.up_read()
                return Fault.SIGSEGV
            ret = await _handle_fault(system, vma, vpn, write, vma_locked=False)
            mm.mmap_lock.up_read()
            if ret is not Fault.RETRY:
                system.ops.inc("fault_mmap_locked")
                return ret
            # a migration entry was waited for: fault again from the top
    finally:
        task.op = saved


async def vmf_anon_prepare(system: MmSystem, vma: Vma, vma_locked: bool) -> Fault:
    """``vmf_anon_prepare``: first touch needs the mmap_lock (adjacent VMAs are looked at for
    anon_vma reuse), so under a VMA lock only ``mmap_read_trylock`` is allowed, else RETRY."""
    if vma.anon_vma is not None:
        return Fault.OK
    # ANON_VMA_LAZY (PATCH 10/15): vma_prepare_anon_vma_lazy() before the mmap_read_trylock.
    if await system.design.vma_prepare_anon_vma_lazy(vma):
        system.ops.inc("anon_vma_prepare_lazy")
        return Fault.OK
    mm = vma.mm
    if vma_locked:
        if not mm.mmap_lock.down_read_trylock():
            return Fault.RETRY
        try:
            await system.design.anon_vma_prepare(vma)
        finally:
            mm.mmap_lock.up_read()
    else:
        await system.design.anon_vma_prepare(vma)
    system.ops.inc("anon_vma_prepare")
    return Fault.OK


def _thp_base(vma: Vma, vpn: int) -> int | None:
    """The PMD-aligned base of ``vpn`` if a THP fits there (``thp_vma_suitable_order``)."""
    if not vma.thp:
        return None
    base = vpn - vpn % HPAGE_PMD_NR
    if base >= vma.start and base + HPAGE_PMD_NR <= vma.end and (vma.pgoff_of(base) % HPAGE_PMD_NR == 0):
        return base
    return None


async def _handle_fault(system: MmSystem, vma: Vma, vpn: int, write: bool, *, vma_locked: bool) -> Fault:
    """``__handle_mm_fault`` for an anonymous private VMA."""
    mm = vma.mm
    base = _thp_base(vma, vpn)
    if base is not None:
        pmd = mm.pmds.get(base // HPAGE_PMD_NR)
        if pmd is None and not any(v in mm.ptes for v in range(base, base + HPAGE_PMD_NR)):
            return await do_huge_pmd_anonymous_page(system, vma, base, vma_locked)
        if pmd is not None:
            if pmd.migration:
                await _migration_entry_wait(system, vma, base, pmd)
                return Fault.RETRY
            if write and not pmd.writable:
                ret = await do_huge_pmd_wp_page(system, vma, base, pmd)
                if ret is not Fault.FALLBACK:
                    return ret
                # __handle_mm_fault goes on to handle_pte_fault under the same lock
            else:
                pmd.young = True
                return Fault.OK
    pte = mm.ptes.get(vpn)
    if pte is None:
        if not write:
            return await do_read_zero_page(system, vma, vpn)
        return await do_anonymous_page(system, vma, vpn, vma_locked)
    if pte.migration:
        await _migration_entry_wait(system, vma, vpn, pte)
        return Fault.RETRY
    if write and not pte.writable:
        return await do_wp_page(system, vma, vpn, vma_locked)
    pte.young = True
    return Fault.OK


async def _migration_entry_wait(system: MmSystem, vma: Vma, vpn: int, entry: Pte) -> None:
    """``migration_entry_wait``: sleep until the migrating folio is unlocked.

    If the entry is still there afterwards while no migration holds the folio, the migration's
    ``remove_migration_ptes`` walk missed it (an unlocked walk racing with fork can): in the kernel
    the task would fault on it forever.  The simulator records that as corruption and drops the
    entry (the data is lost; the retried fault maps a fresh page) so the run can go on.
    """
    folio = entry.folio
    lock = system.folio_lock_of(folio)
    await lock.folio_lock()
    lock.folio_unlock()
    system.ops.inc("migration_entry_wait")
    mm = vma.mm
    # A THP's migration entry is a PMD, or one of its PTEs (a PTE-mapped THP, or a PMD frozen
    # into PTE migration entries by a split).
    huge = mm.pmds.get(vpn // HPAGE_PMD_NR) is entry
    table = mm.pmds if huge else mm.ptes
    key = vpn // HPAGE_PMD_NR if huge else vpn
    if table.get(key) is entry and (folio.freed or not folio.pins):
        ptl = system.pmd_lock(mm, vpn) if huge else system.ptl(mm, vpn)
        await ptl.lock()
        if table.get(key) is entry:
            del table[key]
            if system.story is not None:
                system.story.note("corruption", f"mm{mm.mid} vpn {vpn}: migration entry of folio {folio.fid} "
                                  "is still there with no migration in progress: stale", folio=folio.fid,
                                  mm=mm.mid, vpn=vpn)
            system.note_corruption(mm, vpn, folio, f"stale migration entry for folio {folio.fid} "
                                                   "(the migration's rmap walk missed it)")
            system.ops.inc("stale_migration_entry")
        ptl.unlock()


async def do_read_zero_page(system: MmSystem, vma: Vma, vpn: int) -> Fault:
    """``do_anonymous_page`` for a read: map the shared zero page (no folio, no rmap)."""
    ptl = system.ptl(vma.mm, vpn)
    await ptl.lock()
    if vpn not in vma.mm.ptes:
        vma.mm.ptes[vpn] = Pte(ZERO_FOLIO, False)
        await spend(system, system.cost("pte_ns"))
    ptl.unlock()
    system.ops.inc("fault_zero_page")
    return Fault.OK


async def do_anonymous_page(system: MmSystem, vma: Vma, vpn: int, vma_locked: bool) -> Fault:
    """``do_anonymous_page`` for a write: allocate and zero a folio outside locks, then map it
    under the PTE lock with ``folio_add_new_anon_rmap`` (no rmap lock)."""
    ret = await vmf_anon_prepare(system, vma, vma_locked)
    if ret is not Fault.OK:
        return ret
    folio = await system.alloc_folio(vma.pgoff_of(vpn))
    await spend(system, system.cost("zero_page_ns"))
    await _map_new_folio(system, vma, vpn, folio, system.ptl(vma.mm, vpn), vma.mm.ptes, vpn)
    system.ops.inc("fault_anon")
    return Fault.OK


async def _map_new_folio(system: MmSystem, vma: Vma, vpn: int, folio: Folio, lock: QSpinlock,
                         table: dict[int, Pte], key: int) -> None:
    """The tail both anonymous faults share: under the PTE (or PMD) lock, recheck the entry is
    still empty, ``folio_add_new_anon_rmap``, set the entry, add to the LRU; a racing fault that
    got there first means our folio is freed instead."""
    await lock.lock()
    if key in table:
        lock.unlock()
        await system.free_folio(folio)
        return
    await system.design.folio_add_new_anon_rmap(folio, vma, vpn, True)
    folio.exclusive = True
    folio.mapcount = 1
    if folio.order:
        large_folio(folio).entire_mapcount = 1  # folio_add_new_anon_rmap(..., RMAP_LEVEL_PMD)
    table[key] = Pte(folio, True)
    if system.story is not None:
        system.story.note("entry", f"fault maps new folio {folio.fid} at mm{vma.mm.mid} vpn {vpn}", folio=folio.fid,
                          mm=vma.mm.mid, vpn=vpn)
    await spend(system, system.cost("pte_ns"))
    system.lru_add(folio)
    lock.unlock()


def wp_can_reuse_anon_folio(system: MmSystem, folio: Folio) -> bool:
    """``wp_can_reuse_anon_folio``: small folio, only our mapping, no extra pins, and the folio
    lock taken without blocking (we hold the PTL)."""
    if folio.order or folio.mapcount != 1 or folio.pins:
        return False
    lock = system.folio_lock_of(folio)
    if not lock.folio_trylock():
        return False
    reusable = folio.mapcount == 1 and not folio.pins
    if not reusable:
        lock.folio_unlock()
    return reusable


async def do_wp_page(system: MmSystem, vma: Vma, vpn: int, vma_locked: bool) -> Fault:
    """``do_wp_page``: reuse an exclusive (or reusable) folio, else ``wp_page_copy``."""
    mm = vma.mm
    ptl = system.ptl(mm, vpn)
    await ptl.lock()
    pte = mm.ptes.get(vpn)
    if pte is None or pte.writable or pte.migration:
        ptl.unlock()
        return Fault.OK  # raced: someone else handled it
    old = pte.folio
    if old is not ZERO_FOLIO:
        if system.story is not None:
            system.story.note("entry", f"do_wp_page on mm{mm.mid} vpn {vpn} (folio {old.fid}, "
                              f"{'exclusive' if old.exclusive else 'shared'}, mapcount {old.mapcount})",
                              folio=old.fid, mm=mm.mid, vpn=vpn)
        if old.exclusive:
            pte.writable = True  # wp_page_reuse
            ptl.unlock()
            system.ops.inc("cow_reuse")
            return Fault.OK
        if wp_can_reuse_anon_folio(system, old):
            await system.design.folio_move_anon_rmap(old, vma)
            old.exclusive = True
            lock = old.lock
            assert lock is not None
            lock.folio_unlock()
            pte.writable = True
            ptl.unlock()
            system.ops.inc("cow_reuse")
            return Fault.OK
    ptl.unlock()
    # wp_page_copy
    ret = await vmf_anon_prepare(system, vma, vma_locked)
    if ret is not Fault.OK:
        return ret
    new = await system.alloc_folio(vma.pgoff_of(vpn))
    await spend(system, system.cost("zero_page_ns") if old is ZERO_FOLIO else system.cost("copy_page_ns"))
    await ptl.lock()
    # pte_same(ptep_get(vmf->pte), vmf->orig_pte): the entry is still the one read before the
    # lock was dropped.  A migration walk may have turned it into a migration entry meanwhile.
    if mm.ptes.get(vpn) is not pte or pte.writable or pte.migration:
        ptl.unlock()
        await system.free_folio(new)
        return Fault.OK
    await spend(system, system.cost("tlb_flush_ns"))  # ptep_clear_flush
    await system.design.folio_add_new_anon_rmap(new, vma, vpn, True)
    new.exclusive = True
    new.mapcount = 1
    mm.ptes[vpn] = Pte(new, True)
    if system.story is not None:
        system.story.note("entry", f"wp_page_copy: mm{mm.mid} vpn {vpn} now maps new folio {new.fid}, not folio "
                          f"{old.fid}", folio=old.fid, mm=mm.mid, vpn=vpn)
    system.lru_add(new)
    free_old = False
    if old is not ZERO_FOLIO:
        system.folio_remove_rmap(old)  # folio_remove_rmap_pte (a THP's page: maybe a deferred split)
        free_old = old.mapcount == 0 and not old.pins
    ptl.unlock()
    if free_old:
        await system.free_folio(old)
    system.ops.inc("cow_copy")
    return Fault.OK


async def do_huge_pmd_anonymous_page(system: MmSystem, vma: Vma, base: int, vma_locked: bool) -> Fault:
    """``do_huge_pmd_anonymous_page``: an order-9 folio mapped by one PMD under the PMD lock."""
    ret = await vmf_anon_prepare(system, vma, vma_locked)
    if ret is not Fault.OK:
        return ret
    mm = vma.mm
    folio = await system.alloc_folio(vma.pgoff_of(base), order=9)
    await spend(system, system.cost("zero_page_ns") * HPAGE_PMD_NR)
    await _map_new_folio(system, vma, base, folio, system.pmd_lock(mm, base), mm.pmds, base // HPAGE_PMD_NR)
    system.ops.inc("fault_thp")
    return Fault.OK


async def do_huge_pmd_wp_page(system: MmSystem, vma: Vma, base: int, pmd: Pte) -> Fault:
    """``do_huge_pmd_wp_page`` (mm/huge_memory.c): reuse the THP when its page is
    PageAnonExclusive or, under the folio lock, when the PMD holds its only reference
    (``folio_ref_count(folio) == 1``: ``folio_move_anon_rmap``, then exclusive); otherwise
    ``__split_huge_pmd`` (the PMD lock only, no rmap lock) and VM_FAULT_FALLBACK, so the fault
    copies one 4 KiB page (``do_wp_page``).  The folio stays whole: it is split later, by the
    deferred split queue if it ends up partially mapped (mm/huge_memory.py).

    The folio lock is tried under the PMD lock; on failure the PMD lock is dropped, the folio
    lock waited for and the PMD rechecked (``pmd_same``).  Not modelled: reuse of a PTE-mapped
    THP by ``__wp_can_reuse_large_anon_folio`` (v6.15+; the PTE fault here always copies).
    """
    from mm.huge_memory import split_huge_pmd

    mm = vma.mm
    folio = pmd.folio
    idx = base // HPAGE_PMD_NR
    lock = system.pmd_lock(mm, base)
    await lock.lock()
    # pmd_same(*vmf->pmd, orig_pmd): read before the lock, it may have become a migration entry.
    if mm.pmds.get(idx) is not pmd or pmd.migration:
        lock.unlock()
        return Fault.OK  # return 0: raced, the access faults again if it still needs to
    reuse = folio.exclusive
    if not reuse:
        flock = system.folio_lock_of(folio)
        if not flock.folio_trylock():
            folio.pins += 1  # folio_get
            lock.unlock()
            await flock.folio_lock()
            await lock.lock()
            if mm.pmds.get(idx) is not pmd or pmd.migration:
                lock.unlock()
                flock.folio_unlock()
                await system.folio_put(folio)  # may free it: every mapping went meanwhile
                return Fault.OK
            folio.pins -= 1  # folio_put: the PMD still maps it
        reuse = folio.exclusive
        if not reuse and folio.mapcount == 1 and not folio.pins:  # folio_ref_count(folio) == 1
            await system.design.folio_move_anon_rmap(folio, vma)
            folio.exclusive = reuse = True
        flock.folio_unlock()
    if reuse:
        pmd.writable = True
        lock.unlock()
        system.ops.inc("cow_reuse_thp")
        return Fault.OK
    lock.unlock()
    await split_huge_pmd(system, vma, base, pmd)
    return Fault.FALLBACK
