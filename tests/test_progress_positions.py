"""Progress is a position in the source as stored, so a bar against the file's size ends full.

The readers' progress hooks (``stats``, ``scan``, ``Books.replay`` and the sinks over it) are told
how far through the source they are (``Chunk.position``). Before, they were told the ITCH stream's
bytes: a capture's bar stopped at the share of the file its messages fill (headers are the rest),
and a gzip day had no total at all. Here, for a raw day, a gzip day, a pcap (planned whole and a
part at a time) and a gzipped pcap: positions never go back, move while the source is read, and
end at the file's size, which is the command line's total (``progress_total``).
"""

from __future__ import annotations

import gzip
import os
import shutil

import pytest

import itchflow
import itchflow.decode.reader as reader_module
import itchflow.protocol.mold.capture as capture_module
import itchflow.wire.pcap as pcap_module
from itchflow.book.books import Books
from itchflow.book.replay import replay
from itchflow.cli.progress import progress_total
from itchflow.sim.captures import write_capture
from itchflow.sim.generator import write_day

MESSAGES = 200_000


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A raw day, the same day gzipped, as a pcap of small packets, and that pcap gzipped."""
    folder = tmp_path_factory.mktemp("progress")
    day = folder / "day.itch"
    write_day(day, MESSAGES, seed=3, stocks=20)
    pcap = folder / "day.pcap"
    write_capture(day, pcap, payload_bytes=200)
    out = {"raw": day, "pcap": pcap}
    for name, path in (("gzip", day), ("pcap.gz", pcap)):
        out[name] = folder / (path.name + ".gz")
        with open(path, "rb") as f, gzip.open(out[name], "wb", compresslevel=1) as g:
            shutil.copyfileobj(f, g)
    return out


def _positions(read) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    read(lambda messages, position: seen.append((messages, position)))
    return seen


READERS = {
    "stats": lambda path, progress: itchflow.stats(path, progress=progress),
    "scan": lambda path, progress: [None for _ in itchflow.scan(path, "A", chunk_messages=20_000, progress=progress)],
    "replay": lambda path, progress: replay(Books(), path, progress=progress, slice_bytes=256 << 10),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("form", ["raw", "gzip", "pcap", "pcap in parts", "pcap.gz"])
def test_progress_ends_at_the_file_size_and_never_goes_back(monkeypatch, sources, form, reader):
    monkeypatch.setattr(reader_module, "STATS_PIECE_MESSAGES", 20_000)   # stats reports a piece at a time
    if form == "pcap in parts":   # past the limit: walked and planned a part at a time
        monkeypatch.setattr(capture_module, "STREAM_PACKETS", 0)
        monkeypatch.setattr(capture_module, "STREAM_PART_BYTES", 1 << 20)
    path = sources[form.split(" ")[0]]
    size = os.path.getsize(path)
    seen = _positions(lambda progress: READERS[reader](path, progress))
    positions = [p for _, p in seen]
    assert positions == sorted(positions), "a position went back"
    assert positions[-1] == size == progress_total(str(path))
    assert seen[-1][0] == MESSAGES
    assert len({p for p in positions if 0 < p < size}) >= 2, f"the bar did not move while {form} was read: {seen}"
    if form != "raw":   # what it said before: the stream's bytes, short of the file's size
        assert positions[-1] != os.path.getsize(sources["raw"])


def test_a_capture_s_positions_follow_its_packets(monkeypatch, sources):
    """A capture is walked to be planned, then read: each walk is half the way. Halfway through
    its messages is about three quarters of the way: its packets are all alike here, so a position
    taken in proportion is within a packet's share of the truth."""
    monkeypatch.setattr(reader_module, "STATS_PIECE_MESSAGES", 20_000)
    path = sources["pcap"]
    size = os.path.getsize(path)
    seen = _positions(lambda progress: itchflow.stats(path, progress=progress))
    for messages, position in seen:
        if messages:
            assert abs(position / size - (0.5 + 0.5 * messages / MESSAGES)) < 0.01, (messages, position)


@pytest.mark.parametrize("form, passes", [("pcap in parts", 2), ("pcap.gz", 3)])
def test_planning_a_capture_moves_the_bar_before_its_first_message(monkeypatch, sources, form, passes):
    """A day's capture is walked once to be planned (and a gzipped one decompressed to disk
    first) before its first message: seconds with nothing to show, before, for 10^8 packets. Each
    pass is told as it goes, ending at its share of the file's size."""
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 0)
    monkeypatch.setattr(capture_module, "STREAM_PART_BYTES", 1 << 20)
    monkeypatch.setattr(pcap_module, "TABLE_BATCH", 4096)   # the planning walk's parts: a few here
    path = sources[form.split(" ")[0]]
    size = os.path.getsize(path)
    seen = _positions(lambda progress: replay(Books(), path, progress=progress, slice_bytes=256 << 10))
    before = [p for m, p in seen if m == 0]
    assert len(before) >= 2 * (passes - 1), f"the passes before the first message were not told: {seen}"
    assert before[-1] == (passes - 1) * size // passes   # planned: all but the reading's share
    assert [p for _, p in seen] == sorted(p for _, p in seen) and seen[-1] == (MESSAGES, size)


def test_the_ring_s_consumer_counts_stream_bytes_so_its_total_is_the_raw_size_only(sources):
    """``run`` is told the bytes the ring carried: the file's size is its total for a raw day
    only; for a gzip day or a capture it has none, where it would never be reached."""
    assert progress_total(str(sources["raw"]), stream_bytes=True) == os.path.getsize(sources["raw"])
    for form in ("gzip", "pcap", "pcap.gz"):
        assert progress_total(str(sources[form]), stream_bytes=True) is None
        assert progress_total(str(sources[form])) == os.path.getsize(sources[form])


def test_decode_to_a_table_reports_positions_too(tmp_path, sources):
    from itchflow.sinks.tables import TableWriter

    seen = []
    with TableWriter(str(tmp_path / "adds.parquet"), "A") as writer:
        for _ in writer.pieces(str(sources["pcap.gz"]), chunk_messages=50_000,
                               progress=lambda m, p: seen.append((m, p))):
            pass
    size = os.path.getsize(sources["pcap.gz"])
    assert [m for m, _ in seen if m] == [50_000, 100_000, 150_000, 200_000]
    assert [p for m, p in seen if not m][-1] == 2 * size // 3   # decompressed and planned: 2 passes of 3
    assert seen[-1][1] == size
