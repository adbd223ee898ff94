"""Wait strategies for a side that found nothing to do (consumer: no record; producer: full).

    SPIN   busy-spin with the PAUSE hint: lowest latency, burns a core.
    YIELD  spin a while, then sched_yield() each time: for oversubscribed machines. A reader
           that has found nothing for LONG_IDLE_NS sleeps LONG_IDLE_SLEEP_NS between polls
           instead (a quiet feed costs about 1% of a core, not all of it; the first record
           after such a spell waits up to that long).
    SLEEP  spin, yield, then nanosleep with exponential backoff up to a cap.
    BLOCK  spin, then sleep on a futex in the ring file that the producer bumps after a publish
           (consumers only). The producer pays one load of a cached 'waiters' word per publish
           while every consumer is awake, nothing else. The producer does not fence between its
           publish and that load, so in a rare interleaving a sleeper can miss its wake-up; the
           futex wait therefore has a short timeout (BLOCK_MAX_SLEEP_NS) that bounds the damage.

``idle(strategy, n)`` is called with the number of consecutive empty polls so far.
"""

from __future__ import annotations

import math
import time

from numba import njit

from itchflow.hw.atomics import cpu_pause, fetch_add, load_acquire
from itchflow.ring.layout import PRODUCER_CLOSED, W_FUTEX, W_PROD_STATE, W_WAITERS
from itchflow.hw.syscalls import futex_wait, sleep_ns, yield_cpu

SPIN, YIELD, SLEEP, BLOCK = 0, 1, 2, 3
STRATEGIES = {"spin": SPIN, "yield": YIELD, "sleep": SLEEP, "block": BLOCK}

SPIN_TRIES = 4096          # empty polls spent spinning before backing off (~20-40 us)
YIELD_TRIES = 256          # then this many sched_yield()s
SLEEP_MIN_NS = 1_000
SLEEP_MAX_NS = 1_000_000
BLOCK_MAX_SLEEP_NS = 1_000_000
LONG_IDLE_NS = 50_000_000          # a reader's yielding turns to sleeping after this long with nothing
LONG_IDLE_SLEEP_NS = 100_000


@njit(nogil=True, cache=True, _nrt=False)
def idle(strategy: int, n: int) -> None:
    """Back off once. BLOCK behaves as SLEEP here (futex sleeping needs the ring: block_on)."""
    if strategy == SPIN or n < SPIN_TRIES:
        cpu_pause()
        return
    if strategy == YIELD or n < SPIN_TRIES + YIELD_TRIES:
        yield_cpu()
        return
    k = n - SPIN_TRIES - YIELD_TRIES
    ns = SLEEP_MIN_NS << min(k, 10)
    sleep_ns(min(ns, SLEEP_MAX_NS))


@njit(nogil=True, cache=True, _nrt=False)
def block_on(words, watch_index: int, timeout_ns: int) -> None:
    """Sleep on the ring's futex while words[watch_index] is still 0 (the next record header).

    Register as a waiter first (a locked add: visible before the re-check), then re-check, then
    sleep. The producer bumps the futex word and wakes all sleepers when it sees waiters != 0.
    """
    fetch_add(words, W_WAITERS, 1)
    seen = load_acquire(words, W_FUTEX)
    # the header, and the producer's state: a close changes no header (its wake bumps the word)
    if load_acquire(words, watch_index) == 0 and load_acquire(words, W_PROD_STATE) != PRODUCER_CLOSED:
        futex_wait(words, W_FUTEX, seen, min(timeout_ns, BLOCK_MAX_SLEEP_NS))
    fetch_add(words, W_WAITERS, -1)


# A wait longer than this returns to Python between slices, so that Ctrl-C (a signal handler,
# which runs only there) can end it: the compiled waits never return on their own. The hot
# path pays one comparison.
WAIT_SLICE_NS = 100_000_000


def first_slice(t: int) -> int:
    """The time-out for a compiled wait's first call: ``t`` itself when it is at most a slice."""
    return t if 0 <= t <= WAIT_SLICE_NS else WAIT_SLICE_NS


def wait_in_slices(call, t: int, nothing: int, started: int) -> int:
    """Go on waiting after a first slice (``first_slice``) found nothing: ``call(ns)`` again, a
    slice at a time, until it returns something other than ``nothing`` or ``t`` ns (for ever
    if negative) have passed since ``started`` (``time.monotonic_ns()`` before the first slice:
    a slice may last longer than asked, a sleeping wait reading its clock between sleeps)."""
    deadline = None if t < 0 else started + t
    while True:
        left = WAIT_SLICE_NS if deadline is None else min(WAIT_SLICE_NS, deadline - time.monotonic_ns())
        if left < 0:
            return nothing
        n = call(left)
        if n != nothing:
            return n


def strategy_code(wait: str) -> int:
    """The kernels' code for a strategy name; ValueError naming the choices."""
    try:
        return STRATEGIES[wait]
    except KeyError:
        raise ValueError(f"wait must be one of {sorted(STRATEGIES)}, got {wait!r}") from None


def timeout_ns(timeout: float | None) -> int:
    """Seconds (None or infinity: forever) as the kernels' nanoseconds (-1: forever); a
    negative or NaN time-out is a ValueError (a NaN one would never fire, nor convert)."""
    if timeout is None or timeout == math.inf:
        return -1
    if not timeout >= 0:
        raise ValueError(f"timeout must be None or a number of seconds at least 0 (got {timeout!r})")
    if timeout >= 2**62 / 1e9:   # (1e20 or 1e300 s: as good as for ever; timeout * 1e9 may be inf)
        return 2**62
    return int(timeout * 1e9)
