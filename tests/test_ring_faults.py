"""Faults: SIGKILL of either side mid-stream, detach after missed heartbeats, restarts, joins,
producer recovery. Nothing may hang; in blocking mode nothing may be lost."""

from __future__ import annotations

import errno
import os
import random
import signal
import time

import numpy as np
import pytest

from itchflow.ring import ProducerGone, Ring, RingBusy
from itchflow.ring import layout as L
from itchflow.ring import producer as P
from ring_procs import CTX, consumer_main, producer_main, shared, start, stop_all, warm_up

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def path(ring_path):
    warm_up()
    return ring_path


def kill(p) -> None:
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)   # reap it: a zombie still "exists" for kill(pid, 0)


def test_consumer_sigkill_and_restart_loses_nothing(path):
    n = 1_500_000
    rng = random.Random(7)
    with Ring.create(path, 1 << 16, max_payload=256, consumers=["c"], heartbeat_timeout=60) as ring:
        res, res_v = shared(2)
        prog, prog_v = shared(1)
        p = start(producer_main, path, 0, n, 64, "spin", 60.0, res)
        starts, bad = [], 0
        try:
            for _ in range(4):
                out, o = shared(9)
                c = start(consumer_main, path, "c", n, 256, "spin", 60.0, prog, out)
                time.sleep(rng.uniform(0.05, 0.25))
                kill(c)
                seen = int(prog_v[0])   # final: progress is updated before each commit
                starts.append((int(o[5]), seen))
                bad += int(o[1])
            out, o = shared(9)
            c = start(consumer_main, path, "c", n, 256, "spin", 60.0, prog, out)
            c.join(60)
            p.join(60)
            assert res_v[0] == n
            assert (o[4], o[1] + bad) == (0, 0)
            # each restart resumed at its saved position: never beyond what was verified before
            # (no gap), and the last run verified everything from there to the end
            restart_points = [s for s, _ in starts[1:]] + [int(o[5])]
            verified_before = [v for _, v in starts]
            assert all(r <= v for r, v in zip(restart_points, verified_before))
            assert o[5] + o[0] == n
            snap = ring.snapshot()["consumers"][0]
            assert snap["lost_records"] == 0 and snap["attaches"] == 5
        finally:
            stop_all(p, c)


def test_dead_consumer_is_detached_after_timeout_and_rejoin_counts_loss(path):
    n = 400_000
    with Ring.create(path, 1 << 14, max_payload=256, consumers=["c"], heartbeat_timeout=0.5) as ring:
        res, res_v = shared(2)
        prog, _ = shared(1)
        out, o = shared(9)
        c = start(consumer_main, path, "c", n, 256, "spin", 60.0, prog, out)
        while o[6] == 0:
            time.sleep(0.001)
        p = start(producer_main, path, 0, n, 64, "spin", 60.0, res)
        try:
            time.sleep(0.05)
            kill(c)
            t = time.monotonic()
            p.join(60)
            assert not p.is_alive() and res_v[0] == n     # the producer did not hang
            assert time.monotonic() - t >= 0.4             # it waited for the timeout first
            snap = ring.snapshot()
            cons = snap["consumers"][0]
            assert cons["state"] == "detached" and not cons["alive"]
            assert snap["producer"]["detached"] == 1
            committed = cons["records_consumed"]
            rd = ring.reader("c")                          # rejoin at the live edge
            with pytest.raises(EOFError):
                rd.read_batch(timeout=1)
            assert rd.lost_records == n - committed
            assert rd.records == n
        finally:
            stop_all(p, c)


def test_producer_sigkill_is_detected_and_restart_continues_the_sequence(path):
    n = 1_500_000
    rng = random.Random(11)
    with Ring.create(path, 1 << 16, max_payload=256, consumers=["c"], heartbeat_timeout=60) as ring:
        prog, _ = shared(1)
        out, o = shared(9)
        c = start(consumer_main, path, "c", n, 256, "spin", 60.0, prog, out)
        p = None
        resumed = []
        try:
            for _ in range(4):
                res, res_v = shared(2)
                p = start(producer_main, path, 0, n, 64, "spin", 60.0, res)
                time.sleep(rng.uniform(0.05, 0.2))
                kill(p)
                resumed.append(int(res_v[1]))
                time.sleep(0.1)     # let the consumer see the dead producer
            res, res_v = shared(2)
            p = start(producer_main, path, 0, n, 64, "spin", 60.0, res)
            p.join(60)
            c.join(60)
            assert res_v[0] == n
            # the consumer verified every record exactly once, in order, across 5 producers
            assert (o[0], o[1], o[4]) == (n, 0, 0)
            assert o[2] >= 1                               # it noticed a dead producer
            assert resumed == sorted(resumed)
            snap = ring.snapshot()
            assert snap["producer"]["generation"] == 5
            assert snap["edge"]["records"] == n
        finally:
            stop_all(p, c)


def _write_then_die(path, count):
    w = Ring.open(path).writer()
    for i in range(count):
        w.write(i.to_bytes(4, "little"))
    os.kill(os.getpid(), signal.SIGKILL)


def test_reader_raises_producer_gone_after_draining(path):
    with Ring.create(path, 1 << 14, consumers=["r"]) as ring:
        p = CTX.Process(target=_write_then_die, args=(path, 300))
        p.start()
        p.join(30)
        assert p.exitcode == -signal.SIGKILL
        rd = ring.reader("r", timeout=5)
        got = []
        # the cause, not both possible ones ("no such process, or no heartbeat for 0.2 s")
        with pytest.raises(ProducerGone, match=rf"producer pid {p.pid} is gone \(no such process; read up to"):
            while True:
                got.extend(int.from_bytes(x.tobytes(), "little") for x in rd.read_batch())
        assert got == list(range(300))
        assert ring.snapshot()["producer"]["alive"] is False


def test_an_unpublished_header_below_a_dead_producers_edge_is_corruption(path):
    """The edge moves only after its records' headers are published, and a blocking ring never
    laps a reader: a header reading 0 below the edge was overwritten. With the producer gone
    that is a RingFormatError naming both positions, not "producer gone, read up to 0"."""
    from itchflow.ring import RingFormatError

    with Ring.create(path, 1 << 14, consumers=["r", "s"]) as ring:
        w = ring.writer()
        for i in range(5):
            w.write(bytes([i]) * (10 + i))
        edge = ring.snapshot()["edge"]["position"]
        ring.words[L.W_PROD_PID] = 0                      # the producer "died"
        good = ring.reader("s", timeout=0.2)             # a reader of the intact ring: drained, then gone
        assert len(good.read_batch(timeout=0)) == 5
        with pytest.raises(ProducerGone):
            good.read_batch()
        ring.words[ring.words[L.W_HEADER_BYTES] // 8] = 0  # the first record's header, zeroed
        rd = ring.reader("r", timeout=0.2)
        with pytest.raises(RingFormatError, match=rf"position 0 \(record 0\): the record header there reads as "
                                                  rf"unpublished, yet its producer \(gone\) published up to position {edge}"):
            rd.read_batch()


def test_single_writer_and_clean_reopen_continues(path):
    with Ring.create(path, 1 << 14, consumers=["r"]) as ring:
        w = ring.writer()
        ring.words[L.W_PROD_PID] = os.getppid()   # as if another live process held the role
        ring.words[L.W_PROD_START] = 0            # (its start time unknown: the pid decides)
        with pytest.raises(RingBusy, match="alive"):
            Ring.open(path).writer()
        ring.words[L.W_PROD_PID] = os.getpid()
        w.write(b"a")
        w.close()
        w2 = ring.writer()
        w2.write(b"b")
        assert [x.tobytes() for x in ring.reader("r").read_batch(timeout=0)] == [b"a", b"b"]
        assert ring.snapshot()["producer"]["generation"] == 2


def test_recovery_of_a_batch_published_before_the_edge_was_updated(path):
    with Ring.create(path, 1 << 14, consumers=["r"]) as ring:
        w = ring.writer()
        w.write(b"one")
        words = ring.words
        edge_before = [int(words[i]) for i in (L.W_EDGE_SEQ, L.W_EDGE_POS, L.W_EDGE_REC, L.W_EDGE_PAY)]
        w.write_batch(np.frombuffer(b"twothree", np.uint8), np.array([0, 3, 8]))
        # simulate a SIGKILL between the publishing release store and the edge update
        for i, v in zip((L.W_EDGE_SEQ, L.W_EDGE_POS, L.W_EDGE_REC, L.W_EDGE_PAY), edge_before):
            words[i] = v
        words[L.W_PROD_PID] = 0
        w2 = ring.writer()
        assert w2.recovered_records == 2
        assert ring.snapshot()["edge"] == {"position": 16 + 16 + 16, "records": 3, "payload_bytes": 11}
        w2.write(b"four")
        got = [x.tobytes() for x in ring.reader("r").read_batch(timeout=0)]
        assert got == [b"one", b"two", b"three", b"four"]


def test_unpublished_claims_of_a_dead_producer_are_not_seen(path):
    with Ring.create(path, 1 << 14, consumers=["r"]) as ring:
        w = ring.writer()
        w.write(b"kept")
        o = P.claim(ring.words, w.ps, 4, 0)     # claimed and written, never committed
        ring.data[o:o + 4] = np.frombuffer(b"lost", np.uint8)
        ring.words[L.W_PROD_PID] = 0            # the producer "died"
        w2 = ring.writer()
        assert w2.recovered_records == 0
        w2.write(b"next")
        assert [x.tobytes() for x in ring.reader("r").read_batch(timeout=0)] == [b"kept", b"next"]


def test_new_consumer_joins_blocking_ring_at_the_live_edge(path):
    with Ring.create(path, 1 << 14, consumers=["first"]) as ring:
        w = ring.writer()
        first = ring.reader("first")
        for i in range(50):
            w.write(bytes([i]))
        late = ring.reader("late")
        assert len(late.read_batch(timeout=0)) == 0          # joining: nothing yet
        for i in range(50, 60):
            w.write(bytes([i]))              # the first commit attaches "late" at its start
        got = [x.tobytes()[0] for x in late.read_batch(timeout=0)]
        assert got == list(range(50, 60)) and late.lost_records == 0   # (it missed record 50)
        assert [x.tobytes()[0] for x in first.read_batch(timeout=0)] == list(range(60))
        names = {c["name"]: c["state"] for c in ring.snapshot()["consumers"]}
        assert names == {"first": "attached", "late": "attached"}


def test_consumer_name_held_by_live_process_is_busy(path):
    with Ring.create(path, 1 << 14, consumers=["r"]) as ring:
        ring.words[L.slot_base(0) + L.S_PID] = os.getppid()   # a live process that is not us
        with pytest.raises(RingBusy):
            ring.reader("r")


def test_a_name_whose_heartbeat_lies_ahead_of_the_clock_is_not_held(path):
    """A slot's heartbeat a time-out or more ahead of CLOCK_MONOTONIC is a stray write, not a live
    holder: opening the name took it as fresh and refused it (RingBusy) for as long as the stamp
    stayed ahead, where the producer and slot reclaiming (liveness) already call it stale."""
    with Ring.create(path, 1 << 14, consumers=["r"], heartbeat_timeout=0.2) as ring:
        b = L.slot_base(0)
        ring.words[b + L.S_PID] = os.getppid()                       # a live process that is not us
        ring.words[b + L.S_HB] = time.monotonic_ns() + (1 << 40)    # some 18 minutes ahead
        r = ring.reader("r")
        assert r.slot == 0 and ring.words[b + L.S_PID] == os.getpid()
        ring.words[b + L.S_PID] = os.getppid()                       # and a fresh one still holds it
        ring.words[b + L.S_HB] = time.monotonic_ns()
        with pytest.raises(RingBusy, match=f"held by live pid {os.getppid()} \\(heartbeat 0.0 s ago\\)"):
            ring.reader("r")


def test_a_ring_without_room_on_its_file_system_is_refused_naming_it(full_disk):
    """The ring was a sparse file: on a full tmpfs (/dev/shm) its first touch of a page faulted,
    the guard for shrunk files answered with zeros, and `run` blamed the user's input ("byte
    offset 4158267: zero-length message"). Its pages are reserved when it is made now."""
    from itchflow.ring import Ring

    path = str(full_disk / "big.ring")
    with pytest.raises(OSError) as e:
        Ring.create(path, 4 << 20)
    assert e.value.errno == errno.ENOSPC and "no room for the ring" in str(e.value)
    assert str(full_disk) in str(e.value) and os.listdir(full_disk) == []
    small = Ring.create(str(full_disk / "small.ring"), 256 << 10)   # one that fits is made
    small.close()
    small.unlink()


def test_run_on_a_full_ring_file_system_says_so(full_disk, tmp_path):
    from click.testing import CliRunner

    from itchflow.cli import main
    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(day, 20_000, 1, stocks=5)
    res = CliRunner().invoke(main, ["run", "--source", str(day), "--ring", str(full_disk / "r.ring"),
                                    "--capacity", str(4 << 20), "--top", "0"])
    assert res.exit_code == 1 and "no room for the ring" in res.output, res.output
    assert "zero-length" not in res.output and os.listdir(full_disk) == []


def test_another_users_ring_is_said_to_be_theirs_not_corrupt(ring_path, monkeypatch):
    """Probe 57: to another user, `ring ls` called a 0600 ring CORRUPT and advised `ring rm
    --force` (which a sticky /dev/shm refuses), `ring rm` called it "not a ring", and `run
    --source ring:NAME` said only "Permission denied". (Root reads every file, so the refusal is
    made here as the kernel makes it for another user: EACCES from open.)"""
    from click.testing import CliRunner

    from itchflow.cli import main

    with Ring.create(ring_path, 1 << 14, consumers=["book"], keep=True):
        pass
    if os.getuid() == 0:
        os.chown(ring_path, 65534, 65534)
    real_open = os.open

    def refused(path, flags, *a, **k):
        if os.fspath(path) == ring_path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(PermissionError) as e:
        Ring.open(ring_path)
    owner = os.stat(ring_path).st_uid
    assert "the ring is another user's (" in str(e.value) and f"uid {owner}, mode 0600)" in str(e.value)
    assert "a ring is private to the user who made it" in str(e.value) and ring_path in str(e.value)
    r = CliRunner().invoke(main, ["ring", "ls", ring_path])
    assert r.exit_code == 1 and "another user's" in r.output and "CORRUPT" not in r.output, r.output
    assert "--force" not in r.output
    r = CliRunner().invoke(main, ["ring", "rm", "--force", ring_path])
    assert r.exit_code == 1 and "another user's" in r.output and "not a ring" not in r.output, r.output
    assert os.path.exists(ring_path)
    r = CliRunner().invoke(main, ["ring", "inspect", ring_path])
    assert r.exit_code == 1 and "another user's" in r.output, r.output


def test_a_ring_past_the_file_size_limit_says_so(ring_path, tmp_path):
    """Probe 57: under `ulimit -f` smaller than the ring, `run` said only "[Errno 27] File too
    large", naming no ring, size or limit, and the user suspected the input."""
    import subprocess
    import sys

    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "from itchflow.ring import Ring\n"
            "try:\n    Ring.create(sys.argv[1], 4 << 20)\n"
            "except OSError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-c", code, ring_path], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"ring {ring_path}: its " in r.stdout and "bytes are past this process's file-size limit" in r.stdout
    assert "ulimit -f: 1,048,576 bytes" in r.stdout and "a smaller --capacity" in r.stdout, r.stdout
    assert not os.path.exists(ring_path) and not [n for n in os.listdir(os.path.dirname(ring_path))
                                                  if n.startswith(os.path.basename(ring_path))]
