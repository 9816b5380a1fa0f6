"""Where a command will write, checked before it simulates anything.

A run's results are worth minutes: an ``--out`` that is a file, a path under a file, or a place
that cannot be written is bad input found at once (exit status 2), not after the runs.  The check
creates nothing it leaves behind: it probes the nearest existing folder on the way with a
temporary folder, removed at once (as root, permission bits say nothing; a read-only file system
or ``/proc`` still refuses the probe).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import trio

from concurrency.input_error import InputError

__all__ = ["OutputError", "check_out_dir", "check_out_file", "uninterrupted"]

T = TypeVar("T")
P = ParamSpec("P")


class OutputError(InputError):
    """``--out DIR: message``: exit status 2."""

    def __init__(self, flag: str, path: Path, message: str) -> None:
        super().__init__(f"{flag} {path}", None, "", message)


def _existing_ancestor(path: Path, flag: str, original: Path) -> Path:
    """The nearest existing ancestor of ``path``: it must be a folder."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(flag, original, f"{parent} is not a folder; allowed: a path under a folder")
            return parent
    return Path(".")  # a relative path with no existing parent: the current folder


def _probe(folder: Path, flag: str, original: Path) -> None:
    try:
        probe = tempfile.mkdtemp(prefix=".rmapsim-probe-", dir=folder)
    except OSError as exc:
        raise OutputError(flag, original, f"cannot write in {folder} ({exc.strerror}); allowed: a folder "
                                          "you can write in") from None
    os.rmdir(probe)


def check_out_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` can be (or already is) a folder this command writes into."""
    original = path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise OutputError(flag, original, "exists and is not a folder; allowed: a folder, or a path to create "
                                              "one at")
        _probe(path, flag, original)
        return original
    _probe(_existing_ancestor(path, flag, original), flag, original)
    return original


def check_out_file(path: str | Path, flag: str) -> Path:
    """``path`` can be written as a file (replacing one there)."""
    original = path = Path(path)
    if path.is_dir():
        raise OutputError(flag, original, "is a folder; allowed: a file name")
    if path.exists() and not path.is_file():
        raise OutputError(flag, original, "is not a regular file; allowed: a file name")
    parent = path.parent
    if parent.exists():
        if not parent.is_dir():
            raise OutputError(flag, original, f"{parent} is not a folder; allowed: a path under a folder")
        _probe(parent, flag, original)
    else:
        _probe(_existing_ancestor(parent, flag, original), flag, original)
    return original


def uninterrupted(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` with Ctrl-C deferred until it returns (trio's KeyboardInterrupt
    protection, inside the command line's ``trio.run``): a set of results or reports being written
    is finished whole, then the interrupt is delivered (exit status 130)."""
    return _protected(fn, *args, **kwargs)


@trio.lowlevel.enable_ki_protection
def _protected(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return fn(*args, **kwargs)
