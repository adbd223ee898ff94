"""The match index row: what the engine packs into words is what layout.MATCH_DTYPE declares.

The accessors (book.match_index) write words; a numpy view of the same memory through the
declared dtype must read back every field, and the probing routines must find the rows."""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book import layout as L
from itchflow.book.match_index import (
    match_flags, match_locate, match_price, match_row, match_shares, match_used, put_match, set_match_flag,
)
from itchflow.book.order_store import table_shift

ROWS = 64
SEED = np.uint64(0x0123456789ABCDEF)  # any seed: the rows must be found with the one they were put with


@njit(cache=True)
def _put(words, match, price, locate, flags, shares, seed, mask, shift):
    i = match_row(words, match, seed, mask, shift)
    if match_used(words, i):
        return -1
    put_match(words, i, match, price, locate, flags, shares)
    return i


@njit(cache=True)
def _read(words, match, seed, mask, shift):
    i = match_row(words, match, seed, mask, shift)
    return match_used(words, i), match_price(words, i), match_locate(words, i), match_flags(words, i), \
        match_shares(words, i)


@njit(cache=True)
def _break(words, match, seed, mask, shift):
    set_match_flag(words, match_row(words, match, seed, mask, shift), L.MATCH_BROKEN)


def test_words_read_back_through_the_declared_dtype():
    words = np.zeros(ROWS * L.MATCH_WORDS, np.uint64)
    mask, shift = ROWS - 1, table_shift(ROWS)
    trades = [(7, 4_294_967_295, 65_535, L.MATCH_COUNTED, 0), (2**64 - 1, 1234500, 1, 0, 300),
              (123456789, 1, 8000, L.MATCH_COUNTED, 2**40)]
    for t in trades:
        assert _put(words, np.uint64(t[0]), *t[1:], SEED, mask, shift) >= 0
    assert _put(words, np.uint64(7), 1, 1, 0, 1, SEED, mask, shift) == -1      # a used match number
    rows = words.view(L.MATCH_DTYPE)
    used = rows[rows["used"] != 0]
    got = sorted(zip(*(used[f].tolist() for f in ("match", "price", "locate", "flags", "shares"))))
    assert got == sorted(trades)
    _break(words, np.uint64(123456789), SEED, mask, shift)
    assert _read(words, np.uint64(123456789), SEED, mask, shift) == (True, 1, 8000, L.MATCH_COUNTED | L.MATCH_BROKEN,
                                                                      2**40)
    assert rows[rows["match"] == 123456789]["flags"].tolist() == [L.MATCH_COUNTED | L.MATCH_BROKEN]
    assert _read(words, np.uint64(99), SEED, mask, shift)[0] is False
