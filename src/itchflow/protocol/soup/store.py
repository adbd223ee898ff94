"""A BinaryFILE served by sequence number, for the SoupBinTCP server."""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.wire.binaryfile import AT_END, OK, TRUNCATED, next_message
from itchflow.wire.soupbintcp import skip_messages


@njit(nogil=True, cache=True)
def _sparse_index(buf, every, index):
    """index[k] = byte offset of message k*every; returns (messages, status, pos)."""
    pos = 0
    end = buf.shape[0]
    n = 0
    while True:
        status, body, length = next_message(buf, pos, end)
        if status == AT_END:
            break
        if status != OK:
            return n, (1 if status == TRUNCATED else 2), pos
        if n % every == 0:
            index[n // every] = pos
        pos = body + length
        n += 1
    return n, 0, pos


class MessageStore:
    """A BinaryFILE served by sequence number: a sparse offset index (one entry per
    ``every`` messages) and a short walk, so a full day costs megabytes, not gigabytes."""

    def __init__(self, data: np.ndarray, source: str = "<buffer>", every: int = 256):
        from itchflow.errors import ITCHFormatError

        self.data = data
        self.every = every
        index = np.empty(len(data) // (3 * every) + 2, np.int64)
        n, status, pos = _sparse_index(data, every, index)
        if status:
            why = "truncated message at the end of the data" if status == 1 else "zero-length message"
            raise ITCHFormatError(why, source=source, offset=int(pos))
        self.index = index[:(n + every - 1) // every].copy()
        self.messages = int(n)

    def offset(self, sequence: int) -> int:
        """Byte offset of message ``sequence`` (1-based); the end of the data past the last."""
        i = sequence - 1
        if i >= self.messages:
            return len(self.data)
        k, r = divmod(i, self.every)
        return int(skip_messages(self.data, int(self.index[k]), len(self.data), r))
