"""Every reader of BinaryFILE framing tells a framing error in the same words: decode and
stats, the books on one thread and on several, and the message store. The books said "the
buffer ends inside it (or inside its length prefix)" where decode named the type, the length
prefix and how many bytes were present, for the same byte of the same file."""

from __future__ import annotations

import pytest

import itchflow
from itchflow import ITCHFormatError, encode_message as enc
from itchflow.protocol.soup.store import MessageStore

GOOD = b"".join([enc("R", stock_locate=1, timestamp=1, stock="AAA"),
                 enc("A", stock_locate=1, timestamp=2, order_reference_number=1, buy_sell_indicator="B",
                     shares=100, stock="AAA", price=10_000)])
ADD = enc("A", stock_locate=1, timestamp=3, order_reference_number=2, buy_sell_indicator="S", shares=5,
          stock="AAA", price=10_100)
CASES = {
    # the last add cut after 21 of its 36 bytes
    "truncated": (GOOD + ADD[:2 + 21], "truncated message: the data ends inside it (type 'A', length prefix 36, "
                                       "specification says 36); 21 of 36 bytes present"),
    # an add whose prefix says 35
    "bad length": (GOOD + b"\x00\x23" + ADD[2:37], "length prefix disagrees with the message type's length "
                                                   "(type 'A', length prefix 35, specification says 36)"),
    "zero length": (GOOD + b"\x00\x00" + ADD, "zero-length message (a length prefix of 0: no type byte"),
}


def _readers():
    yield "read", lambda day: itchflow.read(day)
    yield "stats", lambda day: itchflow.stats(day)
    yield "Books", lambda day: itchflow.Books().apply(day)
    yield "Books(threads=2)", lambda day: itchflow.Books(threads=2).apply(day)
    yield "MessageStore", lambda day: MessageStore(day)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("reader", [name for name, _ in _readers()])
def test_every_reader_says_the_same(case, reader):
    import numpy as np

    day, text = CASES[case]
    call = dict(_readers())[reader]
    with pytest.raises(ITCHFormatError) as e:
        call(np.frombuffer(day, np.uint8))
    assert text in str(e.value)
    assert e.value.offset == len(GOOD)
