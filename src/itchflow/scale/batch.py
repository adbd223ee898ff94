"""``itchflow.batch``: run one job over an archive of days on a Dask cluster.

The graph per day: [split] -> shard 0..N-1 -> finish. A day that is not split (N = 1, a
local file) runs as one task on its file. Tasks pass paths and small summaries; each leaves
a done marker, so a rerun (same output directory, same job) resumes where the last stopped.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import math
import os
import time
import uuid
from typing import Callable

from itchflow.scale import jobs
from itchflow.scale.inputs import expand, is_url, local_path, source_identity
from itchflow.scale.layout import (
    PART, Layout, day_key, hold_directory, is_date_key, read_json, refuse_nested, write_json,
)

MAX_AUTO_SHARDS = 64


class BatchError(RuntimeError):
    """Some days failed; ``result`` holds what finished and the errors (finished days are kept:
    a rerun redoes only the rest)."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.result = result


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: the running tasks were cancelled; ``result`` holds the days that
    finished (their files and markers stay, so a rerun resumes)."""

    def __init__(self, result: dict):
        super().__init__("interrupted")
        self.result = result


def dashboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


SCHEDULER_CONNECT_S = 10   # how long batch waits to reach a scheduler given by address


# Open files a LocalCluster needs: measured on this project's guests, 1 worker started at a limit
# of 40, 2 at 48, 4 at 96, 8 at 128 (each worker takes sockets to the scheduler, the nanny and
# its pipes). Under that, distributed retried for 30-60 s and printed pages of tracebacks, or at
# 16 logged its EMFILE in a loop until killed.
OPEN_FILES_BASE = 64
OPEN_FILES_PER_WORKER = 16


def ensure_open_files(workers: int) -> int:
    """Make sure this process (and the workers it starts, who inherit it) may open enough files
    for a LocalCluster of ``workers``: the soft limit is raised up to the hard one if it is too
    low; a hard limit too low is an OSError saying what to do. Returns the soft limit."""
    import resource

    need = OPEN_FILES_BASE + OPEN_FILES_PER_WORKER * int(workers)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        return need
    raise OSError(f"a local cluster of {workers} worker(s) needs at least {need} open files, and this "
                  f"process may open {soft} (ulimit -n; hard limit {hard}): raise the limit, start fewer "
                  "--workers, or give --scheduler the address of a cluster of your own")


def local_cluster(workers: int | None = None):
    """A LocalCluster of worker processes, one thread each (the kernels hold the GIL-free core)."""
    from distributed import LocalCluster

    n = int(workers or os.cpu_count() or 1)
    ensure_open_files(n)
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                        dashboard_address=":0",  # any free port: never collide with another cluster
                        # a task's failure is reported by batch itself, naming the day and the
                        # offset: the worker's own "Compute Failed" log with its traceback was noise
                        silence_logs=logging.CRITICAL)


# Ending on a signal or an error, the cluster's workers may be gone already (a SIGTERM to the
# group), and closing it logged their broken connections with tracebacks ("Future exception was
# never retrieved", CommClosedError: probe 37); batch says what happened itself.
_CLOSE_LOGGERS = ("asyncio", "distributed", "tornado", "tornado.application", "tornado.general")


@contextlib.contextmanager
def _quiet_close(failing: bool):
    """Those loggers silenced while a failing run's own cluster closes, and as they were after
    (batch is API: a caller's logging is theirs, probe 40)."""
    if not failing:
        yield
        return
    loggers = [logging.getLogger(n) for n in _CLOSE_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def auto_shards(days: int, threads: int) -> int:
    """Shards per day so every worker thread has work: 1 when there are enough days."""
    if days >= threads:
        return 1
    return min(MAX_AUTO_SHARDS, math.ceil(threads / max(days, 1)))


def plan_days(paths) -> list[tuple[str, str]]:
    """(date key, source) per day, sorted by date; two files of one date are an error."""
    days: dict[str, str] = {}
    files: dict[str, tuple[str, str]] = {}   # real path -> (key, name) of local files
    for p in expand(paths):
        key = day_key(p)
        local = local_path(p)
        real = os.path.realpath(local) if local is not None else None
        if real in files:
            # one file named two ways (arch/X, ./arch/X, a link to it) is one day; under two
            # dates it is a mistake to say, not a day to drop or to write twice (probe 24)
            if files[real][0] == key:
                continue
            raise ValueError(f"{p} and {files[real][1]} are the same file ({real}) under two dates "
                             f"({key}, {files[real][0]}): a link named for another day? give it once")
        if key in days:
            raise ValueError(f"{p} and {days[key]} are the same day ({key}); give one file per day")
        days[key] = p
        if real is not None:
            files[real] = (key, p)
    if not days:
        raise FileNotFoundError("no input days")
    return sorted(days.items())


def batch(paths, job: str, out, client=None, shards: int | None = None, symbols=None, *,
          workers: int | None = None, progress: Callable[[dict], None] | None = None,
          on_start: Callable[[dict], None] | None = None, keep_scratch: bool = False,
          crash_once: str | None = None, **job_options) -> dict:
    """Run `job` (stats, decode, bbo, trades, snapshots, lobster, bars, crosses, imbalances) over every
    day in paths into `out`.

    paths: a path, URL or glob (``file://``, ``s3://`` ... with the matching fsspec extra), or
    a list of them; each file is a day, its date taken from its name. out: a local directory
    (or one every worker mounts) that becomes a hive-partitioned Parquet dataset. client: a
    ``distributed.Client`` or a scheduler address; None starts a LocalCluster of `workers`
    processes. shards: locate shards per day (None: 1 when there are at least as many days as
    worker threads, else enough to keep every thread busy). symbols and job_options are those
    of the single-file command (decode: types, chunk; snapshots: at (ns) or every (s), depth;
    lobster: levels, start, end; bars: every, start, end).
    progress(event) is called after each task; on_start(info) once the cluster is up.
    crash_once: testing hook, a marker path: the first shard task kills its worker.

    Returns {"out", "job", "days": [summary per day], "messages", "seconds", ...}; raises
    BatchError (with .result) when a day failed.
    """
    syms, opts = jobs.job_options(job, symbols, job_options)
    days = plan_days(paths)
    root = local_path(os.fspath(out))
    if root is None:
        raise ValueError(f"{out}: the output must be a directory every worker can write (a local path "
                         "or a shared mount), not a URL")
    if shards is not None and not 1 <= int(shards) <= 4096:
        raise ValueError("shards must be 1..4096")
    lay = Layout(os.path.abspath(root))
    with hold_directory(lay):   # (two runs into one OUT failed on each other's temporary files: probe 30)
        refuse_nested(lay)
        identity = {"job": job, "symbols": syms, "options": opts}
        existing = read_json(lay.job_file())
        if existing is not None and existing != identity and holds_results(lay):
            raise ValueError(f"{out} already holds a different job ({existing}); use another directory")
        identities = {day: source_identity(source) for day, source in days}   # (a URL's: a request each)
        check_sources(lay, identities, record=False)   # refused before a cluster starts; recorded once one has

        t_start = time.perf_counter()
        own_cluster = own_client = None
        if client is None:
            from distributed import Client

            own_cluster = local_cluster(workers)
            client = own_client = Client(own_cluster)
        elif isinstance(client, str):
            from distributed import Client

            check_scheduler(client)
            # distributed's own connect time-out is 30 s: a wrong address took that long to say so
            client = own_client = Client(client, timeout=SCHEDULER_CONNECT_S)
        try:
            if existing is not None and existing != identity:   # another job, none of whose tasks finished:
                for day, _ in days:                              # its plans (shards, split) are not this job's
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(lay.marker(day, "plan"))
            write_json(lay.job_file(), identity)   # (a run that never reached a cluster left nothing here)
            check_sources(lay, identities)
            from itchflow.scale.tasks import WarmKernels

            register = getattr(client, "register_plugin", None) or client.register_worker_plugin
            register(WarmKernels())
            threads = sum(client.nthreads().values()) or 1
            # our LocalCluster serves the dashboard only with bokeh here; a remote scheduler's own
            # environment decides, which we cannot see: give its link
            dashboard = client.dashboard_link if own_cluster is None or dashboard_available() else None
            info = {"dashboard": dashboard,
                    "scheduler": client.scheduler.address, "threads": threads, "days": len(days),
                    # files whose names hold no date: partitioned by their stem (date=README)
                    "undated_days": [day for day, _ in days if not is_date_key(day)],
                    "startup_seconds": time.perf_counter() - t_start}
            return _run(client, lay, days, job, syms, opts, shards, threads, info, progress, on_start,
                        keep_scratch, crash_once)
        finally:
            with _quiet_close(failing=own_cluster is not None and sys.exc_info()[0] is not None):
                if own_client is not None:
                    own_client.close()
                if own_cluster is not None:
                    own_cluster.close()


def holds_results(lay: Layout, day: str | None = None) -> bool:
    """Whether a task of this output directory (of one day, or any) finished: a marker other
    than the input and plan records, or a day's folder of data. A run that failed before any
    task finished (a wrong scheduler address, a corrupt download) leaves nothing to protect."""
    done = lay.done_dir()
    days = [day] if day is not None else (os.listdir(done) if os.path.isdir(done) else [])
    for d in days:
        try:
            names = os.listdir(lay.done_dir(d))
        except FileNotFoundError:
            names = []
        if any(n.endswith(".json") and n not in _RECORDS for n in names):
            return True
    folders = [lay.day_dir(day)] if day is not None else (
        [os.path.join(lay.root, n) for n in os.listdir(lay.root) if n.startswith("date=")]
        if os.path.isdir(lay.root) else [])
    return any(PART in files for folder in folders for _, _, files in os.walk(folder))


_RECORDS = ("source.json", "plan.json")   # what a day holds before any of its tasks finished


def check_sources(lay: Layout, identities: dict[str, dict], record: bool = True) -> None:
    """Every day's input must be the one its output (finished or not) was made from: a rerun
    resumes from the markers, and after the input changed (another file of that date, or the
    same file rewritten) it returned the old day's results as done. A day none of whose tasks
    finished (its input was a corrupt download, now replaced) simply starts again. Records the
    inputs of days seen for the first time (record); a ValueError naming every changed day,
    before any task runs. identities: each day's ``source_identity``."""
    changed = []
    for day, now in identities.items():
        before = read_json(lay.marker(day, "source"))
        if before is not None and before != now and not holds_results(lay, day):
            if record:   # nothing was made from the old input: forget its plan, record the new one
                for name in ("plan", "source"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(lay.marker(day, name))
            before = None
        if before is None:
            if record:
                write_json(lay.marker(day, "source"), now)
        elif before != now:
            what = ", ".join(f"{k} {before.get(k)} -> {now[k]}" for k in now if before.get(k) != now[k])
            changed.append(f"{day} ({what})")
    if changed:
        raise ValueError(f"{lay.root}: the input of {len(changed)} day(s) is not the one its output here was made "
                         f"from: {'; '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}. Use another output "
                         "directory, or remove date=DAY/ and _itchflow/done/DAY/ of those days to redo them")


def _plan(lay: Layout, day: str, source: str, job: str, shards: int | None, auto: int) -> dict:
    plan = read_json(lay.marker(day, "plan"))
    if plan is None:
        n = 1 if job in jobs.WHOLE_DAY_JOBS else int(shards or auto)
        # stats streams a URL itself; any other job reads a local file (a URL's one shard)
        plan = {"shards": n, "split": job != "stats" and (n > 1 or is_url(source))}
        write_json(lay.marker(day, "plan"), plan)
    return plan


def _run(client, lay, days, job, syms, opts, shards, threads, info, progress, on_start, keep_scratch,
         crash_once) -> dict:
    from distributed import as_completed

    from itchflow.scale.tasks import finish_day, shard_task, split_task

    run = uuid.uuid4().hex[:8]
    auto = auto_shards(len(days), threads)
    finished: dict[str, dict] = {}
    futures, what = [], {}
    redone: dict[str, str] = {}
    for day, source in days:
        done = read_json(lay.marker(day, "day"))
        if done is not None:
            missing = missing_parts(lay, day, job, done)
            if not missing:
                finished[day] = done
                continue
            redone[day] = f"{len(missing)} part(s) missing, e.g. {missing[0]}"
            forget_day(lay, day)
        plan = _plan(lay, day, source, job, shards, auto)
        n = plan["shards"]
        split_f = None
        if plan["split"]:
            split_f = client.submit(split_task, source, lay.root, day, n, key=f"split-{day}-{run}", pure=False)
            futures.append(split_f)
            what[split_f.key] = (day, "split", n)
        parts = []
        for k in range(n):
            f = client.submit(shard_task, split_f, source, lay.root, day, k, job, syms, opts, crash_once,
                              key=f"shard-{day}-{k}-{run}", pure=False)
            parts.append(f)
            what[f.key] = (day, "shard", n)
        fin = client.submit(finish_day, split_f, parts, source, lay.root, day, job, keep_scratch,
                            key=f"finish-{day}-{run}", pure=False)
        futures.extend(parts)
        futures.append(fin)
        what[fin.key] = (day, "finish", n)
    info = dict(info, tasks=len(futures), resumed_days=sorted(finished), redone_days=redone)
    if on_start is not None:
        on_start(info)

    t0 = time.perf_counter()
    failed: dict[str, str] = {}
    split_messages: dict[str, int] = {}
    # this run's messages: a day or a shard task done by an earlier run (resumed) took none of
    # this run's time, so neither the progress rate nor the result's counts it
    done_tasks, messages = 0, 0
    try:
        for fut in as_completed(futures):
            day, kind, n = what[fut.key]
            done_tasks += 1
            if fut.status == "error":
                failed.setdefault(day, _error_text(fut.exception()))
            elif fut.status == "finished":
                res = fut.result()
                if kind == "split":
                    split_messages[day] = res["messages"]
                elif kind == "shard" and not res.get("resumed"):
                    messages += (split_messages[day] / n if day in split_messages else res["messages"])
                elif kind == "finish":
                    finished[day] = res
            if progress is not None:
                progress({"done": done_tasks, "total": len(futures), "messages": int(messages),
                          "elapsed": time.perf_counter() - t0, "day": day, "kind": kind})
    except KeyboardInterrupt:
        client.cancel(futures)
        raise BatchInterrupted(_result(info, lay, job, days, finished, failed, t0, round(messages))) from None
    except BaseException:
        client.cancel(futures)
        raise
    result = _result(info, lay, job, days, finished, failed, t0, round(messages))
    if failed:
        raise BatchError(f"{len(failed)} day(s) failed: " + "; ".join(f"{d}: {e}" for d, e in failed.items()),
                         result)
    return result


def missing_parts(lay: Layout, day: str, job: str, summary: dict) -> list[str]:
    """The data files a finished day's marker stands for that are not there (deleted, lost in
    a copy): such a day is redone, never reported done over a dataset that lacks them."""
    if job in jobs.WHOLE_DAY_JOBS:
        parts = [lay.part(day, None)]
    else:
        parts = [lay.part(day, k) for k in range(int(summary.get("shards", 1)))]
    return [p for p in parts if not os.path.isfile(p)]


def forget_day(lay: Layout, day: str) -> None:
    """Drop a day's task markers and summary (its input and plan records stay), so that every
    task of the day runs again: the split too, its scratch files being gone with the day done."""
    folder = lay.done_dir(day)
    for name in os.listdir(folder):
        if name.endswith(".json") and name not in _RECORDS:
            os.remove(os.path.join(folder, name))
    try:
        os.remove(lay.summary(day))
    except FileNotFoundError:
        pass


def check_scheduler(address: str, timeout_s: float = SCHEDULER_CONNECT_S) -> None:
    """Refuse, with a clear error, an address where no Dask scheduler answers: a port that
    accepts and then says nothing (distributed waited past its own time-out, for ever), or a
    service that answers in another protocol (an HTTP reply read as a frame length was a
    numpy MemoryError of exabytes). A Dask server speaks first: its handshake is a frame
    count (8 bytes, little-endian) and frame lengths. Only plain TCP addresses are checked."""
    import socket
    import struct

    text = str(address)
    if "://" in text and not text.startswith("tcp://"):
        return                      # tls://, inproc://, ucx://: left to distributed
    hostport = text.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"scheduler address {address!r}: give tcp://HOST:PORT")
    try:
        conn = socket.create_connection((host, int(port)), timeout=timeout_s)
    except OSError as e:
        raise ConnectionError(f"no Dask scheduler at {address}: {e.strerror or e}") from None
    try:
        conn.settimeout(timeout_s)
        head = b""
        while len(head) < 8:
            more = conn.recv(8 - len(head))
            if not more:
                break
            head += more
    except socket.timeout:
        raise ConnectionError(f"no Dask scheduler at {address}: the port accepts connections but sent nothing "
                              f"in {timeout_s:g} s (a scheduler sends its handshake first)") from None
    except OSError as e:
        raise ConnectionError(f"no Dask scheduler at {address}: {e.strerror or e}") from None
    finally:
        conn.close()
    frames = struct.unpack("<Q", head)[0] if len(head) == 8 else None
    if frames is None or not 1 <= frames <= 64:
        shown = head.decode("ascii", "replace").strip() or "nothing"
        raise ConnectionError(f"no Dask scheduler at {address}: it answered {shown!r}, not a Dask handshake "
                              "(the dashboard's or another service's port?)")


def _result(info, lay, job, days, finished, failed, t0, run_messages: int) -> dict:
    """run_messages: those of the tasks this run did (not the days or shards it resumed)."""
    seconds = time.perf_counter() - t0
    ordered = [finished[d] for d, _ in days if d in finished]
    total = sum(d["messages"] for d in ordered)
    return dict(info, out=lay.root, job=job, days=ordered, failed=failed, messages=total,
                run_messages=run_messages, seconds=seconds,
                msgs_per_s=run_messages / seconds if seconds else 0.0)


_KILLED_HINT = ("every worker that ran it died. Dask ends a worker whose process crashes or whose memory "
                "passes 95% of its limit (a LocalCluster shares this machine's memory evenly among its "
                "workers); the worker logs say which. Fewer workers a machine, or --shards to split each "
                "day, give a task more room")


def _error_text(exc: BaseException | None) -> str:
    if exc is None:
        return "failed"
    if type(exc).__name__ == "KilledWorker":  # Dask's own text does not say why workers die
        return f"KilledWorker: {_KILLED_HINT} ({exc})"
    return f"{type(exc).__name__}: {exc}"
