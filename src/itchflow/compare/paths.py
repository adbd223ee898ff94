"""Every ingestion path of the comparison, declared once as data: what the code does on the way
from the sender's bytes to the bytes the book engine reads (each copy, each kernel crossing,
who polls), and the qualitative rows (who writes the memory, backpressure, interrupts or
polling, privileges, portability). The measured columns come from running them; these rows
come from reading the code, and the diagrams are drawn from both.

A step is (label, where, copies): where is "send" (the sender's process), "kernel", "recv"
(the receiving thread), "shm" (memory shared between two sides), "books"; copies is True when
the step copies the message bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEND, KERNEL, RECV, SHM, BOOKS = "send", "kernel", "recv", "shm", "books"


@dataclass(frozen=True)
class PathInfo:
    key: str
    title: str
    family: str                  # "local" (same machine, no network) or "network"
    steps: tuple                 # (label, where, copies) in order, sender to books
    writes_memory: str           # who writes the memory the reader reads
    backpressure: str
    wakeup: str                  # interrupts or polling, and who polls
    privileges: str
    portability: str
    poller: str = ""             # the step that polls (drawn on the diagram)
    unit: str = "datagram"       # what the row's "packets" are ("": it has none)
    notes: tuple = field(default_factory=tuple)

    @property
    def copies(self) -> int:
        """Copies of every message from the sender's bytes to what the engine reads."""
        return sum(1 for _, _, c in self.steps if c)

    @property
    def kernel_crossings(self) -> int:
        """Boundaries between user space and the kernel on the data's way (a count per path,
        not per message: the system call count per message is measured)."""
        wheres = [w for _, w, _ in self.steps]
        return sum(1 for a, b in zip(wheres, wheres[1:]) if (a == KERNEL) != (b == KERNEL))

    def copy_steps(self) -> list[str]:
        return [label for label, _, c in self.steps if c]


_MOLD_IN_ORDER = ("MoldReceiver.receive_batch: in-order run copied out", RECV, True)
_SENDER = ("sender: MoldUDP64 packet in its buffer", SEND, False)
_SENDMSG = ("sendmsg: user buffer -> skb", KERNEL, True)
_VETH = ("veth / lo: skb handed to the peer, UDP stack", KERNEL, False)

PATHS: dict[str, PathInfo] = {p.key: p for p in (
    PathInfo(
        "inprocess", "in-process (mmap, no hand-off)", "local",
        (("day file in the page cache, memory-mapped", SHM, False),
         ("engine reads the mapping in place", BOOKS, False)),
        writes_memory="nobody at run time: the file's pages, mapped read-only",
        backpressure="none needed (one thread)",
        wakeup="none: one thread, no hand-off",
        privileges="none", portability="any OS with mmap", unit="",
        notes=("the baseline: every other row's books must equal these",)),
    PathInfo(
        "ring_threads", "ring between two threads", "local",
        (("producer thread reads the mapped day", SEND, False),
         ("publish_paced: memcpy into the ring", SHM, True),
         ("consumer thread: engine reads the ring in place", BOOKS, False)),
        writes_memory="our producer thread (one compiled call, GIL released)",
        backpressure="blocking ring: the producer waits for the consumer (claim_wait)",
        wakeup="the consumer polls the next record's header (spin, then yield)",
        privileges="none", portability="any OS (Numba atomics: x86-64, aarch64)",
        poller="consumer thread", unit="ring record",
        notes=("each side is one compiled call that releases the GIL (pipeline.threaded): neither waits "
               "for the other's hold of the interpreter",)),
    PathInfo(
        "ring_processes", "ring between two processes", "local",
        (("reader process reads the mapped day", SEND, False),
         ("publish_messages: memcpy into /dev/shm ring", SHM, True),
         ("books process: engine reads the ring in place", BOOKS, False)),
        writes_memory="our producer process, into a shared file mapping",
        backpressure="blocking ring: the producer waits for the slowest live consumer",
        wakeup="the consumer polls the next record's header (yield unless pinned)",
        privileges="none", portability="Linux, POSIX shm (a file under /dev/shm)",
        poller="books process", unit="ring record"),
    PathInfo(
        "tail", "tail: polling a growing file (fstat + pread)", "local",
        (("writer process: the day in its buffer", SEND, False),
         ("write(): user buffer -> page cache", KERNEL, True),
         ("pread(): page cache -> the reader's own buffer (fstat poll)", KERNEL, True),
         ("engine reads that buffer in place", BOOKS, False)),
        writes_memory="the kernel (page cache), on the writer process's write()",
        backpressure="none: the file grows without bound (the disk is the buffer)",
        wakeup="the reader polls the size with fstat, sleeping 0.5 ms when idle",
        privileges="none", portability="any POSIX system",
        poller="reader (fstat)", unit="file piece"),
    PathInfo(
        "udp_recv", "UDP recv (compiled), one datagram per call", "network",
        (_SENDER, _SENDMSG, _VETH,
         ("recv: skb -> our buffer", RECV, True), _MOLD_IN_ORDER,
         ("engine reads the copy", BOOKS, False)),
        writes_memory="the kernel, inside each recv() call",
        backpressure="none: the kernel drops when SO_RCVBUF is full (seen as sequence gaps)",
        wakeup="interrupt driven: poll() sleeps until the kernel queues a datagram",
        privileges="none", portability="any OS with sockets (compiled via libc recv)",
        poller="poll() when empty"),
    PathInfo(
        "udp_recvmmsg", "UDP recvmmsg x64 (compiled)", "network",
        (_SENDER, _SENDMSG, _VETH,
         ("recvmmsg: skb -> slot buffers, 64 per call", RECV, True), _MOLD_IN_ORDER,
         ("engine reads the copy", BOOKS, False)),
        writes_memory="the kernel, inside each recvmmsg() call",
        backpressure="none: the kernel drops when SO_RCVBUF is full",
        wakeup="interrupt driven: poll() sleeps until the kernel queues a datagram",
        privileges="none", portability="Linux (recvmmsg), BSDs have it too",
        poller="poll() when empty"),
    PathInfo(
        "tpacket", "TPACKET_V3 ring (mmap + polling)", "network",
        (_SENDER, _SENDMSG, _VETH,
         ("tpacket_rcv: skb -> ring frame the kernel fills", KERNEL, True),
         ("walk: payload -> slot buffers", RECV, True), _MOLD_IN_ORDER,
         ("engine reads the copy", BOOKS, False)),
        writes_memory="the kernel, into blocks of a ring this process mapped",
        backpressure="none: the kernel drops when no block is free (tp_drops)",
        wakeup="polling: blocks retire when full or after 1 ms; poll() only when none is ready",
        privileges="CAP_NET_RAW", portability="Linux only (AF_PACKET)",
        poller="receiver walks block status words",
        notes=("the UDP socket still receives each datagram (AF_PACKET is a tap)",)),
    PathInfo(
        "af_xdp", "AF_XDP socket (kernel bypass model)", "network",
        (_SENDER, _SENDMSG, ("veth: XDP program redirects to the XSKMAP", KERNEL, False),
         ("generic/copy mode: frame -> UMEM", KERNEL, True),
         ("receive loop reads the UMEM frame in place", RECV, False), _MOLD_IN_ORDER,
         ("engine reads the copy", BOOKS, False)),
        writes_memory="the kernel's XDP path, into UMEM frames this process owns",
        backpressure="none: drops when the fill ring is empty or RX ring full (XDP_STATISTICS)",
        wakeup="polling the RX ring; the kernel is woken only when need_wakeup asks",
        privileges="CAP_NET_ADMIN + CAP_BPF (root)", portability="Linux >= 5.4 with XDP on the interface",
        poller="receiver polls the RX ring",
        notes=("veth has no zero-copy mode: copy mode is what runs here",)),
    PathInfo(
        "hybrid", "hybrid: TPACKET_V3 -> ring -> books in another process", "network",
        (_SENDER, _SENDMSG, _VETH,
         ("tpacket_rcv: skb -> ring frame", KERNEL, True),
         ("walk: payload -> slot buffers", RECV, True), _MOLD_IN_ORDER,
         ("publish_messages: memcpy into /dev/shm ring", SHM, True),
         ("books process: engine reads the ring in place", BOOKS, False)),
        writes_memory="the kernel (packet ring), then our reader process (shared ring)",
        backpressure="none on the network side; the shared ring blocks the reader",
        wakeup="the reader polls the packet ring, the books process polls the shared ring",
        privileges="CAP_NET_RAW", portability="Linux only",
        poller="reader and books process"),
    PathInfo(
        "hybrid_xdp", "hybrid: AF_XDP -> ring -> books in another process", "network",
        (_SENDER, _SENDMSG, ("veth: XDP program redirects to the XSKMAP", KERNEL, False),
         ("generic/copy mode: frame -> UMEM", KERNEL, True),
         ("reader reads the UMEM frame in place", RECV, False), _MOLD_IN_ORDER,
         ("publish_messages: memcpy into /dev/shm ring", SHM, True),
         ("books process: engine reads the ring in place", BOOKS, False)),
        writes_memory="the kernel's XDP path (UMEM), then our reader process (shared ring)",
        backpressure="none on the network side; the shared ring blocks the reader",
        wakeup="the reader polls the RX ring, the books process polls the shared ring",
        privileges="CAP_NET_ADMIN + CAP_BPF (root)", portability="Linux >= 5.4 with XDP on the interface",
        poller="reader and books process"),
)}

ORDER = tuple(PATHS)
NETWORK = tuple(k for k, p in PATHS.items() if p.family == "network")
