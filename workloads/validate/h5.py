"""H5a/H5b (2013): exim fork-heavy, rwsem vs mutex throughput, and rwsem writer spinning.

[H5] (T. Chen, linux-mm 2013-06-13, "Performance regression from switching lock to rw-sem for
anon-vma tree", 3.10-rc4) gives more than its two figures: vmstat and a profile of each run.

* vmstat: mutex cs 477k/s, us 14 sy 72 id 14; rwsem cs 691k/s, us 13 sy 71 id 16.  The rwsem's
  CPUs were as busy as the mutex's (84% vs 86%), so its 8% was lost to CPU spent per message, not
  to a lock left idle between a release and its woken waiter.
* profile of the mutex run: the spin loop (``cpu_relax``) 1.55% of the samples,
  ``mutex_spin_on_owner`` and ``__mutex_lock_slowpath`` below the last listed line (0.95%).  The
  lock was contended, not saturated: a saturated mutex's spinners burn a large share of the CPUs.
* writer spinning "reduced the context switching by 30% ... However, I did not see any throughput
  improvement": what spinning saves in sleeping and waking it burns in spinning.  That first patch
  spun only after queueing (under ``wait_lock``); the one merged later spins before it, and its
  description (v6 6/6, 2013-09, as quoted by I. Molnar on LKML) says "Allowing optimistic spinning
  before putting the writer on the wait queue reduces wait queue contention ... With these
  changes, rwsem is on par with mutex": the 8% was in the wait queue's handling.  The model's
  ``rwsem.spin`` is the merged design.

The scenario's per-message work outside the lock (``child_lifetime_ns``) has no published source
(MOSBENCH's exim benchmark gives the message's structure, not its cost: see the scenario file).  It
is calibrated on the mutex run, to the first observation above, and H5a, H5b and the idle and
spinning shares of the rwsem runs are then the model's predictions.  ``--full`` shows how the
verdict moves with that calibration (the sensitivity curve) and with ``ctx_switch_ns`` (ASSUME).

The CPU a sleep and wake-up costs is charged on both sides, as 3.10 spent it: the woken task pays
``ctx_switch_ns``, the waker ``wakeup_ns`` per sleeper it wakes (``try_to_wake_up``, ASSUME 1 us
from a Westmere IPI measurement: the scenario file), and both locks serialise their slow paths on
their ``wait_lock`` with the wake-ups inside it (``__rwsem_do_wake`` and
``__mutex_unlock_common_slowpath`` call ``wake_up_process`` with it held; concurrency/wait_lock.py).
``--full`` also shows the verdict without the wake-up's cost, with it doubled, and without the
``wait_lock``.  Measured (2026-11-30, 10 ms, 40 CPUs): -1.5% at the default seed (-2.3%, -1.9% at
seeds 2, 3), against -0.3% with neither; at 1 us the rwsem does not reach [H5]'s -8%.
"""

from __future__ import annotations

from typing import TypedDict

from records.result import JsonValue, RunRecord
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

__all__ = ["CHECK_H5A", "CHECK_H5B", "H5_FULL_CPUS", "PUBLISHED_MUTEX_SPIN_SHARE"]

# The published machine (the scenario's run.cpus): a 4-socket Westmere-EX, 40 cores, one exim
# server per core ("clients = cores"); --full runs it 10 ms.
H5_FULL_CPUS = 40
H5_FULL_DURATION_NS = 10 * MS
# [H5]'s mutex profile: cpu_relax 1.55% of the samples (the spin loop; mutex_spin_on_owner itself
# is below the listed 0.95%): the calibration target of the scenario's child_lifetime_ns.
PUBLISHED_MUTEX_SPIN_SHARE = 0.0155
# --full sensitivity: the per-message work outside the lock (the scenario's calibrated value is the
# third point) and the cost of a sleep and wake-up.
_LIFETIME_CURVE_NS = (20_000, 60_000)
_CTX_SWITCH_CURVE_NS = (6_000, 10_000)
# ... the waker's try_to_wake_up (the scenario's wakeup_ns, ASSUME 1 us: 0 = the model before) ...
_WAKEUP_CURVE_NS = (0, 2_000)
# ... and 3.10's wait_lock (the scenario's [rwsem]/[mutex] wait_lock = true, wake_q = false).
_NO_WAIT_LOCK: dict[str, object] = {"rwsem.wait_lock": False, "mutex.wait_lock": False}


class _H5Run(TypedDict):
    """What H5a and H5b read (and show) of one exim run."""

    fork_per_s: int | float
    fork_mean_ns: int | float
    forks: int
    context_switches: int
    root_contentions: int | float
    root_wait_ns: int | float
    cpu_share: dict[str, float]
    lock_events: JsonValue


def _cpu_share(rec: RunRecord) -> dict[str, float]:
    """The workload phase's CPU time split (running, spinning, sleeping, idle) as fractions:
    "sleeping" is a CPU whose tasks all wait (vmstat's idle), "spinning" a lock spinner's."""
    cpu = rec.phases["workload"].cpu_time
    total = sum(cpu.values()) or 1
    return {state: round(ns / total, 4) for state, ns in cpu.items()}


def _h5_runs(full: bool) -> dict[str, _H5Run]:
    # The scenario is the published machine (40 CPUs, one server each); --full runs it 10 ms
    # instead of 2 (the small size's throughputs move by a few percent from seed to seed).
    overrides: dict[str, object] = {"run.duration_ns": H5_FULL_DURATION_NS} if full else {}
    out: dict[str, _H5Run] = {}
    # 2013 (the scenario's [mutex] and [rwsem] tables): the mutex spun (MUTEX_SPIN_ON_OWNER) with no
    # hand-off; the rwsem neither spun nor stole as a reader nor handed off.  Tim Chen's writer
    # spinning patch is rwsem.spin = true.
    for name, lock_kind, spin in (("mutex", "mutex", False), ("rwsem", "rwsem", False),
                                  ("rwsem_spin", "rwsem", True)):
        rec = _run(_scenario("h5-exim", {**overrides, "rwsem.spin": spin,
                                         "switches.anon_vma.rmap_lock": lock_kind}))
        lock = _lock(rec)
        out[name] = {"fork_per_s": rec.throughput["fork"], "fork_mean_ns": rec.operations["fork"].mean_ns,
                     "forks": rec.operations["fork"].count, "context_switches": rec.context_switches,
                     "root_contentions": _n(lock, "write", "contentions"),
                     "root_wait_ns": _n(lock, "write", "waittime_total_ns"),
                     "cpu_share": _cpu_share(rec),
                     "lock_events": lock.get("events", {})}
    return out


_H5_CACHE: dict[bool, dict[str, _H5Run]] = {}


def _h5(full: bool) -> dict[str, _H5Run]:
    """H5a and H5b share their runs."""
    if full not in _H5_CACHE:
        _H5_CACHE[full] = _h5_runs(full)
    return _H5_CACHE[full]


def _idle(run: _H5Run) -> float:
    return run["cpu_share"].get("sleeping", 0.0) + run["cpu_share"].get("idle", 0.0)


def _h5a(check: Check, full: bool) -> CheckResult:
    runs = _h5(full)
    thr = _change(runs["rwsem"]["fork_per_s"], runs["mutex"]["fork_per_s"])
    band = BANDS["H5_throughput"]
    passed = thr in band
    expected = f"rwsem <= mutex: {_band_text(band, _pct)} (published -8%)"
    mutex, rwsem = runs["mutex"], runs["rwsem"]
    notes = [f"context switches per fork: mutex {mutex['context_switches'] / max(mutex['forks'], 1):.2f}, "
             f"rwsem {rwsem['context_switches'] / max(rwsem['forks'], 1):.2f}: the rwsem's writers sleep where "
             "the mutex's spin (published: 477k/s vs 691k/s)",
             f"CPU spinning: mutex {100 * mutex['cpu_share'].get('spinning', 0.0):.1f}% (published profile: "
             f"cpu_relax {100 * PUBLISHED_MUTEX_SPIN_SHARE:.2f}%, the scenario's calibration target); idle: mutex "
             f"{100 * _idle(mutex):.1f}%, rwsem {100 * _idle(rwsem):.1f}% (published vmstat: 14%, 16%; the model "
             "has no SMTP client, whose round trips idle the published CPUs in both runs)"]
    details: dict[str, object] = {"mutex": runs["mutex"], "rwsem": runs["rwsem"]}
    if not full:
        notes.append("2 ms of the 40-CPU machine: its throughputs move by a few percent from seed to seed; "
                     "--full runs 10 ms")
    if full:
        # The regime matters: how far the rwsem falls behind grows with the lock's saturation.
        at_full: dict[str, object] = {"run.duration_ns": H5_FULL_DURATION_NS}
        curve = {cpus: _h5_pair(cpus, at_full)[0] for cpus in (8, 16, 24)}
        curve[H5_FULL_CPUS] = thr
        details["rwsem_vs_mutex_by_cpus"] = {str(c): round(v, 4) for c, v in sorted(curve.items())}
        notes.append("rwsem vs mutex fork throughput by CPUs (= servers): "
                     + ", ".join(f"{c}: {_pct(v)}" for c, v in sorted(curve.items())))
        # Issue 11 item 6: the calibrated per-message work has no source; its sensitivity.
        lifetimes = {ns: _h5_pair(H5_FULL_CPUS, at_full, actors={"child_lifetime_ns": ns})
                     for ns in _LIFETIME_CURVE_NS}
        details["sensitivity_child_lifetime_ns"] = {
            str(ns): {"rwsem_vs_mutex": round(v, 4), "mutex_spinning": s} for ns, (v, s) in lifetimes.items()}
        notes.append(f"sensitivity to the per-message work outside the lock (child_lifetime_ns, {H5_FULL_CPUS} "
                     "CPUs; the calibrated scenario is the figure above): "
                     + ", ".join(f"{ns // 1000} us: rwsem {_pct(v)}, mutex spinning {100 * s:.1f}%"
                                 for ns, (v, s) in lifetimes.items())
                     + ".  The more the mutex spins, the more the lock is saturated, and the more the rwsem "
                     "loses by leaving it idle while a woken writer comes back: [H5]'s mutex barely spun.")
        ctx = {ns: _h5_pair(H5_FULL_CPUS, {**at_full, "costs.ctx_switch_ns": ns}) for ns in _CTX_SWITCH_CURVE_NS}
        details["sensitivity_ctx_switch_ns"] = {str(ns): round(v, 4) for ns, (v, _s) in ctx.items()}
        notes.append("sensitivity to the CPU a sleep and wake-up costs the woken task (ctx_switch_ns, ASSUME 3000): "
                     + ", ".join(f"{ns}: rwsem {_pct(v)}" for ns, (v, _s) in ctx.items()))
        wakeups = {ns: _h5_pair(H5_FULL_CPUS, {**at_full, "costs.wakeup_ns": ns}) for ns in _WAKEUP_CURVE_NS}
        details["sensitivity_wakeup_ns"] = {str(ns): round(v, 4) for ns, (v, _s) in wakeups.items()}
        no_wait_lock, _spin = _h5_pair(H5_FULL_CPUS, {**at_full, **_NO_WAIT_LOCK})
        details["without_wait_lock"] = round(no_wait_lock, 4)
        notes.append("sensitivity to the waker's try_to_wake_up (wakeup_ns, ASSUME 1000): "
                     + ", ".join(f"{ns}: rwsem {_pct(v)}" for ns, (v, _s) in wakeups.items())
                     + f"; without 3.10's wait_lock: rwsem {_pct(no_wait_lock)}")
    events = rwsem["lock_events"]
    sections = events.get("wait_lock_sections", 0) if isinstance(events, dict) else 0
    notes.append("[H5]'s vmstat puts the rwsem's loss in CPU spent per message (8% fewer messages while its "
                 "CPUs stayed 84% busy against the mutex's 86%), and the merged spinning patch's description in "
                 "the wait queue's handling (spinning before queueing made the rwsem 'on par with mutex'). The "
                 "model charges the woken task ctx_switch_ns (ASSUME), the waker wakeup_ns per sleeper it wakes "
                 "(ASSUME, from a Westmere IPI figure), and runs 3.10's wait_lock (queueing, the woken writer's "
                 f"retry, rwsem_wake with the wake-up inside it: {sections} sections in the rwsem run); it "
                 "leaves out the cache refill of a task that slept.")
    return _result(check, thr, f"{_pct(thr)} forks/s", expected, passed, details, notes)


def _h5_pair(cpus: int, overrides: dict[str, object] | None = None,
             actors: dict[str, int] | None = None) -> tuple[float, float]:
    """rwsem vs mutex fork throughput with one exim server per CPU, and the mutex run's spinning
    share of the CPU time."""
    fork_per_s: dict[str, float] = {}
    spinning = 0.0
    for lock_kind in ("mutex", "rwsem"):
        rec = _run(_scenario("h5-exim", {**(overrides or {}), "run.cpus": cpus,
                                         "switches.anon_vma.rmap_lock": lock_kind},
                             actors={"fork_exit": {"prefork": cpus, **(actors or {})}}))
        fork_per_s[lock_kind] = rec.throughput["fork"]
        if lock_kind == "mutex":
            spinning = _cpu_share(rec).get("spinning", 0.0)
    return _change(fork_per_s["rwsem"], fork_per_s["mutex"]), spinning


def _h5b(check: Check, full: bool) -> CheckResult:
    """Context switches per fork (per message), rwsem writer spinning vs none.

    Per fork, because the two runs may do different amounts of work: the published runs had about
    the same throughput ("did not see any throughput improvement"), so there the raw and
    per-message changes agree; the throughput change is shown beside it, the mechanism check.
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
    notes = [f"forks/s with writer spinning {_pct(thr)} (published: no throughput improvement); CPU spinning "
             f"{100 * spin['cpu_share'].get('spinning', 0.0):.1f}%, idle {100 * _idle(spin):.1f}% "
             f"(without: {100 * _idle(nospin):.1f}%)"]
    return _result(check, per_fork, text, expected, passed, {"rwsem": nospin, "rwsem_spin": spin}, notes)

CHECK_H5A = Check("H5a", "exim fork-heavy, clients = cores: rwsem gives slightly lower throughput than mutex",
                  "[H5] T. Chen, LKML 2013-06-13", "-8% throughput", _h5a)
CHECK_H5B = Check("H5b", "exim fork-heavy: rwsem writer optimistic spinning cuts context switches",
                  "[H5] T. Chen, LKML 2013-06-13", "-30% context switches", _h5b)
