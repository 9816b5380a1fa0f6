"""The objects of an address space, shaped like include/linux/mm_types.h.

Addresses are in pages (virtual page numbers, ``vpn``); a PTE table covers 512 pages
(``PTRS_PER_PTE``) and has its own split lock (``ptlock_ptr``), a PMD covers 512 PTE tables' worth
of a THP.  Design-specific reverse-map state hangs off three slots: ``Vma.anon_vma`` (whatever the
design points new exclusive folios at), ``Vma.rmap`` (the design's per-VMA list, e.g. the AVC
chain) and ``MmStruct.rmap`` (per-mm state, e.g. the COW context); ``Folio.mapping`` is the folio's
reverse-map anchor (an anon_vma or a COW context).

Memory matters here (a million resident folios must fit in 1 GB): folios and PTEs use
``__slots__``, a PTE is a small object in a per-mm dict, and the fields only a THP has are
:class:`LargeFolio`'s, not every folio's.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrency.folio_lock import FolioLock
    from concurrency.rwsem import RwSemaphore
    from concurrency.spinlock import QSpinlock
    from concurrency.vma_lock import VmaLock

__all__ = ["HPAGE_PMD_NR", "PTRS_PER_PTE", "Folio", "LargeFolio", "MmStruct", "Pte", "Vma", "large_folio", "pte_table"]

PTRS_PER_PTE = 512
HPAGE_PMD_NR = 512  # pages in a PMD-mapped THP (order 9)


def pte_table(vpn: int) -> int:
    """Index of the PTE table (and of its split PTL) that maps ``vpn``."""
    return vpn // PTRS_PER_PTE


class Folio:
    """An anonymous folio: order 0 here, order 9 (a THP) as a :class:`LargeFolio`.

    ``index`` is the anon pgoff (``linear_page_index``); ``mapcount`` counts the page-table entries
    that map it (PTEs, or one PMD for a PMD-mapped THP) and is the ground truth the oracle checks;
    ``exclusive`` is PageAnonExclusive; ``lock`` (PG_locked) is created on first use.
    """

    __slots__ = ("exclusive", "fid", "freed", "index", "lock", "lru", "mapcount", "mapping", "order", "pins",
                 "referenced")

    def __init__(self, fid: int, index: int, order: int = 0) -> None:
        self.fid = fid
        self.index = index
        self.order = order
        self.mapcount = 0
        self.exclusive = True
        # Any: each design keeps its own type here (AnonVma, CowContext, ...) and reads it straight
        # back into that type on the fault and walk paths; a union would name every design in this
        # module and need narrowing code at each read (the same holds for Vma.anon_vma/rmap and
        # MmStruct.rmap).
        self.mapping: Any = None
        self.lock: FolioLock | None = None
        self.lru = False
        self.freed = False
        self.pins = 0  # references beyond mappings (isolation for reclaim/migration)
        self.referenced = False  # the accessed bit, summarised over its PTEs

    @property
    def nr_pages(self) -> int:
        return 1 << self.order

    def __repr__(self) -> str:
        return f"<Folio {self.fid} idx={self.index} order={self.order} mapcount={self.mapcount}>"


class LargeFolio(Folio):
    """A large folio (``folio_test_large``: a THP, order 9), with the fields only large folios have.

    The kernel keeps them in the folio's tail pages (``_entire_mapcount`` in the second page of
    struct folio), so an order-0 folio has no room for them; here they are a subclass's slots,
    which keeps them out of every order-0 folio (8 bytes each of a million resident folios).
    A THP may be mapped by one PMD or, after ``__split_huge_pmd`` in some mm, by up to 512 PTEs
    there (each counted in ``mapcount``); ``entire_mapcount`` counts its PMD mappings
    (``folio_entire_mapcount``).  ``tails`` is set on a head retired by a split: page ``i`` of the
    head is now ``tails[i]``, which is what a migration entry naming the head's page (a pfn in the
    kernel) refers to from then on.
    """

    __slots__ = ("entire_mapcount", "tails")

    def __init__(self, fid: int, index: int, order: int) -> None:
        super().__init__(fid, index, order)
        self.entire_mapcount = 0  # PMD mappings (of ``mapcount``)
        self.tails: list[Folio] | None = None  # after a split: the order-0 folio of each page


def large_folio(folio: Folio) -> LargeFolio:
    """``folio``, which its order says is large, as a :class:`LargeFolio` (for its THP-only fields)."""
    if not isinstance(folio, LargeFolio):
        raise TypeError(f"{folio!r} is not a large folio")
    return folio


class Pte:
    """A PTE (or the PMD of a THP): the folio it maps and whether it is writable.

    ``young`` is the accessed bit that folio_referenced_one tests and clears.  A migration entry
    (try_to_migrate_one) is kept as a non-present Pte pointing at the source folio, so
    remove_migration_ptes can find and restore it.
    """

    __slots__ = ("folio", "migration", "writable", "young")

    def __init__(self, folio: Folio, writable: bool) -> None:
        self.folio = folio
        self.writable = writable
        self.young = True
        self.migration = False  # a migration entry: not present, ``folio`` is the source


class Vma:
    """A ``vm_area_struct`` of an anonymous private mapping.

    For anonymous VMAs ``pgoff`` is the original ``vm_start`` (in pages) and is kept across mremap,
    so a folio's address in this VMA is ``start + (folio.index - pgoff)`` (``vma_address``).
    """

    __slots__ = ("anon_vma", "end", "freed", "lock", "mm", "pgoff", "rmap", "start", "thp", "vid")

    def __init__(self, vid: int, mm: MmStruct, start: int, end: int, pgoff: int, lock: VmaLock,
                 *, thp: bool = False) -> None:
        self.vid = vid
        self.mm = mm
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.lock = lock
        self.anon_vma: Any = None  # design's anchor for new exclusive folios (NULL = unfaulted)
        self.rmap: Any = None  # design's per-VMA state (the AVC chain)
        self.thp = thp
        self.freed = False

    @property
    def pages(self) -> int:
        return self.end - self.start

    @property
    def offset(self) -> int:
        """How far the VMA moved from its original anonymous pgoff (COW context's remap offset)."""
        return self.start - self.pgoff

    def contains(self, vpn: int) -> bool:
        return self.start <= vpn < self.end

    def address(self, pgoff: int) -> int | None:
        """``vma_address``: where anon pgoff ``pgoff`` is mapped in this VMA, if it falls inside."""
        vpn = self.start + (pgoff - self.pgoff)
        return vpn if self.start <= vpn < self.end else None

    def pgoff_of(self, vpn: int) -> int:
        """``linear_page_index``."""
        if self.pgoff == self.start:
            # A VMA that never moved: the pgoff is the address.  Returning ``vpn`` itself, not an
            # equal new int, lets a new folio's ``index`` share the int object that keys its PTE
            # (32 bytes of every resident folio in pure Python).
            return vpn
        return self.pgoff + (vpn - self.start)

    def __repr__(self) -> str:
        return f"<Vma {self.vid} mm{self.mm.mid} [{self.start},{self.end}) pgoff={self.pgoff}>"


class MmStruct:
    """An address space: mmap_lock, page_table_lock, the VMA tree and the page tables."""

    __slots__ = ("_starts", "alive", "children", "depth", "exiting", "mid", "mmap_lock", "page_table_lock",
                 "parent", "pmd_locks", "pmds", "ptes", "ptls", "rmap", "tasks", "vmas", "wlocked")

    def __init__(self, mid: int, mmap_lock: RwSemaphore, page_table_lock: QSpinlock,
                 parent: MmStruct | None = None) -> None:
        self.mid = mid
        self.mmap_lock = mmap_lock
        self.page_table_lock = page_table_lock
        self.vmas: list[Vma] = []  # sorted by start: the maple tree
        self._starts: list[int] = []
        self.ptes: dict[int, Pte] = {}  # vpn -> PTE
        self.pmds: dict[int, Pte] = {}  # PMD index (vpn // 512) -> PMD mapping a THP
        self.ptls: dict[int, QSpinlock] = {}  # PTE table index -> split PTL (created with the table)
        self.pmd_locks: dict[int, QSpinlock] = {}
        self.parent = parent
        self.children: list[MmStruct] = []
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.rmap: Any = None  # design's per-mm state (the COW context)
        self.alive = True  # False once exit_mmap has torn everything down
        # mm_users reached 0 (mmput's atomic_dec_and_test, kernel/fork.c): set at the very start of
        # exit_mmap, so mmget_not_zero (atomic_inc_not_zero(&mm->mm_users)) fails from then on.
        self.exiting = False
        self.tasks = 0  # threads using this mm
        self.wlocked: list[Vma] = []  # VMAs write-locked in this mmap write-lock cycle

    # -- the VMA tree (find_vma, vma_iter) -----------------------------------------------------

    def find_vma(self, vpn: int) -> Vma | None:
        i = bisect.bisect_right(self._starts, vpn) - 1
        if i >= 0 and self.vmas[i].contains(vpn):
            return self.vmas[i]
        return None

    def vmas_in(self, start: int, end: int) -> list[Vma]:
        """VMAs overlapping [start, end), in address order (``for_each_vma_range``)."""
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        out = []
        while i < len(self.vmas) and self.vmas[i].start < end:
            if self.vmas[i].end > start:
                out.append(self.vmas[i])
            i += 1
        return out

    def insert_vma(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        if (i < len(self.vmas) and self.vmas[i].start < vma.end) or (i and self.vmas[i - 1].end > vma.start):
            raise ValueError(f"{vma!r} overlaps an existing VMA of mm{self.mid}")
        self.vmas.insert(i, vma)
        self._starts.insert(i, vma.start)

    def remove_vma(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        if i >= len(self.vmas) or self.vmas[i] is not vma:
            raise ValueError(f"{vma!r} is not in mm{self.mid}")
        del self.vmas[i]
        del self._starts[i]

    def reindex(self) -> None:
        """Re-sort after a VMA's start moved (split, mremap)."""
        self.vmas.sort(key=lambda v: v.start)
        self._starts = [v.start for v in self.vmas]

    def __repr__(self) -> str:
        return f"<MmStruct {self.mid} vmas={len(self.vmas)} ptes={len(self.ptes)}>"
