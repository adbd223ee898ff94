"""A capture's stream is planned once and copied out in bounded pieces.

A capture is put in (session, sequence) order as a whole, but its stream is never held whole:
``MoldCapture.pieces`` copies it out a piece at a time (``capture.PIECE_BYTES``), and a capture
that is not a file (gzipped, piped) is kept in an unnamed temporary file, not in memory. Here:
pieces of any size make the same stream as a slow model of the capture, with the right first
sequence number, session and packet for each; real captures read the same in one-byte pieces;
and reading a 60 MB capture (plain, gzipped, piped) allocates a fraction of its stream.
"""

from __future__ import annotations

import gzip
import os
import struct
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import itch_reference as ref
from peak_memory import peak_allocated
import itchflow
import itchflow.protocol.mold.capture as capture_module
from itchflow.sources.files import iter_chunks

FRAME_HEAD = 14 + 20 + 8      # Ethernet, IPv4, UDP (itch_reference.eth_ipv4_udp)
MOLD_HEAD = 20


def _msg(session: int, seq: int) -> bytes:
    """The message a feed sends at a sequence number of a session (its content names both)."""
    return ref.encode_body("D", {"order_reference_number": seq, "stock_locate": session, "timestamp": seq})


packet = st.tuples(st.integers(0, 2),      # session
                   st.integers(0, 30),     # first sequence (0: an unsequenced packet)
                   st.integers(0, 5))      # messages (0: a heartbeat)


def _capture(packets):
    """(pcap bytes, per packet: the file offset of each message block)."""
    frames, blocks, at = [], [], ref.PCAP_HEADER_SIZE
    for session, seq, n in packets:
        msgs = [_msg(session, seq + k if seq else 1000 + len(frames) * 10 + k) for k in range(n)]
        if seq == 0 and n == 0:
            msgs = [_msg(session, 999)]   # an unsequenced heartbeat is not a thing: one message
        frame = ref.eth_ipv4_udp(ref.mold_packet(b"SESS%d" % session, seq, msgs))
        q = at + ref.PCAP_RECORD_HEADER_SIZE + FRAME_HEAD + MOLD_HEAD
        offsets = []
        for m in msgs:
            offsets.append(q)
            q += 2 + len(m)
        frames.append(frame)
        blocks.append((msgs, offsets))
        at += ref.PCAP_RECORD_HEADER_SIZE + len(frame)
    return ref.pcap_file(frames), blocks


def _model(packets, blocks, dedup):
    """The stream a capture stands for, slowly: (session name, sequence, message, file offset,
    packet number) per message delivered, in order."""
    out = []
    if dedup:
        order = []                        # sessions by first appearance
        for session, _, _ in packets:
            if session not in order:
                order.append(session)
        kept = {}   # a sequence number's message comes from the packet of lowest (first sequence, arrival)
        for i in sorted(range(len(packets)), key=lambda i: (packets[i][1], i)):
            session, seq, _ = packets[i]
            if seq:
                for k, m in enumerate(blocks[i][0]):
                    kept.setdefault((order.index(session), seq + k), (m, blocks[i][1][k], i + 1))
        out = [(f"SESS{order[r]}", s, *kept[(r, s)]) for r, s in sorted(kept)]
    for i, (session, seq, _) in enumerate(packets):
        if seq == 0 or not dedup:
            out += [(f"SESS{session}", seq + k, m, blocks[i][1][k], i + 1) for k, m in enumerate(blocks[i][0])]
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=20), st.integers(1, 300), st.booleans(), st.sampled_from([1, 2, 256]))
def test_pieces_of_any_size_make_the_stream_of_a_slow_model(monkeypatch, packets, piece, dedup, fast_sessions):
    """Repeats, overlaps, reordering, heartbeats, unsequenced packets, three sessions; with
    and without de-duplication; sessions numbered by the indexing pass or (more than its
    table holds) by a sort. Every piece is at most ``piece`` bytes or one packet's, and its
    first message is the model's: same bytes, sequence number, session, file offset and
    packet number (what an error found there would name)."""
    data, blocks = _capture(packets)
    want = _model(packets, blocks, dedup)
    monkeypatch.setattr(capture_module, "PIECE_BYTES", piece)
    monkeypatch.setattr(capture_module, "FAST_SESSIONS", fast_sessions)
    chunks = list(iter_chunks(np.frombuffer(data, np.uint8), dedup=dedup))
    largest = max(sum(2 + len(m) for m in msgs) for msgs, _ in blocks)
    got, at = b"", 0
    for c in chunks:
        assert 0 < len(c.data) <= max(piece, largest)
        session, seq, message, offset, number = want[at]
        assert (c.session, c.first_sequence, c.where(0)) == (session, seq, (offset, number))
        assert bytes(c.data[2:2 + len(message)]) == message
        got += c.data.tobytes()
        at += len(ref.walk(c.data.tobytes())[0])
    assert got == b"".join(struct.pack(">H", len(m)) + m for _, _, m, _, _ in want)
    first_seen = list(dict.fromkeys(f"SESS{session}" for session, _, _ in packets))
    capture: dict = {}
    list(iter_chunks(np.frombuffer(data, np.uint8), dedup=dedup, capture_stats=capture))
    assert capture["sessions"] == first_seen


def test_real_captures_scan_in_pieces_of_one_byte_as_read_does(monkeypatch, all_captures):
    """One packet a piece (every piece is one packet's messages) for scan, against read (which
    asks for whole runs: what it decodes is kept anyway) and against the planned stream."""
    monkeypatch.setattr(capture_module, "PIECE_BYTES", 1)
    for path in all_captures:
        whole = itchflow.read(path)
        capture: dict = {}
        parts = list(itchflow.scan(path, capture_stats=capture))
        assert capture == whole.info.capture, path
        for code in whole.counts:
            assert np.array_equal(np.concatenate([p[code] for p in parts]), whole[code]), (path, code)
        runs = list(iter_chunks(path, piece_bytes=1 << 62))
        pieces = list(iter_chunks(path))
        assert b"".join(c.data.tobytes() for c in pieces) == b"".join(c.data.tobytes() for c in runs), path
        # one piece a packet: each names a packet of its own
        assert len(pieces) >= len(runs) and len({c.where(0)[1] for c in pieces}) == len(pieces), path


def test_the_index_taken_with_the_walk_part_by_part_is_the_index_of_one_pass(monkeypatch):
    """A capture read from a file is indexed part by part as its packet table is walked (the
    pages still mapped in), sessions carried from one part to the next; with parts of 1,024
    packets, three sessions taking turns and unsequenced packets among them, the stream, every
    piece's first number and session, and the counters equal planning from the whole table
    in one pass."""
    import itchflow.wire.pcap as pcap
    from itchflow.protocol.mold.capture import reassemble
    from itchflow.wire.pcap import packet_table

    packets = [(i % 3, 0 if i % 7 == 0 else 1 + 2 * (i // 3), 2) for i in range(5000)]
    data, _ = _capture(packets)
    buf = np.frombuffer(data, np.uint8)
    whole = reassemble(buf, packet_table(buf, "one pass"), "one pass")
    monkeypatch.setattr(pcap, "TABLE_BATCH", 1024)
    parts: list[int] = []
    real = capture_module.packet_parts
    monkeypatch.setattr(capture_module, "packet_parts", lambda *a, **k: (
        parts.append(len(part.outcome)) or part for part in real(*a, **k)))
    capture: dict = {}
    chunks = list(iter_chunks(buf, capture_stats=capture))
    assert len(parts) == 5 and sum(parts) == 5000
    assert capture == whole.stats.to_dict() and whole.stats.sessions == ["SESS0", "SESS1", "SESS2"]
    assert [(c.data.tobytes(), c.first_sequence, c.session) for c in chunks] == [
        (p.data.tobytes(), p.first_sequence, p.session) for p in whole.pieces()]


def _write_capture(folder, messages: int):
    """A generated day of this many messages as a pcap of MoldUDP64 packets: (path, stream
    bytes)."""
    from itchflow.protocol.mold.feed import MoldFeed
    from itchflow.sim.generator import write_day
    from itchflow.sources.chunk import map_file

    day = folder / f"day{messages}.itch"
    write_day(day, messages, seed=5)
    feed = MoldFeed(map_file(day), b"BIGDAY", 1400)
    path = folder / f"day{messages}.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(feed.n_packets):
            frame = ref.eth_ipv4_udp(feed.packet_bytes(i))
            f.write(struct.pack("<IIII", 1_700_000_000, i, len(frame), len(frame)) + frame)
    assert feed.messages == messages
    return path, os.path.getsize(day)


@pytest.fixture(scope="module")
def two_captures(tmp_path_factory):
    """Captures of a 1 M- and a 2 M-message day (about 32 and 64 MB)."""
    folder = tmp_path_factory.mktemp("capture")
    return [(*_write_capture(folder, n), n) for n in (1_000_000, 2_000_000)]


def _source(path, form: str, folder) -> str:
    """The capture at path as a file, gzipped, or through a FIFO fed by a thread."""
    if form == "gzip":
        source = str(folder / (path.name + ".gz"))
        with open(path, "rb") as f, gzip.open(source, "wb", compresslevel=1) as g:
            while block := f.read(1 << 20):
                g.write(block)
        return source
    if form == "pipe":
        source = str(folder / (path.name + ".fifo"))
        os.mkfifo(source)

        def feed():
            with open(path, "rb") as f, open(source, "wb") as w:
                while block := f.read(1 << 20):
                    w.write(block)
        threading.Thread(target=feed, daemon=True).start()
        return source
    return str(path)


@pytest.mark.parametrize("form", ["pcap", "gzip", "pipe"])
def test_a_capture_is_read_without_a_copy_of_its_stream(tmp_path, two_captures, form):
    """stats of a capture as a file, gzipped and through a FIFO, for a day and one twice its
    size: the same counts as the day, and what is allocated at once grows by under a quarter
    of what the stream grows by (the packet index; before, the whole stream was copied into
    one array, and a gzipped or piped capture was read whole into memory besides)."""
    peaks, streams = [], []
    for path, stream_bytes, messages in two_captures:
        stats, peak = peak_allocated(lambda: itchflow.stats(_source(path, form, tmp_path)))
        assert stats.messages == messages and stats.bytes == stream_bytes
        assert stats.capture["messages"] == messages and stats.capture["gaps"] == 0
        peaks.append(peak)
        streams.append(stream_bytes)
    grew = peaks[1] - peaks[0]
    assert grew < (streams[1] - streams[0]) / 4, f"allocated at once: {peaks} bytes for streams of {streams} bytes"
    assert peaks[1] < streams[1] / 2


def test_a_capture_that_cannot_be_kept_on_disk_names_it_and_tmpdir(tmp_path, monkeypatch):
    """A gzipped capture needs room in a temporary file: where there is none, the error says
    which capture, which directory, and what to set."""
    import tempfile

    data, _ = _capture([(0, 1, 3)])
    source = tmp_path / "small.pcap.gz"
    source.write_bytes(gzip.compress(data))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(OSError) as e:
        itchflow.stats(str(source))
    assert str(source) in str(e.value) and str(tmp_path / "missing") in str(e.value) and "TMPDIR" in str(e.value)


@pytest.mark.parametrize("command", [["decode", "--types", "AF"], ["bbo"], ["trades"]])
def test_no_room_for_the_capture_is_not_blamed_on_the_output(tmp_path, monkeypatch, command):
    """Probe 57: decode, bbo and trades renamed the temporary file's error to their output
    ("No space left on device: 'out.parquet'", on a disk with gigabytes free)."""
    import tempfile

    from click.testing import CliRunner

    from itchflow.cli import main

    data, _ = _capture([(0, 1, 3)])
    source = tmp_path / "small.pcap.gz"
    source.write_bytes(gzip.compress(data))
    out = tmp_path / "out.parquet"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    r = CliRunner().invoke(main, [command[0], str(source), *command[1:], "--out", str(out)])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert f"{source}" in r.output and "TMPDIR" in r.output and str(tmp_path / "missing") in r.output, r.output
    assert "out.parquet" not in r.output and list(tmp_path.iterdir()) == [source]


def test_no_usable_temporary_folder_at_all_still_says_what_to_set(tmp_path, monkeypatch):
    """Probe 57: with no usable temporary folder, the message's own gettempdir() raised again and
    the user saw "No usable temporary directory found", not which capture or what to set."""
    import tempfile

    data, _ = _capture([(0, 1, 3)])
    source = tmp_path / "small.pcap.gz"
    source.write_bytes(gzip.compress(data))

    def none_usable():
        raise FileNotFoundError(2, "No usable temporary directory found in ['/tmp', '/var/tmp']")

    monkeypatch.setattr(tempfile, "gettempdir", none_usable)
    with pytest.raises(OSError) as e:
        itchflow.stats(str(source))
    assert str(source) in str(e.value) and "no temporary folder could be used" in str(e.value)
    assert "set TMPDIR" in str(e.value)


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_capture_behind_a_url_reads_as_the_capture_file(tmp_path, all_captures, gzipped):
    """A capture (or a gzipped one) behind an fsspec URL, as an archive on S3 would be: the
    same messages, sequence numbers and sessions as the local file, and the same stats job
    (before, a URL was framed as raw ITCH whatever it held, and a capture's pcap header made
    it stop at byte 0)."""
    import fsspec

    from itchflow.scale.inputs import iter_day
    from itchflow.scale.jobs import run_stats

    fs = fsspec.filesystem("memory")
    for path in all_captures:
        raw = path.read_bytes()
        local = tmp_path / (path.name + (".gz" if gzipped else ""))
        local.write_bytes(gzip.compress(raw) if gzipped else raw)
        url = f"memory://itchflow-capture-test/{local.name}"
        fs.pipe(url, local.read_bytes())
        try:
            want = [(c.data.tobytes(), c.first_sequence, c.session) for c in iter_day(str(local))]
            got = [(c.data.tobytes(), c.first_sequence, c.session) for c in iter_day(url)]
            assert got == want and want, path
            a = run_stats(str(local), str(tmp_path / "a.parquet"))
            b = run_stats(url, str(tmp_path / "b.parquet"))
            assert a["info"] == b["info"] and a["by_type"] == b["by_type"], path
        finally:
            fs.rm(url)


def test_a_capture_stream_that_fails_midway_is_an_error_naming_it_and_the_offset():
    """A piped or remote capture whose stream fails while it is being kept (a dropped
    connection): an ITCHFormatError naming the source and how far it got, not the stream's
    own error without either."""
    from itchflow.errors import ITCHFormatError
    from itchflow.sources.files import stream_chunks

    data, _ = _capture([(0, 1, 3), (0, 4, 2)])

    class Dropped:
        def __init__(self):
            self.at = 0

        def read(self, n=-1):
            if self.at >= 100:
                raise ConnectionResetError(104, "Connection reset by peer")
            n = min(n if n and n > 0 else 100, 100 - self.at)
            self.at += n
            return data[self.at - n:self.at]

    with pytest.raises(ITCHFormatError) as e:
        list(stream_chunks(Dropped(), "s3://bucket/day.pcap", block=40))
    assert e.value.source == "s3://bucket/day.pcap" and e.value.offset == 100
    assert "Connection reset by peer" in str(e.value) and "no message" in str(e.value)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=20), st.integers(1, 300), st.booleans())
def test_joined_runs_number_every_message_as_the_slow_model_does(monkeypatch, packets, piece, dedup):
    """iter_chunks(join_runs=True): consecutive runs of one session (an unsequenced packet, or
    with dedup=False every packet, is a run of its own) make one chunk of at most ``piece``
    bytes (or one run), and ``Chunk.sequence_numbers`` gives every message the number the
    slow model gives it (its packet's plus its place there); the stream is the same as run by
    run, and each chunk's messages are all of its session."""
    data, blocks = _capture(packets)
    want = _model(packets, blocks, dedup)
    monkeypatch.setattr(capture_module, "PIECE_BYTES", piece)
    buf = np.frombuffer(data, np.uint8)
    chunks = list(iter_chunks(buf, dedup=dedup, join_runs=True))
    alone = list(iter_chunks(buf, dedup=dedup))
    assert b"".join(c.data.tobytes() for c in chunks) == b"".join(c.data.tobytes() for c in alone)
    assert len(chunks) <= len(alone)
    largest_run = max((len(c.data) for c in iter_chunks(buf, dedup=dedup, piece_bytes=1 << 62)), default=0)
    at = 0
    for c in chunks:
        assert 0 < len(c.data) <= max(piece, largest_run)
        n = len(ref.walk(c.data.tobytes())[0])
        numbers = c.sequence_numbers(np.arange(n)).tolist()
        assert numbers == [s for _, s, _, _, _ in want[at:at + n]]
        assert {session for session, _, _, _, _ in want[at:at + n]} == {c.session}
        assert c.where(0) == want[at][3:]
        at += n
    assert at == len(want)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=20), st.integers(1, 300))
def test_the_ring_numbers_a_capture_as_one_stream(monkeypatch, packets, piece):
    """What ``itchflow run`` publishes of a capture's joined chunks (``numbered_parts``): each
    message of a sequenced packet its own number (a hole stays a hole), and each message of an
    unsequenced one (no number of its own) the number after the message before it, so that
    the ring's consumer sees no repeat where the capture has none."""
    from itchflow.pipeline.sources import numbered_parts

    data, blocks = _capture(packets)
    monkeypatch.setattr(capture_module, "PIECE_BYTES", piece)
    want, last = [], 0
    for session, seq, message, _, number in _model(packets, blocks, True):
        last = seq if packets[number - 1][1] else last + 1
        want.append((message, last))
    got, following = [], 1
    for c in iter_chunks(np.frombuffer(data, np.uint8), join_runs=True):
        for start, end, seq in numbered_parts(c):
            seq = following if seq is None else seq
            part = c.data[start:end].tobytes()
            messages = [part[body:body + n] for _, body, n in ref.walk(part)[0]]
            got += [(m, seq + k) for k, m in enumerate(messages)]
            following = seq + len(messages)
    assert got == want


def _mixed_capture(packets, seed: int) -> bytes:
    """A capture of these (session, first sequence, messages) packets carrying random messages
    of every type and unknown types (an unsequenced packet at least one)."""
    bodies = [bytes(m) for m in _bodies(ref.random_stream(120, seed, unknown_rate=0.1))]
    frames, at = [], 0
    for session, seq, n in packets:
        n = max(n, 1) if seq == 0 else n
        msgs, at = bodies[at:at + n], (at + n) % 100
        frames.append(ref.eth_ipv4_udp(ref.mold_packet(b"SESS%d" % session, seq, msgs)))
    return ref.pcap_file(frames)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=25), st.booleans(), st.integers(0, 2**16), st.sampled_from([1, 300]))
def test_read_and_scan_number_joined_runs_as_each_run_alone(monkeypatch, packets, dedup, seed, piece):
    """read and scan take a capture's runs joined: every array, every field (the sequence
    numbers above all) equals decoding each run alone from its own first sequence number.
    Random messages of every type and unknown types."""
    from itchflow.decode.decoder import FrameTotals, decode_range, frame_range
    from itchflow.hw.join import join
    from itchflow.wire.itch import CODES, DTYPES

    data = _mixed_capture(packets, seed)
    buf = np.frombuffer(data, np.uint8)
    parts = []
    for c in iter_chunks(buf, dedup=dedup, piece_bytes=1 << 62):   # run by run, as before joining
        totals = FrameTotals()
        end, _ = frame_range(c.data, 0, len(c.data), totals)
        parts.append(decode_range(c.data, 0, end, c.first_sequence, totals.counts, CODES))
    want = {c: join([p[c] for p in parts], DTYPES[c]) for c in CODES}
    monkeypatch.setattr(capture_module, "PIECE_BYTES", piece)
    got = itchflow.read(data, dedup=dedup)
    scanned = list(itchflow.scan(data, chunk_messages=3)) if dedup else []
    for code, arr in want.items():
        _assert_rows_equal(got[code], arr, code)
        if dedup:
            _assert_rows_equal(join([p[code] for p in scanned], arr.dtype), arr, code)


def _assert_rows_equal(got: np.ndarray, want: np.ndarray, code: str) -> None:
    """Same dtype, and every field of every row equal (padding bytes are no field)."""
    assert got.dtype == want.dtype, code
    for name in want.dtype.names:
        assert np.array_equal(got[name], want[name]), (code, name, got[name], want[name])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=25), st.integers(0, 2**16), st.sampled_from([1, 300]),
       st.sampled_from([0, 40]), st.sampled_from([1, 2]))
def test_books_number_the_events_of_joined_runs_as_run_by_run(monkeypatch, packets, seed, piece, slice_bytes,
                                                              threads):
    """replay takes a capture's runs joined (slices of slice_bytes cut them anywhere): every
    event (bbo, trades, l2) of one thread and of two equals applying each run alone from its
    own first sequence number, as replay did before joining, in the same order; so does
    next_sequence at the end."""
    from itchflow.book.books import Books
    from itchflow.book.replay import replay

    data = _mixed_capture(packets, seed)

    def events(books):
        return [e.view(np.ndarray).tobytes() for e in books.take_events()]

    run_by_run = Books(threads=threads)
    run_by_run.record(l2=True)
    for c in iter_chunks(np.frombuffer(data, np.uint8)):
        run_by_run.apply(c.data, c.first_sequence)
    monkeypatch.setattr(capture_module, "PIECE_BYTES", piece)
    joined = Books(threads=threads)
    joined.record(l2=True)
    replay(joined, data, slice_bytes=slice_bytes)
    try:
        assert events(joined) == events(run_by_run)
        assert joined.next_sequence == run_by_run.next_sequence and joined.messages == run_by_run.messages
    finally:
        for books in (joined, run_by_run):
            getattr(books, "close", lambda: None)()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=25), st.integers(0, 2**16), st.sampled_from([1, 300]))
def test_a_split_day_numbers_joined_runs_as_run_by_run(monkeypatch, tmp_path_factory, packets, seed, piece):
    """The Dask split takes a capture's runs joined: every shard file and every shard's
    sequence numbers equal splitting it run by run (as before joining)."""
    import itchflow.scale.split as split
    from itchflow.scale.inputs import iter_day

    root = tmp_path_factory.mktemp("split")
    path = root / "day.pcap"
    path.write_bytes(_mixed_capture(packets, seed))
    monkeypatch.setattr(capture_module, "PIECE_BYTES", piece)
    joined = split.split_day(str(path), str(root / "joined"), "d", 3, "SR", row_bytes=1 << 17)
    with monkeypatch.context() as m:   # (hypothesis runs every example with the one monkeypatch)
        m.setattr(split, "iter_day", lambda source, capture_stats=None, join_runs=False:
                  iter_day(source, capture_stats))
        alone = split.split_day(str(path), str(root / "alone"), "d", 3, "SR", row_bytes=1 << 17)
    joined.pop("seconds"), alone.pop("seconds")
    assert joined == alone
    for k in range(3):
        for ext in ("itch", "seq"):
            a, b = (root / which / "_itchflow" for which in ("joined", "alone"))
            files = sorted(a.rglob(f"shard-{k}.{ext}")), sorted(b.rglob(f"shard-{k}.{ext}"))
            assert len(files[0]) == len(files[1]) == 1
            assert files[0][0].read_bytes() == files[1][0].read_bytes(), (k, ext)


def _bodies(stream: bytes) -> list[bytes]:
    return [stream[body:body + n] for _, body, n in ref.walk(stream)[0]]


def test_a_planned_capture_still_gives_its_whole_stream_and_runs(all_captures):
    """MoldCapture.data and .runs() (the sans-I/O layer's whole-stream view, as before the
    pieces): the pieces joined, and runs that cover the stream with their first sequences."""
    from itchflow.protocol.mold.capture import reassemble
    from itchflow.sources.chunk import map_file
    from itchflow.wire.pcap import packet_table

    for path in all_captures:
        buf = map_file(path)
        cap = reassemble(buf, packet_table(buf, str(path)), str(path))
        pieces = list(cap.pieces(1))
        assert cap.data.tobytes() == b"".join(p.data.tobytes() for p in pieces), path
        runs = list(cap.runs())
        assert runs[0][0] == 0 and runs[-1][1] == cap.size == len(cap.data)
        assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
        starts = {p.offset: (p.first_sequence, p.session) for p in pieces}
        assert all(starts[a] == (s, k) for a, _, s, k in runs), path
        # joined, a piece's runs are the runs it covers
        for p in cap.pieces(1 << 20, join_runs=True):
            inside = [(a, s) for a, b, s, _ in runs if p.offset <= a < p.offset + len(p.data)]
            if p.runs is None:
                assert len(inside) <= 1 and (not inside or inside[0] == (p.offset, p.first_sequence)), path
            else:
                assert p.runs.sequence.tolist() == [s for _, s in inside] and p.offset == inside[0][0], path


# ---- a large capture in file order is planned a part at a time (``plan_capture``) ----------

def _two_lines(sessions, lag: int, with_b: bool, swap: int | None):
    """Packets (session, first sequence, messages; 0 messages: a heartbeat) as a feed's A and
    B lines deliver them: per session, the packets of `counts` numbered from 1, those marked
    lost (1) missing on both lines (holes), those marked 2 missing on A only (B's copy fills
    in, late), a heartbeat after those marked so (announcing the next number sent), B's copies
    each `lag` packets after A's; sessions one after the other. swap: A's data packets at that
    place and the next change places (arrival out of order)."""
    out = []
    for session, (counts, lost, beats) in enumerate(sessions):
        a, b, seq = [], [], 1
        for n, gone, beat in zip(counts, lost, beats):
            if gone != 1:
                b.append((session, seq, n))
            if gone == 0:
                a.append((session, seq, n))
            seq += n
            if beat:
                a.append((session, seq, 0))
        if swap is not None:
            data = [k for k, p in enumerate(a) if p[2]]
            if len(data) >= 2:
                i, j = data[swap % (len(data) - 1)], data[swap % (len(data) - 1) + 1]
                a[i], a[j] = a[j], a[i]
        merged = []
        for k, p in enumerate(a):
            merged.append(p)
            if with_b and k >= lag and k - lag < len(b):
                merged.append(b[k - lag])
        if with_b:
            merged += b[max(0, len(a) - lag):]
        out += merged
    return out


def _read_capture(buf, dedup: bool = True, join_runs: bool = False):
    """(CaptureSource, per message: (session, number, bytes, file offset, packet number), stats)."""
    from itchflow.sources.files import CaptureSource

    source = CaptureSource(buf, "capture.pcap", dedup=dedup, join_runs=join_runs)
    for plan, _ in source.plan.parts():   # each part's plan covers its stream: runs, then segments
        runs, segments = plan.run_offset.tolist(), plan.segment_out.tolist()
        assert (runs[:1] == segments[:1] == [0] or plan.size == 0) and segments[-1] == plan.size
        assert runs == sorted(set(runs)) and set(runs) <= set(segments[:-1]) and segments == sorted(segments)
    got = []
    for c in source.chunks():
        stream = c.data.tobytes()
        walked = ref.walk(stream)[0]
        numbers = c.sequence_numbers(np.arange(len(walked))).tolist()
        for (prefix, body, n), number in zip(walked, numbers):
            got.append((c.session, number, stream[body:body + n], *c.where(prefix)))
    return source, got, source.stats.to_dict()


session_packets = st.integers(1, 25).flatmap(lambda n: st.tuples(
    st.lists(st.integers(1, 4), min_size=n, max_size=n),
    st.lists(st.sampled_from([0, 0, 0, 1, 2]), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(session_packets, min_size=1, max_size=2), st.integers(0, 5), st.booleans(),
       st.one_of(st.none(), st.integers(0, 100)), st.integers(1, 7), st.integers(1, 300), st.booleans(),
       st.sampled_from([0, 1, 3, 8, 100]))
def test_a_capture_in_file_order_planned_a_part_at_a_time_is_the_sorted_capture(
        monkeypatch, sessions, lag, with_b, swap, part, piece, join_runs, window):
    """A and B lines (B's copies arriving up to five packets late), holes lost on both, packets
    lost on A that B's late copy fills, heartbeats, two sessions: planned a part of `part`
    packets at a time (every capture past STREAM_PACKETS), sorted within a window of `window`
    packets, without a table or a plan of the whole, each message is the one the slow model and
    the capture planned whole give, with the same number, session, file offset and packet, and
    the counters are the same. In file order (no window, a packet a part) without swaps or fills
    it is planned in parts; with a window longer than the capture, always; otherwise it may be
    planned whole, and reads the same."""
    import itchflow.wire.pcap as pcap

    packets = _two_lines(sessions, lag, with_b, swap)
    if not any(n for _, _, n in packets):
        return
    data, blocks = _capture(packets)
    buf = np.frombuffer(data, np.uint8)
    want = [(s, q, m, o, p) for s, q, m, o, p in _model(packets, blocks, True)]
    monkeypatch.setattr(capture_module, "PIECE_BYTES", piece)
    monkeypatch.setattr(pcap, "TABLE_BATCH", part)
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 1 << 40)
    whole_source, whole, whole_stats = _read_capture(buf, join_runs=join_runs)
    assert whole_source.plan.whole is not None
    assert whole == want
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 0)
    monkeypatch.setattr(capture_module, "STREAM_WINDOW", window)
    source, got, stats = _read_capture(buf, join_runs=join_runs)
    assert got == want and stats == whole_stats
    fills = any(2 in lost for _, lost, _ in sessions) and with_b
    if window >= len(packets) or (swap is None and not fills and window == 0 and part == 1):
        assert source.plan.whole is None   # planned a part at a time


@pytest.mark.parametrize("packets, why", [
    ([(0, 1, 2), (0, 5, 1), (0, 3, 2), (0, 6, 1)], "a packet fills a hole counted before it"),
    ([(0, 3, 2), (0, 1, 2), (0, 5, 1)], "a packet before the session's first number"),
    ([(0, 3, 2), (0, 1, 0), (0, 5, 1)], "a heartbeat before the session's first number"),
    ([(0, 1, 2), (1, 1, 2), (0, 3, 1)], "a session seen again after another"),
    ([(0, 1, 2), (0, 0, 1), (0, 3, 1)], "a sequenced packet after an unsequenced one"),
])
def test_a_capture_whose_file_order_is_not_its_stream_is_planned_whole(monkeypatch, packets, why):
    """Where taking a capture's packets in file order (no window, a packet a part) would give
    another stream (or other counters) than sorting them, it is planned whole, and reads as the
    slow model says. Sorted within a window as long as the capture (unsequenced packets after
    the sequenced ones, as planned whole), each is planned in parts and reads the same."""
    import itchflow.wire.pcap as pcap

    data, blocks = _capture(packets)
    buf = np.frombuffer(data, np.uint8)
    want = _model(packets, blocks, True)
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 1 << 40)
    stats = _read_capture(buf)[2]
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 0)
    monkeypatch.setattr(pcap, "TABLE_BATCH", 1)
    for window in (0, len(packets)):
        monkeypatch.setattr(capture_module, "STREAM_WINDOW", window)
        source, got, stats_here = _read_capture(buf)
        assert got == want and stats_here == stats, (why, window)
        assert (source.plan.whole is None) == (window > 0), (why, window)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(packet, min_size=1, max_size=20), st.booleans(), st.integers(1, 5), st.booleans())
def test_any_capture_reads_the_same_planned_whole_or_a_part_at_a_time(monkeypatch, packets, dedup, part, join_runs):
    """Repeats, overlaps, reordering, heartbeats, unsequenced packets, three sessions, with and
    without de-duplication: allowed to plan a part at a time, a capture reads as planned whole
    (where its file order would give another stream, it is planned whole)."""
    import itchflow.wire.pcap as pcap

    data, _ = _capture(packets)
    buf = np.frombuffer(data, np.uint8)
    monkeypatch.setattr(pcap, "TABLE_BATCH", part)
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 1 << 40)
    _, whole, whole_stats = _read_capture(buf, dedup, join_runs)
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 0)
    source, got, stats = _read_capture(buf, dedup, join_runs)
    assert got == whole and stats == whole_stats
    if not dedup:
        assert source.plan.whole is None   # capture order is the order


@pytest.mark.parametrize("packet, sequence, window, delivered", [
    (2, 9, 4096, 3),   # a hole that was not there: the counters differ at the end
    (1, 7, 0, 2),      # (a packet a part, no window) the third then falls in a hole: not handed out
])
def test_a_capture_changed_between_its_two_walks_is_an_error_naming_it(monkeypatch, packet, sequence, window,
                                                                      delivered):
    """Planned a part at a time, a capture is walked twice: if the second walk finds other
    packets than the first (the buffer was written to in between), reading it is an error, and
    a part found out of order is not handed out."""
    import itchflow.wire.pcap as pcap
    from itchflow.errors import ITCHFormatError
    from itchflow.sources.files import CaptureSource

    data, blocks = _capture([(0, 1, 2), (0, 3, 2), (0, 5, 2)])
    buf = np.frombuffer(bytearray(data), np.uint8)
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 0)
    monkeypatch.setattr(capture_module, "STREAM_WINDOW", window)
    monkeypatch.setattr(pcap, "TABLE_BATCH", 1 if window == 0 else pcap.TABLE_BATCH)
    source = CaptureSource(buf, "changing.pcap", piece_bytes=1)
    assert source.plan.whole is None and source.stats.messages == 6
    at = blocks[packet][1][0] - MOLD_HEAD + 10          # the packet's sequence number
    buf[at:at + 8] = np.frombuffer(struct.pack(">Q", sequence), np.uint8)
    got = []
    with pytest.raises(ITCHFormatError) as e:
        for c in source.chunks():
            got.append(c)
    assert e.value.source == "changing.pcap" and "changed while it was read" in str(e.value)
    assert len(got) == delivered


@pytest.fixture(scope="module")
def small_packet_captures(tmp_path_factory):
    """Captures of a 0.5 M- and a 1 M-message day in packets of at most 120 bytes (about 180 k
    and 360 k packets): (path, packets, messages) each."""
    from itchflow.sim.captures import write_capture
    from itchflow.sim.generator import write_day

    folder = tmp_path_factory.mktemp("small-packets")
    out = []
    for n in (500_000, 1_000_000):
        day = folder / f"day{n}.itch"
        write_day(day, n, seed=7)
        path = folder / f"day{n}.pcap"
        written = write_capture(day, path, payload_bytes=120)
        out.append((path, written["packets"], n))
    return out


def test_a_large_capture_in_order_is_planned_in_memory_that_does_not_grow_with_it(monkeypatch,
                                                                                small_packet_captures):
    """stats of a capture twice the size of another (twice the packets) allocates no more at its
    peak when planned a part at a time (STREAM_PACKETS below both), where planned whole the
    peak grows by tens of bytes a packet: its table, index and plan."""
    peaks = {}
    for limit in (1 << 40, 1000):
        monkeypatch.setattr(capture_module, "STREAM_PACKETS", limit)
        for path, packets, messages in small_packet_captures:
            stats, peak = peak_allocated(lambda: itchflow.stats(path))
            assert stats.messages == messages and stats.capture["gaps"] == 0
            peaks[limit, packets] = peak
    (_, small), (_, large) = [(p, n) for p, n, _ in small_packet_captures]
    whole_growth = (peaks[1 << 40, large] - peaks[1 << 40, small]) / (large - small)
    part_growth = (peaks[1000, large] - peaks[1000, small]) / (large - small)
    assert whole_growth > 30, peaks         # bytes a packet, planned whole
    print(f"peak allocated: {peaks}; bytes a packet more, planned whole {whole_growth:.1f}, a part at a time {part_growth:.2f}")
    assert part_growth < 2, peaks           # a part at a time: nothing that grows with the capture
