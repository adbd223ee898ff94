"""MoldUDP64 packet codec: validate message blocks, build packets, all over uint8 arrays.

The header layout and reader come from ``itchflow.wire.moldudp64``; the message blocks are BinaryFILE
framing, so a packet body is a contiguous slice of a BinaryFILE and building a packet is a
header plus a slice (no work per message). Kernels return status codes; the Python side
turns them into counted, reported events, never exceptions that stop a feed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.hw.endian import be16, be48_from8, be64  # noqa: F401  (be64: re-exported for bench.net)
from itchflow.wire.binaryfile import (LENGTH_PREFIX, OK, ZERO_LENGTH, fits_its_type, describe,
                                      message_offsets, next_message)
from itchflow.wire.itch import LENGTH_BY_BYTE, MESSAGES
from itchflow.wire.moldudp64 import (
    HEADER_DTYPE,
    HEADER_SIZE,
    MAX_SEQUENCE,
    SESSION_SIZE,
    read_header,
    session_is,
)

# walk_blocks status codes
BLOCKS_OK = 0
SHORT_HEADER = 1
BLOCK_OVERRUN = 2
TRAILING_BYTES = 3
ZERO_LENGTH_BLOCK = 4
BAD_ITCH_LENGTH = 5
CONTROL_WITH_BYTES = 6   # (not walk_blocks': a packet of count 0 or 0xFFFF carries no block)
MALFORMED_TEXT = {
    SHORT_HEADER: "shorter than the 20-byte MoldUDP64 header",
    BLOCK_OVERRUN: "a message block runs past the end of the packet (its length prefix too large, or fewer "
                   "blocks than the count says)",
    TRAILING_BYTES: "bytes left over after the last message block the header counts",
    ZERO_LENGTH_BLOCK: "zero-length message block",
    BAD_ITCH_LENGTH: "a message block's length prefix disagrees with its ITCH 5.0 message type's length",
    CONTROL_WITH_BYTES: "a heartbeat or end-of-session packet (message count 0 or 65535) with bytes after its header",
}

_TIMESTAMP_OFFSET = MESSAGES["A"].field("timestamp").offset


@njit(nogil=True, cache=True)
def walk_blocks(buf, start, end, count, skip):
    """Check that buf[start:end] holds exactly ``count`` non-empty message blocks (the one
    BinaryFILE walker, ``next_message``, does the stepping), each of a known ITCH type as
    long as that type is (unknown types pass: they are counted where they are decoded).

    A block of the wrong length makes the packet malformed, like a block that overruns it:
    delivered, it would end any later read of the stream at that message, so it is refused
    here, where the other line or a re-request can still supply the packet.

    Returns (status, offset): on success the offset of block number ``skip`` (end if
    skip >= count); on failure the offset of the offending block.
    """
    pos = start
    skip_offset = end
    for i in range(count):
        if i == skip:
            skip_offset = pos
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            return (ZERO_LENGTH_BLOCK if status == ZERO_LENGTH else BLOCK_OVERRUN), pos
        if not fits_its_type(buf[body], length):
            return BAD_ITCH_LENGTH, pos
        pos = body + length
    if pos != end:
        return TRAILING_BYTES, pos
    return BLOCKS_OK, skip_offset


def malformed_text(status: int, buf, offset, end: int | None = None) -> str:
    """MALFORMED_TEXT[status], and for a block of the wrong length its type and both lengths
    (offset: the block's length prefix in buf, as walk_blocks returns it; end: where the packet
    ends in buf, its end when None: a capture's packet is not the rest of the file, probe 36)."""
    text = MALFORMED_TEXT[status]
    end = len(buf) if end is None else min(int(end), len(buf))
    if status == BLOCK_OVERRUN and offset is not None and 0 <= offset and offset + LENGTH_PREFIX <= end:
        text += (f": the block at byte {offset} says {int(buf[offset]) << 8 | int(buf[offset + 1])} bytes, "
                 f"{end - offset - LENGTH_PREFIX} are left in the packet")
    if status == BAD_ITCH_LENGTH and offset is not None and 0 <= offset and offset + LENGTH_PREFIX < len(buf):
        t = int(buf[offset + LENGTH_PREFIX])
        text += (f" (type {chr(t)!r} is {int(LENGTH_BY_BYTE[t])} bytes, this block"
                 f" {int(buf[offset]) << 8 | int(buf[offset + 1])})")
    return text


@njit(nogil=True, cache=True)
def _timestamps(buf, offsets, n, timestamps):
    """timestamps[i] of the message whose length prefix is at offsets[i] (-1 if it is too short
    to hold one); offsets come from message_offsets, so every message is whole."""
    for i in range(n):
        p = offsets[i]
        length = np.int64(be16(buf, p))
        timestamps[i] = (np.int64(be48_from8(buf, p + LENGTH_PREFIX + _TIMESTAMP_OFFSET))
                         if length >= _TIMESTAMP_OFFSET + 6 else -1)


def index_messages(buf: np.ndarray, source: str = "<buffer>") -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64[n+1], timestamps int64[n]) of a BinaryFILE; offsets[n] is its end."""
    from itchflow.errors import ITCHFormatError

    offsets = np.empty(len(buf) // 3 + 2, np.int64)
    n, status, pos = message_offsets(buf, 1, offsets)
    if status != OK:
        raise ITCHFormatError(describe(buf, pos, len(buf), status), source=source, offset=int(pos))
    offsets[n] = pos   # the end of the data
    timestamps = np.empty(n, np.int64)
    _timestamps(buf, offsets, n, timestamps)
    return offsets[:n + 1].copy(), timestamps


@njit(nogil=True, cache=True)
def _packetize(offsets, n, max_body, firsts):
    """Greedy: as many whole messages per packet as fit in max_body bytes (at least one)."""
    p = 0
    i = 0
    while i < n:
        firsts[p] = i
        p += 1
        j = i + 1
        while j < n and offsets[j + 1] - offsets[i] <= max_body and j - i < 0xFFFE:
            j += 1
        i = j
    firsts[p] = n
    return p


def packetize(offsets: np.ndarray, payload_size: int) -> np.ndarray:
    """First message index of each packet (plus n at the end) for UDP payloads <= payload_size."""
    max_body = payload_size - HEADER_SIZE
    if max_body < 3:
        raise ValueError(f"payload size {payload_size} leaves no room for a message after the header")
    n = len(offsets) - 1
    firsts = np.empty(n + 1, np.int64)
    p = _packetize(offsets, n, max_body, firsts)
    return firsts[:p + 1].copy()


def session_bytes(session: bytes | str) -> bytes:
    s = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(s) > SESSION_SIZE:
        raise ValueError(f"MoldUDP64 session is at most {SESSION_SIZE} bytes, got {s!r}")
    return s.ljust(SESSION_SIZE)


def headers(session: bytes | str, sequences: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n, 20) uint8: one header per packet, vectorised."""
    h = np.zeros(len(sequences), HEADER_DTYPE)
    h["session"] = session_bytes(session)
    h["sequence"] = sequences
    h["count"] = counts
    return h.view(np.uint8).reshape(len(sequences), HEADER_SIZE)


# fast_in_order counters (indices into its int64 counters array)
F_PACKETS, F_MESSAGES, F_BYTES, F_DUP_PACKETS, F_DUP_MESSAGES, F_HEARTBEATS = range(6)


@njit(nogil=True, cache=True)
def fast_in_order(bufs, lengths, start, n, session, next_seq, out, out_pos, counters):
    """The common case of a batch, compiled: packets of the current session that are in
    sequence, duplicates, or heartbeats that reveal nothing, while nothing is missing.

    Copies each new tail into out[out_pos:]; stops at the first packet that needs the
    state machine (another session, a gap, end of session, malformed, no room).
    Returns (index of that packet or n, next sequence, new out_pos).
    """
    i = start
    if next_seq < 1 or next_seq > MAX_SEQUENCE:   # never handed a value the state machine would not take
        return i, next_seq, out_pos
    while i < n:
        buf = bufs[i]
        ln = lengths[i]
        if ln > buf.shape[0]:
            break
        ok, useq, count = read_header(buf, 0, ln)
        if not ok or not session_is(buf, 0, session) or useq > np.uint64(MAX_SEQUENCE) or useq == 0:
            break
        seq = np.int64(useq)
        if count == 0xFFFF:
            break
        if count == 0:
            if ln != HEADER_SIZE or seq > next_seq:
                break
            counters[F_HEARTBEATS] += 1
            counters[F_PACKETS] += 1
            i += 1
            continue
        if seq > next_seq:
            break
        end = seq + count
        skip = next_seq - seq if end > next_seq else count
        status, off = walk_blocks(buf, HEADER_SIZE, ln, count, skip)
        if status != BLOCKS_OK:
            break
        if end <= next_seq:
            counters[F_DUP_PACKETS] += 1
            counters[F_DUP_MESSAGES] += count
            counters[F_PACKETS] += 1
            i += 1
            continue
        m = ln - off
        if out_pos + m > out.shape[0]:
            break
        out[out_pos:out_pos + m] = buf[off:ln]
        out_pos += m
        counters[F_DUP_MESSAGES] += skip
        counters[F_MESSAGES] += end - next_seq
        counters[F_BYTES] += m
        counters[F_PACKETS] += 1
        next_seq = end
        i += 1
    return i, next_seq, out_pos
