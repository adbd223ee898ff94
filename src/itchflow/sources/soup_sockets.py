"""SoupBinTCP socket edge: a threaded server for a file and a reconnecting fetch client.

The protocol is in ``itchflow.protocol.soup.session`` (sans-I/O); here are only sockets,
the clock, and the reconnect policy: after a broken connection or a dead link, log in
again to the same session from the next sequence number still needed.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field

from itchflow.protocol.soup.session import (
    DeadLink,
    EndOfSession,
    LoginRejected,
    MessageStore,
    ProtocolError,
    SequencedData,
    SoupClient,
    SoupServerSession,
)

RECV_SIZE = 1 << 20


@dataclass
class ServerCounters:
    connections: int = 0
    logins: int = 0
    rejected: int = 0
    messages: int = 0
    dead_links: int = 0
    cut: int = 0                      # connections closed on purpose (fault injection)
    stalled: int = 0                  # connections gone silent on purpose (fault injection)
    protocol_errors: int = 0


class SoupServer:
    """Serves one MessageStore as a SoupBinTCP session to any number of clients.

    Fault injection for tests, on the first connection only: ``cut_after`` closes it
    abruptly (RST) after that many messages; ``stall_after`` stops sending anything (data
    and heartbeats) after that many messages but keeps it open, a dead link for the client.
    """

    def __init__(self, store: MessageStore, host: str, port: int, session: str, credentials: dict,
                 cut_after: int | None = None, stall_after: int | None = None):
        self.store, self.session, self.credentials = store, session, credentials
        self.cut_after = cut_after
        self.stall_after = stall_after
        self.counters = ServerCounters()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.address = self.sock.getsockname()
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def serve_forever(self) -> None:
        self.sock.setblocking(False)
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        try:
            while not self._halt.is_set():
                if not poller.poll(100):
                    continue
                try:
                    conn, _ = self.sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                with self._lock:
                    self.counters.connections += 1
                    number = self.counters.connections
                t = threading.Thread(target=self._connection, args=(conn, number), daemon=True)
                t.start()
                self._threads.append(t)
        finally:
            self.sock.close()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="soup-server", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def stop(self) -> None:
        self._halt.set()
        for t in self._threads:
            t.join(5)

    def _connection(self, conn: socket.socket, number: int) -> None:
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = SoupServerSession(self.store, self.session, self.credentials, now_ns=time.monotonic_ns())
        cut = self.cut_after if number == 1 else None
        stall = self.stall_after if number == 1 else None
        pending = b""
        poller = select.poll()
        try:
            while not self._halt.is_set():
                now = time.monotonic_ns()
                if stall is not None and s.stats.messages >= stall and not pending:
                    with self._lock:
                        self.counters.stalled += 1
                    # silent until the client gives up on us and closes
                    while not self._halt.is_set():
                        try:
                            if conn.recv(65536) == b"":
                                return
                        except (BlockingIOError, InterruptedError):
                            time.sleep(0.05)
                        except OSError:
                            return
                    return
                if not pending:
                    if stall is not None:
                        s.pump(now, stall - s.stats.messages)
                    elif cut is not None:
                        left = cut - s.stats.messages
                        if left <= 0:
                            with self._lock:
                                self.counters.cut += 1
                            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                            return      # abrupt close (RST), mid-session
                        s.pump(now, left)
                    else:
                        s.pump(now)
                    pending = s.data_to_send()
                if not pending and s.closed:
                    return
                poller.register(conn.fileno(), select.POLLIN | (select.POLLOUT if pending else 0))
                ready = poller.poll(100)
                for _, mask in ready:
                    if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        try:
                            data = conn.recv(65536)
                        except (BlockingIOError, InterruptedError):
                            data = None
                        except OSError:
                            data = b""
                        if data is not None:
                            self._events(s.receive_data(data, time.monotonic_ns()))
                            if not data:
                                return
                    if mask & select.POLLOUT and pending:
                        try:
                            sent = conn.send(pending)
                            pending = pending[sent:]
                        except (BlockingIOError, InterruptedError):
                            pass
                        except OSError:
                            return
                self._events(s.tick(time.monotonic_ns()))
                pending += s.data_to_send()
        finally:
            with self._lock:
                self.counters.messages += s.stats.messages
                self.counters.logins += int(s.logged_in)
                self.counters.rejected += int(not s.logged_in and s.stats.packets_out > 0)
            conn.close()

    def _events(self, events) -> None:
        for e in events:
            with self._lock:
                if isinstance(e, DeadLink):
                    self.counters.dead_links += 1
                elif isinstance(e, ProtocolError):
                    self.counters.protocol_errors += 1


@dataclass
class FetchResult:
    messages: int = 0
    next_sequence: int = 1
    connections: int = 0
    reconnects: int = 0
    dead_links: int = 0
    ended: bool = False
    rejected: str | None = None
    errors: list = field(default_factory=list)
    seconds: float = 0.0


def fetch(host: str, port: int, username: str, password: str, out, *, session: str = "", sequence: int = 1,
          max_reconnects: int = 10, retry_delay: float = 0.2, max_seconds: float | None = None,
          on_progress=None, on_data=None, dead_link_s: float = 15.0) -> FetchResult:
    """Log in, receive the session into ``out`` (BinaryFILE), reconnect from the next
    sequence after a broken connection or a dead link, stop at end of session.

    on_data: called with each ``SequencedData`` (``.data`` BinaryFILE-framed messages,
    ``.first_sequence``, ``.count``): the hook for a ring.
    """
    res = FetchResult(next_sequence=sequence)
    t0 = time.monotonic()
    client = None
    while True:
        if max_seconds is not None and time.monotonic() - t0 > max_seconds:
            res.errors.append("time limit reached")
            break
        try:
            conn = socket.create_connection((host, port), timeout=5)
        except OSError as e:
            res.errors.append(f"connect: {e}")
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
        _session(conn, client, out, res, on_progress, t0, max_seconds, on_data)
        res.next_sequence = client.next_sequence
        if client.ended or client.rejected is not None:
            break
        if res.reconnects >= max_reconnects:
            res.errors.append("too many reconnects")
            break
        res.reconnects += 1
        time.sleep(retry_delay)
    res.seconds = time.monotonic() - t0
    return res


def _session(conn, client: SoupClient, out, res: FetchResult, on_progress, t0, max_seconds, on_data) -> None:
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
                    res.errors.append(f"send: {e}")
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
                    res.errors.append(f"recv: {e}")
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
                elif isinstance(e, ProtocolError):
                    res.errors.append(f"protocol: {e.reason} at byte {e.offset}")
                elif isinstance(e, EndOfSession):
                    res.ended = True
            pending += client.data_to_send()
            if on_progress is not None:
                on_progress(client)
            if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                return
    finally:
        conn.close()
