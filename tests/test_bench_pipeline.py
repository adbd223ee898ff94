"""bench pipeline's queue peers: each item carries its message count, as a ring batch record
does, so the hand-off-only consumer reads a count and nothing else (it walked every message
again inside its clock, which the ring's consumer does not: probe 23); what it counts and what
the books consumer applies are still the whole day."""

from __future__ import annotations

import numpy as np

from itchflow.bench.pipeline import _cuts, queue_pipeline
from itchflow.book.books import Books
from itchflow.sim.generator import write_day
from itchflow.sources.files import map_file


def test_the_queue_hand_off_counts_the_whole_day_from_its_items(tmp_path):
    path = tmp_path / "day.itch"
    write_day(path, 60_000, 2, stocks=20)
    buf = map_file(path)
    cuts = _cuts(buf, 1024)
    # the cuts tile the day: each starts where the last ended, numbered on from it
    assert cuts[0][:3] == (0, cuts[0][1], 1) and cuts[-1][1] == len(buf)
    assert all(a[1] == b[0] and a[2] + a[3] == b[2] for a, b in zip(cuts, cuts[1:]))
    assert sum(c[3] for c in cuts) == 60_000
    r = queue_pipeline("mp.Queue", str(path), 1024, None, None)
    assert (r["messages"], r["batches"]) == (60_000, len(cuts))
    books = Books()
    r = queue_pipeline("mp.Queue", str(path), 1024, None, books)
    one = Books()
    one.apply(np.asarray(buf))
    assert r["messages"] == 60_000 and np.array_equal(books.tops(), one.tops())


def test_check_rows_refuses_a_hand_off_whose_books_differ_in_a_top_of_book(tmp_path):
    """The check compared live and peak live orders only (probe 23): books with the same counts
    and another best bid passed. Now every stock's tops and volume are in it."""
    import pytest

    from itchflow.bench.pipeline import _books_row, check_rows
    from test_book_support import add, directory, encode

    a, b = Books(), Books()
    a.apply(encode([directory(1, "AAA"), add(1, 1, "B", 100, 10_000)]))
    b.apply(encode([directory(1, "AAA"), add(1, 1, "B", 100, 10_100)]))   # one order, another price
    ra, rb = _books_row(a), _books_row(b)
    assert {k: v for k, v in ra.items() if k != "tops_digest"} == {k: v for k, v in rb.items() if k != "tops_digest"}
    check_rows({"same": {"messages": 2, "books": dict(ra)}}, 2, ra)
    with pytest.raises(RuntimeError, match="built other books"):
        check_rows({"other": {"messages": 2, "books": rb}}, 2, ra)
