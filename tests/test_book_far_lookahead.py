"""The engine's far look-ahead (``layout.FAR_TABLE``; taken on its own only with order tables of
4 M rows and more) prefetches more and must change nothing else: on generated days with their
bytes corrupted at random (references, locates, prices and sides that name anything, messages
of the wrong length), the books, counters, anomalies and events with it forced on equal the
ones without it, and a format error names the same offset."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_book_level_index import deep_day
from test_book_support import encode

from itchflow.book import layout as L
from itchflow.book.books import Books
from itchflow.book.level_index import INDEX_MIN_CAP
from itchflow.errors import ITCHFormatError

# deep books (hundreds of levels a side, indexed) with replaces, executions and far prices
_STOCKS = 3
_MSGS = deep_day(5, 6000, stocks=_STOCKS, far=0.2)
_DAY = np.frombuffer(encode(_MSGS), np.uint8)


def _run(data: np.ndarray, far: bool):
    b = Books(64, table=256, levels=16, arena=64)  # small: every resource grows during the day
    b.ctl[L.C_FAR_TABLE] = 1 if far else 0
    b.record(l2=True)
    err = None
    try:
        b.apply(data)
    except ITCHFormatError as e:
        err = e.offset
    return b, err


def _assert_same(a: Books, b: Books) -> None:
    assert a.messages == b.messages and a.live_orders() == b.live_orders()
    assert np.array_equal(a.type_counts, b.type_counts)
    assert np.array_equal(a.anomaly_counts, b.anomaly_counts)
    assert np.array_equal(a.stocks, b.stocks)
    assert np.array_equal(a.order_table(), b.order_table())
    for loc in range(1, _STOCKS + 1):
        for x, y in zip(a.depth(loc), b.depth(loc)):
            assert np.array_equal(x, y)
    for x, y in zip(a.take_events(), b.take_events()):
        assert np.array_equal(x, y)


def test_the_far_lookahead_changes_nothing_on_a_clean_day():
    near, e1 = _run(_DAY, far=False)
    far, e2 = _run(_DAY, far=True)
    assert e1 is e2 is None and near.messages == len(_MSGS)
    assert (near.books["cap"] >= INDEX_MIN_CAP).sum() >= 2 * _STOCKS  # every book deep: indexed
    _assert_same(near, far)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 400))
def test_the_far_lookahead_changes_nothing_on_corrupted_days(seed, flips):
    rng = np.random.default_rng(seed)
    data = _DAY.copy()
    where = rng.integers(0, len(data), flips)
    data[where] = rng.integers(0, 256, flips, dtype=np.uint8)
    near, e1 = _run(data, far=False)
    far, e2 = _run(data, far=True)
    assert e1 == e2
    _assert_same(near, far)
