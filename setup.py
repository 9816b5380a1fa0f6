"""The opt-in compiled build (everything else is in pyproject.toml).

``RMAPSIM_MYPYC=1 pip install .`` compiles concurrency/, mm/ and actors/ (every module but the
packages' ``__init__`` and ``build_check``) with mypyc: the same code, results byte-identical, about
twice as fast.  Without the variable nothing is compiled.  Editable installs are refused with the
variable set: a compiled module beside its source would shadow every later edit of the ``.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup

COMPILED_PACKAGES = ("concurrency", "mm", "actors")
# __init__ and build_check run before (or instead of) the compiled modules; input_error's InputError is
# subclassed by the pure workloads package (a compiled __init__ then rejects the subclass's instances);
# perturb's frozen Perturbation travels to worker processes, and a compiled one does not unpickle.
PURE = ("__init__.py", "build_check.py", "input_error.py", "perturb.py")


def compiled_sources() -> list[str]:
    root = Path(__file__).resolve().parent
    return sorted(f"{pkg}/{p.name}" for pkg in COMPILED_PACKAGES for p in (root / pkg).glob("*.py")
                  if p.name not in PURE)


# Commands that build code; setuptools also runs this file for metadata alone (egg_info, dist_info:
# asking for the build requirements), before mypy is installed, and that needs no compiler.
BUILDING = ("bdist_wheel", "build", "build_ext", "install")

ext_modules = []
if os.environ.get("RMAPSIM_MYPYC", "") == "1":
    if any(arg in ("editable_wheel", "develop") for arg in sys.argv):
        raise SystemExit("RMAPSIM_MYPYC=1 compiles only non-editable installs (pip install .): compiled "
                         "modules beside the sources would run instead of later edits; unset it for -e")
    if any(arg in BUILDING for arg in sys.argv):
        try:
            from mypyc.build import mypycify
        except ImportError as exc:
            raise SystemExit(f"RMAPSIM_MYPYC=1 needs mypy (mypyc) in the build environment: {exc}") from None
        # A fresh build folder: setuptools packs whatever build/lib holds, and a module compiled by an
        # earlier build (since made pure, or removed) would otherwise ship and shadow its source.
        shutil.rmtree(Path(__file__).resolve().parent / "build", ignore_errors=True)
        ext_modules = mypycify(compiled_sources(), opt_level="3")

setup(ext_modules=ext_modules)
