"""Real Nasdaq MoldUDP64 captures (shared/data/omi-itch50), decoded field by field.

Expected values were worked out by hand from each packet's hex (the hex is in the comment
next to each literal: the message split at the specification's field boundaries). A second,
broader check parses every capture here with ``struct`` (pcap record, Ethernet, IPv4, UDP,
MoldUDP64 header, message blocks) and compares every message with the slow reference
decoder in ``itch_reference``.

Facts about these captures, read from their hex:
- the ``Nasdaq/Bx.Equities.TotalView.Itch.v5.0`` files are single real packets (session
  ``000010059B`` / ``000010059D``), except ``Multiple.Packets.pcap``: packet 1 is one ``D``
  at sequence 14764496, packet 2 is the genuine 1480-byte UDP payload with 38 messages
  (36 ``A``, 2 ``F``) from sequence 19009117;
- the ``*.20230822`` files hold 5 packets whose MoldUDP64 header is zeroed (session of ten
  NUL bytes, sequence 0, count 1). The 5 messages differ. Sequence 0 is not a MoldUDP64 data
  sequence (they start at 1): such packets are unsequenced, so all 5 messages are delivered
  in capture order (nothing says two of them are the same) and counted as unsequenced.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import itch_reference as ref
import itchflow
from itchflow.errors import ITCHFormatError

NASDAQ = "Nasdaq.Equities.TotalView.Itch.v5.0"
NASDAQ23 = "Nasdaq.Equities.TotalView.Itch.v5.0.20230822"
BX = "Bx.Equities.TotalView.Itch.v5.0"
BX23 = "Bx.Equities.TotalView.Itch.v5.0.20230822"
PSX23 = "Psx.Equities.TotalView.Itch.v5.0.20230822"


# --------------------------------------------------------------------------- own capture parse
def parse_capture(path: Path) -> list[tuple[bytes, int, list[bytes]]]:
    """(session, sequence, [messages]) per packet, parsed with struct in the test."""
    data = path.read_bytes()
    (magic,) = struct.unpack_from("<I", data, 0)
    assert magic in (0xA1B2C3D4, 0xA1B23C4D)  # little-endian pcap, micro- or nanosecond stamps
    (linktype,) = struct.unpack_from("<I", data, 20)
    assert linktype == 1  # Ethernet
    packets, p = [], 24
    while p < len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, p)
        frame = data[p + 16:p + 16 + incl]
        p += 16 + incl
        ip = 14
        while frame[ip - 2:ip] == b"\x81\x00":  # 802.1Q VLAN tag (some of the Bx captures)
            ip += 4
        assert frame[ip - 2:ip] == b"\x08\x00"  # IPv4
        ihl = (frame[ip] & 15) * 4
        assert frame[ip + 9] == 17  # UDP
        udp = ip + ihl
        (udp_len,) = struct.unpack_from(">H", frame, udp + 4)
        payload = frame[udp + 8:udp + udp_len]
        session, seq, count = payload[:10], *struct.unpack_from(">QH", payload, 10)
        msgs, q = [], 20
        for _ in range(count):
            (n,) = struct.unpack_from(">H", payload, q)
            msgs.append(payload[q + 2:q + 2 + n])
            q += 2 + n
        assert q == len(payload)
        packets.append((session, seq, msgs))
    return packets


def delivered(packets) -> list[tuple[int, bytes]]:
    """(sequence, message) delivered once each, first arrival wins, in sequence order; then
    the messages of unsequenced packets (sequence 0), every one, in capture order."""
    seen: dict[tuple[bytes, int], bytes] = {}
    unsequenced = []
    for session, seq, msgs in packets:
        for k, m in enumerate(msgs):
            if seq == 0:
                unsequenced.append((k, m))
            else:
                seen.setdefault((session, seq + k), m)
    return sorted([(s, m) for (_, s), m in sorted(seen.items())] + unsequenced, key=lambda x: x[0])


def stream_order(d) -> list[tuple[int, str, int]]:
    """(sequence, letter, row) of every decoded message, merged back into sequence order."""
    rows = [(int(s), c, i) for c in d for i, s in enumerate(d[c]["sequence"])]
    return sorted(rows)


def assert_record(rec, expected: dict):
    for name, value in expected.items():
        got = rec[name]
        got = bytes(got) if isinstance(value, bytes) else int(got)
        assert got == value, f"{name}: decoded {got!r}, expected {value!r}"


# --------------------------------------------------------------------------- hand-worked
# (folder, file, MoldUDP64 sequence, letter, fields). Each value comes from the hex shown.
HAND = [
    (NASDAQ23, "SystemEvent.pcap", 0, "S", {
        # 53 | 0000 | 0000 | 1f1acedb02f0 | 51
        "stock_locate": 0, "tracking_number": 0,
        "timestamp": 0x1F1ACEDB02F0,  # 34,200,000,070,384 ns = 09:30:00.000070384
        "event_code": b"Q",           # start of market hours
    }),
    (BX23, "SystemEventMessage.pcap", 0, "S", {
        # 53 | 0000 | 0000 | 1f1acedb3cea | 51
        "stock_locate": 0, "tracking_number": 0, "timestamp": 34200000085226, "event_code": b"Q",
    }),
    (NASDAQ, "StockTradingActionMessage.pcap", 34147961, "H", {
        # 48 | 01d0 | 0000 | 1f9df77c9e20 | 414d432020202020 | 54 | 20 | 20202020
        "stock_locate": 464, "tracking_number": 0, "timestamp": 34763322465824,  # 09:39:23.322465824
        "stock": b"AMC     ", "trading_state": b"T", "reserved": b" ", "reason": b"    ",
    }),
    (NASDAQ23, "RegSHORestriction.pcap", 0, "Y", {
        # 59 | 24bd | 0000 | 1f1ad5cc18b7 | 534f504120202020 | 31
        "stock_locate": 9405, "tracking_number": 0, "timestamp": 34200116533431,
        "stock": b"SOPA    ", "reg_sho_action": b"1",
    }),
    (NASDAQ, "MarketParticipantPositionMessage.pcap", 17861990, "L", {
        # 4c | 0e93 | 0000 | 1f2082daf82d | 4d41584d | 46474d4320202020 | 59 | 4e | 41
        "stock_locate": 3731, "tracking_number": 0, "timestamp": 34224494802989,
        "mpid": b"MAXM", "stock": b"FGMC    ", "primary_market_maker": b"Y",
        "market_maker_mode": b"N", "market_participant_state": b"A",
    }),
    (NASDAQ, "AddOrderNoMpidAttributionMessage.pcap", 14757721, "A", {
        # 41 | 1598 | 0000 | 1f1aced85306 | 000000000166b53e | 42 | 00000640 | 49564f4f20202020 | 000d55ac
        "stock_locate": 5528, "tracking_number": 0, "timestamp": 34199999894278,
        "order_reference_number": 23508286, "buy_sell_indicator": b"B", "shares": 1600,
        "stock": b"IVOO    ", "price": 873900,  # $87.3900
    }),
    (BX, "AddOrderNoMpidAttributionMessage.pcap", 1621717, "A", {
        # 41 | 020c | 0000 | 1f1aced02127 | 000000000017aba5 | 42 | 0000012c | 414d5a5520202020 | 0003b40c
        "stock_locate": 524, "tracking_number": 0, "timestamp": 34199999357223,
        "order_reference_number": 1551269, "buy_sell_indicator": b"B", "shares": 300,
        "stock": b"AMZU    ", "price": 242700,
    }),
    (PSX23, "AddOrderWithMpidAttributionMessage.pcap", 0, "F", {
        # 46 | 1a03 | 0000 | 1f1acef3275f | 00000000000e0900 | 42 | 00000064 | 4d4d4d2020202020 | 000c2498 | 50554e44
        "stock_locate": 6659, "tracking_number": 0, "timestamp": 34200001652575,
        "order_reference_number": 919808, "buy_sell_indicator": b"B", "shares": 100,
        "stock": b"MMM     ", "price": 795800, "attribution": b"PUND",
    }),
    (NASDAQ, "OrderExecutedMessage.pcap", 14757745, "E", {
        # 45 | 0929 | 0002 | 1f1aced8f061 | 000000000166929a | 00000019 | 000000000003e63b
        "stock_locate": 2345, "tracking_number": 2, "timestamp": 34199999934561,
        "order_reference_number": 23499418, "executed_shares": 25, "match_number": 255547,
    }),
    (BX23, "OrderExecutedWithPriceMessage.pcap", 0, "C", {
        # 43 | 1d89 | 0002 | 1f1b1815a55a | 000000000030f543 | 00000005 | 0000000000006d53 | 59 | 0011f47c
        "stock_locate": 7561, "tracking_number": 2, "timestamp": 34201228649818,
        "order_reference_number": 3208515, "executed_shares": 5, "match_number": 27987,
        "printable": b"Y", "execution_price": 1176700,
    }),
    (NASDAQ23, "OrderCancel.pcap", 0, "X", {
        # 58 | 24c5 | 0000 | 1f1acefe785d | 0000000002041a00 | 00000064
        "stock_locate": 9413, "tracking_number": 0, "timestamp": 34200002394205,
        "order_reference_number": 33823232, "cancelled_shares": 100,
    }),
    (NASDAQ, "OrderDeleteMessage.pcap", 14757722, "D", {
        # 44 | 0dbd | 0000 | 1f1aced85ad8 | 0000000001668bd6
        "stock_locate": 3517, "tracking_number": 0, "timestamp": 34199999896280,
        "order_reference_number": 23497686,
    }),
    (BX, "OrderDeleteMessage.pcap", 1621741, "D", {
        # 44 | 1027 | 0000 | 1f1aced2aed3 | 00000000002c493a
        "stock_locate": 4135, "tracking_number": 0, "timestamp": 34199999524563,
        "order_reference_number": 2902330,
    }),
    (NASDAQ, "OrderReplaceMessage.pcap", 14757701, "U", {
        # 55 | 1db3 | 0000 | 1f1aced771e9 | 0000000000e6897f | 000000000145f2c7 | 00000064 | 001036c8
        "stock_locate": 7603, "tracking_number": 0, "timestamp": 34199999836649,
        "original_order_reference_number": 15108479, "new_order_reference_number": 21361351,
        "shares": 100, "price": 1062600,
    }),
    (BX, "OrderReplaceMessage.pcap", 1621746, "U", {
        # 55 | 0b5c | 0000 | 1f1aced4d5e3 | 00000000002782ee | 00000000003608fe | 00000064 | 00085fc0
        "stock_locate": 2908, "tracking_number": 0, "timestamp": 34199999665635,
        "original_order_reference_number": 2589422, "new_order_reference_number": 3541246,
        "shares": 100, "price": 548800,
    }),
    (NASDAQ23, "NonCrossTrade.pcap", 0, "P", {
        # 50 | 1193 | 0002 | 1f1acee462a9 | 0000000000000000 | 42 | 00000064 | 474f4f474c202020 | 001399f8 | 000000000003e642
        "stock_locate": 4499, "tracking_number": 2, "timestamp": 34200000684713,
        "order_reference_number": 0, "buy_sell_indicator": b"B", "shares": 100,
        "stock": b"GOOGL   ", "price": 1284600, "match_number": 255554,
    }),
    (NASDAQ23, "CrossTrade.pcap", 0, "Q", {
        # 51 | 03d7 | 0001 | 1f1acee15003 | 0000000000000000 | 4241432d51202020 | 00000000 | 000000000003e63e | 4f
        "stock_locate": 983, "tracking_number": 1, "timestamp": 34200000483331,
        "shares": 0, "stock": b"BAC-Q   ", "cross_price": 0, "match_number": 255550, "cross_type": b"O",
    }),
    (NASDAQ23, "LULDAuctionCollar.pcap", 0, "J", {
        # 4a | 2c3d | 0000 | 1f1e703b4f95 | 5a585a5a54202020 | 00020918 | 00022344 | 0001aa90 | 00000000
        "stock_locate": 11325, "tracking_number": 0, "timestamp": 34215592415125,
        "stock": b"ZXZZT   ", "auction_collar_reference_price": 133400,
        "upper_auction_collar_price": 140100, "lower_auction_collar_price": 109200,
        "auction_collar_extension": 0,
    }),
    (NASDAQ, "NetOrderImbalanceIndicatorMessage.pcap", 14757919, "I", {
        # 49 | 193e | 0000 | 1f1acede0ab2 | 0000000000000001 | 0000000000000000 | 4e | 4d44432020202020
        #    | 00071610 | 00071610 | 00071610 | 4f | 4c
        "stock_locate": 6462, "tracking_number": 0, "timestamp": 34200000268978,
        "paired_shares": 1, "imbalance_shares": 0, "imbalance_direction": b"N", "stock": b"MDC     ",
        "far_price": 464400, "near_price": 464400, "current_reference_price": 464400,
        "cross_type": b"O", "price_variation_indicator": b"L",
    }),
    (BX23, "RetailInterestMessage.pcap", 0, "N", {
        # 4e | 04ea | 0000 | 1f1aceceff2f | 42495a4420202020 | 4e
        "stock_locate": 1258, "tracking_number": 0, "timestamp": 34199999282991,
        "stock": b"BIZD    ", "interest_flag": b"N",
    }),
]


@pytest.mark.parametrize("folder,name,sequence,code,fields", HAND,
                         ids=[f"{c}-{f.split('.')[0]}-{n}" for f, n, _, c, _ in HAND])
def test_hand_worked_message(captures_dir, folder, name, sequence, code, fields):
    d = itchflow.read(captures_dir / folder / name)
    # 2023 files: unsequenced packets (sequence 0), every message kept
    n = sum(len(m) for _, _, m in parse_capture(captures_dir / folder / name)) if sequence == 0 else 1
    assert d.info.messages == n
    assert {c: k for c, k in d.info.by_type.items() if k} == {code: n}
    assert d.info.unknown == 0
    rec = d[code][0]                # the first in capture order: the hand-worked packet 1
    assert int(rec["sequence"]) == sequence
    assert_record(rec, fields)
    # every decoded column was hand-checked (sequence + the fields above)
    assert set(d[code].dtype.names) == {"sequence", *fields}
    assert d.info.first_timestamp_ns == fields["timestamp"]
    if n == 1:
        assert d.info.last_timestamp_ns == fields["timestamp"]
        assert d.info.stocks == (1 if fields["stock_locate"] else 0)


def test_hand_worked_covers_every_type_in_the_captures(all_captures):
    in_captures = {chr(m[0]) for p in all_captures for _, _, ms in parse_capture(p) for m in ms}
    assert in_captures == set("SHYLAFECXDUPQJIN")
    assert {c for *_, c, _ in HAND} == in_captures


# --------------------------------------------------------------------------- Multiple.Packets
# Message types of packet 2 in order, read from its 38 message blocks (length prefix 0x24 = A,
# 0x28 = F): the F blocks are the 9th and the 14th.
MULTI_TYPES = "AAAAAAAA" "F" "AAAA" "F" + "A" * 24
MULTI_FIRST_SEQ = 19009117  # packet 2 header: 30303030313030353942 | 0000000001220e5d | 0026
MULTI_D_SEQ = 14764496      # packet 1 header: 30303030313030353942 | 0000000000e149d0 | 0001


def test_multiple_packets_all_38_messages(captures_dir):
    path = captures_dir / NASDAQ / "Multiple.Packets.pcap"
    d = itchflow.read(path)
    assert len(MULTI_TYPES) == 38
    assert d.info.messages == 39
    assert {c: n for c, n in d.info.by_type.items() if n} == {"A": 36, "F": 2, "D": 1}
    order = stream_order(d)
    assert [s for s, _, _ in order] == [MULTI_D_SEQ] + list(range(MULTI_FIRST_SEQ, MULTI_FIRST_SEQ + 38))
    assert "".join(c for _, c, _ in order) == "D" + MULTI_TYPES

    # packet 1: 44 | 0ab1 | 0000 | 1f1acf4c4eb7 | 0000000001665d6a
    assert_record(d["D"][0], {"sequence": MULTI_D_SEQ, "stock_locate": 2737, "tracking_number": 0,
                              "timestamp": 34200007495351, "order_reference_number": 23485802})
    # all 38 of packet 2 share locate 0x1972 = 6514, tracking 0, timestamp 1f23e0981ae1, META
    for c in "AF":
        a = d[c]
        assert (a["stock_locate"] == 6514).all() and (a["tracking_number"] == 0).all()
        assert (a["timestamp"] == 0x1F23E0981AE1).all() and (a["stock"] == b"META    ").all()
    # first A: 41 | 1972 | 0000 | 1f23e0981ae1 | 0000000000792f9f | 42 | 00000001 | 4d455441.. | 000c4950
    assert_record(d["A"][0], {"sequence": 19009117, "order_reference_number": 7942047,
                              "buy_sell_indicator": b"B", "shares": 1, "price": 805200})
    # last A: ... | 0000000000514207 | 53 | 00000001 | 4d455441.. | 0036a060
    assert_record(d["A"][-1], {"sequence": 19009154, "order_reference_number": 5325319,
                               "buy_sell_indicator": b"S", "shares": 1, "price": 3580000})
    # F #1: ... | 000000000094d0a7 | 42 | 00000005 | 4d455441.. | 000c394c | 55425353
    assert_record(d["F"][0], {"sequence": 19009125, "order_reference_number": 9752743,
                              "buy_sell_indicator": b"B", "shares": 5, "price": 801100,
                              "attribution": b"UBSS"})
    # F #2: ... | 00000000009c681f | 53 | 00000070 | 4d455441.. | 00369c14 | 55425353
    assert_record(d["F"][1], {"sequence": 19009130, "order_reference_number": 10250271,
                              "buy_sell_indicator": b"S", "shares": 112, "price": 3578900,
                              "attribution": b"UBSS"})

    # framed bytes delivered: D 2+19, 36 x (2+36), 2 x (2+40)
    assert d.info.bytes == 21 + 36 * 38 + 2 * 42
    assert d.info.first_timestamp_ns == 34200007495351
    assert d.info.last_timestamp_ns == 0x1F23E0981AE1
    assert d.info.stocks == 2  # locates 2737 and 6514

    cap = d.info.capture
    assert cap["packets"] == 2 and cap["data_packets"] == 2
    assert cap["messages"] == 39
    assert cap["duplicate_messages"] == 0
    # one hole: after 14764496 the next expected is 14764497, packet 2 starts at 19009117
    assert cap["gaps"] == 1
    assert cap["missing_messages"] == 19009117 - 14764497 == 4244620
    assert cap["malformed_packets"] == 0 and cap["heartbeats"] == 0 and cap["end_of_session"] == 0
    assert cap["not_udp"] == 0 and cap["ip_fragments"] == 0 and cap["snapped"] == 0
    assert cap["sessions"] == ["000010059B"]

    s = itchflow.stats(path)
    assert (s.messages, s.bytes, s.by_type, s.stocks) == (39, d.info.bytes, d.info.by_type, 2)
    assert s.capture == cap


def test_multiple_packets_scan_in_small_pieces(captures_dir):
    path = captures_dir / NASDAQ / "Multiple.Packets.pcap"
    whole = itchflow.read(path)
    pieces = list(itchflow.scan(path, chunk_messages=5))
    assert sum(p.info.messages for p in pieces) == 39
    for c in "ADF":
        joined = np.concatenate([p[c] for p in pieces])
        for name in joined.dtype.names:  # field by field (alignment padding is not data)
            assert np.array_equal(joined[name], whole[c][name]), (c, name)


# --------------------------------------------------------------------------- 2023 duplicates
FIVE_PACKET_FILES = sorted(
    (folder, name)
    for folder, names in {
        NASDAQ23: ["AddOrderNoMPID", "AddOrderWithMPID", "CrossTrade", "LULDAuctionCollar",
                   "MarketParticipantPosition", "NetOrderImbalanceIndicator", "NonCrossTrade",
                   "OrderCancel", "OrderDelete", "OrderExecuted", "OrderExecutedWithPrice",
                   "OrderReplace", "RegSHORestriction", "StockTradingAction"],
        BX23: ["AddOrderMpidAttributionMessage", "AddOrderNoMpidAttributionMessage",
               "NonCrossTradeMessage", "OrderCancelMessage", "OrderDeleteMessage",
               "OrderExecutedMessage", "OrderExecutedWithPriceMessage", "OrderReplaceMessage",
               "RegShoShortSalePriceTestRestrictedIndicatorMessage", "RetailInterestMessage",
               "StockTradingActionMessage"],
        PSX23: ["AddOrderNoMpidAttributionMessage", "AddOrderWithMpidAttributionMessage",
                "OrderCancelMessage", "OrderDeleteMessage", "OrderExecutedMessage",
                "OrderExecutedWithPriceMessage", "OrderReplaceMessage",
                "RegShoShortSalePriceTestRestrictedIndicatorMessage", "StockTradingActionMessage",
                "TradeMessageNon-cross"],
    }.items()
    for name in names
)


@pytest.mark.parametrize("folder,name", FIVE_PACKET_FILES, ids=[f"{f[:3]}-{n}" for f, n in FIVE_PACKET_FILES])
def test_2023_five_packets_same_sequence_delivered_once(captures_dir, folder, name):
    path = captures_dir / folder / f"{name}.pcap"
    packets = parse_capture(path)
    assert len(packets) == 5
    assert all(s == bytes(10) and q == 0 and len(m) == 1 for s, q, m in packets)
    d = itchflow.read(path)
    cap = d.info.capture
    assert cap["packets"] == 5 and cap["data_packets"] == 5
    assert cap["messages"] == 5 and cap["duplicate_messages"] == 0
    assert cap["unsequenced_packets"] == 5 and cap["unsequenced_messages"] == 5
    assert cap["gaps"] == 0 and cap["missing_messages"] == 0
    assert cap["sessions"] == [""]  # ten NUL bytes
    assert d.info.messages == 5
    # every message, in capture order, decoded exactly as the reference does
    rows = sorted((i, c) for c in d for i in range(len(d[c])))
    assert len(rows) == 5
    by_code: dict[str, int] = {}
    for _, _, (raw,) in packets:
        code = chr(raw[0])
        rec = d[code][by_code.get(code, 0)]
        by_code[code] = by_code.get(code, 0) + 1
        assert int(rec["sequence"]) == 0
        assert_record(rec, ref.decode_message(raw))


def test_message_counts_match_a_slow_independent_pcap_walk(all_captures):
    """Every capture: the messages itchflow.read delivers = the sequenced messages counted
    once by (session, sequence) + every message of a sequence-0 packet, counted here by
    walking the pcap with struct; with dedup=False, every message of every packet."""
    unsequenced_files = 0
    for path in all_captures:
        packets = parse_capture(path)
        once = {(session, seq + k) for session, seq, msgs in packets if seq for k in range(len(msgs))}
        unsequenced = sum(len(msgs) for _, seq, msgs in packets if seq == 0)
        unsequenced_files += unsequenced > 0
        d = itchflow.read(path)
        assert d.info.messages == len(once) + unsequenced, path
        assert d.info.capture["unsequenced_messages"] == unsequenced, path
        assert itchflow.read(path, dedup=False).info.messages == sum(len(m) for _, _, m in packets), path
    assert unsequenced_files == 38   # 12 Bx + 15 Nasdaq + 11 Psx files of 2023-08-22


# --------------------------------------------------------------------------- every capture
def test_every_capture_agrees_with_own_parse_and_reference(all_captures):
    assert len(all_captures) == 49  # 3 Bx + 12 Bx 2023 + 8 Nasdaq + 15 Nasdaq 2023 + 11 Psx 2023
    for path in all_captures:
        packets = parse_capture(path)
        want = delivered(packets)
        d = itchflow.read(path)
        order = stream_order(d)
        assert [s for s, _, _ in order] == [s for s, _ in want], path
        for (seq, code, row), (_, raw) in zip(order, want):
            assert code == chr(raw[0]), path
            rec = d[code][row]
            assert_record(rec, ref.decode_message(raw))
        total = sum(len(m) for _, _, m in packets)
        cap = d.info.capture
        assert cap["packets"] == len(packets), path
        assert cap["messages"] == len(want), path
        assert cap["duplicate_messages"] == total - len(want), path
        _, st = ref.decode(b"".join(ref.frame(raw) for _, raw in want))
        s = itchflow.stats(path)
        assert s.messages == st.messages and s.bytes == st.bytes and s.by_type == st.by_type, path
        assert (s.first_timestamp_ns, s.last_timestamp_ns) == (st.first_timestamp_ns, st.last_timestamp_ns)
        assert s.stocks == st.stocks and s.unknown == 0, path


# --------------------------------------------------------------------------- reassembly model
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _msg_for(seq: int) -> bytes:
    """The message a feed sends at a sequence number (content depends on it only)."""
    return ref.encode_body("D", {"order_reference_number": seq, "stock_locate": seq % 7, "timestamp": seq})


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 6)), min_size=1, max_size=25),
       st.randoms(use_true_random=False))
def test_capture_counters_match_a_simple_model(packets, rnd):
    """Random packets (overlaps, repeats, reordering, heartbeats as count 0) in one session:
    every sequence seen is delivered once in order; repeats are duplicates; holes between the
    first sequence and the highest announced one are gaps and missing messages."""
    rnd.shuffle(packets)
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"SESS", s, [_msg_for(s + k) for k in range(n)]))
              for s, n in packets]
    d = itchflow.read(ref.pcap_file(frames))
    seen = [s + k for s, n in packets for k in range(n)]
    distinct = sorted(set(seen))
    first = min(s for s, _ in packets)
    announced = max(s + n for s, n in packets)  # next expected after every packet, heartbeats too
    have = set(distinct)
    missing = [q for q in range(first, announced) if q not in have]
    holes = sum(1 for q in missing if q - 1 not in missing)
    cap = d.info.capture
    assert d["D"]["sequence"].tolist() == distinct
    assert d["D"]["order_reference_number"].tolist() == distinct
    assert cap["messages"] == len(distinct)
    assert cap["duplicate_messages"] == len(seen) - len(distinct)
    assert cap["missing_messages"] == len(missing)
    if all(n for _, n in packets):  # (heartbeats inside a hole: see the test below)
        assert cap["gaps"] == holes
    assert cap["heartbeats"] == sum(1 for _, n in packets if n == 0)
    assert cap["packets"] == len(packets)


def test_one_hole_crossed_by_a_heartbeat_is_one_gap():
    """Messages 2..9 lost; a heartbeat announcing 6 arrived in the middle of the loss. That is
    one hole of 8 messages, as it would be without the heartbeat (today: counted as 2 gaps)."""
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"S", 1, [_msg_for(1)])),
              ref.eth_ipv4_udp(ref.mold_packet(b"S", 6, [], count=0)),
              ref.eth_ipv4_udp(ref.mold_packet(b"S", 10, [_msg_for(10)]))]
    without = itchflow.read(ref.pcap_file([frames[0], frames[2]])).info.capture
    assert (without["gaps"], without["missing_messages"]) == (1, 8)
    cap = itchflow.read(ref.pcap_file(frames)).info.capture
    assert cap["missing_messages"] == 8
    assert cap["gaps"] == 1


def test_snapped_fragmented_and_non_udp_records_are_counted():
    s = ref.encode_body("S", {"event_code": b"O"})
    good = ref.eth_ipv4_udp(ref.mold_packet(b"X", 1, [s]))
    frag = bytearray(ref.eth_ipv4_udp(ref.mold_packet(b"X", 2, [s])))
    frag[14 + 6] = 0x20  # IPv4 flags: more fragments
    tcp = bytearray(ref.eth_ipv4_udp(b"\x00" * 20))
    tcp[14 + 9] = 6
    snapped = ref.eth_ipv4_udp(ref.mold_packet(b"X", 3, [s]))
    data = bytearray(ref.pcap_file([good, bytes(frag), bytes(tcp)]))
    # a record whose captured length is shorter than the packet (snap length)
    cut = snapped[:30]
    data += struct.pack("<IIII", 0, 0, len(cut), len(snapped)) + cut
    d = itchflow.read(bytes(data))
    cap = d.info.capture
    assert (cap["packets"], cap["data_packets"], cap["ip_fragments"], cap["not_udp"], cap["snapped"]) == (4, 1, 1, 1, 1)
    assert d["S"]["sequence"].tolist() == [1]


@pytest.mark.parametrize("in_parts", [False, True])
def test_an_itch_message_of_the_wrong_length_makes_its_packet_malformed(tmp_path, monkeypatch, in_parts):
    """A packet holding an ITCH type at another length than ITCH 5.0's (here an A of 20 bytes:
    36 by the specification) is a malformed packet. Strict: an error naming the packet, the
    block's byte in the file and both lengths; lenient: the packet counted as malformed and
    its messages as missing, the rest delivered. The same read a part of one packet at a time
    (as a large capture in file order is): the packet is named by its number in the capture."""
    if in_parts:
        import itchflow.protocol.mold.capture as capture
        import itchflow.wire.pcap as pcap

        monkeypatch.setattr(capture, "STREAM_PACKETS", 0)
        monkeypatch.setattr(pcap, "TABLE_BATCH", 1)
    short_add = b"A" + bytes(19)
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"S", 1, [_msg_for(1)])),
              ref.eth_ipv4_udp(ref.mold_packet(b"S", 2, [_msg_for(2), short_add])),
              ref.eth_ipv4_udp(ref.mold_packet(b"S", 4, [_msg_for(4)]))]
    path = tmp_path / "short-add.pcap"
    path.write_bytes(ref.pcap_file(frames))
    raw = path.read_bytes()
    at = raw.index(ref.mold_packet(b"S", 2, [_msg_for(2), short_add])) + 20 + 2 + len(_msg_for(2))
    with pytest.raises(ITCHFormatError) as err:
        itchflow.read(str(path))
    assert (err.value.packet, err.value.offset) == (2, at)
    assert "type 'A' is 36 bytes, this block 20" in str(err.value) and str(path) in str(err.value)
    d = itchflow.read(str(path), strict=False)
    cap = d.info.capture
    assert (cap["malformed_packets"], cap["messages"], cap["gaps"], cap["missing_messages"]) == (1, 2, 1, 2)
    assert d["D"]["sequence"].tolist() == [1, 4]


@pytest.mark.parametrize("sequences", [(1, 2**63 + 5), (2**64 - 1, 1), (1, (1 << 63) - 0xFFFF)])
def test_a_sequence_past_2_63_is_a_malformed_packet_not_a_gap(sequences):
    """A sequence no feed reaches (as the live receiver's rule: past 2**63 - 2**16) would make
    a gap that does not fit a count (missing_messages came out at -9.2e18). Strict: an error
    naming the packet; lenient: the packet counted as malformed, the rest delivered."""
    good, bad = sequences if sequences[0] < sequences[1] else sequences[::-1]
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"S", s, [_msg_for(s % 1000), _msg_for(s % 1000 + 1)]))
              for s in sequences]
    data = ref.pcap_file(frames)
    with pytest.raises(ITCHFormatError, match=rf"packet {sequences.index(bad) + 1},.*sequence number past"):
        itchflow.read(data)
    d = itchflow.read(data, strict=False)
    cap = d.info.capture
    assert (cap["malformed_packets"], cap["messages"], cap["gaps"], cap["missing_messages"]) == (1, 2, 0, 0)
    assert d["D"]["sequence"].tolist() == [good, good + 1]


def test_the_books_name_a_bad_message_by_packet_and_file_offset_as_stats_does(tmp_path):
    """The books read a capture's reassembled stream; an error there is named where the byte is
    in the capture file (packet, offset), as ``stats`` names it, not at its offset in the
    stream (which points at no byte of the file)."""
    msgs = [_msg_for(s) for s in range(1, 5)]
    cut = msgs[2][:5]   # a D cut short: its length prefix (5) disagrees with the specification (19)
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"S", 1, msgs[:2])),
              ref.eth_ipv4_udp(ref.mold_packet(b"S", 3, [cut, msgs[3]]))]
    path = tmp_path / "bad.pcap"
    path.write_bytes(ref.pcap_file(frames))
    with pytest.raises(ITCHFormatError) as by_stats:
        itchflow.stats(str(path))
    with pytest.raises(ITCHFormatError) as by_books:
        itchflow.Books().replay(str(path))
    raw = path.read_bytes()
    # by hand: the second packet's payload starts after its record header and 42 header bytes
    second = raw.index(ref.mold_packet(b"S", 3, [cut, msgs[3]]))
    at = second + 20   # the MoldUDP64 header, then the cut message's 2-byte length
    assert (by_stats.value.packet, by_stats.value.offset) == (2, at)
    assert (by_books.value.packet, by_books.value.offset) == (2, at)
    assert str(path) in str(by_books.value) and "length prefix" in by_books.value.detail


@pytest.mark.parametrize("container", ["pcap", "pcapng"])
@pytest.mark.parametrize("cut", [5, 17, 30])   # inside the record header, inside the frame
def test_a_capture_cut_inside_its_last_packet(tmp_path, container, cut):
    """probe 17: a pcap still being written (its last record cut) could not be read at all, even
    with strict=False, and the error called its record header corrupt."""
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"CUT", 1 + 2 * i, [_msg_for(1 + 2 * i), _msg_for(2 + 2 * i)]))
              for i in range(40)]
    write = ref.pcap_file if container == "pcap" else ref.pcapng_file
    whole, last = write(frames), len(write(frames[:-1]))   # where the last record starts
    path = tmp_path / f"cut.{container}"
    path.write_bytes(whole[:-cut])
    with pytest.raises(ITCHFormatError, match=r"packet 40, byte offset \d+: the file ends inside packet 40 "
                                              r".*strict=False\) and `stats --lenient` read the packets before it"):
        itchflow.stats(str(path))
    d = itchflow.read(str(path), strict=False)
    cap = d.info.capture
    assert d.info.messages == 78 and len(d["D"]) == 78
    assert (cap["cut_at_end_packet"], cap["malformed_packets"], cap["gaps"]) == (40, 1, 0)
    assert cap["cut_at_end_bytes"] == len(whole) - cut - last
    assert d["D"]["sequence"].tolist() == list(range(1, 79))
    from click.testing import CliRunner

    from itchflow.cli import main
    r = CliRunner().invoke(main, ["stats", str(path), "--lenient"])
    said = " ".join(r.output.split())   # (the console wraps its lines)
    assert r.exit_code == 0 and "1 malformed (the file ends inside packet 40, not read)" in said, r.output


def _forty_packets() -> list[bytes]:
    return [ref.eth_ipv4_udp(ref.mold_packet(b"CUT", 1 + 2 * i, [_msg_for(1 + 2 * i), _msg_for(2 + 2 * i)]))
            for i in range(40)]


@pytest.mark.parametrize("corrupt", ["past the snap length", "time out of line"])
def test_a_corrupt_record_length_mid_file_is_not_taken_for_a_cut_end(tmp_path, corrupt):
    """probe 19: a flipped length mid-capture running past the end read as "the file ends
    inside packet N": strict=False then dropped the rest of the capture as one malformed
    packet. A cut record has a header its writer could have written."""
    frames = _forty_packets()
    raw = bytearray(ref.pcap_file(frames))
    at = len(ref.pcap_file(frames[:30]))          # record 31's header
    assert int.from_bytes(raw[16:20], "little") == 65535   # the file's snap length
    if corrupt == "past the snap length":
        raw[at + 8:at + 12] = (70_000).to_bytes(4, "little")
    else:   # a length within the snap length, but a time 10 days after the record before
        raw[at + 8:at + 12] = (len(raw) - at).to_bytes(4, "little")
        raw[at + 12:at + 16] = (len(raw) - at).to_bytes(4, "little")
        raw[at:at + 4] = (int.from_bytes(raw[at:at + 4], "little") + 10 * 86_400).to_bytes(4, "little")
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(raw))
    for strict in (True, False):
        with pytest.raises(ITCHFormatError, match=rf"packet 31, byte offset {at}: corrupt pcap record header"):
            itchflow.read(str(path), strict=strict)


@pytest.mark.parametrize("tail", [b"\x00" * 4, "cut section header"])
def test_a_pcapng_ending_in_a_stray_or_cut_non_packet_block_is_corrupt_not_a_cut_packet(tmp_path, tail):
    """probe 19: trailing padding or a cut section header was counted as a cut packet 41 that
    never existed."""
    whole = ref.pcapng_file(_forty_packets())
    extra = tail if isinstance(tail, bytes) else ref.pcapng_file([])[:20]
    path = tmp_path / "trailing.pcapng"
    path.write_bytes(whole + extra)
    for strict in (True, False):
        with pytest.raises(ITCHFormatError, match=rf"byte offset {len(whole)}: corrupt pcapng block"):
            itchflow.read(str(path), strict=strict)


def test_a_cut_capture_planned_by_parts_and_walked_again_counts_its_cut_packet(tmp_path, monkeypatch):
    """probe 19: planned by parts, found out of order and walked again whole, the cut packet's
    count came from the first walk, left before the end: nothing said its messages were lost."""
    from itchflow.protocol.mold import capture as capture_module
    from itchflow.wire import pcap

    frames = _forty_packets()
    frames = frames[30:33] + frames[:30] + frames[33:]      # late packets first: out of order
    path = tmp_path / "late_cut.pcap"
    path.write_bytes(ref.pcap_file(frames)[:-9])
    whole = itchflow.read(str(path), strict=False).info.capture
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 0)
    monkeypatch.setattr(capture_module, "STREAM_WINDOW", 2)
    monkeypatch.setattr(pcap, "TABLE_BATCH", 4)
    walked = []
    real = capture_module.packet_table
    monkeypatch.setattr(capture_module, "packet_table", lambda *a, **k: walked.append(1) or real(*a, **k))
    parts = itchflow.read(str(path), strict=False).info.capture
    assert walked, "the capture was not walked again"
    assert (whole["cut_at_end_packet"], whole["malformed_packets"], whole["packets"]) == (40, 1, 40)
    assert parts == whole


def test_a_packet_of_an_undeclared_interface_is_named_as_such():
    """An EPB naming interface 3 in a section that declared one: "corrupt pcapng block (its
    lengths are inconsistent ...)", though its lengths were fine (probe 29)."""
    import struct

    good = bytearray(ref.pcapng_file(_forty_packets()[:2]))
    first_epb = 28 + 20          # the SHB (28 bytes) and the IDB (20) before it
    assert struct.unpack_from("<I", good, first_epb)[0] == 6
    struct.pack_into("<I", good, first_epb + 8, 3)   # its interface id
    with pytest.raises(itchflow.ITCHFormatError) as e:
        itchflow.read(bytes(good))
    assert "names an interface its section did not declare" in str(e.value)
    assert e.value.packet == 1 and e.value.offset == first_epb
