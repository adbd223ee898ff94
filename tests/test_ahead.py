"""``sources.ahead``: an iterator's items made on a thread of their own, a bounded number ahead.

The consumer must see exactly what the iterator gives (items in order, then its end or its
exception after every item before it), the producer may never run more than ``depth`` items
(plus the one it is making) ahead of the consumer, and a consumer that stops early must find
the producer stopped, its clean-up run and its thread gone. A gzip day is read that way.
"""

from __future__ import annotations

import gzip
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import itchflow
from itchflow.errors import ITCHFormatError
from itchflow.sources.ahead import ahead
from itchflow.sources.files import iter_chunks


class Boom(Exception):
    pass


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("itchflow-")}


class _Made:
    """A generator's items, counting how many were made and whether its clean-up ran."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at, self.made, self.cleaned = n, fail_at, 0, False

    def items(self):
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise Boom(i)
                self.made += 1
                yield i
        finally:
            self.cleaned = True


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), depth=st.integers(1, 4), fail_at=st.one_of(st.none(), st.integers(0, 40)))
def test_the_consumer_sees_what_the_iterator_gives_and_never_more_than_depth_ahead(n, depth, fail_at):
    made = _Made(n, fail_at)
    got = []
    with pytest.raises(Boom) if fail_at is not None and fail_at < n else _nothing():
        for i in ahead(made.items(), depth):
            # taken i + 1 items: the producer may have made depth more, and one it is handing over
            assert made.made <= len(got) + 1 + depth + 1
            got.append(i)
    want = list(range(min(n, fail_at) if fail_at is not None else n))
    assert got == want
    assert made.cleaned
    assert not _threads()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("stop_after", [0, 1, 5])
def test_a_consumer_that_stops_early_stops_the_producer(stop_after):
    made = _Made(10_000)
    it = ahead(made.items(), 2, name="itchflow-test")
    for k, _ in enumerate(it):
        if k == stop_after:
            break
    it.close()
    assert made.cleaned                       # its finally ran (in the producer's thread)
    assert made.made <= stop_after + 1 + 3    # and it made no more than the bound
    assert not _threads()


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        list(ahead(iter([1]), 0))


def _day(tmp_path, n=20_000):
    from itchflow.sim.generator import write_day

    raw = tmp_path / "day.itch"
    write_day(raw, n, seed=3, stocks=20)
    gz = tmp_path / "day.itch.gz"
    gz.write_bytes(gzip.compress(raw.read_bytes(), compresslevel=1))
    return raw, gz


def test_a_gzip_day_in_small_blocks_reads_as_the_raw_day(tmp_path):
    raw, gz = _day(tmp_path)
    chunks = list(iter_chunks(gz, gz_block=4096, gz_ahead=True))   # many chunks, made ahead on the thread
    assert len(chunks) > 10
    assert np.array_equal(np.concatenate([c.data for c in chunks]), np.fromfile(raw, np.uint8))
    assert [c.offset for c in chunks] == list(np.cumsum([0] + [len(c.data) for c in chunks[:-1]]))
    assert not _threads()
    assert itchflow.Books().replay(gz).bbo().tolist() == itchflow.Books().replay(raw).bbo().tolist()


def test_a_gzip_day_cut_short_still_delivers_every_good_message_then_names_the_offset(tmp_path):
    raw, gz = _day(tmp_path)
    cut = tmp_path / "cut.itch.gz"
    cut.write_bytes(gz.read_bytes()[: gz.stat().st_size * 2 // 3])
    delivered = 0
    with pytest.raises(ITCHFormatError) as e:
        for c in iter_chunks(cut, gz_block=4096, gz_ahead=True):
            delivered += len(c.data)
    assert e.value.offset == delivered and delivered > 0
    assert np.array_equal(np.fromfile(raw, np.uint8)[:delivered],
                          np.concatenate([c.data for c in iter_chunks(raw)])[:delivered])
    assert "cut.itch.gz" in str(e.value)
    assert not _threads()


def test_stopping_early_in_a_gzip_day_leaves_no_thread(tmp_path):
    _, gz = _day(tmp_path)
    for k, _ in enumerate(iter_chunks(gz, gz_block=4096, gz_ahead=True)):
        if k == 2:
            break
    assert not _threads()
    books = itchflow.Books()
    books.replay(gz, stop_after_ns=books_first_ts(gz) + 1)
    assert not _threads()


def books_first_ts(path) -> int:
    return itchflow.stats(path).first_timestamp_ns


def test_books_and_scan_take_a_gzip_day_ahead_and_stats_does_not(tmp_path, monkeypatch):
    import itchflow.sources.files as files

    raw, gz = _day(tmp_path, 60_000)
    monkeypatch.setattr(files, "DEFAULT_GZ_BLOCK", 64 << 10)   # several chunks
    monkeypatch.setattr(files.iter_chunks, "__kwdefaults__", {**files.iter_chunks.__kwdefaults__,
                                                               "gz_block": 64 << 10})
    seen = []
    books = itchflow.Books()
    books.replay(gz, on_slice=lambda b: seen.append(_threads()))
    assert any("itchflow-gunzip" in names for names in seen)
    assert books.bbo().tolist() == itchflow.Books().replay(raw).bbo().tolist()
    seen.clear()
    pieces = []
    for piece in itchflow.scan(gz, "A", chunk_messages=5_000):
        seen.append(_threads())
        pieces.append(piece["A"])
    assert any("itchflow-gunzip" in names for names in seen)
    assert np.array_equal(np.concatenate(pieces), itchflow.read(raw, "A")["A"])
    seen.clear()
    itchflow.stats(gz, progress=lambda messages, position: seen.append(_threads()))
    assert len(seen) > 1 and not any(seen)   # framing only: decompression-bound either way
    assert not _threads()
