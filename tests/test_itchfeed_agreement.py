"""itchflow against itchfeed (the pure-Python ``itch`` package from PyPI), field by field.

Same bytes in, every attribute of every itchfeed message compared with itchflow's column.
ITCH_NO_CPP=1 must be set before ``itch`` is first imported, or ``itch.parser`` silently
becomes itchcpp's C++ parser.

itchfeed's behaviour that is not a decoding disagreement (checked against the ITCH 5.0
specification, and worked around here rather than hidden):
- ``MessageParser.parse_stream`` stops after a System Event with event code ``C`` (end of
  messages) and drops everything after it; itchflow decodes the whole input. Random streams
  below keep ``C`` out of the S messages, and one test pins this difference down.
- its framing assumes the first length byte is 0 (messages < 256 bytes) and raises
  ValueError on an unknown message type, where the specification says unknown types are to
  be skipped; the random streams here hold known types only.
- attribute names differ from the specification's in places (``luld_ref``,
  ``ipo_release_time``, ``ipo_release_qualifier``, ``auction_collar_extention``,
  ``level1_price``..., ``variation_indicator``, ``order_reference_number`` for U's original
  reference): mapped below; the values agree.
"""

from __future__ import annotations

import os
import random

os.environ["ITCH_NO_CPP"] = "1"  # before the first import of itch

import numpy as np
import pytest

import itch_reference as ref
import itchflow

itch = pytest.importorskip("itch")
from itch.parser import MessageParser  # noqa: E402

pytestmark = pytest.mark.skipif(
    itch.USING_CPP_BACKEND,
    reason="itch was imported with its C++ backend before ITCH_NO_CPP=1 could be set",
)

# itchflow field name -> itchfeed attribute, where they differ
RENAMES = {
    "R": {"luld_reference_price_tier": "luld_ref"},
    "K": {"ipo_quotation_release_time": "ipo_release_time",
          "ipo_quotation_release_qualifier": "ipo_release_qualifier"},
    "J": {"auction_collar_extension": "auction_collar_extention"},
    "V": {"level_1": "level1_price", "level_2": "level2_price", "level_3": "level3_price"},
    "U": {"original_order_reference_number": "order_reference_number"},
    "I": {"price_variation_indicator": "variation_indicator"},
}


def itchfeed_messages(stream: bytes) -> list:
    return list(MessageParser().parse_stream(stream))


def assert_agree(stream: bytes, d=None) -> int:
    """Every itchfeed message and attribute equals itchflow's decode of the same bytes."""
    d = d if d is not None else itchflow.read(stream)
    theirs = itchfeed_messages(stream)
    rows = sorted((int(s), c, i) for c in d for i, s in enumerate(d[c]["sequence"]))
    assert len(theirs) == len(rows) == d.info.messages
    for m, (_, code, i) in zip(theirs, rows):
        assert m.message_type == code.encode()
        rec = d[code][i]
        names = [n for n in d[code].dtype.names if n != "sequence"]
        assert len(vars(m)) == len(names), (code, sorted(vars(m)), names)  # no field unchecked
        for name in names:
            attr = RENAMES.get(code, {}).get(name, name)
            theirs_v = getattr(m, attr)
            ours = rec[name]
            if isinstance(theirs_v, bytes):
                # itchflow keeps the fixed-width bytes; numpy drops trailing NULs on access only
                width = d[code].dtype[name].itemsize
                assert bytes(ours).ljust(width, b"\x00") == theirs_v.ljust(width, b"\x00"), (code, name)
            else:
                assert int(ours) == theirs_v, (code, name, int(ours), theirs_v)
    return len(theirs)


def test_real_captures_agree(all_captures):
    """Each capture's delivered messages (parsed from the packets by the test, no itchflow
    code), framed as BinaryFILE, decoded by both."""
    from test_captures import delivered, parse_capture

    total = 0
    for path in all_captures:
        stream = b"".join(ref.frame(raw) for _, raw in delivered(parse_capture(path)))
        total += assert_agree(stream)
    # 49 sequenced (39 in Multiple.Packets, one per other 2019 file) + all 178 messages of the
    # 2023 files, whose packets are unsequenced (sequence 0): every message is kept
    assert total == 227


def test_every_message_of_every_packet_agrees(all_captures):
    """All 227 message blocks in the captures (the 2023 files' sequence-0 repeats included):
    3 (Bx) + 46 (Nasdaq, Multiple.Packets 39) + 56 (Bx 2023) + 71 (Nasdaq 2023) + 51 (Psx 2023)."""
    from test_captures import parse_capture

    stream = b"".join(ref.frame(m) for p in all_captures for _, _, ms in parse_capture(p) for m in ms)
    assert assert_agree(stream) == 227


def _no_end_of_messages(code, fields):
    if code == "S" and fields["event_code"] == b"C":
        fields["event_code"] = b"Q"
    return fields


def test_random_stream_of_every_type_agrees():
    rng = random.Random(2024)
    out = bytearray()
    for i in range(6000):
        code = ref.CODES[i % len(ref.CODES)] if i < 230 else rng.choice(ref.CODES)
        out += ref.encode(code, _no_end_of_messages(code, ref.random_fields(code, rng)))
    n = assert_agree(bytes(out))
    assert n == 6000


def test_random_stream_alpha_any_byte_agrees():
    rng = random.Random(99)
    out = bytearray()
    for _ in range(2000):
        code = rng.choice(ref.CODES)
        out += ref.encode(code, _no_end_of_messages(code, ref.random_fields(code, rng, alpha_any_byte=True)))
    assert assert_agree(bytes(out)) == 2000


def test_itchfeed_stops_at_end_of_messages_itchflow_does_not():
    """A documented itchfeed behaviour, not a decoding disagreement: S/C ends its parse."""
    s_c = ref.encode("S", {"event_code": b"C", "timestamp": 1})
    a = ref.encode("A", {"timestamp": 2, "shares": 3})
    theirs = itchfeed_messages(s_c + a)
    assert [m.message_type for m in theirs] == [b"S"]
    d = itchflow.read(s_c + a)
    assert d.info.messages == 2 and len(d["A"]) == 1 and d["A"]["shares"][0] == 3
    assert np.array_equal(d["S"]["event_code"], [b"C"])
