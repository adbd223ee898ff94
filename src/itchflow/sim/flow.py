"""Order flow, one message a step: adds, executions (sweeps), cancels, deletes, replaces, and the
phase's extras (NOII, positions, hidden trades, crosses, breaks, halts)."""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.sim.draws import executed_shares, new_ref, order_size, zipf_stock
from itchflow.sim.market import (
    advance_clock, execute_order, level_index, link_order, next_match, next_phase, passive_tick,
    pick_live, remove_order, unlink_order, walk_fair,
)
from itchflow.sim.rng import randint, u01
from itchflow.sim.state import (
    BUY, EX_B, EX_C, EX_HALT, EX_I, EX_L, EX_P, FL_ALLOW_CROSS, FL_LAST, FP_A, FP_D, FP_E, FP_F, FP_U,
    FP_X, G_CAP, G_CLOSE_ALL, G_EMITTED, G_EX0, G_FREE, G_HALT_DUE, G_HALT_STAGE, G_HALT_STOCK, G_K,
    G_LIVE, G_MRING_N, G_N, G_NOII_NEXT, G_NONHEAD, G_PEND, G_PEND_SIDE, G_PEND_STOCK, G_PH_LEFT,
    G_PEAK_LIVE, G_PH_STARTED, G_REST_CAP, G_REST_FROM, G_REST_SLOT, G_REST_I, G_REST_N, G_REST_OVER, G_RESTING, G_T, G_TARGET_LIVE, NONHEAD_P,
    MRING_LOCATE_SHIFT, N_EXTRA, PH_FLOW, SELL, SWEEP_MORE, SWEEP_P,
)
from itchflow.sim.writers import (
    raw_price, write_action, write_add, write_broken, write_cancel, write_collar, write_cross,
    write_delete, write_noii, write_position, write_replace, write_trade,
)


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see itchflow.sim.phases
def flow_step(p, ph, out, g, rng, refctr, counts, flow_p, ph_kind, ph_t0, ph_t1, ph_share, ph_fixed,
              ph_reserve, ph_arg, ph_extra, st_sym, st_cdf, st_fair, st_best, st_nside, st_tick,
              st_base, st_halted, st_track, st_mul, lad, lv_head, lv_tail, o_ref, o_stock, o_side, o_shares,
              o_price, o_prev, o_next, o_lpos, live, mring, mpids, reasons, rest_stock, rest_side, rest_off,
              ref_end):
    """One order-flow message (add, execute, cancel, delete, replace, or an extra); returns p."""
    n_total = g[G_N]
    k_stocks = g[G_K]
    n_phases = len(ph_kind)
    t0 = ph_t0[ph]
    t1 = ph_t1[ph]
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
                next_phase(g)
                return p
            o = live[n_live - 1]
            s = o_stock[o]
            ts = advance_clock(g, rng, t1, left if left > n_live else n_live, False)
            p = write_delete(out, p, g, counts, s, st_track[s], ts, o_ref[o])
            remove_order(o, g, lad, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                    o_lpos, live, st_best, st_nside)
            g[G_PH_LEFT] = left - 1
            return p
    if left <= 0:
        next_phase(g)
        return p
    g[G_PH_LEFT] = left - 1
    allow_cross = (flags & FL_ALLOW_CROSS) != 0

    # A halt in progress moves on when due (or when the phase is running out).
    hstage = g[G_HALT_STAGE]
    if hstage > 0 and (g[G_EMITTED] >= g[G_HALT_DUE] or left <= 4):
        s = g[G_HALT_STOCK]
        ts = advance_clock(g, rng, t1, left, False)
        fair = raw_price(st_base, st_tick, s, st_fair[s])
        if hstage == 1:
            p = write_collar(out, p, g, counts, s, st_track[s], ts, st_sym[s], fair, st_tick[s])
            g[G_HALT_STAGE] = 2
            g[G_HALT_DUE] = g[G_EMITTED] + left // 40
        elif hstage == 2:
            p = write_action(out, p, g, counts, s, st_track[s], ts, st_sym[s], 84, reasons[1])
            g[G_HALT_STAGE] = 3
        else:
            m = next_match(g, mring, False, s)
            p = write_cross(out, p, g, counts, s, st_track[s], ts, 100 * (1 + randint(rng, 300)) * st_mul[s],
                         st_sym[s], fair, m, 72)  # 'H': halt/IPO cross
            st_halted[s] = 0
            g[G_HALT_STAGE] = 0
        return p

    # The closing drain needs slack: near it, only messages that leave the book alone.
    if close_mode and left - n_live <= 2:
        g[G_PEND] = 0
        s = zipf_stock(rng, st_cdf)
        ts = advance_clock(g, rng, t1, left, False)
        m = next_match(g, mring, True, s)
        p = write_trade(out, p, g, counts, s, st_track[s], ts, BUY if u01(rng) < 0.5 else SELL,
                     order_size(rng, st_mul[s]), st_sym[s], raw_price(st_base, st_tick, s, st_fair[s]), m)
        return p

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
            o = lv_head[level_index(s, side, st_best[s, side], lad)]
            ts = g[G_T]
            sh = o_shares[o]
            qq = executed_shares(rng, sh)
            p = execute_order(out, p, g, counts, s, st_track[s], ts, o, qq, True, mring, False, 89,
                              0, lad, lv_head, lv_tail, o_ref, o_stock, o_side, o_shares, o_price, o_prev,
                              o_next, o_lpos, live, st_best, st_nside)
            if o_shares[o] > 0 or u01(rng) >= SWEEP_MORE:
                g[G_PEND] = 0
            return p
        g[G_PEND] = 0

    # Extras: drawn so that each kind's count for the phase comes out exact.
    if ex_left > 0 and (forced or u01(rng) * left < ex_left):
        r = randint(rng, ex_left)
        x = 0
        while r >= g[G_EX0 + x]:
            r -= g[G_EX0 + x]
            x += 1
        g[G_EX0 + x] -= 1
        ts = advance_clock(g, rng, t1, left, False)
        if x == EX_B and g[G_MRING_N] == 0:
            x = EX_P
        if x == EX_HALT and g[G_HALT_STAGE] != 0:
            x = EX_L
        if x == EX_I:
            s = g[G_NOII_NEXT]
            g[G_NOII_NEXT] = s + 1 if s < k_stocks else 1
            p = write_noii(out, p, g, counts, rng, s, st_track[s], ts, st_sym[s],
                        raw_price(st_base, st_tick, s, st_fair[s]), st_tick[s], ph_extra[ph, N_EXTRA],
                        st_mul[s])
        elif x == EX_L:
            s = zipf_stock(rng, st_cdf)
            p = write_position(out, p, g, counts, rng, s, st_track[s], ts, st_sym[s],
                            mpids[randint(rng, len(mpids))])
        elif x == EX_B:
            n = g[G_MRING_N]
            j = randint(rng, n)
            kept = mring[j]
            mring[j] = mring[n - 1]
            g[G_MRING_N] = n - 1
            s = kept >> MRING_LOCATE_SHIFT  # a B carries the locate of the trade it breaks
            p = write_broken(out, p, g, counts, s, st_track[s], ts, kept & ((1 << MRING_LOCATE_SHIFT) - 1))
        elif x == EX_HALT:
            s = zipf_stock(rng, st_cdf)
            st_halted[s] = 1
            g[G_HALT_STOCK] = s
            g[G_HALT_STAGE] = 1
            g[G_HALT_DUE] = g[G_EMITTED] + 1 + left // 200
            p = write_action(out, p, g, counts, s, st_track[s], ts, st_sym[s], 72, reasons[0])
        else:  # P (hidden order trade) or C (execution at a price other than displayed)
            s = zipf_stock(rng, st_cdf)
            if x == EX_C and st_halted[s] == 0 and st_nside[s, BUY] + st_nside[s, SELL] > 0:
                side = BUY if u01(rng) < 0.5 else SELL
                if st_nside[s, side] == 0:
                    side = 1 - side
                tick = st_best[s, side]
                o = lv_head[level_index(s, side, tick, lad)]
                sh = o_shares[o]
                qq = executed_shares(rng, sh)
                xt = tick + 1 if (side == SELL or tick == 0) else tick - 1
                p = execute_order(out, p, g, counts, s, st_track[s], ts, o, qq, True, mring, True, 89,
                                  raw_price(st_base, st_tick, s, xt), lad, lv_head, lv_tail, o_ref, o_stock,
                                  o_side, o_shares, o_price, o_prev, o_next, o_lpos, live, st_best, st_nside)
            else:
                if st_halted[s]:
                    s = 1 if s != 1 else 2
                    if s > k_stocks:
                        s = 1
                bid, ask = st_best[s, BUY], st_best[s, SELL]
                tick = st_fair[s]
                if bid >= 0 and ask < lad[s, 1] and bid < ask:
                    tick = bid + (ask - bid) // 2
                m = next_match(g, mring, True, s)
                p = write_trade(out, p, g, counts, s, st_track[s], ts, BUY if u01(rng) < 0.5 else SELL,
                             order_size(rng, st_mul[s]), st_sym[s], raw_price(st_base, st_tick, s, tick), m)
        return p

    # Orders that rest all day, far from the touch, spread evenly over the first part of the day
    # (only on days that ask for a live-order population: the default day has none).
    # They stop while the live orders are at the asked population, leaving room, until the end of
    # that first part, for the orders that come and go to reach their own target.
    n_rest = g[G_REST_N]
    if n_rest > 0 and not close_mode:
        ri = g[G_REST_I]
        since = g[G_EMITTED] - g[G_REST_FROM]
        room = g[G_REST_CAP] - n_live
        if since < g[G_REST_OVER]:
            short = g[G_TARGET_LIVE] - (n_live - g[G_RESTING])
            if short > 0:
                room -= short
        if ri < n_rest and room > 0 and since * n_rest >= ri * g[G_REST_OVER]:
            g[G_REST_I] = ri + 1
            ts = advance_clock(g, rng, t1, left, False)
            return add_resting(p, out, g, rng, refctr, counts, rest_stock[ri], rest_side[ri], rest_off[ri],
                               ts, st_sym, st_fair, st_best, st_nside, st_tick, st_base, st_track, st_mul, lad, lv_head,
                               lv_tail, o_ref, o_stock, o_side, o_shares, o_price, o_prev, o_next, o_lpos,
                               live, mpids, ref_end)

    # Order flow proper. Adds and deletes lean towards the live-order target (of the orders
    # that do not rest all day).
    ts = advance_clock(g, rng, t1, left, False)
    target = g[G_TARGET_LIVE]
    n_active = n_live - g[G_RESTING]
    dev = (target - n_active) / target
    if dev > 1.0:
        dev = 1.0
    elif dev < -1.0:
        dev = -1.0
    lean = 0.03 * dev
    u = u01(rng)
    if n_active == 0:
        act = FP_F if flow_p[FP_A] + lean <= u < flow_p[FP_F] + lean else FP_A
    elif n_active >= g[G_CAP] - 2:
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
        s = zipf_stock(rng, st_cdf)
        if st_nside[s, BUY] + st_nside[s, SELL] == 0:
            s = o_stock[pick_live(rng, g, live, False)]
        if st_halted[s]:
            act = FP_A
        else:
            side = BUY if u01(rng) < 0.5 else SELL
            if st_nside[s, side] == 0:
                side = 1 - side
            tick = st_best[s, side]
            o = lv_head[level_index(s, side, tick, lad)]
            if o_next[o] != -1 and u01(rng) < NONHEAD_P:
                o = o_next[o]  # executed by reference behind the head of the queue
                g[G_NONHEAD] += 1
            sh = o_shares[o]
            qq = executed_shares(rng, sh)
            p = execute_order(out, p, g, counts, s, st_track[s], ts, o, qq, True, mring, False, 89,
                              0, lad, lv_head, lv_tail, o_ref, o_stock, o_side, o_shares, o_price, o_prev,
                              o_next, o_lpos, live, st_best, st_nside)
            if o_shares[o] == 0:  # the order is gone: the event may sweep on to the next one
                if u01(rng) < SWEEP_P:
                    g[G_PEND] = 1
                    g[G_PEND_STOCK] = s
                    g[G_PEND_SIDE] = side
            walk_fair(rng, st_fair, s, lad)
            return p

    if act == FP_X:
        o = pick_live(rng, g, live, True)
        if o_shares[o] < 2:
            o = pick_live(rng, g, live, False)
        if o_shares[o] >= 2:
            s = o_stock[o]
            qq = 1 + randint(rng, o_shares[o] - 1)
            p = write_cancel(out, p, g, counts, s, st_track[s], ts, o_ref[o], qq)
            o_shares[o] -= qq
            return p
        act = FP_D

    if act == FP_D:
        o = pick_live(rng, g, live, True)
        s = o_stock[o]
        p = write_delete(out, p, g, counts, s, st_track[s], ts, o_ref[o])
        remove_order(o, g, lad, lv_head, lv_tail, o_stock, o_side, o_price, o_prev, o_next,
                o_lpos, live, st_best, st_nside)
        return p

    if act == FP_U:
        o = pick_live(rng, g, live, True)
        s = o_stock[o]
        side = o_side[o]
        w = lad[s, 1]
        tick = o_price[o] + randint(rng, 5) - 2
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
        if u01(rng) < 0.5:
            shares = order_size(rng, st_mul[s])
        new = new_ref(rng, refctr, g, ref_end)
        p = write_replace(out, p, g, counts, s, st_track[s], ts, o_ref[o], new, shares,
                       raw_price(st_base, st_tick, s, tick))
        unlink_order(o, s, side, o_price[o], lad, lv_head, lv_tail, o_prev, o_next, st_best, st_nside)
        o_ref[o] = new
        o_shares[o] = shares
        o_price[o] = tick
        link_order(o, s, side, tick, lad, lv_head, lv_tail, o_prev, o_next, st_best, st_nside)
        return p

    # Add (A, or F with a market participant ID).
    s = zipf_stock(rng, st_cdf)
    walk_fair(rng, st_fair, s, lad)
    side, tick = passive_tick(rng, st_fair, st_best, s, BUY if u01(rng) < 0.5 else SELL, lad,
                               allow_cross)
    shares = order_size(rng, st_mul[s])
    ref = new_ref(rng, refctr, g, ref_end)
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
    if pos + 1 > g[G_PEAK_LIVE]:
        g[G_PEAK_LIVE] = pos + 1
    link_order(o, s, side, tick, lad, lv_head, lv_tail, o_prev, o_next, st_best, st_nside)
    p = write_add(out, p, g, counts, s, st_track[s], ts, ref, side, shares, st_sym[s],
               raw_price(st_base, st_tick, s, tick), mpids[randint(rng, len(mpids))], act == FP_F)
    return p


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see itchflow.sim.phases
def add_resting(p, out, g, rng, refctr, counts, s, side, off, ts, st_sym, st_fair, st_best, st_nside, st_tick,
                st_base, st_track, st_mul, lad, lv_head, lv_tail, o_ref, o_stock, o_side, o_shares, o_price, o_prev,
                o_next, o_lpos, live, mpids, ref_end):
    """Add an order that rests all day, ``off`` ticks away from the stock's fair price on its
    side (or, when off < 0, at tick -off - 1 of its ladder: the levels of a deep book), never at
    or through the other side's touch; it joins live[0:G_RESTING]. Returns p."""
    w = lad[s, 1]
    fair = st_fair[s]
    if side == BUY:
        tick = fair - off if off >= 0 else -off - 1
        if tick < 0:
            tick = 0
        ask = st_best[s, SELL]
        if ask < w and tick >= ask:
            tick = ask - 1
        if tick < 0:  # no room under the ask: rest at the top of the ask ladder instead
            side, tick = SELL, w - 1
    else:
        tick = fair + off if off >= 0 else -off - 1
        if tick >= w:
            tick = w - 1
        bid = st_best[s, BUY]
        if bid >= 0 and tick <= bid:
            tick = bid + 1
        if tick >= w:
            side, tick = BUY, 0
    shares = order_size(rng, st_mul[s])
    ref = new_ref(rng, refctr, g, ref_end)
    # Resting orders have slots of their own, above the G_CAP slots the orders that come and go
    # share (which then stay close together in memory); a freed one joins the common free list.
    o = g[G_REST_SLOT]
    g[G_REST_SLOT] = o + 1
    o_ref[o] = ref
    o_stock[o] = s
    o_side[o] = side
    o_shares[o] = shares
    o_price[o] = tick
    n = g[G_LIVE]
    r = g[G_RESTING]
    if n > r:  # the first active order moves to the end to make room
        first = live[r]
        live[n] = first
        o_lpos[first] = n
    live[r] = o
    o_lpos[o] = r
    g[G_RESTING] = r + 1
    g[G_LIVE] = n + 1
    if n + 1 > g[G_PEAK_LIVE]:
        g[G_PEAK_LIVE] = n + 1
    link_order(o, s, side, tick, lad, lv_head, lv_tail, o_prev, o_next, st_best, st_nside)
    return write_add(out, p, g, counts, s, st_track[s], ts, ref, side, shares, st_sym[s],
                     raw_price(st_base, st_tick, s, tick), mpids[0], False)
