"""Are two ``Books`` the same? Compared by what a user reads from them: the full depth of
every stock (price, shares, orders per level), top of book, volume and notional, trading
state, live orders, anomalies and messages applied. Internal layout (slot numbers, table
sizes) may differ between runs that grew their arrays at different moments, so it is not
compared."""

from __future__ import annotations

import hashlib

import numpy as np


def book_state(books) -> dict[str, np.ndarray]:
    """Everything compared, as arrays (a few MB at most for a test-sized day)."""
    from itchflow.book import layout as L

    locs = np.flatnonzero(books.books["length"].reshape(-1, 2).sum(axis=1) | books.stocks["volume"].astype(np.int64))
    depth_rows = []
    for loc in locs:
        bids, asks = books.depth(int(loc))
        for side, rows in ((0, bids), (1, asks)):
            if len(rows):
                head = np.column_stack([np.full(len(rows), loc), np.full(len(rows), side)])
                levels = np.column_stack([rows[f].astype(np.int64) for f in ("price", "shares", "orders")])
                depth_rows.append(np.hstack([head, levels]))
    s = books.stocks
    return {
        "depth": np.vstack(depth_rows) if depth_rows else np.zeros((0, 5), np.int64),
        "tops": books.tops()[locs] if len(locs) else np.zeros((0, 4), np.int64),
        "volume": s["volume"].astype(np.int64), "notional": s["notional"].astype(np.float64),
        "trading_state": s["trading_state"].astype(np.int64),
        "anomalies": books.anomaly_counts.sum(axis=0),
        "counts": np.array([books.live_orders(), books.messages], np.int64),
        "types": books.type_counts.copy(),
        "_n_anomaly_kinds": np.array([len(L.ANOMALIES)], np.int64),
    }


def digest(books) -> str:
    """A short hash of ``book_state``: equal books, equal digests."""
    h = hashlib.sha256()
    for name, a in sorted(book_state(books).items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def first_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> str | None:
    """Where two book states differ first (for the report), None when equal."""
    for name in sorted(a):
        x, y = a[name], b.get(name)
        if y is None or x.shape != y.shape or not np.array_equal(x, y):
            if name == "depth" and y is not None and x.ndim == 2 and y.ndim == 2:
                n = min(len(x), len(y))
                bad = np.flatnonzero(np.any(x[:n] != y[:n], axis=1))
                if len(bad):
                    r = x[bad[0]]
                    return f"depth differs first at locate {r[0]} side {'BS'[r[1]]} price {r[2]}"
                return f"depth has {len(x)} vs {len(y)} levels"
            return f"{name} differs"
    return None


TRADE_LOG_ROWS = 1 << 17     # trade-log rows made ready: a million-message generated day's fit


def ready_books():
    """A new ``Books`` with its arrays' pages already touched: every path starts from the same
    warm memory, so no row is charged for the kernel zeroing fresh pages under it."""
    from itchflow.book import layout as L
    from itchflow.book.books import Books

    books = Books()
    # the trade log doubles as executions arrive: grown here, a paced run does not stop early
    # on to copy it into fresh memory
    while len(books.trade_log) // L.MATCH_WORDS < TRADE_LOG_ROWS:
        books.make_room(L.NEED_TRADE_LOG)
    for a in (books.order_rows, books.levels, books.ladder, books.trade_log, books.matches,
              books.books, books.stocks, books.anomaly_counts, books.events.trades, books.events.bbo, books.events.l2):
        raw = a.reshape(-1).view(np.uint8)[::4096]
        # a write per page faults it in, values unchanged (``raw[:] = raw`` would not do: NumPy
        # skips an assignment of an array to itself, and the pages stayed untouched)
        np.add(raw, 0, out=raw)
    return books
