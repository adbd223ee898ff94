"""What client and server connections share: the inbound byte buffer, outbound bytes, and
the login, heartbeat and dead-link clocks (sans-I/O: time is given)."""

from __future__ import annotations

import numpy as np

from itchflow.protocol.soup.events import DeadLink, LoginTimeout, SoupStats
from itchflow.wire.soupbintcp import LENGTH_SIZE, packet

HEARTBEAT_INTERVAL_NS = 1_000_000_000     # send a heartbeat after 1 s without sending
DEAD_LINK_NS = 15_000_000_000             # 15 s without a whole packet received: the link is dead


class Stream:
    heartbeat_type = b""

    def __init__(self, now_ns: int, heartbeat_ns: int = HEARTBEAT_INTERVAL_NS, dead_link_ns: int = DEAD_LINK_NS,
                 login_timeout_ns: int | None = None):
        self.heartbeat_ns = heartbeat_ns
        self.dead_link_ns = dead_link_ns
        # Either side's login is over (accepted or rejected) within this, or the connection is
        # closed (LoginTimeout): heartbeats and Debug packets are no answer to it. Default: the
        # dead-link time.
        self.login_timeout_ns = dead_link_ns if login_timeout_ns is None else int(login_timeout_ns)
        self.opened_ns = now_ns
        self.logged_in = False
        self._in = np.zeros(1 << 16, np.uint8)
        self._in_len = 0
        self._consumed = 0          # bytes of the stream consumed before _in[0]
        self._out = bytearray()
        self.last_sent = now_ns
        self.last_received = now_ns
        self._taken_ns = now_ns
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

    def _take(self, data, now_ns: int) -> bool:
        """Buffer bytes from the peer; False when there is nothing to parse (closed already, or
        b'': the peer closed the connection, which closes this side too)."""
        if self.closed:
            return False
        if len(data) == 0:
            self.closed = True
            return False
        self._taken_ns = now_ns     # a sign of life once a whole packet is in (see _compact)
        self._append(data)
        return True

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
        """Drop the ``pos`` bytes of whole packets just parsed. Only whole packets keep the
        link alive: a peer trickling one byte of a packet at a time is still a dead link."""
        if pos:
            self.last_received = self._taken_ns
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
        if not self.logged_in and now_ns - self.opened_ns >= self.login_timeout_ns:
            self.closed = True
            events.append(LoginTimeout(now_ns - self.opened_ns))
            return
        if now_ns - self.last_received >= self.dead_link_ns:
            self.closed = True
            events.append(DeadLink(now_ns - self.last_received))
            return
        if self.ready_for_heartbeat() and now_ns - self.last_sent >= self.heartbeat_ns:
            self.stats.heartbeats_out += 1
            self._send(packet(self.heartbeat_type), now_ns)

    def ready_for_heartbeat(self) -> bool:
        return self.logged_in

    def next_deadline(self) -> int | None:
        if self.closed:
            return None
        d = min(self.last_received + self.dead_link_ns, self.last_sent + self.heartbeat_ns)
        return d if self.logged_in else min(d, self.opened_ns + self.login_timeout_ns)
