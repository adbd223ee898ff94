"""Link-layer headers a capture may carry: the same MoldUDP64 packets read the same whatever
the link type in the file header says (frames rewritten here from a real Ethernet capture,
written with the formats' documented headers, not itchflow's)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from itch_reference import pcap_frames

import itchflow
from conftest import CAPTURES_DIR

MULTI = CAPTURES_DIR / "Nasdaq.Equities.TotalView.Itch.v5.0" / "Multiple.Packets.pcap"


def _ip(frame: bytes) -> bytes:
    """The IP packet of an Ethernet frame (with or without one 802.1Q tag, as this one has)."""
    start = 18 if frame[12:14] == b"\x81\x00" else 14
    assert frame[start - 2:start] == b"\x08\x00"   # IPv4
    return frame[start:]


def _pcap(frames: list[bytes], linktype: int) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
    for i, f in enumerate(frames):
        out += struct.pack("<IIII", 1_700_000_000, i, len(f), len(f)) + f
    return bytes(out)


def _sll(ip: bytes) -> bytes:
    """Linux cooked capture v1: packet type, ARPHRD, address length, 8 address bytes, protocol."""
    return struct.pack(">HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", 0x0800) + ip


def _null(ip: bytes) -> bytes:
    """BSD loopback: the address family (2 = AF_INET) in the writer's byte order."""
    return struct.pack("<I", 2) + ip


@pytest.mark.skipif(not MULTI.exists(), reason=f"real captures not found at {CAPTURES_DIR}")
@pytest.mark.parametrize("linktype,wrap", [
    (101, None), (228, None), (12, None), (14, None),   # raw IPv4: LINKTYPE_RAW/IPV4, DLT_RAW 12 and 14
    (113, _sll), (0, _null),
], ids=["raw-101", "ipv4-228", "dlt-raw-12", "dlt-raw-14", "sll-113", "null-0"])
def test_every_link_type_reads_like_the_ethernet_capture(tmp_path, linktype, wrap):
    """DLT_RAW's platform values 12 and 14 in a file header counted every packet unsupported
    and read nothing, without an error (libpcap reads them as raw IP)."""
    plain = itchflow.read(MULTI)
    ips = [_ip(f) for f in pcap_frames(MULTI.read_bytes())]
    path = tmp_path / f"link{linktype}.pcap"
    path.write_bytes(_pcap([wrap(ip) if wrap else ip for ip in ips], linktype))
    got = itchflow.read(path)
    assert got.messages == plain.messages > 0
    assert got.info.capture["unsupported"] == 0 and got.info.capture == plain.info.capture
    for code in plain.counts:
        assert np.array_equal(got[code], plain[code]), code


@pytest.mark.skipif(not MULTI.exists(), reason=f"real captures not found at {CAPTURES_DIR}")
@pytest.mark.parametrize("field", [0x2400_0001, 0x0400_0001, 0x0002_0001, 0xF000_0001],
                         ids=["fcs-4-bytes", "fcs-bit-0-length", "reserved-bit", "fcs-length-bits"])
def test_the_fcs_bits_above_the_link_type_do_not_change_it(tmp_path, field):
    """The link-type field's low 16 bits are the link type (libpcap's LT_LINKTYPE); bit 26 says
    every frame ends in an FCS of bits 28-31 16-bit words. An Ethernet capture with its FCS
    (0x24000001) was read as an unsupported link type: every packet counted "not MoldUDP64",
    no message, exit status 0."""
    plain = itchflow.read(MULTI)
    frames = pcap_frames(MULTI.read_bytes())
    fcs = 4 if field & 0x0400_0000 else 0
    path = tmp_path / "fcs.pcap"
    path.write_bytes(_pcap([f + b"\xde\xad\xbe\xef"[:fcs] for f in frames], field))
    got = itchflow.read(path)
    assert got.messages == plain.messages > 0
    assert got.info.capture["unsupported"] == 0 and got.info.capture == plain.info.capture
    for code in plain.counts:
        assert np.array_equal(got[code], plain[code]), code


def _damaged(frame: bytes, at: int, value: int) -> bytes:
    """frame with the 16-bit big-endian field at byte `at` set to value."""
    return frame[:at] + struct.pack(">H", value) + frame[at + 2:]


def test_whole_frames_whose_lengths_do_not_fit_them_are_counted_as_damaged(tmp_path):
    """Frames taken whole (captured length = original length) whose own headers do not fit
    them are damaged frames, not "unsupported" (as IPv6 extension headers and foreign link
    types are): an IPv4 total length past the frame's end (probe 29), a UDP length under its
    header, a UDP length past the IP total length, an Ethernet header cut short. A frame cut by
    the snap length stays "snapped"."""
    from itch_reference import encode, eth_ipv4_udp, mold_packet, pcap_file

    add = encode("S", {"stock_locate": 0, "tracking_number": 0, "timestamp": 1, "event_code": b"O"})
    good = [eth_ipv4_udp(mold_packet(b"SESSION", s, [add])) for s in (1, 2)]
    ip, udp = 14, 34   # offsets of the IPv4 and UDP headers in eth_ipv4_udp's frames
    frames = [good[0],
              _damaged(good[1], ip + 2, len(good[1]) - ip + 50),   # IP total length 50 bytes past the frame
              _damaged(good[1], udp + 4, 4),                       # UDP length under its 8-byte header
              _damaged(good[1], udp + 4, 400),                     # UDP length past the IP total length
              good[1][:10],                                        # an Ethernet header cut short
              good[1]]
    path = tmp_path / "damaged.pcap"
    path.write_bytes(pcap_file(frames))
    got = itchflow.read(path)
    c = got.info.capture
    assert (c["bad_frames"], c["unsupported"], c["snapped"], c["packets"]) == (4, 0, 0, 6)
    assert got.messages == 2 and c["gaps"] == 0   # the two good packets, sequences 1 and 2

    # the same frames as a snap length of 20 bytes left them: cut by the capture, not damaged
    snapped = bytearray(pcap_file([]))
    for i, f in enumerate(frames[1:3]):
        snapped += struct.pack("<IIII", 1_700_000_000 + i, i, 20, len(f)) + f[:20]
    path.write_bytes(bytes(snapped))
    c = itchflow.read(path).info.capture
    assert (c["snapped"], c["bad_frames"], c["unsupported"]) == (2, 0, 0)


def test_a_record_longer_than_its_packet_is_a_corrupt_record_not_a_gap(tmp_path):
    """A record whose captured length is more than the packet's original length swallowed the
    next record, read as one packet lost on the network (probe 36): no writer captures more
    than the packet had, so it is the corrupt header it is, named by its offset."""
    from itch_reference import encode, eth_ipv4_udp, mold_packet, pcap_file

    from itchflow.errors import ITCHFormatError

    add = encode("S", {"stock_locate": 0, "tracking_number": 0, "timestamp": 1, "event_code": b"O"})
    frames = [eth_ipv4_udp(mold_packet(b"SESSION", s, [add])) for s in (1, 2, 3)]
    data = bytearray(pcap_file(frames))
    second = 24 + 16 + len(frames[0])
    struct.pack_into("<I", data, second + 8, len(frames[1]) + 16 + len(frames[2]))   # incl past orig
    path = tmp_path / "swallow.pcap"
    path.write_bytes(bytes(data))
    with pytest.raises(ITCHFormatError, match="more than the packet's original length") as e:
        itchflow.read(path)
    assert e.value.offset == second
    # a header found where the record before says its frame ends: that length may be the wrong one (probe 45)
    assert "; or the length of packet 1, the record before it, is wrong" in str(e.value)


def test_a_pcapng_block_capturing_more_than_its_packet_is_corrupt_as_a_pcap_record_is(tmp_path):
    """Probe 45: the same corruption (captured length above the original length) was refused
    in a pcap and read in a pcapng."""
    from itch_reference import encode, eth_ipv4_udp, mold_packet, pcapng_file

    from itchflow.errors import ITCHFormatError

    add = encode("S", {"stock_locate": 0, "tracking_number": 0, "timestamp": 1, "event_code": b"O"})
    data = bytearray(pcapng_file([eth_ipv4_udp(mold_packet(b"SESSION", s, [add])) for s in (1, 2)]))
    shb_idb = 28 + 20
    second = shb_idb + struct.unpack_from("<I", data, shb_idb + 4)[0]
    struct.pack_into("<I", data, second + 24, 10)   # the second EPB's original length: 10 bytes
    path = tmp_path / "orig.pcapng"
    path.write_bytes(bytes(data))
    with pytest.raises(ITCHFormatError, match="capture more than the packet's original length") as e:
        itchflow.read(path)
    assert e.value.offset == second and e.value.packet == 2


def test_pcapng_blocks_of_unknown_types_are_skipped_and_counted(tmp_path):
    """Probe 45: one bit flipped in a packet block's type (6 -> 0x206) dropped that packet with no
    counter moving. Blocks of types the reader does not know are still skipped, as the format
    asks, and counted; blocks it knows carry no packet (a name resolution block) are not."""
    from click.testing import CliRunner
    from itch_reference import _block, encode_body, eth_ipv4_udp, mold_packet, pcapng_file

    from itchflow.cli import main

    add = encode_body("S", {"stock_locate": 0, "tracking_number": 0, "timestamp": 1, "event_code": b"O"})
    data = bytearray(pcapng_file([eth_ipv4_udp(mold_packet(b"SESSION", s, [add])) for s in (1, 2, 3)]))
    data += _block("<", 4, bytes(8))   # a name resolution block: known, no packet
    shb_idb = 28 + 20
    second = shb_idb + struct.unpack_from("<I", data, shb_idb + 4)[0]
    struct.pack_into("<I", data, second, 0x206)   # the second packet block's type, one bit flipped
    path = tmp_path / "flip.pcapng"
    path.write_bytes(bytes(data))
    d = itchflow.read(path)
    assert d.counts["S"] == 2 and d.info.capture["unknown_blocks"] == 1 and d.info.capture["packets"] == 2
    assert d.info.capture["gaps"] == 1
    res = CliRunner().invoke(main, ["stats", str(path), "-q"])
    assert res.exit_code == 0 and "1 pcapng block of unknown types skipped" in " ".join(res.output.split()), res.output
