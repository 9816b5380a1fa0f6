"""L2a and LAZY (2026): rmap metadata of an Android-like system, and ANON_VMA_LAZY's savings on it."""

from __future__ import annotations

import dataclasses

from actors.process import Region
from mm.anon_vma import ANON_VMA_BYTES, AVC_BYTES
from records.result import JsonObject
from workloads.scenario import ProcessSpec, Scenario
from workloads.validate.common import (
    BANDS,
    MS,
    Band,
    Check,
    CheckResult,
    _band_text,
    _n,
    _pct,
    _result,
    _run,
    _scenario,
)

__all__ = ["CHECK_L2A", "CHECK_LAZY"]


# Android after boot and after 24 apps ([L2a]), derived in the module docstring; small mode keeps
# the ratios with a hundredth of the VMAs.
L2A_FULL = {"zygote_vmas": 3134, "apps": 32, "private_vmas": 97_696, "private_per_app": 2139}
L2A_SMALL = {"zygote_vmas": 31, "apps": 32, "private_vmas": 977, "private_per_app": 21}
L2A_LAUNCHED = 24  # apps launched after boot
L2A_FORKING = round(L2A_LAUNCHED * 82 / 200)  # [N5]: 82 of the top 200 apps call fork() at runtime
L2A_DESIGNS = ("anon_vma", "cow_context", "anon_vma_lazy")
L2A_PHASES = ("boot", "apps")
_L2A_CACHE: dict[bool, dict[str, dict[str, JsonObject]]] = {}


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


def _l2a_runs(full: bool) -> dict[str, dict[str, JsonObject]]:
    """L2a and LAZY share their runs: ``{phase: {design: memory at the peak}}``."""
    if full not in _L2A_CACHE:
        out: dict[str, dict[str, JsonObject]] = {}
        for phase in L2A_PHASES:
            out[phase] = {}
            for design in L2A_DESIGNS:
                rec = _run(_l2a_scenario(full, phase), design)
                out[phase][design] = dict(rec.memory)
        _L2A_CACHE[full] = out
    return _L2A_CACHE[full]


def _l2a_bytes(memory: JsonObject) -> tuple[int, int]:
    """anon_vma and AVC bytes when the total peaked (0 and 0 for the COW context)."""
    return (int(_n(memory, "anon_vma_count_at_peak")) * ANON_VMA_BYTES,
            int(_n(memory, "avc_count_at_peak")) * AVC_BYTES)


def _l2a(check: Check, full: bool) -> CheckResult:
    """rmap metadata at the peak of an Android-like boot: anon_vma + AVC vs COW contexts; and every
    design's anon_vma and AVC bytes after boot and after 24 apps."""
    runs = _l2a_runs(full)
    boot = runs["boot"]
    anon_av, anon_avc = _l2a_bytes(boot["anon_vma"])
    anon_bytes = int(_n(boot["anon_vma"], "peak_total_bytes", default=None))
    cow_bytes = int(_n(boot["cow_context"], "peak_total_bytes", default=None))
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
    details: dict[str, object] = {"sizes": {**sizes, "launched": L2A_LAUNCHED, "forking": L2A_FORKING}}
    rows: dict[str, dict[str, JsonObject]] = {}
    for phase in L2A_PHASES:
        details[phase] = rows[phase] = {}
        for design in L2A_DESIGNS:
            memory = runs[phase][design]
            av_b, avc_b = _l2a_bytes(memory)
            row: JsonObject = {"peak_total_bytes": int(_n(memory, "peak_total_bytes", default=None))}
            if design != "cow_context":
                row.update({"anon_vmas_at_peak": int(_n(memory, "anon_vma_count_at_peak", default=None)),
                            "avcs_at_peak": int(_n(memory, "avc_count_at_peak", default=None)),
                            "anon_vma_bytes": av_b, "avc_bytes": avc_b})
            else:
                row.update({k: v for k, v in memory.items() if k.endswith("count")})
            rows[phase][design] = row
    text = (f"anon_vma {anon_av / 1e6:.3f} MB + AVC {anon_avc / 1e6:.3f} MB = {mb:.3f} MB; "
            f"cow_context {cow_bytes / 1e3:.1f} kB ({100 * fraction:.2f}%)")
    notes = []
    for phase, label in (("boot", "after boot"), ("apps", f"after {L2A_LAUNCHED} apps")):
        parts = []
        for design in L2A_DESIGNS:
            row = rows[phase][design]
            if design == "cow_context":
                parts.append(f"cow_context: {_n(row, 'peak_total_bytes') / 1e3:,.1f} kB")
            else:
                parts.append(f"{design}: anon_vma {_n(row, 'anon_vma_bytes') / 1e3:,.1f} kB + AVC "
                             f"{_n(row, 'avc_bytes') / 1e3:,.1f} kB")
        notes.append(f"{label}: " + "; ".join(parts))
    return _result(check, mb, text, expected, passed, details, notes)


def _lazy(check: Check, full: bool) -> CheckResult:
    """ANON_VMA_LAZY's anon_vma and AVC bytes as a fraction of mainline's, after boot and after 24
    apps, against the cover letter's measurements (the L2a runs)."""
    runs = _l2a_runs(full)
    ratios: dict[str, float] = {}
    details: dict[str, object] = {}
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

CHECK_L2A = Check("L2a", "rmap metadata of an Android-like system after boot is tens of MB; the COW context needs "
                  "a fraction of it", "[L2a] wangtao, ANON_VMA_LAZY cover letter (2026)",
                  "anon_vma 20,426 KB + AVC 18,866 KB after boot", _l2a)
CHECK_LAZY = Check("LAZY", "ANON_VMA_LAZY (anon_vma created at fork) saves most anon_vma and about half the AVC bytes "
                   "of that system", "[L2a] wangtao, ANON_VMA_LAZY cover letter (2026)",
                   "anon_vma -97% / -92%, AVC -57% / -50.5% (after boot / after 24 apps)", _lazy)
