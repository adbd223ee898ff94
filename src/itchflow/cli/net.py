"""``itchflow publish``, ``itchflow listen`` (MoldUDP64) and ``itchflow soup serve|fetch``."""

from __future__ import annotations

import json
import sys
import time

import click

from itchflow.cli import bench, main
from itchflow.cli.params import (
    CPU, FRACTION, HOST, INPUT_FILE, NON_NEGATIVE, POSITIVE, RING_NAME, RUNS, SECONDS, SEED, SOUP_PASSWORD, SOUP_SESSION,
    SOUP_USER, Count, Endpoint, Number, SoupField,
)

UDP_MAX_PAYLOAD = 65_535 - 20 - 8    # an IPv4 datagram's largest UDP payload
MIN_PAYLOAD = 72   # protocol.mold.feed.MIN_PAYLOAD, not imported (Numba at start-up); a test holds them equal
VETH_MAX_DATAGRAM = 1500 - 20 - 8   # the veth pair's MTU less the IPv4 and UDP headers


def _fail(error: Exception) -> None:
    from itchflow.cli.decode import fail

    fail(error)


def load_binaryfile(path: str, capture_stats: dict | None = None):
    """The whole BinaryFILE as one uint8 array (raw files memory-mapped; gzip decompressed).

    What is read into memory (a pipe, a device, gzip, a capture) is framed as it is read: bad
    framing is an error at its offset as soon as it arrives, and more than half the memory
    available is refused (``/dev/zero`` was read until the machine ran out); a mapped file is
    framed whole by the feed or store it is given to. A capture's gaps are said on stderr: its
    messages are served numbered anew, so the hole would not show downstream."""
    import numpy as np

    from itchflow.cli.decode import warn_capture
    from itchflow.errors import ITCHFormatError
    from itchflow.hw.memory import available_bytes
    from itchflow.sources.files import iter_chunks
    from itchflow.wire.binaryfile import describe, message_offsets

    parts, held, room = [], 0, available_bytes()
    capture = {} if capture_stats is None else capture_stats
    for c in iter_chunks(path, capture_stats=capture, join_runs=True):   # served numbered anew
        if c.mapping is None:   # read into memory; a mapped file is framed whole by MoldFeed / MessageStore
            _, status, pos = message_offsets(c.data, 1 << 62, np.zeros(1, np.int64))   # lengths only
            if status:
                raise ITCHFormatError(describe(c.data, pos, len(c.data), status), source=str(path),
                                      offset=(c.offset or 0) + int(pos))
            held += len(c.data)
            if room is not None and held > room // 2:
                raise ValueError(f"{path}: {held / 2**30:,.1f} GiB read and more to come; publish and soup serve "
                                 f"hold the whole day in memory, and this machine has {room / 2**30:,.1f} GiB "
                                 "available")
        parts.append(c.data)
    warn_capture(capture, "; what arrived is served, numbered anew without the holes", path)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


MIN_RATE = 1e-3


def _rate(text: str) -> float | None:
    if text == "max":
        return None
    if text == "real":
        return 1.0
    try:
        r = float(text.rstrip("x"))
    except ValueError:
        raise click.BadParameter("expected real, max or a multiple of real time such as 10",
                                 param_hint="'--rate'") from None
    if not MIN_RATE <= r < float("inf"):   # NaN, 1e-9: the send times overflowed, and it went flat out
        raise click.BadParameter(f"the rate must be a number from {MIN_RATE:g} (1,000 times slower than "
                                 f"real time) up, or max; not {text}", param_hint="'--rate'")
    return r


_DESTINATION = Endpoint("127.0.0.1", destination=True)   # where packets or a login go
_BOUND = Endpoint("127.0.0.1")                            # where this process listens (port 0: any free one)


@main.command()
@click.argument("path", type=INPUT_FILE)
@click.option("--mold", "line_a", type=_DESTINATION, required=True, metavar="GROUP:PORT", help="Line A destination.")
@click.option("--line-b", type=_DESTINATION, metavar="GROUP:PORT", help="Line B destination (same packets).")
@click.option("--session", type=SOUP_SESSION, default="ITCHFLOW", show_default=True,
              help="MoldUDP64 session name (10 chars max, printable, no spaces: the wire pads with them).")
@click.option("--rate", default="real", show_default=True,
              help="real (message timestamps), max (flat out) or N (N x real time).")
@click.option("--pps", type=POSITIVE, help="Cap on packets per second per line.")
@click.option("--payload", type=click.IntRange(MIN_PAYLOAD, UDP_MAX_PAYLOAD), default=1400, show_default=True,
              help="Largest UDP payload, header included.")
@click.option("--rerequest", type=Endpoint("0.0.0.0", fd_ok=True), metavar="[HOST:]PORT",
              help="Serve re-requests on this UDP port "
              "(or fd:N, an inherited bound UDP socket).")
@click.option("--rerequest-rate", type=click.IntRange(1), default=512, show_default=True,
              help="Re-request replies per source, KB/s (a flood gets no more; refused requests are counted).")
@click.option("--rerequest-requests", type=click.IntRange(1), default=500, show_default=True, help="Re-requests per source per second.")
@click.option("--linger", type=NON_NEGATIVE, default=2.0, show_default=True,
              help="Seconds to keep serving re-requests at the end.")
@click.option("--interface", type=HOST, help="Local address of the interface to send multicast on.")
@click.option("--ttl", type=click.IntRange(0, 255), default=1, show_default=True, help="Multicast TTL (0: this host only).")
@click.option("--drop-a", type=FRACTION, default=0.0, help="Fault injection: fraction of packets dropped on line A.")
@click.option("--drop-b", type=FRACTION, default=0.0, help="Fault injection: fraction of packets dropped on line B.")
@click.option("--reorder", type=FRACTION, default=0.0, help="Fault injection: fraction of packets sent 2-4 packets late.")
@click.option("--duplicate", type=FRACTION, default=0.0, help="Fault injection: fraction of packets sent twice.")
@click.option("--seed", type=SEED, default=0, help="Seed of the fault injection.")
@click.option("--json", "as_json", is_flag=True, help="Print the counters as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def publish(path, line_a, line_b, session, rate, pps, payload, rerequest, rerequest_rate, rerequest_requests,
            linger, interface, ttl, drop_a, drop_b, reorder, duplicate, seed, as_json, quiet):
    """Replay a BinaryFILE as MoldUDP64 packets on one or two lines, serving re-requests."""
    from itchflow.errors import ITCHFormatError
    from itchflow.protocol.mold.feed import Faults, MoldFeed
    from itchflow.protocol.mold.ratelimit import RateLimits
    from itchflow.sources.mold_sender import publish as run

    a, b = line_a, line_b   # (host, port), checked by Endpoint
    rate = _rate(rate)   # before the day is loaded
    try:
        feed = MoldFeed(load_binaryfile(path), session, payload, source=path)
        limits = RateLimits(requests_per_s=rerequest_requests, bytes_per_s=rerequest_rate * 1024)
        started = lambda: click.echo(f"publishing {feed.n_packets:,} packets to {a[0]}:{a[1]}"  # noqa: E731
                                     + (f" and {b[0]}:{b[1]}" if b else ""), err=True)
        res = _interruptible(lambda: _with_progress(quiet or as_json, "publish", feed.n_packets, lambda update: run(
            feed, a, b, rerequest=_rerequest_socket(rerequest), rate=rate, pps=pps,
            faults=Faults(drop_a, drop_b, reorder, duplicate, seed), linger=linger, interface=interface, ttl=ttl,
            on_progress=update, limits=limits, on_start=started)))
    except (ITCHFormatError, OSError, ValueError) as e:
        _fail(e)
    _print_report(res.__dict__, as_json, width=16)
    _exit_if_interrupted(res)


def _rerequest_socket(where):
    """--rerequest as Endpoint gives it: None, (host, port) to bind, or 'fd:N' (an inherited
    bound UDP socket, e.g. from a test or a supervisor), checked to be digits."""
    if isinstance(where, str):
        import socket

        return socket.socket(fileno=int(where[3:]))
    return where


def _interruptible(fn):
    """Run fn; on Ctrl-C return the partial result the library attached to the exception
    (marked interrupted), or exit 130 at once if there is none yet."""
    try:
        return fn()
    except KeyboardInterrupt as e:
        res = getattr(e, "result", None)
        if res is None:
            click.echo("itchflow: interrupted", err=True)
            sys.exit(130)
        res.interrupted = True
        return res


def _exit_if_interrupted(res) -> None:
    if getattr(res, "interrupted", False):
        click.echo("itchflow: interrupted", err=True)
        sys.exit(130)


def _with_progress(quiet, what, total, fn):
    from rich.console import Console

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        return fn(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TextColumn("packets"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        return fn(lambda k, n: bar.update(task, completed=k))


@main.command()
@click.option("--mold", "line_a", type=_BOUND, required=True, metavar="GROUP:PORT",
              help="Line A (multicast group or local address).")
@click.option("--line-b", type=_BOUND, metavar="GROUP:PORT", help="Line B.")
@click.option("--rerequest", type=_DESTINATION, metavar="HOST:PORT",
              help="Re-request server (without it, holes are counted lost).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the recovered stream here (BinaryFILE).")
@click.option("--ring", "ring_name", type=RING_NAME, metavar="NAME",
              help="Publish the recovered stream into this shared-memory ring "
              "(created if absent); consume it with: itchflow run --source ring:NAME.")
@click.option("--engine", type=click.Choice(["recvmmsg", "recv", "tpacket", "xdp"]), default="recvmmsg",
              show_default=True,
              help="recvmmsg from compiled code, recv from Python, or tpacket: a TPACKET_V3 ring per line "
                   "(mmap, no system call per packet; needs CAP_NET_RAW and --ifname off loopback), "
                   "or xdp: an AF_XDP socket fed by an XDP program on --ifname (kernel bypass; root).")
@click.option("--ifname", default=None, help="Interface name for --engine tpacket (default: lo for 127.x) "
              "or xdp (required: no other interface is touched).")
@click.option("--queue", type=click.IntRange(0, 4095), default=0, show_default=True,
              help="RX queue of --ifname for --engine xdp.")
@click.option("--cpu", type=CPU, default=None, help="Pin the receive loop to this core.")
@click.option("--busy-poll", "busy_poll", type=click.IntRange(0, 1_000_000), default=0, show_default=True,
              help="--engine xdp: spin on the RX ring this many microseconds before sleeping, with "
                   "SO_PREFER_BUSY_POLL and SO_BUSY_POLL set (0: off).")
@click.option("--session", help="Follow this session only (default: the first seen).")
@click.option("--from-sequence", "start", default="1", show_default=True,
              help="First sequence wanted, or 'first' to start from the first packet received.")
@click.option("--interface", type=HOST, default="0.0.0.0", show_default=True, help="Interface address for the joins.")
@click.option("--idle-timeout", type=SECONDS, default=10.0, show_default=True,
              help="Stop after this many seconds without a valid packet of the session.")
@click.option("--max-seconds", type=SECONDS, help="Stop after this long in any case.")
@click.option("--end-linger", type=Number(0, 3600), default=1.0, show_default=True,
              help="After the end of session, watch this long for packets of the session past it (an early or "
                   "spoofed end): any is an error, exit 2.")
@click.option("--line-wait-ms", type=NON_NEGATIVE, default=2.0, show_default=True,
              help="How long a hole waits for the other line.")
@click.option("--rerequest-timeout-ms", "request_timeout_ms", type=Number(1, 60_000), default=50.0,
              show_default=True, help="How long the first re-request of a hole waits for its reply; each "
              "re-send waits twice as long as the one before, up to 1 s.")
@click.option("--give-up-after", "give_up", type=SECONDS, default=10.0, show_default=True,
              help="Seconds the re-request server may stay silent while asked before a hole's messages are "
                   "counted lost.")
@click.option("--max-gap", type=click.IntRange(1), default=1 << 22, show_default=True,
              help="A sequence jump larger than this (messages) is a bad packet, not a gap to fill.")
@click.option("--max-buffered-mb", type=click.IntRange(0), default=64, show_default=True,
              help="Memory for packets that arrive ahead of a hole (MB); past it they are re-requested.")
@click.option("--json", "as_json", is_flag=True, help="Print the counters as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def listen(line_a, line_b, rerequest, out, ring_name, engine, ifname, queue, cpu, busy_poll, session, start, interface,
           idle_timeout, max_seconds, end_linger, line_wait_ms, request_timeout_ms, give_up, max_gap, max_buffered_mb, as_json,
           quiet):
    """Receive a MoldUDP64 feed (A/B lines, gap fill by re-request) until its end of session."""
    from itchflow.hw.metrics import latency_summary
    from itchflow.sinks.output import StreamOutput
    from itchflow.sources.udp import listen as run

    start_sequence = _start_sequence(start)
    if engine != "xdp":   # taken for the other engines and silently ignored
        for name, value, default in (("--queue", queue, 0), ("--busy-poll", busy_poll, 0)):
            if value != default:
                raise click.BadParameter(f"applies to --engine xdp only (engine {engine})", param_hint=name)
    progress = None
    if not (quiet or as_json):
        from rich.console import Console

        if Console(stderr=True).is_terminal:
            progress = _listen_progress()
    stream = res = None
    publisher: list = []   # the ring's, made once the engine is ready
    detached: dict[str, int] = {}
    try:
        stream = StreamOutput(out) if out else None
        f = stream.file if stream else None
        on_deliver = None
        if ring_name:
            on_deliver = lambda e: publisher[0].publish(e.data, e.first_sequence, -1, int(e.rx_ns or 0))  # noqa: E731

        def ready(socks):
            if ring_name:   # (made before, a refused engine left a 16 MiB ring behind: probe 57)
                publisher.append(_ring_publisher(ring_name))
            names = ", ".join("%s:%d" % s.getsockname()[:2] for s in socks)
            click.echo(f"listening on {names}", err=True)

        res = _interruptible(lambda: run(
            line_a, line_b, rerequest,
            f, engine=engine, session=session, start_sequence=start_sequence, idle_timeout=idle_timeout,
            max_seconds=max_seconds, interface=interface,
            receiver_options={"line_wait_ns": int(line_wait_ms * 1e6), "max_gap": max_gap,
                              "max_buffered_bytes": max_buffered_mb << 20,
                              "request_timeout_ns": int(request_timeout_ms * 1e6), "give_up_ns": int(give_up * 1e9)},
            on_progress=progress, on_deliver=on_deliver, ifname=ifname, on_ready=ready, queue=queue, cpu=cpu,
            end_linger=end_linger,
            engine_options={"busy_poll": busy_poll} if engine == "xdp" and busy_poll else None))
    except (OSError, ValueError, RuntimeError) as e:
        _discard(stream)
        _fail(e)
    except BaseException:   # SIGTERM (SystemExit), as an error: no cut stream left
        _discard(stream)
        raise
    finally:
        pub = publisher[0] if publisher else None
        if pub is not None:
            # consumers see the end of the stream, and how it ended
            detached = _close_feed(pub, res is not None and res.finished and not res.interrupted,
                                   res is not None and bool(res.stats.get("lost")))
    _settle(stream, res, res.finished)
    report = {"engine": res.engine, "finished": res.finished, "interrupted": res.interrupted,
              "end_contradicted": res.end_contradicted, "seconds": round(res.seconds, 3), **res.stats,
              "latency": latency_summary(res.latency_ns),
              "malformed_packets": [str(m) for m in res.malformed[:20]],
              "lost_ranges": [(e.first_sequence, e.count, e.reason) for e in res.lost[:20]]}
    if res.engine_stats:
        report["engine_stats"] = res.engine_stats
    if ring_name:
        report["ring_detached"] = detached
    _print_report(report, as_json, width=22)   # (its own loop printed numpy reprs: probe 57)
    _warn_engine(res.engine, res.engine_stats or {})
    _exit_if_interrupted(res)
    if res.end_contradicted:
        from itchflow.sources.udp import contradicted_end

        click.echo(f"itchflow: {contradicted_end(res.end_sequence, res.end_contradicted)}: the stream may be cut "
                   "short", err=True)
        sys.exit(2)
    if not res.finished:
        click.echo("itchflow: listen stopped before the end of session was seen and filled", err=True)
        sys.exit(2)
    if res.stats["lost"]:
        click.echo(f"itchflow: {res.stats['lost']:,} messages were lost (given up on): the stream has holes",
                   err=True)
        sys.exit(3)
    _exit_if_detached(ring_name, detached)


def _start_sequence(text: str) -> int | None:
    """--from-sequence: 'first', or a sequence number from 1 to 2**63 - 2**16."""
    from itchflow.wire.moldudp64 import FIRST_SEQUENCE, MAX_SEQUENCE

    if text == "first":
        return None
    try:
        seq = int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not 'first' or a sequence number",
                                 param_hint="'--from-sequence'") from None
    if not FIRST_SEQUENCE <= seq <= MAX_SEQUENCE:
        raise click.BadParameter(f"{seq} is out of range ({FIRST_SEQUENCE} to {MAX_SEQUENCE})",
                                 param_hint="'--from-sequence'")
    return seq


# the tap engines' counters of frames to the feed refused as the kernel's stack refuses them
_REFUSED = ("rejected_frames", "ring_bad_length", "ring_bad_ip_checksum", "ring_bad_udp_checksum", "ring_other_host")


def _warn_engine(engine: str, st: dict) -> None:
    for line in engine_notes(st):
        click.echo(f"itchflow: {engine}: {line}", err=True)


def engine_notes(st: dict) -> list[str]:
    """What the receive engine lost or refused before the receiver saw it (the kernel's drops at
    a tap engine's ring or at the UDP sockets, frames refused, fragments), a line each: the
    receiver's own counts (gaps, lost) cannot tell why (the kernel's drops were only in
    engine_stats, and a 'lost' range blamed the missing re-request server)."""
    said = []
    drops = int(st.get("kernel_drops", 0)) + int(st.get("xdp_rx_dropped", 0))
    if drops:
        said.append(f"the kernel dropped {drops:,} packets before the engine read them (its ring was full, or "
                    "a frame did not fit)")
    refused = sum(int(st.get(k, 0)) for k in _REFUSED)
    if refused:
        said.append(f"{refused:,} frames to the feed refused, as the kernel's stack refuses them (a bad checksum "
                    "or length, another host's MAC)")
    if st.get("ring_fragment"):
        said.append(f"{int(st['ring_fragment']):,} IP fragments seen: this engine does not reassemble them "
                    "(publish datagrams that fit the MTU, or use --engine recvmmsg)")
    if st.get("socket_drops"):
        said.append(f"the kernel dropped {int(st['socket_drops']):,} datagrams at the UDP sockets (their receive "
                    "buffers were full: this process fell behind the feed); a re-request server fills such holes")
    if st.get("stack_datagrams"):
        said.append(f"{int(st['stack_datagrams']):,} datagrams reached the kernel's UDP socket, not the engine "
                    "(IP fragments, which the stack reassembles, or a feed that arrives on another interface "
                    "than --ifname)")
    return said


def _discard(stream) -> None:
    if stream is not None:
        stream.discard()


def _settle(stream, res, complete: bool) -> None:
    """The stream's file once the run is over: NAME when the session reached its end (the
    report says what it lacks: holes), else left as NAME.part and said so: after Ctrl-C, or a
    session that stopped before its end (a cut capture at its final name read as a valid,
    shorter day, and a listener that timed out left an empty one: probe 7); no file at all
    when no message arrived."""
    if stream is None:
        return
    if not complete and stream.nothing_written():
        stream.discard()
        when = "before the interrupt" if getattr(res, "interrupted", False) else "before it stopped"
        click.echo(f"itchflow: no message arrived {when}: {stream.final} not written", err=True)
        return
    if getattr(res, "interrupted", False):
        click.echo(f"itchflow: what arrived before the interrupt is in {stream.keep_part()}", err=True)
        return
    if not complete:
        click.echo(f"itchflow: the session did not reach its end: what arrived is in {stream.keep_part()}", err=True)
        return
    try:
        stream.commit()
    except OSError as e:   # the rename (the folder went, a full disk): said, naming the file
        stream.discard()
        _fail(e)


def _ring_publisher(name: str):
    from itchflow.pipeline.publish import open_feed
    from itchflow.ring import RingError

    try:
        return open_feed(name)
    except RingError as e:   # its producer alive (RingBusy), a corrupt ring: an error line, not a traceback
        _fail(e)


def _close_feed(pub, whole: bool, lost: bool = False) -> dict[str, int]:
    """Close the ring's producer (its consumers see the end, and whether the session was whole,
    cut short, or ended with messages lost: a consumer took a listener stopped half-way for
    the end of the session, and exited 0); the consumers it detached."""
    from itchflow.ring import layout as L

    detached = pub.writer.detached_consumers()
    pub.writer.close(L.STREAM_CUT_SHORT if not whole else L.STREAM_LOST if lost else L.STREAM_WHOLE)
    _warn_unread(pub.writer.ring)
    return detached


def _warn_unread(ring) -> None:
    """A consumer that quit (its process gone) with records still unread: the session arrived
    whole and exit 0 said nothing of them (probe 13). They stay in the ring, for a consumer of
    that name to resume, so this is said, not counted as lost."""
    from itchflow.ring.inspect import snapshot
    from itchflow.ring.liveness import pid_alive

    # (one alive may still be draining; a slot no process has attached yet, pid 0, is one to
    # consume later: neither is this)
    for c in snapshot(ring)["consumers"]:
        if c["state"] == "attached" and c["lag_bytes"] > 0 and c["pid"] > 0 and not pid_alive(c["pid"]):
            records = f"{c['lag_records']:,} records, " if c["lag_records"] is not None else ""
            click.echo(f"itchflow: ring {ring.path}: consumer {c['name']!r} (pid {c['pid']}) is gone, with "
                       f"{records}{c['lag_bytes']:,} bytes unread: they stay in the ring for it to resume "
                       f"(itchflow run --source ring:{ring.path})", err=True)


def _exit_if_detached(ring_name: str | None, detached: dict[str, int]) -> None:
    """The session arrived, but a ring consumer detached on the way misses part of it (it
    reports that loss itself when it rejoins): exit 3, as for messages lost."""
    if detached:
        who = ", ".join(f"{name!r} ({n} time{'s' if n > 1 else ''})" for name, n in detached.items())
        click.echo(f"itchflow: ring {ring_name}: consumer {who} detached: it was silent past the heartbeat "
                   "time-out while the ring was full, and misses what was published meanwhile "
                   f"(start `itchflow run --source ring:{ring_name}` before the feed)", err=True)
        sys.exit(3)


def _listen_progress():
    import time

    from rich.console import Console

    console = Console(stderr=True)
    state = {"t": 0.0}

    def update(receiver):
        t = time.monotonic()
        if t - state["t"] >= 0.5:
            state["t"] = t
            s = receiver.stats
            console.print(f"seq {receiver.next_sequence}  msgs {s.messages:,}  gaps {s.gaps}  "
                          f"requests {s.requests}  lost {s.lost}", end="\r")
    return update


@main.group()
def soup() -> None:
    """SoupBinTCP 3.00: serve a file as a session, fetch a session into a file."""


@soup.command("serve")
@click.argument("path", type=INPUT_FILE)
@click.option("--port", required=True, type=click.IntRange(0, 65535), help="TCP port to listen on.")
@click.option("--host", type=HOST, default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--user", type=SOUP_USER, required=True, help="Username (6 characters max).")
@click.option("--password", type=SOUP_PASSWORD, required=True, help="Password (10 characters max).")
@click.option("--session", type=SOUP_SESSION, default="ITCHFLOW", show_default=True,
              help="Session name (10 characters max).")
@click.option("--cut-after", type=click.IntRange(0), help="Fault injection: cut the first connection after N messages.")
@click.option("--stall-after", type=click.IntRange(0),
              help="Fault injection: the first connection goes silent after N messages.")
@click.option("--max-seconds", type=SECONDS, help="Stop serving after this long.")
@click.option("--max-connections", type=click.IntRange(1), default=64, show_default=True,
              help="Connections at once (past it, a new one takes the slot of the oldest not logged in; "
                   "when all are logged in, it is refused).")
@click.option("--login-timeout", type=SECONDS, default=5.0, show_default=True, help="Seconds a connection has to log in.")
@click.option("--dead-link", "dead_link_s", type=SECONDS, default=15.0, show_default=True,
              help="Seconds of client silence (and of a send queue that does not drain) before dropping it.")
def soup_serve(path, port, host, user, password, session, cut_after, stall_after, max_seconds, max_connections,
               login_timeout, dead_link_s):
    """Serve a BinaryFILE as a SoupBinTCP session, from any requested sequence number."""
    import time

    from itchflow.errors import ITCHFormatError
    from itchflow.sources.soup_sockets import SoupServer
    from itchflow.protocol.soup import MessageStore

    try:
        store = MessageStore(load_binaryfile(path), source=path)
        # who is dropped or refused, and why, said as it happens (a server runs for hours)
        server = SoupServer(store, host, port, session, {user: password}, cut_after=cut_after,
                            stall_after=stall_after, max_connections=max_connections,
                            login_timeout_s=login_timeout, dead_link_s=dead_link_s, send_timeout_s=dead_link_s,
                            on_drop=lambda line: click.echo(f"itchflow: soup serve: {line}", err=True))
    except (ITCHFormatError, OSError) as e:
        _fail(e)
    from itchflow.cli.signals import sigterm_exits

    t0 = time.monotonic()
    # SIGTERM: the server stops and says its counters (it writes no output to remove)
    with sigterm_exits("stopping the server"):
        interrupted, stopped = _serve(server, store, path, session, max_seconds, t0)
    if stopped is not None:
        _fail(stopped)
    if interrupted:
        click.echo("itchflow: interrupted", err=True)
        sys.exit(130)


def _serve(server, store, path, session, max_seconds, t0):
    """Serve until max_seconds, Ctrl-C or an error of the server's thread; the counters are
    printed however it ends. Returns (interrupted, the error that stopped it)."""
    import time

    interrupted, stopped = False, None
    try:
        server.start()
        click.echo(f"serving {store.messages:,} messages of {path} as session {session} on "
                   f"{server.address[0]}:{server.address[1]}", err=True)
        while max_seconds is None or time.monotonic() - t0 < max_seconds:
            time.sleep(0.2)
            if not server.serving:   # its thread ended on an error: not a live-looking process serving nobody
                raise RuntimeError("the server's thread stopped on an error; no longer serving")
    except KeyboardInterrupt:
        interrupted = True
    except RuntimeError as e:
        stopped = e
    finally:   # the counters also when SIGTERM ends it (systemd, docker stop, timeout)
        server.stop()
        click.echo(json.dumps(server.counters.__dict__), err=True)
    return interrupted, stopped


@soup.command("fetch")
@click.argument("address", type=_DESTINATION, metavar="HOST:PORT")
@click.option("--user", type=SOUP_USER, required=True, help="Username (6 characters max).")
@click.option("--password", type=SOUP_PASSWORD, required=True, help="Password (10 characters max).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the session here (BinaryFILE).")
@click.option("--ring", "ring_name", type=RING_NAME, metavar="NAME",
              help="Publish the session into this shared-memory ring "
              "(created if absent); consume it with: itchflow run --source ring:NAME.")
@click.option("--session", type=SoupField(10, blank_ok=True), default="",
              help="Session to join (default: the server's current one).")
@click.option("--from-sequence", "sequence", type=click.IntRange(0), default=1, show_default=True,
              help="First sequence number wanted (0: from the most recently generated message on).")
@click.option("--max-reconnects", type=click.IntRange(0), default=10, show_default=True)
@click.option("--max-seconds", type=SECONDS, help="Give up after this long.")
@click.option("--dead-link", "dead_link_s", type=SECONDS, default=15.0, show_default=True,
              help="Seconds of silence after which the link is dead (and the client reconnects).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", "-q", is_flag=True)
def soup_fetch(address, user, password, out, ring_name, session, sequence, max_reconnects, max_seconds, dead_link_s,
               as_json, quiet):
    """Log in, receive the session until its end, reconnecting from the next sequence."""
    from itchflow.sinks.output import StreamOutput
    from itchflow.sources.soup_sockets import fetch

    host, port = address
    pub = stream = None
    detached: dict[str, int] = {}
    res = None
    try:
        stream = StreamOutput(out) if out else None
        f = stream.file if stream else None
        on_data = None
        if ring_name:
            pub = _ring_publisher(ring_name)
            on_data = lambda e: pub.publish(e.data, e.first_sequence, -1, time.time_ns())  # noqa: E731
        res = _interruptible(lambda: fetch(host, port, user, password, f, session=session, sequence=sequence,
                                           max_reconnects=max_reconnects, max_seconds=max_seconds,
                                           dead_link_s=dead_link_s, on_data=on_data))
    except (OSError, ValueError, RuntimeError) as e:
        _discard(stream)
        _fail(e)
    except BaseException:   # SIGTERM (SystemExit), as an error: no cut stream left
        _discard(stream)
        raise
    finally:
        if pub is not None:
            detached = _close_feed(pub, res is not None and res.ended and not res.interrupted,
                                   res is not None and bool(res.missing))
    if res.rejected or (res.refused and not res.messages):   # a login that failed leaves no empty file
        _discard(stream)
    else:
        _settle(stream, res, res.ended)
    _print_report({**res.__dict__, "ring_detached": detached} if ring_name else res.__dict__, as_json, width=14)
    _exit_if_interrupted(res)
    if res.rejected:
        click.echo(f"itchflow: login rejected: {res.rejected}", err=True)
        sys.exit(1)
    if res.refused:
        click.echo(f"itchflow: refused the server's answer: {res.refused}", err=True)
        sys.exit(1)
    if not res.ended:
        click.echo("itchflow: the session did not reach its end", err=True)
        sys.exit(2)
    if res.missing:
        click.echo(f"itchflow: {res.missing:,} messages before the first one received are missing", err=True)
        sys.exit(3)
    if res.past_end:
        click.echo(past_end_note(res.from_sequence), err=True)
    _exit_if_detached(ring_name, detached)


def past_end_note(sequence: int) -> str:
    return f"itchflow: note: {past_end_words(sequence)}"


def past_end_words(sequence: int) -> str:
    """The session ended with no message at or after the one asked for (``fetched_past_end``)."""
    return (f"the session ended with no message at or after sequence {sequence:,} (the first asked for): it "
            f"holds fewer messages than that")


@bench.command("net")
@click.option("--packets", type=Count(1), default="20k", show_default=True, help="Datagrams queued per round.")
@click.option("--rounds", type=RUNS, default=5, show_default=True)
@click.option("--size", type=click.IntRange(20, UDP_MAX_PAYLOAD), default=128, show_default=True,
              help="Datagram size in bytes (a MoldUDP64 header and more; 1,472 at most with --veth, one frame).")
@click.option("--batch", type=click.IntRange(1, 1024), default=64, show_default=True, help="recvmmsg batch.")
@click.option("--timestamps", is_flag=True, help="Enable SO_TIMESTAMPNS on the socket.")
@click.option("--veth", is_flag=True, help="Also over a veth pair between two network namespaces (root): "
              "TPACKET_V3 and AF_XDP rows, CPU and counted system calls per packet.")
@click.option("--busy-poll", "busy_poll_us", type=click.IntRange(0), default=20, show_default=True, help="SO_BUSY_POLL (us) of the AF_XDP "
              "busy-poll row.")
@click.option("--json", "as_json", is_flag=True)
def bench_net(packets, rounds, size, batch, timestamps, veth, busy_poll_us, as_json):
    """Receive path on loopback: recv (Python) vs recv (compiled) vs recvmmsg (compiled)."""
    from itchflow.bench.net import run, run_receiver

    if veth and size > VETH_MAX_DATAGRAM:
        raise click.BadParameter(f"{size:,} bytes do not fit one frame of the veth pair (MTU 1,500: at most "
                                 f"{VETH_MAX_DATAGRAM:,} bytes of UDP payload)", param_hint="'--size'")
    echo = (lambda *a: None) if as_json else click.echo
    res = run(packets, rounds, size, batch, timestamps, echo=echo)
    if veth:
        from itchflow.bench.net import run_veth

        res.update(run_veth(min(packets, 1 << 16), rounds, size, batch, busy_poll_us, echo=echo))
        from itchflow.bench.net import run_listen_veth

        res.update(run_listen_veth(200_000, 200_000, busy_poll_us=max(busy_poll_us, 50), echo=echo))
    res.update(run_receiver(packets, batch=batch, echo=echo))
    if as_json:
        click.echo(json.dumps(res))


def _print_report(d: dict, as_json: bool, width: int) -> None:
    """A command's counters: one JSON object, or one aligned line per counter."""
    if as_json:
        click.echo(json.dumps(d, default=_plain))
    else:   # (through JSON's types: numpy's scalars printed as np.float64(...) inside a dict, probe 41)
        for k, v in json.loads(json.dumps(d, default=_plain)).items():
            click.echo(f"{k:>{width}}: {v}")


def _plain(value):
    """A numpy scalar or array as JSON takes it (json.dumps' default=); anything else as text."""
    import numpy as np

    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)
