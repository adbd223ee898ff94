"""bench book's peer plumbing: itchcpp fed in whole-message pieces builds the books one whole
call builds, and a peer process that dies says how (the benchmark itself is run by hand)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from itchflow.bench.book import itchcpp_books
from itchflow.bench.common import peer_failure, run_peer
from itchflow.book.books import Books
from itchflow.sim.generator import write_day


def test_a_peer_killed_by_a_signal_is_named():
    r = run_peer("import os, signal, sys\nprint('working', file=sys.stderr, flush=True)\n"
                 "os.kill(os.getpid(), signal.SIGKILL)")
    assert r["error"].startswith("killed by SIGKILL (out of memory?")
    assert r["error"].endswith("last stderr line: working")


@pytest.mark.parametrize("code, expected", [
    ("import sys\nprint('first', file=sys.stderr)\nprint('the reason', file=sys.stderr)\nsys.exit(3)", "the reason"),
    ("import sys\nsys.exit(2)", "exited with status 2, no message"),
])
def test_a_peer_that_exits_says_why(code, expected):
    assert run_peer(code) == {"error": expected}


def test_peer_failure_of_another_signal():
    proc = subprocess.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"],
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGTERM
    assert peer_failure(proc.returncode, proc.stderr) == "killed by SIGTERM"


def test_itchcpp_in_pieces_builds_the_books_of_one_call(tmp_path):
    cb = pytest.importorskip("itchcpp.book", reason="itchcpp (a test dependency) is not installed")
    day = tmp_path / "day.itch"
    write_day(day, 60_000, seed=4, stocks=20)
    data = day.read_bytes()
    symbols = [str(s) for s in Books().replay(day).bbo()["symbol"]]
    whole = cb.BookManager()
    whole.process_stream(data)

    piece = 65_537 + 1_001   # at least one whole message of any length; cuts about 30 pieces
    assert len(data) > 20 * piece
    r = itchcpp_books(day, symbols, piece)
    assert "error" not in r, r
    assert r["books"] == whole.book_count()
    for s in symbols:
        book = whole.book_for_symbol(s)
        if book is None:
            assert r["tops"][s] == [0, 0, 0, 0]
            continue
        q = book.bbo()
        assert r["tops"][s] == [round(q.bid_price * 10000) if q.has_bid else 0, q.bid_shares if q.has_bid else 0,
                                round(q.ask_price * 10000) if q.has_ask else 0, q.ask_shares if q.has_ask else 0]
    assert any(top != [0, 0, 0, 0] for top in r["tops"].values())
    json.dumps(r)  # what the benchmark reports
