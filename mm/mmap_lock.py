"""mmap_lock and per-VMA lock helpers, after include/linux/mmap_lock.h and mm/mmap_lock.c.

The per-VMA write locks taken under an mmap write lock are all released when the mmap write lock
is dropped or downgraded (``vma_end_write_all``: the mm's lock sequence moves past every VMA's),
so the mm remembers which VMAs it write-locked in this cycle.
"""

from __future__ import annotations

from mm.system import MmSystem
from mm.types import MmStruct, Vma

__all__ = [
    "lock_vma_under_rcu",
    "mmap_write_downgrade",
    "mmap_write_lock",
    "mmap_write_unlock",
    "vma_start_write",
]


async def mmap_write_lock(mm: MmStruct, subclass: int = 0) -> None:
    """``mmap_write_lock`` (``mmap_write_lock_nested`` for the child mm in dup_mmap)."""
    await mm.mmap_lock.down_write(subclass)


def _vma_end_write_all(mm: MmStruct) -> None:
    for vma in mm.wlocked:
        vma.lock.mark_unlocked()
    mm.wlocked.clear()


def mmap_write_unlock(mm: MmStruct) -> None:
    """``mmap_write_unlock``: ``vma_end_write_all`` then ``up_write``."""
    _vma_end_write_all(mm)
    mm.mmap_lock.up_write()


def mmap_write_downgrade(mm: MmStruct) -> None:
    """``mmap_write_downgrade``: VMA write locks end, the mmap_lock becomes a read lock."""
    _vma_end_write_all(mm)
    mm.mmap_lock.downgrade_write()


async def vma_start_write(vma: Vma) -> None:
    """``vma_start_write``: wait for the VMA's readers to drain; caller holds mmap_lock for write."""
    mm = vma.mm
    if vma in mm.wlocked:
        return  # already write-locked in this cycle (vm_lock_seq == mm_lock_seq)
    await vma.lock.vma_start_write()
    mm.wlocked.append(vma)


def lock_vma_under_rcu(system: MmSystem, mm: MmStruct, vpn: int) -> Vma | None:
    """``lock_vma_under_rcu``: find the VMA under RCU and try its read lock; never blocks."""
    rcu = system.rcu
    rcu.rcu_read_lock()
    try:
        vma = mm.find_vma(vpn)
        if vma is None or not vma.lock.vma_start_read():
            return None
        return vma
    finally:
        rcu.rcu_read_unlock()
