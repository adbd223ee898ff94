"""Hand-worked scenarios: one per message type and per semantic rule (DESIGN.md section 3).

Every expected value below is worked out by hand from the messages, not taken from the engine.
Messages are written by itchfeed (test_book_support.encode).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from test_book_support import (add, broken, cancel, cross, delete, directory, encode, execute,
                               execute_price, halt, replace, trade)

import itchflow
from itchflow import Books
from itchflow.errors import ITCHFormatError

P = 10_000  # $1.00 in Price(4)


def books_after(*msgs, record=True, **kw) -> Books:
    b = Books(64, table=1024, **kw)
    if record:
        b.record()
    b.apply(encode([directory(1, "AAPL"), directory(2, "MSFT"), *msgs]))
    return b


def test_add_builds_levels_best_first_with_fifo_queues():
    b = books_after(
        add(1, 11, "B", 100, 100 * P), add(1, 12, "B", 200, 100 * P), add(1, 13, "B", 50, 99 * P),
        add(1, 21, "S", 70, 101 * P), add(1, 22, "S", 30, 102 * P), add(1, 23, "S", 5, 101 * P),
    )
    bids, asks = b.depth("AAPL")
    assert bids.tolist() == [(100 * P, 300, 2), (99 * P, 50, 1)]
    assert asks.tolist() == [(101 * P, 75, 2), (102 * P, 30, 1)]
    assert b.bbo("AAPL").tolist() == [("AAPL", 1, 100 * P, 300, 101 * P, 75)]
    assert b.orders("AAPL", "B", 100 * P).tolist() == [(11, 100, ""), (12, 200, "")]
    assert b.orders("AAPL", "S", 101 * P).tolist() == [(21, 70, ""), (23, 5, "")]
    assert b.live_orders() == 6
    assert b.depth("AAPL", 1)[0].tolist() == [(100 * P, 300, 2)]
    assert len(b.depth("MSFT")[0]) == 0


def test_f_keeps_its_mpid_and_u_inherits_it():
    b = books_after(add(1, 1, "S", 100, 50 * P, mpid="GSCO"), replace(1, 1, 2, 40, 51 * P))
    assert b.orders("AAPL", "S", 51 * P).tolist() == [(2, 40, "GSCO")]
    assert b.orders("AAPL", "S", 50 * P).tolist() == []


def test_an_mpid_past_ascii_reads_as_read_reads_it():
    """Books decoded MPIDs as ASCII with replacement: b"AB\\xe9 " and b"AB\\xe8 " were both
    "AB\\ufffd", where read() gives each its Latin-1 text, the rule of every alpha field (probe 31)."""
    a = dict(add(1, 1, "S", 100, 50 * P), code="F", attribution=b"AB\xe9 ")
    b = dict(add(1, 2, "S", 100, 50 * P), code="F", attribution=b"AB\xe8 ")
    books = books_after(a, b)
    assert books.orders("AAPL", "S", 50 * P)["mpid"].tolist() == ["AB\xe9", "AB\xe8"]
    assert sorted(books.order_table()["mpid"].tolist()) == ["AB\xe8", "AB\xe9"]
    day = encode([directory(1, "AAPL"), a, b])
    assert itchflow.read(np.frombuffer(day, np.uint8), "F").to_pandas("F")["attribution"].tolist() == ["AB\xe9",
                                                                                                        "AB\xe8"]
    # a symbol past ASCII is listed as Latin-1 and asked for by that name (it was listed, and
    # refused by every query: probe 33)
    odd = dict(directory(3, "X"), stock=b"AB\xc9     ")
    books = books_after(odd, dict(add(3, 9, "B", 5, 7 * P)))
    assert books.symbols["AB\xc9"] == 3 and books.depth("AB\xc9")[0]["shares"].tolist() == [5]


def test_execute_by_reference_not_the_head():
    b = books_after(add(1, 1, "B", 100, 10 * P), add(1, 2, "B", 100, 10 * P), add(1, 3, "B", 100, 10 * P),
                    execute(1, 2, 40, match=900))
    assert b.orders("AAPL", "B", 10 * P).tolist() == [(1, 100, ""), (2, 60, ""), (3, 100, "")]
    assert b.depth("AAPL")[0].tolist() == [(10 * P, 260, 3)]
    b.apply(encode([execute(1, 2, 60, match=901)]))  # executes to zero: gone
    assert b.orders("AAPL", "B", 10 * P).tolist() == [(1, 100, ""), (3, 100, "")]
    assert b.volume("AAPL") == 100
    assert b.vwap("AAPL") == pytest.approx(10.0 * P)   # raw Price(4), like every price


def test_c_printable_counts_and_non_printable_does_not():
    b = books_after(add(1, 1, "S", 100, 20 * P),
                    execute_price(1, 1, 30, match=5, price=19 * P, printable="Y"),
                    execute_price(1, 1, 20, match=6, price=21 * P, printable="N"))
    assert b.volume("AAPL") == 30                                  # the N execution is not volume
    assert b.vwap("AAPL") == pytest.approx(19.0 * P)
    assert b.depth("AAPL")[1].tolist() == [(20 * P, 50, 1)]        # but it did take shares off
    _, trades, _ = b.take_events()
    assert trades["kind"].tolist() == [b"C", b"C"]
    assert trades["printable"].tolist() == [1, 0]
    assert trades["price"].tolist() == [19 * P, 21 * P]


def test_x_subtracts_and_keeps_priority_d_removes():
    b = books_after(add(1, 1, "B", 100, 10 * P), add(1, 2, "B", 100, 10 * P), cancel(1, 1, 99))
    assert b.orders("AAPL", "B", 10 * P).tolist() == [(1, 1, ""), (2, 100, "")]
    b.apply(encode([delete(1, 1)]))
    assert b.orders("AAPL", "B", 10 * P).tolist() == [(2, 100, "")]
    b.apply(encode([delete(1, 2)]))
    assert len(b.depth("AAPL")[0]) == 0 and b.live_orders() == 0
    assert b.bbo("AAPL").tolist() == [("AAPL", 1, 0, 0, 0, 0)]


def test_u_replace_goes_to_the_back_even_at_the_same_price():
    b = books_after(add(1, 1, "B", 100, 10 * P), add(1, 2, "B", 100, 10 * P), replace(1, 1, 7, 300, 10 * P))
    assert b.orders("AAPL", "B", 10 * P).tolist() == [(2, 100, ""), (7, 300, "")]   # new ref, total shares, back
    assert b.depth("AAPL")[0].tolist() == [(10 * P, 400, 2)]
    b.apply(encode([replace(1, 2, 8, 5, 11 * P)]))                           # new price: new level
    assert b.depth("AAPL")[0].tolist() == [(11 * P, 5, 1), (10 * P, 300, 1)]
    b.apply(encode([delete(1, 1)]))                                          # the old ref is gone
    assert b.anomalies()["unknown_reference"] == 1


def test_p_and_q_are_trades_that_never_touch_the_book():
    b = books_after(add(1, 1, "B", 100, 10 * P), trade(1, 500, 12 * P, match=77, ref=1),
                    cross(1, 1000, 11 * P, match=78))
    assert b.depth("AAPL")[0].tolist() == [(10 * P, 100, 1)]
    assert b.volume("AAPL") == 1500
    assert b.vwap("AAPL") == pytest.approx((500 * 12 + 1000 * 11) * P / 1500)
    _, trades, _ = b.take_events()
    assert trades["kind"].tolist() == [b"P", b"Q"]
    assert trades["match_number"].tolist() == [77, 78]


def test_b_breaks_a_trade_by_match_number():
    b = books_after(add(1, 1, "B", 100, 10 * P), execute(1, 1, 40, match=555), trade(2, 10, 30 * P, match=556),
                    broken(1, 555))
    assert b.volume("AAPL") == 0 and b.volume("MSFT") == 10
    assert b.stocks["trades"][1] == 0
    assert b.depth("AAPL")[0].tolist() == [(10 * P, 60, 1)]   # a break does not restore the order
    b.apply(encode([broken(1, 555), broken(1, 999)]))          # twice, and never seen
    assert b.anomalies()["unknown_match"] == 2
    _, trades, _ = b.take_events()
    from itchflow.book.events import mark_broken
    assert trades["kind"].tolist() == [b"E", b"P", b"B"]
    assert mark_broken(trades).tolist() == [True, False, False]


def test_vwap_is_the_correctly_rounded_quotient():
    """Notional past 2**53: converting notional and volume to floats first rounded twice
    (164989149.67669034 here, an ulp below the exact quotient's nearest float)."""
    b = Books()
    b.apply(encode([directory(1, "AAPL"), trade(1, 3280387013, 135520873, 1), trade(1, 1095513149, 253228485, 2)]))
    notional = 3280387013 * 135520873 + 1095513149 * 253228485
    volume = 3280387013 + 1095513149
    assert b.vwap("AAPL") == notional / volume == 164989149.67669037


def test_broken_marks_the_trade_the_break_took_not_a_later_reuse_of_its_number():
    """A P, its B, then a P that reuses the match number (a duplicate_match, still counted in
    volume): ``broken`` marked both, since any B of the number in the batch counted; it marks
    the trade the engine broke, the first of its number before the B with the B's stock, price
    and shares. A B of a trade from an earlier batch marks nothing here."""
    from itchflow.book.events import mark_broken

    b = Books()
    b.record(None, bbo=False, trades=True)
    b.apply(encode([directory(1, "AAPL"), trade(1, 100, 10 * P, 7), broken(1, 7), trade(1, 300, 10 * P, 7)]))
    _, trades, _ = b.take_events()
    assert b.volume("AAPL") == 300 and b.anomalies()["duplicate_match"] == 1
    assert trades["kind"].tolist() == [b"P", b"B", b"P"]
    assert mark_broken(trades).tolist() == [True, False, False]
    # the column users get also flags the B row itself (probe 49: a filter printable & ~broken let the B
    # row's repeated shares back in); the volume is what the unflagged printable trades add up to
    df = trades.to_pandas()
    assert df["broken"].tolist() == [True, True, False]
    assert df[df["printable"] & ~df["broken"]]["shares"].sum() == b.volume("AAPL") == 300
    b.apply(encode([trade(1, 50, 11 * P, 8), broken(1, 7), broken(1, 8)]))  # 7 was broken already
    _, later, _ = b.take_events()
    assert later["kind"].tolist() == [b"P", b"B"] and mark_broken(later).tolist() == [True, False]
    b.apply(encode([trade(1, 60, 12 * P, 9)]))
    b.take_events()
    b.apply(encode([trade(1, 70, 13 * P, 9), broken(1, 9)]))   # breaks the earlier batch's trade
    _, last, _ = b.take_events()
    assert mark_broken(last).tolist() == [False, False] and b.volume("AAPL") == 300 + 70


def test_trades_that_would_overflow_volume_or_notional_are_counted_aside():
    """Hostile sizes: int64 volume and notional would wrap (a VWAP of -2.0 came out). A trade of
    more than 2**32 - 1 shares (a Q's field is 8 bytes), or one that would carry the stock's
    volume or notional past 2**63 - 1, is not counted in them but as volume_overflow; breaking
    it takes nothing back out. Worked by hand: 0xFFFFFFFF x 0xFFFFFFFF = 2**64 - 2**33 + 1."""
    big = 0xFFFF_FFFF
    b = books_after(trade(1, 100, 10 * P, match=1),       # counted: 100 at $10
                    trade(1, big, big, match=2),           # shares x price > 2**63 - 1: aside
                    cross(1, 1 << 32, 11 * P, match=3),    # a Q of 2**32 shares: aside
                    cross(1, (1 << 64) - 1, 11 * P, match=4),
                    trade(2, big, 1 << 31, match=5),       # (2**32 - 1) x 2**31 < 2**63: counted
                    trade(2, big, 1 << 31, match=6),       # ... twice would pass 2**63 - 1: aside
                    broken(1, 2), broken(2, 6), broken(2, 5))
    assert b.volume("AAPL") == 100 and b.vwap("AAPL") == 10 * P
    assert b.stocks["notional"][1] == 100 * 10 * P and b.stocks["trades"][1] == 1
    assert b.anomalies("AAPL")["volume_overflow"] == 3 and b.anomalies("MSFT")["volume_overflow"] == 1
    assert b.volume("MSFT") == 0 and b.stocks["notional"][2] == 0   # 5 counted, then broken
    assert b.anomalies()["unknown_match"] == 0                        # the breaks all found their trade
    _, trades, _ = b.take_events()
    assert trades["printable"].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert trades["kind"].tolist() == [b"P", b"P", b"Q", b"Q", b"P", b"P", b"B", b"B", b"B"]


def test_a_junk_printable_flag_and_a_renamed_locate_are_counted():
    """C's printable flag is Y or N: any other byte counts in volume as before (only N does
    not) and as bad_printable. An R that gives a locate with a symbol another symbol is a
    directory_conflict (the new symbol is kept); the same R again is not."""
    b = books_after(add(1, 1, "B", 100, 10 * P), execute_price(1, 1, 10, 1, 10 * P, printable="Z"),
                    execute_price(1, 1, 5, 2, 10 * P, printable="N"), execute_price(1, 1, 1, 3, 10 * P),
                    directory(2, "MSFT"), directory(2, "MSFX"))
    assert b.volume("AAPL") == 11
    assert b.anomalies("AAPL")["bad_printable"] == 1 and b.anomalies()["bad_printable"] == 1
    assert b.anomalies(2)["directory_conflict"] == 1 and b.symbol(2) == "MSFX"
    assert b.anomalies(1)["directory_conflict"] == 0
    # the same symbol under two locates: asked by symbol, the books do not pick one silently
    b.apply(encode([directory(3, "AAPL")]))
    with pytest.raises(KeyError, match=r"'AAPL' is in the stock directory under 2 locates \(1, 3\)"):
        b.depth("AAPL")
    assert b.depth(1)[0].tolist() == [(10 * P, 84, 1)] and b.depth(3)[0].tolist() == []


def test_a_zero_share_trade_stays_in_the_match_index_when_it_grows():
    # the index marks a row occupied by a word that is never 0 (not by the shares): a 0-share
    # cross must survive the rehash and still be breakable, and must not hide later matches
    many = [trade(1, 10, P, match=1000 + i) for i in range(2000)]  # grows the index (256 rows to start with)
    b = books_after(cross(1, 0, P, match=5), *many, broken(1, 5), broken(1, 1999), record=False)
    a = b.anomalies()
    assert a["unknown_match"] == 0 and a["duplicate_match"] == 0
    assert b.volume("AAPL") == 10 * 1999


def test_crossed_and_locked_books_are_kept():
    b = books_after(add(1, 1, "B", 100, 10 * P), add(1, 2, "S", 100, 10 * P), add(1, 3, "S", 50, 9 * P))
    assert b.bbo("AAPL").tolist() == [("AAPL", 1, 10 * P, 100, 9 * P, 50)]
    assert b.anomalies() == {k: 0 for k in b.anomalies()}


def test_trading_state_per_stock():
    b = books_after(halt(1, "H"), halt(2, "T"))
    assert b.trading_state("AAPL") == "H" and b.trading_state("MSFT") == "T"
    b.apply(encode([halt(1, "T")]))
    assert b.trading_state("AAPL") == "T"


def test_anomalies_are_counted_per_kind_and_stock_and_never_fatal():
    b = books_after(
        delete(1, 404),                                   # unknown reference
        add(2, 1, "B", 10, P), add(2, 1, "S", 10, P),     # duplicate add
        add(2, 2, "S", 10, 2 * P), execute(2, 2, 15, match=1),  # over-execution: removed
        add(2, 3, "S", 10, 2 * P), cancel(2, 3, 11),      # over-cancel: removed
        add(2, 4, "B", 10, P), add(2, 5, "B", 10, P), replace(2, 4, 5, 10, P),  # onto a live ref
        add(9, 6, "B", 10, P),                            # locate without a directory entry
        add(2, 7, "Z", 10, P),                            # bad side
        trade(2, 1, P, match=1),                          # match number reused
        add(2, 8, "B", 10, P), delete(1, 8),              # header locate is not the order's
        replace(1, 405, 406, 1, P),                       # unknown U
    )
    aapl = b.anomalies("AAPL")
    assert aapl.pop("unknown_reference") == 2 and set(aapl.values()) == {0}
    msft = b.anomalies("MSFT")
    assert msft == {"unknown_reference": 0, "duplicate_add": 1, "over_execution": 1, "over_cancel": 1,
                    "replace_to_existing": 1, "unknown_locate": 0, "bad_side": 1, "unknown_match": 0,
                    "duplicate_match": 1, "locate_mismatch": 1, "volume_overflow": 0, "bad_printable": 0,
                    "directory_conflict": 0, "zero_shares": 0}
    assert b.anomalies(9)["unknown_locate"] == 1
    assert b.orders("MSFT", "B", P).tolist() == [(1, 10, ""), (5, 10, "")]
    assert b.volume("MSFT") == 16   # 15 executed (over-execution still prints) + 1
    assert set(b.anomalies_by_stock()) == {1, 2, 9}


@pytest.mark.parametrize("threads", [1, 2])
def test_trades_and_halts_on_a_locate_no_directory_named_are_counted(threads):
    """A P or Q on a locate no R named added to its volume, and an H set its state, without a
    count: only adds counted unknown_locate (probe 31). Before any R, nothing is unknown."""
    msgs = [trade(9, 100, P, match=1), directory(1, "AAPL"), trade(9, 100, P, match=2), cross(9, 50, P, match=3),
            halt(9, "H"), trade(1, 10, P, match=4), cross(1, 5, P, match=5), halt(1, "T")]
    b = Books(64, table=1024, threads=threads)
    b.apply(encode(msgs))
    assert b.anomalies(9)["unknown_locate"] == 3 and b.anomalies("AAPL")["unknown_locate"] == 0
    assert b.anomalies()["unknown_locate"] == 3
    assert b.volume(9) == 250 and b.trading_state(9) == "H"   # still applied, as the feed said


def test_an_order_of_zero_shares_is_kept_as_sent_and_counted():
    # a 0-share A, F or U is not a valid order, but the feed said so: it stays live (a later D, X
    # or E of it must find it) and its level shows 0 shares; each one is a zero_shares anomaly of
    # the order's stock, so a best bid of 0 shares never goes unexplained
    b = books_after(add(1, 1, "B", 0, 10 * P),                       # A of 0 shares: the best bid
                    add(1, 2, "B", 100, 9 * P), add(1, 3, "S", 0, 11 * P, mpid="GSCO"),   # F of 0
                    add(2, 4, "B", 50, 5 * P), replace(2, 4, 5, 0, 6 * P),               # U to 0
                    add(2, 6, "S", 10, 7 * P), replace(2, 6, 7, 20, 7 * P))              # U to 20
    assert b.bbo("AAPL").tolist() == [("AAPL", 1, 10 * P, 0, 11 * P, 0)]
    assert b.depth("AAPL")[0].tolist() == [(10 * P, 0, 1), (9 * P, 100, 1)]
    assert b.anomalies("AAPL")["zero_shares"] == 2
    assert b.anomalies("MSFT")["zero_shares"] == 1
    assert b.orders("MSFT", "B", 6 * P).tolist() == [(5, 0, "")]
    b.apply(encode([delete(1, 1), execute(1, 3, 0, match=7)]))     # found: removed
    assert b.bbo("AAPL").tolist() == [("AAPL", 1, 9 * P, 100, 0, 0)]
    # the E of 0 shares is a zero_shares anomaly of its own (a trade of no share: probe 38)
    assert set(b.anomalies("AAPL").values()) == {0, 3} and b.anomalies("AAPL")["unknown_reference"] == 0
    assert b.volume("AAPL") == 0
    assert b.live_orders() == 3   # AAPL 2; MSFT 5 (0 shares) and 7


def test_every_side_byte_other_than_b_and_s_is_a_bad_side():
    # the engine takes the side from a bit of the byte and checks the byte against that side's
    # letter: each of the 256 values, as an A and as an F, against the obvious rule
    msgs, want = [], {"B": [], "S": []}
    for ref, byte in enumerate(range(256), start=1):
        msgs.append(add(1, ref, bytes([byte]), 1, P + ref))
        msgs.append(add(1, 1000 + ref, bytes([byte]), 1, P + ref, mpid="ABCD"))
        if chr(byte) in want:
            want[chr(byte)] += [(P + ref, 2, 2)]
    b = books_after(*msgs)
    assert b.anomalies("AAPL")["bad_side"] == 2 * 254
    bids, asks = b.depth("AAPL")
    assert bids.tolist() == want["B"] and asks.tolist() == want["S"]
    assert b.live_orders() == 4


def test_symbols_and_locates():
    b = books_after(add(2, 1, "B", 10, P))
    assert b.symbols == {"AAPL": 1, "MSFT": 2}
    assert b.locate("MSFT") == 2 and b.locate(2) == 2 and b.symbol(2) == "MSFT"
    with pytest.raises(KeyError):
        b.locate("NOPE")


def test_bbo_events_only_on_change():
    b = books_after(add(1, 1, "B", 100, 10 * P), add(1, 2, "B", 100, 9 * P),   # 2nd: not top
                    add(1, 3, "S", 10, 11 * P), cancel(1, 2, 50))              # cancel below top
    bbo, _, _ = b.take_events()
    assert [(r["bid_price"], r["bid_shares"], r["ask_price"], r["ask_shares"]) for r in bbo.tolist()
            for r in [dict(zip(bbo.dtype.names, r))]] == [(10 * P, 100, 0, 0), (10 * P, 100, 11 * P, 10)]


def test_l2_events():
    b = Books(64, table=1024)
    b.record(l2=True, bbo=False, trades=False)
    b.apply(encode([add(1, 1, "B", 100, 10 * P), add(1, 2, "B", 50, 10 * P), delete(1, 1), delete(1, 2)]))
    _, _, l2 = b.take_events()
    assert [(r[0], r[1], r[2]) for r in zip(l2["price"], l2["shares"], l2["orders"])] == [
        (10 * P, 100, 1), (10 * P, 150, 2), (10 * P, 50, 1), (10 * P, 0, 0)]


def test_stop_after_time_and_resume():
    msgs = [add(1, 1, "B", 100, 10 * P, ts=1000), add(1, 2, "B", 100, 11 * P, ts=2000),
            add(1, 3, "B", 100, 12 * P, ts=3000)]
    data = np.frombuffer(encode(msgs), np.uint8)
    b = Books(64, table=1024)
    pos = b.apply(data, stop_after_ns=2000)
    assert pos == 2 * (2 + 36) and b.bbo(1)["bid_price"].tolist() == [11 * P] and b.last_timestamp_ns == 2000
    b.apply(data[pos:])
    assert b.bbo(1)["bid_price"].tolist() == [12 * P] and b.messages == 3


# ---- hostile input ---------------------------------------------------------------------

def test_truncated_buffer_names_the_offset():
    data = encode([add(1, 1, "B", 100, P), add(1, 2, "B", 100, P)])
    b = Books(64, table=1024)
    with pytest.raises(ITCHFormatError) as e:
        b.apply(data[:-3], source="x.itch")
    assert e.value.offset == 38 and "truncated" in str(e.value) and "x.itch" in str(e.value)
    assert b.live_orders() == 1   # the whole message before it was applied


def test_bad_length_prefix_and_zero_length():
    good = encode([add(1, 1, "B", 100, P)])
    bad = struct.pack(">H", 35) + good[2:37]     # an A that claims 35 bytes
    with pytest.raises(ITCHFormatError, match="length prefix"):
        Books(64, table=1024).apply(good + bad)
    with pytest.raises(ITCHFormatError, match="zero-length") as e:
        Books(64, table=1024).apply(good + b"\x00\x00")
    assert e.value.offset == len(good)
    with pytest.raises(ITCHFormatError, match="truncated"):
        Books(64, table=1024).apply(good + b"\x00")


def test_unknown_types_are_skipped_and_counted():
    data = (encode([add(1, 1, "B", 100, P)]) + b"\x00\x05z1234" + encode([add(1, 2, "B", 1, P)])
            + b"\x00\x01y" + encode([add(1, 3, "S", 7, 2 * P)]))
    b = Books(64, table=1024)
    b.record()
    b.apply(data)
    assert b.unknown_types == 2 and b.live_orders() == 3 and b.messages == 3
    # a skipped message still takes its sequence number: the adds are messages 1, 3 and 5
    bbo, _, _ = b.take_events()
    assert [int(r["sequence"]) for r in bbo] == [1, 3, 5]


@pytest.mark.parametrize("seed", range(3))
def test_random_garbage_never_crashes(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        junk = rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8)
        b = Books(64, table=1024)
        try:
            b.apply(junk)
        except ITCHFormatError as e:
            assert e.offset is not None and 0 <= e.offset <= len(junk)


# ---- the array-out API --------------------------------------------------------------------

def test_bbo_is_one_row_per_symbol_in_the_order_asked():
    b = books_after(add(1, 1, "B", 100, 10 * P), add(2, 2, "S", 7, 31 * P))
    q = b.bbo(["MSFT", "AAPL", 2])
    assert q.dtype.names == ("symbol", "locate", "bid_price", "bid_shares", "ask_price", "ask_shares")
    assert q.tolist() == [("MSFT", 2, 0, 0, 31 * P, 7), ("AAPL", 1, 10 * P, 100, 0, 0),
                          ("MSFT", 2, 0, 0, 31 * P, 7)]
    assert b.bbo()["symbol"].tolist() == ["AAPL", "MSFT"]     # None: every stock in the directory
    assert len(b.bbo([])) == 0


def test_depth_orders_and_order_table_have_named_fields():
    b = books_after(add(1, 1, "B", 100, 10 * P), add(1, 2, "S", 40, 12 * P, mpid="GSCO"),
                    add(2, 3, "B", 5, 30 * P), add(1, 4, "B", 60, 10 * P), add(1, 5, "B", 1, 11 * P))
    bids, asks = b.depth("AAPL")
    assert bids.dtype.names == asks.dtype.names == ("price", "shares", "orders")
    assert bids["price"].tolist() == [11 * P, 10 * P] and bids["orders"].tolist() == [1, 2]
    q = b.orders("AAPL", "S", 12 * P)
    assert q.dtype.names == ("ref", "shares", "mpid") and q.tolist() == [(2, 40, "GSCO")]
    t = b.order_table()
    assert t.dtype.names == ("symbol", "locate", "side", "price", "ref", "shares", "mpid")
    # stock by stock, bids then asks, best level first, time priority within a level
    assert t.tolist() == [("AAPL", 1, b"B", 11 * P, 5, 1, ""), ("AAPL", 1, b"B", 10 * P, 1, 100, ""),
                          ("AAPL", 1, b"B", 10 * P, 4, 60, ""), ("AAPL", 1, b"S", 12 * P, 2, 40, "GSCO"),
                          ("MSFT", 2, b"B", 30 * P, 3, 5, "")]
    assert b.order_table(["MSFT"])["ref"].tolist() == [3]


def test_references_above_2_63_survive_the_order_table():
    big = (1 << 63) + 12345
    b = books_after(add(1, big, "B", 100, 10 * P))
    assert b.order_table()["ref"].tolist() == [big]
    assert b.orders("AAPL", "B", 10 * P)["ref"].tolist() == [big]


def test_events_convert_to_arrow_and_pandas_with_symbols():
    b = books_after(add(1, 1, "B", 100, 10 * P), execute(1, 1, 40, match=555), trade(2, 10, 30 * P, match=556),
                    broken(1, 555))
    bbo, trades, _ = b.take_events()
    df = trades.to_pandas()
    assert df["symbol"].tolist() == ["AAPL", "MSFT", "AAPL"]
    assert df["kind"].tolist() == ["E", "P", "B"] and df["broken"].tolist() == [True, False, True]
    assert df["price"].tolist() == [10 * P, 30 * P, 10 * P]
    t = bbo.to_arrow()
    assert t.column("symbol").to_pylist() == ["AAPL"] * len(bbo) and t.num_rows == len(bbo) == 2
    assert trades[trades["kind"] == b"P"].to_pandas()["symbol"].tolist() == ["MSFT"]  # slices keep symbols


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_events_keep_their_symbols_through_pickle(protocol):
    """multiprocessing, Dask and joblib pickle what they pass: an Events came back naming
    its stocks by locate ("1"), and a deep copy likewise; the books do not travel with it."""
    import copy
    import pickle

    b = books_after(add(1, 1, "B", 100, 10 * P), execute(1, 1, 40, match=555), trade(2, 10, 30 * P, match=556))
    bbo, trades, _ = b.take_events()
    wire = pickle.dumps(trades, protocol=protocol)
    back = pickle.loads(wire)
    assert type(back) is type(trades) and back.tolist() == trades.tolist()
    assert back.to_pandas()["symbol"].tolist() == ["AAPL", "MSFT"]
    assert len(wire) < 4096                                       # not the Books' tables
    assert copy.deepcopy(bbo).to_pandas()["symbol"].tolist() == ["AAPL"] * len(bbo)
    assert pickle.loads(pickle.dumps(bbo[:0], protocol=protocol)).to_pandas().shape == (0, bbo.to_pandas().shape[1])


def test_books_replay_and_the_public_names(tmp_path):
    import itchflow
    from itchflow import Books as PublicBooks
    from itchflow.book.replay import replay as old_replay

    path = tmp_path / "day.itch"
    path.write_bytes(encode([directory(1, "AAPL"), add(1, 1, "B", 100, 10 * P)]))
    b = PublicBooks().replay(path)
    assert PublicBooks is Books and itchflow.replay is old_replay
    assert b.bbo("AAPL")["bid_shares"].tolist() == [100]
    assert itchflow.price4_to_float(123_4500) == 123.45


# ---- a byte budget per apply (what replay slices with), for one thread and for shards --------

def _budget_day():
    from itchflow.sim.generator import generate_day

    return generate_day(60_000, seed=11, stocks=40)


def _starts(buf):
    """Offsets of every message's length prefix, by a plain Python walk."""
    out, p = [], 0
    while p < len(buf):
        out.append(p)
        p += 2 + (int(buf[p]) << 8 | int(buf[p + 1]))
    return out, p


@pytest.mark.parametrize("threads", [1, 2])
def test_apply_with_a_byte_budget_never_splits_a_message(threads):
    buf = _budget_day()
    starts, total = _starts(buf)
    assert total == len(buf)
    whole = Books()
    whole.apply(buf)
    cut = Books(threads=threads)
    pos, calls = 0, 0
    budget = 4099  # not a message boundary: the message that starts before it is applied whole
    while pos < len(buf):
        used = cut.apply(buf[pos:], max_bytes=budget)
        assert not cut.stopped_at_time
        nxt = [s for s in starts if s >= pos + budget]
        assert pos + used == (nxt[0] if nxt else len(buf))
        pos += used
        calls += 1
    assert len(buf) // (budget + 64) <= calls <= len(buf) // budget + 1  # each call one budget (+ one message)
    assert cut.messages == whole.messages == len(starts)
    assert cut.live_orders() == whole.live_orders()
    syms = sorted(whole.symbols)
    assert cut.bbo(syms).tolist() == whole.bbo(syms).tolist()
    if threads > 1:
        cut.close()


def test_a_large_budget_is_walked_only_as_far_as_the_messages_applied(monkeypatch):
    """A byte budget was walked whole before the first message was applied: snapshots (one
    apply a time, 32 MiB budgets, a few messages each) spent 0.3 ms a time walking. Now it is
    walked in doubling steps as the messages are applied; a stop at a time walks at most the
    step it stopped in. Each call still ends where the slow model says: before the first
    message that starts at or past the budget or is later than the stop time."""
    import itchflow.book.books as books_module
    from itchflow.wire.binaryfile import budget_end

    buf = _budget_day()
    starts, _ = _starts(buf)
    ts = [int.from_bytes(bytes(buf[s + 2 + 5:s + 2 + 11]), "big") for s in starts]
    walked = []

    def counted(b, pos, limit):
        end = budget_end(b, pos, limit)
        walked.append(int(end) - int(pos))
        return end

    monkeypatch.setattr(books_module, "budget_end", counted)
    whole = Books()
    whole.apply(buf)
    cut = Books()
    pos, times = 0, ts[100::997]
    for t in times + [None]:
        walked.clear()
        used = cut.apply(buf[pos:], max_bytes=32 << 20, stop_after_ns=t)
        later = [s for s, x in zip(starts, ts) if s >= pos and t is not None and x > t]
        assert pos + used == (later[0] if later else len(buf))
        assert cut.stopped_at_time == bool(later)
        if later:   # walked: the steps applied, and the one it stopped in (the first, 64 KiB,
            # or twice the one before, itself applied), each past its end by at most a message
            assert sum(walked) <= used + max(64 << 10, 2 * used) + 64 * len(walked)
        pos += used
    assert cut.order_table().tolist() == whole.order_table().tolist()
    assert len(times) > 50


@pytest.mark.parametrize("budget", [1, 40, 4096, 1 << 20])
def test_a_budget_of_any_size_builds_the_day_with_the_same_events(budget):
    """A byte budget of any size, from one message a call (a budget below any message) to
    whole slices, with tables small enough to grow on the way (the engine stops for room and
    goes on to the same budget): the books and every event with its sequence number are the
    whole day's."""
    buf = _budget_day()[:400_000]
    starts, _ = _starts(buf)
    buf = buf[:starts[-1]]   # whole messages only
    n = len(starts) - 1
    whole = Books()
    whole.record(bbo=True, trades=True, l2=True)
    whole.apply(buf)
    cut = Books(table=1 << 10, levels=64, arena=256, trades=16)
    cut.record(bbo=True, trades=True, l2=True)
    pos, calls = 0, 0
    while pos < len(buf):
        used = cut.apply(buf[pos:], max_bytes=budget)
        assert used > 0 and pos + used in set(starts)   # a whole number of messages
        pos += used
        calls += 1
    if budget == 1:
        assert calls == n   # one message a call
    assert cut.messages == whole.messages == n
    assert cut.growth()["pauses"] > 0
    assert cut.order_table().tolist() == whole.order_table().tolist()
    for a, b in zip(cut.take_events(), whole.take_events()):
        assert len(a) > 0 and np.array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_apply_says_when_it_stopped_at_a_time(threads):
    from itchflow.wire.itch import MESSAGES

    buf = _budget_day()
    starts, _ = _starts(buf)
    ts_off = 2 + MESSAGES["A"].field("timestamp").offset
    stamps = [int.from_bytes(bytes(buf[s + ts_off:s + ts_off + 6]), "big") for s in starts]
    k = len(stamps) // 2
    stop_ns = stamps[k] - 1     # the first later message is at or before k
    first_later = next(i for i, t in enumerate(stamps) if t > stop_ns)
    b = Books(threads=threads)
    used = b.apply(buf, stop_after_ns=stop_ns)
    assert b.stopped_at_time and used == starts[first_later]
    used2 = b.apply(buf[used:])
    assert not b.stopped_at_time and used + used2 == len(buf)
    if threads > 1:
        b.close()


def test_a_budget_ending_inside_a_truncated_message_names_it():
    buf = _budget_day()
    starts, _ = _starts(buf)
    broken = buf[:starts[100] + 5]         # message 100 is cut short
    b = Books()
    with pytest.raises(ITCHFormatError) as e:
        pos = 0
        while pos < len(broken):
            pos += b.apply(broken[pos:], max_bytes=starts[50] + 1, base_offset=pos)
    assert e.value.offset == starts[100]
    assert b.messages == 100


def test_the_match_index_takes_the_trades_out_of_order_and_grows():
    """Only trades whose match number is not the largest so far go to the match index (the
    trade log takes the rest: test_trade_log); it starts small and grows past 5/8 full."""
    from itchflow.book import layout as L
    from itchflow.book.books import MATCH_INDEX_ROWS

    b = Books(table=1 << 12)
    assert int(b.ctl[L.C_MATCH_CAP]) == len(b.matches) // L.MATCH_WORDS == MATCH_INDEX_ROWS == 1 << 10
    b.apply(encode([directory(1, "AAPL"), trade(1, 10, P, match=10**6),
                    *[trade(1, 10, P, match=1 + i) for i in range(700)]]))
    assert int(b.ctl[L.C_MATCH_CAP]) == 1 << 11 and int(b.ctl[L.C_MATCH_USED]) == 700
    assert int(b.ctl[L.C_LOG_N]) == 1
    assert b.volume("AAPL") == 7010


def test_a_symbol_is_looked_up_again_after_every_stock_directory_message():
    """locate() keeps the symbols it found until the next R message: what each R changes is
    seen at once (a locate given another symbol, a symbol given to a second locate)."""
    b = Books()
    b.apply(encode([directory(1, "AAPL")]))
    assert b.locate("AAPL") == 1 and b.locate("AAPL") == 1
    b.apply(encode([directory(1, "MSFT")]))      # locate 1 renamed (a directory conflict)
    with pytest.raises(KeyError):
        b.locate("AAPL")
    assert b.locate("MSFT") == 1
    b.apply(encode([directory(2, "AAPL")]))
    assert b.locate("AAPL") == 2
    b.apply(encode([directory(3, "MSFT")]))      # MSFT now under two locates
    with pytest.raises(KeyError, match="2 locates"):
        b.locate("MSFT")


@pytest.mark.parametrize("threads", [1, 2])
def test_stepping_a_day_with_replay_goes_on_where_the_last_replay_stopped(tmp_path, threads):
    """probe 20: replay(day, stop_after_ns=t1) then replay(day, stop_after_ns=t2) applied the
    messages before t1 twice (volume 21,544 against 11,044); a second whole replay doubled every
    volume. The first now goes on where the last stopped; the second is refused."""
    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(str(day), 60_000, 7, stocks=40)
    hour = 3600 * 10 ** 9
    marks = [10 * hour, 10 * hour + 1, 12 * hour, 15 * hour]
    stepped = Books(threads=threads)
    for t in marks:
        stepped.replay(str(day), stop_after_ns=t)
        at_once = Books().replay(str(day), stop_after_ns=t)
        assert stepped.messages == at_once.messages
        assert np.array_equal(stepped.tops(), at_once.tops())
        assert np.array_equal(stepped.stocks["volume"], at_once.stocks["volume"])
        assert stepped.live_orders() == at_once.live_orders()
    with pytest.raises(ValueError, match=r"already, past"):
        stepped.replay(str(day), stop_after_ns=marks[0])   # back in time: new books
    stepped.replay(str(day))
    whole = Books().replay(str(day))
    assert stepped.messages == whole.messages and np.array_equal(stepped.stocks["volume"], whole.stocks["volume"])
    with pytest.raises(ValueError, match=r"already hold [\d,]+ messages: a replay builds the books of a day"):
        stepped.replay(str(day))
    with pytest.raises(ValueError, match=r"apply\(buffer\[offset:\]\)"):
        whole.replay(day.read_bytes())


@pytest.mark.parametrize("threads", [1, 2])
def test_stepping_past_the_end_of_the_day_goes_on_doing_nothing(tmp_path, threads):
    """A grid of times that runs past the day's last message: the step that reached the end
    worked, the next raised "these books already hold ... messages" and told the user to do
    what they had done (probe 31). Past the end a step applies nothing and returns False; a step
    back in time is still refused; a file that grew meanwhile is gone on with."""
    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(str(day), 30_000, 5, stocks=20)
    last = int(itchflow.read(day, "S")["S"]["timestamp"].max())
    whole = Books().replay(str(day))
    stepped = Books(threads=threads)
    assert stepped.replay(str(day), stop_after_ns=last - 10 ** 9) is not None
    assert stepped.messages < whole.messages
    for t in (last + 10 ** 9, last + 2 * 10 ** 9, last + 3 * 10 ** 9):
        assert itchflow.replay(stepped, str(day), stop_after_ns=t) is False
        assert stepped.messages == whole.messages
        assert np.array_equal(stepped.stocks["volume"], whole.stocks["volume"])
    with pytest.raises(ValueError, match=r"already, past"):
        stepped.replay(str(day), stop_after_ns=last)
    more = Books().replay(str(day))   # the file grows: the next step applies what was added
    extra = encode([add(1, 10 ** 9, "B", 7, 10_000, ts=last + 5)])
    with open(day, "ab") as f:
        f.write(bytes(extra))
    assert itchflow.replay(stepped, str(day), stop_after_ns=last + 4 * 10 ** 9) is False
    more.apply(extra)
    assert stepped.messages == more.messages == whole.messages + 1
    assert stepped.live_orders() == more.live_orders()


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("change", ["another file put there", "cut in place", "rewritten in place"])
def test_a_file_changed_since_a_stepped_replay_stopped_is_not_gone_on_with(tmp_path, threads, change):
    """Probe 59: a stepped replay went on by path alone: another day written at that path had the
    rest of its messages applied on top of the first day's books (only anomaly counts hinted at
    it), and a shorter one applied nothing, with no error."""
    import os

    from itchflow.sim.generator import write_day

    day, other = tmp_path / "day.itch", tmp_path / "other.itch"
    write_day(str(day), 30_000, 5, stocks=20)
    write_day(str(other), 30_000, 6, stocks=20)
    books = Books(threads=threads)
    books.replay(str(day), stop_after_ns=12 * 3600 * 10 ** 9)
    held = books.messages
    if change == "another file put there":     # as `itchflow gen` writes: a new file renamed over it
        os.replace(other, day)
        why = "another file has been put at that path since"
    elif change == "cut in place":
        os.truncate(day, os.path.getsize(day) // 3)
        why = "it shrank from"
    else:
        data = other.read_bytes()[:os.path.getsize(day)]
        with open(day, "r+b") as f:
            f.write(data)
        why = "bytes have been rewritten since"
    with pytest.raises(ValueError, match=why):
        books.replay(str(day))
    assert books.messages == held


def test_a_step_of_a_replay_from_a_fifo_returns(tmp_path):
    """Probe 60: the check that a stepped replay goes on in the same file opened the path again
    when the step stopped: a FIFO whose writer had gone waited for ever there."""
    import os
    import threading

    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(str(day), 20_000, 5, stocks=10)
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(day.read_bytes()), daemon=True)
    writer.start()
    done = {}
    past_the_end = 24 * 3600 * 10 ** 9   # the step reads the whole stream, and the writer is gone
    stepper = threading.Thread(target=lambda: done.setdefault(
        "stopped", Books().replay(str(fifo), stop_after_ns=past_the_end)), daemon=True)
    stepper.start()
    stepper.join(60)
    assert not stepper.is_alive(), "the step did not return"
    assert done["stopped"].messages == Books().replay(str(day)).messages


def test_symbols_does_not_pick_one_of_two_locates_silently():
    """probe 20: books.symbols answered {'NEW': 4} for a symbol the directory gave two locates,
    where every query refuses it ("ask by locate")."""
    b = books_after(directory(3, "OLD"), directory(3, "NEW"), directory(4, "NEW"), directory(5, "ONE"))
    names = b.symbols
    assert "NEW" not in names and "OLD" not in names and names["ONE"] == 5
    with pytest.raises(KeyError, match=r"under 2 locates \(3, 4\): ask by locate"):
        names["NEW"]
    with pytest.raises(KeyError, match=r"no stock locate has that name now"):
        names["OLD"]
    assert names.get("NEW") is None


def test_time_going_back_is_counted_as_stats_counts_it():
    """Books.timestamps_backwards (the applied messages stamped earlier than the one before
    them) equals stats' count over the same bytes: a generated day with its two halves
    swapped, and with one message moved; ShardedBooks says why it has no such count."""
    from itchflow.sim.generator import generate_day

    day = generate_day(30_000, seed=5, stocks=10).tobytes()
    offs, at = [], 0
    while at < len(day):   # each message: a 2-byte big-endian length, then the message
        offs.append(at)
        at += 2 + int.from_bytes(day[at:at + 2], "big")
    offs.append(len(day))
    cut = offs[len(offs) // 2]
    one = offs[700]
    moved = day[:one] + day[offs[701]:offs[9000]] + day[one:offs[701]] + day[offs[9000]:]
    for data in (day, day[cut:] + day[:cut], moved):
        b = Books()
        b.apply(data)
        assert b.timestamps_backwards == itchflow.stats(np.frombuffer(data, np.uint8)).timestamps_backwards
    assert b.timestamps_backwards >= 1
    with pytest.raises(AttributeError, match="each shard sees its own stocks' messages"):
        Books(threads=2).timestamps_backwards


def test_a_table_that_cannot_grow_says_which_and_how_to_size_it(tmp_path, monkeypatch):
    """Probe 44: out of memory while the order table grew, the API raised numpy's bare
    _ArrayMemoryError, naming no table and no way out."""
    from itchflow.book import books as books_module
    from itchflow.decode.encoder import encode_message

    day = tmp_path / "adds.itch"
    day.write_bytes(b"".join(encode_message("A", stock_locate=1, timestamp=i, order_reference_number=i + 1,
                                            buy_sell_indicator="B", shares=1, price=1_0000 + i, stock="X")
                             for i in range(200)))

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(books_module, "_rehashed", no_memory)
    with pytest.raises(MemoryError, match=r"the books' order table could not grow past 16 rows \(out of memory\): "
                                          r"the books hold every message applied before it; Books\(capacity="):
        Books(table=16).replay(day)
