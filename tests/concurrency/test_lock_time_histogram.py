"""LockTimeHistogram keeps what a lock record needs exactly: the bytes of an exact histogram's."""

from __future__ import annotations

import random

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from concurrency.histogram import HIGHEST_NS, SIGNIFICANT_FIGURES, LatencyHistogram, LockTimeHistogram, _bucket

VALUES = st.one_of(st.integers(0, 5000), st.integers(0, 10**7), st.integers(-3, HIGHEST_NS + 3))


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES, max_size=60))
def test_the_record_fields_and_encoding_are_the_exact_histograms(values: list[int]) -> None:
    exact, lock = LatencyHistogram(), LockTimeHistogram()
    for v in values:
        exact.record(v)
        lock.record(v)
    assert lock.summary() == exact.summary()  # count, min, max, total, overflow
    assert lock.encode() == exact.encode()
    zero = dict(exact.items()).get(0, 0)
    assert dict(lock.items()).get(0, 0) == zero  # exact below 2048 ns


def test_keys_are_hdrhistograms_buckets() -> None:
    hdr = HdrHistogram(1, HIGHEST_NS, SIGNIFICANT_FIGURES)
    rng = random.Random(14)
    for _ in range(20_000):
        v = min(HIGHEST_NS, int(rng.expovariate(1 / 10 ** rng.randint(0, 12))))
        assert _bucket(v) == hdr.get_lowest_equivalent_value(v), v


def test_merge_is_recording_both() -> None:
    rng = random.Random(7)
    a, b, both = LockTimeHistogram(), LockTimeHistogram(), LockTimeHistogram()
    for _ in range(500):
        v = int(rng.expovariate(1 / 50_000))
        (a if rng.random() < 0.5 else b).record(v)
        both.record(v)
    a.merge(b)
    assert a.summary() == both.summary() and a.items() == both.items() and a.encode() == both.encode()
    empty = LockTimeHistogram()
    empty.merge(LockTimeHistogram())
    assert empty.summary() == LatencyHistogram().summary() and empty.percentiles()["p50"] == 0
