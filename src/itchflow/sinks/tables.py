"""Write decoded messages to Parquet or CSV as one table, streaming piece by piece.

Several types go into one table: the union of their columns (a column a type lacks is
null), a ``message_type`` column, rows in sequence order. A symbol filter follows the
stock directory (``R``) to the day's stock locate, so types without a stock field (E, C,
X, D, U) are kept too; where no directory message names the symbol, the ``stock`` field
is matched directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from itchflow.sinks.output import output_file
from itchflow.wire.itch import ALPHA_PADDING, DTYPES, alpha_stripped


def union_schema(codes: str, dtypes=DTYPES):
    """The one table's columns: sequence, message_type, then each type's fields in order. A
    field several types share takes the narrowest integer type that holds every type's values
    (Q's 8-byte shares with A's 4-byte: uint64, or a legal Q could not be written); a field no
    one type holds for all of them is refused here, by name, before any row is read."""
    import pyarrow as pa

    by_name: dict[str, dict[str, np.dtype]] = {}   # column -> message type -> its dtype there
    for c in codes:
        dt = dtypes[c]
        for name in dt.names:
            by_name.setdefault(name, {})[c] = dt.fields[name][0]
    fields = {"sequence": pa.uint64(), "message_type": pa.string()}
    for name, cols in by_name.items():
        if name not in fields:
            fields[name] = _column_type(name, cols)
    return pa.schema(list(fields.items()))


def _column_type(name: str, cols: dict[str, np.dtype]):
    import pyarrow as pa

    kinds = {col.kind for col in cols.values()}
    if kinds == {"S"}:
        return pa.string()
    if kinds <= {"u", "i"}:
        wide = np.result_type(*cols.values())   # uint64 with any signed type is float64: no integer holds both
        if wide.kind in "ui":
            return pa.from_numpy_dtype(wide)
    said = ", ".join(f"{c} {'text' if col.kind == 'S' else col}" for c, col in cols.items())
    raise ValueError(f"decode: no one column type holds every message type's {name!r} ({said})")


ROW_GROUP_ROWS = 1 << 16   # rows a row group (CSV: a write) takes at least, but for the last


class TableWriter:
    """Context manager: ``for piece in w.pieces(path): ...`` writes each decoded piece."""

    def __init__(self, out: str, types: str):
        from itchflow.decode.reader import type_codes

        self.out = Path(out)
        self.codes = type_codes(types)
        if not self.codes:
            raise ValueError("no message types to decode")
        suffix = self.out.suffix.lower()
        if suffix not in (".parquet", ".csv"):
            raise ValueError(f"{out}: output must end in .parquet or .csv")
        self.format = suffix[1:]
        self.schema = union_schema(self.codes)
        self.rows = 0
        self.rows_by_type = {c: 0 for c in self.codes}
        self.messages_read = 0
        self.bytes_read = 0
        self._writer = None
        self._locates: set[int] = set()   # locates whose last R so far named the symbol (--symbol)
        self._held: list = []   # pieces' rows not written yet: a row group holds ROW_GROUP_ROWS or more
        self._held_rows = 0

    def __enter__(self) -> "TableWriter":
        self._output = output_file(self.out)  # written as OUT.part, renamed when complete
        tmp = self._output.__enter__()
        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq
                self._writer = pq.ParquetWriter(tmp, self.schema, compression="zstd")
            else:
                import pyarrow.csv as pcsv
                self._writer = pcsv.CSVWriter(tmp, self.schema)
        except BaseException as e:
            self._output.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def __exit__(self, et, ev, tb) -> bool:
        error = ev
        try:
            if self._writer is not None:
                if error is None:
                    self._flush()
                self._writer.close()
        except BaseException as e:  # a close that fails (a full disk) is the error if none came first
            error = error or e
        self._writer = None
        if error is None:
            self._output.__exit__(None, None, None)  # OUT.part becomes OUT
            return False
        self._output.__exit__(type(error), error, error.__traceback__)  # removes OUT.part; names OUT
        if error is not ev:
            raise error
        return False

    def pieces(self, source, *, symbol: str | None = None, chunk_messages: int = 1 << 21, missing_ok: bool = False,
               progress=None, renumber: bool = False):
        """Decode source piece by piece, writing each; yields the pieces. progress(messages,
        position) as ``scan`` calls it. renumber: ``sequence`` is each message's place in the
        stream (``scan(renumber=True)``): an anonymised capture's are all 0 otherwise. symbol:
        only that stock's messages (one ITCH symbol; a day naming it nowhere is a KeyError,
        after which no file is left, unless missing_ok: an archive's day); digits, a stock locate."""
        from itchflow.decode.reader import scan
        from itchflow.sinks.output import refuse_input_as_output

        refuse_input_as_output(self.out, source)   # before a byte is read: the output would replace it
        padded = locate = None
        if symbol is not None:  # one ITCH symbol, as the books take it: ABEV, abev; not "A,B", not 9 letters
            from itchflow.book.records import symbol_key

            symbol = str(symbol).strip().upper()
            if "," in symbol:
                raise ValueError(f"decode filters one symbol, not {symbol!r}")
            if symbol.isdigit() and symbol.isascii():   # a stock locate, as every books command takes one
                locate = int(symbol)
                if not 0 <= locate <= 0xFFFF:
                    raise ValueError(f"decode: stock locate {locate} is past 65535")
            else:
                padded = symbol_key(symbol).to_bytes(8, "little")
        want = self.codes + ("R" if symbol is not None and "R" not in self.codes else "")
        named = False   # whether any R or stock field of the day names the symbol
        directory = False   # whether the day has R messages (a locate none gives is then a mistake)
        for piece in scan(source, want, chunk_messages=chunk_messages, progress=progress, renumber=renumber):
            self.messages_read += piece.info.messages
            self.bytes_read += piece.info.bytes
            if locate is not None:
                arrays = {c: piece[c][piece[c]["stock_locate"] == locate] for c in self.codes}   # (every type has one)
                named = named or bool(np.any(piece["R"]["stock_locate"] == locate)) or any(map(len, arrays.values()))
                directory = directory or bool(len(piece["R"]))
            else:
                events = self._directory_events(piece["R"], padded) if padded is not None else {}
                arrays = {c: self._filter(piece[c], padded, events, c == "R") for c in self.codes}
                named = named or bool(events) or any(len(a) for a in arrays.values())
            self.write(arrays)
            yield piece
        if locate is not None and not named and directory and not missing_ok:
            # as the books commands: a locate no R gives, on a day with a directory (a day without
            # one, a capture of a few types, has its locates only in the messages: probe 46)
            raise KeyError(f"decode: stock locate {locate}: no stock directory (R) message gives it a stock, "
                           "and no message of the types asked is of it")
        if padded is not None and not named and not missing_ok:   # a mistyped symbol is not "0 rows"
            raise KeyError(f"decode: no stock directory (R) message or stock field names {symbol}")

    def _directory_events(self, r: np.ndarray, padded: bytes) -> dict:
        """For each locate that names the symbol now or by an R of this piece: (whether it did
        before the piece, the sequence numbers of its R messages in the piece, whether each
        names it). The piece's own R messages decide its other messages by their place, so the
        rows kept are the same however the day is cut (a whole piece was kept from its R on,
        messages before the R included, and a locate renamed away stayed selected)."""
        naming = alpha_stripped(r["stock"]) == padded.rstrip(ALPHA_PADDING)
        events = {}
        for loc in self._locates | {int(x) for x in r["stock_locate"][naming]}:
            mine = r["stock_locate"] == loc
            order = np.argsort(r["sequence"][mine], kind="stable")
            seqs, names = r["sequence"][mine][order], naming[mine][order]
            events[loc] = (loc in self._locates, seqs, names)
            if len(names):   # the locate's last R in the piece decides what follows it
                self._locates.discard(loc)
                if names[-1]:
                    self._locates.add(loc)
        return events

    @staticmethod
    def _filter(arr: np.ndarray, padded: bytes | None, events: dict, directory: bool) -> np.ndarray:
        """Rows of the symbol: those whose locate names it at their place in the day (its last
        R before them), or whose own stock field is it (an R naming it, an A/F of it)."""
        if padded is None or not len(arr):
            return arr
        keep = np.zeros(len(arr), bool)
        if not directory:   # an R row is the symbol's by its own stock field alone
            for loc, (before, seqs, names) in events.items():
                at = np.flatnonzero(arr["stock_locate"] == loc)
                if not len(at):
                    continue
                k = np.searchsorted(seqs, arr["sequence"][at], side="left")   # R messages before each row
                keep[at] = np.where(k == 0, before, names[np.maximum(k - 1, 0)]) if len(seqs) else before
        if "stock" in arr.dtype.names:
            keep |= alpha_stripped(arr["stock"]) == padded.rstrip(ALPHA_PADDING)
        return arr[keep]

    def write(self, arrays: dict[str, np.ndarray]) -> None:
        import pyarrow as pa

        from itchflow.decode.decoded import to_arrow

        tables = []
        for code, arr in arrays.items():
            if not len(arr):
                continue
            t = to_arrow(arr)
            t = t.add_column(1, "message_type", pa.array([code] * len(arr), pa.string()))
            cols = [t.column(f.name) if f.name in t.column_names else pa.nulls(len(arr), f.type)
                    for f in self.schema]
            tables.append(pa.table(cols, schema=self.schema))
            self.rows_by_type[code] += len(arr)
        if not tables:
            return
        table = pa.concat_tables(tables).sort_by("sequence") if len(tables) > 1 else tables[0]
        self._held.append(table)
        self._held_rows += table.num_rows
        self.rows += table.num_rows
        if self._held_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        """Write the rows held as one row group (a piece of a few messages each was a row group
        of its own: `decode --chunk 7` wrote 69 k rows as 241 MB of Parquet)."""
        import pyarrow as pa

        if self._held:
            self._writer.write_table(pa.concat_tables(self._held) if len(self._held) > 1 else self._held[0])
        self._held, self._held_rows = [], 0

