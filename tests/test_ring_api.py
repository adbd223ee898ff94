"""Python API details across processes: wait strategies, lossy readers, iteration, huge pages,
file cleanup at exit, and the `itchflow ring` commands."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from itchflow.ring import Ring, RingFormatError
from itchflow.ring import consumer as C
from ring_procs import CTX, warm_up

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def path(ring_path):
    warm_up()
    return ring_path


def _write_numbers(path, n, per_batch):
    w = Ring.open(path).writer()
    i = 0
    while i < n:
        k = min(per_batch, n - i)
        buf = np.arange(i, i + k, dtype="<u4").view(np.uint8)
        w.write_batch(buf, np.arange(k + 1) * 4, types=np.full(k, 5))
        i += k
    w.close()


@pytest.mark.parametrize("wait", ["spin", "yield", "sleep", "block"])
def test_iteration_until_close_with_each_wait_strategy(path, wait):
    n = 20_000
    with Ring.create(path, 1 << 14, consumers=["r"], heartbeat_timeout=30) as ring:
        rd = ring.reader("r", wait=wait, timeout=20)
        p = CTX.Process(target=_write_numbers, args=(path, n, 37))
        p.start()
        got = [int.from_bytes(x, "little") for x in rd]    # ends when the writer closes
        p.join(10)
        assert got == list(range(n))


def test_lossy_python_reader_gets_validated_copies(path):
    with Ring.create(path, 1 << 14, max_payload=512, mode="lossy") as ring:
        w = ring.writer()
        rd = ring.reader("late")
        for i in range(2000):                 # ~16 laps before the reader looks
            w.write(i.to_bytes(4, "little") * 2)
        # lapped many times over: it resumes at the live edge, where nothing is new yet
        assert len(rd.read_batch(timeout=0)) == 0
        for i in range(2000, 2010):
            w.write(i.to_bytes(4, "little") * 2)
        got = [int.from_bytes(x[:4].tobytes(), "little") for x in rd.read_batch(timeout=0)]
        assert got == list(range(2000, 2010))
        assert rd.lost_records == 2000 and rd.records == 2010
        assert rd.lost_payload_bytes == 2000 * 8
        assert ring.snapshot()["consumers"][0]["laps"] == 1


@pytest.mark.parametrize("records", [256, 255, 600])   # exactly one capacity, under it, over two
def test_a_lossy_batch_of_a_capacity_or_more_publishes_only_what_was_written(path, records):
    """A lossy batch of exactly the capacity (256 records of stride 256 in 64 KiB) published its
    first header on the very word it had just zeroed as "not yet published": readers then took
    stale bytes for 1,057 new records, and a later write came back as 248 old bytes. A batch
    longer than the capacity wrote its first header last, over a later record of its own. A
    lossy batch is now published in runs shorter than the capacity (probe 12)."""
    cap = 1 << 16
    with Ring.create(path, cap, mode="lossy", consumers=["c"]) as ring:
        w = ring.writer()
        rd = ring.reader("c")
        lengths = np.full(records, 248, np.int64)
        offsets = np.zeros(records + 1, np.int64)
        offsets[1:] = np.cumsum(lengths)
        buf = (np.arange(offsets[-1]) % 251).astype(np.uint8)
        w.write_batch(buf, offsets)
        got = []
        for _ in range(records + 2):   # bounded: the phantom records never ended
            b = rd.read_batch(timeout=0)
            if not len(b):
                break
            got += [x.tobytes() for x in b]
        lost = rd.lost_records
        # whatever was kept is the tail of what was written, byte for byte, and the rest is counted
        expect = [buf[offsets[i]:offsets[i + 1]].tobytes() for i in range(records)]
        assert lost + len(got) == records and got == expect[lost:], (lost, len(got))
        assert records * 256 >= cap or lost == 0
        w.write(b"NEXT")
        b = rd.read_batch(timeout=0)
        assert [x.tobytes() for x in b] == [b"NEXT"]
        assert len(rd.read_batch(timeout=0)) == 0


def test_hugepages_request_is_recorded(path):
    with Ring.create(path, 1 << 21, hugepages=True, consumers=["r"]) as ring:
        snap = ring.snapshot()
        assert snap["hugepages"]["requested"] is True
        ring.writer().write(b"x" * 100)
        assert ring.reader("r").read_batch(timeout=0)[0].tobytes() == b"x" * 100
        with Ring.open(ring.path) as again:
            assert again.capacity == 1 << 21


def test_creator_removes_ring_at_normal_exit_but_not_after_sigkill(path):
    code = ("import os, signal, sys; from itchflow.ring import Ring; "
            "r = Ring.create(sys.argv[1], 4096); print('made', flush=True); "
            "os.kill(os.getpid(), signal.SIGKILL) if sys.argv[2] == 'kill' else None")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code, path, "exit"], check=True, env=env, capture_output=True)
    assert not os.path.exists(path)
    subprocess.run([sys.executable, "-c", code, path, "kill"], env=env, capture_output=True)
    assert os.path.exists(path)              # a killed creator leaves it: `ring rm` cleans up
    import itchflow.cli.ring  # noqa: F401  (registers the commands)
    from itchflow.cli import main
    out = CliRunner().invoke(main, ["ring", "rm", path, path])   # named twice: one ring (it said "2 of the 1")
    assert out.exit_code == 0 and out.output == f"removed {path}\n", out.output
    assert not os.path.exists(path)


def test_ring_commands(path):
    import itchflow.cli.ring  # noqa: F401
    from itchflow.cli import main
    with Ring.create(path, 1 << 14, consumers=["book", "tape"]) as ring:
        w = ring.writer()
        for i in range(10):
            w.write(bytes(20))
        rd = ring.reader("book")
        assert len(rd.read_batch(timeout=0)) == 10
        rd.commit()
        runner = CliRunner()
        res = runner.invoke(main, ["ring", "inspect", path, "--json"])
        assert res.exit_code == 0, res.output
        snap = json.loads(res.output)
        lags = {c["name"]: c["lag_records"] for c in snap["consumers"]}
        assert lags == {"book": 0, "tape": 10}
        assert snap["edge"]["records"] == 10 and snap["producer"]["alive"] is True
        res = runner.invoke(main, ["ring", "inspect", path])
        assert "'tape'" in res.output and "lag 10 records" in res.output
        res = runner.invoke(main, ["ring", "ls", path])
        assert path in res.output and "book(attached" in res.output
        res = runner.invoke(main, ["ring", "rm", path])
        assert "in use" in res.output and os.path.exists(path)
        assert res.exit_code == 1 and "1 of the 1 ring(s) named were not removed" in res.output
    bogus = path + ".bogus"
    open(bogus, "wb").write(b"x" * 8192)
    try:
        with pytest.raises(RingFormatError):
            Ring.open(bogus)
        res = CliRunner().invoke(main, ["ring", "inspect", bogus])
        assert res.exit_code == 1 and "not a ring" in res.output
        # ls of a named ring that is missing or no ring fails as ls does (it said so, exit 0)
        for named in (bogus, path + ".never"):
            res = CliRunner().invoke(main, ["ring", "ls", named])
            assert res.exit_code == 1 and named in res.output and "no rings" not in res.output, res.output
        res = CliRunner().invoke(main, ["ring", "rm", bogus, path + ".never"])
        assert res.exit_code == 1 and "2 of the 2 ring(s) named were not removed" in res.output
        assert "not a ring" in res.output and "no such file" in res.output and os.path.exists(bogus)
    finally:
        os.unlink(bogus)


def test_a_corrupt_ring_file_is_listed_and_force_removes_it_where_rings_live(ring_path, tmp_path):
    """`ring ls` hid a corrupt ring file (it printed "no rings"), and `ring rm --force` could
    not remove what it could not open. --force still never removes a file outside the ring
    folders, whatever its name."""
    import itchflow.cli.ring  # noqa: F401
    from itchflow.cli import main

    runner = CliRunner()
    for path in (ring_path, str(tmp_path / "elsewhere.ring")):
        with open(path, "wb") as f:
            f.write(b"not a ring" * 1000)
    res = runner.invoke(main, ["ring", "ls"])
    assert res.exit_code == 0 and f"{ring_path}: CORRUPT (" in res.output
    res = runner.invoke(main, ["ring", "rm", ring_path])
    assert res.exit_code == 1 and os.path.exists(ring_path)
    res = runner.invoke(main, ["ring", "rm", "--force", ring_path, str(tmp_path / "elsewhere.ring")])
    assert f"removed {ring_path} (corrupt: " in res.output and not os.path.exists(ring_path)
    assert res.exit_code == 1 and os.path.exists(tmp_path / "elsewhere.ring")
    assert "1 of the 2 ring(s) named were not removed" in res.output


def _heartbeats() -> int:
    import threading

    return sum(t.name == "itchflow-ring-heartbeat" and t.is_alive() for t in threading.enumerate())


def test_a_ring_closed_with_its_writer_open_closes_the_writer_and_lets_the_mapping_go(path):
    """The writer's heartbeat thread holds the ring's mapping: a ring closed (a ``with`` block
    left) while its writer was open kept the thread, the mapping and its SIGBUS guard slot for
    the life of the process, and a reader elsewhere saw a live producer for ever."""
    import gc

    from itchflow.hw import sigbus

    gc.collect()
    threads, guarded = _heartbeats(), len(sigbus._state.get("guarded", {}))
    with Ring.create(path, 1 << 16, consumers=["r"]) as r:
        r.keep()   # (the creator's close would remove the file: it is read again below)
        w = r.writer()
        w.write(b"abc")
        assert _heartbeats() == threads + 1
    assert w.ps is None                      # closed with the ring: its pending record published
    assert _heartbeats() == threads
    gc.collect()
    assert len(sigbus._state.get("guarded", {})) == guarded
    with Ring.open(path) as r:
        with r.reader("r", wait="spin", timeout=1.0) as rd:
            assert [bytes(x) for x in rd] == [b"abc"]   # the iteration ends: the producer closed


def test_a_writer_dropped_without_close_stops_its_heartbeat(path):
    import gc

    threads = _heartbeats()
    with Ring.create(path, 1 << 16, consumers=["r"]) as r:
        w = r.writer()
        heartbeat = w._heartbeat
        del w
        gc.collect()
        heartbeat.join(5.0)
        assert not heartbeat.is_alive() and _heartbeats() == threads


def test_rings_dropped_without_close_let_their_descriptors_go(path):
    """Probe 55: a Ring had nothing to close its descriptor when collected. 300 rings made and
    opened, then dropped, held 600 descriptors; 20 rings of 16 MiB replaced under one name
    held 320 MiB of /dev/shm through descriptors of files no name showed."""
    import gc

    def fds():
        return len(os.listdir("/proc/self/fd"))

    gc.collect()
    before = fds()
    for _ in range(50):
        r = Ring.create(path, 1 << 16, consumers=["book"], exist_ok=True)
        w = r.writer(timeout=1.0)
        opened = Ring.open(path)
        reader = opened.reader("book", timeout=1.0)
        w.write(b"y" * 64)
        assert bytes(reader.read()) == b"y" * 64
        w.close()
        del w, reader, opened, r   # no close of either ring
    gc.collect()
    assert fds() <= before + 2, (before, fds())


def test_names_that_come_and_go_do_not_fill_the_slots_for_good(path):
    """Probe 55: 16 consumers of unique names, each closed (keeping its slot, as ``with reader:``
    does) and then detached by the producer, took every slot: the 17th was refused, though no
    process held any. A new name now takes the slot of a detached name no live reader holds."""
    with Ring.create(path, 1 << 16, max_consumers=2, heartbeat_timeout=0.3) as r:
        w = r.writer(wait="sleep", timeout=10.0)
        took = []
        for i in range(5):
            with Ring.open(path) as opened:
                reader = opened.reader(f"worker-{i}", timeout=5.0)
                took.append(reader.took_slot_of)
                w.write(b"m%d" % i)
                assert bytes(reader.read()) == b"m%d" % i
                reader.close()   # keeps the slot
            for _ in range(400):   # the ring fills past the closed name: the producer detaches it
                w.write(b"f" * 200)
        assert took[:2] == [None, None] and took[2:] == ["worker-0", "worker-1", "worker-2"]
        states = {c["name"]: c["state"] for c in r.snapshot()["consumers"]}
        assert set(states) == {"worker-3", "worker-4"}, states
        w.close()


def test_a_batch_of_no_record_publishes_nothing(path):
    """write_batch(buf, []) asked the kernel for -1 records and reported its answer as "ring
    full (a consumer is behind)" on an empty ring. No offsets, or one, is no record: 0."""
    with Ring.create(path, 1 << 14, consumers=["r"]) as ring:
        w = ring.writer()
        buf = np.arange(8, dtype=np.uint8)
        assert w.write_batch(buf, []) == 0
        assert w.write_batch(buf, [3]) == 0
        with pytest.raises(ValueError, match="one entry per record"):
            w.write_batch(buf, [], types=[1])
        assert w.write_batch(buf, [0, 4, 8]) == 2
        w.close()
        got = [bytes(r) for r in ring.reader("r", timeout=1)]
    assert got == [bytes(buf[:4]), bytes(buf[4:])]


def test_fractional_offsets_and_nan_or_negative_time_outs_are_refused(path):
    """Offsets 0.5 and 10.7 were cut to 0 and 10 (records other than the caller's), and
    read_batch(timeout=nan) failed converting NaN to an integer. Both are named errors now;
    an infinite time-out waits forever, as None does."""
    with Ring.create(path, 1 << 14, consumers=["r"]) as ring:
        w = ring.writer()
        buf = np.arange(16, dtype=np.uint8)
        with pytest.raises(TypeError, match="whole numbers"):
            w.write_batch(buf, [0.5, 10.7])
        with pytest.raises(TypeError, match="whole numbers"):
            w.write_batch(buf, np.array([0, 4], np.float32))
        assert w.write_batch(buf, np.array([0, 4, 10], np.uint16)) == 2
        rd = ring.reader("r")
        for bad in (math.nan, -0.5, -math.inf):
            with pytest.raises(ValueError, match="timeout must be"):
                rd.read_batch(timeout=bad)
            with pytest.raises(ValueError, match="timeout must be"):
                ring.reader("other", timeout=bad)
        assert [bytes(r) for r in rd.read_batch(timeout=math.inf)] == [bytes(buf[:4]), bytes(buf[4:10])]
        w.close()


def test_ring_inspect_says_how_a_closed_rings_stream_ended(ring_path):
    """`listen --ring` stopped before the end closes its ring as cut short; inspect said so only
    in --json."""
    from click.testing import CliRunner

    from itchflow.cli import main
    from itchflow.ring import layout as L

    rg = Ring.create(ring_path, 1 << 16, consumers=["c"])
    try:
        w = rg.writer()
        w.write(b"abc")
        w.close(L.STREAM_CUT_SHORT)
        res = CliRunner().invoke(main, ["ring", "inspect", ring_path])
        assert res.exit_code == 0 and "closed (its stream cut short)" in res.output, res.output
    finally:
        rg.close()
        rg.unlink()


def test_a_consumer_that_joins_an_idle_producer_gets_its_next_publish(path):
    """A new name asking to join a live producer that had published nothing was attached after
    the next publish, at its end: it missed that batch and counted nothing lost (a one-batch
    stream: all of it; a C consumer of `listen --ring` missed the first 46 messages; probe 13).
    Joiners are now attached at the batch's start, before it is published."""
    with Ring.create(path, 1 << 16) as ring:
        w = ring.writer()
        rd = ring.reader("late")            # the producer is live: the join waits for it
        w.write_batch(np.arange(10, dtype=np.uint8), np.arange(11))
        got = [int(x[0]) for x in rd.read_batch(timeout=1)]
        assert got == list(range(10)) and rd.lost_records == 0
        w.write(b"\x0a")
        assert [int(x[0]) for x in rd.read_batch(timeout=1)] == [10]


def test_a_consumer_rejoining_after_a_stall_is_not_detached_again_at_once(path):
    """A consumer detached for a stall rejoined with its stale heartbeat: the producer attached
    it and, at its next sweep, detached it again before it read a record (probe 13)."""
    import time as _time

    from itchflow.hw.atomics_py import load, store
    from itchflow.ring import ConsumerDetached
    from itchflow.ring import layout as L
    from itchflow.ring import producer as P

    with Ring.create(path, 1 << 16, consumers=["c"], heartbeat_timeout=0.5) as ring:
        w = ring.writer()
        rd = ring.reader("c")
        w.write(b"a")
        assert len(rd.read_batch(timeout=1)) == 1
        b = L.slot_base(rd.slot)
        store(ring.words, b + L.S_HB, _time.monotonic_ns() - 10**10)   # silent for 10 s: a stall
        assert P.detach_silent(ring.words, w.ps, _time.monotonic_ns()) == 1
        w.write(b"b")
        with pytest.raises(ConsumerDetached):
            rd.read_batch(timeout=0)
        rd.rejoin()
        w.write(b"c")                       # the producer attaches it (at this batch's start)
        assert P.detach_silent(ring.words, w.ps, _time.monotonic_ns()) == 0
        assert int(load(ring.words, b + L.S_STATE)) == L.SLOT_ATTACHED
        assert [x.tobytes() for x in rd.read_batch(timeout=1)] == [b"c"]
        assert rd.lost_records == 1          # "b", published while it was detached


def _open_name(path, name, barrier, out):
    from itchflow.ring import RingBusy

    ring = Ring.open(path)
    barrier.wait()
    try:
        rd = ring.reader(name)
        out.put(("ok", rd.slot))
        barrier.wait()   # hold the name until both have tried
    except RingBusy as e:
        out.put(("busy", str(e)))
        barrier.wait()


def test_one_new_name_opened_by_two_processes_at_once_is_one_consumer(path):
    """Both processes found the name new, each claimed a free slot, and the ring had two
    consumers of one name (10 of 10 rounds; probe 13). Finding and claiming is one step now."""
    Ring.create(path, 1 << 14, keep=True).close()
    try:
        for _ in range(5):
            barrier, out = CTX.Barrier(2), CTX.Queue()
            procs = [CTX.Process(target=_open_name, args=(path, "twin", barrier, out)) for _ in range(2)]
            for p in procs:
                p.start()
            got = sorted(out.get(timeout=60) for _ in procs)
            for p in procs:
                p.join(30)
            assert [g[0] for g in got] == ["busy", "ok"], got
            assert "consumer 'twin' is held by live pid" in got[0][1]
            with Ring.open(path) as ring:
                names = [c["name"] for c in ring.snapshot()["consumers"]]
            assert names == ["twin"], names
    finally:
        os.unlink(path)


def test_closing_the_ring_wakes_consumers_asleep_on_its_futex(path):
    """A consumer asleep on the futex (the documented wait) slept out its whole time-out after
    the producer closed the ring: the close woke nobody (probe 13)."""
    from itchflow.hw.atomics_py import load, store
    from itchflow.ring import layout as L

    with Ring.create(path, 1 << 14) as ring:
        w = ring.writer()
        store(ring.words, L.W_WAITERS, 1)    # one asleep (as a C peer registers itself)
        futex, wakeups = int(load(ring.words, L.W_FUTEX)), int(load(ring.words, L.W_WAKEUPS))
        w.close()
        assert int(load(ring.words, L.W_FUTEX)) == futex + 1
        assert int(load(ring.words, L.W_WAKEUPS)) == wakeups + 1
        store(ring.words, L.W_WAITERS, 0)


def test_a_huge_page_ring_made_by_name_is_found_by_that_name(tmp_path, monkeypatch):
    """Ring.create(NAME, hugepages=True) puts the file on the hugetlbfs mount; Ring.open(NAME)
    looked only in /dev/shm (not found), and a second ring of that name could be made there
    (probe 13). The mount is faked by a folder here."""
    import uuid

    from itchflow.ring import file as ring_file
    from itchflow.ring import paths

    monkeypatch.setattr(paths, "hugetlbfs_mount", lambda: str(tmp_path))
    monkeypatch.setattr(ring_file, "hugetlbfs_mount", lambda: str(tmp_path))
    name = f"hp-{uuid.uuid4().hex[:8]}"
    with Ring.create(name, 1 << 21, hugepages=True, consumers=["r"]) as ring:
        assert ring.path == str(tmp_path / f"itchflow.{name}.ring")
        ring.writer().write(b"huge")
        with Ring.open(name) as again:
            assert again.path == ring.path
            assert [x.tobytes() for x in again.reader("r").read_batch(timeout=1)] == [b"huge"]
        with pytest.raises(FileExistsError, match=f"ring {ring.path} already exists"):
            Ring.create(name, 1 << 14)
    assert not os.path.exists(f"/dev/shm/itchflow.{name}.ring")


def test_give_back_goes_by_the_compiled_reads_own_mark_not_by_what_python_saw(path):
    """Ctrl-C raised as the compiled read returned came before the batch was marked pending:
    give_back did nothing and close committed past a batch never applied (probe 14)."""
    with Ring.create(path, 1 << 14, consumers=["c"]) as ring:
        w = ring.writer()
        for i in range(3):
            w.write(bytes([i]))
        rd = ring.reader("c")
        assert [x.tobytes() for x in rd.read_batch(max_records=1, timeout=1)] == [b"\0"]
        # the compiled read returns, and Ctrl-C is raised before Python has its result:
        assert C.read_step(ring.words, ring.data, rd.cs, 1, rd._copy, rd._off, rd._len, rd._typ, 0, 10**9) == 1
        rd.give_back()
        rd.close()
        again = ring.reader("c")
        assert [x.tobytes() for x in again.read_batch(timeout=1)] == [b"\1", b"\2"]


def test_a_joined_name_that_never_read_can_be_resumed_and_closing_while_joining_harms_nothing(path):
    """The producer set a joiner's position but not its commit snapshot: a joiner gone before its
    first commit left a name that could not be resumed ("snapshot behind its live position"),
    and close() while joining wrote its stale cursor over the join position, after which the
    ring could not be opened at all (probe 14)."""
    with Ring.create(path, 1 << 12) as ring:
        w = ring.writer()
        for i in range(40):
            w.write(bytes([i]) * 100)        # past one capacity: position 0 is long overwritten
        joiner = ring.reader("j")           # joining (the producer is live)
        closer = ring.reader("k")
        closer.close()                      # closed while joining
        w.write(b"x")                       # attaches both at this batch's start
        joiner.close()                      # gone before its first read (its cursor: joining)
        with Ring.open(path) as again:      # was: "attached at position 0, more than the capacity behind"
            assert {c["name"] for c in again.snapshot()["consumers"]} == {"j", "k"}
        resumed = ring.reader("j")          # was: "cannot be resumed: its commit snapshot ... is behind"
        assert [x.tobytes() for x in resumed.read_batch(timeout=1)] == [b"x"]


def test_a_consumers_first_commit_after_a_join_does_not_write_into_the_current_snapshot(path):
    """The producer makes a joiner's commit snapshot current when it attaches it; the consumer
    remembered the index it had read before, and its first commit wrote into that current
    snapshot in place (a kill half-way would leave a torn one). The index is read from the slot."""
    from itchflow.hw.atomics_py import load
    from itchflow.ring import layout as L

    with Ring.create(path, 1 << 14) as ring:
        w = ring.writer()
        rd = ring.reader("j")                  # joining: the producer is live
        w.write(b"a")                          # attached, its snapshot made current by the producer
        b = L.slot_base(rd.slot)
        by_producer = int(load(ring.words, b + L.S_COMMIT_IDX))
        assert [x.tobytes() for x in rd.read_batch(timeout=1)] == [b"a"]   # the join's commit
        assert int(load(ring.words, b + L.S_COMMIT_IDX)) == 1 - by_producer


def test_huge_page_rings_are_listed_swept_and_replaced_like_any_other(tmp_path, monkeypatch):
    """`ring ls`, `ring rm --stale` and a run's sweep of dead runs' rings looked in /dev/shm
    only: a huge-page ring left behind (a SIGKILLed `run --hugepages`) held its pages for good,
    unseen. exist_ok=True on a name made the other way left the old ring under the name too."""
    import uuid

    from itchflow.cli import main
    from itchflow.pipeline.run import remove_left_behind_rings
    from itchflow.ring import file as ring_file
    from itchflow.ring import paths

    monkeypatch.setattr(paths, "hugetlbfs_mount", lambda: str(tmp_path))
    monkeypatch.setattr(ring_file, "hugetlbfs_mount", lambda: str(tmp_path))
    name = f"hp-{uuid.uuid4().hex[:8]}"
    huge = tmp_path / f"itchflow.{name}.ring"
    code = ("import sys; from itchflow.ring import Ring; "
            "Ring.create(sys.argv[1], 1 << 14, heartbeat_timeout=0.01, keep=True)")
    subprocess.run([sys.executable, "-c", code, str(huge)], check=True)   # its creator gone: stale
    listed = CliRunner().invoke(main, ["ring", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines() if line.startswith("{")]
    assert [r["stale"] for r in rows if r["path"] == str(huge)] == [True]
    removed = CliRunner().invoke(main, ["ring", "rm", "--stale"])
    assert f"removed {huge}" in removed.output and not huge.exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    private = tmp_path / f"itchflow-run-{dead}-0123abcd.ring"   # a run --hugepages' own ring
    subprocess.run([sys.executable, "-c", code, str(private)], check=True)
    listed = CliRunner().invoke(main, ["ring", "ls", "--json"])   # (its name has no dot: probe 16)
    assert str(private) in [json.loads(line)["path"] for line in listed.output.splitlines() if line.startswith("{")]
    assert private.name in remove_left_behind_rings() and not private.exists()

    with Ring.create(name, 1 << 14, hugepages=True, keep=True) as first:
        assert first.path == str(huge)
    with Ring.create(name, 1 << 14, exist_ok=True) as second:   # now without huge pages
        assert second.path == f"/dev/shm/itchflow.{name}.ring" and not huge.exists()
        second.unlink()


@pytest.mark.parametrize("huge", ["advise", "never"])
def test_huge_pages_on_tmpfs_are_what_page_backing_says(tmp_path, huge):
    """On a tmpfs mounted huge=advise a ring asked for huge pages got none: fallocate had filled
    it with 4 KiB pages before the mapping was advised. And page_backing judged by
    shmem_enabled, which rules tmpfs mounts only as deny or force (probe 16). Checked against
    the kernel's own count of the mapping's huge pages."""
    import re

    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"huge={huge},size=64m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        from itchflow.ring import paths

        if paths.shmem_thp_policy() in ("deny", "force"):
            pytest.skip(f"shmem_enabled is {paths.shmem_thp_policy()!r}: it rules every tmpfs mount")
        with Ring.create(str(mnt / "itchflow.h.ring"), 1 << 23, hugepages=True) as ring:
            ring.data[:] = 1
            pages = ring.page_backing()
            mapped_kb = 0
            block = None
            for line in open("/proc/self/smaps"):
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    block = line
                elif block and ring.path in block and re.match(r"(Shmem|File)PmdMapped:", line):
                    mapped_kb += int(line.split()[1])
            if huge == "advise":
                assert pages[0] == "transparent" and mapped_kb >= 4096, (pages, mapped_kb)
            else:
                assert pages[0] == "4k" and mapped_kb == 0 and "huge=never" in pages[1], (pages, mapped_kb)
            ring.unlink()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_yielding_reader_of_a_quiet_ring_sleeps_instead_of_taking_a_core(path):
    """A `run` left on a quiet tail: source kept a core busy in sched_yield for an hour (seen on
    this machine, under the benchmarks). Past wait.LONG_IDLE_NS with nothing, through any
    number of calls, a yielding reader sleeps between polls; a record still comes at once."""
    import time

    from itchflow.ring.wait import LONG_IDLE_NS

    ring = Ring.create(path, 1 << 16, consumers=["c"])
    try:
        with ring.writer() as w, ring.reader("c", wait="yield") as r:
            w.write(b"first")
            assert r.read(timeout=1) == b"first"
            cpu0, t0 = time.thread_time(), time.monotonic()
            for _ in range(4):          # calls of a polling loop, as run's consumer makes them
                assert r.read(timeout=0.25) is None
            cpu, wall = time.thread_time() - cpu0, time.monotonic() - t0
            assert wall >= 1.0 and cpu < 0.3 * wall, (cpu, wall)   # yielding throughout: cpu ~ wall
            assert LONG_IDLE_NS < 0.25e9
            w.write(b"after")
            assert r.read(timeout=1) == b"after"
    finally:
        ring.close()
