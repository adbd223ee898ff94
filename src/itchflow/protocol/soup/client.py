"""The SoupBinTCP client side of one connection, sans-I/O: login, receive, heartbeat,
dead link, logout. Sequenced data is moved in runs by a compiled kernel: a run of ``S``
packets becomes BinaryFILE framing without a Python object per message."""

from __future__ import annotations

import numpy as np

from itchflow.protocol.soup.events import (
    Debug,
    EndOfSession,
    LoginAccepted,
    LoginRejected,
    ProtocolError,
    SequencedData,
    SequenceMismatch,
)
from itchflow.protocol.soup.stream import DEAD_LINK_NS, HEARTBEAT_INTERVAL_NS, Stream
from itchflow.wire.itch import LENGTH_BY_BYTE
from itchflow.wire.soupbintcp import (
    CLIENT_HEARTBEAT,
    DEBUG,
    END_OF_SESSION,
    LOGIN_ACCEPTED,
    LOGIN_REJECTED,
    LOGIN_REQUEST,
    LOGOUT,
    MAX_SEQUENCE,
    SEQUENCED,
    SERVER_HEARTBEAT,
    decode,
    encode,
    packet,
    skip_messages,
    soup_to_binaryfile,
)


class SoupClient(Stream):
    """The client side of one connection (see the module doc).

    After the connection ends (end of session, dead link, or the socket closing), a new
    SoupClient with ``session=client.session`` and ``sequence=client.next_sequence`` resumes
    exactly where this one stopped.

    Login Accepted is checked against what was asked: a server that starts earlier than
    ``sequence`` has its first messages skipped and counted (``duplicates_skipped``, never
    delivered twice); one that starts later is reported (``missing``); a sequence past
    ``MAX_SEQUENCE`` (or, asked a sequence >= 1, more than ``max_skip`` past it) is a fatal
    ``ProtocolError``: the client closes, and reconnecting would not help. So is a Login
    Accepted for another session than the one asked for (when one was).
    """

    heartbeat_type = CLIENT_HEARTBEAT

    def __init__(self, username: str | bytes, password: str | bytes, *, session: str | bytes = b"",
                 sequence: int = 1, now_ns: int = 0, out_capacity: int = 1 << 20,
                 heartbeat_ns: int = HEARTBEAT_INTERVAL_NS, dead_link_ns: int = DEAD_LINK_NS,
                 max_skip: int = 1 << 40, login_timeout_ns: int | None = None):
        # the login's time-out: a server that answered it with heartbeats only held the client as
        # long as it liked (probe 22)
        super().__init__(now_ns, heartbeat_ns, dead_link_ns, login_timeout_ns)
        self._at = 0   # stream offset of the packet being handled (its errors name it)
        if not 0 <= sequence <= MAX_SEQUENCE:
            raise ValueError(f"sequence {sequence} is out of range (0 to {MAX_SEQUENCE})")
        self.username, self.password = username, password
        self.session = session.encode() if isinstance(session, str) else bytes(session)
        self.requested = sequence
        self.next_sequence = sequence
        self.max_skip = int(max_skip)
        self.ended = False
        self.rejected: LoginRejected | None = None
        self.mismatch: SequenceMismatch | None = None
        self.fatal: ProtocolError | None = None
        self._skip = 0                       # messages still to drop (server started earlier than asked)
        self._run = np.zeros(out_capacity, np.uint8)
        self._send(encode(LOGIN_REQUEST, username=username, password=password, session=self.session,
                          sequence=sequence), now_ns)

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
        if not self._take(data, now_ns):
            return events
        pos = 0
        st = self.stats
        while not self.closed:
            if self.logged_in:
                # a run of sequenced data, converted in one compiled call
                p2, o, n = soup_to_binaryfile(self._in, pos, self._in_len, self._run, 0)
                if n:
                    st.packets_in += n
                    pos = p2
                    start, n = self._drop_duplicates(o, n)
                    if n:
                        st.messages += n
                        first = self.next_sequence
                        self.next_sequence += n
                        # copy: the run buffer is reused by the next call
                        events.append(SequencedData(self._run[start:o].copy(), first, n))
                    continue
            nxt = self._next_packet(pos)
            if nxt is None:
                break
            ptype, payload, pos2 = nxt
            st.packets_in += 1
            self._at = self._consumed + pos   # where this packet starts in the stream
            try:
                self._packet(ptype, payload, now_ns, events)
            except ValueError as e:
                st.protocol_errors += 1
                events.append(e.error if isinstance(e, _Fatal) else ProtocolError(str(e), self._consumed + pos))
                self.closed = True
            pos = pos2
        self._compact(pos)
        return events

    def _drop_duplicates(self, o: int, n: int) -> tuple[int, int]:
        """(start byte, messages) of the run in _run[:o] past the messages still to skip."""
        if not self._skip:
            return 0, n
        k = min(self._skip, n)
        self._skip -= k
        self.stats.duplicates_skipped += k
        return int(skip_messages(self._run, 0, o, k)), n - k

    def _packet(self, ptype, payload, now_ns, events) -> None:
        if ptype == SERVER_HEARTBEAT:
            self.stats.heartbeats_in += 1
        elif ptype == DEBUG:
            self.stats.debug += 1
            events.append(Debug(payload))
        elif ptype == LOGIN_ACCEPTED and not self.logged_in:
            f = decode(ptype, payload)
            self._accepted(f["session"], f["sequence"], events)
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
            # the server's own data: asking again gets the same bytes, so the session ends here
            if not payload:
                e = ProtocolError(f"empty sequenced data packet (message {self.next_sequence})", self._at,
                                  fatal=True)
                self.fatal = e
                raise _Fatal(e)
            expected = int(LENGTH_BY_BYTE[payload[0]])
            e = ProtocolError(f"sequenced message {self.next_sequence}: type {chr(payload[0])!r} is {expected}"
                              f" bytes in ITCH 5.0, this message {len(payload)}", self._at, fatal=True)
            self.fatal = e
            raise _Fatal(e)
        else:
            raise ValueError(f"unexpected packet type {ptype!r} ({len(payload)} payload bytes)"
                             f"{'' if self.logged_in else ' before login'}")

    def _accepted(self, session: bytes, seq: int, events: list) -> None:
        asked = self.requested
        if seq < 1 or seq > MAX_SEQUENCE or (asked >= 1 and seq - asked > self.max_skip):
            e = ProtocolError(f"Login Accepted at sequence {seq}, asked for {asked}: not a sequence this "
                              f"client can take (1 to {MAX_SEQUENCE}, at most {self.max_skip} past the one asked)",
                              self._at, fatal=True)
            self.fatal = e
            raise _Fatal(e)
        wanted = self.session.strip(b" ")   # as decode reads the answer's (padded either side)
        if wanted and session != wanted:
            e = ProtocolError(f"Login Accepted for session {session.decode()!r}, asked for {wanted.decode()!r}",
                              self._at, fatal=True)
            self.fatal = e
            raise _Fatal(e)
        self.logged_in = True
        self.session = session
        # 0 asks to start at the most recently generated message: wherever the server starts is right
        if asked >= 1 and seq != asked:
            dup = max(0, asked - seq)
            missing = max(0, seq - asked)
            self._skip = dup
            self.stats.missing += missing
            self.mismatch = SequenceMismatch(asked, seq, dup, missing)
            events.append(self.mismatch)
            self.next_sequence = seq + dup      # the first message delivered is the one asked for
        else:
            self.next_sequence = seq
        events.append(LoginAccepted(session, seq))


class _Fatal(ValueError):
    def __init__(self, error: ProtocolError):
        super().__init__(error.reason)
        self.error = error
