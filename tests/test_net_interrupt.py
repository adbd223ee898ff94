"""Ctrl-C on the long-running network commands: each prints its report and exits 130.

Each command runs as a subprocess; the test waits for the line that says it is ready (or
for the server to see it connected), never a fixed sleep, then sends SIGINT.
"""

from __future__ import annotations

import json
import signal
import socket

import numpy as np
import pytest

from net_procs import finish, one_connection_server, start, wait_for_line
from test_net_loopback import synthetic_day

pytestmark = pytest.mark.timeout(120)


def _interrupt(proc):
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, 60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "Aborted" not in err, err
    return out, err


def test_publish_prints_its_counters_on_ctrl_c(tmp_path):
    src = tmp_path / "day.itch"
    src.write_bytes(synthetic_day(5_000, seed=2).tobytes())
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        proc = start(["publish", str(src), "--mold", "127.0.0.1:%d" % sink.getsockname()[1], "--rate", "max",
                      "--pps", "100", "--payload", "200", "--json", "--quiet"])
        wait_for_line(proc, r"publishing [\d,]+ packets")
        sink.settimeout(30)
        sink.recv(65536)                          # readiness: packets are flowing (the second one
        sink.recv(65536)                          # proves the first was counted)
        out, _ = _interrupt(proc)
    finally:
        sink.close()
    report = json.loads(out)
    assert report["interrupted"] and 0 < report["sent"][0] < report["packets"], report
    # messages: the feed's; messages_released: those of the packets sent (one line, no faults),
    # counted here from the day's packetisation (probe 41: only the feed's total was given)
    from itchflow.protocol.mold.feed import MoldFeed

    feed = MoldFeed(np.frombuffer(src.read_bytes(), np.uint8), "ITCHFLOW", payload_size=200)
    assert report["messages"] == feed.messages == 5_000
    assert report["messages_released"] == int(feed.sequences[report["sent"][0]]) - 1 < 5_000, report


def test_listen_prints_its_report_on_ctrl_c():
    proc = start(["listen", "--mold", "127.0.0.1:0", "--json", "--idle-timeout", "60"])
    port = int(wait_for_line(proc, r"listening on 127\.0\.0\.1:(\d+)").group(1))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:   # one real packet, so counters move
        s.sendto(b"INTERRUPT " + (1).to_bytes(8, "big") + (1).to_bytes(2, "big") + b"\x00\x01A", ("127.0.0.1", port))
    out, _ = _interrupt(proc)
    report = json.loads(out)
    assert report["interrupted"] and not report["finished"]


def test_soup_serve_prints_its_counters_on_ctrl_c(tmp_path):
    src = tmp_path / "day.itch"
    src.write_bytes(synthetic_day(2_000, seed=3).tobytes())
    proc = start(["soup", "serve", str(src), "--host", "127.0.0.1", "--port", "0", "--user", "u", "--password", "p"])
    port = int(wait_for_line(proc, r"on 127\.0\.0\.1:(\d+)").group(1))
    socket.create_connection(("127.0.0.1", port)).close()
    _, err = _interrupt(proc)
    counters = json.loads([line for line in err.splitlines() if line.startswith("{")][-1])
    assert "connections" in counters and "login_timeouts" in counters


def test_soup_serve_prints_its_counters_when_sigterm_comes_twice(tmp_path):
    """Probe 54: ``timeout`` sends SIGTERM to the child, then to its group; the second landed
    in the clean-up and ended it before the counters, 5 of 8 times. A SIGTERM that comes
    while the first is ending the command is let be."""
    import signal

    src = tmp_path / "day.itch"
    src.write_bytes(synthetic_day(2_000, seed=3).tobytes())
    proc = start(["soup", "serve", str(src), "--host", "127.0.0.1", "--port", "0", "--user", "u", "--password", "p"])
    wait_for_line(proc, r"on 127\.0\.0\.1:(\d+)")
    for _ in range(3):
        proc.send_signal(signal.SIGTERM)
    _, err = finish(proc, 60)
    assert proc.returncode == 143, err
    counters = json.loads([line for line in err.splitlines() if line.startswith("{")][-1])
    assert "connections" in counters and "login_timeouts" in counters
    assert err.count("terminated (signal 15)") == 1 and "Traceback" not in err, err


def test_soup_fetch_prints_its_report_on_ctrl_c():
    """A server that sends 10 messages and then only listens; once the client's first
    heartbeat arrives (it has been through its loop after the data), Ctrl-C."""
    import threading

    from itchflow.wire.soupbintcp import CLIENT_HEARTBEAT, LOGIN_ACCEPTED, SEQUENCED, packet

    heard = threading.Event()

    def talk(conn):
        conn.sendall(packet(LOGIN_ACCEPTED, b"INT".ljust(10) + b"1".rjust(20))
                     + b"".join(packet(SEQUENCED, b"z" + bytes(5)) for _ in range(10)))  # "z": no ITCH type
        conn.settimeout(30)
        try:
            while True:
                data = conn.recv(1024)
                if not data:
                    break
                if packet(CLIENT_HEARTBEAT) in data:
                    heard.set()
        except OSError:
            pass

    (_, port), t = one_connection_server(talk)
    try:
        proc = start(["soup", "fetch", "127.0.0.1:%d" % port, "--user", "u", "--password", "p",
                      "--json", "--dead-link", "60"])
        assert heard.wait(60), "the client never got going"
        out, _ = _interrupt(proc)
    finally:
        t.join(10)
    report = json.loads(out)
    assert report["interrupted"] and report["messages"] == 10 and not report["ended"]


def _mold(seq: int, body: bytes) -> bytes:
    return b"INTERRUPT " + seq.to_bytes(8, "big") + (1).to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_listen_out_leaves_an_earlier_day_whole_on_ctrl_c_and_sigterm(tmp_path, sig):
    """`listen --out DAY` opened DAY itself: an earlier day was truncated before the first
    packet, and SIGTERM said "unfinished output is removed" but left the cut stream, a valid
    shorter day. It writes a part of its own now: SIGTERM removes it, Ctrl-C keeps what arrived
    as DAY.part (a live capture is not thrown away) and says so; DAY is untouched either way."""
    out = tmp_path / "day.itch"
    out.write_bytes(b"\x00\x01Z" * 1000)
    part = out.with_name(out.name + ".part")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rereq:
        rereq.bind(("127.0.0.1", 0))
        rereq.settimeout(30)
        proc = start(["listen", "--mold", "127.0.0.1:0", "--json", "--idle-timeout", "60", "--out", str(out),
                      "--rerequest", "127.0.0.1:%d" % rereq.getsockname()[1], "--line-wait-ms", "0"])
        port = int(wait_for_line(proc, r"listening on 127\.0\.0\.1:(\d+)").group(1))
        # a part of its own (NAME.<pid>-<random>.part), nothing truncated at the start
        assert len(list(tmp_path.glob("day.itch.*.part"))) == 1 and out.read_bytes() == b"\x00\x01Z" * 1000
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(_mold(1, b"z1"), ("127.0.0.1", port))   # "z": no ITCH type, so no length to check
            s.sendto(_mold(3, b"z3"), ("127.0.0.1", port))
        rereq.recv(100)   # readiness: its re-request for 2 says 1 was delivered and 3 is held
        proc.send_signal(sig)
        _, err = finish(proc, 60)
    assert out.read_bytes() == b"\x00\x01Z" * 1000
    assert not list(tmp_path.glob("day.itch.*.part")), err   # removed, or kept as DAY.part
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and not part.exists(), err
    else:   # the hole is given up at the interrupt: 3 comes out behind 1
        assert proc.returncode == 130 and part.read_bytes() == b"\x00\x02z1\x00\x02z3", err
        assert f"what arrived before the interrupt is in {part}" in err


@pytest.mark.parametrize("how", ["idle", "interrupt"])
def test_listen_out_writes_no_file_when_no_message_arrived(tmp_path, how):
    """A listener that got no packet left an empty DAY.part said to hold "what arrived" (probe
    34): now nothing is written and it says no message arrived; an earlier DAY stays whole."""
    out = tmp_path / "day.itch"
    out.write_bytes(b"\x00\x01Z")
    part = out.with_name(out.name + ".part")
    idle = "0.5" if how == "idle" else "60"
    proc = start(["listen", "--mold", "127.0.0.1:0", "--json", "--idle-timeout", idle, "--out", str(out)])
    wait_for_line(proc, r"listening on 127\.0\.0\.1:(\d+)")
    if how == "interrupt":
        proc.send_signal(signal.SIGINT)
    _, err = finish(proc, 60)
    assert proc.returncode == (130 if how == "interrupt" else 2), err
    when = "before the interrupt" if how == "interrupt" else "before it stopped"
    assert f"no message arrived {when}: {out} not written" in err, err
    assert not part.exists() and out.read_bytes() == b"\x00\x01Z"
    assert "Traceback" not in err


def test_a_report_prints_numpy_numbers_as_numbers():
    """listen's text report showed its latency as {'p50': np.float64(...)} (probe 41)."""
    from click.testing import CliRunner

    from itchflow.cli.net import _print_report

    @click_command
    def show():
        _print_report({"latency": {"p50_us": np.float64(1.5), "n": np.int64(3)}, "lines": [np.int64(2)]}, False, 8)
        _print_report({"latency": {"n": np.int64(3)}}, True, 8)

    out = CliRunner().invoke(show).output.splitlines()
    assert out == [" latency: {'p50_us': 1.5, 'n': 3}", "   lines: [2]", '{"latency": {"n": 3}}'], out


def click_command(f):
    import click

    return click.command()(f)
