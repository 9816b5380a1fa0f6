"""The COW-context model against the proof of concept and the kernel it runs in.

Three points where the model departed from what the PoC (reference kernel-rmap.md §5.3) and
mainline do:

1. the PoC's ``walk_context`` ends a walk on ``!folio_maybe_mapped_shared(folio)`` (mapcount
   only); PageAnonExclusive and the check after the remap offsets are corrections of it;
2. ``remove_migration_ptes(src, dst)`` (mm/migrate.c) walks ``rmap_walk(dst, &rwc)``: the
   short-cut test reads the *destination*, whose mapcount grows as entries are restored;
3. ``mmget_not_zero`` (``atomic_inc_not_zero(&mm->mm_users)``, include/linux/sched/mm.h) fails
   as soon as ``mmput`` dropped the last user, before ``__mmput`` calls ``exit_mmap``
   (kernel/fork.c), not only once the mm is torn down.
"""

from __future__ import annotations

from typing import Any

import pytest
from _pytest.monkeypatch import MonkeyPatch

from concurrency.engine import Engine, SimTask
from concurrency.instrument import Instrument
from concurrency.lock import SimLock
from mm.costs import CostModel
from mm.cow_context import CowContext, CowContextDesign
from mm.designs import design_class
from mm.fork import dup_mmap
from mm.memory import handle_mm_fault
from mm.migrate import migrate_folio
from mm.mmap import exit_mmap, mmap_region
from mm.mmap_lock import mmap_write_lock, mmap_write_unlock
from mm.rmap import rmap_walk
from mm.rmap_design import RmapWalkControl, WalkResult
from mm.system import MmSystem
from mm.types import Folio, MmStruct, Vma
from mm.vmscan import folio_referenced
from tests.builds import patches_compiled_methods


def make(design: str = "cow_context", **switches: str) -> tuple[Engine, MmSystem]:
    """A system with the design's defaults unless ``switches`` say otherwise."""
    engine = Engine(2)
    return engine, MmSystem(engine, design_class(design), costs=CostModel.free(), switches=switches or None)


def run(engine: Engine, *tasks: Any) -> None:
    for i, fn in enumerate(tasks):
        engine.spawn(f"t{i}", fn)
    assert engine.run().reason == "completed"


def cow(system: MmSystem) -> CowContextDesign:
    design = system.design
    assert isinstance(design, CowContextDesign)
    return design


async def shared_folio(system: MmSystem) -> tuple[MmStruct, MmStruct, Folio]:
    """A parent and a forked child both mapping one folio at vpn 3 (mapcount 2)."""
    parent = await system.new_mm()
    await mmap_region(system, parent, 0, 16)
    await handle_mm_fault(system, parent, 3, True)
    child = await dup_mmap(system, parent)
    folio = parent.ptes[3].folio
    assert folio.mapcount == 2 and not folio.exclusive
    return parent, child, folio


class OpLocks(Instrument):
    """A lock tracer keeping, per acquisition, the task's operation (the walk's name inside an
    rmap walk), the lock class, the lock instance and the mode."""

    def __init__(self) -> None:
        self.acquired: list[tuple[str, str, str, str]] = []

    def on_contended(self, task: SimTask, lock: SimLock, mode: str, key: str | None = None) -> None:
        pass

    def on_acquired(self, task: SimTask, lock: SimLock, mode: str, wait_start: int | None,
                    key: str | None = None) -> None:
        self.acquired.append((task.op, key or lock.lclass.key, lock.name, mode))

    def on_released(self, task: SimTask, lock: SimLock, mode: str, since: int, key: str | None = None) -> None:
        pass


# -- 1. the default short-cut is the PoC's ----------------------------------------------------------


def test_the_default_short_cut_is_the_pocs_folio_maybe_mapped_shared() -> None:
    """``walk_context`` tests ``!folio_maybe_mapped_shared(folio)``: mapcount <= 1 (include/linux/
    mm.h), nothing about PageAnonExclusive.  After the parent's COW copy (``wp_page_copy``) the old
    folio has one mapping, in the child, and is not PageAnonExclusive: by default the walk stops
    after the parent's context and misses it, as the PoC does."""
    switch = CowContextDesign.SWITCHES["exclusive_shortcut"]
    assert switch.default == "maybe_mapped_shared"
    assert switch.allowed[0] == "maybe_mapped_shared"
    assert "corrections" in switch.help
    engine, system = make()
    design = cow(system)
    assert design.exclusive_shortcut == "maybe_mapped_shared"

    async def body() -> None:
        parent = await system.new_mm()
        await mmap_region(system, parent, 0, 16)
        await handle_mm_fault(system, parent, 3, True)
        old = parent.ptes[3].folio
        await dup_mmap(system, parent)
        await handle_mm_fault(system, parent, 3, True)  # wp_page_copy in the parent
        assert old.mapcount == 1 and not old.exclusive
        await folio_referenced(system, old, is_locked=False)

    run(engine, body)
    assert design.counters["exclusive_shortcuts"] == 1
    assert system.walk_stats("folio_referenced").missed_mappings == 1


@pytest.mark.parametrize(("switches", "stale"), [({}, 1), ({"exclusive_shortcut": "anon_exclusive"}, 0)])
def test_by_default_migration_leaves_the_childs_entry_stale(switches: dict[str, str], stale: int) -> None:
    """The PoC's test on the migration destination: 0 before the parent's entry is restored, 1
    after, so ``remove_migration_ptes`` stops after the parent's context and the child's migration
    entry stays; the child's next touch finds it (``migration_entry_wait`` after the migration
    ended: corruption).  The ``anon_exclusive`` correction restores both."""
    engine, system = make(**switches)

    async def body() -> None:
        _parent, child, folio = await shared_folio(system)
        assert await migrate_folio(system, folio)
        await handle_mm_fault(system, child, 3, False)

    run(engine, body)
    assert system.walk_stats("remove_migration_ptes").missed_mappings == stale
    assert system.ops.counts.get("stale_migration_entry", 0) == stale
    assert len(system.corruption) == stale


# -- 2. remove_migration_ptes walks the destination -------------------------------------------------


@patches_compiled_methods
@pytest.mark.parametrize("design", ["cow_context", "anon_vma"])
def test_remove_migration_ptes_walks_the_destination_folio(design: str, monkeypatch: MonkeyPatch) -> None:
    """``remove_migration_ptes(src, dst)`` is ``rmap_walk(dst, &rwc)`` with ``rwc.arg = src``
    (mm/migrate.c): the design is handed the new folio, and (``folio_migrate_mapping`` having
    copied ``->mapping``) the walk takes the same rmap lock as ``try_to_migrate`` on the old one:
    for anon_vma the same anon_vma's rwsem, read, without ``folio_lock_anon_vma_read``."""
    engine, system = make(design, **({"exclusive_shortcut": "anon_exclusive"} if design == "cow_context" else {}))
    tracer = OpLocks()
    engine.add_instrument(tracer)
    walked: list[tuple[str, int]] = []
    inner = system.design.rmap_walk

    async def spy(folio: Folio, rwc: RmapWalkControl) -> WalkResult:
        walked.append((rwc.name, folio.fid))
        return await inner(folio, rwc)

    monkeypatch.setattr(system.design, "rmap_walk", spy)
    got: dict[str, int] = {}

    async def body() -> None:
        parent, child, folio = await shared_folio(system)
        got["src"] = folio.fid
        assert await migrate_folio(system, folio)
        new = parent.ptes[3].folio
        assert new is child.ptes[3].folio and new.mapcount == 2 and not new.exclusive
        got["dst"] = new.fid

    run(engine, body)
    assert walked == [("try_to_migrate", got["src"]), ("remove_migration_ptes", got["dst"])]
    assert system.walk_stats("remove_migration_ptes").missed_mappings == 0
    assert system.walk_stats("remove_migration_ptes").mappings_found == 2
    rmap_locks = {op: [(inst, mode) for o, key, inst, mode in tracer.acquired if o == op and key.startswith("anon_vma")]
                  for op in ("try_to_migrate", "remove_migration_ptes")}
    if design == "anon_vma":
        assert rmap_locks["try_to_migrate"] == rmap_locks["remove_migration_ptes"]
        assert [mode for _, mode in rmap_locks["remove_migration_ptes"]] == ["R"]
    else:
        assert rmap_locks == {"try_to_migrate": [], "remove_migration_ptes": []}


@patches_compiled_methods
def test_the_short_cut_test_reads_the_destinations_growing_mapcount(monkeypatch: MonkeyPatch) -> None:
    """What ``walk_context``'s ``!folio_maybe_mapped_shared`` reads during the migration's
    ``remove_migration_ptes``: the destination (``rmap_walk(dst)``), mapcount 0 when the parent's
    context is entered and 1 once ``remove_migration_pte`` restored its entry
    (``folio_add_anon_rmap_pte``), not the source, whose mapcount stays 0."""
    engine, system = make()
    design = cow(system)
    seen: list[tuple[str, int, int]] = []
    inner = design._exclusive

    def spy(folio: Folio) -> bool:
        task = engine.current
        assert task is not None
        seen.append((task.op, folio.fid, folio.mapcount))
        return inner(folio)

    monkeypatch.setattr(design, "_exclusive", spy)
    got: dict[str, int] = {}

    async def body() -> None:
        parent, _child, folio = await shared_folio(system)
        got["src"] = folio.fid
        assert await migrate_folio(system, folio)
        got["dst"] = parent.ptes[3].folio.fid

    run(engine, body)
    dst = got["dst"]
    assert [s for s in seen if s[0] == "remove_migration_ptes"] == [
        ("remove_migration_ptes", dst, 0), ("remove_migration_ptes", dst, 1)]


def test_the_destination_is_anon_exclusive_only_after_an_exclusive_entry_is_restored() -> None:
    """``folio_migrate_flags`` does not copy PG_anon_exclusive ("always migrated via migration
    entries"): ``remove_migration_pte`` sets it with ``RMAP_EXCLUSIVE`` for an entry that is not
    ``is_readable_migration_entry``.  So the ``anon_exclusive`` correction, walking the
    destination, cannot short-cut in the folio's own context (not yet exclusive when it is
    entered) and stops only in the next one; walking the source (exclusive throughout) stopped in
    the first."""
    engine, system = make(exclusive_shortcut="anon_exclusive")
    got: dict[str, Any] = {}

    async def body() -> None:
        parent = await system.new_mm()
        await mmap_region(system, parent, 0, 16)
        await dup_mmap(system, parent)
        await dup_mmap(system, parent)
        await handle_mm_fault(system, parent, 5, True)  # after the forks: exclusive to the parent
        folio = parent.ptes[5].folio
        assert folio.exclusive and folio.mapcount == 1
        assert await migrate_folio(system, folio)
        new = parent.ptes[5].folio
        got["new"] = (new.exclusive, new.mapcount)

    run(engine, body)
    assert got["new"] == (True, 1)
    stats = system.walk_stats("remove_migration_ptes")
    assert stats.missed_mappings == 0
    assert stats.contexts_visited == 2  # the parent's, then the newest child's (a leaf)


# -- 3. mmget_not_zero fails once mm_users reached 0 -------------------------------------------------


def test_exit_mmap_starts_with_mm_users_at_zero() -> None:
    """``mmput``: ``atomic_dec_and_test(&mm->mm_users)`` then ``__mmput`` -> ``exit_mmap``: the mm
    has no users before its teardown takes its first lock (here the mmap_lock, held elsewhere)."""
    engine, system = make()
    state: dict[str, Any] = {}

    async def holder() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, 16)
        state["mm"] = mm
        await mmap_write_lock(mm)
        await engine.delay(1000)
        state["during"] = (mm.exiting, mm.alive)
        mmap_write_unlock(mm)

    async def exiter() -> None:
        await engine.delay(10)
        assert not state["mm"].exiting
        await exit_mmap(system, state["mm"])

    run(engine, holder, exiter)
    assert state["during"] == (True, True)
    assert (state["mm"].exiting, state["mm"].alive) == (True, False)


@pytest.mark.parametrize("walk_safety", ["rcu", "ctx_rwsem"])
def test_walk_skips_an_mm_whose_teardown_has_begun(walk_safety: str) -> None:
    """``walk_context`` skips a context whose ``mmget_not_zero(mm)`` fails.  The child's exit has
    begun (mm_users is 0) but waits for its mmap_lock, so its PTE still maps the shared folio and
    its context still points at it: the walk must not enter it."""
    engine, system = make(walk_safety=walk_safety)
    design = cow(system)
    state: dict[str, Any] = {}
    seen: list[tuple[int, int]] = []

    async def rmap_one(vma: Vma, vpn: int) -> bool:
        seen.append((vma.mm.mid, vpn))
        return True

    async def walker() -> None:
        parent, child, folio = await shared_folio(system)
        state["ids"] = (parent.mid, child.mid)
        state["child"] = child
        await mmap_write_lock(child)  # the exit below blocks on it, after mm_users went to 0
        await engine.delay(1000)
        ctx = child.rmap
        assert isinstance(ctx, CowContext) and ctx.mm is child and child.alive and child.exiting
        assert child.ptes[3].folio is folio
        await rmap_walk(system, folio, RmapWalkControl("walk", rmap_one))
        mmap_write_unlock(child)

    async def exiter() -> None:
        await engine.delay(10)
        await exit_mmap(system, state["child"])

    run(engine, walker, exiter)
    parent_id, _child_id = state["ids"]
    assert seen == [(parent_id, 3)]
    assert design.counters["mmget_failed"] == 1
    assert design.counters["exclusive_shortcuts"] == 0  # shared: the walk did go on to the child
