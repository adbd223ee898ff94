"""Reassemble the ITCH stream carried by MoldUDP64 packets in a capture.

A capture holds packets in arrival order, possibly from both A and B lines, with repeats,
holes and reordering. Here they are put in (session, sequence) order and each message is
kept once: the result is BinaryFILE-framed bytes plus runs of consecutive sequence numbers,
and counters for everything not delivered (duplicates, holes, heartbeats, end-of-session
markers, malformed packets). The live receiver (mold_receiver) handles the same cases as
a state machine over time; a capture is all there at once, so here it is a sort.

The stream is planned, not copied: the plan is, per packet that contributes, which bytes of
the capture it gives and where they fall in the stream (a segment), so the stream is copied
out in pieces of bounded size as it is read (``MoldCapture.pieces``). A full day's capture
(10-15 GB) then costs its packet index in memory, not a second copy of the day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from itchflow.errors import ITCHFormatError
from itchflow.hw.endian import be16, be64
from itchflow.hw.memcopy import copy_bytes
from itchflow.hw.populate import POPULATE_OUTPUT_BYTES, populate_in_background
from itchflow.protocol.mold.codec import BLOCKS_OK, MALFORMED_TEXT, SHORT_HEADER, malformed_text, walk_blocks
from itchflow.wire.binaryfile import next_message
from itchflow.wire.moldudp64 import (
    END_OF_SESSION_COUNT,
    HEADER_SIZE,
    HEARTBEAT_COUNT,
    MAX_SEQUENCE,
    SESSION_OFFSET,
    SESSION_SIZE,
    read_header,
)
from itchflow.wire.pcap import REC_FRAGMENT, REC_NOT_UDP, REC_SNAPPED, REC_UDP, REC_UNSUPPORTED, PacketTable

# Packet kinds after indexing. UNSEQUENCED: a data packet with sequence 0, which is not a
# MoldUDP64 data sequence (anonymised captures blank it): kept in capture order, never
# de-duplicated, since nothing says which messages are the same.
DATA, HEARTBEAT, END_OF_SESSION, MALFORMED, NOT_UDP, UNSEQUENCED = 0, 1, 2, 3, 4, 5
_BAD_SEQUENCE = 64   # beside walk_blocks' codes (why[] holds either)
_MALFORMED_TEXT = {
    **MALFORMED_TEXT,
    SHORT_HEADER: "UDP payload shorter than the 20-byte MoldUDP64 header",
    _BAD_SEQUENCE: "sequence number past 2**63 - 2**16 (no feed reaches it; its gap would not fit a count)",
}
assert SESSION_SIZE == 10   # the session is kept as two integers: 8 bytes + 2 bytes


@njit(nogil=True, cache=True)
def index_packets(buf, off, length, outcome, kind, why, sess_hi, sess_lo, seq, count):
    """Classify each packet and read its MoldUDP64 header; validate its message blocks."""
    for i in range(off.shape[0]):
        if outcome[i] != REC_UDP:
            kind[i] = NOT_UDP
            continue
        p = off[i]
        end = p + length[i]
        ok, s, c = read_header(buf, p, end)
        if not ok:
            kind[i] = MALFORMED
            why[i] = SHORT_HEADER
            continue
        sess_hi[i] = be64(buf, p + SESSION_OFFSET)
        sess_lo[i] = be16(buf, p + SESSION_OFFSET + 8)
        seq[i] = s
        count[i] = c
        if s > np.uint64(MAX_SEQUENCE):  # as the live receiver: a bad packet, not a gap of 2**63
            kind[i] = MALFORMED
            why[i] = _BAD_SEQUENCE
            continue
        if c == HEARTBEAT_COUNT:
            kind[i] = HEARTBEAT
            continue
        if c == END_OF_SESSION_COUNT:
            kind[i] = END_OF_SESSION
            continue
        status, _ = walk_blocks(buf, p + HEADER_SIZE, end, c, c)
        if status != BLOCKS_OK:
            kind[i] = MALFORMED
            why[i] = status   # walk_blocks' codes are the keys of _MALFORMED_TEXT
        else:
            kind[i] = UNSEQUENCED if s == 0 else DATA


@njit(nogil=True, cache=True)
def plan_in_order(packets, length, seq, count, run_offset, run_seq, run_session, session, seg_out, seg_file,
                  seg_packet, seg_seq, off, w, runs, segs):
    """Plan every message of ``packets`` (validated data packets) at stream offset w on, in
    the order given, nothing dropped: one run and one segment per packet. Returns (w, runs,
    segs, messages)."""
    messages = 0
    for oi in range(packets.shape[0]):
        i = packets[oi]
        q = off[i] + HEADER_SIZE
        run_offset[runs] = w
        run_seq[runs] = seq[i]
        run_session[runs] = session[i]
        runs += 1
        seg_out[segs] = w
        seg_file[segs] = q
        seg_packet[segs] = i
        seg_seq[segs] = seq[i]
        segs += 1
        w += off[i] + length[i] - q
        messages += count[i]
    return w, runs, segs, messages


@njit(nogil=True, cache=True)
def plan_stream(buf, order, off, length, kind, session, seq, count, run_offset, run_seq, run_session,
                seg_out, seg_file, seg_packet, seg_seq, totals):
    """Plan each message once, in (session, sequence) order, as a stream of segments.

    order: packet indices sorted by (session, sequence, arrival).
    runs: where each run of consecutive sequence numbers starts in the stream (a run starts
    where a segment does, or is empty). segments: for each packet that contributes, where
    its first kept block lands in the stream, where it sits in the capture (it runs to the
    packet's end: repeats only come first in a packet), the packet's index and the first
    kept message's sequence number. totals: int64[5] += (messages, duplicate messages,
    gaps, missing messages, data packets used). Returns (stream bytes, runs, segments).

    A heartbeat or end-of-session packet announces the next sequence number; one hole is
    one gap however many heartbeats fall inside it, and a hole still open when the session
    ends (announced but never delivered) is counted then.
    """
    w = 0
    runs = 0
    segs = 0
    cur_session = -1
    expected = np.uint64(0)
    announced = np.uint64(0)
    for oi in range(order.shape[0] + 1):
        i = order[oi] if oi < order.shape[0] else -1
        if i >= 0:
            k = kind[i]
            if k != DATA and k != HEARTBEAT and k != END_OF_SESSION:
                continue
        if i < 0 or session[i] != cur_session:
            if cur_session >= 0 and announced > expected:  # hole left open at the session's end
                totals[2] += 1
                totals[3] += np.int64(announced - expected)
            if i < 0:
                break
            cur_session = session[i]
            expected = seq[i]
            announced = seq[i]
            run_offset[runs] = w
            run_seq[runs] = expected
            run_session[runs] = cur_session
            runs += 1
        s = seq[i]
        if k != DATA:
            if s > announced:
                announced = s
            continue
        totals[4] += 1
        q = off[i] + HEADER_SIZE
        end = off[i] + length[i]
        kept = False
        for _ in range(count[i]):
            _, body, m = next_message(buf, q, end)   # validated by index_packets
            if s < expected:
                totals[1] += 1
            else:
                if s > expected:
                    totals[2] += 1
                    totals[3] += np.int64(s - expected)
                    expected = s
                    run_offset[runs] = w
                    run_seq[runs] = expected
                    run_session[runs] = cur_session
                    runs += 1
                if not kept:   # the rest of the packet is kept from here
                    seg_out[segs] = w
                    seg_file[segs] = q
                    seg_packet[segs] = i
                    seg_seq[segs] = s
                    segs += 1
                    kept = True
                    w += end - q
                expected += np.uint64(1)
                totals[0] += 1
            q = body + m
            s += np.uint64(1)
        if s > announced:
            announced = s
    return w, runs, segs


@njit(nogil=True, cache=True)
def gather(buf, seg_out, seg_file, k0, k1, out):
    """Copy segments k0..k1-1 (consecutive in the stream) into out, from out[0]; seg_out has
    the stream's end after its last segment."""
    base = seg_out[k0]
    for k in range(k0, k1):
        n = seg_out[k + 1] - seg_out[k]
        copy_bytes(out, seg_out[k] - base, buf, seg_file[k], n)


@dataclass
class CaptureStats:
    """Everything about a capture that is not an ITCH message delivered once."""

    packets: int = 0
    data_packets: int = 0
    heartbeats: int = 0
    end_of_session: int = 0
    messages: int = 0
    duplicate_messages: int = 0
    gaps: int = 0
    missing_messages: int = 0
    malformed_packets: int = 0
    unsequenced_packets: int = 0      # data packets of sequence 0: kept in capture order, not de-duplicated
    unsequenced_messages: int = 0
    deduplicated: bool = True         # False: every data packet's messages, in capture order
    not_udp: int = 0
    ip_fragments: int = 0
    snapped: int = 0
    unsupported: int = 0
    sessions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# A piece of the stream (``MoldCapture.pieces``) is at most this long, unless one packet is
# longer: a fresh array each, so what a reader keeps of one is never overwritten.
PIECE_BYTES = 8 << 20


@dataclass
class MoldCapture:
    """A capture's ITCH stream, planned: segments of the capture in stream order, and runs of
    consecutive sequence numbers. The stream is ``size`` bytes of BinaryFILE framing."""

    buf: np.ndarray           # uint8: the capture itself (the segments' bytes are read from it)
    size: int                 # bytes in the stream
    run_offset: np.ndarray    # int64: where each run starts in the stream (ends where the next starts)
    run_sequence: np.ndarray  # uint64: sequence number of each run's first message
    run_session: np.ndarray   # int64: index into stats.sessions
    stats: CaptureStats
    segment_out: np.ndarray     # int64: where a packet's kept messages start in the stream (then the end) ...
    segment_file: np.ndarray    # int64: ... and where they are in the capture file
    segment_packet: np.ndarray  # int64: that packet's index (0-based) in the capture
    segment_sequence: np.ndarray  # uint64: the sequence number of its first kept message

    def locate(self, stream_offset: int) -> tuple[int | None, int | None]:
        """(capture file offset, 1-based packet number) of a byte of the stream."""
        k = int(np.searchsorted(self.segment_out[:-1], stream_offset, side="right")) - 1
        if k < 0:
            return None, None
        return (int(self.segment_file[k] + stream_offset - self.segment_out[k]),
                int(self.segment_packet[k]) + 1)

    def pieces(self, max_bytes: int | None = None):
        """(bytes, first sequence, session name, stream offset) of each piece of the stream, in
        order: whole packets' kept messages, at most max_bytes (default PIECE_BYTES) or one
        packet, never across two runs, each a fresh uint8 array."""
        max_bytes = PIECE_BYTES if max_bytes is None else int(max_bytes)
        ends = np.append(self.run_offset[1:], self.size)
        out_of = self.segment_out
        for a, b, run_session in zip(self.run_offset, ends, self.run_session):
            session = self.stats.sessions[int(run_session)]
            k0 = int(np.searchsorted(out_of[:-1], a))   # a run starts where a segment does
            k1 = int(np.searchsorted(out_of[:-1], b))
            while k0 < k1:
                # as many segments as fit in max_bytes from here, at least one
                k = max(k0 + 1, min(k1, int(np.searchsorted(out_of, out_of[k0] + max_bytes, side="right")) - 1))
                out = np.empty(int(out_of[k] - out_of[k0]), np.uint8)
                if out.nbytes >= POPULATE_OUTPUT_BYTES:  # fresh memory: fault it in on the other core meanwhile
                    populate_in_background(out)
                gather(self.buf, out_of, self.segment_file, k0, k, out)
                yield out, int(self.segment_sequence[k0]), session, int(out_of[k0])
                k0 = k


def reassemble(buf: np.ndarray, table: PacketTable, source: str, strict: bool = True,
               dedup: bool = True) -> MoldCapture:
    """Plan a capture's ITCH stream from its packet table (see module doc).

    Packets of sequence 0 (not a data sequence: anonymised captures) are unsequenced: all
    their messages are kept, in capture order, after the sequenced ones. dedup=False keeps
    every data packet's messages in capture order (A and B copies both, no gap accounting).
    """
    n = len(table)
    kind = np.empty(n, np.int8)
    why = np.zeros(n, np.int8)
    sess_hi = np.zeros(n, np.uint64)
    sess_lo = np.zeros(n, np.uint64)
    seq = np.zeros(n, np.uint64)
    count = np.zeros(n, np.int64)
    index_packets(buf, table.payload_offset, table.payload_length, table.outcome,
                  kind, why, sess_hi, sess_lo, seq, count)
    stats = CaptureStats(packets=n)
    bad = np.flatnonzero(kind == MALFORMED)
    stats.malformed_packets = len(bad)
    if strict and len(bad):
        i = int(bad[0])
        text, at = _MALFORMED_TEXT[int(why[i])], int(table.payload_offset[i])
        if int(why[i]) in MALFORMED_TEXT and int(why[i]) != SHORT_HEADER:   # name the block
            _, at = walk_blocks(buf, at + HEADER_SIZE, at + int(table.payload_length[i]), int(count[i]),
                                int(count[i]))
            text = malformed_text(int(why[i]), buf, int(at))
        raise ITCHFormatError(f"malformed MoldUDP64 packet: {text}", source=source, packet=i + 1, offset=int(at))
    stats.not_udp = table.count(REC_NOT_UDP)
    stats.ip_fragments = table.count(REC_FRAGMENT)
    stats.snapped = table.count(REC_SNAPPED)
    stats.unsupported = table.count(REC_UNSUPPORTED)
    stats.data_packets = int(np.count_nonzero((kind == DATA) | (kind == UNSEQUENCED)))
    stats.unsequenced_packets = int(np.count_nonzero(kind == UNSEQUENCED))
    stats.unsequenced_messages = int(count[kind == UNSEQUENCED].sum())
    stats.deduplicated = bool(dedup)
    stats.heartbeats = int(np.count_nonzero(kind == HEARTBEAT))
    stats.end_of_session = int(np.count_nonzero(kind == END_OF_SESSION))

    mold = (kind == DATA) | (kind == HEARTBEAT) | (kind == END_OF_SESSION) | (kind == UNSEQUENCED)
    idx = np.flatnonzero(mold)
    # Sessions in order of first appearance.
    keys = np.stack([sess_hi[idx], sess_lo[idx]], axis=1)
    uniq, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    session = np.full(n, -1, np.int64)
    session[idx] = rank[inverse.ravel()]
    names = [""] * len(uniq)
    for u, r in zip(uniq, rank):
        raw = int(u[0]).to_bytes(8, "big") + int(u[1]).to_bytes(SESSION_SIZE - 8, "big")
        names[int(r)] = raw.decode("ascii", "replace").rstrip(" \x00")
    stats.sessions = names
    if dedup:
        sequenced = idx[kind[idx] != UNSEQUENCED]
        order = sequenced[np.lexsort((sequenced, seq[sequenced], session[sequenced]))]
        in_order = idx[kind[idx] == UNSEQUENCED]       # capture order
    else:
        order = idx[:0]
        in_order = idx[(kind[idx] == DATA) | (kind[idx] == UNSEQUENCED)]

    runs_cap = 2 * (len(order) + 1) + len(in_order)  # a sorted packet can open at most two runs
    run_offset = np.empty(runs_cap, np.int64)
    run_seq = np.empty(runs_cap, np.uint64)
    run_session = np.empty(runs_cap, np.int64)
    segs_cap = len(order) + len(in_order)
    seg_out = np.empty(segs_cap + 1, np.int64)
    seg_file = np.empty(segs_cap, np.int64)
    seg_packet = np.empty(segs_cap, np.int64)
    seg_seq = np.empty(segs_cap, np.uint64)
    totals = np.zeros(5, np.int64)
    off, length = table.payload_offset, table.payload_length
    w, runs, segs = plan_stream(buf, order, off, length, kind, session, seq, count, run_offset, run_seq,
                                run_session, seg_out, seg_file, seg_packet, seg_seq, totals)
    stats.messages, stats.duplicate_messages, stats.gaps, stats.missing_messages = (int(x) for x in totals[:4])
    if len(in_order):
        w, runs, segs, messages = plan_in_order(in_order, length, seq, count, run_offset, run_seq, run_session,
                                                session, seg_out, seg_file, seg_packet, seg_seq, off, w, runs,
                                                segs)
        stats.messages += int(messages)
    seg_out[segs] = w
    # Drop empty runs (a session opened by a heartbeat, a hole right at a run start).
    ends = np.append(run_offset[1:runs], w)
    keep = ends > run_offset[:runs]
    return MoldCapture(buf, int(w), run_offset[:runs][keep], run_seq[:runs][keep], run_session[:runs][keep],
                       stats, seg_out[:segs + 1], seg_file[:segs], seg_packet[:segs], seg_seq[:segs])
