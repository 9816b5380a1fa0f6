"""What the command modules share: input resolution, loading, checking outputs, running and saving designs.

rmapsim/cli.py and the commands it hosts (rmapsim/explore_cmd.py, rmapsim/lockdep_cmd.py, ...)
import these from here, so no command module imports the command line that imports it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, ParamSpec, Protocol, TypeVar

from records.result import JsonObject
from rmapsim import diag

if TYPE_CHECKING:
    from concurrency.trace import EventLog
    from rmapsim.progress import Progress
    from workloads.scenario import Scenario

P = ParamSpec("P")
T = TypeVar("T")
# A ``--set``/``--grid`` value as parsed (TOML syntax: any TOML value, or a bare string): passed on
# to the scenario loader, which checks it against the key's parameter.
Overrides = dict[str, object]

__all__ = ["BadInput", "Overrides", "RunArgs", "Subcommands", "arg", "arg_list", "builtin_scenarios", "check_out",
           "check_size", "count", "opt_arg"]


class Subcommands(Protocol):
    """What a command module needs of ``ArgumentParser.add_subparsers()``: to add its own parser."""

    def add_parser(self, name: str, *, help: str) -> argparse.ArgumentParser: ...


class BadInput(Exception):
    """Reported as ``rmapsim: error: ...`` with exit status 2."""


def opt_arg(args: argparse.Namespace, name: str, kind: type[T]) -> T | None:
    """``args.name`` checked to be a ``kind`` (None when not given, or when the command has no
    such option)."""
    value = getattr(args, name, None)
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def arg(args: argparse.Namespace, name: str, kind: type[T]) -> T:
    """``args.name``, which the command's parser always sets, checked to be a ``kind``."""
    value = opt_arg(args, name, kind)
    if value is None:
        raise TypeError(f"{name}: not set by the parser")
    return value


def arg_list(args: argparse.Namespace, name: str) -> list[str]:
    """A repeatable option's values (``--set``, ``--design``, ...), in order; [] when none."""
    return [str(item) for item in opt_arg(args, name, list) or []]


@dataclass(frozen=True)
class RunArgs:
    """The options of the parsed command line that loading, checking and running a scenario read,
    typed and checked in one place (:meth:`of`).  A command without one of them (``validate`` has
    no ``--seed``, ``sweep`` no ``--log``) gets its default."""

    sets: tuple[str, ...] = ()  # --set KEY=VALUE, in order
    seed: int | None = None
    cpus: int | None = None
    executor: str | None = None
    out: str | None = None
    log: str | None = None
    trace: bool = False
    force: bool = False
    quiet: bool = False
    jobs: int | None = None  # --jobs: processes that run the designs (None: one per design)

    @classmethod
    def of(cls, args: argparse.Namespace) -> RunArgs:
        return cls(sets=tuple(arg_list(args, "set")), seed=opt_arg(args, "seed", int),
                   cpus=opt_arg(args, "cpus", int), executor=opt_arg(args, "executor", str),
                   out=opt_arg(args, "out", str), log=opt_arg(args, "log", str),
                   trace=bool(getattr(args, "trace", False)), force=bool(getattr(args, "force", False)),
                   quiet=bool(getattr(args, "quiet", False)), jobs=opt_arg(args, "jobs", int))


def _scenarios_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "workloads" / "scenarios"


def builtin_scenarios() -> dict[str, Path]:
    return {p.stem: p for p in sorted(_scenarios_dir().glob("*.toml"))} | {
        p.stem: p for p in sorted(_scenarios_dir().glob("*.py")) if p.stem != "__init__"}


def _resolve(name: str) -> Path:
    """A scenario file, else a built-in name (a folder named like a built-in, e.g. the ``--out`` of
    an earlier run, does not hide it); a folder or anything else that is not a file is left to
    the loader, which says what it is."""
    path = Path(name)
    if path.is_file():
        return path
    builtin = builtin_scenarios()
    if name in builtin:
        return builtin[name]
    if path.exists() or path.is_symlink():
        return path
    import difflib

    close = difflib.get_close_matches(name, list(builtin), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise BadInput(f"{name}: no such file or built-in scenario{hint}; built-in: {', '.join(builtin)}")


def _overrides(items: list[str]) -> Overrides:
    from workloads.scenario import parse_value

    out: Overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not key.strip() or not all(p.strip() for p in parts):
            raise BadInput(f"--set {item}: expected KEY=VALUE with KEY a TOML key path, e.g. run.cpus=8")
        out[key.strip()] = parse_value(value.strip())
    return out


def _flags(args: argparse.Namespace) -> dict[str, str]:
    """The flag each override came from, for error messages (``--set`` unless named here)."""
    opts = RunArgs.of(args)
    flags = {}
    if opts.seed is not None:
        flags["run.seed"] = "--seed"
    if opts.cpus is not None:
        flags["run.cpus"] = "--cpus"
    if opts.executor is not None:
        flags["run.executor"] = "--executor"
    return flags


def _source(args: argparse.Namespace, extra: Overrides | None = None) -> tuple[Path, Overrides]:
    """The scenario's file and the overrides the command line gives it (what worker processes load)."""
    opts = RunArgs.of(args)
    overrides = _overrides(list(opts.sets))
    if extra:
        overrides.update(extra)
    if opts.seed is not None:
        overrides["run.seed"] = opts.seed
    if opts.cpus is not None:
        overrides["run.cpus"] = opts.cpus
    scenario = args.scenario
    if not isinstance(scenario, str):
        raise TypeError(f"scenario: expected str, got {scenario!r}")
    return _resolve(scenario), overrides


def _load(args: argparse.Namespace, extra: Overrides | None = None) -> Scenario:
    from workloads.scenario import ScenarioError, load_scenario

    path, overrides = _source(args, extra)
    try:
        return load_scenario(path, overrides, flags=_flags(args))
    except ScenarioError as exc:
        raise BadInput(str(exc)) from None


def check_size(args: argparse.Namespace, scenario: Scenario, designs: int) -> None:
    """A run estimated longer than a few minutes is refused unless ``--force``
    (workloads/scenario_checks.py says how the estimate is made and calibrated)."""
    from workloads.scenario_checks import LIMIT_S, estimate

    if RunArgs.of(args).force:
        return
    est = estimate(scenario, designs)
    if est.seconds > LIMIT_S:
        raise BadInput(f"{scenario.source}: {est.text()}; allowed: runs estimated under {LIMIT_S / 60:.0f} minutes "
                       "(lower run.duration_ns, run.max_events or the regions' pages), or --force to run it anyway")


def check_out(args: argparse.Namespace, default: Path | None = None) -> Path | None:
    """``--out`` (or the default folder) and ``--log`` can be written: checked before any run."""
    from rmapsim.outputs import OutputError, check_out_dir, check_out_file

    opts = RunArgs.of(args)
    try:
        checked = check_out_dir(opts.out) if opts.out else (check_out_dir(default, "the output folder")
                                                             if default is not None else None)
        if opts.log:
            check_out_file(opts.log, "--log")
    except OutputError as exc:
        raise BadInput(str(exc)) from None
    return checked


def _progress(label: str, quiet: bool) -> Progress:
    from rmapsim.progress import Progress

    return Progress(label, enabled=not quiet)


def _uninterrupted(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` with Ctrl-C deferred until it returns (rmapsim/outputs.py): the
    results of finished runs are written whole, then the interrupt is delivered."""
    from rmapsim.outputs import uninterrupted

    return uninterrupted(fn, *args, **kwargs)


def _write_results(results: JsonObject, out: Path, *, reports: bool = True) -> None:
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


@contextlib.contextmanager
def _event_log(args: argparse.Namespace) -> Iterator[EventLog | None]:
    """``--log FILE``: the run's event log (written whole, or not at all when interrupted)."""
    path = RunArgs.of(args).log
    if not path:
        yield None
        return
    from concurrency.trace import open_event_log

    with open_event_log(path) as log:
        yield log


def _run_failed(exc: Exception) -> NoReturn:
    cause: BaseException | None = exc
    while cause is not None:  # Ctrl-C inside a simulated task is the user's, not a crash
        if isinstance(cause, KeyboardInterrupt):
            raise KeyboardInterrupt
        cause = cause.__cause__
    diag.error("run_failed", f"rmapsim: run failed: {exc}")
    raise SystemExit(1) from None


def _run_designs(args: argparse.Namespace, scenario: Scenario, designs: list[str],
                 deadlocks: list[str] | None = None) -> JsonObject:
    """Synchronously (for callers that do not await, e.g. lockdep): progress is a thread.  With
    ``deadlocks``, a run that deadlocked (one design) gives its record as far as it went and its
    message is appended there, instead of ending the command."""
    from workloads.runner import RunFailed, _results, run_scenario

    opts = RunArgs.of(args)
    out = Path(opts.out) if opts.out else None
    trace_dir = out if opts.trace and out is not None else None
    with _progress(f"{scenario.name}: {', '.join(designs)}", opts.quiet):
        try:
            with _event_log(args) as log:
                return run_scenario(scenario, designs=designs, trace_dir=trace_dir, log=log)
        except RunFailed as exc:
            if deadlocks is None or exc.record is None or len(designs) != 1:
                _run_failed(exc)
            deadlocks.append(str(exc))
            return _results(scenario, [exc.record])


def _default_out(scenario: Scenario) -> Path:
    return Path(f"rmapsim-out/{scenario.name}-seed{scenario.seed}")


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum`` (``--jobs -3`` is bad input)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not an integer; allowed: {minimum} or more") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is below {minimum}; allowed: {minimum} or more")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse

