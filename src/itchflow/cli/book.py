"""``itchflow book``, ``itchflow bbo``, ``itchflow trades`` and ``itchflow bench book``."""

from __future__ import annotations

import json
import subprocess

import click

from itchflow.cli import bench, main
from itchflow.cli.decode import fail, warn_unknown_types
from itchflow.cli.params import (
    IMAGE, INPUT_PATH, PARQUET, RUNS, SECONDS, SEED, STOCKS, THREADS, TIMES, TIME_TEXT, Count, symbols_option,
)
from itchflow.cli.progress import progress_total


def parse_time(text: str) -> int:
    """HH:MM[:SS[.fffffffff]] -> nanoseconds since midnight (the research commands' rule)."""
    from itchflow.sinks._clock import clock_ns

    try:
        return clock_ns(text, "time")
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@main.command("book")
@click.argument("path", type=INPUT_PATH)
@click.option("--symbol", "-s", required=True,
              help="Stock symbol (from the stock directory) or locate number (digits; one no R names only on a day "
                   "with no R at all, named by its number).")
@click.option("--at", "at", type=TIME_TEXT, default=None,
              help="HH:MM[:SS[.fffffffff]]: the book as the feed stood at this time: every message in file order "
                   "up to the first one stamped later (one stamped earlier after it, timestamps going back, is "
                   "left out) (default: the end of the data).")
@click.option("--depth", "-n", type=click.IntRange(0), default=10, show_default=True, help="Levels per side (0 = all).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (raw Price(4) integers).")
@click.option("--plot", type=IMAGE, default=None,
              help="Also draw the depth chart (cumulative shares by price) to this PNG (needs matplotlib).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def book_command(path, symbol, at, depth, as_json, plot, quiet) -> None:
    """Full-depth book of one stock at a time of day."""
    from itchflow import Books, ITCHFormatError
    from itchflow.cli.progress import progress_bar
    from itchflow.sinks._symbols import check_locates, stock_key

    t = parse_time(at) if at is not None else None
    books = Books()
    capture: dict = {}
    try:
        with progress_bar("book", progress_total(path), quiet or as_json) as update:
            books.replay(path, stop_after_ns=t, progress=update, capture_stats=capture)
        key = stock_key(symbol)   # a locate number too, named by its number when no R names it
        try:
            loc = books.locate(key)
        except KeyError:
            if t is not None and books.stopped_at_time:  # the day may list it after --at
                raise KeyError(f"no stock directory (R) message for {key!r} before --at {at}") from None
            raise
        check_locates(books, [key], after=f" before --at {at}" if t is not None and books.stopped_at_time else "")
        bids, asks = books.depth(loc, depth if depth > 0 else -1)
    except (ITCHFormatError, OSError, KeyError, ValueError) as e:
        fail(e, path)
    ts = t if t is not None else books.last_timestamp_ns
    if plot:
        from itchflow.cli.decode import format_timestamp
        from itchflow.sinks.plots import depth_plot

        try:
            depth_plot(books.symbol(loc), bids, asks, f"book at {format_timestamp(ts)}", plot)
        except (RuntimeError, OSError) as e:   # no matplotlib; a directory that is not there
            fail(e, path)
    if as_json:
        click.echo(json.dumps({"symbol": books.symbol(loc), "timestamp_ns": int(ts),
                               "bids": bids.tolist(), "asks": asks.tolist(), **losses(books, capture, [loc])}))
        return
    _print_book(books, loc, bids, asks, ts)
    report_losses(books, capture, symbols=[loc])


def losses(books, capture: dict, symbols=None) -> dict:
    """What the answer does not rest on, for the caller to see: the books' anomalies (messages
    applied other than as sent, or not at all), unknown message types skipped, and a
    capture's gaps and malformed packets. Empty when there is none. symbols: the stocks the
    answer is about (symbols or locates; None: every stock): only their anomalies are the
    answer's, the other stocks' are a total (``other_stocks_anomalies``)."""
    out = {}
    if symbols is None:
        an = {k: v for k, v in books.anomalies().items() if v}
    else:
        from itchflow.book.books import anomalies_of

        an, other = anomalies_of(books, symbols)
        if other:
            out["other_stocks_anomalies"] = other
    if an:
        out["anomalies"] = an
    if books.unknown_types:
        out["unknown_types"] = int(books.unknown_types)
    if getattr(books, "timestamps_backwards", 0):   # (not kept across shards)
        out["timestamps_backwards"] = books.timestamps_backwards
    lost = {k: int(capture[k]) for k in ("gaps", "missing_messages", "malformed_packets", "bad_frames",
                                         "after_end_of_session", "messages_after_end_of_session") if capture.get(k)}
    if lost:
        out["capture"] = lost
    return out


# What a time means on a day whose time goes back (a spliced or wrongly sorted day), by command:
# said beside the count (snapshots and book were silent where stats warned: probe 32).
AT_A_TIME = "a time T is every message up to the first one stamped later than T, in file order"
OWN_STAMPS = "each event keeps its own message's stamp, in file order"


def report_losses(books, capture: dict, consequence: str = ": the books are built without them",
                  path=None, symbols=None, backwards: str = AT_A_TIME) -> None:
    """One line on stderr per kind of loss (stdout stays the answer): the capture's (with
    ``consequence``, naming ``path``), the books' anomalies (of ``symbols``' stocks when the
    answer is only theirs, the others' as a total), unknown types, and time going back in what
    was applied (with what a time then means for this answer: ``backwards``)."""
    from itchflow.cli.decode import counted, warn_capture

    found = losses(books, capture, symbols)
    warn_capture(capture, consequence, path)
    of = "" if symbols is None else " of " + ", ".join(books.symbol(s) if isinstance(s, int) else str(s)
                                                    for s in symbols)
    if "anomalies" in found:
        click.echo(f"itchflow: warning: anomalies{of} (messages the books could not apply as sent): "
                   + ", ".join(f"{k} {v:,}" for k, v in found["anomalies"].items()), err=True)
    if "other_stocks_anomalies" in found:   # not in this answer: a total, not a warning about it
        click.echo(f"itchflow: note: {found['other_stocks_anomalies']:,} anomalies in other stocks "
                   "(not in this output)", err=True)
    if any(isinstance(x, str) for x in symbols or ()) and books.anomalies().get("directory_conflict"):
        # a name is the stock under that name (probe 42: bars -s NEW had no bars before the rename)
        click.echo("itchflow: note: an R renamed a stock during the day: a name gives a stock's rows while it "
                   "had that name; ask by locate for a locate's whole day", err=True)
    if "unknown_types" in found:
        warn_unknown_types(found["unknown_types"])
    if "timestamps_backwards" in found:
        click.echo(f"itchflow: warning: the day's time goes back {counted(found['timestamps_backwards'], 'time')} "
                   f"in the messages read: {backwards} (itchflow stats names the first place)", err=True)


def _print_book(books, loc, bids, asks, ts) -> None:
    from rich.console import Console
    from rich.table import Table

    from itchflow import price4_to_float
    from itchflow.cli.decode import format_timestamp

    console = Console()
    console.print(f"[bold]{books.symbol(loc)}[/bold] (locate {loc}) at {format_timestamp(ts)}   "
                  f"live orders (all stocks) {books.live_orders():,}   volume {books.volume(loc):,}   "
                  f"trading state {books.trading_state(loc) or '-'}")
    table = Table(show_edge=False, box=None)
    for col in ("orders", "shares", "bid", "ask", "shares ", "orders "):
        table.add_column(col, justify="right")
    def cells(level, color: str) -> tuple[str, str, str]:
        if level is None:
            return "", "", ""
        return (f"{int(level['orders']):,}", f"{int(level['shares']):,}",
                f"[{color}]{price4_to_float(int(level['price'])):,.4f}[/{color}]")

    for i in range(max(len(bids), len(asks))):
        b_orders, b_shares, b_price = cells(bids[i] if i < len(bids) else None, "green")
        a_orders, a_shares, a_price = cells(asks[i] if i < len(asks) else None, "red")
        table.add_row(b_orders, b_shares, b_price, a_price, a_shares, a_orders)
    console.print(table)
    an = {k: v for k, v in books.anomalies(loc).items() if v}
    if an:
        console.print(f"  anomalies: {an}")


def _stream_command(which: str, noun: str, doc: str):
    """``itchflow bbo`` / ``itchflow trades``: one event stream of a whole file to Parquet."""

    @main.command(which, help=doc)
    @click.argument("path", type=INPUT_PATH)
    @click.option("--symbols", "-s", default=None,
                  help="Comma-separated symbols or locate numbers, as book's --symbol (default: every stock).")
    @click.option("--out", "-o", required=True, type=PARQUET, help="Parquet file to write.")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
    def command(path, symbols, out, quiet) -> None:
        from itchflow.cli.progress import progress_bar
        from itchflow.errors import ITCHFormatError
        from itchflow import Books
        from itchflow.sinks.events import events_to_parquet
        from itchflow.sinks._symbols import stock_keys

        books, capture = Books(), {}
        try:
            with progress_bar(which, progress_total(path), quiet) as update:
                rows, messages = events_to_parquet(path, out, which, symbols_option(symbols), progress=update,
                                                   books=books, capture_stats=capture)
        except (ITCHFormatError, OSError, KeyError, ValueError) as e:
            fail(e, path)
        click.echo(f"wrote {rows:,} {noun} from {messages_read(books, messages)} to {out}")
        report_losses(books, capture, symbols=stock_keys(symbols_option(symbols)), backwards=OWN_STAMPS)

    return command


def messages_read(books, applied: int) -> str:
    """The messages a command read: those of a known type (applied) and the unknown types it
    skipped, so that the count is the file's ("3 messages" of a file of 5 left 2 out)."""
    unknown = int(books.unknown_types)
    if not unknown:
        return f"{applied:,} messages"
    return f"{applied + unknown:,} messages ({unknown:,} of unknown types, skipped)"


bbo_command = _stream_command("bbo", "BBO changes", "Every change of best bid/offer (price and size) to Parquet.")
trades_command = _stream_command("trades", "trades", "Every trade (E, C, P, Q; B breaks flagged) to Parquet.")


@bench.command("cache")
@click.option("--steps", type=Count(1), default="2M", show_default=True, help="Loads timed per figure.")
@click.option("--repeat", type=RUNS, default=3, show_default=True, help="Best of this many passes.")
@click.option("--largest", type=click.IntRange(1), default=1024, show_default=True,
              help="Largest working set and page span to probe, MiB (each is allocated and touched).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_cache(steps, repeat, largest, as_json) -> None:
    """What one random load costs on this machine, by working set (dependent loads against
    numpy.take of the same lines) and by page span (the address translation alone): the
    memory the book engine's figures on large days are made of."""
    from itchflow.bench.cache import DENSE_MIB, SPARSE_SPAN_MIB, report, run

    r = run(dense_mib=[m for m in DENSE_MIB if m <= largest],
            sparse_span_mib=[m for m in SPARSE_SPAN_MIB if m <= largest], steps=steps, repeat=repeat)
    if as_json:
        click.echo(json.dumps(r))
    else:
        report(r)


@bench.command("book")
@click.option("--messages", type=Count(), default="50M", show_default=True,
              help="Size of each generated day (e.g. 2M for a quick run).")
@click.option("--shapes", default="deep,many,fullday", show_default=True,
              help="Comma-separated day shapes to run: deep (the default 100-stock day), many (--stocks "
                   "stocks), fullday (gen --profile fullday).")
@click.option("--stocks", type=STOCKS, default=8000, show_default=True, help="Stocks of the 'many' shape.")
@click.option("--fullday-messages", type=Count(), default=None,
              help="Size of the fullday day [default: --messages].")
@click.option("--fullday-live-orders", type=Count(), default=None,
              help="Peak live orders of the fullday day [default: the profile's 1,740,000, at most 15% of its "
                   "messages]; smaller for a quick run.")
@click.option("--seed", type=SEED, default=1, show_default=True)
@click.option("--repeat", type=RUNS, default=2, show_default=True, help="Best of this many runs, itchflow and itchcpp taking turns.")
@click.option("--meatpy-messages", type=Count(), default="300k", show_default=True, help="Prefix given to MeatPy.")
@click.option("--no-peers", is_flag=True, help="Only itchflow's own figures.")
@click.option("--memory-orders", type=Count(), default="6M", show_default=True,
              help="Live orders of the memory probe (0: skip it).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_book(messages, shapes, stocks, fullday_messages, fullday_live_orders, seed, repeat, meatpy_messages,
               no_peers, memory_orders, as_json) -> None:
    """L3 book throughput on three day shapes (few deep stocks, many stocks, a full day's working
    set), each against itchcpp's BookManager on the same bytes, with the day's shape beside
    every figure; MeatPy on one stock."""
    from itchflow.bench.book import report, run

    r = run(messages, stocks, seed, repeat, meatpy_messages, not no_peers, memory_orders, shapes=_shape_names(shapes),
            fullday_live_orders=fullday_live_orders, fullday_messages=fullday_messages)
    if as_json:
        click.echo(json.dumps(r))
    else:
        report(r)


def _shape_names(shapes: str) -> list[str]:
    """--shapes: comma-separated names of the book benchmark's day shapes."""
    from itchflow.bench.book import SHAPE_NAMES

    names = [x.strip() for x in shapes.split(",") if x.strip()]
    bad = [x for x in names if x not in SHAPE_NAMES]
    if bad or not names:
        raise click.BadParameter(f"unknown shape(s) {bad} (known: {', '.join(SHAPE_NAMES)})", param_hint="--shapes")
    return names


@bench.command("instructions")
@click.option("--shape", type=click.Choice(["deep", "many", "fullday"]), default="deep", show_default=True,
              help="Day shape (as in bench book).")
@click.option("--messages", type=Count(), default="10M", show_default=True, help="Size of the generated day.")
@click.option("--start", type=Count(), default="2M", show_default=True,
              help="Count the messages after this many ...")
@click.option("--stop", type=Count(), default="3M", show_default=True, help="... up to this many.")
@click.option("--stocks", type=STOCKS, default=8000, show_default=True, help="Stocks of the 'many' shape.")
@click.option("--seed", type=SEED, default=1, show_default=True)
@click.option("--no-peers", is_flag=True, help="Only itchflow's counts.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_instructions(shape, messages, start, stop, stocks, seed, no_peers, as_json) -> None:
    """Instructions and branch mispredictions per book message, itchflow's engine against
    itchcpp's BookManager on the same bytes, counted by valgrind (the same on every run, on a
    host too noisy to time small changes). Needs valgrind; takes a few minutes."""
    from itchflow.bench.book import ensure_shape_day, shape_params
    from itchflow.bench.instructions import MIN_WINDOW, report, run, to_json

    if stop > messages:
        raise click.BadParameter(f"--stop {stop:,} is past the day's {messages:,} messages", param_hint="--stop")
    if stop - start < MIN_WINDOW:
        raise click.BadParameter(f"count at least {MIN_WINDOW:,} messages (--start {start:,} to --stop {stop:,}): a "
                                 f"shorter window is within what two runs' set-up differ by", param_hint="--stop")
    path, gen, _ = ensure_shape_day(shape_params(shape, messages, many_stocks=stocks, seed=seed))
    try:
        r = run(str(path), start, stop, peers=not no_peers)
    except (RuntimeError, ValueError) as e:
        fail(e)
    r["shape"] = {"name": shape, "stocks": gen.get("stocks"),
                  "peak_live_orders": gen.get("peak_live_orders")}
    if as_json:
        click.echo(to_json(r))
    else:
        report(r, r["shape"])


@main.command("snapshots")
@click.argument("path", type=INPUT_PATH)
@click.option("--symbols", "-s", required=True, help="Comma-separated symbols or locate numbers, as book's --symbol.")
@click.option("--at", "at", type=TIMES, default=None,
              help="Comma-separated times HH:MM[:SS[.fffffffff]]: the book as the feed stood at each (see the "
                   "command's help).")
@click.option("--every", type=SECONDS, default=None,
              help="Or: a snapshot at every multiple of this many seconds after midnight that falls after the "
                   "day's first message, up to and including its last (at most 24:00).")
@click.option("--depth", "-n", type=click.IntRange(0), default=5, show_default=True,
              help="Levels per side (0 = all, as in book).")
@click.option("--out", "-o", required=True, type=PARQUET, help="Parquet file to write.")
@click.option("--quiet", "-q", is_flag=True,
              help="Accepted as book, bbo and trades take it; snapshots shows no progress bar.")
def snapshots_command(path, symbols, at, every, depth, out, quiet) -> None:
    """Depth-N snapshots of chosen symbols at given times or intervals to Parquet: one row per
    level per side. A snapshot at T is the book as the feed stood at T: every message in file
    order up to the first one stamped later than T (a message stamped <= T that comes after
    it, in a day whose timestamps go backwards, is not in it)."""
    from itchflow import Books, ITCHFormatError
    from itchflow.sinks.events import snapshots_to_parquet
    from itchflow.sinks._symbols import stock_keys

    if (at is None) == (every is None):
        fail(click.UsageError("give exactly one of --at and --every"))
    if not symbols_option(symbols):
        raise click.BadParameter("give at least one symbol", param_hint="--symbols")
    try:
        times = at
        if every is not None:
            from itchflow.book.events import every_times
            from itchflow.decode.reader import stats
            info = stats(path)
            times = every_times(every, info.first_timestamp_ns, info.last_timestamp_ns)
            if not info.messages:
                click.echo(f"itchflow: warning: {path}: no messages (an empty file?): no snapshot times", err=True)
        books, capture = Books(), {}
        rows = snapshots_to_parquet(books, path, out, times, symbols_option(symbols), depth if depth > 0 else -1,
                                    capture_stats=capture)
    except (ITCHFormatError, OSError, KeyError, ValueError) as e:
        fail(e, path)
    click.echo(f"wrote {rows:,} rows ({len(times):,} times x {len(symbols_option(symbols))} symbols) to {out}")
    report_losses(books, capture, symbols=stock_keys(symbols_option(symbols)))


def _day_shape_options(command):
    """The day options of the benchmarks that run bench book's shapes on 10 M-message days."""
    for option in reversed([
        click.option("--messages", type=Count(), default="10M", show_default=True, help="Size of each generated day."),
        click.option("--shapes", default="deep,many,fullday", show_default=True,
                     help="Comma-separated day shapes, as in bench book: deep (the default 100-stock day), many "
                          "(--stocks stocks), fullday (gen --profile fullday)."),
        click.option("--stocks", type=STOCKS, default=8000, show_default=True, help="Stocks of the 'many' shape."),
        click.option("--fullday-live-orders", type=Count(), default=None,
                     help="Peak live orders of the fullday day [default: the profile's 1,740,000, at most 15% of "
                          "its messages]."),
        click.option("--seed", type=SEED, default=1, show_default=True)]):
        command = option(command)
    return command


@bench.command("book-threads")
@_day_shape_options
@click.option("--threads", type=THREADS, default=2, show_default=True, help="Threads building the books.")
@click.option("--shards", type=THREADS, default=None, help="Books the stocks are split into [default: one a thread].")
@click.option("--chunk", "chunk", type=Count(), default=None,
              help="Input bytes routed a chunk (at least 65,537) [default: 4 MiB].")
@click.option("--repeat", type=RUNS, default=3, show_default=True, help="Best of this many runs.")
@click.option("--busy-cpu", type=int, default=None,
              help="Time it all while a busy loop shares this CPU (a vCPU the host gives less).")
@click.option("--busy-nice", type=click.IntRange(0, 19), default=5, show_default=True,
              help="The busy loop's nice value (5: it takes about a quarter of its CPU).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_book_threads(messages, shapes, stocks, fullday_live_orders, seed, threads, shards, chunk, repeat,
                       busy_cpu, busy_nice, as_json) -> None:
    """Books(threads=N) against one thread on each day shape: wall-clock speed-up, each thread's
    CPU, and whether every order of every book agrees."""
    from itchflow.bench.book_threads import report, run
    from itchflow.book.sharded import BLOCK_BYTES
    from itchflow.hw.affinity import available_cpus

    if busy_cpu is not None and busy_cpu not in available_cpus():
        fail(ValueError(f"--busy-cpu {busy_cpu} is not one of this process's CPUs {available_cpus()}"))
    r = run(messages, _shape_names(shapes), stocks, seed, threads, repeat, shards, chunk or BLOCK_BYTES,
            busy_cpu, busy_nice, fullday_live_orders)
    click.echo(json.dumps(r) if as_json else report(r))


@bench.command("revision")
@click.option("--rev", required=True,
              help="The earlier commit to measure against (any git revision of this checkout, e.g. 40a0d70).")
@_day_shape_options
@click.option("--repeat", type=RUNS, default=5, show_default=True, help="Turns: each engine's best of this many.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_revision(rev, messages, shapes, stocks, fullday_live_orders, seed, repeat, as_json) -> None:
    """The book engine as checked out (HEAD and any uncommitted change) against another revision
    of itself, taking turns in one process on the same bytes: the speed-up that holds on a host
    whose speed drifts (--rev HEAD: uncommitted changes against the last commit). Needs a git
    checkout."""
    from itchflow.bench.revision import report, run

    say = None if as_json else (lambda line: click.echo(line, err=True))
    try:
        r = run(rev, messages, _shape_names(shapes), stocks, seed, repeat, fullday_live_orders, progress=say)
    except (RuntimeError, ValueError, subprocess.CalledProcessError) as e:
        fail(e)
    click.echo(json.dumps(r) if as_json else report(r))
