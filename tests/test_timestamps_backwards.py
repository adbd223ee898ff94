"""``stats`` and ``read`` count the messages that go back in time.

A feed is in time order: every known message's timestamp is at or after the one before it. A
day spliced from two files, or a capture sorted by something other than its sequence numbers,
is not, and nothing said so. ``ReadInfo.timestamps_backwards`` counts the known messages whose
timestamp is earlier than the known message's before them (unknown types carry no trustworthy
timestamp and are passed over), whatever the pieces the source is framed in.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import itch_reference as ref
import itchflow
import itchflow.decode.reader as reader_module
from itchflow.cli import main


def _stream(items) -> bytes:
    """items: (timestamp, known); an unknown type's bytes where its timestamp would be are the
    timestamp too (it must be passed over all the same)."""
    out = b""
    for ts, known in items:
        if known:
            out += ref.encode("D", {"stock_locate": 1, "timestamp": ts, "order_reference_number": 7})
        else:
            out += ref.encode_unknown(ord("z"), bytes(4) + ts.to_bytes(6, "big"))
    return out


def _slow_count(items) -> int:
    known = [ts for ts, k in items if k]
    return sum(b < a for a, b in zip(known, known[1:]))


def _slow_first_back(items) -> int | None:
    """The byte offset of the first known message earlier than the known one before it."""
    at, prev = 0, None
    for ts, known in items:
        if known:
            if prev is not None and ts < prev:
                return at
            prev = ts
        at += 21 if known else 13   # a D message and its prefix; the unknown one's
    return None


def test_a_hand_worked_stream():
    # known timestamps 5, 3, 4, 2 (an unknown message of timestamp 1 between 3 and 4): two steps back
    data = _stream([(5, True), (3, True), (1, False), (4, True), (2, True), (2, True)])
    assert itchflow.stats(data).timestamps_backwards == 2
    assert itchflow.read(data).info.timestamps_backwards == 2
    assert itchflow.stats(data).to_dict()["timestamps_backwards"] == 2
    # the first to go back is the second message: at byte 21 (2 + 19 bytes of D before it)
    info = itchflow.stats(data)
    assert (info.first_backwards_offset, info.first_backwards_packet) == (21, None)
    assert info.to_dict()["first_backwards_offset"] == 21
    assert itchflow.read(data).info.first_backwards_offset == 21
    in_order = itchflow.stats(_stream([(1, True), (1, True), (2, True)]))
    assert (in_order.first_backwards_offset, in_order.first_backwards_packet) == (None, None)


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.tuples(st.integers(0, 20), st.booleans()), max_size=40), piece=st.integers(1, 8))
def test_any_stream_in_any_pieces_counts_as_a_slow_count(items, piece):
    data = _stream(items)
    info = itchflow.read(data).info
    assert (info.timestamps_backwards, info.first_backwards_offset) == (_slow_count(items), _slow_first_back(items))
    with pytest.MonkeyPatch.context() as mp:   # framed in pieces: the steps between them count too
        mp.setattr(reader_module, "STATS_PIECE_MESSAGES", piece)
        info = itchflow.stats(data)
        assert (info.timestamps_backwards, info.first_backwards_offset) == (_slow_count(items),
                                                                            _slow_first_back(items))


def test_a_generated_day_and_real_captures_are_in_time_order(tmp_path, all_captures):
    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(day, 100_000, seed=2, stocks=10)
    assert itchflow.stats(day).timestamps_backwards == 0
    for path in all_captures:
        assert itchflow.stats(path).timestamps_backwards == 0, path


@pytest.mark.parametrize("as_json", [True, False])
def test_the_command_line_says_so(tmp_path, as_json):
    path = tmp_path / "spliced.itch"
    path.write_bytes(_stream([(10, True), (20, True), (5, True), (6, True)]))
    res = CliRunner().invoke(main, ["stats", str(path)] + (["--json"] if as_json else []))
    assert res.exit_code == 0, res.output
    if as_json:
        assert json.loads(res.output)["timestamps_backwards"] == 1
        assert json.loads(res.output)["first_backwards_offset"] == 42
    else:
        assert "1 messages earlier than the message before them" in res.output
        assert "the first at byte 42" in res.output


def test_in_a_capture_the_packet_and_file_offset_are_named(tmp_path):
    # two packets; the second's second message goes back in time
    d = [ref.encode_body("D", {"stock_locate": 1, "timestamp": ts, "order_reference_number": 7})
         for ts in (10, 20, 30, 25)]
    frames = [ref.eth_ipv4_udp(ref.mold_packet(b"S1", 1, d[:2])), ref.eth_ipv4_udp(ref.mold_packet(b"S1", 3, d[2:]))]
    path = tmp_path / "back.pcap"
    path.write_bytes(ref.pcap_file(frames))
    info = itchflow.stats(path)
    # file header 24, packet 1 (16 + its frame), packet 2's record header 16, Ethernet/IPv4/UDP
    # 42, MoldUDP64 header 20, the first message of packet 2 (2 + 19)
    want = 24 + 16 + len(frames[0]) + 16 + 42 + 20 + 21
    assert (info.timestamps_backwards, info.first_backwards_offset, info.first_backwards_packet) == (1, want, 2)
    res = CliRunner().invoke(main, ["stats", str(path)])
    assert res.exit_code == 0, res.output
    assert f"the first at byte {want:,}, packet 2" in res.output
