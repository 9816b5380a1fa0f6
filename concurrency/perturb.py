"""Schedule perturbations: the knobs ``rmapsim explore`` turns to reach schedules one seed never does.

A single schedule per seed hides races: events due at the same virtual time always run in the
order they were queued, every cost is exactly its constant, and a task is only ever preempted at
the end of a timeslice.  A :class:`Perturbation` changes that, reproducibly (every random draw
comes from the run's seed, in event order, so a perturbed run is as deterministic as a plain one):

``shuffle``
    Events due at the same virtual time run in a seeded random order instead of FIFO.
``jitter``
    Every CPU cost (``Engine.delay``) and timed sleep (``Engine.sleep``) is scaled by a seeded
    factor drawn uniformly from ``[1 - jitter, 1 + jitter]`` each time: races move into and out
    of windows without the model changing meaning.
``preempt``
    PCT-style preemption injection (Burckhardt et al., ASPLOS 2010): at each ``(at_ns, off_ns)``
    the first task to finish a piece of work at or after ``at_ns`` is taken off its CPU for
    ``off_ns`` (its CPU runs others meanwhile).  It is never done where the kernel cannot be
    preempted: while a spinlock is held or being taken, inside an RCU read-side section (the
    non-preemptible flavour the models use); the injection then waits for the next preemptible
    point.  So a perturbed run is still one the kernel could produce (CONFIG_PREEMPT).

``Perturbation.none()`` changes nothing, and an engine given it runs the unperturbed code paths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from records.result import JsonObject

__all__ = ["PERTURB_KEYS", "PerturbTable", "Perturbation", "draw_preemptions"]

PERTURB_KEYS = ("shuffle", "jitter", "preempt")


class PerturbTable(TypedDict, total=False):
    """A validated ``[run.perturb]`` table (workloads/scenario.py checks the TOML)."""

    shuffle: bool
    jitter: float
    preempt: list[list[int]]  # [at_ns, off_ns] pairs


@dataclass(frozen=True)
class Perturbation:
    """One run's perturbation; see the module docstring."""

    shuffle: bool = False
    jitter: float = 0.0
    preempt: tuple[tuple[int, int], ...] = ()

    @classmethod
    def none(cls) -> Perturbation:
        return cls()

    @property
    def active(self) -> bool:
        return self.shuffle or self.jitter > 0 or bool(self.preempt)

    def to_dict(self) -> JsonObject:
        """The scenario form (``[run.perturb]``): also what result records and reproducers hold."""
        return {"shuffle": self.shuffle, "jitter": self.jitter,
                "preempt": [[at, off] for at, off in self.preempt]}

    @classmethod
    def from_dict(cls, data: PerturbTable) -> Perturbation:
        """From an already validated ``[run.perturb]`` table."""
        preempt = tuple(sorted((int(at), int(off)) for at, off in data.get("preempt", ())))
        return cls(bool(data.get("shuffle", False)), float(data.get("jitter", 0.0)), preempt)

    def describe(self) -> str:
        """Short human form: ``shuffle, jitter 0.2, 3 preemptions``."""
        parts = []
        if self.shuffle:
            parts.append("shuffle")
        if self.jitter:
            parts.append(f"jitter {self.jitter:g}")
        if self.preempt:
            parts.append(f"{len(self.preempt)} preemption{'s' if len(self.preempt) != 1 else ''}")
        return ", ".join(parts) or "none"


def draw_preemptions(rng: random.Random, count: int, horizon_ns: int, *, min_off_ns: int = 1_000,
                     max_off_ns: int = 1_000_000) -> tuple[tuple[int, int], ...]:
    """``count`` injection points uniform over ``[0, horizon_ns)``, each off-CPU time log-uniform
    in ``[min_off_ns, max_off_ns]`` (short and long preemptions are equally likely to matter: a
    window between reading an entry and taking a lock is nanoseconds, a lock hold is
    microseconds)."""
    out = []
    for _ in range(count):
        at = rng.randrange(max(1, horizon_ns))
        off = round(min_off_ns * (max_off_ns / min_off_ns) ** rng.random())
        out.append((at, off))
    return tuple(sorted(out))
