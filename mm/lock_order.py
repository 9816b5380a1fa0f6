"""The shipped mm/rmap.c lock order (``mm/rmap_lock_order.toml``), shipped here and passed in.

The order checker (concurrency/lockdep.py) knows no file of mm's: whoever checks a run against
the mm/rmap.c header order loads it (``workloads.lockorder.rmap_order``, which checks it as it
checks a user's order file) and hands the ``ExpectedOrder`` to ``OrderChecker``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

__all__ = ["RMAP_ORDER_FILE", "rmap_order_text"]

RMAP_ORDER_FILE: Final = "mm/rmap_lock_order.toml"


def rmap_order_text() -> str:
    """The text of the shipped order file."""
    return files("mm").joinpath("rmap_lock_order.toml").read_text(encoding="utf-8")

