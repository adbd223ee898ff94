"""``itchflow compare`` options: every value the run could not use is a usage error naming its
option before any work starts, and a --plot folder that fails after the run still leaves the
report printed. The run itself is replaced by a stand-in (what is tested is the command)."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

import itchflow.compare
from itchflow.cli import main
from itchflow.compare.row import Row
from itchflow.compare.run import CompareReport
from itchflow.sim.generator import minimum_messages


@pytest.fixture
def runs(monkeypatch):
    """run_compare replaced: records its arguments, returns a one-row report at once."""
    calls = []

    def fake_run_compare(**kw):
        calls.append(kw)
        row = Row("inprocess", messages=kw["messages"], packets=10, seconds=0.01, cpu_ns=1_000_000, books_equal=True)
        return CompareReport(machine={"cpu": "test"}, terms={"messages": kw["messages"]}, rows=[row])

    monkeypatch.setattr(itchflow.compare, "run_compare", fake_run_compare)
    return calls


def _compare(*args):
    return CliRunner().invoke(main, ["compare", "--no-perf", *map(str, args)])


@pytest.mark.parametrize("args, option", [
    (["--paths", ","], "--paths"),            # named nothing: ran every row
    (["--paths", " , "], "--paths"),
    (["--paths", ""], "--paths"),
    (["--paths", "inprocess,nosuch"], "--paths"),
    (["--messages", "0"], "--messages"),      # exit 1 after "generating 0 messages", option not named
    (["--messages", "5"], "--messages"),
    (["--messages", minimum_messages(100) - 1], "--messages"),     # the default 100 stocks need more
    (["--stocks", "10", "--messages", minimum_messages(10) - 1], "--messages"),
    (["--stocks", "0"], "--stocks"),          # found after the default 1M-message day was being made
    (["--stocks", "20001"], "--stocks"),
])
def test_bad_values_are_usage_errors_before_any_work(runs, args, option):
    r = _compare(*args)
    assert r.exit_code == 2 and option in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "generating" not in r.output and runs == []


@pytest.mark.parametrize("args, messages, stocks", [
    ([], 1_000_000, 100),
    (["--messages", minimum_messages(100)], minimum_messages(100), 100),
    (["--stocks", "1", "--messages", minimum_messages(1)], minimum_messages(1), 1),
])
def test_the_smallest_day_the_generator_makes_is_accepted(runs, args, messages, stocks):
    r = _compare("--paths", "inprocess", *args)
    assert r.exit_code == 0, r.output
    assert [(c["messages"], c["stocks"], c["paths"]) for c in runs] == [(messages, stocks, ["inprocess"])]


@pytest.mark.parametrize("under", ["a file", "a file/and/deeper"])
def test_a_plot_folder_that_cannot_be_made_is_refused_before_the_run(runs, tmp_path, under):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the bench extra)")
    (tmp_path / "a file").write_text("not a folder")
    r = _compare("--paths", "inprocess", "--plot", tmp_path / under / "pictures")
    assert r.exit_code == 2 and "--plot" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert runs == []
    assert sorted(os.listdir(tmp_path)) == ["a file"]


def test_a_plot_folder_that_can_be_made_is_left_for_the_drawing(runs, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the bench extra)")
    import itchflow.compare.pictures as pictures

    drawn = []
    monkeypatch.setattr(pictures, "draw_all", lambda report, folder: drawn.append(folder) or [f"{folder}/x.png"])
    folder = tmp_path / "new" / "pictures"
    r = _compare("--paths", "inprocess", "--plot", folder)
    assert r.exit_code == 0, r.output
    assert len(runs) == 1 and drawn == [str(folder)]
    assert list(tmp_path.iterdir()) == []    # the check made and removed it; drawing makes it


@pytest.mark.parametrize("as_json", [False, True])
def test_pictures_that_fail_after_the_run_come_after_the_report(runs, tmp_path, monkeypatch, as_json):
    """The folder passed the check, then drawing failed (the disk filled, the folder went): the
    report is printed all the same, then one error line; exit 1, no traceback."""
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the bench extra)")
    import itchflow.compare.pictures as pictures

    def no_room(report, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pictures, "draw_all", no_room)
    r = _compare("--paths", "inprocess", "--plot", tmp_path, *(["--json"] if as_json else []))
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    if as_json:
        assert json.loads(r.stdout)["rows"][0]["key"] == "inprocess"
    else:
        assert "itchflow compare" in r.stdout and "in-process" in r.stdout
    assert "--plot" in r.stderr and "No space left on device" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_net_veth_that_cannot_be_had_is_a_usage_error_before_the_day(runs, monkeypatch):
    """--net veth without root generated the day, then ended in a traceback (NotRun was no
    error the command caught: probe 27). It is refused first, naming the option and why."""
    import itchflow.compare.net as net

    monkeypatch.setattr(net, "veth_unavailable", lambda: "network namespaces need root (run as root for the veth rows)")
    r = _compare("--net", "veth", "--paths", "inprocess,udp_recv")
    assert r.exit_code == 2 and "--net" in r.output and "need root" in r.output, r.output
    assert "Traceback" not in r.output and "generating" not in r.output and runs == []
    # rows that need no network: --net is not asked for anything, the run goes on
    assert _compare("--net", "veth", "--paths", "inprocess,ring_threads").exit_code == 0
    assert issubclass(net.NotRun, RuntimeError)   # the command's errors: a caller asking outright


@pytest.mark.parametrize("status, books_equal, code", [
    ("failed", None, 1), ("ok", False, 1), ("not run", None, 0), ("ok", True, 0)])
def test_a_failed_row_or_unequal_books_is_the_exit_status(monkeypatch, status, books_equal, code):
    """A row whose child was killed failed, and compare still exited 0 (probe 27): a script
    could not tell. A row that could not run here is no failure."""
    def fake_run_compare(**kw):
        base = Row("inprocess", messages=kw["messages"], packets=0, seconds=0.01, cpu_ns=1_000_000, books_equal=True)
        other = Row("ring_threads", status=status, reason="compare-x (pid 1) was killed by SIGKILL" if status != "ok"
                    else "", messages=kw["messages"], packets=3, seconds=0.01, cpu_ns=1_000_000,
                    books_equal=books_equal)
        return CompareReport(machine={"cpu": "test"}, terms={"messages": kw["messages"]}, rows=[base, other])

    monkeypatch.setattr(itchflow.compare, "run_compare", fake_run_compare)
    r = _compare("--paths", "ring_threads")
    assert r.exit_code == code, r.output
    if code:
        assert "ring_threads" in r.output.splitlines()[-1]


def test_af_xdp_on_loopback_says_why_it_did_not_run(monkeypatch):
    """--net loopback: the reason ended in an empty "...between namespaces only: " (probe 27)."""
    import itchflow.compare.net as net

    monkeypatch.setattr(net.os, "geteuid", lambda: 0)
    monkeypatch.setattr(net, "xdp_module", lambda: object())
    why = net._why_not("af_xdp", net.open_lab("loopback"))
    assert why.endswith("between namespaces only: --net loopback was asked for"), why


def test_the_packet_columns_say_what_a_packet_is():
    """The in-process row has no packets (it showed 0.2 k pkt/s and 3 syscalls a "packet": the
    whole file); the ring and tail rows' packets are records and pieces, not datagrams."""
    import io

    from rich.console import Console

    from itchflow.compare.render import print_report

    rows = [Row("inprocess", messages=100, seconds=0.01, cpu_ns=1_000_000, books_equal=True),
            Row("ring_threads", messages=100, packets=2, seconds=0.01, cpu_ns=1_000_000, books_equal=True),
            Row("udp_recv", messages=100, packets=9, seconds=0.01, cpu_ns=1_000_000, books_equal=True)]
    out = io.StringIO()
    print_report(CompareReport(machine={"cpu": "test"}, terms={"messages": 100}, rows=rows),
                 Console(file=out, width=400))
    text = out.getvalue()
    line = next(x for x in text.splitlines() if x.startswith("in-process"))
    cells = [c.strip() for c in line.split("│")]
    assert cells[2] == "-" and cells[6] == "-", line      # k pkt/s, syscalls/pkt
    assert "pkt: a ring record for ring_threads; a datagram for udp_recv" in text
    # one kind of row whose packet is no datagram is said too (probe 28)
    out = io.StringIO()
    print_report(CompareReport(machine={"cpu": "test"}, terms={"messages": 100}, rows=[rows[0], Row(
        "tail", messages=100, packets=2, seconds=0.01, cpu_ns=1_000_000, books_equal=True)]),
        Console(file=out, width=400))
    assert "pkt: a file piece for tail" in out.getvalue()


def test_publish_payload_bound_is_the_feeds():
    from itchflow.cli.net import MIN_PAYLOAD
    from itchflow.protocol.mold.feed import MIN_PAYLOAD as FEED_MIN, MoldFeed

    assert MIN_PAYLOAD == FEED_MIN
    r = CliRunner().invoke(main, ["publish", "--payload", str(MIN_PAYLOAD - 1), "x.itch"])
    assert r.exit_code == 2 and f"{MIN_PAYLOAD}<=x" in r.output, r.output
    import numpy as np

    with pytest.raises(ValueError, match=f"at least {MIN_PAYLOAD}"):
        MoldFeed(np.zeros(0, np.uint8), b"S", MIN_PAYLOAD - 1)
    MoldFeed(np.zeros(0, np.uint8), b"S", MIN_PAYLOAD)
