"""What ``Books`` queries return: numpy structured arrays with named fields.

Prices are raw Price(4) integers everywhere (``itchflow.price4_to_float`` gives dollars);
one-byte codes (side) are ``S1`` as in the event streams; symbols and MPIDs are text.

- ``QUOTE_DTYPE``: ``Books.bbo`` -- one row per stock (0 price and 0 shares for an empty side).
- ``LEVEL_DTYPE``: ``Books.depth`` -- one row per price level, best first (bids and asks apart).
- ``QUEUE_DTYPE``: ``Books.orders`` -- one row per order at a level, in time priority.
- ``ORDER_DTYPE``: ``Books.order_table`` -- one row per live order.
"""

from __future__ import annotations

import numpy as np

from itchflow.wire.itch import alpha_text

SYMBOL = "U8"  # ITCH symbols are 8 ASCII characters, space padded (stripped here)
MPID = "U4"    # F attribution, "" when none

QUOTE_DTYPE = np.dtype([
    ("symbol", SYMBOL),
    ("locate", np.uint16),
    ("bid_price", np.uint32),
    ("bid_shares", np.int64),
    ("ask_price", np.uint32),
    ("ask_shares", np.int64),
])

LEVEL_DTYPE = np.dtype([
    ("price", np.uint32),
    ("shares", np.int64),
    ("orders", np.uint32),
])

QUEUE_DTYPE = np.dtype([
    ("ref", np.uint64),
    ("shares", np.uint32),
    ("mpid", MPID),
])

ORDER_DTYPE = np.dtype([
    ("symbol", SYMBOL),
    ("locate", np.uint16),
    ("side", "S1"),         # b"B" or b"S"
    ("price", np.uint32),
    ("ref", np.uint64),
    ("shares", np.uint32),
    ("mpid", MPID),
])


def symbol_key(symbol: str | bytes) -> int:
    """A symbol as the engine stores it: 8 space-padded bytes, little-endian uint64. Text is
    Latin-1, as ``symbol_text`` and ``read`` give it (a name books.symbols listed was refused
    by every query: probe 33)."""
    try:
        raw = symbol.encode("latin-1") if isinstance(symbol, str) else bytes(symbol)
    except (UnicodeEncodeError, TypeError):
        raw = b""
    raw = raw.strip()
    if not raw or len(raw) > 8:
        raise ValueError(f"not an ITCH symbol: {symbol!r} (1 to 8 characters: ASCII, or Latin-1 as read() gives)")
    return int.from_bytes(raw.ljust(8, b" "), "little")


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


ASCII_SPACE = " \t\n\r\x0b\x0c"   # what a typed name is stripped of (str.strip took a Latin-1 no-break space)


def symbol_upper(text: str) -> str:
    """A symbol as typed, upper-cased in its ASCII letters only: a Latin-1 letter is kept as it is
    (str.upper made 'é' 'É', another byte than the feed's: probe 35)."""
    return text.translate(_ASCII_UPPER)


def symbol_text(key: int) -> str:
    """A symbol key as text: Latin-1, as every alpha field is read (``decode.decoded``), its
    trailing run of NULs and spaces dropped as ``read`` drops it, and nothing else (str.rstrip
    took a Latin-1 no-break space too; bars kept NUL padding where trades did not: probes 38, 40)."""
    return alpha_text(int(key).to_bytes(8, "little"))


def mpid_column(keys: np.ndarray) -> np.ndarray:
    """uint32 MPIDs (4 bytes, little-endian; 0 = none) -> text, "" for none. Latin-1, as every
    alpha field is read (``decode.decoded``): ASCII with replacement made two MPIDs one and
    disagreed with ``read`` (probe 31)."""
    raw = np.ascontiguousarray(keys, np.uint32).view("S4")  # NULs strip: 0 -> b""
    return np.char.rstrip(np.char.decode(raw, "latin-1")) if len(raw) else np.zeros(0, MPID)


def levels_array(rows: np.ndarray) -> np.ndarray:
    """int64[k, 3] (price, shares, orders) from the depth kernel -> LEVEL_DTYPE rows."""
    out = np.zeros(len(rows), LEVEL_DTYPE)
    out["price"], out["shares"], out["orders"] = rows[:, 0], rows[:, 1], rows[:, 2]
    return out
