"""The generator's step loop: one ITCH message per step, phase by phase (system events, the
directory, order flow, crosses), until the output buffer is nearly full or the day is over.

``run`` can stop at any message boundary and carry on later from exactly where it was (all
state is in the arrays it is given): the bytes of a day do not depend on how it is cut into
chunks. ``itchflow.sim.generator`` builds the phase table and the arrays.

Why ``_nrt=False`` on run and the phase steps: each step is a call passing some 40 arrays,
and with Numba's reference counting on, every call increments and decrements each one
(atomic instructions): that made the generator 4x slower than one big loop. Nothing here
allocates, so they compile without the runtime, as the book engine does.
"""

from __future__ import annotations

from numba import njit

from itchflow.sim.crosses import cross_step
from itchflow.sim.flow import flow_step
from itchflow.sim.market import next_phase
from itchflow.sim.state import G_ADMIN_I, G_DONE, G_EMITTED, G_PHASE, G_T, PH_ADMIN, PH_CROSS, PH_END, PH_SYS
from itchflow.sim.wire_offsets import FRAME, HDR_TS, HDR_TS_N, HDR_TYPE, MAX_FRAMED
from itchflow.sim.writers import write_sys


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see the module docstring
def run(out, g, rng, refctr, counts, flow_p,
        ph_kind, ph_t0, ph_t1, ph_share, ph_fixed, ph_reserve, ph_arg, ph_extra,
        admin_blob, admin_off,
        st_sym, st_cdf, st_fair, st_best, st_nside, st_tick, st_base, st_halted, st_track,
        st_mul, st_close_n, lad,
        lv_head, lv_tail,
        o_ref, o_stock, o_side, o_shares, o_price, o_prev, o_next, o_lpos, live,
        mring, mpids, reasons, rest_stock, rest_side, rest_off, ref_end):
    """Write whole messages into out until it is nearly full or the day is over.

    Returns the number of bytes written. reasons: uint8[2, 4] halt reason codes
    (row 0 for a halt, row 1 for the resumption).
    """
    p = 0
    limit = len(out) - MAX_FRAMED
    n_phases = len(ph_kind)
    while p <= limit and g[G_DONE] == 0:
        ph = g[G_PHASE]
        if ph >= n_phases:
            g[G_DONE] = 1
            break
        kind = ph_kind[ph]
        t0 = ph_t0[ph]

        # ---------------------------------------------------------------- system event
        if kind == PH_SYS:
            if g[G_T] < t0:
                g[G_T] = t0
            p = write_sys(out, p, g, counts, g[G_T], ph_arg[ph])
            next_phase(g)
            continue

        if kind == PH_END:
            g[G_DONE] = 1
            break

        # ---------------------------------------------------------------- directory etc.
        if kind == PH_ADMIN:
            p = admin_step(p, out, g, counts, admin_blob, admin_off)
            continue
        if kind == PH_CROSS:
            p = cross_step(p, ph, out, g, rng, counts, ph_t0, ph_t1, ph_arg, st_sym, st_fair,
                st_best, st_nside, st_tick, st_base, st_track, st_mul, st_close_n, lad, lv_head, lv_tail,
                o_ref, o_stock, o_side, o_shares, o_price, o_prev, o_next, o_lpos, live, mring)
            continue
        p = flow_step(p, ph, out, g, rng, refctr, counts, flow_p, ph_kind, ph_t0, ph_t1,
                ph_share, ph_fixed, ph_reserve, ph_arg, ph_extra, st_sym, st_cdf, st_fair, st_best,
                st_nside, st_tick, st_base, st_halted, st_track, st_mul, lad, lv_head, lv_tail, o_ref,
                o_stock, o_side, o_shares, o_price, o_prev, o_next, o_lpos, live, mring, mpids,
                reasons, rest_stock, rest_side, rest_off, ref_end)
    return p


@njit(nogil=True, cache=True, _nrt=False)  # no refcounting: see the module docstring
def admin_step(p, out, g, counts, admin_blob, admin_off):
    """One stock directory (or other pre-trading) message from the prepared blob; returns p."""
    i = g[G_ADMIN_I]
    if i >= len(admin_off) - 1:
        next_phase(g)
        return p
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
    return p
