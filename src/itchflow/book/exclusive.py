"""One thread at a time in a set of books.

The engine's kernels release the GIL, and a query counts its rows, allocates, then fills them:
a replay on another thread between the two wrote past the end of the result (heap corruption,
probe 59), and two threads applying at once spun for ever or built wrong books. Every public
method that reads or changes the tables takes the books' lock, so another thread waits for
the call in progress (an ``apply`` slice, a whole ``replay``, a query) and sees the books
between calls. Re-entrant: ``on_slice`` and ``on_bytes`` callbacks of a replay may query the
books they are called with.

A plain ``threading.RLock``: taken and given back in about 0.1 us, where a first-come lock
written in Python cost 1-2 us on every call (probe 60: ``live_orders()`` 0.15 -> 1.10 us).

A process forked while another thread held the lock (multiprocessing's fork start method
with a thread feeding the books) would wait for ever on its first call for a thread it does
not have: the child gives every books' lock a new one (``os.register_at_fork``).
"""

from __future__ import annotations

import functools
import os
import threading
import weakref

_HOLDERS: "weakref.WeakSet" = weakref.WeakSet()   # objects with a ``_lock`` of this module's


def new_lock(holder) -> threading.RLock:
    """A lock for ``holder`` (kept as its ``_lock``), renewed in a forked child."""
    _HOLDERS.add(holder)
    return threading.RLock()


def _renew_after_fork() -> None:
    for holder in list(_HOLDERS):
        holder._lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_after_fork)


def exclusive(method):
    """``method`` run holding ``self._lock``."""
    @functools.wraps(method)
    def one_thread_at_a_time(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return one_thread_at_a_time
