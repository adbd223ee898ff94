"""Price ladders: per book (stock, side) a sorted segment of level entries in a shared arena.

An entry is one uint64: the level's key in the high 32 bits (the price for bids, its
complement ``0xFFFFFFFF - price`` for asks) and its level id in the low 32. Keys ascend within
a segment and are unique in it, so entries sort as their keys do, the best level is the last
entry, and inserting or removing near the top moves only a few entries (far from it, every
entry between it and the top: about 0.5 us at the far end of a real day's deepest side, 4,227
levels; 11 us on a synthetic 100,000-level side, against 41 ns at its top). One 8-byte entry
instead of a key and an id in two arrays: the top of a ladder is one cache line, not two, and
a line holds 8 entries.

In a deep book (segment capacity ``level_index.INDEX_MIN_CAP`` or more) an existing level is
found through the price index (``level_index``) without a search; otherwise, and to place a
new level or remove one, a lookup scans down from the top for a few steps (most activity is
there), then binary-searches the rest. A full segment is moved to a segment twice its size at
the arena's top; the driver compacts the arena when it fills up (``compact_arena``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book.layout import C_ARENA_TOP, C_LEVEL_FREE, C_LEVEL_TOP, C_LIVE_LEVELS, C_MAX_LADDER
from itchflow.book.level_index import bucket_of, find_in_bucket, index_insert, index_remove, indexed

_U = np.uint64  # unsigned indices: Numba emits no negative-index fix-up for them
_TOP_SCAN = 8
FIRST_SEGMENT = 8
_LOW32 = np.uint64(0xFFFFFFFF)
_KEY_SHIFT = np.uint64(32)


@njit(inline="always", nogil=True, cache=True)
def lower_bound(ladder, start, n, key):
    """First position p in the segment with ladder[start + p] >= key (n if none); key is an
    entry key (``entry_key``), which no entry of a smaller key reaches and every entry of
    this key or a larger one does."""
    i = n - 1
    lim = n - _TOP_SCAN
    if lim < 0:
        lim = 0
    while i >= lim and ladder[_U(start + i)] >= key:
        i -= 1
    if i >= lim or lim == 0:
        return i + 1
    lo = 0
    hi = lim  # ladder[start + lim] >= key is known
    while lo < hi:
        mid = (lo + hi) >> 1
        if ladder[_U(start + mid)] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(inline="always", nogil=True, cache=True)
def entry_key(side, price):
    """The ladder entry of a level at this price with id 0: its key in the high 32 bits."""
    p = _U(np.uint32(price))
    return (p if side == 0 else _LOW32 - p) << _KEY_SHIFT


@njit(inline="always", nogil=True, cache=True)
def has_key(entry, key):
    """Whether a ladder entry is the level of this entry key."""
    return (entry & ~_LOW32) == key


@njit(inline="always", nogil=True, cache=True)
def entry_level(entry):
    """The level id of a ladder entry."""
    return np.int64(entry & _LOW32)


@njit(inline="always", nogil=True, cache=True)
def get_level(b, side, price, best, books, ladder, levels, ctl, seed, imask, ishift):
    """The level of book b at price, created (empty) if absent. Returns (level, is_top): whether
    it is the book's best level afterwards (the caller refreshes the cached BBO only then).

    best is the side's cached best price (meaningful while it has levels). A deep book's
    levels are found through the price index (``indexed``) without a ladder search."""
    key = entry_key(side, price)
    start = books[_U(b)].start
    n = np.int64(books[_U(b)].length)
    cap = np.int64(books[_U(b)].cap)
    deep = indexed(cap)
    if deep:
        h = bucket_of(b, price, seed, imask, ishift)
        lvl = find_in_bucket(levels, h, b, price)
        if lvl >= 0:
            return lvl, np.int64(price) == np.int64(best)
        p = lower_bound(ladder, start, n, key)
    else:
        h = np.int64(0)
        p = lower_bound(ladder, start, n, key)
        if p < n and has_key(ladder[_U(start + p)], key):
            return entry_level(ladder[_U(start + p)]), p == n - 1
    if n == cap:  # move the segment to a fresh one twice the size at the arena's top
        new_cap = cap * 2 if cap > 0 else FIRST_SEGMENT
        new_start = ctl[C_ARENA_TOP]
        for k in range(n):
            ladder[_U(new_start + k)] = ladder[_U(start + k)]
        ctl[C_ARENA_TOP] = new_start + new_cap
        if new_cap > ctl[C_MAX_LADDER]:
            ctl[C_MAX_LADDER] = new_cap
        books[_U(b)].start = new_start
        books[_U(b)].cap = new_cap
        start = new_start
        if indexed(new_cap) and not deep:  # the book just became deep: index its levels
            for k in range(n):
                old = entry_level(ladder[_U(start + k)])
                index_insert(levels, old, bucket_of(b, levels[_U(old)].price, seed, imask, ishift))
            deep = True
            h = bucket_of(b, price, seed, imask, ishift)
    k = n
    while k > p:
        ladder[_U(start + k)] = ladder[_U(start + k - 1)]
        k -= 1
    # allocate a level: the free chain (through `next_free`) first, else the high-water mark
    lvl = ctl[C_LEVEL_FREE]
    if lvl >= 0:
        ctl[C_LEVEL_FREE] = levels[_U(lvl)].next_free
    else:
        lvl = ctl[C_LEVEL_TOP]
        ctl[C_LEVEL_TOP] = lvl + 1
    ctl[C_LIVE_LEVELS] += 1
    levels[_U(lvl)].price = price
    levels[_U(lvl)].shares = 0
    levels[_U(lvl)].count = 0
    levels[_U(lvl)].book = b
    if deep:
        index_insert(levels, lvl, h)
    ladder[_U(start + p)] = key | _U(lvl)
    books[_U(b)].length = n + 1
    return lvl, p == n


@njit(inline="always", nogil=True, cache=True)
def remove_level(lvl, books, ladder, levels, ctl, seed, imask, ishift):
    """Take an empty level out of its ladder and the price index and free it. Returns whether
    it was the best."""
    b = levels[_U(lvl)].book
    if indexed(books[_U(b)].cap):
        index_remove(levels, lvl, bucket_of(b, levels[_U(lvl)].price, seed, imask, ishift))
    key = entry_key(b & 1, levels[_U(lvl)].price)
    start = books[_U(b)].start
    n = np.int64(books[_U(b)].length)
    p = lower_bound(ladder, start, n, key)
    for k in range(p, n - 1):
        ladder[_U(start + k)] = ladder[_U(start + k + 1)]
    books[_U(b)].length = n - 1
    levels[_U(lvl)].next_free = ctl[C_LEVEL_FREE]
    levels[_U(lvl)].book = -1
    ctl[C_LEVEL_FREE] = lvl
    ctl[C_LIVE_LEVELS] -= 1
    return p == n - 1


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see engine.py
def compact_arena(books, old, new):
    """Copy every book's segment into a fresh arena, back to back. Returns the new top."""
    top = 0
    for b in range(books.shape[0]):
        cap = np.int64(books[_U(b)].cap)
        if cap == 0:
            continue
        start = books[_U(b)].start
        for k in range(np.int64(books[_U(b)].length)):
            new[_U(top + k)] = old[_U(start + k)]
        books[_U(b)].start = top
        top += cap
    return top
