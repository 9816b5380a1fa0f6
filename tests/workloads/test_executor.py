"""workloads/executor.py: backends, lost workers, stop, and ``rmapsim explore --cluster``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from rmapsim.cli import main
from workloads.executor import Backend, BackendError, Executor, Outcome


def square_or_die(x: int) -> int:
    """A task: ``x * x``; 3 kills its worker, 4 raises."""
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 4:
        raise RuntimeError("four is right out")
    return x * x


def test_backend_from_jobs_and_cluster() -> None:
    assert Backend.from_args(1, None) == Backend("inprocess", 1)
    assert Backend.from_args(3, None) == Backend("processes", 3)
    assert Backend.from_args(1, "local:2") == Backend("dask", 2)
    assert Backend.from_args(4, "local") == Backend("dask", 4)
    assert Backend.from_args(2, "local:2") == Backend("dask", 2)
    assert Backend.from_args(1, "tcp://10.0.0.5:8786") == Backend("dask", 0, "tcp://10.0.0.5:8786")
    for jobs, cluster in ((0, None), (1, "local:x"), (2, "local:3"), (2, "tcp://h:8786"), (1, "h:8786"),
                          (1, "tcp://h")):
        with pytest.raises(BackendError, match=r"allowed|expected|disagree|drop --jobs"):
            Backend.from_args(jobs, cluster)


def _collect(backend: Backend, args: list[int]) -> dict[int, Outcome[int]]:
    got: dict[int, Outcome[int]] = {}

    def on_result(i: int, outcome: Outcome[int]) -> None:
        assert i not in got
        got[i] = outcome

    with Executor(backend) as ex:
        ex.map(square_or_die, args, on_result)
    return got


def test_local_workers_lose_one_task_when_its_worker_dies_and_go_on() -> None:
    got = _collect(Backend("processes", 2), [0, 1, 2, 3, 4, 5, 6, 7])
    assert sorted(got) == list(range(8))
    assert {i: o.value for i, o in got.items() if o.ok} == {0: 0, 1: 1, 2: 4, 5: 25, 6: 36, 7: 49}
    assert got[3].lost and got[3].error is not None and got[3].error.startswith("worker lost")
    assert "SIGKILL" in got[3].error
    assert not got[4].lost and got[4].error == "RuntimeError: four is right out"


def test_in_process_gives_the_same_values() -> None:
    got = _collect(Backend(), [0, 1, 2, 4, 5])
    assert {i: o.value for i, o in got.items() if o.ok} == {0: 0, 1: 1, 2: 4, 4: 25}
    assert got[3].error == "RuntimeError: four is right out"


def test_stop_ends_dispatching_and_running_tasks_still_finish() -> None:
    for backend in (Backend(), Backend("processes", 2)):
        got: list[int] = []

        def deliver(i: int, outcome: Outcome[int], got: list[int] = got) -> None:
            got.append(i)

        def enough(got: list[int] = got) -> bool:
            return len(got) >= 2

        with Executor(backend) as ex:
            ex.map(square_or_die, [0, 1, 2, 5, 6, 7, 8], deliver, stop=enough)
        assert 2 <= len(got) <= 3, (backend, got)  # two delivered, at most one more was already running


@pytest.mark.long
def test_explore_on_a_local_dask_cluster_gives_the_same_explore_json(tmp_path: Path) -> None:
    blobs = []
    for backend in (["--jobs", "1"], ["--cluster", "local:2"]):
        out = tmp_path / backend[1].replace(":", "-")
        status = main(["explore", "deep-chain", "--design", "anon_vma", "--runs", "4",
                       "--set", "run.duration_ns=2000000", *backend, "--shrink-budget", "0",
                       "--out", str(out), "--quiet"])
        blobs.append((status, (out / "explore.json").read_bytes()))
    assert blobs[0] == blobs[1]
