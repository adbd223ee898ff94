"""Every option that takes a count of messages, records, packets or orders reads 300k, 10M, 1.5e6.

The README's commands write counts that way (`itchflow bench book-threads --messages 10M`); an
option declared as a plain int rejected them with "'10M' is not a valid integer"."""

from __future__ import annotations

import click
import pytest

from itchflow.cli import main
from itchflow.cli.params import Count

# Option names (click's parameter names) that count things.
COUNT_NAMES = {"messages", "records", "packets", "peer_messages", "cpp_messages", "meatpy_messages",
               "memory_orders", "latency_records", "peer_records", "net_messages", "live_orders",
               "ref_span", "fullday_messages", "fullday_live_orders", "steps"}


def _commands(cmd, path=()):
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


def _count_options():
    return [(path, p) for path, cmd in _commands(main) for p in cmd.params
            if isinstance(p, click.Option) and p.name in COUNT_NAMES]


def test_count_options_exist_in_the_benchmarks_the_readme_shows():
    paths = {path for path, _ in _count_options()}
    assert {"bench book", "bench book-threads", "bench decode", "bench batch", "bench ring", "gen"} <= paths


@pytest.mark.parametrize("path,option", _count_options(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_every_count_option_reads_suffixes(path, option):
    assert isinstance(option.type, Count), f"{path} --{option.name} is a {option.type.name}"
    assert option.type.convert("10M", option, None) == 10_000_000
    assert option.type.convert("300k", option, None) == 300_000
    assert option.type.convert("1.5e6", option, None) == 1_500_000
    assert option.type.convert(1234, option, None) == 1234
    if isinstance(option.default, (int, str)) and not option.required:  # click marks no default with a sentinel
        assert option.type.convert(option.default, option, None) > 0


def test_book_threads_parses_the_readme_command():
    cmd = main.commands["bench"].commands["book-threads"]
    ctx = cmd.make_context("book-threads", ["--messages", "10M", "--threads", "2", "--repeat", "5"])
    assert ctx.params["messages"] == 10_000_000


@pytest.mark.parametrize("text", ["ten", "1.5", "-3k", "2x", "nan", "inf", "1e400"])
def test_a_count_that_is_not_one_fails_clearly(text):
    cmd = main.commands["bench"].commands["decode"]
    with pytest.raises(click.BadParameter, match="count"):
        cmd.make_context("decode", ["--messages", text])


def test_a_count_is_exact_however_large():
    assert Count().convert("99999999999999999999999", None, None) == 99999999999999999999999
    assert Count().convert("12345678901234567k", None, None) == 12345678901234567000


@pytest.mark.parametrize("count", ["99999999999999999999999", "1e12"])
def test_gen_refuses_a_day_no_machine_could_hold(tmp_path, count):
    """gen --messages 1e12 sized its order arrays by the count (1.8 GB resident after 12 s and
    growing, nothing written); 1e23 failed with numpy's 'Maximum allowed dimension exceeded'."""
    from click.testing import CliRunner

    out = tmp_path / "day.itch"
    r = CliRunner().invoke(main, ["gen", "--messages", count, str(out)])
    assert r.exit_code == 2 and "a generated day has 1 to 10,000,000,000 messages" in r.output
    assert not out.exists()


def test_gen_refuses_a_day_larger_than_the_free_space(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    from click.testing import CliRunner

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 50_000_000, 50_000_000))
    out = tmp_path / "day.itch"
    r = CliRunner().invoke(main, ["gen", "--messages", "2M", str(out)])   # about 62 MB
    assert r.exit_code == 2 and "take about 62 MB" in r.output and "50 MB free" in r.output
    assert not out.exists()
    r = CliRunner().invoke(main, ["gen", "--messages", "1M", str(out)])   # about 31 MB: fits
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 25_000_000
