"""The single-file machinery each batch job runs, in ONE place (the adapter).

Every job runs on one input: a whole local day, or one shard file of a split day together
with its sidecar of original sequence numbers (``SeqMap``). What runs is what the
single-file commands run: ``stats`` is ``itchflow.stats``; ``decode`` is ``itchflow.scan``
through ``sinks.tables.TableWriter`` (as ``itchflow decode``); ``bbo`` and ``trades`` replay
the day through ``Books`` and stream the recorded events to Parquet (as ``itchflow bbo`` /
``itchflow trades``); ``snapshots`` is ``book.events.snapshots`` (as ``itchflow snapshots``);
``lobster`` is ``sinks.lobster.lobster_dataset`` (``itchflow lobster``'s rows, every chosen
stock in one Parquet part); ``bars`` is ``sinks.bars.bars`` (``itchflow bars``: a shard's
file holds only its stocks' messages, so its panel is theirs); ``crosses`` and ``imbalances``
are the two tables of ``sinks.auctions.auctions`` (``itchflow auctions``), a day a task
(``WHOLE_DAY_JOBS``: an imbalance's ``cross_row`` is a row of the day's crosses).
On a shard, sequence numbers are mapped back to the original stream, and messages sent to
every shard are written once (by shard 0), so the union of the shards equals the
single-process output row for row. (Only malformed data is seen differently: an E/C/X/D/U
whose header locate is not its order's stock is a locate_mismatch in one process but an
unknown_reference in the shard of that locate.)
"""

from __future__ import annotations

import os
import time

import numpy as np

JOBS = ("stats", "decode", "bbo", "trades", "snapshots", "lobster", "bars", "crosses", "imbalances")
SHARDED_JOBS = ("decode", "bbo", "trades", "snapshots", "lobster", "bars")
WHOLE_DAY_JOBS = ("stats", "crosses", "imbalances")   # one task and one part a day
BROADCAST_TYPES = "SR"  # S: system events; R: the stock directory, so every shard knows every
                        # symbol and "R seen" means the same in every shard as in one process
_DEFAULTS = {
    "stats": {},
    "decode": {"types": "AF", "chunk": 1 << 21},
    "bbo": {},
    "trades": {},
    "snapshots": {"at": None, "every": None, "depth": 5},
    "lobster": {"levels": 10, "start": "09:30", "end": "16:00"},
    "bars": {"every": "1min", "start": "09:30", "end": "16:00"},
    "crosses": {},
    "imbalances": {},
}


def job_options(job: str, symbols, options: dict) -> tuple[list[str] | None, dict]:
    """Validate a job's options (those of the single-file command); returns (symbols, options)."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}: one of {', '.join(JOBS)}")
    unknown = set(options) - set(_DEFAULTS[job])
    if unknown:
        raise ValueError(f"job {job!r} takes no option {', '.join(sorted(unknown))} "
                         f"(options: {', '.join(_DEFAULTS[job]) or 'none'})")
    opts = dict(_DEFAULTS[job], **options)
    from itchflow.sinks._symbols import symbol_list

    syms = symbol_list(symbols, f"the {job} job")   # one rule with the single-file commands: -s , is an error
    if job == "stats" and syms:
        raise ValueError("the stats job counts whole days: it takes no symbols")
    if job == "decode":
        from itchflow.decode.reader import type_codes

        if not type_codes(opts["types"]):
            raise ValueError("no message types to decode")
        if syms and len(syms) > 1:
            raise ValueError("decode filters one symbol (as `itchflow decode --symbol` does)")
    if job == "lobster":
        from itchflow.sinks.lobster import lobster_window

        if not syms:
            raise ValueError("lobster needs symbols (LOBSTER files are per stock)")
        lobster_window(opts["levels"], opts["start"], opts["end"])  # levels 1..1000, start before end
    if job == "bars":
        from itchflow.sinks.bars import bars_window

        bars_window(opts["every"], opts["start"], opts["end"])
    if job == "snapshots":
        if not syms:
            raise ValueError("snapshots needs symbols")
        if (opts["at"] is None) == (opts["every"] is None):
            raise ValueError("snapshots needs exactly one of at= (times) and every= (seconds)")
        if opts["every"] is not None:
            from itchflow.book.events import snapshot_step

            snapshot_step(opts["every"])  # the step itself (the grid needs the day)
        if opts["at"] is not None:
            at = opts["at"]
            opts["at"] = [int(t) for t in ([at] if isinstance(at, (int, np.integer)) else at)]
    return syms, opts


class SeqMap:
    """Shard sequence -> original sequence, from the split's sidecar (None: identity).

    The sidecar is 8 bytes a message, so a job that maps most of a shard's messages would
    keep up to its whole size resident. Jobs ask in rising order (pieces, slices), so the
    pages below the lowest sequence of a call are let go (``WalkedPages``); a later call
    below that mark only faults them back in from the page cache."""

    def __init__(self, path: str | None):
        from itchflow.sources.chunk import WalkedPages, file_mapping, map_file

        self.table = None
        self._pages = WalkedPages(None)
        if path is not None and os.path.getsize(path):
            raw = map_file(path)
            if len(raw) % 8:
                raise ValueError(f"{path}: {len(raw):,} bytes is not a whole number of 8-byte sequence "
                                 "numbers (stale or cut scratch files?)")
            self._pages = WalkedPages(file_mapping(raw))
            self.table = raw.view("<u8")

    def __call__(self, seq: np.ndarray) -> np.ndarray:
        if self.table is None:
            return seq
        idx = np.asarray(seq, np.int64) - 1
        if not len(idx):
            return np.zeros(0, np.uint64)
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= len(self.table):
            raise ValueError("a shard sequence number falls outside its sidecar (stale scratch files?)")
        mapped = np.asarray(self.table[idx], np.uint64)
        self._pages.release(lo * 8)
        return mapped


def _book_counts(books, symbols=None, shard: int = 0) -> dict:
    """What a job's summary says of the books it replayed: messages (every one framed, as
    ``stats`` counts them: the books' own count leaves out the unknown types they skipped),
    by_type, unknown_by_type, anomalies. symbols: the job's output is only theirs: the
    anomalies are their stocks', and the others' a total (``other_stocks_anomalies``; the
    kinds every shard counts in full, BROADCAST_ANOMALIES, from shard 0 only), as the
    single-file commands say them."""
    from itchflow.book.books import anomalies_of
    from itchflow.wire.itch import known_by_type

    out = {"messages": books.messages + books.unknown_types, "by_type": known_by_type(books.type_counts),
           "unknown_by_type": books.unknown_by_type}
    if not symbols:
        out["anomalies"] = {k: v for k, v in books.anomalies().items() if v}
        return out
    out["anomalies"], out["other_stocks_anomalies"] = anomalies_of(books, symbols, others_broadcast=shard == 0)
    return out


# ---- stats ---------------------------------------------------------------------------------

def _day_stats(source: str):
    """``itchflow.stats`` of a day: a local file mapped, a URL streamed."""
    from itchflow.decode.reader import stats

    return stats(source) if "://" not in source else _stats_stream(source)


def run_stats(source: str, out: str) -> dict:
    """itchflow.stats over one day; one row per message type seen (message_type, name, messages)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from itchflow.wire.itch import MESSAGES

    t0 = time.perf_counter()
    info = _day_stats(source)   # a capture's counters: info.capture
    t1 = time.perf_counter()
    rows = [(c, MESSAGES[c].name, n) for c, n in info.by_type.items() if n]
    rows += [(c, "unknown", n) for c, n in info.unknown_by_type.items()]
    table = pa.table({"message_type": pa.array([r[0] for r in rows], pa.string()),
                      "name": pa.array([r[1] for r in rows], pa.string()),
                      "messages": pa.array([r[2] for r in rows], pa.int64())})
    pq.write_table(table, out)
    d = info.to_dict()
    d.pop("source", None)
    d.pop("seconds", None)
    d["by_type"] = {k: v for k, v in d["by_type"].items() if v}
    return {"rows": len(rows), "messages": info.messages, "info": d, "by_type": d["by_type"],
            "unknown_by_type": info.unknown_by_type, "anomalies": {},
            "compute_seconds": t1 - t0, "write_seconds": time.perf_counter() - t1}


def _stats_stream(url: str):
    """stats() for a URL: the same framing pass over streamed chunks."""
    from itchflow.decode.decoder import FrameTotals, frame_range
    from itchflow.decode.reader import read_info
    from itchflow.scale.inputs import iter_day

    totals, capture = FrameTotals(), {}
    t0 = time.perf_counter()
    for chunk in iter_day(url, capture_stats=capture, join_runs=True):   # framing numbers nothing
        piece = FrameTotals()
        with chunk.reading():  # a file truncated meanwhile is the error, not what its zeros made
            frame_range(chunk.data, 0, len(chunk.data), piece, source=chunk.source, base_offset=chunk.offset or 0)
        totals.merge(piece)
    return read_info(url, totals, capture or None, time.perf_counter() - t0)


# ---- decode --------------------------------------------------------------------------------

def run_decode(source: str, out: str, symbols, options: dict, seq_map: SeqMap, first_copy: bool,
               capture_stats: dict | None = None) -> dict:
    """itchflow decode (TableWriter over itchflow.scan) on one day or shard."""
    from itchflow.sinks.tables import TableWriter
    from itchflow.wire.shard import broadcast_mask, is_broadcast

    bmask = broadcast_mask(BROADCAST_TYPES)

    class ShardTableWriter(TableWriter):
        write_seconds = 0.0

        def write(self, arrays):
            t = time.perf_counter()
            kept = {}
            for code, arr in arrays.items():
                if len(arr) and not first_copy:  # one copy of what every shard received
                    arr = arr[~is_broadcast(np.full(len(arr), ord(code), np.uint8), arr["stock_locate"], bmask)]
                if len(arr) and seq_map.table is not None:
                    arr = arr.copy()
                    arr["sequence"] = seq_map(arr["sequence"])
                kept[code] = arr
            super().write(kept)
            self.write_seconds += time.perf_counter() - t

    by_type: dict[str, int] = {}
    unknown: dict[str, int] = {}
    t0 = time.perf_counter()
    symbol = symbols[0] if symbols else None
    with ShardTableWriter(out, options["types"]) as writer:
        for piece in writer.pieces(source, symbol=symbol, chunk_messages=int(options["chunk"]),
                                   missing_ok=True):  # a day (or shard) need not list it
            if piece.info.capture and capture_stats is not None:
                capture_stats.update(piece.info.capture)
            for counts, into in ((piece.info.by_type, by_type), (piece.info.unknown_by_type, unknown)):
                for c, n in counts.items():
                    if n:
                        into[c] = into.get(c, 0) + n
    total = time.perf_counter() - t0
    return {"rows": writer.rows, "messages": writer.messages_read, "by_type": by_type,
            "unknown_by_type": unknown, "anomalies": {},
            "compute_seconds": total - writer.write_seconds, "write_seconds": writer.write_seconds}


# ---- bbo / trades (as `itchflow bbo|trades`) ------------------------------------------------

def run_events(source: str, out: str, which: str, symbols, seq_map: SeqMap, capture_stats: dict | None = None,
               shard: int = 0) -> dict:
    """``itchflow bbo|trades`` on one day or shard (sinks.events.events_to_parquet), with the
    shard's sequence numbers mapped back to the day's."""
    from itchflow.book.books import Books
    from itchflow.sinks.events import events_to_parquet

    books = Books(prefault=False)  # workers fill the cores: no populating thread beside them
    timings: dict = {}
    t0 = time.perf_counter()
    rows, _ = events_to_parquet(source, out, which, symbols, books=books, sequence_map=seq_map, timings=timings,
                                missing_ok=True,   # the job's symbols are the archive's, not each day's
                                capture_stats=capture_stats)
    write = timings["write_seconds"]
    return {"rows": rows, **_book_counts(books, symbols, shard), "compute_seconds": time.perf_counter() - t0 - write,
            "write_seconds": write}


# ---- snapshots (as `itchflow snapshots`) ----------------------------------------------------

def snapshot_times(options: dict, first_ns: int | None, last_ns: int | None) -> list[int]:
    """The times `itchflow snapshots` uses: --at as given, or every N s within the day's span."""
    from itchflow.book.events import every_times

    at, every = options["at"], options["every"]
    if at is not None:  # nanoseconds since midnight (the CLI parses HH:MM:SS)
        return [int(t) for t in ([at] if isinstance(at, (int, np.integer)) else at)]
    return every_times(every, first_ns, last_ns)


def run_snapshots(source: str, out: str, symbols, options: dict, times: list[int], shard: int,
                  shard_of: np.ndarray | None, capture_stats: dict | None = None) -> dict:
    """Depth snapshots of this shard's symbols (their locate routes here) at the times."""
    from itchflow.book.books import Books
    from itchflow.sinks.events import snapshots_to_parquet

    t0 = time.perf_counter()
    mine = symbols_here(source, symbols, shard, shard_of)
    books = Books(prefault=False)  # workers fill the cores: no populating thread beside them
    # streamed: a shard holds a row group, not its day's rows (computing and writing interleave)
    timings: dict = {}
    rows = snapshots_to_parquet(books, source, out, times if mine else [], mine, int(options["depth"]),
                                capture_stats=capture_stats, timings=timings)
    # As lobster: the books stop at the last snapshot time, and a shard with none of the
    # symbols replays nothing, so their counts are not the day's (they changed with --shards):
    # no engine anomalies, and the day's messages counted in full where the day is not split.
    return {"rows": rows, **_day_counts(source, shard_of), "anomalies": {},
            "compute_seconds": time.perf_counter() - t0 - timings["write_seconds"],
            "write_seconds": timings["write_seconds"]}


def _day_counts(source: str, shard_of: np.ndarray | None) -> dict:
    """messages, by_type and unknown_by_type of a whole day (framing alone, as ``stats``), for
    a job whose own replay does not cover it; a split day's come from the split instead."""
    if shard_of is not None:
        return {"messages": 0, "by_type": {}, "unknown_by_type": {}}
    info = _day_stats(source)
    return {"messages": info.messages, "by_type": {k: v for k, v in info.by_type.items() if v},
            "unknown_by_type": info.unknown_by_type}


def symbols_here(source: str, symbols, shard: int, shard_of: np.ndarray | None) -> list[str]:
    """The symbols whose locate this shard holds (all of them for a whole day). The stock
    directory (R) reaches every shard, so a symbol no R names is absent from the day: a
    KeyError, as the single-file commands raise, rather than rows silently missing."""
    if shard_of is None:
        return list(symbols)
    from itchflow.decode.reader import scan
    from itchflow.sinks._symbols import stock_key
    from itchflow.wire.itch import alpha_text

    where = {}
    # scanned in pieces, not read() whole: a mapped day's pages go as they are walked
    for piece in scan(source, "R", chunk_messages=1 << 22):
        r = piece["R"]
        where.update((alpha_text(s), int(loc)) for s, loc in zip(r["stock"], r["stock_locate"]))
    # a name of digits is a locate, as the whole day's job takes it
    where.update((s, key) for s in symbols if isinstance(key := stock_key(s), int) and key < len(shard_of))
    missing = [s for s in symbols if s not in where]
    if missing:
        raise KeyError(f"no stock directory (R) message for {', '.join(missing)}")
    return [s for s in symbols if shard_of[where[s]] == shard]


# ---- lobster (as `itchflow lobster`, one Parquet part of every chosen stock's rows) --------

def run_lobster(source: str, out: str, symbols, options: dict, shard: int, shard_of: np.ndarray | None,
                capture_stats: dict | None = None) -> dict:
    """LOBSTER rows of this shard's symbols: ``sinks.lobster.lobster_dataset`` (a symbol
    column, the message columns, the order-book columns)."""
    from itchflow.sinks.lobster import lobster_dataset

    t0 = time.perf_counter()
    mine = symbols_here(source, symbols, shard, shard_of)
    made = lobster_dataset(source, mine, out, int(options["levels"]), start=options["start"], end=options["end"],
                           capture_stats=capture_stats)
    skipped: dict[str, int] = {}
    for m in made["stocks"].values():
        for k, v in m["skipped"].items():
            skipped[k] = skipped.get(k, 0) + v
    # As `itchflow lobster`: what is reported is what the chosen stocks' rows lost (skipped, by
    # reason), not the engine's counts over every stock of the shard (a shard with none of the
    # symbols does not replay at all, so those counts would not add up to the day's).
    return {"rows": sum(m["rows"] for m in made["stocks"].values()), **_day_counts(source, shard_of),
            "anomalies": {}, "skipped": skipped,
            "compute_seconds": time.perf_counter() - t0, "write_seconds": 0.0}


# ---- bars (as `itchflow bars`) ----------------------------------------------------------------

def run_bars(source: str, out: str, symbols, options: dict, shard: int, shard_of: np.ndarray | None,
             capture_stats: dict | None = None) -> dict:
    """Bars of this shard's stocks: the chosen symbols whose locate routes here, or (no
    symbols) every stock with a quote or a trade in the shard's file, which are its own."""
    import pyarrow.parquet as pq

    from itchflow.sinks.bars import bars

    t0 = time.perf_counter()
    mine = symbols_here(source, symbols, shard, shard_of) if symbols else None
    replayed: list = []
    window = {"start": options["start"], "end": options["end"]}
    if mine == []:   # none of the symbols routes here: an empty table with the bars' columns
        table = bars(np.zeros(0, np.uint8), options["every"], **window)
    else:
        table = bars(source, options["every"], mine, **window, on_books=replayed.append, capture_stats=capture_stats)
    t1 = time.perf_counter()
    pq.write_table(table, out)
    counts = _book_counts(replayed[0], symbols, shard) if replayed else {"messages": 0, "by_type": {}, "anomalies": {},
                                                          "unknown_by_type": {}}
    return {"rows": table.num_rows, **counts, "compute_seconds": t1 - t0, "write_seconds": time.perf_counter() - t1}


# ---- crosses, imbalances (the tables of `itchflow auctions`) ---------------------------------

def run_auctions(source: str, out: str, which: str, symbols, capture_stats: dict | None = None) -> dict:
    """One table of ``itchflow.auctions`` over a whole day (``which``: crosses or imbalances)."""
    import pyarrow.parquet as pq

    from itchflow.sinks.auctions import auctions

    t0 = time.perf_counter()
    counts: dict = {}   # the day's counts for its summary, from the pass auctions makes anyway
    table = getattr(auctions(source, symbols, read_stats=counts, capture_stats=capture_stats), which)
    t1 = time.perf_counter()
    pq.write_table(table, out)
    return {"rows": table.num_rows, **counts, "anomalies": {}, "compute_seconds": t1 - t0,
            "write_seconds": time.perf_counter() - t1}


# ---- one entry point ---------------------------------------------------------------------

def run_job(job: str, source: str, out: str, symbols, options: dict, *, seq_path: str | None = None,
            shard: int = 0, shard_of: np.ndarray | None = None,
            day_span: tuple[int | None, int | None] | None = None) -> dict:
    """Run job on source into out: a whole day, or shard `shard` of a split day (its sidecar
    of original sequence numbers at seq_path, the day's locate -> shard map shard_of, and the
    day's first and last timestamps day_span). A whole day that is a capture reports its
    counters (gaps, duplicates, malformed packets) under ``capture``."""
    capture: dict = {}
    summary = _run_job(job, source, out, symbols, options, seq_path, shard, shard_of, day_span, capture)
    capture = capture or summary.get("info", {}).get("capture") or {}
    if capture:
        summary["capture"] = capture
    return summary


def _run_job(job, source, out, symbols, options, seq_path, shard, shard_of, day_span, capture) -> dict:
    if job == "stats":
        return run_stats(source, out)
    seq_map = SeqMap(seq_path)
    if job == "decode":
        return run_decode(source, out, symbols, options, seq_map, first_copy=shard == 0, capture_stats=capture)
    if job in ("bbo", "trades"):
        return run_events(source, out, job, symbols, seq_map, capture_stats=capture, shard=shard)
    if job == "snapshots":
        if day_span is None and options["every"] is not None:
            from itchflow.decode.reader import stats

            info = stats(source)
            day_span = (info.first_timestamp_ns, info.last_timestamp_ns)
        times = snapshot_times(options, *(day_span or (None, None)))
        return run_snapshots(source, out, symbols, options, times, shard, shard_of, capture_stats=capture)
    if job == "lobster":
        return run_lobster(source, out, symbols, options, shard, shard_of, capture_stats=capture)
    if job == "bars":
        return run_bars(source, out, symbols, options, shard, shard_of, capture_stats=capture)
    if job in ("crosses", "imbalances"):
        return run_auctions(source, out, job, symbols, capture_stats=capture)
    raise ValueError(f"unknown job {job!r}")
