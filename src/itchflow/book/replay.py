"""Feed a whole source (file, gzip, capture, buffer) through ``Books`` in bounded slices.

Sources yield chunks that can be a whole memory-mapped day; the books are fed slices of
about ``slice_bytes`` (``apply``'s ``max_bytes``: never a split message), so event buffers
stay bounded (the caller drains them between slices) and progress can be shown.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np


SLICE_BYTES = 32 << 20


def iter_source(source) -> Iterator[tuple[np.ndarray, int, str, int]]:
    """(uint8 buffer of whole messages, first sequence, source name, byte offset) per chunk."""
    from itchflow.sources.files import iter_chunks

    for c in iter_chunks(source):
        yield c.data, c.first_sequence, c.source, (c.offset or 0)


def replay(books, source, *, stop_after_ns: int | None = None, slice_bytes: int = SLICE_BYTES,
           progress: Callable[[int, int], None] | None = None,
           on_slice: Callable[[object], None] | None = None) -> bool:
    """Apply the source to books (a ``Books``; ``Books.replay(source)`` is the same, returning
    the books). Returns True if it stopped at stop_after_ns before the end.

    progress(messages applied so far, bytes so far); on_slice(books) after every slice
    (drain events there).
    """
    done_bytes = 0
    budget = slice_bytes if slice_bytes > 0 else None
    for data, first_seq, name, offset in iter_source(source):
        books.next_sequence = first_seq
        pos, end = 0, len(data)
        while pos < end:
            # the books cut the slice themselves (ShardedBooks in its routing pass, at no extra walk)
            used = books.apply(data[pos:end], stop_after_ns=stop_after_ns, source=name,
                               base_offset=offset + pos, max_bytes=budget)
            stopped = books.stopped_at_time
            done_bytes += used
            if on_slice is not None:
                on_slice(books)
            if progress is not None:
                progress(books.messages, done_bytes)
            if stopped:
                return True
            pos += used
    return False
