"""One small adapter between the simulator and HdrHistogram: integer ns in, nothing dropped.

``hdrh.HdrHistogram.record_value`` is pure Python (~0.8 µs) and silently drops values outside
its trackable range (it returns False).  The simulator records into a plain ``Counter`` on the
hot path and folds it into an HdrHistogram only when a result is taken; values outside
``[0, highest_ns]`` are counted in ``overflow`` and reported, never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["HIGHEST_NS", "LatencyHistogram"]

HIGHEST_NS = 3_600_000_000_000  # one hour of virtual time
SIGNIFICANT_FIGURES = 3


class LatencyHistogram:
    __slots__ = ("_counts", "count", "highest_ns", "max_ns", "min_ns", "overflow", "total_ns")

    def __init__(self, highest_ns: int = HIGHEST_NS) -> None:
        self.highest_ns = highest_ns
        self._counts: Counter[int] = Counter()
        self.count = 0
        self.total_ns = 0
        self.min_ns = 0
        self.max_ns = 0
        self.overflow = 0

    def record(self, ns: int) -> None:
        if ns < 0 or ns > self.highest_ns:
            self.overflow += 1
            return
        if not self.count or ns < self.min_ns:
            self.min_ns = ns
        if ns > self.max_ns:
            self.max_ns = ns
        self.count += 1
        self.total_ns += ns
        self._counts[ns] += 1

    def merge(self, other: LatencyHistogram) -> None:
        if other.count:
            if not self.count or other.min_ns < self.min_ns:
                self.min_ns = other.min_ns
            self.max_ns = max(self.max_ns, other.max_ns)
        self.count += other.count
        self.total_ns += other.total_ns
        self.overflow += other.overflow
        self._counts.update(other._counts)

    def to_hdr(self) -> HdrHistogram:
        # lowest trackable 1 ns; a recorded 0 lands in bucket 0 exactly.
        hist = HdrHistogram(1, self.highest_ns, SIGNIFICANT_FIGURES)
        for value in sorted(self._counts):
            hist.record_value(value, self._counts[value])
        return hist

    def percentiles(self, ps: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)) -> dict[str, int]:
        """Exact percentiles (nearest rank) from the raw counts, plus HDR-independent max."""
        out: dict[str, int] = {}
        if not self.count:
            return {f"p{p:g}": 0 for p in ps}
        values = sorted(self._counts)
        for p in ps:
            rank = max(1, -(-int(p * self.count * 1000) // 100_000))  # ceil(p/100 * count)
            seen = 0
            for v in values:
                seen += self._counts[v]
                if seen >= rank:
                    out[f"p{p:g}"] = v
                    break
        return out

    def encode(self) -> str:
        """HdrHistogram's standard compressed base64 form (HISTFORMAT V2)."""
        blob: Any = self.to_hdr().encode()
        return blob.decode() if isinstance(blob, bytes) else str(blob)

    def summary(self) -> dict[str, int]:
        return {"count": self.count, "min_ns": self.min_ns, "max_ns": self.max_ns,
                "total_ns": self.total_ns, "overflow": self.overflow}
