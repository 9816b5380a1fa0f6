"""The build backend: setuptools', plus what the opt-in compiled build needs.

``RMAPSIM_MYPYC=1 pip install .`` compiles the simulator's hot packages with mypyc (setup.py); the
isolated build environment then also needs mypy (which carries mypyc) and the runtime dependencies,
because mypyc type-checks the modules it compiles against them.  Without the variable the build is
setuptools' own, pure Python.  An editable install is always pure Python: compiled modules beside
the sources would shadow every later edit (setup.py refuses the combination).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import build_meta as _meta
from setuptools.build_meta import *  # noqa: F403  (every hook not overridden here)

__all__ = [*_meta.__all__, "get_requires_for_build_wheel"]


def _compiling() -> bool:
    return os.environ.get("RMAPSIM_MYPYC", "") == "1"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    requires: list[str] = list(_meta.get_requires_for_build_wheel(config_settings))
    if _compiling():
        project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
        requires += ["mypy[mypyc]>=1.11", *project["dependencies"]]
    return requires
