"""``rmapsim explore``: one scenario under many schedules, every run judged by the oracle.

A single schedule per seed hides races.  Exploration reruns a scenario with its own seed per run
*and* a seeded schedule perturbation (concurrency/perturb.py: random order among same-time events,
cost jitter, PCT-style injected preemptions), and gives each run a verdict:

==================  ===========================================================================
``sound``           nothing found
``crash``           a simulated task raised (a model assertion, a lock misuse)
``deadlock``        every live task blocked with nothing pending
``corruption``      what the kernel would have corrupted (a stale migration entry left behind)
``missed_mapping``  a completed rmap walk did not reach a mapping it owed (mm/rmap.py's rule)
``use_after_free``  an rmap walk called rmap_one on a VMA already unlinked from its mm
``sleep_in_rcu``    an rmap_one that may sleep ran inside an RCU read-side section (RCU-only walks)
``lock_order``      lockdep found an inversion, or an edge against the declared order
``invariant``       any other end-of-run check (leaks, refcounts, mapcounts, RCU sleeps)
==================  ===========================================================================

Run ``i`` of a variant uses seed ``seed_base + i``.  Run 0 is the plain, unperturbed schedule of
that seed: its end time is the horizon over which the other runs draw their injected preemptions.
Every other run's perturbation is drawn from its own seed, so the set of runs (and each run's
result) depends only on the scenario, the variants, ``--runs``, ``--seed-base`` and
``--perturb``, never on ``--jobs``.

The first failure of each (variant, category) is shrunk (fewer injected preemptions, no jitter or
shuffle, shorter duration, fewer actors and processes) while it still fails the same way, and
written as a reproducer scenario that ``rmapsim run`` reruns byte for byte.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NotRequired, TypedDict

from concurrency.engine import Deadlock, task_rng
from concurrency.perturb import Perturbation, draw_preemptions
from records.result import JsonObject, JsonValue, RecordError, RunRecord
from records.schema import EXPLORE_SCHEMA
from workloads.executor import Executor, Outcome
from workloads.record import dump_json
from workloads.scenario import Scenario, ScenarioError, SwitchValue, load_scenario, scenario_from_data

__all__ = [
    "CATEGORIES",
    "EXPLORE_SCHEMA",
    "Job",
    "PerturbSpec",
    "ScenarioSource",
    "Variant",
    "Verdict",
    "execute",
    "lost_verdict",
    "plan",
    "resolve_variants",
    "run_jobs",
    "shrink",
]

# In order of precedence: a run's primary category is the first that applies.
CATEGORIES = ("crash", "deadlock", "corruption", "missed_mapping", "use_after_free", "sleep_in_rcu", "lock_order",
              "invariant")


# -- what to perturb ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerturbSpec:
    """What ``--perturb`` asks for; each run draws its own :class:`Perturbation` from it.

    ``all`` (the default) is ``shuffle,jitter=0.2,preempt=3``; ``none`` gives plain seeds; or a
    comma list of ``shuffle``, ``jitter[=J]`` (0 < J <= 0.9, default 0.2), ``preempt[=K]``
    (K injected preemptions per run, default 3).
    """

    shuffle: bool = True
    jitter: float = 0.2
    preemptions: int = 3

    @classmethod
    def parse(cls, text: str) -> PerturbSpec:
        text = text.strip()
        if text == "all":
            return cls()
        if text == "none":
            return cls(False, 0.0, 0)
        shuffle, jitter, preemptions = False, 0.0, 0
        for item in text.split(","):
            key, sep, value = item.strip().partition("=")
            try:
                if key == "shuffle" and not sep:
                    shuffle = True
                elif key == "jitter":
                    jitter = float(value) if sep else 0.2
                    if not 0 < jitter <= 0.9:
                        raise ValueError
                elif key == "preempt":
                    preemptions = int(value) if sep else 3
                    if not 1 <= preemptions <= 1000:
                        raise ValueError
                else:
                    raise ValueError
            except ValueError:
                raise ValueError(f"--perturb {text!r}: bad item {item.strip()!r}; allowed: all, none, or a "
                                 "comma list of shuffle, jitter[=J] (0 < J <= 0.9), preempt[=K] (1..1000)") from None
        return cls(shuffle, jitter, preemptions)

    @property
    def active(self) -> bool:
        return self.shuffle or self.jitter > 0 or self.preemptions > 0

    def draw(self, seed: int, label: str, horizon_ns: int) -> Perturbation:
        rng = task_rng(seed, f"<explore:{label}>")
        preempt = draw_preemptions(rng, self.preemptions, horizon_ns) if self.preemptions else ()
        return Perturbation(self.shuffle, self.jitter, preempt)

    def to_dict(self) -> dict[str, bool | float | int]:
        return {"shuffle": self.shuffle, "jitter": self.jitter, "preemptions": self.preemptions}


# -- what to run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A design and switch settings on top of the scenario's (``--design NAME[:k=v,...]``)."""

    design: str
    switches: tuple[tuple[str, object], ...] = ()  # as parsed; resolve_variants checks them

    @property
    def switch_values(self) -> dict[str, SwitchValue]:
        """The switches, checked (a design's switches are strings and booleans)."""
        out: dict[str, SwitchValue] = {}
        for key, value in self.switches:
            if not isinstance(value, bool | str):
                raise ValueError(f"--design {self.label}: switch {key}: {value!r} not allowed")
            out[key] = value
        return out

    @property
    def label(self) -> str:
        if not self.switches:
            return self.design
        return f"{self.design}[{','.join(f'{k}={_fmt(v)}' for k, v in self.switches)}]"

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``anon_vma`` or ``cow_context:fork_link=early,traversal=pre`` (validated by the caller)."""
        from workloads.scenario import parse_value

        name, sep, rest = text.partition(":")
        switches = []
        if sep:
            for item in rest.split(","):
                key, eq, value = item.partition("=")
                if not eq or not key.strip():
                    raise ValueError(f"--design {text!r}: expected NAME:SWITCH=VALUE,...")
                switches.append((key.strip(), parse_value(value.strip())))
        return cls(name.strip(), tuple(sorted(switches)))


def resolve_variants(texts: list[str] | None, scenario: Scenario) -> list[Variant]:
    """``--design NAME[:SWITCH=VALUE,...]`` values (the scenario's designs when there are none),
    each checked against the registered designs and their switches; duplicates dropped.  Raises
    ValueError with a message naming the bad value and what is allowed."""
    from mm.designs import DESIGNS

    out: list[Variant] = []
    for text in texts or list(scenario.designs):
        variant = Variant.parse(text)
        cls = DESIGNS.get(variant.design)
        if cls is None:
            raise ValueError(f"--design {text!r}: unknown design {variant.design!r}; allowed: "
                             f"{', '.join(sorted(DESIGNS))}")
        try:
            cls.resolve_switches({**scenario.switches.get(variant.design, {}), **dict(variant.switches)})
        except (KeyError, ValueError) as exc:
            raise ValueError(f"--design {text!r}: {exc.args[0]}") from None
        for key, value in variant.switches:
            sw = cls.SWITCHES[key]
            if type(value) is not type(sw.default):  # 1 == True, but reuse=1 is not a boolean
                raise ValueError(f"--design {text!r}: switch {variant.design}.{key}: {value!r} not allowed; "
                                 f"allowed: {', '.join(map(repr, sw.allowed))}")
        if variant not in out:
            out.append(variant)
    return out


def _fmt(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class ScenarioSource:
    """What a worker process needs to rebuild the scenario: the parsed TOML data (with ``--set``
    applied), or a Python script and its overrides."""

    file: str
    data: Mapping[str, object] | None = None
    overrides: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_path(cls, path: Path, overrides: Mapping[str, object]) -> ScenarioSource:
        """Validates at once (raises :class:`ScenarioError`)."""
        scenario = load_scenario(path, overrides)
        if path.suffix == ".py":
            return cls(str(path.resolve()), None, dict(overrides))
        return cls(str(path), scenario.raw, {})

    def load(self) -> Scenario:
        if self.data is None:
            return load_scenario(self.file, self.overrides)
        return scenario_from_data(self.data, self.file)

    @property
    def is_toml(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class Job:
    """One explored run."""

    index: int
    variant: Variant
    seed: int
    perturb: Perturbation
    source: ScenarioSource

    def scenario(self) -> Scenario:
        """The scenario exactly as this run runs it: one design, the variant's switches, the seed
        and the perturbation."""
        sc = self.source.load()
        design = self.variant.design
        switches = {k: dict(v) for k, v in sc.switches.items()}
        switches.setdefault(design, {}).update(self.variant.switch_values)
        return replace(sc, seed=self.seed, perturb=self.perturb, designs=(design,), switches=switches)


# -- one run ----------------------------------------------------------------------------------------


class Verdict(TypedDict):
    """One explored run's verdict (a row of explore.json's ``runs``)."""

    index: int
    variant: str
    design: str
    seed: int
    perturb: JsonObject  # concurrency.perturb.Perturbation.to_dict()
    categories: list[str]
    category: str
    detail: str
    victim: JsonObject | None  # whom the race story follows: a corruption or a missed mapping
    digest: str | None
    end_ns: int | None
    events: int | None
    preemptions_injected: int
    perturb_text: NotRequired[str]  # rmapsim explore adds it to a reproducer's verdict


def record_digest(record: Mapping[str, object]) -> str:
    """sha256 of a run record as result.json writes it: equal digests, byte-identical records."""
    return hashlib.sha256(dump_json(record).encode()).hexdigest()


def _walk_counts(walks: JsonObject, key: str) -> dict[str, int]:
    """Each walk kind's nonzero ``key`` count (a record's ``walks``)."""
    out: dict[str, int] = {}
    for name, walk in walks.items():
        n = walk.get(key) if isinstance(walk, dict) else None
        if not isinstance(n, int):
            raise RecordError(f"record.walks.{name}.{key}: {n!r} is not a count")
        if n:
            out[name] = n
    return out


def _texts(value: JsonValue, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"{path}: expected a list of strings, got {value!r}")
    return [v for v in value if isinstance(v, str)]


def classify(record: Mapping[str, object]) -> tuple[list[str], str, JsonObject | None]:
    """A run record's failure categories (in precedence order), a one-line detail, and the victim
    the race story follows (the first corrupted entry or missed mapping)."""
    rec = RunRecord.from_json(record)
    inv = rec.invariants
    cats: list[str] = []
    detail = ""
    victim: JsonObject | None = None
    if inv.corruption:
        cats.append("corruption")
        victim = {"kind": "corruption", **inv.corruption[0]}
        detail = next((v for v in inv.violations if "corrupted" in v), "corruption")
    missed = _walk_counts(rec.walks, "missed_mappings")
    if missed:
        cats.append("missed_mapping")
        first = inv.misses[0] if inv.misses else None
        if victim is None and first is not None:
            victim = {"kind": "missed_mapping", **first}
        detail = detail or ("missed mappings: " + ", ".join(f"{k} {v}" for k, v in sorted(missed.items())))
    freed = _walk_counts(rec.walks, "freed_vma_visits")
    if freed:
        # rmap_one on a VMA already unlinked from its mm (munmap/exit ran under the walk): the
        # kernel's walk would touch a VMA nothing keeps alive.
        cats.append("use_after_free")
        detail = detail or ("walks visited unlinked VMAs: " + ", ".join(f"{k} {v}" for k, v in sorted(freed.items())))
    sleeps = _walk_counts(rec.walks, "would_sleep_in_rcu")
    if sleeps:
        # An rmap_one that may sleep (mmu notifiers, TLB batching) ran inside the walk's RCU
        # read-side section: "BUG: sleeping function called from invalid context".
        cats.append("sleep_in_rcu")
        detail = detail or ("rmap_one that may sleep inside an RCU read-side section: "
                            + ", ".join(f"{k} {v}" for k, v in sorted(sleeps.items())))
    findings = _texts(rec.lockdep.get("findings"), "record.lockdep.findings")
    order_violations = _texts(rec.lockdep.get("order_violations"), "record.lockdep.order_violations")
    if findings or order_violations:
        cats.append("lock_order")
        text = (findings or order_violations)[0]
        detail = detail or text.strip().splitlines()[0]
    others = [v for v in inv.violations if "corrupted mapping" not in v]
    if others:
        cats.append("invariant")
        detail = detail or others[0]
    return cats, detail, victim


def execute(job: Job) -> Verdict:
    """Run one job (in this process) and give its verdict."""
    from workloads.runner import RunFailed, run_one

    verdict: Verdict = {
        "index": job.index, "variant": job.variant.label, "design": job.variant.design, "seed": job.seed,
        "perturb": job.perturb.to_dict(), "categories": [], "category": "sound", "detail": "",
        "victim": None, "digest": None, "end_ns": None, "events": None, "preemptions_injected": 0,
    }
    try:
        scenario = job.scenario()
        record = run_one(scenario, job.variant.design)
    except ScenarioError as exc:  # a shrink step produced an invalid scenario: not a finding
        verdict.update({"category": "invalid", "detail": str(exc)})
        return verdict
    except RunFailed as exc:
        category = "deadlock" if isinstance(exc.__cause__, Deadlock) else "crash"
        verdict.update({"categories": [category], "category": category, "detail": str(exc).splitlines()[0]})
        return verdict
    except Exception as exc:  # the model itself broke outside a task (set-up, checks)
        verdict.update({"categories": ["crash"], "category": "crash", "detail": f"{type(exc).__name__}: {exc}"})
        return verdict
    cats, detail, victim = classify(record)
    outcome = RunRecord.from_json(record).outcome
    verdict.update({"categories": cats, "category": cats[0] if cats else "sound", "detail": detail,
                    "victim": victim, "digest": record_digest(record), "end_ns": outcome.end_ns,
                    "events": outcome.events, "preemptions_injected": len(outcome.preemptions_injected)})
    return verdict


# -- many runs ----------------------------------------------------------------------------------------


def plan(source: ScenarioSource, variants: list[Variant], runs: int, seed_base: int, spec: PerturbSpec,
         horizons: dict[str, int]) -> list[Job]:
    """Every job, in a fixed order: variant by variant, run index by run index.  ``horizons`` holds
    each variant's run-0 end time (needed only when the spec injects preemptions)."""
    jobs = []
    for variant in variants:
        for i in range(runs):
            seed = seed_base + i
            if i == 0 or not spec.active:
                perturb = Perturbation.none()
            else:
                perturb = spec.draw(seed, variant.label, horizons.get(variant.label, 1))
            jobs.append(Job(i, variant, seed, perturb, source))
    return jobs


def lost_verdict(job: Job, error: str, category: str = "worker_lost") -> Verdict:
    """The verdict of a run that came back without one: its worker died under it (``worker_lost``)
    or the executor could not run it (``error``).  Never shrunk: it says nothing about the schedule."""
    return {
        "index": job.index, "variant": job.variant.label, "design": job.variant.design, "seed": job.seed,
        "perturb": job.perturb.to_dict(), "categories": [category], "category": category, "detail": error,
        "victim": None, "digest": None, "end_ns": None, "events": None, "preemptions_injected": 0,
    }


def run_jobs(jobs: list[Job], executor: Executor, on_result: Callable[[Job, Verdict], None], *,
             stop: Callable[[], bool] | None = None) -> None:
    """Run ``jobs`` on ``executor`` (workloads/executor.py: in this process, local workers or Dask),
    calling ``on_result`` here as each finishes.  An interrupt cancels what runs and propagates;
    results already delivered stay delivered.  ``stop`` ends dispatching (running jobs still finish)."""

    def deliver(i: int, outcome: Outcome[Verdict]) -> None:
        job = jobs[i]
        if outcome.value is not None:
            on_result(job, outcome.value)
        else:
            on_result(job, lost_verdict(job, outcome.error or "", "worker_lost" if outcome.lost else "error"))

    executor.map(execute, jobs, deliver, stop=stop)


# -- shrinking ---------------------------------------------------------------------------------------


def _candidates(job: Job) -> Iterator[Job]:
    """Simpler versions of ``job``, simplest-first within each kind (syzkaller-style: the
    perturbation first, then the scenario piece by piece)."""
    p = job.perturb
    n = len(p.preempt)
    if n:
        yield replace(job, perturb=replace(p, preempt=()))
        chunk = n // 2
        while chunk >= 1:  # ddmin: drop chunks of the injected preemptions, then single ones
            for start in range(0, n, chunk):
                kept = p.preempt[:start] + p.preempt[start + chunk:]
                if len(kept) < n:
                    yield replace(job, perturb=replace(p, preempt=kept))
            chunk //= 2
    if p.jitter:
        yield replace(job, perturb=replace(p, jitter=0.0))
    if p.shuffle:
        yield replace(job, perturb=replace(p, shuffle=False))
    yield from _scenario_candidates(job)


def _scenario_candidates(job: Job) -> Iterator[Job]:
    src = job.source
    scenario = src.load()
    duration = scenario.duration_ns
    if duration is not None and duration >= 20_000:
        for frac in (4, 2):
            yield _with(job, {"run.duration_ns": duration // frac})
        yield _with(job, {"run.duration_ns": duration * 3 // 4})
    if not src.is_toml:
        return
    assert src.data is not None
    actors = _tables(src.data.get("actor", []))
    for i in range(len(actors)):
        data = copy.deepcopy(dict(src.data))
        del _tables(data["actor"])[i]
        yield replace(job, source=replace(src, data=data))
    procs = _tables(src.data.get("process", []))
    if len(procs) > 1:
        for proc in procs:
            name = proc.get("name")
            data = copy.deepcopy(dict(src.data))
            data["process"] = [q for q in _tables(data["process"]) if q.get("name") != name]
            data["actor"] = [a for a in _tables(data.get("actor", [])) if a.get("process") != name]
            yield replace(job, source=replace(src, data=data))


def _tables(value: object) -> list[dict[str, object]]:
    """A validated scenario's array of tables (``[[process]]``, ``[[actor]]``), as it is."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError(f"expected an array of tables, got {value!r}")
    return value


def _table(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table, got {value!r}")
    return value


def _with(job: Job, overrides: Mapping[str, object]) -> Job:
    src = job.source
    if src.data is not None:
        from workloads.scenario import apply_overrides

        return replace(job, source=replace(src, data=apply_overrides(src.data, overrides)))
    return replace(job, source=replace(src, overrides={**src.overrides, **overrides}))


def shrink(job: Job, verdict: Verdict, category: str, *, budget: int = 40,
           runner: Callable[[Job], Verdict] = execute) -> tuple[Job, Verdict, int]:
    """Greedy shrink: take the first simpler job that still fails with ``category`` and start
    over from it, until no candidate does or ``budget`` runs are spent.  Returns the smallest
    job, its verdict and the number of runs tried."""
    tried = 0
    improved = True
    while improved and tried < budget:
        improved = False
        for cand in _candidates(job):
            if tried >= budget:
                break
            tried += 1
            result = runner(cand)
            if category in result["categories"]:
                job, verdict, improved = cand, result, True
                break
    return job, verdict, tried


# -- reproducers --------------------------------------------------------------------------------------


def reproducer(job: Job, verdict: Verdict) -> tuple[str, str]:
    """A stand-alone scenario that reruns ``job`` exactly: ``(file name, text)``.

    A TOML scenario becomes a TOML file holding everything (the shrunk scenario, its seed, its one
    design with the variant's switches, ``[run.perturb]``); a Python scenario becomes a small
    script that loads the original one and sets the same fields."""
    import tomli_w

    design = job.variant.design
    category = verdict["category"]
    stem = f"repro-{_slug(job.variant.label)}-{category}"
    header = [f"rmapsim explore reproducer: {job.variant.label}, {category}",
              f"{verdict['detail']}",
              f"seed {job.seed}, perturbation: {job.perturb.describe()}",
              f"record sha256 {verdict['digest']}"]
    if job.source.data is not None:
        data = copy.deepcopy(dict(job.source.data))
        run = _table(data.setdefault("run", {}))
        run["seed"] = job.seed
        run["designs"] = [design]
        run.pop("perturb", None)
        if job.perturb.active:
            run["perturb"] = job.perturb.to_dict()
        if job.variant.switches:
            _table(_table(data.setdefault("switches", {})).setdefault(design, {})).update(dict(job.variant.switches))
        comments = "".join(f"# {line}\n" for line in [*header, f"rerun: rmapsim run {stem}.toml"])
        return f"{stem}.toml", comments + tomli_w.dumps(data)
    lines = [
        '"""' + "\n".join([*header, f"rerun: rmapsim run {stem}.py"]) + '\n"""',
        "",
        "import dataclasses",
        "",
        "from concurrency.perturb import Perturbation",
        "from workloads.scenario import load_scenario",
        "",
        f"BASE = {job.source.file!r}",
        f"OVERRIDES = {job.source.overrides!r}",
        "",
        "",
        "def scenario():  # type: ignore[no-untyped-def]",
        "    sc = load_scenario(BASE, OVERRIDES)",
        "    switches = {k: dict(v) for k, v in sc.switches.items()}",
        f"    switches.setdefault({design!r}, {{}}).update({dict(job.variant.switches)!r})",
        f"    return dataclasses.replace(sc, seed={job.seed}, designs=({design!r},), switches=switches,",
        f"                               perturb=Perturbation.from_dict({job.perturb.to_dict()!r}))",
        "",
    ]
    return f"{stem}.py", "\n".join(lines)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "-" for c in label).strip("-")


# -- the race as a story -------------------------------------------------------------------------------


def tell_story(job: Job, verdict: Verdict, replay: str) -> dict[str, object] | None:
    """Rerun ``job`` with a :class:`~mm.story.Story` following the verdict's victim (the folio a
    walk missed, or whose migration entry went stale, and the mms involved).  None when the
    failure has no victim (a deadlock, a leak).  ``same_run`` says the rerun gave the identical
    record, i.e. the story is the failing run's own."""
    from mm.story import Story
    from workloads.runner import run_one

    victim = verdict.get("victim")
    if not victim:
        return None
    folio = _count(victim, "folio")
    t_ns = _count(victim, "t_ns")
    if victim["kind"] == "missed_mapping":
        mappings = _pairs(victim.get("mappings"))
        mms = {m for m, _ in mappings}
        where = ", ".join(f"mm{m} vpn {v}" for m, v in mappings)
        text = (f"t={t_ns:,} ns: {victim['walk']} by {victim['task']} on folio {folio} ended without "
                f"reaching {where}, which mapped the folio when the walk started and still does")
    else:
        mms = {_count(victim, "mm")}
        text = (f"t={t_ns:,} ns: mm{victim['mm']} vpn {victim['vpn']} still holds a migration entry "
                f"for folio {folio} after its migration ended: the restoring walk never reached it")
    story = Story(folios={folio}, mms=mms)
    record = run_one(job.scenario(), job.variant.design, story=story)
    return {
        "title": f"{job.variant.label}: {verdict['category']}",
        "victim": victim,
        "victim_text": text,
        "replay": replay,
        "same_run": record_digest(record) == verdict["digest"],
        "events": story.told(until_ns=t_ns),
    }


def _count(victim: JsonObject, key: str) -> int:
    """A victim's integer field (its folio, mm, vpn, time: mm/system.py's corruption and miss events)."""
    value = victim.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"victim.{key}: {value!r} is not an integer")
    return value


def _pairs(value: JsonValue) -> list[tuple[int, int]]:
    """A missed mapping's ``mappings``: ``[[mm, vpn], ...]``."""
    if not isinstance(value, list):
        raise RecordError(f"victim.mappings: {value!r} is not a list")
    out: list[tuple[int, int]] = []
    for pair in value:
        mm, vpn = pair if isinstance(pair, list) and len(pair) == 2 else (None, None)
        if not isinstance(mm, int) or not isinstance(vpn, int):
            raise RecordError(f"victim.mappings: {pair!r} is not [mm, vpn]")
        out.append((mm, vpn))
    return out
