"""eBPF instructions encoded in Python, and the XDP program that steers a feed into an XSKMAP.

No compiler at run time: the program is a few dozen instructions written here with a small
assembler (labels resolved to jump offsets). Encoding (linux/bpf.h): 8 bytes per instruction,
opcode u8 @0, dst register (low nibble) / src register (high nibble) @1, offset s16 @2,
immediate s32 @4; a 64-bit immediate load takes two slots.

The program: Ethernet (up to two VLAN tags) -> IPv4 (options skipped by IHL, fragments passed)
-> UDP; if the destination address:port is one of the feed's lines, ``bpf_redirect_map`` into
the XSKMAP entry of the packet's RX queue (an empty entry falls back to XDP_PASS); anything
else returns XDP_PASS, untouched, to the kernel stack. Packet bytes are read in host order
(little-endian here), so constants are compared in the byte order they have on the wire.
"""

from __future__ import annotations

import socket
import sys

import numpy as np

from itchflow.wire.ethernet import (
    ETH_HEADER,
    ETH_TYPE,
    ETHERTYPE_IPV4,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    IPPROTO_UDP,
    IPV4_DEST,
    IPV4_FLAGS_FRAG,
    IPV4_FRAGMENT_MASK,
    IPV4_MIN_HEADER,
    IPV4_PROTOCOL,
    IPV4_VERSION_IHL,
    MAX_VLAN_TAGS,
    UDP_DEST_PORT,
    UDP_HEADER,
    VLAN_TAG,
    VLAN_TYPE,
)

BPF_INSN = np.dtype([("code", "u1"), ("regs", "u1"), ("off", "<i2"), ("imm", "<i4")])
assert BPF_INSN.itemsize == 8

# instruction classes, sizes, modes, operations (linux/bpf_common.h, linux/bpf.h)
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
BPF_IMM, BPF_MEM = 0x00, 0x60
BPF_K, BPF_X = 0x00, 0x08
ALU = {"add": 0x00, "sub": 0x10, "mul": 0x20, "or": 0x40, "and": 0x50, "lsh": 0x60, "rsh": 0x70, "mov": 0xB0}
JMP = {"ja": 0x00, "jeq": 0x10, "jgt": 0x20, "jge": 0x30, "jne": 0x50, "jlt": 0xA0, "jle": 0xB0}
BPF_CALL, BPF_EXIT = 0x80, 0x90
BPF_PSEUDO_MAP_FD = 1
SIZES = {1: BPF_B, 2: BPF_H, 4: BPF_W, 8: BPF_DW}

# XDP
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
BPF_FUNC_redirect_map = 51
# struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index (u32 each)
XDP_MD = np.dtype([("data", "<u4"), ("data_end", "<u4"), ("data_meta", "<u4"), ("ingress_ifindex", "<u4"),
                   ("rx_queue_index", "<u4"), ("egress_ifindex", "<u4")])


def wire16(value: int) -> int:
    """A 16-bit field as a host-order load of its wire (big-endian) bytes reads it."""
    return int.from_bytes(value.to_bytes(2, "big"), sys.byteorder)


def wire32(raw: bytes) -> int:
    return int.from_bytes(raw, sys.byteorder)


class Assembler:
    """Instructions and labels; ``code()`` resolves jumps and returns the encoded program."""

    def __init__(self):
        self.items: list = []     # (code, dst, src, off or label, imm) or ("label", name) or ("imm64", ...)

    def label(self, name: str) -> None:
        self.items.append(("label", name))

    def _insn(self, code, dst=0, src=0, off=0, imm=0):
        self.items.append(("insn", code, dst, src, off, imm))

    def alu(self, op: str, dst: int, src: int | None = None, imm: int = 0, wide: bool = True) -> None:
        cls = BPF_ALU64 if wide else BPF_ALU
        if src is None:
            self._insn(cls | ALU[op] | BPF_K, dst, 0, 0, imm)
        else:
            self._insn(cls | ALU[op] | BPF_X, dst, src, 0, 0)

    def load(self, size: int, dst: int, src: int, off: int) -> None:
        self._insn(BPF_LDX | BPF_MEM | SIZES[size], dst, src, off, 0)

    def jump(self, op: str, dst: int, target: str, imm: int = 0, src: int | None = None, w32: bool = False) -> None:
        cls = BPF_JMP32 if w32 else BPF_JMP
        if src is None:
            self._insn(cls | JMP[op] | BPF_K, dst, 0, target, imm)
        else:
            self._insn(cls | JMP[op] | BPF_X, dst, src, target, 0)

    def goto(self, target: str) -> None:
        self._insn(BPF_JMP | JMP["ja"], 0, 0, target, 0)

    def load_map_fd(self, dst: int, fd: int) -> None:
        self.items.append(("imm64", dst, BPF_PSEUDO_MAP_FD, fd))

    def call(self, helper: int) -> None:
        self._insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper)

    def exit(self) -> None:
        self._insn(BPF_JMP | BPF_EXIT)

    def code(self) -> np.ndarray:
        labels: dict[str, int] = {}
        pc = 0
        for it in self.items:
            if it[0] == "label":
                labels[it[1]] = pc
            else:
                pc += 2 if it[0] == "imm64" else 1
        out = np.zeros(pc, BPF_INSN)
        pc = 0
        for it in self.items:
            if it[0] == "label":
                continue
            if it[0] == "imm64":
                _, dst, src, imm = it
                out[pc] = (BPF_LD | BPF_DW | BPF_IMM, dst | (src << 4), 0, _s32(imm))
                out[pc + 1] = (0, 0, 0, 0)
                pc += 2
                continue
            _, code, dst, src, off, imm = it
            if isinstance(off, str):
                off = labels[off] - (pc + 1)
            out[pc] = (code, dst | (src << 4), off, _s32(imm))
            pc += 1
        return out


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def feed_lines(lines) -> list[tuple[int, int]]:
    """[(address, port)] -> [(address as the program compares it (0: any), port as it compares it)]."""
    out = []
    for host, port in lines:
        addr = 0 if not host or host == "0.0.0.0" else wire32(socket.inet_aton(host))
        if not 0 < int(port) < 65536:
            raise ValueError(f"line {host}:{port}: port out of range")
        out.append((addr, wire16(int(port))))
    if not out:
        raise ValueError("the XDP program needs at least one feed line")
    return out


def redirect_program(map_fd: int, lines, *, vlan: bool = True) -> np.ndarray:
    """The XDP program: UDP/IPv4 to one of ``lines`` [(address, port)] -> XSKMAP[rx queue],
    anything else -> XDP_PASS. ``vlan``: also look past up to two 802.1Q/802.1ad tags."""
    keys = feed_lines(lines)
    a = Assembler()
    R0, R1, R2, R3, R4, R5, R6, R7, R8 = range(9)
    md = XDP_MD.fields
    a.alu("mov", R6, R1)                                   # r6 = ctx
    a.load(4, R2, R6, md["data"][1])                       # r2 = data (the header cursor)
    a.load(4, R3, R6, md["data_end"][1])                   # r3 = data_end
    a.alu("mov", R4, R2)
    a.alu("add", R4, imm=ETH_HEADER)
    a.jump("jgt", R4, "pass", src=R3)
    a.load(2, R5, R2, ETH_TYPE)                            # r5 = ethertype
    if vlan:
        for i in range(MAX_VLAN_TAGS):                     # each tag moves the cursor 4 bytes on
            a.jump("jeq", R5, f"tag{i}", imm=wire16(ETHERTYPE_VLAN))
            a.jump("jne", R5, "untagged", imm=wire16(ETHERTYPE_QINQ))
            a.label(f"tag{i}")
            a.alu("mov", R4, R2)
            a.alu("add", R4, imm=ETH_HEADER + VLAN_TAG)
            a.jump("jgt", R4, "pass", src=R3)
            a.load(2, R5, R2, ETH_HEADER + VLAN_TYPE)
            a.alu("add", R2, imm=VLAN_TAG)
        a.label("untagged")
    a.jump("jne", R5, "pass", imm=wire16(ETHERTYPE_IPV4))
    ip = ETH_HEADER                                        # the IP header is at r2 + ip
    a.alu("mov", R4, R2)
    a.alu("add", R4, imm=ip + IPV4_MIN_HEADER)
    a.jump("jgt", R4, "pass", src=R3)
    a.load(1, R5, R2, ip + IPV4_PROTOCOL)
    a.jump("jne", R5, "pass", imm=IPPROTO_UDP)
    a.load(2, R5, R2, ip + IPV4_FLAGS_FRAG)
    a.alu("and", R5, imm=wire16(IPV4_FRAGMENT_MASK))
    a.jump("jne", R5, "pass", imm=0)                       # a fragment: the stack reassembles it
    a.load(4, R7, R2, ip + IPV4_DEST)                      # r7 = destination address
    a.load(1, R5, R2, ip + IPV4_VERSION_IHL)
    a.alu("mov", R4, R5)
    a.alu("rsh", R4, imm=4)
    a.jump("jne", R4, "pass", imm=4)                       # not IPv4
    a.alu("and", R5, imm=0x0F)
    a.alu("lsh", R5, imm=2)                                # r5 = IHL * 4, in [0, 60]
    a.jump("jlt", R5, "pass", imm=IPV4_MIN_HEADER)
    a.alu("add", R2, R5)                                   # the UDP header is at r2 + ip
    a.alu("mov", R4, R2)
    a.alu("add", R4, imm=ip + UDP_HEADER)
    a.jump("jgt", R4, "pass", src=R3)
    a.load(2, R8, R2, ip + UDP_DEST_PORT)                  # r8 = destination port
    for i, (addr, port) in enumerate(keys):
        if addr:
            a.jump("jne", R7, f"next{i}", imm=_s32(addr), w32=True)
        a.jump("jeq", R8, "redirect", imm=port, w32=True)
        a.label(f"next{i}")
    a.label("pass")
    a.alu("mov", R0, imm=XDP_PASS)
    a.exit()
    a.label("redirect")
    a.load(4, R2, R6, md["rx_queue_index"][1])             # key: this packet's RX queue
    a.load_map_fd(R1, map_fd)
    a.alu("mov", R3, imm=XDP_PASS)                         # no socket on that queue: pass it on
    a.call(BPF_FUNC_redirect_map)
    a.exit()
    return a.code()
