"""Recording events for symbols named before their stock directory message (R) was applied.

The README's recipe is ``books = Books(); books.record(["AAPL"], ...); books.replay(day)``:
before the replay the books know no symbol. The expectation is independent of the by-name
path: the same day with every stock recorded, its events filtered to the locates the
directory gives those symbols afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_book_support import add, directory, encode, execute
from test_net_loopback import synthetic_day

from itchflow import Books
from itchflow.book.sharded import ShardedBooks

P = 10_000


@pytest.fixture(scope="module")
def day() -> np.ndarray:
    return synthetic_day(200_000, seed=5)


@pytest.fixture(scope="module")
def everything(day) -> tuple[Books, tuple]:
    b = Books()
    b.record(None, bbo=True, trades=True, l2=True)
    b.apply(day, 1)
    return b, b.take_events()


def _only(events, locates) -> list[np.ndarray]:
    return [e.view(np.ndarray)[np.isin(e["stock_locate"], locates)] for e in events]


def _symbols(books: Books, k: int) -> list[str]:
    """k symbols of the day: the busiest by trades, and one quiet one."""
    by_trades = np.argsort(-books.stocks["trades"], kind="stable")
    return [books.symbol(int(loc)) for loc in by_trades[:k - 1]] + [books.symbol(int(by_trades[60]))]


def _assert_events(got, want) -> None:
    for g, w in zip(got, want):
        assert len(w) > 0
        np.testing.assert_array_equal(g.view(np.ndarray), w)


@pytest.mark.parametrize("threads", [1, 2])
def test_symbols_named_before_their_directory_record_what_recording_all_then_filtering_gives(
        day, everything, threads):
    ref, ref_events = everything
    names = _symbols(ref, 4)
    locates = [ref.locate(s) for s in names]
    b = Books() if threads == 1 else ShardedBooks(threads)
    assert b.symbols == {}
    b.record(names, bbo=True, trades=True, l2=True)
    b.record(iter([names[0]]), bbo=True, trades=True, l2=True)   # an iterator: every shard takes it
    assert sorted(b.waiting_symbols) == sorted(names)
    b.apply(day, 1)
    assert b.waiting_symbols == []
    _assert_events(b.take_events(), _only(ref_events, locates))
    if threads == 2:
        b.close()


def test_each_stream_is_recorded_as_the_call_for_that_symbol_asked(day, everything):
    ref, (bbo, trades, l2) = everything
    first, second, third, _ = _symbols(ref, 4)
    b = Books()
    b.record([first], bbo=True, trades=False, l2=False)
    b.record([second, third], bbo=False, trades=True, l2=True)
    b.record(third, bbo=False, trades=False, l2=False)       # a later call overrides an earlier one
    b.replay(day)
    got_bbo, got_trades, got_l2 = b.take_events()
    loc = [ref.locate(s) for s in (first, second, third)]
    _assert_events([got_bbo], _only([bbo], [loc[0]]))
    _assert_events([got_trades, got_l2], _only([trades, l2], [loc[1]]))


def test_record_for_every_stock_replaces_what_was_waiting(day):
    b = Books()
    b.record(["ZZZZ"], bbo=True, trades=True)
    b.record(None, bbo=False, trades=False)
    assert b.waiting_symbols == []
    b.apply(day, 1)
    assert [len(e) for e in b.take_events()] == [0, 0, 0]


def test_a_symbol_the_day_never_names_stays_waiting_and_records_nothing(day, everything):
    ref, (bbo, _, _) = everything
    known = _symbols(ref, 2)[0]
    b = Books()
    b.record([known, "NOSUCH"], bbo=True, trades=False)
    b.apply(day, 1)
    assert b.waiting_symbols == ["NOSUCH"]
    _assert_events([b.take_events()[0]], _only([bbo], [ref.locate(known)]))


def test_recording_starts_at_the_directory_message_and_follows_every_locate_it_is_given():
    """Hand-worked: locate 1 trades before its R (recorded by nobody: it has no symbol yet),
    then its R names AAPL, then it trades again (recorded). A second R gives AAPL locate 3 too;
    its trade is recorded as well."""
    b = Books(64, table=1024)
    b.record("AAPL", bbo=False, trades=True)
    b.apply(encode([add(1, 1, "B", 100, 10 * P), execute(1, 1, 10, 1),
                    directory(1, "AAPL"), execute(1, 1, 20, 2),
                    directory(3, "AAPL"), add(3, 2, "S", 50, 11 * P), execute(3, 2, 5, 3)]))
    trades = b.take_events()[1]
    assert trades[["stock_locate", "shares", "match_number"]].tolist() == [(1, 20, 2), (3, 5, 3)]


def test_bad_names_are_refused_before_anything_changes():
    b = Books(64, table=1024)
    with pytest.raises(ValueError, match="not an ITCH symbol: 'TOOLONGNAME'"):
        b.record(["AAPL", "TOOLONGNAME"])
    with pytest.raises(TypeError, match="not True"):
        b.record(["AAPL", True])
    with pytest.raises(KeyError, match="out of range"):
        b.record(["AAPL", 70_000])
    assert b.waiting_symbols == [] and not b.stocks["record_bbo"].any()


def test_the_pipeline_records_symbols_named_before_the_day(tmp_path, day, everything):
    from itchflow.pipeline import run_pipeline

    ref, ref_events = everything
    names = _symbols(ref, 3)
    path = tmp_path / "day.itch"
    path.write_bytes(day.tobytes())
    books = Books()
    books.record(names, bbo=True, trades=True, l2=True)
    run_pipeline(str(path), books=books, batch_bytes=64 << 10)
    _assert_events(books.take_events(), _only(ref_events, [ref.locate(s) for s in names]))
