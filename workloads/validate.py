"""Validation: the published kernel results of reference §4 (and the §6.4 calibration anchors),
each reproduced as a scenario plus a check of its direction and rough size, with its citation.

Every check runs scenarios from ``workloads/scenarios/validate/`` (small sizes by default, the
published sizes with ``full=True``), measures one figure from the result records and compares it
with the published one.  A check passes when the simulated figure has the published direction and
lies in the stated band (:data:`BANDS`).  Where the source gives a number, "rough size" means
*within a factor of three of it*, except where the source states a bound (H6: at most twice the
VMAs) or the band was fixed with the task (H5a: -25%..+2%; L2a: 10-100 MB); where the source gives
no number, only the direction is checked.  The bands were written down from the sources, never
fitted to the model: a check the model cannot reproduce stays failing, and that is a finding about
the model.

The checks (tags resolve in docs/kernel-rmap.md §9):

* ``H1`` (2010) one shared anon_vma per family makes every folio's walk visit every process;
  anon_vma chains cut it to the processes that can map the folio.
* ``H3`` (2011) anon_vma_clone locking the root once per AVC, the lock a mutex, costs fork
  throughput against locking it once per clone (``lock_anon_vma_root``).
* ``H4`` (2012) rmap walks under an exclusive mutex during NUMA migration leave the migrating
  threads waiting (published: 96.43% in ``schedule``); a read-locked rwsem flattens it.
* ``H5a``/``H5b`` (2013) exim, clients = cores: the rwsem 8% below the mutex; rwsem writer
  spinning 30% fewer context switches.
* ``H6`` (2015) a constantly forking chain grows anon_vmas linearly with depth without the reuse
  rule and stays within twice the VMAs with it.
* ``H8`` (2022) reclaim sleeping on the rmap read lock behind fork/exit/mmap/munmap writers; the
  trylock removes the waits and keeps contended folios instead.
* ``L2a`` (2026) rmap metadata of an Android-like system after boot (published anon_vma 20,426 KB
  + AVC 18,866 KB) and what the COW context needs for the same system; the anon_vma and AVC bytes
  of all three designs after boot and after launching 24 apps are shown beside it.
* ``LAZY`` (2026) ANON_VMA_LAZY's published savings on that system: anon_vma -97% / -92% and
  AVC -57% / -50.5% after boot / after 24 apps, checked against ``anon_vma_lazy`` on the same runs.
  The band is a factor of three around the published *remaining* fraction (3.0% and 7.96% of the
  anon_vma bytes, 43.0% and 49.5% of the AVC bytes), capped at 100% (the direction: a saving).
* ``N4`` (calibration) a minor read fault's median latency, about 1.0 µs.

Sizing of the ``L2a`` full run (the assumptions; object sizes are the model's x86-64 ones,
104 B per anon_vma and 64 B per AVC, applied to the phone's slab totals):

* after launching 24 apps the slabs grew by 12,854 KB of anon_vma (126,561 objects) and 12,611 KB
  of AVC (201,776): per app 5,273 anon_vmas and 8,407 AVCs.  A zygote child gets one anon_vma and
  two AVCs per faulted zygote VMA it inherits (Z of them) and one of each per private VMA
  (P_app): Z + P_app = 5,273 and 2Z + P_app = 8,407, so Z = 3,134 and P_app = 2,139;
* after boot 20,426 KB of anon_vma (201,118 objects) and 18,866 KB of AVC (301,856): the zygote
  children number A with Z·A = 301,856 - 201,118 (the extra AVC per inherited VMA), so A = 32, and
  the private VMAs of the whole system (apps and native daemons) P = 201,118 - Z(1 + A) = 97,696;
* a private (never inherited) VMA costs one anon_vma and one AVC whichever mm holds it, so the
  model gathers all of them in one "private" process (the fan_out actor maps only one fresh region
  per child).  The full run therefore reproduces the published total by construction of its
  sizes; what it checks is that the model's accounting (sizes, two AVCs per inherited VMA, no reuse
  while the zygote lives) lands there, and it gives the COW-context figure for the same system.
* after launching 24 apps: 24 more zygote children and 24 x P_app more private VMAs.  Under
  ANON_VMA_LAZY a private VMA costs nothing until its process forks, and then (the fork upgrade)
  one anon_vma and one AVC for good.  82 of 200 top apps fork at runtime ([N5], 41%): 10 of the
  24 apps (rounded) fork one short-lived helper (ASSUME: a fork that exits at once, so mainline's
  figures, derived above without app forks, keep no trace of it).  Their private VMAs live in a
  third process, "forking", which forks its helper at the start of the workload.
* small mode keeps those ratios with a hundredth of the VMAs: Z = 31, P = 977, P_app = 21, the
  same 32 + 24 apps and 10 forking apps.

Peak object counts come from the result record (``memory``: ``peak_anon_vma_count``,
``peak_avc_count`` and the counts when the bytes peaked); H6's anon_vmas per VMA is recorded
during the run by :class:`_PerVmaProbe`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.process import Region
from actors.world import World
from mm.anon_vma import ANON_VMA_BYTES, AVC_BYTES
from mm.costs import CostModel
from mm.instrument import MmInstrument
from workloads.runner import RunFailed, run_one
from workloads.scenario import ProcessSpec, Scenario, load_scenario

__all__ = [
    "BANDS",
    "CHECKS",
    "SCENARIO_DIR",
    "Band",
    "Check",
    "CheckResult",
    "run_validation",
    "unsourced_constants",
]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios" / "validate"
SCHEMA = "rmapsim.validate/1"
MS = 1_000_000


@dataclass(frozen=True)
class Band:
    """The accepted range of a simulated figure (either end open)."""

    lo: float | None = None
    hi: float | None = None

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float):
            return False
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)


# Every band, by name, so that a test can override one (and see the check fail).  Written from the
# sources (see the module docstring): a factor of three around a published figure, the direction
# where there is none.
BANDS: dict[str, Band] = {
    # single/chain ratio of VMAs per walk, as a fraction of the children N (published: O(N) vs 1)
    "H1_ratio_per_child": Band(lo=1 / 3),
    # per-AVC vs per-clone locking: fork throughput change and fork mean latency change
    "H3_throughput": Band(hi=-0.005),
    "H3_latency": Band(lo=0.005),
    # migration threads' share of time waiting for the rmap lock under the mutex (published 96.43%)
    "H4_mutex_wait": Band(lo=0.9643 / 3),
    # rwsem's share as a fraction of the mutex's ("nicely flat")
    "H4_rwsem_vs_mutex": Band(hi=0.1),
    # rwsem vs mutex fork throughput (published -8%; the band the brief gives)
    "H5_throughput": Band(lo=-0.25, hi=0.02),
    # rwsem writer spinning vs none: context switches (published -30%)
    "H5_context_switches": Band(lo=-0.90, hi=-0.10),
    # doubling the chain depth without reuse: growth of peak anon_vmas per VMA (linear: 2)
    "H6_growth": Band(lo=1.5, hi=2.5),
    # with reuse: peak anon_vmas per VMA that has one (published: no more than two)
    "H6_reuse": Band(hi=2.0),
    # blocking reclaim's rmap read waits vs the trylock's (at least ten times), and kept folios
    "H8_wait_ratio": Band(lo=10.0),
    "H8_keep_contended": Band(lo=1),
    # --full: anon_vma + AVC bytes at the peak (published 39.3 MB after boot)
    "L2a_full_mb": Band(lo=10.0, hi=100.0),
    # COW-context bytes as a fraction of anon_vma + AVC bytes
    "L2a_cow_fraction": Band(hi=0.1),
    # ANON_VMA_LAZY / mainline bytes, within 3x of the published remaining fraction, at most 1
    # (published: anon_vma 613.75 / 20,426.4 KB after boot and 2,648.12 / 33,280 KB after 24 apps;
    # AVC 8,112.06 / 18,865.8 KB and 15,576.8 / 31,477.1 KB)
    "LAZY_anon_vma_boot": Band(lo=613.75 / 20426.4 / 3, hi=3 * 613.75 / 20426.4),
    "LAZY_anon_vma_apps": Band(lo=2648.12 / 33280 / 3, hi=3 * 2648.12 / 33280),
    "LAZY_avc_boot": Band(lo=8112.06 / 18865.8 / 3, hi=1.0),
    "LAZY_avc_apps": Band(lo=15576.8 / 31477.1 / 3, hi=1.0),
    # read fault median in µs (published ~1.0 µs)
    "N4_fault_us": Band(lo=1.0 / 3, hi=3.0),
}


@dataclass
class CheckResult:
    """One check's outcome: the figure, the verdict and what it rests on."""

    id: str
    claim: str
    source: str
    published: str
    value: float | None
    value_text: str
    expected: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` shape: claim, source, value, expected, passed."""
        return {"claim": self.claim, "source": self.source, "value": self.value, "expected": self.expected,
                "passed": self.passed}

    def to_dict(self) -> dict[str, Any]:
        """Everything, for validate.json."""
        return {**self.to_json(), "id": self.id, "published": self.published, "value_text": self.value_text,
                "details": self.details, "notes": list(self.notes)}


@dataclass(frozen=True)
class Check:
    id: str
    claim: str
    source: str
    published: str
    run: Callable[[Check, bool], CheckResult]


# -- helpers ------------------------------------------------------------------------------------


def _scenario(name: str, overrides: dict[str, Any] | None = None, *,
              actors: dict[str, dict[str, Any]] | None = None,
              regions: dict[str, tuple[Region, ...]] | None = None) -> Scenario:
    """A validation scenario with ``--set``-style overrides, actor parameters by actor kind and
    process regions by process name (what a TOML override cannot reach)."""
    scenario = load_scenario(SCENARIO_DIR / f"{name}.toml", overrides)
    if actors:
        specs = []
        for spec in scenario.actors:
            change = actors.get(spec.kind, {})
            unknown = set(change) - set(spec.params)
            if unknown:
                raise KeyError(f"{name}: actor {spec.kind!r} has no parameter(s) {sorted(unknown)}")
            specs.append(dataclasses.replace(spec, params={**spec.params, **change}))
        scenario.actors = tuple(specs)
    if regions:
        scenario.processes = tuple(dataclasses.replace(p, regions=regions.get(p.name, p.regions))
                                   for p in scenario.processes)
    return scenario


def _run(scenario: Scenario, design: str = "anon_vma") -> dict[str, Any]:
    record = run_one(scenario, design)
    if record["outcome"]["reason"] != "completed":
        raise RunFailed(f"{scenario.name} under {design}: stopped by {record['outcome']['reason']}")
    return record


def _lock(record: dict[str, Any], prefix: str = "anon_vma->") -> dict[str, Any]:
    """The record of the family lock class (``anon_vma->rwsem`` or ``anon_vma->mutex``)."""
    for lock in record["locks"]:
        if lock["name"].startswith(prefix):
            found: dict[str, Any] = lock
            return found
    return {"name": prefix, "write": {}, "events": {}}


# Migration's rmap walks, the contention points of its rmap lock waits: [H4]'s profile splits them
# 49.39% try_to_unmap (now try_to_migrate) and 50.61% rmap_walk (remove_migration_ptes).
MIGRATION_WALKS = ("try_to_migrate", "remove_migration_ptes")


def _point_wait(lock: dict[str, Any], *points: str) -> dict[str, int]:
    """Waits at the given contention points (the waiting task's operation or rmap walk), both sides
    summed."""
    out = {"contentions": 0, "waittime_total_ns": 0, "waittime_max_ns": 0}
    for side, point in ((s, p) for s in ("write", "read") for p in points):
        rec = lock.get(side, {}).get("contention_point_wait", {}).get(point)
        if rec:
            out["contentions"] += rec["contentions"]
            out["waittime_total_ns"] += rec["waittime_total_ns"]
            out["waittime_max_ns"] = max(out["waittime_max_ns"], rec["waittime_max_ns"])
    return out


def _walks_per_vma(record: dict[str, Any]) -> tuple[int, int]:
    walks = sum(w["walks"] - w["contended"] for w in record["walks"].values())
    visited = sum(w["vmas_visited"] for w in record["walks"].values())
    return walks, visited


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _change(new: float, old: float) -> float:
    return new / old - 1 if old else 0.0


def _band_text(band: Band, fmt: Callable[[float], str]) -> str:
    if band.lo is not None and band.hi is not None:
        return f"{fmt(band.lo)}..{fmt(band.hi)}"
    if band.lo is not None:
        return f">= {fmt(band.lo)}"
    if band.hi is not None:
        return f"<= {fmt(band.hi)}"
    return "any"


class _PerVmaProbe(MmInstrument):
    """The largest number of live anon_vmas per VMA that has one, during a run (H6's bound; the
    record has the peak counts, not this ratio).

    Installed as the scenario's ``setup``, it attaches itself as an instrument: the anon_vma
    design reports ``on_anon_vma_grow`` after every anon_vma and AVC allocation, so the maximum is
    exact and the run is not perturbed.
    """

    def __init__(self) -> None:
        self.max_per_vma = 0.0

    async def __call__(self, world: World) -> None:
        world.sys.add_instrument(self)

    def on_anon_vma_grow(self, anon_vmas: int, vmas_with_anon_vma: int) -> None:
        if vmas_with_anon_vma:
            self.max_per_vma = max(self.max_per_vma, anon_vmas / vmas_with_anon_vma)


def _result(check: Check, value: float, value_text: str, expected: str, passed: bool,
            details: dict[str, Any], notes: list[str] | None = None) -> CheckResult:
    return CheckResult(check.id, check.claim, check.source, check.published, round(value, 6), value_text,
                       expected, passed, details, notes or [])


# -- the checks ---------------------------------------------------------------------------------


def _h1(check: Check, full: bool) -> CheckResult:
    """Mean VMAs visited per rmap walk (migration's try_to_migrate + remove_migration_ptes) over
    the children's COW copies: one family anon_vma vs anon_vma chains."""
    children = 1000 if full else 16
    actors: dict[str, dict[str, Any]] = {"fan_out": {"children": children}}
    overrides: dict[str, Any] = {}
    if full:
        # 1000 forks take ~10 ms of virtual time; the children sleep through the walks.
        actors["fan_out"]["child_sleep_ns"] = 30 * MS
        actors["migrate"] = {"interval_ns": 50_000}
        overrides["run.duration_ns"] = 30 * MS
    per_walk: dict[bool, float] = {}
    details: dict[str, Any] = {"children": children}
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


def _h3(check: Check, full: bool) -> CheckResult:
    """Fork throughput and mean fork latency, root mutex locked per AVC vs once per clone."""
    cpus = 16 if full else 8
    overrides: dict[str, Any] = {"run.cpus": cpus, "run.duration_ns": 10 * MS} if full else {}
    actors = {"fork_exit": {"prefork": cpus}} if full else {}
    out: dict[bool, dict[str, Any]] = {}
    for per_avc in (False, True):
        rec = _run(_scenario("h3-clone-lock-per-avc", {**overrides, "switches.anon_vma.lock_per_avc": per_avc},
                             actors=actors))
        lock = _lock(rec)
        out[per_avc] = {"fork_per_s": rec["throughput"]["fork"], "fork_mean_ns": rec["operations"]["fork"]["mean_ns"],
                        "fork_p99_ns": rec["operations"]["fork"]["p99_ns"],
                        "root_acquisitions": lock["write"].get("acquisitions", 0),
                        "root_contentions": lock["write"].get("contentions", 0),
                        "root_wait_ns": lock["write"].get("waittime_total_ns", 0),
                        "mutex_handoffs": lock.get("events", {}).get("mutex_handoff_set", 0)}
    thr = _change(out[True]["fork_per_s"], out[False]["fork_per_s"])
    lat = _change(out[True]["fork_mean_ns"], out[False]["fork_mean_ns"])
    passed = thr in BANDS["H3_throughput"] and lat in BANDS["H3_latency"]
    expected = (f"per-AVC locking: fork throughput {_band_text(BANDS['H3_throughput'], _pct)} and mean fork latency "
                f"{_band_text(BANDS['H3_latency'], _pct)} (published: 'big performance regression', no figure: "
                "direction only)")
    text = f"throughput {_pct(thr)}, fork latency {_pct(lat)}"
    notes = []
    if not passed:
        extra = out[True]["root_acquisitions"] / max(out[False]["root_acquisitions"], 1) - 1
        notes.append(f"Not reproduced: per-AVC locking takes the root {_pct(extra)} more often, but on a saturated "
                     "lock throughput follows the total hold time, and each extra change of owner adds only "
                     "the protected lines' move (bounce_ns) while the fix moved the AVC allocations under the "
                     "lock.  The unlocker's wake-up work (wait_lock, try_to_wake_up) is not costed.")
    return _result(check, thr, text, expected, passed, {"per_clone": out[False], "per_avc": out[True], "cpus": cpus},
                   notes)


def _h4(check: Check, full: bool) -> CheckResult:
    """Share of the migrating threads' time spent waiting for the rmap lock: mutex vs rwsem."""
    cpus = 32 if full else 16
    duration = (5 if full else 1) * MS
    share: dict[str, float] = {}
    details: dict[str, Any] = {"cpus": cpus, "threads": cpus}
    # 2012: the mutex spun (MUTEX_SPIN_ON_OWNER); the 3.8 rwsem did not spin (the scenario's [mutex]
    # and [rwsem] tables).
    for lock_kind in ("mutex", "rwsem"):
        sc = _scenario("h4-numa-migration", {"run.cpus": cpus, "run.duration_ns": duration,
                                             "switches.anon_vma.rmap_lock": lock_kind},
                       actors={"migrate": {"threads": cpus}})
        rec = _run(sc)
        wait = _point_wait(_lock(rec), *MIGRATION_WALKS)
        share[lock_kind] = wait["waittime_total_ns"] / (cpus * duration)
        cpu = rec["cpu_time"]
        total = sum(cpu.values()) or 1
        details[lock_kind] = {"wait_share": round(share[lock_kind], 4),
                              "migrations_per_s": rec["throughput"].get("migrate", 0),
                              "cpu_time_share": {k: round(v / total, 4) for k, v in sorted(cpu.items())}}
    flat = share["rwsem"] / share["mutex"] if share["mutex"] else 1.0
    passed = share["mutex"] in BANDS["H4_mutex_wait"] and flat in BANDS["H4_rwsem_vs_mutex"]
    lo = BANDS["H4_mutex_wait"].lo or 0
    expected = (f"mutex >= {100 * lo:.0f}% of the threads' time waiting (published 96.43% in schedule; within 3x), "
                f"rwsem <= {BANDS['H4_rwsem_vs_mutex'].hi} x the mutex's (published: 'nicely flat')")
    text = f"mutex {100 * share['mutex']:.1f}% vs rwsem {100 * share['rwsem']:.1f}% waiting"
    return _result(check, share["mutex"], text, expected, passed, details)


def _h5_runs(full: bool) -> dict[str, dict[str, Any]]:
    # --full: a 4-socket Westmere-EX, 40 cores, one exim server per core.
    overrides: dict[str, Any] = {"run.cpus": 40, "run.duration_ns": 10 * MS} if full else {}
    actors = {"fork_exit": {"prefork": 40}} if full else {}
    out: dict[str, dict[str, Any]] = {}
    # 2013 (the scenario's [mutex] and [rwsem] tables): the mutex spun (MUTEX_SPIN_ON_OWNER) with no
    # hand-off; the rwsem neither spun nor stole as a reader nor handed off.  Tim Chen's writer
    # spinning patch is rwsem.spin = true.
    for name, lock_kind, spin in (("mutex", "mutex", False), ("rwsem", "rwsem", False),
                                  ("rwsem_spin", "rwsem", True)):
        rec = _run(_scenario("h5-exim", {**overrides, "rwsem.spin": spin, "switches.anon_vma.rmap_lock": lock_kind},
                             actors=actors))
        lock = _lock(rec)
        out[name] = {"fork_per_s": rec["throughput"]["fork"], "fork_mean_ns": rec["operations"]["fork"]["mean_ns"],
                     "forks": rec["operations"]["fork"]["count"], "context_switches": rec["context_switches"],
                     "root_contentions": lock["write"].get("contentions", 0),
                     "root_wait_ns": lock["write"].get("waittime_total_ns", 0),
                     "lock_events": lock.get("events", {})}
    return out


_H5_CACHE: dict[bool, dict[str, dict[str, Any]]] = {}


def _h5(full: bool) -> dict[str, dict[str, Any]]:
    """H5a and H5b share their runs."""
    if full not in _H5_CACHE:
        _H5_CACHE[full] = _h5_runs(full)
    return _H5_CACHE[full]


def _h5a(check: Check, full: bool) -> CheckResult:
    runs = _h5(full)
    thr = _change(runs["rwsem"]["fork_per_s"], runs["mutex"]["fork_per_s"])
    band = BANDS["H5_throughput"]
    passed = thr in band
    expected = f"rwsem <= mutex: {_band_text(band, _pct)} (published -8%)"
    mutex, rwsem = runs["mutex"], runs["rwsem"]
    notes = [f"context switches per fork: mutex {mutex['context_switches'] / max(mutex['forks'], 1):.2f}, "
             f"rwsem {rwsem['context_switches'] / max(rwsem['forks'], 1):.2f}: the rwsem's writers sleep where "
             "the mutex's spin, and each hand-off to a sleeping writer costs a wake-up (ctx_switch_ns, an "
             "ASSUME) while the lock is saturated"]
    details: dict[str, Any] = {"mutex": runs["mutex"], "rwsem": runs["rwsem"]}
    if full:
        # The regime matters: how far the rwsem falls behind grows with the lock's saturation.
        curve = {cpus: _h5_pair(cpus) for cpus in (8, 16, 24)}
        curve[40] = thr
        details["rwsem_vs_mutex_by_cpus"] = {str(c): round(v, 4) for c, v in sorted(curve.items())}
        notes.append("rwsem vs mutex fork throughput by CPUs (= servers): "
                     + ", ".join(f"{c}: {_pct(v)}" for c, v in sorted(curve.items())))
    if not passed and thr < (band.lo or 0):
        notes.append("The model's rwsem loses more than published: the size of the loss rests on how saturated the "
                     "lock is (the scenario's per-message work, an assumption) and on ctx_switch_ns (ASSUME), "
                     "and on costs the model leaves out that also slow the mutex (the lock word's cache-line "
                     "traffic, the MCS hand-over between sockets).")
    return _result(check, thr, f"{_pct(thr)} forks/s", expected, passed, details, notes)


def _h5_pair(cpus: int) -> float:
    """rwsem vs mutex fork throughput with one exim server per CPU."""
    fork_per_s = {}
    for lock_kind in ("mutex", "rwsem"):
        rec = _run(_scenario("h5-exim", {"run.cpus": cpus, "switches.anon_vma.rmap_lock": lock_kind},
                             actors={"fork_exit": {"prefork": cpus}}))
        fork_per_s[lock_kind] = rec["throughput"]["fork"]
    return _change(fork_per_s["rwsem"], fork_per_s["mutex"])


def _h5b(check: Check, full: bool) -> CheckResult:
    """Context switches per fork (per message), rwsem writer spinning vs none.

    Per fork, because the two runs do different amounts of work: the published runs had about the
    same throughput ("did not recover throughput"), so there the raw and per-message changes agree;
    here spinning changes throughput too, and the raw count would mix the two effects.
    """
    runs = _h5(full)
    spin, nospin = runs["rwsem_spin"], runs["rwsem"]
    per_fork = _change(spin["context_switches"] / max(spin["fork_per_s"], 1e-9),
                       nospin["context_switches"] / max(nospin["fork_per_s"], 1e-9))
    raw = _change(spin["context_switches"], nospin["context_switches"])
    band = BANDS["H5_context_switches"]
    passed = per_fork in band
    expected = f"fewer per fork with spinning: {_band_text(band, _pct)} (published -30%; within 3x)"
    thr = _change(spin["fork_per_s"], nospin["fork_per_s"])
    text = f"{_pct(per_fork)} context switches per fork (raw {_pct(raw)}, forks/s {_pct(thr)})"
    return _result(check, per_fork, text, expected, passed, {"rwsem": nospin, "rwsem_spin": spin})


def _h6(check: Check, full: bool) -> CheckResult:
    """Peak anon_vmas per VMA in a constantly forking chain: with and without the reuse rule."""
    depth = 300 if full else 40
    details: dict[str, Any] = {"depth": depth}
    per_vma: dict[str, float] = {}
    nvmas = 0
    for label, reuse, d in (("no_reuse", False, depth), ("no_reuse_half_depth", False, depth // 2),
                            ("reuse", True, depth)):
        sc = _scenario("h6-fork-chain", {"switches.anon_vma.reuse": reuse}, actors={"fork_chain": {"depth": d}})
        nvmas = len(sc.processes[0].regions)
        probe = _PerVmaProbe()
        sc.setup = probe
        rec = _run(sc)
        per_vma[label] = probe.max_per_vma
        memory = rec["memory"]
        details[label] = {"depth": d, "forks": rec["operations"]["fork"]["count"],
                          "peak_anon_vmas": memory["peak_anon_vma_count"], "peak_avcs": memory["peak_avc_count"],
                          "max_anon_vmas_per_vma": round(probe.max_per_vma, 3),
                          "peak_total_bytes": memory["peak_total_bytes"]}
    details["vmas_per_process"] = nvmas
    growth = per_vma["no_reuse"] / per_vma["no_reuse_half_depth"] if per_vma["no_reuse_half_depth"] else 0.0
    passed = growth in BANDS["H6_growth"] and per_vma["reuse"] in BANDS["H6_reuse"]
    g = BANDS["H6_growth"]
    expected = (f"without reuse linear in depth (doubling the depth multiplies it by {g.lo}..{g.hi}); with reuse "
                f"<= {BANDS['H6_reuse'].hi} anon_vmas per VMA (published: 'no more than two times')")
    text = (f"anon_vmas per VMA: no reuse {per_vma['no_reuse']:.1f} (x{growth:.2f} from depth {depth // 2} "
            f"to {depth}), reuse {per_vma['reuse']:.2f}")
    return _result(check, per_vma["no_reuse"], text, expected, passed, details)


def _h8(check: Check, full: bool) -> CheckResult:
    """Reclaim's read-side waits on the family rwsem in folio_referenced (kswapd and direct
    reclaim), blocking read vs trylock; try_to_unmap's blocking read is reported beside them."""
    overrides: dict[str, Any] = {}
    actors: dict[str, dict[str, Any]] = {}
    if full:
        # Many forking servers on 8 CPUs, children computing for a millisecond: writers keep the
        # family lock busy and a woken reader waits for a CPU as well.
        # 10 ms of workload (the wind-down, every server exiting under pressure, takes ~60 ms more).
        # Longer runs cost minutes (30 ms: about 50 s for the pair) for a longest wait of the same order.
        overrides = {"run.cpus": 8, "run.duration_ns": 10 * MS}
        actors = {"fork_exit": {"prefork": 64, "interval_ns": 20_000, "child_lifetime_ns": MS}}
    out: dict[bool, dict[str, Any]] = {}
    for trylock in (False, True):
        rec = _run(_scenario("h8-reclaim-stall", {**overrides, "reclaim.trylock": trylock}, actors=actors))
        lock = _lock(rec, "anon_vma->rwsem")
        # folio_referenced's waits: the 2022 trylock is there; try_to_unmap still blocks on the read lock.
        wait = lock.get("read", {}).get("contention_point_wait", {}).get("folio_referenced", {})
        unmap = lock.get("read", {}).get("contention_point_wait", {}).get("try_to_unmap", {})
        out[trylock] = {"read_waits": wait.get("contentions", 0),
                        "read_wait_total_ns": wait.get("waittime_total_ns", 0),
                        "read_wait_max_ns": wait.get("waittime_max_ns", 0),
                        "keep_contended": rec["counters"].get("reclaim_keep_contended", 0),
                        "direct_reclaims": rec["counters"].get("direct_reclaim", 0),
                        "kswapd_batch_max_ns": rec["operations"].get("kswapd_batch", {}).get("max_ns", 0),
                        "folio_referenced_walks": rec["walks"].get("folio_referenced", {}).get("walks", 0),
                        "try_to_unmap_read_wait_total_ns": unmap.get("waittime_total_ns", 0)}
    blocking, trying = out[False], out[True]
    ratio = blocking["read_wait_total_ns"] / max(1, trying["read_wait_total_ns"])
    passed = (blocking["read_wait_total_ns"] > 0 and ratio in BANDS["H8_wait_ratio"]
              and trying["keep_contended"] in BANDS["H8_keep_contended"])
    worst_ms = blocking["read_wait_max_ns"] / MS
    reached = worst_ms >= 100
    notes = [f"longest reclaim wait on the rmap read lock: {worst_ms:.3f} ms (published: 300 ms+, worst ~1 s); "
             f"the published order (>= 100 ms) is {'reached' if reached else 'NOT reached'}"
             + ("" if full else " (small mode checks the direction only)")]
    expected = (f"blocking read waits > 0 and >= {BANDS['H8_wait_ratio'].lo:.0f}x the trylock's (published: kswapd "
                "waits 300 ms+, the trylock removes it); trylock keeps contended folios (> 0)")
    text = (f"blocking {blocking['read_wait_total_ns'] / MS:.3f} ms total (max {worst_ms:.3f} ms) vs trylock "
            f"{trying['read_wait_total_ns'] / MS:.3f} ms; {trying['keep_contended']} folios kept")
    return _result(check, worst_ms, text, expected, passed, {"blocking": blocking, "trylock": trying}, notes)


# Android after boot and after 24 apps ([L2a]), derived in the module docstring; small mode keeps
# the ratios with a hundredth of the VMAs.
L2A_FULL = {"zygote_vmas": 3134, "apps": 32, "private_vmas": 97_696, "private_per_app": 2139}
L2A_SMALL = {"zygote_vmas": 31, "apps": 32, "private_vmas": 977, "private_per_app": 21}
L2A_LAUNCHED = 24  # apps launched after boot
L2A_FORKING = round(L2A_LAUNCHED * 82 / 200)  # [N5]: 82 of the top 200 apps call fork() at runtime
L2A_DESIGNS = ("anon_vma", "cow_context", "anon_vma_lazy")
L2A_PHASES = ("boot", "apps")
_L2A_CACHE: dict[bool, dict[str, dict[str, dict[str, Any]]]] = {}


def _l2a_scenario(full: bool, phase: str) -> Scenario:
    """The Android-like system after boot (``boot``) or after 24 more apps (``apps``).

    One-page VMAs with a page of gap, so that no two are merged or share an anon_vma.  Every
    process stays alive to the end, so the peak is the final state; the forking apps' helper
    (``apps`` only) exits at once, early.
    """
    sizes = L2A_FULL if full else L2A_SMALL
    long = (2_000 if full else 50) * MS
    launched = L2A_LAUNCHED if phase == "apps" else 0
    forking = L2A_FORKING if phase == "apps" else 0
    private = sizes["private_vmas"] + (launched - forking) * sizes["private_per_app"]
    regions = {"zygote": tuple(Region(2 * i, 1) for i in range(sizes["zygote_vmas"])),
               "private": tuple(Region(2 * i, 1) for i in range(private))}
    actors = {"fan_out": {"children": sizes["apps"] + launched, "stay_ns": long, "child_sleep_ns": long}}
    overrides = {"run.duration_ns": long, "run.max_events": 10**9}
    sc = _scenario("l2a-android-boot", overrides, actors=actors, regions=regions)
    if forking:
        zygote = next(a for a in sc.actors if a.kind == "fan_out")
        helper = dataclasses.replace(zygote, process="forking", params={
            **zygote.params, "children": 1, "stay_ns": long, "child_sleep_ns": 0, "child_lifetime_ns": 0,
            "child_cow_writes": 0, "child_new_pages": 0})
        forking_regions = tuple(Region(2 * i, 1) for i in range(forking * sizes["private_per_app"]))
        sc.processes = (*sc.processes, ProcessSpec("forking", forking_regions))
        sc.actors = (*sc.actors, helper)
    return sc


def _l2a_runs(full: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """L2a and LAZY share their runs: ``{phase: {design: memory at the peak}}``."""
    if full not in _L2A_CACHE:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for phase in L2A_PHASES:
            out[phase] = {}
            for design in L2A_DESIGNS:
                rec = _run(_l2a_scenario(full, phase), design)
                out[phase][design] = dict(rec["memory"])
        _L2A_CACHE[full] = out
    return _L2A_CACHE[full]


def _l2a_bytes(memory: dict[str, Any]) -> tuple[int, int]:
    """anon_vma and AVC bytes when the total peaked (0 and 0 for the COW context)."""
    return (int(memory.get("anon_vma_count_at_peak", 0)) * ANON_VMA_BYTES,
            int(memory.get("avc_count_at_peak", 0)) * AVC_BYTES)


def _l2a(check: Check, full: bool) -> CheckResult:
    """rmap metadata at the peak of an Android-like boot: anon_vma + AVC vs COW contexts; and every
    design's anon_vma and AVC bytes after boot and after 24 apps."""
    runs = _l2a_runs(full)
    boot = runs["boot"]
    anon_av, anon_avc = _l2a_bytes(boot["anon_vma"])
    anon_bytes = int(boot["anon_vma"]["peak_total_bytes"])
    cow_bytes = int(boot["cow_context"]["peak_total_bytes"])
    fraction = cow_bytes / anon_bytes if anon_bytes else 1.0
    mb = anon_bytes / 1e6
    passed = fraction in BANDS["L2a_cow_fraction"]
    frac_hi = BANDS["L2a_cow_fraction"].hi
    expected = f"cow_context <= {frac_hi} x anon_vma+AVC"
    if full:
        passed = passed and mb in BANDS["L2a_full_mb"]
        expected = (f"anon_vma+AVC {_band_text(BANDS['L2a_full_mb'], lambda x: f'{x:.0f}')} MB (published 20,426 KB + "
                    f"18,866 KB = 39.3 MB after boot), {expected}")
    else:
        expected += " (small mode: direction only)"
    sizes = L2A_FULL if full else L2A_SMALL
    details: dict[str, Any] = {"sizes": {**sizes, "launched": L2A_LAUNCHED, "forking": L2A_FORKING}}
    for phase in L2A_PHASES:
        details[phase] = {}
        for design in L2A_DESIGNS:
            memory = runs[phase][design]
            av_b, avc_b = _l2a_bytes(memory)
            row: dict[str, Any] = {"peak_total_bytes": int(memory["peak_total_bytes"])}
            if design != "cow_context":
                row.update({"anon_vmas_at_peak": int(memory["anon_vma_count_at_peak"]),
                            "avcs_at_peak": int(memory["avc_count_at_peak"]),
                            "anon_vma_bytes": av_b, "avc_bytes": avc_b})
            else:
                row.update({k: v for k, v in memory.items() if k.endswith("count")})
            details[phase][design] = row
    text = (f"anon_vma {anon_av / 1e6:.3f} MB + AVC {anon_avc / 1e6:.3f} MB = {mb:.3f} MB; "
            f"cow_context {cow_bytes / 1e3:.1f} kB ({100 * fraction:.2f}%)")
    notes = []
    for phase, label in (("boot", "after boot"), ("apps", f"after {L2A_LAUNCHED} apps")):
        parts = []
        for design in L2A_DESIGNS:
            row = details[phase][design]
            if design == "cow_context":
                parts.append(f"cow_context: {row['peak_total_bytes'] / 1e3:,.1f} kB")
            else:
                parts.append(f"{design}: anon_vma {row['anon_vma_bytes'] / 1e3:,.1f} kB + AVC "
                             f"{row['avc_bytes'] / 1e3:,.1f} kB")
        notes.append(f"{label}: " + "; ".join(parts))
    return _result(check, mb, text, expected, passed, details, notes)


def _lazy(check: Check, full: bool) -> CheckResult:
    """ANON_VMA_LAZY's anon_vma and AVC bytes as a fraction of mainline's, after boot and after 24
    apps, against the cover letter's measurements (the L2a runs)."""
    runs = _l2a_runs(full)
    ratios: dict[str, float] = {}
    details: dict[str, Any] = {}
    for phase in L2A_PHASES:
        main_av, main_avc = _l2a_bytes(runs[phase]["anon_vma"])
        lazy_av, lazy_avc = _l2a_bytes(runs[phase]["anon_vma_lazy"])
        ratios[f"anon_vma_{phase}"] = lazy_av / main_av if main_av else 1.0
        ratios[f"avc_{phase}"] = lazy_avc / main_avc if main_avc else 1.0
        details[phase] = {"anon_vma": {"mainline_bytes": main_av, "lazy_bytes": lazy_av,
                                       "change": round(ratios[f"anon_vma_{phase}"] - 1, 4)},
                          "avc": {"mainline_bytes": main_avc, "lazy_bytes": lazy_avc,
                                  "change": round(ratios[f"avc_{phase}"] - 1, 4)}}
    published = {"anon_vma_boot": -0.97, "anon_vma_apps": -0.92, "avc_boot": -0.57, "avc_apps": -0.505}
    passed = all(ratios[k] in BANDS[f"LAZY_{k}"] for k in ratios)
    failing = [k for k in ratios if ratios[k] not in BANDS[f"LAZY_{k}"]]

    def saving(band: Band) -> str:
        lo, hi = band.lo or 0.0, band.hi if band.hi is not None else 1.0
        return f"{_pct(hi - 1)}..{_pct(lo - 1)}"

    labels = {"anon_vma_boot": "anon_vma after boot", "anon_vma_apps": f"anon_vma after {L2A_LAUNCHED} apps",
              "avc_boot": "AVC after boot", "avc_apps": f"AVC after {L2A_LAUNCHED} apps"}
    expected = "; ".join(f"{labels[k]} {saving(BANDS[f'LAZY_{k}'])} (published {_pct(published[k])})"
                         for k in published)
    text = ", ".join(f"{labels[k]} {_pct(ratios[k] - 1)}" for k in published)
    notes = [f"{L2A_FORKING} of the {L2A_LAUNCHED} apps fork once ([N5] 41%); each fork upgrades its "
             "process's lazy VMAs for good (one anon_vma and one AVC each)"]
    if failing:
        notes.append("outside the band: " + ", ".join(labels[k] for k in failing))
    details["ratios"] = {k: round(v, 5) for k, v in ratios.items()}
    return _result(check, ratios["anon_vma_boot"] - 1, text, expected, passed, details, notes)


def _n4(check: Check, full: bool) -> CheckResult:
    """The model's minor read fault (zero page) end to end, against the measured median."""
    rec = _run(_scenario("n4-read-fault"))
    fault = rec["operations"]["fault"]
    p50_us = fault["p50_ns"] / 1000
    band = BANDS["N4_fault_us"]
    costs = CostModel()
    proposal = costs.fault_entry_ns + (1000 - fault["p50_ns"])
    if proposal == costs.fault_entry_ns:
        notes = [f"calibrated: fault_entry_ns = {costs.fault_entry_ns} puts the median at the published 1.0 us "
                 "(the model has no spread: min = median = p99, where [N4] has min ~0.6 us and p95 ~4 us)"]
    else:
        notes = [f"calibration: fault_entry_ns {costs.fault_entry_ns} -> {proposal} would put the median at the "
                 "published 1.0 us (the model has no spread: min = median = p99)"]
    expected = f"{_band_text(band, lambda x: f'{x:.2f}')} us (published median ~1.0 us, min ~0.6 us, p95 ~4 us)"
    return _result(check, p50_us, f"p50 {p50_us:.2f} us (min {fault['min_ns'] / 1000:.2f}, "
                   f"max {fault['max_ns'] / 1000:.2f})", expected, p50_us in band,
                   {k: fault[k] for k in ("count", "min_ns", "p50_ns", "p99_ns", "max_ns")}, notes)


CHECKS: list[Check] = [
    Check("H1", "one anon_vma per fork family makes every folio's rmap walk scan every process; anon_vma chains "
          "cut it to the processes that can map the folio", "[H1] R. van Riel, 5beb49305251 (2010)",
          "1000 processes: O(N) scanning per page; catastrophic for AIM7", _h1),
    Check("H3", "anon_vma_clone locking the root mutex once per AVC instead of once per clone costs fork "
          "throughput", "[H3] L. Torvalds, bb4aa39676f7 (2011)", "'big performance regression' (fork-heavy)", _h3),
    Check("H4", "rmap walks under an exclusive mutex during NUMA migration leave the threads waiting; "
          "read-locked rwsem walks flatten it", "[H4] I. Molnar, 4fc3f1d66b1e (2012)", "96.43% of time in schedule",
          _h4),
    Check("H5a", "exim fork-heavy, clients = cores: rwsem gives slightly lower throughput than mutex",
          "[H5] T. Chen, LKML 2013-06-13", "-8% throughput", _h5a),
    Check("H5b", "exim fork-heavy: rwsem writer optimistic spinning cuts context switches",
          "[H5] T. Chen, LKML 2013-06-13", "-30% context switches", _h5b),
    Check("H6", "a constantly forking chain grows anon_vmas without bound without the reuse rule; with it they "
          "stay within twice the VMAs", "[H6] K. Khlebnikov, 7a3ef208e662 (2015)",
          "unbounded vs <= 2x VMAs", _h6),
    Check("H8", "reclaim sleeps on the rmap read lock behind fork/exit/mmap/munmap; the trylock removes the "
          "stall and keeps contended folios", "[H8] M. Kim, 6d4675e60135 (2022)",
          "kswapd waiting 300 ms+ (worst ~1 s)", _h8),
    Check("L2a", "rmap metadata of an Android-like system after boot is tens of MB; the COW context needs "
          "a fraction of it", "[L2a] wangtao, ANON_VMA_LAZY cover letter (2026)",
          "anon_vma 20,426 KB + AVC 18,866 KB after boot", _l2a),
    Check("LAZY", "ANON_VMA_LAZY (anon_vma created at fork) saves most anon_vma and about half the AVC bytes "
          "of that system", "[L2a] wangtao, ANON_VMA_LAZY cover letter (2026)",
          "anon_vma -97% / -92%, AVC -57% / -50.5% (after boot / after 24 apps)", _lazy),
    Check("N4", "calibration: a minor anonymous read fault takes about a microsecond end to end",
          "[N4] page fault latency blog (Linux 6.6)", "median ~1.0 us", _n4),
]


# -- the cost model's sources ----------------------------------------------------------------------

# CostModel fields whose value rests on a measurement (the rest are the reference's ASSUME defaults).
SOURCED_CONSTANTS: dict[str, str] = {
    "fault_entry_ns": "[N4] read fault median ~1.0 us, min ~0.6 us (checked by N4)",
}
# What the reference says about each unsourced constant: the §6.4 default it takes (an ASSUME
# there), a bound or a scale from a source, or nothing at all.
_S64 = "ASSUME: reference §6.4 suggested default"
CONSTANT_NOTES: dict[str, str] = {
    "atomic_ns": f"{_S64} c_atomic",
    "bounce_ns": f"{_S64} c_bounce_remote",
    "lock_handoff_ns": f"{_S64} c_bounce_local",
    "ctx_switch_ns": f"{_S64} c_sleep_wake",
    "slab_ns": f"{_S64} c_slab",
    "zero_page_ns": f"{_S64} c_zero",
    "copy_page_ns": f"{_S64} c_copy",
    "pte_copy_ns": f"{_S64} c_pte_copy; [N2] bounds it by 0.9 us/PTE (23 ms per 100 MB, 2005 hardware); "
                   "[N3] gives only a ratio (On-demand-fork 65x faster for 1 GB)",
    "zap_ns": f"{_S64} c_zap",
    "tlb_flush_ns": f"{_S64} c_tlb_flush (local)",
    "tlb_ipi_ns": f"{_S64} c_tlb_flush (IPI 2-5 us)",
    "itree_base_ns": f"{_S64} c_itree_ins/del",
    "itree_log_ns": f"{_S64} c_itree_ins/del, c_itree_q",
    "itree_query_base_ns": f"{_S64} c_itree_q",
    "mt_lookup_base_ns": f"{_S64} c_mt_lookup",
    "mt_lookup_log_ns": f"{_S64} c_mt_lookup",
    "mt_store_ns": f"{_S64} c_mt_store",
    "pvmw_ns": f"{_S64} c_pvmw",
    "young_ns": f"{_S64} c_young",
    "clear_ns": f"{_S64} c_clear",
    "rcu_gp_ns": f"{_S64} T_gp; [N6] synchronize_rcu 'can take hundreds of milliseconds' (a scale only)",
}


def unsourced_constants() -> list[dict[str, Any]]:
    """Every CostModel constant with no measurement behind it: name, value, what is known."""
    model = CostModel()
    out = []
    for f in dataclasses.fields(CostModel):
        if f.name in SOURCED_CONSTANTS:
            continue
        out.append({"name": f.name, "value": getattr(model, f.name),
                    "note": CONSTANT_NOTES.get(f.name, "ASSUME: not in the reference")})
    return out


# -- running -----------------------------------------------------------------------------------------


def run_validation(*, full: bool = False, only: list[str] | None = None,
                   on_done: Callable[[CheckResult], None] | None = None) -> dict[str, Any]:
    """Run the checks (all, or the ids in ``only``); returns the validate.json document.

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
    _H5_CACHE.clear()
    _L2A_CACHE.clear()
    return {
        "schema": SCHEMA,
        "mode": "full" if full else "small",
        "passed": all(r.passed for r in results),
        "checks": [r.to_dict() for r in results],
        "unsourced_constants": unsourced_constants(),
    }
