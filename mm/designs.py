"""The built-in reverse-map designs, by name: the one registry.

A new design is one module subclassing ``mm.rmap_design.RmapDesign`` plus one entry in
``_BUILTIN`` below.  Registration is this explicit table, not an import side effect: whoever
needs a design by name (the scenario loader, the runner, the command line) imports this module.
"""

from __future__ import annotations

from typing import Final

from mm.anon_vma import AnonVmaDesign
from mm.anon_vma_lazy import AnonVmaLazyDesign
from mm.cow_context import CowContextDesign
from mm.rmap_design import RmapDesign

__all__ = ["DESIGNS", "design_class"]

_BUILTIN: Final[tuple[type[RmapDesign], ...]] = (AnonVmaDesign, AnonVmaLazyDesign, CowContextDesign)

DESIGNS: Final[dict[str, type[RmapDesign]]] = {cls.name: cls for cls in _BUILTIN}


def design_class(name: str) -> type[RmapDesign]:
    """The design registered as ``name``; KeyError naming the allowed ones otherwise."""
    cls = DESIGNS.get(name)
    if cls is None:
        raise KeyError(f"unknown design {name!r}; allowed: {', '.join(sorted(DESIGNS))}")
    return cls
