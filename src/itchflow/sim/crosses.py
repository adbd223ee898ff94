"""The opening and closing crosses: uncross each stock's book at one price, one message a step."""

from __future__ import annotations

from numba import njit

from itchflow.sim.market import advance_clock, execute_order, level_index, next_match, next_phase
from itchflow.sim.rng import randint, u01
from itchflow.sim.state import (
    BUY, G_K, G_PEND, G_PEND_Q, G_PEND_SLOT, G_PH_STARTED, G_T, G_X_LEFT, G_X_PRICE, G_X_SHARES,
    G_X_SIDE, G_X_STAGE, G_X_STOCK, SELL,
)
from itchflow.sim.writers import raw_price, write_cross


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see itchflow.sim.phases
def cross_step(p, ph, out, g, rng, counts, ph_t0, ph_t1, ph_arg, st_sym, st_fair, st_best, st_nside,
               st_tick, st_base, st_track, st_mul, st_close_n, lad, lv_head, lv_tail, o_ref, o_stock, o_side,
               o_shares, o_price, o_prev, o_next, o_lpos, live, mring):
    """One message of an opening/closing cross (uncross, executions, the print); returns p."""
    k_stocks = g[G_K]
    t0 = ph_t0[ph]
    t1 = ph_t1[ph]
    if g[G_PH_STARTED] == 0:
        g[G_PH_STARTED] = 1
        g[G_X_STOCK] = 1
        g[G_X_STAGE] = 0
        if g[G_T] < t0:
            g[G_T] = t0
    s = g[G_X_STOCK]
    if s > k_stocks:
        next_phase(g)
        return p
    w = lad[s, 1]
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
                b = lv_head[level_index(s, BUY, bi, lad)]
                a = lv_head[level_index(s, SELL, ai, lad)]
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
                            b = lv_head[level_index(s, BUY, bi, lad)]
                        if bi < 0:
                            break
                        bq = o_shares[b]
                    if aq == 0:
                        a = o_next[a]
                        while a == -1:
                            ai += 1
                            if ai >= w:
                                break
                            a = lv_head[level_index(s, SELL, ai, lad)]
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
            side = BUY if u01(rng) < 0.5 else SELL
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
        return p
    cprice = raw_price(st_base, st_tick, s, g[G_X_PRICE])
    if stage == 1:  # opening uncross, one C per message (bid then ask of each pair)
        if g[G_PEND] == 2:
            a = g[G_PEND_SLOT]
            qq = g[G_PEND_Q]
            ts = advance_clock(g, rng, t1, left_est, False)
            p = execute_order(out, p, g, counts, s, track, ts, a, qq, False, mring, True, 78,
                              cprice, lad, lv_head, lv_tail, o_ref, o_stock, o_side, o_shares, o_price, o_prev,
                              o_next, o_lpos, live, st_best, st_nside)
            g[G_PEND] = 0
            return p
        bid, ask = st_best[s, BUY], st_best[s, SELL]
        if bid >= 0 and ask < w and bid >= ask:
            b = lv_head[level_index(s, BUY, bid, lad)]
            a = lv_head[level_index(s, SELL, ask, lad)]
            qq = o_shares[b] if o_shares[b] < o_shares[a] else o_shares[a]
            ts = advance_clock(g, rng, t1, left_est, False)
            p = execute_order(out, p, g, counts, s, track, ts, b, qq, False, mring, True, 78,
                              cprice, lad, lv_head, lv_tail, o_ref, o_stock, o_side, o_shares, o_price, o_prev,
                              o_next, o_lpos, live, st_best, st_nside)
            g[G_X_SHARES] += qq
            g[G_PEND] = 2
            g[G_PEND_SLOT] = a
            g[G_PEND_Q] = qq
            return p
        g[G_X_STAGE] = 3
        return p
    if stage == 2:  # closing cross executions at the touch of one side
        side = g[G_X_SIDE]
        tick = g[G_X_PRICE]
        if g[G_X_LEFT] > 0 and st_nside[s, side] > 0 and st_best[s, side] == tick:
            o = lv_head[level_index(s, side, tick, lad)]
            sh = o_shares[o]
            qq = sh
            if sh > 1 and u01(rng) < 0.3:
                qq = 1 + randint(rng, sh - 1)
            ts = advance_clock(g, rng, t1, left_est, False)
            p = execute_order(out, p, g, counts, s, track, ts, o, qq, False, mring, True, 78,
                              cprice, lad, lv_head, lv_tail, o_ref, o_stock, o_side, o_shares, o_price, o_prev,
                              o_next, o_lpos, live, st_best, st_nside)
            g[G_X_SHARES] += qq
            g[G_X_LEFT] -= 1
            return p
        g[G_X_STAGE] = 3
        return p
    # stage 3: the cross print
    ts = advance_clock(g, rng, t1, left_est, False)
    m = next_match(g, mring, False, s)
    extra = 100 * (1 + randint(rng, 500)) * st_mul[s]
    p = write_cross(out, p, g, counts, s, track, ts, g[G_X_SHARES] + extra, sym, cprice, m,
                 cross_type)
    g[G_X_STOCK] = s + 1
    g[G_X_STAGE] = 0
    return p
