"""THP split, after mm/huge_memory.c ``__folio_split``.

The anon_vma write lock is taken "to serialise against parallel split or collapse operations" and
held across ``unmap_folio`` (try_to_migrate with TTU_RMAP_LOCKED | TTU_SPLIT_HUGE_PMD: every PMD
mapping becomes 512 PTE migration entries), the split itself and ``remap_page``, which calls
``remove_migration_ptes(folio, folio, RMP_LOCKED)`` once for each resulting folio: 512 locked
rmap walks, each visiting every VMA of the family that covers the range.  For anon_vma a THP split
excludes every rmap walker and every structural change of the whole fork family for all of it.
"""

from __future__ import annotations

from mm.cpu import spend
from mm.migrate import remove_migration_ptes, try_to_migrate
from mm.system import MmSystem
from mm.types import HPAGE_PMD_NR, Folio, Pte, Vma, large_folio

__all__ = ["SHRINK_BATCH", "deferred_split_scan", "split_huge_folio", "split_huge_pmd"]

SHRINK_BATCH = 128  # include/linux/shrinker.h: objects a shrinker scans per call by default


async def split_huge_folio(system: MmSystem, folio: Folio) -> bool:
    """``split_folio``: an order-9 folio becomes 512 order-0 folios; True if it split."""
    task = system.engine.current
    assert task is not None
    saved, task.op = task.op, "thp_split"
    try:
        if folio.freed or folio.order == 0:
            return False
        lock = system.folio_lock_of(folio)
        await lock.folio_lock()
        done, to_put = await _folio_split(system, folio)
        lock.folio_unlock()
        for f in to_put:
            await system.folio_put(f)  # frees it if nothing maps it any more
        return done
    finally:
        task.op = saved


async def _folio_split(system: MmSystem, folio: Folio) -> tuple[bool, list[Folio]]:
    """``__folio_split`` with the folio locked: whether it split, and the references to drop
    (``folio_put``) once the caller unlocked it."""
    if folio.freed or folio.order == 0:
        return False, []
    design = system.design
    pin = design.folio_get_anon_vma(folio)
    if pin is None:  # __folio_split: no anon_vma to pin -> -EBUSY
        return False, []
    folio.pins += 1
    token = await design.rmap_write_lock(folio)
    if not await try_to_migrate(system, folio, locked=True, split_pmd=True):  # unmap_folio
        # A mapping was not reached: the refcount freeze fails; remap and give up.
        await remove_migration_ptes(system, folio, folio, locked=True)
        await design.rmap_write_unlock(token)
        await design.put_anon_vma(pin)
        system.ops.inc("thp_split_fail")
        return False, [folio]
    await spend(system, system.cost("split_ns"))
    tails = system.split_folio(large_folio(folio))
    for small in tails:
        # Each new folio starts with the split's own reference (folio_ref_unfreeze): it is
        # dropped with folio_put at the end, so a folio unmapped meanwhile (a COW copy
        # after remap_page) is freed exactly once, by whoever drops the last reference.
        small.pins += 1
    await design.folio_split(folio, tails)
    for small in tails:  # remap_page: one locked walk per resulting folio
        await remove_migration_ptes(system, small, small, locked=True)
    await design.rmap_write_unlock(token)
    folio.pins -= 1  # the head is retired by the split, not freed
    await design.put_anon_vma(pin)
    system.ops.inc("thp_split")
    return True, tails


async def split_huge_pmd(system: MmSystem, vma: Vma, base: int, pmd: Pte) -> bool:
    """``__split_huge_pmd(vma, pmd, address, freeze=false)``: under the PMD lock alone (no rmap
    lock, no folio lock), ``__split_huge_pmd_locked`` withdraws the deposited page table, fills
    it with 512 PTEs for the THP's pages (the PMD's write and young bits; PageAnonExclusive stays
    per page), turns the PMD mapping into PTE mappings (``folio_add_anon_rmap_ptes`` of 512,
    ``folio_remove_rmap_pmd``: the mapcount grows by 511) and ``pmd_populate``s the table.  The
    folio is not split.  True if the PMD was still the present huge ``pmd`` (re-checked under the
    lock; a PMD that became a migration entry meanwhile is left to the migration here, where the
    kernel would split it into PTE migration entries: the retried access waits either way)."""
    mm = vma.mm
    idx = base // HPAGE_PMD_NR
    lock = system.pmd_lock(mm, base)
    await lock.lock()
    if mm.pmds.get(idx) is not pmd or pmd.migration:
        lock.unlock()
        return False
    folio = large_folio(pmd.folio)
    del mm.pmds[idx]
    system.ptl(mm, base)  # the deposited table (pgtable_trans_huge_withdraw)
    for i in range(folio.nr_pages):
        pte = Pte(folio, pmd.writable)
        pte.young = pmd.young
        mm.ptes[base + i] = pte
    folio.mapcount += folio.nr_pages - 1
    folio.entire_mapcount -= 1
    if system.story is not None:
        system.story.note("entry", f"__split_huge_pmd: mm{mm.mid} vpn {base}: the PMD of folio {folio.fid} becomes "
                          f"{folio.nr_pages} PTEs", folio=folio.fid, mm=mm.mid, vpn=base)
    await spend(system, system.cost("pte_ns") * folio.nr_pages)
    lock.unlock()
    system.ops.inc("thp_split_pmd")
    return True


async def deferred_split_scan(system: MmSystem, nr_to_scan: int = SHRINK_BATCH) -> int:
    """``deferred_split_scan`` (the THP shrinker): take up to ``nr_to_scan`` folios off the queue
    (``folio_try_get``), then split each that is still partially mapped if ``folio_trylock``
    succeeds; one that did not split goes back on the queue.  Returns folios split."""
    task = system.engine.current
    assert task is not None
    saved, task.op = task.op, "thp_split"
    queue = system.deferred_split
    try:
        batch = []
        for fid in list(queue)[:nr_to_scan]:
            folio = queue.pop(fid)
            folio.pins += 1  # folio_try_get
            batch.append(folio)
        split = 0
        for folio in batch:
            done = False
            lock = system.folio_lock_of(folio)
            if not folio.freed and lock.folio_trylock():
                done, to_put = await _folio_split(system, folio)
                lock.folio_unlock()
                for f in to_put:
                    await system.folio_put(f)
            if done:
                split += 1
                system.ops.inc("thp_split_deferred")
            elif not folio.freed and 0 < folio.mapcount < folio.nr_pages and not folio.entire_mapcount:
                queue[folio.fid] = folio  # still partially mapped: back on the queue
            await system.folio_put(folio)
        return split
    finally:
        task.op = saved
