"""The pipeline under faults: records a faulty producer wrote, a consumer paused past the
heartbeat timeout, SIGKILL of `itchflow run`, a rerun on the ring it left, Ctrl-C.

Expectations are independent of the code under test: record positions from the ring's
declared record stride, message counts from the day we wrote, process liveness from the OS.
Nothing waits a fixed time: every wait polls for a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from itchflow.book.books import Books
from itchflow.hw.atomics_py import load
from itchflow.pipeline import batch_layout as B
from itchflow.pipeline.consume import S_MESSAGES, BatchApplier
from itchflow.pipeline.publish import BatchPublisher, feed_max_payload
from itchflow.ring import ConsumerDetached, Ring, RingFormatError
from itchflow.ring import layout as L
from itchflow.ring.liveness import pid_alive
from itchflow.ring.reader import Batch
from ring_procs import CTX
from test_net_loopback import synthetic_day

pytestmark = pytest.mark.timeout(120)
CAP = 1 << 19    # the smallest ring that holds a largest ITCH message behind a batch header


@pytest.fixture(scope="module")
def day() -> np.ndarray:
    return synthetic_day(60_000, seed=5)


@pytest.fixture
def path(ring_path):
    return ring_path


def wait_for(cond, what: str, timeout: float = 30.0, every: float = 0.005):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def header(first: int, count: int) -> bytes:
    h = np.zeros(B.HEADER_WORDS, np.int64)
    h[B.W_FIRST_SEQUENCE] = first
    h[B.W_MESSAGE_COUNT] = count
    return h.tobytes()


def first_messages(day: np.ndarray, k: int) -> bytes:
    pos = 0
    for _ in range(k):
        pos += 2 + int.from_bytes(day[pos:pos + 2].tobytes(), "big")
    return day[:pos].tobytes()


# ---- 8: records from shared memory are input --------------------------------------------------
@pytest.mark.parametrize("bad, rtype, message", [
    ("one message, count 1", 0, "record type is not the ITCH batch type"),
    ("16 bytes", B.RECORD_TYPE, "record shorter than the batch header"),
    ("two messages, count 5", B.RECORD_TYPE, "message count disagrees"),
    ("two messages, count 1", B.RECORD_TYPE, "message count disagrees"),
    ("one message, count 2**60", B.RECORD_TYPE, "message count disagrees"),
    ("one message, first -5", B.RECORD_TYPE, "first sequence number out of range"),
    ("one message, first 2**63-2", B.RECORD_TYPE, "first sequence number out of range"),
])
def test_bad_records_are_a_ring_format_error_naming_ring_and_position(path, day, bad, rtype, message):
    one, two = first_messages(day, 1), first_messages(day, 2)
    payload = {"one message, count 1": header(2, 1) + one, "16 bytes": b"\x01" * 16,
               "two messages, count 5": header(2, 5) + two, "two messages, count 1": header(2, 1) + two,
               "one message, count 2**60": header(2, 1 << 60) + one,
               "one message, first -5": header(-5, 1) + one,
               "one message, first 2**63-2": header((1 << 63) - 2, 1) + one}[bad]
    good = header(1, 1) + one
    with Ring.create(path, CAP, consumers=["book"], max_payload=feed_max_payload(CAP)) as ring:
        w = ring.writer()
        w.write(good, type=B.RECORD_TYPE)
        w.write(payload, type=rtype)
        rd = ring.reader("book")
        batch = rd.read_batch(timeout=0)
        assert len(batch) == 2
        applier = BatchApplier(Books(), "test")
        where = L.record_stride(len(good))   # the second record's header, by the declared layout
        with pytest.raises(RingFormatError, match=f"{path}: bad batch record 1 \\(ring position {where},.*{message}"):
            applier.apply(batch, 0, rd.check_intact)
        assert applier.st[S_MESSAGES] == 1     # the good record before it was applied and counted


def test_record_reaching_past_the_data_is_refused_without_reading_it():
    backing = np.zeros(8192, np.uint8)
    data = backing[:1024]                     # bytes past 1024 exist but are not the record's
    batch = Batch(data, np.array([1000], np.int64), np.array([64], np.int64),
                  np.array([B.RECORD_TYPE], np.int64), "/dev/shm/x.ring", 0, 7)
    with pytest.raises(RingFormatError, match="x.ring: bad batch record 7 \\(ring position 992.*outside the ring"):
        BatchApplier(Books(), "test").apply(batch, 0)


# ---- 7: a consumer paused past the heartbeat timeout ------------------------------------------
def _publish_forever(path: str, raw: bytes) -> None:
    ring = Ring.open(path)
    pub = BatchPublisher(ring.writer(wait="yield"), batch_bytes=4096)
    buf = np.frombuffer(raw, np.uint8)
    seq = 1
    while True:
        pub.publish(buf, seq)
        seq += 1 << 20


def test_paused_consumer_is_reported_detached_not_a_bad_file(path, day):
    """The consumer takes a read, stalls (a hook: it waits until the producer has detached it
    and written over that read), then applies it: the result is ConsumerDetached naming the
    ring and the consumer, never a 'truncated message' blamed on the (valid) source."""
    raw = day.tobytes()
    with Ring.create(path, CAP, consumers=["book"], max_payload=feed_max_payload(CAP),
                     heartbeat_timeout=0.2) as ring:
        rd = ring.reader("book", wait="yield")
        applier = BatchApplier(Books(), str(path))
        applier.warm_up(ring.data)
        rd.read_batch(timeout=0)
        p = CTX.Process(target=_publish_forever, args=(path, raw), daemon=True)
        p.start()
        try:
            batch = rd.read_batch(timeout=30)
            assert len(batch) > 0
            b = L.slot_base(0)
            wait_for(lambda: load(ring.words, b + L.S_STATE) == L.SLOT_DETACHED, "the producer to detach us")
            wait_for(lambda: load(ring.words, L.W_EDGE_POS) > batch.position + 2 * CAP, "our read to be overwritten")
            with pytest.raises(ConsumerDetached, match=f"{path}: consumer 'book' was detached by the producer"):
                applier.apply(batch, 0, rd.check_intact)
        finally:
            p.kill()
            p.join(10)


def _slow_run(tmp_path, day, tag: str, heartbeat_timeout: float):
    """`itchflow run` of the day at 10,000 messages/s on a small named ring: (ring file, process)."""
    src = tmp_path / "day.itch"
    src.write_bytes(day.tobytes())
    name = f"itchflow-test-shm-{tag}-{os.getpid()}"
    proc = _run_cli(["run", "--source", str(src), "--ring", name, "--capacity", str(CAP), "--batch-bytes", "4096",
                     "--rate", "10000", "--heartbeat-timeout", str(heartbeat_timeout), "--quiet"])
    return f"/dev/shm/itchflow.{name}.ring", proc


def test_sigstopped_run_reports_detached_consumer(tmp_path, day):
    """The whole `itchflow run`, SIGSTOPped mid-run until the producer detaches its consumer."""
    ring_file, proc = _slow_run(tmp_path, day, "stop", heartbeat_timeout=0.3)
    try:
        ring = _wait_ready(ring_file, proc)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: load(ring.words, L.slot_base(0) + L.S_STATE) == L.SLOT_DETACHED,
                     "the producer to detach the stopped consumer")
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
        ring.close()
    finally:
        _reap(proc)
    assert proc.returncode == 1, (out, err)
    assert f"{ring_file}: consumer 'book' was detached by the producer" in err
    assert "Traceback" not in err and "truncated" not in err


def test_a_producer_stopped_for_good_is_killed_and_the_run_ends(tmp_path, day):
    """The producer of `itchflow run` SIGSTOPped and never continued: the consumer said so after
    its heartbeat time-out, then hung for ever at exit, joining a child that SIGTERM cannot end
    while it is stopped (probe 41). It is killed now, the run ends (exit 1) naming why."""
    ring_file, proc = _slow_run(tmp_path, day, "pstop", heartbeat_timeout=0.5)
    producer = 0
    try:
        ring = _wait_ready(ring_file, proc)
        producer = ring.snapshot()["producer"]["pid"]
        ring.close()
        assert producer not in (0, proc.pid) and pid_alive(producer)
        os.kill(producer, signal.SIGSTOP)
        out, err = proc.communicate(timeout=60)
    finally:
        _reap(proc)
        if producer and pid_alive(producer):
            os.kill(producer, signal.SIGKILL)
    assert proc.returncode == 1, (out, err)
    assert f"the producer process (pid {producer}) did not answer and did not stop when asked" in err, err
    assert "Traceback" not in err
    wait_for(lambda: not pid_alive(producer), "the stopped producer to be gone")
    assert not os.path.exists(ring_file)


# ---- 10 and 12: SIGKILL and Ctrl-C of `itchflow run` ------------------------------------------
def _run_cli(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, "-m", "itchflow.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _reap(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)


def _wait_ready(ring_file: str, proc: subprocess.Popen, records: int = 1) -> Ring:
    """The run's ring exists, its producer is open and the consumer has taken ``records``."""
    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        if not os.path.exists(ring_file):
            return None
        try:
            ring = Ring.open(ring_file)
        except (OSError, RingFormatError):
            return None
        s = ring.snapshot()
        c = s["consumers"][0]
        if s["producer"]["state"] == "open" and s["edge"]["records"] >= records and \
                c["records_consumed"] == s["edge"]["records"]:
            return ring
        ring.close()
        return None
    return wait_for(ready, "the run to be under way", every=0.02)


def _live_day(tmp_path, day) -> tuple:
    """A file with the first half of the day and no end event: a tail: run waits on it."""
    raw = day.tobytes()
    half = first_messages(day, 30_000)
    f = tmp_path / "live.itch"
    f.write_bytes(half)
    return f, 30_000, raw


def test_sigkill_of_run_takes_the_producer_and_a_rerun_reclaims_the_ring(tmp_path, day):
    import itchflow.cli.ring  # noqa: F401  (registers the commands)
    from click.testing import CliRunner
    from itchflow.cli import main

    live, _, raw = _live_day(tmp_path, day)
    name = f"itchflow-test-shm-kill-{os.getpid()}"
    ring_file = f"/dev/shm/itchflow.{name}.ring"
    proc = _run_cli(["run", "--source", f"tail:{live}", "--ring", name, "--heartbeat-timeout", "0.5",
                     "--idle-timeout", "60", "--quiet"])
    try:
        ring = _wait_ready(ring_file, proc)
        producer = int(ring.snapshot()["producer"]["pid"])
        ring.close()
        assert pid_alive(producer)
        proc.kill()
        proc.communicate(timeout=10)
        wait_for(lambda: not pid_alive(producer), "the producer to die with its parent", timeout=10)
    finally:
        _reap(proc)
    try:
        assert os.path.exists(ring_file)      # SIGKILL runs no cleanup: the file stays ...
        wait_for(lambda: "STALE" in CliRunner().invoke(main, ["ring", "ls", ring_file]).output,
                 "`ring ls` to show the ring as stale", timeout=15, every=0.1)
        full = tmp_path / "day.itch"
        full.write_bytes(raw)
        again = _run_cli(["run", "--source", str(full), "--ring", name, "--json"])   # ... and is reclaimed
        out, err = again.communicate(timeout=90)
        assert again.returncode == 0, err
        assert json.loads(out)["messages"] == 60_000
        assert not os.path.exists(ring_file)
    finally:
        if os.path.exists(ring_file):
            os.unlink(ring_file)


def test_run_on_a_ring_a_live_process_holds_is_busy(path, tmp_path, day):
    from itchflow.pipeline import run_pipeline
    from itchflow.ring import RingBusy

    src = tmp_path / "day.itch"
    src.write_bytes(day.tobytes())
    with Ring.create(path, CAP, consumers=["book"], max_payload=feed_max_payload(CAP)):
        with pytest.raises(RingBusy, match=f"{path}: in use by creator pid {os.getpid()}"):
            run_pipeline(str(src), ring=path)
        assert os.path.exists(path)


def _signalled_run(tmp_path, day, sig, flag: str, settle=None) -> tuple:
    """`itchflow run` on a tail: source that is never finished, with a named ring: once it is
    running (and ``settle(ring, messages)`` holds), send it ``sig``. (process, stdout, stderr,
    producer pid, ring file, messages in the file)."""
    live, n, _ = _live_day(tmp_path, day)
    name = f"itchflow-test-shm-sig{int(sig)}-{os.getpid()}"
    ring_file = f"/dev/shm/itchflow.{name}.ring"
    proc = _run_cli(["run", "--source", f"tail:{live}", "--ring", name, "--idle-timeout", "60", flag])
    try:
        ring = _wait_ready(ring_file, proc)
        if settle is not None:
            settle(ring, n)
        producer = int(ring.snapshot()["producer"]["pid"])
        ring.close()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    except BaseException:   # the run killed by _reap leaves its ring: not this test's to leave behind
        _reap(proc)
        if os.path.exists(ring_file):
            os.unlink(ring_file)
        raise
    finally:
        _reap(proc)
    return proc, out, err, producer, ring_file, n


def _all_applied(ring: Ring, n: int) -> None:
    wait_for(lambda: _published(ring) == n and
             ring.snapshot()["consumers"][0]["records_consumed"] == ring.snapshot()["edge"]["records"],
             "every message of the file to be applied")


def test_ctrl_c_prints_the_report_and_exits_130(tmp_path, day):
    proc, out, err, producer, ring_file, n = _signalled_run(tmp_path, day, signal.SIGINT, "--json", _all_applied)
    assert proc.returncode == 130, err
    rep = json.loads(out)
    assert rep["interrupted"] is True and rep["messages"] == n
    assert "interrupted" in err and "Traceback" not in err
    wait_for(lambda: not pid_alive(producer), "the producer to stop", timeout=10)
    assert not os.path.exists(ring_file)


def test_sigterm_stops_the_producer_removes_the_ring_and_exits_143(tmp_path, day):
    """SIGTERM (timeout, systemd, docker stop) took the default action: the process died at
    once, its producer lived on until it noticed, and the ring stayed in /dev/shm."""
    proc, out, err, producer, ring_file, _ = _signalled_run(tmp_path, day, signal.SIGTERM, "-q")
    assert proc.returncode == 143, (proc.returncode, err)
    # said once: the producer it stops with SIGTERM does not inherit the message (nor unwinds)
    assert err.count("terminated (signal 15)") == 1 and "Traceback" not in err
    wait_for(lambda: not pid_alive(producer), "the producer to stop", timeout=10)
    assert not os.path.exists(ring_file)


def _published(ring: Ring) -> int:
    """Messages in the records published so far (their headers' counts)."""
    total = 0
    e = ring.snapshot()["edge"]
    pos, mask = 0, ring.capacity - 1
    words = ring.words
    dw = ring.header_bytes // 8
    while pos < e["position"]:
        h = int(words[dw + ((pos & mask) >> 3)])
        length, rtype = h & 0xFFFFFFFF, (h >> 32) & 0xFFFFFFFF
        if rtype == B.RECORD_TYPE:
            total += int(words[dw + ((pos & mask) >> 3) + 1 + B.W_MESSAGE_COUNT])
        pos += (length + 7) & ~7
    return total


def test_lapped_consumer_of_a_lossy_ring_reports_the_loss(path, day):
    from itchflow.pipeline import run_pipeline

    with Ring.create(path, CAP, mode="lossy", consumers=["book"], max_payload=feed_max_payload(CAP)):
        pub = BatchPublisher(Ring.open(path).writer(), batch_bytes=4096)
        pub.publish(day, 1)          # several times the ring's capacity: the consumer is lapped
        pub.writer.close()
        rep = run_pipeline(f"ring:{path}", top=0)
        again = run_pipeline(f"ring:{path}", top=0)   # drained: nothing lost in this run
    assert rep.ring_lost_records == pub.records > 0 and rep.messages == 0
    assert again.ring_lost_records == 0 and again.messages == 0


def test_a_header_overwritten_under_an_attached_reader_is_said(path, day):
    """The ring's magic zeroed while the consumer applied a batch, its slot still attached:
    nothing was said (probe 25), though the README says it is a RingFormatError."""
    one = first_messages(day, 1)
    with Ring.create(path, CAP, consumers=["book"], max_payload=feed_max_payload(CAP)) as ring:
        w = ring.writer()
        w.write(header(1, 1) + one, type=B.RECORD_TYPE)
        rd = ring.reader("book")
        batch = rd.read_batch(timeout=0)
        assert len(batch) == 1
        ring.words[L.W_MAGIC] = 0
        with pytest.raises(RingFormatError, match="header was overwritten while consumer 'book' was reading"):
            BatchApplier(Books(), "test").apply(batch, 0, rd.check_intact)
        ring.words[L.W_MAGIC] = L.MAGIC


def test_a_ring_larger_than_the_memory_available_is_refused_by_name(monkeypatch):
    """--capacity 16G reserved 13.5 GB of a 24 GB machine for a 6 MB day, with no check; 2**61
    said only "[Errno 12] Cannot allocate memory" (probe 25)."""
    import errno

    from itchflow.ring import file as ring_file

    name = f"/dev/shm/itchflow.memtest-{os.getpid()}.ring"
    monkeypatch.setattr(ring_file, "meminfo_value", lambda field: 1 << 30 if field == "MemAvailable" else None)
    with pytest.raises(OSError) as e:
        Ring.create(name, 1 << 31)
    assert e.value.errno == errno.ENOMEM and "no room for the ring's" in str(e.value)
    assert "available (MemAvailable)" in str(e.value) and "--capacity" in str(e.value)
    assert not os.path.exists(name)
    with Ring.create(name, 1 << 20) as ring:   # what fits is made
        ring.unlink()
