"""Buffers that are not one contiguous run of bytes: a strided view (``day[::2]`` of a copy
with every byte twice), a 2-D array, another dtype's memory. The compiled walks read a
message's fields by address (an 8-byte load for a timestamp, a 64-byte move for a record),
so a strided view handed to them as it is reads other bytes: ``read`` gave P/Q/I messages and
the first and last timestamps of other bytes, sharded books stopped with a format error at
byte 0, and a ring record or a MoldUDP64 packet came out as other bytes. Every entry point now
takes the bytes the view shows (``hw.byte_view``: a copy where they are not contiguous), and
each result must equal the contiguous buffer's."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import itchflow
from itchflow.book.books import Books
from itchflow.hw.byte_view import byte_view


@pytest.fixture(scope="module")
def day() -> np.ndarray:
    from itchflow.sim.generator import generate_day

    return generate_day(40_000, seed=11, stocks=50)


def strided(buf: np.ndarray) -> np.ndarray:
    s = np.repeat(buf, 2)[::2]
    assert np.array_equal(s, buf) and not s.flags.c_contiguous
    return s


def test_byte_view_takes_the_bytes_a_view_shows():
    data = np.arange(48, dtype=np.uint8)
    assert np.shares_memory(byte_view(data), data)                       # contiguous: no copy
    assert byte_view(strided(data)).tobytes() == data.tobytes()
    assert byte_view(data.reshape(6, 8)).tobytes() == data.tobytes()
    assert byte_view(data.reshape(8, 6).T).tobytes() == data.reshape(8, 6).T.tobytes()  # row order of the view
    assert byte_view(memoryview(data.tobytes())[::3]).tobytes() == data.tobytes()[::3]
    words = np.arange(6, dtype=np.int64)
    assert byte_view(words).tobytes() == words.tobytes()               # another dtype: its raw bytes
    assert byte_view(words[::2]).tobytes() == words[::2].tobytes()


def test_read_stats_and_scan_of_a_strided_day(day):
    want, got = itchflow.read(day), itchflow.read(strided(day))
    assert set(want) == set(got)
    for code in want:
        assert np.array_equal(want[code], got[code]), code
    a, b = itchflow.stats(day), itchflow.stats(strided(day))
    assert (a.first_timestamp_ns, a.last_timestamp_ns, a.by_type) == (b.first_timestamp_ns, b.last_timestamp_ns,
                                                                     b.by_type)
    pieces = list(itchflow.scan(strided(day), types="A", chunk_messages=5000))
    assert np.array_equal(np.concatenate([p["A"] for p in pieces]), want["A"])


@pytest.mark.parametrize("threads", [1, 2])
def test_books_of_a_strided_day(day, threads):
    want = Books()
    want.apply(day)
    got = Books(threads=threads)
    assert got.apply(strided(day)) == len(day)
    assert np.array_equal(got.order_table(), want.order_table())
    assert np.array_equal(got.tops(), want.tops())
    assert got.last_timestamp_ns == want.last_timestamp_ns and got.messages == want.messages


def test_ring_records_from_strided_and_2d_arrays(tmp_path):
    from itchflow.ring import Ring

    ring = Ring.create(f"itchflow-test-strided-{tmp_path.name}", 1 << 16, consumers=["c"])
    try:
        w, records = ring.writer(), iter(ring.reader("c", timeout=10))
        data = np.arange(40, dtype=np.uint8)
        for payload in (strided(data), data.reshape(4, 10), data.tobytes()):
            w.write(payload)
            assert bytes(next(records)) == data.tobytes()
        w.write_batch(strided(np.tile(data, 2)), np.array([0, 40, 80]))
        assert [bytes(next(records)), bytes(next(records))] == [data.tobytes()] * 2
    finally:
        ring.close()
        ring.unlink()


def test_a_mold_packet_as_a_strided_array():
    from itchflow.protocol.mold.receiver import Deliver, MoldReceiver

    body = b"".join(struct.pack(">H", 9) + bytes([0xC0]) + s.to_bytes(8, "big") for s in range(1, 4))
    packet = np.frombuffer(struct.pack(">10sQH", b"0000000001", 1, 3) + body, np.uint8)
    out = []
    for p in (packet, strided(packet)):
        r = MoldReceiver(b"0000000001")
        out.append(b"".join(e.data.tobytes() for e in r.receive(p, 0) if isinstance(e, Deliver)))
    assert out[0] == out[1] == body
