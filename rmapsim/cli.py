"""The ``rmapsim`` command line.

Every command runs inside ``trio.run`` (:func:`main`).  ``run``, ``compare`` and the default
comparison simulate as trio code: the simulation checkpoints into trio (or, with ``--executor
trio``, is a nursery of CPU tasks), a progress task shares the nursery, and Ctrl-C arrives as a
``KeyboardInterrupt`` between two simulated events.  Commands whose work blocks (sweep, explore,
validate, lockdep, ...) run as plain calls inside the same ``trio.run``.  Diagnostics go through
structlog (rmapsim/diag.py); ``--log FILE`` writes the run's own event log (concurrency/trace.py).

Exit status: 0 success, 1 a finding (lock-order inversion, invariant violation, failed check),
2 bad input (the message names file, line, key, value and what is allowed; no traceback),
130 interrupted (Ctrl-C; nothing half-written: results are written after the runs, each file
under a temporary name and renamed, and a run log of an interrupted run is removed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import trio

from concurrency.executors import EXECUTORS
from concurrency.input_error import InputError
from records.result import JsonObject, ResultsFile, json_list, json_obj
from rmapsim import diag, timings
from rmapsim.runs import (
    BadInput,
    Overrides,
    RunArgs,
    _default_out,
    _event_log,
    _load,
    _overrides,
    _resolve,
    _run_designs,
    _run_failed,
    _source,
    _uninterrupted,
    _write_results,
    arg,
    arg_list,
    builtin_scenarios,
    check_out,
    check_size,
    count,
    opt_arg,
)

if TYPE_CHECKING:
    from actors.world import World
    from concurrency.engine import Engine
    from workloads.scenario import Scenario

__all__ = ["BadInput", "builtin_scenarios", "main"]

DEFAULT_SCENARIO = "fork-heavy"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own errors: status 2, no traceback
        self.print_usage(sys.stderr)
        diag.error("bad_input", f"rmapsim: error: {message}")
        raise SystemExit(2)


def _designs(args: argparse.Namespace, scenario: Scenario) -> list[str]:
    """``--design`` (each checked here) or the scenario's ``run.designs`` (checked by its loader)."""
    from mm.designs import DESIGNS

    if not args.design:
        return list(scenario.designs)
    for name in args.design:
        if name not in DESIGNS:
            import difflib

            close = difflib.get_close_matches(name, list(DESIGNS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BadInput(f"--design {name}: unknown design{hint}; allowed: {', '.join(sorted(DESIGNS))}")
    return list(args.design)


def _summary(results: JsonObject) -> str:
    from reports import summary_text

    text: str = summary_text(results)
    return text


def _findings(results: JsonObject) -> bool:
    """True when a run found something (exit status 1): an invariant violated, a lockdep
    inversion, an rmap walk that missed a mapping it owed.  Says what on stderr."""
    found = False
    for run in ResultsFile.from_json(results).runs:
        for violation in run.invariants.violations:
            diag.warning("invariant_violated", f"rmapsim: {run.design}: invariant violated: {violation}",
                         design=run.design)
            found = True
        for finding in json_list(run.lockdep["findings"], "lockdep.findings"):
            diag.warning("lockdep_finding", f"rmapsim: {run.design}: lockdep:\n{finding}", design=run.design)
            found = True
        missed = {name: miss for name, w in run.walks.items()
                  if (miss := json_obj(w, f"walks.{name}")["missed_mappings"])}
        if missed:
            first = run.invariants.misses[0]
            pairs = [json_list(pair, "misses[0].mappings[]") for pair in json_list(first["mappings"],
                                                                                  "misses[0].mappings")]
            where = ", ".join(f"mm{m} vpn {v}" for m, v in pairs)
            diag.warning("walks_missed", f"rmapsim: {run.design}: rmap walks missed mappings ("
                         f"{', '.join(f'{k} {missed[k]}' for k in sorted(missed))}); first: t={first['t_ns']} ns "
                         f"{first['walk']} on folio {first['folio']} missed {where}", design=run.design)
            found = True
    return found


async def _run_designs_async(args: argparse.Namespace, scenario: Scenario, designs: list[str]) -> JsonObject:
    """Inside trio: the runs checkpoint into trio, the progress task shares their nursery and
    shows virtual time done / total (the workload phases of every design) and an ETA."""
    from rmapsim.progress import Progress
    from workloads.runner import RunFailed, run_scenario_async

    opts = RunArgs.of(args)
    out = Path(opts.out) if opts.out else None
    trace_dir = out if opts.trace and out is not None else None
    progress = Progress(scenario.name, enabled=not opts.quiet)
    current: list[tuple[int, Engine, World]] = []  # the design running: its index, engine, world
    duration = scenario.duration_ns

    def watch(i: int, engine: Engine, world: World) -> None:
        current[:] = [(i, engine, world)]
        progress.label = f"{scenario.name}: {designs[i]}"

    def probe() -> tuple[int, int | None]:
        if not current:
            return 0, None
        i, engine, world = current[0]
        if duration is None:  # runs until every task is done: no total to show
            return engine.now, None
        done = 0 if world.deadline_ns is None else min(duration, max(0, engine.now - world.workload_start_ns))
        return i * duration + done, len(designs) * duration

    progress.follow(probe)
    try:
        with _event_log(args) as log:
            run = functools.partial(run_scenario_async, scenario, designs=designs, trace_dir=trace_dir, log=log,
                                    watch=watch)
            results: JsonObject = await progress.run_beside(run)
            return results
    except RunFailed as exc:
        _run_failed(exc)


def _prepare(args: argparse.Namespace, extra: Overrides | None) -> tuple[Scenario, list[str]]:
    """The scenario and its chosen designs, with the run's size and its output folder (``args.out``,
    set to the default when not given) checked before anything runs."""
    scenario = _load(args, extra)
    designs = _designs(args, scenario)
    check_size(args, scenario, len(designs))
    check_out(args, _default_out(scenario))
    if args.out is None:
        args.out = str(_default_out(scenario))
    return scenario, designs


def _run_and_save(args: argparse.Namespace, extra: Overrides | None = None) -> JsonObject:
    """Load, run every chosen design, write result.json and the reports: the shared part of
    run, compare and lockdep (synchronous; :func:`_run_and_save_async` is the trio one)."""
    scenario, designs = _prepare(args, extra)
    results = _run_designs(args, scenario, designs)
    _uninterrupted(_write_results, results, Path(args.out))
    return results


def _jobs(args: argparse.Namespace, scenario: Scenario, designs: list[str]) -> int:
    """How many processes run the designs: ``--jobs`` (default: one per design).  One means this
    process, as trio code, and so do a single design, ``--log`` (one event log, in design order)
    and the trio executor (a forked worker cannot start trio inside the parent's ``trio.run``)."""
    opts = RunArgs.of(args)
    jobs = opts.jobs
    if len(designs) < 2 or opts.log or scenario.executor != "stepper":
        return 1
    return len(designs) if jobs is None else min(jobs, len(designs))


class _PlotsImport:
    """matplotlib's import (``reports.plots``: a fifth to a third of a comparison's report time) in a
    thread while the designs simulate in worker processes and this process only waits for them.
    Started once the workers are forked (a fork must not copy a half-done import) and joined
    before the reports are written (which fork processes to draw: reports/figure_jobs.py)."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=_import_plots, name="rmapsim-import-plots", daemon=True)
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()
            self.thread = None


def _import_plots() -> None:
    import importlib

    with contextlib.suppress(Exception):  # the reports import it again, and say what failed
        importlib.import_module("reports.plots")


async def _run_designs_in_processes(args: argparse.Namespace, scenario: Scenario, designs: list[str],
                                    jobs: int, on_start: Callable[[], None] | None = None) -> JsonObject:
    """Each design in its own worker process (workloads/trio_pool.py), awaited as trio code; the
    progress line counts finished designs.  Results are byte-identical to the serial path.
    ``on_start()`` is called once the workers are forked."""
    from rmapsim.progress import Progress
    from workloads.runner import RunFailed, run_scenario_in_processes

    opts = RunArgs.of(args)
    out = Path(opts.out) if opts.out else None
    trace_dir = out if opts.trace and out is not None else None
    if trace_dir is not None:
        trace_dir.mkdir(parents=True, exist_ok=True)
    source, overrides = _source(args)
    progress = Progress(f"{scenario.name}: {', '.join(designs)} in {jobs} processes", total=len(designs),
                        enabled=not opts.quiet)
    run = functools.partial(run_scenario_in_processes, scenario, source, overrides, designs=designs, jobs=jobs,
                            trace_dir=trace_dir, on_done=lambda _design: progress.advance(), on_start=on_start)
    try:
        results: JsonObject = await progress.run_beside(run)
        return results
    except RunFailed as exc:
        _run_failed(exc)


async def _run_and_save_async(args: argparse.Namespace, extra: Overrides | None = None) -> JsonObject:
    """:func:`_run_and_save` inside trio; the designs in parallel processes unless ``--jobs 1``."""
    scenario, designs = _prepare(args, extra)
    jobs = _jobs(args, scenario, designs)
    plots = _PlotsImport()
    try:
        with timings.phase("simulation"):
            if jobs > 1:
                results = await _run_designs_in_processes(args, scenario, designs, jobs, on_start=plots.start)
            else:
                results = await _run_designs_async(args, scenario, designs)
    finally:
        plots.join()
    with timings.phase("reports"):
        _uninterrupted(_write_results, results, Path(args.out))
    return results


async def cmd_run(args: argparse.Namespace) -> int:
    results = await _run_and_save_async(args)
    found = _findings(results)  # a finding is said first
    if args.json:
        print(json.dumps(results, sort_keys=True))
    elif not args.quiet:
        print(f"wrote {Path(args.out) / 'result.json'}")
    return 1 if found else 0


async def cmd_compare(args: argparse.Namespace) -> int:
    results = await _run_and_save_async(args)
    found = _findings(results)  # a finding is said first, then the comparison
    if args.json:
        print(json.dumps(results, sort_keys=True))
    else:
        with timings.phase("reports"):
            summary = _summary(results)
        print(summary)
        if not args.quiet:
            print(f"\nresults and reports: {args.out}/")
    return 1 if found else 0


async def cmd_default(args: argparse.Namespace) -> int:
    """No arguments: the headline comparison on the built-in fork-heavy scenario."""
    args.scenario = DEFAULT_SCENARIO
    return await cmd_compare(args)


def cmd_lockdep(args: argparse.Namespace) -> int:
    """See rmapsim/lockdep_cmd.py: order files, the emitted order, merging, the lock graph."""
    from rmapsim.lockdep_cmd import cmd_lockdep as lockdep

    return lockdep(args)


def cmd_list(args: argparse.Namespace) -> int:
    from mm.designs import DESIGNS
    from workloads.actor_kinds import ACTORS
    from workloads.scenario import ScenarioError, load_scenario, switch_help

    scenarios = {}
    for name, path in builtin_scenarios().items():
        try:
            sc = load_scenario(path)
            scenarios[name] = first_sentence(sc.description)
        except ScenarioError as exc:
            scenarios[name] = f"(invalid: {exc})"
    designs = {name: cls.summary for name, cls in sorted(DESIGNS.items())}
    actors = {name: kind.help for name, kind in sorted(ACTORS.items())}
    switches = switch_help()  # from the designs' and the scenario's parameter tables
    if args.json:
        print(json.dumps({"scenarios": scenarios, "designs": designs, "actors": actors,
                          "switches": switches}, sort_keys=True))
        return 0
    for title, table in (("scenarios", scenarios), ("designs", designs), ("actors", actors),
                         ("switches", switches)):
        if args.quiet:  # the names alone, one a line
            print("\n".join(table))
            continue
        print(f"{title}:")
        width = max((len(k) for k in table), default=0)
        for key, text in table.items():
            print(f"  {key:<{width}}  {text}")
        print()
    return 0


def first_sentence(text: str) -> str:
    """A description's first sentence, whole (its lines joined), for one-line listings."""
    import re

    flat = " ".join(text.split())
    for m in re.finditer(r"(?<=[.!?])\s+(?=\S)", flat):
        if not re.search(r"\b(?:e\.g|i\.e|vs|etc|cf|al)\.$", flat[: m.start()]):
            return flat[: m.start()]
    return flat


def cmd_report(args: argparse.Namespace) -> int:
    """Re-render a folder from its result.json or sweep.json; a damaged one is bad input, found
    before anything is written (reports are rendered aside and moved in whole)."""
    from rmapsim.report_cmd import render_folder

    written = render_folder(Path(args.dir), BadInput)
    if args.json:
        print(json.dumps({"dir": str(args.dir), "rendered": sorted(str(p) for p in written)}, sort_keys=True))
    elif not args.quiet:
        print(f"rendered {len(written)} file(s) in {args.dir}/")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from rmapsim.sweep import GridError, run_sweep
    from workloads.executor import Backend, BackendError

    opts = RunArgs.of(args)
    scenario = _load(args)
    designs = _designs(args, scenario)
    out = Path(opts.out) if opts.out else Path(f"rmapsim-out/{scenario.name}-sweep")
    check_out(args, out)
    try:
        backend = Backend.from_args(arg(args, "jobs", int), opt_arg(args, "cluster", str))
        base = _overrides(list(opts.sets))
        if opts.cpus is not None:
            base["run.cpus"] = opts.cpus
        summary = run_sweep(_resolve(arg(args, "scenario", str)), arg_list(args, "grid"), designs=designs, out=out,
                            backend=backend, base_overrides=base, seed=opts.seed, quiet=opts.quiet,
                            check=lambda point: check_size(args, point, len(designs)))
    except (GridError, BackendError) as exc:
        raise BadInput(str(exc)) from None
    if summary["interrupted"]:
        done = summary["ok"] + summary["failed"]
        print(f"rmapsim: interrupted; {done} finished point(s) kept in {out / 'sweep.json'} "
              f"({summary['pending']} not run); rerun the same command to resume", file=sys.stderr)
        return 130
    for failure in summary["failures"]:
        params = ", ".join(f"{k}={v}" for k, v in failure["params"].items())
        print(f"rmapsim: sweep point {params}: {failure['category']}: {failure['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    elif not opts.quiet:
        cats = ", ".join(f"{c} {n}" for c, n in summary["categories"].items())
        why = ", ".join(f"{r} {n}" for r, n in summary["reasons"].items())
        print(f"sweep of {summary['points']} point(s) on {summary['backend']}: {summary['ok']} ok, "
              f"{summary['failed']} failed{f' ({cats})' if cats else ''}; resumed {summary['resumed']}, "
              f"ran {summary['ran']}{f' ({why})' if why else ''}; {out / 'sweep.json'}")
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
    if args.what == "run":
        from rmapsim.bench import format_run_bench, run_run_bench

        doc = run_run_bench(repeats=args.repeats)
        print(json.dumps(doc, sort_keys=True) if args.json else format_run_bench(doc))
        return 0
    if args.what == "scale":
        from rmapsim.bench import format_scale_bench, run_scale_bench

        scale = run_scale_bench(repeats=args.repeats)
        print(json.dumps(scale, sort_keys=True) if args.json else format_scale_bench(scale))
        return 0
    if args.what == "memory":
        mem = run_memory_bench(args.folios)
        print(json.dumps(mem.to_dict(), sort_keys=True) if args.json else format_memory_bench(mem))
        return 0
    if args.what != "engine":
        raise BadInput(f"bench {args.what}: unknown benchmark; allowed: engine, memory, run, scale, trace")
    bench = run_engine_bench(repeats=args.repeats)
    if args.json:
        print(json.dumps(bench.to_dict(), sort_keys=True))
    else:
        print(format_engine_bench(bench))
    return 0 if bench.agree else 1


# Flags the top-level parser takes (before the command) as well as the commands (after it).
GLOBAL_FLAGS = {"quiet": "--quiet", "json": "--json", "out": "--out", "executor": "--executor", "log": "--log"}


def build_parser() -> argparse.ArgumentParser:
    from workloads.scenario import flag_help, set_help  # help texts from the parameter table

    parser = _Parser(prog="rmapsim", description="Reverse-map lock simulator: anon_vma vs the COW context. "
                     "With no command: the headline comparison on the fork-heavy scenario.")
    parser.add_argument("--quiet", action="store_true", help="no progress or chatter")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--out", help="output folder (default rmapsim-out/<scenario>-seed<N>)")
    parser.add_argument("--executor", choices=EXECUTORS, help=flag_help("run.executor"))
    parser.add_argument("--log", metavar="FILE", help="write the runs' event log to FILE (JSON lines)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    def scenario_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("scenario", help="a .toml/.py file or a built-in scenario name (see `rmapsim list`)")
        p.add_argument("--design", action="append", help="run only this design (repeatable)")
        p.add_argument("--seed", type=int, help="override the scenario's seed")
        p.add_argument("--cpus", type=int, help="override the scenario's CPU count")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help=set_help())
        p.add_argument("--out", help="output folder")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--quiet", action="store_true", help="no progress or chatter")
        p.add_argument("--executor", choices=EXECUTORS, help=flag_help("run.executor"))
        p.add_argument("--force", action="store_true", help="run even when estimated to take more than a few "
                                                            "minutes")
        return p

    log_help = "write the runs' event log to FILE: JSON lines (structlog) in virtual time"
    jobs_help = ("processes that run the designs (default: one per design; 1: this process, one design after "
                 "the other); results are byte-identical either way")
    p = scenario_cmd("run", "run a scenario; writes OUT/result.json and reports")
    p.add_argument("--trace", action="store_true", help="also write a Chrome trace per design")
    p.add_argument("--log", metavar="FILE", help=log_help)
    p.add_argument("--jobs", type=count(1), help=jobs_help)
    p.set_defaults(func=cmd_run)
    p = scenario_cmd("compare", "run every design of a scenario and print the comparison")
    p.add_argument("--trace", action="store_true", help="also write a Chrome trace per design")
    p.add_argument("--log", metavar="FILE", help=log_help)
    p.add_argument("--jobs", type=count(1), help=jobs_help)
    p.set_defaults(func=cmd_compare)
    from rmapsim.lockdep_cmd import add_parser as add_lockdep_parser

    add_lockdep_parser(sub)
    p = scenario_cmd("sweep", "run a parameter grid, in worker processes or on a Dask cluster (resumable)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a swept key and its values (repeatable: the grid is their product)")
    p.add_argument("--jobs", type=count(1), default=1, help="local worker processes (default 1: in this process)")
    p.add_argument("--cluster", metavar="local[:N]|tcp://HOST:PORT",
                   help="run the points on Dask distributed: a LocalCluster of N workers, or a running "
                        "scheduler (needs rmapsim[cluster])")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("list", help="scenarios, designs, actors and switches")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--quiet", action="store_true", help="the names alone, one a line")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("report", help="re-render reports from a saved result folder")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true", help="print the files written as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no chatter")
    p.set_defaults(func=cmd_report)
    from rmapsim.explore_cmd import add_parser as add_explore_parser
    from rmapsim.validate_cmd import add_parser as add_validate_parser

    add_explore_parser(sub)
    add_validate_parser(sub)
    p = sub.add_parser("bench", help="benchmarks (engine vs SimPy)")
    p.add_argument("what", nargs="?", default="engine",
                   help="engine (vs SimPy), memory (1M folios), run (the default comparison and two built-ins: "
                        "wall, CPU split, events per second; pure and compiled builds), scale (CPU per event at "
                        "1-8x the duration) or trace (tracing on/off)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no chatter (the figures are still printed)")
    p.add_argument("--repeats", type=count(1), default=3, help="engine: runs per simulator, the best counts; run: "
                   "runs per case and build; scale: runs per length, the best counts")
    p.add_argument("--folios", type=count(1), default=1_000_000, help="memory: resident folios")
    p.set_defaults(func=cmd_bench)
    # A flag given before the command (rmapsim --json list) must not be reset by the command's own
    # default: the commands' copies of the top-level flags default to "not given".
    for command in sub.choices.values():
        for action in command._actions:
            if action.dest in GLOBAL_FLAGS:
                action.default = argparse.SUPPRESS
    return parser


def _misplaced(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A top-level flag given to a command that does not take it is bad input, never ignored."""
    if args.command is None:
        return
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    takes = {name: {a.dest for a in p._actions} for name, p in sub.choices.items()}
    for dest, flag in GLOBAL_FLAGS.items():
        if dest == "log":  # said by _dispatch, as it always was
            continue
        if getattr(args, dest, None) in (None, False) or dest in takes[args.command]:
            continue
        allowed = sorted(name for name, dests in takes.items() if dest in dests)
        raise BadInput(f"{flag}: {args.command} takes no {flag}; allowed with: {', '.join(allowed)}")


_LOGGING_COMMANDS = (None, "run", "compare")  # the commands --log applies to (None: the default comparison)


async def _dispatch(args: argparse.Namespace) -> int:
    """The command, inside trio: awaited when it is trio code, called when it is not."""
    if getattr(args, "log", None) and args.command not in _LOGGING_COMMANDS:
        raise BadInput(f"--log: {args.command} writes no run log; allowed with: compare, run")
    result = args.func(args)
    if inspect.isawaitable(result):
        result = await result
    return int(result)


def _interrupted(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(KeyboardInterrupt) is not None
    return isinstance(exc, KeyboardInterrupt)


def main(argv: list[str] | None = None) -> int:
    timings.start()
    try:
        return _main(argv)
    finally:
        timings.write()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        diag.warning("interrupted", "rmapsim: interrupted")
        return 130
    except SystemExit as exc:  # argparse's own: a bad flag (2, said already) or --help (0)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        args.func = cmd_default
        args.design = None
        args.set = []
        args.seed = None
        args.cpus = None
        args.trace = False
        args.force = False
        args.jobs = None
    executor = getattr(args, "executor", None)
    if executor is not None:  # --executor NAME is --set run.executor=NAME (it reaches worker processes too)
        args.set = [*(getattr(args, "set", None) or []), f"run.executor={executor}"]
    with diag.diagnostics(json=bool(getattr(args, "json", False))):
        try:
            _misplaced(parser, args)
            return trio.run(_dispatch, args)
        except (BadInput, InputError) as exc:  # InputError: a loader's, wherever a command let it through
            diag.error("bad_input", f"rmapsim: error: {exc}")
            return 2
        except BrokenPipeError:  # the reader left (rmapsim list | head): nothing more to say
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except BaseException as exc:
            if not _interrupted(exc):
                raise
            # Ctrl-C inside a synchronous simulation (validate, explore's in-process runs) can land
            # between creating a model coroutine and awaiting it: not a bug, say nothing at exit.
            warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)
            diag.warning("interrupted", "rmapsim: interrupted")
            return 130
