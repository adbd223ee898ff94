"""Consumer side: apply the batch records of one ring read to the books, in compiled code.

A read returns up to thousands of records; calling ``Books.apply`` on each from Python costs
about 5 us of interpreter work per record, which is most of the time when a network feed
delivers a few dozen messages per packet. Here one compiled call walks every record of the
read: it reads the header words, checks sequence continuity, hands the messages (in place in
the ring: the engine is given the ring's bytes and the record's bounds) to the engine, and
stores the latency samples. It returns to Python only when the engine needs more room (the
driver grows the arrays and resumes at the exact message) or the data is malformed.

Records come from shared memory, so they are input like any other: each record's type,
length and bounds are checked against the batch layout and the bytes actually there before
its header is read, and its message count must equal the messages the engine found in its
bytes (a faulty producer gives a RingFormatError naming the ring and position, never an
out-of-bounds read or absurd counters). The records are used in place in the ring; after a
read is applied, the caller validates that the producer did not detach this consumer (and so
possibly overwrite the read) meanwhile: ``Reader.check_intact``, seqlock style.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.book import layout as BL
from itchflow.book.engine import apply_messages
from itchflow.errors import ITCHFormatError
from itchflow.hw.atomics import read_cycle_counter
from itchflow.hw.endian import le64
from itchflow.hw.syscalls import realtime_ns
from itchflow.pipeline import batch_layout as B
from itchflow.ring.errors import RingFormatError

# st: the consumer's running state and counters (one int64 array, kept between calls)
S_EXPECTED = 0        # sequence expected next (-1 before the first record)
S_GAPS = 1
S_GAP_MESSAGES = 2
S_REPEATS = 3
S_MESSAGES = 4
S_BYTES = 5
S_BATCHES = 6
S_APPLY_TICKS = 7     # cycle-counter ticks inside the engine
S_SAMPLES = 8         # latency samples stored
S_RESUME_RECORD = 9   # where an interrupted call stopped: record index,
S_RESUME_POS = 10     # byte position in the ring's data (-1: the record's start),
S_RESUME_SEQ = 11     # and the sequence of the message there
S_FIELDS = 12

# apply_records' own statuses (negative: the engine's are >= 0): a record the producer could
# not have written correctly. st[S_RESUME_RECORD] names it.
REC_BAD_TYPE = -1
REC_TOO_SHORT = -2
REC_OUT_OF_BOUNDS = -3
REC_BAD_COUNT = -4
REC_BAD_SEQUENCE = -5
RECORD_ERROR_TEXT = {
    REC_BAD_TYPE: "record type is not the ITCH batch type",
    REC_TOO_SHORT: "record shorter than the batch header",
    REC_OUT_OF_BOUNDS: "record reaches outside the ring's data",
    REC_BAD_COUNT: "the header's message count disagrees with the messages in the record's bytes",
    REC_BAD_SEQUENCE: "first sequence number out of range (negative, or so large that the batch would overflow it)",
}
MIN_FRAMED = 3   # the shortest BinaryFILE message: a 2-byte length and a type byte
MAX_FIRST_SEQUENCE = (1 << 63) - (1 << 32)   # first + count (< 2**32 messages) never overflows


def new_state() -> np.ndarray:
    st = np.zeros(S_FIELDS, np.int64)
    st[S_EXPECTED] = -1
    st[S_RESUME_POS] = -1
    return st


@njit(nogil=True, cache=True)
def apply_records(data, offs, lens, types, n, taken, st, hand_off, applied, received,
                  orders, order_words, levels, ladder, books, stocks, anomalies, trade_log, matches,
                  trades_out, bbo_out, l2_out, ctl, type_counts, wanted):
    """Apply records st[S_RESUME_RECORD]..n-1 (payload at data[offs[i]:offs[i]+lens[i]], ring
    record type types[i]).

    taken: cycle counter when the read returned. Latency samples go to hand_off / applied
    (ticks) and received (ns, 0 when the record has no receive time) at st[S_SAMPLES]; the
    caller makes room for n of them. Returns the engine's status: OK when every record is
    applied, else a NEED_* / ERR_* code with st[S_RESUME_*] naming the message, or a REC_*
    code (st[S_RESUME_RECORD] naming the record).
    """
    i = st[S_RESUME_RECORD]
    while i < n:
        o = offs[i]
        ln = lens[i]
        st[S_RESUME_RECORD] = i
        if types[i] != B.RECORD_TYPE:
            return REC_BAD_TYPE
        if ln < B.HEADER_BYTES:
            return REC_TOO_SHORT
        if o < 0 or o > len(data) - ln:
            return REC_OUT_OF_BOUNDS
        end = o + ln
        first = np.int64(le64(data, o + 8 * B.W_FIRST_SEQUENCE))
        count = np.int64(le64(data, o + 8 * B.W_MESSAGE_COUNT))
        if count < 0 or count > (ln - B.HEADER_BYTES) // MIN_FRAMED:
            return REC_BAD_COUNT
        if first < 0 or first > MAX_FIRST_SEQUENCE:
            return REC_BAD_SEQUENCE
        if st[S_RESUME_POS] < 0:      # first visit of this record
            pos = o + B.HEADER_BYTES
            seq = first
            exp = st[S_EXPECTED]
            if exp >= 0 and first != exp:
                if first > exp:
                    st[S_GAPS] += 1
                    st[S_GAP_MESSAGES] += first - exp
                else:
                    st[S_REPEATS] += 1
        else:
            pos = st[S_RESUME_POS]
            seq = st[S_RESUME_SEQ]
        t0 = read_cycle_counter()
        status, pos, useq = apply_messages(data, pos, end, np.uint64(seq), orders, order_words, levels, ladder,
                                           books, stocks, anomalies, trade_log, matches, trades_out, bbo_out,
                                           l2_out, ctl, type_counts, wanted)
        done = read_cycle_counter()
        st[S_APPLY_TICKS] += done - t0
        if status != BL.OK:
            st[S_RESUME_POS] = pos
            st[S_RESUME_SEQ] = np.int64(useq)
            return status
        if np.int64(useq) - first != count:
            st[S_RESUME_POS] = -1
            return REC_BAD_COUNT
        k = st[S_SAMPLES]
        # 0 (a producer in another language that keeps no cycle count, as the layout allows): no
        # hand-off time (it was reported as 11 hours: probe 43). A count a little ahead of this
        # read (two cores' counters a few ticks apart) stays a sample: dropped, it biased the rest.
        ptsc = np.int64(le64(data, o + 8 * B.W_PUBLISH_TSC))
        hand_off[k] = taken - ptsc if ptsc != 0 else 0
        applied[k] = done - taken
        rx = np.int64(le64(data, o + 8 * B.W_RECEIVE_NS))
        received[k] = realtime_ns() - rx if rx != 0 else 0
        st[S_SAMPLES] = k + 1
        st[S_EXPECTED] = first + count
        st[S_MESSAGES] += count
        st[S_BYTES] += end - o - B.HEADER_BYTES
        st[S_BATCHES] += 1
        st[S_RESUME_POS] = -1
        taken = done
        i += 1
    st[S_RESUME_RECORD] = 0
    return BL.OK


class BatchApplier:
    """Applies ring reads to a ``Books``; keeps the counters and latency samples."""

    def __init__(self, books, source: str):
        self.books = books
        self.source = source
        self.st = new_state()
        self.hand_off = np.zeros(1 << 16, np.int64)
        self.applied = np.zeros(1 << 16, np.int64)
        self.received = np.zeros(1 << 16, np.int64)

    def _room(self, n: int) -> None:
        need = int(self.st[S_SAMPLES]) + n
        if need > len(self.hand_off):
            size = max(need, 2 * len(self.hand_off))
            for name in ("hand_off", "applied", "received"):
                a = getattr(self, name)
                b = np.zeros(size, np.int64)
                b[:len(a)] = a
                setattr(self, name, b)

    def warm_up(self, data: np.ndarray) -> None:
        """Load the compiled code now: a call over no records applies and changes nothing."""
        none = np.zeros(0, np.int64)
        self._apply_records(data, none, none, none, 0, 0)

    def _apply_records(self, data, offsets, lengths, types, n: int, taken: int) -> int:
        b = self.books
        return apply_records(data, offsets, lengths, types, n, taken, self.st, self.hand_off, self.applied,
                             self.received,
                             b.order_rows, b.order_words, b.levels, b.ladder, b.books, b.stocks,
                             b.anomaly_counts, b.trade_log, b.matches, b.events.trades, b.events.bbo, b.events.l2,
                             b.ctl, b.type_counts, b.wanted)

    def apply(self, batch, taken: int, check_intact=None) -> None:
        """Apply every record of a ring read (``Reader.read_batch``) taken at cycle count ``taken``.

        check_intact: called after the read is applied, and before any error in its bytes is
        reported (``Reader.check_intact``): it raises if the records may have been overwritten
        while in use, so that a paused, detached consumer is reported as exactly that, never
        as bad data in a good source."""
        n = len(batch)
        if n == 0:
            return
        self._room(n)
        b = self.books
        while True:
            status = self._apply_records(batch.data, batch.offsets, batch.lengths, batch.types, n, taken)
            if status == BL.OK:
                break
            if status < 0 or status >= BL.ERR_FIRST:
                if check_intact is not None:
                    check_intact()
                self._raise(batch, status)
            b.make_room(status)
        if check_intact is not None:
            check_intact()
        b.events.sync_from(b.ctl)
        b.next_sequence = int(self.st[S_EXPECTED])

    def _raise(self, batch, status: int) -> None:
        st = self.st
        i = int(st[S_RESUME_RECORD])
        if status < 0:
            st[S_RESUME_RECORD] = 0
            st[S_RESUME_POS] = -1
            pos = batch.record_position(i)
            where = f"ring position {pos}" if pos is not None else "in a copied read"
            raise RingFormatError(
                f"{batch.ring}: bad batch record {batch.first_record + i} "
                f"({where}, type {int(batch.types[i])}, {int(batch.lengths[i])} bytes): "
                f"{RECORD_ERROR_TEXT[status]} (a faulty producer or a stray write into the ring)")
        o = int(batch.offsets[i])
        h = batch.data[o:o + B.HEADER_BYTES].view(np.int64)
        base = int(h[B.W_SOURCE_OFFSET])
        where = int(st[S_RESUME_POS]) - o - B.HEADER_BYTES
        # the record's messages before the bad one were applied (the engine stops at it): counted,
        # or a report said none of a batch's were (probe 19)
        st[S_MESSAGES] += int(st[S_RESUME_SEQ]) - int(h[B.W_FIRST_SEQUENCE])
        st[S_BYTES] += where
        self.books.next_sequence = int(st[S_RESUME_SEQ])
        self.books.events.sync_from(self.books.ctl)
        # the source's place, and the ring's: the bytes came through it, and a stray write
        # into the ring reads the same as a fault in the source (probe 25: a good file blamed)
        pos = batch.record_position(i)
        via = (f"; read from {batch.ring} record {batch.first_record + i}"
               + (f" at ring position {pos}" if pos is not None else "")
               + ": if the source is whole there, the ring's copy was damaged") if batch.ring else ""
        raise ITCHFormatError(BL.error_text(batch.data, int(st[S_RESUME_POS]), o + int(batch.lengths[i]), status,
                                            int(st[S_RESUME_SEQ])) + via,
                              source=self.source, offset=(base if base >= 0 else 0) + where)

    def samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = int(self.st[S_SAMPLES])
        rx = self.received[:k]
        return self.hand_off[:k], self.applied[:k], rx[rx != 0]   # (a hand-off of 0: its batch carried no time)
