"""``itchflow stats`` and ``itchflow decode``."""

from __future__ import annotations

import json
import os
import sys

import click

from itchflow.cli import bench, main
from itchflow.cli.progress import progress_total
from itchflow.cli.signals import exit_if_interrupted
from itchflow.cli.params import INPUT_PATH, MESSAGE_TYPES, RUNS, SEED, Count, table_path
from itchflow.wire.itch import DAY_NS


def format_timestamp(ns: int | None) -> str:
    """Nanoseconds since midnight -> HH:MM:SS.nnnnnnnnn."""
    if ns is None:
        return "-"
    s, frac = divmod(int(ns), 1_000_000_000)
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.{frac:09d}"



def fail(error: Exception, path=None) -> None:
    """Print a clean one-line error (no traceback) and exit 1 (130 after a Ctrl-C: its doing).
    path: the day the command read. A KeyError (a symbol or locate the day does not list)
    names it, and says when the file is empty: the usual sign of a failed download (probe 52:
    "no stock directory (R) message for AAPL" of a 0-byte file, naming neither)."""
    exit_if_interrupted()
    text = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error  # str() quotes it
    if isinstance(error, KeyError) and path is not None:
        text = f"{path}: {text}"
        try:
            if path != "-" and os.path.isfile(path) and os.path.getsize(path) == 0:   # (not a file named -: probe 56)
                text += " (the file is empty: 0 bytes)"
        except (OSError, ValueError):
            pass
    if isinstance(error, UnicodeEncodeError) and _undecodable_name(error.object):
        text = _name_not_utf8(error.object)
    click.echo(f"itchflow: error: {text}", err=True)
    sys.exit(1)


def _undecodable_name(name) -> bool:
    """A str holding bytes the file system's encoding could not decode (surrogate escapes)."""
    return isinstance(name, str) and any("\udc80" <= c <= "\udcff" for c in name)


def _name_not_utf8(name: str) -> str:
    """Probe 57: pyarrow takes only UTF-8 file names, and said "'utf-8' codec can't encode
    characters in position 28-29: surrogates not allowed", naming no file."""
    shown = os.fsencode(name).decode("utf-8", "backslashreplace")
    return (f"{shown}: pyarrow writes only file names in UTF-8, and this one is not (bytes the file system "
            f"encoding, {sys.getfilesystemencoding()}, could not read); with a UTF-8 locale (LC_ALL=C.UTF-8) "
            f"or PYTHONUTF8=1, a name written in UTF-8 works")


def capture_losses(capture: dict) -> str | None:
    """What a capture lost, in words (None when nothing): its gaps, malformed packets and
    frames whose headers do not fit them."""
    if not (capture.get("gaps") or capture.get("malformed_packets") or capture.get("bad_frames")
            or capture.get("after_end_of_session") or capture.get("unknown_blocks")):
        return None
    return (f"the capture has {counted(capture.get('gaps', 0), 'gap')} ("
            f"{counted(capture.get('missing_messages', 0), 'message')} missing) and "
            f"{counted(capture.get('malformed_packets', 0), 'malformed packet')}{cut_packet(capture)}"
            f"{bad_frames(capture)}{after_end(capture)}{unknown_blocks(capture)}")


def unknown_blocks(capture: dict) -> str:
    """A pcapng's blocks of types no reader here knows, if any: skipped, as the format asks (a
    packet block whose type was damaged among them: probe 45)."""
    n = capture.get("unknown_blocks")
    return f", {counted(n, 'pcapng block')} of unknown types skipped" if n else ""


def after_end(capture: dict) -> str:
    """A capture's packets past its session's end of session, if any: not delivered (every
    command but stats said nothing of them, exit 0: probe 36)."""
    n, m = capture.get("after_end_of_session"), capture.get("messages_after_end_of_session")
    carrying = f" carrying {counted(m, 'message')}" if m else ""
    return (f", {counted(n, 'packet')}{carrying} past its end of session (data after the end, or an end "
            f"contradicted by data already delivered), not delivered" if n else "")


def counted(n: int, thing: str) -> str:
    """'1 gap', '2 gaps' ("the capture has 1 gaps": probe 34)."""
    return f"{n:,} {thing}{'' if n == 1 else 's'}"


def bad_frames(capture: dict) -> str:
    """The frames of a capture whose own IP or UDP lengths do not fit them, if any (not read)."""
    n = capture.get("bad_frames")
    return f", {n:,} damaged frames (IP or UDP lengths that do not fit the frame, not read)" if n else ""


def cut_packet(capture: dict) -> str:
    """Which of a capture's malformed packets is the one its file ends inside, if any (strict=False)."""
    cut = capture.get("cut_at_end_packet")
    return f" (the file ends inside packet {cut:,}, not read)" if cut else ""


def warn_unknown_types(n: int) -> None:
    """One line on stderr when messages of unknown types were skipped (every command says it so)."""
    if n:
        click.echo(f"itchflow: warning: {n:,} messages of unknown types skipped", err=True)


def warn_capture(capture: dict, consequence: str, path=None) -> None:
    """One stderr line when a capture lost something: its losses, then ``consequence`` (what
    the output is therefore, with its own separator), naming ``path`` when given."""
    lost = capture_losses(capture)
    if lost:
        click.echo(f"itchflow: warning: {f'{path}: ' if path else ''}{lost}{consequence}", err=True)


@main.command()
@click.argument("path", type=INPUT_PATH)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--lenient", is_flag=True, help="Count malformed capture packets instead of failing.")
def stats(path: str, as_json: bool, quiet: bool, lenient: bool) -> None:
    """Count messages per type, bytes, time span, stocks and unknowns (framing only)."""
    from itchflow.cli.progress import progress_bar
    from itchflow.errors import ITCHFormatError
    from itchflow.decode.reader import stats as frame_stats

    try:
        with progress_bar("stats", progress_total(path), quiet or as_json) as update:
            info = frame_stats(path, strict=not lenient, progress=update)
    except (ITCHFormatError, OSError) as e:
        fail(e)
    if as_json:
        d = info.to_dict()   # by_type: every ITCH 5.0 type, 0 where none (a script's d["by_type"]["B"])
        d.pop("source")
        click.echo(json.dumps(d))
        return
    _print_stats(info)


def _print_stats(info) -> None:
    from rich.console import Console
    from rich.table import Table

    from itchflow.wire.itch import MESSAGES

    console = Console()
    rate = info.messages / info.seconds / 1e6 if info.seconds else 0.0
    console.print(f"[bold]{info.source}[/bold]")
    console.print(f"  messages {info.messages:,}   bytes {info.bytes:,}   stocks {info.stocks:,}   "
                  f"unknown {info.unknown:,}")
    console.print(f"  first {format_timestamp(info.first_timestamp_ns)}   "
                  f"last {format_timestamp(info.last_timestamp_ns)}   "
                  f"{info.seconds:.3f} s ({rate:,.1f} M msg/s)")
    if (info.last_timestamp_ns or 0) > DAY_NS:   # (a time of day in nanoseconds: probe 45)
        console.print("  [yellow]the last message is stamped past 24:00 (no time of day: a corrupt timestamp?)"
                      "[/yellow]")
    if info.timestamps_backwards:
        packet = "" if info.first_backwards_packet is None else f", packet {info.first_backwards_packet:,}"
        console.print(f"  [yellow]{info.timestamps_backwards:,} messages earlier than the message before them "
                      f"(not in time order)[/yellow]")
        console.print(f"  [yellow]the first at byte {info.first_backwards_offset:,}{packet}[/yellow]")
    table = Table(show_edge=False, box=None, pad_edge=False)
    for col in ("type", "name", "count", "share"):
        table.add_column(col, justify="right" if col in ("count", "share") else "left")
    for code, n in sorted(info.by_type.items(), key=lambda kv: -kv[1]):
        if n:
            table.add_row(code, MESSAGES[code].name, f"{n:,}", f"{100 * n / info.messages:.3f}%")
    for code, n in info.unknown_by_type.items():
        table.add_row(code, "[yellow]unknown (skipped)[/yellow]", f"{n:,}", f"{100 * n / info.messages:.3f}%")
    console.print(table)
    if info.capture:
        c = info.capture
        after, m = c.get("after_end_of_session", 0), c.get("messages_after_end_of_session", 0)
        carrying = f" carrying {counted(m, 'message')}" if m else ""
        console.print(f"  capture: {c['packets']:,} packets, {c['data_packets']:,} with data, "
                      f"{c['heartbeats']:,} heartbeats, {c['end_of_session']:,} end-of-session"
                      f"{f' ({after:,} packets{carrying} after it, not delivered)' if after else ''}, "
                      f"{c['duplicate_messages']:,} duplicate messages, {counted(c['gaps'], 'gap')} "
                      f"({counted(c['missing_messages'], 'message')} missing), {c['malformed_packets']:,} malformed"
                      f"{cut_packet(c)}, "
                      f"{c['not_udp'] + c['ip_fragments'] + c['snapped'] + c['unsupported']:,} not MoldUDP64"
                      f"{bad_frames(c)}{unknown_blocks(c)}; "
                      f"sessions {c['sessions']}")


@main.command()
@click.argument("path", type=INPUT_PATH)
@click.option("--types", "-t", type=MESSAGE_TYPES, default="AF", show_default=True,
              help="Message type letters to decode, e.g. AF or ADEU; all for every type.")
@click.option("--symbol", "-s", default=None,
              help="Only messages of this stock (via stock directory or stock field); digits: a stock locate.")
@click.option("--out", "-o", required=True, type=table_path("parquet", "csv", bare_ok=False),
              help="Output file: .parquet or .csv (one table; a message_type column tells types apart).")
@click.option("--chunk", type=click.IntRange(1), default=1 << 21, show_default=True, help="Messages decoded per piece.")
@click.option("--renumber", is_flag=True,
              help="Number every message by its place in the stream (sequence column): a capture's "
                   "unsequenced packets (anonymised captures) are otherwise all sequence 0.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def decode(path: str, types: str, symbol: str | None, out: str, chunk: int, renumber: bool, quiet: bool) -> None:
    """Decode message types to Parquet or CSV, streaming in bounded pieces. Rows are in
    sequence order (a piece at a time); with --renumber, in stream order."""
    from itchflow.cli.progress import progress_bar
    from itchflow.errors import ITCHFormatError
    from itchflow.sinks.tables import TableWriter

    unknown = 0
    capture: dict = {}
    try:
        with progress_bar("decode", progress_total(path), quiet) as update, TableWriter(out, types) as writer:
            for piece in writer.pieces(path, symbol=symbol, chunk_messages=chunk, progress=update, renumber=renumber):
                unknown += piece.info.unknown
                capture = piece.info.capture or capture   # (running totals: the last piece's are the capture's)
    except (ITCHFormatError, OSError, ValueError, KeyError) as e:
        fail(e, path)
    click.echo(f"wrote {writer.rows:,} rows ({', '.join(f'{c}={n:,}' for c, n in writer.rows_by_type.items())}) "
               f"from {writer.messages_read:,} messages to {out}")
    warn_unknown_types(unknown)   # as bbo, trades, bars and book say it (probe 24: decode alone said nothing)
    warn_capture(capture, ": the table holds the messages that arrived", path)   # (probe 42: decode alone said nothing)
    unsequenced = capture.get("unsequenced_messages", 0)   # (it added each piece's running total: probe 42)
    if unsequenced and not renumber:   # their rows' order was lost (probe 29)
        click.echo(f"itchflow: note: {unsequenced:,} messages came in unsequenced packets (sequence 0, as in "
                   "anonymised captures): their sequence column orders nothing; --renumber numbers every "
                   "message by its place in the stream", err=True)


@bench.command("decode")
@click.option("--messages", type=Count(), default="20M", show_default=True, help="Size of the generated day.")
@click.option("--seed", type=SEED, default=1, show_default=True)
@click.option("--peer-messages", type=Count(), default="200k", show_default=True, help="Prefix given to the pure-Python peers.")
@click.option("--cpp-messages", type=Count(), default="2M", show_default=True, help="Prefix given to itchcpp.")
@click.option("--repeat", type=RUNS, default=3, show_default=True, help="Best of this many runs.")
@click.option("--no-peers", is_flag=True, help="Only itchflow's own figures.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_decode(messages, seed, peer_messages, cpp_messages, repeat, no_peers, as_json) -> None:
    """Framing and decode throughput against itchfeed, itchcpp and MeatPy."""
    from itchflow.bench.decode import report, run

    r = run(messages, seed, peer_messages, cpp_messages, repeat, not no_peers)
    click.echo(json.dumps(r) if as_json else report(r))


@bench.command("capture")
@click.option("--messages", type=Count(), default="2M", show_default=True, help="Size of the generated day.")
@click.option("--seed", type=SEED, default=1, show_default=True)
@click.option("--packet-bytes", type=click.IntRange(72, 65507), default=120, show_default=True,
              help="Most bytes a MoldUDP64 packet's payload holds (72: one message of the longest type).")
@click.option("--repeat", type=RUNS, default=3, show_default=True, help="Best of this many runs.")
@click.option("--no-peers", is_flag=True, help="Only itchflow's own figures.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_capture(messages, seed, packet_bytes, repeat, no_peers, as_json) -> None:
    """stats, read and books from a day's pcap and its anonymised copy, beside the raw day and itchcpp."""
    from itchflow.bench.capture import report, run

    r = run(messages, seed, packet_bytes, repeat, not no_peers)
    click.echo(json.dumps(r) if as_json else report(r))
