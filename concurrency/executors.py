"""Who steps the simulated tasks: the executors by name, and the engine class each is.

``stepper`` is :class:`concurrency.engine.Engine` itself; ``trio`` is
:class:`concurrency.trio_executor.TrioEngine`.  Results are byte-identical either way (the engine's
module docstring says why there are two).  This module sits above both, so the engine never imports
the executor that extends it.
"""

from __future__ import annotations

from typing import Final

from concurrency.engine import Engine
from concurrency.trio_executor import TrioEngine

__all__ = ["EXECUTORS", "engine_class"]

EXECUTORS: Final[dict[str, type[Engine]]] = {"stepper": Engine, "trio": TrioEngine}


def engine_class(executor: str) -> type[Engine]:
    """The engine class that ``executor`` names (both take ``Engine``'s arguments)."""
    cls = EXECUTORS.get(executor)
    if cls is None:
        raise ValueError(f"executor {executor!r}: allowed: {', '.join(EXECUTORS)}")
    return cls
