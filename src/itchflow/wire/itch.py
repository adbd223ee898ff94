"""The Nasdaq TotalView-ITCH 5.0 message table: the one place a wire layout is written.

Every offset, length, numpy dtype, decoder kernel and encoder in itchflow is derived from
``MESSAGES`` below. Field names are the specification's names in snake_case.

Wire facts (TotalView-ITCH 5.0 specification):
- integers are big-endian and unsigned;
- alpha fields are ASCII, left-justified and space-padded;
- Price(4) carries 4 implied decimals, Price(8) (only in ``V``) carries 8;
- every message starts with the same 11-byte header: message type (1), stock locate (2),
  tracking number (2), timestamp (6, nanoseconds since midnight).

Decoded form (what ``itchflow.read`` returns per type): a numpy structured array with
native-endian columns. ``sequence`` (the message's number in its stream: MoldUDP64 sequence
for captures, 1-based position for files) comes first so per-type arrays can be merged back
into stream order; the type byte is dropped (the array is per type); the 6-byte timestamp
becomes int64 nanoseconds; prices stay raw integers (see ``price4_to_float``); alpha fields
are fixed-width bytes (``S1``, ``S2``, ``S4``, ``S8``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

# Field kinds. Each maps to how the bytes are read on the wire and what the column holds.
INT = "int"        # big-endian unsigned integer of 2, 4 or 8 bytes
TIMESTAMP = "ts"   # 6-byte big-endian nanoseconds since midnight -> int64
DAY_NS = 86_400 * 1_000_000_000   # 24:00 as a timestamp: no time of day is later (the 6 bytes run to 78 h)
PRICE4 = "price4"  # big-endian uint32, 4 implied decimals
PRICE8 = "price8"  # big-endian uint64, 8 implied decimals
ALPHA = "alpha"    # ASCII, space padded -> fixed-width bytes

PRICE4_SCALE = 10_000
PRICE8_SCALE = 100_000_000
HEADER_SIZE = 11
MAX_MESSAGE_SIZE = 50  # NOII, the longest ITCH 5.0 message


@dataclass(frozen=True)
class Field:
    """One field of a message as it sits on the wire."""

    name: str
    offset: int  # from the first byte of the message (the type byte)
    size: int
    kind: str

    @property
    def column_dtype(self) -> np.dtype:
        """The native numpy type of this field's decoded column."""
        if self.kind == ALPHA:
            return np.dtype(f"S{self.size}")
        if self.kind == TIMESTAMP:
            return np.dtype(np.int64)
        return np.dtype(f"u{self.size}")

    @property
    def wire_dtype(self) -> np.dtype:
        """The numpy type that reads this field straight off the wire (big-endian)."""
        if self.kind == ALPHA:
            return np.dtype(f"S{self.size}")
        if self.kind == TIMESTAMP:
            return np.dtype("V6")
        return np.dtype(f">u{self.size}")


@dataclass(frozen=True)
class MessageType:
    """One ITCH message type: its letter, name, length and fields (header included)."""

    code: str
    name: str
    length: int
    fields: tuple[Field, ...]

    @property
    def code_byte(self) -> int:
        return ord(self.code)

    @property
    def body_fields(self) -> tuple[Field, ...]:
        """The fields after the common header."""
        return self.fields[4:]

    @property
    def dtype(self) -> np.dtype:
        """The decoded (native-endian) record: ``sequence`` then every field but the type."""
        return DTYPES[self.code]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"message {self.code!r} ({self.name}) has no field {name!r}")


_HEADER = (
    ("message_type", 1, ALPHA),
    ("stock_locate", 2, INT),
    ("tracking_number", 2, INT),
    ("timestamp", 6, TIMESTAMP),
)

# (code, name, declared length, body fields as (name, size, kind)). The declared length is
# the specification's; _build checks that the fields add up to it.
_TABLE: tuple[tuple[str, str, int, tuple[tuple[str, int, str], ...]], ...] = (
    ("S", "system_event", 12, (
        ("event_code", 1, ALPHA),
    )),
    ("R", "stock_directory", 39, (
        ("stock", 8, ALPHA),
        ("market_category", 1, ALPHA),
        ("financial_status_indicator", 1, ALPHA),
        ("round_lot_size", 4, INT),
        ("round_lots_only", 1, ALPHA),
        ("issue_classification", 1, ALPHA),
        ("issue_sub_type", 2, ALPHA),
        ("authenticity", 1, ALPHA),
        ("short_sale_threshold_indicator", 1, ALPHA),
        ("ipo_flag", 1, ALPHA),
        ("luld_reference_price_tier", 1, ALPHA),
        ("etp_flag", 1, ALPHA),
        ("etp_leverage_factor", 4, INT),
        ("inverse_indicator", 1, ALPHA),
    )),
    ("H", "stock_trading_action", 25, (
        ("stock", 8, ALPHA),
        ("trading_state", 1, ALPHA),
        ("reserved", 1, ALPHA),
        ("reason", 4, ALPHA),
    )),
    ("Y", "reg_sho_restriction", 20, (
        ("stock", 8, ALPHA),
        ("reg_sho_action", 1, ALPHA),
    )),
    ("L", "market_participant_position", 26, (
        ("mpid", 4, ALPHA),
        ("stock", 8, ALPHA),
        ("primary_market_maker", 1, ALPHA),
        ("market_maker_mode", 1, ALPHA),
        ("market_participant_state", 1, ALPHA),
    )),
    ("V", "mwcb_decline_level", 35, (
        ("level_1", 8, PRICE8),
        ("level_2", 8, PRICE8),
        ("level_3", 8, PRICE8),
    )),
    ("W", "mwcb_status", 12, (
        ("breached_level", 1, ALPHA),
    )),
    ("K", "ipo_quoting_period_update", 28, (
        ("stock", 8, ALPHA),
        ("ipo_quotation_release_time", 4, INT),
        ("ipo_quotation_release_qualifier", 1, ALPHA),
        ("ipo_price", 4, PRICE4),
    )),
    ("J", "luld_auction_collar", 35, (
        ("stock", 8, ALPHA),
        ("auction_collar_reference_price", 4, PRICE4),
        ("upper_auction_collar_price", 4, PRICE4),
        ("lower_auction_collar_price", 4, PRICE4),
        ("auction_collar_extension", 4, INT),
    )),
    ("h", "operational_halt", 21, (
        ("stock", 8, ALPHA),
        ("market_code", 1, ALPHA),
        ("operational_halt_action", 1, ALPHA),
    )),
    ("A", "add_order", 36, (
        ("order_reference_number", 8, INT),
        ("buy_sell_indicator", 1, ALPHA),
        ("shares", 4, INT),
        ("stock", 8, ALPHA),
        ("price", 4, PRICE4),
    )),
    ("F", "add_order_mpid", 40, (
        ("order_reference_number", 8, INT),
        ("buy_sell_indicator", 1, ALPHA),
        ("shares", 4, INT),
        ("stock", 8, ALPHA),
        ("price", 4, PRICE4),
        ("attribution", 4, ALPHA),
    )),
    ("E", "order_executed", 31, (
        ("order_reference_number", 8, INT),
        ("executed_shares", 4, INT),
        ("match_number", 8, INT),
    )),
    ("C", "order_executed_with_price", 36, (
        ("order_reference_number", 8, INT),
        ("executed_shares", 4, INT),
        ("match_number", 8, INT),
        ("printable", 1, ALPHA),
        ("execution_price", 4, PRICE4),
    )),
    ("X", "order_cancel", 23, (
        ("order_reference_number", 8, INT),
        ("cancelled_shares", 4, INT),
    )),
    ("D", "order_delete", 19, (
        ("order_reference_number", 8, INT),
    )),
    ("U", "order_replace", 35, (
        ("original_order_reference_number", 8, INT),
        ("new_order_reference_number", 8, INT),
        ("shares", 4, INT),
        ("price", 4, PRICE4),
    )),
    ("P", "trade", 44, (
        ("order_reference_number", 8, INT),
        ("buy_sell_indicator", 1, ALPHA),
        ("shares", 4, INT),
        ("stock", 8, ALPHA),
        ("price", 4, PRICE4),
        ("match_number", 8, INT),
    )),
    ("Q", "cross_trade", 40, (
        ("shares", 8, INT),
        ("stock", 8, ALPHA),
        ("cross_price", 4, PRICE4),
        ("match_number", 8, INT),
        ("cross_type", 1, ALPHA),
    )),
    ("B", "broken_trade", 19, (
        ("match_number", 8, INT),
    )),
    ("I", "noii", 50, (
        ("paired_shares", 8, INT),
        ("imbalance_shares", 8, INT),
        ("imbalance_direction", 1, ALPHA),
        ("stock", 8, ALPHA),
        ("far_price", 4, PRICE4),
        ("near_price", 4, PRICE4),
        ("current_reference_price", 4, PRICE4),
        ("cross_type", 1, ALPHA),
        ("price_variation_indicator", 1, ALPHA),
    )),
    ("N", "retail_interest", 20, (
        ("stock", 8, ALPHA),
        ("interest_flag", 1, ALPHA),
    )),
    ("O", "dlcr_price_discovery", 48, (
        ("stock", 8, ALPHA),
        ("open_eligibility_status", 1, ALPHA),
        ("minimum_allowable_price", 4, PRICE4),
        ("maximum_allowable_price", 4, PRICE4),
        ("near_execution_price", 4, PRICE4),
        ("near_execution_time", 8, INT),
        ("lower_price_range_collar", 4, PRICE4),
        ("upper_price_range_collar", 4, PRICE4),
    )),
)


def _build() -> dict[str, MessageType]:
    out: dict[str, MessageType] = {}
    for code, name, length, body in _TABLE:
        fields, offset = [], 0
        for fname, size, kind in _HEADER + body:
            fields.append(Field(fname, offset, size, kind))
            offset += size
        if offset != length:
            raise AssertionError(f"ITCH table: {code} fields add to {offset}, spec says {length}")
        out[code] = MessageType(code, name, length, tuple(fields))
    return out


MESSAGES: MappingProxyType[str, MessageType] = MappingProxyType(_build())
"""Message type letter -> MessageType, in the specification's order."""

# Every timestamp has 2 bytes of its message before it (the header puts it at offset 5): the
# kernels read it with hw.endian.be48_from8, one 8-byte load that starts 2 bytes early, once
# they have checked the message's length.
assert all(f.offset >= 2 for m in MESSAGES.values() for f in m.fields if f.kind == TIMESTAMP), \
    "a timestamp needs 2 message bytes before it"

CODES: str = "".join(MESSAGES)
"""All 23 type letters: ``SRHYLVWKJhAFECXDUPQBINO``."""

BY_NAME: MappingProxyType[str, MessageType] = MappingProxyType({m.name: m for m in MESSAGES.values()})

# Length by type byte, 0 for an unknown type: the framing kernels index this directly.
LENGTH_BY_BYTE = np.zeros(256, dtype=np.int64)
for _m in MESSAGES.values():
    LENGTH_BY_BYTE[_m.code_byte] = _m.length
LENGTH_BY_BYTE.setflags(write=False)


def type_key(byte: int) -> str:
    """How a type byte is named in counts by type: its letter when printable, else 0xNN (an
    unknown type's byte may be anything; one spelling everywhere, so counts of many days add)."""
    return chr(byte) if 32 < byte < 127 else f"0x{byte:02x}"


def known_by_type(counts: np.ndarray) -> dict[str, int]:
    """{letter: count} of the ITCH 5.0 types counted in a 256-entry count by type byte (the
    ones with none left out; ``unknown_by_type`` has the other bytes)."""
    return {c: int(counts[m.code_byte]) for c, m in MESSAGES.items() if counts[m.code_byte]}


def unknown_by_type(counts: np.ndarray) -> dict[str, int]:
    """{type_key: count} of the unknown type bytes in a 256-entry count by type byte."""
    idx = np.flatnonzero((np.asarray(counts) > 0) & (LENGTH_BY_BYTE == 0))
    return {type_key(int(i)): int(counts[i]) for i in idx}


def _decoded_layout(m: MessageType) -> tuple[list[str], list[np.dtype], list[int], int]:
    """Names, column dtypes, offsets and itemsize of the decoded record.

    Each field is aligned to its own width, alpha fields included (their widths are 1, 2,
    4 or 8), so the same bytes can be seen with alpha fields as integers (``kernel_dtype``)
    and every column is naturally aligned for the code that reads it later.
    """
    names, dtypes, offsets, pos = [], [], [], 0
    for name, dt in [("sequence", np.dtype(np.uint64))] + [(f.name, f.column_dtype) for f in m.fields[1:]]:
        width = dt.itemsize
        pos = (pos + width - 1) // width * width
        names.append(name)
        dtypes.append(dt)
        offsets.append(pos)
        pos += width
    return names, dtypes, offsets, (pos + 7) // 8 * 8


def _decoded_dtype(m: MessageType) -> np.dtype:
    names, dtypes, offsets, itemsize = _decoded_layout(m)
    return np.dtype({"names": names, "formats": dtypes, "offsets": offsets, "itemsize": itemsize})


def _wire_dtype(m: MessageType) -> np.dtype:
    """The framed wire record (2-byte length prefix, then the message), big-endian, packed."""
    cols = [("length_prefix", np.dtype(">u2"))]
    cols += [(f.name, f.wire_dtype) for f in m.fields]
    return np.dtype(cols)


DTYPES: MappingProxyType[str, np.dtype] = MappingProxyType(
    {c: _decoded_dtype(m) for c, m in MESSAGES.items()}
)
"""Decoded record dtype per type letter."""

WIRE_DTYPES: MappingProxyType[str, np.dtype] = MappingProxyType(
    {c: _wire_dtype(m) for c, m in MESSAGES.items()}
)
"""BinaryFILE-framed wire record dtype per type letter (length prefix included)."""


def kernel_dtype(code: str) -> np.dtype:
    """The decoded layout with each alpha field seen as an unsigned integer of its width.

    Same names, offsets and itemsize as ``DTYPES[code]``: compiled kernels write alpha
    fields as one integer store instead of a byte loop, and the caller views the result
    as ``DTYPES[code]``. Alpha widths in ITCH 5.0 are 1, 2, 4 and 8, all integer widths.
    """
    names, dtypes, offsets, itemsize = _decoded_layout(MESSAGES[code])
    formats = [np.dtype(f"u{dt.itemsize}") if dt.kind == "S" else dt for dt in dtypes]
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})


def message_type(code: str | int) -> MessageType:
    """Look a type up by letter or type byte; a clear KeyError for anything else."""
    key = chr(code) if isinstance(code, int) else code
    try:
        return MESSAGES[key]
    except KeyError:
        raise KeyError(f"not an ITCH 5.0 message type: {key!r}") from None


ALPHA_PADDING = b" \0"   # the spec pads alpha fields with spaces; some feeds and tools with NULs


def alpha_text(raw) -> str:
    """An alpha field (a symbol, an MPID) as text, the one rule of every output: Latin-1, its
    trailing run of spaces and NULs dropped, nothing else (as ``read``'s tables give it; each
    output had its own rule, and a name one listed another could not find: probes 38, 40)."""
    return bytes(raw).rstrip(ALPHA_PADDING).decode("latin-1")


def alpha_stripped(raw: np.ndarray) -> np.ndarray:
    """A column of alpha fields (S8, ...) without their trailing spaces and NULs, for comparing."""
    return np.char.rstrip(raw, ALPHA_PADDING)


def price4_to_float(raw) -> np.ndarray | float:
    """Price(4) raw integers -> float dollars (4 implied decimals)."""
    return np.asarray(raw, dtype=np.float64) / PRICE4_SCALE if np.ndim(raw) else raw / PRICE4_SCALE


def price8_to_float(raw) -> np.ndarray | float:
    """Price(8) raw integers -> float dollars (8 implied decimals)."""
    return np.asarray(raw, dtype=np.float64) / PRICE8_SCALE if np.ndim(raw) else raw / PRICE8_SCALE


def float_to_price4(x) -> np.ndarray | int:
    """Dollars -> Price(4) raw integers, rounded to the nearest 1/10000. A price the 4-byte
    field cannot hold (below 0, at or above $429,496.7296, NaN) is a ValueError, for an
    array as for a number (an array once wrapped around silently)."""
    dollars = np.asarray(x, dtype=np.float64)
    raw = np.rint(dollars * PRICE4_SCALE)
    bad = ~((raw >= 0) & (raw <= 0xFFFFFFFF))   # NaN compares false: bad too
    if np.any(bad):
        first = dollars.reshape(-1)[int(np.flatnonzero(bad.reshape(-1))[0])]
        raise ValueError(f"price {first!r} does not fit a Price(4) field ($0 to $429,496.7295)")
    if np.ndim(x):
        return raw.astype(np.uint32)
    return int(raw)
