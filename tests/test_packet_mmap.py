"""TPACKET_V3 RX ring on the loopback interface (needs CAP_NET_RAW: skipped without it).

The packets are sent by this test to 127.0.0.1 only; the ring must hand back exactly the UDP
payloads sent to the watched port, in order, with kernel receive times, and nothing else.
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from itchflow.wire.moldudp64 import pack_header

pytestmark = [pytest.mark.net, pytest.mark.timeout(60)]


@pytest.fixture
def ring_and_port():
    from itchflow.sources.tpacket import TPacketV3

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    try:
        ring = TPacketV3("lo", port=port, block_size=1 << 16, block_nr=64, retire_ms=1)
    except (PermissionError, OSError) as e:
        rx.close()
        pytest.skip(f"no AF_PACKET ring here: {e}")
    yield ring, port, rx
    ring.close()
    rx.close()


def wait_for(ring, bufs, lengths, rx_ns, want, limit=5.0):
    got, n_total = [], 0
    deadline = time.monotonic() + limit
    while n_total < want and time.monotonic() < deadline:
        n = ring.read_into(bufs, lengths, rx_ns)
        for i in range(n):
            got.append((bytes(bufs[i, :min(lengths[i], bufs.shape[1])]), int(lengths[i]), int(rx_ns[i])))
        n_total += n
        if n == 0:
            time.sleep(0.002)
    return got


def test_ring_hands_back_exactly_the_datagrams_sent_to_the_port(ring_and_port):
    ring, port, _ = ring_and_port
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = np.random.default_rng(3)
    sent = []
    bufs = np.zeros((256, 2048), np.uint8)
    lengths = np.zeros(256, np.int64)
    rx_ns = np.zeros(256, np.int64)
    got = []
    t0 = time.time_ns()
    for i in range(3000):
        d = pack_header(b"RINGTEST", 1 + i, 1) + rng.integers(0, 256, int(rng.integers(0, 1400)), np.uint8).tobytes()
        tx.sendto(d, ("127.0.0.1", port))
        sent.append(d)
        if i % 7 == 0:   # traffic to another port must not show up
            tx.sendto(b"noise" * 10, other.getsockname())
        if i % 100 == 99:   # read as a receiver would, while the sender goes on (the ring is finite)
            n = ring.read_into(bufs, lengths, rx_ns)
            got += [(bytes(bufs[k, :lengths[k]]), int(lengths[k]), int(rx_ns[k])) for k in range(n)]
    got += wait_for(ring, bufs, lengths, rx_ns, len(sent) - len(got))
    assert [g[0] for g in got] == sent
    assert all(g[1] == len(d) for g, d in zip(got, sent))
    times = [g[2] for g in got]
    assert times == sorted(times) and t0 - 1_000_000_000 < times[0] <= time.time_ns()
    assert ring.stats()["tp_drops"] == 0
    assert ring.read_into(bufs, lengths, rx_ns) == 0     # nothing more
    tx.close()
    other.close()


def test_long_datagram_is_cut_and_flagged_by_its_length(ring_and_port):
    ring, port, _ = ring_and_port
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.sendto(b"x" * 1000, ("127.0.0.1", port))
    bufs = np.zeros((4, 256), np.uint8)
    lengths = np.zeros(4, np.int64)
    rx_ns = np.zeros(4, np.int64)
    got = wait_for(ring, bufs, lengths, rx_ns, 1)
    assert len(got) == 1 and got[0][1] == 257 and got[0][0] == b"x" * 256   # longer than a row: row + 1
    tx.close()


def test_drain_sum_matches_the_headers(ring_and_port):
    ring, port, _ = ring_and_port
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(500):
        tx.sendto(pack_header(b"SUM", 10 * i, 7) + bytes(30), ("127.0.0.1", port))
    deadline = time.monotonic() + 5
    k = acc = 0
    while k < 500 and time.monotonic() < deadline:
        a, b = ring.drain_sum()
        k += a
        acc += b
        time.sleep(0.002)
    assert k == 500 and acc == sum(10 * i + 7 for i in range(500))
    tx.close()


def test_other_traffic_takes_no_ring_space_and_the_counts_say_what_came(ring_and_port):
    """The ring took every IPv4 packet of the interface and the walk kept the feed's: other
    traffic filled it while the reader stalled, and the feed behind it was lost, reported as
    nothing (no kernel drop count was read). A socket filter keeps only the feed's datagrams
    now; counters() gives the kernel's drops and what the walk saw, by outcome."""
    from itchflow.sources.tpacket import feed_filter

    ring, port, _ = ring_and_port
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for k in range(300):                           # a stalled reader: nothing walked meanwhile
            tx.sendto(b"x" * 1000, ("127.0.0.1", other.getsockname()[1]))
        for k in range(5):
            tx.sendto(pack_header(b"FILTER", k + 1, 0), ("127.0.0.1", port))
        bufs, lengths, rx_ns = np.zeros((64, 2048), np.uint8), np.zeros(64, np.int64), np.zeros(64, np.int64)
        got = wait_for(ring, bufs, lengths, rx_ns, 5)
    finally:
        other.close()
        tx.close()
    assert [g[0] for g in got] == [pack_header(b"FILTER", k + 1, 0) for k in range(5)]
    c = ring.counters()
    assert c["ring_udp"] == 5 and "ring_other_destination" not in c, c   # the 300 never reached the ring
    assert c["kernel_drops"] == 0 and c["kernel_packets"] >= 5, c
    # the program itself, loads relative to the network header: UDP, fragments kept, the port
    # read past the IP header's own length
    net = -0x100000
    codes = [(code, k) for code, _, _, k in feed_filter(30001, 0)]
    assert codes == [(0x30, net + 9), (0x15, 17), (0x28, net + 6), (0x45, 0x3FFF), (0xB1, net), (0x48, net + 2),
                     (0x15, 30001), (0x06, 0x40000), (0x06, 0)]
    assert [(jt, jf) for _, jt, jf, _ in feed_filter(30001, 0)][:7] == [(0, 0), (0, 6), (0, 0), (3, 0), (0, 0), (0, 0), (0, 1)]


def test_the_walk_gives_each_datagram_its_sender_as_recvmmsg_does(ring_and_port):
    """A malformed packet names its peer on every engine: the walk writes each datagram's
    source address and port as a struct sockaddr_in, which MmsgSlots.peer reads."""
    from itchflow.hw.net_syscalls import MmsgSlots

    ring, port, _ = ring_and_port
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in senders:
        s.bind(("127.0.0.1", 0))
    slots = MmsgSlots(8, 2048)
    try:
        want = []
        for i, s in enumerate(senders * 2):
            s.sendto(pack_header(b"PEERTEST", 1 + i, 0), ("127.0.0.1", port))
            want.append(f"127.0.0.1:{s.getsockname()[1]}")
        got = []
        deadline = time.monotonic() + 5
        while len(got) < len(want) and time.monotonic() < deadline:
            n = ring.read_into(slots.bufs, slots.lengths, slots.rx_ns, slots.names)
            got += [slots.peer(i) for i in range(n)]
            if n == 0:
                time.sleep(0.002)
        assert got == want
    finally:
        for s in senders:
            s.close()


def test_a_missing_interface_or_privilege_is_said_in_words(monkeypatch):
    """listen --engine tpacket said "[Errno 19] packet ring on 'nope0': No such device" and, as
    non-root, "[Errno 1] Operation not permitted" (probe 27), where the xdp engine names the
    interface and the capability."""
    from itchflow.sources.tpacket import TPacketV3

    with pytest.raises(OSError) as e:
        TPacketV3("nope0")
    assert str(e.value) == "packet ring on 'nope0': no interface of that name (in this network namespace)"

    def refused(*a, **k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(socket, "socket", refused)
    with pytest.raises(PermissionError) as e:
        TPacketV3("lo")
    assert "CAP_NET_RAW" in str(e.value) and "Errno" not in str(e.value)
