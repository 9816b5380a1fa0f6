"""The opt-in compiled build's guards (setup.py, concurrency/build_check.py) and the run benchmark."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from concurrency.build_check import StaleBuild, _SourcesFirst, refuse_stale
from rmapsim.bench import format_run_bench, run_run_bench

ROOT = Path(__file__).resolve().parent.parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def test_a_compiled_module_older_than_its_source_is_refused(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text("x = 1\n")
    ext = package / f"mod{SUFFIX}"
    ext.write_bytes(b"")
    os.utime(ext, (1_000_000, 1_000_000))  # built long before the source was last edited
    with pytest.raises(StaleBuild, match=r"older than mod\.py"):
        refuse_stale(str(package))
    os.utime(ext, None)  # rebuilt after the edit: fine
    os.utime(package / "mod.py", (1_000_000, 1_000_000))
    refuse_stale(str(package))
    installed = tmp_path / "site-packages" / "pkg"  # an installer's order of writes is not an edit
    installed.mkdir(parents=True)
    (installed / "mod.py").write_text("x = 1\n")
    (installed / f"mod{SUFFIX}").write_bytes(b"")
    os.utime(installed / f"mod{SUFFIX}", (1_000_000, 1_000_000))
    refuse_stale(str(installed))


def test_pure_mode_finds_the_sources_of_the_compiled_packages(tmp_path: Path) -> None:
    (tmp_path / "engine.py").write_text("x = 1\n")
    spec = _SourcesFirst().find_spec("concurrency.engine", [str(tmp_path)])
    assert spec is not None and spec.origin == str(tmp_path / "engine.py")
    assert _SourcesFirst().find_spec("workloads.runner", [str(tmp_path)]) is None  # never compiled


@pytest.mark.parametrize("command", ["develop", "editable_wheel"])
def test_the_compiled_build_refuses_editable_installs(command: str) -> None:
    proc = subprocess.run([sys.executable, "setup.py", command], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "RMAPSIM_MYPYC": "1"}, timeout=120)
    assert proc.returncode != 0
    assert "compiles only non-editable installs" in proc.stderr


def test_run_bench_splits_the_cpu_and_counts_events() -> None:
    case = ("tiny run", ("run", "fork-heavy", "--design", "anon_vma", "--set", "run.duration_ns=200000"))
    doc = run_run_bench(repeats=1, builds=("pure",), cases=(case,))
    (row,) = doc["cases"]
    assert row["case"] == "tiny run" and row["build"] == "pure" and row["events"] > 1000
    assert row["wall_min_s"] >= row["simulation_wall_s"] > 0 and row["reports_cpu_s"] > 0
    assert row["import_cpu_s"] > 0 and row["events_per_sim_cpu_s"] > 0
    assert "tiny run" in format_run_bench(doc)
