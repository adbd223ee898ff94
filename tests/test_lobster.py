"""LOBSTER files: a hand-worked scenario of every event type against rows written out by
hand, and on a generated day the order-book row of every message row equal to the engine's
depth after that message (the day replayed message by message, U split into its D and A)."""

from __future__ import annotations

import numpy as np
import pytest

import itchflow
from itchflow import encode_message as enc
from itchflow.sim.generator import generate_day
from itchflow.sinks import _book_access as access
from itchflow.sinks.lobster import ASK_DUMMY as AD, BID_DUMMY as BD, lobster, orderbook_columns

T0 = 34_200_000_000_000  # 09:30


def ts(k: int) -> int:
    return T0 + k * 1_000_001 + 123


def hand_day() -> bytes:
    m = [
        enc("R", stock_locate=1, timestamp=1, stock="TEST"),
        enc("R", stock_locate=2, timestamp=1, stock="OTHR"),
        enc("H", stock_locate=1, timestamp=ts(0), stock="TEST", trading_state="T"),        # no row
        enc("A", stock_locate=1, timestamp=ts(1), order_reference_number=1, buy_sell_indicator="B",
            shares=100, stock="TEST", price=1_000_000),
        enc("A", stock_locate=2, timestamp=ts(2), order_reference_number=2, buy_sell_indicator="S",
            shares=50, stock="OTHR", price=2_000_000),                                        # other stock
        enc("F", stock_locate=1, timestamp=ts(3), order_reference_number=3, buy_sell_indicator="S",
            shares=200, stock="TEST", price=1_010_000, attribution="MPID"),
        enc("A", stock_locate=1, timestamp=ts(4), order_reference_number=4, buy_sell_indicator="B",
            shares=300, stock="TEST", price=999_900),
        enc("X", stock_locate=1, timestamp=ts(5), order_reference_number=1, cancelled_shares=40),
        enc("E", stock_locate=1, timestamp=ts(6), order_reference_number=3, executed_shares=50, match_number=11),
        enc("C", stock_locate=1, timestamp=ts(7), order_reference_number=3, executed_shares=20, match_number=12,
            printable="Y", execution_price=1_009_900),
        enc("U", stock_locate=1, timestamp=ts(8), original_order_reference_number=4,
            new_order_reference_number=5, shares=250, price=1_000_100),
        enc("D", stock_locate=1, timestamp=ts(9), order_reference_number=1),
        enc("P", stock_locate=1, timestamp=ts(10), order_reference_number=0, buy_sell_indicator="B", shares=75,
            stock="TEST", price=1_005_000, match_number=13),
        enc("H", stock_locate=1, timestamp=ts(11), stock="TEST", trading_state="H"),
        enc("H", stock_locate=1, timestamp=ts(12), stock="TEST", trading_state="Q"),
        enc("H", stock_locate=1, timestamp=ts(13), stock="TEST", trading_state="T"),
        enc("Q", stock_locate=1, timestamp=ts(14), shares=1000, stock="TEST", cross_price=1_005_000,
            match_number=14, cross_type="C"),
        enc("B", stock_locate=1, timestamp=ts(15), match_number=13),                          # no LOBSTER type
        enc("X", stock_locate=1, timestamp=ts(16), order_reference_number=999, cancelled_shares=1),  # unknown ref
        enc("Q", stock_locate=1, timestamp=ts(17), shares=10, stock="TEST", cross_price=1_005_000,
            match_number=15, cross_type="O"),
        enc("Q", stock_locate=1, timestamp=ts(18), shares=20, stock="TEST", cross_price=1_005_000,
            match_number=16, cross_type="H"),
    ]
    return b"".join(m)


# (time index, Type, Order ID, Size, Price, Direction), then the 2-level book after it.
EXPECTED_MESSAGES = [
    (1, 1, 1, 100, 1_000_000, 1),
    (3, 1, 3, 200, 1_010_000, -1),
    (4, 1, 4, 300, 999_900, 1),
    (5, 2, 1, 40, 1_000_000, 1),
    (6, 4, 3, 50, 1_010_000, -1),
    (7, 4, 3, 20, 1_009_900, -1),       # C: the execution price
    (8, 3, 4, 300, 999_900, 1),         # U: deletion of the original ...
    (8, 1, 5, 250, 1_000_100, 1),       # ... then submission of the new reference
    (9, 3, 1, 60, 1_000_000, 1),
    (10, 5, 0, 75, 1_005_000, 1),
    (11, 7, 0, 0, -1, -1),
    (12, 7, 0, 0, 0, -1),
    (13, 7, 0, 0, 1, -1),
    (14, 6, -2, 1000, 1_005_000, -1),
    (17, 6, -1, 10, 1_005_000, -1),
    (18, 6, -3, 20, 1_005_000, -1),
]
_A = [1_010_000, 200]
EXPECTED_BOOK = [
    [AD, 0, 1_000_000, 100, AD, 0, BD, 0],
    [1_010_000, 200, 1_000_000, 100, AD, 0, BD, 0],
    [1_010_000, 200, 1_000_000, 100, AD, 0, 999_900, 300],
    [1_010_000, 200, 1_000_000, 60, AD, 0, 999_900, 300],
    [1_010_000, 150, 1_000_000, 60, AD, 0, 999_900, 300],
    [1_010_000, 130, 1_000_000, 60, AD, 0, 999_900, 300],
    [1_010_000, 130, 1_000_000, 60, AD, 0, BD, 0],
    [1_010_000, 130, 1_000_100, 250, AD, 0, 1_000_000, 60],
    [1_010_000, 130, 1_000_100, 250, AD, 0, BD, 0],
] + [[1_010_000, 130, 1_000_100, 250, AD, 0, BD, 0]] * 7


@pytest.mark.parametrize("slice_bytes", [1 << 20, 1], ids=["one-slice", "a-message-a-slice"])
def test_hand_worked_scenario_every_event_type(slice_bytes):
    # one message a slice: the level book and the H state carry from slice to slice
    day = lobster(hand_day(), ["TEST"], 2, start=None, end=None, slice_bytes=slice_bytes)["TEST"]
    msg = day.messages.to_pandas()
    assert list(msg.columns) == ["Time", "Type", "Order ID", "Size", "Price", "Direction"]
    got = [tuple(int(v) for v in row[1:]) for row in msg.itertuples(index=False)]
    assert got == [e[1:] for e in EXPECTED_MESSAGES]
    assert np.allclose(msg["Time"].to_numpy(), [ts(e[0]) / 1e9 for e in EXPECTED_MESSAGES], rtol=0, atol=1e-9)
    assert day.orderbook.column_names == orderbook_columns(2)
    assert day.orderbook.to_pandas().to_numpy().tolist() == EXPECTED_BOOK
    assert day.skipped == {"B": 1, "X": 1}
    assert day.rows == len(EXPECTED_MESSAGES)


def test_skipped_counts_the_window_only():
    """skipped counted the whole day's unapplied messages whatever the window: the X of an
    unknown reference at ts(16), outside [ts(12), ts(16)), was counted beside the rows of a
    window it is not in."""
    day = lobster(hand_day(), ["TEST"], 2, start=ts(12), end=ts(16))["TEST"]
    assert [int(t) for t in day.messages.to_pandas()["Type"]] == [7, 7, 6]
    assert day.skipped == {"B": 1}
    day = lobster(hand_day(), ["TEST"], 2, start=ts(16), end=ts(17))["TEST"]
    assert day.rows == 0 and day.skipped == {"X": 1}


def test_a_hidden_execution_with_no_side_is_counted_not_written_as_a_buy():
    """A P whose side byte was neither B nor S (0xFF, a NUL) was written as Direction 1, a buy,
    and counted nowhere; it is skipped and counted now, as an A with a bad side is."""
    m = [enc("R", stock_locate=1, timestamp=1, stock="TEST")]
    m += [enc("P", stock_locate=1, timestamp=ts(k), order_reference_number=0, buy_sell_indicator=side, shares=10,
              stock="TEST", price=10_000, match_number=k + 1)
          for k, side in enumerate((b"\xff", b"B", b"\x00", b"S"))]
    day = lobster(b"".join(m), ["TEST"], 1, start=None, end=None)["TEST"]
    msg = day.messages.to_pandas()
    assert msg["Type"].tolist() == [5, 5] and msg["Direction"].tolist() == [1, -1]
    assert day.skipped == {"P (side neither B nor S)": 2}


def test_order_references_and_cross_shares_past_int64_are_left_out_and_counted():
    """LOBSTER's columns are int64: an order reference of 2**64-1 was written -1 (the opening
    cross's Order ID) and 2**63 as -2**63, a cross of 2**64-2 shares as Size -2 (probe 38).
    Their rows are left out and counted; the book rows after them still show the orders."""
    big, top = 2 ** 63, 2 ** 64 - 1
    m = [enc("R", stock_locate=1, timestamp=1, stock="TEST")]
    m += [enc("A", stock_locate=1, timestamp=ts(k), order_reference_number=ref, buy_sell_indicator="B",
              shares=100 + k, stock="TEST", price=10_000 - k) for k, ref in enumerate((5, big, top))]
    m += [enc("E", stock_locate=1, timestamp=ts(3), order_reference_number=top, executed_shares=2, match_number=1),
          enc("X", stock_locate=1, timestamp=ts(4), order_reference_number=5, cancelled_shares=1),
          enc("Q", stock_locate=1, timestamp=ts(5), shares=2 ** 64 - 2, stock="TEST", cross_price=10_000,
              match_number=2, cross_type="C"),
          enc("Q", stock_locate=1, timestamp=ts(6), shares=2 ** 63 - 1, stock="TEST", cross_price=10_000,
              match_number=3, cross_type="O")]
    day = lobster(b"".join(m), ["TEST"], 3, start=None, end=None)["TEST"]
    rows = day.messages.to_pandas()[["Type", "Order ID", "Size", "Price"]].to_numpy().tolist()
    assert rows == [[1, 5, 100, 10_000], [2, 5, 1, 10_000], [6, -1, 2 ** 63 - 1, 10_000]]
    assert day.skipped == {"order reference of 2^63 or more (LOBSTER's Order ID is int64)": 3,
                           "Q of 2^63 shares or more (LOBSTER's Size is int64)": 1}
    book = day.orderbook.to_pandas().to_numpy().tolist()
    # bid levels (price, size) after the X: 10_000 x 99, 9_999 x 101, 9_998 x 100 (102 less the E's 2)
    assert [b[2:4] + b[6:8] + b[10:12] for b in book[1:]] == [[10_000, 99, 9_999, 101, 9_998, 100]] * 2


def test_messages_stamped_past_the_day_are_counted_not_lost_unseen():
    """The timestamp field runs to 78 h: a message after 24:00 is in no window (none may end
    past 24:00) and was dropped without a word (probe 38); it is counted in skipped."""
    day_ns = 86_400_000_000_000
    m = [enc("R", stock_locate=1, timestamp=1, stock="TEST")]
    m += [enc("A", stock_locate=1, timestamp=t, order_reference_number=k + 1, buy_sell_indicator="B", shares=10,
              stock="TEST", price=10_000) for k, t in enumerate((day_ns - 1, day_ns, 2 ** 48 - 1))]
    day = lobster(b"".join(m), ["TEST"], 1, start=None, end=None)["TEST"]
    assert day.rows == 1
    assert day.skipped == {"stamped at or after 24:00 (past the day: no window reaches it)": 2}


def test_a_trading_H_while_trading_gets_no_row():
    """Only an H that changes something makes a row: a T repeated while the stock trades
    (the day's first included) starts nothing; a T after a pause resumes trading."""
    states = "TTPTTHQQT"
    m = [enc("R", stock_locate=1, timestamp=1, stock="TEST")]
    m += [enc("H", stock_locate=1, timestamp=ts(k), stock="TEST", trading_state=c) for k, c in enumerate(states)]
    for slice_bytes in (1 << 20, 1):
        day = lobster(b"".join(m), ["TEST"], 1, start=None, end=None, slice_bytes=slice_bytes)["TEST"]
        msg = day.messages.to_pandas()
        assert msg["Price"].tolist() == [-1, 1, -1, 0, 0, 1]
        assert np.allclose(msg["Time"].to_numpy(), [ts(k) / 1e9 for k in (2, 3, 5, 6, 7, 8)], rtol=0, atol=1e-9)


def test_hand_worked_files_are_lobster_csv(tmp_path):
    out = tmp_path / "out"
    day = lobster(hand_day(), "TEST", 2, start="09:30", end="16:00", date="2019-01-30", out=out)["TEST"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["TEST_2019-01-30_34200000_57600000_message_2.csv",
                     "TEST_2019-01-30_34200000_57600000_orderbook_2.csv"]
    lines = (out / names[0]).read_text().splitlines()
    assert lines[0] == "34200.001000124,1,1,100,1000000,1"   # no header; all nine decimals
    assert lines[6] == "34200.008000131,3,4,300,999900,1"
    assert lines[13] == "34200.014000137,6,-2,1000,1005000,-1"
    book_lines = (out / names[1]).read_text().splitlines()
    assert book_lines[0] == f"{AD},0,1000000,100,{AD},0,{BD},0"
    assert len(lines) == len(book_lines) == day.messages.num_rows == len(EXPECTED_MESSAGES)


def test_parquet_has_the_same_content(tmp_path):
    import pyarrow.parquet as pq

    day = lobster(hand_day(), "TEST", 2, start=None, end=None, date="20190130", out=tmp_path, parquet=True)["TEST"]
    assert [p.split("/")[-1] for p in day.files] == ["TEST_2019-01-30_0_86400000_message_2.parquet",
                                                     "TEST_2019-01-30_0_86400000_orderbook_2.parquet"]
    assert pq.read_table(day.files[0]).equals(day.messages)
    assert pq.read_table(day.files[1]).equals(day.orderbook)


def test_window_keeps_rows_and_book_from_before():
    # Submissions before 09:30 shape the book of the first row inside the window.
    early = enc("A", stock_locate=1, timestamp=T0 - 5, order_reference_number=77, buy_sell_indicator="S",
                shares=9, stock="TEST", price=1_020_000)
    data = hand_day()
    pos = 2 * len(enc("R", stock="X"))  # after the two R messages
    data = data[:pos] + early + data[pos:]
    full = lobster(data, ["TEST"], 2, start=None, end=None)["TEST"]
    win = lobster(data, ["TEST"], 2, start="09:30", end="09:30:00.010")["TEST"]
    t = full.messages["Time"].to_numpy()
    keep = (t >= 34200) & (t < 34200.010)
    assert win.messages.to_pandas().equals(full.messages.to_pandas()[keep].reset_index(drop=True))
    assert (win.orderbook.to_pandas().to_numpy() == full.orderbook.to_pandas().to_numpy()[keep]).all()
    assert t[0] < 34200 and not keep[0] and keep[1:10].all() and not keep[10:].any()
    # the first row in the window: the bid of 09:30 beside the ask submitted before 09:30
    assert win.orderbook.to_pandas().to_numpy()[0].tolist() == [1_020_000, 9, 1_000_000, 100, AD, 0, BD, 0]


def test_unknown_symbol_and_missing_date_are_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="NOPE"):
        lobster(hand_day(), ["NOPE"], 2)
    with pytest.raises(ValueError, match="date"):
        lobster(hand_day(), ["TEST"], 2, out=tmp_path)
    with pytest.raises(ValueError, match="out="):
        lobster(hand_day(), ["TEST"], 2, tables=False)
    for bad in (0, -3, 1001, 10**9):  # a level is 32 bytes a row: 10**9 would be 32 GB a row
        with pytest.raises(ValueError, match="between 1 and 1000"):
            lobster(hand_day(), ["TEST"], bad)
    for bad in (2.7, "3", True):   # 2.7 was taken as 2 levels
        with pytest.raises(TypeError, match="lobster: levels must be a whole number"):
            lobster(hand_day(), ["TEST"], bad)
    # a symbol found and one not: no file is left for either (TEST's were under way)
    with pytest.raises(KeyError, match="NOPE"):
        lobster(hand_day(), ["TEST", "NOPE"], 2, out=tmp_path / "o", date="2019-01-30", slice_bytes=64)
    assert list((tmp_path / "o").iterdir()) == []


@pytest.mark.parametrize("symbol", ["../PWN", "A/B", "..", "."])
def test_a_symbol_that_is_not_a_file_name_is_refused_before_anything_is_written(symbol, tmp_path):
    """Any ASCII is an ITCH symbol: a day listing "../PWN" made `lobster -s ../PWN -o out/in`
    write out/PWN_... outside the directory asked for."""
    t = 34_260_000_000_000
    day = b"".join([enc("R", stock_locate=1, timestamp=1, stock=symbol),
                    enc("A", stock_locate=1, timestamp=t, order_reference_number=1, buy_sell_indicator="B",
                        shares=100, stock=symbol, price=10_000)])
    out = tmp_path / "out" / "in"
    with pytest.raises(ValueError, match="cannot name a file"):
        lobster(day, [symbol], 1, out=out, date="2019-01-30")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert lobster(day, [symbol], 1)[symbol].rows == 1            # as tables it is any symbol


@pytest.mark.parametrize("slice_bytes", [1, 1 << 20])
def test_an_order_message_whose_header_names_another_stock_is_filed_under_the_order(slice_bytes):
    """The engine applies an E/X/D/U to the order its reference names, whatever stock the
    header says (counting locate_mismatch). LOBSTER filed it under the header's stock, which
    skipped it, so the order's own files missed the change their book rows then showed."""
    t = 34_260_000_000_000
    day = b"".join([
        enc("R", stock_locate=1, stock="AAA", timestamp=1), enc("R", stock_locate=2, stock="BBB", timestamp=2),
        enc("R", stock_locate=3, stock="CCC", timestamp=3),
        enc("A", stock_locate=1, timestamp=t, order_reference_number=1, buy_sell_indicator="B", shares=100,
            stock="AAA", price=10_000),
        enc("A", stock_locate=2, timestamp=t + 1, order_reference_number=2, buy_sell_indicator="S", shares=200,
            stock="BBB", price=20_000),
        enc("A", stock_locate=3, timestamp=t + 2, order_reference_number=3, buy_sell_indicator="S", shares=300,
            stock="CCC", price=30_000),
        enc("E", stock_locate=1, timestamp=t + 3, order_reference_number=2, executed_shares=10, match_number=5),
        enc("X", stock_locate=2, timestamp=t + 4, order_reference_number=1, cancelled_shares=10),
        enc("D", stock_locate=1, timestamp=t + 5, order_reference_number=3),      # CCC's order: not chosen
        enc("U", stock_locate=3, timestamp=t + 6, original_order_reference_number=2,
            new_order_reference_number=4, shares=50, price=20_100),
        enc("E", stock_locate=1, timestamp=t + 7, order_reference_number=99, executed_shares=1, match_number=6),
    ])
    res = lobster(day, ["AAA", "BBB"], 1, start="09:30", end="09:32", slice_bytes=slice_bytes)
    aaa, bbb = res["AAA"], res["BBB"]
    assert aaa.messages.to_pandas()[["Type", "Order ID", "Size", "Price", "Direction"]].values.tolist() == [
        [1, 1, 100, 10_000, 1], [2, 1, 10, 10_000, 1]]
    assert aaa.orderbook.to_pandas().values.tolist() == [[AD, 0, 10_000, 100], [AD, 0, 10_000, 90]]
    assert bbb.messages.to_pandas()[["Type", "Order ID", "Size", "Price", "Direction"]].values.tolist() == [
        [1, 2, 200, 20_000, -1], [4, 2, 10, 20_000, -1], [3, 2, 190, 20_000, -1], [1, 4, 50, 20_100, -1]]
    assert bbb.orderbook.to_pandas().values.tolist() == [
        [20_000, 200, BD, 0], [20_000, 190, BD, 0], [AD, 0, BD, 0], [20_100, 50, BD, 0]]
    # what changed no chosen stock's book is its header stock's skip: CCC's delete, an unknown order
    assert aaa.skipped == {"D": 1, "E": 1} and bbb.skipped == {}
    books = itchflow.Books()
    books.apply(day)
    assert books.anomalies("AAA")["locate_mismatch"] == 1 and books.anomalies("BBB")["locate_mismatch"] == 2
    for sym, got in (("AAA", aaa), ("BBB", bbb)):
        assert got.orderbook.to_pandas().values.tolist()[-1] == _book_row(books, books.symbols[sym], 1)


def test_bad_bytes_mid_day_name_the_file_and_leave_no_files(tmp_path):
    day = tmp_path / "day_20190130.itch"
    good = hand_day()
    day.write_bytes(good + b"\x00\x05A\x00")  # a message cut off by the end of the file
    with pytest.raises(itchflow.ITCHFormatError) as e:
        lobster(str(day), ["TEST"], 2, out=tmp_path / "o", slice_bytes=64)
    assert str(day) in str(e.value) and f"byte offset {len(good)}" in str(e.value)
    assert list((tmp_path / "o").iterdir()) == []  # not even a .part file


# ---- a generated day against the engine, message by message -------------------------------

@pytest.fixture(scope="module")
def gen_day():
    return generate_day(20_000, seed=5, stocks=20)


def _messages(buf):
    pos, n = 0, len(buf)
    while pos < n:
        length = int(buf[pos]) << 8 | int(buf[pos + 1])
        yield buf[pos:pos + 2 + length]
        pos += 2 + length


def _book_row(books, loc, levels):
    bids, asks = access.depth_levels(books, loc, levels)
    row = []
    for i in range(levels):
        row += [int(asks[i, 0]), int(asks[i, 1])] if i < len(asks) else [AD, 0]
        row += [int(bids[i, 0]), int(bids[i, 1])] if i < len(bids) else [BD, 0]
    return row


def test_orderbook_rows_equal_engine_depth_after_each_message(gen_day):
    levels = 5
    dec = itchflow.read(gen_day)
    counts = np.bincount(np.concatenate([dec[c]["stock_locate"] for c in "AFEXDCU"]), minlength=21)
    symbols = {int(r["stock_locate"]): r["stock"].decode().strip() for r in dec["R"]}
    chosen = [symbols[int(loc)] for loc in np.argsort(counts)[::-1][:2]]
    result = lobster(gen_day, chosen, levels, start=None, end=None)
    locs = {symbols[k]: k for k in symbols}
    tables = {s: (result[s].messages.to_pandas(), result[s].orderbook.to_pandas().to_numpy()) for s in chosen}
    # Rows are in message order: walk each symbol's rows alongside the stream.
    cursor = {s: 0 for s in chosen}
    by_loc = {locs[s]: s for s in chosen}
    side_of = {}
    books = access.new_books()
    checked = 0
    last_state = {}
    for raw in _messages(gen_day):
        t = chr(raw[2])
        loc = int(raw[3]) << 8 | int(raw[4])
        stamp = int.from_bytes(bytes(raw[7:13]), "big")
        if t in "AF":
            side_of[int.from_bytes(bytes(raw[13:21]), "big")] = chr(raw[21])
        if t == "U":
            # replay the replace in its two LOBSTER steps: D of the old, A of the new
            old = int.from_bytes(bytes(raw[13:21]), "big")
            new = int.from_bytes(bytes(raw[21:29]), "big")
            shares = int.from_bytes(bytes(raw[29:33]), "big")
            price = int.from_bytes(bytes(raw[33:37]), "big")
            side_of[new] = side_of[old]
            steps = [enc("D", stock_locate=loc, timestamp=stamp, order_reference_number=old),
                     enc("A", stock_locate=loc, timestamp=stamp, order_reference_number=new,
                         buy_sell_indicator=side_of[old], shares=shares, stock="X", price=price)]
        else:
            steps = [bytes(raw)]
        makes_row = t in "AFXDECUPQ"
        if t == "H":  # a halt, a quote or trade resumption; not the day's first "trading"
            state = chr(raw[21])
            makes_row = state != "T" or last_state.get(loc, "T") != "T"
            last_state[loc] = state
        for step in steps:
            books.apply(np.frombuffer(step, np.uint8))
            sym = by_loc.get(loc)
            if sym is None or not makes_row:
                continue
            msg, book = tables[sym]
            i = cursor[sym]
            assert msg["Time"].iat[i] == stamp / 1e9, (sym, t, i)
            assert book[i].tolist() == _book_row(books, loc, levels), (sym, t, i)
            cursor[sym] = i + 1
            checked += 1
    for sym in chosen:
        assert cursor[sym] == len(tables[sym][0]), f"{sym}: rows not matched to messages"
    assert checked > 1000
    # every order message of the symbol made rows of the right type (U: 3 then 1)
    for sym in chosen:
        types = tables[sym][0]["Type"].to_numpy()
        n = {c: int((dec[c]["stock_locate"] == locs[sym]).sum()) for c in "AFXDECUPQ"}
        assert (types == 1).sum() == n["A"] + n["F"] + n["U"]
        assert (types == 2).sum() == n["X"]
        assert (types == 3).sum() == n["D"] + n["U"]
        assert (types == 4).sum() == n["E"] + n["C"]
        assert (types == 5).sum() == n["P"]
        assert (types == 6).sum() == n["Q"]


# ---- the day in slices: the same rows, memory bounded by a slice ----------------------------

def _busiest(day, k):
    dec = itchflow.read(day, "RA")
    counts = np.bincount(dec["A"]["stock_locate"], minlength=65536)
    return [r["stock"].decode().strip() for r in sorted(dec["R"], key=lambda r: -counts[r["stock_locate"]])[:k]]


def _same_day(a, b):
    assert a.rows == b.rows and a.skipped == b.skipped
    assert a.messages.equals(b.messages) and a.orderbook.equals(b.orderbook)


def test_slices_give_the_rows_of_one_whole_pass(gen_day, tmp_path, monkeypatch):
    import itchflow.sinks.lobster as lob

    chosen = _busiest(gen_day, 3)
    for start, end in ((None, None), ("09:45", "15:30")):
        whole = lobster(gen_day, chosen, 4, start=start, end=end, slice_bytes=len(gen_day) + 1)
        assert all(whole[s].rows > 1000 for s in chosen)
        for slice_bytes in (997, 40_000):
            sliced = lobster(gen_day, chosen, 4, start=start, end=end, slice_bytes=slice_bytes)
            for s in chosen:
                _same_day(sliced[s], whole[s])
    # files written in many small batches without keeping tables: the same bytes as one batch
    kept = lobster(gen_day, chosen, 4, date="2020-01-02", out=tmp_path / "one", slice_bytes=len(gen_day) + 1)
    monkeypatch.setattr(lob, "WRITE_BATCH_BYTES", 4096)
    for parquet in (False, True):
        streamed = lobster(gen_day, chosen, 4, date="2020-01-02", out=tmp_path / f"many{parquet}", tables=False,
                           parquet=parquet, slice_bytes=5000)
        for s in chosen:
            assert streamed[s].messages is None and streamed[s].orderbook is None
            assert streamed[s].rows == kept[s].rows and streamed[s].skipped == kept[s].skipped
            if parquet:
                import pyarrow.parquet as pq

                assert pq.read_table(streamed[s].files[0]).equals(kept[s].messages)
                assert pq.read_table(streamed[s].files[1]).equals(kept[s].orderbook)
            else:
                for mine, theirs in zip(streamed[s].files, kept[s].files):
                    assert open(mine, "rb").read() == open(theirs, "rb").read()
    assert sorted(p.name for p in (tmp_path / "manyFalse").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())  # no .part left


def test_a_capture_gives_the_rows_of_the_raw_day(gen_day, tmp_path):
    # a capture reaches the engine a packet at a time; its rows are still those of the raw bytes
    import itch_reference as ref

    msgs = [bytes(m[2:]) for m in _messages(gen_day)]
    packets = [ref.mold_packet(b"SESSION001", 1 + i, msgs[i:i + 17]) for i in range(0, len(msgs), 17)]
    path = tmp_path / "day_20200102.pcap"
    path.write_bytes(ref.pcap_file([ref.eth_ipv4_udp(p) for p in packets]))
    chosen = _busiest(gen_day, 2)
    raw = lobster(gen_day, chosen, 3, start=None, end=None)
    cap = lobster(str(path), chosen, 3, start=None, end=None, slice_bytes=20_000)
    for s in chosen:
        _same_day(cap[s], raw[s])


def test_memory_is_bounded_by_a_slice_not_the_day(gen_day, tmp_path, monkeypatch):
    # numpy's allocations are traced; the rows of the busy stock's book for the whole day come to
    # tens of MB, walking in 64 KB slices with 1 MB write batches must stay within a few MB of
    # what the engine itself holds. Keeping the tables (the control) must not: that shows the
    # measurement sees the rows.
    from peak_memory import peak_allocated

    import itchflow.sinks.lobster as lob

    day = generate_day(300_000, seed=3, stocks=3)
    sym = _busiest(day, 1)[0]
    # compile and import outside the measurement
    lobster(gen_day, _busiest(gen_day, 1), 10, out=tmp_path / "w", date="2020-01-02", tables=False)
    monkeypatch.setattr(lob, "WRITE_BATCH_BYTES", 1 << 20)

    _, engine = peak_allocated(lambda: access.replay_events(day, [sym], l2=True, on_events=lambda ev: None,
                                                            slice_bytes=64 << 10))
    run = lambda tables, d: lobster(day, [sym], 10, start=None, end=None, out=tmp_path / d, date="2020-01-02",  # noqa: E731
                                    tables=tables, slice_bytes=64 << 10)
    streamed, streaming_peak = peak_allocated(lambda: run(False, "s"))
    kept, kept_peak = peak_allocated(lambda: run(True, "k"))
    book_bytes = streamed[sym].rows * 40 * 8
    assert streamed[sym].rows == kept[sym].rows and book_bytes > 40e6
    assert streaming_peak - engine < 8e6, (streaming_peak, engine)
    assert kept_peak - engine > book_bytes, (kept_peak, engine, book_bytes)


def test_dates_and_times_from_names_and_options():
    from itchflow.sinks._clock import clock_ns, every_ns, trading_date

    assert trading_date("/data/01302019.NASDAQ_ITCH50.gz") == "2019-01-30"   # Nasdaq's MMDDYYYY
    assert trading_date("itch_20191230.bin") == "2019-12-30"
    assert trading_date("x_2020-01-30.pcap") == "2020-01-30"
    assert trading_date("day.itch") is None and trading_date(b"\x00\x01") is None
    assert trading_date("day.itch", "2019-01-30") == "2019-01-30"
    with pytest.raises(ValueError):
        trading_date("day.itch", "30/01/2019")
    assert clock_ns("09:30") == 34_200_000_000_000 and clock_ns("24:00") == 86_400_000_000_000
    assert clock_ns("16:00:00.5") == 57_600_500_000_000
    assert every_ns("1min") == 60_000_000_000 and every_ns("250ms") == 250_000_000 and every_ns(2) == 2_000_000_000
    for bad in ("25:00", "9h30", "12:61"):
        with pytest.raises(ValueError):
            clock_ns(bad)


@pytest.mark.parametrize("slice_bytes", [1 << 20, 1], ids=["one-slice", "a-message-a-slice"])
def test_over_cancel_and_over_execution_write_the_shares_the_order_had(slice_bytes):
    """Probe 26 F6: X 500 on an order of 90 wrote a Type 2 row of 500 (a LOBSTER reader kept a
    live order of -410 shares), E 150 on an order of 100 a Type 4 row of 150. The rows say
    what left the book: a deletion (3) of 90, an execution of 100. An X of every share left
    is a deletion too; a partial X stays a cancellation (2). The order is added in an earlier
    slice than the X when each message is a slice (the level's order count carries over)."""
    m = [enc("R", stock_locate=1, timestamp=1, stock="TEST"),
         enc("A", stock_locate=1, timestamp=ts(1), order_reference_number=1, buy_sell_indicator="B",
             shares=100, stock="TEST", price=1_000_000),
         enc("A", stock_locate=1, timestamp=ts(2), order_reference_number=2, buy_sell_indicator="B",
             shares=5, stock="TEST", price=1_000_000),
         enc("X", stock_locate=1, timestamp=ts(3), order_reference_number=1, cancelled_shares=10),   # 90 left
         enc("X", stock_locate=1, timestamp=ts(4), order_reference_number=1, cancelled_shares=500),  # over-cancel
         enc("A", stock_locate=1, timestamp=ts(5), order_reference_number=3, buy_sell_indicator="S",
             shares=100, stock="TEST", price=1_010_000),
         enc("E", stock_locate=1, timestamp=ts(6), order_reference_number=3, executed_shares=150, match_number=1),
         enc("X", stock_locate=1, timestamp=ts(7), order_reference_number=2, cancelled_shares=5)]       # all of it
    day = lobster(b"".join(m), ["TEST"], 1, start=None, end=None, slice_bytes=slice_bytes)["TEST"]
    got = [tuple(int(v) for v in row[1:]) for row in day.messages.to_pandas().itertuples(index=False)]
    assert got == [(1, 1, 100, 1_000_000, 1), (1, 2, 5, 1_000_000, 1),
                   (2, 1, 10, 1_000_000, 1), (3, 1, 90, 1_000_000, 1),
                   (1, 3, 100, 1_010_000, -1), (4, 3, 100, 1_010_000, -1),
                   (3, 2, 5, 1_000_000, 1)]
    assert day.orderbook.to_pandas().to_numpy().tolist() == [
        [AD, 0, 1_000_000, 100], [AD, 0, 1_000_000, 105], [AD, 0, 1_000_000, 95], [AD, 0, 1_000_000, 5],
        [1_010_000, 100, 1_000_000, 5], [AD, 0, 1_000_000, 5], [AD, 0, BD, 0]]


def test_lobster_options_are_usage_errors_and_a_missing_date_names_the_option(tmp_path):
    """--levels 0 and --date 2019-13-45 were exit 1 after the day was read, and a file name
    without a date asked for date='YYYY-MM-DD', Python's spelling, on the command line (probe 34)."""
    from click.testing import CliRunner

    from itchflow.cli import main
    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(day, 20_000, 1, stocks=10)
    sym = itchflow.read(day, "R")["R"]["stock"][0].decode().strip()
    runner = CliRunner()
    for option, value in (("--levels", "0"), ("--date", "2019-13-45")):
        r = runner.invoke(main, ["lobster", str(day), "-s", sym, "-o", str(tmp_path / "lo"), option, value])
        assert r.exit_code == 2 and option in r.output, r.output
    # batch's lobster job takes the same levels (it was exit 1, refused by the job: probe 34)
    r = runner.invoke(main, ["batch", str(day), "-j", "lobster", "-s", sym, "-o", str(tmp_path / "b"),
                             "--levels", "0"])
    assert r.exit_code == 2 and "--levels" in r.output and not (tmp_path / "b").exists(), r.output
    r = runner.invoke(main, ["lobster", str(day), "-s", sym, "-o", str(tmp_path / "lo"), "-q"])
    assert r.exit_code == 1 and "itchflow lobster --date YYYY-MM-DD" in r.output, r.output
    r = runner.invoke(main, ["lobster", str(day), "-s", sym, "-o", str(tmp_path / "lo"), "-q", "--date", "20190130"])
    assert r.exit_code == 0 and f"{sym}_2019-01-30_" in r.output, r.output


def test_a_failed_run_leaves_no_empty_folder_it_made(tmp_path):
    """lobster with a symbol the day does not list failed cleanly but left an empty OUT (and
    the parents made with it) behind (probe 37); a folder that was there stays."""
    from click.testing import CliRunner

    from itchflow.cli import main

    day = tmp_path / "day.itch"
    day.write_bytes(hand_day())
    runner = CliRunner()
    out = tmp_path / "made" / "lo"
    r = runner.invoke(main, ["lobster", str(day), "-s", "TEST,NOSUCH", "-o", str(out), "--date", "2019-01-30", "-q"])
    assert r.exit_code == 1 and "NOSUCH" in r.output, r.output
    assert not (tmp_path / "made").exists()
    there = tmp_path / "there"
    there.mkdir()
    r = runner.invoke(main, ["lobster", str(day), "-s", "NOSUCH", "-o", str(there), "--date", "2019-01-30", "-q"])
    assert r.exit_code == 1 and there.is_dir()
    r = runner.invoke(main, ["lobster", str(day), "-s", "TEST", "-o", str(out), "--date", "2019-01-30", "-q"])
    assert r.exit_code == 0 and len(list(out.iterdir())) == 2, r.output


def test_file_names_hold_a_window_of_part_of_a_millisecond():
    """The name's end is rounded up, its start down: rows at 09:31:00.000000000 of a window
    ending 09:31:00.000000001 are inside the window the name gives (probe 39)."""
    from itchflow.sinks.lobster import file_names

    assert file_names("AAA", "2019-01-30", 34_200_000_500_000, 34_260_000_000_001, 1)[0] == \
        "AAA_2019-01-30_34200000_34260001_message_1.csv"
    assert file_names("AAA", "2019-01-30", 34_200_000_000_000, 57_600_000_000_000, 1)[0] == \
        "AAA_2019-01-30_34200000_57600000_message_1.csv"
