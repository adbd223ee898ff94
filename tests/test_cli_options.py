"""Option values a careless user types (empty, negative, NaN, huge, a plot name without an
image suffix): each is refused with a usage error naming the option, or handled, and never
a traceback. Found by running every option of the data commands with such values."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from itchflow.cli import main


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    from itchflow.sim.generator import write_day

    path = tmp_path_factory.mktemp("day") / "day.itch"
    write_day(path, 20_000, seed=3)
    return path


def _cli(args):
    import itchflow.cli.batch  # noqa: F401  (registers the commands used here)
    import itchflow.cli.book  # noqa: F401
    import itchflow.cli.decode  # noqa: F401
    import itchflow.cli.gen  # noqa: F401
    import itchflow.cli.net  # noqa: F401
    import itchflow.cli.ring  # noqa: F401
    import itchflow.cli.research  # noqa: F401
    import itchflow.cli.run  # noqa: F401
    import itchflow.cli.tail  # noqa: F401

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("args, option", [
    (["snapshots", "DAY", "--symbols", "", "--at", "10:00", "-o", "OUT"], "--symbols"),
    (["snapshots", "DAY", "--symbols", " , ", "--at", "10:00", "-o", "OUT"], "--symbols"),
    (["snapshots", "DAY", "--symbols", "AAA", "--at", "", "-o", "OUT"], "--at"),
    (["run", "-s", "DAY", "--heartbeat-timeout", "99999999999999999999999"], "--heartbeat-timeout"),
    (["run", "-s", "DAY", "--top", "-1"], "--top"),                          # showed no stocks, exit 0
    (["write-slowly", "DAY", "OUT", "--piece-bytes", "0"], "--piece-bytes"),
    (["write-slowly", "DAY", "OUT", "--seed", "-1"], "--seed"),
    (["gen", "OUT", "-n", "20k", "--seed", "-1"], "--seed"),
    (["batch", "DAY", "--job", "stats", "-o", "OUT", "--workers", "-1"], "--workers"),      # hung
    (["batch", "DAY", "--job", "stats", "-o", "OUT", "--workers", "99999"], "--workers"),   # hung
    (["batch", "DAY", "--job", "stats", "-o", ""], "--out"),                               # wrote to the cwd
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--rate", "nan"], "--rate"),      # sent flat out, exit 0
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--rate", "1e-9"], "--rate"),     # the same
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--rate", "inf"], "--rate"),
    (["write-slowly", "DAY", "OUT", "--rate", "1e-300"], "--rate"),                # OverflowError traceback
    # Endpoints, CPUs and times: each was an error that did not name its option, or was taken.
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--session", "ELEVENCHARS"], "--session"),  # exit 1, unnamed
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--session", "A B"], "--session"),
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--interface", "bogus"], "--interface"),  # inet_aton error
    (["listen", "--mold", "127.0.0.1:0", "--interface", "999.1.1.1"], "--interface"),     # ignored
    (["soup", "serve", "DAY", "--port", "0", "--host", "nosuch.invalid", "--user", "u", "--password", "p"],
     "--host"),                                                                  # [Errno -2], unnamed
    (["publish", "DAY", "--mold", "127.0.0.1:0"], "--mold"),                     # [Errno 22] Invalid argument
    (["publish", "DAY", "--mold", "::1:5000"], "--mold"),                        # [Errno -9] Address family
    (["publish", "DAY", "--mold", "[::1]:5000"], "--mold"),                      # [Errno -2] Name or service
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--line-b", "127.0.0.1:0"], "--line-b"),
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--rerequest", "fd:x"], "--rerequest"),  # ValueError
    (["listen", "--mold", "127.0.0.1:0", "--cpu", "99"], "--cpu"),               # OSError after binding
    (["listen", "--mold", "127.0.0.1:0", "--rerequest", "127.0.0.1:0"], "--rerequest"),
    (["soup", "fetch", "127.0.0.1:0", "--user", "u", "--password", "p", "--out", "OUT"], "HOST:PORT"),
    (["bench", "ring", "--pin", "0,99"], "--pin"),                               # OSError mid-run
    (["book", "DAY", "-s", "AAA", "--at", ""], "--at"),                          # "" was "the end of the day"
    (["book", "DAY", "-s", "AAA", "--at", "\u0661\u0660:\u0660\u0660"], "--at"),  # Arabic-Indic digits: 10:00
    (["book", "DAY", "-s", "AAA", "--at", "25:00"], "--at"),                     # "Invalid value: time: ..."
    (["snapshots", "DAY", "--symbols", "AAA", "--at", "10:00,x", "-o", "OUT"], "--at"),
    (["snapshots", "DAY", "--symbols", "AAA", "--at", " , ", "-o", "OUT"], "--at"),
    (["lobster", "DAY", "-s", "AAA", "--start", "9:3x", "-o", "OUT"], "--start"),
    (["bars", "DAY", "--end", "26:00", "-o", "OUT"], "--end"),
    (["batch", "DAY", "--job", "lobster", "-s", "AAA", "--end", "x", "-o", "OUT"], "--end"),
    (["batch", "DAY", "--job", "snapshots", "--at", "99:00", "-o", "OUT"], "--at"),
    # probe 52: each was exit 1 (a failure of the work), or read '' as the current folder
    (["stats", ""], "PATH"),
    (["trades", "", "-o", "OUT"], "PATH"),
    (["run", "-s", ""], "--source"),
    (["run", "-s", "DIR"], "--source"),
    (["decode", "DAY", "-t", "", "-o", "OUT.csv"], "--types"),
    (["decode", "DAY", "-t", "Z", "-o", "OUT.csv"], "--types"),
    (["batch", "DAY", "--job", "decode", "-t", "Z", "-o", "OUT"], "--types"),
    (["batch", "DAY", "--job", "snapshots", "--every", "60", "-o", "OUT"], "--symbols"),
    (["batch", "DAY", "--job", "lobster", "-o", "OUT"], "--symbols"),
])
def test_bad_values_are_usage_errors(tmp_path, day, args, option):
    out = tmp_path / "out"
    r = _cli([day if a == "DAY" else out if a == "OUT" else f"{out}.csv" if a == "OUT.csv" else
              tmp_path if a == "DIR" else a for a in args])
    assert r.exit_code == 2 and option in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not out.exists()


@pytest.mark.parametrize("args, option", [
    # a day too small for its stocks: was the generator's ValueError, as a traceback
    (["bench", "book", "--messages", "1000"], "--messages"),
    (["bench", "book-threads", "--messages", "1000"], "--messages"),
    (["bench", "decode", "--messages", "10"], "--messages"),
    (["bench", "batch", "--messages", "10"], "--messages"),
    (["bench", "pipeline", "--messages", "10"], "--messages"),
    (["bench", "gen", "--messages", "10"], "--messages"),
    (["bench", "capture", "--messages", "10"], "--messages"),
    # no runs to take the best of (an AttributeError or TypeError, or inf and nan printed)
    (["bench", "book", "--repeat", "0"], "--repeat"),
    (["bench", "book-threads", "--repeat", "0"], "--repeat"),
    (["bench", "revision", "--rev", "HEAD", "--repeat", "0"], "--repeat"),
    (["bench", "decode", "--repeat", "0"], "--repeat"),
    (["bench", "pipeline", "--repeat", "0"], "--repeat"),
    (["bench", "capture", "--repeat", "0"], "--repeat"),
    (["bench", "capture", "--packet-bytes", "71"], "--packet-bytes"),    # no room for the longest message
    (["bench", "capture", "--packet-bytes", "70000"], "--packet-bytes"),  # more than a UDP payload
    (["bench", "cache", "--repeat", "-1"], "--repeat"),
    (["bench", "cache", "--steps", "0"], "--steps"),                 # a ZeroDivisionError
    (["bench", "ring", "--repeats", "0"], "--repeats"),
    (["bench", "net", "--rounds", "0"], "--rounds"),
    (["bench", "net", "--packets", "0"], "--packets"),               # a ZeroDivisionError
    (["bench", "batch", "--days", "0"], "--days"),                   # "no input days", a traceback
    (["bench", "batch", "--workers", "0"], "--workers"),
    # out of what the thing measured can be
    (["bench", "book", "--stocks", "0"], "--stocks"),
    (["bench", "book-threads", "--threads", "0"], "--threads"),
    (["bench", "book-threads", "--shards", "300"], "--shards"),
    (["bench", "net", "--size", "0"], "--size"),                     # "negative count"
    (["bench", "net", "--size", "70000"], "--size"),                 # "Message too long" mid-run
    (["bench", "net", "--veth", "--size", "2000"], "--size"),        # more than one frame of the veth pair
    (["bench", "net", "--batch", "0"], "--batch"),
    (["bench", "ring", "--capacity", "5"], "--capacity"),            # the ring's ValueError
    (["bench", "ring", "--rate", "0"], "--rate"),
    (["bench", "pipeline", "--mold-pps", "0"], "--mold-pps"),
    (["publish", "DAY", "--mold", "127.0.0.1:9", "--payload", "100000"], "--payload"),   # "Message too long" on send
])
def test_bench_bad_values_are_usage_errors(tmp_path, monkeypatch, day, args, option):
    """Every benchmark refuses a count it cannot use before it runs anything, naming the option."""
    monkeypatch.setenv("ITCHFLOW_BENCH_DIR", str(tmp_path))
    r = _cli([day if a == "DAY" else a for a in args])
    assert r.exit_code == 2 and option in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.output and not list(tmp_path.iterdir())   # nothing generated


@pytest.mark.parametrize("every", ["99999999999999999999999", "25h", "0s", "9" * 400])
def test_a_bar_is_positive_and_at_most_a_day(tmp_path, day, every):
    out = tmp_path / "bars.parquet"
    r = _cli(["bars", day, "--every", every, "-o", out])
    assert r.exit_code == 2 and "--every" in r.output and "at most a day" in r.output, r.output
    assert not out.exists()


def test_a_plot_name_without_an_image_suffix_is_a_png(tmp_path, day):
    """matplotlib took the format from the '.part' file written first ("Format 'part' is not
    supported"); a name with no suffix is now a PNG, one with a wrong suffix a clear error."""
    syms = _symbol(day)
    plot = tmp_path / "depth"
    r = _cli(["book", day, "--symbol", syms, "--plot", plot])
    assert r.exit_code == 0, r.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "depth.itch"
    r = _cli(["book", day, "--symbol", syms, "--plot", bad])
    assert r.exit_code == 2 and ".itch is not an image format" in r.output and not bad.exists()


def _symbol(day) -> str:
    from itchflow import Books

    books = Books()
    books.replay(str(day))
    return sorted(books.symbols)[0]


def test_run_idle_timeout_0_still_waits_for_the_end_event():
    """--idle-timeout 0 is documented as 'wait for the end event': the finite-number check must
    not refuse it (it did, for one commit)."""
    import itchflow.cli.run  # noqa: F401

    cmd = main.commands["run"]
    assert cmd.make_context("run", ["-s", "x.itch", "--idle-timeout", "0"]).params["idle_timeout"] == 0
    for bad in ("nan", "-1", "1e12"):
        with pytest.raises(click.BadParameter):
            cmd.make_context("run", ["-s", "x.itch", "--idle-timeout", bad])


def test_write_slowly_names_the_file_it_cannot_write(tmp_path, day):
    """A missing directory or a full disk was a traceback."""
    r = _cli(["write-slowly", day, tmp_path / "no" / "dir" / "live.itch"])
    assert r.exit_code == 1 and "No such file or directory" in r.output and "live.itch" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    r = _cli(["write-slowly", day, "/dev/full", "--rate", "0"])
    assert r.exit_code == 1 and "No space left on device" in r.output and "/dev/full" in r.output, r.output


def test_an_endless_stream_is_framed_as_it_is_read_by_publish_and_soup_serve():
    """/dev/zero was read until the machine ran out of memory (then a MemoryError traceback)."""
    from itchflow.cli.net import load_binaryfile
    from itchflow.errors import ITCHFormatError

    with pytest.raises(ITCHFormatError, match=r"/dev/zero.*offset 0|offset 0.*/dev/zero"):
        load_binaryfile("/dev/zero")


def test_ring_rm_skips_a_directory_named_like_a_ring(tmp_path):
    """A directory /dev/shm/X.ring made `ring rm --stale` (every ring) a traceback."""
    import os
    import uuid

    d = f"/dev/shm/itchflow-test-{uuid.uuid4().hex[:8]}.ring"
    os.mkdir(d)
    try:
        r = _cli(["ring", "rm", "--stale"])
        assert r.exit_code == 0 and r.exception is None, r.output
        r = _cli(["ring", "rm", "--force", d])
        assert r.exit_code == 1 and "not a ring (a directory)" in r.output, r.output
        assert os.path.isdir(d)
    finally:
        os.rmdir(d)


@pytest.mark.parametrize("command, name", [(["trades"], "t.csv"), (["bbo"], "b.json"), (["bars"], "x.txt"),
                                           (["snapshots", "-s", "AAA", "--at", "10:00"], "s.csv")])
def test_an_output_named_for_another_format_is_refused(tmp_path, day, command, name):
    """trades -o t.csv wrote Parquet into t.csv (so did bbo, snapshots, and bars into x.txt)."""
    out = tmp_path / name
    r = _cli([command[0], day, "-o", out, *command[1:]])
    assert r.exit_code == 2 and "--out" in r.output and "this command writes .parquet" in r.output, r.output
    assert not out.exists()


def test_depth_0_is_every_level_in_snapshots_as_in_book(tmp_path, day):
    """snapshots -n 0 wrote 0 rows (book -n 0 is every level); -n -5 passed as every level."""
    import json

    import pyarrow.parquet as pq

    import itchflow

    at = "10:30"
    books = itchflow.Books().replay(day, stop_after_ns=37_800_000_000_000)
    sym = max(books.symbols, key=lambda s: sum(len(side) for side in books.depth(s)))   # the deepest then
    r = _cli(["snapshots", day, "-s", sym, "--at", at, "-n", "0", "-o", tmp_path / "s.parquet"])
    assert r.exit_code == 0, r.output
    rows = pq.read_table(tmp_path / "s.parquet").to_pydict()
    book = json.loads(_cli(["book", day, "-s", sym, "--at", at, "-n", "0", "--json"]).stdout)
    assert len(rows["price"]) == len(book["bids"]) + len(book["asks"]) > 5
    for command in (["book", day, "-s", sym], ["snapshots", day, "-s", sym, "--at", "12:00", "-o", tmp_path / "x"]):
        r = _cli([*command, "-n", "-5"])
        assert r.exit_code == 2 and "--depth" in r.output, r.output
    r = _cli(["snapshots", day, "-s", sym, "--every", "86400", "-o", tmp_path / "e.parquet"])
    assert r.exit_code == 1 and "no snapshot time falls within the day" in r.output, r.output
    assert not (tmp_path / "e.parquet").exists()


@pytest.mark.parametrize("args, option", [
    (["--user", ""], "--user"),                  # a blank user name was taken as a credential
    (["--user", "bob smith"], "--user"),
    (["--user", "bob", "--password", "é"], "--password"),
    (["--user", "bob", "--cut-after", "-1"], "--cut-after"),     # taken, and never cut
    (["--user", "bob", "--stall-after", "-1"], "--stall-after"),
    (["--user", "bobbobbob"], "--user"),          # an error that did not name the option
])
def test_soup_serve_login_fields_and_faults_are_checked(day, args, option):
    full = ["soup", "serve", day, "--port", "0", "--max-seconds", "1", "--password", "pw", *args]
    r = _cli(full)
    assert r.exit_code == 2 and option in r.output, r.output


@pytest.mark.parametrize("args, text", [
    (["--messages", "10"], "needs at least 40,000 messages"),     # was the gen command's traceback
    (["--stocks", "0"], "--stocks must be between 1 and 20,000"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
def test_demo_refuses_a_day_it_cannot_make(tmp_path, capsys, args, text):
    """make demo's own options are checked before anything is made: a usage error (exit 2)."""
    from itchflow.cli.demo import main as demo

    folder = tmp_path / "demo"
    with pytest.raises(SystemExit) as e:
        demo(["--dir", str(folder), *args])
    assert e.value.code == 2 and text in capsys.readouterr().err
    assert not folder.exists()


def test_the_cli_stock_range_is_the_generators():
    """cli.params.STOCKS repeats sim.generator.MAX_STOCKS (the CLI does not import the generator
    to start): the two must agree."""
    from itchflow.cli.params import STOCKS
    from itchflow.sim.generator import MAX_STOCKS

    assert (STOCKS.min, STOCKS.max) == (1, MAX_STOCKS)


def test_an_empty_name_is_no_file_in_the_api_too():
    """Probe 52: itchflow.stats('') read Path('') as the current folder, "'.': is a directory"."""
    import itchflow

    for call in (itchflow.stats, itchflow.read, lambda p: list(itchflow.scan(p))):
        with pytest.raises(FileNotFoundError, match="'' is not a file name"):
            call("")


@pytest.mark.parametrize("args", [
    ["lobster", "EMPTY", "-s", "AAPL", "--date", "2019-01-30", "-o", "OUT"],
    ["book", "EMPTY", "-s", "AAPL"],
    ["decode", "EMPTY", "-s", "AAPL", "-o", "OUT.csv"],
    ["snapshots", "EMPTY", "-s", "AAPL", "--at", "10:00", "-o", "OUT.parquet"],
])
def test_a_symbol_an_empty_day_does_not_list_names_the_file_and_says_it_is_empty(tmp_path, args):
    """Probe 52: "no stock directory (R) message for AAPL" of a 0-byte file (the usual sign
    of a failed download) named neither the file nor that it held nothing."""
    empty = tmp_path / "empty.itch"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    r = _cli([empty if a == "EMPTY" else out if a == "OUT" else f"{out}{a[3:]}" if a.startswith("OUT.") else a
              for a in args])
    assert r.exit_code == 1 and "AAPL" in r.output, r.output
    assert f"{empty}: " in r.output and "(the file is empty: 0 bytes)" in r.output, r.output
