"""A day of BinaryFILE messages written as a pcap of the MoldUDP64 packets a feed sends.

For benchmarks and examples: the capture a listener on the feed would have taken (one line,
packets in order), or the same capture anonymised as published sample captures are (every
packet's sequence number 0). Each packet is an Ethernet / IPv4 / UDP frame to the feed's
multicast group; the pcap is written whole or not at all (``PATH.part`` until done).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from itchflow.protocol.mold.feed import MoldFeed
from itchflow.sources.chunk import map_file
from itchflow.wire.moldudp64 import SEQUENCE_OFFSET

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)   # microseconds, Ethernet
_ETHERNET = bytes.fromhex("01005e36 0c6f 020000000001 0800".replace(" ", ""))  # to 01:00:5e:36:0c:6f, IPv4
_GROUP = bytes([233, 54, 12, 111])
_SENDER = bytes([10, 0, 0, 1])


def write_capture(day: str | os.PathLike, out: str | os.PathLike, *, payload_bytes: int = 1400,
                  session: bytes | str = b"ITCHFLOW", anonymised: bool = False, port: int = 26477) -> dict:
    """Write the day's messages as a pcap of MoldUDP64 packets of at most payload_bytes each
    (anonymised: every packet's sequence number 0). Returns (packets, messages)."""
    feed = MoldFeed(map_file(day), session, payload_bytes, source=str(day))
    out = Path(out)
    part = out.with_name(out.name + ".part")
    with open(part, "wb", buffering=1 << 20) as f:
        f.write(PCAP_HEADER)
        for i in range(feed.n_packets):
            packet = bytearray(feed.packet_bytes(i))
            if anonymised:
                packet[SEQUENCE_OFFSET:SEQUENCE_OFFSET + 8] = bytes(8)
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(packet), 0, 0x4000, 64, 17, 0, _SENDER, _GROUP)
            udp = struct.pack(">HHHH", 40000, port, 8 + len(packet), 0)
            frame_bytes = len(_ETHERNET) + len(ip) + len(udp) + len(packet)
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1_000_000, i % 1_000_000, frame_bytes, frame_bytes))
            f.write(_ETHERNET + ip + udp + packet)
    os.replace(part, out)
    return {"packets": feed.n_packets, "messages": feed.messages}
