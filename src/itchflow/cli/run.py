"""``itchflow run``: source -> shared-memory ring -> books, with a report of rates and latency."""

from __future__ import annotations

import json
import sys

import click

from itchflow.cli import bench, main
from itchflow.cli.progress import progress_total
from itchflow.cli.signals import sigterm_exits
from itchflow.cli.decode import after_end, bad_frames, counted, fail
from itchflow.cli.net import engine_notes, past_end_words
from itchflow.cli.params import (
    BYTES, CPUS, FEED_RING_CAPACITY, HEARTBEAT, IMAGE, MESSAGE_RATE, NON_NEGATIVE, POSITIVE, RING_NAME, RUNS,
    SECONDS_OR_OFF, SEED, SOURCE, STOCKS, Count,
)
from itchflow.wire.itch import price4_to_float

EXIT_INTERRUPTED = 130   # 128 + SIGINT, as a shell reports a Ctrl-C
LONG_PAUSE_SECONDS = 0.01  # a growth pause this long gets the hint to size the books ahead



@main.command("run")
@click.option("--source", "-s", required=True, type=SOURCE,
              help="PATH (BinaryFILE, .gz, pcap), tail:PATH (a growing file), ring:NAME (a ring that "
                   "`listen --ring` or `soup fetch --ring` feeds), "
                   "mold://GROUP:PORT?line_b=..&rerequest=HOST:PORT&session=.. or "
                   "soup://HOST:PORT?user=..&password=..&session=..&sequence=N")
@click.option("--ring", type=RING_NAME, default=None,
              help="Ring name or path (default: a private one in /dev/shm); removed at the end either way "
                   "(a consumer that joined keeps its mapping).")
@click.option("--capacity", type=FEED_RING_CAPACITY, default=16 << 20, show_default=True,
              help="Ring data bytes (a power of two, at least 524,288).")
@click.option("--batch-bytes", type=BYTES, default=64 << 10, show_default=True, help="Most message bytes per ring record.")
@click.option("--rate", type=MESSAGE_RATE, default=None, help="Replay a file at this many messages/s (default: flat out).")
@click.option("--pin", type=CPUS, default="", help="Producer,consumer CPUs, e.g. 0,1 (default: no pinning).")
@click.option("--wait", type=click.Choice(["spin", "yield", "sleep", "block"]), default=None,
              help="Consumer wait strategy (default: spin when pinned, else yield).")
@click.option("--hugepages", is_flag=True, help="Back the ring with huge pages where available.")
@click.option("--heartbeat-timeout", type=HEARTBEAT, default=5.0, show_default=True,
              help="Seconds of silence after which the producer detaches the consumer (and the consumer "
                   "judges the producer gone).")
@click.option("--wait-for-file", type=NON_NEGATIVE, default=0.0, show_default=True,
              help="tail:PATH: wait this many seconds for the file to appear.")
@click.option("--idle-timeout", type=SECONDS_OR_OFF, default=5.0, show_default=True,
              help="tail:PATH: stop after this many seconds without growth (0: wait for the end event).")
@click.option("--top", type=click.IntRange(0), default=10, show_default=True,
              help="Stocks to show (most shares traded; 0: none).")
@click.option("--plot", type=IMAGE, default=None,
              help="Also draw the latency distribution of every stage to this PNG (needs matplotlib).")
@click.option("--live-orders", type=Count(), default=None,
              help="Live orders to make room for before the first message (e.g. 6M for a real day's peak), "
                   "faulted in before the feed starts: the books then never pause to grow their order table "
                   "(a rehash at 8 M rows takes most of a second). Default: grow on demand.")
@click.option("--trades", type=Count(), default=None,
              help="Trades to make room for in the trade log (B messages are matched against it); "
                   "default: a quarter of the order table's rows, grown on demand.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def run_command(source, ring, capacity, batch_bytes, rate, pin, wait, hugepages, heartbeat_timeout,
                wait_for_file, idle_timeout, top, plot, live_orders, trades, as_json, quiet) -> None:
    """Read a source in one process, hand it over a ring, build every stock's book in another.
    Ctrl-C prints the report of what was applied and exits 130; SIGTERM stops the producer,
    removes a private ring and exits 143."""
    _refuse_ring_options(source)
    with sigterm_exits("stopping the producer, removing a private ring"):
        _run(source, ring, capacity, batch_bytes, rate, pin, wait, hugepages, heartbeat_timeout,
             wait_for_file, idle_timeout, top, plot, live_orders, trades, as_json, quiet)


# What run makes of a source it reads itself: a ring:NAME is another process's, made and fed by
# it (listen/soup fetch --ring), so these were ignored without a word (probe 13)
_OWN_RING_OPTIONS = ("ring", "capacity", "batch_bytes", "rate", "hugepages", "heartbeat_timeout",
                     "wait_for_file", "idle_timeout")


def _refuse_ring_options(source: str) -> None:
    from click.core import ParameterSource

    if not source.startswith("ring:"):
        return
    ctx = click.get_current_context()
    given = [f"--{n.replace('_', '-')}" for n in _OWN_RING_OPTIONS
             if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{', '.join(given)}: not for a ring:NAME source, whose ring its producer made "
                               "(listen --ring, soup fetch --ring); they set the ring and the reading of a "
                               "source run reads itself")


def _run(source, ring, capacity, batch_bytes, rate, pin, wait, hugepages, heartbeat_timeout,
         wait_for_file, idle_timeout, top, plot, live_orders, trades, as_json, quiet) -> None:
    from itchflow.cli.progress import progress_bar
    from itchflow.errors import ITCHFormatError
    from itchflow.pipeline import PipelineError, PipelineInterrupted, parse_source, run_pipeline
    from itchflow.ring import RingError

    try:
        spec = parse_source(source)
        books = sized_books(live_orders, trades)
        total = progress_total(spec.path, stream_bytes=True) if spec.kind == "file" else None
        with progress_bar("run", total, quiet or as_json) as update:
            report = run_pipeline(spec, ring=ring, capacity=capacity, batch_bytes=batch_bytes, pin=pin,
                                  wait=wait, top=top, progress=update, hugepages=hugepages, rate=rate,
                                  heartbeat_timeout=heartbeat_timeout, wait_for_file=wait_for_file,
                                  idle_timeout=idle_timeout or None, books=books,
                                  notice=lambda text: click.echo(f"itchflow: {text}", err=True))
        if plot:
            from itchflow.sinks.plots import latency_plot

            latency_plot({k.replace("_to_", " -> ").replace("_", " "): v for k, v in report.samples.items()}, plot,
                         f"itchflow run {report.source}: {report.messages:,} messages, {report.batches:,} batches")
    except PipelineInterrupted as e:
        _show(e.report, as_json, None)
        click.echo("itchflow: interrupted (Ctrl-C); the report above covers what was applied", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("itchflow: interrupted (Ctrl-C) before anything was applied", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except (ITCHFormatError, PipelineError, RingError, OSError, ValueError, RuntimeError) as e:
        if getattr(e, "report", None) is not None:   # what was applied before it failed, then why
            _show(e.report, as_json, None)
        fail(e)
    _show(report, as_json, plot)
    status, why = live_exit_status(report)
    if status:
        click.echo(f"itchflow: {why}", err=True)
        sys.exit(status)


def live_exit_status(r) -> tuple[int, str]:
    """As ``listen`` and ``soup fetch`` exit: 2 a live session (mold, soup) stopped before its
    end of session, 3 messages were lost on the way (given up on, or a lossy ring lapped):
    the books cannot show a hole, so a script must not take them for the whole day."""
    p = r.producer or {}
    stream = getattr(r, "stream", "whole")
    tail, capture = p.get("tail", {}), p.get("capture", {})
    if stream == "cut short" and tail:
        return 2, (f"the file stopped growing for {tail.get('idle_timeout') or 0:g} s before its end-of-messages "
                   f"event, after {tail.get('messages', 0):,} messages: the books cover part of the day "
                   "(--idle-timeout sets how long a quiet writer is waited for)")
    if stream == "lost messages" and capture:
        return 3, (f"the capture has {counted(capture.get('gaps', 0), 'sequence gap')} ("
                   f"{counted(capture.get('missing_messages', 0), 'message')} missing){after_end(capture)}: the "
                   "books have holes")
    if p.get("end_contradicted"):
        from itchflow.sources.udp import contradicted_end

        return 2, f"the mold session: {contradicted_end(p.get('end_sequence'), p['end_contradicted'])}: the books " \
                  "may cover part of it"
    if "soup" in p and not p["soup"].get("ended") and not p["soup"].get("connections"):
        errors = p["soup"].get("errors") or []
        return 2, ("the soup session never connected" + (f" ({errors[-1]})" if errors else "")
                   + ": the books are empty")
    if "mold" in p and not p.get("finished") and not p["mold"].get("packets"):
        return 2, "no packet of the mold session arrived: the books are empty"
    for kind in ("mold", "soup"):
        if kind in p and not (p.get("finished") if kind == "mold" else p[kind].get("ended")):
            return 2, f"the {kind} session stopped before its end of session: the books cover part of it"
    lost = p.get("mold", {}).get("lost", 0)
    if lost:
        return 3, f"{lost:,} messages were lost (given up on): the books have holes"
    if r.ring_lost_records:
        return 3, (f"{r.ring_lost_records:,} ring records were lost (the consumer was lapped, or detached and "
                   "joined again at the live edge): the books have holes")
    if getattr(r, "ring_skipped_records", 0):
        return 3, (f"the ring's first {r.ring_skipped_records:,} records were published before this run's first "
                   "(its consumer resumed where an earlier run stopped, or joined a stream under way): the "
                   "books lack them")
    if getattr(r, "sequence_gaps", 0) or getattr(r, "sequence_repeats", 0):
        return 3, (f"the ring's records skip forward {r.sequence_gaps:,} times ({r.sequence_gap_messages:,} sequence "
                   f"numbers) and go back {r.sequence_repeats:,} times: messages are missing or repeated (a producer "
                   "that lost them, or a damaged record): the books cannot be trusted whole")
    # how the ring's producer said its stream ended (ring:NAME), when nothing above says more
    if stream == "cut short":
        return 2, ("the ring's producer closed it before the end of its stream (a session stopped early): the "
                   "books cover part of it")
    if stream == "lost messages":
        return 3, "the ring's producer lost messages on the way (given up on, or missing): the books have holes"
    if stream != "whole":
        return 2, f"the ring's producer closed it with an outcome this version does not know ({stream})"
    return 0, ""


def _show(report, as_json: bool, plot: str | None) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        print_report(report)
        if plot:
            click.echo(f"latency plot: {plot}")


def sized_books(live_orders: int | None, trades: int | None):
    """Books sized ahead and faulted in now (None: the default books, grown on demand). Sizes
    whose tables would not fit in the memory this machine has free are refused before a page
    is touched (faulting them in would bring the kernel's OOM killer instead)."""
    if live_orders is None and trades is None:
        return None
    from itchflow.book.books import Books
    from itchflow.hw.memory import available_bytes

    asked = " ".join(f"--{name} {n:,}" for name, n in (("live-orders", live_orders), ("trades", trades))
                     if n is not None)
    try:
        books = Books(live_orders, trades=trades)
    except MemoryError:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        where = ("on this machine" if limit == resource.RLIM_INFINITY else
                 f"under this process's address-space limit (ulimit -v: {limit:,} bytes)")
        raise ValueError(f"{asked}: the books' tables cannot even be allocated {where}") from None
    need, free = books.memory_bytes(), available_bytes()
    if free is not None and need > free:
        raise ValueError(f"{asked}: the books' tables would take {need / 2**30:,.1f} GiB, and this machine "
                         f"has {free / 2**30:,.1f} GiB available")
    books.prefault(wait=True)
    return books


def growth_lines(g: dict | None) -> list[str]:
    """The pauses the books took to grow their tables: a live feed stops for each."""
    if not g or not g["pauses"]:
        return ["growth: none (the tables were large enough from the start)"] if g else []
    top = g["longest"]
    each = ", ".join(f"{k} {v['pauses']}" for k, v in g["by_table"].items())
    line = (f"growth: {g['pauses']:,} pauses, {g['seconds'] * 1e3:,.0f} ms in all ({each}); the longest "
            f"{top['seconds'] * 1e3:,.0f} ms ({top['what']} {top['from']:,} -> {top['to']:,} rows)")
    if top["seconds"] >= LONG_PAUSE_SECONDS:
        line += "; --live-orders / --trades size the books ahead"
    return [line]


def source_lines(p: dict) -> list[str]:
    """The source's own counters, one line each, losses first-class (never only in a dump)."""
    out = []
    if "capture" in p:
        c = p["capture"]
        out.append(f"capture: {c.get('packets', 0):,} packets, {c.get('duplicate_messages', 0):,} duplicate "
                   f"messages dropped, {counted(c.get('gaps', 0), 'gap')} ("
                   f"{counted(c.get('missing_messages', 0), 'message')} missing), "
                   f"{c.get('malformed_packets', 0):,} malformed{bad_frames(c)}{after_end(c)}")
    if "mold" in p:
        m = p["mold"]
        a, b, r = (m.get("packets_by_line", [0, 0, 0]) + [0, 0, 0])[:3]
        lost = m.get("lost", 0)
        out.append(f"mold: {m.get('packets', 0):,} packets (A {a:,}, B {b:,}, re-request replies {r:,}), "
                   f"{m.get('duplicate_messages', 0):,} duplicate messages dropped, {counted(m.get('gaps', 0), 'gap')}, "
                   f"{m.get('requests', 0):,} re-requests, {m.get('recovered', 0):,} recovered, "
                   f"{'[bold red]' if lost else ''}{lost:,} lost{'[/bold red]' if lost else ''}"
                   f"{'' if p.get('finished') else ', [yellow]end of session not reached[/yellow]'}")
        out += [f"  [yellow]{line}[/yellow]" for line in engine_notes(p.get("engine_stats", {}))]
        if p.get("lost"):
            out.append("  lost runs (first sequence, count): " + ", ".join(f"({a:,}, {n:,})" for a, n in p["lost"][:10])
                       + (" ..." if len(p["lost"]) > 10 else ""))
    if "tail" in p:
        t = p["tail"]
        how = {"end of messages": "ended at its end-of-messages event",
               "idle time-out": f"[yellow]stopped growing for {t.get('idle_timeout') or 0:g} s before its "
                                "end-of-messages event[/yellow]",
               "stopped": "stopped (Ctrl-C or SIGTERM)"}.get(t["ended_by"], t["ended_by"])
        line = f"tail: {t['messages']:,} messages, {t['position']:,} bytes; {how}"
        if t.get("bytes_after_end"):
            line += (f"; [yellow]{t['bytes_after_end']:,} bytes after the event not read[/yellow] (another day "
                     "appended? --source PATH reads the whole file)")
        if t.get("unfinished_bytes"):
            line += (f"; [yellow]{t['unfinished_bytes']:,} bytes of a message not yet whole at offset "
                     f"{t['position']:,} not read[/yellow]")
        out.append(line)
    if "soup" in p:
        from itchflow.sources.soup_sockets import fetched_past_end

        s = p["soup"]
        out.append(f"soup: {s['messages']:,} messages, {s['connections']} connections, {s['reconnects']} reconnects, "
                   f"{s['dead_links']} dead links, next sequence {s['next_sequence']:,}"
                   f"{'' if s['ended'] else ', [yellow]end of session not reached[/yellow]'}"
                   + (f"; errors: {'; '.join(s['errors'][:3])}" if s["errors"] else "")
                   + (f"; [yellow]{past_end_words(s['from_sequence'])}[/yellow]" if fetched_past_end(s) else ""))
    return out


def print_report(r) -> None:
    from rich.table import Table

    from itchflow.cli.progress import output_console

    console = output_console()
    p = r.producer
    console.print(f"[bold]{r.source}[/bold] -> ring {r.ring} -> books"
                  + (" [yellow](interrupted: counts up to Ctrl-C)[/yellow]" if r.interrupted else ""))
    console.print(f"  {r.messages:,} messages, {r.bytes:,} bytes in {r.batches:,} batches; "
                  f"{r.seconds:.3f} s from the first batch ({r.messages_per_second / 1e6:,.2f} M msg/s), "
                  f"{r.wall_seconds:.3f} s in all; engine {r.apply_ns_per_message:.1f} ns/msg")
    if p:
        console.print(f"  producer: {p.get('messages', 0):,} messages in {p.get('records', 0):,} records, "
                      f"{p.get('seconds', 0):.3f} s")
    else:
        console.print("  producer: another process (its own counters are in its report; "
                      f"`itchflow ring inspect {r.ring}` shows the ring's)")
    for line in source_lines(p):
        console.print(f"  {line}")
    if getattr(r, "ring_skipped_records", 0):
        console.print(f"  ring: [bold red]started after {r.ring_skipped_records:,} records[/bold red] (its consumer "
                      "resumed where an earlier run stopped, or joined a stream under way): the books lack them")
    if r.ring_lost_records:
        console.print(f"  ring: [bold red]{r.ring_lost_records:,} records lost[/bold red] (the consumer was lapped "
                      "in a lossy ring, or detached by the producer and joined again at the live edge)")
    console.print(f"  sequence: {counted(r.sequence_gaps, 'gap')} ({counted(r.sequence_gap_messages, 'message')} "
                  f"missing), {counted(r.sequence_repeats, 'repeat')}")
    if getattr(r, "stream", "whole") != "whole" or getattr(r, "error", None):
        console.print(f"  stream: [yellow]{r.stream}[/yellow]"
                      + (" (failed: the error follows; the counts are what was applied before it)"
                         if getattr(r, "error", None) else ""))
    b = r.book
    console.print(f"  books: {b['stocks_with_orders']:,} stocks with orders, {b['live_orders']:,} live orders "
                  f"(peak {b['peak_live_orders']:,}), {b['unknown_types']:,} unknown types skipped, "
                  f"anomalies {b['anomalies'] or 'none'}")
    for line in growth_lines(b.get("growth")):
        console.print(f"  {line}")
    if r.pacing == "flat out":
        how = ("file read flat out: publish -> consume is mostly QUEUEING behind earlier batches in a full "
               "ring, not the hand-off; --rate N measures the hand-off")
    else:
        how = f"{r.pacing}: hand-off latency"
    lat = Table(title=f"latency per batch (us), {how}", show_edge=False, box=None, pad_edge=False,
                title_justify="left")
    for col in ("stage", "batches", "p50", "p90", "p99", "p99.9", "max"):
        lat.add_column(col, justify="left" if col == "stage" else "right")
    from itchflow.hw.metrics import LATENCY_FIGURES   # (here: it loads numba, and the CLI starts fast)

    for stage, s in r.latency.items():
        if s.get("batches"):
            lat.add_row(stage.replace("_to_", " -> ").replace("_", " "), f"{s['batches']:,}",
                        *(f"{s[k]:,.1f}" for k in LATENCY_FIGURES))
    console.print(lat)
    if r.top:
        t = Table(title=f"top of book, {len(r.top)} most traded stocks", show_edge=False, box=None,
                  pad_edge=False, title_justify="left")
        for col in ("symbol", "state", "bid shares", "bid", "ask", "ask shares", "volume", "vwap"):
            t.add_column(col, justify="left" if col in ("symbol", "state") else "right")
        for s in r.top:
            t.add_row(s["symbol"], s["state"], f"{s['bid_shares']:,}",
                      f"{price4_to_float(s['bid_price']):,.4f}" if s["bid_shares"] else "-",
                      f"{price4_to_float(s['ask_price']):,.4f}" if s["ask_shares"] else "-",
                      f"{s['ask_shares']:,}", f"{s['volume']:,}", f"{price4_to_float(s['vwap']):,.4f}")
        console.print(t)


@bench.command("pipeline")
@click.option("--messages", type=Count(), default="10M", show_default=True, help="Size of the generated day.")
@click.option("--stocks", type=STOCKS, default=2000, show_default=True)
@click.option("--seed", type=SEED, default=1, show_default=True)
@click.option("--batch-bytes", type=BYTES, default=64 << 10, show_default=True)
@click.option("--small-batch", type=BYTES, default=1 << 10, show_default=True, help="Second batch size for the hand-off-only runs.")
@click.option("--net-messages", type=Count(), default="1M", show_default=True, help="Prefix of the day sent over loopback.")
@click.option("--mold-pps", type=POSITIVE, default=20_000.0, show_default=True, help="MoldUDP64 packets per second offered.")
@click.option("--repeat", type=RUNS, default=2, show_default=True, help="Best of this many runs (file and hand-off runs).")
@click.option("--no-peers", is_flag=True, help="Only itchflow's own figures.")
@click.option("--pin", type=CPUS, default="0,1", show_default=True, help="producer,consumer CPUs ('' = no pinning).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_pipeline(messages, stocks, seed, batch_bytes, small_batch, net_messages, mold_pps, repeat, no_peers, pin,
                   as_json) -> None:
    """File, tail, SoupBinTCP and MoldUDP64 through ring -> books, against in-process and
    Python queues (multiprocessing.Queue, faster-fifo), ratios taken in the same run."""
    from itchflow.bench import pipeline as bench_pipeline_mod

    echo = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    r = bench_pipeline_mod.run(messages, stocks, seed, batch_bytes, small_batch, net_messages, mold_pps, repeat,
                               not no_peers, pin, echo=echo)
    if as_json:
        click.echo(json.dumps(r))
    else:
        bench_pipeline_mod.print_report(r)
