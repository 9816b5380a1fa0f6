"""The single-run figures behind H8's run count (workloads/validate/h8.py ``EPISODES``).

``python -m benchmarks.h8_runs [--seeds 1-120] [--jobs 2] [--draws 200000]`` runs
``h8-low-priority-holder`` once per seed with the compactors at nice 19 and once at nice 0 (no
trylock, as the check's two sides), prints each seed's longest ``folio_referenced`` wait and then, for
k runs drawn at random from those seeds, how often the check would miss (the longest nice-19 wait
under 100 ms, or under 10x the longest nice-0 wait of the same k).  docs/validate-h8.md gives the
figures for seeds 1-120 (9.4 minutes on 2 cores, compiled build).
"""

from __future__ import annotations

import argparse
import random
from concurrent.futures import ProcessPoolExecutor

from workloads.validate.common import MS, _run, _scenario
from workloads.validate.h8 import _reclaim_waits, priority_stall

RUN_COUNTS = (1, 6, 8, 10, 12, 16)


def longest_wait_ns(job: tuple[int, int]) -> tuple[int, int, float]:
    """(seed, nice, longest folio_referenced wait in ns) of one run."""
    seed, nice = job
    scenario = _scenario("h8-low-priority-holder", {"run.seed": seed, "reclaim.trylock": False},
                         actors={"migrate": {"nice": nice}})
    return seed, nice, _reclaim_waits(_run(scenario))["read_wait_max_ns"]


def misses(runs: dict[int, tuple[float, float]], k: int, draws: int, rng: random.Random) -> float:
    """The check's miss rate over ``draws`` draws of ``k`` seeds (with replacement) from ``runs``
    (seed: (nice-19 wait, nice-0 wait), ns), judged as the check judges its runs."""
    seeds = sorted(runs)
    missed = 0
    for _ in range(draws):
        drawn = [runs[rng.choice(seeds)] for _ in range(k)]
        missed += not priority_stall(max(w for w, _ in drawn), max(f for _, f in drawn))[1]
    return missed / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-120", help="a range FIRST-LAST (default 1-120)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--draws", type=int, default=200_000, help="draws per run count (default 200000)")
    args = parser.parse_args()
    first, _, last = args.seeds.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    jobs = [(seed, nice) for seed in seeds for nice in (19, 0)]
    waits: dict[tuple[int, int], float] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for seed, nice, ns in pool.map(longest_wait_ns, jobs):
            waits[seed, nice] = ns
    runs = {seed: (waits[seed, 19], waits[seed, 0]) for seed in seeds}
    print("seed  nice 19 (ms)  nice 0 (ms)")
    for seed, (worst, fair) in runs.items():
        print(f"{seed:4d}  {worst / MS:12.1f}  {fair / MS:11.1f}")
    reach = sum(w >= 100 * MS for w, _ in runs.values())
    print(f"nice 19 >= 100 ms: {reach} of {len(runs)}; nice 0: {min(f for _, f in runs.values()) / MS:.1f}-"
          f"{max(f for _, f in runs.values()) / MS:.1f} ms")
    rng = random.Random(1)
    for k in RUN_COUNTS:
        rate = misses(runs, k, args.draws, rng)
        print(f"k = {k:2d} runs: the check misses in {100 * rate:.2f}% of {args.draws} draws")


if __name__ == "__main__":
    main()
