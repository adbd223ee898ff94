"""The book commands and the Books API say the same thing the same way (probe 26): what a time
means, how a locate with no R is named and asked for, what the message count counts, and what
track_matches=False does to B. Days are hand-built messages (test_book_support's encoder)."""

from __future__ import annotations

import json
import struct

import pyarrow.parquet as pq
from click.testing import CliRunner

from test_book_support import add, broken, directory, encode, execute, trade

from itchflow import Books
from itchflow.cli import main

HOUR = 3_600_000_000_000
P = 10_000


def _cli(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_at_is_the_book_as_the_feed_stood_and_the_help_says_so(tmp_path):
    """F2: an add stamped 11:00 after one stamped 13:00 is not in the book at 12:00 (the run
    stops at the first message stamped later, in file order); the help texts said "every
    message <= the time", which would have it."""
    day = tmp_path / "back.itch"
    day.write_bytes(encode([directory(1, "AAA"), add(1, 1, "B", 100, P, ts=10 * HOUR, symbol="AAA"),
                            add(1, 2, "S", 100, P + 100, ts=13 * HOUR, symbol="AAA"),
                            add(1, 3, "B", 100, P + 1, ts=11 * HOUR, symbol="AAA")]))
    r = _cli(["book", day, "-s", "AAA", "--at", "12:00", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["bids"] == [[P, 100, 1]]
    r = _cli(["snapshots", day, "-s", "AAA", "--at", "12:00", "-o", tmp_path / "s.parquet", "-q"])
    assert r.exit_code == 0, r.output
    assert pq.read_table(tmp_path / "s.parquet").to_pydict()["price"] == [P]
    for command in ("book", "snapshots"):
        text = " ".join(_cli([command, "--help"]).output.split())
        assert "first one stamped later" in text and "every message with timestamp <=" not in text, text


def _nodir_day(path, with_other_stock: bool):
    """Locate 5 has orders, a trade and no R (a day cut before its directory, or a feed's
    piece); with_other_stock: locate 1 has an R, so the day does list symbols."""
    msgs = [directory(1, "AAA")] if with_other_stock else []
    msgs += [add(5, 1, "B", 10, P, ts=1), add(5, 2, "S", 10, 2 * P, ts=2), execute(5, 1, 3, 1, ts=3)]
    path.write_bytes(encode(msgs))
    return path


def test_a_locate_without_an_r_is_asked_for_and_named_by_its_number_everywhere(tmp_path):
    """F7: on a day with no R, book -s 5 took the locate while snapshots -s 5 and trades -s 5
    refused it, and the numpy events' b"" symbol was "5" in to_pandas and the trades file."""
    day = _nodir_day(tmp_path / "nodir.itch", with_other_stock=False)
    r = _cli(["book", day, "-s", "5", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["symbol"], out["bids"], out["asks"]) == ("5", [[P, 7, 1]], [[2 * P, 10, 1]])
    r = _cli(["trades", day, "-s", "5", "-o", tmp_path / "t.parquet", "-q"])
    assert r.exit_code == 0, r.output
    t = pq.read_table(tmp_path / "t.parquet").to_pydict()
    assert (t["symbol"], t["shares"], t["stock_locate"]) == (["5"], [3], [5])
    r = _cli(["snapshots", day, "-s", "5", "--at", "00:00:01", "-o", tmp_path / "s.parquet"])
    assert r.exit_code == 0, r.output
    s = pq.read_table(tmp_path / "s.parquet").to_pydict()
    assert (s["symbol"], s["price"], s["shares"]) == (["5", "5"], [P, 2 * P], [7, 10])


def test_a_locate_no_r_names_on_a_day_that_lists_stocks_is_refused_by_every_command(tmp_path):
    """F7: the one rule on a day with a directory: a locate number naming no stock there is an
    error (as a symbol the day does not list), in book (which refused it) and the others."""
    day = _nodir_day(tmp_path / "mixed.itch", with_other_stock=True)
    said = "stock locate 5: no stock directory (R) message gives it a stock"
    for args, out in ((["book", "-s", "5", "--json"], None), (["trades", "-s", "5", "-q"], "t.parquet"),
                      (["bbo", "-s", "5", "-q"], "b.parquet"),
                      (["snapshots", "-s", "5", "--at", "00:00:01"], "s.parquet")):
        r = _cli([args[0], day, *args[1:], *(["-o", tmp_path / out] if out else [])])
        assert r.exit_code == 1 and said in r.output, (args, r.output)
        assert out is None or not (tmp_path / out).exists()
    r = _cli(["trades", day, "-s", "1,AAA", "-o", tmp_path / "t.parquet", "-q"])   # a named locate: its rows
    assert r.exit_code == 0, r.output


def test_the_message_count_counts_unknown_types_too(tmp_path):
    """F8: "wrote 1 trades from 3 messages" of a file of 5 messages, 2 of an unknown type."""
    known = encode([directory(1, "AAA"), add(1, 1, "B", 100, P, symbol="AAA")])
    unknown = struct.pack(">H", 20) + b"z" + bytes(19) + struct.pack(">H", 5) + b"\x00" + bytes(4)
    day = tmp_path / "unknown.itch"
    day.write_bytes(known + unknown + encode([execute(1, 1, 10, 1)]))
    r = _cli(["trades", day, "-o", tmp_path / "t.parquet", "-q"])
    assert r.exit_code == 0, r.output
    assert "wrote 1 trades from 5 messages (2 of unknown types, skipped)" in r.stdout


def test_snapshots_takes_quiet_as_the_other_book_commands_do(tmp_path):
    day = tmp_path / "d.itch"
    day.write_bytes(encode([directory(1, "AAA"), add(1, 1, "B", 100, P, symbol="AAA")]))
    for flag in ("-q", "--quiet"):
        r = _cli(["snapshots", day, "-s", "AAA", "--at", "00:00:01", "-o", tmp_path / "s.parquet", flag])
        assert r.exit_code == 0, r.output


def test_without_tracked_matches_every_b_is_counted_and_none_breaks_and_the_docs_say_so():
    """F5: with track_matches=False a B of a match number the books saw counts as unknown_match
    (no match index to find it in) and takes nothing out of the volume; it was undocumented."""
    day = encode([directory(1, "AAA"), add(1, 1, "B", 100, P, symbol="AAA"), execute(1, 1, 10, 7),
                  trade(1, 5, P, 8, symbol="AAA"), broken(1, 7), broken(1, 99)])
    tracked, untracked = Books(), Books(track_matches=False)
    for books in (tracked, untracked):
        books.apply(day)
    assert (tracked.volume("AAA"), tracked.anomalies()["unknown_match"]) == (5, 1)
    assert (untracked.volume("AAA"), untracked.anomalies()["unknown_match"]) == (15, 2)
    doc = " ".join(Books.__doc__.split())
    assert "track_matches=False no B breaks anything" in doc and "for a match number seen or not" in doc
