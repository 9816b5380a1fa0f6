"""Lock-order hypotheses: order files in, the order a run implies out, orders merged.

An order file has the format of ``mm/rmap_lock_order.toml`` (documented at its top):
``[[level]]`` tables (the main chain, outermost first) and ``[[chain]]`` tables (further
orderings), checked against the edges a run took by :class:`concurrency.lockdep.ExpectedOrder`.

* :func:`load_order_file` validates a file with the scenario loader's messages
  (``file:line: key: message``, :class:`~workloads.scenario.ScenarioError`, exit status 2);
  :func:`expected_order_for` gives the order a scenario's ``lockdep.expected_order`` names
  (``"rmap"``, ``"none"`` or a path, relative to the scenario file).
* :func:`observed_steps` turns run records' dependencies into ordering steps, :func:`order_steps`
  a loaded order's declarations; :func:`emit_order` writes steps as an order file: the transitive
  reduction of the steps, one ``[[chain]]`` per remaining step annotated with how often and by
  which operations it was taken, grouped by level (a class's level is the length of the longest
  path of steps leading to it).  Steps in both directions between two classes (a cycle) are
  conflicts: they are reported and left out, so the emitted order stays acyclic and a run it was
  emitted from never violates it.
* Merging is the union of several sources' steps (:func:`merge_steps`), emitted the same way;
  the conflicts name the declarations on both sides.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from concurrency.lockdep import ExpectedOrder, OrderFileError, split_subclass
from mm.lock_order import RMAP_ORDER_FILE
from mm.lock_order import rmap_order as _shipped_rmap_order
from workloads.inputfile import ScenarioError, _Locator

__all__ = [
    "Conflict",
    "Emitted",
    "Step",
    "emit_order",
    "expected_order_for",
    "load_order_file",
    "load_order_spec",
    "merge_steps",
    "observed_steps",
    "order_steps",
    "rmap_order",
]

ORDER_KEYWORDS = ("rmap", "none")


def load_order_file(path: str | Path) -> ExpectedOrder:
    """Load and validate an order file; errors are :class:`ScenarioError` naming file, line and key."""
    shown = str(path)
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(shown, None, "", "no such order file (an order file has the format of "
                                             f"{RMAP_ORDER_FILE}; or use 'rmap' or 'none')")
    from workloads.inputfile import read_text_file

    text = read_text_file(p, shown, f"an order file in {RMAP_ORDER_FILE}'s format")  # not text: bad input
    try:
        return ExpectedOrder.from_text(text, origin=shown, line_of=_Locator(text).line_of)
    except OrderFileError as exc:
        raise ScenarioError(exc.file, exc.line, exc.key, exc.message) from None


def rmap_order() -> ExpectedOrder:
    """The shipped mm/rmap.c order, its declarations with line numbers."""
    return _shipped_rmap_order(line_of=lambda text: _Locator(text).line_of)


def load_order_spec(spec: str | None, base: str | Path | None = None) -> ExpectedOrder | None:
    """``"rmap"``, ``"none"``/None, or an order file's path (relative to ``base`` when given)."""
    if spec is None or spec == "none":
        return None
    if spec == "rmap":
        return rmap_order()
    path = Path(spec)
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return load_order_file(path)


class OrderSpec(Protocol):
    """What :func:`expected_order_for` reads of a ``workloads.scenario.Scenario``."""

    @property
    def order_path(self) -> str | None: ...
    @property
    def expected_order(self) -> str | None: ...
    @property
    def source(self) -> str: ...


def expected_order_for(scenario: OrderSpec) -> ExpectedOrder | None:
    """The declared order a scenario's run is checked against (``scenario.order_path`` when the
    loader resolved a file, else ``expected_order`` relative to the scenario's folder)."""
    if scenario.order_path is not None:
        return load_order_file(scenario.order_path)
    return load_order_spec(scenario.expected_order, Path(scenario.source).parent)


# -- steps: the orderings a source states ------------------------------------------------------------


@dataclass
class Step:
    """``outer > inner``: declared or observed, how often and by which operations it was taken,
    where it comes from."""

    count: int = 0
    taken: dict[str, int] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    # Observed steps: the (outer read, inner read) modes they were taken in (lockdep's read
    # values, 0 = exclusive); empty for a declared step, which always binds.
    modes: set[tuple[int, int]] = field(default_factory=set)
    declared: bool = False

    def binds(self, outer: str, inner: str, write_only: frozenset[str] | set[str]) -> bool:
        """Whether the step orders anything when ``write_only`` classes bind only exclusively."""
        if self.declared or not self.modes:
            return True
        return any((outer not in write_only or pr == 0) and (inner not in write_only or nr == 0)
                   for pr, nr in self.modes)

    def add(self, count: int, taken: Mapping[str, int], source: str) -> None:
        self.count += count
        for op, n in taken.items():
            self.taken[op] = self.taken.get(op, 0) + int(n)
        if source not in self.sources:
            self.sources.append(source)


Steps = dict[tuple[str, str], Step]


def observed_steps(runs: Iterable[Mapping[str, Any]], steps: Steps | None = None) -> Steps:
    """The dependencies of run records (their ``lockdep.deps``) as steps between classes:
    subclasses stripped, nesting within a class left out."""
    out: Steps = {} if steps is None else steps
    for run in runs:
        lockdep = run.get("lockdep") or {}
        label = f"{run.get('scenario', '?')} under {run.get('variant') or run.get('design', '?')}"
        for dep in lockdep.get("deps", []):
            a, _ = split_subclass(str(dep["from"]))
            b, _ = split_subclass(str(dep["to"]))
            if a != b:
                step = out.setdefault((a, b), Step())
                step.add(int(dep.get("count", 0)), dep.get("ops", {}), label)
                step.modes.update((int(pr), int(nr)) for pr, nr in dep.get("modes", [[0, 0]]))
    return out


def order_steps(order: ExpectedOrder, steps: Steps | None = None) -> Steps:
    """A loaded order's declared steps, each with where it is declared; an emitted chain's
    ``count`` and ``taken`` come along."""
    out: Steps = {} if steps is None else steps
    single: dict[tuple[str, str], Mapping[str, Any]] = {}
    for (_, levels), chain_info in zip(order.chains, order.chain_info, strict=True):
        if len(levels) == 2 and len(levels[0]) == 1 and len(levels[1]) == 1:
            single[(levels[0][0], levels[1][0])] = chain_info
    for pair, where in order.steps.items():
        info: Mapping[str, Any] = single.get(pair, {})
        step = out.setdefault(pair, Step())
        step.add(int(info.get("count", 0)), info.get("taken", {}), where)
        step.declared = True
    return out


def merge_steps(sources: Sequence[Steps]) -> Steps:
    """The union of several sources' steps (counts and operations added)."""
    out: Steps = {}
    for steps in sources:
        for pair, step in steps.items():
            merged = out.setdefault(pair, Step())
            for src in step.sources:
                merged.add(0, {}, src)
            merged.add(step.count, step.taken, step.sources[0] if step.sources else "?")
            merged.modes |= step.modes
            merged.declared = merged.declared or step.declared
    return out


# -- emitting ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """Classes ordered both ways (a cycle of steps): the steps, each with its sources."""

    classes: tuple[str, ...]
    steps: tuple[tuple[str, str, tuple[str, ...]], ...]

    def render(self) -> str:
        parts = "; ".join(f"{a} > {b} ({', '.join(src)})" for a, b, src in self.steps)
        return f"conflict: {', '.join(self.classes)} are ordered both ways: {parts}"


@dataclass
class Emitted:
    """An emitted order: its text and what went into it."""

    text: str
    levels: list[list[str]]
    kept: list[tuple[str, str]]
    implied: list[tuple[str, str]]
    conflicts: list[Conflict]


def _sccs(nodes: Sequence[str], succ: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), deterministic for sorted input."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            nexts = succ.get(node, ())
            if i < len(nexts):
                work.append((node, i + 1))
                nxt = nexts[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                out.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def _q(text: str) -> str:
    """A TOML basic string."""
    return json.dumps(text, ensure_ascii=False)


def emit_order(steps: Steps, *, source: str, header: Sequence[str] = (),
               write_only: Iterable[str] = ()) -> Emitted:
    """Steps as an order file (see the module docstring).  ``write_only`` classes keep that mark,
    and an observed step that never held or took one of them exclusively orders nothing (it is
    left out and listed)."""
    wo = set(write_only)
    loose = sorted(pair for pair, step in steps.items() if not step.binds(*pair, wo))
    left_out = set(loose)
    steps = {pair: step for pair, step in steps.items() if pair not in left_out}
    nodes = sorted({c for pair in steps for c in pair})
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in sorted(steps):
        succ[a].append(b)
    comp_of: dict[str, int] = {}
    conflicts: list[Conflict] = []
    for i, comp in enumerate(_sccs(nodes, succ)):
        for c in comp:
            comp_of[c] = i
        if len(comp) > 1:
            members = set(comp)
            inside = tuple((a, b, tuple(steps[(a, b)].sources)) for a, b in sorted(steps)
                           if a in members and b in members)
            conflicts.append(Conflict(tuple(comp), inside))
    conflicts.sort(key=lambda c: c.classes)
    dag = {n: [b for b in succ[n] if comp_of[b] != comp_of[n]] for n in nodes}
    # Topological order (Kahn, smallest name first), then each class's descendants and level
    # (the longest path of steps leading to it).
    indeg = dict.fromkeys(nodes, 0)
    for a in nodes:
        for b in dag[a]:
            indeg[b] += 1
    ready = sorted(n for n in nodes if indeg[n] == 0)
    topo: list[str] = []
    while ready:
        n = ready.pop(0)
        topo.append(n)
        for b in dag[n]:
            indeg[b] -= 1
            if indeg[b] == 0:
                ready.append(b)
                ready.sort()
    below: dict[str, set[str]] = {}
    for n in reversed(topo):
        below[n] = set(dag[n]).union(*(below[b] for b in dag[n]))
    level = dict.fromkeys(nodes, 0)
    for n in topo:
        for b in dag[n]:
            level[b] = max(level[b], level[n] + 1)
    kept: list[tuple[str, str]] = []
    implied: list[tuple[str, str]] = []
    for a in nodes:
        for b in dag[a]:
            if any(b in below[w] for w in dag[a] if w != b):
                implied.append((a, b))
            else:
                kept.append((a, b))
    nlevels = max(level.values(), default=-1) + 1
    levels = [[n for n in nodes if level[n] == i] for i in range(nlevels)]
    lines = [*(f"# {h}" if h else "#" for h in header)]
    lines += [
        "# Format: mm/rmap_lock_order.toml's.  Each [[chain]] is one step of the transitive reduction",
        "# (outer > inner), with how often it was taken (count) and by which operations (taken).",
        "# A class's level is the length of the longest path of steps leading to it.  Edit it and",
        "# check runs against it: rmapsim lockdep SCENARIO --order FILE",
        "",
        f"source = {_q(source)}",
        "",
        "# Levels:",
    ]
    lines += [f"#   {i}: {', '.join(lv)}" for i, lv in enumerate(levels)]
    if conflicts:
        lines += ["#", "# Not ordered: classes ordered both ways (a cycle of steps):"]
        lines += [f"#   {c.render()}" for c in conflicts]
    if loose:
        lines += ["#", "# Left out: observed only with a write_only class held or taken for read:"]
        lines += [f"#   {a} > {b}" for a, b in loose]
    by_outer: dict[str, list[tuple[str, str]]] = {}
    for a, b in implied:
        by_outer.setdefault(a, []).append((a, b))
    kept_by_level: dict[int, list[tuple[str, str]]] = {}
    for a, b in kept:
        kept_by_level.setdefault(level[a], []).append((a, b))
    for i in range(nlevels):
        group = sorted(kept_by_level.get(i, []), key=lambda p: (level[p[1]], p))
        if not group and not any(by_outer.get(a) for a in levels[i]):
            continue
        lines += ["", f"# -- level {i}: {', '.join(levels[i])} " + "-" * max(3, 60 - len(', '.join(levels[i])))]
        for a, b in group:
            step = steps[(a, b)]
            lines += ["", "[[chain]]", f"name = {_q(f'{a} > {b}')}", f"levels = [[{_q(a)}], [{_q(b)}]]"]
            marks = sorted(c for c in (a, b) if c in wo)
            if marks:
                lines.append(f"write_only = [{', '.join(_q(c) for c in marks)}]")
            if step.count:
                lines.append(f"count = {step.count}")
            if step.taken:
                taken = sorted(step.taken.items(), key=lambda kv: (-kv[1], kv[0]))
                lines.append("taken = {" + ", ".join(f"{_q(op)} = {n}" for op, n in taken) + "}")
            if step.sources:
                lines.append(f"note = {_q('from ' + '; '.join(step.sources))}")
        for a in levels[i]:
            for _, b in by_outer.get(a, []):
                step = steps[(a, b)]
                ops = ", ".join(f"{op} {n}" for op, n in sorted(step.taken.items(), key=lambda kv: (-kv[1], kv[0])))
                lines.append(f"# implied: {a} > {b} (through other steps)"
                             + (f", taken {step.count} times" if step.count else "") + (f": {ops}" if ops else ""))
    if not kept:
        lines += ["", "# No ordering between different classes: every class on one level, unordered."]
        if nodes:
            lines += ["[[level]]", f"classes = [{', '.join(_q(n) for n in nodes)}]"]
    return Emitted("\n".join(lines) + "\n", levels, kept, implied, conflicts)
