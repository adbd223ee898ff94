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


def test_a_hand_worked_stream():
    # known timestamps 5, 3, 4, 2 (an unknown message of timestamp 1 between 3 and 4): two steps back
    data = _stream([(5, True), (3, True), (1, False), (4, True), (2, True), (2, True)])
    assert itchflow.stats(data).timestamps_backwards == 2
    assert itchflow.read(data).info.timestamps_backwards == 2
    assert itchflow.stats(data).to_dict()["timestamps_backwards"] == 2


@settings(max_examples=150, deadline=None)
@given(items=st.lists(st.tuples(st.integers(0, 20), st.booleans()), max_size=40), piece=st.integers(1, 8))
def test_any_stream_in_any_pieces_counts_as_a_slow_count(items, piece):
    data = _stream(items)
    assert itchflow.read(data).info.timestamps_backwards == _slow_count(items)
    with pytest.MonkeyPatch.context() as mp:   # framed in pieces: the steps between them count too
        mp.setattr(reader_module, "STATS_PIECE_MESSAGES", piece)
        assert itchflow.stats(data).timestamps_backwards == _slow_count(items)


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
    else:
        assert "1 messages earlier than the message before them" in res.output
