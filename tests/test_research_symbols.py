"""Research outputs name stocks by symbol. A symbol the stock directory gives two locates is
no one stock: `Books` refuses it by name, and so must lobster, bars and auctions (they answered
for one of the two, silently, and bars labelled the other stock by its locate number)."""

from __future__ import annotations

import pytest

import itchflow
from itchflow.decode.encoder import encode_message as enc

T = 34_200_000_000_000 + 60_000_000_000   # 09:31


def _day() -> bytes:
    msgs = [enc("R", stock_locate=1, stock="DUP", timestamp=1), enc("R", stock_locate=2, stock="DUP", timestamp=2),
            enc("R", stock_locate=3, stock="ONE", timestamp=3)]
    for loc in (1, 2, 3):
        msgs += [enc("A", stock_locate=loc, timestamp=T + loc, order_reference_number=10 * loc,
                     buy_sell_indicator="B", shares=100 * loc, stock="DUP" if loc < 3 else "ONE", price=10_000 * loc),
                 enc("E", stock_locate=loc, timestamp=T + 10 + loc, order_reference_number=10 * loc,
                     executed_shares=10, match_number=loc),
                 enc("Q", stock_locate=loc, timestamp=T + 20 + loc, shares=5 * loc, stock="DUP" if loc < 3 else "ONE",
                     cross_price=10_000 * loc, match_number=100 + loc, cross_type="O")]
    return b"".join(msgs)


@pytest.mark.parametrize("output", ["lobster", "bars", "auctions"])
def test_a_symbol_under_two_locates_is_refused_by_every_output(output, tmp_path):
    day = _day()
    with pytest.raises(KeyError, match=rf"{output}: symbol 'DUP' is in the stock directory under locates 1, 2"):
        if output == "lobster":
            itchflow.lobster(day, ["DUP"], 1, start="09:30", end="09:32", date="2019-01-30")
        elif output == "bars":
            itchflow.bars(day, "1min", ["DUP"], start="09:30", end="09:32")
        else:
            itchflow.auctions(day, ["DUP"])
    books = itchflow.Books()
    books.apply(day)
    with pytest.raises(KeyError, match="under 2 locates"):   # as the books themselves refuse it
        books.bbo("DUP")


def test_each_stock_is_labelled_by_its_own_directory_entry():
    """bars of every stock labelled locate 1 "1": the symbol -> locate map kept one of the two."""
    day = _day()
    df = itchflow.bars(day, "1min", None, start="09:30", end="09:32").to_pandas()
    one_bar = df[df["start_ns"] == T - T % 60_000_000_000]
    assert sorted(zip(one_bar["stock_locate"], one_bar["symbol"], one_bar["volume"])) == [
        (1, "DUP", 10), (2, "DUP", 10), (3, "ONE", 10)]
    got = itchflow.bars(day, "1min", ["ONE"], start="09:30", end="09:32").to_pandas()
    assert set(got["stock_locate"]) == {3} and got["cross_volume"].sum() == 15


@pytest.mark.parametrize("which", ["bbo", "trades"])
@pytest.mark.parametrize("missing_ok", [False, True])
def test_bbo_and_trades_refuse_a_symbol_under_two_locates(which, missing_ok, tmp_path):
    """They wrote the events of one of the two (the symbol -> locate map kept the later),
    silently; an archive's job (missing_ok) excuses an absent symbol, not an ambiguous one."""
    from itchflow.sinks.events import events_to_parquet

    out = tmp_path / f"{which}.parquet"
    with pytest.raises(KeyError, match=rf"{which}: symbol 'DUP' is in the stock directory under locates 1, 2"):
        events_to_parquet(_day(), out, which, ["ONE", "DUP"], missing_ok=missing_ok)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_bbo_and_trades_write_an_unambiguous_symbol_and_excuse_an_absent_one_only_when_asked(tmp_path):
    import pyarrow.parquet as pq

    from itchflow.sinks.events import events_to_parquet

    rows, _ = events_to_parquet(_day(), tmp_path / "t.parquet", "trades", ["ONE", "GONE"], missing_ok=True)
    t = pq.read_table(tmp_path / "t.parquet").to_pydict()
    assert rows == 2 and t["stock_locate"] == [3, 3] and t["shares"] == [10, 15]
    with pytest.raises(KeyError, match="trades: no stock directory \\(R\\) message for GONE"):
        events_to_parquet(_day(), tmp_path / "u.parquet", "trades", ["ONE", "GONE"])


def test_a_latin1_symbol_typed_in_any_case_of_its_ascii_letters_is_found(tmp_path):
    """Symbols given on the command line were upper-cased whole: 'é' became 'É' (byte 0xC9, not
    the feed's 0xE9), and a stock the books listed as 'ABéV' was refused by name (probe 35)."""
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from itchflow.cli import main

    day = (enc("R", stock_locate=1, timestamp=1, stock=b"AB\xe9V    ")
           + enc("A", stock_locate=1, timestamp=2, order_reference_number=1, buy_sell_indicator=b"B", shares=100,
                 stock=b"AB\xe9V    ", price=10_000))
    path = tmp_path / "day.itch"
    path.write_bytes(day)
    for typed in ("ABéV", "abéV"):
        out = tmp_path / f"{typed}.parquet"
        r = CliRunner().invoke(main, ["bbo", str(path), "-s", typed, "-q", "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert pq.read_table(out)["symbol"].to_pylist() == ["ABéV"]
    assert itchflow.Books().replay(str(path)).depth("ABéV")[0]["shares"].tolist() == [100]
