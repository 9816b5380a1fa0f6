"""The designs' events for instruments (concurrency/instrument.py has the engine's).

An :class:`MmInstrument` is attached with ``system.add_instrument(instrument)``: it subscribes to
the engine's hooks it overrides and to these.  ``system.hooks`` is this table; a design calls a
hook only when someone listens (the ``None`` test), so computing its arguments costs nothing
otherwise.

=====================  ====================================================================
hook                   called by, when
=====================  ====================================================================
``on_anon_vma_grow``   ``AnonVmaDesign`` after every anon_vma and AVC allocation (objects
                       only grow there): the live anon_vmas and the VMAs that have one
=====================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from mypy_extensions import mypyc_attr

from concurrency.instrument import HookTable, Instrument

__all__ = ["MmHooks", "MmInstrument"]


# Instruments are written outside the compiled packages (validate's probes, tests, a user's own).
@mypyc_attr(allow_interpreted_subclasses=True)
class MmInstrument(Instrument):
    """An instrument that also hears the designs' events; each is a no-op by default."""

    def on_anon_vma_grow(self, anon_vmas: int, vmas_with_anon_vma: int) -> None:
        """An anon_vma or AVC was allocated: ``anon_vmas`` are live, ``vmas_with_anon_vma`` VMAs
        have one."""


class MmHooks(HookTable):
    """The mm system's table (``system.hooks``): the hooks :class:`MmInstrument` adds."""

    base = MmInstrument
    hook_names = ("on_anon_vma_grow",)
    on_anon_vma_grow: Callable[[int, int], None] | None
