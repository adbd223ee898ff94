"""``itchflow batch`` (archives of days on Dask) and ``itchflow bench batch``."""

from __future__ import annotations

import json
import sys

import click

from itchflow.cli import bench, main
from itchflow.cli.decode import capture_losses, fail
from itchflow.cli.params import (
    LOBSTER_LEVELS, MESSAGE_TYPES, POSITIVE, RUNS, SECONDS, STOCKS, TIMES, TIME_TEXT, Count, symbols_option,
)

_JOBS = ("stats", "decode", "bbo", "trades", "snapshots", "lobster", "bars", "crosses", "imbalances")  # scale.jobs.JOBS (not imported: fast start)


def _job_options(job, types, at, every, depth, levels, start, end) -> dict:
    if job == "decode":
        return {"types": types}
    if job == "lobster":
        return {"levels": levels, "start": start, "end": end}
    if job == "snapshots":
        return {"at": at, "every": every, "depth": depth if depth > 0 else -1}   # -1: every level
    if job == "bars":
        return {"every": 60 if every is None else every, "start": start, "end": end}
    return {}


@main.command("batch")
@click.argument("paths", nargs=-1, required=True)
@click.option("--job", "-j", type=click.Choice(_JOBS), required=True, help="What to compute for every day.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Output directory: a hive-partitioned Parquet dataset (date=YYYY-MM-DD/shard=K/).")
@click.option("--scheduler", default=None, help="tcp://HOST:PORT of a running Dask scheduler (default: a LocalCluster).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="LocalCluster worker processes (default: one per core).")
@click.option("--shards", type=click.IntRange(1, 4096), default=None,
              help="Locate shards per day (default: 1 when there are at least as many days as workers).")
@click.option("--symbols", "-s", default=None, help="Comma-separated symbols (default: every stock).")
@click.option("--types", "-t", type=MESSAGE_TYPES, default="AF", show_default=True, help="decode: message type letters (all: every type).")
@click.option("--at", "at", type=TIMES, default=None, help="snapshots: comma-separated times HH:MM[:SS[.fffffffff]].")
@click.option("--every", type=SECONDS, default=None,
              help="snapshots: or a snapshot every this many seconds; bars: the bar in seconds [default: 60].")
@click.option("--depth", "-n", type=click.IntRange(0), default=5, show_default=True,
              help="snapshots: levels per side (0 = all, as snapshots -n 0).")
@click.option("--levels", default=10, show_default=True, type=LOBSTER_LEVELS,
              help="lobster: order-book levels per side.")
@click.option("--start", type=TIME_TEXT, default="09:30", show_default=True,
              help="lobster, bars: HH:MM[:SS[.fffffffff]], first time written (the bars' grid starts here).")
@click.option("--end", type=TIME_TEXT, default="16:00", show_default=True,
              help="lobster, bars: HH:MM[:SS[.fffffffff]], messages before this (the bars' grid ends here).")
@click.option("--keep-scratch", is_flag=True, help="Keep the shard files of finished days.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def batch_command(paths, job, out, scheduler, workers, shards, symbols, types, at, every, depth, levels, start, end,
                  keep_scratch, as_json, quiet) -> None:
    """Run a job over an archive of days (paths, globs or fsspec URLs) on a Dask cluster.

    Days are tasks; a day split by stock locate (--shards) is one task per shard. Finished
    tasks leave markers in OUT/_itchflow: rerunning the same command resumes.
    """
    from itchflow.cli.progress import output_console
    from itchflow.errors import ITCHFormatError

    if not out.strip():
        raise click.BadParameter("give an output directory", param_hint="--out")
    symbols = symbols_option(symbols)   # -s , is a usage error, as in the single-file commands
    if job in ("snapshots", "lobster") and not symbols:   # (exit 1, where the one-day command's is 2: probe 52)
        raise click.BadParameter(f"the {job} job needs symbols, as `itchflow {job}` does", param_hint="--symbols")
    if scheduler and workers:
        fail(click.UsageError("give --scheduler or --workers, not both"))
    try:
        from itchflow.scale.batch import BatchError, batch
    except ImportError as e:
        fail(RuntimeError(f"{e}: itchflow batch needs dask: pip install 'itchflow[dask]'"))
    console = output_console()
    err = _stderr_console()
    bar = _TaskBar(err, quiet or as_json)

    def on_start(info: dict) -> None:
        dash = info["dashboard"] or "none (pip install bokeh to serve it)"
        err.print(f"scheduler {info['scheduler']}  worker threads {info['threads']}  days {info['days']}  "
                  f"tasks {info['tasks']}", highlight=False)
        err.print(f"dashboard: {dash}", highlight=False)
        if info["resumed_days"]:
            err.print(f"already done (resumed): {', '.join(info['resumed_days'])}")
        for day, why in info.get("redone_days", {}).items():
            err.print(f"redone: {day} (marked done, but {why})", highlight=False)
        if info.get("undated_days"):
            shown = ", ".join(info["undated_days"][:5]) + (" ..." if len(info["undated_days"]) > 5 else "")
            err.print(f"[yellow]warning: no date in the name of {len(info['undated_days'])} file(s), partitioned "
                      f"by the name instead (date=NAME): {shown}[/yellow]", highlight=False)
        bar.start(info["tasks"])

    options = _job_options(job, types, at, every, depth, levels, start, end)
    try:
        try:
            result = batch(list(paths), job, out, client=scheduler, shards=shards, symbols=symbols,
                           workers=workers, progress=bar.update, on_start=on_start,
                           keep_scratch=keep_scratch, **options)
        finally:
            bar.stop()
    except KeyboardInterrupt as e:
        if getattr(e, "result", None) is not None:
            _report(console, e.result, as_json)
        click.echo("interrupted: finished tasks are kept; run the same command again to resume", err=True)
        sys.exit(130)
    except BatchError as e:
        _report(console, e.result, as_json)
        fail(e)
    except (ITCHFormatError, OSError, ValueError, KeyError) as e:
        fail(e)
    _report(console, result, as_json)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


class _TaskBar:
    """A rich bar over tasks with messages per second overall (nothing when not a terminal)."""

    def __init__(self, console, quiet: bool):
        self.console, self.quiet = console, quiet
        self.bar = self.task = None

    def start(self, total: int) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]batch"), BarColumn(), MofNCompleteColumn(), TextColumn("tasks"),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=self.console,
                            transient=True)
        self.bar.start()
        self.task = self.bar.add_task("batch", total=total, rate="")

    def update(self, ev: dict) -> None:
        if self.bar is None:
            return
        rate = ev["messages"] / ev["elapsed"] / 1e6 if ev["elapsed"] > 0 else 0.0
        self.bar.update(self.task, completed=ev["done"],
                        rate=f"{ev['messages']:,} msgs  {rate:,.2f} M msg/s")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _report(console, r: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(r, default=str))
        return
    from rich.table import Table

    table = Table(show_edge=False, box=None, pad_edge=False)
    for col in ("date", "messages", "shards", "rows", "anomalies", "split s", "compute s", "write s", "task s"):
        table.add_column(col, justify="left" if col == "date" else "right", no_wrap=True)
    for d in r["days"]:
        s = d["seconds"]
        table.add_row(d["date"], f"{d['messages']:,}", str(d["shards"]), f"{d['rows']:,}",
                      f"{sum(d['anomalies'].values()):,}", f"{s['split']:.2f}", f"{s['compute']:.2f}",
                      f"{s['write']:.2f}", f"{s['tasks']:.2f}")
    for day, error in r.get("failed", {}).items():
        table.add_row(day, "[red]failed[/red]", "", "", "", "", "", "", "")
        console.print(f"[red]{day}: {error}[/red]")
    console.print(table)
    for d in r["days"]:
        if not d["messages"]:   # in an archive, nearly always a failed download or copy
            console.print(f"[yellow]{d['date']}: no messages (an empty file?)[/yellow]", highlight=False)
        unknown = d.get("unknown_by_type") or {}
        if unknown:   # as the single-file commands warn
            console.print(f"[yellow]{d['date']}: {sum(unknown.values()):,} messages of unknown types skipped ("
                          + ", ".join(f"{k} {v:,}" for k, v in unknown.items()) + ")[/yellow]", highlight=False)
        if d.get("other_stocks_anomalies"):   # as the single-file commands with --symbols say it
            console.print(f"{d['date']}: note: {d['other_stocks_anomalies']:,} anomalies in other stocks (not in "
                          "this output)", highlight=False)
        lost = capture_losses(d.get("capture") or {})
        if lost:   # the day is a capture with holes: its outputs lack those messages
            console.print(f"[yellow]{d['date']}: {lost}; its outputs lack those messages[/yellow]", highlight=False)
        if d.get("skipped"):  # lobster: messages that made no row
            console.print(f"{d['date']}: not written: " + ", ".join(f"{k} {v:,}" for k, v in d["skipped"].items()),
                          highlight=False)
    resumed = len(r.get("resumed_days", ()))
    done_before = ""
    if r["run_messages"] != r["messages"]:   # whole days, or shards of days, done by an earlier run
        whole = f"; {resumed} whole day(s) resumed" if resumed else ""
        done_before = f" (this run {r['run_messages']:,}: the rest done by an earlier run{whole})"
    console.print(f"{len(r['days'])} day(s), {r['messages']:,} messages{done_before} in {r['seconds']:.2f} s "
                  f"({r['msgs_per_s'] / 1e6:,.2f} M msg/s) on {r['threads']} worker thread(s); "
                  f"cluster start {r['startup_seconds']:.1f} s; dataset {r['out']}", highlight=False)


@bench.command("batch")
@click.option("--days", type=RUNS, default=4, show_default=True, help="Generated days in the archive.")
@click.option("--messages", type=Count(), default="5M", show_default=True, help="Messages per generated day.")
@click.option("--stocks", type=STOCKS, default=2000, show_default=True)
@click.option("--job", type=click.Choice(("bbo", "trades", "decode")), default="bbo", show_default=True)
@click.option("--workers", type=RUNS, default=2, show_default=True, help="LocalCluster worker processes.")
@click.option("--gz", is_flag=True, help="Gzip the generated days.")
@click.option("--bandwidth", type=POSITIVE, default=1.0, show_default=True, help="Projection: storage read bandwidth, GB/s.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_batch(days, messages, stocks, job, workers, gz, bandwidth, as_json) -> None:
    """An archive of generated days by one process and by a LocalCluster: speed-up, cost per
    stage (split, shard books, write) and a projected year on M workers."""
    try:
        from itchflow.scale.bench import run
    except ImportError as e:
        fail(RuntimeError(f"{e}: the batch benchmark needs dask: pip install 'itchflow[dask]'"))
    from itchflow.bench.batch import report

    r = run(days=days, messages=messages, stocks=stocks, job=job, workers=workers, gz=gz, bandwidth_gbs=bandwidth)
    click.echo(json.dumps(r) if as_json else report(r))
