"""The lockdep-style order checker: rules, report text, the declared rmap order, real lock models."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concurrency.engine import Engine
from concurrency.lockdep import DepEdge, ExpectedOrder, OrderChecker, split_subclass
from concurrency.mutex import Mutex
from concurrency.rwsem import RwSemaphore
from workloads.inputfile import ScenarioError
from workloads.lockorder import load_order_file
from workloads.lockorder import rmap_order as shipped_rmap_order

W, R, RR = 0, 1, 2  # exclusive, non-recursive read (down_read), recursive read (rcu_read_lock)


def take(c: OrderChecker, tid: int, *locks: tuple[str, int], where: str = "op",
         trylock: bool = False, release: bool = True) -> None:
    """One task takes ``locks`` in order (blocking unless ``trylock``), then drops them."""
    for key, read in locks:
        c.acquire(tid, f"t{tid}", key, read=read, trylock=trylock, where=where, instance=key)
    if release:
        for key, _ in reversed(locks):
            c.release(tid, key, instance=key)


def kinds(c: OrderChecker) -> list[str]:
    return [f.kind for f in c.findings]


# -- cycles -------------------------------------------------------------------------------------


AB_BA_REPORT = """\
======================================================
WARNING: possible circular locking dependency detected
------------------------------------------------------
munmap/1 is trying to acquire lock:
 (A){+.+.}, at: munmap

but task is already holding lock:
 (B){+.+.}, at: munmap

which lock already depends on the new lock.


the existing dependency chain (in reverse order) is:

-> #1 (B){+.+.}:
       fork

-> #0 (A){+.+.}:
       munmap

other info that might help us debug this:

 Possible unsafe locking scenario:

       CPU0                    CPU1
       ----                    ----
  lock(B);
                               lock(A);
                               lock(B);
  lock(A);

 *** DEADLOCK ***

1 lock held by munmap/1:
 #0:  (B){+.+.}, at: munmap
"""


def test_ab_ba_report_text_is_lockdeps() -> None:
    c = OrderChecker()
    c.acquire(0, "fork", "A", read=W, trylock=False, where="fork", instance="a")
    c.acquire(0, "fork", "B", read=W, trylock=False, where="fork", instance="b")
    c.release(0, "B", instance="b")
    c.release(0, "A", instance="a")
    c.acquire(1, "munmap", "B", read=W, trylock=False, where="munmap", instance="b")
    c.acquire(1, "munmap", "A", read=W, trylock=False, where="munmap", instance="a")
    assert kinds(c) == ["circular"]
    assert c.findings[0].render() == AB_BA_REPORT
    assert c.findings[0].classes == ("A", "B")


def test_ab_ba_reported_once_whichever_side_comes_second() -> None:
    c = OrderChecker()
    take(c, 0, ("A", W), ("B", W))
    take(c, 1, ("B", W), ("A", W))
    take(c, 2, ("B", W), ("A", W))  # B -(EN)-> A is already recorded: not searched again
    assert c.findings[0].hits == 1
    take(c, 3, ("B", R), ("A", W))  # new type B -(SN)-> A: searched, the same cycle
    take(c, 4, ("A", R), ("B", W))  # new type A -(SN)-> B: found from the other side
    assert kinds(c) == ["circular"]
    assert c.findings[0].classes == ("A", "B")
    assert c.findings[0].hits == 3


def test_three_lock_chain_names_the_chain() -> None:
    c = OrderChecker()
    take(c, 0, ("A", W), ("B", W), where="fault")
    take(c, 1, ("B", W), ("C", W), where="reclaim")
    take(c, 2, ("C", W), ("A", W), where="exit")
    assert kinds(c) == ["circular"]
    text = c.findings[0].render()
    assert ("-> #2 (C){+.+.}:\n       reclaim\n\n"
            "-> #1 (B){+.+.}:\n       fault\n\n"
            "-> #0 (A){+.+.}:\n       exit\n") in text
    assert "Chain exists of:\n  A --> B --> C\n" in text
    cpu1 = " " * 31
    assert f"  lock(C);\n{cpu1}lock(B);\n{cpu1}lock(C);\n  lock(A);\n" in text


def test_consistent_order_reports_nothing() -> None:
    c = OrderChecker()
    take(c, 0, ("A", W), ("B", W), ("C", W))
    take(c, 1, ("A", W), ("C", W))
    take(c, 2, ("B", R), ("C", W))
    assert c.findings == []
    assert c.edges() == [("A", "B"), ("A", "C"), ("B", "C")]


# -- readers -------------------------------------------------------------------------------------


def test_read_then_write_inversion_is_found() -> None:
    # down_read(A); lock(B)   vs   lock(B); down_write(A): B's holder waits for the reader.
    c = OrderChecker()
    take(c, 0, ("A", R), ("B", W))
    take(c, 1, ("B", W), ("A", W))
    assert kinds(c) == ["circular"]
    assert "  lock(B);\n" in c.findings[0].render()


def test_scenario_prints_rlock_for_readers() -> None:
    # lock(A); down_read(B)  vs  down_read(B)... : both sides shared on the acquiring end.
    c = OrderChecker()
    take(c, 0, ("A", W), ("B", R))
    take(c, 1, ("B", R), ("A", R))
    assert kinds(c) == ["circular"]
    text = c.findings[0].render()
    assert "  rlock(B);\n" in text and "  rlock(A);\n" in text


def test_non_recursive_readers_abba_is_found() -> None:
    # read=1 readers block behind a waiting writer, so r-r ABBA can deadlock.
    c = OrderChecker()
    take(c, 0, ("A", R), ("B", R))
    take(c, 1, ("B", R), ("A", R))
    assert kinds(c) == ["circular"]


def test_recursive_readers_both_sides_not_reported() -> None:
    c = OrderChecker()
    take(c, 0, ("A", RR), ("B", RR))
    take(c, 1, ("B", RR), ("A", RR))
    assert c.findings == []
    rec: dict[str, Any] = c.to_dict()  # JSON: read without narrowing
    assert rec["edges"][0]["types"] == ["SR"]


def test_recursive_reader_in_the_middle_is_not_a_strong_path() -> None:
    # write(A) -(ER)-> rcu(C) -(SN)-> write(B), then B -> A: C is never waited on between them
    # through the path, but A -> B is a direct dependency here, so the real AB-BA is found.
    c = OrderChecker()
    take(c, 0, ("A", W), ("C", RR), ("B", W))
    take(c, 1, ("B", W), ("A", W))
    assert kinds(c) == ["circular"]
    assert c.findings[0].classes == ("A", "B")


def test_weak_path_to_a_class_does_not_hide_a_strong_one() -> None:
    # X -(ER)-> C is found first from X; X -(EN)-> D -(EN)-> C -(SN)-> T is strong.  lockdep's
    # __bfs marks C visited at the first, weak, arrival; this search still finds the cycle.
    c = OrderChecker()
    take(c, 0, ("X", W), ("C", RR))
    take(c, 1, ("X", W), ("D", W))
    take(c, 2, ("D", W), ("C", R))
    take(c, 3, ("C", R), ("T", W))
    take(c, 4, ("T", W), ("X", W))
    assert kinds(c) == ["circular"]
    assert c.findings[0].classes == ("C", "T", "X", "D")


# -- trylocks, recursion, nesting ------------------------------------------------------------------


def test_trylock_adds_no_edge_so_inversion_is_not_reported() -> None:
    c = OrderChecker()
    c.acquire(0, "t0", "A", read=W, trylock=False, where="walk", instance="A")
    c.acquire(0, "t0", "B", read=R, trylock=True, where="walk", instance="B")
    assert c.held(0) == ["A", "B"]
    c.release(0, "B", instance="B")
    c.release(0, "A", instance="A")
    take(c, 1, ("B", W), ("A", W))
    assert c.findings == []
    assert c.edges() == [("B", "A")]


def test_trylocked_lock_still_orders_what_follows() -> None:
    c = OrderChecker()
    c.acquire(0, "t0", "T", read=W, trylock=True, where="walk", instance="T")
    c.acquire(0, "t0", "B", read=W, trylock=False, where="walk", instance="B")
    assert c.edges() == [("T", "B")]


def test_subclass_nesting_is_not_recursion() -> None:
    c = OrderChecker()
    take(c, 0, ("mm->mmap_lock", W), ("mm->mmap_lock/1", W), where="fork")
    assert c.findings == []
    assert c.edges() == [("mm->mmap_lock", "mm->mmap_lock/1")]


def test_same_class_twice_is_recursive_locking() -> None:
    c = OrderChecker()
    take(c, 0, ("ptl", W), ("ptl", W), where="copy_pte_range")
    assert kinds(c) == ["recursive"]
    assert c.findings[0].render() == """\
============================================
WARNING: possible recursive locking detected
--------------------------------------------
t0/0 is trying to acquire lock:
 (ptl){+.+.}, at: copy_pte_range

but task is already holding lock:
 (ptl){+.+.}, at: copy_pte_range

other info that might help us debug this:
 Possible unsafe locking scenario:

       CPU0
       ----
  lock(ptl);
  lock(ptl);

 *** DEADLOCK ***

 May be due to missing lock nesting notation

1 lock held by t0/0:
 #0:  (ptl){+.+.}, at: copy_pte_range
"""


def test_read_recursion_rules() -> None:
    c = OrderChecker()
    take(c, 0, ("rcu_read_lock", RR), ("rcu_read_lock", RR))  # nested rcu_read_lock: fine
    take(c, 1, ("A", R), ("A", RR))  # recursive read after a read: fine
    assert c.findings == []
    take(c, 2, ("A", R), ("A", R))  # down_read twice: a queued writer deadlocks it
    assert kinds(c) == ["recursive"]


def test_trylock_of_held_class_is_not_checked() -> None:
    c = OrderChecker()
    take(c, 0, ("A", W))
    c.acquire(0, "t0", "A", read=W, trylock=False, where="op", instance="a1")
    c.acquire(0, "t0", "A", read=W, trylock=True, where="op", instance="a2")
    assert c.findings == []


# -- unlock balance --------------------------------------------------------------------------------


def test_bad_unlock_balance_is_a_finding_not_a_crash() -> None:
    c = OrderChecker()
    c.acquire(3, "kswapd", "A", read=W, trylock=False, where="reclaim", instance="a")
    c.release(3, "B", instance="b", where="reclaim")
    c.release(3, "A", instance="a")
    c.release(3, "A", instance="a")  # the task held it once; second release is unbalanced
    assert kinds(c) == ["bad_unlock", "bad_unlock"]
    assert c.findings[0].render() == """\
=====================================
WARNING: bad unlock balance detected!
-------------------------------------
kswapd/3 is trying to release lock (B) at:
reclaim
but there are no more locks to release!

other info that might help us debug this:
1 lock held by kswapd/3:
 #0:  (A){+.+.}, at: reclaim
"""
    assert c.findings[1].render().splitlines()[-1] == "no locks held by kswapd/3."


def test_release_by_another_task_is_unbalanced() -> None:
    c = OrderChecker()
    take(c, 0, ("A", W), release=False)
    c.release(1, "A", instance="A", task_name="other", where="exit")
    assert kinds(c) == ["bad_unlock"]
    assert c.held(0) == ["A"]


def test_out_of_order_release_keeps_the_rest() -> None:
    c = OrderChecker()
    take(c, 0, ("A", W), ("B", W), ("C", W), release=False)
    c.release(0, "B", instance="B")
    assert c.held(0) == ["A", "C"]
    assert c.findings == []


# -- records -------------------------------------------------------------------------------------


def test_to_dict_counts_edges_and_findings() -> None:
    c = OrderChecker(shipped_rmap_order())
    take(c, 0, ("anon_vma->rwsem", W), ("mm->mmap_lock", R), where="bad_walk")
    take(c, 1, ("mm->mmap_lock", R), ("anon_vma->rwsem", W), where="fault")
    rec: dict[str, Any] = c.to_dict()  # JSON: read without narrowing
    assert rec["counts"] == {"acquisitions": 4, "classes": 2, "edges": 2,
                             "circular": 1, "recursive": 0, "bad_unlock": 0}
    assert rec["edges"][0] == {"from": "anon_vma->rwsem", "to": "mm->mmap_lock", "types": ["EN"],
                               "first_where": "bad_walk", "first_task": "t0/0", "count": 1}
    assert [v["held"] for v in rec["order_violations"]] == ["anon_vma->rwsem"]
    assert rec["findings"][0]["report"] == c.findings[0].render()


def test_bad_read_value_rejected() -> None:
    with pytest.raises(ValueError, match="read must be"):
        OrderChecker().acquire(0, "t", "A", read=3, trylock=False, where="op", instance="a")


def test_split_subclass() -> None:
    assert split_subclass("mm->mmap_lock/1") == ("mm->mmap_lock", 1)
    assert split_subclass("ptl") == ("ptl", 0)
    assert split_subclass("a/b") == ("a/b", 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=4, unique=True),
                min_size=1, max_size=8))
def test_writer_findings_iff_dependency_graph_has_a_cycle(seqs: list[list[str]]) -> None:
    """Writers only, each task taking its locks in turn: a cycle among the held->new pairs is
    exactly when the checker reports one (an independent DFS decides)."""
    c = OrderChecker()
    graph: dict[str, set[str]] = {}
    for tid, seq in enumerate(seqs):
        take(c, tid, *((k, W) for k in seq))
        for i, a in enumerate(seq):
            for b in seq[i + 1:]:
                graph.setdefault(a, set()).add(b)

    def cyclic() -> bool:
        state: dict[str, int] = {}

        def visit(n: str) -> bool:
            state[n] = 1
            for m in graph.get(n, ()):
                if state.get(m) == 1 or (m not in state and visit(m)):
                    return True
            state[n] = 2
            return False

        return any(n not in state and visit(n) for n in list(graph))

    assert (kinds(c).count("circular") > 0) == cyclic()
    assert c.edges() == sorted((a, b) for a, bs in graph.items() for b in bs)


# -- the declared rmap order -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rmap_order() -> ExpectedOrder:
    return shipped_rmap_order()


def test_rmap_order_flags_anon_vma_then_mmap_lock(rmap_order: ExpectedOrder) -> None:
    (v,) = rmap_order.check([("anon_vma->rwsem", "mm->mmap_lock")])
    assert (v.held, v.acquired) == ("anon_vma->rwsem", "mm->mmap_lock")
    assert v.declared[0] == "mm->mmap_lock" and v.declared[-1] == "anon_vma->rwsem"
    assert "mm->mmap_lock acquired while holding anon_vma->rwsem" in v.render()
    assert rmap_order.check([("mm->mmap_lock", "anon_vma->rwsem")]) == []


def test_rmap_order_levels(rmap_order: ExpectedOrder) -> None:
    chain = ["inode->i_rwsem", "mm->mmap_lock", "mapping->invalidate_lock", "folio_lock",
             "hugetlbfs_i_mmap_rwsem_key", "vma_lock", "mapping->i_mmap_rwsem", "anon_vma->rwsem",
             "ptl", "swap_lock", "mapping->private_lock", "i_pages", "lruvec->lru_lock"]
    for outer, inner in itertools.pairwise(chain):
        assert rmap_order.is_outer(outer, inner), (outer, inner)
        assert not rmap_order.is_outer(inner, outer)
    same_level = ["mm->page_table_lock", "ptl", "pmd_lock"]
    assert not any(rmap_order.is_outer(a, b) for a in same_level for b in same_level)
    assert rmap_order.is_outer("swap_lock", "mmlist_lock")
    assert not rmap_order.is_outer("mmlist_lock", "i_pages")
    assert not rmap_order.is_outer("i_pages", "mmlist_lock")


def test_rmap_order_subclasses_and_unknown_classes(rmap_order: ExpectedOrder) -> None:
    assert rmap_order.check([("ptl", "ptl/1"), ("mm->mmap_lock", "mm->mmap_lock/1")]) == []
    assert rmap_order.check([("rcu_read_lock", "anon_vma->rwsem"), ("X", "mm->mmap_lock")]) == []
    (v,) = rmap_order.check([("ptl/1", "mm->mmap_lock"), ("ptl", "mm->mmap_lock")])
    assert v.held == "ptl"


def test_rmap_order_cow_context_placement(rmap_order: ExpectedOrder) -> None:
    assert rmap_order.check([("mm->mmap_lock", "cow_context->lock"), ("vma_lock", "cow_context->lock"),
                             ("ptl", "cow_context->lock"), ("folio_lock", "cow_context->rwsem"),
                             ("cow_context->rwsem", "ptl")]) == []
    bad = rmap_order.check([("cow_context->lock", "ptl"), ("cow_context->lock", "anon_vma->rwsem"),
                            ("cow_context->rwsem", "folio_lock")])
    assert [(v.held, v.acquired) for v in bad] == [("cow_context->lock", "anon_vma->rwsem"),
                                                    ("cow_context->lock", "ptl"),
                                                    ("cow_context->rwsem", "folio_lock")]


def test_vma_lock_binds_only_its_writer(rmap_order: ExpectedOrder) -> None:
    # A fault holding the per-VMA read lock takes the folio lock: not vma_start_write's order.
    assert rmap_order.check([DepEdge("vma_lock", "folio_lock", ((R, W),))]) == []
    assert len(rmap_order.check([DepEdge("vma_lock", "folio_lock", ((R, W), (W, W)))])) == 1
    assert len(rmap_order.check([("vma_lock", "folio_lock")])) == 1  # modes unknown: exclusive


def test_checker_edges_feed_the_order_check(rmap_order: ExpectedOrder) -> None:
    c = OrderChecker(rmap_order)
    c.acquire(0, "t", "vma_lock", read=R, trylock=True, where="fault", instance="v")
    c.acquire(0, "t", "folio_lock", read=W, trylock=False, where="fault", instance="f")
    assert c.edges() == [("vma_lock", "folio_lock")]
    assert c.order_violations() == []


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "order.toml"
    path.write_text(text)
    return path


def test_an_order_file_orders_a_level_and_a_chain(tmp_path: Path) -> None:
    order = load_order_file(_write(tmp_path, """
[[level]]
classes = ["A"]
[[level]]
classes = ["B", "C"]
[[chain]]
levels = [["C"], ["D"]]
"""))
    assert order.is_outer("A", "D") and not order.is_outer("B", "C") and not order.is_outer("B", "D")
    assert [(v.held, v.acquired) for v in order.check([("D", "A"), ("C", "B")])] == [("D", "A")]


@pytest.mark.parametrize(("text", "message"), [
    ('[[level]]\nclasses = ["A"]\n[[level]]\nclasses = ["B"]\n[[chain]]\nlevels = [["B"], ["A"]]\n',
     "cyclic: A > B > A"),
    ('[[level]]\nclasses = ["A"]\nbogus = 1\n', r"level\[0\]\.bogus: unknown key"),
    ('[[level]]\nclasses = []\n', r"level\[0\].classes: expected a non-empty list"),
    ('[[level]]\nclasses = ["A"]\nwrite_only = ["B"]\n', "must name classes of this level"),
    ("colour = 1\n", "colour: unknown key"),
    ('[[level]]\nclasses = ["A"]\n[[level]]\nclasses = ["A"]\n', "names 'A' twice"),
])
def test_order_file_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ScenarioError, match=message) as info:
        load_order_file(path)
    assert str(path) in str(info.value)


# -- through the real lock models ------------------------------------------------------------------


def test_mutex_inversion_found_without_a_real_deadlock() -> None:
    """Two tasks take A,B and B,A far apart in time: the run completes, lockdep still objects."""
    engine = Engine(2)
    engine.add_instrument(OrderChecker())
    a = Mutex(engine, "A")
    b = Mutex(engine, "B")

    async def first() -> None:
        task = engine.current
        assert task is not None
        task.op = "fork"
        await a.lock()
        await b.lock()
        await engine.delay(100)
        b.unlock()
        a.unlock()

    async def second() -> None:
        task = engine.current
        assert task is not None
        await engine.delay(10_000)  # long after the first task is done: no overlap at all
        task.op = "munmap"
        await b.lock()
        await a.lock()
        a.unlock()
        b.unlock()

    engine.spawn("first", first)
    engine.spawn("second", second)
    outcome = engine.run()
    assert outcome.reason == "completed"
    (checker,) = [i for i in engine.hooks.instruments if isinstance(i, OrderChecker)]
    assert kinds(checker) == ["circular"]
    text = checker.findings[0].render()
    assert text.splitlines()[3] == "second/1 is trying to acquire lock:"
    assert "-> #1 (B){+.+.}:\n       fork\n" in text
    assert checker.edges() == [("A", "B"), ("B", "A")]
    assert checker.held(0) == [] and checker.held(1) == []


def test_rwsem_downgrade_makes_the_held_entry_a_reader() -> None:
    """down_write(A); downgrade_write(A); lock(B) records A -(SN)-> B, not -(EN)->; so a
    later B -> down_read(A) is still a (non-recursive reader) inversion."""
    engine = Engine(1)
    checker = engine.add_instrument(OrderChecker())
    a = RwSemaphore(engine, "A")
    b = Mutex(engine, "B")

    async def body() -> None:
        await a.down_write()
        a.downgrade_write()
        await b.lock()
        b.unlock()
        a.up_read()
        await b.lock()
        await a.down_read()
        a.up_read()
        b.unlock()

    engine.spawn("t", body)
    assert engine.run().reason == "completed"
    rec: dict[str, Any] = checker.to_dict()  # JSON: read without narrowing
    assert [e["types"] for e in rec["edges"]] == [["SN"], ["EN"]]
    assert kinds(checker) == ["circular"]
    assert checker.held(0) == []


def test_downgrade_of_a_lock_not_held_is_unbalanced() -> None:
    c = OrderChecker()
    c.downgrade(0, "A", instance="A", task_name="t", where="mremap")
    assert kinds(c) == ["bad_unlock"]
