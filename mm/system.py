"""The simulated memory-management world of one run: mms, folios, page tables, LRU, the design.

``MmSystem`` owns object creation (so ids are deterministic), the lock instances every mm and
page table carries, free-memory accounting with watermarks, the LRU that kswapd ages, and the
walk statistics that the oracle checks feed.  The operations in mm/memory.py, mm/fork.py,
mm/mmap.py, mm/vmscan.py, mm/migrate.py and mm/huge_memory.py act on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, TypedDict, TypeVar

from concurrency.engine import Engine
from concurrency.folio_lock import FolioLock, folio_lock_class
from concurrency.instrument import Instrument
from concurrency.lock import SimLock
from concurrency.mutex import Mutex
from concurrency.rcu import Rcu
from concurrency.rwsem import RwSemaphore
from concurrency.spinlock import QSpinlock
from concurrency.vma_lock import VmaLock
from mm.cost_spread import CostSpread
from mm.costs import CostModel
from mm.instrument import MmHooks, MmInstrument
from mm.rmap_design import RmapDesign, SwitchValue
from mm.story import Story
from mm.types import HPAGE_PMD_NR, PTRS_PER_PTE, Folio, LargeFolio, MmStruct, Vma, large_folio

if TYPE_CHECKING:
    from records.result import JsonObject

__all__ = ["PAGE_TABLE_BYTES", "ZERO_FOLIO", "InflightWalk", "MmSystem", "MutexOptions", "RwsemOptions", "WalkStats",
           "mutex_options", "rwsem_options"]

_I = TypeVar("_I", bound=Instrument)

PAGE_TABLE_BYTES = 4096  # one PTE table page


class RwsemOptions(TypedDict, total=False):
    """The scenario's ``[rwsem]`` switches: :class:`RwSemaphore`'s keyword options, for every rwsem."""

    spin: bool
    reader_steal: bool
    handoff: bool
    hz: int
    handoff_timeout_ns: int | None
    wait_lock: bool
    wake_q: bool


class MutexOptions(TypedDict, total=False):
    """The scenario's ``[mutex]`` switches: :class:`Mutex`'s keyword options, for every mutex."""

    spin: bool
    handoff: bool
    wait_lock: bool
    wake_q: bool


def _flag(section: str, key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{section}.{key}: {value!r} is not true or false")
    return value


def _whole(section: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{section}.{key}: {value!r} is not an integer")
    return value


def rwsem_options(given: Mapping[str, object]) -> RwsemOptions:
    """The ``[rwsem]`` table (the scenario validated it) as :class:`RwsemOptions`."""
    out: RwsemOptions = {}
    for key, value in given.items():
        if key == "spin":
            out["spin"] = _flag("rwsem", key, value)
        elif key == "reader_steal":
            out["reader_steal"] = _flag("rwsem", key, value)
        elif key == "handoff":
            out["handoff"] = _flag("rwsem", key, value)
        elif key == "hz":
            out["hz"] = _whole("rwsem", key, value)
        elif key == "handoff_timeout_ns":
            out["handoff_timeout_ns"] = None if value is None else _whole("rwsem", key, value)
        elif key == "wait_lock":
            out["wait_lock"] = _flag("rwsem", key, value)
        elif key == "wake_q":
            out["wake_q"] = _flag("rwsem", key, value)
        else:
            raise TypeError(f"rwsem.{key}: not an rwsem option")
    return out


def mutex_options(given: Mapping[str, object]) -> MutexOptions:
    """The ``[mutex]`` table (the scenario validated it) as :class:`MutexOptions`."""
    out: MutexOptions = {}
    for key, value in given.items():
        if key == "spin":
            out["spin"] = _flag("mutex", key, value)
        elif key == "handoff":
            out["handoff"] = _flag("mutex", key, value)
        elif key == "wait_lock":
            out["wait_lock"] = _flag("mutex", key, value)
        elif key == "wake_q":
            out["wake_q"] = _flag("mutex", key, value)
        else:
            raise TypeError(f"mutex.{key}: not a mutex option")
    return out


MAX_NOTED = 20  # misses and corruptions kept in detail (all are counted)

# The shared zero page: read faults map it; it has no rmap and is never counted.
ZERO_FOLIO = Folio(-1, 0)


@dataclass
class WalkStats:
    """Per walk kind (folio_referenced, try_to_unmap, ...), checked against the oracle."""

    walks: int = 0
    contended: int = 0  # gave up on a contended rmap lock (PAGEREF_KEEP)
    vmas_visited: int = 0
    false_positives: int = 0  # visited VMAs where the folio was not mapped
    mappings_found: int = 0
    missed_mappings: int = 0  # PTEs mapping the folio that a completed walk did not reach
    freed_vma_visits: int = 0  # rmap_one on a VMA already unlinked/freed
    would_sleep_in_rcu: int = 0  # rmap_one that may sleep, run inside an RCU read-side section
    contexts_visited: int = 0

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # no __dict__ on a compiled class


class InflightWalk:
    """What one rmap walk in progress owes, for the oracle (see mm/rmap.py ``rmap_walk``).

    ``owed`` starts as every (mm id, vpn) mapping the folio when the walk starts; an entry that
    fork copies (or mremap moves) from an owed position the walk has not visited yet is owed too,
    because the kernel's walk order promises to reach it (the child VMA after the parent's in the
    interval tree).  ``visited`` is every position rmap_one was called for.
    """

    __slots__ = ("owed", "visited")

    def __init__(self, owed: set[tuple[int, int]]) -> None:
        self.owed = owed
        self.visited: set[tuple[int, int]] = set()


@dataclass
class MemoryConfig:
    """Free memory in pages and the zone watermarks (mm/page_alloc.c: min/low/high)."""

    total_pages: int = 1 << 30
    wmark_min: int = 0
    wmark_low: int = 0
    wmark_high: int = 0


@dataclass
class OpCounters:
    counts: dict[str, int] = field(default_factory=dict)

    def inc(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


class MmSystem:
    """One run's mm world.  ``design`` is the design's class (``mm.designs.design_class(name)``);
    ``switches`` its behaviour switches;
    ``rwsem_opts`` the rwsem behaviour switches applied to every rwsem (spin, reader_steal,
    handoff, hz), ``mutex_opts`` those of every mutex (spin, handoff); ``folio_lock_unfairness`` is
    ``sysctl_page_lock_unfairness`` (default 5); ``cost_variability`` draws the varied costs
    (mm/cost_spread.py) where they are spent, :meth:`cost`."""

    def __init__(self, engine: Engine, design: type[RmapDesign], *, costs: CostModel | None = None,
                 switches: Mapping[str, SwitchValue] | None = None, rwsem_opts: Mapping[str, object] | None = None,
                 mutex_opts: Mapping[str, object] | None = None,
                 memory: MemoryConfig | None = None, folio_lock_unfairness: int | None = None,
                 cost_variability: bool = False) -> None:
        self.engine = engine
        self.costs = costs or CostModel()
        # the seeded per-operation spread of the varied costs (mm/cost_spread.py): off unless asked,
        # so a system built by hand (the lock-sequence tests) spends the constants
        self.spread = CostSpread(engine, self.costs, cost_variability)
        self.rwsem_opts = rwsem_options(rwsem_opts or {})
        self.mutex_opts = mutex_options(mutex_opts or {})
        # sysctl_page_lock_unfairness (mm/filemap.c, folio_wait_bit_common): mainline's 5 by default
        self._folio_lock_cls = folio_lock_class(5 if folio_lock_unfairness is None else folio_lock_unfairness)
        self.lock_costs = self.costs.lock_costs()
        self.rcu = Rcu(engine, gp_min_ns=self.costs.rcu_gp_ns)
        self.memory = memory or MemoryConfig()
        self.free_pages = self.memory.total_pages
        self.min_free_pages = self.free_pages
        # Address spaces not yet torn down, in creation order: exit_mmap drops each at its end, so
        # the oracle's search and the end-of-run checks never scan the thousands a fork-heavy run
        # has already freed (and a freed mm is garbage, not kept alive here).
        self.mms: list[MmStruct] = []
        self.folios: dict[int, Folio] = {}  # live folios by id (insertion order = allocation order)
        # ds_queue->split_queue: partially mapped THPs waiting for deferred_split_scan (FIFO)
        self.deferred_split: dict[int, LargeFolio] = {}
        # inactive-anon LRU, oldest first: keyed by the folio itself, not its id (on the compiled build
        # an id used as a key is a new int object, 32 bytes of every resident folio)
        self.lru: dict[Folio, Folio] = {}
        self.walks: dict[str, WalkStats] = {}
        self.ops = OpCounters()
        self.corruption: list[str] = []  # what the kernel would have corrupted (stale entries)
        self.corruption_events: list[dict[str, int]] = []  # the same, structured (first MAX_NOTED)
        self.misses: list[JsonObject] = []  # walks that missed mappings (first MAX_NOTED)
        self.inflight_walks: dict[int, list[InflightWalk]] = {}  # by the id of the folio sought
        self.story: Story | None = None  # rmapsim explore's race story (mm/story.py), when told
        self.hooks = MmHooks()  # the designs' events for instruments (mm/instrument.py)
        self.pgtables = 0  # live PTE table pages
        self.pgtables_deferred_bytes = 0
        self._next_mid = 0
        self._next_vid = 0
        self._next_fid = 0
        # Set by the actors: direct reclaim when an allocation finds memory below the min watermark.
        self.direct_reclaim: Callable[[int], Awaitable[int]] | None = None
        self.wakeup_kswapd: Callable[[], None] | None = None
        # Switch (2022, commit 6d4675e60135): folio_referenced only tries the rmap lock.
        self.reclaim_trylock = True
        self.design: RmapDesign = design(self, switches)

    def cost(self, name: str) -> int:
        """Cost ``name`` (a field of :class:`CostModel`) as spent now: a seeded draw around its
        constant when the spread is on (mm/cost_spread.py), else the constant."""
        return self.spread.cost(name)

    def vary(self, name: str, ns: int) -> int:
        """``ns``, an operation's cost computed from the constants, with cost ``name``'s spread."""
        return self.spread.vary(name, ns)

    def add_instrument(self, instrument: _I) -> _I:
        """Attach an instrument to the engine and, for an :class:`MmInstrument`, to the designs'
        events too; returns it."""
        self.engine.add_instrument(instrument)
        if isinstance(instrument, MmInstrument):
            self.hooks.add(instrument)
        return instrument

    # -- object creation -------------------------------------------------------------------------

    def new_rwsem(self, name: str, instance: str) -> RwSemaphore:
        return RwSemaphore(self.engine, name, instance=instance, costs=self.lock_costs, **self.rwsem_opts)

    def new_mutex(self, name: str, instance: str) -> Mutex:
        return Mutex(self.engine, name, instance=instance, costs=self.lock_costs, **self.mutex_opts)

    async def pull_locked_lines(self, lock: SimLock) -> None:
        """The first touch of a lock's protected data after the lock moved CPU (lock_stat's
        acquisition bounce): the lines the previous owner wrote come over, one ``bounce_ns``.
        Called by the rmap designs right after taking their write locks, so every change of
        owner under contention costs it inside the critical section."""
        if lock.acq_bounced and self.costs.bounce_ns:
            await self.engine.delay(self.costs.bounce_ns)

    def new_spinlock(self, name: str, instance: str) -> QSpinlock:
        return QSpinlock(self.engine, name, instance=instance, costs=self.lock_costs)

    async def new_mm(self, parent: MmStruct | None = None) -> MmStruct:
        """``mm_alloc``/``mm_init``: a new address space with its locks (and design state)."""
        mid = self._next_mid
        self._next_mid += 1
        mm = MmStruct(mid, self.new_rwsem("mm->mmap_lock", f"mm{mid}->mmap_lock"),
                      self.new_spinlock("mm->page_table_lock", f"mm{mid}->page_table_lock"), parent)
        if parent is not None:
            parent.children.append(mm)
        self.mms.append(mm)
        await self.design.mm_init(mm)
        return mm

    def new_vma(self, mm: MmStruct, start: int, end: int, pgoff: int | None = None, *,
                thp: bool = False) -> Vma:
        """``vm_area_alloc``; for a fresh anonymous mapping pgoff is vm_start (in pages)."""
        vid = self._next_vid
        self._next_vid += 1
        lock = VmaLock(self.engine, "vma_lock", instance=f"vma{vid}",
                       mmap_write_held=lambda: mm.mmap_lock.is_write_locked())
        return Vma(vid, mm, start, end, start if pgoff is None else pgoff, lock, thp=thp)

    def ptl(self, mm: MmStruct, vpn: int) -> QSpinlock:
        """``pte_lockptr`` (the split PTL); the table is allocated with its lock (``pte_alloc``)."""
        idx = vpn // PTRS_PER_PTE
        lock = mm.ptls.get(idx)
        if lock is None:
            lock = mm.ptls[idx] = self.new_spinlock("ptl", f"mm{mm.mid}->ptl[{idx}]")
            self.pgtables += 1
        return lock

    def pmd_lock(self, mm: MmStruct, vpn: int) -> QSpinlock:
        idx = vpn // HPAGE_PMD_NR
        lock = mm.pmd_locks.get(idx)
        if lock is None:
            lock = mm.pmd_locks[idx] = self.new_spinlock("pmd_lock", f"mm{mm.mid}->pmd_lock[{idx}]")
        return lock

    def folio_lock_of(self, folio: Folio) -> FolioLock:
        lock = folio.lock
        if lock is None:
            lock = folio.lock = self._folio_lock_cls(self.engine, "folio_lock", instance=f"folio{folio.fid}")
        return lock

    async def alloc_folio(self, index: int, order: int = 0, *, reclaim: bool = True) -> Folio:
        """``folio_alloc``: take pages, entering direct reclaim below the min watermark.

        ``reclaim=False`` is an allocation without ``__GFP_RECLAIM`` (neither direct reclaim nor a
        kswapd wake-up): a migration target (mm/migrate.c ``alloc_misplaced_dst_folio`` clears
        ``__GFP_RECLAIM``; compaction's ``compaction_alloc`` takes pages it isolated itself)."""
        nr = 1 << order
        if reclaim and self.free_pages - nr < self.memory.wmark_min and self.direct_reclaim is not None:
            self.ops.inc("direct_reclaim")
            await self.direct_reclaim(nr)
        self.free_pages -= nr
        if reclaim and self.free_pages < self.memory.wmark_low and self.wakeup_kswapd is not None:
            self.wakeup_kswapd()
        self.min_free_pages = min(self.min_free_pages, self.free_pages)
        fid = self._next_fid
        self._next_fid += 1
        folio = LargeFolio(fid, index, order) if order else Folio(fid, index)
        self.folios[fid] = folio
        return folio

    async def free_folio(self, folio: Folio) -> None:
        """The last mapping and pin are gone: uncharge, take it off the LRU, tell the design."""
        if folio.freed:
            raise RuntimeError(f"double free of {folio!r}")
        folio.freed = True
        self.lru.pop(folio, None)
        folio.lru = False
        del self.folios[folio.fid]
        self.deferred_split.pop(folio.fid, None)  # folio_unqueue_deferred_split
        self.free_pages += folio.nr_pages
        await self.design.folio_free(folio)

    @property
    def next_folio_id(self) -> int:
        return self._next_fid

    async def folio_put(self, folio: Folio) -> None:
        """Drop a pin (isolation, migration, an mmu_gather batch); whoever drops the last pin of
        an unmapped folio frees it."""
        folio.pins -= 1
        if folio.pins == 0 and folio.mapcount == 0 and not folio.freed:
            await self.free_folio(folio)

    def split_folio(self, head: LargeFolio) -> list[Folio]:
        """``__split_folio_to_order``: 512 order-0 folios take over the head's pages.

        The head is retired (no longer live) without a free: its memory now belongs to the tails.
        """
        tails = []
        for i in range(head.nr_pages):
            fid = self._next_fid
            self._next_fid += 1
            small = Folio(fid, head.index + i)
            small.exclusive = head.exclusive
            self.folios[fid] = small
            tails.append(small)
            if head.lru:
                self.lru_add(small)
        head.tails = tails  # migration entries naming the head's pages now name the tails
        self.deferred_split.pop(head.fid, None)
        head.freed = True
        self.lru.pop(head, None)
        head.lru = False
        del self.folios[head.fid]
        return tails

    def folio_remove_rmap(self, folio: Folio, nr: int = 1, *, pmd: bool = False) -> None:
        """``folio_remove_rmap_ptes`` (``nr`` PTEs) or ``folio_remove_rmap_pmd`` (``pmd``), after
        ``__folio_remove_rmap`` (mm/rmap.c): a large anon folio left partially mapped is queued
        with ``deferred_split_folio(folio, true)``.  Partially mapped is CONFIG_NO_PAGE_MAPCOUNT's
        rule: still mapped, by fewer mappings than it has pages, and by no PMD (for a PMD removal,
        it was the last one).  While a PMD still maps the whole folio (a parent after a child's
        COW split its own PMD) nothing is queued."""
        folio.mapcount -= nr
        if folio.order:  # a PMD maps only a large folio
            large = large_folio(folio)
            if pmd:
                large.entire_mapcount -= 1
            if 0 < folio.mapcount < folio.nr_pages and not large.entire_mapcount:
                self.deferred_split_folio(large)

    def deferred_split_folio(self, folio: LargeFolio) -> None:
        """``deferred_split_folio(folio, partially_mapped=true)``: queue it once (mm/huge_memory.c)."""
        if folio.fid not in self.deferred_split and not folio.freed:
            self.deferred_split[folio.fid] = folio
            self.ops.inc("thp_deferred_split_page")

    def lru_add(self, folio: Folio) -> None:
        """``folio_add_lru_vma``: new anon folios go to the tail (youngest) of the LRU."""
        folio.lru = True
        self.lru[folio] = folio

    def walk_stats(self, name: str) -> WalkStats:
        stats = self.walks.get(name)
        if stats is None:
            stats = self.walks[name] = WalkStats()
        return stats

    def entry_copied(self, folio: Folio, src: tuple[int, int], dst: tuple[int, int]) -> None:
        """An entry for ``folio`` was copied (fork) or moved (mremap) from ``src`` to ``dst``
        (each ``(mm id, vpn)``): a walk in progress that owed ``src`` and has not reached it
        yet owes ``dst`` as well.  Callers test ``inflight_walks`` first (the common case is none)."""
        for walk in self.inflight_walks.get(folio.fid, ()):
            if src in walk.owed and src not in walk.visited:
                walk.owed.add(dst)

    def note_miss(self, walk: str, task: str, folio: Folio, missed: list[tuple[int, int]]) -> None:
        """A completed walk left owed mappings behind (the oracle's finding; kept for reports and
        for ``rmapsim explore``'s race story)."""
        if len(self.misses) < MAX_NOTED:
            self.misses.append({"t_ns": self.engine.now, "walk": walk, "task": task, "folio": folio.fid,
                                "mappings": [list(m) for m in missed]})
        hook = self.engine.hooks.on_finding
        if hook is not None:  # the run's event log (concurrency/trace.py)
            hook("walk_miss", {"walk": walk, "folio": folio.fid, "mappings": [list(m) for m in missed]})

    def note_corruption(self, mm: MmStruct, vpn: int, folio: Folio, what: str) -> None:
        """What the kernel would have corrupted: ``what`` says how (a stale migration entry)."""
        self.corruption.append(f"t={self.engine.now} ns: mm{mm.mid} vpn {vpn}: {what}")
        if len(self.corruption_events) < MAX_NOTED:
            self.corruption_events.append({"t_ns": self.engine.now, "mm": mm.mid, "vpn": vpn, "folio": folio.fid})
        hook = self.engine.hooks.on_finding
        if hook is not None:
            hook("corruption", {"mm": mm.mid, "vpn": vpn, "folio": folio.fid, "what": what})

    def might_sleep(self, stats: WalkStats) -> None:
        """An rmap_one that may sleep: inside an RCU read-side section the kernel would splat."""
        task = self.engine.current
        if task is not None and task.rcu_depth:
            stats.would_sleep_in_rcu += 1

    # -- accounting ---------------------------------------------------------------------------------

    def metadata(self) -> dict[str, int]:
        meta = dict(self.design.metadata())
        meta["pgtable_bytes"] = self.pgtables * PAGE_TABLE_BYTES
        meta["pgtable_deferred_bytes"] = self.pgtables_deferred_bytes
        return meta
