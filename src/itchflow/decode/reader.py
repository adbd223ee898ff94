"""The public reading API: ``read``, ``scan`` and ``stats``.

All three take any source ``iter_chunks`` accepts (a raw BinaryFILE, ``.gz``, pcap or
pcapng path, or an in-memory buffer) and run the same two compiled passes: framing (which
validates and counts) and, for ``read``/``scan``, the generated fused decoder.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

import numpy as np

from itchflow.decode.decoded import Decoded, ReadInfo
from itchflow.errors import ITCHFormatError
from itchflow.decode.decoder import NO_LIMIT, FrameTotals, Output, decode_range, frame_range
from itchflow.wire.itch import CODES
from itchflow.sources.files import Chunk, iter_chunks

# (messages so far, position): how far through the source, in its bytes as stored
# (``Chunk.position``: a gzip day's compressed bytes, a capture's packets), against its file's size.
# A capture is walked to be planned before it is read: planning takes the first half of the way
# (reported with the messages so far), reading the second (a gzipped one: a third each, after
# decompressing it to disk).
Progress = Callable[[int, int], None]
STATS_PIECE_MESSAGES = 1 << 22  # stats frames a day in pieces of this many messages (~130 MB)


def type_codes(types: str | Iterable[str] | None) -> str:
    """Type letters to decode, in table order: from letters ("AF"), names or a list of either;
    None or "all" (any case: "ALL" read as letters was A and L, silently) for every type. A
    letter given twice is that type once."""
    if types is None:
        return CODES
    from itchflow.decode.decoded import _key
    from itchflow.wire.itch import BY_NAME

    if isinstance(types, str):
        if types.lower() == "all":
            return CODES
        types = [types] if types in BY_NAME else list(types)
    elif not isinstance(types, Iterable) or isinstance(types, (bytes, bytearray)):   # (types=5: "'int' object
        # is not iterable", naming nothing: probe 31)
        raise TypeError(f"types must be letters ('AF'), names, a list of either, or None, not {types!r}")
    try:   # (a bad argument is a ValueError, not the KeyError a lookup raises)
        wanted = {_key(t) for t in types}
    except KeyError as e:
        raise ValueError(f"types: {e.args[0]}") from None
    except TypeError:
        raise TypeError(f"types must be letters ('AF'), names, a list of either, or None, not {types!r}") from None
    return "".join(c for c in CODES if c in wanted)


def read_info(source: str, totals: FrameTotals, capture: dict | None, seconds: float) -> ReadInfo:
    """The ReadInfo of a framing pass (what read/scan/stats report about a source)."""
    return ReadInfo(
        source=source,
        messages=totals.messages,
        bytes=totals.bytes,
        by_type=totals.by_type,
        unknown=totals.unknown,
        unknown_by_type=totals.unknown_by_type,
        first_timestamp_ns=totals.first_timestamp_ns if totals.first_timestamp_ns >= 0 else None,
        last_timestamp_ns=totals.last_timestamp_ns if totals.last_timestamp_ns >= 0 else None,
        stocks=totals.stocks,
        timestamps_backwards=totals.timestamps_backwards,
        first_backwards_offset=totals.first_backwards_at[0] if totals.first_backwards_at else None,
        first_backwards_packet=totals.first_backwards_at[1] if totals.first_backwards_at else None,
        capture=capture,
        seconds=seconds,
    )


def _pieces(chunk: Chunk, max_messages: int, deliver_first: bool = False) -> Iterator[tuple[int, int, int, FrameTotals]]:
    """Frame a chunk in pieces of at most max_messages: (start, stop, place of the piece's first
    message in the chunk (from 0), totals). deliver_first: a bad or cut message ends its piece,
    which is yielded, and its error is raised after it (``scan`` hands out every whole message
    before a day's cut end, as it does for a gzip day; without it they were withheld)."""
    buf, pos, end, first = chunk.data, 0, len(chunk.data), 0
    while pos < end:
        piece = FrameTotals()
        with chunk.reading():  # a file truncated meanwhile is the error, not what its zeros made
            stop, n = frame_range(buf, pos, end, piece, max_messages=max_messages,
                                  source=chunk.source, where=chunk.where, defer_error=deliver_first)
        if n or piece.error is None:
            yield pos, stop, first, piece
        if piece.error is not None:
            raise piece.error
        pos, first = stop, first + n


def _decode_piece(out: Output, chunk: Chunk, start: int, stop: int, first: int, place: int | None = None) -> None:
    """Decode chunk.data[start:stop] (framed), whose first message is the chunk's message
    ``first``, into out's next rows: every row's sequence number the chunk's
    (``Chunk.sequence_numbers``: where the runs of a capture's joined packets restart), or,
    given ``place``, the first message's place in the stream and one more a message."""
    if place is not None:
        out.decode_into(chunk.data, start, stop, place)
        return
    if chunk.runs is None:
        out.decode_into(chunk.data, start, stop, chunk.first_sequence + first)
        return
    before = out.fill.copy()
    out.decode_into(chunk.data, start, stop, first)   # numbered by place
    for c, arr in out.kernel_arrays.items():
        rows = arr[before[ord(c)]:out.fill[ord(c)]]
        if len(rows):
            rows["sequence"] = chunk.sequence_numbers(rows["sequence"])


WHOLE_RUNS = 1 << 62


def read(source, types: str | Iterable[str] | None = None, *, strict: bool = True, dedup: bool = True,
         renumber: bool = False) -> Decoded:
    """Decode a whole source into one structured array per message type.

    types: letters (``"AF"``, ``["A", "F"]``) or names (``["add_order"]``) to decode; the
    others are still framed and counted. strict=False counts malformed capture packets
    instead of raising. dedup=False keeps every data packet of a capture in capture order
    (no de-duplication of A/B copies or repeats). renumber: ``sequence`` is the message's
    place in the stream (1, 2, ...), not the source's number, as ``scan(renumber=True)``: a
    capture of two sessions numbers each from 1, and an anonymised one's packets all say 0, so
    their numbers do not order the messages (``encode`` refuses numbers that repeat). Raises
    ITCHFormatError (a ValueError) naming the file and byte offset (or packet) of anything
    malformed.
    """
    codes = type_codes(types)
    t0 = time.perf_counter()
    totals, capture, framed = FrameTotals(), {}, []
    # Every chunk is framed first (counted, validated), then decoded into arrays allocated
    # once for them all: no per-chunk arrays joined at the end (a copy of the whole output,
    # and twice its memory at the peak; a gzip or a capture read in parts comes in several
    # chunks). What is held meanwhile is the chunks: the stream, smaller than what it decodes
    # to (a raw file's is its mapping). A capture's session comes whole where it is planned
    # whole, its runs joined (an anonymised capture's packets are a run each).
    for chunk in iter_chunks(source, strict=strict, capture_stats=capture, dedup=dedup, piece_bytes=WHOLE_RUNS,
                             join_runs=True):
        for start, stop, first, piece in _pieces(chunk, NO_LIMIT):
            totals.merge(piece)
            framed.append((chunk, start, stop, first, piece.messages))
    out = Output(totals.counts, codes)
    place = 1   # the next message's place in the stream (renumber)
    for chunk, start, stop, first, messages in framed:
        with chunk.reading():
            _decode_piece(out, chunk, start, stop, first, place if renumber else None)
        place += messages
    info = read_info(_name(source), totals, capture or None, time.perf_counter() - t0)
    return Decoded(out.arrays(), info)


def scan(source, types: str | Iterable[str] | None = None, *, chunk_messages: int = 1 << 20,
         strict: bool = True, capture_stats: dict | None = None, renumber: bool = False,
         progress: Progress | None = None) -> Iterator[Decoded]:
    """Decode a source of any size in pieces of at most ``chunk_messages`` messages.

    Each yielded Decoded holds one piece; its ``info`` counts that piece only. Memory stays
    bounded by the piece (and, for gzip, the decompression block). capture_stats: filled
    with a capture's counters (gaps, malformed packets) as it is read, to the end.
    renumber: ``sequence`` is the message's place in the stream (1, 2, ...), not the source's
    number: an anonymised capture's packets all say 0, which orders nothing.
    progress(messages so far, position) after each piece, before it is yielded (``Progress``).
    """
    if isinstance(chunk_messages, bool) or not isinstance(chunk_messages, (int, np.integer)):
        raise TypeError(f"chunk_messages must be a whole number, not {chunk_messages!r}")
    if chunk_messages < 1:
        raise ValueError("chunk_messages must be at least 1")
    chunk_messages = min(int(chunk_messages), NO_LIMIT)
    codes = type_codes(types)
    capture: dict = {} if capture_stats is None else capture_stats
    name = _name(source)
    place = 1   # the next message's place in the stream (renumber)
    messages = 0   # handed out so far
    planning = (lambda position: progress(0, position)) if progress else None   # a capture's planning passes
    try:
        for chunk in iter_chunks(source, strict=strict, capture_stats=capture, join_runs=True, on_position=planning,
                                 gz_ahead=True):
            for start, stop, first, piece in _pieces(chunk, chunk_messages, deliver_first=True):
                t0 = time.perf_counter()
                with chunk.reading():  # the piece is checked before it is handed out
                    out = Output(piece.counts, codes)
                    _decode_piece(out, chunk, start, stop, first, place if renumber else None)
                    arrays = out.arrays()
                place += piece.messages
                chunk.release(stop)  # the arrays are copies: a mapped day's pages can go
                messages += piece.messages
                if progress:
                    progress(messages, chunk.position(stop))
                yield Decoded(arrays, read_info(name, piece, capture or None, time.perf_counter() - t0))
    except ITCHFormatError as e:
        if not messages:
            raise
        # the whole messages before it were handed out (a day cut mid-message): said, with how many
        e.__init__(f"{e.detail} (after {messages:,} whole messages)", source=e.source, offset=e.offset,
                   packet=e.packet)
        raise


def decode_slice(chunk: Chunk, start: int, stop: int, first_sequence: int,
                 types: str | Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Decode chunk.data[start:stop], whole messages the first of which has first_sequence
    (a slice another walker just consumed, e.g. ``replay``'s on_bytes): per-type arrays."""
    totals = FrameTotals()
    end, _ = frame_range(chunk.data, start, stop, totals, source=chunk.source, where=chunk.where)
    return decode_range(chunk.data, start, end, first_sequence, totals.counts, type_codes(types))


def stats(source, *, strict: bool = True, progress: Progress | None = None) -> ReadInfo:
    """Framing only: counts per type, bytes, first/last timestamp, stocks, unknowns."""
    t0 = time.perf_counter()
    totals, capture = FrameTotals(), {}
    planning = (lambda position: progress(0, position)) if progress else None   # a capture's planning passes
    for chunk in iter_chunks(source, strict=strict, capture_stats=capture, join_runs=True,   # numbers nothing
                             on_position=planning):
        # in pieces, so that a mapped day's pages can go as they are framed (Chunk.release)
        for _, stop, _, piece in _pieces(chunk, STATS_PIECE_MESSAGES):
            totals.merge(piece)
            chunk.release(stop)
            if progress:
                progress(totals.messages, chunk.position(stop))
    return read_info(_name(source), totals, capture or None, time.perf_counter() - t0)


def _name(source) -> str:
    from itchflow.sources.files import describe

    return describe(source)
