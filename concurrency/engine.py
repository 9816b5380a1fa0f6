"""The simulated machine: a virtual clock, CPUs, tasks and the event loop that runs them.

Time is integer nanoseconds owned by the simulator: a heap of ``(time_ns, seq, target, token)``.
Exactly one simulated task runs at a time; a task whose next event comes before every other
pending event continues without a switch.

Two executors, one semantics
----------------------------
Every simulated task is an ``async def`` coroutine that awaits simulator primitives (``delay``,
lock acquisitions), never trio's.  Who steps those coroutines is the executor's business:

* **the stepper** (default, ``executor="stepper"``, this module's :class:`Engine`):
  :meth:`Engine._loop` pops the heap and sends each event to its coroutine itself.  Measured on the
  2-core target machine with the contended-mutex benchmark, one trio task per simulated task switched with
  ``reschedule``/``wait_task_rescheduled`` ran at 0.43x SimPy, because every switch costs a pass of
  trio's run loop; stepping the coroutines directly runs above SimPy.
* **the trio executor** (``executor="trio"``, ``TrioEngine`` in concurrency/trio_executor.py): each simulated CPU is
  a trio task in a nursery; the CPU task runs the coroutines of the simulated tasks on its CPU, and
  when the heap's next event belongs to another CPU it hands control to that CPU's task through
  trio's scheduler.  It does without the stepper's continue-without-switch shortcut (every
  ``delay`` goes through the heap; under ``Perturbation.shuffle`` the shortcut is part of what the
  seed means and both take it), so a test that keeps the two byte-identical checks that shortcut.
  It is slower; it exists to make the brief's shape literal and to check the stepper.

``concurrency.executors.engine_class(NAME)`` names either.  Both run inside trio with
:meth:`Engine.run_async` (the stepper checkpoints every
``checkpoint_every`` events, so a run is cancellable and shares a nursery with the command line's
progress task), or synchronously with :meth:`Engine.run`.

Determinism comes from the heap's ``seq`` tie-break and from a single seeded ``random.Random``
per run, split per task by name (:func:`task_rng`); nothing here depends on object identity,
PYTHONHASHSEED or trio's own scheduling order.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

import trio
from mypy_extensions import mypyc_attr
from trio.lowlevel import enable_ki_protection

from concurrency.instrument import Hooks, Instrument
from concurrency.lock_types import LockCosts, LockMisuse
from concurrency.lockstat import LockClass
from concurrency.perturb import Perturbation

if TYPE_CHECKING:
    from concurrency.lock import SimLock
    from concurrency.sched import CfsSched, SchedEntity

__all__ = [
    "TIMEOUT",
    "Cpu",
    "CpuState",
    "Deadlock",
    "Engine",
    "RunOutcome",
    "SimTask",
    "SimulationError",
    "TaskState",
    "Waitable",
    "task_rng",
]


_I = TypeVar("_I", bound=Instrument)


class _Timeout:
    """Sentinel resume value of a timed block whose time ran out."""

    def __repr__(self) -> str:
        return "TIMEOUT"


TIMEOUT: Final = _Timeout()


class TaskState(Enum):
    RUNNING = "running"  # on its CPU, executing or in a timed delay
    RUNNABLE = "runnable"  # woken, waiting for its CPU
    SLEEPING = "sleeping"  # blocked, CPU given up
    SPINNING = "spinning"  # blocked, still burning its CPU
    DONE = "done"


class CpuState(IntEnum):
    """An int so the time split is a list indexed by state (no Enum hashing on the hot path)."""

    RUNNING = 0
    SPINNING = 1
    SLEEPING = 2  # no runnable task; some task of this CPU is blocked
    IDLE = 3  # no live task on this CPU


class Waitable(Protocol):
    """What a blocked task waits for (a lock, a grace period); used to explain deadlocks."""

    @property
    def name(self) -> str: ...

    def holders(self) -> list[SimTask]: ...


@mypyc_attr(native_class=False, allow_interpreted_subclasses=True)  # an exception: a plain class
class SimulationError(RuntimeError):
    """A simulated task raised; names the task and the virtual time."""

    def __init__(self, task: SimTask, now_ns: int, exc: BaseException) -> None:
        super().__init__(f"task {task.name!r} (cpu {task.cpu.index}) raised {type(exc).__name__} "
                         f"at t={now_ns} ns: {exc}")
        self.task_name = task.name
        self.now_ns = now_ns


@mypyc_attr(native_class=False, allow_interpreted_subclasses=True)  # an exception: a plain class
class Deadlock(RuntimeError):
    """Every live task is blocked and nothing is pending: the wait-for report is the message."""

    def __init__(self, report: str, blocked: list[tuple[str, str, list[str]]]) -> None:
        super().__init__(report)
        self.report = report
        self.blocked = blocked


def _caused(error: SimulationError, cause: BaseException) -> SimulationError:
    """``error`` with ``__cause__`` set by hand as well as by ``raise ... from``: compiled with
    mypyc, ``raise ... from`` left it None (a failed task's exception must stay reachable)."""
    error.__cause__ = cause
    return error


def task_rng(seed: int, name: str) -> random.Random:
    """The stable per-task split of the run's seed: a digest of (seed, task name).

    A name-based rule (not a creation-order draw from a shared generator) keeps a task's stream
    unchanged when other tasks are added to a scenario.
    """
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class SimTask:
    """One simulated kernel task (a process's thread, kswapd, a migration thread)."""

    __slots__ = (
        "_token",
        "_wake_value",
        "atomic_depth",
        "coro",
        "cost_rng",
        "cpu",
        "ctx",
        "debt_ns",
        "done",
        "held",
        "name",
        "op",
        "pinned",
        "rcu_depth",
        "resched",
        "rng",
        "run_ns",
        "se",
        "since_ns",
        "sleep_ns",
        "slice_start",
        "spin_ns",
        "state",
        "tid",
        "wait_mark",
        "waiting_for",
    )

    def __init__(self, tid: int, name: str, cpu: Cpu, coro: Coroutine[object, object, object],
                 rng: random.Random) -> None:
        self.tid = tid
        self.name = name
        self.cpu = cpu
        self.coro = coro
        self.rng = rng
        # mm/cost_spread.py's own stream (made at the first draw): the spread of the costs never
        # moves the task's own choices, which come from ``rng``
        self.cost_rng: random.Random | None = None
        self.state = TaskState.RUNNABLE
        self.op = "-"  # the simulated operation in progress: lock_stat's "contention point"
        self.waiting_for: Waitable | None = None
        self.pinned = False  # bound to its CPU (spawned with an explicit cpu): never migrated
        self.held: list[SimLock] = []  # lock instances held, for misuse checks and deadlock reports
        self.ctx: object = None  # free slot for the model (e.g. the process's mm); the engine never reads it
        self.atomic_depth = 0  # spinlocks held: sleeping now is "scheduling while atomic"
        self.rcu_depth = 0  # rcu_read_lock nesting: sleeping now is reported, not raised
        # Set by a lock while this task spins optimistically (mutex/rwsem, not spinlocks): called
        # when another task becomes runnable on its CPU, the need_resched() those spin loops poll.
        self.resched: Callable[[SimTask], None] | None = None
        self.run_ns = 0
        self.spin_ns = 0
        self.sleep_ns = 0
        # CPU time spent in a synchronous call (Engine.charge: a lock release's try_to_wake_up)
        # that its next delay adds, or that its CPU pays before the next dispatch if it leaves first.
        self.debt_ns = 0
        self.since_ns = 0  # when the current blocked period started
        # (spin_ns, sleep_ns) when its current lock wait began (lock_contended), so lock_acquired
        # can split the wait into spinning (CPU burned) and sleeping (CPU given up).
        self.wait_mark = (0, 0)
        self.slice_start = 0  # when it last got its CPU (for timeslice preemption)
        self.se: SchedEntity | None = None  # concurrency/sched.py SchedEntity once the fair class is on
        self.done = False
        self._token = 0
        self._wake_value: object = None

    def __repr__(self) -> str:
        return f"<SimTask {self.name} cpu{self.cpu.index} {self.state.value}>"


# The states by module-level names in Cpu._enter: one global load each in the pure-Python build
# instead of a global and an attribute (the compiled build reads either as a constant).
_RUNNING: Final = CpuState.RUNNING
_SPINNING: Final = CpuState.SPINNING
_SLEEPING: Final = CpuState.SLEEPING


class Cpu:
    """A simulated CPU: the task on it, the woken tasks waiting for it, and its time split."""

    __slots__ = ("_since", "busy_until", "curr", "idle_ns", "index", "last_task", "ntasks", "running_ns", "runq",
                 "sleeping_ns", "spinning_ns", "state")

    def __init__(self, index: int) -> None:
        self.index = index
        self.curr: SimTask | None = None
        self.last_task: SimTask | None = None
        self.runq: deque[SimTask] = deque()
        self.ntasks = 0  # live tasks pinned here
        # The CPU is still busy with a task that left it owing charged time (Engine.charge) until
        # then: the next dispatch starts no earlier.
        self.busy_until = 0
        self.state = CpuState.IDLE
        self._since = 0
        # The time split, one field per state: a list indexed by the state (an IntEnum) took a
        # generic index, add and store per state change on the compiled build.
        self.running_ns = 0
        self.spinning_ns = 0
        self.sleeping_ns = 0
        self.idle_ns = 0

    @property
    def time_ns(self) -> list[int]:
        """The time split so far, indexed by :class:`CpuState` (the current state up to its last change)."""
        return [self.running_ns, self.spinning_ns, self.sleeping_ns, self.idle_ns]

    def _enter(self, state: CpuState, now: int) -> None:
        spent = now - self._since
        was = self.state
        if was is _RUNNING:  # the states a CPU leaves most often first
            self.running_ns += spent
        elif was is _SLEEPING:
            self.sleeping_ns += spent
        elif was is _SPINNING:
            self.spinning_ns += spent
        else:
            self.idle_ns += spent
        self.state = state
        self._since = now


@dataclass(frozen=True)
class RunOutcome:
    reason: str  # "completed", "time_limit", "event_budget"
    end_ns: int
    events: int
    tasks_left: list[str] = field(default_factory=list)


class _Park:
    """What a task awaits to wait for its next event (:meth:`Engine.block`): suspends its
    coroutine back to the engine's loop once and returns the wake value.

    ``block`` and ``delay`` are plain methods returning one of these shared awaitables, not
    coroutines of their own: a coroutine per wait was one more object and one more level of
    ``send`` per event (on the compiled build, a tenth of the engine benchmark)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, object, object]:
        return (yield None)


class _Step:
    """What a task awaits to let the loop run its next event (:meth:`Engine.delay`); resumes with
    nothing."""

    __slots__ = ()

    def __await__(self) -> Generator[None, object, None]:
        yield None


class _Ready:
    """What a delay that needs no switch returns: awaiting it continues at once."""

    __slots__ = ()

    def __await__(self) -> Generator[None, object, None]:
        return
        yield None  # a generator function, finished at once


_PARK: Final = _Park()
_STEP: Final = _Step()
_READY: Final = _Ready()


class _Callback:
    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., None], args: tuple[object, ...]) -> None:
        self.fn = fn
        self.args = args


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def holders(self) -> list[SimTask]:
        return []

    def __repr__(self) -> str:
        return self.name


_PREEMPT: Final = _Marker("preempt")  # resume value: give the CPU up instead of running on


class _OffCpu:
    """Resume value of an injected preemption: leave the CPU for ``ns`` (Perturbation.preempt)."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


_TIMER: Final = _Marker("schedule_timeout")  # what a task in Engine.sleep waits for

# What a task's step may raise that is not the task's failure: the engine's own reports, and Ctrl-C
# (a KeyboardInterrupt raised in model code by the signal handler is the user's, never "task raised").
_PASS_THROUGH: Final = (Deadlock, SimulationError, KeyboardInterrupt)

# Heap entries are (time_ns, seq, target, token): token >= 0 resumes a task (stale unless it equals
# the task's current token), the negative tokens below mark callbacks and the run's end time.
_CALLBACK_TOKEN: Final = -1
_STOP_TOKEN: Final = -2

# "No event budget": the largest int the compiled build keeps unboxed (1 << 62 is not, and every
# event's budget check then compared boxed ints).
_NO_LIMIT: Final = (1 << 62) - 1


class Engine:
    """Virtual clock, CPUs, tasks and the event loop.

    ``ctx_switch_ns`` is what a task that slept pays before it runs again (the wake-up and
    context switch); a spinning waiter keeps its CPU and pays nothing here.
    """

    # The trio executor's count of events handed from one CPU's trio task to another's (set by its
    # run; a class default, not one more instance attribute on the stepper's hot object).
    handoffs: int = 0

    def __init__(self, ncpus: int, seed: int = 0, *, ctx_switch_ns: int = 0,
                 checkpoint_every: int = 4096, lock_costs: LockCosts | None = None,
                 timeslice_ns: int = 1_000_000, instance_stats: bool = False, balance: bool = False,
                 perturb: Perturbation | None = None) -> None:
        if ncpus < 1:
            raise ValueError(f"ncpus must be >= 1, got {ncpus}")
        self.now = 0
        self.seed = seed
        self.cpus = [Cpu(i) for i in range(ncpus)]
        self.ctx_switch_ns = ctx_switch_ns
        # A task that keeps running while others wait for its CPU is preempted at the end of the
        # delay that exhausts its slice (CFS-like fairness at operation granularity).
        self.timeslice_ns = timeslice_ns
        # concurrency/sched.py CfsSched once a task gets a priority (sched.enable); None: FIFO round robin
        self.sched: CfsSched | None = None
        # Load balancing (CFS): a woken task whose CPU is busy runs on an idle CPU instead
        # (select_idle_sibling), and a CPU going idle pulls a waiting task from a busy one
        # (newidle_balance).  Off, every task stays on the CPU it was created on.
        self.balance = balance
        self.migrations = 0
        self.current: SimTask | None = None
        self.tasks: list[SimTask] = []
        self.events = 0
        self.context_switches = 0  # a task put on a CPU after sleeping or being preempted
        self.max_events: int | None = None
        # A lone task continues without a switch only up to the next checkpoint or the budget,
        # so a run inside trio still checkpoints and the event budget still holds.
        self._fast_limit = _NO_LIMIT
        self.checkpoint_every = checkpoint_every
        # What observes the run (lockdep, tracers, the event log, probes): concurrency/instrument.py.
        self.hooks = Hooks()
        self.lock_costs = LockCosts.free() if lock_costs is None else lock_costs
        self.lock_classes: dict[str, LockClass] = {}
        # lock_stat is per class; per lock (instance) statistics are kept too when asked for.
        self.instance_stats = instance_stats
        self.lock_instances: list[LockClass] = []
        self.rcu_sleeps: list[tuple[str, int, str, str]] = []  # (task, t_ns, waits for, op)
        self._heap: list[tuple[int, int, Any, int]] = []
        self._seq = 0
        self._live = 0
        self._next_tid = 0
        self._spin_watch: dict[SimTask, list[Callable[[SimTask], None]]] = {}
        # Schedule perturbation (concurrency/perturb.py).  Unperturbed, none of this is on a path.
        self.perturb = perturb or Perturbation.none()
        self.injected: list[tuple[int, str, int, str]] = []  # (t_ns, task, off_ns, op) as done
        # Flags, not methods swapped on the instance (a compiled Engine's methods are read-only).
        self._perturbed = self.perturb.active
        self._shuffled = self.perturb.active and self.perturb.shuffle
        if self.perturb.active:
            self._prng = task_rng(seed, "<perturb>")  # no task can have this name
            self._jitter = self.perturb.jitter
            self._pending_preempts = sorted(self.perturb.preempt, reverse=True)  # next one last

    # -- tasks -----------------------------------------------------------------------------

    def spawn(self, name: str, fn: Callable[..., Awaitable[object]], *args: object,
              cpu: int | None = None) -> SimTask:
        """Create a task running ``fn(*args)``; it first runs at the current virtual time.

        Without ``cpu`` tasks are pinned round-robin by creation order (one per CPU until
        the machine is oversubscribed).
        """
        tid = self._next_tid
        self._next_tid += 1
        index = tid % len(self.cpus) if cpu is None else cpu
        if not 0 <= index < len(self.cpus):
            raise ValueError(f"task {name!r}: cpu {index} out of range 0..{len(self.cpus) - 1}")
        coro = fn(*args)
        if not isinstance(coro, Coroutine):
            raise TypeError(f"task {name!r}: {fn!r} did not return a coroutine")
        task = SimTask(tid, name, self.cpus[index], coro, task_rng(self.seed, name))
        task.pinned = cpu is not None
        self.tasks.append(task)
        self._live += 1
        task.cpu.ntasks += 1
        if task.cpu.state is CpuState.IDLE:
            task.cpu._enter(CpuState.SLEEPING, self.now)
        task.since_ns = self.now
        task.state = TaskState.SLEEPING
        self._make_runnable(task, 0)
        return task

    def add_instrument(self, instrument: _I) -> _I:
        """Attach an instrument (``trio.lowlevel.add_instrument``): from now on it hears the hooks
        it overrides (concurrency/instrument.py).  Returns it."""
        return self.hooks.add(instrument)

    def remove_instrument(self, instrument: Instrument) -> None:
        """Detach an instrument; ValueError if it was not attached."""
        self.hooks.remove(instrument)

    def lock_class(self, name: str, kind: str, *, rw: bool, subclass: int = 0) -> LockClass:
        """The run's lock class for ``name`` (and subclass), created on first use."""
        key = f"{name}/{subclass}" if subclass else name
        cls = self.lock_classes.get(key)
        if cls is None:
            cls = self.lock_classes[key] = LockClass(name, kind, rw=rw, subclass=subclass)
        elif cls.kind != kind:
            raise ValueError(f"lock class {key!r} is a {cls.kind}, not a {kind}")
        return cls

    def instance_stats_for(self, cls: LockClass, instance: str) -> LockClass | None:
        """Per-lock statistics for a new lock instance, if this run keeps them."""
        if not self.instance_stats:
            return None
        stats = LockClass(instance, cls.kind, rw=cls.rw)
        stats.instances = 1
        self.lock_instances.append(stats)
        return stats

    # -- the heap's tie-break -----------------------------------------------------------------

    def _tiebreak(self) -> int:
        """The second key of a heap entry: FIFO among events due at the same time (shuffled under
        Perturbation.shuffle)."""
        self._seq += 1
        if self._shuffled:
            return self._tiebreak_shuffled()
        return self._seq

    def _tiebreak_shuffled(self) -> int:
        """Perturbation.shuffle: a seeded random order among events due at the same time (the
        low bits keep keys unique, so the rest of the entry is never compared); ``_seq`` is
        already counted by :meth:`_tiebreak`."""
        return (self._prng.getrandbits(30) << 34) | self._seq

    # -- primitives called by model code -----------------------------------------------------

    def delay(self, ns: int) -> Awaitable[None]:
        """Run on the CPU for ``ns`` (work, costs, think time); under a perturbation jittered, and
        the point where a pending preemption is injected (:meth:`_inject_preempt`)."""
        task = self.current
        assert task is not None
        if task.debt_ns:  # charged CPU time (Engine.charge) runs first
            ns += task.debt_ns
            task.debt_ns = 0
        if self._perturbed:
            ns = self._jittered(ns)
            if self._inject_preempt(task, ns):
                return _STEP
        t = self.now + ns
        heap = self._heap
        cpu = task.cpu
        # Never while holding a spinlock or inside an RCU read-side section: the kernel has
        # preemption disabled there (a spinner on this CPU would wait for us forever).
        slice_ns = self.timeslice_ns if task.se is None else task.se.slice_ns
        if (cpu.runq and t - task.slice_start >= slice_ns and not (task.atomic_depth or task.rcu_depth)
                and (task.se is None or (self.sched is not None and self.sched.tick(task, t)))):
            task._wake_value = _PREEMPT  # runs until t, then gives the CPU to the next in line
        elif (not heap or t < heap[0][0]) and self.events < self._fast_limit:
            self.events += 1
            self.now = t  # nothing else happens first: continue without a switch
            return _READY
        heappush(heap, (t, self._tiebreak(), task, task._token))
        return _STEP

    def charge(self, ns: int) -> None:
        """The current task spends ``ns`` of CPU time inside a synchronous call (a lock release's
        ``try_to_wake_up``, which cannot ``await``): its next :meth:`delay` runs that much longer.

        If it leaves its CPU first (sleeps, is preempted, exits), the CPU stays busy for what is
        owed before it dispatches another task (``Cpu.busy_until``).  What this approximates: the
        charged work runs at the task's next step rather than at the call, so the state changes
        of that call (the wake-up itself) happen up to ``ns`` early, and a spinning wait started
        before that step owes it until the spinner's next delay.  Outside a task (a callback) it
        charges nobody."""
        task = self.current
        if task is not None and ns > 0:
            task.debt_ns += ns

    async def sleep(self, ns: int) -> None:
        """``schedule_timeout``: give the CPU up for ``ns`` (a daemon between scans, a process
        waiting for work)."""
        task = self.current
        assert task is not None
        if self._perturbed:
            ns = self._jittered(ns)
        heappush(self._heap, (self.now + ns, self._tiebreak(),
                                    _Callback(self._timer_wake, (task, task._token + 1)), _CALLBACK_TOKEN))
        await self.block(_TIMER)

    def _jittered(self, ns: int) -> int:
        if ns > 0 and self._jitter:
            return max(1, round(ns * (1.0 + self._jitter * (2.0 * self._prng.random() - 1.0))))
        return ns

    def _inject_preempt(self, task: SimTask, ns: int) -> bool:
        """:meth:`delay` under a perturbation: inject the pending preemption if it is due and the
        task is preemptible (no spinlock, no RCU read-side section); the caller then parks."""
        pending = self._pending_preempts
        if pending and self.now >= pending[-1][0] and not (task.atomic_depth or task.rcu_depth):
            _, off = pending.pop()
            self.injected.append((self.now + ns, task.name, off, task.op))
            task._wake_value = _OffCpu(off)  # runs its work, then leaves the CPU for ``off``
            heappush(self._heap, (self.now + ns, self._tiebreak(), task, task._token))
            return True
        return False

    def _off_cpu(self, task: SimTask, ns: int) -> None:
        """An injected preemption: off the CPU (others run) and back in line after ``ns``."""
        cpu = task.cpu
        if self.sched is not None:
            self.sched.put_prev(task)
        cpu.curr = None
        cpu.last_task = task
        task.state = TaskState.RUNNABLE  # preempted: not blocked on anything, not on a run queue
        if self._spin_watch:  # off its CPU: spinners on a lock it owns stop spinning
            for notify in self._spin_watch.pop(task, ()):
                notify(task)
        self._cpu_free(cpu)
        self.call_at(self.now + ns, self._make_runnable, task, self.ctx_switch_ns)

    def _timer_wake(self, task: SimTask, token: int) -> None:
        if task._token == token and task.state is TaskState.SLEEPING:
            self.wake(task)

    def block(self, on: Waitable, *, spin: bool = False,
              timeout_ns: int | None = None) -> Awaitable[object]:
        """Wait until :meth:`wake` (returns its value) or, for spinners, a timeout (``TIMEOUT``).

        A sleeping task gives its CPU up; a spinning one keeps burning it.  Timeouts exist only
        for spinners: a spinner's time limit is part of the lock algorithm (the rwsem reader-owned
        spin threshold), while sleepers in the kernel are only ever woken by someone.
        """
        task = self.current
        assert task is not None
        cpu = task.cpu
        task.waiting_for = on
        task.since_ns = self.now
        task._token += 1
        if spin:
            task.state = TaskState.SPINNING
            cpu._enter(CpuState.SPINNING, self.now)
            if timeout_ns is not None:
                heappush(self._heap, (self.now + timeout_ns, self._tiebreak(), task, task._token))
                task._wake_value = TIMEOUT
        else:
            if timeout_ns is not None:
                raise ValueError("only spinning waits take a timeout")
            if task.atomic_depth:
                held = ", ".join(lk.name for lk in task.held if not lk.sleeping)
                raise LockMisuse(f"BUG: scheduling while atomic: {task.name} sleeps on {on.name} "
                                 f"holding spinlock(s) {held}")
            if task.rcu_depth:
                # The kernel's "Voluntary context switch within RCU read-side critical section!"
                self.rcu_sleeps.append((task.name, self.now, on.name, task.op))
            task.state = TaskState.SLEEPING
            if self.sched is not None:
                self.sched.put_prev(task)
            cpu.last_task = task
            cpu.curr = None
            if self._spin_watch:
                watchers = self._spin_watch.pop(task, None)
                if watchers:
                    for notify in watchers:
                        notify(task)
            self._cpu_free(cpu)
        return _PARK

    def wake(self, task: SimTask, value: object = None) -> None:
        """Make a blocked task runnable; it resumes with ``value`` from :meth:`block`."""
        state = task.state
        elapsed = self.now - task.since_ns
        task.waiting_for = None
        task._token += 1  # invalidates a pending spin timeout
        task._wake_value = value
        if state is TaskState.SPINNING:
            task.spin_ns += elapsed
            task.state = TaskState.RUNNING
            task.cpu._enter(CpuState.RUNNING, self.now)
            heappush(self._heap, (self.now, self._tiebreak(), task, task._token))
        elif state is TaskState.SLEEPING:
            task.sleep_ns += elapsed
            self._make_runnable(task, self.ctx_switch_ns)
        else:
            raise RuntimeError(f"wake of task {task.name!r} that is {state.value}, not blocked")

    def watch_sleep(self, owner: SimTask, notify: Callable[[SimTask], None]) -> None:
        """Call ``notify(owner)`` the next time ``owner`` goes to sleep (spinners stop spinning)."""
        self._spin_watch.setdefault(owner, []).append(notify)

    def unwatch_sleep(self, owner: SimTask, notify: Callable[[SimTask], None]) -> None:
        watchers = self._spin_watch.get(owner)
        if watchers and notify in watchers:
            watchers.remove(notify)
            if not watchers:
                del self._spin_watch[owner]

    def call_at(self, t_ns: int, fn: Callable[..., None], *args: object) -> None:
        """Run a plain callback at virtual time ``t_ns`` (RCU grace-period ends, timers)."""
        if t_ns < self.now:
            raise ValueError(f"call_at({t_ns}) is in the past (now {self.now})")
        heappush(self._heap, (t_ns, self._tiebreak(), _Callback(fn, args), _CALLBACK_TOKEN))

    # -- CPU bookkeeping ----------------------------------------------------------------------

    def _make_runnable(self, task: SimTask, cost_ns: int) -> None:
        cpu = task.cpu
        curr = cpu.curr
        sched = self.sched
        if curr is None:
            if sched is not None:
                sched.enqueue(task, cpu)
            self._dispatch(cpu, task, cost_ns)
        elif self.balance and not task.pinned and (idle := self._idle_cpu(cpu)) is not None:
            self._migrate(task, idle)
            if sched is not None:
                sched.enqueue(task, idle)
            self._dispatch(idle, task, cost_ns)
        else:
            task.state = TaskState.RUNNABLE
            if sched is not None:
                sched.enqueue(task, cpu)
                sched.check_preempt_wakeup(curr, task)
            cpu.runq.append(task)
            if curr.resched is not None and curr.state is TaskState.SPINNING:
                curr.resched(curr)  # need_resched(): an optimistic spinner gives up

    def _idle_cpu(self, busy: Cpu) -> Cpu | None:
        """``select_idle_sibling``: the first idle CPU after ``busy`` (wrapping round), if any."""
        cpus = self.cpus
        n = len(cpus)
        for k in range(1, n):
            cpu = cpus[(busy.index + k) % n]
            if cpu.curr is None:
                return cpu
        return None

    def _migrate(self, task: SimTask, to: Cpu) -> None:
        """Move a task that is not running to another CPU."""
        old = task.cpu
        old.ntasks -= 1
        if old.curr is None and not old.ntasks and old.state is CpuState.SLEEPING:
            old._enter(CpuState.IDLE, self.now)
        to.ntasks += 1
        task.cpu = to
        self.migrations += 1
        if self.sched is not None:
            self.sched.migrate(task, old, to)

    def _dispatch(self, cpu: Cpu, task: SimTask, cost_ns: int) -> None:
        now = self.now
        self.context_switches += 1
        cpu.curr = task
        task.slice_start = now
        task.state = TaskState.RUNNING
        if self.sched is not None:
            self.sched.set_slice(task, cpu)
        if cpu.state is _SLEEPING:  # Cpu._enter written out for a wake-up, the hot path
            cpu.sleeping_ns += now - cpu._since
            cpu.state = CpuState.RUNNING
            cpu._since = now
        else:
            cpu._enter(CpuState.RUNNING, now)
        task.run_ns += cost_ns
        owed = cpu.busy_until - now
        if owed > 0:  # the CPU still runs what the task before owed (Engine.charge)
            cost_ns += owed
        heappush(self._heap, (now + cost_ns, self._tiebreak(), task, task._token))

    def _preempt(self, task: SimTask) -> None:
        """The slice is used up and others wait: to the back of the CPU's run queue."""
        cpu = task.cpu
        if self.sched is not None:
            self.sched.put_prev(task)
        cpu.curr = None
        cpu.last_task = task
        task.state = TaskState.RUNNABLE
        cpu.runq.append(task)
        if self._spin_watch:  # off its CPU: spinners on a lock it owns stop spinning
            for notify in self._spin_watch.pop(task, ()):
                notify(task)
        self._cpu_free(cpu)

    def _cpu_free(self, cpu: Cpu) -> None:
        left = cpu.last_task
        if left is not None and left.debt_ns:
            # The task that left still owes charged CPU time (Engine.charge): the CPU runs it first.
            cpu.busy_until = max(cpu.busy_until, self.now) + left.debt_ns
            left.debt_ns = 0
        if cpu.runq:
            nxt = cpu.runq.popleft() if self.sched is None else self.sched.pick_next(cpu)
            cost = self.ctx_switch_ns if nxt is not cpu.last_task else 0
            self._dispatch(cpu, nxt, cost)
            return
        if self.balance:
            # newidle_balance: pull the longest-waiting movable task of the first busy CPU after this one.
            cpus = self.cpus
            n = len(cpus)
            for k in range(1, n):
                other = cpus[(cpu.index + k) % n]
                for nxt in other.runq:
                    if not nxt.pinned:
                        other.runq.remove(nxt)
                        self._migrate(nxt, cpu)
                        self._dispatch(cpu, nxt, self.ctx_switch_ns)
                        return
        if cpu.busy_until > self.now:  # busy with the owed time, then idle if nothing came meanwhile
            self.call_at(cpu.busy_until, self._owed_done, cpu)
            return
        cpu._enter(CpuState.SLEEPING if cpu.ntasks else CpuState.IDLE, self.now)

    def _owed_done(self, cpu: Cpu) -> None:
        """The owed CPU time of a task that left (Engine.charge) is spent: the CPU idles unless a
        task was dispatched meanwhile."""
        if cpu.curr is None and cpu.busy_until <= self.now:
            cpu._enter(CpuState.SLEEPING if cpu.ntasks else CpuState.IDLE, self.now)

    def _finish(self, task: SimTask) -> None:
        task.state = TaskState.DONE
        task.done = True
        self._live -= 1
        cpu = task.cpu
        cpu.ntasks -= 1
        if self.sched is not None:
            self.sched.put_prev(task)
        cpu.curr = None
        cpu.last_task = task
        self._spin_watch.pop(task, None)
        if task.held:
            names = ", ".join(getattr(lk, "name", repr(lk)) for lk in task.held)
            raise LockMisuse(f"task {task.name!r} exited holding {names}")
        if task.rcu_depth:
            raise LockMisuse(f"task {task.name!r} exited inside an RCU read-side critical section")
        self._cpu_free(cpu)

    # -- the loop -------------------------------------------------------------------------------

    def run(self, until_ns: int | None = None, max_events: int | None = None) -> RunOutcome:
        """Run to completion (or a limit) synchronously (the trio executor's ``TrioEngine``
        overrides this with its own ``trio.run``)."""
        gen = self._loop(until_ns, max_events)
        for _ in gen:
            pass
        return self._outcome

    async def run_async(self, until_ns: int | None = None,
                        max_events: int | None = None) -> RunOutcome:
        """Run inside trio (cancellable): the stepper checkpoints into trio every
        ``checkpoint_every`` events (``TrioEngine`` passes control between its CPU tasks instead).
        The body is a module function: mypyc keeps a decorated method out of the vtable, and then
        cannot compile ``TrioEngine``'s override of it."""
        return await _step_async(self, until_ns, max_events)

    def _loop(self, until_ns: int | None, max_events: int | None) -> Generator[None, None, None]:
        self.max_events = max_events
        limit = _NO_LIMIT if max_events is None else max_events
        heap = self._heap
        pop = heappop
        if until_ns is not None:
            heappush(heap, (until_ns, self._tiebreak(), None, _STOP_TOKEN))
        reason = "completed"
        next_checkpoint = self.events + self.checkpoint_every
        self._fast_limit = min(limit, next_checkpoint)
        try:
            while True:
                if self.events >= limit:
                    reason = "event_budget"
                    break
                if not heap:
                    if self._live:
                        raise self._deadlock()
                    break
                t, _, target, token = pop(heap)
                if token >= 0:  # a task resumes
                    # Typed, so that the compiled build reads the task's fields directly instead
                    # of looking each one up by name on an Any.
                    task: SimTask = target
                    if token != task._token:
                        continue  # a spin timeout made stale by an earlier wake
                    self.now = t
                    self.events += 1
                    self.current = task
                    value = task._wake_value
                    if value is not None:
                        task._wake_value = None
                        if value is _PREEMPT:
                            self._preempt(task)
                            continue
                        if type(value) is _OffCpu:  # not ``__class__``: a generic attribute lookup compiled
                            self._off_cpu(task, value.ns)
                            continue
                        if value is TIMEOUT:
                            task.spin_ns += t - task.since_ns
                            task.state = TaskState.RUNNING
                            task.cpu._enter(CpuState.RUNNING, t)
                            task.waiting_for = None
                    try:
                        task.coro.send(value)
                    except StopIteration:
                        try:
                            self._finish(task)
                        except LockMisuse as misuse:  # not ``exc``: mypyc types a name by its first clause
                            raise _caused(SimulationError(task, self.now, misuse), misuse) from misuse
                    except _PASS_THROUGH:
                        raise
                    except BaseException as exc:
                        raise _caused(SimulationError(task, self.now, exc), exc) from exc
                    if self.events >= next_checkpoint:
                        next_checkpoint = self.events + self.checkpoint_every
                        self._fast_limit = min(limit, next_checkpoint)
                        yield
                elif token == _CALLBACK_TOKEN:
                    self.now = t
                    self.events += 1
                    self.current = None  # a callback runs in no task's context
                    callback: _Callback = target
                    callback.fn(*callback.args)
                else:
                    self.now = t
                    reason = "time_limit"
                    break
        finally:
            self.current = None
            for cpu in self.cpus:
                cpu._enter(cpu.state, self.now)
            if reason != "completed" or self._live:
                self._abandon()
        left = [task.name for task in self.tasks if not task.done]
        self._outcome = RunOutcome(reason, self.now, self.events, left)

    def _abandon(self) -> None:
        """Close unfinished tasks (a limit was hit, or the run failed), each as the current task
        so that the finally blocks its unwinding runs see a sane engine; what they raise is moot."""
        for task in self.tasks:
            if not task.done and getattr(task.coro, "cr_frame", None) is not None:
                self.current = task
                with contextlib.suppress(Exception):  # unwinding an abandoned simulated task
                    task.coro.close()
        self.current = None

    def _deadlock(self) -> Deadlock:
        blocked: list[tuple[str, str, list[str]]] = []
        waits: dict[str, list[str]] = {}
        for task in self.tasks:
            if task.done:
                continue
            on = task.waiting_for
            if on is not None:
                lock_name = on.name
                holders = [h.name for h in on.holders()]
            else:  # runnable: waits for its CPU, held by whatever occupies it
                lock_name = f"cpu{task.cpu.index}"
                holders = [task.cpu.curr.name] if task.cpu.curr is not None else []
            blocked.append((task.name, lock_name, holders))
            waits[task.name] = holders
        cycle = _find_cycle(waits)
        # The deadlock formed when the last task of its cycle (or, with no cycle found, the last
        # blocked task) began to wait: it is only detected once nothing else is left to run.
        members = set(cycle) if cycle else set(waits)
        since = [t.since_ns for t in self.tasks if not t.done and t.name in members and t.waiting_for is not None]
        formed = max(since) if since else self.now
        when = f"t={formed} ns" if formed == self.now else f"t={formed} ns (found at t={self.now} ns, when nothing " \
                                                          "was left to run)"
        lines = [f"deadlock at {when}: {len(blocked)} task(s) blocked, nothing runnable"]
        for name, lock_name, holders in blocked:
            who = ", ".join(holders) if holders else "no holder"
            lines.append(f"  {name} waits for {lock_name} held by {who}")
        if cycle:
            lines.append("wait-for cycle: " + " -> ".join([*cycle, cycle[0]]))
        return Deadlock("\n".join(lines), blocked)

    @property
    def outcome(self) -> RunOutcome:
        return self._outcome

    def cpu_time(self) -> dict[str, int]:
        """Machine-wide CPU time split in ns: running, spinning, sleeping, idle (so far: mid-run,
        each CPU's current state counts up to now)."""
        total = dict.fromkeys(("running", "spinning", "sleeping", "idle"), 0)
        for cpu in self.cpus:
            split = cpu.time_ns
            for state in CpuState:
                total[state.name.lower()] += split[state]
            total[cpu.state.name.lower()] += self.now - cpu._since
        return total


def _find_cycle(waits: dict[str, list[str]]) -> list[str]:
    """First cycle in the wait-for graph (task -> holders of what it waits for), in task order."""
    for start in waits:
        path: list[str] = []
        seen: set[str] = set()
        node: str | None = start
        while node is not None and node not in seen:
            seen.add(node)
            path.append(node)
            nxt = waits.get(node) or []
            node = nxt[0] if nxt else None
        if node is not None and node in path:
            return path[path.index(node):]
    return []


@enable_ki_protection
async def _step_async(engine: Engine, until_ns: int | None, max_events: int | None) -> RunOutcome:
    """:meth:`Engine.run_async`'s stepper, with Ctrl-C deferred to its checkpoints."""
    gen = engine._loop(until_ns, max_events)
    try:
        for _ in gen:
            await trio.lowlevel.checkpoint()
    finally:
        gen.close()  # cancelled or interrupted: the loop's clean-up runs now (abandons the tasks)
    return engine.outcome

