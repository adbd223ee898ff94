"""Producer kernels (Numba-callable from other compiled code): claim, commit, publish.

The producer keeps its private state in a small int64 array ``ps`` (indices P_* below, built by
``new_producer_state``) so that kernels stay plain functions over arrays (cacheable; no
jitclass). Shared state is only touched through the atomics in atomics.py.

Protocol (one batch = any number of claims, then one commit):
  claim   reserves the next record (and a padding record first when it would not fit before
          the end of the buffer), writes its header word, except the batch's FIRST header,
          which is kept back; returns where to write the payload.
  commit  zeroes the header after the batch, then publishes the batch with ONE release store:
          the first record's header. A consumer polling that header sees the whole batch.
          Then it updates the edge (seqlock) for joins, lapped readers and `ring inspect`.
In blocking mode a claim fails (returns FULL) instead of overwriting data that a live consumer
has not consumed; the producer's view of the slowest consumer is a cached limit, refreshed
only when a claim would pass it. In lossy mode claims never wait; the producer first records
how far it is about to write (tail_intent) so readers can tell that they were overwritten. A
batch (its records and the next header it zeroes) spans at most the capacity in either mode,
or its later records would land on its own first header, which is stored last: in lossy mode a
claim that would pass that returns FULL, and the caller commits what it has first.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.ring import layout as L
from itchflow.ring.consumer import store_snapshot
from itchflow.ring.record_header import header_fault
from itchflow.hw.atomics import (compare_and_swap, fence_release, fetch_add, load_acquire,
                                   load_relaxed, store_relaxed, store_release)
from itchflow.hw.memcopy import copy_bytes
from itchflow.hw.syscalls import futex_wake, monotonic_ns, pid_exists
from itchflow.ring.wait import SPIN, SPIN_TRIES, idle

# ---- private producer state (an int64 array) -------------------------------------------------
P_POS = 0            # next claim position
P_FIRST_POS = 1      # position of the batch's first record (= published edge)
P_FIRST_HDR = 2      # its header word, kept back until commit (0: empty batch)
P_LIMIT = 3          # cached: claims may end at most here (blocking mode)
P_REC = 4            # records claimed so far (all time)
P_PAY = 5            # payload bytes claimed so far
P_CAP = 6
P_MASK = 7
P_MAX_PAYLOAD = 8
P_MODE = 9
P_NCONS = 10
P_DATA_WORD = 11     # word index of the data region in the file
P_JOIN_SEEN = 12     # join doorbell value already served
P_HB_COUNTDOWN = 13  # commits until the next heartbeat
P_HB_TIMEOUT = 14
P_EDGE_SEQ = 15      # our copy of the edge seqlock counter
P_LAST_SCAN_NS = 16  # last heartbeat sweep while blocked
P_FIELDS = 17

HEARTBEAT_EVERY = 1024   # commits between heartbeats (a clock read is ~20 ns)
SCAN_EVERY_NS = 1_000_000

# return codes (claim returns a payload offset >= 0 or one of these)
FULL = -1
TOO_BIG = -2
TIMEOUT = -3
BAD_TYPE = -4


@njit(nogil=True, cache=True)
def new_producer_state(words, geometry) -> np.ndarray:
    """Private producer state for a ring whose header is in ``words``, positioned at its edge.
    The bounds come from ``geometry`` (``Ring.geometry``: validated at open), not from the
    shared header, which another process may rewrite."""
    ps = np.zeros(P_FIELDS, np.int64)
    ps[P_CAP] = geometry[L.G_CAPACITY]
    ps[P_MASK] = geometry[L.G_CAPACITY] - 1
    ps[P_MAX_PAYLOAD] = geometry[L.G_MAX_PAYLOAD]
    ps[P_MODE] = geometry[L.G_MODE]
    ps[P_NCONS] = geometry[L.G_MAX_CONSUMERS]
    ps[P_DATA_WORD] = geometry[L.G_HEADER_BYTES] >> 3
    ps[P_HB_TIMEOUT] = geometry[L.G_HB_TIMEOUT_NS]
    ps[P_POS] = load_acquire(words, L.W_EDGE_POS)
    ps[P_FIRST_POS] = ps[P_POS]
    ps[P_REC] = load_acquire(words, L.W_EDGE_REC)
    ps[P_PAY] = load_acquire(words, L.W_EDGE_PAY)
    ps[P_EDGE_SEQ] = load_acquire(words, L.W_EDGE_SEQ)
    ps[P_JOIN_SEEN] = -1
    ps[P_HB_COUNTDOWN] = 0
    return ps


@njit(nogil=True, cache=True)
def recover_edge(words, geometry) -> int:
    """Make the edge agree with the data after a producer died between publishing a batch and
    updating the edge: walk published records from the edge until the zeroed header that the
    dead producer left after its last published batch. Returns the records found. Call with no
    live producer (Writer.open does)."""
    cap = geometry[L.G_CAPACITY]
    mask = cap - 1
    dw = geometry[L.G_HEADER_BYTES] >> 3
    maxp = geometry[L.G_MAX_PAYLOAD]
    pos = load_acquire(words, L.W_EDGE_POS)
    rec = load_acquire(words, L.W_EDGE_REC)
    pay = load_acquire(words, L.W_EDGE_PAY)
    walked = 0
    found = 0
    while walked < cap:
        off = pos & mask
        h = load_acquire(words, dw + (off >> 3))
        if h == 0:
            break
        length = h & 0xFFFFFFFF
        rtype = (h >> 32) & 0xFFFFFFFF
        if header_fault(h, off, cap, maxp) != 0:
            break
        if rtype != L.PADDING_TYPE:
            rec += 1
            pay += length - L.RECORD_HEADER_BYTES
            found += 1
        stride = (length + 7) & ~7
        pos += stride
        walked += stride
    if found > 0 or pos != load_acquire(words, L.W_EDGE_POS):
        seq = load_acquire(words, L.W_EDGE_SEQ)
        seq += 1 + (seq & 1)  # odd
        store_relaxed(words, L.W_EDGE_SEQ, seq)
        fence_release()
        store_relaxed(words, L.W_EDGE_POS, pos)
        store_relaxed(words, L.W_EDGE_REC, rec)
        store_relaxed(words, L.W_EDGE_PAY, pay)
        store_release(words, L.W_EDGE_SEQ, seq + 1)
    # the header at the edge must read as "not published"
    store_release(words, dw + ((pos & mask) >> 3), 0)
    store_release(words, L.W_TAIL_INTENT, pos + L.RECORD_HEADER_BYTES)
    return found


@njit(nogil=True, cache=True, _nrt=False)
def _detach(words, b, now: int, reason: int) -> int:
    """ATTACHED -> DETACHED for slot word b, saying why (1 if this call detached it)."""
    if compare_and_swap(words, b + L.S_STATE, L.SLOT_ATTACHED, L.SLOT_DETACHED) != L.SLOT_ATTACHED:
        return 0
    store_relaxed(words, b + L.S_DETACH_REASON, reason)
    store_relaxed(words, b + L.S_DETACHED_NS, now)
    fetch_add(words, b + L.S_DETACHES, 1)
    fetch_add(words, L.W_DETACHED, 1)
    return 1


@njit(nogil=True, cache=True, _nrt=False)
def _min_live_position(words, ps) -> int:
    """Lowest position among ATTACHED consumers, or -1 if there is none. A position no honest
    consumer can hold (negative, past the published edge, more than a capacity behind it, or off
    the 8-byte record grid) is a slot word written over by someone else: that slot is detached
    (DETACH_BAD_POSITION), never taken as the minimum. A negative one was read as "none yet" and
    let the producer overwrite what every other consumer had yet to read (probe 43)."""
    lo = -1
    edge = ps[P_FIRST_POS]           # published so far: no consumer can be past it
    for i in range(ps[P_NCONS]):
        b = L.CONSUMERS_WORD + i * L.SLOT_WORDS
        if load_acquire(words, b + L.S_STATE) == L.SLOT_ATTACHED:
            p = load_acquire(words, b + L.S_POS)
            if p > edge or p < max(edge - ps[P_CAP], 0) or (p & (L.RECORD_ALIGN - 1)) != 0:
                _detach(words, b, monotonic_ns(), L.DETACH_BAD_POSITION)
                continue
            if lo < 0 or p < lo:   # (p >= 0 here: -1 stays "none yet")
                lo = p
    return lo


@njit(nogil=True, cache=True, _nrt=False)
def refresh_limit(words, ps) -> int:
    """Re-read the consumers' positions: how far claims may now end."""
    lo = _min_live_position(words, ps)
    if lo < 0:
        lo = ps[P_FIRST_POS]
    ps[P_LIMIT] = lo + ps[P_CAP]
    return ps[P_LIMIT]


@njit(nogil=True, cache=True, _nrt=False)
def _attach_joiners(words, ps, req, pos, rec, pay) -> int:
    """Attach every JOINING consumer at published position pos (records and payload indices rec,
    pay there), its heartbeat refreshed: a consumer rejoining after a stall kept its stale one
    and was detached again at once, before it read a record."""
    ps[P_JOIN_SEEN] = req
    n = 0
    now = monotonic_ns()
    for i in range(ps[P_NCONS]):
        b = L.CONSUMERS_WORD + i * L.SLOT_WORDS
        if load_acquire(words, b + L.S_STATE) == L.SLOT_JOINING:
            # its commit snapshot too: a joiner that dies before its first commit is resumed from
            # where it joined (its snapshot was behind its position: the name refused to resume)
            store_snapshot(words, b, pos, rec, pay)
            # position, then (last) the state: the consumer waits for ATTACHED, then reads these
            store_relaxed(words, b + L.S_HB, now)
            store_release(words, b + L.S_POS, pos)
            store_relaxed(words, b + L.S_JOIN_POS, pos)
            store_relaxed(words, b + L.S_JOIN_REC, rec)
            store_relaxed(words, b + L.S_JOIN_PAY, pay)
            if compare_and_swap(words, b + L.S_STATE, L.SLOT_JOINING, L.SLOT_ATTACHED) == L.SLOT_JOINING:
                n += 1
    return n


@njit(nogil=True, cache=True, _nrt=False)
def serve_joins(words, ps) -> int:
    """Attach consumers that asked to join (blocking mode) at the published edge. Joining goes
    through the producer so that it can never overwrite what a new consumer expects to read."""
    req = load_acquire(words, L.W_JOIN_REQ)
    if req == ps[P_JOIN_SEEN] or ps[P_FIRST_HDR] != 0:
        return 0  # nothing asked, or mid-batch (``commit`` attaches them before it publishes)
    return _attach_joiners(words, ps, req, ps[P_FIRST_POS], ps[P_REC], ps[P_PAY])


@njit(nogil=True, cache=True, _nrt=False)
def _put_header(words, ps, pos, hdr) -> None:
    if ps[P_FIRST_HDR] == 0:
        ps[P_FIRST_HDR] = hdr          # published last, by commit
        ps[P_FIRST_POS] = pos
    else:
        store_relaxed(words, ps[P_DATA_WORD] + ((pos & ps[P_MASK]) >> 3), hdr)


@njit(nogil=True, cache=True, _nrt=False)
def claim(words, ps, payload_len: int, rtype: int) -> int:
    """Reserve a record; returns the payload's offset in the data region (write it there, then
    commit), or FULL (blocking mode, consumers behind: commit pending claims, wait, retry;
    lossy mode, the batch would reach a capacity past its first record: commit, retry;
    ``claim_wait`` does either), TOO_BIG or BAD_TYPE."""
    if payload_len > ps[P_MAX_PAYLOAD] or payload_len < 0:
        return TOO_BIG
    if rtype < 0 or rtype > L.MAX_USER_TYPE:
        return BAD_TYPE
    cap = ps[P_CAP]
    length = L.RECORD_HEADER_BYTES + payload_len
    stride = (length + 7) & ~7
    pos = ps[P_POS]
    off = pos & ps[P_MASK]
    pad = 0
    if off + stride > cap:
        pad = cap - off
    end = pos + pad + stride + L.RECORD_HEADER_BYTES   # incl. the next header we will zero
    if ps[P_MODE] == L.MODE_BLOCKING:
        if end > ps[P_LIMIT]:
            if end > refresh_limit(words, ps):
                return FULL
    else:
        # A batch is published by its first header, stored last: it must not wrap onto that
        # word (end - 8 is the next header, zeroed at commit; a batch of exactly the capacity
        # put both on one word, and the publish undid the zero). The caller commits first.
        if ps[P_FIRST_HDR] != 0 and end - ps[P_FIRST_POS] > cap:
            return FULL
        store_relaxed(words, L.W_TAIL_INTENT, end)
        fence_release()   # the intent is visible before any byte it announces is overwritten
    if pad:
        _put_header(words, ps, pos, pad | (L.PADDING_TYPE << 32))
        pos += pad
    _put_header(words, ps, pos, length | (rtype << 32))
    ps[P_POS] = pos + stride
    ps[P_REC] += 1
    ps[P_PAY] += payload_len
    return (pos & ps[P_MASK]) + L.RECORD_HEADER_BYTES


@njit(nogil=True, cache=True, _nrt=False)
def commit(words, ps) -> int:
    """Publish everything claimed since the last commit with one release store."""
    if ps[P_FIRST_HDR] == 0:
        return 0
    if ps[P_MODE] == L.MODE_BLOCKING:
        # A consumer that asked to join is attached at this batch's start, before it is
        # published: attached after it, a consumer that joined an idle producer missed the
        # very publish it waited for (a one-batch stream: all of it), and counted nothing lost.
        # Its position is the edge, at or past every attached consumer's: the batch's claims
        # hold for it too. The edge words are the producer's own: their values at the start.
        req = load_acquire(words, L.W_JOIN_REQ)
        if req != ps[P_JOIN_SEEN]:
            _attach_joiners(words, ps, req, ps[P_FIRST_POS], load_relaxed(words, L.W_EDGE_REC),
                            load_relaxed(words, L.W_EDGE_PAY))
    dw = ps[P_DATA_WORD]
    end = ps[P_POS]
    store_relaxed(words, dw + ((end & ps[P_MASK]) >> 3), 0)                   # pre-zero next
    store_release(words, dw + ((ps[P_FIRST_POS] & ps[P_MASK]) >> 3), ps[P_FIRST_HDR])  # publish
    ps[P_FIRST_HDR] = 0
    ps[P_FIRST_POS] = end
    # the edge triple, under its seqlock (only the producer writes it)
    seq = ps[P_EDGE_SEQ] + 1
    store_relaxed(words, L.W_EDGE_SEQ, seq)
    fence_release()
    store_relaxed(words, L.W_EDGE_POS, end)
    store_relaxed(words, L.W_EDGE_REC, ps[P_REC])
    store_relaxed(words, L.W_EDGE_PAY, ps[P_PAY])
    store_release(words, L.W_EDGE_SEQ, seq + 1)
    ps[P_EDGE_SEQ] = seq + 1
    if load_relaxed(words, L.W_WAITERS) != 0:
        fetch_add(words, L.W_FUTEX, 1)
        futex_wake(words, L.W_FUTEX, 0x7FFFFFFF)
        fetch_add(words, L.W_WAKEUPS, 1)
    if ps[P_MODE] == L.MODE_BLOCKING and load_relaxed(words, L.W_JOIN_REQ) != ps[P_JOIN_SEEN]:
        serve_joins(words, ps)
    ps[P_HB_COUNTDOWN] -= 1
    if ps[P_HB_COUNTDOWN] <= 0:
        store_relaxed(words, L.W_PROD_HB, monotonic_ns())
        ps[P_HB_COUNTDOWN] = HEARTBEAT_EVERY
    return 1


@njit(nogil=True, cache=True, _nrt=False)
def wake_sleepers(words) -> None:
    """Wake consumers asleep on the futex (after the close: they wait for a header that will not
    come; a C consumer slept out its whole time-out). Unconditionally: the locked add orders
    the close before it, and a sleeper that read the futex word before it is refused its sleep."""
    fetch_add(words, L.W_FUTEX, 1)
    if load_relaxed(words, L.W_WAITERS) != 0:
        futex_wake(words, L.W_FUTEX, 0x7FFFFFFF)
        fetch_add(words, L.W_WAKEUPS, 1)


@njit(nogil=True, cache=True, _nrt=False)
def heartbeat(words, ps) -> None:
    store_relaxed(words, L.W_PROD_HB, monotonic_ns())
    ps[P_HB_COUNTDOWN] = HEARTBEAT_EVERY


@njit(nogil=True, cache=True, _nrt=False)
def detach_silent(words, ps, now: int) -> int:
    """Detach ATTACHED consumers whose heartbeat is older than the ring's timeout. A consumer
    that was SIGKILLed is thereby detached after the timeout, not before: a restart within it
    resumes with nothing lost. A heartbeat more than a timeout ahead of this clock is no reading
    of CLOCK_MONOTONIC (a stray write, another clock): it never ages, and kept the producer
    waiting on a dead consumer for ever (probe 43); detached too."""
    n = 0
    timeout = ps[P_HB_TIMEOUT]
    for i in range(ps[P_NCONS]):
        b = L.CONSUMERS_WORD + i * L.SLOT_WORDS
        if load_acquire(words, b + L.S_STATE) != L.SLOT_ATTACHED:
            continue
        hb = load_acquire(words, b + L.S_HB)
        if now - hb > timeout:
            n += _detach(words, b, now, L.DETACH_SILENT)
        elif hb - now > timeout:
            n += _detach(words, b, now, L.DETACH_HEARTBEAT_AHEAD)
    return n


@njit(nogil=True, cache=True, _nrt=False)
def wait_for_space(words, ps, end_needed: int, strategy: int, timeout_ns: int) -> bool:
    """Blocking mode, ring full: publish what is pending, then wait (detaching consumers that stop
    heart-beating) until claims up to ``end_needed`` fit. False on timeout."""
    commit(words, ps)
    fetch_add(words, L.W_FULL_WAITS, 1)
    start = monotonic_ns()
    n = 0
    while True:
        if refresh_limit(words, ps) >= end_needed:
            return True
        serve_joins(words, ps)
        idle(strategy, n)
        n += 1
        # the clock every 256 spins, and after every pause once they sleep or yield (256 sleeps of
        # up to 1 ms made a 0.12 s time-out last 0.27 s)
        if (n & 255) == 0 or (strategy != SPIN and n > SPIN_TRIES):
            now = monotonic_ns()
            if now - ps[P_LAST_SCAN_NS] >= SCAN_EVERY_NS:
                ps[P_LAST_SCAN_NS] = now
                store_relaxed(words, L.W_PROD_HB, now)
                detach_silent(words, ps, now)
            if timeout_ns >= 0 and now - start > timeout_ns:
                return False


@njit(nogil=True, cache=True, _nrt=False)
def claim_wait(words, ps, payload_len: int, rtype: int, strategy: int, timeout_ns: int) -> int:
    """claim, waiting for space when full (blocking mode; in lossy mode, committing the batch
    that has reached a capacity). TIMEOUT if it never came, counted over the whole wait (space
    that comes but is not enough does not restart the clock)."""
    start = monotonic_ns()
    while True:
        r = claim(words, ps, payload_len, rtype)
        if r != FULL:
            return r
        if ps[P_MODE] != L.MODE_BLOCKING:   # lossy: the batch is a capacity long; publish it
            commit(words, ps)
            continue
        if timeout_ns >= 0 and monotonic_ns() - start > timeout_ns:
            return TIMEOUT
        stride = (L.RECORD_HEADER_BYTES + payload_len + 7) & ~7
        # Wait for a quarter of the ring, not just for this record: refreshing the limit reads
        # every consumer's position line (a cache miss each), so doing it per record when the
        # consumer is only just keeping up would make the producer crawl. The consumers reach
        # the published edge eventually, so the limit does reach pos + cap/4.
        need = ps[P_POS] + 2 * stride + L.RECORD_HEADER_BYTES + (ps[P_CAP] >> 2)
        need = min(need, ps[P_POS] + ps[P_CAP])
        if not wait_for_space(words, ps, need, strategy, timeout_ns):
            return TIMEOUT


@njit(nogil=True, cache=True, _nrt=False)
def publish_batch(words, data, ps, buf, offsets, types, strategy: int, timeout_ns: int) -> int:
    """Copy records buf[offsets[i]:offsets[i+1]] (type types[i], or 0 if types is empty) into the
    ring and publish them, one release store per run that fits. Returns the number published
    (all of them unless TIMEOUT / TOO_BIG / BAD_TYPE, then that code if none went out)."""
    n = len(offsets) - 1
    for i in range(n):
        a = offsets[i]
        ln = offsets[i + 1] - a
        t = types[i] if len(types) > 0 else 0
        o = claim(words, ps, ln, t)
        if o == FULL:
            o = claim_wait(words, ps, ln, t, strategy, timeout_ns)
        if o < 0:
            commit(words, ps)
            return i if i > 0 else o
        copy_bytes(data, o, buf, a, ln)
    commit(words, ps)
    return n


@njit(nogil=True, cache=True, _nrt=False)
def publish_one(words, data, ps, payload, rtype: int, strategy: int, timeout_ns: int) -> int:
    """Copy one record into the ring and publish it. Returns 1 or a negative code."""
    ln = len(payload)
    o = claim(words, ps, ln, rtype)
    if o == FULL:
        o = claim_wait(words, ps, ln, rtype, strategy, timeout_ns)
    if o < 0:
        return o
    copy_bytes(data, o, payload, 0, ln)
    commit(words, ps)
    return 1


@njit(nogil=True, cache=True)
def consumer_liveness(words, ps, out_alive) -> None:
    """out_alive[i] = 1 if slot i's pid exists (diagnostics)."""
    for i in range(ps[P_NCONS]):
        b = L.CONSUMERS_WORD + i * L.SLOT_WORDS
        out_alive[i] = 1 if pid_exists(load_relaxed(words, b + L.S_PID)) else 0
