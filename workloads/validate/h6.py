"""H6 (2015): a constantly forking chain, with and without the anon_vma reuse rule."""

from __future__ import annotations

from actors.world import World
from mm.instrument import MmInstrument
from workloads.validate.common import (
    BANDS,
    Check,
    CheckResult,
    _n,
    _result,
    _run,
    _scenario,
)

__all__ = ["CHECK"]


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


def _h6(check: Check, full: bool) -> CheckResult:
    """Peak anon_vmas per VMA in a constantly forking chain: with and without the reuse rule."""
    depth = 300 if full else 40
    details: dict[str, object] = {"depth": depth}
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
        memory = rec.memory
        details[label] = {"depth": d, "forks": rec.operations["fork"].count,
                          "peak_anon_vmas": _n(memory, "peak_anon_vma_count", default=None),
                          "peak_avcs": _n(memory, "peak_avc_count", default=None),
                          "max_anon_vmas_per_vma": round(probe.max_per_vma, 3),
                          "peak_total_bytes": _n(memory, "peak_total_bytes", default=None)}
    details["vmas_per_process"] = nvmas
    growth = per_vma["no_reuse"] / per_vma["no_reuse_half_depth"] if per_vma["no_reuse_half_depth"] else 0.0
    passed = growth in BANDS["H6_growth"] and per_vma["reuse"] in BANDS["H6_reuse"]
    g = BANDS["H6_growth"]
    expected = (f"without reuse linear in depth (doubling the depth multiplies it by {g.lo}..{g.hi}); with reuse "
                f"<= {BANDS['H6_reuse'].hi} anon_vmas per VMA (published: 'no more than two times')")
    text = (f"anon_vmas per VMA: no reuse {per_vma['no_reuse']:.1f} (x{growth:.2f} from depth {depth // 2} "
            f"to {depth}), reuse {per_vma['reuse']:.2f}")
    return _result(check, per_vma["no_reuse"], text, expected, passed, details)

CHECK = Check("H6", "a constantly forking chain grows anon_vmas without bound without the reuse rule; with it they "
              "stay within twice the VMAs", "[H6] K. Khlebnikov, 7a3ef208e662 (2015)",
              "unbounded vs <= 2x VMAs", _h6)
