"""Consumer kernels (Numba-callable): poll a batch, commit it, wait.

A consumer polls the header word of the next record itself (not a separate tail word): when the
producer publishes, the consumer pays one cache-line transfer, the line that also holds the
record. The private state ``cs`` is an int64 array (C_* indices), built by ``new_consumer_state``.

Blocking mode (``poll``): zero-copy. The records returned stay valid until ``commit``; the
producer cannot overwrite them unless it detaches this consumer for missing heartbeats (a pause
past the timeout: GC, swap, SIGSTOP). ``validate_read``, called after the records were used
and before the result is trusted, reports that (DETACHED), seqlock style; so does ``commit``.

Lossy mode (``poll_copy``): the producer may lap the reader at any moment, so records are copied
out, then validated against the producer's tail_intent (seqlock style: read data, acquire
fence, read the intent). If the producer got within one capacity of what was read, the copy is
discarded and the reader jumps to the live edge, adding exactly the records and payload bytes
it skipped to its loss counters (the edge carries records/payload totals under a seqlock).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.hw.atomics import cpu_pause, fence_acquire, load_acquire, load_relaxed, store_relaxed, store_release
from itchflow.hw.memcopy import copy_bytes
from itchflow.hw.syscalls import monotonic_ns, pid_exists, sleep_ns
from itchflow.ring import layout as L
from itchflow.ring.record_header import header_fault
from itchflow.ring.wait import BLOCK, LONG_IDLE_NS, LONG_IDLE_SLEEP_NS, SPIN_TRIES, YIELD, block_on, idle

C_POS = 0          # next record to poll
C_REC = 1          # records index at C_POS (records published before it)
C_PAY = 2          # payload index at C_POS
C_SLOT = 3         # word index of our slot
C_CAP = 4
C_MASK = 5
C_DATA_WORD = 6
C_MAX_PAYLOAD = 7
C_MODE = 8
C_HB_COUNTDOWN = 9
# The Python Reader's bookkeeping, kept here so that one compiled call does it all:
C_PENDING = 10     # 1 while the last read's records are not committed (the next read commits them)
C_BEFORE = 11      # C_BEFORE..+2: the cursor (pos, rec, pay) where the last read began (give_back)
C_ONE_OFF = 14     # read_one's record: offset (in the data region or the copy buffer), length, type
C_ONE_LEN = 15
C_ONE_TYPE = 16
C_IDLE_SINCE = 17  # monotonic ns when the reader last found the ring empty after a record (0: not idle)
C_FIELDS = 18

HEARTBEAT_EVERY = 256
CHECK_PEER_NS = 1_000_000

DETACHED = -5
CORRUPT = -6
PRODUCER_GONE = -7
PRODUCER_CLOSED = -8
COMMIT_DETACHED = -9   # read_step: detached before the commit of the last batch (it may have been overwritten)
NOTHING = -10          # read_one: nothing arrived within the time-out (0 is a record of 0 bytes)
OFF_THE_EDGE = -11     # the cursor disagrees with the published edge (a header written over: see below)


@njit(nogil=True, cache=True)
def new_consumer_state(words, slot: int, geometry) -> np.ndarray:
    """Private state for slot ``slot``, starting at its committed snapshot. The bounds come
    from ``geometry`` (``Ring.geometry``: validated at open), not from the shared header."""
    cs = np.zeros(C_FIELDS, np.int64)
    b = L.CONSUMERS_WORD + slot * L.SLOT_WORDS
    cs[C_SLOT] = b
    cs[C_CAP] = geometry[L.G_CAPACITY]
    cs[C_MASK] = geometry[L.G_CAPACITY] - 1
    cs[C_DATA_WORD] = geometry[L.G_HEADER_BYTES] >> 3
    cs[C_MAX_PAYLOAD] = geometry[L.G_MAX_PAYLOAD]
    cs[C_MODE] = geometry[L.G_MODE]
    idx = load_acquire(words, b + L.S_COMMIT_IDX) & 1
    cs[C_POS] = load_relaxed(words, b + L.S_COMMIT0 + 3 * idx)
    cs[C_REC] = load_relaxed(words, b + L.S_COMMIT0 + 3 * idx + 1)
    cs[C_PAY] = load_relaxed(words, b + L.S_COMMIT0 + 3 * idx + 2)
    return cs


@njit(nogil=True, cache=True, _nrt=False)
def set_start(words, cs, pos: int, rec: int, pay: int) -> None:
    """Move the cursor (join or resume) and commit it."""
    cs[C_POS] = pos
    cs[C_REC] = rec
    cs[C_PAY] = pay
    commit(words, cs)


@njit(nogil=True, cache=True, _nrt=False)
def edge_triple(words):
    """The published (position, records, payload) triple, read consistently. If the seqlock
    stays odd (a producer died mid-update) and no producer may still publish (none open, or
    ``producer_status``: its pid gone or its heartbeat stale; a reused pid alone does not keep
    us here), the words are taken as they are: the next producer's recovery rewrites them from
    the data anyway."""
    tries = 0
    while True:
        s1 = load_acquire(words, L.W_EDGE_SEQ)
        pos = load_relaxed(words, L.W_EDGE_POS)
        rec = load_relaxed(words, L.W_EDGE_REC)
        pay = load_relaxed(words, L.W_EDGE_PAY)
        fence_acquire()
        if (s1 & 1) == 0 and load_relaxed(words, L.W_EDGE_SEQ) == s1:
            return pos, rec, pay
        tries += 1
        if (tries & 0xFFFF) == 0 and (load_relaxed(words, L.W_PROD_STATE) != L.PRODUCER_OPEN
                                      or producer_status(words) != 0):
            return pos, rec, pay
        cpu_pause()


@njit(nogil=True, cache=True)
def read_edge(words, out) -> None:
    """out[0:3] = edge_triple(words)."""
    out[0], out[1], out[2] = edge_triple(words)


def published_edge(words) -> tuple[int, int, int]:
    """edge_triple from Python: the published (position, records, payload bytes)."""
    e = np.empty(3, np.int64)
    read_edge(words, e)
    return int(e[0]), int(e[1]), int(e[2])


@njit(nogil=True, cache=True, _nrt=False)
def heartbeat(words, cs) -> None:
    store_relaxed(words, cs[C_SLOT] + L.S_HB, monotonic_ns())
    cs[C_HB_COUNTDOWN] = HEARTBEAT_EVERY


@njit(inline="always", nogil=True, cache=True, _nrt=False)
def store_snapshot(words, b, pos, rec, pay) -> None:
    """Make (pos, rec, pay) slot b's commit snapshot: written into the snapshot that is not
    current, then made current by one release store of the index, so that no reader (nor a
    restart after a kill in between) sees half of one. Both sides write it (the consumer as it
    commits, the producer as it attaches a joiner), so the index is read from the slot, never
    remembered: a remembered one made the consumer's first commit after a join overwrite the
    snapshot the producer had just made current."""
    k = 1 - (load_relaxed(words, b + L.S_COMMIT_IDX) & 1)
    s = b + L.S_COMMIT0 + 3 * k
    store_relaxed(words, s, pos)
    store_relaxed(words, s + 1, rec)
    store_relaxed(words, s + 2, pay)
    store_release(words, b + L.S_COMMIT_IDX, k)   # the snapshot is complete before it is current


@njit(nogil=True, cache=True, _nrt=False)
def commit(words, cs) -> int:
    """Tell the producer everything before the cursor is consumed. Returns 0, or DETACHED if the
    producer detached us meanwhile (then what the last poll returned may have been overwritten)."""
    b = cs[C_SLOT]
    store_snapshot(words, b, cs[C_POS], cs[C_REC], cs[C_PAY])
    store_release(words, b + L.S_POS, cs[C_POS])
    cs[C_HB_COUNTDOWN] -= 1
    if cs[C_HB_COUNTDOWN] <= 0:
        heartbeat(words, cs)
    if cs[C_MODE] == L.MODE_BLOCKING and load_acquire(words, b + L.S_STATE) != L.SLOT_ATTACHED:
        return DETACHED
    return 0


@njit(nogil=True, cache=True, _nrt=False)
def poll(words, cs, max_n: int, out_off, out_len, out_type) -> int:
    """Blocking mode: up to max_n published records from the cursor, zero-copy: their payload
    offsets (in the data region), lengths and types. Advances the cursor, not the commit. A
    corrupt header ends the records before it (returned, the cursor left on it); CORRUPT
    when it is the first."""
    b = cs[C_SLOT]
    if cs[C_MODE] == L.MODE_BLOCKING and load_relaxed(words, b + L.S_STATE) != L.SLOT_ATTACHED:
        return DETACHED
    mask = cs[C_MASK]
    cap = cs[C_CAP]
    dw = cs[C_DATA_WORD]
    maxp = cs[C_MAX_PAYLOAD]
    pos = cs[C_POS]
    n = 0
    max_n = min(max_n, len(out_off), len(out_len), len(out_type))
    while n < max_n:
        off = pos & mask
        h = load_acquire(words, dw + (off >> 3))
        if h == 0:
            break
        length = h & 0xFFFFFFFF
        rtype = (h >> 32) & 0xFFFFFFFF
        if header_fault(h, off, cap, maxp) != 0:
            if n > 0:
                break   # the records before it first; the next poll stops on it
            cs[C_POS] = pos
            return CORRUPT
        if rtype == L.PADDING_TYPE:
            pos += length
            continue
        pl = length - L.RECORD_HEADER_BYTES
        out_off[n] = off + L.RECORD_HEADER_BYTES
        out_len[n] = pl
        out_type[n] = rtype
        n += 1
        cs[C_REC] += 1
        cs[C_PAY] += pl
        pos += (length + 7) & ~7
    cs[C_POS] = pos
    return n


@njit(nogil=True, cache=True, _nrt=False)
def _resume_at_edge(words, cs) -> None:
    pos, rec, pay = edge_triple(words)
    b = cs[C_SLOT]
    store_relaxed(words, b + L.S_LOST_REC, load_relaxed(words, b + L.S_LOST_REC) + rec - cs[C_REC])
    store_relaxed(words, b + L.S_LOST_PAY, load_relaxed(words, b + L.S_LOST_PAY) + pay - cs[C_PAY])
    store_relaxed(words, b + L.S_LAPS, load_relaxed(words, b + L.S_LAPS) + 1)
    set_start(words, cs, pos, rec, pay)


@njit(nogil=True, cache=True, _nrt=False)
def _lapped(words, cs, start: int) -> bool:
    fence_acquire()   # the data reads above happen before this read of the intent
    return load_relaxed(words, L.W_TAIL_INTENT) - cs[C_CAP] > start


@njit(nogil=True, cache=True, _nrt=False)
def poll_copy(words, data, cs, max_n: int, out_buf, out_off, out_len, out_type) -> int:
    """Lossy mode (works in both): copy up to max_n records into out_buf (payload at
    out_buf[out_off[i]:out_off[i]+out_len[i]]), validate, advance. If the producer lapped us,
    nothing is returned, the loss is counted and the cursor jumps to the live edge."""
    mask = cs[C_MASK]
    cap = cs[C_CAP]
    dw = cs[C_DATA_WORD]
    maxp = cs[C_MAX_PAYLOAD]
    start = cs[C_POS]
    pos = start
    n = 0
    used = 0
    rec = 0
    pay = 0
    max_n = min(max_n, len(out_off), len(out_len), len(out_type))
    while n < max_n:
        off = pos & mask
        h = load_acquire(words, dw + (off >> 3))
        if h == 0:
            if n == 0 and load_acquire(words, L.W_EDGE_POS) > pos:
                # published beyond us, yet our header reads 0: overwritten since (lapped)?
                if load_acquire(words, dw + (off >> 3)) == 0:
                    _resume_at_edge(words, cs)
                    return 0
                continue
            break
        length = h & 0xFFFFFFFF
        rtype = (h >> 32) & 0xFFFFFFFF
        if header_fault(h, off, cap, maxp) != 0:
            if _lapped(words, cs, start):
                _resume_at_edge(words, cs)
                return 0
            if n > 0:
                break   # the records before it first (validated below); the next poll stops on it
            cs[C_POS] = pos   # (past a padding record at most: where the bad header is)
            return CORRUPT
        if rtype == L.PADDING_TYPE:
            pos += length
            continue
        pl = length - L.RECORD_HEADER_BYTES
        if used + pl > len(out_buf):
            break
        src = (off + L.RECORD_HEADER_BYTES)
        copy_bytes(out_buf, used, data, src, pl)
        out_off[n] = used
        out_len[n] = pl
        out_type[n] = rtype
        used += pl
        n += 1
        rec += 1
        pay += pl
        pos += (length + 7) & ~7
    if pos != start and _lapped(words, cs, start):
        _resume_at_edge(words, cs)
        return 0
    cs[C_POS] = pos
    cs[C_REC] += rec
    cs[C_PAY] += pay
    return n


@njit(nogil=True, cache=True, _nrt=False)
def validate_read(words, cs) -> int:
    """After using records of a zero-copy (blocking mode) poll in place: 0 if they were intact
    the whole time, DETACHED if the producer may have overwritten them meanwhile.

    Seqlock-style: the producer detaches a consumer (a locked CAS on its state) before its
    claims may pass that consumer's position, and only then overwrites. So if the state still
    reads ATTACHED after an acquire fence that orders every data read before this load, none
    of those reads saw overwritten bytes. Lossy reads are copies, validated by poll_copy."""
    fence_acquire()
    if cs[C_MODE] == L.MODE_BLOCKING and load_acquire(words, cs[C_SLOT] + L.S_STATE) != L.SLOT_ATTACHED:
        return DETACHED
    return 0


@njit(nogil=True, cache=True, _nrt=False)
def next_header_index(cs) -> int:
    return cs[C_DATA_WORD] + ((cs[C_POS] & cs[C_MASK]) >> 3)


@njit(nogil=True, cache=True, _nrt=False)
def producer_status(words) -> int:
    """0 if a producer may still publish, PRODUCER_CLOSED / PRODUCER_GONE (pid gone, or
    heartbeat older than max(heartbeat_timeout, PRODUCER_STALE_MIN_NS)) otherwise."""
    st = load_acquire(words, L.W_PROD_STATE)
    if st == L.PRODUCER_CLOSED:
        return PRODUCER_CLOSED
    if st == L.PRODUCER_OPEN:
        # by heartbeat age as well as pid: a reused pid exists, a dead producer's heartbeat ages
        if not pid_exists(load_relaxed(words, L.W_PROD_PID)):
            return PRODUCER_GONE
        hb = load_relaxed(words, L.W_PROD_HB)
        if hb != 0 and monotonic_ns() - hb > max(words[L.W_HB_TIMEOUT], L.PRODUCER_STALE_MIN_NS):
            return PRODUCER_GONE
    return 0


@njit(nogil=True, cache=True, _nrt=False)
def read_step(words, data, cs, max_n: int, out_buf, out_off, out_len, out_type,
              strategy: int, timeout_ns: int) -> int:
    """One read from Python in one call: commit the last batch (when there is one), remember
    where this read begins (C_BEFORE: ``Reader.give_back`` needs it even when Python never
    saw the result, Ctrl-C raised as the call returned), a heartbeat, then ``wait_poll``.
    Three calls from Python cost about 3 us a record to a reader taking one record at a time
    (each call's arguments are checked and unboxed); one costs a third of that.
    COMMIT_DETACHED when the commit found us detached."""
    if cs[C_PENDING] != 0:
        cs[C_PENDING] = 0
        if commit(words, cs) == DETACHED:
            return COMMIT_DETACHED
    cs[C_BEFORE] = cs[C_POS]
    cs[C_BEFORE + 1] = cs[C_REC]
    cs[C_BEFORE + 2] = cs[C_PAY]
    heartbeat(words, cs)
    n = wait_poll(words, data, cs, max_n, out_buf, out_off, out_len, out_type, strategy, timeout_ns)
    if n > 0:
        cs[C_PENDING] = 1
    return n


@njit(nogil=True, cache=True, _nrt=False)
def read_one(words, data, cs, out, strategy: int, timeout_ns: int) -> int:
    """``read_step`` for one record, copied to out[0:length] (out holds max_payload bytes):
    returns its length (C_ONE_TYPE holds its type), NOTHING when the time-out passed, or a
    negative code. Four arrays, not eight, for the dispatcher to check: a reader taking one
    record a call spends most of its time there. The record stays uncommitted until the next
    read, as a batch's does (``Reader.read`` gives it back if Ctrl-C comes before the caller
    has it)."""
    if len(out) < cs[C_MAX_PAYLOAD]:
        return CORRUPT   # (the Reader allocates it; a bound the copy below relies on)
    lossy = cs[C_MODE] == L.MODE_LOSSY
    # lossy: poll_copy copies the record into out itself; blocking: it stays in the ring
    n = read_step(words, data, cs, 1, out if lossy else out[:0], cs[C_ONE_OFF:C_ONE_OFF + 1],
                  cs[C_ONE_LEN:C_ONE_LEN + 1], cs[C_ONE_TYPE:C_ONE_TYPE + 1], strategy, timeout_ns)
    if n == 0:
        return NOTHING
    if n < 0:
        return n
    ln = cs[C_ONE_LEN]
    if not lossy:
        copy_bytes(out, 0, data, cs[C_ONE_OFF], ln)
        cs[C_ONE_OFF] = 0
    return ln


@njit(nogil=True, cache=True, _nrt=False)
def _unpublished_below_edge(words, cs) -> bool:
    """Blocking mode, nothing to read: whether the header at the cursor reads as unpublished
    though the edge is past it. The producer stores a batch's first header (release) before it
    moves the edge, and never laps an attached reader, so only a stray write can make that so;
    the reader waited for ever on it (probe 43). Read in this order: the edge, then the header."""
    if load_acquire(words, L.W_EDGE_POS) <= cs[C_POS]:
        return False
    return load_acquire(words, next_header_index(cs)) == 0


@njit(nogil=True, cache=True, _nrt=False)
def _off_closed_edge(words, cs) -> bool:
    """The producer closed the ring and the reader has read all it could: whether it stopped
    anywhere but the final edge's position. Short of it, a header was written over with 0 and
    the rest of the stream would end unsaid; past it, a stray word after the edge was read as
    records (probe 43: a run applied half a day and said "whole"). Not the records count: a
    producer killed inside its edge update leaves that one batch short for good (its next
    generation's recovery walks on from the position), and an honest reader was called corrupt
    (probe 46)."""
    return cs[C_POS] != edge_triple(words)[0]


@njit(nogil=True, cache=True, _nrt=False)
def wait_poll(words, data, cs, max_n: int, out_buf, out_off, out_len, out_type,
              strategy: int, timeout_ns: int) -> int:
    """Poll until something arrives (n > 0), the producer closed the ring and everything is read
    (PRODUCER_CLOSED), the producer died and everything is read (PRODUCER_GONE), the timeout
    passes (0; timeout_ns < 0 waits forever), or an error (DETACHED, CORRUPT, OFF_THE_EDGE: the
    cursor and the published edge disagree). Zero-copy (blocking mode, out_buf unused) or
    copying (lossy mode)."""
    lossy = cs[C_MODE] == L.MODE_LOSSY
    start = 0
    last_check = 0
    i = 0
    while True:
        if lossy:
            before = cs[C_POS]
            n = poll_copy(words, data, cs, max_n, out_buf, out_off, out_len, out_type)
            if n == 0 and cs[C_POS] != before:
                continue   # lapped: resumed at the live edge, poll again at once
        else:
            n = poll(words, cs, max_n, out_off, out_len, out_type)
        if n != 0:
            cs[C_IDLE_SINCE] = 0
            return n
        if i == 0:
            start = monotonic_ns()
            last_check = start
            if cs[C_IDLE_SINCE] == 0:
                cs[C_IDLE_SINCE] = start
        i += 1
        long_idle = False
        if (i & 1023) == 0 or (strategy != 0 and i > SPIN_TRIES):
            now = monotonic_ns()   # vDSO: no system call
            long_idle = now - cs[C_IDLE_SINCE] > LONG_IDLE_NS
            store_relaxed(words, cs[C_SLOT] + L.S_HB, now)
            # A closed ring is seen at once (one load); whether a silent producer is still alive
            # costs a kill(pid, 0), so that is asked at most once per CHECK_PEER_NS while idle.
            if now - last_check >= CHECK_PEER_NS:
                last_check = now
                st = producer_status(words)
            else:
                st = PRODUCER_CLOSED if load_acquire(words, L.W_PROD_STATE) == L.PRODUCER_CLOSED else 0
            if st != 0:
                # the producer's last publish happened before we saw its state: poll once more
                # (lossy: until the cursor stops moving, a lap resume returns nothing)
                while True:
                    before = cs[C_POS]
                    if lossy:
                        n = poll_copy(words, data, cs, max_n, out_buf, out_off, out_len, out_type)
                    else:
                        n = poll(words, cs, max_n, out_off, out_len, out_type)
                    if n != 0 or cs[C_POS] == before:
                        break
                if n == 0 and st == PRODUCER_CLOSED and _off_closed_edge(words, cs):
                    return OFF_THE_EDGE
                return n if n != 0 else st
            if not lossy and _unpublished_below_edge(words, cs):
                # (a detach lets the producer write over us: that is what to report, if so)
                return DETACHED if load_acquire(words, cs[C_SLOT] + L.S_STATE) != L.SLOT_ATTACHED else OFF_THE_EDGE
            if timeout_ns >= 0 and now - start > timeout_ns:
                return 0
        if strategy == BLOCK and i > SPIN_TRIES:
            block_on(words, next_header_index(cs), 1_000_000)
        elif strategy == YIELD and long_idle:
            # a yielding reader of a feed quiet for LONG_IDLE_NS (a tail: or a session waiting
            # for its open, through the calls of a polling loop) sleeps between polls: it kept a
            # core busy in sched_yield for as long as the feed was quiet (an hour, seen)
            sleep_ns(LONG_IDLE_SLEEP_NS)
        else:
            idle(strategy, i)
