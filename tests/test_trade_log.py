"""The trade log (``book.trade_log``): a trade whose match number is the largest so far is
appended in order; any other goes to the match index after both are searched for a repeat.
Checked against the slow obvious way (a dict and a running maximum): whatever the order of
the numbers (in order, shuffled, repeated, anywhere in 64 bits), with B messages anywhere,
the engine's volume, its duplicate and unknown-match counts, and where each trade was kept
agree, through any number of growths of both."""

from __future__ import annotations

import bisect

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_book_support import broken, directory, encode, trade

from itchflow.book import layout as L
from itchflow.book.books import TRADE_LOG_ROWS_PER_ORDER_ROWS, Books
from itchflow.book.match_index import put_match
from itchflow.book.trade_log import log_find, log_keys

W = L.MATCH_WORDS
U64 = st.integers(0, 2**64 - 1)


@settings(max_examples=80, deadline=None)
@given(st.lists(U64, max_size=300, unique=True), st.lists(U64, max_size=50))
def test_log_find_is_a_binary_search_over_ascending_numbers(keys, probes):
    keys = sorted(keys)
    log = np.zeros((len(keys) + 3) * W, np.uint64)   # rows past n are never read
    for n, key in enumerate(keys):
        put_match(log, n * W, np.uint64(key), 1, 1, 0, n)
    assert log_keys(log, len(keys)).tolist() == keys
    for key in probes + keys:
        i = bisect.bisect_left(keys, key)
        want = i * W if i < len(keys) and keys[i] == key else -1
        assert int(log_find(log, len(keys), np.uint64(key))) == want


def _expected(events):
    """events: ('T', match, shares) or ('B', match). The slow obvious way."""
    kept, volume, dups, unknown, logged, top = {}, 0, 0, 0, 0, None
    for e in events:
        if e[0] == "T":
            _, m, shares = e
            volume += shares
            if m in kept:
                dups += 1
                continue
            kept[m] = [shares, False]
            if top is None or m > top:
                top, logged = m, logged + 1
        else:
            t = kept.get(e[1])
            if t is None or t[1]:
                unknown += 1
            else:
                t[1] = True
                volume -= t[0]
    return volume, dups, unknown, logged, len(kept) - logged


NUMBERS = st.one_of(
    st.integers(1, 40),                 # a small pool: repeats and out-of-order numbers
    st.integers(0, 2**64 - 1),          # anywhere in 64 bits
)
EVENTS = st.lists(st.one_of(
    st.tuples(st.just("T"), NUMBERS, st.integers(1, 1000)),
    st.tuples(st.just("B"), NUMBERS),
), max_size=400)


@settings(max_examples=60, deadline=None)
@given(EVENTS, st.booleans())
def test_the_engine_keeps_and_breaks_trades_in_any_order(events, ascending_first):
    if ascending_first:   # a feed in order, then anything: most trades go to the log
        events = [("T", 10**6 + k, 5) for k in range(100)] + events
    b = Books(64, table=64)   # a 16-row trade log and a 1 k-row match index: both grow on the way
    msgs = [directory(1, "AAPL")]
    for e in events:
        msgs.append(trade(1, e[2], 10_000, match=e[1]) if e[0] == "T" else broken(1, e[1]))
    b.apply(encode(msgs))
    volume, dups, unknown, logged, indexed = _expected(events)
    a = b.anomalies()
    assert b.volume("AAPL") == volume
    assert (a["duplicate_match"], a["unknown_match"]) == (dups, unknown)
    assert (int(b.ctl[L.C_LOG_N]), int(b.ctl[L.C_MATCH_USED])) == (logged, indexed)
    keys = log_keys(b.trade_log, logged).tolist()
    assert keys == sorted(set(keys))                   # strictly ascending: a binary search finds them


def test_trades_in_order_fill_the_log_and_never_the_match_index():
    """The log starts at a quarter of the order table's rows and doubles when full; a feed in
    order never hashes a match number."""
    assert TRADE_LOG_ROWS_PER_ORDER_ROWS == 4
    b = Books(table=1 << 12)
    assert int(b.ctl[L.C_LOG_CAP]) == len(b.trade_log) // W == 1 << 10
    assert len(Books(table=1 << 12, track_matches=False).trade_log) < (1 << 10) * W
    b.apply(encode([directory(1, "AAPL"), *[trade(1, 10, 100, match=7 + 3 * i) for i in range(1500)],
                    broken(1, 7 + 3 * 1499), broken(1, 7), broken(1, 8)]))
    assert int(b.ctl[L.C_LOG_CAP]) == 1 << 11 and int(b.ctl[L.C_LOG_N]) == 1500
    assert int(b.ctl[L.C_MATCH_USED]) == 0
    assert b.volume("AAPL") == 10 * 1498
    assert b.anomalies()["unknown_match"] == 1         # 8 was never a match number
