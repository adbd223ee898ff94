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
from itchflow.wire.ethernet import ipv4_u32, udp_payload   # the one IPv4/UDP finder

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
ETH_P_IP = 0x0800
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1

TPACKET_REQ3 = (("tp_block_size", 0, 4), ("tp_block_nr", 4, 4), ("tp_frame_size", 8, 4), ("tp_frame_nr", 12, 4),
                ("tp_retire_blk_tov", 16, 4), ("tp_sizeof_priv", 20, 4), ("tp_feature_req_word", 24, 4))
BLOCK_DESC = (("version", 0, 4), ("offset_to_priv", 4, 4), ("block_status", 8, 4), ("num_pkts", 12, 4),
              ("offset_to_first_pkt", 16, 4), ("blk_len", 20, 4), ("seq_num", 24, 8))
TPACKET3_HDR = (("tp_next_offset", 0, 4), ("tp_sec", 4, 4), ("tp_nsec", 8, 4), ("tp_snaplen", 12, 4),
                ("tp_len", 16, 4), ("tp_status", 20, 4), ("tp_mac", 24, 2), ("tp_net", 26, 2))
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
H_SNAPLEN, H_MAC, H_NET = _H["tp_snaplen"], _H["tp_mac"], _H["tp_net"]
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


@njit(nogil=True, cache=True)
def walk(m, words, block_size, block_nr, port, addr, state, bufs, lengths, rx_ns):
    """Copy the payloads of ready packets (UDP to ``addr``:``port``) into bufs rows, up to len(bufs);
    blocks read to the end are given back to the kernel. Returns the count copied (0: no
    ready block). A datagram longer than a row is copied cut and counted in state (as
    malformed downstream: its length says so)."""
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
            snap_end = p + _u16(m, p + H_MAC) + _u32(m, p + H_SNAPLEN)   # captured bytes start at tp_mac
            off, ln = udp_payload(m, p + _u16(m, p + H_NET), snap_end, port, addr)
            if off >= 0:
                k = min(ln, cap)
                for j in range(k):
                    bufs[n, j] = m[off + j]
                lengths[n] = ln if ln <= cap else cap + 1
                rx_ns[n] = _u32(m, p + H_SEC) * 1_000_000_000 + _u32(m, p + H_NSEC)
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
    """Walk every ready block without copying: (UDP packets to port, sum of MoldUDP64
    sequence + count) — the receive benchmark's per-packet work, in place in the ring."""
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
            snap_end = p + _u16(m, p + H_MAC) + _u32(m, p + H_SNAPLEN)   # captured bytes start at tp_mac
            off, ln = udp_payload(m, p + _u16(m, p + H_NET), snap_end, port, 0)
            if off >= 0 and ln >= 20:
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
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        try:
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
        except BaseException:
            s.close()
            raise
        self.sock = s
        self.map = np.frombuffer(self.mm, np.uint8)
        self.words = np.frombuffer(self.mm, np.int64)
        self.state = np.zeros(W_FIELDS, np.int64)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_into(self, bufs, lengths, rx_ns) -> int:
        """Payloads of ready packets into bufs rows (lengths, kernel rx times in ns); 0 if none."""
        return int(walk(self.map, self.words, self.block_size, self.block_nr, self.port, self.address,
                        self.state, bufs, lengths, rx_ns))

    def drain_sum(self) -> tuple[int, int]:
        k, acc = drain_sum(self.map, self.words, self.block_size, self.block_nr, self.port, self.state)
        return int(k), int(acc)

    def stats(self) -> dict:
        """Kernel counters since the last call: packets seen, dropped (ring full), queue freezes."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        return dict(zip((n for n, _, _ in TPACKET_STATS_V3), struct.unpack(_struct(TPACKET_STATS_V3), raw)))

    def close(self) -> None:
        if self.sock is not None:
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
    walk(m, m.view(np.int64), 4096, 1, 0, 0, np.zeros(W_FIELDS, np.int64), bufs, one, one.copy())
