"""H5a/H5b (2013): exim fork-heavy, rwsem vs mutex throughput, and rwsem writer spinning."""

from __future__ import annotations

from typing import TypedDict

from records.result import JsonValue
from workloads.validate.common import (
    BANDS,
    MS,
    Check,
    CheckResult,
    _band_text,
    _change,
    _lock,
    _n,
    _pct,
    _result,
    _run,
    _scenario,
)

__all__ = ["CHECK_H5A", "CHECK_H5B"]


class _H5Run(TypedDict):
    """What H5a and H5b read (and show) of one exim run."""

    fork_per_s: int | float
    fork_mean_ns: int | float
    forks: int
    context_switches: int
    root_contentions: int | float
    root_wait_ns: int | float
    lock_events: JsonValue


def _h5_runs(full: bool) -> dict[str, _H5Run]:
    # --full: a 4-socket Westmere-EX, 40 cores, one exim server per core.
    overrides: dict[str, object] = {"run.cpus": 40, "run.duration_ns": 10 * MS} if full else {}
    actors = {"fork_exit": {"prefork": 40}} if full else {}
    out: dict[str, _H5Run] = {}
    # 2013 (the scenario's [mutex] and [rwsem] tables): the mutex spun (MUTEX_SPIN_ON_OWNER) with no
    # hand-off; the rwsem neither spun nor stole as a reader nor handed off.  Tim Chen's writer
    # spinning patch is rwsem.spin = true.
    for name, lock_kind, spin in (("mutex", "mutex", False), ("rwsem", "rwsem", False),
                                  ("rwsem_spin", "rwsem", True)):
        rec = _run(_scenario("h5-exim", {**overrides, "rwsem.spin": spin, "switches.anon_vma.rmap_lock": lock_kind},
                             actors=actors))
        lock = _lock(rec)
        out[name] = {"fork_per_s": rec.throughput["fork"], "fork_mean_ns": rec.operations["fork"].mean_ns,
                     "forks": rec.operations["fork"].count, "context_switches": rec.context_switches,
                     "root_contentions": _n(lock, "write", "contentions"),
                     "root_wait_ns": _n(lock, "write", "waittime_total_ns"),
                     "lock_events": lock.get("events", {})}
    return out


_H5_CACHE: dict[bool, dict[str, _H5Run]] = {}


def _h5(full: bool) -> dict[str, _H5Run]:
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
    details: dict[str, object] = {"mutex": runs["mutex"], "rwsem": runs["rwsem"]}
    if full:
        # The regime matters: how far the rwsem falls behind grows with the lock's saturation.
        curve = {cpus: _h5_pair(cpus) for cpus in (8, 16, 24)}
        curve[40] = thr
        details["rwsem_vs_mutex_by_cpus"] = {str(c): round(v, 4) for c, v in sorted(curve.items())}
        notes.append("rwsem vs mutex fork throughput by CPUs (= servers): "
                     + ", ".join(f"{c}: {_pct(v)}" for c, v in sorted(curve.items())))
        # Issue 11: the per-message work that sets the lock's saturation has no source yet.
        notes.append("No source gives MOSBENCH exim's per-message CPU cost or fork rate on the 2013 machines: the "
                     "public pages found for MOSBENCH ('An Analysis of Linux Scalability to Many Cores', OSDI 2010) "
                     "hold its abstract only, and [H5] gives the -8% and the machines (4-socket Westmere-EX and Ivy "
                     "Bridge) but no per-message figure.  The scenario's per-message work stays an assumption; the "
                     "curve above is its sensitivity: the rwsem's loss grows once the lock saturates.")
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
        fork_per_s[lock_kind] = rec.throughput["fork"]
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

CHECK_H5A = Check("H5a", "exim fork-heavy, clients = cores: rwsem gives slightly lower throughput than mutex",
                  "[H5] T. Chen, LKML 2013-06-13", "-8% throughput", _h5a)
CHECK_H5B = Check("H5b", "exim fork-heavy: rwsem writer optimistic spinning cuts context switches",
                  "[H5] T. Chen, LKML 2013-06-13", "-30% context switches", _h5b)
