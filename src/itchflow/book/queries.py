"""Compiled read-only queries over the engine state: depth, one level's queue, all orders."""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book.ladder import level_key, lower_bound


@njit(nogil=True, cache=True)
def depth(books, lad_lvl, levels, b, n):
    """The best n levels of book b, best first: int64[k, 3] rows (price, shares, orders)."""
    length = np.int64(books[b].length)
    k = length if n < 0 or n > length else n
    out = np.empty((k, 3), np.int64)
    start = books[b].start
    for i in range(k):
        lvl = lad_lvl[start + length - 1 - i]
        out[i, 0] = levels[lvl].price
        out[i, 1] = levels[lvl].shares
        out[i, 2] = levels[lvl].count
    return out


@njit(nogil=True, cache=True)
def find_level(books, lad_key, lad_lvl, b, price):
    """The level id at this price in book b, or -1."""
    key = level_key(b & 1, price)
    start = books[b].start
    n = np.int64(books[b].length)
    p = lower_bound(lad_key, start, n, key)
    if p < n and lad_key[start + p] == key:
        return np.int64(lad_lvl[start + p])
    return np.int64(-1)


@njit(nogil=True, cache=True)
def queue(orders, levels, lvl):
    """A level's orders in time priority: (refs uint64, shares uint32, mpids uint32)."""
    n = levels[lvl].count
    refs = np.empty(n, np.uint64)
    shares = np.empty(n, np.uint32)
    mpids = np.empty(n, np.uint32)
    o = levels[lvl].head
    i = 0
    while o >= 0 and i < n:
        refs[i] = orders[o].ref
        shares[i] = orders[o].shares
        mpids[i] = orders[o].mpid
        o = orders[o].next
        i += 1
    return refs, shares, mpids


@njit(nogil=True, cache=True)
def all_orders(orders, levels, lad_lvl, books, locates):
    """Every live order of the given locates, book by book, best level first, queue order.

    Returns int64[k, 6] rows (locate, side, price, ref as int64 bits, shares, mpid).
    """
    total = 0
    for j in range(locates.shape[0]):
        for side in range(2):
            b = locates[j] * 2 + side
            for i in range(np.int64(books[b].length)):
                total += levels[lad_lvl[books[b].start + i]].count
    out = np.empty((total, 6), np.int64)
    r = 0
    for j in range(locates.shape[0]):
        for side in range(2):
            b = locates[j] * 2 + side
            length = np.int64(books[b].length)
            for i in range(length):
                lvl = lad_lvl[books[b].start + length - 1 - i]
                o = levels[lvl].head
                while o >= 0:
                    out[r, 0] = locates[j]
                    out[r, 1] = side
                    out[r, 2] = orders[o].price
                    out[r, 3] = np.int64(orders[o].ref)
                    out[r, 4] = orders[o].shares
                    out[r, 5] = orders[o].mpid
                    r += 1
                    o = orders[o].next
    return out


@njit(nogil=True, cache=True)
def top_of_books(books, lad_lvl, levels):
    """Per locate: (bid price, bid shares, ask price, ask shares), zeros for an empty side."""
    nloc = books.shape[0] // 2
    out = np.zeros((nloc, 4), np.int64)
    for s in range(nloc):
        for side in range(2):
            b = s * 2 + side
            n = np.int64(books[b].length)
            if n > 0:
                lvl = lad_lvl[books[b].start + n - 1]
                out[s, side * 2] = levels[lvl].price
                out[s, side * 2 + 1] = levels[lvl].shares
    return out
