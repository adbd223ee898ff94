"""The public reading API: ``read``, ``scan`` and ``stats``.

All three take any source ``iter_chunks`` accepts (a raw BinaryFILE, ``.gz``, pcap or
pcapng path, or an in-memory buffer) and run the same two compiled passes: framing (which
validates and counts) and, for ``read``/``scan``, the generated fused decoder.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

import numpy as np

from itchflow.decode.decoded import Decoded, ReadInfo, concat
from itchflow.decode.decoder import NO_LIMIT, FrameTotals, decode_range, frame_range
from itchflow.wire.itch import CODES
from itchflow.sources.files import Chunk, iter_chunks

Progress = Callable[[int, int], None]  # (messages so far, bytes so far)
STATS_PIECE_MESSAGES = 1 << 22  # stats frames a day in pieces of this many messages (~130 MB)


def type_codes(types: str | Iterable[str] | None) -> str:
    """Type letters to decode, in table order: from letters ("AF"), names or a list of either."""
    if types is None:
        return CODES
    from itchflow.decode.decoded import _key
    from itchflow.wire.itch import BY_NAME

    if isinstance(types, str):
        types = [types] if types in BY_NAME else list(types)
    wanted = {_key(t) for t in types}
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
        capture=capture,
        seconds=seconds,
    )


def _pieces(chunk: Chunk, max_messages: int) -> Iterator[tuple[int, int, int, FrameTotals]]:
    """Frame a chunk in pieces of at most max_messages: (start, stop, first sequence, totals)."""
    buf, pos, end, seq = chunk.data, 0, len(chunk.data), chunk.first_sequence
    while pos < end:
        piece = FrameTotals()
        with chunk.reading():  # a file truncated meanwhile is the error, not what its zeros made
            stop, n = frame_range(buf, pos, end, piece, max_messages=max_messages,
                                  source=chunk.source, where=chunk.where)
        yield pos, stop, seq, piece
        pos, seq = stop, seq + n


WHOLE_RUNS = 1 << 62
# read() decodes pieces smaller than this together (an anonymised capture's packets are a
# chunk each: a decode call and a part to join for every packet cost 50-150 us apiece).
SMALL_PIECE_BYTES = 64 << 10


class _SmallPieces:
    """Small framed pieces kept to be decoded in one call; each keeps its own sequence numbers
    (its first, then one more a message), put back after the joint decode."""

    def __init__(self) -> None:
        self.data: list[np.ndarray] = []
        self.first: list[int] = []
        self.messages: list[int] = []
        self.counts = np.zeros(256, np.int64)
        self.bytes = 0

    def add(self, data: np.ndarray, first_sequence: int, piece: FrameTotals) -> None:
        self.data.append(data)
        self.first.append(first_sequence)
        self.messages.append(piece.messages)
        self.counts += piece.counts
        self.bytes += len(data)

    def decode(self, codes: str) -> dict[str, np.ndarray]:
        """The pieces decoded as one range, every message's sequence number its own piece's."""
        data = np.concatenate(self.data)
        arrays = decode_range(data, 0, len(data), 0, self.counts, codes)
        starts = np.cumsum([0] + self.messages[:-1]).astype(np.uint64)   # first message of each piece
        first = np.array(self.first, np.uint64)
        for arr in arrays.values():
            if len(arr):
                k = arr["sequence"]   # its place among all the pieces' messages (numbered from 0)
                j = np.searchsorted(starts, k, side="right") - 1
                arr["sequence"] = first[j] + (k - starts[j])
        self.__init__()
        return arrays


def read(source, types: str | Iterable[str] | None = None, *, strict: bool = True, dedup: bool = True) -> Decoded:
    """Decode a whole source into one structured array per message type.

    types: letters (``"AF"``, ``["A", "F"]``) or names (``["add_order"]``) to decode; the
    others are still framed and counted. strict=False counts malformed capture packets
    instead of raising. dedup=False keeps every data packet of a capture in capture order
    (no de-duplication of A/B copies or repeats). Raises ITCHFormatError (a ValueError)
    naming the file and byte offset (or packet) of anything malformed.
    """
    codes = type_codes(types)
    t0 = time.perf_counter()
    totals, capture, parts, small = FrameTotals(), {}, [], _SmallPieces()
    # a capture's runs whole (what is decoded is kept anyway): one decode a run, no parts to join
    for chunk in iter_chunks(source, strict=strict, capture_stats=capture, dedup=dedup, piece_bytes=WHOLE_RUNS):
        for start, stop, seq, piece in _pieces(chunk, NO_LIMIT):
            totals.merge(piece)
            is_small = stop - start < SMALL_PIECE_BYTES
            if is_small:
                small.add(chunk.data[start:stop], seq, piece)
            if small.data and (not is_small or small.bytes >= SMALL_PIECE_BYTES):  # in stream order
                parts.append(small.decode(codes))
            if not is_small:
                parts.append(decode_range(chunk.data, start, stop, seq, piece.counts, codes))
    if small.data:
        parts.append(small.decode(codes))
    arrays = concat(parts, codes)
    info = read_info(_name(source), totals, capture or None, time.perf_counter() - t0)
    return Decoded(arrays, info)


def scan(source, types: str | Iterable[str] | None = None, *, chunk_messages: int = 1 << 20,
         strict: bool = True, capture_stats: dict | None = None, renumber: bool = False) -> Iterator[Decoded]:
    """Decode a source of any size in pieces of at most ``chunk_messages`` messages.

    Each yielded Decoded holds one piece; its ``info`` counts that piece only. Memory stays
    bounded by the piece (and, for gzip, the decompression block). capture_stats: filled
    with a capture's counters (gaps, malformed packets) as it is read, to the end.
    renumber: ``sequence`` is the message's place in the stream (1, 2, ...), not the source's
    number: an anonymised capture's packets all say 0, which orders nothing.
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
    for chunk in iter_chunks(source, strict=strict, capture_stats=capture):
        for start, stop, seq, piece in _pieces(chunk, chunk_messages):
            t0 = time.perf_counter()
            if renumber:
                seq, place = place, place + piece.messages
            with chunk.reading():  # the piece is checked before it is handed out
                arrays = decode_range(chunk.data, start, stop, seq, piece.counts, codes)
            chunk.release(stop)  # the arrays are copies: a mapped day's pages can go
            yield Decoded(arrays, read_info(name, piece, capture or None, time.perf_counter() - t0))


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
    for chunk in iter_chunks(source, strict=strict, capture_stats=capture):
        # in pieces, so that a mapped day's pages can go as they are framed (Chunk.release)
        for _, stop, _, piece in _pieces(chunk, STATS_PIECE_MESSAGES):
            totals.merge(piece)
            chunk.release(stop)
            if progress:
                progress(totals.messages, totals.bytes)
    return read_info(_name(source), totals, capture or None, time.perf_counter() - t0)


def _name(source) -> str:
    from itchflow.sources.files import describe

    return describe(source)
