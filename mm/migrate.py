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
from mm.rmap import folio_ptes, page_vma_mapped, rmap_walk
from mm.rmap_design import RmapWalkControl
from mm.system import MmSystem
from mm.types import HPAGE_PMD_NR, Folio, Pte, Vma, large_folio

__all__ = ["migrate_folio", "remove_migration_ptes", "try_to_migrate"]


async def try_to_migrate(system: MmSystem, folio: Folio, *, locked: bool = False,
                         split_pmd: bool = False) -> bool:
    """``try_to_migrate`` (folio locked); ``locked`` is TTU_RMAP_LOCKED (THP split).

    ``try_to_migrate_one`` follows ``page_vma_mapped_walk`` through every entry of the folio in
    a VMA: a PMD becomes a PMD migration entry (``set_pmd_migration_entry``), or, with
    ``split_pmd`` (TTU_SPLIT_HUGE_PMD, passed by ``unmap_folio`` for a PMD-mappable folio),
    ``split_huge_pmd_locked(vma, address, pmd, freeze=true)`` turns it into 512 PTE migration
    entries under the PMD lock alone (the deposited page table is not visible until
    ``pmd_populate``); a PTE-mapped THP (after ``__split_huge_pmd``) gets one PTE migration
    entry per page, under the PTE lock.
    """

    def _story(vma: Vma, vpn: int, what: str) -> None:
        if system.story is not None:
            system.story.note("entry", f"try_to_migrate_one: mm{vma.mm.mid} vpn {vpn} becomes {what} "
                              f"for folio {folio.fid}", folio=folio.fid, mm=vma.mm.mid, vpn=vpn)

    async def try_to_migrate_one(vma: Vma, vpn: int) -> bool:
        mm = vma.mm
        # page_vma_mapped_walk reads the PMD without a lock (pmdp_get_lockless) and takes the PMD
        # lock only for a huge or migration PMD, checking it again under the lock.
        if folio.order and mm.pmds.get(vpn // HPAGE_PMD_NR) is not None:
            pmd_lock = system.pmd_lock(mm, vpn)
            await pmd_lock.lock()
            pmd = page_vma_mapped(vma, vpn, folio)
            if pmd is not None and mm.pmds.get(vpn // HPAGE_PMD_NR) is pmd:
                del mm.pmds[vpn // HPAGE_PMD_NR]
                # folio_remove_rmap_pmd, without the deferred-split check: the folio is locked and
                # is either unmapped everywhere or has its entries restored.
                folio.mapcount -= 1
                large_folio(folio).entire_mapcount -= 1
                if split_pmd:
                    system.ptl(mm, vpn)  # the deposited table (pgtable_trans_huge_withdraw)
                    for i in range(folio.nr_pages):
                        entry = Pte(folio, pmd.writable)
                        entry.migration = True
                        entry.young = pmd.young
                        mm.ptes[vpn + i] = entry
                    await spend(system, system.cost("pte_ns") * folio.nr_pages)
                    _story(vma, vpn, f"{folio.nr_pages} PTE migration entries (split_huge_pmd_locked, freeze)")
                else:
                    entry = Pte(folio, pmd.writable)
                    entry.migration = True
                    entry.young = pmd.young
                    mm.pmds[vpn // HPAGE_PMD_NR] = entry
                    _story(vma, vpn, "a PMD migration entry")
                await spend(system, system.cost("pvmw_ns") + system.cost("clear_ns"))
                pmd_lock.unlock()
                return True
            pmd_lock.unlock()
        ptl = system.ptl(mm, vpn)
        await ptl.lock()
        # ptep_clear_flush + set_pte_at(migration entry): the slot gets a new value, so any
        # pte_same() check of a fault that read the old one fails.
        where = folio_ptes(vma, vpn, folio) if folio.order else ([vpn] if page_vma_mapped(vma, vpn, folio) else [])
        for v in where:
            pte = mm.ptes[v]
            entry = Pte(folio, pte.writable)
            entry.migration = True
            entry.young = pte.young
            mm.ptes[v] = entry
            folio.mapcount -= 1
            _story(vma, v, "a migration entry")
        await spend(system, system.cost("pvmw_ns") + system.cost("clear_ns") * max(1, len(where)))
        ptl.unlock()
        return True

    rwc = RmapWalkControl("try_to_migrate", try_to_migrate_one, anon_lock=True, locked=locked,
                          may_sleep=True, done=lambda: folio.mapcount == 0)
    await rmap_walk(system, folio, rwc)
    # migrate_folio_unmap passes TTU_BATCH_FLUSH for MIGRATE_ASYNC (NUMA balancing, async
    # compaction; v6.4+): try_to_migrate_one defers each PTE's flush (set_tlb_ubc_flush_pending)
    # and one batched shootdown (try_to_unmap_flush) follows, after the rmap lock is dropped.
    # MIGRATE_SYNC would flush every PTE under its PTL instead (ptep_clear_flush): not modelled.
    await spend(system, system.cost("tlb_ipi_ns"))
    return folio.mapcount == 0


async def remove_migration_ptes(system: MmSystem, src: Folio, dst: Folio, *, locked: bool = False) -> int:
    """``remove_migration_ptes(src, dst, flags)``: entries for ``src`` become mappings of ``dst``.

    ``dst`` is the new folio for migration, ``src`` itself when the migration gives up, and
    ``src == dst`` for each order-0 folio of a split THP (``remap_page`` calls
    ``remove_migration_ptes(folio, folio, RMP_LOCKED)`` once per resulting folio, the caller
    holding the rmap write lock).  Returns entries restored.

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
    restored = 0

    def _restore(mm_mid: int, vpn: int, entry: Pte) -> Pte:
        nonlocal restored
        # folio_add_anon_rmap_pte(dst, ..., RMAP_EXCLUSIVE if the entry was writable or
        # readable-exclusive: try_to_migrate_one made it so for a PageAnonExclusive folio and
        # fork's copy_nonpresent_pte makes it readable and clears ``src.exclusive``).
        new = Pte(dst, entry.writable)
        dst.mapcount += 1
        if entry.writable or src.exclusive:
            dst.exclusive = True
        restored += 1
        if system.story is not None:
            system.story.note("entry", f"remove_migration_pte: mm{mm_mid} vpn {vpn} maps folio {dst.fid} in "
                              f"place of folio {src.fid}'s migration entry", folio=src.fid, mm=mm_mid, vpn=vpn)
        return new

    async def remove_migration_pte(vma: Vma, vpn: int) -> bool:
        mm = vma.mm
        entry = page_vma_mapped(vma, vpn, src, migration=True)
        if entry is None:
            await spend(system, system.cost("pvmw_ns"))
            return True
        if src.order and mm.pmds.get(vpn // HPAGE_PMD_NR) is entry:
            lock = system.pmd_lock(mm, vpn)  # remove_migration_pmd
            await lock.lock()
            if mm.pmds.get(vpn // HPAGE_PMD_NR) is entry:
                mm.pmds[vpn // HPAGE_PMD_NR] = _restore(mm.mid, vpn, entry)
                large_folio(dst).entire_mapcount += 1
            await spend(system, system.cost("pvmw_ns") + system.cost("pte_ns"))
            lock.unlock()
            return True
        ptl = system.ptl(mm, vpn)
        await ptl.lock()
        if src.order:  # a PTE-mapped THP: every page's entry
            where = folio_ptes(vma, vpn, src, migration=True)
        else:
            where = [vpn] if page_vma_mapped(vma, vpn, src, migration=True) is entry else []
        for v in where:
            mm.ptes[v] = _restore(mm.mid, v, mm.ptes[v])
        await spend(system, system.cost("pvmw_ns") + system.cost("pte_ns") * max(1, len(where)))
        ptl.unlock()
        return True

    rwc = RmapWalkControl("remove_migration_ptes", remove_migration_pte, anon_lock=False, locked=locked)
    await rmap_walk(system, dst, rwc, migration=True, sought=None if dst is src else src)
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
            await remove_migration_ptes(system, folio, folio)
            await system.design.put_anon_vma(pin)
            lock.folio_unlock()
            await system.folio_put(folio)
            system.ops.inc("migrate_fail")
            return False
        # Without reclaim: a migrating task never reclaims for its target, so its direct reclaim
        # never meets the folio it holds locked here (see MmSystem.alloc_folio).
        new = await system.alloc_folio(folio.index, folio.order, reclaim=False)
        # The migration's own reference on the new folio, dropped by folio_put(dst) at the end of
        # migrate_folio_move: an exit that zaps a restored mapping while remove_migration_ptes is
        # still restoring the others must not free the folio under it.
        new.pins += 1
        # PG_anon_exclusive is "always migrated via migration entries" (folio_migrate_flags):
        # the new folio has it only once remove_migration_pte restored an exclusive entry.
        new.exclusive = False
        await spend(system, system.cost("copy_page_ns") * folio.nr_pages)
        await system.design.folio_migrate_mapping(folio, new)
        restored = await remove_migration_ptes(system, folio, new)
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
