"""Child-process bodies for the multi-process ring tests (forked; shared int64 arrays report
back). Each child opens the ring by path itself, as an unrelated process would."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np

from itchflow.ring import Ring
from itchflow.bench import ring_workload as W
from itchflow.ring.wait import STRATEGIES

CTX = mp.get_context("fork")
LO, HI = 12, 200


def shared(n: int):
    """A process-shared int64 array and its numpy view."""
    arr = CTX.RawArray("q", n)
    return arr, np.frombuffer(arr, np.int64)


def producer_main(path, first, n, max_batch, wait, timeout_s, result, lo=LO, hi=HI):
    ring = Ring.open(path)
    w = ring.writer(wait=wait, timeout=timeout_s)
    res = np.frombuffer(result, np.int64)
    res[1] = w.records          # where this producer's sequence starts (recovered edge)
    res[0] = W.produce(ring.words, ring.data, w.ps, w.records, first + n - w.records, lo, hi,
                       max_batch, STRATEGIES[wait], int(timeout_s * 1e9))
    w.close()


def consumer_main(path, name, stop_at, max_batch, wait, timeout_s, progress, out,
                  stall_every=0, stall_ns=0, lo=LO, hi=HI):
    ring = Ring.open(path)
    rd = ring.reader(name, wait=wait)
    o = np.frombuffer(out, np.int64)
    o[5] = rd.records               # where this consumer (re)started
    o[6] = 1                        # attached
    s = W.consume(ring.words, ring.data, rd.cs, stop_at, lo, hi, max_batch, STRATEGIES[wait],
                  int(timeout_s * 1e9), np.frombuffer(progress, np.int64), o, stall_every, stall_ns)
    o[4] = s
    o[7] = rd.lost_records
    o[8] = rd.records


def producer_in_two_halves(path, n, max_batch, timeout_s, result, go):
    """As producer_main (spinning), but after the first half it waits for go[0] to be set, so
    that a blocking consumer runs dry and sleeps on the futex before the second half comes."""
    import time

    ring = Ring.open(path)
    w = ring.writer(wait="spin", timeout=timeout_s)
    flag = np.frombuffer(go, np.int64)
    half = n // 2
    W.produce(ring.words, ring.data, w.ps, w.records, half, LO, HI, max_batch, STRATEGIES["spin"],
              int(timeout_s * 1e9))
    deadline = time.monotonic() + timeout_s
    while flag[0] == 0 and time.monotonic() < deadline:   # the parent sees the consumer asleep
        time.sleep(0.001)
    np.frombuffer(result, np.int64)[0] = W.produce(ring.words, ring.data, w.ps, w.records, n - w.records, LO, HI,
                                                   max_batch, STRATEGIES["spin"], int(timeout_s * 1e9))
    w.close()


def start(target, *args, **kw):
    p = CTX.Process(target=target, args=args, kwargs=kw, daemon=True)
    p.start()
    return p


def stop_all(*procs):
    for p in procs:
        if p is not None and p.is_alive():
            p.kill()
        if p is not None:
            p.join(5)


_warm = False


def warm_up() -> None:
    """Compile the kernels once in the test process: forked children inherit them, so no child
    spends seconds compiling (and missing heartbeats) after it attached."""
    global _warm
    if _warm:
        return
    import os
    import uuid
    for mode in ("blocking", "lossy"):
        path = f"/dev/shm/itchflow-warm-{uuid.uuid4().hex}.ring"
        with Ring.create(path, 1 << 14, max_payload=256, mode=mode, consumers=["w"]) as ring:
            w = ring.writer()
            rd = ring.reader("w")
            for strategy in ("spin", "block"):
                W.produce(ring.words, ring.data, w.ps, w.records, 20, LO, HI, 8, 0, 10**9)
                o = np.zeros(9, np.int64)
                W.consume(ring.words, ring.data, rd.cs, w.records, LO, HI, 8, STRATEGIES[strategy],
                          10**9, np.zeros(1, np.int64), o, 0, 0)
            # the Python API paths too (write, write_batch with and without types, read_batch)
            w.write(b"abc")
            w.write_batch(np.zeros(8, np.uint8), np.array([0, 4, 8]))
            w.write_batch(np.zeros(8, np.uint8), np.array([0, 4, 8]), types=np.array([1, 2]))
            rd.read_batch(timeout=0)
            w.close()
            rd.close()
        assert not os.path.exists(path)
    _warm = True
