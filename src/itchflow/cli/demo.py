"""``make demo``: a seeded trading day through itchflow, showing the commands as it runs them.

The day is generated once into the demo folder and reused. Every step is the real CLI
command (run in-process), printed first so it can be copied.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path

import click

from itchflow.cli.progress import output_console

console = output_console()


def run_command(args: list[str]) -> None:
    """Run an ``itchflow`` subcommand in this process, as the shell would."""
    from itchflow.cli import main

    console.print(f"\n[bold cyan]$ itchflow {shlex.join(args)}[/bold cyan]")
    try:
        main.main(args, prog_name="itchflow", standalone_mode=False)
    except SystemExit as e:
        if e.code:
            raise
    except click.ClickException as e:   # as the shell shows it: the message, exit 2 (or its code)
        e.show()
        raise SystemExit(e.exit_code) from None


def most_active_symbol(path: Path) -> tuple[str, int]:
    """The stock with the most add orders, by its directory entry."""
    import numpy as np

    import itchflow

    d = itchflow.read(path, types="RA")
    locates, counts = np.unique(d["A"]["stock_locate"], return_counts=True)
    top = int(locates[np.argmax(counts)])
    r = d["R"]
    symbol = r["stock"][r["stock_locate"] == top][0].decode().strip()
    return symbol, top


def show_orders(rows: list[dict]) -> None:
    """A compact view of order events: only the columns each type has, prices in dollars."""
    from rich.table import Table

    from itchflow import price4_to_float
    from itchflow.cli.decode import format_timestamp

    t = Table(box=None, show_edge=False, pad_edge=False)
    for col in ("seq", "type", "time", "order ref", "side", "shares", "price", "executed",
                "cancelled", "new ref"):
        t.add_column(col, justify="left" if col in ("type", "side", "time") else "right", no_wrap=True)

    def num(v):
        return "" if v is None else f"{v:,}"

    for r in rows:
        price = r.get("price")
        t.add_row(str(r["sequence"]), r["message_type"], format_timestamp(r["timestamp"]),
                  num(r.get("order_reference_number") or r.get("original_order_reference_number")),
                  r.get("buy_sell_indicator") or "", num(r.get("shares")),
                  "" if price is None else f"{price4_to_float(price):,.4f}", num(r.get("executed_shares")),
                  num(r.get("cancelled_shares")), num(r.get("new_order_reference_number")))
    console.print(t)


def compare_demo(folder: Path) -> None:
    """A short ``itchflow compare``: a small day through every ingestion path into the same books
    (network rows over a veth pair between namespaces only when run as root)."""
    console.print("\n[bold]Which path when[/bold]: the same small day through every ingestion path, "
                  "latency paced (the hand-off) and in a burst (queueing):")
    paths = [] if os.geteuid() == 0 else ["--paths", "inprocess,ring_threads,ring_processes,tail"]
    try:   # the pictures need matplotlib (the bench extra); the comparison itself does not
        import matplotlib  # noqa: F401
        plot = ["--plot", str(folder / "compare")]
    except ImportError:
        plot = []
        console.print("[dim](no matplotlib here: pip install 'itchflow\\[bench]' to draw the packet paths "
                      "and the latency CCDF)[/dim]")
    run_command(["compare", "--messages", "200000", "--rate", "50000", "--paced-seconds", "0.5", *plot, *paths])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="itchflow demo")
    p.add_argument("--dir", default=".cache/demo", help="Where the generated day and outputs go.")
    p.add_argument("--messages", type=int, default=5_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--stocks", type=int, default=500)
    a = p.parse_args(argv)
    from itchflow.sim.generator import MAX_STOCKS, minimum_messages

    if a.seed < 0:
        p.error(f"--seed must be >= 0, not {a.seed}")
    if not 1 <= a.stocks <= MAX_STOCKS:
        p.error(f"--stocks must be between 1 and {MAX_STOCKS:,}, not {a.stocks}")
    if a.messages < minimum_messages(a.stocks):
        p.error(f"a day of {a.stocks} stocks needs at least {minimum_messages(a.stocks):,} messages "
                f"(--messages {a.messages:,})")

    folder = Path(a.dir)
    folder.mkdir(parents=True, exist_ok=True)
    day = folder / f"day-{a.messages}-seed{a.seed}-stocks{a.stocks}.itch"
    console.rule("[bold]itchflow demo: a generated TotalView-ITCH 5.0 day")
    t0 = time.perf_counter()
    if day.exists():
        console.print(f"using the day generated earlier: {day} ({day.stat().st_size / 1e6:,.0f} MB)")
    else:
        # gen writes DAY.part and renames it when whole: a demo stopped midway leaves no cut day
        run_command(["gen", str(day), "--messages", str(a.messages), "--seed", str(a.seed),
                     "--stocks", str(a.stocks)])

    run_command(["stats", str(day)])

    symbol, locate = most_active_symbol(day)
    adds = folder / f"{symbol.lower()}-orders.parquet"
    run_command(["decode", str(day), "--types", "AFEXDU", "--symbol", symbol, "--out", str(adds)])

    import pyarrow.parquet as pq

    table = pq.read_table(adds)
    console.print(f"\n[bold]{adds}[/bold]: {table.num_rows:,} order events of {symbol} (locate {locate}); the first few:")
    show_orders(table.slice(0, 10).to_pylist())

    # The whole day through the pipeline: a reader process, a shared-memory ring, the books of
    # every stock in this process; the report ends with the top of book of the most traded.
    pin = "0,1" if len(os.sched_getaffinity(0)) >= 2 else ""
    console.print("[dim](read flat out: the publish -> consume latency below is mostly queueing, time spent in a "
                  "full ring; the comparison at the end measures the hand-off itself at a paced rate)[/dim]")
    run_command(["run", "--source", str(day), "--top", "8", *(["--pin", pin] if pin else [])])

    console.print("\n[bold]From Python[/bold] (numpy structured arrays, Arrow/pandas on request; "
                  "prices are raw Price(4) integers):")
    console.print("[dim]>>> import itchflow\n"
                  f">>> d = itchflow.read({str(day)!r}, types='AE')\n"
                  ">>> d['A']['price'], d['E']['executed_shares']    # numpy columns\n"
                  ">>> d.to_pandas('A')                               # a DataFrame\n"
                  ">>> from itchflow import Books, price4_to_float\n"
                  f">>> books = Books().replay({str(day)!r})\n"
                  + f">>> books.bbo([{symbol!r}])".ljust(52) + "# one row per symbol\n"
                  + f">>> bids, asks = books.depth({symbol!r}, 5)".ljust(52) + "# fields price, shares, orders\n"
                  + ">>> price4_to_float(bids['price'])".ljust(52) + "# dollars[/dim]")
    _show_books_from_python(day, symbol)
    compare_demo(folder)
    console.rule(f"[bold]demo done in {time.perf_counter() - t0:.1f} s")


def _show_books_from_python(day: Path, symbol: str) -> None:
    """Run the lines printed above, so the demo shows what they return."""
    from itchflow import Books

    books = Books().replay(day)
    console.print(books.bbo([symbol]), markup=False)
    bids, asks = books.depth(symbol, 5)
    console.print(f"bids {bids.dtype.names}:\n{bids}\nasks:\n{asks}", markup=False)


if __name__ == "__main__":
    main()
