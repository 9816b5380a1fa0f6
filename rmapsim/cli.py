"""The ``rmapsim`` command line.

Exit status: 0 success, 1 a finding (lock-order inversion, invariant violation, failed check),
2 bad input (the message names file, line, key, value and what is allowed; no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]

DEFAULT_SCENARIO = "fork-heavy"


class BadInput(Exception):
    """Reported as ``rmapsim: error: ...`` with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: status 2, no traceback
        self.print_usage(sys.stderr)
        print(f"rmapsim: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _scenarios_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "workloads" / "scenarios"


def builtin_scenarios() -> dict[str, Path]:
    return {p.stem: p for p in sorted(_scenarios_dir().glob("*.toml"))} | {
        p.stem: p for p in sorted(_scenarios_dir().glob("*.py")) if p.stem != "__init__"}


def _resolve(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    builtin = builtin_scenarios()
    if name in builtin:
        return builtin[name]
    import difflib

    close = difflib.get_close_matches(name, list(builtin), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise BadInput(f"{name}: no such file or built-in scenario{hint}; built-in: {', '.join(builtin)}")


def _overrides(items: list[str]) -> dict[str, Any]:
    from workloads.scenario import parse_value

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--set {item!r}: expected KEY=VALUE, e.g. run.cpus=8")
        out[key.strip()] = parse_value(value.strip())
    return out


def _load(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    from workloads.scenario import ScenarioError, load_scenario

    overrides = _overrides(getattr(args, "set", None) or [])
    if extra:
        overrides.update(extra)
    if getattr(args, "seed", None) is not None:
        overrides["run.seed"] = args.seed
    if getattr(args, "cpus", None) is not None:
        overrides["run.cpus"] = args.cpus
    try:
        return load_scenario(_resolve(args.scenario), overrides)
    except ScenarioError as exc:
        raise BadInput(str(exc)) from None


def _designs(args: argparse.Namespace, scenario: Any) -> list[str]:
    import mm.designs  # noqa: F401
    from mm.rmap_design import DESIGNS

    chosen = list(args.design or scenario.designs)
    for name in chosen:
        if name not in DESIGNS:
            raise BadInput(f"--design {name!r}: unknown design; allowed: {', '.join(sorted(DESIGNS))}")
    return chosen


def _progress(label: str, quiet: bool) -> Any:
    from rmapsim.progress import Progress

    return Progress(label, enabled=not quiet)


def _write_results(results: dict[str, Any], out: Path, *, reports: bool = True) -> None:
    from workloads.record import atomic_write, dump_json

    atomic_write(out / "result.json", dump_json(results))
    if reports:
        try:
            import reports as reports_pkg
        except ImportError:  # pragma: no cover - reports is part of the package
            return
        render = getattr(reports_pkg, "render_run", None)
        if render is not None:
            render(results, out)


def _summary(results: dict[str, Any]) -> str:
    from reports import summary_text

    text: str = summary_text(results)
    return text


def _findings(results: dict[str, Any]) -> bool:
    """True when a run found something (exit status 1): an invariant violated, a lockdep
    inversion, an rmap walk that missed a mapping it owed.  Says what on stderr."""
    found = False
    for run in results["runs"]:
        for violation in run["invariants"]["violations"]:
            print(f"rmapsim: {run['design']}: invariant violated: {violation}", file=sys.stderr)
            found = True
        for finding in run["lockdep"]["findings"]:
            print(f"rmapsim: {run['design']}: lockdep:\n{finding}", file=sys.stderr)
            found = True
        missed = {name: w["missed_mappings"] for name, w in run["walks"].items() if w["missed_mappings"]}
        if missed:
            first = run["invariants"]["misses"][0]
            where = ", ".join(f"mm{m} vpn {v}" for m, v in first["mappings"])
            print(f"rmapsim: {run['design']}: rmap walks missed mappings ("
                  f"{', '.join(f'{k} {v}' for k, v in sorted(missed.items()))}); first: t={first['t_ns']} ns "
                  f"{first['walk']} on folio {first['folio']} missed {where}", file=sys.stderr)
            found = True
    return found


def _run_designs(args: argparse.Namespace, scenario: Any, designs: list[str]) -> dict[str, Any]:
    from workloads.runner import RunFailed, run_scenario

    out = Path(args.out) if args.out else None
    trace_dir = out if getattr(args, "trace", False) and out is not None else None
    with _progress(f"{scenario.name}: {', '.join(designs)}", args.quiet):
        try:
            return run_scenario(scenario, designs=designs, trace_dir=trace_dir)
        except RunFailed as exc:
            print(f"rmapsim: run failed: {exc}", file=sys.stderr)
            raise SystemExit(1) from None


def _default_out(scenario: Any) -> Path:
    return Path(f"rmapsim-out/{scenario.name}-seed{scenario.seed}")


def _run_and_save(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load, run every chosen design, write result.json and the reports: the shared part of
    run, compare and lockdep."""
    scenario = _load(args, extra)
    designs = _designs(args, scenario)
    if args.out is None:
        args.out = str(_default_out(scenario))
    results = _run_designs(args, scenario, designs)
    _write_results(results, Path(args.out))
    return results


def cmd_run(args: argparse.Namespace) -> int:
    results = _run_and_save(args)
    if args.json:
        print(json.dumps(results, sort_keys=True))
    elif not args.quiet:
        print(f"wrote {Path(args.out) / 'result.json'}")
    return 1 if _findings(results) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    results = _run_and_save(args)
    if args.json:
        print(json.dumps(results, sort_keys=True))
    else:
        print(_summary(results))
        if not args.quiet:
            print(f"\nresults and reports: {args.out}/")
    return 1 if _findings(results) else 0


def cmd_default(args: argparse.Namespace) -> int:
    """No arguments: the headline comparison on the built-in fork-heavy scenario."""
    args.scenario = DEFAULT_SCENARIO
    return cmd_compare(args)


def cmd_lockdep(args: argparse.Namespace) -> int:
    results = _run_and_save(args, {"lockdep.enabled": True})
    found = False
    report: dict[str, Any] = {}
    for run in results["runs"]:
        lockdep = run["lockdep"]
        report[run["design"]] = lockdep
        found = found or bool(lockdep["findings"] or lockdep["order_violations"])
        if not args.json:
            print(f"== {run['design']}: {len(lockdep['edges'])} lock dependencies, "
                  f"{len(lockdep['findings'])} finding(s), {len(lockdep['order_violations'])} order violation(s)")
            for text in lockdep["findings"]:
                print(text)
            for text in lockdep["order_violations"]:
                print(text)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 1 if found else 0


def cmd_list(args: argparse.Namespace) -> int:
    import mm.designs  # noqa: F401
    from mm.rmap_design import DESIGNS
    from workloads.actors import ACTORS
    from workloads.scenario import ScenarioError, load_scenario

    scenarios = {}
    for name, path in builtin_scenarios().items():
        try:
            sc = load_scenario(path)
            scenarios[name] = sc.description.strip().splitlines()[0] if sc.description.strip() else ""
        except ScenarioError as exc:
            scenarios[name] = f"(invalid: {exc})"
    designs = {name: cls.summary for name, cls in sorted(DESIGNS.items())}
    actors = {name: kind.help for name, kind in sorted(ACTORS.items())}
    switches = {f"switches.{name}.{key}": f"{sw.help} (default {sw.default!r}; allowed "
                f"{', '.join(map(repr, sw.allowed))})"
                for name, cls in sorted(DESIGNS.items()) for key, sw in cls.SWITCHES.items()}
    switches.update({
        "rwsem.spin": "writer optimistic spinning (default true)",
        "rwsem.reader_steal": "reader lock stealing, v5.11+ (default true)",
        "rwsem.handoff": "handoff after RWSEM_WAIT_TIMEOUT (default true)",
        "rwsem.handoff_timeout_ns": "the handoff timeout (default 4000000)",
        "mutex.spin": "optimistic spinning on a running owner (default true)",
        "mutex.handoff": "MUTEX_FLAG_HANDOFF, v4.10+; false for the 2011-2013 mutex (default true)",
        "reclaim.trylock": "folio_referenced only tries the rmap lock, 2022+ (default true)",
        "lockdep.enabled": "run the lock-order checker (default true)",
        "lockdep.expected_order": "declared order checked against the run's edges: rmap or none",
    })
    if args.json:
        print(json.dumps({"scenarios": scenarios, "designs": designs, "actors": actors,
                          "switches": switches}, sort_keys=True))
        return 0
    for title, table in (("scenarios", scenarios), ("designs", designs), ("actors", actors),
                         ("switches", switches)):
        print(f"{title}:")
        width = max((len(k) for k in table), default=0)
        for key, text in table.items():
            print(f"  {key:<{width}}  {text}")
        print()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if not (out / "result.json").exists() and not (out / "sweep.json").exists():
        raise BadInput(f"{out}: no result.json or sweep.json to render")
    from reports import render_dir

    written = render_dir(out)
    if not args.quiet:
        print(f"rendered {len(written)} file(s) in {out}/")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from rmapsim.sweep import GridError, run_sweep

    scenario = _load(args)
    designs = _designs(args, scenario)
    out = Path(args.out) if args.out else Path(f"rmapsim-out/{scenario.name}-sweep")
    try:
        summary = run_sweep(_resolve(args.scenario), args.grid, designs=designs, out=out, jobs=args.jobs,
                            base_overrides=_overrides(args.set or []), seed=args.seed,
                            quiet=args.quiet)
    except GridError as exc:
        raise BadInput(str(exc)) from None
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    elif not args.quiet:
        print(f"sweep: {summary['ok']} ok, {summary['failed']} failed, {summary['skipped']} resumed; "
              f"{out / 'sweep.json'}")
    return 1 if summary["failed"] else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rmapsim.bench import format_engine_bench, format_memory_bench, run_engine_bench, run_memory_bench

    if args.what == "trace":
        from rmapsim.bench import run_trace_bench

        figures = run_trace_bench(repeats=args.repeats)
        print(json.dumps(figures, sort_keys=True) if args.json else
              f"fork-heavy (anon_vma, {figures['sim_events']:,} events): tracing off {figures['off_s']} s, "
              f"on {figures['on_s']} s (+{figures['overhead_pct']}%, {figures['trace_events']:,} trace events)")
        return 0
    if args.what == "memory":
        mem = run_memory_bench(args.folios)
        print(json.dumps(mem.to_dict(), sort_keys=True) if args.json else format_memory_bench(mem))
        return 0
    if args.what != "engine":
        raise BadInput(f"bench {args.what!r}: unknown benchmark; allowed: engine, memory, trace")
    bench = run_engine_bench(repeats=args.repeats)
    if args.json:
        print(json.dumps(bench.to_dict(), sort_keys=True))
    else:
        print(format_engine_bench(bench))
    return 0 if bench.agree else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rmapsim", description="Reverse-map lock simulator: anon_vma vs the COW context. "
                     "With no command: the headline comparison on the fork-heavy scenario.")
    parser.add_argument("--quiet", action="store_true", help="no progress or chatter")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--out", help="output folder (default rmapsim-out/<scenario>-seed<N>)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    def scenario_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("scenario", help="a .toml/.py file or a built-in scenario name (see `rmapsim list`)")
        p.add_argument("--design", action="append", help="run only this design (repeatable)")
        p.add_argument("--seed", type=int, help="override the scenario's seed")
        p.add_argument("--cpus", type=int, help="override the scenario's CPU count")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a scenario key, e.g. run.duration_ns=5000000 (repeatable)")
        p.add_argument("--out", help="output folder")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--quiet", action="store_true", help="no progress or chatter")
        return p

    p = scenario_cmd("run", "run a scenario; writes OUT/result.json and reports")
    p.add_argument("--trace", action="store_true", help="also write a Chrome trace per design")
    p.set_defaults(func=cmd_run)
    p = scenario_cmd("compare", "run every design of a scenario and print the comparison")
    p.add_argument("--trace", action="store_true", help="also write a Chrome trace per design")
    p.set_defaults(func=cmd_compare)
    p = scenario_cmd("lockdep", "run with the order checker; exit 1 on an inversion")
    p.set_defaults(func=cmd_lockdep)
    p = scenario_cmd("sweep", "run a parameter grid in worker processes (resumable)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a swept key and its values (repeatable: the grid is their product)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("list", help="scenarios, designs, actors and switches")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("report", help="re-render reports from a saved result folder")
    p.add_argument("dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_report)
    from rmapsim.explore_cmd import add_parser as add_explore_parser
    from rmapsim.validate_cmd import add_parser as add_validate_parser

    add_explore_parser(sub)
    add_validate_parser(sub)
    p = sub.add_parser("bench", help="benchmarks (engine vs SimPy)")
    p.add_argument("what", nargs="?", default="engine",
                   help="engine (vs SimPy), memory (1M folios) or trace (tracing on/off)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--repeats", type=int, default=3, help="engine: runs per simulator; the best counts")
    p.add_argument("--folios", type=int, default=1_000_000, help="memory: resident folios")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = cmd_default
        args.design = None
        args.set = []
        args.seed = None
        args.cpus = None
        args.trace = False
    try:
        result: int = args.func(args)
    except BadInput as exc:
        print(f"rmapsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rmapsim: interrupted", file=sys.stderr)
        return 130
    return result
