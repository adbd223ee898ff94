"""AF_XDP layouts (linux/if_xdp.h), declared once as numpy dtypes, plus the socket constants.

An AF_XDP socket shares four rings with the kernel, each a mapping that holds a producer
index, a consumer index, a flags word and an array of descriptors; where each sits in its
mapping is asked of the kernel (``XDP_MMAP_OFFSETS``), never assumed. Indices are free-running
u32 counters; a ring's size is a power of two and an entry is ``index & (size - 1)``.

- fill ring (user produces): u64 UMEM addresses of frames the kernel may write into;
- RX ring (kernel produces): ``xdp_desc`` (addr, len, options) of frames written;
- completion / TX rings: for sending (unused by a receiver, but the layout is here).

The RX descriptor's ``addr`` points at the packet data, which starts after the frame's
headroom: mask it back to the frame start (aligned mode) before giving the frame back.
"""

from __future__ import annotations

import numpy as np

AF_XDP = 44
SOL_XDP = 283

# setsockopt/getsockopt names (level SOL_XDP)
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7
XDP_OPTIONS = 8
XDP_OPTIONS_ZEROCOPY = 1

# sockaddr_xdp.sxdp_flags
XDP_SHARED_UMEM = 1 << 0
XDP_COPY = 1 << 1
XDP_ZEROCOPY = 1 << 2
XDP_USE_NEED_WAKEUP = 1 << 3

# ring flags word
XDP_RING_NEED_WAKEUP = 1 << 0

# mmap page offsets of the rings (pass as the mmap offset)
XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

# copy mode puts the packet this far into the frame (XDP_PACKET_HEADROOM), after the UMEM headroom
XDP_PACKET_HEADROOM = 256

SOCKADDR_XDP = np.dtype([("sxdp_family", "<u2"), ("sxdp_flags", "<u2"), ("sxdp_ifindex", "<u4"),
                         ("sxdp_queue_id", "<u4"), ("sxdp_shared_umem_fd", "<u4")])
XDP_DESC = np.dtype([("addr", "<u8"), ("len", "<u4"), ("options", "<u4")])
# v1 (24 bytes) is addr, len, chunk_size, headroom; later kernels add flags (and tx_metadata_len),
# and accept the shorter form. We pass the full 32 bytes with the additions zero.
XDP_UMEM_REG_T = np.dtype([("addr", "<u8"), ("len", "<u8"), ("chunk_size", "<u4"), ("headroom", "<u4"),
                           ("flags", "<u4"), ("tx_metadata_len", "<u4")])
XDP_RING_OFFSET = np.dtype([("producer", "<u8"), ("consumer", "<u8"), ("desc", "<u8"), ("flags", "<u8")])
XDP_MMAP_OFFSETS_T = np.dtype([("rx", XDP_RING_OFFSET), ("tx", XDP_RING_OFFSET), ("fr", XDP_RING_OFFSET),
                               ("cr", XDP_RING_OFFSET)])
XDP_STATISTICS_T = np.dtype([("rx_dropped", "<u8"), ("rx_invalid_descs", "<u8"), ("tx_invalid_descs", "<u8"),
                             ("rx_ring_full", "<u8"), ("rx_fill_ring_empty_descs", "<u8"),
                             ("tx_ring_empty_descs", "<u8")])
FILL_DESC_SIZE = 8          # the fill and completion rings hold bare u64 addresses

assert SOCKADDR_XDP.itemsize == 16
assert XDP_DESC.itemsize == 16
assert XDP_UMEM_REG_T.itemsize == 32
assert XDP_MMAP_OFFSETS_T.itemsize == 128
assert XDP_STATISTICS_T.itemsize == 48

# byte offsets of the descriptor fields, for the compiled ring walk (read as 8-byte words)
DESC_ADDR_WORD = XDP_DESC.fields["addr"][1] // 8
DESC_LEN_WORD = XDP_DESC.fields["len"][1] // 8          # len is the low half of the second word
DESC_WORDS = XDP_DESC.itemsize // 8
assert XDP_DESC.fields["len"][1] % 8 == 0


def pack(dtype: np.dtype, **fields) -> bytes:
    """One struct of ``dtype`` with the given fields (others zero), as bytes."""
    a = np.zeros(1, dtype)
    for k, v in fields.items():
        a[k] = v
    return a.tobytes()


def unpack(dtype: np.dtype, raw: bytes) -> dict:
    """A struct read back as {field: int}; a shorter struct (an older kernel's) leaves the
    missing trailing fields zero."""
    a = np.zeros(1, dtype)
    n = min(len(raw), dtype.itemsize)
    a.view(np.uint8)[:n] = np.frombuffer(raw[:n], np.uint8)
    return _as_dict(a[0])


def _as_dict(rec) -> dict:
    out = {}
    for name in rec.dtype.names:
        v = rec[name]
        out[name] = _as_dict(v) if v.dtype.names else int(v)
    return out
