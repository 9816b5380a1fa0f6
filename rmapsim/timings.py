"""Where one command's time goes: imports, simulation, reports (for ``rmapsim bench run``).

Off unless ``RMAPSIM_TIMINGS=FILE`` is set: then the command line notes the CPU seconds spent
before :func:`rmapsim.cli.main` starts (interpreter start-up and imports), and the CPU and wall
seconds of each phase it wraps in :func:`phase`, and writes them to FILE as JSON at exit.  CPU
seconds include the worker processes that ran designs (reaped before the phase ends).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ENV", "cpu_seconds", "phase", "start", "write"]

ENV = "RMAPSIM_TIMINGS"
_phases: dict[str, dict[str, float]] = {}
_state: dict[str, float] = {}


def cpu_seconds() -> float:
    """This process's CPU seconds plus those of its reaped children (design workers, dot)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def start() -> None:
    """At the start of ``main``: everything so far was start-up and imports."""
    if os.environ.get(ENV):
        _state["import_cpu_s"] = cpu_seconds()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the CPU and wall seconds of the block to phase ``name`` (when timings are on)."""
    if "import_cpu_s" not in _state:
        yield
        return
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    try:
        yield
    finally:
        slot = _phases.setdefault(name, {"cpu_s": 0.0, "wall_s": 0.0})
        slot["cpu_s"] += cpu_seconds() - cpu0
        slot["wall_s"] += time.perf_counter() - wall0


def write() -> None:
    path = os.environ.get(ENV)
    if not path or "import_cpu_s" not in _state:
        return
    doc = {"import_cpu_s": _state["import_cpu_s"], "phases": _phases, "total_cpu_s": cpu_seconds()}
    Path(path).write_text(json.dumps(doc, sort_keys=True))
