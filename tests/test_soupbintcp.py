"""SoupBinTCP 3.00 sessions, sans-I/O: hand-worked hex, fake time, scripted byte streams.

Client and server are tested against bytes written here by hand, and against each other
with the stream cut at arbitrary points.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.protocol.soup import (
    DeadLink,
    Debug,
    EndOfSession,
    LoginTimeout,
    LogoutTimeout,
    LoggedOut,
    LoginAccepted,
    LoginRejected,
    MessageStore,
    ProtocolError,
    SequencedData,
    SoupClient,
    SoupServerSession,
    Unsequenced,
    decode,
    encode,
)

S = 1_000_000_000


def message(i: int) -> bytes:
    body = b"z" + i.to_bytes(4, "big") + bytes(i % 11)   # not an ITCH type: any length goes
    return body


def binaryfile(n: int) -> bytes:
    return b"".join(struct.pack(">H", len(message(i))) + message(i) for i in range(1, n + 1))


def soup(ptype: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">H", 1 + len(payload)) + ptype + payload


def sequenced(first: int, end: int) -> bytes:
    return b"".join(soup(b"S", message(i)) for i in range(first, end))


def got(events) -> bytes:
    return b"".join(e.data.tobytes() for e in events if isinstance(e, SequencedData))


def test_login_request_hex():
    c = SoupClient("user", "pw", session="", sequence=42)
    raw = c.data_to_send()
    assert raw.hex() == ("002f" "4c" + b"user  ".hex() + b"pw        ".hex() + b"          ".hex()
                         + (b" " * 18 + b"42").hex())
    assert decode(b"L", raw[3:]) == {"username": b"user", "password": b"pw", "session": b"", "sequence": 42}


def test_client_receives_run_and_end_of_session():
    c = SoupClient("u", "p", sequence=1)
    c.data_to_send()
    accept = soup(b"A", b"SESSION001" + b"1".rjust(20))
    ev = c.receive_data(accept + sequenced(1, 6) + soup(b"H") + sequenced(6, 9) + soup(b"Z"), 0)
    assert ev[0] == LoginAccepted(b"SESSION001", 1)
    assert got(ev) == binaryfile(8)
    seqs = [(e.first_sequence, e.count) for e in ev if isinstance(e, SequencedData)]
    assert seqs == [(1, 5), (6, 3)]
    assert ev[-1] == EndOfSession(9) and c.ended and c.closed
    assert c.data_to_send() == soup(b"O")        # logs out after the end of session
    assert c.stats.heartbeats_in == 1 and c.stats.messages == 8


@settings(max_examples=80, deadline=None)
@given(cuts=st.lists(st.integers(0, 400), max_size=12))
def test_client_stream_cut_anywhere(cuts):
    stream = soup(b"A", b"S1".ljust(10) + b"3".rjust(20)) + sequenced(3, 30) + soup(b"Z")
    c = SoupClient("u", "p", sequence=3)
    events = []
    points = sorted({min(x, len(stream)) for x in cuts} | {0, len(stream)})
    for a, b in zip(points, points[1:]):
        events += c.receive_data(stream[a:b], 0)
    assert got(events) == binaryfile(29)[len(binaryfile(2)):]
    assert c.next_sequence == 30 and c.ended


@pytest.mark.parametrize("reason", [b"A", b"S"])
def test_login_rejected(reason):
    c = SoupClient("u", "p")
    ev = c.receive_data(soup(b"J", reason), 0)
    assert ev == [LoginRejected(reason)] and c.closed and not c.logged_in
    assert "not authorized" in ev[0].text if reason == b"A" else "not available" in ev[0].text


def test_client_heartbeats_after_one_second_idle_and_dead_link_after_15():
    c = SoupClient("u", "p", now_ns=0)
    c.data_to_send()
    c.receive_data(soup(b"A", b"S1".ljust(10) + b"1".rjust(20)), 0)
    assert c.tick(S - 1) == [] and c.data_to_send() == b""
    c.tick(S)
    assert c.data_to_send() == soup(b"R")
    c.receive_data(soup(b"H"), 10 * S)            # the server is alive at 10 s
    assert c.tick(24 * S) == [] and not c.closed
    c.data_to_send()
    ev = c.tick(25 * S)
    assert ev == [DeadLink(15 * S)] and c.closed


def test_client_no_heartbeat_before_login():
    c = SoupClient("u", "p", now_ns=0)
    c.data_to_send()
    c.tick(5 * S)
    assert c.data_to_send() == b""


def test_client_protocol_errors():
    c = SoupClient("u", "p")
    ev = c.receive_data(soup(b"S", b"x"), 0)      # data before login
    assert isinstance(ev[0], ProtocolError) and "before login" in ev[0].reason and c.closed
    c = SoupClient("u", "p")
    c.receive_data(soup(b"A", b"S1".ljust(10) + b"1".rjust(20)), 0)
    ev = c.receive_data(soup(b"Q", b"zz"), 0)
    assert isinstance(ev[0], ProtocolError) and ev[0].offset == 33
    c = SoupClient("u", "p")
    ev = c.receive_data(soup(b"A", b"short"), 0)
    assert isinstance(ev[0], ProtocolError) and "expected 30" in ev[0].reason


@pytest.mark.parametrize("code, length, spec", [(b"A", 20, 36), (b"E", 32, 31), (b"R", 38, 39)])
def test_client_refuses_an_itch_message_of_the_wrong_length_naming_its_sequence(code, length, spec):
    """ITCH 5.0 gives A 36, E 31 and R 39 bytes: a sequenced packet carrying one of those
    types at another length ends the session with an error naming the message's sequence
    number (written out, it would end any later read of the stream there); the messages
    before it are delivered, a type ITCH does not define passes at any length."""
    c = SoupClient("u", "p", sequence=1)
    good = code + bytes(spec - 1)
    stream = (soup(b"A", b"S1".ljust(10) + b"1".rjust(20)) + sequenced(1, 4) + soup(b"S", good)
              + soup(b"S", code + bytes(length - 1)) + sequenced(6, 8))
    ev = c.receive_data(stream, 0)
    assert got(ev) == b"".join(struct.pack(">H", len(m)) + m for m in [message(i) for i in (1, 2, 3)] + [good])
    (err,) = [e for e in ev if isinstance(e, ProtocolError)]
    assert f"sequenced message 5: type {code.decode()!r} is {spec} bytes in ITCH 5.0, this message {length}" \
        in err.reason
    assert c.closed and c.next_sequence == 5
    # the server's own bytes: asking again would get them again, so the fetch stops (fatal)
    assert err.fatal and c.fatal is err
    # named at its packet's offset in the stream (it said byte 0: probe 24)
    assert err.offset == len(soup(b"A", b"S1".ljust(10) + b"1".rjust(20)) + sequenced(1, 4) + soup(b"S", good))


def test_client_ends_the_session_at_an_empty_sequenced_packet():
    """probe 24: the same reasoning as a message of the wrong length: the fetch reconnected to
    get the same empty packet again."""
    c = SoupClient("u", "p", sequence=1)
    head = soup(b"A", b"S1".ljust(10) + b"1".rjust(20)) + sequenced(1, 3)
    ev = c.receive_data(head + soup(b"S") + sequenced(3, 5), 0)
    (err,) = [e for e in ev if isinstance(e, ProtocolError)]
    assert err.reason == "empty sequenced data packet (message 3)" and err.fatal and err.offset == len(head)
    assert c.closed and c.fatal is err and c.next_sequence == 3


def test_client_gives_a_login_its_time_out_and_heartbeats_do_not_answer_it():
    """probe 22: a server that answered the Login Request with heartbeats only (and Debug
    packets) held the client as long as it liked, whatever its dead link."""
    c = SoupClient("u", "p", now_ns=0, dead_link_ns=2 * S)
    assert c.next_deadline() <= 2 * S
    for t in range(0, 2 * S, S // 4):
        assert c.receive_data(soup(b"H") + soup(b"+", b"still here"), t) == [Debug(b"still here")] and not c.closed
        assert c.tick(t) == []
    assert c.tick(2 * S) == [LoginTimeout(2 * S)] and c.closed
    c = SoupClient("u", "p", now_ns=0, dead_link_ns=2 * S, login_timeout_ns=S)   # its own time-out
    assert c.tick(S) == [LoginTimeout(S)]
    c = SoupClient("u", "p", now_ns=0, dead_link_ns=2 * S)   # answered in time: the dead link rules again
    c.receive_data(soup(b"A", b"S1".ljust(10) + b"1".rjust(20)), S)
    assert c.tick(2 * S + 1) == [] and c.next_deadline() == 3 * S


def server(n=50, **kw):
    data = np.frombuffer(binaryfile(n), np.uint8)
    return SoupServerSession(MessageStore(data, every=4), "DAY1", {"alice": "secret"}, **kw)


def login(user=b"alice", pw=b"secret", session=b"", seq=1):
    return encode(b"L", username=user, password=pw, session=session, sequence=seq)


def test_server_login_accept_from_any_sequence_and_end():
    """Login Accepted's session is "left padded with spaces" (SoupBinTCP 3.00), its sequence
    too; 0 starts "at the most recently generated message" (a file's last: 50 of 50)."""
    for seq in (1, 2, 4, 5, 17, 50, 51, 99, 0):
        s = server()
        ev = s.receive_data(login(seq=seq), 0)
        start = min(seq, 51) if seq else 50
        assert ev[0].sequence == seq
        s.pump(0)
        out = s.data_to_send()
        expect = soup(b"A", b"      DAY1" + str(start).encode().rjust(20)) + sequenced(start, 51) + soup(b"Z")
        assert out == expect, seq


def test_server_sequence_0_on_an_empty_session_starts_at_1():
    s = server(0)
    s.receive_data(login(seq=0), 0)
    s.pump(0)
    assert s.data_to_send() == soup(b"A", b"      DAY1" + b"1".rjust(20)) + soup(b"Z")


@pytest.mark.parametrize("field", [b"DAY1      ", b"      DAY1", b"   DAY1   ", b"          "])
def test_server_takes_the_requested_session_padded_either_way(field):
    """The spec does not say how the Login Request's session is padded; Nassau's client
    right-justifies it (it was refused with J S), a blank field is the current session."""
    s = server()
    raw = (b"alice ".ljust(6) + b"secret".ljust(10) + field.rjust(10) + b"1".rjust(20))
    ev = s.receive_data(soup(b"L", raw), 0)
    assert ev[0].session == field.strip() and s.logged_in and not s.closed
    s.pump(0)
    assert s.data_to_send().startswith(soup(b"A", b"      DAY1" + b"1".rjust(20)) + sequenced(1, 2))


def test_server_counts_a_debug_packet_from_the_client_before_and_after_login():
    """Either side may send Debug (+) packets; the server reset the connection on one."""
    s = server(3)
    assert s.receive_data(soup(b"+", b"hello"), 0) == [Debug(b"hello")] and not s.closed
    s.receive_data(login() + soup(b"+", b"") + soup(b"R"), 1)
    assert s.logged_in and not s.closed and s.stats.debug == 2 and s.stats.heartbeats_in == 1
    s.pump(1)
    assert s.data_to_send().endswith(sequenced(1, 4) + soup(b"Z"))


@pytest.mark.parametrize("user, pw, session, reason", [
    (b"alice", b"wrong", b"", b"A"), (b"bob", b"secret", b"", b"A"), (b"alice", b"secret", b"DAY2", b"S")])
def test_server_rejects(user, pw, session, reason):
    s = server()
    s.receive_data(login(user, pw, session), 0)
    assert s.data_to_send() == soup(b"J", reason) and s.closed


def test_server_heartbeat_unsequenced_logout_and_dead_link():
    s = server()
    s.receive_data(login(), 0)
    s.data_to_send()
    s.tick(S)
    assert s.data_to_send() == soup(b"H")
    ev = s.receive_data(soup(b"R") + soup(b"U", b"hello"), 2 * S)
    assert ev == [Unsequenced(b"hello")] and s.stats.heartbeats_in == 1
    assert s.tick(17 * S - 1) == [] and not s.closed
    assert s.tick(17 * S) == [DeadLink(15 * S)] and s.closed
    s = server()
    s.receive_data(login(), 0)
    assert s.receive_data(soup(b"O"), 1) == [LoggedOut()] and s.closed


def test_pump_in_small_chunks_and_reconnect_loses_and_duplicates_nothing():
    n = 300
    s = server(n, chunk_bytes=64)
    c = SoupClient("alice", "secret")
    out = bytearray()
    s.receive_data(c.data_to_send(), 0)
    for _ in range(20):           # part of the session, then the connection breaks
        s.pump(0)
        for e in c.receive_data(s.data_to_send(), 0):
            if isinstance(e, SequencedData):
                out += e.data.tobytes()
    assert 0 < c.next_sequence - 1 < n
    c2 = SoupClient("alice", "secret", session=c.session, sequence=c.next_sequence)
    s2 = server(n, chunk_bytes=100)
    s2.receive_data(c2.data_to_send(), 0)
    for _ in range(10_000):
        s2.pump(0)
        for e in c2.receive_data(s2.data_to_send(), 0):
            if isinstance(e, SequencedData):
                out += e.data.tobytes()
        if c2.ended:
            break
    assert bytes(out) == binaryfile(n)


def test_message_store_offsets():
    data = binaryfile(100)
    store = MessageStore(np.frombuffer(data, np.uint8), every=7)
    pos = 0
    for i in range(1, 101):
        assert store.offset(i) == pos
        pos += 2 + len(message(i))
    assert store.offset(101) == len(data)


def _accepted(seq: int) -> bytes:
    return soup(b"A", b"SESS      " + str(seq).encode().rjust(20))


def test_client_login_accepted_earlier_than_asked_skips_and_counts():
    c = SoupClient("u", "p", sequence=5)
    ev = c.receive_data(_accepted(2) + sequenced(2, 9), 0)
    assert got(ev) == binaryfile(8)[len(binaryfile(4)):]          # 5..8 only
    (d,) = [e for e in ev if isinstance(e, SequencedData)]
    assert (d.first_sequence, d.count) == (5, 4) and c.next_sequence == 9
    assert c.stats.duplicates_skipped == 3 and c.mismatch.duplicates == 3


@pytest.mark.parametrize("seq", [2**63, 10**20 - 1, 5 + (1 << 40) + 1])
def test_client_refuses_an_absurd_login_accepted(seq):
    c = SoupClient("u", "p", sequence=5)
    ev = c.receive_data(_accepted(seq) + sequenced(1, 3), 0)
    (err,) = [e for e in ev if isinstance(e, ProtocolError)]
    assert err.fatal and str(seq) in err.reason and c.closed and not got(ev)


def test_client_refuses_a_login_accepted_for_another_session():
    c = SoupClient("u", "p", session="ITCHFLOW", sequence=1)
    ev = c.receive_data(soup(b"A", b"WRONGSESS " + b"1".rjust(20)) + sequenced(1, 3), 0)
    (err,) = [e for e in ev if isinstance(e, ProtocolError)]
    assert err.fatal and "WRONGSESS" in err.reason and "ITCHFLOW" in err.reason
    assert c.closed and not c.logged_in and not got(ev)
    # the asked session, padded either way, is fine: the spec says "left padded with spaces"
    # (it was refused, the fetch ending with no data), some servers pad on the right
    for field in (b"  ITCHFLOW", b"ITCHFLOW  ", b" ITCHFLOW "):
        c = SoupClient("u", "p", session="ITCHFLOW", sequence=1)
        ev = c.receive_data(soup(b"A", field + b"1".rjust(20)) + sequenced(1, 3), 0)
        assert got(ev) == binaryfile(2) and c.session == b"ITCHFLOW" and not c.fatal, field


def test_login_accepted_session_is_written_right_justified_and_read_either_way():
    assert encode(b"A", session="DAY1", sequence=7) == soup(b"A", b"      DAY1" + b"7".rjust(20))
    assert encode(b"L", username="u", password="p", session="DAY1", sequence=7)[3:] == (
        b"u     " + b"p         " + b"DAY1      " + b"7".rjust(20))
    for field in (b"      DAY1", b"DAY1      ", b"  DAY1    "):
        assert decode(b"A", field + b"7".rjust(20)) == {"session": b"DAY1", "sequence": 7}
        assert decode(b"L", b"u     p         " + field + b"7".rjust(20))["session"] == b"DAY1"
    # a username or password keeps its leading spaces (only the session is padded either way)
    assert decode(b"L", b"  u   " + b" p        " + b" " * 10 + b"7".rjust(20))["username"] == b"  u"


@pytest.mark.parametrize("session", [b"S\xe9SSION   ", b"SESS\x00     ", b"SESS\x7f     "])
def test_alpha_fields_must_be_printable_ascii(session):
    """A server's session name that is not printable ASCII is a protocol error at once (it broke
    the reconnect's login request, with no counters printed)."""
    with pytest.raises(ValueError, match="printable ASCII"):
        decode(b"A", session + b"1".rjust(20))
    c = SoupClient("u", "p", sequence=1)
    (err,) = c.receive_data(soup(b"A", session + b"1".rjust(20)), 0)
    assert isinstance(err, ProtocolError) and "printable ASCII" in err.reason and c.closed


def test_dead_link_counts_whole_packets_not_bytes():
    """A peer that trickles one byte of a 64 KiB packet now and then is a dead link: only a
    whole packet is a sign of life (each byte had been)."""
    c = SoupClient("u", "p", now_ns=0)
    c.receive_data(soup(b"A", b"S1".ljust(10) + b"1".rjust(20)), 0)
    trickle = struct.pack(">H", 0xFFFF) + b"S" + b"x" * 30
    ev = []
    for i, byte in enumerate(trickle):              # one byte every 0.5 s, from 1 s on
        t = S + i * S // 2
        ev += c.receive_data(trickle[i:i + 1], t)
        ev += c.tick(t)
        if c.closed:
            break
    assert [e for e in ev if isinstance(e, DeadLink)] == [DeadLink(15 * S)] and c.closed
    s = server()                                     # the server side too
    s.receive_data(login(), 0)
    dead = []
    for i, byte in enumerate(trickle):
        t = S + i * S // 2
        assert s.receive_data(trickle[i:i + 1], t) == []
        dead += [e for e in s.tick(t) if isinstance(e, DeadLink)]
        if s.closed:
            break
    assert dead and dead[0].silent_ns >= 15 * S and s.closed


def test_server_closes_a_client_that_does_not_log_out_after_the_end():
    """A client that heartbeats on after the end of session would hold a connection slot for
    ever (64 such clients refused everyone else): it has the login time-out to log out."""
    s = server(login_timeout_ns=5 * S)
    s.receive_data(login(), 0)
    s.pump(S)
    assert s.end_sent and s.next_deadline() <= 6 * S
    for t in range(2, 6):
        s.receive_data(soup(b"R"), t * S)           # alive, but not leaving
        assert s.tick(t * S) == [] and not s.closed
    assert s.tick(6 * S) == [LogoutTimeout(5 * S)] and s.closed
    s = server(login_timeout_ns=5 * S)              # one that logs out is not timed out
    s.receive_data(login(), 0)
    s.pump(S)
    assert s.receive_data(soup(b"O"), 2 * S) == [LoggedOut()] and s.closed and s.tick(10 * S) == []
