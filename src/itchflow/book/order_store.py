"""Order table probing: open addressing with linear probing over flat uint64 rows of w words.

The order table's rows are the order records themselves (``layout.ORDER_DTYPE``, 4 words:
the reference is word 0, and word 1 is never 0 in a live row); the match-number index uses
the same routines with its own 4-word rows.

References can be anywhere in 64 bits and are not monotonic. The home slot is the top bits
of a seeded mix: (key XOR seed) times a Fibonacci multiplier, its high half folded into its low
half, times a second constant. The seed is a secret each ``Books`` draws
(``layout.C_HASH_SEED``), since a fixed hash can be attacked: under the multiplier alone every
multiple of its inverse mod 2**64 has home slot 0, and a feed of such references made each add
probe every earlier one (100 k adds took 4 s, not 0.01 s: probe 44). The seed alone, XORed in
before one multiply, was not enough: keys that differ only in their low bits keep their
differences up to a carry, and prices aimed at one bucket of the level index still made chains
of 16 in 600 (CI, forty-third round); the fold and second multiply spread what the first left
close. It cost the engine 0.93x / 0.97x / 0.98x on the three day shapes (``bench revision``
against the multiplier alone, best of 3 turns each: 37.2 -> 39.8 ns on the deep day), where the
seed XORed in alone cost nothing; the engine now hashes a message's reference once, at parse,
and its later stages probe from that slot (``layout.C_RING_HOME``), which won back 1.06-1.10x /
0.96-1.10x / 1.04-1.06x in two ``bench revision`` runs. The seed is data, not a global:
Numba freezes a global into its cached code. (Keeping runs of consecutive
keys in adjacent rows, to share cache lines among recent orders, measured slower: the runs
lengthen the probes. The match index, which only grows and whose keys arrive nearly in
order, does keep runs: ``grouped_home``.) Deletion shifts the following entries back (no
tombstones), so a long day of adds and deletes never degrades probing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_U = np.uint64
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xC4CEB9FE1A85EC53)   # MurmurHash3's second finalizer constant
MIN_TABLE = 1 << 4  # tables are never smaller than this


@njit(inline="always", nogil=True, cache=True)
def home_slot(key, seed, mask, shift):
    """shift = 64 - log2(table size): the top log2(size) bits of (key ^ seed) * golden ratio,
    its high half folded into its low half and multiplied again."""
    x = (_U(key) ^ _U(seed)) * _GOLDEN
    x ^= x >> _U(32)
    return np.int64((x * _MIX) >> shift) & mask


@njit(inline="always", nogil=True, cache=True)
def shift_for(n):
    """home_slot's shift for a table of n rows (a power of two): 64 - log2(n)."""
    s = 0
    c = n
    while c > 1:
        c >>= 1
        s += 1
    return _U(64 - s)


@njit(inline="always", nogil=True, cache=True)
def grouped_home(key, seed, mask, shift, bits):
    """The home slot of keys that arrive in runs (match numbers): the hashed home of the group
    key >> bits, rounded down to a run of 2**bits rows, and the key's low bits its row in the
    run, so consecutive keys fill adjacent rows. bits = 0 is home_slot."""
    low = (_U(1) << _U(bits)) - _U(1)
    g = _U(home_slot(_U(key) >> _U(bits), seed, mask, shift))
    return np.int64((g & ~low) | (_U(key) & low)) & mask


@njit(inline="always", nogil=True, cache=True)
def probe(table, key, home, mask, w):
    """Slot holding key, or the empty slot where it would go (check table[slot * w + 1] == 0),
    probing from its home slot on.

    table is a flat uint64 array of rows of w words: (key, value + 1, payload...); value
    word 0 marks an empty row. Indices are unsigned so Numba emits no negative-index fix-up.
    """
    i = _U(home)
    m = _U(mask)
    uw = _U(w)
    while True:
        r = i * uw
        if table[r + _U(1)] == 0 or table[r] == key:
            return np.int64(i)
        i = (i + _U(1)) & m


@njit(inline="always", nogil=True, cache=True)
def find_slot(table, key, seed, mask, shift, w):
    """``probe`` from the key's home_slot (the order table)."""
    return probe(table, key, home_slot(key, seed, mask, shift), mask, w)


@njit(inline="always", nogil=True, cache=True)
def delete_slot(table, i, seed, mask, shift, w):
    """Remove the entry at slot i, shifting later entries of the cluster back (no tombstones)."""
    j = i
    uw = _U(w)
    while True:
        j = (j + 1) & mask
        rj = _U(j) * uw
        if table[rj + _U(1)] == 0:
            break
        k = home_slot(table[rj], seed, mask, shift)
        # The entry at j may move to i only if its home slot is not cyclically in (i, j].
        if i <= j:
            stays = (i < k) and (k <= j)
        else:
            stays = (i < k) or (k <= j)
        if stays:
            continue
        ri = _U(i) * uw
        for c in range(w):
            table[ri + _U(c)] = table[rj + _U(c)]
        i = j
    ri = _U(i) * uw
    for c in range(w):
        table[ri + _U(c)] = 0


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see engine.py
def rehash(old, new, seed, shift, w, bits=0):
    """Move every entry of old into the (empty, larger, power-of-two) new table (flat, rows of
    w), at its ``grouped_home`` with this seed and these bits (0: home_slot, the order table)."""
    mask = new.shape[0] // w - 1
    for r in range(old.shape[0] // w):
        if old[r * w + 1] != 0:
            key = old[r * w]
            i = probe(new, key, grouped_home(key, seed, mask, shift, bits), mask, w)
            for c in range(w):
                new[i * w + c] = old[r * w + c]


def table_shift(cap: int) -> np.uint64:
    return np.uint64(64 - (cap.bit_length() - 1))
