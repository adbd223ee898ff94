"""Ethernet, 802.1Q/802.1ad, IPv4 and UDP headers: offsets declared once, and the one
compiled finder of a UDP payload in a frame (packet rings, AF_XDP frames, captures).

  Ethernet (14): destination @0, source @6, ethertype @12 (big-endian).
  VLAN tag (4), after the source address: TCI @0, the next ethertype @2.
  IPv4 (>= 20): version (high nibble) / IHL (low nibble, in 4-byte words) @0, total length @2,
                flags + fragment offset @6, protocol @9, source @12, destination @16.
  UDP (8): source port @0, destination port @2, length @4 (header included), checksum @6.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.hw.endian import be16, be32

ETH_HEADER = 14
ETH_TYPE = 12
VLAN_TAG = 4
VLAN_TYPE = 2                      # the inner ethertype, inside a tag
ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETHERTYPE_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
MAX_VLAN_TAGS = 2

IPV4_VERSION_IHL = 0
IPV4_TOTAL_LENGTH = 2
IPV4_FLAGS_FRAG = 6
IPV4_PROTOCOL = 9
IPV4_CHECKSUM = 10
IPV4_SOURCE = 12
IPV4_DEST = 16
IPV4_MIN_HEADER = 20
IPV4_FRAGMENT_MASK = 0x3FFF        # more-fragments flag and the offset: either means a fragment
IPPROTO_UDP = 17

UDP_SOURCE_PORT = 0
UDP_DEST_PORT = 2
UDP_LENGTH = 4
UDP_CHECKSUM = 6
UDP_HEADER = 8

# ipv4_udp outcomes (IP_CUT_SHORT: the IP header itself; CUT_SHORT: the UDP header or payload;
# BAD_LENGTH: the IP total length and the UDP length disagree, as the kernel's stack refuses)
UDP_OK, NOT_UDP, FRAGMENT, CUT_SHORT, NOT_IPV4, OTHER_DESTINATION, IP_CUT_SHORT = 0, 1, 2, 3, 4, 5, 6
BAD_LENGTH, BAD_IP_CHECKSUM, BAD_UDP_CHECKSUM = 7, 8, 9
OUTCOMES = 10
OUTCOME_NAMES = ("udp", "not_udp", "fragment", "cut_short", "not_ipv4", "other_destination", "ip_cut_short",
                 "bad_length", "bad_ip_checksum", "bad_udp_checksum")

# What ipv4_udp verifies besides the lengths (bits of ``verify``). A tap on a live interface
# (TPACKET_V3, AF_XDP) sees frames before the stack that would refuse a bad checksum, and a
# bad copy taken as data would make the good one a duplicate; a capture file is read as it was
# taken (a sender's own capture holds checksums its NIC filled in later).
VERIFY_IP_CHECKSUM, VERIFY_UDP_CHECKSUM = 1, 2


@njit(inline="always", nogil=True, cache=True)
def ones_sum(m, p, n, acc):
    """acc plus the big-endian 16-bit words of m[p:p+n] (an odd last byte padded with zero),
    unfolded: the Internet checksum's sum (RFC 1071), folded by ``folded``."""
    k = p
    stop = p + (n & ~1)
    while k < stop:
        acc += (np.int64(m[k]) << 8) | np.int64(m[k + 1])
        k += 2
    if n & 1:
        acc += np.int64(m[stop]) << 8
    return acc


@njit(inline="always", nogil=True, cache=True)
def folded(acc):
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


@njit(inline="always", nogil=True, cache=True)
def ethernet_network(m, p, end):
    """(ethertype, offset of the network header) of the Ethernet frame at m[p:end], past up to
    two VLAN tags; (-1, 0) when the frame is cut short."""
    if p + ETH_HEADER > end:
        return np.int64(-1), np.int64(0)
    etype = np.int64(be16(m, p + ETH_TYPE))
    q = p + ETH_HEADER
    for _ in range(MAX_VLAN_TAGS):
        if etype != ETHERTYPE_VLAN and etype != ETHERTYPE_QINQ:
            break
        if q + VLAN_TAG > end:
            return np.int64(-1), np.int64(0)
        etype = np.int64(be16(m, q + VLAN_TYPE))
        q += VLAN_TAG
    return etype, np.int64(q)


@njit(inline="always", nogil=True, cache=True)
def ipv4_udp(m, ip, end, port, addr, verify):
    """(outcome, payload offset, payload length) of the IPv4 packet at m[ip:end].

    port, addr: keep only datagrams to this destination port / IPv4 address (as a big-endian
    u32); 0 accepts any. IP options (IHL > 5) are skipped; fragments are not reassembled.
    The payload length is the UDP header's (not the frame's, which may be padded); a UDP
    length past the IP total length, or an IP total length under its headers, is BAD_LENGTH
    (the stack drops both). verify: VERIFY_* bits (checksums; a UDP checksum of 0 is none)."""
    if ip + IPV4_MIN_HEADER > end:
        return IP_CUT_SHORT, np.int64(0), np.int64(0)
    vi = np.int64(m[ip + IPV4_VERSION_IHL])
    if (vi >> 4) != 4:
        return NOT_IPV4, np.int64(0), np.int64(0)
    ihl = (vi & 0x0F) * 4
    if ihl < IPV4_MIN_HEADER:
        return NOT_IPV4, np.int64(0), np.int64(0)
    if m[ip + IPV4_PROTOCOL] != IPPROTO_UDP:
        return NOT_UDP, np.int64(0), np.int64(0)
    if (np.int64(be16(m, ip + IPV4_FLAGS_FRAG)) & IPV4_FRAGMENT_MASK) != 0:
        return FRAGMENT, np.int64(0), np.int64(0)
    if addr != 0 and np.int64(be32(m, ip + IPV4_DEST)) != addr:
        return OTHER_DESTINATION, np.int64(0), np.int64(0)
    u = ip + ihl
    if u + UDP_HEADER > end:
        return CUT_SHORT, np.int64(0), np.int64(0)
    if port != 0 and np.int64(be16(m, u + UDP_DEST_PORT)) != port:
        return OTHER_DESTINATION, np.int64(0), np.int64(0)
    total = np.int64(be16(m, ip + IPV4_TOTAL_LENGTH))
    ulen = np.int64(be16(m, u + UDP_LENGTH))
    if total < ihl + UDP_HEADER or ulen < UDP_HEADER or ulen > total - ihl:
        return BAD_LENGTH, np.int64(0), np.int64(0)
    if ip + total > end:
        return CUT_SHORT, np.int64(0), np.int64(0)
    if (verify & VERIFY_IP_CHECKSUM) != 0 and folded(ones_sum(m, ip, ihl, np.int64(0))) != 0xFFFF:
        return BAD_IP_CHECKSUM, np.int64(0), np.int64(0)
    if (verify & VERIFY_UDP_CHECKSUM) != 0 and be16(m, u + UDP_CHECKSUM) != 0:
        # pseudo-header: source and destination addresses, protocol, UDP length
        acc = ones_sum(m, ip + IPV4_SOURCE, 8, np.int64(IPPROTO_UDP) + ulen)
        if folded(ones_sum(m, u, ulen, acc)) != 0xFFFF:
            return BAD_UDP_CHECKSUM, np.int64(0), np.int64(0)
    return UDP_OK, np.int64(u + UDP_HEADER), ulen - UDP_HEADER


@njit(inline="always", nogil=True, cache=True)
def udp_payload(m, ip, end, port, addr):
    """(payload offset, payload length) of an IPv4 UDP datagram to ``addr``:``port`` (0: any)
    whose IP header starts at m[ip]; (-1, 0) for anything else or anything cut short."""
    outcome, off, length = ipv4_udp(m, ip, end, port, addr, 0)
    if outcome != UDP_OK:
        return np.int64(-1), np.int64(0)
    return off, length


@njit(inline="always", nogil=True, cache=True)
def ethernet_udp(m, p, end, port, addr, verify):
    """(outcome, payload offset, payload length) of the Ethernet frame at m[p:end]."""
    etype, ip = ethernet_network(m, p, end)
    if etype < 0:
        return IP_CUT_SHORT, np.int64(0), np.int64(0)
    if etype != ETHERTYPE_IPV4:
        return NOT_IPV4, np.int64(0), np.int64(0)
    return ipv4_udp(m, ip, end, port, addr, verify)


def ipv4_u32(address: str) -> int:
    """'10.1.2.3' -> the big-endian u32 the finders compare with (0 for '' / 0.0.0.0)."""
    import socket

    if not address or address == "0.0.0.0":
        return 0
    return int.from_bytes(socket.inet_aton(address), "big")


def udp_sender(m, payload: int) -> str | None:
    """The sender ("A.B.C.D:PORT") of the IPv4/UDP datagram whose payload starts at m[payload],
    read back from the headers in front of it (IP options allowed: the nearest IPv4 header of
    a UDP datagram that ends at the UDP header is taken); None when there is none. For
    reports only (a malformed packet names its peer), not for a hot path."""
    import socket

    udp = payload - UDP_HEADER
    for ihl in range(5, 16):
        ip = udp - 4 * ihl
        if ip < 0:
            break
        if int(m[ip + IPV4_VERSION_IHL]) == 0x40 | ihl and int(m[ip + IPV4_PROTOCOL]) == IPPROTO_UDP:
            source = bytes(np.asarray(m[ip + IPV4_SOURCE:ip + IPV4_SOURCE + 4], np.uint8))
            return f"{socket.inet_ntop(socket.AF_INET, source)}:{int(m[udp]) << 8 | int(m[udp + 1])}"
    return None
