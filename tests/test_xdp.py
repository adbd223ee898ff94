"""AF_XDP source: the layouts and the BPF encoding against hand-worked bytes; the frame finder
against hand-built frames; then, as root, in two network namespaces joined by a veth pair that
the tests create and remove: a day published with loss, reordering and duplicates on two lines
arrives byte-identical through ``itchflow listen --engine xdp``; other traffic still reaches the
kernel; nothing stays attached after a normal exit or a SIGKILL; without the capabilities the
error is clear.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from itchflow.sources import netns

pytestmark = [pytest.mark.timeout(180), pytest.mark.net]
SRC = str(Path(__file__).resolve().parents[1] / "src")
ROOT_REASON = netns.available()
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=f"AF_XDP in namespaces: {ROOT_REASON}")


# ---------------------------------------------------------------- layouts and encodings (no root)
def test_layouts_match_if_xdp_h():
    from itchflow.wire import xdp

    # linux/if_xdp.h, worked by hand: sockaddr_xdp {u16 family, u16 flags, u32 ifindex, u32 queue, u32 shared}
    assert xdp.pack(xdp.SOCKADDR_XDP, sxdp_family=44, sxdp_flags=8, sxdp_ifindex=3, sxdp_queue_id=1) == bytes(
        [44, 0, 8, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    assert [xdp.XDP_DESC.fields[k][1] for k in ("addr", "len", "options")] == [0, 8, 12]
    assert [xdp.XDP_UMEM_REG_T.fields[k][1] for k in ("addr", "len", "chunk_size", "headroom")] == [0, 8, 16, 20]
    assert xdp.XDP_MMAP_OFFSETS_T.fields["fr"][1] == 64 and xdp.XDP_RING_OFFSET.fields["flags"][1] == 24
    stats = xdp.unpack(xdp.XDP_STATISTICS_T, struct.pack("<3Q", 5, 6, 7))   # an older, shorter struct
    assert stats == {"rx_dropped": 5, "rx_invalid_descs": 6, "tx_invalid_descs": 7, "rx_ring_full": 0,
                     "rx_fill_ring_empty_descs": 0, "tx_ring_empty_descs": 0}


def test_bpf_encoding_by_hand():
    from itchflow.wire.bpf import Assembler

    a = Assembler()
    a.alu("mov", 6, 1)                      # mov64 r6, r1       = bf 16 00 00 00 00 00 00
    a.load(2, 5, 2, 12)                     # ldxh r5, [r2+12]   = 69 25 0c 00 00 00 00 00
    a.jump("jne", 5, "out", imm=0x0008)     # jne r5, 8, +2      = 55 05 02 00 08 00 00 00
    a.load_map_fd(1, 7)                     # lddw r1, map fd 7  = 18 11 00 00 07 00 00 00 | 00 * 8
    a.label("out")
    a.jump("jeq", 7, "out", imm=-1, w32=True)   # jeq32 r7, -1, -1 = 16 07 ff ff ff ff ff ff
    a.exit()                                # exit               = 95 00 00 00 00 00 00 00
    code = a.code().tobytes()
    assert code == bytes.fromhex("bf16000000000000" "69250c0000000000" "5505020008000000"
                                 "1811000007000000" "0000000000000000" "1607ffffffffffff" "9500000000000000")


def test_program_constants_are_wire_order():
    from itchflow.wire.bpf import feed_lines, redirect_program

    # 10.77.0.2:30001 -> the bytes as they sit in the packet, read as a little-endian load
    assert feed_lines([("10.77.0.2", 30001)]) == [(int.from_bytes(bytes([10, 77, 0, 2]), sys.byteorder),
                                                   int.from_bytes((30001).to_bytes(2, "big"), sys.byteorder))]
    assert feed_lines([("", 5)])[0][0] == 0
    with pytest.raises(ValueError):
        redirect_program(3, [])
    prog = redirect_program(3, [("10.77.0.2", 30001), ("239.1.1.1", 30002)])
    assert int(prog[-1]["code"]) == 0x95 and len(prog) < 80


def _internet_checksum(data: bytes) -> int:
    """RFC 1071, the slow obvious way: the ones' complement of the ones' complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(dport=30001, dst="10.77.0.2", payload=b"x" * 30, vlan=0, ihl=5, frag=0, proto=17, ip_sum=1,
           udp_sum=0, total=None) -> np.ndarray:
    """ip_sum/udp_sum: 0 leaves the field 0, 1 fills in the right checksum (ip_sum: as a real frame), 2 a wrong one;
    total: the IP total length if not the right one."""
    eth = b"\x02" * 6 + b"\x04" * 6
    eth += b"".join(struct.pack(">HH", 0x8100, 7) for _ in range(vlan)) + struct.pack(">H", 0x0800)
    opts = b"\x01" * (4 * (ihl - 5))
    src, dst = socket.inet_aton("10.77.0.1"), socket.inet_aton(dst)
    ulen = 8 + len(payload)
    usum = 0
    if udp_sum:
        pseudo = src + dst + struct.pack(">BBH", 0, 17, ulen)
        usum = _internet_checksum(pseudo + struct.pack(">HHHH", 4000, dport, ulen, 0) + payload) or 0xFFFF
        usum ^= 0x0100 if udp_sum == 2 else 0
    udp = struct.pack(">HHHH", 4000, dport, ulen, usum) + payload
    tl = 4 * ihl + len(udp) if total is None else total
    head = struct.pack(">BBHHHBB", 0x40 | ihl, 0, tl, 1, frag, 64, proto)
    isum = _internet_checksum(head + b"\0\0" + src + dst + opts) if ip_sum else 0
    isum ^= 0x0001 if ip_sum == 2 else 0
    ip = head + struct.pack(">H", isum) + src + dst + opts
    return np.frombuffer(eth + ip + udp + b"\0" * 6, np.uint8)   # trailing Ethernet padding


@pytest.mark.parametrize("kw, expect", [
    ({}, (0, 42, 30)), ({"vlan": 1}, (0, 46, 30)), ({"vlan": 2}, (0, 50, 30)), ({"ihl": 7}, (0, 50, 30)),
    ({"dport": 30002}, (5, 0, 0)), ({"dst": "10.77.0.3"}, (5, 0, 0)), ({"frag": 0x2000}, (2, 0, 0)),
    ({"proto": 6}, (1, 0, 0)),
])
def test_ethernet_udp_finder(kw, expect):
    from itchflow.wire.ethernet import CUT_SHORT, IP_CUT_SHORT, ethernet_udp, ipv4_u32

    f = _frame(**kw)
    assert tuple(int(v) for v in ethernet_udp(f, 0, len(f), 30001, ipv4_u32("10.77.0.2"), 0)) == expect
    if expect[0] == 0:   # cut inside the IP header, inside the UDP header, inside the payload
        ip = expect[1] - 8 - 4 * kw.get("ihl", 5)
        for cut, outcome in ((ip + 10, IP_CUT_SHORT), (expect[1] - 3, CUT_SHORT), (expect[1] + 29, CUT_SHORT)):
            assert int(ethernet_udp(f[:cut], 0, cut, 0, 0, 0)[0]) == outcome, cut   # never read past the end


@pytest.mark.parametrize("kw, verify, outcome", [
    ({"ip_sum": 1, "udp_sum": 1}, 3, 0), ({"ip_sum": 1}, 3, 0),            # UDP checksum 0: none sent
    ({"ip_sum": 1, "udp_sum": 1, "ihl": 6, "payload": b"odd"}, 3, 0),      # options, an odd length
    ({"ip_sum": 2, "udp_sum": 1}, 3, 8), ({"ip_sum": 1, "udp_sum": 2}, 3, 9),
    ({"ip_sum": 2, "udp_sum": 2}, 0, 0),                                   # a capture file: as taken
    ({"ip_sum": 2}, 2, 0), ({"ip_sum": 1, "udp_sum": 2}, 1, 0),            # only what is asked
    ({"total": 28}, 0, 7), ({"total": 20}, 0, 7), ({"total": 27}, 0, 7),   # the IP length under the UDP one
    ({"total": 100}, 0, 3),                                                # past the frame's end
])
def test_the_finder_refuses_what_the_stack_refuses(kw, verify, outcome):
    """tpacket and xdp took a datagram with a bad IP or UDP checksum, or an IP total length
    that disagrees with the UDP length, as data (recv never sees them: the stack drops them),
    and the good copy that followed was dropped as a duplicate. The finder checks lengths
    always and checksums when asked (VERIFY_*: 1 IP, 2 UDP)."""
    from itchflow.wire.ethernet import ethernet_udp

    f = _frame(**kw)
    got = tuple(int(v) for v in ethernet_udp(f, 0, len(f), 30001, 0, verify))
    assert got[0] == outcome, got
    if outcome == 0:
        assert got[2] == len(kw.get("payload", b"x" * 30))


class FakeRings:
    """RX and fill rings laid out as a kernel might (producer, consumer, flags, descriptors at the
    offsets a real XDP_MMAP_OFFSETS gives), in plain numpy memory: the walk without a kernel."""

    def __init__(self, frames=8, ring=8, frame_size=2048):
        from itchflow.sources import xdp as X

        self.X = X
        self.frame_size, self.ring = frame_size, ring
        self.rx = np.zeros(64 + 2 * ring, np.int64)      # producer @0, consumer @128, flags @256, desc @512
        self.fr = np.zeros(64 + ring, np.int64)
        self.umem = np.zeros(frames * frame_size, np.uint8)
        cfg = np.zeros(X.C_FIELDS, np.int64)
        cfg[X.C_RX_PROD], cfg[X.C_RX_CONS], cfg[X.C_RX_DESC], cfg[X.C_RX_MASK] = 0, 16, 64, ring - 1
        cfg[X.C_FR_PROD], cfg[X.C_FR_FLAGS], cfg[X.C_FR_FLAGS_SHIFT], cfg[X.C_FR_DESC] = 0, 24, 32, 64
        cfg[X.C_FR_MASK], cfg[X.C_FRAME_MASK], cfg[X.C_FRAME_SHIFT], cfg[X.C_FD] = ring - 1, ~(frame_size - 1), 11, -1
        self.cfg = cfg
        self.state = np.zeros(X.S_FIELDS, np.int64)
        self.prod = 0

    def publish(self, frame: int, data: np.ndarray, headroom: int = 256) -> None:
        """The kernel's side: write a frame, then its descriptor, then the producer index."""
        addr = frame * self.frame_size + headroom
        self.umem[addr:addr + len(data)] = data
        d = 64 + (self.prod & (self.ring - 1)) * 2
        self.rx[d], self.rx[d + 1] = addr, len(data)
        self.prod += 1
        self.rx[0] = self.prod

    def runs(self, lines, batch=16):
        """[(count, line, first frame, step, offset, payload lengths)] of each window, in order."""
        X, out = self.X, []
        lengths, run_of = np.zeros(batch, np.int64), np.zeros(batch, np.int64)
        table = np.zeros((batch, X.R_FIELDS), np.int64)
        while True:
            n, n_runs = X.next_window(self.cfg, self.rx, self.umem, self.state, lines, batch, run_of, lengths, table)
            if n == 0:
                return out
            for r in range(n_runs):
                line, first, step, off, k, last = (int(v) for v in table[r])
                assert last == first + step * (k - 1)
                out.append((k, line, first, step, off, [int(v) for v in lengths[:n][run_of[:n] == r]]))
            X.recycle(self.cfg, self.rx, self.fr, self.state, n)


def test_ring_walk_refuses_what_the_stack_would_and_counts_it():
    """A feed datagram with a bad IP header checksum or IP/UDP lengths that disagree, or a
    unicast frame for another MAC, was taken as data (the good copy after it then dropped as
    a duplicate); the program hands such frames to the walk before the stack could refuse
    them. They are counted rejected_frames now, in no run; group addresses still pass."""
    r = FakeRings(frames=8, ring=16)
    own = 0x020202020202                                       # _frame's destination MAC
    lines = np.array([[0, 30001, own]], np.int64)
    good = _frame(payload=b"A" * 30)
    other_mac = good.copy()
    other_mac[:6] = [0x02, 0, 0, 0, 0, 9]
    multicast = good.copy()
    multicast[:6] = [0x01, 0x00, 0x5E, 0x01, 0x01, 0x01]
    for frame, data in ((0, good), (1, _frame(ip_sum=2)), (2, _frame(total=28)), (3, other_mac),
                        (4, multicast), (5, _frame(dport=9, ip_sum=2))):
        r.publish(frame, data)
    assert r.runs(lines) == [(2, 0, 0, 4, 298, [30, 30])]           # frames 0 and 4: one run, step 4
    c = {n: int(r.state[i]) for n, i in zip(r.X.COUNTERS, r.X._COUNTER_SLOTS)}
    assert c["packets"] == 2 and c["rejected_frames"] == 3 and c["other_frames"] == 1
    r.publish(6, other_mac)                                    # MAC unknown (0): no check
    assert r.runs(np.array([[0, 30001, 0]], np.int64)) == [(1, 0, 6, 1, 298, [30])]


def test_ring_walk_splits_runs_where_rows_stop_lining_up():
    from itchflow.wire.ethernet import ipv4_u32

    r = FakeRings(frames=8, ring=16)
    lines = np.array([[ipv4_u32("10.77.0.2"), 30001], [0, 30005]], np.int64)
    a, b = _frame(payload=b"A" * 30), _frame(dport=30005, payload=b"B" * 40)
    for frame, data in ((0, a), (1, a), (2, b), (3, b), (5, a), (6, _frame(ihl=6)), (7, a)):
        r.publish(frame, data)
    assert r.runs(lines) == [(2, 0, 0, 1, 298, [30, 30]),  # frames 0-1, line A, payload at 256 + 42
                             (2, 1, 2, 1, 298, [40, 40]),  # line B: a run of its own
                             (1, 0, 5, 1, 298, [30]),      # frame 4 skipped: not in step
                             (1, 0, 6, 1, 302, [30]),      # IP options move the payload
                             (1, 0, 7, 1, 298, [30])]      # the UMEM ends after frame 7
    r.publish(0, _frame(dport=9))                          # not the feed: in no run, counted
    r.publish(1, a, headroom=128)                          # another headroom: another row offset
    r.publish(2, a, headroom=128)
    assert r.runs(lines) == [(2, 0, 1, 1, 170, [30, 30])]
    c = {n: int(r.state[i]) for n, i in zip(r.X.COUNTERS, r.X._COUNTER_SLOTS)}
    assert c["packets"] == 9 and c["other_frames"] == 1 and c["frames_recycled"] == 10
    # every frame went back to the fill ring at its start (the headroom masked off), in order
    assert list(r.fr[64:64 + 10]) == [f * 2048 for f in (0, 1, 2, 3, 5, 6, 7, 0, 1, 2)]
    assert int(r.fr[0]) == 10 and int(r.rx[16]) == 10    # both ring indices published


def test_ring_walk_interleaved_lines_become_strided_runs():
    from itchflow.sources.xdp import XdpSocket

    r = FakeRings(frames=8, ring=16)
    lines = np.array([[0, 30001], [0, 30005]], np.int64)
    for f in range(8):                                     # A, B, A, B, ... as a feed's two lines arrive
        r.publish(f, _frame(dport=30001 if f % 2 == 0 else 30005, payload=bytes([f]) * (20 + f)))
    runs = r.runs(lines)
    assert runs == [(4, 0, 0, 2, 298, [20, 22, 24, 26]), (4, 1, 1, 2, 298, [21, 23, 25, 27])]
    # the rows of a strided view of the UMEM are those frames' payloads, no copy
    x = XdpSocket.__new__(XdpSocket)
    x.umem, x.frames, x.frame_size, x._views = r.umem, 8, 2048, {}
    k, line, first, step, off, lens = runs[1]
    rows = x.frames_at(off)[first:first + step * (k - 1) + 1:step]
    assert rows.shape[0] == 4 and np.shares_memory(rows, r.umem)
    assert [bytes(rows[i, :lens[i]]) for i in range(4)] == [bytes([f]) * (20 + f) for f in (1, 3, 5, 7)]


def test_ring_walk_refuses_descriptors_outside_their_frame():
    r = FakeRings(frames=4)
    lines = np.array([[0, 30001]], np.int64)
    r.publish(0, _frame())
    d = 64 + 2 * 1
    r.rx[d], r.rx[d + 1] = 2048 + 2000, 200                # runs past its frame
    r.rx[d + 2], r.rx[d + 3] = 4 * 2048 + 256, 60          # past the UMEM
    r.rx[d + 4], r.rx[d + 5] = -256, 60                    # a negative address
    r.prod = 4
    r.rx[0] = 4
    assert [x[:3] for x in r.runs(lines)] == [(1, 0, 0)]
    assert int(r.state[r.X.S_OTHER]) == 3


@needs_root
def test_kernel_runs_the_program_on_hand_built_frames():
    """The loaded program itself (BPF_PROG_TEST_RUN, no interface): feed datagrams -> XDP_REDIRECT
    into the XSKMAP, everything else -> XDP_PASS; the verifier accepts it."""
    from itchflow.hw.bpf_syscalls import (BPF_MAP_TYPE_XSKMAP, BPF_PROG_TYPE_XDP, map_create, map_update,
                                          prog_load, prog_test_run)
    from itchflow.wire.bpf import XDP_PASS, XDP_REDIRECT, redirect_program
    from itchflow.wire.xdp import AF_XDP

    xsk = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
    fds = [map_create(BPF_MAP_TYPE_XSKMAP, 4, 4, 1)]
    try:
        map_update(fds[0], 0, xsk.fileno())
        fds.append(prog_load(BPF_PROG_TYPE_XDP, redirect_program(fds[0], [("10.77.0.2", 30001), ("", 30005)])))
        cases = [({}, XDP_REDIRECT), ({"vlan": 1}, XDP_REDIRECT), ({"vlan": 2}, XDP_REDIRECT),
                 ({"ihl": 6}, XDP_REDIRECT), ({"ihl": 15}, XDP_REDIRECT),
                 ({"dport": 30005, "dst": "239.1.1.1"}, XDP_REDIRECT),   # line B: any address
                 ({"dport": 30002}, XDP_PASS), ({"dst": "10.77.0.3"}, XDP_PASS), ({"frag": 0x2000}, XDP_PASS),
                 ({"frag": 0x0001}, XDP_PASS), ({"proto": 6}, XDP_PASS), ({"vlan": 3}, XDP_PASS)]
        for kw, verdict in cases:
            assert prog_test_run(fds[1], _frame(**kw).tobytes()) == verdict, kw
        good = _frame().tobytes()
        for cut in (14, 20, 33, 34, 41):       # cut inside the IP or UDP header: passed, never read past
            assert prog_test_run(fds[1], good[:cut]) == XDP_PASS, cut
        arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
        ipv6 = b"\xff" * 6 + b"\x02" * 6 + b"\x86\xdd" + bytes(48)
        assert prog_test_run(fds[1], arp) == XDP_PASS and prog_test_run(fds[1], ipv6) == XDP_PASS
    finally:
        for fd in fds:
            os.close(fd)
        xsk.close()


def test_refused_program_error_carries_the_verifier_log():
    if ROOT_REASON is not None:
        pytest.skip(f"loading BPF programs: {ROOT_REASON}")
    from itchflow.hw.bpf_syscalls import BPF_PROG_TYPE_XDP, BpfError, prog_load
    from itchflow.wire.bpf import Assembler

    a = Assembler()
    a.load(4, 0, 5, 0)        # reads r5, never written: the verifier refuses
    a.exit()
    with pytest.raises(BpfError) as e:
        prog_load(BPF_PROG_TYPE_XDP, a.code())
    assert "verifier log" in str(e.value) and "R5" in e.value.log


def _kernel_overloads() -> dict:
    """Every compiled kernel of itchflow loaded so far, with how many typed versions it holds."""
    found = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("itchflow.") and mod is not None:
            for attr, value in vars(mod).items():
                if hasattr(value, "overloads") and hasattr(value, "py_func"):
                    found[f"{name}.{attr}"] = len(value.overloads)
    return found


# an ITCH system event (S, 12 bytes: locate 0, tracking 0, 6-byte timestamp 1, code O) in its block
SYSTEM_EVENT_BLOCK = b"\x00\x0cS" + b"\x00\x00" + b"\x00\x00" + (1).to_bytes(6, "big") + b"O"


def test_warm_up_types_the_kernels_as_the_receive_loop_meets_them():
    # probe 55: on a cold cache the first packets waited ~0.7 s for a compile after "listening"
    # (the warm-up typed one-frame rows 'C'; a run of several frames is strided, 'A'), and a fast
    # feed overflowed the ring. Rows cut from the UMEM as the loop cuts them must load nothing new.
    from itchflow.protocol.mold.receiver import Deliver, MoldReceiver
    from itchflow.sources.xdp import frame_rows, warm_up
    from itchflow.wire.moldudp64 import pack_header

    warm_up()
    before = _kernel_overloads()
    frame, offset = 2048, 42
    umem = np.zeros(8 * frame, np.uint8)
    for i in range(8):
        pkt = pack_header(b"SESSION001", 1 + i, 1) + SYSTEM_EVENT_BLOCK
        umem[i * frame + offset:i * frame + offset + len(pkt)] = np.frombuffer(pkt, np.uint8)
    n = len(pack_header(b"SESSION001", 1, 1)) + len(SYSTEM_EVENT_BLOCK)
    r = MoldReceiver(b"SESSION001")
    delivered = 0
    # a run of one frame, of three adjacent frames, of two frames every other (two lines interleaved)
    for first, step, k in ((0, 1, 1), (1, 1, 3), (4, 2, 2)):
        rows = frame_rows(umem, frame, offset)[first:first + step * (k - 1) + 1:step]
        events = r.receive_batch(rows, np.full(k, n, np.int64), k, 0, 0, np.zeros(k, np.int64))
        delivered += sum(e.count for e in events if isinstance(e, Deliver))
    assert delivered == 5 and r.stats.messages == 5 and r.stats.malformed == 0  # 1, 2-4, 5 (7: past a hole)
    after = _kernel_overloads()
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}


# ---------------------------------------------------------------- in namespaces (root)
def _cli(net, side, *args, **kw):
    env = {**os.environ, "PYTHONPATH": SRC}
    return net.popen(side, [sys.executable, "-m", "itchflow.cli", *args], env=env, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True, **kw)


def _wait(cond, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def veth():
    with netns.VethPair("xdp") as net:
        yield net
    assert net.leftovers() == []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert net.link["a"] not in links and net.link["b"] not in links


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from itchflow.sim.generator import generate_day

    data = np.asarray(generate_day(150_000, 7, stocks=100), np.uint8)
    p = tmp_path_factory.mktemp("xdp") / "day.bin"
    p.write_bytes(data.tobytes())
    return p, data


@needs_root
def test_day_with_faults_arrives_identical_through_xdp(veth, day, tmp_path):
    path, data = day
    b = veth.address("b")
    out = tmp_path / "out.bin"
    rx = _cli(veth, "b", "listen", "--engine", "xdp", "--ifname", veth.link["b"], "--mold", f"{b}:31001",
              "--line-b", f"{b}:31002", "--rerequest", f"{veth.address('a')}:31003", "--out", str(out),
              "--idle-timeout", "20", "--max-seconds", "120", "--cpu", "0", "--busy-poll", "20", "--json")
    try:
        _wait(lambda: veth.link_xdp("b") or rx.poll() is not None, 120, "the XDP program attached")
        assert rx.poll() is None, rx.communicate()
        tx = _cli(veth, "a", "publish", str(path), "--mold", f"{b}:31001", "--line-b", f"{b}:31002",
                  "--rerequest", "31003", "--rate", "max", "--pps", "20000", "--drop-a", "0.05", "--drop-b", "0.05",
                  "--reorder", "0.05", "--duplicate", "0.05", "--seed", "3", "--linger", "5", "--json")
        rout, rerr = rx.communicate(timeout=150)
        tout, terr = tx.communicate(timeout=60)
    finally:
        for p in (rx,):
            if p.poll() is None:
                p.kill()
    assert rx.returncode == 0, rerr
    assert tx.returncode == 0, terr
    assert out.read_bytes() == data.tobytes()
    rep, pub = json.loads(rout), json.loads(tout)
    eng = rep["engine_stats"]
    assert eng["copy_mode"].split()[0] in ("copy", "zero-copy") and eng["xdp_mode"] in ("native", "generic")
    assert eng["busy_poll"].startswith("20 us")
    assert rep["finished"] and rep["lost"] == 0 and rep["malformed"] == 0
    assert rep["messages"] == pub["messages"] and rep["bytes"] == len(data)
    assert pub["dropped"][0] > 0 and pub["dropped"][1] > 0 and pub["duplicated"][0] > 0
    assert rep["requests"] >= 1 and rep["recovered"] == rep["messages_by_line"][2] >= 1
    # every frame the socket read went to the receiver as a line A/B packet; none was dropped
    # by the kernel; every frame was given back; the lines carried at least what was read
    assert eng["packets"] == rep["packets_by_line"][0] + rep["packets_by_line"][1]
    assert eng["frames_recycled"] == eng["packets"] + eng["other_frames"] and eng["other_frames"] == 0
    assert eng["xdp_rx_invalid_descs"] == 0
    # A loaded machine can let the RX ring overflow (the kernel counts it in rx_dropped); the
    # receiver then recovered those packets by re-request (the output is identical above).
    dropped = eng["xdp_rx_dropped"]
    data_packets = pub["sent"][0] + pub["sent"][1]
    # all data packets (sent before the first end of session) were read or counted as dropped,
    # plus at least one end of session; at most every heartbeat and end-of-session packet on top
    assert data_packets < eng["packets"] + dropped <= data_packets + 2 * (pub["heartbeats"] + pub["end_of_session"])
    # at most one wake-up per batch given back; the loop slept in poll() only when the ring was empty
    assert eng["wakeups"] <= eng["fill_publishes"] <= eng["frames_recycled"]
    assert 0 < eng["loop_polls"] <= eng["loop_ring_checks"]
    assert veth.link_xdp("b") == ""          # the link closed with the process: detached


@needs_root
def test_pipeline_source_string_with_engine_xdp(veth, day):
    """itchflow run --source 'mold://...&engine=xdp&ifname=IF': the same feed into the pipeline."""
    path, data = day
    b = veth.address("b")
    src = (f"mold://{b}:36001?line_b={b}:36002&rerequest={veth.address('a')}:36003&engine=xdp"
           f"&ifname={veth.link['b']}&idle=10&max_seconds=120")
    rx = _cli(veth, "b", "run", "-s", src, "--json", "-q")
    try:
        _wait(lambda: veth.link_xdp("b") or rx.poll() is not None, 120, "the XDP program attached")
        assert rx.poll() is None, rx.communicate()
        tx = _cli(veth, "a", "publish", str(path), "--mold", f"{b}:36001", "--line-b", f"{b}:36002",
                  "--rerequest", "36003", "--rate", "max", "--pps", "20000", "--drop-a", "0.05", "--drop-b", "0.05",
                  "--seed", "5", "--linger", "5", "--json")
        out, err = rx.communicate(timeout=150)
        tx.communicate(timeout=60)
    finally:
        if rx.poll() is None:
            rx.kill()
    assert rx.returncode == 0, err
    rep = json.loads(out)
    mold = rep["producer"]["mold"]
    assert rep["producer"]["finished"] and mold["lost"] == 0 and mold["malformed"] == 0
    assert rep["messages"] == mold["messages"] and rep["bytes"] == len(data) == mold["bytes"]
    assert rep["sequence_gaps"] == 0 and rep["sequence_repeats"] == 0
    assert veth.link_xdp("b") == ""


def _icmp_echo(dst: str, timeout: float = 5.0) -> bool:
    """One ICMP echo request from the calling thread's namespace; True when the reply comes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(timeout)
    body = struct.pack(">BBHHH", 8, 0, 0, 0x1234, 1) + b"itchflow"
    c = sum(struct.unpack(f">{len(body) // 2}H", body))
    c = (c >> 16) + (c & 0xFFFF)
    body = body[:2] + struct.pack(">H", ~(c + (c >> 16)) & 0xFFFF) + body[4:]
    s.sendto(body, (dst, 0))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            pkt, (src, _) = s.recvfrom(2048)
            ihl = (pkt[0] & 15) * 4
            if src == dst and pkt[ihl] == 0 and pkt[ihl + 4:ihl + 6] == b"\x12\x34":
                return True
    except socket.timeout:
        return False
    finally:
        s.close()
    return False


@needs_root
@pytest.mark.parametrize("mode", ["native", "generic"])
def test_other_traffic_reaches_the_kernel(veth, mode):
    from itchflow.sources.xdp import XdpRecv, warm_up

    warm_up()
    b = veth.address("b")
    with veth.inside("a"):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv = XdpRecv(veth.link["b"], frames=256, mode=mode, batch=16)
    with veth.inside("b"):
        recv.open([(b, 32001)])
        xsk = recv.xsk
        shown = veth.link_xdp("b").split()           # ip link: "xdp" for native, "xdpgeneric" for generic
        assert xsk.info["xdp_mode"] == mode and ("xdpgeneric" if mode == "generic" else "xdp") in shown
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("0.0.0.0", 32002))
        feed_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound to the feed port as well:
        feed_sock.bind(("0.0.0.0", 32001))                             # it must see nothing
        feed_sock.setblocking(False)
    try:
        other.settimeout(5)
        for i in range(10):
            tx.sendto(b"feed%d" % i, (b, 32001))
            tx.sendto(b"other%d" % i, (b, 32002))
        got = sorted(other.recvfrom(100)[0] for _ in range(10))
        assert got == sorted(b"other%d" % i for i in range(10))
        with veth.inside("a"):
            assert _icmp_echo(b)
        seen, peers = [], []

        def drain():
            for rows, lengths, k, line, _ in recv.runs():
                assert line == 0 and np.shares_memory(rows, xsk.umem)
                seen.extend(bytes(rows[i, :lengths[i]]) for i in range(k))
                peers.extend(recv.run_peer(i) for i in range(k))   # what a malformed one is reported from
            return len(seen) >= 10

        _wait(drain, 10, "the feed datagrams in the RX ring")
        assert sorted(seen) == sorted(b"feed%d" % i for i in range(10))
        assert peers == [f"{veth.address('a')}:{tx.getsockname()[1]}"] * 10
        with pytest.raises(BlockingIOError):
            feed_sock.recv(100)
        c = xsk.counters()
        assert c["packets"] == 10 and c["frames_recycled"] == 10 and c["xdp_rx_dropped"] == 0
    finally:
        recv.close()
        for s in (tx, other, feed_sock):
            s.close()
    assert veth.link_xdp("b") == ""


@needs_root
def test_sigkill_leaves_nothing_attached(veth):
    b = veth.address("b")
    rx = _cli(veth, "b", "listen", "--engine", "xdp", "--ifname", veth.link["b"], "--mold", f"{b}:33001",
              "--idle-timeout", "60", "--json")
    try:
        _wait(lambda: veth.link_xdp("b") or rx.poll() is not None, 120, "the XDP program attached")
        assert rx.poll() is None, rx.communicate()
        assert "xdp" in veth.link_xdp("b")
        os.kill(rx.pid, signal.SIGKILL)
        rx.wait(30)
        assert rx.returncode == -signal.SIGKILL
        _wait(lambda: veth.link_xdp("b") == "", 10, "the kernel to detach the program")
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()


@needs_root
@pytest.mark.skipif(not Path("/usr/bin/setpriv").exists() and not Path("/bin/setpriv").exists(),
                    reason="setpriv (util-linux) is not installed")
def test_without_capabilities_the_error_is_clear(veth):
    b = veth.address("b")
    env = {**os.environ, "PYTHONPATH": SRC}
    drop = "-net_admin,-net_raw,-bpf,-sys_admin,-perfmon"
    r = veth.run("b", ["setpriv", f"--bounding-set={drop}", "--inh-caps=-all", sys.executable, "-m", "itchflow.cli",
                       "listen", "--engine", "xdp", "--ifname", veth.link["b"], "--mold", f"{b}:34001",
                       "--idle-timeout", "1"], env=env, timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "itchflow: error:" in r.stderr and ("CAP_NET" in r.stderr or "root" in r.stderr), r.stderr
    assert veth.link_xdp("b") == ""


@needs_root
def test_interface_errors_are_clear(veth):
    from itchflow.sources.xdp import XdpError, XdpSocket

    with veth.inside("b"):
        with pytest.raises(XdpError, match="no interface named"):
            XdpSocket("ifx-none-0", [("", 1)])
        with pytest.raises(XdpError, match="interface named"):
            XdpSocket("", [("", 1)])
        with pytest.raises(XdpError, match="power of two"):
            XdpSocket(veth.link["b"], [("", 1)], frames=1000)
        with pytest.raises(XdpError, match="RX queue|refused"):
            XdpSocket(veth.link["b"], [("", 1)], queue=7, frames=64)
    # an MTU past what a frame holds: every larger datagram would be dropped (a day of 8,900-byte
    # datagrams was lost whole, blamed on no re-request server); refused, saying the MTU that fits
    with veth.inside("b"):
        with pytest.raises(XdpError, match=r"lo: MTU 65,536 .* set the MTU to 1,778 or less"):
            XdpSocket("lo", [("", 1)], frames=64)
    veth.run("b", ["ip", "link", "set", "lo", "mtu", "1500"])
    # the namespace's own loopback has no native XDP: native mode is refused, said, not a traceback
    with veth.inside("b"):
        with pytest.raises(XdpError, match="lo refuses XDP .native: "):
            XdpSocket("lo", [("", 1)], frames=64, mode="native")
    assert veth.link_xdp("b") == "" and "xdp" not in veth.run("b", ["ip", "link", "show", "lo"]).stdout


def test_kernel_woken_only_when_the_fill_ring_asks():
    r = FakeRings(frames=4, ring=4)
    lines = np.array([[0, 30001]], np.int64)
    r.publish(0, _frame())
    r.runs(lines)
    assert int(r.state[r.X.S_WAKEUPS]) == 0                 # flag clear: no system call
    r.fr[24] = 1 << 32                                       # need-wakeup in the high half of its word...
    r.cfg[r.X.C_FR_FLAGS_SHIFT] = 32                         # ...as when flags sits 4 bytes into the word
    r.publish(1, _frame())
    r.publish(2, _frame())
    r.runs(lines)
    assert int(r.state[r.X.S_WAKEUPS]) == 1                  # one wake-up for the batch, not per frame


def test_source_string_engine_xdp_needs_an_interface():
    from itchflow.pipeline.sources import check_source, parse_source

    spec = parse_source("mold://10.77.0.2:36001?engine=xdp&ifname=veth0&queue=1")
    check_source(spec)
    assert spec.options["engine"] == "xdp" and spec.options["queue"] == "1"
    with pytest.raises(ValueError, match="ifname"):
        check_source(parse_source("mold://10.77.0.2:36001?engine=xdp"))


def test_listen_without_interface_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "itchflow.cli", "listen", "--engine", "xdp", "--mold", "127.0.0.1:36009",
                        "--idle-timeout", "1"], env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "itchflow: error:" in r.stderr and "--ifname" in r.stderr, r.stderr


@pytest.mark.parametrize("ihl", [5, 6, 15])
def test_the_sender_is_read_back_from_the_headers_before_a_payload(ihl):
    """wire.ethernet.udp_sender: hand-built Ethernet + IPv4 (options of any length) + UDP."""
    from itchflow.wire.ethernet import udp_sender

    ip = bytes([0x40 | ihl, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 2, 3, 10, 9, 9, 9]) + b"\x01" * (4 * ihl - 20)
    udp = bytes([0x9C, 0x40, 0x7D, 0x01, 0, 12, 0, 0])            # source port 40000
    frame = np.frombuffer(b"\xaa" * 12 + b"\x08\x00" + ip + udp + b"data", np.uint8)
    assert udp_sender(frame, len(frame) - 4) == "10.1.2.3:40000"
    assert udp_sender(frame, 10) is None                          # nothing like an IPv4 header before it
