"""Liveness by heartbeat age and pid (never pid alone), consumer entries validated, stale rings.

A reused pid is simulated with a live process that is not the producer (our parent); ages
are set in the header words the way a process that stopped beating would leave them.
"""

from __future__ import annotations

import os
import time

import pytest

from itchflow.ring import ProducerGone, Ring, RingBusy, RingFormatError
from itchflow.ring.liveness import process_start
from itchflow.ring import layout as L

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def path(ring_path):
    return ring_path


def as_if_producer_is(ring: Ring, pid: int, heartbeat_age_s: float) -> None:
    w = ring.words
    w[L.W_PROD_PID] = pid
    w[L.W_PROD_HB] = time.monotonic_ns() - int(heartbeat_age_s * 1e9)
    w[L.W_PROD_STATE] = L.PRODUCER_OPEN


def test_producer_whose_pid_was_reused_is_gone_by_its_heartbeat(path):
    """The pid now names another live process: gone by its heartbeat, and said to be gone, not
    "alive, stopped signalling" (the producer's start time, recorded beside its pid, differs)."""
    with Ring.create(path, 1 << 14, consumers=["r"]) as ring:
        w = ring.writer()
        w.write(b"last words")
        w.close()
        assert int(ring.words[L.W_PROD_START]) == process_start(os.getpid()) > 0
        as_if_producer_is(ring, 1, 21.0)   # the pid now names another live process (init: started long before)
        rd = ring.reader("r")
        got = []
        t0 = time.monotonic()
        with pytest.raises(ProducerGone, match=r"producer pid 1 is gone \(its pid now belongs to "
                                               r"another process; read up to") as e:
            while True:
                got += [x.tobytes() for x in rd.read_batch(timeout=10)]
        assert e.value.alive_pid == 0
        assert got == [b"last words"] and time.monotonic() - t0 < 5
        assert ring.snapshot()["producer"]["alive"] is False
        w2 = ring.writer()      # and a new producer may take over (not RingBusy)
        w2.write(b"again")
        w2.close()


def test_live_heartbeating_producer_is_busy_and_alive_while_idle(path):
    with Ring.create(path, 1 << 14, consumers=["r"], heartbeat_timeout=0.05) as ring:
        w = ring.writer()
        hb0 = int(ring.words[L.W_PROD_HB])
        deadline = time.monotonic() + 10     # idle: no publish, yet the heartbeat moves on
        while int(ring.words[L.W_PROD_HB]) == hb0:
            assert time.monotonic() < deadline, "the idle producer's heartbeat never moved"
            time.sleep(0.005)
        with Ring.open(path) as other:
            mine = int(other.words[L.W_PROD_START])
            other.words[L.W_PROD_PID] = os.getppid()    # as if another live process held the role
            other.words[L.W_PROD_START] = process_start(os.getppid())
            with pytest.raises(RingBusy, match="is alive"):
                other.writer()
            other.words[L.W_PROD_PID] = os.getpid()
            other.words[L.W_PROD_START] = mine
        w.close()


@pytest.mark.parametrize("word, value, message", [
    (L.S_STATE, 9, "consumer slot 0: state 9 is not a slot state"),
    (L.S_NAME_LEN, 200, "consumer slot 0: name length 200"),
    (L.S_COMMIT_IDX, 5, "commit index 5"),
    (L.S_COMMIT0, 1 << 40, "position 1099511627776 is outside"),
    (L.S_COMMIT0 + 1, -3, "records index -3 is outside"),
])
def test_corrupt_consumer_entry_is_a_clear_error(path, word, value, message):
    with Ring.create(path, 1 << 14, consumers=["book"], keep=True) as ring:
        w = ring.writer()
        for i in range(5):
            w.write(bytes([i]) * 10)
        w.close()
        ring.words[L.slot_base(0) + word] = value
    with pytest.raises(RingFormatError, match=f"{path}: {message}" if "slot" in message else message):
        Ring.open(path)


def test_consumer_name_of_a_dead_heartbeat_can_be_taken_over(path):
    with Ring.create(path, 1 << 14, consumers=["r"], heartbeat_timeout=0.5) as ring:
        b = L.slot_base(0)
        ring.words[b + L.S_PID] = os.getppid()                      # live pid ...
        ring.words[b + L.S_HB] = time.monotonic_ns() - 30 * 10**9    # ... that stopped beating long ago
        ring.reader("r").close()


def test_stale_ring_is_recognised_and_reclaimed(path):
    with Ring.create(path, 1 << 14, consumers=["r"], heartbeat_timeout=0.2, keep=True) as ring:
        assert ring.staleness().holders == [f"creator pid {os.getpid()}"]
        w = ring.words
        w[L.W_CREATOR_PID] = 0x3FFFFFFF           # a pid that does not exist: the creator is dead
        b = L.slot_base(0)
        w[b + L.S_PID] = os.getpid()
        w[b + L.S_HB] = time.monotonic_ns()       # a consumer beat just now: not stale yet
        s = ring.staleness()
        assert not s.stale and s.holders == [f"consumer pid {os.getpid()}"]
        w[b + L.S_PID] = L.PID_MAX                # its process is dead (no pid is that large), its heartbeat still fresh
        s = ring.staleness()
        assert not s.stale and s.waiting
        assert Ring.reclaim_stale(path) is True   # waits for the heartbeat to age, then removes it
    assert not os.path.exists(path)
    assert Ring.reclaim_stale(path) is False


def test_a_cleanly_closed_feed_with_unread_records_is_not_reclaimed(path):
    with Ring.create(path, 1 << 14, consumers=["book"], keep=True) as ring:
        w = ring.writer()
        w.write(b"unread")
        w.close()
        ring.words[L.W_CREATOR_PID] = 0x3FFFFFFF          # its creator (listen --ring) has exited
        ring.words[L.slot_base(0) + L.S_HB] = 1            # and nobody is reading yet
        assert ring.staleness().stale
        with pytest.raises(RingBusy, match="closed it cleanly and it still holds 1 records consumer 'book'"):
            Ring.reclaim_stale(path)
        assert os.path.exists(path)
        rd = ring.reader("book")
        assert [x.tobytes() for x in rd.read_batch(timeout=0)] == [b"unread"]
        rd.close()
        ring.words[L.slot_base(0) + L.S_HB] = 1            # the reader is gone too: now it is debris
        assert Ring.reclaim_stale(path) is True
    assert not os.path.exists(path)
