"""``itchflow compare``: every ingestion path on equal terms on this machine."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import click

from itchflow.cli import main
from itchflow.cli.gen import check_day_messages
from itchflow.cli.params import POSITIVE, SECONDS, SEED, STOCKS, Count


def _path_keys(ctx, param, text: str | None) -> list[str] | None:
    """--paths: the rows it names (None: all of them). One that names none is a usage error,
    as an empty list of symbols is elsewhere."""
    from itchflow.compare import ORDER

    if text is None:
        return None
    keys = [p.strip() for p in text.split(",") if p.strip()]
    if not keys:
        raise click.BadParameter(f"{text!r} names no path (known: {', '.join(ORDER)})")
    unknown = [k for k in keys if k not in ORDER]
    if unknown:
        raise click.BadParameter(f"unknown path(s) {', '.join(unknown)} (known: {', '.join(ORDER)})")
    return keys


@main.command("compare")
@click.option("--messages", type=Count(), default="1M", show_default=True, help="Messages in the generated day.")
@click.option("--rate", type=POSITIVE, default=100_000, show_default=True,
              help="Paced rate (messages/s) for the hand-off latency; a burst of the same prefix gives queueing.")
@click.option("--paced-seconds", type=SECONDS, default=1.0, show_default=True,
              help="Length of the paced prefix in seconds at --rate.")
@click.option("--paths", default=None, callback=_path_keys,
              help="Comma-separated rows (default all): inprocess, ring_threads, "
              "ring_processes, tail, udp_recv, udp_recvmmsg, tpacket, af_xdp, hybrid, hybrid_xdp.")
@click.option("--net", type=click.Choice(["auto", "veth", "loopback"]), default="auto", show_default=True,
              help="Network rows over a veth pair between two namespaces (root), or loopback.")
@click.option("--seed", type=SEED, default=7, show_default=True)
@click.option("--stocks", type=STOCKS, default=100, show_default=True, help="Stocks in the generated day.")
@click.option("--no-perf", is_flag=True, help="Do not count system calls with perf.")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as one JSON object.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), default=None,
              help="Draw paths.png (each method's packet path) and latency_ccdf.png into this folder.")
@click.option("--markdown", is_flag=True, help="Also print the table in Markdown (for the README).")
def compare_command(messages, rate, paced_seconds, paths, net, seed, stocks, no_perf, as_json, plot_dir,
                    markdown) -> None:
    """Send one generated day through every ingestion path into the same books; measure each.

    Exit status 1 when a row failed or its books differ from the baseline's (a row that could
    not run here, with its reason, does not count), 130 when interrupted."""
    from itchflow.cli.progress import output_console
    from itchflow.compare import run_compare
    from itchflow.compare.render import markdown_table, print_report

    console = output_console()
    err = sys.stderr
    check_day_messages(messages, stocks=stocks)   # gen's bounds, before any work
    _check_net(net, paths)
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
        _check_plot_folder(plot_dir)
    if not as_json:
        err.write(f"itchflow compare: generating {messages:,} messages, then each path in turn\n")
    try:
        report = run_compare(messages=messages, rate=rate, paths=paths, seed=seed, stocks=stocks,
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
    if report.left_behind_removed and not as_json:
        err.write(f"itchflow compare: removed what killed runs left: {', '.join(report.left_behind_removed)}\n")
    # the report first: a picture that cannot be drawn after all (the disk filled, the folder
    # went) must not lose the run
    if as_json:
        click.echo(json.dumps(report.to_dict(), default=_plain))
    else:
        print_report(report, console)
        if markdown:
            click.echo(markdown_table(report))
    if plot_dir:
        from itchflow.compare.pictures import draw_all

        try:
            files = draw_all(report, plot_dir)
        except (OSError, RuntimeError) as e:
            click.echo(f"error: --plot {plot_dir}: the pictures were not drawn: {e}", err=True)
            sys.exit(1)
        if not as_json:
            click.echo("pictures: " + ", ".join(files))
    bad = report.failed_rows()
    if bad:
        click.echo("itchflow compare: " + "; ".join(bad), err=True)
        sys.exit(1)


def _check_net(net: str, paths: list[str] | None) -> None:
    """--net veth asked outright for rows that need it: refuse now, not after the day is made,
    when it cannot be had (not root, no namespace helper). --net auto says why in each row."""
    from itchflow.compare import ORDER
    from itchflow.compare.net import veth_unavailable
    from itchflow.compare.paths import PATHS

    if net != "veth" or not any(PATHS[k].family == "network" for k in (paths or ORDER)):
        return
    why = veth_unavailable()
    if why is not None:
        raise click.BadParameter(f"veth: {why}", param_hint="'--net'")


def _check_plot_folder(folder: str) -> None:
    """Refuse now, not after the whole run, a --plot folder that cannot be made or written:
    make it (and any missing parents), write a file in it, then remove what was made (a run
    that fails leaves nothing behind; drawing makes it again)."""
    missing, path = [], os.path.abspath(folder)
    while not os.path.isdir(path) and path != os.path.dirname(path):
        missing.append(path)
        path = os.path.dirname(path)
    made = []
    try:
        for path in reversed(missing):
            os.mkdir(path)
            made.append(path)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise click.BadParameter(f"{folder!r}: cannot write pictures there: {e.strerror or e}",
                                 param_hint="--plot") from None
    finally:
        for path in reversed(made):
            try:
                os.rmdir(path)
            except OSError:
                pass


def _plain(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
