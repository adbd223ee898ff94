"""The numbers a caller hands the books are checked at the door (itchflow.arguments): a float is
not truncated, True is not read as 1 (or as the ask side), a negative stop time is not taken
for "never", and an int past int64 is a ValueError naming the argument, not an OverflowError
from inside. Each case was found by probing the API with odd arguments."""

from __future__ import annotations

import numpy as np
import pytest

from test_book_support import add, directory, encode

from itchflow import Books

P = 10_000
DAY = encode([directory(1, "AAPL"), add(1, 1, "B", 100, 10 * P, ts=5), add(1, 2, "S", 50, 11 * P, ts=7)])


@pytest.fixture(params=[1, 2], ids=["one thread", "two threads"])
def books(request):
    b = Books(threads=request.param)
    b.apply(DAY)
    return b


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("stop", [-1, -2, -(1 << 62)])
def test_a_negative_stop_time_is_refused_not_taken_for_never(stop, threads):
    b = Books(threads=threads)
    with pytest.raises(ValueError, match=r"stop_after_ns must be 0\.\."):
        b.apply(DAY, stop_after_ns=stop)
    assert b.live_orders() == 0   # nothing applied (it had applied the whole day)


@pytest.mark.parametrize("threads", [1, 2])
def test_stop_times_at_the_edges(threads):
    b = Books(threads=threads)
    # stop at 0 ns: the R (time 0, 2 + 39 bytes) is applied, the first add (time 5) is not
    assert b.apply(DAY, stop_after_ns=0) == 41 and b.stopped_at_time and b.live_orders() == 0
    b = Books(threads=threads)
    b.apply(DAY, stop_after_ns=(1 << 63) - 1)
    assert b.live_orders() == 2 and not b.stopped_at_time
    for bad, error in ((1 << 63, ValueError), (2 ** 64, ValueError), (1.5, TypeError), ("5", TypeError)):
        with pytest.raises(error, match="stop_after_ns"):
            Books(threads=threads).apply(DAY, stop_after_ns=bad)


def test_queries_refuse_what_they_would_have_truncated(books):
    assert books.orders("AAPL", "B", 10 * P).tolist() == [(1, 100, "")]
    assert books.orders("AAPL", b"S", 11 * P).tolist() == [(2, 50, "")]
    for side in (True, False, 1.0, None, "X"):
        with pytest.raises(ValueError, match="side must be 'B' or 'S'"):
            books.orders("AAPL", side, 10 * P)
    with pytest.raises(TypeError, match="price"):
        books.orders("AAPL", "B", 10 * P + 0.5)
    for price in (-1, 1 << 32):
        with pytest.raises(ValueError, match="price"):
            books.orders("AAPL", "B", price)
    with pytest.raises(TypeError, match="n \\(levels\\)"):
        books.depth("AAPL", 1.7)
    bids, asks = books.depth("AAPL", 1 << 70)    # more levels than there are: all of them
    assert bids.tolist() == [(10 * P, 100, 1)] and asks.tolist() == [(11 * P, 50, 1)]
    with pytest.raises(TypeError, match="not True"):
        books.depth(True)
    for symbol in ("\u0100PPL", "TOOLONGSYM", "", "   "):   # (Latin-1 is a name, as read() gives: probe 33)
        with pytest.raises(ValueError, match="not an ITCH symbol.*1 to 8 characters: ASCII, or Latin-1"):
            books.depth(symbol)
    with pytest.raises(KeyError):
        books.depth("ÄPPL")   # a name no R gave
    assert books.symbol(1) == "AAPL" and books.symbol(2) == "2"    # no R for locate 2
    for locate in (-1, 65536, 70000):
        with pytest.raises(KeyError, match="out of range"):
            books.symbol(locate)


def test_depth_of_none_or_minus_1_is_every_level_other_counts_below_1_are_refused(books):
    """depth(S, -2**63 - 1) raised a bare OverflowError from the compiled query; bbo(1.0)
    said "'float' object is not iterable". Probe 26 F4: depth(S, 0) gave nothing and any
    negative n every level, silently (depth(S, -1000)); only None and -1 mean every level."""
    for n in (-1, None):
        bids, asks = books.depth("AAPL", n)
        assert bids.tolist() == [(10 * P, 100, 1)] and asks.tolist() == [(11 * P, 50, 1)]
    for n in (0, -2, -1000, -(1 << 63) - 1, -(1 << 80)):
        with pytest.raises(ValueError, match="n \\(levels\\) must be at least 1, or None or -1"):
            books.depth("AAPL", n)
    for query in (books.bbo, books.order_table):
        for odd in (1.0, object()):
            with pytest.raises(TypeError, match="a symbol \\(str\\), a stock locate \\(int\\) or a list of them"):
                query(odd)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("option,value,error", [
    ("capacity", 1.5, TypeError), ("capacity", -1, ValueError), ("capacity", 1 << 62, ValueError),
    ("arena", -5, ValueError), ("table", 2.0, TypeError), ("levels", -1, ValueError),
    ("trades", 1 << 41, ValueError), ("far_table", -1, ValueError), ("capacity", True, TypeError),
])
def test_sizes_are_whole_numbers_in_range(threads, option, value, error):
    with pytest.raises(error, match=option):
        Books(threads=threads, **{option: value})


@pytest.mark.parametrize("threads,error", [(0, ValueError), (-3, ValueError), (1.5, TypeError), (256, ValueError)])
def test_threads_are_counted_not_guessed(threads, error):
    with pytest.raises(error, match="threads"):
        Books(threads=threads)


def test_first_sequence_and_byte_budget(books):
    for name, value, error in (("first_seq", 1 << 64, ValueError), ("first_seq", -1, ValueError),
                               ("max_bytes", -1, ValueError), ("max_bytes", 1.5, TypeError)):
        with pytest.raises(error, match=name):
            Books().apply(DAY, **{name: value})
    b = Books()
    assert b.apply(DAY, first_seq=7, max_bytes=10 ** 12) == len(DAY) and b.next_sequence == 10


@pytest.mark.parametrize("threads", [1, 2])
def test_runs_are_sequence_runs_given_with_the_place_they_start_at(threads):
    """apply(runs=): a SequenceRuns (a list is a TypeError), with first_seq the buffer's place
    in it (without, a ValueError before anything is applied); each event takes its message's
    number from its run, next_sequence the next message's, applied the messages taken."""
    import numpy as np

    from itchflow.wire.sequence_runs import SequenceRuns

    # DAY: the R alone a run numbered 5, then the two adds a run numbered from 0
    runs = SequenceRuns.of_runs(np.array([1, 2]), np.array([41, len(DAY) - 41]), np.array([5, 0]))
    b = Books(threads=threads)
    with pytest.raises(TypeError, match="runs must be a SequenceRuns"):
        b.apply(DAY, 0, runs=[(0, 5)])
    with pytest.raises(ValueError, match="first_seq"):
        b.apply(DAY, runs=runs)
    assert b.messages == 0
    b.record()
    assert b.apply(DAY, 0, runs=runs) == len(DAY)
    bbo, _, _ = b.take_events()
    assert bbo["sequence"].tolist() == [0, 1] and (b.next_sequence, b.applied) == (2, 3)
    with pytest.raises(ValueError, match="start at 0 and rise"):
        SequenceRuns(np.array([1, 2], np.uint64), np.array([0, 41], np.uint64), np.array([5, 0], np.uint64))
    with pytest.raises(ValueError, match="a run"):
        SequenceRuns(np.array([0], np.uint64), np.array([0, 41], np.uint64), np.array([5, 0], np.uint64))


@pytest.mark.parametrize("one", [bytearray(b"AAPL"), memoryview(b"AAPL"), b"AAPL", "AAPL", 1])
def test_a_symbol_in_any_bytes_like_object_is_one_symbol(books, one):
    """A bytearray or memoryview symbol was iterated as a list of locates (b"AAPL" -> locates
    65, 65, 80, 76) by bbo, order_table and record; depth took it as one symbol."""
    (row,) = books.bbo(one)
    assert (row["symbol"], row["locate"], row["bid_price"], row["ask_price"]) == ("AAPL", 1, 10 * P, 11 * P)
    assert books.order_table(one)["ref"].tolist() == [1, 2]


@pytest.mark.parametrize("threads", [1, 2])
def test_queries_before_anything_is_applied_give_empty_books(threads):
    """Books(threads=2).bbo() raised TypeError before the first apply (no shard map yet)."""
    b = Books(threads=threads)
    assert len(b.bbo()) == 0 and len(b.bbo([1, 2])) == 2 and not b.bbo([1, 2])["bid_shares"].any()
    bbo, trades, l2 = b.take_events()
    assert len(bbo) == len(trades) == len(l2) == 0 and hasattr(bbo, "to_pandas")


@pytest.mark.parametrize("threads", [1, 2])
def test_take_events_gives_events_with_symbols_on_any_number_of_threads(threads):
    """The sharded books merged their shards' events into plain ndarrays: no to_pandas() and
    no symbols, unlike one thread's."""
    b = Books(threads=threads)
    b.record(None)
    b.apply(DAY)
    bbo, _, _ = b.take_events()
    frame = bbo.to_pandas()
    assert frame["symbol"].tolist() == ["AAPL", "AAPL"]
    assert frame["bid_price"].tolist() == [10 * P, 10 * P] and frame["ask_price"].tolist() == [0, 11 * P]


# a float or a bool where a locate goes is a TypeError (a float was a ValueError or KeyError naming "1.0")
@pytest.mark.parametrize("odd", [1.0, np.float64(1), np.float32(1), True, np.True_],
                         ids=["float", "np.float64", "np.float32", "True", "np.True_"])
def test_a_float_or_bool_locate_is_a_type_error_in_every_query(books, odd):
    queries = [lambda: books.depth(odd), lambda: books.volume(odd), lambda: books.vwap(odd),
               lambda: books.trading_state(odd), lambda: books.anomalies(odd), lambda: books.locate(odd),
               lambda: books.orders(odd, "B", 10 * P), lambda: books.bbo([odd]), lambda: books.order_table([odd]),
               lambda: books.bbo(["AAPL", odd]), lambda: books.record([odd])]
    for query in queries:
        with pytest.raises(TypeError, match="a symbol \\(str\\) or a stock locate \\(int\\)"):
            query()


def test_a_float_array_of_locates_is_a_type_error(books):
    for query in (books.bbo, books.order_table, books.record):
        with pytest.raises(TypeError, match="not np.float64\\(1.0\\)"):
            query(np.array([1.0, 2.0]))


def test_int_and_text_locates_still_answer(books):
    for locate in (1, np.int64(1), np.uint16(1), "AAPL", " AAPL ", b"AAPL", np.str_("AAPL")):
        assert books.locate(locate) == 1
        bids, asks = books.depth(locate)
        assert bids.tolist() == [(10 * P, 100, 1)] and asks.tolist() == [(11 * P, 50, 1)]
    assert books.bbo(np.array([1], np.int64))[["bid_price", "ask_shares"]].tolist() == [(10 * P, 50)]
    assert books.bbo(np.array(["AAPL"]))["locate"].tolist() == [1]
    assert books.order_table(np.array([1, 2], np.uint16))["ref"].tolist() == [1, 2]
    books.record(np.array([1], np.int64))
    books.record(["AAPL", np.int64(1)])


@pytest.mark.parametrize("threads", [1, 2])
def test_record_flags_are_true_or_false(threads):
    """record(l2="no") recorded L2 (a truthy string) and bbo="yes" was taken (probe 31)."""
    b = Books(threads=threads)
    for kw in ({"l2": "no"}, {"bbo": "yes"}, {"trades": 0.5}, {"l2": None}):
        with pytest.raises(TypeError, match=f"{next(iter(kw))} must be True or False"):
            b.record(**kw)
    b.record(bbo=np.bool_(False), trades=True, l2=False)


def test_read_names_its_types_argument_when_it_is_not_types():
    """read(path, types=5) said "'int' object is not iterable" (probe 31)."""
    import itchflow

    day = encode([directory(1, "AAPL"), add(1, 1, "B", 100, 10_000)])
    for odd in (5, b"AF", 1.5):
        with pytest.raises(TypeError, match="types must be letters"):
            itchflow.read(np.frombuffer(day, np.uint8), types=odd)
    assert itchflow.read(np.frombuffer(day, np.uint8), types="A").counts["A"] == 1
