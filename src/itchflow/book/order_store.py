"""Order store: 64-bit order reference -> pool index, open addressing with linear probing.

References can be anywhere in 64 bits and are not monotonic, so they are mixed with a
Fibonacci multiplier and the table is indexed by the top bits. Deletion shifts the following
entries back (no tombstones), so a long day of adds and deletes never degrades probing.
The same routines serve the match-number index (rows of 4 words instead of 2).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U = np.uint64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always", nogil=True, cache=True)
def home_slot(key, mask, shift):
    return np.int64((_U(key) * _GOLDEN) >> shift) & mask


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


@njit(nogil=True, cache=True)
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
