"""`listen` and the network commands against what a hostile or careless peer sends (loopback
only; every test bounded in time, closing what it opens): junk that must not keep an idle
listener alive, a third party answering re-requests, a second listener on the port, losses
in the exit status, and command-line values that must be refused before anything starts.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import threading
import time

import pytest
from click.testing import CliRunner

from net_procs import finish, kill_if_running, start, wait_for_line

pytestmark = pytest.mark.timeout(120)

SESSION = b"HOSTILE001"


def message(seq: int, tag: bytes = b"r") -> bytes:
    """A framed message of no ITCH type (the receiver holds ITCH types to their lengths)."""
    body = tag + seq.to_bytes(8, "big") + bytes(seq % 5)
    return struct.pack(">H", len(body)) + body


def packet(first: int, count: int, tag: bytes = b"r") -> bytes:
    return struct.pack(">10sQH", SESSION, first, count) + b"".join(message(s, tag) for s in range(first, first + count))


def end_of_session(seq: int) -> bytes:
    return struct.pack(">10sQH", SESSION, seq, 0xFFFF)


def _listen_in_thread(**kw):
    from itchflow.sources.udp import listen

    box: dict = {}
    out = io.BytesIO()

    def run():
        box["res"] = listen(None, None, kw.pop("rerequest", None), out, **kw)

    t = threading.Thread(target=run)
    t.start()
    return t, box, out


def test_junk_datagrams_do_not_keep_an_idle_listener_waiting():
    """The feed stops without an end of session; a junk datagram every 50 ms used to reset the
    idle time-out for ever (it ran until --max-seconds)."""
    from itchflow.sources.udp import open_receiver

    a = open_receiver("127.0.0.1", 0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        tx.sendto(packet(1, 3), a.getsockname())
        t, box, out = _listen_in_thread(sockets=[a], idle_timeout=1.0, max_seconds=60)
        foreign = struct.pack(">10sQH", b"OTHER00001", 1, 1) + message(1)
        while t.is_alive():             # bounded by max_seconds
            tx.sendto(b"junk!", a.getsockname())
            tx.sendto(foreign, a.getsockname())
            t.join(0.05)
    finally:
        tx.close()
        a.close()
    res = box["res"]
    assert res.seconds < 30 and not res.finished
    assert out.getvalue() == b"".join(message(s) for s in (1, 2, 3))
    assert res.stats["malformed"] > 0 and res.stats["other_session_packets"] > 0


def test_only_the_rerequest_server_can_fill_a_hole():
    """A datagram from anyone else to the reply socket is not a reply (it filled the hole)."""
    from itchflow.sources.udp import open_receiver

    a = open_receiver("127.0.0.1", 0)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(30)
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t, box, out = _listen_in_thread(sockets=[a], rerequest=server.getsockname(), idle_timeout=20,
                                        max_seconds=60)
        tx.sendto(packet(1, 1), a.getsockname())
        tx.sendto(packet(3, 1), a.getsockname())            # 2 is missing
        request, reply_to = server.recvfrom(64)             # the listener asks the server
        assert struct.unpack(">10sQH", request) == (SESSION, 2, 1)
        forger.sendto(packet(2, 1, b"f"), reply_to)         # sent first, so it would arrive first
        server.sendto(packet(2, 1), reply_to)
        tx.sendto(end_of_session(4), a.getsockname())
        t.join(60)
    finally:
        for s in (a, server, forger, tx):
            s.close()
    res = box["res"]
    assert res.finished and res.stats["recovered"] == 1 and res.stats["lost"] == 0
    assert out.getvalue() == b"".join(message(s) for s in (1, 2, 3))


def test_a_unicast_port_has_one_listener():
    """A second listener on the same unicast port is refused (with SO_REUSEADDR it bound
    silently and took the datagrams)."""
    from itchflow.sources.udp import open_receiver

    a = open_receiver("127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            open_receiver("127.0.0.1", a.getsockname()[1])
    finally:
        a.close()


def test_listen_exits_3_when_messages_were_lost():
    """A feed that ends with holes no one can fill: the counters say so and so does the exit
    status (it was 0, and the output file cannot show a hole)."""
    from itchflow.protocol.mold.feed import Faults, MoldFeed
    from itchflow.sources.mold_sender import publish
    from test_net_loopback import synthetic_day

    data = synthetic_day(5_000, seed=4)
    feed = MoldFeed(data, "LOSSY", 600)
    listener = start(["listen", "--mold", "127.0.0.1:0", "--json", "--idle-timeout", "20", "--max-seconds", "60"])
    try:
        port = int(wait_for_line(listener, r"listening on 127\.0\.0\.1:(\d+)").group(1))
        pub = publish(feed, ("127.0.0.1", port), None, pps=20_000, faults=Faults(drop_a=0.2, seed=1), linger=0.3)
        stdout, stderr = finish(listener)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    report = json.loads(stdout)
    assert listener.returncode == 3, stderr
    assert report["finished"] and report["lost"] > 0 and pub.dropped[0] > 0
    assert report["messages"] + report["lost"] == feed.messages
    assert "lost" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("early", [1, 4])
def test_an_end_of_session_the_feed_contradicts_is_not_a_finished_day(early):
    """probe 22: one datagram saying "end of session" (at sequence 1 before the feed, or in its
    middle) ended listen with exit 0 and a cut day, or an empty one, under the final name. The
    lines are watched end_linger seconds past it: packets of the session past the end say it
    came early, and the day is not finished."""
    from itchflow.sources.udp import open_receiver

    a = open_receiver("127.0.0.1", 0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for seq in range(1, early):
            tx.sendto(packet(seq, 1), a.getsockname())
        tx.sendto(end_of_session(early), a.getsockname())
        t, box, out = _listen_in_thread(sockets=[a], idle_timeout=5.0, max_seconds=30, end_linger=5.0)
        while t.is_alive():   # the feed goes on past the end it was said to have, until listen ends
            for seq in range(early, early + 3):
                tx.sendto(packet(seq, 1), a.getsockname())
            t.join(0.05)
    finally:
        tx.close()
        a.close()
    res = box["res"]
    assert not res.finished and res.end_sequence == early and res.end_contradicted >= 1, res.stats
    assert res.seconds < 5   # the first packet past the end ends the wait
    assert out.getvalue() == b"".join(message(s) for s in range(1, early))


def test_an_end_of_session_nothing_contradicts_finishes_after_the_linger():
    from itchflow.sources.udp import open_receiver

    a = open_receiver("127.0.0.1", 0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for seq in range(1, 4):
            tx.sendto(packet(seq, 1), a.getsockname())
        tx.sendto(end_of_session(4), a.getsockname())
        tx.sendto(end_of_session(4), a.getsockname())   # repeated, as Nasdaq does: no contradiction
        t, box, out = _listen_in_thread(sockets=[a], idle_timeout=5.0, max_seconds=30, end_linger=0.3)
        t.join(30)
    finally:
        tx.close()
        a.close()
    res = box["res"]
    assert res.finished and res.end_contradicted == 0 and 0.3 <= res.seconds < 5
    assert out.getvalue() == b"".join(message(s) for s in range(1, 4))


def test_listen_exits_2_and_keeps_a_part_when_the_end_of_session_is_contradicted(tmp_path):
    out = tmp_path / "day.itch"
    listener = start(["listen", "--mold", "127.0.0.1:0", "--json", "--out", str(out), "--end-linger", "5",
                      "--max-seconds", "30"])
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = int(wait_for_line(listener, r"listening on 127\.0\.0\.1:(\d+)").group(1))
        tx.sendto(packet(1, 2), ("127.0.0.1", port))
        tx.sendto(end_of_session(3), ("127.0.0.1", port))
        while listener.poll() is None:      # the feed goes on past it until listen has ended
            tx.sendto(packet(3, 1), ("127.0.0.1", port))
            time.sleep(0.05)
        stdout, stderr = finish(listener)
    finally:
        tx.close()
        kill_if_running(listener)
    assert listener.returncode == 2, stderr
    report = json.loads(stdout)
    assert not report["finished"] and report["end_contradicted"] >= 1
    assert "the end of session at sequence 3 was contradicted by" in stderr
    assert not out.exists() and (tmp_path / "day.itch.part").read_bytes() == message(1) + message(2)


def _cli(args):
    from itchflow.cli import main
    import itchflow.cli.net  # noqa: F401  (registers the network commands)

    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("args, exit_code, text", [
    (["listen", "--mold", "127.0.0.1:0", "--from-sequence", "abc"], 2, "is not 'first' or a sequence number"),
    (["listen", "--mold", "127.0.0.1:0", "--from-sequence", "0"], 2, "out of range"),
    (["listen", "--mold", "127.0.0.1:0", "--idle-timeout", "nan"], 2, "not a finite number"),
    (["listen", "--mold", "127.0.0.1:0", "--idle-timeout", "-1"], 2, "must be above 0"),
    (["listen", "--mold", "127.0.0.1:0", "--max-gap", "-5"], 2, "--max-gap"),
    (["listen", "--mold", "127.0.0.1:0", "--max-buffered-mb", "-1"], 2, "--max-buffered-mb"),
    (["listen", "--mold", "127.0.0.1:0", "--out", "/nonexistent-dir/x.itch"], 1, "itchflow: error"),
    # an xdp queue past what a NIC has, a negative or huge busy poll: tracebacks or taken before
    (["listen", "--engine", "xdp", "--ifname", "lo", "--mold", "127.0.0.1:0", "--queue", "4294967296"], 2,
     "--queue"),
    (["listen", "--engine", "xdp", "--ifname", "lo", "--mold", "127.0.0.1:0", "--busy-poll", "-5"], 2,
     "--busy-poll"),
    (["listen", "--engine", "xdp", "--ifname", "lo", "--mold", "127.0.0.1:0", "--busy-poll", "2147483648"], 2,
     "--busy-poll"),
    # xdp's options given another engine were silently ignored
    (["listen", "--mold", "127.0.0.1:0", "--queue", "1"], 2, "applies to --engine xdp only"),
    (["listen", "--engine", "tpacket", "--mold", "127.0.0.1:0", "--busy-poll", "50"], 2,
     "applies to --engine xdp only"),
    (["soup", "fetch", "127.0.0.1:9", "--user", "u", "--password", "p", "--out", "/nonexistent-dir/x"], 1,
     "itchflow: error"),
    (["soup", "fetch", "127.0.0.1:9", "--user", "u", "--password", "p", "--from-sequence", "-3"], 2,
     "--from-sequence"),
    (["soup", "fetch", "127.0.0.1:9", "--user", "u", "--password", "p", "--dead-link", "inf"], 2,
     "not a finite number"),
    (["gen", "-n", "nan", "/tmp/never-written.itch"], 2, "not a whole non-negative count"),
    (["gen", "-n", "inf", "/tmp/never-written.itch"], 2, "not a whole non-negative count"),
])
def test_bad_network_options_are_refused_before_anything_starts(args, exit_code, text):
    r = _cli(args)
    assert r.exit_code == exit_code, r.output
    assert text in r.output and "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


@pytest.mark.parametrize("option", [["--port", "99999"], ["--port", "-1"], ["--login-timeout", "nan"],
                                    ["--max-connections", "0"]])
def test_soup_serve_refuses_bad_options(tmp_path, option):
    day = tmp_path / "day.itch"
    day.write_bytes(message(1))
    r = _cli(["soup", "serve", str(day), "--user", "u", "--password", "p", *option])
    assert r.exit_code == 2 and option[0] in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("option", [["--drop-a", "2"], ["--reorder", "-0.1"], ["--pps", "-5"], ["--pps", "0"],
                                    ["--ttl", "300"], ["--linger", "nan"], ["--rerequest-rate", "0"]])
def test_publish_refuses_bad_options(tmp_path, option):
    day = tmp_path / "day.itch"
    day.write_bytes(message(1))
    r = _cli(["publish", str(day), "--mold", "127.0.0.1:9", *option])
    assert r.exit_code == 2 and option[0] in r.output and "Traceback" not in r.output


def test_latency_log_stays_bounded_and_uniform():
    import numpy as np

    from itchflow.hw.metrics import LatencyLog

    log = LatencyLog(initial=16, limit=1000)
    for v in range(100_000):
        log.add(v)
    kept = log.values()
    assert len(kept) == 1000 and log.count == 100_000 and log.max == 99_999
    assert len(set(kept.tolist())) == 1000 and kept.min() >= 0 and kept.max() < 100_000
    # a uniform sample of 0..99,999: its median is near 50,000 (the first 1,000 alone would be 500)
    assert 40_000 < np.median(kept) < 60_000


@pytest.mark.parametrize("args, option", [
    (["snapshots", "DAY", "-s", "AAA", "-o", "OUT", "--every", "nan"], "--every"),
    (["snapshots", "DAY", "-s", "AAA", "-o", "OUT", "--every", "-5"], "--every"),
    (["batch", "DAY", "--job", "snapshots", "-s", "AAA", "--every", "inf", "-o", "OUT"], "--every"),
    (["compare", "--rate", "nan"], "--rate"),
    (["compare", "--paced-seconds", "inf"], "--paced-seconds"),
    (["run", "-s", "DAY", "--rate", "nan"], "--rate"),
    (["run", "-s", "DAY", "--heartbeat-timeout", "nan"], "--heartbeat-timeout"),
    (["run", "-s", "DAY", "--idle-timeout", "nan"], "--idle-timeout"),
    (["run", "-s", "DAY", "--wait-for-file", "-1"], "--wait-for-file"),
    (["write-slowly", "DAY", "OUT", "--rate", "nan"], "--rate"),
])
def test_times_and_rates_must_be_finite_and_in_range(tmp_path, args, option):
    """A NaN time-out passes no comparison, so it never fires (run --idle-timeout nan waited for
    ever; --rate nan ran flat out; --heartbeat-timeout nan was a traceback's text)."""
    day = tmp_path / "day.itch"
    day.write_bytes(message(1))
    out = tmp_path / "out"
    r = _cli([str(day) if a == "DAY" else str(out) if a == "OUT" else a for a in args])
    assert r.exit_code == 2 and option in r.output and "Traceback" not in r.output, r.output
    assert not out.exists()


def test_a_port_another_listener_holds_is_named_in_the_error():
    """A second listener on a unicast port said "[Errno 98] Address already in use", naming
    no address."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        r = _cli(["listen", "--mold", f"127.0.0.1:{port}", "--idle-timeout", "1"])
    assert r.exit_code == 1 and f"bind 127.0.0.1:{port}: Address already in use" in r.output, r.output


@pytest.mark.parametrize("command", [["listen", "--mold", "127.0.0.1:0", "--idle-timeout", "1"],
                                     ["soup", "fetch", "127.0.0.1:9", "--user", "u", "--password", "p"]])
def test_a_ring_whose_producer_is_alive_is_an_error_line_not_a_traceback(ring_path, command):
    """`listen --ring` / `soup fetch --ring` on a ring another live process produces into ended in
    a traceback ending in RingBusy (probe 13)."""
    import time as _time

    from itchflow.hw.atomics_py import store
    from itchflow.ring import Ring
    from itchflow.ring import layout as L

    Ring.create(ring_path, 1 << 20, consumers=["book"], keep=True).close()
    with Ring.open(ring_path) as ring:   # a live producer that is not us
        store(ring.words, L.W_PROD_PID, os.getppid())
        store(ring.words, L.W_PROD_HB, _time.monotonic_ns())
        store(ring.words, L.W_PROD_STATE, L.PRODUCER_OPEN)
    try:
        res = _cli([*command, "--ring", ring_path])
        assert res.exit_code == 1, res.output
        assert f"itchflow: error: {ring_path}: producer pid {os.getppid()} is alive" in res.output
        assert "Traceback" not in res.output
    finally:
        os.unlink(ring_path)


def test_a_listener_whose_engine_is_refused_leaves_no_ring(ring_path):
    """Probe 57: `listen --ring NAME` made its 16 MiB ring before the engine was opened, so an
    engine refused (no capability, no such interface) left a ring no one would ever feed."""
    assert not os.path.exists(ring_path)
    res = _cli(["listen", "--mold", "127.0.0.1:0", "--engine", "xdp", "--ifname", "nosuch0", "--ring", ring_path,
                "--idle-timeout", "1"])
    assert res.exit_code == 1 and "no interface named 'nosuch0'" in res.output, res.output
    assert not os.path.exists(ring_path)


@pytest.mark.parametrize("engine", ["recv", "recvmmsg"])
def test_datagrams_the_full_socket_turned_away_are_counted(engine):
    """A feed that overflows the line socket's buffer before the listener reads: the kernel
    drops datagrams there, and listen said only that the session did not reach its end (probe
    27: 7% of a day gone, lost 0). Its engine_stats now carry the kernel's count, and the
    command says it."""
    from itchflow.cli.net import engine_notes
    from itchflow.sources.udp import open_receiver, socket_drops

    a = open_receiver("127.0.0.1", 0)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # the kernel's least: a few datagrams
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 500
    try:
        for first in range(1, sent * 4, 4):
            tx.sendto(packet(first, 4), a.getsockname())
        dropped = socket_drops([a])
        assert 0 < dropped < sent
        t, box, out = _listen_in_thread(sockets=[a], idle_timeout=0.5, max_seconds=30, engine=engine)
        t.join(60)
        assert not t.is_alive()
    finally:
        tx.close()
        a.close()
    res = box["res"]
    assert res.stats["packets"] + res.engine_stats["socket_drops"] == sent
    assert res.engine_stats["socket_drops"] == dropped
    assert any(f"dropped {dropped:,} datagrams at the UDP sockets" in line for line in engine_notes(res.engine_stats))


def test_socket_drops_of_closed_or_quiet_sockets_are_zero():
    from itchflow.sources.udp import open_receiver, socket_drops

    a = open_receiver("127.0.0.1", 0)
    try:
        assert socket_drops([a]) == 0
    finally:
        a.close()
    assert socket_drops([a]) == 0 and socket_drops([]) == 0
