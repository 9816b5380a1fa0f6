"""A tracer that records the lock sequence of each task: what tests assert against.

Attach as ``engine.add_instrument(LockLog())``; ``log.sequence(task_name)`` is the list of
``(event, class key, mode)`` with event ``acquire`` or ``release`` (and ``contended`` when
``with_contention``), in the order they happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from concurrency.instrument import Instrument

if TYPE_CHECKING:
    from concurrency.engine import SimTask
    from concurrency.lock import SimLock

__all__ = ["LockLog"]


class LockLog(Instrument):
    def __init__(self, *, with_contention: bool = False) -> None:
        self.events: list[tuple[str, str, str, str]] = []  # (task, event, class key, mode)
        self.with_contention = with_contention

    def on_contended(self, task: SimTask, lock: SimLock, mode: str, key: str | None = None) -> None:
        if self.with_contention:
            self.events.append((task.name, "contended", key or lock.lclass.key, mode))

    def on_acquired(self, task: SimTask, lock: SimLock, mode: str, wait_start: int | None,
                    key: str | None = None) -> None:
        self.events.append((task.name, "acquire", key or lock.lclass.key, mode))

    def on_released(self, task: SimTask, lock: SimLock, mode: str, since: int, key: str | None = None) -> None:
        self.events.append((task.name, "release", key or lock.lclass.key, mode))

    def sequence(self, task: str | None = None) -> list[tuple[str, str, str]]:
        return [(ev, key, mode) for name, ev, key, mode in self.events if task is None or name == task]

    def acquisitions(self, task: str | None = None) -> list[tuple[str, str]]:
        """Just the acquisitions, as (class key, mode): the shape most lock-order tests want."""
        return [(key, mode) for ev, key, mode in self.sequence(task) if ev == "acquire"]

    def clear(self) -> None:
        self.events.clear()
