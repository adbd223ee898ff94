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
    """A growing int64 array of samples (one per batch or delivery, not per message)."""

    def __init__(self, initial: int = 1 << 16):
        self.a = np.zeros(initial, np.int64)
        self.n = 0

    def add(self, v: int) -> None:
        if self.n == len(self.a):
            self.a = np.concatenate([self.a, np.zeros_like(self.a)])
        self.a[self.n] = v
        self.n += 1

    def values(self) -> np.ndarray:
        return self.a[:self.n].copy()


def latency_summary(samples_ns: np.ndarray, count_key: str = "deliveries") -> dict:
    """count, p50/p90/p99/p99.9/max in microseconds; {} for no samples."""
    if len(samples_ns) == 0:
        return {}
    q = np.percentile(samples_ns, [50, 90, 99, 99.9])
    return {count_key: int(len(samples_ns)), "p50_us": q[0] / 1e3, "p90_us": q[1] / 1e3,
            "p99_us": q[2] / 1e3, "p99.9_us": q[3] / 1e3, "max_us": float(samples_ns.max()) / 1e3}
