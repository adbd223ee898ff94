"""``itchflow compare``: every ingestion path on equal terms on this machine."""

from __future__ import annotations

import json
import sys

import click

from itchflow.cli import main
from itchflow.cli.params import POSITIVE, SECONDS, SEED, Count


@main.command("compare")
@click.option("--messages", type=Count(), default="1M", show_default=True, help="Messages in the generated day.")
@click.option("--rate", type=POSITIVE, default=100_000, show_default=True,
              help="Paced rate (messages/s) for the hand-off latency; a burst of the same prefix gives queueing.")
@click.option("--paced-seconds", type=SECONDS, default=1.0, show_default=True,
              help="Length of the paced prefix in seconds at --rate.")
@click.option("--paths", default="", help="Comma-separated rows (default all): inprocess, ring_threads, "
              "ring_processes, tail, udp_recv, udp_recvmmsg, tpacket, af_xdp, hybrid, hybrid_xdp.")
@click.option("--net", type=click.Choice(["auto", "veth", "loopback"]), default="auto", show_default=True,
              help="Network rows over a veth pair between two namespaces (root), or loopback.")
@click.option("--seed", type=SEED, default=7, show_default=True)
@click.option("--stocks", default=100, show_default=True)
@click.option("--no-perf", is_flag=True, help="Do not count system calls with perf.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Draw paths.png (each method's packet path) and latency_ccdf.png into this folder.")
@click.option("--markdown", is_flag=True, help="Also print the table in Markdown (for the README).")
def compare_command(messages, rate, paced_seconds, paths, net, seed, stocks, no_perf, as_json, plot_dir,
                    markdown) -> None:
    """Send one generated day through every ingestion path into the same books; measure each."""
    from itchflow.cli.progress import output_console
    from itchflow.compare import run_compare
    from itchflow.compare.render import markdown_table, print_report

    console = output_console()
    err = click.get_text_stream("stderr")
    from itchflow.compare import ORDER

    keys = [p.strip() for p in paths.split(",") if p.strip()] or None
    unknown = [k for k in keys or () if k not in ORDER]
    if unknown:
        click.echo(f"error: unknown path(s) {', '.join(unknown)} (known: {', '.join(ORDER)})", err=True)
        sys.exit(2)
    done: list = []

    def on_row(row) -> None:
        done.append(row)
        if not as_json:
            err.write(f"  {row.key}: {row.status}{' (' + row.reason + ')' if row.reason else ''}\n")
            err.flush()

    if plot_dir:
        try:   # fail now, not after the run
            import matplotlib  # noqa: F401
        except ImportError:
            click.echo("error: --plot needs matplotlib: pip install matplotlib (or itchflow[bench])", err=True)
            sys.exit(1)
    if not as_json:
        err.write(f"itchflow compare: generating {messages:,} messages, then each path in turn\n")
    try:
        report = run_compare(messages=messages, rate=rate, paths=keys, seed=seed, stocks=stocks,
                             paced_seconds=paced_seconds, net=net, count_syscalls=False if no_perf else None,
                             on_row=on_row)
    except KeyboardInterrupt as e:
        # everything was removed on the way out (run_compare's cleanup): show the rows done
        report = getattr(e, "report", None)
        if report is not None and report.rows:
            if as_json:
                click.echo(json.dumps(report.to_dict(), default=_plain))
            else:
                print_report(report, console)
        click.echo(f"interrupted after {len(done)} row(s)", err=True)
        sys.exit(130)
    except (OSError, ValueError, RuntimeError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    if plot_dir:
        from itchflow.compare.pictures import draw_all

        try:
            files = draw_all(report, plot_dir)
        except RuntimeError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
    if as_json:
        click.echo(json.dumps(report.to_dict(), default=_plain))
    else:
        print_report(report, console)
        if markdown:
            click.echo(markdown_table(report))
        if plot_dir:
            click.echo("pictures: " + ", ".join(files))


def _plain(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
