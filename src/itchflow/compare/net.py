"""The network rows: UDP recv and recvmmsg (compiled), TPACKET_V3, AF_XDP, and the hybrid
(TPACKET_V3 -> shared-memory ring -> books in another process).

A sender process and a receiver process, each in its own network namespace joined by a veth
pair (``itchflow.sources.netns``, removed afterwards) or, where that is not possible, both on
loopback. The parent drives three phases per row, all on the same day as the local rows:

  flat      the sender queues the whole day while the receiver waits; then the receiver
            drains it into the books flat out (throughput, CPU, system calls, context
            switches, books). Nothing competes with the receiver for the CPU meanwhile.
  paced     the day's prefix sent at ``rate`` messages/s: latency from the sender's stamp
            (CLOCK_MONOTONIC just before sendmsg) to the packet's messages applied to the book
  burst     the same prefix sent back to back while the receiver runs: latency with queueing

The receiving thread's system calls are counted by perf attached to its thread id; its own
counters (calls to recv / recvmmsg / poll) are the cross-check.
"""

from __future__ import annotations

import gc
import os
import select
import socket
import threading
import time

import numpy as np
from numba import njit

from itchflow.compare.children import how_it_ended, start_child
from itchflow.compare.digest import ready_books
from itchflow.compare.measure import SyscallCounter, this_thread
from itchflow.ring.liveness import pid_alive
from itchflow.compare.row import Row, latency
from itchflow.hw.net_syscalls import recv_one

RING_SPIN_NS = 200_000      # a ring-walking reader looks this long before it sleeps in poll()
SESSION = {"warm": b"CMPWARM", "flat": b"CMPFLAT", "paced": b"CMPPACED", "burst": b"CMPBURST"}
FLAT_RCVBUF = 1 << 30          # the whole day queued in the socket (SO_RCVBUFFORCE, root)
PHASE_TIMEOUT = 120.0


class NotRun(RuntimeError):
    """The row cannot run here; the message says why (a RuntimeError: a caller that asked for
    it outright, ``--net veth``, reports it as an error)."""


# ---- where the packets travel ------------------------------------------------------------------

class Lab:
    """Sender and receiver endpoints: ``veth`` (two namespaces, the netns helper) or ``loopback``."""

    kind = "loopback"
    recv_addr = send_addr = "127.0.0.1"
    recv_ifname = "lo"

    def enter_receiver(self) -> None:
        """Called in the receiver process before it opens anything."""

    def enter_sender(self) -> None:
        """Called in the sender process before it opens anything."""

    def describe(self) -> str:
        return "loopback (127.0.0.1, interface lo), sender and receiver in separate processes"

    def close(self) -> None:
        pass


class VethLab(Lab):
    """Two namespaces joined by a veth pair, made and removed by ``itchflow.sources.netns``:
    the sender in namespace a, the receiver in namespace b."""

    kind = "veth"

    TAG = "cmp"

    def __init__(self, netns):
        self.netns = netns
        netns.remove_stale(self.TAG)   # a SIGKILLed run's, or one whose pid this process now has
        self.pair = netns.VethPair(self.TAG).create()
        self.recv_addr, self.send_addr = self.pair.address("b"), self.pair.address("a")
        self.recv_ifname = self.pair.link["b"]

    def enter_receiver(self) -> None:
        self.netns.setns(f"/run/netns/{self.pair.ns['b']}")

    def enter_sender(self) -> None:
        self.netns.setns(f"/run/netns/{self.pair.ns['a']}")

    def describe(self) -> str:
        p = self.pair
        return (f"veth pair {p.link['a']} ({self.send_addr}) -> {p.link['b']} ({self.recv_addr}) between "
                f"network namespaces {p.ns['a']} and {p.ns['b']}")

    def close(self) -> None:
        self.pair.remove()


def netns_module():
    """The namespace helper, or None when this build does not have it."""
    try:
        from itchflow.sources import netns
    except ImportError:
        return None
    return netns


def open_lab(net: str) -> Lab:
    """net: "veth", "loopback" or "auto" (veth when root and the helper is in this build)."""
    if net not in ("veth", "loopback", "auto"):
        raise ValueError("net must be veth, loopback or auto")
    if net == "loopback":
        return Lab()
    why = veth_unavailable()
    if why is None:
        return VethLab(netns_module())
    if net == "veth":
        raise NotRun(why)
    lab = Lab()
    lab.veth_reason = why
    return lab


def veth_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (run as root for the veth rows)"
    mod = netns_module()
    if mod is None:
        return "not available in this build (itchflow.sources.netns, the namespace helper, is missing)"
    return mod.available() if hasattr(mod, "available") else None


# ---- receive engines: fill slot rows with datagrams, count the calls they make -----------------

@njit(nogil=True, cache=True)
def recv_into_slots(fd, bufs, lengths, calls):
    """recv one datagram per call into bufs rows until the socket is empty or the rows full."""
    n = 0
    while n < bufs.shape[0]:
        calls[0] += 1
        k = recv_one(fd, bufs[n])
        if k < 0:
            break
        lengths[n] = k
        n += 1
    return n


class RecvReader:
    """Compiled recv, one datagram per system call. Every reader yields ``batches()`` of
    (rows, lengths, n, rx_ns) while datagrams are ready and stops when none is."""

    def __init__(self, sock, batch: int = 64):
        from itchflow.hw.net_syscalls import MmsgSlots

        self.sock, self.slots = sock, MmsgSlots(batch, 2048)
        self.calls = np.zeros(1, np.int64)
        self.counters: dict = {}

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_batch(self) -> int:
        return int(recv_into_slots(self.sock.fileno(), self.slots.bufs, self.slots.lengths, self.calls))

    def batches(self):
        s = self.slots
        while True:
            n = self.read_batch()
            if n <= 0:
                return
            yield s.bufs, s.lengths, n, s.rx_ns

    def close(self) -> None:
        pass


class MmsgReader(RecvReader):
    """Compiled recvmmsg, up to 64 datagrams per system call (itchflow.hw.net_syscalls)."""

    def read_batch(self) -> int:
        self.calls[0] += 1
        return self.slots.receive(self.sock.fileno())


class TPacketReader(RecvReader):
    """A TPACKET_V3 ring on the receiving interface (itchflow.sources.tpacket), walked in
    compiled code; no system call while blocks are ready."""

    def __init__(self, sock, ifname: str, *, flat: bool, frames: int = 0, batch: int = 64):
        from itchflow.sources.tpacket import TPacketV3

        super().__init__(sock, batch)
        host, port = sock.getsockname()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)   # the tap's copy is never read
        # flat: room for the whole queued day; otherwise the ring `listen --engine tpacket` uses
        size = dict(block_size=1 << 18, block_nr=1024, retire_ms=2) if flat else {}
        self.ring = TPacketV3(ifname, port=port, address=host if host != "0.0.0.0" else "", **size)

    def fileno(self) -> int:
        return self.ring.fileno()

    def read_batch(self) -> int:
        s = self.slots
        return self.ring.read_into(s.bufs, s.lengths, s.rx_ns)

    def close(self) -> None:
        self.counters = self.ring.stats()
        self.ring.close()


def xdp_module():
    try:
        from itchflow.sources import xdp
    except ImportError:
        return None
    return xdp


class XdpReader(RecvReader):
    """An AF_XDP socket on the receiving interface (``itchflow.sources.xdp.XdpRecv``): runs of
    ready frames are handed over as views of the UMEM (no copy) and recycled after."""

    def __init__(self, sock, ifname: str, *, flat: bool, frames: int = 0, batch: int = 64):
        super().__init__(sock, batch)
        xdp = xdp_module()
        host, port = sock.getsockname()
        self.x = xdp.XdpRecv(ifname=ifname, batch=batch, frames=max(4096, frames) if flat else 4096)
        self.fd = self.x.open([(host, port)])

    def fileno(self) -> int:
        return self.fd

    def read_batch(self) -> int:
        return 0

    def batches(self):
        for rows, lengths, k, _line, rx_ns in self.x.runs():
            yield rows, lengths, k, rx_ns

    def close(self) -> None:
        self.counters = self.x.counters()
        self.x.close()


ENGINES = {"udp_recv": RecvReader, "udp_recvmmsg": MmsgReader, "tpacket": TPacketReader, "af_xdp": XdpReader}


def _open_reader(key: str, sock, lab: Lab, flat: bool, frames: int):
    cls = ENGINES[key]
    if key in ("tpacket", "af_xdp"):
        return cls(sock, lab.recv_ifname, flat=flat, frames=frames)
    return cls(sock)


def _drain_socket(sock) -> None:
    buf = np.zeros(65536, np.uint8)
    while recv_one(sock.fileno(), buf) >= 0:
        pass


def receive_into_books(reader, receiver, books, last_sequence: int, timeout: float, spin_ns: int = 0):
    """Receive until every message up to last_sequence is applied (or ``timeout`` s pass with
    nothing new). Nothing in the loop makes a system call of its own (the thread-CPU clock is one:
    it is read only around the whole window). spin_ns: for readers that find data by reading
    memory (a ring the kernel fills), keep looking that long before sleeping in poll(): the busy
    polling of the kernel-bypass model, so a ring that the kernel is still filling (softirq
    behind on a loaded machine) costs no system call per packet. Returns (packets, polls, log of
    (first sequence, count, applied ns))."""
    from itchflow.protocol.mold.receiver import LINE_A, Deliver

    poller = select.poll()
    poller.register(reader.fileno(), select.POLLIN)
    log_first, log_count, log_at = [], [], []
    packets = polls = 0
    last_progress = time.monotonic()
    idle_since = 0
    while receiver.next_sequence is None or receiver.next_sequence <= last_sequence:
        got = 0
        for rows, lengths, n, rx_ns in reader.batches():
            got += n
            for e in receiver.receive_batch(rows, lengths, n, time.monotonic_ns(), LINE_A, rx_ns):
                if isinstance(e, Deliver):
                    books.apply(e.data, e.first_sequence)
                    log_first.append(e.first_sequence)
                    log_count.append(e.count)
                    log_at.append(time.monotonic_ns())
        if got == 0:
            if spin_ns:
                now_ns = time.monotonic_ns()    # vDSO: no system call
                if not idle_since:
                    idle_since = now_ns
                if now_ns - idle_since < spin_ns:
                    continue
            polls += 1
            poller.poll(10)
            now = time.monotonic()
            receiver.tick(time.monotonic_ns())
            if now - last_progress > timeout:
                break
            continue
        packets += got
        idle_since = 0
        last_progress = time.monotonic()
    return packets, polls, (np.array(log_first, np.int64), np.array(log_count, np.int64),
                            np.array(log_at, np.int64))


# ---- the two processes ----------------------------------------------------------------------

def _feed(path: str, session: bytes):
    from itchflow.protocol.mold.feed import MoldFeed
    from itchflow.sources.chunk import map_file

    return MoldFeed(map_file(path), session)


def _receiver_main(key: str, lab: Lab, day_paths: dict, conn) -> None:
    """The receiving process: one socket, then one reader + books per phase the parent asks for."""
    from itchflow.book.books import Books
    from itchflow.compare.digest import book_state, digest
    from itchflow.protocol.mold.receiver import MoldReceiver
    from itchflow.sources.udp import open_receiver

    phase = "setup"
    try:
        lab.enter_receiver()
        sock = open_receiver(lab.recv_addr, 0, rcvbuf=FLAT_RCVBUF, timestamps=False)
        from itchflow.sources.udp import warm_up as warm_udp

        warm_udp("recvmmsg")                      # the MoldUDP64 in-order kernels and recvmmsg
        if key == "af_xdp":
            xdp_module().warm_up()                # its ring walk, and the in-order path on UMEM rows
        warm = Books()
        warm.apply(np.zeros(0, np.uint8))
        conn.send(("port", sock.getsockname()[1], threading.get_native_id()))
        while True:
            cmd = conn.recv()
            if cmd[0] == "quit":
                break
            phase, last_sequence, frames = cmd[1], cmd[2], cmd[3]
            # the last phase's reader must be gone before the next binds the same queue: an
            # AF_XDP socket stays bound while any view of its mapped rings lives
            reader = receiver = books = log = None
            gc.collect()
            _drain_socket(sock)
            reader = _open_reader(key, sock, lab, flat=phase == "flat", frames=frames)
            books = ready_books()
            receiver = MoldReceiver(SESSION[phase], requests=False)
            for _ in reader.batches():                # load its kernels now (nothing is queued yet)
                pass
            before = this_thread()                    # its /proc reads before the count starts
            conn.send(("ready",))
            conn.recv()                               # go (perf is counting from here)
            before.cpu_ns = time.thread_time_ns()
            t0 = time.perf_counter()
            packets, polls, log = receive_into_books(reader, receiver, books, last_sequence, spin_ns=(
                                                     RING_SPIN_NS if key in ("tpacket", "af_xdp") else 0),
                                                     timeout=10.0 if phase == "flat" else 5.0)
            seconds = time.perf_counter() - t0
            cpu = time.thread_time_ns()
            conn.send(("drained",))                   # the parent stops the count, then answers
            conn.recv()
            after = this_thread()
            after.cpu_ns = cpu
            usage = after - before
            reader.close()
            out = {"packets": packets, "polls": polls, "seconds": seconds, "usage": usage,
                   "reader_calls": int(reader.calls[0]), "messages": books.messages,
                   "mold": receiver.stats.to_dict(), "reader_counters": reader.counters}
            if phase == "flat":
                out.update(digest=digest(books), state=book_state(books))
            else:
                out["log"] = log
            conn.send(("done", out))
    except BaseException as e:  # noqa: BLE001 - sent to the parent, which reports it in the row
        try:
            conn.send(("error", f"{phase} phase: {type(e).__name__}: {e}"))
        except OSError:
            pass


def _sender_main(lab: Lab, conn) -> None:
    """The sending process: sends a phase's packets when told, with a stamp per packet."""
    try:
        lab.enter_sender()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        conn.send(("ready",))
        while True:
            cmd = conn.recv()
            if cmd[0] == "quit":
                break
            if cmd[0] == "eos":
                _, path, phase, addr = cmd
                eos = _feed(path, SESSION[phase]).end_of_session()
                for _ in range(3):
                    s.sendto(eos, addr)
                conn.send(("sent", 3, None, None))
                continue
            if cmd[0] == "prime":
                # packet 0 again and again until the receiver has applied it (it then drops
                # the repeats as duplicates): in-band proof that everything on its side is up
                _, path, phase, addr = cmd
                h, b = _feed(path, SESSION[phase]).packet(0)
                sent = 0
                while not conn.poll(0.002):
                    s.sendmsg([h, b], [], 0, addr)
                    sent += 1
                conn.recv()
                conn.send(("sent", sent, None, None))
                continue
            _, path, phase, addr, rate, start = cmd
            feed = _feed(path, SESSION[phase])
            n = feed.n_packets
            stamps = np.zeros(n, np.int64)
            seqs = feed.sequences
            t0 = time.monotonic_ns()
            for k in range(start, n):
                if rate:
                    due = t0 + int((int(seqs[k]) - 1) / rate * 1e9)
                    while True:
                        left = due - time.monotonic_ns()
                        if left <= 0:
                            break
                        if left > 400_000:
                            time.sleep((left - 200_000) / 1e9)
                h, b = feed.packet(k)
                stamps[k] = time.monotonic_ns()
                s.sendmsg([h, b], [], 0, addr)
            conn.send(("sent", n - start, seqs[start:n].copy(), stamps[start:]))
        s.close()
    except BaseException as e:  # noqa: BLE001
        try:
            conn.send(("error", f"{type(e).__name__}: {e}"))
        except OSError:
            pass


class _Peer:
    """A child process and the parent's end of its pipe."""

    def __init__(self, day, target, args, name: str, daemon: bool = True):
        self.proc, self.conn = start_child(day, target, args, name, daemon)

    def expect(self, what: str, timeout: float = PHASE_TIMEOUT):
        try:
            if not self.conn.poll(timeout):
                raise RuntimeError(f"{self.proc.name}: no {what!r} within {timeout:.0f} s")
            msg = self.conn.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"waiting for {what!r}: {how_it_ended(self.proc)}") from None
        if msg[0] == "error":
            raise RuntimeError(f"{self.proc.name}: {msg[1]}")
        if msg[0] != what:
            raise RuntimeError(f"{self.proc.name}: expected {what!r}, got {msg[0]!r}")
        return msg

    def send(self, msg: tuple) -> None:
        try:
            self.conn.send(msg)
        except OSError:   # BrokenPipeError: the child is gone
            raise RuntimeError(f"sending {msg[0]!r}: {how_it_ended(self.proc)}") from None

    def stop(self) -> None:
        try:
            self.conn.send(("quit",))
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def _why_not(key: str, lab: Lab) -> str | None:
    if os.geteuid() != 0:
        return ("network rows need root (namespaces and a veth pair; SO_RCVBUFFORCE to queue the day; "
                "CAP_NET_RAW / CAP_BPF for the packet rings)")
    if key in ("af_xdp", "hybrid_xdp"):
        if xdp_module() is None:
            return "not available in this build (itchflow.sources.xdp, the AF_XDP source, is missing)"
        if lab.kind != "veth":
            why = getattr(lab, "veth_reason", None) or f"--net {lab.kind} was asked for"
            return f"AF_XDP runs on the veth pair between namespaces only: {why}"
        if key == "hybrid_xdp":
            from itchflow.pipeline.sources import check_source, parse_source

            try:
                check_source(parse_source("mold://127.0.0.1:1?engine=xdp&ifname=lo"))
            except ValueError:
                return "not available in this build (the pipeline's mold:// source has no engine=xdp)"
    return None


def run_row(key: str, day, lab: Lab) -> Row:
    why = _why_not(key, lab)
    if why:
        raise NotRun(why)
    if key in ("hybrid", "hybrid_xdp"):
        return hybrid(day, lab, key)
    row = Row(key, transport=lab.describe())
    rx = _Peer(day, _receiver_main, (key, lab, {}), f"compare-receiver-{key}")
    tx = _Peer(day, _sender_main, (lab,), "compare-sender")
    try:
        _, port, tid = rx.expect("port", 60)
        tx.expect("ready", 60)
        addr = (lab.recv_addr, port)
        # warm: a few packets through the very reader and receiver types first, so that nothing
        # compiled on first use (a view type, a kernel) is loaded inside a measured window
        rx.send(("phase", "warm", day.warm_messages, 0))
        rx.expect("ready")
        rx.send(("go",))
        tx.send(("send", day.warm_path, "warm", addr, None, 0))
        tx.expect("sent")
        rx.expect("drained")
        rx.send(("ok",))
        rx.expect("done")
        # flat: queue the whole day, then drain it with the counters on
        frames = 1 << max(12, int(os.path.getsize(day.path) / 1200).bit_length())   # AF_XDP: the whole day
        rx.send(("phase", "flat", day.messages, frames))
        rx.expect("ready")
        tx.send(("send", day.path, "flat", addr, None, 0))
        _, sent, _, _ = tx.expect("sent")
        counter = _perf(row, lambda: SyscallCounter([tid]), "enable") if day.count_syscalls else None
        try:
            rx.send(("go",))
            rx.expect("drained")
            if counter is not None and _perf(row, counter.disable) is None:
                counter.close()
                counter = None
            rx.send(("ok",))
            _, out = rx.expect("done")
            if counter is not None:
                row.syscalls = _perf(row, counter.count)
        finally:
            if counter is not None:
                counter.close()
        if not day.count_syscalls:
            row.syscalls_error = "perf not used"
        _fill_flat(row, out, sent, day)
        for phase, rate in (("paced", day.rate), ("queueing", None)):
            name = "paced" if phase == "paced" else "burst"
            rx.send(("phase", name, day.prefix_messages, 0))
            rx.expect("ready")
            rx.send(("go",))
            tx.send(("send", day.prefix_path, name, addr, rate, 0))
            _, n, seqs, stamps = tx.expect("sent")
            rx.expect("drained")
            rx.send(("ok",))
            _, res = rx.expect("done")
            row.samples[phase] = join_latency(seqs, stamps, *res["log"])
            row.latency[phase] = latency(row.samples[phase], phase, "packet: sendmsg -> applied")
            if len(row.samples[phase]) < n:
                row.latency[phase]["missing"] = int(n - len(row.samples[phase]))
    finally:
        rx.stop()
        tx.stop()
    return row


def _perf(row: Row, step, then: str = ""):
    """One step of the kernel count; a failure is written in the row (the row still runs).
    Returns the step's result (for "enable": the counter, switched on), or None on failure."""
    try:
        r = step()
        if then == "enable":
            try:
                r.enable()
            except BaseException:
                r.close()
                raise
        return r if r is not None else True
    except (OSError, RuntimeError) as e:
        row.syscalls_error = f"perf: {e}"
        return None


def _fill_flat(row: Row, out: dict, sent: int, day) -> None:
    from itchflow.compare.digest import first_difference

    u = out["usage"]
    row.messages, row.packets, row.seconds = out["messages"], out["packets"], out["seconds"]
    row.cpu_ns, row.voluntary, row.involuntary = u.cpu_ns, u.voluntary, u.involuntary
    row.system_ns = u.system_ns
    row.code_syscalls = out["reader_calls"] + out["polls"]
    if row.key == "af_xdp":
        row.code_syscalls = out["polls"] + int(out["reader_counters"].get("wakeups", 0))
    what = {"udp_recv": "recv calls", "udp_recvmmsg": "recvmmsg calls", "tpacket": "no call while blocks are ready",
            "af_xdp": "wake-ups"}[row.key]
    row.code_syscalls_what = f"{what} + poll() calls when nothing was ready"
    row.counters = {"sent_packets": sent, "received_packets": out["packets"], "polls": out["polls"],
                    "reader_calls": out["reader_calls"], "mold": {k: out["mold"].get(k) for k in
                                                                 ("packets", "messages", "duplicate_packets")},
                    **({"ring": out["reader_counters"]} if out["reader_counters"] else {})}
    row.digest = out["digest"]
    row.books_equal = row.digest == day.baseline_digest
    if not row.books_equal:
        row.books_difference = (first_difference(out["state"], day.baseline_state) or "digest differs") + \
            f" ({out['messages']:,} of {day.messages:,} messages arrived)"


def join_latency(seqs, stamps, first, count, at) -> np.ndarray:
    """Latency of each sent packet (first sequence seqs[i], sent at stamps[i]): the time its
    messages were applied (the delivery whose range holds its first sequence) minus the stamp."""
    if len(first) == 0:
        return np.zeros(0, np.float64)
    k = np.searchsorted(first, seqs, "right") - 1
    ok = (k >= 0) & (seqs < first[np.maximum(k, 0)] + count[np.maximum(k, 0)])
    return (at[k[ok]] - stamps[ok]).astype(np.float64)


# ---- hybrid: TPACKET_V3 -> shared-memory ring -> books in another process ------------------------

def _hybrid_main(lab: Lab, engine: str, phase: str, last_sequence: int, ring_path: str, count: bool, conn) -> None:
    """In the receiver namespace: run_pipeline(mold://...&engine=tpacket|xdp): its producer
    process reads the packet ring (or the AF_XDP RX ring) and publishes into the shared ring,
    this process applies the books."""
    from itchflow.compare.digest import book_state, digest
    from itchflow.pipeline import run_pipeline

    try:
        lab.enter_receiver()
        port = _free_udp_port(lab.recv_addr)
        src = (f"mold://{lab.recv_addr}:{port}?engine={engine}&ifname={lab.recv_ifname}"
               f"&session={SESSION[phase].decode()}&idle=5&end_linger=0")   # our own sender, on a private link
        conn.send(("port", port))
        books = ready_books()
        first = []
        counter_box = {}

        def progress(messages: int, nbytes: int) -> None:
            if not first:
                conn.send(("primed",))     # the first packet went all the way to the books
                first.append(this_thread())
                if count:   # the packet reader (the producer process) and this books thread, apart:
                    # the books thread's idle waiting (sched_yield and the producer liveness
                    # check, kill(pid, 0), per empty poll) is not the network path's cost
                    me = threading.get_native_id()
                    for name, tids in (("reader", _children(os.getpid(), me)), ("books", [me])):
                        if not tids:
                            counter_box["error"] = "the pipeline's reader process was not found to count"
                            continue
                        try:
                            counter_box[name] = _counting(tids)
                        except (OSError, RuntimeError) as e:
                            counter_box["error"] = str(e)

        rep = run_pipeline(src, books=books, ring=ring_path, progress=progress)
        usage = this_thread() - first[0] if first else None
        calls, clocks = {}, {}
        for name in ("reader", "books"):
            c = counter_box.get(name)
            if c is None:
                continue
            try:
                c.disable()
                calls[name] = c.count()
                clocks[name] = c.task_clock_ns
            except (OSError, RuntimeError) as e:
                counter_box["error"] = str(e)
            finally:
                c.close()
        both = None if "error" in counter_box or not clocks else sum(v or 0 for v in clocks.values())
        out = {"report": rep.to_dict(), "samples": rep.samples, "usage": usage, "syscalls": calls.get("reader"),
               "books_syscalls": calls.get("books"), "syscalls_error": counter_box.get("error", ""),
               "messages": books.messages, "task_clock_ns": both}
        if phase == "flat":
            out.update(digest=digest(books), state=book_state(books))
        conn.send(("done", out))
    except BaseException as e:  # noqa: BLE001
        try:
            conn.send(("error", f"{type(e).__name__}: {e}"))
        except OSError:
            pass


def _counting(tids: list[int]):
    """A SyscallCounter on tids, enabled. perf stat refuses the whole list when one thread of
    it has ended by the time it attaches ("No such process": a child listed a moment before,
    an earlier run's producer not yet reaped), which failed the row at random (CI): it is tried
    again, once, without what has ended."""
    for attempt in (0, 1):
        c = SyscallCounter(tids)
        try:
            c.enable()
            return c
        except RuntimeError:
            c.close()
            running = [t for t in tids if pid_alive(t)]   # (not a zombie: perf cannot attach to one)
            if attempt or running == tids:
                raise
            if not running:
                raise RuntimeError("the threads to count had ended before perf attached") from None
            tids = running


def _children(pid: int, tid: int) -> list[int]:
    """The child processes thread tid of pid started that are still running."""
    try:
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            return [c for c in (int(x) for x in f.read().split()) if pid_alive(c)]
    except OSError:
        return []


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def hybrid(day, lab: Lab, key: str = "hybrid") -> Row:
    row = Row(key, transport=lab.describe())
    engine = "xdp" if key == "hybrid_xdp" else "tpacket"
    tx = _Peer(day, _sender_main, (lab,), "compare-sender")
    try:
        tx.expect("ready", 60)
        for phase, path, last, rate in (("flat", day.path, day.messages, None),
                                        ("paced", day.prefix_path, day.prefix_messages, day.rate),
                                        ("burst", day.prefix_path, day.prefix_messages, None)):
            rx = _Peer(day, _hybrid_main, (lab, engine, phase, last, day.ring_path("hybrid"),
                                           day.count_syscalls and phase == "flat"), f"compare-hybrid-{phase}",
                       daemon=False)    # it forks the pipeline's reader process
            try:
                _, port = rx.expect("port", 60)
                addr = (lab.recv_addr, port)
                tx.send(("prime", path, phase, addr))
                rx.expect("primed", 60)
                tx.send(("stop",))
                tx.expect("sent")
                tx.send(("send", path, phase, addr, rate, 1))
                _, n, seqs, stamps = tx.expect("sent")
                _send_end_of_session(lab, tx, path, phase, (lab.recv_addr, port))
                _, out = rx.expect("done")
            finally:
                rx.stop()
            rep = out["report"]
            if phase == "flat":
                # the day's datagrams, as the other rows count them (packet 0 went in the priming,
                # the rest from 1 on): the receiver's own count has the priming duplicates and the
                # end-of-session packets too (in counters)
                row.messages, row.packets, row.seconds = rep["messages"], n + 1, rep["seconds"]
                if out["usage"] is not None:
                    u = out["usage"]
                    row.cpu_ns, row.voluntary, row.involuntary = u.cpu_ns, u.voluntary, u.involuntary
                    row.system_ns = u.system_ns
                row.book_ns = rep["apply_ns_per_message"] * rep["messages"]
                row.book_clock = "cycle counter (wall) inside the engine"
                row.syscalls, row.syscalls_error = out["syscalls"], out["syscalls_error"] or (
                    "" if day.count_syscalls else "perf not used")
                row.code_syscalls_what = ("not kept by listen(): kernel count only, the packet reader's thread; "
                                          "the books thread's count is in counters")
                row.counters = {"mold": rep["producer"].get("mold", {}), "lost": rep["producer"].get("lost", []),
                                "ring_batches": rep["batches"], "sent_packets": n,
                                "cpu_ns_books_thread": row.cpu_ns,
                                "books_thread_syscalls": out.get("books_syscalls"),
                                "books_thread_syscalls_what": "sched_yield + kill(pid, 0) producer liveness check "
                                                              "per empty ring poll while waiting (ring.consumer."
                                                              "wait_poll, yield strategy): idle waiting",
                                "flat": "the sender sends flat out while the pipeline receives (live, not pre-queued)"}
                if out.get("task_clock_ns"):   # both receiving sides (reader process + books thread), by perf
                    row.cpu_ns = out["task_clock_ns"]
                    row.counters["cpu"] = "perf task-clock of the reader process and the books thread"
                row.digest = out["digest"]
                row.books_equal = row.digest == day.baseline_digest
                if not row.books_equal:
                    from itchflow.compare.digest import first_difference
                    row.books_difference = first_difference(out["state"], day.baseline_state) or "digest differs"
            else:
                kind = "paced" if phase == "paced" else "queueing"
                # per ring record, from the kernel's receive timestamp (the pipeline keeps no
                # per-record sequence to join the sender's stamps with)
                lat = rep["latency"].get("receive_to_applied", {})
                row.samples[kind] = np.asarray(out["samples"].get("receive_to_applied", []), np.float64)
                row.latency[kind] = latency(row.samples[kind], kind, "record: kernel receive -> applied")
                row.latency[kind]["pipeline_summary"] = lat
    finally:
        tx.stop()
    return row


def _send_end_of_session(lab: Lab, tx: _Peer, path: str, phase: str, addr) -> None:
    """End the pipeline's listen loop: the end-of-session packet, sent from the parent's side
    through the sender (a few times: it is one datagram)."""
    tx.send(("eos", path, phase, addr))
    tx.expect("sent")
