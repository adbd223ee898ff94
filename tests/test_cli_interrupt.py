"""Ctrl-C in any command ends with a sentence and status 130: trades, bbo, snapshots, decode
and gen printed click's bare "Aborted!" and exited 1, where the others said what was kept."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from itchflow.cli import main


@pytest.mark.parametrize("args, target", [
    (["trades", "day.itch", "-o", "t.parquet"], "itchflow.sinks.events.events_to_parquet"),
    (["bbo", "day.itch", "-o", "b.parquet"], "itchflow.sinks.events.events_to_parquet"),
    (["gen", "day.itch", "-n", "20k", "-q"], "itchflow.sim.generator.write_day"),
])
def test_ctrl_c_exits_130_with_a_sentence(monkeypatch, tmp_path, args, target):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    (tmp_path / "day.itch").write_bytes(b"")
    monkeypatch.setattr(target, interrupted)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 130, res.output
    assert "interrupted (Ctrl-C)" in res.output and "Aborted" not in res.output


def test_running_out_of_memory_is_an_error_line_not_a_traceback(monkeypatch, tmp_path):
    import numpy as np

    def no_memory(*a, **k):
        np.zeros(1 << 62, np.uint8)   # numpy's _ArrayMemoryError, a MemoryError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "day.itch").write_bytes(b"")
    monkeypatch.setattr("itchflow.sinks.events.events_to_parquet", no_memory)
    res = CliRunner().invoke(main, ["trades", "day.itch", "-o", "t.parquet"])
    assert res.exit_code == 1 and "itchflow: error: out of memory (Unable to allocate" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


_SWALLOWED_CTRL_C = """
import ctypes, signal, sys
import itchflow.sinks.events as events
from itchflow.cli import main

def compile_interrupted(*a, **k):
    # as Numba loading a kernel: Ctrl-C lands in an LLVM ctypes callback, where Python swallows
    # it ("Exception ignored on calling ctypes callback function"), then Numba fails on its own
    callback = ctypes.CFUNCTYPE(None)(lambda: signal.raise_signal(signal.SIGINT))
    callback()
    raise {error}("no compiled object yet for <Library 'fast_in_order'>")

events.events_to_parquet = compile_interrupted
sys.argv = ["itchflow", "trades", sys.argv[1], "-o", sys.argv[2]]
main()
"""


_SWALLOWED_THEN_CARRIES_ON = """
import ctypes, signal, sys, time
import itchflow.sinks.events as events
from itchflow.cli import main

def compile_interrupted(*a, **k):
    # the signal lands in a ctypes callback, where Python swallows it, and nothing fails after:
    # the command ran to its end and exited 0 (probe 37, SIGTERM during a recompile)
    callback = ctypes.CFUNCTYPE(None)(lambda: signal.raise_signal(signal.{signal}))
    callback()
    for _ in range(200):   # more work: the signal, sent again, lands here
        time.sleep(0.01)
    print("ran to the end", file=sys.stderr)
    return 0, 0

events.events_to_parquet = compile_interrupted
sys.argv = ["itchflow", "trades", sys.argv[1], "-o", sys.argv[2]]
main()
"""


@pytest.mark.parametrize("sig, status, said", [("SIGINT", 130, "itchflow: interrupted (Ctrl-C)"),
                                               ("SIGTERM", 143, "itchflow: terminated (signal 15)")])
def test_a_signal_swallowed_in_a_callback_still_ends_the_command(tmp_path, sig, status, said):
    import subprocess
    import sys

    (tmp_path / "day.itch").write_bytes(b"")
    p = subprocess.run([sys.executable, "-c", _SWALLOWED_THEN_CARRIES_ON.format(signal=sig),
                        str(tmp_path / "day.itch"), str(tmp_path / "t.parquet")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == status, p.stderr
    assert said in p.stderr and p.stderr.count(said) == 1
    assert "ran to the end" not in p.stderr and "Traceback" not in p.stderr and "Exception ignored" not in p.stderr


@pytest.mark.parametrize("error", ["RuntimeError", "OSError", "ZeroDivisionError"])
def test_ctrl_c_that_numba_swallowed_is_an_interruption_not_an_error(tmp_path, error):
    """Ctrl-C during a first run's compile: Python printed a KeyboardInterrupt traceback from the
    ctypes callback it swallowed it in, and the command then failed with Numba's "no compiled
    object yet" as its error (exit 1). The error that follows a Ctrl-C is its doing: exit 130,
    a sentence, no traceback, whether the command's handler catches the error or not."""
    import subprocess
    import sys

    (tmp_path / "day.itch").write_bytes(b"")
    p = subprocess.run([sys.executable, "-c", _SWALLOWED_CTRL_C.format(error=error), str(tmp_path / "day.itch"),
                        str(tmp_path / "t.parquet")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 130, p.stderr
    assert "itchflow: interrupted (Ctrl-C)" in p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr and "no compiled" not in p.stderr
    assert not list(tmp_path.glob("t.parquet*"))


def test_an_address_space_limit_is_an_error_line_naming_what_ran_out(tmp_path):
    """Under ulimit -v, stats said "[Errno 12] Cannot allocate memory" naming nothing, and decode
    printed a traceback ending in pyarrow's "failed to map segment" ImportError (probe 37)."""
    import resource
    import subprocess
    import sys

    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(day, 50_000, 1, stocks=10)

    def limited(code: str):
        def limit():   # the interpreter and its libraries loaded, the file's mapping refused
            resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              preexec_fn=limit)

    # as far as the mapping: find what the loaded interpreter takes, then leave less than the file
    probe = subprocess.run([sys.executable, "-c", "import itchflow.cli, resource, numpy, itchflow.decode.reader\n"
                            "print(open('/proc/self/status').read().split('VmSize:')[1].split()[0])"],
                           capture_output=True, text=True, timeout=120)
    LIMIT = (int(probe.stdout) + 64) * 1024 + day.stat().st_size // 2
    p = limited(f"import sys; from itchflow.cli import main; sys.argv = ['itchflow', 'stats', {str(day)!r}]; main()")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"mapping {day.stat().st_size:,} bytes" in p.stderr and str(day) in p.stderr, p.stderr
    p = limited("import sys; from itchflow.cli import main\n"
                "def broken(*a, **k): raise ImportError('libarrow.so.2600: failed to map segment from shared object')\n"
                "import itchflow.sinks.tables as t; t.TableWriter = broken\n"
                f"sys.argv = ['itchflow', 'decode', {str(day)!r}, '-o', {str(tmp_path / 'o.parquet')!r}, '-q']; main()")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "cannot load a library: libarrow.so.2600: failed to map segment" in p.stderr
    assert "out of address space or memory" in p.stderr


def test_an_interrupted_command_leaves_no_mark_on_the_next_in_the_process(monkeypatch, tmp_path):
    """The Ctrl-C a command noticed stayed noticed: every later command of the same process
    (a notebook, a test run) that failed said "interrupted (Ctrl-C)", exit 130 (probe 40)."""
    import signal

    def interrupted(*a, **k):
        signal.raise_signal(signal.SIGINT)   # through the command's own handler

    monkeypatch.chdir(tmp_path)
    (tmp_path / "day.itch").write_bytes(b"")
    monkeypatch.setattr("itchflow.sinks.events.events_to_parquet", interrupted)
    runner = CliRunner()
    assert runner.invoke(main, ["trades", "day.itch", "-o", "t.parquet"]).exit_code == 130
    r = runner.invoke(main, ["stats", str(tmp_path / "missing.itch")])
    assert r.exit_code == 1 and "interrupted (Ctrl-C)" not in r.output and "missing.itch: no such file" in r.output, r.output


def test_a_mapping_refused_for_another_reason_is_not_blamed_on_memory(monkeypatch, tmp_path):
    """Every failure to map a file was said to be an address-space limit or too little memory
    (a /sys file: "No such device ... (an address-space limit ...)": probe 40)."""
    import errno
    import mmap

    from itchflow.sources.chunk import map_file

    path = tmp_path / "day.itch"
    path.write_bytes(b"\x00\x01Z" * 10)
    for code, memory in ((errno.ENODEV, False), (errno.ENOMEM, True)):
        def refused(*a, **k):
            raise OSError(code, "refused")
        monkeypatch.setattr(mmap, "mmap", refused)
        with pytest.raises(OSError) as e:
            map_file(path)
        assert e.value.errno == code and e.value.filename == str(path) and "mapping 30 bytes" in str(e.value)
        assert ("ulimit -v" in str(e.value)) == memory


def test_folders_made_for_a_name_never_made_are_removed_too(tmp_path):
    """A failure before the deepest folder was made (its name refused) left the parents made
    for it (probe 40)."""
    from itchflow.sinks.output import folders_made_for

    out = tmp_path / "a" / "b" / ("x" * 300)
    with pytest.raises(OSError):
        with folders_made_for(out):
            os.makedirs(out)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with folders_made_for(tmp_path / "kept" / "new"):
            (tmp_path / "kept" / "new").mkdir()
            (tmp_path / "kept" / "new" / "f").write_text("x")
            raise RuntimeError
    assert (tmp_path / "kept" / "new" / "f").exists()   # not empty: kept


@pytest.mark.parametrize("sig, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_write_slowly_says_its_destination_keeps_what_was_appended(tmp_path, sig, status):
    """write-slowly appends to the file a reader follows: stopped, that file stays (as it
    should), but the command said "unfinished output was removed" (probe 41)."""
    import signal
    import time

    from net_procs import finish, start
    from itchflow.sim.generator import write_day

    src, dst = tmp_path / "day.itch", tmp_path / "live.itch"
    write_day(src, 20_000, 1, stocks=10)
    proc = start(["write-slowly", str(src), str(dst), "--rate", "2000"])
    deadline = time.monotonic() + 120
    while not (dst.exists() and dst.stat().st_size > 0):   # readiness: appending has begun
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(getattr(signal, sig))
    _, err = finish(proc, 60)
    assert proc.returncode == status, err
    assert f"{dst} keeps what was appended so far" in err and "removed" not in err, err
    assert 0 < dst.stat().st_size < src.stat().st_size
