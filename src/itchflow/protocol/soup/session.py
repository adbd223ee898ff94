"""SoupBinTCP 3.00, sans-I/O: packet layouts as data, a client session and a server session.

Every packet: a 2-byte big-endian length (covering the type byte and the payload), a type
byte, the payload. Alpha fields are left-justified and space padded; numeric fields are
ASCII digits right-justified and space padded. Sequenced data carries one message, numbered
implicitly from the sequence number in Login Accepted.

The sessions own no socket and no clock: feed them bytes and time (``receive_data``,
``tick``), take the bytes they want sent from ``data_to_send()``, act on the events they
return. Sequenced data is moved in runs by compiled kernels: a run of ``S`` packets becomes
BinaryFILE framing (and back) without a Python object per message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numba import njit

from itchflow.hw.endian import be16

LENGTH_SIZE = 2
HEARTBEAT_INTERVAL_NS = 1_000_000_000     # send a heartbeat after 1 s without sending
DEAD_LINK_NS = 15_000_000_000             # 15 s without receiving anything: the link is dead

# Packet types and their payload fields (name, size, kind), declared once.
ALPHA, NUMERIC, RAW = "alpha", "numeric", "raw"
DEBUG, LOGIN_ACCEPTED, LOGIN_REJECTED, SEQUENCED, SERVER_HEARTBEAT, END_OF_SESSION = b"+", b"A", b"J", b"S", b"H", b"Z"
LOGIN_REQUEST, UNSEQUENCED, CLIENT_HEARTBEAT, LOGOUT = b"L", b"U", b"R", b"O"
LAYOUTS: dict[bytes, tuple[tuple[str, int, str], ...]] = {
    LOGIN_REQUEST: (("username", 6, ALPHA), ("password", 10, ALPHA), ("session", 10, ALPHA),
                    ("sequence", 20, NUMERIC)),
    LOGIN_ACCEPTED: (("session", 10, ALPHA), ("sequence", 20, NUMERIC)),
    LOGIN_REJECTED: (("reason", 1, ALPHA),),
    SERVER_HEARTBEAT: (), END_OF_SESSION: (), CLIENT_HEARTBEAT: (), LOGOUT: (),
}
PAYLOAD_SIZE = {t: sum(f[1] for f in fields) for t, fields in LAYOUTS.items()}
NOT_AUTHORIZED, SESSION_NOT_AVAILABLE = b"A", b"S"
REJECT_TEXT = {NOT_AUTHORIZED: "not authorized (bad username or password)",
               SESSION_NOT_AVAILABLE: "session not available"}
_S = SEQUENCED[0]


def encode(ptype: bytes, **fields) -> bytes:
    """One packet of a fixed-layout type, fields by name (alpha str/bytes, numeric int)."""
    out = bytearray()
    for name, size, kind in LAYOUTS[ptype]:
        v = fields[name]
        if kind == NUMERIC:
            s = str(int(v)).encode()
            if int(v) < 0 or len(s) > size:
                raise ValueError(f"{name}={v} does not fit {size} digits")
            out += s.rjust(size)
        else:
            s = v.encode("ascii") if isinstance(v, str) else bytes(v)
            if len(s) > size:
                raise ValueError(f"{name}={s!r} is longer than {size} bytes")
            out += s.ljust(size)
    return (1 + len(out)).to_bytes(2, "big") + ptype + bytes(out)


def packet(ptype: bytes, payload: bytes = b"") -> bytes:
    return (1 + len(payload)).to_bytes(2, "big") + ptype + payload


def decode(ptype: bytes, payload: bytes) -> dict:
    """Fields of a fixed-layout payload; ValueError if its size or a number is wrong."""
    if len(payload) != PAYLOAD_SIZE[ptype]:
        raise ValueError(f"{ptype.decode()!r} packet payload of {len(payload)} bytes, expected {PAYLOAD_SIZE[ptype]}")
    out, pos = {}, 0
    for name, size, kind in LAYOUTS[ptype]:
        raw = payload[pos:pos + size]
        pos += size
        if kind == NUMERIC:
            text = raw.strip()
            out[name] = int(text) if text else 0
            if text and not text.isdigit():
                raise ValueError(f"{name} {raw!r} is not a number")
        else:
            out[name] = raw.rstrip(b" ")
    return out


# ------------------------------------------------------------------ compiled runs
@njit(nogil=True, cache=True)
def soup_to_binaryfile(buf, pos, end, out, out_pos):
    """Convert consecutive whole ``S`` packets in buf[pos:end] to BinaryFILE framing in out.

    Stops at the first packet that is not ``S``, is incomplete, or does not fit in out.
    Returns (new pos, new out_pos, messages). An ``S`` packet of length 1 (empty message)
    stops the run too, so the caller reports it.
    """
    n = 0
    cap = out.shape[0]
    while pos + LENGTH_SIZE < end:
        length = np.int64(be16(buf, pos))
        if length < 2 or buf[pos + 2] != _S:
            break
        if pos + LENGTH_SIZE + length > end:
            break
        mlen = length - 1
        if out_pos + 2 + mlen > cap:
            break
        out[out_pos] = (mlen >> 8) & 0xFF
        out[out_pos + 1] = mlen & 0xFF
        out[out_pos + 2:out_pos + 2 + mlen] = buf[pos + 3:pos + 3 + mlen]
        out_pos += 2 + mlen
        pos += LENGTH_SIZE + length
        n += 1
    return pos, out_pos, n


@njit(nogil=True, cache=True)
def binaryfile_to_soup(buf, pos, end, max_messages, out):
    """Messages of BinaryFILE buf[pos:end] as ``S`` packets in out (as many as fit).

    Returns (new pos, bytes written, messages). The caller has validated the framing.
    """
    o = 0
    n = 0
    cap = out.shape[0]
    while n < max_messages and pos + 2 <= end:
        mlen = np.int64(be16(buf, pos))
        if pos + 2 + mlen > end or o + 3 + mlen > cap:
            break
        length = mlen + 1
        out[o] = (length >> 8) & 0xFF
        out[o + 1] = length & 0xFF
        out[o + 2] = _S
        out[o + 3:o + 3 + mlen] = buf[pos + 2:pos + 2 + mlen]
        o += 3 + mlen
        pos += 2 + mlen
        n += 1
    return pos, o, n


@njit(nogil=True, cache=True)
def _sparse_index(buf, every, index):
    """index[k] = byte offset of message k*every; returns (messages, status, pos)."""
    pos = 0
    end = buf.shape[0]
    n = 0
    while pos < end:
        if pos + 2 > end:
            return n, 1, pos
        length = np.int64(be16(buf, pos))
        if length == 0:
            return n, 2, pos
        if pos + 2 + length > end:
            return n, 1, pos
        if n % every == 0:
            index[n // every] = pos
        pos += 2 + length
        n += 1
    return n, 0, pos


@njit(nogil=True, cache=True)
def _skip(buf, pos, k):
    for _ in range(k):
        pos += 2 + np.int64(be16(buf, pos))
    return pos


class MessageStore:
    """A BinaryFILE served by sequence number: a sparse offset index (one entry per
    ``every`` messages) and a short walk, so a full day costs megabytes, not gigabytes."""

    def __init__(self, data: np.ndarray, source: str = "<buffer>", every: int = 256):
        from itchflow.errors import ITCHFormatError

        self.data = data
        self.every = every
        index = np.empty(len(data) // (3 * every) + 2, np.int64)
        n, status, pos = _sparse_index(data, every, index)
        if status:
            why = "truncated message at the end of the data" if status == 1 else "zero-length message"
            raise ITCHFormatError(why, source=source, offset=int(pos))
        self.index = index[:(n + every - 1) // every].copy()
        self.messages = int(n)

    def offset(self, sequence: int) -> int:
        """Byte offset of message ``sequence`` (1-based); the end of the data past the last."""
        i = sequence - 1
        if i >= self.messages:
            return len(self.data)
        k, r = divmod(i, self.every)
        return int(_skip(self.data, int(self.index[k]), r))


# ------------------------------------------------------------------ events
@dataclass(slots=True)
class LoginAccepted:
    session: bytes
    sequence: int


@dataclass(slots=True)
class LoginRejected:
    reason: bytes

    @property
    def text(self) -> str:
        return REJECT_TEXT.get(self.reason, f"unknown reason {self.reason!r}")


@dataclass(slots=True)
class SequencedData:
    data: np.ndarray        # BinaryFILE-framed messages (a view of the session's buffer)
    first_sequence: int
    count: int


@dataclass(slots=True)
class Debug:
    text: bytes


@dataclass(slots=True)
class EndOfSession:
    sequence: int           # the next sequence number: every message before it was received


@dataclass(slots=True)
class DeadLink:
    silent_ns: int


@dataclass(slots=True)
class ProtocolError:
    reason: str
    offset: int             # byte offset in the stream received on this connection


@dataclass(slots=True)
class LoginRequest:
    username: bytes
    session: bytes
    sequence: int


@dataclass(slots=True)
class Unsequenced:
    data: bytes


@dataclass(slots=True)
class LoggedOut:
    pass


@dataclass
class SoupStats:
    packets_in: int = 0
    packets_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    messages: int = 0
    heartbeats_in: int = 0
    heartbeats_out: int = 0
    debug: int = 0
    unsequenced: int = 0
    protocol_errors: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class _Stream:
    """Common: the inbound byte buffer, outbound bytes, heartbeat and dead-link clocks."""

    heartbeat_type = b""

    def __init__(self, now_ns: int, heartbeat_ns: int = HEARTBEAT_INTERVAL_NS, dead_link_ns: int = DEAD_LINK_NS):
        self.heartbeat_ns = heartbeat_ns
        self.dead_link_ns = dead_link_ns
        self._in = np.zeros(1 << 16, np.uint8)
        self._in_len = 0
        self._consumed = 0          # bytes of the stream consumed before _in[0]
        self._out = bytearray()
        self.last_sent = now_ns
        self.last_received = now_ns
        self.closed = False
        self.stats = SoupStats()

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _send(self, raw: bytes, now_ns: int) -> None:
        self._out += raw
        self.stats.packets_out += 1
        self.stats.bytes_out += len(raw)
        self.last_sent = now_ns

    def _append(self, data) -> None:
        n = len(data)
        if self._in_len + n > len(self._in):
            bigger = np.zeros(max(2 * len(self._in), self._in_len + n), np.uint8)
            bigger[:self._in_len] = self._in[:self._in_len]
            self._in = bigger
        self._in[self._in_len:self._in_len + n] = np.frombuffer(data, np.uint8)
        self._in_len += n
        self.stats.bytes_in += n

    def _compact(self, pos: int) -> None:
        rest = self._in_len - pos
        if rest:
            self._in[:rest] = self._in[pos:self._in_len]
        self._in_len = rest
        self._consumed += pos

    def _next_packet(self, pos: int):
        """(type, payload, new pos) of the whole packet at pos, or None if incomplete."""
        if pos + LENGTH_SIZE > self._in_len:
            return None
        length = (int(self._in[pos]) << 8) | int(self._in[pos + 1])
        if pos + LENGTH_SIZE + length > self._in_len:
            return None
        if length == 0:
            return b"", b"", pos + LENGTH_SIZE
        body = self._in[pos + LENGTH_SIZE:pos + LENGTH_SIZE + length].tobytes()
        return body[:1], body[1:], pos + LENGTH_SIZE + length

    def _timers(self, now_ns: int, events: list) -> None:
        if self.closed:
            return
        if now_ns - self.last_received >= self.dead_link_ns:
            self.closed = True
            events.append(DeadLink(now_ns - self.last_received))
            return
        if self.ready_for_heartbeat() and now_ns - self.last_sent >= self.heartbeat_ns:
            self.stats.heartbeats_out += 1
            self._send(packet(self.heartbeat_type), now_ns)

    def ready_for_heartbeat(self) -> bool:
        return True

    def next_deadline(self) -> int | None:
        if self.closed:
            return None
        return min(self.last_received + self.dead_link_ns, self.last_sent + self.heartbeat_ns)


class SoupClient(_Stream):
    """The client side of one connection: login, receive, heartbeat, dead link, logout.

    After the connection ends (end of session, dead link, or the socket closing), a new
    SoupClient with ``session=client.session`` and ``sequence=client.next_sequence`` resumes
    exactly where this one stopped.
    """

    heartbeat_type = CLIENT_HEARTBEAT

    def __init__(self, username: str | bytes, password: str | bytes, *, session: str | bytes = b"",
                 sequence: int = 1, now_ns: int = 0, out_capacity: int = 1 << 20,
                 heartbeat_ns: int = HEARTBEAT_INTERVAL_NS, dead_link_ns: int = DEAD_LINK_NS):
        super().__init__(now_ns, heartbeat_ns, dead_link_ns)
        self.username, self.password = username, password
        self.session = session.encode() if isinstance(session, str) else bytes(session)
        self.next_sequence = sequence
        self.logged_in = False
        self.ended = False
        self.rejected: LoginRejected | None = None
        self._run = np.zeros(out_capacity, np.uint8)
        self._send(encode(LOGIN_REQUEST, username=username, password=password, session=self.session,
                          sequence=sequence), now_ns)

    def ready_for_heartbeat(self) -> bool:
        return self.logged_in

    def logout(self, now_ns: int) -> None:
        if not self.closed:
            self._send(packet(LOGOUT), now_ns)
            self.closed = True

    def tick(self, now_ns: int) -> list:
        events: list = []
        self._timers(now_ns, events)
        return events

    def receive_data(self, data, now_ns: int) -> list:
        """Bytes from the server (b'' means it closed the connection)."""
        events: list = []
        if self.closed:
            return events
        if len(data) == 0:
            self.closed = True
            return events
        self.last_received = now_ns
        self._append(data)
        pos = 0
        st = self.stats
        while not self.closed:
            if self.logged_in:
                # a run of sequenced data, converted in one compiled call
                p2, o, n = soup_to_binaryfile(self._in, pos, self._in_len, self._run, 0)
                if n:
                    st.packets_in += n
                    st.messages += n
                    first = self.next_sequence
                    self.next_sequence += n
                    # copy: the run buffer is reused by the next call
                    events.append(SequencedData(self._run[:o].copy(), first, n))
                    pos = p2
                    continue
            nxt = self._next_packet(pos)
            if nxt is None:
                break
            ptype, payload, pos2 = nxt
            st.packets_in += 1
            try:
                self._packet(ptype, payload, now_ns, events)
            except ValueError as e:
                st.protocol_errors += 1
                events.append(ProtocolError(str(e), self._consumed + pos))
                self.closed = True
            pos = pos2
        self._compact(pos)
        return events

    def _packet(self, ptype, payload, now_ns, events) -> None:
        if ptype == SERVER_HEARTBEAT:
            self.stats.heartbeats_in += 1
        elif ptype == DEBUG:
            self.stats.debug += 1
            events.append(Debug(payload))
        elif ptype == LOGIN_ACCEPTED and not self.logged_in:
            f = decode(ptype, payload)
            self.logged_in = True
            self.session = f["session"]
            # the server says where it starts (it may differ from what we asked, e.g. for 0
            # "new messages only" or past its end): its numbering rules
            self.next_sequence = f["sequence"]
            events.append(LoginAccepted(f["session"], f["sequence"]))
        elif ptype == LOGIN_REJECTED and not self.logged_in:
            f = decode(ptype, payload)
            self.rejected = LoginRejected(f["reason"])
            self.closed = True
            events.append(self.rejected)
        elif ptype == END_OF_SESSION and self.logged_in:
            decode(ptype, payload)
            self.ended = True
            events.append(EndOfSession(self.next_sequence))
            self.logout(now_ns)
        elif ptype == SEQUENCED and self.logged_in:
            raise ValueError("empty sequenced data packet")
        else:
            raise ValueError(f"unexpected packet type {ptype!r} ({len(payload)} payload bytes)"
                             f"{'' if self.logged_in else ' before login'}")


class SoupServerSession(_Stream):
    """The server side of one connection, serving a MessageStore as one session."""

    heartbeat_type = SERVER_HEARTBEAT

    def __init__(self, store: MessageStore, session: str | bytes, credentials: dict, *, now_ns: int = 0,
                 chunk_bytes: int = 1 << 16):
        super().__init__(now_ns)
        self.store = store
        self.session = (session.encode() if isinstance(session, str) else bytes(session)).ljust(10)[:10]
        self.credentials = {(u.encode() if isinstance(u, str) else u): (p.encode() if isinstance(p, str) else p)
                            for u, p in credentials.items()}
        self.logged_in = False
        self.next_sequence = 1
        self._pos = 0
        self.end_sent = False
        self._chunk = np.zeros(chunk_bytes, np.uint8)

    def ready_for_heartbeat(self) -> bool:
        return self.logged_in

    def tick(self, now_ns: int) -> list:
        events: list = []
        self._timers(now_ns, events)
        return events

    def pump(self, now_ns: int, max_messages: int = 1 << 30) -> int:
        """Queue up to one chunk of sequenced data (and end of session after the last
        message); returns the messages queued. Call while the socket takes more."""
        if not self.logged_in or self.closed or self.end_sent:
            return 0
        data = self.store.data
        pos, o, n = binaryfile_to_soup(data, self._pos, len(data), max_messages, self._chunk)
        if n:
            self._pos = int(pos)
            self.next_sequence += int(n)
            self.stats.messages += int(n)
            self.stats.packets_out += int(n) - 1
            self._send(self._chunk[:o].tobytes(), now_ns)
        if self._pos >= len(data):
            self.end_sent = True
            self._send(packet(END_OF_SESSION), now_ns)
        return int(n)

    def receive_data(self, data, now_ns: int) -> list:
        events: list = []
        if self.closed:
            return events
        if len(data) == 0:
            self.closed = True
            return events
        self.last_received = now_ns
        self._append(data)
        pos = 0
        while not self.closed:
            nxt = self._next_packet(pos)
            if nxt is None:
                break
            ptype, payload, pos2 = nxt
            self.stats.packets_in += 1
            try:
                self._packet(ptype, payload, now_ns, events)
            except ValueError as e:
                self.stats.protocol_errors += 1
                events.append(ProtocolError(str(e), self._consumed + pos))
                self.closed = True
            pos = pos2
        self._compact(pos)
        return events

    def _packet(self, ptype, payload, now_ns, events) -> None:
        if ptype == LOGIN_REQUEST and not self.logged_in:
            f = decode(ptype, payload)
            events.append(LoginRequest(f["username"], f["session"], f["sequence"]))
            if self.credentials.get(f["username"]) != f["password"]:
                self._reject(NOT_AUTHORIZED, now_ns)
                return
            if f["session"] and f["session"] != self.session.rstrip(b" "):
                self._reject(SESSION_NOT_AVAILABLE, now_ns)
                return
            # 0 asks for new messages only: with a file, that is the end of it
            seq = f["sequence"] if f["sequence"] >= 1 else self.store.messages + 1
            seq = min(seq, self.store.messages + 1)
            self.logged_in = True
            self.next_sequence = seq
            self._pos = self.store.offset(seq)
            self._send(encode(LOGIN_ACCEPTED, session=self.session, sequence=seq), now_ns)
        elif ptype == CLIENT_HEARTBEAT and self.logged_in:
            self.stats.heartbeats_in += 1
        elif ptype == UNSEQUENCED and self.logged_in:
            self.stats.unsequenced += 1
            events.append(Unsequenced(payload))
        elif ptype == LOGOUT:
            self.closed = True
            events.append(LoggedOut())
        else:
            raise ValueError(f"unexpected packet type {ptype!r} ({len(payload)} payload bytes)"
                             f"{'' if self.logged_in else ' before login'}")

    def _reject(self, reason: bytes, now_ns: int) -> None:
        self._send(encode(LOGIN_REJECTED, reason=reason), now_ns)
        self.closed = True

    def debug(self, text: bytes, now_ns: int) -> None:
        self._send(packet(DEBUG, text), now_ns)
