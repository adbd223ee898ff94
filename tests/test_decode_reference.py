"""itchflow's decoder against the slow reference codec in ``itch_reference``.

Random streams of all 23 types (random values over each field's whole range) plus unknown
types of random lengths are written by the reference encoder, then decoded by
``itchflow.read`` from bytes, a numpy buffer, a file and a ``.gz`` file, and by
``itchflow.scan`` in small pieces: every field of every message, the sequence numbers, the
counts per type, the unknowns and ``stats()`` must equal what the reference decoder says.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import itch_reference as ref
import itchflow

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- strategies
def _field(size: int, kind: str):
    if kind == "a":  # printable ASCII of any length, space padded (what the spec allows)
        return st.binary(max_size=size).map(lambda b: bytes(32 + x % 95 for x in b).ljust(size, b" "))
    return st.integers(0, (1 << (8 * size)) - 1)


@st.composite
def known_message(draw, code=None):
    code = code or draw(st.sampled_from(ref.CODES))
    fields = {name: draw(_field(size, kind)) for name, size, kind in ref.fields_of(code)}
    return ref.encode(code, fields)


@st.composite
def unknown_message(draw):
    t = draw(st.sampled_from(ref.UNKNOWN_BYTES))
    rest = draw(st.binary(max_size=80))
    return ref.encode_unknown(t, rest)


streams = st.lists(st.one_of(known_message(), known_message(), known_message(), unknown_message()),
                   max_size=60).map(b"".join)


# --------------------------------------------------------------------------- comparisons
def unknown_key(t: int) -> str:
    return chr(t) if 32 < t < 127 else f"0x{t:02x}"


def assert_matches_reference(d, msgs: list[ref.Message], codes: str = ref.CODES):
    """Every field of every known message, per type, in stream order."""
    by_code = defaultdict(list)
    for m in msgs:
        if m.code != "?":
            by_code[m.code].append(m)
    for code in codes:
        arr = d[code]
        want = by_code.get(code, [])
        assert len(arr) == len(want), code
        assert arr["sequence"].tolist() == [m.sequence for m in want], code
        for name, size, kind in ref.fields_of(code):
            if kind == "a":  # compare the raw fixed-width bytes (numpy strips trailing NULs on access)
                col = np.ascontiguousarray(arr[name])
                assert col.dtype.itemsize == size, (code, name)
                assert col.tobytes() == b"".join(m.fields[name] for m in want), (code, name)
            else:
                assert arr[name].tolist() == [m.fields[name] for m in want], (code, name)


def assert_info_matches(info, st_: ref.Stats):
    assert info.messages == st_.messages
    assert info.bytes == st_.bytes
    assert info.by_type == st_.by_type
    assert info.unknown == st_.unknown
    assert info.unknown_by_type == {unknown_key(t): n for t, n in st_.unknown_by_type.items()}
    assert info.first_timestamp_ns == st_.first_timestamp_ns
    assert info.last_timestamp_ns == st_.last_timestamp_ns
    assert info.stocks == st_.stocks


# --------------------------------------------------------------------------- hypothesis
@settings(max_examples=150, deadline=None)
@given(streams)
def test_read_bytes_equals_reference(data):
    msgs, st_ = ref.decode(data)
    d = itchflow.read(data)
    assert_matches_reference(d, msgs)
    assert_info_matches(d.info, st_)
    assert_info_matches(itchflow.stats(data), st_)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, st.integers(1, 9))
def test_file_gz_numpy_and_scan_equal_reference(data, chunk):
    msgs, st_ = ref.decode(data)
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "day.itch")
        gz = os.path.join(tmp, "day.itch.gz")
        with open(raw, "wb") as f:
            f.write(data)
        with gzip.open(gz, "wb") as f:
            f.write(data)
        for source in (raw, gz, np.frombuffer(data, np.uint8), bytearray(data), gzip.compress(data)):
            d = itchflow.read(source)
            assert_matches_reference(d, msgs)
            assert_info_matches(d.info, st_)
            assert_info_matches(itchflow.stats(source), st_)
        for source in (raw, gz):
            pieces = list(itchflow.scan(source, chunk_messages=chunk))
            assert all(p.info.messages <= chunk for p in pieces)
            assert sum(p.info.messages for p in pieces) == st_.messages
            joined = {c: np.concatenate([p[c] for p in pieces]) if pieces else np.empty(0, itchflow.DTYPES[c])
                      for c in ref.CODES}
            assert_matches_reference(joined, msgs)
            assert sum(p.info.unknown for p in pieces) == st_.unknown
            assert sum(p.info.bytes for p in pieces) == st_.bytes


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(known_message(), unknown_message()), max_size=40).map(b"".join),
       st.text(alphabet=ref.CODES, max_size=5))
def test_types_subset_decodes_only_those_but_counts_all(data, types):
    msgs, st_ = ref.decode(data)
    d = itchflow.read(data, types=types)
    wanted = "".join(c for c in ref.CODES if c in types)
    assert set(d) == set(wanted)
    assert_matches_reference(d, msgs, wanted)
    assert_info_matches(d.info, st_)


# --------------------------------------------------------------------------- fixed big streams
def test_every_type_large_stream_all_sources(tmp_path):
    data = ref.random_stream(20_000, seed=7, unknown_rate=0.05)
    msgs, st_ = ref.decode(data)
    assert all(st_.by_type[c] > 500 for c in ref.CODES) and st_.unknown > 500
    raw = tmp_path / "big.itch"
    raw.write_bytes(data)
    gz = tmp_path / "big.itch.gz"
    gz.write_bytes(gzip.compress(data, compresslevel=1))
    for source in (data, raw, str(gz)):
        d = itchflow.read(source)
        assert_matches_reference(d, msgs)
        assert_info_matches(d.info, st_)
    pieces = list(itchflow.scan(raw, chunk_messages=997))
    assert [p.info.messages for p in pieces] == [997] * (st_.messages // 997) + (
        [st_.messages % 997] if st_.messages % 997 else [])
    joined = {c: np.concatenate([p[c] for p in pieces]) for c in ref.CODES}
    assert_matches_reference(joined, msgs)


def test_alpha_fields_keep_every_byte():
    """Alpha fields are copied byte for byte, whatever the bytes (NULs and high bytes too)."""
    data = ref.random_stream(3000, seed=11, alpha_any_byte=True)
    msgs, st_ = ref.decode(data)
    assert_matches_reference(itchflow.read(data), msgs)


def test_alpha_strings_depend_on_their_own_bytes_only():
    """One row with a byte past ASCII turned every string of its column to U+FFFD and cut each
    at a NUL, so a row read differently in pieces of other sizes (probe 29). Each value is now
    its own bytes, trailing spaces and NULs stripped, a byte past ASCII as its Latin-1 character."""
    def add(stock: bytes) -> bytes:
        return ref.encode("A", {"stock_locate": 1, "timestamp": 5, "stock": stock, "shares": 7, "side": b"B"})

    plain, odd, high = b"AB\x00CD  ", b"\x80\xff  X   ", b"\xc3\xa9      "
    alone = itchflow.read(add(plain)).to_pandas("A")["stock"].tolist()
    together = itchflow.read(add(plain) + add(odd) + add(high)).to_arrow("A")["stock"].to_pylist()
    assert alone == ["AB\x00CD"] and together == ["AB\x00CD", "\x80\xff  X", "\xc3\xa9"]
    # the one rule, written out: bytes -> Latin-1 -> trailing spaces and NULs stripped
    assert together == [b.decode("latin-1").rstrip(" \x00") for b in (plain, odd, high)]


def test_sequence_numbers_of_a_file_are_1_to_n(tmp_path):
    data = ref.random_stream(500, seed=3, unknown_rate=0.2)
    path = tmp_path / "f.itch"
    path.write_bytes(data)
    d = itchflow.read(path)
    seqs = sorted(int(s) for c in d for s in d[c]["sequence"])
    msgs, _ = ref.decode(data)
    # known messages keep their position in the file (unknown ones use up a number too)
    assert seqs == [m.sequence for m in msgs if m.code != "?"]
    assert {m.sequence for m in msgs} == set(range(1, 501))


def test_encode_warns_that_skipped_unknown_types_are_not_in_its_bytes():
    """encode(read(x)) gave 42 of x's 49 bytes, silently, when x held an unknown type (probe
    29): read never kept it. encode says so."""
    d_msg = ref.encode("D", {"stock_locate": 1, "timestamp": 1000, "order_reference_number": 7})
    source = d_msg + ref.encode_unknown(0x5A, b"\x00" * 4) + d_msg
    d = itchflow.read(source)
    with pytest.warns(UserWarning, match=r"1 messages of unknown types \(Z x1\) were skipped by read"):
        out = itchflow.encode(d)
    assert out == d_msg + d_msg
    import warnings

    whole = itchflow.read(d_msg + d_msg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert itchflow.encode(whole) == d_msg + d_msg   # nothing skipped: no warning


def test_unknown_types_skipped_by_length_and_counted_by_type():
    a = ref.encode("A", {"stock_locate": 9, "timestamp": 5, "stock": b"AAPL", "shares": 7})
    stream = (ref.encode_unknown(0x7A, b"") + a + ref.encode_unknown(0xFF, bytes(300))
              + ref.encode_unknown(0x7A, b"\x00" * 49) + ref.encode_unknown(0x00, b"xyz") + a
              + ref.encode_unknown(0x20, bytes(65534)))  # the largest message a prefix can describe
    d = itchflow.read(stream)
    assert d.info.messages == 7 and d.info.unknown == 5
    assert d.info.unknown_by_type == {"z": 2, "0xff": 1, "0x00": 1, "0x20": 1}
    assert d["A"]["sequence"].tolist() == [2, 6]
    assert d["A"]["shares"].tolist() == [7, 7]
    assert d.info.bytes == len(stream)
    assert d.info.stocks == 1


def test_empty_input():
    d = itchflow.read(b"")
    assert d.info.messages == 0 and d.info.bytes == 0 and d.info.stocks == 0
    assert d.info.first_timestamp_ns is None and d.info.last_timestamp_ns is None
    assert all(len(d[c]) == 0 for c in ref.CODES)


# --------------------------------------------------------------------------- arrow / pandas
def test_to_arrow_and_pandas_strip_alpha_keep_numbers():
    data = ref.random_stream(2000, seed=5)
    msgs, _ = ref.decode(data)
    d = itchflow.read(data)
    by_code = defaultdict(list)
    for m in msgs:
        by_code[m.code].append(m)
    for code in ref.CODES:
        want = by_code[code]
        table = d.to_arrow(code)
        frame = d.to_pandas(code)
        assert table.num_rows == len(frame) == len(want)
        assert table.column("sequence").to_pylist() == [m.sequence for m in want]
        for name, size, kind in ref.fields_of(code):
            col = table.column(name).to_pylist()
            if kind == "a":
                expected = [m.fields[name].decode("ascii").rstrip(" ") for m in want]
                assert col == expected, (code, name)
                assert frame[name].tolist() == expected, (code, name)
            else:
                expected = [m.fields[name] for m in want]
                assert col == expected, (code, name)
                assert [int(x) for x in frame[name]] == expected, (code, name)


def test_to_arrow_of_all_types_at_once():
    data = ref.random_stream(300, seed=9)
    d = itchflow.read(data)
    tables = d.to_arrow()
    assert set(tables) == set(ref.CODES)
    assert sum(t.num_rows for t in tables.values()) == d.info.messages


def test_the_dicts_of_all_types_have_every_type_decoded_on_an_empty_day_too():
    """Probe 52: the dict forms kept only the types with rows, so a quiet day's
    ``to_pandas()["A"]`` raised KeyError where a busy day's gave a frame. Every type decoded
    is a key, with the schema of a busy day's table."""
    busy = itchflow.read(ref.random_stream(300, seed=9), types="AFPR")
    quiet = itchflow.read(b"", types="AFPR")
    for busy_d, quiet_d in ((busy.to_arrow(), quiet.to_arrow()), (busy.to_pandas(), quiet.to_pandas())):
        assert list(busy_d) == list(quiet_d) and set(quiet_d) == set("AFPR")
    for c in "AFPR":
        assert quiet.to_arrow()[c].num_rows == 0 and busy.to_arrow()[c].num_rows > 0
        assert quiet.to_arrow()[c].schema == busy.to_arrow()[c].schema
        assert quiet.to_pandas()[c].dtypes.to_dict() == busy.to_pandas()[c].dtypes.to_dict()


def test_to_arrow_survives_non_ascii_alpha_bytes():
    """The decoder accepts any byte in an alpha field (the framing is valid), so converting
    what it returned must not fail: a corrupt byte in one stock name must not make the whole
    table unconvertible. The ASCII rows must still come out exactly."""
    good = ref.encode("A", {"stock": b"AAPL", "shares": 1})
    bad = ref.encode("A", {"stock": b"\xffBAD", "shares": 2})
    d = itchflow.read(good + bad + good)
    table = d.to_arrow("A")  # raises pyarrow ArrowInvalid "Invalid UTF8 payload" today
    stocks = table.column("stock").to_pylist()
    assert stocks[0] == stocks[2] == "AAPL"
    assert table.column("shares").to_pylist() == [1, 2, 1]
    assert len(d.to_pandas("A")) == 3


def test_scan_pieces_are_whole_numbers_of_messages():
    data = ref.random_stream(50, seed=3)
    with pytest.raises(TypeError, match="chunk_messages must be a whole number, not 1.5"):
        list(itchflow.scan(data, chunk_messages=1.5))
    with pytest.raises(TypeError, match="not True"):
        list(itchflow.scan(data, chunk_messages=True))
    with pytest.raises(ValueError, match="at least 1"):
        list(itchflow.scan(data, chunk_messages=0))
    # more than int64 holds: one piece, the whole stream (it was an OverflowError inside)
    pieces = list(itchflow.scan(data, chunk_messages=2 ** 70))
    assert len(pieces) == 1 and pieces[0].info.messages == itchflow.stats(data).messages == 50


@pytest.mark.parametrize("chunk", [7, 1 << 20])
@pytest.mark.parametrize("cut", ["mid_message", "bad_length"])
def test_scan_of_a_cut_day_hands_out_every_whole_message_before_the_error(tmp_path, chunk, cut):
    """probe 17: a raw day cut mid-message gave nothing of its last piece (with the default
    piece size, nothing at all) before the error; a gzip day cut short gave all of it."""
    data = ref.random_stream(100, seed=11)
    msgs, _ = ref.decode(data)
    if cut == "mid_message":
        bad = data + data[:5]                       # a day cut 5 bytes into a message
    else:
        bad = data + b"\x00\x05A" + b"\x00" * 4     # an 'A' whose prefix says 5 bytes
    path = tmp_path / "cut.itch"
    path.write_bytes(bad)
    seen = []
    with pytest.raises(itchflow.ITCHFormatError) as err:
        for piece in itchflow.scan(str(path), types="all", chunk_messages=chunk):
            seen.append(sum(piece.counts.values()))
    assert sum(seen) == len(msgs) == 100
    assert err.value.offset == len(data)
    assert str(err.value).endswith("(after 100 whole messages)") and "cut.itch" in str(err.value)
    # nothing handed out before it: nothing said of it
    path.write_bytes(bad[len(data):])
    with pytest.raises(itchflow.ITCHFormatError, match=r"byte offset 0: ") as err:
        list(itchflow.scan(str(path), chunk_messages=chunk))
    assert "whole messages)" not in str(err.value)
    # read() still refuses the whole file, delivering nothing
    with pytest.raises(itchflow.ITCHFormatError):
        itchflow.read(str(path))


def test_types_that_name_nothing_are_a_value_error():
    data = ref.random_stream(20, seed=5)
    with pytest.raises(ValueError, match=r"types: not an ITCH 5.0 message type letter or name: 'x'"):
        itchflow.read(data, types="AFx")
    assert len(itchflow.read(data, types="")) == 0     # none: framed and counted, nothing decoded
    d = itchflow.read(data, types=["add_order", "F"])
    assert len(d["A"]) + len(d["F"]) == sum(1 for m in ref.decode(data)[0] if m.code in "AF")
