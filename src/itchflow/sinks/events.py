"""Book event streams to Parquet, streamed over a whole source.

``events_to_parquet`` replays a source through a fresh ``Books`` recording one stream (BBO
changes or trades), drains it after every slice into a Parquet writer (bounded memory for
any day), and, for trades, flags afterwards the trades that a later B message broke (a
break can arrive many slices after its trade, when the trade's rows are already written).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from itchflow.book import layout as L
from itchflow.book.books import Books
from itchflow.book.events import broken_column, to_arrow
from itchflow.sinks._book_access import directory
from itchflow.sinks._symbols import check_locates, resolve_symbols, stock_keys, symbol_list
from itchflow.sinks.output import output_file

STREAMS = ("bbo", "trades")


def write_parquet(events: np.ndarray, path, symbol_of=str) -> None:
    """One event (or snapshot) array to a Parquet file, symbols resolved with symbol_of."""
    import pyarrow.parquet as pq

    with output_file(path) as tmp:
        pq.write_table(to_arrow(events, symbol_of), tmp)


def events_to_parquet(source, out, which: str, symbols: list[str] | None = None,
                      progress: Callable[[int, int], None] | None = None, *, books: Books | None = None,
                      sequence_map: Callable[[np.ndarray], np.ndarray] | None = None,
                      timings: dict | None = None, missing_ok: bool = False,
                      capture_stats: dict | None = None) -> tuple[int, int]:
    """Replay source, recording one event stream (``which``: 'bbo' or 'trades'), only for
    these symbols (None = every stock), into the Parquet file out.

    Returns (rows written, messages applied). An empty stream still writes a file with the
    schema. progress(messages, bytes) as ``Books.replay``. books: a fresh Books to use (the
    caller reads its counters afterwards); sequence_map: renumbers the events' ``sequence``
    (a shard of a day maps back to the day's numbers); timings["write_seconds"] accumulates
    the time spent writing Parquet. A symbol the day has no stock directory message for is a
    KeyError (no file is written) unless missing_ok (an archive's days need not all list
    every symbol asked for). capture_stats: filled with a capture's counters (gaps ...).
    """
    import time

    import pyarrow.parquet as pq

    if which not in STREAMS:
        raise ValueError(f"which must be one of {STREAMS}, not {which!r}")
    symbols = stock_keys(symbol_list(symbols, which))   # a name of digits: that locate
    books = Books() if books is None else books
    timings = {} if timings is None else timings
    timings.setdefault("write_seconds", 0.0)
    books.record(None, bbo=False, trades=False, l2=False)
    # by name, before their R: each name records from the R that gives it a locate until one
    # renames that locate away (the engine's rule), so a rename mid-day keeps each name's rows apart
    books.record(symbols, bbo=which == "bbo", trades=which == "trades", l2=False)
    state = {"writer": None, "rows": 0, "breaks": 0}

    def drain(b: Books) -> None:
        bbo, trades, _ = b.take_events()
        ev = bbo if which == "bbo" else trades
        if not len(ev):
            return
        t = time.perf_counter()
        if sequence_map is not None:
            ev["sequence"] = sequence_map(ev["sequence"])
        if which == "trades":
            state["breaks"] += int(np.count_nonzero(ev["kind"] == b"B"))
        table = ev.to_arrow()
        if state["writer"] is None:
            state["writer"] = pq.ParquetWriter(state["path"], table.schema)
        state["writer"].write_table(table)
        state["rows"] += len(ev)
        timings["write_seconds"] += time.perf_counter() - t

    with output_file(out, inputs=(source,)) as tmp:  # OUT.part until the stream and its broken flags are written
        state["path"] = tmp
        try:
            books.replay(source, progress=progress, on_slice=drain, capture_stats=capture_stats)
        finally:
            if state["writer"] is not None:
                state["writer"].close()
        if symbols is not None:  # as bars, lobster and auctions: a mistyped symbol is not
            # "0 rows", and a symbol under two locates names no one stock
            listed, waiting = books.listed_symbols(), set(books.waiting_symbols)
            # (one the day listed and renamed away is neither: its rows are written)
            resolve_symbols(directory(books), [s for s in symbols if isinstance(s, str) and (
                s in listed or (s in waiting and not missing_ok))], which)
            if not missing_ok:
                check_locates(books, symbols, f"{which}: ")
        t = time.perf_counter()
        if state["writer"] is None:  # nothing recorded: still write an empty file with the schema
            empty = np.zeros(0, L.BBO_EVENT_DTYPE if which == "bbo" else L.TRADE_EVENT_DTYPE)
            pq.write_table(to_arrow(empty, books.symbol), tmp)
        if which == "trades" and state["breaks"]:
            if tmp == os.fspath(out):   # a device or pipe, written in place (output_file); it failed
                # naming only the file (probe 30)
                raise ValueError(f"{tmp}: the trades that B messages broke are flagged by reading the file back and "
                                 "writing it again, which cannot be done to a device or pipe: write trades to a "
                                 "file")
            flag_broken_trades(tmp)
        timings["write_seconds"] += time.perf_counter() - t
    return state["rows"], books.messages


def snapshots_to_parquet(books: Books, source, out, times_ns, symbols, n: int, *,
                         capture_stats: dict | None = None, timings: dict | None = None) -> int:
    """``book.events.iter_snapshots`` streamed into the Parquet file out, a row group of at
    least ROW_GROUP_ROWS rows at a time: memory holds a row group and one time's rows, not
    the day's (all levels of a deep book every second is billions of rows). Returns the rows
    written; OUT.part until the last time's rows are written (a symbol the day never lists
    is a KeyError raised after them: no file). timings["write_seconds"] accumulates the time
    spent writing, as in ``events_to_parquet``."""
    import time

    import pyarrow.parquet as pq

    from itchflow.book.books import depth_levels
    from itchflow.book.events import NAMED_SNAPSHOT_DTYPE, SNAPSHOT_DTYPE, iter_snapshots
    from itchflow.sinks.tables import ROW_GROUP_ROWS

    n = depth_levels(n)   # checked before any work, as Books.depth checks it
    symbols = stock_keys(list(symbols))   # a name of digits: that locate (a shard may have none)
    held: list[np.ndarray] = []
    state = {"held": 0, "rows": 0, "writer": None}
    timings = {} if timings is None else timings
    timings.setdefault("write_seconds", 0.0)

    def write(path) -> None:
        t = time.perf_counter()
        table = to_arrow(np.concatenate(held) if held else np.zeros(0, NAMED_SNAPSHOT_DTYPE))
        if state["writer"] is None:
            state["writer"] = pq.ParquetWriter(path, table.schema)
        state["writer"].write_table(table)
        state["rows"] += table.num_rows
        held.clear()
        state["held"] = 0
        timings["write_seconds"] += time.perf_counter() - t

    with output_file(out, inputs=(source,)) as tmp:
        try:
            for part in iter_snapshots(books, source, times_ns, symbols, n, capture_stats=capture_stats):
                # each row named now, by its stock's name at its time, as events name theirs: named
                # at the write, a time's rows took a name the stock only got later (probe 42)
                named = np.zeros(len(part), NAMED_SNAPSHOT_DTYPE)
                for f in SNAPSHOT_DTYPE.names:
                    named[f] = part[f]
                named["symbol"] = books.stocks["symbol"][part["stock_locate"]].view("S8")
                held.append(named)
                state["held"] += len(part)
                if state["held"] >= ROW_GROUP_ROWS:
                    write(tmp)
            if held or state["writer"] is None:   # the rest; no row at all: the schema alone
                write(tmp)
            check_locates(books, symbols, "snapshots: ")   # raised here: no file is left
        finally:
            if state["writer"] is not None:
                state["writer"].close()
    return state["rows"]


def flag_broken_trades(path) -> None:
    """Rewrite a trades Parquet file (in the order the books recorded it) with ``broken`` set
    on every B record and on every trade a B record in it broke (``broken_column``): the trade
    the books broke (``mark_broken``), not every trade of that match number (a number reused
    after the break, or by a later cross, stays unbroken, as it stays in the books' volume)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    is_break = pc.equal(t["kind"], "B").to_numpy(zero_copy_only=False)
    columns = {"kind": np.where(is_break, ord("B"), ord("E")).astype(np.uint8)}
    for name in ("match_number", "stock_locate", "price", "shares"):
        columns[name] = t[name].to_numpy()
    broken = pa.array(broken_column(columns))
    t = t.set_column(t.schema.get_field_index("broken"), "broken", broken)
    pq.write_table(t, path)
