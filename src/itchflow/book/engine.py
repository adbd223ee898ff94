"""The compiled engine: BinaryFILE-framed ITCH bytes -> the books of every stock at once.

``apply_messages`` walks whole messages in ``buf[pos:end]`` and applies each to the state
arrays declared in ``layout``. The hot path per order message is one probe of the order
table (whose rows are the orders: one cache miss), for an add one level lookup (a few steps
down from the top of a shallow ladder, or the price index of a deep book: ``level_index``)
and the level's totals; time priority is the order's stamp, so no queue neighbour is touched.
Each message is framed once, by a look-ahead cursor whose stages prefetch what it will need;
when the working set is far beyond the caches (``layout.FAR_TABLE``) the stages also fetch the
level records, index buckets and ladder tops that a cached working set keeps for free.

Resumability: before a message is touched the kernel makes sure every resource it could
consume (an order table row, a level, ladder arena room, a match slot, an output
record) is available; if not, it returns a NEED_* status with ``pos`` at that message, the
Python driver grows what is named and calls again. Nothing is half-applied.

Semantics (DESIGN.md section 3): A/F add at the back of the level (F keeps its MPID); E/C
execute by reference wherever the order sits in the queue and remove it at zero; C with
printable N does not count in volume; X subtracts, D removes; U removes the old order and
adds a new reference with the given total shares and price, same side, stock and MPID, at
the back of its level; P and Q are trades that never touch the book; B breaks an earlier
trade by match number (its shares leave the volume). Books may be crossed or locked.
Inconsistencies are counted per kind and stock (``layout.ANOMALIES``) and never stop a run.

Why ``_nrt=False`` on the kernels: with Numba's reference counting on, every inlined helper
that takes an array increments and decrements its refcount (atomic ``lock`` instructions)
on each call; that was 40% of the time per message. The kernels allocate nothing, so they
are compiled without the runtime and the arrays are plain borrowed views.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book.layout import (
    A_BAD_SIDE, A_DUP_ADD, A_DUP_MATCH, A_LOCATE_MISMATCH, A_OVER_CANCEL, A_OVER_EXEC, A_VOLUME_OVERFLOW,
    A_BAD_PRINTABLE, A_DIRECTORY_CONFLICT, A_ZERO_SHARES,
    A_REPLACE_EXISTING, A_UNKNOWN_LOCATE, A_UNKNOWN_MATCH, A_UNKNOWN_REF, C_ARENA_CAP, C_ARENA_TOP,
    C_BACKWARDS, C_BBO_CAP, C_BBO_N, C_DIRECTORY_SEEN, C_FAR_TABLE, C_L2_CAP, C_L2_N, C_LABELLED, C_LAST_TS, C_LEVEL_CAP,
    C_LIVE,
    C_LIVE_LEVELS, C_LOG_CAP, C_LOG_N, C_MATCH_CAP, C_MATCH_USED, C_MAX_LADDER, C_MESSAGES,
    C_PEAK_LIVE, C_STAMP,
    C_HASH_SEED, C_STOP_TS, C_TABLE_CAP, C_TRACK_MATCHES, C_TRADES_CAP, C_TRADES_N, C_UNKNOWN_TYPES,
    ERR_BAD_LENGTH, ERR_TRUNCATED, ERR_ZERO_LENGTH, MATCH_BROKEN, MATCH_COUNTED, MATCH_MAX_LOAD_DEN,
    MATCH_MAX_LOAD_NUM, MATCH_W_KEY, MATCH_WORDS, NEED_ARENA, NEED_BBO_OUT, NEED_L2_OUT, NEED_LEVELS,
    NEED_LABELS, NEED_MATCHES, NEED_TABLE, NEED_TRADE_LOG, NEED_TRADES_OUT,
    C_RING_BODY, C_RING_END, C_RING_HOME, OK, ORDER_DTYPE, STAMP_SIDE_BIT, ORDER_WORDS, RING_SIZE, STOP_TIME, TABLE_MAX_LOAD_DEN,
    TABLE_MAX_LOAD_NUM, WANT_BBO, WANT_L2, WANT_SEEN, WANT_TRADES,
)
from itchflow.book.ladder import entry_level, get_level, remove_level
from itchflow.book.level_index import bucket_of, chain_head, ensure_index, indexed
from itchflow.book.match_index import (
    match_flags, match_locate, match_price, match_row, match_shares, match_used, put_match,
    set_match_flag,
)
from itchflow.book.order_store import delete_slot, find_slot, home_slot, probe, shift_for
from itchflow.book.trade_log import log_find
from itchflow.hw.endian import be16, be32, be48_from8, be64, le32, le64
from itchflow.hw.prefetch import element_address, prefetch, prefetch_address, read_ahead
from itchflow.wire import binaryfile as bf
from itchflow.wire.binaryfile import next_message
from itchflow.wire.itch import LENGTH_BY_BYTE, MESSAGES

_U = np.uint64
_INT64_MAX = np.int64((1 << 63) - 1)


def _off(code: str, name: str) -> int:
    return MESSAGES[code].field(name).offset


# Every offset from the message table (counted from the type byte).
_LOCATE = _off("A", "stock_locate")
_TS = _off("A", "timestamp")
_A_REF, _A_SIDE, _A_SHARES, _A_PRICE = (_off("A", f) for f in
                                        ("order_reference_number", "buy_sell_indicator", "shares", "price"))
_F_REF, _F_SIDE, _F_SHARES, _F_PRICE, _F_MPID = (_off("F", f) for f in (
    "order_reference_number", "buy_sell_indicator", "shares", "price", "attribution"))
_E_REF, _E_SHARES, _E_MATCH = (_off("E", f) for f in ("order_reference_number", "executed_shares", "match_number"))
_C_REF, _C_SHARES, _C_MATCH, _C_PRINTABLE, _C_PRICE = (_off("C", f) for f in (
    "order_reference_number", "executed_shares", "match_number", "printable", "execution_price"))
_X_REF, _X_SHARES = _off("X", "order_reference_number"), _off("X", "cancelled_shares")
_D_REF = _off("D", "order_reference_number")
_U_OLD, _U_NEW, _U_SHARES, _U_PRICE = (_off("U", f) for f in (
    "original_order_reference_number", "new_order_reference_number", "shares", "price"))
_P_SIDE, _P_SHARES, _P_PRICE, _P_MATCH = (_off("P", f) for f in ("buy_sell_indicator", "shares", "price", "match_number"))
_Q_SHARES, _Q_PRICE, _Q_MATCH = (_off("Q", f) for f in ("shares", "cross_price", "match_number"))
_B_MATCH = _off("B", "match_number")
_R_STOCK = _off("R", "stock")
_H_STATE = _off("H", "trading_state")
_LENGTHS = LENGTH_BY_BYTE

_BYTE_B = ord("B")
_BYTE_S = ord("S")
_BYTE_N = ord("N")
_BYTE_Y = ord("Y")
_BYTE_SPACE = ord(" ")
_KIND_E, _KIND_C, _KIND_P, _KIND_Q, _KIND_B = (ord(c) for c in "ECPQB")
_T_A, _T_F, _T_E, _T_C, _T_X, _T_D, _T_U, _T_P, _T_Q, _T_B, _T_R, _T_H = (ord(c) for c in "AFECXDUPQBRH")

# Message types that name an order reference at the same offset (A/F/E/C/X/D, U's original).
_REF_OFFSET = _A_REF
_HAS_REF = np.zeros(256, np.uint8)
for _c in "AFECXDU":
    _HAS_REF[ord(_c)] = 1
_HAS_REF.setflags(write=False)
# A buy/sell indicator's side is bit 4 of its byte: 'B' (0x42) -> 0, 'S' (0x53) -> 1.
_SIDE_BIT = 4
assert (ord("B") >> _SIDE_BIT) & 1 == 0 and (ord("S") >> _SIDE_BIT) & 1 == 1
_SIDE_BYTE_STEP = ord("S") - ord("B")
PREFETCH_ROW_AHEAD = 12       # messages ahead: prefetch the order's table row
PREFETCH_LEVEL_AHEAD = 4      # messages ahead: find that row (now cached), prefetch its level
PREFETCH_BUCKET_AHEAD = 8     # messages ahead (far look-ahead): an add to a deep book prefetches its index bucket
_RING_MASK = RING_SIZE - 1
_STAMP_SIDE_SHIFT = _U(STAMP_SIDE_BIT)
_ROWS_PER_LINE = 64 // ORDER_DTYPE.itemsize
assert PREFETCH_ROW_AHEAD < RING_SIZE and RING_SIZE & _RING_MASK == 0


@njit(inline="always", nogil=True, cache=True)
def _prefetch_top(books, b, ladder):
    """Prefetch the top of book b's ladder (where a level near the best is removed or found)."""
    n = np.int64(books[b].length)
    if n > 0:
        prefetch(ladder, books[b].start + n - 1)


@njit(inline="always", nogil=True, cache=True)
def _prefetch_second(books, b, ladder, levels):
    """Prefetch the level record second from the top of book b's ladder."""
    n = np.int64(books[b].length)
    if n > 1:
        prefetch(levels, entry_level(ladder[_U(books[b].start + n - 2)]))


@njit(inline="always", nogil=True, cache=True)
def _prefetch_u_buckets(buf, q, books, levels, seed, imask, ishift):
    """For a U at q: the index bucket of its new price in both books of its stock (the side is
    the replaced order's, not known this far ahead), where a book is indexed."""
    b = _U(be16(buf, q + _LOCATE)) * _U(2)
    price = be32(buf, q + _U_PRICE)
    for side in range(2):
        bs = b + _U(side)
        if indexed(books[bs].cap):
            prefetch(levels, bucket_of(bs, price, seed, imask, ishift))


@njit(inline="always", nogil=True, cache=True)
def _space_padded(symbol):
    """An R's symbol key with its trailing padding, any run of NULs and spaces, as the spaces
    the spec pads with: read() drops both, so the books list the name it gives, and a lookup
    by that name finds it (probes 38, 40). A name of NULs only stays 0, no name."""
    i = 7
    while i >= 0 and symbol != _U(0):
        b = (symbol >> _U(8 * i)) & _U(0xFF)
        if b != _U(0) and b != _U(0x20):
            break
        symbol |= _U(0x20) << _U(8 * i)
        i -= 1
    return symbol


@njit(inline="always", nogil=True, cache=True)
def _count_if_unnamed(locate, stocks, ctl, anomalies):
    """Count unknown_locate for a message on a locate no R named, once the day has R messages
    (an add, and a trade or halt, which changed the stock uncounted before: probe 31)."""
    if ctl[C_DIRECTORY_SEEN] > 0 and stocks[_U(locate)].symbol == 0:
        anomalies[locate, A_UNKNOWN_LOCATE] += 1


@njit(inline="always", nogil=True, cache=True)
def _pick(c, a, b):
    """a where c is 0, b where c is 1, without a branch (a mask: LLVM keeps it branch-free
    where a select or two compares were turned back into a branch)."""
    m = -np.int64(c)  # 0 or all ones
    return (np.int64(a) & ~m) | (np.int64(b) & m)


@njit(inline="always", nogil=True, cache=True)
def _by_side(side, bid, ask):
    """bid for side 0, ask for side 1, without a branch: an order's side is a coin toss to the
    branch predictor, and each of the engine's side tests mispredicted about half the time."""
    return _pick(side, bid, ask)


@njit(inline="always", nogil=True, cache=True)
def _side_of(side_byte):
    """(side 0/1, valid) of a buy/sell indicator, without a branch on which side it is: the
    side is a bit of the byte, and the byte is valid if it is that side's letter (one compare,
    so one branch on validity that always goes the same way). Written as a table lookup or
    two compares, LLVM turned it into a branch on 'S' (a coin toss: 0.22 mispredicts a
    message on the 8,000-stock day, callgrind)."""
    side = (np.int64(side_byte) >> _SIDE_BIT) & 1
    return side, np.int64(side_byte) == ord("B") + _SIDE_BYTE_STEP * side


# Message types the level stage treats as an add (their level is found by price, not by order).
_IS_ADD = np.zeros(256, np.uint8)
_IS_ADD[ord("A")] = 1
_IS_ADD[ord("F")] = 1
_IS_ADD.setflags(write=False)
# _prefetch_level_near reads an add's fields at offset 0 of the buffer for other messages:
# buffers shorter than this skip it.
_NEAR_READ_BYTES = _A_PRICE + 4


@njit(inline="always", nogil=True, cache=True)
def _prefetch_level_near(buf, q, t, home, orders, books, levels, ladder, seed, imask, ishift):
    """The level stage on a cached working set, for a message at q of type t that names an
    order reference: prefetch the order's level, or for an add its index bucket (deep book)
    or its ladder's top, with no branch on which. Whether a message is an add is a coin toss
    to the branch predictor (it mispredicted about 0.5 a message here).

    Both targets are computed and one is prefetched. An add's fields are read at q for an
    add and at offset 0 for any other message (in the buffer, meaningless, not used). The
    order's row is taken to be its home slot, with no probe loop: most live orders sit there
    (otherwise another order's level is prefetched, which is harmless; an empty row's is 0).
    Callgrind's branch model, 10 M-message days: 2.36 -> 1.38 mispredicts a message with 100
    stocks, 3.43 -> 2.37 with 8,000, for 23-30 more instructions (checking the next row too
    cost 22 more and gained nothing)."""
    add = np.int64(_IS_ADD[t])
    level_at = element_address(levels, orders[_U(home)].level)
    qa = _U(_pick(add, 0, q))
    side = (buf[qa + _U(_A_SIDE)] >> _SIDE_BIT) & 1
    b = _U(be16(buf, qa + _LOCATE)) * _U(2) + _U(side)
    bucket_at = element_address(levels, bucket_of(b, be32(buf, qa + _A_PRICE), seed, imask, ishift))
    top_at = element_address(ladder, np.int64(books[b].start) + np.int64(books[b].length) - 1)
    add_at = _pick(indexed(books[b].cap), top_at, bucket_at)
    prefetch_address(_pick(add, level_at, add_at))


@njit(inline="always", nogil=True, cache=True)
def _prefetch_level_far(buf, q, t, home, orders, order_words, books, levels, ladder, stocks, seed, mask, imask,
                        ishift):
    """The level stage on a working set far beyond the caches, for the message at q of type t:
    an add's index bucket has been prefetched (PREFETCH_BUCKET_AHEAD), so the first record of
    its chain and its ladder top (in case the price opens a level); an order's level, and in
    case the order empties it, its book's ladder top and index bucket (the side is in the
    stamp's top bit) and the level under the best. The branches cost less than what a miss
    on any of these costs here."""
    if t == _T_A or t == _T_F:
        book = _add_book(buf, q)
        if book >= 0:
            if indexed(books[_U(book)].cap):
                # (an empty bucket gives -1: a prefetch never faults, so no branch)
                prefetch(levels, chain_head(levels, bucket_of(book, be32(buf, q + _A_PRICE), seed, imask, ishift)))
            _prefetch_top(books, _U(book), ladder)
    elif _HAS_REF[t]:
        slot = probe(order_words, be64(buf, q + _REF_OFFSET), home, mask, ORDER_WORDS)
        if orders[_U(slot)].stamp != 0:
            prefetch(levels, orders[_U(slot)].level)
            locate = _U(be16(buf, q + _LOCATE))
            side = orders[_U(slot)].stamp >> _STAMP_SIDE_SHIFT
            book = locate * _U(2) + side
            _prefetch_top(books, book, ladder)
            price = orders[_U(slot)].price
            if indexed(books[book].cap):
                prefetch(levels, bucket_of(book, price, seed, imask, ishift))
            # an order at its side's best: the level under the best, which becomes the best if
            # this one empties (its ladder entry is usually cached)
            if price == (stocks[locate].bid_price if side == 0 else stocks[locate].ask_price):
                _prefetch_second(books, book, ladder, levels)
            if t == _T_U and indexed(books[book].cap):  # the replacement's level: same book,
                # new price; the first record of its bucket's chain
                prefetch(levels, chain_head(levels, bucket_of(book, be32(buf, q + _U_PRICE), seed, imask, ishift)))


@njit(inline="always", nogil=True, cache=True)
def _add_book(buf, q):
    """The book (locate * 2 + side) an A/F message at q adds to, -1 for a bad side."""
    side, valid = _side_of(buf[_U(q + _A_SIDE)])
    return np.int64(be16(buf, q + _LOCATE)) * 2 + side if valid else np.int64(-1)


@njit(inline="always", nogil=True, cache=True)
def _emit_l2(l2_out, ctl, seq, ts, locate, side, price, shares, count):
    n = ctl[C_L2_N]
    l2_out[_U(n)].sequence = seq
    l2_out[_U(n)].timestamp = ts
    l2_out[_U(n)].shares = shares
    l2_out[_U(n)].price = price
    l2_out[_U(n)].orders = count
    l2_out[_U(n)].stock_locate = locate
    l2_out[_U(n)].side = _BYTE_B if side == 0 else _BYTE_S
    ctl[C_L2_N] = n + 1


@njit(inline="always", nogil=True, cache=True)
def _is_best(locate, side, price, stocks):
    """Whether a live level at this price is its side's best: the cached BBO always holds the
    best level's price while the side has levels (prices are unique within a side)."""
    st = stocks[_U(locate)]
    return np.int64(price) == _by_side(side, st.bid_price, st.ask_price)


@njit(inline="always", nogil=True, cache=True)
def _bbo_check(locate, side, books, ladder, levels, stocks, bbo_out, ctl, seq, ts):
    """Refresh the stock's cached top of one side from its ladder; emit a BBO event if it changed."""
    b = locate * 2 + side
    n = books[_U(b)].length
    px = np.int64(0)
    sz = np.int64(0)
    if n > 0:
        lvl = entry_level(ladder[_U(books[_U(b)].start + n - 1)])
        px = levels[_U(lvl)].price
        sz = levels[_U(lvl)].shares
    _bbo_set(locate, side, px, sz, stocks, bbo_out, ctl, seq, ts)


@njit(inline="always", nogil=True, cache=True)
def _bbo_set(locate, side, px, sz, stocks, bbo_out, ctl, seq, ts):
    """Set the stock's cached top of one side; emit a BBO event if it changed. Callers skip
    this when the change cannot have touched the best level (saves the ladder and level reads)."""
    st = stocks[_U(locate)]
    if side == 0:
        if np.int64(st.bid_price) == px and st.bid_shares == sz:
            return
        st.bid_price = np.uint32(px)
        st.bid_shares = sz
    else:
        if np.int64(st.ask_price) == px and st.ask_shares == sz:
            return
        st.ask_price = np.uint32(px)
        st.ask_shares = sz
    if st.record_bbo:
        k = ctl[C_BBO_N]
        bbo_out[_U(k)].sequence = seq
        bbo_out[_U(k)].timestamp = ts
        bbo_out[_U(k)].bid_price = st.bid_price
        bbo_out[_U(k)].bid_shares = st.bid_shares
        bbo_out[_U(k)].ask_price = st.ask_price
        bbo_out[_U(k)].ask_shares = st.ask_shares
        bbo_out[_U(k)].stock_locate = locate
        ctl[C_BBO_N] = k + 1


@njit(inline="always", nogil=True, cache=True)
def _live_order(ref, home, locate, orders, order_words, levels, anomalies, mask):
    """The live order with this reference, for a message whose header names locate:
    (table row, level, its stock's locate, side), or row -1 (counted) when it is not live.
    An order of another stock than the header's is counted and still used."""
    slot = probe(order_words, ref, home, mask, ORDER_WORDS)
    if orders[_U(slot)].stamp == 0:
        anomalies[locate, A_UNKNOWN_REF] += 1
        return np.int64(-1), np.int32(0), np.int64(0), np.int32(0)
    lvl = orders[_U(slot)].level
    b = levels[_U(lvl)].book
    olocate = np.int64(b >> 1)
    if olocate != locate:
        anomalies[olocate, A_LOCATE_MISMATCH] += 1
    return slot, lvl, olocate, b & 1


@njit(nogil=True, cache=True, _nrt=False)
def _wanted_row(wanted, symbol):
    """The row of symbol in wanted (rows sorted by symbol), or -1."""
    lo = 0
    hi = len(wanted)
    while lo < hi:
        mid = (lo + hi) >> 1
        if wanted[mid].symbol < symbol:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < len(wanted) and wanted[lo].symbol == symbol else -1


@njit(nogil=True, cache=True, _nrt=False)
def _record_if_wanted(wanted, symbol, old, stocks, locate):
    """A stock directory message gave symbol the locate (which had the symbol old, 0 for
    none): if the symbol is wanted, its locate records what the row asks for; if not, and
    the locate recorded as the wanted old symbol, it stops (it is another stock now). Not
    inlined: the day's few R messages should not cost the hot loop any code."""
    row = _wanted_row(wanted, symbol)
    if row >= 0:
        flags = wanted[row].flags
        wanted[row].flags = flags | _U(WANT_SEEN)
    elif old != 0 and old != symbol and _wanted_row(wanted, old) >= 0:
        flags = _U(0)
    else:
        return
    stocks[_U(locate)].record_bbo = np.uint8(flags & _U(WANT_BBO) != 0)
    stocks[_U(locate)].record_trades = np.uint8(flags & _U(WANT_TRADES) != 0)
    stocks[_U(locate)].record_l2 = np.uint8(flags & _U(WANT_L2) != 0)


@njit(inline="always", nogil=True, cache=True)
def _add_order(ref, slot, locate, side, shares, price, mpid, orders, levels, ladder,
               books, stocks, l2_out, ctl, seq, ts, seed, imask, ishift):
    """Write a new order into its (empty) table row at the back of its level's queue: the
    next stamp. Returns (level, whether it is the side's best level)."""
    b = locate * 2 + side
    best = _by_side(side, stocks[_U(locate)].bid_price, stocks[_U(locate)].ask_price)
    lvl, top = get_level(b, side, price, best, books, ladder, levels, ctl, seed, imask, ishift)
    stamp = ctl[C_STAMP]
    ctl[C_STAMP] = stamp + 1
    row = orders[_U(slot)]
    row.ref = ref
    row.stamp = _U(stamp) | (_U(side) << _STAMP_SIDE_SHIFT)
    row.shares = shares
    row.price = price
    row.level = lvl
    row.mpid = mpid
    levels[_U(lvl)].count += 1
    levels[_U(lvl)].shares += shares
    live = ctl[C_LIVE] + 1
    ctl[C_LIVE] = live
    if live > ctl[C_PEAK_LIVE]:
        ctl[C_PEAK_LIVE] = live
    if stocks[_U(locate)].record_l2:
        _emit_l2(l2_out, ctl, seq, ts, locate, side, price, levels[_U(lvl)].shares, levels[_U(lvl)].count)
    return lvl, top


@njit(inline="always", nogil=True, cache=True)
def _remove_order(slot, seed, mask, shift, orders, order_words, levels, ladder, books, stocks,
                  l2_out, ctl, seq, ts, imask, ishift):
    """Take the order in this row off its level and out of the table (later rows of its
    cluster may shift back into the row). Returns what the side's cached BBO needs: 0 nothing,
    1 the (still live) level is the best, 2 the best level is gone (read the new best)."""
    lvl = orders[_U(slot)].level
    shares = levels[_U(lvl)].shares - orders[_U(slot)].shares
    levels[_U(lvl)].shares = shares
    count = levels[_U(lvl)].count - 1
    levels[_U(lvl)].count = count
    b = levels[_U(lvl)].book
    locate = b >> 1
    if stocks[_U(locate)].record_l2:
        _emit_l2(l2_out, ctl, seq, ts, locate, b & 1, levels[_U(lvl)].price, shares, count)
    refresh = 0
    if count == 0:
        if remove_level(lvl, books, ladder, levels, ctl, seed, imask, ishift):
            refresh = 2
    elif _is_best(locate, b & 1, levels[_U(lvl)].price, stocks):
        refresh = 1
    delete_slot(order_words, slot, seed, mask, shift, ORDER_WORDS)
    ctl[C_LIVE] -= 1
    return refresh


@njit(inline="always", nogil=True, cache=True)
def _reduce_order(slot, shares, orders, levels, stocks, l2_out, ctl, seq, ts):
    """Take shares (fewer than it has) off a live order; it keeps its place in the queue.
    Returns whether its level is the best (the BBO needs a refresh)."""
    lvl = orders[_U(slot)].level
    orders[_U(slot)].shares -= shares
    levels[_U(lvl)].shares -= shares
    b = levels[_U(lvl)].book
    locate = b >> 1
    if stocks[_U(locate)].record_l2:
        _emit_l2(l2_out, ctl, seq, ts, locate, b & 1, levels[_U(lvl)].price, levels[_U(lvl)].shares,
                 levels[_U(lvl)].count)
    return _is_best(locate, b & 1, levels[_U(lvl)].price, stocks)


@njit(inline="always", nogil=True, cache=True)
def _keep_trade(locate, price, shares, match, printable, trade_log, matches, seed, match_mask, match_shift,
                anomalies, ctl):
    """Keep a trade for a later B: appended to the trade log when its match number is the
    largest so far (the usual case: no hashing), else, unless it repeats one, put in the match
    index. The caller has made room in both."""
    flags = MATCH_COUNTED if printable else 0
    n = ctl[C_LOG_N]
    # the log's last row holds the largest number so far (written by the last append: cached)
    if n == 0 or _U(match) > trade_log[_U(n - 1) * _U(MATCH_WORDS) + _U(MATCH_W_KEY)]:
        put_match(trade_log, n * MATCH_WORDS, match, price, locate, flags, shares)
        ctl[C_LOG_N] = n + 1
        return
    if log_find(trade_log, n, match) >= 0:
        anomalies[locate, A_DUP_MATCH] += 1
        return
    i = match_row(matches, match, seed, match_mask, match_shift)
    if match_used(matches, i):
        anomalies[locate, A_DUP_MATCH] += 1
    else:
        put_match(matches, i, match, price, locate, flags, shares)
        ctl[C_MATCH_USED] += 1


@njit(inline="always", nogil=True, cache=True)
def _break_trade(kept, i, match, stocks, trades_out, ctl, seq, ts):
    """Break the kept trade at word index i of kept (the trade log or the match index): its
    shares leave the volume if they counted. Returns False if it was broken already."""
    flags = match_flags(kept, i)
    if (flags & _U(MATCH_BROKEN)) != 0:
        return False
    set_match_flag(kept, i, MATCH_BROKEN)
    shares = match_shares(kept, i)
    price = match_price(kept, i)
    tlocate = match_locate(kept, i)
    st = stocks[_U(tlocate)]
    if flags & _U(MATCH_COUNTED):
        st.volume -= np.int64(shares)
        st.notional -= np.int64(shares) * np.int64(price)
        st.trades -= 1
    if st.record_trades:
        _emit_trade(trades_out, ctl, seq, ts, match, shares, price, tlocate, _KIND_B,
                    (flags & _U(MATCH_COUNTED)) != 0, _BYTE_SPACE)
    return True


@njit(inline="always", nogil=True, cache=True)
def _record_trade(locate, price, shares, match, kind, printable, side, stocks, trade_log, matches, seed,
                  match_mask, match_shift, trades_out, anomalies, ctl, seq, ts):
    st = stocks[_U(locate)]
    counted = printable
    if shares == 0 and kind != _KIND_Q:   # no share traded: not a trade (its price made bars: probe 38);
        anomalies[locate, A_ZERO_SHARES] += 1   # a cross of 0 shares is the spec's "no cross" (real days
        counted = False                         # have them): as sent, no anomaly
    elif counted:
        # Past the first test, shares < 2**32 and price < 2**32: the product fits a uint64. Only
        # hostile sizes take the branch (a trade that would carry volume or notional past int64).
        if (_U(shares) > _U(0xFFFFFFFF) or _U(shares) * _U(price) > _U(_INT64_MAX - st.notional)
                or _U(shares) > _U(_INT64_MAX - st.volume)):
            anomalies[locate, A_VOLUME_OVERFLOW] += 1
            counted = False
        else:
            st.volume += np.int64(shares)
            st.notional += np.int64(shares) * np.int64(price)
            st.trades += 1
    if ctl[C_TRACK_MATCHES]:
        _keep_trade(locate, price, shares, match, counted, trade_log, matches, seed, match_mask, match_shift,
                    anomalies, ctl)
    if st.record_trades:
        _emit_trade(trades_out, ctl, seq, ts, match, shares, price, locate, kind, counted, side)


@njit(inline="always", nogil=True, cache=True)
def _emit_trade(trades_out, ctl, seq, ts, match, shares, price, locate, kind, printable, side):
    k = ctl[C_TRADES_N]
    trades_out[_U(k)].sequence = seq
    trades_out[_U(k)].timestamp = ts
    trades_out[_U(k)].match_number = match
    trades_out[_U(k)].shares = shares
    trades_out[_U(k)].price = price
    trades_out[_U(k)].stock_locate = locate
    trades_out[_U(k)].kind = kind
    trades_out[_U(k)].printable = 1 if printable else 0
    trades_out[_U(k)].side = side
    ctl[C_TRADES_N] = k + 1


@njit(inline="always", nogil=True, cache=True)
def _parse_one(buf, ppos, end, parsed, ctl, orders, stocks, books, seed, mask, shift):
    """The parse stage: frame and check the message at ppos (ppos < end), put its body and end
    offsets in look-ahead ring entry ``parsed``, and prefetch its order's table row and its
    stock's records. Returns (stopped, next ppos): stopped when it cannot be framed (the apply
    loop reports why when it gets there)."""
    walk, b1, length = next_message(buf, ppos, end)
    t1 = buf[_U(b1)] if walk == bf.OK else 0
    if walk != bf.OK or (_LENGTHS[t1] != 0 and _LENGTHS[t1] != length):
        return True, ppos
    read_ahead(buf, b1, end)
    r = _U(parsed & _RING_MASK)
    ctl[_U(C_RING_BODY) + r] = b1
    ppos = b1 + length
    ctl[_U(C_RING_END) + r] = ppos
    if _HAS_REF[t1]:  # a known type: its length was checked above
        h1 = _U(home_slot(be64(buf, b1 + _REF_OFFSET), seed, mask, shift))
        ctl[_U(C_RING_HOME) + r] = h1   # hashed once: the later stages probe from it
        prefetch(orders, h1)
        prefetch(orders, (h1 + _U(_ROWS_PER_LINE)) & _U(mask))  # a delete reads the rows after
        if t1 == _T_U:
            prefetch(orders, home_slot(be64(buf, b1 + _U_NEW), seed, mask, shift))
        loc1 = be16(buf, b1 + _LOCATE)
        prefetch(stocks, loc1)  # one line a stock
        prefetch(books, loc1 * _U(2))  # both sides' entries share a line
    return False, ppos


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see engine.py
def apply_messages(buf, pos, end, seq, orders, order_words, levels, ladder, books, stocks,
                   anomalies, trade_log, matches, trades_out, bbo_out, l2_out, ctl, type_counts, wanted):
    """Apply the whole messages in buf[pos:end]; seq is the first one's sequence number.

    ``orders`` is the order table and ``order_words`` the same memory as flat uint64 (see
    ``layout``); ``wanted`` the symbols to record by name (``layout.WANTED_DTYPE``). Returns (status, pos, seq): on OK pos == end; otherwise pos/seq name the
    message the kernel stopped at (not applied): STOP_TIME, a NEED_* resource, or an ERR_*
    format error.
    """
    budget = 0
    table_cap = ctl[C_TABLE_CAP]
    mask = table_cap - 1
    shift = shift_for(table_cap)
    seed = _U(ctl[C_HASH_SEED])  # every hash's secret (``order_store.home_slot``)
    stop_ts = ctl[C_STOP_TS]
    track_matches = ctl[C_TRACK_MATCHES] != 0
    match_mask = ctl[C_MATCH_CAP] - 1  # the match index only grows between calls: probe with these
    match_shift = shift_for(ctl[C_MATCH_CAP])
    imask, ishift = ensure_index(levels, books, ctl)  # price -> level (rebuilt if the levels grew)
    # A working set far beyond the caches (layout.FAR_TABLE): the level records, index buckets
    # and ladder tops are then rarely cached, and the look-ahead prefetches them too, at the
    # cost of more work a message than a cached working set repays.
    far = ctl[C_FAR_TABLE] > 0 and table_cap >= ctl[C_FAR_TABLE]
    seq0 = seq
    skipped = 0   # messages of unknown types among those taken (applied = done - skipped)
    last_ts = ctl[C_LAST_TS]
    backwards = 0   # time going back (a spliced day): counted in a register, stored once
    near = not far and buf.shape[0] >= _NEAR_READ_BYTES  # the near level stage (see _prefetch_level_near)
    status = OK
    # The look-ahead (see PREFETCH_*): every message is framed and validated once, by the
    # parse cursor ``ppos`` PREFETCH_ROW_AHEAD messages ahead of the one applied; its body and
    # end offsets go to a ring in ``ctl`` that the later stages read. At parse time it
    # prefetches the order's table row and the stock's records; PREFETCH_LEVEL_AHEAD messages
    # ahead, it reads the order's row (now cached) and prefetches its level, or an add's index
    # bucket or ladder top (``_prefetch_level_near``, ``_prefetch_level_far``). (Searching an
    # add's ladder ahead for its level as well measured slower: the search costs more than the
    # level's miss.) The parse cursor stops at a message it cannot frame; the apply loop
    # reports it when it gets there.
    parsed = 0    # messages framed so far (ring index parsed & _RING_MASK is the next free entry)
    done = 0      # messages taken by the apply loop
    ppos = pos
    pstop = False
    while parsed < PREFETCH_ROW_AHEAD and not pstop and ppos < end:  # fill the look-ahead
        pstop, ppos = _parse_one(buf, ppos, end, parsed, ctl, orders, stocks, books, seed, mask, shift)
        parsed += 0 if pstop else 1
    while pos < end:
        # one message framed for each one applied keeps the cursor PREFETCH_ROW_AHEAD ahead
        # (an unconditional step, not a loop that tests how far ahead it is)
        if not pstop and ppos < end:
            pstop, ppos = _parse_one(buf, ppos, end, parsed, ctl, orders, stocks, books, seed, mask, shift)
            parsed += 0 if pstop else 1
        if far and done + PREFETCH_BUCKET_AHEAD < parsed:
            # Far: an add's level is found through a bucket and a chain whose records are rarely
            # cached, so the bucket is prefetched here and the chain's first record at
            # PREFETCH_LEVEL_AHEAD.
            b3 = ctl[_U(C_RING_BODY) + _U((done + PREFETCH_BUCKET_AHEAD) & _RING_MASK)]
            t3 = buf[_U(b3)]
            if t3 == _T_A or t3 == _T_F:
                book3 = _add_book(buf, b3)
                if book3 >= 0 and indexed(books[_U(book3)].cap):
                    prefetch(levels, bucket_of(book3, be32(buf, b3 + _A_PRICE), seed, imask, ishift))
            elif t3 == _T_U:  # the replacement's level, on a side not known yet: both buckets
                _prefetch_u_buckets(buf, b3, books, levels, seed, imask, ishift)
        if done + PREFETCH_LEVEL_AHEAD < parsed:
            r2 = _U((done + PREFETCH_LEVEL_AHEAD) & _RING_MASK)
            b2 = ctl[_U(C_RING_BODY) + r2]
            t2 = buf[_U(b2)]
            if near and _HAS_REF[t2]:
                _prefetch_level_near(buf, b2, t2, ctl[_U(C_RING_HOME) + r2], orders, books, levels, ladder, seed,
                                     imask, ishift)
            elif far:
                _prefetch_level_far(buf, b2, t2, ctl[_U(C_RING_HOME) + r2], orders, order_words, books, levels, ladder,
                                    stocks, seed, mask, imask, ishift)
        if done == parsed:  # the parse cursor stopped here: report why
            walk, q, length = next_message(buf, pos, end)  # pos < end: never AT_END
            if walk != bf.OK:
                status = ERR_ZERO_LENGTH if walk == bf.ZERO_LENGTH else ERR_TRUNCATED
            else:
                status = ERR_BAD_LENGTH
            break
        r = _U(done & _RING_MASK)
        q = ctl[_U(C_RING_BODY) + r]
        nxt = ctl[_U(C_RING_END) + r]
        t = buf[_U(q)]
        expected = _LENGTHS[t]
        if expected == 0:  # unknown type: skipped by its length, counted
            type_counts[_U(t)] += 1
            ctl[C_UNKNOWN_TYPES] += 1
            pos = nxt
            done += 1
            skipped += 1
            continue
        seq = seq0 + _U(done)  # this message's sequence number
        ts = np.int64(be48_from8(buf, q + _TS))  # bytes q+3..q+10: inside the checked message
        if stop_ts >= 0 and ts > stop_ts:
            status = STOP_TIME
            break
        if budget <= 0:
            # every message uses at most one of each of these (two L2 events)
            budget = table_cap * TABLE_MAX_LOAD_NUM // TABLE_MAX_LOAD_DEN - ctl[C_LIVE]
            if budget <= 0:
                status = NEED_TABLE
                break
            room = ctl[C_LEVEL_CAP] - ctl[C_LIVE_LEVELS]
            if room <= 0:
                status = NEED_LEVELS
                break
            budget = min(budget, room)
            if ctl[C_TRACK_MATCHES]:
                room = ctl[C_MATCH_CAP] * MATCH_MAX_LOAD_NUM // MATCH_MAX_LOAD_DEN - ctl[C_MATCH_USED]
                if room <= 0:
                    status = NEED_MATCHES
                    break
                budget = min(budget, room)
                room = ctl[C_LOG_CAP] - ctl[C_LOG_N]
                if room <= 0:
                    status = NEED_TRADE_LOG
                    break
                budget = min(budget, room)
            room = ctl[C_TRADES_CAP] - ctl[C_TRADES_N]
            if room <= 0:
                status = NEED_TRADES_OUT
                break
            budget = min(budget, room)
            room = ctl[C_BBO_CAP] - ctl[C_BBO_N]
            if room <= 0:
                status = NEED_BBO_OUT
                break
            budget = min(budget, room)
            room = (ctl[C_L2_CAP] - ctl[C_L2_N]) // 2
            if room <= 0:
                status = NEED_L2_OUT
                break
            budget = min(budget, room)
        # one message grows at most one ladder, to at most twice the largest segment
        if ctl[C_ARENA_TOP] + 2 * ctl[C_MAX_LADDER] + 16 > ctl[C_ARENA_CAP]:
            status = NEED_ARENA
            break
        budget -= 1
        locate = np.int64(be16(buf, q + _LOCATE))
        type_counts[_U(t)] += 1

        if t == _T_A or t == _T_F:
            if t == _T_A:
                ref = be64(buf, q + _A_REF)
                side_byte = buf[_U(q + _A_SIDE)]
                shares = np.uint32(be32(buf, q + _A_SHARES))
                price = np.uint32(be32(buf, q + _A_PRICE))
                mpid = np.uint32(0)
            else:
                ref = be64(buf, q + _F_REF)
                side_byte = buf[_U(q + _F_SIDE)]
                shares = np.uint32(be32(buf, q + _F_SHARES))
                price = np.uint32(be32(buf, q + _F_PRICE))
                mpid = np.uint32(le32(buf, q + _F_MPID))
            side, valid = _side_of(side_byte)
            if not valid:
                anomalies[locate, A_BAD_SIDE] += 1
            else:
                _count_if_unnamed(locate, stocks, ctl, anomalies)
                slot = probe(order_words, ref, ctl[_U(C_RING_HOME) + r], mask, ORDER_WORDS)
                if orders[_U(slot)].stamp != 0:
                    anomalies[locate, A_DUP_ADD] += 1
                else:
                    if shares == 0:
                        anomalies[locate, A_ZERO_SHARES] += 1
                    lvl, top = _add_order(ref, slot, locate, side, shares, price, mpid, orders, levels,
                                          ladder, books, stocks, l2_out, ctl, seq, ts, seed, imask, ishift)
                    if top:  # a level below the best leaves the BBO as it is
                        _bbo_set(locate, side, levels[_U(lvl)].price, levels[_U(lvl)].shares, stocks,
                                 bbo_out, ctl, seq, ts)

        elif t == _T_D or t == _T_X or t == _T_E or t == _T_C:
            # same reference offset in D, X, E and C (asserted below)
            slot, lvl, olocate, side = _live_order(be64(buf, q + _D_REF), ctl[_U(C_RING_HOME) + r], locate,
                                                   orders, order_words, levels, anomalies, mask)
            if slot >= 0:
                remaining = orders[_U(slot)].shares
                if t == _T_D:
                    take = remaining
                elif t == _T_X:
                    take = np.uint32(be32(buf, q + _X_SHARES))
                    if take > remaining:
                        anomalies[olocate, A_OVER_CANCEL] += 1
                else:
                    if t == _T_E:
                        take = np.uint32(be32(buf, q + _E_SHARES))
                        match = be64(buf, q + _E_MATCH)
                        price = orders[_U(slot)].price
                        printable = True
                        kind = _KIND_E
                    else:
                        take = np.uint32(be32(buf, q + _C_SHARES))
                        match = be64(buf, q + _C_MATCH)
                        price = np.uint32(be32(buf, q + _C_PRICE))
                        flag = buf[_U(q + _C_PRINTABLE)]
                        printable = flag != _BYTE_N
                        if printable and flag != _BYTE_Y:
                            anomalies[olocate, A_BAD_PRINTABLE] += 1
                        kind = _KIND_C
                    if take > remaining:
                        anomalies[olocate, A_OVER_EXEC] += 1
                    _record_trade(olocate, price, _U(take), match, kind, printable,
                                  _BYTE_B if side == 0 else _BYTE_S, stocks, trade_log, matches, seed,
                                  match_mask, match_shift, trades_out, anomalies, ctl, seq, ts)
                if take >= remaining:
                    refresh = _remove_order(slot, seed, mask, shift, orders, order_words, levels, ladder,
                                            books, stocks, l2_out, ctl, seq, ts, imask, ishift)
                else:
                    refresh = 1 if _reduce_order(slot, take, orders, levels, stocks, l2_out, ctl, seq, ts) else 0
                if refresh == 1:
                    _bbo_set(olocate, side, levels[_U(lvl)].price, levels[_U(lvl)].shares, stocks, bbo_out,
                             ctl, seq, ts)
                elif refresh == 2:
                    _bbo_check(olocate, side, books, ladder, levels, stocks, bbo_out, ctl, seq, ts)

        elif t == _T_U:
            slot, lvl, olocate, side = _live_order(be64(buf, q + _U_OLD), ctl[_U(C_RING_HOME) + r], locate,
                                                   orders, order_words, levels, anomalies, mask)
            if slot >= 0:
                mpid = orders[_U(slot)].mpid
                refresh = _remove_order(slot, seed, mask, shift, orders, order_words, levels, ladder,
                                        books, stocks, l2_out, ctl, seq, ts, imask, ishift)
                new = be64(buf, q + _U_NEW)
                slot = find_slot(order_words, new, seed, mask, shift, ORDER_WORDS)  # after the delete's shifts
                top = False
                if orders[_U(slot)].stamp != 0:
                    anomalies[olocate, A_REPLACE_EXISTING] += 1
                else:
                    shares = np.uint32(be32(buf, q + _U_SHARES))
                    if shares == 0:
                        anomalies[olocate, A_ZERO_SHARES] += 1
                    lvl, top = _add_order(new, slot, olocate, side, shares,
                                          np.uint32(be32(buf, q + _U_PRICE)), mpid, orders, levels,
                                          ladder, books, stocks, l2_out, ctl, seq, ts, seed, imask, ishift)
                if top:
                    _bbo_set(olocate, side, levels[_U(lvl)].price, levels[_U(lvl)].shares, stocks, bbo_out,
                             ctl, seq, ts)
                elif refresh != 0:  # the old order's level was the best: the best may have moved
                    _bbo_check(olocate, side, books, ladder, levels, stocks, bbo_out, ctl, seq, ts)

        elif t == _T_P:
            side_byte = buf[_U(q + _P_SIDE)]
            _count_if_unnamed(locate, stocks, ctl, anomalies)
            _record_trade(locate, np.uint32(be32(buf, q + _P_PRICE)), _U(be32(buf, q + _P_SHARES)),
                          be64(buf, q + _P_MATCH), _KIND_P, True, side_byte, stocks, trade_log, matches,
                          seed, match_mask, match_shift, trades_out, anomalies, ctl, seq, ts)

        elif t == _T_Q:
            _count_if_unnamed(locate, stocks, ctl, anomalies)
            _record_trade(locate, np.uint32(be32(buf, q + _Q_PRICE)), be64(buf, q + _Q_SHARES),
                          be64(buf, q + _Q_MATCH), _KIND_Q, True, _BYTE_SPACE, stocks, trade_log, matches,
                          seed, match_mask, match_shift, trades_out, anomalies, ctl, seq, ts)

        elif t == _T_B:
            match = be64(buf, q + _B_MATCH)
            found = False
            if track_matches:
                i = log_find(trade_log, ctl[C_LOG_N], match)
                if i >= 0:
                    found = _break_trade(trade_log, i, match, stocks, trades_out, ctl, seq, ts)
                else:
                    i = match_row(matches, match, seed, match_mask, match_shift)
                    if match_used(matches, i):
                        found = _break_trade(matches, i, match, stocks, trades_out, ctl, seq, ts)
            if not found:
                anomalies[locate, A_UNKNOWN_MATCH] += 1

        elif t == _T_R:
            symbol = _space_padded(le64(buf, q + _R_STOCK))
            if stocks[_U(locate)].symbol != symbol:
                if ctl[C_TRADES_N] + ctl[C_BBO_N] + ctl[C_L2_N] > ctl[C_LABELLED]:
                    # Events are named by the symbol in force where they happened: the driver
                    # names those recorded so far before this R renames the locate (a rare
                    # stop: a day's R messages come before its orders).
                    type_counts[_U(t)] -= 1
                    status = NEED_LABELS
                    break
                if stocks[_U(locate)].symbol != 0:
                    anomalies[locate, A_DIRECTORY_CONFLICT] += 1
            old = stocks[_U(locate)].symbol
            stocks[_U(locate)].symbol = symbol
            ctl[C_DIRECTORY_SEEN] += 1
            if len(wanted) > 0:
                _record_if_wanted(wanted, symbol, old, stocks, locate)

        elif t == _T_H:
            _count_if_unnamed(locate, stocks, ctl, anomalies)
            stocks[_U(locate)].trading_state = buf[_U(q + _H_STATE)]

        backwards += ts < last_ts
        last_ts = ts
        pos = nxt
        done += 1
    ctl[C_MESSAGES] += done - skipped  # counted in registers in the loop, stored once
    ctl[C_BACKWARDS] += backwards
    ctl[C_LAST_TS] = last_ts
    return status, pos, seq0 + _U(done)


assert _E_REF == _C_REF == _X_REF == _D_REF == _A_REF == _F_REF == _U_OLD, "one order reference offset"
assert _A_SIDE == _F_SIDE and _A_PRICE == _F_PRICE, "A and F share the side and price offsets"
