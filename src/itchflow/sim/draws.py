"""The market model's random draws: which stock, order size, depth behind the touch, new
order references."""

from __future__ import annotations

from numba import njit

from itchflow.sim.rng import randint, u01
from itchflow.sim.state import FULL_EXEC_P, G_MAX_REF, G_REF_JUMP, G_REF_JUMP_PPM, G_REF_SPILL


@njit(nogil=True, cache=True)
def zipf_stock(rng, cdf):
    u = u01(rng)
    lo, hi = 0, len(cdf) - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo + 1


@njit(nogil=True, cache=True)
def order_size(rng, mul):
    """Order size: odd lots, a round lot most often, multiples of 100, rare blocks."""
    u = u01(rng)
    if u < 0.22:
        v = 1 + randint(rng, 99)
    elif u < 0.70:
        v = 100
    elif u < 0.93:
        v = 100 * (2 + randint(rng, 9))
    elif u < 0.995:
        v = 100 * (10 + randint(rng, 91))
    else:
        v = 100 * (100 + randint(rng, 400))
    return v * mul


@njit(nogil=True, cache=True)
def ticks_behind(rng, w):
    """Ticks behind the touch for a passive order."""
    u = u01(rng)
    if u < 0.3:
        return 0
    if u < 0.8:
        return 1 + randint(rng, 4)
    if u < 0.96:
        return 5 + randint(rng, 26)
    return 31 + randint(rng, w // 8)


@njit(nogil=True, cache=True)
def new_ref(rng, refctr, g, ref_end):
    """A fresh order reference: one of several interleaved ranges (range k ends before
    ref_end[k]), with occasional jumps (a chance of g[G_REF_JUMP_PPM] per million, up to
    g[G_REF_JUMP] further). A range that runs full steps by one, then hands out references past
    every range, so references stay unique whatever the settings."""
    u = u01(rng)
    k = 0
    if u >= 0.5:
        k = 1 + randint(rng, len(refctr) - 1)
    step = 1
    if u01(rng) < g[G_REF_JUMP_PPM] / 1e6:
        step += randint(rng, g[G_REF_JUMP])
    v = refctr[k] + step
    if v >= ref_end[k]:
        v = refctr[k] + 1   # near the range's end: step by one (and count it: the range's next
        if v >= ref_end[k]:  # reference is after this one, never this one again)
            v = g[G_REF_SPILL]
            g[G_REF_SPILL] = v + 1
        else:
            refctr[k] = v
    else:
        refctr[k] = v
    if v > g[G_MAX_REF]:
        g[G_MAX_REF] = v
    return v


@njit(nogil=True, cache=True)
def executed_shares(rng, shares):
    """Shares an execution takes from an order of this size: all of it (FULL_EXEC_P), else
    part. (No draw for a one-share order.)"""
    if shares > 1 and u01(rng) >= FULL_EXEC_P:
        return 1 + randint(rng, shares - 1)
    return shares
