"""Encoder: hand-worked hex, round trips through the decoder (hypothesis), bad values."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import itchflow
from itchflow.decode.encoder import encode, encode_message
from itchflow.wire.itch import ALPHA, MESSAGES, TIMESTAMP


def test_add_order_hex_worked_by_hand():
    b = encode_message("A", stock_locate=5, tracking_number=0, timestamp=34_200_000_000_001,
                       order_reference_number=42, buy_sell_indicator="B", shares=100,
                       stock="AAPL", price=1_500_000)
    # 0024 length 36 | 41 'A' | 0005 locate | 0000 tracking | 1f1aced9f001 = 34200000000001 ns
    # | 000000000000002a ref 42 | 42 'B' | 00000064 100 | "AAPL    " | 0016e360 = 1500000
    assert b.hex() == ("0024" "41" "0005" "0000" "1f1aced9f001" "000000000000002a" "42"
                       "00000064" "4141504c20202020" "0016e360")


def test_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        encode_message("A", shares=1 << 32)
    with pytest.raises(ValueError, match="longer than 8"):
        encode_message("A", stock="TOOLONGSYM")
    with pytest.raises(ValueError, match="does not fit"):
        encode_message("A", timestamp=1 << 48)
    with pytest.raises(KeyError, match="no field"):
        encode_message("D", shares=1)


def _field_strategy(f):
    if f.kind == ALPHA:
        return st.binary(min_size=f.size, max_size=f.size).map(lambda b: bytes(x % 95 + 32 for x in b))
    if f.kind == TIMESTAMP:
        return st.integers(0, (1 << 48) - 1)
    return st.integers(0, (1 << (8 * f.size)) - 1)


message_strategy = st.sampled_from(list(MESSAGES)).flatmap(
    lambda c: st.fixed_dictionaries({f.name: _field_strategy(f) for f in MESSAGES[c].fields[1:]})
    .map(lambda fields, c=c: (c, fields)))


@settings(max_examples=60, deadline=None)
@given(st.lists(message_strategy, min_size=1, max_size=60))
def test_round_trip_every_type(msgs):
    raw = b"".join(encode_message(c, **f) for c, f in msgs)
    d = itchflow.read(raw)
    assert d.messages == len(msgs)
    seen = {c: 0 for c in MESSAGES}
    for seq, (c, fields) in enumerate(msgs, start=1):
        rec = d[c][seen[c]]
        seen[c] += 1
        assert rec["sequence"] == seq
        for name, value in fields.items():
            assert rec[name] == value, (c, name)
    assert encode(d) == raw  # and back to the same bytes


def test_encode_merges_types_in_sequence_order():
    raw = (encode_message("S", event_code="O") + encode_message("A", order_reference_number=1)
           + encode_message("D", order_reference_number=1) + encode_message("A", order_reference_number=2))
    d = itchflow.read(raw)
    assert encode(d) == raw
    assert encode({"D": d["D"], "A": d["A"], "S": d["S"]}) == raw
    assert encode({}) == b""
