"""``sharded.route`` (the walk that copies each message into its shard's block) against a slow model.

route takes most messages in a call-free loop of 64-byte moves (``_route_plain``) and leaves
the others to its own loop: broadcast types (copied to every shard), messages longer than a
64-byte move (unknown types may be up to 65,535 bytes), and messages within 64 bytes of the
buffer's end. Here random streams of all of these, with full blocks and full indexes in the
middle of a broadcast, a stop time, and bad framing, are routed call after call as
``ShardedBooks`` does (empty the blocks and call again after BLOCK_FULL), and every call's
result (status, position, messages, last timestamp), every block's bytes, every message index,
and the broadcast and break counters equal a model written out plainly in Python.
"""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.book import sharded as S
from itchflow.wire.binaryfile import BAD_LENGTH, OK, TRUNCATED, ZERO_LENGTH
from itchflow.wire.itch import LENGTH_BY_BYTE, MESSAGES

KNOWN = "ADEXSRBF"    # S, R and B are broadcast types
UNKNOWN = [b for b in range(256) if LENGTH_BY_BYTE[b] == 0]


def _known(code: str, locate: int, ts: int) -> bytes:
    body = bytearray(MESSAGES[code].length)
    body[0] = ord(code)
    body[1:3] = locate.to_bytes(2, "big")
    body[5:11] = ts.to_bytes(6, "big")
    return struct.pack(">H", len(body)) + bytes(body)


message = st.one_of(
    st.tuples(st.just("known"), st.sampled_from(KNOWN), st.integers(0, 5), st.integers(0, 1000)),
    st.tuples(st.just("unknown"), st.sampled_from(UNKNOWN), st.integers(1, 150), st.integers(0, 255)),
    st.tuples(st.just("bad length"), st.sampled_from(KNOWN), st.integers(1, 60), st.integers(0, 0)),
    st.tuples(st.just("zero"), st.just(""), st.integers(0, 0), st.integers(0, 0)),
)


def _stream(messages, cut: int) -> bytes:
    out = bytearray()
    for kind, code, a, b in messages:
        if kind == "known":
            out += _known(code, a, b)
        elif kind == "unknown":
            out += struct.pack(">H", a) + bytes([code]) + bytes([b]) * (a - 1)
        elif kind == "bad length":
            if a != MESSAGES[code].length:
                out += struct.pack(">H", a) + code.encode() + bytes(a - 1)
        else:
            out += b"\0\0"
    return bytes(out[:len(out) - cut]) if cut else bytes(out)


def _model(buf: bytes, pos: int, limit: int, shard_of, stop_ts: int, cap: int, rel_stride: int, nshards: int):
    """What route does, one message at a time, in plain Python."""
    end = len(buf)
    blocks = [bytearray() for _ in range(nshards)]
    rel: list[list[int]] = [[] for _ in range(nshards)]
    extra = np.zeros((nshards, 256), np.int64)
    breaks: dict[int, int] = {}
    n, last_ts, status = 0, -1, OK
    while pos < limit:
        if pos + 2 > end:
            status = TRUNCATED
            break
        length = int.from_bytes(buf[pos:pos + 2], "big")
        if length == 0:
            status = ZERO_LENGTH
            break
        if pos + 2 + length > end:
            status = TRUNCATED
            break
        q = pos + 2
        t = buf[q]
        expected = int(LENGTH_BY_BYTE[t])
        known = expected == length
        if known:
            ts = int.from_bytes(buf[q + 5:q + 11], "big")
            if stop_ts >= 0 and ts > stop_ts:
                status = S.STOPPED
                break
            locate = int.from_bytes(buf[q + 1:q + 3], "big")
            owner = int(shard_of[locate])
            every = chr(t) in S.BROADCAST_TYPES
        elif expected == 0:
            owner, every = 0, False
        else:
            status = BAD_LENGTH
            break
        size = 2 + length
        targets = range(nshards) if every else [owner]
        if any(len(blocks[s]) + size > cap or len(rel[s]) >= rel_stride for s in targets):
            status = S.BLOCK_FULL
            break
        for s in targets:
            blocks[s] += buf[pos:pos + size]
            rel[s].append(n)
        if known:
            if every:
                for s in range(nshards):
                    extra[s, t] += s != owner
                if chr(t) == "B":
                    breaks[locate] = breaks.get(locate, 0) + 1
            last_ts = ts
        pos += size
        n += 1
    return (status, pos, n, last_ts), blocks, rel, extra, breaks


@settings(max_examples=300, deadline=None)
@given(messages=st.lists(message, min_size=0, max_size=60), cut=st.integers(0, 3),
       nshards=st.integers(1, 3), shard_seed=st.integers(0, 2 ** 32 - 1),
       room=st.integers(0, 400), rel_stride=st.integers(1, 12), stop_ts=st.sampled_from([-1, 0, 300, 900]),
       limit_back=st.integers(0, 40))
def test_route_copies_what_a_slow_model_copies(messages, cut, nshards, shard_seed, room, rel_stride, stop_ts,
                                                limit_back):
    buf = _stream(messages, cut)
    arr = np.frombuffer(buf, np.uint8)
    end = len(buf)
    limit = max(0, end - limit_back)
    shard_of = np.random.default_rng(shard_seed).integers(0, nshards, S.L.N_LOCATES).astype(np.uint8)
    # a block holds at least the longest message here (as ShardedBooks': route needs one to fit to go on)
    stride = S._RUN_SLACK + 2 + 150 + room
    cap = stride - S._RUN_SLACK
    blocks = np.zeros(nshards * stride, np.uint8)
    rel = np.zeros(nshards * rel_stride, np.uint32)
    fill = np.zeros(nshards, np.int64)
    count = np.zeros(nshards, np.int64)
    extra = np.zeros((nshards, 256), np.int64)
    breaks = np.zeros(S.L.N_LOCATES, np.int64)
    want_extra = np.zeros((nshards, 256), np.int64)
    want_breaks: dict[int, int] = {}
    pos = 0
    for _ in range(len(messages) * nshards + 2):   # BLOCK_FULL: emptied, called again
        fill[:] = 0
        count[:] = 0
        got = tuple(int(x) for x in S.route(arr, pos, end, limit, shard_of, S._BROADCAST, LENGTH_BY_BYTE, stop_ts,
                                            blocks, stride, fill, rel, rel_stride, count, extra, breaks))
        want, want_blocks, want_rel, e, b = _model(buf, pos, limit, shard_of, stop_ts, cap, rel_stride, nshards)
        want_extra += e
        for k, v in b.items():
            want_breaks[k] = want_breaks.get(k, 0) + v
        assert got == want
        for s in range(nshards):
            assert blocks[s * stride:s * stride + fill[s]].tobytes() == bytes(want_blocks[s])
            assert rel[s * rel_stride:s * rel_stride + count[s]].tolist() == want_rel[s]
        if got[0] != S.BLOCK_FULL:
            break
        pos = got[1]
    else:
        raise AssertionError("route never finished")
    assert np.array_equal(extra, want_extra)
    assert {int(k): int(breaks[k]) for k in np.flatnonzero(breaks)} == want_breaks
