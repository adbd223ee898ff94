"""The match index (match number -> trade, for broken trades) keeps runs of consecutive match
numbers in adjacent rows (``order_store.grouped_home``). Checked against a dict: every number
is found with its trade after any number of growths, whatever the numbers (runs, random 64-bit,
one group, strides that share their low bits), and in the engine a B breaks exactly the trade
it names."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_book_support import broken, directory, encode, trade

from itchflow.book import layout as L
from itchflow.book.books import Books
from itchflow.book.match_index import match_home, match_row, match_used, put_match, match_shares
from itchflow.book.order_store import grouped_home, home_slot, rehash, table_shift

W = L.MATCH_WORDS
B = L.MATCH_GROUP_BITS
U64 = st.integers(1, 2**64 - 1)
SEED = np.uint64(0xFEDCBA9876543210)  # any seed: rows are found with the one they were put with


def runs(draw_base=U64, max_len=200):
    return st.lists(st.tuples(draw_base, st.integers(1, max_len)), min_size=1, max_size=8).map(
        lambda rs: [(b + k) % 2**64 or 1 for b, n in rs for k in range(n)])


KEYS = st.one_of(
    runs(),                                                     # nearly in order, as a feed sends them
    st.lists(U64, min_size=1, max_size=600),                    # anywhere in 64 bits
    st.lists(st.integers(0, 2**B - 1), min_size=1, max_size=16).map(lambda v: [(1 << 40) + x for x in v]),
    st.lists(st.integers(1, 2**20), min_size=1, max_size=400).map(lambda v: [x << B for x in v]),  # low bits equal
)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**64 - 1))
def test_grouped_home_keeps_runs_adjacent_and_is_home_slot_without_bits(seed):
    rows, shift = 1 << 12, table_shift(1 << 12)
    mask, seed = rows - 1, np.uint64(seed)
    for key in (1, 12345, 2**63 + 17, 2**64 - 1):
        assert grouped_home(np.uint64(key), seed, mask, shift, 0) == home_slot(np.uint64(key), seed, mask, shift)
    base = 7 << B   # the first number of a group: the group's 2**B numbers take 2**B adjacent rows
    homes = [int(match_home(np.uint64(base + k), seed, mask, shift)) for k in range(2**B)]
    assert homes == list(range(homes[0], homes[0] + 2**B)) and homes[0] % 2**B == 0
    assert int(match_home(np.uint64(base + 2**B), seed, mask, shift)) != homes[0] + 2**B  # the next group: elsewhere


@settings(max_examples=60, deadline=None)
@given(KEYS)
def test_every_match_is_found_after_growing(keys):
    keys = list(dict.fromkeys(keys))          # match numbers are unique within a day
    rows = 16
    table = np.zeros(rows * W, np.uint64)
    expect = {}
    for n, key in enumerate(keys):
        if 8 * (len(expect) + 1) > 5 * rows:  # grown past 5/8 full, as the engine's driver does
            bigger = np.zeros(2 * rows * W, np.uint64)
            rehash(table, bigger, SEED, table_shift(2 * rows), W, B)
            table, rows = bigger, 2 * rows
        i = match_row(table, np.uint64(key), SEED, rows - 1, table_shift(rows))
        assert not match_used(table, i)
        put_match(table, i, np.uint64(key), 100, 1, 0, n)
        expect[key] = n
    mask, shift = rows - 1, table_shift(rows)
    for key, n in expect.items():
        i = match_row(table, np.uint64(key), SEED, mask, shift)
        assert match_used(table, i) and int(table[i + L.MATCH_W_KEY]) == key and int(match_shares(table, i)) == n
    assert int((table.reshape(-1, W)[:, L.MATCH_W_USED] != 0).sum()) == len(expect)


@settings(max_examples=25, deadline=None)
@given(KEYS, st.data())
def test_the_engine_breaks_the_trade_each_b_names(keys, data):
    keys = [k for k in dict.fromkeys(keys)][:300]
    shares = {k: data.draw(st.integers(1, 1000)) for k in keys}
    broken_keys = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
    b = Books(64, table=64)   # a 16-row match index: grown several times on the way
    b.apply(encode([directory(1, "AAPL"), *[trade(1, shares[k], 10_000, match=k) for k in keys],
                    *[broken(1, k) for k in broken_keys], broken(1, 0)]))
    assert b.volume("AAPL") == sum(shares.values()) - sum(shares[k] for k in broken_keys)
    a = b.anomalies()
    assert a["unknown_match"] == (0 not in shares) and a["duplicate_match"] == 0
