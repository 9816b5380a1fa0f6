"""The command line through a subprocess, as users run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SMALL = ["--set", "run.duration_ns=1000000"]


def rmapsim(*args: str, cwd: Path, env: dict[str, str] | None = None, check_status: int | None = 0,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "rmapsim", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    if check_status is not None:
        assert proc.returncode == check_status, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_no_arguments_runs_the_headline_comparison(tmp_path: Path) -> None:
    proc = rmapsim(cwd=tmp_path)
    assert "Verdict" in proc.stdout and "anon_vma" in proc.stdout and "cow_context" in proc.stdout
    assert "anon_vma->rwsem" in proc.stdout
    out = tmp_path / "rmapsim-out" / "fork-heavy-seed1"
    results = json.loads((out / "result.json").read_text())
    assert [r["design"] for r in results["runs"]] == ["anon_vma", "cow_context", "anon_vma_lazy"]
    assert (out / "report.html").exists() and (out / "lockstat.txt").exists()
    assert proc.stderr == ""  # not a terminal: no progress bar


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_run_writes_one_record_per_design_and_is_deterministic(tmp_path: Path) -> None:
    blobs = []
    for i, hashseed in enumerate(("0", "987")):
        out = tmp_path / f"o{i}"
        proc = rmapsim("run", "reclaim-churn", *SMALL, "--out", str(out), "--quiet", cwd=tmp_path,
                       env={"PYTHONHASHSEED": hashseed}, check_status=None)
        blobs.append((out / "result.json").read_bytes())
    assert blobs[0] == blobs[1]
    runs = json.loads(blobs[0])["runs"]
    # Exit status 1 exactly when a run found something (the PoC's walk misses mappings here).
    found = any(not r["invariants"]["passed"] or any(w["missed_mappings"] for w in r["walks"].values())
                for r in runs)
    assert proc.returncode == (1 if found else 0), proc.stderr
    if found:
        assert "missed mappings" in proc.stderr or "invariant violated" in proc.stderr
    assert {r["design"] for r in runs} == {"anon_vma", "cow_context", "anon_vma_lazy"}
    assert all(r["schema"] == "rmapsim.result/2" for r in runs)


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_run_design_seed_cpus_and_json(tmp_path: Path) -> None:
    proc = rmapsim("run", "fork-heavy", *SMALL, "--design", "cow_context", "--seed", "7", "--cpus", "2",
                   "--out", str(tmp_path / "o"), "--json", cwd=tmp_path)
    results = json.loads(proc.stdout)
    (run,) = results["runs"]
    assert run["design"] == "cow_context" and run["params"]["seed"] == 7 and run["params"]["cpus"] == 2


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_compare_prints_the_comparison(tmp_path: Path) -> None:
    proc = rmapsim("compare", "zygote", *SMALL, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert "Operation latency" in proc.stdout and "peak rmap metadata" in proc.stdout


def test_list_names_scenarios_designs_actors_switches(tmp_path: Path) -> None:
    proc = rmapsim("list", "--json", cwd=tmp_path)
    data = json.loads(proc.stdout)
    assert set(data) == {"scenarios", "designs", "actors", "switches"}
    assert "fork-heavy" in data["scenarios"] and "cow_context" in data["designs"]
    assert "kswapd" in data["actors"] and "switches.anon_vma.reuse" in data["switches"]
    text = rmapsim("list", cwd=tmp_path).stdout
    assert "scenarios:" in text and "switches.cow_context.walk_safety" in text


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_lockdep_reports_no_inversion_for_builtin_operations(tmp_path: Path) -> None:
    proc = rmapsim("lockdep", "thp-migration-storm", *SMALL, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert "0 finding(s), 0 order violation(s)" in proc.stdout


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_lockdep_finds_an_inverted_order_and_exits_1(tmp_path: Path) -> None:
    script = tmp_path / "inverted.py"
    script.write_text(
        "from workloads.scenario import Scenario\n"
        "from mm.system import MmSystem\n"
        "async def setup(world):\n"
        "    mm = await world.sys.new_mm()\n"
        "    other = await world.sys.new_mm()\n"
        "    # the wrong way round: page_table_lock, then (blocking) another mm's mmap_lock\n"
        "    await mm.page_table_lock.lock()\n"
        "    mm.page_table_lock.unlock()\n"
        "    await other.mmap_lock.down_write()\n"
        "    await mm.page_table_lock.lock()\n"
        "    mm.page_table_lock.unlock()\n"
        "    other.mmap_lock.up_write()\n"
        "    await mm.page_table_lock.lock()\n"
        "    await other.mmap_lock.down_read()\n"
        "    other.mmap_lock.up_read()\n"
        "    mm.page_table_lock.unlock()\n"
        "def scenario():\n"
        "    return Scenario(name='inverted', designs=('anon_vma',), duration_ns=10_000, setup=setup)\n"
    )
    proc = rmapsim("lockdep", str(script), "--out", str(tmp_path / "o"), cwd=tmp_path, check_status=1)
    assert "WARNING: possible circular locking dependency detected" in proc.stdout
    assert "lock order violation" in proc.stdout


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\n[run]\ncpus = 0\n')
    cases = [
        ("run", str(bad)),
        ("run", "no-such-scenario"),
        ("run", "fork-heavy", "--design", "nope"),
        ("run", "fork-heavy", "--set", "run.cpus"),
        ("run", "fork-heavy", "--set", "run.cpuz=4"),
        ("sweep", "fork-heavy", "--grid", "run.cpus"),
        ("report", str(tmp_path / "empty")),
        ("frobnicate",),
    ]
    for args in cases:
        proc = rmapsim(*args, cwd=tmp_path, check_status=2)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "error" in proc.stderr, (args, proc.stderr)
    proc = rmapsim("run", str(bad), cwd=tmp_path, check_status=2)
    assert f"{bad}:3: run.cpus: 0 out of range; allowed: 1..4096" in proc.stderr
    proc = rmapsim("run", "fork-heavy", "--set", "run.cpuz=4", cwd=tmp_path, check_status=2)
    assert "did you mean 'cpus'" in proc.stderr


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_report_rerenders_identically(tmp_path: Path) -> None:
    out = tmp_path / "o"
    rmapsim("run", "zygote", *SMALL, "--out", str(out), "--quiet", cwd=tmp_path)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rmapsim("report", str(out), "--quiet", cwd=tmp_path)
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after


def _sweep_index(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / "sweep.json").read_text())
    return result


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_sweep_runs_a_grid_in_parallel_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    args = ["sweep", "fork-exit-threads", "--set", "run.duration_ns=300000", "--grid", "run.cpus=1,2",
            "--grid", "actor.0.interval_ns=5000,20000", "--jobs", "2", "--out", str(out), "--json"]
    # actor.0 is not a valid key path: the grid is validated before any work starts
    proc = rmapsim(*args, cwd=tmp_path, check_status=2)
    assert "grid point" in proc.stderr
    args[args.index("actor.0.interval_ns=5000,20000")] = "run.seed=1,2"
    summary = json.loads(rmapsim(*args, cwd=tmp_path).stdout)
    assert {k: summary[k] for k in ("points", "ok", "failed", "resumed", "ran", "reasons", "out")} == {
        "points": 4, "ok": 4, "failed": 0, "resumed": 0, "ran": 4, "reasons": {"new point": 4}, "out": str(out)}
    index = _sweep_index(out)
    assert [p["status"] for p in index["points"]] == ["ok"] * 4
    # Resume: a point that did not finish is redone, finished ones are not.
    index["points"][1]["status"] = "pending"
    (out / "sweep.json").write_text(json.dumps(index))
    summary = json.loads(rmapsim(*args, cwd=tmp_path).stdout)
    assert summary["resumed"] == 3 and summary["ok"] == 4 and summary["reasons"] == {"not finished": 1}


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_sweep_interrupted_then_resumed(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "rmapsim", "sweep", "fork-heavy", "--set", "run.duration_ns=400000",
           "--grid", "run.seed=1,2,3,4,5,6", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (out / "sweep.json").exists() and any(p["status"] == "ok" for p in _sweep_index(out)["points"]):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    done_before = sum(p["status"] == "ok" for p in _sweep_index(out)["points"])
    assert done_before >= 1
    result = rmapsim("sweep", "fork-heavy", "--set", "run.duration_ns=400000", "--grid", "run.seed=1,2,3,4,5,6",
                     "--out", str(out), "--json", cwd=tmp_path)
    summary = json.loads(result.stdout)
    assert summary["resumed"] == done_before and summary["ok"] == 6


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    script = tmp_path / "flaky.py"
    script.write_text(
        "from workloads.scenario import Scenario\n"
        "def scenario(**overrides):\n"
        "    seed = overrides.get('run.seed', 1)\n"
        "    async def setup(world):\n"
        "        if seed == 2:\n"
        "            raise RuntimeError('point two breaks')\n"
        "    return Scenario(name='flaky', designs=('anon_vma',), duration_ns=10_000, seed=seed, setup=setup)\n"
    )
    out = tmp_path / "sw"
    proc = rmapsim("sweep", str(script), "--grid", "run.seed=1,2,3", "--out", str(out), "--json", cwd=tmp_path,
                   check_status=1)
    summary = json.loads(proc.stdout)
    assert summary["ok"] == 2 and summary["failed"] == 1
    failed = [p for p in _sweep_index(out)["points"] if p["status"] == "failed"]
    assert "point two breaks" in failed[0]["error"] and failed[0]["category"] == "crash"


@pytest.mark.long  # starts rmapsim processes: CI runs it, the everyday suite does not
def test_bench_engine_json(tmp_path: Path) -> None:
    proc = rmapsim("bench", "engine", "--json", "--repeats", "1", cwd=tmp_path)
    data = json.loads(proc.stdout)
    assert set(data) == {"engine_acq_per_s", "simpy_acq_per_s", "ratio", "end_ns", "mean_wait_ns",
                         "trio_acq_per_s", "trio_ratio", "trio_vs_stepper", "agree"}
    assert data["end_ns"] == 102675144 and data["agree"] is True  # stepper, trio executor and SimPy agree
