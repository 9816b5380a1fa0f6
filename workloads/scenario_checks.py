"""Load-time checks of a scenario's meaning (the parameter table checks its shape), and its cost.

:func:`check_semantics` finds, before anything runs, what would otherwise fail mid-run or pass
silently, each as a :class:`~workloads.scenario.ScenarioError` naming the key path (and the line,
given a locator):

* two regions of one process that overlap (``mmap_region`` would raise ``overlaps a VMA``);
* an ``mremap`` actor's target range on a mapped range of its process (``mremap_move`` refuses a
  mapped target; the kernel's ``mremap(MREMAP_FIXED)`` would unmap it, which the model does not),
  or a THP region moved by other than a multiple of a PMD (``move_page_tables`` keeps PMD
  alignment; the model raises in ``_move_ptes``);
* an ``mmap_churn`` range on a region of its process or on another actor's range;
* regions adding up to more pages than ``memory.total_pages`` in a scenario that does not reclaim
  (no ``kswapd`` actor, ``memory.wmark_min = 0``): the free count would go negative unnoticed.

:func:`estimate` says how long the simulation of a scenario would take, from its size, at the
measured speed of the simulator (:data:`CALIBRATION`); the command line refuses a run estimated
above :data:`LIMIT_S` unless given ``--force``.  ``python benchmarks/estimate.py`` measures the
calibration again on the built-in scenarios and prints it.

workloads/scenario.py imports this module (inside ``load_scenario``), so it needs the scenario
types only for type checking.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from concurrency.input_error import spell
from mm.types import HPAGE_PMD_NR
from workloads.actor_kinds import as_int
from workloads.inputfile import ScenarioError

if TYPE_CHECKING:
    from workloads.scenario import Scenario

__all__ = ["CALIBRATION", "LIMIT_S", "Estimate", "check_semantics", "estimate"]

Locate = Callable[[list[str | int]], int | None]


def _key(path: Sequence[str | int]) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")


def _span(start: int, pages: int) -> str:
    return f"pages [{start}, {start + pages})"


def check_semantics(scenario: Scenario, file: str, locate: Locate | None = None) -> None:
    """Raise :class:`ScenarioError` on the first thing in ``scenario`` that cannot run as written."""

    def fail(path: list[str | int], message: str) -> ScenarioError:
        return ScenarioError(file, locate(path) if locate else None, _key(path), message)

    mapped = 0
    for i, proc in enumerate(scenario.processes):
        # (path, what, start, end) of every fixed range this process maps at some point
        ranges: list[tuple[list[str | int], str, int, int]] = []
        for j, region in enumerate(proc.regions):
            mapped += region.pages
            path: list[str | int] = ["process", i, "regions", j]
            for _, what, start, end in ranges:
                if region.start < end and start < region.start + region.pages:
                    raise fail(path, f"{{start = {region.start}, pages = {region.pages}}} "
                                     f"({_span(region.start, region.pages)}) overlaps {what} "
                                     f"({_span(start, end - start)}) of process {spell(proc.name)}; allowed: "
                                     "regions of one process that do not overlap (a region is pages "
                                     "[start, start + pages))")
            ranges.append((path, f"{_key(path)}", region.start, region.start + region.pages))
        for a, actor in enumerate(scenario.actors):
            if actor.process != proc.name:
                continue
            if actor.kind == "mremap":
                index = as_int(actor.params.get("region", 0), "region")
                if not 0 <= index < len(proc.regions):
                    continue  # the table check names a region out of range
                source = proc.regions[index]
                target = as_int(actor.params.get("other_start", 1 << 29), "other_start")
                path = ["actor", a, "other_start"]
                for _, what, start, end in ranges:
                    if target < end and start < target + source.pages:
                        raise fail(path, f"{target}: the move of process[{i}].regions[{index}] lands on "
                                         f"{_span(target, source.pages)}, which overlaps {what} "
                                         f"({_span(start, end - start)}); allowed: a target range that nothing "
                                         "of the process maps")
                if source.thp and (target - source.start) % HPAGE_PMD_NR:
                    raise fail(path, f"{target}: moves a THP region by {target - source.start} pages; allowed: a "
                                     f"move by a multiple of {HPAGE_PMD_NR} pages (PMD alignment)")
                ranges.append((path, f"the mremap target of actor[{a}]", target, target + source.pages))
            elif actor.kind == "mmap_churn":
                start_at = as_int(actor.params.get("start", 1 << 28), "start")
                pages = as_int(actor.params.get("pages", 64), "pages")
                path = ["actor", a, "start"]
                for _, what, start, end in ranges:
                    if start_at < end and start < start_at + pages:
                        raise fail(path, f"{start_at}: the churned mapping {_span(start_at, pages)} overlaps "
                                         f"{what} ({_span(start, end - start)}); allowed: a range that nothing "
                                         "else of the process maps")
                ranges.append((path, f"the mmap_churn range of actor[{a}]", start_at, start_at + pages))
    reclaims = scenario.wmark_min > 0 or any(a.kind == "kswapd" for a in scenario.actors)
    if mapped > scenario.total_pages and not reclaims:
        raise fail(["memory", "total_pages"],
                   f"{scenario.total_pages} is less than the {mapped} pages the scenario's regions map; allowed: "
                   f"total_pages >= {mapped}, or reclaim to make room (a kswapd actor, or memory.wmark_min > 0)")


# -- what a run costs -------------------------------------------------------------------------------

#: The simulator's measured speed on the built-in scenarios (``python benchmarks/estimate.py``:
#: every built-in under each of its designs, on the 2-core development machine with three other
#: jobs running): the most events per populated page (fork-heavy, 7.3) and per CPU-microsecond of
#: workload phase (threaded-faults, 3.4) any of them took, and the fewest events per wall second any
#: of them ran at (fork-exit-threads under anon_vma_lazy, 60,000; the others 71,000-310,000), so
#: that the estimate errs long.
CALIBRATION = {"events_per_page": 7.3, "events_per_cpu_us": 3.4, "events_per_s": 60_000.0}
#: A run estimated longer than this is refused without ``--force`` (seconds).
LIMIT_S = 180.0


@dataclass(frozen=True)
class Estimate:
    events: int  # per design
    seconds: float  # every design
    capped: bool  # the event budget (run.max_events) bounds it
    pages: int
    designs: int

    def text(self) -> str:
        size = f"{self.pages:,} populated pages, then the workload phase"
        how = (f"more events than run.max_events ({size}), so {self.events:,} events" if self.capped else
               f"about {self.events:,} events ({size})")
        return (f"would take about {_duration(self.seconds)}: {how} per design x {self.designs} design(s) at "
                f"{CALIBRATION['events_per_s']:,.0f} events/s, the simulator's measured speed")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 86400:,.0f} days"


def estimate(scenario: Scenario, designs: int | None = None) -> Estimate:
    """The wall time a run of ``scenario`` (every design, or ``designs`` of them) would take."""
    pages = sum(r.pages for p in scenario.processes if p.populate for r in p.regions)
    events = pages * CALIBRATION["events_per_page"]
    if scenario.duration_ns is not None:
        events += CALIBRATION["events_per_cpu_us"] * scenario.cpus * scenario.duration_ns / 1000
    capped = events >= scenario.max_events
    per_design = int(min(events, scenario.max_events))
    n = len(scenario.designs) if designs is None else designs
    return Estimate(per_design, per_design * n / CALIBRATION["events_per_s"], capped, pages, n)
