"""What every resident folio carries (``rmapsim bench memory``): the THP-only fields live on
large folios alone, and a new folio's index shares its PTE key's int where the VMA never moved."""

from __future__ import annotations

import pytest

from concurrency.engine import Engine
from mm.designs import design_class
from mm.memory import handle_mm_fault
from mm.mmap import mmap_region
from mm.system import MmSystem
from mm.types import HPAGE_PMD_NR, Folio, LargeFolio, large_folio
from tests.builds import COMPILED


def _fault_small_and_thp() -> tuple[MmSystem, Folio, Folio]:
    """One order-0 folio at vpn 100,000 and one THP at vpn 0, each faulted in by a write."""
    engine = Engine(1)
    system = MmSystem(engine, design_class("anon_vma"))
    got: dict[str, Folio] = {}

    async def main() -> None:
        mm = await system.new_mm()
        await mmap_region(system, mm, 0, HPAGE_PMD_NR, thp=True)
        await mmap_region(system, mm, 100_000, 100_008)
        await handle_mm_fault(system, mm, 0, True)
        await handle_mm_fault(system, mm, 100_003, True)
        got["thp"] = mm.pmds[0].folio
        got["small"] = mm.ptes[100_003].folio

    engine.spawn("t", main)
    engine.run()
    return system, got["small"], got["thp"]


def test_only_a_large_folio_has_the_thp_fields() -> None:
    """``_entire_mapcount`` lives in a large folio's tail pages: an order-0 folio has none, nor
    the tails a split leaves; ``large_folio`` refuses an order-0 folio rather than guess."""
    _, small, thp = _fault_small_and_thp()
    assert type(small) is Folio and small.order == 0
    assert not hasattr(small, "entire_mapcount") and not hasattr(small, "tails")
    assert isinstance(thp, LargeFolio) and thp.order == 9
    assert large_folio(thp).entire_mapcount == 1 and large_folio(thp).tails is None
    with pytest.raises(TypeError, match="not a large folio"):
        large_folio(small)


def test_a_folio_index_is_linear_page_index_whether_or_not_the_vma_moved() -> None:
    system, small, _ = _fault_small_and_thp()
    assert small.index == 100_003
    mm = system.mms[0]
    vma = mm.find_vma(100_003)
    assert vma is not None and vma.pgoff_of(100_005) == 100_005
    moved = system.new_vma(mm, 300_000, 300_010, pgoff=100_000)  # as after an mremap
    assert moved.pgoff_of(300_007) == 100_007


@pytest.mark.skipif(COMPILED, reason="the compiled build keeps a folio's index as a native int, no object to share")
def test_a_new_folio_index_is_the_int_object_that_keys_its_pte() -> None:
    """Pure Python: one int object, not two equal ones, for the vpn of every resident folio."""
    system, small, _ = _fault_small_and_thp()
    key = next(k for k in system.mms[0].ptes if k == 100_003)
    assert small.index is key
