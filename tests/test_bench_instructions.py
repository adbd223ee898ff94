"""The instruction-count benchmark's arithmetic and its refusals (running it takes valgrind
minutes: it is a benchmark, run by hand, not here)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from itchflow.bench import instructions as ins
from itchflow.cli import main


def test_per_message_is_the_difference_of_two_runs_over_the_messages_between():
    a = {"Ir": 1_000_000, "Bc": 50_000, "Bcm": 4_000, "Bim": 1_000, "messages": 1_000}
    b = {"Ir": 1_350_000, "Bc": 94_000, "Bcm": 6_000, "Bim": 1_500, "messages": 2_000}
    r = ins._per_message(a, b, "itchflow")
    assert r == {"messages": 1_000, "instructions": 350.0, "cond_branches": 44.0, "cond_mispredicts": 2.0,
                 "indirect_mispredicts": 0.5}


def test_per_message_refuses_a_day_shorter_than_asked():
    a = {"Ir": 10, "Bc": 1, "Bcm": 0, "Bim": 0, "messages": 500}
    with pytest.raises(RuntimeError, match="shorter"):
        ins._per_message(a, dict(a), "itchflow")


def test_a_count_that_is_not_positive_is_refused_not_printed():
    """Two runs whose set-up differed by more than a short window cost gave itchcpp -53.9
    instructions a message, and a ratio of -0.11x was printed."""
    a = {"Ir": 10_000_000, "Bc": 900_000, "Bcm": 4_000, "Bim": 1_000, "messages": 100_000}
    b = {"Ir": 8_900_000, "Bc": 880_000, "Bcm": 3_000, "Bim": 1_100, "messages": 120_000}
    with pytest.raises(RuntimeError, match="itchcpp: -55.0 instructions .* longer window"):
        ins._per_message(a, b, "itchcpp")


def test_a_window_shorter_than_the_minimum_is_refused(monkeypatch):
    monkeypatch.setattr(ins.shutil, "which", lambda name: "/usr/bin/valgrind")
    with pytest.raises(ValueError, match="at least 200,000 messages"):
        ins.run("day.itch", 100_000, 120_000)


def test_both_itchcpp_runs_copy_the_same_bytes_and_python_hashes_alike(tmp_path):
    """The runs' set-up must be the same for it to cancel: each itchcpp run copies its own
    prefix and the other's, and string hashing is not seeded at random."""
    import numpy as np
    import re

    from itchflow.decode.encoder import encode_message

    day = tmp_path / "day.itch"
    day.write_bytes(b"".join(encode_message("I", timestamp=i) for i in range(3_000)))
    copied = {}
    for n, other in ((1_000, 2_500), (2_500, 1_000)):
        code = ins._ITCHCPP.format(path=str(day), messages=n, other=other)
        code = code.replace("import itchcpp.book as cb", "")
        code = re.sub(r"bm = cb.BookManager\(\)\nbm.process_stream\(data\)", "", code)
        scope: dict = {"np": np}
        exec(code.replace("print(min(n, count))", ""), scope)
        copied[n] = (scope["cut"], scope["ocut"])
    assert copied[1_000] == copied[2_500][::-1] and copied[1_000][0] < copied[1_000][1]
    assert ins._env("x")["PYTHONHASHSEED"] == "0"


def test_without_valgrind_it_says_what_to_install(monkeypatch):
    monkeypatch.setattr(ins.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="valgrind"):
        ins.run("day.itch", 1, 2)


@pytest.mark.parametrize("start,stop", [(5, 5), (6, 5), (-1, 3)])
def test_a_range_that_counts_nothing_is_refused(monkeypatch, start, stop):
    monkeypatch.setattr(ins.shutil, "which", lambda name: "/usr/bin/valgrind")
    with pytest.raises(ValueError, match="start"):
        ins.run("day.itch", start, stop)


def test_the_command_refuses_a_stop_past_the_day_before_making_one(monkeypatch):
    import itchflow.bench.book as bb

    made = []
    monkeypatch.setattr(bb, "ensure_shape_day", lambda params: made.append(params))
    res = CliRunner().invoke(main, ["bench", "instructions", "--messages", "1000", "--stop", "2k"])
    assert res.exit_code == 2 and "past the day" in res.output
    res = CliRunner().invoke(main, ["bench", "instructions", "--messages", "1M", "--start", "100k", "--stop", "120k"])
    assert res.exit_code == 2 and "at least 200,000 messages" in res.output
    assert made == []


def test_totals_are_read_from_callgrinds_summary(tmp_path, monkeypatch):
    # what _counted parses: the events line and the summary line of a callgrind output file
    out = tmp_path / "t.callgrind"

    class Done:
        returncode = 0
        stdout = "12345\n"
        stderr = ""

    def fake_run(cmd, **kw):
        out.write_text("# callgrind format\nevents: Ir Bc Bcm Bi Bim\nfn=x\n0x1 1 2 3 4 5\n"
                       "summary: 900 80 7 6 5\n")
        return Done()

    monkeypatch.setattr(ins.subprocess, "run", fake_run)
    t = ins._counted("pass", {}, tmp_path, "t", 10)
    assert t == {"Ir": 900, "Bc": 80, "Bcm": 7, "Bi": 6, "Bim": 5, "messages": 12345}
