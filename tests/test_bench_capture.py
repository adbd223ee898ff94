"""The capture writer behind ``bench capture`` (checked by the reference pcap reader) and the
benchmark on a small day: every form gives the day's messages, and the peer's ratio is there."""

from __future__ import annotations

import json
import struct

import numpy as np
from click.testing import CliRunner

import itch_reference as ref
import itchflow
from itchflow.sim.captures import write_capture
from itchflow.sim.generator import write_day


def test_a_written_capture_holds_the_day_packet_by_packet(tmp_path):
    """Each pcap frame is Ethernet/IPv4/UDP around one MoldUDP64 packet: the packets' messages
    are the day's, in order, sequence numbers from 1 (anonymised: every one 0), each payload
    at most the size asked for; read gives the day's arrays (anonymised: each packet's
    messages numbered from 0)."""
    day = tmp_path / "day.itch"
    write_day(day, 20_000, seed=3, stocks=20)
    raw = day.read_bytes()
    for anonymised in (False, True):
        path = tmp_path / f"day{int(anonymised)}.pcap"
        got = write_capture(day, path, payload_bytes=200, anonymised=anonymised)
        frames = ref.pcap_frames(path.read_bytes())
        assert got["packets"] == len(frames) and got["messages"] == 20_000
        stream, expected_seq, numbers = b"", 1, []
        for frame in frames:
            assert frame[12:14] == b"\x08\x00" and frame[23] == 17   # IPv4, UDP
            payload = frame[14 + 20 + 8:]
            assert len(payload) <= 200 and struct.unpack(">H", frame[14 + 20 + 4:14 + 20 + 6])[0] == 8 + len(payload)
            seq, count = struct.unpack(">QH", payload[10:20])
            assert seq == (0 if anonymised else expected_seq)
            numbers += [seq + k for k in range(count)]
            expected_seq += count
            stream += payload[20:]
        assert stream == raw
        d, want = itchflow.read(path), itchflow.read(day)
        assert d.info.capture["unsequenced_packets"] == (len(frames) if anonymised else 0)
        for code in want.counts:
            for name in want[code].dtype.names:
                if name != "sequence":
                    assert np.array_equal(d[code][name], want[code][name]), (code, name)
        merged = np.sort(np.concatenate([d[c]["sequence"] for c in d.counts]))
        assert merged.tolist() == sorted(numbers)


def test_bench_capture_on_a_small_day(tmp_path, monkeypatch):
    """Every form (the pcap ordered whole and a part at a time too), every job gives the day's
    messages; itchcpp's ratio and what stats allocated at its peak are beside each."""
    import itchflow.bench.capture as bench_capture
    import itchflow.bench.common as common
    import itchflow.bench.decode as bench_decode
    from itchflow.cli import main

    for module in (common, bench_capture, bench_decode):
        monkeypatch.setattr(module, "BENCH_DIR", tmp_path)
    res = CliRunner().invoke(main, ["bench", "capture", "--messages", "80k", "--repeat", "1", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.output.strip().splitlines()[-1])
    assert r["messages"] == 80_000 and r["packets"] > 80_000 / 10
    assert set(r["forms"]) == {"raw", "pcap", "pcap, in parts", "anonymised pcap"}
    for row in r["forms"].values():
        assert all(row[job]["messages"] == 80_000 for job in ("stats", "read", "replay"))
        assert row["replay_ratio_vs_itchcpp"] > 0 and row["stats_peak_bytes"] > 0
    # the peer's books are checked, not only timed
    agree = r["bbo_agreement"]
    assert agree["stocks"] > 100 and agree["differ"] == 0 and len(r["itchcpp"]["seconds_each"][0]) == 2
    text = CliRunner().invoke(main, ["bench", "capture", "--messages", "80k", "--repeat", "1", "--no-peers"])
    assert text.exit_code == 0 and "anonymised pcap" in text.output and "messages a packet" in text.output
