"""The one cost model: every constant named, with its source or marked ASSUME.

Sources are the tags of docs/kernel-rmap.md §6.4 (resolved in its §9).  A scenario
overrides any field by name (``CostModel.with_overrides``); unknown names are an error.
Calibration notes live next to each field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from concurrency.lock import LockCosts

__all__ = ["CostModel"]


@dataclass(frozen=True)
class CostModel:
    # --- locks and cache lines ---------------------------------------------------------------
    atomic_ns: int = 20  # ASSUME (§6.4 c_atomic): uncontended atomic RMW on a local line
    bounce_ns: int = 150  # ASSUME (§6.4 c_bounce_remote): line last written on another CPU
    lock_handoff_ns: int = 60  # ASSUME (§6.4 c_bounce_local): release -> spinning waiter owns it
    ctx_switch_ns: int = 3_000  # ASSUME (§6.4 c_sleep_wake): block + wake-up + context switch
    # The waker's side of a lock's wake-up: wake_up_process -> try_to_wake_up of each sleeping waiter
    # (the target rq lock, enqueue, and for a waiter on another LLC in 3.10's ttwu_queue_remote a
    # reschedule IPI), charged to the releasing task.  0 = off (the default): ctx_switch_ns above
    # stands for the whole sleep and wake-up, on the woken task.  A scenario that splits the two
    # sets it; the figure it can use: the sender side of an IPI (smp_call_function_single) on
    # Westmere, 1600 cycles within a socket and 2000 across (V. Pallipadi, LKML 2012-02-06, "Extend
    # mwait idle to optimize away IPIs"), ~0.7-0.9 us at 2.27 GHz, plus the rq lock and enqueue.
    wakeup_ns: int = 0
    # --- allocation and page work --------------------------------------------------------------
    slab_ns: int = 60  # ASSUME (§6.4 c_slab): kmem_cache_alloc/free of anon_vma, AVC, context
    zero_page_ns: int = 250  # ASSUME (§6.4 c_zero): clear a 4 KiB page
    copy_page_ns: int = 250  # ASSUME (§6.4 c_copy): copy a 4 KiB page (COW, migration)
    # [N4] calibrated: the trap, the VMA lookup and the rest of a fault not costed step by step,
    # chosen so that the model's read fault (zero page) takes the measured median, 1.0 µs, end to end.
    fault_entry_ns: int = 950
    pte_ns: int = 30  # ASSUME: set/clear one PTE under the PTL (set_ptes, ptep_get_and_clear)
    pte_copy_ns: int = 10  # §6.4 c_pte_copy: per PTE in copy_page_range (modern, [N2][N3] scaled)
    zap_ns: int = 15  # §6.4 c_zap: per PTE in unmap_vmas/zap_pte_range
    pgtable_free_ns: int = 200  # ASSUME: free one PTE table page in free_pgtables
    tlb_flush_ns: int = 100  # §6.4 c_tlb_flush local
    tlb_ipi_ns: int = 3_000  # §6.4 c_tlb_flush IPI 2-5 µs: shootdown when the mm ran elsewhere
    # --- rmap structures -------------------------------------------------------------------------
    itree_base_ns: int = 150  # §6.4 c_itree_ins/del = 150 ns + 20 ns * log2(A) (ASSUME)
    itree_log_ns: int = 20
    itree_query_base_ns: int = 100  # §6.4 c_itree_q = 100 ns + 20 ns * log2(A) (ASSUME)
    mt_lookup_base_ns: int = 80  # §6.4 c_mt_lookup = 80 ns + 10 ns * log2(V) (ASSUME)
    mt_lookup_log_ns: int = 10
    mt_store_ns: int = 300  # §6.4 c_mt_store (ASSUME): maple-tree store of a remap entry
    mt_dup_per_vma_ns: int = 50  # ASSUME: __mt_dup per VMA in dup_mmap
    vma_dup_ns: int = 200  # ASSUME: vm_area_dup + bookkeeping per VMA
    list_op_ns: int = 40  # ASSUME (§6.4 c_list): list_add_rcu / list_del_rcu under a spinlock
    pvmw_ns: int = 150  # §6.4 c_pvmw: page_vma_mapped_walk + PTL per visited VMA (ASSUME)
    young_ns: int = 50  # §6.4 c_young: test-and-clear young bit (ASSUME)
    clear_ns: int = 50  # §6.4 c_clear: replace PTE by swap/migration entry (ASSUME)
    split_ns: int = 5_000  # ASSUME: __split_huge_page bookkeeping for one 2 MiB folio
    swap_out_ns: int = 2_000  # ASSUME: add to swap cache + start writeback (no I/O wait modelled)
    # --- RCU ----------------------------------------------------------------------------------------
    rcu_gp_ns: int = 10_000_000  # §6.4 T_gp = 10 ms (kfree_rcu delay); [N6] "hundreds of ms" worst

    def itree_op(self, size: int) -> int:
        """Insert/remove in an interval tree of ``size`` nodes: base + per-level cost."""
        return self.itree_base_ns + self.itree_log_ns * max(1, size).bit_length()

    def itree_query(self, size: int) -> int:
        return self.itree_query_base_ns + self.itree_log_ns * max(1, size).bit_length()

    def mt_lookup(self, nvmas: int) -> int:
        return self.mt_lookup_base_ns + self.mt_lookup_log_ns * max(1, nvmas).bit_length()

    def lock_costs(self) -> LockCosts:
        return LockCosts(self.atomic_ns, self.bounce_ns, self.lock_handoff_ns, self.wakeup_ns)

    def with_overrides(self, overrides: Mapping[str, object]) -> CostModel:
        names = {f.name for f in dataclasses.fields(self)}
        checked: dict[str, int] = {}
        for key, value in overrides.items():
            if key not in names:
                raise KeyError(f"unknown cost {key!r}; allowed: {', '.join(sorted(names))}")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"cost {key!r} must be a non-negative integer (ns), got {value!r}")
            checked[key] = value
        return dataclasses.replace(self, **checked)

    @classmethod
    def free(cls) -> CostModel:
        """Every cost zero: for lock-sequence tests that need no time to pass."""
        return cls(**{f.name: 0 for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
