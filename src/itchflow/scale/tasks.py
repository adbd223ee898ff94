"""The task functions a batch submits (they run on workers) and the per-worker warm-up.

Every task takes paths and small values and returns a small summary dict; each leaves a
done marker (holding that summary) when it has published its files, and a task that finds
its marker returns the stored summary without redoing the work, so reruns resume.
"""

from __future__ import annotations

import os
import shutil
import time

from itchflow.book.layout import BROADCAST_ANOMALIES
from itchflow.scale import jobs
from itchflow.scale.layout import Layout, clear_temps, publish, read_json, temp_name, write_json

# Jobs whose every shard applies its whole shard through the books and reports the engine's
# anomalies (snapshots stop at their last time; lobster reports its stocks' skipped rows).
WHOLE_DAY_BOOK_JOBS = ("bbo", "trades", "bars")


def split_task(source: str, root: str, day: str, shards: int) -> dict:
    lay = Layout(root)
    done = read_json(lay.marker(day, "split"))
    if done is not None:
        return dict(done, resumed=True)   # done by an earlier run: none of this run's work
    from itchflow.scale.split import split_day

    summary = split_day(source, root, day, shards, jobs.BROADCAST_TYPES)
    write_json(lay.marker(day, "split"), summary)
    return summary


def shard_task(split: dict | None, source: str, root: str, day: str, shard: int, job: str,
               symbols, options: dict, crash_once: str | None = None) -> dict:
    """Run the job on shard `shard` of the day (split given) or on the whole day (split None)."""
    lay = Layout(root)
    name = f"shard-{shard}" if job != "stats" else "day-stats"
    done = read_json(lay.marker(day, name))
    if done is not None:
        return dict(done, resumed=True)   # done by an earlier run: none of this run's work
    final = lay.part(day, None if job in jobs.WHOLE_DAY_JOBS else shard)
    folder = os.path.dirname(final)
    os.makedirs(folder, exist_ok=True)
    clear_temps(folder)
    tmp = temp_name(final)
    t0 = time.perf_counter()
    if split is not None:
        from itchflow.scale.split import load_map

        src, seq_path = lay.shard_file(day, shard), lay.seq_file(day, shard)
        span = (split["first_timestamp_ns"], split["last_timestamp_ns"])
        shard_of = load_map(root, day)
    else:
        src, seq_path, span, shard_of = source, None, None, None
    if crash_once is not None:
        _maybe_crash(crash_once, tmp)
    try:
        summary = jobs.run_job(job, src, tmp, symbols, options, seq_path=seq_path, shard=shard,
                               shard_of=shard_of, day_span=span)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    publish(tmp, final)
    summary.update(shard=shard, seconds=time.perf_counter() - t0, worker=_worker_name())
    write_json(lay.marker(day, name), summary)
    return summary


def finish_day(split: dict | None, parts: list[dict], source: str, root: str, day: str, job: str,
               keep_scratch: bool = False) -> dict:
    """Write the day's summary beside its data, the day's marker, and drop its scratch files."""
    lay = Layout(root)
    done = read_json(lay.marker(day, "day"))
    if done is not None:
        return done
    anomalies: dict[str, int] = {}
    skipped: dict[str, int] = {}  # lobster: messages that made no row, by reason
    other = [p["other_stocks_anomalies"] for p in parts if "other_stocks_anomalies" in p]
    for p in parts:
        for k, v in p.get("anomalies", {}).items():
            # every shard applies the day's R messages: one shard's count of those is the day's
            anomalies[k] = max(anomalies.get(k, 0), v) if k in BROADCAST_ANOMALIES else anomalies.get(k, 0) + v
        for k, v in p.get("skipped", {}).items():
            skipped[k] = skipped.get(k, 0) + v
    breaks = split.get("broadcast_breaks", 0) if split is not None else 0
    if breaks and len(parts) > 1 and job in WHOLE_DAY_BOOK_JOBS and "unknown_match" in anomalies:
        # every shard got each B with locate 0 and all but the one holding its trade counted it
        # unknown: what is left is the B's no shard could match, as one process counts them
        left = anomalies["unknown_match"] - (len(parts) - 1) * breaks
        if left > 0:
            anomalies["unknown_match"] = left
        else:
            del anomalies["unknown_match"]
    if split is not None:
        messages, by_type, unknown = split["messages"], split["by_type"], split["unknown_by_type"]
    else:
        messages = sum(p["messages"] for p in parts)
        by_type = parts[0].get("by_type", {}) if parts else {}
        unknown = parts[0].get("unknown_by_type", {}) if parts else {}
    summary = {
        "date": day, "source": source, "job": job, "shards": len(parts),
        "messages": messages, "by_type": by_type, "unknown_by_type": unknown,
        "anomalies": anomalies, "rows": sum(p["rows"] for p in parts),
        "seconds": {
            "split": split["seconds"] if split is not None else 0.0,
            "compute": sum(p.get("compute_seconds", 0.0) for p in parts),
            "write": sum(p.get("write_seconds", 0.0) for p in parts),
            "tasks": (split["seconds"] if split is not None else 0.0) + sum(p["seconds"] for p in parts),
            "longest_shard": max((p["seconds"] for p in parts), default=0.0),
        },
        "shard_rows": [p["rows"] for p in parts],
    }
    if split is not None:
        summary["first_timestamp_ns"] = split["first_timestamp_ns"]
        summary["last_timestamp_ns"] = split["last_timestamp_ns"]
        summary["shard_messages"] = split["shard_messages"]
    if job == "stats" and parts:
        summary["stats"] = parts[0]["info"]
    # a capture's counters (gaps, duplicates, malformed packets): read by the split, or by the
    # one task of a day that was not split
    capture = split.get("capture") if split is not None else (parts[0].get("capture") if parts else None)
    if capture:
        summary["capture"] = capture
    if skipped:
        summary["skipped"] = skipped
    if other:   # --symbols: the anomalies are the chosen stocks'; the others' are a total
        summary["other_stocks_anomalies"] = sum(other)
    write_json(lay.summary(day), summary)
    write_json(lay.marker(day, "day"), summary)
    if not keep_scratch:
        shutil.rmtree(lay.scratch(day), ignore_errors=True)
    return summary


def _maybe_crash(marker: str, tmp: str) -> None:
    """Fault-test hook: the first task to find `marker` absent creates it, leaves a half-written
    output behind and kills its worker process (os._exit: no cleanup, as a crash)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    with open(tmp, "wb") as f:
        f.write(b"PAR1 half written")
    os._exit(17)


def _worker_name() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().name
    except (ImportError, ValueError):
        return None


def warm_kernels() -> float:
    """Compile (or load from Numba's cache) the kernels a batch uses, on a tiny day."""
    import numpy as np

    from itchflow.book.books import Books
    from itchflow.decode.encoder import encode_message
    from itchflow.decode.reader import read, stats
    from itchflow.wire import shard as S
    from itchflow.wire.itch import LENGTH_BY_BYTE

    t0 = time.perf_counter()
    day = b"".join([
        encode_message("S", timestamp=1, event_code="O"),
        encode_message("R", stock_locate=1, timestamp=2, stock="WARM"),
        encode_message("A", stock_locate=1, timestamp=3, order_reference_number=1, buy_sell_indicator="B",
                       shares=100, stock="WARM", price=10_000),
        encode_message("E", stock_locate=1, timestamp=4, order_reference_number=1, executed_shares=100,
                       match_number=1),
    ])
    buf = np.frombuffer(day, np.uint8)
    out = np.empty((2, S.MAX_MESSAGE_BYTES), np.uint8)
    seqs = np.empty((2, 8), np.uint64)
    S.split_by_locate(buf, 0, len(buf), np.int64(1), S.modulo_map(2), S.broadcast_mask("SR"),
                      np.array(LENGTH_BY_BYTE), out, np.zeros(2, np.int64), seqs, np.zeros(2, np.int64),
                      np.zeros(256, np.int64), S.new_state())
    stats(buf)
    read(buf)
    books = Books(table=1024)
    books.record()
    books.apply(buf)
    books.take_events()
    import pyarrow.compute  # noqa: F401  (the writers' imports, paid once here, not in a task)
    import pyarrow.parquet  # noqa: F401
    return time.perf_counter() - t0


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - dask is optional; tasks run without it in one process
    _WorkerPlugin = object


class WarmKernels(_WorkerPlugin):
    """Worker plugin: every worker (a restarted one too) loads the kernels once at start."""

    name = "itchflow-warm-kernels"
    idempotent = True  # already registered on this cluster (an earlier batch): keep it

    def setup(self, worker=None):
        warm_kernels()
