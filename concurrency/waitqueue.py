"""A ``wait_queue_head_t`` (include/linux/wait.h): sleepers woken all at once.

Generic, beside the engine: kswapd sleeps on one (``kswapd_wait``), and the runner's phase edges
(the end of the workload phase) are one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrency.engine import Engine, SimTask

__all__ = ["WaitQueue"]


class WaitQueue:
    """``wait_event`` sleeps on it (:meth:`sleep`); ``wake_up_all`` (:meth:`wake_all`) wakes every
    sleeper.  A :class:`concurrency.engine.Waitable`: it names itself in deadlock reports."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.sleepers: list[SimTask] = []

    def holders(self) -> list[SimTask]:
        return []

    async def sleep(self) -> None:
        task = self.engine.current
        assert task is not None
        self.sleepers.append(task)
        await self.engine.block(self)

    def wake_all(self) -> None:
        sleepers, self.sleepers = self.sleepers, []
        for task in sleepers:
            self.engine.wake(task)
