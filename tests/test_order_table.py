"""The order table's probing (order_store) against a plain dict, under hostile keys.

The table is the order store itself, so a wrong backward shift on delete loses or duplicates
an order. Small tables (16-64 rows) at the engine's maximum load, keys that share home
slots, strided keys, key 0 and keys with only high bits set, clusters that wrap around the
end of the table, and a rehash in the middle.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from itchflow.book import layout as L
from itchflow.book.order_store import delete_slot, find_slot, home_slot, rehash, table_shift

W = L.ORDER_WORDS


@njit(cache=True)
def _put(words, key, value, seed, mask, shift):
    i = find_slot(words, key, seed, mask, shift, W)
    if words[i * W + 1] != 0:
        return False
    words[i * W] = key
    words[i * W + 1] = value  # the stamp word: never 0 in a live row
    words[i * W + 2] = value * np.uint64(3)
    words[i * W + 3] = value * np.uint64(7)
    return True


@njit(cache=True)
def _get(words, key, seed, mask, shift):
    i = find_slot(words, key, seed, mask, shift, W)
    return words[i * W + 1], words[i * W + 2], words[i * W + 3]


@njit(cache=True)
def _drop(words, key, seed, mask, shift):
    i = find_slot(words, key, seed, mask, shift, W)
    if words[i * W + 1] == 0:
        return False
    delete_slot(words, i, seed, mask, shift, W)
    return True


def _colliding_keys(rows: int, n: int, seed) -> list[int]:
    """n distinct keys that all hash to slot rows - 2 with this seed (their cluster wraps past
    the end)."""
    shift = table_shift(rows)
    out, k = [], 1
    while len(out) < n:
        if home_slot(np.uint64(k), seed, rows - 1, shift) == rows - 2:
            out.append(k)
        k += 1
    return out


_KEY_KINDS = st.sampled_from(["small", "strided", "high", "colliding", "any"])


@settings(max_examples=150, deadline=None)
@given(kind=_KEY_KINDS, ops=st.lists(st.tuples(st.booleans(), st.integers(0, 40)), min_size=1, max_size=300),
       rows=st.sampled_from([16, 32, 64]), seed=st.sampled_from([0, 2**64 - 1]) | st.integers(0, 2**64 - 1),
       data=st.data())
def test_table_matches_a_dict(kind, ops, rows, seed, data):
    seed = np.uint64(seed)
    if kind == "small":
        keys = list(range(41))
    elif kind == "strided":
        keys = [i << 40 for i in range(41)]
    elif kind == "high":
        keys = [(0xFFFF - i) << 48 for i in range(41)]
    elif kind == "colliding":
        keys = _colliding_keys(rows, 41, seed)
    else:
        keys = data.draw(st.lists(st.integers(0, 2**64 - 1), min_size=41, max_size=41, unique=True))
    words = np.zeros(rows * W, np.uint64)
    mask, shift = rows - 1, table_shift(rows)
    limit = rows * L.TABLE_MAX_LOAD_NUM // L.TABLE_MAX_LOAD_DEN
    model: dict[int, int] = {}
    stamp = 1
    rehashed = False
    for is_add, k in ops:
        key = np.uint64(keys[k])
        if is_add:
            if len(model) >= limit:
                if rehashed:
                    continue
                bigger = np.zeros(2 * rows * W, np.uint64)  # what Books does when the table fills
                rehash(words, bigger, seed, table_shift(2 * rows), W)
                words, rows, rehashed = bigger, 2 * rows, True
                mask, shift, limit = rows - 1, table_shift(rows), rows * L.TABLE_MAX_LOAD_NUM // L.TABLE_MAX_LOAD_DEN
            assert _put(words, key, np.uint64(stamp), seed, mask, shift) == (keys[k] not in model)
            model.setdefault(keys[k], stamp)
            stamp += 1
        else:
            assert _drop(words, key, seed, mask, shift) == (keys[k] in model)
            model.pop(keys[k], None)
        # every key in the model is found with its whole row; every other key is absent
        for kk in keys:
            got = _get(words, np.uint64(kk), seed, mask, shift)
            v = model.get(kk)
            if v is None:
                assert got[0] == 0, (kk, got)
            else:
                assert tuple(int(x) for x in got) == (v, 3 * v, 7 * v), (kk, got, v)
        live = words.reshape(-1, W)[:, 1] != 0
        assert int(live.sum()) == len(model)
