"""Seeded per-operation variability of the cost model (issue 11 item 7): latencies that spread.

With every cost a constant, an operation's latency is a step function of how many locks it waited
for, and percentile plots jump from one value to the next.  Measured kernels spread: cache misses,
interrupts, TLB state and memory bandwidth make the same code path take a different time each run.
Here each place that spends a varied cost draws it (``spend(system, system.cost("pvmw_ns"))``), so
an operation that spends it once per page walked draws once per walk step.

**The distribution.**  Each varied cost ``c`` is ``c * (floor + (1 - floor) * X)`` with ``X``
lognormal of median 1 and shape ``sigma``: the median stays the cost model's calibrated constant
(so [N4]'s calibrated median stays where it was), nothing is ever below ``floor * c``, and the tail
is to the right, as measured latencies are.  :data:`SPREADS` gives ``(floor, sigma, source)`` per
cost, the source or ASSUME where none is known.

**Determinism.**  Draws come from a seeded ``random.Random`` of the running task's own
(``SimTask.cost_rng``, :func:`concurrency.engine.task_rng` of the run's seed and the task's name
with a ``<costs>`` suffix no task name has), never the global generator or anything hash-ordered:
the same scenario and seed give byte-identical results in any process, and the draws never move
the task's own choices (its ``rng``).  Outside a task (set-up before any task runs, callbacks) a
cost is its constant.

**An explicit draw, not an attribute trick.**  The compiled (mypyc) build reads a native class's
attributes directly, so a ``__getattribute__`` override that draws on every read of
``costs.pvmw_ns`` is bypassed there (and ``object.__setattr__`` on a native class fails): the
draw is a call at the place the cost is spent, the same on both builds.

**Not varied**, and why: ``ctx_switch_ns`` and the lock costs (``atomic_ns``, ``bounce_ns``,
``lock_handoff_ns``) are read once when the engine and the locks are built (their variability is
the contention the model already simulates); ``rcu_gp_ns`` is the grace period's length, which
concurrency/rcu.py times itself; the interval-tree and maple-tree per-level terms vary with their
base terms' draw (one draw per operation, applied to the whole operation's cost).

``run.cost_variability = false`` turns it off: every cost is its constant, the model before.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Final

from concurrency.engine import task_rng
from mm.costs import CostModel

if TYPE_CHECKING:
    from concurrency.engine import Engine

__all__ = ["SPREADS", "CostSpread"]

_N4_P95_OVER_MEDIAN = 4.0  # [N4]: median ~1.0 us, p95 ~4 us, min ~0.6 us (a minor read fault)
_N4_FLOOR = 0.6
_Z95 = 1.6448536269514722  # the standard normal's 95th percentile

# cost name -> (floor, sigma, source)
SPREADS: Final[dict[str, tuple[float, float, str]]] = {
    # [N4]: min/median 0.6 is the floor; the lognormal's p95 puts the whole at p95/median = 4.
    "fault_entry_ns": (_N4_FLOOR, math.log((_N4_P95_OVER_MEDIAN - _N4_FLOOR) / (1 - _N4_FLOOR)) / _Z95, "[N4]"),
    # §6.4 c_tlb_flush IPI "2-5 us" around the 3 us constant: 2 us the floor, 5 us the p95.
    "tlb_ipi_ns": (2 / 3, math.log((5 / 3 - 2 / 3) / (1 / 3)) / _Z95, "§6.4 c_tlb_flush (IPI 2-5 us)"),
    # Page clears and copies stream 4 KiB through the cache: memory bandwidth, not misses.
    "zero_page_ns": (0.8, 0.3, "ASSUME"),
    "copy_page_ns": (0.8, 0.3, "ASSUME"),
    # Pointer-chasing steps: a cache miss or two more or less.
    "pte_ns": (0.5, 0.3, "ASSUME"),
    "pte_copy_ns": (0.5, 0.3, "ASSUME"),
    "zap_ns": (0.5, 0.3, "ASSUME"),
    "pgtable_free_ns": (0.5, 0.3, "ASSUME"),
    "tlb_flush_ns": (0.5, 0.3, "ASSUME"),
    "slab_ns": (0.5, 0.3, "ASSUME"),
    "itree_base_ns": (0.5, 0.3, "ASSUME"),
    "itree_query_base_ns": (0.5, 0.3, "ASSUME"),
    "mt_lookup_base_ns": (0.5, 0.3, "ASSUME"),
    "mt_store_ns": (0.5, 0.3, "ASSUME"),
    "mt_dup_per_vma_ns": (0.5, 0.3, "ASSUME"),
    "vma_dup_ns": (0.5, 0.3, "ASSUME"),
    "list_op_ns": (0.5, 0.3, "ASSUME"),
    "pvmw_ns": (0.5, 0.3, "ASSUME"),
    "young_ns": (0.5, 0.3, "ASSUME"),
    "clear_ns": (0.5, 0.3, "ASSUME"),
    "split_ns": (0.5, 0.3, "ASSUME"),
    "swap_out_ns": (0.5, 0.3, "ASSUME"),
}


class CostSpread:
    """The draws of one run: ``cost(name)`` is cost ``name`` drawn (its constant when off, zero, or
    outside a task); ``vary(name, ns)`` applies ``name``'s spread to ``ns`` (an operation whose cost
    is a formula of the constants, e.g. :meth:`CostModel.itree_op`)."""

    def __init__(self, engine: Engine, costs: CostModel, enabled: bool) -> None:
        self.engine = engine
        self.enabled = enabled
        values = costs.to_dict()
        self._constant: dict[str, int] = {name: values[name] for name in SPREADS}
        self._shape: dict[str, tuple[float, float]] = {name: (floor, sigma)
                                                       for name, (floor, sigma, _) in SPREADS.items()}

    def cost(self, name: str) -> int:
        return self.vary(name, self._constant[name])

    def vary(self, name: str, ns: int) -> int:
        floor, sigma = self._shape[name]  # an unknown name is an error even when off
        if not ns or not self.enabled:
            return ns
        task = self.engine.current
        if task is None:
            return ns
        rng = task.cost_rng
        if rng is None:
            rng = task.cost_rng = task_rng(self.engine.seed, f"{task.name}<costs>")
        return max(1, round(ns * (floor + (1.0 - floor) * _lognormvariate(rng, sigma))))


_NV_MAGICCONST: Final = 4 * math.exp(-0.5) / math.sqrt(2.0)  # random.NV_MAGICCONST


def _lognormvariate(rng: random.Random, sigma: float) -> float:
    """``rng.lognormvariate(0.0, sigma)``, the same draws and the same floats: CPython's
    ``normalvariate`` (Kinderman and Monahan's ratio of uniforms) written out here, so that the
    compiled build runs it as native code (random.py's is interpreted on every build; the draw is
    on every varied cost spent) and the values do not depend on the Python version's random.py."""
    uniform = rng.random
    while True:
        u1 = uniform()
        u2 = 1.0 - uniform()
        z = _NV_MAGICCONST * (u1 - 0.5) / u2
        zz = z * z / 4.0
        if zz <= -math.log(u2):
            break
    return math.exp(0.0 + z * sigma)
