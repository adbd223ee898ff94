"""Follow a BinaryFILE that another process is still appending to (read + polling).

The file's size is polled with ``fstat`` (one system call per poll, never one per message).
When it has grown, the new bytes are read with ``pread`` into a buffer this reader owns
(at most ``read_bytes`` at a time, so a large file already there costs bounded memory), after
the partial message left over from the last read. Chunks are views of those private buffers:
nothing handed out is a view of the file, so a file truncated under us can never kill the
process with SIGBUS (as views of a mapping would); a truncation is an error naming the file
and the offset. A message the writer has only partly written stays unread until it is whole.

Following ends at the end-of-messages system event (``S`` with event code ``C``), after
``idle_timeout`` seconds without growth (a partial message left then is an error naming its
offset), or when ``stop`` is set. While the file is idle, the path is checked every
``check_every`` seconds: a file deleted, or replaced by another (a different inode: log
rotation, a rewrite), is reported as a ``TailError`` naming the file and offset, never a
silent, clean end. ``wait_for_file`` waits (with that time-out) for a file that does not
exist yet. ``summary()`` says which of these ended it, with the bytes left unread: after the
end event (another day appended), or of a message not yet whole when ``stop`` came.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Callable, Iterator

import numpy as np
from numba import njit

from itchflow.errors import ITCHFormatError
from itchflow.hw.endian import be16, u8
from itchflow.sources.chunk import Chunk
from itchflow.sources.formats import sniff
from itchflow.wire.binaryfile import AT_END, BAD_LENGTH, OK, TRUNCATED, describe, fits_its_type, next_message
from itchflow.wire.itch import MESSAGES

_S = MESSAGES["S"]
_S_LENGTH = _S.length
_S_BYTE = _S.code_byte
_EVENT_CODE_OFFSET = _S.field("event_code").offset
_END_OF_MESSAGES = ord("C")
DEFAULT_READ_BYTES = 8 << 20
SEEN_BYTES = 64   # bytes before the read position compared again at each read (a rewritten file)


class TailError(ITCHFormatError):
    """The followed file went away (deleted, replaced) or was truncated while being followed;
    names the file and the byte offset reached."""


@njit(nogil=True, cache=True)
def whole_messages_until_end_event(buf, pos, end):
    """Walk whole messages in buf[pos:end], stopping after an end-of-messages event.

    Returns (stop, messages, ended, status): stop is after the last whole message walked
    (after the ``S``/``C`` message when ended); status is the walk's status at stop.
    """
    n = 0
    while pos < end:   # not ``while True``: see binaryfile.WALK_LOOP
        status, body, length = next_message(buf, pos, end)
        if status != OK:
            return pos, n, False, status
        if not fits_its_type(u8(buf, body), length):   # (raised by the caller, at its offset)
            return pos, n, False, BAD_LENGTH
        pos = body + length
        n += 1
        if (length == _S_LENGTH and u8(buf, body) == _S_BYTE
                and u8(buf, body + _EVENT_CODE_OFFSET) == _END_OF_MESSAGES):
            return pos, n, True, status
    return pos, n, False, AT_END


class Tail:
    """Follow ``path``; iterate to get Chunks as the file grows (see module doc).

    poll_interval: seconds to sleep between size polls when nothing new has arrived (0 spins).
    idle_timeout: stop after this long without growth (None: wait for the end event forever).
    wait_for_file: how long to wait for the file to appear (0: it must exist now).
    read_bytes: the most bytes read (and held) at a time.
    check_every: how often an idle file's path is checked for deletion or replacement.
    stop: anything with ``is_set()`` (a threading.Event): ends the iteration when set.
    """

    def __init__(self, path: str | os.PathLike, *, poll_interval: float = 0.0005,
                 idle_timeout: float | None = 5.0, stop_at_end_of_messages: bool = True,
                 wait_for_file: float = 0.0, read_bytes: int = DEFAULT_READ_BYTES,
                 check_every: float = 0.1, stop=None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if read_bytes < 1:
            raise ValueError("read_bytes must be positive")
        self.path = str(path)
        self.poll_interval = poll_interval
        self.idle_timeout = idle_timeout
        self.stop_at_end_of_messages = stop_at_end_of_messages
        self.wait_for_file = wait_for_file
        self.read_bytes = int(read_bytes)
        self.check_every = check_every
        self.stop = stop
        self.clock, self.sleep = clock, sleep
        self.position = 0        # bytes consumed (whole messages handed out)
        self.messages = 0
        self.polls = 0
        self.reads = 0
        self.ended = False       # saw the end-of-messages event
        self.stopped = False     # ended by ``stop``
        self.idled = False       # ended by ``idle_timeout`` without the end-of-messages event
        self.bytes_after_end = 0   # bytes in the file after the end event, left unread
        self.unfinished_bytes = 0  # bytes of a message still being written when following ended

    def summary(self) -> dict:
        """How following ended, for a report: by the end-of-messages event (and how many bytes
        followed it, unread), by the idle time-out (the day's end never came), or by ``stop``
        (with the bytes of a message not yet whole, unread)."""
        ended_by = ("end of messages" if self.ended else "idle time-out" if self.idled else
                    "stopped" if self.stopped else "following")
        return {"ended_by": ended_by, "position": self.position, "messages": self.messages,
                "bytes_after_end": self.bytes_after_end, "unfinished_bytes": self.unfinished_bytes,
                "idle_timeout": self.idle_timeout, "polls": self.polls, "reads": self.reads}

    def _open(self) -> int:
        deadline = self.clock() + self.wait_for_file
        while True:
            try:
                # (non-blocking: opening a FIFO with no writer would wait for one, past any time-out)
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            except FileNotFoundError:
                if self.clock() >= deadline:
                    waited = f" (waited {self.wait_for_file:g} s for it to appear)" if self.wait_for_file else ""
                    raise FileNotFoundError(f"{self.path}: no such file{waited}") from None
                if self.stop is not None and self.stop.is_set():
                    raise FileNotFoundError(f"{self.path}: no such file (stopped while waiting for it)") from None
                self.sleep(max(self.poll_interval, 0.001))
                continue
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
                what = ("a pipe or FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode) else
                        "a socket" if stat.S_ISSOCK(mode) else "a device")
                raise TailError(f"tail: follows a regular file another process appends to, and this is {what}, "
                                "whose size says nothing of what is in it: read it to its end as --source PATH",
                                source=self.path, offset=0)
            return fd

    def __iter__(self) -> Iterator[Chunk]:
        fd = self._open()
        try:
            yield from self._follow(fd)
        finally:
            os.close(fd)

    def _refuse_other_formats(self, buf: np.ndarray) -> None:
        """A gzip stream or a pcap is not a BinaryFILE that grows: its first bytes are no ITCH
        length (0x1f8b, 0xd4c3...: thousands of bytes), and following it fed the books garbage
        before the framing failed."""
        kind = sniff(bytes(buf[:4]))   # (the file sources' own test of the first bytes)
        if kind != "itch":
            kind = "a gzip stream" if kind == "gzip" else f"a {kind} capture"
            raise TailError(f"tail: follows a raw BinaryFILE day that grows, and this is {kind}: read it as "
                            "--source PATH (gzip days and captures are read to their end)", source=self.path,
                            offset=0)

    def _check_same_file(self, fd: int) -> None:
        mine = os.fstat(fd)
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            raise TailError(f"file deleted while being followed ({self.messages:,} messages read)",
                            source=self.path, offset=self.position) from None
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            raise TailError(f"file replaced by a different one (inode {mine.st_ino} -> {now.st_ino}) while being "
                            f"followed ({self.messages:,} messages read)", source=self.path, offset=self.position)

    def _follow(self, fd: int) -> Iterator[Chunk]:
        pending = np.zeros(0, np.uint8)   # bytes read after the last whole message handed out
        seen = np.zeros(0, np.uint8)      # the last bytes read (up to SEEN_BYTES), checked again at each read
        rewalk = False                    # pending may hold whole messages (after an end event)
        last_growth = last_check = self.clock()
        while True:
            if self.stop is not None and self.stop.is_set():
                self.stopped, self.unfinished_bytes = True, len(pending)
                return
            read_to = self.position + len(pending)
            size = os.fstat(fd).st_size
            self.polls += 1
            if size < read_to:
                raise TailError(f"file truncated to {size} bytes while being followed ({read_to} bytes had "
                                "been read)", source=self.path, offset=size)
            if size > read_to:
                want = min(size - read_to, self.read_bytes)
                buf = np.empty(len(pending) + want, np.uint8)
                buf[:len(pending)] = pending
                # the bytes just before read_to are read again with the new ones: if they changed,
                # the file was truncated and written again past where we were before this poll saw
                # it shorter (copytruncate rotation), and two days' messages would be mixed
                k = len(seen)
                again = np.empty(k, np.uint8)
                got = os.preadv(fd, [memoryview(again), memoryview(buf)[len(pending):]], read_to - k) - k
                self.reads += 1
                if got < want:
                    raise TailError(f"file truncated while being read (it had {size} bytes)",
                                    source=self.path, offset=read_to + max(got, 0))
                if not np.array_equal(again, seen):
                    raise TailError(f"file rewritten while being followed: the {k} bytes before offset {read_to} "
                                    f"changed (truncated and written again, as copytruncate rotation does; "
                                    f"{self.messages:,} messages had been read)", source=self.path,
                                    offset=read_to - k)
                new = buf[len(pending):]
                seen = (new if len(new) >= SEEN_BYTES else np.concatenate([seen, new]))[-SEEN_BYTES:].copy()
                if self.position == 0 and read_to < 4 <= len(buf):   # (the file's first 4 bytes, once)
                    self._refuse_other_formats(buf)
                last_growth = self.clock()
                pending, rewalk = buf, True
            if rewalk:
                rewalk = False
                stop, n, ended, _ = whole_messages_until_end_event(pending, 0, len(pending))
                if n:
                    chunk = Chunk(pending[:stop], self.messages + 1, self.path, self.position)
                    self.position, self.messages = self.position + int(stop), self.messages + int(n)
                    pending = pending[stop:]
                    yield chunk
                    if ended:
                        if self.stop_at_end_of_messages:
                            self.ended = True
                            # what follows the event is not read (another day appended, or
                            # junk): counted, so that a report can say so
                            self.bytes_after_end = max(os.fstat(fd).st_size - self.position, 0)
                            return
                        rewalk = True     # messages after the event are already read
                    continue
            if len(pending) >= 2 and be16(pending, 0) == 0:
                raise ITCHFormatError("zero-length message", source=self.path, offset=self.position)
            if len(pending) >= 3 and not fits_its_type(pending[2], be16(pending, 0)):
                # a known type whose prefix is wrong (the walk stops at one): an error now (unfinished,
                # it was waited for up to 64 KiB, whole, the walk went on out of step)
                raise ITCHFormatError(describe(pending, 0, len(pending), BAD_LENGTH), source=self.path,
                                      offset=self.position)
            now = self.clock()
            if now - last_check >= self.check_every:
                last_check = now
                self._check_same_file(fd)
            if self.idle_timeout is not None and now - last_growth > self.idle_timeout:
                self._check_same_file(fd)
                if len(pending):   # (saying what the bytes there claim: garbage read as "a message
                    # being written" with nothing more, probe 32)
                    raise ITCHFormatError(
                        f"file stopped growing inside a message for {self.idle_timeout} s: "
                        f"{describe(pending, 0, len(pending), TRUNCATED)}",
                        source=self.path, offset=self.position)
                self.idled = True
                return
            if self.poll_interval:
                self.sleep(self.poll_interval)
