"""``rmapsim sweep`` as users run it: the same points on every backend, failures that stay failures,
resume by identity, Ctrl-C / SIGTERM / kill -9 / a lost worker (issue 13)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rmapsim.cli import builtin_scenarios
from rmapsim.sweep import SweepSummary, run_sweep
from tests.cli.test_cli import rmapsim

# Every test here starts rmapsim processes: CI runs them (the README's command), the everyday
# suite does not (pyproject.toml addopts).
pytestmark = pytest.mark.long

TINY = ["--set", "run.duration_ns=300000", "--design", "anon_vma", "--design", "cow_context"]
# 16 points: 2 CPU counts x 4 seeds x the anon_vma reuse rule on and off.
GRID16 = ["--grid", "run.cpus=1,2", "--grid", "run.seed=1,2,3,4", "--grid", "switches.anon_vma.reuse=true,false"]


def _index(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((out / "sweep.json").read_text())
    return result


def _tree(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def test_sixteen_points_are_byte_identical_on_every_backend(tmp_path: Path) -> None:
    """--jobs 1 (in process), --jobs 2 (local workers), --cluster local:2 (a Dask LocalCluster of two
    workers on loopback, started and stopped by the sweep): the same bytes, point by point."""
    trees = {}
    for backend in (["--jobs", "1"], ["--jobs", "2"], ["--cluster", "local:2"]):
        out = tmp_path / backend[1].replace(":", "-")
        proc = rmapsim("sweep", "fork-exit-threads", *TINY, *GRID16, *backend, "--out", str(out), "--json",
                       cwd=tmp_path)
        summary = json.loads(proc.stdout)
        assert (summary["points"], summary["ok"], summary["ran"]) == (16, 16, 16), summary
        assert "Traceback" not in proc.stderr, proc.stderr
        trees[backend[1]] = {k: v for k, v in _tree(out).items() if k.startswith("points/") or k == "sweep.json"}
    assert len([k for k in trees["1"] if k.endswith("result.json")]) == 16
    assert trees["1"] == trees["2"] == trees["local:2"]


def test_a_point_that_violates_an_invariant_is_failed_everywhere(tmp_path: Path) -> None:
    """deep-chain seed 7: the PoC's walk leaves stale migration entries.  Not "ok": the category is
    in sweep.json, sweep.txt and the HTML, and the sweep exits 1 saying so."""
    out = tmp_path / "sw"
    proc = rmapsim("sweep", "deep-chain", "--grid", "run.seed=7", "--out", str(out), "--json", cwd=tmp_path,
                   check_status=1)
    summary = json.loads(proc.stdout)
    assert summary["ok"] == 0 and summary["failed"] == 1
    (point,) = _index(out)["points"]
    assert point["status"] == "failed"
    assert point["category"] in ("corruption", "missed_mapping") and point["error"].startswith("cow_context: ")
    assert point["designs"]["anon_vma"]["categories"] == []
    assert point["designs"]["cow_context"]["categories"]
    assert f"{point['category']}: {point['error']}" in proc.stderr
    table = (out / "sweep.txt").read_text()
    assert "1 points: 0 ok, 1 failed" in table and f": {point['category']}: cow_context" in table
    html = (out / "report.html").read_text()
    assert "Failed points" in html and point["category"] in html
    assert "<h1>rmapsim sweep: deep-chain over run.seed (7)</h1>" in html


def test_resume_reruns_exactly_the_points_whose_inputs_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = tmp_path / "fet.toml"
    scenario.write_text(builtin_scenarios()["fork-exit-threads"].read_text())
    out = tmp_path / "sw"

    def sweep(sets: dict[str, Any], designs: tuple[str, ...] = ("anon_vma", "cow_context")) -> SweepSummary:
        return run_sweep(scenario, ["run.seed=1,2"], designs=list(designs), out=out, quiet=True,
                         base_overrides={"run.duration_ns": 300_000, **sets})

    first = sweep({})
    assert (first["ran"], first["resumed"], first["reasons"]) == (2, 0, {"new point": 2})
    again = sweep({})
    assert (again["ran"], again["resumed"]) == (0, 2)
    # A different --set: every point reruns, and the index and the results say the new value.
    changed = sweep({"run.duration_ns": 200_000})
    assert (changed["ran"], changed["reasons"]) == (2, {"changed: overrides": 2})
    index = _index(out)
    assert index["overrides"] == {"run.duration_ns": 200_000}
    for p in index["points"]:
        runs = json.loads((out / p["result"]).read_text())["runs"]
        assert {r["params"]["duration_ns"] for r in runs} == {200_000}
    base = {"run.duration_ns": 200_000}
    # Fewer designs.
    fewer = sweep(base, ("anon_vma",))
    assert fewer["reasons"] == {"changed: designs": 2}
    assert [r["design"] for r in json.loads((out / index["points"][0]["result"]).read_text())["runs"]] == ["anon_vma"]
    # An edited scenario file.
    text = scenario.read_text()
    scenario.write_text(re.sub(r"(?m)^cpus = \d+$", "cpus = 3", text))
    assert scenario.read_text() != text
    edited = sweep(base, ("anon_vma",))
    assert edited["reasons"] == {"changed: scenario file": 2}
    # Other code.
    monkeypatch.setattr("rmapsim.sweep.code_version", lambda: "0.1.0+other")
    recoded = sweep(base, ("anon_vma",))
    assert recoded["reasons"] == {"changed: code": 2}
    assert {p["identity"]["code"] for p in _index(out)["points"]} == {"0.1.0+other"}
    assert sweep(base, ("anon_vma",))["resumed"] == 2


SWEEP12 = ["sweep", "fork-heavy", "--set", "run.duration_ns=1000000", "--grid", "run.seed=1,2,3,4,5,6,7,8,9,10,11,12"]


def _start(tmp_path: Path, out: Path, *backend: str, extra: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "rmapsim", *(extra or SWEEP12), *backend, "--out", str(out), "--quiet"]
    # A session of its own: a signal to its process group is what Ctrl-C in a terminal sends.
    return subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_a_finished_point(out: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if any(p["status"] == "ok" for p in _index(out)["points"]):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60) if proc.poll() is not None else ("", "still running")
    raise AssertionError(f"no point finished (exit status {proc.returncode}): {err}")


@pytest.mark.parametrize(("backend", "how"), [
    (("--jobs", "1"), "ctrl-c"),
    (("--jobs", "2"), "ctrl-c"),
    (("--jobs", "2"), "sigint"),
    (("--jobs", "2"), "sigterm"),
    (("--cluster", "local:2"), "ctrl-c"),
])
def test_an_interrupt_keeps_the_finished_points_and_exits_130(tmp_path: Path, backend: tuple[str, ...],
                                                              how: str) -> None:
    out = tmp_path / "sw"
    proc = _start(tmp_path, out, *backend)
    _wait_for_a_finished_point(out, proc)
    workers = _children(proc.pid)
    sent = time.monotonic()
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # the whole foreground group, workers included
    else:
        proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)  # the parent alone
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 10, "the sweep went on after the interrupt"
    assert "interrupted" in err and "Traceback" not in err, err
    index = _index(out)
    statuses = [p["status"] for p in index["points"]]
    assert "failed" not in statuses and "ok" in statuses and "pending" in statuses, statuses
    # Nothing ran on unrecorded: the only results on disk are the finished points'.
    time.sleep(1.0)
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("points/*/result.json")}
    assert on_disk == {p["result"] for p in index["points"] if p["status"] == "ok"}
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)]
    # (Resuming the rest: tests/cli/test_cli.py::test_sweep_interrupted_then_resumed.)


@pytest.mark.parametrize("backend", [("--jobs", "2"), ("--cluster", "local:2")])
def test_kill_9_of_the_sweep_leaves_no_worker_alive(tmp_path: Path, backend: tuple[str, ...]) -> None:
    """Points of about ten seconds each: a worker that outlived its parent would still be running
    them long after the 10 s this test allows."""
    out = tmp_path / "sw"
    long_points = ("sweep", "fork-heavy", "--design", "anon_vma", "--set", "run.duration_ns=60000000",
                   "--grid", "run.seed=1,2,3,4")
    proc = _start(tmp_path, out, *backend, extra=long_points)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ((out / "sweep.json").exists() and len(_children(proc.pid)) >= 2):
        time.sleep(0.1)
    time.sleep(1.0)  # the points are running
    workers = _children(proc.pid)
    assert len(workers) >= 2, workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes its stderr pipe (no ResourceWarning)
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "a worker outlived its parent by 10 s"


DOOMED = """\
import os
import signal

from workloads.scenario import Scenario


def scenario(**overrides):
    seed = overrides.get("run.seed", 1)

    async def setup(world):
        if seed == 2:  # the worker running this point dies, as under the OOM killer
            os.kill(os.getpid(), signal.SIGKILL)

    return Scenario(name="doomed", designs=("anon_vma",), duration_ns=10_000, seed=seed, setup=setup)
"""


@pytest.mark.parametrize("backend", [("--jobs", "2"), ("--cluster", "local:2")])
def test_a_lost_worker_fails_its_point_and_the_rest_go_on(tmp_path: Path, backend: tuple[str, ...]) -> None:
    script = tmp_path / "doomed.py"
    script.write_text(DOOMED)
    out = tmp_path / "sw"
    proc = rmapsim("sweep", str(script), "--grid", "run.seed=1,2,3,4,5", *backend, "--out", str(out), "--json",
                   cwd=tmp_path, check_status=1)
    summary = json.loads(proc.stdout)
    assert (summary["ok"], summary["failed"], summary["categories"]) == (4, 1, {"worker_lost": 1})
    points = {p["params"]["run.seed"]: p for p in _index(out)["points"]}
    assert points[2]["category"] == "worker_lost" and points[2]["error"].startswith("worker lost")
    assert all(points[s]["status"] == "ok" for s in (1, 3, 4, 5))
    assert "worker_lost" in (out / "sweep.txt").read_text()
    if backend[0] == "--cluster":
        return
    # A lost worker says nothing about the point: resuming runs it again (and loses it again).
    again = json.loads(rmapsim("sweep", str(script), "--grid", "run.seed=1,2,3,4,5", *backend, "--out", str(out),
                               "--json", cwd=tmp_path, check_status=1).stdout)
    assert (again["resumed"], again["reasons"]) == (4, {"worker_lost before": 1})


def test_bad_backends_are_bad_input(tmp_path: Path) -> None:
    for backend, needle in ((("--jobs", "0"), "--jobs: 0 is below 1"), (("--cluster", "moon:3"), "allowed: local"),
                            (("--cluster", "local:0"), "local:N"),
                            (("--cluster", "local:2", "--jobs", "3"), "disagree")):
        proc = rmapsim("sweep", "fork-heavy", "--grid", "run.seed=1", *backend, "--out", str(tmp_path / "x"),
                       cwd=tmp_path, check_status=2)
        assert needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "x" / "sweep.json").exists()


def test_a_finished_point_that_does_not_read_as_one_runs_again(tmp_path: Path) -> None:
    """A resumed point is kept as its sweep.json entry says; an entry whose fields have the wrong
    types (a hand-edited file) is not trusted: that point runs again, and the summary says why."""
    out = tmp_path / "sw"

    def sweep() -> SweepSummary:
        return run_sweep(builtin_scenarios()["deep-chain"], ["run.seed=1,2"], designs=["anon_vma"], out=out,
                         quiet=True, base_overrides={"run.duration_ns": 200_000})

    assert sweep()["ran"] == 2
    before = (out / "sweep.json").read_text()
    assert sweep()["resumed"] == 2
    assert (out / "sweep.json").read_text() == before  # kept whole, byte for byte
    index = _index(out)
    index["points"][1]["categories"] = "crash"  # a string where the schema has a list
    (out / "sweep.json").write_text(json.dumps(index))
    summary = sweep()
    assert (summary["resumed"], summary["ran"], summary["reasons"]) == (1, 1, {"unreadable entry": 1})
    assert (out / "sweep.json").read_text() == before
