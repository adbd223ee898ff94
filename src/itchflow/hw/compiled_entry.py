"""A Numba kernel's compiled function for fixed argument types, called without its dispatcher.

Calling an ``@njit`` function from Python goes through its dispatcher, which types every
argument and looks the signature up before it unboxes them: about 300 ns a call for four
arrays and two integers on the machines we measure. A call site that moves one record a call
(``Reader.read``, ``Writer.write``) spent half its time there, and lost to pyzmq's ``recv``
(977 ns a record) by that alone. ``entry`` returns the compiled function for the types of
some example arguments (``Dispatcher.compile``: found in the on-disk cache or compiled once),
which unboxes and runs at once.

The price is the dispatcher's checks. The compiled function still refuses an argument that is
not an array where it wants one, and an array whose items are of another size, but it takes
another dtype of that size (float64 for int64), and an array of another dimension or stride
as the layout it was compiled for (its unboxing then writes past its own struct): a crash or a
wrong read follows. So only arguments whose type the caller guarantees may be passed: arrays
it made itself (a ring's words and data, a reader's state) or normalised (``byte_view``: the
base ndarray class, one-dimensional, contiguous uint8), and Python ints it checked.
"""

from __future__ import annotations

import threading

import numba

_entries: dict = {}
_lock = threading.Lock()


def entry(dispatcher, *example_args):
    """The compiled function of ``dispatcher`` for the Numba types of ``example_args`` (which
    are only typed, not passed to it). See the module's note for what a caller must guarantee."""
    types = tuple(numba.typeof(a) for a in example_args)
    key = (dispatcher, types)
    found = _entries.get(key)
    if found is None:
        with _lock:   # (Dispatcher.compile locks too; this keeps the table's first fill single)
            found = _entries.get(key)
            if found is None:
                found = _entries[key] = dispatcher.compile(types)
    return found
