"""Zeroed numpy arrays that start on a cache line.

NumPy's large allocations start 16 bytes past a page boundary (the allocator's header), so
with 32-byte records every other record straddles two cache lines and costs two misses.
The engine's state arrays are allocated here instead: the first element on a 64-byte
boundary, records of 32 or 64 bytes then never straddle.
"""

from __future__ import annotations

import numpy as np

CACHE_LINE = 64


def aligned_zeros(shape, dtype, align: int = CACHE_LINE) -> np.ndarray:
    """np.zeros(shape, dtype) whose data starts on an ``align``-byte boundary (the pages are
    touched only as they are used, as with np.zeros)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.zeros(count * dtype.itemsize + align, np.uint8)
    skip = -raw.ctypes.data % align
    out = raw[skip:skip + count * dtype.itemsize].view(dtype).reshape(shape)
    assert out.ctypes.data % align == 0
    return out
