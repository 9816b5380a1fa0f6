"""H3 (2011): anon_vma_clone locking the root once per AVC vs once per clone."""

from __future__ import annotations

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

__all__ = ["CHECK"]


def _h3(check: Check, full: bool) -> CheckResult:
    """Fork throughput and mean fork latency, root mutex locked per AVC vs once per clone."""
    # Both sizes run the scenario's 16 CPUs, one server each; --full runs 10 ms instead of 5.
    overrides: dict[str, object] = {"run.duration_ns": 10 * MS} if full else {}
    out: dict[bool, dict[str, int | float]] = {}
    cpus = 0
    for per_avc in (False, True):
        rec = _run(_scenario("h3-clone-lock-per-avc", {**overrides, "switches.anon_vma.lock_per_avc": per_avc}))
        cpus = rec.param_int("cpus")
        lock = _lock(rec)
        fork = rec.operations["fork"]
        out[per_avc] = {"fork_per_s": rec.throughput["fork"], "fork_mean_ns": fork.mean_ns,
                        "fork_p99_ns": fork.p99_ns,
                        "root_acquisitions": _n(lock, "write", "acquisitions"),
                        "root_contentions": _n(lock, "write", "contentions"),
                        "root_wait_ns": _n(lock, "write", "waittime_total_ns"),
                        "mutex_handoffs": _n(lock, "events", "mutex_handoff_set")}
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
                     "lock.  The unlocker's wake-up work is not costed here ([mutex] wait_lock and costs.wakeup_ns, "
                     "which h5-exim turns on, are off in this scenario).")
    return _result(check, thr, text, expected, passed, {"per_clone": out[False], "per_avc": out[True], "cpus": cpus},
                   notes)

CHECK = Check("H3", "anon_vma_clone locking the root mutex once per AVC instead of once per clone costs fork "
              "throughput", "[H3] L. Torvalds, bb4aa39676f7 (2011)", "'big performance regression' (fork-heavy)", _h3)
