"""``Decoded``: per-type structured arrays plus what was counted on the way.

It is a read-only mapping from type letter (or type name, e.g. ``"add_order"``) to a numpy
structured array of ``spec.DTYPES[letter]``; conversion to pandas or Arrow is per type
and loads those libraries only when asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from itchflow.wire.itch import BY_NAME, MESSAGES


@dataclass
class ReadInfo:
    """Counts from the framing pass: every message, known or not, and every byte."""

    source: str
    messages: int = 0
    bytes: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    unknown: int = 0
    unknown_by_type: dict[str, int] = field(default_factory=dict)
    first_timestamp_ns: int | None = None
    last_timestamp_ns: int | None = None
    stocks: int = 0
    # known messages whose timestamp is earlier than the known message's before them (0 for a
    # feed in time order; a day spliced, or sorted by something else, is not)
    timestamps_backwards: int = 0
    # where the first of them starts (its length prefix): a byte offset in the source (in a
    # gzip day, in its decompressed stream) and, in a capture, its packet; None if none
    first_backwards_offset: int | None = None
    first_backwards_packet: int | None = None
    capture: dict | None = None  # CaptureStats counters for pcap/pcapng sources
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = {
            "source": self.source,
            "messages": self.messages,
            "bytes": self.bytes,
            "by_type": self.by_type,
            "first_timestamp_ns": self.first_timestamp_ns,
            "last_timestamp_ns": self.last_timestamp_ns,
            "stocks": self.stocks,
            "timestamps_backwards": self.timestamps_backwards,
            "first_backwards_offset": self.first_backwards_offset,
            "first_backwards_packet": self.first_backwards_packet,
            "unknown": self.unknown,
            "unknown_by_type": self.unknown_by_type,
            "seconds": self.seconds,
        }
        if self.capture is not None:
            d["capture"] = self.capture
        return d


def _key(code: str) -> str:
    if code in MESSAGES:
        return code
    if code in BY_NAME:
        return BY_NAME[code].code
    raise KeyError(f"not an ITCH 5.0 message type letter or name: {code!r}")


class Decoded(Mapping):
    """Decoded messages: ``d["A"]`` (or ``d["add_order"]``) is a structured array."""

    def __init__(self, arrays: dict[str, np.ndarray], info: ReadInfo):
        self._arrays = arrays
        self.info = info

    # Mapping protocol over the type letters that were asked for.
    def __getitem__(self, code: str) -> np.ndarray:
        key = _key(code)
        try:
            return self._arrays[key]
        except KeyError:
            raise KeyError(f"type {key!r} was not decoded (types= left it out)") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __getattr__(self, name: str):
        # Counters read straight through: d.messages, d.unknown, d.first_timestamp_ns ...
        if name.startswith("_") or name == "info":
            raise AttributeError(name)
        return getattr(self.info, name)

    @property
    def counts(self) -> dict[str, int]:
        """Messages per type letter in the input, whether decoded or not."""
        return self.info.by_type

    def __repr__(self) -> str:
        nonzero = ", ".join(f"{c}={len(a):,}" for c, a in self._arrays.items() if len(a))
        return f"<Decoded {self.info.messages:,} messages from {self.info.source}: {nonzero or 'none'}>"

    def to_arrow(self, code: str | None = None):
        """A pyarrow Table for one type, or without ``code`` a dict of them: one for every type
        decoded, an empty one with the same schema where the day had none (the keys do not
        change from day to day; probe 52: a quiet day had no "A", and ``["A"]`` raised)."""
        if code is None:
            return {c: to_arrow(a) for c, a in self._arrays.items()}
        return to_arrow(self[code])

    def to_pandas(self, code: str | None = None):
        """A pandas DataFrame for one type, or a dict of them: every type decoded (as to_arrow)."""
        if code is None:
            return {c: to_arrow(a).to_pandas() for c, a in self._arrays.items()}
        return to_arrow(self[code]).to_pandas()


def to_arrow(arr: np.ndarray):
    """One structured array of a DTYPES layout -> pyarrow Table.

    Numeric columns are zero-copy where the layout allows; alpha columns become strings
    with the specification's space padding (and NULs) removed from the end. Each value is a
    function of its own bytes only: ASCII as it is, any other byte as the character of its
    code point (Latin-1), so 0x80 and 0xFF stay apart and an inner NUL cuts nothing (probe 29:
    one non-ASCII row turned the whole column to U+FFFD and cut its values at a NUL, so the
    same row read differently in pieces of other sizes).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = {}
    for name in arr.dtype.names:
        col = arr[name]
        if col.dtype.kind == "S":
            width = col.dtype.itemsize
            flat = np.ascontiguousarray(col).view(np.uint8)
            binary = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(width), len(col), [None, pa.py_buffer(flat)])
            if not flat.size or int(flat.max()) < 0x80:   # ASCII, as the specification has it
                text = binary.cast(pa.binary()).cast(pa.string())
            else:   # (rare: a column with a byte past ASCII) value by value, each its own bytes
                text = pa.array([row.tobytes().decode("latin-1") for row in flat.reshape(-1, width)], pa.string())
            cols[name] = pc.utf8_rtrim(text, characters=" \x00")
        else:
            cols[name] = pa.array(np.ascontiguousarray(col))
    return pa.table(cols)
