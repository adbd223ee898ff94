"""A capture's end-of-session packets end their session, as the live receiver has them end it.

MoldUDP64's end of session (message count 0xFFFF) carries the number the next message would
have had: nothing numbered from there on belongs to the session. ``MoldReceiver`` counts such
packets (``after_end_of_session``) and delivers none of them; a capture read them as part of
the session and counted nothing (a data packet numbered at the end, arriving after it, became a
message of the day: an add order the books then held). Checked against a slow model of the
sorted capture and against the receiver, planned whole and a part at a time.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import itch_reference as ref
import itchflow
import itchflow.protocol.mold.capture as capture_module
from itchflow.protocol.mold.receiver import Deliver, MoldReceiver
from test_capture_pieces import _read_capture

EOS = -1   # a packet's "messages" for an end-of-session packet (0: a heartbeat)


def _msg(session: int, seq: int) -> bytes:
    return ref.encode_body("D", {"order_reference_number": seq, "stock_locate": session, "timestamp": seq})


def _payloads(packets):
    out = []
    for session, seq, n in packets:
        name = b"SESS%d" % session
        if n == EOS:
            out.append(ref.mold_packet(name, seq, [], count=0xFFFF))
        else:
            out.append(ref.mold_packet(name, seq, [_msg(session, seq + k) for k in range(n)]))
    return out


def _pcap(packets) -> np.ndarray:
    return np.frombuffer(ref.pcap_file([ref.eth_ipv4_udp(p) for p in _payloads(packets)]), np.uint8)


def _model(packets):
    """(messages delivered as (session name, number, body), packets after the end, distinct
    message numbers in them) of the sorted capture: per session (by first appearance), packets
    in (number, arrival) order; the first end-of-session packet ends it; a data packet after it,
    or a heartbeat past it, is counted and not delivered; if messages numbered from the end on
    were delivered before it (a packet across it), they contradict it: it is counted once and
    not taken as the end."""
    order = list(dict.fromkeys(s for s, _, _ in packets))
    delivered, after, past = [], 0, set()
    for session in order:
        mine = sorted((seq, i, n) for i, (s, seq, n) in enumerate(packets) if s == session)
        expected, ended = None, None
        for seq, _, n in mine:
            if n == EOS:
                if ended is None or seq < ended:
                    if expected is not None and expected > seq:
                        after += 1
                    else:
                        ended = seq
                continue
            if ended is not None and ((n > 0 and seq >= ended) or (n == 0 and seq > ended)):
                after += 1
                past |= {(session, seq + k) for k in range(n)}
                continue
            if n == 0:
                continue
            expected = seq if expected is None else expected
            for k in range(n):
                if seq + k >= expected:
                    delivered.append((f"SESS{session}", seq + k, _msg(session, seq + k)))
            expected = max(expected, seq + n)
    return delivered, after, len(past)


packets = st.lists(st.tuples(st.integers(0, 1), st.integers(1, 12), st.sampled_from([EOS, EOS, 0, 1, 2, 3])),
                   min_size=1, max_size=14)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packets, st.sampled_from([0, 1, 4, 100]), st.integers(1, 4))
# read in parts, a heartbeat past an end of session that arrived after it announced a gap (this
# round's own run of the property found it)
@example(packets=[(0, 1, 0), (0, 2, 0), (0, 1, EOS)], window=0, part=1)
# past the end, in file order a step back and a hole (each number counted once, as sorted)
@example(packets=[(0, 1, 1), (0, 2, EOS), (0, 6, 2), (0, 3, 2), (0, 7, 3), (0, 12, 1)], window=0, part=2)
# a heartbeat past the end before the data past it: it set the count's bound (probe 40)
@example(packets=[(0, 1, 2), (0, 3, EOS), (0, 8, 0), (0, 3, 5)], window=0, part=1)
# a repeat numbered below the packet its message was taken from: sorted, the repeat's copy is
# taken (the same bytes from another packet); in file order it was not (found by this round's runs)
@example(packets=[(0, 1, 1), (0, 2, 1), (0, 1, 2)], window=0, part=1)
@example(packets=[(1, 1, 1), (0, 1, EOS), (0, 1, EOS), (0, 1, EOS), (0, 1, EOS), (1, 2, 1), (1, 1, 2)], window=4,
         part=1)
def test_a_capture_ends_its_sessions_as_the_slow_model_does_whole_or_in_parts(monkeypatch, packets, window, part):
    import itchflow.wire.pcap as pcap

    buf = _pcap(packets)
    want, after, past = _model(packets)
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 1 << 40)
    _, whole, stats = _read_capture(buf)
    assert [(s, q, m) for s, q, m, _, _ in whole] == want
    assert stats["after_end_of_session"] == after and stats["messages_after_end_of_session"] == past
    assert stats["end_of_session"] == sum(n == EOS for _, _, n in packets)
    monkeypatch.setattr(capture_module, "STREAM_PACKETS", 0)
    monkeypatch.setattr(capture_module, "STREAM_WINDOW", window)
    monkeypatch.setattr(pcap, "TABLE_BATCH", part)
    _, parts, stats_in_parts = _read_capture(buf)
    assert parts == whole and stats_in_parts == stats


def _live_and_read(packets, path):
    """(the live receiver, the messages it delivered, the capture of the same packets as read)."""
    receiver = MoldReceiver()
    live = []
    for i, p in enumerate(_payloads(packets)):
        live += [ev.count for ev in receiver.receive(p, now_ns=i) if isinstance(ev, Deliver)]
    path.write_bytes(_pcap(packets).tobytes())
    return receiver, sum(live), itchflow.read(path)


def test_data_after_the_end_is_counted_and_not_delivered_as_the_receiver_does(tmp_path):
    # the probe's case: messages 1-3, the end at 4, then a message numbered 4 arriving late
    path = tmp_path / "late.pcap"
    receiver, live, d = _live_and_read([(0, 1, 3), (0, 4, EOS), (0, 4, 1), (0, 9, 0)], path)
    assert d.counts["D"] == live == 3
    assert d.info.capture["after_end_of_session"] == receiver.stats.after_end_of_session == 2
    assert d.info.capture["gaps"] == 0   # the heartbeat past the end announces nothing
    assert itchflow.Books().replay(path).messages == 3
    assert itchflow.stats(path).capture["after_end_of_session"] == 2


def test_an_end_below_what_was_delivered_cuts_nothing(tmp_path):
    """Packets 1-5, then 6-12, then an end of session at 3 (probe 29): sorted, the end came
    before packet 6 and the capture dropped 6-12, which arrived before it, while keeping 3-5
    past it; the live receiver delivered all 12. Contradicted by what was delivered, the end
    is counted and not taken."""
    _, live, d = _live_and_read([(0, 1, 5), (0, 6, 7), (0, 3, EOS)], tmp_path / "low_end.pcap")
    assert sorted(d["D"]["order_reference_number"].tolist()) == list(range(1, 13)) and live == 12
    assert d.info.capture["after_end_of_session"] == 1


def test_stats_says_so(tmp_path):
    from click.testing import CliRunner

    from itchflow.cli import main

    path = tmp_path / "late.pcap"
    path.write_bytes(_pcap([(0, 1, 2), (0, 3, EOS), (0, 3, 1)]).tobytes())
    res = CliRunner().invoke(main, ["stats", str(path)])
    assert res.exit_code == 0, res.output
    assert "1 packets carrying 1 message after it, not delivered" in " ".join(res.output.split())


def test_a_heartbeat_or_end_of_session_carrying_bytes_is_malformed_in_a_capture_and_live(tmp_path):
    """Probe 45: a packet of count 0 (heartbeat) or 0xFFFF (end of session) with message bytes
    after its header was taken at face value by a capture (its bytes dropped, nothing counted,
    exit 0), and an end of session so by the live receiver. No block follows either count."""
    import pytest

    from itchflow.errors import ITCHFormatError
    from itchflow.protocol.mold.receiver import Malformed

    for count in (0, 0xFFFF):
        packets = [ref.mold_packet(b"SESS0", 1, [_msg(0, 1), _msg(0, 2)]),
                   ref.mold_packet(b"SESS0", 3, [], count=count) + ref.frame(_msg(0, 3))]
        path = tmp_path / f"c{count}.pcap"
        path.write_bytes(ref.pcap_file([ref.eth_ipv4_udp(p) for p in packets]))
        with pytest.raises(ITCHFormatError, match="a heartbeat or end-of-session packet .message count 0 "
                                                  "or 65535. with bytes after its header") as e:
            itchflow.read(path)
        assert e.value.packet == 2
        lenient = itchflow.read(path, strict=False)
        assert lenient.counts["D"] == 2 and lenient.info.capture["malformed_packets"] == 1
        assert lenient.info.capture["heartbeats"] == lenient.info.capture["end_of_session"] == 0
        receiver = MoldReceiver()
        events = [ev for i, p in enumerate(packets) for ev in receiver.receive(p, now_ns=i)]
        assert sum(isinstance(ev, Malformed) for ev in events) == 1, events
        assert receiver.stats.end_of_session == receiver.stats.heartbeats == 0
        assert not receiver.ended
        # nor does such a packet, first and of another session, pick the session (probe 46)
        receiver = MoldReceiver()
        bogus = ref.mold_packet(b"BOGUS", 1, [], count=count) + ref.frame(_msg(0, 9))
        events = [ev for i, p in enumerate([bogus, packets[0]]) for ev in receiver.receive(p, now_ns=i)]
        assert sum(ev.count for ev in events if isinstance(ev, Deliver)) == 2
        assert receiver.stats.other_session_packets == 0
