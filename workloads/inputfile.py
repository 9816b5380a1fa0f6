"""What the loaders of TOML inputs (scenarios, lock-order files) share, below both.

:class:`ScenarioError` is their bad-input error (``file:line: key: message``, exit status 2) and
:class:`_Locator` finds a key path's line in a TOML text.  workloads/scenario.py and
workloads/lockorder.py both import it; neither imports the other's internals.
"""

from __future__ import annotations

import re

from concurrency.input_error import InputError

__all__ = ["ScenarioError"]


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
