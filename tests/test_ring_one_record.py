"""A record a call: ``Writer.write`` and ``Reader.read`` call their kernels' compiled functions
without the dispatcher (hw.compiled_entry), so the types they pass must be right whatever the
caller gives. Every payload kind is read back against its bytes as numpy gives them; types
and record lengths at their bounds; both ring modes."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from itchflow.hw.compiled_entry import entry
from itchflow.ring import Ring, RingClosed, RingError
from itchflow.ring import consumer as C
from itchflow.ring import layout as L


@pytest.fixture
def path(ring_path):
    return ring_path


def _interrupted(code: str, *args: str) -> tuple[int, str]:
    """Run ``code`` in a new interpreter; once it prints "ready", send it SIGINT: its exit code
    and what it printed after."""
    import signal
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out.strip()


def _payloads():
    """(what the caller passes, the bytes a reader must get)."""
    a = np.arange(40, dtype=np.uint8)
    i32 = np.arange(6, dtype=np.int32)
    grid = np.arange(12, dtype=np.uint8).reshape(3, 4)
    ro = np.frombuffer(b"read-only", np.uint8)
    return [
        (b"bytes", b"bytes"),
        (bytearray(b"bytearray"), b"bytearray"),
        (memoryview(b"a memoryview"), b"a memoryview"),
        (memoryview(b"0123456789")[2:7], b"23456"),
        (a, a.tobytes()),
        (a[::3], a[::3].tobytes()),                 # strided: copied first, not read with gaps
        (a[5:9], a[5:9].tobytes()),
        (i32, i32.tobytes()),                       # another dtype: its bytes
        (memoryview(i32), i32.tobytes()),
        (grid, grid.tobytes()),                     # 2-D: its bytes in row order
        (grid.T, grid.T.copy().tobytes()),
        (ro, b"read-only"),
        (b"", b""),
        # (probe 15) np.matrix stayed 2-D through its own reshape and went out as its first byte;
        # 0-d arrays of wider types and zero-size memoryviews were refused with numpy's errors
        (np.matrix([[0, 1, 2], [3, 4, 5]], dtype=np.uint8), bytes(range(6))),
        (np.matrix([[1, 2], [3, 4]], dtype=np.int16), np.array([[1, 2], [3, 4]], np.int16).tobytes()),
        (np.array(5, np.int64), np.array(5, np.int64).tobytes()),
        (np.array(b"xyz"), b"xyz"),
        (memoryview(np.zeros((2, 0))), b""),
        (np.ma.array([1, 2], dtype=np.uint8), b"\1\2"),
    ]


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("mode", ["blocking", "lossy"])
def test_every_payload_kind_reads_back_as_its_bytes_with_its_type(path, mode):
    cases = _payloads()
    with Ring.create(path, 1 << 14, max_payload=64, mode=mode, consumers=["c"]) as ring:
        rd = ring.reader("c")
        w = ring.writer()
        for i, (given, _) in enumerate(cases):
            w.write(given, type=i)
        for i, (_, want) in enumerate(cases):
            assert rd.read(timeout=1) == want
            assert rd.last_type == i
        assert rd.read(timeout=0) is None   # nothing more: None, not an empty record


def test_read_gives_exactly_what_read_batch_gives_in_order(path):
    rng = np.random.default_rng(7)
    records = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 257, 3000)]
    with Ring.create(path, 1 << 16, max_payload=256, consumers=["one", "batch"]) as ring:
        one, batch = ring.reader("one"), ring.reader("batch")
        w = ring.writer()
        got_one, got_batch = [], []
        for k in range(0, len(records), 100):    # the ring holds 64 KiB: read as it fills
            for r in records[k:k + 100]:
                w.write(r, type=len(r) % 7)
            while len(got_one) < k + 100:
                got_one.append((one.read(timeout=1), one.last_type))
            while len(got_batch) < k + 100:
                b = batch.read_batch(timeout=1)
                got_batch += [(b[i].tobytes(), int(b.types[i])) for i in range(len(b))]
        assert got_one == got_batch == [(r, len(r) % 7) for r in records]
        w.close()
        with pytest.raises(RingClosed):
            one.read(timeout=1)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=40), st.sampled_from(["blocking", "lossy"]))
def test_records_of_any_length_up_to_max_payload_round_trip(records, mode):
    p = f"/dev/shm/itchflow-test-one-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with Ring.create(p, 1 << 14, max_payload=64, mode=mode, consumers=["c"]) as ring:
            rd = ring.reader("c")
            w = ring.writer()
            for r in records:
                w.write(r)
            assert [rd.read(timeout=1) for _ in records] == records
    finally:
        if os.path.exists(p):
            os.unlink(p)


def test_bad_types_and_payloads_are_refused_before_the_compiled_call(path):
    with Ring.create(path, 1 << 14, max_payload=16, consumers=["c"]) as ring:
        rd = ring.reader("c")
        w = ring.writer()
        with pytest.raises(TypeError):
            w.write(b"x", type=1.5)
        with pytest.raises(TypeError):
            w.write(b"x", type="1")
        for bad in (-1, L.MAX_USER_TYPE + 1, 2**70):
            with pytest.raises(ValueError, match="record type must be in"):
                w.write(b"x", type=bad)
        with pytest.raises(ValueError, match="larger than the ring's max_payload 16"):
            w.write(b"y" * 17)
        with pytest.raises(TypeError, match="expected bytes-like"):
            w.write(12345)
        with pytest.raises(TypeError, match="an array of Python objects has no bytes of its own"):
            w.write(np.array([b"a", 1], dtype=object))
        w.write(b"z", type=np.int64(L.MAX_USER_TYPE))   # a numpy integer is an integer
        assert rd.read(timeout=1) == b"z" and rd.last_type == L.MAX_USER_TYPE
        assert rd.read(timeout=0) is None   # nothing refused was published


def test_a_read_given_back_is_read_again_and_a_huge_timeout_is_forever(path):
    with Ring.create(path, 1 << 14, consumers=["c"]) as ring:
        rd = ring.reader("c")
        w = ring.writer()
        for i in range(3):
            w.write(bytes([i]) * 3)
        assert rd.read(timeout=1e30) == b"\0\0\0"
        assert rd.read(timeout=1) == b"\1\1\1"
        rd.give_back()   # (Ctrl-C before the caller had it)
        rd.close()
        again = ring.reader("c")
        assert [again.read(timeout=1) for _ in range(2)] == [b"\1\1\1", b"\2\2\2"]


def test_entry_is_found_once_per_signature():
    words = np.zeros(64, np.int64)
    f = entry(C.heartbeat, words, words)
    assert entry(C.heartbeat, np.ones(3, np.int64), words) is f
    cs = np.zeros(C.C_FIELDS, np.int64)
    cs[C.C_SLOT] = 2
    f(words, cs)
    assert words[2 + L.S_HB] > 0 and cs[C.C_HB_COUNTDOWN] == C.HEARTBEAT_EVERY


def test_reading_or_writing_through_a_closed_end_is_a_ring_error_naming_it(path):
    with Ring.create(path, 1 << 14, consumers=["c", "d"]) as ring:
        w = ring.writer()
        rd, fresh = ring.reader("c"), ring.reader("d")
        w.write(b"one")
        assert rd.read(timeout=1) == b"one"
        rd.close()
        for call in (rd.read, rd.read_batch):
            with pytest.raises(RingError, match=f"{path}: consumer 'c' was closed"):
                call()
        w.close()
        for call in (lambda: w.write(b"x"), lambda: w.write(np.zeros(3, np.uint8)),
                     lambda: w.write_batch(b"ab", [0, 1, 2])):
            with pytest.raises(RingError, match="this writer was closed"):
                call()
    for call in (fresh.read, fresh.read_batch):   # (never read before: no compiled function yet)
        with pytest.raises(RingError, match="the ring was closed"):
            call()


@pytest.mark.parametrize("how", ["read", "read_batch"])
def test_ctrl_c_ends_a_read_waiting_for_ever_on_a_quiet_feed(path, how):
    """The compiled wait never returned to Python, where Ctrl-C's handler runs: a reader waiting
    with no time-out (the default) on a live, quiet producer ignored SIGINT for ever."""
    code = ("import sys\nfrom itchflow.ring import Ring\n"
            "ring = Ring.create(sys.argv[1], 1 << 14, consumers=['c'])\n"
            "w = ring.writer()\nrd = ring.reader('c')\n"
            "getattr(rd, sys.argv[2])(timeout=0)\n"     # compiled before the signal can come
            "try:\n    print('ready', flush=True)\n    getattr(rd, sys.argv[2])()\n"
            "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n")
    assert _interrupted(code, path, how) == (0, "interrupted")


@pytest.mark.parametrize("how", ["read", "read_batch"])
def test_a_wait_longer_than_a_slice_keeps_its_time_out(path, how):
    import time

    with Ring.create(path, 1 << 14, consumers=["c"]) as ring:
        w = ring.writer()
        rd = ring.reader("c")
        t0 = time.monotonic()
        got = getattr(rd, how)(timeout=0.35)
        took = time.monotonic() - t0
        assert (got is None if how == "read" else len(got) == 0) and 0.35 <= took < 5
        w.write(b"after")
        assert rd.read(timeout=60) == b"after"


@pytest.mark.parametrize("how", ["write", "write_batch"])
def test_ctrl_c_ends_a_write_waiting_on_a_full_ring_and_a_timed_one_keeps_its_time_out(path, how):
    """A producer on a ring kept full by a live consumer (heartbeat time-out of an hour) waited in
    compiled code, deaf to Ctrl-C; a time-out longer than a slice is kept whole."""
    import time

    last = "w.write(b'y' * 40)" if how == "write" else "w.write_batch(b'y' * 400, np.arange(0, 401, 40))"
    code = ("import sys, numpy as np\nfrom itchflow.ring import Ring\n"
            "ring = Ring.create(sys.argv[1], 1 << 12, max_payload=64, consumers=['c'], heartbeat_timeout=3600)\n"
            "rd = ring.reader('c')\nw = ring.writer(timeout=0.01)\n"
            # both calls made once before the signal can come: one arriving while Numba loads a
            # kernel from its cache is swallowed in LLVM's callback (or worse), not ours to test
            "w.write_batch(b'x' * 80, np.arange(0, 81, 40))\n"
            "try:\n    while True:\n        w.write(b'x' * 40)\nexcept TimeoutError:\n    pass\n"
            "w.timeout_ns = -1\n"      # from here on, for ever
            f"try:\n    print('ready', flush=True)\n    {last}\nexcept KeyboardInterrupt:\n"
            "    print('interrupted', flush=True)\n")
    assert _interrupted(code, path) == (0, "interrupted")

    timed = path + "-timed"
    try:
        with Ring.create(timed, 1 << 12, max_payload=64, consumers=["c"], heartbeat_timeout=3600) as ring:
            rd = ring.reader("c")
            w = ring.writer(timeout=0.35)
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                for _ in range(200):
                    w.write(b"x" * 40)
            assert 0.35 <= time.monotonic() - t0 < 5
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                w.write_batch(b"z" * 400, np.arange(0, 401, 40))
            assert 0.35 <= time.monotonic() - t0 < 5
            assert len(rd.read_batch(timeout=1)) == 85   # what filled the ring (4096 B of 48 B records)
            rd.commit()                                    # room again: the batch goes out whole
            assert w.write_batch(b"z" * 400, np.arange(0, 401, 40)) == 10
    finally:
        if os.path.exists(timed):
            os.unlink(timed)


def test_give_back_with_nothing_pending_changes_nothing(path):
    """give_back restored the start of the last read even when nothing was pending: on a Reader
    just opened (a start of zeros) it went back to position 0 and handed out records of a later
    lap; after commit() it went back behind the commit, and the stream stalled (probe 15)."""
    with Ring.create(path, 1 << 12, max_payload=64, consumers=["c"]) as ring:
        w = ring.writer()
        rd = ring.reader("c")
        for i in range(300):                       # several laps of the 4 KiB ring
            w.write(b"rec%d" % i)
            assert rd.read(timeout=1) == b"rec%d" % i
        rd.close()
        again = ring.reader("c")
        again.give_back()                          # a Ctrl-C handler's, before any read
        w.write(b"new")
        assert again.read(timeout=1) == b"new"
        again.commit()
        again.give_back()                          # after a commit: nothing pending either
        for i in range(300):
            w.write(b"more%d" % i)
            assert again.read(timeout=1) == b"more%d" % i
        assert again.read(timeout=0) is None


@pytest.mark.parametrize("how", ["read", "read_batch"])
def test_a_joining_reader_waits_its_time_out_for_the_join(path, how):
    """A new name on a blocking ring whose producer is idle (its join is served at the next
    publish) returned nothing at once, whatever its time-out: a loop taking that for a quiet
    feed stopped early (probe 15)."""
    import threading
    import time

    with Ring.create(path, 1 << 14) as ring:
        w = ring.writer()
        rd = ring.reader("late")                  # not registered at creation: it joins
        t0 = time.monotonic()
        got = getattr(rd, how)(timeout=0.3)
        assert (got is None if how == "read" else len(got) == 0) and time.monotonic() - t0 >= 0.3
        writer = threading.Thread(target=lambda: w.write(b"late"))
        writer.start()
        got = getattr(rd, how)(timeout=30)
        writer.join()
        assert (got if how == "read" else got[0].tobytes()) == b"late"
        rd.close()
        with pytest.raises(RingError, match="consumer 'late' was closed"):
            getattr(rd, how)(timeout=0.1)
        joining = ring.reader("never")               # closed before the producer attached it
        joining.close()
        with pytest.raises(RingError, match="consumer 'never' was closed"):
            getattr(joining, how)(timeout=0.1)


def test_a_reader_outliving_its_ring_says_so_and_keeps_its_figures(path):
    """After ring.close(), reader.close(), lost_records and rejoin() raised Numba's TypingError;
    position and last_type after reader.close() a TypeError on None (probe 15)."""
    with Ring.create(path, 1 << 14, consumers=["a", "b"]) as ring:
        w = ring.writer()
        a, b = ring.reader("a"), ring.reader("b")
        w.write(b"one", type=7)
        assert a.read(timeout=1) == b"one" and b.read(timeout=1) == b"one"
        a.close()
        assert (a.position, a.records, a.last_type, a.lost_records, a.lost_payload_bytes) == (16, 1, 7, 0, 0)
    # the ring closed under b
    assert (b.position, b.records, b.last_type, b.lost_records) == (16, 1, 7, 0)
    for call in (b.rejoin, b.read, b.read_batch):
        with pytest.raises(RingError, match=f"{path}: the ring was closed in this process"):
            call()
    b.commit(), b.check_intact(), b.give_back(), b.close()   # nothing left to do: no error either


def test_huge_time_outs_are_for_ever_and_errors_name_the_ring(path):
    from itchflow.ring.wait import timeout_ns

    assert timeout_ns(1e300) == timeout_ns(1e20) == 2**62 and timeout_ns(2.5) == 2_500_000_000
    with Ring.create(path, 1 << 14, max_payload=16, consumers=["c"]) as ring:
        rd = ring.reader("c")
        w = ring.writer()
        w.write(b"x")
        assert rd.read(timeout=1e300) == b"x"
        with pytest.raises(ValueError, match=f"{path}: write: payload larger than the ring's max_payload 16"):
            w.write(b"y" * 17)
        with pytest.raises(ValueError, match=f"{path}: write: record type must be in"):
            w.write(b"y", type=-1)


@pytest.mark.parametrize("how", ["read", "read_batch"])
def test_ctrl_c_as_a_read_returns_gives_its_records_back(path, monkeypatch, how):
    """A signal that arrives while the compiled read waits is raised as it returns, after it took
    the record: read() never handed it over, and the next read (or close) committed it: the
    caller never saw b"first" (probe 16)."""
    with Ring.create(path, 1 << 14, consumers=["c"]) as ring:
        w = ring.writer()
        rd = ring.reader("c")
        w.write(b"first")
        w.write(b"second")
        assert rd.read(timeout=1) == b"first"      # (compiles and warms; then read it again below)
        rd.give_back()
        real = rd._read_one if how == "read" else C.read_step

        def interrupted(*args):
            real(*args)
            raise KeyboardInterrupt   # as CPython raises it when the compiled call returns

        if how == "read":
            rd._read_one = interrupted
        else:
            monkeypatch.setattr(C, "read_step", interrupted)
        with pytest.raises(KeyboardInterrupt):
            getattr(rd, how)(timeout=1)
        monkeypatch.undo()
        rd._read_one = real if how == "read" else rd._read_one
        assert rd.read(timeout=1) == b"first"
        assert rd.read(timeout=1) == b"second"
        rd.close()
        again = ring.reader("c")
        assert again.read(timeout=0) is None          # both were handed over, and committed


def test_a_sleeping_writer_keeps_a_time_out_longer_than_a_slice(path):
    """The producer read its clock every 256 sleeps of up to 1 ms, and the slices assumed a
    slice took exactly 100 ms: a 0.15 s time-out lasted 0.54 s (probe 16)."""
    import time

    with Ring.create(path, 1 << 12, max_payload=64, consumers=["c"], heartbeat_timeout=3600) as ring:
        ring.reader("c")
        w = ring.writer(wait="sleep", timeout=0.15)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            for _ in range(200):
                w.write(b"x" * 40)
        assert 0.15 <= time.monotonic() - t0 < 0.4
