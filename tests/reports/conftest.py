from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.reports.tiny import tiny_results

_TINY: dict[str, Any] = {}


@pytest.fixture
def tiny() -> dict[str, Any]:
    """The two-design tiny run's results (computed once, a fresh copy per test)."""
    if not _TINY:
        _TINY.update(tiny_results())
    return copy.deepcopy(_TINY)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The tiny run saved as result.json and rendered once: (folder, files written)."""
    from reports import render_dir
    from workloads.record import atomic_write, dump_json

    outdir = tmp_path_factory.mktemp("run")
    if not _TINY:
        _TINY.update(tiny_results())
    atomic_write(outdir / "result.json", dump_json(_TINY))
    return outdir, render_dir(outdir)
