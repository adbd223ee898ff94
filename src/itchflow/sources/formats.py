"""What a file holds, from its first bytes: a raw BinaryFILE day, a gzip stream or a capture.
(Its own module: both the file sources and ``tail:``, which refuses what is not a raw day, ask.)"""

from __future__ import annotations

GZIP_MAGIC = b"\x1f\x8b"


def sniff(head: bytes) -> str:
    """'gzip', 'pcap', 'pcapng' or 'itch' (raw BinaryFILE) from the first bytes."""
    from itchflow.wire.pcap import capture_format

    if head[:2] == GZIP_MAGIC:
        return "gzip"
    return capture_format(head) or "itch"
