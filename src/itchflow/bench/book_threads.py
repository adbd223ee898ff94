"""Books on several cores: ``ShardedBooks(threads)`` against one-thread ``Books`` on one day.

What is measured (the same memory-mapped generated day, already in the page cache, the same
run): one-thread ``Books.apply`` and ``ShardedBooks(threads).apply`` (books sharded by stock
locate into 2 shards a thread, which any thread applies, the shard plan included), best of
``repeat`` each on fresh state, the two taking turns; the speed-up; per thread the messages
it applied, its tasks and the CPU time it used (so a figure taken on a busy machine can be
read as what the threads would take on idle cores); per shard its messages; and whether
every stock's top of book and live-order count agree with one thread. ``busy_cpu`` times
both while a niced busy loop takes a share of one CPU, as a host that gives one vCPU less
does (seen on this machine's host: one vCPU ran the same shard 10-30% slower).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import numpy as np

from itchflow.bench.book import ensure_day
from itchflow.bench.common import machine, rate_row
from itchflow.book.sharded import BLOCK_BYTES


def run(messages: int = 10_000_000, stocks: int = 8000, seed: int = 1, threads: int = 2,
        repeat: int = 3, shards: int | None = None, block_bytes: int = BLOCK_BYTES,
        busy_cpu: int | None = None, busy_nice: int = 5) -> dict:
    from itchflow.book.books import Books
    from itchflow.book.sharded import ShardedBooks
    from itchflow.sources.files import map_file
    from itchflow.wire.binaryfile import whole_messages_end

    path = ensure_day(messages, stocks, seed)
    buf = map_file(path)
    _ = int(buf[::4096].sum())  # fault the file into the mapping before timing
    head, _n = whole_messages_end(buf, 0, min(len(buf), 1 << 16))
    Books(1 << 10, table=1 << 10).apply(buf[:head])  # load the compiled kernels
    with ShardedBooks(threads, 1 << 10, table=1 << 10) as warm:
        warm.apply(buf[:head])

    with busy_loop(busy_cpu, busy_nice):
        r = _timed(buf, path, stocks, threads, repeat, shards, block_bytes)
    r["busy_cpu"] = None if busy_cpu is None else {"cpu": busy_cpu, "nice": busy_nice}
    return r


@contextlib.contextmanager
def busy_loop(cpu: int | None, nice: int):
    """A process spinning on ``cpu`` at ``nice`` while the books are timed: a stand-in for a
    host that gives one vCPU less than the other (at nice 5 the scheduler leaves a thread
    on that CPU about three quarters of it)."""
    if cpu is None:
        yield
        return
    code = (f"import os; os.sched_setaffinity(0, {{{int(cpu)}}}); os.nice({int(nice)}); "
            "print('spinning', flush=True)\nwhile True: pass")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        if proc.stdout.readline().strip() != "spinning":  # pinned and niced, or failed
            raise RuntimeError(f"the busy loop on CPU {cpu} did not start (exit {proc.wait()})")
        yield
    finally:
        proc.kill()
        proc.wait()


def _timed(buf, path, stocks, threads, repeat, shards, block_bytes) -> dict:
    from itchflow.book.books import Books
    from itchflow.book.sharded import ShardedBooks

    # One thread and N threads take turns, each best of ``repeat``: the VM's speed drifts from
    # one minute to the next, and a ratio of two bests taken side by side is what holds.
    best1, one = float("inf"), None
    cpu1 = float("inf")
    bestn, sharded = float("inf"), None
    for _ in range(repeat):
        b = Books()
        c, t = time.thread_time(), time.perf_counter()
        b.apply(buf)
        dt, cpu = time.perf_counter() - t, time.thread_time() - c
        cpu1 = min(cpu1, cpu)
        if dt < best1:
            best1, one = dt, b
        del b
        sb = ShardedBooks(threads, shards=shards, block_bytes=block_bytes)
        t = time.perf_counter()
        sb.apply(buf)
        dt = time.perf_counter() - t
        sb.close()
        if dt < bestn:
            bestn, sharded = dt, sb
    r = {"machine": machine(), "day": str(path), "stocks": stocks, "threads": threads,
         "one_thread": rate_row(one.messages, best1) | {"cpu_seconds": cpu1},
         "sharded": rate_row(sharded.messages, bestn)}
    r["sharded"].update(
        shard_messages=[s.messages for s in sharded.shards],
        thread_cpu_seconds=list(sharded.thread_cpu_seconds),
        thread_messages=list(sharded.thread_messages),
        thread_tasks=list(sharded.thread_tasks),
        shard_moves=sharded.shard_moves,
        block_bytes=block_bytes,
        tops_agree=bool(np.array_equal(sharded.tops(), one.tops())),
        live_orders_agree=sharded.live_orders() == one.live_orders())
    r["speedup"] = best1 / bestn
    r["speedup_from_cpu_time"] = cpu1 / max(r["sharded"]["thread_cpu_seconds"])
    return r


def report(r: dict) -> str:
    m, one, sh = r["machine"], r["one_thread"], r["sharded"]
    cpus = ", ".join(f"{c:.3f}" for c in sh["thread_cpu_seconds"])
    shards = ", ".join(f"{n:,}" for n in sh["shard_messages"])
    per_thread = ", ".join(f"{n:,} in {t} tasks" for n, t in zip(sh["thread_messages"], sh["thread_tasks"]))
    busy = r.get("busy_cpu")
    lines = [
        f"books on {r['threads']} threads  {m['cpu']} ({m['cores']} cores), numba {m['numba']}",
        f"  day: {one['messages']:,} messages, {r['stocks']:,} stocks ({r['day']})",
        (f"  one thread:   {one['msgs_per_s'] / 1e6:6.1f} M msg/s  {one['ns_per_msg']:6.1f} ns/msg  "
         f"(CPU {one['cpu_seconds']:.3f} s)"),
        (f"  {r['threads']} threads:    {sh['msgs_per_s'] / 1e6:6.1f} M msg/s  {sh['ns_per_msg']:6.1f} ns/msg  "
         f"-> {r['speedup']:.2f}x wall clock; threads' CPU {cpus} s -> "
         f"{r['speedup_from_cpu_time']:.2f}x on idle cores"),
        (f"  threads applied {per_thread} (chunks of {sh['block_bytes'] >> 10} KiB routed once; "
         f"{sh['shard_moves']} applies moved a shard to the other thread)"),
        (f"  {len(sh['shard_messages'])} shards: {shards} messages; tops agree: {sh['tops_agree']}; "
         f"live orders agree: {sh['live_orders_agree']}"),
    ]
    if busy:
        lines.insert(1, f"  with a busy loop at nice {busy['nice']} on CPU {busy['cpu']} (a vCPU the host gives less)")
    return "\n".join(lines)
