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
from itchflow.book.records import symbol_text
from itchflow.book.replay import apply_slice, slice_budget
from itchflow.wire.itch import DAY_NS

_FIRST = 1 << 14


_STREAMS = ("trades", "bbo", "l2")   # the order of ``counts`` and of the ctl words below


class EventBuffers:
    """The engine's output buffers, and the symbol each event is named by.

    An event's symbol is the stock's at the event's place in the stream: the engine stops
    before an R that would rename a locate while events are not yet named (NEED_LABELS), and
    ``label`` names them by the directory as it stands. A day's R messages come before its
    orders, so on a real day this names everything once, at ``take``."""

    def __init__(self, capacity: int = _FIRST):
        self.trades = np.zeros(capacity, L.TRADE_KERNEL_DTYPE)
        self.bbo = np.zeros(capacity, L.BBO_KERNEL_DTYPE)
        self.l2 = np.zeros(capacity, L.L2_KERNEL_DTYPE)
        self.n_trades = self.n_bbo = self.n_l2 = 0
        self.labels = {name: np.zeros(capacity, np.uint64) for name in _STREAMS}   # symbols as S8 words
        self.labelled = [0, 0, 0]   # rows of each stream named so far

    def sync_to(self, ctl: np.ndarray) -> None:
        ctl[L.C_TRADES_CAP], ctl[L.C_TRADES_N] = len(self.trades), self.n_trades
        ctl[L.C_BBO_CAP], ctl[L.C_BBO_N] = len(self.bbo), self.n_bbo
        ctl[L.C_L2_CAP], ctl[L.C_L2_N] = len(self.l2), self.n_l2
        ctl[L.C_LABELLED] = sum(self.labelled)

    def sync_from(self, ctl: np.ndarray) -> None:
        self.n_trades = int(ctl[L.C_TRADES_N])
        self.n_bbo = int(ctl[L.C_BBO_N])
        self.n_l2 = int(ctl[L.C_L2_N])

    def counts(self) -> tuple[int, int, int]:
        """(trades, bbo, l2) recorded so far (as of the last sync): a mark for ``renumber``."""
        return self.n_trades, self.n_bbo, self.n_l2

    def label(self, ctl: np.ndarray, stocks: np.ndarray) -> None:
        """Name the events recorded since the last call by the stock directory now (the
        engine's NEED_LABELS: before an R that renames a locate)."""
        self.sync_from(ctl)
        for i, (name, n) in enumerate(zip(_STREAMS, self.counts())):
            first = self.labelled[i]
            if n > first:
                self.labels[name][first:n] = _symbol_words(stocks["symbol"], getattr(self, name)["stock_locate"][first:n])
            self.labelled[i] = n
        ctl[L.C_LABELLED] = sum(self.labelled)

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
        labels = np.zeros(2 * len(old), np.uint64)
        labels[: len(old)] = self.labels[name][: len(old)]
        self.labels[name] = labels

    def take(self, ctl: np.ndarray, stocks: np.ndarray):
        """(bbo, trades, l2) ``Events``: copies of what was recorded, each event named
        (``layout.*_EVENT_DTYPE``'s ``symbol``); the buffers start over."""
        self.label(ctl, stocks)
        out = tuple(_named(getattr(self, name), n, self.labels[name], dtype).view(Events)
                    for name, n, dtype in (("bbo", self.n_bbo, L.BBO_EVENT_DTYPE),
                                           ("trades", self.n_trades, L.TRADE_EVENT_DTYPE),
                                           ("l2", self.n_l2, L.L2_EVENT_DTYPE)))
        self.n_trades = self.n_bbo = self.n_l2 = 0
        self.labelled = [0, 0, 0]
        self.sync_to(ctl)
        return out


def _named(records: np.ndarray, n: int, labels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """n kernel records with their symbols, copied a word at a time: each record's bytes as
    the kernel wrote them (codes read as S1), the padding between fields zero (the kernel
    leaves whatever an earlier record had there), then the symbol's S8 word."""
    width = records.dtype.itemsize // 8
    out = np.empty(n, dtype)
    words = out.view(np.uint64).reshape(n, dtype.itemsize // 8)
    np.bitwise_and(records[:n].view(np.uint64).reshape(n, width), _field_bytes(records.dtype), out=words[:, :width])
    words[:, width] = labels[:n]
    return out


_FIELD_BYTES: dict = {}


def _field_bytes(dtype: np.dtype) -> np.ndarray:
    """Per 8-byte word of a record: 0xFF in the bytes its fields hold, 0 in its padding."""
    mask = _FIELD_BYTES.get(dtype)
    if mask is None:
        held = np.zeros(dtype.itemsize, np.uint8)
        for name in dtype.names:
            sub, off = dtype.fields[name][:2]
            held[off:off + sub.itemsize] = 0xFF
        mask = _FIELD_BYTES[dtype] = held.view(np.uint64)
    return mask


class Events(np.ndarray):
    """An event stream (BBO changes, trades or L2 changes): a numpy structured array (a copy)
    whose ``symbol`` field names each event's stock as it was named at the event, so it
    converts in one call (and keeps its names through pickling, slicing and filtering).

    >>> bbo, trades, l2 = books.take_events()
    >>> trades["price"], trades["symbol"], len(bbo)   # numpy, as ever
    >>> trades.to_pandas()                            # a DataFrame with a symbol column
    >>> bbo.to_arrow()                                # a pyarrow.Table
    """

    def __new__(cls, records: np.ndarray):
        # a copy field by field into zeros: numpy's copy of a dtype with gaps leaves the gap
        # bytes (after ``side``) as they were in fresh memory, so equal events differed as bytes
        records = np.asarray(records)
        out = np.zeros(records.shape, records.dtype)
        out[...] = records
        return out.view(cls)

    def __getitem__(self, key):
        # one field (``trades["price"]``) is a plain array: as an Events it had no symbol to convert
        # with, so its to_pandas() failed on None and its sum() was a 0-d Events (probe 59)
        if type(key) is str:
            return self.view(np.ndarray)[key]
        return super().__getitem__(key)

    def to_arrow(self):
        """pyarrow.Table: symbol as text; trades get ``broken``; one-byte codes become text."""
        return to_arrow(self.view(np.ndarray))

    def to_pandas(self):
        """pandas.DataFrame of the same columns as ``to_arrow``."""
        return self.to_arrow().to_pandas()


# The fields a B record repeats from the trade it broke (the engine writes the kept trade's).
_BROKEN_TRADE_FIELDS = ("stock_locate", "price", "shares")


def broken_column(trades) -> np.ndarray:
    """The ``broken`` column users get: a trade a later B broke (``mark_broken``), and every B
    record itself. A B row repeats the shares and price of the trade it broke, and a filter
    ``printable & ~broken`` that let it through added the broken shares back (probe 49: 1,755
    shares where the books' volume was 655); ``printable`` on a B row says whether the trade
    it broke had counted."""
    return mark_broken(trades) | _is_break(trades)


def _is_break(trades) -> np.ndarray:
    """bool per trade event: a B record (``kind`` as S1 codes or as their byte values)."""
    kinds = np.asarray(trades["kind"])
    return kinds == (b"B" if kinds.dtype.kind == "S" else ord("B"))


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
    is_break = _is_break(trades)
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


def _key_text(key: int, locate: int) -> str:
    """An event's symbol (S8 bytes as a little-endian key) as text; unnamed: the locate."""
    return symbol_text(key) or str(int(locate))


def _named_symbol_column(symbols: np.ndarray, locates: np.ndarray):
    """The ``symbol`` field of event rows as an Arrow string column (an unnamed row: its
    locate as text). Where every locate has one name in these rows (any day without a rename
    in them) it is one lookup per locate, as ``_symbol_column``; otherwise one per name."""
    import pyarrow as pa

    keys = np.ascontiguousarray(symbols, "S8").view(np.uint64).reshape(-1)
    locates = np.asarray(locates, np.int64).reshape(-1)
    first = np.zeros(max(int(locates.max()) + 1, 1) if len(locates) else 1, np.uint64)
    first[locates[::-1]] = keys[::-1]          # each locate's first row's name
    if np.array_equal(first[locates], keys):
        return _symbol_column(locates, lambda u: _key_text(first[u], u))
    pairs = np.stack([locates.astype(np.uint64), keys], axis=1)
    unique, index = np.unique(pairs, axis=0, return_inverse=True)
    names = [_key_text(k, loc) for loc, k in unique.tolist()]
    return pa.array(names, pa.string()).take(pa.array(index.reshape(-1)))


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

    The symbol column: an event array's own ``symbol`` field (each row named where it
    happened), else symbol_of(locate) (e.g. ``Books.symbol``: snapshots). Trades get a
    ``broken`` column; single-byte codes become strings.
    """
    import pyarrow as pa

    cols = {}
    named = "symbol" in events.dtype.names   # events name their rows; snapshots by symbol_of
    for name in events.dtype.names:
        col = events[name]
        if name == "symbol":
            continue
        if col.dtype.kind == "S":   # a corrupt side byte (P 0xFF) failed the whole table
            col = byte_text(col)
        cols[name] = col
        if name == "stock_locate":
            cols["symbol"] = (_named_symbol_column(events["symbol"], col) if named
                              else _symbol_column(col, symbol_of))
    if events.dtype == L.TRADE_EVENT_DTYPE:
        cols["broken"] = broken_column(events)
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
# What the snapshots writer holds a time's rows as: each named by its stock's name at that time
# (``sinks.events.snapshots_to_parquet``; ``to_arrow`` takes the name field as events' own)
NAMED_SNAPSHOT_DTYPE = np.dtype(SNAPSHOT_DTYPE.descr + [("symbol", "S8")])


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


def every_times(every_s: float, first_ns: int | None, last_ns: int | None) -> list[int]:
    """Snapshot times every ``every_s`` seconds (on multiples of the step) after first_ns up to
    last_ns (or 24:00, if that comes first): what ``itchflow snapshots --every`` and the batch job take. Refuses a step under
    1 ns, a grid of more than MAX_SNAPSHOT_TIMES times (a mistyped interval would
    otherwise build a list of billions) and one with no time in a day of messages (an empty
    output). A day of no messages (first_ns None) has no times: its output is empty, as every
    other job's (probe 52: it failed, saying the day spanned "0 to 0 ns")."""
    step = snapshot_step(every_s)
    every_s = float(every_s)
    if first_ns is None or last_ns is None:
        return []
    # no time of day is past 24:00 (--at refuses one): a stray stamp of 78 hours made a grid of
    # 270,000 times out of a 2,500-message day (probe 45)
    last_ns = min(int(last_ns), DAY_NS)
    start = (int(first_ns) // step + 1) * step
    count = max(0, (int(last_ns) - start) // step + 1)
    if count > MAX_SNAPSHOT_TIMES:
        raise ValueError(f"a snapshot every {every_s:g} s over this day is {count:,} times, more than "
                         f"{MAX_SNAPSHOT_TIMES:,}: take a longer interval")
    if count == 0:   # an empty output said nothing (the batch job counted the day as 0 messages)
        raise ValueError(f"a snapshot every {every_s:g} s: no snapshot time falls within the day's messages "
                         f"({int(first_ns):,} to {int(last_ns):,} ns after midnight, 24:00 at the latest)")
    return list(range(start, int(last_ns) + 1, step))


def iter_snapshots(books, source, times_ns, symbols, n: int, *, slice_bytes: int = 32 << 20,
                   capture_stats: dict | None = None) -> Iterator[np.ndarray]:
    """Depth-n snapshots of the chosen symbols at each time (the book as the feed stood at t:
    every message in file order up to the first one stamped later), one SNAPSHOT_DTYPE array
    a time in time order: what ``snapshots`` collects and the Parquet
    writer streams, so that memory holds one time's rows, not the day's.

    books: a fresh ``Books``; source: anything ``iter_chunks`` takes (a path, a buffer).
    The books are fed slices of at most slice_bytes (0 or less: whole chunks, as ``replay``),
    each slice's pages of a mapped day let go once applied (``Chunk.release``), and nothing
    after the last time is applied. A symbol is the stock its name is at each time: a time before
    the day lists it (its R message), or after an R renamed its stock, has no rows for it; a
    symbol the day never lists is a KeyError (after the last time's rows, found by reading on
    past the last time if need be).
    capture_stats: filled with a capture's counters (gaps ...), as ``replay`` fills it.
    """
    from itchflow.sources.files import iter_chunks

    budget = slice_budget(slice_bytes)
    times = sorted(int(t) for t in times_ns)
    unlisted: set = set()   # symbols a snapshot found not (or no longer) in the directory
    found: set = set()      # symbols some snapshot found (a name renamed away later is no mistake)

    def more_to_read() -> bool:   # past the last time: only to learn whether they are listed
        if unlisted:
            unlisted.difference_update(books.listed_symbols())
            unlisted.difference_update(found)
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
                    yield _snapshot(books, t, symbols, n, unlisted, found)
                    t = next(it, None)
        if t is None and not more_to_read():
            break
    while t is not None:  # times after the last message see the final book
        yield _snapshot(books, t, symbols, n, unlisted, found)
        t = next(it, None)
    for sym in unlisted - found:
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


def _snapshot(books, t, symbols, n, unlisted: set, found: set) -> np.ndarray:
    parts = []
    for sym in symbols:
        try:
            loc = books.locate(sym)
        except KeyError:
            if not isinstance(sym, str) or sym.strip() in books.listed_symbols():
                raise   # listed twice, or a locate out of range
            unlisted.add(sym.strip())   # not listed yet (or renamed away): an empty book, no rows
            continue
        if isinstance(sym, str):
            found.add(sym.strip())
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


def _symbol_words(symbols: np.ndarray, locates: np.ndarray) -> np.ndarray:
    """These locates' symbols (``stocks["symbol"]``) as the 8 bytes of an S8 each, trailing
    spaces as NULs: made for the events' own locates, or for every locate and then looked up
    when there are more events than an eighth of the locates (a day's events named at
    ``take``). A feed of renaming R messages between trades stops to name a few events at
    each R: making all 65,536 names each time took 1 ms a stop (probe 47). (numpy, not a
    compiled kernel: loading one cost a process's first ``take_events`` 0.1-0.3 s: probe 50.)"""
    if len(locates) > len(symbols) // 8:
        return _unpadded(symbols)[locates]
    return _unpadded(symbols[locates])


def _unpadded(words: np.ndarray) -> np.ndarray:
    words = np.array(words, np.uint64)   # a copy: the engine's records stay as they are
    trailing = np.ones(len(words), bool)
    for b in range(7, -1, -1):   # little-endian: the last character is the high byte
        trailing &= (words >> np.uint64(8 * b)) & np.uint64(0xFF) == np.uint64(0x20)
        words[trailing] &= ~np.uint64(0xFF << (8 * b))
    return words
