"""H1 (2010): one anon_vma per fork family vs anon_vma chains (module docstring of workloads/validate)."""

from __future__ import annotations

from workloads.actor_kinds import ParamValue
from workloads.validate.common import (
    BANDS,
    MIGRATION_WALKS,
    MS,
    Check,
    CheckResult,
    _lock,
    _point_wait,
    _result,
    _run,
    _scenario,
    _walks_per_vma,
)

__all__ = ["CHECK"]


def _h1(check: Check, full: bool) -> CheckResult:
    """Mean VMAs visited per rmap walk (migration's try_to_migrate + remove_migration_ptes) over
    the children's COW copies: one family anon_vma vs anon_vma chains."""
    children = 1000 if full else 16
    actors: dict[str, dict[str, ParamValue]] = {"fan_out": {"children": children}}
    overrides: dict[str, object] = {}
    if full:
        # 1000 forks take ~7 ms of virtual time; the walks start at 15 ms and the children sleep
        # through them.
        actors["fan_out"]["child_sleep_ns"] = 30 * MS
        actors["migrate"] = {"interval_ns": 50_000, "start_ns": 15 * MS}
        overrides["run.duration_ns"] = 30 * MS
    per_walk: dict[bool, float] = {}
    details: dict[str, object] = {"children": children}
    for single in (True, False):
        sc = _scenario("h1-single-anon-vma", {**overrides, "switches.anon_vma.single_anon_vma": single},
                       actors=actors)
        rec = _run(sc)
        walks, visited = _walks_per_vma(rec)
        per_walk[single] = visited / walks if walks else 0.0
        key = "single_anon_vma" if single else "anon_vma_chains"
        details[key] = {"walks": walks, "vmas_visited": visited, "vmas_per_walk": round(per_walk[single], 2),
                        "rmap_lock_wait_ns": _point_wait(_lock(rec), *MIGRATION_WALKS)["waittime_total_ns"]}
    ratio = per_walk[True] / per_walk[False] if per_walk[False] else 0.0
    band = BANDS["H1_ratio_per_child"]
    passed = ratio / children in band
    expected = (f"single >> chain: ratio >= {band.lo or 0:.2f} x N = {(band.lo or 0) * children:.1f} "
                f"(N = {children} children; published: a walk visits all N processes vs the one that can "
                "map the page)")
    text = f"{ratio:.1f}x ({per_walk[True]:.1f} vs {per_walk[False]:.2f} VMAs/walk)"
    return _result(check, ratio, text, expected, passed, details)

CHECK = Check("H1", "one anon_vma per fork family makes every folio's rmap walk scan every process; anon_vma chains "
              "cut it to the processes that can map the folio", "[H1] R. van Riel, 5beb49305251 (2010)",
              "1000 processes: O(N) scanning per page; catastrophic for AIM7", _h1)
