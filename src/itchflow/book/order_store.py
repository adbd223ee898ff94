"""Order store: 64-bit order reference -> pool index, open addressing with linear probing.

References can be anywhere in 64 bits and are not monotonic, but Nasdaq hands them out in
a few increasing ranges, and most orders die young: the live working set is the recently
issued references. So the hash keeps runs of 64 consecutive keys together (the low 6 bits
stay as the slot's low bits) and scatters the runs (the rest of the key is mixed with a
Fibonacci multiplier). Recent orders then share a few cache lines instead of costing a
cache miss each, and strided or hostile keys still spread over the whole table. Deletion shifts the following
entries back (no tombstones), so a long day of adds and deletes never degrades probing.
The same routines serve the match-number index (rows of 4 words instead of 2).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U = np.uint64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


RUN_BITS = 3
_RUN_MASK = np.uint64((1 << RUN_BITS) - 1)
_RUN_BITS = np.uint64(RUN_BITS)
MIN_TABLE = 1 << 10  # tables are never smaller than this (so a run fits)


@njit(inline="always", nogil=True, cache=True)
def home_slot(key, mask, shift):
    """shift = 64 - log2(table size). The run of 64 keys lands at a mixed, 64-aligned slot."""
    k = _U(key)
    run = ((k >> _RUN_BITS) * _GOLDEN) >> (shift + _RUN_BITS)
    return np.int64((run << _RUN_BITS) | (k & _RUN_MASK)) & mask


@njit(inline="always", nogil=True, cache=True)
def find_slot(table, key, mask, shift):
    """Slot holding key, or the empty slot where it would go (check table[slot, 1] == 0)."""
    i = home_slot(key, mask, shift)
    while True:
        v = table[i, 1]
        if v == 0 or table[i, 0] == key:
            return i
        i = (i + 1) & mask


@njit(inline="always", nogil=True, cache=True)
def delete_slot(table, i, mask, shift):
    """Remove the entry at slot i, shifting later entries of the cluster back."""
    j = i
    while True:
        j = (j + 1) & mask
        if table[j, 1] == 0:
            break
        k = home_slot(table[j, 0], mask, shift)
        # The entry at j may move to i only if its home slot is not cyclically in (i, j].
        if i <= j:
            stays = (i < k) and (k <= j)
        else:
            stays = (i < k) or (k <= j)
        if stays:
            continue
        for c in range(table.shape[1]):
            table[i, c] = table[j, c]
        i = j
    for c in range(table.shape[1]):
        table[i, c] = 0


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see engine.py
def rehash(old, new, shift):
    """Move every entry of old into the (empty, larger, power-of-two) new table."""
    mask = new.shape[0] - 1
    for r in range(old.shape[0]):
        if old[r, 1] != 0:
            i = find_slot(new, old[r, 0], mask, shift)
            for c in range(old.shape[1]):
                new[i, c] = old[r, c]


def table_shift(cap: int) -> np.uint64:
    return np.uint64(64 - (cap.bit_length() - 1))
