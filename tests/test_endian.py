"""The compiled integer reads against Python's int.from_bytes, at every offset of random bytes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from itchflow.hw.endian import be16, be32, be48_from8, be64, le16, le32, le64, load_be64


@njit(cache=True)
def _read_all(buf, p):
    # load_be64: one unaligned load and a byte swap, at any offset; be48_from8 at p + 2: the 6
    # bytes there read from the 8 at p, with the 2 before masked off
    return np.array([be16(buf, p), be32(buf, p), be64(buf, p),
                     le16(buf, p), le32(buf, p), le64(buf, p), load_be64(buf, p), be48_from8(buf, p + 2)], np.uint64)


WIDTHS = ((2, "big"), (4, "big"), (8, "big"), (2, "little"), (4, "little"), (8, "little"))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=40), st.data())
def test_reads_match_int_from_bytes(data, draw):
    buf = np.frombuffer(data, np.uint8)
    p = draw.draw(st.integers(0, len(data) - 8))
    got = _read_all(buf, p)
    want = [int.from_bytes(data[p:p + n], order) for n, order in WIDTHS]
    want += [int.from_bytes(data[p:p + 8], "big"), int.from_bytes(data[p + 2:p + 8], "big")]
    assert [int(x) for x in got] == want


def test_be48_from8_reads_exactly_six_bytes():
    # the timestamp field: the bytes around it must not leak in (a 6-byte read done as wider loads)
    buf = np.array([0xFF, 0xFF, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0xFF, 0xFF], np.uint8)
    assert int(_read_all(buf, 0)[7]) == 0x010203040506  # be48_from8 at 2: the two 0xFF before masked off
