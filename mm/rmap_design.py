"""The interface between the mm operations and a reverse-map design, and the design registry.

The operations (mm/memory.py, mm/fork.py, mm/mmap.py, mm/vmscan.py, mm/migrate.py,
mm/huge_memory.py) are written once, in kernel shape, and call the design at exactly the points the
kernel calls into mm/rmap.c (or, for the COW context, mm/cow_context.c):

================================  ==========================================================
hook                              kernel call site it stands for
================================  ==========================================================
``vma_prepare_anon_vma_lazy``     ANON_VMA_LAZY's first touch (PATCH 10/15): called by
                                  ``__vmf_anon_prepare`` before its mmap_read_trylock; True when the
                                  design prepared the VMA itself (default False: nothing happens)
``anon_vma_prepare``              ``__anon_vma_prepare`` (first touch, from vmf_anon_prepare)
``fork_vma``                      ``anon_vma_fork`` in dup_mmap, per VMA with an anon_vma
``fork_mm``                       end of dup_mmap (PoC: ``dup_cow_context``)
``clone_vma``                     ``anon_vma_clone`` for split / mremap / merge (not fork)
``vma_prepare``/``vma_complete``  vma_prepare/vma_complete: rmap write lock around a VMA boundary
                                  change (split, merge, expand, mremap move)
``unlink_vma``                    ``unlink_anon_vmas`` from free_pgtables (exit, munmap)
``exit_mm``                       mm teardown (PoC: ``drop_cow_context``)
``folio_add_new_anon_rmap``       ``__folio_set_anon`` for a new folio (fault, COW copy)
``folio_move_anon_rmap``          exclusive reuse in do_wp_page
``folio_dup_rmap``                ``folio_try_dup_anon_rmap_ptes`` in copy_pte_range (fork)
``folio_free``                    the folio's last reference is gone (free_folio)
``folio_migrate_mapping``         migration: the new folio inherits the old one's anchor
``folio_split``                   THP split: the order-0 folios inherit the head's anchor
``folio_get_anon_vma``            pin for migration / THP split (``folio_get_anon_vma``)
``rmap_walk``                     ``rmap_walk_anon`` with ``folio_lock_anon_vma_read`` or not
``rmap_write_lock``               ``anon_vma_lock_write`` held across a THP split
================================  ==========================================================

A design keeps its objects, counts its memory (``metadata``) and checks its own invariants
(``check_invariants``).  Adding a design is one module defining a subclass plus one entry in
``mm/designs.py`` (the registry).  A design sees the run's mm world through :class:`DesignHost`, the
part of ``mm.system.MmSystem`` it may use, so this module does not import the system that holds it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeAlias

if TYPE_CHECKING:
    from concurrency.engine import Engine
    from concurrency.lock import LockCosts, SimLock
    from concurrency.mutex import Mutex
    from concurrency.rcu import Rcu
    from concurrency.rwsem import RwSemaphore
    from concurrency.spinlock import QSpinlock
    from mm.costs import CostModel
    from mm.instrument import MmHooks
    from mm.types import Folio, MmStruct, Vma
    from records.result import JsonObject

__all__ = ["DesignHost", "RmapDesign", "RmapWalkControl", "Switch", "SwitchValue", "WalkResult", "switch_values"]

# A design switch is a flag or one of a few named choices (a scenario's [switches.<design>] value).
SwitchValue: TypeAlias = bool | str


class DesignHost(Protocol):
    """What a design uses of the run's mm world (``mm.system.MmSystem`` is the one host)."""

    @property
    def engine(self) -> Engine: ...
    @property
    def costs(self) -> CostModel: ...
    @property
    def lock_costs(self) -> LockCosts: ...
    @property
    def rcu(self) -> Rcu: ...
    @property
    def folios(self) -> dict[int, Folio]: ...
    @property
    def hooks(self) -> MmHooks: ...

    def cost(self, name: str) -> int: ...  # a varied cost as spent now (mm/cost_spread.py)
    def vary(self, name: str, ns: int) -> int: ...
    def new_rwsem(self, name: str, instance: str) -> RwSemaphore: ...
    def new_mutex(self, name: str, instance: str) -> Mutex: ...
    def new_spinlock(self, name: str, instance: str) -> QSpinlock: ...
    async def pull_locked_lines(self, lock: SimLock) -> None: ...


@dataclass(frozen=True)
class Switch:
    """A behaviour switch of a design (a lock choice or a historical variant)."""

    default: SwitchValue
    allowed: tuple[SwitchValue, ...]
    help: str


@dataclass
class RmapWalkControl:
    """``struct rmap_walk_control``.

    ``rmap_one(vma, vpn)`` does the per-mapping work (page_vma_mapped_walk under the PTL) and
    returns False to stop the walk; ``done()`` is ``rwc->done``.  ``try_lock`` gives up when the
    rmap lock is contended (folio_referenced); ``anon_lock`` uses ``folio_lock_anon_vma_read``
    (which needs the folio mapped) rather than locking ``folio_anon_vma`` directly
    (remove_migration_ptes); ``locked`` is ``rmap_walk_locked`` (caller holds the rmap lock).
    ``may_sleep`` says rmap_one may sleep (mmu notifiers, TLB batching): under an RCU-only walk
    that is counted as a walk that would sleep in a read-side section.
    """

    name: str
    rmap_one: Callable[[Vma, int], Awaitable[bool]]
    try_lock: bool = False
    anon_lock: bool = True
    locked: bool = False
    may_sleep: bool = False
    done: Callable[[], bool] | None = None

    async def visit(self, vma: Vma, index: int, result: WalkResult) -> bool:
        """One step of every design's walk (``rmap_walk_anon``'s loop body): ``rmap_one`` on the
        page at ``index`` in ``vma`` if ``vma`` maps it, then ``rwc->done``.  False stops the walk
        (``result.stopped_early``); a VMA that does not map ``index`` is skipped."""
        vpn = vma.address(index)
        if vpn is None:
            return True
        result.vmas_visited += 1
        if not await self.rmap_one(vma, vpn) or (self.done is not None and self.done()):
            result.stopped_early = True
            return False
        return True


@dataclass
class WalkResult:
    contended: bool = False  # gave up: rmap lock contended (rwc->contended)
    vmas_visited: int = 0  # rmap_one calls
    contexts_visited: int = 0  # COW contexts traversed (anon_vma: 0)
    stopped_early: bool = False  # rmap_one or done() ended it (or the exclusive short-cut)


class RmapDesign(ABC):
    """A reverse-map design behind the operations' hooks.  See the module docstring."""

    name: ClassVar[str]
    summary: ClassVar[str]
    SWITCHES: ClassVar[dict[str, Switch]] = {}
    # mremap's move_page_tables takes the rmap locks (vma_prepare) around the moves even for a
    # fresh target VMA, unless the design's walk visits a copied VMA after its source (anon_vma:
    # copy_vma's need_rmap_locks = false, mm/vma.c).
    MREMAP_FRESH_VMA_NEEDS_RMAP_LOCKS: ClassVar[bool] = True

    def __init__(self, system: DesignHost, switches: Mapping[str, SwitchValue] | None = None) -> None:
        self.sys = system
        self.switches = self.resolve_switches(switches or {})

    @classmethod
    def resolve_switches(cls, given: Mapping[str, object]) -> dict[str, SwitchValue]:
        return switch_values(cls, given)

    def switch_flag(self, name: str) -> bool:
        """A true/false switch's value (the scenario checked its type against the default's)."""
        value = self.switches[name]
        if not isinstance(value, bool):
            raise TypeError(f"switch {self.name}.{name}: {value!r} is not true or false")
        return value

    def switch_choice(self, name: str) -> str:
        """A named-choice switch's value (the scenario checked its type against the default's)."""
        value = self.switches[name]
        if not isinstance(value, str):
            raise TypeError(f"switch {self.name}.{name}: {value!r} is not one of its named choices")
        return value

    # -- VMA and mm lifecycle ------------------------------------------------------------------

    async def vma_prepare_anon_vma_lazy(self, vma: Vma) -> bool:
        """ANON_VMA_LAZY (PATCH 10/15): ``__vmf_anon_prepare`` calls ``vma_prepare_anon_vma_lazy``
        under the VMA lock alone, before its ``mmap_read_trylock``; return True when the VMA was
        prepared here.  The default (every design but ``anon_vma_lazy``) does nothing, takes no
        time and returns False."""
        return False

    @abstractmethod
    async def anon_vma_prepare(self, vma: Vma) -> None:
        """Give ``vma`` its rmap anchor (caller holds mmap_lock, read or write)."""

    @abstractmethod
    async def fork_vma(self, child: Vma, parent: Vma) -> None:
        """``anon_vma_fork``: called in dup_mmap for each parent VMA that has an anchor."""

    @abstractmethod
    async def fork_mm(self, child: MmStruct, parent: MmStruct) -> None:
        """End of dup_mmap, both mmap_locks still held for write."""

    @abstractmethod
    async def clone_vma(self, new: Vma, src: Vma, op: str) -> None:
        """``anon_vma_clone`` for op in {"split", "remap", "merge"}."""

    @abstractmethod
    async def vma_prepare(self, vmas: list[Vma]) -> object:
        """Lock the rmap around a boundary change of ``vmas`` (returns a token for vma_complete: opaque
        to the caller, the design narrows it)."""

    @abstractmethod
    async def vma_complete(self, token: object, vmas: list[Vma]) -> None:
        """Finish a boundary change (reinsert in rmap indexes, record remaps) and unlock."""

    @abstractmethod
    async def unlink_vma(self, vma: Vma) -> None:
        """``unlink_anon_vmas``: the VMA is going away (free_pgtables)."""

    @abstractmethod
    async def mm_init(self, mm: MmStruct) -> None:
        """A new mm is created (mm_init / mm_init_cow_context)."""

    @abstractmethod
    async def exit_mm(self, mm: MmStruct) -> None:
        """The mm is dropped (after its VMAs are unlinked)."""

    # -- folios ------------------------------------------------------------------------------------

    @abstractmethod
    async def folio_add_new_anon_rmap(self, folio: Folio, vma: Vma, vpn: int, exclusive: bool) -> None:
        """``folio_add_new_anon_rmap``/``__folio_set_anon``: set the folio's anchor."""

    @abstractmethod
    async def folio_move_anon_rmap(self, folio: Folio, vma: Vma) -> None:
        """``folio_move_anon_rmap``: exclusive reuse re-points the folio at ``vma``'s anchor."""

    @abstractmethod
    async def folio_free(self, folio: Folio) -> None:
        """The folio is freed (no mappings, no pins)."""

    def folio_dup_rmap(self, folio: Folio, child: Vma) -> None:
        """``folio_try_dup_anon_rmap_ptes`` at fork: nothing design-specific by default."""
        return None

    async def folio_migrate_mapping(self, src: Folio, dst: Folio) -> None:
        """``folio_migrate_mapping``: the new folio takes the old one's anchor (and a reference)."""
        dst.mapping = src.mapping

    async def folio_split(self, head: Folio, tails: list[Folio]) -> None:
        """``__split_folio_to_order``: the order-0 folios take over the head's anchor; the head
        itself is retired without :meth:`folio_free`."""
        for tail in tails:
            tail.mapping = head.mapping

    # -- walks -------------------------------------------------------------------------------------

    @abstractmethod
    async def rmap_walk(self, folio: Folio, rwc: RmapWalkControl) -> WalkResult:
        """``rmap_walk_anon``: lock, enumerate candidate VMAs, call ``rwc.rmap_one``, unlock."""

    @abstractmethod
    async def rmap_write_lock(self, folio: Folio) -> object:
        """``anon_vma_lock_write(folio_anon_vma)`` for THP split; returns a token for unlock."""

    @abstractmethod
    async def rmap_write_unlock(self, token: object) -> None: ...

    def folio_get_anon_vma(self, folio: Folio) -> object:
        """Pin the folio's rmap anchor so it survives an unmap (migration); returns a token, or
        None when the anchor is already going away (the caller then gives up, as the kernel's
        callers do)."""
        return True

    async def put_anon_vma(self, token: object) -> None:
        """Drop the pin (the last put may free the anchor, under its lock)."""
        return None

    # -- accounting --------------------------------------------------------------------------------

    @abstractmethod
    def metadata(self) -> dict[str, int]:
        """Live rmap objects and bytes: ``{"<object>_count": n, "<object>_bytes": b, ...,
        "total_bytes": sum}``, plus peaks as ``peak_total_bytes``."""

    @abstractmethod
    def check_invariants(self, final: bool) -> list[str]:
        """Violations of the design's own invariants; ``final`` after every process exited."""

    def stats(self) -> dict[str, int]:
        """Design-specific counters for the result record (dead contexts visited, ...)."""
        return {}

    def describe(self) -> JsonObject:
        return {"name": self.name, "switches": dict(sorted(self.switches.items()))}


def switch_values(design: type[RmapDesign], given: Mapping[str, object]) -> dict[str, SwitchValue]:
    """:meth:`RmapDesign.resolve_switches` of ``design``'s own ``SWITCHES``: a function, so that an
    override can build on it without ``super()`` in a classmethod (which mypyc miscompiles).
    ``given`` is what a scenario or ``--design NAME:k=v`` said, checked here against each switch's
    allowed values (``1`` is not ``True``: a switch is a string or a boolean)."""
    out = {name: sw.default for name, sw in design.SWITCHES.items()}
    for key, value in given.items():
        sw = design.SWITCHES.get(key)
        if sw is None:
            allowed = ", ".join(sorted(design.SWITCHES)) or "none"
            raise KeyError(f"design {design.name!r} has no switch {key!r}; allowed: {allowed}")
        if not isinstance(value, bool | str) or value not in sw.allowed:
            raise ValueError(f"switch {design.name}.{key}: {value!r} not allowed; "
                             f"allowed: {', '.join(map(repr, sw.allowed))}")
        out[key] = value
    return out

