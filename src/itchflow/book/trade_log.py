"""The trade log: every trade whose match number is the largest so far, in arrival order.

A B (broken trade) message names an earlier trade by its match number, so the engine keeps
every trade's price, stock, shares and flags. Nasdaq hands match numbers out in increasing
order, so almost every trade carries a number larger than any before it: such a trade is
appended here (rows of ``layout.MATCH_DTYPE``, as flat uint64 words, the same accessors as
the match index: ``match_index``), a sequential write with no hashing and no probe. The
log's keys are therefore strictly increasing and a number is found by binary search.

A trade that does not beat the largest number so far (out of order, or a repeat) goes to the
match index (a hash table) instead, after both are searched for a duplicate. So a feed in
order pays nothing for the index, and any feed keeps one row a trade, found in O(log n).

Measured (50 M-message 100-stock day): tracking matches through the hashed index alone cost
2.5 ns a message over not tracking them (42.9 against 40.4 ns/msg, best of 3).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book.layout import MATCH_W_KEY, MATCH_WORDS

_U = np.uint64


@njit(inline="always", nogil=True, cache=True)
def log_find(log, n, match):
    """Word index of the row of the log's first n rows holding this match number, or -1."""
    key = _U(match)
    lo = np.int64(0)
    hi = np.int64(n)
    while lo < hi:
        mid = (lo + hi) >> 1
        if log[_U(mid) * _U(MATCH_WORDS) + _U(MATCH_W_KEY)] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and log[_U(lo) * _U(MATCH_WORDS) + _U(MATCH_W_KEY)] == key:
        return lo * MATCH_WORDS
    return np.int64(-1)


def log_keys(log: np.ndarray, n: int) -> np.ndarray:
    """The match numbers of the log's first n rows (a view)."""
    return log[: n * MATCH_WORDS].reshape(-1, MATCH_WORDS)[:, MATCH_W_KEY]
