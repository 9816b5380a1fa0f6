"""``rmapsim lockdep`` as users run it: order files, the emitted order, merging, exit statuses, and
the README's worked example, run as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.cli.test_cli import SMALL, rmapsim

# Every test here starts rmapsim processes: CI runs them (the README's command), the everyday
# suite does not (pyproject.toml addopts).
pytestmark = pytest.mark.long

ROOT = Path(__file__).resolve().parent.parent.parent


def test_a_contradicting_order_file_is_a_violation_naming_both_declarations(tmp_path: Path) -> None:
    order = tmp_path / "hyp.toml"
    order.write_text('source = "ptl first"\n\n[[level]]\nclasses = ["ptl"]\n\n[[level]]\nclasses = ["vma_lock"]\n')
    proc = rmapsim("lockdep", "fork-heavy", *SMALL, "--design", "anon_vma", "--order", str(order),
                   "--out", str(tmp_path / "o"), cwd=tmp_path, check_status=1)
    assert "lock order violation: vma_lock acquired while holding ptl" not in proc.stdout  # fork: vma_lock first
    assert "lock order violation: ptl acquired while holding vma_lock, but ptl first orders ptl > vma_lock" \
        in proc.stdout
    assert f"declared: ptl at {order}:4, vma_lock at {order}:7" in proc.stdout
    assert re.search(r"took vma_lock -> ptl in (fault|fork); its locks", proc.stdout), proc.stdout
    assert "(vma_lock){++++}" in proc.stdout and "order verdict: 1 violation(s) of ptl first" in proc.stdout
    out = tmp_path / "o"
    assert "<== violates ptl first" in (out / "lockdep.txt").read_text()
    assert "declared order violations:               1" in (out / "lockdep_stats.txt").read_text()
    assert (out / "lockgraph-anon_vma.dot").exists() and "report.html" in proc.stdout


def test_emit_order_then_order_finds_nothing_and_merge_reports_conflicts(tmp_path: Path) -> None:
    emitted = tmp_path / "observed.toml"
    proc = rmapsim("lockdep", "fork-heavy", *SMALL, "--emit-order", str(emitted), "--out", str(tmp_path / "a"),
                   cwd=tmp_path)
    assert f"wrote {emitted}:" in proc.stdout
    text = emitted.read_text()
    assert '[[chain]]\nname = "mm->mmap_lock > vma_lock"' in text and "taken = {" in text
    proc = rmapsim("lockdep", "fork-heavy", *SMALL, "--order", str(emitted), "--out", str(tmp_path / "b"),
                   "--json", cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert {d: len(r["order_violations"]) for d, r in report.items()} == {"anon_vma": 0, "cow_context": 0,
                                                                        "anon_vma_lazy": 0}
    assert all(r["order"]["file"] == str(emitted) for r in report.values())
    other = tmp_path / "reverse.toml"
    other.write_text('[[chain]]\nname = "backwards"\nlevels = [["vma_lock"], ["mm->mmap_lock"]]\n')
    proc = rmapsim("lockdep", "--merge", str(emitted), str(other), cwd=tmp_path, check_status=1)
    assert "conflict: mm->mmap_lock, vma_lock are ordered both ways" in proc.stdout
    assert f"vma_lock > mm->mmap_lock ({other}:3)" in proc.stdout
    merged = tmp_path / "merged.toml"
    proc = rmapsim("lockdep", "--merge", str(emitted), "mm/rmap_lock_order.toml", "--emit-order", str(merged),
                   cwd=ROOT)
    assert f"wrote {merged}" in proc.stdout and "conflict" not in proc.stdout
    assert "write_only = [\"vma_lock\"]" in merged.read_text()


def test_bad_order_files_exit_2_with_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[level]]\nclasses = ["A"]\n\n[[level]]\nclasses = ["B"]\nwrite_only = ["C"]\n')
    for args in (("lockdep", "fork-heavy", "--order", str(bad)), ("lockdep", "--merge", str(bad))):
        proc = rmapsim(*args, cwd=tmp_path, check_status=2)
        # the scenario files' message style (workloads/inputfile.py): values as TOML spells them, what is allowed
        assert f'rmapsim: error: {bad}:6: level[1].write_only: ["C"] must name classes of this level; allowed: "B"' \
            in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = rmapsim("lockdep", "fork-heavy", "--order", str(tmp_path / "missing.toml"), cwd=tmp_path, check_status=2)
    assert "missing.toml: no such order file" in proc.stderr
    scen = tmp_path / "s.toml"
    scen.write_text('name = "s"\n[lockdep]\nexpected_order = "bad.toml"\n')
    proc = rmapsim("run", str(scen), cwd=tmp_path, check_status=2)
    assert f"{bad}:6: level[1].write_only" in proc.stderr
    proc = rmapsim("lockdep", cwd=tmp_path, check_status=2)
    assert "name a scenario" in proc.stderr
    proc = rmapsim("lockdep", "fork-heavy", "--design", "cow_context:walk_safety=nope", cwd=tmp_path, check_status=2)
    assert "walk_safety: 'nope' not allowed" in proc.stderr


def _worked_example() -> tuple[str, list[str], list[str]]:
    """The README's worked example: the order file, the commands, the quoted outputs."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Worked example", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, list[str]] = {"toml": [], "sh": [], "": []}
    lang: str | None = None
    body: list[str] = []
    for line in section.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                blocks[lang].append("\n".join(body))
                lang = None
        elif lang is not None:
            body.append(line)
    assert len(blocks["toml"]) == 1 and len(blocks["sh"]) == 4 and len(blocks[""]) == 2, blocks
    return blocks["toml"][0], blocks["sh"], blocks[""]


def test_the_readme_worked_example_runs_as_written(tmp_path: Path) -> None:
    order, commands, (violation, table) = _worked_example()
    (tmp_path / "ctx-order.toml").write_text(order + "\n")
    statuses = (1, 0, 0, 0)
    procs = []
    for command, status in zip(commands, statuses, strict=True):
        argv = shlex.split(command)
        assert argv[0] == "rmapsim"
        procs.append(rmapsim(*argv[1:], cwd=tmp_path, check_status=status))
    assert violation in procs[0].stdout
    assert "wrote observed.toml: 9 classes in 3 level(s)" in procs[1].stdout
    observed = (tmp_path / "observed.toml").read_text()
    assert 'taken = {"try_to_migrate" = 961, "remove_migration_ptes" = 660, "thp_split" = 3}' in observed
    assert "#   1: cow_context->rwsem, mm->page_table_lock, vma_lock\n" in observed
    graph = tmp_path / "hypothesis" / "lockgraph-cow_context_walk_safety_ctx_rwsem.dot"
    assert 'VIOLATION' in graph.read_text()
    assert "<== violates hypothesis" in (tmp_path / "hypothesis" / "lockdep.txt").read_text()
    # The cost table: every row as quoted, up to the lock wait (the verdict and the graph's size).
    printed = {line.split()[0]: line.split()[:8] for line in procs[3].stdout.splitlines() if line.startswith("  ")}
    for line in table.splitlines()[2:]:
        assert printed[line.split()[0]] == line.split()[:8], line
    assert table.splitlines()[0] in procs[3].stdout
