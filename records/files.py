"""Writing result files: atomically, and as canonical JSON."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "dump_json"]


def dump_json(data: object) -> str:
    """Sorted keys, one-space indent, a final newline: the same data gives the same bytes."""
    return json.dumps(data, sort_keys=True, indent=1) + "\n"


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write to a temporary name in the same folder, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
