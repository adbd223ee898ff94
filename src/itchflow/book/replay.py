"""Feed a whole source (file, gzip, capture, buffer) through ``Books`` in bounded slices.

Sources yield chunks that can be a whole memory-mapped day; the books are fed slices of
about ``slice_bytes`` (``apply``'s ``max_bytes``: never a split message), so event buffers
stay bounded (the caller drains them between slices) and progress can be shown, and each
slice's pages of the mapping are let go once applied (``Chunk.release``), so the process's
resident set does not grow with the day.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from itchflow.errors import ITCHFormatError
from itchflow.wire.binaryfile import skip_messages


SLICE_BYTES = 32 << 20


def slice_budget(slice_bytes: int) -> int | None:
    """``apply``'s max_bytes for a slice size: 0 or less means whole chunks (a budget of 0
    would take no message a call, for ever)."""
    return int(slice_bytes) if slice_bytes > 0 else None


def replay(books, source, *, stop_after_ns: int | None = None, slice_bytes: int = SLICE_BYTES,
           progress: Callable[[int, int], None] | None = None,
           on_slice: Callable[[object], None] | None = None,
           on_bytes: Callable[[object, int, int, int], None] | None = None,
           capture_stats: dict | None = None, renumber: bool = False) -> bool:
    """Apply the source to books (a ``Books``; ``Books.replay(source)`` is the same, returning
    the books). Returns True if it stopped at stop_after_ns before the end.

    progress(messages applied so far, position): the position is how far through the source
    (``Chunk.position``: a file's size at the end, a gzip day's compressed bytes and a capture's
    own included), for a progress bar against the file's size; a capture's planning takes the first
    half of the way (``decode.reader.Progress``). on_slice(books) after every slice
    (drain events there). on_bytes(chunk, start, stop, first_sequence) before that, while
    the slice's pages are still mapped: the bytes chunk.data[start:stop] the books just
    applied (whole messages), for a caller that reads the same messages alongside.
    capture_stats: filled with a capture's counters (gaps, duplicates, malformed packets) as
    ``iter_chunks`` fills it, for the caller to report. renumber: the books number the messages
    on from where they are (1, 2, ... on fresh books), not from each chunk's first sequence
    number: for a caller that pairs events with messages by sequence, where an anonymised
    capture's packets (all of sequence 0) would give many messages one number.

    Books a replay of the same file stopped at stop_after_ns (or, given one, reached the end) go
    on from where it stopped (the messages it applied are walked past, not applied again):
    stepping through a day, ``replay(day, stop_after_ns=t1)`` then ``replay(day,
    stop_after_ns=t2)``; a step past the day's end applies what the file holds since, if
    anything. Any other replay into books that
    hold messages is a ValueError: it applied the day again on top of them, doubling every
    volume (probe 20).
    """
    with books._lock:   # one thread at a time (``book.exclusive``)
        return _replay(books, source, stop_after_ns, slice_bytes, progress, on_slice, on_bytes, capture_stats,
                       renumber)


def _replay(books, source, stop_after_ns, slice_bytes, progress, on_slice, on_bytes, capture_stats,
            renumber) -> bool:
    from itchflow.sources.files import iter_chunks

    skip = _resume_point(books, source, stop_after_ns)
    books._replay_resume = None
    consumed = skip   # the source's messages applied by this replay and the ones it goes on from
    budget = slice_budget(slice_bytes)
    # A capture's small runs come joined (an anonymised capture's packets are a run each), the
    # books numbering each message by its run; on_bytes' slices are numbered from one first
    # sequence, so they keep a run a chunk unless the books renumber anyway.
    join_runs = renumber or on_bytes is None
    planning = (lambda position: progress(books.messages, position)) if progress is not None else None
    for chunk in iter_chunks(source, capture_stats=capture_stats, join_runs=join_runs, on_position=planning,
                             gz_ahead=True):
        with chunk.reading():  # a file truncated meanwhile is the error, not what its zeros made
            data = chunk.data
            runs = None if renumber else chunk.runs
            pos, end, place = 0, len(data), 0   # place: the next message's in the chunk (runs)
            if skip:   # what an earlier replay of this file applied
                pos, place = skip_messages(data, 0, end, skip)
                skip -= place
                chunk.release(pos)
            if not renumber:
                books.next_sequence = chunk.first_sequence + place
            while pos < end:
                first_sequence = books.next_sequence
                used, after = apply_slice(books, chunk, pos, place, runs, stop_after_ns, budget)
                consumed += after - place
                place = after
                stopped = books.stopped_at_time
                if on_bytes is not None and used:
                    on_bytes(chunk, pos, pos + used, first_sequence)
                pos += used
                chunk.release(pos)
                if on_slice is not None:
                    on_slice(books)
                if progress is not None:
                    progress(books.messages, chunk.position(pos))
                if stopped:
                    books._replay_resume = _stopped(source, consumed, stop_after_ns, books.messages)
                    return True
    if stop_after_ns is not None:   # a step that reached the end: the next step goes on from there (it
        # raised "volumes doubled", for a grid of times running past the day's last message: probe 31)
        books._replay_resume = _stopped(source, consumed, stop_after_ns, books.messages)
    return False


class _Stopped(NamedTuple):
    """Where a replay stopped at its stop_after_ns, for the next replay of the file to go on from."""

    source: str | None     # the file (``_source_key``)
    consumed: int          # its messages applied up to there
    stop_after_ns: int
    messages: int          # the books' messages then (more since: applied to by something else)
    identity: tuple | None  # the file then (``_file_identity``)


def _stopped(source, consumed: int, stop_after_ns, messages: int) -> "_Stopped":
    key = _source_key(source)
    return _Stopped(key, consumed, stop_after_ns, messages, None if key is None else _file_identity(key))


HEAD_BYTES = 1 << 16   # the start of the file a resumed replay checks is still the same


def _file_identity(path: str) -> tuple | None:
    """What tells a file apart from another written at its path since: device, inode, size and a
    digest of its first HEAD_BYTES (a file appended to since, as a live day is, is the same)."""
    import hashlib
    import os
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):   # a FIFO: opening it again waited for ever (probe 60)
            return None
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            head = f.read(HEAD_BYTES)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, hashlib.sha256(head).hexdigest()


def _changed_since(path: str, then: tuple | None) -> str | None:
    """How the file at path differs from the one a replay stopped in (None: the same)."""
    now = _file_identity(path)
    if then is None or now is None:
        return None if then == now else "it could not be read to check it is the same file"
    if now[:2] != then[:2]:
        return "another file has been put at that path since"
    if now[2] < then[2]:
        return f"it shrank from {then[2]:,} to {now[2]:,} bytes since"
    if now[3] != then[3]:
        return f"its first {HEAD_BYTES:,} bytes have been rewritten since"
    return None


def _source_key(source) -> str | None:
    """What names a file source across calls (a buffer or an open file has no such name)."""
    import os

    if isinstance(source, (str, os.PathLike)) and "://" not in os.fspath(source) and os.fspath(source) != "-":
        return os.path.abspath(os.fspath(source))
    return None


def _resume_point(books, source, stop_after_ns) -> int:
    """The messages of source to walk past: 0 on fresh books; those an earlier replay of the same
    file applied before stopping at its stop_after_ns; else the books hold other messages and
    replaying would apply the day on top of them (ValueError)."""
    held = books.messages
    if not held:
        return 0
    resume = getattr(books, "_replay_resume", None)
    key = _source_key(source)
    if resume is None or key is None or resume.source != key or resume.messages != held:   # (or applied to since)
        how = ("a replay of it that stopped at stop_after_ns goes on from there" if key is not None else
               "apply(buffer[offset:]) goes on from the offset where an apply stopped")
        raise ValueError(f"these books already hold {held:,} messages: a replay builds the books of a day from its "
                         f"start, and on top of these it would apply every message again (volumes doubled); "
                         f"replay into new Books(), or go on where they stopped ({how})")
    changed = _changed_since(key, resume.identity)
    if changed is not None:   # (probe 59: the rest of another day was applied on top of this one)
        raise ValueError(f"{key}: these books stopped part-way through this file, and {changed}: going on "
                         f"would apply another day's messages on top of these; replay into new Books()")
    if stop_after_ns is not None and stop_after_ns < resume.stop_after_ns:
        raise ValueError(f"these books are at stop_after_ns={resume.stop_after_ns:,} already, past "
                         f"{stop_after_ns:,}: replay into new Books() to see an earlier time")
    return resume.consumed


def apply_slice(books, chunk, pos: int, place: int, runs, stop_after_ns: int | None,
                max_bytes: int | None) -> tuple[int, int]:
    """Apply chunk.data[pos:] to books, up to max_bytes (the books cut the slice themselves:
    ShardedBooks in its routing pass, at no extra walk) or stop_after_ns. place: the first
    message's place in the chunk, which runs (the chunk's, or None: numbered on from
    ``books.next_sequence``) turn into its number. Returns (bytes used, the next message's
    place). A format error names where the bad byte is in the source (``_in_source``)."""
    offset = chunk.offset or 0
    try:
        used = books.apply(chunk.data[pos:], place if runs is not None else None, runs=runs,
                           stop_after_ns=stop_after_ns, source=chunk.source, base_offset=offset + pos,
                           max_bytes=max_bytes)
    except ITCHFormatError as e:
        raise _in_source(e, chunk, offset) from None
    return used, place + books.applied


def _in_source(error: ITCHFormatError, chunk, offset: int) -> ITCHFormatError:
    """The error naming where the bad byte is in the source: for a capture, its packet and
    offset in the capture file, not in the stream reassembled from it."""
    if chunk.locator is None or error.offset is None or error.packet is not None:
        return error
    file_offset, packet = chunk.where(error.offset - offset)
    if file_offset is None:
        return error
    return ITCHFormatError(error.detail, source=error.source, offset=file_offset, packet=packet)
