"""The one place the research sinks (LOBSTER, bars) touch the book engine's API.

The Books API is in motion (bbo/depth as structured arrays, events with to_arrow); every
call the sinks make into it goes through these few functions, so an API change is
adjusted here and nowhere else. What comes out is plain numpy: int64 columns and a
``side`` column of 0 (bid) / 1 (ask).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from itchflow.book.books import Books
from itchflow.book.events import mark_broken
from itchflow.book.replay import SLICE_BYTES, replay

L2_COLUMNS = ("sequence", "timestamp", "side", "price", "shares", "orders")
BBO_COLUMNS = ("sequence", "timestamp", "bid_price", "bid_shares", "ask_price", "ask_shares")
TRADE_COLUMNS = ("sequence", "timestamp", "price", "shares", "match_number")


def new_books() -> Books:
    return Books()


def directory(books: Books) -> dict[int, str]:
    """Stock locate -> symbol, from the stock directory messages applied so far (every locate:
    two locates under one symbol both appear, which a symbol -> locate map would hide)."""
    stocks = books.stocks if hasattr(books, "stocks") else books.shards[0].stocks
    return {int(loc): books.symbol(int(loc)) for loc in np.flatnonzero(stocks["symbol"])}


def depth_levels(books: Books, locate: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(bids, asks) of one stock now: int64[k, 2] rows (price, shares), best first, k <= n."""
    bids, asks = books.depth(int(locate), int(n))
    return _price_shares(bids), _price_shares(asks)


def _price_shares(rows) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.dtype.names:  # structured rows with named fields
        return np.stack([rows["price"].astype(np.int64), rows["shares"].astype(np.int64)], axis=1).reshape(-1, 2)
    return rows.astype(np.int64)[:, :2].reshape(-1, 2)


def replay_events(source, symbols: list[str] | None, *, bbo: bool = False, trades: bool = False,
                  l2: bool = False, on_events: Callable[[dict], None] | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  on_bytes: Callable[[object, int, int, int], None] | None = None,
                  slice_bytes: int = SLICE_BYTES, capture_stats: dict | None = None,
                  renumber: bool = False) -> Books:
    """Replay a whole source through a fresh engine, recording the chosen event streams for
    the chosen symbols (None = all). After every slice on_events gets a dict with numpy
    column arrays per stream, filtered to the symbols: ``l2`` (L2_COLUMNS + stock_locate),
    ``bbo`` (BBO_COLUMNS + stock_locate), ``trades`` (TRADE_COLUMNS + stock_locate, kind
    as a uint8 letter, printable 0/1). on_bytes: as ``replay``'s (the slice's bytes, called
    before its events go to on_events); capture_stats: as ``replay``'s (a capture's gaps and
    malformed packets, for the caller to report); renumber: as ``replay``'s (events and
    on_bytes numbered 1, 2, ... in stream order). Returns the Books at the end of the day."""
    books = new_books()
    books.record(symbols, bbo=bbo, trades=trades, l2=l2)   # by name: each from the R that lists it

    def drain(b: Books) -> None:
        ev_bbo, ev_trades, ev_l2 = b.take_events()
        out = {}
        for name, ev, on in (("bbo", ev_bbo, bbo), ("trades", ev_trades, trades), ("l2", ev_l2, l2)):
            if not on:
                continue
            out[name] = _columns(name, ev)
        if on_events is not None:
            on_events(out)

    replay(books, source, progress=progress, on_slice=drain, on_bytes=on_bytes, slice_bytes=slice_bytes,
           capture_stats=capture_stats, renumber=renumber)
    return books


def _columns(name: str, ev: np.ndarray) -> dict[str, np.ndarray]:
    cols = {"stock_locate": ev["stock_locate"].astype(np.int64)}
    if name == "l2":
        for c in ("sequence", "timestamp", "price", "shares", "orders"):
            cols[c] = ev[c].astype(np.int64)
        cols["side"] = (ev["side"] == b"S").astype(np.int64)
    elif name == "bbo":
        for c in BBO_COLUMNS:
            cols[c] = ev[c].astype(np.int64)
    else:
        for c in ("sequence", "timestamp", "price", "shares"):
            cols[c] = ev[c].astype(np.int64)
        cols["match_number"] = ev["match_number"].astype(np.uint64)
        cols["kind"] = ev["kind"].view(np.uint8).astype(np.uint8)
        cols["printable"] = ev["printable"].astype(np.uint8)
    return cols


def broken_mask(trades: dict[str, np.ndarray]) -> np.ndarray:
    """True per trade (E, C, P, Q) that a B record in these columns broke (``mark_broken``)."""
    return mark_broken(trades)


def concat_columns(parts: Iterable[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if p]
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
