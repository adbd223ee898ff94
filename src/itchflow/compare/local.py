"""The rows that need no network: in-process (the baseline), the ring between two threads,
the ring between two processes (``run_pipeline``), and tail (a file another process appends to).

Each row runs the day flat out once (throughput, receive-side CPU, system calls, context
switches, the books), then the paced prefix at the day's ``rate`` in packet-sized batches
(latency of the hand-off itself) and the same prefix as one burst (latency with queueing).
"""

from __future__ import annotations

import os
import time

import numpy as np

from itchflow.compare.children import how_it_ended, start_child
from itchflow.compare.digest import ready_books
from itchflow.compare.measure import Window
from itchflow.compare.row import FAILED, Row, latency

RING_CAPACITY = 16 << 20
FLAT_BATCH_BYTES = 64 << 10


def _window(day) -> Window:
    return Window(day.count_syscalls)


def _finish(row: Row, w: Window) -> None:
    row.cpu_ns, row.system_ns = w.usage.cpu_ns, w.usage.system_ns
    row.voluntary, row.involuntary = w.usage.voluntary, w.usage.involuntary
    row.syscalls = w.syscalls
    row.syscalls_error = w.error or ("" if w.count_syscalls else "perf not used")


# ---- in-process ------------------------------------------------------------------------------

def inprocess(day) -> Row:
    from itchflow.sources.chunk import map_file

    row = Row("inprocess", transport="memory-mapped file")
    books = ready_books()
    buf = map_file(day.path)
    w = _window(day)
    w.start()
    t0 = time.perf_counter()
    books.apply(buf, 1)
    row.seconds = time.perf_counter() - t0
    w.stop()
    _finish(row, w)
    row.messages = books.messages   # no packets: the engine reads the mapped day whole
    row.book_ns, row.book_clock = row.cpu_ns, "thread CPU (the whole window is the engine)"
    row.code_syscalls, row.code_syscalls_what = 0, "none on the path (the file is mapped before)"
    day.judge_books(row, books)
    row.latency["paced"] = latency([], "paced", "no hand-off")
    return row


# ---- the ring between two threads -----------------------------------------------------------

# the consumer's wait, as the two-process pipeline's (spin, then sched_yield): on a loaded
# machine a yield can cost a time slice (the paced p50 rose to ~0.5 ms here with two other
# busy processes); "block" (futex) measured 16-26 us p50 either way
CONSUMER_WAIT = "yield"


def _ring_threads_run(day, path: str, batch_bytes: int, rate: float | None, measure: bool):
    """One run: a producer thread publishes the file and this thread applies the ring's records
    to new books, each side in one compiled call that releases the GIL (pipeline.threaded).
    Returns (books, applier, seconds, window, ring counters)."""
    from itchflow.pipeline.consume import BatchApplier
    from itchflow.pipeline.publish import CONSUMER, feed_max_payload
    from itchflow.pipeline.threaded import ThreadedRing
    from itchflow.ring import Ring
    from itchflow.sources.chunk import map_file

    books = ready_books()
    ring = Ring.create(day.ring_path("threads"), RING_CAPACITY, consumers=[CONSUMER],
                       max_payload=feed_max_payload(RING_CAPACITY))
    w = _window(day) if measure else None
    try:
        applier = BatchApplier(books, "ring_threads")
        pair = ThreadedRing(ring, applier, CONSUMER, batch_bytes, wait="yield", consumer_wait=CONSUMER_WAIT)
        buf = map_file(path)
        try:
            if w:
                w.start()
            pair.run(buf, rate)
            if w:
                w.stop()
        finally:
            if w:
                w.close()
            pair.close()
        snap = ring.snapshot()["producer"]
    finally:
        ring.close()
        ring.unlink()
    return books, applier, pair.seconds, w, {"full_waits": snap["full_waits"], "wakeups": snap["wakeups"]}


def _handoff_ns(applier, tpn: float) -> np.ndarray:
    hand, applied, _ = applier.samples()
    return (hand + applied) / tpn


def ring_threads(day) -> Row:
    from itchflow.pipeline.consume import S_APPLY_TICKS

    row = Row("ring_threads", transport="shared-memory ring, one process")
    _ring_threads_run(day, day.warm_path, day.packet_bytes, None, False)   # loads the compiled loops
    books, applier, seconds, w, counters = _ring_threads_run(day, day.path, FLAT_BATCH_BYTES, None, True)
    row.seconds = seconds
    _finish(row, w)
    row.messages, row.packets = books.messages, int(applier.st[6])
    row.book_ns, row.book_clock = applier.st[S_APPLY_TICKS] / day.tpn, "cycle counter (wall) inside the engine"
    row.counters = counters
    row.code_syscalls_what = "sched_yield only while waiting (no count kept by the ring)"
    day.judge_books(row, books)
    for kind, rate in (("paced", day.rate), ("queueing", None)):
        _, ap, _, _, _ = _ring_threads_run(day, day.prefix_path, day.packet_bytes, rate, False)
        row.samples[kind] = _handoff_ns(ap, day.tpn)
        row.latency[kind] = latency(row.samples[kind], kind, "record: publish -> applied")
        # the two halves: publish -> the consumer's poll returned it (the ring and the wake-up),
        # and that poll -> the record's last message applied (the engine, and records ahead of it)
        hand, applied, _ = ap.samples()
        row.latency[kind]["publish_to_taken"] = latency(hand / day.tpn, kind, "record: publish -> polled")
        row.latency[kind]["taken_to_applied"] = latency(applied / day.tpn, kind, "record: polled -> applied")
    return row


# ---- the ring between two processes (the pipeline) ------------------------------------------

def ring_processes(day) -> Row:
    from itchflow.pipeline import run_pipeline

    row = Row("ring_processes", transport="shared-memory ring, two processes")
    books = ready_books()
    w = _window(day)
    started = []

    def progress(messages: int, nbytes: int) -> None:
        if not started:           # the consumer thread, at its first batch: open the window
            started.append(messages)
            w.start()

    rep = run_pipeline(day.path, books=books, batch_bytes=FLAT_BATCH_BYTES, progress=progress,
                       ring=day.ring_path("pipeline"))
    w.stop()
    _finish(row, w)
    row.messages, row.packets = rep.messages, rep.batches
    row.seconds = rep.seconds
    # the CPU window opened after the first batch was applied: leave that batch out of both
    first = rep.samples["consume_to_applied"][:1]
    row.cpu_messages = rep.messages - started[0]
    row.book_ns = rep.apply_ns_per_message * rep.messages - float(first.sum())
    row.book_clock = "cycle counter (wall) inside the engine"
    row.code_syscalls_what = "sched_yield only while waiting (no count kept by the ring)"
    day.judge_books(row, books)
    for kind, rate in (("paced", day.rate), ("queueing", None)):
        r = run_pipeline(day.prefix_path, books=ready_books(), batch_bytes=day.packet_bytes, rate=rate,
                         ring=day.ring_path("pipeline"))
        row.samples[kind] = r.samples["publish_to_consume"] + r.samples["consume_to_applied"]
        row.latency[kind] = latency(row.samples[kind], kind, "record: publish -> applied")
    return row


# ---- tail: polling a file another process appends to (fstat + pread) ------------------------------

def _writer_main(src: str, dst: str, piece_bytes: int, rate: float | None, conn) -> None:
    """Append src to dst in whole-message pieces of at most piece_bytes (at ``rate`` messages/s,
    or flat out); send back (end offset, CLOCK_MONOTONIC ns) of every piece after its write."""
    from itchflow.sources.chunk import map_file
    from itchflow.wire.binaryfile import whole_messages_end

    data = map_file(src)
    ends, stamps = [], []
    conn.recv()                      # go
    t0 = time.monotonic_ns()
    pos = sent = 0
    fd = os.open(dst, os.O_WRONLY | os.O_APPEND)
    try:
        while pos < len(data):
            stop, n = whole_messages_end(data, pos, min(len(data), pos + piece_bytes))
            if n == 0:
                raise ValueError(f"{src}: bad framing at byte {pos}")
            if rate:
                due = t0 + int(sent / rate * 1e9)
                while time.monotonic_ns() < due:
                    left = due - time.monotonic_ns()
                    if left > 500_000:
                        time.sleep((left - 300_000) / 1e9)
            os.write(fd, data[pos:stop])
            ends.append(stop)
            stamps.append(time.monotonic_ns())
            pos, sent = stop, sent + n
    finally:
        os.close(fd)
    conn.send((np.array(ends, np.int64), np.array(stamps, np.int64)))


def _tail_run(day, src: str, piece_bytes: int, rate: float | None, measure: bool):
    from itchflow.sources.tail import Tail

    dst = day.temp_file("tail")
    open(dst, "wb").close()
    books = ready_books()
    books.apply(np.zeros(0, np.uint8))
    proc, parent = start_child(day, _writer_main, (src, dst, piece_bytes, rate), "compare-tail-writer")
    positions, applied_at = [], []
    total = os.path.getsize(src)
    tail = Tail(dst, idle_timeout=10.0)
    w = _window(day) if measure else None
    try:
        if w:
            w.start()
        t0 = time.perf_counter()
        try:
            parent.send("go")
        except OSError:
            raise RuntimeError(f"starting the tail writer: {how_it_ended(proc)}") from None
        for chunk in tail:
            books.apply(chunk.data, chunk.first_sequence)
            positions.append(tail.position)
            applied_at.append(time.monotonic_ns())
            if tail.position >= total:    # a prefix has no end-of-messages event to stop at
                break
        seconds = time.perf_counter() - t0
        if w:
            w.stop()
        try:
            ends, stamps = parent.recv() if parent.poll(10) else (None, None)
        except (EOFError, OSError):   # the writer is gone: it sends its log last
            ends = None
        if ends is None:
            raise RuntimeError(f"the tail writer's log of pieces: {how_it_ended(proc, 0)}")
    finally:
        if w:
            w.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        os.unlink(dst)
    # each piece is applied by the first chunk that reached its end
    pos, at = np.array(positions, np.int64), np.array(applied_at, np.int64)
    k = np.searchsorted(pos, ends, "left")
    ok = k < len(pos)
    lat = at[k[ok]] - stamps[ok]
    return books, seconds, w, tail, len(ends), lat


def tail(day) -> Row:
    row = Row("tail", transport="file in the page cache, writer in another process")
    books, seconds, w, t, pieces, _ = _tail_run(day, day.path, FLAT_BATCH_BYTES, None, True)
    row.seconds = seconds
    _finish(row, w)
    row.messages, row.packets = books.messages, pieces
    # fstat per poll, a sleep per idle poll, a pread per growth (the reader copies new bytes
    # into its own buffer: a view of a mapping would die of SIGBUS if the file were truncated)
    row.code_syscalls = 2 * t.polls + t.reads
    row.code_syscalls_what = (f"{t.polls:,} fstat polls (+ a nanosleep each when idle) and {t.reads:,} preads")
    row.counters = {"polls": t.polls, "reads": t.reads}
    day.judge_books(row, books)
    for kind, rate in (("paced", day.rate), ("queueing", None)):
        _, _, _, _, _, lat = _tail_run(day, day.prefix_path, day.packet_bytes, rate, False)
        row.samples[kind] = lat.astype(np.float64)
        row.latency[kind] = latency(row.samples[kind], kind, "piece: write() returned -> applied")
    if row.status != FAILED and not len(row.samples["paced"]):
        row.reason = "no latency samples"
    return row
