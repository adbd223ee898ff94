"""Same seed, same bytes: sha256 of a few small generated days, recorded from the generator
before it was split into modules (sim/rng, draws, writers, market, crosses, flow, phases).
A change to any model detail changes these on purpose; update them only with a reason.
Updated: (50_000, 7, 30) when a B began to carry the locate and tracking number of the trade it
breaks (its one B was the only difference, checked message by message against the old bytes)."""

from __future__ import annotations

import hashlib

import pytest

from itchflow.sim.generator import generate_day, write_day

DAYS = {
    (20_000, 1, 10, False): "d0faa15726c969a0e84866725b3e210d2064b4c1f1d94b7587cd229a1633a0bf",
    (20_000, 2, 10, True): "7380815ff7f59221d386b1387d037b5c1f9b31cf4e330ccf5c1032136a0dbc69",
    (50_000, 7, 30, False): "b3aaa0b482b9d2726ce63744d0088a1a4df23a346b93112b78877a0cfce81f29",
}


@pytest.mark.parametrize("messages,seed,stocks,close_all", list(DAYS))
def test_same_seed_gives_the_recorded_bytes(messages, seed, stocks, close_all):
    day = generate_day(messages, seed, stocks, close_all)
    assert hashlib.sha256(day.tobytes()).hexdigest() == DAYS[(messages, seed, stocks, close_all)]


def test_small_chunks_give_the_same_bytes(tmp_path):
    path = tmp_path / "day.itch"
    write_day(path, 20_000, 1, stocks=10, chunk_bytes=4096)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DAYS[(20_000, 1, 10, False)]
