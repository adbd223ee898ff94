"""One thread at a time in a set of books.

The engine's kernels release the GIL, and a query counts its rows, allocates, then fills them:
a replay on another thread between the two wrote past the end of the result (heap corruption,
probe 59), and two threads applying at once spun for ever or built wrong books. Every public
method that reads or changes the tables takes the books' lock, so another thread waits for
the call in progress (an ``apply`` slice, a whole ``replay``, a query) and sees the books
between calls. Re-entrant: ``on_slice`` and ``on_bytes`` callbacks of a replay may query the
books they are called with.

First come, first served: with Python's own locks a thread that releases and asks again at
once gets the lock back before a woken waiter runs, so a thread querying in a loop kept a
feeding thread waiting for seconds.
"""

from __future__ import annotations

import functools
import threading
from collections import deque


class FairLock:
    """A re-entrant lock handed to its waiters in the order they asked."""

    _HANDED = object()   # owner while the lock passes to the next waiter

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner = None
        self._depth = 0
        self._waiting: deque[threading.Lock] = deque()   # one closed gate a waiter, in order

    def __enter__(self) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return
            if self._owner is None:
                self._owner, self._depth = me, 1
                return
            gate = threading.Lock()
            gate.acquire()
            self._waiting.append(gate)
        try:
            gate.acquire()   # opened by the holder's __exit__, which hands the lock over
        except BaseException:   # (a Ctrl-C while waiting): leave the queue, or pass the lock on
            with self._mutex:
                if gate in self._waiting:
                    self._waiting.remove(gate)
                    raise
            self._owner, self._depth = me, 1
            self.__exit__()
            raise
        with self._mutex:
            self._owner, self._depth = me, 1

    def __exit__(self, *exc) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth:
                return
            if self._waiting:
                self._owner = self._HANDED
                self._waiting.popleft().release()
            else:
                self._owner = None


def new_lock() -> FairLock:
    return FairLock()


def exclusive(method):
    """``method`` run holding ``self._lock``."""
    @functools.wraps(method)
    def one_thread_at_a_time(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return one_thread_at_a_time
