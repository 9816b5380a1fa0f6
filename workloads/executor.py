"""One executor behind ``rmapsim sweep`` and ``rmapsim explore``: many independent runs, three backends.

==================  ==========================================================================
``--jobs 1``        in this process, one task after the other
``--jobs N``        N local worker processes (forked, one task each at a time)
``--cluster SPEC``  Dask distributed: ``local[:N]`` starts a ``LocalCluster`` of N single-threaded
                    worker processes on loopback (no dashboard); ``tcp://HOST:PORT`` uses a running
                    ``dask scheduler`` and whatever ``dask worker`` processes joined it
==================  ==========================================================================

A task is a module-level function and one picklable argument (scenario *sources* and overrides,
never live simulator objects): it travels by reference, so every backend runs the same code on the
same input and returns the same value.  Results come back to the caller's ``on_result`` in this
process, in completion order, as each task finishes; the caller writes them.

A task whose worker dies (killed, out of memory, a crash of the interpreter) comes back as lost
(:attr:`Outcome.lost`, "worker lost") and the other tasks go on: local workers are replaced, Dask's
nanny restarts its worker.  A ``LocalCluster`` is started with
``distributed.scheduler.allowed-failures = 0`` and never more tasks in flight than worker threads, so
the lost task is the one that was running; a remote scheduler retries by its own setting first.

Interrupts: :func:`interrupts` turns SIGINT and SIGTERM into :class:`Interrupted` (a
``KeyboardInterrupt``) in the main thread.  The executor then stops dispatching, cancels what is
running (local workers are terminated, Dask futures cancelled), and re-raises; results already
delivered stay delivered.  Local workers ignore SIGINT (Ctrl-C reaches the whole process group: the
parent decides) and die with their parent: ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` on Linux, then a
check that the parent did not die before that, and elsewhere a thread polling ``getppid()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import importlib
import importlib.metadata
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType, TracebackType
from typing import Generic, Protocol, TypeVar

__all__ = [
    "Backend",
    "BackendError",
    "Executor",
    "Interrupted",
    "Outcome",
    "code_version",
    "interrupts",
    "stop_requested",
]

WORKER_LOST = "worker lost"
_PR_SET_PDEATHSIG = 1


class BackendError(ValueError):
    """A backend that cannot be used as asked (bad ``--cluster``, no dask, no scheduler): bad input."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: stop dispatching, cancel what runs, keep what finished."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- which backend -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """``kind`` is ``inprocess``, ``processes`` or ``dask``; ``workers`` the local worker count
    (processes, or a LocalCluster's); ``address`` a running scheduler's (Dask, else None)."""

    kind: str = "inprocess"
    workers: int = 1
    address: str | None = None

    @classmethod
    def from_args(cls, jobs: int, cluster: str | None) -> Backend:
        """From ``--jobs`` and ``--cluster``; raises :class:`BackendError` with what is allowed."""
        if jobs < 1:
            raise BackendError(f"--jobs {jobs}: allowed: 1 or more")
        if cluster is None:
            return cls("processes", jobs) if jobs > 1 else cls()
        spec = cluster.strip()
        if spec == "local" or spec.startswith("local:"):
            _, sep, count = spec.partition(":")
            if sep:
                try:
                    n = int(count)
                except ValueError:
                    n = 0
                if n < 1:
                    raise BackendError(f"--cluster {cluster!r}: expected local:N with N >= 1 worker processes")
                if jobs not in (1, n):
                    raise BackendError(f"--cluster {cluster!r} and --jobs {jobs} disagree; give the workers once")
            else:
                n = jobs if jobs > 1 else (os.cpu_count() or 1)
            return cls("dask", n)
        if spec.startswith(("tcp://", "tls://")) and spec.rpartition(":")[2].isdigit() and "//" in spec:
            if jobs != 1:
                raise BackendError(f"--jobs {jobs} with --cluster {spec}: the scheduler's workers run the tasks; "
                                   "drop --jobs")
            return cls("dask", 0, spec)
        raise BackendError(f"--cluster {cluster!r}: allowed: local, local:N (a LocalCluster of N workers) or "
                           "tcp://HOST:PORT (a running dask scheduler)")

    def describe(self) -> str:
        if self.kind == "inprocess":
            return "in this process"
        if self.kind == "processes":
            return f"{self.workers} local worker processes"
        if self.address is None:
            return f"Dask LocalCluster of {self.workers} workers"
        return f"Dask scheduler {self.address}"


A = TypeVar("A")  # a task's argument
R = TypeVar("R")  # what a task returns
R_co = TypeVar("R_co", covariant=True)


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What came back for one task: its ``value``, or ``error`` (the task raised, or ``lost``: its
    worker died under it).  ``value`` is None exactly when ``error`` is set."""

    value: R | None = None
    error: str | None = None
    lost: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


# -- interrupts --------------------------------------------------------------------------------------

_stop = threading.Event()
# Inside a call into distributed's synchronous API (``Client.nthreads``, ``Future.result``...) a
# signal only marks the stop, and the caller raises right after the call: a KeyboardInterrupt
# raised inside distributed's ``sync()`` makes its clean-up callback fail in the event-loop thread
# (it can run before the call's future exists), which prints a NameError traceback after Ctrl-C.
_deferring = [0]


def stop_requested() -> bool:
    """True once SIGINT or SIGTERM arrived under :func:`interrupts`."""
    return _stop.is_set()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _stop.is_set():
        return  # already stopping: let the clean-up finish (a second Ctrl-C must not orphan workers)
    _stop.set()
    if not _deferring[0]:
        raise Interrupted(signum)


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """A signal inside only sets the stop (see ``_deferring``); it is raised on the way out."""
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1
    _check_stop()


@contextlib.contextmanager
def interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread while inside (nestable)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    outermost = old[signal.SIGINT] is not _on_signal
    if outermost:
        _stop.clear()
    for s in old:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if outermost:
            _stop.clear()


def _check_stop() -> None:
    if _stop.is_set():
        raise Interrupted(signal.SIGINT)


# -- the code version ---------------------------------------------------------------------------------

_MODEL_PACKAGES = ("records", "concurrency", "mm", "actors", "workloads")


@functools.cache
def code_version() -> str:
    """``<package version>+<sha256 prefix of the model's sources>``: what a point's result depends
    on besides its inputs (every ``.py`` and ``.toml`` file of the simulator's packages)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in _MODEL_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in (".py", ".toml") and path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    try:
        version = importlib.metadata.version("rmapsim")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        version = "0"
    return f"{version}+{digest.hexdigest()[:16]}"


# -- local worker processes ----------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies, then close the race with a parent that died
    before we asked; where prctl is not there, poll the parent instead."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True, name="rmapsim-parent-watch").start()


def _worker_main(conn: multiprocessing.connection.Connection, parent: int) -> None:
    # Forked with SIGINT and SIGTERM blocked: set the dispositions, then unblock.  Ctrl-C reaches the
    # whole process group and the parent decides; SIGTERM (from the parent, or PR_SET_PDEATHSIG) kills.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _die_with_parent(parent)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg is None:
            break
        fn, arg = msg
        try:
            reply: tuple[bool, object] = (True, fn(arg))
        except BaseException as exc:  # the task broke: the parent records it, this worker goes on
            reply = (False, _describe(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an unpicklable result
            conn.send((False, f"result could not be sent back: {_describe(exc)}"))
    conn.close()
    os._exit(0)  # no atexit handlers or finalisers inherited from the parent


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, AssertionError | AttributeError | TypeError | KeyError | IndexError | ValueError):
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            text += f" ({Path(last.filename).name}:{last.lineno})"
    return text


class _LocalWorker:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe()
        # Block the interrupts across the fork: the child sets its own dispositions before it
        # unblocks them, so a Ctrl-C right now cannot run the parent's handler in the child.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.proc = ctx.Process(target=_worker_main, args=(child_end, os.getpid()), daemon=True,
                                    name="rmapsim-worker")
            self.proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        child_end.close()
        self.conn = parent_end
        self.task: int | None = None

    def stop(self, *, hard: bool) -> None:
        if not hard and self.proc.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2.0)
        self.conn.close()


# -- the executor --------------------------------------------------------------------------------------


class Executor:
    """Runs tasks on one backend; a context manager that owns its workers or cluster connection.

    ``map(fn, args, on_result)`` calls ``on_result(i, outcome)`` for every ``args[i]`` as it finishes.
    ``stop`` (optional) is asked before each dispatch: once it says True no new task starts, and the
    running ones still finish and are delivered.  Any exception (an :class:`Interrupted` in
    particular) cancels what runs and propagates."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._local: list[_LocalWorker] = []
        self._client: _DaskClient | None = None
        self._cluster: _DaskCluster | None = None
        self._quiet_loggers: dict[str, int] = {}

    # lifetime

    def start(self) -> Executor:
        """Connect now (a Dask cluster or scheduler); raises :class:`BackendError`.  Local workers
        start with the first tasks."""
        if self.backend.kind == "dask" and self._client is None:
            self._start_dask()
        return self

    def __enter__(self) -> Executor:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(hard=exc_type is not None)

    def close(self, *, hard: bool = False) -> None:
        workers, self._local = self._local, []
        for w in workers:
            if hard and w.proc.is_alive():
                w.proc.terminate()  # all at once, then wait for each
        for w in workers:
            w.stop(hard=hard)
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        with contextlib.suppress(Exception):
            if client is not None:
                client.close(timeout=5)
        with contextlib.suppress(Exception):
            if cluster is not None:
                cluster.close(timeout=10)
        for name, level in self._quiet_loggers.items():
            logging.getLogger(name).setLevel(level)
        self._quiet_loggers = {}

    # running

    def map(self, fn: Callable[[A], R], args: Sequence[A], on_result: Callable[[int, Outcome[R]], None],
            *, stop: Callable[[], bool] | None = None) -> None:
        if not args:
            return
        with interrupts():
            if self.backend.kind == "inprocess":
                self._map_inprocess(fn, args, on_result, stop)
            elif self.backend.kind == "processes":
                self._map_local(fn, args, on_result, stop)
            else:
                self._map_dask(fn, args, on_result, stop)

    @staticmethod
    def _map_inprocess(fn: Callable[[A], R], args: Sequence[A], on_result: Callable[[int, Outcome[R]], None],
                       stop: Callable[[], bool] | None) -> None:
        for i, arg in enumerate(args):
            _check_stop()
            if stop is not None and stop():
                return
            try:
                outcome: Outcome[R] = Outcome(value=fn(arg))
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                outcome = Outcome(error=_describe(exc))
            # An interrupt that the task swallowed (or turned into a failure) is still an interrupt:
            # the half-run task is not a result.
            _check_stop()
            on_result(i, outcome)

    def _map_local(self, fn: Callable[[A], R], args: Sequence[A], on_result: Callable[[int, Outcome[R]], None],
                   stop: Callable[[], bool] | None) -> None:
        queue = deque(range(len(args)))
        want = min(self.backend.workers, len(args))
        try:
            while len(self._local) < want:
                self._local.append(_LocalWorker())
            while True:
                _check_stop()
                for w in self._local:
                    if w.task is None and queue and not (stop is not None and stop()):
                        w.task = queue.popleft()
                        with contextlib.suppress(OSError):  # died already: its sentinel says so below
                            w.conn.send((fn, args[w.task]))
                busy = [w for w in self._local if w.task is not None]
                if not busy:
                    return
                ready = multiprocessing.connection.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy])
                for w in busy:
                    index = w.task
                    assert index is not None
                    if w.conn in ready or w.proc.sentinel in ready:
                        outcome: Outcome[R] | None = self._collect(w)
                        if outcome is None:
                            continue
                        w.task = None
                        if outcome.lost:
                            self._local.remove(w)
                            w.stop(hard=True)
                            if queue:
                                self._local.append(_LocalWorker())
                        _check_stop()
                        on_result(index, outcome)
        except BaseException:
            self.close(hard=True)
            raise

    @staticmethod
    def _collect(w: _LocalWorker) -> Outcome[R] | None:
        """The finished task's outcome, a lost one when the worker died without answering, or None
        (nothing yet)."""
        try:
            if w.conn.poll():
                return _reply(w.conn.recv())
        except (EOFError, OSError):
            pass
        if w.proc.is_alive():
            return None
        w.proc.join(1.0)
        code = w.proc.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
        return Outcome(error=f"{WORKER_LOST} (pid {w.proc.pid}, {how})", lost=True)

    # Dask

    def _start_dask(self) -> None:
        dask, distributed = _dask()
        for name in ("distributed", "tornado", "asyncio"):
            self._quiet_loggers[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(logging.ERROR)
        if not any(isinstance(f, _LostTaskFilter) for f in logging.getLogger("distributed.scheduler").filters):
            logging.getLogger("distributed.scheduler").addFilter(_LostTaskFilter())  # we say it, once per point
        if self.backend.address is None:
            # Workers inherit an ignored SIGINT (Ctrl-C reaches the process group; the parent decides)
            # and run with this config: a task whose worker dies is lost at once, not retried.
            old = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
            try:
                environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
                # What a worker has to say comes back through its futures (results, errors, a lost
                # worker); its own log would only add noise when a run is cancelled or interrupted.
                environ["DASK_LOGGING__DISTRIBUTED"] = "critical"
                with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                                      "distributed.nanny.pre-spawn-environ": environ}):
                    # No dashboard, and the scheduler's HTTP server on a free port: its default, 8787,
                    # may belong to another Dask process on the machine (it would move, with a warning).
                    self._cluster = distributed.LocalCluster(n_workers=self.backend.workers, threads_per_worker=1,
                                                 processes=True, host="127.0.0.1", dashboard_address=None,
                                                 scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
                    self._client = distributed.Client(self._cluster)
            except Exception as exc:
                self.close(hard=True)
                raise BackendError(f"--cluster local:{self.backend.workers}: the LocalCluster did not start "
                                   f"({type(exc).__name__}: {exc})") from None
            finally:
                if old is not None:
                    signal.signal(signal.SIGINT, old)
        else:
            try:
                self._client = distributed.Client(self.backend.address, timeout=10)
            except Exception as exc:
                self.close(hard=True)
                raise BackendError(f"--cluster {self.backend.address}: no dask scheduler answers there "
                                   f"({type(exc).__name__}: {exc}); start one with `dask scheduler`") from None

    def _slots(self) -> int:
        """Worker threads alive now: never more tasks in flight, so none waits on a worker behind
        another (where a dying worker would take it down too)."""
        if self._client is None:
            return 1
        try:
            return max(1, int(sum(self._client.nthreads().values())))
        except Exception:
            return 1

    def _map_dask(self, fn: Callable[[A], R], args: Sequence[A], on_result: Callable[[int, Outcome[R]], None],
                  stop: Callable[[], bool] | None) -> None:
        if self._client is None:
            self._start_dask()
        client = self._client
        assert client is not None  # _start_dask raises when it cannot connect
        queue = deque(range(len(args)))
        futures: dict[_DaskFuture[R], int] = {}
        done: _AsCompleted[R] = _dask()[1].as_completed()

        def top_up() -> None:
            slots = self._slots()
            while queue and len(futures) < slots and not (stop is not None and stop()):
                i = queue.popleft()
                fut = client.submit(fn, args[i], pure=False)
                futures[fut] = i
                done.add(fut)

        try:
            _check_stop()
            with _deferred_interrupts():
                top_up()
            while futures:
                fut = next(done)  # a signal may raise here: as_completed waits on a plain condition
                i = futures.pop(fut)
                with _deferred_interrupts():
                    outcome: Outcome[R] = self._dask_outcome(fut)
                    fut.release()
                on_result(i, outcome)
                with _deferred_interrupts():
                    top_up()
        except BaseException:
            with contextlib.suppress(Exception):
                client.cancel(list(futures), force=True)
            self.close(hard=True)
            raise

    @staticmethod
    def _dask_outcome(fut: _DaskFuture[R]) -> Outcome[R]:
        if fut.status == "finished":
            return Outcome(value=fut.result())
        if fut.status == "cancelled":
            return Outcome(error=f"{WORKER_LOST} (the task was cancelled by the scheduler)", lost=True)
        exc = fut.exception()
        if isinstance(exc, _dask()[1].KilledWorker):
            worker = getattr(getattr(exc, "last_worker", None), "address", None) or "?"
            return Outcome(error=f"{WORKER_LOST} (Dask worker {worker} died running it)", lost=True)
        return Outcome(error=_describe(exc))


def _reply(message: object) -> Outcome[R]:
    """A worker's ``(ok, payload)`` answer: the task's return value (it ran ``fn``, whose type says
    what it returns), or the error text."""
    ok, payload = message if isinstance(message, tuple) and len(message) == 2 else (False, repr(message))
    if ok:
        return Outcome(value=payload)
    return Outcome(error=str(payload))


class _DaskFuture(Protocol[R_co]):
    """What is used of ``distributed.Future``."""

    @property
    def status(self) -> str: ...
    def result(self) -> R_co: ...
    def exception(self) -> BaseException: ...
    def release(self) -> None: ...


class _DaskClient(Protocol):
    """What is used of ``distributed.Client``."""

    def submit(self, fn: Callable[[A], R], arg: A, *, pure: bool) -> _DaskFuture[R]: ...
    def nthreads(self) -> dict[str, int]: ...
    def cancel(self, futures: list[_DaskFuture[object]], *, force: bool) -> None: ...
    def close(self, timeout: float) -> None: ...


class _DaskCluster(Protocol):
    """What is used of ``distributed.LocalCluster``."""

    def close(self, timeout: float) -> None: ...


class _AsCompleted(Protocol[R]):
    """What is used of ``distributed.as_completed``: futures added, then yielded as they finish."""

    def add(self, future: _DaskFuture[R]) -> None: ...
    def __next__(self) -> _DaskFuture[R]: ...


class _LostTaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "workers died while trying to run it" not in record.getMessage()


def _dask() -> tuple[ModuleType, ModuleType]:
    """``dask`` and ``distributed`` (the optional extra ``rmapsim[cluster]``): untyped modules, whose
    objects this module uses through the protocols below."""
    try:
        return importlib.import_module("dask"), importlib.import_module("distributed")
    except ImportError:
        raise BackendError("--cluster needs Dask distributed: pip install 'rmapsim[cluster]'") from None


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
