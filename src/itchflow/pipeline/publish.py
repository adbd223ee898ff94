"""Producer side: cut a buffer of BinaryFILE-framed messages into batch records and publish them.

One compiled call per source chunk: it walks the framing (lengths only: validating the
messages is the consumer's job, where the engine names the offset of anything wrong), claims
a record per batch, writes the header words, copies the messages with one memcpy, reads the
cycle counter and publishes with one release store. Bytes that do not frame (a zero length, a
truncated last message) go out as a final short record, so the consumer's engine reports
them with their exact offset instead of the producer guessing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from itchflow.hw.atomics import read_cycle_counter
from itchflow.hw.memcopy import copy_bytes
from itchflow.pipeline import batch_layout as B
from itchflow.ring import producer as P
from itchflow.wire.binaryfile import LENGTH_PREFIX, next_message
from itchflow.wire.binaryfile import OK as WALK_OK

CONSUMER = "book"        # the consumer name the pipeline reads as, registered when a ring is made
FEED_CAPACITY = 16 << 20  # ring data bytes when a feed ring is created

MAX_FRAMED = LENGTH_PREFIX + 0xFFFF   # the largest BinaryFILE message with its length prefix

OK = 0
BAD_FRAMING = 1          # published up to the bad bytes (included, as the last record)
# negative: the ring's codes (P.TIMEOUT, P.TOO_BIG)

OUT_RECORDS, OUT_MESSAGES, OUT_POS = 0, 1, 2
_NO_LIMIT = 1 << 62


@njit(inline="always", nogil=True, cache=True)
def batch_cut(buf, pos, end, batch_bytes):
    """(end, messages) of the batch record starting at pos: whole messages up to batch_bytes,
    at least one; (pos, 0) when the bytes at pos do not frame."""
    p = pos
    n = 0
    limit = min(end, pos + batch_bytes)
    while p < end:   # not ``while True``: see binaryfile.WALK_LOOP
        walk, body, length = next_message(buf, p, end)
        if walk != WALK_OK or (body + length > limit and n > 0):
            break
        p = body + length
        n += 1
    return p, n


@njit(nogil=True, cache=True, _nrt=False)
def publish_messages(words, data, ps, buf, pos, end, first_seq, source_offset, receive_ns,
                     batch_bytes, strategy, timeout_ns, out, limit=_NO_LIMIT):
    """Publish buf[pos:end] as batch records of at most batch_bytes of messages (at least one
    message each), starting no record at or past limit (OK with out[OUT_POS] < end: call
    again from there). source_offset is buf[pos]'s offset in the source (-1: none).
    out[OUT_RECORDS/OUT_MESSAGES] += what went out; out[OUT_POS] = where it stopped.
    Returns OK, BAD_FRAMING, or a negative ring code (nothing more published)."""
    dw = ps[P.P_DATA_WORD]
    seq = first_seq
    start = pos
    status = OK
    while pos < end and pos < limit:
        p, n = batch_cut(buf, pos, end, batch_bytes)
        if n == 0:   # the bytes at pos do not frame: hand the consumer just enough to name them
            status = BAD_FRAMING
            p = min(end, pos + MAX_FRAMED)
        payload = p - pos
        o = P.claim(words, ps, B.HEADER_BYTES + payload, B.RECORD_TYPE)
        if o == P.FULL:
            o = P.claim_wait(words, ps, B.HEADER_BYTES + payload, B.RECORD_TYPE, strategy, timeout_ns)
        if o < 0:
            out[OUT_POS] = pos
            return o
        h = dw + (o >> 3)   # payloads start 8-byte aligned: header fields are whole words
        words[h + B.W_FIRST_SEQUENCE] = seq
        words[h + B.W_SOURCE_OFFSET] = source_offset + (pos - start) if source_offset >= 0 else -1
        words[h + B.W_RECEIVE_NS] = receive_ns
        words[h + B.W_MESSAGE_COUNT] = n
        copy_bytes(data, o + B.HEADER_BYTES, buf, pos, payload)
        words[h + B.W_PUBLISH_TSC] = read_cycle_counter()
        P.commit(words, ps)   # the release store orders every word above before the record
        out[OUT_RECORDS] += 1
        out[OUT_MESSAGES] += n
        seq += n
        pos = p
        if status != OK:
            break
    out[OUT_POS] = pos
    return status


class BatchPublisher:
    """Publishes message buffers through a ring ``Writer`` as batch records; counts them."""

    def __init__(self, writer, batch_bytes: int = 64 << 10):
        limit = writer.ring.max_payload - B.HEADER_BYTES
        if limit < MAX_FRAMED:
            raise ValueError(f"{writer.ring.path}: max_payload {writer.ring.max_payload} cannot hold the "
                             f"largest framed message plus the {B.HEADER_BYTES}-byte batch header")
        self.writer = writer
        self.batch_bytes = max(1, min(int(batch_bytes), limit))
        self.out = np.zeros(3, np.int64)
        self.bytes = 0
        self.bad_framing = False

    @property
    def records(self) -> int:
        return int(self.out[OUT_RECORDS])

    @property
    def messages(self) -> int:
        return int(self.out[OUT_MESSAGES])

    def publish(self, buf: np.ndarray, first_sequence: int, source_offset: int = -1,
                receive_ns: int = 0, pos: int = 0, end: int | None = None, limit: int | None = None) -> int:
        """Publish buf[pos:end]; returns the position reached (end unless the framing broke,
        or, with limit, the end of the first record that reaches limit)."""
        end = len(buf) if end is None else end
        w = self.writer
        r = publish_messages(w.ring.words, w.ring.data, w.ps, buf, pos, end, first_sequence,
                             source_offset, receive_ns, self.batch_bytes, w.strategy, w.timeout_ns, self.out,
                             _NO_LIMIT if limit is None else int(limit))
        reached = int(self.out[OUT_POS])
        self.bytes += reached - pos
        w.check(r, "publish")
        if r == BAD_FRAMING:
            self.bad_framing = True
        return reached


def warm_up(ring) -> None:
    """Load the publish kernel now (an empty call publishes nothing), so that a process forked
    afterwards has it and its first batch does not pay for loading it."""
    empty = np.zeros(0, np.uint8)
    publish_messages(ring.words, ring.data, P.new_producer_state(ring.words, ring.geometry), empty, 0, 0, 1, -1, 0,
                     1, 0, 0, np.zeros(3, np.int64))


def feed_max_payload(capacity: int) -> int:
    """Room for the largest framed message (2 + 65535 bytes) behind a batch header, and for
    batches up to an eighth of the ring; the ring allows at most a quarter less two headers."""
    need = B.HEADER_BYTES + MAX_FRAMED
    most = capacity // 4 - 16
    if most < need:
        raise ValueError(f"ring capacity {capacity} is too small for ITCH batches: "
                         f"at least {1 << (4 * need).bit_length()} bytes")
    return min(most, max(need, capacity // 8))


def open_feed(name: str, capacity: int = FEED_CAPACITY, batch_bytes: int = 64 << 10,
              consumers=(CONSUMER,), wait: str = "yield") -> BatchPublisher:
    """A publisher into the named ring, created (and left in place for consumers that attach
    later: ``itchflow run --source ring:NAME``) when it does not exist. Close it with
    ``pub.writer.close()`` so that consumers see the end."""
    import os

    from itchflow.ring import Ring, ring_path

    path = ring_path(name)
    ring = None
    if not os.path.exists(path):
        try:
            ring = Ring.create(path, capacity, consumers=list(consumers), keep=True,
                               max_payload=feed_max_payload(capacity))
        except FileExistsError:   # another feed created it meanwhile: its writer decides (RingBusy if live)
            pass
    if ring is None:
        ring = Ring.open(path)
    return BatchPublisher(ring.writer(wait=wait), batch_bytes)
