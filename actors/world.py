"""What the actors share in one run: the mm system, the processes, the clock, per-op metrics.

A :class:`Process` is an mm plus the tasks (threads) running in it; processes form the fork tree.
Every actor operation goes through :meth:`World.timed`, which records its latency (start to
finish, virtual ns) into the per-operation histogram and, when a tracer is attached, a timeline
slice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from concurrency.engine import Engine, SimTask
from concurrency.histogram import LatencyHistogram
from concurrency.sched import nice_of, set_user_nice
from mm.system import MmSystem
from mm.types import MmStruct

__all__ = ["Process", "World"]

T = TypeVar("T")
P = ParamSpec("P")


class Process:
    """A process: its mm, its fork-tree links and its live thread count."""

    __slots__ = ("children", "depth", "exited", "mm", "name", "parent", "pid", "threads")

    def __init__(self, pid: int, name: str, mm: MmStruct, parent: Process | None) -> None:
        self.pid = pid
        self.name = name
        self.mm = mm
        self.parent = parent
        self.children: list[Process] = []
        self.depth: int = 0 if parent is None else parent.depth + 1
        self.threads = 0
        self.exited = False

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.name} depth={self.depth}>"


class World:
    def __init__(self, engine: Engine, system: MmSystem, *, deadline_ns: int | None) -> None:
        self.engine = engine
        self.sys = system
        self.deadline_ns = deadline_ns
        self.workload_start_ns = 0  # when the set-up (populate) ended
        self.processes: list[Process] = []
        self.latency: dict[str, LatencyHistogram] = {}
        self._next_pid = 0
        self._spawned = 0
        # The nice of the tasks an actor starts (workloads/actor_kinds.py start_actor); None: inherited
        # from the spawning task (a forked child keeps its parent's nice: sched_fork), else 0.
        self.spawn_nice: int | None = None

    @property
    def running(self) -> bool:
        """Actors keep going while the workload phase lasts."""
        return self.deadline_ns is None or self.engine.now < self.deadline_ns

    async def new_process(self, name: str, parent: Process | None = None, mm: MmStruct | None = None) -> Process:
        if mm is None:
            mm = await self.sys.new_mm()
        proc = Process(self._next_pid, name, mm, parent)
        self._next_pid += 1
        if parent is not None:
            parent.children.append(proc)
        self.processes.append(proc)
        return proc

    def spawn(self, proc: Process, label: str, fn: Callable[..., Awaitable[object]], *args: object,
              cpu: int | None = None, **kwargs: object) -> SimTask:
        """Start a thread of ``proc``: a task named ``<process>/<label>``."""
        proc.threads += 1
        proc.mm.tasks += 1
        self._spawned += 1

        async def body() -> None:
            await fn(*args, **kwargs)

        parent = self.engine.current
        task = self.engine.spawn(f"{proc.name}/{label}", body, cpu=cpu)
        task.ctx = proc
        self._set_nice(task, parent)
        return task

    def _set_nice(self, task: SimTask, parent: SimTask | None) -> None:
        nice = self.spawn_nice if self.spawn_nice is not None else (nice_of(parent) if parent is not None else 0)
        if nice:
            set_user_nice(self.engine, task, nice)

    def spawn_kthread(self, name: str, fn: Callable[..., Awaitable[object]], *args: object, cpu: int | None = None,
                      **kwargs: object) -> SimTask:
        """Start a kernel thread (no mm of its own); ``cpu`` pins it."""

        async def body() -> None:
            await fn(*args, **kwargs)

        task = self.engine.spawn(name, body, cpu=cpu)
        self._set_nice(task, None)
        return task

    async def timed(self, op: str, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one operation, recording its latency under ``op``."""
        engine = self.engine
        task = engine.current
        assert task is not None
        start = engine.now
        saved, task.op = task.op, op
        try:
            result = await fn(*args, **kwargs)
        finally:
            task.op = saved
        hist = self.latency.get(op)
        if hist is None:
            hist = self.latency[op] = LatencyHistogram()
        hist.record(engine.now - start)
        hook = engine.hooks.on_op
        if hook is not None:
            hook(task, op, start, engine.now)
        return result
