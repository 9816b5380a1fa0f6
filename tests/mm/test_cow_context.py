"""The COW-context design (mm/cow_context.py): locks, walks, lifetimes, memory, variants.

Hook-level tests call the design directly inside engine tasks; operation-level tests drive it
through the mm operations (faults, fork, exit, mremap, munmap, reclaim's folio_referenced).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concurrency.engine import Engine, SimTask
from concurrency.instrument import Instrument
from concurrency.lock import SimLock
from mm.costs import CostModel
from mm.cow_context import (
    COW_CONTEXT_BYTES,
    CTX_FREE_DESC,
    DUMMY_ANON_VMA,
    MAPLE_NODE_BYTES,
    CowContext,
    CowContextDesign,
    remap_bytes,
)
from mm.designs import DESIGNS, design_class
from mm.fork import dup_mmap
from mm.memory import handle_mm_fault
from mm.mmap import exit_mmap, mmap_region, mremap_move, munmap
from mm.rmap import rmap_walk
from mm.rmap_design import RmapWalkControl, WalkResult
from mm.system import MmSystem
from mm.types import Folio, MmStruct, Pte, Vma
from mm.vmscan import folio_referenced


class Recorder(Instrument):
    """A lock tracer keeping the lock instance too (which context's lock was taken)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str]] = []  # task, event, class, instance, mode

    def on_contended(self, task: SimTask, lock: SimLock, mode: str, key: str | None = None) -> None:
        self.events.append((task.name, "contended", key or lock.lclass.key, lock.name, mode))

    def on_acquired(self, task: SimTask, lock: SimLock, mode: str, wait_start: int | None,
                    key: str | None = None) -> None:
        self.events.append((task.name, "acquire", key or lock.lclass.key, lock.name, mode))

    def on_released(self, task: SimTask, lock: SimLock, mode: str, since: int, key: str | None = None) -> None:
        self.events.append((task.name, "release", key or lock.lclass.key, lock.name, mode))

    def acquisitions(self, task: str | None = None) -> list[tuple[str, str, str]]:
        return [(key, inst, mode) for name, ev, key, inst, mode in self.events
                if ev == "acquire" and (task is None or name == task)]

    def clear(self) -> None:
        self.events.clear()


def make(walk_safety: str = "rcu", *, shortcut: str = "maybe_mapped_shared", costs: CostModel | None = None,
         ncpus: int = 3, fork_link: str = "end", traversal: str = "post"
         ) -> tuple[Engine, MmSystem, CowContextDesign]:
    engine = Engine(ncpus)
    system = MmSystem(engine, design_class("cow_context"), costs=costs or CostModel.free(),
                      switches={"walk_safety": walk_safety, "exclusive_shortcut": shortcut,
                                "fork_link": fork_link, "traversal": traversal})
    design = system.design
    assert isinstance(design, CowContextDesign)
    return engine, system, design


def run(engine: Engine, *tasks: Callable[[], Awaitable[None]]) -> None:
    for i, fn in enumerate(tasks):
        engine.spawn(f"t{i}", fn)
    outcome = engine.run()
    assert outcome.reason == "completed"


def ctx_of(mm: MmStruct) -> CowContext:
    ctx = mm.rmap
    assert isinstance(ctx, CowContext)
    return ctx


async def fault(system: MmSystem, mm: MmStruct, vpn: int) -> Folio:
    await handle_mm_fault(system, mm, vpn, True)
    return mm.ptes[vpn].folio


def recording_rwc(name: str, seen: list[tuple[int, int, int]], engine: Engine, *, hold_ns: int = 0,
                  try_lock: bool = False, locked: bool = False) -> RmapWalkControl:
    """An rmap_one that records (mm id, vpn, RCU depth) and optionally takes time."""

    async def rmap_one(vma: Vma, vpn: int) -> bool:
        task = engine.current
        assert task is not None
        seen.append((vma.mm.mid, vpn, task.rcu_depth))
        if hold_ns:
            await engine.delay(hold_ns)
        return True

    return RmapWalkControl(name, rmap_one, try_lock=try_lock, locked=locked)


# -- registration and switches ------------------------------------------------------------------


def test_registered_with_walk_safety_variants() -> None:
    assert DESIGNS["cow_context"] is CowContextDesign
    assert CowContextDesign.SWITCHES["walk_safety"].allowed == ("rcu", "ctx_rwsem", "tolerate_races")
    assert CowContextDesign.SWITCHES["walk_safety"].default == "rcu"
    for variant, defer in (("rcu", False), ("ctx_rwsem", False), ("tolerate_races", True)):
        _, _, design = make(variant)
        assert design.defer_pgtable_free is defer
    with pytest.raises(ValueError, match="not allowed"):
        make("mutex")


# -- lock sequences -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["rcu", "tolerate_races", "ctx_rwsem"])
def test_fork_mm_takes_only_the_parents_context_locks(variant: str) -> None:
    engine, system, design = make(variant)
    rec = Recorder()
    engine.add_instrument(rec)
    got: dict[str, Any] = {}

    async def body() -> None:
        parent = await system.new_mm()
        child = await system.new_mm(parent)
        rec.clear()
        await design.fork_mm(child, parent)
        got["acq"] = rec.acquisitions()
        got["parent"], got["child"] = ctx_of(parent), ctx_of(child)

    run(engine, body)
    if variant == "ctx_rwsem":
        assert got["acq"] == [("cow_context->rwsem", "mm0->cow_context->rwsem", "W"),
                              ("cow_context->lock", "mm0->cow_context->lock", "W")]
    else:
        assert got["acq"] == [("cow_context->lock", "mm0->cow_context->lock", "W")]
    parent, child = got["parent"], got["child"]
    assert child.parent is parent and parent.children() == [child]
    assert parent.refcnt.value == 2  # its mm + the child
    assert child.refcnt.value == 1
    assert engine.lock_classes["cow_context->refcnt"].write.acquisitions == 1  # get_cow_context(parent)


@pytest.mark.parametrize("variant", ["rcu", "ctx_rwsem"])
def test_first_touch_takes_only_the_page_table_lock(variant: str) -> None:
    engine, system, design = make(variant)
    rec = Recorder()
    engine.add_instrument(rec)
    got: dict[str, Any] = {}

    async def body() -> None:
        mm = await system.new_mm()
        vma = system.new_vma(mm, 0, 64)
        mm.insert_vma(vma)
        rec.clear()
        await design.anon_vma_prepare(vma)
        got["acq"] = rec.acquisitions()
        got["anon_vma"] = vma.anon_vma

    run(engine, body)
    assert got["acq"] == [("mm->page_table_lock", "mm0->page_table_lock", "W")]
    assert got["anon_vma"] is DUMMY_ANON_VMA
    assert "anon_vma->rwsem" not in engine.lock_classes


@pytest.mark.parametrize("variant", ["rcu", "tolerate_races"])
def test_rcu_walk_takes_no_lock_and_runs_inside_rcu(variant: str) -> None:
    engine, system, _design = make(variant)
    rec = Recorder()
    engine.add_instrument(rec)
    seen: list[tuple[int, int, int]] = []
    got: dict[str, Any] = {}

    async def body() -> None:
        parent = await system.new_mm()
        await mmap_region(system, parent, 0, 16)
        folio = await fault(system, parent, 3)
        await dup_mmap(system, parent)  # the folio is now shared with the child
        rec.clear()
        sections = system.rcu.read_sections
        got["res"] = await rmap_walk(system, folio, recording_rwc("walk", seen, engine))
        got["acq"] = rec.acquisitions()
        got["sections"] = system.rcu.read_sections - sections

    run(engine, body)
    assert got["acq"] == []
    assert got["sections"] == 1
    assert seen == [(0, 3, 1), (1, 3, 1)]  # parent then child, both inside rcu_read_lock
    res: WalkResult = got["res"]
    assert res.contexts_visited == 2 and not res.contended and not res.stopped_early
    assert system.walk_stats("walk").missed_mappings == 0


def test_ctx_rwsem_walk_reads_each_live_context_outside_rcu() -> None:
    engine, system, design = make("ctx_rwsem")
    rec = Recorder()
    engine.add_instrument(rec)
    seen: list[tuple[int, int, int]] = []
    got: dict[str, Any] = {}

    async def body() -> None:
        root = await system.new_mm()
        await mmap_region(system, root, 0, 16)
        folio = await fault(system, root, 3)
        a = await dup_mmap(system, root)
        b = await dup_mmap(system, root)
        g = await dup_mmap(system, b)
        await exit_mmap(system, b)  # dead context kept by g: visited, not locked
        rec.clear()
        got["res"] = await rmap_walk(system, folio, recording_rwc("walk", seen, engine))
        got["acq"] = rec.acquisitions()
        got["ids"] = (root.mid, g.mid, a.mid)

    run(engine, body)
    assert got["acq"] == [("cow_context->rwsem", f"mm{mid}->cow_context->rwsem", "R") for mid in got["ids"]]
    assert [rcu_depth for _, _, rcu_depth in seen] == [0, 0, 0]  # rmap_one may sleep here
    assert got["res"].contexts_visited == 4  # root, g, dead b, a
    assert design.counters["dead_contexts_visited"] == 1
    assert design.counters["walk_pins"] == 2  # g and a, not the folio's own context
    assert design.check_invariants(False) == []  # the pins were dropped


def test_ctx_rwsem_write_locks_for_unlink_vma_prepare_remap_and_thp_split() -> None:
    engine, system, design = make("ctx_rwsem")
    rec = Recorder()
    engine.add_instrument(rec)
    got: dict[str, list[tuple[str, str, str]]] = {}

    async def body() -> None:
        mm = await system.new_mm()
        vma = await mmap_region(system, mm, 0, 16)
        folio = await fault(system, mm, 1)
        new = system.new_vma(mm, 100, 116, vma.pgoff)
        rec.clear()
        await design.clone_vma(new, vma, "remap")
        got["clone"] = rec.acquisitions()
        rec.clear()
        token = await design.vma_prepare([vma])
        await design.vma_complete(token, [vma])
        got["prepare"] = rec.acquisitions()
        rec.clear()
        token = await design.rmap_write_lock(folio)
        await design.rmap_write_unlock(token)
        got["thp"] = rec.acquisitions()
        rec.clear()
        await design.unlink_vma(new)
        got["unlink"] = rec.acquisitions()

    run(engine, body)
    rwsem_w = ("cow_context->rwsem", "mm0->cow_context->rwsem", "W")
    unmap = ("cow_context->concurrent_unmap_lock", "mm0->cow_context->concurrent_unmap_lock", "W")
    assert got["clone"] == [rwsem_w]
    assert got["prepare"] == [rwsem_w]
    assert got["thp"] == [rwsem_w]
    assert got["unlink"] == [rwsem_w, unmap]  # the remapped VMA's entry is erased


def test_rcu_variant_takes_no_rmap_lock_around_vma_changes() -> None:
    engine, system, design = make("rcu")
    rec = Recorder()
    engine.add_instrument(rec)
    got: dict[str, Any] = {}

    async def body() -> None:
        mm = await system.new_mm()
        vma = await mmap_region(system, mm, 0, 16)
        folio = await fault(system, mm, 1)
        rec.clear()
        token = await design.vma_prepare([vma])
        await design.vma_complete(token, [vma])
        got["prepare"] = (token, rec.acquisitions())
        got["thp"] = await design.rmap_write_lock(folio)
        rec.clear()
        await design.unlink_vma(vma)
        got["unlink"] = rec.acquisitions()

    run(engine, body)
    assert got["prepare"] == (None, [])
    assert got["thp"] is None
    assert got["unlink"] == []  # not remapped: nothing to erase


# -- walks ----------------------------------------------------------------------------------------


def test_walk_of_an_exclusive_folio_visits_one_context() -> None:
    engine, system, design = make()
    seen: list[tuple[int, int, int]] = []
    got: dict[str, WalkResult] = {}

    async def body() -> None:
        parent = await system.new_mm()
        await mmap_region(system, parent, 0, 16)
        await fault(system, parent, 0)
        await dup_mmap(system, parent)
        await dup_mmap(system, parent)
        folio = await fault(system, parent, 5)  # faulted after the forks: exclusive to the parent
        assert folio.exclusive and folio.mapcount == 1
        got["res"] = await rmap_walk(system, folio, recording_rwc("walk", seen, engine))

    run(engine, body)
    res = got["res"]
    assert res.contexts_visited == 1
    assert not res.stopped_early  # normal completion: the oracle checked it
    assert seen == [(0, 5, 1)]
    assert design.counters["exclusive_shortcuts"] == 1
    assert system.walk_stats("walk").missed_mappings == 0


def test_traversal_is_root_first_then_post_order_newest_child_first() -> None:
    engine, system, _design = make()
    seen: list[tuple[int, int, int]] = []
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        folio = await fault(system, p, 2)
        a = await dup_mmap(system, p)
        a1 = await dup_mmap(system, a)
        b = await dup_mmap(system, p)  # list_add_rcu: b is at the head of p's children
        got["order"] = [p.mid, b.mid, a1.mid, a.mid]
        got["res"] = await rmap_walk(system, folio, recording_rwc("walk", seen, engine))

    run(engine, body)
    assert [mid for mid, _, _ in seen] == got["order"]
    assert got["res"].contexts_visited == 4


def test_pre_order_traversal_visits_each_context_before_its_children() -> None:
    engine, system, _design = make(traversal="pre")
    seen: list[tuple[int, int, int]] = []
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        folio = await fault(system, p, 2)
        a = await dup_mmap(system, p)
        a1 = await dup_mmap(system, a)
        b = await dup_mmap(system, p)
        got["order"] = [p.mid, b.mid, a.mid, a1.mid]
        await rmap_walk(system, folio, recording_rwc("walk", seen, engine))

    run(engine, body)
    assert [mid for mid, _, _ in seen] == got["order"]


def test_walk_covers_only_the_folios_subtree() -> None:
    engine, system, _design = make()
    seen: list[tuple[int, int, int]] = []
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await fault(system, p, 0)
        c1 = await dup_mmap(system, p)
        c2 = await dup_mmap(system, p)
        await fault(system, c2, 8)
        folio = await fault(system, c1, 4)  # created in c1 ...
        g = await dup_mmap(system, c1)  # ... and shared with c1's child only
        assert ctx_of(g).parent is ctx_of(c1)
        got["ids"] = (c1.mid, g.mid)
        got["res"] = await rmap_walk(system, folio, recording_rwc("walk", seen, engine))

    run(engine, body)
    assert [mid for mid, _, _ in seen] == list(got["ids"])
    assert got["res"].contexts_visited == 2  # never the parent or the sibling
    assert system.walk_stats("walk").missed_mappings == 0


def test_remapped_vma_is_found_through_its_remap_offset() -> None:
    engine, system, design = make()
    seen: list[tuple[int, int, int]] = []
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        folio = await fault(system, p, 3)
        moved = await mremap_move(system, p, 0, 16, 1000)
        assert moved.offset == 1000 and ctx_of(p).remaps == {moved.vid: (0, 16, 1000)}
        c = await dup_mmap(system, p)  # cow_context_do_fork: the child records the offset too
        got["child_remaps"] = list(ctx_of(c).remaps.values())
        got["res"] = await rmap_walk(system, folio, recording_rwc("walk", seen, engine))
        got["ids"] = (p.mid, c.mid)

    run(engine, body)
    pid, cid = got["ids"]
    assert got["child_remaps"] == [(0, 16, 1000)]
    assert seen == [(pid, 1003, 1), (cid, 1003, 1)]
    assert design.counters["remap_offsets_tried"] == 2
    assert system.walk_stats("walk").missed_mappings == 0


@pytest.mark.parametrize(("shortcut", "missed"),
                         [("maybe_mapped_shared", 1), ("anon_exclusive", 1), ("after_remaps", 0)])
def test_exclusive_folio_in_a_moved_vma(shortcut: str, missed: int) -> None:
    """The PoC stops after offset 0 for an exclusive folio, before the remap offsets: a folio in an
    mremap-moved VMA is then missed (the oracle counts it), with PageAnonExclusive required too;
    ``after_remaps`` checks later."""
    engine, system, _design = make(shortcut=shortcut)

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        folio = await fault(system, p, 3)
        await mremap_move(system, p, 0, 16, 1000)
        seen: list[tuple[int, int, int]] = []
        res = await rmap_walk(system, folio, recording_rwc("walk", seen, engine))
        assert res.contexts_visited == 1 and not res.stopped_early
        assert len(seen) == 1 - missed

    run(engine, body)
    assert system.walk_stats("walk").missed_mappings == missed


@pytest.mark.parametrize(("shortcut", "missed"), [("maybe_mapped_shared", 1), ("anon_exclusive", 0)])
def test_poc_exclusive_test_misses_a_folio_left_only_in_a_child(shortcut: str, missed: int) -> None:
    """After the parent's COW copy the old folio has one mapping, in the child: the PoC's
    ``!folio_maybe_mapped_shared`` stops at the parent's context; PageAnonExclusive does not."""
    engine, system, _design = make(shortcut=shortcut)

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        old = await fault(system, p, 3)
        await dup_mmap(system, p)
        await handle_mm_fault(system, p, 3, True)  # wp_page_copy in the parent
        assert old.mapcount == 1 and not old.exclusive
        await rmap_walk(system, old, recording_rwc("walk", [], engine))

    run(engine, body)
    assert system.walk_stats("walk").missed_mappings == missed


async def emulated_fork(system: MmSystem, design: CowContextDesign, parent: MmStruct, vpn: int,
                        copy_at: int) -> MmStruct:
    """dup_mmap in slow motion for one faulted VMA: anon_vma_fork at once, the PTE copy at
    ``copy_at`` (virtual ns), dup_cow_context 1 µs later."""
    engine = system.engine
    child = await system.new_mm(parent)
    src = parent.vmas[0]
    tmp = system.new_vma(child, src.start, src.end, src.pgoff)
    child.insert_vma(tmp)
    await design.fork_vma(tmp, src)
    await engine.delay(copy_at - engine.now)
    pte = parent.ptes[vpn]  # copy_present_pte
    pte.folio.mapcount += 1
    pte.folio.exclusive = False
    pte.writable = False
    child.ptes[vpn] = Pte(pte.folio, False)
    if system.inflight_walks:  # what copy_page_range tells the oracle
        system.entry_copied(pte.folio, (parent.mid, vpn), (child.mid, vpn))
    await engine.delay(1_000)
    await design.fork_mm(child, parent)
    return child


@pytest.mark.parametrize(("fork_link", "missed"), [("end", 1), ("early", 0)])
def test_walk_racing_with_fork_of_the_folios_mm(fork_link: str, missed: int) -> None:
    """The walk starts after the PTE was copied but before dup_mmap ends: with the PoC's link at
    the end of dup_mmap the new child is not on the forking mm's children list yet and its copy,
    present for the whole walk, is missed."""
    engine, system, design = make(fork_link=fork_link, shortcut="off")
    state: dict[str, Any] = {}

    async def forker() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        state["folio"] = await fault(system, p, 1)
        await emulated_fork(system, design, p, 1, copy_at=1_000)

    async def walker() -> None:
        await engine.delay(1_200)  # copied at 1000, linked at 2000 (end) or at once (early)
        await rmap_walk(system, state["folio"], recording_rwc("walk", [], engine, hold_ns=100))

    run(engine, forker, walker)
    assert system.walk_stats("walk").missed_mappings == missed


@pytest.mark.parametrize(("traversal", "missed"), [("post", 1), ("pre", 0)])
def test_walk_racing_with_fork_below_the_folios_context(traversal: str, missed: int) -> None:
    """The folio belongs to the root; its child d forks e during the walk.  Post-order visits e
    (nothing copied yet) before d, so the PTE copied into e meanwhile is missed even though e was
    linked early; pre-order visits d first."""
    engine, system, design = make(fork_link="early", traversal=traversal, shortcut="off")
    state: dict[str, Any] = {}

    async def forker() -> None:
        root = await system.new_mm()
        await mmap_region(system, root, 0, 16)
        state["folio"] = await fault(system, root, 1)
        d = await dup_mmap(system, root)
        await emulated_fork(system, design, d, 1, copy_at=1_500)

    async def walker() -> None:
        await engine.delay(100)  # 1 µs per context: root, then e or d over [1100, 2100)
        await rmap_walk(system, state["folio"], recording_rwc("walk", [], engine, hold_ns=1_000))

    run(engine, forker, walker)
    assert system.walk_stats("walk").missed_mappings == missed


# -- lifetimes and reference counts -----------------------------------------------------------------


def test_dead_contexts_are_kept_while_children_live_and_freed_after_a_grace_period() -> None:
    engine, system, design = make(costs=CostModel.free().with_overrides({"rcu_gp_ns": 1_000_000}))
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await fault(system, p, 1)
        c = await dup_mmap(system, p)
        pctx, cctx = ctx_of(p), ctx_of(c)
        await exit_mmap(system, p)
        # p's context is dead (no mm) but its child and the shared folio hold it.
        got["after_parent_exit"] = (pctx.mm, pctx.freed, pctx.refcnt.value, design.metadata())
        await exit_mmap(system, c)
        got["after_child_exit"] = (pctx.freed, cctx.freed, pctx.gone, design.metadata())

    run(engine, body)
    mm, freed, ref, meta = got["after_parent_exit"]
    assert mm is None and not freed and ref == 2  # child + folio
    assert meta["dead_context_count"] == 1 and meta["cow_context_count"] == 2
    pfreed, cfreed, gone, meta = got["after_child_exit"]
    assert pfreed and cfreed and not gone  # handed to kfree_rcu, grace period not over
    assert meta["cow_context_count"] == 0 and meta["dead_context_count"] == 0
    assert meta["cow_context_rcu_pending_bytes"] == 2 * COW_CONTEXT_BYTES
    assert meta["total_bytes"] == 2 * COW_CONTEXT_BYTES  # still held
    assert design.check_invariants(True) == []  # pending frees are not leaks
    # The run went on until the grace period ended.
    assert system.rcu.pending_by_desc.get(CTX_FREE_DESC, 0) == 0
    assert design.metadata()["total_bytes"] == 0
    assert design.metadata()["peak_total_bytes"] == 2 * COW_CONTEXT_BYTES
    assert engine.now >= 1_000_000


def test_refcount_cascade_frees_a_chain_of_dead_ancestors() -> None:
    engine, system, design = make()
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await fault(system, p, 1)
        c = await dup_mmap(system, p)
        g = await dup_mmap(system, c)
        pctx, cctx, gctx = ctx_of(p), ctx_of(c), ctx_of(g)
        # mm + child + the folio it created (shared by all three)
        got["refs"] = (pctx.refcnt.value, cctx.refcnt.value, gctx.refcnt.value)
        await exit_mmap(system, p)
        await exit_mmap(system, c)
        got["dead"] = (pctx.refcnt.value, cctx.refcnt.value, design.metadata()["dead_context_count"])
        assert design.check_invariants(False) == []
        freed_before = design.counters["contexts_freed"]
        await exit_mmap(system, g)  # the folio goes, then g's, c's and p's contexts in one cascade
        got["freed"] = design.counters["contexts_freed"] - freed_before
        got["ctxs"] = (pctx, cctx, gctx)

    run(engine, body)
    assert got["refs"] == (3, 2, 1)
    assert got["dead"] == (2, 1, 2)  # p: child + folio; c: child
    assert got["freed"] == 3
    assert all(ctx.freed and ctx.gone for ctx in got["ctxs"])
    assert design.check_invariants(True) == []


def test_folio_reuse_moves_the_context_reference() -> None:
    engine, system, design = make()
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        folio = await fault(system, p, 2)
        c = await dup_mmap(system, p)
        await munmap(system, p, 0, 16)  # only the child maps the folio now
        before = (ctx_of(p).refcnt.value, ctx_of(c).refcnt.value)
        await handle_mm_fault(system, c, 2, True)  # wp_can_reuse_anon_folio -> folio_move_anon_rmap
        got["ctx"] = (folio.mapping, ctx_of(c))
        got["refs"] = (before, (ctx_of(p).refcnt.value, ctx_of(c).refcnt.value))
        assert design.check_invariants(False) == []

    run(engine, body)
    mapping, cctx = got["ctx"]
    assert mapping is cctx
    assert got["refs"] == ((3, 1), (2, 2))  # p: mm + child + folio -> mm + child


def test_refcount_invariant_catches_a_lost_reference() -> None:
    engine, system, design = make()

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await fault(system, p, 1)
        ctx_of(p).refcnt.value -= 1  # a put without its get
        violations = design.check_invariants(False)
        assert len(violations) == 1 and "refcnt 1 != mm 1 + children 0 + folios 1" in violations[0]
        ctx_of(p).refcnt.value += 1
        assert any("not freed at the end" in v for v in design.check_invariants(True))

    run(engine, body)


# -- memory -----------------------------------------------------------------------------------------


def test_metadata_bytes_follow_the_counts() -> None:
    engine, system, design = make()
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        for i in range(9):  # nine remapped faulted VMAs: nine remap entries, two maple leaves
            await mmap_region(system, p, i * 32, 16)
            await fault(system, p, i * 32)
            await mremap_move(system, p, i * 32, 16, 4096 + i * 32)
        await dup_mmap(system, p)  # the child records all nine offsets again
        got["meta"] = design.metadata()

    run(engine, body)
    meta = got["meta"]
    assert COW_CONTEXT_BYTES == 96 and remap_bytes(9) == 2 * MAPLE_NODE_BYTES and remap_bytes(8) == 256
    assert meta["cow_context_count"] == 2
    assert meta["cow_context_bytes"] == 2 * 96
    assert meta["remap_entry_count"] == 18
    assert meta["remap_bytes"] == 2 * remap_bytes(9)
    assert meta["total_bytes"] == 2 * 96 + 2 * remap_bytes(9)
    assert meta["peak_total_bytes"] == meta["total_bytes"]


def test_munmap_and_split_keep_remap_entries_in_step() -> None:
    engine, system, design = make()
    got: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 64)
        await fault(system, p, 10)
        await fault(system, p, 40)
        await mremap_move(system, p, 0, 64, 1000)
        await munmap(system, p, 1016, 16)  # splits the moved VMA in three, drops the middle
        got["remaps"] = sorted(ctx_of(p).remaps.values())
        assert design.check_invariants(False) == []
        await exit_mmap(system, p)
        got["after_exit"] = dict(ctx_of(p).remaps)

    run(engine, body)
    assert got["remaps"] == [(0, 16, 1000), (32, 64, 1000)]
    assert got["after_exit"] == {}
    assert design.metadata()["remap_entry_count"] == 0


def test_tolerate_races_defers_page_table_frees_and_reports_them() -> None:
    engine, system, design = make("tolerate_races")
    got: dict[str, int] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        await fault(system, p, 1)
        await munmap(system, p, 0, 16)
        got["pending"] = design.metadata()["pgtable_rcu_pending_bytes"]

    run(engine, body)
    assert got["pending"] == 4096  # one PTE table, freed after the grace period
    assert design.metadata()["pgtable_rcu_pending_bytes"] == 0


# -- the ctx_rwsem variant under concurrency ----------------------------------------------------------


@pytest.mark.parametrize(("variant", "link_at"), [("ctx_rwsem", 10_010), ("rcu", 20)])
def test_ctx_rwsem_excludes_the_fork_link_during_a_walk(variant: str, link_at: int) -> None:
    engine, system, design = make(variant)
    state: dict[str, Any] = {}

    async def setup() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        state["folio"] = await fault(system, p, 1)
        state["p"] = p

    async def walker() -> None:
        await engine.delay(10)  # walks [10, 10_010): rmap_one takes 10 µs in p's context
        await rmap_walk(system, state["folio"], recording_rwc("walk", [], engine, hold_ns=10_000))

    async def forker() -> None:
        await engine.delay(20)
        child = await system.new_mm(state["p"])
        await design.fork_mm(child, state["p"])
        state["linked_at"] = engine.now

    run(engine, setup, walker, forker)
    assert state["linked_at"] == link_at


@pytest.mark.parametrize(("variant", "expect"), [("ctx_rwsem", -1), ("rcu", 1)])
def test_reclaim_walk_gives_up_on_a_write_locked_context(variant: str, expect: int) -> None:
    engine, system, design = make(variant)
    state: dict[str, Any] = {}

    async def splitter() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 16)
        state["folio"] = folio = await fault(system, p, 1)
        token = await design.rmap_write_lock(folio)  # THP split's write lock
        await engine.delay(1000)
        await design.rmap_write_unlock(token)

    async def reclaim() -> None:
        await engine.delay(10)
        state["refs"] = await folio_referenced(system, state["folio"], is_locked=False)

    run(engine, splitter, reclaim)
    assert state["refs"] == expect
    assert system.walk_stats("folio_referenced").contended == (1 if expect < 0 else 0)
    assert design.check_invariants(False) == []


def test_ctx_rwsem_pin_keeps_a_context_alive_while_the_walker_sleeps_on_it() -> None:
    """The walker pins a child context and sleeps on its rwsem; the child's mm goes meanwhile and
    drops the last other reference: the pin keeps the context allocated, the walker then finds it
    dead, and the pin's put frees it."""
    engine, system, design = make("ctx_rwsem", shortcut="off")  # the folio is exclusive to root
    state: dict[str, Any] = {}

    async def holder() -> None:
        root = await system.new_mm()
        await mmap_region(system, root, 0, 16)
        state["folio"] = await fault(system, root, 1)
        child = await system.new_mm(root)
        await design.fork_mm(child, root)
        state["child"], state["cctx"] = child, ctx_of(child)
        token = await design.vma_prepare([system.new_vma(child, 0, 16)])  # child's rwsem W
        await engine.delay(5_000)
        await design.vma_complete(token, [])

    async def walker() -> None:
        await engine.delay(10)
        state["res"] = await rmap_walk(system, state["folio"], recording_rwc("walk", [], engine))

    async def exiter() -> None:
        await engine.delay(1_000)
        await design.exit_mm(state["child"])  # no faulted VMAs: no rwsem needed
        cctx = state["cctx"]
        state["after_exit"] = (cctx.freed, cctx.refcnt.value, cctx.pins)

    run(engine, holder, walker, exiter)
    assert state["after_exit"] == (False, 1, 1)  # only the walker's pin holds it
    res = state["res"]
    assert res.contexts_visited == 2 and res.vmas_visited == 1
    assert design.counters["dead_contexts_visited"] == 1  # re-checked after the rwsem
    assert state["cctx"].freed and state["cctx"].gone
    assert design.check_invariants(False) == []


@pytest.mark.parametrize("how", ["rmap_one_stops", "trylock_fails"])
def test_ctx_rwsem_walk_ending_inside_a_descendant_drops_its_pin(how: str) -> None:
    engine, system, design = make("ctx_rwsem", shortcut="off")
    state: dict[str, Any] = {}

    async def walker() -> None:
        root = await system.new_mm()
        await mmap_region(system, root, 0, 16)
        folio = await fault(system, root, 1)
        child = await dup_mmap(system, root)
        state["cctx"] = ctx_of(child)
        if how == "trylock_fails":
            state["token"] = await design.vma_prepare([child.vmas[0]])  # child context written

        async def rmap_one(vma: Vma, vpn: int) -> bool:
            return vma.mm is not child  # stop in the child

        state["res"] = await rmap_walk(system, folio, RmapWalkControl(
            "walk", rmap_one, try_lock=how == "trylock_fails"))
        state["pins"] = state["cctx"].pins
        assert design.check_invariants(False) == []
        if how == "trylock_fails":
            await design.vma_complete(state["token"], [])

    run(engine, walker)
    res = state["res"]
    assert state["pins"] == 0
    assert res.contexts_visited == 2
    assert (res.stopped_early, res.contended) == ((True, False) if how == "rmap_one_stops" else (False, True))
    assert design.counters["walk_pins"] == 1


@pytest.mark.parametrize("variant", ["rcu", "ctx_rwsem"])
def test_thp_split_hands_the_context_reference_to_every_small_folio(variant: str) -> None:
    from mm.huge_memory import split_huge_folio
    from mm.types import HPAGE_PMD_NR

    # The anon_exclusive correction: the PoC's test (mapcount <= 1; the head's is 0 once its PMDs
    # are migration entries) would stop remap_page's walk after the parent and leave the child's
    # migration PMD stale (test_poc_fidelity.py pins the PoC's miss for migration).
    engine, system, design = make(variant, shortcut="anon_exclusive")
    rec = Recorder()
    engine.add_instrument(rec)
    state: dict[str, Any] = {}

    async def body() -> None:
        p = await system.new_mm()
        await mmap_region(system, p, 0, 2 * HPAGE_PMD_NR, thp=True)
        await handle_mm_fault(system, p, 3, True)
        thp = p.pmds[0].folio
        assert thp.order == 9
        c = await dup_mmap(system, p)
        pctx = ctx_of(p)
        state["before"] = pctx.refcnt.value  # mm + child + the THP
        rec.clear()
        assert await split_huge_folio(system, thp)
        state["acq"] = [a for a in rec.acquisitions() if a[0].startswith("cow_context")]
        state["after"] = pctx.refcnt.value
        state["small"] = [f for f in system.folios.values() if f.mapping is pctx]
        state["ids"] = (p.mid, c.mid)
        assert design.check_invariants(False) == []
        await exit_mmap(system, c)
        await exit_mmap(system, p)
        assert design.check_invariants(True) == []

    run(engine, body)
    assert state["before"] == 3
    assert len(state["small"]) == HPAGE_PMD_NR
    assert state["after"] == 2 + HPAGE_PMD_NR
    assert system.walk_stats("try_to_migrate").missed_mappings == 0
    assert system.walk_stats("remove_migration_ptes").missed_mappings == 0
    pid, cid = state["ids"]
    if variant == "ctx_rwsem":
        # rmap_write_lock on the folio's context, then each locked walk reads the child's context
        # nested (subclass 1) and takes nothing for the context it already holds: the unmap walk,
        # then remap_page's one walk per order-0 folio.
        child_r = ("cow_context->rwsem/1", f"mm{cid}->cow_context->rwsem", "R")
        assert state["acq"] == [("cow_context->rwsem", f"mm{pid}->cow_context->rwsem", "W")] + [child_r] * (
            1 + HPAGE_PMD_NR)
        assert engine.lock_classes["cow_context->rwsem/1"].read.acquisitions == 1 + HPAGE_PMD_NR
    else:
        assert state["acq"] == []


# -- whole-system properties --------------------------------------------------------------------------

# (kind, which mm, a, b); kinds repeated to weight them.
KINDS = ["fault"] * 5 + ["walk"] * 4 + ["fork"] * 2 + ["exit"] * 2 + ["munmap", "mremap", "mmap"]
OPS = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 7), st.integers(0, 255), st.integers(1, 32)),
               min_size=8, max_size=40)


async def apply(system: MmSystem, mms: list[MmStruct], op: tuple[str, int, int, int]) -> None:
    kind, which, a, b = op
    mm = mms[which % len(mms)]
    if kind == "walk":
        folios = list(system.folios.values())
        if folios:
            await folio_referenced(system, folios[a % len(folios)], is_locked=False)
    elif kind == "mmap":
        start = 128 + (a % 8) * 16
        if not mm.vmas_in(start, start + 16):
            await mmap_region(system, mm, start, 16)
    elif kind == "fault":
        await handle_mm_fault(system, mm, a, True)
    elif kind == "fork":
        if len(mms) < 6:
            mms.append(await dup_mmap(system, mm))
    elif kind == "exit":
        if len(mms) > 1:
            mms.remove(mm)
            await exit_mmap(system, mm)
    elif kind == "munmap":
        await munmap(system, mm, a, b)
    elif kind == "mremap" and mm.vmas:
        vma = mm.vmas[a % len(mm.vmas)]
        # Far above every mmap (the offset changes), or back to its own pgoff (offset 0).
        target = vma.pgoff if b % 4 == 0 else 1024 + (b % 8) * 256
        if target != vma.start and not mm.vmas_in(target, target + vma.pages):
            await mremap_move(system, mm, vma.start, vma.pages, target)


@pytest.mark.parametrize(("variant", "fork_link", "traversal"), [
    ("rcu", "end", "post"), ("ctx_rwsem", "end", "post"), ("tolerate_races", "end", "post"),
    ("ctx_rwsem", "early", "pre")])
@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_random_histories_keep_invariants_and_walks_complete(
        variant: str, fork_link: str, traversal: str, ops: list[tuple[str, int, int, int]]) -> None:
    """One task, so no races: every walk must find every mapping (with the short-cut checked
    after the remap offsets), every reference must balance, and everything must be freed."""
    engine, system, design = make(variant, shortcut="after_remaps", fork_link=fork_link, traversal=traversal)

    async def body() -> None:
        mms = [await system.new_mm()]
        await mmap_region(system, mms[0], 0, 128)
        for op in ops:
            await apply(system, mms, op)
            assert design.check_invariants(False) == [], op
        for mm in mms:
            await exit_mmap(system, mm)
        assert design.check_invariants(True) == []

    run(engine, body)
    stats = system.walk_stats("folio_referenced")
    assert stats.missed_mappings == 0
    assert stats.freed_vma_visits == 0
    assert stats.contended == 0
    meta = design.metadata()
    assert meta["total_bytes"] == 0 and meta["remap_entry_count"] == 0
    assert design.counters["contexts_freed"] == design.counters["contexts_allocated"]
    assert design.counters["freed_contexts_visited"] == 0
    assert not engine.rcu_sleeps
