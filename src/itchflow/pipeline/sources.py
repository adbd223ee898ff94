"""What the pipeline's producer reads, written as one string, and the loop that reads it.

    PATH                     a BinaryFILE (memory-mapped), .gz, pcap/pcapng of MoldUDP64
    tail:PATH                a BinaryFILE another process is still appending to (read + polling;
                             options wait_for_file and idle_timeout, in seconds)
    ring:NAME                a ring another process feeds (``listen --ring``): consume only
    mold://GROUP:PORT?line_b=GROUP:PORT&rerequest=HOST:PORT&session=NAME&interface=ADDR&idle=S&give_up=S
                             &engine=recvmmsg|recv|tpacket|xdp&ifname=IF&queue=Q&end_linger=S
                             a MoldUDP64 feed (A/B lines, gap fill from the re-request server)
    soup://HOST:PORT?user=U&password=P&session=NAME&sequence=N
                             a SoupBinTCP 3.00 session (reconnects from the next sequence)

Each loop publishes through a ``BatchPublisher`` and returns its own counters (capture
holes and duplicates, MoldUDP64 gaps and recoveries, SoupBinTCP reconnects), which the
pipeline report shows next to its own.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import numpy as np

from itchflow.errors import missing_file
from itchflow.pipeline.publish import BatchPublisher

MOLD_KEYS = {"line_b", "rerequest", "session", "interface", "idle", "max_seconds", "engine", "ifname", "queue",
             "give_up", "end_linger"}
SOUP_KEYS = {"user", "password", "session", "sequence", "max_seconds", "dead_link"}


@dataclass
class SourceSpec:
    kind: str                       # "file", "tail", "ring", "mold", "soup"
    text: str                       # as given, for messages
    path: str | None = None
    host: str | None = None
    port: int | None = None
    options: dict = field(default_factory=dict)

    @property
    def reads_stdin(self) -> bool:
        """``-``: the file is standard input (its producer is handed the parent's fd 0)."""
        return self.kind == "file" and self.path == "-"


def _endpoint(text: str, what: str, spec: str) -> tuple[str, int]:
    from itchflow.sources.udp import parse_endpoint

    try:
        return parse_endpoint(text, "0.0.0.0")
    except ValueError as e:
        raise ValueError(f"source {spec!r}: {what}: {e}") from None


def _without_password(text: str) -> str:
    """The source as given, every secret in it shown as ``***`` (probe 25: the password was
    echoed in the report's ``source`` and in a rejected login's error): the value of a query
    key that reads ``password`` in any case or percent-encoding (``pass%77ord``), a value
    holding an ``=`` or ``%3D`` (``password%3Dx`` in an unknown key), and user information
    before an ``@`` in the address."""
    from urllib.parse import unquote

    head, sep, query = text.partition("?")
    if "@" in head:   # scheme://USER:PASSWORD@host:port: never echoed
        scheme, _, rest = head.partition("://")
        head = f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    parts = []
    for item in query.split("&") if sep else ():
        key, eq, value = item.partition("=")
        if _secret(unquote(key)) or (eq and _secret(unquote(value))):
            item = f"{key}{eq}***" if eq else "***"
        parts.append(item)
    return head + sep + "&".join(parts)


def _secret(text: str) -> bool:
    """A query key (decoded), or a value, that holds or names a password: ``Password``,
    ``pass%77ord``, ``password=x`` inside an unknown key."""
    return "password" in text.lower()


def parse_source(text: str) -> SourceSpec:
    """A source string (module doc) as a SourceSpec; ValueError naming what is wrong."""
    if text.startswith("tail:"):
        if not text[len("tail:"):]:   # (waited for a file named "" until killed: probe 32)
            raise ValueError("source 'tail:': give the file to follow, tail:PATH")
        return SourceSpec("tail", text, path=text[len("tail:"):])
    if text.startswith("ring:"):
        return SourceSpec("ring", text, path=text[len("ring:"):])
    if "://" not in text:
        return SourceSpec("file", text, path=text)
    u = urlsplit(text)
    text = _without_password(text)   # the text is in reports and errors: never the password
    if u.scheme not in ("mold", "soup"):
        raise ValueError(f"source {text!r}: unknown scheme {u.scheme!r} (use a path, tail:PATH, mold:// or soup://)")
    query = parse_qs(u.query, keep_blank_values=True, strict_parsing=False)
    opts = {k: v[-1] for k, v in query.items()}
    allowed = MOLD_KEYS if u.scheme == "mold" else SOUP_KEYS
    unknown = sorted(set(opts) - allowed)
    if unknown:
        shown = ["***" if _secret(k) or "=" in k else k for k in unknown]   # a secret, misspelt
        raise ValueError(f"source {text!r}: unknown option(s) {', '.join(shown)} (known: {', '.join(sorted(allowed))})")
    if "@" in u.netloc:   # USER:PASSWORD@ is not an address (it was echoed, blamed on IPv6)
        raise ValueError(f"source {text!r}: user information before '@' in the address is not taken: give "
                         "user= and password= as options")
    host, port = _endpoint(u.netloc, "address", text)
    return SourceSpec(u.scheme, text, host=host, port=port, options=opts)


def check_source(spec: SourceSpec) -> None:
    """Fail before any process starts for what can be seen now (missing file, bad options)."""
    check_source_text(spec)
    if spec.kind == "file":
        if spec.reads_stdin:   # the producer reads it (run_pipeline hands it over)
            import sys

            if sys.stdin is None:   # (closed: fd 0 would be the next file opened, the ring's)
                raise ValueError(f"source {spec.text!r}: standard input is closed")
            return
        if not os.path.exists(spec.path):
            raise missing_file(spec.path)
        if os.path.isdir(spec.path):
            raise IsADirectoryError(f"{spec.path}: is a directory, not an ITCH file or capture")
    elif spec.kind == "tail":
        # (a file not there yet may be waited for; one there must be a regular file: a FIFO or
        # directory was refused only once the producer had started)
        if os.path.exists(spec.path) and not os.path.isfile(spec.path):
            what = "a directory" if os.path.isdir(spec.path) else "not a regular file (a pipe, FIFO or device)"
            raise ValueError(f"source {spec.text!r}: {spec.path} is {what}; tail: follows a regular file another "
                             "process appends to (read a pipe or FIFO to its end as --source PATH)")
    elif spec.kind == "ring":
        from itchflow.ring import ring_path
        if not os.path.exists(ring_path(spec.path)):
            raise FileNotFoundError(f"{ring_path(spec.path)}: no such ring (start its producer first, "
                                    "e.g. itchflow listen --ring NAME)")


def check_source_text(spec: SourceSpec) -> None:
    """What the source string alone says is wrong (a usage error on the command line): options
    out of range, port 0, an empty ring name; ValueError naming it. Files and rings are looked
    at by check_source."""
    if spec.kind == "ring":
        if not spec.path:
            raise ValueError(f"source {spec.text!r}: ring:NAME needs a name or path")
    elif spec.kind == "mold":
        if spec.options.get("engine", "recvmmsg") not in ("recvmmsg", "recv", "tpacket", "xdp"):
            raise ValueError(f"source {spec.text!r}: engine must be recvmmsg, recv, tpacket or xdp")
        if spec.options.get("engine") == "xdp" and not spec.options.get("ifname"):
            raise ValueError(f"source {spec.text!r}: engine=xdp needs ifname=IF (no other interface is touched)")
        _no_port_zero(spec, "address", spec.port)
        for k in ("line_b", "rerequest"):
            if k in spec.options:
                _no_port_zero(spec, k, _endpoint(spec.options[k], k, spec.text)[1])
        for k in ("idle", "max_seconds", "give_up"):
            _option_number(spec, k, float, 0.0, open_low=True)
        _option_number(spec, "end_linger", float, 0.0)
        _option_number(spec, "queue", int, 0)
        _option_text(spec, "session", 10)   # MoldUDP64's session field (refused once the producer ran)
    elif spec.kind == "soup":
        _no_port_zero(spec, "address", spec.port)
        for key, size in (("user", 6), ("password", 10), ("session", 10)):   # SoupBinTCP's login fields
            _option_text(spec, key, size)
        for k in ("dead_link", "max_seconds"):
            _option_number(spec, k, float, 0.0, open_low=True)
        _option_number(spec, "sequence", int, 1)


def _no_port_zero(spec: SourceSpec, what: str, port: int | None) -> None:
    """Port 0 binds any free port, which the producer process would never tell a sender (and
    is nowhere to send to): `itchflow listen --mold HOST:0` binds one and prints it."""
    if port == 0:
        raise ValueError(f"source {spec.text!r}: {what}: port 0 (any free port) cannot be told to a sender "
                         "from here; give the port (itchflow listen --mold HOST:0 prints the one it binds)")


def _option_text(spec: SourceSpec, key: str, size: int) -> None:
    """A text option of a source string that goes into a fixed-size protocol field: ASCII, at
    most size bytes (a longer session was refused only once the producer had started, exit 1:
    probe 40). A password is never shown."""
    text = spec.options.get(key)
    if text is None:
        return
    shown = "***" if _secret(key) else repr(text)
    if not text.isascii() or len(text) > size:
        raise ValueError(f"source {spec.text!r}: {key} must be ASCII of at most {size} characters (got {shown})")


def _option_number(spec: SourceSpec, key: str, kind, low, open_low: bool = False) -> None:
    """A numeric option of a source string, if given: a finite number above (or at least) low
    (a NaN time-out would never fire)."""
    if key not in spec.options:
        return
    text = spec.options[key]
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"source {spec.text!r}: {key}={text!r} is not {what}") from None
    if not math.isfinite(value) or (value <= low if open_low else value < low):
        raise ValueError(f"source {spec.text!r}: {key} must be {'above' if open_low else 'at least'} {low:g} "
                         f"and finite (got {text!r})")


def produce(spec: SourceSpec, pub: BatchPublisher, stop=None) -> dict:
    """Read the source to its end, publishing everything; the source's own counters."""
    return {"file": _produce_chunks, "tail": _produce_chunks, "mold": _produce_mold,
            "soup": _produce_soup}[spec.kind](spec, pub, stop)


def _produce_chunks(spec: SourceSpec, pub: BatchPublisher, stop) -> dict:
    from itchflow.sources.files import iter_chunks

    capture: dict = {}
    if spec.kind == "tail":
        from itchflow.sources.tail import Tail

        o = spec.options
        idle = o.get("idle_timeout", 5.0)
        source = Tail(spec.path, wait_for_file=float(o.get("wait_for_file") or 0.0),
                      idle_timeout=None if idle is None else float(idle), stop=stop)
    else:
        if spec.reads_stdin:
            # the parent's standard input, kept open for us (run_pipeline: multiprocessing points
            # this process's fd 0 at /dev/null), made ours again for the file sources' "-"
            import sys

            sys.stdin = open(spec.options["stdin_fd"])
        source = iter_chunks(spec.path, capture_stats=capture, join_runs=True)
    chunks = 0
    rate = float(spec.options.get("rate") or 0)
    publish = _Pacer(rate).publish if rate > 0 else _publish_releasing
    following = 1   # the number the next message gets where it has none of its own

    def halted(reached: int, end: int) -> bool:   # the framing broke, or stop was set
        return pub.bad_framing or reached < end or (stop is not None and stop.is_set())

    for c in source:
        chunks += 1
        offset = -1 if c.offset is None else int(c.offset)
        for start, end, seq in numbered_parts(c):
            seq = following if seq is None else seq
            before = pub.messages
            reached = publish(pub, c, offset, start, end, seq, stop)
            following = seq + pub.messages - before
            if halted(reached, end):
                break
        c.check_intact()  # a file truncated while published: that is the error, not its zeros' framing
        if halted(reached, end):
            break
    out = {"chunks": chunks}
    if capture:
        out["capture"] = capture
    if spec.kind == "tail":
        out["tail"] = source.summary()
    return out


# A mapped day is published this many bytes a call, its pages let go after each (Chunk.release):
# otherwise the reader process holds every page of the day it has read (12 GB for a real one).
PUBLISH_WINDOW_BYTES = 64 << 20


def numbered_parts(c) -> Iterator[tuple[int, int, int | None]]:
    """(start, end, first sequence number) of the parts of chunk c that go over the ring with
    one numbering each (a batch's messages are its first number on, one more a message).
    A capture's run of sequence 0 (unsequenced: an anonymised capture's packet) has no number
    of its own: None, the numbering before it goes on, so its packets make one stream on the
    ring (numbered from each packet's 0, every packet after the first was a repeat to the
    consumer) and a joined chunk of them goes as one part, not a part a packet."""
    if c.runs is None:
        yield 0, len(c.data), None if c.session is not None and c.first_sequence == 0 else int(c.first_sequence)
        return
    seq = c.runs.sequence
    # a part starts at the first run, at a run with a number of its own, and at a run of
    # sequence 0 after one with a number
    starts = np.flatnonzero((seq != 0) | np.append(True, seq[:-1] != 0)).tolist()
    ends = [int(c.runs.first_byte[j]) for j in starts[1:]] + [len(c.data)]
    for j, end in zip(starts, ends):
        yield int(c.runs.first_byte[j]), end, int(seq[j]) if seq[j] else None


def _publish_releasing(pub: BatchPublisher, c, offset: int, pos: int, end: int, seq: int, stop=None) -> int:
    """Publish c.data[pos:end] (first sequence number seq) in windows, letting its published
    pages go; the position reached (short of end when the framing broke or stop was set)."""
    while pos < end:
        before = pub.messages
        reached = pub.publish(c.data, seq, offset + pos if offset >= 0 else -1, 0, pos, end,
                              limit=pos + PUBLISH_WINDOW_BYTES)
        c.release(reached)
        seq += pub.messages - before
        if pub.bad_framing or reached <= pos or (stop is not None and stop.is_set()):
            return reached
        pos = reached
    return pos


class _Pacer:
    """Publishes one batch at a time, each no earlier than its messages are due at ``rate``
    messages per second: a file replayed at a steady rate, so that the latency measured is
    the hand-off's own rather than time spent queued behind a flat-out reader."""

    def __init__(self, rate: float):
        self.rate = rate
        self.sent = 0
        self.t0 = None

    def publish(self, pub: BatchPublisher, c, offset: int, pos: int, end: int, seq: int, stop=None) -> int:
        """Publish c.data[pos:end] (first sequence number seq) batch by batch at the rate,
        letting its published pages go (a real day at a real rate takes hours) and checking
        stop between batches; the position reached."""
        from itchflow.wire.binaryfile import whole_messages_end

        if self.t0 is None:
            self.t0 = time.perf_counter()
        data = c.data
        while pos < end:
            if stop is not None and stop.is_set():
                return pos
            batch_end, n = whole_messages_end(data, pos, min(end, pos + pub.batch_bytes))
            if n == 0:   # bad framing: let the publisher hand it over and the consumer name it
                return pub.publish(data, seq, offset + pos if offset >= 0 else -1, 0, pos, end)
            due = self.t0 + self.sent / self.rate
            while True:
                ahead = due - time.perf_counter()
                if ahead <= 0:
                    break
                if ahead > 0.0005:
                    time.sleep(ahead - 0.0003)
            pub.publish(data, seq, offset + pos if offset >= 0 else -1, 0, pos, batch_end)
            c.release(batch_end)
            self.sent += n
            pos, seq = batch_end, seq + n
        return pos


def _produce_mold(spec: SourceSpec, pub: BatchPublisher, stop) -> dict:
    from itchflow.sources.udp import END_LINGER_S, listen

    o = spec.options
    line_b = _endpoint(o["line_b"], "line_b", spec.text) if o.get("line_b") else None
    rereq = _endpoint(o["rerequest"], "rerequest", spec.text) if o.get("rerequest") else None

    def deliver(e) -> None:
        pub.publish(e.data, e.first_sequence, -1, int(e.rx_ns or 0))

    res = listen((spec.host, spec.port), line_b, rereq, None, session=o.get("session") or None,
                 interface=o.get("interface", "0.0.0.0"), idle_timeout=float(o.get("idle", 10.0)),
                 max_seconds=float(o["max_seconds"]) if o.get("max_seconds") else None,
                 on_deliver=deliver, stop=stop, engine=o.get("engine", "recvmmsg"), ifname=o.get("ifname") or None,
                 queue=int(o.get("queue", 0)), end_linger=float(o.get("end_linger", END_LINGER_S)),
                 receiver_options={"give_up_ns": int(float(o["give_up"]) * 1e9)} if o.get("give_up") else None)
    return {"mold": res.stats, "finished": res.finished, "end_contradicted": res.end_contradicted,
            "end_sequence": res.end_sequence, "lost": [(e.first_sequence, e.count) for e in res.lost],
            "malformed": len(res.malformed), "engine_stats": res.engine_stats}


def _produce_soup(spec: SourceSpec, pub: BatchPublisher, stop) -> dict:
    from itchflow.sources.soup_sockets import fetch

    o = spec.options

    def data(e) -> None:
        pub.publish(e.data, e.first_sequence, -1, time.time_ns())

    res = fetch(spec.host, spec.port, o.get("user", ""), o.get("password", ""), None,
                session=o.get("session", ""), sequence=int(o.get("sequence", 1)),
                max_seconds=float(o["max_seconds"]) if o.get("max_seconds") else None,
                dead_link_s=float(o.get("dead_link", 15.0)), on_data=data)
    if res.rejected is not None:
        raise ConnectionRefusedError(f"{spec.text}: login rejected ({res.rejected})")
    if res.refused is not None:   # the server's answer made no sense (e.g. an absurd sequence)
        raise ConnectionAbortedError(f"{spec.text}: stopped: {res.refused}")
    return {"soup": {"messages": res.messages, "next_sequence": res.next_sequence, "connections": res.connections,
                     "reconnects": res.reconnects, "dead_links": res.dead_links, "ended": res.ended,
                     "errors": list(res.errors), "from_sequence": res.from_sequence}}
