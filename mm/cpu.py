"""CPU work in the mm operations and the designs: the one ``spend``.

Below every other mm module (it needs only the engine), so the operations (mm/memory.py, fork,
mmap, vmscan, migrate, huge_memory) and the designs share it without importing one another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from concurrency.engine import Engine

__all__ = ["HasEngine", "spend"]


class HasEngine(Protocol):
    """Whatever carries the run's engine (the ``MmSystem``, a design's view of it)."""

    @property
    def engine(self) -> Engine: ...


async def spend(system: HasEngine, ns: int) -> None:
    """CPU work of ``ns``; zero costs take no event (so a free cost model changes no ordering)."""
    if ns:
        await system.engine.delay(ns)
