"""``rmapsim lockdep``: check runs against a lock-order hypothesis, emit the order they imply, merge
orders.

    rmapsim lockdep SCENARIO... [--design NAME[:SWITCH=VALUE,...]]... [--order FILE|rmap|none]
                    [--emit-order FILE] [--merge FILE...]

Each scenario runs every chosen design (or design variant: ``cow_context:walk_safety=ctx_rwsem``)
with the order checker; the results and reports go to ``OUT`` as for ``rmapsim run`` (plus
``lockdep.txt``, ``lockdep_stats.txt`` and ``lockgraph-<design>.svg``).  It prints, per run, the
lockdep reports and the violations of the declared order (``--order``, else the scenario's
``lockdep.expected_order``), and with more than one run a table of each run's order verdict beside
its lock wait.  ``--emit-order FILE`` writes the order the runs imply (workloads/lockorder.py),
merged with any ``--merge`` files; ``--merge`` alone merges order files (to ``--emit-order`` or
standard output).  Exit status 1 on a lockdep finding, an order violation or a merge conflict;
2 on bad input (an order file's errors name its file, line and key).
"""

from __future__ import annotations

import argparse
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from records.result import JsonObject, JsonValue, json_list, json_obj

if TYPE_CHECKING:
    from concurrency.lockdep import ExpectedOrder
    from rmapsim.runs import Subcommands
    from workloads.explore import Variant
    from workloads.scenario import Scenario

__all__ = ["add_parser", "cmd_lockdep"]

# One scenario, loaded and checked: the namespace its runs see, the scenario, its design variants.
_Prepared: TypeAlias = "tuple[argparse.Namespace, Scenario, list[Variant]]"


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser("lockdep", help="run with the order checker: check a lock-order hypothesis, emit the "
                                       "order runs imply, merge orders; exit 1 on an inversion")
    p.add_argument("scenario", nargs="*", help=".toml/.py files or built-in scenario names (see `rmapsim list`)")
    p.add_argument("--design", action="append", metavar="NAME[:SWITCH=VALUE,...]",
                   help="run only this design, optionally with switches, e.g. cow_context:walk_safety=ctx_rwsem "
                        "(repeatable: each is one run)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--cpus", type=int, help="override the scenario's CPU count")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario key (repeatable)")
    p.add_argument("--order", metavar="FILE|rmap|none",
                   help="check against this order file (mm/rmap_lock_order.toml's format) instead of the "
                        "scenario's lockdep.expected_order")
    p.add_argument("--emit-order", metavar="FILE",
                   help="write the order the runs imply (transitive reduction, by level, with counts and "
                        "operations), merged with any --merge files")
    p.add_argument("--merge", nargs="+", action="extend", metavar="FILE", default=[],
                   help="order files to merge (with the runs' order when scenarios are given); conflicts "
                        "are reported")
    p.add_argument("--out", help="output folder (default rmapsim-out/<scenario>-seed<N>; with several "
                                 "scenarios, one folder per scenario inside it)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--quiet", action="store_true", help="no progress or chatter")
    p.add_argument("--executor", choices=("stepper", "trio"),
                   help="who steps the simulated tasks (same results); same as --set run.executor=NAME")
    p.add_argument("--force", action="store_true", help="run even when estimated to take more than a few minutes")
    p.set_defaults(func=cmd_lockdep)


@dataclass(frozen=True)
class LockdepArgs:
    """``rmapsim lockdep``'s own options, typed: read from the parsed command line in one place
    (:meth:`of`).  The run options (``--set``, ``--seed``, ...) are read by rmapsim/runs.py's
    :class:`~rmapsim.runs.RunArgs`."""

    scenarios: list[str]
    designs: list[str] | None  # --design NAME[:SWITCH=VALUE,...]; None: the scenario's designs
    order: str | None  # --order FILE|rmap|none
    emit_order: str | None
    merge: list[str]
    out: str | None
    json: bool

    @classmethod
    def of(cls, args: argparse.Namespace) -> LockdepArgs:
        from rmapsim.runs import arg_list, opt_arg

        return cls(scenarios=arg_list(args, "scenario"), designs=arg_list(args, "design") or None,
                   order=opt_arg(args, "order", str), emit_order=opt_arg(args, "emit_order", str),
                   merge=arg_list(args, "merge"), out=opt_arg(args, "out", str),
                   json=bool(getattr(args, "json", False)))


def _bad(message: str) -> Exception:
    from rmapsim.runs import BadInput

    return BadInput(message)


def _variants(texts: list[str] | None, scenario: Scenario) -> list[Variant]:
    from workloads.explore import resolve_variants

    try:
        return resolve_variants(texts, scenario)
    except ValueError as exc:
        raise _bad(str(exc)) from None


def _load_order(spec: str) -> ExpectedOrder | None:
    from workloads.lockorder import ORDER_KEYWORDS, load_order_spec
    from workloads.scenario import ScenarioError

    try:
        return load_order_spec(spec if spec in ORDER_KEYWORDS else str(Path(spec)))
    except ScenarioError as exc:
        raise _bad(str(exc)) from None


def _prepare(args: argparse.Namespace, name: str, out: Path | None) -> _Prepared:
    """Load one scenario, its variants and its output folder, all checked before anything runs."""
    from rmapsim.runs import _default_out, _load, check_out, check_size

    opts = LockdepArgs.of(args)
    ns = argparse.Namespace(**vars(args))
    ns.scenario = name
    scenario = _load(ns, {"lockdep.enabled": True})
    if opts.order is not None:
        scenario.expected_order = None if opts.order == "none" else opts.order
        scenario.order_path = None if opts.order in ("rmap", "none") else opts.order
    ns.out = str(out if out is not None else _default_out(scenario))
    variants = _variants(opts.designs, scenario)
    check_size(args, scenario, len(variants))
    ns.log = None
    check_out(ns)
    return ns, scenario, variants


def _run_scenario(prepared: _Prepared, deadlocks: list[str]) -> tuple[list[JsonObject], Path]:
    """Every variant of one scenario with the order checker on; results written to its folder (a
    run that deadlocked among them, as far as it went: its lockdep report is the point).  Returns
    the run records and that folder."""
    import dataclasses

    from rmapsim.runs import _run_designs, _write_results

    ns, scenario, variants = prepared
    runs: list[JsonObject] = []
    results: JsonObject = {}
    for variant in variants:
        sc = scenario
        if variant.switches:
            switches = {d: dict(s) for d, s in scenario.switches.items()}
            switches.setdefault(variant.design, {}).update(variant.switch_values)
            sc = dataclasses.replace(scenario, switches=switches)
        results = _run_designs(ns, sc, [variant.design], deadlocks=deadlocks)
        for i, run in enumerate(json_list(results["runs"], "runs")):
            record = json_obj(run, f"runs[{i}]")
            if variant.switches:
                record["variant"] = variant.label
            runs.append(record)
    results = {**results, "runs": [*runs]}
    _write_results(results, Path(ns.out))
    return runs, Path(ns.out)


def _lockdep(run: JsonObject) -> JsonObject:
    """A run record's ``lockdep`` section (``{}`` when the run had none)."""

    section = run.get("lockdep")
    return json_obj(section, "lockdep") if section else {}


def _lockdep_order(run: JsonObject) -> JsonObject:
    """The ``order`` part of a run's lockdep section: the order the run was checked against."""

    return json_obj(_lockdep(run).get("order", {}), "lockdep.order")


def _strings(value: JsonValue, what: str) -> list[str]:
    """A list of strings in a run record (findings, violations, class names)."""

    return [str(item) for item in json_list(value, what)]


def _unused_notes(order: ExpectedOrder | None, runs: list[JsonObject]) -> list[str]:
    """Classes a user's order declares that no run acquired (a typo is the usual reason)."""
    if order is None or not order.origin or order.origin.endswith("rmap_lock_order.toml"):
        return []
    from concurrency.lockdep import split_subclass

    seen = sorted({split_subclass(str(json_obj(c, "lockdep.classes[]")["name"]))[0]
                   for run in runs for c in json_list(_lockdep(run).get("classes", []), "lockdep.classes")})
    notes = []
    for cls in sorted(order.classes - set(seen)):
        close = difflib.get_close_matches(cls, seen, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        notes.append(f"note: {order.declared_at.get(cls, order.origin)}: {cls!r} is declared but no run "
                     f"acquired it{hint}")
    return notes


def cmd_lockdep(args: argparse.Namespace) -> int:
    from reports.common import format_table, safe_name
    from reports.lockgraph import order_rows, order_verdict, run_label
    from workloads.lockorder import emit_order, merge_steps, observed_steps, order_steps
    from workloads.record import atomic_write

    opts = LockdepArgs.of(args)
    if not opts.scenarios and not opts.merge:
        raise _bad("lockdep: name a scenario (or several), or give --merge FILE...")
    order = _load_order(opts.order) if opts.order is not None else None
    loaded = [_load_order(f) for f in opts.merge]
    merged = [m for m in loaded if m is not None]
    if len(merged) != len(loaded):
        raise _bad("--merge takes order files, not 'rmap' or 'none'")
    several = len(opts.scenarios) > 1
    if opts.emit_order:
        from rmapsim.outputs import OutputError, check_out_file
        from rmapsim.runs import BadInput

        try:
            check_out_file(opts.emit_order, "--emit-order")
        except OutputError as exc:
            raise BadInput(str(exc)) from None
    prepared = []  # every scenario loaded and every output checked before the first run
    for name in opts.scenarios:
        out = Path(opts.out) / Path(name).stem if several and opts.out else (Path(opts.out) if opts.out else None)
        prepared.append(_prepare(args, name, out))
    all_runs: list[JsonObject] = []
    report: JsonObject = {}
    deadlocks: list[str] = []
    found = False
    lines: list[str] = []
    for one in prepared:
        runs, out_dir = _run_scenario(one, deadlocks)
        scen = one[1].name
        for run in runs:
            label = run_label(run)
            lockdep = _lockdep(run)
            key = f"{scen}:{label}" if several else label
            report[key] = lockdep
            all_runs.append(run)
            findings = _strings(lockdep["findings"], "lockdep.findings")
            violations = _strings(lockdep["order_violations"], "lockdep.order_violations")
            found = found or bool(findings or violations)
            lines.append(f"== {key}: {len(json_list(lockdep['edges'], 'lockdep.edges'))} lock dependencies, "
                         f"{len(findings)} finding(s), {len(violations)} order violation(s)")
            lines.append(f"   order verdict: {order_verdict(run)}")
            lines += findings
            lines += violations
        for run in runs:
            svg = out_dir / f"lockgraph-{safe_name(run_label(run))}.svg"
            lines.append(f"graph: {svg}" if svg.exists() else
                         f"graph: not drawn (install Graphviz's dot); DOT source {svg.with_suffix('.dot')}")
        lines.append(f"listing: {out_dir / 'lockdep.txt'}, {out_dir / 'lockdep_stats.txt'}; report: "
                     f"{out_dir / 'report.html'}")
    user_order = order  # the order to look for unused declarations in: --order's, or the scenarios' own file
    if user_order is None and all_runs:
        orders = {_lockdep_order(run).get("file") for run in all_runs}
        orders.discard(None)
        if len(orders) == 1:
            from workloads.lockorder import load_order_spec
            from workloads.scenario import ScenarioError

            (origin,) = orders
            if origin and not str(origin).endswith("rmap_lock_order.toml"):
                try:
                    user_order = load_order_spec(str(origin))
                except ScenarioError:
                    user_order = None
    lines += _unused_notes(user_order, all_runs)
    if len(all_runs) > 1:
        headers, rows = order_rows(all_runs, label="run")
        for row, run in zip(rows, all_runs, strict=True):
            row[0] = (f"{run.get('scenario', '?')}:" if several else "") + run_label(run)
        lines.append("")
        lines.append("Order verdict beside the cost (lock wait = share of CPU time)")
        lines.append(format_table(headers, rows, align="llrrrrrl", indent="  ").rstrip("\n"))
    emitted_info: JsonObject | None = None
    if opts.emit_order or opts.merge:
        sources = []
        labels = []
        if all_runs:
            sources.append(observed_steps(all_runs))
            labels.append(", ".join(sorted({f"{r.get('scenario', '?')} ({run_label(r)})" for r in all_runs})))
        for m in merged:
            sources.append(order_steps(m))
            labels.append(m.origin)
        # write_only marks: the merged files', and those of the orders the runs were checked against
        write_only = set[str]().union(*(m.write_only for m in merged), *(
            _strings(_lockdep_order(r).get("write_only", []), "lockdep.order.write_only") for r in all_runs))
        seeds = sorted({str(json_obj(r.get("params", {}), "params").get("seed", "?")) for r in all_runs})
        source = ("observed order: " if all_runs and not merged else "merged order: ") + "; ".join(labels)
        if all_runs:
            source += f" (seed {', '.join(seeds)})"
        header = ["Written by rmapsim lockdep " + ("--emit-order" if all_runs else "--merge") + " from:"]
        header += [f"  {lab}" for lab in labels]
        emitted = emit_order(merge_steps(sources), source=source, header=header, write_only=write_only)
        if emitted.conflicts:
            found = True
        emitted_info = {"file": opts.emit_order, "levels": [[*level] for level in emitted.levels],
                        "orders": len(emitted.kept), "implied": len(emitted.implied),
                        "conflicts": [c.render() for c in emitted.conflicts]}
        if opts.emit_order:
            atomic_write(Path(opts.emit_order), emitted.text)
            lines.append(f"wrote {opts.emit_order}: {sum(map(len, emitted.levels))} classes in "
                         f"{len(emitted.levels)} level(s), {len(emitted.kept)} order(s) ({len(emitted.implied)} "
                         "implied by others left out)")
        elif not opts.json:
            lines.append(emitted.text.rstrip("\n"))
        lines += [c.render() for c in emitted.conflicts]
    if opts.json:
        if emitted_info is not None:
            report["emitted_order"] = emitted_info
        if deadlocks:
            report["deadlocks"] = [*deadlocks]
        print(json.dumps(report, sort_keys=True))
    else:
        print("\n".join(lines))
    if deadlocks:
        from rmapsim import diag

        for message in deadlocks:
            diag.error("run_failed", f"rmapsim: run failed: {message}")
    return 1 if found or deadlocks else 0
