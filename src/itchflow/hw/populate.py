"""Faulting in an array's pages ahead of use, on another thread.

The engine's tables are allocated lazily (np.zeros: a page costs nothing until touched) and
touched at random, so a big day faults in every page of them while it is applied. A fault
is dear where memory is fresh to the process: on this project's 2-vCPU KVM guest, touching
128 MiB never used before costs 210-375 ms with huge pages (the host backs the guest's memory
on first use), about a quarter of a 10 M-message day's time. MADV_POPULATE_WRITE (Linux
5.14) takes those faults in one call without writing anything, so it may run while the
engine writes the same array, and a thread making the call leaves the GIL (ctypes), so it
runs on the other core while a kernel runs on this one.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import threading

import numpy as np

MADV_POPULATE_WRITE = 23    # linux/mman.h, since 5.14
PAGE = mmap.PAGESIZE
STEP = 32 << 20             # one call a step: a thread's calls interleave with the engine's own faults
# Outputs made fresh for one call (read's per-type arrays) are
# populated on another thread from this size on: below it a thread costs more than the faults.
POPULATE_OUTPUT_BYTES = 16 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int


def populate(array: np.ndarray, start: int = 0, stop: int | None = None) -> bool:
    """Fault in for writing the whole pages inside bytes [start, stop) of a contiguous array
    (default: all of it), without changing a byte. False when the kernel cannot (older than
    5.14, or memory it will not populate this way); the pages are then faulted in as used."""
    if not array.flags.c_contiguous:
        raise ValueError("populate() takes a contiguous array")
    stop = array.nbytes if stop is None else min(int(stop), array.nbytes)
    base = array.ctypes.data
    lo = -(-(base + max(0, int(start))) // PAGE) * PAGE
    hi = (base + stop) // PAGE * PAGE
    ok = True
    while ok and lo < hi:
        n = min(STEP, hi - lo)
        ok = _libc.madvise(lo, n, MADV_POPULATE_WRITE) == 0
        lo += n
    return ok


_state = threading.local()   # .off: inside ``one_core()`` on this thread


@contextlib.contextmanager
def one_core():
    """Inside it, on this thread, ``populate_in_background`` does nothing (the pages fault in
    as they are used, on the caller's core): for a figure that says "one core" against a
    one-thread peer (the benchmarks; probe 23 found the helper thread inside their clocks)."""
    before = getattr(_state, "off", False)
    _state.off = True
    try:
        yield
    finally:
        _state.off = before


class _NotStarted:
    """What ``populate_in_background`` returns inside ``one_core()``: joins at once, populated nothing."""

    populated = False
    name = "itchflow-populate-off"

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False


_NOT_STARTED = _NotStarted()


def populate_in_background(*parts) -> "threading.Thread | _NotStarted":
    """A daemon thread populating each part, an array or (array, start byte, stop byte), in
    order. The thread holds the arrays until it is done; nothing waits for it. Its
    ``populated`` attribute says, once it is done, whether every part was populated (False,
    at once, inside ``one_core()``)."""
    if getattr(_state, "off", False):
        return _NOT_STARTED   # no thread at all: a figure taken as "one core" starts none

    def run():
        for p in parts:
            array, start, stop = (p, 0, None) if isinstance(p, np.ndarray) else p
            if not populate(array, start, stop):
                t.populated = False
                return  # this kernel cannot: the pages fault in as the engine uses them

    t = threading.Thread(target=run, name="itchflow-populate", daemon=True)
    t.populated = True
    t.start()
    return t
