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
        if buffer.dtype.hasobject:   # (numpy's own words: "Cannot change data-type for array of references")
            raise TypeError("an array of Python objects has no bytes of its own: give bytes or a numeric array")
        if type(buffer) is not np.ndarray or not buffer.flags.c_contiguous:
            # a subclass as the base class (np.matrix stays two-dimensional through its own
            # reshape: it was published as its first byte), a strided one copied
            buffer = np.ascontiguousarray(buffer)
        flat = buffer.reshape(-1)   # (before the view: a 0-d array's dtype cannot change)
        return flat if flat.dtype == np.uint8 else flat.view(np.uint8)
    try:
        view = memoryview(buffer)
    except TypeError:
        raise TypeError(f"expected bytes-like data or a numpy array, not {type(buffer).__name__}") from None
    if not view.c_contiguous or view.nbytes == 0:   # (cast() refuses a shape with a 0 in it)
        view = memoryview(view.tobytes())
    return np.frombuffer(view.cast("B"), dtype=np.uint8)
