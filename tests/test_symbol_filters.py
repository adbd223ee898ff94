"""A symbol filter that matches nothing is a mistake to report, not an empty output with exit 0.
Each case was found by probing the commands: `-s ,` wrote 0 rows; decode took `abev`,
`ZZZZ`, `1` and `ABEV,AMZN` and wrote 0 rows; snapshots wrote ABEV twice for `-s ABEV,ABEV`;
`book --at` before the stock's directory message called a listed symbol unknown; `book -s
101` printed the empty book of a locate no directory message gives a stock."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import itchflow
from itchflow.cli import main


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from itchflow.sim.generator import write_day

    path = tmp_path_factory.mktemp("filters") / "day.itch"
    write_day(path, 20_000, seed=5, stocks=20)
    return path


@pytest.fixture(scope="module")
def symbols(day):
    r = itchflow.read(day, "R")["R"]
    return {int(loc): s.decode().strip() for loc, s in zip(r["stock_locate"], r["stock"])}


def _cli(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", [["bbo"], ["trades"], ["bars"], ["auctions"], ["snapshots", "--at", "10:00"]])
@pytest.mark.parametrize("given", [",", " , ", ""])
def test_symbols_given_but_naming_none_are_a_usage_error(day, tmp_path, command, given):
    out = tmp_path / ("out" if command[0] == "auctions" else "out.parquet")
    r = _cli([command[0], day, "-s", given, "-o", out, *command[1:]])
    assert r.exit_code == 2 and "--symbols" in r.output and "give at least one symbol" in r.output, r.output
    assert not out.exists()


def test_the_api_refuses_an_empty_symbol_list_too(day, tmp_path):
    from itchflow.sinks.events import events_to_parquet

    with pytest.raises(ValueError, match="bars: give at least one symbol"):
        itchflow.bars(day, "1h", ",")
    with pytest.raises(ValueError, match="auctions: give at least one symbol"):
        itchflow.auctions(day, [])
    with pytest.raises(ValueError, match="trades: give at least one symbol"):
        events_to_parquet(day, tmp_path / "t.parquet", "trades", [" "])
    with pytest.raises(ValueError, match="lobster: give at least one symbol"):
        itchflow.lobster(day, None, 2)


def test_snapshots_write_each_symbol_once(day, symbols, tmp_path):
    s = symbols[1]
    r = _cli(["snapshots", day, "-s", f"{s},{s.lower()},{s}", "--at", "10:00,11:00", "-n", "2", "-o", tmp_path / "s.parquet"])
    assert r.exit_code == 0, r.output
    t = pq.read_table(tmp_path / "s.parquet").to_pydict()
    once = _cli(["snapshots", day, "-s", s, "--at", "10:00,11:00", "-n", "2", "-o", tmp_path / "o.parquet"])
    assert once.exit_code == 0 and t == pq.read_table(tmp_path / "o.parquet").to_pydict()
    assert set(t["symbol"]) == {s}


def test_decode_takes_one_symbol_in_any_case_and_refuses_one_the_day_does_not_name(day, symbols, tmp_path):
    s = symbols[1]
    upper = _cli(["decode", day, "-t", "AFE", "-s", s, "-o", tmp_path / "u.parquet"])
    lower = _cli(["decode", day, "-t", "AFE", "-s", s.lower(), "-o", tmp_path / "l.parquet"])
    assert upper.exit_code == lower.exit_code == 0, lower.output
    rows = pq.read_table(tmp_path / "u.parquet")
    assert rows.num_rows > 0 and rows.equals(pq.read_table(tmp_path / "l.parquet"))
    unused = max(symbols) + 1   # digits are a locate, as in every books command: one the directory does not give
    for bad, text in (("ZZZZ", "no stock directory (R) message or stock field names ZZZZ"),
                      (str(unused), f"stock locate {unused}: no stock directory (R) message gives it a stock"),
                      (f"{s},{symbols[2]}", "decode filters one symbol"), ("TOOLONGSYM", "not an ITCH symbol")):
        out = tmp_path / "bad.parquet"
        r = _cli(["decode", day, "-s", bad, "-o", out])
        assert r.exit_code == 1 and text in r.output, r.output
        assert not out.exists() and not (tmp_path / "bad.parquet.part").exists()


def test_book_before_the_directory_message_and_a_locate_without_one(day, symbols):
    s = symbols[1]
    r = _cli(["book", day, "-s", s, "--at", "00:00:01", "-q"])
    assert r.exit_code == 1 and f"no stock directory (R) message for '{s}' before --at 00:00:01" in r.output, r.output
    unused = max(symbols) + 1
    r = _cli(["book", day, "-s", unused, "-q"])
    assert r.exit_code == 1 and f"stock locate {unused}: no stock directory (R) message" in r.output, r.output
    r = _cli(["book", day, "-s", 1, "-q", "--json"])
    assert r.exit_code == 0 and f'"symbol": "{s}"' in r.output


@pytest.mark.parametrize("chunk", ["1", "2", "3", "5", "2097152"])
def test_decode_symbol_follows_each_rename_however_the_day_is_cut(tmp_path, chunk):
    """`decode -s NEW` kept a whole piece from its R on, messages before the R included, and
    a locate once matched stayed selected after an R renamed it: the rows depended on --chunk.
    A message is the symbol's when its locate's last R before it names the symbol (or its own
    stock field does). Locate 2: R OLD (2), A (3), E (4), R NEW (5), E (6), R OTHER (7), E (8)."""
    import csv

    from itchflow import encode_message as enc

    def r(seq_ts, name):
        return enc("R", stock_locate=2, timestamp=seq_ts, stock=name)

    def e(ts, match):
        return enc("E", stock_locate=2, timestamp=ts, order_reference_number=1, executed_shares=10,
                   match_number=match)

    day = b"".join([enc("R", stock_locate=1, timestamp=1, stock="AAA"), r(2, "OLD"),
                    enc("A", stock_locate=2, timestamp=3, order_reference_number=1, buy_sell_indicator="B",
                        shares=100, stock="OLD", price=5000),
                    e(4, 1), r(5, "NEW"), e(6, 2), r(7, "OTHER"), e(8, 3)])
    path = tmp_path / "renames.itch"
    path.write_bytes(day)
    want = {"OLD": [("2", "R"), ("3", "A"), ("4", "E")], "NEW": [("5", "R"), ("6", "E")],
            "OTHER": [("7", "R"), ("8", "E")]}
    for symbol, rows in want.items():
        out = tmp_path / f"{symbol}.csv"
        res = CliRunner().invoke(main, ["decode", str(path), "-s", symbol, "-t", "all", "--chunk", chunk,
                                        "-o", str(out), "-q"])
        assert res.exit_code == 0, res.output
        with open(out) as f:
            assert [(x["sequence"], x["message_type"]) for x in csv.DictReader(f)] == rows, (symbol, chunk)


def test_lobster_asked_for_a_name_an_r_took_away_says_so(tmp_path):
    """Probe 54: `lobster -s OLD` after an R renamed OLD's locate said "no stock directory (R)
    message for OLD", which the day has. It says the name was renamed and what to ask for
    (following an old name is a gap the README names); the new name gives its rows."""
    from itchflow import encode_message as enc

    day = b"".join([enc("R", stock_locate=2, timestamp=34_000 * 10**9, stock="OLD"),
                    enc("A", stock_locate=2, timestamp=34_300 * 10**9, order_reference_number=1,
                        buy_sell_indicator="B", shares=100, stock="OLD", price=5000),
                    enc("R", stock_locate=2, timestamp=35_000 * 10**9, stock="NEW"),
                    enc("A", stock_locate=2, timestamp=35_100 * 10**9, order_reference_number=2,
                        buy_sell_indicator="S", shares=100, stock="NEW", price=6000)])
    path = tmp_path / "renames.itch"
    path.write_bytes(day)
    res = CliRunner().invoke(main, ["lobster", str(path), "-s", "OLD", "--date", "2019-01-30", "-o", str(tmp_path / "a")])
    assert res.exit_code == 1 and "OLD was renamed by a later R (locate 2 is NEW" in res.output, res.output
    assert "no stock directory (R) message" not in res.output
    res = CliRunner().invoke(main, ["lobster", str(path), "-s", "NEW", "--date", "2019-01-30", "-o", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
