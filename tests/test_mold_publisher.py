"""MoldUDP64 publisher (sans-I/O): packetization, re-request replies, fault schedules.

Expectations come from a slow obvious reference written here (struct, a Python loop).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.errors import ITCHFormatError
from itchflow.wire.itch import MESSAGES
from itchflow.protocol.mold.feed import MoldFeed, RerequestServer, line_schedule, send_times_ns

CODES = "SADEXUPI"


def framed(code: str, ts: int, fill: int) -> bytes:
    m = MESSAGES[code]
    body = bytearray(bytes([fill % 256]) * m.length)
    body[0] = ord(code)
    off = m.field("timestamp").offset
    body[off:off + 6] = ts.to_bytes(6, "big")
    return struct.pack(">H", m.length) + bytes(body)


def make_file(n: int, seed: int = 0) -> tuple[bytes, list[bytes], list[int]]:
    rng = np.random.default_rng(seed)
    msgs, ts = [], []
    for i in range(n):
        t = 1_000_000 + i * 777
        msgs.append(framed(CODES[rng.integers(len(CODES))], t, i))
        ts.append(t)
    return b"".join(msgs), msgs, ts


def reference_packets(msgs: list[bytes], payload: int) -> list[tuple[int, int]]:
    """(first index, count) per packet: greedy, at least one message each."""
    out, i = [], 0
    while i < len(msgs):
        size, j = len(msgs[i]), i + 1
        while j < len(msgs) and size + len(msgs[j]) <= payload - 20:
            size += len(msgs[j])
            j += 1
        out.append((i, j - i))
        i = j
    return out


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 400), payload=st.integers(72, 1500), seed=st.integers(0, 1000))
def test_packets_match_reference(n, payload, seed):
    data, msgs, ts = make_file(n, seed)
    feed = MoldFeed(np.frombuffer(data, np.uint8), "SESS", payload)
    ref = reference_packets(msgs, payload)
    assert feed.n_packets == len(ref) and feed.messages == n
    for p, (first, count) in enumerate(ref):
        pkt = feed.packet_bytes(p)
        assert pkt == struct.pack(">10sQH", b"SESS      ", first + 1, count) + b"".join(msgs[first:first + count])
        assert len(pkt) <= payload
        assert feed.timestamps[p] == ts[first]


def test_control_packets_hex():
    data, _, _ = make_file(5)
    feed = MoldFeed(np.frombuffer(data, np.uint8), "ABC", 1400)
    assert feed.heartbeat(6).hex() == "41424320202020202020" "0000000000000006" "0000"
    assert feed.end_of_session().hex() == "41424320202020202020" "0000000000000006" "ffff"


def test_truncated_file_is_reported_with_offset():
    data, msgs, _ = make_file(3)
    with pytest.raises(ITCHFormatError, match="byte offset") as e:
        MoldFeed(np.frombuffer(data[:-1], np.uint8), "S", 1400, source="x.itch")
    assert e.value.offset == len(msgs[0]) + len(msgs[1])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), first=st.integers(0, 320), count=st.integers(0, 0xFFFF),
       available=st.integers(1, 320), payload=st.integers(72, 600))
def test_rerequest_replies(n, first, count, available, payload):
    data, msgs, _ = make_file(n, 1)
    feed = MoldFeed(np.frombuffer(data, np.uint8), "S", payload)
    server = RerequestServer(feed)
    reply = server.handle(struct.pack(">10sQH", b"S         ", first, count), available)
    # reference: messages first.. (1-based), no more than asked, published, or fitting
    end = min(first + count, available, n + 1) if count not in (0, 0xFFFF) else first
    take = []
    size = 0
    for s in range(max(first, 1), end):
        if take and size + len(msgs[s - 1]) > payload - 20:
            break
        take.append(msgs[s - 1])
        size += len(msgs[s - 1])
    if first < 1 or not take:
        assert reply is None and server.stats.bad_requests == 1
        return
    got = b"".join(bytes(memoryview(x)) for x in reply)
    assert got == struct.pack(">10sQH", b"S         ", first, len(take)) + b"".join(take)
    assert server.stats.messages == len(take)


def test_rerequest_wrong_session_or_size():
    data, _, _ = make_file(10)
    server = RerequestServer(MoldFeed(np.frombuffer(data, np.uint8), "S", 1400))
    assert server.handle(struct.pack(">10sQH", b"OTHER     ", 1, 1), 11) is None
    assert server.handle(b"short", 11) is None
    assert server.stats.bad_requests == 2 and server.stats.replies == 0


def test_line_schedule_faults():
    rng = np.random.default_rng(3)
    slots, pkts = line_schedule(10_000, 0.05, 0.1, 0.05, rng)
    assert np.all(np.diff(slots) >= 0)
    uniq, times = np.unique(pkts, return_counts=True)
    assert 0.04 < 1 - len(uniq) / 10_000 < 0.06          # drops
    assert 0.04 < np.mean(times == 2) < 0.06             # duplicates
    assert set(times) <= {1, 2}
    late = slots - pkts
    assert set(np.unique(late)) <= {0, 2, 3, 4} and 0.08 < np.mean(late > 0) < 0.12
    # reordering is real: the send order is not sorted by packet
    assert np.any(np.diff(pkts) < 0)
    s0, p0 = line_schedule(100, 0, 0, 0, rng)
    assert list(p0) == list(range(100)) and list(s0) == list(range(100))


def test_send_times():
    data, _, ts = make_file(2000)
    feed = MoldFeed(np.frombuffer(data, np.uint8), "S", 200)
    t = send_times_ns(feed, 2.0, None)
    assert t[0] == 0 and t[-1] == (feed.timestamps[-1] - feed.timestamps[0]) // 2
    assert np.all(send_times_ns(feed, None, None) == 0)
    capped = send_times_ns(feed, None, 1000.0)
    assert capped[10] == 10_000_000


def test_rerequest_flood_from_one_source_is_bounded_and_others_are_served():
    """50,000 re-requests from one source in half a second get back at most 5 bytes per byte
    received; a receiver elsewhere asking now and then is answered every time."""
    from itchflow.protocol.mold.ratelimit import RateLimits

    data, msgs, _ = make_file(3000, 2)
    feed = MoldFeed(np.frombuffer(data, np.uint8), "S", 1400)
    server = RerequestServer(feed, RateLimits())
    flood_in = flood_out = 0
    good = 0
    for k in range(50_000):
        now = k * 10_000                              # 50,000 in 0.5 s
        req = struct.pack(">10sQH", b"S         ", 1 + k % 2000, 0xFFFE)
        reply = server.handle(req, 3001, ("10.0.0.66", 4000), now)
        flood_in += len(req)
        flood_out += sum(len(memoryview(x).cast("B")) for x in reply) if reply else 0
        if k % 500 == 0:                              # the well-behaved receiver: 100 requests
            r = server.handle(struct.pack(">10sQH", b"S         ", 1 + k // 25, 10), 3001, ("10.0.0.7", 5000), now)
            assert r is not None
            got = b"".join(bytes(memoryview(x)) for x in r)
            assert got[20:] == b"".join(msgs[k // 25:k // 25 + 10])
            good += 1
    assert good == 100
    assert flood_out <= 5 * flood_in, (flood_out, flood_in)
    assert server.stats.refused_requests > 40_000
    assert server.stats.bytes_in == 20 * (50_000 + 100)


def test_rerequest_reply_capped_and_sources_bounded():
    from itchflow.protocol.mold.ratelimit import RateLimits

    data, _, _ = make_file(500, 3)
    feed = MoldFeed(np.frombuffer(data, np.uint8), "S", 1400)
    server = RerequestServer(feed, RateLimits(max_sources=8), max_reply_bytes=200)
    for k in range(100):                              # 100 spoofed sources
        reply = server.handle(struct.pack(">10sQH", b"S         ", 1, 500), 501, ("10.0.1.%d" % k, 1), k)
        assert reply is not None and 20 + len(reply[1]) <= 200
    assert server.limiter.sources == 8
