"""One small adapter between the simulator and HdrHistogram: integer ns in, nothing dropped.

``hdrh.HdrHistogram.record_value`` is pure Python (~0.8 µs) and silently drops values outside
its trackable range (it returns False).  The simulator records into a plain dict of counts on the
hot path (exact values for latencies; HdrHistogram's own buckets for lock times) and folds it into
an HdrHistogram only when a result is taken; values outside
``[0, highest_ns]`` are counted in ``overflow`` and reported, never dropped silently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from hdrh.histogram import HdrHistogram

if TYPE_CHECKING:
    from records.result import JsonObject

__all__ = ["HIGHEST_NS", "LatencyHistogram", "LockTimeHistogram", "Tally"]

HIGHEST_NS = 3_600_000_000_000  # one hour of virtual time
SIGNIFICANT_FIGURES = 3
# HdrHistogram at 3 significant figures and a lowest trackable value of 1 counts values below 2048
# exactly and, from there on, each octave [2048 * 2**k, 2048 * 2**(k+1)) in 1024 steps of 2**(k+1)
# (sub_bucket_count 2048; hdrh's _get_bucket_index and _get_sub_bucket_index).
_EXACT_BELOW: Final = 2048
_SUB_BUCKET_BITS: Final = 11


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
        return _nearest_rank(self.items(), ps)

    def encode(self) -> str:
        """HdrHistogram's standard compressed base64 form (HISTFORMAT V2)."""
        return _encode(self.to_hdr())

    def summary(self) -> JsonObject:
        return {"count": self.count, "min_ns": self.min_ns, "max_ns": self.max_ns,
                "total_ns": self.total_ns, "overflow": self.overflow}


class Tally:
    """A count kept in a dict (a histogram bucket's, a contention point's), incremented in place: a
    dict of plain ints costs a second lookup (the store) and a new int object per increment."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class LockTimeHistogram:
    """A lock side's wait or hold times (lock_stat): exact count, total, min, max and overflow, and
    the counts at HdrHistogram's own resolution, which is all a lock record keeps (its
    ``waittime_*``/``holdtime_*`` fields and the HDR encoding).

    Recording a lock time is on every acquisition and release, and a dict of exact values, with a
    key per distinct wait (tens of thousands of them under contention), missed the cache on most
    of them (issue 14: a fifth of the engine benchmark on the compiled build).  Here a value is
    keyed by the lowest value of its HdrHistogram bucket (exact below 2048 ns), a few thousand keys
    at most.  :meth:`encode` records each bucket at a value inside it, the buckets of the minimum
    and the maximum at those exact values, so HdrHistogram's counts, total count, minimum and
    maximum, and so the encoded bytes, are the ones recording every value gives.  :meth:`items`
    (and so :meth:`percentiles`) is at that resolution: exact below 2048 ns, three significant
    figures above.
    """

    __slots__ = ("_counts", "_max", "_min", "count", "highest_ns", "overflow", "total_ns")

    def __init__(self, highest_ns: int = HIGHEST_NS) -> None:
        self.highest_ns = highest_ns
        self._counts: dict[int, Tally] = {}  # bucket's lowest value -> count
        self.count = 0
        self.total_ns = 0
        self._min = -1  # -1: nothing recorded
        self._max = -1
        self.overflow = 0

    def record(self, ns: int) -> None:
        if 0 <= ns <= self.highest_ns:
            self.count += 1
            self.total_ns += ns
            if ns > self._max:
                self._max = ns
            if ns < self._min or self._min < 0:
                self._min = ns
            if ns >= _EXACT_BELOW:  # the bucket's lowest value: clear the bits below its resolution
                shift = ns.bit_length() - _SUB_BUCKET_BITS
                ns = (ns >> shift) << shift
            tally = self._counts.get(ns)
            if tally is None:
                tally = self._counts[ns] = Tally()
            tally.n += 1
        else:
            self.overflow += 1

    @property
    def min_ns(self) -> int:
        return self._min if self._min >= 0 else 0

    @property
    def max_ns(self) -> int:
        return self._max if self._max >= 0 else 0

    def merge(self, other: LockTimeHistogram) -> None:
        counts = self._counts
        for v, theirs in other._counts.items():
            tally = counts.get(v)
            if tally is None:
                tally = counts[v] = Tally()
            tally.n += theirs.n
        self.count += other.count
        self.total_ns += other.total_ns
        if other._max > self._max:
            self._max = other._max
        if other._min >= 0 and (self._min < 0 or other._min < self._min):
            self._min = other._min
        self.overflow += other.overflow

    def items(self) -> list[tuple[int, int]]:
        """(bucket's lowest value, count) pairs in value order."""
        return sorted((v, tally.n) for v, tally in self._counts.items())

    def to_hdr(self) -> HdrHistogram:
        hist = HdrHistogram(1, self.highest_ns, SIGNIFICANT_FIGURES)
        if not self.count:
            return hist
        lo, hi = self._min, self._max
        lo_key, hi_key = _bucket(lo), _bucket(hi)
        for key, n in self.items():
            if key == lo_key == hi_key:
                if n > 1:
                    hist.record_value(lo, n - 1)
                hist.record_value(hi, 1)
            elif key == lo_key:
                hist.record_value(lo, n)
            elif key == hi_key:
                hist.record_value(hi, n)
            else:
                hist.record_value(key, n)
        return hist

    def percentiles(self, ps: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)) -> dict[str, int]:
        """Nearest-rank percentiles at the bucket resolution (see the class docstring)."""
        return _nearest_rank(self.items(), ps)

    def encode(self) -> str:
        """HdrHistogram's standard compressed base64 form (HISTFORMAT V2)."""
        return _encode(self.to_hdr())

    def summary(self) -> JsonObject:
        return {"count": self.count, "min_ns": self.min_ns, "max_ns": self.max_ns,
                "total_ns": self.total_ns, "overflow": self.overflow}


def _bucket(ns: int) -> int:
    """The lowest value of ``ns``'s HdrHistogram bucket (:class:`LockTimeHistogram`'s key)."""
    if ns < _EXACT_BELOW:
        return ns
    shift = ns.bit_length() - _SUB_BUCKET_BITS
    return (ns >> shift) << shift


def _nearest_rank(items: list[tuple[int, int]], ps: tuple[float, ...]) -> dict[str, int]:
    """``ps`` of (value, count) pairs in value order: for each p, the smallest value with at least
    p% of the count at or below it (0 when empty)."""
    out: dict[str, int] = {}
    count = sum(n for _, n in items)
    for p in ps:
        out[f"p{p:g}"] = 0
        if not count:
            continue
        rank = max(1, -(-round(p * count * 1000) // 100_000))  # ceil(p/100 * count), exact
        seen = 0
        for v, n in items:
            seen += n
            if seen >= rank:
                out[f"p{p:g}"] = v
                break
    return out


def _encode(hist: HdrHistogram) -> str:
    blob: object = hist.encode()  # hdrh is untyped: bytes (or str)
    return blob.decode() if isinstance(blob, bytes) else str(blob)
