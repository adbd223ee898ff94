"""The lock a process holds while it claims a part of a ring: a consumer slot, or the producer.

An exclusive ``flock`` on the ring file, taken on a descriptor of its own and held only for the
claim. Finding a free slot (or a producer that is not live) and marking it taken are several
stores; two processes doing them at once each took the same part: two consumers of one name
(probe 13), two producers of one ring writing over each other (probe 48). The kernel drops
the lock of a process that dies. (A peer in another language claims by compare-and-swap
alone, and is only as safe as that.)

The descriptor is opened through the ring's own (``/proc/self/fd``): the file mapped, not
whatever its name names now (a ring whose name was removed, or given to another ring, was
locked by that name: probe 50). The wait is bounded: a process stopped inside its claim, or
one holding the lock for another reason, made every writer and reader wait for ever, whatever
their time-outs said (probe 50).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

from itchflow.ring.errors import RingBusy, RingFormatError

CLAIM_WAIT_S = 10.0   # how long a claim waits for another's when no time-out is given


@contextlib.contextmanager
def claim_lock(ring_fd: int, path: str, what: str, wait_s: float | None = None):
    """An exclusive flock on the ring file open at ``ring_fd`` (named ``path``) for as long as
    the block runs; ``what`` is being claimed. RingBusy when another process holds the lock
    longer than ``wait_s`` (default ``CLAIM_WAIT_S``)."""
    try:
        fd = os.open(f"/proc/self/fd/{ring_fd}", os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:   # (no /proc: by name, as before)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise RingFormatError(f"{path}: the ring file was removed while open ({what} cannot be claimed "
                                  "without /proc in a ring no other process can open)") from None
    try:
        limit = time.monotonic() + (CLAIM_WAIT_S if wait_s is None else max(0.0, wait_s))
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= limit:
                    raise RingBusy(f"{path}: cannot claim {what}: another process has held the ring's claim "
                                   f"lock for longer than {CLAIM_WAIT_S if wait_s is None else wait_s:g} s "
                                   "(stopped inside its claim, or holding the file locked)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.01)
        yield
    finally:
        os.close(fd)   # (closing the only descriptor releases the lock)
