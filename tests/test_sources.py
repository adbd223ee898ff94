"""Sources: raw files are memory-mapped (no copy), gzip is streamed in blocks cut at message
boundaries, in-memory buffers are viewed in place; empty, missing and directory paths."""

from __future__ import annotations

import functools
import gzip
import mmap

import numpy as np
import pytest

import itch_reference as ref
import itchflow
from itchflow.errors import ITCHFormatError
from itchflow.sources import files as chunks_mod
from itchflow.sources.files import iter_chunks

pytestmark = pytest.mark.timeout(120)

DATA = ref.random_stream(3000, seed=21, unknown_rate=0.05)
MSGS, STATS = ref.decode(DATA)


def _root(arr):
    """The object at the bottom of a numpy array's .base chain."""
    base = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):  # np.frombuffer keeps a memoryview of the exporter
        base = base.obj
    return base


def _field_equal(a, b):
    for c in ref.CODES:
        assert len(a[c]) == len(b[c]), c
        for name in a[c].dtype.names:
            assert np.array_equal(a[c][name], b[c][name]), (c, name)


def test_raw_file_is_memory_mapped_not_copied(tmp_path):
    path = tmp_path / "day.itch"
    path.write_bytes(DATA)
    (chunk,) = list(iter_chunks(path))
    assert isinstance(_root(chunk.data), mmap.mmap)
    assert not chunk.data.flags.writeable  # a read-only map of the file, not a private copy
    assert chunk.data.dtype == np.uint8 and len(chunk.data) == len(DATA)
    assert chunk.first_sequence == 1 and chunk.offset == 0
    assert bytes(chunk.data) == DATA


def test_numpy_and_bytes_buffers_are_viewed_in_place():
    arr = np.frombuffer(DATA, np.uint8).copy()
    (chunk,) = list(iter_chunks(arr))
    assert np.shares_memory(chunk.data, arr)
    wide = arr[: len(arr) // 8 * 8].view(np.uint64)  # any dtype: seen as its bytes
    (chunk,) = list(iter_chunks(wide))
    assert np.shares_memory(chunk.data, arr)
    ba = bytearray(DATA)
    (chunk,) = list(iter_chunks(ba))
    chunk_first = int(chunk.data[0])
    ba[0] ^= 0xFF
    assert int(chunk.data[0]) == chunk_first ^ 0xFF  # same memory, no copy
    want = itchflow.read(DATA)
    for source in (memoryview(DATA), bytearray(DATA), arr):
        _field_equal(itchflow.read(source), want)


@pytest.mark.parametrize("block", [1, 2, 3, 7, 19, 36, 37, 64, 1000])
def test_gzip_in_tiny_blocks_equals_raw(tmp_path, block):
    gz = tmp_path / "day.itch.gz"
    gz.write_bytes(gzip.compress(DATA, compresslevel=1))
    got = list(iter_chunks(gz, gz_block=block))
    assert b"".join(bytes(c.data) for c in got) == DATA
    seq, off = 1, 0
    for c in got:
        assert c.first_sequence == seq and c.offset == off
        msgs, _ = ref.decode(bytes(c.data), first_sequence=seq)  # whole messages only
        seq += len(msgs)
        off += len(c.data)
    assert seq == STATS.messages + 1
    if block < 36:  # messages straddle block boundaries: chunks must have been joined
        assert all(len(c.data) >= 2 for c in got)


@pytest.mark.parametrize("block", [1, 5, 41])
def test_read_and_scan_through_tiny_gzip_blocks(tmp_path, monkeypatch, block):
    import itchflow.decode.reader as reader

    raw = tmp_path / "day.itch"
    raw.write_bytes(DATA)
    gz = tmp_path / "day.itch.gz"
    gz.write_bytes(gzip.compress(DATA))
    want = itchflow.read(raw)
    monkeypatch.setattr(reader, "iter_chunks", functools.partial(iter_chunks, gz_block=block))
    d = itchflow.read(gz)
    _field_equal(d, want)
    assert d.info.messages == STATS.messages and d.info.bytes == STATS.bytes
    assert d.info.by_type == STATS.by_type and d.info.unknown == STATS.unknown
    assert d.info.first_timestamp_ns == STATS.first_timestamp_ns
    assert d.info.last_timestamp_ns == STATS.last_timestamp_ns and d.info.stocks == STATS.stocks
    pieces = list(itchflow.scan(gz, chunk_messages=250))
    assert sum(p.info.messages for p in pieces) == STATS.messages
    # a message cut at the end of the gzip data: the error names its decompressed offset
    last = len(DATA) - (2 + len(MSGS[-1].raw))
    gz.write_bytes(gzip.compress(DATA[:-1]))
    with pytest.raises(ITCHFormatError) as ei:
        itchflow.read(gz)
    assert ei.value.offset == last and str(gz) in str(ei.value)


def test_multi_member_gzip(tmp_path):
    half = len(MSGS) // 2
    cut = sum(2 + len(m.raw) for m in MSGS[:half])
    gz = tmp_path / "two.gz"
    gz.write_bytes(gzip.compress(DATA[:cut]) + gzip.compress(DATA[cut:]))
    _field_equal(itchflow.read(gz), itchflow.read(DATA))
    _field_equal(itchflow.read(gz.read_bytes()), itchflow.read(DATA))


def test_format_is_sniffed_from_content_not_name(tmp_path):
    want = itchflow.read(DATA)
    raw_named_gz = tmp_path / "raw.gz"
    raw_named_gz.write_bytes(DATA)
    gz_named_raw = tmp_path / "gz.itch"
    gz_named_raw.write_bytes(gzip.compress(DATA))
    for p in (raw_named_gz, gz_named_raw):
        _field_equal(itchflow.read(p), want)


def test_empty_file(tmp_path):
    for name, content in (("empty.itch", b""), ("empty.gz", gzip.compress(b""))):
        path = tmp_path / name
        path.write_bytes(content)
        d = itchflow.read(path)
        assert d.info.messages == 0 and d.info.bytes == 0 and d.info.unknown == 0
        assert d.info.first_timestamp_ns is None and d.info.stocks == 0
        assert all(len(d[c]) == 0 for c in ref.CODES)
        assert itchflow.stats(path).messages == 0
        assert list(itchflow.scan(path)) == []


def test_directory_path_error(tmp_path):
    with pytest.raises(IsADirectoryError) as ei:
        itchflow.read(tmp_path)
    assert str(tmp_path) in str(ei.value)
    with pytest.raises(IsADirectoryError):
        itchflow.stats(str(tmp_path))


def test_missing_file_error(tmp_path):
    missing = tmp_path / "nope.itch"
    for call in (itchflow.read, itchflow.stats, lambda p: list(itchflow.scan(p))):
        with pytest.raises(FileNotFoundError) as ei:
            call(missing)
        assert str(missing) in str(ei.value)


def test_default_gzip_block_is_bounded():
    # streaming keeps memory bounded by the block, not the file
    assert 1 << 20 <= chunks_mod.DEFAULT_GZ_BLOCK <= 256 << 20


def _feed_fifo(path, data: bytes, piece: int):
    """Make a FIFO at path and write data into it from a thread, piece bytes a write."""
    import os
    import threading

    os.mkfifo(path)

    def write():
        with open(path, "wb", buffering=0) as f:   # blocks until the reader opens it
            for i in range(0, len(data), piece):
                f.write(data[i:i + piece])

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("kind,piece", [("raw", 1), ("raw", 4096), ("gzip", 3), ("gzip", 65536)])
def test_a_pipe_or_fifo_is_read_once_as_a_stream(tmp_path, kind, piece):
    """A FIFO (or `<(zcat day.gz)`, a pipe) has size 0: mapping it read no message, and
    reopening it to tell its kind lost its first bytes. Now it is read once, in blocks; the
    first 8 bytes may arrive one a write."""
    data = DATA if kind == "raw" else gzip.compress(DATA)
    raw = tmp_path / "day.itch"
    raw.write_bytes(DATA)
    fifo = tmp_path / "feed"
    writer = _feed_fifo(fifo, data, piece)
    got = itchflow.read(fifo)
    writer.join(timeout=60)
    _field_equal(got, itchflow.read(raw))
    assert (got.info.messages, got.info.bytes, got.info.unknown) == (STATS.messages, STATS.bytes, STATS.unknown)
    assert got.info.by_type == STATS.by_type


def test_a_capture_through_a_fifo_equals_the_file(tmp_path, all_captures):
    path = max(all_captures, key=lambda p: p.stat().st_size)
    fifo = tmp_path / "cap"
    writer = _feed_fifo(fifo, path.read_bytes(), 1000)
    got = itchflow.read(fifo)
    writer.join(timeout=60)
    want = itchflow.read(path)
    assert got.info.messages == want.info.messages > 0
    assert got.info.capture == want.info.capture
    for code in want:
        assert np.array_equal(got[code], want[code]), code


def test_stats_command_on_a_fifo(tmp_path):
    import json

    from click.testing import CliRunner

    from itchflow.cli import main

    fifo = tmp_path / "feed"
    writer = _feed_fifo(fifo, DATA, 777)
    res = CliRunner().invoke(main, ["stats", "--json", str(fifo)])
    writer.join(timeout=60)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["messages"] == STATS.messages
