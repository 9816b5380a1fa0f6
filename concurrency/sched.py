"""Task priorities: nice levels, CFS weights, tick preemption and wake-up preemption.

After kernel/sched/core.c (``sched_prio_to_weight``, ``set_user_nice``, ``scheduler_tick``) and
kernel/sched/fair.c as of v6.5, the last CFS (``update_curr``, ``calc_delta_fair``,
``sched_slice``, ``check_preempt_tick``, ``place_entity``, ``pick_next_entity``,
``check_preempt_wakeup``, ``migrate_task_rq_fair``).  Since v6.6 fair.c is EEVDF: the same weights
and ``vruntime``, but a task is picked by eligibility (lag) and virtual deadline rather than least
``vruntime``; for the case modelled here, a nice-19 task beside busy nice-0 tasks, both leave it
waiting for as long as the others need to run ``delta_exec * 1024 / 15`` ns (ASSUME: CFS's rules
stand for EEVDF's).

Off until a scenario gives an actor a ``nice`` (:func:`enable`): every task then has a
:class:`SchedEntity` and the engine asks this module whom to run.  Without it the engine keeps its
FIFO round robin with a fixed timeslice, so results of scenarios that set no priority do not
change.

What the model does, per CPU (a ``cfs_rq``):

* ``vruntime`` grows by ``delta_exec * NICE_0_LOAD / weight`` (``calc_delta_fair``), counted when a
  task leaves its CPU (sleeps, is preempted, exits) and read for the running one; spinning on a
  lock is running.
* The next task is the runnable one of least ``vruntime`` (``pick_next_entity``; first queued
  among equals).
* ``check_preempt_tick`` runs at the scheduler tick (every ``1/HZ`` s of absolute time, HZ=250):
  the running task is preempted at the first tick at which it has run longer than its
  ``sched_slice`` (``period * weight / cfs_rq weight``, ``period = max(sysctl_sched_latency,
  nr_running * sysctl_sched_min_granularity)``, at least ``sysctl_sched_min_granularity``:
  BASE_SLICE; capped at ``sysctl_sched_latency``), at the end of the operation step running then
  (the engine's preemption granularity).  So a nice-19 task beside one nice-0 task runs to the
  first tick after the minimum granularity (2.25 ms on 4 CPUs; up to 6.25 ms), which adds ~68x
  that to its ``vruntime``: the nice-0 task then runs that long before it is picked again.
* A woken task is placed at ``max(vruntime, min_vruntime - sysctl_sched_latency / 2)``
  (``place_entity``, GENTLE_FAIR_SLEEPERS); a new one at ``min_vruntime + its vslice``
  (START_DEBIT).  It preempts the running task when ``curr.vruntime - woken.vruntime >
  wakeup_gran`` (``check_preempt_wakeup`` / ``wakeup_preempt_entity``: sysctl_sched_wakeup_granularity
  scaled by the woken task's weight); the running task leaves at the end of its operation step.
* A task that moves to another CPU keeps its ``vruntime`` relative to the CPUs' ``min_vruntime``
  (``migrate_task_rq_fair``).

Tunables (kernel/sched/fair.c) scale by ``1 + ilog2(min(ncpus, 8))`` (SCHED_TUNABLESCALING_LOG):
latency 6 ms, min granularity 0.75 ms, wakeup granularity 1 ms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from concurrency.engine import Cpu, Engine, SimTask

__all__ = ["NICE_0_LOAD", "SCHED_PRIO_TO_WEIGHT", "CfsSched", "SchedEntity", "enable", "nice_of", "set_user_nice"]

NICE_0_LOAD: Final = 1024
# kernel/sched/core.c sched_prio_to_weight[40], nice -20 .. 19
SCHED_PRIO_TO_WEIGHT: Final = (
    88761, 71755, 56483, 46273, 36291,
    29154, 23254, 18705, 14949, 11916,
    9548, 7620, 6100, 4904, 3906,
    3121, 2501, 1991, 1586, 1277,
    1024, 820, 655, 526, 423,
    335, 272, 215, 172, 137,
    110, 87, 70, 56, 45,
    36, 29, 23, 18, 15,
)
SCHED_LATENCY_NS: Final = 6_000_000  # sysctl_sched_latency (unscaled)
SCHED_MIN_GRANULARITY_NS: Final = 750_000  # sysctl_sched_min_granularity (unscaled)
SCHED_WAKEUP_GRANULARITY_NS: Final = 1_000_000  # sysctl_sched_wakeup_granularity (unscaled)
NSEC_PER_SEC: Final = 1_000_000_000


class SchedEntity:
    """``struct sched_entity`` of one task: its nice, weight and ``vruntime``."""

    __slots__ = ("nice", "resched", "slice_ns", "vruntime", "weight")

    def __init__(self, nice: int, vruntime: int) -> None:
        self.nice = nice
        self.weight = SCHED_PRIO_TO_WEIGHT[nice + 20]
        self.vruntime = vruntime
        self.slice_ns = 0  # from dispatch to the next scheduler tick, where check_preempt_tick runs
        self.resched = False  # TIF_NEED_RESCHED from a wake-up preemption


class CfsSched:
    """The fair class for every CPU of one engine (see the module docstring)."""

    def __init__(self, engine: Engine, hz: int = 250) -> None:
        self.engine = engine
        self.hz = hz
        self.tick_ns = NSEC_PER_SEC // hz
        factor = 1 + (min(len(engine.cpus), 8).bit_length() - 1)  # 1 + ilog2(min(ncpus, 8))
        self.latency_ns = SCHED_LATENCY_NS * factor
        self.min_granularity_ns = SCHED_MIN_GRANULARITY_NS * factor
        self.wakeup_granularity_ns = SCHED_WAKEUP_GRANULARITY_NS * factor
        self.min_vruntime = [0] * len(engine.cpus)  # cfs_rq->min_vruntime, per CPU
        for task in engine.tasks:
            if task.se is None:
                task.se = SchedEntity(0, 0)
        self.wakeup_preemptions = 0

    # -- accounting ----------------------------------------------------------------------------

    def curr_vruntime(self, task: SimTask) -> int:
        """``vruntime`` of a task, the running one's including its time on the CPU so far."""
        se = task.se
        assert se is not None
        if task.cpu.curr is task:
            return se.vruntime + (self.engine.now - task.slice_start) * NICE_0_LOAD // se.weight
        return se.vruntime

    def put_prev(self, task: SimTask) -> None:
        """``update_curr`` as the task leaves its CPU (called before ``cpu.curr`` changes)."""
        se = task.se
        assert se is not None
        se.vruntime += (self.engine.now - task.slice_start) * NICE_0_LOAD // se.weight
        self._update_min_vruntime(task.cpu, se.vruntime)

    def _update_min_vruntime(self, cpu: Cpu, candidate: int | None = None) -> None:
        """``update_min_vruntime``: monotonic, the least of the running and queued tasks'."""
        vals = [t.se.vruntime for t in cpu.runq if t.se is not None]
        if candidate is not None:
            vals.append(candidate)
        curr = cpu.curr
        if curr is not None and curr.se is not None:
            vals.append(self.curr_vruntime(curr))
        if vals:
            i = cpu.index
            self.min_vruntime[i] = max(self.min_vruntime[i], min(vals))

    # -- enqueue, pick, preempt ----------------------------------------------------------------

    def enqueue(self, task: SimTask, cpu: Cpu) -> None:
        """``enqueue_task_fair`` of a woken (or new) task on ``cpu``: ``update_curr`` (which moves
        ``min_vruntime`` on), then ``place_entity``."""
        se = task.se
        self._update_min_vruntime(cpu)
        curr = cpu.curr
        if curr is not None and curr.se is not None:
            # Ticks that passed while the running task was alone checked nothing
            # (check_preempt_tick runs only with nr_running > 1): the next one will.
            now = self.engine.now
            if curr.slice_start + curr.se.slice_ns <= now:
                curr.se.slice_ns = (now // self.tick_ns + 1) * self.tick_ns - curr.slice_start
        base = self.min_vruntime[cpu.index]
        if se is None:  # a new task (sched_fork): START_DEBIT, one vslice behind
            se = task.se = SchedEntity(0, 0)
            se.vruntime = base + self._vslice(se, cpu)
            return
        se.vruntime = max(se.vruntime, base - self.latency_ns // 2)

    def check_preempt_wakeup(self, curr: SimTask, woken: SimTask) -> None:
        """``check_preempt_wakeup``: the woken task preempts the running one when its
        ``vruntime`` is ahead by more than the wake-up granularity (scaled to its weight); the
        running task leaves at the end of its current operation step (``resched_curr``)."""
        se = woken.se
        cse = curr.se
        assert se is not None and cse is not None
        gran = self.wakeup_granularity_ns * NICE_0_LOAD // se.weight  # wakeup_gran: calc_delta_fair
        if self.curr_vruntime(curr) - se.vruntime > gran:
            cse.resched = True
            cse.slice_ns = 0  # the engine asks tick() at the end of the current operation step
            self.wakeup_preemptions += 1

    def pick_next(self, cpu: Cpu) -> SimTask:
        """``pick_next_entity``: the queued task of least ``vruntime`` (first queued among equals)."""
        runq = cpu.runq
        best = runq[0]
        best_v = best.se.vruntime if best.se is not None else 0
        for t in runq:
            v = t.se.vruntime if t.se is not None else 0
            if v < best_v:
                best, best_v = t, v
        runq.remove(best)
        return best

    def set_slice(self, task: SimTask, cpu: Cpu) -> None:
        """At dispatch: the engine asks :meth:`tick` once the task runs past the next scheduler
        tick (``check_preempt_tick`` runs only at ticks; no HRTICK)."""
        se = task.se
        assert se is not None
        now = self.engine.now
        se.resched = False
        se.slice_ns = (now // self.tick_ns + 1) * self.tick_ns - now

    def tick(self, task: SimTask, t: int) -> bool:
        """The running task's operation step ends at ``t``, past a tick (or a wake-up asked it
        to reschedule): True to give the CPU up then.  ``check_preempt_tick`` at the last tick
        before ``t``: preempt once it ran longer than its ``sched_slice``, or at least the minimum
        granularity while its ``vruntime`` is ahead of the leftmost queued task's by more than
        that slice.  Otherwise it runs on to the next tick."""
        se = task.se
        assert se is not None
        if se.resched:
            se.resched = False
            return True
        tick = self.tick_ns
        at = t // tick * tick
        cpu = task.cpu
        delta_exec = at - task.slice_start
        # ideal_runtime = min_t(u64, sched_slice(cfs_rq, curr), sysctl_sched_latency)
        ideal = min(self._slice(se, cpu), self.latency_ns)
        if delta_exec > ideal:
            return True
        if delta_exec >= self.min_granularity_ns and cpu.runq:
            vcurr = se.vruntime + delta_exec * NICE_0_LOAD // se.weight
            leftmost = min(q.se.vruntime for q in cpu.runq if q.se is not None)
            if vcurr - leftmost > ideal:
                return True
        se.slice_ns = at + tick - task.slice_start
        return False

    def migrate(self, task: SimTask, old: Cpu, new: Cpu) -> None:
        """``migrate_task_rq_fair``: keep ``vruntime`` relative to the CPUs' ``min_vruntime``."""
        se = task.se
        if se is not None:
            se.vruntime += self.min_vruntime[new.index] - self.min_vruntime[old.index]

    # -- slices ----------------------------------------------------------------------------------

    def _load(self, cpu: Cpu, se: SchedEntity) -> tuple[int, int]:
        """Weight and number of the CPU's runnable tasks, with ``se`` counted once."""
        tasks = list(cpu.runq)
        if cpu.curr is not None:
            tasks.append(cpu.curr)
        weight = sum(t.se.weight for t in tasks if t.se is not None and t.se is not se)
        nr = sum(1 for t in tasks if t.se is not se)
        return weight + se.weight, nr + 1

    def _slice(self, se: SchedEntity, cpu: Cpu) -> int:
        """``sched_slice``: this task's share of the period, and at least the minimum granularity
        (BASE_SLICE, on by default since v5.13, 0c2de3f054a5 "sched,fair: Alternative
        sched_slice()"): a light task's share (15/1039 of the period at nice 19 beside a nice-0
        task) is raised to ``sysctl_sched_min_granularity``."""
        total, nr = self._load(cpu, se)
        period = max(self.latency_ns, nr * self.min_granularity_ns)  # __sched_period
        return max(period * se.weight // total, self.min_granularity_ns)

    def _vslice(self, se: SchedEntity, cpu: Cpu) -> int:
        """``sched_vslice``: the slice in virtual time."""
        return self._slice(se, cpu) * NICE_0_LOAD // se.weight


def enable(engine: Engine, hz: int = 250) -> CfsSched:
    """Turn the fair class on for ``engine`` (idempotent); returns it."""
    if engine.sched is None:
        engine.sched = CfsSched(engine, hz)
    assert isinstance(engine.sched, CfsSched)
    return engine.sched


def set_user_nice(engine: Engine, task: SimTask, nice: int) -> None:
    """``set_user_nice``: a new weight; ``vruntime`` is kept (reweight_entity of a queued task keeps
    its place closely enough here: priorities are set when tasks start)."""
    if not -20 <= nice <= 19:
        raise ValueError(f"nice must be in -20..19, got {nice}")
    sched = enable(engine)
    se = task.se
    if se is None:
        se = task.se = SchedEntity(nice, sched.min_vruntime[task.cpu.index])
    se.nice = nice
    se.weight = SCHED_PRIO_TO_WEIGHT[nice + 20]


def nice_of(task: SimTask) -> int:
    return task.se.nice if task.se is not None else 0
