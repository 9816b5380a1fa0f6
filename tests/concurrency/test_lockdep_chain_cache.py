"""lockdep's chain cache (``lookup_chain_cache``): a chain validated once is only counted again, and
the checker's every output is what validating every acquisition gives."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from concurrency.lockdep import OrderChecker

CLASSES = ("A", "B", "C", "D")


# One step: (task, action, class, read, where); action 0 acquire, 1 trylock, 2 release, 3 downgrade.
steps = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.sampled_from(CLASSES), st.integers(0, 2),
                           st.sampled_from(("fork", "fault", "exit"))), max_size=80)


def _replay(checker: OrderChecker, program: list[tuple[int, int, str, int, str]]) -> dict[str, Any]:
    held: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for tid, action, key, read, where in program:
        if action in (0, 1):
            instance = f"{key}{len(held[tid])}"  # a new instance each time: recursion is by class
            checker.acquire(tid, f"t{tid}", key, read=read, trylock=action == 1, where=where, instance=instance)
            held[tid].append(instance)
        elif held[tid]:
            # release or downgrade one held lock, not always the last: out-of-order releases
            instance = held[tid][read % len(held[tid])]
            if action == 2:
                held[tid].remove(instance)
                checker.release(tid, instance.rstrip("0123456789"), instance=instance)
            else:
                checker.downgrade(tid, instance.rstrip("0123456789"), instance=instance)
    return {"record": checker.graph_record(), "dict": checker.to_dict(), "held": [checker.held(t) for t in held]}


@settings(max_examples=300, deadline=None)
@given(steps)
def test_the_chain_cache_changes_no_output(program: list[tuple[int, int, str, int, str]]) -> None:
    assert _replay(OrderChecker(), program) == _replay(OrderChecker(chain_cache=False), program)


def test_a_repeated_chain_is_validated_once_and_counted_every_time() -> None:
    checker = OrderChecker()
    for _ in range(5):
        for key in ("A", "B", "C"):
            checker.acquire(1, "t1", key, read=0, trylock=False, where="op", instance=key)
        for key in ("C", "B", "A"):
            checker.release(1, key, instance=key)
    assert len(checker._chain_cache) == 2  # A -> B and A, B -> C, validated the first time only
    graph: dict[str, Any] = checker.graph_record()  # JSON: read without narrowing
    counts = {(d["from"], d["to"]): d["count"] for d in graph["deps"]}
    assert counts == {("A", "B"): 5, ("A", "C"): 5, ("B", "C"): 5}


def test_out_of_order_release_and_downgrade_rebuild_the_chain() -> None:
    # A, B, C, D validated; then B released from the middle (or downgraded) before D: the chain
    # under D is A, C (or A, B-read, C), not the cached A, B, C.
    def program(change: str) -> list[tuple[int, int, str, int, str]]:
        take = [(1, 0, k, 0, "op") for k in "ABCD"]
        drop = [(1, 2, "x", 3, "op"), (1, 2, "x", 2, "op"), (1, 2, "x", 1, "op"), (1, 2, "x", 0, "op")]
        middle = (1, 2, "x", 1, "op") if change == "release" else (1, 3, "x", 1, "op")
        return [*take, *drop, *take[:3], middle, take[3]]

    for change in ("release", "downgrade"):
        assert _replay(OrderChecker(), program(change)) == _replay(OrderChecker(chain_cache=False), program(change))
