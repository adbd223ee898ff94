"""Event outputs: BBO changes, trades, L2 level changes, depth snapshots.

The kernel appends fixed-size records to preallocated structured arrays (no Python object
per event); the driver grows them between calls. ``Books.take_events`` hands them out as
``Events``: numpy structured arrays that also know their stocks' symbols, with
``to_arrow()`` / ``to_pandas()`` (pyarrow and pandas load on first use). Writing them to
Parquet, streamed over a whole day, is ``itchflow.sinks.events``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from itchflow.book import layout as L
from itchflow.book.replay import apply_slice, slice_budget

_FIRST = 1 << 14


class EventBuffers:
    def __init__(self, capacity: int = _FIRST):
        self.trades = np.zeros(capacity, L.TRADE_KERNEL_DTYPE)
        self.bbo = np.zeros(capacity, L.BBO_KERNEL_DTYPE)
        self.l2 = np.zeros(capacity, L.L2_KERNEL_DTYPE)
        self.n_trades = self.n_bbo = self.n_l2 = 0

    def sync_to(self, ctl: np.ndarray) -> None:
        ctl[L.C_TRADES_CAP], ctl[L.C_TRADES_N] = len(self.trades), self.n_trades
        ctl[L.C_BBO_CAP], ctl[L.C_BBO_N] = len(self.bbo), self.n_bbo
        ctl[L.C_L2_CAP], ctl[L.C_L2_N] = len(self.l2), self.n_l2

    def sync_from(self, ctl: np.ndarray) -> None:
        self.n_trades = int(ctl[L.C_TRADES_N])
        self.n_bbo = int(ctl[L.C_BBO_N])
        self.n_l2 = int(ctl[L.C_L2_N])

    def counts(self) -> tuple[int, int, int]:
        """(trades, bbo, l2) recorded so far (as of the last sync): a mark for ``renumber``."""
        return self.n_trades, self.n_bbo, self.n_l2

    def renumber(self, since: tuple[int, int, int], numbers) -> None:
        """Give the events recorded since the mark ``since`` (``counts``) new sequence numbers:
        numbers(the numbers they have) (an array of the same length)."""
        for arr, n0, n1 in zip((self.trades, self.bbo, self.l2), since, self.counts()):
            if n1 > n0:
                s = arr["sequence"]
                s[n0:n1] = numbers(s[n0:n1])

    def grow(self, status: int) -> None:
        name = {L.NEED_TRADES_OUT: "trades", L.NEED_BBO_OUT: "bbo", L.NEED_L2_OUT: "l2"}[status]
        old = getattr(self, name)
        new = np.zeros(2 * len(old), old.dtype)
        new[: len(old)] = old
        setattr(self, name, new)

    def take(self, ctl: np.ndarray, symbol_of=str):
        """(bbo, trades, l2) ``Events``: copies of what was recorded; the buffers start over."""
        self.sync_from(ctl)
        out = (Events(self.bbo[: self.n_bbo].view(L.BBO_EVENT_DTYPE), symbol_of),
               Events(self.trades[: self.n_trades].view(L.TRADE_EVENT_DTYPE), symbol_of),
               Events(self.l2[: self.n_l2].view(L.L2_EVENT_DTYPE), symbol_of))
        self.n_trades = self.n_bbo = self.n_l2 = 0
        self.sync_to(ctl)
        return out


class Events(np.ndarray):
    """An event stream (BBO changes, trades or L2 changes): a numpy structured array (a copy)
    that remembers how to name its stocks, so it converts in one call.

    >>> bbo, trades, l2 = books.take_events()
    >>> trades["price"], len(bbo)                   # numpy, as ever
    >>> trades.to_pandas()                          # a DataFrame with a symbol column
    >>> bbo.to_arrow()                              # a pyarrow.Table
    """

    def __new__(cls, records: np.ndarray, symbol_of=str):
        obj = np.array(records, copy=True).view(cls)
        obj.symbol_of = symbol_of
        return obj

    def __array_finalize__(self, obj) -> None:
        self.symbol_of = getattr(obj, "symbol_of", str)

    # Pickling (multiprocessing, Dask, joblib) keeps the symbols: the names of the stocks
    # present go along as a table (symbol_of is usually a bound Books.symbol, whose books
    # must not travel with every array), not lost to the default of locate numbers.
    def __reduce__(self):
        rebuild, args, state = super().__reduce__()
        return rebuild, args, (state, _symbol_table(self))

    def __setstate__(self, state) -> None:
        array_state, names = state
        super().__setstate__(array_state)
        self.symbol_of = SymbolTable(names)

    def to_arrow(self):
        """pyarrow.Table: a symbol column; trades get ``broken``; one-byte codes become text."""
        return to_arrow(self.view(np.ndarray), self.symbol_of)

    def to_pandas(self):
        """pandas.DataFrame of the same columns as ``to_arrow``."""
        return self.to_arrow().to_pandas()


class SymbolTable:
    """locate -> symbol from a {locate: symbol} table (the locate as text when absent): what
    an unpickled ``Events`` names its stocks by."""

    def __init__(self, names: dict[int, str]):
        self.names = dict(names)

    def __call__(self, locate: int) -> str:
        return self.names.get(int(locate), str(int(locate)))


def _symbol_table(events: Events) -> dict[int, str]:
    plain = events.view(np.ndarray)
    if plain.dtype.names is None or "stock_locate" not in plain.dtype.names:
        return {}
    return {int(loc): events.symbol_of(int(loc)) for loc in np.unique(plain["stock_locate"])}


# The fields a B record repeats from the trade it broke (the engine writes the kept trade's).
_BROKEN_TRADE_FIELDS = ("stock_locate", "price", "shares")


def mark_broken(trades) -> np.ndarray:
    """bool per trade: True when a later B record (in this array) broke it.

    trades: a trade event array, or a dict of its columns (``kind``, ``match_number``, and
    where present ``stock_locate``, ``price``, ``shares``). The engine breaks the trade its
    match index kept, the first with that number (a later one is a ``duplicate_match`` and
    stays counted), so a B marks the first earlier trade of its number whose stock, price
    and shares are the ones the B carries: none when that trade came before this array, unless
    a trade in it reused the number with the same stock, price and shares (inconsistent
    input: match numbers are unique in a day), which an event cannot tell apart."""
    kinds = np.asarray(trades["kind"])
    match = np.asarray(trades["match_number"])
    is_break = kinds == (b"B" if kinds.dtype.kind == "S" else ord("B"))
    out = np.zeros(len(kinds), bool)
    at_break, at_trade = np.flatnonzero(is_break), np.flatnonzero(~is_break)
    if not len(at_break) or not len(at_trade):
        return out
    by_number = np.lexsort((at_trade, match[at_trade]))       # by match number, then position
    numbers, positions = match[at_trade][by_number], at_trade[by_number]
    k = np.minimum(np.searchsorted(numbers, match[at_break]), len(numbers) - 1)
    first = positions[k]                                       # the first trade of each B's number
    hit = (numbers[k] == match[at_break]) & (first < at_break)
    fields = trades.dtype.names if isinstance(trades, np.ndarray) else tuple(trades)
    for name in _BROKEN_TRADE_FIELDS:
        if name in fields:
            column = np.asarray(trades[name])
            hit &= column[first] == column[at_break]
    out[first[hit]] = True
    return out


def _symbol_column(locates: np.ndarray, symbol_of):
    """The symbol of every row as an Arrow string column: one lookup per distinct locate, then
    a take in Arrow (no Python string per row: this column was most of a Parquet write)."""
    import pyarrow as pa

    locates = np.asarray(locates, np.int64).reshape(-1)
    present = np.flatnonzero(np.bincount(locates, minlength=1))   # locates are < 65536: no sort
    slot = np.zeros(present[-1] + 1 if len(present) else 1, np.int64)
    slot[present] = np.arange(len(present))
    names = pa.array([symbol_of(int(u)) for u in present], pa.string())
    return names.take(pa.array(slot[locates]))


# A one-byte code as text: printable ASCII as itself, any other byte as "\\xNN" (a hostile
# or corrupt byte stays visible in the table, never a UnicodeDecodeError or a silent "").
_BYTE_TEXT = [chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in range(256)]


def byte_text(col: np.ndarray):
    """One-byte codes (S1 or uint8) as a pyarrow string array (``_BYTE_TEXT``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.take(pa.array(_BYTE_TEXT, pa.string()), pa.array(col.view(np.uint8).astype(np.int64)))


def to_arrow(events: np.ndarray, symbol_of=str):
    """A structured event array (any of the three) -> pyarrow.Table, with a symbol column.

    symbol_of: locate -> symbol text (e.g. ``Books.symbol``). Trades get a ``broken``
    column; single-byte codes become strings.
    """
    import pyarrow as pa

    cols = {}
    for name in events.dtype.names:
        col = events[name]
        if col.dtype.kind == "S":   # a corrupt side byte (P 0xFF) failed the whole table
            col = byte_text(col)
        cols[name] = col
        if name == "stock_locate":
            cols["symbol"] = _symbol_column(col, symbol_of)
    if events.dtype == L.TRADE_EVENT_DTYPE:
        cols["broken"] = mark_broken(events)
        cols["printable"] = events["printable"].astype(bool)
    return pa.table({k: v if isinstance(v, pa.Array) else pa.array(v) for k, v in cols.items()})


SNAPSHOT_DTYPE = np.dtype([
    ("timestamp", np.int64),
    ("stock_locate", np.uint16),
    ("side", "S1"),
    ("level", np.uint16),     # 0 = best
    ("price", np.uint32),
    ("shares", np.int64),
    ("orders", np.uint32),
])


MAX_SNAPSHOT_TIMES = 1_000_000  # a mistyped interval (every 1 ns) is refused, not billions of times


def snapshot_step(every_s: float) -> int:
    """A snapshot interval in ns: a positive number of seconds, at least 1 ns, rounded to the
    nearest ns as ``bars`` rounds its interval (``sinks._clock.every_ns``, a stage above this
    one): 4.1 * 1e9 is 4099999999.9999995 as a float, truncated a step 1 ns short."""
    import math

    every_s = float(every_s)
    ns = every_s * 1e9
    step = round(ns) if math.isfinite(ns) else 0   # checked as a float: 1e300 s overflows to inf
    if step <= 0:
        raise ValueError(f"every must be a positive number of seconds, at least 1 ns (got {every_s})")
    return step


def every_times(every_s: float, first_ns: int, last_ns: int) -> list[int]:
    """Snapshot times every ``every_s`` seconds (on multiples of the step) after first_ns up to
    last_ns: what ``itchflow snapshots --every`` and the batch job take. Refuses a step under
    1 ns, a grid of more than MAX_SNAPSHOT_TIMES times (a mistyped interval would
    otherwise build a list of billions) and one with no time in the day (an empty output)."""
    step = snapshot_step(every_s)
    every_s = float(every_s)
    start = (int(first_ns) // step + 1) * step
    count = max(0, (int(last_ns) - start) // step + 1)
    if count > MAX_SNAPSHOT_TIMES:
        raise ValueError(f"a snapshot every {every_s:g} s over this day is {count:,} times, more than "
                         f"{MAX_SNAPSHOT_TIMES:,}: take a longer interval")
    if count == 0:   # an empty output said nothing (the batch job counted the day as 0 messages)
        raise ValueError(f"a snapshot every {every_s:g} s: no snapshot time falls within the day's messages "
                         f"({int(first_ns):,} to {int(last_ns):,} ns after midnight)")
    return list(range(start, int(last_ns) + 1, step))


def iter_snapshots(books, source, times_ns, symbols, n: int, *, slice_bytes: int = 32 << 20,
                   capture_stats: dict | None = None) -> Iterator[np.ndarray]:
    """Depth-n snapshots of the chosen symbols at each time (book after every message <= t),
    one SNAPSHOT_DTYPE array a time in time order: what ``snapshots`` collects and the Parquet
    writer streams, so that memory holds one time's rows, not the day's.

    books: a fresh ``Books``; source: anything ``iter_chunks`` takes (a path, a buffer).
    The books are fed slices of at most slice_bytes (0 or less: whole chunks, as ``replay``),
    each slice's pages of a mapped day let go once applied (``Chunk.release``), and nothing
    after the last time is applied. A time before the day lists a symbol (its R message) has
    no rows for it: its book is empty; a symbol the day never lists is a KeyError (after the
    last time's rows, found by reading on past the last time if need be).
    capture_stats: filled with a capture's counters (gaps ...), as ``replay`` fills it.
    """
    from itchflow.sources.files import iter_chunks

    budget = slice_budget(slice_bytes)
    times = sorted(int(t) for t in times_ns)
    unlisted: set = set()   # symbols a snapshot found not yet in the directory

    def more_to_read() -> bool:   # past the last time: only to learn whether they are listed
        if unlisted:
            unlisted.difference_update(books.symbols)
        return bool(unlisted)

    it = iter(times)
    t = next(it, None)
    chunks = iter_chunks(source, capture_stats=capture_stats, join_runs=True) if t is not None else ()
    for chunk in chunks:
        pos, end, place = 0, len(chunk.data), 0   # place: the next message's in the chunk (runs)
        books.next_sequence = int(chunk.first_sequence)
        with chunk.reading():  # a file truncated meanwhile is the error, not what its zeros made
            while pos < end and (t is not None or more_to_read()):
                used, place = apply_slice(books, chunk, pos, place, chunk.runs, t, budget)
                pos += used
                chunk.release(pos)
                if t is not None and books.stopped_at_time:  # the next message is later than t
                    yield _snapshot(books, t, symbols, n, unlisted)
                    t = next(it, None)
        if t is None and not more_to_read():
            break
    while t is not None:  # times after the last message see the final book
        yield _snapshot(books, t, symbols, n, unlisted)
        t = next(it, None)
    for sym in unlisted:
        books.locate(sym)   # a symbol the whole day never listed: its KeyError


def snapshots(books, source, times_ns, symbols, n: int, *, slice_bytes: int = 32 << 20,
              capture_stats: dict | None = None) -> np.ndarray:
    """``iter_snapshots``'s rows as one SNAPSHOT_DTYPE array: one row per level per side per
    symbol per time. Every row is held, so rows past the memory this machine has available
    (MemAvailable) are refused as they grow, with their count (all levels of a deep book
    every second is billions of rows); ``itchflow snapshots`` and the batch job stream them
    to Parquet instead (``sinks.events.snapshots_to_parquet``)."""
    from itchflow.hw.memory import available_bytes

    rows: list[np.ndarray] = []
    held = 0
    free = available_bytes()
    # the concatenation copies the rows once more: refuse before half of what is free is held
    limit = None if free is None else free // 2
    for part in iter_snapshots(books, source, times_ns, symbols, n, slice_bytes=slice_bytes,
                               capture_stats=capture_stats):
        rows.append(part)
        held += part.nbytes
        if limit is not None and held > limit:
            raise ValueError(f"snapshots: {sum(len(r) for r in rows):,} rows ({held / 1e9:,.1f} GB) by "
                             f"{len(rows):,} of {len(times_ns):,} times, more than memory can hold "
                             f"({free / 1e9:,.1f} GB available): name fewer symbols, a depth, fewer times, "
                             "or stream them (iter_snapshots; itchflow snapshots writes as it goes)")
    return np.concatenate(rows) if rows else np.zeros(0, SNAPSHOT_DTYPE)


def _snapshot(books, t, symbols, n, unlisted: set) -> np.ndarray:
    parts = []
    for sym in symbols:
        try:
            loc = books.locate(sym)
        except KeyError:
            if not isinstance(sym, str) or sym.strip() in books.symbols:
                raise   # listed twice, or a locate out of range
            unlisted.add(sym.strip())   # not listed yet: an empty book, no rows
            continue
        for side, arr in zip((b"B", b"S"), books.depth(loc, n)):
            rec = np.zeros(len(arr), SNAPSHOT_DTYPE)
            rec["timestamp"] = t
            rec["stock_locate"] = loc
            rec["side"] = side
            rec["level"] = np.arange(len(arr))
            for f in ("price", "shares", "orders"):
                rec[f] = arr[f]
            parts.append(rec)
    return np.concatenate(parts) if parts else np.zeros(0, SNAPSHOT_DTYPE)
