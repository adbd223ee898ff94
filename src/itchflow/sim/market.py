"""The generator's book model: per stock and side a ladder of ``W[s]`` price ticks.

``lad[s] = (offset, W)``: stock s's bid ladder is ``lv_head[offset:offset + W]`` and its ask
ladder the next W entries (the default day gives every stock the same W; a deep-book day gives
its busiest stocks wider ladders). ``lv_head``/``lv_tail`` hold the FIFO queue ends of each
level, orders link through ``o_prev``/``o_next``; the best bid is the highest non-empty bid
tick, the best ask the lowest non-empty ask tick (W when the side is empty). Live orders also
sit in a dense list (``live``) so a random live order is one draw away; its first
``g[G_RESTING]`` entries are orders that rest all day (never picked for D/X/U). Also the
fair-price walk, the clock and match numbers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from itchflow.sim.draws import ticks_behind
from itchflow.sim.rng import randint, u01
from itchflow.sim.state import (
    BUY, G_FREE, G_LIVE, G_MATCH, G_MRING_N, G_PEND, G_PHASE, G_PH_STARTED, G_RESTING, G_T, MRING, MRING_LOCATE_SHIFT,
    PREOPEN_CROSS_P, SELL,
)
from itchflow.sim.writers import write_exec


@njit(nogil=True, cache=True)
def level_index(s, side, tick, lad):
    return lad[s, 0] + side * lad[s, 1] + tick


@njit(nogil=True, cache=True)
def link_order(slot, s, side, tick, lad, lv_head, lv_tail, o_prev, o_next, st_best, st_nside):
    """Put an order at the back of its price level."""
    li = level_index(s, side, tick, lad)
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
def unlink_order(slot, s, side, tick, lad, lv_head, lv_tail, o_prev, o_next, st_best, st_nside):
    """Take an order out of its level; move the best price if its level emptied."""
    li = level_index(s, side, tick, lad)
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
            st_best[s, side] = -1 if side == BUY else lad[s, 1]
        elif side == BUY:
            t = tick - 1
            while lv_head[level_index(s, side, t, lad)] == -1:
                t -= 1
            st_best[s, side] = t
        else:
            t = tick + 1
            while lv_head[level_index(s, side, t, lad)] == -1:
                t += 1
            st_best[s, side] = t


@njit(nogil=True, cache=True)
def remove_order(slot, g, lad, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next, o_lpos,
            live, st_best, st_nside):
    """Take an order off the book for good and free its slot."""
    unlink_order(slot, o_stock[slot], o_side[slot], o_price[slot], lad, lv_head, lv_tail, o_prev, o_next,
            st_best, st_nside)
    n = g[G_LIVE] - 1
    pos = o_lpos[slot]
    r = g[G_RESTING]
    if pos < r:  # a resting order: the last resting one takes its place, the hole moves to r - 1
        r -= 1
        moved = live[r]
        live[pos] = moved
        o_lpos[moved] = pos
        pos = r
        g[G_RESTING] = r
    if pos != n:  # the last live order fills the hole
        last = live[n]
        live[pos] = last
        o_lpos[last] = pos
    g[G_LIVE] = n
    o_next[slot] = g[G_FREE]
    g[G_FREE] = slot


@njit(nogil=True, cache=True)
def walk_fair(rng, st_fair, s, lad):
    w = lad[s, 1]
    u = u01(rng)
    if u < 0.03:
        f = st_fair[s] + (1 if u < 0.015 else -1)
        if f < w // 8:
            f = w // 8 + 1
        elif f > w - w // 8:
            f = w - w // 8 - 1
        st_fair[s] = f


@njit(nogil=True, cache=True)
def pick_live(rng, g, live, recent):
    """A live order slot that does not rest all day: usually a recent one (most orders die
    young), else any. (The caller makes sure there is one.)"""
    n = g[G_LIVE]
    r = g[G_RESTING]
    if recent and u01(rng) < 0.65:
        k = np.int64(-math.log(1.0 - u01(rng)) * 24.0)
        if k >= n - r:
            k = n - r - 1
        return live[n - 1 - k]
    return live[r + randint(rng, n - r)]


@njit(nogil=True, cache=True)
def passive_tick(rng, st_fair, st_best, s, side, lad, allow_cross):
    """A price tick for a new resting order; never crossing unless allow_cross (pre-open)."""
    w = lad[s, 1]
    fair = st_fair[s]
    if allow_cross and u01(rng) < PREOPEN_CROSS_P:
        if side == BUY:
            return side, fair + randint(rng, 4)
        return side, fair - randint(rng, 4)
    d = ticks_behind(rng, w)
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
def advance_clock(g, rng, t1, left, cont):
    """Advance the clock towards t1 over `left` more messages, in bursts."""
    t = g[G_T]
    if cont:
        return t
    room = t1 - 1 - t
    if room <= 0:
        return t
    mu = room / (left + 1.0)
    if u01(rng) < 0.55:
        gap = mu * 0.05 * u01(rng)
    else:
        gap = mu * 2.16 * -math.log(1.0 - u01(rng))
    nt = t + np.int64(gap)
    if nt > t1 - 1:
        nt = t1 - 1
    g[G_T] = nt
    return nt


@njit(nogil=True, cache=True)
def next_match(g, mring, keep, s):
    """The next match number; kept (with stock s's locate) for a later B when keep."""
    m = g[G_MATCH] + 1
    g[G_MATCH] = m
    if keep:
        kept = m | (np.int64(s) << MRING_LOCATE_SHIFT)
        n = g[G_MRING_N]
        if n < MRING:
            mring[n] = kept
            g[G_MRING_N] = n + 1
        else:
            mring[m % MRING] = kept
    return m


@njit(nogil=True, cache=True)
def next_phase(g):
    g[G_PHASE] += 1
    g[G_PH_STARTED] = 0
    g[G_PEND] = 0


@njit(nogil=True, cache=True)
def take_shares(o, qq, g, lad, lv_head, lv_tail, o_stock, o_side, o_shares, o_price, o_prev, o_next, o_lpos, live,
                st_best, st_nside):
    """Execute qq shares of order o: it leaves the book when none are left."""
    o_shares[o] -= qq
    if o_shares[o] == 0:
        remove_order(o, g, lad, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                     o_lpos, live, st_best, st_nside)


@njit(nogil=True, cache=True)
def execute_order(out, p, g, counts, s, track, ts, o, qq, keep_match, mring, with_price, printable, price,
                  lad, lv_head, lv_tail, o_ref, o_stock, o_side, o_shares, o_price, o_prev, o_next, o_lpos, live,
                  st_best, st_nside):
    """Write an execution of qq shares of order o under the next match number (kept for B
    messages when keep_match) and take the shares off the book; returns p."""
    m = next_match(g, mring, keep_match, s)
    p = write_exec(out, p, g, counts, s, track, ts, o_ref[o], qq, m, with_price, printable, price)
    take_shares(o, qq, g, lad, lv_head, lv_tail, o_stock, o_side, o_shares, o_price, o_prev, o_next, o_lpos, live,
                st_best, st_nside)
    return p
