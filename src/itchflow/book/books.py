"""``Books``: the Python face of the engine. Plain Python holding the numpy state.

>>> from itchflow import Books
>>> books = Books().replay("day.itch")         # or books.apply(buffer): whole BinaryFILE messages
>>> books.bbo(["AAPL", "MSFT"])                # structured array, one row per symbol
>>> bids, asks = books.depth("AAPL", 5)        # structured arrays (price, shares, orders), best first
>>> books.orders("AAPL", "B", 1234500)         # the queue at that price (ref, shares, mpid), in time priority
>>> books.order_table()                        # every live order, one row each

Query results are numpy structured arrays (dtypes in ``itchflow.book.records``): wrap one in
``pandas.DataFrame(...)`` or ``pyarrow.table(...)`` as it is. Prices are raw Price(4) integers
throughout, VWAP included; ``itchflow.price4_to_float`` gives dollars.

The driver calls the compiled kernel, grows whatever it reports short (order table,
levels, ladder arena, trade log, match index, output buffers) and resumes at the exact
message.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

import numpy as np

from itchflow.book import layout as L
from itchflow.book import records as R
from itchflow.arguments import INT64_MAX, MAX_ROWS, PRICE_MAX, UINT64_MAX, flag, optional_whole, whole
from itchflow.book.engine import apply_messages
from itchflow.book.events import EventBuffers
from itchflow.book.exclusive import exclusive, new_lock
from itchflow.book.ladder import compact_arena
from itchflow.book.order_store import MIN_TABLE, rehash, table_shift
from itchflow.book.queries import all_orders, depth, find_level, queue, top_of_books
from itchflow.book.records import symbol_key, symbol_text
from itchflow.book.replay import replay
from itchflow.errors import ITCHFormatError
from itchflow.hw.aligned import aligned_zeros
from itchflow.hw.populate import populate_in_background
from itchflow.wire.binaryfile import budget_end
from itchflow.wire.itch import unknown_by_type
from itchflow.wire.sequence_runs import SequenceRuns

FIRST_BUDGET_STEP = 64 << 10     # apply(max_bytes=): the first step of the budget walked, doubling up to
LAST_BUDGET_STEP = 4 << 20       # this (see apply)
DEFAULT_TABLE = 1 << 21         # order table rows to start with (64 MiB, 786 k live orders before
                                # it grows): doubled (rehashed) past 3/8 full
TRADE_LOG_ROWS_PER_ORDER_ROWS = 4   # the trade log starts with 1/4 the order table's rows (16 MiB by default)
MATCH_INDEX_ROWS = 1 << 10          # the match index starts small: only out-of-order trades go there
LIVE_ORDERS_PER_LEVEL = 4      # Books(capacity): level records for capacity / 4 live levels
ARENA_ENTRIES_PER_LEVEL = 4    # ... and ladder arena entries for 4 a level
# An apply of at least this much input faults in the order table and the trade log on
# another thread first (hw.populate): a day this big touches every page of them anyway. A
# table grown to at least POPULATE_TABLE_BYTES has its top half faulted in so while rehashed.
POPULATE_INPUT_BYTES = 16 << 20
POPULATE_TABLE_BYTES = 16 << 20


# What each NEED_* status grows, as growth() names it, and the ctl word that holds its size in
# rows (the kernel's bound, which every growth updates).
_GROWS = {L.NEED_TABLE: ("order table", L.C_TABLE_CAP), L.NEED_LEVELS: ("levels", L.C_LEVEL_CAP),
          L.NEED_ARENA: ("ladder arena", L.C_ARENA_CAP), L.NEED_MATCHES: ("match index", L.C_MATCH_CAP),
          L.NEED_TRADE_LOG: ("trade log", L.C_LOG_CAP), L.NEED_TRADES_OUT: ("trade events", L.C_TRADES_CAP),
          L.NEED_BBO_OUT: ("BBO events", L.C_BBO_CAP), L.NEED_L2_OUT: ("L2 events", L.C_L2_CAP)}


def growth_summary(log: list[tuple[str, int, int, float]]) -> dict:
    """``Books.growth`` of a growth log: (what, rows before, rows after, seconds) a pause."""
    by: dict = {}
    for name, _, _, sec in log:
        n, total = by.get(name, (0, 0.0))
        by[name] = (n + 1, total + sec)
    longest = max(log, key=lambda g: g[3], default=None)
    return {"pauses": len(log), "seconds": sum(g[3] for g in log),
            "longest": (None if longest is None else
                        {"what": longest[0], "from": longest[1], "to": longest[2], "seconds": longest[3]}),
            "by_table": {k: {"pauses": n, "seconds": sec} for k, (n, sec) in by.items()}}


def is_one_symbol(symbols) -> bool:
    """One symbol or locate, not a list of them: text, any bytes-like object (bytearray and
    memoryview too: iterated, they would read as a list of locates), or an integer."""
    return isinstance(symbols, (str, bytes, bytearray, memoryview, int, np.integer))


def checked_symbol(symbol):
    """One symbol or locate as given, else a TypeError: a float (1.0, np.float64(1), an element
    of a float array) read as a symbol was a ValueError or a KeyError naming "1.0", and True is
    not locate 1."""
    if isinstance(symbol, bool) or not is_one_symbol(symbol):
        raise TypeError(f"a symbol (str) or a stock locate (int), not {symbol!r}")
    return symbol


def is_locate(symbol) -> bool:
    """A stock locate rather than a symbol (of a checked_symbol)."""
    return isinstance(symbol, (int, np.integer))


def symbol_list(symbols) -> list:
    """One symbol or locate, or an iterable of them, as a list (an iterator taken once)."""
    if is_one_symbol(symbols):
        return [symbols]
    if not isinstance(symbols, Iterable):
        raise TypeError(f"a symbol (str), a stock locate (int) or a list of them, not {symbols!r}")
    return list(symbols)


def _pow2_at_least(n: int) -> int:
    return max(MIN_TABLE, 1 << (int(n) - 1).bit_length())


ALL_LEVELS = -1   # depth(n=ALL_LEVELS) / depth(n=None): every level


def tops_digest(tops: np.ndarray, volume: np.ndarray) -> str:
    """``Books.tops_digest`` of these tops and per-locate volumes (one thread's or the shards')."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(tops).tobytes())
    h.update(np.ascontiguousarray(volume).tobytes())
    return h.hexdigest()[:16]


def depth_levels(n) -> int:
    """A depth query's level count: n >= 1 as given, None or -1 for every level (-1); 0 and
    other negatives are a ValueError naming the argument (the command line's ``-n 0`` = all
    is the command's own spelling, turned into -1 there)."""
    if n is None:
        return ALL_LEVELS
    n = whole(n, "n (levels)")
    if n < 1 and n != ALL_LEVELS:
        raise ValueError(f"n (levels) must be at least 1, or None or -1 for every level, not {n:,}")
    return n


class Books:
    """Full-depth books of every stock, fed whole ITCH messages.

    capacity: live orders to expect (the order table starts with room for them, and the level
    records and ladder arena with room for a level every 4 orders; all grow on demand beyond
    that, so this only avoids regrowth and its pauses, which ``growth`` lists); ``table``
    gives the starting rows directly instead. trades: trades to expect (the trade log a B
    message is matched against starts with room for them; default a quarter of the table's
    rows). track_matches keeps a match number -> trade index
    so B (broken trade) messages can take trades back out of the volume; with
    track_matches=False no B breaks anything (no B trade event, every trade stays in the
    volume) and every B is counted as ``unknown_match``, for a match number seen or not: the
    count then says "B not applied", not "number never seen". far_table: from this
    many order table rows on, the engine's look-ahead also fetches level records, index buckets
    and ladder tops (a working set far beyond the caches; 0: never). prefault: the first apply
    of 16 MiB of input or more faults the tables in on another thread first (``prefault``),
    and a grown table's top half while it is rehashed; turn it off where every core is busy
    (Dask workers), where the thread only competes. hash_seed: the secret the order table, the
    price index and the match index hash with (``order_store``); by default drawn at random, so
    a feed cannot pick order references, prices or match numbers that all land in one slot and
    make every lookup walk them. What the books hold never depends on it; give one only to
    make the tables' layout repeat.
    Event recording (BBO changes, trades, L2 level changes) is off until ``record`` is called.
    """

    def __new__(cls, capacity: int | None = None, *, threads: int = 1, **options):
        """``Books(threads=N)`` with N > 1 builds the books of disjoint sets of stocks on N
        threads (``book.sharded.ShardedBooks``: same queries, identical results). Not kept
        across shards: ``peak_live_orders`` (``peak_live_orders_bound`` bounds it) and
        ``timestamps_backwards``; ``make_room`` and ``order_words`` are for drivers of one
        Books' engine and have no sharded form."""
        if whole(threads, "threads", 1) > 1:
            from itchflow.book.sharded import ShardedBooks

            return ShardedBooks(int(threads), capacity, **options)
        return super().__new__(cls)

    def __init__(self, capacity: int | None = None, *, track_matches: bool = True,
                 table: int | None = None, levels: int | None = None, arena: int | None = None,
                 trades: int | None = None, threads: int = 1, far_table: int = L.FAR_TABLE,
                 prefault: bool = True, hash_seed: int | None = None):
        capacity = optional_whole(capacity, "capacity (live orders)", 0, MAX_ROWS)
        table = optional_whole(table, "table (rows)", 0, MAX_ROWS)
        levels = optional_whole(levels, "levels", 0, MAX_ROWS)
        arena = optional_whole(arena, "arena (ladder entries)", 0, MAX_ROWS)
        trades = optional_whole(trades, "trades", 0, MAX_ROWS)
        far_table = whole(far_table, "far_table (rows)", 0, INT64_MAX)
        hash_seed = optional_whole(hash_seed, "hash_seed", 0, UINT64_MAX)
        if table is None:
            table = (DEFAULT_TABLE if capacity is None
                     else int(capacity) * L.TABLE_MAX_LOAD_DEN // L.TABLE_MAX_LOAD_NUM + 1)
        rows = _pow2_at_least(table)
        expected = int(capacity) if capacity is not None else rows * L.TABLE_MAX_LOAD_NUM // L.TABLE_MAX_LOAD_DEN
        self.ctl = aligned_zeros(L.N_CTL, np.int64)
        self.order_rows = aligned_zeros(rows, L.ORDER_DTYPE)  # pages cost nothing until used
        # a power of two: the price index has as many buckets as the largest power of two
        # not above the level capacity (``level_index``), so the chains stay short
        # Asked for a capacity, the levels and the ladder arena are sized for it too (a real day's
        # 5.3 M live orders rest on about 1 M levels, whose ladder segments, doubled as they
        # fill, take up to 4 entries a level), so that none of them pauses to grow; by default
        # they start small and grow on demand.
        if levels is None:
            levels = (max(1024, expected // LIVE_ORDERS_PER_LEVEL) if capacity is not None
                      else max(1024, min(expected // 8, 1 << 18)))
        nlevels = _pow2_at_least(int(levels))
        self.levels = aligned_zeros(nlevels, L.LEVEL_DTYPE)
        narena = int(arena or max(1 << 16, nlevels * (ARENA_ENTRIES_PER_LEVEL if capacity is not None else 2)))
        self.ladder = aligned_zeros(narena, np.uint64)
        self.books = aligned_zeros(L.N_BOOKS, L.BOOK_DTYPE)
        self.stocks = aligned_zeros(L.N_LOCATES, L.STOCK_DTYPE)
        self.anomaly_counts = aligned_zeros((L.N_LOCATES, L.N_ANOMALIES), np.int64)
        self.type_counts = aligned_zeros(256, np.int64)
        # L.MATCH_DTYPE rows, as words. The trade log keeps (almost) every trade of the day: a
        # quarter of the order table's rows to start with, doubled when full. The match index
        # takes only trades whose match number is out of order (``trade_log``).
        log_rows = (max(MIN_TABLE, int(trades) if trades is not None else rows // TRADE_LOG_ROWS_PER_ORDER_ROWS)
                    if track_matches else MIN_TABLE)
        self.trade_log = aligned_zeros(log_rows * L.MATCH_WORDS, np.uint64)
        match_rows = MATCH_INDEX_ROWS if track_matches else MIN_TABLE
        self.matches = aligned_zeros(match_rows * L.MATCH_WORDS, np.uint64)
        self.events = EventBuffers()
        self.wanted = np.zeros(0, L.WANTED_DTYPE)   # symbols to record once their R comes (``record``)
        c = self.ctl
        c[L.C_STAMP] = 1
        c[L.C_TABLE_CAP] = len(self.order_rows)
        c[L.C_LEVEL_CAP] = len(self.levels)
        c[L.C_LEVEL_FREE] = -1
        c[L.C_ARENA_CAP] = narena
        c[L.C_MATCH_CAP] = len(self.matches) // L.MATCH_WORDS
        c[L.C_LOG_CAP] = len(self.trade_log) // L.MATCH_WORDS
        c[L.C_TRACK_MATCHES] = 1 if track_matches else 0
        c[L.C_STOP_TS] = -1
        c[L.C_FAR_TABLE] = max(0, int(far_table))
        c[L.C_HASH_SEED:L.C_HASH_SEED + 1] = np.array(
            [secrets.randbits(64) if hash_seed is None else hash_seed], np.uint64).view(np.int64)
        self._sync_out_caps()
        self.next_sequence = 1
        self._found_locates: tuple[int, dict] = (-1, {})   # locate(): (R messages seen, symbol key -> locate)
        self.applied = 0   # messages the last apply consumed
        self.growth_log: list[tuple[str, int, int, float]] = []   # (what, rows before, after, seconds)
        self.stopped_at_time = False   # the last apply stopped at its stop_after_ns
        self._prefault_on_apply = bool(prefault)
        self.prefault_started = False  # prefault() has been called (by apply, or by hand)
        self._lock = new_lock(self)    # one thread at a time (``book.exclusive``)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]             # (a lock does not pickle; the copy has one of its own)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = new_lock(self)

    @property
    def order_words(self) -> np.ndarray:
        """The order table as flat uint64 rows of 4 (what the probing routines read)."""
        return self.order_rows.view(np.uint64)

    # ---- feeding -------------------------------------------------------------------------

    def replay(self, source, *, stop_after_ns: int | None = None, progress=None, on_slice=None,
               capture_stats: dict | None = None, **options) -> "Books":
        """Apply a whole source (a path: BinaryFILE, gzip, pcap; or a buffer) in bounded slices;
        returns self. See ``itchflow.replay`` (the same, returning whether it stopped at
        stop_after_ns), whose other keywords (slice_bytes, on_bytes, renumber) it takes too;
        on_slice(books) after every slice is where to drain events. (``replay`` takes the
        books' lock itself.)"""
        replay(self, source, stop_after_ns=stop_after_ns, progress=progress, on_slice=on_slice,
               capture_stats=capture_stats, **options)
        return self

    @exclusive
    def apply(self, buffer, first_seq: int | None = None, *, stop_after_ns: int | None = None,
              source: str | None = None, base_offset: int = 0, max_bytes: int | None = None,
              runs: SequenceRuns | None = None) -> int:
        """Apply whole BinaryFILE-framed messages; returns the number of bytes consumed.

        With stop_after_ns, stops before the first message whose timestamp is later, and
        returns the offset of that message (the caller may resume from there);
        ``stopped_at_time`` then says so. With max_bytes, stops before the first message that
        starts at or past that offset (a message is never split; the rest is for the next
        call). Otherwise the whole buffer is consumed. Malformed framing raises
        ITCHFormatError naming the byte offset (base_offset + position in this buffer) and
        source; the messages before it have been applied.

        Events take sequence numbers from first_seq on (default ``next_sequence``), one more a
        message. runs: the buffer is part of one whose numbers restart (a capture's joined
        packets: ``Chunk.runs``), and first_seq is its first message's place in that (from
        0): each event takes its message's number from the runs. ``next_sequence`` is then
        the next message's number, and ``applied`` (always) the messages this call consumed.
        """
        from itchflow.sources.files import as_uint8

        buf = as_uint8(buffer, "Books.apply")
        seq = self.next_sequence if first_seq is None else whole(first_seq, "first_seq", 0, INT64_MAX)
        runs = numbered_by(runs, first_seq)
        seq0, marks = seq, self.events.counts()
        stop_ts = optional_whole(stop_after_ns, "stop_after_ns", 0, INT64_MAX)
        max_bytes = optional_whole(max_bytes, "max_bytes", 0)
        self.ctl[L.C_STOP_TS] = -1 if stop_ts is None else stop_ts  # -1: never stop
        pos = 0
        limit = len(buf) if max_bytes is None else min(len(buf), max_bytes)
        # A byte budget is walked (budget_end) a step at a time as the messages are applied, the
        # steps doubling: walked whole up front, a budget of 32 MiB cost every call ~0.3 ms
        # however few messages it applied before stop_after_ns (snapshots, one call a time).
        step = FIRST_BUDGET_STEP
        end = len(buf) if max_bytes is None else int(budget_end(buf, 0, min(limit, step)))
        self.stopped_at_time = False
        if self._prefault_on_apply and not self.prefault_started and limit >= POPULATE_INPUT_BYTES:
            self.prefault()  # a day this big touches every page of them anyway
        try:
            while True:
                status, pos, seq = apply_messages(
                    buf, pos, end, np.uint64(seq), self.order_rows, self.order_words, self.levels, self.ladder,
                    self.books, self.stocks, self.anomaly_counts, self.trade_log, self.matches,
                    self.events.trades, self.events.bbo, self.events.l2, self.ctl, self.type_counts,
                    self.wanted)
                seq = int(seq)
                if status == L.OK and end < limit:   # the budget's next step (OK: pos == end)
                    step = min(2 * step, LAST_BUDGET_STEP)
                    end = int(budget_end(buf, end, min(limit, end + step)))
                    continue
                if status == L.OK or status == L.STOP_TIME:
                    self.stopped_at_time = status == L.STOP_TIME
                    break
                if status >= L.ERR_FIRST:
                    raise ITCHFormatError(L.error_text(buf, pos, end, status, sequence_at(runs, seq)),
                                          source=source, offset=base_offset + int(pos))
                self._grow(status)
        finally:
            self.ctl[L.C_STOP_TS] = -1
            self.events.sync_from(self.ctl)
            if runs is not None:
                self.events.renumber(marks, runs.numbers)
            self.next_sequence, self.applied = sequence_at(runs, seq), seq - seq0
        return int(pos)

    def prefault(self, wait: bool = False) -> bool:
        """Fault in the order table, the trade log, the match index, the level records and the
        ladder now, on another thread (``hw.populate``; wait: until it is done), so that applying
        does not take those page faults: fresh memory is dear (on this project's KVM guests 210-375 ms
        for 128 MiB; the first apply of a 10 M-message day ran 21-24% faster for it). An
        ``apply`` of 16 MiB of input or more does this by itself; a live feed would call it
        before the open. Returns False when it waited and the kernel could not (Linux < 5.14:
        the pages then fault in as used). Tables grown later are faulted in as they grow."""
        self.prefault_started = True
        t = populate_in_background(self.order_rows, self.trade_log, self.matches, self.levels, self.ladder)
        if wait:
            t.join()
            return t.populated
        return True

    @exclusive
    def make_room(self, status: int) -> None:
        """Grow what the engine's NEED_* status asks for (for drivers that call the compiled
        engine themselves, like the pipeline's consumer)."""
        self._grow(status)

    def _grow(self, status: int) -> None:
        """Grow what status names, and log the pause (``growth``)."""
        if status == L.NEED_LABELS:   # not a table: an R renames a locate; name what came before
            self.events.label(self.ctl, self.stocks)
            return
        t = time.perf_counter()
        what, cap = _GROWS.get(status, (None, None))
        before = None if cap is None else int(self.ctl[cap])
        try:
            self._grow_now(status)   # (a status it does not know raises there)
        except MemoryError as e:   # (numpy's own said nothing of which table: probe 44)
            size = "" if before is None else f" past {before:,} rows"
            raise MemoryError(f"the books' {what or 'tables'} could not grow{size} ({str(e) or 'out of memory'}): the "
                              "books hold every message applied before it; Books(capacity=..., levels=..., "
                              "trades=...) sizes the tables ahead (growing holds the old and new table at once)"
                              ) from None
        self.growth_log.append((what, before, int(self.ctl[cap]), time.perf_counter() - t))

    @property
    def hash_seed(self) -> np.uint64:
        """The secret every table of these books hashes with (``Books(hash_seed=...)``)."""
        return self.ctl[L.C_HASH_SEED:L.C_HASH_SEED + 1].view(np.uint64)[0]

    @exclusive
    def growth(self) -> dict:
        """Every time the driver grew a table while applying: how often, how long the longest
        pause was and what grew then, and the pauses per table (count, seconds in all). A live
        feed stops for as long as a pause lasts: a table rehashed at 8 M rows takes most of a
        second. ``Books(capacity=..., trades=...)`` sizes the tables ahead instead."""
        return growth_summary(self.growth_log)

    def _grow_now(self, status: int) -> None:
        c = self.ctl
        if status == L.NEED_TABLE:
            grown = _rehashed(self.order_words, L.ORDER_WORDS, 2 * len(self.order_rows), self.hash_seed,
                              populate=self._prefault_on_apply)
            self.order_rows = grown.view(L.ORDER_DTYPE)
            c[L.C_TABLE_CAP] = len(self.order_rows)
        elif status == L.NEED_LEVELS:
            self.levels = _grown(self.levels, 2 * len(self.levels))
            c[L.C_LEVEL_CAP] = len(self.levels)
        elif status == L.NEED_ARENA:
            live = int(self.books["cap"].sum(dtype=np.int64))
            size = max(2 * len(self.ladder), 2 * live + 4 * int(c[L.C_MAX_LADDER]) + 64)
            new = aligned_zeros(size, np.uint64)
            c[L.C_ARENA_TOP] = compact_arena(self.books, self.ladder, new)
            self.ladder = new
            c[L.C_ARENA_CAP] = size
        elif status == L.NEED_MATCHES:
            self.matches = _rehashed(self.matches, L.MATCH_WORDS, 2 * (len(self.matches) // L.MATCH_WORDS),
                                     self.hash_seed, L.MATCH_GROUP_BITS, populate=self._prefault_on_apply)
            c[L.C_MATCH_CAP] = len(self.matches) // L.MATCH_WORDS
        elif status == L.NEED_TRADE_LOG:
            self.trade_log = _grown(self.trade_log, 2 * len(self.trade_log), populate=self._prefault_on_apply)
            c[L.C_LOG_CAP] = len(self.trade_log) // L.MATCH_WORDS
        elif status in (L.NEED_TRADES_OUT, L.NEED_BBO_OUT, L.NEED_L2_OUT):
            self.events.sync_from(c)
            self.events.grow(status)
            self._sync_out_caps()
        else:  # pragma: no cover - a status this driver does not know is a bug
            raise RuntimeError(f"book engine returned unknown status {status}")

    def _sync_out_caps(self) -> None:
        self.events.sync_to(self.ctl)

    # ---- event recording -----------------------------------------------------------------

    @exclusive
    def record(self, symbols=None, *, bbo: bool = True, trades: bool = True, l2: bool = False) -> None:
        """Record event streams for these symbols or locates (None = every stock); a later
        call overrides an earlier one for the stocks it names.

        A symbol may be named before its stock directory message (R) has been applied, as
        before a replay: the books then start recording it at the R that gives it a locate
        (at every R naming it, should the day give it more than one). A symbol whose R never
        comes records nothing; ``waiting_symbols`` lists those not seen yet."""
        bbo, trades, l2 = flag(bbo, "bbo"), flag(trades, "trades"), flag(l2, "l2")
        flags = (L.WANT_BBO if bbo else 0) | (L.WANT_TRADES if trades else 0) | (L.WANT_L2 if l2 else 0)
        if symbols is None:
            sel, named = slice(None), {}
            self.wanted = np.zeros(0, L.WANTED_DTYPE)   # every locate is set: none waits for its R
        else:
            symbols = [checked_symbol(s) for s in symbol_list(symbols)]
            by_name = [s for s in symbols if not is_locate(s)]
            named = {symbol_key(s): s for s in by_name}
            listed = self._listed_keys() if named else set()
            known = [s for s in symbols if is_locate(s) or symbol_key(s) in listed]
            sel = self._locates(known)   # (a symbol under two locates refuses, as every query does)
        self.stocks["record_bbo"][sel] = 1 if bbo else 0
        self.stocks["record_trades"][sel] = 1 if trades else 0
        self.stocks["record_l2"][sel] = 1 if l2 else 0
        if named:   # by name: also at any R that names them later
            rows = {int(k): int(f) for k, f in zip(self.wanted["symbol"], self.wanted["flags"])}
            rows.update((k, flags | (rows.get(k, 0) & L.WANT_SEEN)) for k in named)   # seen stays seen
            wanted = np.zeros(len(rows), L.WANTED_DTYPE)
            wanted["symbol"] = np.fromiter(rows, np.uint64, len(rows))
            wanted["flags"] = np.fromiter(rows.values(), np.uint64, len(rows))
            self.wanted = np.sort(wanted, order="symbol")

    def _listed_keys(self) -> set[int]:
        """The symbols (as keys) the stock directory has given a locate so far."""
        return set(self.stocks["symbol"][np.flatnonzero(self.stocks["symbol"])].tolist())

    @property
    def waiting_symbols(self) -> list[str]:
        """Symbols ``record`` was asked for by name that no stock directory message has named
        yet (their events are not being recorded: check after a replay for a misspelt one)."""
        listed = self._listed_keys()
        seen = (self.wanted["flags"] & np.uint64(L.WANT_SEEN)) != 0   # listed, then renamed away
        return [symbol_text(int(k)) for k, s in zip(self.wanted["symbol"], seen) if not s and int(k) not in listed]

    @exclusive
    def take_events(self):
        """(bbo, trades, l2) recorded since the last call: ``Events`` arrays (numpy structured
        arrays with ``to_arrow()`` / ``to_pandas()``), copies. Each event's ``symbol`` is its
        stock's where it happened: a locate renamed by a later R keeps its earlier name on
        the events before that R (b"" before the locate's first R)."""
        return self.events.take(self.ctl, self.stocks)

    # ---- lookups -------------------------------------------------------------------------

    @exclusive
    def locate(self, symbol: str | int) -> int:
        """A symbol (from R messages) or a stock locate (int) -> the stock locate."""
        if is_locate(checked_symbol(symbol)):
            if not 0 <= int(symbol) < L.N_LOCATES:
                raise KeyError(f"stock locate out of range: {symbol}")
            return int(symbol)
        key = symbol_key(symbol)
        # Symbols found are kept until the next R message (only R writes the directory): a
        # search of the 65,536 stocks took 35 us, once a symbol a snapshot time.
        seen = int(self.ctl[L.C_DIRECTORY_SEEN])
        cache = self._found_locates
        if cache[0] != seen:
            cache = self._found_locates = (seen, {})
        found = cache[1].get(key)
        if found is not None:
            return found
        hits = np.flatnonzero(self.stocks["symbol"] == np.uint64(key))
        if len(hits) == 0:
            raise KeyError(f"unknown symbol {symbol!r} (no stock locate has that name now: no stock directory "
                           f"message gave it, or a later one renamed its locate)")
        if len(hits) > 1:  # a day's directory gives each symbol one locate: this input did not
            raise KeyError(f"symbol {symbol!r} is in the stock directory under {len(hits)} locates "
                           f"({', '.join(str(int(h)) for h in hits[:8])}): ask by locate")
        cache[1][key] = int(hits[0])
        return int(hits[0])

    def _locates(self, symbols) -> np.ndarray:
        return np.array([self.locate(s) for s in symbol_list(symbols)], np.int64)

    @exclusive
    def symbol(self, locate: int) -> str:
        """The symbol of a stock locate (from its R message), or the locate as text if none."""
        locate = whole(locate, "locate")
        if not 0 <= locate < L.N_LOCATES:
            raise KeyError(f"stock locate out of range: {locate}")
        key = int(self.stocks["symbol"][locate])
        return symbol_text(key) if key else str(locate)

    @property
    def symbols(self) -> dict[str, int]:
        """Symbol -> locate, from the stock directory (R) messages seen. A symbol the directory
        gives two locates is not in it, and asking for it (``symbols[name]``) is the KeyError
        ``locate`` raises (ask by locate): it picked one of them silently (probe 20)."""
        return SymbolLocates({k: v[0] for k, v in self._directory().items() if len(v) == 1}, self.locate)

    @exclusive
    def listed_symbols(self) -> set[str]:
        """Every symbol the stock directory names now (one given two locates too)."""
        return set(self._directory())

    def _directory(self) -> dict[str, list[int]]:
        """Symbol -> the locates the stock directory gives it now."""
        found: dict[str, list[int]] = {}
        for i in np.flatnonzero(self.stocks["symbol"]):
            found.setdefault(symbol_text(self.stocks["symbol"][i]), []).append(int(i))
        return found

    # ---- queries -------------------------------------------------------------------------

    @exclusive
    def bbo(self, symbols=None) -> np.ndarray:
        """Top of book: a ``records.QUOTE_DTYPE`` array (symbol, locate, bid_price, bid_shares,
        ask_price, ask_shares), one row per symbol in the order given; a single symbol or
        locate gives a 1-row array; None = every stock in the directory. An empty side is 0, 0."""
        locs = (np.flatnonzero(self.stocks["symbol"]) if symbols is None else self._locates(symbols))
        s = self.stocks[locs]
        out = np.zeros(len(locs), R.QUOTE_DTYPE)
        out["symbol"] = self._symbol_column(locs)
        out["locate"] = locs
        for f in ("bid_price", "bid_shares", "ask_price", "ask_shares"):
            out[f] = s[f]
        return out

    @exclusive
    def depth(self, symbol, n: int | None = -1) -> tuple[np.ndarray, np.ndarray]:
        """(bids, asks): two ``records.LEVEL_DTYPE`` arrays (price, shares, orders), best level
        first, at most n levels each (n >= 1; None or -1 = every level). Any other n is a
        ValueError naming it (0 and -1000 were silently "nothing" and "all": probe 26)."""
        loc = self.locate(symbol)
        n = min(depth_levels(n), INT64_MAX)
        return (R.levels_array(depth(self.books, self.ladder, self.levels, loc * 2 + L.BID, n)),
                R.levels_array(depth(self.books, self.ladder, self.levels, loc * 2 + L.ASK, n)))

    @exclusive
    def orders(self, symbol, side: str, price: int) -> np.ndarray:
        """The queue at one price level in time priority: a ``records.QUEUE_DTYPE`` array
        (ref, shares, mpid); empty when there is no level at that price."""
        side_i = _side_index(side)
        price = whole(price, "price (an ITCH price: dollars x 10,000)", 0, PRICE_MAX)
        b = self.locate(symbol) * 2 + side_i
        lvl = find_level(self.books, self.ladder, b, price)
        if lvl < 0:
            return np.zeros(0, R.QUEUE_DTYPE)
        refs, shares, mpids = queue(self.order_rows, int(lvl))
        out = np.zeros(len(refs), R.QUEUE_DTYPE)
        out["ref"], out["shares"], out["mpid"] = refs, shares, R.mpid_column(mpids)
        return out

    @exclusive
    def order_table(self, symbols=None) -> np.ndarray:
        """Every live order of these symbols (None = all): a ``records.ORDER_DTYPE`` array
        (symbol, locate, side, price, ref, shares, mpid), stock by stock (in the order given,
        else by locate), bids then asks, best level first, time priority within a level."""
        locs = (np.flatnonzero(self.books["length"].reshape(-1, 2).sum(axis=1)) if symbols is None
                else self._locates(symbols))
        rows = all_orders(self.order_rows, self.levels, locs.astype(np.int64))
        out = np.zeros(len(rows), R.ORDER_DTYPE)
        out["symbol"] = self._symbol_column(rows[:, 0])
        out["locate"] = rows[:, 0]
        out["side"] = np.where(rows[:, 1] == L.BID, b"B", b"S")
        out["price"] = rows[:, 2]
        out["ref"] = rows[:, 3].view(np.uint64)
        out["shares"] = rows[:, 4]
        out["mpid"] = R.mpid_column(rows[:, 5].astype(np.uint32))
        return out

    def _symbol_column(self, locates: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(np.asarray(locates, np.int64), return_inverse=True)
        names = np.array([self.symbol(int(u)) for u in uniq], R.SYMBOL)
        return names[inv] if len(locates) else np.zeros(0, R.SYMBOL)

    @exclusive
    def live_orders(self) -> int:
        return int(self.ctl[L.C_LIVE])

    @property
    def peak_live_orders(self) -> int:
        return int(self.ctl[L.C_PEAK_LIVE])

    @property
    def messages(self) -> int:
        return int(self.ctl[L.C_MESSAGES])

    @property
    def last_timestamp_ns(self) -> int:
        return int(self.ctl[L.C_LAST_TS])

    @property
    def timestamps_backwards(self) -> int:
        """Messages applied that are stamped earlier than the message applied before them
        (``stats``' count, over what was applied): 0 for a day in time order. Where it is not,
        a time T is every message up to the first stamped later than T, in file order."""
        return int(self.ctl[L.C_BACKWARDS])

    @exclusive
    def trading_state(self, symbol) -> str:
        v = int(self.stocks["trading_state"][self.locate(symbol)])
        return chr(v) if v else ""

    @exclusive
    def volume(self, symbol) -> int:
        return int(self.stocks["volume"][self.locate(symbol)])

    @exclusive
    def vwap(self, symbol) -> float:
        """Volume-weighted average price in raw Price(4) units, like every other price (a float:
        it is an average; nan before any trade). ``itchflow.price4_to_float`` gives dollars."""
        s = self.stocks[self.locate(symbol)]
        # int / int: Python rounds the exact quotient once (floats of a notional past 2**53
        # would round it twice, an ulp off)
        return int(s["notional"]) / int(s["volume"]) if s["volume"] else float("nan")

    @exclusive
    def tops(self) -> np.ndarray:
        """int64[65536, 4]: per locate (bid price, bid shares, ask price, ask shares)."""
        return top_of_books(self.books, self.ladder, self.levels)

    @exclusive
    def tops_digest(self) -> str:
        """16 hex digits of SHA-256 over ``tops()`` and every stock's volume: books of two runs
        that agree on it agree on every stock's best bid and offer and traded volume."""
        return tops_digest(self.tops(), self.stocks["volume"])

    @exclusive
    def anomalies(self, symbol=None) -> dict[str, int]:
        """Inconsistencies counted per kind, for one stock or all."""
        rows = self.anomaly_counts if symbol is None else self.anomaly_counts[self.locate(symbol)][None, :]
        totals = rows.sum(axis=0)
        return {name: int(totals[i]) for i, name in enumerate(L.ANOMALIES)}

    @exclusive
    def anomalies_by_stock(self) -> dict[int, dict[str, int]]:
        out = {}
        for loc in np.flatnonzero(self.anomaly_counts.any(axis=1)):
            out[int(loc)] = {n: int(v) for n, v in zip(L.ANOMALIES, self.anomaly_counts[loc]) if v}
        return out

    @property
    def unknown_types(self) -> int:
        """Messages of an unknown type: skipped by their length, not in ``messages``."""
        return int(self.ctl[L.C_UNKNOWN_TYPES])

    @property
    def unknown_by_type(self) -> dict[str, int]:
        """The messages of ``unknown_types`` by type byte ('z', or '0x00' when not printable),
        as ``itchflow.stats`` names them."""
        return unknown_by_type(self.type_counts)

    @exclusive
    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self.order_rows, self.levels, self.ladder,
                                      self.books, self.stocks, self.anomaly_counts, self.trade_log,
                                      self.matches))


def _side_index(side) -> int:
    if isinstance(side, bytes):
        side = side.decode("ascii", "replace")
    s = side.upper() if isinstance(side, str) else side
    if isinstance(s, str) or (isinstance(s, (int, np.integer)) and not isinstance(s, bool)):
        if s in ("B", "BID", "BUY", 0):
            return L.BID
        if s in ("S", "A", "ASK", "SELL", 1):
            return L.ASK
    raise ValueError(f"side must be 'B' or 'S', not {side!r}")


def _grown(arr: np.ndarray, n: int, populate: bool = False) -> np.ndarray:
    out = aligned_zeros(n, arr.dtype)
    if populate and out.nbytes >= POPULATE_TABLE_BYTES:
        populate_in_background((out, arr.nbytes, None))  # the part the copy does not write
    out[: len(arr)] = arr
    return out


def _rehashed(table: np.ndarray, w: int, rows: int, seed: np.uint64, bits: int = 0,
              populate: bool = False) -> np.ndarray:
    new = aligned_zeros(rows * w, np.uint64)
    if populate and new.nbytes >= POPULATE_TABLE_BYTES:
        # the rehash fills the new table from the bottom (its kernel leaves the GIL) while
        # another thread faults in the top half (not where the Books was told every core is busy)
        populate_in_background((new, new.nbytes // 2, None))
    rehash(table, new, seed, table_shift(rows), w, bits)
    return new


def numbered_by(runs: SequenceRuns | None, first_seq: int | None) -> SequenceRuns | None:
    """``apply``'s runs, checked: a buffer numbered by runs starts at a place in them, given."""
    if runs is None:
        return None
    if not isinstance(runs, SequenceRuns):
        raise TypeError(f"runs must be a SequenceRuns (Chunk.runs), not {type(runs).__name__}")
    if first_seq is None:
        raise ValueError("apply with runs needs first_seq: the buffer's first message's place in the runs")
    return runs


def sequence_at(runs: SequenceRuns | None, place: int) -> int:
    """The sequence number of the message at this place (its number itself without runs)."""
    return int(place) if runs is None else int(runs.numbers(place))


def anomalies_of(books, symbols, others_broadcast: bool = True) -> tuple[dict[str, int], int]:
    """(by kind, in ``ANOMALIES``' order, the anomalies of the stocks of ``symbols``: symbols or
    locates; one these books do not have, or that two locates share, has none here; the other
    stocks' total). others_broadcast=False leaves the other stocks' ``BROADCAST_ANOMALIES`` out
    of that total: every shard of a split day counts those in full, so shard 0's are the day's.
    Books and ShardedBooks alike (``locate``, ``anomalies_by_stock``)."""
    chosen = set()
    for s in symbols:
        try:
            chosen.add(books.locate(s))
        except KeyError:
            pass
    mine, other = {}, 0
    for loc, kinds in books.anomalies_by_stock().items():
        for k, v in kinds.items():
            if loc in chosen:
                mine[k] = mine.get(k, 0) + v
            elif others_broadcast or k not in L.BROADCAST_ANOMALIES:
                other += v
    return {k: mine[k] for k in L.ANOMALIES if k in mine}, other


class SymbolLocates(dict):
    """``Books.symbols``: a dict of symbol -> locate whose missing keys say why (``locate``'s
    KeyError: no R for it, or two locates)."""

    def __init__(self, mapping: dict, locate):
        super().__init__(mapping)
        self._locate = locate

    def __missing__(self, key):
        self._locate(key)          # raises the KeyError saying why
        raise KeyError(key)
