"""H8 at ``--full`` counts the longest wait over several independent runs (one 600 ms run holds a
single chance, docs/validate-h8.md): the runs' seeds, how their figures combine, and the verdict,
with each run's figures stood in for so that no 600 ms run is needed."""

from __future__ import annotations

import pytest

from workloads.scenario import Scenario
from workloads.validate import common, h8
from workloads.validate.common import EPISODE_STRIDE, MS, SEED, SEED_LIMIT, _scenario


def test_an_episode_runs_at_the_seed_plus_its_index_times_the_stride() -> None:
    own = _scenario("h8-low-priority-holder").seed
    assert [_scenario("h8-low-priority-holder", episode=i).seed for i in range(3)] == [
        own, own + EPISODE_STRIDE, own + 2 * EPISODE_STRIDE]
    token = SEED.set(40)
    try:
        assert _scenario("h8-low-priority-holder", episode=5).seed == 40 + 5 * 2**32
    finally:
        SEED.reset(token)
    token = SEED.set(SEED_LIMIT - 1)  # the largest seed run.seed accepts: the next ones wrap
    try:
        assert [_scenario("h8-low-priority-holder", episode=i).seed for i in range(3)] == [
            SEED_LIMIT - 1, EPISODE_STRIDE - 1, 2 * EPISODE_STRIDE - 1]
    finally:
        SEED.reset(token)


def test_runs_combine_as_the_longest_wait_and_the_summed_counts() -> None:
    runs: list[dict[str, int | float]] = [
        {"read_waits": 3, "read_wait_total_ns": 30, "read_wait_max_ns": 20, "read_hold_max_ns": 7},
        {"read_waits": 0, "read_wait_total_ns": 0, "read_wait_max_ns": 0, "read_hold_max_ns": 9},
        {"read_waits": 1, "read_wait_total_ns": 5, "read_wait_max_ns": 5, "read_hold_max_ns": 1}]
    assert h8._worst(runs) == {"read_waits": 4, "read_wait_total_ns": 35, "read_wait_max_ns": 20,
                               "read_hold_max_ns": 9}


def _stand_in(monkeypatch: pytest.MonkeyPatch, longest_ms: dict[int, list[float]]) -> list[tuple[int, int, bool]]:
    """Each run's figures from ``longest_ms[nice][episode]`` instead of a run; returns the runs made
    as (nice, seed, trylock)."""
    made: list[tuple[int, int, bool]] = []

    def run(scenario: Scenario) -> Scenario:
        return scenario

    def waits(scenario: Scenario) -> dict[str, int | float]:
        nice = next(a.params["nice"] for a in scenario.actors if a.kind == "migrate")
        assert isinstance(nice, int)
        trylock = scenario.reclaim_trylock
        made.append((nice, scenario.seed, trylock))
        wait = 0 if trylock else round(longest_ms[nice][scenario.seed // EPISODE_STRIDE] * MS)
        return {"read_waits": int(wait > 0), "read_wait_total_ns": wait, "read_wait_max_ns": wait,
                "keep_contended": 5 if trylock else 0, "read_hold_max_ns": wait}

    monkeypatch.setattr(h8, "_run", run)
    monkeypatch.setattr(h8, "_reclaim_waits", waits)
    monkeypatch.setattr(h8, "EPISODES", len(longest_ms[19]))
    return made


def test_full_counts_the_longest_wait_over_the_episodes(monkeypatch: pytest.MonkeyPatch) -> None:
    # at one run each this would fail (70 ms); the third run's 240 ms is >= 100 ms and 10x the longest
    # nice-0 wait of all six runs (21 ms), not only of its own run
    made = _stand_in(monkeypatch, {19: [70.0, 0.0, 240.0, 30.0, 66.0, 90.0], 0: [9.0, 21.0, 8.0, 11.0, 10.0, 9.5]})
    result = h8.CHECK.run(h8.CHECK, True)
    seeds = [1 + i * EPISODE_STRIDE for i in range(6)]
    assert sorted(made) == sorted((nice, seed, trylock) for nice, trylock in ((19, False), (19, True), (0, False))
                                  for seed in seeds)
    assert result.passed and result.value == 240.0
    assert result.details["episodes"] == {"seeds": seeds, "longest_wait_ms": {
        "blocking": [70.0, 0.0, 240.0, 30.0, 66.0, 90.0], "trylock": [0.0] * 6,
        "fair": [9.0, 21.0, 8.0, 11.0, 10.0, 9.5]}}
    assert "240.0/8.0" in result.notes[1]


@pytest.mark.parametrize(("nice19", "nice0"), [
    ([70.0, 0.0, 99.0, 30.0, 66.0, 90.0], [9.0] * 6),          # no run reaches 100 ms
    ([70.0, 0.0, 200.0, 30.0, 66.0, 90.0], [9.0, 21.0, 8.0, 11.0, 10.0, 9.5]),  # < 10x the worst nice-0 run
])
def test_full_fails_when_no_episode_shows_the_stall(monkeypatch: pytest.MonkeyPatch, nice19: list[float],
                                                    nice0: list[float]) -> None:
    _stand_in(monkeypatch, {19: nice19, 0: nice0})
    assert not h8.CHECK.run(h8.CHECK, True).passed


def test_the_small_size_stays_one_run(monkeypatch: pytest.MonkeyPatch) -> None:
    seeds: list[int] = []
    original = common._scenario

    def scenario(*args: object, **kwargs: object) -> Scenario:
        made = original(*args, **kwargs)  # type: ignore[arg-type]
        seeds.append(made.seed)
        return made

    monkeypatch.setattr(h8, "_scenario", scenario)
    monkeypatch.setattr(h8, "_run", lambda s: s)
    monkeypatch.setattr(h8, "_reclaim_waits", lambda s: {"read_waits": 1, "read_wait_total_ns": 1,
                                                         "read_wait_max_ns": 1, "keep_contended": 1})
    h8.CHECK.run(h8.CHECK, False)
    assert seeds == [1, 1]  # blocking and trylock, once each
