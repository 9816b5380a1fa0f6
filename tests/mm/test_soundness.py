"""The model defects that made mainline anon_vma look unsound under other schedules: each test
fails on the code before its fix.

* fork copied a snapshot of the parent's entries taken before the page-table locks
  (``copy_pte_range`` reads ``ptep_get(src_pte)`` under both PTLs);
* a migration entry copied at fork stayed writable in the parent (``copy_nonpresent_pte`` makes it
  readable on both sides);
* the oracle counted, as missed, a mapping a fork created after the walk had passed it;
* ``wp_page_copy`` re-checked the entry by identity, so a migration entry installed in place while
  the fault copied the page went unnoticed (``pte_same``);
* a THP split freed its small folios by mapcount, so a COW racing with the split freed one twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from concurrency.engine import Engine
from mm.costs import CostModel
from mm.designs import design_class
from mm.fork import dup_mmap
from mm.huge_memory import split_huge_folio
from mm.memory import handle_mm_fault
from mm.mmap import exit_mmap, mmap_region, munmap
from mm.rmap import rmap_walk
from mm.rmap_design import RmapWalkControl
from mm.system import MmSystem
from mm.types import HPAGE_PMD_NR, Pte, Vma
from tests.builds import patches_compiled_methods


def make(design: str = "anon_vma", *, costs: CostModel | None = None) -> tuple[Engine, MmSystem]:
    engine = Engine(4)
    return engine, MmSystem(engine, design_class(design), costs=costs or CostModel.free())


def run(engine: Engine, *tasks: Callable[[], Awaitable[None]]) -> None:
    for i, task in enumerate(tasks):
        engine.spawn(f"t{i}", task, cpu=i)
    assert engine.run().reason == "completed"


def test_fork_reads_each_parent_entry_under_both_page_table_locks() -> None:
    """A migration walk holds the parent's PTL while fork waits for it, and installs a migration
    entry before releasing: the child must get the migration entry, not the present PTE fork
    would have seen before taking the locks."""
    engine, system = make()
    state: dict[str, Any] = {}

    async def parent() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await handle_mm_fault(system, p, 1, True)
        state["p"] = p
        await engine.delay(1_000)  # the walker takes the PTL at 500
        state["child"] = await dup_mmap(system, p)

    async def walker() -> None:
        await engine.delay(500)
        p = state["p"]
        ptl = system.ptl(p, 1)
        await ptl.lock()
        await engine.delay(2_000)  # fork blocks on this PTL meanwhile
        old = p.ptes[1]
        entry = Pte(old.folio, old.writable)
        entry.migration = True  # try_to_migrate_one: set_pte_at(migration entry)
        old.folio.mapcount -= 1
        p.ptes[1] = entry
        ptl.unlock()

    run(engine, parent, walker)
    copied = state["child"].ptes[1]
    assert copied.migration, "the child got the present PTE read before fork took the PTLs"
    assert not copied.writable


def test_fork_makes_a_writable_migration_entry_readable_in_the_parent_too() -> None:
    engine, system = make()
    state: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await handle_mm_fault(system, p, 1, True)
        entry = Pte(p.ptes[1].folio, True)  # a writable migration entry
        entry.migration = True
        entry.folio.mapcount -= 1
        p.ptes[1] = entry
        state["child"] = await dup_mmap(system, p)
        state["parent_entry"] = p.ptes[1]

    run(engine, body)
    assert state["parent_entry"].writable is False, "copy_nonpresent_pte: make_readable_migration_entry in src"
    assert state["child"].ptes[1].writable is False
    assert state["parent_entry"].folio.exclusive is False


def test_the_oracle_does_not_owe_a_copy_made_after_the_walk_passed_the_child() -> None:
    """anon_vma: the walk visits the parent (the PTE is there), then the child VMA (nothing
    copied yet: fork waits for the parent's PTL), and ends; fork then copies.  The kernel never
    promised that copy to the walk, so it is not a miss."""
    engine, system = make()
    state: dict[str, Any] = {}
    seen: list[int] = []

    async def rmap_one(vma: Vma, vpn: int) -> bool:
        seen.append(vma.mm.mid)
        # The parent at 3000, the child at 3100; the walk then lasts until 8100, and the copy
        # (at 5500, when the blocker lets fork go) happens after the walk passed the child.
        await engine.delay(100 if vma.mm.mid == 0 else 5_000)
        return True

    async def parent() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await handle_mm_fault(system, p, 1, True)
        state["p"] = p
        state["folio"] = p.ptes[1].folio
        await engine.delay(1_000)
        await dup_mmap(system, p)

    async def blocker() -> None:
        await engine.delay(500)
        ptl = system.ptl(state["p"], 1)
        await ptl.lock()
        await engine.delay(5_000)  # fork has linked the child and waits here
        ptl.unlock()

    async def walker() -> None:
        await engine.delay(3_000)
        await rmap_walk(system, state["folio"], RmapWalkControl("walk", rmap_one))

    run(engine, parent, blocker, walker)
    assert seen == [0, 1], "the walk visits the parent, then the linked child"
    assert system.walk_stats("walk").missed_mappings == 0


def test_wp_page_copy_backs_off_when_the_entry_became_a_migration_entry() -> None:
    """The fault drops the PTL to copy the page; a migration walk turns the entry into a
    migration entry meanwhile.  ``pte_same`` fails, so the fault must not map its copy over it."""
    engine, system = make(costs=CostModel.free().with_overrides({"copy_page_ns": 1_000}))
    state: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await handle_mm_fault(system, p, 1, True)
        await dup_mmap(system, p)  # the folio is shared: a write must copy it
        state["p"] = p
        await handle_mm_fault(system, p, 1, True)  # copies over [t, t + 1000)

    async def migrator() -> None:
        await engine.delay(200)
        p = state["p"]
        ptl = system.ptl(p, 1)
        await ptl.lock()
        entry = p.ptes[1]
        entry.migration = True  # in place, as try_to_migrate_one's set_pte_at changes the slot
        entry.folio.mapcount -= 1
        state["entry"] = entry
        ptl.unlock()

    run(engine, body, migrator)
    assert state["p"].ptes[1] is state["entry"], "the COW copy was mapped over a migration entry"


@patches_compiled_methods
def test_a_cow_racing_with_a_thp_split_frees_each_small_folio_once() -> None:
    """The split holds a reference on every small folio until its end (folio_put).  While the
    splitter is preempted after remap_page, the child COWs a small folio away and the parent
    unmaps it: the last unmap must not free it under the split, which frees it once at the end."""
    engine, system = make()
    state: dict[str, Any] = {}
    put = system.design.put_anon_vma

    async def preempted_put(token: Any) -> None:
        state["remapped"] = True
        await engine.delay(10_000)  # the splitter is preempted here: a legal preemption point
        await put(token)

    system.design.put_anon_vma = preempted_put  # type: ignore[method-assign]

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 2 * HPAGE_PMD_NR, thp=True)
        await handle_mm_fault(system, p, 3, True)
        state["c"] = await dup_mmap(system, p)
        state["p"] = p
        assert await split_huge_folio(system, p.pmds[0].folio)
        await engine.delay(20_000)
        await exit_mmap(system, state["c"])
        await exit_mmap(system, p)

    async def racer() -> None:
        while not state.get("remapped"):
            await engine.delay(100)
        await handle_mm_fault(system, state["c"], 3, True)  # COW: the small folio's mapcount 2 -> 1
        await munmap(system, state["p"], 3, 1)  # the parent's mapping, the last one, goes

    run(engine, body, racer)
    assert not system.folios


def test_an_exit_during_remove_migration_ptes_does_not_free_the_new_folio() -> None:
    """Migration restores the parent's entry, the parent exits (its zap drops the new folio's only
    mapping so far), then the walk restores the child's entry.  The migration holds its own
    reference on the new folio until it ends (folio_put(dst) in migrate_folio_move), so the folio
    is still alive when the child's entry points at it."""
    from mm.migrate import migrate_folio
    from workloads.runner import check_mapcounts

    engine, system = make(costs=CostModel.free().with_overrides({"pvmw_ns": 10_000}))
    state: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await handle_mm_fault(system, p, 1, True)
        state["c"] = await dup_mmap(system, p)
        state["p"] = p
        state["old"] = p.ptes[1].folio
        await migrate_folio(system, state["old"])
        state["problems"] = check_mapcounts(system)
        await exit_mmap(system, state["c"])

    def parent_restored() -> bool:
        entry = state["p"].ptes.get(1) if "p" in state else None
        return entry is not None and entry.folio is not state["old"]

    async def blocker() -> None:
        while not parent_restored():
            await engine.delay(100)
        ptl = system.ptl(state["c"], 1)  # the walk is still in the parent's PTL (10 us)
        await ptl.lock()
        await engine.delay(50_000)  # keeps the walk off the child while the parent exits
        ptl.unlock()

    async def exiter() -> None:
        while not parent_restored():
            await engine.delay(100)
        await exit_mmap(system, state["p"])

    run(engine, body, blocker, exiter)
    assert state["problems"] == [], state["problems"]
    assert not system.folios
