"""SoupBinTCP socket edge: a one-thread selector server for a file and a reconnecting
fetch client.

The protocol is in ``itchflow.protocol.soup`` (sans-I/O); here are only sockets, the clock,
and the policies: the server holds at most ``max_connections``, closes a connection that has
not logged in within the login time-out, one silent past the dead-link time (15 s,
DESIGN.md section 4) and one whose send queue has not drained for ``send_timeout_s``; the
client logs in again after a broken connection or a dead link, from the next sequence
number still needed.
"""

from __future__ import annotations

import select
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from itchflow.protocol.soup import (
    DeadLink,
    EndOfSession,
    LoginRejected,
    LoginTimeout,
    LogoutTimeout,
    MessageStore,
    ProtocolError,
    SequencedData,
    SequenceMismatch,
    SoupClient,
    SoupServerSession,
)

from itchflow.sources.udp import peer_text   # one address format for every report

RECV_SIZE = 1 << 20

_LINGER_RST = b"\x01\x00\x00\x00\x00\x00\x00\x00"   # SO_LINGER on, 0 s: close sends RST


@dataclass
class ServerCounters:
    connections: int = 0
    logins: int = 0
    rejected: int = 0
    messages: int = 0                 # messages queued for the connections (see unsent_bytes)
    unsent_bytes: int = 0             # of those, bytes a connection closed before the kernel took them
    dead_links: int = 0
    cut: int = 0                      # connections closed on purpose (fault injection)
    stalled: int = 0                  # connections gone silent on purpose (fault injection)
    protocol_errors: int = 0
    refused_connections: int = 0      # over max_connections, every one logged in: closed at once
    evicted_before_login: int = 0     # over max_connections: the oldest not yet logged in made room
    debug_packets: int = 0            # Debug (+) packets the clients sent
    login_timeouts: int = 0           # no login within the login time-out
    logout_timeouts: int = 0          # no logout within the login time-out of the end of session
    slow_clients: int = 0             # send queue not drained within send_timeout_s: dropped
    open_connections: int = 0         # now


DROP_LOG_LIMIT = 1000   # clients named in ``SoupServer.drop_log`` (all are counted)
REFUSED_LOG_LIMIT = 100  # of those, refused connections (a flood of them is one count, not the log)


class _Conn:
    __slots__ = ("sock", "fd", "session", "number", "pending", "stuck_since", "cut", "stall", "stalled", "dropped",
                 "peer")

    def __init__(self, sock, session, number, cut, stall, peer: str = "?"):
        self.sock, self.fd, self.session, self.number = sock, sock.fileno(), session, number
        self.peer = peer               # "HOST:PORT": who a drop is reported against
        self.pending = b""
        self.stuck_since = None        # when the send queue last stopped draining
        self.cut, self.stall, self.stalled = cut, stall, False
        # dropped: the client broke the session (dead link, no login in time, a protocol
        # error) or stopped reading; its connection is reset, not closed gracefully, so the
        # kernel does not go on delivering what was queued (a client that never opens its
        # window kept a closed connection's megabytes trickling out for minutes)
        self.dropped = False


class SoupServer:
    """Serves one MessageStore as a SoupBinTCP session, from one thread (a selector).

    Bounds: ``max_connections`` at once (past it, a new connection takes the slot of the
    oldest one not yet logged in, which is dropped; when every one is logged in it is closed
    at once; both counted), so that peers without credentials, holding slots until the login
    time-out, cannot lock the others out; ``login_timeout_s`` to log in; ``dead_link_s`` of silence from the client; a send queue
    of at most one chunk, dropped when it does not drain for ``send_timeout_s``.

    Fault injection for tests, on the first connection only: ``cut_after`` closes it
    abruptly (RST) after that many messages; ``stall_after`` stops sending anything (data
    and heartbeats) after that many messages but keeps reading, a dead link for the client.
    """

    def __init__(self, store: MessageStore, host: str, port: int, session: str, credentials: dict,
                 cut_after: int | None = None, stall_after: int | None = None, *, max_connections: int = 64,
                 login_timeout_s: float = 5.0, dead_link_s: float = 15.0, send_timeout_s: float = 15.0,
                 heartbeat_s: float = 1.0, chunk_bytes: int = 1 << 16, on_drop=None):
        """on_drop(line): called (on the server's thread) with each line of ``drop_log`` as it
        is written: who was dropped or refused, and why."""
        self.store, self.session, self.credentials = store, session, credentials
        self.cut_after = cut_after
        self.stall_after = stall_after
        self.max_connections = int(max_connections)
        self.login_timeout_ns = int(login_timeout_s * 1e9)
        self.dead_link_ns = int(dead_link_s * 1e9)
        self.send_timeout_ns = int(send_timeout_s * 1e9)
        self.heartbeat_ns = int(heartbeat_s * 1e9)
        self.chunk_bytes = int(chunk_bytes)
        self.counters = ServerCounters()
        # The compiled framing loaded now, not on the first login: its load (seconds with a cold
        # cache) would hold the server's one thread, and every client, silent (probe 22).
        import numpy as np

        from itchflow.wire.soupbintcp import binaryfile_to_soup
        binaryfile_to_soup(np.zeros(0, np.uint8), 0, 0, 1, np.zeros(64, np.uint8))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._conns: dict[int, _Conn] = {}
        # each client dropped or refused, by address and why (the first DROP_LOG_LIMIT)
        self.drop_log: list[str] = []
        self._refusals_logged = 0
        self.on_drop = on_drop
        self.on_drop_error: str | None = None   # why on_drop was given up (it raised), if it was

    # ------------------------------------------------------------ lifecycle
    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.serve_forever, name="soup-server", daemon=True)
        self._thread.start()
        return self._thread

    @property
    def serving(self) -> bool:
        """The server's thread is running (it ends only when stopped, or on an error of its own)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(5)

    def serve_forever(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        try:
            while not self._halt.is_set():
                now = time.monotonic_ns()
                timeout = 0.1
                for c in self._conns.values():
                    d = c.session.next_deadline()
                    if d is not None:
                        timeout = min(timeout, max(0.0, (d - now) / 1e9))
                for key, mask in sel.select(timeout):
                    if key.data is None:
                        self._accept(sel)
                    else:
                        self._ready(sel, key.data, mask)
                now = time.monotonic_ns()
                for c in list(self._conns.values()):
                    self._service(sel, c, now)
        finally:
            for c in list(self._conns.values()):
                self._close(sel, c)
            sel.close()
            self.sock.close()

    # ------------------------------------------------------------ connections
    def _accept(self, sel) -> None:
        for _ in range(64):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            ct = self.counters
            if len(self._conns) >= self.max_connections and not self._evict_one_not_logged_in(sel):
                ct.refused_connections += 1
                self._refusals_logged += 1
                if self._refusals_logged <= REFUSED_LOG_LIMIT:
                    self._log(peer_text(address), f"refused: {self.max_connections} connections already open, "
                                                  "every one logged in")
                    if self._refusals_logged == REFUSED_LOG_LIMIT:
                        self._log("*", "more refused connections are only counted (refused_connections)")
                conn.close()
                continue
            ct.connections += 1
            ct.open_connections += 1
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            first = ct.connections == 1
            s = SoupServerSession(self.store, self.session, self.credentials, now_ns=time.monotonic_ns(),
                                  chunk_bytes=self.chunk_bytes, heartbeat_ns=self.heartbeat_ns,
                                  dead_link_ns=self.dead_link_ns, login_timeout_ns=self.login_timeout_ns)
            c = _Conn(conn, s, ct.connections, self.cut_after if first else None,
                      self.stall_after if first else None, peer_text(address) or "?")
            self._conns[c.fd] = c
            sel.register(conn, selectors.EVENT_READ, c)

    def _evict_one_not_logged_in(self, sel) -> bool:
        """Drop the oldest connection that has not logged in, to make room for a new one. Their
        input is read first: a login already in a socket's buffer is taken, not evicted (a
        client whose login came in the same round as a newer connection lost its slot to it:
        probe 24)."""
        for c in [c for c in self._conns.values() if not c.session.logged_in and not c.session.closed]:
            self._ready(sel, c, selectors.EVENT_READ)
        waiting = [c for c in self._conns.values() if not c.session.logged_in and not c.session.closed]
        if not waiting:
            return False
        c = min(waiting, key=lambda c: c.number)
        self.counters.evicted_before_login += 1
        self._log(c.peer, f"dropped: not logged in, its slot given to a newer connection "
                          f"({self.max_connections} connections open)")
        c.dropped = True
        self._close(sel, c)
        return True

    def _ready(self, sel, c: _Conn, mask) -> None:
        if c.sock.fileno() < 0:
            return
        if mask & selectors.EVENT_READ:
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data is not None:
                self._events(c.session.receive_data(data, time.monotonic_ns()), c)
                if c.dropped:
                    self._close(sel, c)
                    return
                if not data:
                    self._close(sel, c)
                    return
        if mask & selectors.EVENT_WRITE:
            self._flush(sel, c)

    def _service(self, sel, c: _Conn, now: int) -> None:
        """Timers, the next chunk, fault injection, and the time-outs of one connection."""
        s = c.session
        if c.sock.fileno() < 0:
            return
        self._events(s.tick(now), c)
        if c.dropped:
            self._close(sel, c)
            return
        if c.stall is not None and s.stats.messages >= c.stall and not c.pending:
            if not c.stalled:
                c.stalled = True
                self.counters.stalled += 1
            s.data_to_send()            # silent: nothing goes out (the client's dead link)
            if s.closed:
                self._close(sel, c)
            return
        for _ in range(16):             # up to 16 chunks a turn while the socket takes them
            if not c.pending:
                if c.cut is not None and s.stats.messages >= c.cut:
                    self.counters.cut += 1
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                    self._close(sel, c)     # abrupt close (RST), mid-session
                    return
                limit = 1 << 30
                if c.cut is not None:
                    limit = c.cut - s.stats.messages
                elif c.stall is not None:
                    limit = c.stall - s.stats.messages
                s.pump(now, limit)
            c.pending += s.data_to_send()
            if not c.pending:
                break
            self._flush(sel, c)
            if c.fd not in self._conns:
                return                      # the send failed: closed
            if c.pending:
                break                       # the socket is full: wait until it is writable
        if c.pending and c.stuck_since is not None and now - c.stuck_since >= self.send_timeout_ns:
            self.counters.slow_clients += 1
            self._log(c.peer, f"dropped: took nothing sent for {self.send_timeout_ns / 1e9:g} s")
            c.dropped = True
            self._close(sel, c)
            return
        if s.closed and not c.pending:
            self._close(sel, c)

    def _flush(self, sel, c: _Conn) -> None:
        try:
            sent = c.sock.send(c.pending)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(sel, c)
            return
        c.pending = c.pending[sent:]
        if sent or not c.pending:
            c.stuck_since = None if not c.pending else time.monotonic_ns()
        elif c.stuck_since is None:
            c.stuck_since = time.monotonic_ns()
        s = c.session
        # writable interest while there is more to queue, so the next chunk goes out as soon
        # as the socket takes it (not at the next timer)
        more = s.logged_in and not s.end_sent and not s.closed and not c.stalled
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.pending or more else 0)
        try:
            sel.modify(c.sock, want, c)
        except (KeyError, ValueError):
            pass

    def _close(self, sel, c: _Conn) -> None:
        if self._conns.pop(c.fd, None) is None:
            return              # already closed
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        ct, s = self.counters, c.session
        ct.open_connections -= 1
        ct.messages += s.stats.messages
        ct.unsent_bytes += len(c.pending)   # queued, never sent: a dropped slow client's, an RST's
        ct.logins += int(s.logged_in)
        ct.debug_packets += s.stats.debug
        ct.rejected += int(not s.logged_in and s.stats.packets_out > 0)
        if c.dropped:
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            except OSError:
                pass
        c.sock.close()

    def _events(self, events, c: _Conn) -> None:
        ct = self.counters
        for e in events:
            if isinstance(e, DeadLink):
                ct.dead_links += 1
                why = f"dead link: silent for {e.silent_ns / 1e9:.1f} s"
            elif isinstance(e, LoginTimeout):
                ct.login_timeouts += 1
                why = f"no login within {e.waited_ns / 1e9:.1f} s"
            elif isinstance(e, LogoutTimeout):
                ct.logout_timeouts += 1
                why = f"no logout within {e.waited_ns / 1e9:.1f} s of the end of session"
            elif isinstance(e, ProtocolError):
                ct.protocol_errors += 1
                why = f"protocol error at byte {e.offset} of its stream: {e.reason}"
            else:
                continue
            self._log(c.peer, f"dropped: {why}")
            c.dropped = True

    def _log(self, peer, why: str) -> None:
        if len(self.drop_log) < DROP_LOG_LIMIT:
            self._say(f"client {peer or '?'}: {why}" if peer != "*" else why)
            if len(self.drop_log) == DROP_LOG_LIMIT:
                self._say("more dropped clients are only counted")

    def _say(self, line: str) -> None:
        self.drop_log.append(line)
        if self.on_drop is not None:
            try:
                self.on_drop(line)
            except Exception as e:   # (stderr gone: a closed pipe) the server goes on serving
                self.on_drop = None
                self.on_drop_error = f"{type(e).__name__}: {e}"


@dataclass
class FetchResult:
    messages: int = 0
    next_sequence: int = 1
    connections: int = 0
    reconnects: int = 0
    dead_links: int = 0
    login_timeouts: int = 0          # connections whose login got no answer in time (heartbeats are none)
    debug_packets: int = 0           # Debug (+) packets the server sent
    ended: bool = False
    rejected: str | None = None
    refused: str | None = None       # the server's answer made no sense (e.g. an absurd sequence): stopped
    duplicates_skipped: int = 0      # messages a server sent again (started earlier than asked): not written
    missing: int = 0                 # messages a server skipped (started later than asked)
    errors: list = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False        # stopped by KeyboardInterrupt (Ctrl-C)
    from_sequence: int = 1           # the sequence asked for first

    @property
    def past_end(self) -> bool:
        return fetched_past_end(self.__dict__)


def fetched_past_end(result: dict) -> bool:
    """A fetch's result (``FetchResult`` fields) ended with nothing at or after the sequence
    asked for: past the session's end (0 messages with no word, probe 25)."""
    return bool(result.get("ended")) and not result.get("messages") and result.get("from_sequence", 1) > 1


def fetch(host: str, port: int, username: str, password: str, out, *, session: str = "", sequence: int = 1,
          max_reconnects: int = 10, retry_delay: float = 0.2, max_seconds: float | None = None,
          on_progress=None, on_data=None, dead_link_s: float = 15.0) -> FetchResult:
    """Log in, receive the session into ``out`` (BinaryFILE), reconnect from the next
    sequence after a broken connection or a dead link, stop at end of session.

    on_data: called with each ``SequencedData`` (``.data`` BinaryFILE-framed messages,
    ``.first_sequence``, ``.count``): the hook for a ring. A Login Accepted that starts
    earlier than asked has its repeats skipped and counted; one that makes no sense (a
    sequence past 2**63 - 2**32) stops the fetch with ``refused`` set. On KeyboardInterrupt
    the result so far is attached to the exception as ``.result``.
    """
    res = FetchResult(next_sequence=sequence, from_sequence=sequence)
    t0 = time.monotonic()
    try:
        _fetch(host, port, username, password, out, session, sequence, max_reconnects, retry_delay, max_seconds,
               on_progress, on_data, dead_link_s, res, t0)
    except KeyboardInterrupt as e:
        res.seconds = time.monotonic() - t0
        e.result = res
        raise
    res.seconds = time.monotonic() - t0
    return res


def _fetch(host, port, username, password, out, session, sequence, max_reconnects, retry_delay, max_seconds,
           on_progress, on_data, dead_link_s, res, t0) -> None:
    client = None
    while True:
        if max_seconds is not None and time.monotonic() - t0 > max_seconds:
            res.errors.append("time limit reached")
            break
        peer = f"{host}:{port}"
        try:
            conn = socket.create_connection((host, port), timeout=5)
        except OSError as e:
            res.errors.append(f"connect to {peer}: {e}")
            if res.reconnects >= max_reconnects:
                break
            res.reconnects += 1
            time.sleep(retry_delay)
            continue
        res.connections += 1
        if client is not None:
            session = client.session.decode("ascii")
        client = SoupClient(username, password, session=session, sequence=res.next_sequence,
                            now_ns=time.monotonic_ns(), dead_link_ns=int(dead_link_s * 1e9))
        try:
            _session(conn, client, out, res, on_progress, t0, max_seconds, on_data, peer)
        finally:
            res.next_sequence = client.next_sequence
            res.duplicates_skipped += client.stats.duplicates_skipped
            res.debug_packets += client.stats.debug
        if client.ended or client.rejected is not None or client.fatal is not None:
            if client.fatal is not None:
                res.refused = client.fatal.reason
            break
        if res.reconnects >= max_reconnects:
            res.errors.append("too many reconnects" if max_reconnects else "the connection ended (no reconnects allowed)")
            break
        res.reconnects += 1
        time.sleep(retry_delay)


def _session(conn, client: SoupClient, out, res: FetchResult, on_progress, t0, max_seconds, on_data,
             peer: str = "?") -> None:
    conn.setblocking(False)
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    pending = client.data_to_send()
    try:
        while True:
            if pending:
                try:
                    sent = conn.send(pending)
                    pending = pending[sent:]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    res.errors.append(f"send to {peer}: {e}")
                    return
            if client.closed and not pending:
                return
            deadline = client.next_deadline()
            wait = 100 if deadline is None else max(0, min(100, (deadline - time.monotonic_ns()) // 1_000_000 + 1))
            ready = poller.poll(wait)
            now = time.monotonic_ns()
            events = []
            if ready:
                try:
                    data = conn.recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError as e:  # reset by the peer
                    res.errors.append(f"recv from {peer}: {e}")
                    data = b""
                if data is not None:
                    events = client.receive_data(data, now)
                    if not data:
                        return
            events += client.tick(now)
            for e in events:
                if isinstance(e, SequencedData):
                    if out is not None:
                        out.write(memoryview(e.data))
                    if on_data is not None:
                        on_data(e)
                    res.messages += e.count
                elif isinstance(e, LoginRejected):
                    res.rejected = e.text
                elif isinstance(e, DeadLink):
                    res.dead_links += 1
                elif isinstance(e, LoginTimeout):
                    res.login_timeouts += 1
                    res.errors.append(f"{peer}: no answer to the login (accepted or rejected) in "
                                      f"{e.waited_ns / 1e9:.1f} s")
                elif isinstance(e, ProtocolError):
                    res.errors.append(f"protocol: {e.reason} at byte {e.offset} of the stream from {peer}")
                elif isinstance(e, EndOfSession):
                    res.ended = True
                elif isinstance(e, SequenceMismatch):
                    res.missing += e.missing
            pending += client.data_to_send()
            if on_progress is not None:
                on_progress(client)
            if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                return
    finally:
        conn.close()
