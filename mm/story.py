"""The race as a story: what happened to one folio, its mms and their page tables, in order.

A kernel developer explains a race with a timeline on a whiteboard: who took which lock in which
mode, who read or wrote which entry, where the rmap walk looked and what it skipped, when fork
copied and linked.  :class:`Story` records exactly that for a *victim* (the folio a walk missed or
whose migration entry went stale, and the mms involved) while a reproducer is rerun:

* the mm operations call :meth:`Story.note` at the points that matter (``system.story`` is None in
  every other run, so they cost one attribute test);
* it is an instrument of the run (``engine.add_instrument``), so lock events arrive through ``on_acquired`` /
  ``on_released`` / ``on_contended``; the mm locks (mmap_lock, PTLs, PMD locks), the rmap locks
  (anon_vma roots, COW contexts) and the victim folio's lock are recorded, and :meth:`Story.told`
  keeps those a task held around something it did to the victim.

Recording is passive: a run with a story gives the same result record as one without.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from concurrency.instrument import Instrument

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask
    from concurrency.lock import SimLock

__all__ = ["Story", "StoryEvent"]

_RMAP_LOCK_PREFIXES = ("anon_vma", "cow_context")



class StoryEvent(TypedDict):
    """One row of the story: when, on which CPU, which task in which operation, what happened, and
    the folio, mm and page it was about (None where the event names none)."""

    t_ns: int
    cpu: int | None
    task: str
    op: str
    kind: str
    text: str
    folio: int | None
    mm: int | None
    vpn: int | None


class Story(Instrument):
    """Events about a victim: ``folios`` and ``mms`` are ids (see the module docstring)."""

    def __init__(self, *, folios: set[int], mms: set[int], limit: int = 200_000) -> None:
        self.engine: Engine | None = None
        self.folios = set(folios)
        self.mms = set(mms)
        self.limit = limit
        self.events: list[StoryEvent] = []
        self._folio_locks = {f"folio{f}" for f in self.folios}

    def bind(self, engine: Engine) -> None:
        """The run's engine (the clock and the current task of every event)."""
        self.engine = engine

    # -- what the mm operations report ----------------------------------------------------------

    def about(self, *, folio: int | None = None, mm: int | None = None, mm2: int | None = None) -> bool:
        """Whether an event with these ids concerns the victim: an event about a folio must be
        about a victim folio; one about mms only (fork, exit) must involve a victim mm."""
        if folio is not None:
            return folio in self.folios
        return mm in self.mms or mm2 in self.mms

    def note(self, kind: str, text: str, *, folio: int | None = None, mm: int | None = None,
             mm2: int | None = None, vpn: int | None = None) -> None:
        """One event: ``kind`` is walk, visit, entry, fork, link, exit, fault, ...; ``text`` says
        what happened.  Kept only if it concerns the victim."""
        if self.about(folio=folio, mm=mm, mm2=mm2):
            self._add(kind, text, folio=folio, mm=mm, vpn=vpn)

    def _add(self, kind: str, text: str, *, folio: int | None = None, mm: int | None = None,
             vpn: int | None = None, task: SimTask | None = None) -> None:
        engine = self.engine
        if len(self.events) >= self.limit or engine is None:
            return
        task = task or engine.current
        self.events.append({
            "t_ns": engine.now, "cpu": task.cpu.index if task is not None else None,
            "task": task.name if task is not None else "-", "op": task.op if task is not None else "-",
            "kind": kind, "text": text, "folio": folio, "mm": mm, "vpn": vpn,
        })

    # -- the engine's tracer protocol (lock events) ---------------------------------------------

    def _wanted(self, lock: SimLock) -> bool:
        # Every mm's locks are candidates (a fork's nested source PTL belongs to the parent):
        # :meth:`told` keeps only those held around an event about the victim.
        name = lock.name
        return name.startswith(("mm", *_RMAP_LOCK_PREFIXES)) or name in self._folio_locks

    def on_contended(self, task: SimTask, lock: SimLock, mode: str, key: str | None = None) -> None:
        if self._wanted(lock):
            self._add("lock", f"waits for {lock.name} ({mode})", task=task)

    def on_acquired(self, task: SimTask, lock: SimLock, mode: str, wait_start: int | None,
                    key: str | None = None) -> None:
        if self._wanted(lock) and self.engine is not None:
            waited = f" after {self.engine.now - wait_start} ns" if wait_start is not None else ""
            self._add("lock", f"takes {lock.name} ({mode}){waited}", task=task)

    def on_released(self, task: SimTask, lock: SimLock, mode: str, since: int, key: str | None = None) -> None:
        if self._wanted(lock):
            self._add("lock", f"releases {lock.name} ({mode})", task=task)

    def on_op(self, task: SimTask, name: str, start_ns: int, end_ns: int) -> None:
        return None

    # -- the part worth reading -----------------------------------------------------------------

    def told(self, until_ns: int | None = None, max_rows: int = 160) -> list[StoryEvent]:
        """What is worth reading: from the first event that touched a victim folio up to
        ``until_ns`` (the detection).  A lock event is kept when its task held (or waited for,
        then took) that lock around something it did to the victim, so the table shows the locks
        each actor held while it touched the folio and nothing else.  Longer than ``max_rows``:
        the beginning and the end, joined by a gap row."""
        events = self.events
        first = next((i for i, e in enumerate(events) if e["folio"] in self.folios), 0)
        span = [e for e in events[first:] if until_ns is None or e["t_ns"] <= until_ns]
        keep = [e["kind"] != "lock" for e in span]
        held: dict[str, list[int]] = {}  # task -> indexes of its lock events since the last release
        for i, e in enumerate(span):
            stack = held.setdefault(e["task"], [])
            if e["kind"] != "lock":
                for j in stack:
                    keep[j] = True  # held (or waited for) around an event about the victim
                continue
            text = e["text"]
            if text.startswith("releases "):
                name = text[len("releases "):].rsplit(" (", 1)[0]
                mine = [j for j in stack if _lock_name(span[j]["text"]) == name]
                if mine and keep[mine[-1]]:
                    keep[i] = True
                held[e["task"]] = [j for j in stack if _lock_name(span[j]["text"]) != name]
            else:
                stack.append(i)
        chosen = [e for e, k in zip(span, keep, strict=True) if k]
        if len(chosen) <= max_rows:
            return chosen
        head = max_rows // 4
        gap: StoryEvent = {"t_ns": chosen[head]["t_ns"], "cpu": None, "task": "...", "op": "...", "kind": "gap",
               "text": f"{len(chosen) - max_rows} events left out", "folio": None, "mm": None, "vpn": None}
        return [*chosen[:head], gap, *chosen[len(chosen) - (max_rows - head):]]


def _lock_name(text: str) -> str:
    """The lock of a lock event's text (``takes X (W) after ...``, ``waits for X (R)``)."""
    for verb in ("takes ", "waits for ", "releases "):
        if text.startswith(verb):
            return text[len(verb):].split(" (", 1)[0]
    return text
