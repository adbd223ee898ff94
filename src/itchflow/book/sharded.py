"""``ShardedBooks``: the books of every stock on N threads of one process, sharded by stock locate.

Every ITCH message names its stock locate, so the books of disjoint sets of stocks can be
built independently. Shard k is a plain ``Books`` holding the stocks ``shard_of[locate] == k``;
its thread walks the whole (memory-mapped) buffer with ``route``, copies its own stocks'
messages into a small block of its own and applies the block with the unchanged engine
kernel, which releases the GIL (``@njit(nogil=True)``). Nothing is shared between the
threads but the read-only input and the read-only shard map; each thread writes only its
shard's arrays and its own block.

Why a copy into a block rather than a locate filter inside the engine: the engine needs no
change, and its look-ahead prefetching then sees only the shard's own orders (a filter would
prefetch and probe other shards' references). Routing costs each thread a walk over every
message (length, type and locate) and one inlined 64-byte move per message into a block that
stays in its cache: about 4 ns a message against the engine's 50-60 (measured, loaded machine).
The shard plan counts messages per locate in a prefix of the first buffer (PLAN_SAMPLE_BYTES).

What every shard sees (so queries and counters come out as with one thread):
- the framing of every message: all shards stop at the same message for a format error or
  ``stop_after_ns``, and report the same offset;
- ``BROADCAST_TYPES``, applied in every shard and counted once in ``messages`` /
  ``type_counts``: R (stock directory: any shard resolves a symbol, and the engine's
  unknown-locate check sees the whole directory), S/V/W (system-wide events), and B (a broken
  trade names a match number, and its header locate need not be the trade's stock, so the
  shard holding the match applies it; see ``ShardedBooks.anomaly_counts``);
- messages of an unknown type go to shard 0 (counted there, once).
Event sequence numbers are mapped back to the source's (the engine numbers a block's
messages 0..n-1), and ``take_events`` merges the shards' events in sequence order.

Where sharding cannot equal one thread (only on inconsistent input, which the generator and
valid feeds never produce): a message whose header locate is not the order's stock (one
thread counts ``locate_mismatch`` and applies it to the order's stock; sharded, the order is
unknown in the header's shard unless both stocks share it), a reference reused while live in
another shard's stock (no ``duplicate_add``), a match number used in two shards' stocks (no
``duplicate_match``), and ``peak_live_orders`` (shards peak at different times: only a bound).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
from numba import njit

from itchflow.book import layout as L
from itchflow.book.books import DEFAULT_TABLE, Books
from itchflow.errors import ITCHFormatError
from itchflow.hw.affinity import available_cpus, pin
from itchflow.hw.endian import be16, be48, u8
from itchflow.hw.memcopy import copy_bytes
from itchflow.wire.binaryfile import AT_END, BAD_LENGTH, OK, TRUNCATED, ZERO_LENGTH, next_message
from itchflow.wire.itch import LENGTH_BY_BYTE, MESSAGES
from itchflow.wire.shard import balanced_map, count_by_locate

BROADCAST_TYPES = "RSVWB"       # every shard applies them (see the module doc)
BLOCK_BYTES = 512 << 10         # each shard's block: whole messages, refilled until the input ends
MAX_SHARDS = 255                # shard numbers are uint8
# The plan counts messages per locate in this much of the first buffer: on generated 100- and
# 8,000-stock days an 8 MB prefix already balances 2 and 3 shards to within 0.2% of a count
# over the whole day (activity per stock is steady), and the pass costs 1/20 of it.
PLAN_SAMPLE_BYTES = 16 << 20

_LOCATE = MESSAGES["A"].field("stock_locate").offset
_TS = MESSAGES["A"].field("timestamp").offset
BLOCK_FULL = 64                 # route(): the block is full, call again from pos
STOPPED = 65                    # route(): the next message is later than stop_ts
_T_B = ord("B")
_U = np.uint64
_RUN_SLACK = 64
_ROUTE_ERROR = {TRUNCATED: L.ERR_TRUNCATED, BAD_LENGTH: L.ERR_BAD_LENGTH, ZERO_LENGTH: L.ERR_ZERO_LENGTH}

_BROADCAST = np.zeros(256, np.uint8)
for _c in BROADCAST_TYPES:
    _BROADCAST[ord(_c)] = 1
_BROADCAST.setflags(write=False)


@njit(nogil=True, cache=True)
def route(buf, pos, end, shard_of, me, broadcast, lengths, stop_ts, seq, out, out_seq, extra, breaks):
    """Copy shard ``me``'s messages from buf[pos:end] into ``out`` (whole, with their length
    prefixes) and each one's source sequence number into ``out_seq``.

    A message is shard me's when its type is known and ``shard_of[locate] == me``, when its
    type is a broadcast one (``extra[type]`` counts those whose locate is another shard's), or
    when its type is unknown and me == 0. Shard 0 counts B messages per header locate in
    ``breaks`` (see ``ShardedBooks.anomaly_counts``). Checks what the engine checks, in its
    order, so every shard stops at the same message: framing (a binaryfile status), a known
    type's length, and ``stop_ts`` (>= 0: stop before the first known message later than it).

    Returns (status, pos, out bytes, out messages, seq, last known timestamp or -1): status is
    OK at the end, BLOCK_FULL (call again from pos), STOPPED, or a binaryfile error status;
    pos/seq name the first message not walked.
    """
    # Every message is copied to the end of out and kept (the end and k advanced) only if it
    # is ours: no branch on whose it is, which with N shards is a coin toss, mispredicted
    # every other message. A copy is one 64-byte move (inlined, no call): ``out`` keeps
    # _RUN_SLACK bytes past what it may fill.
    n_out = 0
    k = 0
    cap = out.shape[0] - _RUN_SLACK
    kcap = out_seq.shape[0]
    last_known = -1    # the last known message walked: its timestamp is read once, at the end
    status = OK
    locate = _U(0)
    while k < kcap:
        st, q, length = next_message(buf, pos, end)
        if st != OK:
            if st != AT_END:
                status = st
            break
        t = u8(buf, q)
        expected = lengths[t]
        if expected == length:
            if stop_ts >= 0 and np.int64(be48(buf, q + _TS)) > stop_ts:
                status = STOPPED
                break
            locate = be16(buf, q + _LOCATE)
            own = np.int64(shard_of[locate] == me)
            mine = np.int64(1) if broadcast[t] != 0 else own
        elif expected == 0:
            own = mine = np.int64(me == 0)
        else:
            status = BAD_LENGTH
            break
        size = q + length - pos
        if n_out + size > cap:  # the block is full: this message is walked next time
            status = BLOCK_FULL
            break
        if expected == length:
            if broadcast[t] != 0:
                extra[t] += 1 - own
                if t == _T_B and me == 0:
                    breaks[locate] += 1
            last_known = q
        if size <= _RUN_SLACK and pos + _RUN_SLACK <= end:
            copy_bytes(out, n_out, buf, pos, _RUN_SLACK)  # a constant size: inlined moves
        else:
            copy_bytes(out, n_out, buf, pos, size)
        out_seq[k] = seq
        k += mine
        n_out += size * mine
        pos = q + length
        seq += _U(1)
    if status == OK and k >= kcap and pos < end:
        status = BLOCK_FULL
    last_ts = np.int64(be48(buf, last_known + _TS)) if last_known >= 0 else np.int64(-1)
    return status, pos, n_out, k, seq, last_ts


def balanced_shards(counts: np.ndarray, threads: int) -> np.ndarray:
    """uint8[65536] locate -> shard: the busiest locates first, each to the least loaded shard
    (messages counted per locate; wire.shard.balanced_map); locates with no message go
    round-robin. Locate 0 (system messages) is shard 0's."""
    weights = np.array(counts, np.int64)
    weights[0] = 0
    shard_of = balanced_map(weights, int(threads)).astype(np.uint8)
    shard_of[0] = 0
    return shard_of


def plan_shards(buffer, threads: int, sample_bytes: int | None = PLAN_SAMPLE_BYTES) -> np.ndarray:
    """A balanced locate -> shard map from the message counts of a framing pass over the
    first ``sample_bytes`` of the buffer (None: all of it)."""
    from itchflow.sources.files import as_uint8

    buf = as_uint8(buffer)
    end = len(buf) if sample_bytes is None else min(len(buf), int(sample_bytes))
    counts = np.zeros(L.N_LOCATES, np.int64)
    count_by_locate(buf, 0, end, LENGTH_BY_BYTE, counts)
    return balanced_shards(counts, threads)


class ShardedBooks:
    """``Books`` of every stock on ``threads`` threads; the queries of ``Books`` across shards.

    shard_of: uint8[65536] locate -> shard; by default the first ``apply`` (or ``plan``)
    balances the locates by the message counts of the first PLAN_SAMPLE_BYTES of its buffer
    (a framing pass), so plan on the day itself when feeding it in small slices. capacity / table / levels / arena are split
    evenly over the shards; track_matches as for ``Books``.
    """

    def __init__(self, threads: int = 2, capacity: int | None = None, *, shard_of=None,
                 track_matches: bool = True, table: int | None = None, levels: int | None = None,
                 arena: int | None = None, block_bytes: int = BLOCK_BYTES, pin_threads: bool = True):
        threads = int(threads)
        if not 1 <= threads <= MAX_SHARDS:
            raise ValueError(f"threads must be 1..{MAX_SHARDS}, not {threads}")
        if block_bytes < 2 + 0xFFFF:
            raise ValueError("block_bytes must hold the longest possible message (65,537 bytes)")
        self.threads = threads
        # Each shard's thread on a core of its own (when there are enough): left to the
        # scheduler, the two threads of a 2-core machine now and then share a core or swap
        # cores, and each swap costs the thread its warm L1/L2 (measured: unpinned, the slower
        # shard took 0.25-0.31 s where pinned both take 0.24; books on two threads 1.2-1.5x
        # one thread unpinned, 1.6x pinned).
        cpus = available_cpus()
        self._cpus = cpus if (pin_threads and 1 < threads <= len(cpus)) else None

        def part(v):
            return None if v is None else max(1, int(v) // threads)

        if table is None and capacity is None:  # the one-thread default, split
            table = DEFAULT_TABLE
        self.shards = [Books(part(capacity), track_matches=track_matches, table=part(table),
                             levels=part(levels), arena=part(arena)) for _ in range(threads)]
        self.shard_of = None if shard_of is None else self._checked_map(shard_of)
        self._blocks = [np.empty(int(block_bytes) + _RUN_SLACK, np.uint8) for _ in range(threads)]
        # one sequence number per message in a block: ITCH messages take >= 14 bytes (route()
        # also stops when this is full, for tiny unknown-type messages)
        self._block_seqs = [np.empty(int(block_bytes) // 14 + 1, np.uint64) for _ in range(threads)]
        self._extra = np.zeros((threads, 256), np.int64)  # broadcast copies beyond the owner's
        self._breaks = np.zeros(L.N_LOCATES, np.int64)     # B messages per header locate
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="itchflow-book") if threads > 1 else None
        self.next_sequence = 1
        self._last_ts = 0

    def _checked_map(self, shard_of) -> np.ndarray:
        m = np.ascontiguousarray(shard_of, np.uint8)
        if m.shape != (L.N_LOCATES,) or int(m.max()) >= self.threads:
            raise ValueError(f"shard_of must be {L.N_LOCATES} shard numbers below {self.threads}")
        return m

    def plan(self, buffer, sample_bytes: int | None = PLAN_SAMPLE_BYTES) -> np.ndarray:
        """Fix the locate -> shard map from the message counts of (a prefix of) this buffer,
        before any apply."""
        if self.messages:
            raise RuntimeError("the shard map is fixed once messages have been applied")
        self.shard_of = plan_shards(buffer, self.threads, sample_bytes)
        return self.shard_of

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- feeding -------------------------------------------------------------------------

    def apply(self, buffer, first_seq: int | None = None, *, stop_after_ns: int | None = None,
              source: str | None = None, base_offset: int = 0) -> int:
        """As ``Books.apply``: whole BinaryFILE-framed messages, returns the bytes consumed."""
        from itchflow.sources.files import as_uint8

        buf = as_uint8(buffer)
        if self.shard_of is None:
            self.plan(buf)
        seq = self.next_sequence if first_seq is None else int(first_seq)
        stop_ts = -1 if stop_after_ns is None else int(stop_after_ns)
        if self._pool is None:
            results = [self._run_shard(0, buf, seq, stop_ts)]
        else:
            futures = [self._pool.submit(self._run_shard, k, buf, seq, stop_ts) for k in range(self.threads)]
            wait(futures)  # every thread finishes before any error is raised
            results = [f.result() for f in futures]
        status, pos, seq, last_ts = results[0]
        if any(r[:3] != results[0][:3] for r in results):  # pragma: no cover - a routing bug
            raise RuntimeError(f"shards walked the buffer differently: {results}")
        self.next_sequence = int(seq)
        if last_ts >= 0:
            self._last_ts = last_ts
        if status not in (OK, STOPPED):
            code = _ROUTE_ERROR[status]
            raise ITCHFormatError(f"{L.ERROR_TEXT[code]} (message sequence {int(seq)})",
                                  source=source, offset=base_offset + int(pos))
        return int(pos)

    def _run_shard(self, k: int, buf: np.ndarray, seq: int, stop_ts: int):
        books, block, seqs, extra = self.shards[k], self._blocks[k], self._block_seqs[k], self._extra[k]
        if self._cpus is not None and self._pool is not None:
            pin(self._cpus[k])  # this pool thread (threads are handed shards in any order)
        pos, end, last = 0, len(buf), -1
        useq = np.uint64(seq)
        while True:
            status, pos, nbytes, nmsgs, useq, ts = route(buf, pos, end, self.shard_of, k, _BROADCAST,
                                                         LENGTH_BY_BYTE, stop_ts, useq, block, seqs, extra,
                                                         self._breaks)
            if ts >= 0:
                last = ts
            if nmsgs:
                ev = books.events
                before = (ev.n_trades, ev.n_bbo, ev.n_l2)
                books.apply(block[:nbytes], 0)
                if (ev.n_trades, ev.n_bbo, ev.n_l2) != before:
                    _renumber(ev, before, seqs[:nmsgs])
            if status != BLOCK_FULL:
                return status, int(pos), int(useq), int(last)

    # ---- event recording -----------------------------------------------------------------

    def record(self, symbols=None, *, bbo: bool = True, trades: bool = True, l2: bool = False) -> None:
        """As ``Books.record`` (every shard keeps the flags; only a stock's owner emits)."""
        if symbols is not None:
            symbols = self._locates(symbols)
        for b in self.shards:
            b.record(symbols, bbo=bbo, trades=trades, l2=l2)

    def take_events(self):
        """(bbo, trades, l2) recorded since the last call, merged in sequence order (copies)."""
        parts = [b.take_events() for b in self.shards]
        out = []
        for i in range(3):
            ev = np.concatenate([p[i] for p in parts])
            out.append(ev[np.argsort(ev["sequence"], kind="stable")])
        return tuple(out)

    # ---- lookups -------------------------------------------------------------------------

    def owner(self, symbol) -> Books:
        """The shard holding this stock's book."""
        loc = self.locate(symbol)
        return self.shards[0 if self.shard_of is None else int(self.shard_of[loc])]

    def locate(self, symbol) -> int:
        return self.shards[0].locate(symbol)  # every shard holds the whole directory

    def _locates(self, symbols) -> np.ndarray:
        return self.shards[0]._locates(symbols)

    def symbol(self, locate: int) -> str:
        return self.shards[0].symbol(locate)

    @property
    def symbols(self) -> dict[str, int]:
        return self.shards[0].symbols

    # ---- queries -------------------------------------------------------------------------

    def bbo(self, symbols=None):
        """As ``Books.bbo``: one stock from its shard; several (or None, where ``Books`` takes
        them: every stock in the directory) as rows with a ``locate`` field, each from its shard."""
        if isinstance(symbols, (str, bytes, int, np.integer)):
            return self.owner(symbols).bbo(symbols)
        rows = self.shards[0].bbo(symbols)  # every shard holds the directory: the rows' order
        for k, b in enumerate(self.shards[1:], 1):
            mine = self.shard_of[rows["locate"]] == k
            if mine.any():
                rows[mine] = b.bbo(rows["locate"][mine])
        return rows

    def depth(self, symbol, n: int = -1) -> tuple[np.ndarray, np.ndarray]:
        return self.owner(symbol).depth(symbol, n)

    def orders(self, symbol, side: str, price: int) -> list[tuple[int, int, str]]:
        return self.owner(symbol).orders(symbol, side, price)

    def volume(self, symbol) -> int:
        return self.owner(symbol).volume(symbol)

    def vwap(self, symbol) -> float:
        return self.owner(symbol).vwap(symbol)

    def trading_state(self, symbol) -> str:
        return self.owner(symbol).trading_state(symbol)

    def order_table(self, symbols=None) -> np.ndarray:
        """As ``Books.order_table``: rows of the requested locates in their order (ascending
        locate for None), each locate's rows as its shard orders them."""
        if symbols is None:
            parts = [b.order_table() for b in self.shards]
            rank = np.arange(L.N_LOCATES, dtype=np.int64)
        else:
            locs = self._locates(symbols)
            rank = np.zeros(L.N_LOCATES, np.int64)
            rank[locs] = np.arange(1, len(locs) + 1)
            owner = self.shard_of if self.shard_of is not None else np.zeros(L.N_LOCATES, np.uint8)
            parts = [b.order_table(locs[owner[locs] == k]) for k, b in enumerate(self.shards)]
        rows = np.concatenate(parts)
        locates = rows["locate"] if rows.dtype.names else rows[:, 0]  # records or int64 rows
        return np.ascontiguousarray(rows[np.argsort(rank[locates], kind="stable")])

    def live_orders(self) -> int:
        return sum(b.live_orders() for b in self.shards)

    @property
    def peak_live_orders_bound(self) -> int:
        """The sum of the shards' peaks: at least the one-thread peak (shards peak at
        different times, so the exact figure needs one thread)."""
        return sum(b.peak_live_orders for b in self.shards)

    @property
    def messages(self) -> int:
        return sum(b.messages for b in self.shards) - int(self._extra.sum())

    @property
    def type_counts(self) -> np.ndarray:
        return sum(b.type_counts for b in self.shards) - self._extra.sum(axis=0)

    @property
    def last_timestamp_ns(self) -> int:
        return int(self._last_ts)

    @property
    def unknown_types(self) -> int:
        return self.shards[0].unknown_types

    @property
    def stocks(self) -> np.ndarray:
        """Per locate STOCK_DTYPE rows, each from the stock's own shard (a copy)."""
        out = self.shards[0].stocks.copy()
        for k, b in enumerate(self.shards[1:], 1):
            mine = self.shard_of == k
            out[mine] = b.stocks[mine]
        return out

    @property
    def anomaly_counts(self) -> np.ndarray:
        """int64[65536, kinds]: the shards' counts summed (a copy).

        A B (broken trade) goes to every shard, since its header locate need not be the
        trade's stock; at most one shard holds its match number, so the others count it an
        unknown match: N - 1 of those per B are taken back out (one thread counts 1 exactly
        when no shard found it, or it was already broken)."""
        counts = sum(b.anomaly_counts for b in self.shards)
        counts[:, L.A_UNKNOWN_MATCH] -= (self.threads - 1) * self._breaks
        return counts

    def tops(self) -> np.ndarray:
        out = self.shards[0].tops()
        for k, b in enumerate(self.shards[1:], 1):
            mine = self.shard_of == k
            out[mine] = b.tops()[mine]
        return out

    def anomalies(self, symbol=None) -> dict[str, int]:
        counts = self.anomaly_counts
        rows = counts if symbol is None else counts[self.locate(symbol)][None, :]
        totals = rows.sum(axis=0)
        return {name: int(totals[i]) for i, name in enumerate(L.ANOMALIES)}

    def anomalies_by_stock(self) -> dict[int, dict[str, int]]:
        counts = self.anomaly_counts
        return {int(loc): {n: int(v) for n, v in zip(L.ANOMALIES, counts[loc]) if v}
                for loc in np.flatnonzero(counts.any(axis=1))}

    def memory_bytes(self) -> int:
        return sum(b.memory_bytes() for b in self.shards)


def _renumber(events, before, seqs: np.ndarray) -> None:
    """The engine numbered a block's messages 0..n-1: give the events just recorded their
    source sequence numbers."""
    for arr, n0, n1 in ((events.trades, before[0], events.n_trades), (events.bbo, before[1], events.n_bbo),
                        (events.l2, before[2], events.n_l2)):
        if n1 > n0:
            s = arr["sequence"]
            s[n0:n1] = seqs[s[n0:n1]]
