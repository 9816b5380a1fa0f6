"""Folio migration (NUMA balancing, compaction), after mm/migrate.c.

``migrate_folio_unmap`` locks the folio and pins its anon_vma (``folio_get_anon_vma``: RCU plus a
refcount, no rwsem), ``try_to_migrate`` replaces every PTE by a migration entry under the blocking
rmap read lock, the contents are copied, and ``remove_migration_ptes`` walks the *old* folio's
rmap (not mapped any more, so ``folio_lock_anon_vma_read`` is not usable: the anon_vma is locked
directly) to install the new folio where the entries are.
"""

from __future__ import annotations

from mm.memory import spend
from mm.rmap import page_vma_mapped, rmap_walk
from mm.rmap_design import RmapWalkControl
from mm.system import MmSystem
from mm.types import HPAGE_PMD_NR, Folio, Pte, Vma

__all__ = ["migrate_folio", "remove_migration_ptes", "try_to_migrate"]


def _lock_for(system: MmSystem, vma: Vma, vpn: int, folio: Folio):  # type: ignore[no-untyped-def]
    return system.pmd_lock(vma.mm, vpn) if folio.order else system.ptl(vma.mm, vpn)


async def try_to_migrate(system: MmSystem, folio: Folio, *, locked: bool = False) -> bool:
    """``try_to_migrate`` (folio locked); ``locked`` is TTU_RMAP_LOCKED (THP split)."""
    costs = system.costs

    async def try_to_migrate_one(vma: Vma, vpn: int) -> bool:
        ptl = _lock_for(system, vma, vpn, folio)
        await ptl.lock()
        pte = page_vma_mapped(vma, vpn, folio)
        if pte is not None:
            pte.migration = True  # set_pte_at(migration entry)
            folio.mapcount -= 1
        await spend(system, costs.pvmw_ns + costs.clear_ns)
        ptl.unlock()
        return True

    rwc = RmapWalkControl("try_to_migrate", try_to_migrate_one, anon_lock=True, locked=locked,
                          may_sleep=True, done=lambda: folio.mapcount == 0)
    await rmap_walk(system, folio, rwc)
    # migrate_folio_unmap passes TTU_BATCH_FLUSH for MIGRATE_ASYNC (NUMA balancing, async
    # compaction; v6.4+): try_to_migrate_one defers each PTE's flush (set_tlb_ubc_flush_pending)
    # and one batched shootdown (try_to_unmap_flush) follows, after the rmap lock is dropped.
    # MIGRATE_SYNC would flush every PTE under its PTL instead (ptep_clear_flush): not modelled.
    await spend(system, costs.tlb_ipi_ns)
    return folio.mapcount == 0


async def remove_migration_ptes(system: MmSystem, src: Folio, dsts: list[Folio], *, locked: bool = False) -> int:
    """``remove_migration_ptes(src, dst)``: entries for ``src`` become mappings of ``dsts``.

    ``dsts`` is one folio for migration, or the order-0 folios of a split THP (``remap_page``):
    a migration PMD then becomes 512 PTEs, one per small folio.  Returns entries restored.
    """
    costs = system.costs
    restored = 0

    async def remove_migration_pte(vma: Vma, vpn: int) -> bool:
        nonlocal restored
        mm = vma.mm
        entry = page_vma_mapped(vma, vpn, src, migration=True)
        if entry is None:
            await spend(system, costs.pvmw_ns)
            return True
        if src.order and len(dsts) > 1:
            # remap_page after a split: the PMD entry goes, 512 PTEs come under the PTE lock.
            lock = system.pmd_lock(mm, vpn)
            await lock.lock()
            if mm.pmds.get(vpn // HPAGE_PMD_NR) is entry:
                del mm.pmds[vpn // HPAGE_PMD_NR]
                ptl = system.ptl(mm, vpn)
                await ptl.lock()
                for i, small in enumerate(dsts):
                    pte = Pte(small, entry.writable)
                    mm.ptes[vpn + i] = pte
                    small.mapcount += 1
                await spend(system, costs.pte_ns * len(dsts))
                ptl.unlock()
                restored += 1
            lock.unlock()
            return True
        ptl = _lock_for(system, vma, vpn, src)
        await ptl.lock()
        if page_vma_mapped(vma, vpn, src, migration=True) is entry:
            new = Pte(dsts[0], entry.writable)
            if src.order:
                mm.pmds[vpn // HPAGE_PMD_NR] = new
            else:
                mm.ptes[vpn] = new
            dsts[0].mapcount += 1
            restored += 1
        await spend(system, costs.pvmw_ns + costs.pte_ns)
        ptl.unlock()
        return True

    rwc = RmapWalkControl("remove_migration_ptes", remove_migration_pte, anon_lock=False, locked=locked)
    await rmap_walk(system, src, rwc, migration=True)
    return restored


async def migrate_folio(system: MmSystem, folio: Folio) -> bool:
    """``migrate_pages`` for one folio (MIGRATE_SYNC): True if it moved."""
    task = system.engine.current
    assert task is not None
    saved, task.op = task.op, "migrate"
    try:
        if folio.freed:
            return False
        lock = system.folio_lock_of(folio)
        await lock.folio_lock()
        if folio.freed or folio.mapcount == 0:
            lock.folio_unlock()
            return False
        pin = system.design.folio_get_anon_vma(folio)
        if pin is None:  # the anon_vma is going away: nothing to migrate
            lock.folio_unlock()
            return False
        folio.pins += 1
        unmapped = await try_to_migrate(system, folio)
        if not unmapped:
            # Some mapping was not reached: put the entries back on the old folio.
            await remove_migration_ptes(system, folio, [folio])
            await system.design.put_anon_vma(pin)
            lock.folio_unlock()
            await system.folio_put(folio)
            system.ops.inc("migrate_fail")
            return False
        new = await system.alloc_folio(folio.index, folio.order)
        new.exclusive = folio.exclusive
        await spend(system, system.costs.copy_page_ns * folio.nr_pages)
        await system.design.folio_migrate_mapping(folio, new)
        restored = await remove_migration_ptes(system, folio, [new])
        new.exclusive = folio.exclusive and restored <= 1
        if new.mapcount:
            system.lru_add(new)
        await system.design.put_anon_vma(pin)
        lock.folio_unlock()
        await system.folio_put(folio)  # the old folio goes with our pin
        if new.mapcount == 0 and not new.freed and not new.pins:
            await system.free_folio(new)  # every mapping went away while it migrated
        system.ops.inc("migrate")
        return True
    finally:
        task.op = saved
