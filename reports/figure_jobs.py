"""Drawing a run's pictures in forked processes while this one writes the text reports.

Drawing the pictures as PNG and SVG is most of a run's report time (issue 14: of the default
comparison's 1.6 s of reports, about 1.3 s; the latency figure alone about half of it), and each
picture is independent of the others, so :class:`FigureJobs` forks one process per picture for
the first pictures (as many as there are other CPUs to run them) and this process draws the rest
beside its own work.  A forked process starts with matplotlib imported and the figures built, and
sends back the bytes; this process writes every file itself, so each is still written atomically
under a temporary name, in the same order as before.

The bytes are the ones a single process draws: each picture is drawn whole by one process, PNG
first and then SVG, as :func:`reports.plots.figure_bytes` is called in one process.  The order
matters: constrained layout starts the SVG's layout from the one the PNG's drawing left, so an
SVG drawn on a fresh figure is not the same file.  A forked process that fails or dies (it prints
nothing) only costs time: this process draws its picture again.

Ctrl-C: reports are written with Ctrl-C deferred (rmapsim/outputs.py), and a forked drawer
ignores SIGINT (blocked across the fork, as workloads/executor.py's workers do), so a terminal's
Ctrl-C, sent to the whole process group, interrupts neither; the command stops once the reports
are whole.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    Maker = Callable[[], Figure]

__all__ = ["FigureJobs", "drawer_count"]

FORMATS = ("png", "svg")


def drawer_count() -> int:
    """Processes to fork for pictures: the CPUs this process may run on, less its own."""
    if not hasattr(os, "fork"):
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(0, cpus - 1)


def _draw(make: Maker) -> tuple[bytes, ...]:
    """Build the figure and draw it in every format, in :data:`FORMATS` order."""
    from reports.plots import figure_bytes

    fig = make()
    return tuple(figure_bytes(fig, fmt) for fmt in FORMATS)


class _Drawer:
    """One forked process drawing one picture; its bytes come back through a pipe."""

    def __init__(self, make: Maker) -> None:
        read_end, write_end = os.pipe()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child (coverage does not follow a fork)
                _child(make, read_end, write_end)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(write_end)
        self.pid = pid
        self.read_end = read_end
        self.status = 0

    def result(self) -> tuple[bytes, ...] | None:
        """The picture's bytes, or None when the process failed (it is reaped either way)."""
        chunks = []
        try:
            while chunk := os.read(self.read_end, 1 << 20):
                chunks.append(chunk)
        finally:
            self._reap()
        if not os.WIFEXITED(self.status) or os.WEXITSTATUS(self.status) != 0:
            return None
        try:
            out = pickle.loads(b"".join(chunks))
        except (pickle.UnpicklingError, EOFError, ValueError):
            return None
        if not (isinstance(out, tuple) and len(out) == len(FORMATS) and all(isinstance(b, bytes) for b in out)):
            return None
        return out

    def abandon(self) -> None:
        """Stop and reap the process (this one failed before it asked for the result)."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.read_end >= 0:
            os.close(self.read_end)
            self.read_end = -1
        if self.pid:
            _, self.status = os.waitpid(self.pid, 0)
            self.pid = 0


def _child(make: Maker, read_end: int, write_end: int) -> None:  # pragma: no cover - runs in the child
    """Draw, send, and leave at once: no atexit handlers, no flushing of the parent's buffers, no
    trio (whose run this process's copy of the stack is inside of)."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        os.close(read_end)
        data = pickle.dumps(_draw(make), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        while view:
            view = view[os.write(write_end, view):]
        code = 0
    except BaseException:  # whatever happened, the parent draws the picture itself
        code = 1
    finally:
        os._exit(code)


class FigureJobs:
    """The pictures of one rendering, drawn by forked processes and this one.

    Given the pictures' makers (file stem -> a function building the figure, in file order), it
    forks at once; :meth:`results` draws this process's share, collects the others' and returns
    every picture's bytes (PNG, SVG) in the same order.  ``drawers``: how many processes to fork
    (default :func:`drawer_count`; 0 draws everything here).  Use it as a context manager, so that
    a failure in between reaps the processes."""

    def __init__(self, makers: Mapping[str, Maker], drawers: int | None = None) -> None:
        self.makers = dict(makers)
        n = drawer_count() if drawers is None else drawers
        # One picture per forked process, the first ones (the latency figure, the dearest, is first);
        # this process keeps at least one, so it has drawing of its own to do while it waits.
        names = list(self.makers)[:max(0, min(n, len(self.makers) - 1))]
        self._drawers: dict[str, _Drawer] = {}
        try:
            for name in names:
                self._drawers[name] = _Drawer(self.makers[name])
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> FigureJobs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop and reap the processes not yet collected."""
        while self._drawers:
            self._drawers.popitem()[1].abandon()

    def results(self) -> dict[str, tuple[bytes, ...]]:
        """Every picture's (PNG, SVG) bytes, in file order."""
        drawn = {name: _draw(make) for name, make in self.makers.items() if name not in self._drawers}
        for name in list(self._drawers):
            got = self._drawers[name].result()
            del self._drawers[name]  # reaped
            if got is not None:
                drawn[name] = got
        # A process that failed leaves its picture undrawn: draw it here.
        return {name: drawn[name] if name in drawn else _draw(make) for name, make in self.makers.items()}
