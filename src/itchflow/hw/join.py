"""Joining arrays end to end without losing a structured dtype's layout.

numpy 2 concatenates structured arrays through dtype promotion, which drops the padding of a
dtype with explicit offsets: ten chunks of ``DTYPES["A"]`` (56 bytes a row) came out as a
45-byte packed dtype, while one chunk kept 56. So a result's dtype depended on how many
pieces its source was read in (a gzip stream, a capture with holes, two shards). ``join``
writes into an array of the one dtype asked for.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def join(arrays: Sequence[np.ndarray], dtype) -> np.ndarray:
    """The 1-D arrays end to end, as a new array of exactly ``dtype`` (each array's fields
    are that dtype's, in any layout; other fields are a TypeError)."""
    # zeros, not empty: the padding between fields is then zeros, as the decoder writes it
    # (large blocks come from the kernel zeroed already)
    out = np.zeros(sum(len(a) for a in arrays), dtype)
    if len(arrays):
        np.concatenate(arrays, out=out, casting="safe")
    return out
