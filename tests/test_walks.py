"""Every compiled walk over length-prefixed messages against a slow, obvious Python walk, on
random streams that end cleanly, inside a length prefix, inside a message, or at a zero length
prefix, from any message boundary to any end (the walks' loops were rewritten to be bounded by
their range, binaryfile.WALK_LOOP: nothing else may change)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import itch_reference as ref
from itchflow.pipeline.publish import batch_cut
from itchflow.sources.tail import whole_messages_until_end_event
from itchflow.wire.binaryfile import AT_END, BAD_LENGTH, OK, TRUNCATED, ZERO_LENGTH, message_offsets, whole_messages_end
from itchflow.wire.soupbintcp import soup_to_binaryfile

_END_EVENT = b"S" + bytes(10) + b"C"     # a System Event 'C' (end of messages): 12 bytes


_STOPPED = {"end": AT_END, "truncated": TRUNCATED, "zero-length": ZERO_LENGTH}


def _slow_walk(data: bytes, pos: int, end: int):
    """The reference walk (itch_reference.walk) with itchflow's status codes."""
    msgs, why, at = ref.walk(data, pos, end)
    return msgs, _STOPPED[why], at


@st.composite
def streams(draw):
    """A BinaryFILE stream (some bodies are end-of-messages events), with a boundary to start
    from and an end to walk to."""
    parts = []
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.integers(0, 9)) == 0:
            body = _END_EVENT
        else:
            body = draw(st.binary(min_size=1, max_size=70))
        parts.append(len(body).to_bytes(2, "big") + body)
    tail = draw(st.sampled_from([b"", b"\x00", b"\x00\x00", b"\x00\x05ab", b"\x00\x00\x00\x03abc"]))
    data = b"".join(parts) + tail
    bounds = np.cumsum([0] + [len(p) for p in parts])
    start = int(bounds[draw(st.integers(0, len(parts)))])
    end = draw(st.integers(start, len(data)))
    return data, start, end


@settings(max_examples=300, deadline=None)
@given(streams())
def test_whole_messages_end(s):
    data, start, end = s
    msgs, _, _ = _slow_walk(data, start, end)
    stop, n = whole_messages_end(np.frombuffer(data, np.uint8), start, end)
    assert (int(stop), int(n)) == (ref.whole_end(data, start, end), len(msgs))


@settings(max_examples=300, deadline=None)
@given(streams(), st.integers(1, 5))
def test_message_offsets(s, every):
    """message_offsets (the message stores' index) also stops at a known type whose length
    prefix is not the specification's: a store would otherwise serve it."""
    data, _, _ = s
    msgs, why, at = _slow_walk(data, 0, len(data))
    for k, (prefix, body, length) in enumerate(msgs):
        code = chr(data[body])
        if code in ref.TABLE and ref.TABLE[code][0] != length:
            msgs, why, at = msgs[:k], BAD_LENGTH, prefix
            break
    index = np.full(len(data) // (3 * every) + 2, -1, np.int64)
    n, status, pos = message_offsets(np.frombuffer(data, np.uint8), every, index)
    assert int(n) == len(msgs)
    assert int(status) == (OK if why == AT_END else why)
    assert int(pos) == at
    wanted = [m[0] for m in msgs[::every]]
    assert list(index[:len(wanted)]) == wanted


@settings(max_examples=300, deadline=None)
@given(streams())
def test_whole_messages_until_end_event(s):
    """tail:'s walk also stops at a known type whose length prefix is not the specification's
    (the rest would be walked out of step)."""
    data, start, end = s
    msgs, why, at = _slow_walk(data, start, end)
    for k, (prefix, body, length) in enumerate(msgs):
        if data[body:body + length] == _END_EVENT:
            expected = (body + length, k + 1, True, OK)
            break
        code = chr(data[body])
        if code in ref.TABLE and ref.TABLE[code][0] != length:
            expected = (prefix, k, False, BAD_LENGTH)
            break
    else:
        expected = ((msgs[-1][1] + msgs[-1][2]) if msgs else start, len(msgs), False, why)
    got = whole_messages_until_end_event(np.frombuffer(data, np.uint8), start, end)
    assert tuple(int(x) if not isinstance(x, (bool, np.bool_)) else bool(x) for x in got) == expected


@settings(max_examples=300, deadline=None)
@given(streams(), st.integers(1, 400))
def test_batch_cut(s, batch_bytes):
    data, start, end = s
    msgs, _, _ = _slow_walk(data, start, end)
    limit = min(end, start + batch_bytes)
    taken = []
    for m in msgs:   # whole messages up to the batch's bytes, at least one
        if m[1] + m[2] > limit and taken:
            break
        taken.append(m)
    stop, n = batch_cut(np.frombuffer(data, np.uint8), start, end, batch_bytes)
    assert (int(stop), int(n)) == (((taken[-1][1] + taken[-1][2]) if taken else start), len(taken))


def _itch_lengths_wrong(message: bytes) -> bool:
    """A message of an ITCH type whose length is not that type's (the reference's table)."""
    code = chr(message[0])
    return code in ref.TABLE and ref.TABLE[code][0] != len(message)


@st.composite
def soup_messages(draw):
    """Any bytes, or a message of an ITCH type at its length or one byte off it."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=50))
    code = draw(st.sampled_from(ref.CODES))
    return code.encode() + bytes(ref.TABLE[code][0] - 1 + draw(st.sampled_from([0, 0, -1, 1])))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(b"SSSSH+"), soup_messages()), max_size=30),
       st.sampled_from([b"", b"\x00", b"\x00\x09S12"]), st.integers(0, 600))
def test_soup_to_binaryfile(packets, tail, cap):
    data = b"".join((1 + len(p)).to_bytes(2, "big") + bytes([t]) + p for t, p in packets) + tail
    # the slow conversion: consecutive whole S packets with a message (an ITCH type at its own
    # length), while they fit in out
    pos, out, n = 0, b"", 0
    for t, p in packets:
        if t != ord("S") or not p or _itch_lengths_wrong(p) or len(out) + 2 + len(p) > cap:
            break
        out += len(p).to_bytes(2, "big") + p
        pos += 3 + len(p)
        n += 1
    buf = np.zeros(cap, np.uint8)
    got_pos, got_out, got_n = soup_to_binaryfile(np.frombuffer(data, np.uint8), 0, len(data), buf, 0)
    assert (int(got_pos), int(got_n)) == (pos, n)
    assert bytes(buf[:int(got_out)]) == out
