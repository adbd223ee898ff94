"""SoupBinTCP over loopback TCP (127.0.0.1): a session served from a file, a connection cut
in the middle, the client reconnecting from the next sequence: identical output.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
        bad = fetch(*server.address, "alice", "nope", io.BytesIO(), max_seconds=30)
        assert bad.rejected and "not authorized" in bad.rejected and bad.messages == 0
        bad = fetch(*server.address, "alice", "secret", io.BytesIO(), session="OTHER", max_seconds=30)
        assert bad.rejected and "not available" in bad.rejected
    finally:
        server.stop()


def test_cli_soup_serve_and_fetch(tmp_path):
    import socket

    data = synthetic_day(20_000, seed=8)
    src = tmp_path / "day.itch"
    src.write_bytes(data.tobytes())
    out = tmp_path / "out.itch"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, PYTHONPATH=SRC)
    cli = "import sys; from itchflow.cli import main; import itchflow.cli.net; sys.exit(main())"
    server = subprocess.Popen([sys.executable, "-c", cli, "soup", "serve", str(src), "--host", "127.0.0.1",
                               "--port", str(port), "--user", "bob", "--password", "pw", "--cut-after", "7000",
                               "--max-seconds", "60"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        r = subprocess.run([sys.executable, "-c", cli, "soup", "fetch", f"127.0.0.1:{port}", "--user", "bob",
                            "--password", "pw", "--out", str(out), "--json"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert report["ended"] and report["reconnects"] == 1 and report["messages"] == 20_000
        assert out.read_bytes() == data.tobytes()
    finally:
        server.terminate()
        server.wait(10)
