"""Drive the compiled kernels over one buffer: frame, allocate, decode.

``frame_range`` is the validating first pass (counts per type, timestamps, stock locates);
``decode_range`` allocates exactly-sized arrays from those counts and runs the generated
fused kernel. Both take byte ranges of a uint8 array and never copy the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from itchflow.errors import ITCHFormatError
from itchflow.hw.populate import POPULATE_OUTPUT_BYTES, populate_in_background
from itchflow.wire import binaryfile as framing
from itchflow.decode._decode_generated import ARRAY_ORDER, decode
from itchflow.wire.itch import CODES, DTYPES, LENGTH_BY_BYTE, MESSAGES, kernel_dtype, unknown_by_type

_KERNEL_DTYPES = {c: kernel_dtype(c) for c in CODES}
_KNOWN = np.zeros(256, dtype=bool)
_KNOWN[[m.code_byte for m in MESSAGES.values()]] = True
_LENGTHS = np.array(LENGTH_BY_BYTE)  # writable copy: Numba wants one array type everywhere
NO_LIMIT = np.iinfo(np.int64).max


@dataclass
class FrameTotals:
    """What the framing pass has seen so far; accumulates across ranges and chunks."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    locate_seen: np.ndarray = field(default_factory=lambda: np.zeros(65536, dtype=np.uint8))
    bytes: int = 0
    first_timestamp_ns: int = -1
    last_timestamp_ns: int = -1
    timestamps_backwards: int = 0   # known messages earlier than the known message before them
    # (byte offset in the source, packet or None) of the first known message, and of the first
    # that went back (None: none yet): where to look in a day that is not in time order
    first_known_at: tuple | None = None
    first_backwards_at: tuple | None = None
    # frame_range(defer_error=True): the error at ``stop``, raised by the caller once it has
    # handed out the whole messages before it
    error: ITCHFormatError | None = None

    @property
    def messages(self) -> int:
        return int(self.counts.sum())

    @property
    def unknown(self) -> int:
        return int(self.counts[~_KNOWN].sum())

    @property
    def unknown_by_type(self) -> dict[str, int]:
        return unknown_by_type(self.counts)

    @property
    def by_type(self) -> dict[str, int]:
        return {c: int(self.counts[m.code_byte]) for c, m in MESSAGES.items()}

    @property
    def stocks(self) -> int:
        """Distinct non-zero stock locates among known messages."""
        return int(np.count_nonzero(self.locate_seen[1:]))

    def merge(self, other: "FrameTotals") -> None:
        self.counts += other.counts
        np.maximum(self.locate_seen, other.locate_seen, out=self.locate_seen)
        self.bytes += other.bytes
        self.timestamps_backwards += other.timestamps_backwards
        step_back = 0 <= other.first_timestamp_ns < self.last_timestamp_ns
        if step_back:
            self.timestamps_backwards += 1   # the step from this one's last message to other's first
        if self.first_backwards_at is None:   # the step between comes before any within other
            self.first_backwards_at = other.first_known_at if step_back else other.first_backwards_at
        if self.first_timestamp_ns < 0:
            self.first_timestamp_ns = other.first_timestamp_ns
            self.first_known_at = other.first_known_at
        if other.last_timestamp_ns >= 0:
            self.last_timestamp_ns = other.last_timestamp_ns


def frame_range(buf: np.ndarray, pos: int, end: int, totals: FrameTotals, *,
                max_messages: int = NO_LIMIT, source: str | None = None, base_offset: int = 0,
                where=None, allow_partial_tail: bool = False, defer_error: bool = False) -> tuple[int, int]:
    """Validate and count messages in buf[pos:end]; returns (stop, messages).

    Raises ITCHFormatError naming the source and absolute byte offset of a bad message
    (``base_offset + position``, or ``where(position) -> (offset, packet)`` when given).
    With allow_partial_tail, a message cut by ``end`` ends the walk quietly (the caller
    has more bytes coming) and ``stop`` is where it starts. With defer_error, a bad message
    ends the walk at its start, the error kept in ``totals.error`` for the caller to raise
    after using the messages before it.
    """
    status, stop, n, first_ts, last_ts, backwards, first_at, backwards_at = framing.frame(
        buf, pos, end, max_messages, totals.counts, totals.locate_seen, _LENGTHS, totals.last_timestamp_ns)

    def locate(p):   # (offset in the source, packet or None) of buf[p]
        return where(p) if where is not None else (base_offset + p, None)

    totals.bytes += stop - pos
    totals.timestamps_backwards += int(backwards)
    if backwards and totals.first_backwards_at is None:
        totals.first_backwards_at = locate(int(backwards_at))
    if first_ts >= 0:
        if totals.first_timestamp_ns < 0:
            totals.first_timestamp_ns = int(first_ts)
            totals.first_known_at = locate(int(first_at))
        totals.last_timestamp_ns = int(last_ts)
    if status != framing.OK and not (status == framing.TRUNCATED and allow_partial_tail):
        offset, packet = locate(stop)
        error = ITCHFormatError(framing.describe(buf, stop, end, status), source=source, offset=offset,
                                packet=packet)
        if not defer_error:
            raise error
        totals.error = error
    return int(stop), int(n)


# One array of no rows per type, shared by every call: the kernel writes nothing to it, and
# a range of a few messages (a capture's packet) would otherwise allocate one for every type.
_NO_ROWS = {c: np.zeros(0, _KERNEL_DTYPES[c]) for c in CODES}
_NO_ROWS_PUBLIC = {c: np.zeros(0, DTYPES[c]) for c in CODES}


def allocate(counts: np.ndarray, codes: str) -> dict[str, np.ndarray]:
    """Exactly-sized kernel-layout arrays for the wanted types; empty for the rest."""
    # zeros, not empty: alignment padding is then deterministic; large blocks come from the
    # kernel already zeroed, so this costs nothing where it matters.
    out = {}
    for c in ARRAY_ORDER:
        n = int(counts[MESSAGES[c].code_byte]) if c in codes else 0
        out[c] = np.zeros(n, _KERNEL_DTYPES[c]) if n else _NO_ROWS[c]
    return out


class Output:
    """Exactly-sized arrays for every message of the wanted types that framing counted, filled
    range after range (``decode_into``), read out as arrays of DTYPES (``arrays``)."""

    def __init__(self, counts: np.ndarray, codes: str = CODES) -> None:
        self.codes = codes
        self.kernel_arrays = allocate(counts, codes)
        if sum(a.nbytes for a in self.kernel_arrays.values()) >= POPULATE_OUTPUT_BYTES:
            populate_in_background(*(a for a in self.kernel_arrays.values() if a.nbytes))
        self.fill = np.zeros(256, dtype=np.int64)   # per type byte: rows written so far

    def decode_into(self, buf: np.ndarray, pos: int, end: int, first_sequence: int) -> None:
        """Decode a range that frame_range accepted into the next rows of each type."""
        decode(buf, pos, end, np.uint64(first_sequence), self.fill, *(self.kernel_arrays[c] for c in ARRAY_ORDER))

    def arrays(self) -> dict[str, np.ndarray]:
        out = self.kernel_arrays
        return {c: out[c].view(DTYPES[c]) if len(out[c]) else _NO_ROWS_PUBLIC[c][:0] for c in self.codes}


def decode_range(buf: np.ndarray, pos: int, end: int, first_sequence: int,
                 range_counts: np.ndarray, codes: str = CODES) -> dict[str, np.ndarray]:
    """Decode a range that frame_range accepted into per-type arrays of DTYPES."""
    out = Output(range_counts, codes)
    out.decode_into(buf, pos, end, first_sequence)
    return out.arrays()
