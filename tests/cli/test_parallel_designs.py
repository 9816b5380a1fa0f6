"""The designs of one run in worker processes (``--jobs``): the same bytes as one after the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from rmapsim import cli, runs
from tests.cli.test_cli import SMALL, rmapsim
from workloads.runner import RunFailed, run_scenario_in_processes
from workloads.scenario import load_scenario


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_parallel_and_serial_designs_write_the_same_files(tmp_path: Path) -> None:
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    a = rmapsim("compare", "reclaim-churn", *SMALL, "--jobs", "1", "--trace", "--out", str(serial), "--quiet",
                cwd=tmp_path, check_status=None)
    b = rmapsim("compare", "reclaim-churn", *SMALL, "--jobs", "3", "--trace", "--out", str(parallel), "--quiet",
                cwd=tmp_path, check_status=None)
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)
    files = _outputs(serial)
    assert "result.json" in files and "trace-cow_context.json" in files and "report.html" in files
    assert files == _outputs(parallel)
    assert [r["design"] for r in json.loads(files["result.json"])["runs"]] == [
        "anon_vma", "cow_context", "anon_vma_lazy"]


def test_jobs_is_serial_when_parallel_cannot_pay_or_would_change_output(tmp_path: Path) -> None:
    def jobs(*argv: str) -> int:
        args = cli.build_parser().parse_args(["run", "fork-heavy", *argv])
        scenario = runs._load(args)
        return cli._jobs(args, scenario, cli._designs(args, scenario))

    assert jobs() == 3  # one process per design
    assert jobs("--jobs", "2") == 2
    assert jobs("--jobs", "1") == 1
    assert jobs("--design", "cow_context") == 1  # one design: nothing to share out
    assert jobs("--log", str(tmp_path / "run.log")) == 1  # one event log, in design order
    assert jobs("--set", "run.executor=trio") == 1  # trio cannot start inside a forked trio.run
    # --jobs below 1 is bad input at the parser (exit 2: tests/cli/test_every_input.py)
    assert cli.main(["run", "fork-heavy", "--jobs", "0"]) == 2


def test_a_design_that_raises_in_its_worker_is_reported_not_dropped(tmp_path: Path) -> None:
    scenario_file = tmp_path / "tiny.toml"
    # Stopped by its event budget: a violation in the record, not a failure of the run.
    scenario_file.write_text('name = "tiny"\n[run]\ncpus = 2\nduration_ns = 100000\nmax_events = 50\n'
                             '[[process]]\nname = "p"\nregions = [{start = 0, pages = 4}]\n')
    scenario = load_scenario(scenario_file)

    async def both(designs: list[str]) -> object:
        return await run_scenario_in_processes(scenario, scenario_file, {}, designs=designs, jobs=2)

    results = trio.run(both, ["anon_vma", "cow_context"])
    assert isinstance(results, dict) and len(results["runs"]) == 2
    with pytest.raises(RuntimeError, match="no_such_design") as info:
        trio.run(both, ["anon_vma", "no_such_design"])
    assert not isinstance(info.value, RunFailed)  # a bug in the worker, not a finding of the run
