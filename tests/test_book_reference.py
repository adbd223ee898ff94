"""The engine against the slow reference book (tests/test_book_support.py) on random days.

Full depth of both sides of every stock, every level's queue (refs, shares, MPIDs in time
priority), volumes, VWAP numerators, anomaly counters per kind and stock, BBO events and
trades, compared at many random checkpoints. The bytes are written by itchfeed.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_book_support import ANOMALY_KINDS, ReferenceBook, add, delete, directory, encode, quote, random_day

from itchflow import Books
from itchflow.book import layout as L


def _message_bounds(msgs):
    """Byte offset of the end of each message in encode(msgs)."""
    sizes = [len(encode([m])) for m in msgs]
    return np.cumsum(sizes)


def compare(books: Books, ref: ReferenceBook, stocks: int) -> None:
    for loc in range(1, stocks + 1):
        bids, asks = books.depth(loc)
        assert [tuple(r) for r in bids.tolist()] == ref.depth(loc, "B"), f"bids of {loc}"
        assert [tuple(r) for r in asks.tolist()] == ref.depth(loc, "S"), f"asks of {loc}"
        for side, levels in (("B", bids), ("S", asks)):
            for price in levels["price"]:
                assert books.orders(loc, side, int(price)).tolist() == ref.queue(loc, side, int(price))
        bb = ref.top.get((loc, "B"), (0, 0))
        aa = ref.top.get((loc, "S"), (0, 0))
        assert quote(books, loc) == (bb[0], bb[1], aa[0], aa[1])
        s = books.stocks[loc]
        assert int(s["volume"]) == ref.volume[loc]
        assert int(s["notional"]) == ref.notional[loc]
        assert int(s["trades"]) == ref.trade_count[loc]
        state = ref.state.get(loc, "")
        assert books.trading_state(loc) == state
        for i, kind in enumerate(ANOMALY_KINDS):
            assert int(books.anomaly_counts[loc, i]) == ref.anomalies[(kind, loc)], (kind, loc)
    assert books.live_orders() == len(ref.orders)


def run_day(msgs, stocks, seed, capacity=64, table=1024, far=False):
    """Apply msgs in random slices, comparing with the reference after each. far: take the
    engine's far look-ahead (layout.C_FAR_TABLE) whatever the table size."""
    data = encode(msgs)
    ends = _message_bounds(msgs)
    rng = np.random.default_rng(seed)
    cuts = sorted(set(rng.choice(len(msgs), size=min(25, len(msgs)), replace=False).tolist()) | {len(msgs) - 1})
    books = Books(capacity, table=table)
    if far:
        books.ctl[L.C_FAR_TABLE] = 1
    books.record()
    ref = ReferenceBook()
    start_msg, start_byte = 0, 0
    for cut in cuts:
        end_byte = int(ends[cut])
        books.apply(data[start_byte:end_byte], first_seq=start_msg + 1)
        for i in range(start_msg, cut + 1):
            ref.apply(msgs[i], i + 1)
        compare(books, ref, stocks)
        start_msg, start_byte = cut + 1, end_byte
    return books, ref


@pytest.mark.parametrize("far", [False, True], ids=["near", "far-lookahead"])
@pytest.mark.parametrize("seed", range(6))
def test_random_days_match_reference(seed, far):
    stocks = 1 + seed % 4
    msgs = random_day(seed, 3000, stocks=stocks, anomalies=seed % 2 == 1,
                      ref_style=("random", "strided", "dense")[seed % 3])
    books, ref = run_day(msgs, stocks, seed, far=far)
    bbo, trades, _ = books.take_events()
    got_bbo = [(int(r["sequence"]), int(r["stock_locate"]), int(r["bid_price"]), int(r["bid_shares"]),
                int(r["ask_price"]), int(r["ask_shares"])) for r in bbo]
    assert got_bbo == ref.bbo_events
    got_trades = [(int(r["sequence"]), int(r["stock_locate"]), int(r["price"]), int(r["shares"]),
                   int(r["match_number"]), r["kind"].decode(), int(r["printable"])) for r in trades]
    assert got_trades == ref.trades
    if seed % 2:
        assert sum(books.anomalies().values()) > 0  # the inconsistent messages were counted


def test_day_that_closes_all_orders_ends_empty():
    msgs = random_day(11, 4000, stocks=3, close_all=True)
    books, ref = run_day(msgs, 3, 11)
    assert books.live_orders() == 0 and len(ref.orders) == 0
    assert sum(books.anomalies().values()) == 0
    assert books.peak_live_orders > 100
    for loc in range(1, 4):
        bids, asks = books.depth(loc)
        assert len(bids) == 0 and len(asks) == 0
        assert quote(books, loc) == (0, 0, 0, 0)
    assert int(books.ctl[9]) == 0  # no live levels left either


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), style=st.sampled_from(["random", "strided", "dense"]),
       anomalies=st.booleans())
def test_hypothesis_days_match_reference(seed, style, anomalies):
    msgs = random_day(seed, 400, stocks=2, anomalies=anomalies, ref_style=style)
    run_day(msgs, 2, seed, capacity=16, table=1024)


def test_growth_keeps_state():
    """Tiny starting pool, table, levels and arena: every growth path runs mid-stream."""
    msgs = random_day(5, 6000, stocks=3, ref_style="dense")
    data = encode(msgs)
    small = Books(16, table=16, levels=4, arena=8)
    small.record(l2=True)
    small.apply(data)
    ref = ReferenceBook()
    for i, m in enumerate(msgs):
        ref.apply(m, i + 1)
    compare(small, ref, 3)
    assert len(small.order_rows) > 16 and len(small.levels) > 4 and len(small.ladder) > 8


_EDGE_PRICES = (0, 1, 2, 0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFFE, 0xFFFFFFFF)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prices=st.lists(st.one_of(st.sampled_from(_EDGE_PRICES), st.integers(0, 2**32 - 1),
                                 st.integers(0, 40)), min_size=1, max_size=120),
       sides=st.lists(st.sampled_from("BS"), min_size=120, max_size=120),
       deletes=st.lists(st.integers(0, 119), max_size=80))
def test_prices_anywhere_in_32_bits_sort_on_both_sides(prices, sides, deletes):
    """A ladder entry packs the level's key (the price, or its complement for asks) with the
    level id into 64 bits: levels at any uint32 price, the extremes included, stay in price
    order on both sides, in shallow books and in deep (indexed) ones, as levels open and close."""
    msgs = [directory(1, "EDGE")]
    for i, price in enumerate(prices):
        msgs.append(add(1, 1000 + i, sides[i], 100 + i, price, symbol="EDGE"))
    for i in deletes:
        if i < len(prices):
            msgs.append(delete(1, 1000 + i))  # a second delete of one reference is an anomaly: counted
    books = Books(64, table=1024)
    books.apply(encode(msgs))
    ref = ReferenceBook()
    for i, m in enumerate(msgs):
        ref.apply(m, i + 1)
    compare(books, ref, 1)
