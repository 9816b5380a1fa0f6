"""``explore.json`` (``rmapsim.explore/1``, written by ``rmapsim explore``) as typed, frozen classes:
what the exploration reports read.  :meth:`ExploreFile.from_json` checks every key they read; a
missing or mistyped one is a :class:`records.result.RecordError` naming its path.  The per-run
verdicts (``runs``) are the command's own record and are not read by the reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from records.result import RecordError, _bool, _int, _keys, _list, _num, _obj, _opt_int, _str
from records.schema import EXPLORE_SCHEMA

__all__ = ["ExploreFile", "Perturbation", "Reproducer", "Story", "StoryEvent", "VariantSummary"]


@dataclass(frozen=True, slots=True)
class StoryEvent:
    """One row of a race story (mm/story.py ``Story.told``): when, on which CPU (None for a gap
    row), which task in which operation, what kind of event and what happened; the folio, mm and
    virtual page it concerns, when it concerns one."""

    t_ns: int
    cpu: int | None
    task: str
    op: str
    kind: str
    text: str
    folio: int | None
    mm: int | None
    vpn: int | None

    @classmethod
    def from_json(cls, value: object, path: str) -> StoryEvent:
        data = _obj(value, path)
        _keys(data, path, ("t_ns", "cpu", "task", "op", "kind", "text", "folio", "mm", "vpn"))
        return cls(_int(data["t_ns"], f"{path}.t_ns"), _opt_int(data["cpu"], f"{path}.cpu"),
                   _str(data["task"], f"{path}.task"), _str(data["op"], f"{path}.op"),
                   _str(data["kind"], f"{path}.kind"), _str(data["text"], f"{path}.text"),
                   *(_opt_int(data[k], f"{path}.{k}") for k in ("folio", "mm", "vpn")))


@dataclass(frozen=True, slots=True)
class Story:
    """A failure's race story (workloads/explore.py ``tell_story``): its title, what went wrong to
    whom, how to replay it, and the events."""

    title: str
    victim_text: str
    replay: str
    events: tuple[StoryEvent, ...]

    @classmethod
    def from_json(cls, value: object, path: str = "story") -> Story:
        data = _obj(value, path)
        _keys(data, path, ("title", "victim_text", "replay", "events"), ("victim", "same_run"))
        events = _list(data["events"], f"{path}.events")
        return cls(_str(data["title"], f"{path}.title"), _str(data["victim_text"], f"{path}.victim_text"),
                   _str(data["replay"], f"{path}.replay"),
                   tuple(StoryEvent.from_json(e, f"{path}.events[{i}]") for i, e in enumerate(events)))


@dataclass(frozen=True, slots=True)
class Reproducer:
    """A shrunk failure: its reproducer file, category, the run it came from, the runs spent
    shrinking it, the shrunk perturbation (as text), what failed, and its story (None when the
    failure has no victim to follow)."""

    file: str
    category: str
    from_run: int
    shrink_runs: int
    perturb_text: str
    detail: str
    story: Story | None

    @classmethod
    def from_json(cls, value: object, path: str) -> Reproducer:
        data = _obj(value, path)
        _keys(data, path, ("file", "category", "from_run", "shrink_runs", "verdict", "story"),
              ("variant", "story_file"))
        verdict = _obj(data["verdict"], f"{path}.verdict")
        for key in ("perturb_text", "detail"):
            if key not in verdict:
                raise RecordError(f"{path}.verdict: missing {key}")
        story = data["story"]
        return cls(_str(data["file"], f"{path}.file"), _str(data["category"], f"{path}.category"),
                   _int(data["from_run"], f"{path}.from_run"), _int(data["shrink_runs"], f"{path}.shrink_runs"),
                   _str(verdict["perturb_text"], f"{path}.verdict.perturb_text"),
                   _str(verdict["detail"], f"{path}.verdict.detail"),
                   None if story is None else Story.from_json(story, f"{path}.story"))


@dataclass(frozen=True, slots=True)
class VariantSummary:
    """One design variant's runs, failed runs and failures by category (categories that occurred)."""

    runs: int
    failed: int
    by_category: dict[str, int]

    @classmethod
    def from_json(cls, value: object, path: str) -> VariantSummary:
        data = _obj(value, path)
        _keys(data, path, ("runs", "failed", "by_category"))
        cats = _obj(data["by_category"], f"{path}.by_category")
        return cls(_int(data["runs"], f"{path}.runs"), _int(data["failed"], f"{path}.failed"),
                   {c: _int(n, f"{path}.by_category.{c}") for c, n in cats.items()})


@dataclass(frozen=True, slots=True)
class Perturbation:
    """The perturbation of every run but run 0 (workloads/explore.py ``PerturbSpec.to_dict``)."""

    shuffle: bool
    jitter: int | float
    preemptions: int

    @classmethod
    def from_json(cls, value: object, path: str) -> Perturbation:
        data = _obj(value, path)
        _keys(data, path, ("shuffle", "jitter", "preemptions"))
        return cls(_bool(data["shuffle"], f"{path}.shuffle"), _num(data["jitter"], f"{path}.jitter"),
                   _int(data["preemptions"], f"{path}.preemptions"))


@dataclass(frozen=True, slots=True)
class ExploreFile:
    """``explore.json``: the scenario's name, runs per variant from seed ``seed_base`` on, the
    perturbation, whether every run finished, the summary per variant and the reproducers."""

    scenario_name: str
    runs_per_variant: int
    seed_base: int
    perturb: Perturbation
    complete: bool
    summary: dict[str, VariantSummary]
    reproducers: tuple[Reproducer, ...]

    @classmethod
    def from_json(cls, value: object) -> ExploreFile:
        data: Mapping[str, object] = _obj(value, "explore")
        if data.get("schema") != EXPLORE_SCHEMA:
            raise RecordError(f"explore.schema: {data.get('schema')!r}, expected {EXPLORE_SCHEMA!r}")
        _keys(data, "explore", ("schema", "scenario", "runs_per_variant", "seed_base", "perturb", "complete",
                                "summary", "reproducers"), ("overrides", "runs"))
        scenario = _obj(data["scenario"], "explore.scenario")
        _keys(scenario, "explore.scenario", ("name",), ("source",))
        summary = _obj(data["summary"], "explore.summary")
        reps = _list(data["reproducers"], "explore.reproducers")
        return cls(_str(scenario["name"], "explore.scenario.name"),
                   _int(data["runs_per_variant"], "explore.runs_per_variant"),
                   _int(data["seed_base"], "explore.seed_base"),
                   Perturbation.from_json(data["perturb"], "explore.perturb"),
                   _bool(data["complete"], "explore.complete"),
                   {label: VariantSummary.from_json(s, f"explore.summary.{label}") for label, s in summary.items()},
                   tuple(Reproducer.from_json(r, f"explore.reproducers[{i}]") for i, r in enumerate(reps)))
