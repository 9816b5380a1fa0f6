"""reports/compare.py with any number of designs: two give exactly the pairwise verdict, three or
more add a ranking per headline metric and the alternatives compared with each other."""

from __future__ import annotations

import copy
from typing import Any

from reports.common import total_throughput
from reports.compare import compare_text, verdict


def three(tiny: dict[str, Any]) -> dict[str, Any]:
    """The tiny run plus a third design: a copy of the second with half its throughput and twice
    its memory."""
    results = copy.deepcopy(tiny)
    third = copy.deepcopy(results["runs"][1])
    third["design"] = "third_design"
    third["throughput"] = {op: v / 2 for op, v in third["throughput"].items()}
    third["memory"] = {**third.get("memory", {}), "peak_total_bytes": 2 * int(third["memory"]["peak_total_bytes"])}
    results["runs"].append(third)
    return results


def test_two_designs_keep_the_pairwise_verdict(tiny: dict[str, Any]) -> None:
    lines = verdict(tiny)
    assert not any("is better)" in line for line in lines)


def test_three_designs_are_ranked_and_the_alternatives_compared(tiny: dict[str, Any]) -> None:
    results = three(tiny)
    base, second, _third = results["runs"]
    lines = verdict(results)
    ranked = [line for line in lines if "is better)" in line]
    names = [str(r["design"]) for r in results["runs"]]
    assert ranked[0].startswith("total throughput (higher is better): ")
    order = sorted(results["runs"], key=lambda r: -total_throughput(r))
    assert [n for n in ranked[0].split(": ", 1)[1].split(" > ")] == [
        f"{r['design']} {total_throughput(r):,.0f} ops/s" for r in order]
    for line in ranked:
        assert all(name in line for name in names), line
    assert any(line.startswith("peak rmap metadata (lower is better): ") for line in ranked)
    # the two alternatives against each other, not only against the baseline
    assert f"total throughput is 2.0x higher under {second['design']} than under third_design" in "\n".join(lines)
    # the pairwise lines against the baseline are still there, one block per other design
    assert sum(1 for line in lines if line.startswith("total throughput is") and base["design"] in line) == 2
    text = compare_text(results)
    assert "third_design/" in text and text.count("/" + str(base["design"])) >= 2
