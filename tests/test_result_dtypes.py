"""Results have the documented dtypes exactly, however many pieces a source was read in.

numpy 2 joins structured arrays through dtype promotion, which drops the padding of a dtype
with explicit offsets: ``read`` of a source that came in more than one piece (a gzip stream
of more than one block, a capture with a hole, an anonymised capture) returned 45-byte
records of add_order where ``itchflow.DTYPES["A"]`` is 56, and the same source read in one
piece returned 56.
"""

from __future__ import annotations

import gzip

import numpy as np

import itch_reference as ref
import itchflow
from itchflow import DTYPES


def _assert_documented(d, codes=None):
    for code in codes or d.counts:
        assert d[code].dtype == DTYPES[code], (code, d[code].dtype.itemsize, DTYPES[code].itemsize)


def test_read_of_a_gzip_stream_of_many_blocks_has_the_documented_dtypes(tmp_path):
    from itchflow.sim.generator import write_day

    raw = tmp_path / "day.itch"
    write_day(raw, 400_000, seed=2)   # about 12 MB: two 8 MiB blocks when gzipped
    packed = tmp_path / "day.itch.gz"
    packed.write_bytes(gzip.compress(raw.read_bytes(), compresslevel=1))
    whole, pieces = itchflow.read(str(raw)), itchflow.read(str(packed))
    _assert_documented(whole)
    _assert_documented(pieces)
    for code in whole.counts:
        assert pieces[code].tobytes() == whole[code].tobytes(), code


def test_read_of_a_capture_with_a_hole_and_of_an_anonymised_one_has_the_documented_dtypes():
    stream = ref.random_stream(40, 7)
    bodies = [stream[b:b + n] for _, b, n in ref.walk(stream)[0]]
    holed = [ref.eth_ipv4_udp(ref.mold_packet(b"S", 1, bodies[:10])),
             ref.eth_ipv4_udp(ref.mold_packet(b"S", 20, bodies[10:20]))]   # 11..19 missing: two runs
    d = itchflow.read(ref.pcap_file(holed))
    assert d.info.capture["gaps"] == 1
    _assert_documented(d)
    anonymised = [ref.eth_ipv4_udp(ref.mold_packet(b"", 0, [m])) for m in bodies]
    d = itchflow.read(ref.pcap_file(anonymised))
    assert d.info.messages == len(bodies)
    _assert_documented(d)
    for piece in itchflow.scan(ref.pcap_file(anonymised), chunk_messages=3):
        _assert_documented(piece)


def test_join_keeps_the_layout_numpy_would_drop():
    """hw.join, which read, auctions and the sharded books' events join their pieces with:
    the dtype asked for, from arrays of it or of its packed form, padding zeroed."""
    from itchflow.hw.join import join

    a = np.zeros(2, DTYPES["Q"])
    a["sequence"] = [1, 2]
    b = np.concatenate([a, a])             # what numpy 2 makes of a join: padding gone
    assert b.dtype != DTYPES["Q"]
    joined = join([a, b], DTYPES["Q"])
    assert joined.dtype == DTYPES["Q"] and joined["sequence"].tolist() == [1, 2, 1, 2, 1, 2]
    assert joined.tobytes() == a.tobytes() * 3   # a's padding is zeros, and so is the join's
