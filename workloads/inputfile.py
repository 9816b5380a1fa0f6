"""What the loaders of TOML inputs (scenarios, lock-order files) share, below both.

:class:`ScenarioError` is their bad-input error (``file:line: key: message``, exit status 2),
:class:`_Locator` finds a key path's line in a TOML text and :class:`_Checker` checks a table
against its :class:`~workloads.actor_kinds.Param` rows (unknown keys with the allowed ones, types,
ranges, choices, missing keys).  workloads/scenario.py and workloads/lockorder.py both import it;
neither imports the other's internals.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from concurrency.input_error import InputError, spell
from workloads.actor_kinds import Param, Params, ParamValue

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


_TYPE_NAMES = {int: "an integer", bool: "true or false", str: "a string", list: "a list", float: "a number"}


class _Checker:
    """Checks a parsed TOML document's tables against their Param rows; every error is a
    :class:`ScenarioError` naming the file, the line (found in ``text``), the key path and what is
    allowed."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.locator = _Locator(text)

    @staticmethod
    def key(path: list[str | int]) -> str:
        """``["chain", 2, "levels"]`` -> ``chain[2].levels``."""
        return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")

    def fail(self, path: list[str | int], message: str) -> ScenarioError:
        return ScenarioError(self.file, self.locator.line_of(path), self.key(path), message)

    def unknown(self, path: list[str | int], key: str, allowed: list[str]) -> ScenarioError:
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return self.fail([*path, key], f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}")

    def table(self, value: object, path: list[str | int], schema: dict[str, Param]) -> Params:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a table, got {spell(value)}")
        out: Params = {}
        for key in value:
            if key not in schema:
                raise self.unknown(path, key, list(schema))
        for key, param in schema.items():
            if key in value:
                out[key] = self.value(value[key], [*path, key], param)
            elif param.default is None:
                raise self.fail([*path, key], f"missing; {param.help}")
            else:
                out[key] = param.default
        return out

    def value(self, value: object, path: list[str | int], param: Param) -> ParamValue:
        checked = _typed(value, param.type)
        if checked is None:
            allowed = f"; allowed: {param.min}..{param.max}" if param.type is int and param.min is not None else ""
            if param.choices is not None:
                allowed = f"; allowed: {', '.join(map(spell, param.choices))}"
            raise self.fail(path, f"{spell(value)} is not {_TYPE_NAMES.get(param.type, param.type.__name__)}"
                                  f" ({param.help}){allowed}")
        if param.choices is not None and checked not in param.choices:
            raise self.fail(path, f"{spell(value)} not allowed; allowed: {', '.join(map(spell, param.choices))}")
        if isinstance(checked, int) and not isinstance(checked, bool) and param.type is int:
            out_of_range = (param.min is not None and checked < param.min) or (param.max is not None
                                                                                and checked > param.max)
            if out_of_range:
                raise self.fail(path, f"{spell(value)} out of range; allowed: {param.min}..{param.max}")
        return checked


def _typed(value: object, kind: type) -> ParamValue:
    """``value`` when it is of a Param's type (a boolean is not an integer), else None."""
    if kind is bool:
        return value if isinstance(value, bool) else None
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind is str:
        return value if isinstance(value, str) else None
    if kind is list:
        return value if isinstance(value, list) else None
    raise TypeError(f"a Param of type {kind.__name__}: not a scenario parameter type")
