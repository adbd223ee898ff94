"""Ring header words written by someone else: a stuck seqlock, words changed after they were
validated, positions that would overflow, and a pipeline whose producer never opened the ring.

Each of these hung or crashed before; the cases that could spin in compiled code or crash run
in a child interpreter, so a regression shows as that child's time-out or signal.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from itchflow.ring import Ring, RingFormatError
from itchflow.ring import layout as L

pytestmark = pytest.mark.timeout(240)


def _run(code: str, *args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    # 150 s: a child on a cold kernel cache compiles the pipeline first (a minute or more on a busy machine)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s (the hang this test is about)")


def _kept_ring(path: str, records: int = 3) -> None:
    """A blocking ring with consumer 'book', its producer closed after some records."""
    with Ring.create(path, 1 << 16, consumers=["book"], keep=True) as ring:
        w = ring.writer()
        for i in range(records):
            w.write(bytes([i]) * 20)
        w.close()


def test_an_odd_edge_seqlock_with_a_live_pid_does_not_spin_for_ever(ring_path):
    """A producer killed between the two seqlock stores leaves the sequence odd; its pid may be
    reused (here: pid 1, always alive). The edge read gave up only when the pid was gone, so
    open, inspect, ls and rm spun at 100% CPU for ever. It now also gives up when no producer
    is open (here: closed) or the open one's heartbeat is stale."""
    _kept_ring(ring_path)
    ring = Ring.open(ring_path)
    ring.words[L.W_EDGE_SEQ] = 11
    ring.words[L.W_PROD_PID] = 1
    ring.close()
    res = _run("import sys\nfrom itchflow.ring import Ring\n"
               "r = Ring.open(sys.argv[1]); rd = r.reader('book')\n"
               "print(len(rd.read_batch(timeout=0)))\n", ring_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["3"]


def test_header_words_changed_after_open_are_not_used_as_bounds(ring_path):
    """Ring.open validated capacity and header_bytes, then the reader and writer read them
    again from the shared header: a header_bytes of 2**32 written in between sent the
    kernels 4 GiB past the mapping (SIGSEGV). They now take the geometry validated at open."""
    _kept_ring(ring_path, records=0)
    res = _run(
        "import sys\nfrom itchflow.ring import Ring\nfrom itchflow.ring import layout as L\n"
        "r = Ring.open(sys.argv[1])\n"
        "r.words[L.W_HEADER_BYTES] = 1 << 32; r.words[L.W_CAPACITY] = 1 << 40; r.words[L.W_MAX_PAYLOAD] = 1 << 40\n"
        "rd = r.reader('book'); w = r.writer()\n"
        "w.write(b'abc' * 10)\n"
        "b = rd.read_batch(timeout=1)\n"
        "print(len(b), bytes(b[0]))\n", ring_path)
    assert res.returncode == 0, (res.returncode, res.stderr)
    assert res.stdout.split() == ["1", repr(b"abc" * 10)]


@pytest.mark.parametrize("word", ["position", "records", "payload"])
def test_an_edge_beyond_2_to_the_62_is_corrupt(ring_path, word):
    """Positions near 2**63 passed validation; position + capacity then overflowed in the
    producer, whose wait for space returned at once, for ever, past its own time-out."""
    _kept_ring(ring_path, records=0)
    ring = Ring.open(ring_path)
    index = {"position": L.W_EDGE_POS, "records": L.W_EDGE_REC, "payload": L.W_EDGE_PAY}[word]
    ring.words[index] = (1 << 63) - 64
    ring.close()
    with pytest.raises(RingFormatError, match=r"corrupt edge .*each must be in 0\.\.2\*\*62"):
        Ring.open(ring_path)


@pytest.mark.parametrize("timeout", [1e-10, 0.0, -5.0, math.nan, math.inf, 2e9])
def test_a_heartbeat_timeout_that_cannot_be_kept_is_refused_at_creation(ring_path, timeout):
    """1e-10 s was stored as 0 ns, which every later open reads as corrupt: a pipeline's own
    producer then failed to open the ring its parent had just made."""
    with pytest.raises(ValueError, match="heartbeat_timeout must be 0.001 to 1e9 seconds"):
        Ring.create(ring_path, 1 << 16, heartbeat_timeout=timeout)
    assert not os.path.exists(ring_path)


def test_a_producer_that_fails_before_opening_the_ring_ends_the_run(tmp_path):
    """The forked producer opened the ring outside its error handling, so a failure there was
    a traceback on stderr, and the consumer waited for ever: a producer that never opened the
    ring never reads as gone. The failure is now the run's error, named."""
    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(day, 20_000, seed=1)
    res = _run(
        "import sys\nfrom itchflow.ring import Ring, RingFormatError\n"
        "from itchflow.pipeline import PipelineError, parse_source, run_pipeline\n"
        "def refuse(cls, path):\n    raise RingFormatError(f'{path}: refused by the test')\n"
        "Ring.open = classmethod(refuse)   # the forked child inherits it; the parent only creates\n"
        "try:\n    run_pipeline(parse_source(sys.argv[1]))\n"
        "except PipelineError as e:\n    print(e)\n", day)
    assert res.returncode == 0, res.stderr
    assert "producer failed after 0 messages: RingFormatError:" in res.stdout
    assert "refused by the test" in res.stdout and "Traceback" not in res.stderr


@pytest.mark.parametrize("args, message", [
    (["--heartbeat-timeout", "1e-10"], "'--heartbeat-timeout': '1e-10' must be at least 0.001"),
    (["--pin", "a,b"], "'--pin': 'a,b' is not a comma-separated list of CPU numbers"),
    (["--pin", "0,4096"], "'--pin': CPUs [4096] are not available"),
    (["--rate", "1e-300"], "'--rate': '1e-300' must be at least 0.001"),
    (["--capacity", "-1"], "'--capacity': '-1' is not a power of two of at least 524,288"),
    # passed the option's check, then refused at run time with exit 1 (probe 25)
    (["--capacity", "262144"], "'--capacity': '262144' is not a power of two of at least 524,288"),
    (["--capacity", "100000"], "'--capacity': '100000' is not a power of two"),
    (["--batch-bytes", "0"], "'--batch-bytes': 0 is not in the range x>=1"),
    (["--ring", ""], "'--ring': a ring needs a name or a path"),   # made a private ring, silently
])
def test_run_options_that_cannot_work_are_usage_errors(tmp_path, args, message):
    from itchflow.cli import main

    res = CliRunner().invoke(main, ["run", "--source", str(tmp_path / "never.itch"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_a_header_zeroed_under_a_reader_is_named_as_such_not_a_detach(ring_path):
    """Zeroing the header under a live reader was reported as a detach for missing heartbeats,
    blaming the reader for a stray write."""
    with Ring.create(ring_path, 1 << 16, consumers=["book"]) as ring:
        w = ring.writer()
        w.write(b"x" * 20)
        rd = ring.reader("book")
        assert len(rd.read_batch(timeout=1)) == 1
        ring.words[: ring.header_bytes // 8] = 0
        with pytest.raises(RingFormatError, match="header was overwritten while consumer 'book' was reading"):
            rd.read_batch(timeout=0)


@pytest.mark.parametrize("keep", ["header", "nothing"])
def test_a_ring_file_truncated_under_its_reader_is_an_error_not_sigbus(ring_path, keep):
    """Its data pages gone, the reader's next poll died of SIGBUS. The mapping is guarded: the
    lost pages read as zeros (nothing published) and the next read says what happened. Cut to
    0 bytes, the header reads as zeros too: that was reported as "the ring's header was
    overwritten (magic word 0x0)", not as the truncation it was."""
    _kept_ring(ring_path, records=0)
    res = _run(
        "import os, sys\nfrom itchflow.ring import Ring, RingFormatError\n"
        "r = Ring.open(sys.argv[1]); rd = r.reader('book'); w = r.writer()\n"
        "w.write(b'x' * 20); print(len(rd.read_batch(timeout=1)), flush=True)\n"
        f"os.truncate(sys.argv[1], {'r.header_bytes' if keep == 'header' else 0})\n"
        "try:\n    rd.read_batch(timeout=0.2)\nexcept RingFormatError as e:\n    print(e)\n", ring_path)
    assert res.returncode == 0, (res.returncode, res.stderr)
    lines = res.stdout.splitlines()
    assert lines[0] == "1"
    assert lines[1].startswith(f"{ring_path}: the ring file was truncated to ") and "by another process" in lines[1]


@pytest.mark.parametrize("keep", ["header", "nothing"])
@pytest.mark.parametrize("api", ["write", "publish"])
def test_a_ring_file_truncated_under_its_producer_is_an_error_not_sigsegv(ring_path, keep, api):
    """The producer's next store past the new end died of SIGSEGV (the guard's page of zeros
    was read-only), or, with the header gone too, its heartbeat thread did. The page is now
    writable and the writer checks the guard's record after each write: the write that went
    into the lost pages raises, naming the ring, and the process lives to report it."""
    from itchflow.pipeline.publish import feed_max_payload

    Ring.create(ring_path, 1 << 20, consumers=["book"], keep=True, max_payload=feed_max_payload(1 << 20)).close()
    write = ("w.write(b'y' * 20)" if api == "write" else
             "pub.publish(np.frombuffer(bytes([0, 12, 83]) + bytes(11), np.uint8), 1)")
    res = _run(
        "import os, sys\nimport numpy as np\nfrom itchflow.ring import Ring, RingFormatError\n"
        "from itchflow.pipeline.publish import BatchPublisher\n"
        "r = Ring.open(sys.argv[1]); rd = r.reader('book'); w = r.writer(timeout=5)\n"
        "pub = BatchPublisher(w, 4096)\n"
        f"{write}; print(len(rd.read_batch(timeout=1)), flush=True)\n"
        "os.truncate(sys.argv[1], int(sys.argv[2]))\n"
        f"try:\n    {write}\nexcept RingFormatError as e:\n    print(e)\n", ring_path,
        Ring.open(ring_path).header_bytes if keep == "header" else 0)
    assert res.returncode == 0, (res.returncode, res.stderr)
    lines = res.stdout.splitlines()
    assert lines[0] == "1" and len(lines) == 2, res.stdout
    assert lines[1].startswith(f"{api}: {ring_path}: the ring file was truncated to ")
    assert "what was read or written past its new end is not the ring's" in lines[1]


@pytest.mark.parametrize("mode", ["blocking", "lossy"])
@pytest.mark.parametrize("length, rtype, says", [
    (4, 1, "its length is under the 8-byte header"),
    (1 << 14, 1, "it runs past the end of the data region"),
    (24, 0xFFFFFFFF, "a padding record that does not end at the end of the data region"),
    (8 + 600, 1, "its payload is larger than the ring's max_payload"),
    (24, 0x80000000, r"its type is reserved \(at least 2\*\*31, and not padding\)"),
])
def test_a_corrupt_record_header_ends_the_records_before_it_and_says_what_is_wrong(ring_path, mode, length,
                                                                                  rtype, says):
    """The records published before a corrupt header were lost with it (the whole read raised),
    the five faults read alike, and a type at or above 2**31 (reserved) was taken as a record."""
    with Ring.create(ring_path, 1 << 14, max_payload=512, mode=mode, consumers=["c"]) as ring:
        w = ring.writer()
        rd = ring.reader("c")
        for i in range(4):
            w.write(bytes([i]) * 16)            # stride 24: record i's header at data offset 24 * i
        ring.data[48:56].view(np.uint64)[0] = length | (rtype << 32)   # record 2's header
        got = [x.tobytes() for x in rd.read_batch(timeout=0)]
        assert got == [b"\0" * 16, b"\1" * 16]
        with pytest.raises(RingFormatError, match=rf"corrupt record header at position 48 \(data offset 48; "
                                                  rf"length {length}, type {rtype:#x}: {says}\)"):
            rd.read_batch(timeout=0)


@pytest.mark.parametrize("args", [["--capacity", "1048576"], ["--heartbeat-timeout", "9"], ["--hugepages"],
                                  ["--ring", "mine", "--rate", "1000"]])
def test_run_options_for_its_own_ring_are_refused_for_a_ring_source(args):
    """`run --source ring:NAME` ignored --capacity, --heartbeat-timeout and --hugepages without a
    word: the ring is its producer's (probe 13)."""
    from itchflow.cli import main

    res = CliRunner().invoke(main, ["run", "--source", "ring:never-made", *args])
    assert res.exit_code == 2, res.output
    assert "not for a ring:NAME source, whose ring its producer made" in res.output
    assert all(a in res.output for a in args if a.startswith("--"))


def test_a_feed_ring_capacity_the_option_takes_is_one_the_pipeline_takes():
    from itchflow.cli.params import FEED_RING_CAPACITY
    from itchflow.pipeline.publish import feed_max_payload

    feed_max_payload(FEED_RING_CAPACITY.low)
    with pytest.raises(ValueError, match="too small for ITCH batches"):
        feed_max_payload(FEED_RING_CAPACITY.low // 2)


def test_a_consumer_position_no_consumer_can_hold_detaches_that_slot_not_the_others_data(ring_path):
    """Probe 43: a negative position word in one slot read as "no consumer yet", and the blocking
    producer overwrote what another, honest consumer had yet to read, with no error and nothing
    counted lost. The slot with the impossible position is detached, saying why; the honest one
    still holds the producer back and reads every record from the first."""
    from itchflow.ring import ConsumerDetached

    with Ring.create(ring_path, 1 << 16, consumers=["honest", "stray"]) as ring:
        honest, stray = ring.reader("honest"), ring.reader("stray")
        w = ring.writer(timeout=0.3)
        w.write(b"first")
        ring.words[L.slot_base(stray.slot) + L.S_POS] = -8
        written = 1
        with pytest.raises(TimeoutError):
            for i in range(5000):   # ~5.7 capacities: the honest reader reads nothing meanwhile
                w.write(b"later-%05d" % i)
                written += 1
        assert written < 5000
        got = [x.tobytes() for x in honest.read_batch(timeout=1)]
        assert got[0] == b"first" and got[1:] == [b"later-%05d" % i for i in range(len(got) - 1)]
        assert honest.lost_records == 0
        with pytest.raises(ConsumerDetached, match="detached by the producer \\(its slot's position outside what "
                                                   "was published: a slot word written over by another process\\)"):
            stray.read_batch(timeout=0)


def test_a_heartbeat_ahead_of_the_clock_does_not_keep_the_producer_waiting(ring_path):
    """Probe 43: a slot whose heartbeat word lies in the future (a stray write, another clock)
    never aged, so the blocking producer waited on it for ever. Such a slot is detached once the
    heartbeat is a time-out ahead of the clock, and every write goes through."""
    import time

    from itchflow.ring.liveness import consumer_live

    with Ring.create(ring_path, 1 << 16, consumers=["gone"], heartbeat_timeout=0.2) as ring:
        gone = ring.reader("gone")
        b = L.slot_base(gone.slot)
        ring.words[b + L.S_HB] = time.monotonic_ns() + (1 << 40)
        ring.words[b + L.S_PID] = 4194304   # no process (pid_max at its largest)
        assert not consumer_live(ring.words, b)
        w = ring.writer(timeout=5)
        for i in range(10_000):   # 40-byte records: 6 capacities
            w.write(bytes(32))
        assert ring.words[b + L.S_STATE] == L.SLOT_DETACHED
        assert ring.words[b + L.S_DETACH_REASON] == L.DETACH_HEARTBEAT_AHEAD


def test_a_slot_pid_past_any_process_id_is_corrupt_and_ring_ls_and_rm_force_still_work(ring_path):
    """Probe 43: a pid word of 2**31 or more raised OverflowError out of os.kill: `ring inspect`
    printed a traceback, `ring ls` listed no ring at all, and `ring rm --force` could not remove
    it."""
    from itchflow.cli import main

    _kept_ring(ring_path)
    with Ring.open(ring_path) as ring:
        ring.words[L.slot_base(0) + L.S_PID] = 1 << 40
    with pytest.raises(RingFormatError, match=r"consumer slot 0 \('book'\): pid 1099511627776 is not a process id"):
        Ring.open(ring_path)
    res = CliRunner().invoke(main, ["ring", "ls"])
    assert res.exit_code == 0 and ring_path in res.output and "CORRUPT" in res.output, res.output
    res = CliRunner().invoke(main, ["ring", "inspect", ring_path])
    assert res.exit_code == 1 and "pid 1099511627776 is not a process id" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, ["ring", "rm", "--force", ring_path])
    assert res.exit_code == 0 and not os.path.exists(ring_path), res.output


@pytest.mark.parametrize("where", ["short", "past"])
def test_a_closed_ring_read_to_anywhere_but_its_final_edge_is_an_error(ring_path, where):
    """Probe 43: once the producer had closed the ring, a record header zeroed by a stray write
    ended the stream there as if whole ("the producer closed the ring (whole)"; `run` applied
    half a day and exited 0), and a non-zero word after the final edge was read as one more
    record. The reader's end is now checked against the edge the producer closed at."""
    _kept_ring(ring_path, records=10)   # 10 records of 20 bytes: stride 32
    with Ring.open(ring_path) as ring:
        if where == "short":
            ring.data[96:104] = 0                                          # record 3's header
        else:
            ring.data[320:328].view(np.uint64)[0] = (8 + 7) | (5 << 32)   # a "record" at the edge
        rd = ring.reader("book")
        got = len(rd.read_batch(timeout=1))
        assert got == (3 if where == "short" else 11)
        says = ("at position 96 \\(record 3\\): the record header there reads as unpublished, yet its producer "
                "\\(closed the ring\\) published up to position 320" if where == "short" else
                "at position 336 \\(record 11\\) read past the end the producer closed the ring at \\(position 320\\)")
        with pytest.raises(RingFormatError, match=f"corrupt ring: consumer 'book' {says}"):
            rd.read_batch(timeout=1)


def test_a_header_zeroed_below_the_edge_of_a_live_producer_is_an_error_not_a_wait_for_ever(ring_path):
    """The same stray zero under a producer still open: the blocking reader waited for a
    publish that had already happened (and the producer, for the reader, once the ring filled)."""
    with Ring.create(ring_path, 1 << 16, consumers=["book"]) as ring:
        rd = ring.reader("book")
        w = ring.writer()
        for i in range(10):
            w.write(bytes([i]) * 20)
        ring.data[96:104] = 0
        assert len(rd.read_batch(timeout=1)) == 3
        with pytest.raises(RingFormatError, match="at position 96 \\(record 3\\): the record header there reads "
                                                  "as unpublished, yet its producer \\(open\\) published up to "
                                                  "position 320"):
            rd.read_batch(timeout=30)


def test_a_slot_state_that_is_no_state_is_not_blamed_on_the_consumer(ring_path):
    """Probe 43: a stray 99 in an attached reader's state word was reported as a detach for
    missing heartbeats ("paused, stopped or too slow")."""
    with Ring.create(ring_path, 1 << 16, consumers=["book"]) as ring:
        rd = ring.reader("book")
        w = ring.writer()
        w.write(b"x" * 20)
        ring.words[L.slot_base(rd.slot) + L.S_STATE] = 99
        with pytest.raises(RingFormatError, match="consumer 'book''s slot state word reads 99, not a slot state"):
            rd.read_batch(timeout=0)


def test_more_mapped_rings_than_the_old_guard_held_still_survive_truncation(ring_path):
    """Probe 43: the truncation guard had 64 slots; the 65th mapping of a process was not
    guarded, and reading it after a truncation killed the process with SIGBUS."""
    _kept_ring(ring_path, records=0)
    res = _run("import os, sys\nfrom itchflow.ring import Ring, RingFormatError\n"
               "rings = [Ring.open(sys.argv[1]) for _ in range(100)]\n"
               "r = rings[-1]; rd = r.reader('book'); w = r.writer()\n"
               "w.write(b'x' * 20); print(len(rd.read_batch(timeout=1)), flush=True)\n"
               "os.truncate(sys.argv[1], 0)\n"
               "try:\n    rd.read_batch(timeout=0.2)\nexcept RingFormatError as e:\n    print(e)\n", ring_path)
    assert res.returncode == 0, (res.returncode, res.stderr)
    lines = res.stdout.splitlines()
    assert lines[0] == "1" and "the ring file was truncated to 0 bytes" in lines[1], res.stdout


def test_a_reader_attaching_itself_stores_its_position_before_it_reads_as_attached(ring_path, monkeypatch):
    """Probe 46: with no live producer, a reader marked its slot attached, then stored its
    position: for a few milliseconds the slot read as attached at its old position (0), and a
    producer starting then detached an honest reader as a corrupt slot. The position now comes
    first, as when the producer attaches a joiner."""
    from itchflow.hw.atomics_py import load
    from itchflow.ring import reader as reader_module

    _kept_ring(ring_path, records=5)   # closed: the next reader attaches itself, at the edge (position 160)
    seen = []
    real = reader_module.cas

    def watched(words, index, expected, new):
        if new == L.SLOT_ATTACHED:
            seen.append(int(load(words, index - L.S_STATE + L.S_POS)))
        return real(words, index, expected, new)

    monkeypatch.setattr(reader_module, "cas", watched)
    with Ring.open(ring_path) as ring:
        rd = ring.reader("late")
        assert seen == [160] and rd.position == 160


def test_a_producer_killed_inside_its_edge_update_leaves_no_false_corruption_at_the_end(ring_path):
    """Probe 46: a producer killed between its edge's position and records stores leaves the
    records word one batch short for good (the next generation walks on from the position). The
    end-of-stream check compared records too, and called an honest reader of every record
    corrupt. It holds the position only."""
    from itchflow.ring import RingClosed

    with Ring.create(ring_path, 1 << 16, consumers=["c"], keep=True) as ring:
        rd = ring.reader("c")
        w = ring.writer()
        for i in range(7):
            w.write(bytes([i]) * 10)
        w.close()
        ring.words[L.W_EDGE_REC] -= 4          # the torn update: the position stored, its records not
        ring.words[L.W_PROD_STATE] = L.PRODUCER_OPEN
        ring.words[L.W_PROD_PID] = 0           # and the producer gone
        w2 = ring.writer()                     # the next generation recovers (nothing past the position)
        for i in range(5):
            w2.write(b"c" * 10)
        w2.close()
        got = 0
        with pytest.raises(RingClosed):
            while True:
                got += len(rd.read_batch(timeout=5))
        assert got == 12


def test_read_batch_of_no_records_is_refused(ring_path):
    """Probe 46: max_records=0 read nothing and took the close for the end, a record unread."""
    with Ring.create(ring_path, 4096, consumers=["c"]) as ring:
        w = ring.writer()
        w.write(b"hello")
        w.close()
        rd = ring.reader("c")
        with pytest.raises(ValueError, match="max_records must be a whole number of at least 1, got 0"):
            rd.read_batch(max_records=0, timeout=0.5)
        assert [x.tobytes() for x in rd.read_batch(timeout=0.5)] == [b"hello"]
