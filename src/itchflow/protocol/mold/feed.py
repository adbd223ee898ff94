"""MoldUDP64 publishing, sans-I/O: a BinaryFILE cut into packets, fault schedules, and the
re-request server's answers. Sockets and clocks live in ``itchflow.sources.mold_sender``.

A packet body is a contiguous slice of the BinaryFILE (the message blocks are BinaryFILE
framing), so the file is indexed per packet, not per message: two compiled passes over the
length prefixes give each packet's byte range, first sequence number, count and first
timestamp. A full day (368 M messages) needs a few MB per million packets, not per message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numba import njit

from itchflow.errors import ITCHFormatError
from itchflow.wire.itch import MAX_MESSAGE_SIZE, MESSAGES
from itchflow.hw.endian import be48_from8
from itchflow.wire.binaryfile import OK, TRUNCATED, next_message
from itchflow.protocol.mold.codec import headers, session_bytes
from itchflow.protocol.mold.ratelimit import RateLimits, SourceLimiter
from itchflow.wire.moldudp64 import (
    END_OF_SESSION_COUNT,
    HEADER_SIZE,
    HEARTBEAT_COUNT,
    SESSION_SIZE,
    pack_header,
    unpack_header,
)

DEFAULT_PAYLOAD = 1400
MIN_PAYLOAD = HEADER_SIZE + 2 + MAX_MESSAGE_SIZE   # room for the longest message and its length
MAX_COUNT = 0xFFFE
_TIMESTAMP_OFFSET = MESSAGES["A"].field("timestamp").offset
_TS_END = _TIMESTAMP_OFFSET + 6


@njit(nogil=True, cache=True)
def _plan(buf, max_body, fill, pkt_off, pkt_count, pkt_ts):
    """Greedy packets of whole messages, body <= max_body (at least one message each).

    fill=False only counts. Returns (packets, status, pos): status 0 ok, 1 truncated
    message, 2 zero-length message (pos is where).
    """
    end = buf.shape[0]
    pos = 0
    p = 0
    while pos < end:
        start = pos
        n = 0
        ts = np.int64(-1)
        while pos < end and n < MAX_COUNT:
            status, body, length = next_message(buf, pos, end)
            if status != OK:
                return p, (1 if status == TRUNCATED else 2), pos
            if n > 0 and body + length - start > max_body:
                break
            if n == 0 and length >= _TS_END:
                ts = np.int64(be48_from8(buf, body + _TIMESTAMP_OFFSET))
            pos = body + length
            n += 1
        if fill:
            pkt_off[p] = start
            pkt_count[p] = n
            pkt_ts[p] = ts
        p += 1
    if fill:
        pkt_off[p] = pos
    return p, 0, pos


@njit(nogil=True, cache=True)
def _span(buf, start, end, skip, max_count, max_body):
    """From the message block at ``start``, skip ``skip`` messages then take up to
    ``max_count`` that fit in max_body bytes. -> (first byte, end byte, messages)."""
    pos = start
    for _ in range(skip):
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            return pos, pos, 0
        pos = body + length
    first = pos
    n = 0
    while n < max_count:
        status, body, length = next_message(buf, pos, end)
        if status != OK or body + length - first > max_body:
            break
        pos = body + length
        n += 1
    return first, pos, n


class MoldFeed:
    """A BinaryFILE (uint8 array) as MoldUDP64 packets of at most ``payload_size`` bytes."""

    def __init__(self, data: np.ndarray, session: bytes | str, payload_size: int = DEFAULT_PAYLOAD,
                 source: str = "<buffer>"):
        self.data = data
        self.session = session_bytes(session)
        self.payload_size = int(payload_size)
        self.max_body = self.payload_size - HEADER_SIZE
        if self.payload_size < MIN_PAYLOAD:
            raise ValueError(f"payload size {payload_size} is too small for an ITCH message (at least "
                             f"{MIN_PAYLOAD}: the {HEADER_SIZE}-byte header, a 2-byte length, the longest "
                             f"message's {MAX_MESSAGE_SIZE} bytes)")
        empty = np.zeros(0, np.int64)
        p, status, pos = _plan(data, self.max_body, False, empty, empty, empty)
        if status:
            why = "truncated message at the end of the data" if status == 1 else "zero-length message"
            raise ITCHFormatError(why, source=source, offset=int(pos))
        self.offsets = np.empty(p + 1, np.int64)    # byte range of packet i: offsets[i]:offsets[i+1]
        self.counts = np.empty(p, np.int64)
        self.timestamps = np.empty(p, np.int64)     # first message's timestamp per packet
        _plan(data, self.max_body, True, self.offsets, self.counts, self.timestamps)
        self.sequences = np.ones(p + 1, np.int64)   # first sequence of packet i; [p] = next after last
        np.cumsum(self.counts, out=self.sequences[1:])
        self.sequences[1:] += 1
        self.headers = headers(self.session, self.sequences[:-1], self.counts)
        self.n_packets = p
        self.messages = int(self.sequences[-1] - 1)

    def packet(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(header, body) of packet i, both views (send them with one scatter/gather call)."""
        return self.headers[i], self.data[self.offsets[i]:self.offsets[i + 1]]

    def packet_bytes(self, i: int) -> bytes:
        h, b = self.packet(i)
        return h.tobytes() + b.tobytes()

    def heartbeat(self, next_sequence: int) -> bytes:
        return control_packet(self.session, next_sequence, HEARTBEAT_COUNT)

    def end_of_session(self) -> bytes:
        return control_packet(self.session, int(self.sequences[-1]), END_OF_SESSION_COUNT)

    def span(self, first: int, count: int, available_end: int, max_body: int | None = None) -> tuple[int, int, int]:
        """(byte start, byte end, messages) answering a request for [first, first+count),
        limited to messages published (< available_end) and to one payload (or max_body)."""
        count = min(count, available_end - first, MAX_COUNT)
        if first < 1 or count <= 0:
            return 0, 0, 0
        p = int(np.searchsorted(self.sequences, first, "right")) - 1
        a, b, n = _span(self.data, int(self.offsets[p]), int(self.offsets[-1]), first - int(self.sequences[p]),
                        count, self.max_body if max_body is None else max_body)
        return int(a), int(b), int(n)


def control_packet(session: bytes, sequence: int, count: int) -> bytes:
    return pack_header(session_bytes(session), sequence, count)


@dataclass
class ServerStats:
    requests: int = 0
    replies: int = 0
    messages: int = 0
    short_replies: int = 0       # replies holding fewer messages than asked
    bad_requests: int = 0        # wrong size or session, or nothing published to serve
    refused_requests: int = 0    # over a source's requests/s or reply bytes/s (or the shared bytes/s)
    bytes_in: int = 0            # request bytes received
    bytes_out: int = 0           # reply bytes sent (headers included)

    def to_dict(self) -> dict:
        return asdict(self)


class RerequestServer:
    """Answers MoldUDP64 re-requests from a MoldFeed: one reply packet per request, at most
    ``max_reply_bytes`` (default: one payload), within per-source rate limits."""

    def __init__(self, feed: MoldFeed, limits: RateLimits | None = None, max_reply_bytes: int | None = None):
        self.feed = feed
        self.stats = ServerStats()
        self.limiter = SourceLimiter(limits)
        self.max_body = min(feed.max_body, (max_reply_bytes or feed.payload_size) - HEADER_SIZE)

    def handle(self, request: bytes, available_end: int, source=None, now_ns: int | None = None):
        """The reply (header, body) to send back, or None for a request that gets none.

        available_end: the sequence after the last message published so far. source and
        now_ns: who asked and when (the rate limits apply when now_ns is given).
        """
        st = self.stats
        st.requests += 1
        st.bytes_in += len(request)
        limited = now_ns is not None
        if limited and not self.limiter.allow_request(source, now_ns):
            st.refused_requests += 1
            return None
        if len(request) != HEADER_SIZE or bytes(request[:SESSION_SIZE]) != self.feed.session:
            st.bad_requests += 1
            return None
        _, first, count = unpack_header(request)
        if count == 0 or count == END_OF_SESSION_COUNT:
            st.bad_requests += 1
            return None
        a, b, n = self.feed.span(first, count, available_end, self.max_body)
        if n == 0:
            st.bad_requests += 1
            return None
        size = HEADER_SIZE + (b - a)
        if limited and not self.limiter.allow_bytes(source, size, now_ns):
            st.refused_requests += 1
            return None
        st.replies += 1
        st.messages += n
        st.bytes_out += size
        if n < count:
            st.short_replies += 1
        return [control_packet(self.feed.session, first, n), self.feed.data[a:b]]


@dataclass
class Faults:
    drop_a: float = 0.0
    drop_b: float = 0.0
    reorder: float = 0.0       # fraction of packets sent 2-4 packets late
    duplicate: float = 0.0     # fraction of packets sent twice
    seed: int = 0


def line_schedule(n_packets: int, drop: float, reorder: float, duplicate: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(slot, packet) pairs in send order for one line: dropped packets left out, late ones
    moved to a later slot, duplicated ones listed twice. Vectorised."""
    idx = np.flatnonzero(rng.random(n_packets) >= drop)
    late = rng.random(len(idx)) < reorder
    slot = idx + np.where(late, rng.integers(2, 5, len(idx)), 0)
    times = 1 + (rng.random(len(idx)) < duplicate)
    slot, idx = np.repeat(slot, times), np.repeat(idx, times)
    order = np.argsort(slot, kind="stable")
    return slot[order], idx[order]


def send_times_ns(feed: MoldFeed, rate: float | None, pps: float | None) -> np.ndarray:
    """Send time of each slot (ns from the start): message timestamps divided by ``rate``
    (None: flat out), and no faster than ``pps`` packets per second if given."""
    n = feed.n_packets
    t = np.zeros(n, np.int64)
    if rate is not None and n:
        ts = feed.timestamps.astype(np.float64)
        ts = np.maximum.accumulate(np.where(ts < 0, 0, ts))
        t = ((ts - ts[0]) / rate).astype(np.int64)
    if pps:
        t = np.maximum(t, (np.arange(n) * (1e9 / pps)).astype(np.int64))
    return t
