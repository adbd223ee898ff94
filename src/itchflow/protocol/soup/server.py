"""The SoupBinTCP server side of one connection, sans-I/O, serving a MessageStore as one
session. Sequenced data is queued a chunk at a time (``pump``) so the caller bounds what
waits to be sent; a connection that has not logged in within ``login_timeout_ns`` is
closed (``LoginTimeout``), as is one silent past the dead-link time, and one that has not
logged out within ``login_timeout_ns`` of the end of session (``LogoutTimeout``)."""

from __future__ import annotations

import numpy as np

from itchflow.protocol.soup.events import (
    Debug,
    LoggedOut,
    LoginRequest,
    LogoutTimeout,
    ProtocolError,
    Unsequenced,
)
from itchflow.protocol.soup.store import MessageStore
from itchflow.protocol.soup.stream import DEAD_LINK_NS, HEARTBEAT_INTERVAL_NS, Stream
from itchflow.wire.soupbintcp import (
    CLIENT_HEARTBEAT,
    DEBUG,
    END_OF_SESSION,
    LOGIN_ACCEPTED,
    LOGIN_REJECTED,
    LOGIN_REQUEST,
    LOGOUT,
    NOT_AUTHORIZED,
    SERVER_HEARTBEAT,
    SESSION_NOT_AVAILABLE,
    SESSION_SIZE,
    UNSEQUENCED,
    binaryfile_to_soup,
    decode,
    encode,
    packet,
)

LOGIN_TIMEOUT_NS = 5_000_000_000


class SoupServerSession(Stream):
    """The server side of one connection, serving a MessageStore as one session."""

    heartbeat_type = SERVER_HEARTBEAT

    def __init__(self, store: MessageStore, session: str | bytes, credentials: dict, *, now_ns: int = 0,
                 chunk_bytes: int = 1 << 16, heartbeat_ns: int = HEARTBEAT_INTERVAL_NS,
                 dead_link_ns: int = DEAD_LINK_NS, login_timeout_ns: int = LOGIN_TIMEOUT_NS):
        super().__init__(now_ns, heartbeat_ns, dead_link_ns, login_timeout_ns)
        self.store = store
        name = session.encode() if isinstance(session, str) else bytes(session)
        self.session = name[:SESSION_SIZE].strip(b" ")   # as decode reads it (padding either side)
        self.credentials = {(u.encode() if isinstance(u, str) else u): (p.encode() if isinstance(p, str) else p)
                            for u, p in credentials.items()}
        self.next_sequence = 1
        self._pos = 0
        self.end_sent = False
        self.end_sent_ns = 0
        self._chunk = np.zeros(chunk_bytes, np.uint8)

    def tick(self, now_ns: int) -> list:
        events: list = []
        if not self.closed and self.end_sent and now_ns - self.end_sent_ns >= self.login_timeout_ns:
            self.closed = True
            events.append(LogoutTimeout(now_ns - self.end_sent_ns))
            return events
        self._timers(now_ns, events)
        return events

    def next_deadline(self) -> int | None:
        d = super().next_deadline()
        if d is not None and self.end_sent:
            d = min(d, self.end_sent_ns + self.login_timeout_ns)
        return d

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
            self.end_sent_ns = now_ns
            self._send(packet(END_OF_SESSION), now_ns)
        return int(n)

    def receive_data(self, data, now_ns: int) -> list:
        events: list = []
        if not self._take(data, now_ns):
            return events
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
            if f["session"] and f["session"] != self.session:
                self._reject(SESSION_NOT_AVAILABLE, now_ns)
                return
            # 0 (or blank) asks to start "at the most recently generated message" (the spec):
            # with a file, its last one
            seq = f["sequence"] if f["sequence"] >= 1 else max(self.store.messages, 1)
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
        elif ptype == DEBUG:   # either side may send one (free text): counted, not answered
            self.stats.debug += 1
            events.append(Debug(payload))
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
