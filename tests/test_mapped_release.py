"""Walking a memory-mapped day front to back lets the pages already walked go (Chunk.release).

A raw day is one read-only mapping of the whole file, and every page read through it stays in
the process's resident set until the mapping closes: 12 GB for a real day, which a Dask
worker's memory limit counts (a 2-day archive of such days killed every worker that tried).
Each consumer that walks a day (replay, snapshots, stats, scan, the Dask split and its
balancing count, the pipeline's reader process) must keep its pages of the mapping bounded by
about a slice, and give the same answers as without releasing. The resident pages are read
from /proc/PID/smaps while the walk runs; a control run with release disabled shows the same
reading growing to the size of the file, so the measurement itself is checked.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import itchflow.sources.chunk as chunk_mod
import itchflow.wire.shard as _S
from itchflow.book.books import Books
from itchflow.book.events import snapshots
from itchflow.decode import reader
from itchflow.sim.generator import write_day
from itchflow.sources.chunk import Chunk

MiB = 1 << 20
_REAL_SPLIT, _REAL_COUNT = _S.split_by_locate, _S.count_by_locate  # the kernels the split test wraps
_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs /proc/self/smaps (Linux)")


def mapped_rss(path, pid="self") -> int:
    """Resident bytes of a process's mappings of path (/proc/PID/smaps)."""
    target = os.path.realpath(path)
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if _HEADER.match(line):
                inside = line.rstrip("\n").endswith(" " + target)
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    path = tmp_path_factory.mktemp("release") / "day.itch"
    write_day(path, 1_200_000, seed=5, stocks=60)
    assert os.path.getsize(path) > 24 * MiB
    return path


@pytest.fixture
def small_runs(monkeypatch):
    """Pages go in runs of 1 MiB (not 64), so a 30 MB day shows the difference."""
    monkeypatch.setattr(chunk_mod, "RELEASE_BYTES", 1 * MiB)


def _no_release(monkeypatch):
    monkeypatch.setattr(Chunk, "release", lambda self, upto, final=False: None)


class Peak:
    def __init__(self, path):
        self.path, self.peak, self.samples = path, 0, 0

    def __call__(self, *_):
        self.peak = max(self.peak, mapped_rss(self.path))
        self.samples += 1


def _replay(day, peak):
    books = Books()
    from itchflow.book.replay import replay

    replay(books, day, slice_bytes=1 * MiB, on_slice=peak)
    return books


def _state(books):
    """Every live order of every book, every stock's top and the anomaly counts."""
    return books.order_table().tobytes(), books.bbo().tobytes(), books.anomalies()


def test_replay_keeps_the_mapped_day_out_of_the_resident_set(day, small_runs, monkeypatch):
    peak = Peak(day)
    books = _replay(day, peak)
    size = os.path.getsize(day)
    assert peak.samples > 20
    assert peak.peak <= 4 * MiB, f"{peak.peak / MiB:.1f} MiB of a {size / MiB:.0f} MiB day resident"

    _no_release(monkeypatch)
    control = Peak(day)
    same = _replay(day, control)
    assert control.peak > 0.8 * size  # the measurement sees a mapping that is not let go
    assert books.messages == same.messages == 1_200_000
    assert books.live_orders() > 1000
    assert _state(books) == _state(same)


def _snapshots(day, peak):
    books = Books()
    apply = books.apply

    def sampled(*a, **k):
        used = apply(*a, **k)
        peak()
        return used

    books.apply = sampled
    info = reader.stats(day)
    span = info.last_timestamp_ns - info.first_timestamp_ns
    times = [info.first_timestamp_ns + span * k // 7 for k in range(1, 7)] + [info.last_timestamp_ns + 1]
    syms = sorted(Books().replay(day).symbols)[:3]
    return snapshots(books, day, times, syms, 5, slice_bytes=1 * MiB)


def test_snapshots_let_the_walked_pages_go_and_give_the_same_rows(day, small_runs, monkeypatch):
    peak = Peak(day)
    rows = _snapshots(day, peak)
    assert peak.samples > 20
    assert peak.peak <= 4 * MiB
    _no_release(monkeypatch)
    control = Peak(day)
    same = _snapshots(day, control)
    assert control.peak > 0.8 * os.path.getsize(day)
    assert len(rows) > 0 and rows.tobytes() == same.tobytes()
    assert len(np.unique(rows["timestamp"])) == 7


def test_stats_and_scan_let_the_framed_pages_go(day, small_runs, monkeypatch):
    monkeypatch.setattr(reader, "STATS_PIECE_MESSAGES", 20_000)
    peak = Peak(day)
    info = reader.stats(day, progress=peak)
    assert peak.samples > 20 and peak.peak <= 4 * MiB
    assert info.messages == 1_200_000

    scanned, scan_peak = 0, Peak(day)
    for piece in reader.scan(day, "AD", chunk_messages=20_000):
        scan_peak()
        scanned += piece.info.messages
    assert scanned == 1_200_000 and scan_peak.peak <= 4 * MiB

    _no_release(monkeypatch)
    monkeypatch.setattr(reader, "STATS_PIECE_MESSAGES", 1 << 62)  # and one whole pass
    control = Peak(day)
    assert reader.stats(day, progress=control).to_dict() | {"seconds": 0} == info.to_dict() | {"seconds": 0}
    assert control.peak > 0.8 * os.path.getsize(day)


def test_the_dask_split_lets_the_split_pages_go_and_writes_the_same_shards(day, small_runs, monkeypatch, tmp_path):
    import itchflow.wire.shard as S
    from itchflow.scale import split
    from itchflow.scale.jobs import BROADCAST_TYPES

    def run(root, peak):
        for name, real in (("split_by_locate", _REAL_SPLIT), ("count_by_locate", _REAL_COUNT)):
            def sampled(*a, real=real):
                peak()
                return real(*a)
            monkeypatch.setattr(S, name, sampled)  # restored when the test ends
        monkeypatch.setattr(split, "COUNT_PIECE_MESSAGES", 20_000)
        split.split_day(str(day), str(root), "d", 2, BROADCAST_TYPES, row_bytes=256 << 10)
        lay = split.Layout(str(root))
        return [open(f, "rb").read() for k in range(2) for f in (lay.shard_file("d", k), lay.seq_file("d", k))]

    peak = Peak(day)
    shards = run(tmp_path / "a", peak)
    assert peak.samples > 40 and peak.peak <= 4 * MiB
    _no_release(monkeypatch)
    control = Peak(day)
    assert run(tmp_path / "b", control) == shards
    assert control.peak > 0.8 * os.path.getsize(day)
    assert sum(len(shards[k]) for k in (0, 2)) >= os.path.getsize(day)  # every message went somewhere


def test_release_never_touches_a_buffer_that_is_not_a_file_mapping():
    data = np.frombuffer(bytearray(b"\x00\x01" * (4 * MiB)), np.uint8)
    c = Chunk(data, 1, "buf", 0)
    c.release(len(data), final=True)  # an anonymous buffer: DONTNEED would zero it
    assert data[:4].tolist() == [0, 1, 0, 1] and int(data.sum()) == 4 * MiB


def _record_reader_rss(monkeypatch, path, log, release: bool):
    """Make Chunk.release (run in the forked reader process) append the process's resident
    bytes of path to log before letting pages go (or instead of it, release=False)."""
    real = Chunk.release

    def recording(self, upto, final=False):
        with open(log, "a") as f:
            f.write(f"{mapped_rss(path)}\n")
        if release:
            real(self, upto, final=final)

    monkeypatch.setattr(Chunk, "release", recording)


def _read_log(log) -> list[int]:
    with open(log) as f:
        return [int(line) for line in f]


def test_the_pipeline_reader_lets_the_published_pages_go(day, small_runs, monkeypatch, tmp_path):
    """`itchflow run`'s reader process publishes a mapped day a window at a time and lets each
    window's pages go: the same books as a direct replay, its resident pages of the day bounded."""
    from itchflow.pipeline import run_pipeline
    from itchflow.pipeline import sources

    monkeypatch.setattr(sources, "PUBLISH_WINDOW_BYTES", 1 * MiB)  # the reader is forked: it sees this
    direct = Books().replay(day)
    books, log = Books(), tmp_path / "reader.rss"
    _record_reader_rss(monkeypatch, day, log, release=True)
    r = run_pipeline(str(day), books=books)
    assert r.messages == direct.messages and r.sequence_gaps == r.sequence_repeats == 0
    assert books.order_table().tobytes() == direct.order_table().tobytes()
    assert books.bbo().tobytes() == direct.bbo().tobytes()
    rss = _read_log(log)  # one line a published window, taken before its pages go
    assert len(rss) >= os.path.getsize(day) // (2 * MiB) and max(rss) <= 6 * MiB, (len(rss), max(rss))

    control = tmp_path / "control.rss"
    _record_reader_rss(monkeypatch, day, control, release=False)
    run_pipeline(str(day), books=Books())
    assert max(_read_log(control)) > 0.8 * os.path.getsize(day)  # what the reader holds without it


def test_the_decode_job_lets_the_shard_sidecar_pages_go(day, small_runs, monkeypatch, tmp_path):
    """A shard's sequence sidecar (8 bytes a message) is mapped as the decode job renumbers its
    rows piece by piece: its pages below each piece go, and the Parquet is the same."""
    import pyarrow.parquet as pq

    from itchflow.scale import jobs, split

    split.split_day(str(day), str(tmp_path), "d", 2, jobs.BROADCAST_TYPES)
    lay = split.Layout(str(tmp_path))
    shard, seq = lay.shard_file("d", 1), lay.seq_file("d", 1)
    assert os.path.getsize(seq) > 3 * MiB
    real = jobs.SeqMap.__call__

    def run(out, peak):
        def sampled(self, s):
            mapped = real(self, s)
            peak()
            return mapped
        monkeypatch.setattr(jobs.SeqMap, "__call__", sampled)
        _, opts = jobs.job_options("decode", None, {"types": "AFEXDU", "chunk": 20_000})
        jobs.run_job("decode", shard, str(out), None, opts, seq_path=seq, shard=1)
        return pq.read_table(out)

    peak = Peak(seq)
    table = run(tmp_path / "a.parquet", peak)
    assert peak.samples > 100 and peak.peak <= 2 * MiB, peak.peak
    monkeypatch.setattr(chunk_mod.WalkedPages, "release", lambda self, upto, final=False: None)
    control = Peak(seq)
    assert run(tmp_path / "b.parquet", control).equals(table)
    assert control.peak > 0.8 * os.path.getsize(seq)
    renumbered = table["sequence"].to_numpy()
    assert len(renumbered) > 400_000 and renumbered.max() > 1_000_000  # the day's numbers, not the shard's


def test_a_cut_sidecar_is_a_clear_error(tmp_path):
    from itchflow.scale.jobs import SeqMap

    path = tmp_path / "shard-0.seq"
    path.write_bytes(b"\x01" * 12)  # a sidecar cut mid-number: not silently shortened
    with pytest.raises(ValueError, match=r"12 bytes is not a whole number of 8-byte sequence numbers"):
        SeqMap(str(path))
    path.write_bytes((7).to_bytes(8, "little") * 3)
    assert SeqMap(str(path))(np.array([1, 3], np.uint64)).tolist() == [7, 7]


@pytest.fixture(scope="module")
def capture(day, tmp_path_factory):
    """The day as a pcap of MoldUDP64 packets (about 37 MB), two of them swapped and one
    repeated late."""
    import struct

    import itch_reference as ref
    from itchflow.protocol.mold.feed import MoldFeed
    from itchflow.sources.chunk import map_file

    feed = MoldFeed(map_file(day), b"RELEASE", 1400)
    path = tmp_path_factory.mktemp("capture") / "day.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        order = list(range(feed.n_packets))
        order[100], order[101] = order[101], order[100]          # two packets swapped
        order.insert(500, 400)                                    # a late repeat of packet 400
        for k, i in enumerate(order):
            frame = ref.eth_ipv4_udp(feed.packet_bytes(i))
            f.write(struct.pack("<IIII", 1_700_000_000, k, len(frame), len(frame)) + frame)
    return path


def test_a_capture_is_read_with_its_walked_pages_let_go(capture, small_runs, monkeypatch):
    """Each pass over a capture's mapping (its packet table, its index, the copy-out of its
    stream) lets the pages it has passed go, so replaying a capture keeps a few MiB of it
    resident, not the whole file; the books are the same without the release."""
    import itchflow.protocol.mold.capture as capture_mod
    import itchflow.wire.pcap as pcap_mod

    monkeypatch.setattr(pcap_mod, "TABLE_BATCH", 1024)     # passes of ~1.4 MB, as 1 MiB runs go
    monkeypatch.setattr(capture_mod, "INDEX_BATCH", 1024)
    monkeypatch.setattr(capture_mod, "PIECE_BYTES", 1 * MiB)
    real = chunk_mod.WalkedPages.release

    def run(peak, release=True):
        def sampled(self, upto, final=False):
            peak()   # before letting go: the most this pass has resident
            if release:
                real(self, upto, final=final)
        monkeypatch.setattr(chunk_mod.WalkedPages, "release", sampled)
        books = Books()
        from itchflow.book.replay import replay

        capture_stats: dict = {}
        replay(books, str(capture), slice_bytes=1 * MiB, on_slice=peak, capture_stats=capture_stats)
        return books, capture_stats

    peak = Peak(capture)
    books, stats = run(peak)
    size = os.path.getsize(capture)
    assert peak.samples > 60
    assert peak.peak <= 6 * MiB, f"{peak.peak / MiB:.1f} MiB of a {size / MiB:.0f} MiB capture resident"
    control = Peak(capture)
    same, same_stats = run(control, release=False)
    assert control.peak > 0.8 * size  # the measurement sees a mapping that is not let go
    assert books.messages == same.messages == 1_200_000
    assert stats == same_stats and stats["duplicate_messages"] > 0 and stats["gaps"] == 0
    assert _state(books) == _state(same)
