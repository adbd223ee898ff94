"""Kernel bypass on a stock kernel: an AF_XDP socket fed by an XDP program (the DPDK model).

The XDP program (wire/bpf.py) redirects the feed's UDP datagrams, as they come off the
interface, into frames of a memory area this process owns (the UMEM); everything else goes
to the kernel stack as usual. The kernel (or, in zero-copy mode, the NIC) writes a frame and
publishes its descriptor on the RX ring; the compiled loop here walks that ring in place with
acquire/release atomics, reads MoldUDP64 straight out of the frames, and hands the frames
back on the fill ring in batches. No system call per packet: the kernel is woken only when
the fill ring's need-wakeup flag asks for it (and the loop sleeps in poll() only when idle).

Setup, in order (each step's failure is a clear ``XdpError``):
  UMEM (hugepages when MAP_HUGETLB works, else ordinary pages; ``info`` says which) ->
  register it -> size the fill, completion and RX rings (powers of two) -> map them at the
  offsets the kernel reports (XDP_MMAP_OFFSETS) -> fill the fill ring -> bind the queue with
  XDP_USE_NEED_WAKEUP, zero-copy if the driver grants it, else copy -> busy-poll options where
  allowed -> XSKMAP[queue] = socket -> load the program -> attach it with a BPF link (native
  mode where the driver supports it, else generic). The link is a file descriptor: when this
  process exits, SIGKILL included, the kernel detaches the program. Only the interface named
  is ever touched.

Ring words are u32 indices read and written as the aligned 8-byte word that holds them
(hw.atomics works on int64 words); setup checks that the other half of each word we store to
is padding the kernel never reads, so the wider store is exact.
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
import sys
import time

import numpy as np
from numba import njit

from itchflow.hw.atomics import cpu_pause, load_acquire, store_release
from itchflow.hw.bpf_syscalls import (
    BPF_MAP_TYPE_XSKMAP,
    BPF_PROG_TYPE_XDP,
    BPF_XDP,
    XDP_FLAGS_DRV_MODE,
    XDP_FLAGS_SKB_MODE,
    BpfError,
    bind_raw,
    link_create,
    map_create,
    map_update,
    prog_load,
    wake_rx,
)
from itchflow.hw.net_syscalls import MmsgSlots
from itchflow.hw.syscalls import monotonic_ns
from itchflow.wire.bpf import redirect_program
from itchflow.wire.ethernet import (OTHER_DESTINATION, UDP_OK, VERIFY_IP_CHECKSUM, ethernet_udp, ipv4_u32,
                                    udp_sender)
from itchflow.wire.moldudp64 import read_header
from itchflow.wire.xdp import (
    AF_XDP,
    DESC_ADDR_WORD,
    DESC_LEN_WORD,
    DESC_WORDS,
    FILL_DESC_SIZE,
    SOCKADDR_XDP,
    SOL_XDP,
    XDP_COPY,
    XDP_DESC,
    XDP_MMAP_OFFSETS,
    XDP_MMAP_OFFSETS_T,
    XDP_PGOFF_RX_RING,
    XDP_RING_NEED_WAKEUP,
    XDP_RX_RING,
    XDP_STATISTICS,
    XDP_STATISTICS_T,
    XDP_UMEM_COMPLETION_RING,
    XDP_UMEM_FILL_RING,
    XDP_UMEM_PGOFF_COMPLETION_RING,
    XDP_UMEM_PGOFF_FILL_RING,
    XDP_UMEM_REG,
    XDP_UMEM_REG_T,
    XDP_USE_NEED_WAKEUP,
    XDP_ZEROCOPY,
    pack,
    unpack,
)

SO_BUSY_POLL = 46
SO_PREFER_BUSY_POLL = 69
SO_BUSY_POLL_BUDGET = 70
MAP_HUGETLB = 0x40000
HUGE_PAGE = 2 << 20


class XdpError(RuntimeError):
    """AF_XDP could not be set up (capabilities, interface, driver): the message says which step."""


# cfg (int64) entries: where each ring word sits (as an 8-byte word index into its mapping)
(C_RX_PROD, C_RX_CONS, C_RX_DESC, C_RX_MASK, C_FR_PROD, C_FR_FLAGS, C_FR_FLAGS_SHIFT, C_FR_DESC, C_FR_MASK,
 C_FRAME_MASK, C_FD, C_FRAME_SHIFT) = range(12)
C_FIELDS = 12
# state (int64) entries: local ring positions and the counters
(S_RX_CONS, S_FR_PROD, S_PACKETS, S_BYTES, S_RECYCLED, S_WAKEUPS, S_OTHER, S_FILL_PUBLISHES,
 S_REJECTED) = range(9)
S_FIELDS = 9
# rejected_frames: to a feed line, but refused as the stack would (a bad checksum or length)
COUNTERS = ("packets", "bytes", "frames_recycled", "wakeups", "other_frames", "fill_publishes", "rejected_frames")
_COUNTER_SLOTS = (S_PACKETS, S_BYTES, S_RECYCLED, S_WAKEUPS, S_OTHER, S_FILL_PUBLISHES, S_REJECTED)
# The program redirects frames before the stack, which would refuse a bad IP header checksum:
# the walk does. Not the UDP checksum: a frame from this host (or a veth peer) carries it
# unfinished (CHECKSUM_PARTIAL: the stack or the NIC completes it later), and AF_XDP passes no
# status that says so, as TPACKET_V3 does (TP_STATUS_CSUMNOTREADY); a NIC checks it on the wire
VERIFY = VERIFY_IP_CHECKSUM
LINE_REJECTED = -2     # _line_of: addressed to a line, refused
U32 = 0xFFFFFFFF


# ---------------------------------------------------------------- compiled ring walk
@njit(inline="always", nogil=True, cache=True)
def _rx_ready(cfg, rx, state):
    """RX descriptors the kernel has published and we have not consumed."""
    return (load_acquire(rx, cfg[C_RX_PROD]) - state[S_RX_CONS]) & U32


@njit(inline="always", nogil=True, cache=True)
def _desc(cfg, rx, idx):
    w = cfg[C_RX_DESC] + (idx & cfg[C_RX_MASK]) * DESC_WORDS
    return rx[w + DESC_ADDR_WORD], rx[w + DESC_LEN_WORD] & U32


@njit(nogil=True, cache=True)
def recycle(cfg, rx, fr, state, k):
    """Give the next k RX descriptors' frames back on the fill ring (masked to the frame
    start: the descriptor addresses carry the headroom), then publish both ring positions
    with one release store each; wake the kernel only if the fill ring asks for it."""
    cons = state[S_RX_CONS]
    prod = state[S_FR_PROD]
    for i in range(k):
        addr, _ = _desc(cfg, rx, cons + i)
        fr[cfg[C_FR_DESC] + ((prod + i) & cfg[C_FR_MASK])] = addr & cfg[C_FRAME_MASK]
    state[S_RX_CONS] = (cons + k) & U32
    state[S_FR_PROD] = (prod + k) & U32
    store_release(rx, cfg[C_RX_CONS], state[S_RX_CONS])
    store_release(fr, cfg[C_FR_PROD], state[S_FR_PROD])
    state[S_RECYCLED] += k
    state[S_FILL_PUBLISHES] += 1
    if (load_acquire(fr, cfg[C_FR_FLAGS]) >> cfg[C_FR_FLAGS_SHIFT]) & XDP_RING_NEED_WAKEUP:
        wake_rx(cfg[C_FD])
        state[S_WAKEUPS] += 1


# next_window's run table (int64 rows): which line, first frame, frame step, payload offset in
# the frame, how many packets, last frame
R_LINE, R_FIRST, R_STEP, R_OFFSET, R_COUNT, R_LAST = range(6)
R_FIELDS = 6


@njit(nogil=True, cache=True)
def next_window(cfg, rx, umem, state, lines, max_n, run_of, lengths, runs):
    """Sort the next ready RX frames (up to max_n, from the consumer position) into runs the
    MoldUDP64 receiver can take as rows of one strided view of the UMEM: frames of the same
    feed line, at a constant frame step, with the payload at the same offset in each.

    Frames come back in the order they were filled, so one line alone gives one run of
    consecutive frames, and A and B interleaved give one run each with a step of 2. A run
    ends where that stops (the UMEM's end, a frame taken out of turn, another offset).
    Per frame i: run_of[i] (-1: not a feed datagram, counted) and lengths[i] (payload).
    Returns (frames examined, runs); runs[:n_runs] in the order they started. Nothing is
    given back here: ``recycle`` the whole window once its runs are handled.
    """
    ready = _rx_ready(cfg, rx, state)
    n = min(ready, max_n, run_of.shape[0], lengths.shape[0], runs.shape[0])
    if n <= 0:
        return 0, 0
    cons = state[S_RX_CONS]
    shift = cfg[C_FRAME_SHIFT]
    fmask = cfg[C_FRAME_MASK]
    nframes = umem.shape[0] >> shift
    open_run = np.full(lines.shape[0], -1, np.int64)
    n_runs = 0
    for i in range(n):
        addr, ln = _desc(cfg, rx, cons + i)
        frame = addr >> shift
        end = addr + ln
        line, off, plen = -1, np.int64(0), np.int64(0)
        if 0 <= addr and 0 <= frame < nframes and end <= (frame + 1) << shift:   # else outside its frame
            line, off, plen = _line_of(umem, addr, end, lines)
        run_of[i] = -1
        if line < 0:
            state[S_REJECTED if line == LINE_REJECTED else S_OTHER] += 1
            continue
        state[S_PACKETS] += 1
        state[S_BYTES] += ln
        lengths[i] = plen
        rel = off - (addr & fmask)
        r = open_run[line]
        if r >= 0 and runs[r, R_OFFSET] == rel:
            if runs[r, R_COUNT] == 1 and frame > runs[r, R_FIRST]:
                runs[r, R_STEP] = frame - runs[r, R_FIRST]
            if frame == runs[r, R_LAST] + runs[r, R_STEP]:
                runs[r, R_COUNT] += 1
                runs[r, R_LAST] = frame
                run_of[i] = r
                continue
        r = n_runs
        n_runs += 1
        runs[r, R_LINE], runs[r, R_FIRST], runs[r, R_STEP] = line, frame, 1
        runs[r, R_OFFSET], runs[r, R_COUNT], runs[r, R_LAST] = rel, 1, frame
        open_run[line] = r
        run_of[i] = r
    return n, n_runs


XDP_PACKET_HEADROOM = 256   # what the kernel keeps in front of each frame's packet (copy mode)
ETH_HEADER_BYTES = 14


SIOCGIFMTU, SIOCGIFHWADDR = 0x8921, 0x8927   # linux/sockios.h: read through a struct ifreq
IFREQ_BYTES = 40                              # name[16] + the union (its largest member 24)


def _ifreq(ifname: str, request: int) -> bytes | None:
    """The ifreq the ioctl fills for ifname, in this process's network namespace (the /sys of
    a process moved into one with setns still shows its first namespace's interfaces)."""
    import fcntl

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return fcntl.ioctl(s.fileno(), request, ifname.encode()[:15].ljust(IFREQ_BYTES, b"\0"))
    except OSError:
        return None


def interface_mtu(ifname: str) -> int | None:
    req = _ifreq(ifname, SIOCGIFMTU)
    return None if req is None else int.from_bytes(req[16:20], sys.byteorder, signed=True)


def interface_mac(ifname: str) -> int:
    """The interface's MAC address as a u48 (0 when unknown or not Ethernet: no check)."""
    req = _ifreq(ifname, SIOCGIFHWADDR)
    if req is None or int.from_bytes(req[16:18], sys.byteorder) != 1:   # sa_family ARPHRD_ETHER
        return 0
    return int.from_bytes(req[18:24], "big")


def check_mtu(ifname: str, frame_size: int) -> None:
    """Refuse an interface whose MTU makes frames larger than a UMEM frame holds: the program
    would redirect them away from the stack and AF_XDP drop every one (an MTU 9000 link lost
    a whole day of 8,900-byte datagrams, blamed on no re-request server)."""
    mtu = interface_mtu(ifname)
    room = frame_size - XDP_PACKET_HEADROOM
    if mtu is not None and mtu + ETH_HEADER_BYTES > room:
        raise XdpError(f"{ifname}: MTU {mtu:,} makes frames of up to {mtu + ETH_HEADER_BYTES:,} bytes, more than an "
                       f"AF_XDP frame holds ({frame_size:,} less {XDP_PACKET_HEADROOM} of headroom: {room:,}); "
                       f"every larger datagram would be dropped: set the MTU to {room - ETH_HEADER_BYTES:,} or less "
                       "(ip link set IF mtu N), or use another engine")


@njit(inline="always", nogil=True, cache=True)
def _line_of(umem, addr, end, lines):
    """(feed line, payload offset, payload length) of the frame at umem[addr:end]: the first
    row of lines (address as u32 or 0, port) it is addressed to; line -1: none of them,
    LINE_REJECTED: one of them, but refused (a bad checksum or length)."""
    refused = False
    if (umem[addr] & 1) == 0 and lines.shape[1] > 2 and lines[0, 2] != 0:
        # a unicast frame for another MAC (promiscuous mode, a bridge): the stack drops it
        dst = np.int64(0)
        for k in range(6):
            dst = (dst << 8) | np.int64(umem[addr + k])
        if dst != lines[0, 2]:
            return LINE_REJECTED, np.int64(0), np.int64(0)
    for j in range(lines.shape[0]):
        outcome, off, plen = ethernet_udp(umem, addr, end, lines[j, 1], lines[j, 0], VERIFY)
        if outcome == UDP_OK:
            return j, off, plen
        if outcome != OTHER_DESTINATION:
            refused = True
    return LINE_REJECTED if refused else -1, np.int64(0), np.int64(0)


@njit(nogil=True, cache=True)
def drain_sum(cfg, rx, fr, umem, state, port, batch, busy_poll):
    """Walk every ready RX frame in place without copying: (MoldUDP64 packets to ``port``,
    sum of sequence + count) — the receive benchmark's per-packet work — recycling frames
    in batches. busy_poll: when the ring looks empty, kick the kernel once (recvfrom; with
    SO_PREFER_BUSY_POLL that polls the driver) before concluding it is."""
    k = 0
    acc = np.uint64(0)
    shift = cfg[C_FRAME_SHIFT]
    nframes = umem.shape[0] >> shift
    kicked = False
    while True:
        ready = _rx_ready(cfg, rx, state)
        if ready == 0:
            if busy_poll and not kicked:
                wake_rx(cfg[C_FD])
                state[S_WAKEUPS] += 1
                kicked = True
                continue
            break
        kicked = False
        n = min(ready, batch)
        cons = state[S_RX_CONS]
        for i in range(n):
            addr, ln = _desc(cfg, rx, cons + i)
            end = addr + ln
            if addr < 0 or (addr >> shift) >= nframes or end > ((addr >> shift) + 1) << shift:
                state[S_OTHER] += 1
                continue
            outcome, off, plen = ethernet_udp(umem, addr, end, port, 0, VERIFY)
            ok, seq, count = False, np.uint64(0), np.int64(0)
            if outcome == UDP_OK:
                ok, seq, count = read_header(umem, off, off + plen)
            if ok:
                acc += seq + np.uint64(count)
                k += 1
                state[S_PACKETS] += 1
                state[S_BYTES] += ln
            else:
                state[S_OTHER] += 1
        recycle(cfg, rx, fr, state, n)
    return k, acc


@njit(nogil=True, cache=True)
def spin_ready(cfg, rx, state, spin_ns):
    """Ready RX descriptors, spinning on the producer index (no system call) for up to spin_ns."""
    ready = _rx_ready(cfg, rx, state)
    if ready or spin_ns <= 0:
        return ready
    deadline = monotonic_ns() + spin_ns
    while True:
        for _ in range(64):
            cpu_pause()
            ready = _rx_ready(cfg, rx, state)
            if ready:
                return ready
        if monotonic_ns() >= deadline:
            return 0


# ---------------------------------------------------------------- the socket
def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _word_of(offset: int, what: str, store: bool, neighbours: list[int]) -> tuple[int, int]:
    """(8-byte word index, bit shift) of the u32 at ``offset`` in a ring mapping; a word we store
    to must be the u32 plus 4 bytes of padding that no other field of the ring uses."""
    if store:
        if offset % 8:
            raise XdpError(f"AF_XDP ring {what} at byte {offset} is not 8-byte aligned (unsupported kernel layout)")
        if any(offset < o < offset + 8 for o in neighbours):
            raise XdpError(f"AF_XDP ring {what} at byte {offset} shares its 8-byte word with another field")
    return offset // 8, (offset % 8) * 8


class XdpSocket:
    """An AF_XDP socket on ``ifname`` queue ``queue`` receiving the UDP datagrams sent to ``lines``
    [(address, port)] (address "" or 0.0.0.0: any), with its XDP program attached. See the module doc.

    mode: "auto" (native, else generic), "native" or "generic". zerocopy: "auto", True, False.
    busy_poll: microseconds for SO_BUSY_POLL (0: off) with SO_PREFER_BUSY_POLL and a budget.
    ``info`` reports what was granted (hugepages, zero-copy or copy, native or generic, busy poll).
    """

    def __init__(self, ifname: str, lines, *, queue: int = 0, frames: int = 4096, frame_size: int = 2048,
                 ring_size: int | None = None, mode: str = "auto", zerocopy="auto", busy_poll: int = 0,
                 busy_budget: int = 64):
        if not ifname:
            raise XdpError("AF_XDP needs the interface named (--ifname); no other interface is touched")
        ring_size = ring_size or frames
        for what, v in (("frames", frames), ("frame_size", frame_size), ("ring_size", ring_size)):
            if not _is_pow2(v):
                raise XdpError(f"AF_XDP {what} must be a power of two, got {v}")
        if not 2048 <= frame_size <= mmap.PAGESIZE or frame_size > 4096:
            raise XdpError(f"AF_XDP frame size must be 2048 or 4096 (aligned mode), got {frame_size}")
        if mode not in ("auto", "native", "generic"):
            raise XdpError(f"XDP mode must be auto, native or generic, not {mode!r}")
        try:
            self.ifindex = socket.if_nametoindex(ifname)
        except OSError:
            raise XdpError(f"no interface named {ifname!r} (in this network namespace)") from None
        check_mtu(ifname, frame_size)
        self.ifname, self.queue = ifname, queue
        self.frames, self.frame_size, self.ring_size = frames, frame_size, ring_size
        self.lines = [(h or "", int(p)) for h, p in lines]
        self.info: dict = {"ifname": ifname, "queue": queue, "frames": frames, "frame_size": frame_size,
                           "ring_size": ring_size}
        self._fds: list[int] = []
        self.sock = None
        self._maps: list[mmap.mmap] = []
        try:
            self._setup(mode, zerocopy, busy_poll, busy_budget)
        except BaseException:
            self.close()
            raise

    # -- setup steps
    def _setup(self, mode, zerocopy, busy_poll, busy_budget) -> None:
        size = self.frames * self.frame_size
        try:
            self.umem_map = mmap.mmap(-1, -(-size // HUGE_PAGE) * HUGE_PAGE,
                                      flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_HUGETLB)
            self.info["umem_pages"] = "hugepages (2 MiB)"
        except OSError as e:
            self.umem_map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            self.info["umem_pages"] = f"ordinary pages (MAP_HUGETLB: {e.strerror or e})"
        self._maps.append(self.umem_map)
        self.umem = np.frombuffer(self.umem_map, np.uint8)[:size]
        self.umem[::mmap.PAGESIZE] = 0                      # touch every page now, not on the first packet
        try:
            self.sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
        except PermissionError:
            raise XdpError("creating an AF_XDP socket: operation not permitted (it needs CAP_NET_RAW; the XDP "
                           "program needs CAP_NET_ADMIN and CAP_BPF: run as root)") from None
        except OSError as e:
            raise XdpError(f"this kernel has no AF_XDP sockets ({e.strerror})") from None
        s = self.sock
        reg = pack(XDP_UMEM_REG_T, addr=self.umem.ctypes.data, len=size, chunk_size=self.frame_size, headroom=0)
        self._sockopt("register the UMEM (XDP_UMEM_REG)", XDP_UMEM_REG, reg)
        for what, opt in (("fill", XDP_UMEM_FILL_RING), ("completion", XDP_UMEM_COMPLETION_RING),
                          ("RX", XDP_RX_RING)):
            self._sockopt(f"size the {what} ring", opt, int(self.ring_size).to_bytes(4, "little"))
        off = unpack(XDP_MMAP_OFFSETS_T, s.getsockopt(SOL_XDP, XDP_MMAP_OFFSETS, XDP_MMAP_OFFSETS_T.itemsize))
        self.offsets = off
        rx_len = off["rx"]["desc"] + self.ring_size * XDP_DESC.itemsize
        fr_len = off["fr"]["desc"] + self.ring_size * FILL_DESC_SIZE
        cr_len = off["cr"]["desc"] + self.ring_size * FILL_DESC_SIZE
        shared = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0x8000)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        self.rx_map = mmap.mmap(s.fileno(), rx_len, shared, prot, offset=XDP_PGOFF_RX_RING)
        self.fr_map = mmap.mmap(s.fileno(), fr_len, shared, prot, offset=XDP_UMEM_PGOFF_FILL_RING)
        self.cr_map = mmap.mmap(s.fileno(), cr_len, shared, prot, offset=XDP_UMEM_PGOFF_COMPLETION_RING)
        self._maps += [self.rx_map, self.fr_map, self.cr_map]
        self.rx = np.frombuffer(self.rx_map, np.int64, rx_len // 8)
        self.fr = np.frombuffer(self.fr_map, np.int64, fr_len // 8)
        self.cfg = self._ring_cfg(off)
        self.state = np.zeros(S_FIELDS, np.int64)
        self.state[S_FR_PROD] = load_word(self.fr, self.cfg[C_FR_PROD]) & U32
        self.state[S_RX_CONS] = load_word(self.rx, self.cfg[C_RX_CONS]) & U32
        # the fill ring gets every frame before bind: the kernel has somewhere to write at once
        fill_now = min(self.frames, self.ring_size)
        addrs = np.arange(fill_now, dtype=np.int64) * self.frame_size
        fill(self.cfg, self.fr, self.state, addrs)
        self._bind(zerocopy)
        self._busy_poll(busy_poll, busy_budget)
        self._attach(mode)
        self._views: dict[int, np.ndarray] = {}

    def _sockopt(self, what: str, opt: int, value: bytes, level: int = SOL_XDP) -> None:
        try:
            self.sock.setsockopt(level, opt, value)
        except OSError as e:
            raise XdpError(f"AF_XDP: cannot {what}: {e.strerror}") from None

    def _ring_cfg(self, off) -> np.ndarray:
        cfg = np.zeros(C_FIELDS, np.int64)
        rx, fr = off["rx"], off["fr"]
        rx_fields = [rx["producer"], rx["consumer"], rx["desc"], rx["flags"]]
        fr_fields = [fr["producer"], fr["consumer"], fr["desc"], fr["flags"]]
        cfg[C_RX_PROD], _ = _word_of(rx["producer"], "RX producer", False, rx_fields)
        cfg[C_RX_CONS], _ = _word_of(rx["consumer"], "RX consumer", True, rx_fields)
        cfg[C_FR_PROD], _ = _word_of(fr["producer"], "fill producer", True, fr_fields)
        cfg[C_FR_FLAGS], cfg[C_FR_FLAGS_SHIFT] = _word_of(fr["flags"], "fill flags", False, fr_fields)
        if rx["producer"] % 8 or rx["desc"] % 8 or fr["desc"] % 8:
            raise XdpError("AF_XDP ring offsets are not 8-byte aligned (unsupported kernel layout)")
        cfg[C_RX_DESC] = rx["desc"] // 8
        cfg[C_FR_DESC] = fr["desc"] // 8
        cfg[C_RX_MASK] = self.ring_size - 1
        cfg[C_FR_MASK] = self.ring_size - 1
        cfg[C_FRAME_MASK] = ~(self.frame_size - 1)
        cfg[C_FRAME_SHIFT] = self.frame_size.bit_length() - 1
        cfg[C_FD] = self.sock.fileno()
        return cfg

    def _bind(self, zerocopy) -> None:
        tries = {True: [XDP_ZEROCOPY], False: [XDP_COPY], "auto": [XDP_ZEROCOPY, XDP_COPY]}[zerocopy]
        last = None
        for how in tries:
            addr = pack(SOCKADDR_XDP, sxdp_family=AF_XDP, sxdp_flags=how | XDP_USE_NEED_WAKEUP,
                        sxdp_ifindex=self.ifindex, sxdp_queue_id=self.queue)
            try:
                bind_raw(self.sock.fileno(), addr)
            except OSError as e:
                last = e
                if e.errno in (errno.EPERM, errno.EACCES):
                    break
                continue
            self.info["copy_mode"] = "zero-copy" if how == XDP_ZEROCOPY else "copy"
            if how == XDP_COPY and last is not None:
                self.info["zero_copy_refused"] = last.strerror
            return
        if last.errno == errno.EINVAL and self.queue:
            raise XdpError(f"{self.ifname} has no RX queue {self.queue}") from None
        raise XdpError(f"AF_XDP bind to {self.ifname} queue {self.queue} refused: {last.strerror}") from None

    def _busy_poll(self, usec: int, budget: int) -> None:
        if not usec:
            self.info["busy_poll"] = "off"
            return
        got = []
        for name, opt, v in (("SO_PREFER_BUSY_POLL", SO_PREFER_BUSY_POLL, 1), ("SO_BUSY_POLL", SO_BUSY_POLL, usec),
                             ("SO_BUSY_POLL_BUDGET", SO_BUSY_POLL_BUDGET, budget)):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, v)
                got.append(name)
            except OSError as e:
                got.append(f"{name} refused ({e.strerror})")
        self.info["busy_poll"] = f"{usec} us, budget {budget}: " + ", ".join(got)

    def _attach(self, mode) -> None:
        try:
            self.map_fd = map_create(BPF_MAP_TYPE_XSKMAP, 4, 4, self.queue + 1, b"itchflow_xsk")
        except BpfError as e:
            raise _capability(e, "create the XSKMAP") from None
        self._fds.append(self.map_fd)
        try:
            map_update(self.map_fd, self.queue, self.sock.fileno())
        except BpfError as e:
            raise _capability(e, "put the socket in the XSKMAP") from None
        prog = redirect_program(self.map_fd, self.lines)
        try:
            self.prog_fd = prog_load(BPF_PROG_TYPE_XDP, prog, b"itchflow_feed")
        except BpfError as e:
            raise _capability(e, "load the XDP program") from None
        self._fds.append(self.prog_fd)
        tries = {"auto": [("native", XDP_FLAGS_DRV_MODE), ("generic", XDP_FLAGS_SKB_MODE)],
                 "native": [("native", XDP_FLAGS_DRV_MODE)], "generic": [("generic", XDP_FLAGS_SKB_MODE)]}[mode]
        errors = []
        for name, flags in tries:
            try:
                self.link_fd = link_create(self.prog_fd, self.ifindex, BPF_XDP, flags)
            except BpfError as e:
                if e.errno == errno.EPERM:
                    raise _capability(e, "attach the XDP program") from None
                if e.errno == errno.EBUSY:
                    raise XdpError(f"{self.ifname} already has an XDP program attached (by another process); "
                                   "itchflow does not replace it") from None
                errors.append(f"{name}: {e.strerror}")
                continue
            self._fds.append(self.link_fd)
            self.info["xdp_mode"] = name
            return
        raise XdpError(f"{self.ifname} refuses XDP ({'; '.join(errors)})")

    # -- receiving
    def frames_at(self, offset: int) -> np.ndarray:
        """The UMEM as rows (one per frame) starting ``offset`` bytes into each frame."""
        v = self._views.get(offset)
        if v is None:
            v = self._views[offset] = frame_rows(self.umem, self.frame_size, offset)
        return v

    def line_table(self) -> np.ndarray:
        """Rows (address as u32 or 0, port, this interface's MAC as u48 or 0) per line."""
        mac = interface_mac(self.ifname)
        return np.array([[ipv4_u32(h), p, mac] for h, p in self.lines], np.int64).reshape(-1, 3)

    def counters(self) -> dict:
        d = {name: int(self.state[i]) for name, i in zip(COUNTERS, _COUNTER_SLOTS)}
        d.update(self.statistics())
        return d

    def statistics(self) -> dict:
        """The kernel's XDP_STATISTICS (rx_dropped, rx_ring_full, rx_fill_ring_empty_descs, ...)."""
        if self.sock is None:
            return {}
        raw = self.sock.getsockopt(SOL_XDP, XDP_STATISTICS, XDP_STATISTICS_T.itemsize)
        return {f"xdp_{k}": v for k, v in unpack(XDP_STATISTICS_T, raw).items()}

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        """Detach (closing the link), free the program, the map, the socket and the memory."""
        for fd in reversed(self._fds):
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        for attr in ("rx", "fr", "umem", "_views"):
            if hasattr(self, attr):
                delattr(self, attr)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                pass
        self._maps.clear()

    def __enter__(self) -> "XdpSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _capability(e: BpfError, what: str) -> XdpError:
    if e.errno == errno.EPERM:
        return XdpError(f"cannot {what}: operation not permitted (AF_XDP needs CAP_NET_ADMIN and CAP_BPF, "
                        "or root)")
    return XdpError(f"cannot {what}: {e}")


@njit(nogil=True, cache=True)
def load_word(words, i):
    return load_acquire(words, i)


@njit(nogil=True, cache=True)
def fill(cfg, fr, state, addrs):
    """Put frame addresses on the fill ring (the caller keeps within its size) and publish them."""
    prod = state[S_FR_PROD]
    for i in range(addrs.shape[0]):
        fr[cfg[C_FR_DESC] + ((prod + i) & cfg[C_FR_MASK])] = addrs[i]
    state[S_FR_PROD] = (prod + addrs.shape[0]) & U32
    store_release(fr, cfg[C_FR_PROD], state[S_FR_PROD])
    state[S_FILL_PUBLISHES] += 1


class XdpRecv:
    """The ``xdp`` engine for ``sources.udp.listen``: one AF_XDP socket takes both lines' datagrams
    (the line is told by each datagram's destination); the receiver gets them as rows of a view
    of the UMEM frames, no copy. Re-request replies still come on an ordinary socket."""

    name = "xdp"

    def __init__(self, ifname: str | None = None, queue: int = 0, batch: int = 64, frames: int = 4096,
                 busy_poll: int = 0, mode: str = "auto"):
        self.ifname, self.queue, self.batch = ifname, queue, batch
        self.frames, self.busy_poll, self.mode = frames, busy_poll, mode
        self.xsk: XdpSocket | None = None
        self.lengths = np.zeros(batch, np.int64)
        self.run_of = np.zeros(batch, np.int64)
        self.run_table = np.zeros((batch, R_FIELDS), np.int64)
        self.rx_ns = np.zeros(batch, np.int64)
        self.slots = MmsgSlots(batch, 65536)   # re-request replies come on an ordinary UDP socket

    def read_batch(self, sock) -> int:
        """One recvmmsg on an ordinary socket (the re-request replies) into ``slots``."""
        return self.slots.receive(sock.fileno())

    def run_peer(self, i: int) -> str | None:
        """The sender of row i of the run ``runs`` is yielding, read from the frame's headers."""
        first, step, off = self._run
        start = (first + step * i) * self.xsk.frame_size
        return udp_sender(self.xsk.umem[start:start + off], off)

    def open(self, lines) -> int:
        """Attach to the interface for these lines [(address, port)]; returns the fd to poll."""
        self.xsk = XdpSocket(self.ifname, lines, queue=self.queue, frames=self.frames, busy_poll=self.busy_poll,
                             mode=self.mode)
        self.table = self.xsk.line_table()
        return self.xsk.fileno()

    def runs(self):
        """Yield (rows, lengths, k, line, rx_ns) for each run of ready frames (see next_window);
        a window's frames are given back once the caller has handled all its runs and asks for
        the next one (handle each run's events before that)."""
        x = self.xsk
        while True:
            n, n_runs = next_window(x.cfg, x.rx, x.umem, x.state, self.table, self.batch, self.run_of,
                                    self.lengths, self.run_table)
            if n == 0:
                return
            if n_runs:
                # no kernel timestamp in copy mode: the receive time is when the walk saw the window
                self.rx_ns[:] = time.time_ns()
                which = self.run_of[:n]
                for r in range(n_runs):
                    line, first, step, off, k, _ = (int(v) for v in self.run_table[r])
                    self._run = (first, step, off)    # for run_peer, while the run is handled
                    rows = x.frames_at(off)[first:first + step * (k - 1) + 1:step]
                    lengths = self.lengths[:n] if n_runs == 1 and k == n else self.lengths[:n][which == r]
                    yield rows, lengths, k, line, self.rx_ns
            recycle(x.cfg, x.rx, x.fr, x.state, n)

    def poll_function(self, poller, fd: int, every: int = 64):
        """A stand-in for ``poller.poll`` for the listen loop: while frames are ready it answers
        from the ring itself (no system call) and looks at the other descriptors (re-request
        replies) only every ``every``-th time; with busy polling it spins on the ring up to
        busy_poll microseconds before sleeping in poll()."""
        x = self.xsk
        spin_ns = int(self.busy_poll) * 1000
        counts = self.loop_counts = {"ring_checks": 0, "polls": 0}
        ready_now = [(fd, 1)]

        def poll(timeout_ms):
            counts["ring_checks"] += 1
            if spin_ready(x.cfg, x.rx, x.state, spin_ns):
                if counts["ring_checks"] % every:
                    return ready_now
                counts["polls"] += 1
                return ready_now + [e for e in poller.poll(0) if e[0] != fd]
            counts["polls"] += 1
            return poller.poll(timeout_ms)

        return poll

    def counters(self) -> dict:
        return {} if self.xsk is None else {**self.xsk.counters(), **{k: v for k, v in self.xsk.info.items()}}

    def close(self) -> None:
        if self.xsk is not None:
            self.info = dict(self.xsk.info)
            self.final = {**self.xsk.counters(), **{f"loop_{k}": v for k, v in getattr(self, "loop_counts", {}).items()}}
            self.xsk.close()
            self.xsk = None


def frame_rows(umem: np.ndarray, frame_size: int, offset: int) -> np.ndarray:
    """The UMEM as read-only rows, one per frame, each starting ``offset`` bytes into its frame.

    With more than one frame and ``offset > 0`` the rows are not contiguous, so Numba types them
    as layout 'A'; a one-frame view would be typed 'C' and compile other kernels (the warm-up
    below must see the same type as the receive loop, or the first packets wait for a compile).
    """
    return np.lib.stride_tricks.as_strided(umem[offset:], (len(umem) // frame_size, frame_size - offset),
                                           (frame_size, 1), writeable=False)


def warm_up() -> None:
    """Compile (or load) the ring walk now, not on the first packet: rings of zeros are empty."""
    cfg = np.zeros(C_FIELDS, np.int64)
    cfg[C_RX_DESC] = cfg[C_FR_DESC] = 8
    cfg[C_RX_MASK] = cfg[C_FR_MASK] = 0
    cfg[C_FRAME_MASK], cfg[C_FRAME_SHIFT], cfg[C_FD] = ~2047, 11, -1
    words = np.zeros(16, np.int64)
    fr = np.zeros(16, np.int64)
    state = np.zeros(S_FIELDS, np.int64)
    umem = np.zeros(2 * 2048, np.uint8)
    lines = np.zeros((1, 2), np.int64)
    lengths = np.zeros(1, np.int64)
    next_window(cfg, words, umem, state, lines, 1, lengths.copy(), lengths, np.zeros((1, R_FIELDS), np.int64))
    recycle(cfg, words, fr, state, 0)
    spin_ready(cfg, words, state, 1)
    load_word(words, 0)
    fill(cfg, fr, state, np.zeros(0, np.int64))
    # the receiver's compiled in-order path, typed for read-only strided rows of the UMEM
    from itchflow.protocol.mold.receiver import MoldReceiver
    from itchflow.wire.moldudp64 import pack_header

    pkt = np.frombuffer(pack_header(b"WARMUP", 1, 1) + b"\x00\x01A", np.uint8)
    umem[64:64 + len(pkt)] = pkt
    # A run of several frames is a strided view (layout 'A'); a run of one frame is a single row,
    # which numpy calls contiguous (layout 'C'): the receive loop meets both.
    for rows in (frame_rows(umem, 2048, 64), frame_rows(umem, 2048, 64)[:1]):
        MoldReceiver(b"WARMUP").receive_batch(rows, np.array([len(pkt)], np.int64), 1, 0, 0, np.zeros(1, np.int64))
