"""Folio migration (NUMA balancing, compaction), after mm/migrate.c.

``migrate_folio_unmap`` locks the folio and pins its anon_vma (``folio_get_anon_vma``: RCU plus a
refcount, no rwsem), ``try_to_migrate`` replaces every PTE by a migration entry under the blocking
rmap read lock, the contents are copied, ``folio_migrate_mapping`` gives the new folio the old
one's ``->mapping``, and ``remove_migration_ptes(src, dst)`` walks the *new* folio's rmap
(``rmap_walk(dst, &rwc)`` with ``rwc.arg = src``; not mapped yet, so ``folio_lock_anon_vma_read``
is not usable: the anon_vma is locked directly) to install the new folio where the entries for
the old one are.
"""

from __future__ import annotations

from mm.cpu import spend
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
            # ptep_clear_flush + set_pte_at(migration entry): the slot gets a new value, so any
            # pte_same() check of a fault that read the old one fails.
            entry = Pte(folio, pte.writable)
            entry.migration = True
            entry.young = pte.young
            if folio.order:
                vma.mm.pmds[vpn // HPAGE_PMD_NR] = entry
            else:
                vma.mm.ptes[vpn] = entry
            folio.mapcount -= 1
            if system.story is not None:
                system.story.note("entry", f"try_to_migrate_one: mm{vma.mm.mid} vpn {vpn} becomes a migration entry "
                                  f"for folio {folio.fid}", folio=folio.fid, mm=vma.mm.mid, vpn=vpn)
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
    """``remove_migration_ptes(src, dst, locked)``: entries for ``src`` become mappings of ``dsts``.

    ``dsts`` is one folio for migration (``src`` itself when the migration gives up), or the
    order-0 folios of a split THP (``remap_page``): a migration PMD then becomes 512 PTEs, one per
    small folio.  Returns entries restored.

    mm/migrate.c walks the *destination*: ``rmap_walk(dst, &rwc)`` (``rmap_walk_locked`` when
    ``locked``) with ``rwc.arg = src``, and ``remove_migration_pte`` looks for migration entries
    that point at ``src`` (the oracle is told so with ``sought=src``).  The walk finds the same
    rmap anchor and takes the same lock as a walk of ``src`` would: ``folio_migrate_mapping``
    copied ``src->mapping`` into ``dst`` before (anon_vma: ``rmap_walk_anon_lock`` without
    ``anon_lock`` locks ``folio_anon_vma(dst)``, the anon_vma the caller pinned through ``src``;
    COW context: ``dst`` holds its own reference on ``src``'s context), and ``dst`` has ``src``'s
    index and order.  What differs is what the design sees of the folio: the COW context's
    exclusive short-cut reads ``dst``'s mapcount, 0 when the walk starts and one more for every
    entry restored (``folio_add_anon_rmap_pte`` before ``set_pte_at``), and its PageAnonExclusive,
    which ``dst`` gets only from a restored exclusive entry (``RMAP_EXCLUSIVE`` for an entry that
    is not ``is_readable_migration_entry``; ``folio_migrate_flags`` does not copy it).
    """
    costs = system.costs
    restored = 0
    dst = dsts[0]

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
            new = Pte(dst, entry.writable)
            if src.order:
                mm.pmds[vpn // HPAGE_PMD_NR] = new
            else:
                mm.ptes[vpn] = new
            # folio_add_anon_rmap_pte(dst, ..., RMAP_EXCLUSIVE if the entry was writable or
            # readable-exclusive: try_to_migrate_one made it so for a PageAnonExclusive folio and
            # fork's copy_nonpresent_pte makes it readable and clears ``src.exclusive``).
            dst.mapcount += 1
            if entry.writable or src.exclusive:
                dst.exclusive = True
            restored += 1
            if system.story is not None:
                system.story.note("entry", f"remove_migration_pte: mm{mm.mid} vpn {vpn} maps folio {dst.fid} in "
                                  f"place of folio {src.fid}'s migration entry", folio=src.fid, mm=mm.mid, vpn=vpn)
        await spend(system, costs.pvmw_ns + costs.pte_ns)
        ptl.unlock()
        return True

    rwc = RmapWalkControl("remove_migration_ptes", remove_migration_pte, anon_lock=False, locked=locked)
    if len(dsts) > 1:
        # THP split (remap_page): the model keeps one migration PMD pointing at the head and turns
        # it into 512 PTEs at once, so it walks the head's rmap (the same anchor as the small
        # folios, and their index range together).  The kernel's unmap_folio froze the PMD into
        # PTE migration entries (TTU_SPLIT_HUGE_PMD) and remap_page calls
        # remove_migration_ptes(folio, folio) for each small folio: source and destination are
        # one folio there, so there is no separate destination to walk.  The COW context's
        # short-cut reads the head's mapcount here, which stays 0 (the small folios take the
        # mappings), where the kernel reads each small folio's (0, then 1 after its first
        # restored entry): both are <= 1 whenever the test is made after offset 0 of one context.
        await rmap_walk(system, src, rwc, migration=True)
    else:
        await rmap_walk(system, dst, rwc, migration=True, sought=src)
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
        # The migration's own reference on the new folio, dropped by folio_put(dst) at the end of
        # migrate_folio_move: an exit that zaps a restored mapping while remove_migration_ptes is
        # still restoring the others must not free the folio under it.
        new.pins += 1
        # PG_anon_exclusive is "always migrated via migration entries" (folio_migrate_flags):
        # the new folio has it only once remove_migration_pte restored an exclusive entry.
        new.exclusive = False
        await spend(system, system.costs.copy_page_ns * folio.nr_pages)
        await system.design.folio_migrate_mapping(folio, new)
        restored = await remove_migration_ptes(system, folio, [new])
        new.exclusive = new.exclusive and restored <= 1
        if new.mapcount:
            system.lru_add(new)
        await system.design.put_anon_vma(pin)
        lock.folio_unlock()
        await system.folio_put(folio)  # the old folio goes with our pin
        await system.folio_put(new)  # frees it if every mapping went away while it migrated
        system.ops.inc("migrate")
        return True
    finally:
        task.op = saved
