"""Encode ITCH 5.0 messages: the exact inverse of the decoder, derived from the same table.

``encode_message`` builds one framed message from keyword fields (for tests and tools);
``encode`` turns decoded per-type arrays back into a BinaryFILE stream, merging the types
in ``sequence`` order, vectorised per type through ``spec.WIRE_DTYPES``. Decoding then
encoding a stream of known messages gives back the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from itchflow.wire.itch import ALPHA, DTYPES, TIMESTAMP, WIRE_DTYPES, message_type

_MAX_TIMESTAMP = (1 << 48) - 1


def _timestamp_bytes(ts: np.ndarray) -> np.ndarray:
    """int64 nanoseconds -> the 6 big-endian wire bytes, as a V6 column."""
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) and (ts.min() < 0 or ts.max() > _MAX_TIMESTAMP):
        raise ValueError("timestamp does not fit the 48-bit wire field")
    return np.ascontiguousarray(ts.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]).view("V6").ravel()


def wire_records(code: str, arr: np.ndarray) -> np.ndarray:
    """Decoded records of one type -> (n, 2 + length) uint8 rows of framed wire bytes."""
    m = message_type(code)
    wire = np.zeros(len(arr), WIRE_DTYPES[m.code])
    wire["length_prefix"] = m.length
    wire["message_type"] = m.code.encode()
    for f in m.fields[1:]:
        col = arr[f.name]
        if f.kind == TIMESTAMP:
            wire[f.name] = _timestamp_bytes(col)
        else:
            wire[f.name] = col
    return wire.view(np.uint8).reshape(len(arr), m.length + 2)


def encode(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Per-type arrays (a ``Decoded`` or any mapping of letter -> DTYPES array) -> BinaryFILE.

    Messages come out in ascending ``sequence`` (ties keep the table's type order).
    """
    rows, seqs = [], []
    for code, arr in arrays.items():
        if len(arr):
            rows.append(wire_records(code, arr))
            seqs.append(np.asarray(arr["sequence"], dtype=np.uint64))
    if not rows:
        return b""
    sizes = np.concatenate([np.full(len(r), r.shape[1], np.int64) for r in rows])
    order = np.argsort(np.concatenate(seqs), kind="stable")
    start = np.empty(len(order), np.int64)
    start[order] = np.concatenate([[0], np.cumsum(sizes[order])[:-1]])  # output offset per message
    out = np.empty(int(sizes.sum()), np.uint8)
    first = 0
    for r in rows:
        n, width = r.shape
        idx = start[first:first + n, None] + np.arange(width)
        out[idx.ravel()] = r.ravel()
        first += n
    return out.tobytes()


def encode_message(code: str, **fields) -> bytes:
    """One framed message. Omitted fields are 0 (numbers) or spaces (alpha); alpha values
    may be str or bytes and are space-padded; ``timestamp`` is nanoseconds since midnight.
    """
    m = message_type(code)
    rec = np.zeros(1, DTYPES[m.code])
    for f in m.fields[1:]:
        if f.kind == ALPHA:
            rec[f.name] = b" " * f.size
    for name, value in fields.items():
        if name == "message_type":
            continue
        f = m.field(name)  # KeyError names the message and field
        if f.kind == ALPHA:
            raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
            if len(raw) > f.size:
                raise ValueError(f"{m.code}.{name}: {raw!r} is longer than {f.size} bytes")
            rec[name] = raw.ljust(f.size)
        else:
            info = np.iinfo(rec.dtype[name]) if f.kind != TIMESTAMP else None
            if value < 0 or (info and value > info.max) or (f.kind == TIMESTAMP and value > _MAX_TIMESTAMP):
                raise ValueError(f"{m.code}.{name}: {value} does not fit {f.size} bytes")
            rec[name] = value
    return wire_records(m.code, rec).tobytes()

