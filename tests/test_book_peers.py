"""The engine against peers and real data: itchcpp's C++ BookManager (BBO of every stock
after a generated day) and the real Nasdaq captures (replayed without error)."""

from __future__ import annotations

import itchcpp.book as itchcpp_book  # a required test dependency (pyproject [test]): missing is a failure
import pytest

from test_book_support import encode, quote, random_day

from itchflow import Books
from itchflow.sim.generator import generate_day
from itchflow.sources.files import iter_chunks
from itchflow.wire.itch import PRICE4_SCALE


def _cpp_bbo(bm, symbol):
    q = bm.book_for_symbol(symbol).bbo()
    bid = (round(q.bid_price * PRICE4_SCALE), q.bid_shares) if q.has_bid else (0, 0)
    ask = (round(q.ask_price * PRICE4_SCALE), q.ask_shares) if q.has_ask else (0, 0)
    return bid + ask


def _generated_day(messages, seed, stocks):
    return generate_day(messages, seed, stocks=stocks)


@pytest.mark.parametrize("seed", [1, 2])
def test_bbo_of_every_stock_agrees_with_itchcpp_on_a_generated_day(seed):
    day = _generated_day(150_000, seed, 25)
    bm = itchcpp_book.BookManager()
    bm.process_stream(day.tobytes())
    books = Books(1 << 12, table=1 << 12)
    books.apply(day)
    assert books.symbols and bm.book_count() == len(books.symbols)
    differ = {s: (quote(books, s), _cpp_bbo(bm, s)) for s in books.symbols if quote(books, s) != _cpp_bbo(bm, s)}
    assert not differ
    assert sum(books.anomalies().values()) == 0


def test_bbo_agrees_with_itchcpp_on_an_itchfeed_day():
    msgs = random_day(21, 3000, stocks=4)
    data = encode(msgs)
    bm = itchcpp_book.BookManager()
    bm.process_stream(data)
    books = Books(64, table=1024)
    books.apply(data)
    for s in books.symbols:
        assert quote(books, s) == _cpp_bbo(bm, s), s


def test_real_captures_replay_without_error(all_captures):
    import itchflow

    for path in all_captures:
        books = Books(64, table=1024)
        for chunk in iter_chunks(path):
            books.apply(chunk.data, chunk.first_sequence, source=chunk.source)
        decoded = itchflow.read(path)
        counts = {k: len(v) for k, v in decoded.items() if len(v)}
        assert books.messages == sum(counts.values()), path
        if set(counts) <= {"A", "F"}:
            assert books.live_orders() == counts.get("A", 0) + counts.get("F", 0), path
        if len(counts) == 1 and set(counts) <= set("EXDCU"):  # a lone modification: nothing to modify
            assert books.anomalies()["unknown_reference"] == sum(counts.values()), path
            assert books.live_orders() == 0
