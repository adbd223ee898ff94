"""The MoldUDP64 publisher's socket edge: pacing, A/B lines, fault injection, and the
re-request server thread. The packets, schedules and replies come from
``itchflow.protocol.mold.feed`` (sans-I/O).
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from itchflow.sources.udp import open_sender
from itchflow.protocol.mold.feed import Faults, MoldFeed, RerequestServer, line_schedule, send_times_ns
from itchflow.protocol.mold.ratelimit import RateLimits

HEARTBEAT_S = 1.0


@dataclass
class PublishResult:
    packets: int = 0                 # packets in the feed
    messages: int = 0                # messages in the feed
    messages_released: int = 0       # messages of the packets whose turn came (all of them at the end;
                                     # after Ctrl-C, those sent: "messages" alone read as sent, probe 41)
    sent: list = field(default_factory=lambda: [0, 0])      # datagrams sent per line
    dropped: list = field(default_factory=lambda: [0, 0])   # packets left out by fault injection
    duplicated: list = field(default_factory=lambda: [0, 0])
    heartbeats: int = 0
    end_of_session: int = 0
    server: dict = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False        # stopped by KeyboardInterrupt (Ctrl-C)


def _send_counted(sock, packet, addr, res: "PublishResult", line: int, released: int) -> None:
    """Send one datagram, counted with the messages it releases as one step for a Ctrl-C: it
    is raised where the interpreter checks for signals, at this call's entry (before the
    counts: nothing sent) or right after ``sendmsg`` returns (after them: sent). Nothing
    between the counts and the send checks (no call). A count taken after the send was a
    packet short when the Ctrl-C came in between (probe 41's counters, seen again under load);
    one taken back in an ``except`` was short too, the datagram gone (probe 50). A send that
    fails (OSError) takes its count back."""
    res.sent[line] += 1
    before = res.messages_released
    if released > before:
        res.messages_released = released
    try:
        sock.sendmsg(packet, [], 0, addr)
    except OSError:
        res.sent[line] -= 1
        res.messages_released = before
        raise


class RerequestThread(threading.Thread):
    """Serves re-requests on a UDP socket until stopped."""

    def __init__(self, feed: MoldFeed, sock: socket.socket, limits: RateLimits | None = None):
        super().__init__(name="mold-rerequest", daemon=True)
        self.server = RerequestServer(feed, limits)
        self.sock = sock
        if feed.messages:
            feed.span(1, 1, 2)      # compile the reply kernel now, not on the first re-request
        self.available = 1          # sequence after the last message published so far
        self._halt = threading.Event()

    def run(self) -> None:
        sock = self.sock
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        while not self._halt.is_set():
            if not poller.poll(50):
                continue
            for _ in range(1024):     # bounded, so a flood cannot keep stop() waiting
                try:
                    data, addr = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                reply = self.server.handle(data, self.available, addr, time.monotonic_ns())
                if reply is not None:
                    try:
                        sock.sendmsg(reply, [], 0, addr)
                    except OSError:
                        pass  # the client re-sends its request after a timeout

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def bind_rerequest(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    return s


def publish(feed: MoldFeed, line_a: tuple[str, int], line_b: tuple[str, int] | None = None, *,
            rerequest: tuple[str, int] | socket.socket | None = None, rate: float | None = None,
            pps: float | None = None, faults: Faults | None = None, linger: float = 2.0,
            heartbeat_s: float = HEARTBEAT_S, interface: str | None = None, ttl: int = 1, on_progress=None,
            stop: threading.Event | None = None, limits: RateLimits | None = None, on_start=None) -> PublishResult:
    """Send the feed on line A (and B), paced by ``rate`` (x real time; None = flat out)
    and ``pps``; then an end-of-session packet on each line, repeated every heartbeat
    interval for ``linger`` seconds while re-requests are still served (within ``limits``
    per source: see protocol.mold.ratelimit). on_start() is called once the sockets are
    open, before the first packet. On KeyboardInterrupt the result so far is attached to
    the exception as ``.result`` (``interrupted=True``)."""
    faults = faults or Faults()
    res = PublishResult(packets=feed.n_packets, messages=feed.messages)
    rng = np.random.default_rng(faults.seed)
    lines = [(line_a, faults.drop_a)] + ([(line_b, faults.drop_b)] if line_b is not None else [])
    schedules = []
    for li, (_, drop) in enumerate(lines):
        slots, pkts = line_schedule(feed.n_packets, drop, faults.reorder, faults.duplicate, rng)
        schedules.append((slots, pkts))
        res.dropped[li] = feed.n_packets - len(np.unique(pkts))
        res.duplicated[li] = len(pkts) - len(np.unique(pkts))
    times = send_times_ns(feed, rate, pps)
    sock = open_sender(interface=interface, multicast_ttl=ttl)
    server = None
    if rerequest is not None:
        rsock = rerequest if isinstance(rerequest, socket.socket) else bind_rerequest(*rerequest)
        server = RerequestThread(feed, rsock, limits)
        server.start()
    addrs = [addr for addr, _ in lines]
    heads = [0] * len(lines)
    seqs = feed.sequences
    t0 = time.monotonic_ns()
    last_send = t0
    hb_ns = int(heartbeat_s * 1e9)
    try:
        if on_start is not None:
            on_start()
        for k in range(feed.n_packets):
            if stop is not None and stop.is_set():
                break
            due = t0 + int(times[k])
            while True:
                now = time.monotonic_ns()
                if now >= due:
                    break
                if now - last_send >= hb_ns:           # idle: heartbeats carry the next sequence
                    hb = feed.heartbeat(int(seqs[k]))
                    for addr in addrs:
                        sock.sendto(hb, addr)
                    res.heartbeats += 1
                    last_send = now
                left = due - now
                time.sleep(min(left, hb_ns) / 1e9 if left > 200_000 else 0)
            if server is not None:
                server.available = int(seqs[k + 1])
            released = int(seqs[k + 1]) - 1
            for li, (slots, pkts) in enumerate(schedules):
                h = heads[li]
                while h < len(slots) and slots[h] <= k:
                    _send_counted(sock, feed.packet(int(pkts[h])), addrs[li], res, li, released)
                    h += 1
                heads[li] = h
            res.messages_released = released   # (a turn whose packets were all dropped by a fault)
            last_send = time.monotonic_ns()
            if on_progress is not None and (k & 1023) == 0:
                on_progress(k, feed.n_packets)
        # late packets scheduled past the last slot
        for li, (slots, pkts) in enumerate(schedules):
            for h in range(heads[li], len(slots)):
                _send_counted(sock, feed.packet(int(pkts[h])), addrs[li], res, li, res.messages_released)
        if server is not None:
            server.available = int(seqs[-1])
        eos = feed.end_of_session()
        end = time.monotonic() + linger
        while True:
            for addr in addrs:
                sock.sendto(eos, addr)
            res.end_of_session += 1
            if time.monotonic() >= end or (stop is not None and stop.is_set()):
                break
            time.sleep(min(heartbeat_s, max(0.0, end - time.monotonic())))
    except KeyboardInterrupt as e:
        res.interrupted = True
        e.result = res
        raise
    finally:
        sock.close()
        if server is not None:
            server.stop()
            res.server = server.server.stats.to_dict()
            server.sock.close()
        res.seconds = (time.monotonic_ns() - t0) / 1e9
    return res
