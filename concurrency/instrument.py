"""Instruments: what observes a run (tracers, the event log, lockdep, probes), after trio's API.

An instrument subclasses :class:`Instrument` and overrides the hooks it wants; every hook is a
no-op by default.  It is attached with ``engine.add_instrument(instrument)`` (and detached with
``remove_instrument``), like ``trio.lowlevel.add_instrument``.  The engine keeps a
:class:`Hooks` table: for each hook, ``None`` when no instrument overrides it, else the one bound
method (or a fan-out over several, in the order they were added).  A call site pays one attribute
load and one ``is not None`` test when nobody listens::

    hook = engine.hooks.on_acquired
    if hook is not None:
        hook(task, lock, mode, wait_start, key)

The hooks, and who calls them:

====================  =====================================================================
hook                  called by, when
====================  =====================================================================
``on_contended``      ``SimLock._contended`` (lock_stat's ``lock_contended``): an
                      acquisition is about to wait
``on_acquired``       ``SimLock._acquired`` (``lock_acquired``): a task got the lock
``on_released``       ``SimLock._released``: a task let it go
``on_lock_acquire``   ``SimLock._lockdep_acquire`` and ``rcu_read_lock`` (lockdep's
                      ``lock_acquire``), before any wait: ``read`` 0 exclusive, 1 reader,
                      2 recursive reader
``on_lock_release``   ``SimLock._lockdep_release`` and ``rcu_read_unlock`` (``lock_release``)
``on_lock_downgrade`` ``RwSemaphore.downgrade_write`` (``lock_downgrade``)
``on_op``             the world (actors/world.py): a simulated operation finished
``on_finding``        the mm system: an rmap walk missed mappings, or left corruption
====================  =====================================================================

Layers above add their own events the same way: ``mm.instrument.MmInstrument`` adds the designs'
events, with its own table (:class:`HookTable` is the mechanism both use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from concurrency.engine import SimTask
    from concurrency.lock import SimLock

__all__ = ["HookTable", "Hooks", "Instrument"]

_I = TypeVar("_I")


# Instruments are written outside the compiled packages (validate's probes, tests, a user's own).
@mypyc_attr(allow_interpreted_subclasses=True)
class Instrument:
    """Base class of every instrument: each hook does nothing until a subclass overrides it."""

    def on_contended(self, task: SimTask, lock: SimLock, mode: str, key: str | None) -> None:
        """``task`` will wait for ``lock`` (``mode`` "R" or "W"; ``key`` its class key)."""

    def on_acquired(self, task: SimTask, lock: SimLock, mode: str, wait_start: int | None,
                    key: str | None) -> None:
        """``task`` holds ``lock``; ``wait_start`` is when it began waiting (None: no wait)."""

    def on_released(self, task: SimTask, lock: SimLock, mode: str, since: int, key: str | None) -> None:
        """``task`` released ``lock``, held since ``since``."""

    def on_lock_acquire(self, task: SimTask, lock_class: str, read: int, trylock: bool, instance: str) -> None:
        """lockdep's ``lock_acquire``: ``task`` takes (or tries) an instance of ``lock_class``."""

    def on_lock_release(self, task: SimTask, lock_class: str, instance: str) -> None:
        """lockdep's ``lock_release``."""

    def on_lock_downgrade(self, task: SimTask, lock_class: str, instance: str) -> None:
        """lockdep's ``lock_downgrade``: a held write lock becomes a read lock."""

    def on_op(self, task: SimTask, name: str, start_ns: int, end_ns: int) -> None:
        """A simulated operation ``name`` of ``task`` ran from ``start_ns`` to ``end_ns``."""

    def on_finding(self, kind: str, fields: dict[str, object]) -> None:
        """A finding of the run's checks (``walk_miss``, ``corruption``) with its details."""


def _fan_out(methods: list[Callable[..., None]]) -> Callable[..., None]:
    """One callable that calls every subscriber in turn (rare: most runs have one per hook)."""
    def call(*args: object) -> None:
        for method in methods:
            method(*args)
    return call


class HookTable:
    """For each hook: None, or what calls the subscribers that override it.

    A subclass names its ``base`` instrument class (whose no-op methods are the defaults), declares
    one typed attribute per hook and lists their names in ``hook_names`` (a compiled class keeps no
    annotations to read them from; tests/concurrency/test_instrument_tables.py checks the two agree).
    """

    base: ClassVar[type] = Instrument
    hook_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.instruments: list[object] = []
        self._names = type(self).hook_names
        self._rebuild()

    def add(self, instrument: _I) -> _I:
        """Subscribe ``instrument`` to the hooks it overrides; returns it."""
        if any(i is instrument for i in self.instruments):
            raise ValueError(f"{instrument!r} is already attached")
        self.instruments.append(instrument)
        self._rebuild()
        return instrument

    def remove(self, instrument: object) -> None:
        """Unsubscribe ``instrument`` (ValueError if it was not attached)."""
        for i, attached in enumerate(self.instruments):
            if attached is instrument:
                del self.instruments[i]
                self._rebuild()
                return
        raise ValueError(f"{instrument!r} is not attached")

    def _rebuild(self) -> None:
        for name in self._names:
            default = getattr(self.base, name)
            methods: list[Callable[..., None]] = [
                getattr(i, name) for i in self.instruments
                if isinstance(i, self.base) and getattr(type(i), name) is not default]
            hook = None if not methods else methods[0] if len(methods) == 1 else _fan_out(methods)
            setattr(self, name, hook)


class Hooks(HookTable):
    """The engine's table (``engine.hooks``): one attribute per :class:`Instrument` hook."""

    base = Instrument
    hook_names = ("on_contended", "on_acquired", "on_released", "on_lock_acquire", "on_lock_release",
                  "on_lock_downgrade", "on_op", "on_finding")
    on_contended: Callable[[SimTask, SimLock, str, str | None], None] | None
    on_acquired: Callable[[SimTask, SimLock, str, int | None, str | None], None] | None
    on_released: Callable[[SimTask, SimLock, str, int, str | None], None] | None
    on_lock_acquire: Callable[[SimTask, str, int, bool, str], None] | None
    on_lock_release: Callable[[SimTask, str, str], None] | None
    on_lock_downgrade: Callable[[SimTask, str, str], None] | None
    on_op: Callable[[SimTask, str, int, int], None] | None
    on_finding: Callable[[str, dict[str, object]], None] | None
