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
    import itchflow.cli.research  # noqa: F401
    import itchflow.cli.run  # noqa: F401
    import itchflow.cli.tail  # noqa: F401

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("args, option", [
    (["snapshots", "DAY", "--symbols", "", "--at", "10:00", "-o", "OUT"], "--symbols"),
    (["snapshots", "DAY", "--symbols", " , ", "--at", "10:00", "-o", "OUT"], "--symbols"),
    (["snapshots", "DAY", "--symbols", "AAA", "--at", "", "-o", "OUT"], "--at"),
    (["run", "-s", "DAY", "--heartbeat-timeout", "99999999999999999999999"], "--heartbeat-timeout"),
    (["write-slowly", "DAY", "OUT", "--piece-bytes", "0"], "--piece-bytes"),
    (["write-slowly", "DAY", "OUT", "--seed", "-1"], "--seed"),
    (["gen", "OUT", "-n", "20k", "--seed", "-1"], "--seed"),
    (["batch", "DAY", "--job", "stats", "-o", "OUT", "--workers", "-1"], "--workers"),      # hung
    (["batch", "DAY", "--job", "stats", "-o", "OUT", "--workers", "99999"], "--workers"),   # hung
    (["batch", "DAY", "--job", "stats", "-o", ""], "--out"),                               # wrote to the cwd
])
def test_bad_values_are_usage_errors(tmp_path, day, args, option):
    out = tmp_path / "out"
    r = _cli([day if a == "DAY" else out if a == "OUT" else a for a in args])
    assert r.exit_code == 2 and option in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not out.exists()


@pytest.mark.parametrize("every", ["99999999999999999999999", "25h", "0s", "9" * 400])
def test_a_bar_is_positive_and_at_most_a_day(tmp_path, day, every):
    out = tmp_path / "bars.parquet"
    r = _cli(["bars", day, "--every", every, "-o", out])
    assert r.exit_code == 1 and "at most a day" in r.output and "Traceback" not in r.output, r.output
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
