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


def _day() -> bytes:
    return (encode_message("R", stock_locate=1, stock="AAA", timestamp=1)
            + encode_message("A", stock_locate=1, timestamp=2, order_reference_number=7, buy_sell_indicator="B",
                             shares=100, stock="AAA", price=1_000_000))


def test_a_dataframe_encodes_to_the_same_bytes():
    """DataFrame columns hold stripped text objects: they came out NUL-padded (b"AAA\\0\\0\\0\\0\\0",
    a symbol no book finds) instead of space-padded as ITCH pads."""
    raw = _day()
    d = itchflow.read(raw)
    assert encode({"R": d.to_pandas("R"), "A": d.to_pandas("A")}) == raw
    assert encode({"R": d["R"], "A": d["A"]}) == raw


@pytest.mark.parametrize("field, value, error, match", [
    ("price", -1, ValueError, r"A\.price: -1 does not fit 4 bytes"),
    ("price", 1 << 33, ValueError, r"A\.price: 8589934592 does not fit 4 bytes"),
    ("shares", -5, ValueError, r"A\.shares: -5 does not fit 4 bytes"),
    ("price", 10.55, TypeError, r"A\.price: whole numbers, not float64"),
    ("stock", "ABCDEFGHI", ValueError, r"A\.stock: b'ABCDEFGHI' is longer than 8 bytes"),
    ("stock", 5, TypeError, r"A\.stock: text \(str or bytes\), not"),   # (it became 5 NUL bytes)
])
def test_encode_refuses_columns_that_do_not_fit_instead_of_wrapping(field, value, error, match):
    """Out-of-range numbers wrapped (price -1 -> 4294967295, 2**33 -> 0), floats were truncated
    (10.55 -> 10) and a 9-character stock cut to 8, silently."""
    frame = itchflow.read(_day()).to_pandas("A")
    frame[field] = [value]
    with pytest.raises(error, match=match):
        encode({"A": frame})


@pytest.mark.parametrize("fields, error, match", [
    ({"price": 12.34}, TypeError, r"A\.price must be a whole number, not 12\.34"),
    ({"price": True}, TypeError, r"A\.price must be a whole number"),
    ({"price": "5"}, TypeError, r"A\.price must be a whole number"),
    ({"price": None}, TypeError, r"A\.price must be a whole number"),
    ({"stock": 5}, TypeError, r"A\.stock: text \(str or bytes\), not 5"),
    ({"stock": [65, 66]}, TypeError, r"A\.stock: text"),
    ({"stock": "ÄPPL"}, ValueError, r"A\.stock: 'ÄPPL' is not ASCII"),
])
def test_encode_message_refuses_values_of_the_wrong_type_naming_the_field(fields, error, match):
    """A float price was truncated (12.34 -> 12), True read as 1, an int stock written as NULs;
    a str price or a non-ASCII stock raised errors that named no field."""
    with pytest.raises(error, match=match):
        encode_message("A", **fields)


def _capture_of(sessions_and_numbers, tmp_path):
    """A pcap: each packet (session, number, messages); returns its path and its stream, the
    messages in the order the capture stands for them."""
    import itch_reference as ref

    frames = [ref.eth_ipv4_udp(ref.mold_packet(s, q, [m[2:] for m in ms])) for s, q, ms in sessions_and_numbers]
    path = tmp_path / "two.pcap"
    path.write_bytes(ref.pcap_file(frames))
    return path


def _ops():
    a1 = encode_message("A", stock_locate=1, timestamp=1, order_reference_number=1, buy_sell_indicator="B",
                        shares=100, stock="X", price=100)
    d1 = encode_message("D", stock_locate=1, timestamp=2, order_reference_number=1)
    a2 = encode_message("A", stock_locate=1, timestamp=3, order_reference_number=2, buy_sell_indicator="S",
                        shares=50, stock="X", price=200)
    x2 = encode_message("X", stock_locate=1, timestamp=4, order_reference_number=2, cancelled_shares=10)
    return a1, d1, a2, x2


@pytest.mark.parametrize("form", ["two sessions", "anonymised"])
def test_a_capture_whose_numbers_do_not_order_it_is_refused_and_renumbered_is_bit_exact(tmp_path, form):
    """encode(read(capture)) put A1 A2 X2 D1 for the stream A1 D1 A2 X2 of a capture whose two
    sessions each number from 1 (or whose packets all say 0): the delete after the add it
    deletes came out before it (books: duplicate_add, no live order). It is refused now, and
    read(renumber=True) numbers the stream so that encode gives it back bit for bit."""
    a1, d1, a2, x2 = _ops()
    packets = ([(b"S1", 1, [a1, d1]), (b"S2", 1, [a2, x2])] if form == "two sessions"
               else [(b"S1", 0, [a1, d1]), (b"S1", 0, [a2, x2])])
    path = _capture_of(packets, tmp_path)
    with pytest.raises(ValueError, match="renumber=True"):
        encode(itchflow.read(path))
    d = itchflow.read(path, renumber=True)
    assert sorted(int(q) for c in "ADX" for q in d[c]["sequence"]) == [1, 2, 3, 4]
    stream = encode(d)
    assert stream == a1 + d1 + a2 + x2
    books = itchflow.Books().replay(path)
    again = itchflow.Books()
    again.apply(stream)
    assert again.live_orders() == books.live_orders() == 1
    assert again.order_table().tolist() == books.order_table().tolist()
    assert again.anomaly_counts.sum() == 0
    scanned = list(itchflow.scan(path, renumber=True))
    assert b"".join(encode(p) for p in scanned) == stream


def test_one_types_rows_of_one_number_keep_their_order():
    """Hand-made arrays with every number 0, of one type: their rows' order is the order."""
    import numpy as np

    rows = np.zeros(3, itchflow.DTYPES["D"])
    rows["order_reference_number"] = [3, 1, 2]
    out = encode({"D": rows})
    assert [int(r) for r in itchflow.read(out)["D"]["order_reference_number"]] == [3, 1, 2]
