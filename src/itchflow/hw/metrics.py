"""Clocks and latency summaries shared by the pipeline, the ring benchmark and the receivers.

The cycle counter (RDTSC, ~10 ns) is comparable across cores and processes on this hardware
(constant_tsc, nonstop_tsc); ``ticks_per_ns`` calibrates it against CLOCK_MONOTONIC once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.hw.atomics import read_cycle_counter
from itchflow.hw.syscalls import monotonic_ns


@njit(nogil=True, cache=True)
def tsc() -> int:
    """The cycle counter, callable from Python (~100 ns with the call) and from compiled code."""
    return read_cycle_counter()


@njit(nogil=True, cache=True)
def _calibrate(ns: int):
    t0 = monotonic_ns()
    c0 = read_cycle_counter()
    while monotonic_ns() - t0 < ns:
        pass
    t1 = monotonic_ns()
    c1 = read_cycle_counter()
    return (c1 - c0) / (t1 - t0)


def ticks_per_ns(window_ns: int = 20_000_000) -> float:
    """Cycle-counter ticks per nanosecond: median of three windows (60 ms by default)."""
    return float(np.median([_calibrate(window_ns) for _ in range(3)]))


class LatencyLog:
    """Latency samples (one per batch or delivery, not per message), in memory that stays
    bounded however long the run: past ``limit`` samples each new one replaces a kept one at
    random (a uniform sample of all of them, Vitter's algorithm R); ``count`` and ``max`` stay
    exact."""

    def __init__(self, initial: int = 1 << 16, limit: int = 1 << 22, seed: int = 0):
        self.limit = max(1, int(limit))
        self.a = np.zeros(min(initial, self.limit), np.int64)
        self.n = 0          # samples kept
        self.count = 0      # samples seen
        self.max = None
        self._rng = np.random.default_rng(seed)

    def add(self, v: int) -> None:
        self.count += 1
        if self.max is None or v > self.max:
            self.max = v
        if self.n < self.limit:
            if self.n == len(self.a):
                self.a = np.concatenate([self.a, np.zeros(min(len(self.a), self.limit - len(self.a)), np.int64)])
            self.a[self.n] = v
            self.n += 1
            return
        j = int(self._rng.integers(self.count))
        if j < self.limit:
            self.a[j] = v

    def values(self) -> np.ndarray:
        return self.a[:self.n].copy()


LATENCY_FIGURES = ("p50_us", "p90_us", "p99_us", "p99.9_us", "max_us")


def latency_summary(samples_ns: np.ndarray, count_key: str = "deliveries") -> dict:
    """count, p50/p90/p99/p99.9/max in microseconds; for no samples the same keys, a count of
    0 and None (JSON null) for each figure (probe 52: {} on an empty day, and a script's
    ``["p50_us"]`` raised KeyError where a busy day's gave a number)."""
    if len(samples_ns) == 0:
        return {count_key: 0, **{k: None for k in LATENCY_FIGURES}}
    q = np.percentile(samples_ns, [50, 90, 99, 99.9])
    figures = [*(float(v) / 1e3 for v in q), float(samples_ns.max()) / 1e3]   # (Python floats: a
    # report printed "np.float64(19244.404)", probe 57)
    return {count_key: int(len(samples_ns)), **dict(zip(LATENCY_FIGURES, figures))}
