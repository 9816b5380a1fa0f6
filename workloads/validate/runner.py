"""Running the checks: the list of every check, in the published order, and ``run_validation``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workloads.runner import RunFailed
from workloads.validate import h1, h3, h4, h5, h6, h8, l2a, n4
from workloads.validate.common import SCHEMA, SEED, Check, CheckResult
from workloads.validate.costs import unsourced_constants
from workloads.validate.h5 import _H5_CACHE
from workloads.validate.l2a import _L2A_CACHE

__all__ = ["CHECKS", "run_validation"]

# Every check, in the order of the published results (each module owns its checks' claims).
CHECKS: list[Check] = [h1.CHECK, h3.CHECK, h4.CHECK, h5.CHECK_H5A, h5.CHECK_H5B, h6.CHECK, h8.CHECK,
                       l2a.CHECK_L2A, l2a.CHECK_LAZY, n4.CHECK]


def run_validation(*, full: bool = False, only: list[str] | None = None, seed: int | None = None,
                   on_done: Callable[[CheckResult], None] | None = None) -> dict[str, Any]:
    """Run the checks (all, or the ids in ``only``); returns the validate.json document (JSON, read
    by index in rmapsim/validate_cmd.py and the tests, hence ``Any``).  ``seed``: every validation
    scenario runs at that seed instead of its own (the document then records it).

    A check whose simulation fails (a deadlock, a task exception) is reported as failed with the
    error, and the others still run.
    """
    _H5_CACHE.clear()
    _L2A_CACHE.clear()
    wanted = [c for c in CHECKS if only is None or c.id in only]
    if only is not None:
        unknown = sorted(set(only) - {c.id for c in CHECKS})
        if unknown:
            raise KeyError(f"unknown check(s) {unknown}; known: {[c.id for c in CHECKS]}")
    token = SEED.set(seed)
    try:
        results = _run_checks(wanted, full, on_done)
    finally:
        SEED.reset(token)
    _H5_CACHE.clear()
    _L2A_CACHE.clear()
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "mode": "full" if full else "small",
        "passed": all(r.passed for r in results),
        "checks": [r.to_dict() for r in results],
        "unsourced_constants": unsourced_constants(),
    }
    if seed is not None:
        doc["seed"] = seed
    return doc


def _run_checks(wanted: list[Check], full: bool,
                on_done: Callable[[CheckResult], None] | None) -> list[CheckResult]:
    results: list[CheckResult] = []
    for check in wanted:
        try:
            result = check.run(check, full)
        except RunFailed as exc:
            # The first lines say what failed (a deadlock report can run to thousands of lines).
            lines = str(exc).splitlines()
            keep = [lines[0][:300]] + [line[:300] for line in lines[1:] if line.startswith("wait-for cycle")]
            more = len(lines) - len(keep)
            brief = "; ".join(keep) + (f" (+{more} line(s) of task states)" if more else "")
            result = CheckResult(check.id, check.claim, check.source, check.published, None, "run failed",
                                 "(the simulation did not complete)", False, {"error": brief},
                                 [f"simulation failed: {brief}"])
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results
