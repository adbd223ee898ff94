"""A file written to in place, at the same size, while it is read through its mapping.

A truncated file is found by its size (tests/test_truncated_mapping.py); a file rewritten in
place keeps its size, and the mapping reads whatever bytes are there when each page is read:
old and new mixed. Its modification time is what moves. Each file's time is set far in the
past first, so that the write's own time differs whatever the clock's granularity.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import itch_reference as ref
import itchflow
from itchflow.errors import ITCHFormatError

OLD = 10**18   # 2001-09-09, in ns since the epoch


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> bytes:
    from itchflow.sim.generator import write_day

    path = tmp_path_factory.mktemp("day") / "day.itch"
    write_day(path, 60_000, seed=3)
    return path.read_bytes()


def _aged(path, data: bytes) -> str:
    path.write_bytes(data)
    os.utime(path, ns=(OLD, OLD))
    return str(path)


def _write_in_place(path: str, at: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def test_a_day_written_to_while_it_is_scanned_is_an_error_naming_it(tmp_path, day):
    """scan hands out its first piece; another writer changes a message further on (same
    size); the rest of the scan is an error naming the file, never pieces of mixed bytes."""
    path = _aged(tmp_path / "day.itch", day)
    pieces = itchflow.scan(path, chunk_messages=5000)
    next(pieces)
    _write_in_place(path, len(day) // 2, b"\x00\x00")   # a zero length prefix, or half of one
    with pytest.raises(ITCHFormatError) as e:
        list(pieces)
    assert e.value.source == path and "written to while it was being read" in str(e.value)
    assert "size did not change" in str(e.value)


def test_a_day_appended_to_while_it_is_scanned_says_it_grew(tmp_path, day):
    """A day still being written (appended to) was reported with "its size did not change"."""
    path = _aged(tmp_path / "day.itch", day)
    pieces = itchflow.scan(path, chunk_messages=5000)
    next(pieces)
    with open(path, "ab") as f:
        f.write(day[:1000])
    with pytest.raises(ITCHFormatError) as e:
        list(pieces)
    grown = f"it grew from {len(day):,} to {len(day) + 1000:,} bytes"
    assert grown in str(e.value) and "tail:PATH" in str(e.value) and "size did not change" not in str(e.value)


def test_a_capture_written_to_while_it_is_read_is_an_error_naming_it(tmp_path, day, monkeypatch):
    """A capture's pieces are copied out of its mapping as it is read: a write to it after the
    first piece is an error naming the capture."""
    import itchflow.protocol.mold.capture as capture
    from itchflow.protocol.mold.feed import MoldFeed
    from itchflow.sources.files import iter_chunks

    feed = MoldFeed(np.frombuffer(day, np.uint8), b"WRITTEN", 1400)
    data = ref.pcap_file([ref.eth_ipv4_udp(feed.packet_bytes(i)) for i in range(feed.n_packets)])
    path = _aged(tmp_path / "day.pcap", data)
    monkeypatch.setattr(capture, "PIECE_BYTES", 64 << 10)
    chunks = iter_chunks(path)
    next(chunks)
    _write_in_place(path, len(data) - 100, b"\xff")
    with pytest.raises(ITCHFormatError) as e:
        list(chunks)
    assert e.value.source == path and "written to while it was being read" in str(e.value)


def test_a_day_read_before_it_is_written_to_and_an_untouched_one_are_no_error(tmp_path, day):
    """A write after the read is over changes nothing already read; a file nobody writes
    reads with no error however long it is held (its time is only compared, never reset)."""
    path = _aged(tmp_path / "day.itch", day)
    whole = itchflow.read(path)
    _write_in_place(path, 0, b"\x00")
    assert whole.info.messages == 60_000
    path = _aged(tmp_path / "other.itch", day)
    assert itchflow.stats(path).messages == 60_000
    assert sum(p.info.messages for p in itchflow.scan(path, chunk_messages=5000)) == 60_000
