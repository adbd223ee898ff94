"""The one thing every source yields: a Chunk of whole BinaryFILE-framed messages, and the
zero-copy views (``as_uint8``, ``map_file``) sources build chunks from.

A raw day is handed out as one read-only mapping of the whole file. Every page read through
it stays in the reading process's resident set until the mapping is closed: a real day is
8-13 GB, and a Dask worker whose resident set passes its memory limit is killed, however
much of it the kernel could drop. So a consumer that walks a chunk front to back tells it
how far it got (``Chunk.release``), and the chunk lets those pages go from this process
(``MADV_DONTNEED``; they stay in the page cache, and reading them again faults them back in).
"""

from __future__ import annotations

import errno
import mmap
import os
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from itchflow.errors import ITCHFormatError
from itchflow.hw import sigbus
from itchflow.hw.byte_view import byte_view
from itchflow.wire.sequence_runs import SequenceRuns

PAGE_BYTES = mmap.PAGESIZE
# Pages are let go in runs of at least this much (a madvise call costs about a page walk of
# the run; one a 32 MB replay slice is nothing against the slice's work).
RELEASE_BYTES = 64 << 20


@dataclass
class Chunk:
    """Whole messages (except possibly a truncated last one at the end of the source)."""

    data: np.ndarray        # uint8
    first_sequence: int     # sequence number of the first message
    source: str             # for error messages
    offset: int | None      # byte offset of data[0] in the (decompressed) source; None for captures
    session: str | None = None  # MoldUDP64 session, for captures
    locator: Callable[[int], tuple[int | None, int | None]] | None = None  # captures: see where()
    # The read-only file mapping data views from its first byte (a raw day's own chunk).
    mapping: mmap.mmap | None = field(default=None, repr=False, compare=False)
    # Several runs of sequence numbers joined (a capture's packets that are runs of their own,
    # read with join_runs): where the numbers restart. None: one more a message from
    # first_sequence. Consumers that number messages use ``sequence_numbers``.
    runs: SequenceRuns | None = field(default=None, repr=False, compare=False)
    # The source's bytes [a, b) behind data, where they are not data itself: a gzip day's
    # compressed bytes, a capture's packets (headers and all). None: data is the source's own
    # bytes from offset. Only ``position`` reads it: how far through the source a reader is.
    span: tuple[int, int] | None = field(default=None, repr=False, compare=False)
    _pages: "WalkedPages | None" = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mapping is not None:
            self._pages = WalkedPages(self.mapping)

    def release(self, upto: int, *, final: bool = False) -> None:
        """The caller is done with data[:upto]: let this process's pages of it go (whole pages,
        in runs of RELEASE_BYTES, or whatever is left with final=True). Does nothing for a
        chunk that is not a file mapping. Never changes what data reads."""
        if self._pages is not None:
            self._pages.release(min(int(upto), len(self.data)), final=final)

    def check_intact(self) -> None:
        """Raise ITCHFormatError if the file under this chunk's mapping shrank or was written
        to while it was read (see ``shrunk``): what was read is then not the file's."""
        raise_if_shrunk(self.mapping, self.source)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around a walk of this chunk: if the file shrank or was written to meanwhile, that is
        the error raised (whatever the bytes read in its place made the walk raise, or not)."""
        try:
            yield
        except Exception as e:
            error = shrunk(self.mapping, self.source)
            if error is not None:
                raise error from e
            raise
        self.check_intact()

    def sequence_numbers(self, index) -> np.ndarray:
        """The sequence numbers (uint64) of the messages at these places (counted from 0) in data."""
        if self.runs is not None:
            return self.runs.numbers(index)
        return np.uint64(self.first_sequence) + np.asarray(index, np.uint64)

    def position(self, pos: int) -> int:
        """How far through the source (its bytes as stored: a file's size is the end) a reader
        is once done with data[:pos]: what a progress bar shows against the file's size. Within
        a span it is taken in proportion, so it only ever grows, and reaches the span's end with
        the chunk's last byte."""
        if self.span is None:
            return (self.offset or 0) + int(pos)
        a, b = self.span
        n = len(self.data)
        return b if pos >= n else a + (b - a) * int(pos) // n

    def where(self, pos: int) -> tuple[int | None, int | None]:
        """(byte offset in the source, packet number) of data[pos], for error messages."""
        if self.locator is not None:
            return self.locator(pos)
        return (self.offset or 0) + pos, None


class Passes:
    """How far through a source read in several passes, as one position (``Chunk.position``):
    a capture is walked to be planned, then read (and a gzipped one decompressed to disk before
    both), each pass taking an equal share of the source's ``size``, so a progress bar against
    the file's size moves through every pass and ends full once. ``report(position)``, if given,
    is told each position that passes the last one told (``tell``)."""

    def __init__(self, size: int, passes: int, report: Callable[[int], None] | None = None):
        self.size, self.passes, self.report = int(size), int(passes), report
        self.told = 0

    def at(self, stage: int, done: int, of: int) -> int:
        """The position once ``done`` of pass ``stage``'s ``of`` units (0-based stage) are done."""
        part = self.size * min(int(done), int(of)) // max(int(of), 1)
        return (stage * self.size + part) // self.passes

    def tell(self, stage: int, done: int, of: int) -> None:
        position = self.at(stage, done, of)
        if self.report is not None and position > self.told:
            self.told = position
            self.report(position)


class WalkedPages:
    """The pages of a read-only file mapping that a front-to-back walk has passed, let go from
    this process (MADV_DONTNEED) in runs of at least RELEASE_BYTES: what ``Chunk.release``
    and the Dask jobs' sequence sidecar (``scale.jobs.SeqMap``) both do."""

    def __init__(self, mapping: mmap.mmap | None):
        self.mapping = mapping
        self.released = 0  # bytes [0, released) let go

    def release(self, upto: int, *, final: bool = False) -> None:
        """Let the pages before ``upto`` (rounded down to a page) go, once that is a run of at
        least RELEASE_BYTES (a page with final=True). Memory only, never correctness: a
        mapping that cannot be advised is left alone from then on."""
        if self.mapping is None:
            return
        stop = int(upto) // PAGE_BYTES * PAGE_BYTES
        if stop - self.released < (PAGE_BYTES if final else RELEASE_BYTES):
            return
        try:
            self.mapping.madvise(mmap.MADV_DONTNEED, self.released, stop - self.released)
        except (AttributeError, OSError, ValueError):
            self.mapping = None
            return
        self.released = stop


def describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "name", None) if hasattr(source, "read") else None
    if isinstance(name, (str, os.PathLike)):   # an open file: its path
        return str(name)
    return f"<{type(source).__name__} buffer>"


def as_uint8(buffer, who: str | None = None) -> np.ndarray:
    """A uint8 view of any bytes-like object or numpy array (``hw.byte_view``: zero-copy where
    its memory is contiguous, a copy of a strided one). who: the call that takes raw bytes (as
    ``Books.apply``), named in the error for what it does not take: a path, a file object or
    decoded messages, which its caller's ``replay`` reads."""
    if who is not None and not isinstance(buffer, (np.ndarray, bytes, bytearray, memoryview)) and (
            isinstance(buffer, (str, os.PathLike)) or hasattr(buffer, "read") or hasattr(buffer, "counts")):
        what = "decoded messages" if hasattr(buffer, "counts") else "a path or a file object"
        raise TypeError(f"{who} takes a buffer of BinaryFILE-framed ITCH bytes, not {what} "
                        f"({type(buffer).__name__}): replay(source) reads a path, a file or a URL")
    return byte_view(buffer)


# Each mapped file's own descriptor and modification time when it was mapped (by id of the
# mapping, forgotten with it): a file rewritten in place at the same size while it is read
# changes no size, only its time.
_mapped: dict[int, tuple[int, int]] = {}


def map_file(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a file read-only as a uint8 array (empty array for an empty file).

    The mapping is guarded (``hw.sigbus``): if the file is truncated while it is read, the
    pages past its new end read as zeros instead of killing the process with SIGBUS, and
    ``shrunk`` (or ``Chunk.check_intact``) tells the reader; so it does if the file is
    written to meanwhile (its modification time moves)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size == 0:
            return np.zeros(0, np.uint8)
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:   # (ENOMEM under an address-space limit named nothing: probe 37)
            why = " (an address-space limit, ulimit -v, or too little memory)" if e.errno == errno.ENOMEM else ""
            raise OSError(e.errno, f"{e.strerror}: mapping {st.st_size:,} bytes{why}", os.fspath(path)) from None
        fd = os.dup(f.fileno())
    _mapped[id(mm)] = (fd, st.st_mtime_ns)
    weakref.finalize(mm, _forget, id(mm), fd)
    sigbus.guard(mm)
    try:
        mm.madvise(mmap.MADV_SEQUENTIAL)
    except (AttributeError, OSError):  # not every platform has it; only a hint
        pass
    return np.frombuffer(mm, dtype=np.uint8)


def raise_if_shrunk(mapping: mmap.mmap | None, name: str) -> None:
    """Raise ``shrunk``'s error, if there is one."""
    error = shrunk(mapping, name)
    if error is not None:
        raise error


def shrunk(mapping: mmap.mmap | None, name: str) -> ITCHFormatError | None:
    """The error to raise if the file under a ``map_file`` mapping shrank while it was read
    (``sigbus.shrunk``), or was written to (``modified``), else None."""
    cut = None if mapping is None else sigbus.shrunk(mapping)
    if cut is not None:
        now, cut = cut
        return ITCHFormatError(
            f"the file shrank from {len(mapping):,} to {now:,} bytes while it was being read (truncated "
            "or rewritten by another process); what was read past the new end is not the file's, so "
            "no result of this read is valid", source=name, offset=cut)
    times = None if mapping is None else modified(mapping)
    if times is not None:
        try:
            size = os.fstat(_mapped[id(mapping)][0]).st_size
        except (KeyError, OSError):
            size = len(mapping)
        grew = (f"it grew from {len(mapping):,} to {size:,} bytes: a day still being written is read "
                f"with tail:PATH" if size > len(mapping) else "its size did not change")
        return ITCHFormatError(
            f"the file was written to while it was being read (its modification time moved from "
            f"{times[0]:,} to {times[1]:,} ns since the epoch; {grew}): what was read may "
            "mix its old and new bytes, so no result of this read is valid", source=name)
    return None


def modified(mapping: mmap.mmap) -> tuple[int, int] | None:
    """(modification time when mapped, now) in ns if the file under a ``map_file`` mapping was
    written to since (its own descriptor's: a file replaced under the same name is not this
    one), else None (also for a closed mapping or one not made by ``map_file``)."""
    entry = _mapped.get(id(mapping))
    if entry is None or mapping.closed:
        return None
    fd, then = entry
    try:
        now = os.fstat(fd).st_mtime_ns
    except OSError:
        return None
    return None if now == then else (then, now)


def _forget(key: int, fd: int) -> None:
    _mapped.pop(key, None)
    os.close(fd)


def file_mapping(buf: np.ndarray) -> mmap.mmap | None:
    """The read-only mmap a ``map_file`` array (not a slice of one) views, else None."""
    base = buf.base
    obj = getattr(base, "obj", None) if isinstance(base, memoryview) else None
    return obj if isinstance(obj, mmap.mmap) else None
