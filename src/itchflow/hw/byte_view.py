"""The bytes of a caller's buffer as one contiguous uint8 array, which is what every compiled
walk takes: they read a message's fields (and copy records) by address, with 2-, 4- and 8-byte
loads, not element by element, so a strided view would have them read other bytes.
"""

from __future__ import annotations

import numpy as np


def byte_view(buffer) -> np.ndarray:
    """A uint8 view of any bytes-like object or numpy array: zero-copy where its memory is
    contiguous; a strided one (``day[::2]``, a column of a 2-D array) is copied first. An array
    of another dtype gives its raw bytes, as a memoryview of it would; a 2-D one its bytes in
    row order."""
    if isinstance(buffer, np.ndarray):
        if not buffer.flags.c_contiguous:
            buffer = np.ascontiguousarray(buffer)
        if buffer.dtype != np.uint8:
            buffer = buffer.view(np.uint8)
        return buffer.reshape(-1)
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(f"expected bytes-like data or a numpy array, not {type(buffer).__name__}") from None
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    return np.frombuffer(view.cast("B"), dtype=np.uint8)
