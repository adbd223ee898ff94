"""BinaryFILE framing: walk length-prefixed ITCH messages, validate, count.

This is the first pass of every decode and the whole of ``stats``. It touches two bytes
of length and one type byte per message, so it runs at memory speed. Validation lives
here so the decode pass can trust the ranges it is given.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.itch.spec import MESSAGES
from itchflow.itch.wire import be16, be48

# Status codes returned by frame(); the Python side turns them into ITCHFormatError.
OK = 0             # stopped at the end of the range or after max_messages
TRUNCATED = 1      # the range ends inside a message (or inside its length prefix)
BAD_LENGTH = 2     # a known type whose length prefix disagrees with the specification
ZERO_LENGTH = 3    # a length prefix of 0: no type byte, no way to resynchronise

STATUS_TEXT = {
    TRUNCATED: "truncated message: the data ends inside it",
    BAD_LENGTH: "length prefix disagrees with the message type's length",
    ZERO_LENGTH: "zero-length message",
}

_TIMESTAMP_OFFSET = MESSAGES["A"].field("timestamp").offset
_LOCATE_OFFSET = MESSAGES["A"].field("stock_locate").offset


@njit(nogil=True, cache=True)
def frame(buf, pos, end, max_messages, counts, locate_seen, lengths):
    """Walk messages in buf[pos:end], at most max_messages of them.

    counts: int64[256] incremented per type byte (unknown types included);
    locate_seen: uint8[65536] set for each stock locate of a known message;
    lengths: int64[256] expected length per type byte, 0 for unknown.

    Returns (status, stop, n, first_ts, last_ts): stop is the offset after the last whole
    message (on error, the offset of the bad message's length prefix); first/last_ts are
    the timestamps of the first and last known messages walked (-1 if none).
    """
    n = 0
    first_ts = -1
    last_ts = -1
    while n < max_messages:
        if pos + 2 > end:
            if pos < end:
                return TRUNCATED, pos, n, first_ts, last_ts
            return OK, pos, n, first_ts, last_ts
        length = (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
        q = pos + 2
        if length == 0:
            return ZERO_LENGTH, pos, n, first_ts, last_ts
        if q + length > end:
            return TRUNCATED, pos, n, first_ts, last_ts
        t = buf[q]
        expected = lengths[t]
        if expected != 0:
            if expected != length:
                return BAD_LENGTH, pos, n, first_ts, last_ts
            ts = np.int64(be48(buf, q + _TIMESTAMP_OFFSET))
            if first_ts < 0:
                first_ts = ts
            last_ts = ts
            locate_seen[be16(buf, q + _LOCATE_OFFSET)] = 1
        counts[t] += 1
        pos = q + length
        n += 1
    return OK, pos, n, first_ts, last_ts



@njit(nogil=True, cache=True)
def whole_messages_end(buf, pos, end):
    """(offset after the last whole message in buf[pos:end], messages): lengths only.

    Used by streaming sources to cut a block at a message boundary; validation is left to
    frame(), which every consumer runs.
    """
    n = 0
    while pos + 2 <= end:
        length = (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
        if length == 0 or pos + 2 + length > end:
            break
        pos += 2 + length
        n += 1
    return pos, n
