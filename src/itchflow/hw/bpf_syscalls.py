"""The kernel calls an AF_XDP source needs: ``bpf()`` (maps, program load, links), ``bind`` of an
AF_XDP address, ``perf_event_open`` to count system calls, and the call the compiled receive
loop makes to wake the kernel (``recvfrom``).

Setup happens once, from Python (ctypes and os); only ``wake_rx`` is called from compiled code,
declared with ``types.ExternalFunction`` so the kernels stay cacheable. ``union bpf_attr`` variants are declared once below as numpy dtypes (linux/bpf.h).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

import numpy as np
from numba import njit, types

from itchflow.hw.net_syscalls import MSG_DONTWAIT, _voidptr

SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), 321)
SYS_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}.get(platform.machine(), 298)

BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_PROG_LOAD, BPF_PROG_TEST_RUN, BPF_LINK_CREATE = 0, 2, 5, 10, 28
BPF_MAP_TYPE_XSKMAP = 17
BPF_PROG_TYPE_XDP = 6
BPF_XDP = 37                      # attach type of an XDP link
XDP_FLAGS_SKB_MODE = 1 << 1       # generic XDP (after the skb is built)
XDP_FLAGS_DRV_MODE = 1 << 2       # native XDP (in the driver)
BPF_ANY = 0
ATTR_SIZE = 144                   # we pass this much, zero past the fields we set (the kernel checks)

MAP_CREATE_ATTR = np.dtype([("map_type", "<u4"), ("key_size", "<u4"), ("value_size", "<u4"),
                            ("max_entries", "<u4"), ("map_flags", "<u4"), ("inner_map_fd", "<u4"),
                            ("numa_node", "<u4"), ("map_name", "S16")])
MAP_ELEM_ATTR = np.dtype([("map_fd", "<u4"), ("pad", "<u4"), ("key", "<u8"), ("value", "<u8"), ("flags", "<u8")])
PROG_LOAD_ATTR = np.dtype([("prog_type", "<u4"), ("insn_cnt", "<u4"), ("insns", "<u8"), ("license", "<u8"),
                           ("log_level", "<u4"), ("log_size", "<u4"), ("log_buf", "<u8"), ("kern_version", "<u4"),
                           ("prog_flags", "<u4"), ("prog_name", "S16"), ("prog_ifindex", "<u4"),
                           ("expected_attach_type", "<u4")])
LINK_CREATE_ATTR = np.dtype([("prog_fd", "<u4"), ("target_ifindex", "<u4"), ("attach_type", "<u4"),
                             ("flags", "<u4")])
TEST_RUN_ATTR = np.dtype([("prog_fd", "<u4"), ("retval", "<u4"), ("data_size_in", "<u4"), ("data_size_out", "<u4"),
                          ("data_in", "<u8"), ("data_out", "<u8"), ("repeat", "<u4"), ("duration", "<u4")])
assert PROG_LOAD_ATTR.fields["prog_name"][1] == 48 and PROG_LOAD_ATTR.fields["expected_attach_type"][1] == 68
assert MAP_CREATE_ATTR.fields["map_name"][1] == 28

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf() call refused; ``log`` holds the verifier's log for a refused program."""

    def __init__(self, err: int, what: str, log: str = ""):
        super().__init__(err, f"{what}: {os.strerror(err)}" + (f"\nverifier log:\n{log}" if log else ""))
        self.log = log


def _attr(dtype: np.dtype, **fields) -> np.ndarray:
    buf = np.zeros(ATTR_SIZE, np.uint8)
    rec = buf[:dtype.itemsize].view(dtype)
    for k, v in fields.items():
        rec[0][k] = v
    return buf


def bpf(cmd: int, attr: np.ndarray, what: str) -> int:
    """bpf(cmd, attr): a file descriptor or 0; BpfError with errno on refusal."""
    r = _libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_long(cmd), ctypes.c_void_p(attr.ctypes.data),
                      ctypes.c_long(len(attr)))
    if r < 0:
        raise BpfError(ctypes.get_errno(), what)
    return int(r)


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, name: bytes = b"") -> int:
    return bpf(BPF_MAP_CREATE, _attr(MAP_CREATE_ATTR, map_type=map_type, key_size=key_size, value_size=value_size,
                                     max_entries=max_entries, map_name=name[:15]), "BPF_MAP_CREATE")


def map_update(map_fd: int, key: int, value: int) -> None:
    k = np.array([key], np.uint32)
    v = np.array([value], np.uint32)
    bpf(BPF_MAP_UPDATE_ELEM, _attr(MAP_ELEM_ATTR, map_fd=map_fd, key=k.ctypes.data, value=v.ctypes.data,
                                   flags=BPF_ANY), "BPF_MAP_UPDATE_ELEM")


def prog_load(prog_type: int, insns: np.ndarray, name: bytes = b"", license: bytes = b"GPL",
              log_size: int = 1 << 16) -> int:
    """Load a program; on refusal load it again with the verifier log on and raise with that log."""
    lic = np.frombuffer(license + b"\0", np.uint8).copy()

    def attempt(level: int, log: np.ndarray | None):
        return _attr(PROG_LOAD_ATTR, prog_type=prog_type, insn_cnt=len(insns), insns=insns.ctypes.data,
                     license=lic.ctypes.data, log_level=level, log_size=0 if log is None else len(log),
                     log_buf=0 if log is None else log.ctypes.data, prog_name=name[:15])

    try:
        return bpf(BPF_PROG_LOAD, attempt(0, None), "BPF_PROG_LOAD")
    except BpfError as e:
        if e.errno == errno.EPERM:      # no capability: the log would not say more
            raise
        log = np.zeros(log_size, np.uint8)
        try:
            return bpf(BPF_PROG_LOAD, attempt(1, log), "BPF_PROG_LOAD")
        except BpfError as e2:
            text = bytes(log).split(b"\0", 1)[0].decode("ascii", "replace")
            raise BpfError(e2.errno, "the kernel refused the XDP program (BPF_PROG_LOAD)", text) from None


def link_create(prog_fd: int, ifindex: int, attach_type: int, flags: int) -> int:
    return bpf(BPF_LINK_CREATE, _attr(LINK_CREATE_ATTR, prog_fd=prog_fd, target_ifindex=ifindex,
                                      attach_type=attach_type, flags=flags), "BPF_LINK_CREATE")


def prog_test_run(prog_fd: int, frame: bytes) -> int:
    """Run a loaded XDP program once on ``frame`` (BPF_PROG_TEST_RUN: no interface involved);
    its return value (XDP_PASS, XDP_REDIRECT, ...)."""
    data = np.frombuffer(bytes(frame), np.uint8).copy()
    out = np.zeros(len(data) + 4096, np.uint8)
    attr = _attr(TEST_RUN_ATTR, prog_fd=prog_fd, data_size_in=len(data), data_in=data.ctypes.data,
                 data_size_out=len(out), data_out=out.ctypes.data, repeat=1)
    bpf(BPF_PROG_TEST_RUN, attr, "BPF_PROG_TEST_RUN")
    return int(attr[:TEST_RUN_ATTR.itemsize].view(TEST_RUN_ATTR)[0]["retval"])


def bind_raw(fd: int, sockaddr: bytes) -> None:
    """bind(fd, sockaddr) for an address family Python's socket module does not know (AF_XDP)."""
    buf = ctypes.create_string_buffer(sockaddr, len(sockaddr))
    if _libc.bind(ctypes.c_int(fd), buf, ctypes.c_uint(len(sockaddr))) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# ---------------------------------------------------------------- counting system calls
PERF_TYPE_TRACEPOINT = 2
PERF_EVENT_ATTR = np.dtype([("type", "<u4"), ("size", "<u4"), ("config", "<u8"), ("sample_period", "<u8"),
                            ("sample_type", "<u8"), ("read_format", "<u8"), ("flags", "<u8")])
PERF_FLAG_DISABLED = 1 << 0
_PERF_ATTR_SIZE = 128
PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_DISABLE, PERF_EVENT_IOC_RESET = 0x2400, 0x2401, 0x2403
SYS_ENTER_ID = ("/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id")


class SyscallCounter:
    """The kernel's own count of system calls entered by the calling thread (the
    raw_syscalls:sys_enter tracepoint through perf_event_open). Needs root or a permissive
    perf_event_paranoid and tracefs; ``open()`` returns None (with ``why``) where not allowed."""

    def __init__(self, fd: int):
        self.fd = fd

    why = ""

    @classmethod
    def open(cls) -> "SyscallCounter | None":
        tp = None
        for path in SYS_ENTER_ID:
            try:
                with open(path) as f:
                    tp = int(f.read())
                break
            except OSError:
                continue
        if tp is None:
            cls.why = "the raw_syscalls:sys_enter tracepoint is not readable (tracefs, root)"
            return None
        attr = np.zeros(_PERF_ATTR_SIZE, np.uint8)
        rec = attr[:PERF_EVENT_ATTR.itemsize].view(PERF_EVENT_ATTR)
        rec[0]["type"], rec[0]["size"], rec[0]["config"] = PERF_TYPE_TRACEPOINT, _PERF_ATTR_SIZE, tp
        rec[0]["flags"] = PERF_FLAG_DISABLED
        fd = _libc.syscall(ctypes.c_long(SYS_PERF_EVENT_OPEN), ctypes.c_void_p(attr.ctypes.data),
                           ctypes.c_long(0), ctypes.c_long(-1), ctypes.c_long(-1), ctypes.c_long(0))
        if fd < 0:
            cls.why = f"perf_event_open: {os.strerror(ctypes.get_errno())}"
            return None
        return cls(int(fd))

    def start(self) -> None:
        _libc.ioctl(self.fd, PERF_EVENT_IOC_RESET, 0)
        _libc.ioctl(self.fd, PERF_EVENT_IOC_ENABLE, 0)

    def stop(self) -> int:
        _libc.ioctl(self.fd, PERF_EVENT_IOC_DISABLE, 0)
        return int.from_bytes(os.read(self.fd, 8), "little")

    def close(self) -> None:
        os.close(self.fd)


# ---------------------------------------------------------------- from compiled code
_recvfrom = types.ExternalFunction("recvfrom", types.intp(types.intc, types.voidptr, types.uintp, types.intc,
                                                          types.voidptr, types.voidptr))


@njit(nogil=True, cache=True)
def wake_rx(fd):
    """Kick the kernel to refill/poll an AF_XDP socket's RX side (an empty non-blocking recvfrom,
    as libxdp does); with busy polling on, this is where the driver is polled."""
    return _recvfrom(fd, _voidptr(0), 0, MSG_DONTWAIT, _voidptr(0), _voidptr(0))

