"""A few independent tasks in forked worker processes, awaited as trio code.

``rmapsim run`` and ``compare`` simulate inside ``trio.run`` (rmapsim/cli.py): a run must stay
cancellable and share its nursery with the progress task.  :func:`map_in_processes` keeps that
when the designs of one run go to separate processes: the local workers are the executor's
(workloads/executor.py: forked, SIGINT ignored, dead with their parent), but the parent waits for
their answers with ``trio.lowlevel.wait_readable`` instead of blocking, so a cancellation or Ctrl-C
reaches it between two answers and terminates every worker before it propagates.

A task is a module-level function and one picklable argument, as for the executor; a forked worker
starts with the parent's modules already imported.  Results come back in the order of ``args``,
whatever order the workers finish in, so the caller's output cannot depend on scheduling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import trio

from workloads.executor import Outcome, _LocalWorker, _reply

A = TypeVar("A")  # a task's argument
R = TypeVar("R")  # what a task returns

__all__ = ["map_in_processes"]


async def map_in_processes(fn: Callable[[A], R], args: Sequence[A], *, jobs: int,
                           on_result: Callable[[int, Outcome[R]], None] | None = None,
                           on_start: Callable[[], None] | None = None) -> list[Outcome[R]]:
    """``fn(arg)`` for every arg in up to ``jobs`` forked processes; the outcomes in ``args`` order.

    A task that raised comes back with ``error`` set, one whose worker died as ``lost``; the
    others still run.  ``on_result(i, outcome)`` is called as each finishes (progress);
    ``on_start()`` once every worker is forked (this process is then free, and no fork of this
    call can copy a thread that ``on_start`` starts half-way through something)."""
    outcomes: list[Outcome[R] | None] = [None] * len(args)
    pending = list(range(len(args)))
    pending.reverse()  # pop() from the end: the first task first
    workers: list[_LocalWorker] = []

    async def serve(worker: _LocalWorker) -> None:
        while pending:
            index = pending.pop()
            outcome: Outcome[R] = await _one(worker, fn, args[index])
            outcomes[index] = outcome
            if on_result is not None:
                on_result(index, outcome)
            if outcome.lost:
                return  # its process is gone; the other workers take the rest

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(max(1, min(jobs, len(args)))):
                worker = _LocalWorker()
                workers.append(worker)
                nursery.start_soon(serve, worker)
            if on_start is not None:
                on_start()
    finally:
        for worker in workers:
            if worker.proc.is_alive() and worker.task is not None:
                worker.proc.terminate()  # cancelled mid-task: all at once, then wait for each
        for worker in workers:
            worker.stop(hard=worker.task is not None)
    lost: Outcome[R] = Outcome(error="worker lost (no worker left to run it)", lost=True)
    return [lost if o is None else o for o in outcomes]


async def _one(worker: _LocalWorker, fn: Callable[[A], R], arg: A) -> Outcome[R]:
    worker.task = 0
    with contextlib.suppress(OSError):  # died already: the pipe's end says so below
        worker.conn.send((fn, arg))
    try:
        await trio.lowlevel.wait_readable(worker.conn.fileno())
        message: object = worker.conn.recv()
    except (EOFError, OSError):
        worker.proc.join(1.0)
        return Outcome(error=f"worker lost (pid {worker.proc.pid}, exit status {worker.proc.exitcode})",
                       lost=True)
    worker.task = None
    return _reply(message)
