"""The command line inside trio: Ctrl-C (a real SIGINT), the run's structlog event log, the
diagnostics' JSON form, and cancellation of a run as trio code (pytest-trio)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from rmapsim import cli

# Every test here starts rmapsim processes: CI runs them (the README's command), the everyday
# suite does not (pyproject.toml addopts).
pytestmark = pytest.mark.long

LONG = ["--set", "run.duration_ns=400000000", "--force"]  # minutes: the interrupt always comes first


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rmapsim", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for(predicate: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("command", [
    ["run", "fork-heavy", *LONG],
    ["compare", "reclaim-churn", *LONG, "--executor", "trio"],
    ["validate", "--full"],  # minutes on either build: the interrupt always comes first
])
def test_ctrl_c_exits_130_with_nothing_half_written(tmp_path: Path, command: list[str]) -> None:
    out = tmp_path / "out"
    logging = command[0] != "validate"
    args = [*command, "--out", str(out)] + (["--log", str(out / "run.log")] if logging else [])
    proc = _start(args, tmp_path)
    if logging:  # the log's temporary file appears when the simulation starts, inside trio
        _wait_for(lambda: out.exists() and any(p.name.startswith(".run.log.") for p in out.iterdir()),
                  "the run to start")
        time.sleep(0.5)
    else:
        time.sleep(4)  # validate --full takes minutes: it is simulating by now
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout[-1000:], stderr[-2000:])
    assert stderr.strip().splitlines()[-1] == "rmapsim: interrupted", stderr
    assert "Traceback" not in stderr and "run failed" not in stderr
    # Nothing half-written: no result, no report, no log, no temporary file; not even the folder.
    assert not out.exists() or not list(out.rglob("*")), sorted(out.rglob("*"))


def test_the_log_is_json_lines_in_virtual_time_and_the_same_for_both_executors(tmp_path: Path) -> None:
    logs = {}
    for executor in ("stepper", "trio"):
        out = tmp_path / executor
        proc = subprocess.run([sys.executable, "-m", "rmapsim", "run", "reclaim-churn", "--set",
                               "run.duration_ns=500000", "--out", str(out), "--log", str(out / "run.log"),
                               "--executor", executor, "--quiet"], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode in (0, 1), proc.stderr
        logs[executor] = (out / "run.log").read_text()
        results = json.loads((out / "result.json").read_text())
    lines = [json.loads(line) for line in logs["trio"].splitlines()]
    assert lines
    by_design: dict[str, list[dict[str, Any]]] = {}
    for entry in lines:
        assert {"event", "level", "t_ns", "cpu", "task", "op", "scenario", "design", "seed"} <= set(entry), entry
        assert isinstance(entry["t_ns"], int) and "timestamp" not in entry  # virtual time, no wall clock
        by_design.setdefault(entry["design"], []).append(entry)
    assert list(by_design) == [r["design"] for r in results["runs"]] and "cow_context" in by_design
    for design, entries in by_design.items():
        times = [e["t_ns"] for e in entries]
        assert times == sorted(times), design
        events = [e["event"] for e in entries]
        assert events[0] == "run_start" and events[-1] == "run_end"
        phases = [e["phase"] for e in entries if e["event"] == "phase_change"]
        assert phases == ["setup", "workload", "wind_down"]
        record = next(r for r in results["runs"] if r["design"] == design)
        contended = sum(lk[side]["contentions"] for lk in record["locks"] for side in ("write", "read") if side in lk)
        assert {"lock_acquired", "lock_released"} <= set(events)
        assert ("lock_contended" in events) == bool(contended)  # the first of each hot event is always logged
        sampled = [e for e in entries if e["event"].startswith("lock_") and e["event"] != "lock_wait_long"]
        assert all(e["n"] % e["sample_every"] == 0 for e in sampled)
        assert all(e["cpu"] is not None and e["task"] for e in sampled)
        missed = sum(w["missed_mappings"] for w in record["walks"].values())
        assert ("walk_miss" in events) == bool(missed)
        assert events.count("invariant_failed") == len(record["invariants"]["violations"])
        end = entries[-1]
        assert end["reason"] == record["outcome"]["reason"] and end["events"] == record["outcome"]["events"]
    # Same run, same log, whichever executor ran it (only run_start says which).
    assert logs["stepper"].replace('"executor": "stepper"', '"executor": "trio"') == logs["trio"]


def test_diagnostics_go_through_structlog_as_json_with_json(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "rmapsim", "run", "no-such-scenario", "--json"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    entry = json.loads(proc.stderr.strip().splitlines()[-1])
    assert entry["event"] == "bad_input" and entry["level"] == "error"
    assert entry["message"].startswith("rmapsim: error: no-such-scenario: no such file or built-in scenario")
    # Without --json (and not on a terminal) the same diagnostic is the familiar line, unchanged.
    proc = subprocess.run([sys.executable, "-m", "rmapsim", "run", "no-such-scenario"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("rmapsim: error: no-such-scenario: no such file or built-in scenario")
    proc = subprocess.run([sys.executable, "-m", "rmapsim", "--log", "x.log", "sweep", "fork-heavy", "--grid",
                           "run.seed=1,2"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2 and "rmapsim: error: --log: sweep writes no run log" in proc.stderr


def _args(tmp_path: Path, **extra: Any) -> argparse.Namespace:
    args = cli.build_parser().parse_args(["run", "fork-heavy", "--set", "run.duration_ns=400000000", "--force",
                                          "--out", str(tmp_path / "out"), "--quiet",
                                          "--log", str(tmp_path / "out" / "run.log")])
    for key, value in extra.items():
        setattr(args, key, value)
    return args


@pytest.mark.parametrize("executor", ["stepper", "trio"])
async def test_a_run_is_trio_code_and_cancels_cleanly(tmp_path: Path, executor: str) -> None:
    args = _args(tmp_path)
    args.set = [*args.set, f"run.executor={executor}"]
    with trio.move_on_after(1.0) as scope:
        await cli.cmd_run(args)
    assert scope.cancelled_caught
    assert not (tmp_path / "out").exists()  # no result, no log, no folder


async def test_the_command_line_hosts_commands_in_trio(tmp_path: Path) -> None:
    # A run as trio code: it finishes beside other trio tasks, which keep getting turns.
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0)
            ticks += 1

    args = _args(tmp_path)
    args.set = ["run.duration_ns=500000", "run.executor=trio"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        status = await cli.cmd_run(args)
        nursery.cancel_scope.cancel()
    assert status in (0, 1) and ticks > 10
    assert (tmp_path / "out" / "result.json").exists() and (tmp_path / "out" / "run.log").exists()


def test_python_warnings_become_structlog_diagnostics(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    from rmapsim import diag

    with warnings.catch_warnings(), diag.diagnostics(json=True):
        warnings.simplefilter("always")
        warnings.warn("a deprecated knob", DeprecationWarning, stacklevel=1)
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["event"] == "python_warning" and entry["level"] == "warning"
    assert entry["category"] == "DeprecationWarning" and "a deprecated knob" in entry["message"]
    diag.configure()  # back to the plain form for whatever runs next in this process
