"""Lock-order hypotheses as a workflow (issue 17): user order files, the emitted order, merging,
the /proc/lockdep listing and the dependency graph, through the checker and real runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from concurrency.lockdep import OrderChecker
from reports.lockgraph import (
    find_dot,
    lockdep_listing,
    lockdep_stats_text,
    lockgraph_dot,
    order_section,
    order_verdict,
    render_svg,
    write_lockdep_reports,
)
from tests.reports.tiny import whole_run_phases
from workloads.lockorder import emit_order, load_order_file, merge_steps, observed_steps, order_steps, rmap_order
from workloads.record import RECORD_SCHEMA, RESULTS_SCHEMA
from workloads.scenario import ScenarioError, load_scenario

W, R = 0, 1


def take(c: OrderChecker, tid: int, *locks: tuple[str, int], where: str = "op") -> None:
    for key, read in locks:
        c.acquire(tid, f"t{tid}", key, read=read, trylock=False, where=where, instance=key)
    for key, _ in reversed(locks):
        c.release(tid, key, instance=key)


def record(c: OrderChecker, design: str = "d", scenario: str = "s") -> dict[str, Any]:
    """A result record carrying what the runner records of the checker."""
    violations = c.order_violations()
    lockdep: dict[str, Any] = {"findings": [f.render() for f in c.findings], "edges": [list(e) for e in c.edges()],
                               "order_violations": [v.render() for v in violations], **c.graph_record()}
    if c.expected is not None:
        lockdep["order"] = {"source": c.expected.source, "file": c.expected.origin,
                            "violations": [v.to_dict() for v in violations],
                            "write_only": sorted(c.expected.write_only)}
    return {"schema": RECORD_SCHEMA, "scenario": scenario, "design": design, "switches": {},
            "params": {"seed": 1, "cpus": 2},
            "outcome": {"reason": "completed", "end_ns": 1000, "events": 0, "workload_start_ns": 0,
                        "preemptions_injected": []},
            "operations": {}, "throughput": {}, "total_ops": 0, "locks": [], "lock_instances": [], "walks": {},
            "cpu_time": {"running": 0, "spinning": 0, "sleeping": 0, "idle": 0}, "context_switches": 0,
            "phases": whole_run_phases(1000, {"running": 0, "spinning": 0, "sleeping": 0, "idle": 0}, []),
            "migrations": 0, "memory": {}, "counters": {}, "design_stats": {},
            "invariants": {"passed": True, "violations": [], "corruption": [], "misses": []},
            "lockdep": lockdep, "rcu": {}}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


HYPOTHESIS = """\
source = "hypothesis"

[[level]]
classes = ["mm->mmap_lock"]

[[level]]
classes = ["ctx"]

[[level]]
classes = ["folio_lock"]
"""


def test_a_user_order_the_run_contradicts_names_both_declarations(tmp_path: Path) -> None:
    order = load_order_file(write(tmp_path, "hyp.toml", HYPOTHESIS))
    c = OrderChecker(order)
    take(c, 3, ("mm->mmap_lock", R), ("folio_lock", W), ("ctx", R), where="try_to_unmap")
    (v,) = c.order_violations()
    assert (v.held, v.acquired) == ("folio_lock", "ctx")
    assert v.acquired_at == f"{tmp_path / 'hyp.toml'}:7" and v.held_at == f"{tmp_path / 'hyp.toml'}:10"
    assert (v.task, v.op, v.edge) == ("t3/3", "try_to_unmap", ("folio_lock", "ctx"))
    text = v.render()
    assert text.splitlines()[0] == ("lock order violation: ctx acquired while holding folio_lock, but hypothesis "
                                    "orders ctx > folio_lock (outermost first)")
    assert f"declared: ctx at {tmp_path / 'hyp.toml'}:7, folio_lock at {tmp_path / 'hyp.toml'}:10" in text
    assert "t3/3 took folio_lock -> ctx in try_to_unmap" in text
    assert "#0: (mm->mmap_lock){.+.+} (read), at: try_to_unmap" in text
    assert "#2: (ctx){.+.+} (read), at: try_to_unmap" in text


def test_the_emitted_order_fed_back_yields_no_violation(tmp_path: Path) -> None:
    rmap = rmap_order()
    c = OrderChecker(rmap)
    take(c, 0, ("mm->mmap_lock", W), ("mm->mmap_lock/1", W), ("vma_lock", W), ("anon_vma->rwsem", W),
         ("ptl", W), ("ptl/1", W), where="fork")
    take(c, 1, ("vma_lock", R), ("folio_lock", W), ("ptl", W), where="fault")  # a per-VMA reader
    take(c, 2, ("A", W), ("B", W), where="x")
    take(c, 2, ("B", W), ("A", W), where="y")  # a cycle: left out of the emitted order
    rec = record(c)
    emitted = emit_order(observed_steps([rec]), source="observed", write_only=rmap.write_only)
    assert [c.classes for c in emitted.conflicts] == [("A", "B")]
    assert ("vma_lock", "folio_lock") not in emitted.kept  # vma_lock read-held only: binds nothing
    assert ("mm->mmap_lock", "anon_vma->rwsem") in emitted.implied  # through vma_lock
    path = write(tmp_path, "observed.toml", emitted.text)
    order = load_order_file(path)
    assert order.write_only == {"vma_lock"}
    again = OrderChecker(order)
    for tid, locks, where in ((0, (("mm->mmap_lock", W), ("vma_lock", W), ("anon_vma->rwsem", W), ("ptl", W)), "f"),
                              (1, (("vma_lock", R), ("folio_lock", W), ("ptl", W)), "g")):
        take(again, tid, *locks, where=where)
    assert again.order_violations() == []
    assert order.is_outer("mm->mmap_lock", "ptl")  # the reduction keeps the transitive order
    # The levels: the longest path of steps leading to a class.
    assert emitted.levels == [["A", "B", "folio_lock", "mm->mmap_lock"], ["vma_lock"], ["anon_vma->rwsem"], ["ptl"]]
    assert emitted.kept == [("anon_vma->rwsem", "ptl"), ("folio_lock", "ptl"), ("mm->mmap_lock", "vma_lock"),
                            ("vma_lock", "anon_vma->rwsem")]
    assert 'name = "mm->mmap_lock > vma_lock"\nlevels = [["mm->mmap_lock"], ["vma_lock"]]\n' \
           'write_only = ["vma_lock"]\ncount = 2\ntaken = {"fork" = 2}\n' in emitted.text
    assert "# implied: mm->mmap_lock > ptl (through other steps), taken 4 times: fork 4" in emitted.text


def test_merging_reports_conflicts_with_both_declarations(tmp_path: Path) -> None:
    a = load_order_file(write(tmp_path, "a.toml", '[[chain]]\nlevels = [["X"], ["Y"]]\n'))
    b = load_order_file(write(tmp_path, "b.toml", '[[level]]\nclasses = ["Y"]\n\n[[level]]\nclasses = ["X", "Z"]\n'))
    merged = emit_order(merge_steps([order_steps(a), order_steps(b)]), source="merged")
    (conflict,) = merged.conflicts
    text = conflict.render()
    assert f"X > Y ({tmp_path / 'a.toml'}:2)" in text and f"Y > X ({tmp_path / 'b.toml'}:5)" in text
    assert merged.kept == [("Y", "Z")]
    load_order_file(write(tmp_path, "m.toml", merged.text))  # still a valid order file


def test_a_hand_made_cycle_shows_in_the_listing_and_the_graph(tmp_path: Path) -> None:
    c = OrderChecker(rmap_order())
    take(c, 0, ("mm->mmap_lock", W), ("mm->page_table_lock", W), where="fault")
    take(c, 1, ("mm->page_table_lock", W), ("mm->mmap_lock", R), where="bad")
    rec = record(c, "anon_vma")
    assert rec["lockdep"]["cycles"] == [["mm->mmap_lock", "mm->page_table_lock"]]
    results = {"schema": RESULTS_SCHEMA, "scenario": {"name": "s", "description": "", "mirrors": "", "source": ""},
               "runs": [rec]}
    listing = lockdep_listing(results)
    assert "dependency cycle #0: mm->mmap_lock -> mm->page_table_lock -> mm->mmap_lock" in listing
    assert " -> [" in listing and "mm->page_table_lock  -(EN)- x1: fault 1  <== on a dependency cycle" in listing
    assert "mm->mmap_lock  -(EN)- x1: bad 1  <== violates mm/rmap.c" in listing
    assert "OPS:       2 FD:    2 BD:    2 ++++: mm->mmap_lock" in listing
    dot_text = lockgraph_dot(rec)
    assert "CYCLE" in dot_text and "VIOLATION, CYCLE" in dot_text and "#6a1b9a" in dot_text
    stats = lockdep_stats_text(results)
    assert " circular dependencies found:             1" in stats
    assert "1 dependency cycle(s)" in order_verdict(rec)
    if find_dot() is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz): the SVG is not drawn")
    svg, why = render_svg(dot_text)
    assert svg is not None and why == ""
    assert b"<svg" in svg and b"#6a1b9a" in svg and b"CYCLE" in svg


def test_without_dot_the_report_says_why_the_graph_is_absent(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import reports.lockgraph
    from reports import render_run

    c = OrderChecker(rmap_order())
    take(c, 0, ("mm->mmap_lock", W), ("ptl", W))
    results = {"schema": RESULTS_SCHEMA, "scenario": {"name": "s", "description": "", "mirrors": "", "source": ""},
               "runs": [record(c, "anon_vma")]}
    (tmp_path / "lockgraph-anon_vma.svg").write_text("stale")
    monkeypatch.setattr(reports.lockgraph, "find_dot", lambda: None)
    graphs = write_lockdep_reports(results, tmp_path, [])
    assert graphs["anon_vma"][0] is None and "dot was not found" in graphs["anon_vma"][1]
    assert not (tmp_path / "lockgraph-anon_vma.svg").exists() and (tmp_path / "lockgraph-anon_vma.dot").exists()
    assert render_svg("digraph { a -> b }", dot=str(tmp_path / "no-such-dot"))[0] is None
    render_run(results, tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "Graphviz&#x27;s dot was not found on PATH" in html and "lockgraph-anon_vma.dot" in html


def test_order_section_puts_the_verdict_beside_the_wait() -> None:
    c = OrderChecker(rmap_order())
    take(c, 0, ("anon_vma->rwsem", W), ("mm->mmap_lock", R))
    rec = record(c, "anon_vma")
    side = dict.fromkeys(("con_bounces", "contentions", "waittime_min_ns", "waittime_max_ns", "waittime_total_ns",
                          "waittime_spin_ns", "waittime_sleep_ns", "acq_bounces", "acquisitions", "holdtime_min_ns",
                          "holdtime_max_ns", "holdtime_total_ns", "wait_overflow", "hold_overflow"), 0)
    side.update(contentions=3, waittime_total_ns=5000)
    rec["locks"] = [{"name": "anon_vma->rwsem", "kind": "rwsem", "rw": False, "instances": 1, "events": {},
                     "write": {**side, "contention_points": {}, "contending_points": {}, "wait_hist": "",
                               "hold_hist": ""}}]
    rec["params"]["cpus"] = 1
    text = order_section([rec])
    row = next(line for line in text.splitlines() if line.strip().startswith("anon_vma"))
    assert "1 violation(s) of mm/rmap_lock_order.toml" in row and "500.00%" in row
    assert "anon_vma->rwsem 5.00 us" in row


# -- order files: validation -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "where"), [
    ('[[level]]\nclasses = ["A"]\n\n[[level]]\nclasses = ["B"]\nbogus = 1\n',
     ":6: level[1].bogus: unknown key; allowed: classes, note, write_only"),
    ('[[level]]\nclases = ["A"]\n', ":2: level[0].clases: unknown key (did you mean 'classes'?); allowed: classes, "),
    ('[[level]]\nclasses = ["A"]\n[[level]]\nclasses = "B"\n', ':4: level[1].classes: "B" is not a list'),
    ('[[level]]\nclasses = ["A", 3]\n', ":2: level[0].classes: expected a non-empty list of class names"),
    ('[[chain]]\nlevels = [["A"], ["B"]]\ncount = -1\n', ":3: chain[0].count: -1 out of range; allowed: 0.."),
    ('[[level]]\nclasses = ["A"]\n[[level]]\nclasses = ["B"]\n[[chain]]\nname = "back"\nlevels = [["B"], ["A"]]\n',
     ":7: chain[0].levels: the declared order is cyclic: A > B > A"),
    ('[[level]]\nclasses = ["A", "B"]\n[[level]]\nclasses = ["A"]\n',
     ":4: level[1].classes: chain 'main' names 'A' twice"),
    ('source = "x"\n[[level]\nclasses = ["A"]\n', ":2: not valid TOML"),
    ('colour = 1\n[[level]]\nclasses = ["A"]\n', ":1: colour: unknown key; allowed: chain, level, source"),
    ('[[chain]]\nlevels = [["A"], ["B"]]\ntaken = {fork = "x"}\n', ":3: chain[0].taken: expected a table"),
    ('source = "nothing"\n', "level: expected at least one [[level]] or [[chain]] table"),
])
def test_bad_order_files_name_file_line_and_key(tmp_path: Path, text: str, where: str) -> None:
    """Order files are checked by the scenario files' machinery (workloads/inputfile.py's
    ``_Checker`` over Param tables): the same ``file:line: key: message; allowed: ...`` errors."""
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ScenarioError) as info:
        load_order_file(path)
    assert str(info.value).startswith(str(path)), str(info.value)
    assert where in str(info.value), str(info.value)


def test_a_scenario_names_an_order_file_relative_to_itself(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    write(tmp_path / "orders", "hyp.toml", HYPOTHESIS)
    body = 'name = "s"\n[run]\ndesigns = ["anon_vma"]\n\n[lockdep]\nexpected_order = "{}"\n'
    sc = load_scenario(write(tmp_path, "s.toml", body.format("orders/hyp.toml")))
    assert sc.expected_order == "orders/hyp.toml" and sc.order_path == str(tmp_path / "orders" / "hyp.toml")
    assert sc.params()["expected_order"] == "orders/hyp.toml"
    with pytest.raises(ScenarioError, match=r's\.toml:6: lockdep\.expected_order: "nope\.toml": no such order file'):
        load_scenario(write(tmp_path, "s.toml", body.format("nope.toml")))
    write(tmp_path / "orders", "bad.toml", '[[level]]\nclasses = []\n')
    with pytest.raises(ScenarioError, match=r"orders/bad\.toml:2: level\[0\]\.classes"):
        load_scenario(write(tmp_path, "s.toml", body.format("orders/bad.toml")))


@pytest.mark.long
def test_a_run_records_the_graph_and_checks_a_user_order(tmp_path: Path) -> None:
    """A short real run against a user order: the record carries the graph, the violation with
    its declarations, and the listing and graph files are written beside it."""
    from workloads.runner import run_scenario

    write(tmp_path, "hyp.toml", '[[level]]\nclasses = ["ptl"]\n\n[[level]]\nclasses = ["mm->mmap_lock"]\n')
    body = ('name = "s"\n[run]\ndesigns = ["anon_vma"]\nduration_ns = 300_000\n[lockdep]\nexpected_order = "hyp.toml"\n'
            '[[process]]\nname = "p"\nregions = [{start = 0, pages = 32}]\n'
            '[[actor]]\nkind = "fork_exit"\nprocess = "p"\nprefork = 1\ninterval_ns = 50_000\n')
    sc = load_scenario(write(tmp_path, "s.toml", body))
    results = run_scenario(sc)
    (run,) = results["runs"]
    lockdep = run["lockdep"]
    assert {"classes", "deps", "cycles", "stats", "order"} <= set(lockdep)
    assert any(d["from"] == "mm->mmap_lock" and d["to"] == "ptl" and d["ops"] for d in lockdep["deps"])
    (v,) = [v for v in lockdep["order"]["violations"] if v["held"] == "mm->mmap_lock" and v["acquired"] == "ptl"]
    assert v["acquired_at"].endswith("hyp.toml:2") and v["held_at"].endswith("hyp.toml:5") and v["stack"]
    assert lockdep["stats"]["lock-classes"] == len(lockdep["classes"])
    from reports import render_run

    render_run(results, tmp_path / "out")
    listing = (tmp_path / "out" / "lockdep.txt").read_text()
    assert listing.startswith("# anon_vma (s, seed 1, 4 CPUs)\nall lock classes:")
    assert "lock-classes:" in (tmp_path / "out" / "lockdep_stats.txt").read_text()
    assert (tmp_path / "out" / "lockgraph-anon_vma.dot").exists()
    assert (tmp_path / "out" / "lockgraph-anon_vma.svg").exists() == (find_dot() is not None)


def test_the_shipped_order_loads_the_same_through_the_file_validator() -> None:
    """The shipped order, loaded from its path as a user's order file and from the installed
    package (what a run checks against), is the same order (records name its declarations)."""
    from mm.lock_order import RMAP_ORDER_FILE
    from workloads.lockorder import rmap_order

    root = Path(__file__).resolve().parent.parent.parent
    mine = load_order_file(root / RMAP_ORDER_FILE)
    shipped = rmap_order()
    assert mine.chains == shipped.chains and mine.steps.keys() == shipped.steps.keys()
    assert mine.write_only == shipped.write_only and mine.chain_info == shipped.chain_info
    assert mine.source == shipped.source
    # where each class is declared: the same lines (the origin is the path each was loaded by)
    assert {k: v.rsplit(":", 1)[1] for k, v in mine.declared_at.items()} == \
        {k: v.rsplit(":", 1)[1] for k, v in shipped.declared_at.items()}
