"""What the command modules share: input resolution, loading, running and saving designs.

rmapsim/cli.py and the commands it hosts (rmapsim/explore_cmd.py, rmapsim/lockdep_cmd.py, ...)
import these from here, so no command module imports the command line that imports it.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from rmapsim import diag

__all__ = ["BadInput", "builtin_scenarios"]


class BadInput(Exception):
    """Reported as ``rmapsim: error: ...`` with exit status 2."""


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


@contextlib.contextmanager
def _event_log(args: argparse.Namespace) -> Iterator[Any]:
    """``--log FILE``: the run's event log (written whole, or not at all when interrupted)."""
    path = getattr(args, "log", None)
    if not path:
        yield None
        return
    from concurrency.trace import open_event_log

    with open_event_log(path) as log:
        yield log


def _run_failed(exc: Exception) -> NoReturn:
    diag.error("run_failed", f"rmapsim: run failed: {exc}")
    raise SystemExit(1) from None


def _run_designs(args: argparse.Namespace, scenario: Any, designs: list[str]) -> dict[str, Any]:
    """Synchronously (for callers that do not await, e.g. lockdep): progress is a thread."""
    from workloads.runner import RunFailed, run_scenario

    out = Path(args.out) if args.out else None
    trace_dir = out if getattr(args, "trace", False) and out is not None else None
    with _progress(f"{scenario.name}: {', '.join(designs)}", args.quiet):
        try:
            with _event_log(args) as log:
                return run_scenario(scenario, designs=designs, trace_dir=trace_dir, log=log)
        except RunFailed as exc:
            _run_failed(exc)


def _default_out(scenario: Any) -> Path:
    return Path(f"rmapsim-out/{scenario.name}-seed{scenario.seed}")
