"""The lockdep-style order checker, after kernel/locking/lockdep.c.

Lock models report every acquisition and release here (``SimLock._lockdep_acquire`` /
``_lockdep_release``) through the engine's instruments: a checker is attached with
``engine.add_instrument(checker)`` (concurrency/instrument.py).  What it mirrors, and
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
``mm/rmap_lock_order.toml``; a user's file has the same format) checked against the edges a run
actually took (workloads/lockorder.py loads and checks order files, with a scenario file's
errors).  Each declaration keeps where it was made (``file:line``) and each edge remembers,
per (held, acquired) read mode, the first task, operation and held-lock stack that took it, so a
violation names both declarations and who broke them.  :meth:`OrderChecker.graph_record` is what
``/proc/lockdep`` and ``/proc/lockdep_stats`` show (reports/lockgraph.py prints and draws it):
classes with usage bits and acquisitions, every dependency with its types, modes, count and the
operations that took it, the cycles found, and totals.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, NamedTuple, TypedDict

from mypy_extensions import mypyc_attr

from concurrency.instrument import Instrument

if TYPE_CHECKING:
    from concurrency.engine import SimTask
    from records.result import JsonObject

__all__ = [
    "DEP_EN",
    "DEP_ER",
    "DEP_SN",
    "DEP_SR",
    "DepEdge",
    "ExpectedOrder",
    "Finding",
    "OrderChecker",
    "OrderDeclError",
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


def _rechain(stack: list[_Held], start: int) -> None:
    """Rebuild the chain keys of ``stack[start:]`` (an entry below changed or went away), as
    lockdep's reacquire of the held locks above a released one does."""
    below = stack[start - 1].chain if start else None
    for held in stack[start:]:
        held.chain = below = (below, held.key, held.read)


# A chain key: (the key of the chain below, or None at the bottom; class; read).  The first item
# is only hashed and compared, never unpacked.
_ChainKey = tuple[object, str, int]


@dataclass(slots=True)
class _Held:
    """``struct held_lock``: one entry of a task's held-lock stack."""

    key: str
    instance: str
    read: int
    trylock: bool
    where: str
    # lookup_chain_cache()'s chain key: (the chain below this entry, key, read), built one lock at a
    # time as iterate_chain_key() builds the kernel's hash (kept whole here: no collisions to check).
    chain: _ChainKey | None = None


class _Taken(NamedTuple):
    """Who took an edge, where, holding what (``(class, read, where)`` outermost first, the
    acquired lock last)."""

    task: str
    where: str
    stack: tuple[tuple[str, int, str], ...]


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
    ops: dict[str, int] = field(default_factory=dict)  # operation -> times the edge was taken in it
    # (prev read, next read) -> the first time the edge was taken in that mode, for order reports
    first: dict[tuple[int, int], _Taken] = field(default_factory=dict)


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

    def to_dict(self) -> JsonObject:
        return {"kind": self.kind, "task": self.task, "classes": list(self.classes),
                "where": self.where, "hits": self.hits, "report": self.text}


class OrderChecker(Instrument):
    """The validator: held-lock stacks, the dependency graph, findings.

    ``expected``: a declared order whose violations :meth:`to_dict` includes.  An instrument
    (``engine.add_instrument(checker)``): the lock models' ``on_lock_*`` events arrive as
    :meth:`acquire`, :meth:`release` and :meth:`downgrade`, which tests may also call directly.
    """

    def __init__(self, expected: ExpectedOrder | None = None, *, chain_cache: bool = True) -> None:
        self.expected = expected
        self.use_chain_cache = chain_cache  # off: every acquisition validated in full (the tests' reference)
        self.findings: list[Finding] = []
        self.acquisitions = 0
        self._held: dict[int, list[_Held]] = {}
        self._names: dict[int, str] = {}
        self._usage: dict[str, list[bool]] = {}  # key -> [ever exclusive, ever shared]
        self._ops: dict[str, int] = {}  # key -> acquisitions (lockdep's debug_class_ops)
        self._chains: set[tuple[str, ...]] = set()  # distinct held-lock chains (lockdep_stats)
        self.max_depth = 0  # deepest held-lock stack (lockdep_stats "max locking depth")
        self._edges: dict[tuple[str, str], _Edge] = {}
        self._after: dict[str, list[_Edge]] = {}  # locks_after, in recording order
        self._seen: dict[tuple[str, tuple[str, ...]], Finding] = {}
        # lookup_chain_cache(): a held-lock chain already validated (by its _Held.chain) -> the edges
        # its validation walked, nearest held lock first.  Validating it again could only count them.
        self._chain_cache: dict[_ChainKey | None, list[_Edge]] = {}

    # -- the instrument's hooks (concurrency/instrument.py) -------------------------------------

    def on_lock_acquire(self, task: SimTask, lock_class: str, read: int, trylock: bool, instance: str) -> None:
        self.acquire(task.tid, task.name, lock_class, read=read, trylock=trylock, where=task.op,
                     instance=instance)

    def on_lock_release(self, task: SimTask, lock_class: str, instance: str) -> None:
        self.release(task.tid, lock_class, instance=instance, task_name=task.name, where=task.op)

    def on_lock_downgrade(self, task: SimTask, lock_class: str, instance: str) -> None:
        self.downgrade(task.tid, lock_class, instance=instance, task_name=task.name, where=task.op)

    # -- lockdep's entry points -------------------------------------------------------------------

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
            self._ops[lock_class] = 0
        usage[1 if read else 0] = True  # mark_usage() runs before validate_chain()
        self._ops[lock_class] += 1
        stack = self._held.get(task_id)
        if stack is None:
            stack = self._held[task_id] = []
        new = _Held(lock_class, instance, read, trylock, where, (stack[-1].chain if stack else None, lock_class, read))
        if not trylock and stack:
            edges = self._chain_cache.get(new.chain)
            if edges is None:
                self._validate(task_id, task_name, stack, new)
            else:  # validate_chain() skipped, as after a chain-cache hit; the edges are counted
                for edge in edges:
                    edge.count += 1
                    ops = edge.ops
                    ops[where] = ops.get(where, 0) + 1
        stack.append(new)
        if len(stack) > self.max_depth:
            self.max_depth = len(stack)

    def release(self, task_id: int, lock_class: str, *, instance: str, task_name: str | None = None,
                where: str | None = None) -> None:
        """``lock_release()``: pop the task's entry for this lock; report an imbalance if none."""
        stack = self._held.get(task_id)
        if stack:
            for i in range(len(stack) - 1, -1, -1):
                held = stack[i]
                if held.key == lock_class and held.instance == instance:
                    del stack[i]
                    if i < len(stack):  # released out of order: the chains above it changed
                        _rechain(stack, i)
                    return
        name = task_name if task_name is not None else self._names.get(task_id, "?")
        self._bad_unlock(task_id, name, lock_class, where if where is not None else "(unknown)")

    def downgrade(self, task_id: int, lock_class: str, *, instance: str, task_name: str | None = None,
                  where: str | None = None) -> None:
        """``lock_downgrade()`` (``downgrade_write``): the held entry becomes a reader (read=1).

        No dependency is added: the lock is held all along.  Downgrading a lock not held is an
        unlock imbalance, as in ``__lock_downgrade``.
        """
        stack = self._held.get(task_id, [])
        for i in range(len(stack) - 1, -1, -1):
            held = stack[i]
            if held.key == lock_class and held.instance == instance:
                held.read = 1
                _rechain(stack, i)
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
        """Violations of the declared order, each with who first took the edge, in which
        operation, and the held-lock stack at that moment (``print_lock`` lines)."""
        if self.expected is None:
            return []
        out = []
        for v in self.expected.check(self.dep_edges()):
            edge = self._edges.get(v.edge)
            taken = edge.first.get(v.mode) if edge is not None else None
            if taken is None:
                out.append(v)
                continue
            stack = tuple(f"{self._lock_name(key)}{' (read)' if read else ''}, at: {where}"
                          for key, read, where in taken.stack)
            out.append(replace(v, task=taken.task, op=taken.where, stack=stack))
        return out

    def usage(self, key: str) -> str:
        """``get_usage_chars()`` of a class: ``+.+.`` (see the module docstring)."""
        write, shared = self._usage.get(key, (False, False))
        w = "+" if write else "."
        r = "+" if shared else "."
        return f"{w}{r}{w}{r}"

    def cycles(self) -> list[list[str]]:
        """Each circular finding's cycle of classes, in the order the edges run."""
        return [list(f.classes) for f in self.findings if f.kind == "circular"]

    def stats(self) -> dict[str, int]:
        """The ``/proc/lockdep_stats`` figures the simulator has (see :meth:`graph_record`)."""
        succ: dict[str, set[str]] = {}
        for a, b in self._edges:
            succ.setdefault(a, set()).add(b)
        reach = 0  # dependencies implied through others (lockdep's "indirect dependencies")
        for src in succ:
            seen: set[str] = set()
            todo = list(succ[src])
            while todo:
                cls = todo.pop()
                if cls in seen:
                    continue
                seen.add(cls)
                todo.extend(succ.get(cls, ()))
            seen.discard(src)
            reach += len(seen)
        counts = self.counts()
        return {"lock-classes": len(self._usage), "direct dependencies": len(self._edges),
                "indirect dependencies": reach - len(self._edges), "dependency chains": len(self._chains),
                "max locking depth": self.max_depth, "acquisitions": self.acquisitions,
                "circular": counts["circular"], "recursive": counts["recursive"],
                "bad_unlock": counts["bad_unlock"]}

    def graph_record(self) -> JsonObject:
        """The dependency graph for a result record (what ``/proc/lockdep`` lists): every class
        with its usage bits and acquisitions; every dependency with its types, how often it was
        taken and by which operations; the cycles; the lockdep_stats totals.  (The ``list()`` and
        ``dict()`` copies type the parts as JSON: a ``list[str]`` is not a ``list[JsonValue]``.)"""
        return {
            "classes": [{"name": key, "usage": self.usage(key), "acquisitions": self._ops[key]}
                        for key in sorted(self._usage)],
            "deps": [{"from": e.prev, "to": e.next, "types": list(dep_names(e.dep)), "count": e.count,
                      "modes": [list(m) for m in sorted(e.modes)], "ops": dict(sorted(e.ops.items()))}
                     for _, e in sorted(self._edges.items())],
            "cycles": [list(cycle) for cycle in self.cycles()],
            "stats": dict(self.stats()),
        }

    def counts(self) -> dict[str, int]:
        kinds = {"circular": 0, "recursive": 0, "bad_unlock": 0}
        for f in self.findings:
            kinds[f.kind] += 1
        return {"acquisitions": self.acquisitions, "classes": len(self._usage),
                "edges": len(self._edges), **kinds}

    def to_dict(self) -> JsonObject:
        """The result-record form: counts, edges with their types, findings, order violations."""
        out: JsonObject = {
            "counts": dict(self.counts()),
            "edges": [{"from": e.prev, "to": e.next, "types": list(dep_names(e.dep)),
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
        recursive = False
        for prev in stack:
            if prev.key == new.key and not (new.read == 2 and prev.read):
                self._recursive(tid, task_name, stack, prev, new)
                recursive = True
                break
        walked: list[_Edge] = []
        # lookup_chain_cache(): only counted here (lockdep_stats "dependency chains").
        self._chains.add((*(h.key for h in stack), new.key))
        # check_prevs_add(), nearest held lock first (every held lock: see the module docstring).
        where = new.where
        for i in range(len(stack) - 1, -1, -1):
            prev = stack[i]
            if prev.key == new.key:
                continue
            pair = (prev.key, new.key)
            dep = calc_dep(prev.read, new.read)
            edge = self._edges.get(pair)
            if edge is None or not edge.dep & dep:
                # A new dependency or a new type of one: look for a strong cycle it closes.
                # (Already in the graph with this type: any strong cycle through it was
                # reported when the cycle's last edge was added.)
                path = self._strong_path(new.key, new.read, prev.key, prev.read)
                if path is not None:
                    self._circular(tid, task_name, stack, prev, new, path)
                if edge is None:
                    edge = _Edge(prev.key, new.key, 0, where, f"{task_name}/{tid}")
                    self._edges[pair] = edge
                    self._after.setdefault(prev.key, []).append(edge)
                edge.dep |= dep
            mode = (prev.read, new.read)
            if mode not in edge.modes:
                edge.modes.add(mode)
                edge.first[mode] = _Taken(f"{task_name}/{tid}", where, tuple(
                    (h.key, h.read, h.where) for h in (*stack, new)))
            edge.count += 1
            edge.ops[where] = edge.ops.get(where, 0) + 1
            walked.append(edge)
        # Cached once every edge has this chain's types and modes; a recursive report is repeated
        # (its hits counted) on every acquisition, so such a chain is validated every time.
        if not recursive and self.use_chain_cache:
            self._chain_cache[new.chain] = walked

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
        return f" ({key}){{{self.usage(key)}}}"

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


@mypyc_attr(native_class=False, allow_interpreted_subclasses=True)  # an exception: a plain class
class OrderDeclError(ValueError):
    """A declaration problem found while building an order, with the (chain, level) it is about."""

    def __init__(self, message: str, at: tuple[int, int]) -> None:
        super().__init__(message)
        self.at = at


@dataclass(frozen=True)
class OrderViolation:
    """An edge ``held -> acquired`` whose ``acquired`` is declared outer to ``held``.

    ``declared`` is the declared chain from ``acquired`` (outermost) down to ``held``;
    ``acquired_at`` / ``held_at`` say where each class is declared (``file:line``).  ``edge`` is
    the dependency as recorded (subclasses kept) and ``mode`` the (held, acquired) read values it
    was taken in; ``task``, ``op`` and ``stack`` (``print_lock`` lines, the acquired lock last)
    describe the first time it was taken so, when the checker saw it.
    """

    held: str
    acquired: str
    declared: tuple[str, ...]
    source: str
    held_at: str = ""
    acquired_at: str = ""
    edge: tuple[str, str] = ("", "")
    mode: tuple[int, int] = (0, 0)
    task: str = ""
    op: str = ""
    stack: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"lock order violation: {self.acquired} acquired while holding {self.held}, "
                 f"but {self.source} orders {' > '.join(self.declared)} (outermost first)"]
        if self.acquired_at or self.held_at:
            lines.append(f"  declared: {self.acquired} at {self.acquired_at or '?'}, "
                         f"{self.held} at {self.held_at or '?'}")
        if self.task:
            lines.append(f"  {self.task} took {self.edge[0]} -> {self.edge[1]} in {self.op}; its locks, "
                         "the one being acquired last:")
            lines += [f"   #{i}:{text}" for i, text in enumerate(self.stack)]
        return "\n".join(lines)

    def to_dict(self) -> JsonObject:
        return {"held": self.held, "acquired": self.acquired, "declared": list(self.declared),
                "source": self.source, "held_at": self.held_at, "acquired_at": self.acquired_at,
                "edge": list(self.edge), "mode": list(self.mode), "task": self.task, "op": self.op,
                "stack": list(self.stack)}


class ChainInfo(TypedDict, total=False):
    """A ``[[chain]]`` table's annotations, as the order file's loader checked them
    (``workloads/lockorder.py``)."""

    write_only: list[str]
    count: int  # how often the emitted edge was taken
    taken: dict[str, int]  # operation -> how often it took the edge


class ExpectedOrder:
    """A declared lock order: chains of levels, outermost level first.

    Every class of a level is outer to every class of the next level of the same chain, and the
    relation is transitive across chains; classes of one level are unordered among themselves.
    A class in ``write_only`` binds only when it is held or taken exclusively (``vma_lock`` is
    ordered as ``vma_start_write()``; per-VMA readers only ever try).  The declared order must be
    acyclic.

    ``where`` gives, per chain and level, where it is declared (``file:line``); it names the
    declarations in violations and errors.  ``chain_info`` keeps each chain's annotations from
    the file (``count``, ``taken``: how often and by which operations an emitted edge was taken).
    """

    def __init__(self, chains: Sequence[tuple[str, Sequence[Sequence[str]]]], *,
                 source: str = "the declared order", write_only: Iterable[str] = (),
                 where: Sequence[Sequence[str]] | None = None,
                 chain_info: Sequence[ChainInfo] | None = None, origin: str = "") -> None:
        self.source = source
        self.origin = origin  # the file it was loaded from, if any
        self.write_only = frozenset(write_only)
        self.chains = [(name, [list(level) for level in levels]) for name, levels in chains]
        self.chain_info: list[ChainInfo] = [info.copy() for info in chain_info] if chain_info is not None \
            else [{} for _ in self.chains]
        self.declared_at: dict[str, str] = {}  # class -> where it is first declared
        self.steps: dict[tuple[str, str], str] = {}  # (outer, inner) -> where first declared
        self._step_at: dict[tuple[str, str], tuple[int, int]] = {}
        inner: dict[str, list[str]] = {}
        for c, (name, levels) in enumerate(self.chains):
            seen: set[str] = set()
            for j, level in enumerate(levels):
                loc = where[c][j] if where is not None else f"{source}: chain {name!r} level {j}"
                for cls in level:
                    if cls in seen:
                        raise OrderDeclError(f"chain {name!r} names {cls!r} twice", (c, j))
                    seen.add(cls)
                    inner.setdefault(cls, [])
                    self.declared_at.setdefault(cls, loc)
            for j, (outer_level, inner_level) in enumerate(itertools.pairwise(levels), 1):
                loc = where[c][j] if where is not None else f"{source}: chain {name!r} level {j}"
                for a in outer_level:
                    for b in inner_level:
                        if b not in inner[a]:
                            inner[a].append(b)
                            self.steps[(a, b)] = loc
                            self._step_at[(a, b)] = (c, j)
        self._inner = inner
        unknown = self.write_only - set(inner)  # frozenset - dict_keys is a set at run time (mypyc checks)
        if unknown:
            raise ValueError(f"{source}: write_only names classes not in any level: {sorted(unknown)}")
        for cls in inner:
            loop = self.path(cls, cls)
            if loop is not None:
                raise OrderDeclError(f"the declared order is cyclic: {' > '.join(loop)}",
                                 self._step_at[(loop[-2], loop[-1])])

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
        ``write_only`` class ignore edges where it was only read-held or read-taken.  Each
        violation keeps the first recorded edge and mode that showed it.
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
                found[(held, acquired)] = OrderViolation(
                    held, acquired, tuple(declared), self.source,
                    held_at=self.declared_at.get(held, ""), acquired_at=self.declared_at.get(acquired, ""),
                    edge=(edge[0], edge[1]), mode=relevant[0])
        return [found[k] for k in sorted(found)]
