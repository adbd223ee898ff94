"""``Writer``: the single producer of a ring (Python side; the hot work is in producer.py)."""

from __future__ import annotations

import operator
import os
import threading
import time
import weakref

import numpy as np

from itchflow.hw.atomics_py import cas, load, store
from itchflow.hw.byte_view import byte_view
from itchflow.hw.compiled_entry import entry
from itchflow.hw.sigbus import NO_FAULT
from itchflow.ring import layout as L
from itchflow.ring.claim_lock import claim_lock
from itchflow.ring import producer as P
from itchflow.ring.errors import RingBusy, RingError, RingFormatError
from itchflow.ring.liveness import process_start, producer_live
from itchflow.ring.wait import WAIT_SLICE_NS, first_slice, strategy_code, timeout_ns, wait_in_slices


class _Heartbeat(threading.Thread):
    """Refreshes the producer's heartbeat word while the process lives, publishing or idle (a
    quiet feed), so that consumers can judge it by heartbeat age rather than by a pid that may
    have been reused. A thread: the publishing code may sit in a system call for minutes."""

    def __init__(self, words: np.ndarray, period_s: float):
        super().__init__(name="itchflow-ring-heartbeat", daemon=True)
        self.words = words
        self.period_s = period_s
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.period_s):
            store(self.words, L.W_PROD_HB, time.monotonic_ns())


class Writer:
    """The single producer of a ring. Opening it makes this process the producer (a live other
    producer is RingBusy); records published by a producer that died are recovered first, so the
    sequence continues where it ended. One thread at a time: the compiled calls release the GIL
    and nothing guards a Writer (two threads writing at once corrupt the ring for every reader),
    as a socket is shared by no two threads at once."""

    def __init__(self, ring, wait: str = "spin", timeout: float | None = None):
        self.ring = ring
        self._fault = ring.fault_word   # (kept: one attribute less on every write)
        w = ring.words
        self.strategy = strategy_code(wait)
        self.timeout_ns = timeout_ns(timeout)
        me = os.getpid()
        # The claim is one step under a lock on the ring file (``claim_lock``): the ring reads as
        # having a live producer only at the end of it, and two writers opened at once both
        # took the ring in that window (probe 48: 20 of 20). The lock holds until it is live.
        with claim_lock(ring.fileno(), ring.path, "the producer", timeout):
            self._claim(w, me)
        P.serve_joins(w, self.ps)
        self._empty_types = np.zeros(0, np.int64)
        # publish_one's compiled functions for bytes and for arrays, found at the first write():
        # a record a call spent half its time in the dispatcher's checks (hw.compiled_entry)
        self._publish_bytes = self._publish_array = None
        self._detaches_at_open = self._detaches()
        period = min(max(int(w[L.W_HB_TIMEOUT]) / 4e9, 0.01), 1.0)
        self._heartbeat = _Heartbeat(w, period)
        self._heartbeat.start()
        # A writer dropped without close() stops its heartbeat: the thread holds the mapping,
        # which would otherwise stay mapped (and the producer seem alive) for the process's life.
        weakref.finalize(self, self._heartbeat.done.set)

    def _claim(self, w, me: int) -> None:
        """Take the ring's producer (RingBusy if a live one has it) and open it: recover what a dead
        producer published, start a generation, mark it live. Under the claim lock."""
        ring = self.ring
        while True:
            old = int(load(w, L.W_PROD_PID))
            if old and old != me and producer_live(w):
                raise RingBusy(f"{ring.path}: producer pid {old} is alive (heartbeat "
                               f"{(time.monotonic_ns() - int(load(w, L.W_PROD_HB))) / 1e9:.1f} s ago)")
            if cas(w, L.W_PROD_PID, old, me) == old:
                break
        store(w, L.W_PROD_START, process_start(me))   # (before the heartbeat that makes it live)
        found = P.recover_edge(w, ring.geometry)
        if found:
            store(w, L.W_RECOVERED, load(w, L.W_RECOVERED) + found)
        self.recovered_records = found
        store(w, L.W_PROD_GEN, load(w, L.W_PROD_GEN) + 1)
        self.ps = P.new_producer_state(w, ring.geometry)
        P.heartbeat(w, self.ps)
        store(w, L.W_PROD_OUTCOME, L.STREAM_WHOLE)   # this producer's stream has not ended
        store(w, L.W_PROD_STATE, L.PRODUCER_OPEN)

    def check(self, r: int, what: str) -> int:
        """A producer kernel's return code as a count, or the exception it stands for."""
        fault = self._fault
        if fault is not None and fault.value != NO_FAULT:
            # The file was truncated under us: the stores past its new end went to private
            # pages of zeros (hw.sigbus) and reached no consumer.
            raise RingFormatError(f"{what}: {self.ring.truncated()}")
        if r >= 0:
            return r
        if r == P.TOO_BIG:
            raise ValueError(f"{self.ring.path}: {what}: payload larger than the ring's max_payload "
                             f"{self.ring.max_payload}")
        if r == P.BAD_TYPE:
            raise ValueError(f"{self.ring.path}: {what}: record type must be in 0..{L.MAX_USER_TYPE}")
        raise TimeoutError(f"{self.ring.path}: {what}: ring full (a consumer is behind) for longer than the "
                           "timeout")

    def write(self, payload, type: int = 0) -> None:
        """Publish one record (bytes, bytearray, memoryview or any numpy array: its bytes)."""
        if type.__class__ is not int:
            type = operator.index(type)   # (a numpy integer; a float or a str is a TypeError)
        if not 0 <= type <= L.MAX_USER_TYPE:   # (2**70 would not even reach the kernel's test)
            raise ValueError(f"{self.ring.path}: write: record type must be in 0..{L.MAX_USER_TYPE}, not {type}")
        cls = payload.__class__
        if self.ps is None:
            raise self._closed_error()
        if cls is bytes or cls is bytearray:   # taken as they are: always contiguous bytes
            publish = self._publish_bytes
            if publish is None:
                publish = self._publish_bytes = entry(P.publish_one, self.ring.words, self.ring.data,
                                                      self.ps, b"", 0, 0, 0)
        else:
            payload = byte_view(payload)   # one-dimensional contiguous uint8, whatever was given
            publish = self._publish_array
            if publish is None:
                publish = self._publish_array = entry(P.publish_one, self.ring.words, self.ring.data,
                                                      self.ps, np.empty(0, np.uint8), 0, 0, 0)
        t = self.timeout_ns
        started = time.monotonic_ns() if t > WAIT_SLICE_NS else 0
        # (first_slice(t), written out: a call would cost a tenth of the write)
        r = publish(self.ring.words, self.ring.data, self.ps, payload, type, self.strategy,
                    t if 0 <= t <= WAIT_SLICE_NS else WAIT_SLICE_NS)
        if r == P.TIMEOUT and not 0 <= t <= WAIT_SLICE_NS:   # full a while: on, a slice at a time (Ctrl-C)
            w, data, ps, strategy = self.ring.words, self.ring.data, self.ps, self.strategy
            r = wait_in_slices(lambda left: publish(w, data, ps, payload, type, strategy, left), t, P.TIMEOUT,
                               started)
        fault = self._fault
        if r != 1 or (fault is not None and fault.value != NO_FAULT):
            self.check(r, "write")

    def write_batch(self, buffer, offsets, types=None) -> int:
        """Publish records buffer[offsets[i]:offsets[i+1]] (len(offsets)-1 of them), with one
        release store per batch (more only if the ring fills up mid-batch)."""
        if self.ps is None:
            raise self._closed_error()
        buf = byte_view(buffer)
        given = np.asarray(offsets)
        if given.size and given.dtype.kind not in "iu":   # 0.5 and 10.7 were cut to 0 and 10
            raise TypeError(f"offsets must be whole numbers (got {given.dtype})")
        offs = np.ascontiguousarray(given, dtype=np.int64)
        if len(offs) < 2:   # no record (asked for -1 records, the kernel's answer read as "ring full")
            if types is not None and len(np.atleast_1d(types)):
                raise ValueError("types needs one entry per record")
            return 0
        if offs[0] < 0 or offs[-1] > len(buf) or np.any(np.diff(offs) < 0):
            raise ValueError("offsets must be non-decreasing and within the buffer")
        t = self._empty_types if types is None else np.ascontiguousarray(types, dtype=np.int64)
        if types is not None and len(t) != len(offs) - 1:
            raise ValueError("types needs one entry per record")
        total = len(offs) - 1
        started = time.monotonic_ns() if self.timeout_ns > WAIT_SLICE_NS else 0
        n = P.publish_batch(self.ring.words, self.ring.data, self.ps, buf, offs, t,
                            self.strategy, first_slice(self.timeout_ns))
        if n != total and not 0 <= self.timeout_ns <= WAIT_SLICE_NS:
            n = self._publish_rest(buf, offs, t, max(n, 0), n, started)
        return self.check(n, "write_batch")

    def _publish_rest(self, buf, offs, types, done: int, n: int, started: int) -> int:
        """``write_batch`` after its first slice of waiting (the ring full that long, or a
        record refused): the rest of the records, a slice of the time-out at a time
        (``wait.wait_in_slices``: Ctrl-C can end a long wait). A short count is a time-out or a
        refused record: the next call from there tells which; what went out before a refusal
        or the time-out is the count, as one call's would be."""
        total = len(offs) - 1
        progress = [done]

        def rest(left: int) -> int:
            k = P.publish_batch(self.ring.words, self.ring.data, self.ps, buf, offs[progress[0]:],
                                types[progress[0]:] if len(types) else types, self.strategy, left)
            progress[0] += max(k, 0)
            return P.TIMEOUT if progress[0] < total and (k >= 0 or k == P.TIMEOUT) else k

        if n == P.TIMEOUT or n >= 0:
            n = wait_in_slices(rest, self.timeout_ns, P.TIMEOUT, started)
        done = progress[0]
        return done if done == total or (done and n < 0) else n

    def _closed_error(self) -> RingError:
        return RingError(f"{self.ring.path}: this writer was closed (the ring is marked closed for its "
                         "readers): nothing more can be published through it")

    def _detaches(self) -> dict[str, int]:
        """Each consumer's detach count, as ``ring inspect`` shows it."""
        from itchflow.ring.inspect import snapshot

        return {c["name"]: c["detaches"] for c in snapshot(self.ring)["consumers"]}

    def detached_consumers(self) -> dict[str, int]:
        """Consumers detached since this writer opened (name: times). A blocking ring detaches
        a consumer silent past the heartbeat time-out while it is full (or one that never came):
        it misses what is published while detached, and counts that loss when it rejoins, so
        the producer's side must say so too (nothing lost silently)."""
        before = self._detaches_at_open
        return {name: n - before.get(name, 0) for name, n in self._detaches().items()
                if n > before.get(name, 0)}

    @property
    def position(self) -> int:
        return int(self.ps[P.P_POS])

    @property
    def records(self) -> int:
        return int(self.ps[P.P_REC])

    def close(self, outcome: int = L.STREAM_WHOLE) -> None:
        """Publish anything pending and mark the ring closed (readers drain, then stop), saying
        how the stream ended (``layout.STREAM_*``: whole, cut short, messages lost)."""
        if self.ps is None:
            return
        self._heartbeat.done.set()
        self._heartbeat.join()
        self._heartbeat.words = None   # its view of the mapping would keep the ring from unmapping
        w = self.ring.words
        P.commit(w, self.ps)
        P.heartbeat(w, self.ps)
        store(w, L.W_PROD_OUTCOME, int(outcome))   # before the state: read after it is seen
        store(w, L.W_PROD_STATE, L.PRODUCER_CLOSED)
        P.wake_sleepers(w)   # the end is news too: sleepers would wait out their time-out
        self.ps = None

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
