"""Pipeline v1: a producer process reads the source into a shared-memory ring; this process
takes batches off the ring and applies them to the books of every stock.

    source --(producer process: mmap / tail / recvmmsg / TCP)--> ring --(this process)--> Books

Why two processes: reading (page faults, decompression, system calls, protocol state) and
book building each get a core, and the ring between them is the seed's lock-free hand-off,
measured here on real work. The consumer reads records in place (blocking mode: zero copy)
and hands each batch's messages to the engine as they lie in the ring.

Latency per batch, from the cycle counter (calibrated against CLOCK_MONOTONIC):
  publish -> consume   the record's release store to the consumer taking it off the ring
  consume -> applied   the consumer taking it to the engine having applied every message
  receive -> applied   (network sources) the kernel's receive time to applied, CLOCK_REALTIME
For a file read flat out the first is mostly queueing (the ring is kept full); for live
sources it is the hand-off itself.

Sequence numbers are checked across batches: a jump forward is counted as a gap (with the
missing messages), one backward as a repeat. Nothing is dropped without a count.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from itchflow.pipeline.consume import S_APPLY_TICKS, S_BATCHES, S_BYTES, S_GAP_MESSAGES, S_GAPS, S_MESSAGES, \
    S_REPEATS, BatchApplier
from itchflow.pipeline.producer import producer_main
from itchflow.pipeline.publish import CONSUMER, feed_max_payload, warm_up
from itchflow.pipeline.sources import SourceSpec, check_source, parse_source
from itchflow.ring.layout import STREAM_OUTCOME_NAMES

CTX = mp.get_context("fork")   # the child inherits the compiled kernels: no second load
DEFAULT_CAPACITY = 16 << 20
DEFAULT_BATCH_BYTES = 64 << 10
DEFAULT_HEARTBEAT_TIMEOUT = 5.0   # seconds of silence before the producer detaches the consumer
POLL_S = 0.25            # longest the consumer waits inside compiled code between liveness checks
NO_PRODUCER_NOTICE_S = 5.0   # a ring: source with no producer this long after attaching gets one notice


class PipelineError(RuntimeError):
    """The producer failed (the source's own error is in the message) or vanished. ``report``,
    where there is one, holds what was applied before (its ``error`` set to this message)."""

    def __init__(self, message: str, report: "PipelineReport | None" = None):
        super().__init__(message)
        self.report = report
        if report is not None:
            report.error, report.stream = message, "cut short"


class PipelineInterrupted(KeyboardInterrupt):
    """Ctrl-C ended the run; ``report`` holds what was applied until then (marked interrupted)."""

    def __init__(self, report: "PipelineReport"):
        super().__init__(f"interrupted after {report.messages:,} messages")
        self.report = report


@dataclass
class PipelineReport:
    source: str
    ring: str
    messages: int = 0
    bytes: int = 0
    batches: int = 0
    seconds: float = 0.0                 # first batch taken to last applied
    wall_seconds: float = 0.0            # start of the producer to the end
    producer: dict = field(default_factory=dict)
    sequence_gaps: int = 0
    sequence_gap_messages: int = 0
    sequence_repeats: int = 0
    latency: dict = field(default_factory=dict)   # stage -> summary (microseconds)
    apply_ns_per_message: float = 0.0
    book: dict = field(default_factory=dict)
    top: list = field(default_factory=list)
    samples: dict = field(default_factory=dict, repr=False)   # stage -> ns per batch (not in to_dict)
    interrupted: bool = False            # Ctrl-C ended the run: the counts are what was applied
    ring_lost_records: int = 0           # records the consumer never saw: lapped in a lossy ring
    # ring: sources: records published before this run's first one (its consumer name resumed
    # where an earlier run of it stopped, or joined a stream under way): the books lack them
    ring_skipped_records: int = 0
    # How the stream ended, by the producer's own account: "whole", "cut short" (a ring's
    # producer stopped before its end; a tail: file stopped growing before its end-of-messages
    # event; a run that failed part way), "lost messages" (given up on; a capture's sequence gaps)
    stream: str = "whole"
    error: str | None = None             # set when the run failed (PipelineError.report)
    # How to read the latencies: "flat out" (a file read as fast as possible: publish -> consume
    # is then mostly time queued behind earlier batches in a full ring, i.e. queueing), "paced"
    # (a file replayed at --rate: the hand-off itself), or "live" (the source's own pace).
    pacing: str = "live"

    @property
    def messages_per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "samples"}
        d["messages_per_second"] = self.messages_per_second
        return d


def _top_stocks(books, n: int) -> list[dict]:
    """The n stocks with the most shares traded: top of book, volume, VWAP."""
    if n <= 0:
        return []
    vol = books.stocks["volume"]
    order = np.argsort(-vol.astype(np.int64), kind="stable")[:n]
    tops = books.tops()
    rows = []
    for loc in order:
        if vol[loc] == 0:
            break
        bp, bs, ap, as_ = (int(x) for x in tops[loc])
        rows.append({"locate": int(loc), "symbol": books.symbol(int(loc)), "bid_price": bp, "bid_shares": bs,
                     "ask_price": ap, "ask_shares": as_, "volume": int(vol[loc]),
                     "vwap": books.vwap(int(loc)), "state": books.trading_state(int(loc))})
    return rows


def run_pipeline(source: str | SourceSpec, *, ring: str | None = None, capacity: int = DEFAULT_CAPACITY,
                 batch_bytes: int = DEFAULT_BATCH_BYTES, pin: tuple[int, ...] | None = None,
                 wait: str | None = None, books=None, top: int = 10, progress=None,
                 hugepages: bool = False, consumer: str = CONSUMER, rate: float | None = None,
                 heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT, wait_for_file: float = 0.0,
                 idle_timeout: float | None = 5.0, notice=None,
                 notice_after: float = NO_PRODUCER_NOTICE_S) -> PipelineReport:
    """Run source -> ring -> books to the end of the source; returns the report (and fills
    ``books``, a new ``Books`` if not given). Errors in the source or the data raise
    ``PipelineError`` / ``ITCHFormatError`` naming where, after the producer has stopped; a
    consumer paused past the heartbeat timeout raises a ``PipelineError`` naming the ring and
    the consumer (from the ``ConsumerDetached``), with the report. Ctrl-C (KeyboardInterrupt) stops the producer and
    raises ``PipelineInterrupted`` carrying the report of what was applied. A ``PipelineError``,
    and an ``ITCHFormatError`` in what the consumer read, carry it too, as ``report`` (its
    ``error`` set), where the run got as far as applying.

    ring: a name or path for the ring (default: a private one); removed at the end either way. A ring
    of that name left by a killed run (its processes dead, their heartbeats stale) is
    reclaimed; one a live process holds is RingBusy.
    pin: (producer CPU, consumer CPU). wait: the consumer's wait strategy (default: spin when
    pinned, else yield). progress(messages, bytes) is called between batches.
    rate: replay a file at this many messages per second (batch by batch) instead of flat out.
    heartbeat_timeout: seconds of silence after which the producer detaches the consumer
    (and the consumer judges the producer gone).
    wait_for_file, idle_timeout: for tail:PATH sources (see sources.tail.Tail).
    A ``ring:NAME`` source has no producer here: this process attaches to a ring that another
    one feeds (``itchflow listen --ring NAME``, ``soup fetch --ring NAME``) as ``consumer`` and
    applies what it publishes until that producer closes the ring. A producer may start
    later, so the wait has no end; if none has the ring open ``notice_after`` seconds after
    attaching, ``notice(text)`` is called once (default: a warning on the ``itchflow`` logger).
    """
    from itchflow.book.books import Books
    from itchflow.hw.affinity import pin_for, unpin
    from itchflow.hw.metrics import ticks_per_ns
    from itchflow.ring import ConsumerDetached, Ring

    books = Books() if books is None else books
    if not isinstance(books, Books):   # a sharded one has no single order table to apply a ring's records to
        raise TypeError(f"run_pipeline applies a ring's records on one thread: pass Books() (threads=1), not "
                        f"{type(books).__name__}")   # (it was an AttributeError from inside the consumer: probe 42)
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, (str, SourceSpec)):   # (probe 52: bytes gave "no attribute 'kind'")
        raise TypeError(f"run_pipeline takes a path or source URL (str), not {type(source).__name__}: it hands a "
                        f"source over a ring from another process; for bytes in memory, use Books().replay(data)")
    spec = parse_source(source) if isinstance(source, str) else source
    if rate:
        if spec.kind != "file" or rate <= 0:
            raise ValueError("rate applies to file sources only, and must be positive")
        spec.options["rate"] = float(rate)
    if spec.kind == "tail":
        spec.options.setdefault("wait_for_file", wait_for_file)
        spec.options.setdefault("idle_timeout", idle_timeout)
    if heartbeat_timeout <= 0:
        raise ValueError("heartbeat_timeout must be positive")
    check_source(spec)
    wait = wait or ("spin" if pin else "yield")
    tpn = ticks_per_ns(5_000_000)
    # (the name the consumer's errors give the source: standard input's as the file sources name it)
    applier = BatchApplier(books, "<stdin>" if spec.reads_stdin else spec.text)
    run = _Run()
    if spec.kind == "ring":
        rg = Ring.open(spec.path)
        report = PipelineReport(source=spec.text, ring=rg.path)
        applier.warm_up(rg.data)
        pinned = pin_for(pin, 1)
        run.t_start = time.perf_counter()
        detached = None
        try:
            with rg.reader(consumer, wait=wait) as reader:
                try:
                    _consume(reader, applier, None, progress, run,
                             _NoProducerNotice(rg, notice or _log_warning, notice_after))
                except ConsumerDetached as e:
                    detached = e
        finally:
            unpin(pinned)
            rg.close()
        if detached is not None:   # with the report of what was applied, as every other failure
            raise PipelineError(str(detached), _finish(report, applier, books, tpn, run, top)) from detached
        if run.interrupted:
            raise PipelineInterrupted(_finish(report, applier, books, tpn, run, top))
        if run.gone:   # with the report of what was applied (a --json reader got nothing: probe 25)
            _finish(report, applier, books, tpn, run, top)
            why = ("died without closing it" if not run.gone_pid else
                   f"(pid {run.gone_pid}, alive) stopped signalling for longer than the ring's heartbeat "
                   "time-out (paused, stopped, or starved of CPU)")
            raise PipelineError(f"{rg.path}: its producer {why}, after {report.messages:,} "
                                "messages (a restarted producer continues the sequence; read again to resume)",
                                report)
        report.stream = STREAM_OUTCOME_NAMES.get(run.outcome, f"unknown outcome {run.outcome}")
        return _judge_stream(_finish(report, applier, books, tpn, run, top))

    if ring is not None:
        Ring.reclaim_stale(ring)     # a ring a killed run left behind; RingBusy if one is live
    else:
        remove_left_behind_rings()
    name = ring or os.path.join(PRIVATE_RING_DIR, f"itchflow-run-{os.getpid()}-{uuid.uuid4().hex[:8]}.ring")
    rg = Ring.create(name, capacity, consumers=[consumer], hugepages=hugepages,
                     max_payload=feed_max_payload(capacity), heartbeat_timeout=heartbeat_timeout)
    pages, why = rg.page_backing()
    if hugepages and pages == "4k":
        (notice or _log_warning)(f"--hugepages: {why}")
    report = PipelineReport(source=spec.text, ring=rg.path)
    if spec.kind == "file":
        report.pacing = f"paced at {rate:,.0f} msg/s" if rate else "flat out"
    proc = None
    parent_conn = None
    pinned = None
    stop = CTX.Event()
    produced = None
    killed_producer = False   # it had to be SIGKILLed (stopped, or stuck past SIGTERM)
    consume_error: Exception | None = None
    detached = None
    try:
        # Load the engine, the publish kernel and the reader's kernels before the fork: the
        # child inherits them, the first batch of a live feed does not pay tens of milliseconds
        # for loading compiled code, and no compiling consumer misses its heartbeats.
        applier.warm_up(rg.data)
        warm_up(rg)
        with rg.reader(consumer, wait=wait) as reader:
            reader.read_batch(timeout=0)
            parent_conn, child_conn = CTX.Pipe(duplex=False)
            run.t_start = time.perf_counter()
            proc = CTX.Process(target=producer_main, name="itchflow-producer",
                               args=(rg.path, spec, batch_bytes, pin[0] if pin else None,
                                     "spin" if pin else "yield", child_conn, stop, os.getpid()), daemon=True)
            if spec.reads_stdin:
                # standard input, for the producer: the forked child inherits this copy of fd 0
                # (multiprocessing points the child's own fd 0 at /dev/null)
                spec.options["stdin_fd"] = os.dup(0)
            try:
                proc.start()
            finally:
                if "stdin_fd" in spec.options:
                    os.close(spec.options.pop("stdin_fd"))
            child_conn.close()
            pinned = pin_for(pin, 1)
            try:
                _consume(reader, applier, proc, progress, run)
            except ValueError as e:   # what the consumer read was bad: the producer may know why
                consume_error = e
                raise
            except ConsumerDetached as e:   # reported below, with what was applied
                detached = e
            run.completed = not run.interrupted and detached is None
    finally:
        unpin(pinned)
        stop.set()
        if proc is not None:
            try:   # after a normal end the producer has sent its counters or is about to
                if parent_conn.poll(10 if proc.is_alive() and run.completed else 1):
                    produced = parent_conn.recv()
            except (EOFError, OSError):   # it died before sending: reported below
                produced = None
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
            if proc.is_alive():   # stopped (SIGSTOP) or stuck: SIGTERM waits for a SIGCONT, and the
                proc.kill()       # exit then waited for it for ever (probe 41)
                proc.join(5)
                killed_producer = True
            parent_conn.close()
        rg.close()
        rg.unlink()
        report.producer = produced[-1] if produced else {}
        if consume_error is not None:
            _finish(report, applier, books, tpn, run, top)
            if produced is not None and produced[0] == "error":
                # The producer's own error says what happened to the source (a file that shrank or
                # was rewritten while read): the consumer only saw its effect (zeros, a bad length)
                raise PipelineError(f"{spec.text}: {produced[1]}", report) from consume_error
            # bad data the consumer found: raised as it is, with the report
            consume_error.report = report
            report.error, report.stream = str(consume_error), "cut short"
    if run.interrupted:
        raise PipelineInterrupted(_finish(report, applier, books, tpn, run, top))
    _finish(report, applier, books, tpn, run, top)
    if detached is not None:
        raise PipelineError(str(detached), report) from detached
    # every failure below carries the report of what was applied (a script reading --json
    # output got nothing at all when the source failed mid-file)
    if produced is None:
        if killed_producer:
            raise PipelineError(f"{spec.text}: the producer process (pid {proc.pid}) did not answer and did not "
                                f"stop when asked (stopped, SIGSTOP, or stuck), so it was killed, after "
                                f"{report.messages:,} messages", report)
        raise PipelineError(f"{spec.text}: the producer process ended without a result "
                            f"(exit code {proc.exitcode}) after {report.messages:,} messages", report)
    if produced[0] == "error":
        raise PipelineError(f"{spec.text}: producer failed after {report.messages:,} messages: {produced[1]}",
                            report)
    if run.gone:
        # The ring judged the producer gone (no heartbeat for heartbeat_timeout): a producer
        # stopped or stalled that long (SIGSTOP, swapping, a frozen filesystem) and then told to
        # stop reports "ok" on what it had read; the books hold part of the source.
        raise PipelineError(f"{spec.text}: the producer published nothing for more than the heartbeat time-out "
                            f"({heartbeat_timeout:g} s: stalled or stopped), after {report.messages:,} messages; the "
                            f"books are incomplete (--heartbeat-timeout sets how long a pause is tolerated)", report)
    published = report.producer.get("messages")
    if published is not None and published != report.messages:
        raise PipelineError(f"{spec.text}: the producer published {published:,} messages and {report.messages:,} "
                            f"were applied", report)
    report.stream = source_outcome(report.producer)
    return _judge_stream(report)


def _judge_stream(report: "PipelineReport") -> "PipelineReport":
    """What the ring itself says of a stream its producer called whole: records this run
    lost, or did not get (it resumed or joined late), or sequence numbers that skip or go
    back between records (a damaged record said 4.6e18 messages were missing, in a stream
    called whole: probe 25) leave holes in the books."""
    if report.stream == "whole" and (report.ring_lost_records or report.ring_skipped_records
                                     or report.sequence_gaps or report.sequence_repeats):
        report.stream = "lost messages"
    return report


def source_outcome(producer: dict) -> str:
    """How a source read here ended, as a ring's producer would say it (``PipelineReport.stream``):
    "cut short" for a tail: file that stopped growing before its end-of-messages event (the
    day's end never came) and a live session (mold, soup) that stopped before its end of
    session, "lost messages" for a capture with sequence gaps or a mold session with messages
    given up on (the books have holes where they were), else "whole"."""
    if producer.get("tail", {}).get("ended_by") == "idle time-out":
        return "cut short"
    if "mold" in producer and (not producer.get("finished") or producer.get("end_contradicted")):
        return "cut short"
    if "soup" in producer and not producer["soup"].get("ended"):
        return "cut short"
    capture = producer.get("capture", {})
    # (data past a capture's end of session is not delivered: the run said "whole", probe 36)
    if capture.get("gaps", 0) or capture.get("after_end_of_session", 0) or producer.get("mold", {}).get("lost", 0):
        return "lost messages"
    return "whole"


PRIVATE_RING_DIR = "/dev/shm"
_PRIVATE_RING = re.compile(r"itchflow-run-(\d+)-[0-9a-f]{8}\.ring$")


def remove_left_behind_rings(folders: list[str] | None = None, pattern: re.Pattern = _PRIVATE_RING) -> list[str]:
    """Remove the private rings of runs that are gone (a SIGKILLed ``run`` cannot remove its
    own, and its 16 MiB stayed in /dev/shm until ``itchflow ring rm --stale``; a ``--hugepages``
    run's, on the huge-page mount, held huge pages): a ring named by a pid not alive here, and
    stale by its own words too (no heartbeat younger than its timeout: a run in another PID
    namespace sharing /dev/shm has a pid this one cannot see). Returns what was removed.
    pattern: the names to look at, the pid their first group (``compare`` passes its rings')."""
    from itchflow.ring.paths import ring_folders

    removed = []
    for folder in ring_folders() if folders is None else folders:
        removed += _remove_left_behind_in(folder, pattern)
    return removed


def _remove_left_behind_in(folder: str, pattern: re.Pattern) -> list[str]:
    from itchflow.ring import Ring, RingError
    from itchflow.ring.liveness import pid_alive

    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            rg = Ring.open(path)
        except (OSError, RingError):   # gone meanwhile, or not a ring: not ours to judge
            continue
        try:
            stale = rg.staleness().stale
        finally:
            rg.close()
        if stale:
            try:
                os.remove(path)
                removed.append(name)
            except OSError:
                pass
    return removed


class _Run:
    """What the consume loop leaves behind, also when Ctrl-C ends it."""

    def __init__(self):
        self.t_start = time.perf_counter()
        self.t_first: float | None = None
        self.t_end: float | None = None
        self.gone = False
        self.gone_pid = 0             # the producer judged gone, yet its pid alive (SIGSTOP, starved)
        self.outcome = 0              # ring.layout.STREAM_*: how the ring's producer said its stream ended
        self.interrupted = False
        self.completed = False
        self.ring_lost_records = 0
        self.ring_skipped_records = 0


def _log_warning(text: str) -> None:
    import logging

    logging.getLogger("itchflow").warning(text)


class _NoProducerNotice:
    """Says once, ``after`` seconds into a wait on a ring no producer has open, that the wait
    may be for ever (a kept ring whose writer has not started, or exited before it opened the
    ring) instead of waiting in silence."""

    PARKED_POLL_S = 0.05   # once said: look for a producer 20 times a second, not in a busy loop

    def __init__(self, ring, notice, after: float):
        self.ring, self.notice, self.at = ring, notice, time.monotonic() + after
        self.said = False

    def idle(self) -> None:
        from itchflow.ring.liveness import no_producer

        if not self.said:
            if time.monotonic() < self.at:
                return
            why = no_producer(self.ring.words)
            if why is None:
                return
            self.notice(f"{self.ring.path}: waiting for a producer: {why}. Start one (itchflow listen --ring, "
                        "soup fetch --ring) or stop with Ctrl-C")
            self.said = True
        while no_producer(self.ring.words) is not None:   # the wait strategy's spin or yield burnt
            time.sleep(self.PARKED_POLL_S)                 # a core for as long as none came


def _consume(reader, applier, proc, progress, run: _Run, waiting: _NoProducerNotice | None = None) -> None:
    """Apply everything the ring's producer publishes until it closes the ring (or dies: then
    run.gone), or Ctrl-C (run.interrupted). Each read is used in place and validated after it
    is applied (``Reader.check_intact``): a consumer paused past the heartbeat timeout raises
    ConsumerDetached instead of trusting bytes the producer may have overwritten."""
    from itchflow.hw.metrics import tsc
    from itchflow.ring import ConsumerDetached, ProducerGone

    st = applier.st
    child_ended = False
    # the slot's counter is for its lifetime: report this run's, from before it attached (a
    # slot the producer detached before this run came loses, at the join, all it skipped: a
    # whole session, reported as 0 lost and exit 0, when taken from here)
    lost_before = reader.lost_records_at_attach
    used = True
    try:
        while True:
            used = False   # from here until it is applied, the batch read is not consumed
            try:
                batch = reader.read_batch(timeout=POLL_S)
            except EOFError as e:
                run.outcome = getattr(e, "outcome", 0)   # how the ring's producer said its stream ended
                if run.t_first is None:   # resumed at the end of a closed ring: every record was before it
                    run.ring_skipped_records = max(0, reader.records - (reader.lost_records - lost_before))
                break
            except ProducerGone as e:
                run.gone = True
                run.gone_pid = e.alive_pid   # alive: paused or starved, not dead
                break
            if len(batch) == 0:
                # Nothing for a while. is_alive() reaps a killed child producer (kill(pid, 0), which
                # the ring uses, still finds a zombie), so the next read drains and says it is gone.
                # A child that ended before it opened the ring as its writer leaves no producer to
                # be gone: an empty read after it ended (everything it published was there to
                # read) is the end.
                if proc is not None and not proc.is_alive():
                    if child_ended:
                        run.gone = True
                        break
                    child_ended = True
                if waiting is not None:
                    waiting.idle()
                continue
            waiting = None     # a producer published: it is there
            taken = tsc()
            if run.t_first is None:
                run.t_first = time.perf_counter()
                # the ring's records before this run's first, less what the read itself counted
                # as lost (a lap, a rejoin): a restarted run resumed mid-stream, with empty books
                run.ring_skipped_records = max(0, batch.first_record - (reader.lost_records - lost_before))
            applier.apply(batch, taken, reader.check_intact)
            used = True
            if progress is not None:
                progress(int(st[S_MESSAGES]), int(st[S_BYTES]))
    except KeyboardInterrupt:
        run.interrupted = True
        if not used:   # stopped inside a batch: a consumer resuming this name gets it again
            reader.give_back()
    except ConsumerDetached as e:
        # (a ring:NAME's producer is another command's, whose time-out run cannot set: probe 41)
        hint = ("--heartbeat-timeout sets how long a pause is tolerated" if proc is not None else
                "the ring's producer detaches a consumer paused past the ring's heartbeat time-out")
        raise ConsumerDetached(f"{e}. The books built so far are incomplete and cannot be trusted: run again "
                               f"({hint})") from None
    run.t_end = time.perf_counter()
    run.ring_lost_records = reader.lost_records - lost_before


def _fill_counts(report: PipelineReport, applier) -> None:
    st = applier.st
    report.messages, report.bytes, report.batches = int(st[S_MESSAGES]), int(st[S_BYTES]), int(st[S_BATCHES])
    report.sequence_gaps, report.sequence_gap_messages = int(st[S_GAPS]), int(st[S_GAP_MESSAGES])
    report.sequence_repeats = int(st[S_REPEATS])


def _finish(report, applier, books, tpn, run: _Run, top) -> PipelineReport:
    from itchflow.hw.metrics import latency_summary

    _fill_counts(report, applier)
    t_end = run.t_end if run.t_end is not None else time.perf_counter()
    report.seconds = (t_end - run.t_first) if run.t_first is not None else 0.0
    report.wall_seconds = t_end - run.t_start
    report.interrupted = run.interrupted
    if run.interrupted:   # Ctrl-C: the books hold part of the stream
        report.stream = "cut short"
    report.ring_lost_records = run.ring_lost_records
    report.ring_skipped_records = run.ring_skipped_records
    to_ns = 1.0 / tpn
    hand_off, applied, received = applier.samples()
    hand_off = hand_off[hand_off != 0]   # batches whose producer gave no publish time
    report.latency = {
        "publish_to_consume": latency_summary(hand_off * to_ns, "batches"),
        "consume_to_applied": latency_summary(applied * to_ns, "batches"),
    }
    report.samples = {"publish_to_consume": hand_off * to_ns, "consume_to_applied": applied * to_ns}
    if len(received) or report.source.startswith("mold://"):   # (the key on an empty mold run too: probe 56)
        report.latency["receive_to_applied"] = latency_summary(received.astype(np.float64), "batches")
        report.samples["receive_to_applied"] = received.astype(np.float64)
    ticks = int(applier.st[S_APPLY_TICKS])
    report.apply_ns_per_message = ticks * to_ns / report.messages if report.messages else 0.0
    report.book = {"live_orders": books.live_orders(), "peak_live_orders": books.peak_live_orders,
                   "tops_digest": books.tops_digest(),
                   "stocks_with_orders": int(np.count_nonzero(books.books["length"].reshape(-1, 2).sum(axis=1))),
                   "messages_applied": books.messages, "unknown_types": books.unknown_types,
                   "anomalies": {k: v for k, v in books.anomalies().items() if v},
                   "growth": books.growth()}
    report.top = _top_stocks(books, top)
    return report
