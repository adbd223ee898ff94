"""Auctions against a slow computation from decoded messages (a generated day), a
hand-worked pairing of NOII messages with the crosses they lead into, and the CLI
commands of the research outputs with their plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

import itchflow
from itchflow import encode_message as enc
from itchflow.sim.generator import generate_day, write_day
from itchflow.sinks.auctions import auctions


@pytest.fixture(scope="module")
def gen_day():
    return generate_day(20_000, seed=5, stocks=20)


def _dollars(raw: int) -> float:
    return raw / 1e4 if raw else math.nan


def _same(a, b) -> bool:
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    return a == b


def test_generated_day_matches_a_slow_computation(gen_day):
    dec = itchflow.read(gen_day)
    names = {int(r["stock_locate"]): r["stock"].decode().strip() for r in dec["R"]}
    broken = {int(m) for m in dec["B"]["match_number"]}
    qs = sorted(dec["Q"].tolist(), key=lambda r: (r[1], r[0]))   # by locate, then sequence
    exp_cross = [(names[r[1]], r[1], r[3], r[8].decode(), _dollars(r[6]), r[4], r[7], r[7] in broken) for r in qs]
    res = auctions(gen_day)
    got_cross = [tuple(v for v in row.values()) for row in res.crosses.to_pylist()]
    assert len(got_cross) == len(exp_cross) > 20
    for g, e in zip(got_cross, exp_cross):
        assert all(_same(a, b) for a, b in zip(g, e)), (g, e)

    exp_imb = []
    for r in sorted(dec["I"].tolist(), key=lambda r: (r[1], r[0])):
        seq, loc, _, ts, paired, imb, direction, _, far, near, ref, ctype, var = r
        nxt = [k for k, q in enumerate(qs) if q[1] == loc and q[8] == ctype and q[0] > seq]
        row = nxt[0] if nxt else None
        sign = {b"B": 1, b"S": -1}.get(direction, 0)
        exp_imb.append((names[loc], loc, ts, ctype.decode(), paired, imb, direction.decode(), sign * imb,
                        _dollars(far), _dollars(near), _dollars(ref), var.decode(),
                        qs[row][3] if row is not None else None, row))
    got_imb = [tuple(row.values()) for row in res.imbalances.to_pylist()]
    assert len(got_imb) == len(exp_imb) > 100
    for g, e in zip(got_imb, exp_imb):
        assert all(_same(a, b) for a, b in zip(g, e)), (g, e)
    # every NOII of a generated day runs into a cross of its kind
    assert res.imbalances["cross_row"].null_count == 0


def test_hand_worked_pairing_and_breaks():
    t = 57_000_000_000_000
    m = [enc("R", stock_locate=1, timestamp=1, stock="AAA"),
         enc("R", stock_locate=2, timestamp=1, stock="BBB"),
         enc("I", stock_locate=1, timestamp=t, paired_shares=100, imbalance_shares=40, imbalance_direction="S",
             stock="AAA", far_price=0, near_price=101_000, current_reference_price=100_000, cross_type="C",
             price_variation_indicator="1"),
         enc("I", stock_locate=2, timestamp=t + 1, paired_shares=5, imbalance_shares=0, imbalance_direction="N",
             stock="BBB", far_price=0, near_price=0, current_reference_price=50_000, cross_type="H",
             price_variation_indicator=" "),
         enc("Q", stock_locate=2, timestamp=t + 2, shares=5, stock="BBB", cross_price=50_000, match_number=7,
             cross_type="H"),
         enc("I", stock_locate=1, timestamp=t + 3, paired_shares=150, imbalance_shares=10, imbalance_direction="B",
             stock="AAA", far_price=100_500, near_price=100_400, current_reference_price=100_300, cross_type="C",
             price_variation_indicator="2"),
         enc("Q", stock_locate=1, timestamp=t + 4, shares=160, stock="AAA", cross_price=100_400, match_number=8,
             cross_type="C"),
         enc("I", stock_locate=1, timestamp=t + 5, paired_shares=1, imbalance_shares=1, imbalance_direction="B",
             stock="AAA", far_price=1, near_price=1, current_reference_price=1, cross_type="C",
             price_variation_indicator="1"),                                  # after the close: no cross
         enc("B", stock_locate=2, timestamp=t + 6, match_number=7)]
    res = auctions(b"".join(m))
    cr = res.crosses.to_pandas()
    assert cr[["symbol", "cross_type", "price", "shares", "broken"]].values.tolist() == [
        ["AAA", "C", 10.04, 160, False], ["BBB", "H", 5.0, 5, True]]
    im = res.imbalances.to_pandas()
    assert im["symbol"].tolist() == ["AAA", "AAA", "AAA", "BBB"]
    assert im["signed_imbalance"].tolist() == [-40, 10, 1, 0]
    assert im["cross_row"].tolist()[:2] == [0, 0] and math.isnan(im["cross_row"].iloc[2])
    assert im["cross_row"].iloc[3] == 1
    assert math.isnan(im["far_price"].iloc[0]) and im["near_price"].iloc[0] == 10.1
    only = auctions(b"".join(m), symbols="BBB")
    assert only.crosses.num_rows == 1 and only.imbalances.num_rows == 1


def test_broken_is_what_the_books_broke():
    """``broken`` was "a B anywhere names the match number": a B that came before the cross
    (it broke nothing: unknown_match) and a B for a number an execution held before the cross
    reused it (the books break the execution) both marked the cross. It is now the books'
    own answer, checked against the engine's volume."""
    t = 34_200_000_000_000
    m = [enc("R", stock_locate=1, timestamp=1, stock="AAA"),
         enc("A", stock_locate=1, timestamp=t, order_reference_number=5, buy_sell_indicator="B", shares=100,
             stock="AAA", price=100_000),
         enc("B", stock_locate=1, timestamp=t + 1, match_number=77),            # before its cross
         enc("Q", stock_locate=1, timestamp=t + 2, shares=500, stock="AAA", cross_price=100_000,
             match_number=77, cross_type="O"),
         enc("E", stock_locate=1, timestamp=t + 3, order_reference_number=5, executed_shares=10,
             match_number=88),
         enc("Q", stock_locate=1, timestamp=t + 4, shares=600, stock="AAA", cross_price=100_000,
             match_number=88, cross_type="H"),                                    # reuses the E's number
         enc("B", stock_locate=1, timestamp=t + 5, match_number=88),            # breaks the E
         enc("Q", stock_locate=1, timestamp=t + 6, shares=700, stock="AAA", cross_price=100_100,
             match_number=99, cross_type="C"),
         enc("B", stock_locate=1, timestamp=t + 7, match_number=99)]            # breaks this cross
    day = b"".join(m)
    cr = auctions(day).crosses.to_pydict()
    assert cr["match_number"] == [77, 88, 99]
    assert cr["broken"] == [False, False, True]
    books = itchflow.Books().replay(day)
    assert books.volume("AAA") == 500 + 600            # the E and the closing cross broken
    assert books.anomalies()["unknown_match"] == 1 and books.anomalies()["duplicate_match"] == 1


def test_a_code_byte_outside_printable_ascii_is_shown_not_an_error():
    """A cross type of 0xC3 raised a bare UnicodeDecodeError (the whole day's table lost); a
    NUL became "" (a code that is not there). Every byte is kept, escaped when not printable."""
    t = 57_600_000_000_000
    q = bytearray(enc("Q", stock_locate=1, timestamp=t, shares=5, stock="AAA", cross_price=50_000,
                      match_number=7, cross_type="C"))
    i = bytearray(enc("I", stock_locate=1, timestamp=t - 1, paired_shares=5, imbalance_shares=0,
                      imbalance_direction="N", stock="AAA", far_price=0, near_price=0,
                      current_reference_price=50_000, cross_type="C", price_variation_indicator=" "))
    q[-1] = 0xC3
    i[-1] = 0x00                      # price_variation_indicator, the I's last byte
    day = enc("R", stock_locate=1, timestamp=1, stock="AAA") + bytes(i) + bytes(q)
    res = auctions(day)
    assert res.crosses.to_pydict()["cross_type"] == ["\\xc3"]
    im = res.imbalances.to_pydict()
    assert im["price_variation"] == ["\\x00"] and im["cross_type"] == ["C"]
    assert im["imbalance_direction"] == ["N"]


# ---- the CLI commands and their plots --------------------------------------------------------

@pytest.fixture(scope="module")
def day_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("research") / "01302019.NASDAQ_ITCH50"
    write_day(path, 20_000, seed=5, stocks=20)
    return path


def _png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_cli_research_commands(day_file, tmp_path):
    import pyarrow.parquet as pq

    from itchflow.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["lobster", str(day_file), "-s", "CMCSA,HYG", "-n", "3", "-o", str(tmp_path / "lob"), "-q"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "lob").iterdir()) == [
        f"{s}_2019-01-30_34200000_57600000_{kind}_3.csv" for s in ("CMCSA", "HYG") for kind in ("message", "orderbook")]
    r = runner.invoke(main, ["bars", str(day_file), "--every", "1min", "-s", "CMCSA", "-o", str(tmp_path / "b.parquet"),
                             "--plot", str(tmp_path / "b.png"), "-q"])
    assert r.exit_code == 0, r.output
    assert pq.read_table(tmp_path / "b.parquet").num_rows == 390 and _png(tmp_path / "b.png")
    r = runner.invoke(main, ["auctions", str(day_file), "-o", str(tmp_path / "auc"), "--plot", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    assert pq.read_table(tmp_path / "auc" / "crosses.parquet").num_rows == len(itchflow.read(day_file, "Q")["Q"])
    assert _png(tmp_path / "a.png")
    r = runner.invoke(main, ["lobster", str(day_file), "-s", "NOPE", "-o", str(tmp_path / "x"), "-q"])
    assert r.exit_code == 1 and f"itchflow: error: {day_file}: lobster: no stock directory (R) message for NOPE\n" in r.output
    assert not list((tmp_path / "x").glob("*"))
    missing = tmp_path / "absent.itch"  # no date in its name either: the missing file is what is said
    r = runner.invoke(main, ["lobster", str(missing), "-s", "HYG", "-o", str(tmp_path / "y"), "-q"])
    assert r.exit_code == 1 and f"{missing}: no such file" in r.output


def test_public_names():
    assert itchflow.lobster.__module__ == "itchflow.sinks.lobster"
    assert itchflow.bars.__module__ == "itchflow.sinks.bars"
    assert itchflow.auctions.__module__ == "itchflow.sinks.auctions"


def test_auctions_take_a_locate_number_as_bars_and_bbo_do(day_file):
    """`auctions -s 1` was "no stock directory (R) message for 1", while bars, bbo, trades and
    snapshots take a name of digits as that stock's locate number."""
    r = itchflow.read(day_file, "RQI")
    locate = int(r["Q"]["stock_locate"][0])
    symbol = r["R"]["stock"][r["R"]["stock_locate"] == locate][0].decode().strip()
    by_name, by_locate = auctions(day_file, [symbol]), auctions(day_file, [str(locate)])
    assert len(by_name.crosses) == np.count_nonzero(r["Q"]["stock_locate"] == locate) > 0
    assert by_locate.crosses.equals(by_name.crosses) and by_locate.imbalances.equals(by_name.imbalances)
    unused = int(r["R"]["stock_locate"].max()) + 1
    with pytest.raises(KeyError, match=f"stock locate {unused}: the day names no stock under it"):
        auctions(day_file, [str(unused)])


def test_a_plot_that_cannot_be_drawn_is_refused_before_the_tables_are_written(day_file, tmp_path):
    """`auctions --cross-type X --plot` (and --plot-symbol NOPE) wrote both tables, then failed
    on the picture with exit 1; --cross-type Q was taken silently (probe 32). So did bars."""
    from itchflow.cli import main

    runner = CliRunner()
    r = runner.invoke(main, ["auctions", str(day_file), "-o", str(tmp_path / "a"), "--cross-type", "X",
                             "--plot", str(tmp_path / "a.png")])
    assert r.exit_code == 2 and "--cross-type" in r.output, r.output
    r = runner.invoke(main, ["auctions", str(day_file), "-o", str(tmp_path / "a"), "--plot-symbol", "NOPE",
                             "--plot", str(tmp_path / "a.png")])
    assert r.exit_code == 1 and "no imbalance messages for 'NOPE'" in r.output, r.output
    r = runner.invoke(main, ["bars", str(day_file), "--every", "1min", "-o", str(tmp_path / "b.parquet"),
                             "--plot-symbol", "NOPE", "--plot", str(tmp_path / "b.png"), "-q"])
    assert r.exit_code == 1 and "no bars for 'NOPE'" in r.output, r.output
    assert list(tmp_path.iterdir()) == []
    empty = tmp_path.parent / f"{tmp_path.name}-empty.itch"   # (probe 52: "no bars for ''")
    empty.write_bytes(b"")
    r = runner.invoke(main, ["bars", str(empty), "-o", str(tmp_path / "b.parquet"), "--plot", str(tmp_path / "b.png"),
                             "-q"])
    assert r.exit_code == 1 and "no stock quoted or traded" in r.output and "''" not in r.output, r.output
    assert list(tmp_path.iterdir()) == []
    r = runner.invoke(main, ["auctions", str(day_file), "-o", str(tmp_path / "a"), "--cross-type", "o",
                             "--plot", str(tmp_path / "a.png")])
    assert r.exit_code == 0 and _png(tmp_path / "a.png"), r.output


def test_crosses_the_books_would_count_as_anomalies_are_counted_and_warned_of(tmp_path):
    """A Q of a locate no R names, and a Q reusing an earlier cross's match number, were written
    with no word, where the books count both (probe 32). Hand-made: two R, three Q, one I."""
    from itchflow.cli import main

    def m(code, **f):
        return enc(code, timestamp=f.pop("timestamp", 1), **f)

    day = (m("R", stock_locate=1, stock=b"AAA") + m("R", stock_locate=2, stock=b"BBB")
           + m("Q", stock_locate=1, shares=10, stock=b"AAA", cross_price=10_000, match_number=7, cross_type=b"O")
           + m("Q", stock_locate=2, shares=20, stock=b"BBB", cross_price=20_000, match_number=7, cross_type=b"O")
           + m("Q", stock_locate=9, shares=30, stock=b"ZZZ", cross_price=30_000, match_number=8, cross_type=b"C")
           + m("I", stock_locate=9, paired_shares=1, imbalance_shares=0, imbalance_direction=b"N", stock=b"ZZZ",
               far_price=0, near_price=0, current_reference_price=0, cross_type=b"C",
               price_variation_indicator=b" "))
    # imbalances past int64 (probe 38: a null signed_imbalance said nothing): a B and an S
    # count, an N of as many shares does not (its signed value, 0, is exact)
    day += b"".join(m("I", stock_locate=1, paired_shares=1, imbalance_shares=shares, imbalance_direction=d,
                      stock=b"AAA", far_price=0, near_price=0, current_reference_price=0, cross_type=b"C",
                      price_variation_indicator=b" ")
                    for shares, d in ((2 ** 63, b"B"), (2 ** 64 - 1, b"S"), (2 ** 64 - 1, b"N"), (2 ** 63 - 1, b"S")))
    path = tmp_path / "20200102.itch"
    path.write_bytes(day)
    odd: dict = {}
    got = auctions(path, anomalies=odd)
    assert odd == {"unknown_locate": 2, "duplicate_match": 1, "imbalance_past_int64": 2}
    assert got.crosses.num_rows == 3 and got.imbalances.num_rows == 5   # written as sent
    assert got.imbalances["signed_imbalance"].to_pylist() == [None, None, 0, -(2 ** 63 - 1), 0]
    r = CliRunner().invoke(main, ["auctions", str(path), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert ("written as sent: 2 crosses and NOII messages of a locate no stock directory (R) message names, "
            "1 crosses reusing an earlier cross's match number, 2 imbalances of 2^63 shares or more, whose "
            "signed_imbalance is null (imbalance_shares exact)") in " ".join(r.output.split()), r.output
    clean: dict = {}
    auctions(path, ["BBB"], anomalies=clean)
    assert clean == {"unknown_locate": 0, "duplicate_match": 0, "imbalance_past_int64": 0}
