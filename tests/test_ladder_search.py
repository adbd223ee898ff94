"""The ladder's lower bound (a scan down from the top, then a binary search)
against bisect on sorted entry keys, for every segment length and key position."""

import bisect

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from itchflow.book.ladder import entry_key, lower_bound


@njit(cache=False)
def _lower_bound(ladder, start, n, key):
    return lower_bound(ladder, start, n, key)


@settings(max_examples=400, deadline=None)
@given(prices=st.sets(st.integers(1, 2**32 - 2), max_size=300), start=st.integers(0, 9),
       probe=st.integers(0, 2**32 - 1), side=st.integers(0, 1), data=st.data())
def test_lower_bound_matches_bisect(prices, start, probe, side, data):
    keys = sorted(int(entry_key(side, p)) for p in prices)
    ladder = np.full(start + len(keys) + 2, np.uint64(2**64 - 1))  # neighbours that must not count
    ladder[:start] = 0
    ladder[start:start + len(keys)] = np.array([k | 7 for k in keys], np.uint64)  # level ids in the low bits
    candidates = [probe] + [data.draw(st.sampled_from(sorted(prices)))] if prices else [probe]
    for price in candidates:
        key = np.uint64(entry_key(side, price))
        want = bisect.bisect_left([k | 7 for k in keys], int(key))
        assert _lower_bound(ladder, start, len(keys), key) == want


def test_lower_bound_every_position_of_a_long_segment():
    keys = np.arange(1, 5000, dtype=np.uint64) * np.uint64(3) << np.uint64(32)
    ladder = np.concatenate([np.zeros(5, np.uint64), keys])
    for i in range(0, len(keys), 7):
        for delta in (-1, 0, 1):  # just below, at, and just above entry i's key
            key = np.uint64((int(keys[i] >> np.uint64(32)) + delta) << 32)
            assert _lower_bound(ladder, 5, len(keys), key) == bisect.bisect_left(list(keys), int(key))
