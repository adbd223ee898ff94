"""Two processes and one ring name at once (probe 48).

- Two creators of one name: the check that the name is free came before the ring was written,
  and the rename that put it in place replaced whatever had come meanwhile, so both succeeded
  and each run's producer wrote into the one ring left. The name is now given by a link, which
  fails if it exists.
- Two writers opened at once: a ring read as having a live producer only at the end of the
  claim, and both writers took it (20 of 20 in the probe). The claim now holds a lock on the
  ring file.
- A creator removed its ring's name at exit even when the name had been given to another ring
  since (``ring rm --force``, then a new run): the new run's ring lost its name while live.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import pytest

import itchflow.ring.file as ring_file
from itchflow.ring import Ring, RingBusy
from itchflow.ring import layout as L

CTX = mp.get_context("fork")
_TRY_WRITER = """
import sys
from itchflow.ring import Ring, RingBusy
ring = Ring.open(sys.argv[1])
try:
    ring.writer().close()
    print("claimed")
except RingBusy:
    print("busy")
"""


def test_a_name_taken_while_the_ring_is_written_is_not_replaced(ring_path, monkeypatch):
    """The other creator is simulated at the one point between the check and the naming: the
    memory check, which every create makes after the name was found free."""
    other = {}
    real_check = ring_file._check_memory

    def another_creator_meanwhile(path, size, huge):
        if not other:
            other["ring"] = None   # (once: the other creator's own create checks memory too)
            other["ring"] = Ring.create(ring_path, 1 << 12, keep=True)   # (the check passes: free)
        return real_check(path, size, huge)

    monkeypatch.setattr(ring_file, "_check_memory", another_creator_meanwhile)
    with pytest.raises(FileExistsError, match="already exists: another process created it at the same time$"):
        Ring.create(ring_path, 1 << 13)
    first = other["ring"]
    assert Ring.open(ring_path).capacity == 1 << 12   # the name is still the first creator's ring
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(os.path.basename(ring_path) + ".")]  # no .tmp
    first.close()


def test_exist_ok_still_replaces(ring_path):
    a = Ring.create(ring_path, 1 << 12, keep=True)
    b = Ring.create(ring_path, 1 << 13, exist_ok=True, keep=True)
    assert Ring.open(ring_path).capacity == 1 << 13
    a.close()
    b.close()


def _open_writer(path, go, out, i, both_tried=None):
    ring = Ring.open(path)
    go.wait()
    try:
        w = ring.writer()
    except RingBusy:
        out[i] = 2
        w = None
    else:
        out[i] = 1
    if both_tried is not None:
        both_tried.wait(60)   # the writer stays open until the other has tried
    if w is not None:
        w.close()


@pytest.mark.parametrize("attempt", range(6))
def test_two_writers_opened_at_once_one_is_refused(ring_path, attempt):
    Ring.create(ring_path, 1 << 16, keep=True).close()
    go, both_tried = CTX.Event(), CTX.Barrier(2)
    out = CTX.RawArray("q", 2)
    procs = [CTX.Process(target=_open_writer, args=(ring_path, go, out, i, both_tried)) for i in range(2)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(out[:]) == [1, 2], "both writers took the ring" if list(out[:]) == [1, 1] else list(out[:])


def test_a_writer_claiming_while_another_claims_is_refused(ring_path, monkeypatch):
    """Deterministic: while this process is inside its claim (the edge recovery, before the ring
    reads as having a live producer), another process opens a writer. It must wait for the
    claim and then be refused, not take the ring too."""
    Ring.create(ring_path, 1 << 16, keep=True).close()
    import itchflow.ring.writer as writer_module

    real_recover = writer_module.P.recover_edge
    seen = {}

    def recover_while_another_opens(w, geometry):
        # the other process tries now; with the claim locked it blocks until we are live. (Not a
        # forked child: it would share the lock's descriptor, and the lock would outlive the claim.)
        p = subprocess.Popen([sys.executable, "-c", _TRY_WRITER, ring_path], stdout=subprocess.PIPE, text=True)
        try:
            p.wait(5)   # a bounded chance to take the ring in the window (it cannot if locked)
        except subprocess.TimeoutExpired:
            pass
        seen["proc"] = p
        return real_recover(w, geometry)

    monkeypatch.setattr(writer_module.P, "recover_edge", recover_while_another_opens)
    ring = Ring.open(ring_path)
    w = ring.writer()
    monkeypatch.setattr(writer_module.P, "recover_edge", real_recover)
    out, _ = seen["proc"].communicate(timeout=60)
    assert out.strip() == "busy", f"the other writer took a ring being claimed: {out!r}"
    assert int(ring.words[L.W_PROD_PID]) == os.getpid()
    w.close()


def test_a_creator_leaves_a_name_given_to_another_ring_since(ring_path):
    first = Ring.create(ring_path, 1 << 12)   # removed when closed (not kept)
    os.unlink(ring_path)                      # `ring rm --force`
    second = Ring.create(ring_path, 1 << 13, keep=True)
    first.close()
    assert os.path.exists(ring_path) and Ring.open(ring_path).capacity == 1 << 13
    first.unlink()                            # by hand too: not another ring's name
    assert os.path.exists(ring_path)
    second.unlink()
    assert not os.path.exists(ring_path)
    second.close()


def test_the_exit_handler_leaves_a_name_given_to_another_ring_since(ring_path):
    first = Ring.create(ring_path, 1 << 12)
    os.unlink(ring_path)
    second = Ring.create(ring_path, 1 << 13, keep=True)
    ring_file._unlink_created()               # what runs at this process's exit
    assert os.path.exists(ring_path) and Ring.open(ring_path).capacity == 1 << 13
    first.close()
    second.unlink()


def test_a_feed_whose_ring_another_feed_creates_meanwhile_opens_that_ring(ring_path, monkeypatch):
    """`soup fetch --ring NAME` (pipeline.publish.open_feed) opens the ring when it exists and
    creates it when not; one created between the two now opens, and its writer's claim decides
    (RingBusy while the other feed is live), not a FileExistsError."""
    from itchflow.pipeline.publish import open_feed

    other = {}
    real_check = ring_file._check_memory

    def another_feed_meanwhile(path, size, huge):
        if not other:
            other["ring"] = None
            other["ring"] = Ring.create(ring_path, 1 << 20, keep=True, max_payload=(1 << 20) // 8)
        return real_check(path, size, huge)

    monkeypatch.setattr(ring_file, "_check_memory", another_feed_meanwhile)
    pub = open_feed(ring_path)
    assert pub.writer.ring.capacity == 1 << 20 and os.path.samefile(pub.writer.ring.path, ring_path)
    pub.writer.close()
    other["ring"].close()
    Ring.open(ring_path).close()


def test_a_claim_waits_for_another_only_as_long_as_its_time_out(ring_path):
    """A process holding the ring's claim lock (stopped inside its claim, or an outside flock)
    made every writer and reader wait for ever, whatever their time-outs (probe 50)."""
    import fcntl

    ring = Ring.create(ring_path, 1 << 16, keep=True)
    fd = os.open(ring_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)   # another descriptor: a lock the claims must respect
        with pytest.raises(RingBusy, match="claim lock for longer than 0.2 s"):
            ring.writer(timeout=0.2)
        with pytest.raises(RingBusy, match="cannot claim a consumer slot"):
            ring.reader("c", timeout=0.2)
    finally:
        os.close(fd)
    ring.writer(timeout=0.2).close()   # the lock gone, the claim goes through
    ring.close()


def test_a_ring_whose_name_was_removed_still_takes_its_writer(ring_path):
    """The claim locks the file mapped, not its name: with the name removed (ring rm --force) the
    open ring's writer was refused, "the ring file was removed while open" (probe 50)."""
    ring = Ring.create(ring_path, 1 << 16, keep=True)
    os.unlink(ring_path)
    w = ring.writer()
    w.write(b"still")
    w.close()
    ring.close()
