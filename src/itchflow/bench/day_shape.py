"""A day's shape, measured from its bytes and its books (not taken from the generator's word):
stocks, the share of messages of the busiest 1/10/100 stocks, peak live orders, the deepest
book side, the order table's size. Printed beside every book figure, since the cost of a book
message depends on them (DESIGN.md section 6)."""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.hw.endian import be16
from itchflow.wire.binaryfile import AT_END, OK, next_message
from itchflow.wire.itch import MESSAGES

_LOCATE = MESSAGES["A"].field("stock_locate").offset


@njit(nogil=True, cache=True)
def _locate_counts(buf, counts):
    """Messages per stock locate (locate 0: system-wide); returns (messages, stop status)."""
    pos = np.int64(0)
    end = np.int64(len(buf))
    n = np.int64(0)
    while pos < end:   # not ``while True``: see binaryfile.WALK_LOOP
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            return n, status
        if length >= _LOCATE + 2:
            counts[be16(buf, body + _LOCATE)] += 1
        n += 1
        pos = body + length
    return n, AT_END


def locate_counts(buf: np.ndarray) -> np.ndarray:
    """int64[65536]: messages per stock locate over a BinaryFILE buffer."""
    counts = np.zeros(1 << 16, np.int64)
    _locate_counts(np.asarray(buf, np.uint8), counts)
    return counts


def top_shares(counts: np.ndarray, tops=(1, 10, 100)) -> dict[str, float]:
    """Share of all stock messages (locate != 0) taken by the busiest 1/10/100 stocks."""
    per_stock = np.sort(counts[1:])[::-1]
    total = max(int(per_stock.sum()), 1)
    return {str(t): float(per_stock[:t].sum()) / total for t in tops}


def deepest_side(books) -> tuple[int, str]:
    """(levels, symbol) of the deepest book side in these books (as they are now)."""
    best, sym = 0, ""
    for name, loc in books.symbols.items():
        bids, asks = books.depth(loc)
        d = max(len(bids), len(asks))
        if d > best:
            best, sym = d, name
    return best, sym


def day_shape(buf: np.ndarray, books) -> dict:
    """The shape columns of the book benchmark, for a day and the books built from all of it."""
    counts = locate_counts(buf)
    depth, sym = deepest_side(books)
    return {"stocks": int((counts[1:] > 0).sum()), "top_share": top_shares(counts),
            "peak_live_orders": books.peak_live_orders, "deepest_side_levels": depth, "deepest_side_symbol": sym,
            "order_table_rows": int(len(books.order_rows)), "order_table_bytes": int(books.order_rows.nbytes)}
