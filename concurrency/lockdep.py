"""The lockdep-style order checker, after kernel/locking/lockdep.c.

Lock models report every acquisition and release here (``SimLock._lockdep_acquire`` /
``_lockdep_release``); the engine holds one checker as ``engine.lockdep``.  What it mirrors, and
where it differs on purpose:

* **Classes, not instances** (Documentation/locking/lockdep-design.rst "Lock-class"): the key is
  the lock class name, with the ``*_nested()`` subclass as a ``/N`` suffix (``mm->mmap_lock/1``),
  which is a class of its own, so nesting by subclass is not recursion.
* **Held-lock stack per task** (``task_struct::held_locks``).  A lock is pushed when its
  acquisition *starts*, as ``lock_acquire()`` does before the lock is actually taken, so a task
  that waits is already "holding" it for the validator.  Releases may come out of order.
* **Dependencies** ``held -> new`` (``check_prevs_add``/``check_prev_add``): only a *blocking*
  acquisition adds them (``validate_chain`` skips trylocks: they "can be done in any order"), but a
  trylock stays on the stack and later blocking acquisitions depend on it.  Each edge carries
  lockdep's dependency types (``lock_list::dep``): -(ER)-, -(EN)-, -(SR)-, -(SN)-, where E is an
  exclusive holder, S a shared one (read 1 or 2), R a recursive reader (read 2) and N a
  non-recursive locker (writer or read 1).
  Difference: the kernel stops at the first non-trylock held lock and reaches the older ones
  transitively; here every held lock gets its direct edge.  For cycle detection this only adds
  true dependencies (no false reports) and closes one hole: with a recursive reader in the middle
  of a stack, ``A(W) -> C(R) -> B`` is not a strong path, yet ``A -> B`` deadlocks against
  ``B -> A``.  For the declared-order check it means an order violation is seen even when an
  undeclared lock sits between the two declared ones.
* **Cycles** (``check_noncircular``): before ``prev -> next`` is recorded, a breadth-first search
  from ``next`` looks for a *strong* path back to ``prev`` (``__bfs``): a path with no -(xR)->
  followed by -(Sx)->, whose end conflicts with ``prev`` (``hlock_conflict``: ``prev`` held
  exclusive, or the path ends in -(xN)->).  Lockdep-design.rst proves a strong cycle is exactly a
  possible deadlock.  Difference: ``__bfs`` marks a *class* visited, so a class first reached
  through an -(xR)-> edge is never expanded again when a later, stronger edge reaches it; this
  search keys its visited set on (class, only -(xR)-> so far) and so misses no strong path.
  The new edge is recorded even when it closes a cycle (the kernel turns itself off after its
  first report; a simulator run keeps going), and each cycle is reported once.
* **Recursion** (``check_deadlock``): the same class acquired again by a blocking acquisition,
  unless it is a recursive read after a read.
* **Unlock imbalance** (``print_unlock_imbalance_bug``): a release of a lock the task does not
  hold is a finding, not a crash.

Reports keep lockdep's shape line for line (``print_circular_bug``,
``print_circular_lock_scenario``, ``print_deadlock_bug``, ``print_unlock_imbalance_bug``,
``lockdep_print_held_locks``) with these substitutions: no kernel ident line, no lock address,
no ``-{outer:inner}`` wait types and no ``stack backtrace`` section; where the kernel prints a
stack trace or ``at: func+off`` we print the simulated operation (``SimTask.op``) in which the
edge was first recorded or the lock acquired.  Usage bits ``{....}`` follow
``get_usage_chars()``: the simulator has no interrupts, so every acquisition is "with irqs
enabled, not in irq context", which lockdep prints as ``+`` in the write column (ever acquired
exclusive) and in the read column (ever acquired shared), for hardirq then softirq:
a mutex shows ``{+.+.}``, an rwsem used both ways ``{++++}``.

:class:`ExpectedOrder` is a declared lock order (the ``mm/rmap.c`` header order ships as
``mm/rmap_lock_order.toml``) checked against the edges a run actually took.
"""

from __future__ import annotations

import itertools
import tomllib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

__all__ = [
    "DEP_EN",
    "DEP_ER",
    "DEP_SN",
    "DEP_SR",
    "DepEdge",
    "ExpectedOrder",
    "Finding",
    "OrderChecker",
    "OrderViolation",
    "dep_names",
    "split_subclass",
]

# lock_list::dep bits, numbered as the kernel's DEP_*_BIT: bit 0 of the index is "prev is
# exclusive" (read == 0), bit 1 is "next is non-recursive" (read != 2).
DEP_SR: Final = 1 << 0
DEP_ER: Final = 1 << 1
DEP_SN: Final = 1 << 2
DEP_EN: Final = 1 << 3
_DEP_ORDER: Final = ((DEP_ER, "ER"), (DEP_EN, "EN"), (DEP_SR, "SR"), (DEP_SN, "SN"))

_SEP_CHAIN: Final = "       "  # stack_trace_print(..., spaces=6): "%*c" with 1 + 6 blanks


def calc_dep(prev_read: int, next_read: int) -> int:
    """``calc_dep()``: the one dependency-type bit of ``prev -> next``."""
    return 1 << ((prev_read == 0) + ((next_read != 2) << 1))


def dep_names(dep: int) -> list[str]:
    """The dependency types in a ``dep`` mask, e.g. ``["EN", "SN"]``."""
    return [name for bit, name in _DEP_ORDER if dep & bit]


def split_subclass(key: str) -> tuple[str, int]:
    """``"mm->mmap_lock/1"`` -> ``("mm->mmap_lock", 1)``; a key without a subclass -> ``(key, 0)``."""
    name, sep, sub = key.rpartition("/")
    if sep and name and sub.isdigit():
        return name, int(sub)
    return key, 0


@dataclass(slots=True)
class _Held:
    """``struct held_lock``: one entry of a task's held-lock stack."""

    key: str
    instance: str
    read: int
    trylock: bool
    where: str


@dataclass(slots=True)
class _Edge:
    """``struct lock_list`` in ``prev``'s ``locks_after``: the dependency ``prev -> next``."""

    prev: str
    next: str
    dep: int
    where: str  # the operation in which the edge was first recorded (lockdep's ->trace)
    task: str  # "name/tid" of the task that first recorded it
    modes: set[tuple[int, int]] = field(default_factory=set)  # (prev read, next read) seen
    count: int = 0


class DepEdge(NamedTuple):
    """An edge with the (held read, acquired read) modes it was taken in, for :meth:`ExpectedOrder.check`."""

    prev: str
    next: str
    modes: tuple[tuple[int, int], ...]


@dataclass
class Finding:
    """One report: ``kind`` is ``"circular"``, ``"recursive"`` or ``"bad_unlock"``.

    ``text`` is rendered when the problem is detected (it shows the held locks at that moment);
    ``hits`` counts how often the same problem was seen again (reported once, like lockdep).
    """

    kind: str
    task: str
    classes: tuple[str, ...]
    where: str
    text: str
    hits: int = 1

    def render(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "task": self.task, "classes": list(self.classes),
                "where": self.where, "hits": self.hits, "report": self.text}


class OrderChecker:
    """The validator: held-lock stacks, the dependency graph, findings.

    ``expected``: a declared order whose violations :meth:`to_dict` includes.
    """

    def __init__(self, expected: ExpectedOrder | None = None) -> None:
        self.expected = expected
        self.findings: list[Finding] = []
        self.acquisitions = 0
        self._held: dict[int, list[_Held]] = {}
        self._names: dict[int, str] = {}
        self._usage: dict[str, list[bool]] = {}  # key -> [ever exclusive, ever shared]
        self._edges: dict[tuple[str, str], _Edge] = {}
        self._after: dict[str, list[_Edge]] = {}  # locks_after, in recording order
        self._seen: dict[tuple[str, tuple[str, ...]], Finding] = {}

    # -- the hooks the lock models call --------------------------------------------------------

    def acquire(self, task_id: int, task_name: str, lock_class: str, *, read: int, trylock: bool,
                where: str, instance: str) -> None:
        """``lock_acquire()``: ``read`` 0 exclusive, 1 non-recursive read, 2 recursive read."""
        if read not in (0, 1, 2):
            raise ValueError(f"{lock_class}: read must be 0, 1 or 2, got {read}")
        self.acquisitions += 1
        self._names[task_id] = task_name
        usage = self._usage.get(lock_class)
        if usage is None:
            usage = self._usage[lock_class] = [False, False]
        usage[1 if read else 0] = True  # mark_usage() runs before validate_chain()
        stack = self._held.get(task_id)
        if stack is None:
            stack = self._held[task_id] = []
        new = _Held(lock_class, instance, read, trylock, where)
        if not trylock and stack:
            self._validate(task_id, task_name, stack, new)
        stack.append(new)

    def release(self, task_id: int, lock_class: str, *, instance: str, task_name: str | None = None,
                where: str | None = None) -> None:
        """``lock_release()``: pop the task's entry for this lock; report an imbalance if none."""
        stack = self._held.get(task_id)
        if stack:
            for i in range(len(stack) - 1, -1, -1):
                held = stack[i]
                if held.key == lock_class and held.instance == instance:
                    del stack[i]
                    return
        name = task_name if task_name is not None else self._names.get(task_id, "?")
        self._bad_unlock(task_id, name, lock_class, where if where is not None else "(unknown)")

    def downgrade(self, task_id: int, lock_class: str, *, instance: str, task_name: str | None = None,
                  where: str | None = None) -> None:
        """``lock_downgrade()`` (``downgrade_write``): the held entry becomes a reader (read=1).

        No dependency is added: the lock is held all along.  Downgrading a lock not held is an
        unlock imbalance, as in ``__lock_downgrade``.
        """
        for held in reversed(self._held.get(task_id, [])):
            if held.key == lock_class and held.instance == instance:
                held.read = 1
                usage = self._usage.get(lock_class)
                if usage is not None:
                    usage[1] = True
                return
        name = task_name if task_name is not None else self._names.get(task_id, "?")
        self._bad_unlock(task_id, name, lock_class, where if where is not None else "(unknown)")

    # -- queries ------------------------------------------------------------------------------

    def held(self, task_id: int) -> list[str]:
        """The classes a task holds, outermost first."""
        return [h.key for h in self._held.get(task_id, [])]

    def edges(self) -> list[tuple[str, str]]:
        """Every dependency recorded, as (held, acquired) class keys (subclass kept), sorted."""
        return sorted(self._edges)

    def dep_edges(self) -> list[DepEdge]:
        """:meth:`edges` with the read modes each was taken in (for ``write_only`` declarations)."""
        return [DepEdge(e.prev, e.next, tuple(sorted(e.modes)))
                for _, e in sorted(self._edges.items())]

    def order_violations(self) -> list[OrderViolation]:
        return self.expected.check(self.dep_edges()) if self.expected is not None else []

    def counts(self) -> dict[str, int]:
        kinds = {"circular": 0, "recursive": 0, "bad_unlock": 0}
        for f in self.findings:
            kinds[f.kind] += 1
        return {"acquisitions": self.acquisitions, "classes": len(self._usage),
                "edges": len(self._edges), **kinds}

    def to_dict(self) -> dict[str, Any]:
        """The result-record form: counts, edges with their types, findings, order violations."""
        out: dict[str, Any] = {
            "counts": self.counts(),
            "edges": [{"from": e.prev, "to": e.next, "types": dep_names(e.dep),
                       "first_where": e.where, "first_task": e.task, "count": e.count}
                      for _, e in sorted(self._edges.items())],
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.expected is not None:
            out["order_source"] = self.expected.source
            out["order_violations"] = [v.to_dict() for v in self.order_violations()]
        return out

    # -- validation ------------------------------------------------------------------------------

    def _validate(self, tid: int, task_name: str, stack: list[_Held], new: _Held) -> None:
        # check_deadlock(): the same class already held, unless read-after-read recursion.
        for prev in stack:
            if prev.key == new.key and not (new.read == 2 and prev.read):
                self._recursive(tid, task_name, stack, prev, new)
                break
        # check_prevs_add(), nearest held lock first (every held lock: see the module docstring).
        for i in range(len(stack) - 1, -1, -1):
            prev = stack[i]
            if prev.key == new.key:
                continue
            pair = (prev.key, new.key)
            dep = calc_dep(prev.read, new.read)
            edge = self._edges.get(pair)
            if edge is not None and edge.dep & dep:
                # Already in the graph with this type: any strong cycle through it was
                # reported when the cycle's last edge was added.
                edge.modes.add((prev.read, new.read))
                edge.count += 1
                continue
            path = self._strong_path(new.key, new.read, prev.key, prev.read)
            if path is not None:
                self._circular(tid, task_name, stack, prev, new, path)
            if edge is None:
                edge = _Edge(prev.key, new.key, 0, new.where, f"{task_name}/{tid}")
                self._edges[pair] = edge
                self._after.setdefault(prev.key, []).append(edge)
            edge.dep |= dep
            edge.modes.add((prev.read, new.read))
            edge.count += 1

    def _strong_path(self, src: str, src_read: int, target: str, target_read: int) -> list[_Edge] | None:
        """``check_noncircular()``/``__bfs()``: shortest strong path ``src -> ... -> target``
        that conflicts with ``target`` held in mode ``target_read``, as a list of edges."""
        # bfs_init_root(): only_xr of the root is "next is a recursive reader", so that
        # prev -(xR)-> next followed by next -(Sx)-> ... is not taken for strong.
        start = (src, src_read == 2)
        parent: dict[tuple[str, bool], tuple[tuple[str, bool], _Edge] | None] = {start: None}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for edge in self._after.get(node[0], ()):
                dep = edge.dep
                if node[1]:  # only -(xR)-> so far: -(xR)-> -(Sx)-> is not strong
                    dep &= ~(DEP_SR | DEP_SN)
                if not dep:
                    continue
                only_xr = not dep & (DEP_SN | DEP_EN)
                state = (edge.next, only_xr)
                if state in parent or (only_xr and (edge.next, False) in parent):
                    continue  # (class, False) can go everywhere (class, True) can
                parent[state] = (node, edge)
                # hlock_conflict(): prev -> next is -(E*)->, or the path ends in -(*N)->.
                if edge.next == target and (target_read == 0 or not only_xr):
                    path: list[_Edge] = []
                    cur: tuple[str, bool] = state
                    link = parent[cur]
                    while link is not None:
                        path.append(link[1])
                        cur = link[0]
                        link = parent[cur]
                    path.reverse()
                    return path
                queue.append(state)
        return None

    # -- reports ------------------------------------------------------------------------------

    def _lock_name(self, key: str) -> str:
        """``print_lock_name()``: `` (name){usage}``."""
        write, shared = self._usage.get(key, (False, False))
        w = "+" if write else "."
        r = "+" if shared else "."
        return f" ({key}){{{w}{r}{w}{r}}}"

    def _print_lock(self, held: _Held) -> str:
        """``print_lock()`` without the address: `` (name){usage}, at: where``."""
        return f"{self._lock_name(held.key)}, at: {held.where}"

    def _held_locks(self, task: str, stack: Sequence[_Held]) -> list[str]:
        """``lockdep_print_held_locks()``."""
        if not stack:
            return [f"no locks held by {task}."]
        depth = len(stack)
        lines = [f"{depth} lock{'s' if depth > 1 else ''} held by {task}:"]
        lines += [f" #{i}: {self._print_lock(h)}" for i, h in enumerate(stack)]
        return lines

    def _again(self, kind: str, ident: tuple[str, ...]) -> bool:
        """Count a repeat of a reported problem; lockdep reports each once."""
        seen = self._seen.get((kind, ident))
        if seen is None:
            return False
        seen.hits += 1
        return True

    def _record(self, finding: Finding) -> None:
        self._seen[(finding.kind, finding.classes)] = finding
        self.findings.append(finding)

    def _circular(self, tid: int, task_name: str, stack: list[_Held], prev: _Held, new: _Held,
                  path: list[_Edge]) -> None:
        """``print_circular_bug()``: ``new`` (check_src) depends, through ``path``, on ``prev``."""
        cycle = [new.key] + [e.next for e in path]  # src -> ... -> target, closed by target -> src
        rot = cycle.index(min(cycle))
        ident = tuple(cycle[rot:] + cycle[:rot])
        if self._again("circular", ident):
            return
        task = f"{task_name}/{tid}"
        banner = "WARNING: possible circular locking dependency detected"
        lines = ["=" * len(banner), banner, "-" * len(banner),
                 f"{task} is trying to acquire lock:", self._print_lock(new),
                 "", "but task is already holding lock:", self._print_lock(prev),
                 "", "which lock already depends on the new lock.", "", "",
                 "the existing dependency chain (in reverse order) is:"]
        # print_circular_bug_entry(): from the target back to the root, deepest first.
        depth = len(path)
        for edge in reversed(path):
            lines += ["", f"-> #{depth}{self._lock_name(edge.next)}:", _SEP_CHAIN + edge.where]
            depth -= 1
        lines += ["", f"-> #0{self._lock_name(new.key)}:", _SEP_CHAIN + new.where]
        lines += ["", "other info that might help us debug this:", ""]
        # print_circular_lock_scenario(): parent is the class the root leads to first.
        parent = path[-2].next if len(path) > 1 else new.key
        if parent != new.key:
            lines += ["Chain exists of:", f"  {new.key} --> {parent} --> {prev.key}", ""]
        lines += [" Possible unsafe locking scenario:", "",
                  "       CPU0                    CPU1",
                  "       ----                    ----",
                  f"  {'rlock' if prev.read else 'lock'}({prev.key});",
                  f"                               lock({parent});",
                  f"                               lock({prev.key});",
                  f"  {'rlock' if new.read else 'lock'}({new.key});",
                  "", " *** DEADLOCK ***", ""]
        lines += self._held_locks(task, stack)
        self._record(Finding("circular", task, ident, new.where, "\n".join(lines) + "\n"))

    def _recursive(self, tid: int, task_name: str, stack: list[_Held], prev: _Held, new: _Held) -> None:
        """``print_deadlock_bug()``."""
        ident = (new.key,)
        if self._again("recursive", ident):
            return
        task = f"{task_name}/{tid}"
        banner = "WARNING: possible recursive locking detected"
        lines = ["=" * len(banner), banner, "-" * len(banner),
                 f"{task} is trying to acquire lock:", self._print_lock(new),
                 "", "but task is already holding lock:", self._print_lock(prev),
                 "", "other info that might help us debug this:",
                 " Possible unsafe locking scenario:", "",
                 "       CPU0", "       ----",
                 f"  lock({prev.key});", f"  lock({new.key});",
                 "", " *** DEADLOCK ***", "",
                 " May be due to missing lock nesting notation", ""]
        lines += self._held_locks(task, stack)
        self._record(Finding("recursive", task, ident, new.where, "\n".join(lines) + "\n"))

    def _bad_unlock(self, tid: int, task_name: str, key: str, where: str) -> None:
        """``print_unlock_imbalance_bug()``."""
        ident = (key,)
        if self._again("bad_unlock", ident):
            return
        task = f"{task_name}/{tid}"
        banner = "WARNING: bad unlock balance detected!"
        lines = ["=" * len(banner), banner, "-" * len(banner),
                 f"{task} is trying to release lock ({key}) at:", where,
                 "but there are no more locks to release!",
                 "", "other info that might help us debug this:"]
        lines += self._held_locks(task, self._held.get(tid, []))
        self._record(Finding("bad_unlock", task, ident, where, "\n".join(lines) + "\n"))


# -- the declared order ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderViolation:
    """An edge ``held -> acquired`` whose ``acquired`` is declared outer to ``held``.

    ``declared`` is the declared chain from ``acquired`` (outermost) down to ``held``.
    """

    held: str
    acquired: str
    declared: tuple[str, ...]
    source: str

    def render(self) -> str:
        return (f"lock order violation: {self.acquired} acquired while holding {self.held}, "
                f"but {self.source} orders {' > '.join(self.declared)} (outermost first)")

    def to_dict(self) -> dict[str, Any]:
        return {"held": self.held, "acquired": self.acquired, "declared": list(self.declared),
                "source": self.source}


_TOP_KEYS: Final = frozenset({"source", "level", "chain"})
_LEVEL_KEYS: Final = frozenset({"classes", "write_only", "note"})
_CHAIN_KEYS: Final = frozenset({"name", "levels", "note"})


class ExpectedOrder:
    """A declared lock order: chains of levels, outermost level first.

    Every class of a level is outer to every class of the next level of the same chain, and the
    relation is transitive across chains; classes of one level are unordered among themselves.
    A class in ``write_only`` binds only when it is held or taken exclusively (``vma_lock`` is
    ordered as ``vma_start_write()``; per-VMA readers only ever try).  The declared order must be
    acyclic.
    """

    def __init__(self, chains: Sequence[tuple[str, Sequence[Sequence[str]]]], *,
                 source: str = "the declared order", write_only: Iterable[str] = ()) -> None:
        self.source = source
        self.write_only = frozenset(write_only)
        self.chains = [(name, [list(level) for level in levels]) for name, levels in chains]
        inner: dict[str, list[str]] = {}
        for name, levels in self.chains:
            seen: set[str] = set()
            for level in levels:
                for cls in level:
                    if cls in seen:
                        raise ValueError(f"{source}: chain {name!r} names {cls!r} twice")
                    seen.add(cls)
                    inner.setdefault(cls, [])
            for outer_level, inner_level in itertools.pairwise(levels):
                for a in outer_level:
                    for b in inner_level:
                        if b not in inner[a]:
                            inner[a].append(b)
        self._inner = inner
        unknown = self.write_only - inner.keys()
        if unknown:
            raise ValueError(f"{source}: write_only names classes not in any level: {sorted(unknown)}")
        for cls in inner:
            loop = self.path(cls, cls)
            if loop is not None:
                raise ValueError(f"{source}: the declared order is cyclic: {' > '.join(loop)}")

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(self._inner)

    def path(self, outer: str, inner: str) -> list[str] | None:
        """The shortest declared chain ``outer > ... > inner`` (at least one step), or ``None``."""
        if outer not in self._inner:
            return None
        parent: dict[str, str] = {}
        queue = deque([outer])
        while queue:
            cls = queue.popleft()
            for nxt in self._inner[cls]:
                if nxt in parent:
                    continue
                parent[nxt] = cls
                if nxt == inner:
                    chain = [nxt, cls]
                    while chain[-1] != outer:
                        chain.append(parent[chain[-1]])
                    chain.reverse()
                    return chain
                queue.append(nxt)
        return None

    def is_outer(self, outer: str, inner: str) -> bool:
        """Whether ``outer`` is declared (transitively) outside ``inner``."""
        return outer != inner and self.path(outer, inner) is not None

    def check(self, edges: Iterable[tuple[str, str] | DepEdge]) -> list[OrderViolation]:
        """Edges ``A -> B`` (held A, acquired B) where B is declared outer to A.

        Subclasses are stripped (``ptl/1`` is ``ptl``); edges within one class are nesting, not
        order.  Plain pairs are taken as exclusive on both sides; :class:`DepEdge` modes let a
        ``write_only`` class ignore edges where it was only read-held or read-taken.
        """
        found: dict[tuple[str, str], OrderViolation] = {}
        for edge in edges:
            modes: Sequence[tuple[int, int]] = edge.modes if isinstance(edge, DepEdge) else ((0, 0),)
            held, _ = split_subclass(edge[0])
            acquired, _ = split_subclass(edge[1])
            if held == acquired or (held, acquired) in found:
                continue
            relevant = [(rh, ra) for rh, ra in modes
                        if (held not in self.write_only or rh == 0)
                        and (acquired not in self.write_only or ra == 0)]
            if not relevant:
                continue
            declared = self.path(acquired, held)
            if declared is not None:
                found[(held, acquired)] = OrderViolation(held, acquired, tuple(declared), self.source)
        return [found[k] for k in sorted(found)]

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str) -> ExpectedOrder:
        """Build from parsed TOML; errors name ``origin`` and the key path."""
        def fail(where: str, msg: str) -> ValueError:
            return ValueError(f"{origin}: {where}: {msg}")

        def class_list(value: Any, where: str) -> list[str]:
            if (not isinstance(value, list) or not value
                    or not all(isinstance(v, str) and v for v in value)):
                raise fail(where, f"expected a non-empty list of class names, got {value!r}")
            return list(value)

        extra = set(data) - _TOP_KEYS
        if extra:
            raise fail("top level", f"unknown key(s) {sorted(extra)}; allowed: {sorted(_TOP_KEYS)}")
        source = data.get("source", origin)
        if not isinstance(source, str):
            raise fail("source", f"expected a string, got {source!r}")
        raw_levels = data.get("level")
        if not isinstance(raw_levels, list) or not raw_levels:
            raise fail("level", "expected at least one [[level]] table")
        write_only: list[str] = []
        main: list[list[str]] = []
        for i, lvl in enumerate(raw_levels):
            where = f"level[{i}]"
            if not isinstance(lvl, dict):
                raise fail(where, "expected a table")
            extra = set(lvl) - _LEVEL_KEYS
            if extra:
                raise fail(where, f"unknown key(s) {sorted(extra)}; allowed: {sorted(_LEVEL_KEYS)}")
            classes = class_list(lvl.get("classes"), f"{where}.classes")
            if "write_only" in lvl:
                wo = class_list(lvl["write_only"], f"{where}.write_only")
                if not set(wo) <= set(classes):
                    raise fail(f"{where}.write_only", f"{wo!r} must name classes of this level")
                write_only += wo
            if not isinstance(lvl.get("note", ""), str):
                raise fail(f"{where}.note", "expected a string")
            main.append(classes)
        chains: list[tuple[str, Sequence[Sequence[str]]]] = [("main", main)]
        for i, ch in enumerate(data.get("chain", [])):
            where = f"chain[{i}]"
            if not isinstance(ch, dict):
                raise fail(where, "expected a table")
            extra = set(ch) - _CHAIN_KEYS
            if extra:
                raise fail(where, f"unknown key(s) {sorted(extra)}; allowed: {sorted(_CHAIN_KEYS)}")
            name = ch.get("name", where)
            if not isinstance(name, str):
                raise fail(f"{where}.name", f"expected a string, got {name!r}")
            levels = ch.get("levels")
            if not isinstance(levels, list) or len(levels) < 2:
                raise fail(f"{where}.levels", "expected a list of at least two levels")
            chains.append((name, [class_list(lv, f"{where}.levels[{j}]") for j, lv in enumerate(levels)]))
        try:
            return cls(chains, source=source, write_only=write_only)
        except ValueError as exc:
            raise ValueError(f"{origin}: {exc}") from None

    @classmethod
    def from_toml(cls, path: str | Path) -> ExpectedOrder:
        path = Path(path)
        with path.open("rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: {exc}") from None
        return cls.from_dict(data, origin=str(path))

    @classmethod
    def load_rmap_order(cls) -> ExpectedOrder:
        """The shipped ``mm/rmap.c`` header order, ``mm/rmap_lock_order.toml``."""
        from importlib.resources import files

        resource = files("mm").joinpath("rmap_lock_order.toml")
        data = tomllib.loads(resource.read_text(encoding="utf-8"))
        return cls.from_dict(data, origin="mm/rmap_lock_order.toml")
