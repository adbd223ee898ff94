"""``itchflow lobster``, ``itchflow bars`` and ``itchflow auctions``: the research outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from itchflow.cli import main
from itchflow.cli.book import report_losses
from itchflow.cli.decode import fail, warn_capture, warn_unknown_types
from itchflow.cli.params import (
    IMAGE, IMAGE_IN_MADE_FOLDER, INPUT_PATH, INTERVAL, LOBSTER_LEVELS, TIME_TEXT, symbols_option, table_path,
)
from itchflow.cli.progress import progress_total
from itchflow.sinks.output import folders_made_for


def _interrupted(what: str, detail: str = "nothing more was written") -> None:
    click.echo(f"itchflow: {what} interrupted; {detail}", err=True)
    sys.exit(130)


def _errors():
    from itchflow.errors import ITCHFormatError

    return (ITCHFormatError, OSError, KeyError, ValueError, RuntimeError)


@main.command("lobster")
@click.argument("path", type=INPUT_PATH)
@click.option("--symbols", "-s", required=True, help="Comma-separated symbols.")
@click.option("--levels", "-n", default=10, show_default=True, type=LOBSTER_LEVELS,
              help="Order-book levels per side.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Directory for the files.")
@click.option("--start", type=TIME_TEXT, default="09:30", show_default=True, help="HH:MM[:SS[.fffffffff]]: first time written (the book "
                                                                  "is built from the start of the file).")
@click.option("--end", type=TIME_TEXT, default="16:00", show_default=True, help="HH:MM[:SS[.fffffffff]]: messages before this are written.")
@click.option("--date", default=None, callback=lambda ctx, param, v: _date_option(v),
              help="YYYY-MM-DD for the file names (default: from the input's name; needed when it holds none).")
@click.option("--parquet", is_flag=True, help="Parquet files (same columns) instead of LOBSTER's CSV.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def lobster_command(path, symbols, levels, out, start, end, date, parquet, quiet) -> None:
    """LOBSTER message and order-book files of chosen stocks (one pair per stock)."""
    from itchflow.cli.progress import progress_bar
    from itchflow.sinks.lobster import lobster

    capture: dict = {}
    books: list = []
    try:
        with folders_made_for(out), progress_bar("lobster", progress_total(path), quiet) as update:
            days = lobster(path, symbols, levels, start=start, end=end, date=date, out=out, parquet=parquet,
                           tables=False, progress=update, capture_stats=capture, on_books=books.append)
    except KeyboardInterrupt:
        _interrupted("lobster", "its unfinished files (.part) were removed")
    except _errors() as e:
        fail(e, path)
    report_losses(books[0], capture, ": the files are built without them", path, list(days),
                  backwards="each row is in or out of the window by its own stamp, the book row after it in file "
                            "order")
    for sym, d in days.items():
        skipped = ", ".join(f"{k} {v:,}" for k, v in d.skipped.items())
        click.echo(f"{sym}: {d.rows:,} rows -> {Path(d.files[0]).name}, {Path(d.files[1]).name}"
                   + (f"  (not written: {skipped})" if skipped else ""))


@main.command("bars")
@click.argument("path", type=INPUT_PATH)
@click.option("--every", "-e", type=INTERVAL, default="1min", show_default=True, help="Interval: 1s, 500ms, 1min, 5min, 1h ...")
@click.option("--symbols", "-s", default=None, help="Comma-separated symbols or stock locate numbers (default: every stock).")
@click.option("--out", "-o", required=True, type=table_path("parquet", "pq", "csv"), help="Parquet (or .csv) file.")
@click.option("--start", type=TIME_TEXT, default="09:30", show_default=True, help="HH:MM[:SS[.fffffffff]]: the grid's first interval.")
@click.option("--end", type=TIME_TEXT, default="16:00", show_default=True, help="HH:MM[:SS[.fffffffff]]: the grid's end.")
@click.option("--plot", type=IMAGE, default=None,
              help="Also draw price, spread and volume of one stock to this PNG (needs matplotlib).")
@click.option("--plot-symbol", default=None, help="The stock to draw (default: the first of --symbols).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def bars_command(path, every, symbols, out, start, end, plot, plot_symbol, quiet) -> None:
    """Per stock and interval: the quote at the interval's end, time-weighted spread, and
    trade bars (OHLC, volume, VWAP, count) from printable executions and hidden trades."""
    from itchflow.cli.progress import progress_bar
    from itchflow.sinks.bars import bars

    symbols = symbols_option(symbols)
    capture: dict = {}
    books: list = []
    late: dict = {}
    try:
        with progress_bar("bars", progress_total(path), quiet) as update:
            table = bars(path, every, symbols, start=start, end=end, progress=update, capture_stats=capture,
                         on_books=books.append, past_the_day=late)
        if plot:   # what the plot draws is there, before the table is written (probe 32)
            from itchflow.sinks.research_plots import bars_plot, bars_rows

            first = symbols[0] if symbols else (table["symbol"][0].as_py() if table.num_rows else None)
            if not (plot_symbol or first):   # (it said "no bars for ''": probe 52)
                raise ValueError(f"{path}: no stock quoted or traded within the bars' window, so there is nothing "
                                 f"to plot (leave out --plot for the table alone)")
            sym = _plot_symbol(table, plot_symbol or first)
            bars_rows(table, sym)
            _check_plot_folder(plot)
        _write_table(table, out, path)
        if plot:
            bars_plot(table, sym, plot, f"{every} bars")
    except KeyboardInterrupt:
        _interrupted("bars")
    except _errors() as e:
        fail(e, path)
    report_losses(books[0], capture, ": the bars are built without them", path, symbols or None,
                  backwards="an interval's quote is its stock's quote before the first of its quote changes stamped "
                            "at or after the interval's end, in file order; a trade is in the interval of its stamp")
    if late.get("trades"):
        click.echo(f"itchflow: warning: {late['trades']:,} trades ({late['shares']:,} shares) stamped at or after "
                   "24:00 (past the day) are in no bar", err=True)
    click.echo(f"wrote {table.num_rows:,} bars ({len(table['symbol'].unique())} stocks) to {out}"
               + (f"; plot {plot}" if plot else ""))


@main.command("auctions")
@click.argument("path", type=INPUT_PATH)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Directory for crosses.parquet and imbalances.parquet.")
@click.option("--symbols", "-s", default=None, help="Comma-separated symbols or stock locate numbers (default: every stock).")
@click.option("--plot", type=IMAGE_IN_MADE_FOLDER, default=None,
              help="Also draw the imbalance path into the close of one stock to this PNG.")
@click.option("--plot-symbol", default=None, help="The stock to draw (default: the first of --symbols, "
                                                   "else the one with the largest closing cross).")
@click.option("--cross-type", default="C", show_default=True, metavar="[O|C|H]",
              callback=lambda ctx, param, v: _cross_type(v),
              help="Which cross the plot shows: O opening, C closing, H halt or IPO (any case).")
@click.option("--quiet", "-q", is_flag=True, help="Taken as every command takes it (auctions shows no progress bar).")
def auctions_command(path, out, symbols, plot, plot_symbol, cross_type, quiet) -> None:
    """Opening, closing, halt and IPO crosses per stock and the NOII series before each."""
    from itchflow.sinks.auctions import auctions

    symbols = symbols_option(symbols)
    capture: dict = {}
    read: dict = {}
    out_of_range: dict = {}
    odd: dict = {}
    try:
        with folders_made_for(out):   # (a failure leaves no empty OUT it made)
            result = auctions(path, symbols, capture_stats=capture, read_stats=read, out_of_range=out_of_range,
                              anomalies=odd)
            if plot:   # what the plot draws is there, before any table is written (probe 32)
                from itchflow.sinks.research_plots import imbalance_plot, imbalance_rows

                sym = _plot_symbol(result.imbalances,
                                   plot_symbol or (symbols[0] if symbols else _largest_cross(result.crosses, cross_type)))
                imbalance_rows(result.imbalances, sym, cross_type.upper())
            inside = plot is not None and _inside(plot, out)   # (its folder may be made with OUT)
            if plot and not inside:   # a plot elsewhere that cannot be written: said before OUT is made
                _check_plot_folder(plot)
            Path(out).mkdir(parents=True, exist_ok=True)
            if inside:
                _check_plot_folder(plot)
            # both written before either is renamed into place: a failure on the second (a full
            # disk) left one day's crosses beside another day's imbalances, whose cross_row
            # then pointed at rows of the wrong day
            _write_tables([(result.crosses, str(Path(out) / "crosses.parquet")),
                           (result.imbalances, str(Path(out) / "imbalances.parquet"))], path)
            if plot:
                imbalance_plot(result, sym, plot, cross_type.upper())
    except KeyboardInterrupt:
        _interrupted("auctions")
    except _errors() as e:
        fail(e, path)
    warn_capture(capture, ": the tables are built without them", path)
    if out_of_range:
        click.echo("itchflow: warning: prices past Price(4)'s largest (200,000.0000) written as NaN: "
                   + ", ".join(f"{k} {v:,}" for k, v in out_of_range.items()), err=True)
    if any(odd.values()):   # (said nothing, where the books count both: probe 32)
        click.echo("itchflow: warning: written as sent: " + ", ".join(
            text for n, text in ((odd["unknown_locate"], f"{odd['unknown_locate']:,} crosses and NOII messages of a "
                                                          "locate no stock directory (R) message names"),
                                 (odd["duplicate_match"], f"{odd['duplicate_match']:,} crosses reusing an earlier "
                                                           "cross's match number"),
                                 (odd["imbalance_past_int64"], f"{odd['imbalance_past_int64']:,} imbalances of 2^63 "
                                  "shares or more, whose signed_imbalance is null (imbalance_shares exact)"))
            if n), err=True)
    warn_unknown_types(sum(read.get("unknown_by_type", {}).values()))
    click.echo(f"wrote {result.crosses.num_rows:,} crosses and {result.imbalances.num_rows:,} imbalance "
               f"messages to {out}" + (f"; plot {plot}" if plot else ""))


def _cross_type(value: str) -> str:
    """--cross-type as a letter of O, C, H in any case (click's Choice showed them lower-cased)."""
    if str(value).upper() not in ("O", "C", "H"):
        raise click.BadParameter(f"{value!r} is not one of O, C, H", param_hint="--cross-type")
    return str(value).upper()


def _date_option(value):
    """--date checked as the options are (a bad one was exit 1 after the day was read: probe 34)."""
    if value is None:
        return None
    from itchflow.sinks._clock import trading_date

    try:
        return trading_date(None, value)
    except ValueError as e:
        raise click.BadParameter(str(e).replace("date: ", ""), param_hint="--date") from None


def _plot_symbol(table, name: str) -> str:
    """The stock a plot draws, by the name its rows carry: a name of digits no row carries is a
    locate number (`-s 1 --plot` looked for rows of a stock named "1": probe 33)."""
    import pyarrow.compute as pc

    from itchflow.book.records import symbol_upper

    name = symbol_upper(str(name).strip())
    if name.isdigit() and not pc.any(pc.equal(table["symbol"], name)).as_py():
        rows = table.filter(pc.equal(table["stock_locate"], int(name)))
        if rows.num_rows:
            return rows["symbol"][0].as_py()
    return name


def _inside(path: str, folder: str) -> bool:
    """Whether path's folder is folder or below it."""
    here, top = os.path.abspath(os.path.dirname(os.path.abspath(path))), os.path.abspath(folder)
    return here == top or here.startswith(top + os.sep)


def _check_plot_folder(plot: str) -> None:
    """The plot's folder, checked once the command made what it makes and before any table is
    written (a missing folder failed the plot after the tables were written: probe 30)."""
    from itchflow.cli.params import cannot_write_beside

    why = cannot_write_beside(plot)
    if why:
        raise OSError(f"{plot}: cannot write a file there: {why}")


def _write_table(table, out: str, source=None) -> None:
    _write_tables([(table, out)], source)


def _write_tables(pairs, source=None) -> None:
    """Write every (table, path) under NAME.part, then rename them all (none if any fails)."""
    import contextlib

    from itchflow.sinks.output import output_file

    with contextlib.ExitStack() as stack:
        for table, out in pairs:
            tmp = stack.enter_context(output_file(out, inputs=(source,)))
            if out.lower().endswith(".csv"):
                import pyarrow.csv as pcsv

                pcsv.write_csv(table, tmp)
            else:
                import pyarrow.parquet as pq

                pq.write_table(table, tmp)


def _largest_cross(crosses, cross_type: str) -> str:
    import pyarrow.compute as pc

    t = crosses.filter(pc.equal(crosses["cross_type"], cross_type.upper()))
    if t.num_rows == 0:
        raise ValueError(f"no crosses of type {cross_type!r} to plot (--cross-type chooses another; leave out "
                         f"--plot for the tables alone)")
    return t["symbol"][int(pc.index(t["shares"], pc.max(t["shares"])).as_py())].as_py()
