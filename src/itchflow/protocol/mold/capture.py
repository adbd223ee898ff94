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

A day's capture holds 10^8 packets or more, and its index and plan some 80 bytes a packet. A
capture whose packets arrive in (session, sequence) order but for a window of STREAM_WINDOW
packets (one line; A and B lines, one's copy filling the other's loss a little late) need not
be sorted whole: past STREAM_PACKETS packets it is checked as it is walked, sorted within the
window, keeping only counters (``plan_capture``), and walked again part by part as it is read,
each part planned as it comes (``CapturePlan``). Its memory then does not grow with the
capture. Any other capture is planned whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

import numpy as np
from numba import njit

from itchflow.errors import ITCHFormatError
from itchflow.hw.endian import be16, be64
from itchflow.hw.memcopy import copy_bytes
from itchflow.hw.populate import POPULATE_OUTPUT_BYTES, populate_in_background
from itchflow.protocol.mold.codec import (BLOCKS_OK, CONTROL_WITH_BYTES, MALFORMED_TEXT, SHORT_HEADER, malformed_text,
                                           walk_blocks)
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
from itchflow.wire.pcap import (
    REC_BAD_FRAME, REC_FRAGMENT, REC_NOT_UDP, REC_SNAPPED, REC_UDP, REC_UNSUPPORTED, PacketTable, Part, packet_parts,
    packet_table,
)
from itchflow.wire.sequence_runs import SequenceRuns

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


# Sessions told apart by the indexing pass itself (a table searched last-match first): a
# feed has one session a day, A and B lines share it. More than this many in one capture
# (hostile, or a capture of many days) are numbered by a sort instead.
FAST_SESSIONS = 256
INDEX_BATCH = 1 << 16   # packets indexed a pass (``reassemble``)


@njit(inline="always", nogil=True, cache=True)
def _classify(buf, p, end, outcome):
    """(kind, why, sequence, count) of the packet whose UDP payload is buf[p:end]."""
    if outcome != REC_UDP:
        return NOT_UDP, 0, np.uint64(0), 0
    ok, s, c = read_header(buf, p, end)
    if not ok:
        return MALFORMED, SHORT_HEADER, np.uint64(0), 0
    if s > np.uint64(MAX_SEQUENCE):  # as the live receiver: a bad packet, not a gap of 2**63
        return MALFORMED, _BAD_SEQUENCE, s, c
    if c == HEARTBEAT_COUNT or c == END_OF_SESSION_COUNT:
        if end - p != HEADER_SIZE:   # no blocks follow either (its bytes were dropped unsaid: probe 45)
            return MALFORMED, CONTROL_WITH_BYTES, s, c
        return (HEARTBEAT if c == HEARTBEAT_COUNT else END_OF_SESSION), 0, s, c
    status, _ = walk_blocks(buf, p + HEADER_SIZE, end, c, c)
    if status != BLOCKS_OK:
        return MALFORMED, status, s, c   # walk_blocks' codes are the keys of _MALFORMED_TEXT
    return (UNSEQUENCED if s == 0 else DATA), 0, s, c


@njit(inline="always", nogil=True, cache=True)
def _session_key(buf, p):
    """The session of the MoldUDP64 packet at p as (first 8 bytes, last 2)."""
    return be64(buf, p + SESSION_OFFSET), np.uint64(be16(buf, p + SESSION_OFFSET + 8))


@njit(nogil=True, cache=True)
def index_packets(buf, off, length, outcome, kind, why, session, seq, count, known, state, a, b):
    """Classify packets a..b-1 and read their MoldUDP64 headers; validate their message blocks.

    session[i]: the MoldUDP64 packet's session, numbered in order of first appearance (-1
    for the others), the sessions' 10 bytes going to known (uint64[FAST_SESSIONS, 2]: first 8
    bytes, last 2). state (int64[2], carried from one call to the next: start at (0, -1)):
    the number of sessions, -1 once there are more than known holds (session is then left
    to ``session_keys`` and a sort), and the last one matched."""
    nknown = state[0]
    last = state[1]
    for i in range(a, b):
        p = off[i]
        k, w, s, c = _classify(buf, p, p + length[i], outcome[i])
        kind[i] = k
        why[i] = w
        seq[i] = s
        count[i] = c
        session[i] = -1
        if k == NOT_UDP or k == MALFORMED or nknown < 0:
            continue
        hi, lo = _session_key(buf, p)
        if last < 0 or known[last, 0] != hi or known[last, 1] != lo:
            last = -1
            for j in range(nknown):
                if known[j, 0] == hi and known[j, 1] == lo:
                    last = j
                    break
            if last < 0:
                if nknown == known.shape[0]:
                    nknown = -1
                    continue
                known[nknown, 0] = hi
                known[nknown, 1] = lo
                last = nknown
                nknown += 1
        session[i] = last
    state[0] = nknown
    state[1] = last


@njit(nogil=True, cache=True)
def session_keys(buf, off, kind, hi, lo):
    """The session bytes (first 8, last 2) of every MoldUDP64 packet (kind not NOT_UDP or
    MALFORMED), for numbering sessions by a sort."""
    for i in range(off.shape[0]):
        if kind[i] != NOT_UDP and kind[i] != MALFORMED:
            hi[i], lo[i] = _session_key(buf, off[i])


@njit(nogil=True, cache=True)
def in_stream_order(packets, kind, session, seq):
    """Whether packets (ascending indices) are already in stream order: sequenced ones by
    (session, sequence), unsequenced ones after them (ties in arrival order). A capture of one
    line usually is, and A and B lines interleaved that keep pace too."""
    for k in range(1, packets.shape[0]):
        a = packets[k - 1]
        b = packets[k]
        ua = kind[a] == UNSEQUENCED
        ub = kind[b] == UNSEQUENCED
        if ua and not ub:
            return False
        if not ua and not ub and (session[a] > session[b] or (session[a] == session[b] and seq[a] > seq[b])):
            return False
    return True


@njit(inline="always", nogil=True, cache=True)
def _open_run(run_offset, run_seq, run_session, runs, w, seq, session):
    """Run number ``runs`` starts at stream offset w with this sequence number; returns runs + 1."""
    run_offset[runs] = w
    run_seq[runs] = seq
    run_session[runs] = session
    return runs + 1


@njit(inline="always", nogil=True, cache=True)
def _add_segment(seg_out, seg_file, seg_packet, seg_seq, segs, w, q, packet, seq):
    """Segment number ``segs``: packet's bytes from capture offset q to its end, at stream
    offset w, the first of them of this sequence number; returns segs + 1."""
    seg_out[segs] = w
    seg_file[segs] = q
    seg_packet[segs] = packet
    seg_seq[segs] = seq
    return segs + 1


# The planner's state, carried from one call of ``plan_packets`` to the next (a capture planned
# a part at a time): int64 words ...
P_STREAM = 0       # bytes of stream planned so far in the part (the next segment's offset)
P_RUNS = 1         # runs and segments written into the output arrays
P_SEGS = 2
P_SESSION = 3      # the session being planned (-1: none yet)
P_HOLES = 4        # holes recorded in this session (check mode)
P_ORDERLY = 5      # 0 once the order given is found not to give the sorted stream (check mode)
P_UNSEQUENCED = 6  # 1 once a packet was taken whole (unsequenced, or dedup=False)
P_TAKERS = 7       # packets that gave new messages in this session (check mode; ``takers``)
P_WORDS = 8
# ... and uint64 words: the next sequence number expected, the highest announced, the
# session's first, its end (the sequence number of its first end-of-session packet taken;
# NO_END before one), and the numbers of the messages seen past that end: the first and one
# past the last (0 before any).
Q_EXPECTED, Q_ANNOUNCED, Q_FIRST, Q_END, Q_PAST_FIRST, Q_PAST_END = 0, 1, 2, 3, 4, 5
Q_WORDS = 6
NO_END = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
# totals (int64[T_WORDS]): messages, duplicate messages, gaps, missing messages, data packets
# used, packets after the end of session, messages numbered past the end (each number once)
T_WORDS = 7
# Holes a session may have for its file order to be checked; more and the capture is sorted.
HOLES_MAX = 4096
# The last packets that gave new messages, remembered to check a later repeat against (check
# mode): a repeat reaching further back than they go sorts the capture.
TAKERS_MAX = 4096


class PlanState:
    """``plan_packets``' state (P_* words, Q_* sequence numbers) and, in check mode, the holes
    of the session being planned."""

    def __init__(self) -> None:
        self.words = np.zeros(P_WORDS, np.int64)
        self.words[P_SESSION] = -1
        self.words[P_ORDERLY] = 1
        self.sequences = np.zeros(Q_WORDS, np.uint64)
        self.sequences[Q_END] = NO_END
        self.holes = np.zeros((HOLES_MAX, 2), np.uint64)
        self.takers = np.zeros((TAKERS_MAX, 2), np.uint64)   # (first message taken, packet's number)

    @property
    def orderly(self) -> bool:
        return bool(self.words[P_ORDERLY])

    def start_part(self) -> None:
        """The next call plans a part of its own: its stream offsets, runs and segments from 0."""
        self.words[P_STREAM] = 0
        self.words[P_RUNS] = 0
        self.words[P_SEGS] = 0


@njit(inline="always", nogil=True, cache=True)
def _in_a_hole(holes, n, lo, hi):
    """Whether [lo, hi) meets one of the first n holes (ascending, disjoint [start, end) rows)."""
    a, b = 0, n
    while a < b:   # the first hole ending after lo
        m = (a + b) >> 1
        if holes[m, 1] <= lo:
            a = m + 1
        else:
            b = m
    return a < n and holes[a, 0] < hi


@njit(inline="always", nogil=True, cache=True)
def _taken_from_a_later_start(takers, n, lo, hi):
    """Whether a message of [lo, hi) (a repeat numbered from lo) was taken from a packet whose
    own number is above lo: sorted, this repeat comes first and its copy is the one taken (the
    same bytes, from another packet: probe 40's property found the stream's packets differ).
    takers: the last (up to TAKERS_MAX) of n packets that gave new messages, ascending by the
    first message each gave; one of an earlier packet's messages is below lo whenever the
    oldest remembered gave lo + 1 or below, else not known: True (sorted, to be sure)."""
    kept = min(n, TAKERS_MAX)
    oldest = n - kept
    if n > TAKERS_MAX and takers[oldest % TAKERS_MAX, 0] > lo + np.uint64(1):
        return True
    a, b = 0, kept   # the first remembered that gave a message above lo
    while a < b:
        m = (a + b) >> 1
        if takers[(oldest + m) % TAKERS_MAX, 0] <= lo:
            a = m + 1
        else:
            b = m
    while a < kept:
        j = (oldest + a) % TAKERS_MAX
        if takers[j, 0] >= hi:
            return False
        if takers[j, 1] > lo:
            return True
        a += 1
    return False


@njit(nogil=True, cache=True)
def plan_packets(buf, order, off, length, kind, session, seq, count, dedup, check, run_offset, run_seq,
                 run_session, run_messages, seg_out, seg_file, seg_packet, seg_seq, totals, state, seqs,
                 holes, takers):
    """Plan each message of the packets ``order`` (indices), taken in that order, as a stream of
    segments; state, seqs and holes (``PlanState``) carry on from the call before.

    Sequenced packets (data, heartbeat, end of session) with dedup: each message once, in
    (session, sequence) order, given packets in that order. A run of consecutive sequence
    numbers starts where a session does and at each hole; a heartbeat or end-of-session packet
    announces the next number, one hole is one gap however many heartbeats fall inside it, and
    a hole still open when the session ends is counted then (``close_session`` for the last).
    Unsequenced packets, and with dedup=False every data packet, are taken whole, a run each.

    An end-of-session packet ends its session at its number (MoldUDP64): a data packet from
    that number on, or a heartbeat past it, is counted (totals[5]) and not delivered, as the
    live receiver does. An end of session below messages already delivered (a packet of
    smaller number whose messages run past it) is contradicted by them: it is counted (totals[5])
    and not taken as the end, whatever the order (sorted, it comes before data it would cut
    that the capture may hold from before it).

    segments: for each packet that contributes, where its first kept block lands in the stream
    (seg_out), where it sits in the capture (seg_file; it runs to the packet's end: repeats
    only come first in a packet), the packet's index and the first kept message's number.
    runs: where each starts in the stream (a run starts where a segment does, or is empty), its
    first number and session; run_messages (zeroed by the caller) its messages. totals:
    int64[T_WORDS] += (messages, duplicate messages, gaps, missing messages, data packets used,
    packets after the end of session, messages numbered past the end: each number once, as
    the packets come; a packet past the end below one counted already adds only what is new).

    check: order is the capture's file order (sorted within a window: ``_Window``);
    state[P_ORDERLY] is cleared, and planning stops, at the first packet that makes it plan
    other than (session, sequence) order would: a session seen again after another, a data
    packet after one taken whole, a packet whose messages fall in a hole already counted or
    before the session's first number or whose messages were taken from a packet numbered above
    its own (``_taken_from_a_later_start``), a heartbeat before it, more than HOLES_MAX holes in a
    session, an end of session below what was delivered or a data packet across one taken. An
    order that passes gives the stream of the sorted capture."""
    w = state[P_STREAM]
    runs = state[P_RUNS]
    segs = state[P_SEGS]
    cur_session = state[P_SESSION]
    nholes = state[P_HOLES]
    ntakers = state[P_TAKERS]
    expected = seqs[Q_EXPECTED]
    announced = seqs[Q_ANNOUNCED]
    first = seqs[Q_FIRST]
    ended = seqs[Q_END]
    past_first = seqs[Q_PAST_FIRST]
    past_end = seqs[Q_PAST_END]
    for oi in range(order.shape[0]):
        i = order[oi]
        k = kind[i]
        if k == UNSEQUENCED or (k == DATA and not dedup):   # taken whole, in the order given
            q = off[i] + HEADER_SIZE
            runs = _open_run(run_offset, run_seq, run_session, runs, w, seq[i], session[i])
            segs = _add_segment(seg_out, seg_file, seg_packet, seg_seq, segs, w, q, i, seq[i])
            w += off[i] + length[i] - q
            run_messages[runs - 1] = count[i]
            totals[0] += count[i]
            state[P_UNSEQUENCED] = 1
            continue
        if not dedup or (k != DATA and k != HEARTBEAT and k != END_OF_SESSION):
            continue
        s = seq[i]
        c = np.uint64(count[i]) if k == DATA else np.uint64(0)
        if check and (session[i] < cur_session or (k == DATA and state[P_UNSEQUENCED] != 0)):
            state[P_ORDERLY] = 0
            break
        if session[i] != cur_session:
            if cur_session >= 0 and announced > expected:  # hole left open at the session's end
                totals[2] += 1
                totals[3] += np.int64(announced - expected)
            cur_session = session[i]
            expected = s
            announced = s
            first = s
            ended = NO_END
            past_first = np.uint64(0)
            past_end = np.uint64(0)
            nholes = 0
            ntakers = 0
            runs = _open_run(run_offset, run_seq, run_session, runs, w, expected, cur_session)
        if k == END_OF_SESSION and s < ended:
            if expected > s:   # messages numbered past it were delivered: they contradict it
                if check:      # (or, in file order, it came late: sorted, it may come first)
                    state[P_ORDERLY] = 0
                    break
                # taken, it dropped the data after it in sequence order, which may have come
                # before it in the file (probe 29): counted, not taken as the end
                totals[5] += 1
                continue
            if check and announced > s:   # a heartbeat past it came first: sorted, it comes after the
                state[P_ORDERLY] = 0      # end and is counted past it (read in parts, it announced a gap)
                break
            ended = s
        elif (k == DATA and s >= ended) or (k == HEARTBEAT and s > ended):
            # past the end of session: counted, not delivered; its messages too, each number once
            # (the other line's copy is a repeat), counted exactly in sorted order: in file order
            # they must run on from the first (else sorted, as a hole or a step back would be)
            if check and c > 0 and past_end != 0 and (s < past_first or s > past_end):
                state[P_ORDERLY] = 0
                break
            totals[5] += 1
            if c > 0:   # (a heartbeat past the end carries none: it set the bound, probe 40)
                if past_end == 0:
                    past_first = s
                    past_end = s
                if s + c > past_end:
                    totals[6] += np.int64(s + c - max(s, past_end))
                    past_end = s + c
            continue
        elif check and k == DATA and s + c > ended:   # across an end already taken: sorted, it
            state[P_ORDERLY] = 0                      # would have come before the end
            break
        if check and s < expected:
            # taken after larger numbers: only repeats of what was delivered leave the stream as
            # the sorted capture's (a heartbeat matters only below the session's first number)
            if s < first or (k == DATA and (_in_a_hole(holes, nholes, s, min(s + c, expected))
                                            or _taken_from_a_later_start(takers, ntakers, s, min(s + c, expected)))):
                state[P_ORDERLY] = 0
                break
        if k != DATA:
            if s > announced:
                announced = s
            continue
        totals[4] += 1
        if s + c <= expected:   # every message a repeat (the other line's copy): nothing read
            totals[1] += np.int64(c)
            s += c
        else:
            q = off[i] + HEADER_SIZE
            if s < expected:   # repeats first, then new messages: step over the repeats' blocks
                skip = np.int64(expected - s)
                totals[1] += skip
                for _ in range(skip):
                    _, body, m = next_message(buf, q, off[i] + length[i])   # validated by index_packets
                    q = body + m
                s = expected
            elif s > expected:   # a hole before this packet
                if check:
                    if nholes == HOLES_MAX:
                        state[P_ORDERLY] = 0
                        break
                    holes[nholes, 0] = expected
                    holes[nholes, 1] = s
                    nholes += 1
                totals[2] += 1
                totals[3] += np.int64(s - expected)
                expected = s
                runs = _open_run(run_offset, run_seq, run_session, runs, w, expected, cur_session)
            # the rest of the packet is kept from q
            if check:   # (ascending by the first message: each packet that gives one gives the next)
                takers[ntakers % TAKERS_MAX, 0] = s
                takers[ntakers % TAKERS_MAX, 1] = seq[i]
                ntakers += 1
            segs = _add_segment(seg_out, seg_file, seg_packet, seg_seq, segs, w, q, i, s)
            w += off[i] + length[i] - q
            kept = np.int64(seq[i] + c - s)
            totals[0] += kept
            run_messages[runs - 1] += kept
            expected = seq[i] + c
            s = expected
        if s > announced:
            announced = s
    state[P_STREAM] = w
    state[P_RUNS] = runs
    state[P_SEGS] = segs
    state[P_SESSION] = cur_session
    state[P_HOLES] = nholes
    state[P_TAKERS] = ntakers
    seqs[Q_EXPECTED] = expected
    seqs[Q_ANNOUNCED] = announced
    seqs[Q_FIRST] = first
    seqs[Q_END] = ended
    seqs[Q_PAST_FIRST] = past_first
    seqs[Q_PAST_END] = past_end


def _count_totals(stats: "CaptureStats", totals: np.ndarray) -> None:
    """The counters of ``plan_packets``' totals (T_WORDS) that the capture's stats report."""
    stats.messages, stats.duplicate_messages, stats.gaps, stats.missing_messages = (int(x) for x in totals[:4])
    stats.after_end_of_session = int(totals[5])
    stats.messages_after_end_of_session = int(totals[6])


def close_session(plan: PlanState, totals: np.ndarray) -> None:
    """The end of the sequenced packets: a hole the last session announced but never delivered
    is a gap."""
    expected, announced = int(plan.sequences[Q_EXPECTED]), int(plan.sequences[Q_ANNOUNCED])
    if plan.words[P_SESSION] >= 0 and announced > expected:
        totals[2] += 1
        totals[3] += announced - expected
    plan.words[P_SESSION] = -1


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
    after_end_of_session: int = 0     # data packets from a session's end on, heartbeats past it: not delivered
    messages_after_end_of_session: int = 0   # their messages, each sequence number once
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
    bad_frames: int = 0               # whole frames whose IP/UDP lengths do not fit them (pcap.REC_BAD_FRAME)
    unknown_blocks: int = 0           # pcapng blocks of types no reader here knows, skipped (not packets)
    # strict=False: the file ends inside this packet (a capture still being written), which is
    # not read (0: it does not), its bytes present; counted in malformed_packets too
    cut_at_end_packet: int = 0
    cut_at_end_bytes: int = 0
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
    run_session: np.ndarray   # int32: index into stats.sessions
    run_messages: np.ndarray  # int64: messages in each run
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

    @property
    def data(self) -> np.ndarray:
        """The whole stream as one new array (every kept message copied at once: ``pieces`` is
        the bounded way to read it)."""
        out = np.empty(self.size, np.uint8)
        gather(self.buf, self.segment_out, self.segment_file, 0, len(self.segment_file), out)
        return out

    def runs(self):
        """(start, end, first sequence, session name) of each run of the stream, in order."""
        ends = np.append(self.run_offset[1:], self.size)
        for a, b, s, k in zip(self.run_offset, ends, self.run_sequence, self.run_session):
            yield int(a), int(b), int(s), self.stats.sessions[int(k)]

    def pieces(self, max_bytes: int | None = None, on_walked=None, join_runs: bool = False) -> Iterator[Piece]:
        """Each piece of the stream, in order (``Piece``): whole packets' kept messages, at most
        max_bytes (default PIECE_BYTES) or one packet, each a fresh uint8 array.

        A piece holds one run (consecutive sequence numbers), or with join_runs as many whole
        consecutive runs of one session as fit in max_bytes (``Piece.runs`` says where its
        numbers restart): a capture whose every packet is a run of its own (unsequenced, or
        dedup=False) then costs a piece per max_bytes, not one per packet.

        on_walked(offset), if given, is told after each piece that no later piece reads the
        capture before that offset (and on_walked(len(buf), final=True) after the last): a
        mapping's pages there may go."""
        max_bytes = PIECE_BYTES if max_bytes is None else int(max_bytes)
        ends = np.append(self.run_offset[1:], self.size)
        out_of = self.segment_out
        # the lowest capture offset any segment from k on reads (sequence order is nearly file order)
        low = np.minimum.accumulate(self.segment_file[::-1])[::-1] if on_walked is not None else None
        # each run's segments k0..k1-1 (a run starts where a segment does, and ends where the
        # next one starts), found for all runs at once (arrays, not lists: an anonymised
        # capture has a run a packet, 10^8 of them in a day)
        first_segment = np.empty(len(self.run_offset) + 1, np.int64)
        first_segments(self.run_offset, out_of, first_segment)
        end_segment = first_segment[1:]
        groups = np.arange(len(self.run_offset) + 1, dtype=np.int64)   # run r0..r1-1 of a piece: one
        if join_runs:
            n = group_runs(self.run_offset, ends, self.run_session, max_bytes, groups)
            groups = groups[:n + 1]

        def piece(k0: int, k: int, runs: SequenceRuns | None, session: str) -> Piece:
            out = np.empty(int(out_of[k] - out_of[k0]), np.uint8)
            if out.nbytes >= POPULATE_OUTPUT_BYTES:  # fresh memory: fault it in on the other core meanwhile
                populate_in_background(out)
            gather(self.buf, out_of, self.segment_file, k0, k, out)
            if low is not None and k < len(low):
                on_walked(int(low[k]))
            return Piece(out, int(self.segment_sequence[k0]), session, int(out_of[k0]), runs)

        for g in range(len(groups) - 1):
            r0, r1 = int(groups[g]), int(groups[g + 1])
            session = self.stats.sessions[int(self.run_session[r0])]
            if r1 > r0 + 1:   # whole runs, together at most max_bytes
                runs = SequenceRuns.of_runs(self.run_messages[r0:r1], ends[r0:r1] - self.run_offset[r0:r1],
                                            self.run_sequence[r0:r1])
                yield piece(int(first_segment[r0]), int(end_segment[r1 - 1]), runs, session)
                continue
            k0, k1 = int(first_segment[r0]), int(end_segment[r0])
            while k0 < k1:
                # as many segments as fit in max_bytes from here, at least one
                k = k0 + 1 if k1 == k0 + 1 else max(
                    k0 + 1, min(k1, int(np.searchsorted(out_of, out_of[k0] + max_bytes, side="right")) - 1))
                yield piece(k0, k, None, session)
                k0 = k
        if on_walked is not None:
            on_walked(len(self.buf), final=True)


class Piece(NamedTuple):
    """A piece of a capture's stream (``MoldCapture.pieces``)."""

    data: np.ndarray            # uint8, a fresh array: whole packets' kept messages
    first_sequence: int         # its first message's sequence number
    session: str
    offset: int                 # where it starts in the stream
    runs: SequenceRuns | None   # several runs joined: where their numbers restart (else None)


@njit(nogil=True, cache=True)
def first_segments(run_offset, seg_out, out):
    """out[r] = the first segment starting at or after run r's stream offset (both ascending: one
    merge pass), and out[runs] = the number of segments (seg_out has the stream's end last)."""
    k = 0
    nsegs = seg_out.shape[0] - 1
    for r in range(run_offset.shape[0]):
        while k < nsegs and seg_out[k] < run_offset[r]:
            k += 1
        out[r] = k
    out[run_offset.shape[0]] = nsegs


@njit(nogil=True, cache=True)
def group_runs(run_offset, run_end, run_session, max_bytes, first):
    """Group consecutive runs of one session whose bytes together are at most max_bytes (a
    run longer than that is a group of its own): first[g] is group g's first run, and after
    the last group first[groups] the number of runs. Returns the number of groups."""
    n = run_offset.shape[0]
    g = 0
    r = 0
    while r < n:
        first[g] = r
        g += 1
        start = run_offset[r]
        r += 1
        while r < n and run_session[r] == run_session[r - 1] and run_end[r] - start <= max_bytes:
            r += 1
    first[g] = n
    return g


def _sessions_by_sort(buf, off, kind, session) -> np.ndarray:
    """Number the sessions of a capture with too many for the indexing pass's table, in order
    of first appearance, into session; returns their bytes (uint64[n, 2])."""
    mold = np.flatnonzero((kind != NOT_UDP) & (kind != MALFORMED))
    hi, lo = np.zeros(len(kind), np.uint64), np.zeros(len(kind), np.uint64)
    session_keys(buf, off, kind, hi, lo)
    uniq, first, inverse = np.unique(np.stack([hi[mold], lo[mold]], axis=1), axis=0, return_index=True,
                                     return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), np.int32)
    rank[by_first] = np.arange(len(uniq))
    session[mold] = rank[inverse.ravel()]
    return uniq[by_first]


class PacketIndex:
    """The indexing pass (``index_packets``) over a capture's packets, a part at a time: fused
    with the walk that finds them (``wire.pcap.packet_parts``), each part's pages are read
    while they are still mapped in, not faulted back in by a pass of their own. Sessions are
    numbered across parts, in order of first appearance."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []   # (kind, why, session, seq, count) a part
        self.known = np.zeros((FAST_SESSIONS, 2), np.uint64)
        self.state = np.array([0, -1], np.int64)
        self.packets = 0

    def index(self, buf: np.ndarray, off: np.ndarray, length: np.ndarray, outcome: np.ndarray) -> tuple:
        """(kind, why, session, seq, count) of the next packets, whose UDP payloads are
        buf[off:off + length]."""
        n = len(off)
        part = (np.empty(n, np.int8), np.zeros(n, np.int8), np.empty(n, np.int32), np.zeros(n, np.uint64),
                np.zeros(n, np.int32))
        index_packets(buf, off, length, outcome, *part, self.known, self.state, 0, n)
        self.packets += n
        return part

    def add(self, buf: np.ndarray, off: np.ndarray, length: np.ndarray, outcome: np.ndarray) -> None:
        """Index the next packets and keep what was found (``arrays``)."""
        self.parts.append(self.index(buf, off, length, outcome))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(kind, why, session, seq, count) of every packet kept, in order."""
        arrays = tuple(np.concatenate([p[k] for p in self.parts]) if len(self.parts) != 1 else self.parts[0][k]
                       for k in range(5))
        self.parts = []
        return arrays

    @property
    def sessions(self) -> int:
        """Sessions numbered so far; -1 once there were more than FAST_SESSIONS."""
        return int(self.state[0])


def _malformed_error(buf, first: int, off, length, why, count, source: str) -> ITCHFormatError | None:
    """The error for the first malformed packet among these (packet numbers from first), if any."""
    bad = np.flatnonzero(why != 0)
    if not len(bad):
        return None
    i = int(bad[0])
    text, at = _MALFORMED_TEXT[int(why[i])], int(off[i])
    if int(why[i]) in MALFORMED_TEXT and int(why[i]) != SHORT_HEADER:   # name the block
        _, at = walk_blocks(buf, at + HEADER_SIZE, at + int(length[i]), int(count[i]), int(count[i]))
        text = malformed_text(int(why[i]), buf, int(at), int(off[i]) + int(length[i]))
    return ITCHFormatError(f"malformed MoldUDP64 packet: {text}", source=source, packet=first + i + 1, offset=int(at))


def _count_packets(stats: CaptureStats, kind, count, outcome) -> None:
    """Add these packets to the counters of what they are."""
    stats.packets += len(kind)
    stats.malformed_packets += int(np.count_nonzero(kind == MALFORMED))
    for name, code in (("not_udp", REC_NOT_UDP), ("ip_fragments", REC_FRAGMENT), ("snapped", REC_SNAPPED),
                       ("unsupported", REC_UNSUPPORTED), ("bad_frames", REC_BAD_FRAME)):
        setattr(stats, name, getattr(stats, name) + int(np.count_nonzero(outcome == code)))
    unsequenced = kind == UNSEQUENCED
    stats.data_packets += int(np.count_nonzero((kind == DATA) | unsequenced))
    stats.unsequenced_packets += int(np.count_nonzero(unsequenced))
    stats.unsequenced_messages += int(count[unsequenced].sum())
    stats.heartbeats += int(np.count_nonzero(kind == HEARTBEAT))
    stats.end_of_session += int(np.count_nonzero(kind == END_OF_SESSION))


def _session_names(known: np.ndarray) -> list[str]:
    return [(int(hi).to_bytes(8, "big") + int(lo).to_bytes(SESSION_SIZE - 8, "big"))
            .decode("ascii", "replace").rstrip(" \x00") for hi, lo in known]


class _PlanArrays:
    """Output arrays of ``plan_packets`` for up to this many runs and segments."""

    def __init__(self, runs: int, segments: int) -> None:
        self.run_offset = np.empty(runs, np.int64)
        self.run_seq = np.empty(runs, np.uint64)
        self.run_session = np.empty(runs, np.int32)
        self.run_messages = np.zeros(runs, np.int64)
        self.seg_out = np.empty(segments + 1, np.int64)
        self.seg_file = np.empty(segments, np.int64)
        self.seg_packet = np.empty(segments, np.int64)
        self.seg_seq = np.empty(segments, np.uint64)

    def plan(self, buf, order, packets: "Packets", dedup: bool, check: bool, totals, plan: PlanState) -> None:
        plan_packets(buf, order, packets.offset, packets.length, packets.kind, packets.session, packets.seq,
                     packets.count, dedup, check, self.run_offset, self.run_seq, self.run_session,
                     self.run_messages, self.seg_out, self.seg_file, self.seg_packet, self.seg_seq, totals,
                     plan.words, plan.sequences, plan.holes, plan.takers)

    def capture(self, buf, plan: PlanState, stats: CaptureStats) -> MoldCapture:
        """The runs and segments planned, as a MoldCapture (empty runs dropped: a session opened
        by a heartbeat, a hole right at a run's start)."""
        w, runs, segs = (int(plan.words[k]) for k in (P_STREAM, P_RUNS, P_SEGS))
        self.seg_out[segs] = w
        ends = np.append(self.run_offset[1:runs], w)
        keep = ends > self.run_offset[:runs]
        return MoldCapture(buf, w, self.run_offset[:runs][keep], self.run_seq[:runs][keep],
                           self.run_session[:runs][keep], self.run_messages[:runs][keep], stats,
                           self.seg_out[:segs + 1], self.seg_file[:segs], self.seg_packet[:segs], self.seg_seq[:segs])


class Packets(NamedTuple):
    """Packets to plan, a row each: their index in the capture, UDP payload, and index."""

    number: np.ndarray   # int64: the packet's index in the capture (0-based)
    offset: np.ndarray   # int64: its UDP payload in the capture ...
    length: np.ndarray   # int64
    kind: np.ndarray     # int8 and the rest: as PacketIndex.index gives them
    session: np.ndarray
    seq: np.ndarray
    count: np.ndarray

    @classmethod
    def of_part(cls, part: Part, indexed: tuple) -> "Packets":
        kind, _, session, seq, count = indexed
        return cls(np.arange(part.first, part.first + len(part.outcome), dtype=np.int64), part.payload_offset,
                   part.payload_length, kind, session, seq, count)

    def take(self, rows: np.ndarray) -> "Packets":
        return Packets(*(a[rows] for a in self))


def reassemble(buf: np.ndarray, table: PacketTable, source: str, strict: bool = True,
               dedup: bool = True, on_walked=None, index: PacketIndex | None = None) -> MoldCapture:
    """Plan a capture's ITCH stream from its packet table (see module doc), in (session,
    sequence) order: its packets sorted unless they are in that order already.

    index: the packets indexed already, as the table was walked (``PacketIndex``); else they
    are indexed here, and on_walked(offset), if given, is told as the pass goes (front to back)
    how far it has read, and on_walked(len(buf), final=True) at its end: a mapping's pages
    before that offset may go. Planning then reads only packets that are partly repeats.

    Packets of sequence 0 (not a data sequence: anonymised captures) are unsequenced: all
    their messages are kept, in capture order, after the sequenced ones. dedup=False keeps
    every data packet's messages in capture order (A and B copies both, no gap accounting).
    """
    n = len(table)
    off, length = table.payload_offset, table.payload_length
    if index is None:
        index = PacketIndex()
        for a in range(0, n, INDEX_BATCH):   # in passes, telling on_walked how far each has read
            b = min(n, a + INDEX_BATCH)
            index.add(buf, off[a:b], length[a:b], table.outcome[a:b])
            if on_walked is not None and b < n:
                on_walked(int(off[b - 1]))
        if on_walked is not None:
            on_walked(len(buf), final=True)
    known, nsessions = index.known, index.sessions
    kind, why, session, seq, count = index.arrays()
    if len(kind) != n:
        raise ValueError(f"the index holds {len(kind):,} packets, the table {n:,}")
    if strict and (error := _malformed_error(buf, 0, off, length, why, count, source)) is not None:
        raise error
    stats = CaptureStats(deduplicated=bool(dedup))
    _count_packets(stats, kind, count, table.outcome)
    if nsessions < 0:   # too many sessions for the table: numbered by a sort
        known = _sessions_by_sort(buf, table.payload_offset, kind, session)
        nsessions = len(known)
    stats.sessions = _session_names(known[:nsessions])
    if dedup:
        order = np.flatnonzero((kind == DATA) | (kind == HEARTBEAT) | (kind == END_OF_SESSION))
        if not in_stream_order(order, kind, session, seq):
            order = order[np.lexsort((order, seq[order], session[order]))]
        in_order = np.flatnonzero(kind == UNSEQUENCED)       # capture order
    else:
        order = np.zeros(0, np.int64)
        in_order = np.flatnonzero((kind == DATA) | (kind == UNSEQUENCED))
    # a run opens where a session does, or at a hole (at most one a sorted packet: its first
    # message kept), or at each packet taken in capture order
    out = _PlanArrays(nsessions + len(order) + len(in_order), len(order) + len(in_order))
    plan, totals = PlanState(), np.zeros(T_WORDS, np.int64)
    packets = Packets(np.zeros(0, np.int64), off, length, kind, session, seq, count)   # rows: the capture's
    out.plan(buf, order, packets, dedup, False, totals, plan)
    close_session(plan, totals)
    out.plan(buf, in_order, packets, dedup, False, totals, plan)
    _count_totals(stats, totals)
    return out.capture(buf, plan, stats)


# Captures of more packets than this are planned a part at a time where their file order
# allows (``plan_capture``): a day's capture holds 10^8 packets or more, and a plan of the whole
# costs some 80 bytes a packet.
STREAM_PACKETS = 1 << 20
# Read a part at a time, a part is about this many bytes of the capture: walked, indexed and
# copied out while its pages are in the caches (and resident only that long).
STREAM_PART_BYTES = 8 << 20
# Planned a part at a time, packets are taken in (session, sequence, arrival) order within a
# window: the last this many of a part (in that order) are held back and sorted in with the
# next part's. A packet arriving up to this many packets after later-numbered ones (the other
# line's copy of one this line lost, jitter between the lines) still finds its place.
STREAM_WINDOW = 4096


def _window_key(packets: Packets, i: int) -> tuple[bool, int, int]:
    """Packet i's place in ``_Window``'s order (before its arrival)."""
    unsequenced = bool(packets.kind[i] == UNSEQUENCED)
    return unsequenced, 0 if unsequenced else int(packets.session[i]), int(packets.seq[i])


class _Window:
    """File order sorted within a sliding window (STREAM_WINDOW): ``take`` each part's packets,
    then ``flush``; each returns the batches of packets to plan next, with the order to plan
    each in. Unsequenced packets keep capture order after the sequenced ones of the window;
    without dedup every packet is taken in capture order, none held back."""

    def __init__(self, dedup: bool) -> None:
        self.dedup = dedup
        self.held: Packets | None = None   # sorted

    def take(self, packets: Packets) -> list[tuple[Packets, np.ndarray]]:
        held, self.held = self.held, None
        n = len(packets.number)
        rows = np.arange(n)
        if not self.dedup:
            return [(packets, rows)]
        keep = min(STREAM_WINDOW, n + (0 if held is None else len(held.number)))
        # (held packets and an empty part: keep > n, sorted below)
        if (keep <= n and in_stream_order(rows, packets.kind, packets.session, packets.seq)
                and (held is None or _window_key(held, -1) <= _window_key(packets, 0))):
            # in order already (a line's capture): what was held, then the part, none of it copied
            batches = [] if held is None else [(held, np.arange(len(held.number)))]
            if keep:
                self.held = Packets(*(a[n - keep:] for a in packets))
            return batches + [(packets, rows[:n - keep])]
        if held is not None:
            packets = Packets(*(np.concatenate([h, p]) for h, p in zip(held, packets)))
        unsequenced = packets.kind == UNSEQUENCED
        order = np.lexsort((packets.number, packets.seq, np.where(unsequenced, 0, packets.session), unsequenced))
        if keep:
            self.held = packets.take(order[len(order) - keep:])
            order = order[:len(order) - keep]
        return [(packets, order)]

    def flush(self) -> list[tuple[Packets, np.ndarray]]:
        """What is still held back (sorted already), as the last batch (nothing: no batch)."""
        held, self.held = self.held, None
        return [] if held is None else [(held, np.arange(len(held.number)))]


class CapturePlan:
    """A capture's stream, planned whole (``whole``: a MoldCapture) or, for a large capture in
    (session, sequence) order as captured, a part of the capture at a time (``parts``). ``stats``
    are the whole capture's either way, known before the first piece is read."""

    def __init__(self, buf: np.ndarray, source: str, stats: CaptureStats, dedup: bool,
                 whole: MoldCapture | None = None, totals: np.ndarray | None = None) -> None:
        self.buf, self.source, self.stats, self.dedup = buf, source, stats, dedup
        self.whole = whole
        self.totals = totals   # what planning by parts found: the stream read must find it too
        # a last packet cut by the file's end, accepted when planned (strict=False): the walk
        # again ends before it
        self.cut_end: list | None = [] if stats.cut_at_end_packet else None

    def parts(self) -> Iterator[tuple[MoldCapture, int]]:
        """(plan, stop) of each part of the stream, in order: stop is the capture offset no
        later part reads before. Planned by parts, the capture is walked again and each part
        planned as it comes."""
        if self.whole is not None:
            yield self.whole, len(self.buf)
            return
        index, plan, totals = PacketIndex(), PlanState(), np.zeros(T_WORDS, np.int64)
        window = _Window(self.dedup)
        changed = ITCHFormatError("the capture changed while it was read: its second pass found other packets than "
                                  "its first", source=self.source)

        def batches() -> Iterator[tuple[list, int]]:   # each part's, then what the window still holds
            for part in packet_parts(self.buf, self.source, part_bytes=STREAM_PART_BYTES, cut_end=self.cut_end):
                indexed = index.index(self.buf, part.payload_offset, part.payload_length, part.outcome)
                yield window.take(Packets.of_part(part, indexed)), part.stop
            yield window.flush(), len(self.buf)

        for batch, stop in batches():
            if not batch:
                continue
            capture = _plan_part(self.buf, batch, plan, totals, self.dedup, self.stats)
            if not plan.orderly:
                raise changed
            yield capture, stop
        close_session(plan, totals)
        if not np.array_equal(totals, self.totals):
            raise changed


def _plan_part(buf, batches: list[tuple[Packets, np.ndarray]], plan: PlanState, totals, dedup: bool,
               stats: CaptureStats) -> MoldCapture:
    """Plan batches of packets, each taken in its order (``_Window``), checking it (check mode):
    a part of the stream of its own, from offset 0, a run going on from the part before opened
    first."""
    n = sum(len(order) for _, order in batches)
    out = _PlanArrays(n + 1, n)
    plan.start_part()
    if plan.words[P_SESSION] >= 0:   # the session goes on: so does its run
        out.run_offset[0], out.run_seq[0] = 0, plan.sequences[Q_EXPECTED]
        out.run_session[0] = plan.words[P_SESSION]
        plan.words[P_RUNS] = 1
    for packets, order in batches:
        if not plan.orderly:
            break
        first = int(plan.words[P_SEGS])
        out.plan(buf, order, packets, dedup, True, totals, plan)
        segments = out.seg_packet[first:int(plan.words[P_SEGS])]
        segments[:] = packets.number[segments]   # rows of the batch -> packets of the capture
    return out.capture(buf, plan, stats)


def plan_capture(buf: np.ndarray, source: str, strict: bool = True, dedup: bool = True,
                 walked=None) -> CapturePlan:
    """Walk and index a capture, and plan its stream (see ``reassemble``), with memory that does
    not grow with the capture where it can: a capture of more than STREAM_PACKETS packets whose
    file order, sorted within a window of STREAM_WINDOW packets (``_Window``), plans as the
    sorted capture does (``plan_packets``' check mode) keeps no table and no plan of the whole,
    only its counters, and is walked again as it is read. Any other capture is planned whole
    (walked again from the start if it was found out of order past STREAM_PACKETS).

    walked: a function that gives, for each walk of the capture, a fresh on_walked(offset,
    final=False) as ``packet_parts`` takes (a mapping's pages behind the walk may go)."""
    index = PacketIndex()
    parts: list[Part] = []
    plan: PlanState | None = None   # planning by parts, once the capture has too many packets
    stats, totals = CaptureStats(deduplicated=bool(dedup)), np.zeros(T_WORDS, np.int64)
    window = _Window(dedup)

    def check(part: Part, indexed: tuple) -> None:
        kind, why, _, _, count = indexed
        if strict and (error := _malformed_error(buf, part.first, part.payload_offset, part.payload_length,
                                                 why, count, source)) is not None:
            raise error
        _count_packets(stats, kind, count, part.outcome)
        _plan_part(buf, window.take(Packets.of_part(part, indexed)), plan, totals, dedup, stats)   # counters, order

    cut_end = None if strict else []   # strict: a file ending inside a packet is an error
    skipped: dict = {}                 # a pcapng's blocks of unknown types (the walk's end fills it)
    walk = packet_parts(buf, source, walked() if walked else None, cut_end=cut_end, skipped=skipped)
    for part in walk:
        if plan is None:
            index.add(buf, part.payload_offset, part.payload_length, part.outcome)
            parts.append(part)
            if index.packets > STREAM_PACKETS:
                plan = PlanState()
                kept = index.parts
                index.parts = []
                for p, indexed in zip(parts, kept):
                    check(p, indexed)
                parts = kept = []
        else:
            check(part, index.index(buf, part.payload_offset, part.payload_length, part.outcome))
        if plan is not None and (not plan.orderly or index.sessions < 0):
            walk.close()
            break
    if plan is None:   # few packets: planned whole
        table = PacketTable(*(np.concatenate([getattr(p, f) for p in parts]) for f in PacketTable.FIELDS))
        capture = reassemble(buf, table, source, strict=strict, dedup=dedup, index=index)
        return CapturePlan(buf, source, _cut(capture.stats, cut_end, skipped), dedup, whole=capture)
    if plan.orderly and index.sessions >= 0 and (rest := window.flush()):
        _plan_part(buf, rest, plan, totals, dedup, stats)
    if not plan.orderly or index.sessions < 0:   # out of order past the window: walked again, and sorted
        whole = PacketIndex()
        cut_end = None if strict else []   # (this walk's: the first was left before the end)
        table = packet_table(buf, source, walked() if walked else None,
                             on_part=lambda *rows: whole.add(buf, *rows), cut_end=cut_end, skipped=skipped)
        capture = reassemble(buf, table, source, strict=strict, dedup=dedup, index=whole)
        return CapturePlan(buf, source, _cut(capture.stats, cut_end, skipped), dedup, whole=capture)
    close_session(plan, totals)
    stats.sessions = _session_names(index.known[:index.sessions])
    _count_totals(stats, totals)
    return CapturePlan(buf, source, _cut(stats, cut_end, skipped), dedup, totals=totals)


def _cut(stats: CaptureStats, cut_end: list | None, skipped: dict) -> CaptureStats:
    """stats, with the packet the file ends inside (strict=False) counted as malformed, and the
    blocks of unknown types the walk skipped."""
    stats.unknown_blocks = skipped.get("unknown_blocks", 0)
    if cut_end:
        _, packet, present = cut_end[0]
        stats.cut_at_end_packet, stats.cut_at_end_bytes = packet, present
        stats.malformed_packets += 1
        stats.packets += 1
    return stats
