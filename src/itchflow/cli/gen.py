"""``itchflow gen``: write a realistic synthetic ITCH 5.0 trading day."""

from __future__ import annotations

import os
import time

import click

from itchflow.cli import bench, main
from itchflow.cli.decode import fail
from itchflow.cli.params import SEED, STOCKS, Count, shape_usage_error

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


def shape_options(fn):
    """The day-shape options (itchflow.sim.generator.SHAPE_KNOBS), shared by gen and bench book."""
    from click import Choice

    opts = [
        click.option("--profile", type=Choice(["default", "fullday"]), default=None,
                     help="Named day shape: default = 100 stocks, Zipf 1.1, no resting population; fullday = "
                          "the published statistics of a real day (8,700 stocks, Zipf 0.9, 1.74 M peak live "
                          "orders (those resting at most 15% of --messages), 4,227 levels on the deepest side, references to "
                          "3.1e8 not monotonic, 6% of stocks below $1, 1% above $1,000) at any message count. "
                          "The options below override it."),
        click.option("--stocks", type=int, default=None, help="Stocks (locates 1..K) [default: 100; fullday 8700]."),
        click.option("--concentration", type=float, default=None,
                     help="Zipf exponent a of each stock's share of the flow (rank r gets ~1/r**a), over 0 and "
                          "at most 10: larger = a few very busy stocks, most quiet [default: 1.1; fullday 0.9]."),
        click.option("--live-orders", type=Count(), default=None,
                     help="Peak live orders to reach, independent of --messages (orders resting all day far "
                          "from the touch are added until about 10:00 while fewer are live; the orders that "
                          "come and go, ~max(5 x stocks, 0.4% of messages), count in it, and their swings can "
                          "take the peak past it on a small day) [default: those alone, none resting]."),
        click.option("--depth", type=int, default=None,
                     help="Price levels on one side of the busiest book, 64 to 100,000 (the r-th busiest gets "
                          "depth/r, none under 64) [default: whatever the flow makes, a few dozen]."),
        click.option("--ref-span", type=Count(), default=None,
                     help="Order references spread over 1..N, interleaved ranges, not monotonic "
                          "[default: ranges 2**37 apart, up to ~1e12]."),
        click.option("--sub-dollar", type=float, default=None,
                     help="Share of stocks below $1 (ticks of $0.0001; the busiest stock always trades in "
                          "cents) [default: 0.05]."),
        click.option("--high-priced", type=float, default=None,
                     help="Share of stocks above $1,000 (cent ticks) [default: 0]."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def checked_shape(messages: int, profile, **knobs) -> dict:
    """resolve_shape, its errors as usage errors naming the option (--stocks, --depth, ...)."""
    from itchflow.sim.generator import ShapeError, resolve_shape

    try:
        return resolve_shape(messages, profile, **knobs)
    except ShapeError as e:
        raise shape_usage_error(e) from None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--profile") from None


def check_day_messages(messages: int, profile=None, **knobs) -> dict:
    """``checked_shape`` (1 to MAX_MESSAGES messages, the knobs in range), and enough messages
    for its stocks, as usage errors before any work: what ``gen`` and ``compare`` take."""
    from itchflow.sim.generator import minimum_messages

    shape = checked_shape(messages, profile, **knobs)
    least = minimum_messages(shape["stocks"])
    if messages < least:
        raise click.BadParameter(f"a day of {shape['stocks']} stocks needs at least {least:,} messages",
                                 param_hint="--messages")
    return shape


def shape_line(info: dict) -> str:
    """The day's shape from a write_day/day_summary summary, on one line."""
    sh = info["shape"]
    top = info["flow_share_top"]
    pr = info["prices"]
    return (f"shape ({sh['profile']}): {sh['stocks']:,} stocks, Zipf {sh['concentration']}, flow share of the top "
            f"1/10/100 stocks {100 * top['1']:.1f}/{100 * top['10']:.1f}/{100 * top['100']:.1f}%; peak live orders "
            f"{info['peak_live_orders']:,} (asked {sh['live_orders'] if sh['live_orders'] is not None else 'auto'}, "
            f"{info['resting_orders']:,} resting orders); deepest side at the end {info['deepest_side_at_end']:,} levels "
            f"(asked {sh['depth'] or 'auto'}); largest order ref {info['max_order_ref']:,} "
            f"(span {sh['ref_span'] or 'default'}); prices <$1 / $1-1,000 / >$1,000: "
            f"{pr['below_1']:,}/{pr['1_to_1000']:,}/{pr['above_1000']:,} stocks")


@main.command()
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@click.option("--messages", "-n", type=Count(), required=True, help="Messages in the day (e.g. 1M, 50M).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Same seed, same bytes.")
@shape_options
@click.option("--gz", is_flag=True, help="Gzip the output (isal when available); implied by OUT ending in .gz.")
@click.option("--close-all", is_flag=True, help="Delete every live order before the end of the day.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def gen(out: str, messages: int, seed: int, profile, stocks, concentration, live_orders, depth, ref_span,
        sub_dollar, high_priced, gz: bool, close_all: bool, quiet: bool) -> None:
    """Write a realistic synthetic TotalView-ITCH 5.0 day (BinaryFILE framing) to OUT.

    The day's shape (stocks, concentration, live orders, depth, references, prices) is set by
    --profile and the options after it, and printed with the summary."""
    from itchflow.sim.generator import ShapeError, write_day

    gz = gz or out.endswith(".gz")
    _check_room(out, messages, gz)
    knobs = dict(concentration=concentration, live_orders=live_orders, depth=depth, ref_span=ref_span,
                 sub_dollar=sub_dollar, high_priced=high_priced)
    check_day_messages(messages, profile, stocks=stocks, **knobs)
    bar, update = _progress(messages, quiet)
    try:
        if bar is None:
            info = write_day(out, messages, seed, stocks=stocks, gz=gz, close_all=close_all, progress=update,
                             profile=profile, **knobs)
        else:
            with bar:
                info = write_day(out, messages, seed, stocks=stocks, gz=gz, close_all=close_all,
                                 progress=update, profile=profile, **knobs)
    except ShapeError as e:   # knobs that fit alone and not together (checked as the day is planned)
        raise click.BadParameter(str(e), param_hint=f"--{e.knob.replace('_', '-')}") from None
    except (OSError, ValueError) as e:
        fail(e)
    n, secs = info["messages"], info["seconds"]
    mix = " ".join(f"{c} {100 * v / n:.2f}%" for c, v in list(info["by_type"].items())[:6])
    size = os.path.getsize(out)
    on_disk = f", {size:,} on disk" if gz else ""
    click.echo(f"{out}: {n:,} messages, {info['bytes']:,} bytes{on_disk}, {info['stocks']} stocks, seed {seed}, "
               f"{secs:.2f} s ({n / max(secs, 1e-9) / 1e6:.2f} M msg/s); {mix}")
    click.echo(shape_line(info))
    if gz and not out.endswith(".gz") and os.path.isfile(out):   # (not stdout's /dev/stdout, a pipe)
        click.echo(f"itchflow: gen: note: {out} is gzip-compressed without a .gz suffix; itchflow reads it by "
                   "its first bytes, other tools (zcat, a raw reader) go by the name", err=True)
    asked = info["shape"]["live_orders"]
    if asked and info["peak_live_orders"] < 0.95 * asked:   # not a silently different day
        click.echo(f"itchflow: gen: warning: the peak of live orders is {info['peak_live_orders']:,}, below the "
                   f"{asked:,} asked for" + (": with --close-all the resting orders are deleted before the close, "
                                            "and this day is too short to hold them all first; give more messages"
                                            if close_all else ""), err=True)


def _check_room(out: str, messages: int, gz: bool) -> None:
    """Refuse at once a day that cannot fit: too many messages, or (uncompressed, to a file)
    more bytes than the file system has free."""
    import shutil
    import stat

    from itchflow.sim.generator import MEAN_MESSAGE_BYTES, check_messages

    try:
        check_messages(messages)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--messages") from None
    if gz or (os.path.exists(out) and not stat.S_ISREG(os.stat(out).st_mode)):
        return                          # compressed, or a device such as /dev/null
    folder = os.path.dirname(os.path.abspath(out))
    try:
        free = shutil.disk_usage(folder).free
        if os.statvfs(folder).f_flag & os.ST_RDONLY or not os.access(folder, os.W_OK):
            return                      # (it was "... has 1 MB free" for a read-only mount: probe 30)
    except OSError:
        return                          # the folder's error comes with the write, naming it
    need = messages * MEAN_MESSAGE_BYTES
    if need > free:
        raise click.BadParameter(f"{messages:,} messages take about {need / 1e6:,.0f} MB; {folder} has "
                                 f"{free / 1e6:,.0f} MB free", param_hint="--messages")


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
@click.option("--stocks", type=STOCKS, default=None, help="Stocks [default: 100; the profile's].")
@click.option("--profile", type=click.Choice(["default", "fullday"]), default=None,
              help="Day shape (as gen --profile); fullday: 8,700 stocks, 1.74 M live orders, deep books.")
@click.option("--peer-messages", type=Count(), default="300k", show_default=True,
              help="Messages for the pure-Python peer (it is slow).")
def bench_gen(messages: int, stocks: int | None, profile: str | None, peer_messages: int) -> None:
    """Generation rate against a pure-Python struct.pack generator, same run."""
    from itchflow.sim.generator import day_summary

    k = checked_shape(messages, profile, stocks=stocks)["stocks"]
    day_summary(minimum_messages_for(k), 1, stocks=k, profile=profile)  # compile / load the cache
    cpu0, t0 = time.process_time(), time.perf_counter()
    info = day_summary(messages, 1, stocks=stocks, profile=profile)
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
    click.echo(shape_line(info))


def minimum_messages_for(stocks: int) -> int:
    from itchflow.sim.generator import minimum_messages

    return minimum_messages(stocks)
