"""A slow, obvious ITCH 5.0 reference codec, written for the tests only.

It is deliberately independent of ``itchflow.wire.itch``: the field table below was typed
from the Nasdaq TotalView-ITCH 5.0 specification (field sizes in the order they appear on
the wire), offsets are recomputed here by adding sizes, and every value is read with
``int.from_bytes``/``struct`` one message at a time. Only the field *names* are shared
with itchflow (they are the interface being compared), not the layout.

Framing is BinaryFILE: a 2-byte big-endian length before each message.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

# Kinds: u = unsigned big-endian integer, ts = 6-byte timestamp, a = alpha (space padded
# ASCII), p4 / p8 = Price(4) / Price(8) (unsigned integers with implied decimals).
HEADER = [("stock_locate", 2, "u"), ("tracking_number", 2, "u"), ("timestamp", 6, "ts")]

# letter: (total length from the specification, body fields after the 11-byte header)
TABLE: dict[str, tuple[int, list[tuple[str, int, str]]]] = {
    "S": (12, [("event_code", 1, "a")]),
    "R": (39, [("stock", 8, "a"), ("market_category", 1, "a"), ("financial_status_indicator", 1, "a"),
               ("round_lot_size", 4, "u"), ("round_lots_only", 1, "a"), ("issue_classification", 1, "a"),
               ("issue_sub_type", 2, "a"), ("authenticity", 1, "a"),
               ("short_sale_threshold_indicator", 1, "a"), ("ipo_flag", 1, "a"),
               ("luld_reference_price_tier", 1, "a"), ("etp_flag", 1, "a"),
               ("etp_leverage_factor", 4, "u"), ("inverse_indicator", 1, "a")]),
    "H": (25, [("stock", 8, "a"), ("trading_state", 1, "a"), ("reserved", 1, "a"), ("reason", 4, "a")]),
    "Y": (20, [("stock", 8, "a"), ("reg_sho_action", 1, "a")]),
    "L": (26, [("mpid", 4, "a"), ("stock", 8, "a"), ("primary_market_maker", 1, "a"),
               ("market_maker_mode", 1, "a"), ("market_participant_state", 1, "a")]),
    "V": (35, [("level_1", 8, "p8"), ("level_2", 8, "p8"), ("level_3", 8, "p8")]),
    "W": (12, [("breached_level", 1, "a")]),
    "K": (28, [("stock", 8, "a"), ("ipo_quotation_release_time", 4, "u"),
               ("ipo_quotation_release_qualifier", 1, "a"), ("ipo_price", 4, "p4")]),
    "J": (35, [("stock", 8, "a"), ("auction_collar_reference_price", 4, "p4"),
               ("upper_auction_collar_price", 4, "p4"), ("lower_auction_collar_price", 4, "p4"),
               ("auction_collar_extension", 4, "u")]),
    "h": (21, [("stock", 8, "a"), ("market_code", 1, "a"), ("operational_halt_action", 1, "a")]),
    "A": (36, [("order_reference_number", 8, "u"), ("buy_sell_indicator", 1, "a"), ("shares", 4, "u"),
               ("stock", 8, "a"), ("price", 4, "p4")]),
    "F": (40, [("order_reference_number", 8, "u"), ("buy_sell_indicator", 1, "a"), ("shares", 4, "u"),
               ("stock", 8, "a"), ("price", 4, "p4"), ("attribution", 4, "a")]),
    "E": (31, [("order_reference_number", 8, "u"), ("executed_shares", 4, "u"), ("match_number", 8, "u")]),
    "C": (36, [("order_reference_number", 8, "u"), ("executed_shares", 4, "u"), ("match_number", 8, "u"),
               ("printable", 1, "a"), ("execution_price", 4, "p4")]),
    "X": (23, [("order_reference_number", 8, "u"), ("cancelled_shares", 4, "u")]),
    "D": (19, [("order_reference_number", 8, "u")]),
    "U": (35, [("original_order_reference_number", 8, "u"), ("new_order_reference_number", 8, "u"),
               ("shares", 4, "u"), ("price", 4, "p4")]),
    "P": (44, [("order_reference_number", 8, "u"), ("buy_sell_indicator", 1, "a"), ("shares", 4, "u"),
               ("stock", 8, "a"), ("price", 4, "p4"), ("match_number", 8, "u")]),
    "Q": (40, [("shares", 8, "u"), ("stock", 8, "a"), ("cross_price", 4, "p4"), ("match_number", 8, "u"),
               ("cross_type", 1, "a")]),
    "B": (19, [("match_number", 8, "u")]),
    "I": (50, [("paired_shares", 8, "u"), ("imbalance_shares", 8, "u"), ("imbalance_direction", 1, "a"),
               ("stock", 8, "a"), ("far_price", 4, "p4"), ("near_price", 4, "p4"),
               ("current_reference_price", 4, "p4"), ("cross_type", 1, "a"),
               ("price_variation_indicator", 1, "a")]),
    "N": (20, [("stock", 8, "a"), ("interest_flag", 1, "a")]),
    "O": (48, [("stock", 8, "a"), ("open_eligibility_status", 1, "a"), ("minimum_allowable_price", 4, "p4"),
               ("maximum_allowable_price", 4, "p4"), ("near_execution_price", 4, "p4"),
               ("near_execution_time", 8, "u"), ("lower_price_range_collar", 4, "p4"),
               ("upper_price_range_collar", 4, "p4")]),
}

CODES = "".join(TABLE)
KNOWN_BYTES = frozenset(ord(c) for c in CODES)
UNKNOWN_BYTES = tuple(b for b in range(256) if b not in KNOWN_BYTES)


def fields_of(code: str) -> list[tuple[str, int, str]]:
    """Every field after the type byte (header included), in wire order."""
    return HEADER + TABLE[code][1]


for _code, (_length, _body) in TABLE.items():  # the typed table must add up to the spec's lengths
    assert 1 + sum(s for _, s, _ in fields_of(_code)) == _length, _code


class ReferenceError_(ValueError):
    """Malformed framing, with the byte offset of the bad message's length prefix."""

    def __init__(self, what: str, offset: int):
        super().__init__(f"{what} at byte offset {offset}")
        self.what = what
        self.offset = offset


@dataclass
class Message:
    sequence: int
    code: str              # letter for known types, "?" for unknown ones
    type_byte: int
    fields: dict           # name -> int or bytes (known types only)
    raw: bytes             # the message without its length prefix


@dataclass
class Stats:
    messages: int = 0
    bytes: int = 0
    by_type: dict = field(default_factory=lambda: {c: 0 for c in CODES})
    unknown: int = 0
    unknown_by_type: dict = field(default_factory=dict)  # type byte (int) -> count
    first_timestamp_ns: int | None = None
    last_timestamp_ns: int | None = None
    locates: set = field(default_factory=set)

    @property
    def stocks(self) -> int:
        return len(self.locates - {0})


# ----------------------------------------------------------------------------- decode
def decode_message(raw: bytes) -> dict:
    """Fields of one known message (raw starts with the type byte)."""
    code = chr(raw[0])
    out, pos = {}, 1
    for name, size, kind in fields_of(code):
        chunk = raw[pos:pos + size]
        assert len(chunk) == size
        out[name] = chunk if kind == "a" else int.from_bytes(chunk, "big")
        pos += size
    return out


def decode(data: bytes, first_sequence: int = 1) -> tuple[list[Message], Stats]:
    """Decode a BinaryFILE stream; raises ReferenceError_ naming the offset of bad framing."""
    data = bytes(data)
    msgs, st = [], Stats()
    pos, seq = 0, first_sequence
    while pos < len(data):
        if pos + 2 > len(data):
            raise ReferenceError_("truncated length prefix", pos)
        (length,) = struct.unpack_from(">H", data, pos)
        if length == 0:
            raise ReferenceError_("zero-length message", pos)
        if pos + 2 + length > len(data):
            raise ReferenceError_("truncated message", pos)
        raw = data[pos + 2:pos + 2 + length]
        t = raw[0]
        code = chr(t)
        if code in TABLE:
            if length != TABLE[code][0]:
                raise ReferenceError_("length prefix disagrees with the type", pos)
            f = decode_message(raw)
            msgs.append(Message(seq, code, t, f, raw))
            st.by_type[code] += 1
            if st.first_timestamp_ns is None:
                st.first_timestamp_ns = f["timestamp"]
            st.last_timestamp_ns = f["timestamp"]
            st.locates.add(f["stock_locate"])
        else:
            msgs.append(Message(seq, "?", t, {}, raw))
            st.unknown += 1
            st.unknown_by_type[t] = st.unknown_by_type.get(t, 0) + 1
        st.messages += 1
        st.bytes += 2 + length
        pos += 2 + length
        seq += 1
    return msgs, st


def walk(data: bytes, pos: int = 0, end: int | None = None) -> tuple[list[tuple[int, int, int]], str, int]:
    """Framing only: (prefix offset, body offset, length) of each whole message in data[pos:end],
    and why the walk stopped ('end', 'truncated' or 'zero-length') at which offset."""
    end = len(data) if end is None else end
    out = []
    while True:
        if pos == end:
            return out, "end", pos
        if pos + 2 > end:
            return out, "truncated", pos
        (length,) = struct.unpack_from(">H", data, pos)
        if length == 0:
            return out, "zero-length", pos
        if pos + 2 + length > end:
            return out, "truncated", pos
        out.append((pos, pos + 2, length))
        pos += 2 + length


def whole_end(data: bytes, pos: int = 0, end: int | None = None) -> int:
    """The offset after the last whole message of data[pos:end] (pos if there is none)."""
    msgs, _, _ = walk(data, pos, end)
    return msgs[-1][1] + msgs[-1][2] if msgs else pos


# ----------------------------------------------------------------------------- encode
def encode_body(code: str, fields: dict) -> bytes:
    """One message (no length prefix) from its fields; missing fields are zero/spaces."""
    out = bytearray(code.encode("ascii"))
    for name, size, kind in fields_of(code):
        v = fields.get(name, b" " * size if kind == "a" else 0)
        if kind == "a":
            v = bytes(v)
            assert len(v) <= size, (name, v)
            out += v.ljust(size, b" ")
        else:
            out += int(v).to_bytes(size, "big")
    return bytes(out)


def frame(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def encode(code: str, fields: dict) -> bytes:
    return frame(encode_body(code, fields))


def encode_unknown(type_byte: int, rest: bytes) -> bytes:
    assert type_byte not in KNOWN_BYTES
    return frame(bytes([type_byte]) + rest)


# ----------------------------------------------------------------------------- random values
ALPHA_CHARS = bytes(range(0x20, 0x7F))


def random_fields(code: str, rng: random.Random, alpha_any_byte: bool = False) -> dict:
    """Random values over each field's whole range (alpha: printable ASCII, space padded)."""
    out = {}
    for name, size, kind in fields_of(code):
        if kind == "a":
            if alpha_any_byte:
                out[name] = bytes(rng.randrange(256) for _ in range(size))
            else:
                n = rng.randint(0, size)
                out[name] = bytes(rng.choice(ALPHA_CHARS) for _ in range(n)).ljust(size, b" ")
        else:
            bits = 8 * size
            # mix extremes with uniform values so every byte of the field is exercised
            out[name] = rng.choice([0, 1, (1 << bits) - 1, rng.getrandbits(bits), rng.getrandbits(bits)])
    return out


def random_stream(n: int, seed: int, *, unknown_rate: float = 0.0, codes: str = CODES,
                  alpha_any_byte: bool = False) -> bytes:
    """n random messages of the given types (and some unknown types), BinaryFILE framed."""
    rng = random.Random(seed)
    out = bytearray()
    for _ in range(n):
        if unknown_rate and rng.random() < unknown_rate:
            out += encode_unknown(rng.choice(UNKNOWN_BYTES), rng.randbytes(rng.randint(0, 60)))
        else:
            c = rng.choice(codes)
            out += encode(c, random_fields(c, rng, alpha_any_byte))
    return bytes(out)


# ----------------------------------------------------------------------------- containers
# Minimal writers for MoldUDP64 packets in pcap / pcapng captures, written from the formats'
# documentation (pcap: 24-byte file header, 16-byte record headers; pcapng: SHB, IDB, EPB
# blocks whose total length is repeated at the end, bodies padded to 4 bytes).
PCAP_HEADER_SIZE = 24
PCAP_RECORD_HEADER_SIZE = 16
ETH_IP_UDP_SIZE = 14 + 20 + 8


def mold_packet(session: bytes, sequence: int, messages: list[bytes], count: int | None = None) -> bytes:
    """A MoldUDP64 downstream packet: session(10) sequence(8) count(2) then framed messages."""
    body = b"".join(struct.pack(">H", len(m)) + m for m in messages)
    n = len(messages) if count is None else count
    return session.ljust(10, b" ") + struct.pack(">QH", sequence, n) + body


def eth_ipv4_udp(payload: bytes, dport: int = 26477) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 0, 0x4000, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([233, 54, 12, 111]))
    udp = struct.pack(">HHHH", 40000, dport, 8 + len(payload), 0)
    return bytes(6) + b"\x02" * 6 + b"\x08\x00" + ip + udp + payload


def pcap_file(frames: list[bytes], big_endian: bool = False) -> bytes:
    e = ">" if big_endian else "<"
    out = bytearray(struct.pack(e + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i, f in enumerate(frames):
        out += struct.pack(e + "IIII", 1_700_000_000 + i, i, len(f), len(f)) + f
    return bytes(out)


def pcap_frames(data: bytes) -> list[bytes]:
    """The link-layer frames of a classic pcap file (either byte order)."""
    e = "<" if struct.unpack_from("<I", data)[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    frames, p = [], PCAP_HEADER_SIZE
    while p < len(data):
        incl = struct.unpack_from(e + "I", data, p + 8)[0]
        frames.append(data[p + 16:p + 16 + incl])
        p += 16 + incl
    return frames


def _block(e: str, btype: int, body: bytes) -> bytes:
    body = body + bytes(-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(e + "II", btype, total) + body + struct.pack(e + "I", total)


def pcapng_file(frames: list[bytes], big_endian: bool = False) -> bytes:
    """One section: SHB, one Ethernet IDB, an EPB per frame."""
    e = ">" if big_endian else "<"
    shb = _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(e, 1, struct.pack(e + "HHI", 1, 0, 65535))
    out = bytearray(shb + idb)
    for i, f in enumerate(frames):
        out += _block(e, 6, struct.pack(e + "IIIII", 0, 0, i, len(f), len(f)) + f)
    return bytes(out)
