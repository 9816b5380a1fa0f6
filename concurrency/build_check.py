"""Refuse compiled modules older than their sources (never compiled itself: setup.py skips it).

The compiled build (setup.py, ``RMAPSIM_MYPYC=1``) puts a C extension beside each ``.py`` of
concurrency/, mm/ and actors/, and Python imports the extension first.  Installed into
site-packages that is what is wanted; in a source tree (an in-place build) an edit of the ``.py``
would silently not run.  Each package's ``__init__`` calls :func:`refuse_stale` so that such a
tree fails at import with what to do, instead of simulating yesterday's code.

``RMAPSIM_PURE=1`` makes an installed compiled build import its ``.py`` sources instead (the
wheel carries both): ``rmapsim bench run`` measures the pure-Python build beside the compiled one
in the same installation that way.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED_PACKAGES", "StaleBuild", "compiled", "refuse_stale"]

COMPILED_PACKAGES = ("concurrency", "mm", "actors")  # what setup.py compiles


class StaleBuild(ImportError):
    """A compiled module is older than its source."""


def compiled(module: ModuleType) -> bool:
    """True when ``module`` was loaded from a C extension (the compiled build)."""
    return not str(getattr(module, "__file__", "") or "").endswith(".py")


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """``RMAPSIM_PURE=1``: the compiled packages' modules from their ``.py`` files."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package not in COMPILED_PACKAGES or not path:
            return None
        for folder in path:
            source = Path(folder) / f"{name}.py"
            if source.exists():
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def refuse_stale(package_dir: str) -> None:
    """Raise :class:`StaleBuild` if a compiled module in ``package_dir`` predates its ``.py``.

    Installed packages (site-packages, dist-packages) are not checked: nobody edits them, and an
    installer may write a module's ``.py`` a moment after its extension."""
    if os.environ.get("RMAPSIM_PURE", "") == "1" and not any(isinstance(f, _SourcesFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())
    here = Path(package_dir)
    if {"site-packages", "dist-packages"} & set(here.parts):
        return
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for ext in here.glob(f"*{suffix}"):
            source = here / (ext.name[: -len(suffix)] + ".py")
            if source.exists() and source.stat().st_mtime > ext.stat().st_mtime:
                raise StaleBuild(f"{ext} is older than {source.name}: the compiled module would run instead of "
                                 f"the edited source; delete the compiled modules ({here}/*{suffix}) or rebuild")
