"""Every input gets a clear answer (issue 15): malformed scenarios, files and command lines.

Each malformed input below goes through the command line's ``main()`` in this process (fast), and
must end with exit status 2, exactly one ``rmapsim: error:`` message, no traceback, and the folder
the command ran in exactly as it was (nothing written, nothing lost, no temporary names).  Then
Hypothesis feeds random bytes as a scenario file, random valid TOML of the wrong shape, random
``--set`` key paths and values, and Python scenarios returning wrong fields, under the same rule.
The few things that need a real process (Ctrl-C) run one.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import signal
import string
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmapsim.cli import first_sentence, main
from rmapsim.runs import check_size

TINY = """\
name = "tiny"
description = "A tiny scenario."

[run]
cpus = 2
duration_ns = 20_000
designs = ["anon_vma"]

[[process]]
name = "p"
regions = [{start = 0, pages = 8}, {start = 1024, pages = 8, thp = false}]

[[actor]]
kind = "fork_exit"
process = "p"
interval_ns = 10_000
"""


def tiny(old: str, new: str) -> str:
    assert old in TINY, old
    return TINY.replace(old, new, 1)


def py(body: str) -> str:
    return ("from actors.process import Region\n"
            "from workloads.scenario import ActorSpec, ProcessSpec, Scenario\n" + body)


# -- the inputs -------------------------------------------------------------------------------------------

FILES: dict[str, str | bytes] = {
    "tiny.toml": TINY,
    "afile": "not a folder\n",
    # TOML: shape (the parameter table)
    "t-name-int.toml": tiny('name = "tiny"', "name = 3"),
    "t-no-name.toml": tiny('name = "tiny"\n', ""),
    "t-cpus-0.toml": tiny("cpus = 2", "cpus = 0"),
    "t-cpus-str.toml": tiny("cpus = 2", 'cpus = "two"'),
    "t-cpus-bool.toml": tiny("cpus = 2", "cpus = true"),
    "t-cpus-float.toml": tiny("cpus = 2", "cpus = 8.0"),
    "t-cpus-huge.toml": tiny("cpus = 2", "cpus = 9223372036854775807"),
    "t-duration-neg.toml": tiny("duration_ns = 20_000", "duration_ns = -1"),
    "t-designs-empty.toml": tiny('designs = ["anon_vma"]', "designs = []"),
    "t-designs-unknown.toml": tiny('designs = ["anon_vma"]', 'designs = ["anon_vmaa"]'),
    "t-designs-nested.toml": tiny('designs = ["anon_vma"]', 'designs = [["anon_vma"]]'),
    "t-designs-str.toml": tiny('designs = ["anon_vma"]', 'designs = "anon_vma"'),
    "t-executor.toml": tiny("cpus = 2", 'cpus = 2\nexecutor = "fast"'),
    "t-balance.toml": tiny("cpus = 2", "cpus = 2\nbalance = 1"),
    "t-run-key.toml": tiny("cpus = 2", "cpus = 2\ncpu = 4"),
    "t-jitter.toml": TINY + "\n[run.perturb]\njitter = 2.0\n",
    "t-preempt.toml": TINY + "\n[run.perturb]\npreempt = [[1]]\n",
    "t-shuffle.toml": TINY + '\n[run.perturb]\nshuffle = "yes"\n',
    "t-perturb-key.toml": TINY + "\n[run.perturb]\nwobble = 1\n",
    "t-top-key.toml": "bogus = 1\n" + TINY,
    "t-wmarks.toml": TINY + "\n[memory]\nwmark_min = 10\nwmark_low = 5\n",
    "t-total-0.toml": TINY + "\n[memory]\ntotal_pages = 0\n",
    "t-cost-key.toml": TINY + "\n[costs]\nnope_ns = 5\n",
    "t-cost-neg.toml": TINY + "\n[costs]\nctx_switch_ns = -5\n",
    "t-costs-int.toml": "costs = 5\n" + TINY,
    "t-rwsem.toml": TINY + '\n[rwsem]\nspin = "no"\n',
    "t-mutex.toml": TINY + "\n[mutex]\nhandoff = 1\n",
    "t-reclaim.toml": TINY + '\n[reclaim]\ntrylock = "x"\n',
    "t-order-missing.toml": TINY + '\n[lockdep]\nexpected_order = "missing.toml"\n',
    "t-order-int.toml": TINY + "\n[lockdep]\nexpected_order = 5\n",
    "t-order-binary.toml": TINY + '\n[lockdep]\nexpected_order = "bin.toml"\n',
    "t-switch-design.toml": TINY + "\n[switches.nope]\nx = 1\n",
    "t-switch-bool.toml": TINY + '\n[switches.anon_vma]\nreuse = "yes"\n',
    "t-switch-choice.toml": TINY + '\n[switches.cow_context]\nwalk_safety = "locks"\n',
    "t-switch-key.toml": TINY + "\n[switches.anon_vma]\nreuze = true\n",
    "t-switches-int.toml": "switches = 1\n" + TINY,
    "t-proc-dup.toml": TINY + '\n[[process]]\nname = "p"\nregions = []\n',
    "t-region-nopages.toml": tiny("{start = 0, pages = 8}", "{start = 0}"),
    "t-region-0.toml": tiny("{start = 0, pages = 8}", "{start = 0, pages = 0}"),
    "t-regions-str.toml": tiny("regions = [{start = 0, pages = 8}, {start = 1024, pages = 8, thp = false}]",
                               'regions = "all"'),
    "t-process-ints.toml": tiny('[[process]]\nname = "p"\nregions = [{start = 0, pages = 8}, {start = 1024, pages = 8, '
                                'thp = false}]\n', "process = [1, 2]\n"),
    "t-actor-kind.toml": tiny('kind = "fork_exit"', 'kind = "fork_exti"'),
    "t-actor-kind-list.toml": tiny('kind = "fork_exit"', "kind = [1]"),
    "t-actor-noproc.toml": tiny('process = "p"\n', ""),
    "t-actor-proc.toml": tiny('process = "p"', 'process = "q"'),
    "t-actor-region.toml": TINY + '\n[[actor]]\nkind = "fault_loop"\nprocess = "p"\nregion = 5\n',
    "t-actor-param.toml": tiny("interval_ns = 10_000", 'interval_ns = "often"'),
    "t-actor-str.toml": 'actor = "x"\n' + tiny('[[actor]]\nkind = "fork_exit"\nprocess = "p"\ninterval_ns = 10_000\n',
                                               ""),
    "t-syntax.toml": tiny('name = "tiny"', "name = "),
    "t-dupkey.toml": tiny("cpus = 2", "cpus = 2\ncpus = 3"),
    "t-unterminated.toml": tiny('name = "tiny"', 'name = "tiny'),
    # TOML: meaning (load-time semantic checks) and size
    "s-overlap.toml": tiny("{start = 1024, pages = 8, thp = false}", "{start = 4, pages = 8}"),
    "s-mremap-mapped.toml": TINY + '\n[[actor]]\nkind = "mremap"\nprocess = "p"\nregion = 0\nother_start = 1020\n',
    "s-mremap-thp.toml": tiny("{start = 1024, pages = 8, thp = false}", "{start = 1024, pages = 512, thp = true}")
    + '\n[[actor]]\nkind = "mremap"\nprocess = "p"\nregion = 1\nother_start = 4000\n',
    "s-churn.toml": TINY + '\n[[actor]]\nkind = "mmap_churn"\nprocess = "p"\nstart = 0\npages = 4\n',
    "s-memory.toml": TINY + "\n[memory]\ntotal_pages = 10\n",
    "s-duration.toml": tiny("duration_ns = 20_000", "duration_ns = 10_000_000_000_000"),
    "s-pages.toml": tiny("{start = 0, pages = 8}", "{start = 0, pages = 1_073_741_824}").replace(
        "{start = 1024, pages = 8, thp = false}", "{start = 1_073_742_000, pages = 8}")
    + "\n[memory]\ntotal_pages = 2_000_000_000\n",
    # files that are not text
    "bin.toml": bytes(range(256)) * 4,
    "latin.toml": 'name = "caf\xe9"\n'.encode("latin-1"),
    "nul.toml": b'name = "a"\x00\n',
    "empty.toml": "",
    "x.txt": TINY,
    # Python scenarios
    "p-syntax.py": "def scenario(:\n    pass\n",
    "p-import.py": "raise RuntimeError('boom at import')\n",
    "p-exit.py": "import sys\nsys.exit(3)\n",
    "p-call.py": "def scenario():\n    return 1 / 0\n",
    "p-dict.py": "def scenario():\n    return {'name': 'x'}\n",
    "p-none.py": "def scenario():\n    pass\n",
    "p-nofactory.py": "x = 1\n",
    "p-notcallable.py": "scenario = 5\n",
    "p-cpus.py": py("def scenario():\n    return Scenario(name='x', cpus=0)\n"),
    "p-design.py": py("def scenario():\n    return Scenario(name='x', designs=('anon_vmaa',))\n"),
    "p-switch.py": py("def scenario():\n    return Scenario(name='x', switches={'cow_context': "
                      "{'walk_safety': 'x'}})\n"),
    "p-overlap.py": py("def scenario():\n    return Scenario(name='x', processes=(ProcessSpec('p', (Region(0, 10), "
                       "Region(5, 10))),))\n"),
    "p-actor.py": py("def scenario():\n    return Scenario(name='x', actors=(ActorSpec('fork_exit', None, {}),))\n"),
    "p-duration.py": py("def scenario():\n    return Scenario(name='x', duration_ns=0)\n"),
    "p-processes.py": py("def scenario():\n    return Scenario(name='x', processes=[1])\n"),
    "p-name.py": py("def scenario():\n    return Scenario(name=5)\n"),
    "p-ok.py": py("def scenario(**overrides):\n"
                  "    return Scenario(name='x', designs=('anon_vma',), duration_ns=10_000)\n"),
    # damaged result folders for `rmapsim report`
    "r-empty/result.json": "",
    "r-binary/result.json": bytes(range(200, 256)) * 3,
    "r-truncated/result.json": '{"schema": "rmapsim.results/1", "runs": [{"schema": "rmapsim.res',
    "r-schema/result.json": '{"schema": "something/1"}\n',
    "r-list/result.json": "[1, 2, 3]\n",
    "r-partial/result.json": '{"schema": "rmapsim.results/1", "runs": [{"schema": "rmapsim.result/1"}]}\n',
    "r-runs/result.json": '{"schema": "rmapsim.results/1", "runs": 5}\n',
    "r-sweep-schema/sweep.json": '{"schema": "rmapsim.sweep/0", "points": []}\n',
    "r-sweep-point/sweep.json": '{"schema": "rmapsim.sweep/1", "grid": {}, "points": [{"params": {}, '
                                '"status": "ok", "result": "../afile"}]}\n',
    "r-sweep-trunc/sweep.json": '{"schema": "rmapsim.sweep/1", "points": [',
    "r-none/notes.txt": "no results here\n",
    "bad-order.toml": "[[level]]\nclasses = 5\n",
}
DIRS = ("dir.toml", "dir-out")


def _cases() -> list[tuple[str, list[str], list[str]]]:
    """(id, argv, words the message must hold): every class of malformed input."""
    cases: list[tuple[str, list[str], list[str]]] = []
    words: dict[str, list[str]] = {
        "t-cpus-0.toml": ["t-cpus-0.toml:5: run.cpus: 0 out of range; allowed: 1..4096"],
        "t-cpus-str.toml": ['run.cpus: "two" is not an integer', "allowed: 1..4096"],
        "t-cpus-bool.toml": ["run.cpus: true is not an integer"],
        "t-designs-unknown.toml": ['unknown design "anon_vmaa"', "did you mean", "allowed:"],
        "t-switch-bool.toml": ['"yes" not allowed; allowed: true, false'],
        "t-switch-choice.toml": ['"locks" not allowed; allowed: "rcu"'],
        "t-syntax.toml": ["t-syntax.toml:1:", "not valid TOML"],
        "s-overlap.toml": ["s-overlap.toml:11: process[0].regions[1]", "overlaps"],
        "s-mremap-mapped.toml": ["actor[1].other_start", "overlaps"],
        "s-mremap-thp.toml": ["actor[1].other_start", "multiple of 512"],
        "s-churn.toml": ["actor[1].start", "overlaps"],
        "s-memory.toml": ["memory.total_pages: 10 is less than the 16 pages", "kswapd"],
        "s-duration.toml": ["would take about", "events/s", "--force"],
        "s-pages.toml": ["would take about", "populated pages", "--force"],
        "bin.toml": ["bin.toml:2: not a text file", "not UTF-8"],
        "latin.toml": ["not UTF-8"],
        "nul.toml": ["NUL byte"],
        "dir.toml": ["dir.toml: is a directory"],
        "p-syntax.py": ["p-syntax.py:1: Python syntax error"],
        "p-import.py": ["p-import.py:1: importing it raised RuntimeError: boom at import"],
        "p-call.py": ["p-call.py:2: scenario() raised ZeroDivisionError"],
        "p-dict.py": ["returned dict, not a Scenario"],
        "p-cpus.py": ["p-cpus.py: run.cpus: 0 out of range; allowed: 1..4096"],
        "p-overlap.py": ["process[0].regions[1]", "overlaps"],
        "p-actor.py": ["actor[0].process: missing"],
    }
    scenario_files = [name for name in FILES if name.endswith((".toml", ".py", ".txt")) and name[0] in "tspbnlex"
                      and name not in ("tiny.toml", "p-ok.py", "bad-order.toml")]
    for name in [*scenario_files, "dir.toml", "/dev/null"]:
        cases.append((f"run:{name}", ["run", name, "--out", "o"], words.get(name, [])))
    # the same file through the other commands that load scenarios
    for cmd in (["compare"], ["sweep", "--grid", "run.seed=1,2"], ["explore", "--runs", "2"], ["lockdep"]):
        for name in ("t-cpus-0.toml", "p-import.py", "s-overlap.toml", "bin.toml"):
            cases.append((f"{cmd[0]}:{name}", [cmd[0], name, *cmd[1:], "--out", "o"], words.get(name, [])))
    # outputs: a file, a path under a file, a place that cannot be written; checked before any run
    for where in ("afile", "afile/sub", "/proc/rmapsim-test"):
        for cmd in (["run", "tiny.toml"], ["compare", "tiny.toml"], ["sweep", "tiny.toml", "--grid", "run.seed=1,2"],
                    ["explore", "tiny.toml", "--runs", "2"], ["lockdep", "tiny.toml"], ["validate"]):
            cases.append((f"out:{cmd[0]}:{where}", [*cmd, "--out", where], ["--out", where]))
    cases += [
        ("out:before-command", ["--out", "afile", "run", "tiny.toml"], ["--out afile"]),
        ("out:json-before-command", ["--json", "--out", "afile/x", "run", "tiny.toml"], ["afile"]),
        ("emit-order:dir", ["lockdep", "tiny.toml", "--out", "o", "--emit-order", "dir-out"], ["--emit-order"]),
        ("emit-order:under-file", ["lockdep", "tiny.toml", "--out", "o", "--emit-order", "afile/o.toml"],
         ["--emit-order"]),
        ("log:dir", ["run", "tiny.toml", "--out", "o", "--log", "dir-out"], ["--log"]),
        ("log:under-file", ["run", "tiny.toml", "--out", "o", "--log", "afile/log"], ["--log"]),
        ("log:list", ["--log", "x", "list"], ["--log"]),
        ("out:list", ["--out", "x", "list"], ["--out", "list takes no --out"]),
        ("out:report", ["--out", "x", "report", "r-empty"], ["--out"]),
        ("out:bench", ["--out", "x", "bench"], ["--out"]),
        ("executor:list", ["--executor", "trio", "list"], ["--executor"]),
    ]
    # rmapsim report on damaged input
    for folder in ("r-empty", "r-binary", "r-truncated", "r-schema", "r-list", "r-partial", "r-runs",
                   "r-sweep-schema", "r-sweep-point", "r-sweep-trunc", "r-none", "missing-folder", "afile"):
        cases.append((f"report:{folder}", ["report", folder], [folder]))
    # flags and their values
    cases += [
        ("set:value", ["run", "tiny.toml", "--set", "run.cpus=abc"], ['--set: run.cpus: "abc" is not an integer']),
        ("set:unknown", ["run", "tiny.toml", "--set", "run.cpuz=4"], ["--set: run.cpuz: unknown key"]),
        ("set:no-equals", ["run", "tiny.toml", "--set", "run.cpus"], ["--set"]),
        ("set:no-key", ["run", "tiny.toml", "--set", "=5"], ["--set"]),
        ("set:empty-part", ["run", "tiny.toml", "--set", "run..cpus=5"], ["--set"]),
        ("set:under-int", ["run", "tiny.toml", "--set", "run.cpus.x=1"], ["--set"]),
        ("set:table", ["run", "tiny.toml", "--set", "run=5"], ["--set"]),
        ("set:range", ["run", "tiny.toml", "--set", "memory.total_pages=10"], ["--set: memory.total_pages"]),
        ("set:executor", ["run", "tiny.toml", "--set", "run.executor=fast"], ["--set"]),
        ("set:python", ["run", "p-ok.py", "--set", "run.cpus=0"], ["--set: run.cpus: 0 out of range"]),
        ("set:python-key", ["run", "p-ok.py", "--set", "x.y=1"], ["--set: x.y"]),
        ("cpus:0", ["run", "tiny.toml", "--cpus", "0"], ["--cpus: run.cpus: 0 out of range"]),
        ("cpus:abc", ["run", "tiny.toml", "--cpus", "abc"], ["--cpus"]),
        ("seed:-1", ["run", "tiny.toml", "--seed", "-1"], ["--seed: run.seed"]),
        ("design:unknown", ["run", "tiny.toml", "--design", "nope"], ["--design nope: unknown design"]),
        ("executor:unknown", ["run", "tiny.toml", "--executor", "fast"], ["--executor"]),
        ("scenario:unknown", ["run", "fork-hevy"], ["did you mean 'fork-heavy'"]),
        ("jobs:-3:sweep", ["sweep", "tiny.toml", "--grid", "run.seed=1,2", "--jobs", "-3"], ["--jobs", "1 or more"]),
        ("jobs:-3:explore", ["explore", "tiny.toml", "--jobs", "-3"], ["--jobs", "1 or more"]),
        ("jobs:abc", ["sweep", "tiny.toml", "--grid", "run.seed=1,2", "--jobs", "abc"], ["--jobs"]),
        ("cluster:bad", ["sweep", "tiny.toml", "--grid", "run.seed=1,2", "--cluster", "local:0"], ["--cluster"]),
        ("grid:no-values", ["sweep", "tiny.toml", "--grid", "run.cpus"], ["--grid"]),
        ("grid:twice", ["sweep", "tiny.toml", "--grid", "run.cpus=1", "--grid", "run.cpus=2"], ["--grid"]),
        ("grid:bad-point", ["sweep", "tiny.toml", "--grid", "run.cpus=1,0"], ["--grid: run.cpus: 0 out of range"]),
        ("grid:too-big", ["sweep", "tiny.toml", "--grid", "run.duration_ns=1,10000000000000"], ["--force"]),
        ("runs:0", ["explore", "tiny.toml", "--runs", "0"], ["--runs"]),
        ("shrink-budget:-1", ["explore", "tiny.toml", "--shrink-budget", "-1"], ["--shrink-budget"]),
        ("perturb:bad", ["explore", "tiny.toml", "--perturb", "wobble"], ["wobble"]),
        ("explore:design", ["explore", "tiny.toml", "--design", "nope"], ["nope"]),
        ("lockdep:nothing", ["lockdep"], ["name a scenario"]),
        ("lockdep:order", ["lockdep", "tiny.toml", "--order", "missing.toml"], ["missing.toml"]),
        ("lockdep:bad-order", ["lockdep", "tiny.toml", "--order", "bad-order.toml"], ["bad-order.toml"]),
        ("lockdep:merge", ["lockdep", "--merge", "bad-order.toml"], ["bad-order.toml"]),
        ("lockdep:order-binary", ["lockdep", "tiny.toml", "--order", "bin.toml"], ["bin.toml:2: not a text file"]),
        ("lockdep:merge-binary", ["lockdep", "--merge", "latin.toml"], ["latin.toml:1: not a text file"]),
        ("lockdep:variant", ["lockdep", "tiny.toml", "--design", "cow_context:walk_safety=bogus"], ["bogus"]),
        ("validate:check", ["validate", "--check", "nope"], ["--check nope"]),
        ("validate:seed", ["validate", "--seed", "-1"], ["--seed", "out of range", "allowed"]),
        ("bench:repeats-0", ["bench", "engine", "--repeats", "0"], ["--repeats", "1 or more"]),
        ("bench:repeats--1", ["bench", "engine", "--repeats", "-1"], ["--repeats"]),
        ("bench:folios-0", ["bench", "memory", "--folios", "0"], ["--folios"]),
        ("bench:what", ["bench", "bogus"], ["bench bogus"]),
        ("command:unknown", ["frobnicate"], ["frobnicate"]),
        ("flag:unknown", ["run", "tiny.toml", "--frob"], ["--frob"]),
    ]
    return cases


CASES = _cases()


def make_inputs(root: Path) -> None:
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    for name in DIRS:
        (root / name).mkdir()


def snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under ``root``: whether a folder, and a file's size and modification time (a
    folder's own time changes when a temporary name in it comes and goes: a write probe, a
    report rendered aside and dropped)."""
    out = {}
    for path in root.rglob("*"):
        st_ = path.lstat()
        is_dir = path.is_dir()
        out[str(path.relative_to(root))] = (is_dir, 0 if is_dir else st_.st_size, 0 if is_dir else st_.st_mtime_ns)
    return out


def cli(argv: list[str]) -> tuple[int, str, str]:
    """``rmapsim ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_bad_input(root: Path, argv: list[str], words: list[str] = ()) -> str:  # type: ignore[assignment]
    """Exit status 2, one message, no traceback, and ``root`` exactly as it was."""
    before = snapshot(root)
    code, stdout, stderr = cli(argv)
    assert code == 2, (argv, code, stdout[-500:], stderr[-1500:])
    assert "Traceback" not in stderr and "Traceback" not in stdout, (argv, stderr)
    assert stderr.count("rmapsim: error:") == 1, (argv, stderr)
    for word in words:
        assert word in stderr, (argv, word, stderr)
    assert snapshot(root) == before, (argv, set(snapshot(root)) ^ set(before))
    return stderr


@pytest.fixture
def inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    make_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_corpus_covers_every_class_with_over_100_inputs() -> None:
    classes = {case_id.split(":")[0] for case_id, _, _ in CASES}
    assert len(CASES) >= 100, len(CASES)
    assert {"run", "compare", "sweep", "explore", "lockdep", "out", "emit-order", "log", "report", "set", "jobs",
            "bench", "grid", "cpus", "design"} <= classes


@pytest.mark.parametrize(("argv", "words"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_exits_2_with_one_message_and_writes_nothing(inputs: Path, argv: list[str],
                                                                     words: list[str]) -> None:
    assert_bad_input(inputs, argv, words)


def test_a_python_scenarios_bad_design_blames_its_file_not_a_design_flag(inputs: Path) -> None:
    stderr = assert_bad_input(inputs, ["run", "p-design.py", "--out", "o"])
    assert "p-design.py: run.designs" in stderr and "--design" not in stderr


def test_messages_spell_values_as_toml(inputs: Path) -> None:
    stderr = assert_bad_input(inputs, ["run", "t-switch-bool.toml"])
    assert "True" not in stderr and "'" not in stderr.split("allowed:")[1]
    code, stdout, _ = cli(["list"])
    assert code == 0 and "(default true; allowed true, false)" in stdout and "(default True" not in stdout


# -- Hypothesis: random inputs under the same rule -------------------------------------------------------

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def scratch() -> Any:
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        root = Path(tmp)
        (root / "tiny.toml").write_text(TINY)
        yield root


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_a_scenario_file(data: bytes) -> None:
    with scratch() as root:
        (root / "fuzz.toml").write_bytes(data)
        assert_bad_input(root, ["run", "fuzz.toml", "--out", "o"])


_IDENT = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8).map(lambda s: f"x_{s}")
# TOML values none of which any scenario key accepts where the shape below puts them
_WRONG = st.one_of(st.integers(max_value=-1), st.floats(min_value=1.0, max_value=1e9).map(lambda f: f + 0.5),
                   _IDENT.map(json.dumps), st.lists(_IDENT.map(json.dumps), min_size=1, max_size=3).map(
                       lambda xs: "[" + ", ".join(xs) + "]"), _IDENT.map(lambda k: f"{{{k} = 1}}"))
_ANY = st.one_of(_WRONG, st.integers(min_value=0, max_value=10**6).map(str), st.booleans().map(
    lambda b: "true" if b else "false"), _IDENT.map(json.dumps))
_TABLES = ["run", "memory", "costs", "rwsem", "mutex", "reclaim", "lockdep", "switches.anon_vma",
           "switches.cow_context", "run.perturb", "x_table"]
_KEYS = ["cpus", "duration_ns", "seed", "designs", "total_pages", "wmark_min", "spin", "handoff", "trylock",
         "enabled", "expected_order", "reuse", "walk_safety", "jitter", "preempt", "shuffle", "ctx_switch_ns"]


@st.composite
def wrong_shape_toml(draw: Any) -> str:
    """Valid TOML, wrong for a scenario: the tiny scenario plus tables of known and random keys,
    at least one of them holding a value no key accepts there (or an unknown key)."""
    lines = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        table = draw(st.sampled_from(_TABLES))
        body = {draw(st.one_of(st.sampled_from(_KEYS), _IDENT)): draw(_ANY)
                for _ in range(draw(st.integers(min_value=0, max_value=3)))}
        lines.append((table, body))
    lines[0][1][draw(st.one_of(st.sampled_from(_KEYS), _IDENT))] = draw(_WRONG)  # one wrong thing at least
    text = 'name = "fuzz"\n'
    seen = set()
    for table, body in lines:
        if table in seen:
            continue
        seen.add(table)
        text += f"\n[{table}]\n" + "".join(f"{k} = {v}\n" for k, v in body.items())
    return text


@FUZZ
@given(wrong_shape_toml())
def test_random_wrong_shape_toml(text: str) -> None:
    with scratch() as root:
        (root / "fuzz.toml").write_text(text)
        assert_bad_input(root, ["run", "fuzz.toml", "--out", "o"])


_SET_KEYS = ["run.cpus", "run.duration_ns", "run.seed", "run.max_events", "run.designs", "run.balance",
             "run.executor", "run.lock_instance_stats", "memory.total_pages", "memory.wmark_min", "rwsem.spin",
             "rwsem.handoff_timeout_ns", "mutex.handoff", "reclaim.trylock", "lockdep.enabled",
             "costs.fault_entry_ns", "costs.ctx_switch_ns", "switches.anon_vma.reuse",
             "switches.cow_context.walk_safety", "run.perturb.shuffle", "run.perturb.jitter", "run.perturb.preempt"]


@FUZZ
@given(st.one_of(st.sampled_from(_SET_KEYS), st.lists(_IDENT, min_size=1, max_size=3).map(".".join),
                 st.tuples(st.sampled_from(["run", "memory", "costs", "switches.anon_vma", "lockdep"]), _IDENT).map(
                     ".".join)),
       _WRONG)
def test_random_set_keys_and_values_are_blamed_on_set(key: str, value: str) -> None:
    with scratch() as root:
        assert_bad_input(root, ["run", "tiny.toml", "--out", "o", "--set", f"{key}={value}"], ["--set"])


_FIELDS = ["cpus", "duration_ns", "max_events", "seed", "designs", "total_pages", "wmark_min", "wmark_low",
           "wmark_high", "costs", "rwsem", "mutex", "reclaim_trylock", "lockdep", "lock_instance_stats", "balance",
           "switches", "processes", "actors", "executor"]
_PY_WRONG = st.one_of(st.integers(max_value=-1), st.floats(min_value=1.0, max_value=1e9).map(lambda f: f + 0.5),
                      _IDENT, st.lists(_IDENT, min_size=1, max_size=2), st.dictionaries(_IDENT, st.integers(),
                                                                                         min_size=1, max_size=2))


@FUZZ
@given(st.one_of(st.tuples(st.sampled_from(_FIELDS), _PY_WRONG).map(
    lambda fv: f"Scenario(name='fz', {fv[0]}={fv[1]!r})"), _PY_WRONG.map(repr), st.just("None"), st.just("Scenario")))
def test_python_scenarios_returning_wrong_fields(returned: str) -> None:
    with scratch() as root:
        (root / "fz.py").write_text(py(f"def scenario():\n    return {returned}\n"))
        stderr = assert_bad_input(root, ["run", "fz.py", "--out", "o"], ["fz.py"])
        assert "--design" not in stderr


# -- flags where the README lists them --------------------------------------------------------------------


def test_top_level_flags_work_before_the_command(inputs: Path) -> None:
    code, stdout, _ = cli(["--json", "list"])
    assert code == 0 and set(json.loads(stdout)) == {"scenarios", "designs", "actors", "switches"}
    code, stdout, stderr = cli(["--out", "before", "--quiet", "run", "tiny.toml"])
    assert code in (0, 1), stderr
    assert (inputs / "before" / "result.json").exists() and stdout == ""
    code, stdout, _ = cli(["--json", "report", "before"])
    assert code == 0 and "before/report.html" in json.loads(stdout)["rendered"]


def test_list_quiet_report_json_and_bench_quiet(inputs: Path) -> None:
    code, stdout, _ = cli(["list", "--quiet"])
    assert code == 0 and "fork-heavy" in stdout.splitlines() and "anon_vma" in stdout.splitlines()
    code, stdout, _ = cli(["bench", "memory", "--folios", "2000", "--quiet", "--json"])
    assert code == 0 and json.loads(stdout)


def test_list_does_not_cut_descriptions_mid_sentence() -> None:
    from rmapsim.cli import builtin_scenarios
    from workloads.scenario import load_scenario

    code, stdout, _ = cli(["list"])
    assert code == 0
    for name, path in builtin_scenarios().items():
        description = " ".join(load_scenario(path).description.split())
        shown = first_sentence(description)
        assert f"  {shown}\n" in stdout
        assert description.startswith(shown) and (shown == description or shown[-1] in ".!?"), (name, shown)


def test_validate_json_entries_carry_their_check_id(inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import workloads.validate

    doc = {"mode": "small", "passed": True, "checks": [
        {"id": "H5a", "claim": "c", "source": "s", "value": 1, "expected": "e", "passed": True, "details": {},
         "notes": [], "published": "p", "value_text": "1"}], "unsourced_constants": []}
    monkeypatch.setattr(workloads.validate, "run_validation", lambda **_: doc)
    code, stdout, stderr = cli(["validate", "--json", "--out", "v", "--check", "H5a"])
    assert code == 0, stderr
    assert json.loads(stdout)["checks"][0]["id"] == "H5a"


def test_a_size_over_the_limit_runs_with_force(inputs: Path) -> None:
    from workloads.scenario import load_scenario
    from workloads.scenario_checks import LIMIT_S, estimate

    big = load_scenario(inputs / "s-duration.toml")
    assert estimate(big).seconds > LIMIT_S and estimate(load_scenario(inputs / "tiny.toml")).seconds < 1
    check_size(Namespace(force=True), big, 1)  # --force: no refusal


# -- findings and deadlocks --------------------------------------------------------------------------------

ABBA = """\
from concurrency.mutex import Mutex
from workloads.scenario import Scenario


async def setup(world):
    a = Mutex(world.engine, "lock_a")
    b = Mutex(world.engine, "lock_b")

    async def one():
        await a.lock()
        await world.engine.sleep(1_000)
        await b.lock()

    async def two():
        await world.engine.sleep(500)
        await b.lock()
        await world.engine.sleep(1_000)
        await a.lock()

    world.spawn_kthread("one", one)
    world.spawn_kthread("two", two)


def scenario():
    return Scenario(name="abba", designs=("anon_vma",), duration_ns=1_000_000, setup=setup)
"""


def test_a_deadlock_is_reported_when_it_formed(inputs: Path) -> None:
    (inputs / "abba.py").write_text(ABBA)
    code, _, stderr = cli(["run", "abba.py", "--out", "o", "--quiet"])
    assert code == 1 and stderr.startswith("rmapsim: run failed:")
    # The cycle closes a few microseconds in; nothing is left to run only after the 1 ms workload phase.
    m = re.search(r"deadlock at t=(\d+) ns \(found at t=(\d+) ns", stderr)
    assert m is not None, stderr
    assert 1_500 <= int(m.group(1)) < 100_000 and int(m.group(2)) >= 1_000_000, stderr
    assert "wait-for cycle: one -> two -> one" in stderr
    assert not (inputs / "o").exists()


def test_lockdep_on_a_real_abba_deadlock_prints_the_report_and_writes_its_files(inputs: Path) -> None:
    (inputs / "abba.py").write_text(ABBA)
    code, stdout, stderr = cli(["lockdep", "abba.py", "--out", "o"])
    assert code == 1
    assert "WARNING: possible circular locking dependency detected" in stdout
    assert "rmapsim: run failed:" in stderr and "wait-for cycle" in stderr
    for name in ("lockdep.txt", "lockdep_stats.txt", "result.json"):
        assert (inputs / "o" / name).exists(), name


# -- interrupts: a real process ----------------------------------------------------------------------------


def _interrupt(args: list[str], cwd: Path, ready: Any, after_s: float) -> subprocess.CompletedProcess[str]:
    """Start ``rmapsim ARGS``, wait until ``ready()`` (the work under way, not Python's start-up),
    then ``after_s`` more, and press Ctrl-C."""
    proc = subprocess.Popen([sys.executable, "-m", "rmapsim", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not ready() and proc.poll() is None:
        assert time.monotonic() < deadline, "the command never got under way"
        time.sleep(0.02)
    time.sleep(after_s)  # not a timing test: wherever it lands, the outcome must be whole
    proc.send_signal(signal.SIGINT)  # a no-op if it already finished
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_ctrl_c_on_a_single_run_exits_130_leaving_nothing(tmp_path: Path) -> None:
    # The event log's temporary file appears once the simulation runs, inside trio.
    done = _interrupt(["run", "fork-heavy", "--design", "anon_vma", "--set", "run.duration_ns=200000000",
                       "--force", "--out", "o", "--log", "log.jsonl"], tmp_path,
                      lambda: any(p.name.startswith(".log.jsonl.") for p in tmp_path.iterdir()), 0.5)
    assert done.returncode == 130, done.stderr
    assert "rmapsim: interrupted" in done.stderr and "run failed" not in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "log.jsonl").exists()
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_rendering_leaves_the_old_report_set_whole(tmp_path: Path) -> None:
    code, _, stderr = 0, "", ""
    with contextlib.chdir(tmp_path):
        (tmp_path / "tiny.toml").write_text(TINY)
        code, _, stderr = cli(["run", "tiny.toml", "--out", "o", "--quiet"])
    assert code in (0, 1), stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").rglob("*") if p.is_file()}
    for after_s in (0.0, 1.0):  # as the reports start to render aside, and while they do
        # Pressed as rendering starts it lands before the reports are done (130); a second later,
        # either way, or after the command returned, as the interpreter shuts down (Python's SIGINT
        # handler is gone by then: the process dies of the signal, with its work done).  On a loaded
        # machine this process can be kept off its CPU past the whole render even at 0 s, so that case
        # retries until one press lands mid-render; every attempt must leave the set whole.
        codes: list[int] = []
        for _attempt in range(5 if after_s == 0.0 else 1):
            done = _interrupt(["report", "o"], tmp_path,
                              lambda: any(p.name.startswith(".rmapsim-report-") for p in (tmp_path / "o").iterdir()),
                              after_s)
            codes.append(done.returncode)
            assert done.returncode in (0, 130, -signal.SIGINT), done.stderr
            assert "Traceback" not in done.stderr
            now = {p.name: p.read_bytes() for p in (tmp_path / "o").rglob("*") if p.is_file()}
            assert now == before  # re-rendering gives the same bytes: whole, or not started
            assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]
            if done.returncode == 130:
                break
        if after_s == 0.0:
            assert 130 in codes, codes


def test_readme_exit_status_paragraph_says_what_these_tests_check() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    paragraph = readme[readme.index("Exit status:"):]
    paragraph = paragraph[: paragraph.index("\n\n")]
    for words in ("0 success", "1 a finding", "the finding first", "2 bad input", "file (or flag)", "line",
                  "key path", "TOML's spelling", "allowed", "no traceback", "before any simulation starts",
                  "nothing is written", "130 interrupted", "tests/cli/test_every_input.py",
                  f"{len(CASES)} malformed inputs", "120 Hypothesis-generated"):
        assert words in paragraph, words
    assert FUZZ.max_examples * 4 == 120  # four fuzzing tests below
