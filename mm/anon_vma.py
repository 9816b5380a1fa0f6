"""Today's anonymous reverse map: anon_vma, anon_vma_chain and the family-wide root rwsem.

Mirrors mainline mm/rmap.c as of 2026 (after L. Stoakes' Jan-2026 anon_vma clean-up, which is
also the non-COW code of the ``project/cow-context`` branch) and the helpers of
include/linux/rmap.h / mm/internal.h.  See docs/kernel-rmap.md §1-§3.

Objects
    :class:`AnonVma` is ``struct anon_vma``: ``root``, ``parent``, ``refcount``, ``num_children``
    (anon_vmas whose ``parent`` is this one, a root counting itself), ``num_active_vmas`` (VMAs
    whose ``->anon_vma`` is this one) and the interval tree of AVCs (``rb_root``), kept as an
    insertion-ordered dict; a walk filters it by pgoff overlap and visits the hits in interval-tree
    order (start pgoff, then VMA id for a deterministic tie-break), charging
    ``itree_query(size)``.  :class:`Avc` is ``struct anon_vma_chain``.  ``vma.rmap`` is the VMA's
    ``same_vma`` list, newest first (``list_add`` order), so the root anon_vma is last and is freed
    last; ``vma.anon_vma`` is where new exclusive folios of the VMA go.

Locking
    Every anon_vma lock helper resolves to the root: ``anon_vma_lock_write(av)`` is
    ``down_write(&av->root->rwsem)`` and so on.  Only roots get a lock object here (one
    :class:`RwSemaphore` per root, lock class ``anon_vma->rwsem``); a non-root anon_vma has none,
    and :func:`lock_of` returns its root's.  ``__anon_vma_prepare`` nests ``mm->page_table_lock``
    inside the root write lock.

Behaviour switches (``SWITCHES``) reproduce earlier kernels:

* ``reuse=False`` - before 7a3ef208e662 (2015): fork never reuses an anon_vma, so a constantly
  forking chain grows anon_vmas and AVC lists without bound.
* ``clone_alloc_under_lock=True`` - before 2026 (torvalds/linux mm/rmap.c @8cdf3792):
  ``anon_vma_clone`` allocates each AVC with GFP_NOWAIT *inside* the root write lock (only the
  first allocation, made before the lock is first taken, is outside), and ``anon_vma_fork``
  allocates the child's own anon_vma and AVC only after the clone found nothing to reuse.
* ``lock_per_avc=True`` - the 2011 regression fixed by bb4aa39676f7 (lock_anon_vma_root): the
  clone locks and unlocks the root once per AVC instead of once per clone.
* ``rmap_lock="mutex"`` - before 3.8 (5a505085f043, 4fc3f1d66b1e): the root lock is a mutex
  (class ``anon_vma->mutex``) and every walker takes it exclusively.
* ``single_anon_vma=True`` - before 5beb49305251 (2010): one anon_vma per fork family, shared by
  every process.  Fork links the child VMA into the parent's anon_vma (``anon_vma_link``); there
  are no per-process anon_vmas and no AVC objects (the list node was embedded in the VMA), and a
  walk scans the family's whole VMA list (``list_op_ns`` per entry), so every folio's walk visits
  every process mapping its pgoff.

Lifetime: an anon_vma starts with refcount 1, dropped when its interval tree empties in
``unlink_anon_vmas``; a non-root holds a reference on its root (the lock lives there);
``folio_get_anon_vma`` and the sleeping path of ``folio_lock_anon_vma_read`` pin it.
``__put_anon_vma`` frees the anon_vma, then drops the root's reference.  ``anon_vma_free`` takes
and releases the root write lock if the lock is held (synchronising with
``folio_lock_anon_vma_read``).

Not modelled: KSM (rmap_items and ``rmap_walk_ksm``), allocation failure and its clean-up paths,
``invalid_vma`` filters, ``cond_resched`` in walks, SLAB_TYPESAFE_BY_RCU re-use of a freed
anon_vma.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from concurrency.mutex import Mutex
from concurrency.rwsem import RwSemaphore
from mm.cpu import spend
from mm.rmap_design import RmapDesign, RmapWalkControl, Switch, SwitchValue, WalkResult

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mm.system import MmSystem
    from mm.types import Folio, MmStruct, Vma
    from records.result import JsonObject

__all__ = [
    "ANON_VMA_BYTES",
    "AVC_BYTES",
    "LOCK_CLASS_MUTEX",
    "LOCK_CLASS_RWSEM",
    "OBJECT_SIZES",
    "AnonVma",
    "AnonVmaDesign",
    "Avc",
    "lock_of",
]

LOCK_CLASS_RWSEM = "anon_vma->rwsem"
LOCK_CLASS_MUTEX = "anon_vma->mutex"  # the pre-3.8 field name (struct anon_vma::mutex)

# Object sizes on x86-64 (bytes), from include/linux/rmap.h (num_children/num_active_vmas layout,
# 2022+) with no debug options.  The derivation, field by field:
#
#   struct anon_vma                                   offset  size
#     struct anon_vma *root                                0     8
#     struct rw_semaphore rwsem                            8    40  count 8, owner 8, osq 4
#                                                                   (CONFIG_RWSEM_SPIN_ON_OWNER),
#                                                                   wait_lock 4, wait_list 16
#     atomic_t refcount                                   48     4  (+4 padding)
#     unsigned long num_children                          56     8
#     unsigned long num_active_vmas                       64     8
#     struct anon_vma *parent                             72     8
#     struct rb_root_cached rb_root                       80    16  rb_node + rb_leftmost
#                                                       sizeof = 96
#   The cache is SLAB_TYPESAFE_BY_RCU with a constructor (anon_vma_ctor), so SLUB cannot keep its
#   free pointer inside the object and places it after it (SLUB calculate_sizes): 96 + 8 = 104 B
#   per slab object, within the reference's estimate of 100-110 B.
#
#   struct anon_vma_chain
#     struct vm_area_struct *vma                           0     8
#     struct anon_vma *anon_vma                            8     8
#     struct list_head same_vma                           16    16
#     struct rb_node rb                                   32    24  parent|colour, right, left
#     unsigned long rb_subtree_last                       56     8
#                                                       sizeof = 64  (KMEM_CACHE, free pointer
#   inside the object; +16 B with CONFIG_DEBUG_VM_RB, not counted).
#
#   single_anon_vma: the pre-2010 list node lived inside vm_area_struct (anon_vma_node), so a
#   link costs no separate object; the anon_vma keeps the modern size so that a comparison
#   isolates the linking structure.
ANON_VMA_BYTES = 104
AVC_BYTES = 64
OBJECT_SIZES: dict[str, int] = {"anon_vma": ANON_VMA_BYTES, "avc": AVC_BYTES}

RootLock = RwSemaphore | Mutex


class AnonVma:
    """``struct anon_vma``."""

    __slots__ = ("avid", "emptied", "freed", "lock", "num_active_vmas", "num_children", "parent",
                 "pins", "refcount", "root", "tree")

    def __init__(self, avid: int) -> None:
        # anon_vma_alloc(): refcount 1, num_children 0, num_active_vmas 0, parent = root = self.
        self.avid = avid
        self.root: AnonVma = self
        self.parent: AnonVma = self
        self.refcount = 1
        self.num_children = 0
        self.num_active_vmas = 0
        self.tree: dict[int, Avc] = {}  # rb_root: AVCs by id (insertion order)
        self.lock: RootLock | None = None  # only a root's lock is ever taken
        self.pins = 0  # references held by folio_get_anon_vma / folio_lock_anon_vma_read
        self.emptied = False  # its tree emptied in unlink_anon_vmas: the initial reference is gone
        self.freed = False

    def __repr__(self) -> str:
        return (f"<AnonVma {self.avid} root={self.root.avid} parent={self.parent.avid} "
                f"ref={self.refcount} children={self.num_children} active={self.num_active_vmas} "
                f"tree={len(self.tree)}>")


class Avc:
    """``struct anon_vma_chain``: one (VMA, anon_vma) link."""

    __slots__ = ("aid", "anon_vma", "vma")

    def __init__(self, aid: int, vma: Vma, anon_vma: AnonVma) -> None:
        self.aid = aid
        self.vma = vma
        self.anon_vma = anon_vma

    def __repr__(self) -> str:
        return f"<Avc {self.aid} vma{self.vma.vid} av{self.anon_vma.avid}>"


def lock_of(av: AnonVma) -> RootLock:
    """The lock every ``anon_vma_lock_*`` helper takes: the root's (include/linux/rmap.h)."""
    lock = av.root.lock
    assert lock is not None, f"root anon_vma {av.root.avid} has no lock"
    return lock


@dataclass
class _PrepareToken:
    """What vma_prepare locked and which VMAs' tree positions it must update."""

    anon_vma: AnonVma
    geometry: list[tuple[Vma, int, int, int]]  # (vma, start, end, pgoff) before the change


class AnonVmaDesign(RmapDesign):
    """The mainline anon_vma reverse map; see the module docstring."""

    # copy_vma (mm/vma.c) sets need_rmap_locks = false for a target VMA it duplicated: the copy's
    # AVCs are linked after the source's in every anon_vma tree, so a walk reaches the copy after
    # the source and finds an entry move_ptes moved meanwhile at its new address.
    MREMAP_FRESH_VMA_NEEDS_RMAP_LOCKS = False

    name: ClassVar[str] = "anon_vma"
    summary: ClassVar[str] = ("mainline 2026: anon_vma tree per fork family, one AVC per (VMA, anon_vma), "
                              "interval trees, every lock through the root anon_vma's rwsem")
    SWITCHES: ClassVar[dict[str, Switch]] = {
        "reuse": Switch(True, (True, False),
                        "fork reuses an anon_vma with no VMAs and at most one child (maybe_reuse_anon_vma, "
                        "7a3ef208e662, 2015); False = unbounded anon_vma growth of a forking chain"),
        "clone_alloc_under_lock": Switch(False, (False, True),
                                         "True = before 2026: anon_vma_clone allocates each AVC "
                                         "(GFP_NOWAIT) while holding the root write lock, and "
                                         "anon_vma_fork allocates its own anon_vma only after the clone"),
        "lock_per_avc": Switch(False, (False, True),
                               "True = the 2011 regression fixed by bb4aa39676f7: the clone locks and "
                               "unlocks the root once per AVC instead of once per clone"),
        "rmap_lock": Switch("rwsem", ("rwsem", "mutex"),
                            "the root lock: rwsem (3.8+) or the earlier mutex that every walker takes "
                            "exclusively (before 5a505085f043 / 4fc3f1d66b1e)"),
        "single_anon_vma": Switch(False, (False, True),
                                  "True = before 5beb49305251 (2010): one anon_vma per fork family, no "
                                  "AVCs, fork links the child VMA into it and every walk scans every "
                                  "process"),
    }

    def __init__(self, system: MmSystem, switches: Mapping[str, SwitchValue] | None = None) -> None:
        super().__init__(system, switches)
        sw = self.switches
        self.reuse = self.switch_flag("reuse")
        self.alloc_under_lock = self.switch_flag("clone_alloc_under_lock")
        self.lock_per_avc = self.switch_flag("lock_per_avc")
        self.use_mutex: bool = sw["rmap_lock"] == "mutex"
        self.single = self.switch_flag("single_anon_vma")
        # Live objects, in creation order (deterministic iteration for invariants).
        self.anon_vmas: dict[int, AnonVma] = {}
        self.avcs: dict[int, Avc] = {}
        self.vmas: dict[int, Vma] = {}  # VMAs with a non-empty AVC list, by vid
        self._next_avid = 0
        self._next_aid = 0
        self.peak_total_bytes = 0
        self.peak_anon_vmas = 0
        self.peak_avcs = 0
        self.at_peak = (0, 0)  # (anon_vmas, AVCs) when the bytes peaked
        # Counters for reports (how often each path ran).
        self.counts: dict[str, int] = {
            "anon_vma_alloc": 0, "anon_vma_free": 0, "avc_alloc": 0, "avc_free": 0,
            "fork_reuse": 0, "prepare_merge_reuse": 0, "prepare_race_lost": 0,
            "free_lock_dance": 0,
        }

    # -- costs and allocation ---------------------------------------------------------------------

    def _tree_op_ns(self, av: AnonVma) -> int:
        """Insert/remove in the interval tree (or, pre-2010, a list_add/list_del)."""
        if self.single:
            return self.sys.cost("list_op_ns")
        return self.sys.vary("itree_base_ns", self.sys.costs.itree_op(len(av.tree)))

    def _new_anon_vma(self) -> AnonVma:
        """``anon_vma_alloc`` (the slab cost is charged by the caller where the kernel spends it)."""
        av = AnonVma(self._next_avid)
        self._next_avid += 1
        self.anon_vmas[av.avid] = av
        self.counts["anon_vma_alloc"] += 1
        self._note_peak()
        return av

    def _make_root(self, av: AnonVma) -> None:
        """A brand-new root gets the family lock (its own rwsem is the one that is ever taken)."""
        system = self.sys
        if self.use_mutex:
            av.lock = system.new_mutex(LOCK_CLASS_MUTEX, f"anon_vma{av.avid}->mutex")
        else:
            av.lock = system.new_rwsem(LOCK_CLASS_RWSEM, f"anon_vma{av.avid}->rwsem")

    def _new_avc(self, vma: Vma, av: AnonVma) -> Avc:
        """``anon_vma_chain_alloc`` + ``anon_vma_chain_assign`` (list_add: newest first)."""
        avc = Avc(self._next_aid, vma, av)
        self._next_aid += 1
        if not self.single:
            self.avcs[avc.aid] = avc
            self.counts["avc_alloc"] += 1
        self._note_peak()
        return avc

    def _link_same_vma(self, vma: Vma, avc: Avc) -> None:
        if vma.rmap is None:
            vma.rmap = []
            self.vmas[vma.vid] = vma
        vma.rmap.insert(0, avc)

    def _unlink_same_vma(self, vma: Vma, avc: Avc) -> None:
        vma.rmap.remove(avc)

    def _drop_avc(self, avc: Avc) -> None:
        """``anon_vma_chain_free`` (bookkeeping; the slab cost is charged by the caller)."""
        if not self.single:
            del self.avcs[avc.aid]
            self.counts["avc_free"] += 1

    @property
    def _avc_slab_ns(self) -> int:
        # Pre-2010 the list node was embedded in the VMA: nothing to allocate.
        return 0 if self.single else self.sys.cost("slab_ns")

    def _total_bytes(self) -> int:
        return len(self.anon_vmas) * ANON_VMA_BYTES + len(self.avcs) * AVC_BYTES

    def _note_peak(self) -> None:
        """Called after every anon_vma and AVC allocation: objects only grow there."""
        n_av, n_avc = len(self.anon_vmas), len(self.avcs)
        self.peak_anon_vmas = max(self.peak_anon_vmas, n_av)
        self.peak_avcs = max(self.peak_avcs, n_avc)
        total = n_av * ANON_VMA_BYTES + n_avc * AVC_BYTES
        if total > self.peak_total_bytes:
            self.peak_total_bytes = total
            self.at_peak = (n_av, n_avc)
        hook = self.sys.hooks.on_anon_vma_grow
        if hook is not None:  # an instrument listens (rmapsim validate's H6 probe): count the VMAs
            hook(n_av, sum(1 for v in self.vmas.values() if v.anon_vma is not None))

    # -- the lock helpers (include/linux/rmap.h, mm/internal.h) -----------------------------------

    async def _lock_write(self, av: AnonVma) -> None:
        """``anon_vma_lock_write``: ``down_write(&anon_vma->root->rwsem)``.

        When the lock last ran on another CPU, the root anon_vma's lines the writer updates
        (refcount, ``num_children``, the tree roots) come over first (:meth:`MmSystem.pull_locked_lines`):
        under contention every change of owner pays it, which is what makes re-taking the lock
        per AVC expensive ([H3])."""
        lock = lock_of(av)
        if isinstance(lock, Mutex):
            await lock.lock()
        else:
            await lock.down_write()
        await self.sys.pull_locked_lines(lock)

    def _unlock_write(self, av: AnonVma) -> None:
        lock = lock_of(av)
        if isinstance(lock, Mutex):
            lock.unlock()
        else:
            lock.up_write()

    def _trylock_read(self, av: AnonVma) -> bool:
        """``anon_vma_trylock_read``; with the mutex every reader is exclusive (mutex_trylock)."""
        lock = lock_of(av)
        return lock.trylock() if isinstance(lock, Mutex) else lock.down_read_trylock()

    async def _lock_read(self, av: AnonVma) -> None:
        lock = lock_of(av)
        if isinstance(lock, Mutex):
            await lock.lock()
        else:
            await lock.down_read()

    def _unlock_read(self, av: AnonVma) -> None:
        lock = lock_of(av)
        if isinstance(lock, Mutex):
            lock.unlock()
        else:
            lock.up_read()

    # -- lifetime ----------------------------------------------------------------------------------

    async def _anon_vma_free(self, av: AnonVma) -> None:
        """``anon_vma_free``: if the root lock is held, take and drop it for write first, so a
        ``folio_lock_anon_vma_read`` that trylocked it before our refcount drop is done with it."""
        lock = lock_of(av)
        if lock.is_locked():
            self.counts["free_lock_dance"] += 1
            await self._lock_write(av)
            self._unlock_write(av)
        await spend(self.sys, self.sys.cost("slab_ns"))
        self._retire(av)

    def _retire(self, av: AnonVma) -> None:
        av.freed = True
        del self.anon_vmas[av.avid]
        self.counts["anon_vma_free"] += 1

    async def _put_anon_vma(self, av: AnonVma) -> None:
        """``put_anon_vma`` -> ``__put_anon_vma``: free it, then drop the root's reference."""
        await spend(self.sys, self.sys.costs.atomic_ns)
        av.refcount -= 1
        if av.refcount:
            return
        root = av.root
        await self._anon_vma_free(av)
        if root is not av:
            root.refcount -= 1
            if root.refcount == 0:
                await self._anon_vma_free(root)

    # -- VMA and mm lifecycle ----------------------------------------------------------------------

    async def mm_init(self, mm: MmStruct) -> None:
        return None

    async def fork_mm(self, child: MmStruct, parent: MmStruct) -> None:
        return None

    async def exit_mm(self, mm: MmStruct) -> None:
        return None

    def _find_mergeable_anon_vma(self, vma: Vma) -> AnonVma | None:
        """``find_mergeable_anon_vma`` (mm/vma.c): the next VMA first, then the previous one, if
        ``anon_vma_compatible`` (adjacent, same flags, pgoff contiguous) and its AVC list is
        singular (``reusable_anon_vma``)."""
        mm = vma.mm

        def compatible(a: Vma, b: Vma) -> bool:
            return a.end == b.start and a.thp == b.thp and b.pgoff == a.pgoff + (b.start - a.start)

        def reusable(old: Vma, a: Vma, b: Vma) -> AnonVma | None:
            if compatible(a, b) and old.anon_vma is not None and old.rmap is not None \
                    and len(old.rmap) == 1:
                av: AnonVma = old.anon_vma
                return av
            return None

        nxt = mm.find_vma(vma.end)
        if nxt is not None and nxt is not vma:
            found = reusable(nxt, vma, nxt)
            if found is not None:
                return found
        prev = mm.find_vma(vma.start - 1) if vma.start else None
        if prev is not None and prev is not vma:
            return reusable(prev, prev, vma)
        return None

    async def anon_vma_prepare(self, vma: Vma) -> None:
        """``anon_vma_prepare`` -> ``__anon_vma_prepare`` (caller holds mmap_lock).

        AVC allocation, then ``find_mergeable_anon_vma`` or ``anon_vma_alloc`` (a new root with
        its self-parent link), then root W -> ``mm->page_table_lock`` -> link if still unset.
        Losing a race with another thread of the mm frees the spare allocations afterwards.
        """
        current: AnonVma | None = vma.anon_vma  # a local: the recheck below is after awaits, and a
        if current is not None:  # narrowed ``vma.anon_vma`` would be trusted across them (mypyc)
            return
        costs = self.sys.costs
        mm = vma.mm
        avc_spare_ns = self._avc_slab_ns
        await spend(self.sys, avc_spare_ns)  # anon_vma_chain_alloc(GFP_KERNEL)
        await spend(self.sys, self.sys.vary("mt_lookup_base_ns", costs.mt_lookup(len(mm.vmas))))  # vma_next / vma_prev
        av = self._find_mergeable_anon_vma(vma)
        allocated: AnonVma | None = None
        if av is None:
            av = self._new_anon_vma()
            self._make_root(av)
            await spend(self.sys, self.sys.cost("slab_ns"))
            av.num_children += 1  # self-parent link for a new root
            allocated = av
        else:
            self.counts["prepare_merge_reuse"] += 1
        await self._lock_write(av)
        # page_table_lock protects against threads of this mm racing through here.
        await mm.page_table_lock.lock()
        linked = False
        if vma.anon_vma is None:
            vma.anon_vma = av
            avc = self._new_avc(vma, av)
            self._link_same_vma(vma, avc)
            await spend(self.sys, self._tree_op_ns(av))
            av.tree[avc.aid] = avc
            av.num_active_vmas += 1
            linked = True
        mm.page_table_lock.unlock()
        self._unlock_write(av)
        if not linked:
            self.counts["prepare_race_lost"] += 1
            if allocated is not None:
                allocated.num_children -= 1
                allocated.emptied = True
                await self._put_anon_vma(allocated)
            await spend(self.sys, avc_spare_ns)  # anon_vma_chain_free

    async def _clone(self, dst: Vma, src: Vma, fork: bool) -> None:
        """``anon_vma_clone``: one AVC in ``dst`` per AVC of ``src``, inserted into each
        anon_vma's tree under the root write lock; on fork, ``maybe_reuse_anon_vma``."""
        active = src.anon_vma
        if active is None or src.rmap is None:
            return
        slab = self._avc_slab_ns
        pavcs: list[Avc] = list(src.rmap)
        # New AVCs are list_add'ed oldest first, so dst's list keeps src's newest-first order;
        # the tree inserts (and reuse checks) then walk it in reverse: oldest (root) first.
        order = list(reversed(pavcs))
        if self.lock_per_avc:
            # 2011: anon_vma_chain_link locked and unlocked the root around every AVC.
            for pavc in order:
                if not self.alloc_under_lock:
                    await spend(self.sys, slab)
                await self._lock_write(active)
                if self.alloc_under_lock:
                    await spend(self.sys, slab)
                await self._link_clone_avc(dst, pavc.anon_vma, fork)
                if pavc is order[-1] and not fork:
                    dst.anon_vma.num_active_vmas += 1
                self._unlock_write(active)
            return
        if self.alloc_under_lock:
            # Pre-2026: the first allocation precedes the lock; the rest happen under it.
            locked = False
            for pavc in order:
                await spend(self.sys, slab)  # GFP_NOWAIT (never fails here)
                if not locked:
                    await self._lock_write(active)
                    locked = True
                await self._link_clone_avc(dst, pavc.anon_vma, fork)
        else:
            # 2026: allocate every AVC first (no lock needed: dst is not visible yet).
            await spend(self.sys, slab * len(pavcs))
            await self._lock_write(active)
            for pavc in order:
                await self._link_clone_avc(dst, pavc.anon_vma, fork)
        if not fork:
            dst.anon_vma.num_active_vmas += 1
        self._unlock_write(active)

    async def _link_clone_avc(self, dst: Vma, av: AnonVma, fork: bool) -> None:
        """Assign one new AVC, insert it into ``av``'s tree, and try reuse on fork (lock held)."""
        avc = self._new_avc(dst, av)
        self._link_same_vma(dst, avc)
        await spend(self.sys, self._tree_op_ns(av))
        av.tree[avc.aid] = avc
        if fork and self.reuse and dst.anon_vma is None and av.num_active_vmas == 0 \
                and av.num_children <= 1:
            # maybe_reuse_anon_vma: no VMA points here and at most one child anon_vma.
            dst.anon_vma = av
            av.num_active_vmas += 1
            self.counts["fork_reuse"] += 1

    async def fork_vma(self, child: Vma, parent: Vma) -> None:
        """``anon_vma_fork`` (kernel/fork.c dup_mmap, per parent VMA with an anon_vma).

        2026: allocate the child's anon_vma and AVC, clone the parent's chain (root W #1), and
        unless an anon_vma was reused, link the new one under root W #2.  Pre-2010
        (``single_anon_vma``): ``anon_vma_link`` adds the child VMA to the family's anon_vma.
        """
        pav: AnonVma | None = parent.anon_vma
        if pav is None:
            return
        costs = self.sys.costs
        child.anon_vma = None  # dropped: reuse an existing one or allocate a new one
        if self.single:
            child.anon_vma = pav
            await self._lock_write(pav)
            avc = self._new_avc(child, pav)
            self._link_same_vma(child, avc)
            await spend(self.sys, self._tree_op_ns(pav))
            pav.tree[avc.aid] = avc
            pav.num_active_vmas += 1
            self._unlock_write(pav)
            return
        preallocate = not self.alloc_under_lock
        if preallocate:
            await spend(self.sys, 2 * self.sys.cost("slab_ns"))  # anon_vma_alloc + anon_vma_chain_alloc
        await self._clone(child, parent, fork=True)
        if child.anon_vma is not None:
            if preallocate:
                await spend(self.sys, 2 * self.sys.cost("slab_ns"))  # put_anon_vma(spare) + anon_vma_chain_free
            return
        if not preallocate:
            await spend(self.sys, 2 * self.sys.cost("slab_ns"))
        av = self._new_anon_vma()
        av.num_active_vmas = 1
        av.root = pav.root
        av.parent = pav
        # The root is pinned until this anon_vma is freed: the lock lives in the root.
        await spend(self.sys, costs.atomic_ns)
        av.root.refcount += 1
        child.anon_vma = av
        avc = self._new_avc(child, av)
        self._link_same_vma(child, avc)
        await self._lock_write(av)
        await spend(self.sys, self._tree_op_ns(av))
        av.tree[avc.aid] = avc
        av.parent.num_children += 1
        self._unlock_write(av)

    async def clone_vma(self, new: Vma, src: Vma, op: str) -> None:
        """``anon_vma_clone`` for split / remap / merge of an unfaulted VMA: an exact duplicate
        of ``src``'s chain (never a reuse), ``num_active_vmas++`` on the shared anon_vma."""
        if op not in ("split", "remap", "merge"):
            raise ValueError(f"clone_vma: unknown op {op!r}")
        if src.anon_vma is None:
            return
        new.anon_vma = src.anon_vma  # vm_area_dup copied it
        await self._clone(new, src, fork=False)

    async def vma_prepare(self, vmas: list[Vma]) -> object:
        """``vma_prepare`` / ``take_rmap_locks``: root W of the first VMA with an anon_vma.

        The interval-tree pre-update (remove) and post-update (reinsert) of every AVC of a VMA
        whose boundaries change are charged in :meth:`vma_complete`, still under the lock: the
        hold time is the same, and a VMA whose geometry does not change (mremap's
        take_rmap_locks) costs only the lock, as in the kernel.
        """
        av: AnonVma | None = next((v.anon_vma for v in vmas if v.anon_vma is not None), None)
        if av is None:
            return None
        await self._lock_write(av)
        return _PrepareToken(av, [(v, v.start, v.end, v.pgoff) for v in vmas if v.rmap])

    async def vma_complete(self, token: object, vmas: list[Vma]) -> None:
        """``vma_complete``: reinsert the moved VMAs' AVCs (``anon_vma_interval_tree_post_update_vma``)
        and unlock."""
        if token is None:
            return
        assert isinstance(token, _PrepareToken)
        for vma, start, end, pgoff in token.geometry:
            if (vma.start, vma.end, vma.pgoff) == (start, end, pgoff) or not vma.rmap:
                continue
            for avc in vma.rmap:
                size_ns = self._tree_op_ns(avc.anon_vma)
                await spend(self.sys, 2 * size_ns)  # remove at the old interval, insert at the new
        self._unlock_write(token.anon_vma)

    async def unlink_vma(self, vma: Vma) -> None:
        """``unlink_anon_vmas`` (free_pgtables: exit, munmap).

        Root W once: remove every AVC from its tree; an emptied anon_vma drops its parent's
        ``num_children`` and keeps its AVC on the list; the others' AVCs are freed.  Then
        ``num_active_vmas--``, ``vma->anon_vma = NULL``, unlock, and ``put_anon_vma`` each emptied
        anon_vma (newest first, so the root goes last).
        """
        active: AnonVma | None = vma.anon_vma
        if active is None:
            assert not vma.rmap, f"{vma!r} has AVCs but no anon_vma"
        await self._unlink_chain(vma, active)

    async def _unlink_chain(self, vma: Vma, active: AnonVma | None) -> None:
        """The body of ``unlink_anon_vmas``: the family's root lock is taken through the oldest
        AVC (the root's: every anon_vma of a chain shares it), so this also serves a VMA whose
        chain has no anon_vma of its own (``active`` None: ANON_VMA_LAZY's TREE_PARENT)."""
        chain: list[Avc] | None = vma.rmap
        if not chain:
            vma.rmap = None
            self.vmas.pop(vma.vid, None)
            return
        slab = self._avc_slab_ns
        lock_av = chain[-1].anon_vma
        await self._lock_write(lock_av)
        emptied: list[Avc] = []
        for avc in list(chain):
            av = avc.anon_vma
            await spend(self.sys, self._tree_op_ns(av))
            del av.tree[avc.aid]
            if not av.tree:
                av.parent.num_children -= 1
                av.emptied = True
                emptied.append(avc)
                continue
            self._unlink_same_vma(vma, avc)
            await spend(self.sys, slab)
            self._drop_avc(avc)
        if active is not None:
            active.num_active_vmas -= 1
        vma.anon_vma = None
        self._unlock_write(lock_av)
        # Could not free these under the lock: __put_anon_vma may need the root write lock.
        for avc in emptied:
            await self._put_anon_vma(avc.anon_vma)
            self._unlink_same_vma(vma, avc)
            await spend(self.sys, slab)
            self._drop_avc(avc)
        assert not vma.rmap
        vma.rmap = None
        self.vmas.pop(vma.vid, None)

    # -- folios ------------------------------------------------------------------------------------

    async def folio_add_new_anon_rmap(self, folio: Folio, vma: Vma, vpn: int, exclusive: bool) -> None:
        """``__folio_set_anon``: an exclusive folio goes to ``vma->anon_vma``; a non-exclusive one
        to its root ("must use the _oldest_ possible anon_vma")."""
        av: AnonVma | None = vma.anon_vma
        assert av is not None, f"new anon folio in {vma!r} without anon_vma_prepare"
        folio.mapping = av if exclusive else av.root

    async def folio_move_anon_rmap(self, folio: Folio, vma: Vma) -> None:
        """``folio_move_anon_rmap``: exclusive reuse re-points the folio at ``vma->anon_vma``."""
        av: AnonVma | None = vma.anon_vma
        assert av is not None
        folio.mapping = av

    async def folio_free(self, folio: Folio) -> None:
        """The folio holds no anon_vma reference: nothing to lock; ``->mapping`` is cleared."""
        folio.mapping = None

    def stats(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def folio_get_anon_vma(self, folio: Folio) -> object:
        """``folio_get_anon_vma``: under RCU, pin the anon_vma of a mapped folio
        (``atomic_inc_not_zero``); None if the folio is not mapped."""
        av = self._folio_anon_vma(folio)
        if av is None or folio.mapcount <= 0 or av.refcount == 0:
            return None
        av.refcount += 1
        av.pins += 1
        return av

    async def put_anon_vma(self, token: object) -> None:
        """Drop a :meth:`folio_get_anon_vma` pin (``put_anon_vma``; a last put frees under the
        root lock dance)."""
        if token is None:
            return
        assert isinstance(token, AnonVma)
        token.pins -= 1
        await self._put_anon_vma(token)

    @staticmethod
    def _folio_anon_vma(folio: Folio) -> AnonVma | None:
        """``folio_anon_vma``: the anon_vma ``folio->mapping`` points at (may be freed)."""
        av = folio.mapping
        return av if isinstance(av, AnonVma) else None

    # -- walks -------------------------------------------------------------------------------------

    async def _folio_lock_anon_vma_read(self, folio: Folio, rwc: RmapWalkControl,
                                        result: WalkResult) -> AnonVma | None:
        """``folio_lock_anon_vma_read``: RCU lookup of ``folio->mapping``; needs the folio mapped;
        ``down_read_trylock(root)``; on failure give up (``try_lock``: contended) or pin the
        anon_vma, leave RCU and sleep in ``down_read``."""
        rcu = self.sys.rcu
        rcu.rcu_read_lock()
        av = self._folio_anon_vma(folio)
        if av is None or folio.mapcount <= 0:
            rcu.rcu_read_unlock()
            return None
        if self._trylock_read(av):
            rcu.rcu_read_unlock()
            # Still mapped (nothing ran since the check), so this is still its anon_vma.
            return av
        if rwc.try_lock:
            result.contended = True
            rcu.rcu_read_unlock()
            return None
        if av.refcount == 0:  # atomic_inc_not_zero failed: being freed
            rcu.rcu_read_unlock()
            return None
        av.refcount += 1
        av.pins += 1
        rcu.rcu_read_unlock()
        await spend(self.sys, self.sys.costs.atomic_ns)
        await self._lock_read(av)
        av.pins -= 1
        av.refcount -= 1
        if av.refcount == 0:
            # We held the last reference: unlock and free (__put_anon_vma).
            self._unlock_read(av)
            root = av.root
            await self._anon_vma_free(av)
            if root is not av:
                root.refcount -= 1
                if root.refcount == 0:
                    await self._anon_vma_free(root)
            return None
        return av

    async def _walk_anon_lock(self, folio: Folio, rwc: RmapWalkControl,
                              result: WalkResult) -> AnonVma | None:
        """``rmap_walk_anon_lock``: ``folio_lock_anon_vma_read``, or (remove_migration_ptes, the
        folio no longer mapped; the caller pinned the anon_vma) ``folio_anon_vma`` locked with a
        read trylock, then a sleeping read lock unless ``try_lock``."""
        if rwc.anon_lock:
            return await self._folio_lock_anon_vma_read(folio, rwc, result)
        av = self._folio_anon_vma(folio)
        if av is None or av.freed:
            return None
        if self._trylock_read(av):
            return av
        if rwc.try_lock:
            result.contended = True
            return None
        await self._lock_read(av)
        return av

    async def rmap_walk(self, folio: Folio, rwc: RmapWalkControl) -> WalkResult:
        """``rmap_walk_anon``: lock, ``anon_vma_interval_tree_foreach`` over the folio's pgoff
        range in its anon_vma, ``rmap_one`` each VMA, check ``done``, unlock."""
        result = WalkResult()
        if rwc.locked:
            av = self._folio_anon_vma(folio)
            if av is None or av.freed:
                return result
        else:
            found = await self._walk_anon_lock(folio, rwc, result)
            if found is None:
                return result
            av = found
        costs = self.sys.costs
        first = folio.index
        last = first + folio.nr_pages - 1
        if self.single:
            # Pre-2010: a plain list of every VMA of the family, each checked by vma_address.
            await spend(self.sys, self.sys.cost("list_op_ns") * len(av.tree))
        else:
            await spend(self.sys, self.sys.vary("itree_query_base_ns", costs.itree_query(len(av.tree))))
        hits = [avc.vma for avc in av.tree.values()
                if avc.vma.pgoff <= last and avc.vma.pgoff + avc.vma.pages - 1 >= first]
        hits.sort(key=lambda v: (v.pgoff, v.vid))
        for vma in hits:
            if not await rwc.visit(vma, first, result):
                break
        if not rwc.locked:
            self._unlock_read(av)
        return result

    async def rmap_write_lock(self, folio: Folio) -> object:
        """``anon_vma_lock_write(folio_anon_vma(folio))`` for a THP split (the caller pinned it)."""
        av = self._folio_anon_vma(folio)
        if av is None or av.freed:
            return None
        await self._lock_write(av)
        return av

    async def rmap_write_unlock(self, token: object) -> None:
        if token is None:
            return
        assert isinstance(token, AnonVma)
        self._unlock_write(token)

    # -- accounting --------------------------------------------------------------------------------

    def metadata(self) -> dict[str, int]:
        """Live objects and bytes (sizes derived in the module's table), the peak, and the
        longest AVC list of any VMA."""
        n_av = len(self.anon_vmas)
        n_avc = len(self.avcs)
        longest = max((len(v.rmap) for v in self.vmas.values() if v.rmap), default=0)
        return {
            "anon_vma_count": n_av,
            "anon_vma_bytes": n_av * ANON_VMA_BYTES,
            "avc_count": n_avc,
            "avc_bytes": n_avc * AVC_BYTES,
            "total_bytes": self._total_bytes(),
            "peak_total_bytes": self.peak_total_bytes,
            "peak_anon_vma_count": self.peak_anon_vmas,
            "peak_avc_count": self.peak_avcs,
            "anon_vma_count_at_peak": self.at_peak[0],
            "avc_count_at_peak": self.at_peak[1],
            "max_chain_len": longest,
        }

    def check_invariants(self, final: bool) -> list[str]:
        """Refcounts, ``num_children`` and ``num_active_vmas`` against the structure; every AVC in
        its tree and on its VMA's list; nothing points at a freed VMA or anon_vma; at the end,
        nothing left."""
        errors: list[str] = []
        live = self.anon_vmas
        children: dict[int, int] = {}
        root_refs: dict[int, int] = {}
        for av in live.values():
            if av.freed:
                errors.append(f"{av!r} is freed but still listed")
            root = av.root
            if root.root is not root:
                errors.append(f"{av!r}: its root {root.avid} is not a root")
            if root.avid not in live:
                errors.append(f"{av!r}: its root {root.avid} was freed first")
            if (root is av) != (av.lock is not None):
                errors.append(f"{av!r}: only roots carry the family lock")
            if not av.emptied:
                children[av.parent.avid] = children.get(av.parent.avid, 0) + 1
                if av.parent.avid not in live:
                    errors.append(f"{av!r}: parent {av.parent.avid} freed")
            if root is not av:
                root_refs[root.avid] = root_refs.get(root.avid, 0) + 1
            if av.emptied and av.tree:
                errors.append(f"{av!r}: emptied but its tree is not empty")
            if not av.emptied and not av.tree:
                errors.append(f"{av!r}: empty tree but still holds its initial reference")
            if av.pins < 0:
                errors.append(f"{av!r}: negative pins")
        active: dict[int, int] = {}
        for vma in self.vmas.values():
            av = vma.anon_vma
            if av is not None:
                active[av.avid] = active.get(av.avid, 0) + 1
        for av in live.values():
            want_children = children.get(av.avid, 0)
            if av.num_children != want_children:
                errors.append(f"{av!r}: num_children {av.num_children} != {want_children}")
            want_active = active.get(av.avid, 0)
            if av.num_active_vmas != want_active:
                errors.append(f"{av!r}: num_active_vmas {av.num_active_vmas} != {want_active}")
            want_ref = (0 if av.emptied else 1) + root_refs.get(av.avid, 0) + av.pins
            if av.refcount != want_ref:
                errors.append(f"{av!r}: refcount {av.refcount} != {want_ref}")
            for avc in av.tree.values():
                if avc.anon_vma is not av:
                    errors.append(f"{avc!r} sits in the tree of anon_vma {av.avid}")
                if avc.vma.rmap is None or avc not in avc.vma.rmap:
                    errors.append(f"{avc!r} is in a tree but not on its VMA's list")
        seen_avcs = 0
        for vma in self.vmas.values():
            chain = vma.rmap
            if not chain:
                errors.append(f"{vma!r} is registered with an empty AVC list")
                continue
            if vma.freed:
                errors.append(f"{vma!r} is freed but still has AVCs")
            roots = {avc.anon_vma.root.avid for avc in chain}
            if len(roots) != 1:
                errors.append(f"{vma!r}: AVCs span families {sorted(roots)}")
            if chain[-1].anon_vma.root is not chain[-1].anon_vma:
                errors.append(f"{vma!r}: the oldest AVC is not the root's")
            if vma.anon_vma is not None and all(avc.anon_vma is not vma.anon_vma for avc in chain):
                errors.append(f"{vma!r}: its anon_vma is not on its AVC list")
            for avc in chain:
                seen_avcs += 1
                if avc.vma is not vma:
                    errors.append(f"{avc!r} is on the list of {vma!r}")
                if avc.anon_vma.freed or avc.anon_vma.avid not in live:
                    errors.append(f"{avc!r} points at a freed anon_vma")
                elif avc.aid not in avc.anon_vma.tree:
                    errors.append(f"{avc!r} is on its VMA's list but not in its anon_vma's tree")
        if not self.single and seen_avcs != len(self.avcs):
            errors.append(f"{len(self.avcs)} live AVCs but {seen_avcs} on VMA lists")
        if final:
            if live:
                errors.append(f"{len(live)} anon_vma(s) left after every process exited: "
                              f"{sorted(live)[:10]}")
            if self.avcs or self.vmas:
                errors.append(f"{len(self.avcs)} AVC(s) on {len(self.vmas)} VMA(s) left after every "
                              f"process exited")
        return errors

    def describe(self) -> JsonObject:
        out = super().describe()
        out["object_bytes"] = dict(OBJECT_SIZES)
        return out


