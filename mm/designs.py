"""The built-in reverse-map designs.  A new design: one module, one line here."""

from mm import anon_vma, anon_vma_lazy, cow_context

__all__ = ["anon_vma", "anon_vma_lazy", "cow_context"]
