"""Every source as the same thing: chunks of whole BinaryFILE-framed ITCH messages.

``iter_chunks(source)`` accepts a path (raw BinaryFILE, gzip, pcap or pcapng, told apart
by their first bytes, not their names), an fsspec URL (``file://`` read as a path), ``"-"``
(standard input), an open binary file, ``"tail:PATH"`` or a ``sources.tail.Tail`` (a file
still being appended to), or any bytes-like / uint8 numpy buffer, and yields
``Chunk`` objects: a uint8 array of whole messages, the sequence number of the first, and
where it sits in the source (for error messages). Raw files are memory-mapped and handed
out without a copy; gzip is decompressed in bounded blocks; captures are put in
(session, sequence) order with their counters in ``CaptureSource.stats`` and copied out in
bounded pieces (a capture that is not a file on disk, gzipped or piped, is first written to
an unnamed temporary file: ``spool``).
"""

from __future__ import annotations

import errno
import io
import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from itchflow.errors import ITCHFormatError, ScratchSpaceError, missing_file
from itchflow.sources.chunk import (  # noqa: F401  (re-exported)
    Chunk, Passes, WalkedPages, as_uint8, describe, file_mapping, map_file, raise_if_shrunk, shrunk)
from itchflow.sources.ahead import ahead
from itchflow.sources.formats import GZIP_MAGIC, sniff  # noqa: F401  (re-exported)
from itchflow.sources.gzip_stream import GzipStreamError, gzip_blocks
from itchflow.wire.binaryfile import whole_messages_end

DEFAULT_GZ_BLOCK = 8 << 20  # decompressed bytes a block (every good byte before a corrupt spot is delivered)
GZ_CHUNKS_AHEAD = 2         # a gzip day's chunks decompressed ahead of the consumer, at most (sources.ahead)


class CaptureSource:
    """A pcap/pcapng capture of MoldUDP64 packets: planned in (session, sequence) order when
    made, its stream copied out piece by piece as it is read (``MoldCapture.pieces``)."""

    def __init__(self, buf: np.ndarray, name: str, strict: bool = True, dedup: bool = True,
                 piece_bytes: int | None = None, join_runs: bool = False, passes: Passes | None = None):
        from itchflow.protocol.mold.capture import plan_capture

        self.mapping = file_mapping(buf)  # a capture file's own mapping, checked after each read of it
        # Positions in the source (``Chunk.position``): the capture is walked to be planned, then
        # read, the last two of ``passes`` (a gzipped capture was decompressed in the one before).
        self.passes = Passes(len(buf), 2) if passes is None else passes
        self._plan_pass = self.passes.passes - 2

        def walked():   # each walk of planning: its pages go, its position is told
            release = WalkedPages(self.mapping).release

            def on_walked(upto: int, final: bool = False) -> None:
                release(upto, final=final)
                self.passes.tell(self._plan_pass, upto, len(buf))
            return on_walked

        # Each walk over the mapping (the packet table fused with the index; the copy-out) lets
        # the pages it has passed go from this process (``WalkedPages``), as a raw day's chunk
        # does: a day's capture resident whole would be 10-15 GB against a Dask worker's memory
        # limit. The index reads each part of the table while its pages are mapped in.
        self.plan = plan_capture(buf, name, strict=strict, dedup=dedup, walked=walked)
        self.stats = self.plan.stats
        self.name = name
        self.piece_bytes = piece_bytes
        self.join_runs = join_runs
        self._check_intact()

    def _check_intact(self) -> None:
        """Raise if the capture file shrank or was written to while it was read (what was read
        is then not the file's): after planning, and after each piece is copied out, before it
        is handed on."""
        raise_if_shrunk(self.mapping, self.name)

    def chunks(self) -> Iterator[Chunk]:
        pages = WalkedPages(self.mapping)
        part_start = 0   # where the part starts in the capture
        for capture, stop in self.plan.parts():
            for data, seq, session, start, runs in capture.pieces(
                    self.piece_bytes, on_walked=lambda upto, final=False, stop=stop: pages.release(min(upto, stop)),
                    join_runs=self.join_runs):
                self._check_intact()
                # the capture's bytes behind the piece, in proportion to its place in the part's stream
                span = tuple(self.passes.at(self._plan_pass + 1, part_start + (stop - part_start) * at
                                            // max(capture.size, 1), len(self.plan.buf))
                             for at in (start, start + len(data)))
                yield Chunk(data, seq, self.name, None, session,
                            locator=lambda pos, start=start, capture=capture: capture.locate(start + pos), runs=runs,
                            span=span)
            part_start = stop
        pages.release(len(self.plan.buf), final=True)


@dataclass(frozen=True)
class CaptureReading:
    """How a capture is read (see ``iter_chunks``)."""

    strict: bool = True
    capture_stats: dict | None = None
    dedup: bool = True
    piece_bytes: int | None = None
    join_runs: bool = False
    on_position: Callable[[int], None] | None = None
    gz_ahead: bool = False


def iter_chunks(source, *, gz_block: int = DEFAULT_GZ_BLOCK, strict: bool = True,
                capture_stats: dict | None = None, dedup: bool = True,
                piece_bytes: int | None = None, join_runs: bool = False,
                on_position: Callable[[int], None] | None = None, gz_ahead: bool = False) -> Iterator[Chunk]:
    """Yield the source's messages as Chunks (see module doc).

    capture_stats, if given, is filled with the capture's counters (CaptureStats.to_dict())
    once a capture has been planned: duplicates, holes, heartbeats, malformed packets.
    dedup=False keeps every data packet of a capture, in capture order (no A/B de-duplication).
    piece_bytes: a capture's stream is copied out in pieces of at most this many bytes
    (default ``protocol.mold.capture.PIECE_BYTES``); a reader that keeps all it decodes anyway
    (``read``) may ask for whole runs (a huge value), one copy and no joining of parts.
    join_runs: a capture's consecutive runs of one session are joined into chunks of up to
    piece_bytes, each saying where its sequence numbers restart (``Chunk.runs``): for a consumer
    that numbers messages by ``Chunk.sequence_numbers``, or not at all. Without it every run is
    a chunk of its own: one a packet for an anonymised capture or dedup=False (microseconds each).
    on_position(position), if given, is told how far through the source (``Chunk.position``) the
    work before the first chunk has got: planning a capture (and decompressing a gzipped one)
    takes the first passes of its way, reading it the last.
    gz_ahead: a gzip day in a file or a buffer is decompressed on a thread of its own, up to
    GZ_CHUNKS_AHEAD chunks ahead (``sources.ahead``), for a consumer whose own work on a chunk
    lets go of the GIL (books, decoding a piece): the two overlap (books from a 10 M-message
    gzip day: 0.64 s against 1.15). A consumer that only frames (``stats``) is decompression-
    bound either way, and ``read``, which frames every chunk before it decodes any, ran 5-8%
    slower with it.
    """
    opts = CaptureReading(strict, capture_stats, dedup, piece_bytes, join_runs, on_position, gz_ahead)
    if isinstance(source, str) and source.startswith("file://"):   # a local path, named as one
        source = source[len("file://"):]
    name = describe(source)
    if isinstance(source, str) and source.startswith("tail:"):
        from itchflow.sources.tail import Tail

        source = Tail(source[len("tail:"):])
    if hasattr(source, "_follow"):  # a Tail: follow a growing file
        yield from source
        return
    if hasattr(source, "read") and not isinstance(source, (np.ndarray, bytes, bytearray, memoryview)):
        # an open binary file (``open(path, "rb")``, ``gzip.open``, an fsspec file): read once,
        # from where it stands, as a pipe is
        yield from _stream_chunks(_binary(source, name), name, gz_block, opts, base=_tell(source))
        return
    if isinstance(source, str) and source == "-":   # standard input (``zcat day.gz | itchflow stats -``)
        import sys

        if sys.stdin is None:
            raise OSError(errno.EBADF, "standard input is closed", "-")
        yield from _stream_chunks(sys.stdin.buffer, "<stdin>", gz_block, opts)
        return
    if isinstance(source, str) and "://" in source:   # s3://, gs://, https://, memory:// ...: streamed
        yield from _url_chunks(source, gz_block, opts)
        return
    if isinstance(source, (str, os.PathLike)):
        if os.fspath(source) in ("", b""):   # (Path('') is '.': "'.': is a directory", probe 52)
            raise FileNotFoundError(errno.ENOENT, "'' is not a file name", "")
        path = Path(source)
        if not path.exists():
            raise missing_file(path)
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a directory, not an ITCH file or capture")
        if not path.is_file():  # a pipe, FIFO or device (`<(zcat day.gz)`): read once, as a stream
            yield from _stream_source(path, name, gz_block, opts)
            return
        with open(path, "rb") as f:
            kind = sniff(f.read(8))
            if kind == "gzip":
                f.seek(0)
                yield from _gzip_source(f, name, gz_block, opts)
                return
        buf = map_file(path)
        mapping = file_mapping(buf)  # the file's own mapping: consumers may let go of its pages
    else:
        buf = as_uint8(source)
        mapping = None  # a caller's buffer (even a mapping of theirs) is left as it is
        kind = sniff(bytes(buf[:8]))
        if kind == "gzip":
            yield from _gzip_source(io.BytesIO(buf.tobytes()), name, gz_block, opts)
            return
    if kind in ("pcap", "pcapng"):
        yield from _capture_chunks(buf, name, opts)
        return
    chunk = Chunk(buf, 1, name, 0, mapping=mapping)
    yield chunk
    chunk.check_intact()  # a consumer that read it all without error may still have read zeros


def _url_chunks(url: str, block: int, opts: CaptureReading) -> Iterator[Chunk]:
    """A source at an fsspec URL, read once as a stream in blocks of whole messages (a capture
    kept in a temporary file): a worker never holds the whole day."""
    try:
        import fsspec
    except ImportError:
        raise ImportError(f"{url}: reading a URL needs fsspec (pip install 'itchflow[dask]' or fsspec "
                          f"and the filesystem's package, such as s3fs)") from None
    try:
        raw = fsspec.open(url, "rb").open()
    except FileNotFoundError:
        raise FileNotFoundError(f"{url}: no such file") from None
    with raw:
        yield from _stream_chunks(raw, url, block, opts)


def _binary(stream, name: str):
    """stream, refused with its name if it was opened in text mode (it would hand over str)."""
    mode = getattr(stream, "mode", "b")
    if isinstance(stream, io.TextIOBase) or (isinstance(mode, str) and "b" not in mode):
        raise TypeError(f"{name}: a file opened in text mode; open it in binary mode ('rb')")
    return stream


class _Replayed:
    """A stream whose first bytes were read to tell its kind: they are read again first."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.rest.read(n)
        if n is None or n < 0:
            out, self.head = self.head + self.rest.read(), b""
            return out
        out, self.head = self.head[:n], self.head[n:]
        return out

    def read1(self, n: int = -1) -> bytes:
        """What is there (the first bytes again, then one read of the stream's)."""
        if not self.head:
            return self.rest.read1(n)
        return self.read(n)


def _stream_source(path: Path, name: str, block: int, opts: CaptureReading) -> Iterator[Chunk]:
    """A source that is not a regular file cannot be mapped (its size is 0: mapping it read
    nothing, and reopening a pipe to sniff it lost its first bytes): it is read once, as a
    stream (``stream_chunks``)."""
    with open(path, "rb") as f:
        yield from _stream_chunks(f, name, block, opts)


def stream_chunks(stream, name: str, *, block: int = DEFAULT_GZ_BLOCK, strict: bool = True,
                  capture_stats: dict | None = None, dedup: bool = True,
                  join_runs: bool = False) -> Iterator[Chunk]:
    """The Chunks of a source read once from an open binary stream (a pipe, a device, an
    fsspec URL), told apart by its first bytes as a file is: raw messages and gzip are read
    in blocks of at most ``block`` bytes, whole messages at a time; a capture is kept in a
    temporary file (``spool``) and read as a capture file is (join_runs: as ``iter_chunks``)."""
    yield from _stream_chunks(stream, name, block, CaptureReading(strict, capture_stats, dedup, join_runs=join_runs))


def _tell(stream) -> int:
    """Where an open file stands (its offsets in errors count from the file's start, as its
    name says: a file read from mid-way named a valid message's offset); 0 for a pipe."""
    try:
        return max(int(stream.tell()), 0) if stream.seekable() else 0
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return 0


def _stream_chunks(stream, name: str, block: int, opts: CaptureReading, base: int = 0) -> Iterator[Chunk]:
    """A stream read once; base: the offset in its file of its first byte (a raw day's)."""
    head = b""
    while len(head) < 8:  # a pipe may hand the first bytes over in pieces
        got = stream.read(8 - len(head))
        if not got:
            break
        head += got
    replayed = _Replayed(head, stream)
    kind = sniff(head)
    if kind == "gzip":
        yield from _gzip_source(replayed, name, block, opts)
    elif kind in ("pcap", "pcapng"):  # a capture is sorted whole: kept on disk, not in memory
        yield from _capture_chunks(spool(iter(lambda: replayed.read(block), b""), name), name, opts)
    elif _file_size(stream) is None and hasattr(stream, "read1") and (fd := _fileno(stream)) is not None:
        yield from message_chunks(_arriving_blocks(replayed, fd, block), name, offset=base)
    else:
        yield from message_chunks(iter(lambda: replayed.read(block), b""), name, offset=base)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _arriving_blocks(stream, fd: int, block: int) -> Iterator[bytes]:
    """A pipe's or socket's bytes as they arrive: each block what has come (at least a byte,
    waited for; at most ``block``), not ``block`` bytes, for which a read waited: a live writer's
    messages (``tail -f day | itchflow run --source -``) went nowhere until 8 MiB had come."""
    import select

    while True:
        got = stream.read1(block)
        if not got:
            return
        parts, n = [got], len(got)
        while n < block and select.select([fd], [], [], 0)[0]:   # more is there now: one block
            more = stream.read1(block - n)
            if not more:
                break
            parts.append(more)
            n += len(more)
        yield got if len(parts) == 1 else b"".join(parts)


class _Counted:
    """A binary stream that counts the bytes read from it: a gzip source's position is its
    compressed bytes read (its file's size is the end), not the decompressed ones."""

    def __init__(self, raw):
        self.raw, self.count = raw, 0

    def read(self, n: int = -1) -> bytes:
        got = self.raw.read(n)
        self.count += len(got)
        return got


def spool(blocks: Iterable[bytes], name: str, on_block: Callable[[], None] | None = None) -> np.ndarray:
    """The bytes of a stream (a decompressed or piped capture) written to an unnamed temporary
    file (``tempfile``: $TMPDIR, else /tmp) and mapped read-only: a capture is put in order as
    a whole, and a day's capture decompressed into memory would be 10-15 GB of it (a small
    gzip can hold far more than that). The file is gone once the mapping is."""
    import mmap
    import tempfile

    def failed(e: OSError) -> OSError:
        try:
            where = f"in {tempfile.gettempdir()} "
        except OSError:   # no usable folder at all (gettempdir raises again, which hid this message)
            where = "(no temporary folder could be used: $TMPDIR, /tmp, /var/tmp, /usr/tmp, .) "
        return ScratchSpaceError(e.errno, f"{name}: could not keep the capture in a temporary file {where}"
                                          f"({e.strerror or e}); set TMPDIR to a directory with room for it")

    try:
        f = tempfile.TemporaryFile(prefix="itchflow-capture-")
    except OSError as e:
        raise failed(e) from None
    with f:
        size = 0
        stream = iter(blocks)
        while True:
            try:
                raw = next(stream, None)
            except OSError as e:   # the stream itself failed (a pipe, a URL): nothing was delivered
                raise ITCHFormatError(f"reading the capture failed after {size:,} bytes ({e}); no message "
                                      "of it was delivered", source=name, offset=size) from None
            except GzipStreamError as e:   # (it said "byte offset 0" and "the messages before it were
                # delivered", of a capture that is read only once whole: probe 32)
                raise ITCHFormatError(f"gzip stream {e.reason} ({e.compressed_read:,} compressed bytes read) "
                                      f"after {size:,} bytes of the capture; a capture is read once it is whole, "
                                      "so no message of it was delivered", source=name, offset=size) from None
            if raw is None:
                break
            try:
                f.write(raw)
            except OSError as e:
                raise failed(e) from None
            size += len(raw)
            if on_block is not None:   # progress: how far through the stream
                on_block()
        if size == 0:
            return np.zeros(0, np.uint8)
        try:
            f.flush()
            return np.frombuffer(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ), np.uint8)
        except OSError as e:
            raise failed(e) from None


def _capture_chunks(buf, name, opts: CaptureReading, passes: Passes | None = None) -> Iterator[Chunk]:
    passes = Passes(len(buf), 2, opts.on_position) if passes is None else passes
    cap = CaptureSource(buf, name, strict=opts.strict, dedup=opts.dedup, piece_bytes=opts.piece_bytes,
                        join_runs=opts.join_runs, passes=passes)
    if opts.capture_stats is not None:
        opts.capture_stats.update(cap.stats.to_dict())
    yield from cap.chunks()


def _gzip_source(raw, name: str, block: int, opts: CaptureReading) -> Iterator[Chunk]:
    """A gzip stream holds either BinaryFILE ITCH or a capture: look inside to tell."""
    raw = _Counted(raw)
    blocks = gzip_blocks(raw, block)
    name = name + " (decompressed)"
    try:
        first = next(blocks, b"")
        if sniff(first[:8]) in ("pcap", "pcapng"):  # a capture is sorted whole: kept on disk, not in memory
            held = [first]
            del first   # written out, the first block is let go like the others
            # decompressed to disk, planned, read: three passes over the file's size
            size = _file_size(raw.raw)
            passes = Passes(size, 3, opts.on_position) if size else None
            told = (lambda: passes.tell(0, raw.count, size)) if passes else None
            whole = spool(_taken_first(held, blocks), name, told)
            yield from _capture_chunks(whole, name, opts, passes)
            return
    except GzipStreamError as e:   # before any message was delivered: a small day's first block is all of it
        raise stream_error(e, name, 0, 0) from None
    chunks = message_chunks(itertools.chain([first], blocks), name, position=lambda: raw.count)
    if opts.gz_ahead and _file_size(getattr(raw.raw, "rest", raw.raw)) is not None:
        # a regular file or a buffer, whose reads never stall: the next blocks are decompressed
        # (and cut into chunks) on a thread of their own while this one's consumer works
        chunks = ahead(chunks, GZ_CHUNKS_AHEAD, name="itchflow-gunzip")
    yield from chunks


def _file_size(stream) -> int | None:
    """The size of what an open binary stream reads from the start, where it is known (a regular
    file, an in-memory buffer); None for a pipe or a socket."""
    try:
        st = os.fstat(stream.fileno())
        return st.st_size if stat.S_ISREG(st.st_mode) else None
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    view = getattr(stream, "getbuffer", None)
    return view().nbytes if view is not None else None


def _taken_first(held: list, rest: Iterator[bytes]) -> Iterator[bytes]:
    """held's one item (taken out of it), then rest's."""
    yield held.pop()
    yield from rest


def stream_error(e: Exception, name: str, offset: int, cut: int) -> ITCHFormatError:
    """The error for a stream that failed after ``offset`` bytes of whole messages were
    delivered, ``cut`` bytes of a message split there not. At offset 0 none was: a small gzip
    day whose checksum fails at its end fails in its first block (it said "the messages before
    byte offset 0 were delivered": probe 45)."""
    what = (f"gzip stream {e.reason} ({e.compressed_read:,} compressed bytes read)"
            if isinstance(e, GzipStreamError) else f"stream is corrupt or cut short ({e})")
    tail = f"; the {cut:,} bytes of the message cut there were not" if cut else ""
    delivered = "the messages before this offset were delivered" if offset else "no message of it was delivered"
    return ITCHFormatError(f"{what}; {delivered}{tail}", source=name, offset=offset)


def message_chunks(blocks: Iterable[bytes], name: str, position: Callable[[], int] | None = None,
                   offset: int = 0) -> Iterator[Chunk]:
    """Cut a stream of byte blocks into Chunks of whole messages, carrying a message split
    between blocks over to the next. A stream that fails (GzipStreamError, OSError) after the
    messages before it were yielded becomes an ITCHFormatError naming the offset of the first
    byte not delivered; a stream that simply ends inside a message yields that message's
    bytes last, for the framing to name it. position(), if given, is how far through the
    source the blocks so far came from (a gzip day's compressed bytes): each chunk's span.
    offset: where the first block starts in its source (a file read from mid-way)."""
    carry = np.zeros(0, np.uint8)
    sequence = 1
    passed = 0   # position() when the last chunk was cut

    def span() -> tuple[int, int] | None:
        nonlocal passed
        if position is None:
            return None
        a, passed = passed, max(passed, position())
        return a, passed

    try:
        for raw in blocks:
            data = np.concatenate([carry, np.frombuffer(raw, np.uint8)]) if len(carry) else np.frombuffer(raw, np.uint8)
            stop, n = whole_messages_end(data, 0, len(data))
            if stop == 0 and len(data) >= 2 + 0xFFFF:
                stop = len(data)  # no whole message in a block bigger than any message: let frame() say why
            if stop:
                yield Chunk(data[:stop], sequence, name, offset, span=span())
                offset += stop
                sequence += n
            carry = data[stop:].copy() if stop < len(data) else np.zeros(0, np.uint8)
    except (GzipStreamError, OSError) as e:
        raise stream_error(e, name, offset, len(carry)) from None
    if len(carry):
        yield Chunk(carry, sequence, name, offset, span=span())
