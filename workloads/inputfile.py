"""What the loaders of TOML inputs (scenarios, lock-order files) share, below both.

:class:`ScenarioError` is their bad-input error (``file:line: key: message``, exit status 2) and
:class:`_Locator` finds a key path's line in a TOML text.  workloads/scenario.py and
workloads/lockorder.py both import it; neither imports the other's internals.
"""

from __future__ import annotations

import re
from pathlib import Path

from concurrency.input_error import InputError

__all__ = ["ScenarioError", "read_text_file"]


class ScenarioError(InputError):
    """Bad input: ``file:line: key: message``."""


class _Locator:
    """Finds the source line of a key path in a TOML text (tomllib keeps no positions)."""

    _header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
    _key = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line_of(self, path: list[str | int]) -> int | None:
        table: list[str | int] = []
        counts: dict[str, int] = {}
        best: int | None = None
        for number, line in enumerate(self.lines, 1):
            m = self._header.match(line)
            if m:
                name = m.group(2).strip()
                parts: list[str | int] = [p.strip().strip('"') for p in name.split(".")]
                if m.group(1) == "[[":
                    counts[name] = counts.get(name, -1) + 1
                    parts.append(counts[name])
                table = parts
                if table == path[: len(table)] and len(table) == len(path):
                    return number
                continue
            m = self._key.match(line)
            if not m:
                continue
            key = m.group(1).strip("\"'")
            full = [*table, key]
            if full == path[: len(full)]:
                if len(full) == len(path):
                    return number
                best = number  # an inline table/array holding the path
            elif table and table == path[: len(table)] and best is None and len(path) > len(table):
                best = None
        return best


def read_text_file(path: Path, file: str, allowed: str = "a .toml or .py scenario file") -> str:
    """A scenario's (or order file's) text; a directory, a special file, a binary or non-UTF-8 file
    is refused, naming the line of the first bad byte."""
    if not path.exists():
        raise ScenarioError(file, None, "", f"no such file; allowed: {allowed}")
    if path.is_dir():
        raise ScenarioError(file, None, "", f"is a directory; allowed: {allowed}")
    if not path.is_file():
        raise ScenarioError(file, None, "", f"is not a regular file; allowed: {allowed}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(file, None, "", f"cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(file, line, "", f"not a text file: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                                            f"is not UTF-8; allowed: {allowed} in UTF-8") from None
    if "\0" in text:
        at = text.index("\0")
        raise ScenarioError(file, text.count("\n", 0, at) + 1, "", f"not a text file: a NUL byte at offset {at}; "
                                                                 f"allowed: {allowed} in UTF-8")
    return text

