"""``run_compare``: one generated day through every path into the same book engine, each
measured the same way; everything it creates (day files, rings, processes, namespaces) is
removed when it ends, however it ends (an exception or Ctrl-C included)."""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field

from numba import njit

from itchflow.compare.paths import ORDER, PATHS
from itchflow.compare.row import FAILED, NOT_RUN, OK, Row
from itchflow.wire.binaryfile import OK as BF_OK
from itchflow.wire.binaryfile import next_message

RING_PREFIX = "/dev/shm/itchflow.compare-"


@njit(nogil=True, cache=True)
def first_messages_end(buf, want):
    """(offset after the first ``want`` whole messages, how many there were)."""
    pos = 0
    n = 0
    while n < want:
        status, q, length = next_message(buf, pos, len(buf))
        if status != BF_OK:
            break
        pos = q + length
        n += 1
    return pos, n


def warm_up(path: str) -> None:
    """Load every compiled kernel the rows use before any is timed (a cold Numba cache would
    otherwise be measured as the first row's cost)."""
    from itchflow.book.books import Books
    from itchflow.pipeline.consume import BatchApplier
    from itchflow.pipeline.publish import CONSUMER, BatchPublisher, feed_max_payload
    from itchflow.wire.binaryfile import whole_messages_end
    from itchflow.pipeline.publish import warm_up as warm_publish
    from itchflow.ring import Ring
    from itchflow.sources.chunk import map_file
    from itchflow.sources.tail import whole_messages_until_end_event

    from itchflow.book import layout as BL

    from itchflow.compare.digest import ready_books

    data = map_file(path)
    # one full pass first: the first pass in a process costs up to 3x the CPU of later ones
    # (measured here), and would be charged to whichever row came first
    ready_books().apply(data[:first_messages_end(data, 2_000_000)[0]], 1)
    books = Books(table=1)            # small: growing it (below) is cheap
    books.apply(data[:first_messages_end(data, 2000)[0]], 1)
    for status in (BL.NEED_TABLE, BL.NEED_LEVELS, BL.NEED_ARENA, BL.NEED_MATCHES, BL.NEED_TRADE_LOG,
                   BL.NEED_TRADES_OUT, BL.NEED_BBO_OUT, BL.NEED_L2_OUT):
        books._grow(status)           # the growth kernels load when first needed: load them now
    whole_messages_until_end_event(data, 0, min(len(data), 4096))
    ring = Ring.create(f"{RING_PREFIX}{os.getpid()}-warm.ring", 1 << 20, consumers=[CONSUMER],
                       max_payload=feed_max_payload(1 << 20))
    try:
        BatchApplier(books, "warm-up").warm_up(ring.data)
        warm_publish(ring)
        # and typed for what the rows pass: the read-only mapped day (a first call with a new
        # type loads code while holding the GIL, stalling the other thread of the ring row)
        writer = ring.writer()
        BatchPublisher(writer, 1 << 12).publish(data, 1, 0, 0, 0, 0)
        writer.close()
        whole_messages_end(data, 0, 0)
    finally:
        ring.close()
        ring.unlink()


class Day:
    """The shared terms of one comparison run: the day, its paced prefix, the rate, where
    temporary things go, and the baseline's books that every row is held to."""

    def __init__(self, workdir: str, messages: int, seed: int, stocks: int, rate: float, paced_seconds: float,
                 packet_bytes: int, count_syscalls: bool):
        from itchflow.hw.metrics import ticks_per_ns
        from itchflow.sim.generator import write_day
        from itchflow.sources.chunk import map_file

        self.workdir = workdir
        self.path = os.path.join(workdir, "day.itch")
        self.messages = int(write_day(self.path, messages, seed, stocks=stocks)["messages"])
        data = map_file(self.path)
        self.rate = float(rate)
        self.packet_bytes = int(packet_bytes)
        want = max(1, min(self.messages, int(self.rate * paced_seconds)))
        end, n = first_messages_end(data, want)     # the paced prefix: the day's first messages
        self.prefix_path = os.path.join(workdir, "prefix.itch")
        with open(self.prefix_path, "wb") as f:
            f.write(data[:end])
        self.prefix_messages = n
        end, self.warm_messages = first_messages_end(data, min(2000, n))
        self.warm_path = os.path.join(workdir, "warm.itch")
        with open(self.warm_path, "wb") as f:
            f.write(data[:end])
        del data
        self.count_syscalls = count_syscalls
        warm_up(self.path)
        self.tpn = ticks_per_ns(5_000_000)
        self.baseline_state = None
        self.baseline_digest = ""
        self._procs: list = []
        self._n = 0

    def ring_path(self, tag: str) -> str:
        self._n += 1
        return f"{RING_PREFIX}{os.getpid()}-{tag}-{self._n}.ring"

    def temp_file(self, tag: str) -> str:
        self._n += 1
        return os.path.join(self.workdir, f"{tag}-{self._n}")

    def track(self, proc) -> None:
        """A child process to end (by its pid) if the run stops early."""
        self._procs.append(proc)

    def judge_books(self, row: Row, books) -> None:
        from itchflow.compare.digest import book_state, digest, first_difference

        row.digest = digest(books)
        if self.baseline_state is None:       # this is the baseline
            self.baseline_state, self.baseline_digest = book_state(books), row.digest
            row.books_equal = True
            return
        row.books_equal = row.digest == self.baseline_digest
        if not row.books_equal:
            row.books_difference = first_difference(book_state(books), self.baseline_state) or "digest differs"

    def cleanup(self) -> None:
        """End every child this run started (and their children: the hybrid row's pipeline
        forks a reader), by pid; remove the rings it made."""
        import signal

        for p in self._procs:
            try:
                if p.pid is None:
                    continue
                for pid in reversed(descendants(p.pid)):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                if p.is_alive():
                    p.kill()
                p.join(5)
            except (AssertionError, ValueError, OSError):
                pass   # already reaped
        self._procs.clear()
        for path in glob.glob(f"{RING_PREFIX}{os.getpid()}-*"):
            try:
                os.unlink(path)
            except OSError:
                pass


def descendants(pid: int) -> list[int]:
    """Every process below pid (children first-level first), from /proc/<pid>/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in glob.glob(f"/proc/{p}/task/*/children"):
            try:
                with open(task) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


@dataclass
class CompareReport:
    machine: dict
    terms: dict
    rows: list = field(default_factory=list)
    claims: list = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    walks: dict = field(default_factory=dict)   # the receive loops alone (compare.walks), when measured
    left_behind_removed: list = field(default_factory=list)   # what killed runs left (folders, rings), removed

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.key == key), None)

    def failed_rows(self) -> list[str]:
        """What went wrong, a phrase a row: a row that failed, or whose books differ from the
        baseline's (the command's exit status; a row that could not run here is not a failure)."""
        out = [f"{r.key} failed" for r in self.rows if r.status == FAILED]
        return out + [f"{r.key}'s books differ from the baseline's" for r in self.rows
                      if r.status == OK and r.books_equal is False]

    def to_dict(self) -> dict:
        return {"machine": self.machine, "terms": self.terms, "seconds": self.seconds,
                "interrupted": self.interrupted, "left_behind_removed": self.left_behind_removed,
                "rows": [r.to_dict(PATHS[r.key]) for r in self.rows], "receive_walks": self.walks,
                "claims": self.claims}


def _rows_for(paths) -> list[str]:
    if not paths:
        return list(ORDER)
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise ValueError(f"unknown path(s) {', '.join(unknown)} (known: {', '.join(ORDER)})")
    keys = ["inprocess"] + [k for k in ORDER if k in paths and k != "inprocess"]   # the baseline always runs
    return keys


def run_compare(messages: int = 1_000_000, rate: float = 100_000, paths=None, *, seed: int = 7, stocks: int = 100,
                paced_seconds: float = 1.0, net: str = "auto", count_syscalls: bool | None = None,
                workdir: str | None = None, on_row=None) -> CompareReport:
    """Run the comparison (see module doc). paths: keys of ``PATHS`` (default: all).
    net: "veth" (two namespaces joined by a veth pair; needs root and the netns helper),
    "loopback", or "auto" (veth when possible, else loopback). count_syscalls: use perf
    (default: when it can count here). on_row(row) is called as each row finishes."""
    from itchflow.bench.common import machine
    from itchflow.compare import claims, local, net as netrows
    from itchflow.compare.measure import perf_unavailable_reason, steal_ns
    from itchflow.protocol.mold.feed import DEFAULT_PAYLOAD
    from itchflow.wire.moldudp64 import HEADER_SIZE

    keys = _rows_for(paths)
    perf_reason = perf_unavailable_reason()
    if count_syscalls is None:
        count_syscalls = perf_reason is None
    t_start = time.perf_counter()
    steal0 = steal_ns()
    left_behind = remove_left_behind(workdir)
    tmp = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=workdir)
    report = CompareReport(machine=machine(), terms={}, left_behind_removed=left_behind)
    day = None
    lab = None
    try:
        day = Day(tmp, messages, seed, stocks, rate, paced_seconds, DEFAULT_PAYLOAD - HEADER_SIZE, count_syscalls)
        report.terms = {"messages": day.messages, "seed": seed, "stocks": stocks, "rate_msgs_per_s": day.rate,
                        "paced_messages": day.prefix_messages, "packet_payload_bytes": DEFAULT_PAYLOAD,
                        "flat_out_batch_bytes": local.FLAT_BATCH_BYTES, "paced_batch_bytes": day.packet_bytes,
                        "syscall_counter": ("perf stat -e raw_syscalls:sys_enter on the receiving thread"
                                            if count_syscalls else f"none ({perf_reason or 'turned off'})"),
                        "net": None}
        runners = {"inprocess": local.inprocess, "ring_threads": local.ring_threads,
                   "ring_processes": local.ring_processes, "tail": local.tail}
        net_keys = [k for k in keys if PATHS[k].family == "network"]
        if net_keys:
            lab = netrows.open_lab(net)
            report.terms["net"] = lab.describe()
        for key in keys:
            if key in runners:
                row = _guarded(key, lambda k=key: runners[k](day))
            else:
                row = _guarded(key, lambda k=key: netrows.run_row(k, day, lab))
            base = report.row("inprocess")
            if base is not None and base.cpu_ns_per_msg:
                row.baseline_cpu_ns_per_msg = base.cpu_ns_per_msg
            report.rows.append(row)
            if on_row is not None:
                on_row(row)
        if any(k in keys for k in WALK_ROWS):
            report.walks = _walks(lab, DEFAULT_PAYLOAD)
    except KeyboardInterrupt as e:
        report.interrupted = True
        e.report = report          # the rows done so far, for the caller to show (after the cleanup)
        raise
    finally:
        try:
            if day is not None:
                day.cleanup()          # processes first: they may live in the namespaces
        finally:
            if lab is not None:
                lab.close()
            shutil.rmtree(tmp, ignore_errors=True)
            report.seconds = time.perf_counter() - t_start
            report.terms["steal_seconds"] = (steal_ns() - steal0) / 1e9
            report.claims = claims.judge(report)
    return report


FOLDER_PREFIX = "itchflow-compare-"   # then the pid of the run that made it
_RING_NAME = re.compile(re.escape(os.path.basename(RING_PREFIX)) + r"(\d+)-.*\.ring$")


def remove_left_behind(workdir: str | None = None, ring_folder: str = os.path.dirname(RING_PREFIX)) -> list[str]:
    """What compare runs that are gone left (a SIGKILL runs no clean-up): their day folders
    and their rings (16 MiB each in /dev/shm; probe 27 found them kept for good). Returns
    what was removed. Their namespaces go when the next veth lab is made."""
    from itchflow.pipeline.run import remove_left_behind_rings

    return remove_stale_folders(workdir) + remove_left_behind_rings([ring_folder], _RING_NAME)


def remove_stale_folders(workdir: str | None = None) -> list[str]:
    """Remove the day folders of compare runs whose process is gone (a SIGKILL runs no
    clean-up, and each holds a generated day), by ``ring.liveness.left_behind``; those of live
    runs stay. Returns the paths removed."""
    import re

    from itchflow.ring.liveness import left_behind

    parent = tempfile.gettempdir() if workdir is None else workdir
    removed = []
    for path in glob.glob(os.path.join(glob.escape(parent), FOLDER_PREFIX + "*")):
        m = re.fullmatch(re.escape(FOLDER_PREFIX) + r"(\d+)-\w+", os.path.basename(path))
        if m is None or not os.path.isdir(path) or not left_behind(int(m.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


WALK_ROWS = ("udp_recv", "udp_recvmmsg", "tpacket", "af_xdp")   # rows whose claims need the loop alone


def _walks(lab, datagram_bytes: int) -> dict:
    """The receive loops alone (compare.walks), after the rows: a failure is written down, the
    report stays."""
    from itchflow.compare.walks import measure_walks

    try:
        return measure_walks(lab.kind, datagram_bytes)
    except KeyboardInterrupt:
        raise
    except Exception as e:   # noqa: BLE001 - reported, with where it came from
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return {"reason": f"{type(e).__name__}: {e} ({os.path.basename(tb.filename)}:{tb.lineno})", "walks": {}}


def _guarded(key: str, fn) -> Row:
    """Run one row; a failure becomes a failed row with its reason (the other rows still run)."""
    from itchflow.compare.net import NotRun

    try:
        return fn()
    except NotRun as e:
        return Row(key, status=NOT_RUN, reason=str(e))
    except KeyboardInterrupt:
        raise
    except Exception as e:   # noqa: BLE001 - reported in the row, with where it came from
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return Row(key, status=FAILED, reason=f"{type(e).__name__}: {e} ({os.path.basename(tb.filename)}:{tb.lineno})")


__all__ = ["CompareReport", "Day", "run_compare"]
