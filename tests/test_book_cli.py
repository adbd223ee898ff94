"""The book commands (book, bbo, trades, snapshots) against the slow reference book, on
random days whose bytes itchfeed wrote (tests/test_book_support.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from test_book_support import ReferenceBook, encode, random_day

from itchflow.cli import main

STOCKS = 3


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    msgs = random_day(42, 4000, stocks=STOCKS)
    path = tmp_path_factory.mktemp("bookcli") / "day.itch"
    path.write_bytes(encode(msgs))
    return path, msgs


def reference_at(msgs, t_ns: int | None) -> ReferenceBook:
    ref = ReferenceBook()
    for i, m in enumerate(msgs):
        if t_ns is not None and m["timestamp"] > t_ns:
            break
        ref.apply(m, i + 1)
    return ref


def hms(ns: int) -> str:
    s, frac = divmod(ns, 1_000_000_000)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:09d}"


@pytest.mark.parametrize("k", [50, 1999, -1])
def test_book_json_at_a_time_matches_the_reference(day, k):
    path, msgs = day
    t = msgs[k]["timestamp"]
    ref = reference_at(msgs, t)
    for loc in range(1, STOCKS + 1):
        res = CliRunner().invoke(main, ["book", str(path), "--symbol", f"S{loc - 1}", "--at", hms(t),
                                        "--depth", "0", "--json"])
        assert res.exit_code == 0, res.output
        got = json.loads(res.output)
        assert got["symbol"] == f"S{loc - 1}" and got["timestamp_ns"] == t
        assert [tuple(x) for x in got["bids"]] == ref.depth(loc, "B")
        assert [tuple(x) for x in got["asks"]] == ref.depth(loc, "S")
    res = CliRunner().invoke(main, ["book", str(path), "--symbol", "S0", "--at", hms(t), "--depth", "2", "--json"])
    got = json.loads(res.output)
    assert [tuple(x) for x in got["bids"]] == ref.depth(1, "B")[:2]


def test_book_errors(day, tmp_path):
    path, _ = day
    res = CliRunner().invoke(main, ["book", str(path), "--symbol", "NOPE", "--json"])
    assert res.exit_code == 1 and "NOPE" in res.output
    res = CliRunner().invoke(main, ["book", str(path), "--symbol", "S0", "--at", "25:00:00"])
    assert res.exit_code != 0 and "not within the day" in res.output
    res = CliRunner().invoke(main, ["book", str(path), "--symbol", "S0", "--at", "10:61"])
    assert res.exit_code != 0 and "not a time of day" in res.output
    # HH:MM as the research commands take it: the same book as HH:MM:00
    short, full = (CliRunner().invoke(main, ["book", str(path), "--symbol", "S0", "--at", at, "--json"])
                   for at in ("10:00", "10:00:00"))
    assert short.exit_code == 0 and short.output == full.output
    res = CliRunner().invoke(main, ["book", str(tmp_path / "missing.itch"), "--symbol", "S0"])
    assert res.exit_code == 1 and "missing.itch" in res.output


def test_bbo_parquet_matches_the_reference(day, tmp_path):
    path, msgs = day
    ref = reference_at(msgs, None)
    out = tmp_path / "bbo.parquet"
    res = CliRunner().invoke(main, ["bbo", str(path), "--symbols", "S1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    t = pq.read_table(out).to_pylist()
    want = [e for e in ref.bbo_events if e[1] == 2]
    got = [(r["sequence"], r["stock_locate"], r["bid_price"], r["bid_shares"], r["ask_price"], r["ask_shares"])
           for r in t]
    assert got == want and len(got) > 10
    assert {r["symbol"] for r in t} == {"S1"}


def test_trades_parquet_matches_the_reference(day, tmp_path):
    path, msgs = day
    ref = reference_at(msgs, None)
    out = tmp_path / "trades.parquet"
    res = CliRunner().invoke(main, ["trades", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    t = pq.read_table(out).to_pylist()
    got = [(r["sequence"], r["stock_locate"], r["price"], r["shares"], r["match_number"], r["kind"],
            int(r["printable"])) for r in t]
    assert got == ref.trades and len(got) > 10
    for loc in range(1, STOCKS + 1):
        vol = sum(r["shares"] for r in t if r["stock_locate"] == loc and r["printable"] and not r["broken"]
                  and r["kind"] != "B")
        assert vol == ref.volume[loc]


def test_snapshots_at_times_match_the_reference(day, tmp_path):
    path, msgs = day
    times = [msgs[k]["timestamp"] for k in (100, 2500, -1)]
    out = tmp_path / "snap.parquet"
    res = CliRunner().invoke(main, ["snapshots", str(path), "--symbols", "S0,S2", "--depth", "3",
                                    "--at", ",".join(hms(t) for t in times), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = pq.read_table(out).to_pylist()
    for t in times:
        ref = reference_at(msgs, t)
        for loc in (1, 3):
            for side in "BS":
                got = [(r["price"], r["shares"], r["orders"]) for r in rows
                       if r["timestamp"] == t and r["stock_locate"] == loc and r["side"] == side]
                assert got == ref.depth(loc, side)[:3], (t, loc, side)
    res = CliRunner().invoke(main, ["snapshots", str(path), "--symbols", "S0", "--out", str(out)])
    assert res.exit_code != 0 and "exactly one of --at and --every" in res.output


def test_snapshot_intervals_that_would_never_end_are_refused(day, tmp_path):
    # --every 1e-9 over this day would be a list of ~1e13 times: refused at once, naming the count
    from itchflow.book.events import MAX_SNAPSHOT_TIMES, every_times

    path, msgs = day
    out = tmp_path / "snap.parquet"
    span = int(msgs[-1]["timestamp"]) - int(msgs[0]["timestamp"])
    for every, says in (("0.000000001", "more than 1,000,000"), ("0", "must be above 0"), ("-5", "must be above 0"),
                        ("1e-12", "at least 1 ns"), ("nan", "not a finite number"), ("inf", "not a finite number")):
        res = CliRunner().invoke(main, ["snapshots", str(path), "--symbols", "S0", "--every", every,
                                        "--out", str(out)])
        assert res.exit_code != 0 and says in res.output, (every, res.output)
        assert "Traceback" not in res.output and not out.exists()
    assert span // 10 ** 9 < MAX_SNAPSHOT_TIMES  # one a second fits, and is the grid's count
    assert len(every_times(1, 0, 10 ** 9 * 1000)) == 1000
    with pytest.raises(ValueError, match="no snapshot time falls within"):   # an empty grid: an empty output
        every_times(1, 0, 999_999_999)
    assert every_times(0.5, 10 ** 9 + 1, 3 * 10 ** 9) == [15 * 10 ** 8, 2 * 10 ** 9, 25 * 10 ** 8, 3 * 10 ** 9]
    # a last stamp past 24:00 (78 hours: probe 45's grid of 270,000 times) ends the grid at 24:00
    hour = 3600 * 10 ** 9
    assert every_times(3600, 22 * hour, (1 << 48) - 1) == [23 * hour, 24 * hour]
    with pytest.raises(ValueError, match="1,728,000 times"):
        every_times(0.05, 0, 86_400 * 10 ** 9)  # a day of twentieths of a second


def test_snapshots_every_of_a_day_of_no_messages_is_an_empty_table_and_a_warning(day, tmp_path):
    """Probe 52: a 0-byte day failed, saying its messages spanned "0 to 0 ns", and failed its
    day in a batch run where every other job wrote a 0-row part. It is an empty table with
    the schema of a busy day's, exit 0, and a warning naming the file."""
    import pyarrow.parquet as pq

    from itchflow.book.events import every_times

    assert every_times(60, None, None) == []
    path, _ = day
    empty = tmp_path / "empty.itch"
    empty.write_bytes(b"")
    busy_out, empty_out = tmp_path / "busy.parquet", tmp_path / "empty.parquet"
    res = CliRunner().invoke(main, ["snapshots", str(path), "-s", "S0", "--every", "0.001", "-o", str(busy_out)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["snapshots", str(empty), "-s", "S0", "--every", "1", "-o", str(empty_out)])
    assert res.exit_code == 0, res.output
    assert f"{empty}: no messages" in res.output and "wrote 0 rows" in res.output
    assert pq.read_table(empty_out).num_rows == 0 and pq.read_table(busy_out).num_rows > 0
    assert pq.read_schema(empty_out) == pq.read_schema(busy_out)


def test_depth_plot_is_a_png_or_a_clear_error(day, tmp_path):
    path, _ = day
    out = tmp_path / "depth.png"
    res = CliRunner().invoke(main, ["book", str(path), "--symbol", "S0", "--depth", "0", "--plot", str(out)])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert res.exit_code == 1 and "matplotlib" in res.output
        return
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_plots_of_nothing_say_so_without_a_warning(tmp_path):
    """An empty book's depth chart (every order gone at --at) and a latency chart without
    samples: matplotlib warned "No artists with labels found to put in legend" on stderr; the
    chart now says what is missing instead of an empty legend."""
    pytest.importorskip("matplotlib")
    import warnings

    from itchflow.book.records import LEVEL_DTYPE
    from itchflow.sinks.plots import depth_plot, latency_plot

    empty = np.zeros(0, LEVEL_DTYPE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        depth_plot("S0", empty, empty, "after 16:00:00", str(tmp_path / "depth.png"))
        latency_plot({"ring": np.zeros(0, np.int64)}, str(tmp_path / "latency.png"), "nothing")
    for name in ("depth.png", "latency.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("slice_bytes", [0, -1, 1])
def test_snapshots_with_any_slice_size_give_the_same_rows(day, slice_bytes):
    """slice_bytes=0 fed the books slices that took no message, for ever (100% CPU); 0 or
    less now means whole chunks, as replay takes it, and 1 byte a slice still ends."""
    from itchflow import Books
    from itchflow.book.events import snapshots

    path, msgs = day
    times = [msgs[k]["timestamp"] for k in (100, 2500, -1)]
    expected = snapshots(Books(), str(path), times, [1, 3], 3)
    got = snapshots(Books(), str(path), times, [1, 3], 3, slice_bytes=slice_bytes)
    assert len(expected) > 0 and got.tolist() == expected.tolist()


@pytest.mark.parametrize("command", ["bbo", "trades"])
def test_bbo_and_trades_name_a_symbol_the_day_does_not_have(day, tmp_path, command):
    """`trades DAY --symbols ZZZ` wrote an empty file and said "wrote 0 trades" (exit 0), and
    `bbo --symbols S0,ZZZ` left ZZZ out silently, where bars, lobster and auctions refuse it."""
    path, _ = day
    out = tmp_path / f"{command}.parquet"
    for symbols in ("ZZZ", "S0,ZZZ"):
        res = CliRunner().invoke(main, [command, str(path), "--symbols", symbols, "--out", str(out), "-q"])
        assert res.exit_code != 0 and "no stock directory (R) message for ZZZ" in res.output, res.output
        assert not out.exists() and not list(tmp_path.glob("*.part"))
    res = CliRunner().invoke(main, [command, str(path), "--symbols", "S0", "--out", str(out), "-q"])
    assert res.exit_code == 0 and out.exists(), res.output


def test_a_snapshot_before_the_directory_lists_the_symbol_is_empty_not_an_error():
    """`snapshots --at 00:00:01` (before the day's R messages) failed the whole command with
    "unknown symbol", though the day lists it: at that time its book is empty (no rows). A
    symbol the day never lists is still the error, even when every time comes first."""
    from itchflow import Books, encode_message as enc
    from itchflow.book.events import snapshots

    t = 34_200_000_000_000
    day = b"".join([
        enc("S", timestamp=1_000, event_code="O"),
        enc("R", stock_locate=1, timestamp=5_000, stock="AAA"),
        enc("A", stock_locate=1, timestamp=t, order_reference_number=1, buy_sell_indicator="B", shares=100,
            stock="AAA", price=10_000),
    ])
    rows = snapshots(Books(), day, [2_000, t - 1, t], ["AAA"], 5)
    assert rows["timestamp"].tolist() == [t] and rows["price"].tolist() == [10_000]
    with pytest.raises(KeyError, match="ZZZ"):
        snapshots(Books(), day, [2_000], ["AAA", "ZZZ"], 5)
    assert len(snapshots(Books(), day, [2_000], ["AAA"], 5)) == 0


def test_trades_file_flags_the_trade_the_books_broke(tmp_path):
    """The trades file flagged every trade of a B's match number: a cross that reused the
    number of an execution the B broke was marked broken too, though the books kept it in
    volume. Now the flag is the books' own answer."""
    from itchflow import Books, encode_message as enc

    t = 34_200_000_000_000
    day = b"".join([
        enc("R", stock_locate=1, timestamp=1, stock="AAA"),
        enc("A", stock_locate=1, timestamp=t, order_reference_number=5, buy_sell_indicator="B", shares=100,
            stock="AAA", price=100_000),
        enc("E", stock_locate=1, timestamp=t + 1, order_reference_number=5, executed_shares=10, match_number=88),
        enc("B", stock_locate=1, timestamp=t + 2, match_number=88),            # breaks the E
        enc("Q", stock_locate=1, timestamp=t + 3, shares=600, stock="AAA", cross_price=100_000,
            match_number=88, cross_type="C"),                                   # reuses the number after it
    ])
    path = tmp_path / "day.itch"
    path.write_bytes(day)
    out = tmp_path / "trades.parquet"
    res = CliRunner().invoke(main, ["trades", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = pq.read_table(out).to_pylist()
    assert [(r["kind"], r["broken"]) for r in rows] == [("E", True), ("B", True), ("Q", False)]
    kept = sum(r["shares"] for r in rows if r["kind"] != "B" and not r["broken"])
    assert kept == Books().replay(day).volume("AAA") == 600


def test_snapshots_stream_to_parquet_a_row_group_at_a_time(day, tmp_path, monkeypatch):
    """`snapshots` held every row of every time until the end (all levels of a deep book every
    60 s was 577 MB, every second a MemoryError traceback); it now writes row groups as the
    times go, so memory holds one group. Same rows as the API's array, in the same order."""
    import itchflow.sinks.tables as tables
    from itchflow import Books
    from itchflow.book.events import snapshots

    path, msgs = day
    times = sorted({int(m["timestamp"]) for m in msgs[::50]})
    monkeypatch.setattr(tables, "ROW_GROUP_ROWS", 64)
    out = tmp_path / "snap.parquet"
    res = CliRunner().invoke(main, ["snapshots", str(path), "--symbols", "S0,S2", "--depth", "0",
                                    "--at", ",".join(hms(t) for t in times), "--out", str(out)])
    assert res.exit_code == 0, res.output
    expected = snapshots(Books(), str(path), times, ["S0", "S2"], -1)
    f = pq.ParquetFile(out)
    assert f.metadata.num_row_groups > 10
    assert all(f.metadata.row_group(i).num_rows >= 64 for i in range(f.metadata.num_row_groups - 1))
    got = f.read()
    assert got.num_rows == len(expected) and f"wrote {len(expected):,} rows" in res.output
    for name in ("timestamp", "stock_locate", "level", "price", "shares", "orders"):
        assert got[name].to_numpy().tolist() == expected[name].tolist(), name
    # a symbol the day never lists: the error, and no file (the rows before it are not a result)
    res = CliRunner().invoke(main, ["snapshots", str(path), "--symbols", "S0,ZZZ", "--at", hms(times[0]),
                                    "--out", str(tmp_path / "none.parquet")])
    assert res.exit_code != 0 and "ZZZ" in res.output
    assert not list(tmp_path.glob("none.parquet*"))


def test_snapshot_rows_past_the_memory_available_are_refused_with_their_count(day, monkeypatch):
    """The API's array holds every row: past half of MemAvailable (the concatenation copies
    them once more) it is a ValueError naming the rows and the way out, not a MemoryError."""
    import itchflow.hw.memory as memory
    from itchflow import Books
    from itchflow.book.events import iter_snapshots, snapshots

    path, msgs = day
    times = [int(m["timestamp"]) for m in msgs[::100]]
    each = sum(len(r) for r in iter_snapshots(Books(), str(path), times[:20], ["S0"], -1)) // 20
    monkeypatch.setattr(memory, "available_bytes", lambda meminfo=memory.MEMINFO: 10 * each * 29)
    with pytest.raises(ValueError, match=r"snapshots: [\d,]+ rows .* more than memory can hold .* stream them"):
        snapshots(Books(), str(path), times, ["S0"], -1)
    monkeypatch.setattr(memory, "available_bytes", lambda meminfo=memory.MEMINFO: None)   # not Linux: no check
    assert len(snapshots(Books(), str(path), times, ["S0"], -1)) > 0


def test_a_side_byte_that_is_not_text_is_shown_as_its_byte_not_a_failed_trades_file(tmp_path):
    """One P whose side byte was 0xFF failed `itchflow trades` whole ("'ascii' codec can't
    decode byte 0xff", naming no file) and Events.to_pandas(); a NUL side read as "". Such
    bytes now read "\\xff" and "\\x00", as auctions shows its codes."""
    from itchflow import Books, encode_message as enc

    day = b"".join([enc("R", stock_locate=1, timestamp=5, stock="AAA")] + [
        enc("P", stock_locate=1, timestamp=10 + k, order_reference_number=0, buy_sell_indicator=side,
            shares=100, stock="AAA", price=10_000, match_number=k + 1)
        for k, side in enumerate((b"\xff", b"\x00", b"B", b" "))])
    path = tmp_path / "pside.itch"
    path.write_bytes(day)
    out = tmp_path / "t.parquet"
    res = CliRunner().invoke(main, ["trades", str(path), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert pq.read_table(out)["side"].to_pylist() == ["\\xff", "\\x00", "B", " "]
    b = Books()
    b.record(None, trades=True, bbo=False)
    b.replay(day)
    _, trades, _ = b.take_events()
    assert trades.to_pandas()["side"].tolist() == ["\\xff", "\\x00", "B", " "]


def test_snapshots_name_each_time_by_the_name_its_stock_had_then(tmp_path):
    """Probe 42, on a day whose R renames locate 1 from OLD to NEW between two times: `-s OLD`
    at both times was "unknown symbol 'OLD'" (it is not listed at the end), and `-s 1` named the
    rows of the first time NEW, a name the stock only got later, where `book` said OLD."""
    from itchflow.decode.encoder import encode_message

    msgs = [encode_message("R", stock_locate=1, timestamp=1_000, stock="OLD"),
            encode_message("A", stock_locate=1, timestamp=2_000, order_reference_number=1, buy_sell_indicator="B",
                           shares=100, price=10_0000, stock="OLD"),
            encode_message("R", stock_locate=1, timestamp=3_000, stock="NEW"),
            encode_message("A", stock_locate=1, timestamp=4_000, order_reference_number=2, buy_sell_indicator="S",
                           shares=50, price=11_0000, stock="NEW")]
    path = tmp_path / "renamed.itch"
    path.write_bytes(b"".join(msgs))
    out = tmp_path / "s.parquet"
    at = "00:00:00.0000025,00:00:00.000005"
    res = CliRunner().invoke(main, ["snapshots", str(path), "-s", "OLD", "--at", at, "-o", str(out)])
    assert res.exit_code == 0, res.output
    t = pq.read_table(out).to_pandas()
    assert t[["timestamp", "symbol", "side", "price"]].values.tolist() == [[2_500, "OLD", "B", 10_0000]]
    assert "a name gives a stock's rows while it had that name" in res.output
    res = CliRunner().invoke(main, ["snapshots", str(path), "-s", "1", "--at", at, "-o", str(out)])
    assert res.exit_code == 0, res.output
    t = pq.read_table(out).to_pandas()
    assert t[["timestamp", "symbol", "side"]].values.tolist() == [[2_500, "OLD", "B"], [5_000, "NEW", "B"],
                                                                 [5_000, "NEW", "S"]]
