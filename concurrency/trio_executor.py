"""The trio executor: each simulated CPU is a trio task, and control passes between them in virtual time.

``TrioEngine`` (``engine_class("trio")``, concurrency/executors.py) runs here.  The engine keeps its
heap of ``(time_ns, seq, target, token)``, its CPUs and its tasks; what changes is who steps the
simulated tasks' coroutines:

* every simulated CPU is a trio task in one nursery (:meth:`_Cpus.cpu_main`);
* exactly one CPU task holds the *baton* at a time.  It pops the heap: a callback (an RCU grace
  period's end, a timer) it runs itself, in no task's context; an event of a simulated task on its
  own CPU it runs by sending the event to the task's coroutine, until the coroutine parks again;
  an event of a task on another CPU it hands to that CPU's trio task with
  ``trio.lowlevel.reschedule``, and parks in ``wait_task_rescheduled`` until the baton comes back;
* the heap alone decides who is next.  trio only carries the hand-off: at any time one CPU task is
  runnable and every other one is parked, so trio's own (randomised) ordering of runnable tasks
  never matters.

It is the straightforward implementation: it does not use the stepper's continue-without-switch
shortcut in ``Engine.delay`` (every delay goes through the heap), so keeping the two executors
byte-identical (tests/concurrency/test_trio_executor.py, over every built-in scenario) checks that
shortcut.  One exception: under ``Perturbation.shuffle`` every heap push draws the tie-break from
the run's perturbation stream, so whether a delay took the shortcut is part of what the seed means;
there the trio executor takes the shortcut exactly where the stepper does (same ``_fast_limit``).

Parked tasks wait with an abort function that returns ``Abort.SUCCEEDED``, so cancelling the
nursery ends them; the simulated work runs under trio's KeyboardInterrupt protection, so Ctrl-C
arrives as a ``KeyboardInterrupt`` at a hand-off or checkpoint, between two events, never inside
the model.  The stepper's counterpart inside trio is ``Engine.run_async``.
"""

from __future__ import annotations

import builtins
import contextlib
import heapq
import threading
from typing import TYPE_CHECKING, Any, TypedDict

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, enable_ki_protection, reschedule, wait_task_rescheduled

from concurrency.engine import (
    _CALLBACK_TOKEN,
    _NO_LIMIT,
    _PASS_THROUGH,
    _PREEMPT,
    _STOP_TOKEN,
    TIMEOUT,
    CpuState,
    Engine,
    RunOutcome,
    SimulationError,
    TaskState,
    _caused,
    _OffCpu,
)
from concurrency.lock_types import LockMisuse

if TYPE_CHECKING:
    from trio.lowlevel import RaiseCancelT

    from concurrency.engine import SimTask

__all__ = ["TrioEngine", "run_cpus", "run_sync"]


class TrioEngine(Engine):
    """The engine run by the trio executor: every simulated CPU a trio task (module docstring)."""

    def run(self, until_ns: int | None = None, max_events: int | None = None) -> RunOutcome:
        """Run to completion synchronously: its own ``trio.run`` (or a thread's, inside trio)."""
        return run_sync(self, until_ns, max_events)

    async def run_async(self, until_ns: int | None = None,
                        max_events: int | None = None) -> RunOutcome:
        """Run inside trio: the CPU tasks pass control through trio."""
        return await run_cpus(self, until_ns, max_events)


class _Cpus:
    """The shared state of one run: the CPU tasks, the baton protocol, how the run ended."""

    def __init__(self, engine: Engine, max_events: int | None) -> None:
        self.engine = engine
        self.limit = _NO_LIMIT if max_events is None else max_events
        self.tasks: list[Task | None] = [None] * len(engine.cpus)
        self.driver: Task | None = None
        self.reason = "completed"
        self.error: BaseException | None = None
        self.stopping = False  # the run is over (or being cancelled): nobody takes the baton again
        self.handoffs = 0
        # Under shuffle the shortcut is part of the schedule (module docstring): keep it, as the stepper does.
        self.shortcut = engine.perturb.shuffle
        self.next_checkpoint = engine.events + engine.checkpoint_every
        engine._fast_limit = min(self.limit, self.next_checkpoint) if self.shortcut else 0

    def _abort(self, _raise_cancel: RaiseCancelT) -> Abort:
        """A parked CPU task (or the driver) is cancelled or interrupted: the run is over.  It holds
        nothing, so ending it is always safe; ``stopping`` keeps a CPU task that is runnable now
        (handed an event before the cancellation) from handing the baton to a cancelled one."""
        self.stopping = True
        return Abort.SUCCEEDED

    def _end(self, reason: str | None = None, error: BaseException | None = None) -> None:
        """The baton holder ends the run: wake the driver, hand the baton to nobody."""
        if reason is not None:
            self.reason = reason
        self.error = error
        self.stopping = True
        assert self.driver is not None
        reschedule(self.driver)

    @enable_ki_protection
    async def cpu_main(self, me: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """CPU ``me``: wait for the baton, run this CPU's events, pass the baton on."""
        engine = self.engine
        heap = engine._heap
        pop = heapq.heappop
        limit = self.limit
        tasks = self.tasks
        tasks[me] = current_task()
        task_status.started()
        handed: tuple[int, SimTask] | None = await wait_task_rescheduled(self._abort)
        target: Any  # a task, a callback or None (the heap's third field), not only the handed task
        try:
            while not self.stopping:
                if handed is not None:  # an event another CPU popped for this one
                    t, target = handed
                    handed = None
                else:
                    if engine.events >= limit:
                        self._end("event_budget")
                        return
                    if not heap:
                        if engine._live:
                            raise engine._deadlock()
                        self._end("completed")
                        return
                    t, _, target, token = pop(heap)
                    if token >= 0:  # a task resumes
                        if token != target._token:
                            continue  # a spin timeout made stale by an earlier wake
                        owner = target.cpu.index
                        if owner != me:  # another CPU's task: hand it over, wait for the baton
                            self.handoffs += 1
                            other = tasks[owner]
                            assert other is not None
                            reschedule(other, outcome.Value((t, target)))
                            handed = await wait_task_rescheduled(self._abort)
                            continue
                    elif token == _CALLBACK_TOKEN:
                        engine.now = t
                        engine.events += 1
                        engine.current = None  # a callback runs in no task's context
                        target.fn(*target.args)
                        continue
                    else:  # the run's end time
                        engine.now = t
                        self._end("time_limit")
                        return
                # Run ``target``'s event on this CPU (the stepper's loop body, event for event).
                engine.now = t
                engine.events += 1
                engine.current = target
                value = target._wake_value
                if value is not None:
                    target._wake_value = None
                    if value is _PREEMPT:
                        engine._preempt(target)
                        continue
                    if value.__class__ is _OffCpu:
                        engine._off_cpu(target, value.ns)
                        continue
                    if value is TIMEOUT:
                        target.spin_ns += t - target.since_ns
                        target.state = TaskState.RUNNING
                        target.cpu._enter(CpuState.RUNNING, t)
                        target.waiting_for = None
                try:
                    target.coro.send(value)
                except StopIteration:
                    try:
                        engine._finish(target)
                    except LockMisuse as misuse:  # not ``exc``: mypyc types a name by its first clause
                        raise _caused(SimulationError(target, engine.now, misuse), misuse) from misuse
                except _PASS_THROUGH:
                    raise
                except BaseException as exc:
                    raise _caused(SimulationError(target, engine.now, exc), exc) from exc
                if engine.events >= self.next_checkpoint:
                    self.next_checkpoint = engine.events + engine.checkpoint_every
                    if self.shortcut:
                        engine._fast_limit = min(limit, self.next_checkpoint)
                    await trio.lowlevel.checkpoint()  # a long run on one CPU stays cancellable
        except trio.Cancelled:
            raise
        except BaseException as exc:  # the run failed on this CPU: the driver raises it
            if not self.stopping:
                self._end(error=exc)


@enable_ki_protection
async def run_cpus(engine: Engine, until_ns: int | None, max_events: int | None) -> RunOutcome:
    """Run ``engine`` with one trio task per simulated CPU (the module docstring); returns the
    outcome, or raises what the stepper would raise (``SimulationError``, ``Deadlock``)."""
    engine.max_events = max_events
    if until_ns is not None:
        heapq.heappush(engine._heap, (until_ns, engine._tiebreak(), None, _STOP_TOKEN))
    cpus = _Cpus(engine, max_events)
    try:
        async with trio.open_nursery() as nursery:
            for cpu in engine.cpus:
                await nursery.start(cpus.cpu_main, cpu.index)
            cpus.driver = current_task()
            first = cpus.tasks[0]
            assert first is not None
            if cpus.stopping:
                # Cancelled while the last CPU task was starting: a parked CPU task already has
                # its Cancelled to resume with (``_abort``), and ``nursery.start`` returned without
                # a checkpoint, so this task has not seen it yet.  Handing CPU 0 the baton now
                # would reschedule a task trio has already rescheduled.
                await trio.lowlevel.checkpoint()
            else:
                reschedule(first, outcome.Value(None))  # CPU 0's task pops the first event
                await wait_task_rescheduled(cpus._abort)  # until the run ends, fails or is cancelled
            nursery.cancel_scope.cancel()  # the parked CPU tasks
        if cpus.error is not None:
            raise cpus.error
    finally:
        engine.current = None
        engine._fast_limit = _NO_LIMIT
        for cpu in engine.cpus:
            cpu._enter(cpu.state, engine.now)
        if cpus.reason != "completed" or engine._live:
            engine._abandon()
    engine.handoffs = cpus.handoffs
    left = [task.name for task in engine.tasks if not task.done]
    engine._outcome = RunOutcome(cpus.reason, engine.now, engine.events, left)
    return engine._outcome


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


class _Box(TypedDict, total=False):
    """What the hosting thread hands back to :func:`run_sync`."""

    token: trio.lowlevel.TrioToken
    scope: trio.CancelScope
    outcome: RunOutcome
    # builtins.: a compiled TypedDict looks its annotations' names up in the module's globals, where
    # a bare builtin class name is missing (KeyError at import).
    error: builtins.BaseException


def run_sync(engine: Engine, until_ns: int | None, max_events: int | None) -> RunOutcome:
    """``Engine.run`` for the trio executor: its own ``trio.run``.

    A synchronous caller inside a trio run (the command line hosts every command in ``trio.run``;
    ``rmapsim validate`` or an in-process explore job then asks for a whole run synchronously), or a
    worker process forked from one, cannot start a nested ``trio.run`` in this thread: the run then
    gets a thread of its own, and a KeyboardInterrupt while waiting for it cancels it."""
    if not _in_trio():
        return trio.run(run_cpus, engine, until_ns, max_events)
    box: _Box = {}
    ready = threading.Event()

    async def hosted() -> None:
        with trio.CancelScope() as scope:
            box["token"], box["scope"] = trio.lowlevel.current_trio_token(), scope
            ready.set()
            box["outcome"] = await run_cpus(engine, until_ns, max_events)

    def thread_main() -> None:
        try:
            trio.run(hosted)
        except BaseException as exc:
            box["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=thread_main, name="rmapsim-trio-executor", daemon=True)
    thread.start()
    try:
        thread.join()
    except BaseException:  # Ctrl-C while waiting: cancel the run, let it unwind, pass the interrupt on
        ready.wait()
        if "scope" in box:
            with contextlib.suppress(trio.RunFinishedError):  # it ended by itself meanwhile
                trio.from_thread.run_sync(box["scope"].cancel, trio_token=box["token"])
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    if "outcome" not in box:  # cancelled from inside (cannot happen: nothing else cancels it)
        raise RuntimeError("the trio executor's run was cancelled")
    result: RunOutcome = box["outcome"]
    return result
