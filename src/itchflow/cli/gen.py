"""``itchflow gen``: write a realistic synthetic ITCH 5.0 trading day."""

from __future__ import annotations

import os
import sys
import time

import click

from itchflow.cli import bench, main

_SUFFIX = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}


class Count(click.ParamType):
    """An integer that may be written 300k, 50M, 1.5e6 or 100_000_000."""

    name = "count"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().replace("_", "").replace(",", "")
        mult = 1
        if text and text[-1] in _SUFFIX:
            mult, text = _SUFFIX[text[-1]], text[:-1]
        try:
            number = float(text) * mult
        except ValueError:
            self.fail(f"{value!r} is not a count (e.g. 300k, 50M, 1e6)", param, ctx)
        if number != int(number) or number < 0:
            self.fail(f"{value!r} is not a whole non-negative count", param, ctx)
        return int(number)


def _progress(total: int, quiet: bool):
    """A rich bar over messages (position, rate, ETA) on stderr, or nothing."""
    from rich.console import Console

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return None, (lambda messages, nbytes: None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]gen"), BarColumn(),
                   TextColumn("{task.completed:,.0f}/{task.total:,.0f} msgs"),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=console, transient=True)
    task = bar.add_task("gen", total=total, rate="")
    t0 = time.perf_counter()

    def update(messages: int, nbytes: int) -> None:
        dt = max(time.perf_counter() - t0, 1e-9)
        bar.update(task, completed=messages,
                   rate=f"{messages / dt / 1e6:,.2f} M msg/s  {nbytes / 1e6:,.0f} MB")

    return bar, update


@main.command()
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@click.option("--messages", "-n", type=Count(), required=True, help="Messages in the day (e.g. 1M, 50M).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--stocks", type=int, default=100, show_default=True, help="Stocks (locates 1..K).")
@click.option("--gz", is_flag=True, help="Gzip the output (isal when available); implied by OUT ending in .gz.")
@click.option("--close-all", is_flag=True, help="Delete every live order before the end of the day.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def gen(out: str, messages: int, seed: int, stocks: int, gz: bool, close_all: bool, quiet: bool) -> None:
    """Write a realistic synthetic TotalView-ITCH 5.0 day (BinaryFILE framing) to OUT."""
    from itchflow.sim.generator import minimum_messages, write_day

    gz = gz or out.endswith(".gz")
    if messages < minimum_messages(stocks):
        raise click.BadParameter(f"a day of {stocks} stocks needs at least {minimum_messages(stocks):,} messages",
                                 param_hint="--messages")
    bar, update = _progress(messages, quiet)
    try:
        if bar is None:
            info = write_day(out, messages, seed, stocks=stocks, gz=gz, close_all=close_all, progress=update)
        else:
            with bar:
                info = write_day(out, messages, seed, stocks=stocks, gz=gz, close_all=close_all,
                                 progress=update)
    except (OSError, ValueError) as e:
        click.echo(f"itchflow: error: {e}", err=True)
        sys.exit(1)
    n, secs = info["messages"], info["seconds"]
    mix = " ".join(f"{c} {100 * v / n:.2f}%" for c, v in list(info["by_type"].items())[:6])
    size = os.path.getsize(out)
    on_disk = f", {size:,} on disk" if gz else ""
    click.echo(f"{out}: {n:,} messages, {info['bytes']:,} bytes{on_disk}, {stocks} stocks, seed {seed}, "
               f"{secs:.2f} s ({n / max(secs, 1e-9) / 1e6:.2f} M msg/s); {mix}")


def _naive_python_day(messages: int, seed: int) -> int:
    """What a Python user would write: struct.pack per message, a dict of live orders
    (adds, deletes, executions only). Returns the bytes produced."""
    import random
    import struct

    rnd = random.Random(seed)
    add = struct.Struct(">HcHH6sQcI8sI")
    delete = struct.Struct(">HcHH6sQ")
    execute = struct.Struct(">HcHH6sQIQ")
    live: list[int] = []
    out = bytearray()
    ref = match = 0
    for i in range(messages):
        ts = (34_200 * 10**9 + i * 1000).to_bytes(6, "big")
        u = rnd.random()
        if u < 0.5 or not live:
            ref += 1
            live.append(ref)
            out += add.pack(36, b"A", 1, 0, ts, ref, b"B", 100, b"AAPL    ", 1_500_000)
        elif u < 0.97:
            j = rnd.randrange(len(live))
            live[j], live[-1] = live[-1], live[j]
            out += delete.pack(19, b"D", 1, 0, ts, live.pop())
        else:
            match += 1
            out += execute.pack(31, b"E", 1, 0, ts, live.pop(), 100, match)
    return len(out)


@bench.command("gen")
@click.option("--messages", "-n", type=Count(), default="5M", show_default=True)
@click.option("--stocks", type=int, default=100, show_default=True)
@click.option("--peer-messages", type=Count(), default="300k", show_default=True,
              help="Messages for the pure-Python peer (it is slow).")
def bench_gen(messages: int, stocks: int, peer_messages: int) -> None:
    """Generation rate against a pure-Python struct.pack generator, same run."""
    from itchflow.sim.generator import day_summary

    day_summary(minimum_messages_for(stocks), 1, stocks=stocks)  # compile / load the cache
    cpu0, t0 = time.process_time(), time.perf_counter()
    info = day_summary(messages, 1, stocks=stocks)
    ours_wall, ours_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cpu0, t0 = time.process_time(), time.perf_counter()
    _naive_python_day(peer_messages, 1)
    peer_wall, peer_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ours = info["messages"] / ours_cpu
    peer = peer_messages / peer_cpu
    click.echo(f"itchflow gen   {info['messages']:>12,} msgs  {ours_wall:7.2f} s wall  {ours_cpu:7.2f} s cpu  "
               f"{ours / 1e6:6.2f} M msg/s (cpu)  {1e9 / ours:6.0f} ns/msg")
    click.echo(f"python struct  {peer_messages:>12,} msgs  {peer_wall:7.2f} s wall  {peer_cpu:7.2f} s cpu  "
               f"{peer / 1e6:6.2f} M msg/s (cpu)  {1e9 / peer:6.0f} ns/msg  (A/D/E only, no book)")
    click.echo(f"ratio          {ours / peer:.1f}x")


def minimum_messages_for(stocks: int) -> int:
    from itchflow.sim.generator import minimum_messages

    return minimum_messages(stocks)
