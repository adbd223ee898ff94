"""Cached benchmark days are reused only when whole: a day cut at a message boundary ran as a
shorter day, "cached", with no warning (the summary beside it still gave the full count)."""

from __future__ import annotations

import json

from itchflow.bench import day_cache
from itchflow.decode.encoder import encode_message


def _day(n: int) -> bytes:
    return b"".join(encode_message("I", timestamp=1_000 + i) for i in range(n))


def _maker(n: int, calls: list):
    def make(path):
        calls.append(path)
        path.write_bytes(_day(n))
    return make


def test_made_once_then_reused_while_whole(tmp_path):
    path, calls = tmp_path / "d.itch", []
    assert day_cache.ensure(path, _maker(100, calls), 100) is True
    assert day_cache.ensure(path, _maker(100, calls), 100) is False
    assert len(calls) == 1 and path.read_bytes() == _day(100)
    assert json.loads(day_cache.record_path(path).read_text())["bytes"] == len(_day(100))


def test_a_day_cut_at_a_message_boundary_is_made_again_and_said(tmp_path, capsys):
    path, calls = tmp_path / "d.itch", []
    day_cache.ensure(path, _maker(100, calls), 100)
    path.write_bytes(_day(60))                      # whole messages, fewer of them
    assert day_cache.ensure(path, _maker(100, calls), 100) is True
    assert path.read_bytes() == _day(100) and len(calls) == 2
    assert f"the cached {path} is not the file written there" in capsys.readouterr().err


def test_a_day_changed_in_its_tail_at_the_same_size_is_made_again(tmp_path):
    path, calls = tmp_path / "d.itch", []
    day_cache.ensure(path, _maker(100, calls), 100)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert day_cache.ensure(path, _maker(100, calls), 100) is True and path.read_bytes() == _day(100)


def test_a_day_cached_before_the_record_is_read_through_once(tmp_path):
    path, calls = tmp_path / "d.itch", []
    path.write_bytes(_day(100))                     # as an earlier version left it: no record
    assert day_cache.ensure(path, _maker(100, calls), 100) is False and calls == []
    assert day_cache.record_path(path).exists()
    short = tmp_path / "short.itch"
    short.write_bytes(_day(70))                     # no record, and not the day expected
    assert day_cache.ensure(short, _maker(100, calls), 100) is True and short.read_bytes() == _day(100)
    cut = tmp_path / "cut.itch"
    cut.write_bytes(_day(100)[:-3])                 # no record, cut inside a message
    assert day_cache.ensure(cut, _maker(100, calls), 100) is True and cut.read_bytes() == _day(100)


def test_the_book_benchmark_remakes_a_cut_shape_day(tmp_path, monkeypatch):
    import itchflow.bench.book as bb

    monkeypatch.setattr(bb, "BENCH_DIR", tmp_path)
    params = bb.shape_params("deep", 20_000, seed=3)
    path, info, made = bb.ensure_shape_day(params)
    assert made and info["messages"] == 20_000
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    path2, info2, made2 = bb.ensure_shape_day(params)
    assert path2 == path and made2 and path.read_bytes() == whole and info2["messages"] == 20_000
    assert bb.ensure_shape_day(params)[2] is False
