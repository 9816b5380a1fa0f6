"""The shipped mm/rmap.c lock order (``mm/rmap_lock_order.toml``), loaded here and passed in.

The order checker (concurrency/lockdep.py) knows no file of mm's: whoever checks a run against
the mm/rmap.c header order loads it with :func:`rmap_order` and hands the ``ExpectedOrder`` to
``OrderChecker``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from typing import Final

from concurrency.lockdep import ExpectedOrder, LineOf

__all__ = ["RMAP_ORDER_FILE", "rmap_order", "rmap_order_text"]

RMAP_ORDER_FILE: Final = "mm/rmap_lock_order.toml"


def rmap_order_text() -> str:
    """The text of the shipped order file."""
    return files("mm").joinpath("rmap_lock_order.toml").read_text(encoding="utf-8")


def rmap_order(*, line_of: Callable[[str], LineOf] | None = None) -> ExpectedOrder:
    """The shipped ``mm/rmap.c`` header order; ``line_of`` makes a key-path locator from the file's
    text (so declarations carry their line numbers)."""
    text = rmap_order_text()
    return ExpectedOrder.from_text(text, origin=RMAP_ORDER_FILE, line_of=line_of(text) if line_of else None)
