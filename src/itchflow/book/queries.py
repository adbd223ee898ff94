"""Read-only queries over the engine state: depth, one level's queue, all orders.

Queues are not linked lists in the engine (see ``layout``): a level's queue is its live
orders in stamp order, found by one pass over the order table (a few ms for a million rows).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book.ladder import entry_key, entry_level, has_key, lower_bound
from itchflow.book.layout import N_LOCATES, STAMP_MASK

_STAMP_MASK = np.uint64(STAMP_MASK)


@njit(nogil=True, cache=True)
def depth(books, ladder, levels, b, n):
    """The best n levels of book b, best first: int64[k, 3] rows (price, shares, orders)."""
    length = np.int64(books[b].length)
    k = length if n < 0 or n > length else n
    out = np.empty((k, 3), np.int64)
    start = books[b].start
    for i in range(k):
        lvl = entry_level(ladder[start + length - 1 - i])
        out[i, 0] = levels[lvl].price
        out[i, 1] = levels[lvl].shares
        out[i, 2] = levels[lvl].count
    return out


@njit(nogil=True, cache=True)
def find_level(books, ladder, b, price):
    """The level id at this price in book b, or -1."""
    key = entry_key(b & 1, price)
    start = books[b].start
    n = np.int64(books[b].length)
    p = lower_bound(ladder, start, n, key)
    if p < n and has_key(ladder[start + p], key):
        return entry_level(ladder[start + p])
    return np.int64(-1)


@njit(nogil=True, cache=True)
def queue(orders, lvl):
    """A level's orders in time priority: (refs uint64, shares uint32, mpids uint32).

    One pass over the order table picks the level's rows; their stamps give the order."""
    n = 0
    for i in range(orders.shape[0]):
        if orders[i].stamp != 0 and orders[i].level == lvl:
            n += 1
    rows = np.empty(n, np.int64)
    stamps = np.empty(n, np.uint64)
    k = 0
    for i in range(orders.shape[0]):
        if orders[i].stamp != 0 and orders[i].level == lvl:
            rows[k] = i
            stamps[k] = orders[i].stamp & _STAMP_MASK
            k += 1
    by_time = rows[np.argsort(stamps)]
    refs = np.empty(n, np.uint64)
    shares = np.empty(n, np.uint32)
    mpids = np.empty(n, np.uint32)
    for j in range(n):
        refs[j] = orders[by_time[j]].ref
        shares[j] = orders[by_time[j]].shares
        mpids[j] = orders[by_time[j]].mpid
    return refs, shares, mpids


@njit(nogil=True, cache=True)
def live_rows(orders, levels, wanted):
    """Every live order of the locates marked in ``wanted`` (uint8 per locate), in table order.

    Returns int64[k, 7] rows (locate, side, price, ref as int64 bits, shares, mpid, stamp)."""
    n = 0
    for i in range(orders.shape[0]):
        if orders[i].stamp != 0 and wanted[levels[orders[i].level].book >> 1]:
            n += 1
    out = np.empty((n, 7), np.int64)
    r = 0
    for i in range(orders.shape[0]):
        if orders[i].stamp != 0:
            b = levels[orders[i].level].book
            if wanted[b >> 1]:
                out[r, 0] = b >> 1
                out[r, 1] = b & 1
                out[r, 2] = orders[i].price
                out[r, 3] = np.int64(orders[i].ref)
                out[r, 4] = orders[i].shares
                out[r, 5] = orders[i].mpid
                out[r, 6] = np.int64(orders[i].stamp & _STAMP_MASK)
                r += 1
    return out


def all_orders(orders, levels, locates) -> np.ndarray:
    """Every live order of the given locates, in their order, book by book (bids then asks),
    best level first, time priority within a level. Returns int64[k, 6] rows (locate, side,
    price, ref as int64 bits, shares, mpid)."""
    locates = np.asarray(locates, np.int64)
    rank = np.zeros(N_LOCATES, np.int64)
    rank[locates] = np.arange(1, len(locates) + 1)
    rows = live_rows(orders, levels, (rank > 0).view(np.uint8))
    best_first = np.where(rows[:, 1] == 0, -rows[:, 2], rows[:, 2])
    order = np.lexsort((rows[:, 6], best_first, rows[:, 1], rank[rows[:, 0]]))
    return np.ascontiguousarray(rows[order, :6])


@njit(nogil=True, cache=True)
def top_of_books(books, ladder, levels):
    """Per locate: (bid price, bid shares, ask price, ask shares), zeros for an empty side."""
    nloc = books.shape[0] // 2
    out = np.zeros((nloc, 4), np.int64)
    for s in range(nloc):
        for side in range(2):
            b = s * 2 + side
            n = np.int64(books[b].length)
            if n > 0:
                lvl = entry_level(ladder[books[b].start + n - 1])
                out[s, side * 2] = levels[lvl].price
                out[s, side * 2 + 1] = levels[lvl].shares
    return out
