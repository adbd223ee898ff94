"""Encode ITCH 5.0 messages: the exact inverse of the decoder, derived from the same table.

``encode_message`` builds one framed message from keyword fields (for tests and tools);
``encode`` turns decoded per-type arrays back into a BinaryFILE stream, merging the types
in ``sequence`` order, vectorised per type through ``spec.WIRE_DTYPES``. Decoding then
encoding a stream of known messages gives back the same bytes.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import numpy as np

from itchflow.arguments import whole
from itchflow.wire.itch import ALPHA, DTYPES, TIMESTAMP, WIRE_DTYPES, message_type

_MAX_TIMESTAMP = (1 << 48) - 1


def _timestamp_bytes(ts: np.ndarray) -> np.ndarray:
    """int64 nanoseconds -> the 6 big-endian wire bytes, as a V6 column."""
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) and (ts.min() < 0 or ts.max() > _MAX_TIMESTAMP):
        raise ValueError("timestamp does not fit the 48-bit wire field")
    return np.ascontiguousarray(ts.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]).view("V6").ravel()


def _text(name: str, value, size: int) -> bytes:
    """One alpha field's bytes, space-padded as ITCH pads them (numpy would pad with NULs):
    ASCII text or bytes of at most ``size``; anything else (a number would become NULs) is
    refused naming the field."""
    if isinstance(value, str):
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{name}: {value!r} is not ASCII") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    else:
        raise TypeError(f"{name}: text (str or bytes), not {value!r}")
    if len(raw) > size:
        raise ValueError(f"{name}: {raw!r} is longer than {size} bytes")
    return raw.ljust(size)


def _alpha_column(name: str, col, size: int) -> np.ndarray:
    """An alpha column as the wire's S{size}: bytes of exactly that size as they are (a decoded
    column, whatever its bytes); other values (str or bytes, a DataFrame's objects) each as
    ``_text`` takes one."""
    a = np.asarray(col)
    if a.dtype.kind == "S" and a.dtype.itemsize == size:
        return a
    return np.array([_text(name, v, size) for v in a.ravel()], dtype=f"S{size}")


def _number_column(name: str, col, dtype: np.dtype) -> np.ndarray:
    """A numeric column checked against its wire field: whole numbers (no floats, which would
    be truncated, no booleans) in the field's range (which would wrap around)."""
    a = np.asarray(col)
    if a.dtype.kind == "O":
        try:
            a = np.array([operator.index(v) for v in a.ravel()], dtype=object)
            a = a.astype(np.uint64 if len(a) and max(a) > np.iinfo(np.int64).max else np.int64)
        except (TypeError, OverflowError):
            raise TypeError(f"{name}: whole numbers, not {a.dtype} values") from None
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: whole numbers, not {a.dtype} (a float would be truncated)")
    info = np.iinfo(dtype)
    if len(a) and (a.min() < 0 or a.max() > info.max):
        bad = a[(a < 0) | (a > info.max)][0]
        raise ValueError(f"{name}: {bad} does not fit {dtype.itemsize} bytes")
    return a


def wire_records(code: str, arr: np.ndarray) -> np.ndarray:
    """Decoded records of one type -> (n, 2 + length) uint8 rows of framed wire bytes. Each
    column is checked against its field (whole numbers in range, text that fits), so a
    DataFrame or hand-made arrays encode as exactly or fail naming the field."""
    m = message_type(code)
    wire = np.zeros(len(arr), WIRE_DTYPES[m.code])
    wire["length_prefix"] = m.length
    wire["message_type"] = m.code.encode()
    for f in m.fields[1:]:
        name = f"{m.code}.{f.name}"
        try:
            col = arr[f.name]
        except (KeyError, ValueError, IndexError):
            raise KeyError(f"{name}: no such column in the {m.code} input") from None
        if f.kind == TIMESTAMP:
            wire[f.name] = _timestamp_bytes(_number_column(name, col, np.dtype(np.uint64)))
        elif f.kind == ALPHA:
            wire[f.name] = _alpha_column(name, col, f.size)
        else:
            wire[f.name] = _number_column(name, col, wire.dtype[f.name])
    return wire.view(np.uint8).reshape(len(arr), m.length + 2)


def encode(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Per-type arrays (a ``Decoded`` or any mapping of letter -> DTYPES array) -> BinaryFILE.

    Messages come out in ascending ``sequence`` (one type's rows of one number in their
    order). A number in two types' arrays is refused: it does not say which message came
    first (a capture of two sessions numbers each from 1, an anonymised capture's packets all
    say 0; read such a source with ``renumber=True``, which numbers every message by its place
    in the stream). Put in the table's type order, a delete came before its add, silently.

    Messages of types the specification does not have are not kept by ``read`` (it counts
    them): a ``Decoded`` holding such counts warns (``UserWarning``) that the output lacks
    them, rather than pass for the source's bytes (probe 29).
    """
    info = getattr(arrays, "info", None)
    skipped = int(getattr(info, "unknown", 0) or 0)
    if skipped:
        import warnings

        warnings.warn(f"encode: {skipped:,} messages of unknown types "
                      f"({', '.join(f'{k} x{v:,}' for k, v in (info.unknown_by_type or {}).items())}) were skipped by "
                      "read and are not in the output: it is not the source's bytes", UserWarning, stacklevel=2)
    rows, seqs = [], []
    for code, arr in arrays.items():
        if len(arr):
            rows.append(wire_records(code, arr))
            seqs.append(np.asarray(arr["sequence"], dtype=np.uint64))
    if not rows:
        return b""
    sizes = np.concatenate([np.full(len(r), r.shape[1], np.int64) for r in rows])
    numbers = np.concatenate(seqs)
    order = np.argsort(numbers, kind="stable")
    ranked, kinds = numbers[order], np.repeat(np.arange(len(seqs)), [len(q) for q in seqs])[order]
    same = np.flatnonzero((ranked[1:] == ranked[:-1]) & (kinds[1:] != kinds[:-1]))
    if same.size:
        raise ValueError(f"messages of different types share sequence numbers (the first: {int(ranked[same[0]]):,}), "
                         f"so the arrays do not say their order: read the source with renumber=True (a capture "
                         f"of several sessions, or an anonymised one)")
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
            rec[name] = _text(f"{m.code}.{name}", value, f.size)
        else:
            top = _MAX_TIMESTAMP if f.kind == TIMESTAMP else int(np.iinfo(rec.dtype[name]).max)
            v = whole(value, f"{m.code}.{name}")
            if not 0 <= v <= top:
                raise ValueError(f"{m.code}.{name}: {v} does not fit {f.size} bytes")
            rec[name] = v
    return wire_records(m.code, rec).tobytes()

