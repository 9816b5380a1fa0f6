"""Kernel daemons: kswapd (and direct reclaim), NUMA-balancing/compaction migration, THP split.

kswapd sleeps on its wait queue until an allocation takes free memory below the low watermark
(``wakeup_kswapd``), then ages and reclaims folios from the LRU tail until free memory is back
above the high watermark (``balance_pgdat``).  An allocation that finds memory below the min
watermark reclaims a batch itself first (direct reclaim, ``__alloc_pages_direct_reclaim``).
"""

from __future__ import annotations

from collections.abc import Callable

from actors.world import World
from concurrency.waitqueue import WaitQueue
from mm.huge_memory import deferred_split_scan, split_huge_folio
from mm.migrate import migrate_folio
from mm.types import Folio
from mm.vmscan import shrink_folio

__all__ = ["cpu_hog", "install_reclaim", "kswapd", "migrate_daemon", "thp_split_daemon"]

SWAP_CLUSTER_MAX = 32  # folios per reclaim batch (include/linux/swap.h)


async def reclaim_batch(world: World, nr: int) -> int:
    """``shrink_inactive_list`` over up to ``nr`` folios from the LRU head (oldest); returns
    pages freed.  Folios kept (locked, contended, referenced, still mapped) go back to the tail.

    Each folio costs its list move off the LRU (``isolate_lru_folios``) whatever happens to it
    next, so a batch that frees nothing still takes time."""
    system = world.sys
    engine = world.engine
    freed = 0
    for _ in range(nr):
        if not system.lru:
            break
        folio = system.lru.pop(next(iter(system.lru)))
        folio.lru = False
        folio.pins += 1  # isolate_lru_folios takes a reference
        await engine.delay(system.cost("list_op_ns"))
        outcome = await world.timed("shrink_folio", shrink_folio, system, folio)
        system.ops.inc(f"reclaim_{outcome.value}")
        if folio.mapcount == 0 and folio.pins == 1 and not folio.freed:
            freed += folio.nr_pages  # our pin is the last: dropping it frees the folio
        elif not folio.freed and folio.mapcount:
            system.lru_add(folio)  # putback: rotated to the young end
        await system.folio_put(folio)
    return freed


def install_reclaim(world: World) -> WaitQueue:
    """Hook kswapd's wake-up and direct reclaim into the allocator; returns kswapd's wait queue."""
    system = world.sys
    queue = WaitQueue(world.engine, "kswapd_wait")

    async def direct_reclaim(nr: int) -> int:
        task = world.engine.current
        assert task is not None
        saved, task.op = task.op, "direct_reclaim"
        try:
            return await world.timed("direct_reclaim", reclaim_batch, world, SWAP_CLUSTER_MAX)
        finally:
            task.op = saved

    def wakeup() -> None:
        if queue.sleepers:
            queue.wake_all()

    system.direct_reclaim = direct_reclaim
    system.wakeup_kswapd = wakeup
    return queue


async def kswapd(world: World, queue: WaitQueue) -> None:
    """``kswapd`` -> ``balance_pgdat``: reclaim from low to high watermark, then sleep.

    A pass gives up once it has scanned the whole LRU without freeing a page (``balance_pgdat``
    ends its priority loop with ``nr_reclaimed == 0`` and counts a ``kswapd_failures``) and backs
    off before trying again: every folio may be kept (referenced, contended, still mapped), and
    without the limit kswapd would rescan the same folios for ever."""
    system = world.sys
    memory = system.memory
    while world.running:
        if system.free_pages >= memory.wmark_low:
            await queue.sleep()
            continue
        fruitless = 0  # folios scanned since the last page freed
        while world.running and system.free_pages < memory.wmark_high and system.lru:
            if system.deferred_split:  # shrink_slab: the THP shrinker splits partially mapped THPs
                await world.timed("deferred_split_scan", deferred_split_scan, system)
            if await world.timed("kswapd_batch", reclaim_batch, world, SWAP_CLUSTER_MAX):
                fruitless = 0
            else:
                fruitless += SWAP_CLUSTER_MAX
                if fruitless >= len(system.lru):
                    system.ops.inc("kswapd_failures")
                    break
        if system.free_pages < memory.wmark_high:
            await world.engine.sleep(100_000)  # nothing reclaimable right now: back off 100 µs


def _pick(world: World, want: Callable[[Folio], bool]) -> Folio | None:
    """A random live folio matching ``want``: a few random ids, O(1) per try."""
    system = world.sys
    task = world.engine.current
    assert task is not None
    rng = task.rng
    hi = system.next_folio_id
    if not system.folios or hi == 0:
        return None
    for _ in range(16):
        folio = system.folios.get(rng.randrange(hi))
        if folio is not None and folio.mapcount and want(folio):
            return folio
    return None


async def migrate_daemon(world: World, *, interval_ns: int, batch: int = 1, start_ns: int = 0) -> None:
    """NUMA balancing / compaction: every ``interval_ns``, migrate ``batch`` random mapped folios
    back to back (``compact_zone`` migrates its isolated folios without sleeping: it only
    ``cond_resched()``s, so a long pass keeps its CPU until the scheduler takes it).  With
    ``start_ns`` the first pass waits until that long after the workload started (a scenario that
    walks a state its processes first build, not the building)."""
    rng = world.engine.current.rng if world.engine.current else None
    assert rng is not None
    if start_ns:  # no draw from rng: with start_ns = 0 the schedule is the one without it
        wait = world.workload_start_ns + start_ns - world.engine.now
        if wait > 0:
            await world.engine.sleep(wait)
    while world.running:
        await world.engine.sleep(max(1, round(rng.expovariate(1 / interval_ns))))
        for i in range(batch):
            if i and not world.running:
                break
            folio = _pick(world, lambda f: True)
            if folio is not None:
                await world.timed("migrate", migrate_folio, world.sys, folio)


async def cpu_hog(world: World, *, chunk_ns: int) -> None:
    """A busy task (the foreground load that keeps low-priority tasks off their CPUs): computes
    in ``chunk_ns`` steps for as long as the workload phase lasts."""
    while world.running:
        await world.engine.delay(chunk_ns)


async def thp_split_daemon(world: World, *, interval_ns: int) -> None:
    """Every ``interval_ns``: ``deferred_split_scan`` over the partially mapped THPs queued since
    (``deferred_split_folio``), then split a random THP (compaction, ``split_huge_page`` callers)."""
    rng = world.engine.current.rng if world.engine.current else None
    assert rng is not None
    while world.running:
        await world.engine.sleep(max(1, round(rng.expovariate(1 / interval_ns))))
        if world.sys.deferred_split:
            await world.timed("deferred_split_scan", deferred_split_scan, world.sys)
        folio = _pick(world, lambda f: f.order > 0)
        if folio is not None:
            await world.timed("thp_split", split_huge_folio, world.sys, folio)
