"""A progress line on stderr for anything longer than a few seconds; silent when not a terminal.

Simulation runs are synchronous, so a daemon thread redraws the line (elapsed wall time and, for
sweeps, points done) twice a second.  It never writes to stdout, so ``--json`` output stays clean.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

__all__ = ["Progress"]


class Progress:
    def __init__(self, label: str, *, total: int | None = None, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.enabled = enabled and sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n

    def _line(self) -> str:
        elapsed = time.monotonic() - self._start
        if self.total:
            width = 24
            filled = int(width * self.done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            return f"\r{self.label} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s"
        spinner = "|/-\\"[int(elapsed * 4) % 4]
        return f"\r{self.label} {spinner} {elapsed:5.1f}s"

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            if time.monotonic() - self._start >= 2.0:  # only for things longer than a moment
                sys.stderr.write(self._line())
                sys.stderr.flush()

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
