"""recv and recvmmsg called from compiled code (Numba), with kernel receive timestamps.

The C functions are declared with ``types.ExternalFunction`` (libc is in the process), so
every kernel here is cacheable. ``struct mmsghdr`` arrays live in numpy memory, laid out
once below for Linux x86-64 / aarch64 (LP64).
"""

from __future__ import annotations

import socket

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_recvmmsg = types.ExternalFunction(
    "recvmmsg", types.intc(types.intc, types.voidptr, types.uintc, types.intc, types.voidptr))
_recv = types.ExternalFunction("recv", types.intp(types.intc, types.voidptr, types.uintp, types.intc))

MSG_DONTWAIT = 0x40
SOL_SOCKET = socket.SOL_SOCKET
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS

# struct msghdr (LP64): name@0 namelen@8 iov@16 iovlen@24 control@32 controllen@40 flags@48;
# struct mmsghdr adds msg_len@56 and pads to 64. struct iovec: base@0 len@8.
MMSGHDR_SIZE = 64
_NAME, _NAMELEN, _IOV, _IOVLEN, _CONTROL, _CONTROLLEN, _FLAGS, _MSGLEN = 0, 8, 16, 24, 32, 40, 48, 56
# The sender's address (msg_name): a struct sockaddr_in (16 bytes) or sockaddr_in6 (28), read
# only when a datagram is reported (a malformed packet names its peer).
NAME_SIZE = 32
CONTROL_SIZE = 64   # one cmsghdr (16) + struct timespec (16), with room
# struct cmsghdr: len@0 (size_t) level@8 (int) type@12 (int) data@16
_CMSG_HDR = 16


@intrinsic
def _voidptr(typingctx, address):
    """An integer address as void* (for ExternalFunction pointer arguments)."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())
    return types.voidptr(address), codegen


@njit(inline="always", nogil=True, cache=True)
def _u64(a, off):
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(a[off + k]) << np.uint64(8 * k)
    return v


@njit(inline="always", nogil=True, cache=True)
def _put_u64(a, off, v):
    for k in range(8):
        a[off + k] = np.uint8((np.uint64(v) >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(nogil=True, cache=True)
def recvmmsg_batch(fd, hdrs, ctrl, lengths, rx_ns):
    """One non-blocking recvmmsg into the prepared slots.

    Returns the number of datagrams (0 if none were queued, -1 on another error); fills
    lengths[i] and rx_ns[i] (kernel SO_TIMESTAMPNS time, CLOCK_REALTIME ns, or 0).
    """
    vlen = hdrs.shape[0]
    for i in range(vlen):
        _put_u64(hdrs[i], _CONTROLLEN, CONTROL_SIZE)   # the kernel overwrites these
        _put_u64(hdrs[i], _FLAGS, 0)
        _put_u64(hdrs[i], _NAMELEN, NAME_SIZE)         # (socklen_t and its padding)
    n = _recvmmsg(fd, _voidptr(hdrs.ctypes.data), vlen, MSG_DONTWAIT, _voidptr(0))
    if n < 0:
        return -1
    for i in range(n):
        h = hdrs[i]
        lengths[i] = np.int64(h[_MSGLEN]) | (np.int64(h[_MSGLEN + 1]) << 8) | (
            np.int64(h[_MSGLEN + 2]) << 16) | (np.int64(h[_MSGLEN + 3]) << 24)
        rx_ns[i] = 0
        clen = np.int64(_u64(h, _CONTROLLEN))
        c = ctrl[i]
        pos = 0
        while pos + _CMSG_HDR <= clen and pos + _CMSG_HDR <= c.shape[0]:
            ln = np.int64(_u64(c, pos))
            level = np.int64(c[pos + 8]) | (np.int64(c[pos + 9]) << 8)
            typ = np.int64(c[pos + 12]) | (np.int64(c[pos + 13]) << 8)
            if ln < _CMSG_HDR:
                break
            if level == SOL_SOCKET and typ == SCM_TIMESTAMPNS and pos + _CMSG_HDR + 16 <= c.shape[0]:
                sec = np.int64(_u64(c, pos + _CMSG_HDR))
                nsec = np.int64(_u64(c, pos + _CMSG_HDR + 8))
                rx_ns[i] = sec * 1_000_000_000 + nsec
            pos += (ln + 7) & ~7
    return n


@njit(nogil=True, cache=True)
def recv_one(fd, buf):
    """One non-blocking recv into buf: its length, or -1 if nothing was queued."""
    return _recv(fd, _voidptr(buf.ctypes.data), buf.shape[0], MSG_DONTWAIT)


class MmsgSlots:
    """Preallocated buffers and mmsghdr/iovec/control arrays for recvmmsg batches."""

    def __init__(self, vlen: int = 64, slot_size: int = 2048):
        self.vlen, self.slot_size = vlen, slot_size
        self.bufs = np.zeros((vlen, slot_size), np.uint8)
        self.iov = np.zeros((vlen, 2), np.uint64)
        self.ctrl = np.zeros((vlen, CONTROL_SIZE), np.uint8)
        self.hdrs = np.zeros((vlen, MMSGHDR_SIZE), np.uint8)
        self.names = np.zeros((vlen, NAME_SIZE), np.uint8)
        self.lengths = np.zeros(vlen, np.int64)
        self.rx_ns = np.zeros(vlen, np.int64)
        h = self.hdrs.view(np.uint64)  # (vlen, 8) words
        for i in range(vlen):
            self.iov[i, 0] = self.bufs[i].ctypes.data
            self.iov[i, 1] = slot_size
            h[i, _IOV // 8] = self.iov[i].ctypes.data
            h[i, _IOVLEN // 8] = 1
            h[i, _CONTROL // 8] = self.ctrl[i].ctypes.data
            h[i, _CONTROLLEN // 8] = CONTROL_SIZE
            h[i, _NAME // 8] = self.names[i].ctypes.data
            h[i, _NAMELEN // 8] = NAME_SIZE

    def receive(self, fd: int) -> int:
        """Datagrams now in bufs[:n] (lengths[:n], rx_ns[:n], senders in names[:n]); 0 if none
        were queued."""
        n = recvmmsg_batch(fd, self.hdrs, self.ctrl, self.lengths, self.rx_ns)
        return max(int(n), 0)

    def peer(self, i: int) -> str | None:
        """The sender of datagram i of the last ``receive`` ("HOST:PORT"), None when its
        slot holds no address (filled by another reader)."""
        return sockaddr_text(self.names[i])


def sockaddr_text(name: np.ndarray) -> str | None:
    """A struct sockaddr_in / sockaddr_in6 as "HOST:PORT" ("[HOST]:PORT"); None for another
    family (or none: zeros)."""
    family = int(name[0]) | int(name[1]) << 8
    port = int(name[2]) << 8 | int(name[3])
    if family == socket.AF_INET:
        return f"{socket.inet_ntop(socket.AF_INET, name[4:8].tobytes())}:{port}"
    if family == socket.AF_INET6:
        return f"[{socket.inet_ntop(socket.AF_INET6, name[8:24].tobytes())}]:{port}"
    return None
