"""MoldUDP64 receiver state machine: scripted packets, fake time, no network.

Packets are built here with struct, independently of the code under test; the expected
output is the plain concatenation of the framed messages in sequence.
"""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.protocol.mold.receiver import (
    LINE_A,
    LINE_B,
    LINE_REPLY,
    Deliver,
    EndOfSession,
    Gap,
    Lost,
    Malformed,
    MoldReceiver,
    Request,
    SessionChange,
)

SESSION = b"0000000001"
MS = 1_000_000


def message(seq: int) -> bytes:
    """A framed message whose length and bytes depend on its sequence number. Its type byte
    is none of ITCH's (0xC0..0xD9), which the receiver would hold to ITCH's lengths."""
    body = bytes([0xC0 + seq % 26]) + seq.to_bytes(8, "big") + bytes(seq % 7)
    return struct.pack(">H", len(body)) + body


def packet(first: int, count: int, session: bytes = SESSION) -> bytes:
    return struct.pack(">10sQH", session, first, count) + b"".join(message(s) for s in range(first, first + count))


def heartbeat(seq: int, session: bytes = SESSION) -> bytes:
    return struct.pack(">10sQH", session, seq, 0)


def end_of_session(seq: int, session: bytes = SESSION) -> bytes:
    return struct.pack(">10sQH", session, seq, 0xFFFF)


def expected(first: int, end: int) -> bytes:
    return b"".join(message(s) for s in range(first, end))


def delivered(events) -> bytes:
    return b"".join(e.data.tobytes() for e in events if isinstance(e, Deliver))


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


class Run:
    """Feeds a receiver and collects every event and the delivered bytes."""

    def __init__(self, **kw):
        kw.setdefault("session", SESSION)
        self.r = MoldReceiver(**kw)
        self.events = []
        self.out = bytearray()

    def feed(self, pkt, now, line=LINE_A):
        ev = self.r.receive(pkt, now, line)
        self._take(ev)
        return ev

    def tick(self, now):
        ev = self.r.tick(now)
        self._take(ev)
        return ev

    def _take(self, ev):
        self.events.extend(ev)
        for e in ev:
            if isinstance(e, Deliver):
                self.out += e.data.tobytes()


def test_in_order_delivery_is_a_view_and_counts():
    run = Run()
    p = packet(1, 3)
    ev = run.feed(p, 0)
    (d,) = of(ev, Deliver)
    assert (d.first_sequence, d.count) == (1, 3)
    assert d.data.tobytes() == p[20:]
    run.feed(packet(4, 2), 1)
    assert bytes(run.out) == expected(1, 6)
    s = run.r.stats
    assert (s.packets, s.messages, s.bytes, s.gaps, s.requests) == (2, 5, len(expected(1, 6)), 0, 0)
    assert run.r.next_sequence == 6 and run.r.synchronized


def test_request_packet_hex():
    # Packet 1 then 4..5: hole 2..3 after the line wait -> request seq 2 count 2.
    run = Run(line_wait_ns=5 * MS)
    run.feed(packet(1, 1), 0)
    ev = run.feed(packet(4, 2), 1 * MS)
    assert of(ev, Gap) == [Gap(2, 2)] and not of(ev, Request)
    assert run.r.next_deadline() == 6 * MS      # visible since the packet at 1 ms proved it
    assert not of(run.tick(6 * MS - 1), Request)
    reqs = of(run.tick(6 * MS), Request)
    assert len(reqs) == 1
    assert reqs[0].packet.hex() == "30303030303030303031" "0000000000000002" "0002"


def test_heartbeat_reveals_gap_and_request_covers_it():
    run = Run(line_wait_ns=1 * MS)
    run.feed(packet(1, 2), 0)
    ev = run.feed(heartbeat(10), 0)           # server has sent up to 9: 3..9 missing
    assert of(ev, Gap) == [Gap(3, 7)]
    assert run.r.stats.heartbeats == 1 and not run.r.synchronized
    (req,) = of(run.tick(1 * MS), Request)
    assert (req.first_sequence, req.count) == (3, 7)
    run.feed(packet(3, 7), 2 * MS, LINE_REPLY)
    assert bytes(run.out) == expected(1, 10)
    assert run.r.stats.recovered == 7 and run.r.synchronized


def test_heartbeat_at_next_expected_is_not_a_gap():
    run = Run()
    run.feed(packet(1, 2), 0)
    run.feed(heartbeat(3), 0)
    assert not of(run.events, Gap) and run.r.synchronized


def test_end_of_session_never_advances_expected_sequence():
    # nassau #16: the count 0xFFFF is not a message count.
    run = Run(line_wait_ns=1 * MS)
    run.feed(packet(1, 2), 0)
    ev = run.feed(end_of_session(3), 0)
    assert of(ev, EndOfSession) == [EndOfSession(SESSION, 3)]
    assert run.r.next_sequence == 3 and run.r.finished and not of(run.events, Gap)
    # an end of session whose sequence is ahead reveals a gap, and is not finished until filled
    run = Run(line_wait_ns=1 * MS)
    run.feed(packet(1, 2), 0)
    run.feed(end_of_session(6), 0)
    assert run.r.next_sequence == 3 and not run.r.finished
    (req,) = of(run.tick(1 * MS), Request)
    assert (req.first_sequence, req.count) == (3, 3)
    run.feed(packet(3, 3), 2 * MS, LINE_REPLY)
    assert run.r.finished and bytes(run.out) == expected(1, 6)
    assert run.r.stats.end_of_session == 1


def test_overlapping_packet_delivers_new_tail_only():
    run = Run()
    run.feed(packet(1, 5), 0)
    ev = run.feed(packet(3, 6), 0)
    (d,) = of(ev, Deliver)
    assert (d.first_sequence, d.count) == (6, 3)
    assert d.data.tobytes() == expected(6, 9)
    assert bytes(run.out) == expected(1, 9)
    assert run.r.stats.duplicate_messages == 3


def test_early_overlapping_packets_drain_without_repeats():
    run = Run()
    run.feed(packet(1, 1), 0)
    run.feed(packet(4, 4), 0)       # 4..7 early
    run.feed(packet(3, 3), 0)       # 3..5 early, overlaps
    run.feed(packet(2, 1), 0)       # fills: 2, then 3..5, then 6..7
    assert bytes(run.out) == expected(1, 8)
    assert run.r.stats.messages == 7 and run.r.stats.duplicate_messages == 2


def test_line_b_fills_a_hole_within_the_wait_no_request():
    run = Run(line_wait_ns=2 * MS)
    run.feed(packet(1, 2), 0, LINE_A)
    run.feed(packet(1, 2), 10, LINE_B)     # duplicate from B
    run.feed(packet(5, 2), 20, LINE_A)     # A lost 3..4
    run.feed(packet(3, 2), 1 * MS, LINE_B)  # B has them
    run.feed(packet(5, 2), 1 * MS + 5, LINE_B)
    run.tick(10 * MS)
    assert not of(run.events, Request)
    assert bytes(run.out) == expected(1, 7)
    s = run.r.stats
    assert s.duplicate_packets == 2 and s.duplicate_messages == 4
    assert s.messages_by_line == [4, 2, 0] and s.gaps == 1


def test_hole_waits_bounded_number_of_packets():
    run = Run(line_wait_ns=10**12, line_wait_packets=3)
    run.feed(packet(1, 1), 0)
    run.feed(packet(3, 1), 0)      # proves hole 2 (packet 2 of the run)
    run.feed(packet(4, 1), 0)
    run.feed(packet(5, 1), 0)
    assert not of(run.events, Request)
    run.feed(packet(6, 1), 0)      # the third packet after the one that proved the hole
    (req,) = of(run.events, Request)
    assert (req.first_sequence, req.count) == (2, 1)


def test_short_reply_asks_again_at_once_until_highest_is_covered():
    # nassau #11/#15/#23: stay in gap fill until the highest sequence seen is delivered,
    # request up to it, and ask for the rest as soon as a reply falls short.
    run = Run(line_wait_ns=0, request_timeout_ns=100 * MS)
    run.feed(packet(1, 1), 0)
    run.feed(heartbeat(21), 0)                 # 2..20 missing, nothing buffered
    (r1,) = of(run.events, Request)
    assert (r1.first_sequence, r1.count) == (2, 19)
    ev = run.feed(packet(2, 5), 1 * MS, LINE_REPLY)   # short reply: 2..6
    (r2,) = of(ev, Request)
    assert (r2.first_sequence, r2.count) == (7, 14) and r2.attempt == 1
    assert not run.r.synchronized and run.r.in_gap
    run.feed(packet(7, 14), 2 * MS, LINE_REPLY)
    assert run.r.synchronized and bytes(run.out) == expected(1, 21)
    assert run.r.stats.short_replies == 1 and run.r.stats.recovered == 19


def test_request_resent_after_timeout_then_given_up():
    """Each re-send waits twice as long as the one before (10, 20, 40 ms here); max_attempts
    caps the requests."""
    run = Run(line_wait_ns=0, request_timeout_ns=10 * MS, max_attempts=3)
    run.feed(packet(1, 1), 0)
    run.feed(packet(3, 1), 0)
    assert [r.attempt for r in of(run.events, Request)] == [1]
    assert run.r.next_deadline() == 10 * MS
    assert not run.tick(9 * MS)
    assert [r.attempt for r in of(run.tick(10 * MS), Request)] == [2]
    assert run.r.next_deadline() == 30 * MS
    assert not run.tick(29 * MS)
    assert [r.attempt for r in of(run.tick(30 * MS), Request)] == [3]
    assert run.r.next_deadline() == 70 * MS and not run.tick(69 * MS)
    ev = run.tick(70 * MS)
    assert of(ev, Lost) == [Lost(2, 1, "no reply from the re-request server for 0.07 s (3 requests for this hole)")]
    assert bytes(run.out) == expected(1, 2) + expected(3, 4)
    s = run.r.stats
    assert (s.requests, s.request_resends, s.lost, s.messages) == (3, 2, 1, 2)
    assert run.r.synchronized and not run.r.in_gap


def test_a_hole_is_asked_for_give_up_ns_with_waits_doubling_to_a_cap():
    """The defaults: 50 ms doubling to 1 s, given up after 10 s of asking. It was 20 requests
    50 ms apart: a re-request server answering in 1.5 s (far away, or busy at the end of the
    day) lost every hole while the end-of-session packets still came."""
    run = Run(line_wait_ns=0)
    run.feed(packet(1, 1), 0)
    run.feed(packet(3, 1), 0)
    sent, now = [0], 0
    while run.r.next_deadline() is not None:
        now = run.r.next_deadline()
        ev = run.tick(now)
        sent += [now for _ in of(ev, Request)]
        if of(ev, Lost):
            break
    assert sent[:7] == [0, 50 * MS, 150 * MS, 350 * MS, 750 * MS, 1550 * MS, 2550 * MS]
    assert all(b - a == 1000 * MS for a, b in zip(sent[5:], sent[6:]))
    assert sent[-1] == 9550 * MS and now == 10_000 * MS     # given up at 10 s of silence, not at a re-send
    assert of(ev, Lost) == [Lost(2, 1, "no reply from the re-request server for 10.00 s (14 requests for this hole)")]


def test_once_the_server_has_been_silent_for_give_up_ns_the_next_holes_go_at_their_first_time_out():
    """Holes are asked for one at a time: with a server that never answers, each of five holes
    took 10.5 s (53 s in all, the delivery of the data held behind them as late). The silence
    is the server's: after the first hole's 10 s, the next ones go as soon as they are asked."""
    run = Run(line_wait_ns=0)
    for seq in (1, 3, 5, 7):
        run.feed(packet(seq, 1), 0)                # holes at 2, 4 and 6
    lost_at = []
    while run.r.next_deadline() is not None:
        now = run.r.next_deadline()
        lost_at += [(e.first_sequence, now) for e in of(run.tick(now), Lost)]
    assert lost_at == [(2, 10_000 * MS), (4, 10_000 * MS), (6, 10_000 * MS)]
    assert bytes(run.out) == b"".join(expected(s, s + 1) for s in (1, 3, 5, 7))
    assert run.r.stats.requests == 14 and run.r.stats.unasked_give_ups == 2   # 4 and 6 went with 2, unasked
    run2 = Run(line_wait_ns=0)                     # a reply in between: the next hole waits its full time again
    for seq in (1, 3):
        run2.feed(packet(seq, 1), 0)
    while not of(run2.events, Lost):
        run2.tick(run2.r.next_deadline())
    t0 = 10_000 * MS + 1
    ev = run2.feed(packet(5, 1), t0) + run2.tick(t0)   # hole 4, seen after hole 2 went: asked for
    assert len(of(ev, Request)) == 1
    t = run2.r.next_deadline()
    assert t == t0 + 50 * MS                       # its first time-out, not at once
    run2.feed(packet(99, 1, b"OTHER     "), t - 1, LINE_REPLY)   # the server is alive (another session)
    run2.tick(t)
    assert not [e for e in of(run2.events, Lost) if e.first_sequence == 4]
    assert run2.r.next_deadline() > t


def test_a_silent_server_gets_no_burst_of_one_request_a_hole():
    """Probe 51: with 5,000 holes held and a server that never answers, the first hole took
    its 10 s of requests and then every other hole was asked for and given up in the same
    instant, 4,999 requests back to back (1,159 within 200 ms on real sockets). The holes
    seen before the silence gave the first up now go with it, unasked; a hole seen later is
    asked once and has its first time-out to be answered."""
    holes = 5_000
    run = Run(line_wait_ns=0)
    for seq in range(1, 2 * holes + 2, 2):
        run.feed(packet(seq, 1), 0)                 # every even sequence missing
    requests_at = [0]                                # the first hole's first, as its packet came
    while run.r.next_deadline() is not None:
        now = run.r.next_deadline()
        requests_at += [now for _ in of(run.tick(now), Request)]
    assert len(of(run.events, Request)) == len(requests_at) == 14
    assert requests_at[-1] == 9_550 * MS and now == 10_000 * MS       # the first hole's, then none
    assert run.r.stats.lost == holes and run.r.stats.unasked_give_ups == holes - 1
    assert bytes(run.out) == b"".join(expected(s, s + 1) for s in range(1, 2 * holes + 2, 2))
    # one new hole after the silence: one request, given up at its first time-out
    t0 = 20_000 * MS
    ev = run.feed(packet(2 * holes + 3, 1), t0) + run.tick(t0)
    assert len(of(ev, Request)) == 1 and not of(ev, Lost)
    assert run.r.next_deadline() == t0 + 50 * MS
    assert not of(run.tick(t0 + 50 * MS - 1), Lost)
    (lost,) = of(run.tick(t0 + 50 * MS), Lost)
    assert lost.first_sequence == 2 * holes + 2 and run.r.stats.requests == 15


def test_sessions_left_are_remembered_up_to_a_bound():
    """Probe 51: following sessions, every well-framed packet naming a new session is a
    change, and each name left was kept for ever (300,000 spoofed names: +68 MB)."""
    from itchflow.protocol.mold.receiver import OLD_SESSIONS_KEPT

    run = Run(follow_sessions=True, start_sequence=None)
    names = [f"S{i:09d}".encode() for i in range(OLD_SESSIONS_KEPT + 500)]
    for n in names:
        run.feed(packet(1, 1, n), 0)
    assert len(run.r.old_sessions) == OLD_SESSIONS_KEPT
    assert run.r.stats.old_sessions_forgotten == len(names) - OLD_SESSIONS_KEPT   # (SESSION left first)
    run.feed(packet(2, 1, names[-2]), 1)            # the last one left is still known: stale
    assert run.r.stats.stale_session_packets == 1 and run.r.session == names[-1]


def test_give_up_ns_shorter_than_the_request_time_out_is_kept():
    run = Run(line_wait_ns=0, request_timeout_ns=60_000 * MS, give_up_ns=100 * MS)
    run.feed(packet(1, 1), 0)
    run.feed(packet(3, 1), 0)
    assert run.r.next_deadline() == 100 * MS
    assert of(run.tick(100 * MS), Lost) == [Lost(2, 1, "no reply from the re-request server for 0.10 s "
                                                       "(1 request for this hole)")]


def test_a_late_reply_fills_the_hole():
    run = Run(line_wait_ns=0)
    run.feed(packet(1, 1), 0)
    run.feed(packet(3, 1), 0)
    run.feed(end_of_session(5), 0)                # end of session: 4 is missing too
    for t in range(50 * MS, 1500 * MS, 50 * MS):     # time passes, the end of session repeats
        run.feed(end_of_session(5), t)
        run.tick(t)
    assert [r.attempt for r in of(run.events, Request)] == [1, 2, 3, 4, 5] and run.r.stats.lost == 0
    run.feed(packet(2, 1), 1500 * MS, LINE_REPLY)
    run.feed(packet(4, 1), 1500 * MS, LINE_REPLY)
    assert run.r.synchronized and bytes(run.out) == expected(1, 5) and run.r.stats.lost == 0


def test_no_rerequest_server_loses_after_line_wait():
    run = Run(requests=False, line_wait_ns=1 * MS)
    run.feed(packet(1, 1), 0)
    run.feed(packet(4, 1), 0)
    assert not of(run.events, Lost)
    run.tick(1 * MS)
    assert of(run.events, Lost) == [Lost(2, 2, "no re-request server")]
    assert run.r.stats.lost == 2 and run.r.stats.messages == 2


def test_request_count_capped():
    run = Run(line_wait_ns=0, max_request_count=100)
    run.feed(packet(1, 1), 0)
    run.feed(heartbeat(1000), 0)
    (r,) = of(run.events, Request)
    assert (r.first_sequence, r.count) == (2, 100)
    run.feed(packet(2, 100), 1, LINE_REPLY)
    (r2,) = of(run.events, Request)[1:]
    assert (r2.first_sequence, r2.count) == (102, 100)


def test_session_change_and_stale_packets():
    other = b"0000000002"
    run = Run(session=None, follow_sessions=True)
    run.feed(packet(1, 2), 0)
    assert run.r.session == SESSION
    run.feed(packet(5, 1), 0)                   # 3..4 missing when the session changes
    ev = run.feed(packet(1, 2, other), 1)
    assert of(ev, SessionChange) == [SessionChange(SESSION, other)]
    assert of(ev, Lost) == [Lost(3, 3, "session changed before the gap was filled")]
    run.feed(packet(3, 2, SESSION), 2)          # late packet of the old session
    assert run.r.stats.stale_session_packets == 1
    run.feed(packet(3, 1, other), 3)
    assert bytes(run.out) == expected(1, 3) + expected(1, 4)
    assert run.r.stats.session_changes == 1 and run.r.next_sequence == 4


def test_pinned_session_ignores_others():
    run = Run()                                  # session given: pinned
    run.feed(packet(1, 2), 0)
    run.feed(packet(1, 5, b"OTHERSESS1"), 0)
    run.feed(end_of_session(9, b"OTHERSESS1"), 0)
    run.feed(packet(3, 1), 0)
    assert bytes(run.out) == expected(1, 4) and run.r.session == SESSION
    assert run.r.stats.other_session_packets == 2 and run.r.stats.session_changes == 0
    assert not run.r.ended and run.r.synchronized


def test_join_mid_day():
    run = Run(start_sequence=None)
    run.feed(packet(1000, 2), 0)
    run.feed(packet(1002, 1), 0)
    assert bytes(run.out) == expected(1000, 1003)
    run = Run(start_sequence=None)
    run.feed(heartbeat(500), 0)
    run.feed(packet(500, 1), 0)
    assert bytes(run.out) == expected(500, 501) and not of(run.events, Gap)


@pytest.mark.parametrize("raw, why", [
    (b"\x00" * 19, "shorter than the 20-byte"),
    (struct.pack(">10sQH", SESSION, 1, 2) + message(1), "runs past the end"),
    (packet(1, 1) + b"\x00", "left over"),
    (struct.pack(">10sQH", SESSION, 1, 1) + b"\x00\x00", "zero-length"),
    (heartbeat(1) + b"x", "heartbeat or end-of-session packet (message count 0 or 65535) with bytes after its header"),
])
def test_malformed_packets_are_counted_with_their_number(raw, why):
    run = Run()
    run.feed(packet(1, 0 + 1), 0)
    run.feed(raw, 1, LINE_B)
    (m,) = of(run.events, Malformed)
    assert m.packet == 2 and m.line == LINE_B and why in m.reason
    assert run.r.stats.malformed == 1 and run.r.malformed_log == [m]
    run.feed(packet(2, 1), 2)     # and the feed goes on
    assert bytes(run.out) == expected(1, 3)


def _itch_block(code: bytes, length: int) -> bytes:
    """A framed block of an ITCH type at any length (the bytes after the type are zeros)."""
    return struct.pack(">H", length) + code + bytes(length - 1)


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("code, length, spec", [(b"A", 20, 36), (b"D", 18, 19), (b"S", 13, 12), (b"Q", 41, 40)])
def test_an_itch_message_of_the_wrong_length_is_malformed_and_the_other_line_fills_it(code, length, spec, batched):
    """A block whose type is ITCH's but whose length is not that type's (ITCH 5.0: A 36, D 19,
    S 12, Q 40 bytes) would end any later read of the output at that message: the packet is
    malformed, reported with the block's offset, and line B's good copy is delivered instead."""
    good = _itch_block(code, spec)
    bad = struct.pack(">10sQH", SESSION, 2, 2) + message(2) + _itch_block(code, length)
    run = Run(line_wait_ns=10 * MS)
    run.feed(packet(1, 1), 0)
    if batched:
        bufs = np.zeros((1, 2048), np.uint8)
        bufs[0, :len(bad)] = np.frombuffer(bad, np.uint8)
        run._take(run.r.receive_batch(bufs, np.array([len(bad)]), 1, 1, LINE_A))
    else:
        run.feed(bad, 1)
    (m,) = of(run.events, Malformed)
    assert m.packet == 2 and m.offset == 20 + len(message(2))
    assert f"type {code.decode()!r} is {spec} bytes, this block {length}" in m.reason
    assert bytes(run.out) == expected(1, 2) and run.r.stats.malformed == 1
    run.feed(struct.pack(">10sQH", SESSION, 2, 2) + message(2) + good, 2, LINE_B)
    assert bytes(run.out) == expected(1, 3) + good
    assert run.r.next_sequence == 4


def test_unknown_types_and_itch_types_at_their_length_pass():
    """Every ITCH 5.0 type at its specified length, and a type ITCH does not define at any
    length, are delivered as they are (unknown types are counted where they are decoded)."""
    from itchflow.wire.itch import MESSAGES

    blocks = [_itch_block(m.code.encode(), m.length) for m in MESSAGES.values()] + [_itch_block(b"z", 3), _itch_block(b"\xff", 70)]
    pkt = struct.pack(">10sQH", SESSION, 1, len(blocks)) + b"".join(blocks)
    run = Run()
    run.feed(pkt, 0)
    assert bytes(run.out) == b"".join(blocks) and not of(run.events, Malformed)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80), st.binary(max_size=80))
def test_arbitrary_bytes_never_raise(a, b):
    run = Run(session=None)
    run.feed(SESSION + a, 0)
    run.feed(b, 1)
    run.tick(10**10)
    s = run.r.stats
    assert s.packets == 2


def simulate(total, per_packet, loss_a, loss_b, reorder, dup, short, seed, eos=True, per_packet_b=None,
             max_buffered=1 << 16):
    """A publisher on two lossy lines and a re-request server that may answer short.

    Line B may cut the same messages into packets of another size (so its packets overlap
    line A's at arbitrary points). Returns the Run. Time advances 100 us per packet slot.
    """
    rng = random.Random(seed)
    per_b = per_packet_b or per_packet
    lines = {LINE_A: [(s, min(per_packet, total + 1 - s)) for s in range(1, total + 1, per_packet)],
             LINE_B: [(s, min(per_b, total + 1 - s)) for s in range(1, total + 1, per_b)]}
    packets = lines[LINE_A]
    run = Run(line_wait_ns=300_000, line_wait_packets=8, request_timeout_ns=2 * MS, max_attempts=1000,
              max_buffered=max_buffered)
    queue = []  # (time, line, bytes)
    for line, loss in ((LINE_A, loss_a), (LINE_B, loss_b)):
        for first, count in lines[line]:
            i = (first - 1) // per_packet
            if rng.random() < loss:
                continue
            t = i * 100_000 + line * 20_000 + (rng.randrange(1, 4) * 100_000 if rng.random() < reorder else 0)
            queue.append((t, line, packet(first, count)))
            if rng.random() < dup:
                queue.append((t + 1, line, packet(first, count)))
    end_t = len(packets) * 100_000
    if eos:
        queue.append((end_t, LINE_A, end_of_session(total + 1)))
    queue.sort(key=lambda x: (x[0], x[1]))
    pending = []  # (time, request)
    now = 0
    qi = 0
    for _ in range(100_000):
        if qi >= len(queue) and not pending and (run.r.finished or not eos):
            break
        cands = []
        if qi < len(queue):
            cands.append(queue[qi][0])
        if pending:
            cands.append(pending[0][0])
        dl = run.r.next_deadline()
        if dl is not None:
            cands.append(dl)
        if not cands:
            break
        now = max(now, min(cands))
        if qi < len(queue) and queue[qi][0] <= now:
            _, line, pkt = queue[qi]
            qi += 1
            ev = run.feed(pkt, now, line)
        elif pending and pending[0][0] <= now:
            _, req = pending.pop(0)
            n = min(req.count, max(1, rng.randrange(1, req.count + 1) if rng.random() < short else req.count))
            n = min(n, total + 1 - req.first_sequence)
            ev = run.feed(packet(req.first_sequence, n), now, LINE_REPLY)
        else:
            ev = run.tick(now)
        for e in ev:
            if isinstance(e, Request):
                pending.append((now + 150_000, e))
        pending.sort(key=lambda x: x[0])
    return run


@pytest.mark.parametrize("seed", range(6))
def test_lossy_ab_lines_with_short_replies_recover_everything(seed):
    total = 3000
    run = simulate(total, 7, 0.05, 0.05, 0.05, 0.05, 0.5, seed)
    assert bytes(run.out) == expected(1, total + 1)
    s = run.r.stats
    assert s.messages == total and s.lost == 0 and sum(s.messages_by_line) == total
    assert s.recovered == s.messages_by_line[LINE_REPLY]
    assert run.r.finished and s.malformed == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), loss=st.floats(0, 0.5), per=st.integers(1, 9), per_b=st.integers(1, 9),
       short=st.floats(0, 1), dup=st.floats(0, 0.3), max_buffered=st.sampled_from([1, 3, 1 << 16]))
def test_recovery_property(seed, loss, per, per_b, short, dup, max_buffered):
    total = 300
    run = simulate(total, per, loss, loss, 0.1, dup, short, seed, per_packet_b=per_b, max_buffered=max_buffered)
    assert bytes(run.out) == expected(1, total + 1)
    s = run.r.stats
    assert s.messages + s.lost == total and s.lost == 0
    assert s.packets == sum(s.packets_by_line) and s.malformed == 0
    assert s.buffered_peak <= max_buffered


def test_buffer_overflow_is_counted_and_recovered():
    run = simulate(2000, 5, 0.2, 0.2, 0.0, 0.0, 0.0, 3, max_buffered=2)
    assert bytes(run.out) == expected(1, 2001)
    s = run.r.stats
    assert s.buffer_overflow > 0 and s.buffered_peak == 2 and s.lost == 0


def test_deliver_views_are_numpy_uint8():
    run = Run()
    ev = run.feed(np.frombuffer(packet(1, 2), np.uint8), 0)
    (d,) = of(ev, Deliver)
    assert d.data.dtype == np.uint8 and d.data.tobytes() == expected(1, 3)


def test_real_captures_match_the_capture_reassembly(all_captures):
    """Real Nasdaq MoldUDP64 packets through the live receiver give what the (independent)
    capture reassembly gives."""
    from itchflow.sources.files import iter_chunks, map_file
    from itchflow.wire.pcap import REC_UDP, packet_table

    checked = 0
    for path in all_captures:
        buf = map_file(path)
        table = packet_table(buf, str(path))
        # max_gap lifted: Multiple.Packets holds two sample packets 4.2 M sequences apart
        r = MoldReceiver(None, start_sequence=None, requests=False, line_wait_ns=0, max_gap=1 << 40)
        out = bytearray()
        for off, n, outcome in zip(table.payload_offset, table.payload_length, table.outcome):
            if outcome != REC_UDP:
                continue
            for e in r.receive(buf[off:off + n], 0, LINE_A) + r.tick(0):
                if isinstance(e, Deliver):
                    out += e.data.tobytes()
        chunks = list(iter_chunks(path, strict=False))
        if all(c.first_sequence == 0 for c in chunks):
            # anonymised (sequence 0): no live data sequence; the receiver counts, never delivers
            assert not out and r.stats.bad_sequence == r.stats.packets and r.stats.messages == 0, path
            continue
        expected_bytes = b"".join(c.data.tobytes() for c in chunks)
        assert bytes(out) == expected_bytes, path
        assert r.stats.malformed == 0
        checked += r.stats.messages
    assert checked > 0


def _batch_arrays(pkts):
    bufs = np.zeros((len(pkts), 256), np.uint8)
    lengths = np.zeros(len(pkts), np.int64)
    for i, p in enumerate(pkts):
        bufs[i, :len(p)] = np.frombuffer(p, np.uint8)
        lengths[i] = len(p)
    return bufs, lengths


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), loss=st.floats(0, 0.4), dup=st.floats(0, 0.4), per=st.integers(1, 6),
       junk=st.floats(0, 0.1))
def test_batch_fast_path_equals_packet_by_packet(seed, loss, dup, per, junk):
    """receive_batch (compiled in-order runs) gives the same bytes, counters and requests
    as receive() packet by packet, on streams with gaps, duplicates, heartbeats, other
    sessions, malformed packets and an end of session."""
    rng = random.Random(seed)
    stream = []
    for first in range(1, 200, per):
        for line in (LINE_A, LINE_B):
            if rng.random() < loss:
                continue
            stream.append((line, packet(first, min(per, 200 - first))))
            if rng.random() < dup:
                stream.append((line, packet(first, min(per, 200 - first))))
            if rng.random() < junk:
                stream.append((line, rng.choice([b"\x01" * 7, packet(first, 1)[:-1], heartbeat(first),
                                                 packet(first, 1, b"OTHERSESS1")])))
    stream.append((LINE_A, end_of_session(200)))
    one = Run(line_wait_ns=10**12, line_wait_packets=5)
    two = Run(line_wait_ns=10**12, line_wait_packets=5)
    i = 0
    t = 0
    while i < len(stream):
        line = stream[i][0]
        size = rng.randrange(1, 9)
        batch = []
        while i < len(stream) and stream[i][0] == line and len(batch) < size:
            batch.append(stream[i][1])
            i += 1
        t += 1000
        for p in batch:
            one.feed(p, t, line)
        bufs, lengths = _batch_arrays(batch)
        two._take(two.r.receive_batch(bufs, lengths, len(batch), t, line, np.arange(len(batch)) + 5))
    assert bytes(two.out) == bytes(one.out)
    assert two.r.stats.to_dict() == one.r.stats.to_dict()
    assert [(r.first_sequence, r.count) for r in of(two.events, Request)] == \
        [(r.first_sequence, r.count) for r in of(one.events, Request)]
    assert two.r.next_sequence == one.r.next_sequence


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=120), min_size=1, max_size=8), st.booleans())
def test_arbitrary_batches_never_raise(pkts, with_session):
    if with_session:  # get past the session check into the header and block parsing
        pkts = [SESSION + p for p in pkts]
    r = MoldReceiver(SESSION)
    r.receive(packet(1, 2), 0)
    bufs, lengths = _batch_arrays(pkts)
    r.receive_batch(bufs, lengths, len(pkts), 1, LINE_A)
    r.tick(10**12)
    assert r.stats.packets == 1 + len(pkts)


# --------------------------------------------------------------------------- hostile peers (issue 10)
SPOOFS = [2**63, 2**64 - 1, 2**63 - 1, 0, 10 + (1 << 22) + 1]


@pytest.mark.parametrize("seq", SPOOFS)
def test_spoofed_sequence_is_a_counted_bad_packet_not_a_gap(seq):
    run = Run(line_wait_ns=0, request_timeout_ns=1 * MS, max_attempts=2)
    run.feed(packet(1, 9), 0)
    ev = run.feed(packet(seq, 1) if seq < 2**64 - 1 else struct.pack(">10sQH", SESSION, seq, 1) + message(1), 0)
    assert of(ev, Malformed) and not of(ev, Gap) and not of(ev, Request)
    run.feed(heartbeat(seq), 0)                   # a heartbeat is judged the same way
    run.tick(100 * MS)
    run.feed(packet(10, 5), 200 * MS)
    run.feed(end_of_session(15), 200 * MS)
    s = run.r.stats
    assert bytes(run.out) == expected(1, 15) and run.r.finished
    assert s.bad_sequence == 2 and s.lost == 0 and s.gaps == 0 and s.requests == 0


@pytest.mark.parametrize("seq", SPOOFS)
def test_spoofed_sequence_in_a_batch_never_raises(seq):
    r = MoldReceiver(SESSION)
    pkts = [packet(1, 3), struct.pack(">10sQH", SESSION, seq, 1) + message(1), packet(4, 2)]
    bufs, lengths = _batch_arrays(pkts)
    ev = r.receive_batch(bufs, lengths, len(pkts), 0)
    assert delivered(ev) == expected(1, 6)
    assert r.stats.bad_sequence == 1 and r.synchronized
    with pytest.raises(ValueError, match="out of range"):  # nor a start the fast path cannot take
        MoldReceiver(SESSION, start_sequence=2**63 + 5)


def test_far_jump_confirmed_by_contiguous_packets_is_an_outage():
    run = Run(requests=False, line_wait_ns=0, max_gap=100, resync_packets=3)
    run.feed(packet(1, 2), 0)
    for k in range(3):                            # 1000.. : beyond max_gap, but it keeps coming
        run.feed(packet(1000 + 2 * k, 2), 0)
    run.tick(1)
    assert run.r.stats.bad_sequence == 2
    assert bytes(run.out) == expected(1, 3) + expected(1004, 1006)
    assert of(run.events, Lost) == [Lost(3, 1001, "no re-request server")]


def test_give_up_never_skips_past_data_still_arriving():
    """A heartbeat within max_gap announces far more than was sent: the re-requests for the
    'hole' run out in a quiet second, yet the real data that comes afterwards is delivered."""
    run = Run(line_wait_ns=0, request_timeout_ns=1 * MS, max_attempts=3)
    run.feed(packet(1, 5), 0)
    run.feed(heartbeat(50_000), 0)                # spoofed, but within max_gap
    for t in range(1, 20):
        run.tick(t * MS)                          # the quiet second: requests time out
    assert run.r.stats.deferred_give_ups == 1 and run.r.stats.lost == 0
    assert run.r.next_deadline() is None          # waits for data, no request storm
    run.feed(packet(6, 5), 30 * MS)               # the real feed goes on
    run.feed(packet(11, 5), 31 * MS)
    assert bytes(run.out) == expected(1, 16) and run.r.stats.lost == 0


def test_first_session_seen_is_the_session():
    run = Run(session=None)
    run.feed(packet(1, 2), 0)
    ev = run.feed(packet(1, 3, b"FOREIGN001"), 0)  # well framed, another session
    assert not of(ev, SessionChange) and not of(ev, Deliver)
    run.feed(end_of_session(7, b"FOREIGN001"), 0)
    run.feed(packet(3, 2), 0)
    run.feed(end_of_session(5), 0)
    s = run.r.stats
    assert bytes(run.out) == expected(1, 5) and run.r.session == SESSION and run.r.finished
    assert s.other_session_packets == 2 and s.session_changes == 0 and s.lost == 0


def test_data_after_end_of_session_is_counted_not_delivered():
    run = Run()
    run.feed(packet(1, 2), 0)
    run.feed(end_of_session(4), 0)
    run.feed(packet(3, 3), 0)                     # 3 is the session's; 4 and 5 are past its end
    run.feed(packet(6, 2), 0)
    run.feed(heartbeat(9), 0)
    assert bytes(run.out) == expected(1, 4) and run.r.finished
    assert run.r.stats.after_end_of_session == 3
    r = MoldReceiver(SESSION)                      # the batch path too
    pkts = [packet(1, 3), end_of_session(4), packet(4, 2)]
    bufs, lengths = _batch_arrays(pkts)
    assert delivered(r.receive_batch(bufs, lengths, 3, 0)) == expected(1, 4)
    assert r.stats.after_end_of_session == 1


def test_early_store_is_bounded_in_bytes():
    big = 2_000                                   # bytes per early packet, roughly
    run = Run(line_wait_ns=10**12, line_wait_packets=10**9, max_buffered_bytes=10 * big)
    run.feed(packet(1, 1), 0)
    for k in range(100):                          # 2.. missing; 100 early packets of ~2 kB
        run.feed(packet(3 + 100 * k, 100), 0)
    s = run.r.stats
    assert s.buffered_bytes_peak <= 10 * big and s.buffer_overflow > 0
    assert run.r._early_bytes == sum(len(e.data) for e in run.r._early.values())


def test_packets_held_past_a_later_end_of_session_are_not_delivered():
    run = Run(line_wait_ns=10 * MS)
    run.feed(packet(1, 2), 0)
    run.feed(packet(4, 3), 0)                     # held: 4..6 (3 missing)
    run.feed(packet(20, 2), 0)                    # held: 20..21, beyond the end announced next
    run.feed(end_of_session(5), 0)                # the session ends before 5
    assert run.r.highest == 5
    run.feed(packet(3, 1), 1, LINE_REPLY)         # fills 3; 4 is the last of the session
    assert bytes(run.out) == expected(1, 5) and run.r.finished
    assert run.r.stats.after_end_of_session == 2 and run.r._early_bytes == 0


# --------------------------------------------------------------------------- hostile peers, second probe
@pytest.mark.parametrize("session", [SESSION, b"SPOOFED001"])
def test_the_packet_that_picks_the_session_is_checked_for_a_far_jump(session):
    """A stray packet far ahead, seen before the feed, neither picks the session nor turns
    the real feed into duplicates (it did, with lost = 2**40 and exit 0)."""
    run = Run(session=None, requests=False, line_wait_ns=0)
    ev = run.feed(packet(2**40, 1, session), 0)
    assert of(ev, Malformed) and "jumps" in of(ev, Malformed)[0].reason and run.r.session is None
    for first in range(1, 200, 4):
        run.feed(packet(first, 4), 0)
    run.feed(end_of_session(201), 0)
    s = run.r.stats
    assert bytes(run.out) == expected(1, 201) and run.r.finished and run.r.session == SESSION
    assert s.bad_sequence == 1 and s.lost == 0 and s.duplicate_messages == 0


def test_a_header_only_packet_claiming_messages_does_not_pick_the_session():
    run = Run(session=None)
    ev = run.feed(struct.pack(">10sQH", b"CORRUPT001", 1, 5), 0)   # 5 messages claimed, none carried
    assert of(ev, Malformed) and run.r.session is None
    run.feed(packet(1, 3), 0)
    run.feed(end_of_session(4), 0)
    assert bytes(run.out) == expected(1, 4) and run.r.finished and run.r.stats.malformed == 1


def test_data_arriving_in_turn_keeps_a_hole_open_whatever_is_held_far_ahead():
    """A packet within max_gap but far ahead is held; the real feed that keeps arriving in order
    moves the hole along, so the hole is not given up under it (it was, after 64 packets:
    messages 54.. became 'duplicates' and 4 M were counted lost)."""
    run = Run(requests=False, line_wait_ns=2 * MS, line_wait_packets=64)
    run.feed(packet(1, 53), 0)
    run.feed(packet(4_000_000, 1), 0)              # a spoof, just inside max_gap
    t = 0
    for first in range(54, 554, 2):                 # 250 packets, 0.1 ms apart: far past both waits
        t += MS // 10
        run.feed(packet(first, 2), t)
        run.tick(t)
    assert bytes(run.out) == expected(1, 554)
    assert run.r.stats.lost == 0 and run.r.stats.duplicate_messages == 0
    run.feed(end_of_session(554), t)                # the end drops the held spoof
    assert run.r.finished and run.r.stats.lost == 0 and run.r.stats.after_end_of_session == 1


def test_close_counts_the_holes_still_open_and_delivers_what_was_held():
    """A hole known at the end (a heartbeat announced 10, 4..9 never came) is lost, not 0."""
    run = Run(line_wait_ns=10**12, line_wait_packets=10**9)
    run.feed(packet(1, 3), 0)
    run.feed(packet(6, 2), 0)                       # held: 6, 7 (4, 5 missing)
    run.feed(heartbeat(10), 0)                      # 8, 9 announced, never sent
    ev = run.r.close()
    run._take(ev)
    assert of(ev, Lost) == [Lost(4, 2, "still missing when the receiver stopped"),
                            Lost(8, 2, "still missing when the receiver stopped")]
    assert bytes(run.out) == expected(1, 4) + expected(6, 8)
    assert run.r.stats.lost == 4 and run.r.synchronized and run.r.next_deadline() is None


@pytest.mark.parametrize("spacing_ms", [1, 3, 10, 50])
def test_one_packet_far_ahead_does_not_have_every_in_turn_packet_ask_again(spacing_ms):
    """probe 22: one datagram far ahead (spoofed, within max_gap) left a hole open all day, and
    each in-turn packet of the live line that moved it was taken for a short reply: a request
    for every packet. Dropping the request for what the line brought did the same on a feed
    slower than the line wait (probe 24). Now the request stands for the rest on its doubling
    timer (about one a second at most), and while the line fills the hole in order nothing of it
    is given up, however long the server says nothing (the default give-up is 10 s)."""
    run = Run(line_wait_ns=2 * MS, request_timeout_ns=50 * MS)
    run.feed(packet(1, 1), 0)
    run.feed(packet(100_000, 1), 0)              # the spoof: the hole 2..99,999 is visible at once
    t = 0
    for seq in range(2, 2002):                   # the live line goes on in turn
        for _ in range(spacing_ms):
            t += MS
            run.tick(t)
        run.feed(packet(seq, 1), t)
    requests = of(run.events, Request)
    assert bytes(run.out) == expected(1, 2002) and run.r.stats.lost == 0
    seconds = t / 1e9
    assert len(requests) <= 6 + 1.1 * seconds, (spacing_ms, len(requests), seconds)
    assert run.r.stats.short_replies == 0
    # a real hole after it, the line going quiet, is still asked for and given up as before
    run.feed(packet(2005, 1), t)                 # 2002..2004 lost on the line; nothing more comes
    for _ in range(12_000):
        t += MS
        run.tick(t)
    lost = of(run.events, Lost)[0]   # (then the rest up to the packet held far ahead, with nothing coming)
    assert (lost.first_sequence, lost.count) == (2002, 3) and "no reply from the re-request server" in lost.reason


def test_a_hole_given_up_says_the_server_answered_but_never_with_it():
    """probe 22: replies of another session (or malformed) were followed by a loss reason of "no
    reply from the re-request server", which sends an operator after the network."""
    run = Run(line_wait_ns=0, request_timeout_ns=10 * MS, max_attempts=3)
    run.feed(packet(1, 1), 0)
    run.feed(packet(3, 1), 0)
    for t in (10, 30, 70):
        run.feed(packet(2, 1, session=b"EVILSESS00"), (t - 1) * MS, LINE_REPLY)
        run.tick(t * MS)
    (lost,) = of(run.events, Lost)
    assert lost.reason == ("the re-request server answered 3 times in 0.07 s, never with the hole's messages "
                           "(another session's, malformed or other sequences: see the counters; 3 requests for "
                           "this hole)")
    assert run.r.stats.other_session_packets == 3


def test_a_block_past_the_packet_names_its_length_and_what_is_left():
    """probe 22: the reason guessed "fewer blocks than the count says" where the count was right
    and a length prefix wrong: it now gives both causes, and the block's length against the
    bytes left when there is a block to read."""
    run = Run()
    bad = struct.pack(">10sQH", SESSION, 1, 1) + struct.pack(">H", 100) + bytes(10)
    (m,) = of(run.feed(bad, 0), Malformed)
    assert m.reason.endswith("(its length prefix too large, or fewer blocks than the count says): the block at "
                             "byte 20 says 100 bytes, 10 are left in the packet") and m.offset == 20
    short = struct.pack(">10sQH", SESSION, 1, 2) + message(1)   # the count says 2, one block is there
    (m,) = of(run.feed(short, 0), Malformed)
    assert m.reason.endswith("fewer blocks than the count says)")


def test_an_end_of_session_below_what_was_delivered_is_contradicted():
    """probe 24: packets 1..5 delivered, then an end of session at 2: the messages past it came
    first, and still contradict it (listen: not finished, exit 2)."""
    run = Run()
    run.feed(packet(1, 5), 0)
    run.feed(end_of_session(2), 0)
    assert run.r.ended and run.r.stats.after_end_of_session == 1
    run = Run()
    run.feed(packet(1, 5), 0)
    run.feed(end_of_session(6), 0)               # the true end: nothing past it
    assert run.r.finished and run.r.stats.after_end_of_session == 0


def test_a_hole_known_from_a_heartbeat_alone_behind_a_silent_give_up_is_still_asked_for():
    """Probe 56: behind a hole the server's silence gave up, a hole known only from a heartbeat
    (no data held past it) was taken as given up unasked: it was parked, never asked for, and
    lost once data past it came, though the server answered from that moment."""
    run = Run(line_wait_ns=0, request_timeout_ns=50 * MS, give_up_ns=100 * MS)
    run.feed(packet(1, 1), 0)
    run.feed(packet(3, 1), 0)                      # hole 2, asked
    run.feed(heartbeat(6), 0)                      # hole 4..5, known from the heartbeat alone
    run.tick(50 * MS)
    ev = run.tick(100 * MS)                        # the silence gives hole 2 up
    assert [(e.first_sequence, e.count) for e in of(ev, Lost)] == [(2, 1)]
    (req,) = of(ev, Request)
    assert (req.first_sequence, req.count) == (4, 2)
    run.feed(packet(4, 2), 101 * MS, LINE_REPLY)   # the server is back
    run.feed(packet(6, 1), 300 * MS)
    assert bytes(run.out) == expected(1, 2) + expected(3, 7)
    assert run.r.stats.lost == 1 and run.r.stats.recovered == 2 and run.r.stats.unasked_give_ups == 0
