"""The lock a process holds while it claims a part of a ring: a consumer slot, or the producer.

An exclusive ``flock`` on the ring file, taken on a descriptor of its own and held only for the
claim. Finding a free slot (or a producer that is not live) and marking it taken are several
stores; two processes doing them at once each took the same part: two consumers of one name
(probe 13), two producers of one ring writing over each other (probe 48). The kernel drops
the lock of a process that dies. (A peer in another language claims by compare-and-swap
alone, and is only as safe as that.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from itchflow.ring.errors import RingFormatError


@contextlib.contextmanager
def claim_lock(path: str, what: str):
    """An exclusive flock on the ring file at ``path`` for as long as the block runs; ``what``
    is being claimed (for the error when the file is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise RingFormatError(f"{path}: the ring file was removed while open ({what} cannot be claimed in a "
                              "ring no other process can open)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # (closing the only descriptor releases the lock)
