"""One small adapter between the simulator and HdrHistogram: integer ns in, nothing dropped.

``hdrh.HdrHistogram.record_value`` is pure Python (~0.8 µs) and silently drops values outside
its trackable range (it returns False).  The simulator records into a plain dict of exact counts on the
hot path and folds it into an HdrHistogram only when a result is taken; values outside
``[0, highest_ns]`` are counted in ``overflow`` and reported, never dropped silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hdrh.histogram import HdrHistogram

if TYPE_CHECKING:
    from records.result import JsonObject

__all__ = ["HIGHEST_NS", "LatencyHistogram"]

HIGHEST_NS = 3_600_000_000_000  # one hour of virtual time
SIGNIFICANT_FIGURES = 3


class LatencyHistogram:
    """Exact counts of integer-ns values; HDR encoding, min/max/percentiles derived on demand."""

    __slots__ = ("_counts", "highest_ns", "overflow")

    def __init__(self, highest_ns: int = HIGHEST_NS) -> None:
        self.highest_ns = highest_ns
        self._counts: dict[int, int] = {}
        self.overflow = 0

    def record(self, ns: int) -> None:
        # The hot path: one range check and a dict update; everything else is derived later.
        if 0 <= ns <= self.highest_ns:
            counts = self._counts
            counts[ns] = counts.get(ns, 0) + 1
        else:
            self.overflow += 1

    @property
    def count(self) -> int:
        return sum(self._counts.values())

    @property
    def total_ns(self) -> int:
        return sum(v * n for v, n in self._counts.items())

    @property
    def min_ns(self) -> int:
        return min(self._counts) if self._counts else 0

    @property
    def max_ns(self) -> int:
        return max(self._counts) if self._counts else 0

    def merge(self, other: LatencyHistogram) -> None:
        counts = self._counts
        for v, n in other._counts.items():
            counts[v] = counts.get(v, 0) + n
        self.overflow += other.overflow

    def items(self) -> list[tuple[int, int]]:
        """(value, count) pairs in value order."""
        return sorted(self._counts.items())

    def to_hdr(self) -> HdrHistogram:
        # lowest trackable 1 ns; a recorded 0 lands in bucket 0 exactly.
        hist = HdrHistogram(1, self.highest_ns, SIGNIFICANT_FIGURES)
        for value, n in self.items():
            hist.record_value(value, n)
        return hist

    def percentiles(self, ps: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)) -> dict[str, int]:
        """Exact percentiles (nearest rank: the smallest value with at least p% at or below it)."""
        out: dict[str, int] = {}
        items = self.items()
        count = sum(n for _, n in items)
        for p in ps:
            if not count:
                out[f"p{p:g}"] = 0
                continue
            rank = max(1, -(-round(p * count * 1000) // 100_000))  # ceil(p/100 * count), exact
            seen = 0
            for v, n in items:
                seen += n
                if seen >= rank:
                    out[f"p{p:g}"] = v
                    break
        return out

    def encode(self) -> str:
        """HdrHistogram's standard compressed base64 form (HISTFORMAT V2)."""
        blob: object = self.to_hdr().encode()  # hdrh is untyped: bytes (or str)
        return blob.decode() if isinstance(blob, bytes) else str(blob)

    def summary(self) -> JsonObject:
        return {"count": self.count, "min_ns": self.min_ns, "max_ns": self.max_ns,
                "total_ns": self.total_ns, "overflow": self.overflow}
