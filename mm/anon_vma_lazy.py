"""ANON_VMA_LAZY: anon_vma created only when a VMA is first shared (fork), rmap from the VMA before.

Models the 15-patch series "[PATCH 0/15] mm: introduce ANON_VMA_LAZY for deferred anon_vma
creation" (tao / wangtao, Honor, LKML 27 May 2026; NAKed), reference docs/kernel-rmap.md [L2]:

* [L2a] cover letter, https://lkml.rescloud.iu.edu/hypermail/linux/kernel/2605.3/05380.html
* [P03] "mm: introduce anon_vma_tree_t for multiple anon_vma topologies",
  https://lkml.iu.edu/2605.3/05378.html
* [P05] "mm: add CONFIG_ANON_VMA_LAZY and folio helpers", https://lkml.iu.edu/2605.3/05377.html
* [P08] "mm: prepare rmap infrastructure for ANON_VMA_LAZY", https://lkml.iu.edu/2605.3/05341.html
* [P10] "mm: defer anon_vma creation with ANON_VMA_LAZY", https://lkml.iu.edu/2605.3/05338.html
* the thread: Stoakes' NAK [L2c] (https://lkml.iu.edu/2605.3/08980.html: "pinning VMAs",
  "the RCU usage is highly dubious", "broken the anon rmap for things like migration"), Harry Yoo
  [L2f] ("rmap needs something that doesn't go away across VMA merging, split"), David
  Hildenbrand [L2g] (https://lkml.iu.edu/2606.0/07622.html: "Child VMAs are created as
  ANON_VMA_TREE_PARENT", "VMA refcounts", "Holding only folio_lock(folio) cannot guarantee that
  the split operation completes atomically", "make page migration mutually exclusive to
  free_pgtables()"), wangtao 4 Jun (https://lkml.iu.edu/2606.0/07664.html: the core is patches 9,
  10 and 13).

What could be read, and what could not
    The stored copies of the patches hold each message's opening only.  Read in full: the cover
    letter [L2a]; [P03] (``anon_vma_tree_t``, "a tagged pointer" in ``vma->anon_vma`` whose low
    bits distinguish "regular anon_vma and lazy anon_vma"); [P05] (``FOLIO_MAPPING_ANON_VMA_LAZY``
    reuses the KSM bit and "folio->mapping points to the ANON_VMA_LAZY root VMA instead of
    anon_vma"); [P08]'s description (``anon_rmap_trylock_read``, ``anon_rmap_lock_read``,
    ``anon_rmap_unlock_read`` and ``anon_rmap_for_each_vma`` get the lazy semantics;
    ``__migrate_folio_record`` keeps the anon_rmap in ``dst->mapping``); [P10]'s description, its
    diffstat (mm/internal.h +9, mm/memory.c +4, mm/rmap.c +209, mm/vma.c +9) and its first two
    hunks: ``anon_vma_prepare()`` and ``__vmf_anon_prepare()`` call
    ``vma_prepare_anon_vma_lazy(vma)`` and return 0 when ``anon_vma_lazy_enabled()``, *before*
    ``__vmf_anon_prepare``'s ``FAULT_FLAG_VMA_LOCK`` / ``mmap_read_trylock`` branch.  Not readable:
    [P10]'s mm/rmap.c and mm/vma.c hunks (the body of ``vma_prepare_anon_vma_lazy``, the fork
    upgrade, the lazy walk), patches 09 (``folio_lock_anon_rmap_read``) and 11-15.  Everything
    below that rests on those is an inference, marked INFER, and each real fork in the road is a
    switch.

The model
    *First anonymous fault* ([P10] ``__vmf_anon_prepare`` -> ``vma_prepare_anon_vma_lazy``):
    under the per-VMA read lock alone (no ``mmap_read_trylock``, so never ``VM_FAULT_RETRY``), the
    VMA's ``anon_vma_tree_t`` is set to "lazy, root VMA = itself" with one cmpxchg (INFER: the
    body is not readable; the issue's reading, "no anon_vma, no root lock and no page_table_lock
    dance", and two threads racing write the same value).  No object is allocated: the VMA is the
    anchor.  New folios get ``folio->mapping = root VMA | FOLIO_MAPPING_ANON_VMA_LAZY`` [P05].
    :class:`LazyRoot` stands for that root VMA's role: the VMAs anchored on it (split and mremap
    copies share it: ``vm_area_dup`` copies ``vma->anon_vma``, INFER), its reference count
    ("VMA refcounts", "pinning VMAs" [L2c][L2g]) and, once upgraded, the anon_vma it now has.

    *rmap on a lazy folio* ([P08] ``anon_rmap_*``, [P09] ``folio_lock_anon_rmap_read``, INFER for
    the details): under ``rcu_read_lock`` read ``folio->mapping``; a lazy handle whose root VMA has
    not been upgraded is pinned (a reference on the root VMA, one atomic), RCU is left, and
    ``anon_rmap_for_each_vma`` visits the VMAs anchored on that root that overlap the folio's
    pgoff, with no anon_vma lock; then the pin is dropped.  The VMA list is read live, so a split
    or an mremap copy made during the walk (appended to it) is still visited.  The pin is what
    keeps the root VMA and its page tables from going away under the walker:
    ``unlink_anon_vmas`` (free_pgtables: munmap, exit, mremap) of a VMA anchored on a pinned
    root sleeps until the pins are dropped ("make page migration mutually exclusive to
    free_pgtables()" [L2g]; INFER that the mechanism is a wait on the pin count).  The pin does
    *not* exclude fork, split, merge or zap: those hold the VMA write lock, which a pin does not
    touch.  ``folio_get_anon_vma`` (migration, THP split) takes the same pin, and a THP split of a
    lazy folio takes no rmap write lock (there is none; [L2g] quotes the series on the folio lock
    not being enough for the split: how it makes up for that is not readable).

    *fork* ([P10]: "ANON_VMA_LAZY VMAs are first upgraded to a regular anon_vma in the parent to
    establish the sharing topology.  Child VMAs are created as ANON_VMA_TREE_PARENT and do not
    allocate anon_vma").  The upgrade of a lazy parent VMA is ``__anon_vma_prepare``'s shape (INFER):
    allocate an anon_vma and one AVC per VMA anchored on the root (no lock), then the new root's
    rwsem written, ``mm->page_table_lock`` nested (``vma->anon_vma`` is "Serialized by
    page_table_lock"), link every anchored VMA into the new tree and point them at it, publish
    the root VMA's anon_vma, unlock.  No folio is re-pointed: [P10] changes mm/memory.c by four
    lines (the ``__vmf_anon_prepare`` hunk) so ``copy_page_range`` is untouched, and the walk of a
    lazy handle whose root VMA has an anon_vma resolves to that anon_vma and is mainline from
    there (``folio_lock_anon_vma_read``, root read lock) (INFER; it is also why the root VMA must
    be refcounted).  Then ``anon_vma_clone`` gives the child VMA one AVC per AVC of the parent
    under the root write lock, and the child's ``vma->anon_vma`` is ``ANON_VMA_TREE_PARENT``: the
    parent's anon_vma's tree, no anon_vma of its own.  A parent VMA that is already regular (or
    itself a TREE_PARENT child) skips the upgrade.

    *A TREE_PARENT child's own folios* (switch ``child_folio``): not readable.  Default ``lazy``:
    a folio new to the child VMA (COW copy, fault in a hole, exclusive reuse) is anchored lazily
    on the child VMA itself, with no lock; when that child forks in turn its VMA is upgraded to an
    anon_vma of its own (child of the tree's anon_vma under the family root's write lock: the
    second half of mainline ``anon_vma_fork``, deferred).  ``parent_anon_vma``: such folios go
    into the tree's anon_vma (walks lock the family root and visit the parent and every sibling).

    *Everything else* keeps mainline behaviour once a VMA has an anon_vma ([L2a]: "Once a VMA
    becomes associated with an anon_vma, the normal behavior remains unchanged"): the
    :class:`~mm.anon_vma.AnonVmaDesign` code runs unchanged for regular VMAs; TREE_PARENT VMAs
    use it with "no anon_vma of its own" (their AVCs are cloned, split, unlinked under the root
    write lock like any VMA's; they are not counted in ``num_active_vmas``).

Switches
    ``child``: ``tree_parent`` (default, [P10]) or ``own_anon_vma`` (mainline ``anon_vma_fork`` for
    the child: the lazy first touch alone, to separate the two savings).  ``child_folio``: see
    above.  ``upgrade_sync``: ``none`` (default: as far as can be read, nothing orders the fork
    upgrade against a walk that saw the lazy state, and a walk that pinned the root VMA before the
    upgrade misses what fork copies meanwhile: a stale migration entry when that walk is
    ``remove_migration_ptes``, README "ANON_VMA_LAZY") or ``drain``, a correction that is not in
    the series: the upgrade waits for the root's pins to drain and walkers arriving meanwhile wait
    for it (a try-lock walker gives up, contended) and then resolve to the new anon_vma.

Memory
    Lazy VMAs cost no anon_vma and no AVC.  [L2a] reports ``vm_area_struct`` +1.0% / +0.2%
    (the root-VMA fields); VMA bytes are not counted for any design, so that growth is left out.
    A root VMA kept alive after its own unmap (its split halves still anchored on it) is counted
    (``lazy_root_outlived``) but its bytes are not.

Not modelled: KSM, mremap of a lazy VMA across mms, merges of two lazy VMAs with different roots
(the operations only expand a VMA over an unfaulted range), allocation failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from mm.anon_vma import AnonVma, AnonVmaDesign, Avc, _PrepareToken
from mm.cpu import spend
from mm.rmap_design import RmapWalkControl, Switch, SwitchValue, WalkResult, switch_values

if TYPE_CHECKING:
    from collections.abc import Mapping

    from concurrency.engine import SimTask
    from mm.system import MmSystem
    from mm.types import Folio, MmStruct, Vma

__all__ = ["AnonVmaLazyDesign", "LazyRoot", "LazyWalkPin", "TreeParent"]


class LazyRoot:
    """The ANON_VMA_LAZY root VMA's role ([P05]: ``folio->mapping`` points to it).

    ``vmas`` are the VMAs whose ``anon_vma_tree_t`` is "lazy, this root" (the root first, then
    split and mremap copies in the order they were made); ``pins`` the references walkers,
    migration and THP split hold on it ("VMA refcounts" [L2g]); ``upgraded`` the anon_vma the
    fork upgrade gave it ([P10]), through which a lazy handle resolves from then on.
    """

    __slots__ = ("dead", "lid", "mm", "pinners", "upgraded", "upgrader", "upgrading", "vid", "vmas", "waiters")

    def __init__(self, lid: int, vma: Vma) -> None:
        self.lid = lid
        self.vid = vma.vid  # the root VMA
        self.mm: MmStruct = vma.mm
        self.vmas: list[Vma] = [vma]
        self.pinners: list[SimTask] = []  # one entry per pin (a task may pin twice)
        self.upgraded: AnonVma | None = None
        self.upgrading = False  # upgrade_sync=drain: the upgrade is draining the pins
        self.upgrader: SimTask | None = None  # the forking task while ``upgrading``
        self.waiters: list[SimTask] = []
        self.dead = False  # no VMA anchored, never upgraded: nothing may point here any more

    @property
    def pins(self) -> int:
        return len(self.pinners)

    def __repr__(self) -> str:
        up = f" -> av{self.upgraded.avid}" if self.upgraded is not None else ""
        return f"<LazyRoot {self.lid} vma{self.vid} mm{self.mm.mid} vmas={[v.vid for v in self.vmas]} " \
               f"pins={self.pins}{up}>"


class LazyWalkPin:
    """What a task waits on while a lazy root's pins drain (free_pgtables, the drain upgrade) or
    while an upgrade finishes (``upgrade``): named, with its holders, for deadlock reports."""

    __slots__ = ("root", "upgrade")

    def __init__(self, root: LazyRoot, upgrade: bool = False) -> None:
        self.root = root
        self.upgrade = upgrade

    @property
    def name(self) -> str:
        return f"lazy root vma{self.root.vid} {'upgrade' if self.upgrade else 'pins'}"

    def holders(self) -> list[SimTask]:
        if self.upgrade:
            return [self.root.upgrader] if self.root.upgrader is not None else []
        return list(dict.fromkeys(self.root.pinners))


class TreeParent:
    """``ANON_VMA_TREE_PARENT`` ([P10], [L2g]): a fork child's ``vma->anon_vma``.

    ``av`` is the parent VMA's anon_vma, whose tree the child's cloned AVCs sit in; the child has
    no anon_vma of its own.  ``own`` anchors folios new to the child (``child_folio=lazy``).
    """

    __slots__ = ("av", "own")

    def __init__(self, av: AnonVma, own: LazyRoot | None = None) -> None:
        self.av = av
        self.own = own

    def __repr__(self) -> str:
        own = f" own=lazy{self.own.lid}" if self.own is not None else ""
        return f"<TreeParent av{self.av.avid}{own}>"


class AnonVmaLazyDesign(AnonVmaDesign):
    """ANON_VMA_LAZY on top of mainline anon_vma; see the module docstring."""

    name: ClassVar[str] = "anon_vma_lazy"
    summary: ClassVar[str] = ("ANON_VMA_LAZY series (2026, NAKed): no anon_vma until fork, lock-free rmap "
                              "from the VMA before; fork upgrades the parent, children are TREE_PARENT")
    SWITCHES: ClassVar[dict[str, Switch]] = {
        "child": Switch("tree_parent", ("tree_parent", "own_anon_vma"),
                        "fork child VMAs: tree_parent = ANON_VMA_TREE_PARENT, no anon_vma of their own "
                        "(PATCH 10/15); own_anon_vma = mainline anon_vma_fork (the lazy first touch only)"),
        "child_folio": Switch("lazy", ("lazy", "parent_anon_vma"),
                              "where a folio new to a TREE_PARENT child VMA points (not readable in the "
                              "series): lazy = the child VMA itself, upgraded when the child forks; "
                              "parent_anon_vma = the tree's anon_vma"),
        "upgrade_sync": Switch("none", ("none", "drain"),
                               "none = nothing orders the fork upgrade against a walk that saw the lazy "
                               "state (as far as the series can be read); drain = a correction: the "
                               "upgrade waits for the root's pins, new walkers wait for the upgrade"),
    }

    def __init__(self, system: MmSystem, switches: Mapping[str, SwitchValue] | None = None) -> None:
        super().__init__(system, switches)
        # Mainline's code ran with its 2026 history switches (resolve_switches); the record
        # shows this design's own.
        sw = self.switches = {k: self.switches[k] for k in sorted(self.SWITCHES)}
        self.tree_parent: bool = sw["child"] == "tree_parent"
        self.child_lazy: bool = sw["child_folio"] == "lazy"
        self.drain: bool = sw["upgrade_sync"] == "drain"
        self.roots: dict[int, LazyRoot] = {}  # live lazy roots (lid order)
        self.upgraded_to: dict[int, list[LazyRoot]] = {}  # avid -> lazy roots resolving to it
        self.root_of: dict[int, LazyRoot] = {}  # vid -> the lazy root a live VMA is anchored on
        self._next_lid = 0
        self.counts.update({
            "lazy_prepare": 0, "lazy_prepare_race": 0, "lazy_upgrade": 0, "lazy_upgrade_vmas": 0,
            "tree_parent_child": 0, "tree_parent_upgrade": 0, "lazy_walk": 0, "lazy_walk_resolved": 0,
            "lazy_pin_wait": 0, "lazy_pin_wait_ns": 0, "lazy_upgrade_wait": 0, "lazy_walk_wait": 0,
            "lazy_root_outlived": 0,
        })

    @classmethod
    def resolve_switches(cls, given: Mapping[str, object]) -> dict[str, SwitchValue]:
        """This design's switches, plus mainline's history switches at their 2026 defaults for
        :class:`AnonVmaDesign`'s constructor (they are not settable here)."""
        own = switch_values(cls, given)
        return {**{k: sw.default for k, sw in AnonVmaDesign.SWITCHES.items()}, **own}

    # -- anchors -------------------------------------------------------------------------------------

    def _new_root(self, vma: Vma) -> LazyRoot:
        root = LazyRoot(self._next_lid, vma)
        self._next_lid += 1
        self.roots[root.lid] = root
        self.root_of[vma.vid] = root
        return root

    @staticmethod
    def _tree_av(vma: Vma) -> AnonVma | None:
        """The anon_vma whose root lock covers ``vma``'s AVCs: its own, or its TREE_PARENT's."""
        anchor = vma.anon_vma
        if isinstance(anchor, AnonVma):
            return anchor
        if isinstance(anchor, TreeParent):
            return anchor.av
        return None

    @staticmethod
    def _folio_anon_vma(folio: Folio) -> AnonVma | None:
        """``folio_anon_vma`` extended by [P08]'s anon_rmap: a lazy handle whose root VMA was
        upgraded resolves to that root's anon_vma (INFER, see the module docstring)."""
        mapping = folio.mapping
        if isinstance(mapping, AnonVma):
            return mapping
        if isinstance(mapping, LazyRoot):
            return mapping.upgraded
        return None

    def _lazy_handle(self, folio: Folio) -> LazyRoot | None:
        """A lazy handle not (yet) resolvable to an anon_vma: the walk goes through the VMAs."""
        mapping = folio.mapping
        if isinstance(mapping, LazyRoot) and mapping.upgraded is None:
            return mapping
        return None

    # -- pins ([L2c] "pinning VMAs", [L2g] "VMA refcounts") -----------------------------------------

    def _pin(self, root: LazyRoot) -> None:
        task = self.sys.engine.current
        assert task is not None
        root.pinners.append(task)

    def _unpin(self, root: LazyRoot) -> None:
        task = self.sys.engine.current
        assert task is not None
        root.pinners.remove(task)
        if not root.pinners:
            self._wake(root)

    def _wake(self, root: LazyRoot) -> None:
        waiters, root.waiters = root.waiters, []
        for task in waiters:
            self.sys.engine.wake(task)

    async def _wait(self, root: LazyRoot, *, upgrade: bool = False) -> None:
        task = self.sys.engine.current
        assert task is not None
        root.waiters.append(task)
        await self.sys.engine.block(LazyWalkPin(root, upgrade))

    async def _drain_pins(self, root: LazyRoot) -> None:
        """Sleep until nobody holds a pin on ``root`` (the pin count reaching zero wakes us)."""
        if not root.pins:
            return
        self.counts["lazy_pin_wait"] += 1
        start = self.sys.engine.now
        while root.pins:
            await self._wait(root)
        self.counts["lazy_pin_wait_ns"] += self.sys.engine.now - start

    async def _start_drain(self, root: LazyRoot) -> None:
        """``upgrade_sync=drain`` (a correction, not the series): new walkers wait from here, and
        the upgrade sleeps until the pins already taken are dropped."""
        root.upgrading = True
        root.upgrader = self.sys.engine.current
        if root.pins:
            self.counts["lazy_upgrade_wait"] += 1
        await self._drain_pins(root)

    def _end_drain(self, root: LazyRoot) -> None:
        root.upgrading = False
        root.upgrader = None
        self._wake(root)

    # -- first touch ([P10] vma_prepare_anon_vma_lazy) -----------------------------------------------

    async def vma_prepare_anon_vma_lazy(self, vma: Vma) -> bool:
        """[P10] ``__vmf_anon_prepare`` -> ``vma_prepare_anon_vma_lazy(vma)``: under the VMA read
        lock only, before the ``mmap_read_trylock`` branch; marks the VMA lazy with itself as root
        (one cmpxchg of ``vma->anon_vma``; INFER: the body is not readable).  No allocation, no
        anon_vma lock, no ``mm->page_table_lock``; a racing thread that set it first wins."""
        await spend(self.sys, self.sys.costs.atomic_ns)
        if vma.anon_vma is not None:
            self.counts["lazy_prepare_race"] += 1
            return True
        vma.anon_vma = self._new_root(vma)
        self.counts["lazy_prepare"] += 1
        return True

    async def anon_vma_prepare(self, vma: Vma) -> None:
        """[P10] ``anon_vma_prepare()`` (mm/internal.h): with ANON_VMA_LAZY enabled it calls
        ``vma_prepare_anon_vma_lazy`` too, never ``__anon_vma_prepare``."""
        if vma.anon_vma is None:
            await self.vma_prepare_anon_vma_lazy(vma)

    # -- fork ([P10] anon_vma_fork) --------------------------------------------------------------------

    async def _upgrade_lazy(self, root: LazyRoot) -> AnonVma:
        """[P10] fork: "ANON_VMA_LAZY VMAs are first upgraded to a regular anon_vma in the parent".

        ``__anon_vma_prepare``'s shape (INFER): the anon_vma and one AVC per anchored VMA are
        allocated with no lock; the new root's rwsem written, ``mm->page_table_lock`` nested;
        every VMA anchored on the root is linked and pointed at the anon_vma; the root VMA's
        anon_vma is published (lazy handles resolve through it from here); unlock.  With
        ``upgrade_sync=drain`` the pins are drained first and new walkers wait.
        """
        if self.drain:
            await self._start_drain(root)
        vmas = list(root.vmas)
        await spend(self.sys, self.sys.cost("slab_ns") * (1 + len(vmas)))  # anon_vma_alloc + anon_vma_chain_alloc
        av = self._new_anon_vma()
        self._make_root(av)
        av.num_children += 1  # self-parent link of a new root
        await self._lock_write(av)
        await root.mm.page_table_lock.lock()
        for vma in vmas:
            avc = self._new_avc(vma, av)
            self._link_same_vma(vma, avc)
            await spend(self.sys, self._tree_op_ns(av))
            av.tree[avc.aid] = avc
            av.num_active_vmas += 1
            vma.anon_vma = av
        root.upgraded = av
        self.upgraded_to.setdefault(av.avid, []).append(root)
        root.mm.page_table_lock.unlock()
        self._unlock_write(av)
        if self.drain:
            self._end_drain(root)
        self.counts["lazy_upgrade"] += 1
        self.counts["lazy_upgrade_vmas"] += len(vmas)
        return av

    async def _upgrade_tree_parent(self, vma: Vma, tp: TreeParent) -> AnonVma:
        """A TREE_PARENT VMA holding lazily anchored folios forks (``child_folio=lazy``): it gets
        an anon_vma of its own, mainline ``anon_vma_fork`` deferred to here (INFER): the anon_vma
        and one AVC per VMA anchored on its lazy root allocated first (2026 mainline order), then
        under the family root's write lock ``maybe_reuse_anon_vma`` on its chain (oldest first:
        an anon_vma no VMA points at with at most one child; the spares are freed after the
        unlock), else the new anon_vma as a child of the tree's; its lazy handle resolves to it
        from then on."""
        own = tp.own
        assert own is not None
        costs = self.sys.costs
        if self.drain:
            await self._start_drain(own)
        vmas = list(own.vmas)
        chain: list[Avc] = list(vma.rmap or [])
        await spend(self.sys, self.sys.cost("slab_ns") * (1 + len(vmas)))  # anon_vma_alloc + anon_vma_chain_alloc
        family = chain[-1].anon_vma
        await self._lock_write(family)
        reusable = next((avc.anon_vma for avc in reversed(chain)
                         if avc.anon_vma.num_active_vmas == 0 and avc.anon_vma.num_children <= 1), None)
        if reusable is not None:
            for v in vmas:
                v.anon_vma = reusable
                reusable.num_active_vmas += 1
            own.upgraded = reusable
            self.upgraded_to.setdefault(reusable.avid, []).append(own)
            self._unlock_write(family)
            await spend(self.sys, self.sys.cost("slab_ns") * (1 + len(vmas)))  # put_anon_vma + anon_vma_chain_free
            self.counts["fork_reuse"] += 1
            av = reusable
        else:
            av = self._new_anon_vma()
            av.root = family.root
            av.parent = tp.av
            await spend(self.sys, costs.atomic_ns)
            av.root.refcount += 1  # the lock lives in the root: pinned until this anon_vma goes
            for v in vmas:
                avc = self._new_avc(v, av)
                self._link_same_vma(v, avc)
                await spend(self.sys, self._tree_op_ns(av))
                av.tree[avc.aid] = avc
                av.num_active_vmas += 1
                v.anon_vma = av
            av.parent.num_children += 1
            own.upgraded = av
            self.upgraded_to.setdefault(av.avid, []).append(own)
            self._unlock_write(family)
        if self.drain:
            self._end_drain(own)
        self.counts["tree_parent_upgrade"] += 1
        self.counts["lazy_upgrade_vmas"] += len(vmas)
        return av

    async def fork_vma(self, child: Vma, parent: Vma) -> None:
        """[P10] ``anon_vma_fork(child, parent)``: upgrade a lazy parent VMA (or a TREE_PARENT
        parent holding lazily anchored folios), then make the child ``ANON_VMA_TREE_PARENT``:
        ``anon_vma_clone`` under the root write lock, no anon_vma allocated.  ``child=own_anon_vma``
        runs mainline ``anon_vma_fork`` after the upgrade instead."""
        anchor = parent.anon_vma
        if anchor is None:
            return
        if isinstance(anchor, LazyRoot):
            await self._upgrade_lazy(anchor)
        elif isinstance(anchor, TreeParent) and anchor.own is not None:
            await self._upgrade_tree_parent(parent, anchor)
        anchor = parent.anon_vma
        if not self.tree_parent:
            assert isinstance(anchor, AnonVma)
            await super().fork_vma(child, parent)
            return
        av = anchor if isinstance(anchor, AnonVma) else anchor.av
        child.anon_vma = None
        await self._clone_chain(child, parent, fork=True)
        if child.anon_vma is None:
            child.anon_vma = TreeParent(av)
            self.counts["tree_parent_child"] += 1

    async def _clone_chain(self, dst: Vma, src: Vma, *, fork: bool = False) -> None:
        """``anon_vma_clone`` of ``src``'s AVCs into ``dst`` for a VMA that gets no anon_vma
        allocated (TREE_PARENT): AVCs allocated first, root W once, inserted oldest first (2026
        mainline order); on fork mainline's ``maybe_reuse_anon_vma`` still runs, and a child that
        reuses an anon_vma is a regular VMA, not TREE_PARENT."""
        chain: list[Avc] = list(src.rmap or [])
        if not chain:
            return
        await spend(self.sys, self._avc_slab_ns * len(chain))
        active = chain[-1].anon_vma
        await self._lock_write(active)
        for pavc in reversed(chain):
            await self._link_clone_avc(dst, pavc.anon_vma, fork)
        self._unlock_write(active)

    async def clone_vma(self, new: Vma, src: Vma, op: str) -> None:
        """``anon_vma_clone`` for split / mremap / merge.  A lazy ``src``: the copy shares its root
        VMA (``vm_area_dup`` copied the tagged ``vma->anon_vma``; the root's reference count
        goes up: one atomic, no lock; INFER).  A TREE_PARENT ``src``: its AVCs are cloned under
        the root write lock and the copy is TREE_PARENT too.  A regular ``src``: mainline."""
        if op not in ("split", "remap", "merge"):
            raise ValueError(f"clone_vma: unknown op {op!r}")
        anchor = src.anon_vma
        if anchor is None:
            return
        if isinstance(anchor, LazyRoot):
            await spend(self.sys, self.sys.costs.atomic_ns)
            new.anon_vma = anchor
            anchor.vmas.append(new)
            self.root_of[new.vid] = anchor
            return
        if isinstance(anchor, TreeParent):
            new.anon_vma = TreeParent(anchor.av, anchor.own)
            if anchor.own is not None:
                await spend(self.sys, self.sys.costs.atomic_ns)
                anchor.own.vmas.append(new)
                self.root_of[new.vid] = anchor.own
            await self._clone_chain(new, src)
            return
        # A regular VMA that was lazy once keeps no tie to its old root: mainline from here.
        await super().clone_vma(new, src, op)

    async def vma_prepare(self, vmas: list[Vma]) -> object:
        """``vma_prepare`` / ``take_rmap_locks``: the root write lock of the first VMA with AVCs
        (its own anon_vma or its TREE_PARENT tree); a lazy VMA has no rmap lock to take (INFER:
        [P10]'s mm/vma.c hunk, 9 lines, is not readable)."""
        av = next((a for a in (self._tree_av(v) for v in vmas) if a is not None), None)
        if av is None:
            return None
        await self._lock_write(av)
        return _PrepareToken(av, [(v, v.start, v.end, v.pgoff) for v in vmas if v.rmap])

    async def unlink_vma(self, vma: Vma) -> None:
        """``unlink_anon_vmas`` (free_pgtables).  A VMA anchored on a lazy root (or one upgraded
        from it, or a TREE_PARENT with its own lazy folios) first sleeps until the root's pins
        are dropped ("make page migration mutually exclusive to free_pgtables()" [L2g]; INFER),
        then leaves the root; its AVCs, if any, are unlinked as mainline does."""
        root = self.root_of.get(vma.vid)
        if root is not None:
            await self._drain_pins(root)
            self._leave_root(root, vma)  # at once: no new pin can see it after the drain
        anchor = vma.anon_vma
        if isinstance(anchor, TreeParent):
            vma.anon_vma = None
            await self._unlink_chain(vma, None)
        elif isinstance(anchor, AnonVma):
            await super().unlink_vma(vma)
        else:
            vma.anon_vma = None

    def _leave_root(self, root: LazyRoot, vma: Vma) -> None:
        del self.root_of[vma.vid]
        if vma.vid == root.vid and len(root.vmas) > 1:
            self.counts["lazy_root_outlived"] += 1  # the root VMA stays allocated for the others
        root.vmas.remove(vma)
        if not root.vmas and root.upgraded is None:
            # No VMA anchored and never upgraded: every folio that pointed here was unmapped.
            root.dead = True
            del self.roots[root.lid]

    def _retire(self, av: AnonVma) -> None:
        """``anon_vma_free``: the lazy roots that resolve to it go with it (their VMAs are gone,
        and no mapped folio points through them any more)."""
        super()._retire(av)
        for root in self.upgraded_to.pop(av.avid, ()):
            assert not root.vmas, f"{root!r} outlives its anon_vma"
            root.dead = True
            del self.roots[root.lid]

    # -- folios ------------------------------------------------------------------------------------------

    def _own_root(self, vma: Vma, tp: TreeParent) -> LazyRoot:
        if tp.own is None:
            tp.own = self._new_root(vma)
        return tp.own

    async def folio_add_new_anon_rmap(self, folio: Folio, vma: Vma, vpn: int, exclusive: bool) -> None:
        """``__folio_set_anon`` ([P05][P08]): a lazy VMA's folio gets ``root VMA |
        FOLIO_MAPPING_ANON_VMA_LAZY``; a TREE_PARENT VMA's gets its own lazy root or the tree's
        anon_vma (switch ``child_folio``); a regular VMA's, mainline."""
        anchor = vma.anon_vma
        if isinstance(anchor, LazyRoot):
            folio.mapping = anchor
        elif isinstance(anchor, TreeParent):
            if self.child_lazy:
                folio.mapping = self._own_root(vma, anchor)
            else:
                folio.mapping = anchor.av if exclusive else anchor.av.root
        else:
            await super().folio_add_new_anon_rmap(folio, vma, vpn, exclusive)

    async def folio_move_anon_rmap(self, folio: Folio, vma: Vma) -> None:
        """``folio_move_anon_rmap`` (exclusive reuse, folio locked): re-point at ``vma``'s anchor as
        :meth:`folio_add_new_anon_rmap` would for a new exclusive folio."""
        anchor = vma.anon_vma
        if isinstance(anchor, LazyRoot):
            folio.mapping = anchor
        elif isinstance(anchor, TreeParent):
            folio.mapping = self._own_root(vma, anchor) if self.child_lazy else anchor.av
        else:
            await super().folio_move_anon_rmap(folio, vma)

    def folio_get_anon_vma(self, folio: Folio) -> object:
        """``folio_get_anon_vma`` (migration, THP split): a lazy handle is pinned on its root VMA
        ([P08] ``__migrate_folio_record`` keeps the anon_rmap; the pin is INFER); while a drain
        upgrade runs it fails (the caller gives up, as on a dying anon_vma); otherwise mainline."""
        root = self._lazy_handle(folio)
        if root is None:
            return super().folio_get_anon_vma(folio)
        if root.dead or folio.mapcount <= 0 or (root.upgrading and self.sys.engine.current not in root.pinners):
            return None
        self._pin(root)
        return root

    async def put_anon_vma(self, token: object) -> None:
        if isinstance(token, LazyRoot):
            await spend(self.sys, self.sys.costs.atomic_ns)
            self._unpin(token)
            return
        await super().put_anon_vma(token)

    # -- walks ---------------------------------------------------------------------------------------------

    async def rmap_walk(self, folio: Folio, rwc: RmapWalkControl) -> WalkResult:
        """``rmap_walk_anon`` through [P08]'s ``anon_rmap`` helpers: a lazy handle whose root VMA
        has no anon_vma is walked from the VMAs (:meth:`_lazy_walk`), anything else is mainline
        (a lazy handle resolving through its upgraded root VMA included)."""
        if self._lazy_handle(folio) is None:
            if isinstance(folio.mapping, LazyRoot):
                self.counts["lazy_walk_resolved"] += 1
            return await super().rmap_walk(folio, rwc)
        return await self._lazy_walk(folio, rwc)

    async def _lazy_walk(self, folio: Folio, rwc: RmapWalkControl) -> WalkResult:
        """[P08] ``anon_rmap_trylock_read``/``anon_rmap_lock_read`` + ``anon_rmap_for_each_vma`` +
        ``anon_rmap_unlock_read`` for a lazy handle, [P09] ``folio_lock_anon_rmap_read`` (INFER):
        ``rcu_read_lock``, read ``folio->mapping`` (the folio must still be mapped for the
        ``anon_lock`` walks), pin the root VMA (one atomic), ``rcu_read_unlock``; visit every VMA
        anchored on the root that overlaps the folio, read live (no anon_vma lock); drop the pin.
        A locked walk (THP split: the caller holds the pin from ``folio_get_anon_vma``) pins
        nothing more.  With ``upgrade_sync=drain`` a walker meeting an upgrade in progress gives
        up (``try_lock``) or waits for it and walks the new anon_vma."""
        result = WalkResult()
        costs = self.sys.costs
        root: LazyRoot | None
        if rwc.locked:
            root = self._lazy_handle(folio)
            if root is None or root.dead:
                return result
        else:
            rcu = self.sys.rcu
            rcu.rcu_read_lock()
            root = self._lazy_handle(folio)
            if root is None:
                rcu.rcu_read_unlock()
                return await super().rmap_walk(folio, rwc)  # upgraded meanwhile: mainline
            if (rwc.anon_lock and folio.mapcount <= 0) or root.dead:
                rcu.rcu_read_unlock()
                return result
            task = self.sys.engine.current
            if root.upgrading and task not in root.pinners:
                rcu.rcu_read_unlock()
                if rwc.try_lock:
                    result.contended = True
                    return result
                self.counts["lazy_walk_wait"] += 1
                while root.upgrading:
                    await self._wait(root, upgrade=True)
                return await self.rmap_walk(folio, rwc)
            self._pin(root)
            rcu.rcu_read_unlock()
            await spend(self.sys, costs.atomic_ns)  # the root VMA's reference
        self.counts["lazy_walk"] += 1
        first = folio.index
        last = first + folio.nr_pages - 1
        await spend(self.sys, self.sys.cost("list_op_ns") * len(root.vmas))
        i = 0
        while i < len(root.vmas):
            vma = root.vmas[i]
            i += 1
            if vma.pgoff > last or vma.pgoff + vma.pages - 1 < first:
                continue
            if not await rwc.visit(vma, first, result):
                break
        if not rwc.locked:
            await spend(self.sys, costs.atomic_ns)
            self._unpin(root)
        return result

    async def rmap_write_lock(self, folio: Folio) -> object:
        """``anon_vma_lock_write(folio_anon_vma(folio))`` for a THP split: a lazy folio has no
        anon_vma lock; the split relies on the folio lock and the ``folio_get_anon_vma`` pin
        ([L2g] quotes the series saying the folio lock alone is not enough; its remedy is not
        readable).  Resolvable handles: mainline."""
        if self._lazy_handle(folio) is not None:
            return None
        return await super().rmap_write_lock(folio)

    # -- accounting ----------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, int]:
        """Mainline's objects and bytes (anon_vmas and AVCs: lazy VMAs have neither), plus the VMAs
        still anchored lazily and their root VMAs, and the TREE_PARENT VMAs (AVCs, no anon_vma of
        their own); none of these has bytes of its own (the anchor is the VMA itself)."""
        meta = super().metadata()
        lazy = [r for r in self.roots.values() if r.upgraded is None]
        meta["lazy_root_count"] = len(lazy)
        meta["lazy_vma_count"] = sum(1 for r in lazy for v in r.vmas if v.anon_vma is r)
        meta["tree_parent_vma_count"] = sum(1 for v in self.vmas.values() if isinstance(v.anon_vma, TreeParent))
        return meta

    def check_invariants(self, final: bool) -> list[str]:
        """Mainline's checks (a TREE_PARENT VMA is a VMA with AVCs and no anon_vma of its own),
        then the lazy roots: anchors and membership agree, no pin outlives its walk, nothing left
        at the end."""
        tree_parents = [v for v in self.vmas.values() if isinstance(v.anon_vma, TreeParent)]
        saved = [v.anon_vma for v in tree_parents]
        for v in tree_parents:
            v.anon_vma = None
        try:
            errors = super().check_invariants(final)
        finally:
            for v, anchor in zip(tree_parents, saved, strict=True):
                v.anon_vma = anchor
        for v in tree_parents:
            tp = v.anon_vma
            assert isinstance(tp, TreeParent)
            if v.rmap is None or all(avc.anon_vma is not tp.av for avc in v.rmap):
                errors.append(f"{v!r}: TREE_PARENT of anon_vma {tp.av.avid} but not in its tree")
        for root in self.roots.values():
            for v in root.vmas:
                if v.freed:
                    errors.append(f"{root!r}: anchors freed {v!r}")
                if self.root_of.get(v.vid) is not root:
                    errors.append(f"{root!r}: {v!r} is not registered with it")
                anchor = v.anon_vma
                ok = (anchor is root or (root.upgraded is not None and anchor is root.upgraded)
                      or (isinstance(anchor, TreeParent) and anchor.own is root))
                if not ok:
                    errors.append(f"{root!r}: {v!r} points at {anchor!r}")
            if root.pins < 0 or (final and root.pins):
                errors.append(f"{root!r}: {root.pins} pin(s) left")
            if root.upgraded is not None and root.upgraded.freed:
                errors.append(f"{root!r}: its anon_vma was freed but the root is still listed")
        for vid, root in self.root_of.items():
            if root.lid not in self.roots:
                errors.append(f"vma{vid} is anchored on retired {root!r}")
        if final and (self.roots or self.root_of):
            errors.append(f"{len(self.roots)} lazy root(s) anchoring {len(self.root_of)} VMA(s) left after every "
                          "process exited")
        return errors

    def stats(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


