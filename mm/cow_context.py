"""The COW-context reverse map: Lorenzo Stoakes' LSF/MM/BPF 2026 proof of concept.

Mirrors ``mm/cow_context.c`` of ``ljs/linux.git`` branch ``project/cow-context`` (reference
docs/kernel-rmap.md §5.2-5.4, [R3]) in its ``CONFIG_COW_CONTEXT_ANON_RMAP`` mode ([R2]), where the
anon_vma machinery is stubbed out:

* one ``struct cow_context`` per mm (``mm_init_cow_context``), linked into a parent/children/
  siblings tree at the end of fork (``dup_cow_context``) under the *parent's* ``list_write_lock``
  (lock class ``cow_context->lock``);
* ``vma->anon_vma`` is only a marker (``DUMMY_ANON_VMA``) set under ``mm->page_table_lock``
  (``__anon_vma_prepare``); ``anon_vma_fork``/``anon_vma_clone``/``unlink_anon_vmas`` become pointer
  copies and clears;
* every anon folio holds a reference on the context of the mm that created it (or reused it,
  ``folio_move_anon_rmap``): ``get_cow_context`` is an atomic on the context's refcount line,
  modelled as a :class:`~concurrency.atomic.ContendedAtomic` (class ``cow_context->refcnt``), which
  is the hot line for a many-threaded mm faulting in parallel;
* VMAs moved away from their anonymous pgoff (``offset = vm_start - vm_pgoff``, in pages) are
  recorded in the context's remap maple tree (``cow_context_do_remap``/``_do_fork``/
  ``_vma_adjust``/``_vma_unmap``);
* contexts outlive their mm: ``drop_cow_context`` clears ``->mm`` and drops the mm's reference;
  the last reference (children and folios hold them) frees the context with ``kfree_rcu`` and
  cascades to the parent (``__put_cow_context``, ``delete_child_from_parent``);
* ``cow_context_walk``: under ``rcu_read_lock`` only, ``traverse_contexts`` visits the folio's
  context, then its descendants depth-first post-order; ``walk_context`` looks the folio up at
  offset 0 and then at each remap offset, and stops the whole walk after the first context if the
  folio was and still is exclusive.

Walk-safety variants (switch ``walk_safety``, reference §6.5 item 6):

``rcu``
    The PoC: no lock at all, VMAs not stabilised ("TODO: VMA is not stabilised"), so a walk racing
    with munmap/mremap/fork may visit freed VMAs or miss mappings (the oracle counts both), and an
    ``rmap_one`` that may sleep runs inside the RCU read-side section (counted).
``ctx_rwsem``
    "Some sort of lock with mapping granularity" (LWN [L1]) modelled as a per-context rwsem
    (class ``cow_context->rwsem``).  Walkers take each visited live context's rwsem for read
    (``down_read_trylock`` when ``rwc.try_lock``); fork links a child under the parent context's
    rwsem written; ``unlink_vma``, ``vma_prepare``..``vma_complete`` and ``clone_vma(remap)`` hold
    the mm's context rwsem written; a THP split holds the folio's context rwsem written.  Because a
    walker sleeps on these rwsems it cannot stay inside one RCU read-side section: it traverses
    the tree under RCU, *pins* each live context it is about to walk with
    ``refcount_inc_not_zero`` (so that it and its sibling/parent links survive while the walker
    sleeps outside RCU), walks it under its rwsem outside RCU, re-enters RCU to step to the next
    context and only then drops the pin.  (The folio's own context needs no pin: the folio, locked
    and referenced by the caller, holds one.)  This is our design, not the PoC's; it costs two
    refcount atomics per visited descendant.
``tolerate_races``
    Stoakes' "crazier" alternative: the RCU walk of ``rcu`` plus RCU-delayed page-table frees
    (``defer_pgtable_free``: mm/mmap.py's ``free_pgtables`` then frees page tables with
    ``kfree_rcu``), so an unlocked walker never touches a freed page table; the memory held over a
    grace period is reported.

Switches that test what the PoC's walk would need to be complete (defaults are the PoC; every
other value is a correction of it, not something the PoC does):

``exclusive_shortcut``
    The test that ends the whole traversal after a context was walked (normally the first one).
    ``maybe_mapped_shared`` (default, the PoC): ``walk_context`` notes ``was_exclusive =
    !folio_maybe_mapped_shared(folio)`` (include/linux/mm.h: mapcount <= 1 for a small folio or
    a single mapping), walks offset 0 and stops the traversal if the folio was and still is
    exclusive, before the remap offsets.  The test reads only the mapcount, so it also holds for
    a folio whose only mapping is in a descendant (after the parent's COW copy) and for the
    destination of ``remove_migration_ptes`` (mapcount 0, then 1 after the first restored
    entry): those walks miss the descendants' mappings, and a missed migration entry is a stale
    one.  Corrections of the PoC: ``anon_exclusive``: the test also requires PageAnonExclusive
    (sound only if fork clears it when it copies a migration entry, as copy_nonpresent_pte makes
    a readable, non-exclusive entry; a migration destination gets it only from a restored
    exclusive entry); ``after_remaps``: the ``anon_exclusive`` test, checked after the context's
    remap offsets were walked too (at offset 0 an exclusive folio in an mremap-moved VMA is
    missed); ``off``: never short-cut.
``fork_link``
    ``end`` (default): the child context is linked at the end of dup_mmap, after the page tables
    were copied (``dup_cow_context``), so a walk racing with fork can miss a PTE copied into the
    child ("TODO: race vs. fork + unmap in parent"); ``early``: linked at the first
    ``anon_vma_fork``, before any copy_page_range, where anon_vma_fork links the child's AVCs.
``traversal``
    ``post`` (default): the PoC's post-order, a child before its parent; ``pre``: each context
    before its children.  A walk racing with a fork in a *descendant* of the folio's context can
    miss the PTE copied into the new child unless the forking mm is visited first (the anon_vma
    interval tree keeps a parent VMA before the child VMAs appended at fork); ``early`` plus
    ``pre`` closes the fork race.

Modelling notes
* ``mmget_not_zero(mm)`` per visited context is a plain ``atomic_ns`` (the mm_users line is not
  modelled as contended).  It is ``atomic_inc_not_zero(&mm->mm_users)`` (include/linux/sched/mm.h)
  and mm_users reaches 0 before ``exit_mmap`` starts (``mmput`` -> ``__mmput``), so it fails for an
  mm whose teardown has begun (``mm.exiting``), not only for one torn down (``not mm.alive``): the
  walk skips a context whose mm is still zapping its page tables (counted as ``mmget_failed``).
  The reference a successful ``mmget_not_zero`` holds is not modelled: in the kernel it would
  defer the mm's teardown to the walker's ``mmput_async``; here an exit that starts while a
  walker is inside the mm goes ahead.
* Remap entries are kept per remapped VMA (``(pgoff, pgoff_end, offset)`` keyed by the VMA id) in
  the VMA's mm's context.  The PoC's maple tree stores pgoff ranges with one offset or a sorted
  dynarray of offsets; for the walk (the unique offsets overlapping the folio, ascending, as the
  PoC's sorted dynarray yields them) and for the store counts the two agree.  Each store or erase
  of an entry costs ``mt_store_ns``; gathering a context's remap offsets in a walk costs
  ``mt_lookup(entries)`` when the context has any.
* The PoC records remaps only for VMAs that have an anon_vma (``should_track_anon_remap``).  In
  the kernel an unfaulted anon VMA moved by mremap gets a fresh pgoff (``copy_vma``), so its
  offset is 0.  If the operations move an unfaulted VMA without resetting its pgoff, its first
  touch records the remap here (counted as ``remaps_recorded_at_first_touch``), otherwise every
  walk would miss its folios.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from concurrency.atomic import ContendedAtomic
from mm.cpu import spend
from mm.rmap_design import RmapDesign, RmapWalkControl, Switch, SwitchValue, WalkResult

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from concurrency.rwsem import RwSemaphore
    from concurrency.spinlock import QSpinlock
    from mm.system import MmSystem
    from mm.types import Folio, MmStruct, Vma

__all__ = [
    "COW_CONTEXT_BYTES",
    "CTX_FREE_DESC",
    "DUMMY_ANON_VMA",
    "MAPLE_NODE_BYTES",
    "REMAPS_PER_MAPLE_NODE",
    "CowContext",
    "CowContextDesign",
    "remap_bytes",
]

# --- object sizes (x86-64, no lockdep / debug options) ------------------------------------------
#
# struct cow_context (include/linux/mm_types.h on the PoC branch, reference §5.2):
#   refcount_t refcnt                      4   (+4 padding: the next field is a pointer)
#   struct mm_struct *mm                   8
#   struct maple_tree remap_mt            16   spinlock_t ma_lock (4, or lockdep_map_p with
#                                              LOCK_EXTERN) + unsigned int ma_flags (4)
#                                              + void __rcu *ma_root (8)
#   struct cow_context *parent             8
#   struct list_head children             16
#   struct list_head siblings             16
#   struct rcu_head rcu                   16   (next, func)
#   spinlock_t list_write_lock             4
#   spinlock_t concurrent_unmap_lock       4   (the later PoC version)
#                                        ---
#                                         96   8-byte aligned, no tail padding; kzalloc() serves
#                                              it from kmalloc-96, so 96 B per context.
COW_CONTEXT_BYTES = 96
#
# Remap entries live in the context's maple tree.  A leaf node (struct maple_node,
# maple_range_64) is 256 B with 16 slots and 15 pivots; a remapped range is stored as one slot and
# the gap after it as another (VMA pgoff ranges of one mm are rarely adjacent), so one leaf holds
# about 8 entries.  A "simple" entry (one offset, ``offset << 2 | 1``) lives in the slot itself.
# Estimate: ceil(entries / 8) leaves of 256 B per context with entries; internal nodes (one per
# 10 leaves) and the multi-offset dynarrays (only when two remapped VMAs of one mm cover the same
# anonymous pgoffs) are not counted.
MAPLE_NODE_BYTES = 256
REMAPS_PER_MAPLE_NODE = 8

CTX_FREE_DESC = "cow_context"  # kfree_rcu object description (concurrency/rcu.py pending_by_desc)
PGTABLE_FREE_SUFFIX = " page tables"  # mm/mmap.py free_pgtables' kfree_rcu description


def remap_bytes(entries: int) -> int:
    """Maple-tree bytes for ``entries`` remap entries of one context (see the size table)."""
    return -(-entries // REMAPS_PER_MAPLE_NODE) * MAPLE_NODE_BYTES


class _DummyAnonVma:
    """``DUMMY_ANON_VMA``: ``vma->anon_vma`` is only a "faulted" marker in COW-only mode."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DUMMY_ANON_VMA"


DUMMY_ANON_VMA = _DummyAnonVma()


class CowContext:
    """``struct cow_context``.

    The children list is an RCU list with the kernel's semantics: ``first_child`` is
    ``children.next``, ``next_sib``/``prev_sib`` are ``siblings.next``/``.prev`` (None is the list
    head).  ``list_add_rcu`` inserts at the head, so children are newest first.  ``list_del_rcu``
    leaves the removed entry's ``next_sib`` pointing where it did, so a reader standing on it
    carries on, as RCU readers do.
    """

    __slots__ = ("cid", "first_child", "freed", "gone", "linked", "list_lock", "mm", "nchildren",
                 "next_sib", "parent", "pins", "prev_sib", "refcnt", "remaps", "rwsem", "unmap_lock")

    def __init__(self, cid: int, mm: MmStruct, refcnt: ContendedAtomic, list_lock: QSpinlock,
                 unmap_lock: QSpinlock, rwsem: RwSemaphore | None) -> None:
        self.cid = cid
        self.mm: MmStruct | None = mm
        self.refcnt = refcnt  # 1 for the mm, 1 per child, 1 per folio (+ walker pins)
        self.parent: CowContext | None = None
        self.first_child: CowContext | None = None
        self.next_sib: CowContext | None = None
        self.prev_sib: CowContext | None = None
        self.linked = False  # on the parent's children list
        self.nchildren = 0
        self.list_lock = list_lock  # list_write_lock: "Protects children."
        self.unmap_lock = unmap_lock  # concurrent_unmap_lock
        self.rwsem = rwsem  # ctx_rwsem variant only
        self.remaps: dict[int, tuple[int, int, int]] = {}  # vma id -> (pgoff, pgoff_end, offset)
        self.freed = False  # handed to kfree_rcu (readers may still see it until the GP ends)
        self.gone = False  # the grace period ended: the memory is really freed
        self.pins = 0  # ctx_rwsem walkers holding a reference

    def children(self) -> list[CowContext]:
        """The children list, head first (for checks; walkers follow the links themselves)."""
        out = []
        child = self.first_child
        while child is not None:
            out.append(child)
            child = child.next_sib
        return out

    def __repr__(self) -> str:
        state = "freed" if self.freed else ("dead" if self.mm is None else "live")
        return f"<CowContext {self.cid} {state} ref={self.refcnt.value}>"


class _Walk:
    """State of one ``cow_context_walk``."""

    __slots__ = ("folio", "pin", "result", "root", "rwc")

    def __init__(self, folio: Folio, rwc: RmapWalkControl, root: CowContext) -> None:
        self.folio = folio
        self.rwc = rwc
        self.root = root
        self.result = WalkResult()
        self.pin: CowContext | None = None  # ctx_rwsem: the context pinned by the last visit


class CowContextDesign(RmapDesign):
    """One COW context per mm, RCU subtree walks, O(1) fork; see the module docstring."""

    name: ClassVar[str] = "cow_context"
    summary: ClassVar[str] = ("COW context per mm (LSF/MM/BPF 2026 PoC): parent/children tree under a "
                              "spinlock, folio holds a context reference, RCU subtree walk with the "
                              "exclusive short-cut, remap offsets, kfree_rcu of contexts")
    SWITCHES: ClassVar[dict[str, Switch]] = {
        "walk_safety": Switch(
            "rcu", ("rcu", "ctx_rwsem", "tolerate_races"),
            "rcu: the PoC, RCU only; ctx_rwsem: per-context rwsem taken R by walkers, W by "
            "fork-link/unlink/vma_prepare/remap/THP split; tolerate_races: RCU walk plus "
            "RCU-delayed page-table frees"),
        "exclusive_shortcut": Switch(
            "maybe_mapped_shared", ("maybe_mapped_shared", "anon_exclusive", "after_remaps", "off"),
            "when a walk stops after the first context walked: maybe_mapped_shared: the PoC, "
            "!folio_maybe_mapped_shared (mapcount<=1) before and after offset 0; corrections of the "
            "PoC: anon_exclusive: mapcount<=1 and PageAnonExclusive, after offset 0; after_remaps: "
            "the anon_exclusive test, after the context's remap offsets; off: never"),
        "fork_link": Switch(
            "end", ("end", "early"),
            "when fork links the child's context into the parent's children: end: at the end of "
            "dup_mmap, after the page tables were copied (the PoC's dup_cow_context; a walk racing "
            "with the fork can miss PTEs copied into the child, \"TODO: race vs. fork\"); early: "
            "before the first copy_page_range, where anon_vma_fork links the child's AVCs"),
        "traversal": Switch(
            "post", ("post", "pre"),
            "order of the folio context's descendants: post: depth-first post-order, the PoC's "
            "traverse_contexts (a child before its parent); pre: each context before its children "
            "(with fork_link=early a walk racing with fork then misses no copied PTE)"),
    }

    def __init__(self, system: MmSystem, switches: Mapping[str, SwitchValue] | None = None) -> None:
        super().__init__(system, switches)
        self.walk_safety = self.switch_choice("walk_safety")
        self.exclusive_shortcut = self.switch_choice("exclusive_shortcut")
        self.fork_link = self.switch_choice("fork_link")
        self.traversal = self.switch_choice("traversal")
        self.use_rwsem = self.walk_safety == "ctx_rwsem"
        # Read by mm/mmap.py free_pgtables: free page tables after an RCU grace period.
        self.defer_pgtable_free = self.walk_safety == "tolerate_races"
        self._live: dict[int, CowContext] = {}  # allocated, not yet kfree_rcu'd (cid order)
        self._dead = 0  # live contexts whose mm is gone
        self._remap_entries = 0
        self._remap_bytes = 0
        self._peak_total = 0
        self.counters: dict[str, int] = {
            "contexts_allocated": 0,
            "contexts_freed": 0,  # handed to kfree_rcu
            "walks": 0,
            "contexts_visited": 0,
            "dead_contexts_visited": 0,  # ctx->mm == NULL: kept alive by children or folios
            "mmget_failed": 0,  # mm_users reached 0: the mm is being (or was) torn down
            "freed_contexts_visited": 0,  # after its grace period: a use-after-free (must stay 0)
            "remap_offsets_tried": 0,
            "exclusive_shortcuts": 0,
            "walk_pins": 0,  # ctx_rwsem: refcount_inc_not_zero on a context to walk
            "walk_pin_failed": 0,
            "contended": 0,
            "remap_stores": 0,  # maple-tree stores and erases of remap entries
            "remaps_recorded_at_first_touch": 0,
        }

    # -- helpers -------------------------------------------------------------------------------

    def _ctx(self, mm: MmStruct) -> CowContext:
        ctx = mm.rmap
        assert isinstance(ctx, CowContext), f"mm{mm.mid} has no COW context"
        return ctx

    def _total(self) -> int:
        return (len(self._live) * COW_CONTEXT_BYTES + self._remap_bytes
                + self.sys.rcu.pending_by_desc.get(CTX_FREE_DESC, 0))

    def _account(self) -> None:
        """Total bytes only grow at allocations and stores: track the peak there."""
        total = self._total()
        if total > self._peak_total:
            self._peak_total = total

    def _set_remaps_bytes(self, ctx: CowContext, before: int) -> None:
        after = len(ctx.remaps)
        self._remap_entries += after - before
        self._remap_bytes += remap_bytes(after) - remap_bytes(before)

    async def _remap_store(self, ctx: CowContext, vma: Vma) -> None:
        """Record or adjust ``vma``'s remap entry (``add_new_remap`` / ``cow_context_vma_adjust``)."""
        entry = (vma.pgoff, vma.pgoff + vma.pages, vma.offset)
        if ctx.remaps.get(vma.vid) == entry:
            return
        await spend(self.sys, self.sys.cost("mt_store_ns"))
        before = len(ctx.remaps)
        ctx.remaps[vma.vid] = entry
        self._set_remaps_bytes(ctx, before)
        self.counters["remap_stores"] += 1
        self._account()

    async def _remap_erase(self, ctx: CowContext, vma: Vma) -> None:
        """``find_and_unmap_existing``: drop ``vma``'s entry; ``shrink_remaps`` takes the
        context's ``concurrent_unmap_lock`` inside RCU because "mmap_downgrade() makes life
        hard" (munmap erases under the mmap read lock)."""
        if vma.vid not in ctx.remaps:
            return
        rcu = self.sys.rcu
        rcu.rcu_read_lock()
        await ctx.unmap_lock.lock()
        ctx.unmap_lock.unlock()
        rcu.rcu_read_unlock()
        await spend(self.sys, self.sys.cost("mt_store_ns"))  # store the shrunk/empty entry
        before = len(ctx.remaps)
        del ctx.remaps[vma.vid]
        self._set_remaps_bytes(ctx, before)
        self.counters["remap_stores"] += 1

    async def _get(self, ctx: CowContext) -> None:
        """``get_cow_context``: refcount_inc on the context's cache line."""
        await ctx.refcnt.inc()

    async def _put(self, ctx: CowContext) -> None:
        """``put_cow_context``: the last reference frees the context (and may cascade)."""
        if await ctx.refcnt.dec_and_test():
            await self._release(ctx)

    async def _release(self, ctx: CowContext) -> None:
        """``__put_cow_context``: iteratively unlink from the parent, drop the parent's reference
        (cascading while that was the last), delete the remaps, ``kfree_rcu``."""
        curr: CowContext | None = ctx
        while curr is not None:
            if curr.first_child is not None or curr.mm is not None:
                raise RuntimeError(f"freeing {curr!r} with children or an mm")
            parent = await self._delete_child_from_parent(curr)
            if curr.remaps:  # delete_remaps: mtree_destroy under RCU
                await spend(self.sys, self.sys.cost("mt_store_ns"))
                before = len(curr.remaps)
                curr.remaps.clear()
                self._set_remaps_bytes(curr, before)
            self._kfree_rcu(curr)
            curr = parent

    async def _delete_child_from_parent(self, ctx: CowContext) -> CowContext | None:
        """``delete_child_from_parent``: ``list_del_rcu`` under the parent's list_write_lock, then
        ``refcount_dec_and_test`` on the parent: returns the parent if that freed it."""
        parent = ctx.parent
        if parent is None:
            return None
        await parent.list_lock.lock()
        await self.sys.pull_locked_lines(parent.list_lock)  # the children list's lines
        await spend(self.sys, self.sys.cost("list_op_ns"))
        prev, nxt = ctx.prev_sib, ctx.next_sib
        if prev is None:
            parent.first_child = nxt
        else:
            prev.next_sib = nxt
        if nxt is not None:
            nxt.prev_sib = prev
        ctx.prev_sib = None  # LIST_POISON2; next_sib stays for RCU readers
        ctx.linked = False
        parent.nchildren -= 1
        parent.list_lock.unlock()
        if await parent.refcnt.dec_and_test():
            return parent
        return None

    def _kfree_rcu(self, ctx: CowContext) -> None:
        ctx.freed = True
        del self._live[ctx.cid]
        self._dead -= 1  # a context is freed only after its mm dropped it
        self.counters["contexts_freed"] += 1

        def gone() -> None:
            ctx.gone = True

        self.sys.rcu.kfree_rcu(CTX_FREE_DESC, COW_CONTEXT_BYTES, gone)

    # -- mm and VMA lifecycle ------------------------------------------------------------------

    async def mm_init(self, mm: MmStruct) -> None:
        """``mm_init_cow_context``: kzalloc, refcnt = 1 (the mm's), empty lists and remap tree."""
        system = self.sys
        await spend(system, system.cost("slab_ns"))
        name = f"mm{mm.mid}->cow_context"
        refcnt = ContendedAtomic(system.engine, "cow_context->refcnt", value=1, instance=f"{name}->refcnt",
                                 costs=system.lock_costs)
        list_lock = system.new_spinlock("cow_context->lock", f"{name}->lock")
        unmap_lock = system.new_spinlock("cow_context->concurrent_unmap_lock",
                                         f"{name}->concurrent_unmap_lock")
        rwsem = system.new_rwsem("cow_context->rwsem", f"{name}->rwsem") if self.use_rwsem else None
        ctx = CowContext(mm.mid, mm, refcnt, list_lock, unmap_lock, rwsem)
        mm.rmap = ctx
        self._live[ctx.cid] = ctx
        self.counters["contexts_allocated"] += 1
        self._account()

    async def fork_mm(self, child: MmStruct, parent: MmStruct) -> None:
        """``dup_cow_context`` at the end of dup_mmap (``fork_link == "end"``, the PoC), unless
        :meth:`fork_vma` linked the child already (``"early"``)."""
        ctx = self._ctx(child)
        if ctx.parent is None:
            await self._link(ctx, self._ctx(parent))

    async def _link(self, ctx: CowContext, pctx: CowContext) -> None:
        """Link ``ctx`` at the head of ``pctx``'s children under the parent's list_write_lock, then
        take a reference on the parent.  (ctx_rwsem: also under the parent context's rwsem
        written, so no walker is inside the parent context while its children change.)"""
        ctx.parent = pctx
        if pctx.rwsem is not None:
            await pctx.rwsem.down_write()
        await pctx.list_lock.lock()
        await self.sys.pull_locked_lines(pctx.list_lock)  # the children list's lines
        await spend(self.sys, self.sys.cost("list_op_ns"))
        head = pctx.first_child
        ctx.next_sib = head
        ctx.prev_sib = None
        if head is not None:
            head.prev_sib = ctx
        pctx.first_child = ctx  # list_add_rcu: rcu_assign_pointer publishes the entry
        ctx.linked = True
        pctx.nchildren += 1
        pctx.list_lock.unlock()
        if pctx.rwsem is not None:
            pctx.rwsem.up_write()
        await self._get(pctx)

    async def fork_vma(self, child: Vma, parent: Vma) -> None:
        """``anon_vma_fork`` is a pointer copy; ``cow_context_do_fork`` records a remap in the
        child's context for a VMA whose offset is not 0 (no lock: until the child context is
        linked no walker can reach it; once linked, the child's mmap_lock is held for write and
        the child has no folio yet).  With ``fork_link == "early"`` the child context is linked
        here, before the first copy_page_range, as anon_vma_fork links the child's AVCs before the
        PTEs are copied: a walker that misses the child then cannot miss a PTE copied into it."""
        ctx = self._ctx(child.mm)
        if self.fork_link == "early" and ctx.parent is None:
            await self._link(ctx, self._ctx(parent.mm))
        child.anon_vma = parent.anon_vma
        if child.offset:
            await self._remap_store(ctx, child)

    async def anon_vma_prepare(self, vma: Vma) -> None:
        """``__anon_vma_prepare`` in COW-only mode: ``vma->anon_vma = DUMMY_ANON_VMA`` under
        ``mm->page_table_lock``; no rmap lock, no allocation."""
        ptl = vma.mm.page_table_lock
        await ptl.lock()
        first = vma.anon_vma is None
        if first:
            vma.anon_vma = DUMMY_ANON_VMA
        ptl.unlock()
        if first and vma.offset:
            # See the module docstring: a moved unfaulted VMA whose pgoff was not reset.
            ctx = self._ctx(vma.mm)
            if ctx.rwsem is not None:
                await ctx.rwsem.down_write()
            await self._remap_store(ctx, vma)
            if ctx.rwsem is not None:
                ctx.rwsem.up_write()
            self.counters["remaps_recorded_at_first_touch"] += 1

    async def clone_vma(self, new: Vma, src: Vma, op: str) -> None:
        """``anon_vma_clone`` is a pointer copy.  For mremap (``op == "remap"``,
        ``cow_context_do_remap``) the moved VMA's offset is recorded in its mm's context; split and
        merge ranges are adjusted in :meth:`vma_complete`."""
        new.anon_vma = src.anon_vma
        if op != "remap" or not new.offset:
            return
        ctx = self._ctx(new.mm)
        if ctx.rwsem is not None:
            await ctx.rwsem.down_write()
        await self._remap_store(ctx, new)
        if ctx.rwsem is not None:
            ctx.rwsem.up_write()

    async def vma_prepare(self, vmas: list[Vma]) -> object:
        """vma_prepare: the PoC takes no rmap lock (the anon_vma lock is stubbed out);
        ctx_rwsem: the mm's context rwsem written, so no walker sees the boundary change."""
        if not vmas:
            return None
        ctx = self._ctx(vmas[0].mm)
        if ctx.rwsem is None:
            return None
        await ctx.rwsem.down_write()
        return ctx

    async def vma_complete(self, token: object, vmas: list[Vma]) -> None:
        """vma_complete: ``cow_context_vma_adjust`` for remapped VMAs (split/merge/expand change
        their pgoff range), then unlock (ctx_rwsem)."""
        for vma in vmas:
            if vma.anon_vma is None or vma.freed:
                continue
            ctx = self._ctx(vma.mm)
            if vma.offset:
                await self._remap_store(ctx, vma)
            elif vma.vid in ctx.remaps:
                await self._remap_erase(ctx, vma)
        if isinstance(token, CowContext):
            assert token.rwsem is not None
            token.rwsem.up_write()

    async def unlink_vma(self, vma: Vma) -> None:
        """``unlink_anon_vmas`` clears the marker; ``cow_context_vma_unmap`` erases a remapped
        VMA's entries.  ctx_rwsem: under the mm's context rwsem written, so a walker holding it
        for read never sees the VMA go."""
        ctx = self._ctx(vma.mm)
        if ctx.rwsem is not None:
            await ctx.rwsem.down_write()
        vma.anon_vma = None
        await self._remap_erase(ctx, vma)
        if ctx.rwsem is not None:
            ctx.rwsem.up_write()

    async def exit_mm(self, mm: MmStruct) -> None:
        """``drop_cow_context``: ``WRITE_ONCE(context->mm, NULL)`` then ``put_cow_context``; the
        context lives on while children or folios reference it."""
        ctx = self._ctx(mm)
        if ctx.mm is None:
            raise RuntimeError(f"mm{mm.mid}: COW context dropped twice")
        ctx.mm = None
        self._dead += 1
        await self._put(ctx)

    # -- folios --------------------------------------------------------------------------------

    async def folio_add_new_anon_rmap(self, folio: Folio, vma: Vma, vpn: int, exclusive: bool) -> None:
        """``__folio_set_anon_cow``: the folio takes a reference on the faulting mm's context
        (whatever ``exclusive`` says: the PoC uses the current mm's context either way)."""
        ctx = self._ctx(vma.mm)
        await self._get(ctx)
        folio.mapping = ctx

    async def folio_move_anon_rmap(self, folio: Folio, vma: Vma) -> None:
        """``folio_move_anon_rmap`` (exclusive reuse): if the folio's context is not the faulting
        mm's, get the new one, point the folio at it, put the old one (which may cascade)."""
        new = self._ctx(vma.mm)
        old = folio.mapping
        if old is new:
            return
        await self._get(new)
        folio.mapping = new
        if isinstance(old, CowContext):
            await self._put(old)

    async def folio_free(self, folio: Folio) -> None:
        """The folio's reference on its context goes with it."""
        ctx = folio.mapping
        if not isinstance(ctx, CowContext):
            return  # freed before it was ever mapped (a lost fault race)
        folio.mapping = None
        await self._put(ctx)

    async def folio_migrate_mapping(self, src: Folio, dst: Folio) -> None:
        """The new folio points at the old one's context and takes its own reference."""
        ctx = src.mapping
        if isinstance(ctx, CowContext):
            await self._get(ctx)
        dst.mapping = ctx

    async def folio_split(self, head: Folio, tails: list[Folio]) -> None:
        """THP split: each order-0 folio points at the head's context with its own reference
        (one ``refcount_add``); the head's reference passes to them.  ``head.mapping`` is left
        in place: remap_page still walks the head's rmap."""
        ctx = head.mapping
        for tail in tails:
            tail.mapping = ctx
        if not isinstance(ctx, CowContext):
            return
        if tails:
            if len(tails) > 1:
                await ctx.refcnt.add(len(tails) - 1)
        else:
            await self._put(ctx)

    # -- walks ---------------------------------------------------------------------------------

    def _exclusive(self, folio: Folio) -> bool:
        """``!folio_maybe_mapped_shared(folio)`` (the PoC: mapcount <= 1), or with the
        ``anon_exclusive``/``after_remaps`` corrections also PageAnonExclusive.  ``folio`` is the
        folio walked: for ``remove_migration_ptes`` the destination, whose mapcount grows as the
        walk restores entries."""
        if self.exclusive_shortcut == "maybe_mapped_shared":
            return folio.mapcount <= 1
        return folio.mapcount <= 1 and folio.exclusive

    async def rmap_walk(self, folio: Folio, rwc: RmapWalkControl) -> WalkResult:
        """``cow_context_walk``: ``traverse_contexts(folio->cow_context, walk_context)``."""
        root = folio.mapping
        self.counters["walks"] += 1
        if not isinstance(root, CowContext):
            return WalkResult()
        walk = _Walk(folio, rwc, root)
        rcu = self.sys.rcu
        rcu.rcu_read_lock()
        try:
            if self.use_rwsem:
                await self._traverse(walk, self._visit_locked)
            else:
                await self._traverse(walk, self._visit_rcu)
        finally:
            if walk.pin is not None:
                await self._unpin(walk)
            rcu.rcu_read_unlock()
        res = walk.result
        self.counters["contexts_visited"] += res.contexts_visited
        if res.contended:
            self.counters["contended"] += 1
        return res

    async def _traverse(self, walk: _Walk, visit: Callable[[_Walk, CowContext], Awaitable[bool]]) -> None:
        """``traverse_contexts``: the root first, then a non-recursive depth-first traversal of its
        descendants (``list_first_or_null_rcu(children)`` to descend,
        ``list_next_or_null_rcu(siblings)`` or the parent to move on), post-order as in the PoC or
        pre-order (``traversal`` switch); stops when ``visit`` returns False.  Runs inside the
        walker's RCU read-side section."""
        if self.traversal == "pre":
            await self._traverse_pre(walk, visit)
            return
        root = walk.root
        if not await visit(walk, root):
            return
        parent: CowContext | None = None
        curr = root
        while True:
            if curr is not parent:
                nxt = curr.first_child
                if nxt is not None:
                    curr = nxt
                    continue
            if curr is root or not await visit(walk, curr):
                return
            parent = curr.parent
            assert parent is not None
            nxt = curr.next_sib
            curr = nxt if nxt is not None else parent
            if walk.pin is not None:
                # ctx_rwsem: the next context is found; the one just walked may go now.
                await self._unpin(walk)

    async def _traverse_pre(self, walk: _Walk, visit: Callable[[_Walk, CowContext], Awaitable[bool]]) -> None:
        """Pre-order: every context before its children, so (as the anon_vma interval tree visits a
        parent VMA before the child VMAs fork appended after it) a walk reaches a forking mm before
        the child its PTEs are being copied into."""
        root = walk.root
        curr: CowContext | None = root
        while curr is not None:
            if not await visit(walk, curr):
                return
            nxt = curr.first_child
            up = curr
            while nxt is None and up is not root:
                nxt = up.next_sib
                if nxt is None:
                    parent = up.parent
                    assert parent is not None
                    up = parent
            if walk.pin is not None:
                await self._unpin(walk)  # the next context is found
            curr = nxt

    async def _visit_rcu(self, walk: _Walk, ctx: CowContext) -> bool:
        """One context of an RCU-only walk (``rcu`` and ``tolerate_races``)."""
        mm = self._enter(walk, ctx)
        if mm is None:
            return True
        return await self._walk_context(walk, ctx, mm)

    def _enter(self, walk: _Walk, ctx: CowContext) -> MmStruct | None:
        """Count the visit; the mm to walk, or None if there is none (dead or exiting)."""
        walk.result.contexts_visited += 1
        if ctx.gone:
            self.counters["freed_contexts_visited"] += 1
        return self._usable_mm(ctx)

    def _usable_mm(self, ctx: CowContext) -> MmStruct | None:
        """``READ_ONCE(context->mm)`` and ``mmget_not_zero(mm)`` (``atomic_inc_not_zero`` on
        mm_users), which fails from the start of exit_mmap (``mm.exiting``)."""
        mm = ctx.mm  # READ_ONCE(context->mm)
        if mm is None:
            self.counters["dead_contexts_visited"] += 1
            return None
        if mm.exiting or not mm.alive:  # mmget_not_zero fails: mm_users already reached 0
            self.counters["mmget_failed"] += 1
            return None
        return mm

    async def _visit_locked(self, walk: _Walk, ctx: CowContext) -> bool:
        """One context of a ctx_rwsem walk: pin it (descendants only), leave RCU, take its rwsem
        for read (try only with ``rwc.try_lock``; nothing for the folio's own context when the
        caller holds it written, ``rwc.locked``), walk it, unlock, re-enter RCU.  The pin is
        dropped by :meth:`_traverse` once the next context is found."""
        if self._enter(walk, ctx) is None:
            return True
        rwc = walk.rwc
        rcu = self.sys.rcu
        if ctx is not walk.root:
            self.counters["walk_pins"] += 1
            if not await ctx.refcnt.inc_not_zero():
                self.counters["walk_pin_failed"] += 1
                return True  # being freed: nothing to walk
            ctx.pins += 1
            walk.pin = ctx
        sem = ctx.rwsem
        assert sem is not None
        take = not (rwc.locked and ctx is walk.root)
        # Under the caller's write hold on the folio's context a descendant's rwsem is a nested
        # acquisition of the same class (ancestor before descendant, never the reverse).
        subclass = 1 if rwc.locked else 0
        rcu.rcu_read_unlock()
        try:
            if take:
                if rwc.try_lock:
                    if not sem.down_read_trylock(subclass):
                        walk.result.contended = True
                        return False
                else:
                    await sem.down_read(subclass)
            try:
                # The mm may have gone while this walker slept on the rwsem.
                mm = self._usable_mm(ctx)
                return True if mm is None else await self._walk_context(walk, ctx, mm)
            finally:
                if take:
                    sem.up_read()
        finally:
            rcu.rcu_read_lock()

    async def _unpin(self, walk: _Walk) -> None:
        ctx = walk.pin
        assert ctx is not None
        walk.pin = None
        ctx.pins -= 1
        await self._put(ctx)

    async def _walk_context(self, walk: _Walk, ctx: CowContext, mm: MmStruct) -> bool:
        """``walk_context``: offset 0, the exclusive short-cut (``was_exclusive`` noted before offset
        0, checked again after it: "Check again in case fork raced"), then each unique remap offset
        overlapping the folio.  False ends the traversal."""
        system = self.sys
        folio = walk.folio
        await spend(system, 2 * system.costs.atomic_ns)  # mmget_not_zero + mmput_async
        shortcut = self.exclusive_shortcut
        was_exclusive = shortcut != "off" and self._exclusive(folio)
        if not await self._walk_offset(walk, mm, 0):
            return False
        # "Check again in case fork raced, otherwise, abort the walk we're done."
        if shortcut in ("anon_exclusive", "maybe_mapped_shared") and was_exclusive \
                and self._exclusive(folio):
            self.counters["exclusive_shortcuts"] += 1
            return False  # normal completion: the walk found everything there is
        if ctx.remaps:
            await spend(system, system.vary("mt_lookup_base_ns", system.costs.mt_lookup(len(ctx.remaps))))
            first, last = folio.index, folio.index + folio.nr_pages
            offsets = sorted({off for lo, hi, off in ctx.remaps.values() if lo < last and hi > first})
            for off in offsets:
                self.counters["remap_offsets_tried"] += 1
                if not await self._walk_offset(walk, mm, off):
                    return False
        if shortcut == "after_remaps" and was_exclusive and self._exclusive(folio):
            self.counters["exclusive_shortcuts"] += 1
            return False
        return True

    async def _walk_offset(self, walk: _Walk, mm: MmStruct, offset: int) -> bool:
        """``walk_context_remap``: VMAs over ``[index + offset, + nr)`` (``for_each_vma_range``)
        whose own offset is ``offset``, each passed to rmap_one; False stops the walk."""
        system = self.sys
        folio = walk.folio
        rwc = walk.rwc
        res = walk.result
        await spend(system, system.vary("mt_lookup_base_ns", system.costs.mt_lookup(len(mm.vmas))))
        start = folio.index + offset
        for vma in mm.vmas_in(start, start + folio.nr_pages):
            if vma.offset != offset:
                continue
            if not await rwc.visit(vma, folio.index, res):
                return False
        return True

    async def rmap_write_lock(self, folio: Folio) -> object:
        """THP split's ``anon_vma_lock_write``: nothing in the PoC (walks are lockless); ctx_rwsem:
        the folio's context rwsem written."""
        ctx = folio.mapping
        if not self.use_rwsem or not isinstance(ctx, CowContext):
            return None
        assert ctx.rwsem is not None
        await ctx.rwsem.down_write()
        return ctx

    async def rmap_write_unlock(self, token: object) -> None:
        if isinstance(token, CowContext):
            assert token.rwsem is not None
            token.rwsem.up_write()

    # -- accounting ----------------------------------------------------------------------------

    def metadata(self) -> dict[str, int]:
        """Contexts (live and dead, until handed to kfree_rcu), remap entries and the bytes still
        waiting for a grace period; ``total_bytes`` counts all three (memory still held)."""
        rcu = self.sys.rcu
        pending = rcu.pending_by_desc.get(CTX_FREE_DESC, 0)
        pgtables = sum(n for desc, n in rcu.pending_by_desc.items() if desc.endswith(PGTABLE_FREE_SUFFIX))
        total = self._total()
        self._peak_total = max(self._peak_total, total)
        return {
            "cow_context_count": len(self._live),
            "cow_context_bytes": len(self._live) * COW_CONTEXT_BYTES,
            "dead_context_count": self._dead,
            "remap_entry_count": self._remap_entries,
            "remap_bytes": self._remap_bytes,
            "cow_context_rcu_pending_bytes": pending,
            "pgtable_rcu_pending_bytes": pgtables,
            "total_bytes": total,
            "peak_total_bytes": self._peak_total,
        }

    def stats(self) -> dict[str, int]:
        """Walk and lifecycle counters (not memory): dead contexts visited, remap offsets tried..."""
        return dict(self.counters)

    def check_invariants(self, final: bool) -> list[str]:
        """refcnt = (mm alive ? 1 : 0) + children + folios pointing at it (+ walker pins); no
        context reachable from a live folio is freed; the tree links agree; remap entries belong to
        live faulted remapped VMAs of the context's mm; ``final``: every context was freed (frees
        still waiting for a grace period are reported by :meth:`metadata`, not here)."""
        out: list[str] = []
        folio_refs: dict[int, int] = {}
        for folio in self.sys.folios.values():
            ctx = folio.mapping
            if ctx is None:
                continue
            if not isinstance(ctx, CowContext):
                out.append(f"folio {folio.fid} mapping is not a COW context: {ctx!r}")
                continue
            if ctx.freed:
                out.append(f"folio {folio.fid} points at freed {ctx!r}")
            folio_refs[ctx.cid] = folio_refs.get(ctx.cid, 0) + 1
            up = ctx.parent
            while up is not None:
                if up.freed:
                    out.append(f"folio {folio.fid}: ancestor {up!r} of its context is freed")
                up = up.parent
        dead = 0
        for ctx in self._live.values():
            mm = ctx.mm
            if mm is None:
                dead += 1
            elif mm.rmap is not ctx:
                out.append(f"{ctx!r}: mm{mm.mid} points at another context")
            children = ctx.children()
            if len(children) != ctx.nchildren:
                out.append(f"{ctx!r}: {len(children)} children linked, nchildren={ctx.nchildren}")
            for child in children:
                if child.parent is not ctx or not child.linked or child.freed:
                    out.append(f"{ctx!r}: bad child link to {child!r}")
            expected = (mm is not None) + len(children) + folio_refs.get(ctx.cid, 0) + ctx.pins
            if ctx.refcnt.value != expected:
                out.append(f"{ctx!r}: refcnt {ctx.refcnt.value} != mm {int(mm is not None)} + children "
                           f"{len(children)} + folios {folio_refs.get(ctx.cid, 0)} + pins {ctx.pins}")
            if ctx.parent is not None and ctx.parent.freed:
                out.append(f"{ctx!r}: parent {ctx.parent!r} freed first")
            if ctx.remaps:
                by_vid = {} if mm is None else {v.vid: v for v in mm.vmas}
                for vid, (lo, hi, off) in ctx.remaps.items():
                    vma = by_vid.get(vid)
                    if vma is not None and (vma.pgoff, vma.pgoff + vma.pages, vma.offset) != (lo, hi, off):
                        out.append(f"{ctx!r}: remap entry of vma {vid} is {(lo, hi, off)}, VMA is "
                                   f"{(vma.pgoff, vma.pgoff + vma.pages, vma.offset)}")
                    elif vma is None and final:
                        out.append(f"{ctx!r}: remap entry of vma {vid} outlives the VMA")
        if dead != self._dead:
            out.append(f"dead context count {self._dead} != {dead} counted")
        if self.counters["freed_contexts_visited"]:
            out.append(f"{self.counters['freed_contexts_visited']} walk visits to contexts freed after "
                       "their grace period")
        if final:
            for ctx in self._live.values():
                out.append(f"{ctx!r} not freed at the end (mm {'alive' if ctx.mm else 'gone'}, "
                           f"{ctx.nchildren} children, {folio_refs.get(ctx.cid, 0)} folios)")
        return out


