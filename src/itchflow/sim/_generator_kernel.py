"""The compiled state machine behind ``itchflow.sim.generator``: one ITCH message per step.

Everything the generator knows lives in numpy arrays (``g`` holds the scalars, named by the
``G_*`` indices below), so ``run`` can stop at any message boundary when its output buffer
is full and carry on later from exactly where it was: the bytes of a day do not depend on
how it is cut into chunks. Randomness is a xoshiro256** stream kept in ``rng``.

Every wire offset and width is read from ``spec.MESSAGES`` at import (``_o``/``_n``).

The book model: per stock and side, a ladder of ``W`` price ticks (``lv_head``/``lv_tail``
hold the FIFO queue ends of each level, orders link through ``o_prev``/``o_next``); the best
bid is the highest non-empty bid tick, the best ask the lowest non-empty ask tick. Live
orders also sit in a dense list (``live``) so a random live order is one draw away.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from itchflow.wire.itch import MESSAGES


def _o(code: str, name: str) -> int:
    return MESSAGES[code].field(name).offset


def _n(code: str, name: str) -> int:
    return MESSAGES[code].field(name).size


def _len(code: str) -> int:
    return MESSAGES[code].length


# --- wire layout constants, derived from the table -------------------------------------
HDR_TYPE = _o("S", "message_type")
HDR_LOCATE, HDR_LOCATE_N = _o("S", "stock_locate"), _n("S", "stock_locate")
HDR_TRACK, HDR_TRACK_N = _o("S", "tracking_number"), _n("S", "tracking_number")
HDR_TS, HDR_TS_N = _o("S", "timestamp"), _n("S", "timestamp")
FRAME = 2  # BinaryFILE length prefix
MAX_FRAMED = FRAME + max(m.length for m in MESSAGES.values())

TY_S, LN_S = ord("S"), _len("S")
S_EVENT = _o("S", "event_code")

TY_A, LN_A = ord("A"), _len("A")
A_REF, A_REF_N = _o("A", "order_reference_number"), _n("A", "order_reference_number")
A_SIDE = _o("A", "buy_sell_indicator")
A_SHARES, A_SHARES_N = _o("A", "shares"), _n("A", "shares")
A_STOCK, A_STOCK_N = _o("A", "stock"), _n("A", "stock")
A_PRICE, A_PRICE_N = _o("A", "price"), _n("A", "price")

TY_F, LN_F = ord("F"), _len("F")
F_REF, F_SIDE, F_SHARES = _o("F", "order_reference_number"), _o("F", "buy_sell_indicator"), _o("F", "shares")
F_STOCK, F_PRICE = _o("F", "stock"), _o("F", "price")
F_ATTR, F_ATTR_N = _o("F", "attribution"), _n("F", "attribution")

TY_E, LN_E = ord("E"), _len("E")
E_REF, E_SHARES = _o("E", "order_reference_number"), _o("E", "executed_shares")
E_SHARES_N = _n("E", "executed_shares")
E_MATCH, E_MATCH_N = _o("E", "match_number"), _n("E", "match_number")

TY_C, LN_C = ord("C"), _len("C")
C_REF, C_SHARES, C_MATCH = _o("C", "order_reference_number"), _o("C", "executed_shares"), _o("C", "match_number")
C_PRINTABLE, C_PRICE = _o("C", "printable"), _o("C", "execution_price")
C_PRICE_N = _n("C", "execution_price")

TY_X, LN_X = ord("X"), _len("X")
X_REF, X_SHARES = _o("X", "order_reference_number"), _o("X", "cancelled_shares")
X_SHARES_N = _n("X", "cancelled_shares")

TY_D, LN_D = ord("D"), _len("D")
D_REF = _o("D", "order_reference_number")

TY_U, LN_U = ord("U"), _len("U")
U_OLD, U_NEW = _o("U", "original_order_reference_number"), _o("U", "new_order_reference_number")
U_REF_N = _n("U", "new_order_reference_number")
U_SHARES, U_SHARES_N = _o("U", "shares"), _n("U", "shares")
U_PRICE, U_PRICE_N = _o("U", "price"), _n("U", "price")

TY_P, LN_P = ord("P"), _len("P")
P_REF, P_SIDE, P_SHARES = _o("P", "order_reference_number"), _o("P", "buy_sell_indicator"), _o("P", "shares")
P_SHARES_N = _n("P", "shares")
P_STOCK, P_PRICE, P_MATCH = _o("P", "stock"), _o("P", "price"), _o("P", "match_number")
P_PRICE_N, P_MATCH_N = _n("P", "price"), _n("P", "match_number")

TY_Q, LN_Q = ord("Q"), _len("Q")
Q_SHARES, Q_SHARES_N = _o("Q", "shares"), _n("Q", "shares")
Q_STOCK, Q_PRICE, Q_PRICE_N = _o("Q", "stock"), _o("Q", "cross_price"), _n("Q", "cross_price")
Q_MATCH, Q_MATCH_N, Q_TYPE = _o("Q", "match_number"), _n("Q", "match_number"), _o("Q", "cross_type")

TY_B, LN_B = ord("B"), _len("B")
B_MATCH, B_MATCH_N = _o("B", "match_number"), _n("B", "match_number")

TY_I, LN_I = ord("I"), _len("I")
I_PAIRED, I_PAIRED_N = _o("I", "paired_shares"), _n("I", "paired_shares")
I_IMB, I_IMB_N = _o("I", "imbalance_shares"), _n("I", "imbalance_shares")
I_DIR, I_STOCK = _o("I", "imbalance_direction"), _o("I", "stock")
I_FAR, I_NEAR, I_REFP = _o("I", "far_price"), _o("I", "near_price"), _o("I", "current_reference_price")
I_PRICE_N = _n("I", "far_price")
I_CROSS, I_VAR = _o("I", "cross_type"), _o("I", "price_variation_indicator")

TY_L, LN_L = ord("L"), _len("L")
L_MPID, L_MPID_N, L_STOCK = _o("L", "mpid"), _n("L", "mpid"), _o("L", "stock")
L_PRIMARY, L_MODE, L_STATE = (_o("L", "primary_market_maker"), _o("L", "market_maker_mode"),
                              _o("L", "market_participant_state"))

TY_H, LN_H = ord("H"), _len("H")
H_STOCK, H_STATE, H_RESERVED = _o("H", "stock"), _o("H", "trading_state"), _o("H", "reserved")
H_REASON, H_REASON_N = _o("H", "reason"), _n("H", "reason")

TY_J, LN_J = ord("J"), _len("J")
J_STOCK, J_REFP = _o("J", "stock"), _o("J", "auction_collar_reference_price")
J_UP, J_LOW = _o("J", "upper_auction_collar_price"), _o("J", "lower_auction_collar_price")
J_PRICE_N = _n("J", "auction_collar_reference_price")
J_EXT, J_EXT_N = _o("J", "auction_collar_extension"), _n("J", "auction_collar_extension")

SYMBOL_N = A_STOCK_N
# Every stock field is the same 8-byte alpha, so one symbol row serves them all.
assert all(MESSAGES[c].field("stock").size == SYMBOL_N for c in "AFPQILHJRY")
assert F_ATTR_N == L_MPID_N

# --- scalar state (indices into g) -------------------------------------------------------
G_N = 0            # messages wanted
G_K = 1            # stocks (locates 1..K)
G_W = 2            # ticks per price ladder
G_EMITTED = 3
G_DONE = 4
G_PHASE = 5
G_PH_STARTED = 6
G_PH_LEFT = 7      # messages left in the current flow phase
G_T = 8            # clock, ns since midnight
G_MATCH = 9        # last match number used
G_LIVE = 10        # live orders
G_FREE = 11        # head of the free slot list
G_CAP = 12         # order slots
G_TARGET_LIVE = 13
G_CLOSE_ALL = 14
G_PEND = 15        # pending multi-message event: 0 none, 1 sweep, 2 second half of a cross pair
G_PEND_STOCK = 16
G_PEND_SIDE = 17
G_PEND_LEFT = 18
G_PEND_SLOT = 19
G_PEND_Q = 20
G_X_STOCK = 21     # cross phase: stock being crossed
G_X_STAGE = 22
G_X_PRICE = 23     # cross price tick
G_X_SHARES = 24
G_X_LEFT = 25
G_X_SIDE = 26
G_HALT_STOCK = 27
G_HALT_STAGE = 28
G_HALT_DUE = 29
G_NOII_NEXT = 30
G_ADMIN_I = 31
G_MRING_N = 32     # match numbers kept for B
G_NONHEAD = 33     # executions that did not hit the head of the queue (for the summary)
G_EX0 = 40         # extras left in this phase, one per EX_* kind
G_SIZE = 64

EX_I, EX_L, EX_P, EX_C, EX_B, EX_HALT = 0, 1, 2, 3, 4, 5
N_EXTRA = 6

# Phase kinds.
PH_SYS, PH_ADMIN, PH_FLOW, PH_CROSS, PH_END = 0, 1, 2, 3, 4
# ph_arg bits for flow phases
FL_ALLOW_CROSS = 1
FL_LAST = 2
# flow_p: cumulative probabilities of the order-flow actions
FP_A, FP_F, FP_D, FP_U, FP_X, FP_E = 0, 1, 2, 3, 4, 5
N_FLOW = 6

BUY, SELL = 0, 1
NONHEAD_P = 0.002      # chance an execution takes the order behind the head
FULL_EXEC_P = 0.7      # chance an execution fills the whole order
SWEEP_P = 0.12         # chance an execution event goes on to further orders
SWEEP_MORE = 0.55      # chance a sweep continues after each further order
MRING = 4096
PREOPEN_CROSS_P = 0.01  # chance a pre-open order is priced through the other side

_U64 = np.uint64


# --- random numbers: xoshiro256** ------------------------------------------------------------
@njit(nogil=True, cache=True)
def _rotl(x, k):
    return (x << _U64(k)) | (x >> _U64(64 - k))


@njit(nogil=True, cache=True)
def _next(rng):
    s0, s1, s2, s3 = rng[0], rng[1], rng[2], rng[3]
    result = _rotl(s1 * _U64(5), 7) * _U64(9)
    t = s1 << _U64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    rng[0], rng[1], rng[2], rng[3] = s0, s1, s2, s3
    return result


@njit(nogil=True, cache=True)
def _u01(rng):
    return np.float64(_next(rng) >> _U64(11)) * (1.0 / 9007199254740992.0)


@njit(nogil=True, cache=True)
def _ri(rng, n):
    """Uniform integer in [0, n)."""
    return np.int64(_u01(rng) * n)


@njit(nogil=True, cache=True)
def _zipf_stock(rng, cdf):
    u = _u01(rng)
    lo, hi = 0, len(cdf) - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo + 1


@njit(nogil=True, cache=True)
def _size(rng, mul):
    """Order size: odd lots, a round lot most often, multiples of 100, rare blocks."""
    u = _u01(rng)
    if u < 0.22:
        v = 1 + _ri(rng, 99)
    elif u < 0.70:
        v = 100
    elif u < 0.93:
        v = 100 * (2 + _ri(rng, 9))
    elif u < 0.995:
        v = 100 * (10 + _ri(rng, 91))
    else:
        v = 100 * (100 + _ri(rng, 400))
    return v * mul


@njit(nogil=True, cache=True)
def _depth(rng, w):
    """Ticks behind the touch for a passive order."""
    u = _u01(rng)
    if u < 0.3:
        return 0
    if u < 0.8:
        return 1 + _ri(rng, 4)
    if u < 0.96:
        return 5 + _ri(rng, 26)
    return 31 + _ri(rng, w // 8)


@njit(nogil=True, cache=True)
def _new_ref(rng, refctr):
    """A fresh order reference: one of several interleaved ranges, with occasional jumps."""
    u = _u01(rng)
    k = 0
    if u >= 0.5:
        k = 1 + _ri(rng, len(refctr) - 1)
    step = 1
    if _u01(rng) < 0.01:
        step += _ri(rng, 5000)
    refctr[k] += step
    return refctr[k]


# --- writing -------------------------------------------------------------------------------
@njit(nogil=True, cache=True)
def _wbe(out, p, v, n):
    for i in range(n):
        out[p + n - 1 - i] = (v >> (8 * i)) & 0xFF


@njit(nogil=True, cache=True)
def _wcopy(out, p, src, n):
    for i in range(n):
        out[p + i] = src[i]


@njit(nogil=True, cache=True)
def _hdr(out, p, g, counts, code, length, locate, track, ts):
    """Length prefix and common header; returns the offset of the type byte."""
    _wbe(out, p, length, FRAME)
    q = p + FRAME
    out[q + HDR_TYPE] = code
    _wbe(out, q + HDR_LOCATE, locate, HDR_LOCATE_N)
    _wbe(out, q + HDR_TRACK, track, HDR_TRACK_N)
    _wbe(out, q + HDR_TS, ts, HDR_TS_N)
    counts[code] += 1
    g[G_EMITTED] += 1
    return q


@njit(nogil=True, cache=True)
def _side_byte(side):
    return 66 if side == BUY else 83  # 'B' / 'S'


@njit(nogil=True, cache=True)
def _raw(st_base, st_tick, s, tick):
    return st_base[s] + tick * st_tick[s]


@njit(nogil=True, cache=True)
def _w_sys(out, p, g, counts, ts, code):
    q = _hdr(out, p, g, counts, TY_S, LN_S, 0, 0, ts)
    out[q + S_EVENT] = code
    return p + FRAME + LN_S


@njit(nogil=True, cache=True)
def _w_add(out, p, g, counts, s, track, ts, ref, side, shares, sym, price, mpid, with_mpid):
    if with_mpid:
        q = _hdr(out, p, g, counts, TY_F, LN_F, s, track, ts)
        _wbe(out, q + F_REF, ref, A_REF_N)
        out[q + F_SIDE] = _side_byte(side)
        _wbe(out, q + F_SHARES, shares, A_SHARES_N)
        _wcopy(out, q + F_STOCK, sym, SYMBOL_N)
        _wbe(out, q + F_PRICE, price, A_PRICE_N)
        _wcopy(out, q + F_ATTR, mpid, F_ATTR_N)
        return p + FRAME + LN_F
    q = _hdr(out, p, g, counts, TY_A, LN_A, s, track, ts)
    _wbe(out, q + A_REF, ref, A_REF_N)
    out[q + A_SIDE] = _side_byte(side)
    _wbe(out, q + A_SHARES, shares, A_SHARES_N)
    _wcopy(out, q + A_STOCK, sym, SYMBOL_N)
    _wbe(out, q + A_PRICE, price, A_PRICE_N)
    return p + FRAME + LN_A


@njit(nogil=True, cache=True)
def _w_exec(out, p, g, counts, s, track, ts, ref, shares, match, with_price, printable, price):
    if with_price:
        q = _hdr(out, p, g, counts, TY_C, LN_C, s, track, ts)
        _wbe(out, q + C_REF, ref, A_REF_N)
        _wbe(out, q + C_SHARES, shares, E_SHARES_N)
        _wbe(out, q + C_MATCH, match, E_MATCH_N)
        out[q + C_PRINTABLE] = printable
        _wbe(out, q + C_PRICE, price, C_PRICE_N)
        return p + FRAME + LN_C
    q = _hdr(out, p, g, counts, TY_E, LN_E, s, track, ts)
    _wbe(out, q + E_REF, ref, A_REF_N)
    _wbe(out, q + E_SHARES, shares, E_SHARES_N)
    _wbe(out, q + E_MATCH, match, E_MATCH_N)
    return p + FRAME + LN_E


@njit(nogil=True, cache=True)
def _w_cancel(out, p, g, counts, s, track, ts, ref, shares):
    q = _hdr(out, p, g, counts, TY_X, LN_X, s, track, ts)
    _wbe(out, q + X_REF, ref, A_REF_N)
    _wbe(out, q + X_SHARES, shares, X_SHARES_N)
    return p + FRAME + LN_X


@njit(nogil=True, cache=True)
def _w_delete(out, p, g, counts, s, track, ts, ref):
    q = _hdr(out, p, g, counts, TY_D, LN_D, s, track, ts)
    _wbe(out, q + D_REF, ref, A_REF_N)
    return p + FRAME + LN_D


@njit(nogil=True, cache=True)
def _w_replace(out, p, g, counts, s, track, ts, old, new, shares, price):
    q = _hdr(out, p, g, counts, TY_U, LN_U, s, track, ts)
    _wbe(out, q + U_OLD, old, U_REF_N)
    _wbe(out, q + U_NEW, new, U_REF_N)
    _wbe(out, q + U_SHARES, shares, U_SHARES_N)
    _wbe(out, q + U_PRICE, price, U_PRICE_N)
    return p + FRAME + LN_U


@njit(nogil=True, cache=True)
def _w_trade(out, p, g, counts, s, track, ts, side, shares, sym, price, match):
    q = _hdr(out, p, g, counts, TY_P, LN_P, s, track, ts)
    _wbe(out, q + P_REF, 0, A_REF_N)  # hidden orders: Nasdaq sends reference 0
    out[q + P_SIDE] = _side_byte(side)
    _wbe(out, q + P_SHARES, shares, P_SHARES_N)
    _wcopy(out, q + P_STOCK, sym, SYMBOL_N)
    _wbe(out, q + P_PRICE, price, P_PRICE_N)
    _wbe(out, q + P_MATCH, match, P_MATCH_N)
    return p + FRAME + LN_P


@njit(nogil=True, cache=True)
def _w_cross(out, p, g, counts, s, track, ts, shares, sym, price, match, cross_type):
    q = _hdr(out, p, g, counts, TY_Q, LN_Q, s, track, ts)
    _wbe(out, q + Q_SHARES, shares, Q_SHARES_N)
    _wcopy(out, q + Q_STOCK, sym, SYMBOL_N)
    _wbe(out, q + Q_PRICE, price, Q_PRICE_N)
    _wbe(out, q + Q_MATCH, match, Q_MATCH_N)
    out[q + Q_TYPE] = cross_type
    return p + FRAME + LN_Q


@njit(nogil=True, cache=True)
def _w_broken(out, p, g, counts, s, track, ts, match):
    q = _hdr(out, p, g, counts, TY_B, LN_B, s, track, ts)
    _wbe(out, q + B_MATCH, match, B_MATCH_N)
    return p + FRAME + LN_B


@njit(nogil=True, cache=True)
def _w_noii(out, p, g, counts, rng, s, track, ts, sym, refp, tick, cross_type, mul):
    q = _hdr(out, p, g, counts, TY_I, LN_I, s, track, ts)
    paired = 100 * _ri(rng, 2000) * mul
    u = _u01(rng)
    imb = 0 if u < 0.15 else (1 + _ri(rng, 500)) * 100 * mul
    if imb == 0:
        direction = 78  # 'N'
    elif u < 0.57:
        direction = 66  # 'B'
    elif u < 0.99:
        direction = 83  # 'S'
    else:
        direction = 79  # 'O'
    _wbe(out, q + I_PAIRED, paired, I_PAIRED_N)
    _wbe(out, q + I_IMB, imb, I_IMB_N)
    out[q + I_DIR] = direction
    _wcopy(out, q + I_STOCK, sym, SYMBOL_N)
    far = refp + tick * (_ri(rng, 21) - 10)
    near = refp + tick * (_ri(rng, 11) - 5)
    if far < tick:
        far = tick
    if near < tick:
        near = tick
    _wbe(out, q + I_FAR, far, I_PRICE_N)
    _wbe(out, q + I_NEAR, near, I_PRICE_N)
    _wbe(out, q + I_REFP, refp, I_PRICE_N)
    out[q + I_CROSS] = cross_type
    v = _u01(rng)
    out[q + I_VAR] = 32 if v < 0.7 else (76 if v < 0.85 else 49 + _ri(rng, 9))  # ' ', 'L', '1'..'9'
    return p + FRAME + LN_I


@njit(nogil=True, cache=True)
def _w_position(out, p, g, counts, rng, s, track, ts, sym, mpid):
    q = _hdr(out, p, g, counts, TY_L, LN_L, s, track, ts)
    _wcopy(out, q + L_MPID, mpid, L_MPID_N)
    _wcopy(out, q + L_STOCK, sym, SYMBOL_N)
    out[q + L_PRIMARY] = 89 if _u01(rng) < 0.1 else 78  # 'Y' / 'N'
    out[q + L_MODE] = 78                                  # 'N' normal
    out[q + L_STATE] = 65 if _u01(rng) < 0.9 else 69      # 'A' active / 'E' excused
    return p + FRAME + LN_L


@njit(nogil=True, cache=True)
def _w_action(out, p, g, counts, s, track, ts, sym, state, reason):
    q = _hdr(out, p, g, counts, TY_H, LN_H, s, track, ts)
    _wcopy(out, q + H_STOCK, sym, SYMBOL_N)
    out[q + H_STATE] = state
    out[q + H_RESERVED] = 32
    _wcopy(out, q + H_REASON, reason, H_REASON_N)
    return p + FRAME + LN_H


@njit(nogil=True, cache=True)
def _w_collar(out, p, g, counts, s, track, ts, sym, refp, tick):
    q = _hdr(out, p, g, counts, TY_J, LN_J, s, track, ts)
    band = (refp // 20) // tick * tick  # 5% of the reference, on the tick grid
    if band < tick:
        band = tick
    low = refp - band
    if low < tick:
        low = tick
    _wcopy(out, q + J_STOCK, sym, SYMBOL_N)
    _wbe(out, q + J_REFP, refp, J_PRICE_N)
    _wbe(out, q + J_UP, refp + band, J_PRICE_N)
    _wbe(out, q + J_LOW, low, J_PRICE_N)
    _wbe(out, q + J_EXT, 0, J_EXT_N)
    return p + FRAME + LN_J


# --- the book --------------------------------------------------------------------------------
@njit(nogil=True, cache=True)
def _li(s, side, tick, w):
    return (s * 2 + side) * w + tick


@njit(nogil=True, cache=True)
def _link(slot, s, side, tick, w, lv_head, lv_tail, o_prev, o_next, st_best, st_nside):
    """Put an order at the back of its price level."""
    li = _li(s, side, tick, w)
    tail = lv_tail[li]
    o_prev[slot] = tail
    o_next[slot] = -1
    if tail == -1:
        lv_head[li] = slot
    else:
        o_next[tail] = slot
    lv_tail[li] = slot
    st_nside[s, side] += 1
    if side == BUY:
        if tick > st_best[s, BUY]:
            st_best[s, BUY] = tick
    elif tick < st_best[s, SELL]:
        st_best[s, SELL] = tick


@njit(nogil=True, cache=True)
def _unlink(slot, s, side, tick, w, lv_head, lv_tail, o_prev, o_next, st_best, st_nside):
    """Take an order out of its level; move the best price if its level emptied."""
    li = _li(s, side, tick, w)
    prv = o_prev[slot]
    nxt = o_next[slot]
    if prv == -1:
        lv_head[li] = nxt
    else:
        o_next[prv] = nxt
    if nxt == -1:
        lv_tail[li] = prv
    else:
        o_prev[nxt] = prv
    st_nside[s, side] -= 1
    if lv_head[li] == -1 and st_best[s, side] == tick:
        if st_nside[s, side] == 0:
            st_best[s, side] = -1 if side == BUY else w
        elif side == BUY:
            t = tick - 1
            while lv_head[_li(s, side, t, w)] == -1:
                t -= 1
            st_best[s, side] = t
        else:
            t = tick + 1
            while lv_head[_li(s, side, t, w)] == -1:
                t += 1
            st_best[s, side] = t


@njit(nogil=True, cache=True)
def _remove(slot, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next, o_lpos,
            live, st_best, st_nside):
    """Take an order off the book for good and free its slot."""
    _unlink(slot, o_stock[slot], o_side[slot], o_price[slot], w, lv_head, lv_tail, o_prev, o_next,
            st_best, st_nside)
    n = g[G_LIVE] - 1
    pos = o_lpos[slot]
    last = live[n]
    live[pos] = last
    o_lpos[last] = pos
    g[G_LIVE] = n
    o_next[slot] = g[G_FREE]
    g[G_FREE] = slot


@njit(nogil=True, cache=True)
def _walk_fair(rng, st_fair, s, w):
    u = _u01(rng)
    if u < 0.03:
        f = st_fair[s] + (1 if u < 0.015 else -1)
        if f < w // 8:
            f = w // 8 + 1
        elif f > w - w // 8:
            f = w - w // 8 - 1
        st_fair[s] = f


@njit(nogil=True, cache=True)
def _pick_live(rng, g, live, recent):
    """A live order slot: usually a recent one (most orders die young), else any."""
    n = g[G_LIVE]
    if recent and _u01(rng) < 0.65:
        k = np.int64(-math.log(1.0 - _u01(rng)) * 24.0)
        if k >= n:
            k = n - 1
        return live[n - 1 - k]
    return live[_ri(rng, n)]


@njit(nogil=True, cache=True)
def _passive_tick(rng, st_fair, st_best, s, side, w, allow_cross):
    """A price tick for a new resting order; never crossing unless allow_cross (pre-open)."""
    fair = st_fair[s]
    if allow_cross and _u01(rng) < PREOPEN_CROSS_P:
        if side == BUY:
            return side, fair + _ri(rng, 4)
        return side, fair - _ri(rng, 4)
    d = _depth(rng, w)
    if side == BUY:
        t = fair - d
        if t < 0:
            t = 0
        ask = st_best[s, SELL]
        if ask < w and t >= ask:
            t = ask - 1 - (d if d < 3 else 0)
            if t < 0:
                t = ask - 1
            if t < 0:  # no room under the ask: join the ask instead
                return SELL, ask
        return side, t
    t = fair + 1 + d
    if t >= w:
        t = w - 1
    bid = st_best[s, BUY]
    if bid >= 0 and t <= bid:
        t = bid + 1 + (d if d < 3 else 0)
        if t >= w:
            t = bid + 1
        if t >= w:
            return BUY, bid
    return side, t


@njit(nogil=True, cache=True)
def _clock(g, rng, t1, left, cont):
    """Advance the clock towards t1 over `left` more messages, in bursts."""
    t = g[G_T]
    if cont:
        return t
    room = t1 - 1 - t
    if room <= 0:
        return t
    mu = room / (left + 1.0)
    if _u01(rng) < 0.55:
        gap = mu * 0.05 * _u01(rng)
    else:
        gap = mu * 2.16 * -math.log(1.0 - _u01(rng))
    nt = t + np.int64(gap)
    if nt > t1 - 1:
        nt = t1 - 1
    g[G_T] = nt
    return nt


@njit(nogil=True, cache=True)
def _next_match(g, mring, keep):
    m = g[G_MATCH] + 1
    g[G_MATCH] = m
    if keep:
        n = g[G_MRING_N]
        if n < MRING:
            mring[n] = m
            g[G_MRING_N] = n + 1
        else:
            mring[m % MRING] = m
    return m


@njit(nogil=True, cache=True)
def _next_phase(g):
    g[G_PHASE] += 1
    g[G_PH_STARTED] = 0
    g[G_PEND] = 0


# --- the step loop -------------------------------------------------------------------------
@njit(nogil=True, cache=True)
def run(out, g, rng, refctr, counts, flow_p,
        ph_kind, ph_t0, ph_t1, ph_share, ph_fixed, ph_reserve, ph_arg, ph_extra,
        admin_blob, admin_off,
        st_sym, st_cdf, st_fair, st_best, st_nside, st_tick, st_base, st_halted, st_track,
        st_mul, st_close_n,
        lv_head, lv_tail,
        o_ref, o_stock, o_side, o_shares, o_price, o_prev, o_next, o_lpos, live,
        mring, mpids, reasons):
    """Write whole messages into out until it is nearly full or the day is over.

    Returns the number of bytes written. reasons: uint8[2, 4] halt reason codes
    (row 0 for a halt, row 1 for the resumption).
    """
    p = 0
    limit = len(out) - MAX_FRAMED
    n_total = g[G_N]
    k_stocks = g[G_K]
    w = g[G_W]
    n_phases = len(ph_kind)
    while p <= limit and g[G_DONE] == 0:
        ph = g[G_PHASE]
        if ph >= n_phases:
            g[G_DONE] = 1
            break
        kind = ph_kind[ph]
        t0 = ph_t0[ph]
        t1 = ph_t1[ph]

        # ---------------------------------------------------------------- system event
        if kind == PH_SYS:
            if g[G_T] < t0:
                g[G_T] = t0
            p = _w_sys(out, p, g, counts, g[G_T], ph_arg[ph])
            _next_phase(g)
            continue

        if kind == PH_END:
            g[G_DONE] = 1
            break

        # ---------------------------------------------------------------- directory etc.
        if kind == PH_ADMIN:
            i = g[G_ADMIN_I]
            if i >= len(admin_off) - 1:
                _next_phase(g)
                continue
            a, b = admin_off[i], admin_off[i + 1]
            for j in range(b - a):
                out[p + j] = admin_blob[a + j]
            counts[admin_blob[a + FRAME + HDR_TYPE]] += 1
            g[G_EMITTED] += 1
            ts = 0
            for j in range(HDR_TS_N):
                ts = (ts << 8) | admin_blob[a + FRAME + HDR_TS + j]
            if ts > g[G_T]:
                g[G_T] = ts
            p += b - a
            g[G_ADMIN_I] = i + 1
            continue

        # ---------------------------------------------------------------- crosses
        if kind == PH_CROSS:
            if g[G_PH_STARTED] == 0:
                g[G_PH_STARTED] = 1
                g[G_X_STOCK] = 1
                g[G_X_STAGE] = 0
                if g[G_T] < t0:
                    g[G_T] = t0
            s = g[G_X_STOCK]
            if s > k_stocks:
                _next_phase(g)
                continue
            cross_type = ph_arg[ph]
            sym = st_sym[s]
            track = st_track[s]
            stage = g[G_X_STAGE]
            left_est = 2 * (k_stocks - s) + 3
            if stage == 0:
                g[G_X_SHARES] = 0
                if cross_type == 79:  # 'O': uncross the pre-open book at one price
                    bid, ask = st_best[s, BUY], st_best[s, SELL]
                    if bid >= 0 and ask < w and bid >= ask:
                        # Dry run of the matching to find the last pair, then a price between.
                        bi, ai = bid, ask
                        b = lv_head[_li(s, BUY, bi, w)]
                        a = lv_head[_li(s, SELL, ai, w)]
                        bq, aq = o_shares[b], o_shares[a]
                        pb, pa = bi, ai
                        while True:
                            pb, pa = bi, ai
                            qq = bq if bq < aq else aq
                            bq -= qq
                            aq -= qq
                            if bq == 0:
                                b = o_next[b]
                                while b == -1:
                                    bi -= 1
                                    if bi < 0:
                                        break
                                    b = lv_head[_li(s, BUY, bi, w)]
                                if bi < 0:
                                    break
                                bq = o_shares[b]
                            if aq == 0:
                                a = o_next[a]
                                while a == -1:
                                    ai += 1
                                    if ai >= w:
                                        break
                                    a = lv_head[_li(s, SELL, ai, w)]
                                if ai >= w:
                                    break
                                aq = o_shares[a]
                            if bi < ai:
                                break
                        g[G_X_PRICE] = pa + (pb - pa) // 2
                        g[G_X_STAGE] = 1
                    else:
                        g[G_X_PRICE] = st_fair[s]
                        if bid >= 0 and ask < w:
                            g[G_X_PRICE] = bid + (ask - bid) // 2
                        g[G_X_STAGE] = 3
                else:  # closing cross: on-close interest takes the touch of one side
                    side = BUY if _u01(rng) < 0.5 else SELL
                    if st_nside[s, side] == 0:
                        side = 1 - side
                    if st_nside[s, side] == 0:
                        g[G_X_PRICE] = st_fair[s]
                        g[G_X_STAGE] = 3
                    else:
                        g[G_X_SIDE] = side
                        g[G_X_PRICE] = st_best[s, side]
                        g[G_X_LEFT] = st_close_n[s]
                        g[G_X_STAGE] = 2
                continue
            cprice = _raw(st_base, st_tick, s, g[G_X_PRICE])
            if stage == 1:  # opening uncross, one C per message (bid then ask of each pair)
                if g[G_PEND] == 2:
                    a = g[G_PEND_SLOT]
                    qq = g[G_PEND_Q]
                    ts = _clock(g, rng, t1, left_est, False)
                    m = _next_match(g, mring, False)
                    p = _w_exec(out, p, g, counts, s, track, ts, o_ref[a], qq, m, True, 78, cprice)
                    o_shares[a] -= qq
                    if o_shares[a] == 0:
                        _remove(a, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                                o_lpos, live, st_best, st_nside)
                    g[G_PEND] = 0
                    continue
                bid, ask = st_best[s, BUY], st_best[s, SELL]
                if bid >= 0 and ask < w and bid >= ask:
                    b = lv_head[_li(s, BUY, bid, w)]
                    a = lv_head[_li(s, SELL, ask, w)]
                    qq = o_shares[b] if o_shares[b] < o_shares[a] else o_shares[a]
                    ts = _clock(g, rng, t1, left_est, False)
                    m = _next_match(g, mring, False)
                    p = _w_exec(out, p, g, counts, s, track, ts, o_ref[b], qq, m, True, 78, cprice)
                    o_shares[b] -= qq
                    if o_shares[b] == 0:
                        _remove(b, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                                o_lpos, live, st_best, st_nside)
                    g[G_X_SHARES] += qq
                    g[G_PEND] = 2
                    g[G_PEND_SLOT] = a
                    g[G_PEND_Q] = qq
                    continue
                g[G_X_STAGE] = 3
                continue
            if stage == 2:  # closing cross executions at the touch of one side
                side = g[G_X_SIDE]
                tick = g[G_X_PRICE]
                if g[G_X_LEFT] > 0 and st_nside[s, side] > 0 and st_best[s, side] == tick:
                    o = lv_head[_li(s, side, tick, w)]
                    sh = o_shares[o]
                    qq = sh
                    if sh > 1 and _u01(rng) < 0.3:
                        qq = 1 + _ri(rng, sh - 1)
                    ts = _clock(g, rng, t1, left_est, False)
                    m = _next_match(g, mring, False)
                    p = _w_exec(out, p, g, counts, s, track, ts, o_ref[o], qq, m, True, 78, cprice)
                    o_shares[o] -= qq
                    if o_shares[o] == 0:
                        _remove(o, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                                o_lpos, live, st_best, st_nside)
                    g[G_X_SHARES] += qq
                    g[G_X_LEFT] -= 1
                    continue
                g[G_X_STAGE] = 3
                continue
            # stage 3: the cross print
            ts = _clock(g, rng, t1, left_est, False)
            m = _next_match(g, mring, False)
            extra = 100 * (1 + _ri(rng, 500)) * st_mul[s]
            p = _w_cross(out, p, g, counts, s, track, ts, g[G_X_SHARES] + extra, sym, cprice, m,
                         cross_type)
            g[G_X_STOCK] = s + 1
            g[G_X_STAGE] = 0
            continue

        # ---------------------------------------------------------------- order flow
        flags = ph_arg[ph]
        if g[G_PH_STARTED] == 0:
            g[G_PH_STARTED] = 1
            if g[G_T] < t0:
                g[G_T] = t0
            if flags & FL_LAST:
                budget = n_total - g[G_EMITTED] - ph_reserve[ph]
            elif ph_fixed[ph] >= 0:
                budget = ph_fixed[ph]
            else:
                share_rest = 0.0
                for j in range(ph, n_phases):
                    if ph_kind[j] == PH_FLOW and ph_fixed[j] < 0:
                        share_rest += ph_share[j]
                remaining = n_total - g[G_EMITTED] - ph_reserve[ph]
                budget = np.int64(remaining * ph_share[ph] / share_rest)
            if budget < 0:
                budget = 0
            g[G_PH_LEFT] = budget
            tot = 0
            for x in range(N_EXTRA):
                e = ph_extra[ph, x]
                if e > budget - tot:
                    e = budget - tot
                g[G_EX0 + x] = e
                tot += e
        left = g[G_PH_LEFT]
        close_mode = (flags & FL_LAST) != 0 and g[G_CLOSE_ALL] != 0
        n_live = g[G_LIVE]
        if close_mode:
            slack = left - n_live
            if slack <= 0:
                if n_live == 0:
                    _next_phase(g)
                    continue
                o = live[n_live - 1]
                s = o_stock[o]
                ts = _clock(g, rng, t1, left if left > n_live else n_live, False)
                p = _w_delete(out, p, g, counts, s, st_track[s], ts, o_ref[o])
                _remove(o, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                        o_lpos, live, st_best, st_nside)
                g[G_PH_LEFT] = left - 1
                continue
        if left <= 0:
            _next_phase(g)
            continue
        g[G_PH_LEFT] = left - 1
        allow_cross = (flags & FL_ALLOW_CROSS) != 0

        # A halt in progress moves on when due (or when the phase is running out).
        hstage = g[G_HALT_STAGE]
        if hstage > 0 and (g[G_EMITTED] >= g[G_HALT_DUE] or left <= 4):
            s = g[G_HALT_STOCK]
            ts = _clock(g, rng, t1, left, False)
            fair = _raw(st_base, st_tick, s, st_fair[s])
            if hstage == 1:
                p = _w_collar(out, p, g, counts, s, st_track[s], ts, st_sym[s], fair, st_tick[s])
                g[G_HALT_STAGE] = 2
                g[G_HALT_DUE] = g[G_EMITTED] + left // 40
            elif hstage == 2:
                p = _w_action(out, p, g, counts, s, st_track[s], ts, st_sym[s], 84, reasons[1])
                g[G_HALT_STAGE] = 3
            else:
                m = _next_match(g, mring, False)
                p = _w_cross(out, p, g, counts, s, st_track[s], ts, 100 * (1 + _ri(rng, 300)) * st_mul[s],
                             st_sym[s], fair, m, 72)  # 'H': halt/IPO cross
                st_halted[s] = 0
                g[G_HALT_STAGE] = 0
            continue

        # The closing drain needs slack: near it, only messages that leave the book alone.
        if close_mode and left - n_live <= 2:
            g[G_PEND] = 0
            s = _zipf_stock(rng, st_cdf)
            ts = _clock(g, rng, t1, left, False)
            m = _next_match(g, mring, True)
            p = _w_trade(out, p, g, counts, s, st_track[s], ts, BUY if _u01(rng) < 0.5 else SELL,
                         _size(rng, st_mul[s]), st_sym[s], _raw(st_base, st_tick, s, st_fair[s]), m)
            continue

        ex_left = 0
        for x in range(N_EXTRA):
            ex_left += g[G_EX0 + x]
        forced = ex_left > 0 and ex_left >= left
        if forced:
            g[G_PEND] = 0

        # A sweep in progress: the next order at the touch, same timestamp.
        if g[G_PEND] == 1:
            s = g[G_PEND_STOCK]
            side = g[G_PEND_SIDE]
            if st_nside[s, side] > 0:
                o = lv_head[_li(s, side, st_best[s, side], w)]
                ts = g[G_T]
                sh = o_shares[o]
                qq = sh
                if sh > 1 and _u01(rng) >= FULL_EXEC_P:
                    qq = 1 + _ri(rng, sh - 1)
                m = _next_match(g, mring, True)
                p = _w_exec(out, p, g, counts, s, st_track[s], ts, o_ref[o], qq, m, False, 89, 0)
                o_shares[o] -= qq
                if o_shares[o] == 0:
                    _remove(o, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                            o_lpos, live, st_best, st_nside)
                if o_shares[o] > 0 or _u01(rng) >= SWEEP_MORE:
                    g[G_PEND] = 0
                continue
            g[G_PEND] = 0

        # Extras: drawn so that each kind's count for the phase comes out exact.
        if ex_left > 0 and (forced or _u01(rng) * left < ex_left):
            r = _ri(rng, ex_left)
            x = 0
            while r >= g[G_EX0 + x]:
                r -= g[G_EX0 + x]
                x += 1
            g[G_EX0 + x] -= 1
            ts = _clock(g, rng, t1, left, False)
            if x == EX_B and g[G_MRING_N] == 0:
                x = EX_P
            if x == EX_HALT and g[G_HALT_STAGE] != 0:
                x = EX_L
            if x == EX_I:
                s = g[G_NOII_NEXT]
                g[G_NOII_NEXT] = s + 1 if s < k_stocks else 1
                p = _w_noii(out, p, g, counts, rng, s, st_track[s], ts, st_sym[s],
                            _raw(st_base, st_tick, s, st_fair[s]), st_tick[s], ph_extra[ph, N_EXTRA],
                            st_mul[s])
            elif x == EX_L:
                s = _zipf_stock(rng, st_cdf)
                p = _w_position(out, p, g, counts, rng, s, st_track[s], ts, st_sym[s],
                                mpids[_ri(rng, len(mpids))])
            elif x == EX_B:
                n = g[G_MRING_N]
                j = _ri(rng, n)
                m = mring[j]
                mring[j] = mring[n - 1]
                g[G_MRING_N] = n - 1
                p = _w_broken(out, p, g, counts, 0, 0, ts, m)
            elif x == EX_HALT:
                s = _zipf_stock(rng, st_cdf)
                st_halted[s] = 1
                g[G_HALT_STOCK] = s
                g[G_HALT_STAGE] = 1
                g[G_HALT_DUE] = g[G_EMITTED] + 1 + left // 200
                p = _w_action(out, p, g, counts, s, st_track[s], ts, st_sym[s], 72, reasons[0])
            else:  # P (hidden order trade) or C (execution at a price other than displayed)
                s = _zipf_stock(rng, st_cdf)
                if x == EX_C and st_halted[s] == 0 and st_nside[s, BUY] + st_nside[s, SELL] > 0:
                    side = BUY if _u01(rng) < 0.5 else SELL
                    if st_nside[s, side] == 0:
                        side = 1 - side
                    tick = st_best[s, side]
                    o = lv_head[_li(s, side, tick, w)]
                    sh = o_shares[o]
                    qq = sh
                    if sh > 1 and _u01(rng) >= FULL_EXEC_P:
                        qq = 1 + _ri(rng, sh - 1)
                    xt = tick + 1 if (side == SELL or tick == 0) else tick - 1
                    m = _next_match(g, mring, True)
                    p = _w_exec(out, p, g, counts, s, st_track[s], ts, o_ref[o], qq, m, True, 89,
                                _raw(st_base, st_tick, s, xt))
                    o_shares[o] -= qq
                    if o_shares[o] == 0:
                        _remove(o, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                                o_lpos, live, st_best, st_nside)
                else:
                    if st_halted[s]:
                        s = 1 if s != 1 else 2
                        if s > k_stocks:
                            s = 1
                    bid, ask = st_best[s, BUY], st_best[s, SELL]
                    tick = st_fair[s]
                    if bid >= 0 and ask < w and bid < ask:
                        tick = bid + (ask - bid) // 2
                    m = _next_match(g, mring, True)
                    p = _w_trade(out, p, g, counts, s, st_track[s], ts, BUY if _u01(rng) < 0.5 else SELL,
                                 _size(rng, st_mul[s]), st_sym[s], _raw(st_base, st_tick, s, tick), m)
            continue

        # Order flow proper. Adds and deletes lean towards the live-order target.
        ts = _clock(g, rng, t1, left, False)
        target = g[G_TARGET_LIVE]
        dev = (target - n_live) / target
        if dev > 1.0:
            dev = 1.0
        elif dev < -1.0:
            dev = -1.0
        lean = 0.03 * dev
        u = _u01(rng)
        if n_live == 0:
            act = FP_F if flow_p[FP_A] + lean <= u < flow_p[FP_F] + lean else FP_A
        elif n_live >= g[G_CAP] - 2:
            act = FP_D
        elif u < flow_p[FP_F] + lean:
            act = FP_A if u < flow_p[FP_A] + lean else FP_F
        elif u < flow_p[FP_D]:
            act = FP_D
        elif u < flow_p[FP_U]:
            act = FP_U
        elif u < flow_p[FP_X]:
            act = FP_X
        else:
            act = FP_E

        if act == FP_E:
            s = _zipf_stock(rng, st_cdf)
            if st_nside[s, BUY] + st_nside[s, SELL] == 0:
                s = o_stock[_pick_live(rng, g, live, False)]
            if st_halted[s]:
                act = FP_A
            else:
                side = BUY if _u01(rng) < 0.5 else SELL
                if st_nside[s, side] == 0:
                    side = 1 - side
                tick = st_best[s, side]
                o = lv_head[_li(s, side, tick, w)]
                if o_next[o] != -1 and _u01(rng) < NONHEAD_P:
                    o = o_next[o]  # executed by reference behind the head of the queue
                    g[G_NONHEAD] += 1
                sh = o_shares[o]
                qq = sh
                if sh > 1 and _u01(rng) >= FULL_EXEC_P:
                    qq = 1 + _ri(rng, sh - 1)
                m = _next_match(g, mring, True)
                p = _w_exec(out, p, g, counts, s, st_track[s], ts, o_ref[o], qq, m, False, 89, 0)
                o_shares[o] -= qq
                if o_shares[o] == 0:
                    _remove(o, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                            o_lpos, live, st_best, st_nside)
                    if _u01(rng) < SWEEP_P:
                        g[G_PEND] = 1
                        g[G_PEND_STOCK] = s
                        g[G_PEND_SIDE] = side
                _walk_fair(rng, st_fair, s, w)
                continue

        if act == FP_X:
            o = _pick_live(rng, g, live, True)
            if o_shares[o] < 2:
                o = _pick_live(rng, g, live, False)
            if o_shares[o] >= 2:
                s = o_stock[o]
                qq = 1 + _ri(rng, o_shares[o] - 1)
                p = _w_cancel(out, p, g, counts, s, st_track[s], ts, o_ref[o], qq)
                o_shares[o] -= qq
                continue
            act = FP_D

        if act == FP_D:
            o = _pick_live(rng, g, live, True)
            s = o_stock[o]
            p = _w_delete(out, p, g, counts, s, st_track[s], ts, o_ref[o])
            _remove(o, g, w, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                    o_lpos, live, st_best, st_nside)
            continue

        if act == FP_U:
            o = _pick_live(rng, g, live, True)
            s = o_stock[o]
            side = o_side[o]
            tick = o_price[o] + _ri(rng, 5) - 2
            if tick < 0:
                tick = 0
            elif tick >= w:
                tick = w - 1
            if not allow_cross:
                if side == BUY and st_best[s, SELL] < w and tick >= st_best[s, SELL]:
                    tick = st_best[s, SELL] - 1
                elif side == SELL and st_best[s, BUY] >= 0 and tick <= st_best[s, BUY]:
                    tick = st_best[s, BUY] + 1
                if tick < 0 or tick >= w:
                    tick = o_price[o]
            shares = o_shares[o]
            if _u01(rng) < 0.5:
                shares = _size(rng, st_mul[s])
            new = _new_ref(rng, refctr)
            p = _w_replace(out, p, g, counts, s, st_track[s], ts, o_ref[o], new, shares,
                           _raw(st_base, st_tick, s, tick))
            _unlink(o, s, side, o_price[o], w, lv_head, lv_tail, o_prev, o_next, st_best, st_nside)
            o_ref[o] = new
            o_shares[o] = shares
            o_price[o] = tick
            _link(o, s, side, tick, w, lv_head, lv_tail, o_prev, o_next, st_best, st_nside)
            continue

        # Add (A, or F with a market participant ID).
        s = _zipf_stock(rng, st_cdf)
        _walk_fair(rng, st_fair, s, w)
        side, tick = _passive_tick(rng, st_fair, st_best, s, BUY if _u01(rng) < 0.5 else SELL, w,
                                   allow_cross)
        shares = _size(rng, st_mul[s])
        ref = _new_ref(rng, refctr)
        o = g[G_FREE]
        g[G_FREE] = o_next[o]
        o_ref[o] = ref
        o_stock[o] = s
        o_side[o] = side
        o_shares[o] = shares
        o_price[o] = tick
        pos = g[G_LIVE]
        live[pos] = o
        o_lpos[o] = pos
        g[G_LIVE] = pos + 1
        _link(o, s, side, tick, w, lv_head, lv_tail, o_prev, o_next, st_best, st_nside)
        p = _w_add(out, p, g, counts, s, st_track[s], ts, ref, side, shares, st_sym[s],
                   _raw(st_base, st_tick, s, tick), mpids[_ri(rng, len(mpids))], act == FP_F)
    return p
