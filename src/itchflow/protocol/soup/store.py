"""A BinaryFILE served by sequence number, for the SoupBinTCP server."""

from __future__ import annotations

import numpy as np

from itchflow.wire.binaryfile import OK, describe, message_offsets
from itchflow.wire.soupbintcp import skip_messages


class MessageStore:
    """A BinaryFILE served by sequence number: a sparse offset index (one entry per
    ``every`` messages) and a short walk, so a full day costs megabytes, not gigabytes."""

    def __init__(self, data: np.ndarray, source: str = "<buffer>", every: int = 256):
        from itchflow.errors import ITCHFormatError

        self.data = data
        self.every = every
        index = np.empty(len(data) // (3 * every) + 2, np.int64)
        n, status, pos = message_offsets(data, every, index)
        if status != OK:
            raise ITCHFormatError(describe(data, pos, len(data), status), source=source, offset=int(pos))
        self.index = index[:(n + every - 1) // every].copy()
        self.messages = int(n)

    def offset(self, sequence: int) -> int:
        """Byte offset of message ``sequence`` (1-based); the end of the data past the last."""
        i = sequence - 1
        if i >= self.messages:
            return len(self.data)
        k, r = divmod(i, self.every)
        return int(skip_messages(self.data, int(self.index[k]), len(self.data), r))
