"""End to end on loopback (127.0.0.1 only): a day published as MoldUDP64 on two lines with
5% loss, reordering and duplicates on each arrives byte-identical, counters adding up.
Every test is bounded in time and closes what it opens.
"""

from __future__ import annotations

import io
import socket
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from itchflow.wire.itch import DTYPES

pytestmark = pytest.mark.timeout(120)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def synthetic_day(n: int, seed: int = 0) -> np.ndarray:
    """A BinaryFILE of n valid ITCH messages (the generator's day when it is there)."""
    try:
        from itchflow.sim.generator import generate_day, minimum_messages
    except ImportError:
        generate_day = None
    if generate_day is not None:
        for stocks in (100, 10, 1):
            if n >= minimum_messages(stocks):
                return np.asarray(generate_day(n, seed, stocks=stocks), np.uint8)
    from itchflow.decode.encoder import encode

    rng = np.random.default_rng(seed)
    codes = rng.choice(list("ADEXUPIF"), n)
    arrays = {}
    for c in "ADEXUPIF":
        idx = np.flatnonzero(codes == c)
        a = np.zeros(len(idx), DTYPES[c])
        a["sequence"] = idx + 1
        a["timestamp"] = 34_200_000_000_000 + idx * 1000
        a["stock_locate"] = rng.integers(1, 100, len(idx))
        arrays[c] = a
    return np.frombuffer(encode(arrays), np.uint8)


def run_loopback(data, engine, faults, pps=20_000, payload=1400, rs=None):
    from itchflow.sources.mold_sender import bind_rerequest, publish
    from itchflow.sources.udp import listen, open_receiver, warm_up
    from itchflow.protocol.mold.feed import MoldFeed

    warm_up(engine)   # with a cold Numba cache, compiling after the sender starts outlasts its linger
    feed = MoldFeed(data, "LOOPTEST", payload)
    a = open_receiver("127.0.0.1", 0)
    b = open_receiver("127.0.0.1", 0)
    rs = rs if rs is not None else bind_rerequest("127.0.0.1", 0)
    out = io.BytesIO()
    box = {}
    stop = threading.Event()

    def pub():
        box["pub"] = publish(feed, a.getsockname(), b.getsockname(), rerequest=rs, pps=pps, faults=faults,
                             linger=30.0, stop=stop)   # serve re-requests until the receiver is done (stop ends it)

    t = threading.Thread(target=pub)
    t.start()
    try:
        res = listen(None, None, rs.getsockname(), out, engine=engine, sockets=[a, b], idle_timeout=10,
                     max_seconds=90)
    finally:
        stop.set()
        t.join(30)
        a.close()
        b.close()
    return feed, box["pub"], res, out.getvalue()


def _tpacket_allowed() -> bool:
    import socket
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
        return True
    except (OSError, AttributeError):
        return False


@pytest.mark.parametrize("engine", ["recvmmsg", "recv", "tpacket"])
def test_ab_lines_with_loss_reorder_duplicates_arrive_identical(engine):
    from itchflow.protocol.mold.feed import Faults

    if engine == "tpacket" and not _tpacket_allowed():
        pytest.skip("AF_PACKET sockets need CAP_NET_RAW")

    data = synthetic_day(60_000, seed=7)
    feed, pub, res, out = run_loopback(data, engine, Faults(0.05, 0.05, 0.05, 0.05, seed=11))
    s = res.stats
    assert res.finished and s["lost"] == 0, s
    assert out == data.tobytes()
    n = feed.messages
    assert s["messages"] == n and s["lost"] == 0 and s["malformed"] == 0
    assert sum(s["messages_by_line"]) == n
    assert s["bytes"] == len(data)
    # every packet received is accounted for by line
    assert s["packets"] == sum(s["packets_by_line"])
    # the publisher really dropped packets on each line (so recovery was exercised) ...
    assert pub.dropped[0] > 0 and pub.dropped[1] > 0 and pub.duplicated[0] > 0
    # ... and packets lost on both lines could only come back through re-requests
    assert s["requests"] >= 1 and s["recovered"] >= 1
    assert s["recovered"] == s["messages_by_line"][2]
    assert s["packets_by_line"][2] <= pub.server["replies"] <= pub.server["requests"] <= s["requests"]
    # every datagram the lines carried arrived (loopback with a big buffer): data packets
    # per line = sent - end-of-session markers seen on that line
    assert s["packets_by_line"][0] + s["packets_by_line"][1] <= pub.sent[0] + pub.sent[1] + 2 * pub.end_of_session
    assert len(res.latency_ns) > 0 and res.latency_ns.min() >= 0


def test_without_rerequest_server_double_losses_are_counted():
    from itchflow.sources.mold_sender import publish
    from itchflow.sources.udp import listen, open_receiver
    from itchflow.protocol.mold.feed import Faults, MoldFeed

    data = synthetic_day(20_000, seed=3)
    feed = MoldFeed(data, "NOREREQ", 600)
    a = open_receiver("127.0.0.1", 0)
    box = {}
    runs = []   # the on_deliver hook sees the same runs, with their sequence numbers
    t = threading.Thread(target=lambda: box.update(pub=publish(feed, a.getsockname(), None, pps=20_000,
                                                               faults=Faults(drop_a=0.1, seed=5), linger=0.3)))
    t.start()
    out = io.BytesIO()
    try:
        res = listen(None, None, None, out, sockets=[a], idle_timeout=5, max_seconds=60,
                     on_deliver=lambda d: runs.append((d.first_sequence, d.count, d.data.tobytes())))
    finally:
        t.join(30)
        a.close()
    s = res.stats
    assert res.finished and s["lost"] > 0 and s["requests"] == 0
    assert s["messages"] + s["lost"] == feed.messages
    # what was delivered is exactly the source minus the lost ranges
    from itchflow.protocol.mold.codec import index_messages

    offsets = index_messages(data)[0]
    keep = np.ones(feed.messages, bool)
    for e in res.lost:
        keep[e.first_sequence - 1:e.first_sequence - 1 + e.count] = False
    expected = b"".join(data[offsets[i]:offsets[i + 1]].tobytes() for i in np.flatnonzero(keep))
    assert out.getvalue() == expected
    assert b"".join(r[2] for r in runs) == expected
    for first, count, raw in runs:
        assert raw == data[offsets[first - 1]:offsets[first - 1 + count]].tobytes()
    assert sum(e.count for e in res.lost) == s["lost"]


def test_cli_publish_and_listen(tmp_path):
    """The listener binds its lines on port 0 and says where (readiness); the publisher is
    handed the re-request socket the test bound (no port reserved by bind-then-close)."""
    import json
    import socket

    from net_procs import finish, start, wait_for_line

    data = synthetic_day(20_000, seed=1)
    src = tmp_path / "day.itch"
    src.write_bytes(data.tobytes())
    out = tmp_path / "out.itch"
    rs = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rs.bind(("127.0.0.1", 0))
    listener = start(["listen", "--mold", "127.0.0.1:0", "--line-b", "127.0.0.1:0",
                      "--rerequest", f"127.0.0.1:{rs.getsockname()[1]}", "--out", str(out), "--json",
                      "--idle-timeout", "20", "--max-seconds", "60"])
    try:
        m = wait_for_line(listener, r"listening on 127\.0\.0\.1:(\d+), 127\.0\.0\.1:(\d+)")
        pa, pb = m.group(1), m.group(2)
        env = dict(os.environ, PYTHONPATH=SRC)
        cli = "import sys; from itchflow.cli import main; import itchflow.cli.net; sys.exit(main())"
        pub = subprocess.run(
            [sys.executable, "-c", cli, "publish", str(src), "--mold", f"127.0.0.1:{pa}",
             "--line-b", f"127.0.0.1:{pb}", "--rerequest", f"fd:{rs.fileno()}", "--rate", "max",
             "--pps", "20000", "--drop-a", "0.05", "--drop-b", "0.05", "--reorder", "0.05", "--duplicate", "0.05",
             "--linger", "2", "--json", "--quiet"], env=env, capture_output=True, text=True, timeout=60,
            pass_fds=(rs.fileno(),))
        assert pub.returncode == 0, pub.stderr
        stdout, stderr = finish(listener)
    finally:
        rs.close()
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    assert listener.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["finished"] and report["lost"] == 0 and report["messages"] == 20_000
    assert out.read_bytes() == data.tobytes()


def test_multicast_on_loopback_host_only():
    """Two multicast groups joined on lo; TTL 0 keeps every datagram on this host."""
    from itchflow.sources.mold_sender import bind_rerequest, publish
    from itchflow.sources.udp import listen, open_receiver
    from itchflow.protocol.mold.feed import Faults, MoldFeed

    try:
        a = open_receiver("239.255.77.1", 0, interface="127.0.0.1")
        b = open_receiver("239.255.77.2", 0, interface="127.0.0.1")
    except OSError as e:   # the capability is missing (no multicast on lo): not a receiver failure
        pytest.skip(f"cannot join a multicast group on lo here: {e}")
    data = synthetic_day(20_000, seed=9)
    feed = MoldFeed(data, "MCAST", 1400)
    rs = bind_rerequest("127.0.0.1", 0)
    box = {}
    t = threading.Thread(target=lambda: box.update(pub=publish(
        feed, ("239.255.77.1", a.getsockname()[1]), ("239.255.77.2", b.getsockname()[1]), rerequest=rs,
        pps=20_000, faults=Faults(0.05, 0.05, 0.02, 0.02, seed=2), interface="127.0.0.1", ttl=0, linger=1.0)))
    t.start()
    out = io.BytesIO()
    try:
        res = listen(None, None, rs.getsockname(), out, sockets=[a, b], idle_timeout=3, max_seconds=60)
    finally:
        t.join(30)
        a.close()
        b.close()
    # nothing delivered is a failure (a broken receiver must not pass as a skip)
    assert res.stats["packets_by_line"][0] > 0 and res.stats["packets_by_line"][1] > 0, res.stats
    assert res.finished and out.getvalue() == data.tobytes()
    assert res.stats["lost"] == 0 and res.stats["messages"] == feed.messages


def test_real_time_pacing_sends_heartbeats_in_quiet_periods():
    """Two messages 1.3 s apart at real time: the publisher fills the quiet second with
    heartbeats carrying the next sequence number, and the receiver counts them."""
    from itchflow.decode.encoder import encode_message
    from itchflow.sources.mold_sender import publish
    from itchflow.sources.udp import listen, open_receiver
    from itchflow.protocol.mold.feed import MoldFeed

    t0 = 34_200_000_000_000
    data = np.frombuffer(encode_message("I", timestamp=t0, stock="AAPL")
                         + encode_message("I", timestamp=t0 + 1_300_000_000, stock="MSFT"), np.uint8)
    feed = MoldFeed(data, "QUIET", 72)        # room for one 50-byte NOII per packet
    assert feed.n_packets == 2
    a = open_receiver("127.0.0.1", 0)
    box = {}
    t = threading.Thread(target=lambda: box.update(pub=publish(feed, a.getsockname(), rate=1.0, linger=0.0,
                                                               heartbeat_s=0.5)))
    t.start()
    out = io.BytesIO()
    try:
        res = listen(None, None, None, out, sockets=[a], idle_timeout=5, max_seconds=20)
    finally:
        t.join(20)
        a.close()
    assert res.finished and out.getvalue() == data.tobytes()
    assert box["pub"].heartbeats >= 1 and res.stats["heartbeats"] == box["pub"].heartbeats
    assert res.stats["gaps"] == 0     # a heartbeat's sequence is the next one: no false gap



FLOOD = """
import json, select, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
req = b"LOOPTEST  " + (1).to_bytes(8, "big") + (0xFFFE).to_bytes(2, "big")
sent = received = 0
def drain(timeout):
    global received
    while select.select([s], [], [], timeout)[0]:
        received += len(s.recv(65536))
        timeout = 0
print("ready", flush=True)
for k in range(n):
    sent += s.sendto(req, ("127.0.0.1", port))
    if k % 64 == 0:
        drain(0)
while select.select([s], [], [], 2.0)[0]:   # replies still coming: keep counting
    drain(0)
print(json.dumps({"sent": sent, "received": received}), flush=True)
"""


def test_rerequest_flood_from_one_source_while_a_receiver_recovers():
    """50,000 re-requests from one source (another process): it gets back at most 5 bytes
    per byte it sent, and a lossy receiver on another socket still recovers every gap."""
    import json

    from itchflow.protocol.mold.feed import Faults
    from itchflow.sources.mold_sender import bind_rerequest

    data = synthetic_day(20_000, seed=4)
    rs = bind_rerequest("127.0.0.1", 0)
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(rs.getsockname()[1]), "50000"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert flood.stdout.readline().strip() == "ready"
        feed, pub, res, out = run_loopback(data, "recvmmsg", Faults(0.05, 0.05, 0.0, 0.0, seed=3), rs=rs)
        box = json.loads(flood.communicate(timeout=60)[0])
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    s = res.stats
    assert res.finished and s["lost"] == 0 and out == data.tobytes(), s
    assert s["recovered"] > 0
    assert box["sent"] == 50_000 * 20 and box["received"] <= 5 * box["sent"], box
    assert pub.server["refused_requests"] > 0



def _listen_while_publishing(feed, a, rs, spoofer, engine, on_deliver, receiver_options=None, **publish_options):
    """Publish feed to socket a from a thread (re-requests served on rs) while listen() receives
    it; close the sockets afterwards. Returns (listen's result, the recovered stream)."""
    from itchflow.sources.mold_sender import publish
    from itchflow.sources.udp import listen

    stop = threading.Event()
    t = threading.Thread(target=lambda: publish(feed, a.getsockname(), None, rerequest=rs, linger=30.0,
                                                stop=stop, **publish_options))
    t.start()
    out = io.BytesIO()
    try:
        res = listen(None, None, rs.getsockname(), out, engine=engine, sockets=[a], idle_timeout=5,
                     max_seconds=60, on_deliver=on_deliver, receiver_options=receiver_options)
    finally:
        stop.set()
        t.join(30)
        a.close()
        spoofer.close()
    return res, out

@pytest.mark.parametrize("engine", ["recvmmsg", "recv"])
def test_spoofed_and_foreign_packets_do_not_end_the_feed(engine):
    """Mid-stream, packets of the right session with sequence 2**63 and 2**64-1 (data and a
    heartbeat) and a well-framed packet of another session arrive on line A: both engines
    count them, follow nothing, and deliver the whole real day."""
    import socket

    from itchflow.protocol.mold.feed import MoldFeed
    from itchflow.sources.mold_sender import bind_rerequest
    from itchflow.sources.udp import open_receiver, warm_up

    warm_up(engine)
    data = synthetic_day(20_000, seed=5)
    feed = MoldFeed(data, "REALDAY", 1400)
    a = open_receiver("127.0.0.1", 0)
    rs = bind_rerequest("127.0.0.1", 0)
    one = b"\x00\x01A"
    spoofs = [b"REALDAY   " + (2**63).to_bytes(8, "big") + (1).to_bytes(2, "big") + one,
              b"REALDAY   " + (2**64 - 1).to_bytes(8, "big") + (1).to_bytes(2, "big") + one,
              b"REALDAY   " + (2**63).to_bytes(8, "big") + (0).to_bytes(2, "big"),
              b"FOREIGN   " + (7).to_bytes(8, "big") + (1).to_bytes(2, "big") + one]
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    state = {"deliveries": 0}

    def on_deliver(e):
        state["deliveries"] += 1
        if state["deliveries"] == 3:
            for p in spoofs:
                spoofer.sendto(p, a.getsockname())

    res, out = _listen_while_publishing(feed, a, rs, spoofer, engine, on_deliver, pps=20_000)
    s = res.stats
    assert res.finished and out.getvalue() == data.tobytes(), s
    assert s["bad_sequence"] == 3 and s["other_session_packets"] == 1, s
    assert s["lost"] == 0 and s["session_changes"] == 0 and s["gaps"] == 0


@pytest.mark.parametrize("engine", ["recvmmsg", "recv"])
def test_spoofed_heartbeat_in_a_quiet_second_does_not_skip_the_rest_of_the_day(engine):
    """The feed pauses 1.5 s (real-time pacing); in the pause a spoofed heartbeat of the right
    session announces 500,000 more messages (within max_gap). The re-requests for that 'gap'
    run out in the quiet second (given up after 0.5 s here), yet every real message after the
    pause is delivered."""
    import socket

    from itchflow.decode.encoder import encode_message
    from itchflow.protocol.mold.feed import MoldFeed
    from itchflow.sources.mold_sender import bind_rerequest
    from itchflow.sources.udp import open_receiver, warm_up

    warm_up(engine)
    t0 = 34_200_000_000_000
    msgs = [encode_message("I", timestamp=t0 + (0 if i < 400 else 1_500_000_000), stock="AAPL") for i in range(800)]
    data = np.frombuffer(b"".join(msgs), np.uint8)
    feed = MoldFeed(data, "QUIETDAY", 1400)
    a = open_receiver("127.0.0.1", 0)
    rs = bind_rerequest("127.0.0.1", 0)
    spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    state = {"sent": False}

    def on_deliver(e):
        if not state["sent"] and e.first_sequence + e.count > 400:   # the first half is in: the pause
            spoofer.sendto(b"QUIETDAY  " + (400 + 500_000).to_bytes(8, "big") + bytes(2), a.getsockname())
            state["sent"] = True

    res, out = _listen_while_publishing(feed, a, rs, spoofer, engine, on_deliver, rate=1.0, heartbeat_s=5.0,
                                        receiver_options={"give_up_ns": 500_000_000})
    s = res.stats
    assert state["sent"] and res.finished and s["lost"] == 0 and s["messages"] == 800, s
    assert out.getvalue() == data.tobytes()
    assert s["deferred_give_ups"] >= 1, s       # the re-requests for the spoofed 'gap' did run out


@pytest.mark.parametrize("engine", ["recvmmsg", "recv"])
def test_a_malformed_packet_names_the_peer_that_sent_it(engine):
    """A hostile or broken sender on the feed's port is named in the report (its address and
    port), not only the packet's number: a short datagram and one whose block overruns it,
    from one socket, among a good session from another."""
    import struct

    from itchflow import encode_message
    from itchflow.sources.udp import listen, open_receiver
    from itchflow.wire.moldudp64 import pack_header

    msg = encode_message("S", timestamp=1, event_code="O")
    a = open_receiver("127.0.0.1", 0)
    hostile = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hostile.bind(("127.0.0.1", 0))
    hostile_peer = "127.0.0.1:%d" % hostile.getsockname()[1]
    good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        dest = a.getsockname()
        hostile.sendto(b"\x00" * 5, dest)
        hostile.sendto(pack_header("SESSION1", 1, 1) + struct.pack(">H", 40) + msg, dest)  # block says 40
        good.sendto(pack_header("SESSION1", 1, 1) + struct.pack(">H", len(msg)) + msg, dest)
        good.sendto(pack_header("SESSION1", 2, 0xFFFF), dest)                             # end of session
        res = listen(None, None, None, io.BytesIO(), engine=engine, sockets=[a], idle_timeout=5, max_seconds=20)
    finally:
        for s in (a, hostile, good):
            s.close()
    assert res.finished and res.stats["messages"] == 1 and res.stats["malformed"] == 2
    assert [m.peer for m in res.malformed] == [hostile_peer, hostile_peer]
    assert all(f"from {hostile_peer})" in str(m) for m in res.malformed)
