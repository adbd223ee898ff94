"""Split a run of BinaryFILE messages into N shards by stock locate (compiled).

Every ITCH message names its stock in the header's stock locate, and a stock's book depends
only on its own messages, so a day splits into independent shards: ``shard_of[locate]``
picks the shard of each message. Messages that belong to no stock go to every shard:
locate 0 (system events, MWCB) and any type flagged in ``broadcast`` (S by default; the
scale layer also broadcasts R so every shard knows every symbol). Unknown types (no known
layout, so no trustworthy locate) go to shard 0 only. Each routed message keeps its
original sequence number in a per-shard sidecar, so shard outputs can be keyed back to the
original stream exactly.

``split_by_locate`` is a plain function over arrays (input buffer, per-shard output rows,
fill counters): it stops with NEED_SPACE, before touching a message, when any target shard is
full, so the caller flushes and calls again from the returned position.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.hw.endian import be16, be48_from8, u8
from itchflow.hw.prefetch import read_ahead
from itchflow.wire.binaryfile import AT_END, BAD_LENGTH, LENGTH_PREFIX, OK, STATUS_TEXT, next_message
from itchflow.wire.itch import LENGTH_BY_BYTE, MESSAGES  # noqa: F401  (LENGTH_BY_BYTE: the lengths argument)

NEED_SPACE = 16    # a target shard's byte or sequence buffer is full: flush, call again from pos
BAD_SHARD = 17     # shard_of names a shard outside 0..N-1

MAX_MESSAGE_BYTES = LENGTH_PREFIX + 0xFFFF   # the largest framed message: every row must hold one
N_LOCATES = 1 << 16

_LOCATE_OFFSET = MESSAGES["A"].field("stock_locate").offset
_TIMESTAMP_OFFSET = MESSAGES["A"].field("timestamp").offset
_HEADER_END = _TIMESTAMP_OFFSET + 6   # every known type is at least the common header long

# state words (int64[N_STATE]) carried across calls
S_FIRST_TS = 0     # timestamp of the first known message (-1 before any)
S_LAST_TS = 1      # timestamp of the last known message
S_MESSAGES = 2     # messages routed (each counted once, however many shards got it)
S_BROADCAST_BREAKS = 3  # broken trades (B) with locate 0: every shard gets one, only the shard
                        # of its trade can match it, so the others count it as unknown_match
N_STATE = 4

SPLIT_STATUS_TEXT = dict(STATUS_TEXT)
SPLIT_STATUS_TEXT[BAD_SHARD] = "shard map names a shard outside the output rows"


def broadcast_mask(types: str = "S") -> np.ndarray:
    """uint8[256]: 1 for the type letters that go to every shard whatever their locate."""
    mask = np.zeros(256, np.uint8)
    for c in types:
        if c not in MESSAGES:
            raise ValueError(f"not an ITCH message type: {c!r}")
        mask[ord(c)] = 1
    return mask


_NO_LIMIT = 1 << 62


def modulo_map(shards: int) -> np.ndarray:
    """int32[65536]: locate -> locate % shards (locates are dealt round-robin)."""
    if not 1 <= shards <= 4096:
        raise ValueError(f"shards must be 1..4096, not {shards}")
    return (np.arange(N_LOCATES, dtype=np.int64) % shards).astype(np.int32)


def balanced_map(weights: np.ndarray, shards: int) -> np.ndarray:
    """int32[65536]: locates dealt to shards so the shards' total weights (e.g. messages per
    locate from ``count_by_locate``) are even: heaviest first, each to the lightest shard so
    far (greedy LPT; at worst 4/3 of the best split). Locates of weight 0 go round-robin."""
    shard_of = modulo_map(shards)
    w = np.ascontiguousarray(weights, np.int64)
    if len(w) != N_LOCATES:
        raise ValueError(f"weights must have {N_LOCATES} entries, not {len(w)}")
    busy = np.flatnonzero(w > 0)
    _assign_greedy(busy[np.argsort(-w[busy], kind="stable")], w, shards, shard_of)
    return shard_of


@njit(nogil=True, cache=True)
def _assign_greedy(by_weight, weights, shards, shard_of):
    load = np.zeros(shards, np.int64)
    for loc in by_weight:
        k = np.argmin(load)
        shard_of[loc] = k
        load[k] += weights[loc]


def new_state() -> np.ndarray:
    state = np.zeros(N_STATE, np.int64)
    state[S_FIRST_TS] = -1
    state[S_LAST_TS] = -1
    return state


@njit(inline="always", nogil=True, cache=True)
def fits(fill, nseq, k, total, cap, seq_cap):
    """Whether shard k's output takes one more message of ``total`` bytes: fill[k] bytes and
    nseq[k] index entries used of cap and seq_cap (``sharded.route`` asks it too)."""
    return fill[k] + total <= cap and nseq[k] < seq_cap


@njit(inline="always", nogil=True, cache=True)
def _put(buf, start, total, seq, out, fill, seqs, nseq, k):
    f = fill[k]
    row = out[k]
    # unsigned indices: no wrap-around branch per byte, so LLVM can copy in wide moves
    src = np.uint64(start)
    dst = np.uint64(f)
    for i in range(np.uint64(total)):
        row[dst + i] = buf[src + i]
    fill[k] = f + total
    seqs[k, nseq[k]] = seq
    nseq[k] += 1


@njit(nogil=True, cache=True)
def split_by_locate(buf, pos, end, seq, shard_of, broadcast, lengths, out, fill, seqs, nseq,
                    counts, state):
    """Route whole messages of buf[pos:end] into shard rows.

    shard_of: int32[65536] locate -> shard; broadcast: uint8[256] types sent to every shard;
    lengths: int64[256] expected length per type (0 = unknown; wire.itch.LENGTH_BY_BYTE); out: uint8[N, cap] framed
    messages per shard, fill: int64[N] bytes used per row; seqs: uint64[N, seq_cap] original
    sequence number of each routed message, nseq: int64[N] entries used; counts: int64[256]
    messages per type byte (once each); state: int64[N_STATE] (first/last timestamp, total).
    seq is the sequence number of the message at pos.

    Returns (status, pos, seq): OK at the end of the range; NEED_SPACE (the message at pos is
    untouched); TRUNCATED, ZERO_LENGTH, BAD_LENGTH or BAD_SHARD at the message at pos.
    """
    nshards = out.shape[0]
    cap = out.shape[1]
    seq_cap = seqs.shape[1]
    while pos < end:   # not ``while True``: see binaryfile.WALK_LOOP
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            return status, pos, seq
        read_ahead(buf, body, end)
        t = u8(buf, body)
        expected = lengths[t]
        total = LENGTH_PREFIX + length
        if expected != 0:
            if expected != length or length < _HEADER_END:
                return BAD_LENGTH, pos, seq
            loc = be16(buf, body + _LOCATE_OFFSET)
            if loc == 0 or broadcast[t] != 0:
                for k in range(nshards):
                    if not fits(fill, nseq, k, total, cap, seq_cap):
                        return NEED_SPACE, pos, seq
                for k in range(nshards):
                    _put(buf, pos, total, seq, out, fill, seqs, nseq, k)
                if loc == 0 and t == 66:  # 'B'
                    state[S_BROADCAST_BREAKS] += 1
            else:
                k = shard_of[loc]
                if k < 0 or k >= nshards:
                    return BAD_SHARD, pos, seq
                if not fits(fill, nseq, k, total, cap, seq_cap):
                    return NEED_SPACE, pos, seq
                _put(buf, pos, total, seq, out, fill, seqs, nseq, k)
            ts = np.int64(be48_from8(buf, body + _TIMESTAMP_OFFSET))
            if state[S_FIRST_TS] < 0:
                state[S_FIRST_TS] = ts
            state[S_LAST_TS] = ts
        else:  # unknown type: no layout, so no locate to trust; shard 0 counts and skips it
            if not fits(fill, nseq, 0, total, cap, seq_cap):
                return NEED_SPACE, pos, seq
            _put(buf, pos, total, seq, out, fill, seqs, nseq, 0)
        counts[t] += 1
        state[S_MESSAGES] += 1
        pos = body + length
        seq += 1
    return OK, pos, seq


@njit(nogil=True, cache=True)
def count_by_locate(buf, pos, end, lengths, per_locate, max_messages=_NO_LIMIT):
    """Add 1 to per_locate[locate] (int64[65536]) for every known message in buf[pos:end] (the
    weights for ``balanced_map``). Returns (status, pos) like split_by_locate (no routing);
    with max_messages, OK and the position after that many (pos < end: call again from there)."""
    n = 0
    while n < max_messages:  # a bounded loop: ``while True`` here compiled to a 5x slower walk
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            if status == AT_END:
                status = OK
            return status, pos
        read_ahead(buf, body, end)
        expected = lengths[u8(buf, body)]
        if expected != 0:
            if expected != length or length < _HEADER_END:
                return BAD_LENGTH, pos
            per_locate[be16(buf, body + _LOCATE_OFFSET)] += 1
        pos = body + length
        n += 1
    return OK, pos


def is_broadcast(types: np.ndarray, locates: np.ndarray, broadcast: np.ndarray) -> np.ndarray:
    """bool per message (type bytes, locates): the rule split_by_locate uses to send a message
    to every shard (for consumers that must keep only one copy of those)."""
    return (np.asarray(locates) == 0) | (broadcast[np.asarray(types, np.uint8)] != 0)


__all__ = ["split_by_locate", "count_by_locate", "balanced_map", "modulo_map", "broadcast_mask", "LENGTH_BY_BYTE", "new_state",
           "is_broadcast", "OK", "NEED_SPACE", "BAD_SHARD", "BAD_LENGTH", "MAX_MESSAGE_BYTES",
           "SPLIT_STATUS_TEXT", "S_FIRST_TS", "S_LAST_TS", "S_MESSAGES", "S_BROADCAST_BREAKS", "N_STATE"]
