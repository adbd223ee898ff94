"""A gzip stream decompressed in bounded blocks, up to the very byte where it is cut or corrupt.

``gzip.GzipFile.read(n)`` decompresses up to n bytes and, when the stream turns out cut short
or corrupt, raises and drops what it had decompressed of that read: a day cut short in
transfer lost up to a whole block of good messages, and the error named the block's start.
Here the compressed bytes go through a decompress object a piece at a time, with the output
of each call bounded (a hostile stream that inflates a thousandfold still costs one block of
memory), so every good byte before the failure is delivered first and the failure is raised
after it. Concatenated members (``cat a.gz b.gz``, parallel compressors) are read one after
another and zero padding between them is skipped, as ``gzip`` does. isal's zlib (about 3x
faster) is used where it is installed.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator

READ_BYTES = 1 << 20    # compressed bytes read at a time
_GZIP = 16 + 15         # wbits: a gzip header and trailer, the largest window
GZIP_MAGIC = b"\x1f\x8b"


class GzipStreamError(Exception):
    """The stream failed after every good byte before it was yielded. ``compressed_read`` is how
    many compressed bytes had been read when the failure showed (at or just past it)."""

    def __init__(self, reason: str, compressed_read: int):
        super().__init__(reason)
        self.reason = reason
        self.compressed_read = compressed_read


def _zlib():
    try:
        from isal import isal_zlib
        return isal_zlib
    except ImportError:
        import zlib
        return zlib


def gzip_blocks(raw: BinaryIO, block: int) -> Iterator[bytes]:
    """Decompressed bytes of the gzip stream ``raw`` in blocks of at most ``block`` bytes.

    Raises GzipStreamError (after yielding everything decompressed before it) for a stream
    cut short or corrupt, one that is not gzip at all, or one with bytes after its last member
    that are neither zero padding nor another member.
    """
    z = _zlib()
    errors = (z.error, ValueError, EOFError, OSError)
    read = 0            # compressed bytes read so far
    raw_done = False
    feed = b""          # compressed bytes not yet taken by the decompressor
    d = None            # the current member's decompressor (None between members)
    out: list[bytes] = []
    size = 0

    def more() -> bytes:
        nonlocal read, raw_done
        got = raw.read(READ_BYTES)
        read += len(got)
        raw_done = not got
        return got

    members = 0         # whole members read
    while True:
        if d is None:   # between members: skip zero padding; the stream may end here
            feed = feed.lstrip(b"\0")
            while len(feed) < 2 and not raw_done:
                feed = (feed + more()).lstrip(b"\0")
            if not feed:
                break
            if members and feed[:2] != GZIP_MAGIC:
                # (probe 52: trailing garbage read as a member "cut short", a download cut in two)
                if out:
                    yield b"".join(out)
                at = read - len(feed)
                raise GzipStreamError(f"has bytes after its last whole member, from compressed byte {at:,} on, "
                                      f"that are not a gzip member (trailing garbage)", read)
            d = z.decompressobj(_GZIP)
        room = block - size
        try:
            chunk = d.decompress(feed, room)
        except errors as e:
            if out:
                yield b"".join(out)
            raise GzipStreamError(f"corrupt ({e})", read) from None
        if chunk:
            out.append(chunk)
            size += len(chunk)
            if size >= block:
                yield b"".join(out)
                out, size = [], 0
        if d.eof:
            feed = d.unused_data
            d = None
            members += 1
            continue
        feed = d.unconsumed_tail
        if feed or len(chunk) == room:  # output may be pending: drain it before reading on
            continue
        if raw_done:
            if out:
                yield b"".join(out)
            raise GzipStreamError("cut short: the compressed data ends inside a member", read)
        feed = more()
    if out:
        yield b"".join(out)
