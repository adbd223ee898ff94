"""Bad input: truncations and bit flips over real and generated input, in every container.

Whatever the bytes, ``itchflow.read`` / ``stats`` / ``scan`` either succeed or raise
ITCHFormatError (a ValueError) whose message names the source and a byte offset or packet:
never another exception, a crash or a hang. For raw BinaryFILE streams the outcome must be
exactly the reference decoder's (same messages, or an error at the same byte offset).
Crashes (a segfault would take the test process down) are looked for by running a batch of
mutated inputs in a subprocess and asserting it exits normally.
"""

from __future__ import annotations

import gzip
import os
import random
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import itch_reference as ref
import itchflow
from itchflow.errors import ITCHFormatError

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])

GENERATED = ref.random_stream(150, seed=17, unknown_rate=0.1)
GENERATED_GZ = gzip.compress(GENERATED, compresslevel=6, mtime=0)


def _frames():
    """MoldUDP64 packets of generated messages, with a duplicate, a gap and a heartbeat."""
    msgs = [ref.encode_body(c, ref.random_fields(c, random.Random(i))) for i, c in enumerate(ref.CODES * 2)]
    pk = [ref.mold_packet(b"SESSION01", 1, msgs[:10]),
          ref.mold_packet(b"SESSION01", 11, msgs[10:30]),
          ref.mold_packet(b"SESSION01", 11, msgs[10:30]),     # B-line repeat
          ref.mold_packet(b"SESSION01", 40, msgs[30:]),       # 31..39 missing
          ref.mold_packet(b"SESSION01", 46, [], count=0)]     # heartbeat
    return [ref.eth_ipv4_udp(p) for p in pk]


FRAMES = _frames()
PCAP = ref.pcap_file(FRAMES)
PCAPNG = ref.pcapng_file(FRAMES)
PCAPNG_BE = ref.pcapng_file(FRAMES, big_endian=True)


def _real_capture_bytes() -> list[bytes]:
    from conftest import CAPTURES_DIR

    return [p.read_bytes() for p in sorted(CAPTURES_DIR.glob("*/*.pcap"))]


REAL = _real_capture_bytes()
CONTAINERS = [GENERATED, GENERATED_GZ, PCAP, PCAPNG, PCAPNG_BE] + REAL


def check_error(e: ITCHFormatError, name: str):
    assert isinstance(e, ValueError)
    text = str(e)
    assert name in text, text
    assert "byte offset" in text or "packet" in text, text
    assert e.offset is not None or e.packet is not None


def run_all(source, name: str):
    """read / stats / scan (strict and not): success or a well-formed ITCHFormatError only."""
    outcomes = []
    for call in (lambda: itchflow.read(source),
                 lambda: itchflow.stats(source),
                 lambda: list(itchflow.scan(source, chunk_messages=3)),
                 lambda: itchflow.read(source, strict=False)):
        try:
            call()
            outcomes.append(None)
        except ITCHFormatError as e:
            check_error(e, name)
            outcomes.append(e)
    return outcomes


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, bit in flips:
        if b:
            b[pos % len(b)] ^= 1 << bit
    if cut is not None:
        b = b[:cut % (len(b) + 1)]
    return bytes(b)


mutations = st.tuples(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), max_size=6),
                      st.one_of(st.none(), st.integers(0, 1 << 20)))


# --------------------------------------------------------------------------- property fuzzing
@FUZZ
@given(mutations)
def test_raw_stream_mutations_match_reference_exactly(m):
    data = mutate(GENERATED, *m)
    try:
        msgs, st_ = ref.decode(data)
        want_error = None
    except ref.ReferenceError_ as e:
        want_error = e.offset
    for outcome in run_all(data, "<bytes buffer>"):
        if want_error is None:
            assert outcome is None, outcome
        else:
            assert outcome is not None and outcome.offset == want_error, (outcome, want_error)
    if want_error is None:
        d = itchflow.read(data)
        assert d.info.messages == st_.messages and d.info.by_type == st_.by_type
        assert d.info.unknown == st_.unknown and d.info.stocks == st_.stocks


@FUZZ
@given(st.sampled_from(range(len(CONTAINERS))), mutations)
def test_container_mutations_fail_cleanly(which, m):
    data = mutate(CONTAINERS[which], *m)
    run_all(data, "<bytes buffer>")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["raw", "gz", "pcap", "pcapng"]), mutations)
def test_file_mutations_fail_cleanly(kind, m):
    import tempfile

    base = {"raw": GENERATED, "gz": GENERATED_GZ, "pcap": PCAP, "pcapng": PCAPNG}[kind]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"input.{kind}")
        with open(path, "wb") as f:
            f.write(mutate(base, *m))
        run_all(path, path)


# --------------------------------------------------------------------------- crash detection
CRASH_SCRIPT = textwrap.dedent("""
    import gzip, random, sys
    sys.path.insert(0, {tests!r})
    import itch_reference as ref, itchflow
    from itchflow.errors import ITCHFormatError
    import test_fuzz as tf
    rng = random.Random(12345)
    n = 0
    for i in range(3000):
        base = tf.CONTAINERS[i % len(tf.CONTAINERS)]
        b = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.5:
            b = b[:rng.randrange(len(b) + 1)]
        for call in (itchflow.read, itchflow.stats, lambda s: list(itchflow.scan(s, chunk_messages=2)),
                     lambda s: itchflow.read(s, strict=False)):
            try:
                call(bytes(b))
            except ITCHFormatError:
                pass
            n += 1
    print("survived", n)
""")


def test_mutated_batch_in_subprocess_exits_normally():
    tests = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([tests, str(Path(tests).parent / "src"), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", CRASH_SCRIPT.format(tests=tests)], capture_output=True,
                       text=True, timeout=110, env=env)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    assert "survived 12000" in r.stdout


# --------------------------------------------------------------------------- specific cases
def _stream(n=20, seed=1) -> tuple[bytes, list[int]]:
    """A stream and the byte offset of each message's length prefix."""
    rng = random.Random(seed)
    out, offsets = bytearray(), []
    for i in range(n):
        c = ref.CODES[i % len(ref.CODES)]
        offsets.append(len(out))
        out += ref.encode(c, ref.random_fields(c, rng))
    return bytes(out), offsets


@pytest.mark.parametrize("keep", [1, 2, 3, 10, -1])
def test_truncated_last_message_names_its_offset(tmp_path, keep):
    data, offsets = _stream()
    last = offsets[-1]
    cut = data[:last + keep] if keep > 0 else data[:-1]
    path = tmp_path / "cut.itch"
    path.write_bytes(cut)
    for source, name in ((path, str(path)), (cut, "<bytes buffer>")):
        with pytest.raises(ITCHFormatError) as ei:
            itchflow.read(source)
        assert ei.value.offset == last
        assert f"byte offset {last}" in str(ei.value) and name in str(ei.value)
        assert "truncated" in str(ei.value)
        with pytest.raises(ITCHFormatError) as ei:
            itchflow.stats(source)
        assert ei.value.offset == last


def test_truncated_gzip_names_decompressed_offset(tmp_path):
    data, offsets = _stream(200)
    path = tmp_path / "cut.itch.gz"
    path.write_bytes(gzip.compress(data[:offsets[-1] + 5]))
    with pytest.raises(ITCHFormatError) as ei:
        itchflow.read(path)
    assert ei.value.offset == offsets[-1] and str(path) in str(ei.value)


def test_gzip_stream_cut_short(tmp_path):
    data, _ = _stream(500)
    gz = gzip.compress(data)
    path = tmp_path / "short.gz"
    path.write_bytes(gz[:len(gz) // 2])
    for source in (path, gz[:len(gz) // 2]):
        with pytest.raises(ITCHFormatError) as ei:
            itchflow.read(source)
        assert "gzip" in str(ei.value)
        assert ei.value.offset is not None


@pytest.mark.parametrize("code", list(ref.CODES))
def test_length_prefix_disagreeing_with_type(code):
    data, offsets = _stream()
    body = ref.encode_body(code, {})
    for wrong in (len(body) - 1, len(body) + 1):
        bad = body[:wrong] if wrong < len(body) else body + b"\x00"
        stream = data + struct.pack(">H", wrong) + bad + data
        with pytest.raises(ITCHFormatError) as ei:
            itchflow.read(stream)
        assert ei.value.offset == len(data)
        assert "length" in str(ei.value)


def test_zero_length_message():
    data, offsets = _stream()
    stream = data[:offsets[5]] + b"\x00\x00" + data[offsets[5]:]
    for call in (itchflow.read, itchflow.stats, lambda s: list(itchflow.scan(s, chunk_messages=2))):
        with pytest.raises(ITCHFormatError) as ei:
            call(stream)
        assert ei.value.offset == offsets[5]
        assert "zero-length" in str(ei.value)


def test_odd_single_byte_input():
    with pytest.raises(ITCHFormatError) as ei:
        itchflow.read(b"\x00")
    assert ei.value.offset == 0


def test_corrupt_pcap_record_header_names_packet_and_offset():
    frames = FRAMES[:3]
    good = ref.pcap_file(frames)
    rec3 = ref.PCAP_HEADER_SIZE + sum(ref.PCAP_RECORD_HEADER_SIZE + len(f) for f in frames[:2])
    for incl in (len(frames[2]) + 1, 0x7FFFFFFF, 0xFFFFFFFF):
        bad = bytearray(good)
        struct.pack_into("<I", bad, rec3 + 8, incl)  # incl_len past the end of the file
        with pytest.raises(ITCHFormatError) as ei:
            itchflow.read(bytes(bad))
        assert ei.value.packet == 3 and ei.value.offset == rec3, str(ei.value)
        assert "packet 3" in str(ei.value) and f"byte offset {rec3}" in str(ei.value)
    # a record header cut short
    with pytest.raises(ITCHFormatError) as ei:
        itchflow.read(good + b"\x00" * 7)
    assert ei.value.packet == 4 and ei.value.offset == len(good)
    # pcap file header cut short
    with pytest.raises(ITCHFormatError) as ei:
        itchflow.read(good[:20])
    assert ei.value.offset == 0


def _mold_cases():
    s = ref.encode_body("S", {"event_code": b"O"})
    a = ref.encode_body("A", {"shares": 5})
    return {
        "shorter than the header": ref.mold_packet(b"X", 1, [])[:19],
        "block past the end": ref.mold_packet(b"X", 1, [s, a])[:-3],
        "count says more blocks than present": ref.mold_packet(b"X", 1, [s], count=2),
        "bytes left over": ref.mold_packet(b"X", 1, [s]) + b"\x01",
        "zero-length block": ref.mold_packet(b"X", 1, [s]) [:20] + b"\x00\x00" + struct.pack(">H", 12) + s,
    }


@pytest.mark.parametrize("what", list(_mold_cases()))
def test_malformed_moldudp64_packet(what):
    bad = _mold_cases()[what]
    good1 = ref.mold_packet(b"X", 1, [ref.encode_body("S", {"event_code": b"O"})])
    good2 = ref.mold_packet(b"X", 3, [ref.encode_body("D", {"order_reference_number": 77})])
    for fmt in (ref.pcap_file, ref.pcapng_file):
        data = fmt([ref.eth_ipv4_udp(p) for p in (good1, bad, good2)])
        with pytest.raises(ITCHFormatError) as ei:
            itchflow.read(data)
        assert ei.value.packet == 2, str(ei.value)
        assert "packet 2" in str(ei.value) and "MoldUDP64" in str(ei.value)
        d = itchflow.read(data, strict=False)
        cap = d.info.capture
        assert cap["malformed_packets"] == 1 and cap["packets"] == 3 and cap["data_packets"] == 2
        assert d["S"]["sequence"].tolist() == [1] and d["D"]["order_reference_number"].tolist() == [77]
        assert cap["gaps"] == 1 and cap["missing_messages"] == 1  # sequence 2 was in the bad packet
        assert itchflow.stats(data, strict=False).capture == cap


def test_itch_error_inside_a_capture_names_the_packet():
    """A message with a wrong length inside a MoldUDP64 packet: the error must say where it is
    in the capture (its packet, or its byte offset in the file), not an offset into an
    internal reassembly buffer."""
    good = ref.mold_packet(b"X", 1, [ref.encode_body("S", {})])
    bad = ref.mold_packet(b"X", 2, [ref.encode_body("S", {}) + b"\x00"])  # S with length 13
    data = ref.pcap_file([ref.eth_ipv4_udp(good), ref.eth_ipv4_udp(bad)])
    bad_message_at = (ref.PCAP_HEADER_SIZE + 2 * ref.PCAP_RECORD_HEADER_SIZE + len(ref.eth_ipv4_udp(good))
                      + ref.ETH_IP_UDP_SIZE + 20)
    with pytest.raises(ITCHFormatError) as ei:
        itchflow.read(data)
    assert ei.value.packet == 2 or ei.value.offset == bad_message_at, str(ei.value)


def test_unknown_types_in_capture_are_skipped_and_counted():
    s = ref.encode_body("S", {"event_code": b"O"})
    data = ref.pcap_file([ref.eth_ipv4_udp(ref.mold_packet(b"X", 1, [b"z" * 7, s, b"\x01", s]))])
    d = itchflow.read(data)
    assert d.info.unknown == 2 and d.info.unknown_by_type == {"z": 1, "0x01": 1}
    assert d["S"]["sequence"].tolist() == [2, 4]


# --------------------------------------------------------------------------- pcapng by hand
def _same(a, b):
    assert a.info.capture == b.info.capture
    for c in ref.CODES:  # field by field (the records' alignment padding is not data)
        for name in a[c].dtype.names:
            assert np.array_equal(a[c][name], b[c][name]), (c, name)
    assert (a.info.messages, a.info.by_type, a.info.bytes) == (b.info.messages, b.info.by_type, b.info.bytes)


def test_pcapng_decodes_identically_to_pcap():
    from_pcap = itchflow.read(PCAP)
    assert from_pcap.info.capture["duplicate_messages"] == 20
    assert from_pcap.info.capture["gaps"] == 1 and from_pcap.info.capture["missing_messages"] == 9
    assert from_pcap.info.capture["heartbeats"] == 1
    for data in (PCAPNG, PCAPNG_BE, ref.pcap_file(FRAMES, big_endian=True)):
        _same(itchflow.read(data), from_pcap)


def test_pcapng_of_a_real_capture(all_captures):
    for path in all_captures:
        frames = ref.pcap_frames(path.read_bytes())
        want = itchflow.read(path)
        for be in (False, True):
            _same(itchflow.read(ref.pcapng_file(frames, big_endian=be)), want)
    # two sections with different byte orders in one file
    frames = ref.pcap_frames(all_captures[0].read_bytes())
    both = ref.pcapng_file(frames[:1]) + ref.pcapng_file(frames[1:] or frames[:1], big_endian=True)
    assert itchflow.read(both).info.capture["packets"] == max(2, len(frames))


def test_pcapng_block_length_mismatch_names_offset():
    bad = bytearray(PCAPNG)
    shb_len = struct.unpack_from("<I", bad, 4)[0]
    idb_len = struct.unpack_from("<I", bad, shb_len + 4)[0]
    epb = shb_len + idb_len
    struct.pack_into("<I", bad, epb + 4, 1 << 30)  # first EPB's total length past the end
    with pytest.raises(ITCHFormatError) as ei:
        itchflow.read(bytes(bad))
    assert ei.value.offset == epb and ei.value.packet == 1


def test_sequence_numbers_beyond_2_pow_53_stay_exact():
    """MoldUDP64 sequence numbers are 64-bit: consecutive messages keep consecutive numbers."""
    base = (1 << 60) + 1
    data = ref.pcap_file([ref.eth_ipv4_udp(ref.mold_packet(b"X", base, [ref.encode_body("S", {})] * 3))])
    d = itchflow.read(data)
    assert [int(s) for s in d["S"]["sequence"]] == [base, base + 1, base + 2]
    np.testing.assert_array_equal(d["S"]["sequence"], np.array([base, base + 1, base + 2], np.uint64))
