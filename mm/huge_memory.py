"""THP split, after mm/huge_memory.c ``__folio_split``.

The anon_vma write lock is taken "to serialise against parallel split or collapse operations" and
held across ``unmap_folio`` (try_to_migrate with TTU_RMAP_LOCKED), the split itself and
``remap_page`` (remove_migration_ptes, locked): for anon_vma a THP split excludes every rmap
walker and every structural change of the whole fork family for the duration.
"""

from __future__ import annotations

from mm.cpu import spend
from mm.migrate import remove_migration_ptes, try_to_migrate
from mm.system import MmSystem
from mm.types import Folio

__all__ = ["split_huge_folio"]


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
        if folio.freed or folio.order == 0:
            lock.folio_unlock()
            return False
        design = system.design
        pin = design.folio_get_anon_vma(folio)
        if pin is None:  # __folio_split: no anon_vma to pin -> -EBUSY
            lock.folio_unlock()
            return False
        folio.pins += 1
        token = await design.rmap_write_lock(folio)
        if not await try_to_migrate(system, folio, locked=True):  # unmap_folio
            # A mapping was not reached: the refcount freeze fails; remap and give up.
            await remove_migration_ptes(system, folio, [folio], locked=True)
            await design.rmap_write_unlock(token)
            await design.put_anon_vma(pin)
            lock.folio_unlock()
            await system.folio_put(folio)
            system.ops.inc("thp_split_fail")
            return False
        await spend(system, system.costs.split_ns)
        tails = system.split_folio(folio)
        for small in tails:
            # Each new folio starts with the split's own reference (folio_ref_unfreeze): it is
            # dropped with folio_put at the end, so a folio unmapped meanwhile (a COW copy
            # after remap_page) is freed exactly once, by whoever drops the last reference.
            small.pins += 1
        await design.folio_split(folio, tails)
        await remove_migration_ptes(system, folio, tails, locked=True)  # remap_page
        await design.rmap_write_unlock(token)
        folio.pins -= 1  # the head is retired by the split, not freed
        await design.put_anon_vma(pin)
        lock.folio_unlock()
        for small in tails:
            await system.folio_put(small)  # frees it if nothing maps it any more
        system.ops.inc("thp_split")
        return True
    finally:
        task.op = saved

