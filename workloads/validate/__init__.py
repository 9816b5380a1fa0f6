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

One module per published result (``h1``, ``h3``, ``h4``, ``h5``, ``h6``, ``h8``, ``l2a``, ``n4``: the
check's runs, figure, band and claim), ``common`` (bands, result types, run helpers), ``costs`` (the
cost model's sources) and ``runner`` (every check, ``run_validation``).  The checks (tags resolve in
docs/kernel-rmap.md §9):

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
  trylock removes the waits and keeps contended folios instead.  ``--full``: the published
  magnitude from task priorities, a nice-19 rmap-lock reader preempted at a tick with a writer
  queued behind it, against the same reader at nice 0, the longest wait over twelve runs (``h8.py``
  gives the mechanism and why twelve).
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
during the run by ``h6._PerVmaProbe``.
"""

from __future__ import annotations

from workloads.validate.common import BANDS, SCENARIO_DIR, SCHEMA, Band, Check, CheckResult
from workloads.validate.costs import CONSTANT_NOTES, SOURCED_CONSTANTS, unsourced_constants
from workloads.validate.runner import CHECKS, run_validation

__all__ = [
    "BANDS",
    "CHECKS",
    "CONSTANT_NOTES",
    "SCENARIO_DIR",
    "SCHEMA",
    "SOURCED_CONSTANTS",
    "Band",
    "Check",
    "CheckResult",
    "run_validation",
    "unsourced_constants",
]
