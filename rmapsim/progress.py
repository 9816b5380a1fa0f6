"""A progress line on stderr for anything longer than a few seconds; silent when not a terminal.

One line format, two ways to drive it:

* **a trio task** (:meth:`Progress.run`, or :meth:`Progress.run_beside` which starts it in a
  nursery beside the work): ``rmapsim run`` and ``compare`` simulate inside ``trio.run``, the
  simulation checkpointing into trio, and the progress task redraws between checkpoints;
* **a daemon thread** (``with Progress(...)``), for synchronous callers whose work blocks the
  thread (sweep, explore and validate wait on worker processes or run whole simulations in one
  call): a trio task would not get a turn until the blocking call returned.

What the line shows: with :meth:`follow`, virtual time done / total (a probe the simulation
answers) and an ETA; with ``total=`` items done / total (``advance()``) and an ETA; otherwise the
elapsed time and a spinner.  It is drawn only after ``delay`` seconds (a short run shows nothing),
redrawn every ``interval`` seconds, cleared at the end, and never written to stdout, so ``--json``
output stays clean.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, TextIO, TypeVar, TypeVarTuple

if TYPE_CHECKING:
    import trio

__all__ = ["Progress", "format_ns"]

T = TypeVar("T")
Args = TypeVarTuple("Args")
Probe = Callable[[], tuple[int, int | None]]  # (virtual ns done, virtual ns in all, if known)


def format_ns(ns: float) -> str:
    """Virtual time for people: ``850 ns``, ``12.5 us``, ``3.20 ms``, ``1.50 s``."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.1f} us"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    return f"{ns / 1_000_000_000:.2f} s"


def _seconds(s: float) -> str:
    return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s"


class Progress:
    """``Progress(label, total=None, enabled=True)``; ``advance(n)``; ``follow(probe)``; drive it
    with ``with`` (a thread), :meth:`run` or :meth:`run_beside` (a trio task)."""

    def __init__(self, label: str, *, total: int | None = None, enabled: bool = True,
                 stream: TextIO | None = None, delay: float = 2.0, interval: float = 0.5) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled and bool(isatty is not None and isatty())
        self.delay = delay
        self.interval = interval
        self.draws = 0
        self._probe: Probe | None = None
        self._clock: Callable[[], float] = time.monotonic
        self._start = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def advance(self, n: int = 1) -> None:
        self.done += n

    def follow(self, probe: Probe) -> None:
        """Show virtual time: ``probe()`` returns (ns done, ns in all or None)."""
        self._probe = probe

    # -- the line ------------------------------------------------------------------------------

    def line(self, elapsed: float) -> str:
        """The progress line after ``elapsed`` wall seconds (without the carriage return)."""
        if self._probe is not None:
            done, total = self._probe()
            shown = f"{format_ns(done)} / {format_ns(total)} virtual" if total else f"{format_ns(done)} virtual"
            return self._with_bar(done, total, shown, elapsed)
        if self.total:
            return self._with_bar(self.done, self.total, f"{self.done}/{self.total}", elapsed)
        spinner = "|/-\\"[int(elapsed * 4) % 4]
        return f"{self.label} {spinner} {_seconds(elapsed)}"

    def _with_bar(self, done: float, total: float | None, shown: str, elapsed: float) -> str:
        if not total:
            return f"{self.label} {shown}  {_seconds(elapsed)}"
        frac = min(1.0, max(0.0, done / total))
        width = 24
        filled = int(width * frac)
        bar = "#" * filled + "-" * (width - filled)
        eta = _seconds(elapsed * (1 - frac) / frac) if frac > 0 else "?"
        return f"{self.label} [{bar}] {shown}  {_seconds(elapsed)}  ETA {eta}"

    def _draw(self) -> None:
        elapsed = self._clock() - self._start
        if elapsed < self.delay:  # only for things longer than a moment
            return
        self.stream.write("\r\033[K" + self.line(elapsed))
        self.stream.flush()
        self.draws += 1

    def _clear(self) -> None:
        if self.draws:
            self.stream.write("\r\033[K")
            self.stream.flush()

    # -- as a trio task --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] | None = None) -> None:
        """The trio task: redraw every ``interval`` seconds (trio's clock) until cancelled, then
        clear the line.  Returns at once when disabled (not a terminal, or ``--quiet``)."""
        import trio

        self._clock = trio.current_time
        self._start = trio.current_time()
        if task_status is not None:
            task_status.started()
        if not self.enabled:
            return
        try:
            while True:
                await trio.sleep(self.interval)
                self._draw()
        finally:
            self._clear()

    async def run_beside(self, fn: Callable[[*Args], Awaitable[T]], *args: *Args) -> T:
        """``await fn(*args)`` with this progress task beside it in one nursery; returns its result.
        What ``fn`` raises comes out as itself, not wrapped in an exception group."""
        import trio

        box: list[T] = []
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.run)
                try:
                    box.append(await fn(*args))
                finally:
                    nursery.cancel_scope.cancel()  # the work is over: stop redrawing
        except BaseExceptionGroup as group:
            error = _single(group)
        if error is not None:
            raise error  # outside the handler: its own cause and context stay as they were
        return box[0]

    # -- as a thread (synchronous callers) -------------------------------------------------------

    def _thread_main(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    def __enter__(self) -> Progress:
        self._clock = time.monotonic
        self._start = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._thread_main, daemon=True, name="rmapsim-progress")
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._clear()


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a nursery wrapped (Ctrl-C first if several: the user's word wins)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    return leaves[0] if len(leaves) == 1 else group
