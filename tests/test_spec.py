"""The message table against the specification's own numbers, typed here independently."""

import numpy as np
import pytest

from itchflow.wire import itch as spec
# TotalView-ITCH 5.0 specification: message lengths, and field offsets worth pinning.
SPEC_LENGTHS = {"S": 12, "R": 39, "H": 25, "Y": 20, "L": 26, "V": 35, "W": 12, "K": 28, "J": 35,
                "h": 21, "A": 36, "F": 40, "E": 31, "C": 36, "X": 23, "D": 19, "U": 35, "P": 44,
                "Q": 40, "B": 19, "I": 50, "N": 20, "O": 48}
SPEC_OFFSETS = [("A", "order_reference_number", 11, 8), ("A", "buy_sell_indicator", 19, 1),
                ("A", "shares", 20, 4), ("A", "stock", 24, 8), ("A", "price", 32, 4),
                ("F", "attribution", 36, 4), ("E", "match_number", 23, 8), ("C", "printable", 31, 1),
                ("C", "execution_price", 32, 4), ("U", "new_order_reference_number", 19, 8),
                ("P", "match_number", 36, 8), ("Q", "shares", 11, 8), ("Q", "cross_type", 39, 1),
                ("I", "stock", 28, 8), ("I", "price_variation_indicator", 49, 1),
                ("R", "etp_leverage_factor", 34, 4), ("R", "inverse_indicator", 38, 1),
                ("L", "market_participant_state", 25, 1), ("O", "near_execution_time", 32, 8),
                ("O", "upper_price_range_collar", 44, 4), ("J", "auction_collar_extension", 31, 4),
                ("K", "ipo_price", 24, 4), ("H", "reason", 21, 4), ("h", "operational_halt_action", 20, 1),
                ("V", "level_3", 27, 8), ("B", "match_number", 11, 8), ("N", "interest_flag", 19, 1)]


def test_all_23_types_with_spec_lengths():
    assert {c: m.length for c, m in spec.MESSAGES.items()} == SPEC_LENGTHS
    assert len(spec.CODES) == 23


@pytest.mark.parametrize("code,name,offset,size", SPEC_OFFSETS)
def test_field_offsets(code, name, offset, size):
    f = spec.MESSAGES[code].field(name)
    assert (f.offset, f.size) == (offset, size)


def test_header_is_common():
    for m in spec.MESSAGES.values():
        assert [(f.name, f.offset, f.size) for f in m.fields[:4]] == [
            ("message_type", 0, 1), ("stock_locate", 1, 2), ("tracking_number", 3, 2), ("timestamp", 5, 6)]


def test_length_by_byte_matches_table_and_unknowns_are_zero():
    for c, m in spec.MESSAGES.items():
        assert spec.LENGTH_BY_BYTE[ord(c)] == m.length
    unknown = set(range(256)) - {ord(c) for c in spec.CODES}
    assert all(spec.LENGTH_BY_BYTE[b] == 0 for b in unknown)


def test_decoded_dtype_has_every_field_native_and_aligned():
    for c, m in spec.MESSAGES.items():
        dt = spec.DTYPES[c]
        assert dt.names == ("sequence",) + tuple(f.name for f in m.fields[1:])
        assert dt["timestamp"] == np.dtype(np.int64)
        for f in m.body_fields:
            col = dt[f.name]
            assert col.itemsize == f.size
            assert col.kind == ("S" if f.kind == spec.ALPHA else "u")
            assert dt.fields[f.name][1] % f.size == 0  # each column naturally aligned
        kd = spec.kernel_dtype(c)
        assert kd.itemsize == dt.itemsize
        assert [kd.fields[n][1] for n in kd.names] == [dt.fields[n][1] for n in dt.names]


def test_wire_dtype_is_the_framed_message():
    for c, m in spec.MESSAGES.items():
        assert spec.WIRE_DTYPES[c].itemsize == m.length + 2


def test_lookup_errors_are_clear():
    with pytest.raises(KeyError, match="not an ITCH 5.0 message type"):
        spec.message_type("Z")
    with pytest.raises(KeyError, match="has no field 'nope'"):
        spec.MESSAGES["A"].field("nope")


def test_price_helpers():
    assert spec.price4_to_float(1234500) == 123.45
    assert spec.float_to_price4(123.45) == 1234500
    np.testing.assert_array_equal(spec.float_to_price4([0.0001, 200000.0]), [1, 2_000_000_000])
    assert spec.price8_to_float(150_000_000) == 1.5


@pytest.mark.parametrize("bad", [-1.0, -0.00006, 429496.7296, 500000.0, float("nan"), float("inf")])
def test_float_to_price4_refuses_what_the_field_cannot_hold_for_arrays_too(bad):
    """An array wrapped around (500000.0 -> 705032704, -1.0 -> 4294957296, NaN -> 0) while a
    number came out as an int no Price(4) field holds; both are a ValueError naming the price."""
    for x in (bad, [1.0, bad], np.array([[bad]])):
        with pytest.raises(ValueError, match="does not fit a Price\\(4\\) field"):
            spec.float_to_price4(x)
    assert spec.float_to_price4([0.0, 429496.7295, -0.00004]).tolist() == [0, 0xFFFFFFFF, 0]
