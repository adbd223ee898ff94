"""mmap + polling where the kernel fills the ring: an AF_PACKET socket with a TPACKET_V3 RX ring.

The kernel writes every packet of an interface into blocks of a ring this process has mapped,
and hands a block over by flipping its status word; the reader walks the packets of a ready
block in compiled code (no system call per packet, none at all while blocks are ready) and
gives the block back by clearing the status with a release store. A block becomes visible
only when it is full or when its retire timeout passes (``retire_ms``): small blocks and a
short timeout for latency, large ones for throughput.

The socket is a tap: the kernel still delivers each datagram to the UDP stack, so the UDP
socket must exist (bound, or joined to the group) as usual. The ring is set up before the
socket is bound, so that no packet arrives during setup. Outgoing copies (on ``lo`` every
packet is seen leaving and arriving) are ignored with PACKET_IGNORE_OUTGOING.

Layouts (linux/if_packet.h), declared once as (name, offset, size):
"""

from __future__ import annotations

import mmap
import socket
import struct

import numpy as np
from numba import njit

from itchflow.hw.atomics import load_acquire, store_release
from itchflow.wire.ethernet import (IPV4_SOURCE, OUTCOME_NAMES, OUTCOMES, UDP_HEADER, UDP_OK,  # the one IPv4/UDP finder
                                    VERIFY_IP_CHECKSUM, VERIFY_UDP_CHECKSUM, ipv4_u32, ipv4_udp)

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
ETH_P_IP = 0x0800
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
# the packet's own status: its UDP checksum is not filled in yet (sent from this host: the
# stack or the NIC completes it) or the NIC already verified it; either way not ours to check
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_CSUM_VALID = 1 << 7
PACKET_OTHERHOST = 3      # sll_pkttype: a frame for another host's MAC (promiscuous mode, a bridge)
SO_ATTACH_FILTER = 26

TPACKET_REQ3 = (("tp_block_size", 0, 4), ("tp_block_nr", 4, 4), ("tp_frame_size", 8, 4), ("tp_frame_nr", 12, 4),
                ("tp_retire_blk_tov", 16, 4), ("tp_sizeof_priv", 20, 4), ("tp_feature_req_word", 24, 4))
BLOCK_DESC = (("version", 0, 4), ("offset_to_priv", 4, 4), ("block_status", 8, 4), ("num_pkts", 12, 4),
              ("offset_to_first_pkt", 16, 4), ("blk_len", 20, 4), ("seq_num", 24, 8))
TPACKET3_HDR = (("tp_next_offset", 0, 4), ("tp_sec", 4, 4), ("tp_nsec", 8, 4), ("tp_snaplen", 12, 4),
                ("tp_len", 16, 4), ("tp_status", 20, 4), ("tp_mac", 24, 2), ("tp_net", 26, 2))
# struct sockaddr_ll follows the header at TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) = 48
SOCKADDR_LL = (("sll_family", 48, 2), ("sll_protocol", 50, 2), ("sll_ifindex", 52, 4), ("sll_hatype", 56, 2),
               ("sll_pkttype", 58, 1), ("sll_halen", 59, 1))
TPACKET_STATS_V3 = (("tp_packets", 0, 4), ("tp_drops", 4, 4), ("tp_freeze_q_cnt", 8, 4))


def _offsets(layout) -> dict[str, int]:
    return {name: off for name, off, _ in layout}


def _struct(layout) -> str:
    return "=" + "".join({4: "I", 8: "Q", 2: "H"}[size] for _, _, size in layout)


_B = _offsets(BLOCK_DESC)
_H = _offsets(TPACKET3_HDR)
B_STATUS_WORD = _B["block_status"] // 8      # block_status is the low half of this 8-byte word
B_NUM_PKTS = _B["num_pkts"]
B_FIRST = _B["offset_to_first_pkt"]
H_NEXT, H_SEC, H_NSEC = _H["tp_next_offset"], _H["tp_sec"], _H["tp_nsec"]
H_SNAPLEN, H_MAC, H_NET, H_STATUS = _H["tp_snaplen"], _H["tp_mac"], _H["tp_net"], _H["tp_status"]
H_PKTTYPE = _offsets(SOCKADDR_LL)["sll_pkttype"]
# walk's counts (int64[COUNTS]): ipv4_udp outcomes of the packets the ring held, then these
C_OTHER_HOST = OUTCOMES
COUNTS = OUTCOMES + 1
COUNT_NAMES = OUTCOME_NAMES + ("other_host",)
assert _B["block_status"] % 8 == 0

# walker state (int64 array): block being read, packet index in it, byte offset of that packet
W_BLOCK, W_PKT, W_OFF, W_RELEASED = 0, 1, 2, 3
W_FIELDS = 4


@njit(inline="always", nogil=True, cache=True)
def _u32(m, p):
    return (np.int64(m[p]) | (np.int64(m[p + 1]) << 8) | (np.int64(m[p + 2]) << 16)
            | (np.int64(m[p + 3]) << 24))


@njit(inline="always", nogil=True, cache=True)
def _u16(m, p):
    return np.int64(m[p]) | (np.int64(m[p + 1]) << 8)


@njit(inline="always", nogil=True, cache=True)
def _packet(m, p, port, addr):
    """(outcome, payload offset, payload length) of the ring's packet at m[p], judged as the
    stack judges it (``ipv4_udp`` with the checksums; C_OTHER_HOST for another host's frame):
    what the walk and the benchmark's drain both take."""
    if m[p + H_PKTTYPE] == PACKET_OTHERHOST:
        return np.int64(C_OTHER_HOST), np.int64(-1), np.int64(0)
    verify = VERIFY_IP_CHECKSUM
    if (_u32(m, p + H_STATUS) & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID)) == 0:
        verify |= VERIFY_UDP_CHECKSUM
    snap_end = p + _u16(m, p + H_MAC) + _u32(m, p + H_SNAPLEN)   # captured bytes start at tp_mac
    return ipv4_udp(m, p + _u16(m, p + H_NET), snap_end, port, addr, verify)


@njit(nogil=True, cache=True)
def walk(m, words, block_size, block_nr, port, addr, state, bufs, lengths, rx_ns, names, counts):
    """Copy the payloads of ready packets (UDP to ``addr``:``port``) into bufs rows, up to len(bufs),
    and each one's sender into names rows (a struct sockaddr_in, as recvmmsg gives it);
    blocks read to the end are given back to the kernel. Returns the count copied (0: no
    ready block). A datagram longer than a row is copied cut and counted in state (as
    malformed downstream: its length says so). Every packet is counted by its outcome in
    counts (COUNT_NAMES): what the stack would refuse (a bad checksum or length, a frame for
    another host) is counted there, never taken as data."""
    n = 0
    cap = bufs.shape[1]
    while n < bufs.shape[0]:
        b = state[W_BLOCK]
        base = b * block_size
        if (load_acquire(words, (base >> 3) + B_STATUS_WORD) & TP_STATUS_USER) == 0:
            break
        num = _u32(m, base + B_NUM_PKTS)
        if state[W_PKT] == 0:
            state[W_OFF] = base + _u32(m, base + B_FIRST)
        while state[W_PKT] < num and n < bufs.shape[0]:
            p = state[W_OFF]
            outcome, off, ln = _packet(m, p, port, addr)
            counts[outcome] += 1
            if outcome == UDP_OK:
                k = min(ln, cap)
                for j in range(k):
                    bufs[n, j] = m[off + j]
                lengths[n] = ln if ln <= cap else cap + 1
                rx_ns[n] = _u32(m, p + H_SEC) * 1_000_000_000 + _u32(m, p + H_NSEC)
                src = p + _u16(m, p + H_NET) + IPV4_SOURCE
                names[n, 0] = socket.AF_INET   # sa_family (little-endian u16; < 256)
                names[n, 1] = 0
                names[n, 2], names[n, 3] = m[off - UDP_HEADER], m[off - UDP_HEADER + 1]   # source port
                for j in range(4):
                    names[n, 4 + j] = m[src + j]
                n += 1
            state[W_OFF] = p + _u32(m, p + H_NEXT)
            state[W_PKT] += 1
        if state[W_PKT] >= num:
            store_release(words, (base >> 3) + B_STATUS_WORD, TP_STATUS_KERNEL)  # the block is the kernel's again
            state[W_RELEASED] += 1
            state[W_BLOCK] = (b + 1) % block_nr
            state[W_PKT] = 0
    return n


@njit(nogil=True, cache=True)
def drain_sum(m, words, block_size, block_nr, port, state):
    """Walk every ready block without copying: (UDP packets to port the walk would take, sum
    of MoldUDP64 sequence + count) — the receive benchmark's per-packet work, in place in the
    ring, its checks included."""
    k = 0
    acc = np.uint64(0)
    while True:
        b = state[W_BLOCK]
        base = b * block_size
        if (load_acquire(words, (base >> 3) + B_STATUS_WORD) & TP_STATUS_USER) == 0:
            break
        num = _u32(m, base + B_NUM_PKTS)
        p = base + _u32(m, base + B_FIRST)
        for _ in range(num):
            outcome, off, ln = _packet(m, p, port, 0)
            if outcome == UDP_OK and ln >= 20:
                seq = np.uint64(0)
                for j in range(8):
                    seq = (seq << np.uint64(8)) | np.uint64(m[off + 10 + j])
                acc += seq + ((np.uint64(m[off + 18]) << np.uint64(8)) | np.uint64(m[off + 19]))
                k += 1
            p += _u32(m, p + H_NEXT)
        store_release(words, (base >> 3) + B_STATUS_WORD, TP_STATUS_KERNEL)
        state[W_RELEASED] += 1
        state[W_BLOCK] = (b + 1) % block_nr
    return k, acc


class TPacketV3:
    """An RX ring on ``interface`` (needs CAP_NET_RAW): see the module doc.

    port, address: keep only UDP datagrams to this port and IPv4 address (0 / "": any).
    """

    def __init__(self, interface: str = "lo", *, port: int = 0, address: str = "", block_size: int = 1 << 18,
                 block_nr: int = 64, frame_size: int = 2048, retire_ms: int = 1):
        if block_size % mmap.PAGESIZE or block_size % frame_size:
            raise ValueError("block_size must be a multiple of the page size and of frame_size")
        self.interface, self.port = interface, port
        self.address = ipv4_u32(address)
        self.block_size, self.block_nr = block_size, block_nr
        try:
            socket.if_nametoindex(interface)
        except OSError:
            raise OSError(f"packet ring on {interface!r}: no interface of that name (in this network "
                          "namespace)") from None
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        except PermissionError:
            raise PermissionError(f"packet ring on {interface!r}: opening a packet socket was not permitted (the "
                                  "tpacket engine needs CAP_NET_RAW: run as root)") from None
        try:
            # first: only this feed's datagrams take ring space (unrelated traffic on the NIC
            # filled the ring while the walk stalled, and the feed behind it was lost)
            attach_filter(s, port, self.address)
            s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            try:
                s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass   # older kernels: on lo each packet then shows twice (duplicates are dropped downstream)
            frames = block_size // frame_size * block_nr
            req = struct.pack(_struct(TPACKET_REQ3), block_size, block_nr, frame_size, frames, retire_ms, 0, 0)
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.mm = mmap.mmap(s.fileno(), block_size * block_nr, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
            s.bind((interface, ETH_P_IP))   # after the ring: nothing arrives before it exists
        except OSError as e:   # without the errno's "[Errno 19]": the text names the ring and the cause
            s.close()
            raise OSError(f"packet ring on {interface!r}: {e.strerror or e}") from None
        except BaseException:
            s.close()
            raise
        self.sock = s
        self.map = np.frombuffer(self.mm, np.uint8)
        self.words = np.frombuffer(self.mm, np.int64)
        self.state = np.zeros(W_FIELDS, np.int64)
        self.counts = np.zeros(COUNTS, np.int64)
        self._names = None   # senders, when read_into is given no rows for them
        self.kernel = {"tp_packets": 0, "tp_drops": 0, "tp_freeze_q_cnt": 0}

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_into(self, bufs, lengths, rx_ns, names=None) -> int:
        """Payloads of ready packets into bufs rows (lengths, kernel rx times in ns, senders as
        struct sockaddr_in rows in names, as ``MmsgSlots.names``); 0 if none."""
        if names is None:
            names = self._names
            if names is None or len(names) < len(bufs):
                names = self._names = np.zeros((len(bufs), 32), np.uint8)
        return int(walk(self.map, self.words, self.block_size, self.block_nr, self.port, self.address,
                        self.state, bufs, lengths, rx_ns, names, self.counts))

    def drain_sum(self) -> tuple[int, int]:
        k, acc = drain_sum(self.map, self.words, self.block_size, self.block_nr, self.port, self.state)
        return int(k), int(acc)

    def stats(self) -> dict:
        """Kernel counters since the last call: packets seen, dropped (ring full), queue freezes
        (also added to ``kernel``, the totals since the ring opened)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        now = dict(zip((n for n, _, _ in TPACKET_STATS_V3), struct.unpack(_struct(TPACKET_STATS_V3), raw)))
        for k, v in now.items():
            self.kernel[k] += v
        return now

    def counters(self) -> dict:
        """The kernel's totals (``kernel_drops``: packets the full ring could not take) and the
        walk's packets by outcome (``ring_`` + COUNT_NAMES, those seen only)."""
        if self.sock is not None:
            self.stats()
        out = {"kernel_packets": self.kernel["tp_packets"], "kernel_drops": self.kernel["tp_drops"]}
        out.update({f"ring_{name}": int(n) for name, n in zip(COUNT_NAMES, self.counts) if n})
        return out

    def close(self) -> None:
        if self.sock is not None:
            self.stats()
            del self.map, self.words
            self.mm.close()
            self.sock.close()
            self.sock = None

    def __enter__(self) -> "TPacketV3":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def warm_up() -> None:
    """Compile (or load) the walker now, not on the first packet: a one-block ring of zeros
    has no ready block, so nothing is read."""
    m = np.zeros(4096, np.uint8)
    bufs = np.zeros((1, 16), np.uint8)
    one = np.zeros(1, np.int64)
    walk(m, m.view(np.int64), 4096, 1, 0, 0, np.zeros(W_FIELDS, np.int64), bufs, one, one.copy(),
         np.zeros((1, 32), np.uint8), np.zeros(COUNTS, np.int64))


# Classic BPF (linux/filter.h) for the socket filter: opcodes, and loads relative to the
# network header (SKF_NET_OFF: any link layer, not only Ethernet's 14 bytes). The socket is
# bound to ETH_P_IP, so only IPv4 reaches the program.
BPF_LD_H_ABS, BPF_LD_B_ABS, BPF_LD_W_ABS, BPF_LD_H_IND = 0x28, 0x30, 0x20, 0x48
BPF_LDX_B_MSH, BPF_JEQ_K, BPF_JSET_K, BPF_RET_K = 0xB1, 0x15, 0x45, 0x06
SKF_NET_OFF = -0x100000
KEEP_WHOLE = 0x40000      # ret: bytes of the packet to keep (all of any frame)


def feed_filter(port: int, address: int) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) instructions that keep IPv4 UDP datagrams to port (and address, a
    big-endian u32, unless 0) and every IPv4 fragment (its later parts carry no port: the walk
    counts them, as fragments are not reassembled); everything else is dropped in the kernel."""
    net = SKF_NET_OFF
    prog = [(BPF_LD_B_ABS, 0, 0, net + 9), (BPF_JEQ_K, 0, None, 17)]           # protocol UDP
    if address:
        prog += [(BPF_LD_W_ABS, 0, 0, net + 16), (BPF_JEQ_K, 0, None, address)]  # destination address
    prog += [(BPF_LD_H_ABS, 0, 0, net + 6), (BPF_JSET_K, "keep", 0, 0x3FFF),   # a fragment: keep
             (BPF_LDX_B_MSH, 0, 0, net),                                      # X = IP header length
             (BPF_LD_H_IND, 0, 0, net + 2), (BPF_JEQ_K, 0, None, port),       # UDP destination port
             (BPF_RET_K, 0, 0, KEEP_WHOLE), (BPF_RET_K, 0, 0, 0)]
    keep, drop = len(prog) - 2, len(prog) - 1
    out = []
    for i, (code, jt, jf, k) in enumerate(prog):   # jumps are relative to the next instruction
        jt = keep - i - 1 if jt == "keep" else jt
        jf = drop - i - 1 if jf is None else jf
        out.append((code, jt, jf, k))
    return out


def attach_filter(sock: socket.socket, port: int, address: int) -> None:
    """SO_ATTACH_FILTER of ``feed_filter`` (port 0: no filter, every IPv4 packet)."""
    import ctypes

    if not port:
        return
    insns = b"".join(struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF) for code, jt, jf, k in feed_filter(port, address))
    buf = ctypes.create_string_buffer(insns, len(insns))
    fprog = struct.pack("HL", len(insns) // 8, ctypes.addressof(buf))   # struct sock_fprog (padded)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
