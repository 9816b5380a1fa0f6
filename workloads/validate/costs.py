"""The cost model's sources: which ``CostModel`` constants rest on a measurement, and what the
reference says about each of the others (``rmapsim validate`` lists them)."""

from __future__ import annotations

import dataclasses
from typing import TypedDict

from mm.costs import CostModel

__all__ = ["CONSTANT_NOTES", "SOURCED_CONSTANTS", "unsourced_constants"]


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
    "wakeup_ns": "0 = off (ctx_switch_ns stands for the whole sleep and wake-up); a scenario that charges the "
                 "waker's try_to_wake_up sets it (ASSUME; the IPI send on Westmere: 1600-2000 cycles, V. Pallipadi, "
                 "LKML 2012-02-06)",
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


class UnsourcedConstant(TypedDict):
    name: str
    value: int
    note: str


def unsourced_constants() -> list[UnsourcedConstant]:
    """Every CostModel constant with no measurement behind it: name, value, what is known."""
    model = CostModel()
    out: list[UnsourcedConstant] = []
    for f in dataclasses.fields(CostModel):
        if f.name in SOURCED_CONSTANTS:
            continue
        value = getattr(model, f.name)
        if not isinstance(value, int):
            raise TypeError(f"CostModel.{f.name} = {value!r}: every cost is an integer of ns")
        out.append({"name": f.name, "value": value,
                    "note": CONSTANT_NOTES.get(f.name, "ASSUME: not in the reference")})
    return out
