"""``Reader`` (a named consumer) and ``Batch`` (the records of one read)."""

from __future__ import annotations

import os
import time
import weakref
from typing import Iterator

import numpy as np

from itchflow.hw.atomics_py import cas, fetch_add, load, store
from itchflow.hw.compiled_entry import entry
from itchflow.ring import consumer as C
from itchflow.ring import layout as L
from itchflow.ring.claim_lock import claim_lock
from itchflow.ring.errors import ConsumerDetached, ProducerGone, RingBusy, RingClosed, RingError, RingFormatError
from itchflow.ring.liveness import pid_alive, producer_live, producer_process_alive, slot_holder_live
from itchflow.ring.record_header import FAULT_TEXT, header_fault
from itchflow.ring.slots import commit_snapshot, get_name, set_name
from itchflow.ring.wait import WAIT_SLICE_NS, first_slice, strategy_code, timeout_ns, wait_in_slices


class Batch:
    """Records from one read: ``data[offsets[i]: offsets[i] + lengths[i]]`` is record i's payload.
    Blocking mode: ``data`` is the ring itself (zero copy), valid until the next read/commit
    (``Reader.check_intact()`` tells whether it stayed intact while in use).
    Lossy mode: ``data`` is the reader's private buffer (copied and validated).
    ``ring``, ``position`` and ``first_record`` say where the read started (ring path, byte
    position, records index), for error messages."""

    __slots__ = ("data", "offsets", "lengths", "types", "ring", "position", "first_record")

    def __init__(self, data, offsets, lengths, types, ring: str = "", position: int = 0, first_record: int = 0):
        self.data, self.offsets, self.lengths, self.types = data, offsets, lengths, types
        self.ring, self.position, self.first_record = ring, position, first_record

    def record_position(self, i: int) -> int | None:
        """Ring position of record i's header (None for a lossy read's copies)."""
        if self.position < 0:
            return None
        mask = len(self.data) - 1
        return self.position + ((int(self.offsets[i]) - L.RECORD_HEADER_BYTES - self.position) & mask)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        o = int(self.offsets[i])
        return self.data[o: o + int(self.lengths[i])]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self.offsets)):
            yield self[i]


assert (C.C_REC, C.C_PAY) == (C.C_POS + 1, C.C_POS + 2)   # give_back restores the three as one slice


_OPEN_READERS: "weakref.WeakSet[Reader]" = weakref.WeakSet()   # this process's (their slots are not taken)


class Reader:
    """A named consumer. A new name joins at the live edge (blocking mode: through the
    producer, so nothing it expects is overwritten); a known name resumes from its saved
    position (a restart after SIGKILL loses nothing in blocking mode if it comes back within
    the heartbeat timeout); a detached name rejoins at the live edge with its loss counted.
    One thread at a time, as a Writer: the compiled reads release the GIL, and two threads
    reading one Reader get records twice and each other's bytes."""

    def __init__(self, ring: "Ring",  # noqa: F821  (ring.file.Ring; importing it here would be a cycle)
                 name: str, wait: str = "spin", timeout: float | None = None,
                 max_batch: int = 4096):
        self.ring = ring
        self.name = name
        self.took_slot_of: str | None = None   # the detached name whose slot this one took, if any
        self.strategy = strategy_code(wait)
        self.timeout_ns = timeout_ns(timeout)
        self._off = np.empty(max_batch, np.int64)
        self._len = np.empty(max_batch, np.int64)
        self._typ = np.empty(max_batch, np.int64)
        self._copy = np.empty(max(ring.max_payload, 1 << 16) * 4, np.uint8) if ring.mode == "lossy" \
            else np.empty(0, np.uint8)
        # read_one's record lands here (a copy: the caller keeps the bytes, the ring moves on)
        self._one = np.empty(max(ring.max_payload, 1), np.uint8)
        self._one_view = memoryview(self._one)
        self._read_one = None   # read_one's compiled function, found at the first read()
        self._joining = False
        w = ring.words
        me = os.getpid()
        # Finding a name and claiming a slot for it is one step under a lock on the ring file
        # (``claim_lock``): two processes opening one new name at once each claimed a slot.
        # (the slot is ours, pid and heartbeat, before the lock goes)
        with claim_lock(ring.fileno(), ring.path, "a consumer slot", timeout):
            slot = ring.find_slot(name)
            new = slot < 0
            if new:
                slot = self._claim_new_slot(name)
            b = L.slot_base(slot)
            if not new:
                pid = int(load(w, b + L.S_PID))
                # the same test of a holder's life as taking a detached slot (liveness.slot_holder_live)
                if pid and pid != me and load(w, b + L.S_STATE) != L.SLOT_DETACHED and slot_holder_live(w, b):
                    age = time.monotonic_ns() - int(load(w, b + L.S_HB))
                    raise RingBusy(f"{ring.path}: consumer {name!r} is held by live pid {pid} "
                                   f"(heartbeat {max(age, 0) / 1e9:.1f} s ago)")
                self._check_snapshot(b)
            store(w, b + L.S_PID, me)
            store(w, b + L.S_HB, time.monotonic_ns())
        self.slot = slot
        self._b = b
        store(w, b + L.S_ATTACHES, load(w, b + L.S_ATTACHES) + 1)
        self.cs = C.new_consumer_state(w, slot, ring.geometry)
        self._last_cs = self.cs   # (kept after close: position, records, last_type still answer)
        self._final = None        # the loss counts once closed
        ring._readers.add(self)   # (forgotten when the ring closes first)
        _OPEN_READERS.add(self)
        # the slot's loss counter before this attach: what joining skips (records a producer
        # published while the slot was detached) is this reader's loss, counted below
        self.lost_records_at_attach = int(load(w, b + L.S_LOST_REC)) if not new else 0
        st = int(load(w, b + L.S_STATE))
        if ring.mode == "lossy":
            if new:
                C.set_start(w, self.cs, *C.published_edge(w))
            store(w, b + L.S_STATE, L.SLOT_ATTACHED)
        elif new or st != L.SLOT_ATTACHED:
            # new, detached (count what was skipped), or left half-joined by a killed process
            self._request_join(count_loss=st == L.SLOT_DETACHED)
        store(w, b + L.S_ATTACHED_NS, time.monotonic_ns())

    def _check_snapshot(self, b: int) -> None:
        """A known name resumes from its commit snapshot, which a consumer writes before its
        live position (``consumer.commit``): a snapshot behind the live position was not kept
        (a peer that writes only the position word), and the producer may have overwritten
        what lies between them. Refused, naming the slot, rather than read as records."""
        w = self.ring.words
        st = int(load(w, b + L.S_STATE))
        snap = commit_snapshot(w, b)[0]
        live = int(load(w, b + L.S_POS))
        if st == L.SLOT_ATTACHED and snap < live:
            raise RingFormatError(
                f"{self.ring.path}: consumer {self.name!r} cannot be resumed: its commit snapshot (position "
                f"{snap}) is behind its live position ({live}), so the consumer that held it kept no "
                "snapshot (docs/ring-protocol.md: commit); what lies between may be overwritten. Read "
                "under another name, or remove the ring")

    def _claim_new_slot(self, name: str) -> int:
        w = self.ring.words
        for i in range(self.ring.max_consumers):
            b = L.slot_base(i)
            if cas(w, b + L.S_STATE, L.SLOT_FREE, L.SLOT_CLAIMED) == L.SLOT_FREE:
                self._take_slot(b, name)
                return i
        # None free: the slot of a detached name no live process holds, detached longest, is
        # taken (its name can no longer resume: it would have rejoined at the live edge with
        # its loss counted). Names that come and go under default close() filled every slot
        # for good, though none was read from (probe 55). (Under the claim lock: no resume races.)
        me = os.getpid()
        idle = []
        for i in range(self.ring.max_consumers):
            b = L.slot_base(i)
            if load(w, b + L.S_STATE) != L.SLOT_DETACHED:
                continue
            if int(load(w, b + L.S_PID)) == me:
                if self._held_here(i):
                    continue   # an open Reader of this process, detached: it rejoins, its slot is its own
            elif slot_holder_live(w, b):
                continue
            idle.append((int(load(w, b + L.S_HB)), i))
        for _, i in sorted(idle):
            b = L.slot_base(i)
            if cas(w, b + L.S_STATE, L.SLOT_DETACHED, L.SLOT_CLAIMED) == L.SLOT_DETACHED:
                self.took_slot_of = get_name(w, b)
                self._take_slot(b, name)
                return i
        raise RingError(f"{self.ring.path}: all {self.ring.max_consumers} consumer slots are taken by names a live "
                        f"process holds or the producer still keeps data for; a consumer that will not come back "
                        f"frees its slot with close(leave=True)")

    def _held_here(self, slot: int) -> bool:
        """Whether an open Reader of this process holds the slot of this ring file."""
        return any(r.cs is not None and r.slot == slot and r.ring._identity == self.ring._identity
                   for r in list(_OPEN_READERS))

    def _take_slot(self, b: int, name: str) -> None:
        w = self.ring.words
        for k in range(L.SLOT_WORDS):
            if k != L.S_STATE:
                w[b + k] = 0
        set_name(w, b, name)

    def _request_join(self, count_loss: bool) -> None:
        w = self.ring.words
        self._joining = True
        self._join_counts_loss = count_loss
        store(w, self._b + L.S_HB, time.monotonic_ns())   # alive now: a stall before is over
        store(w, self._b + L.S_STATE, L.SLOT_JOINING)
        fetch_add(w, L.W_JOIN_REQ, 1)
        self._finish_join()

    def _finish_join(self) -> bool:
        """Complete a pending join: attached by the producer, or (no live producer) by ourselves."""
        w = self.ring.words
        b = self._b
        st = int(load(w, b + L.S_STATE))
        if st == L.SLOT_JOINING:
            if producer_live(w):
                return False
            pos, rec, pay = C.published_edge(w)
            store(w, b + L.S_JOIN_POS, pos)
            store(w, b + L.S_JOIN_REC, rec)
            store(w, b + L.S_JOIN_PAY, pay)
            # the position before the state, as the producer attaches a joiner: attached with its old
            # position, a producer starting that moment took it for a corrupt slot (probe 46)
            store(w, b + L.S_POS, pos)
            if cas(w, b + L.S_STATE, L.SLOT_JOINING, L.SLOT_ATTACHED) != L.SLOT_JOINING:
                return False
        elif st != L.SLOT_ATTACHED:
            return False
        jp, jr, jy = (int(load(w, b + k)) for k in (L.S_JOIN_POS, L.S_JOIN_REC, L.S_JOIN_PAY))
        if self._join_counts_loss:
            store(w, b + L.S_LOST_REC, load(w, b + L.S_LOST_REC) + jr - int(self.cs[C.C_REC]))
            store(w, b + L.S_LOST_PAY, load(w, b + L.S_LOST_PAY) + jy - int(self.cs[C.C_PAY]))
            store(w, b + L.S_LAPS, load(w, b + L.S_LAPS) + 1)
        C.set_start(w, self.cs, jp, jr, jy)
        self._joining = False
        return True

    def _wait_for_join(self, t: int) -> int | None:
        """Wait up to ``t`` ns (for ever if negative) for the producer to attach this joining
        reader, which it does at its next publish; the time left for the read, or None if it
        passed first. A read returned "nothing" at once while joining, whatever its time-out: a
        loop taking None for a quiet feed stopped a third of the way through one (probe 15).
        Waits in short sleeps, in Python: Ctrl-C ends it."""
        self._open_words()
        deadline = None if t < 0 else time.monotonic_ns() + t
        pause = 20e-6
        while not self._finish_join():
            now = time.monotonic_ns()
            if deadline is not None and now >= deadline:
                return None
            store(self.ring.words, self._b + L.S_HB, now)   # alive while waiting
            time.sleep(pause if deadline is None else min(pause, (deadline - now) / 1e9))
            pause = min(pause * 2, 1e-3)
        return -1 if deadline is None else max(0, deadline - time.monotonic_ns())

    def rejoin(self) -> None:
        """After ConsumerDetached: continue at the live edge, counting what was skipped."""
        self._open_words()
        self.cs[C.C_PENDING] = 0
        self._request_join(count_loss=True)

    @property
    def _closed(self) -> bool:
        """This reader closed, or its ring (which forgets its readers as it closes)."""
        return self.cs is None or self.ring.words is None

    def _open_words(self) -> np.ndarray:
        """The ring's words, or the error saying this reader or its ring was closed (Numba's
        typing error for a None, before)."""
        if self._closed:
            raise self._closed_error()
        return self.ring.words

    @property
    def lost_records(self) -> int:
        """Records this name lost (skipped when it rejoined; lapped, on a lossy ring): read from
        its slot, or as it was when the reader or its ring was closed."""
        if self._closed:
            return self._final_counts()["lost_records"]
        return int(load(self.ring.words, self._b + L.S_LOST_REC))

    @property
    def lost_payload_bytes(self) -> int:
        if self._closed:
            return self._final_counts()["lost_payload_bytes"]
        return int(load(self.ring.words, self._b + L.S_LOST_PAY))

    def _final_counts(self) -> dict:
        if self._final is None:
            raise self._closed_error()
        return self._final

    def _forget(self) -> None:
        """Keep the loss counts for the properties and let go of the mapping: the end of close(),
        and what the ring does to its open readers as it closes (nothing committed then: a
        pending batch is read again by whoever resumes the name)."""
        if self.cs is not None:
            self._final = {"lost_records": self.lost_records, "lost_payload_bytes": self.lost_payload_bytes}
            self.cs = None

    @property
    def position(self) -> int:
        return int(self._last_cs[C.C_POS])

    @property
    def records(self) -> int:
        """Records index: how many records the producer had published before our cursor."""
        return int(self._last_cs[C.C_REC])

    @property
    def _pending(self) -> bool:
        """Whether the last read's records are not committed yet (the consumer state's word,
        which the compiled read sets and clears)."""
        return self.cs is not None and self.cs[C.C_PENDING] != 0

    def commit(self) -> None:
        """Release the last batch to the producer (read_batch does this itself)."""
        if self._pending:
            self._open_words()
            self.cs[C.C_PENDING] = 0
            if C.commit(self.ring.words, self.cs) == C.DETACHED:
                raise self._detached("the last batch may have been overwritten while in use")

    def read_batch(self, max_records: int | None = None, timeout: float | None = -1.0) -> Batch:
        """The next records (at least one unless the timeout passes: then an empty Batch).
        timeout=-1 means the reader's default. Raises RingClosed (an EOFError: the producer
        closed the ring and everything is read) / ProducerGone / ConsumerDetached /
        RingFormatError."""
        w = self._open_words()
        t = self.timeout_ns if timeout == -1.0 else timeout_ns(timeout)
        if self._joining:   # rare: the producer has yet to attach us (at its next publish)
            t = self._wait_for_join(t)
            if t is None:
                return self._empty()
        if max_records is not None and (isinstance(max_records, bool) or not isinstance(max_records, int)
                                        or max_records < 1):
            # (0 read nothing and then took the ring's close for the end, records unread: probe 46)
            raise ValueError(f"max_records must be a whole number of at least 1, got {max_records!r}")
        n_max = len(self._off) if max_records is None else min(max_records, len(self._off))
        cs = self.cs
        started = time.monotonic_ns() if t > WAIT_SLICE_NS else 0
        try:
            # (the compiled read commits the last batch and notes in cs where this one begins)
            n = C.read_step(w, self.ring.data, cs, n_max, self._copy, self._off, self._len,
                            self._typ, self.strategy, first_slice(t))
            if n == 0 and not 0 <= t <= WAIT_SLICE_NS:   # (Ctrl-C can end a long wait: wait.WAIT_SLICE_NS)
                n = wait_in_slices(lambda left: C.read_step(w, self.ring.data, cs, n_max, self._copy, self._off,
                                                            self._len, self._typ, self.strategy, left),
                                   t, 0, started)
            if n > 0:
                if self.ring.mode == "lossy":   # a lap may have moved the cursor: where this read began
                    return Batch(self._copy, self._off[:n], self._len[:n], self._typ[:n], self.ring.path, -1,
                                 int(cs[C.C_REC]) - n)
                return Batch(self.ring.data, self._off[:n], self._len[:n], self._typ[:n], self.ring.path,
                             int(cs[C.C_BEFORE]), int(cs[C.C_BEFORE + 1]))
        except BaseException:
            # Ctrl-C (SIGTERM's SystemExit, any error) after the compiled read took its records and
            # before the caller had them (a signal's handler runs as the compiled call returns):
            # they go back, or the next read or close() committed what no one got (probe 16).
            # Only this read's are pending here: its first compiled call committed the last one's.
            self.give_back()
            raise
        if n == 0:
            truncated = self.ring.truncated()   # a file truncated under us reads as zeros
            if truncated is not None:
                raise RingFormatError(truncated)
            return self._empty()
        raise self.error_for(n)

    def read(self, timeout: float | None = -1.0) -> bytes | None:
        """The next record's payload as bytes (one record a call, as a socket's ``recv``), or
        None if the time-out passes first (timeout=-1 means the reader's default). Its type is
        ``last_type``. Raises as ``read_batch`` does. A reader taking records one at a time
        should call this: one compiled call with four arrays, where a one-record Batch costs
        three slices and an iterator."""
        t = self.timeout_ns if timeout == -1.0 else timeout_ns(timeout)
        if self._joining:   # rare: the producer has yet to attach us (at its next publish)
            t = self._wait_for_join(t)
            if t is None:
                return None
        read_one = self._read_one
        if read_one is None:   # (every argument below is the reader's own, of fixed type)
            self._open_words()
            read_one = self._read_one = entry(C.read_one, self.ring.words, self.ring.data, self.cs,
                                              self._one, 0, 0)
        started = time.monotonic_ns() if t > WAIT_SLICE_NS else 0
        try:
            # (first_slice(t), written out: a call would cost a tenth of the read)
            n = read_one(self.ring.words, self.ring.data, self.cs, self._one, self.strategy,
                         t if 0 <= t <= WAIT_SLICE_NS else WAIT_SLICE_NS)
            if n == C.NOTHING and not 0 <= t <= WAIT_SLICE_NS:
                w, data, cs, one, strategy = self.ring.words, self.ring.data, self.cs, self._one, self.strategy
                n = wait_in_slices(lambda left: read_one(w, data, cs, one, strategy, left), t, C.NOTHING, started)
            if n >= 0:
                return self._one_view[:n].tobytes()
        except TypeError:   # (None where an array was: the reader or its ring closed)
            raise self._closed_error() from None
        except BaseException:   # (as in read_batch: what the compiled read took goes back)
            self.give_back()
            raise
        if n == C.NOTHING:
            truncated = self.ring.truncated()
            if truncated is not None:
                raise RingFormatError(truncated)
            return None
        raise self.error_for(n)

    def _closed_error(self) -> RingError:
        what = "the ring" if self.ring.words is None else f"consumer {self.name!r}"
        return RingError(f"{self.ring.path}: {what} was closed in this process: nothing more can be read "
                         "through it (open the ring again to go on)")

    @property
    def last_type(self) -> int:
        """The record type of what ``read`` returned last."""
        return int(self._last_cs[C.C_ONE_TYPE])

    def error_for(self, n: int) -> Exception:
        """The exception for a read's negative code (a truncated file reads as any of them)."""
        if self._closed:   # (closed meanwhile: by a signal's handler)
            return self._closed_error()
        truncated = self.ring.truncated()
        if truncated is not None:
            return RingFormatError(truncated)
        w = self.ring.words
        if n == C.COMMIT_DETACHED:
            return self._detached("the last batch may have been overwritten while in use")
        if n == C.PRODUCER_CLOSED:
            C.commit(w, self.cs)
            outcome = int(load(w, L.W_PROD_OUTCOME))   # stored before the state this read saw
            return RingClosed(f"{self.ring.path}: the producer closed the ring "
                              f"({L.STREAM_OUTCOME_NAMES.get(outcome, outcome)})", outcome)
        if n == C.PRODUCER_GONE:
            C.commit(w, self.cs)
            if self.ring.mode != "lossy" and C.published_edge(w)[0] > self.position:
                # The edge moves only after its records' headers are published, and a blocking
                # ring never laps a reader: an unpublished header below it was overwritten.
                return self._off_the_edge("gone")
            hb = int(load(w, L.W_PROD_HB))
            pid = int(load(w, L.W_PROD_PID))
            alive = producer_process_alive(w) != 0   # (its pid, reused by another process: not it)
            why = (f"no heartbeat for {(time.monotonic_ns() - hb) / 1e9:.1f} s" if alive else
                   "its pid now belongs to another process" if pid_alive(pid) else "no such process")
            return ProducerGone(f"{self.ring.path}: producer pid {pid} is gone ({why}; read up to position "
                                f"{self.position})", pid if alive else 0)
        if n == C.DETACHED:
            return self._detached("records it had not read yet may be overwritten")
        if n == C.OFF_THE_EDGE:
            closed = int(load(w, L.W_PROD_STATE)) == L.PRODUCER_CLOSED
            return self._off_the_edge("closed the ring" if closed else "open" if producer_live(w) else "gone")
        off = self.position & (self.ring.capacity - 1)
        word = int(load(w, self.ring.header_bytes // 8 + off // 8))
        fault = header_fault(np.int64(word), off, self.ring.capacity, self.ring.max_payload)
        h = word & (2**64 - 1)
        return RingFormatError(f"{self.ring.path}: corrupt record header at position {self.position} "
                               f"(data offset {off}; length {h & 0xFFFFFFFF}, type {h >> 32:#x}: "
                               f"{FAULT_TEXT.get(fault, 'it changed while read')})")

    def _off_the_edge(self, producer: str) -> RingFormatError:
        """The error for a cursor that the published edge contradicts (consumer.OFF_THE_EDGE):
        a record header below the edge reads as unpublished, or a reader of a closed ring ended
        anywhere but at its final edge."""
        pos = C.published_edge(self.ring.words)[0]
        where = f"{self.ring.path}: corrupt ring: consumer {self.name!r} at position {self.position} (record {self.records})"
        if self.position < pos:
            return RingFormatError(f"{where}: the record header there reads as unpublished, yet its producer "
                                   f"({producer}) published up to position {pos}: written over by another process")
        return RingFormatError(f"{where} read past the end the producer closed the ring at (position {pos}): a "
                               "header after it was not zero")

    def _empty(self) -> Batch:
        return Batch(self.ring.data, self._off[:0], self._len[:0], self._typ[:0], self.ring.path,
                     int(self.cs[C.C_POS]), int(self.cs[C.C_REC]))

    def check_intact(self) -> None:
        """Call after using the last batch in place (before trusting what was computed from
        it): raises ConsumerDetached if the producer detached this consumer meanwhile (it was
        paused past the heartbeat timeout), since the batch may then have been overwritten
        while in use; a RingFormatError if the header's magic is gone (someone else wrote over
        it). Cheap: one fence and two loads (consumer.validate_read, the magic word)."""
        if self._pending and (C.validate_read(self.ring.words, self.cs) == C.DETACHED
                              or int(self.ring.words[L.W_MAGIC]) != L.MAGIC):   # a header overwritten
            raise self._detached("the batch it was using may have been overwritten meanwhile")

    def _detached(self, consequence: str) -> RingError:
        """The error for a slot that no longer reads as attached: a detach by the producer, or
        a header overwritten by someone else (its magic gone), which is no detach at all, or the
        file truncated under us (its header then reads as zeros)."""
        cut = self.ring.truncated()
        if cut is not None:   # cut to 0 bytes, the header reads as zeros: a truncation, not a stray write
            return RingFormatError(cut)
        magic = int(load(self.ring.words, L.W_MAGIC))
        if magic != L.MAGIC:
            return RingFormatError(
                f"{self.ring.path}: the ring's header was overwritten while consumer {self.name!r} was "
                f"reading (magic word {magic & (2**64 - 1):#018x}, not ITCHRING) at ring position "
                f"{self.position}; {consequence}")
        st = int(load(self.ring.words, self._b + L.S_STATE))
        if st not in L.SLOT_STATE_NAMES:   # no detach either: a stray write (probe 43)
            return RingFormatError(
                f"{self.ring.path}: consumer {self.name!r}'s slot state word reads {st}, not a slot state "
                f"(written over by another process) at ring position {self.position}; {consequence}")
        reason = int(load(self.ring.words, self._b + L.S_DETACH_REASON))
        why = (f"no heartbeat for more than the ring's {self.ring.heartbeat_timeout:g} s timeout: paused, stopped "
               "or too slow" if reason == L.DETACH_SILENT else
               f"its slot's {L.DETACH_REASON_NAMES.get(reason, f'word {reason}')}: a slot word written over by "
               "another process")
        return ConsumerDetached(f"{self.ring.path}: consumer {self.name!r} was detached by the producer ({why}) "
                                f"at ring position {self.position}; {consequence}")

    def __iter__(self) -> Iterator[bytes]:
        """Each record's payload as bytes, until the producer closes the ring."""
        while True:
            try:
                batch = self.read_batch()
            except EOFError:
                return
            for rec in batch:
                yield rec.tobytes()

    def give_back(self) -> None:
        """The last batch was not (wholly) used: leave it unconsumed, so that the next read, or
        a Reader of this name in another process (a restart), gets it again rather than
        resuming past it (``run`` stopped by Ctrl-C in the middle of a batch lost it so).
        Blocking mode only; a lossy ring gives nothing back (its copies are gone once read)."""
        if self.ring.mode == "lossy" or self.cs is None:
            return
        # by the pending mark the compiled read sets as it moves the cursor, not by whether
        # Python saw the read: Ctrl-C raised as it returned (the likeliest moment, waiting on a
        # live feed) came before its result arrived
        cs = self.cs
        if cs[C.C_PENDING] == 0:   # nothing read since the last commit (or a join, or ever):
            return                 # C_BEFORE is an older read's, not where this cursor began
        cs[C.C_PENDING] = 0
        cs[C.C_POS: C.C_PAY + 1] = cs[C.C_BEFORE: C.C_BEFORE + 3]

    def close(self, leave: bool = False) -> None:
        """Commit. The slot keeps its position (a later Reader with this name resumes there and
        a blocking producer keeps its data) unless leave=True, which frees the slot."""
        if self.cs is None:
            return
        w = self.ring.words
        if w is None:   # (the ring closed first: it has forgotten us already)
            self.cs = None
            return
        if not self._joining:   # (joining, the cursor is not yet the slot's: the producer sets it)
            self.cs[C.C_PENDING] = 0
            C.commit(w, self.cs)   # (a detach found here changes nothing: the slot keeps its position)
        if leave:
            store(w, self._b + L.S_STATE, L.SLOT_FREE)
        self._forget()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
