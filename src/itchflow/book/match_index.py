"""The match index's rows (``layout.MATCH_DTYPE``) as the kernels read and write them.

The index is probed as flat uint64 words (``order_store.probe``, rows of
``MATCH_WORDS``); these accessors name what each word holds, with the word indices, shifts
and masks derived from the declared dtype. All inline: the engine compiles them away.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book.layout import (
    MATCH_FLAGS_SHIFT, MATCH_GROUP_BITS, MATCH_LOCATE_MASK, MATCH_LOCATE_SHIFT, MATCH_PRICE_MASK, MATCH_W_KEY,
    MATCH_W_SHARES, MATCH_W_TRADE, MATCH_W_USED, MATCH_WORDS,
)
from itchflow.book.order_store import grouped_home, probe

_U = np.uint64


@njit(inline="always", nogil=True, cache=True)
def match_home(match, seed, mask, shift):
    """The home row of a match number (``layout.MATCH_GROUP_BITS``: runs of adjacent rows)."""
    return grouped_home(match, seed, mask, shift, MATCH_GROUP_BITS)


@njit(inline="always", nogil=True, cache=True)
def match_row(matches, match, seed, mask, shift):
    """Word index of the row holding this match number, or of the empty row where it would go."""
    return probe(matches, match, match_home(match, seed, mask, shift), mask, MATCH_WORDS) * MATCH_WORDS


@njit(inline="always", nogil=True, cache=True)
def match_used(matches, i):
    return matches[i + MATCH_W_USED] != 0


@njit(inline="always", nogil=True, cache=True)
def put_match(matches, i, match, price, locate, flags, shares):
    matches[i + MATCH_W_KEY] = match
    matches[i + MATCH_W_USED] = 1
    matches[i + MATCH_W_TRADE] = (_U(price) | (_U(locate) << _U(MATCH_LOCATE_SHIFT))
                                  | (_U(flags) << _U(MATCH_FLAGS_SHIFT)))
    matches[i + MATCH_W_SHARES] = _U(shares)


@njit(inline="always", nogil=True, cache=True)
def match_flags(matches, i):
    return matches[i + MATCH_W_TRADE] >> _U(MATCH_FLAGS_SHIFT)


@njit(inline="always", nogil=True, cache=True)
def set_match_flag(matches, i, flag):
    matches[i + MATCH_W_TRADE] |= _U(flag) << _U(MATCH_FLAGS_SHIFT)


@njit(inline="always", nogil=True, cache=True)
def match_price(matches, i):
    return np.uint32(matches[i + MATCH_W_TRADE] & _U(MATCH_PRICE_MASK))


@njit(inline="always", nogil=True, cache=True)
def match_locate(matches, i):
    return np.int64((matches[i + MATCH_W_TRADE] >> _U(MATCH_LOCATE_SHIFT)) & _U(MATCH_LOCATE_MASK))


@njit(inline="always", nogil=True, cache=True)
def match_shares(matches, i):
    return matches[i + MATCH_W_SHARES]
