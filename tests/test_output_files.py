"""Output files appear whole or not at all (itchflow.sinks.output): a full disk, a bad byte
mid-day or an interrupt leaves no cut file where the answer would be (and an earlier answer
stays as it was), and the error names the file. The full disk is a real one: a 1 MiB tmpfs
this test mounts and unmounts (root only)."""

from __future__ import annotations

import errno
import gzip
import os
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

import itchflow
from itchflow.cli import main
from itchflow.sim.generator import write_day
from itchflow.sinks.output import PART_SUFFIX, named, output_file, save_figure


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    path = tmp_path_factory.mktemp("day") / "20190130.itch"  # lobster takes the date from the name
    write_day(path, 200_000, 3, stocks=20)
    return str(path)


def _left(d) -> list[str]:
    """What is in d, and no file under d still open in this process (a writer whose close
    failed on the full disk kept its removed file open, and its space taken, until exit)."""
    prefix = os.fspath(d) + os.sep
    open_here = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix):
            open_here.append(target)
    assert not open_here, f"files left open: {open_here}"
    return sorted(os.listdir(d))


def test_output_file_renames_when_whole_and_removes_when_not(tmp_path):
    out = tmp_path / "a.bin"
    with output_file(out) as tmp:
        assert tmp.startswith(str(out) + ".") and tmp.endswith(PART_SUFFIX)   # NAME.<unique>.part
        open(tmp, "wb").write(b"new")
        assert not out.exists()  # not there until complete
    assert out.read_bytes() == b"new" and _left(tmp_path) == ["a.bin"]
    for error in (ValueError("bad byte"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with output_file(out) as tmp:
                open(tmp, "wb").write(b"cut")
                raise error
        assert out.read_bytes() == b"new" and _left(tmp_path) == ["a.bin"]  # the earlier answer stays


def test_an_error_that_names_no_file_names_the_output(tmp_path):
    out = str(tmp_path / "t.parquet")
    with pytest.raises(OSError) as e:
        with output_file(out):
            raise OSError(28, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert e.value.filename == out and e.value.errno == 28 and "No space left on device" in str(e.value)
    # naming the .part file is naming the wrong file
    assert named(PermissionError(13, "Permission denied", out + PART_SUFFIX), out).filename == out
    kept = FileNotFoundError(2, "No such file", out)
    assert named(kept, out).filename == out
    # an error about another file (the input), or one of ours without an errno, is left alone
    for other in (FileNotFoundError(2, "No such file", "/data/in.itch"), FileNotFoundError("in.itch: no such file")):
        assert named(other, out) is other
    with pytest.raises(IsADirectoryError) as e:
        with output_file(tmp_path):
            pass
    assert e.value.filename == str(tmp_path)


def test_a_missing_input_is_named_as_the_input(tmp_path):
    out = tmp_path / "bbo.parquet"
    r = CliRunner().invoke(main, ["bbo", str(tmp_path / "missing.itch"), "--out", str(out), "-q"])
    assert r.exit_code == 1 and r.output.strip() == f"itchflow: error: {tmp_path / 'missing.itch'}: no such file"
    assert _left(tmp_path) == []


def test_devices_are_written_in_place():
    with output_file("/dev/null") as tmp:
        assert tmp == "/dev/null"
        open(tmp, "wb").write(b"x")
    info = write_day("/dev/null", 20_000, 1, stocks=10)
    assert info["messages"] == 20_000


def test_a_gzipped_day_carries_its_own_name(tmp_path):
    out = tmp_path / "20190130.itch.gz"
    write_day(out, 20_000, 1, stocks=10, gz=True)
    raw = out.read_bytes()
    assert raw[3] & 0x08  # FNAME set
    name = raw[10:raw.index(b"\0", 10)]
    assert name == b"20190130.itch"  # gzip's own rule: the file's name less .gz, not the .part name
    assert len(gzip.decompress(raw)) == write_day(tmp_path / "raw.itch", 20_000, 1, stocks=10)["bytes"]


def test_an_interrupted_gen_leaves_nothing(tmp_path):
    out = tmp_path / "day.itch"

    def stop(messages, nbytes):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_day(out, 200_000, 1, stocks=10, chunk_bytes=64 << 10, progress=stop)
    assert _left(tmp_path) == []


@pytest.mark.parametrize("name", ["day.itch", "day.itch.gz"])
def test_a_terminated_gen_leaves_nothing(tmp_path, name):
    """SIGTERM (timeout, a scheduler's kill) left OUT.part behind: 37 MB raw, 854 MB gzip."""
    import signal
    import sys
    import time

    out = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-m", "itchflow.cli", "gen", "-q", "-n", "20M", str(out)],
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        def part_there() -> bool:   # NAME.<unique>.part
            return any(p.name.startswith(name + ".") and p.name.endswith(PART_SUFFIX) for p in tmp_path.iterdir())

        while not part_there() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)   # readiness: the output is open
        assert part_there(), proc.stderr.read() if proc.poll() is not None else "no .part"
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143 and "terminated (signal 15): stopped; any unfinished output is removed" in err, err
    assert _left(tmp_path) == []


def test_a_bad_byte_mid_day_leaves_no_table(tmp_path, day):
    bad = tmp_path / "bad.itch"
    data = bytearray(open(day, "rb").read())
    p = 0
    while p < len(data) // 2:  # to the first message of the day's second half
        p += 2 + int.from_bytes(data[p:p + 2], "big")
    data[p:p + 2] = b"\x00\x00"  # a zero-length message there
    bad.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    for command in (["decode", str(bad), "--out", str(out / "all.parquet"), "-q"],
                    ["bbo", str(bad), "--out", str(out / "bbo.parquet"), "-q"],
                    ["trades", str(bad), "--out", str(out / "trades.parquet"), "-q"]):
        r = CliRunner().invoke(main, command)
        assert r.exit_code == 1, (command, r.output)
        assert f"{bad}, byte offset {p}: zero-length message" in r.output and "Traceback" not in r.output
        assert _left(out) == [], command


def test_an_output_name_pyarrow_cannot_take_is_named_and_leaves_nothing(tmp_path, day):
    """Probe 57: a name that is not valid UTF-8 (a byte the file system's encoding could not read,
    as every non-ASCII name is in an ASCII-only locale) failed with "'utf-8' codec can't encode
    ...: surrogates not allowed", naming no file; lobster also left its empty .part files and so
    its new folder."""
    out = tmp_path / "out"
    out.mkdir()
    bad = os.fsdecode(b"caf\xe9")      # Latin-1 bytes: not UTF-8
    shown = "caf\\xe9"
    symbol = day_symbol(day)
    for command in (["decode", day, "--types", "A", "--out", os.path.join(str(out), bad + ".csv"), "-q"],
                    ["bbo", day, "--out", os.path.join(str(out), bad + ".parquet"), "-q"],
                    ["lobster", day, "-s", symbol, "--out", os.path.join(str(out), bad), "-q"]):
        r = CliRunner().invoke(main, command)
        assert r.exit_code == 1 and "Traceback" not in r.output, (command, r.output)
        assert shown in r.output and "pyarrow writes only file names in UTF-8" in r.output, (command, r.output)
        assert os.listdir(out) == [], (command, os.listdir(out))


def _names_a_full_disk(r, path) -> None:
    assert r.exit_code == 1, r.output
    assert "No space left on device" in r.output and str(path) in r.output, r.output
    assert "Traceback" not in r.output


def test_a_full_disk_is_named_and_leaves_nothing(full_disk, day, tmp_path):
    runner = CliRunner()
    out = full_disk / "day.itch"       # uncompressed: refused before it starts, naming the room
    r = runner.invoke(main, ["gen", "-n", "200000", str(out), "-q"])
    assert r.exit_code == 2 and "take about 6 MB" in r.output and "1 MB free" in r.output, r.output
    assert _left(full_disk) == []
    out = full_disk / "day.itch.gz"    # compressed: its size is not known before, so the disk fills
    _names_a_full_disk(runner.invoke(main, ["gen", "-n", "400000", str(out), "-q"]), out)
    assert _left(full_disk) == []
    out = full_disk / "all.parquet"
    _names_a_full_disk(runner.invoke(main, ["decode", day, "--out", str(out), "-q"]), out)
    assert _left(full_disk) == []
    out = full_disk / "all.csv"
    _names_a_full_disk(runner.invoke(main, ["decode", day, "--out", str(out), "-q"]), out)
    assert _left(full_disk) == []
    out = full_disk / "bbo.parquet"
    _names_a_full_disk(runner.invoke(main, ["bbo", day, "--out", str(out), "-q"]), out)
    assert _left(full_disk) == []
    out = full_disk / "bars.csv"
    _names_a_full_disk(runner.invoke(main, ["bars", day, "--every", "1s", "--start", "04:00", "--end", "20:00",
                                            "--out", str(out), "-q"]), out)
    assert _left(full_disk) == []
    top = itchflow.read(day, "R")["R"]["stock"][0].decode().strip()
    r = runner.invoke(main, ["lobster", day, "-s", top, "-n", "50", "-o", str(full_disk), "-q"])
    assert r.exit_code == 1 and "No space left on device" in r.output and str(full_disk) in r.output, r.output
    assert _left(full_disk) == []


def test_a_failed_rewrite_keeps_the_earlier_answer(full_disk, day):
    out = full_disk / "small.parquet"
    r = CliRunner().invoke(main, ["decode", day, "--types", "S", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    before = out.read_bytes()
    r = CliRunner().invoke(main, ["decode", day, "--out", str(out), "-q"])  # every type: does not fit
    _names_a_full_disk(r, out)
    assert out.read_bytes() == before and _left(full_disk) == ["small.parquet"]


def test_figures_take_their_format_from_the_final_name(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(np.arange(3))
    png, svg = tmp_path / "a.png", tmp_path / "a.svg"
    save_figure(fig, png, dpi=50)
    save_figure(fig, svg)
    plt.close(fig)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]
    assert _left(tmp_path) == ["a.png", "a.svg"]


def test_a_stream_output_on_a_full_disk_names_its_file(full_disk):
    """`listen --out` and `soup fetch --out` said "[Errno 28] No space left on device" and no
    file: the receive loop's writes now raise naming the output."""
    from itchflow.sinks.output import StreamOutput

    final = full_disk / "capture.itch"
    stream = StreamOutput(final)
    with pytest.raises(OSError) as e:
        for _ in range(64):
            stream.file.write(bytes(64 << 10))     # 4 MiB into 1 MiB
        stream.file.flush()
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(final)
    stream.discard()
    assert _left(full_disk) == []


def test_auctions_renames_both_tables_or_neither(day, tmp_path, monkeypatch):
    """A failure writing imbalances.parquet (a full disk) left the new day's crosses beside the
    old day's imbalances, whose cross_row then pointed at the wrong day's rows."""
    import pyarrow.parquet as pq

    out = tmp_path / "auctions"
    assert CliRunner().invoke(main, ["auctions", day, "-o", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"crosses.parquet", "imbalances.parquet"}
    real = pq.write_table

    def full_on_the_second(table, where, *a, **k):
        if "imbalances" in str(where):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(table, where, *a, **k)

    monkeypatch.setattr(pq, "write_table", full_on_the_second)
    res = CliRunner().invoke(main, ["auctions", day, "-o", str(out), "-s", day_symbol(day)])
    assert res.exit_code == 1 and "imbalances.parquet" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # the earlier pair, whole


def day_symbol(path) -> str:
    return str(itchflow.Books().replay(path).bbo()["symbol"][0])


def test_a_descriptor_named_by_its_path_is_written_in_place_even_when_it_is_a_regular_file(tmp_path):
    """probe 19: `-o /dev/stdout > f` made /dev/stdout (a link to /proc/self/fd/1, a regular file
    then) look like a file to replace: the .part was renamed over the system's /dev/stdout link
    (as root). Written through the descriptor, in place, it is never renamed over."""
    from itchflow.sinks.output import StreamOutput

    target = tmp_path / "redirected"
    with open(target, "wb") as f:
        fd = f.fileno()
        for name in ("/dev/stdout", "/dev/stderr", f"/dev/fd/{fd}", f"/proc/self/fd/{fd}", f"/proc/{os.getpid()}/fd/{fd}"):
            with output_file(name) as path:
                assert path == name
        out = StreamOutput(f"/proc/self/fd/{fd}")
        out.file.write(b"day")
        assert out.commit() == f"/proc/self/fd/{fd}"
    assert target.read_bytes() == b"day" and os.path.islink("/dev/stdout")
    assert not os.path.exists(f"/proc/self/fd/{fd}{PART_SUFFIX}")


def test_an_output_that_is_the_input_is_refused(tmp_path):
    """bbo in.parquet --out in.parquet, decode in.csv --out in.csv: the input was replaced by
    the output and the command exited 0 (probe 30)."""
    import hashlib

    from itchflow.sim.generator import write_day
    from itchflow.sinks.output import output_file, refuse_input_as_output

    day = tmp_path / "day.itch"
    write_day(str(day), 20_000, 3, stocks=5)
    before = hashlib.sha256(day.read_bytes()).hexdigest()
    link = tmp_path / "link.itch"
    link.symlink_to(day)
    for out in (day, link, tmp_path / "." / "day.itch"):
        with pytest.raises(ValueError, match="is the input"):
            refuse_input_as_output(out, str(day))
        with pytest.raises(ValueError, match="is the input"):
            with output_file(out, inputs=(str(day),)):
                pass
    refuse_input_as_output(tmp_path / "other.parquet", str(day))   # not there yet: not the input
    assert hashlib.sha256(day.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.itch", "link.itch"]   # nothing left


def test_the_file_being_written_is_the_writers_own(tmp_path):
    """NAME.part a link to the input: the input was emptied and written over; two writers of
    one NAME shared NAME.part and left a mix of both (probe 30). Each now writes a file of its
    own, made new; a link there is left alone."""
    from itchflow.sinks.output import output_file

    victim = tmp_path / "input.itch"
    victim.write_bytes(b"precious")
    out = tmp_path / "out.bin"
    (tmp_path / "out.bin.part").symlink_to(victim)
    with output_file(out) as a, output_file(out) as b:
        assert a != b and not os.path.islink(a) and not os.path.islink(b)
        with open(a, "wb") as f:
            f.write(b"first")
        with open(b, "wb") as f:
            f.write(b"second")
    assert victim.read_bytes() == b"precious"
    assert out.read_bytes() == b"first"   # the outer block ends last: its whole file is the answer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.itch", "out.bin", "out.bin.part"]


def test_write_slowly_onto_its_source_is_refused(tmp_path):
    from click.testing import CliRunner

    from itchflow.cli import main
    from itchflow.sim.generator import write_day

    day = tmp_path / "day.itch"
    write_day(str(day), 20_000, 3, stocks=5)
    size = day.stat().st_size
    r = CliRunner().invoke(main, ["write-slowly", str(day), str(day)])
    assert r.exit_code != 0 and "is the input" in r.output, r.output
    assert day.stat().st_size == size


def test_trades_with_breaks_to_a_device_say_why_they_cannot(tmp_path):
    """trades --out /dev/null on a day with B messages failed saying only "/dev/null": the
    broken flags are written by reading the file back (probe 30)."""
    from itchflow import encode_message as enc
    from itchflow.sinks.events import events_to_parquet

    def msg(code, **f):
        return enc(code, stock_locate=1, timestamp=f.pop("timestamp", 1), **f)

    day = (msg("R", stock=b"AAA") + msg("A", order_reference_number=1, buy_sell_indicator=b"S", shares=100, stock=b"AAA",
                                        price=10_000)
           + msg("E", order_reference_number=1, executed_shares=10, match_number=5) + msg("B", match_number=5))
    with pytest.raises(ValueError, match="/dev/null: the trades that B messages broke are flagged by reading"):
        events_to_parquet(np.frombuffer(day, np.uint8), "/dev/null", "trades")
    out = tmp_path / "t.parquet"
    rows, _ = events_to_parquet(np.frombuffer(day, np.uint8), str(out), "trades")
    assert rows == 2 and out.exists()   # a file: written, flags and all


def test_a_device_that_fails_a_write_is_named():
    """A device written in place (it cannot be renamed over) that fails a write said only
    "[Errno 28] No space left on device" (gen, --plot, trades to /dev/full: probe 30)."""
    with pytest.raises(OSError) as e:
        with output_file("/dev/full") as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x" * 8192)
    assert e.value.errno == errno.ENOSPC and e.value.filename == "/dev/full"
    r = CliRunner().invoke(main, ["gen", "/dev/full", "-n", "20000", "-q"])
    _names_a_full_disk(r, "/dev/full")
    # an input's error met while a device is written is the input's (it read "/dev/null: x.itch:
    # no such file": probe 33)
    r = CliRunner().invoke(main, ["bbo", "/nonexistent/x.itch", "-q", "--out", "/dev/null"])
    assert r.exit_code == 1 and "error: /nonexistent/x.itch: no such file" in r.output, r.output


def test_parquet_into_a_fifo_says_it_needs_a_file(tmp_path, day):
    """pyarrow's Parquet writer seeks; into a FIFO (or /dev/stdout on a pipe) it failed with
    "itchflow: error: lseek failed", naming nothing (probe 30)."""
    import threading

    fifo = tmp_path / "f.parquet"
    os.mkfifo(fifo)
    drained = threading.Thread(target=lambda: open(fifo, "rb").read(), daemon=True)   # a reader, as a pipe has
    drained.start()
    r = CliRunner().invoke(main, ["bbo", day, "-q", "--out", str(fifo)])
    assert r.exit_code == 1, r.output
    assert f"{fifo}: lseek failed" in r.output and "not to a pipe or FIFO" in r.output, r.output
    if drained.is_alive():   # the writer failed before opening it: let the reader go
        with open(fifo, "wb"):
            pass
    drained.join(10)


def test_a_name_too_long_only_with_its_part_suffix_says_so(tmp_path, day):
    """A 252-byte name is legal; only the file it is written under first is too long. The
    error said "File name too long: '<name>'" about a name the system accepts (probe 30)."""
    out = tmp_path / ("y" * 244 + ".parquet")
    r = CliRunner().invoke(main, ["bbo", day, "-q", "--out", str(out)])
    assert r.exit_code == 1, r.output
    assert "File name too long: it is written as NAME.<pid>-<random>.part" in r.output, r.output
    from itchflow.sinks.output import _LONGEST_PID

    keep = 255 - len(f".{_LONGEST_PID}-01234567.part")   # (room for any pid this system gives)
    assert len(_LONGEST_PID) >= len(str(os.getpid()))
    assert f"keep it to {keep}" in r.output and not out.exists()
    deep = tmp_path / "/".join(["d" * 200] * 21) / "x.parquet"   # the path too long, not the name
    r = CliRunner().invoke(main, ["bbo", day, "-q", "--out", str(deep)])
    assert r.exit_code != 0 and "keep it to" not in r.output, r.output


@pytest.mark.parametrize("command", [
    ["bars", "--every", "1s", "-s", "{sym}", "--out", "{ok}/b.parquet", "--plot", "{bad}/p.png"],
    ["auctions", "--out", "{ok}/au", "--plot", "{bad}/p.png"],
    ["bbo", "--out", "{bad}/b.parquet"],
    ["book", "-s", "{sym}", "--at", "10:00", "--plot", "{bad}/p.png"],
], ids=["bars-plot", "auctions-plot", "bbo-out", "book-plot"])
def test_an_output_folder_that_cannot_be_written_is_a_usage_error_before_the_work(tmp_path, day, command,
                                                                                  read_only_dir):
    """`bars --plot RO/p.png` wrote (and replaced) its tables, then failed on the picture, exit 1
    (probe 30): a read-only folder is refused with the usage errors, before any work."""
    ok = tmp_path / "ok"
    ok.mkdir()
    args = [a.format(sym=day_symbol(day), ok=ok, bad=read_only_dir) for a in command]
    r = CliRunner().invoke(main, [args[0], day, *args[1:]])
    assert r.exit_code == 2, r.output
    assert "cannot write a file there: Read-only file system" in r.output, r.output
    assert list(ok.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["bbo", "-q", "--out", "{bad}/b.parquet"], ["trades", "-q", "--out", "{bad}/t.parquet"],
    ["decode", "-q", "--out", "{bad}/d.csv"], ["book", "-s", "{sym}", "--at", "10:00", "--plot", "{bad}/p.png"],
    ["bars", "--every", "1min", "-q", "-o", "{ok}/b.parquet", "--plot", "{bad}/p.png"],
], ids=["bbo", "trades", "decode", "book-plot", "bars-plot"])
def test_an_output_into_a_missing_folder_is_a_usage_error_before_the_work(tmp_path, day, command):
    """A folder that is not there is refused as the options are read (exit 2), not after the
    whole day was read (the round's first fix relaxed it for every command: probe 35)."""
    ok = tmp_path / "ok"
    ok.mkdir()
    args = [a.format(sym=day_symbol(day), ok=ok, bad=tmp_path / "missing") for a in command]
    r = CliRunner().invoke(main, [args[0], day, *args[1:]])
    assert r.exit_code == 2 and "cannot write a file there: No such file or directory" in r.output, r.output
    assert list(ok.iterdir()) == []


def test_a_plot_into_a_folder_the_command_makes_is_written_and_a_missing_one_stops_before_the_tables(tmp_path,
                                                                                                     day):
    """The check above refused `auctions -o DIR --plot DIR/close.png`, whose DIR auctions makes
    (probe 33); a plot's folder that is missing still stops bars and auctions before their
    tables are written (exit 1), and a plot of a stock asked for by locate number draws it."""
    runner = CliRunner()
    new = tmp_path / "new"
    r = runner.invoke(main, ["auctions", day, "-o", str(new), "--plot", str(new / "close.png")])
    assert r.exit_code == 0 and (new / "close.png").exists() and (new / "crosses.parquet").exists(), r.output
    locate = str(itchflow.read(day, "R")["R"]["stock_locate"][0])
    for cmd, table, code in ((["bars", "--every", "1min", "-s", locate, "-o", str(tmp_path / "b.parquet"), "-q"],
                              tmp_path / "b.parquet", 2),   # a usage error, before any work
                             (["auctions", "-s", locate, "-o", str(tmp_path / "au")], tmp_path / "au", 1)):
        r = runner.invoke(main, [cmd[0], day, *cmd[1:], "--plot", str(tmp_path / "missing" / "p.png")])
        assert r.exit_code == code and "cannot write a file there: No such file" in r.output, r.output
        assert "missing/p.png" in r.output
        assert not table.exists()   # (auctions makes its OUT only once the plot's folder is known good)
        r = runner.invoke(main, [cmd[0], day, *cmd[1:], "--plot", str(tmp_path / f"{cmd[0]}.png")])
        assert r.exit_code == 0 and (tmp_path / f"{cmd[0]}.png").exists(), r.output


def test_a_file_name_without_its_format_is_a_usage_error_in_decode(tmp_path, day):
    """decode takes its format from the suffix; a name without one was refused with exit 1
    while every other wrong suffix is a usage error (exit 2; probe 30)."""
    for out in ("/dev/null", str(tmp_path / "x")):
        r = CliRunner().invoke(main, ["decode", day, "-q", "--out", out])
        assert r.exit_code == 2 and "the name's suffix gives the format: .parquet or .csv" in r.output, r.output


@pytest.mark.parametrize("command", [["stats"], ["bbo", "--out", "{tmp}/b.parquet", "-q"],
                                     ["run", "-q", "--source"], ["write-slowly", "{tmp}/dst.itch"]])
def test_a_link_that_leads_nowhere_says_so(tmp_path, command):
    """A loop of symbolic links and a dangling link were "L1: no such file", as a mistyped name
    is (probe 30)."""
    (tmp_path / "L1").symlink_to(tmp_path / "L2")
    (tmp_path / "L2").symlink_to(tmp_path / "L1")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone.itch")
    for name, why in (("L1", "a loop of symbolic links"), ("dangling", "a symbolic link to")):
        args = [a.format(tmp=tmp_path) for a in command]
        at = 1 if command[0] != "run" else len(args)
        args.insert(at, str(tmp_path / name))
        r = CliRunner().invoke(main, args)
        assert r.exit_code != 0 and f"{tmp_path / name}: {why}" in r.output, (args, r.output)


def test_a_live_capture_kept_where_name_part_cannot_be_taken_stays_in_its_own_part(tmp_path):
    """Ctrl-C keeps what a live capture got as NAME.part; when that name cannot be taken (a folder
    there), it stays in the capture's own part and that path is returned, not a traceback
    (probe 50)."""
    from itchflow.sinks.output import StreamOutput

    out = tmp_path / "day.itch"
    (tmp_path / "day.itch.part").mkdir()
    s = StreamOutput(out)
    s.file.write(b"\x00\x01A")
    kept = s.keep_part()
    assert kept != str(tmp_path / "day.itch.part") and open(kept, "rb").read() == b"\x00\x01A"
    other = StreamOutput(tmp_path / "b.itch")
    other.file.write(b"\x00\x01B")
    assert other.keep_part() == str(tmp_path / "b.itch.part")
    assert (tmp_path / "b.itch.part").read_bytes() == b"\x00\x01B" and not list(tmp_path.glob("b.itch.*.part"))
