"""Receive-path benchmark: the same queued datagrams drained by recv from Python, recv from
compiled code, batched recvmmsg from compiled code, and (with CAP_NET_RAW) a compiled walk of
the TPACKET_V3 ring the kernel filled with the same packets (mmap + polling: no system call
per packet), with the same work per packet (read the MoldUDP64 header and sum sequence +
count in a compiled kernel).

Each round queues ``packets`` datagrams on a loopback UDP socket (a large SO_RCVBUF holds
them all), then times only the drain. Methods alternate round by round so they share the
machine's state; the best round of each is reported (and the median).
"""

from __future__ import annotations

import socket
import time

import numpy as np
from numba import njit

from itchflow.hw.net_syscalls import (
    MSG_DONTWAIT,
    MmsgSlots,
    _recv,
    _voidptr,
    recvmmsg_batch,
)
from itchflow.wire.moldudp64 import HEADER_SIZE, pack_header, read_header


@njit(inline="always", nogil=True, cache=True)
def _work(buf, n):
    """The same work per packet on every path: read its MoldUDP64 header (wire.moldudp64)."""
    ok, seq, count = read_header(buf, 0, n)
    return seq + np.uint64(count) if ok else np.uint64(0)


@njit(nogil=True, cache=True)
def work(buf, n):
    """The per-packet work, callable from Python."""
    return _work(buf, n)


@njit(nogil=True, cache=True)
def drain_recv(fd, buf):
    """Compiled recv loop until the socket is empty: (packets, checksum)."""
    k = 0
    acc = np.uint64(0)
    while True:
        n = _recv(fd, _voidptr(buf.ctypes.data), buf.shape[0], MSG_DONTWAIT)
        if n < 0:
            break
        acc += _work(buf, n)
        k += 1
    return k, acc


@njit(nogil=True, cache=True)
def drain_recvmmsg(fd, hdrs, ctrl, lengths, rx_ns, bufs):
    """Compiled recvmmsg loop (batches of len(hdrs)) until empty: (packets, checksum)."""
    k = 0
    acc = np.uint64(0)
    while True:
        n = recvmmsg_batch(fd, hdrs, ctrl, lengths, rx_ns)
        if n <= 0:
            break
        for i in range(n):
            acc += _work(bufs[i], lengths[i])
        k += n
    return k, acc


def drain_python(sock, buf):
    """recv_into from Python, one datagram per call, the same compiled work per packet."""
    k = 0
    acc = 0
    recv_into = sock.recv_into
    while True:
        try:
            n = recv_into(buf)
        except BlockingIOError:
            break
        acc += int(work(buf, n))
        k += 1
    return k, acc


def _queue(sender, addr, datagrams) -> None:
    for d in datagrams:
        sender.sendto(d, addr)


def run(packets: int = 20_000, rounds: int = 5, size: int = 128, batch: int = 64, timestamps: bool = False,
        echo=print) -> dict:
    """Measure; returns {method: {ns_per_packet, packets_per_s, ...}} and prints figures."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 256 << 20)
    except OSError:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
    if timestamps:
        from itchflow.hw.net_syscalls import SO_TIMESTAMPNS
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = rx.getsockname()
    datagrams = [pack_header(b"BENCH", 1 + i * 3, 3) + bytes(size - HEADER_SIZE) for i in range(packets)]
    expected = sum(1 + i * 3 + 3 for i in range(packets))
    buf = np.zeros(2048, np.uint8)
    slots = MmsgSlots(batch, 2048)
    fd = rx.fileno()

    def py():
        return drain_python(rx, buf)

    def c_recv():
        return drain_recv(fd, buf)

    def c_mmsg():
        return drain_recvmmsg(fd, slots.hdrs, slots.ctrl, slots.lengths, slots.rx_ns, slots.bufs)

    methods = {"recv (Python)": py, "recv (compiled)": c_recv, f"recvmmsg x{batch} (compiled)": c_mmsg}
    ring = _open_tpacket(addr[1], echo)
    if ring is not None:
        methods["TPACKET_V3 ring walk (compiled)"] = ring.drain_sum
    # warm up: compile / load every kernel, and make sure the buffer holds a whole round
    for name, fn in methods.items():
        _queue(tx, addr, datagrams[:1000])
        time.sleep(0.01)
        fn()
    times: dict[str, list[float]] = {m: [] for m in methods}
    incomplete = 0
    for _ in range(rounds):
        for name, fn in methods.items():
            if ring is not None:    # every method's datagrams also land in the packet ring, and
                ring.drain_sum()    # the ring's also in the socket: start each round with both empty
                drain_recv(fd, buf)
            _queue(tx, addr, datagrams)
            time.sleep(0.02)
            t = time.perf_counter_ns()
            k, acc = fn()
            dt = time.perf_counter_ns() - t
            if k != packets or int(acc) != expected:
                incomplete += 1     # the kernel dropped some: the figure would not be comparable
                continue
            times[name].append(dt / k)
    rx.close()
    tx.close()
    if ring is not None:
        ring.close()
    result = {}
    for name, ts in times.items():
        if not ts:
            continue
        best, med = min(ts), float(np.median(ts))
        result[name] = {"ns_per_packet": best, "median_ns_per_packet": med, "packets_per_s": 1e9 / best,
                        "rounds": len(ts)}
    base = result.get("recv (Python)", {}).get("ns_per_packet")
    echo(f"loopback UDP, {packets:,} queued datagrams of {size} bytes per round, {rounds} rounds "
         f"(best / median), same compiled header read per packet")
    for name, r in result.items():
        ratio = f"{base / r['ns_per_packet']:5.2f}x vs recv (Python)" if base else ""
        echo(f"  {name:<32} {r['ns_per_packet']:8.0f} ns/packet  (median {r['median_ns_per_packet']:6.0f})  "
             f"{r['packets_per_s'] / 1e6:6.2f} M packets/s  {ratio}")
    if incomplete:
        echo(f"  ({incomplete} rounds discarded: the socket buffer did not hold every datagram)")
    if "TPACKET_V3 ring walk (compiled)" in result:
        echo("  (not like for like: the kernel copies each datagram into the TPACKET_V3 ring as it is sent, "
             "before the clock starts; the recv paths pay their copy to user space inside it. What the ring "
             "saves end to end is the system call a packet, not the copy)")
    return result


def _open_tpacket(port: int, echo):
    """A TPACKET_V3 ring on lo for the benchmark, or None (with the reason) where not allowed."""
    try:
        from itchflow.sources.tpacket import TPacketV3

        # blocks retire every millisecond while the round is queued: many of them, each part full
        return TPacketV3("lo", port=port, block_size=1 << 18, block_nr=512)
    except (OSError, AttributeError) as e:
        echo(f"  (TPACKET_V3 ring not measured: {e}; it needs Linux and CAP_NET_RAW)")
        return None


def run_receiver(packets: int = 20_000, per_packet: int = 30, batch: int = 64, rounds: int = 3, echo=print) -> dict:
    """The MoldUDP64 state machine alone, A and B lines carrying the same packets:
    ``receive`` packet by packet (Python) vs ``receive_batch`` (compiled in-order runs)."""
    from itchflow.protocol.mold.receiver import LINE_A, LINE_B, MoldReceiver

    body = b"".join(b"\x00\x13D" + bytes(18) for _ in range(per_packet))   # 30 x 21-byte framed messages
    slot = HEADER_SIZE + len(body)
    n_batches = packets // batch
    bufs = np.zeros((n_batches, batch, slot), np.uint8)
    for b in range(n_batches):
        for i in range(batch):
            seq = 1 + (b * batch + i) * per_packet
            bufs[b, i] = np.frombuffer(pack_header(b"BENCH", seq, per_packet) + body, np.uint8)
    lengths = np.full(batch, slot, np.int64)
    total = 2 * n_batches * batch
    best = {"receive (per packet)": float("inf"), f"receive_batch x{batch}": float("inf")}
    for _ in range(rounds):
        r = MoldReceiver(b"BENCH")
        t = time.perf_counter_ns()
        for b in range(n_batches):
            for line in (LINE_A, LINE_B):
                for i in range(batch):
                    r.receive(bufs[b, i], 0, line)
        best["receive (per packet)"] = min(best["receive (per packet)"], (time.perf_counter_ns() - t) / total)
        assert r.stats.messages == n_batches * batch * per_packet
        r = MoldReceiver(b"BENCH")
        t = time.perf_counter_ns()
        for b in range(n_batches):
            for line in (LINE_A, LINE_B):
                r.receive_batch(bufs[b], lengths, batch, 0, line)
        best[f"receive_batch x{batch}"] = min(best[f"receive_batch x{batch}"], (time.perf_counter_ns() - t) / total)
        assert r.stats.messages == n_batches * batch * per_packet
    base = best["receive (per packet)"]
    echo(f"MoldUDP64 receiver state machine, {total:,} packets ({per_packet} messages each, A and B lines), "
         f"best of {rounds}")
    for name, ns in best.items():
        echo(f"  {name:<26} {ns:8.0f} ns/packet  {1e9 / ns / 1e6:6.2f} M packets/s  {base / ns:5.2f}x")
    return {k: {"ns_per_packet": v} for k, v in best.items()}


# ---------------------------------------------------------------- over a veth pair (root)
def run_veth(packets: int = 16_384, rounds: int = 5, size: int = 128, batch: int = 64, busy_poll_us: int = 20,
             echo=print) -> dict:
    """The receive paths over a veth pair between two network namespaces (root; nothing leaves
    the machine): recv from Python, recv compiled, recvmmsg compiled, the TPACKET_V3 ring walk
    and the AF_XDP ring walk (copy mode, without and with busy polling), on the same datagrams
    with the same compiled work per packet.

    Each round queues ``packets`` datagrams from namespace a, then times the drain in namespace
    b: wall ns per packet, packets/s, the draining thread's CPU per packet (its thread CPU
    clock) and the system calls it made per packet, counted by the kernel (the
    raw_syscalls:sys_enter tracepoint on that thread), not assumed. The AF_XDP socket takes
    its own port (its program redirects only that one), so the other paths see the ordinary
    kernel path on the same interface.
    """
    import socket as _socket

    from itchflow.hw.bpf_syscalls import SyscallCounter
    from itchflow.sources.netns import VethPair, available
    from itchflow.sources.xdp import (
        SO_BUSY_POLL,
        SO_BUSY_POLL_BUDGET,
        SO_PREFER_BUSY_POLL,
        XdpError,
        XdpSocket,
        drain_sum as xdp_drain,
        warm_up as xdp_warm_up,
    )

    why = available()
    if why:
        echo(f"  (veth measurement skipped: {why})")
        return {}
    frames = 1 << max(packets - 1, 1).bit_length()
    counter = SyscallCounter.open()
    if counter is None:
        echo(f"  (system calls not counted: {SyscallCounter.why})")
    xdp_warm_up()
    port, xport = 35001, 35002
    result: dict = {}
    with VethPair("bench") as net:
        b = net.address("b")
        with net.inside("a"):
            tx = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
        with net.inside("b"):
            rx = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
            try:
                rx.setsockopt(_socket.SOL_SOCKET, getattr(_socket, "SO_RCVBUFFORCE", 33), 256 << 20)
            except OSError:
                rx.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 256 << 20)
            rx.bind((b, port))
            rx.setblocking(False)
            ring = None
            try:
                from itchflow.sources.tpacket import TPacketV3

                ring = TPacketV3(net.link["b"], port=port, block_size=1 << 18, block_nr=256)
            except OSError as e:
                echo(f"  (TPACKET_V3 not measured: {e})")
            try:
                xsk = XdpSocket(net.link["b"], [(b, xport)], frames=frames, mode="auto")
            except XdpError as e:
                xsk = None
                echo(f"  (AF_XDP not measured: {e})")
        fd = rx.fileno()
        buf = np.zeros(2048, np.uint8)
        slots = MmsgSlots(batch, 2048)
        datagrams = [pack_header(b"BENCH", 1 + i * 3, 3) + bytes(size - HEADER_SIZE) for i in range(packets)]
        expected = sum(1 + i * 3 + 3 for i in range(packets))

        def busy(on: bool) -> None:
            for opt, v in ((SO_PREFER_BUSY_POLL, 1), (SO_BUSY_POLL, busy_poll_us), (SO_BUSY_POLL_BUDGET, batch)):
                try:
                    xsk.sock.setsockopt(_socket.SOL_SOCKET, opt, v if on else 0)
                except OSError:
                    pass

        def xdp_plain():
            return xdp_drain(xsk.cfg, xsk.rx, xsk.fr, xsk.umem, xsk.state, xport, batch, False)

        def xdp_busy():
            return xdp_drain(xsk.cfg, xsk.rx, xsk.fr, xsk.umem, xsk.state, xport, batch, True)

        methods = {"recv (Python)": (lambda: drain_python(rx, buf), port),
                   "recv (compiled)": (lambda: drain_recv(fd, buf), port),
                   f"recvmmsg x{batch} (compiled)": (lambda: drain_recvmmsg(fd, slots.hdrs, slots.ctrl, slots.lengths,
                                                                            slots.rx_ns, slots.bufs), port)}
        if ring is not None:
            methods["TPACKET_V3 ring walk (compiled)"] = (ring.drain_sum, port)
        if xsk is not None:
            methods["AF_XDP copy, ring walk (compiled)"] = (xdp_plain, xport)
            methods[f"AF_XDP copy + busy poll {busy_poll_us} us"] = (xdp_busy, xport)

        def empty() -> None:
            if ring is not None:
                ring.drain_sum()
            drain_recv(fd, buf)
            if xsk is not None:
                xdp_plain()

        for name, (fn, p) in methods.items():      # warm up: compile / load every kernel
            for d in datagrams[:256]:
                tx.sendto(d, (b, p))
            time.sleep(0.02)
            fn()
        base = 0
        if counter is not None:
            counter.start()
            base = counter.stop()                   # the disable ioctl itself is counted: subtract it
        rows: dict[str, list] = {m: [] for m in methods}
        incomplete = 0
        for _ in range(rounds):
            for name, (fn, p) in methods.items():
                empty()
                if "busy poll" in name:
                    busy(True)
                for d in datagrams:
                    tx.sendto(d, (b, p))
                time.sleep(0.03)
                if counter is not None:
                    counter.start()
                c0 = time.thread_time_ns()
                t = time.perf_counter_ns()
                k, acc = fn()
                dt = time.perf_counter_ns() - t
                cpu = time.thread_time_ns() - c0
                calls = counter.stop() - base if counter is not None else -1
                if "busy poll" in name:
                    busy(False)
                if k != packets or int(acc) != expected:
                    incomplete += 1
                    continue
                rows[name].append((dt / k, cpu / k, calls / k if calls >= 0 else float("nan")))
        xdp_info = dict(xsk.info) if xsk is not None else {}
        xdp_counters = xsk.counters() if xsk is not None else {}
        for s in (tx, rx):
            s.close()
        if ring is not None:
            ring.close()
        if xsk is not None:
            xsk.close()
    for name, rs in rows.items():
        if not rs:
            continue
        a = np.array(rs)
        best = int(np.argmin(a[:, 0]))
        result[name] = {"ns_per_packet": float(a[best, 0]), "median_ns_per_packet": float(np.median(a[:, 0])),
                        "packets_per_s": 1e9 / float(a[best, 0]), "cpu_ns_per_packet": float(np.median(a[:, 1])),
                        "syscalls_per_packet": float(np.median(a[:, 2])), "rounds": len(rs)}
    echo(f"veth pair between two namespaces, {packets:,} queued datagrams of {size} bytes per round, "
         f"{rounds} rounds (best / median), same compiled header read per packet")
    if xdp_info:
        echo(f"  AF_XDP: {xdp_info.get('copy_mode')} mode, {xdp_info.get('xdp_mode')} XDP, UMEM on "
             f"{xdp_info.get('umem_pages')}; kernel counters {_nonzero(xdp_counters)}")
    ref = result.get("recv (compiled)", {}).get("ns_per_packet")
    for name, r in result.items():
        ratio = f"{ref / r['ns_per_packet']:6.1f}x recv (compiled)" if ref else ""
        echo(f"  {name:<36} {r['ns_per_packet']:7.0f} ns/packet (median {r['median_ns_per_packet']:6.0f})  "
             f"{r['packets_per_s'] / 1e6:6.2f} M packets/s  CPU {r['cpu_ns_per_packet']:6.0f} ns/packet  "
             f"{r['syscalls_per_packet']:6.3f} syscalls/packet  {ratio}")
    if incomplete:
        echo(f"  ({incomplete} rounds discarded: not every datagram was queued)")
    if counter is not None:
        counter.close()
    return {"veth": result, "xdp": {**xdp_info, **xdp_counters}}


def _nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v and k.startswith("xdp_")} or "all zero (no drops)"


def run_listen_veth(messages: int = 200_000, pps: float = 50_000, busy_poll_us: int = 50,
                    engines=("recvmmsg", "tpacket", "xdp", "xdp+busy"), echo=print) -> dict:
    """The whole MoldUDP64 engine in steady state over a veth pair: a generated day published
    from namespace a (A and B lines, paced at ``pps`` per line), ``listen`` in namespace b with
    each engine. Counted on the receiving thread from its first loop round to the end of
    session: system calls per packet (the kernel's tracepoint count), CPU per packet, and what
    the engine reports of itself. "xdp+busy": the xdp engine spinning on its ring up to
    ``busy_poll_us`` before it sleeps in poll() (with SO_PREFER_BUSY_POLL / SO_BUSY_POLL set)."""
    import multiprocessing

    from itchflow.hw.bpf_syscalls import SyscallCounter
    from itchflow.protocol.mold.feed import MoldFeed
    from itchflow.sim.generator import generate_day
    from itchflow.sources.mold_sender import bind_rerequest, publish
    from itchflow.sources.netns import VethPair, available, setns
    from itchflow.sources.udp import listen

    why = available()
    if why:
        echo(f"  (listen over veth skipped: {why})")
        return {}
    counter = SyscallCounter.open()
    feed = MoldFeed(generate_day(messages, 1, stocks=100), "BENCH", 1400)
    out: dict = {}
    with VethPair("blst") as net:
        b = net.address("b")
        line_a, line_b = (b, 37001), (b, 37002)
        rerequest = (net.address("a"), 37003)
        ctx = multiprocessing.get_context("fork")
        for engine in engines:
            # the publisher is another process (a thread would share our GIL: its hand-offs are
            # futex calls on the receiving thread, which would be counted as the receiver's)
            running = ctx.Event()

            def sender():
                setns(f"/run/netns/{net.ns['a']}")
                rs = bind_rerequest(*rerequest)
                if running.wait(120):
                    publish(feed, line_a, line_b, rerequest=rs, pps=pps, linger=1.0)

            first = {}

            def progress(receiver):
                if not first:
                    first["cpu"] = time.thread_time_ns()
                    first["t"] = time.perf_counter_ns()
                    if counter is not None:
                        counter.start()
                    running.set()

            t = ctx.Process(target=sender, daemon=True)
            t.start()
            with net.inside("b"):
                try:
                    res = listen(line_a, line_b, rerequest, None, engine=engine.split("+")[0],
                                 session="BENCH", idle_timeout=10, max_seconds=120, on_progress=progress,
                                 end_linger=0,   # our own sender on a private link: its end is the end
                                 ifname=net.link["b"],
                                 engine_options={"busy_poll": busy_poll_us} if engine == "xdp+busy" else None)
                except (OSError, RuntimeError) as e:
                    echo(f"  ({engine} not measured: {e})")
                    running.set()
                    t.join(60)
                    continue
            calls = counter.stop() if counter is not None and first else -1
            cpu = time.thread_time_ns() - first.get("cpu", time.thread_time_ns())
            wall = time.perf_counter_ns() - first.get("t", time.perf_counter_ns())
            t.join(60)
            s = res.stats
            pk = max(s["packets"], 1)
            out[engine] = {"finished": res.finished, "packets": s["packets"], "messages": s["messages"],
                           "syscalls_per_packet": calls / pk if calls >= 0 else float("nan"),
                           "cpu_ns_per_packet": cpu / pk, "wall_s": wall / 1e9,
                           "engine": {k: v for k, v in res.engine_stats.items() if not k.startswith("xdp_tx")}}
    if counter is not None:
        counter.close()
    echo(f"MoldUDP64 listen over a veth pair, steady state: {messages:,} messages published on A and B at "
         f"{pps:,.0f} packets/s per line; counted on the receiving thread from its first loop round")
    for engine, r in out.items():
        echo(f"  {engine:<10} {r['packets']:7,} packets  {r['syscalls_per_packet']:6.3f} syscalls/packet  "
             f"CPU {r['cpu_ns_per_packet']:7.0f} ns/packet  finished={r['finished']}")
    return {"listen_veth": out}
