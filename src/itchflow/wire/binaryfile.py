"""BinaryFILE framing: walk length-prefixed ITCH messages, validate, count.

This is the first pass of every decode and the whole of ``stats``. It touches two bytes
of length and one type byte per message, so it runs at memory speed. Validation lives
here so the decode pass can trust the ranges it is given.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.wire.itch import LENGTH_BY_BYTE, MESSAGES
from itchflow.hw.endian import be16, be48_from8, u8
from itchflow.hw.prefetch import read_ahead

# Status codes returned by frame(); the Python side turns them into ITCHFormatError.
OK = 0             # stopped at the end of the range or after max_messages
TRUNCATED = 1      # the range ends inside a message (or inside its length prefix)
BAD_LENGTH = 2     # a known type whose length prefix disagrees with the specification
ZERO_LENGTH = 3    # a length prefix of 0: no type byte, no way to resynchronise
AT_END = 4         # next_message only: pos is exactly at the end of the range

LENGTH_PREFIX = 2  # BinaryFILE: a big-endian u16 length before every message

STATUS_TEXT = {
    TRUNCATED: "truncated message: the data ends inside it",
    BAD_LENGTH: "length prefix disagrees with the message type's length",
    ZERO_LENGTH: "zero-length message",
}

_TIMESTAMP_OFFSET = MESSAGES["A"].field("timestamp").offset
_LOCATE_OFFSET = MESSAGES["A"].field("stock_locate").offset


# WALK_LOOP: a walk written ``while True:`` around next_message, leaving on its status,
# compiles (Numba 0.68 / LLVM) to a loop about 5x slower than the same walk bounded by
# ``while pos < end:`` (11 against 2 ns a message, measured on a 10 M-message day): bound every
# walk by its range (next_message returns AT_END exactly when pos == end, so nothing else
# changes) or by a count.
@njit(inline="always", nogil=True, cache=True)
def next_message(buf, pos, end):
    """One step of THE BinaryFILE walk; every kernel that walks length-prefixed messages
    calls this (it inlines to the same code as a hand-written loop).

    Returns (status, body, length) for the message whose length prefix is at ``pos``:
    OK: the message is ``buf[body:body + length]`` (body = pos + 2) and the next prefix is at
    ``body + length``; AT_END: pos == end; TRUNCATED: the range ends inside the prefix or
    the message; ZERO_LENGTH: a zero prefix. Only buf[pos:end] is read, and only after the
    bound is checked. Whether the length fits the type is the caller's business (frame()).
    """
    if pos + LENGTH_PREFIX > end:
        return (TRUNCATED if pos < end else AT_END), pos, np.int64(0)
    length = np.int64(be16(buf, pos))
    body = pos + LENGTH_PREFIX
    if length == 0:
        return ZERO_LENGTH, body, length
    if body + length > end:
        return TRUNCATED, body, length
    return OK, body, length


@njit(inline="always", nogil=True, cache=True)
def fits_its_type(type_byte, length):
    """A message of this type byte may be this long: an ITCH 5.0 type at exactly its length, or
    a type ITCH does not define at any length (skipped and counted where it is decoded)."""
    expected = LENGTH_BY_BYTE[type_byte]
    return expected == 0 or expected == length


@njit(nogil=True, cache=True)
def skip_messages(buf, pos, end, k):
    """Past the first k whole messages of buf[pos:end] (fewer where they end first): returns
    (position, messages skipped). A replay that goes on where an earlier one stopped walks the
    messages it applied then."""
    n = 0
    while pos < end and n < k:   # (bounded: see WALK_LOOP)
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            break
        pos = body + length
        n += 1
    return pos, n


@njit(nogil=True, cache=True)
def frame(buf, pos, end, max_messages, counts, locate_seen, lengths, prev_ts):
    """Walk messages in buf[pos:end], at most max_messages of them.

    counts: int64[256] incremented per type byte (unknown types included);
    locate_seen: uint8[65536] set for each stock locate of a known message;
    lengths: int64[256] expected length per type byte, 0 for unknown;
    prev_ts: the timestamp of the last known message before pos (-1: none).

    Returns (status, stop, n, first_ts, last_ts, backwards, first_at, backwards_at): stop is the
    offset after the last whole message (on error, the offset of the bad message's length
    prefix); first/last_ts are the timestamps of the first and last known messages walked (-1
    if none); backwards counts the known messages whose timestamp is earlier than the known
    message's before them (a feed is in time order: a file spliced or sorted wrongly is not);
    first_at and backwards_at are the offsets of the length prefixes of the first known message
    and of the first that went back (-1 if none). Reading every timestamp costs the walk
    nothing measurable: it waits on each length it reads, not on its loads.
    """
    n = 0
    status = OK
    first_ts = -1
    prev = np.int64(prev_ts)
    backwards = 0
    first_at = -1
    backwards_at = -1
    while n < max_messages:
        status, q, length = next_message(buf, pos, end)
        if status != OK:
            if status == AT_END:
                status = OK
            break
        read_ahead(buf, q, end)
        t = u8(buf, q)
        expected = lengths[t]
        if expected != 0:
            if expected != length:
                status = BAD_LENGTH
                break
            ts = np.int64(be48_from8(buf, q + _TIMESTAMP_OFFSET))
            if first_ts < 0:
                first_ts = ts
                first_at = pos
            if ts < prev:   # rare: a branch the predictor gets right
                if backwards == 0:
                    backwards_at = pos
                backwards += 1
            prev = ts
            locate_seen[be16(buf, q + _LOCATE_OFFSET)] = 1
        counts[t] += 1
        pos = q + length
        n += 1
    last_ts = prev if first_ts >= 0 else np.int64(-1)
    return status, pos, n, first_ts, last_ts, backwards, first_at, backwards_at


@njit(nogil=True, cache=True)
def whole_messages_end(buf, pos, end):
    """(offset after the last whole message in buf[pos:end], messages): lengths only.

    Used by streaming sources to cut a block at a message boundary; validation is left to
    frame(), which every consumer runs.
    """
    n = 0
    while pos < end:   # not ``while True``: see WALK_LOOP
        status, q, length = next_message(buf, pos, end)
        if status != OK:
            break
        read_ahead(buf, q, end)
        pos = q + length
        n += 1
    return pos, n


@njit(nogil=True, cache=True)
def budget_end(buf, pos, limit):
    """Offset after the messages that start in buf[pos:limit] (the last one may end past
    limit): a byte budget that never splits a message. At a message that cannot be framed in
    buf (truncated, zero length) it gives len(buf), so whoever applies the range reaches that
    message and names the error instead of stopping short of it again and again."""
    end = buf.shape[0]
    while pos < limit:   # not ``while True``: see WALK_LOOP
        status, q, length = next_message(buf, pos, end)
        if status != OK:
            return end
        read_ahead(buf, q, end)
        pos = q + length
    return pos


@njit(nogil=True, cache=True)
def message_offsets(buf, every, index):
    """index[k] = offset of the length prefix of message k * every (every >= 1), over all of
    buf; index needs len(buf) // (3 * every) + 2 entries (the shortest message is 3 bytes).
    Returns (messages, status, pos): status OK, TRUNCATED, ZERO_LENGTH or BAD_LENGTH (a known
    type at another length: a store would serve it, a sender send it); pos = where the walk
    stopped (the end of the data when OK). A sparse index (every > 1) serves a message store
    by sequence number; every = 1 indexes every message.
    """
    pos = 0
    end = buf.shape[0]
    n = 0
    slot = 0
    until = 0      # messages before the next indexed one: a count down, not n % every (a division)
    while pos < end:   # see WALK_LOOP
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            return n, status, pos
        if not fits_its_type(buf[body], length):
            return n, BAD_LENGTH, pos
        read_ahead(buf, body, end)
        if until == 0:
            index[slot] = pos
            slot += 1
            until = every
        until -= 1
        pos = body + length
        n += 1
    return n, OK, pos


def describe(buf, at: int, end: int, status: int) -> str:
    """What a framing status at ``buf[at]`` (a length prefix; the range ends at ``end``) means,
    for an ITCHFormatError: the status, then what the bytes there say (the type, its length
    prefix, the specification's length, how much of it is present). Every reader of this
    framing (decode, the books, the shard router, the stores) says the same."""
    text = STATUS_TEXT.get(status, "malformed BinaryFILE framing")
    at, end = int(at), min(int(end), len(buf))
    if not 0 <= at < end:
        return text
    if status == ZERO_LENGTH:   # the byte after the prefix is the next message's, not a type
        return text + " (a length prefix of 0: no type byte, nothing to walk on from)"
    if at + LENGTH_PREFIX <= end:
        length = int(buf[at]) << 8 | int(buf[at + 1])
        if at + LENGTH_PREFIX < end:
            t = int(buf[at + LENGTH_PREFIX])
            name = f"type {chr(t)!r}" if chr(t) in MESSAGES else f"unknown type 0x{t:02x}"
            expected = int(LENGTH_BY_BYTE[t])
            text += f" ({name}, length prefix {length}"
            text += f", specification says {expected})" if expected else ")"
        else:
            text += f" (length prefix {length})"
        if status == TRUNCATED:
            text += f"; {end - at - LENGTH_PREFIX} of {length} bytes present"
    elif status == TRUNCATED:
        text += "; only part of the 2-byte length prefix is present"
    return text
