"""Tail mode: following a file another process appends to in odd-sized pieces."""

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import itchflow
from itchflow.errors import ITCHFormatError
from itchflow.decode.encoder import encode_message
from itchflow.sim.write_slowly import append_slowly
from itchflow.sources.tail import Tail


def make_day(n: int, end_event: bool = True) -> bytes:
    rng = np.random.default_rng(n)
    msgs = [encode_message("S", timestamp=1, event_code="O")]
    for i in range(n):
        code = "ADEXP"[int(rng.integers(0, 5))]
        msgs.append(encode_message(code, stock_locate=int(rng.integers(1, 50)), timestamp=10 + i,
                                   order_reference_number=i + 1))
    if end_event:
        msgs.append(encode_message("S", timestamp=10 + n, event_code="C"))
    return b"".join(msgs)


def _writer(src, dst, rate, piece, seed):
    append_slowly(src, dst, rate=rate, piece_bytes=piece, seed=seed)


@pytest.mark.parametrize("piece", [1, 7, 4093])
def test_follows_writer_process_to_end_event(tmp_path, piece):
    n = 3000 if piece > 1 else 300
    raw = make_day(n)
    src, dst = tmp_path / "src.itch", tmp_path / "live.itch"
    src.write_bytes(raw)
    dst.write_bytes(b"")
    proc = mp.get_context("spawn").Process(target=_writer, args=(str(src), str(dst), 50_000, piece, piece))
    proc.start()
    try:
        tail = Tail(dst, poll_interval=0.0002, idle_timeout=20)
        chunks = list(tail)
    finally:
        proc.join(30)
    assert proc.exitcode == 0
    got = b"".join(c.data.tobytes() for c in chunks)
    assert got == raw and tail.ended
    # Sequence numbers continue from chunk to chunk; offsets are positions in the file.
    seq, off = 1, 0
    for c in chunks:
        assert c.first_sequence == seq and c.offset == off
        d = itchflow.read(c.data)
        seq += d.messages
        off += len(c.data)
    assert seq - 1 == tail.messages == n + 2
    assert tail.reads >= 2  # the file grew while followed


def test_stops_at_end_event_even_if_more_follows(tmp_path):
    raw = make_day(50)
    path = tmp_path / "f.itch"
    path.write_bytes(raw + encode_message("A", order_reference_number=999))
    got = b"".join(c.data.tobytes() for c in Tail(path, idle_timeout=1))
    assert got == raw
    more = b"".join(c.data.tobytes() for c in Tail(path, idle_timeout=0.2, stop_at_end_of_messages=False))
    assert len(more) == len(raw) + 38


def test_idle_timeout_clean_and_with_partial_message(tmp_path):
    raw = make_day(20, end_event=False)
    path = tmp_path / "f.itch"
    path.write_bytes(raw)
    t0 = time.monotonic()
    assert b"".join(c.data.tobytes() for c in Tail(path, idle_timeout=0.3)) == raw
    assert 0.3 <= time.monotonic() - t0 < 5
    path.write_bytes(raw + encode_message("D", order_reference_number=5)[:9])
    with pytest.raises(ITCHFormatError, match=f"byte offset {len(raw)}: file stopped growing inside a message"):
        list(Tail(path, idle_timeout=0.2))
    # what the bytes there claim is said, as every other reader says it: garbage was only "a
    # message being written" (probe 32)
    path.write_bytes(raw + b"\xc2\x03\x65" + bytes(40))
    with pytest.raises(ITCHFormatError, match=r"stopped growing inside a message for 0.2 s: truncated message: "
                                              r"the data ends inside it \(unknown type 0x65, length prefix 49667\); "
                                              r"41 of 49667 bytes present"):
        list(Tail(path, idle_timeout=0.2))


def test_shrinking_file_is_an_error(tmp_path):
    raw = make_day(20, end_event=False)
    path = tmp_path / "f.itch"
    path.write_bytes(raw)
    tail = iter(Tail(path, idle_timeout=3, poll_interval=0.001))
    next(tail)
    threading.Timer(0.05, lambda: os.truncate(path, 10)).start()
    with pytest.raises(ITCHFormatError, match=f"{path}, byte offset 10: file truncated to 10 bytes"):
        list(tail)


def test_tail_source_through_read_and_stats(tmp_path):
    raw = make_day(500)
    path = tmp_path / "f.itch"
    path.write_bytes(raw)
    assert itchflow.stats(f"tail:{path}").messages == itchflow.stats(str(path)).messages == 502
    d = itchflow.read(f"tail:{path}", types="D")
    assert np.array_equal(d["D"], itchflow.read(str(path), types="D")["D"])


def test_waits_for_file_to_appear(tmp_path):
    path = tmp_path / "late.itch"
    raw = make_day(10)
    threading.Timer(0.2, lambda: path.write_bytes(raw)).start()
    assert b"".join(c.data.tobytes() for c in Tail(path, wait_for_file=5, idle_timeout=2)) == raw
    with pytest.raises(FileNotFoundError):
        list(Tail(tmp_path / "never.itch", wait_for_file=0.1))


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)


def test_truncation_after_a_chunk_is_an_error_not_sigbus(tmp_path):
    """Chunks were views of the mapped file: touching one after the file was truncated killed
    the process with SIGBUS. They are now the reader's own bytes, and the truncation is an
    error naming the file and offset."""
    raw = make_day(2000, end_event=False)
    path = tmp_path / "f.itch"
    path.write_bytes(raw)
    code = ("import os, sys; from itchflow.sources.tail import Tail\n"
            "it = iter(Tail(sys.argv[1], idle_timeout=30, poll_interval=0.001))\n"
            "c = next(it)\n"
            "os.truncate(sys.argv[1], 0)\n"
            "print(len(c.data), int(c.data.astype('int64').sum()), flush=True)\n"
            "try:\n    next(it)\nexcept Exception as e:\n    print(type(e).__name__, e)\n    sys.exit(3)\n")
    res = _run_python(code, str(path))
    assert res.returncode == 3, (res.returncode, res.stderr)
    lines = res.stdout.splitlines()
    length, total = (int(x) for x in lines[0].split())
    err = lines[1]
    assert (length, total) == (len(raw), sum(raw))
    assert err.startswith("TailError") and f"{path}, byte offset 0: file truncated to 0 bytes" in err


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_deleted_or_replaced_file_is_reported(tmp_path, how):
    from itchflow.sources.tail import TailError

    raw = make_day(200, end_event=False)
    path = tmp_path / "f.itch"
    path.write_bytes(raw)
    tail = Tail(path, idle_timeout=30, poll_interval=0.001, check_every=0.01)
    it = iter(tail)
    assert next(it).data.tobytes() == raw
    if how == "deleted":
        os.unlink(path)
    else:
        other = tmp_path / "other.itch"
        other.write_bytes(make_day(300))
        os.replace(other, path)
    t0 = time.monotonic()
    with pytest.raises(TailError, match=f"{path}, byte offset {len(raw)}: file {how}"):
        next(it)
    assert time.monotonic() - t0 < 10      # noticed while waiting, not at the 30 s idle time-out


def test_wait_for_file_times_out_with_a_clear_error(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError, match=r"never.itch: no such file \(waited 0.3 s for it to appear\)"):
        list(Tail(tmp_path / "never.itch", wait_for_file=0.3))
    assert 0.3 <= time.monotonic() - t0 < 5


def test_stop_ends_an_idle_tail(tmp_path):
    raw = make_day(20, end_event=False)
    path = tmp_path / "f.itch"
    path.write_bytes(raw)
    stop = threading.Event()
    tail = Tail(path, idle_timeout=None, poll_interval=0.001, stop=stop)
    it = iter(tail)
    assert next(it).data.tobytes() == raw
    stop.set()
    assert list(it) == [] and tail.stopped


def test_run_waits_for_a_tail_file_that_appears_later(tmp_path):
    from itchflow.pipeline import PipelineError, run_pipeline

    path = tmp_path / "late.itch"
    raw = make_day(300)
    timer = threading.Timer(0.5, lambda: path.write_bytes(raw))
    timer.start()
    rep = run_pipeline(f"tail:{path}", wait_for_file=20, top=0)
    timer.join()
    assert rep.messages == 302
    with pytest.raises(PipelineError, match=r"no such file \(waited 0.2 s"):
        run_pipeline(f"tail:{tmp_path / 'never.itch'}", wait_for_file=0.2, top=0)


def test_a_file_truncated_and_written_again_past_where_it_was_is_an_error(tmp_path):
    """copytruncate rotation: the file cut to 0 and another day written past the point already
    read, between two polls. Only a smaller size was checked: one run of three mixed two days'
    messages and reported the stream whole (probe 17). The bytes before the read position are
    read again with each new read now."""
    first, second = make_day(40, end_event=False), make_day(90)
    path = tmp_path / "f.itch"
    path.write_bytes(first)
    tail = iter(Tail(path, idle_timeout=5, poll_interval=0.001))
    assert next(tail).data.tobytes() == first
    path.write_bytes(second)        # (truncates and rewrites at once: no poll can see it shorter)
    assert len(second) > len(first)
    with pytest.raises(ITCHFormatError, match=r"file rewritten while being followed: the 64 bytes before offset "
                                              rf"{len(first)} changed"):
        next(tail)


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_tail_refuses_what_is_not_a_regular_file_at_once(tmp_path, kind):
    """tail: on a FIFO read nothing and exited 0 (a pipe's size is always 0); with no writer, the
    open blocked past any idle time-out (probe 17)."""
    path = tmp_path / "f"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    t0 = time.monotonic()
    what = "a pipe or FIFO" if kind == "fifo" else "a directory"
    with pytest.raises(ITCHFormatError, match=f"this is {what}, whose size says nothing.*--source PATH"):
        list(Tail(path, idle_timeout=0.5))
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("kind", ["gzip", "pcap"])
def test_tail_refuses_a_gzip_day_or_a_capture_before_a_message_goes_out(tmp_path, kind):
    """tail: on a .gz day or a pcap fed the books 46 and 4 garbage messages before its framing
    failed, with a misleading error (probe 17)."""
    import gzip

    raw = make_day(30)
    path = tmp_path / ("f.itch.gz" if kind == "gzip" else "f.pcap")
    path.write_bytes(gzip.compress(raw) if kind == "gzip" else
                     bytes.fromhex("d4c3b2a1") + bytes(20) + raw)
    got = []
    with pytest.raises(ITCHFormatError, match=f"this is a {kind} ") as e:
        for c in Tail(path, idle_timeout=0.5):
            got.append(c)
    assert got == [] and "--source PATH" in str(e.value)


def test_summary_says_how_following_ended_and_what_was_left_unread(tmp_path):
    """probe 17: tail: stopped at the first end event and said nothing of the 6 MB after it; an
    idle time-out without the end event looked like a whole day; a stop inside a message did
    not say its bytes were left."""
    raw, extra = make_day(50), make_day(10)
    path = tmp_path / "f.itch"
    path.write_bytes(raw + extra)               # a second day appended after the end event
    tail = Tail(path, idle_timeout=1)
    assert b"".join(c.data.tobytes() for c in tail) == raw
    s = tail.summary()
    assert (s["ended_by"], s["bytes_after_end"], s["position"], s["messages"]) == \
           ("end of messages", len(extra), len(raw), 52)

    cut = make_day(20, end_event=False)
    path.write_bytes(cut)
    tail = Tail(path, idle_timeout=0.2)
    assert b"".join(c.data.tobytes() for c in tail) == cut
    assert tail.summary()["ended_by"] == "idle time-out" and tail.summary()["bytes_after_end"] == 0

    half = encode_message("D", order_reference_number=5)[:9]
    path.write_bytes(cut + half)
    stop = threading.Event()
    tail = Tail(path, idle_timeout=None, poll_interval=0.001, stop=stop)
    it = iter(tail)
    assert next(it).data.tobytes() == cut
    stop.set()
    assert list(it) == []
    assert tail.summary()["ended_by"] == "stopped" and tail.summary()["unfinished_bytes"] == len(half)


def test_a_length_prefix_wrong_for_its_type_is_an_error_at_once(tmp_path):
    """probe 17: a 'D' with prefix 60000 was waited for (up to the idle time-out), then called a
    message the writer had not finished; stats names the bad prefix."""
    raw = make_day(20, end_event=False)
    path = tmp_path / "f.itch"
    path.write_bytes(raw + b"\xea\x60D" + b"\x00" * 20)
    t0 = time.monotonic()
    with pytest.raises(ITCHFormatError, match=rf"byte offset {len(raw)}: length prefix disagrees with the message "
                                              r"type's length \(type 'D', length prefix 60000, specification says 19\)"):
        list(Tail(path, idle_timeout=30))
    assert time.monotonic() - t0 < 10


def _run_json(*args: str, stdin=None) -> tuple[int, dict | None, str]:
    p = subprocess.run([sys.executable, "-m", "itchflow", "run", *args, "--json", "-q", "--top", "0"],
                       stdin=stdin, capture_output=True, text=True, timeout=180)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


def test_run_reports_a_tail_that_never_saw_its_end_as_cut_short(tmp_path):
    path = tmp_path / "f.itch"
    path.write_bytes(make_day(200, end_event=False))
    rc, rep, err = _run_json("--source", f"tail:{path}", "--idle-timeout", "0.5")
    assert rc == 2 and rep["stream"] == "cut short" and rep["messages"] == 201
    assert rep["producer"]["tail"]["ended_by"] == "idle time-out"
    assert "stopped growing for 0.5 s before its end-of-messages event, after 201 messages" in err
    path.write_bytes(make_day(200) + make_day(5))
    rc, rep, err = _run_json("--source", f"tail:{path}", "--idle-timeout", "0.5")
    assert rc == 0 and rep["stream"] == "whole" and rep["messages"] == 202
    assert rep["producer"]["tail"]["bytes_after_end"] == len(make_day(5))


def test_run_prints_its_report_when_the_source_fails_part_way(tmp_path):
    """probe 17: run --json printed nothing at all when the producer failed mid-file: a script
    had no report of what had been applied."""
    raw = make_day(300, end_event=False)
    path = tmp_path / "f.itch"
    path.write_bytes(raw + encode_message("A", order_reference_number=7)[:20])
    for source in (str(path), f"tail:{path}"):
        rc, rep, err = _run_json("--source", source, "--idle-timeout", "0.5")
        assert rc == 1 and rep is not None, (source, err)
        assert rep["messages"] == 301 and rep["stream"] == "cut short"
        assert f"byte offset {len(raw)}" in rep["error"] and f"byte offset {len(raw)}" in err


def test_run_reads_standard_input(tmp_path):
    """probe 17: run --source - said '-: no such file' (the README says - is standard input)."""
    raw = make_day(300)
    path = tmp_path / "f.itch"
    path.write_bytes(raw)
    with open(path, "rb") as f:
        rc, rep, err = _run_json("--source", "-", stdin=f)
    assert rc == 0 and rep["messages"] == 302, err
    p = subprocess.run(f"cat {path} | {sys.executable} -m itchflow run --source - --json -q --top 0", shell=True,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0 and json.loads(p.stdout)["messages"] == 302, p.stderr


def test_run_refuses_a_tail_of_a_directory_before_starting(tmp_path):
    rc, rep, err = _run_json("--source", f"tail:{tmp_path}")
    assert rc == 1 and rep is None and "is a directory; tail: follows a regular file" in err


def test_a_whole_message_with_a_wrong_length_prefix_is_named_where_it_is(tmp_path):
    """probe 19: a whole message mid-file whose prefix is wrong for its type sent the walk out of
    step, and the error came later, elsewhere ("zero-length message" 9,000 bytes on)."""
    raw = make_day(20, end_event=False)
    bad = b"\x00\x28" + encode_message("A", order_reference_number=1)[2:] + b"\x00\x00"   # 'A' said 40, not 36
    path = tmp_path / "f.itch"
    path.write_bytes(raw + bad + make_day(30))
    tail = Tail(path, idle_timeout=5)
    got = []
    with pytest.raises(ITCHFormatError, match=rf"byte offset {len(raw)}: length prefix disagrees with the message "
                                              r"type's length \(type 'A', length prefix 40, specification says 36\)"):
        for c in tail:
            got.append(c.data.tobytes())
    assert b"".join(got) == raw        # every message before it, then the error


def test_run_counts_the_messages_applied_before_a_bad_one_in_the_same_batch(tmp_path):
    """probe 19: a bad prefix at message 1,001 left the failure report at 0 messages applied: the
    engine had applied the 1,000 before it in that batch, and they were not counted."""
    raw = make_day(1000, end_event=False)   # 1,001 messages
    path = tmp_path / "f.itch"
    path.write_bytes(raw + b"\x00\x05A\x00\x00\x00\x00" + make_day(10))
    rc, rep, err = _run_json("--source", str(path))
    assert rc == 1 and rep["messages"] == 1001 and rep["bytes"] == len(raw), err
    assert rep["book"]["messages_applied"] == 1001
    assert f"byte offset {len(raw)}: length prefix disagrees" in rep["error"]


def test_run_refuses_a_closed_standard_input(tmp_path):
    """probe 19: with fd 0 closed, the ring file was opened as fd 0 and read as the day."""
    p = subprocess.run([sys.executable, "-m", "itchflow", "run", "--source", "-", "-q", "--top", "0"],
                       stdin=None, preexec_fn=lambda: os.close(0), capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "standard input is closed" in p.stderr, p.stderr
    p = subprocess.run([sys.executable, "-m", "itchflow", "stats", "-"], preexec_fn=lambda: os.close(0),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "standard input is closed" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_a_pipe_still_open_hands_out_what_has_arrived(tmp_path):
    """probe 19: a source read from a pipe waited for 8 MiB (or the writer's end) before its first
    messages went out: `tail -f day | itchflow run --source -` applied nothing for a long time."""
    from itchflow.sources.files import iter_chunks

    raw = make_day(300, end_event=False)
    r, w = os.pipe()
    try:
        os.write(w, raw + encode_message("D", order_reference_number=5)[:7])   # and part of the next
        chunks = iter_chunks(os.fdopen(r, "rb"))
        first: list = []
        reader = threading.Thread(target=lambda: first.append(next(chunks)), daemon=True)
        reader.start()
        reader.join(30)
        assert first and first[0].data.tobytes() == raw
    finally:
        os.close(w)


def test_run_on_standard_input_names_it_and_its_text_report_says_the_stream_failed(tmp_path):
    """probe 19 (LOW): errors in what run read from standard input named the source `-`, and the
    text report of a failed run had no line saying so (only --json carried it)."""
    raw = make_day(300, end_event=False)
    path = tmp_path / "f.itch"
    path.write_bytes(raw + b"\x00\x05A\x00\x00\x00\x00")
    with open(path, "rb") as f:
        p = subprocess.run([sys.executable, "-m", "itchflow", "run", "--source", "-", "-q", "--top", "0"],
                           stdin=f, capture_output=True, text=True, timeout=180)
    assert p.returncode == 1 and f"<stdin>, byte offset {len(raw)}: length prefix disagrees" in p.stderr, p.stderr
    assert "stream: cut short (failed: the error follows" in p.stdout, p.stdout


def test_write_slowly_refuses_what_tail_cannot_follow_and_tail_needs_a_path(tmp_path):
    """write-slowly of a .gz appended the compressed bytes at a rate it could not know, and
    tail: with no path waited for a file named "" until killed (probe 32)."""
    import gzip

    from itchflow.pipeline.sources import parse_source

    raw = make_day(20)
    src = tmp_path / "day.itch.gz"
    src.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match=r"day.itch.gz: a gzip file; write-slowly appends a raw BinaryFILE day"):
        append_slowly(src, tmp_path / "live.itch")
    assert not (tmp_path / "live.itch").exists()
    with pytest.raises(ValueError, match=r"give the file to follow, tail:PATH"):
        parse_source("tail:")
