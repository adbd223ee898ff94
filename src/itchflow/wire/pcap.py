"""pcap and pcapng captures: find the UDP payloads, in compiled code.

Only the packet container and the link/IP/UDP headers are handled here; what is inside
the UDP payload (MoldUDP64) is moldudp64_capture's business. Every record is accounted
for: a UDP payload, or counted as not UDP, an IP fragment, cut short by the snap length,
a bad frame (its headers do not fit it), or unsupported. A record whose own framing is broken (length past the end of the file,
a pcapng block whose lengths disagree) is an error that names the file offset.

Layouts (all offsets from the start of the structure they belong to):

  pcap file header (24): magic u32 @0, version u16 @4 / @6, thiszone @8, sigfigs @12,
                         snaplen u32 @16, linktype u32 @20. The magic's byte order gives
                         the file's (a1b2c3d4 microsecond, a1b23c4d nanosecond).
  pcap record header (16): ts_sec @0, ts_frac @4, incl_len @8, orig_len @12.
  pcapng block (>= 12): type u32 @0, total length u32 @4, body, total length again at the
                        end. SHB (0x0a0d0d0a): byte-order magic 1a2b3c4d @8. IDB (1):
                        linktype u16 @8, snaplen u32 @12. EPB (6): interface u32 @8,
                        captured len u32 @20, original len @24, data @28. SPB (3):
                        original len @8, data @12. OPB (2): interface u16 @8, caplen @20,
                        data @28.
  Link layers: Ethernet (1; its header, tags, IPv4 and UDP are wire/ethernet.py's), Linux
  SLL (113, protocol @14, 16 bytes), Linux SLL2 (276, protocol @0, 20 bytes), raw IP
  (101, 228 IPv4, 229 IPv6), BSD loopback (0, 4-byte family).
  IPv4: version/IHL @0, total length @2, flags+fragment offset @6, protocol @9.
  IPv6: payload length @4, next header @6, 40 bytes (extension headers: unsupported).
  UDP (8): source port @0, destination port @2, length @4 (header included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
from numba import njit

from itchflow.errors import ITCHFormatError
from itchflow.wire.ethernet import (  # the one Ethernet / IPv4 / UDP finder; IPv6 is handled here
    CUT_SHORT,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    BAD_LENGTH,
    FRAGMENT,
    IP_CUT_SHORT,
    IPPROTO_UDP,
    NOT_UDP,
    UDP_HEADER,
    UDP_OK,
    ethernet_network,
    ipv4_udp,
)

PCAP_FILE_HEADER_SIZE = 24
PCAP_RECORD_HEADER_SIZE = 16
PCAP_MAGICS = {0xA1B2C3D4: "usec", 0xA1B23C4D: "nsec"}
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_IDB, PCAPNG_OPB, PCAPNG_SPB, PCAPNG_EPB = 1, 2, 3, 6
# Blocks that carry no packet and are skipped as such: name resolution (4), interface
# statistics (5), IRIG timestamp (7), ARINC 429 / AFDX information (8), systemd journal export
# (9), decryption secrets (0x0A), and the custom blocks (0xBAD, 0x40000BAD). Any other type is
# skipped too, as the format asks, and counted (``unknown_blocks``): one bit flipped in a packet
# block's type, 6 -> 0x206, dropped that packet unsaid (probe 45).
PCAPNG_NON_PACKET_BLOCKS = (4, 5, 7, 8, 9, 0x0A, 0xBAD, 0x40000BAD)
MAX_INTERFACES = 256
TABLE_BATCH = 1 << 16   # packet table rows walked a pass (``packet_table``)
MAX_RECORD = 256 * 1024  # larger incl_len is a corrupt record, not a packet

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW = 0, 1, 101
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
# Raw IP as some writers put it in the file header: the platform's DLT_RAW (12 on most, 14 on
# OpenBSD) instead of LINKTYPE_RAW; libpcap and Wireshark read both as raw IP too.
DLT_RAW_12, DLT_RAW_14 = 12, 14
UDP_HEADER_SIZE = UDP_HEADER

# Per-record outcome codes (kept in the packet table for the counters). REC_BAD_FRAME: a whole
# frame (not cut by the snap length) whose own headers do not fit it: a link header longer
# than the frame, an IP or UDP length past its end or under its headers (counted as
# "unsupported", with IPv6 extension headers and foreign link types: probe 29).
REC_UDP, REC_NOT_UDP, REC_FRAGMENT, REC_SNAPPED, REC_UNSUPPORTED, REC_BAD_FRAME = 0, 1, 2, 3, 4, 5

# Walk status codes. CUT_AT_END: the file ends inside a record (or block) whose header is
# sane, as a capture still being written, or copied before it was whole, does.
OK, BAD_RECORD, BAD_BLOCK, TOO_MANY_INTERFACES, CUT_AT_END, UNDECLARED_INTERFACE = 0, 1, 2, 3, 4, 5
_STATUS_TEXT = {
    BAD_RECORD: ("corrupt pcap record header (its length runs past the end of the file, is absurd, or is more "
                 "than the packet's original length)"),
    BAD_BLOCK: ("corrupt pcapng block (its lengths are inconsistent, run past the end of the file, or capture "
                "more than the packet's original length)"),
    TOO_MANY_INTERFACES: f"pcapng capture with more than {MAX_INTERFACES} interfaces",
    UNDECLARED_INTERFACE: ("pcapng packet block names an interface its section did not declare (no "
                           "Interface Description Block of that number before it)"),
}


@njit(inline="always", nogil=True, cache=True)
def _u16(buf, p, big):
    if big:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
    return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)


@njit(inline="always", nogil=True, cache=True)
def _u32(buf, p, big):
    if big:
        return ((np.int64(buf[p]) << 24) | (np.int64(buf[p + 1]) << 16)
                | (np.int64(buf[p + 2]) << 8) | np.int64(buf[p + 3]))
    return (np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
            | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 3]) << 24))


@njit(nogil=True, cache=True)
def udp_payload(buf, p, caplen, origlen, linktype):
    """Locate the UDP payload of one link-layer frame at buf[p:p+caplen].

    Returns (outcome, payload offset, payload length). The payload length comes from the
    UDP header (not the captured length, which may include Ethernet padding).
    """
    end = p + caplen
    q = p
    if linktype == LINKTYPE_ETHERNET:
        if caplen < 14:
            return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
        etype, q = ethernet_network(buf, q, end)   # past the 802.1Q / 802.1ad tags
        if etype < 0:
            return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
    elif linktype == LINKTYPE_LINUX_SLL:
        if caplen < 16:
            return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
        etype = (np.int64(buf[q + 14]) << 8) | np.int64(buf[q + 15])
        q += 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if caplen < 20:
            return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
        etype = (np.int64(buf[q]) << 8) | np.int64(buf[q + 1])
        q += 20
    elif linktype == LINKTYPE_NULL:
        if caplen < 4:
            return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
        fam = np.int64(buf[q]) | (np.int64(buf[q + 3]))  # 2 = IPv4 in either byte order
        etype = ETHERTYPE_IPV4 if fam == 2 else ETHERTYPE_IPV6
        q += 4
    elif (linktype == LINKTYPE_RAW or linktype == LINKTYPE_IPV4 or linktype == LINKTYPE_IPV6
          or linktype == DLT_RAW_12 or linktype == DLT_RAW_14):
        if caplen < 1:
            return REC_UNSUPPORTED, 0, 0
        etype = ETHERTYPE_IPV4 if (buf[q] >> 4) == 4 else ETHERTYPE_IPV6
    else:
        return REC_UNSUPPORTED, 0, 0

    if etype == ETHERTYPE_IPV4:
        outcome, off, length = ipv4_udp(buf, q, end, 0, 0, 0)   # a capture as taken: no checksums (ethernet.VERIFY_*)
        if outcome == UDP_OK:
            return REC_UDP, off, length
        if outcome == IP_CUT_SHORT:
            return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
        if outcome == CUT_SHORT:
            return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
        if outcome == NOT_UDP:
            return REC_NOT_UDP, 0, 0
        if outcome == FRAGMENT:
            return REC_FRAGMENT, 0, 0
        if outcome == BAD_LENGTH:
            return REC_BAD_FRAME, 0, 0
        return REC_UNSUPPORTED, 0, 0
    elif etype == ETHERTYPE_IPV6:
        if q + 40 > end:
            return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
        nxt = buf[q + 6]
        if nxt != IPPROTO_UDP:
            return REC_NOT_UDP if nxt == 6 or nxt == 58 else REC_UNSUPPORTED, 0, 0
        q += 40
    else:
        return REC_NOT_UDP, 0, 0

    if q + UDP_HEADER_SIZE > end:
        return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
    udp_len = (np.int64(buf[q + 4]) << 8) | np.int64(buf[q + 5])
    if udp_len < UDP_HEADER_SIZE:
        return REC_BAD_FRAME, 0, 0
    if q + udp_len > end:
        return REC_SNAPPED if origlen > caplen else REC_BAD_FRAME, 0, 0
    return REC_UDP, q + UDP_HEADER_SIZE, udp_len - UDP_HEADER_SIZE


CUT_SECONDS = 86_400   # a cut last record's time is within a day after the one before it


@njit(nogil=True, cache=True)
def walk_pcap(buf, start, big, linktype, snaplen, out_off, out_len, out_outcome, end_at):
    """Walk classic pcap records from ``start``; one row per record, until the rows are full or
    (after one) a record starts at or past end_at. Returns (status, n, at).

    A record running past the end of the file is CUT_AT_END (a capture still being written)
    only when its header is one the writer could have written: a length within the snap
    length (snaplen, 0: MAX_RECORD) and the original length, a time not before the record
    before it (a second's slack) nor more than a day after; otherwise it is a corrupt length
    mid-file, BAD_RECORD (taken for a cut, it dropped the rest of the capture)."""
    n = 0
    p = start
    size = buf.shape[0]
    cap = snaplen if 0 < snaplen <= MAX_RECORD else MAX_RECORD
    last_sec = np.int64(-1)
    while p < size:
        if p + PCAP_RECORD_HEADER_SIZE > size:
            return CUT_AT_END, n, p
        sec = _u32(buf, p, big)
        incl = _u32(buf, p + 8, big)
        orig = _u32(buf, p + 12, big)
        data = p + PCAP_RECORD_HEADER_SIZE
        if incl > MAX_RECORD or incl > orig:   # (more captured than the packet had: a corrupt length,
            return BAD_RECORD, n, p            # which swallowed the next record, read as a network gap: probe 36)
        if data + incl > size:
            plausible = incl <= cap and incl <= orig and (
                last_sec < 0 or (last_sec - 1 <= sec and sec <= last_sec + CUT_SECONDS))
            return (CUT_AT_END if plausible else BAD_RECORD), n, p
        last_sec = sec
        if n >= out_off.shape[0] or (n > 0 and p >= end_at):
            return OK, n, p  # part full: the caller calls again from p
        outcome, off, length = udp_payload(buf, data, incl, orig, linktype)
        out_off[n] = off
        out_len[n] = length
        out_outcome[n] = outcome
        n += 1
        p = data + incl
    return OK, n, p


@njit(inline="always", nogil=True, cache=True)
def _is_packet_block(btype):
    return btype == PCAPNG_EPB or btype == PCAPNG_OPB or btype == PCAPNG_SPB


@njit(inline="always", nogil=True, cache=True)
def _known_block(btype):
    for t in PCAPNG_NON_PACKET_BLOCKS:
        if btype == t:
            return True
    return False


@njit(nogil=True, cache=True)
def walk_pcapng(buf, start, out_off, out_len, out_outcome, linktypes, state, end_at):
    """Walk pcapng blocks from ``start``; one row per packet block, until the rows are full or
    (after one) a packet block starts at or past end_at.

    state: int64[4] = (big-endian flag of the current section, interfaces in this section,
    resume offset, blocks of unknown types skipped so far). Returns (status, n, at).
    """
    n = 0
    p = start
    size = buf.shape[0]
    big = state[0] != 0
    n_if = state[1]
    while p < size:
        if p + 12 > size:
            # a packet block's type and length, then the end: cut (fewer bytes, or another
            # block's: corrupt, as trailing padding is)
            if p + 8 <= size and _is_packet_block(_u32(buf, p, big)) and _u32(buf, p + 4, big) > size - p:
                return CUT_AT_END, n, p
            return BAD_BLOCK, n, p
        btype = _u32(buf, p, big)
        if btype == PCAPNG_SHB:
            # The byte order may change at each section header: read it before the length.
            magic_le = _u32(buf, p + 8, False)
            if magic_le == PCAPNG_BYTE_ORDER_MAGIC:
                big = False
            elif _u32(buf, p + 8, True) == PCAPNG_BYTE_ORDER_MAGIC:
                big = True
            else:
                return BAD_BLOCK, n, p
            n_if = 0
        blen = _u32(buf, p + 4, big)
        if blen < 12 or (blen & 3) != 0:
            return BAD_BLOCK, n, p
        if p + blen > size:   # only a packet block of a packet's size is a capture cut while written
            return (CUT_AT_END if _is_packet_block(btype) and blen <= MAX_RECORD + 64 else BAD_BLOCK), n, p
        if _u32(buf, p + blen - 4, big) != blen:
            return BAD_BLOCK, n, p
        if btype == PCAPNG_IDB:
            if blen < 20:
                return BAD_BLOCK, n, p
            if n_if >= MAX_INTERFACES:
                return TOO_MANY_INTERFACES, n, p
            linktypes[n_if] = _u16(buf, p + 8, big)
            n_if += 1
        elif btype == PCAPNG_EPB or btype == PCAPNG_OPB or btype == PCAPNG_SPB:
            if n >= out_off.shape[0] or (n > 0 and p >= end_at):
                state[0] = 1 if big else 0
                state[1] = n_if
                return OK, n, p  # table full: caller grows and calls again from p
            if btype == PCAPNG_SPB:
                if blen < 16:
                    return BAD_BLOCK, n, p
                iface = 0
                orig = _u32(buf, p + 8, big)
                data = p + 12
                incl = min(orig, blen - 16)
            else:
                if blen < 32:
                    return BAD_BLOCK, n, p
                iface = _u32(buf, p + 8, big) if btype == PCAPNG_EPB else _u16(buf, p + 8, big)
                incl = _u32(buf, p + 20, big)
                orig = _u32(buf, p + 24, big)
                data = p + 28
                if data + incl > p + blen - 4 or incl > orig:   # (more captured than sent: as a pcap record, probe 45)
                    return BAD_BLOCK, n, p
            if iface >= n_if:   # its lengths are fine (probe 29: it was called a corrupt block)
                return UNDECLARED_INTERFACE, n, p
            outcome, off, length = udp_payload(buf, data, incl, orig, linktypes[iface])
            out_off[n] = off
            out_len[n] = length
            out_outcome[n] = outcome
            n += 1
        elif btype != PCAPNG_SHB and not _known_block(btype):
            state[3] += 1
        p += blen
    state[0] = 1 if big else 0
    state[1] = n_if
    return OK, n, p


@dataclass
class PacketTable:
    """One row per captured packet: where its UDP payload is, or why it has none."""

    payload_offset: np.ndarray  # int64
    payload_length: np.ndarray  # int64
    outcome: np.ndarray         # int8, REC_*
    FIELDS = ("payload_offset", "payload_length", "outcome")

    def __len__(self) -> int:
        return len(self.outcome)

    def count(self, outcome: int) -> int:
        return int(np.count_nonzero(self.outcome == outcome))


class Part(NamedTuple):
    """A part of a capture's packet table (``packet_parts``): rows first..first + n - 1."""

    first: int                  # the index of its first packet in the capture (0-based)
    payload_offset: np.ndarray  # int64
    payload_length: np.ndarray  # int64
    outcome: np.ndarray         # int8, REC_*
    stop: int                   # the file offset where the walk of these packets ended


def capture_format(head: bytes) -> str | None:
    """'pcap', 'pcapng' or None, from the first four bytes."""
    if len(head) < 4:
        return None
    le, be = int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")
    if le in PCAP_MAGICS or be in PCAP_MAGICS:
        return "pcap"
    if le == PCAPNG_SHB:
        return "pcapng"
    return None


def packet_parts(buf: np.ndarray, source: str, on_walked=None, part_bytes: int | None = None,
                 cut_end: list | None = None, skipped: dict | None = None) -> Iterator[Part]:
    """Walk a whole capture held in ``buf`` (e.g. a memory map), front to back, as parts of at
    most TABLE_BATCH packets (and, given part_bytes, of about that many bytes of the capture: a
    part ends at the first packet past them): each a ``Part`` (payload offsets, lengths,
    outcomes; ``stop``: where the walk of the part ended), handed over while the pages it names
    are still mapped in.

    on_walked(offset), if given, is told after each part but the last how far the walk has
    read (a mapping's pages before that offset may go), and at the end on_walked(size,
    final=True).

    A file that ends inside its last record (a capture still being written) is an error naming
    the packet, unless cut_end is a list: then the walk ends before that record, and
    (offset, packet number, bytes present) of it is appended to cut_end. skipped, if given,
    gets "unknown_blocks": a pcapng's blocks of types it does not know, skipped (0 for a pcap),
    once the walk is over."""
    fmt = capture_format(bytes(buf[:4]))
    size = buf.shape[0]
    # Rows a pass: a guess from the size (a frame is 64 bytes or more), at most TABLE_BATCH (a
    # day's capture guessed whole would be gigabytes of table at once); a capture that beats
    # it resumes where it stopped.
    cap = min(TABLE_BATCH, max(1024, size // 64))
    if fmt == "pcap":
        if size < PCAP_FILE_HEADER_SIZE:
            raise ITCHFormatError("pcap file header is cut short", source=source, offset=0)
        head = bytes(buf[:4])
        big = int.from_bytes(head, "big") in PCAP_MAGICS
        order = "big" if big else "little"
        # the link type is the low 16 bits (libpcap's LT_LINKTYPE); above them are reserved bits
        # and the FCS information (bit 26: each frame ends in an FCS of bits 28-31 16-bit
        # words), which the UDP header's length already leaves out
        linktype = int.from_bytes(bytes(buf[20:24]), order) & 0xFFFF
        snaplen = int.from_bytes(bytes(buf[16:20]), order)
        start = PCAP_FILE_HEADER_SIZE

        def walk(at, o, l, c):
            return walk_pcap(buf, at, big, linktype, snaplen, o, l, c, at + part_bytes if part_bytes else size)
    elif fmt == "pcapng":
        state = np.zeros(4, np.int64)
        linktypes = np.zeros(MAX_INTERFACES, np.int64)
        start = 0

        def walk(at, o, l, c):
            return walk_pcapng(buf, at, o, l, c, linktypes, state, at + part_bytes if part_bytes else size)
    else:
        raise ITCHFormatError("not a pcap or pcapng capture (unknown magic number)",
                              source=source, offset=0)
    at, rows = start, 0
    while True:
        o, l, c = np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int8)
        status, n, stop = walk(at, o, l, c)
        if status == CUT_AT_END and cut_end is not None:
            cut_end.append((stop, rows + n + 1, size - stop))
        elif status == CUT_AT_END:
            raise ITCHFormatError(f"the file ends inside packet {rows + n + 1} ({size - stop:,} bytes of it present): "
                                  "a capture still being written, or cut short (itchflow.read(..., strict=False) "
                                  "and `stats --lenient` read the packets before it)", source=source, offset=stop,
                                  packet=rows + n + 1)
        elif status != OK:
            # a record header is found where the one before it says its frame ends: a length too
            # short there reads the next header from inside that frame (probe 45)
            before = (f"; or the length of packet {rows + n:,}, the {'record' if fmt == 'pcap' else 'block'} before "
                      "it, is wrong") if rows + n and status in (BAD_RECORD, BAD_BLOCK) else ""
            raise ITCHFormatError(_STATUS_TEXT[status] + before, source=source, offset=stop, packet=rows + n + 1)
        yield Part(rows, o[:n], l[:n], c[:n], stop)
        rows += n
        if stop >= size or status == CUT_AT_END:
            break
        if on_walked is not None:
            on_walked(stop)
        at = stop
    if skipped is not None:
        skipped["unknown_blocks"] = int(state[3]) if fmt == "pcapng" else 0
    if on_walked is not None:
        on_walked(size, final=True)


def packet_table(buf: np.ndarray, source: str, on_walked=None, on_part=None,
                 cut_end: list | None = None, skipped: dict | None = None) -> PacketTable:
    """The whole capture's ``packet_parts`` as one PacketTable. on_part(offsets, lengths,
    outcomes), if given, gets each part's rows first, while the pages they name are still
    mapped in (a next pass over the same packets, fused with this one)."""
    parts = []
    for part in packet_parts(buf, source, on_walked, cut_end=cut_end, skipped=skipped):
        if on_part is not None:
            on_part(part.payload_offset, part.payload_length, part.outcome)
        parts.append(part)
    return PacketTable(*(np.concatenate([getattr(p, f) for p in parts]) for f in PacketTable.FIELDS))
