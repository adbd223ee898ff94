"""LOBSTER files: the message file and the order-book file of chosen stocks, per day.

The format (lobsterdata.com, "Output Structure"): per ticker and day two headerless CSV
files, ``TICKER_YYYY-MM-DD_START_END_message_LEVEL.csv`` and ``..._orderbook_LEVEL.csv``,
START and END the requested period in milliseconds after midnight (LOBSTER's standard
period is 09:30 to 16:00: 34200000 and 57600000). Row i of the order-book file is the book
after the event of row i of the message file.

Message columns: Time (seconds after midnight, here with all 9 decimals of the ITCH
nanoseconds), Type, Order ID, Size, Price (dollars x 10000: the raw ITCH Price(4)
integer), Direction (1 buy, -1 sell; for executions the side of the resting order).
Order-book columns: Ask Price 1, Ask Size 1, Bid Price 1, Bid Size 1, ... to LEVEL; an
empty level is ask price 9999999999 / bid price -9999999999 with size 0.

How ITCH 5.0 maps to the LOBSTER types (every choice made here):

===========  =====  ===========================================================================
ITCH         Type   Order ID, Size, Price, Direction
===========  =====  ===========================================================================
A, F         1      reference, shares, limit price, side
X            2      reference, cancelled shares, the order's price, its side; 3 (deletion) when
                    it takes the whole order, with the shares the order had (an over-cancel,
                    X 500 on an order of 90, is a deletion of 90)
D            3      reference, the shares the order still had, its price, its side
U            3 + 1  two rows at the same time: 3 for the original reference (the shares it
                    still had, its price), then 1 for the new reference (the new total shares
                    and price, the same side): the book after the 3 row is the book with the
                    old order gone and the new one not yet added
E            4      reference, executed shares (at most the shares the order had: an
                    over-execution says what it took off the book), the order's price and side
C            4      reference, executed shares (as E), the *execution* price (the trade's price; the
                    shares leave the order's own level, which the order-book row shows), the
                    order's side; printable N (cross executions) too, since they take visible
                    shares off the book
P            5      the message's reference (0 on feeds since 2010, as in LOBSTER), shares,
                    price, its buy/sell indicator (Nasdaq masks it as B on modern feeds)
Q            6      Order ID by cross type as LOBSTER does: -1 opening (O), -2 closing (C),
                    -3 halt/IPO (H), -4 intraday/post-close (I) and any other; shares, cross
                    price, Direction -1 (no side, as LOBSTER's pseudo messages)
H            7      Order ID 0, Size 0, Direction -1, Price -1 when trading halts or pauses
                    (state H or P), 0 when quoting resumes (Q), 1 when trading resumes (T).
                    An H that says "trading" (T) while the stock is trading already (no halt,
                    pause or quote-only H since the last T; the day starts trading) starts
                    nothing and gets no row: a stock's first H of the day, for one.
B            -      no LOBSTER type: not written, counted in ``skipped["B"]``
===========  =====  ===========================================================================

Types 5, 6 and 7 leave the book as it was: their order-book row repeats the previous one.
A message the book did not apply (an unknown reference, a duplicate add: see the engine's
anomalies) gets no row and is counted in ``skipped`` (messages from START to END only, as
the rows). An X, D, E, C or U goes to the stock
of the order it names, as the engine applies it, when its header names another stock (the
engine counts ``locate_mismatch``). The book is built from the start of
the file; only messages with START <= time < END are written.

Where the numbers come from: the order-book rows are the engine's own depth, rebuilt from
the engine's L2 events (every level change, tagged with the message's sequence number) by
a compiled kernel that snapshots the top LEVEL levels after the chosen events; the message
rows take references and shares from the decoded messages and the side and price of the
order an X/D/E/C/U names from the engine's L2 event for that message.

One pass over the file, slice by slice (``SLICE_BYTES``): the engine applies a slice, the
same bytes are decoded for the chosen stocks while they are mapped, and that slice's rows
are made (each stock's level book and H state carry to the next slice) and written in
batches. Memory is bounded by a slice and a batch, not by the day, unless the tables are
returned too (``tables=True``, the API's default; the command does not keep them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from numba import njit

from itchflow.arguments import whole
from itchflow.errors import missing_file
from itchflow.sinks import _book_access as access
from itchflow.sinks._symbols import resolve_symbols, symbol_list
from itchflow.sinks._clock import DAY_NS, clock_ns, trading_date
from itchflow.sinks.output import new_part, raise_named, refuse_input_as_output
from itchflow.wire.itch import alpha_text

ASK_DUMMY = 9_999_999_999
BID_DUMMY = -9_999_999_999
MESSAGE_COLUMNS = ("Time", "Type", "Order ID", "Size", "Price", "Direction")
SUBMISSION, CANCELLATION, DELETION, EXECUTION, HIDDEN_EXECUTION, CROSS, HALT = 1, 2, 3, 4, 5, 6, 7
CROSS_ORDER_ID = {b"O": -1, b"C": -2, b"H": -3, b"I": -4}
HALT_PRICE = {b"H": -1, b"P": -1, b"Q": 0, b"T": 1}
_TYPES = "RAFEXDCUPQHB"
_BY_ORDER = "EXDCU"  # the types that name an order by its reference, not only by the header's stock
SLICE_BYTES = 8 << 20  # the file is walked in slices of this many bytes: the memory bound
MAX_LEVELS = 1000  # LOBSTER itself offers up to 200; a real book side has held 4,227 levels
ROWS_BUDGET_BYTES = 128 << 20  # a slice's order-book rows stay under this: slices shrink with levels
MIN_ROW_BYTES = 18  # the fewest input bytes per row: a U (37 bytes framed) makes two
WRITE_BATCH_BYTES = 64 << 20  # rows are written in batches of about this much int64 data
_NO_EVENTS = {k: np.zeros(0, np.int64) for k in ("sequence", "side", "price", "shares", "orders")}


def orderbook_columns(levels: int) -> list[str]:
    cols = []
    for i in range(1, levels + 1):
        cols += [f"Ask Price {i}", f"Ask Size {i}", f"Bid Price {i}", f"Bid Size {i}"]
    return cols


def check_file_symbol(ticker: str) -> None:
    """A symbol names files: one holding a path separator ("../X", any ASCII is an ITCH
    symbol) would write outside the output directory. ValueError naming it."""
    if not ticker or any(c in ticker for c in "/\\\0") or ticker.strip(".") == "":
        raise ValueError(f"lobster: the symbol {ticker!r} cannot name a file (a path separator, "
                         "NUL or only dots): ask for it without out=, as tables")


def file_names(ticker: str, date: str, start_ns: int, end_ns: int, levels: int, ext: str = "csv"):
    """LOBSTER's (message, orderbook) file names; start/end in ms after midnight, the start
    rounded down and the end up: a window of part of a millisecond names one that holds it
    (an end of 09:31:00.000000001 was named 34260000, as if rows at 09:31:00 were outside: probe 39)."""
    check_file_symbol(ticker)
    stem = f"{ticker}_{date}_{start_ns // 1_000_000}_{-(-end_ns // 1_000_000)}"
    return f"{stem}_message_{levels}.{ext}", f"{stem}_orderbook_{levels}.{ext}"


@dataclass
class LobsterDay:
    """One stock's day: the two LOBSTER tables (pyarrow; None when not kept), the files
    written, what was skipped, how many rows."""

    symbol: str
    messages: object
    orderbook: object
    files: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    rows: int = 0


# ---- the compiled part: the level book of one stock from its L2 events --------------------

@njit(nogil=True, cache=True)
def depth_after_events(side, price, shares, orders, emit_after, levels, keys, qty, nord, cnt):
    """Replay one stock's L2 events (level totals after each change) and snapshot the top
    ``levels`` of each side after the first ``emit_after[r]`` events, for every r.

    keys/qty/nord (int64[2, cap]: key, shares, orders) and cnt (int64[2]) are the level book
    before the first event,
    carried from one call to the next: each side is a sorted key array with the best level
    last (key = price for bids, -price for asks), so the common changes near the touch move
    few entries. cnt is updated in place; keys, qty and nord are returned, reallocated when a
    side outgrows them. Returns (delta, gone, book, keys, qty, nord): delta[j] the change of
    the level's shares at event j (signed), gone[j] whether its order count fell (an order
    left the level: a cancel or execution that took the whole order), book[r] the LOBSTER row
    (ask price, ask size, bid price, bid size per level, dummies for empty levels). emit_after
    must be non-decreasing within 0..len(side) (the caller checks).
    """
    n = len(side)
    cap = keys.shape[1]
    delta = np.zeros(n, np.int64)
    gone = np.zeros(n, np.bool_)
    rows = len(emit_after)
    book = np.empty((rows, 4 * levels), np.int64)
    r = 0
    for j in range(n + 1):
        while r < rows and emit_after[r] == j:
            for lv in range(levels):
                ia = cnt[1] - 1 - lv
                ib = cnt[0] - 1 - lv
                if ia >= 0:
                    book[r, 4 * lv] = -keys[1, ia]
                    book[r, 4 * lv + 1] = qty[1, ia]
                else:
                    book[r, 4 * lv] = 9_999_999_999
                    book[r, 4 * lv + 1] = 0
                if ib >= 0:
                    book[r, 4 * lv + 2] = keys[0, ib]
                    book[r, 4 * lv + 3] = qty[0, ib]
                else:
                    book[r, 4 * lv + 2] = -9_999_999_999
                    book[r, 4 * lv + 3] = 0
            r += 1
        if j == n:
            break
        s = side[j]
        key = price[j] if s == 0 else -price[j]
        m = cnt[s]
        pos = np.searchsorted(keys[s, :m], key)
        found = pos < m and keys[s, pos] == key
        before = qty[s, pos] if found else 0
        after = shares[j] if orders[j] > 0 else 0
        delta[j] = after - before
        gone[j] = max(orders[j], 0) < (nord[s, pos] if found else 0)
        if orders[j] <= 0:
            if found:
                keys[s, pos:m - 1] = keys[s, pos + 1:m].copy()
                qty[s, pos:m - 1] = qty[s, pos + 1:m].copy()
                nord[s, pos:m - 1] = nord[s, pos + 1:m].copy()
                cnt[s] = m - 1
        elif found:
            qty[s, pos] = after
            nord[s, pos] = orders[j]
        else:
            if m == cap:
                cap *= 2
                nk = np.empty((2, cap), np.int64)
                nq = np.empty((2, cap), np.int64)
                no = np.empty((2, cap), np.int64)
                nk[:, :m] = keys[:, :m]  # m is the old capacity: both sides fit in it
                nq[:, :m] = qty[:, :m]
                no[:, :m] = nord[:, :m]
                keys = nk
                qty = nq
                nord = no
            keys[s, pos + 1:m + 1] = keys[s, pos:m].copy()
            qty[s, pos + 1:m + 1] = qty[s, pos:m].copy()
            nord[s, pos + 1:m + 1] = nord[s, pos:m].copy()
            keys[s, pos] = key
            qty[s, pos] = after
            nord[s, pos] = orders[j]
            cnt[s] = m + 1
    return delta, gone, book, keys, qty, nord


class StockState:
    """What one stock's rows carry from one slice of the day to the next: its level book
    (for ``depth_after_events``), the last trading state of its H messages, and the counts
    of messages that got no row."""

    def __init__(self):
        self.keys = np.empty((2, 256), np.int64)
        self.qty = np.empty((2, 256), np.int64)
        self.nord = np.empty((2, 256), np.int64)
        self.cnt = np.zeros(2, np.int64)
        self.last_trading_state = b"T"
        self.skipped: dict[str, int] = {}

    def skip(self, what: str, n: int) -> None:
        if n:
            self.skipped[what] = self.skipped.get(what, 0) + int(n)


# ---- assembling the rows ------------------------------------------------------------------

def _side_sign(side_bytes: np.ndarray) -> np.ndarray:
    return np.where(side_bytes == b"S", -1, 1).astype(np.int64)


class _Rows:
    """Columns of message rows being collected (seq and a sub-order break ties within a U)."""

    def __init__(self):
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, **cols) -> None:
        n = len(cols["seq"])
        if n:
            self.parts.append({k: np.broadcast_to(np.asarray(v, np.int64), (n,)) for k, v in cols.items()})

    def build(self) -> dict[str, np.ndarray]:
        names = ("seq", "sub", "ts", "type", "ref", "size", "price", "dir", "k", "ev")
        if not self.parts:
            return {k: np.zeros(0, np.int64) for k in names}
        cols = {k: np.concatenate([p[k] for p in self.parts]) for k in names}
        order = np.lexsort((cols["sub"], cols["seq"]))
        return {k: v[order] for k, v in cols.items()}


def _removed_shares(cols: dict[str, np.ndarray], has_ev: np.ndarray, drop: np.ndarray, gone: np.ndarray) -> None:
    """An X, E or C row says the shares the book took off the order (its level's drop), not
    the message's: an over-cancel or over-execution (X 500 on an order of 90) took only what
    the order had. An X that takes the whole order away is a deletion (3) in LOBSTER's terms
    (probe 26: a Type 2 row of 500 shares left a LOBSTER reader a live, negative order)."""
    taking = has_ev & ((cols["type"] == CANCELLATION) | (cols["type"] == EXECUTION))
    cols["size"] = np.where(taking, np.minimum(cols["size"], drop), cols["size"])
    cols["type"] = np.where(taking & gone & (cols["type"] == CANCELLATION), DELETION, cols["type"])


def stock_rows(msgs: dict[str, np.ndarray], l2: dict[str, np.ndarray], levels: int,
               start_ns: int, end_ns: int, state: StockState | None = None,
               ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """One stock: decoded messages (per type letter, this stock's only) and its L2 events (in
    sequence order) of the same stretch of the day -> (message columns, order-book
    int64[n, 4L], skipped counts so far). The stretch can be the whole day, or one slice of
    it after another with the same ``state`` (the level book and H state carry over).
    Vectorised; the level book is the compiled kernel above."""
    state = StockState() if state is None else state
    ev_seq = l2["sequence"]
    rows = _Rows()

    def span(seq):
        return np.searchsorted(ev_seq, seq, "left"), np.searchsorted(ev_seq, seq, "right")

    def in_window(ts):
        return (ts >= start_ns) & (ts < end_ns)

    def keep_applied(code, arr, lo, hi, need):
        ok = (hi - lo) >= need
        state.skip(code, (~ok & in_window(arr["timestamp"])).sum())
        return arr[ok], lo[ok], hi[ok]

    for code in "AF":
        a = msgs[code]
        lo, hi = span(a["sequence"])
        a, lo, hi = keep_applied(code, a, lo, hi, 1)
        rows.add(seq=a["sequence"], sub=0, ts=a["timestamp"], type=SUBMISSION, ref=a["order_reference_number"],
                 size=a["shares"], price=a["price"], dir=_side_sign(a["buy_sell_indicator"]), k=hi, ev=lo)
    for code, typ, size_field in (("X", CANCELLATION, "cancelled_shares"), ("D", DELETION, None),
                                  ("E", EXECUTION, "executed_shares"), ("C", EXECUTION, "executed_shares")):
        a = msgs[code]
        lo, hi = span(a["sequence"])
        a, lo, hi = keep_applied(code, a, lo, hi, 1)
        size = a[size_field] if size_field else -1  # D: the level's drop, filled in below
        price = a["execution_price"] if code == "C" else -1  # -1: the order's price, from its event
        rows.add(seq=a["sequence"], sub=0, ts=a["timestamp"], type=typ, ref=a["order_reference_number"],
                 size=size, price=price, dir=0, k=hi, ev=lo)
    u = msgs["U"]
    lo, hi = span(u["sequence"])
    u, lo, hi = keep_applied("U", u, lo, hi, 1)
    rows.add(seq=u["sequence"], sub=0, ts=u["timestamp"], type=DELETION, ref=u["original_order_reference_number"],
             size=-1, price=-1, dir=0, k=lo + 1, ev=lo)
    added = (hi - lo) >= 2  # the new reference was added (not a replace onto a live reference)
    state.skip("U (new reference not added)", (~added & in_window(u["timestamp"])).sum())
    ua, lo_a, hi_a = u[added], lo[added], hi[added]
    rows.add(seq=ua["sequence"], sub=1, ts=ua["timestamp"], type=SUBMISSION, ref=ua["new_order_reference_number"],
             size=ua["shares"], price=ua["price"], dir=0, k=hi_a, ev=lo_a)
    p = msgs["P"]
    sided = (p["buy_sell_indicator"] == b"B") | (p["buy_sell_indicator"] == b"S")   # any other byte read as a buy
    state.skip("P (side neither B nor S)", (~sided & in_window(p["timestamp"])).sum())
    p = p[sided]
    rows.add(seq=p["sequence"], sub=0, ts=p["timestamp"], type=HIDDEN_EXECUTION, ref=p["order_reference_number"],
             size=p["shares"], price=p["price"], dir=_side_sign(p["buy_sell_indicator"]),
             k=np.searchsorted(ev_seq, p["sequence"], "right"), ev=-1)
    q = msgs["Q"]
    cross_id = np.full(len(q), -4, np.int64)
    for code, oid in CROSS_ORDER_ID.items():
        cross_id[q["cross_type"] == code] = oid
    rows.add(seq=q["sequence"], sub=0, ts=q["timestamp"], type=CROSS, ref=cross_id,
             size=q["shares"].astype(np.int64), price=q["cross_price"], dir=-1,
             k=np.searchsorted(ev_seq, q["sequence"], "right"), ev=-1)
    h = msgs["H"]
    trading = h["trading_state"]
    prev = np.concatenate([np.array([state.last_trading_state], trading.dtype), trading[:-1]])
    if len(h):
        state.last_trading_state = trading[-1]
    known = np.isin(trading, list(HALT_PRICE))
    state.skip("H (unknown state)", (~known & in_window(h["timestamp"])).sum())
    starts_something = known & ((trading != b"T") | (prev != b"T"))
    h, trading = h[starts_something], trading[starts_something]
    rows.add(seq=h["sequence"], sub=0, ts=h["timestamp"], type=HALT, ref=0, size=0,
             price=np.select([trading == code for code in HALT_PRICE], list(HALT_PRICE.values())), dir=-1,
             k=np.searchsorted(ev_seq, h["sequence"], "right"), ev=-1)
    state.skip("B", in_window(msgs["B"]["timestamp"]).sum())

    cols = rows.build()
    # stamped past the day (the field runs to 78 h; no window reaches them): said, not lost unseen
    state.skip("stamped at or after 24:00 (past the day: no window reaches it)", (cols["ts"] >= DAY_NS).sum())
    inside = in_window(cols["ts"])
    cols = {k: v[inside] for k, v in cols.items()}
    emit = np.ascontiguousarray(cols["k"])
    if len(emit) and (np.any(np.diff(emit) < 0) or emit[0] < 0 or emit[-1] > len(ev_seq)):
        raise RuntimeError("LOBSTER rows and L2 events disagree on the message order")  # a bug, not bad input
    delta, gone, book, state.keys, state.qty, state.nord = depth_after_events(
        np.ascontiguousarray(l2["side"]), np.ascontiguousarray(l2["price"]), np.ascontiguousarray(l2["shares"]),
        np.ascontiguousarray(l2["orders"]), emit, int(levels), state.keys, state.qty, state.nord, state.cnt)
    ev = cols["ev"]
    has_ev = ev >= 0
    evi = np.where(has_ev, ev, 0)
    if len(ev_seq):
        from_event = has_ev & (cols["price"] == -1)
        cols["price"] = np.where(from_event, l2["price"][evi], cols["price"])
        cols["size"] = np.where(has_ev & (cols["size"] == -1), -delta[evi] if len(delta) else 0, cols["size"])
        _removed_shares(cols, has_ev, -delta[evi], gone[evi])
        cols["dir"] = np.where(has_ev, np.where(l2["side"][evi] == 0, 1, -1), cols["dir"])
    cols, book = _unrepresentable_left_out(cols, book, state)
    return cols, book, state.skipped


def _unrepresentable_left_out(cols: dict[str, np.ndarray], book: np.ndarray, state: StockState):
    """LOBSTER's columns are signed 64-bit: an order reference from 2**63 on (read as int64,
    negative: 2**64-1 was written -1, the opening cross's Order ID) and a cross of 2**63 shares
    or more (written negative) cannot be written. Such rows are left out and counted (the
    book rows after them show what the order did); no real day comes near (probe 38)."""
    crossing = cols["type"] == CROSS
    big_ref = (cols["ref"] < 0) & ~crossing
    big_cross = crossing & (cols["size"] < 0)
    state.skip("order reference of 2^63 or more (LOBSTER's Order ID is int64)", big_ref.sum())
    state.skip("Q of 2^63 shares or more (LOBSTER's Size is int64)", big_cross.sum())
    keep = ~(big_ref | big_cross)
    if keep.all():
        return cols, book
    return {k: v[keep] for k, v in cols.items()}, book[keep]


def to_tables(cols: dict[str, np.ndarray], book: np.ndarray, levels: int):
    """(message table, order-book table) with LOBSTER's column names; Time in float64 seconds."""
    import pyarrow as pa

    messages = pa.table({
        "Time": pa.array(cols["ts"] / 1e9, pa.float64()),
        "Type": pa.array(cols["type"], pa.int64()),
        "Order ID": pa.array(cols["ref"], pa.int64()),
        "Size": pa.array(cols["size"], pa.int64()),
        "Price": pa.array(cols["price"], pa.int64()),
        "Direction": pa.array(cols["dir"], pa.int64()),
    })
    orderbook = pa.table({name: pa.array(np.ascontiguousarray(book[:, i]), pa.int64())
                          for i, name in enumerate(orderbook_columns(levels))})
    return messages, orderbook


def _time_text(ts_ns: np.ndarray):
    """Seconds after midnight with all nine decimals, exactly (no float rounding)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    secs = pc.cast(pa.array(ts_ns // 1_000_000_000), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(ts_ns % 1_000_000_000), pa.string()), 9, "0")
    return pc.binary_join_element_wise(secs, frac, ".")


class StockOutput:
    """One stock's rows as they come, slice by slice: kept for the returned tables, and/or
    written to its two files in batches of about WRITE_BATCH_BYTES. A file is written under
    ``NAME.<unique>.part`` and renamed when the day is done, so an error or an interrupt never leaves
    a file that looks finished."""

    def __init__(self, levels: int, *, keep: bool, paths: list[str] | None = None, parquet: bool = False):
        self.levels, self.keep, self.paths, self.parquet = levels, keep, paths or [], parquet
        self.rows = 0
        self._kept: list[tuple] = []
        self._pending = _Pending(4 * levels + 6)  # (messages, orderbook, timestamps) not yet written
        self._writers: list = []
        self._files: list = []
        self._parts: list[str] = []   # the files of this writer's own the paths are written under
        if self.paths:
            try:
                self._open()
            except BaseException:   # the .part files made so far: no caller holds this writer to abort it
                self.abort()
                raise

    def _open(self) -> None:
        import pyarrow as pa

        Path(self.paths[0]).parent.mkdir(parents=True, exist_ok=True)
        messages, orderbook = _empty_tables(self.levels)
        # The files are opened here and closed by abort() even when a writer's close fails
        # (a full disk): pyarrow's writers keep their file open after a failed close.
        for p in self.paths:   # each a file of this writer's own (abort removes those made)
            self._parts.append(new_part(p))
        self._files = [pa.OSFile(t, "wb") for t in self._parts]
        if self.parquet:
            import pyarrow.parquet as pq

            schemas = (messages.schema, orderbook.schema)
            self._writers = [pq.ParquetWriter(f, sc) for f, sc in zip(self._files, schemas)]
        else:
            import pyarrow.csv as pcsv

            opts = pcsv.WriteOptions(include_header=False, quoting_style="none")
            schemas = (messages.schema.set(0, pa.field("Time", pa.string())), orderbook.schema)
            self._writers = [pcsv.CSVWriter(f, sc, write_options=opts) for f, sc in zip(self._files, schemas)]

    def add(self, cols: dict[str, np.ndarray], book: np.ndarray) -> None:
        n = len(cols["ts"])
        if not n:
            return
        self.rows += n
        messages, orderbook = to_tables(cols, book, self.levels)
        if self.keep:
            self._kept.append((messages, orderbook))
        if self._writers and self._pending.add((messages, orderbook, cols["ts"]), n):
            self._write()

    def _write(self) -> None:
        import pyarrow as pa

        pending = self._pending.take()
        if not pending:
            return
        messages = pa.concat_tables([m for m, _, _ in pending])
        orderbook = pa.concat_tables([b for _, b, _ in pending])
        if not self.parquet:  # LOBSTER's Time: seconds with all nine decimals, as text
            messages = messages.set_column(0, "Time", _time_text(np.concatenate([t for _, _, t in pending])))
        for writer, table, path in zip(self._writers, (messages, orderbook), self.paths):
            try:
                writer.write_table(table)
            except OSError as e:  # a full disk: say which file
                raise_named(e, path)

    def finish(self) -> tuple[object, object]:
        """Write what is left, close and rename the files; the tables if kept (else None)."""
        import pyarrow as pa

        self._write()
        for w, f, path in zip(self._writers, self._files, self.paths):
            try:
                w.close()
                f.close()
            except OSError as e:
                raise_named(e, path)
        self._writers, self._files = [], []
        for t, p in zip(self._parts, self.paths):
            os.replace(t, p)
        if not self.keep:
            return None, None
        if not self._kept:
            return _empty_tables(self.levels)
        return (pa.concat_tables([m for m, _ in self._kept]), pa.concat_tables([b for _, b in self._kept]))

    def abort(self) -> None:
        """Close and remove the unfinished files."""
        for closeable in self._writers + self._files:
            try:
                closeable.close()
            except Exception:  # already failing: closing the files and removing them is what matters
                pass
        self._writers, self._files = [], []
        for t in self._parts:
            try:
                os.remove(t)
            except FileNotFoundError:
                pass


def _empty_tables(levels: int):
    """(message table, order-book table) with no rows: the schemas, and what a stock without
    rows returns."""
    cols = {k: np.zeros(0, np.int64) for k in ("ts", "type", "ref", "size", "price", "dir")}
    return to_tables(cols, np.zeros((0, 4 * levels), np.int64), levels)


class _Pending:
    """Tables waiting to be written; full at about WRITE_BATCH_BYTES of int64 columns (both
    the per-stock files and the combined part batch their writes by this one rule)."""

    def __init__(self, columns: int):
        self.row_bytes = 8 * columns
        self.items: list = []
        self.rows = 0

    def add(self, item, rows: int) -> bool:
        """Keep item (of rows rows); True when what is kept should be written now."""
        self.items.append(item)
        self.rows += rows
        return self.rows * self.row_bytes >= WRITE_BATCH_BYTES

    def take(self) -> list:
        items, self.items, self.rows = self.items, [], 0
        return items


def lobster_window(levels, start, end) -> tuple[int, int, int]:
    """Checked (levels, start ns, end ns) of a LOBSTER request (the batch job checks its
    options with it before any task runs)."""
    levels = whole(levels, "lobster: levels")   # 2.7 levels is a mistake, not 2
    if not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"lobster: levels must be between 1 and {MAX_LEVELS} (got {levels})")
    start_ns = 0 if start is None else clock_ns(start, "start")
    end_ns = DAY_NS if end is None else clock_ns(end, "end")
    if end_ns <= start_ns:
        raise ValueError("lobster: end must be after start")
    return levels, start_ns, end_ns


def _check_exists(source) -> None:
    if isinstance(source, (str, os.PathLike)) and not str(source).startswith("tail:") and not os.path.exists(source):
        raise missing_file(source)


def lobster(source, symbols, levels: int = 10, *, start="09:30", end="16:00", date: str | None = None,
            out=None, parquet: bool = False, tables: bool = True,
            progress: Callable[[int, int], None] | None = None,
            slice_bytes: int = SLICE_BYTES, capture_stats: dict | None = None,
            on_books: Callable[[object], None] | None = None) -> dict[str, LobsterDay]:
    """LOBSTER message and order-book tables of the chosen stocks for one day's file.

    source: a path (raw, .gz, pcap) or buffer; symbols: list or comma-separated text; levels:
    order-book levels per side (1 to MAX_LEVELS); start/end: 'HH:MM[:SS]' or ns after
    midnight (None = the whole day), messages with start <= time < end are written. With
    ``out`` (a directory) the files are written there under LOBSTER's names (CSV, or Parquet
    with parquet=True); the date comes from ``date`` or the file name. tables=False returns
    no tables (their ``messages`` and ``orderbook`` are None; ``rows`` counts them): with
    ``out`` that keeps memory bounded by a slice of ``slice_bytes`` of the file (less with
    many levels: a slice's order-book rows stay under ROWS_BUDGET_BYTES), whatever the size
    of the day. capture_stats: filled with a capture's gaps and malformed packets (as
    ``replay``'s). on_books: called with the Books at the end of the day (their counters:
    messages, anomalies, unknown types). Returns {symbol: LobsterDay}.
    """
    syms = symbol_list(symbols, "lobster", required=True)
    levels, start_ns, end_ns = lobster_window(levels, start, end)
    if out is None and not tables:
        raise ValueError("lobster: with tables=False give out= (a directory), or nothing is kept")
    _check_exists(source)  # before asking for a date in its name
    day = trading_date(source, date)
    if out is not None:
        for sym in syms:
            check_file_symbol(sym)
    if out is not None and day is None:
        raise ValueError(f"lobster: no date in the file name {os.fspath(source) if isinstance(source, (str, os.PathLike)) else '(buffer)'}: give date='YYYY-MM-DD' (itchflow lobster --date YYYY-MM-DD)")

    def output_for(sym: str) -> StockOutput:
        paths = None
        if out is not None:
            names = file_names(sym, day, start_ns, end_ns, levels, "parquet" if parquet else "csv")
            paths = [str(Path(out) / n) for n in names]
            for p in paths:
                refuse_input_as_output(p, source)
        return StockOutput(levels, keep=tables, paths=paths, parquet=parquet)

    streams, books = _walk(source, syms, levels, start_ns, end_ns, output_for, progress, slice_bytes, capture_stats)
    if on_books is not None:
        on_books(books)
    try:
        result = {}
        for sym, state, output in streams:
            messages, orderbook = output.finish()
            result[sym] = LobsterDay(sym, messages, orderbook, output.paths, dict(state.skipped), output.rows)
    except BaseException:
        for _, _, output in streams:
            output.abort()
        raise
    return {s: result[s] for s in syms}


def lobster_dataset(source, symbols, out_file, levels: int = 10, *, start="09:30", end="16:00",
                    progress: Callable[[int, int], None] | None = None,
                    slice_bytes: int = SLICE_BYTES, capture_stats: dict | None = None) -> dict[str, dict]:
    """The chosen stocks' LOBSTER rows of one day as ONE Parquet file (the batch job's part of
    a dataset): a ``symbol`` column, LOBSTER's message columns, then its order-book columns,
    row i of a stock being its message row i and the book after it, exactly as ``lobster``
    makes them; stocks one after another within each batch. Memory is bounded as for
    ``lobster(..., tables=False)``. A symbol the day has no directory (R) message for is an
    error, as in ``lobster``. Returns {"stocks": {symbol: {"rows": n, "skipped": {...}}},
    "messages": messages the engine applied, "anomalies": the engine's counts} (no symbols:
    an empty file and nothing read). capture_stats: filled with a capture's counters (gaps,
    malformed packets), as ``lobster``'s."""
    syms = symbol_list(symbols, "lobster", required=True) if symbols else []
    levels, start_ns, end_ns = lobster_window(levels, start, end)
    _check_exists(source)
    combined = CombinedParquet(out_file, levels)
    try:
        streams, books = _walk(source, syms, levels, start_ns, end_ns, combined.output_for, progress,
                               slice_bytes, capture_stats) if syms else ([], None)
        combined.close()
    except BaseException:
        combined.abort()
        raise
    return {"stocks": {sym: {"rows": output.rows, "skipped": dict(state.skipped)} for sym, state, output in streams},
            "messages": books.messages if books is not None else 0,
            "anomalies": {k: v for k, v in books.anomalies().items() if v} if books is not None else {}}


def order_stock(msgs: np.ndarray, l2: dict[str, np.ndarray]) -> np.ndarray:
    """The stock each message naming an order (X, D, E, C, U) is filed under: the stock whose
    book its L2 event changed, which is the order's (the engine applies it there, counting
    ``locate_mismatch`` when the header names another); the header's locate when it changed
    no chosen stock's book (its stock then counts it as skipped). l2 in sequence order."""
    owner = msgs["stock_locate"].astype(np.int64)
    if not l2 or not len(l2["sequence"]) or not len(msgs):
        return owner
    at = np.minimum(np.searchsorted(l2["sequence"], msgs["sequence"]), len(l2["sequence"]) - 1)
    hit = l2["sequence"][at] == msgs["sequence"]
    owner[hit] = l2["stock_locate"][at[hit]]
    return owner


def _walk(source, syms: list[str], levels: int, start_ns: int, end_ns: int,
          output_for: Callable[[str], "StockOutput"], progress, slice_bytes: int,
          capture_stats: dict | None = None) -> tuple[list[tuple], object]:
    """The one pass both entry points make: ([(symbol, StockState, output)] in the order the
    stocks' directory messages came, the engine's Books at the end), every row handed to its
    output's add(); every output aborted if anything fails (a symbol without a directory
    message included)."""
    from itchflow.decode.reader import decode_slice

    # a slice makes at most slice_bytes / MIN_ROW_BYTES rows of 32 bytes a level
    slice_bytes = max(1, min(int(slice_bytes), max(64 << 10, ROWS_BUDGET_BYTES * MIN_ROW_BYTES // (32 * levels))))
    wanted = set(syms)
    streams: dict[int, tuple[str, StockState, object]] = {}  # locate -> this stock's rows
    # The chosen stocks' messages and L2 events since the last rows were made: a capture hands
    # the engine a packet at a time, so rows are made per slice_bytes of input, not per call.
    pending = {"messages": [], "events": [], "bytes": 0}

    def start_streams(directory: np.ndarray) -> None:
        for loc, stock in zip(directory["stock_locate"].tolist(), directory["stock"].tolist()):
            sym = alpha_text(stock)
            if sym in wanted and all(sym != s for s, _, _ in streams.values()) and loc not in streams:
                streams[loc] = (sym, StockState(), output_for(sym))

    def on_bytes(chunk, lo: int, hi: int, first_sequence: int) -> None:
        # the bytes the engine just applied, decoded while their pages are mapped; kept whole
        # until this slice's events (on_events, next) say which stocks' orders they changed
        msgs = decode_slice(chunk, lo, hi, first_sequence, _TYPES)
        if len(msgs["R"]) and len(streams) < len(wanted):
            start_streams(msgs["R"])
        if streams:
            pending["decoded"] = msgs
            pending["bytes"] += hi - lo

    def on_events(ev: dict) -> None:
        l2 = ev.get("l2")
        locs = np.fromiter(streams, np.int64)
        events = None
        if streams and l2 and len(l2["sequence"]):
            mine = np.isin(l2["stock_locate"], locs)
            events = {k: v[mine] for k, v in l2.items()}
            pending["events"].append(events)
        msgs = pending.pop("decoded", None)
        if msgs is not None:  # a chosen stock's messages, and any that changed a chosen stock's order
            changed = events["sequence"] if events is not None else np.zeros(0, np.uint64)
            pending["messages"].append({c: a[np.isin(a["stock_locate"], locs)
                                             | (np.isin(a["sequence"], changed) if c in _BY_ORDER else False)]
                                        for c, a in msgs.items()})
        if pending["bytes"] >= slice_bytes:
            make_rows()

    def make_rows() -> None:
        if not pending["messages"]:
            return
        msgs = {c: np.concatenate([m[c] for m in pending["messages"]]) for c in _TYPES}
        l2 = access.concat_columns(pending["events"])
        pending.update(messages=[], events=[], bytes=0)
        owner = {c: order_stock(a, l2) if c in _BY_ORDER else a["stock_locate"] for c, a in msgs.items()}
        for loc, (_, state, output) in streams.items():
            mine = {c: a[owner[c] == loc] for c, a in msgs.items()}
            here = l2["stock_locate"] == loc if l2 else None
            events = {k: v[here] for k, v in l2.items()} if l2 else _NO_EVENTS
            cols, book, _ = stock_rows(mine, events, levels, start_ns, end_ns, state)
            output.add(cols, book)

    try:
        # renumbered: rows pair messages with L2 events by sequence, and an anonymised
        # capture's packets (all of sequence 0) would give many messages one number
        books = access.replay_events(source, syms, l2=True, on_events=on_events, on_bytes=on_bytes,
                                     progress=progress, slice_bytes=slice_bytes, capture_stats=capture_stats,
                                     renumber=True)
        make_rows()
        final = access.directory(books)
        renamed = {s: (loc, final.get(loc)) for loc, (s, _, _) in streams.items() if final.get(loc) != s}
        if renamed:   # (it said "no stock directory (R) message for" a name an R did give: probe 54)
            raise KeyError("lobster: " + "; ".join(
                f"{s} was renamed by a later R (locate {loc} is {new} at the end of the day), and lobster "
                f"cannot yet be asked for a name an R took away: ask for {new} for its rows after the R"
                for s, (loc, new) in renamed.items()))
        resolve_symbols(final, syms, "lobster")   # none missing, none twice
    except BaseException:
        for _, _, output in streams.values():
            output.abort()
        raise
    return list(streams.values()), books


class CombinedParquet:
    """Every chosen stock's rows in one Parquet file: ``symbol``, the message columns, the
    order-book columns; written in batches of about WRITE_BATCH_BYTES across the stocks."""

    def __init__(self, path, levels: int):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.levels = levels
        messages, orderbook = _empty_tables(levels)
        self.schema = pa.schema([pa.field("symbol", pa.string())] + list(messages.schema) + list(orderbook.schema))
        self._writer = pq.ParquetWriter(str(path), self.schema)
        self._pending = _Pending(4 * levels + 7)

    def output_for(self, symbol: str) -> "_CombinedStock":
        return _CombinedStock(self, symbol)

    def add(self, symbol: str, cols: dict[str, np.ndarray], book: np.ndarray) -> None:
        import pyarrow as pa

        messages, orderbook = to_tables(cols, book, self.levels)
        n = messages.num_rows
        columns = [pa.array(np.full(n, symbol, object), pa.string())] + messages.columns + orderbook.columns
        if self._pending.add(pa.Table.from_arrays(columns, schema=self.schema), n):
            self._write()

    def _write(self) -> None:
        import pyarrow as pa

        pending = self._pending.take()
        if pending:
            self._writer.write_table(pa.concat_tables(pending))

    def close(self) -> None:
        self._write()
        self._writer.close()

    def abort(self) -> None:
        try:
            self._writer.close()
        except Exception:  # already failing; the caller removes the file
            pass


class _CombinedStock:
    """One stock's door into a CombinedParquet (what ``_walk`` hands its rows to)."""

    def __init__(self, combined: CombinedParquet, symbol: str):
        self.combined, self.symbol, self.rows = combined, symbol, 0

    def add(self, cols: dict[str, np.ndarray], book: np.ndarray) -> None:
        if len(cols["ts"]):
            self.rows += len(cols["ts"])
            self.combined.add(self.symbol, cols, book)

    def abort(self) -> None:
        pass
