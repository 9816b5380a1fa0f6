"""What every reverse-map walk shares, whatever the design: the per-mapping work and the oracle.

The design (mm/anon_vma.py, mm/cow_context.py) decides which lock a walk takes and which VMAs are
candidates; this module does what ``rmap_one`` does in mm/rmap.c for each candidate
(``page_vma_mapped_walk`` under the PTE or PMD lock, then the action of folio_referenced_one,
try_to_unmap_one, try_to_migrate_one or remove_migration_pte) and checks every completed walk
against the ground truth: a brute-force search of every live mm's page tables for the folio.
"""

from __future__ import annotations

from mm.rmap_design import RmapWalkControl, WalkResult
from mm.system import InflightWalk, MmSystem
from mm.types import HPAGE_PMD_NR, Folio, LargeFolio, Pte, Vma

__all__ = ["folio_ptes", "oracle_mappings", "page_vma_mapped", "rmap_walk"]


def page_vma_mapped(vma: Vma, vpn: int, folio: Folio, *, migration: bool = False) -> Pte | None:
    """``page_vma_mapped_walk`` (without the lock): an entry in ``vma`` that maps ``folio``, where
    ``vpn`` is the folio's first page's address there (``vma_address``).

    A THP is mapped by its PMD or, after ``__split_huge_pmd``, by PTEs: then the first PTE found
    is returned (:func:`folio_ptes` lists them all).  An order-0 folio born of a split is also
    mapped by a migration entry that names its page of the retired head (``Folio.tails``):
    ``unmap_folio`` froze the mapping before the split made the small folio.
    """
    mm = vma.mm
    if folio.order:
        pmd = mm.pmds.get(vpn // HPAGE_PMD_NR)
        if pmd is not None:  # a huge PMD here: no PTE table maps this range
            return pmd if pmd.folio is folio and pmd.migration == migration else None
        found = folio_ptes(vma, vpn, folio, migration=migration)
        return mm.ptes[found[0]] if found else None
    pte = mm.ptes.get(vpn)
    if pte is None or pte.migration != migration:
        return None
    if pte.folio is folio:
        return pte
    head = pte.folio
    if migration and isinstance(head, LargeFolio) and head.tails is not None:
        i = vma.pgoff_of(vpn) - head.index
        if 0 <= i < len(head.tails) and head.tails[i] is folio:
            return pte
    return None


def folio_ptes(vma: Vma, vpn: int, folio: Folio, *, migration: bool = False) -> list[int]:
    """The addresses in ``vma`` whose PTE maps a page of the large ``folio`` (a PTE-mapped THP:
    ``page_vma_mapped_walk`` steps through them one by one); ``vpn`` is its first page's."""
    ptes = vma.mm.ptes
    out = []
    for v in range(max(vpn, vma.start), min(vpn + folio.nr_pages, vma.end)):
        pte = ptes.get(v)
        if pte is not None and pte.folio is folio and pte.migration == migration:
            out.append(v)
    return out


def oracle_mappings(system: MmSystem, folio: Folio, *, migration: bool = False) -> set[tuple[int, int]]:
    """Ground truth: every (mm id, vpn) whose entry maps ``folio``, by searching all live mms
    (``system.mms`` holds only those not torn down yet).

    Independent of any design's structures: it looks up ``folio.index`` in every VMA of every mm
    that still has users.
    """
    found: set[tuple[int, int]] = set()
    for mm in system.mms:
        # An mm whose last user left (mm_users == 0, exit_mmap under way) is owed nothing: its
        # teardown zaps every entry anyway, and a walk that cannot mmget_not_zero() it (the COW
        # context's) rightly skips it.
        if not mm.alive or mm.exiting:
            continue
        for vma in mm.vmas:
            vpn = vma.address(folio.index)
            if vpn is not None and page_vma_mapped(vma, vpn, folio, migration=migration) is not None:
                found.add((mm.mid, vpn))
    return found


async def rmap_walk(system: MmSystem, folio: Folio, rwc: RmapWalkControl, *,
                    oracle: bool = True, migration: bool = False, sought: Folio | None = None) -> WalkResult:
    """``rmap_walk``: run the design's walk, counting visits and checking it against the oracle.

    ``migration`` says the walk looks for migration entries (remove_migration_ptes), not PTEs;
    ``sought`` is the folio those entries point at when it is not the folio walked
    (``remove_migration_ptes`` walks the destination's rmap for the source's entries).

    The oracle's rule for a miss: a mapping the walk owed (present when it started, or copied or
    moved during the walk from an owed position it had not reached yet) that is still present
    when it ends and that it never reached.  A fork that copies an entry after the walk passed
    it creates a mapping the kernel never promised to find.
    """
    target = folio if sought is None else sought
    stats = system.walk_stats(rwc.name)
    stats.walks += 1
    hits: set[tuple[int, int]] = set()
    inner = rwc.rmap_one
    watch: InflightWalk | None = None
    if oracle:
        watch = InflightWalk(oracle_mappings(system, target, migration=migration))
        system.inflight_walks.setdefault(target.fid, []).append(watch)

    async def counted(vma: Vma, vpn: int) -> bool:
        stats.vmas_visited += 1
        if vma.freed:
            stats.freed_vma_visits += 1
        here = (vma.mm.mid, vpn)
        if watch is not None:
            watch.visited.add(here)
        if page_vma_mapped(vma, vpn, target, migration=migration) is None:
            stats.false_positives += 1
            if story is not None:
                story.note("visit", f"{rwc.name} visits vma{vma.vid} of mm{here[0]} at vpn {vpn}: no entry for "
                           f"folio {target.fid}", folio=target.fid, mm=here[0], vpn=vpn)
        else:
            hits.add(here)
            if story is not None:
                story.note("visit", f"{rwc.name} visits vma{vma.vid} of mm{here[0]} at vpn {vpn}: finds folio "
                           f"{target.fid}", folio=target.fid, mm=here[0], vpn=vpn)
        if rwc.may_sleep:
            system.might_sleep(stats)
        return await inner(vma, vpn)

    wrapped = RmapWalkControl(rwc.name, counted, try_lock=rwc.try_lock, anon_lock=rwc.anon_lock,
                              locked=rwc.locked, may_sleep=rwc.may_sleep, done=rwc.done)
    # The walk is the contention point of the locks it takes (the rmap lock, the PTLs): lock_stat
    # and perf lock name the call site, and folio_referenced's trylock and try_to_unmap's blocking
    # read are different call sites within one shrink_folio.
    task = system.engine.current
    assert task is not None
    story = system.story
    if story is not None:
        owes = sorted(watch.owed) if watch is not None else []
        story.note("walk", f"{rwc.name} starts on folio {folio.fid}"
                   + (f" for the entries of folio {target.fid}" if target is not folio else "")
                   + f"; mapped at {_where(owes)}", folio=target.fid)
    saved, task.op = task.op, rwc.name
    try:
        result = await system.design.rmap_walk(folio, wrapped)
    finally:
        task.op = saved
        if watch is not None:
            inflight = system.inflight_walks[target.fid]
            inflight.remove(watch)
            if not inflight:
                del system.inflight_walks[target.fid]
    stats.mappings_found += len(hits)
    stats.contexts_visited += result.contexts_visited
    if result.contended:
        stats.contended += 1
    elif oracle and not result.stopped_early:
        # A completed walk must have reached every entry it owed that still maps the folio now;
        # what it left behind was missed (a walk racing with fork or mremap without a lock can
        # do this).
        assert watch is not None
        truth = watch.owed & oracle_mappings(system, target, migration=migration)
        missed = truth - hits
        if missed:
            stats.missed_mappings += len(missed)
            system.note_miss(rwc.name, task.name, target, sorted(missed))
        if story is not None:
            story.note("walk", f"{rwc.name} ends on folio {target.fid}: reached {_where(sorted(hits))}"
                       + (f"; MISSED {_where(sorted(missed))}" if missed else ""), folio=target.fid)
    elif story is not None:
        why = "gave up: rmap lock contended" if result.contended else "stopped early"
        story.note("walk", f"{rwc.name} on folio {target.fid} {why} after {_where(sorted(hits))}", folio=target.fid)
    return result


def _where(mappings: list[tuple[int, int]]) -> str:
    return ", ".join(f"mm{mid} vpn {vpn}" for mid, vpn in mappings) or "nothing"
