"""UDP sockets for MoldUDP64: open/join, receive (Python recv or compiled recvmmsg), and
the listen loop that drives the sans-I/O ``MoldReceiver`` and writes what it delivers.

Receive timestamps come from the kernel (SO_TIMESTAMPNS, CLOCK_REALTIME) so the reported
latency is from the datagram's arrival in the kernel to its delivery in sequence.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import time
from dataclasses import dataclass, field

import numpy as np

from itchflow.hw.metrics import LatencyLog
from itchflow.hw.net_syscalls import SO_TIMESTAMPNS, MmsgSlots
from itchflow.protocol.mold.receiver import (
    LINE_REPLY,
    Deliver,
    Lost,
    MoldReceiver,
    Request,
)

SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
DEFAULT_RCVBUF = 16 << 20
MAX_DATAGRAM = 65536


IPV6_REFUSED = ("IPv6 addresses are not supported (MoldUDP64 and SoupBinTCP run here over IPv4): give an "
                "IPv4 address or a host name")


def peer_text(address) -> str | None:
    """A socket address tuple as "HOST:PORT" ("[HOST]:PORT" for IPv6); None for none."""
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def written_as_ipv6(host: str) -> bool:
    """Whether host is written as an IPv6 address (bare or in brackets)."""
    return ":" in host or host.startswith("[")


def parse_endpoint(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """'HOST:PORT' or 'PORT' -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    if written_as_ipv6(host):
        raise ValueError(f"{text!r}: {IPV6_REFUSED}")
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"{text!r}: expected HOST:PORT or PORT") from None
    if not 0 <= p < 65536:
        raise ValueError(f"{text!r}: port out of range")
    return host or default_host, p


def udp_port_bound(port: int) -> bool:
    """Whether any socket on this host is bound to UDP ``port`` (read from /proc/net/udp, so
    asking never takes the port from the process about to bind it)."""
    want = f":{port:04X}"
    try:
        with open("/proc/net/udp") as f:
            next(f)
            return any(line.split()[1].endswith(want) for line in f)
    except (OSError, StopIteration, IndexError):
        return False


def wait_for_listener(port: int, timeout: float = 60.0) -> bool:
    """Wait until some process has bound UDP ``port`` (for a sender that must not start before
    its receiver is there); True when it has, False at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_port_bound(port):
            return True
        time.sleep(0.01)
    return False


def is_multicast(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_multicast
    except ValueError:
        return False


def open_receiver(host: str, port: int, *, interface: str = "0.0.0.0", rcvbuf: int = DEFAULT_RCVBUF,
                  timestamps: bool = True) -> socket.socket:
    """A UDP socket receiving host:port: joins the group if host is multicast, else binds it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if is_multicast(host):
        # Several receivers may join one group; a unicast port is this receiver's alone (with
        # SO_REUSEADDR a second listener would bind it silently and take its datagrams).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _set_rcvbuf(s, rcvbuf)
    if timestamps:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        s.bind((host, port))
        if is_multicast(host):
            mreq = socket.inet_aton(host) + socket.inet_aton(interface)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError as e:   # "Address already in use" named no address
        s.close()
        what = f"join {host} on {interface}" if is_multicast(host) else "bind"
        raise OSError(e.errno, f"{what} {host}:{port}: {e.strerror}") from None
    s.setblocking(False)
    return s


def _set_rcvbuf(s: socket.socket, size: int) -> None:
    try:  # as root, past net.core.rmem_max
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def open_sender(*, multicast_ttl: int = 1, interface: str | None = None, loop: bool = True) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, multicast_ttl)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if loop else 0)
    if interface:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    return s


class PyRecv:
    """recvmsg_into from Python, one datagram per call, with its kernel timestamp."""

    name = "recv"

    def __init__(self, batch: int = 64, ifname: str | None = None):
        self.buf = np.zeros(MAX_DATAGRAM, np.uint8)
        self.batch = batch
        self._anc = socket.CMSG_SPACE(16)
        self.sender = None   # the address of the datagram read last

    def peer(self) -> str | None:
        """The sender of the datagram read last, as "HOST:PORT" ("[HOST]:PORT")."""
        return peer_text(self.sender)

    def read(self, sock: socket.socket):
        """Yield (uint8 view, rx_ns) for up to ``batch`` queued datagrams (views are reused)."""
        for _ in range(self.batch):
            try:
                n, anc, _, self.sender = sock.recvmsg_into([self.buf], self._anc)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:   # ICMP for a request to a re-request server not (yet)
                return                       # there: the request's timeout sends it again
            rx = 0
            for level, typ, data in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = np.frombuffer(data[:16], np.int64)
                    rx = int(sec) * 1_000_000_000 + int(nsec)
            yield self.buf[:n], rx


class MmsgRecv:
    """Batched recvmmsg called from compiled code."""

    name = "recvmmsg"

    def __init__(self, batch: int = 64, slot_size: int = MAX_DATAGRAM, ifname: str | None = None):
        # slots as large as any datagram: a truncated one would be counted malformed, not lost silently
        self.slots = MmsgSlots(batch, slot_size)

    def read(self, sock: socket.socket):
        sl = self.slots
        n = sl.receive(sock.fileno())
        for i in range(n):
            yield sl.bufs[i, :sl.lengths[i]], int(sl.rx_ns[i])

    def read_batch(self, sock: socket.socket) -> int:
        """One recvmmsg: datagrams in slots.bufs[:n] (lengths, rx_ns); n (0 if none)."""
        return self.slots.receive(sock.fileno())


class TPacketRecv:
    """Each line's datagrams read from a TPACKET_V3 ring the kernel fills (sources/packet_mmap):
    no system call per packet. The UDP sockets stay open for their joins; what they also queue
    is never read (their buffers are kept small)."""

    name = "tpacket"

    def __init__(self, batch: int = 64, slot_size: int = MAX_DATAGRAM, ifname: str | None = None):
        self.slots = MmsgSlots(batch, slot_size)
        self.ifname = ifname
        self.rings: dict[int, object] = {}

    def attach(self, sock: socket.socket) -> int:
        """Start a ring for this socket's address and port; returns the descriptor to poll."""
        from itchflow.sources.tpacket import TPacketV3

        host, port = sock.getsockname()
        ifname = self.ifname or ("lo" if host.startswith("127.") else None)
        if ifname is None:
            raise ValueError(f"the tpacket engine needs the interface name for {host}:{port} (--ifname)")
        _set_rcvbuf(sock, 1 << 16)
        ring = TPacketV3(ifname, port=port, address=host if host != "0.0.0.0" else "")
        self.rings[sock.fileno()] = ring
        return ring.fileno()

    def read(self, sock: socket.socket):
        n = self.read_batch(sock)
        sl = self.slots
        for i in range(n):
            yield sl.bufs[i, :sl.lengths[i]], int(sl.rx_ns[i])

    def read_batch(self, sock: socket.socket) -> int:
        """A line's ring into the slots; a socket without a ring (re-request replies) by recvmmsg."""
        sl = self.slots
        ring = self.rings.get(sock.fileno())
        if ring is None:
            return sl.receive(sock.fileno())
        return ring.read_into(sl.bufs, sl.lengths, sl.rx_ns, sl.names)

    def counters(self) -> dict:
        """Every line's ring counters summed (TPacketV3.counters): the kernel's drops and the
        packets the walk refused (bad checksums or lengths, other hosts' frames, fragments)."""
        out: dict[str, int] = {}
        for r in self.rings.values():
            for k, v in r.counters().items():
                out[k] = out.get(k, 0) + v
        return out

    def close(self) -> None:
        if self.rings:
            self.final = self.counters()
        for r in self.rings.values():
            r.close()
        self.rings.clear()


def _xdp_engine(**kw):
    from itchflow.sources.xdp import XdpRecv   # AF_XDP: one socket for both lines (sources/xdp.py)

    return XdpRecv(**kw)


# Receive engines by name: a factory taking ``ifname=`` (and engine options) that returns a
# reader with ``read(sock)`` (and optionally ``read_batch(sock)`` + ``slots``, ``attach(sock) ->
# fd to poll``, ``close()``). New engines register here (register_engine).
ENGINES: dict[str, object] = {"recv": PyRecv, "recvmmsg": MmsgRecv, "tpacket": TPacketRecv, "xdp": _xdp_engine}
XDP_LINES = -1        # the poll entry of the AF_XDP socket (it carries both lines)


def register_engine(name: str, factory) -> None:
    ENGINES[name] = factory


def make_reader(engine: str, ifname: str | None = None, **options):
    try:
        factory = ENGINES[engine]
    except KeyError:
        raise ValueError(f"unknown receive engine {engine!r} (one of {', '.join(sorted(ENGINES))})") from None
    return factory(ifname=ifname, **options)


@dataclass
class ListenResult:
    stats: dict
    latency_ns: np.ndarray               # receive (kernel) to deliver, one per Deliver event
    malformed: list
    lost: list = field(default_factory=list)
    finished: bool = False               # end of session seen, everything before it delivered, and
                                         # nothing of the session past it within end_linger s
    seconds: float = 0.0
    engine: str = ""
    engine_stats: dict = field(default_factory=dict)   # the engine's own counters (xdp: ring, XDP_STATISTICS)
    interrupted: bool = False            # stopped by KeyboardInterrupt (Ctrl-C)
    end_sequence: int | None = None      # the end of session's sequence, when one was seen

    @property
    def end_contradicted(self) -> int:
        """Packets of the session past its end of session (data, heartbeats): an end that came
        early or was spoofed; the stream may be cut short."""
        return int(self.stats.get("after_end_of_session", 0)) if self.end_sequence is not None else 0


END_LINGER_S = 1.0   # after the end of session, how long packets past it are watched for


def contradicted_end(end_sequence: int | None, packets: int) -> str:
    """What ``listen`` and ``run`` say of an end of session packets past it contradicted."""
    return (f"the end of session at sequence {end_sequence or 0:,} was contradicted by {packets:,} packets of "
            "the session past it (sent early, or spoofed?)")


def listen(line_a: tuple[str, int], line_b: tuple[str, int] | None, rerequest: tuple[str, int] | None,
           out, *, engine: str = "recvmmsg", session: bytes | str | None = None,
           start_sequence: int | None = 1, idle_timeout: float = 10.0, max_seconds: float | None = None,
           interface: str = "0.0.0.0", receiver_options: dict | None = None, on_progress=None,
           sockets: list | None = None, on_deliver=None, stop=None, ifname: str | None = None,
           queue: int = 0, cpu: int | None = None, engine_options: dict | None = None,
           on_ready=None, end_linger: float = END_LINGER_S) -> ListenResult:
    """Receive a MoldUDP64 feed until its end of session is seen and every message before
    it is delivered (or until ``idle_timeout`` s without a packet / ``max_seconds``).

    out: a binary file object (receives the BinaryFILE stream) or None.
    on_deliver: called with each ``Deliver`` event (``.data`` BinaryFILE-framed messages,
    ``.first_sequence``, ``.count``) before the buffer it views is reused: the hook for a ring.
    stop: a threading.Event that ends the loop when set.
    engine: "recvmmsg" (batched, compiled), "recv" (Python) or "tpacket" (a TPACKET_V3 ring per
    line on interface ``ifname``, lo for loopback addresses; needs CAP_NET_RAW) or "xdp" (an AF_XDP
    socket on ``ifname`` RX queue ``queue`` with an XDP program steering both lines into it; root).
    cpu: pin the receive loop (this process) to that core first. engine_options: more keywords for
    the engine (xdp: busy_poll microseconds, frames, mode "native"/"generic").
    sockets: already-open (A, B or None) receive sockets (tests open them before the publisher starts).
    on_ready: called with the list of line sockets once they are bound (readiness).
    end_linger: once the end of session is seen and everything before it delivered, the lines
    are watched this many seconds more: one datagram can say "end of session" (sent early, or
    by anyone who can reach the port), and packets of the session past it contradict it
    (``end_contradicted``; ``finished`` is then False). One heartbeat interval covers a quiet feed.
    On KeyboardInterrupt the result so far (``interrupted=True``) is attached to the
    exception as ``.result`` and the exception goes on.
    """
    if cpu is not None:
        from itchflow.hw.affinity import pin

        pin(cpu)
    opts = dict(receiver_options or {})
    receiver = MoldReceiver(session, start_sequence=start_sequence, requests=rerequest is not None, **opts)
    reader = make_reader(engine, ifname, **({"queue": queue, **(engine_options or {})} if engine == "xdp" else {}))
    batched = hasattr(reader, "read_batch")
    # Load the compiled kernels before the sockets exist: a sender that waits for the socket
    # (or a feed already running) would otherwise overflow it while they load.
    _warm_up(reader)
    if sockets is None:
        socks = [open_receiver(*line_a, interface=interface)]
        if line_b is not None:
            socks.append(open_receiver(*line_b, interface=interface))
    else:
        socks = [s for s in sockets if s is not None]
    req_sock = None
    if rerequest is not None:
        req_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        req_sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        _set_rcvbuf(req_sock, 4 << 20)
        req_sock.setblocking(False)
        # Connected: only the re-request server's datagrams are read as replies (a third party
        # could otherwise fill a hole with bytes of its own).
        req_sock.connect(rerequest)
    # what to poll for each line: its socket, or the packet ring that sees its datagrams
    if engine == "xdp":   # one AF_XDP socket carries both lines: each datagram's destination says which
        try:
            lines = {reader.open([s.getsockname() for s in socks]): (None, XDP_LINES)}
        except BaseException:
            for s in (socks if sockets is None else []) + ([req_sock] if req_sock is not None else []):
                s.close()
            raise
    else:
        attach = getattr(reader, "attach", None)
        lines = {(attach(s) if attach is not None else s.fileno()): (s, i) for i, s in enumerate(socks)}
    if req_sock is not None:
        lines[req_sock.fileno()] = (req_sock, LINE_REPLY)
    poller = select.poll()
    for fd in lines:
        poller.register(fd, select.POLLIN)
    poll = poller.poll
    if engine == "xdp":   # ready frames are seen in the ring itself: poll() only to sleep
        poll = reader.poll_function(poller, next(iter(lines)))
    latency = LatencyLog()
    lost: list = []
    start = time.monotonic()
    finished_at = None   # when the end of session was seen with everything before it delivered
    last_life = start
    life = _signs_of_life(receiver.stats)
    write = out.write if out is not None else None

    bypassed: dict[str, int] = {}   # what the line sockets hold that a tap engine never saw
    read_socks = (socks if engine not in ("xdp", "tpacket") else []) + ([req_sock] if req_sock is not None else [])

    def count_socket_drops() -> None:
        # the sockets this loop reads: what their full buffers turned away never reached it
        n = socket_drops(read_socks)
        if n:
            bypassed["socket_drops"] = n

    def result(interrupted=False):
        st = receiver.stats.to_dict()
        return ListenResult(st, latency.values(), list(receiver.malformed_log), lost,
                            receiver.finished and not st["after_end_of_session"], time.monotonic() - start, engine,
                            engine_stats={**getattr(reader, "info", {}), **getattr(reader, "final", {}), **bypassed},
                            interrupted=interrupted, end_sequence=receiver.end_sequence if receiver.ended else None)

    try:
        if on_ready is not None:
            on_ready(socks)
        while True:
            now_ns = time.monotonic_ns()
            deadline = receiver.next_deadline()
            wait_ms = 100
            if deadline is not None:
                wait_ms = max(0, min(wait_ms, -(-(deadline - now_ns) // 1_000_000)))
            ready = poll(wait_ms)
            for fd, _ in ready:
                sock, line = lines[fd]
                # Deliver views point into the reader's buffers: handle them before the next read.
                if line == XDP_LINES:   # runs of UMEM frames, given back when the next run is asked for
                    for rows, lengths, k, ln, rx in reader.runs():
                        _handle(receiver.receive_batch(rows, lengths, k, time.monotonic_ns(), ln, rx, reader.run_peer),
                                write, req_sock, latency, lost, on_deliver)
                elif batched:
                    n = reader.read_batch(sock)
                    if n:
                        sl = reader.slots
                        _handle(receiver.receive_batch(sl.bufs, sl.lengths, n, time.monotonic_ns(), line, sl.rx_ns,
                                                       sl.peer),
                                write, req_sock, latency, lost, on_deliver)
                else:
                    for view, rx in reader.read(sock):
                        _handle(receiver.receive(view, time.monotonic_ns(), line, rx or None, getattr(reader, "peer", None)),
                                write, req_sock, latency, lost, on_deliver)
            _handle(receiver.tick(time.monotonic_ns()), write, req_sock, latency, lost, on_deliver)
            if on_progress is not None:
                on_progress(receiver)
            if stop is not None and stop.is_set():
                break
            t = time.monotonic()
            if receiver.finished:
                if finished_at is None:
                    finished_at = t
                if (t - finished_at >= end_linger or receiver.stats.after_end_of_session
                        or (max_seconds is not None and t - start > max_seconds)):
                    break
                continue
            now_life = _signs_of_life(receiver.stats)
            if now_life != life:
                life, last_life = now_life, t
            if t - last_life > idle_timeout or (max_seconds is not None and t - start > max_seconds):
                break
        # Holes still open are lost, and packets held past them are delivered.
        _handle(receiver.close(), write, req_sock, latency, lost, on_deliver)
    except KeyboardInterrupt as e:
        _handle(receiver.close("still missing when interrupted"), write, req_sock, latency, lost,
                on_deliver)
        count_socket_drops()
        e.result = result(True)
        raise
    finally:
        # xdp steers the feed past the stack: whatever reached the sockets, it missed. tpacket
        # copies it, so the sockets hold the feed too: only a ring that saw none of it missed it
        if engine == "xdp" or (engine == "tpacket" and not reader.counters().get("ring_udp")):
            bypassed.update(stack_datagrams(socks))
        count_socket_drops()
        if hasattr(reader, "close"):
            reader.close()
        if sockets is None:
            for s in socks:
                s.close()
        if req_sock is not None:
            req_sock.close()
    return result()


def socket_drops(socks) -> int:
    """Datagrams the kernel turned away at these UDP sockets since they were opened (their
    receive buffers were full: the reader fell behind), by the "drops" column of
    /proc/net/udp and udp6 (this network namespace's) for the sockets' inodes; 0 when unknown.
    The tap engines count their rings' drops themselves; a socket's were said nowhere (probe
    27: 7% of a day gone, and only "the session did not reach its end")."""
    inodes = set()
    for s in socks:
        try:
            inodes.add(os.fstat(s.fileno()).st_ino)
        except (OSError, ValueError):   # closed
            pass
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f, None)                               # the header
                for line in f:
                    cols = line.split()
                    # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
                    if len(cols) >= 13 and cols[9].isdigit() and int(cols[9]) in inodes:
                        total += int(cols[12])
        except (OSError, ValueError):
            continue
    return total


def stack_datagrams(socks, limit: int = 1 << 20) -> dict[str, int]:
    """Datagrams the kernel's stack queued on the line sockets a tap engine never reads (up
    to ``limit``, read and counted): the feed's fragments, which the stack reassembles and
    the engines do not, or a feed that arrives on another interface than --ifname. Nothing
    was said of either: the loss was blamed on the missing re-request server."""
    n = 0
    for s in socks:
        s.setblocking(False)
        while n < limit:
            try:
                s.recv(1)
            except OSError:   # nothing more queued (BlockingIOError), or the socket's own error
                break
            n += 1
    return {"stack_datagrams": n} if n else {}


def warm_up(engine: str) -> None:
    """Load every compiled kernel ``listen`` uses with this engine (callers that start a sender
    first do this before, so that the first packets do not wait for compilation)."""
    _warm_up(make_reader(engine))


def _warm_up(reader) -> None:
    """Load the compiled kernels now, not on the first packet (that would be its latency)."""
    from itchflow.wire.moldudp64 import pack_header

    if isinstance(reader, TPacketRecv):
        from itchflow.sources.tpacket import warm_up as warm_walker
        warm_walker()
    if getattr(reader, "name", "") == "xdp":
        from itchflow.sources.xdp import warm_up as warm_xdp
        warm_xdp()
        reader = MmsgRecv()   # the re-request replies are read with recvmmsg: warm that below

    pkt = np.frombuffer(pack_header(b"WARMUP", 1, 1) + b"\x00\x01A", np.uint8)
    r = MoldReceiver(b"WARMUP")
    r.receive(pkt, 0)
    r.receive_batch(pkt[None, :].copy(), np.array([len(pkt)], np.int64), 1, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        for _ in reader.read(s):
            pass


def _signs_of_life(st) -> tuple:
    """What only the followed session's own valid packets move: junk, other sessions' packets and
    replayed duplicates do not keep an idle listener waiting."""
    return st.messages, st.heartbeats, st.end_of_session


LOST_LOG_LIMIT = 1000   # Lost events kept for the report (all are counted in stats["lost"])


def _handle(events, write, req_sock, latency, lost, on_deliver=None) -> None:
    for e in events:
        if isinstance(e, Deliver):
            if write is not None:
                write(memoryview(e.data))
            if on_deliver is not None:
                on_deliver(e)
            if e.rx_ns:
                latency.add(time.time_ns() - e.rx_ns)
        elif isinstance(e, Request):
            try:
                req_sock.send(e.packet)
            except OSError:
                pass  # the timeout re-sends it
        elif isinstance(e, Lost) and len(lost) < LOST_LOG_LIMIT:
            lost.append(e)
