"""``ShardedBooks``: the books of every stock on N threads of one process, sharded by stock locate.

Every ITCH message names its stock locate, so the books of disjoint sets of stocks can be
built independently. Shard k is a plain ``Books`` holding the stocks ``shard_of[locate] == k``.
The (memory-mapped) input is taken a chunk at a time: ``route`` walks a chunk once and copies
each message into the block of its stock's shard, and each shard then applies its block
with the unchanged engine kernel, which releases the GIL (``@njit(nogil=True)``). Routing and
applying are tasks that any of the N threads runs (``shard_schedule``): a thread keeps its
shard (the one whose shard leads routes) and takes a chunk of another's only when its own shard
is far ahead, so the threads share the work by how fast each one actually runs, not by a fixed
split of the stocks. On a 2-vCPU guest the host may give one vCPU less (measured: the same
shard took 0.39 s on CPU 0 and 0.30 s on CPU 1). There is one shard a thread by default: twice
as many (the default until the twenty-third round) let a thread that came free always find a
shard nobody held, but moved shards between cores more often, each move costing the shard's
warm L2; on the 100-stock day two threads ran 1.24-1.57x one thread with 4 shards (8 runs, mean
1.38) and 1.42-1.57x with 2 (9 runs, mean 1.52), about the same on the other shapes and with a
busy loop on CPU 0.

Why a copy into blocks rather than a locate filter inside the engine: the engine needs no
change, and its look-ahead prefetching then sees only the shard's own orders. Both other ways
were measured (twenty-fourth round, docs/performance-history.md): a filter in the engine's parse
stage costs about 13 ns a skipped message (whose it is defeats the branch predictor), and
offset lists read in place halve the routing but leave each shard reading every line of the
chunk, with no gain in wall-clock time. Routing walks each message once (length, type,
locate) with one inlined 64-byte move into its shard's block.
The shard plan counts messages per locate in a prefix of the first buffer (PLAN_SAMPLE_BYTES).

What every shard sees (so queries and counters come out as with one thread):
- the framing of every message: the one routing walk checks it as the engine does, so all
  shards stop at the same message for a format error or ``stop_after_ns`` (the offset one
  thread reports);
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
``duplicate_match``; a B of that number breaks the trade in each of them, where one thread
breaks the first, and that B's ``unknown_match`` count is a lower bound), and
``peak_live_orders`` (shards peak at different times: only a bound).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
from numba import njit

from itchflow.book import layout as L
from itchflow.arguments import INT64_MAX, MAX_ROWS, optional_whole, whole
from itchflow.book.books import (DEFAULT_TABLE, Books, growth_summary, is_one_symbol, numbered_by, sequence_at,
                                 symbol_list, tops_digest)
from itchflow.book.events import Events
from itchflow.book.exclusive import exclusive, new_lock
from itchflow.book.replay import replay
from itchflow.book.shard_schedule import ROUTE, ShardSchedule
from itchflow.errors import ITCHFormatError
from itchflow.hw.affinity import available_cpus, pin
from itchflow.hw.endian import be16, be48_from8, u8
from itchflow.hw.join import join
from itchflow.hw.memcopy import copy_bytes
from itchflow.hw.prefetch import read_ahead
from itchflow.wire.binaryfile import AT_END, BAD_LENGTH, OK, TRUNCATED, ZERO_LENGTH, next_message
from itchflow.wire.itch import LENGTH_BY_BYTE, MESSAGES
from itchflow.wire.sequence_runs import SequenceRuns
from itchflow.wire.shard import MAX_MESSAGE_BYTES, balanced_map, count_by_locate, fits

BROADCAST_TYPES = "RSVWB"       # every shard applies them (see the module doc)
BLOCK_BYTES = 4 << 20           # input routed a chunk: 1 MiB measured a little slower (more tasks), 512 KiB slower still
FIRST_CHUNK = 256 << 10         # an apply call's first chunk, and the smallest of its last ones
SLOTS = 4                       # chunks routed and not yet applied by every shard, at most
SLACK = 1                       # chunks a shard may lead the least advanced before its thread takes another's (shard_schedule)
MAX_SHARDS = 255                # shard numbers are uint8
# The plan counts messages per locate in this much of the first buffer: on generated 100- and
# 8,000-stock days an 8 MB prefix already balances 2 and 3 shards to within 0.2% of a count
# over the whole day (activity per stock is steady), and the pass costs 1/20 of it.
PLAN_SAMPLE_BYTES = 16 << 20

_LOCATE = MESSAGES["A"].field("stock_locate").offset
_TS = MESSAGES["A"].field("timestamp").offset
BLOCK_FULL = 64                 # route(): the block is full, call again from pos
STOPPED = 65                    # route(): the next message is later than stop_ts
_LEFT = 66                      # _route_plain(): the message at pos is route()'s to take
_T_B = ord("B")
_U = np.uint64
_RUN_SLACK = 64
_ROUTE_ERROR = {TRUNCATED: L.ERR_TRUNCATED, BAD_LENGTH: L.ERR_BAD_LENGTH, ZERO_LENGTH: L.ERR_ZERO_LENGTH}

_BROADCAST = np.zeros(256, np.uint8)
for _c in BROADCAST_TYPES:
    _BROADCAST[ord(_c)] = 1
_BROADCAST.setflags(write=False)


@njit(inline="always", nogil=True, cache=True)
def _put(blocks, at, buf, pos, end, size):
    """blocks[at:at + size] = buf[pos:pos + size]; a short message as one constant 64-byte
    move (inlined, no call: ``blocks`` keeps _RUN_SLACK bytes past what a shard may fill)."""
    if size <= _RUN_SLACK and pos + _RUN_SLACK <= end:
        copy_bytes(blocks, at, buf, pos, _RUN_SLACK)
    else:
        copy_bytes(blocks, at, buf, pos, size)


@njit(inline="always", nogil=True, cache=True)
def _classify(buf, pos, end, shard_of, broadcast, lengths, stop_ts):
    """The message at pos, as route() takes it: (status, q, length, owner, every, known).
    status is OK, STOPPED (a known message later than stop_ts >= 0) or a binaryfile error;
    owner is shard_of[locate] for a known type, 0 for an unknown one (no trustworthy locate);
    every: a broadcast type (it goes to every shard)."""
    st, q, length = next_message(buf, pos, end)
    owner = np.int64(0)
    every = False
    known = False
    if st == OK:
        read_ahead(buf, q, end)
        t = u8(buf, q)
        expected = lengths[t]
        if expected == length:
            known = True
            if stop_ts >= 0 and np.int64(be48_from8(buf, q + _TS)) > stop_ts:
                st = STOPPED
            else:
                owner = np.int64(shard_of[be16(buf, q + _LOCATE)])
                every = broadcast[t] != 0
        elif expected != 0:
            st = BAD_LENGTH
    return st, q, length, owner, every, known


@njit(nogil=True, cache=True, _nrt=False)
def _route_plain(buf, pos, end, limit, shard_of, broadcast, lengths, stop_ts, blocks, stride, fill, rel, rel_stride,
                 count, n, last_known):
    """route()'s loop over the messages that go to one shard as one 64-byte move: returns
    (status, pos, n, last_known) with status _LEFT at a message route() takes itself, else
    as route(), before its AT_END becomes OK."""
    cap = stride - _RUN_SLACK
    short_end = end - _RUN_SLACK   # a message starting at or before it can be moved as 64 bytes
    status = OK
    while pos < limit:
        status, q, length, owner, every, known = _classify(buf, pos, end, shard_of, broadcast, lengths, stop_ts)
        if status != OK:
            break
        size = q + length - pos
        if every or size > _RUN_SLACK or pos > short_end:
            status = _LEFT
            break
        if not fits(fill, count, owner, size, cap, rel_stride):
            status = BLOCK_FULL
            break
        f = fill[owner]
        c = count[owner]
        copy_bytes(blocks, owner * stride + f, buf, pos, _RUN_SLACK)
        fill[owner] = f + size
        rel[owner * rel_stride + c] = np.uint32(n)
        count[owner] = c + 1
        if known:
            last_known = q
        pos = q + length
        n += 1
    return status, pos, n, last_known


@njit(nogil=True, cache=True, _nrt=False)
def route(buf, pos, end, limit, shard_of, broadcast, lengths, stop_ts, blocks, stride, fill, rel, rel_stride,
          count, extra, breaks):
    """Copy the messages of buf[pos:...] (whole, with their length prefixes) into their shards'
    blocks, stopping before the first message that starts at or past ``limit``.

    Shard s's block is blocks[s * stride:][:fill[s]] and the index of each of its messages
    in this walk (0, 1, ...) is rel[s * rel_stride:][:count[s]]; fill and count start at 0.
    A message is shard ``shard_of[locate]``'s when its type is known; a broadcast type goes
    to every shard (``extra[s, type]`` counts the copies beyond the locate's owner, and
    ``breaks`` counts B messages per header locate: see ``ShardedBooks.anomaly_counts``);
    an unknown type goes to shard 0. Checks what the engine checks, in its order, so the
    books stop where one thread's would: framing (a binaryfile status), a known type's length,
    and ``stop_ts`` (>= 0: stop before the first known message later than it).

    Returns (status, pos, messages walked, last known timestamp or -1): status is OK when the
    walk reached ``limit`` or ``end`` (pos says which), BLOCK_FULL when a shard's block or
    index had no room for the next message (call again from pos), STOPPED, or a binaryfile
    error status; pos names the first message not walked.

    Most messages go through ``_route_plain``, a loop with no call in it; this one takes each
    message that loop leaves (a broadcast type, one longer than a 64-byte move, one too near
    the end of buf for it). A call in a loop (memcpy of a variable length, the broadcast's own
    loop) makes the compiler keep the loop's values on the stack across it, every message:
    routing took 7.8 ns a message with them in the loop and 5.3 without (8,000 stocks).
    """
    n = 0
    last_known = -1    # the last known message walked: its timestamp is read once, at the end
    status = OK
    cap = stride - _RUN_SLACK
    while True:
        status, pos, n, last_known = _route_plain(buf, pos, end, limit, shard_of, broadcast, lengths, stop_ts,
                                                  blocks, stride, fill, rel, rel_stride, count, n, last_known)
        if status != _LEFT:
            break
        # the message at pos, which the plain loop left (it is there, whole, of a good length)
        _, q, length, owner, every, known = _classify(buf, pos, end, shard_of, broadcast, lengths, stop_ts)
        size = q + length - pos
        first = 0 if every else owner      # the shards it goes to: first..last
        last = fill.shape[0] - 1 if every else owner
        room = True
        for s in range(first, last + 1):
            room = room and fits(fill, count, s, size, cap, rel_stride)
        if not room:
            status = BLOCK_FULL
            break
        for s in range(first, last + 1):
            _put(blocks, s * stride + fill[s], buf, pos, end, size)
            fill[s] += size
            rel[s * rel_stride + count[s]] = np.uint32(n)
            count[s] += 1
        if known:
            t = u8(buf, q)
            if every:
                for s in range(fill.shape[0]):
                    extra[s, t] += np.int64(s != owner)
                if t == _T_B:
                    breaks[be16(buf, q + _LOCATE)] += 1
            last_known = q
        pos = q + length
        n += 1
    if status == AT_END:
        status = OK
    last_ts = np.int64(be48_from8(buf, last_known + _TS)) if last_known >= 0 else np.int64(-1)
    return status, pos, n, last_ts


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

    buf = as_uint8(buffer, "plan_shards")
    end = len(buf) if sample_bytes is None else min(len(buf), int(sample_bytes))
    counts = np.zeros(L.N_LOCATES, np.int64)
    count_by_locate(buf, 0, end, LENGTH_BY_BYTE, counts)
    return balanced_shards(counts, threads)


class ShardedBooks:
    """``Books`` of every stock on ``threads`` threads; the queries of ``Books`` across shards.

    shards: how many ``Books`` the stocks are split into (default: one a thread; see the
    module doc for why not more). shard_of:
    uint8[65536] locate -> shard (then ``shards`` defaults to ``threads``); by default the
    first ``apply`` (or ``plan``) balances the locates by the message counts of the first
    PLAN_SAMPLE_BYTES of its buffer (a framing pass), so plan on the day itself when feeding
    it in small slices. capacity / table / levels / arena are split evenly over the shards;
    track_matches as for ``Books``. far_table: as for ``Books``, the order table rows of all
    the shards together (each shard takes its share): the shards' tables share the caches, so
    a full day split four ways is as far beyond them as one table (measured, a 10 M-message
    full-day shape on two threads: 0.81 s with each shard deciding by its own table, 0.73 s).
    block_bytes: input bytes routed a chunk; slots: chunk buffers (how far routing and the
    fastest shard may run ahead of the slowest). prefault: as for ``Books``, per shard, and off
    by default: the shards' threads fill the cores, a populating thread would only compete
    (a shard's apply takes a chunk's block, under the 16 MiB that starts one unless
    block_bytes is raised).
    """

    def __init__(self, threads: int = 2, capacity: int | None = None, *, shard_of=None,
                 track_matches: bool = True, table: int | None = None, levels: int | None = None,
                 arena: int | None = None, trades: int | None = None, block_bytes: int = BLOCK_BYTES,
                 pin_threads: bool = True,
                 shards: int | None = None, slots: int = SLOTS, far_table: int = L.FAR_TABLE,
                 prefault: bool = False, hash_seed: int | None = None):
        threads = whole(threads, "threads", 1, MAX_SHARDS)
        if shards is None:
            shards = threads
        shards = whole(shards, "shards (at least one a thread)", threads, MAX_SHARDS)
        if whole(block_bytes, "block_bytes") < MAX_MESSAGE_BYTES:
            raise ValueError("block_bytes must hold the longest possible message (65,537 bytes)")
        slots = whole(slots, "slots", 1)
        capacity = optional_whole(capacity, "capacity (live orders)", 0, MAX_ROWS)
        table, levels, arena, trades = (optional_whole(v, name, 0, MAX_ROWS) for v, name in (
            (table, "table (rows)"), (levels, "levels"), (arena, "arena (ladder entries)"), (trades, "trades")))
        far_table = whole(far_table, "far_table (rows)", 0, INT64_MAX)
        self.threads = threads
        self.n_shards = shards
        self._lock = new_lock(self)   # one thread at a time (``book.exclusive``); the shards have their own
        # Each thread on a core of its own (when there are enough): left to the scheduler,
        # the two threads of a 2-core machine now and then share a core or swap cores, and
        # each swap costs the thread its warm L1/L2 (measured: unpinned, books on two threads
        # 1.2-1.5x one thread; pinned 1.6x).
        cpus = available_cpus()
        self._cpus = cpus if (pin_threads and 1 < threads <= len(cpus)) else None

        def part(v):
            return None if v is None else max(1, int(v) // shards)

        def share(v):  # a shard's part of a count to expect (live orders, trades): the shards are
            # balanced by messages, not by these, so each gets a quarter more than an even part
            return None if v is None else max(1, int(v) * 5 // (4 * shards))

        if table is None and capacity is None:  # the one-thread default, split
            table = DEFAULT_TABLE
        far_part = -(-max(0, int(far_table)) // shards)  # 0 stays 0: never
        if hash_seed is None:   # one secret for every shard, drawn here: ``hash_seed`` tells it (each
            # shard's Books checks a given one)
            import secrets

            hash_seed = secrets.randbits(64)
        self.shards = [Books(share(capacity), track_matches=track_matches, table=part(table),
                             levels=part(levels), arena=part(arena), trades=share(trades), far_table=far_part,
                             prefault=prefault, hash_seed=hash_seed)
                       for _ in range(shards)]
        self.shard_of = None if shard_of is None else self._checked_map(shard_of)
        # Per slot: every shard's block (a chunk routes at most block_bytes of input, plus the
        # message that crosses the limit), each message's index in the chunk (ITCH messages
        # take >= 14 bytes; route() also stops when this is full, for tiny unknown-type
        # messages), and the bytes / messages each shard got. Pages are touched as used.
        self._chunk_bytes = int(block_bytes)
        self._stride = -(-(self._chunk_bytes + MAX_MESSAGE_BYTES + _RUN_SLACK) // 64) * 64
        self._rel_stride = (self._chunk_bytes + MAX_MESSAGE_BYTES) // 14 + 1
        self._slots = int(slots)
        self._blocks = [np.empty(shards * self._stride, np.uint8) for _ in range(self._slots)]
        self._rel = [np.empty(shards * self._rel_stride, np.uint32) for _ in range(self._slots)]
        self._fill = np.zeros((self._slots, shards), np.int64)
        self._count = np.zeros((self._slots, shards), np.int64)
        self._first_seq = [0] * self._slots
        self._extra = np.zeros((shards, 256), np.int64)    # broadcast copies beyond the owner's
        self._breaks = np.zeros(L.N_LOCATES, np.int64)     # B messages per header locate
        # Per shard, (apply call, its event counts: trades, bbo, l2) at the end of each apply
        # call that recorded any: take_events orders events by apply call first, then by
        # sequence, since sequence numbers start again in each call of a capture's
        # unsequenced packets.
        self._apply_calls = 0
        self._event_marks: list[list[tuple[int, int, int, int]]] = [[] for _ in range(shards)]
        # the runs of the apply calls that recorded events numbered by their places (apply's runs)
        self._call_runs: dict[int, SequenceRuns] = {}
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="itchflow-book") if threads > 1 else None
        self.next_sequence = 1
        self.applied = 0   # messages the last apply consumed
        self.stopped_at_time = False   # the last apply stopped at its stop_after_ns
        self._last_ts = 0
        # what each thread did in the last apply: CPU seconds, messages applied, tasks
        self.thread_cpu_seconds = [0.0] * threads
        self.thread_messages = [0] * threads
        self.thread_tasks = [0] * threads
        self.shard_moves = 0   # applies of a shard on another thread than its last apply's

    def _checked_map(self, shard_of) -> np.ndarray:
        # checked as given, before the uint8 the kernels take: a cast first wrapped 256 to 0,
        # 257 and -255 to 1, and cut 1.9 to 1, accepting them
        given = np.asarray(shard_of)
        if not np.issubdtype(given.dtype, np.integer):
            raise TypeError(f"shard_of must be whole shard numbers, not an array of {given.dtype}")
        if (given.shape != (L.N_LOCATES,) or int(given.min()) < 0
                or int(given.max()) >= self.n_shards):
            raise ValueError(f"shard_of must be {L.N_LOCATES} shard numbers from 0 to {self.n_shards - 1}")
        return np.ascontiguousarray(given, np.uint8)

    @exclusive
    def plan(self, buffer, sample_bytes: int | None = PLAN_SAMPLE_BYTES) -> np.ndarray:
        """Fix the locate -> shard map from the message counts of (a prefix of) this buffer,
        before any apply."""
        if self.messages:
            raise RuntimeError("the shard map is fixed once messages have been applied")
        self.shard_of = plan_shards(buffer, self.n_shards, sample_bytes)
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

    def replay(self, source, *, stop_after_ns: int | None = None, progress=None, on_slice=None,
               capture_stats: dict | None = None, **options) -> "ShardedBooks":
        """As ``Books.replay``: a whole source (a path: BinaryFILE, gzip, pcap; or a buffer) in
        bounded slices; returns self. The shard plan comes from the first slice. (``replay``
        takes the books' lock itself.)"""
        replay(self, source, stop_after_ns=stop_after_ns, progress=progress, on_slice=on_slice,
               capture_stats=capture_stats, **options)
        return self

    @exclusive
    def apply(self, buffer, first_seq: int | None = None, *, stop_after_ns: int | None = None,
              source: str | None = None, base_offset: int = 0, max_bytes: int | None = None,
              runs: SequenceRuns | None = None) -> int:
        """As ``Books.apply``: whole BinaryFILE-framed messages, returns the bytes consumed.

        max_bytes: stop before the first message that starts at or past this offset (the rest
        is for the next call); ``stopped_at_time`` tells a stop at ``stop_after_ns`` apart.
        runs: as ``Books.apply``'s (the events keep their places until ``take_events`` has
        put them in order, then take their numbers)."""
        from itchflow.sources.files import as_uint8

        buf = as_uint8(buffer, "Books.apply")
        runs = numbered_by(runs, first_seq)
        if self.shard_of is None:
            self.plan(buf)
        # route() indexes the blocks by shard_of's entries unchecked: a map set by hand since
        # is checked again here (a max over 64 KiB, ~10 us)
        self.shard_of = self._checked_map(self.shard_of)
        stop_ts = optional_whole(stop_after_ns, "stop_after_ns", 0, INT64_MAX)
        max_bytes = optional_whole(max_bytes, "max_bytes", 0)
        run = _Run(self, buf, self.next_sequence if first_seq is None else whole(first_seq, "first_seq", 0, INT64_MAX),
                   -1 if stop_ts is None else stop_ts,  # -1: never stop
                   len(buf) if max_bytes is None else min(len(buf), max_bytes))
        if self._pool is None:
            run.work(0)
        else:
            futures = [self._pool.submit(run.work, w) for w in range(self.threads)]
            wait(futures)  # every thread finishes before any error is raised
            for f in futures:
                f.result()
        if self._mark_events() and runs is not None:
            self._call_runs[self._apply_calls] = runs
        if run.failure is not None:  # pragma: no cover - an engine or routing bug
            raise run.failure
        self.next_sequence, self.applied = sequence_at(runs, run.seq), run.seq - run.first_seq
        self.stopped_at_time = run.status == STOPPED
        self.shard_moves = run.schedule.moves
        if run.last_ts >= 0:
            self._last_ts = run.last_ts
        if run.status not in (OK, STOPPED):
            code = _ROUTE_ERROR[run.status]
            raise ITCHFormatError(L.error_text(buf, run.pos, len(buf), code, sequence_at(runs, run.seq)),
                                  source=source, offset=base_offset + run.pos)
        return run.pos

    # ---- event recording -----------------------------------------------------------------

    @exclusive
    def record(self, symbols=None, *, bbo: bool = True, trades: bool = True, l2: bool = False) -> None:
        """As ``Books.record`` (every shard keeps the flags, and every shard applies the R
        messages that name a symbol asked for before its R; only a stock's owner emits)."""
        if symbols is not None:
            symbols = symbol_list(symbols)   # each shard takes them (an iterator would serve only the first)
        for b in self.shards:
            b.record(symbols, bbo=bbo, trades=trades, l2=l2)

    @property
    def waiting_symbols(self) -> list[str]:
        """As ``Books.waiting_symbols`` (every shard applies every R)."""
        return self.shards[0].waiting_symbols

    def _mark_events(self) -> bool:
        """Note each shard's event counts at the end of an apply call (see take_events);
        returns whether the call recorded any."""
        self._apply_calls += 1
        recorded = False
        for b, marks in zip(self.shards, self._event_marks):
            now = b.events.counts()
            if now != (marks[-1][1:] if marks else (0, 0, 0)):
                marks.append((self._apply_calls, *now))
                recorded = True
        return recorded

    @exclusive
    def take_events(self):
        """(bbo, trades, l2) recorded since the last call, merged in the order one thread
        records them (copies): by apply call, then sequence number (a call's sequence numbers
        rise with its messages; a capture's unsequenced packets each start again at 0), then
        each shard's own order."""
        parts = [b.take_events() for b in self.shards]
        marks = [np.asarray(m, np.int64).reshape(-1, 4) for m in self._event_marks]
        for m in self._event_marks:
            m.clear()
        out = []
        for i, field in enumerate((2, 1, 3)):   # events come as (bbo, trades, l2), marks as (call, trades, bbo, l2)
            pieces = [p[i].view(np.ndarray) for p in parts]
            call = np.concatenate([m[np.searchsorted(m[:, field], np.arange(len(ev)), side="right"), 0]
                                   for m, ev in zip(marks, pieces)])
            ev = join(pieces, pieces[0].dtype)   # the shards' event dtype exactly, as one thread gives it
            order = np.lexsort((np.arange(len(ev)), ev["sequence"], call))
            # into zeros: a copy by fancy index leaves the padding between fields as fresh memory had it
            ev, call = np.take(ev, order, out=np.zeros(len(ev), ev.dtype)), call[order]
            for c, runs in self._call_runs.items():   # places in a call's runs -> their numbers
                a, b = np.searchsorted(call, c), np.searchsorted(call, c, side="right")
                if b > a:
                    ev["sequence"][a:b] = runs.numbers(ev["sequence"][a:b])
            out.append(ev.view(Events))   # (a copy already: no second one)
        self._call_runs.clear()
        return tuple(out)

    # ---- lookups -------------------------------------------------------------------------

    def owner(self, symbol) -> Books:
        """The shard holding this stock's book."""
        loc = self.locate(symbol)
        return self.shards[0 if self.shard_of is None else int(self.shard_of[loc])]

    @exclusive
    def locate(self, symbol) -> int:
        return self.shards[0].locate(symbol)  # every shard holds the whole directory

    def _locates(self, symbols) -> np.ndarray:
        return self.shards[0]._locates(symbols)

    @exclusive
    def symbol(self, locate: int) -> str:
        return self.shards[0].symbol(locate)

    @property
    def symbols(self) -> dict[str, int]:
        return self.shards[0].symbols

    @exclusive
    def listed_symbols(self) -> set[str]:
        return self.shards[0].listed_symbols()

    # ---- queries -------------------------------------------------------------------------

    @exclusive
    def bbo(self, symbols=None):
        """As ``Books.bbo``: one stock from its shard; several (or None, where ``Books`` takes
        them: every stock in the directory) as rows with a ``locate`` field, each from its shard."""
        if is_one_symbol(symbols):
            return self.owner(symbols).bbo(symbols)
        rows = self.shards[0].bbo(symbols)  # every shard holds the directory: the rows' order
        if self.shard_of is None:   # nothing applied yet: every book is empty, as in shard 0
            return rows
        for k, b in enumerate(self.shards[1:], 1):
            mine = self.shard_of[rows["locate"]] == k
            if mine.any():
                rows[mine] = b.bbo(rows["locate"][mine])
        return rows

    @exclusive
    def depth(self, symbol, n: int | None = -1) -> tuple[np.ndarray, np.ndarray]:
        return self.owner(symbol).depth(symbol, n)

    @exclusive
    def orders(self, symbol, side: str, price: int) -> np.ndarray:
        return self.owner(symbol).orders(symbol, side, price)

    @exclusive
    def volume(self, symbol) -> int:
        return self.owner(symbol).volume(symbol)

    @exclusive
    def vwap(self, symbol) -> float:
        return self.owner(symbol).vwap(symbol)

    @exclusive
    def trading_state(self, symbol) -> str:
        return self.owner(symbol).trading_state(symbol)

    @exclusive
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
        rows = np.concatenate(parts)   # ORDER_DTYPE has no padding to lose
        locates = rows["locate"] if rows.dtype.names else rows[:, 0]  # records or int64 rows
        return np.ascontiguousarray(rows[np.argsort(rank[locates], kind="stable")])

    @exclusive
    def live_orders(self) -> int:
        return sum(b.live_orders() for b in self.shards)

    @property
    def hash_seed(self) -> np.uint64:
        """The secret every shard's tables hash with (``Books(hash_seed=...)``)."""
        return self.shards[0].hash_seed

    def prefault(self, wait: bool = False) -> bool:
        """As ``Books.prefault``, for every shard's tables (before a live feed's open)."""
        return all([b.prefault(wait=wait) for b in self.shards])   # (every shard's, not up to a False)

    @property
    def peak_live_orders(self) -> int:
        """Not kept across shards (a bare AttributeError said nothing of why: probe 31)."""
        raise AttributeError("ShardedBooks has no exact peak_live_orders: its shards peak at different times. "
                             "peak_live_orders_bound is the sum of their peaks (at least the exact figure); "
                             "Books(threads=1) keeps the exact one")

    @property
    def timestamps_backwards(self) -> int:
        """Not kept across shards: each shard sees only its stocks' messages."""
        raise AttributeError("ShardedBooks has no timestamps_backwards: each shard sees its own stocks' messages, "
                             "not the day's order; Books(threads=1) or itchflow.stats counts them")

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
        return self.shards[0].unknown_types   # every unknown type goes to shard 0

    @property
    def unknown_by_type(self) -> dict[str, int]:
        return self.shards[0].unknown_by_type

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
        when no shard found it, or it was already broken). A match number that trades of two
        shards' stocks both used (inconsistent input: see the module doc) is found in both, so
        that count is then a lower bound, never below 0."""
        counts = sum(b.anomaly_counts for b in self.shards)
        unknown = counts[:, L.A_UNKNOWN_MATCH] - (self.n_shards - 1) * self._breaks
        counts[:, L.A_UNKNOWN_MATCH] = np.maximum(unknown, 0)
        every = L.BROADCAST_ANOMALY_INDEX  # from messages every shard applies: one shard's count
        counts[:, every] = self.shards[0].anomaly_counts[:, every]
        return counts

    @exclusive
    def tops_digest(self) -> str:
        """As ``Books.tops_digest``: equal to one thread's digest when the books agree."""
        return tops_digest(self.tops(), self.stocks["volume"])

    @exclusive
    def tops(self) -> np.ndarray:
        out = self.shards[0].tops()
        for k, b in enumerate(self.shards[1:], 1):
            mine = self.shard_of == k
            out[mine] = b.tops()[mine]
        return out

    @exclusive
    def anomalies(self, symbol=None) -> dict[str, int]:
        counts = self.anomaly_counts
        rows = counts if symbol is None else counts[self.locate(symbol)][None, :]
        totals = rows.sum(axis=0)
        return {name: int(totals[i]) for i, name in enumerate(L.ANOMALIES)}

    @exclusive
    def anomalies_by_stock(self) -> dict[int, dict[str, int]]:
        counts = self.anomaly_counts
        return {int(loc): {n: int(v) for n, v in zip(L.ANOMALIES, counts[loc]) if v}
                for loc in np.flatnonzero(counts.any(axis=1))}

    @exclusive
    def growth(self) -> dict:
        """``Books.growth`` over every shard (shards grow on their own threads: a pause stops
        only its shard's thread)."""
        return growth_summary([g for b in self.shards for g in b.growth_log])

    @exclusive
    def memory_bytes(self) -> int:
        """The shards' arrays and the chunk slots' blocks and indexes (allocated, not all
        touched: a block's pages are faulted in as far as its shard fills it)."""
        slots = sum(a.nbytes for a in (*self._blocks, *self._rel))
        return sum(b.memory_bytes() for b in self.shards) + slots


class _Run:
    """One ``apply`` call: the threads' loop around a ``ShardSchedule``, and its two tasks."""

    def __init__(self, sb: ShardedBooks, buf: np.ndarray, seq: int, stop_ts: int, budget: int):
        self.sb, self.buf, self.stop_ts, self.budget = sb, buf, stop_ts, budget
        self.schedule = ShardSchedule(sb.n_shards, sb._slots, sb.threads, SLACK)
        self.lock = threading.Condition()
        self.pos, self.seq = 0, int(seq)   # where routing goes on (the first message not routed)
        self.first_seq = self.seq
        self.status, self.last_ts = OK, -1
        self.failure: BaseException | None = None
        for k in range(sb.threads):
            sb.thread_cpu_seconds[k], sb.thread_messages[k], sb.thread_tasks[k] = 0.0, 0, 0

    def work(self, worker: int) -> None:
        sb, schedule = self.sb, self.schedule
        if sb._cpus is not None and sb._pool is not None:
            pin(sb._cpus[worker])  # this pool thread
        cpu = time.thread_time()
        try:
            with self.lock:
                while not schedule.done:
                    task = schedule.next_task(worker)
                    if task is None:
                        self.lock.wait()
                        continue
                    self.lock.release()  # the task runs without the lock (and the GIL)
                    try:
                        if task[0] == ROUTE:
                            last = self._route(task[1])
                        else:
                            sb.thread_messages[worker] += self._apply(task[1], task[2])
                    except BaseException as e:  # stop everyone; apply() raises it
                        self.failure = self.failure or e
                    finally:
                        self.lock.acquire()
                    sb.thread_tasks[worker] += 1
                    if self.failure is not None:
                        schedule.stop()
                    if task[0] == ROUTE:
                        schedule.route_done(self.failure is not None or last)
                    else:
                        schedule.apply_done(task[1])
                    self.lock.notify_all()
        finally:
            sb.thread_cpu_seconds[worker] += time.thread_time() - cpu

    def _route(self, chunk: int) -> bool:
        """Route the next chunk into its slot; True when it is the input's last."""
        sb, buf, k = self.sb, self.buf, chunk % self.sb._slots
        end = len(buf)
        sb._fill[k] = 0
        sb._count[k] = 0
        # Every apply call starts with one thread routing while the others wait, and ends with
        # the last chunk's applies, unevenly spread: a small first chunk and chunks that shrink
        # to a quarter of what is left keep both waits short (measured: replay's 32 MiB slices
        # cost 10 ms a call with 4 MiB chunks throughout).
        budget = self.budget
        size = min(sb._chunk_bytes, FIRST_CHUNK if chunk == 0 else max(FIRST_CHUNK, (budget - self.pos) // 4))
        status, pos, n, ts = route(buf, self.pos, end, min(budget, self.pos + size), sb.shard_of,
                                   _BROADCAST, LENGTH_BY_BYTE, self.stop_ts, sb._blocks[k], sb._stride,
                                   sb._fill[k], sb._rel[k], sb._rel_stride, sb._count[k], sb._extra, sb._breaks)
        sb._first_seq[k] = self.seq
        self.pos, self.seq = int(pos), self.seq + int(n)
        if ts >= 0:
            self.last_ts = int(ts)
        if status == BLOCK_FULL:
            return False
        self.status = int(status)
        return status != OK or self.pos >= budget

    def _apply(self, shard: int, chunk: int) -> int:
        """Shard ``shard`` applies its block of ``chunk``; returns its messages."""
        sb, k = self.sb, chunk % self.sb._slots
        n = int(sb._count[k, shard])
        if n:
            books, at = sb.shards[shard], shard * sb._stride
            ev = books.events
            before = ev.counts()
            books.apply(sb._blocks[k][at:at + int(sb._fill[k, shard])], 0)
            if ev.counts() != before:
                # the engine numbered the block's messages 0..n-1: the source's numbers instead
                rel = sb._rel[k][shard * sb._rel_stride:][:n]
                ev.renumber(before, (np.uint64(sb._first_seq[k]) + rel.astype(np.uint64)).__getitem__)
        return n
