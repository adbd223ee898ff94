"""SequenceRuns.numbers against the obvious reference: for each place, the last run starting at
or before it (a binary search), its first number plus the place's distance from the run's start.
Places in rising order (a decoded array's rows, the fast path), in any order, repeated, and past
the last run's first message."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.wire.sequence_runs import SequenceRuns


def _slow(first: list[int], sequence: list[int], place: int) -> int:
    j = max(i for i, f in enumerate(first) if f <= place)
    return sequence[j] + place - first[j]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2**40)), min_size=1, max_size=30),
       st.lists(st.integers(0, 200), max_size=60), st.booleans())
def test_numbers_are_each_places_run_start_plus_its_distance(runs, places, rising):
    messages = [n for n, _ in runs]
    r = SequenceRuns.of_runs(np.array(messages), np.array(messages) * 40, np.array([s for _, s in runs]))
    first = r.first_message.tolist()
    places = sorted(places) if rising else places
    got = r.numbers(np.array(places, np.uint64)).tolist()
    assert got == [_slow(first, [s for _, s in runs], p) for p in places]
    if places:
        assert int(r.numbers(places[0])) == got[0]   # a single place, as a scalar


def test_a_run_of_no_messages_is_stepped_over():
    r = SequenceRuns.of_runs(np.array([2, 0, 3]), np.array([10, 0, 15]), np.array([7, 99, 0]))
    assert r.numbers(np.arange(5)).tolist() == [7, 8, 0, 1, 2]
