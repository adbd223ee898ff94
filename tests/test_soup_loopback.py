"""SoupBinTCP over loopback TCP (127.0.0.1): a session served from a file, a connection cut
in the middle, the client reconnecting from the next sequence: identical output.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import itchflow

from test_net_loopback import synthetic_day

pytestmark = pytest.mark.timeout(90)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def serve(data, cut_after=None, stall_after=None):
    from itchflow.sources.soup_sockets import SoupServer
    from itchflow.protocol.soup import MessageStore

    server = SoupServer(MessageStore(data), "127.0.0.1", 0, "TESTDAY", {"alice": "secret"}, cut_after=cut_after,
                        stall_after=stall_after)
    server.start()
    return server


def test_fetch_whole_session():
    from itchflow.sources.soup_sockets import fetch

    data = synthetic_day(30_000, seed=2)
    server = serve(data)
    try:
        out = io.BytesIO()
        res = fetch(*server.address, "alice", "secret", out, max_seconds=60)
    finally:
        server.stop()
    assert res.ended and res.reconnects == 0 and res.messages == 30_000
    assert out.getvalue() == data.tobytes()


def test_reconnect_mid_session_loses_and_duplicates_nothing():
    from itchflow.sources.soup_sockets import fetch

    data = synthetic_day(50_000, seed=4)
    server = serve(data, cut_after=12_345)
    try:
        out = io.BytesIO()
        runs = []
        res = fetch(*server.address, "alice", "secret", out, retry_delay=0.05, max_seconds=60,
                    on_data=lambda d: runs.append((d.first_sequence, d.count)))
    finally:
        server.stop()
    # the runs number every message exactly once, in order, across the reconnect
    assert runs[0][0] == 1 and all(a + n == b for (a, n), (b, _) in zip(runs, runs[1:]))
    assert sum(n for _, n in runs) == 50_000
    assert server.counters.cut == 1 and res.reconnects == 1 and res.connections == 2
    assert res.ended and res.messages == 50_000 and res.next_sequence == 50_001
    assert out.getvalue() == data.tobytes()


def test_dead_link_then_reconnect_loses_and_duplicates_nothing():
    """The server goes silent mid-session (no data, no heartbeats): the client declares the
    link dead (after 0.5 s here instead of 15 s) and resumes from the next sequence."""
    from itchflow.sources.soup_sockets import fetch

    data = synthetic_day(40_000, seed=6)
    server = serve(data, stall_after=9_999)
    try:
        out = io.BytesIO()
        res = fetch(*server.address, "alice", "secret", out, retry_delay=0.05, max_seconds=60, dead_link_s=0.5)
    finally:
        server.stop()
    assert server.counters.stalled == 1 and res.dead_links == 1 and res.reconnects == 1
    assert res.ended and res.messages == 40_000
    assert out.getvalue() == data.tobytes()


def test_fetch_from_a_sequence_and_rejects():
    from itchflow.sources.soup_sockets import fetch
    from itchflow.protocol.mold.codec import index_messages

    data = synthetic_day(5_000, seed=5)
    offsets = index_messages(data)[0]
    server = serve(data)
    try:
        out = io.BytesIO()
        res = fetch(*server.address, "alice", "secret", out, sequence=4_001, max_seconds=30)
        assert res.ended and out.getvalue() == data[offsets[4_000]:].tobytes()
        assert not res.past_end
        # past the end: 0 messages and the end of session, which said nothing (probe 25)
        past = fetch(*server.address, "alice", "secret", io.BytesIO(), sequence=5_001, max_seconds=30)
        assert past.ended and past.messages == 0 and past.past_end and past.from_sequence == 5_001
        whole = fetch(*server.address, "alice", "secret", io.BytesIO(), sequence=5_000, max_seconds=30)
        assert whole.messages == 1 and not whole.past_end
        bad = fetch(*server.address, "alice", "nope", io.BytesIO(), max_seconds=30)
        assert bad.rejected and "not authorized" in bad.rejected and bad.messages == 0
        bad = fetch(*server.address, "alice", "secret", io.BytesIO(), session="OTHER", max_seconds=30)
        assert bad.rejected and "not available" in bad.rejected
    finally:
        server.stop()


@contextlib.contextmanager
def _served_day(tmp_path, *fault: str):
    """A day served by `itchflow soup serve` (user bob, port 0, with fault options): yields
    (the day's bytes, fetch(*options, password="pw") -> the `soup fetch` CompletedProcess).
    The server says where it bound (readiness), no port reserved by bind-then-close."""
    from net_procs import finish, start, wait_for_line

    data = synthetic_day(20_000, seed=8)
    src = tmp_path / "day.itch"
    src.write_bytes(data.tobytes())
    env = dict(os.environ, PYTHONPATH=SRC)
    cli = "import sys; from itchflow.cli import main; import itchflow.cli.net; sys.exit(main())"
    server = start(["soup", "serve", str(src), "--host", "127.0.0.1", "--port", "0", "--user", "bob",
                    "--password", "pw", *fault, "--max-seconds", "60"])
    try:
        port = wait_for_line(server, r"on 127\.0\.0\.1:(\d+)").group(1)

        def fetch(*options: str, password: str = "pw") -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-c", cli, "soup", "fetch", f"127.0.0.1:{port}", "--user", "bob",
                                   "--password", password, *options], env=env, capture_output=True, text=True,
                                  timeout=60)
        yield data.tobytes(), fetch
    finally:
        server.terminate()
        finish(server, 10)


def test_cli_soup_serve_and_fetch(tmp_path):
    out = tmp_path / "out.itch"
    with _served_day(tmp_path, "--cut-after", "7000") as (day, fetch):
        r = fetch("--out", str(out), "--json")
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert report["ended"] and report["reconnects"] == 1 and report["messages"] == 20_000
        assert out.read_bytes() == day
        # A refused login leaves no empty --out behind (it passed for an empty session), and a
        # file that was there before is left alone.
        wrong = tmp_path / "wrong.itch"
        for target, before in ((wrong, None), (out, day)):
            r = fetch("--out", str(target), password="nope")
            assert r.returncode == 1 and "login rejected" in r.stderr, r.stderr
            if before is None:
                assert not target.exists()
            else:
                assert target.exists()


def test_cli_soup_fetch_past_the_end_says_so(tmp_path):
    with _served_day(tmp_path) as (day, fetch):
        r = fetch("--from-sequence", "20001", "-q")
    assert r.returncode == 0, r.stderr
    assert "no message at or after sequence 20,001 (the first asked for)" in r.stderr, r.stderr


def test_cli_soup_fetch_of_a_session_cut_short_keeps_it_as_part(tmp_path):
    """probe 7: a fetch that stopped before the end of session (exit 2) renamed what it had to
    the final name, where it read as a valid, shorter day."""
    out = tmp_path / "out.itch"
    with _served_day(tmp_path, "--stall-after", "7000") as (day, fetch):
        r = fetch("--out", str(out), "--json", "--max-seconds", "2", "--dead-link", "30")
    assert r.returncode == 2, r.stderr
    part = tmp_path / "out.itch.part"
    assert not out.exists() and part.exists()
    assert f"the session did not reach its end: what arrived is in {part}" in r.stderr
    got = part.read_bytes()
    assert len(got) > 0 and day.startswith(got)
    assert json.loads(r.stdout)["messages"] == itchflow.stats(str(part)).messages == 7000


# --------------------------------------------------------------------------- hostile peers (issue 10)
def _wait_until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def _closed_by_peer(sock) -> bool:
    """True once the server has closed this client socket (EOF or reset), without blocking."""
    import select
    import socket as socketlib

    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1 << 20, socketlib.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _repeated_day(messages: int):
    import numpy as np

    one = np.frombuffer(b"\x00\x0cS" + bytes(11), np.uint8)   # a 12-byte 'S' message, framed
    return np.tile(one, messages)


def test_server_holds_no_thread_or_socket_past_its_time_outs():
    """Silent and byte-a-tick clients are closed at the login time-out, a client that stops
    reading is dropped when its send queue does not drain, one that stops talking at the
    dead link, a connection past the cap takes the slot of the oldest one not logged in (peers
    without credentials held every slot until the login time-out: probe 22); one server
    thread throughout, and each drop said as it happens."""
    import os
    import socket
    import threading

    from itchflow.protocol.soup import MessageStore
    from itchflow.sources.soup_sockets import SoupServer
    from itchflow.wire.soupbintcp import CLIENT_HEARTBEAT, LOGIN_REQUEST, encode, packet

    fds_before = len(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    said = []
    server = SoupServer(MessageStore(_repeated_day(1_000_000)), "127.0.0.1", 0, "HOLD", {"u": "p"},
                        max_connections=2, login_timeout_s=0.3, dead_link_s=0.6, send_timeout_s=0.6,
                        heartbeat_s=0.1, on_drop=said.append)
    server.start()
    clients = []

    def connect(rcvbuf=None):
        c = socket.socket()
        if rcvbuf:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        c.connect(server.address)
        clients.append(c)
        return c

    login = encode(LOGIN_REQUEST, username="u", password="p", session="", sequence=1)
    try:
        assert threading.active_count() == threads_before + 1
        silent = connect()
        slow = connect()
        _wait_until(lambda: server.counters.open_connections == 2, what="two connections")
        extra = connect()                                   # past max_connections: silent makes room
        _wait_until(lambda: _closed_by_peer(silent), what="the oldest connection not logged in dropped")
        assert not _closed_by_peer(extra)
        assert said == [f"client 127.0.0.1:{silent.getsockname()[1]}: dropped: not logged in, its slot given to "
                        "a newer connection (2 connections open)"]   # as it happened
        t0 = time.monotonic()
        k = 0
        while not (_closed_by_peer(extra) and _closed_by_peer(slow)):
            assert time.monotonic() - t0 < 5, "login time-out not applied"
            try:
                slow.send(login[k:k + 1])                   # a byte a tick never completes a login in time
                k += 1
            except OSError:
                pass
            time.sleep(0.1)
        assert server.counters.login_timeouts == 2 and server.counters.evicted_before_login == 1
        assert server.counters.refused_connections == 0
        # each is named by its address and why, not only counted
        names = {f"client 127.0.0.1:{c.getsockname()[1]}" for c in (extra, slow)}
        assert {line.split(": ")[0] for line in server.drop_log if "no login within" in line} == names
        assert said == server.drop_log

        deaf = connect(rcvbuf=4096)                         # logs in, keeps talking, never reads
        deaf.sendall(login)
        t0 = time.monotonic()
        while server.counters.slow_clients == 0:
            assert time.monotonic() - t0 < 10, "a client that stopped reading was not dropped"
            deaf.send(packet(CLIENT_HEARTBEAT))
            time.sleep(0.05)
        # dropped with a reset: what was queued for it is not trickled out after the close (a
        # window that never opens to a segment's size is probed a byte at a time, for minutes)
        _wait_until(lambda: _closed_by_peer(deaf), timeout=3, what="the dropped client's connection reset")
        assert f"client 127.0.0.1:{deaf.getsockname()[1]}: dropped: took nothing sent for" in server.drop_log[-1]
        # what was queued for it and never sent is counted apart from the messages queued
        assert 0 < server.counters.unsent_bytes and server.counters.messages > 0
        mute = connect()                                    # logs in, reads, never talks again
        mute.sendall(login)
        t0 = time.monotonic()
        while not _closed_by_peer(mute):
            assert time.monotonic() - t0 < 10, "dead link not applied"
            time.sleep(0.01)
        _wait_until(lambda: server.counters.open_connections == 0, what="every connection released")
        # silent past the dead link, or (if it had read the whole day by then) past the end of
        # session's time to log out: either way its slot is released
        assert server.counters.dead_links + server.counters.logout_timeouts >= 1 and server.counters.logins == 2
        assert threading.active_count() == threads_before + 1   # no thread per connection, ever
    finally:
        for c in clients:
            c.close()
        server.stop()
    assert threading.active_count() == threads_before
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_a_connection_past_the_cap_with_every_one_logged_in_is_refused_and_named():
    import socket

    from itchflow.protocol.soup import MessageStore
    from itchflow.sources.soup_sockets import SoupServer
    from itchflow.wire.soupbintcp import LOGIN_REQUEST, encode

    said = []
    server = SoupServer(MessageStore(_repeated_day(100)), "127.0.0.1", 0, "HOLD", {"u": "p"},
                        max_connections=1, login_timeout_s=5, heartbeat_s=0.1, on_drop=said.append)
    server.start()
    try:
        member = socket.create_connection(server.address)
        member.sendall(encode(LOGIN_REQUEST, username="u", password="p", session="", sequence=1))
        _wait_until(lambda: server.counters.open_connections == 1 and server._conns and
                    next(iter(server._conns.values())).session.logged_in, what="a logged-in client")
        extra = socket.create_connection(server.address)
        _wait_until(lambda: _closed_by_peer(extra), what="the connection past the cap refused")
        assert not _closed_by_peer(member)
        assert server.counters.refused_connections == 1 and server.counters.evicted_before_login == 0
        assert said == [f"client 127.0.0.1:{extra.getsockname()[1]}: refused: 1 connections already open, "
                        "every one logged in"]
        member.close()
        extra.close()
    finally:
        server.stop()


def _fake_server(accept_sequence: int, first_message: int, messages: list[bytes]):
    """A one-connection SoupBinTCP server that answers any login with Login Accepted at
    ``accept_sequence`` and sends ``messages`` (numbered from ``first_message``), then Z."""
    from net_procs import one_connection_server

    from itchflow.wire.soupbintcp import END_OF_SESSION, LOGIN_ACCEPTED, SEQUENCED, packet

    def talk(conn):
        acc = packet(LOGIN_ACCEPTED, b"FAKE".ljust(10) + str(accept_sequence).encode().rjust(20))
        conn.sendall(acc + b"".join(packet(SEQUENCED, m) for m in messages) + packet(END_OF_SESSION))
        conn.settimeout(5)
        try:
            while conn.recv(1024):
                pass
        except OSError:
            pass

    return one_connection_server(talk)


def test_fetch_skips_and_counts_what_an_earlier_login_accepted_repeats():
    from itchflow.sources.soup_sockets import fetch

    msgs = [b"z" + i.to_bytes(4, "big") for i in range(1, 11)]   # "z": not an ITCH type
    (host, port), t = _fake_server(3, 3, msgs[2:])          # asked 6, the server starts at 3
    out = io.BytesIO()
    runs = []
    res = fetch(host, port, "u", "p", out, sequence=6, max_seconds=20, max_reconnects=0,
                on_data=lambda d: runs.append((d.first_sequence, d.count)))
    t.join(10)
    assert res.ended and res.duplicates_skipped == 3 and res.messages == 5
    assert out.getvalue() == b"".join(len(m).to_bytes(2, "big") + m for m in msgs[5:])
    assert runs[0][0] == 6 and res.next_sequence == 11


@pytest.mark.parametrize("accepted", [2**63, 10**20 - 1])
def test_fetch_refuses_an_absurd_login_accepted_sequence(accepted, tmp_path):
    (host, port), t = _fake_server(accepted, accepted, [b"z1234"])
    env = dict(os.environ, PYTHONPATH=SRC)
    cli = "import sys; from itchflow.cli import main; import itchflow.cli.net; sys.exit(main())"
    ring = f"netfetch{os.getpid()}{accepted % 1000}"
    r = subprocess.run([sys.executable, "-c", cli, "soup", "fetch", f"{host}:{port}", "--user", "u", "--password",
                        "p", "--ring", ring, "--max-reconnects", "0", "--json"], env=env, capture_output=True,
                       text=True, timeout=60)
    t.join(10)
    for leftover in Path("/dev/shm").glob(f"*{ring}*"):
        leftover.unlink()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "refused" in r.stderr and str(accepted) in r.stderr
    assert json.loads(r.stdout)["messages"] == 0


def test_fetch_counts_what_a_later_login_accepted_skips():
    from itchflow.sources.soup_sockets import fetch

    msgs = [b"z" + i.to_bytes(4, "big") for i in range(1, 11)]   # "z": not an ITCH type
    (host, port), t = _fake_server(8, 8, msgs[7:])          # asked 6, the server starts at 8
    runs = []
    res = fetch(host, port, "u", "p", io.BytesIO(), sequence=6, max_seconds=20, max_reconnects=0,
                on_data=lambda d: runs.append((d.first_sequence, d.count)))
    t.join(10)
    assert res.ended and res.missing == 2 and res.duplicates_skipped == 0
    assert runs == [(8, 3)] and res.next_sequence == 11


def test_run_pipeline_stops_with_an_error_on_an_absurd_login_accepted():
    """Inside `itchflow run` the same refusal is an error naming the source, not a quiet end."""
    from itchflow.pipeline import PipelineError, run_pipeline

    (host, port), t = _fake_server(2**63, 2**63, [b"z1234"])
    with pytest.raises((PipelineError, OSError)) as e:
        run_pipeline(f"soup://{host}:{port}?user=u&password=p&sequence=1")
    t.join(10)
    assert "stopped" in str(e.value) and str(2**63) in str(e.value)


def test_fetch_from_a_server_that_answers_the_login_with_heartbeats_only_ends_in_time():
    """probe 22: heartbeats before Login Accepted kept the link alive: such a server held the
    fetch as long as it liked (25 s with --dead-link 2, for ever if it never closed)."""
    import threading

    from net_procs import one_connection_server

    from itchflow.sources.soup_sockets import fetch
    from itchflow.wire.soupbintcp import SERVER_HEARTBEAT, packet

    done = threading.Event()

    def talk(conn):
        while not done.wait(0.1):
            try:
                conn.sendall(packet(SERVER_HEARTBEAT))
            except OSError:
                return

    (host, port), t = one_connection_server(talk)
    try:
        t0 = time.monotonic()
        res = fetch(host, port, "u", "p", None, dead_link_s=1.0, max_reconnects=0, max_seconds=30)
        took = time.monotonic() - t0
    finally:
        done.set()
        t.join(5)
    assert took < 5 and not res.ended and res.login_timeouts == 1, (took, res)
    assert res.errors[0].startswith(f"{host}:{port}: no answer to the login (accepted or rejected) in 1.0 s")
    assert res.errors[-1] == "the connection ended (no reconnects allowed)"


def test_a_drop_log_callback_that_fails_does_not_stop_the_server():
    """probe 24: soup serve printed each drop from the server's thread; with stderr gone (a
    closed pipe) the first drop raised there, the thread ended and the listening socket closed,
    while the process looked alive. The callback is given up, the server goes on."""
    import socket

    from itchflow.protocol.soup import MessageStore
    from itchflow.sources.soup_sockets import SoupServer, fetch

    def broken(line):
        raise BrokenPipeError(32, "Broken pipe")

    day = _repeated_day(1_000)
    server = SoupServer(MessageStore(day), "127.0.0.1", 0, "PIPE", {"u": "p"}, login_timeout_s=0.2,
                        on_drop=broken)
    server.start()
    try:
        idle = socket.create_connection(server.address)          # never logs in: dropped, said
        _wait_until(lambda: server.counters.login_timeouts == 1, what="the login time-out")
        assert server.serving and server.on_drop_error.startswith("BrokenPipeError")
        out = io.BytesIO()
        res = fetch(*server.address, "u", "p", out, max_reconnects=0, max_seconds=30)
        assert res.ended and out.getvalue() == day.tobytes()
        assert server.drop_log[0].endswith("dropped: no login within 0.2 s")
        idle.close()
    finally:
        server.stop()


def test_a_login_already_sent_is_taken_before_a_newer_connection_evicts_it():
    """probe 24: a client whose login was in its socket's buffer when a newer connection came
    in the same round was evicted as "not logged in" (28 rounds of 30), and the newer one, with
    no credentials, kept the slot."""
    import socket

    from itchflow.protocol.soup import MessageStore
    from itchflow.sources.soup_sockets import SoupServer
    from itchflow.wire.soupbintcp import LOGIN_REQUEST, encode

    login = encode(LOGIN_REQUEST, username="u", password="p", session="", sequence=1)
    for _ in range(10):
        server = SoupServer(MessageStore(_repeated_day(100_000)), "127.0.0.1", 0, "RACE", {"u": "p"},
                            max_connections=1, login_timeout_s=5)
        server.start()
        try:
            a = socket.create_connection(server.address)
            a.sendall(login)
            b = socket.create_connection(server.address)          # at once: the same round, often
            _wait_until(lambda: server.counters.refused_connections + server.counters.evicted_before_login,
                        what="the connection past the cap handled")
            assert server.counters.evicted_before_login == 0 and server.counters.refused_connections == 1
            assert server.counters.logins + server.counters.open_connections >= 1
            a.close()
            b.close()
        finally:
            server.stop()


def test_soup_serve_names_a_drop_as_it_happens_and_says_its_counters_on_sigterm(tmp_path):
    """probe 22: the drops were printed only at exit, and on SIGTERM (systemd, docker stop,
    timeout) not at all, nor the counters."""
    import signal
    import socket

    from net_procs import finish, kill_if_running, start, wait_for_line

    src = tmp_path / "day.itch"
    src.write_bytes(synthetic_day(2_000, seed=3).tobytes())
    server = start(["soup", "serve", str(src), "--host", "127.0.0.1", "--port", "0", "--user", "u",
                    "--password", "p", "--max-seconds", "60"])
    try:
        port = int(wait_for_line(server, r"on 127\.0\.0\.1:(\d+)").group(1))
        with socket.create_connection(("127.0.0.1", port)) as bad:
            bad.sendall(b"\x00\x02XX")                           # no such packet type
            wait_for_line(server, rf"soup serve: client 127\.0\.0\.1:{bad.getsockname()[1]}: dropped: protocol error")
        server.send_signal(signal.SIGTERM)
        _, err = finish(server, 30)
    finally:
        kill_if_running(server)
    assert server.returncode == 143, err
    assert "terminated (signal 15): stopping the server" in err and "Traceback" not in err
    counters = json.loads([line for line in err.splitlines() if line.startswith("{")][-1])
    assert counters["protocol_errors"] == 1 and counters["open_connections"] == 0
