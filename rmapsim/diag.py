"""The command line's own diagnostics through structlog: errors, findings, warnings, interrupts.

Every diagnostic is a structlog event with a name (below), a level and ``message``, the text a
person reads.  One logger writes them to stderr through structlog's processors, ending in:

* ``--json``: ``JSONRenderer(sort_keys=True)``, one object per line (``event``, ``level``,
  ``message`` and the event's own fields);
* a terminal: a human renderer, the message coloured by level;
* otherwise (a pipe, a file, a test): the message alone, exactly the text the command line always
  printed (``rmapsim: error: ...``), so scripts that read it keep working.

Event names: ``bad_input`` (exit 2), ``run_failed`` (a simulation crashed or deadlocked),
``invariant_violated``, ``lockdep_finding`` and ``walks_missed`` (findings, exit 1),
``interrupted`` (Ctrl-C, exit 130) and ``python_warning`` (a Python warning raised while running).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["configure", "diagnostics", "error", "info", "warning"]

_COLOURS = {"error": "\033[1;31m", "warning": "\033[33m", "info": ""}
_RESET = "\033[0m"


class _Human:
    """The message alone; on a terminal coloured by level."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, _logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        text = str(event_dict.get("message", event_dict.get("event", "")))
        start = _COLOURS.get(method, "") if self.colour else ""
        return f"{start}{text}{_RESET}" if start else text


class _State:
    stream: TextIO | None = None  # None: whatever sys.stderr is when a diagnostic is written
    json = False


def _log() -> structlog.BoundLogger:
    """A logger per diagnostic (they are rare): it writes to the current ``sys.stderr``."""
    stream = sys.stderr if _State.stream is None else _State.stream
    renderer: Processor
    if _State.json:
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    else:
        isatty = getattr(stream, "isatty", None)
        renderer = _Human(colour=bool(isatty is not None and isatty()))
    logger: structlog.BoundLogger = structlog.wrap_logger(  # wrap_logger is typed Any: wrapper_class says what
        structlog.PrintLogger(stream),
        processors=[structlog.processors.add_log_level, renderer],
        wrapper_class=structlog.BoundLogger,
    )
    return logger


def configure(*, json: bool = False, stream: TextIO | None = None) -> None:
    """Where and how diagnostics go (``main()`` calls it once the arguments are known)."""
    _State.stream = stream
    _State.json = json


def error(event: str, message: str, **fields: str | int) -> None:
    _log().error(event, message=message, **fields)


def warning(event: str, message: str, **fields: str | int) -> None:
    _log().warning(event, message=message, **fields)


def info(event: str, message: str, **fields: str | int) -> None:
    _log().info(event, message=message, **fields)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    warning("python_warning", f"rmapsim: warning: {category.__name__}: {message} ({filename}:{lineno})",
            category=category.__name__, file=filename, line=lineno)


@contextmanager
def diagnostics(*, json: bool = False) -> Iterator[None]:
    """Configure diagnostics and route Python warnings through them while inside."""
    configure(json=json)
    saved = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        yield
    finally:
        warnings.showwarning = saved
