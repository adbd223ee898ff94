"""The one thing every source yields: a Chunk of whole BinaryFILE-framed messages, and the
zero-copy views (``as_uint8``, ``map_file``) sources build chunks from."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Chunk:
    """Whole messages (except possibly a truncated last one at the end of the source)."""

    data: np.ndarray        # uint8
    first_sequence: int     # sequence number of the first message
    source: str             # for error messages
    offset: int | None      # byte offset of data[0] in the (decompressed) source; None for captures
    session: str | None = None  # MoldUDP64 session, for captures
    locator: Callable[[int], tuple[int | None, int | None]] | None = None  # captures: see where()

    def where(self, pos: int) -> tuple[int | None, int | None]:
        """(byte offset in the source, packet number) of data[pos], for error messages."""
        if self.locator is not None:
            return self.locator(pos)
        return (self.offset or 0) + pos, None


def describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__} buffer>"


def as_uint8(buffer) -> np.ndarray:
    """A zero-copy uint8 view of any bytes-like object or numpy array."""
    if isinstance(buffer, np.ndarray):
        if buffer.dtype != np.uint8:
            buffer = buffer.view(np.uint8)
        return buffer.reshape(-1)
    return np.frombuffer(memoryview(buffer).cast("B"), dtype=np.uint8)


def map_file(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a file read-only as a uint8 array (empty array for an empty file)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return np.zeros(0, np.uint8)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        mm.madvise(mmap.MADV_SEQUENTIAL)
    except (AttributeError, OSError):  # not every platform has it; only a hint
        pass
    return np.frombuffer(mm, dtype=np.uint8)
