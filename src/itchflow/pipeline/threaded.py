"""The ring between two threads of one process, each side one long compiled call (GIL released).

A producer and a consumer in one process that return to Python between compiled calls wait
on each other's hold of the GIL (the interpreter hands it over every 5 ms): a record
published while the consumer's thread waits for the GIL sits there for milliseconds. Here
neither side returns to Python while data flows:

  publish_paced         cuts a buffer of BinaryFILE messages into batch records and publishes
                        each with ``publish.publish_messages`` (the pipeline's compiled cut and
                        publish: memcpy, cycle-counter stamp, one release store), no earlier than
                        its messages are due at ``rate`` messages/s (sleeping, then spinning, on
                        CLOCK_MONOTONIC), until the buffer ends or ``stop[0]`` is set.
  consume_until_closed  polls the ring with acquire loads (``ring.consumer.wait_poll``), applies
                        each record to the books with the pipeline's compiled applier
                        (``consume.apply_records``: publish -> applied ticks per record into the
                        applier's preallocated arrays), validates and commits, until the producer
                        closes the ring. It returns to Python only when the engine or the sample
                        arrays need room (the caller grows them and calls again: it resumes at
                        the exact record), on an error, or after ``idle_ns`` with nothing to read.

``ThreadedRing.run`` drives both from two Python threads (the caller's applies, a new one
publishes); the caller's thread is the consumer, so its CPU clock and system calls are the
receiving side's.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

from itchflow.book import layout as BL
from itchflow.hw.atomics import cpu_pause, read_cycle_counter
from itchflow.hw.syscalls import monotonic_ns, sleep_ns
from itchflow.pipeline import consume as CO
from itchflow.pipeline.publish import OK, OUT_MESSAGES, OUT_POS, batch_cut, publish_messages
from itchflow.ring import consumer as C

STOPPED = 2              # publish_paced: stop[0] was set before the buffer ended
SPIN_BELOW_NS = 20_000   # pacing: sleep while further than this from the due time, then spin

# consume_until_closed returns (kind, code)
K_DONE = 0       # the producer closed the ring and everything was applied
K_IDLE = 1       # nothing to read for idle_ns: check the producer, call again
K_ROOM = 2       # the sample arrays need room for code samples in all
K_APPLY = 3      # apply_records' status (NEED_*: grow the books and call again; else an error)
K_RING = 4       # the ring's code (DETACHED, CORRUPT, PRODUCER_GONE)

# pend: the consumer's read in progress (kept between calls)
PEND_N, PEND_TAKEN = 0, 1


@njit(nogil=True, cache=True, _nrt=False)
def wait_until(due_ns: int) -> None:
    """Return at CLOCK_MONOTONIC due_ns: sleep while far from it, spin the last stretch."""
    while True:
        left = due_ns - monotonic_ns()
        if left <= 0:
            return
        if left > SPIN_BELOW_NS:
            sleep_ns(left - SPIN_BELOW_NS // 2)
        else:
            cpu_pause()


@njit(nogil=True, cache=True, _nrt=False)
def publish_paced(words, data, ps, buf, first_seq, batch_bytes, rate, t0_ns, strategy, timeout_ns, stop, out):
    """Publish buf[out[OUT_POS]:] as batch records of at most batch_bytes of whole messages, each
    published no earlier than t0_ns + (messages before it) / rate seconds (rate <= 0: flat out).
    out as for publish_messages (records, messages, position reached). Returns OK, STOPPED,
    publish.BAD_FRAMING (published up to the bad bytes) or a negative ring code."""
    end = len(buf)
    pos = out[OUT_POS]
    while pos < end:
        if stop[0] != 0:
            return STOPPED
        # where this record ends: the same cut publish_messages makes, so it publishes one record
        p, n = batch_cut(buf, pos, end, batch_bytes)
        if rate > 0.0:
            wait_until(t0_ns + np.int64(out[OUT_MESSAGES] * 1e9 / rate))
        r = publish_messages(words, data, ps, buf, pos, p if n > 0 else end, first_seq + out[OUT_MESSAGES], pos, 0,
                             batch_bytes, strategy, timeout_ns, out)
        if r != OK:
            return r
        pos = out[OUT_POS]
    return OK


@njit(nogil=True, cache=True)
def consume_until_closed(words, data, cs, copy_buf, off, lens, typ, pend, strategy, idle_ns, st, hand_off,
                         applied, received, orders, order_words, levels, ladder, books, stocks,
                         anomalies, trade_log, matches, trades_out, bbo_out, l2_out, ctl, type_counts, wanted):
    """Poll, apply, validate, commit until the producer closes the ring. Returns (kind, code):
    see K_*. A read interrupted by K_ROOM / K_APPLY (NEED_*) is resumed by the next call."""
    while True:
        n = pend[PEND_N]
        if n == 0:
            n = C.wait_poll(words, data, cs, len(off), copy_buf, off, lens, typ, strategy, idle_ns)
            if n == 0:
                return K_IDLE, 0
            if n < 0:
                if n == C.PRODUCER_CLOSED:
                    C.commit(words, cs)
                    return K_DONE, 0
                return K_RING, n
            pend[PEND_N] = n
            pend[PEND_TAKEN] = read_cycle_counter()
        if st[CO.S_SAMPLES] + n > len(hand_off):
            return K_ROOM, st[CO.S_SAMPLES] + n
        status = CO.apply_records(data, off, lens, typ, n, pend[PEND_TAKEN], st, hand_off, applied, received,
                                  orders, order_words, levels, ladder, books, stocks, anomalies, trade_log, matches,
                                  trades_out, bbo_out, l2_out, ctl, type_counts, wanted)
        if status != BL.OK:
            return K_APPLY, status
        pend[PEND_N] = 0
        if C.validate_read(words, cs) == C.DETACHED:   # the records were used in place: intact?
            return K_RING, C.DETACHED
        if C.commit(words, cs) == C.DETACHED:
            return K_RING, C.DETACHED


class ThreadedRing:
    """One ring, this process as both its producer (a thread) and its consumer (the caller).

    ``run(buf, rate)`` publishes ``buf`` (BinaryFILE messages from sequence 1) through the ring
    in records of at most ``batch_bytes`` and applies them to ``applier``'s books; it returns
    when the producer has closed the ring and the consumer has applied everything."""

    IDLE_NS = 100_000_000   # the consumer looks at the producer thread this often when idle

    def __init__(self, ring, applier, consumer: str, batch_bytes: int, wait: str = "yield",
                 consumer_wait: str | None = None):
        from itchflow.pipeline.publish import BatchPublisher

        self.ring = ring
        self.applier = applier
        self.reader = ring.reader(consumer, wait=consumer_wait or wait)
        if self.reader._joining and not self.reader._finish_join():
            raise RuntimeError(f"{ring.path}: consumer {consumer!r} could not join (a live producer elsewhere?)")
        self.writer = ring.writer(wait=wait)
        self.publisher = BatchPublisher(self.writer, batch_bytes)   # checks batch_bytes against the ring
        n = len(self.reader._off)
        self.off, self.lens, self.typ = (np.zeros(n, np.int64) for _ in range(3))
        self.copy_buf = np.zeros(0, np.uint8)
        self.pend = np.zeros(2, np.int64)
        self.stop = np.zeros(1, np.int64)
        self.failure: list = []
        self.seconds = 0.0

    # -- producer thread
    def _produce(self, buf, rate: float) -> None:
        from itchflow.pipeline.publish import BAD_FRAMING

        w, pub = self.writer, self.publisher
        try:
            r = publish_paced(self.ring.words, self.ring.data, w.ps, buf, 1, pub.batch_bytes, float(rate or 0.0),
                              monotonic_ns(), w.strategy, w.timeout_ns, self.stop, pub.out)
            if r < 0:
                w.check(r, "publish")
            if r == BAD_FRAMING:
                pub.bad_framing = True
        except BaseException as e:   # noqa: BLE001 - reported by the consumer side
            self.failure.append(e)
        finally:
            w.close()

    # -- the caller's thread
    def run(self, buf: np.ndarray, rate: float | None = None) -> None:
        import time

        b = self.applier.books
        a = self.applier
        a._room(max(16, len(buf) // max(self.publisher.batch_bytes // 2, 1) + 16))
        args = (self.ring.words, self.ring.data, self.reader.cs, self.copy_buf, self.off, self.lens, self.typ,
                self.pend, self.reader.strategy, self.IDLE_NS)
        th = threading.Thread(target=self._produce, args=(buf, rate), name="itchflow-ring-producer", daemon=True)
        t0 = time.perf_counter()
        th.start()
        try:
            while True:
                kind, code = consume_until_closed(
                    *args, a.st, a.hand_off, a.applied, a.received, b.order_rows, b.order_words, b.levels, b.ladder,
                    b.books, b.stocks, b.anomaly_counts, b.trade_log, b.matches, b.events.trades, b.events.bbo,
                    b.events.l2, b.ctl, b.type_counts, b.wanted)
                if kind == K_DONE:
                    break
                if kind == K_IDLE:
                    if not th.is_alive() and self.failure:
                        break
                elif kind == K_ROOM:
                    a._room(int(code) - int(a.st[CO.S_SAMPLES]))
                elif kind == K_APPLY and 0 < code < BL.ERR_FIRST:
                    b.make_room(int(code))
                elif kind == K_APPLY:
                    self._raise_apply(int(code))
                else:
                    self._raise_ring(int(code))
            self.seconds = time.perf_counter() - t0
        finally:
            self.stop[0] = 1
            self.reader.close(leave=True)   # a producer still blocked on a full ring goes on at once
            th.join(60)
        b.events.sync_from(b.ctl)
        b.next_sequence = int(a.st[CO.S_EXPECTED])
        if self.failure:
            raise RuntimeError(f"ring producer thread failed: {self.failure[0]}") from self.failure[0]
        if th.is_alive():
            raise RuntimeError(f"{self.ring.path}: the producer thread did not end")

    def _raise_apply(self, status: int) -> None:
        from itchflow.ring.reader import Batch

        n = int(self.pend[PEND_N])
        batch = Batch(self.ring.data, self.off[:n], self.lens[:n], self.typ[:n], self.ring.path, -1, 0)
        self.applier._raise(batch, status)

    def _raise_ring(self, code: int) -> None:
        raise self.reader.error_for(code)   # (the Reader's own words for the ring's codes)

    @property
    def messages_published(self) -> int:
        return int(self.publisher.out[OUT_MESSAGES])

    def close(self) -> None:
        self.reader.close(leave=True)
        self.writer.close()
