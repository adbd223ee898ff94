"""Price -> level in O(1): a chained hash over the level records themselves.

Finding an add's level by searching its book's sorted ladder costs a scan and a binary
search whose branches mispredict, and more the deeper the book (hundreds of levels on the
busiest books of a 100-stock day, thousands on a real day's). Nearly every add (93-97% on
generated days) joins a level that already exists, so the engine looks the level up here
first and searches the ladder only to place a new level. Only deep books are indexed
(``indexed``).

No array of its own (so the drivers and their growth paths are unchanged): bucket i's chain
head is ``levels[i].bucket`` (a level id + 1; 0 = empty), and a live level's ``next_free``
is its chain link (id + 1; 0 = end; it is the free-list link only while the level is free).
There are as many buckets as the largest power of two not above the level capacity, so
chains stay short (live levels are a fraction of the capacity); when the driver grows the
levels array the kernel rebuilds the chains on its next call (``ensure_index``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book.layout import C_HASH_SEED, C_LEVEL_BUCKETS, C_LEVEL_TOP
from itchflow.book.order_store import home_slot, shift_for

_U = np.uint64
INDEX_MIN_CAP = 32  # books whose ladder segment has this capacity or more are indexed


@njit(inline="always", nogil=True, cache=True)
def indexed(cap):
    """Whether a book whose ladder segment has this capacity keeps its levels in the index.
    Capacities only grow, so a book enters the index once (all its levels at that moment)
    and never leaves it. Shallow books stay out: their level is within a few steps of the
    top of the ladder, cheaper to scan than a bucket and a chain to follow, and on days with
    many shallow books (8,000 stocks: 30% of adds open a level) indexing every level cost
    more in upkeep than it saved."""
    return cap >= INDEX_MIN_CAP


@njit(inline="always", nogil=True, cache=True)
def bucket_of(b, price, seed, mask, shift):
    """The bucket of (book, price): the order table's hash (``order_store.home_slot``, with its
    secret seed: a feed cannot aim prices at one chain) of the key book << 32 | price."""
    return home_slot((_U(b) << _U(32)) | _U(np.uint32(price)), seed, mask, shift)


@njit(inline="always", nogil=True, cache=True)
def chain_head(levels, h):
    """The first level of bucket h's chain, -1 when it is empty (heads are stored as id + 1)."""
    return np.int64(levels[_U(h)].bucket) - 1


@njit(inline="always", nogil=True, cache=True)
def find_in_bucket(levels, h, b, price):
    """The live level of book b at price whose bucket is h, or -1. A level found further down
    the chain moves to its head: the look-ahead prefetches only the head, and the levels
    found most often (those near the touch) then stay there."""
    lvl = chain_head(levels, h)
    prev = np.int64(-1)
    while lvl >= 0:
        if levels[_U(lvl)].book == b and levels[_U(lvl)].price == np.int64(price):
            if prev >= 0:
                levels[_U(prev)].next_free = levels[_U(lvl)].next_free
                levels[_U(lvl)].next_free = levels[_U(h)].bucket
                levels[_U(h)].bucket = np.int32(lvl + 1)
            return lvl
        prev = lvl
        lvl = np.int64(levels[_U(lvl)].next_free) - 1
    return np.int64(-1)


@njit(inline="always", nogil=True, cache=True)
def index_insert(levels, lvl, h):
    """Put a new live level (book and price set) at the head of bucket h's chain."""
    levels[_U(lvl)].next_free = levels[_U(h)].bucket
    levels[_U(h)].bucket = np.int32(lvl + 1)


@njit(inline="always", nogil=True, cache=True)
def index_remove(levels, lvl, h):
    """Unlink a live level from bucket h's chain (it must be there)."""
    nxt = levels[_U(lvl)].next_free
    cur = chain_head(levels, h)
    if cur == lvl:
        levels[_U(h)].bucket = nxt
        return
    while True:
        after = np.int64(levels[_U(cur)].next_free) - 1
        if after == lvl:
            levels[_U(cur)].next_free = nxt
            return
        cur = after


@njit(inline="always", nogil=True, cache=True)
def buckets_for(capacity):
    """The largest power of two not above capacity (at least 1)."""
    n = np.int64(1)
    while n * 2 <= capacity:
        n *= 2
    return n


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see engine.py
def rebuild_index(levels, books, ctl):
    """Rebuild every chain for the current capacity (after the levels array grew)."""
    n = buckets_for(levels.shape[0])
    mask = n - 1
    shift = shift_for(n)
    seed = _U(ctl[C_HASH_SEED])
    for i in range(levels.shape[0]):
        levels[_U(i)].bucket = 0
    for lvl in range(ctl[C_LEVEL_TOP]):
        b = levels[_U(lvl)].book
        if b >= 0 and indexed(books[_U(b)].cap):  # free levels have book -1
            index_insert(levels, lvl, bucket_of(levels[_U(lvl)].book, levels[_U(lvl)].price, seed, mask, shift))
    ctl[C_LEVEL_BUCKETS] = n


@njit(inline="always", nogil=True, cache=True)
def ensure_index(levels, books, ctl):
    """(mask, shift) of the index, rebuilt first if the levels array changed size."""
    n = buckets_for(levels.shape[0])
    if ctl[C_LEVEL_BUCKETS] != n:
        rebuild_index(levels, books, ctl)
    return n - 1, shift_for(n)
