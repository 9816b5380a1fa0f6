"""Which build the tests run on: the pure-Python sources or the compiled build (setup.py)."""

from __future__ import annotations

import pytest

import concurrency.engine
from concurrency.build_check import compiled

__all__ = ["COMPILED", "patches_compiled_methods"]

COMPILED = compiled(concurrency.engine)

# A test that replaces a method of a model object to inject a race or spy on calls: compiled code
# calls its own methods directly (and native instances refuse the assignment), so the patch would
# not take effect.  Such a test runs on the pure build only.
patches_compiled_methods = pytest.mark.skipif(
    COMPILED, reason="replaces a method of a compiled class: compiled code calls its methods directly")
