"""The ring benchmark's peers: a figure only from a run that delivered every record, and the
like-for-like ratio (the ring's own one-at-a-time Python API against each peer) printed beside
the batched one."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from itchflow.bench import ring as rb
from itchflow.cli import main

LENS = np.array([20, 36, 40], np.int64)


def test_a_peer_whose_consumer_dies_gives_no_figure():
    """Its time was taken from a stamp the consumer never wrote: -0 k rec/s, a ratio of -inf."""
    def make(n, cpus, out):
        return rb.CTX.Queue(), lambda q, r: None, sys.exit   # the child: exit(q, n, ...) fails at once
    with pytest.raises(rb.PeerFailed, match="exited with 1, having received 0 of"):
        rb._time_peer(make, 50, LENS, None)


def test_a_peer_that_delivers_every_record_gives_a_positive_rate():
    r = rb._time_peer(rb._mp_queue, 2_000, LENS, None)
    assert r["ok"] and r["records"] == 2_000 and r["seconds"] > 0 and r["records_per_s"] > 0


def _result(peers: dict) -> dict:
    row = {"records_per_s": 20e6, "ns_per_record": 50.0, "repeats": 3, "median_records_per_s": 19e6, "ok": True,
           "MB_per_s": 700.0, "batch": 256}
    return {"machine": {"cpus": 2, "pinned": [0, 1], "loadavg_1m_at_start": 0.1, "loadavg_1m_at_end": 0.2},
            "record_sizes": {"min": 20, "max": 40, "mean": 30.0},
            "floor": {"round_trip_ns": 100.0, "one_way_ns": 50.0},
            "throughput_single": dict(row, records_per_s=5e6), "throughput_batched": row,
            "latency": {"offered_rate": 1000, "p50_ns": 120.0, "p99_ns": 300.0, "p999_ns": 900.0, "max_ns": 5e3,
                        "p50_over_floor": 2.4, "rounds": []},
            "peers": peers,
            "ratios": {"python_api_vs_multiprocessing.Queue": 0.5}}


def test_the_report_prints_the_like_for_like_ratio_and_a_failed_peer(capsys):
    peers = {"multiprocessing.Queue": {"records": 1000, "records_per_s": 100e3, "ns_per_record": 10_000.0},
             "faster-fifo": {"failed": "its consumer hung, having received 10 of 30,000 bytes"},
             rb.PYTHON_RING: {"records": 1000, "records_per_s": 50e3, "ns_per_record": 20_000.0}}
    rb.print_report(_result(peers))
    out = capsys.readouterr().out
    assert "(ring batched is 200x; ring's Python API, 1 per call, 0.50x)" in out
    assert "faster-fifo" in out and "failed: its consumer hung" in out
    assert "like-for-like row is the ring's own Python API" in out


def test_zero_peer_records_are_refused():
    res = CliRunner().invoke(main, ["bench", "ring", "--peer-records", "0"])
    assert res.exit_code == 2 and "--peer-records" in res.output


def test_each_peer_is_its_best_of_the_runs_taking_turns_and_a_failure_is_said_once(monkeypatch):
    """One run each was at the mercy of the host's spells (the ring's Python API measured 850 and
    491 ns a record minutes apart): each side is its best of --repeats runs, taken in turns."""
    order = []
    speeds = {"q": iter([100e3, 300e3, 200e3]), "z": iter([900e3, 800e3, 700e3]),
              "r": iter([1e6, 2e6, 1.5e6])}

    def fake(tag):
        def run(*a, **k):
            order.append(tag)
            v = next(speeds[tag])
            return {"records": 10, "records_per_s": v, "ns_per_record": 1e9 / v}
        return run

    def failing(*a, **k):
        order.append("f")
        raise rb.PeerFailed("its consumer hung")

    monkeypatch.setattr(rb, "_time_peer", lambda make, *a: (fake("q") if make is rb._mp_queue else failing)())
    monkeypatch.setattr(rb, "time_zmq", fake("z"))
    monkeypatch.setattr(rb, "time_python_ring", fake("r"))
    peers = rb.time_peers(10, None, None, 3, say=lambda *a: None)
    assert order == ["q", "f", "z", "r", "q", "z", "r", "q", "z", "r"]   # turns; the failure once
    assert peers["multiprocessing.Queue"]["records_per_s"] == 300e3
    assert peers["pyzmq ipc"]["records_per_s"] == 900e3 and peers["pyzmq ipc"]["runs"] == 3
    assert peers[rb.PYTHON_RING]["records_per_s"] == 2e6
    assert peers["faster-fifo"] == {"failed": "its consumer hung"}
