"""The built-in reverse-map designs.  A new design: one module, one line here."""

from mm import anon_vma, cow_context

__all__ = ["anon_vma", "cow_context"]
