"""A feed cannot aim its keys at one slot of the books' hash tables (hash flooding).

The order table, the price -> level index and the match index hash with the top bits of a
seeded mix (``order_store.home_slot``): x = (key ^ seed) * G, x ^= x >> 32, x * M. With a known
seed a feed can pick keys that all land in one slot (the mix is a bijection: run it backwards
from the slot), and each add then probes every earlier one (probe 44: 100 k such adds took 4 s
against 0.01 s, under the multiplier alone). Each ``Books`` draws its seed at random, so the
same keys spread. The checks here count structure, not time: the longest run
of occupied rows a lookup may walk, and the longest chain of the level index. With seed 0
(the old, fixed hash) the crafted keys are shown to collide, so the tests show the attack is
real and that the random seed is what stops it. What the books hold never depends on the seed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_book_support import add, delete, directory, encode, random_day

from itchflow.book import layout as L
from itchflow.book.books import Books
from itchflow.book.level_index import buckets_for

GOLDEN = 0x9E3779B97F4A7C15
MIX = 0xC4CEB9FE1A85EC53
M64 = 2**64 - 1
N_FLOOD = 4000


def _mix(key: int, seed: int) -> int:
    """The books' hash before its top bits are taken, written out here (``home_slot``)."""
    x = ((key ^ seed) * GOLDEN) & M64
    x ^= x >> 32
    return (x * MIX) & M64


def _unmix(y: int, seed: int) -> int:
    """The key whose mix is y: each step run backwards (the fold undoes itself: the high half
    passes through it unchanged)."""
    x = (y * pow(MIX, -1, 2**64)) & M64
    x ^= x >> 32
    return ((x * pow(GOLDEN, -1, 2**64)) & M64) ^ seed


def _longest_run(occupied: np.ndarray) -> int:
    """The longest run of True, wrapping around the end (linear probing wraps)."""
    if occupied.all():
        return len(occupied)
    start = int(np.argmin(occupied))  # a free row: unroll the table from it
    rolled = np.concatenate([occupied[start:], occupied[:start], [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], rolled])))
    return int((edges[1::2] - edges[0::2]).max()) if len(edges) else 0


def _flood_refs(n: int) -> list[int]:
    """Order references whose home slot under seed 0 is 0 in any table: their mixes are 1..n."""
    refs = [_unmix(j, 0) for j in range(1, n + 1)]
    assert all(_mix(r, 0) == j for j, r in enumerate(refs, 1))
    return refs


def _flooded(seed) -> Books:
    msgs = [directory(1, "AAA")]
    msgs += [add(1, ref, "B", 100, 10_000 + 100 * (i % 50), symbol="AAA") for i, ref in enumerate(_flood_refs(N_FLOOD))]
    books = Books(table=1 << 14, hash_seed=seed)  # no growth: the table's layout is the one built
    books.apply(encode(msgs))
    return books


def test_crafted_order_references_collide_without_a_secret_seed():
    """The attack is real for a known seed: under seed 0 every crafted reference sits in one run
    of rows, so finding the last one walks all of them."""
    books = _flooded(0)
    assert books.live_orders() == N_FLOOD
    assert _longest_run(books.order_rows["stamp"] != 0) == N_FLOOD


def test_crafted_order_references_spread_under_the_drawn_seed():
    books = _flooded(None)
    assert books.hash_seed != 0
    assert books.live_orders() == N_FLOOD
    # 4,000 of 16,384 rows (a quarter full): runs of a few rows, 40 would already be a 1e-12 event
    assert _longest_run(books.order_rows["stamp"] != 0) < 64
    # and the books are exact: every order is found again by its reference
    books.apply(encode([delete(1, ref) for ref in _flood_refs(N_FLOOD)]), first_seq=N_FLOOD + 2)
    assert books.live_orders() == 0 and books.anomalies("AAA")["unknown_reference"] == 0


def _level_chains(books: Books) -> list[int]:
    lv = books.levels
    out = []
    for h in range(buckets_for(len(lv))):
        n, cur = 0, int(lv[h]["bucket"]) - 1
        while cur >= 0:
            n, cur = n + 1, int(lv[cur]["next_free"]) - 1
        out.append(n)
    return out


def _colliding_prices(book: int, buckets: int, n: int) -> list[int]:
    """n prices whose level-index bucket is one bucket under seed 0, found by brute force (what
    a feed knowing the hash would do; a key here is book << 32 | price, so not any 64 bits)."""
    shift = np.uint64(64 - (buckets.bit_length() - 1))
    prices = np.arange(1, 1 << 24, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = ((np.uint64(book) << np.uint64(32)) | prices) * np.uint64(GOLDEN)
        x ^= x >> np.uint64(32)
        homes = (x * np.uint64(MIX)) >> shift
    hits = prices[homes == homes[0]]
    assert len(hits) >= n
    assert all(_mix((book << 32) | int(p), 0) >> int(shift) == int(homes[0]) for p in hits[:5])
    return [int(p) for p in hits[:n]]


@pytest.mark.parametrize("seed, aimed", [(0, True), (None, False)], ids=["seed-0", "drawn-seed"])
def test_crafted_prices_and_the_level_index(seed, aimed):
    levels = 1 << 12
    n = 600  # levels of one deep book (indexed), all in one bucket under seed 0
    prices = _colliding_prices(1 * 2 + L.BID, buckets_for(levels), n)
    msgs = [directory(1, "AAA")] + [add(1, i + 1, "B", 100, p, symbol="AAA") for i, p in enumerate(prices)]
    books = Books(table=1 << 12, levels=levels, hash_seed=seed)
    books.apply(encode(msgs))
    assert len(books.depth("AAA")[0]) == n
    longest = max(_level_chains(books))
    if aimed:
        assert longest == n
    else:
        assert longest < 12  # 600 levels in 4,096 buckets (the XOR alone left chains of 16: CI)


def test_the_seed_can_be_given_and_is_checked():
    assert Books(hash_seed=2**64 - 1).hash_seed == np.uint64(2**64 - 1)
    assert Books(hash_seed=12345).ctl[L.C_HASH_SEED] == 12345
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="hash_seed"):
            Books(hash_seed=bad)
    with pytest.raises(TypeError, match="hash_seed"):
        Books(hash_seed=1.5)
    assert Books().hash_seed != Books().hash_seed  # drawn afresh (a 2**-64 chance to fail)
    sharded = Books(threads=2, hash_seed=7)
    assert [s.hash_seed for s in sharded.shards] == [7, 7]


def _result(books: Books, symbols) -> tuple:
    return (books.bbo().tobytes(), books.order_table().tobytes(),
            tuple((s, tuple(a.tobytes() for a in books.depth(s))) for s in symbols),
            books.live_orders(), books.peak_live_orders, books.anomalies())


@settings(max_examples=6, deadline=None)
@given(day=st.integers(0, 2**31), seeds=st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)))
def test_what_the_books_hold_does_not_depend_on_the_seed(day, seeds):
    msgs = random_day(day, 3000, stocks=4, anomalies=True)
    data = encode(msgs)
    results = []
    for seed in seeds:
        # tiny tables: they grow (rehash with the seed) while the day is applied
        books = Books(16, table=16, levels=4, arena=8, hash_seed=seed)
        books.record(trades=True, bbo=True, l2=True)
        books.apply(data)
        events = books.take_events()
        symbols = sorted(books.symbols)
        results.append((_result(books, symbols), tuple(np.asarray(e).tobytes() for e in events)))
    assert results[0] == results[1]
