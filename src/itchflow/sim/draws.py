"""The market model's random draws: which stock, order size, depth behind the touch, new
order references."""

from __future__ import annotations

from numba import njit

from itchflow.sim.rng import randint, u01
from itchflow.sim.state import FULL_EXEC_P


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
def new_ref(rng, refctr):
    """A fresh order reference: one of several interleaved ranges, with occasional jumps."""
    u = u01(rng)
    k = 0
    if u >= 0.5:
        k = 1 + randint(rng, len(refctr) - 1)
    step = 1
    if u01(rng) < 0.01:
        step += randint(rng, 5000)
    refctr[k] += step
    return refctr[k]


@njit(nogil=True, cache=True)
def executed_shares(rng, shares):
    """Shares an execution takes from an order of this size: all of it (FULL_EXEC_P), else
    part. (No draw for a one-share order.)"""
    if shares > 1 and u01(rng) >= FULL_EXEC_P:
        return 1 + randint(rng, shares - 1)
    return shares
