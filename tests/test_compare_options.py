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
