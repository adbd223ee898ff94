"""ShardSchedule (who routes and applies what next in ShardedBooks), run without threads.

A simulated machine of N workers with random task times drives the state machine; every
run must route each chunk once in order, apply each (shard, chunk) exactly once, in chunk
order per shard, never while the chunk is not routed or its slot is still in use, never on
two workers at once, and must finish (no worker left waiting while work remains).
"""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.book.shard_schedule import APPLY, ROUTE, ShardSchedule


def simulate(shards, slots, workers, chunks, speeds, seed_times, route_cost=0.1, out=None):
    """Run the schedule to the end; returns (applies in completion order, per-worker busy time,
    total time); ``out`` (a dict) gets the schedule."""
    sch = ShardSchedule(shards, slots, workers)
    if out is not None:
        out["schedule"] = sch
    events = []                   # (finish time, worker, task)
    idle = list(range(workers))
    now = 0.0
    applied = []
    busy = [0.0] * workers
    routed_at = {}
    t = 0
    while True:
        for w in list(idle):
            task = sch.next_task(w)
            if task is None:
                continue
            idle.remove(w)
            if task[0] == ROUTE:
                assert task[1] == sch.routed                          # routed in order
                c = task[1]
                assert c < chunks
                oldest = min(sch.next_chunk)
                assert c - oldest < slots                              # its slot is free
                cost = route_cost
            else:
                _, s, c = task
                assert c == sch.next_chunk[s] and c < sch.routed      # in order, routed
                cost = seed_times[t % len(seed_times)]
                t += 1
            cost /= speeds[w]
            busy[w] += cost
            heapq.heappush(events, (now + cost, w, task))
        if not events:
            break
        now, w, task = heapq.heappop(events)
        if task[0] == ROUTE:
            routed_at[task[1]] = now
            sch.route_done(task[1] == chunks - 1)
        else:
            applied.append((task[1], task[2]))
            sch.apply_done(task[1])
        idle.append(w)
    assert sch.done
    return applied, busy, now


@settings(max_examples=150, deadline=None)
@given(shards=st.integers(1, 6), slots=st.integers(1, 4), workers=st.integers(1, 3),
       chunks=st.integers(1, 12), speeds=st.lists(st.floats(0.2, 1.0), min_size=3, max_size=3),
       times=st.lists(st.floats(0.05, 3.0), min_size=1, max_size=20))
def test_every_shard_applies_every_chunk_once_in_order(shards, slots, workers, chunks, speeds, times):
    workers = min(workers, shards)
    applied, _, _ = simulate(shards, slots, workers, chunks, speeds, times)
    assert sorted(applied) == [(s, c) for s in range(shards) for c in range(chunks)]
    for s in range(shards):
        assert [c for k, c in applied if k == s] == list(range(chunks))


def test_a_slower_worker_applies_less():
    """Worker 0 runs at 60% of worker 1's speed: the faster one takes more of the work, and
    the day ends sooner than with one fixed shard per worker would allow."""
    shards, chunks = 4, 40
    applied, busy, total = simulate(shards, 4, 2, chunks, [0.6, 1.0], [1.0])
    work = shards * chunks * 1.0 + chunks * 0.1
    fixed = (shards // 2) * chunks / 0.6          # half the shards on the slow worker
    assert total < 0.8 * fixed
    assert total < 1.1 * work / 1.6               # near the two workers' joint speed
    assert abs(busy[0] - busy[1]) < 0.1 * total   # both busy all along


@pytest.mark.parametrize("route_cost", [0.1, 0.3])
@pytest.mark.parametrize("times", [[1.0], [0.9, 1.1, 1.0, 1.2, 0.8]])
def test_equal_workers_keep_their_shards(route_cost, times):
    """One shard a worker on equally fast workers: each keeps its shard all day (a shard that
    moves leaves its state in the other core's caches), the worker whose shard leads does the
    routing, and the day takes half the work (routing included) or near it."""
    shards, chunks = 2, 60
    out = {}
    applied, busy, total = simulate(shards, 4, 2, chunks, [1.0, 1.0], times, route_cost, out)
    work = sum(times[i % len(times)] for i in range(shards * chunks)) + chunks * route_cost
    assert out["schedule"].moves <= 4   # (the rule before: 2-107 moves in these four cases)
    assert total < 1.1 * work / 2
    assert abs(busy[0] - busy[1]) < 0.1 * total


def test_with_one_shard_a_worker_a_slower_worker_still_applies_less():
    """Two shards, worker 0 at 60% of worker 1's speed: routing alone cannot even that out, so
    the faster worker takes chunks of the slower one's shard too, and the day ends well before
    the slower worker could finish its shard alone."""
    shards, chunks = 2, 40
    applied, busy, total = simulate(shards, 4, 2, chunks, [0.6, 1.0], [1.0])
    work = shards * chunks * 1.0 + chunks * 0.1
    fixed = chunks / 0.6                          # one shard on the slow worker
    assert total < 0.85 * fixed
    assert total < 1.15 * work / 1.6
    assert abs(busy[0] - busy[1]) < 0.15 * total


def test_a_thread_far_behind_routes_only_for_an_idle_thread():
    """A thread whose shard is more than ``slack`` chunks behind hands it over (routes, so that
    another thread may apply its shard meanwhile) only while another thread has nothing to do;
    otherwise it goes on applying its own shard (the shards would trade threads on every chunk)."""
    def state(next_chunk, routed):
        sch = ShardSchedule(2, 4, 2, slack=1)
        for w, shard in ((0, 0), (1, 1)):   # each worker has applied its own shard so far
            sch._warm[w] = shard
            sch._warm_of[shard] = w
        sch.next_chunk, sch.routed = list(next_chunk), routed
        return sch

    # worker 1 applies chunk 4 of shard 1: worker 0, 2 chunks behind, applies its own shard
    busy = state([2, 4], 5)
    busy.holding[1] = True
    assert busy.next_task(0) == (APPLY, 0, 2)
    # worker 0 applies chunk 1 of shard 0; shard 1 is 4 slots ahead, so worker 1 has nothing
    idle = state([1, 5], 5)
    idle.holding[0] = True
    assert idle.next_task(1) is None
    idle.apply_done(0)                      # shard 0 is at chunk 2, still 3 behind
    assert idle.next_task(0) == (ROUTE, 5)  # worker 0 routes ...
    assert idle.next_task(1) == (APPLY, 0, 2)   # ... and worker 1 takes a chunk of its shard


def test_a_failure_stops_handing_out_work():
    sch = ShardSchedule(2, 2, 2)
    assert sch.next_task(0) == (ROUTE, 0)
    sch.route_done(False)
    task = sch.next_task(0)
    assert task[0] == APPLY
    sch.stop()
    assert sch.next_task(1) is None and not sch.done   # the running task still reports back
    sch.apply_done(task[1])
    assert sch.done


def test_bad_arguments():
    for args in ((0, 1, 1), (1, 0, 1), (1, 1, 0)):
        with pytest.raises(ValueError):
            ShardSchedule(*args)
