"""Every event names its stock as the stock directory named it at the event's place.

A locate that an R renames mid-day (a directory_conflict: rare, but a feed or a rewritten file
can carry one) once had its earlier events named by the directory as it stood when they were
taken: one slice gave "CCC" for events that happened under "BBB", 512-byte slices gave "BBB",
so the output of ``itchflow trades`` depended on the file's size. The expectation here is a
hand-worked list: which name was in force before each event, read off the message list.
"""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest

from test_book_support import add, directory, encode, execute

from itchflow import Books
from itchflow.book.sharded import ShardedBooks
from itchflow.sinks.events import events_to_parquet

P = 10_000

# locate 2: R BBB, a resting order, a trade; R CCC (a rename), a trade; R DDD, a trade.
# locate 3: a trade before its R (no name yet), then R EEE, a trade. locate 1: AAA throughout.
MESSAGES = [
    directory(1, "AAA"), directory(2, "BBB"),
    add(1, 1, "B", 100, 10 * P), add(2, 2, "S", 100, 20 * P), add(3, 3, "B", 100, 30 * P),
    execute(2, 2, 10, 1), execute(1, 1, 5, 2), execute(3, 3, 1, 3),
    directory(2, "CCC"),
    execute(2, 2, 10, 4), execute(1, 1, 5, 5),
    directory(3, "EEE"), directory(2, "DDD"),
    execute(3, 3, 1, 6), execute(2, 2, 10, 7),
]
# the trades in order, each with the name in force at it (b"" before the locate's first R)
TRADE_NAMES = [(2, b"BBB"), (1, b"AAA"), (3, b""), (2, b"CCC"), (1, b"AAA"), (3, b"EEE"), (2, b"DDD")]
ARROW_NAMES = ["BBB", "AAA", "3", "CCC", "AAA", "EEE", "DDD"]   # unnamed: the locate as text


@pytest.fixture(scope="module")
def day() -> np.ndarray:
    return np.frombuffer(encode(MESSAGES), np.uint8)


def _boundaries(day: np.ndarray) -> list[int]:
    """The byte offset after each message (BinaryFILE: a 2-byte length, then the body)."""
    out, pos = [], 0
    while pos < len(day):
        pos += 2 + (int(day[pos]) << 8 | int(day[pos + 1]))
        out.append(pos)
    return out


def _pieces(day, cut_every: int):
    """The day applied in pieces of cut_every messages, the events taken after each piece."""
    ends = _boundaries(day)[cut_every - 1::cut_every]
    if not ends or ends[-1] != len(day):
        ends.append(len(day))
    start = 0
    for end in ends:
        yield day[start:end]
        start = end


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cut_every", [1, 2, 3, 5, len(MESSAGES)])
def test_each_trade_is_named_by_the_r_in_force_where_it_happened_whatever_the_pieces(day, threads, cut_every):
    b = Books() if threads == 1 else ShardedBooks(threads)
    b.record(None, bbo=True, trades=True, l2=True)
    trades, bbo = [], []
    for piece in _pieces(day, cut_every):
        b.apply(piece)
        ev_bbo, ev_trades, _ = b.take_events()
        trades.append(ev_trades.view(np.ndarray))
        bbo.append(ev_bbo.view(np.ndarray))
    trades = np.concatenate(trades)
    assert list(zip(trades["stock_locate"].tolist(), trades["symbol"].tolist())) == TRADE_NAMES
    # every BBO change of locate 2 happened under BBB (its add, its first trade) or later names
    bbo = np.concatenate(bbo)
    assert [n for loc, n in zip(bbo["stock_locate"].tolist(), bbo["symbol"].tolist()) if loc == 2] == \
        [b"BBB", b"BBB", b"CCC", b"DDD"]
    # the stop before each rename leaves the counts as one pass gives them
    assert b.anomalies(2)["directory_conflict"] == 2 and b.anomalies(3)["directory_conflict"] == 0
    assert b.symbol(2) == "DDD" and b.symbol(3) == "EEE"


def test_the_names_survive_arrow_pandas_pickle_and_slicing(day):
    b = Books()
    b.record(None, bbo=False, trades=True, l2=False)
    b.apply(day)
    _, trades, _ = b.take_events()
    assert trades.to_arrow().column("symbol").to_pylist() == ARROW_NAMES
    assert trades.to_pandas()["symbol"].tolist() == ARROW_NAMES
    back = pickle.loads(pickle.dumps(trades))
    assert back.to_arrow().column("symbol").to_pylist() == ARROW_NAMES
    assert trades[3:].to_arrow().column("symbol").to_pylist() == ARROW_NAMES[3:]
    assert trades[trades["stock_locate"] == 2].to_arrow().column("symbol").to_pylist() == ["BBB", "CCC", "DDD"]


def test_one_field_of_an_event_stream_is_a_plain_array(day):
    """Probe 59: ``trades["price"]`` was still an Events, whose to_pandas() failed on a None and
    whose sum() was a 0-d Events. A field is a plain numpy array; rows stay an Events."""
    import pandas as pd

    from itchflow.book.events import Events

    b = Books()
    b.record(None, bbo=False, trades=True, l2=False)
    b.apply(day)
    _, trades, _ = b.take_events()
    price = trades["price"]
    assert type(price) is np.ndarray and price.dtype == trades.dtype["price"]
    assert int(price.sum()) == sum(int(p) for p in np.asarray(trades.view(np.ndarray)["price"]))
    assert type(trades["shares"].sum()) is not Events and pd.Series(price).sum() == price.sum()
    assert type(trades[1:]) is Events and type(trades[trades["shares"] > 0]) is Events
    assert type(trades[0]["price"]) is not Events


def test_a_ring_does_not_pickle_and_says_what_to_do(ring_path):
    from itchflow.ring import Ring

    with Ring.create(ring_path, 1 << 14) as ring:
        with pytest.raises(TypeError, match=r"does not pickle: pass its path and call Ring.open\(path\)"):
            pickle.dumps(ring)


def test_a_day_without_renames_is_named_by_one_lookup_per_locate_and_takes_no_extra_stop(day):
    # (the R messages of an ordinary day come before its orders: nothing is pending at them)
    plain = np.frombuffer(encode(MESSAGES[:8]), np.uint8)
    b = Books()
    b.record(None, trades=True)
    b.apply(plain)
    assert b.growth_log == []
    _, trades, _ = b.take_events()
    assert trades["symbol"].tolist() == [b"BBB", b"AAA", b""]
    assert b.type_counts[ord("R")] == 2


def test_the_stops_before_renames_leave_the_message_counts_whole(day):
    b = Books()
    b.record(None, trades=True)
    b.apply(day)
    assert b.type_counts[ord("R")] == 5 and b.type_counts[ord("E")] == 7
    assert b.messages == len(MESSAGES)


@pytest.mark.parametrize("slice_bytes", [64, 512, 1 << 25])
def test_trades_parquet_keeps_each_name_apart_whatever_the_slice(tmp_path, day, monkeypatch, slice_bytes):
    """``trades -s BBB`` after a rename: BBB's rows (those under BBB), not an error saying the
    day never listed BBB, nor CCC's rows under BBB's name."""
    import functools

    import itchflow.book.books as books_module
    from itchflow.book.replay import replay

    path = tmp_path / "day.itch"
    path.write_bytes(day.tobytes())
    monkeypatch.setattr(books_module, "replay", functools.partial(replay, slice_bytes=slice_bytes))
    for symbols, want in ((None, ARROW_NAMES), (["BBB"], ["BBB"]), (["CCC", "DDD"], ["CCC", "DDD"]),
                          (["EEE"], ["EEE"])):
        out = tmp_path / f"t{slice_bytes}-{symbols}.parquet"
        events_to_parquet(path, out, "trades", symbols)
        table = pq.read_table(out)
        assert table.column("symbol").to_pylist() == want, symbols
    with pytest.raises(KeyError, match="no stock directory .R. message for ZZZ"):
        events_to_parquet(path, tmp_path / "z.parquet", "trades", ["ZZZ"])


def test_a_symbol_renamed_away_is_not_waiting():
    b = Books()
    b.record(["BBB", "ZZZ"], trades=True)
    b.apply(np.frombuffer(encode(MESSAGES), np.uint8))
    assert b.waiting_symbols == ["ZZZ"]


@pytest.mark.parametrize("threads", [1, 2])
def test_recording_by_name_follows_the_name_not_the_locate(day, threads):
    """record(["BBB"]) records locate 2 while it is BBB: the rename to CCC is another stock,
    and ["CCC"] starts at the rename (and stops at DDD)."""
    for names, want in ((["BBB"], [(2, b"BBB")]), (["CCC"], [(2, b"CCC")]), (["DDD", "AAA"],
                        [(1, b"AAA"), (1, b"AAA"), (2, b"DDD")])):
        b = Books() if threads == 1 else ShardedBooks(threads)
        b.record(names, bbo=False, trades=True)
        b.apply(day)
        _, trades, _ = b.take_events()
        assert list(zip(trades["stock_locate"].tolist(), trades["symbol"].tolist())) == want, names


def test_a_feed_renaming_a_locate_before_every_trade_names_each_trade_by_its_r():
    """Probe 47: R messages renaming one locate back and forth, a trade after each. Each R stops
    the engine to name what came before it; the naming works on those events only (it made
    every locate's name again, 1 ms a stop). Every trade keeps the name in force at it."""
    from test_book_support import trade

    names = ["AAAA", "B", "CC C", "DDDDDDDD"]   # short, inner space, all 8 characters
    msgs = []
    for i in range(3000):
        msgs += [directory(1, names[i % 4]), trade(1, 100, 10 * P, i + 1, symbol=names[i % 4])]
    b = Books()
    b.record(None, trades=True)
    b.apply(encode(msgs))
    _, trades, _ = b.take_events()
    assert trades["symbol"].tolist() == [names[i % 4].encode() for i in range(3000)]
    assert trades.to_arrow().column("symbol").to_pylist()[:4] == names
    assert b.anomalies(1)["directory_conflict"] == 2999


def test_symbol_words_strip_trailing_spaces_only():
    from itchflow.book.events import _symbol_words

    texts = [b"AAPL    ", b"        ", b" X      ", b"A B     ", b"ABCDEFGH", b"\x00\x00\x00\x00\x00\x00\x00\x00"]
    symbols = np.frombuffer(b"".join(texts), "<u8")
    got = _symbol_words(symbols, np.array([5, 4, 3, 2, 1, 0, 0], np.uint16))
    assert [int(w).to_bytes(8, "little").rstrip(b"\x00") for w in got] == \
        [b"", b"ABCDEFGH", b"A B", b" X", b"", b"AAPL", b"AAPL"]
