"""The research outputs of an anonymised capture: MoldUDP64 packets of sequence number 0
(unsequenced, as anonymised sample captures are), each its own run numbered from 0, so
``sequence`` orders nothing. LOBSTER paired its messages with the books' events by sequence
and stopped with "LOBSTER rows and L2 events disagree on the message order"; auctions ordered
crosses and paired imbalances by it. Both now number the stream themselves: the capture gives
what the same messages give as a raw file."""

from __future__ import annotations

import numpy as np
import pytest

import itch_reference as ref
import itchflow
from itchflow.sim.generator import generate_day


@pytest.fixture(scope="module")
def day_and_captures(tmp_path_factory):
    d = tmp_path_factory.mktemp("capture_research")
    raw = bytes(generate_day(30_000, seed=11, stocks=6))
    msgs, at = [], 0
    while at < len(raw):
        n = int.from_bytes(raw[at:at + 2], "big")
        msgs.append(raw[at + 2:at + 2 + n])
        at += 2 + n
    paths = {"raw": d / "day.itch"}
    paths["raw"].write_bytes(raw)
    for name, sequenced in (("sequenced", True), ("unsequenced", False)):
        frames, seq = [], 1
        for k in range(0, len(msgs), 7):
            batch = msgs[k:k + 7]
            frames.append(ref.eth_ipv4_udp(ref.mold_packet(b"SESSION001", seq if sequenced else 0, batch)))
            seq += len(batch)
        paths[name] = d / f"{name}.pcap"
        paths[name].write_bytes(ref.pcap_file(frames))
    return {k: str(v) for k, v in paths.items()}


def _busiest(path) -> list[str]:
    books = itchflow.Books().replay(path)
    return sorted(books.symbols, key=books.volume)[-2:]


@pytest.mark.parametrize("capture", ["sequenced", "unsequenced"])
def test_lobster_of_a_capture_is_the_raw_days(day_and_captures, capture):
    syms = _busiest(day_and_captures["raw"])
    want = itchflow.lobster(day_and_captures["raw"], syms, levels=3, start=None, end=None)
    got = itchflow.lobster(day_and_captures[capture], syms, levels=3, start=None, end=None, slice_bytes=4096)
    for s in syms:
        assert got[s].rows == want[s].rows > 500
        assert got[s].messages.to_pydict() == want[s].messages.to_pydict()
        assert got[s].orderbook.to_pydict() == want[s].orderbook.to_pydict()
        assert got[s].skipped == want[s].skipped


@pytest.mark.parametrize("capture", ["sequenced", "unsequenced"])
def test_auctions_of_a_capture_are_the_raw_days(day_and_captures, capture):
    want = itchflow.auctions(day_and_captures["raw"])
    got = itchflow.auctions(day_and_captures[capture])
    assert want.imbalances.num_rows > 50 and want.crosses.num_rows > 5
    assert got.crosses.to_pandas().equals(want.crosses.to_pandas())
    assert got.imbalances.to_pandas().equals(want.imbalances.to_pandas())


def test_scan_renumbered_is_the_place_in_the_stream(day_and_captures):
    pieces = list(itchflow.scan(day_and_captures["unsequenced"], "AD", chunk_messages=1000, renumber=True))
    seqs = np.concatenate([np.concatenate([p["A"]["sequence"], p["D"]["sequence"]]) for p in pieces])
    raw = itchflow.read(day_and_captures["raw"], "AD")
    assert sorted(seqs.tolist()) == sorted(np.concatenate([raw["A"]["sequence"], raw["D"]["sequence"]]).tolist())
    plain = list(itchflow.scan(day_and_captures["unsequenced"], "A", chunk_messages=1000))
    assert int(np.concatenate([p["A"]["sequence"] for p in plain]).max()) < 7   # numbered within each packet
