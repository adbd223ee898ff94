"""wire.shard.split_by_locate: every message lands in the shard of its locate (system
messages and broadcast types in every shard, unknown types in shard 0), byte for byte, with
its original sequence number; full buffers resume exactly; bad input stops at the message."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.decode.encoder import encode_message
from itchflow.wire import shard as S
from itchflow.wire.binaryfile import TRUNCATED, ZERO_LENGTH
from itchflow.wire.itch import LENGTH_BY_BYTE

LENGTHS = np.array(LENGTH_BY_BYTE)


def _msg(kind: str, locate: int, ts: int) -> bytes:
    if kind == "S":
        return encode_message("S", stock_locate=locate, timestamp=ts, event_code="O")
    if kind == "R":
        return encode_message("R", stock_locate=locate, timestamp=ts, stock=f"S{locate}")
    if kind == "A":
        return encode_message("A", stock_locate=locate, timestamp=ts, order_reference_number=ts,
                              buy_sell_indicator="B", shares=100, stock=f"S{locate}", price=10_000)
    if kind == "D":
        return encode_message("D", stock_locate=locate, timestamp=ts, order_reference_number=ts)
    if kind == "?":  # an unknown type byte 'z' with a 5-byte body
        return b"\x00\x05z" + locate.to_bytes(2, "big") + b"\x00\x00"
    raise AssertionError(kind)


def _reference(msgs: list[tuple[str, int]], shard_of: np.ndarray, nshards: int, broadcast: str, first_seq: int):
    """The obvious routing, message by message in Python."""
    rows = [[] for _ in range(nshards)]
    seqs = [[] for _ in range(nshards)]
    for i, (kind, loc) in enumerate(msgs):
        raw = _msg(kind, loc, i + 1)
        if kind == "?":
            targets = [0]
        elif loc == 0 or kind in broadcast:
            targets = range(nshards)
        else:
            targets = [int(shard_of[loc])]
        for k in targets:
            rows[k].append(raw)
            seqs[k].append(first_seq + i)
    return [b"".join(r) for r in rows], seqs


def _split(buf: np.ndarray, nshards: int, broadcast: str, first_seq: int = 1, row_bytes: int = 1 << 20,
           seq_cap: int = 1 << 16, shard_of: np.ndarray | None = None):
    """Drive the kernel as a caller does: flush on NEED_SPACE. Returns (status, pos, shards, seqs, counts, state)."""
    shard_of = S.modulo_map(nshards) if shard_of is None else shard_of
    out = np.zeros((nshards, row_bytes), np.uint8)
    seqs = np.zeros((nshards, seq_cap), np.uint64)
    fill = np.zeros(nshards, np.int64)
    nseq = np.zeros(nshards, np.int64)
    counts = np.zeros(256, np.int64)
    state = S.new_state()
    got = [bytearray() for _ in range(nshards)]
    got_seq = [[] for _ in range(nshards)]
    pos, seq, flushes = 0, first_seq, 0
    while True:
        status, pos, seq = S.split_by_locate(buf, pos, len(buf), np.int64(seq), shard_of, S.broadcast_mask(broadcast),
                                             LENGTHS, out, fill, seqs, nseq, counts, state)
        for k in range(nshards):
            got[k] += out[k, : fill[k]].tobytes()
            got_seq[k] += seqs[k, : nseq[k]].tolist()
        if status != S.NEED_SPACE:
            return status, int(pos), [bytes(g) for g in got], got_seq, counts, state, flushes
        assert fill.any() or nseq.any(), "NEED_SPACE with nothing to flush"
        fill[:] = 0
        nseq[:] = 0
        flushes += 1


def test_hand_built_day_routes_by_locate():
    msgs = [("S", 0), ("R", 1), ("R", 2), ("R", 3), ("A", 1), ("A", 2), ("A", 3), ("?", 2), ("D", 3),
            ("A", 4), ("S", 0), ("D", 1)]
    buf = np.frombuffer(b"".join(_msg(k, loc, i + 1) for i, (k, loc) in enumerate(msgs)), np.uint8)
    status, pos, shards, seqs, counts, state, _ = _split(buf, 3, "S", first_seq=101)
    assert status == S.OK and pos == len(buf)
    want, want_seq = _reference(msgs, S.modulo_map(3), 3, "S", 101)
    assert shards == want and seqs == want_seq
    # by hand: shard 1 holds locates 1 and 4 plus both S: sequences 101 (S), 102 (R 1), 105 (A 1),
    # 110 (A 4), 111 (S), 112 (D 1)
    assert seqs[1] == [101, 102, 105, 110, 111, 112]
    assert seqs[0][-1] == 111 and 108 in seqs[0]  # the unknown type went to shard 0
    assert counts[ord("A")] == 4 and counts[ord("z")] == 1 and int(state[S.S_MESSAGES]) == len(msgs)
    assert state[S.S_FIRST_TS] == 1 and state[S.S_LAST_TS] == 12  # the unknown type has no timestamp read


def test_broadcast_types_reach_every_shard():
    msgs = [("R", 5), ("R", 6), ("A", 5)]
    buf = np.frombuffer(b"".join(_msg(k, loc, i + 1) for i, (k, loc) in enumerate(msgs)), np.uint8)
    _, _, shards, seqs, *_ = _split(buf, 2, "SR")
    assert seqs == [[1, 2], [1, 2, 3]]
    mask = S.broadcast_mask("SR")
    assert S.is_broadcast(np.array([ord("R"), ord("A"), ord("A")]), np.array([5, 5, 0]), mask).tolist() == [True, False, True]


def test_full_rows_resume_at_the_exact_message():
    rng = np.random.default_rng(3)
    msgs = [(str(rng.choice(list("AADRS"))), int(rng.integers(0, 9))) for _ in range(600)]
    msgs = [(k, 0 if k == "S" else max(loc, 1)) for k, loc in msgs]
    buf = np.frombuffer(b"".join(_msg(k, loc, i + 1) for i, (k, loc) in enumerate(msgs)), np.uint8)
    whole = _split(buf, 4, "S")
    tiny = _split(buf, 4, "S", row_bytes=S.MAX_MESSAGE_BYTES, seq_cap=3)
    assert tiny[6] > 50  # it really had to flush often
    assert tiny[:4] == whole[:4] and tiny[4].tolist() == whole[4].tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("SRAD?"), st.integers(0, 40)), max_size=80), st.integers(1, 6),
       st.sampled_from(["S", "SR"]))
def test_property_matches_the_obvious_routing(msgs, nshards, broadcast):
    msgs = [(k, 0 if k == "S" else loc) for k, loc in msgs]
    buf = np.frombuffer(b"".join(_msg(k, loc, i + 1) for i, (k, loc) in enumerate(msgs)) or b"", np.uint8)
    rng = np.random.default_rng(len(msgs))
    shard_of = rng.integers(0, nshards, S.N_LOCATES).astype(np.int32)
    status, pos, shards, seqs, *_ = _split(buf, nshards, broadcast, first_seq=7, shard_of=shard_of)
    assert status == S.OK and pos == len(buf)
    assert (shards, seqs) == _reference(msgs, shard_of, nshards, broadcast, 7)


def test_bad_input_stops_at_the_message():
    good = _msg("A", 1, 1) + _msg("D", 2, 2)
    cut = np.frombuffer(good + _msg("A", 1, 3)[:-4], np.uint8)
    status, pos, shards, *_ = _split(cut, 2, "S")
    assert status == TRUNCATED and pos == len(good)
    assert sum(len(s) for s in shards) == len(good)  # what came before was routed
    zero = np.frombuffer(good + b"\x00\x00", np.uint8)
    assert _split(zero, 2, "S")[:2] == (ZERO_LENGTH, len(good))
    bad_len = bytearray(_msg("A", 1, 3))
    bad_len[1] -= 1  # A declared one byte short
    bad = np.frombuffer(good + bytes(bad_len[:-1]), np.uint8)
    assert _split(bad, 2, "S")[:2] == (S.BAD_LENGTH, len(good))
    wild = np.zeros(S.N_LOCATES, np.int32)
    wild[2] = 5  # a map naming a shard that does not exist
    assert _split(np.frombuffer(good, np.uint8), 2, "S", shard_of=wild)[:2] == (S.BAD_SHARD, len(_msg("A", 1, 1)))


def test_balanced_map_and_counts():
    msgs = [("A", 1)] * 50 + [("A", 2)] * 30 + [("D", 3)] * 20 + [("A", 4)] * 20 + [("S", 0), ("?", 9)]
    buf = np.frombuffer(b"".join(_msg(k, loc, i + 1) for i, (k, loc) in enumerate(msgs)), np.uint8)
    per = np.zeros(S.N_LOCATES, np.int64)
    assert S.count_by_locate(buf, 0, len(buf), LENGTHS, per) == (S.OK, len(buf))
    assert per[1] == 50 and per[2] == 30 and per[3] == 20 and per[4] == 20 and per[0] == 1 and per[9] == 0
    m = S.balanced_map(per, 2)
    # by hand (heaviest first, to the lighter shard): 1 -> 0 (50), 2 -> 1 (30), 3 -> 1 (50), 4 -> 0 (70)
    assert [m[1], m[2], m[3], m[4]] == [0, 1, 1, 0]
    assert m[5] == 5 % 2 and m.dtype == np.int32  # unseen locates: round-robin
    _, _, _, seqs, *_ = _split(buf, 2, "S", shard_of=m)
    assert len(seqs[0]) == 50 + 20 + 1 + 1 and len(seqs[1]) == 30 + 20 + 1


def test_options_are_checked():
    with pytest.raises(ValueError):
        S.modulo_map(0)
    with pytest.raises(ValueError):
        S.broadcast_mask("S!")
