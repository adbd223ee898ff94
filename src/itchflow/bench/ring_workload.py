"""A deterministic record stream for stress tests and the benchmark: record i has a length and
contents that are a pure function of i (splitmix64), starts with i itself and ends with an
FNV-1a checksum of what precedes it. A reader that regenerates record i and compares every
byte detects loss, duplication, reordering and torn records; the embedded index also tells
a lossy reader exactly which records it skipped.

``produce`` and ``consume`` drive the ring kernels from compiled loops (one process each).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.ring import consumer as C
from itchflow.ring import producer as P
from itchflow.hw.syscalls import sleep_ns

MIN_PAYLOAD = 12  # index (8) + checksum (4)


@njit(nogil=True, cache=True)
def splitmix64(x: int) -> int:
    z = np.uint64(x) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return np.int64(z & np.uint64(0x7FFFFFFFFFFFFFFF))


@njit(nogil=True, cache=True)
def record_length(i: int, lo: int, hi: int) -> int:
    return lo + splitmix64(i * 2 + 1) % (hi - lo + 1)


@njit(nogil=True, cache=True)
def record_type(i: int) -> int:
    return i % 1000


@njit(nogil=True, cache=True)
def fill_record(buf, o: int, i: int, ln: int) -> None:
    """Write record i (ln >= 12 bytes) at buf[o:o+ln]."""
    for k in range(8):
        buf[o + k] = (i >> (8 * k)) & 0xFF
    h = splitmix64(i)
    for k in range(8, ln - 4):
        buf[o + k] = (h >> (8 * (k & 7))) & 0xFF ^ (k & 0xFF)
    f = np.uint32(2166136261)
    for k in range(ln - 4):
        f = (f ^ np.uint32(buf[o + k])) * np.uint32(16777619)
    for k in range(4):
        buf[o + ln - 4 + k] = (f >> np.uint32(8 * k)) & np.uint32(0xFF)


@njit(nogil=True, cache=True)
def record_index(buf, o: int) -> int:
    i = 0
    for k in range(8):
        i |= np.int64(buf[o + k]) << (8 * k)
    return i


@njit(nogil=True, cache=True)
def check_record(buf, o: int, ln: int, i: int, lo: int, hi: int) -> bool:
    """True if buf[o:o+ln] is exactly record i: index, length, every byte, checksum."""
    if ln != record_length(i, lo, hi) or record_index(buf, o) != i:
        return False
    h = splitmix64(i)
    f = np.uint32(2166136261)
    for k in range(ln - 4):
        b = buf[o + k]
        if k >= 8 and b != ((h >> (8 * (k & 7))) & 0xFF ^ (k & 0xFF)):
            return False
        f = (f ^ np.uint32(b)) * np.uint32(16777619)
    for k in range(4):
        if buf[o + ln - 4 + k] != (f >> np.uint32(8 * k)) & np.uint32(0xFF):
            return False
    return True


@njit(nogil=True, cache=True, _nrt=False)
def produce(words, data, ps, first: int, n: int, lo: int, hi: int, max_batch: int,
            strategy: int, timeout_ns: int) -> int:
    """Publish records first..first+n-1 in batches of 1..max_batch records (sizes random but
    reproducible). Returns the next index, or a negative code."""
    i = first
    end = first + n
    while i < end:
        b = 1 + splitmix64(i * 7 + 3) % max_batch
        b = min(b, end - i)
        for _ in range(b):
            ln = record_length(i, lo, hi)
            o = P.claim(words, ps, ln, record_type(i))
            if o == P.FULL:
                o = P.claim_wait(words, ps, ln, record_type(i), strategy, timeout_ns)
            if o < 0:
                return o
            fill_record(data, o, i, ln)
            i += 1
        P.commit(words, ps)
    return i


@njit(nogil=True, cache=True)
def consume(words, data, cs, stop_at: int, lo: int, hi: int, max_batch: int, strategy: int,
            timeout_ns: int, progress, out, stall_every: int = 0, stall_ns: int = 0) -> int:
    """Read and verify records until the records index reaches stop_at. Each record must be the
    one the records index says (so a lossy reader's loss accounting is checked record by
    record). Keeps reading through PRODUCER_GONE (a producer may restart), counting it.
    progress[0] = highest verified index + 1 (for a parent watching a child).
    out: [0] records verified, [1] bad records, [2] producer-gone events, [3] first bad index,
    [4] last status. stall_every/stall_ns: sleep that long every that many batches (to be
    lapped on purpose). Returns 0, or the negative status that stopped it."""
    off = np.empty(max_batch, np.int64)
    lens = np.empty(max_batch, np.int64)
    typ = np.empty(max_batch, np.int64)
    copy = np.empty(max_batch * (hi + 8), np.uint8)
    lossy = cs[C.C_MODE] == 1
    out[3] = -1
    batches = 0
    while cs[C.C_REC] < stop_at:
        batches += 1
        if stall_every > 0 and batches % stall_every == 0:
            sleep_ns(stall_ns)
        before = cs[C.C_REC]
        n = C.wait_poll(words, data, cs, max_batch, copy, off, lens, typ, strategy, timeout_ns)
        if n == C.PRODUCER_GONE:
            out[2] += 1
            C.commit(words, cs)
            continue
        if n == C.PRODUCER_CLOSED and cs[C.C_REC] >= stop_at:
            break   # a lossy reader may reach the end by a lap resume
        if n <= 0:
            out[4] = n
            C.commit(words, cs)
            return n if n < 0 else -100
        if lossy:
            before = cs[C.C_REC] - n   # a lap may have moved the cursor before this batch
        buf = copy if lossy else data
        for k in range(n):
            i = before + k
            if typ[k] != record_type(i) or not check_record(buf, off[k], lens[k], i, lo, hi):
                if out[1] == 0:
                    out[3] = i
                out[1] += 1
            else:
                out[0] += 1
        progress[0] = before + n
        r = C.commit(words, cs)
        if r < 0:
            out[4] = r
            return r
    return 0
