"""Split one day (raw, .gz, capture or URL) into N shard files by stock locate.

Drives ``itchflow.wire.shard.split_by_locate`` over the day's chunks with bounded per-shard
buffers, appending each shard's framed messages to ``shard-K.itch`` and their original
sequence numbers to ``shard-K.seq`` (little-endian uint64). Files are written under
temporary names and renamed when the whole day is through, so a killed split leaves nothing
that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np

from itchflow.errors import ITCHFormatError
from itchflow.scale.inputs import iter_day
from itchflow.scale.layout import Layout, clear_temps, publish, temp_name
from itchflow.sinks.output import NamedWrites
from itchflow.wire import shard as S
from itchflow.wire.binaryfile import STATUS_TEXT, describe
from itchflow.wire.itch import LENGTH_BY_BYTE, MESSAGES, known_by_type, unknown_by_type

ROW_BYTES = 4 << 20                               # per-shard buffer between flushes
SPLIT_ROW_BUDGET = 256 << 20   # all shards' buffers together: many shards get smaller rows (4 MiB
                               # each held 4,096 shards at 16 GB and more, and killed every worker)
COUNT_PIECE_MESSAGES = 1 << 22                    # the balancing count walks the day in pieces of this many
_MIN_FRAMED = 2 + min(m.length for m in MESSAGES.values())
_LENGTHS = np.array(LENGTH_BY_BYTE)               # writable: one array type for the kernel


def choose_map(source: str, shards: int) -> tuple[np.ndarray, str]:
    """(locate -> shard map, how): balanced by messages per locate for a raw local day (one
    framing-speed counting pass over the memory-mapped file), round-robin otherwise (a gzip
    or remote day would have to be read twice)."""
    from itchflow.scale.inputs import local_path
    from itchflow.sources.files import iter_chunks, sniff

    path = local_path(source)
    if shards > 1 and path is not None and os.path.isfile(path):  # a pipe is read once: by the split
        with open(path, "rb") as f:
            kind = sniff(f.read(8))
        if kind == "itch":
            chunk = next(iter_chunks(path))  # the whole day, memory-mapped
            per_locate = np.zeros(S.N_LOCATES, np.int64)
            status, pos, end = S.OK, 0, len(chunk.data)
            while status == S.OK and pos < end:  # in pieces: the counted pages can go
                status, pos = S.count_by_locate(chunk.data, pos, end, _LENGTHS, per_locate, COUNT_PIECE_MESSAGES)
                chunk.release(pos, final=pos >= end)
            if status == S.OK:  # a bad message is named by the split itself, just after
                return S.balanced_map(per_locate, shards), "balanced"
    return S.modulo_map(shards), "round-robin"


def load_map(root: str, day: str) -> np.ndarray:
    """The locate -> shard map a day was split with."""
    return np.load(Layout(root).map_file(day))


def split_day(source: str, root: str, day: str, shards: int, broadcast: str,
              row_bytes: int | None = None) -> dict:
    """Write the day's shard files under root's scratch folder; returns a small summary.
    row_bytes: each shard's buffer (None: ROW_BYTES, less when SPLIT_ROW_BUDGET is shared by
    many shards, never under the largest message)."""
    if row_bytes is None:
        row_bytes = max(S.MAX_MESSAGE_BYTES, min(ROW_BYTES, SPLIT_ROW_BUDGET // max(int(shards), 1)))
    if row_bytes < S.MAX_MESSAGE_BYTES:
        raise ValueError(f"row_bytes must hold the largest message ({S.MAX_MESSAGE_BYTES} bytes)")
    lay = Layout(root)
    os.makedirs(lay.scratch(day), exist_ok=True)
    clear_temps(lay.scratch(day))
    finals = [(lay.shard_file(day, k), lay.seq_file(day, k)) for k in range(shards)]
    temps = [(temp_name(a), temp_name(b)) for a, b in finals]
    t0 = time.perf_counter()
    shard_of, how = choose_map(source, shards)
    map_tmp = temp_name(lay.map_file(day))
    with open(map_tmp, "wb") as f:
        np.save(f, shard_of)
    bmask = S.broadcast_mask(broadcast)
    out = np.empty((shards, row_bytes), np.uint8)
    seqs = np.empty((shards, row_bytes // _MIN_FRAMED + 1), np.uint64)
    fill = np.zeros(shards, np.int64)
    nseq = np.zeros(shards, np.int64)
    counts = np.zeros(256, np.int64)
    state = S.new_state()
    shard_bytes = np.zeros(shards, np.int64)
    capture: dict = {}   # a capture's counters (gaps, duplicates), for the day's summary
    shard_messages = np.zeros(shards, np.int64)
    files: list = []
    done = False
    try:
        for (a, b), (fa, fb) in zip(temps, finals):   # a full disk names the shard, not only "[Errno 28]"
            files.append((NamedWrites(open(a, "wb"), fa), NamedWrites(open(b, "wb"), fb)))

        def flush() -> None:
            for k, (fmsg, fseq) in enumerate(files):
                fmsg.write(memoryview(out[k, : fill[k]]))
                fseq.write(memoryview(seqs[k, : nseq[k]].astype("<u8", copy=False)))
                shard_bytes[k] += fill[k]
                shard_messages[k] += nseq[k]
            fill[:] = 0
            nseq[:] = 0

        # a capture's small runs joined (an anonymised capture's packets are a run each), each
        # message's number put back from the chunk's runs
        for chunk in iter_day(source, capture_stats=capture, join_runs=True):
            with chunk.reading():  # a file truncated meanwhile is the error, not what its zeros made
                data, name, offset, runs = chunk.data, chunk.source, chunk.offset or 0, chunk.runs
                pos, end, seq = 0, len(data), 0 if runs is not None else int(chunk.first_sequence)
                while True:
                    before = nseq.copy() if runs is not None else None
                    status, pos, seq = S.split_by_locate(data, pos, end, np.int64(seq), shard_of, bmask, _LENGTHS,
                                                         out, fill, seqs, nseq, counts, state)
                    pos, seq = int(pos), int(seq)
                    if runs is not None:   # places in the chunk -> their numbers
                        for k in np.flatnonzero(nseq > before).tolist():
                            seqs[k, before[k]:nseq[k]] = runs.numbers(seqs[k, before[k]:nseq[k]])
                    chunk.release(pos)  # split and buffered: a mapped day's pages can go
                    if status == S.OK:
                        break
                    if status == S.NEED_SPACE and (fill.any() or nseq.any()):
                        flush()
                        continue
                    text = (describe(data, pos, end, status) if status in STATUS_TEXT
                            else S.SPLIT_STATUS_TEXT.get(status, f"split status {status}"))
                    raise ITCHFormatError(text, source=name, offset=offset + pos)
        flush()
        for fmsg, fseq in files:
            fmsg.close()
            fseq.close()
        done = True
    finally:
        for fmsg, fseq in files:
            with contextlib.suppress(OSError):
                fmsg.close()
            with contextlib.suppress(OSError):
                fseq.close()
        if not done:   # what a failed split wrote (a full disk stayed full until a rerun)
            for path in [p for pair in temps for p in pair] + [map_tmp]:
                with contextlib.suppress(OSError):
                    os.remove(path)
    for (ta, tb), (fa, fb) in zip(temps, finals):
        publish(ta, fa)
        publish(tb, fb)
    publish(map_tmp, lay.map_file(day))
    known, unknown = known_by_type(counts), unknown_by_type(counts)
    first, last = int(state[S.S_FIRST_TS]), int(state[S.S_LAST_TS])
    return {"day": day, "source": source, "shards": shards, "broadcast": broadcast, "map": how,
            "messages": int(state[S.S_MESSAGES]), "by_type": known, "unknown_by_type": unknown,
            "broadcast_breaks": int(state[S.S_BROADCAST_BREAKS]),
            "first_timestamp_ns": first if first >= 0 else None, "last_timestamp_ns": last if last >= 0 else None,
            "shard_messages": shard_messages.tolist(), "shard_bytes": shard_bytes.tolist(),
            **({"capture": capture} if capture else {}), "seconds": time.perf_counter() - t0}
