"""Ring file format, wrap handling and the single-process API, against hand-worked bytes and a
slow reference model of the record layout written here."""

from __future__ import annotations

import os
import struct
import time
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.ring import Ring, RingFormatError
from itchflow.ring import layout as L

CAP = 4096


@pytest.fixture
def path(ring_path):
    return ring_path


def raw_headers(ring: Ring) -> list[tuple[int, int, int]]:
    """(offset, length, type) of every header in the data region, parsed with struct, walking
    from offset 0 until a zero header (only valid on a ring that has not wrapped yet)."""
    out = []
    off = 0
    buf = ring.data.tobytes()
    while off < len(buf):
        length, rtype = struct.unpack_from("<II", buf, off)
        if length == 0:
            break
        out.append((off, length, rtype))
        off += (length + 7) // 8 * 8
    return out


def test_layout_blocks_are_disjoint_128_byte_blocks():
    assert L.BLOCK_BYTES == 128
    # every named word lives in exactly one block, and no two names share a word
    assert len(set(L.RING_WORD.values())) == len(L.RING_WORD)
    assert len(set(L.SLOT_WORD.values())) == len(L.SLOT_WORD)
    # the words the two sides write on their fast paths are in different blocks
    blk = lambda w: w * 8 // 128  # noqa: E731
    fast = [L.W_TAIL_INTENT, L.W_EDGE_POS, L.W_JOIN_REQ, L.W_FUTEX, L.W_WAITERS, L.CONSUMERS_WORD + L.S_POS]
    assert len({blk(w) for w in fast}) == len(fast)
    assert L.header_bytes(16) % 4096 == 0
    assert "edge.position" in L.describe()


def test_header_bytes_on_disk(path):
    with Ring.create(path, CAP, max_payload=100, max_consumers=2) as r:
        raw = open(path, "rb").read()
        assert len(raw) == r.header_bytes + CAP
        assert raw[:8] == b"ITCHRING"
        version, hb, cap, maxp, maxc, mode = struct.unpack_from("<6q", raw, 8)
        assert (version, cap, maxp, maxc, mode) == (1, CAP, 100, 2, 0)
        assert hb == 4096 and hb % 4096 == 0


def test_records_hand_worked(path):
    with Ring.create(path, CAP, max_payload=100, consumers=["r"]) as r:
        w = r.writer()
        w.write(b"abc", type=7)
        w.write(b"", type=1)
        w.write(b"12345678", type=2)
        # 8-byte header + 3 payload -> length 11, stride 16; empty -> 8/8; 8 payload -> 16/16
        assert raw_headers(r) == [(0, 11, 7), (16, 8, 1), (24, 16, 2)]
        assert r.data[8:11].tobytes() == b"abc" and r.data[32:40].tobytes() == b"12345678"
        # the next header (offset 40) is zero: not published
        assert r.data[40:48].tobytes() == bytes(8)
        got = r.reader("r").read_batch(timeout=0)
        assert [x.tobytes() for x in got] == [b"abc", b"", b"12345678"]
        assert got.types.tolist() == [7, 1, 2]
        assert r.snapshot()["edge"] == {"position": 40, "records": 3, "payload_bytes": 11}


def test_record_ending_exactly_at_buffer_end_needs_no_padding(path):
    with Ring.create(path, CAP, max_payload=1000, consumers=["r"]) as r:
        w, rd = r.writer(), r.reader("r")
        # 8 records of stride 512 (8 + 504) fill the buffer exactly
        for k in range(8):
            w.write(bytes([k]) * 504)
            assert [x.tobytes() for x in rd.read_batch(timeout=0)] == [bytes([k]) * 504]
        assert r.snapshot()["edge"]["position"] == CAP
        w.write(b"next", type=3)           # lands at offset 0, no padding record
        assert struct.unpack_from("<II", r.data.tobytes(), 0) == (12, 3)
        b = rd.read_batch(timeout=0)
        assert [x.tobytes() for x in b] == [b"next"] and int(b.offsets[0]) == 8
        assert r.snapshot()["edge"]["position"] == CAP + 16


def test_padding_record_at_the_wrap(path):
    with Ring.create(path, CAP, max_payload=1000, consumers=["r"]) as r:
        w, rd = r.writer(), r.reader("r")
        for k in range(6):
            w.write(bytes([k]) * 504)      # 3072 bytes used
            rd.read_batch(timeout=0)
        w.write(b"x" * 900)                # stride 912: ends at 3984, 112 left
        rd.read_batch(timeout=0)
        w.write(b"y" * 200)                # stride 208 > 112: padding of 112, then offset 0
        raw = r.data.tobytes()
        assert struct.unpack_from("<II", raw, 3984) == (112, L.PADDING_TYPE)
        assert struct.unpack_from("<II", raw, 0) == (208, 0)
        got = rd.read_batch(timeout=0)
        assert [x.tobytes() for x in got] == [b"y" * 200]
        snap = r.snapshot()
        assert snap["edge"]["position"] == CAP + 208
        # the batch just read is released to the producer at the next read or commit()
        assert snap["edge"]["records"] == 8 and snap["consumers"][0]["lag_records"] == 1
        rd.commit()
        assert r.snapshot()["consumers"][0]["lag_records"] == 0


def test_max_size_record_and_too_big(path):
    with pytest.raises(ValueError, match="max_payload"):
        Ring.create(path, CAP, max_payload=1009)
    with Ring.create(path, CAP, max_payload=1008, consumers=["r"]) as r:
        w, rd = r.writer(), r.reader("r")
        for k in range(9):               # wraps (with padding) with the largest allowed record
            w.write(bytes([k]) * 1008)
            assert [x.tobytes() for x in rd.read_batch(timeout=0)] == [bytes([k]) * 1008]
        with pytest.raises(ValueError, match="max_payload"):
            w.write(b"z" * 1009)
        with pytest.raises(ValueError, match="type"):
            w.write(b"z", type=-1)


def test_blocking_producer_never_overwrites_unread_data(path):
    with Ring.create(path, CAP, max_payload=500, consumers=["slow"]) as r:
        w = r.writer(timeout=0.05)
        written = 0
        with pytest.raises(TimeoutError):
            for _ in range(100):
                w.write(b"q" * 100)
                written += 1
        # 100-byte payload -> stride 112; the ring holds floor((4096 - 8) / 112) records
        assert written == (CAP - 8) // 112
        rd = r.reader("slow")
        got = rd.read_batch(timeout=0)
        assert len(got) == written and all(x.tobytes() == b"q" * 100 for x in got)


def model_positions(capacity, sizes):
    """Slow reference: the position after each record under the layout rules."""
    pos = 0
    out = []
    for n in sizes:
        stride = (8 + n + 7) // 8 * 8
        if pos % capacity + stride > capacity:
            pos += capacity - pos % capacity
        pos += stride
        out.append(pos)
    return out


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 600), min_size=1, max_size=120),
       cuts=st.lists(st.integers(1, 9), min_size=1, max_size=40))
def test_batches_roundtrip_against_model(sizes, cuts):
    p = f"/dev/shm/itchflow-test-{uuid.uuid4().hex}.ring"
    try:
        with Ring.create(p, CAP, max_payload=600, consumers=["r"]) as r:
            w, rd = r.writer(timeout=0), r.reader("r")
            payloads = [bytes((i * 31 + k) % 251 for k in range(n)) for i, n in enumerate(sizes)]
            expect_pos = model_positions(CAP, sizes)
            i = 0
            c = 0
            while i < len(payloads):
                k = min(cuts[c % len(cuts)], len(payloads) - i)
                c += 1
                chunk = payloads[i:i + k]
                buf = np.frombuffer(b"".join(chunk) or b"\0", np.uint8)
                offs = np.cumsum([0] + [len(x) for x in chunk])
                # with timeout=0 a batch larger than the free space publishes a prefix
                done = w.write_batch(buf, offs, types=list(range(i, i + k)))
                assert 1 <= done <= k
                got = rd.read_batch(timeout=0)
                assert [x.tobytes() for x in got] == chunk[:done]
                assert got.types.tolist() == list(range(i, i + done))
                i += done
                assert r.snapshot()["edge"]["position"] == expect_pos[i - 1]
    finally:
        if os.path.exists(p):
            os.unlink(p)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b.__setitem__(slice(0, 8), b"NOTARING"), "bad magic"),
    (lambda b: b.__setitem__(slice(8, 16), struct.pack("<q", 99)), "version 99"),
    (lambda b: b.__setitem__(slice(24, 32), struct.pack("<q", 5000)), "power of two"),
    (lambda b: b.__setitem__(slice(32, 40), struct.pack("<q", 4000)), "max payload"),
    (lambda b: b.__setitem__(slice(48, 56), struct.pack("<q", 7)), "unknown mode"),
    (lambda b: b.__setitem__(slice(16, 24), struct.pack("<q", 16384)), "file size word says"),
    # the word that is wrong is the one named (it said "file is 77824 bytes, its header says 77824")
    (lambda b: b.__setitem__(slice(8 * L.W_FILE_BYTES, 8 * L.W_FILE_BYTES + 8), struct.pack("<q", 1)),
     "its header's file size word says 1 bytes"),
    (lambda b: b.__delitem__(slice(len(b) - 100, len(b))), "file is"),
    (lambda b: b.__delitem__(slice(100, len(b))), "too small"),
])
def test_corrupt_file_is_a_clear_error(path, damage, message):
    r = Ring.create(path, CAP, max_payload=100, keep=True)
    r.close()
    raw = bytearray(open(path, "rb").read())
    damage(raw)
    open(path, "wb").write(bytes(raw))
    with pytest.raises(RingFormatError, match=message):
        Ring.open(path)


def test_corrupt_record_header_is_reported_with_position(path):
    with Ring.create(path, CAP, max_payload=100, consumers=["r"]) as r:
        w, rd = r.writer(), r.reader("r")
        w.write(b"ok")
        assert [x.tobytes() for x in rd.read_batch(timeout=0)] == [b"ok"]
        w.write(b"bad")
        r.data[16:20] = np.frombuffer(struct.pack("<I", 5000), np.uint8)  # length past the end
        with pytest.raises(RingFormatError, match="position 16"):
            rd.read_batch(timeout=0)


def test_creator_removes_file_on_close_unless_kept(path):
    r = Ring.create(path, CAP)
    assert os.path.exists(path)
    r.close()
    assert not os.path.exists(path)
    with pytest.raises(FileExistsError):
        Ring.create(path, CAP, keep=True).close()
        Ring.create(path, CAP)


def test_a_peer_that_keeps_only_its_position_word_leaves_the_ring_sound(ring_path):
    """A consumer written from the layout alone (probe 12's, in C) stored only its live
    position, as the producer reads it, and no commit snapshot. Ring.open, `ring inspect` and
    `ring ls` then called the live, healthy ring corrupt ("attached at position 0, more than
    the capacity behind the edge") and advised `ring rm --force`. The ring is judged by the
    live position; resuming that name from its stale snapshot is what is refused."""
    from click.testing import CliRunner

    from itchflow.cli import main
    from itchflow.hw.atomics_py import load, store

    cap = 1 << 14
    with Ring.create(ring_path, cap, consumers=["peer"]) as ring:
        b = L.slot_base(ring.find_slot("peer"))
        w = ring.writer()
        for i in range(200):   # 200 records of 208 bytes: 2.5 capacities, the peer keeping up
            w.write(bytes([i % 256]) * 200)
            store(ring.words, b + L.S_POS, load(ring.words, L.W_EDGE_POS))   # the peer's consumption
            store(ring.words, b + L.S_HB, time.monotonic_ns())
        edge = int(load(ring.words, L.W_EDGE_POS))
        assert edge > 2 * cap
        with Ring.open(ring_path) as again:   # was: RingFormatError, the whole ring "corrupt"
            snap = again.snapshot()
        peer = [c for c in snap["consumers"] if c["name"] == "peer"][0]
        assert peer["position"] == edge and peer["lag_bytes"] == 0 and peer["state"] == "attached"
        assert peer["lag_records"] is None and peer["records_consumed"] is None   # (it keeps no snapshot)
        res = CliRunner().invoke(main, ["ring", "ls"])
        assert res.exit_code == 0 and "CORRUPT" not in res.output, res.output
        res = CliRunner().invoke(main, ["ring", "inspect", ring_path])
        assert res.exit_code == 0, res.output
        with pytest.raises(RingFormatError, match="consumer 'peer' cannot be resumed: its commit snapshot "
                                                  rf"\(position 0\) is behind its live position \({edge}\)"):
            ring.reader("peer")
        rd = ring.reader("other")   # another name joins at the edge as ever (attached by the next publish)
        w.write(b"after")
        assert [x.tobytes() for x in rd.read_batch(timeout=1)] == [b"after"]


def test_the_printed_layout_finds_the_words_of_a_real_ring_file(ring_path):
    """`itchflow ring layout` is what a peer in another language writes its code from (probe 12
    had to guess where the slots start, their size and every constant). Read a ring file made
    here with nothing but the printed text: slot placement, word offsets and constants."""
    import re

    from click.testing import CliRunner

    from itchflow.cli import main

    text = CliRunner().invoke(main, ["ring", "layout"]).output
    base, stride = map(int, re.search(r"slot i starts at byte (\d+) \+ (\d+) \* i", text).groups())
    const = dict(re.findall(r"^  ([A-Z_]+) = (\S+)", text, re.M))
    byte = {m[1]: int(m[0]) for m in re.findall(r"byte\s+(\d+)  ([a-z_]+\.[a-z_0-9]+):", text)}
    slot = {m[1]: int(m[0]) for m in re.findall(r"slot\+\s*(\d+)  ([a-z_]+\.[a-z_0-9]+):", text)}
    assert "pipeline record" in text and "type 1, a 40-byte header" in text
    assert "docs/ring-protocol.md" in text
    assert os.path.exists(os.path.join(os.path.dirname(__file__), "..", "docs", "ring-protocol.md"))
    with Ring.create(ring_path, 1 << 14, consumers=["first", "second"], mode="lossy") as ring:
        ring.writer().write(b"12345")
        raw = open(ring_path, "rb").read()
    word = lambda at: struct.unpack_from("<q", raw, at)[0]   # noqa: E731
    assert raw[byte["meta.magic"]:byte["meta.magic"] + 8] == b"ITCHRING"
    assert word(byte["meta.version"]) == int(const["LAYOUT_VERSION"])
    assert word(byte["meta.mode"]) == int(const["MODE_LOSSY"])
    assert word(byte["producer.state"]) == int(const["PRODUCER_OPEN"])
    assert word(byte["edge.records"]) == 1
    s1 = base + stride * 1
    assert raw[s1 + slot["liveness.name0"]:s1 + slot["liveness.name0"] + 6] == b"second"
    assert word(s1 + slot["liveness.state"]) == int(const["SLOT_ATTACHED"])
    assert word(base + stride * 2 + slot["liveness.state"]) == int(const["SLOT_FREE"])
    h = word(word(byte["meta.header_bytes"]))   # the first record's header word
    assert h & 0xFFFFFFFF == int(const["RECORD_HEADER_BYTES"]) + 5 and h >> 32 == 0
