"""libc calls for compiled code, declared with ``types.ExternalFunction`` (cacheable, unlike
ctypes pointers): the monotonic clock, process liveness, yielding, sleeping, and the futex.

Pointers are passed as int64 addresses (``array.ctypes.data``): on x86-64 an integer and a
pointer argument travel in the same register.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

CLOCK_MONOTONIC = 1
SYS_FUTEX = 202          # x86-64
FUTEX_WAIT = 0           # shared (not _PRIVATE): the word lives in a file mapped by several processes
FUTEX_WAKE = 1

_clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.int64))
_kill = types.ExternalFunction("kill", types.int32(types.int32, types.int32))
_sched_yield = types.ExternalFunction("sched_yield", types.int32())
_nanosleep = types.ExternalFunction("nanosleep", types.int32(types.int64, types.int64))
_syscall6 = types.ExternalFunction("syscall", types.int64(types.int64, types.int64, types.int64,
                                                          types.int64, types.int64, types.int64,
                                                          types.int64))


@njit(nogil=True, cache=True)
def monotonic_ns() -> int:
    """CLOCK_MONOTONIC in ns (vDSO, ~20 ns): the same clock in every process."""
    ts = np.empty(2, np.int64)
    _clock_gettime(CLOCK_MONOTONIC, ts.ctypes.data)
    return ts[0] * 1_000_000_000 + ts[1]


@njit(nogil=True, cache=True)
def pid_exists(pid: int) -> bool:
    """kill(pid, 0) == 0. A zombie (killed but not yet reaped) still exists; callers that must
    see SIGKILL promptly combine this with the heartbeat age."""
    if pid <= 0:
        return False
    return _kill(pid, 0) == 0


@njit(nogil=True, cache=True)
def yield_cpu() -> None:
    _sched_yield()


@njit(nogil=True, cache=True)
def sleep_ns(ns: int) -> None:
    ts = np.empty(2, np.int64)
    ts[0] = ns // 1_000_000_000
    ts[1] = ns % 1_000_000_000
    _nanosleep(ts.ctypes.data, 0)


@njit(nogil=True, cache=True)
def futex_wait(words, word_index: int, expected: int, timeout_ns: int) -> int:
    """Sleep while the low 32 bits of words[word_index] equal ``expected`` (at most timeout_ns)."""
    ts = np.empty(2, np.int64)
    ts[0] = timeout_ns // 1_000_000_000
    ts[1] = timeout_ns % 1_000_000_000
    addr = words.ctypes.data + word_index * 8
    return _syscall6(SYS_FUTEX, addr, FUTEX_WAIT, expected & 0xFFFFFFFF, ts.ctypes.data, 0, 0)


@njit(nogil=True, cache=True)
def futex_wake(words, word_index: int, n: int) -> int:
    addr = words.ctypes.data + word_index * 8
    return _syscall6(SYS_FUTEX, addr, FUTEX_WAKE, n, 0, 0, 0)
