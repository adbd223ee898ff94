"""Every source as the same thing: chunks of whole BinaryFILE-framed ITCH messages.

``iter_chunks(source)`` accepts a path (raw BinaryFILE, gzip, pcap or pcapng, told apart
by their first bytes, not their names), ``"tail:PATH"`` or a ``sources.tail.Tail`` (a file
still being appended to), or any bytes-like / uint8 numpy buffer, and yields
``Chunk`` objects: a uint8 array of whole messages, the sequence number of the first, and
where it sits in the source (for error messages). Raw files are memory-mapped and handed
out without a copy; gzip is decompressed in bounded blocks; captures are reassembled in
(session, sequence) order with their counters in ``CaptureSource.stats``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from itchflow.errors import ITCHFormatError
from itchflow.sources.chunk import Chunk, as_uint8, describe, map_file  # noqa: F401  (re-exported)
from itchflow.wire.binaryfile import whole_messages_end

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_GZ_BLOCK = 8 << 20  # a corrupt stream loses at most this much before the error


def sniff(head: bytes) -> str:
    """'gzip', 'pcap', 'pcapng' or 'itch' (raw BinaryFILE) from the first bytes."""
    from itchflow.wire.pcap import capture_format

    if head[:2] == GZIP_MAGIC:
        return "gzip"
    return capture_format(head) or "itch"


def _gzip_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt or cut gzip stream raises, across zlib and isal."""
    import zlib

    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error)
    try:
        from isal import isal_zlib
        errors += (isal_zlib.error,)
    except ImportError:
        pass
    return errors


def _open_gzip(path):
    try:
        from isal import igzip  # about 3x faster than zlib's gzip where it installs
        return igzip.open(path, "rb")
    except ImportError:
        import gzip
        return gzip.open(path, "rb")


class CaptureSource:
    """A pcap/pcapng capture of MoldUDP64 packets, reassembled once on first use."""

    def __init__(self, buf: np.ndarray, name: str, strict: bool = True, dedup: bool = True):
        from itchflow.protocol.mold.capture import reassemble
        from itchflow.wire.pcap import packet_table

        self.capture = reassemble(buf, packet_table(buf, name), name, strict=strict, dedup=dedup)
        self.stats = self.capture.stats
        self.name = name

    def chunks(self) -> Iterator[Chunk]:
        data = self.capture.data
        for start, end, seq, session in self.capture.runs():
            yield Chunk(data[start:end], seq, self.name, None, session,
                        locator=lambda pos, start=start: self.capture.locate(start + pos))


def iter_chunks(source, *, gz_block: int = DEFAULT_GZ_BLOCK, strict: bool = True,
                capture_stats: dict | None = None, dedup: bool = True) -> Iterator[Chunk]:
    """Yield the source's messages as Chunks (see module doc).

    capture_stats, if given, is filled with the capture's counters (CaptureStats.to_dict())
    once a capture has been reassembled: duplicates, holes, heartbeats, malformed packets.
    dedup=False keeps every data packet of a capture, in capture order (no A/B de-duplication).
    """
    name = describe(source)
    if isinstance(source, str) and source.startswith("tail:"):
        from itchflow.sources.tail import Tail

        source = Tail(source[len("tail:"):])
    if hasattr(source, "_follow"):  # a Tail: follow a growing file
        yield from source
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a directory, not an ITCH file or capture")
        with open(path, "rb") as f:
            head = f.read(8)
        kind = sniff(head)
        if kind == "gzip":
            with _open_gzip(path) as f:
                yield from _gzip_source(f, name, gz_block, strict, capture_stats, dedup)
            return
        buf = map_file(path)
    else:
        buf = as_uint8(source)
        kind = sniff(bytes(buf[:8]))
        if kind == "gzip":
            import gzip
            import io
            with gzip.GzipFile(fileobj=io.BytesIO(buf.tobytes())) as f:
                yield from _gzip_source(f, name, gz_block, strict, capture_stats, dedup)
            return
    if kind in ("pcap", "pcapng"):
        yield from _capture_chunks(buf, name, strict, capture_stats, dedup)
        return
    yield Chunk(buf, 1, name, 0)


def _capture_chunks(buf, name, strict, capture_stats, dedup=True) -> Iterator[Chunk]:
    cap = CaptureSource(buf, name, strict=strict, dedup=dedup)
    if capture_stats is not None:
        capture_stats.update(cap.stats.to_dict())
    yield from cap.chunks()


def _read_gzip(f, n: int, name: str, offset: int) -> bytes:
    try:
        return f.read(n)
    except _gzip_errors() as e:  # corrupt or cut gzip stream
        raise ITCHFormatError(f"gzip stream is corrupt or cut short ({e}); the messages before "
                              "this offset were delivered", source=name + " (decompressed)",
                              offset=offset) from None


def _gzip_source(f, name: str, block: int, strict: bool, capture_stats, dedup=True) -> Iterator[Chunk]:
    """A gzip stream holds either BinaryFILE ITCH or a capture: look inside to tell."""
    first = _read_gzip(f, block, name, 0)
    if sniff(first[:8]) in ("pcap", "pcapng"):  # a capture is reassembled whole anyway
        rest = _read_gzip(f, -1, name, len(first))
        yield from _capture_chunks(np.frombuffer(first + rest, np.uint8), name + " (decompressed)",
                                   strict, capture_stats, dedup)
        return
    yield from _gzip_stream_chunks(f, name, block, first)


def _gzip_stream_chunks(f, name: str, block: int, first: bytes) -> Iterator[Chunk]:
    """Decompress in blocks, cut each at its last whole message, carry the rest over."""
    carry = np.zeros(0, np.uint8)
    offset = 0
    sequence = 1
    raw = first
    while raw:
        data = np.concatenate([carry, np.frombuffer(raw, np.uint8)]) if len(carry) else np.frombuffer(raw, np.uint8)
        stop, n = whole_messages_end(data, 0, len(data))
        if stop == 0 and len(data) >= 2 + 0xFFFF:
            stop = len(data)  # no whole message in a block bigger than any message: let frame() say why
        if stop:
            yield Chunk(data[:stop], sequence, name + " (decompressed)", offset)
            offset += stop
            sequence += n
        carry = data[stop:].copy() if stop < len(data) else np.zeros(0, np.uint8)
        raw = _read_gzip(f, block, name, offset + len(carry))
    if len(carry):
        yield Chunk(carry, sequence, name + " (decompressed)", offset)
