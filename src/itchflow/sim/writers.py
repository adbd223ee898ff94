"""Message writers: one compiled function per ITCH message the generator emits.

Each writes the length prefix, the common header and the body at ``out[p:]`` (offsets from
``wire_offsets``), counts the message, and returns the offset after it.
"""

from __future__ import annotations

from numba import njit

from itchflow.sim.rng import randint, u01
from itchflow.sim.state import BUY, G_EMITTED
from itchflow.sim.wire_offsets import (
    A_PRICE, A_PRICE_N, A_REF, A_REF_N, A_SHARES, A_SHARES_N, A_SIDE, A_STOCK, B_MATCH, B_MATCH_N,
    C_MATCH, C_PRICE, C_PRICE_N, C_PRINTABLE, C_REF, C_SHARES, D_REF, E_MATCH, E_MATCH_N, E_REF, E_SHARES,
    E_SHARES_N, FRAME, F_ATTR, F_ATTR_N, F_PRICE, F_REF, F_SHARES, F_SIDE, F_STOCK, HDR_LOCATE,
    HDR_LOCATE_N, HDR_TRACK, HDR_TRACK_N, HDR_TS, HDR_TS_N, HDR_TYPE, H_REASON, H_REASON_N, H_RESERVED,
    H_STATE, H_STOCK, I_CROSS, I_DIR, I_FAR, I_IMB, I_IMB_N, I_NEAR, I_PAIRED, I_PAIRED_N, I_PRICE_N,
    I_REFP, I_STOCK, I_VAR, J_EXT, J_EXT_N, J_LOW, J_PRICE_N, J_REFP, J_STOCK, J_UP, LN_A, LN_B, LN_C,
    LN_D, LN_E, LN_F, LN_H, LN_I, LN_J, LN_L, LN_P, LN_Q, LN_S, LN_U, LN_X, L_MODE, L_MPID, L_MPID_N,
    L_PRIMARY, L_STATE, L_STOCK, P_MATCH, P_MATCH_N, P_PRICE, P_PRICE_N, P_REF, P_SHARES, P_SHARES_N,
    P_SIDE, P_STOCK, Q_MATCH, Q_MATCH_N, Q_PRICE, Q_PRICE_N, Q_SHARES, Q_SHARES_N, Q_STOCK, Q_TYPE,
    SYMBOL_N, S_EVENT, TY_A, TY_B, TY_C, TY_D, TY_E, TY_F, TY_H, TY_I, TY_J, TY_L, TY_P, TY_Q, TY_S, TY_U,
    TY_X, U_NEW, U_OLD, U_PRICE, U_PRICE_N, U_REF_N, U_SHARES, U_SHARES_N, X_REF, X_SHARES, X_SHARES_N,
)


@njit(nogil=True, cache=True)
def put_be(out, p, v, n):
    for i in range(n):
        out[p + n - 1 - i] = (v >> (8 * i)) & 0xFF


@njit(nogil=True, cache=True)
def put_bytes(out, p, src, n):
    for i in range(n):
        out[p + i] = src[i]


@njit(nogil=True, cache=True)
def put_header(out, p, g, counts, code, length, locate, track, ts):
    """Length prefix and common header; returns the offset of the type byte."""
    put_be(out, p, length, FRAME)
    q = p + FRAME
    out[q + HDR_TYPE] = code
    put_be(out, q + HDR_LOCATE, locate, HDR_LOCATE_N)
    put_be(out, q + HDR_TRACK, track, HDR_TRACK_N)
    put_be(out, q + HDR_TS, ts, HDR_TS_N)
    counts[code] += 1
    g[G_EMITTED] += 1
    return q


@njit(nogil=True, cache=True)
def side_byte(side):
    return 66 if side == BUY else 83  # 'B' / 'S'


@njit(nogil=True, cache=True)
def raw_price(st_base, st_tick, s, tick):
    return st_base[s] + tick * st_tick[s]


@njit(nogil=True, cache=True)
def write_sys(out, p, g, counts, ts, code):
    q = put_header(out, p, g, counts, TY_S, LN_S, 0, 0, ts)
    out[q + S_EVENT] = code
    return p + FRAME + LN_S


@njit(nogil=True, cache=True)
def write_add(out, p, g, counts, s, track, ts, ref, side, shares, sym, price, mpid, with_mpid):
    if with_mpid:
        q = put_header(out, p, g, counts, TY_F, LN_F, s, track, ts)
        put_be(out, q + F_REF, ref, A_REF_N)
        out[q + F_SIDE] = side_byte(side)
        put_be(out, q + F_SHARES, shares, A_SHARES_N)
        put_bytes(out, q + F_STOCK, sym, SYMBOL_N)
        put_be(out, q + F_PRICE, price, A_PRICE_N)
        put_bytes(out, q + F_ATTR, mpid, F_ATTR_N)
        return p + FRAME + LN_F
    q = put_header(out, p, g, counts, TY_A, LN_A, s, track, ts)
    put_be(out, q + A_REF, ref, A_REF_N)
    out[q + A_SIDE] = side_byte(side)
    put_be(out, q + A_SHARES, shares, A_SHARES_N)
    put_bytes(out, q + A_STOCK, sym, SYMBOL_N)
    put_be(out, q + A_PRICE, price, A_PRICE_N)
    return p + FRAME + LN_A


@njit(nogil=True, cache=True)
def write_exec(out, p, g, counts, s, track, ts, ref, shares, match, with_price, printable, price):
    if with_price:
        q = put_header(out, p, g, counts, TY_C, LN_C, s, track, ts)
        put_be(out, q + C_REF, ref, A_REF_N)
        put_be(out, q + C_SHARES, shares, E_SHARES_N)
        put_be(out, q + C_MATCH, match, E_MATCH_N)
        out[q + C_PRINTABLE] = printable
        put_be(out, q + C_PRICE, price, C_PRICE_N)
        return p + FRAME + LN_C
    q = put_header(out, p, g, counts, TY_E, LN_E, s, track, ts)
    put_be(out, q + E_REF, ref, A_REF_N)
    put_be(out, q + E_SHARES, shares, E_SHARES_N)
    put_be(out, q + E_MATCH, match, E_MATCH_N)
    return p + FRAME + LN_E


@njit(nogil=True, cache=True)
def write_cancel(out, p, g, counts, s, track, ts, ref, shares):
    q = put_header(out, p, g, counts, TY_X, LN_X, s, track, ts)
    put_be(out, q + X_REF, ref, A_REF_N)
    put_be(out, q + X_SHARES, shares, X_SHARES_N)
    return p + FRAME + LN_X


@njit(nogil=True, cache=True)
def write_delete(out, p, g, counts, s, track, ts, ref):
    q = put_header(out, p, g, counts, TY_D, LN_D, s, track, ts)
    put_be(out, q + D_REF, ref, A_REF_N)
    return p + FRAME + LN_D


@njit(nogil=True, cache=True)
def write_replace(out, p, g, counts, s, track, ts, old, new, shares, price):
    q = put_header(out, p, g, counts, TY_U, LN_U, s, track, ts)
    put_be(out, q + U_OLD, old, U_REF_N)
    put_be(out, q + U_NEW, new, U_REF_N)
    put_be(out, q + U_SHARES, shares, U_SHARES_N)
    put_be(out, q + U_PRICE, price, U_PRICE_N)
    return p + FRAME + LN_U


@njit(nogil=True, cache=True)
def write_trade(out, p, g, counts, s, track, ts, side, shares, sym, price, match):
    q = put_header(out, p, g, counts, TY_P, LN_P, s, track, ts)
    put_be(out, q + P_REF, 0, A_REF_N)  # hidden orders: Nasdaq sends reference 0
    out[q + P_SIDE] = side_byte(side)
    put_be(out, q + P_SHARES, shares, P_SHARES_N)
    put_bytes(out, q + P_STOCK, sym, SYMBOL_N)
    put_be(out, q + P_PRICE, price, P_PRICE_N)
    put_be(out, q + P_MATCH, match, P_MATCH_N)
    return p + FRAME + LN_P


@njit(nogil=True, cache=True)
def write_cross(out, p, g, counts, s, track, ts, shares, sym, price, match, cross_type):
    q = put_header(out, p, g, counts, TY_Q, LN_Q, s, track, ts)
    put_be(out, q + Q_SHARES, shares, Q_SHARES_N)
    put_bytes(out, q + Q_STOCK, sym, SYMBOL_N)
    put_be(out, q + Q_PRICE, price, Q_PRICE_N)
    put_be(out, q + Q_MATCH, match, Q_MATCH_N)
    out[q + Q_TYPE] = cross_type
    return p + FRAME + LN_Q


@njit(nogil=True, cache=True)
def write_broken(out, p, g, counts, s, track, ts, match):
    q = put_header(out, p, g, counts, TY_B, LN_B, s, track, ts)
    put_be(out, q + B_MATCH, match, B_MATCH_N)
    return p + FRAME + LN_B


@njit(nogil=True, cache=True)
def write_noii(out, p, g, counts, rng, s, track, ts, sym, refp, tick, cross_type, mul):
    q = put_header(out, p, g, counts, TY_I, LN_I, s, track, ts)
    paired = 100 * randint(rng, 2000) * mul
    u = u01(rng)
    imb = 0 if u < 0.15 else (1 + randint(rng, 500)) * 100 * mul
    if imb == 0:
        direction = 78  # 'N'
    elif u < 0.57:
        direction = 66  # 'B'
    elif u < 0.99:
        direction = 83  # 'S'
    else:
        direction = 79  # 'O'
    put_be(out, q + I_PAIRED, paired, I_PAIRED_N)
    put_be(out, q + I_IMB, imb, I_IMB_N)
    out[q + I_DIR] = direction
    put_bytes(out, q + I_STOCK, sym, SYMBOL_N)
    far = refp + tick * (randint(rng, 21) - 10)
    near = refp + tick * (randint(rng, 11) - 5)
    if far < tick:
        far = tick
    if near < tick:
        near = tick
    put_be(out, q + I_FAR, far, I_PRICE_N)
    put_be(out, q + I_NEAR, near, I_PRICE_N)
    put_be(out, q + I_REFP, refp, I_PRICE_N)
    out[q + I_CROSS] = cross_type
    v = u01(rng)
    out[q + I_VAR] = 32 if v < 0.7 else (76 if v < 0.85 else 49 + randint(rng, 9))  # ' ', 'L', '1'..'9'
    return p + FRAME + LN_I


@njit(nogil=True, cache=True)
def write_position(out, p, g, counts, rng, s, track, ts, sym, mpid):
    q = put_header(out, p, g, counts, TY_L, LN_L, s, track, ts)
    put_bytes(out, q + L_MPID, mpid, L_MPID_N)
    put_bytes(out, q + L_STOCK, sym, SYMBOL_N)
    out[q + L_PRIMARY] = 89 if u01(rng) < 0.1 else 78  # 'Y' / 'N'
    out[q + L_MODE] = 78                                  # 'N' normal
    out[q + L_STATE] = 65 if u01(rng) < 0.9 else 69      # 'A' active / 'E' excused
    return p + FRAME + LN_L


@njit(nogil=True, cache=True)
def write_action(out, p, g, counts, s, track, ts, sym, state, reason):
    q = put_header(out, p, g, counts, TY_H, LN_H, s, track, ts)
    put_bytes(out, q + H_STOCK, sym, SYMBOL_N)
    out[q + H_STATE] = state
    out[q + H_RESERVED] = 32
    put_bytes(out, q + H_REASON, reason, H_REASON_N)
    return p + FRAME + LN_H


@njit(nogil=True, cache=True)
def write_collar(out, p, g, counts, s, track, ts, sym, refp, tick):
    q = put_header(out, p, g, counts, TY_J, LN_J, s, track, ts)
    band = (refp // 20) // tick * tick  # 5% of the reference, on the tick grid
    if band < tick:
        band = tick
    low = refp - band
    if low < tick:
        low = tick
    put_bytes(out, q + J_STOCK, sym, SYMBOL_N)
    put_be(out, q + J_REFP, refp, J_PRICE_N)
    put_be(out, q + J_UP, refp + band, J_PRICE_N)
    put_be(out, q + J_LOW, low, J_PRICE_N)
    put_be(out, q + J_EXT, 0, J_EXT_N)
    return p + FRAME + LN_J
