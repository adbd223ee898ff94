"""MoldUDP64 wire layout (downstream packet and re-request), declared once.

Downstream packet: session (10 bytes ASCII), sequence number of the first message (8),
message count (2), then per message a 2-byte big-endian length and the message. The
message blocks are exactly BinaryFILE framing, so a packet's payload past the header can be
handed to the ITCH framing kernels as is. Count 0 is a heartbeat (sequence = next expected);
count 0xFFFF is end of session. A re-request is the same 20-byte header sent to the
re-request server: session, first sequence wanted, how many.
"""

from __future__ import annotations

import numpy as np

SESSION_SIZE = 10
SESSION_OFFSET = 0
SEQUENCE_OFFSET = 10
COUNT_OFFSET = 18
HEADER_SIZE = 20
BLOCK_LENGTH_SIZE = 2

HEARTBEAT_COUNT = 0
END_OF_SESSION_COUNT = 0xFFFF

HEADER_DTYPE = np.dtype([("session", f"S{SESSION_SIZE}"), ("sequence", ">u8"), ("count", ">u2")])
assert HEADER_DTYPE.itemsize == HEADER_SIZE
assert HEADER_DTYPE.fields["sequence"][1] == SEQUENCE_OFFSET
assert HEADER_DTYPE.fields["count"][1] == COUNT_OFFSET


def pack_header(session: bytes | str, sequence: int, count: int) -> bytes:
    """A 20-byte MoldUDP64 header (downstream packet or re-request)."""
    s = session.encode("ascii") if isinstance(session, str) else bytes(session)
    if len(s) > SESSION_SIZE:
        raise ValueError(f"MoldUDP64 session is at most {SESSION_SIZE} bytes, got {s!r}")
    h = np.zeros(1, HEADER_DTYPE)
    h["session"], h["sequence"], h["count"] = s.ljust(SESSION_SIZE), sequence, count
    return h.tobytes()


def parse_header(packet: bytes | memoryview | np.ndarray) -> tuple[bytes, int, int]:
    """(session, sequence, count) of a packet; ValueError if it is shorter than a header."""
    if len(packet) < HEADER_SIZE:
        raise ValueError(f"MoldUDP64 packet of {len(packet)} bytes is shorter than its {HEADER_SIZE}-byte header")
    h = np.frombuffer(bytes(packet[:HEADER_SIZE]), HEADER_DTYPE)[0]
    return bytes(h["session"]), int(h["sequence"]), int(h["count"])
