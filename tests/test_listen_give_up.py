"""`listen`'s re-requests for a hole: re-sent with a doubling wait, given up after
`--give-up-after` seconds (it was 20 requests 50 ms apart, whatever the options: a re-request
server answering in 1.5 s lost every hole while the end-of-session packets still came).

The sender and the silent re-request server are plain sockets here; the listener is the CLI.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from net_procs import finish, start, wait_for_line

pytestmark = pytest.mark.timeout(120)


def _mold(seq: int, *bodies: bytes) -> bytes:
    blocks = b"".join(len(b).to_bytes(2, "big") + b for b in bodies)
    return b"GIVEUP    " + seq.to_bytes(8, "big") + len(bodies).to_bytes(2, "big") + blocks


def _end_of_session(seq: int) -> bytes:
    return b"GIVEUP    " + seq.to_bytes(8, "big") + (0xFFFF).to_bytes(2, "big")


def test_listen_re_requests_with_a_doubling_wait_and_gives_up_after_the_option(tmp_path):
    out = tmp_path / "day.itch"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rereq:
        rereq.bind(("127.0.0.1", 0))
        rereq.settimeout(30)
        proc = start(["listen", "--mold", "127.0.0.1:0", "--json", "--idle-timeout", "60", "--out", str(out),
                      "--rerequest", "127.0.0.1:%d" % rereq.getsockname()[1], "--line-wait-ms", "0",
                      "--rerequest-timeout-ms", "40", "--give-up-after", "1"])
        port = int(wait_for_line(proc, r"listening on 127\.0\.0\.1:(\d+)").group(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(_mold(1, b"z1"), ("127.0.0.1", port))   # "z": no ITCH type, any length
            s.sendto(_mold(3, b"z3"), ("127.0.0.1", port))
            s.sendto(_end_of_session(4), ("127.0.0.1", port))
        requests, at = [], []
        rereq.settimeout(3)
        try:
            while True:   # until the listener gives up and stops asking
                requests.append(rereq.recv(100))
                at.append(time.monotonic())
        except socket.timeout:
            pass
        out_text, err = finish(proc, 60)
    assert proc.returncode == 3, err
    assert all(r == b"GIVEUP    " + (2).to_bytes(8, "big") + (1).to_bytes(2, "big") for r in requests)
    # waits of 40, 80, 160, 320 ms, then the 5th request (at 600 ms) is cut short: given up
    # when the server has been silent for 1 s, 5 requests in all
    assert len(requests) == 5, requests
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert all(g > 0.6 * w for g, w in zip(gaps, (0.04, 0.08, 0.16, 0.32))), gaps
    report = json.loads(out_text)
    assert report["lost"] == 1 and report["requests"] == 5 and report["messages"] == 2
    (first, count, reason) = report["lost_ranges"][0]
    assert (first, count) == (2, 1) and reason.startswith("no reply from the re-request server for 1.0")
    assert out.read_bytes() == b"\x00\x02z1\x00\x02z3"


@pytest.mark.parametrize("option, value", [("--give-up-after", "0"), ("--give-up-after", "-1"),
                                           ("--rerequest-timeout-ms", "0.5"), ("--rerequest-timeout-ms", "nan")])
def test_listen_refuses_a_give_up_or_timeout_out_of_range(option, value):
    proc = start(["listen", "--mold", "127.0.0.1:0", option, value])
    _, err = finish(proc, 60)
    assert proc.returncode == 2 and option in err, err
