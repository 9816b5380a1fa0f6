"""N4 (calibration): a minor anonymous read fault's latency."""

from __future__ import annotations

from mm.costs import CostModel
from workloads.validate.common import (
    BANDS,
    Check,
    CheckResult,
    _band_text,
    _result,
    _run,
    _scenario,
)

__all__ = ["CHECK"]


def _n4(check: Check, full: bool) -> CheckResult:
    """The model's minor read fault (zero page) end to end, against the measured median."""
    rec = _run(_scenario("n4-read-fault"))
    fault = rec.operations["fault"]
    p50_us = fault.p50_ns / 1000
    band = BANDS["N4_fault_us"]
    costs = CostModel()
    proposal = costs.fault_entry_ns + (1000 - fault.p50_ns)
    # The spread (mm/cost_spread.py) draws fault_entry_ns from [N4]'s own shape: floor 0.6 x, p95 4 x.
    spread = (f"min {fault.min_ns / 1000:.2f} us, p90 {fault.p90_ns / 1000:.2f} us, p99 "
              f"{fault.p99_ns / 1000:.2f} us, where [N4] has min ~0.6 us and p95 ~4 us" if rec.params.get(
                  "cost_variability") else "the model has no spread (run.cost_variability = false): min = median = p99")
    # Calibrated within 2%: with the spread on, the sample median of a few hundred drawn faults
    # moves by about that much with the seed, so a nearer target would chase the draws.
    if abs(proposal - costs.fault_entry_ns) <= 20:
        notes = [f"calibrated: fault_entry_ns = {costs.fault_entry_ns} puts the median at the published 1.0 us "
                 f"({spread})"]
    else:
        notes = [f"calibration: fault_entry_ns {costs.fault_entry_ns} -> {proposal} would put the median at the "
                 f"published 1.0 us ({spread})"]
    expected = f"{_band_text(band, lambda x: f'{x:.2f}')} us (published median ~1.0 us, min ~0.6 us, p95 ~4 us)"
    return _result(check, p50_us, f"p50 {p50_us:.2f} us (min {fault.min_ns / 1000:.2f}, "
                   f"max {fault.max_ns / 1000:.2f})", expected, p50_us in band,
                   {"count": fault.count, "min_ns": fault.min_ns, "p50_ns": fault.p50_ns, "p99_ns": fault.p99_ns,
                    "max_ns": fault.max_ns}, notes)

CHECK = Check("N4", "calibration: a minor anonymous read fault takes about a microsecond end to end",
              "[N4] page fault latency blog (Linux 6.6)", "median ~1.0 us", _n4)
