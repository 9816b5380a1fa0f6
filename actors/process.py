"""Process behaviours: fault loops, COW writes after fork, fork/exit, mmap churn, mremap, threads.

Each behaviour is an ``async def`` run as a simulated task; it loops while the workload phase lasts
(``world.running``) and times every operation through :meth:`World.timed`.  Randomness comes
only from the task's own seeded generator (``engine.current.rng``).
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.world import Process, World
from mm.fork import dup_mmap
from mm.memory import Fault, handle_mm_fault
from mm.mmap import exit_mmap, mmap_region, mremap_move, munmap

__all__ = [
    "ChildSpec",
    "Region",
    "exit_process",
    "fan_out",
    "fault_loop",
    "fork_chain",
    "fork_exit_loop",
    "mmap_churn",
    "mremap_loop",
    "populate",
    "prefork_servers",
]


@dataclass(frozen=True)
class Region:
    """An anonymous mapping at a fixed page address."""

    start: int
    pages: int
    thp: bool = False


@dataclass(frozen=True)
class ChildSpec:
    """What a forked child does before it exits: COW-write some inherited pages, fault fresh ones,
    compute for a while."""

    cow_writes: int = 0  # inherited pages written (COW copy or reuse)
    # "random": each write picks a region and a page in it uniformly (pages may repeat or be
    # missed); "sequential": the inherited pages in order, region by region, wrapping around, so
    # cow_writes >= the pages inherited copies every one of them
    cow_pattern: str = "random"
    new_pages: int = 0  # pages of a fresh private region faulted in (first touch + anon faults)
    lifetime_ns: int = 0  # compute time before exit
    sleep_ns: int = 0  # then idle (asleep, e.g. an app in the background) before exit
    new_region_start: int = 1 << 30


def _rng(world: World):  # type: ignore[no-untyped-def]
    task = world.engine.current
    assert task is not None
    return task.rng


async def populate(world: World, proc: Process, region: Region, *, write: bool = True) -> None:
    """Fault a whole region in: the scenario's set-up, timed as the operation ``populate`` so that
    the workload's ``fault`` statistics are the workload's."""
    step = 512 if region.thp else 1
    for vpn in range(region.start, region.start + region.pages, step):
        await world.timed("populate", handle_mm_fault, world.sys, proc.mm, vpn, write)


async def fault_loop(world: World, proc: Process, region: Region, *, pattern: str = "sequential",
                     write: bool = True, think_ns: int = 0, unmap_each_pass: bool = False) -> None:
    """will-it-scale page_fault1: touch every page of a region, optionally munmap and redo.

    ``pattern`` is "sequential" or "random" (pages drawn uniformly from the region).
    """
    rng = _rng(world)
    engine = world.engine
    vpn = region.start
    while world.running:
        if pattern == "random":
            vpn = region.start + rng.randrange(region.pages)
        ret = await world.timed("fault", handle_mm_fault, world.sys, proc.mm, vpn, write)
        if ret is Fault.SIGSEGV:
            # the region was unmapped (by this loop's own munmap pass): map it again
            await world.timed("mmap", mmap_region, world.sys, proc.mm, region.start, region.pages,
                              thp=region.thp)
            continue
        if think_ns:
            await engine.delay(think_ns)
        if pattern != "random":
            vpn += 1
            if vpn >= region.start + region.pages:
                vpn = region.start
                if unmap_each_pass:
                    await world.timed("munmap", munmap, world.sys, proc.mm, region.start, region.pages)
    await exit_process(world, proc)


async def exit_process(world: World, proc: Process) -> None:
    """The last thread leaves: ``exit_mmap`` (timed as "exit")."""
    proc.threads -= 1
    proc.mm.tasks -= 1
    if proc.threads == 0 and not proc.exited:
        proc.exited = True
        await world.timed("exit", exit_mmap, world.sys, proc.mm)


async def _child(world: World, proc: Process, spec: ChildSpec, regions: list[Region]) -> None:
    rng = _rng(world)
    engine = world.engine
    if spec.cow_pattern == "sequential":
        inherited = [r.start + i for r in regions for i in range(r.pages)]
        for k in range(spec.cow_writes if inherited else 0):
            await world.timed("cow_fault", handle_mm_fault, world.sys, proc.mm, inherited[k % len(inherited)], True)
    else:
        for _ in range(spec.cow_writes):
            if not regions:
                break
            region = regions[rng.randrange(len(regions))]
            vpn = region.start + rng.randrange(region.pages)
            await world.timed("cow_fault", handle_mm_fault, world.sys, proc.mm, vpn, True)
    if spec.new_pages:
        start = spec.new_region_start
        await world.timed("mmap", mmap_region, world.sys, proc.mm, start, spec.new_pages)
        for vpn in range(start, start + spec.new_pages):
            await world.timed("fault", handle_mm_fault, world.sys, proc.mm, vpn, True)
    if spec.lifetime_ns:
        await engine.delay(spec.lifetime_ns)
    if spec.sleep_ns:
        await engine.sleep(spec.sleep_ns)
    await exit_process(world, proc)


async def fork_exit_loop(world: World, proc: Process, *, interval_ns: int, child: ChildSpec,
                         regions: list[Region], max_children: int | None = None) -> None:
    """A master forking short-lived workers (exim / AIM7 style); each child runs ``child``.

    The master thinks ``interval_ns`` (exponentially distributed) between forks.
    """
    rng = _rng(world)
    engine = world.engine
    forked = 0
    while world.running and (max_children is None or forked < max_children):
        # waiting for the next connection: asleep, not computing
        await engine.sleep(max(1, round(rng.expovariate(1 / interval_ns))) if interval_ns else 1)
        if not world.running:
            break
        mm = await world.timed("fork", dup_mmap, world.sys, proc.mm)
        kid = await world.new_process(f"{proc.name}.{forked}", proc, mm)
        forked += 1
        world.spawn(kid, "t0", _child, world, kid, child, regions)
    await exit_process(world, proc)


async def prefork_servers(world: World, proc: Process, *, servers: int, interval_ns: int, child: ChildSpec,
                          regions: list[Region]) -> None:
    """Pre-fork ``servers`` processes that each run a fork/exit loop (apache prefork, exim's
    per-connection processes): separate mmap_locks, one anon_vma family."""
    for i in range(servers):
        mm = await world.timed("fork", dup_mmap, world.sys, proc.mm)
        server = await world.new_process(f"{proc.name}.srv{i}", proc, mm)
        world.spawn(server, "t0", fork_exit_loop, world, server, interval_ns=interval_ns, child=child,
                    regions=regions)
    await exit_process(world, proc)


async def fork_chain(world: World, proc: Process, *, depth: int, regions: list[Region],
                     cow_writes: int = 0, think_ns: int = 0) -> None:
    """A constantly forking chain: each process forks a child, then exits (2015 [H6]).

    The child continues the chain until ``depth`` generations exist.
    """
    rng = _rng(world)
    for _ in range(cow_writes):
        region = regions[rng.randrange(len(regions))]
        await world.timed("cow_fault", handle_mm_fault, world.sys, proc.mm,
                          region.start + rng.randrange(region.pages), True)
    if think_ns:
        await world.engine.delay(think_ns)
    if proc.depth < depth and world.running:
        mm = await world.timed("fork", dup_mmap, world.sys, proc.mm)
        kid = await world.new_process(f"chain{proc.depth + 1}", proc, mm)
        world.spawn(kid, "t0", fork_chain, world, kid, depth=depth, regions=regions,
                    cow_writes=cow_writes, think_ns=think_ns)
    await exit_process(world, proc)


async def fan_out(world: World, proc: Process, *, children: int, child: ChildSpec, regions: list[Region],
                  stay_ns: int = 0, unmap_after_fork: bool = False) -> None:
    """A zygote forking ``children`` long-lived apps, then staying alive for ``stay_ns``.

    With ``unmap_after_fork`` it then munmaps its regions, so that the pages it faulted are mapped
    only by the apps that have not written them yet (the last one to write a page reuses it,
    ``folio_move_anon_rmap`` moving it to its own anon_vma)."""
    for i in range(children):
        if not world.running:
            break
        mm = await world.timed("fork", dup_mmap, world.sys, proc.mm)
        kid = await world.new_process(f"{proc.name}.app{i}", proc, mm)
        world.spawn(kid, "t0", _child, world, kid, child, regions)
    if unmap_after_fork:
        for region in regions:
            await world.timed("munmap", munmap, world.sys, proc.mm, region.start, region.pages)
    if stay_ns:
        await world.engine.sleep(stay_ns)
    await exit_process(world, proc)


async def mmap_churn(world: World, proc: Process, *, start: int, pages: int, touch: int,
                     think_ns: int = 0) -> None:
    """mmap a region, touch some pages, munmap it, repeat (the churn that stalls reclaim [H8])."""
    engine = world.engine
    while world.running:
        await world.timed("mmap", mmap_region, world.sys, proc.mm, start, pages)
        for vpn in range(start, start + min(touch, pages)):
            await world.timed("fault", handle_mm_fault, world.sys, proc.mm, vpn, True)
        if think_ns:
            await engine.delay(think_ns)
        await world.timed("munmap", munmap, world.sys, proc.mm, start, pages)
    await exit_process(world, proc)


async def mremap_loop(world: World, proc: Process, region: Region, *, other_start: int,
                      think_ns: int = 10_000) -> None:
    """Move a region back and forth between two addresses (mremap MAYMOVE|FIXED)."""
    here, there = region.start, other_start
    while world.running:
        await world.engine.sleep(think_ns)
        await world.timed("mremap", mremap_move, world.sys, proc.mm, here, region.pages, there)
        here, there = there, here
    await exit_process(world, proc)
