"""Deep books: the price -> level index (book.level_index) against the slow reference book.

The reference tests' random days keep prices on an 11-price grid, so no book there is deep
enough to be indexed (``level_index.INDEX_MIN_CAP``). Here every side holds dozens to
hundreds of levels around a touch that moves, with far prices, price 0 and the largest
Price(4) (2,000,000,000) mixed in; adds, deletes, executions, cancels and replaces (to other,
possibly far, prices) at every depth. Full depth, every queue, BBO and volumes are compared
with the reference at checkpoints, including across growth of the levels array (which
rebuilds the index) and a book that turns deep mid-day.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_book_reference import compare, run_day
from test_book_support import ReferenceBook, add, cancel, delete, directory, encode, execute, replace

from itchflow import Books
from itchflow.book import layout as L
from itchflow.book.level_index import INDEX_MIN_CAP, buckets_for, bucket_of, shift_for

MAX_PRICE = 2_000_000_000  # Price(4) 200,000.0000


def deep_day(seed: int, n: int, stocks: int = 2, spread: int = 150, far: float = 0.1) -> list[dict]:
    """Consistent messages whose books grow deep: prices within `spread` cents of a touch that
    drifts, a `far` share anywhere in 0..MAX_PRICE, and some at exactly 0 and MAX_PRICE."""
    rng = np.random.default_rng(seed)
    msgs = [directory(i + 1, f"D{i}") for i in range(stocks)]
    touch = {loc: 10_000_000 for loc in range(1, stocks + 1)}  # $1,000.00
    live: dict[int, list] = {}
    next_ref, next_match, ts = 1 + seed % 1000, 1, 0

    def price(loc: int) -> int:
        r = rng.random()
        if r < 1 - far:
            return int(min(MAX_PRICE, max(0, touch[loc] + 100 * int(rng.integers(-spread, spread + 1)))))
        if r < 1 - far / 3:
            return int(rng.integers(0, MAX_PRICE + 1))
        return int(rng.choice([0, 1, 100, MAX_PRICE - 100, MAX_PRICE]))

    for i in range(n):
        ts += int(rng.integers(0, 1000))
        loc = int(rng.integers(1, stocks + 1))
        if i % 97 == 0:  # the touch moves (the busy prices move with it)
            touch[loc] += 100 * int(rng.integers(-40, 41))
        r = rng.random()
        if r < 0.5 or len(live) < 50:
            ref = next_ref * 7919  # not monotonic in the table's hash
            next_ref += 1
            side = "B" if rng.random() < 0.5 else "S"
            msgs.append(add(loc, ref, side, int(rng.integers(1, 500)), price(loc), ts, f"D{loc - 1}"))
            live[ref] = [loc, side, msgs[-1]["shares"]]
            continue
        refs = list(live)
        ref = refs[int(rng.integers(len(refs)))]
        oloc, side, shares = live[ref]
        if r < 0.75:
            msgs.append(delete(oloc, ref, ts))
            del live[ref]
        elif r < 0.83:
            k = int(rng.integers(1, shares + 1))
            msgs.append(execute(oloc, ref, k, next_match, ts))
            next_match += 1
            if k == shares:
                del live[ref]
            else:
                live[ref][2] -= k
        elif r < 0.90:
            if shares > 1:
                k = int(rng.integers(1, shares))
                msgs.append(cancel(oloc, ref, k, ts))
                live[ref][2] -= k
        else:
            new = next_ref * 7919
            next_ref += 1
            k = int(rng.integers(1, 500))
            msgs.append(replace(oloc, ref, new, k, price(oloc), ts))
            del live[ref]
            live[new] = [oloc, side, k]
    return msgs


def _index_consistent(books: Books) -> None:
    """Every live level of an indexed book is in its bucket's chain, and nothing else is."""
    lv = books.levels
    n = buckets_for(len(lv))
    assert books.ctl[L.C_LEVEL_BUCKETS] == n
    mask, shift = n - 1, shift_for(n)
    chained = set()
    for h in range(n):
        cur = int(lv[h]["bucket"]) - 1
        while cur >= 0:
            assert bucket_of(int(lv[cur]["book"]), int(lv[cur]["price"]), books.hash_seed, mask, shift) == h
            chained.add(cur)
            cur = int(lv[cur]["next_free"]) - 1
    deep = {b for b in range(L.N_BOOKS) if books.books[b]["cap"] >= INDEX_MIN_CAP}
    expected = {int(books.ladder[books.books[b]["start"] + k]) & 0xFFFFFFFF for b in deep
                for k in range(int(books.books[b]["length"]))}
    assert chained == expected


@pytest.mark.parametrize("far", [False, True], ids=["near", "far-lookahead"])
def test_deep_books_match_reference(far):
    msgs = deep_day(1, 5000)
    books, ref = run_day(msgs, 2, 1, capacity=64, table=4096, far=far)
    depths = [len(side) for loc in (1, 2) for side in books.depth(loc)]
    assert max(depths) > 4 * INDEX_MIN_CAP  # the index was used, on deep books
    assert (books.books["cap"] >= INDEX_MIN_CAP).sum() >= 4
    _index_consistent(books)


def test_growth_rebuilds_the_index():
    """Tiny levels array: it grows (and the index is rebuilt) while books are deep."""
    msgs = deep_day(2, 4000, far=0.3)
    small = Books(16, table=64, levels=4, arena=8)
    data = encode(msgs)
    ref = ReferenceBook()
    half = len(encode(msgs[:2000]))
    small.apply(data[:half])
    for i, m in enumerate(msgs[:2000]):
        ref.apply(m, i + 1)
    compare(small, ref, 2)
    _index_consistent(small)
    small.apply(data[half:], first_seq=2001)
    for i, m in enumerate(msgs[2000:], start=2000):
        ref.apply(m, i + 1)
    compare(small, ref, 2)
    _index_consistent(small)
    assert len(small.levels) > 4 * INDEX_MIN_CAP


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), spread=st.sampled_from([10, 60, 400]),
       far=st.sampled_from([0.0, 0.05, 0.5]), lookahead=st.booleans())
def test_hypothesis_deep_days_match_reference(seed, spread, far, lookahead):
    msgs = deep_day(seed, 700, stocks=1, spread=spread, far=far)
    books, _ = run_day(msgs, 1, seed, capacity=16, table=1024, far=lookahead)
    _index_consistent(books)
