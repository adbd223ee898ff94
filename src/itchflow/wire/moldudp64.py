"""MoldUDP64 wire layout (downstream packet and re-request), declared once, and its readers.

Downstream packet: session (10 bytes ASCII), sequence number of the first message (8),
message count (2), then per message a 2-byte big-endian length and the message. The
message blocks are exactly BinaryFILE framing, so a packet's payload past the header can be
handed to the ITCH framing kernels as is. Count 0 is a heartbeat (sequence = next expected);
count 0xFFFF is end of session. A re-request is the same 20-byte header sent to the
re-request server: session, first sequence wanted, how many.

Sequence numbers start at 1: 0 is not a data sequence (anonymised captures carry 0 in every
packet). Every header parse goes through ``read_header`` (compiled, inlinable, bounds
checked) or ``unpack_header`` (Python, one struct call), both derived from ``HEADER_DTYPE``.
"""

from __future__ import annotations

import struct

import numpy as np
from numba import njit

from itchflow.hw.endian import be16, be64

SESSION_SIZE = 10
HEADER_DTYPE = np.dtype([("session", f"S{SESSION_SIZE}"), ("sequence", ">u8"), ("count", ">u2")])
SESSION_OFFSET = HEADER_DTYPE.fields["session"][1]
SEQUENCE_OFFSET = HEADER_DTYPE.fields["sequence"][1]
COUNT_OFFSET = HEADER_DTYPE.fields["count"][1]
HEADER_SIZE = HEADER_DTYPE.itemsize
BLOCK_LENGTH_SIZE = 2

HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF
MAX_MESSAGE_COUNT = 0xFFFE       # the most messages a packet (or a re-request) can count
FIRST_SEQUENCE = 1               # 0 is not a valid data sequence number
# Largest sequence a receiver takes: sequence + count stays below 2**63, so every value fits
# an int64 in the compiled paths (a uint64 header field can say up to 2**64 - 1).
MAX_SEQUENCE = (1 << 63) - 1 - 0xFFFF

assert (SESSION_OFFSET, SEQUENCE_OFFSET, COUNT_OFFSET, HEADER_SIZE) == (0, 10, 18, 20)

# Python-side reader: one struct call for the whole header (cheaper than numpy scalars).
_HEADER_STRUCT = struct.Struct(">" + "".join(
    f"{HEADER_DTYPE[name].itemsize}s" if HEADER_DTYPE[name].kind == "S"
    else {8: "Q", 2: "H"}[HEADER_DTYPE[name].itemsize] for name in HEADER_DTYPE.names))
assert _HEADER_STRUCT.size == HEADER_SIZE


@njit(inline="always", nogil=True, cache=True)
def read_header(buf, pos, end):
    """(ok, sequence, count) of the header at buf[pos:end], compiled and inlinable.

    ok is False (and nothing is read) when fewer than HEADER_SIZE bytes are there.
    sequence is the raw uint64; count an int64 (0 heartbeat, 0xFFFF end of session).
    """
    if pos + HEADER_SIZE > end or pos + HEADER_SIZE > buf.shape[0]:
        return False, np.uint64(0), np.int64(-1)
    return True, be64(buf, pos + SEQUENCE_OFFSET), np.int64(be16(buf, pos + COUNT_OFFSET))


@njit(inline="always", nogil=True, cache=True)
def session_is(buf, pos, session):
    """Whether the header at buf[pos:] names ``session`` (uint8[SESSION_SIZE]); caller checked
    the header is there."""
    for k in range(SESSION_SIZE):
        if buf[pos + SESSION_OFFSET + k] != session[k]:
            return False
    return True


# unpack_header(packet) -> (session, sequence, count) of a packet of at least HEADER_SIZE
# bytes (Python side): the bound struct method itself, no wrapper call per packet.
unpack_header = _HEADER_STRUCT.unpack_from


def valid_sequence(sequence: int, count: int = 0) -> bool:
    """Whether a header's sequence can be a data sequence a receiver takes (not 0, and
    sequence + count fits an int64)."""
    return FIRST_SEQUENCE <= sequence <= MAX_SEQUENCE


def pack_header(session: bytes | str, sequence: int, count: int) -> bytes:
    """A 20-byte MoldUDP64 header (downstream packet or re-request)."""
    s = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(s) > SESSION_SIZE:
        raise ValueError(f"MoldUDP64 session is at most {SESSION_SIZE} bytes, got {s!r}")
    return _HEADER_STRUCT.pack(s.ljust(SESSION_SIZE), sequence, count)


def parse_header(packet: bytes | memoryview | np.ndarray) -> tuple[bytes, int, int]:
    """(session, sequence, count) of a packet; ValueError if it is shorter than a header."""
    if len(packet) < HEADER_SIZE:
        raise ValueError(f"MoldUDP64 packet of {len(packet)} bytes is shorter than its {HEADER_SIZE}-byte header")
    return unpack_header(bytes(packet[:HEADER_SIZE]))
