"""Bars against an independent slow computation from decoded messages (a plain-dict book
and trade list built from ``itchflow.read``), on a generated day and on hand-worked trades
with breaks, non-printable executions, hidden trades and crosses."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

import itchflow
from itchflow import encode_message as enc
from itchflow.sim.generator import generate_day
from itchflow.sinks.bars import bars

T0 = 34_200_000_000_000


def merged(dec):
    """Every decoded message as (sequence, type, record), in sequence order."""
    rows = [(int(r["sequence"]), c, r) for c in "RAFEXDCUPQB" for r in dec[c]]
    return sorted(rows, key=lambda x: x[0])


def reference(data, t0: int, step: int, nbars: int, tend: int | None = None):
    """Slow, obvious bars: {(symbol, bar): dict} from decoded messages; the last bar ends at
    tend (default: a whole step after the one before)."""
    dec = itchflow.read(data)
    names = {}
    orders = {}                                   # ref -> [loc, side, price, shares]
    levels = defaultdict(lambda: defaultdict(int))  # (loc, side) -> price -> shares
    counts = defaultdict(lambda: defaultdict(int))
    quotes = defaultdict(list)                    # loc -> [(ts, bid, bidsz, ask, asksz)]
    trades = []                                   # (ts, loc, price, shares, kind, printable, match)

    def change(loc, side, price, d_shares, d_count):
        lv, ct = levels[(loc, side)], counts[(loc, side)]
        lv[price] += d_shares
        ct[price] += d_count
        if ct[price] == 0:
            del lv[price], ct[price]

    def top(loc):
        b, a = levels[(loc, "B")], levels[(loc, "S")]
        bp = max(b) if b else 0
        ap = min(a) if a else 0
        return bp, (b[bp] if b else 0), ap, (a[ap] if a else 0)

    for _, c, r in merged(dec):
        ts, loc = int(r["timestamp"]), int(r["stock_locate"])
        if c == "R":
            names[loc] = r["stock"].decode().strip()
            continue
        if c in "AF":
            side = r["buy_sell_indicator"].decode()
            orders[int(r["order_reference_number"])] = [loc, side, int(r["price"]), int(r["shares"])]
            change(loc, side, int(r["price"]), int(r["shares"]), 1)
        elif c in "EXDC":
            ref = int(r["order_reference_number"])
            o = orders[ref]
            loc = o[0]
            take = {"E": lambda: int(r["executed_shares"]), "C": lambda: int(r["executed_shares"]),
                    "X": lambda: int(r["cancelled_shares"]), "D": lambda: o[3]}[c]()
            if c == "E":
                trades.append((ts, loc, o[2], take, "E", True, int(r["match_number"])))
            if c == "C":
                trades.append((ts, loc, int(r["execution_price"]), take, "C", r["printable"] == b"Y",
                               int(r["match_number"])))
            gone = take >= o[3]
            change(loc, o[1], o[2], -min(take, o[3]), -1 if gone else 0)
            o[3] -= take
            if gone:
                del orders[ref]
        elif c == "U":
            o = orders.pop(int(r["original_order_reference_number"]))
            loc = o[0]
            change(loc, o[1], o[2], -o[3], -1)
            orders[int(r["new_order_reference_number"])] = [loc, o[1], int(r["price"]), int(r["shares"])]
            change(loc, o[1], int(r["price"]), int(r["shares"]), 1)
        elif c == "P":
            trades.append((ts, loc, int(r["price"]), int(r["shares"]), "P", True, int(r["match_number"])))
            continue
        elif c == "Q":
            trades.append((ts, loc, int(r["cross_price"]), int(r["shares"]), "Q", True, int(r["match_number"])))
            continue
        elif c == "B":
            trades.append((ts, loc, 0, 0, "B", False, int(r["match_number"])))
            continue
        quotes[loc].append((ts,) + top(loc))
    broken = {t[6] for t in trades if t[4] == "B"}

    out = {}
    tend = t0 + step * nbars if tend is None else tend
    for loc, name in names.items():
        q = quotes[loc]
        for b in range(nbars):
            lo, hi = t0 + b * step, min(t0 + (b + 1) * step, tend)
            state, area, both = (0, 0, 0, 0), 0.0, 0
            cur = lo
            for (t, *s) in q + [(tend + 1, None, None, None, None)]:
                if t > lo:
                    seg = min(t, hi) - cur
                    if seg > 0 and state[0] > 0 and state[2] > 0:
                        area += (state[2] - state[0]) * seg
                        both += seg
                    cur = max(cur, min(t, hi))
                if t >= hi or s[0] is None:
                    break
                state = tuple(s)
            bt = [t for t in trades if t[1] == loc and lo <= t[0] < hi and t[6] not in broken]
            pr = [t for t in bt if t[4] in "ECP" and t[5] and t[3] > 0]   # a 0-share print: no trade
            vol = sum(t[3] for t in pr)
            out[(name, b)] = dict(
                bid=state[0] / 1e4 if state[0] else math.nan, bid_size=state[1],
                ask=state[2] / 1e4 if state[2] else math.nan, ask_size=state[3],
                spread=area / both / 1e4 if both else math.nan, two_sided_ns=both,
                open=pr[0][2] / 1e4 if pr else math.nan, close=pr[-1][2] / 1e4 if pr else math.nan,
                high=max(t[2] for t in pr) / 1e4 if pr else math.nan,
                low=min(t[2] for t in pr) / 1e4 if pr else math.nan,
                volume=vol, count=len(pr), vwap=sum(t[2] * t[3] for t in pr) / vol / 1e4 if vol else math.nan,
                cross_volume=sum(t[3] for t in bt if t[4] == "Q"))
    return out


def compare(table, ref, t0, step):
    df = table.to_pandas()
    assert len(df) == len(ref)
    for row in df.itertuples(index=False):
        exp = ref[(row.symbol, (row.start_ns - t0) // step)]
        for k, v in exp.items():
            got = getattr(row, k)
            if isinstance(v, float) and math.isnan(v):
                assert math.isnan(got), (row.symbol, row.start_ns, k, got)
            else:
                assert got == pytest.approx(v, rel=1e-12, abs=1e-12), (row.symbol, row.start_ns, k, got, v)


@pytest.fixture(scope="module")
def gen_day():
    return generate_day(20_000, seed=5, stocks=20)


def test_minute_bars_of_a_generated_day_match_a_slow_reference(gen_day):
    table = bars(gen_day, "1min", None, start="09:25", end="16:05")
    step = 60_000_000_000
    t0 = 34_200_000_000_000 - 5 * step
    ref = reference(gen_day, t0, step, 400)
    compare(table, ref, t0, step)
    df = table.to_pandas()
    assert df["volume"].sum() > 0 and df["cross_volume"].sum() > 0 and df["spread"].notna().sum() > 1000


def test_second_bars_of_some_symbols(gen_day):
    table = bars(gen_day, "1s", "CMCSA,HYG", start="15:59:00", end="16:00:05")
    t0, step = 57_540_000_000_000, 1_000_000_000
    ref = {k: v for k, v in reference(gen_day, t0, step, 65).items() if k[0] in ("CMCSA", "HYG")}
    compare(table, ref, t0, step)
    assert table["symbol"].unique().to_pylist() == ["CMCSA", "HYG"]


@pytest.mark.parametrize("every, minutes", [("7min", 7), ("1h", 60)])
def test_a_step_that_does_not_divide_the_window_ends_the_last_bar_at_end(gen_day, every, minutes):
    """With 1h bars from 09:30 to 16:00 the last bar ran 15:30-16:30: the closing cross and
    the after-hours trades landed in it and its quote was taken at 16:30. It now ends at 16:00."""
    table = bars(gen_day, every, None, start="09:30", end="16:00")
    step, t0, tend = minutes * 60_000_000_000, 34_200_000_000_000, 57_600_000_000_000
    nbars = -(-(tend - t0) // step)
    compare(table, reference(gen_day, t0, step, nbars, tend), t0, step)
    df = table.to_pandas()
    assert df["end_ns"].max() == tend and (df["end_ns"] - df["start_ns"]).min() == tend - (t0 + (nbars - 1) * step)
    assert ((df["end_ns"] - df["start_ns"]) <= step).all()


def hand_trades() -> bytes:
    m = [enc("R", stock_locate=1, timestamp=1, stock="TEST"),
         enc("A", stock_locate=1, timestamp=T0 - 10, order_reference_number=1, buy_sell_indicator="S",
             shares=1000, stock="TEST", price=100_000),
         enc("A", stock_locate=1, timestamp=T0 - 9, order_reference_number=2, buy_sell_indicator="B",
             shares=1000, stock="TEST", price=99_000)]
    s = 1_000_000_000
    m += [enc("E", stock_locate=1, timestamp=T0 + s // 2, order_reference_number=1, executed_shares=100,
              match_number=1),                                                           # 10.00 x 100
          enc("C", stock_locate=1, timestamp=T0 + s // 2 + 1, order_reference_number=1, executed_shares=50,
              match_number=2, printable="Y", execution_price=100_500),                  # 10.05 x 50
          enc("C", stock_locate=1, timestamp=T0 + s // 2 + 2, order_reference_number=1, executed_shares=70,
              match_number=3, printable="N", execution_price=120_000),                  # not printable
          enc("P", stock_locate=1, timestamp=T0 + s // 2 + 3, buy_sell_indicator="B", shares=30,
              stock="TEST", price=99_500, match_number=4),                              # 9.95 x 30
          enc("P", stock_locate=1, timestamp=T0 + s // 2 + 4, buy_sell_indicator="B", shares=500,
              stock="TEST", price=200_000, match_number=5),                             # broken below
          enc("Q", stock_locate=1, timestamp=T0 + s + 7, shares=4000, stock="TEST", cross_price=99_800,
              match_number=6, cross_type="H"),
          enc("B", stock_locate=1, timestamp=T0 + 2 * s + 5, match_number=5)]
    return b"".join(m)


def test_hand_worked_trades_breaks_and_crosses():
    df = bars(hand_trades(), "1s", ["TEST"], start="09:30", end="09:30:03").to_pandas()
    first = df.iloc[0]
    assert (first.open, first.high, first.low, first.close) == (10.0, 10.05, 9.95, 9.95)
    assert (first.volume, first["count"]) == (180, 3)
    assert first.vwap == pytest.approx((10.0 * 100 + 10.05 * 50 + 9.95 * 30) / 180)
    assert first.cross_volume == 0
    assert df.iloc[1].cross_volume == 4000 and df.iloc[1].volume == 0 and math.isnan(df.iloc[1].open)
    # the quote: 1000 - 100 - 50 - 70 = 780 shares left at the ask; the spread is constant
    assert (first.bid, first.bid_size, first.ask, first.ask_size) == (9.9, 1000, 10.0, 780)
    assert df["spread"].tolist() == pytest.approx([0.1, 0.1, 0.1])
    assert df["two_sided_ns"].tolist() == [1_000_000_000] * 3


def test_a_cross_the_book_does_not_count_is_not_in_cross_volume():
    """A Q of 2**63 shares (its field is 8 bytes) became a negative cross_volume; the book
    counts it as volume_overflow and keeps it out of the stock's volume, and so do the bars."""
    from itchflow.book.books import Books

    t = 34_200_000_000_000
    day = b"".join([enc("R", stock_locate=1, timestamp=1, stock="TEST"),
                    enc("Q", stock_locate=1, timestamp=t + 1, shares=2**63, stock="TEST", cross_price=100_000,
                        match_number=1, cross_type="O"),
                    enc("Q", stock_locate=1, timestamp=t + 2, shares=2**32, stock="TEST", cross_price=100_000,
                        match_number=2, cross_type="O"),
                    enc("Q", stock_locate=1, timestamp=t + 3, shares=700, stock="TEST", cross_price=100_000,
                        match_number=3, cross_type="O")])
    df = bars(day, "1min", ["TEST"], start="09:30", end="09:31").to_pandas()
    books = Books()
    books.apply(day)
    assert books.anomalies("TEST")["volume_overflow"] == 2
    assert df["cross_volume"].tolist() == [700] == [books.volume("TEST")]


def test_a_trade_of_0_shares_is_counted_and_makes_no_bar_price():
    """An E, C or P of 0 shares set a bar's high, low and close and its count, at prices no share
    traded at, and was counted nowhere (probe 38). The book counts each as zero_shares and
    leaves it out of its trades; the trades table keeps it, not counted."""
    from itchflow.book.books import Books

    t, s = 34_200_000_000_000, 1_000_000
    day = b"".join([
        enc("R", stock_locate=1, timestamp=1, stock="TEST"),
        enc("A", stock_locate=1, timestamp=t, order_reference_number=1, buy_sell_indicator="S", shares=100,
            stock="TEST", price=90_000),
        enc("A", stock_locate=1, timestamp=t, order_reference_number=2, buy_sell_indicator="B", shares=100,
            stock="TEST", price=10_000),
        enc("E", stock_locate=1, timestamp=t + s, order_reference_number=2, executed_shares=50, match_number=1),
        enc("E", stock_locate=1, timestamp=t + 2 * s, order_reference_number=1, executed_shares=0, match_number=2),
        enc("C", stock_locate=1, timestamp=t + 3 * s, order_reference_number=2, executed_shares=0, match_number=3,
            printable="Y", execution_price=1),
        enc("P", stock_locate=1, timestamp=t + 4 * s, order_reference_number=0, buy_sell_indicator="B", shares=0,
            stock="TEST", price=0xFFFFFFFF, match_number=4),
        enc("Q", stock_locate=1, timestamp=t + 5 * s, shares=0, stock="TEST", cross_price=5, match_number=5,
            cross_type="C")])
    row = bars(day, "1min", ["TEST"], start="09:30", end="09:31").to_pandas().iloc[0]
    assert (row.open, row.high, row.low, row.close, row.volume, row["count"]) == (1.0, 1.0, 1.0, 1.0, 50, 1)
    books = Books()
    books.record(["TEST"], bbo=False)
    books.apply(day)
    # a cross (Q) of 0 shares is the spec's cross that did not happen (real captures hold them):
    # no anomaly, counted as sent (probe 40)
    assert books.anomalies("TEST")["zero_shares"] == 3 and books.volume("TEST") == 50
    _, trades, _ = books.take_events()
    assert trades["shares"].tolist() == [50, 0, 0, 0, 0] and trades["printable"].tolist() == [1, 0, 0, 0, 1]


def test_volume_reconciles_with_the_book(gen_day):
    from itchflow.book.books import Books

    table = bars(gen_day, "1h", None, start=None, end=None).to_pandas()
    books = Books()
    books.apply(gen_day)
    per_symbol = table.groupby("symbol")[["volume", "cross_volume"]].sum().sum(axis=1)
    for sym, total in per_symbol.items():
        assert total == books.volume(sym), sym


def test_bad_options_are_clear_errors(gen_day):
    with pytest.raises(ValueError, match="every"):
        bars(gen_day, "fortnight")
    with pytest.raises(KeyError, match="NOPE"):
        bars(gen_day, "1min", ["NOPE"])
    with pytest.raises(ValueError, match="end"):
        bars(gen_day, "1min", start="16:00", end="09:30")


def test_a_panel_larger_than_the_memory_available_is_refused(gen_day, monkeypatch):
    import itchflow.hw.memory as memory
    import itchflow.sinks.bars as B

    # 1 ns bars of one stock over 6.5 h would be 23.4e12 cells: refused before anything is built
    with pytest.raises(ValueError, match=r"23,400,000,000,000 intervals of 1ns .* more than .* GB available"):
        bars(gen_day, "1ns", ["S0"])
    # every stock: refused when the stocks seen outgrow what is available (here 5 stocks' worth)
    nbars = 390  # 1-minute bars 09:30-16:00
    monkeypatch.setattr(memory, "available_bytes", lambda: 5 * nbars * B.CELL_BYTES + 1)
    with pytest.raises(ValueError, match=r"(\d+) stock\(s\) x 390 intervals") as e:
        bars(gen_day, "1min")
    assert 5 < int(str(e.value).split()[1]) <= 20
    assert bars(gen_day, "1min", start="09:30", end="09:35").num_rows == 20 * 5  # a window that fits


def test_slots_the_system_will_not_allocate_are_the_same_refusal(gen_day, monkeypatch):
    """The check counts the stocks seen, but the panel allocates its slots 16, 32, ... at a time:
    1 us bars over a minute (60 M a stock) passed the check for one stock (18 GB) and then asked
    the system for 16 stocks' worth at once: a MemoryError traceback from the command line.
    Refused like any other panel too large now."""
    import numpy as np

    import itchflow.sinks.bars as B

    real = np.zeros

    class _NumPy:   # the bars module's numpy, with a system that refuses large allocations
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def zeros(shape, *args, **kwargs):
            if np.prod(shape) > 50_000_000:
                raise MemoryError("Unable to allocate")
            return real(shape, *args, **kwargs)

    import itchflow.hw.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 10**15)   # the check passes, on any machine
    monkeypatch.setattr(B, "np", _NumPy())
    with pytest.raises(ValueError, match=r"16 stock slot\(s\) x 60,000,000 intervals of 1us could not be allocated"):
        bars(gen_day, "1us", ["S0"], start="09:30", end="09:31")


def test_a_level_at_price_0_is_a_quote_and_only_an_empty_side_is_nan():
    """Probe 26 F1: an ask of 290 shares at price 0 came out as NaN (an empty side), with no
    spread and two_sided_ns 0. The book is crossed (bid 0.5, ask 0.0) for the whole bar; the
    next bar's book has no bid at all (the bid deleted), which stays NaN."""
    t = T0
    day = b"".join([enc("R", stock_locate=1, timestamp=1, stock="TEST"),
                    enc("A", stock_locate=1, timestamp=t - 3, order_reference_number=1, buy_sell_indicator="S",
                        shares=300, stock="TEST", price=0),
                    enc("A", stock_locate=1, timestamp=t - 2, order_reference_number=3, buy_sell_indicator="B",
                        shares=100, stock="TEST", price=5000),
                    enc("E", stock_locate=1, timestamp=t - 1, order_reference_number=1, executed_shares=10,
                        match_number=1),
                    enc("D", stock_locate=1, timestamp=t + 1_000_000_000, order_reference_number=3)])
    df = bars(day, "1s", ["TEST"], start="09:30", end="09:30:02").to_pandas()
    first, second = df.iloc[0], df.iloc[1]
    assert (first.bid, first.bid_size, first.ask, first.ask_size) == (0.5, 100, 0.0, 290)
    assert first.spread == pytest.approx(-0.5) and first.two_sided_ns == 1_000_000_000
    assert math.isnan(second.bid) and second.bid_size == 0 and (second.ask, second.ask_size) == (0.0, 290)
    assert math.isnan(second.spread) and second.two_sided_ns == 0


def test_a_locate_number_is_the_stock_at_that_locate_as_in_book_and_trades(gen_day):
    """bars named a day's stocks by number when no R named them, then refused `-s 1`, and
    refused `-s 5` even for a listed locate (probe 28): a name of digits is that locate."""
    books = itchflow.Books().replay(gen_day)
    loc = next(l for l in range(1, 200) if books.symbol(l) != str(l))
    by_number = bars(gen_day, "30min", str(loc)).to_pandas()
    by_name = bars(gen_day, "30min", books.symbol(loc)).to_pandas()
    assert len(by_number) > 0 and set(by_number["stock_locate"]) == {loc}
    assert by_number.equals(by_name)
    with pytest.raises(KeyError, match="bars: stock locate 65000: no stock directory"):
        bars(gen_day, "30min", "65000")


def test_a_symbol_padded_with_nuls_is_named_as_read_and_the_trades_name_it():
    """bars kept an R's NUL padding in the symbol ("NUL\\x00\\x00...") where read, trades and bbo
    drop it, so a join on symbol missed that stock (probe 38)."""
    from itchflow.book.books import Books

    t = 34_200_000_000_000
    day = b"".join([enc("R", stock_locate=1, timestamp=1, stock=b"NUL\0\0\0\0\0"),
                    enc("R", stock_locate=2, timestamp=1, stock=b"SP A \0\0\0"),
                    enc("P", stock_locate=1, timestamp=t + 1, order_reference_number=0, buy_sell_indicator="B",
                        shares=10, stock=b"NUL\0\0\0\0\0", price=10_000, match_number=1)])
    read_names = [s.decode("latin-1").rstrip() for s in itchflow.read(day)["R"]["stock"]]
    assert read_names == ["NUL", "SP A"]
    df = bars(day, "1min", None, start="09:30", end="09:31").to_pandas()
    assert df["symbol"].tolist() == read_names[:1]   # (every stock with an event: SP A has none)
    books = Books()
    books.record(None, bbo=False)
    books.apply(day)
    _, trades, _ = books.take_events()
    assert trades.to_pandas()["symbol"].tolist() == ["NUL"] and books.symbol(2) == "SP A"


def test_trades_stamped_past_the_day_are_said_to_be_in_no_bar(tmp_path):
    """The timestamp field runs to 78 h; a trade stamped after 24:00 was in no bar, whatever the
    window (no --end past 24:00 is taken), and nothing said so (probe 38)."""
    from click.testing import CliRunner

    from itchflow.cli import main

    day_ns = 86_400_000_000_000
    day = b"".join([enc("R", stock_locate=1, timestamp=1, stock="TEST")] + [
        enc("P", stock_locate=1, timestamp=t, order_reference_number=0, buy_sell_indicator="B", shares=10,
            stock="TEST", price=10_000, match_number=k + 1)
        for k, t in enumerate((day_ns - 1, day_ns, 2 ** 48 - 1))] + [
        # in no bar anyway, so not said (probe 40): 0 shares, a P broken later, a cross of 0
        enc("P", stock_locate=1, timestamp=day_ns + 5, order_reference_number=0, buy_sell_indicator="B",
            shares=0, stock="TEST", price=10_000, match_number=20),
        enc("P", stock_locate=1, timestamp=day_ns + 6, order_reference_number=0, buy_sell_indicator="B",
            shares=7, stock="TEST", price=10_000, match_number=21),
        enc("B", stock_locate=1, timestamp=day_ns + 7, match_number=21),
        enc("Q", stock_locate=1, timestamp=day_ns + 8, shares=0, stock="TEST", cross_price=0, match_number=22,
            cross_type="C"),
        enc("Q", stock_locate=1, timestamp=day_ns + 9, shares=300, stock="TEST", cross_price=10_000,
            match_number=23, cross_type="C")])
    late: dict = {}
    df = bars(day, "1h", ["TEST"], start="00:00", end="24:00", past_the_day=late).to_pandas()
    assert df["volume"].sum() == 10 and late == {"trades": 3, "shares": 320}
    path = tmp_path / "late.itch"
    path.write_bytes(day)
    r = CliRunner().invoke(main, ["bars", str(path), "-o", str(tmp_path / "b.parquet"), "-q", "--start", "00:00",
                                  "--end", "24:00", "-e", "1h"])
    assert r.exit_code == 0 and "3 trades (320 shares) stamped at or after 24:00 (past the day) are in no bar" \
        in r.output, r.output


def test_a_name_padded_with_nuls_is_listed_and_found_by_that_name():
    """Once the books dropped trailing NULs from a name, as read() does, the name listed must
    be the name found: an R of b"NUL\\0\\0\\0\\0\\0" is the stock "NUL" for every query and for
    record(), as one padded with spaces is (an inner NUL is kept, as read keeps it)."""
    from itchflow.book.books import Books

    t = 34_200_000_000_000
    day = b"".join([enc("R", stock_locate=1, timestamp=1, stock=b"NUL\0\0\0\0\0"),
                    enc("R", stock_locate=2, timestamp=1, stock=b"A\0B     "),
                    enc("R", stock_locate=3, timestamp=1, stock=b"\0" * 8),
                    enc("A", stock_locate=1, timestamp=t, order_reference_number=1, buy_sell_indicator="B",
                        shares=10, stock=b"NUL\0\0\0\0\0", price=10_000)])
    books = Books()
    books.record(["NUL"], bbo=True, trades=False)
    books.apply(day)
    assert books.listed_symbols() == {"NUL", "A\0B"} and books.symbol(3) == "3"
    assert books.locate("NUL") == 1 and books.locate("A\0B") == 2
    assert books.bbo("NUL").tolist() == [("NUL", 1, 10_000, 10, 0, 0)]
    bbo, _, _ = books.take_events()
    assert bbo.to_pandas()["symbol"].tolist() == ["NUL"]


def test_a_day_whose_time_goes_back_is_said_and_the_quote_follows_the_stated_rule(tmp_path):
    """Probe 39: a message stamped 10:00:30 that moves no quote, then one stamped 10:00:20 that
    raises the bid. bars' quote at the end of [10:00:20, 10:00:30) has the raised bid (each
    stock's quote changes, in file order, up to the first stamped at or after the end), where
    snapshots and book take every message up to the first stamped later than T; neither said
    the day's time went back, which stats warns of. Now every command says it, with its rule."""
    from click.testing import CliRunner

    from itchflow.book.books import Books
    from itchflow.cli import main

    s = 1_000_000_000
    t = 36_000 * s   # 10:00
    day = b"".join([
        enc("R", stock_locate=1, timestamp=1, stock="TEST"),
        enc("A", stock_locate=1, timestamp=t, order_reference_number=1, buy_sell_indicator="B", shares=100,
            stock="TEST", price=100_000),
        enc("A", stock_locate=1, timestamp=t + 30 * s, order_reference_number=2, buy_sell_indicator="B", shares=5,
            stock="TEST", price=90_000),                                     # no quote change, stamped 10:00:30
        enc("A", stock_locate=1, timestamp=t + 20 * s, order_reference_number=3, buy_sell_indicator="B", shares=10,
            stock="TEST", price=100_100)])                                   # back to 10:00:20: the bid rises
    books = Books()
    books.apply(day)
    assert books.timestamps_backwards == 1
    df = bars(day, "10s", ["TEST"], start="10:00", end="10:01").to_pandas()
    assert df["bid"].tolist()[:4] == [10.0, 10.0, 10.01, 10.01]   # [10:00:20, 10:00:30) ends raised
    path = tmp_path / "back.itch"
    path.write_bytes(day)
    runner = CliRunner()
    r = runner.invoke(main, ["bars", str(path), "-e", "10s", "--start", "10:00", "--end", "10:01", "-o",
                             str(tmp_path / "b.parquet"), "-q"])
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and "the day's time goes back 1 time in the messages read: an interval's quote" in said
    r = runner.invoke(main, ["book", str(path), "-s", "TEST", "--at", "10:00:29.999999999", "--json"])
    import json
    got = json.loads(r.stdout)
    assert got["bids"][0][:2] == [100_000, 100] and "timestamps_backwards" not in got   # (stopped before it)
    r = runner.invoke(main, ["book", str(path), "-s", "TEST", "--at", "10:00:30", "--json"])
    assert json.loads(r.stdout)["timestamps_backwards"] == 1
    r = runner.invoke(main, ["book", str(path), "-s", "TEST", "--at", "10:00:30"])
    assert "a time T is every message up to the first one stamped later than T" in " ".join(r.stderr.split())


def test_times_as_numpy_integers_and_a_time_given_twice(tmp_path):
    """bars and lobster refused np.int64 start/end as text ("expected HH:MM..."), where their
    docs say ns after midnight and replay takes them; snapshots --at 9:30,09:30:00 wrote two
    identical sets of rows (probe 39)."""
    import numpy as np
    from click.testing import CliRunner

    from itchflow.cli import main
    from itchflow.sinks.lobster import lobster

    day = hand_trades()
    start, end = np.int64(T0), np.uint64(T0 + 3_000_000_000)
    a = bars(day, "1s", ["TEST"], start=start, end=end).to_pandas()
    b = bars(day, "1s", ["TEST"], start="09:30", end="09:30:03").to_pandas()
    assert a.equals(b) and len(a) == 3
    assert lobster(day, ["TEST"], 1, start=np.int64(T0), end=np.int64(T0 + 10 ** 9))["TEST"].rows == 5
    with pytest.raises(ValueError, match=r"or an int of ns after midnight, got 1.5"):
        bars(day, "1s", ["TEST"], start=1.5)
    path = tmp_path / "t.itch"
    path.write_bytes(day)
    r = CliRunner().invoke(main, ["snapshots", str(path), "-s", "TEST", "--at", "9:30,09:30:00,9:29", "-n", "0",
                                  "-o", str(tmp_path / "s.parquet")])
    assert r.exit_code == 0 and "(2 times x 1 symbols)" in r.output, r.output


def test_one_rule_for_a_name_padded_with_a_mix_of_spaces_and_nuls():
    """read() drops a name's trailing run of spaces and NULs; the books took NULs then any
    Unicode space (a Latin-1 no-break space too), the engine only a last run of NULs: four
    names for one stock, and a listed one not found (probe 40). One rule now, everywhere."""
    from itchflow.book.books import Books

    t = 34_200_000_000_000
    names = (b"AB\xa0     ", b"CD \0 \0\0\0")
    day = b"".join([enc("R", stock_locate=k + 1, timestamp=1, stock=n) for k, n in enumerate(names)] + [
        enc("P", stock_locate=k + 1, timestamp=t + k, order_reference_number=0, buy_sell_indicator="B", shares=10,
            stock=n, price=10_000, match_number=k + 1) for k, n in enumerate(names)])
    read_names = itchflow.read(day, "R").to_arrow("R")["stock"].to_pylist()
    assert read_names == ["AB\xa0", "CD"]
    books = Books()
    books.record(["CD", "AB\xa0"], bbo=False)
    books.apply(day)
    assert books.listed_symbols() == set(read_names)
    assert [books.locate(n) for n in read_names] == [1, 2]
    _, trades, _ = books.take_events()
    assert trades.to_pandas()["symbol"].tolist() == read_names
    assert bars(day, "1min", read_names, start="09:30", end="09:31").to_pandas()["symbol"].tolist() == read_names
