"""The numbers a caller hands the API, checked at the door: whole numbers in range, named
in the error. The engine takes them as int64 (a float would be truncated, ``True`` read as
1, a negative stop time taken for "never", 2**64 an OverflowError from deep inside)."""

from __future__ import annotations

import operator

INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
MAX_ROWS = 1 << 40          # rows of any table the books size (2**40 orders are 35 TB)
PRICE_MAX = (1 << 32) - 1   # an ITCH price is 4 bytes


def whole(value, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """value as an int, or TypeError (not a whole number; bools are refused) or ValueError
    (outside lo..hi), naming ``name``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number, not {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a whole number, not {value!r}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        span = (f"{lo:,}..{hi:,}" if lo is not None and hi is not None
                else f"at least {lo:,}" if lo is not None else f"at most {hi:,}")
        raise ValueError(f"{name} must be {span}, not {v:,}")
    return v


def optional_whole(value, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
    return None if value is None else whole(value, name, lo, hi)


def flag(value, name: str) -> bool:
    """value as a bool: True, False, or numpy's bool; anything else is a TypeError naming
    ``name`` (``record(l2="no")`` recorded L2, a truthy string: probe 31)."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, not {value!r}")
