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
    # two runs in one process (its figure beside ours in a process that has run before): a new
    # BookManager each, the same books at the end, the best and the first run's times apart
    r2 = itchcpp_books(day, symbols, piece, runs=2)
    assert r2["tops"] == r["tops"] and r2["books"] == r["books"] and len(r2["seconds_each"]) == 2
    assert r2["seconds"] == min(r2["seconds_each"]) and r2["first_seconds"] == r2["seconds_each"][0]


def test_every_shape_is_planned_before_any_runs(monkeypatch):
    """A --messages too small for the 8,000-stock day was refused only after the deep day had
    run (70 s of results lost)."""
    import itchflow.bench.book as bb
    from itchflow.sim.generator import ShapeError

    ran = []
    monkeypatch.setattr(bb, "run_shape", lambda *a, **k: ran.append(a) or {})
    with pytest.raises(ShapeError):
        bb.run(messages=200_000, shapes=("deep", "many"), peers=False, memory_orders=0)
    assert ran == []


def test_the_headline_ratio_is_warm_against_warm_and_first_against_first(monkeypatch, tmp_path):
    """Our best in a process that has run before was set against itchcpp's best of fresh
    processes; now each side's warm best against the other's, and first against first."""
    import itchflow.bench.book as bb

    day = tmp_path / "day.itch"
    write_day(day, 20_000, seed=2, stocks=5)
    monkeypatch.setattr(bb, "ensure_shape_day", lambda params: (day, {"messages": 20_000, "seconds": 1.0}, False))
    monkeypatch.setattr(bb, "run_peer", lambda code, **kw: {"seconds": 0.004, "messages": 20_000,
                                                            "kernel_load_seconds": 0.1})
    cpp = iter([{"seconds": 0.08, "first_seconds": 0.12, "seconds_each": [0.12, 0.08], "books": 5, "tops": {}},
                {"seconds": 0.07, "first_seconds": 0.10, "seconds_each": [0.10, 0.07], "books": 5, "tops": {}}])
    monkeypatch.setattr(bb, "itchcpp_books", lambda path, symbols, runs=1: next(cpp))
    monkeypatch.setattr(Books, "bbo", lambda self, symbols=None: __import__("numpy").zeros(
        0, [("bid_price", "u4"), ("bid_shares", "u4"), ("ask_price", "u4"), ("ask_shares", "u4")]))
    r = bb.run_shape("deep", bb.shape_params("deep", 20_000), repeat=2, peers=True)
    ours = r["itchflow"]["seconds"]
    assert r["itchcpp"]["seconds"] == 0.07 and r["itchcpp_first_run"]["seconds"] == 0.10
    assert r["ratio_vs_itchcpp"] == pytest.approx(0.07 / ours)
    assert r["first_apply_ratio_vs_itchcpp"] == pytest.approx(0.10 / 0.004)
