"""``rmapsim explore``: the command-line side of workloads/explore.py.

Writes into ``OUT`` (default ``rmapsim-out/<scenario>-explore``): ``explore.json`` (every run's
verdict, the summary per variant, the shrunk reproducers; rewritten atomically as runs finish,
so an interrupted exploration keeps what it finished), ``explore.txt`` and ``explore.html`` (the
summary and each reproducer's race story), and one ``repro-<variant>-<category>.toml`` per
failure kind found.  Exit status 1 when any run failed, 0 when every run was sound, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from records.result import JsonObject, json_obj, json_object

if TYPE_CHECKING:
    from rmapsim.runs import Subcommands
    from workloads.explore import Job, Variant, Verdict
    from workloads.scenario import Scenario

__all__ = ["add_parser", "cmd_explore"]


def add_parser(sub: Subcommands) -> None:
    p = sub.add_parser("explore", help="run a scenario under many perturbed schedules; shrink and explain "
                                       "every kind of failure found")
    p.add_argument("scenario", help="a .toml/.py file or a built-in scenario name (see `rmapsim list`)")
    p.add_argument("--design", action="append", metavar="NAME[:SWITCH=VALUE,...]",
                   help="a design, optionally with switches, e.g. cow_context:fork_link=early,traversal=pre "
                        "(repeatable; default: the scenario's designs)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario key (repeatable)")
    from rmapsim.runs import count

    p.add_argument("--runs", type=count(1), default=50, help="runs per design (default 50)")
    p.add_argument("--jobs", type=count(1), default=1,
                   help="local worker processes (the set of runs does not depend on it)")
    p.add_argument("--cluster", metavar="local[:N]|tcp://HOST:PORT",
                   help="run on Dask distributed: a LocalCluster of N workers, or a running scheduler "
                        "(needs rmapsim[cluster]; the set of runs does not depend on it)")
    p.add_argument("--seed-base", type=int, default=1, help="run i uses seed SEED_BASE + i (default 1)")
    p.add_argument("--perturb", default="all",
                   help="all (default: shuffle,jitter=0.2,preempt=3), none, or a comma list of shuffle, "
                        "jitter[=J], preempt[=K]")
    p.add_argument("--shrink-budget", type=count(0), default=40,
                   help="runs spent shrinking each failure (default 40)")
    p.add_argument("--stop-at-first", action="store_true", help="stop starting runs after the first failure")
    p.add_argument("--out", help="output folder (default rmapsim-out/<scenario>-explore)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress or chatter")
    p.add_argument("--executor", choices=("stepper", "trio"),
                   help="who steps the simulated tasks (same verdicts); same as --set run.executor=NAME")
    p.add_argument("--force", action="store_true", help="run even when one run is estimated to take more than a "
                                                        "few minutes")
    p.set_defaults(func=cmd_explore)


@dataclass(frozen=True)
class ExploreArgs:
    """``rmapsim explore``'s options, typed: read from the parsed command line in one place (:meth:`of`)."""

    scenario: str
    designs: list[str] | None  # --design NAME[:SWITCH=VALUE,...]; None: the scenario's designs
    sets: list[str]
    runs: int
    jobs: int
    cluster: str | None
    seed_base: int
    perturb: str
    shrink_budget: int
    stop_at_first: bool
    out: str | None
    json: bool
    quiet: bool

    @classmethod
    def of(cls, args: argparse.Namespace) -> ExploreArgs:
        from rmapsim.runs import arg, arg_list, opt_arg

        return cls(scenario=arg(args, "scenario", str), designs=arg_list(args, "design") or None,
                   sets=arg_list(args, "set"), runs=arg(args, "runs", int), jobs=arg(args, "jobs", int),
                   cluster=opt_arg(args, "cluster", str), seed_base=arg(args, "seed_base", int),
                   perturb=arg(args, "perturb", str), shrink_budget=arg(args, "shrink_budget", int),
                   stop_at_first=bool(args.stop_at_first), out=opt_arg(args, "out", str),
                   json=bool(getattr(args, "json", False)), quiet=bool(getattr(args, "quiet", False)))


def _variants(opts: ExploreArgs, scenario: Scenario) -> list[Variant]:
    from rmapsim.runs import BadInput
    from workloads.explore import resolve_variants

    try:
        return resolve_variants(opts.designs, scenario)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


def cmd_explore(args: argparse.Namespace) -> int:
    from workloads.executor import interrupts

    with interrupts():  # SIGTERM stops an exploration as Ctrl-C does: finished runs are kept, exit 130
        return _explore(args)


def _explore(args: argparse.Namespace) -> int:
    from reports.explore import explore_html, explore_text, story_text
    from rmapsim.runs import BadInput, _overrides, _resolve, check_out, check_size
    from workloads.executor import Backend, BackendError, Executor
    from workloads.explore import (
        CATEGORIES,
        EXPLORE_SCHEMA,
        PerturbSpec,
        ScenarioSource,
        plan,
        reproducer,
        run_jobs,
        shrink,
        tell_story,
    )
    from workloads.record import atomic_write, dump_json
    from workloads.scenario import ScenarioError

    opts = ExploreArgs.of(args)
    if opts.runs < 1:
        raise BadInput(f"--runs {opts.runs}: allowed: 1 or more")
    try:
        backend = Backend.from_args(opts.jobs, opts.cluster)
    except BackendError as exc:
        raise BadInput(str(exc)) from None
    if opts.shrink_budget < 0:
        raise BadInput(f"--shrink-budget {opts.shrink_budget}: allowed: 0 or more")
    try:
        spec = PerturbSpec.parse(opts.perturb)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    path = _resolve(opts.scenario)
    try:
        source = ScenarioSource.from_path(path, _overrides(opts.sets))
        scenario = source.load()
    except ScenarioError as exc:
        raise BadInput(str(exc)) from None
    variants = _variants(opts, scenario)
    check_size(args, scenario, 1)  # each explored run is one design's
    out = Path(opts.out) if opts.out else Path(f"rmapsim-out/{scenario.name}-explore")
    check_out(args, out)  # find out now, not after the runs, that the results cannot be written
    try:  # a cluster that cannot be reached is bad input, found before any run
        executor = Executor(backend).start()
    except BackendError as exc:
        raise BadInput(str(exc)) from None

    from rmapsim.progress import Progress

    verdicts: dict[tuple[str, int], Verdict] = {}
    rank = {v.label: i for i, v in enumerate(variants)}

    def run_order(key: tuple[str, int]) -> tuple[int, int]:
        return rank[key[0]], key[1]  # variant by variant, run by run, whatever finished first

    reproducers: list[JsonObject] = []
    state = {"stop": False, "interrupted": False}
    total = opts.runs * len(variants)
    start = time.monotonic()

    def document() -> JsonObject:
        runs = [verdicts[k] for k in sorted(verdicts, key=run_order)]
        given = dict(sorted(source.overrides.items())) if not source.is_toml else _overrides(opts.sets)
        overrides = json_object(given, "overrides")  # TOML values, checked to be JSON ones
        return {
            "schema": EXPLORE_SCHEMA,
            "scenario": {"name": scenario.name, "source": path.name},
            "overrides": overrides,
            "runs_per_variant": opts.runs, "seed_base": opts.seed_base,
            "perturb": json_object(spec.to_dict(), "perturb"),
            "complete": len(runs) == total and not state["interrupted"],
            "summary": _summary(variants, runs, (*CATEGORIES, "worker_lost", "error")),
            "runs": [json_object(r, f"runs[{i}]") for i, r in enumerate(runs)],
            "reproducers": [*reproducers],
        }

    def save() -> None:
        atomic_write(out / "explore.json", dump_json(document()))

    progress = Progress(f"explore {scenario.name}", total=total, enabled=not opts.quiet)

    last_save = [time.monotonic()]

    def on_result(job: Job, verdict: Verdict) -> None:
        verdicts[(job.variant.label, job.index)] = verdict
        progress.advance()
        if time.monotonic() - last_save[0] >= 1.0:  # finished runs survive a kill; at most once a second
            save()
            last_save[0] = time.monotonic()
        if verdict["categories"] and opts.stop_at_first:
            state["stop"] = True

    try:
        with progress, executor:
            # Run 0 of each variant is the plain schedule; its end time is the horizon of the
            # injected preemptions of the others.
            first = plan(source, variants, 1, opts.seed_base, spec, {})
            run_jobs(first, executor, on_result)
            save()
            horizons = {v.label: (verdicts[(v.label, 0)]["end_ns"] or scenario.duration_ns or 10_000_000)
                        for v in variants}
            rest = [j for j in plan(source, variants, opts.runs, opts.seed_base, spec, horizons) if j.index]
            if not state["stop"]:
                run_jobs(rest, executor, on_result, stop=(lambda: bool(state["stop"])) if opts.stop_at_first else None)
            save()
        wall = time.monotonic() - start
        # Shrink the first failure of each (variant, category), in run order.
        all_jobs = {(j.variant.label, j.index): j for j in plan(source, variants, opts.runs, opts.seed_base,
                                                                  spec, horizons)}
        firsts: dict[tuple[str, str], tuple[Job, Verdict]] = {}
        for key in sorted(verdicts, key=run_order):
            verdict = verdicts[key]
            for cat in verdict["categories"]:
                if cat in ("worker_lost", "error"):  # not the schedule's doing: nothing to shrink
                    continue
                firsts.setdefault((key[0], cat), (all_jobs[key], verdict))
        with Progress(f"shrinking {len(firsts)} failure(s)", enabled=not opts.quiet and bool(firsts)):
            for (label, cat), (job, verdict) in firsts.items():
                small, small_verdict, tried = shrink(job, verdict, cat, budget=opts.shrink_budget)
                shown: Verdict = {**small_verdict, "category": cat, "perturb_text": small.perturb.describe()}
                name, text = reproducer(small, shown)
                atomic_write(out / name, text)
                story = tell_story(small, shown, f"rmapsim run {name}  (from the explore folder)")
                entry: JsonObject = {"variant": label, "category": cat, "file": name, "from_run": job.index,
                                     "shrink_runs": tried, "verdict": json_object(shown, "verdict"),
                                     "story": None if story is None else json_object(story, "story")}
                if story is not None:
                    story_name = name.rsplit(".", 1)[0] + ".story.txt"
                    atomic_write(out / story_name, story_text(story))
                    entry["story_file"] = story_name
                reproducers.append(entry)
                save()
    except KeyboardInterrupt:
        state["interrupted"] = True
        save()
        print(f"rmapsim: interrupted; {len(verdicts)} finished run(s) kept in {out / 'explore.json'}",
              file=sys.stderr)
        raise SystemExit(130) from None
    doc = document()
    runs = [verdicts[k] for k in sorted(verdicts, key=run_order)]
    text = explore_text(doc)

    def write() -> None:  # the three together: Ctrl-C now waits for them
        atomic_write(out / "explore.json", dump_json(doc))
        atomic_write(out / "explore.txt", text)
        atomic_write(out / "explore.html", explore_html(doc))

    from rmapsim.outputs import uninterrupted

    uninterrupted(write)
    failed = sum(1 for r in runs if r["categories"])
    if opts.json:
        print(json.dumps({**json_obj(doc["summary"], "summary"), "wall_s": round(wall, 2),
                          "runs_per_wall_minute": round(len(verdicts) * 60 / wall, 1) if wall else None,
                          "reproducers": [r["file"] for r in reproducers], "out": str(out)}, sort_keys=True))
    elif not opts.quiet:
        print(text, end="")
        for rep in reproducers:  # the race as a story, one table per reproducer
            told = rep["story"]
            if isinstance(told, dict):  # None: no race story for this kind of failure
                print()
                print(story_text(told), end="")
        print(f"{len(verdicts)} runs in {wall:.1f} s ({len(verdicts) * 60 / wall:.0f} runs per wall minute); "
              f"{out / 'explore.json'}")
    return 1 if failed else 0


def _summary(variants: list[Variant], runs: list[Verdict], categories: tuple[str, ...]) -> JsonObject:
    out: JsonObject = {}
    for variant in variants:
        mine = [r["categories"] for r in runs if r["variant"] == variant.label]
        by_cat = {c: sum(1 for cats in mine if c in cats) for c in categories}
        out[variant.label] = {"runs": len(mine), "failed": sum(1 for cats in mine if cats),
                              "by_category": {c: n for c, n in by_cat.items() if n}}
    return out

