"""gzip days cut short or corrupt: every whole message before the failure is delivered, and the
error names the decompressed offset of the first byte that was not; concatenated members,
padding, and output bounded per block whatever the stream inflates to.

The expectation is computed independently: Python's own zlib decompresses whatever it can of
the damaged stream, and a plain Python walk of the length prefixes finds where its whole
messages end (itch_reference.whole_end). (isal's decompressor, used where installed, holds
back the last byte it could decode at a cut, measured at most 1 byte over 1,200 cuts: a
message ending on that very byte is then the one reported cut.)"""

from __future__ import annotations

import gzip
import io
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import itch_reference as ref
import itchflow
from itchflow.errors import ITCHFormatError
from itchflow.sources.files import iter_chunks
from itchflow.sources.gzip_stream import GzipStreamError, gzip_blocks

pytestmark = pytest.mark.timeout(300)

DATA = ref.random_stream(4000, seed=7, unknown_rate=0.02)
GZ = gzip.compress(DATA, compresslevel=6, mtime=0)


def _salvageable(damaged: bytes) -> bytes:
    """What Python's zlib decompresses of a damaged single-member gzip before it fails or ends."""
    d = zlib.decompressobj(31)
    out = []
    for i in range(0, len(damaged), 997):   # small pieces: stop at the first failing one
        try:
            out.append(d.decompress(damaged[i:i + 997]))
        except zlib.error:
            break
    return b"".join(out)


def _expected_ends(cut: bytes) -> set[int]:
    """Where the delivered messages may end for a cut stream (see the module doc)."""
    salvaged = _salvageable(cut)
    return {ref.whole_end(salvaged), ref.whole_end(salvaged[:-1])}


def _deliver(source, block):
    """Bytes of the chunks delivered before the error, and the error."""
    got = []
    with pytest.raises(ITCHFormatError) as ei:
        for c in iter_chunks(source, gz_block=block):
            got.append(bytes(c.data))
    return b"".join(got), ei.value


@pytest.mark.parametrize("block", [64 << 10, 1 << 20, 8 << 20])
def test_cut_short_delivers_every_whole_message_before_the_cut(tmp_path, block):
    cut = GZ[: len(GZ) * 2 // 3]
    path = tmp_path / "day.itch.gz"
    path.write_bytes(cut)
    ends = _expected_ends(cut)
    assert min(ends) > len(DATA) // 3          # the test means something: most of it survives
    got, err = _deliver(path, block)
    assert err.offset in ends
    assert got == DATA[:err.offset]
    text = str(err)
    assert str(path) in text and "cut short" in text and f"byte offset {err.offset}" in text
    assert "delivered" in text


def test_corrupt_in_the_middle(tmp_path):
    """Deflate data damaged in the middle may still decode (to wrong bytes) until the member's
    CRC is checked at its end: the stream must fail with an error naming the file, and every
    byte decoded from before the damage must be the day's own."""
    bad = bytearray(GZ)
    mid = len(bad) // 2
    bad[mid:mid + 64] = bytes(64)             # a run of zeros inside the deflate data
    path = tmp_path / "day.itch.gz"
    path.write_bytes(bytes(bad))
    got, err = _deliver(path, 1 << 16)
    before = len(_salvageable(GZ[:mid])) - 1  # decoded from the bytes before the damage
    assert before > len(DATA) // 3
    n = min(len(got), before)
    assert got[:n] == DATA[:n]
    assert str(path) in str(err) and err.offset == len(got)


def test_members_and_zero_padding_are_read_one_after_another(tmp_path):
    a, b = DATA[: len(DATA) // 2], DATA[len(DATA) // 2:]
    cut = ref.whole_end(a)                        # members split at a message boundary
    a, b = DATA[:cut], DATA[cut:]
    blob = gzip.compress(a) + bytes(100) + gzip.compress(b) + bytes(7)
    path = tmp_path / "two.itch.gz"
    path.write_bytes(blob)
    assert gzip.GzipFile(fileobj=io.BytesIO(blob)).read() == DATA   # what gzip itself makes of it
    got = b"".join(bytes(c.data) for c in iter_chunks(path, gz_block=1 << 14))
    assert got == DATA
    # and a member split inside a message reads the same
    split = gzip.compress(DATA[:1001]) + gzip.compress(DATA[1001:])
    assert b"".join(bytes(c.data) for c in iter_chunks(split, gz_block=1 << 12)) == DATA


@pytest.mark.parametrize("junk", [b"not gzip at all", b"\x01" * 8, b"\x00\x00\x07"])
def test_garbage_after_a_member_is_an_error_after_the_member_that_says_so(junk):
    """Probe 52: 8 bytes of junk after a whole member were "cut short: the compressed data
    ends inside a member", which sends a user after a cut download that did not happen."""
    member = gzip.compress(DATA)
    got, err = _deliver(member + junk, 1 << 16)
    assert got == DATA and err.offset == len(DATA)
    at = len(member) + len(junk) - len(junk.lstrip(b"\0"))    # zero padding is skipped first
    assert f"after its last whole member, from compressed byte {at:,} on" in str(err)
    assert "trailing garbage" in str(err) and "cut short" not in str(err)
    # the start of another member that is not whole is still a member cut short
    got, err = _deliver(member + GZ[:40], 1 << 16)
    assert got == DATA and "cut short" in str(err)


def test_output_is_bounded_whatever_the_stream_inflates_to():
    zeros = 64 << 20
    bomb = gzip.compress(bytes(zeros), compresslevel=9)   # ~64 KiB that inflate 1000-fold
    block = 1 << 20
    sizes = [len(b) for b in gzip_blocks(io.BytesIO(bomb), block)]
    assert sum(sizes) == zeros and max(sizes) <= block


def test_not_gzip_and_empty_member():
    with pytest.raises(GzipStreamError, match="corrupt"):
        list(gzip_blocks(io.BytesIO(b"\x1f\x8bnot really"), 1 << 16))
    with pytest.raises(GzipStreamError, match="cut short"):
        list(gzip_blocks(io.BytesIO(b"\x1f\x8b"), 1 << 16))
    assert list(gzip_blocks(io.BytesIO(gzip.compress(b"")), 1 << 16)) == []


def test_read_of_a_cut_day_names_the_offset(tmp_path):
    cut = GZ[: len(GZ) // 2]
    path = tmp_path / "half.itch.gz"
    path.write_bytes(cut)
    with pytest.raises(ITCHFormatError) as ei:
        itchflow.read(path)
    assert ei.value.offset in _expected_ends(cut)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frac=st.floats(0.01, 0.99), block=st.sampled_from([1 << 10, 1 << 13, 1 << 16, 1 << 22]))
def test_any_cut_any_block(frac, block):
    cut = GZ[: max(11, int(len(GZ) * frac))]
    got = []
    try:
        for c in iter_chunks(cut, gz_block=block):
            got.append(bytes(c.data))
    except ITCHFormatError as e:
        assert e.offset in _expected_ends(cut)
        assert b"".join(got) == DATA[:e.offset]
    else:
        raise AssertionError("a cut stream must fail")


def test_read_of_a_day_in_many_blocks_decodes_once_into_its_arrays(tmp_path):
    """read of a gzip day (framed a block at a time) decodes every block into arrays allocated
    once for the whole: the same arrays as the raw day, and at its peak it holds the day's
    stream and its arrays, not every block's arrays and then a joined copy of them (2.1 times
    the arrays, before)."""
    from peak_memory import peak_allocated

    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(day, 1_000_000, seed=4)
    gz = tmp_path / "day.itch.gz"
    with open(day, "rb") as f, gzip.open(gz, "wb", compresslevel=1) as g:
        g.write(f.read())
    want = itchflow.read(day)
    assert len(list(iter_chunks(str(gz)))) > 3
    itchflow.read(gz)   # every kernel loaded (what loading allocates is not the read's)
    got, peak = peak_allocated(lambda: itchflow.read(gz))
    output = sum(got[c].nbytes for c in got.counts)
    for code in want.counts:
        assert got[code].dtype == want[code].dtype and got[code].tobytes() == want[code].tobytes(), code
    assert peak < 1.85 * output, (peak, output)
