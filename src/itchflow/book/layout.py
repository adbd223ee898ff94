"""The book engine's state, declared once: record dtypes, control-word indices, status codes.

All engine state lives in preallocated numpy arrays so the compiled kernels can be cached
(no jitclass) and the Python side can grow any of them between calls without losing state.
Every array starts on a cache line (``aligned``), so a 32- or 64-byte record never straddles two.

- ``orders``: the order table, which is both the order store and its index: an
  open-addressing hash (linear probing, backward-shift deletion, no tombstones) keyed by the
  64-bit order reference whose rows are the 32-byte order records themselves, so finding an
  order costs one cache miss, not a probe and then a pointer. ``order_words`` is the same
  memory as flat uint64 rows of 4 for the probing routines (``order_store``); word 1, the
  order's priority stamp, is never 0 in a live row and 0 marks an empty one.
- time priority: every add takes the next ``stamp`` (a counter, from 1); a level's queue is
  its live orders in stamp order. Nothing points at an order, so deletion may move rows, and
  no message has to touch an order's queue neighbours (a linked queue costs two more cache
  misses per removal). Reading a whole queue scans the table (``queries``), which is rare.
- ``levels``: price levels, each with total shares, order count and its book (locate * 2 + side);
  the same records carry a chained hash (book, price) -> level (``level_index``), so an add
  finds its level without searching the ladder.
- ``ladder``: per book a sorted segment of an arena of uint64 entries, each a level's key
  (the price for bids, 0xFFFFFFFF - price for asks) in the high 32 bits and its level id in
  the low 32, ascending, so the best level is always the last one and the levels that change
  most are the ones nearest the end of the segment (``ladder``).
- ``books``: per book (locate * 2 + side) the segment's start, length and capacity.
- ``stocks``: per stock locate: symbol, trading state, volume, notional, cached BBO, and
  which event streams to record for it.
- ``trade_log``: every trade whose match number is the largest so far (for B, broken
  trades), appended in order, so its keys ascend (``trade_log``): rows of ``MATCH_DTYPE`` as
  flat uint64 words, like the match index's.
- ``matches``: match number -> trade for the trades the log cannot take (a number not above
  the largest so far: out of order or repeated): rows of ``MATCH_DTYPE`` kept as
  flat uint64 words (``MATCH_WORDS`` a row) for the probing routines; word 1 is what marks a
  row occupied (``order_store.probe``), so it must never be 0 (shares may be). The
  trade's price, locate and flags share one word (``MATCH_W_TRADE``), read and written with
  the shifts and masks derived from the dtype below (``book.match_index``).
- ``ctl``: int64 control words (counters, free-list heads, capacities, options).
"""

from __future__ import annotations

import numpy as np

from itchflow.wire import binaryfile as _framing

BID = 0
ASK = 1
N_LOCATES = 1 << 16
N_BOOKS = N_LOCATES * 2

ORDER_DTYPE = np.dtype([
    ("ref", np.uint64),     # word 0: the hash key
    ("stamp", np.uint64),   # word 1: time priority (from 1, in add order), side in bit 63; 0 = empty row
    ("shares", np.uint32),
    ("price", np.uint32),
    ("level", np.int32),    # the level id it rests on
    ("mpid", np.uint32),    # F attribution, 4 ASCII bytes little-endian (0 = none)
])
assert ORDER_DTYPE.itemsize == 32  # two rows a cache line, never straddling one
ORDER_WORDS = ORDER_DTYPE.itemsize // 8
# The order's side (0 bid, 1 ask) rides in its stamp's top bit: the engine's look-ahead reads
# the row it has just found to fetch that one book's ladder top, instead of both books'. A
# stamp is never 0 (they count from 1) and orders of one level share the bit, so the stamp
# still marks a live row and still orders a level's queue.
STAMP_SIDE_BIT = 63
STAMP_MASK = (1 << STAMP_SIDE_BIT) - 1
assert ORDER_DTYPE.fields["ref"][1] == 0 and ORDER_DTYPE.fields["stamp"][1] == 8, "probing reads words 0 and 1"

# A kept trade's row (the trade log's and the match index's). Little-endian, so price, locate
# and flags are the low, middle and top bits of word 2: the kernels pack and unpack that word
# with the shifts derived here.
MATCH_DTYPE = np.dtype([
    ("match", np.uint64),   # word 0: the hash key (the match number)
    ("used", np.uint64),    # word 1: 1 in an occupied row, 0 = empty
    ("price", np.uint32),   # word 2, bits 0-31: Price(4)
    ("locate", np.uint16),  # word 2, bits 32-47
    ("flags", np.uint16),   # word 2, bits 48-63: MATCH_COUNTED | MATCH_BROKEN
    ("shares", np.uint64),  # word 3
])
MATCH_WORDS = MATCH_DTYPE.itemsize // 8
MATCH_W_KEY = MATCH_DTYPE.fields["match"][1] // 8
MATCH_W_USED = MATCH_DTYPE.fields["used"][1] // 8
MATCH_W_TRADE = MATCH_DTYPE.fields["price"][1] // 8
MATCH_W_SHARES = MATCH_DTYPE.fields["shares"][1] // 8
MATCH_LOCATE_SHIFT = 8 * (MATCH_DTYPE.fields["locate"][1] - MATCH_DTYPE.fields["price"][1])
MATCH_FLAGS_SHIFT = 8 * (MATCH_DTYPE.fields["flags"][1] - MATCH_DTYPE.fields["price"][1])
MATCH_PRICE_MASK = (1 << 8 * MATCH_DTYPE.fields["price"][0].itemsize) - 1
MATCH_LOCATE_MASK = (1 << 8 * MATCH_DTYPE.fields["locate"][0].itemsize) - 1
# A match number's home row: its group's (the number >> MATCH_GROUP_BITS) hashed run of 16
# rows, the low bits its row in the run. Match numbers arrive nearly in order, so a day's
# trades fill runs of adjacent rows (8 cache lines) instead of a random line each (measured,
# 50 M-message 100-stock day, tables presized and faulted in: 3-4 ns a message less).
MATCH_GROUP_BITS = 4
MATCH_COUNTED = 1   # the trade counted in volume (printable)
MATCH_BROKEN = 2    # a B message broke it
assert MATCH_DTYPE.itemsize == 32 and (MATCH_W_KEY, MATCH_W_USED) == (0, 1), "probing reads words 0 and 1"
assert MATCH_W_TRADE == MATCH_DTYPE.fields["flags"][1] // 8, "price, locate and flags share one word"

LEVEL_DTYPE = np.dtype([
    ("price", np.int64),
    ("shares", np.int64),
    ("count", np.int32),
    ("book", np.int32),       # locate * 2 + side; -1 when free
    ("next_free", np.int32),  # free-list link while free; while live, its price index chain link
    ("bucket", np.int32),     # head of price index bucket (this record's index)'s chain (``level_index``)
])
assert LEVEL_DTYPE.itemsize == 32

BOOK_DTYPE = np.dtype([
    ("start", np.int64),
    ("length", np.int32),
    ("cap", np.int32),
])

STOCK_DTYPE = np.dtype([
    ("symbol", np.uint64),      # 8 ASCII bytes from R, little-endian (0 = no directory)
    ("volume", np.int64),
    ("notional", np.int64),     # sum of price * shares (raw Price(4) units)
    ("trades", np.int64),
    ("bid_shares", np.int64),   # cached top of book (0/0 when the side is empty)
    ("ask_shares", np.int64),
    ("bid_price", np.uint32),
    ("ask_price", np.uint32),
    ("trading_state", np.uint8),  # H: b'H', b'P', b'Q', b'T' (0 = not seen)
    ("record_bbo", np.uint8),
    ("record_trades", np.uint8),
    ("record_l2", np.uint8),
    ("pad", np.uint32),
])
assert STOCK_DTYPE.itemsize == 64  # one cache line a stock (the arrays start on a line)

# Symbols to record events for, asked by name before their stock directory message (R) came:
# rows sorted by symbol. An R naming one of them sets its locate's record_* flags from the
# row's bits, so a user can say what to record before the day's directory is read.
WANTED_DTYPE = np.dtype([
    ("symbol", np.uint64),      # as STOCK_DTYPE's
    ("flags", np.uint64),       # WANT_* bits
])
WANT_BBO, WANT_TRADES, WANT_L2 = 1, 2, 4
WANT_SEEN = 8    # set by the engine at the first R naming the symbol (renamed away later: not waiting)

# Event records (what the kernels append to the output buffers). The kernels write the
# one-byte codes as integers (``*_KERNEL_DTYPE``); users see the same bytes as ``S1``.
def _padded(fields, itemsize: int, text_codes: bool) -> np.dtype:
    names = [n for n, _ in fields]
    formats = [("S1" if (text_codes and f == "code") else (np.uint8 if f == "code" else f)) for _, f in fields]
    offsets, pos = [], 0
    for f in formats:
        offsets.append(pos)
        pos += np.dtype(f).itemsize
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})


_TRADE_FIELDS = [
    ("sequence", np.uint64),
    ("timestamp", np.int64),
    ("match_number", np.uint64),
    ("shares", np.uint64),
    ("price", np.uint32),
    ("stock_locate", np.uint16),
    ("kind", "code"),        # E (execution of an A/F order), C, P, Q; B = a break of an earlier trade
    ("printable", np.uint8),  # 1 when the trade counts in volume (C printable N -> 0); for B, the broken one did
    ("side", "code"),        # side of the resting order (E, C, P), b' ' for Q and B
]
_BBO_FIELDS = [
    ("sequence", np.uint64),
    ("timestamp", np.int64),
    ("bid_shares", np.int64),
    ("ask_shares", np.int64),
    ("bid_price", np.uint32),
    ("ask_price", np.uint32),
    ("stock_locate", np.uint16),
]
_L2_FIELDS = [
    ("sequence", np.uint64),
    ("timestamp", np.int64),
    ("shares", np.int64),    # the level's total after the change (0 = level gone)
    ("price", np.uint32),
    ("orders", np.uint32),
    ("stock_locate", np.uint16),
    ("side", "code"),
]
TRADE_KERNEL_DTYPE = _padded(_TRADE_FIELDS, 48, False)
BBO_KERNEL_DTYPE = _padded(_BBO_FIELDS, 48, False)
L2_KERNEL_DTYPE = _padded(_L2_FIELDS, 40, False)


def _named(fields, itemsize: int) -> np.dtype:
    """What users get: the kernel's record byte for byte (codes as S1), then ``symbol``: the
    stock's symbol when the event happened (S8, trailing spaces dropped; b"" before the
    locate's first R). A locate renamed mid-day names each event by the R in force at its
    place, whatever the slice or piece boundaries (the engine stops before such an R so the
    events before it are named first: NEED_LABELS)."""
    kernel = _padded(fields, itemsize, True)
    return np.dtype({"names": list(kernel.names) + ["symbol"],
                     "formats": [kernel.fields[n][0] for n in kernel.names] + ["S8"],
                     "offsets": [kernel.fields[n][1] for n in kernel.names] + [itemsize],
                     "itemsize": itemsize + 8})


TRADE_EVENT_DTYPE = _named(_TRADE_FIELDS, 48)
BBO_EVENT_DTYPE = _named(_BBO_FIELDS, 48)
L2_EVENT_DTYPE = _named(_L2_FIELDS, 40)

# Anomaly kinds: counted per stock locate (anomalies[locate, kind]) and never fatal.
ANOMALIES = (
    "unknown_reference",    # E/C/X/D/U on a reference that is not live
    "duplicate_add",        # A/F with a reference already live (the add is ignored)
    "over_execution",       # E/C for more shares than remain (the order is removed)
    "over_cancel",          # X for more shares than remain (the order is removed)
    "replace_to_existing",  # U whose new reference is already live (old removed, new not added)
    "unknown_locate",       # an add, a trade (P, Q) or a trading action (H) for a locate with no R,
                            # after R messages were seen
    "bad_side",             # A/F with a side that is neither B nor S (the add is ignored)
    "unknown_match",        # B for a match number never seen, or already broken
    "duplicate_match",      # a trade whose match number was already used (first one kept)
    "locate_mismatch",      # E/C/X/D/U whose header locate is not the order's stock
    "volume_overflow",      # a trade of over 2**32 - 1 shares (a Q's field is 8 bytes), or one that would
                            # take the stock's int64 volume or notional past 2**63 - 1: not counted in them
    "bad_printable",        # C whose printable flag is neither Y nor N (counted in volume: only N is not)
    "directory_conflict",   # R giving a locate that already has a symbol another one (the new one is kept)
    "zero_shares",          # A/F/U adding an order of 0 shares (kept live as sent: its level may show 0 shares),
                            # or an execution or trade (E/C/P) of 0 shares (recorded, not counted: no volume, no
                            # bar price); a cross (Q) of 0 shares is no anomaly: the spec's cross that did not happen
)
N_ANOMALIES = len(ANOMALIES)
(A_UNKNOWN_REF, A_DUP_ADD, A_OVER_EXEC, A_OVER_CANCEL, A_REPLACE_EXISTING, A_UNKNOWN_LOCATE,
 A_BAD_SIDE, A_UNKNOWN_MATCH, A_DUP_MATCH, A_LOCATE_MISMATCH, A_VOLUME_OVERFLOW, A_BAD_PRINTABLE,
 A_DIRECTORY_CONFLICT, A_ZERO_SHARES) = range(N_ANOMALIES)
# Counted from messages every shard of a day applies (R): one shard's count is the day's
# (ShardedBooks and the Dask day summary both follow this list).
BROADCAST_ANOMALIES = ("directory_conflict",)
BROADCAST_ANOMALY_INDEX = [ANOMALIES.index(k) for k in BROADCAST_ANOMALIES]

# ctl: int64 control words.
C_STAMP = 0           # the next add's priority stamp (starts at 1)
C_BACKWARDS = 1       # messages applied stamped earlier than the message applied before them
C_HASH_SEED = 2       # the secret every table's hash takes (uint64 bits; ``order_store.home_slot``)
C_LIVE = 3            # live orders
C_PEAK_LIVE = 4
C_TABLE_CAP = 5       # rows in the order table, a power of two
C_LEVEL_CAP = 6
C_LEVEL_TOP = 7
C_LEVEL_FREE = 8
C_LIVE_LEVELS = 9
C_ARENA_CAP = 10
C_ARENA_TOP = 11
C_MAX_LADDER = 12     # the largest segment capacity any book has (bounds one message's arena use)
C_MATCH_CAP = 13
C_MATCH_USED = 14
C_TRADES_CAP = 15     # output buffer capacities and fill counts
C_TRADES_N = 16
C_BBO_CAP = 17
C_BBO_N = 18
C_L2_CAP = 19
C_L2_N = 20
C_STOP_TS = 21        # stop before the first message with a timestamp above this (-1 = never)
C_DIRECTORY_SEEN = 22 # R messages seen so far
C_MESSAGES = 23       # messages applied in total
C_LAST_TS = 24        # timestamp of the last message applied
C_TRACK_MATCHES = 25  # 1: keep the match -> trade index (for B)
C_UNKNOWN_TYPES = 26  # messages of an unknown type (skipped by their length)
C_LEVEL_BUCKETS = 27  # buckets of the price -> level index the chains are built for (``level_index``)
C_FAR_TABLE = 28      # order tables of this many rows or more take the far look-ahead (0 = never)
C_LOG_CAP = 29        # rows in the trade log (``trade_log``)
C_LOG_N = 30          # rows used: trades appended in match-number order (the last holds the largest)
C_LABELLED = 31       # events (trades + BBO + L2) already named by the directory (``EventBuffers.label``)
# The kernel's look-ahead ring (scratch, meaningless between calls): the messages framed ahead
# of the one applied, so each is framed once. RING_SIZE entries each of body and end offset.
RING_SIZE = 16
C_RING_BODY = 32
C_RING_END = C_RING_BODY + RING_SIZE
C_RING_HOME = C_RING_END + RING_SIZE   # its order reference's home slot (hashed once, at parse)
N_CTL = C_RING_HOME + RING_SIZE

# Kernel status codes. Codes below ERR_FIRST are resumable: the message at `pos` has not been
# touched; the driver grows what is named and calls again from `pos`.
OK = 0
STOP_TIME = 1
NEED_TABLE = 3
NEED_LEVELS = 4
NEED_ARENA = 5
NEED_MATCHES = 6
NEED_TRADES_OUT = 7
NEED_BBO_OUT = 8
NEED_L2_OUT = 9
NEED_TRADE_LOG = 10
NEED_LABELS = 11      # an R would rename a locate while its events are not named yet (see engine)
ERR_FIRST = 16
ERR_TRUNCATED = 16
ERR_BAD_LENGTH = 17
ERR_ZERO_LENGTH = 18

# The engine's framing errors are BinaryFILE's, told in the same words (``binaryfile.describe``).
FRAMING_STATUS = {ERR_TRUNCATED: _framing.TRUNCATED, ERR_BAD_LENGTH: _framing.BAD_LENGTH,
                  ERR_ZERO_LENGTH: _framing.ZERO_LENGTH}


def error_text(buf, at: int, end: int, status: int, seq: int) -> str:
    """An engine error status at ``buf[at]`` (the message's length prefix) as text."""
    return f"{_framing.describe(buf, at, end, FRAMING_STATUS[status])} (message sequence {seq})"

# From this table size on (4 M rows, 128 MiB: about 1.5 M live orders) the working set is far
# beyond the caches and the engine's look-ahead prefetches more (``engine``: FAR_TABLE).
FAR_TABLE = 1 << 22

TABLE_MAX_LOAD_NUM = 3   # grow a table past 3/8 full: short probes (6 M orders still fit 16 M rows)
TABLE_MAX_LOAD_DEN = 8
MATCH_MAX_LOAD_NUM = 5   # the match index grows past 5/8 full (it is probed once a trade)
MATCH_MAX_LOAD_DEN = 8
