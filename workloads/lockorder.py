"""Lock-order hypotheses: order files in, the order a run implies out, orders merged.

An order file has the format of ``mm/rmap_lock_order.toml`` (documented at its top):
``[[level]]`` tables (the main chain, outermost first) and ``[[chain]]`` tables (further
orderings), checked against the edges a run took by :class:`concurrency.lockdep.ExpectedOrder`.

* :func:`load_order_file` validates a file with the scenario loader's machinery and messages
  (Param tables checked by workloads/inputfile.py's ``_Checker``: ``file:line: key: message`` with
  the allowed keys or values, :class:`~workloads.inputfile.ScenarioError`, exit status 2);
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
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from concurrency.input_error import spell
from concurrency.lockdep import ChainInfo, ExpectedOrder, OrderDeclError, split_subclass
from mm.lock_order import RMAP_ORDER_FILE, rmap_order_text
from workloads.actor_kinds import Param, as_list, param_int, param_str
from workloads.inputfile import ScenarioError, _Checker

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
        data: dict[str, object] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ScenarioError(shown, int(m.group(1)) if m else None, "", f"not valid TOML: {exc}") from None
    return order_from_data(data, shown, text)


# The order file's tables (mm/rmap_lock_order.toml documents the format at its top), checked as a
# scenario's are.  ``taken`` is a table of operation = count, checked beside them.
_ORDER_TOP = {
    "source": Param(str, "", "what the order is called in reports (default: the file's path)"),
    "level": Param(list, [], "the main chain: [[level]] tables, outermost first"),
    "chain": Param(list, [], "further orderings: [[chain]] tables"),
}
_LEVEL = {
    "classes": Param(list, None, "the lock classes of this level, unordered among themselves"),
    "write_only": Param(list, [], "classes of this level that bind only when held or taken exclusively"),
    "note": Param(str, "", "a comment"),
}
_CHAIN = {
    "name": Param(str, "", "the chain's name in violations (default: its key path)"),
    "levels": Param(list, None, "two or more levels (lists of classes), outermost first"),
    "note": Param(str, "", "a comment"),
    "write_only": Param(list, [], "classes of this chain that bind only when held or taken exclusively"),
    "count": Param(int, 0, "how often the step was taken (an emitted order's annotation)", 0, 2**63 - 1),
}
_TAKEN_HELP = "a table of operation = count, e.g. {fork = 12, munmap = 3}"


def order_from_data(data: Mapping[str, object], origin: str, text: str = "") -> ExpectedOrder:
    """An order file's parsed TOML, validated (``text`` gives the errors' lines) and built."""
    ck = _Checker(origin, text)

    def loc(path: list[str | int]) -> str:
        """Where a declaration is, as violations name it: ``file:line`` (else the key path)."""
        line = ck.locator.line_of(path)
        return f"{origin}:{line}" if line else f"{origin}: {ck.key(path)}"

    def classes(value: object, path: list[str | int], what: str) -> list[str]:
        names = as_list(ck.value(value, path, Param(list, None, what)), ".".join(map(str, path)))
        out = [n for n in names if isinstance(n, str) and n]
        if not names or len(out) != len(names):
            raise ck.fail(path, f"expected a non-empty list of class names, got {spell(value)}; allowed: "
                                "[\"class\", ...] (lock class names)")
        return out

    top = ck.table(data, [], _ORDER_TOP)
    source = param_str(top, "source") if "source" in data else origin
    raw_levels = as_list(top["level"], "level")
    raw_chains = as_list(top["chain"], "chain")
    if not (raw_levels or raw_chains):
        raise ck.fail(["level"], "expected at least one [[level]] or [[chain]] table")
    write_only: list[str] = []
    main: list[list[str]] = []
    main_where: list[str] = []
    for i, raw in enumerate(raw_levels):
        path: list[str | int] = ["level", i]
        lvl = ck.table(raw, path, _LEVEL)
        names = classes(lvl["classes"], [*path, "classes"], _LEVEL["classes"].help)
        if isinstance(raw, dict) and "write_only" in raw:
            wo = classes(lvl["write_only"], [*path, "write_only"], _LEVEL["write_only"].help)
            if not set(wo) <= set(names):
                raise ck.fail([*path, "write_only"], f"{spell(wo)} must name classes of this level; allowed: "
                                                     f"{', '.join(map(spell, names))}")
            write_only += wo
        main.append(names)
        main_where.append(loc([*path, "classes"]))
    chains: list[tuple[str, Sequence[Sequence[str]]]] = []
    where: list[list[str]] = []
    info: list[ChainInfo] = []
    paths: list[list[str | int]] = []  # the key path of each chain, for errors
    if main:
        chains.append(("main", main))
        where.append(main_where)
        info.append({})
        paths.append(["level"])
    for i, raw in enumerate(raw_chains):
        path = ["chain", i]
        given = raw if isinstance(raw, dict) else {}
        ch = ck.table({k: v for k, v in given.items() if k != "taken"} if isinstance(raw, dict) else raw, path, _CHAIN)
        name = param_str(ch, "name") if "name" in given else ck.key(path)
        levels = as_list(ch["levels"], "levels")
        if len(levels) < 2:
            raise ck.fail([*path, "levels"], f"expected a list of at least two levels, got {spell(levels)}")
        lists = [classes(lv, [*path, "levels"], _CHAIN["levels"].help) for lv in levels]
        notes: ChainInfo = {}
        if "write_only" in given:
            wo = classes(ch["write_only"], [*path, "write_only"], _CHAIN["write_only"].help)
            if not set(wo) <= {c for lv in lists for c in lv}:
                raise ck.fail([*path, "write_only"], f"{spell(wo)} must name classes of this chain")
            write_only += wo
            notes["write_only"] = wo
        if "count" in given:
            notes["count"] = param_int(ch, "count")
        if "taken" in given:
            taken = given["taken"]
            if not isinstance(taken, dict) or not all(
                    isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in taken.values()):
                raise ck.fail([*path, "taken"], f"expected {_TAKEN_HELP}, got {spell(taken)}")
            notes["taken"] = dict(taken)
        chains.append((name, lists))
        where.append([loc([*path, "levels"])] * len(lists))
        info.append(notes)
        paths.append(path)
    try:
        return ExpectedOrder(chains, source=source, write_only=write_only, where=where, chain_info=info,
                             origin=origin)
    except OrderDeclError as decl:  # a class named twice in a chain, or a cycle: at its (chain, level)
        c, j = decl.at
        at: list[str | int] = ["level", j, "classes"] if paths[c] == ["level"] else [*paths[c], "levels"]
        raise ck.fail(at, str(decl)) from None
    except ValueError as exc:
        raise ScenarioError(origin, None, "", str(exc)) from None


def rmap_order() -> ExpectedOrder:
    """The shipped mm/rmap.c order (``mm/rmap_lock_order.toml``), its declarations with line numbers."""
    text = rmap_order_text()
    return order_from_data(tomllib.loads(text), RMAP_ORDER_FILE, text)


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


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what}: {value!r} is not an integer")
    return value


def _table(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"{what}: {value!r} is not a table")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{what}: {value!r} is not a list")
    return list(value)


def _op_counts(value: object, what: str) -> dict[str, int]:
    """``{operation: count}`` (a dependency's ``ops``, a chain's ``taken``)."""
    return {str(op): _int(n, f"{what}.{op}") for op, n in _table(value, what).items()}


def observed_steps(runs: Iterable[Mapping[str, object]], steps: Steps | None = None) -> Steps:
    """The dependencies of run records (their ``lockdep.deps``) as steps between classes:
    subclasses stripped, nesting within a class left out."""
    out: Steps = {} if steps is None else steps
    for run in runs:
        lockdep = _table(run.get("lockdep") or {}, "lockdep")
        label = f"{run.get('scenario', '?')} under {run.get('variant') or run.get('design', '?')}"
        for dep in _list(lockdep.get("deps", []), "lockdep.deps"):
            dep = _table(dep, "lockdep.deps[]")
            a, _ = split_subclass(str(dep["from"]))
            b, _ = split_subclass(str(dep["to"]))
            if a != b:
                step = out.setdefault((a, b), Step())
                step.add(_int(dep.get("count", 0), "count"), _op_counts(dep.get("ops", {}), "ops"), label)
                for mode in _list(dep.get("modes", [[0, 0]]), "modes"):
                    pr, nr = _list(mode, "modes[]")
                    step.modes.add((_int(pr, "mode"), _int(nr, "mode")))
    return out


def order_steps(order: ExpectedOrder, steps: Steps | None = None) -> Steps:
    """A loaded order's declared steps, each with where it is declared; an emitted chain's
    ``count`` and ``taken`` come along."""
    out: Steps = {} if steps is None else steps
    single: dict[tuple[str, str], Mapping[str, object]] = {}
    for (_, levels), chain_info in zip(order.chains, order.chain_info, strict=True):
        if len(levels) == 2 and len(levels[0]) == 1 and len(levels[1]) == 1:
            single[(levels[0][0], levels[1][0])] = chain_info
    for pair, where in order.steps.items():
        info: Mapping[str, object] = single.get(pair, {})
        step = out.setdefault(pair, Step())
        step.add(_int(info.get("count", 0), "count"), _op_counts(info.get("taken", {}), "taken"), where)
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
