"""MoldUDP64 receiver as a sans-I/O state machine: packets and time in, events out.

Feed it every datagram with ``receive(packet, now_ns, line)`` (line A, B, or the unicast
replies of the re-request server) and call ``tick(now_ns)`` when ``next_deadline()`` is
due. It owns no socket and no clock. It returns events:

- ``Deliver``: a run of messages in sequence, as BinaryFILE-framed bytes (a view of the
  packet, or of the receiver's own copy for packets that waited), with the sequence number
  of the first. No Python object per message: one per packet at most.
- ``Gap``: a hole was seen (messages from ``first_sequence`` are missing).
- ``Request``: a re-request packet to send to the re-request server.
- ``Lost``: messages given up on (no re-request server, or it never answered).
- ``SessionChange``, ``EndOfSession``, ``Malformed``.

Rules, several learned from the bugs users hit in paritytrading/nassau:
- Track the highest sequence seen (data, heartbeat or end-of-session packet) and stay in
  gap fill until every message before it has been delivered (nassau #11); re-request
  enough to cover it, capped to what a request can hold (#15); as soon as a reply arrives
  short of what was asked, ask again for the rest (#23); re-send after a timeout that doubles
  each time (50 ms up to 1 s), and give a hole up only once the re-request server has been
  silent for ``give_up_ns`` while asked (10 s): a far or slow server still fills it, and a
  hole costs the server a request a second at most once the wait is long. The spec lets
  re-requests go on while the end-of-session packets persist ("the last chance to ensure that
  all messages have been received"). The silence is the server's, not the hole's: once it has
  not answered for that long, the next holes are given up at their first time-out instead of
  10 s each (holes are asked for one at a time). Holes already waiting behind the one given
  up (visible before it went) go with it, unasked: a silent server gets no burst of one
  request a hole, and the held data behind them flows at once.
- An end-of-session packet's count (0xFFFF) is never a message count: only its sequence
  number is used, and only to reveal a gap (#16).
- A and B lines carry the same sequence numbers: the first copy wins, later copies are
  counted as duplicates; a packet that overlaps what was delivered gives its new tail only.
- A hole waits a bounded time (``line_wait_ns``) or number of packets (``line_wait_packets``)
  for the other line before a re-request goes out.
  Data arriving in turn restarts that wait: a packet held far ahead proves nothing about
  the data in between while that data keeps coming.
- A malformed packet is counted and reported with its packet number, never raised.
- ``close()`` when the receiver stops: what is still missing is ``Lost``, what was held is
  delivered.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field

import numpy as np

from itchflow.hw.byte_view import byte_view
from itchflow.protocol.mold.codec import (
    BLOCKS_OK,
    F_BYTES,
    F_DUP_MESSAGES,
    F_DUP_PACKETS,
    F_HEARTBEATS,
    F_MESSAGES,
    F_PACKETS,
    fast_in_order,
    malformed_text,
    MALFORMED_TEXT,
    SHORT_HEADER,
    CONTROL_WITH_BYTES,
    session_bytes,
    walk_blocks,
)
from itchflow.wire.moldudp64 import (
    END_OF_SESSION_COUNT,
    FIRST_SEQUENCE,
    HEADER_SIZE,
    HEARTBEAT_COUNT,
    MAX_MESSAGE_COUNT,
    MAX_SEQUENCE,
    SESSION_SIZE,
    pack_header,
    unpack_header,
)

LINE_A, LINE_B, LINE_REPLY = 0, 1, 2
LINE_NAMES = ("A", "B", "reply")
MAX_REQUEST_COUNT = MAX_MESSAGE_COUNT  # the count field is 16 bits and 0xFFFF means end of session
MALFORMED_LOG_LIMIT = 1000
OLD_SESSIONS_KEPT = 1024              # sessions left that are remembered, to count their late packets
DEFAULT_MAX_GAP = 1 << 22               # messages: ~4 M, tens of seconds of the busiest feed
DEFAULT_MAX_BUFFERED_BYTES = 64 << 20   # early packets held while a hole is filled
DEFAULT_RESYNC_PACKETS = 512            # contiguous packets past max_gap that prove a real jump


@dataclass(slots=True)
class Deliver:
    data: np.ndarray        # uint8, BinaryFILE-framed messages
    first_sequence: int
    count: int
    line: int               # where the delivering packet came from
    packet: int             # its packet number (1-based, over all lines)
    rx_ns: int | None       # its receive timestamp as given to receive()


@dataclass(slots=True)
class Gap:
    first_sequence: int
    count: int              # known extent of the hole so far


@dataclass(slots=True)
class Request:
    packet: bytes           # 20-byte re-request to send to the re-request server
    first_sequence: int
    count: int
    attempt: int            # 1 for the first send, more for re-sends after a timeout


@dataclass(slots=True)
class Lost:
    first_sequence: int
    count: int
    reason: str


@dataclass(slots=True)
class SessionChange:
    old: bytes | None
    new: bytes


@dataclass(slots=True)
class EndOfSession:
    session: bytes
    sequence: int           # the sequence number after the session's last message


@dataclass(slots=True)
class Malformed:
    packet: int
    line: int
    reason: str
    offset: int | None = None
    peer: str | None = None     # the sender ("HOST:PORT"), when the edge that read it knows

    def __str__(self) -> str:
        where = f" at byte {self.offset}" if self.offset is not None else ""
        sender = f" from {self.peer}" if self.peer else ""
        return f"packet {self.packet} (line {LINE_NAMES[self.line]}{sender}){where}: {self.reason}"


@dataclass
class MoldStats:
    packets: int = 0
    packets_by_line: list = field(default_factory=lambda: [0, 0, 0])
    messages: int = 0                 # delivered
    messages_by_line: list = field(default_factory=lambda: [0, 0, 0])
    bytes: int = 0                    # delivered, framing included
    duplicate_packets: int = 0        # nothing new in them
    duplicate_messages: int = 0       # messages seen again (whole or overlapping packets)
    heartbeats: int = 0
    end_of_session: int = 0
    gaps: int = 0                     # holes detected
    requests: int = 0                 # re-request packets sent (re-sends included)
    request_resends: int = 0          # of which after a timeout
    short_replies: int = 0            # replies that covered less than asked
    recovered: int = 0                # messages delivered from re-request replies
    lost: int = 0                     # messages given up on
    session_changes: int = 0
    stale_session_packets: int = 0    # packets of a session already left
    other_session_packets: int = 0    # packets of another session than the one followed
    malformed: int = 0
    bad_sequence: int = 0             # packets whose sequence is invalid (0, >= 2**63) or jumps past max_gap
    after_end_of_session: int = 0     # packets (or their tails) past the end of session
    buffer_overflow: int = 0          # early packets dropped because the buffer was full (packets or bytes)
    buffered_peak: int = 0
    buffered_bytes_peak: int = 0
    deferred_give_ups: int = 0        # holes not given up on: nothing held past them yet (data may still come)
    unasked_give_ups: int = 0         # holes given up unasked, behind one the server's silence gave up
    old_sessions_forgotten: int = 0   # sessions left longest ago, past the OLD_SESSIONS_KEPT remembered

    def to_dict(self) -> dict:
        return asdict(self)


class _Early:
    """A packet that arrived ahead of the next expected sequence, kept until its turn."""

    __slots__ = ("data", "first", "count", "line", "packet", "rx_ns", "now_ns")

    def __init__(self, data, first, count, line, packet, rx_ns, now_ns):
        self.data, self.first, self.count = data, first, count
        self.line, self.packet, self.rx_ns, self.now_ns = line, packet, rx_ns, now_ns


class MoldReceiver:
    """MoldUDP64 receiver state (see the module doc).

    session: the only session to accept (None: the first one seen is the session; packets
    of any other are counted and ignored). follow_sessions: follow a change to a new session
    instead (as at a new day; the old one's late packets are dropped). start_sequence: the
    first sequence wanted (None: start from the first packet seen, as when joining mid-day).
    requests: whether a re-request server is there (if not, holes become ``Lost`` after
    the line wait). request_timeout_ns: the wait for a reply to the first request of a hole;
    each re-send waits twice as long as the one before, up to max_request_wait_ns. A hole is
    ``Lost`` when the re-request server has been silent for give_up_ns while asked (or after
    max_attempts requests, when that is set).

    Hostile or faulty peers: a sequence of 0 or past 2**63 - 2**16, or a jump of more than
    ``max_gap`` messages past the highest sequence seen (for the packet that would start a
    session: past the first sequence wanted), is a counted bad packet (not a gap to fill)
    unless ``resync_packets`` contiguous packets confirm the jump (a real outage). A packet
    that is not well framed never picks the session.
    Data past the end of session is counted, never delivered. Early packets are held up to
    ``max_buffered`` packets and ``max_buffered_bytes`` bytes. A hole is given up only up to
    the next packet held (or to the end of session): never past data that may still arrive.
    """

    def __init__(self, session: bytes | str | None = None, *, start_sequence: int | None = 1,
                 line_wait_ns: int = 2_000_000, line_wait_packets: int = 64,
                 request_timeout_ns: int = 50_000_000, max_request_wait_ns: int = 1_000_000_000,
                 give_up_ns: int = 10_000_000_000, max_attempts: int | None = None,
                 requests: bool = True, max_request_count: int = MAX_REQUEST_COUNT,
                 max_buffered: int = 1 << 16, max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
                 max_gap: int = DEFAULT_MAX_GAP, resync_packets: int = DEFAULT_RESYNC_PACKETS,
                 follow_sessions: bool = False):
        if start_sequence is not None and not FIRST_SEQUENCE <= start_sequence <= MAX_SEQUENCE:
            raise ValueError(f"start sequence {start_sequence} is out of range ({FIRST_SEQUENCE} to {MAX_SEQUENCE})")
        self.session = session_bytes(session) if session is not None else None
        self.follow_sessions = bool(follow_sessions)
        self.max_buffered_bytes = int(max_buffered_bytes)
        self.max_gap = int(max_gap)
        self.resync_packets = int(resync_packets)
        self._jump_run = (None, 0)           # (next sequence of a run of far-jump packets, its length)
        self.start_sequence = start_sequence
        self.line_wait_ns = int(line_wait_ns)
        self.line_wait_packets = int(line_wait_packets)
        if request_timeout_ns < 1 or give_up_ns < 0:
            raise ValueError(f"request_timeout_ns ({request_timeout_ns}) must be at least 1 and give_up_ns "
                             f"({give_up_ns}) at least 0")
        self.request_timeout_ns = int(request_timeout_ns)
        self.max_request_wait_ns = max(int(max_request_wait_ns), self.request_timeout_ns)
        self.give_up_ns = int(give_up_ns)
        # the least a request waits for its reply, even once the server counts as silent
        self._least_wait_ns = min(self.request_timeout_ns, self.give_up_ns)
        self.max_attempts = None if max_attempts is None else int(max_attempts)
        self.requests_enabled = bool(requests)
        self.max_request_count = min(int(max_request_count), MAX_REQUEST_COUNT)
        self.max_buffered = int(max_buffered)
        self.stats = MoldStats()
        self.malformed_log: list[Malformed] = []
        self._peer = None   # the sender of the datagram being taken (see receive)
        # sessions left, newest last, to count their late packets as stale; bounded, since with
        # follow_sessions every well-framed packet naming a new session is a change (a packet
        # of a session forgotten is a new one again: followed, as any other would be)
        self.old_sessions: dict[bytes, None] = {}
        self._batch_out = np.zeros(1 << 16, np.uint8)
        self._counters = np.zeros(8, np.int64)
        self._session_array = np.zeros(SESSION_SIZE, np.uint8)
        if self.session is not None:
            self._session_array[:] = np.frombuffer(self.session, np.uint8)
        self._reset_sequence(start_sequence if start_sequence is not None else None)

    # ---------------------------------------------------------------- state
    def _reset_sequence(self, next_seq: int | None) -> None:
        self.next_sequence = next_seq      # None until the first packet when joining mid-day
        self.highest = next_seq            # exclusive end of the highest sequence seen
        self.ended = False                 # end of session seen for the current session
        self.end_sequence = None           # the sequence after the session's last message
        self._early: dict[int, _Early] = {}
        self._early_bytes = 0
        self._parked_at = None             # hole not given up on: nothing held past it yet
        self._heap: list[int] = []
        self._request = None               # (first, count, sent_ns, attempt, first_sent_ns) outstanding
        self._silent_since = None          # first request the re-request server has not answered since
        self._silence_gave_up_ns = None    # when the server's silence last gave a hole up
        self._hole_at = None               # the sequence the line-wait timer is for
        self._hole_since = (0, 0)          # (ns, packet number) the hole was first visible
        self._replies_at_hole = 0          # reply-line packets seen when the hole's first request went
        self._in_turn_ns = None            # when the live lines last delivered the hole's head in turn
        self.in_gap = False

    @property
    def synchronized(self) -> bool:
        return self.next_sequence is not None and self.next_sequence >= self.highest

    @property
    def finished(self) -> bool:
        """End of session seen and every message before it delivered or given up."""
        return self.ended and self.synchronized

    @property
    def buffered(self) -> int:
        return len(self._early)

    # ---------------------------------------------------------------- input
    def receive(self, packet, now_ns: int, line: int = LINE_A, rx_ns: int | None = None, peer=None) -> list:
        """Take one datagram (bytes-like or uint8 array); return the events it causes.

        Deliver events may be views of ``packet``: consume them before reusing its buffer.
        peer: who sent it ("HOST:PORT", or a function giving that, asked only when the packet
        is reported): a malformed or out-of-range packet names its sender.
        """
        self._peer = peer
        st = self.stats
        st.packets += 1
        st.packets_by_line[line] += 1
        if line == LINE_REPLY:
            self._silent_since = None      # the re-request server answers (its socket is connected to it)
        number = st.packets
        events: list = []
        buf = byte_view(packet)   # (a strided array would have the walks read other bytes)
        n = len(buf)
        if n < HEADER_SIZE:
            self._malformed(events, number, line, MALFORMED_TEXT[SHORT_HEADER] + f" ({n} bytes)", None)
            return events
        session, seq, count = unpack_header(buf)

        if session != self.session:
            if session in self.old_sessions:
                st.stale_session_packets += 1
                return events
            if self.session is not None and not self.follow_sessions:   # the first session seen is the session
                st.other_session_packets += 1
                return events
            # Do not let a bad header, a corrupt packet or a far jump pick the session: the
            # packet that names a session is checked as strictly as every later one.
            if not FIRST_SEQUENCE <= seq <= MAX_SEQUENCE:
                self._bad_sequence(events, number, line, seq)
                return events
            if count != END_OF_SESSION_COUNT and count != HEARTBEAT_COUNT:
                status, off = walk_blocks(buf, HEADER_SIZE, n, count, count)
                if status != BLOCKS_OK:
                    self._malformed(events, number, line, malformed_text(status, buf, int(off)), int(off))
                    return events
            elif n != HEADER_SIZE:   # (nor a malformed control packet: probe 46 saw one pick the session)
                self._malformed(events, number, line, MALFORMED_TEXT[CONTROL_WITH_BYTES], HEADER_SIZE)
                return events
            first = self._session_first(seq)
            if seq > first + self.max_gap and not self._plausible(seq, count, line, first):
                self._bad_sequence(events, number, line, seq, first)
                return events
            self._change_session(session, seq, count, events)
        elif not (FIRST_SEQUENCE <= seq <= MAX_SEQUENCE
                  and (self.highest is None or seq <= self.highest + self.max_gap)):
            if not self._plausible(seq, count, line, self.highest):   # the slow path only for the suspicious
                self._bad_sequence(events, number, line, seq, self.highest)
                return events

        if (count == END_OF_SESSION_COUNT or count == HEARTBEAT_COUNT) and n != HEADER_SIZE:
            # no blocks follow either: bytes after the header make the packet malformed (an end of
            # session took them at face value, as a capture did both: probe 45)
            self._malformed(events, number, line, MALFORMED_TEXT[CONTROL_WITH_BYTES], HEADER_SIZE)
            return events
        if count == END_OF_SESSION_COUNT:
            st.end_of_session += 1
            if not self.ended:
                events.append(EndOfSession(session, seq))
                self.ended = True
                self.end_sequence = seq
                if self.next_sequence is not None and seq < self.next_sequence:
                    # messages already delivered lie past this end: they contradict it (probe 24)
                    st.after_end_of_session += 1
                self._end_at(seq)     # the sequence only; never the count (nassau #16)
        elif count == HEARTBEAT_COUNT:
            st.heartbeats += 1
            if self.ended and seq > self.end_sequence:
                st.after_end_of_session += 1
                return events
            self._see(seq)            # a heartbeat's sequence is the next one sent: may reveal a gap
        else:
            self._data(buf, n, seq, count, line, number, rx_ns, now_ns, events)
        self._check(now_ns, events)
        return events

    def receive_batch(self, bufs: np.ndarray, lengths: np.ndarray, n: int, now_ns: int, line: int = LINE_A,
                      rx_ns: np.ndarray | None = None, peer_of=None) -> list:
        """Take datagrams bufs[i, :lengths[i]] for i < n (a recvmmsg batch from one line).

        The same events as ``receive`` packet by packet, but runs of in-sequence packets,
        duplicates and plain heartbeats are handled by one compiled call and delivered as
        one ``Deliver`` over a copy (valid until the next receive_batch call).
        peer_of(i): the sender of datagram i, as ``receive``'s peer (asked only to report it).
        """
        events: list = []
        if line == LINE_REPLY and n > 0:
            self._silent_since = None
        need = int(lengths[:n].sum())
        if len(self._batch_out) < need:
            self._batch_out = np.zeros(max(need, 2 * len(self._batch_out)), np.uint8)
        out_pos = 0
        counters = self._counters
        st = self.stats
        i = 0
        while i < n:
            if (self.session is not None and self.next_sequence is not None and not self.in_gap
                    and not self._early and not self.ended and self.next_sequence <= MAX_SEQUENCE):
                counters[:] = 0
                first = self.next_sequence
                j, nxt, o = fast_in_order(bufs, lengths, i, n, self._session_array, first, self._batch_out,
                                          out_pos, counters)
                k = int(counters[F_PACKETS])
                if k:
                    number = st.packets + 1
                    st.packets += k
                    st.packets_by_line[line] += k
                    st.duplicate_packets += int(counters[F_DUP_PACKETS])
                    st.duplicate_messages += int(counters[F_DUP_MESSAGES])
                    st.heartbeats += int(counters[F_HEARTBEATS])
                    if nxt > first:
                        m = int(counters[F_MESSAGES])
                        st.messages += m
                        st.messages_by_line[line] += m
                        st.bytes += int(counters[F_BYTES])
                        if line == LINE_REPLY:
                            st.recovered += m
                        self.next_sequence = self.highest = int(nxt)
                        events.append(Deliver(self._batch_out[out_pos:o], first, m, line, number,
                                              int(rx_ns[i]) if rx_ns is not None else None))
                        out_pos = int(o)
                i = int(j)
                if i >= n:
                    break
            events += self.receive(bufs[i, :lengths[i]], now_ns, line,
                                   int(rx_ns[i]) if rx_ns is not None else None,
                                   None if peer_of is None else (lambda i=i: peer_of(i)))
            i += 1
        return events

    def tick(self, now_ns: int) -> list:
        """Let time pass: line waits expire, requests time out."""
        events: list = []
        self._check(now_ns, events)
        return events

    def next_deadline(self) -> int | None:
        """When tick() has something to do (ns, same clock as now_ns), or None."""
        if not self.in_gap or (self._parked_at == self.next_sequence and not self._heap):
            return None
        if self._request is not None:
            sent_ns, attempt = self._request[2], self._request[3]
            due = sent_ns + self._reply_wait(attempt)
            if self._silent_since is not None:
                # silence gives up early, but never sooner than the first time-out after a send
                due = min(due, max(self._silent_since + self.give_up_ns, sent_ns + self._least_wait_ns))
            return due
        return self._hole_since[0] + self.line_wait_ns

    # ---------------------------------------------------------------- internals
    def _sender(self) -> str | None:
        peer = self._peer
        return peer() if callable(peer) else peer

    def _malformed(self, events, number, line, reason, offset) -> None:
        m = Malformed(number, line, reason, offset, self._sender())
        self.stats.malformed += 1
        if len(self.malformed_log) < MALFORMED_LOG_LIMIT:
            self.malformed_log.append(m)
        events.append(m)

    def _session_first(self, seq: int) -> int:
        """The first sequence wanted of a session that a packet at ``seq`` would start."""
        if self.start_sequence is None:
            return seq                    # joining mid-session: wherever its packets are
        return self.start_sequence if self.session is None else 1   # a new session numbers from 1

    def _plausible(self, seq: int, count: int, line: int, highest: int | None) -> bool:
        """Whether a packet at ``seq`` may be acted on, ``highest`` being the highest sequence
        seen of its session (or where a session it would start begins)."""
        if not FIRST_SEQUENCE <= seq <= MAX_SEQUENCE:
            return False
        if highest is None or seq <= highest + self.max_gap:
            return True
        if line == LINE_REPLY:           # a reply answers what was asked: never a jump
            return False
        # A far jump: a bad packet, unless contiguous packets keep confirming it (an outage).
        nxt, run = self._jump_run
        run = run + 1 if nxt == seq else 1
        data = count not in (HEARTBEAT_COUNT, END_OF_SESSION_COUNT)
        self._jump_run = (seq + (count if data else 0), run)
        return run >= self.resync_packets

    def _bad_sequence(self, events, number, line, seq, highest=None) -> None:
        self.stats.bad_sequence += 1
        why = ("sequence 0 is not a data sequence" if seq == 0 else
               f"sequence {seq} is out of range" if seq > MAX_SEQUENCE else
               f"sequence {seq} jumps {seq - highest} messages past the highest seen "
               f"(more than max_gap {self.max_gap})")
        m = Malformed(number, line, why, None, self._sender())
        if len(self.malformed_log) < MALFORMED_LOG_LIMIT:
            self.malformed_log.append(m)
        events.append(m)

    def _change_session(self, session, seq, count, events) -> None:
        old = self.session
        if old is not None:
            self.stats.session_changes += 1
            self.old_sessions.pop(old, None)
            self.old_sessions[old] = None
            if len(self.old_sessions) > OLD_SESSIONS_KEPT:
                del self.old_sessions[next(iter(self.old_sessions))]
                self.stats.old_sessions_forgotten += 1
            if self.next_sequence is not None and self.highest > self.next_sequence:
                missing = self.highest - self.next_sequence
                self.stats.lost += missing
                events.append(Lost(self.next_sequence, missing, "session changed before the gap was filled"))
        events.append(SessionChange(old, session))
        self.session = session
        self._session_array[:] = np.frombuffer(session, np.uint8)
        if self.start_sequence is not None:
            # a new session numbers its messages from 1 again
            self._reset_sequence(self.start_sequence if old is None else 1)
        else:
            self._reset_sequence(seq)   # joining mid-session: start where this packet starts

    def _see(self, end: int) -> None:
        if self.next_sequence is None:     # joining mid-day on a heartbeat or end of session
            self.next_sequence = self.highest = end
        elif end > self.highest:
            self.highest = end

    def _data(self, buf, n, seq, count, line, number, rx_ns, now_ns, events) -> None:
        st = self.stats
        if self.next_sequence is None:
            self.next_sequence = self.highest = seq
        nxt = self.next_sequence
        end = seq + count
        skip = nxt - seq if seq < nxt else 0
        status, off = walk_blocks(buf, HEADER_SIZE, n, count, min(skip, count))
        if status != BLOCKS_OK:
            self._malformed(events, number, line, malformed_text(status, buf, int(off)), int(off))
            return
        if self.ended and end > self.end_sequence:   # nothing is delivered past the end of session
            st.after_end_of_session += 1
            if seq >= self.end_sequence:
                return
            keep = self.end_sequence - seq     # the head before the end is still the session's
            _, cut = walk_blocks(buf, HEADER_SIZE, n, count, keep)
            n, count, end = int(cut), keep, seq + keep
            status, off = walk_blocks(buf, HEADER_SIZE, n, count, min(skip, count))
        self._see(end)
        if end <= nxt:
            st.duplicate_packets += 1
            st.duplicate_messages += count
            return
        if seq <= nxt:
            st.duplicate_messages += skip
            self._deliver(buf[off:n], nxt, end - nxt, line, number, rx_ns, events)
            self._drain(events)
            if self.in_gap and line != LINE_REPLY:
                # Data arriving in turn moved the hole: its wait starts again. A packet held far
                # ahead proves nothing about the data in between while that data keeps coming.
                self._hole_at = self.next_sequence
                self._hole_since = (now_ns, st.packets)
                self._in_turn_ns = now_ns
                if self._request is not None:
                    # What was asked for is coming in on the line: the request now stands for
                    # the rest only, on its own timer (its re-sends double as before). Taken for
                    # a short reply, each in-turn packet sent a request for the rest: one packet
                    # far ahead, a spoofed one, had one go out for every packet of the rest of
                    # the day (probe 22), and dropping the request instead did the same on a
                    # feed slower than the line wait (probe 24).
                    first, count, sent_ns, attempt, first_sent_ns = self._request
                    end, nxt = first + count, self.next_sequence
                    self._request = (nxt, end - nxt, sent_ns, attempt, first_sent_ns) if nxt < end else None
            return
        early = self._early.get(seq)
        if early is not None and early.count >= count:
            st.duplicate_packets += 1
            st.duplicate_messages += count
            return
        size = n - HEADER_SIZE - (len(early.data) if early is not None else 0)
        if ((early is None and len(self._early) >= self.max_buffered)
                or self._early_bytes + size > self.max_buffered_bytes):
            st.buffer_overflow += 1   # it stays covered by `highest`, so it will be re-requested
            return
        if early is not None:
            st.duplicate_messages += early.count
        else:
            heapq.heappush(self._heap, seq)
        self._early[seq] = _Early(buf[HEADER_SIZE:n].copy(), seq, count, line, number, rx_ns, now_ns)
        self._early_bytes += size
        if len(self._early) > st.buffered_peak:
            st.buffered_peak = len(self._early)
        if self._early_bytes > st.buffered_bytes_peak:
            st.buffered_bytes_peak = self._early_bytes

    def _deliver(self, data, first, count, line, number, rx_ns, events) -> None:
        st = self.stats
        st.messages += count
        st.messages_by_line[line] += count
        st.bytes += len(data)
        if line == LINE_REPLY:
            st.recovered += count
        self.next_sequence = first + count
        events.append(Deliver(data, first, count, line, number, rx_ns))

    def _end_at(self, end: int) -> None:
        """End of session at ``end``: nothing at or past it is the session's. Early packets
        held there are dropped (counted), and the hole to fill stops at the end."""
        self._see(end)
        if self.highest is not None and self.next_sequence is not None and self.highest > end:
            self.highest = max(end, self.next_sequence)
        if not self._heap:
            return
        keep = [s for s in self._heap if s < end]
        for s in self._heap:
            if s >= end:
                self._early_bytes -= len(self._early.pop(s).data)
                self.stats.after_end_of_session += 1
        heapq.heapify(keep)
        self._heap = keep

    def _drain(self, events) -> None:
        """Deliver the early packets that are now in turn (never past the end of session)."""
        heap, early = self._heap, self._early
        while heap and heap[0] <= self.next_sequence:
            e = early.pop(heapq.heappop(heap))
            self._early_bytes -= len(e.data)
            nxt = self.next_sequence
            end = e.first + e.count
            if self.ended and end > self.end_sequence:     # held before the end was known
                self.stats.after_end_of_session += 1
                keep = max(0, self.end_sequence - e.first)
                _, cut = walk_blocks(e.data, 0, len(e.data), e.count, keep)
                e.data, e.count, end = e.data[:cut], keep, e.first + keep
            if end <= nxt:
                self.stats.duplicate_packets += 1
                self.stats.duplicate_messages += e.count
                continue
            skip = nxt - e.first
            data = e.data
            if skip:
                self.stats.duplicate_messages += skip
                _, off = walk_blocks(data, 0, len(data), e.count, skip)
                data = data[off:]
            self._deliver(data, nxt, end - nxt, e.line, e.packet, e.rx_ns, events)

    def _hole_end(self) -> int:
        if self._heap:
            return min(self._heap[0], self.highest)
        return self.highest

    def _give_up(self, reason, events) -> bool:
        """Give the hole up, but only up to the next packet held or the end of session: a hole
        whose end is only announced (a heartbeat, a packet the buffer had no room for) may
        still be filled by data on its way, so it stays open until such data arrives."""
        first = self.next_sequence
        if not self._heap and not self.ended:
            self._request = None
            if self._parked_at != first:
                self._parked_at = first
                self.stats.deferred_give_ups += 1
            return False
        count = self._hole_end() - first
        self.stats.lost += count
        events.append(Lost(first, count, reason))
        self.next_sequence = first + count
        self._request = None
        self._drain(events)
        return True

    def close(self, reason: str = "still missing when the receiver stopped") -> list:
        """The receiver stops: every message still missing below the highest sequence seen is
        ``Lost`` (counted), and the packets held past those holes are delivered."""
        events: list = []
        while self.next_sequence is not None and self.next_sequence < self.highest:
            first = self.next_sequence
            count = self._hole_end() - first
            self.stats.lost += count
            events.append(Lost(first, count, reason))
            self.next_sequence = first + count
            self._drain(events)
        self._request = None
        self._parked_at = None
        self.in_gap = False
        return events

    def _reply_wait(self, attempt: int) -> int:
        """How long the attempt-th request of a hole waits for its reply: doubling from
        request_timeout_ns, up to max_request_wait_ns."""
        return min(self.request_timeout_ns << min(attempt - 1, 40), self.max_request_wait_ns)

    def _send_request(self, now_ns, attempt, events, first_sent_ns=None) -> None:
        first = self.next_sequence
        # Ask for the whole known hole (up to the next packet already held, else up to the
        # highest sequence seen), capped to what the count field can say.
        count = min(self._hole_end() - first, self.max_request_count)
        self._request = (first, count, now_ns, attempt, now_ns if first_sent_ns is None else first_sent_ns)
        if first_sent_ns is None:
            self._replies_at_hole = self.stats.packets_by_line[LINE_REPLY]
        if self._silent_since is None:
            self._silent_since = now_ns
        self.stats.requests += 1
        if attempt > 1:
            self.stats.request_resends += 1
        events.append(Request(pack_header(self.session, first, count), first, count, attempt))

    def _check(self, now_ns, events) -> None:
        # A loop, because giving up on one hole can expose the next one at once.
        for _ in range(1 << 20):
            if self.next_sequence is None or self.next_sequence >= self.highest:
                self.in_gap = False
                self._request = None
                self._hole_at = None
                return
            nxt = self.next_sequence
            if self._parked_at == nxt and not self._heap and not self.ended:
                self.in_gap = True
                return                            # waiting for data (see _give_up)
            if not self.in_gap:
                self.in_gap = True
                self.stats.gaps += 1
                events.append(Gap(nxt, self._hole_end() - nxt))
            if self._hole_at != nxt:
                # The hole has been visible since the packet that proves it arrived.
                self._hole_at = nxt
                if self._heap:
                    e = self._early[self._heap[0]]
                    self._hole_since = (e.now_ns, e.packet)
                else:
                    self._hole_since = (now_ns, self.stats.packets)
            req = self._request
            if req is not None:
                first, count, sent_ns, attempt, first_sent_ns = req
                if nxt > first:
                    if nxt < first + count:       # a short reply: ask for the rest now
                        self.stats.short_replies += 1
                        self._send_request(now_ns, 1, events)
                        return
                    self._request = None          # answered in full; the next hole waits its turn
                    continue
                silent = now_ns - (first_sent_ns if self._silent_since is None else self._silent_since)
                waited = now_ns - sent_ns
                if waited < self._reply_wait(attempt) and (silent < self.give_up_ns or waited < self._least_wait_ns):
                    return       # (a request always has its first time-out to be answered in)
                if self._in_turn_ns is not None and self._in_turn_ns >= sent_ns:
                    # the live lines have been filling the hole in order since the last request:
                    # no loss to give up yet (a packet held far ahead, spoofed or not, set its
                    # end), only a request to send again, on the doubling timer (waits up to
                    # max_request_wait_ns: about one a second for as long as it lasts), and the
                    # server's silence counted from it
                    self._silent_since = None
                    self._send_request(now_ns, attempt + 1, events)
                    return
                if silent >= self.give_up_ns or (self.max_attempts is not None and attempt >= self.max_attempts):
                    asked = f"{attempt} request{'s' if attempt > 1 else ''} for this hole"
                    answers = self.stats.packets_by_line[LINE_REPLY] - self._replies_at_hole
                    if answers:   # it answered, but never with the hole: not a network problem
                        reason = (f"the re-request server answered {answers} time{'s' if answers > 1 else ''} in "
                                  f"{(now_ns - first_sent_ns) / 1e9:.2f} s, never with the hole's messages "
                                  f"(another session's, malformed or other sequences: see the counters; {asked})")
                    else:
                        reason = f"no reply from the re-request server for {silent / 1e9:.2f} s ({asked})"
                    if not self._give_up(reason, events):
                        return
                    if silent >= self.give_up_ns:
                        self._silence_gave_up_ns = now_ns
                    continue
                self._send_request(now_ns, attempt + 1, events, first_sent_ns)
                return
            since_ns, since_packet = self._hole_since
            if (now_ns - since_ns < self.line_wait_ns
                    and self.stats.packets - since_packet < self.line_wait_packets):
                return
            if not self.requests_enabled:
                if not self._give_up("no re-request server", events):
                    return
                continue
            if (self._silent_since is not None and self._silence_gave_up_ns is not None
                    and since_ns < self._silence_gave_up_ns and (self._heap or self.ended)
                    and self._silence_gave_up_ns - self._silent_since >= self.give_up_ns):
                # visible before the server's silence gave the hole ahead up: it goes too, unasked.
                # (Only a hole whose end is data held or the session's end: one known from a
                # heartbeat alone is asked for, as it would be parked, not given up: probe 56.)
                self._give_up(f"the re-request server has not answered for {(now_ns - self._silent_since) / 1e9:.2f} s "
                              f"(given up with the hole before it, not asked for)", events)
                self.stats.unasked_give_ups += 1
                continue
            self._send_request(now_ns, 1, events)
            return
