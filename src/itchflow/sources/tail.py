"""mmap + polling: follow a BinaryFILE that another process is still appending to.

The file is memory-mapped and its size polled with ``fstat`` (one system call per poll,
never one per message). When it has grown, the whole file is mapped again at its new size:
reading a mapping past the file's end would raise SIGBUS, so nothing beyond the size seen
is ever touched. A message the writer has only partly written stays unread until it is
whole. Following ends at the end-of-messages system event (``S`` with event code ``C``) or
after ``idle_timeout`` seconds without growth; a partial message left at that point is an
error naming its offset.

Chunks handed out are views of the mapping they were cut from; older mappings live as long
as those views do, so a consumer may keep them.
"""

from __future__ import annotations

import mmap
import os
import time
from typing import Callable, Iterator

import numpy as np
from numba import njit

from itchflow.errors import ITCHFormatError
from itchflow.wire.itch import MESSAGES
from itchflow.hw.endian import be16, u8
from itchflow.sources.chunk import Chunk

_S = MESSAGES["S"]
_S_LENGTH = _S.length
_S_BYTE = _S.code_byte
_EVENT_CODE_OFFSET = _S.field("event_code").offset
_END_OF_MESSAGES = ord("C")


@njit(nogil=True, cache=True)
def whole_messages_until_end_event(buf, pos, end):
    """Walk whole messages in buf[pos:end], stopping after an end-of-messages event.

    Returns (stop, messages, ended): stop is after the last whole message walked (after
    the ``S``/``C`` message when ended).
    """
    n = 0
    while pos + 2 <= end:
        length = np.int64(be16(buf, pos))
        q = pos + 2
        if length == 0 or q + length > end:
            break
        pos = q + length
        n += 1
        if (length == _S_LENGTH and u8(buf, q) == _S_BYTE
                and u8(buf, q + _EVENT_CODE_OFFSET) == _END_OF_MESSAGES):
            return pos, n, True
    return pos, n, False


class Tail:
    """Follow ``path``; iterate to get Chunks as the file grows (see module doc).

    poll_interval: seconds to sleep between size polls when nothing new has arrived (0 spins).
    idle_timeout: stop after this long without growth (None: wait for the end event forever).
    wait_for_file: how long to wait for the file to appear.
    """

    def __init__(self, path: str | os.PathLike, *, poll_interval: float = 0.0005,
                 idle_timeout: float | None = 5.0, stop_at_end_of_messages: bool = True,
                 wait_for_file: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.path = str(path)
        self.poll_interval = poll_interval
        self.idle_timeout = idle_timeout
        self.stop_at_end_of_messages = stop_at_end_of_messages
        self.wait_for_file = wait_for_file
        self.clock, self.sleep = clock, sleep
        self.position = 0        # bytes consumed (whole messages handed out)
        self.messages = 0
        self.polls = 0
        self.remaps = 0
        self.ended = False       # saw the end-of-messages event

    def _open(self) -> int:
        deadline = self.clock() + self.wait_for_file
        while True:
            try:
                return os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                if self.clock() >= deadline:
                    raise
                self.sleep(max(self.poll_interval, 0.001))

    def __iter__(self) -> Iterator[Chunk]:
        fd = self._open()
        try:
            yield from self._follow(fd)
        finally:
            os.close(fd)

    def _follow(self, fd: int) -> Iterator[Chunk]:
        buf = np.zeros(0, np.uint8)
        last_growth = self.clock()
        while True:
            size = os.fstat(fd).st_size
            self.polls += 1
            if size < len(buf):
                raise ITCHFormatError(f"file shrank from {len(buf)} to {size} bytes while being followed",
                                      source=self.path, offset=size)
            if size > len(buf):
                buf = np.frombuffer(mmap.mmap(fd, size, access=mmap.ACCESS_READ), np.uint8)
                self.remaps += 1
            if len(buf) > self.position:
                stop, n, ended = whole_messages_until_end_event(buf, self.position, len(buf))
                if n:
                    if not self.stop_at_end_of_messages:
                        ended = False
                    chunk = Chunk(buf[self.position:stop], self.messages + 1, self.path, self.position)
                    self.position, self.messages = int(stop), self.messages + int(n)
                    last_growth = self.clock()
                    yield chunk
                    if ended:
                        self.ended = True
                        return
                    continue
                if len(buf) - self.position >= 2 and be16(buf, self.position) == 0:
                    raise ITCHFormatError("zero-length message", source=self.path, offset=self.position)
            if self.idle_timeout is not None and self.clock() - last_growth > self.idle_timeout:
                if len(buf) > self.position:
                    raise ITCHFormatError(
                        f"file stopped growing inside a message ({len(buf) - self.position} bytes of it "
                        f"present after {self.idle_timeout} s idle)", source=self.path, offset=self.position)
                return
            if self.poll_interval:
                self.sleep(self.poll_interval)
