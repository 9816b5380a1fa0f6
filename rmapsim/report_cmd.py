"""``rmapsim report DIR``: re-render a folder's reports from its result.json or sweep.json.

The file is the user's input: an empty, binary, truncated or foreign one is bad input (exit status
2) naming the file, the line where JSON parsing stopped, and what is allowed, and nothing in the
folder changes.  A run folder's reports are rendered into a temporary folder beside them and moved
in only once all of them rendered, with Ctrl-C deferred while they move (rmapsim/outputs.py), so
the folder holds the old set or the new one, never a mixture.  A sweep folder's report reads the
points' result files in place, so its inputs are all read and checked before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["render_folder"]

_ALLOWED = "allowed: the result.json or sweep.json an rmapsim command wrote"
# What a well-formed JSON document with the wrong shape raises from deep inside a renderer.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError, OverflowError)


def read_json(path: Path, bad: Callable[[str], Exception]) -> object:
    """The JSON document in ``path``, or ``bad(message)`` saying why it is not one (its shape is
    the caller's to check)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise bad(f"{path}: cannot be read ({exc.strerror})") from None
    if not raw.strip():
        raise bad(f"{path}: empty; {_ALLOWED}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise bad(f"{path}:{line}: not a text file (byte 0x{raw[exc.start]:02x} at offset {exc.start} is not "
                  f"UTF-8); {_ALLOWED}") from None
    try:
        document: object = json.loads(text)
        return document
    except json.JSONDecodeError as exc:
        cut = not text.rstrip().endswith(("}", "]"))
        why = f"{exc.msg} (column {exc.colno})" + ("; the file ends early (truncated?)" if cut else "")
        raise bad(f"{path}:{exc.lineno}: not valid JSON: {why}; {_ALLOWED}") from None


def render_folder(out: Path, bad: Callable[[str], Exception]) -> list[Path]:
    """Re-render ``out``; returns the files written."""
    from reports import load_sweep_points, render_run, render_sweep, sweep_text
    from reports.common import check_results
    from rmapsim.outputs import uninterrupted

    if not out.exists():
        raise bad(f"{out}: no such folder; allowed: a folder holding result.json or sweep.json")
    if not out.is_dir():
        raise bad(f"{out}: not a folder; allowed: a folder holding result.json or sweep.json")
    sweep_path, result_path = out / "sweep.json", out / "result.json"
    if not sweep_path.exists() and not result_path.exists():
        raise bad(f"{out}: no result.json or sweep.json to render")
    path = sweep_path if sweep_path.exists() else result_path
    if path.is_dir():
        raise bad(f"{path}: a folder; {_ALLOWED}")
    data = read_json(path, bad)
    if not isinstance(data, dict):
        raise bad(f"{path}: a JSON {type(data).__name__}, not an object; {_ALLOWED}")
    if path is sweep_path:
        try:
            sweep_text(data, load_sweep_points(data, out))  # reads and checks every input first
        except _SHAPE_ERRORS as exc:
            raise bad(f"{path}: cannot be rendered ({_what(exc)}); {_ALLOWED}") from None
        _writable(out, bad)
        try:
            written: list[Path] = uninterrupted(render_sweep, data, out)
        except _SHAPE_ERRORS as exc:
            raise bad(f"{path}: cannot be rendered ({_what(exc)}); {_ALLOWED}") from None
        return written
    try:
        results = check_results(data)
    except _SHAPE_ERRORS as exc:
        raise bad(f"{path}: {exc if isinstance(exc, ValueError) else _what(exc)}; {_ALLOWED}") from None
    _writable(out, bad)
    staging = Path(tempfile.mkdtemp(prefix=".rmapsim-report-", dir=out))
    try:
        try:
            rendered = render_run(results, staging)
        except _SHAPE_ERRORS as exc:
            raise bad(f"{path}: cannot be rendered ({_what(exc)}); {_ALLOWED}") from None
        return uninterrupted(_move_in, staging, out, rendered)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _writable(out: Path, bad: Callable[[str], Exception]) -> None:
    from rmapsim.outputs import OutputError, check_out_dir

    try:
        check_out_dir(out, "report")
    except OutputError as exc:
        raise bad(str(exc)) from None


def _what(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no {exc.args[0]!r} where one was expected"
    return f"{type(exc).__name__}: {exc}"


def _move_in(staging: Path, out: Path, rendered: list[Path]) -> list[Path]:
    written = []
    listed = set(rendered)
    # every file the renderers wrote, listed or not (the lock graphs' DOT sources)
    for path in [*rendered, *sorted(p for p in staging.rglob("*") if p.is_file() and p not in listed)]:
        rel = path.relative_to(staging)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        written.append(target)
    return written
