"""The Python API: ``Ring.create`` / ``Ring.open``, ``Writer``, ``Reader``, ``Batch``.

The file is mapped directly with mmap (not multiprocessing.shared_memory, whose resource
tracker unlinks segments when any attached process exits). Every hot operation is one call
into a compiled kernel (producer.py / consumer.py); nothing here runs per record except the
convenience iteration.
"""

from __future__ import annotations

import atexit
import mmap
import os
import time
from typing import Iterator, Sequence

import numpy as np

from itchflow.ring import consumer as C
from itchflow.ring import layout as L
from itchflow.ring import producer as P
from itchflow.hw.atomics_py import cas, load, store
from itchflow.ring.wait import STRATEGIES

DEFAULT_DIR = "/dev/shm"
SUFFIX = ".ring"


class RingError(Exception):
    """Base class for ring errors."""


class RingFormatError(RingError, ValueError):
    """The file is not a valid ring (magic, version, sizes), or a record header is corrupt."""


class RingBusy(RingError):
    """Another live process already holds the producer role or this consumer name."""


class ConsumerDetached(RingError):
    """The producer detached this consumer (it stopped heart-beating); the last batch read may
    have been overwritten. Call ``Reader.rejoin()`` to continue at the live edge (loss counted)."""


class ProducerGone(RingError):
    """The producer died (its pid is gone) and everything it published has been read."""


def ring_path(name_or_path: str) -> str:
    """A bare name maps to /dev/shm/itchflow.<name>.ring; anything with a '/' is a path."""
    if "/" in name_or_path:
        return name_or_path
    return os.path.join(DEFAULT_DIR, f"itchflow.{name_or_path}{SUFFIX}")


def _pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a SIGKILLed child its parent has not reaped)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _hugetlbfs_mount() -> str | None:
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "hugetlbfs" and os.access(parts[1], os.W_OK):
                    return parts[1]
    except OSError:
        pass
    return None


_created: dict[str, int] = {}   # path -> pid of the creating process


@atexit.register
def _unlink_created() -> None:
    # Rings created by this process and not explicitly kept are removed at normal exit
    # (not by a forked child that happens to run atexit handlers).
    for path, pid in list(_created.items()):
        if pid == os.getpid():
            try:
                os.unlink(path)
            except OSError:
                pass


class Ring:
    """A mapped ring file. ``words`` is the file as int64 words, ``data`` the data region."""

    def __init__(self, path: str, fd: int, mm: mmap.mmap, owner: bool):
        self.path = path
        self._fd = fd
        self._mm = mm
        self.owner = owner
        self.words = np.frombuffer(mm, dtype=np.int64)
        w = self.words
        self.capacity = int(w[L.W_CAPACITY])
        self.header_bytes = int(w[L.W_HEADER_BYTES])
        self.max_payload = int(w[L.W_MAX_PAYLOAD])
        self.max_consumers = int(w[L.W_MAX_CONSUMERS])
        self.mode = "lossy" if w[L.W_MODE] == L.MODE_LOSSY else "blocking"
        self.heartbeat_timeout = int(w[L.W_HB_TIMEOUT]) / 1e9
        self.flags = int(w[L.W_FLAGS])
        self.data = np.frombuffer(mm, dtype=np.uint8, count=self.capacity, offset=self.header_bytes)

    # ---- creation and opening ------------------------------------------------------------
    @classmethod
    def create(cls, path: str, capacity: int, *, max_payload: int | None = None,
               mode: str = "blocking", max_consumers: int = 16, consumers: Sequence[str] = (),
               heartbeat_timeout: float = 5.0, hugepages: bool = False, exist_ok: bool = False,
               keep: bool = False) -> "Ring":
        """Create a ring file (atomically: written aside, then renamed into place).

        capacity: data bytes, a power of two >= 4096. max_payload: largest record payload
        (default capacity/8, at most 16 MiB). consumers: names registered now, so that a
        blocking producer keeps their data from the first record even if they start later.
        heartbeat_timeout: a blocking-mode consumer silent this long is detached.
        hugepages: back the file with 2 MiB pages when the system offers them (hugetlbfs
        mount, else madvise(MADV_HUGEPAGE)); whether it took is in ``flags``.
        keep: leave the file when this process exits (default: the creator removes it).
        """
        if capacity < 4096 or capacity & (capacity - 1):
            raise ValueError(f"ring capacity must be a power of two >= 4096, got {capacity}")
        if max_payload is None:
            max_payload = min(capacity // 8, 1 << 24)
        if not 0 < max_payload <= capacity // 4 - 2 * L.RECORD_HEADER_BYTES:
            raise ValueError(f"max_payload must be in 1..{capacity // 4 - 16} for capacity {capacity}")
        if mode not in ("blocking", "lossy"):
            raise ValueError(f"mode must be 'blocking' or 'lossy', got {mode!r}")
        if not 1 <= max_consumers <= 4096:
            raise ValueError("max_consumers must be in 1..4096")
        if len(consumers) > max_consumers:
            raise ValueError("more consumer names than slots")
        path = ring_path(path)
        flags = 0
        huge_dir = None
        if hugepages:
            flags |= L.FLAG_HUGEPAGE_REQUESTED
            huge_dir = _hugetlbfs_mount()
            if huge_dir is not None and os.path.dirname(path) == DEFAULT_DIR:
                path = os.path.join(huge_dir, os.path.basename(path))
                flags |= L.FLAG_HUGETLBFS
        hb = L.header_bytes(max_consumers, huge=bool(flags & L.FLAG_HUGETLBFS))
        size = hb + capacity
        if os.path.exists(path) and not exist_ok:
            raise FileExistsError(f"ring {path} already exists (use exist_ok=True or `itchflow ring rm`)")
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            if hugepages and not flags & L.FLAG_HUGETLBFS and hasattr(mmap, "MADV_HUGEPAGE"):
                try:
                    mm.madvise(mmap.MADV_HUGEPAGE)
                except OSError:
                    pass
            w = np.frombuffer(mm, dtype=np.int64)
            w[L.W_VERSION] = L.LAYOUT_VERSION
            w[L.W_HEADER_BYTES] = hb
            w[L.W_CAPACITY] = capacity
            w[L.W_MAX_PAYLOAD] = max_payload
            w[L.W_MAX_CONSUMERS] = max_consumers
            w[L.W_MODE] = L.MODE_LOSSY if mode == "lossy" else L.MODE_BLOCKING
            w[L.W_HB_TIMEOUT] = int(heartbeat_timeout * 1e9)
            w[L.W_CREATED] = time.time_ns()
            w[L.W_CREATOR_PID] = os.getpid()
            w[L.W_FLAGS] = flags
            w[L.W_FILE_BYTES] = size
            w[L.W_TAIL_INTENT] = L.RECORD_HEADER_BYTES
            now = time.monotonic_ns()
            for i, name in enumerate(consumers):
                b = L.slot_base(i)
                _set_name(w, b, name)
                w[b + L.S_HB] = now           # the timeout counts from creation
                w[b + L.S_ATTACHED_NS] = now
                w[b + L.S_STATE] = L.SLOT_ATTACHED
            w[L.W_MAGIC] = L.MAGIC            # last: a file without it is not a ring
            del w
            mm.flush()
            os.rename(tmp, path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        ring = cls(path, fd, mm, owner=True)
        if not keep:
            _created[path] = os.getpid()
        return ring

    @classmethod
    def open(cls, path: str) -> "Ring":
        """Map an existing ring; RingFormatError if the file is not a valid ring."""
        path = ring_path(path)
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            validate_header(path, fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, mm, owner=False)

    # ---- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        if self._mm is None:
            return
        self.words = self.data = None  # type: ignore[assignment]
        try:
            self._mm.close()
        except BufferError:
            pass  # a view (e.g. a Batch) is still alive; the mapping goes when it does
        os.close(self._fd)
        self._mm = None
        if self.owner and _created.get(self.path) == os.getpid():
            self.unlink()

    def unlink(self) -> None:
        _created.pop(self.path, None)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def keep(self) -> None:
        """Do not remove the file when the creating process exits."""
        _created.pop(self.path, None)

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- sides -------------------------------------------------------------------------------
    def writer(self, wait: str = "spin", timeout: float | None = None) -> "Writer":
        return Writer(self, wait=wait, timeout=timeout)

    def reader(self, name: str, wait: str = "spin", timeout: float | None = None,
               max_batch: int = 4096) -> "Reader":
        return Reader(self, name, wait=wait, timeout=timeout, max_batch=max_batch)

    # ---- inspection --------------------------------------------------------------------------
    def find_slot(self, name: str) -> int:
        for i in range(self.max_consumers):
            b = L.slot_base(i)
            if load(self.words, b + L.S_STATE) != L.SLOT_FREE and _get_name(self.words, b) == name:
                return i
        return -1

    def snapshot(self) -> dict:
        """Everything `itchflow ring inspect` shows: parameters, edge, producer, consumers."""
        w = self.words
        edge = np.empty(3, np.int64)
        C.read_edge(w, edge)
        now = time.monotonic_ns()
        ppid = int(load(w, L.W_PROD_PID))
        pstate = int(load(w, L.W_PROD_STATE))
        out = {
            "path": self.path, "capacity": self.capacity, "max_payload": self.max_payload,
            "mode": self.mode, "max_consumers": self.max_consumers,
            "heartbeat_timeout_s": self.heartbeat_timeout,
            "hugepages": {"requested": bool(self.flags & L.FLAG_HUGEPAGE_REQUESTED),
                          "hugetlbfs": bool(self.flags & L.FLAG_HUGETLBFS)},
            "created_unix_ns": int(w[L.W_CREATED]), "creator_pid": int(w[L.W_CREATOR_PID]),
            "edge": {"position": int(edge[0]), "records": int(edge[1]), "payload_bytes": int(edge[2])},
            "producer": {
                "pid": ppid, "state": {0: "none", 1: "open", 2: "closed"}.get(pstate, str(pstate)),
                "alive": pstate == L.PRODUCER_OPEN and _pid_alive(ppid),
                "heartbeat_age_s": (now - int(load(w, L.W_PROD_HB))) / 1e9 if load(w, L.W_PROD_HB) else None,
                "generation": int(load(w, L.W_PROD_GEN)),
                "full_waits": int(load(w, L.W_FULL_WAITS)), "detached": int(load(w, L.W_DETACHED)),
                "wakeups": int(load(w, L.W_WAKEUPS)), "recovered_records": int(load(w, L.W_RECOVERED)),
            },
            "consumers": [],
        }
        for i in range(self.max_consumers):
            b = L.slot_base(i)
            st = int(load(w, b + L.S_STATE))
            if st == L.SLOT_FREE:
                continue
            idx = int(load(w, b + L.S_COMMIT_IDX)) & 1
            pos = int(load(w, b + L.S_COMMIT0 + 3 * idx))
            rec = int(load(w, b + L.S_COMMIT0 + 3 * idx + 1))
            pid = int(load(w, b + L.S_PID))
            hb = int(load(w, b + L.S_HB))
            out["consumers"].append({
                "slot": i, "name": _get_name(w, b), "state": L.SLOT_STATE_NAMES.get(st, str(st)),
                "pid": pid, "alive": _pid_alive(pid), "position": pos,
                "lag_bytes": int(edge[0]) - pos, "lag_records": int(edge[1]) - rec,
                "records_consumed": rec,
                "heartbeat_age_s": (now - hb) / 1e9 if hb else None,
                "lost_records": int(load(w, b + L.S_LOST_REC)),
                "lost_payload_bytes": int(load(w, b + L.S_LOST_PAY)),
                "laps": int(load(w, b + L.S_LAPS)), "detaches": int(load(w, b + L.S_DETACHES)),
                "attaches": int(load(w, b + L.S_ATTACHES)),
            })
        return out


def validate_header(path: str, fd: int, size: int) -> None:
    """Raise RingFormatError unless the file's header describes a ring of exactly this size."""
    need = L.CONSUMERS_WORD * 8
    if size < need:
        raise RingFormatError(f"{path}: {size} bytes is too small to be a ring (header needs {need})")
    head = np.frombuffer(os.pread(fd, need, 0), dtype=np.int64)
    if head[L.W_MAGIC] != L.MAGIC:
        raise RingFormatError(f"{path}: not a ring (bad magic {int(head[L.W_MAGIC]) & (2**64 - 1):#018x} at byte 0)")
    if head[L.W_VERSION] != L.LAYOUT_VERSION:
        raise RingFormatError(f"{path}: ring layout version {int(head[L.W_VERSION])}, this build reads {L.LAYOUT_VERSION}")
    cap, hb, maxc = int(head[L.W_CAPACITY]), int(head[L.W_HEADER_BYTES]), int(head[L.W_MAX_CONSUMERS])
    maxp = int(head[L.W_MAX_PAYLOAD])
    if cap < 4096 or cap & (cap - 1):
        raise RingFormatError(f"{path}: capacity {cap} is not a power of two >= 4096")
    if not 1 <= maxc <= 4096 or hb < L.header_bytes(maxc) or hb % L.PAGE_BYTES:
        raise RingFormatError(f"{path}: header of {hb} bytes cannot hold {maxc} consumer slots")
    if not 0 < maxp <= cap // 4 - 2 * L.RECORD_HEADER_BYTES:
        raise RingFormatError(f"{path}: max payload {maxp} is impossible for capacity {cap}")
    if head[L.W_MODE] not in (L.MODE_BLOCKING, L.MODE_LOSSY):
        raise RingFormatError(f"{path}: unknown mode {int(head[L.W_MODE])}")
    if int(head[L.W_FILE_BYTES]) != hb + cap or size != hb + cap:
        raise RingFormatError(f"{path}: file is {size} bytes, its header says {hb} + {cap} = {hb + cap}")


def _set_name(w: np.ndarray, b: int, name: str) -> None:
    raw = name.encode("utf-8")
    if not raw or len(raw) > L.NAME_BYTES:
        raise ValueError(f"consumer name must be 1..{L.NAME_BYTES} UTF-8 bytes, got {name!r}")
    buf = np.zeros(L.NAME_BYTES // 8, np.int64)
    buf.view(np.uint8)[: len(raw)] = np.frombuffer(raw, np.uint8)
    w[b + L.S_NAME: b + L.S_NAME + L.NAME_BYTES // 8] = buf
    w[b + L.S_NAME_LEN] = len(raw)


def _get_name(w: np.ndarray, b: int) -> str:
    n = int(w[b + L.S_NAME_LEN])
    n = max(0, min(n, L.NAME_BYTES))
    return w[b + L.S_NAME: b + L.S_NAME + L.NAME_BYTES // 8].tobytes()[:n].decode("utf-8", "replace")


def _timeout_ns(timeout: float | None) -> int:
    return -1 if timeout is None else int(timeout * 1e9)


def _strategy(wait: str) -> int:
    try:
        return STRATEGIES[wait]
    except KeyError:
        raise ValueError(f"wait must be one of {sorted(STRATEGIES)}, got {wait!r}") from None


class Writer:
    """The single producer of a ring. Opening it makes this process the producer (a live other
    producer is RingBusy); records published by a producer that died are recovered first, so the
    sequence continues where it ended."""

    def __init__(self, ring: Ring, wait: str = "spin", timeout: float | None = None):
        self.ring = ring
        w = ring.words
        self._strategy = _strategy(wait)
        self._timeout = _timeout_ns(timeout)
        me = os.getpid()
        while True:
            old = int(load(w, L.W_PROD_PID))
            if old and old != me and load(w, L.W_PROD_STATE) == L.PRODUCER_OPEN and _pid_alive(old):
                raise RingBusy(f"{ring.path}: producer pid {old} is alive")
            if cas(w, L.W_PROD_PID, old, me) == old:
                break
        found = P.recover_edge(w)
        if found:
            store(w, L.W_RECOVERED, load(w, L.W_RECOVERED) + found)
        self.recovered_records = found
        store(w, L.W_PROD_GEN, load(w, L.W_PROD_GEN) + 1)
        self.ps = P.new_producer_state(w)
        P.heartbeat(w, self.ps)
        store(w, L.W_PROD_STATE, L.PRODUCER_OPEN)
        P.serve_joins(w, self.ps)
        self._empty_types = np.zeros(0, np.int64)

    def _check(self, r: int, what: str) -> int:
        if r >= 0:
            return r
        if r == P.TOO_BIG:
            raise ValueError(f"{what}: payload larger than the ring's max_payload {self.ring.max_payload}")
        if r == P.BAD_TYPE:
            raise ValueError(f"{what}: record type must be in 0..{L.MAX_USER_TYPE}")
        raise TimeoutError(f"{what}: ring full (a consumer is behind) for longer than the timeout")

    def write(self, payload, type: int = 0) -> None:
        """Publish one record (bytes, bytearray, memoryview or uint8 array)."""
        arr = payload if isinstance(payload, np.ndarray) else np.frombuffer(payload, np.uint8)
        self._check(P.publish_one(self.ring.words, self.ring.data, self.ps, arr, type,
                                  self._strategy, self._timeout), "write")

    def write_batch(self, buffer, offsets, types=None) -> int:
        """Publish records buffer[offsets[i]:offsets[i+1]] (len(offsets)-1 of them), with one
        release store per batch (more only if the ring fills up mid-batch)."""
        buf = buffer if isinstance(buffer, np.ndarray) else np.frombuffer(buffer, np.uint8)
        offs = np.ascontiguousarray(offsets, dtype=np.int64)
        if len(offs) and (offs[0] < 0 or offs[-1] > len(buf) or np.any(np.diff(offs) < 0)):
            raise ValueError("offsets must be non-decreasing and within the buffer")
        t = self._empty_types if types is None else np.ascontiguousarray(types, dtype=np.int64)
        if types is not None and len(t) != len(offs) - 1:
            raise ValueError("types needs one entry per record")
        n = P.publish_batch(self.ring.words, self.ring.data, self.ps, buf, offs, t,
                            self._strategy, self._timeout)
        return self._check(n, "write_batch")

    @property
    def position(self) -> int:
        return int(self.ps[P.P_POS])

    @property
    def records(self) -> int:
        return int(self.ps[P.P_REC])

    def close(self) -> None:
        """Publish anything pending and mark the ring closed (readers drain, then stop)."""
        if self.ps is None:
            return
        w = self.ring.words
        P.commit(w, self.ps)
        P.heartbeat(w, self.ps)
        store(w, L.W_PROD_STATE, L.PRODUCER_CLOSED)
        self.ps = None

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Batch:
    """Records from one read: ``data[offsets[i]: offsets[i] + lengths[i]]`` is record i's payload.
    Blocking mode: ``data`` is the ring itself (zero copy), valid until the next read/commit.
    Lossy mode: ``data`` is the reader's private buffer (copied and validated)."""

    __slots__ = ("data", "offsets", "lengths", "types")

    def __init__(self, data, offsets, lengths, types):
        self.data, self.offsets, self.lengths, self.types = data, offsets, lengths, types

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        o = int(self.offsets[i])
        return self.data[o: o + int(self.lengths[i])]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self.offsets)):
            yield self[i]


class Reader:
    """A named consumer. A new name joins at the live edge (blocking mode: through the
    producer, so nothing it expects is overwritten); a known name resumes from its saved
    position (a restart after SIGKILL loses nothing in blocking mode if it comes back within
    the heartbeat timeout); a detached name rejoins at the live edge with its loss counted."""

    def __init__(self, ring: Ring, name: str, wait: str = "spin", timeout: float | None = None,
                 max_batch: int = 4096):
        self.ring = ring
        self.name = name
        self._strategy = _strategy(wait)
        self._timeout = _timeout_ns(timeout)
        self._off = np.empty(max_batch, np.int64)
        self._len = np.empty(max_batch, np.int64)
        self._typ = np.empty(max_batch, np.int64)
        self._copy = np.empty(max(ring.max_payload, 1 << 16) * 4, np.uint8) if ring.mode == "lossy" \
            else np.empty(0, np.uint8)
        self._pending = False
        self._joining = False
        w = ring.words
        me = os.getpid()
        slot = ring.find_slot(name)
        if slot < 0:
            slot = self._claim_new_slot(name)
            new = True
        else:
            new = False
            b = L.slot_base(slot)
            pid = int(load(w, b + L.S_PID))
            if pid and pid != me and _pid_alive(pid) and load(w, b + L.S_STATE) != L.SLOT_DETACHED:
                raise RingBusy(f"{ring.path}: consumer {name!r} is held by live pid {pid}")
        self.slot = slot
        b = self._b = L.slot_base(slot)
        store(w, b + L.S_PID, me)
        store(w, b + L.S_HB, time.monotonic_ns())
        store(w, b + L.S_ATTACHES, load(w, b + L.S_ATTACHES) + 1)
        self.cs = C.new_consumer_state(w, slot)
        st = int(load(w, b + L.S_STATE))
        if ring.mode == "lossy":
            if new:
                e = np.empty(3, np.int64)
                C.read_edge(w, e)
                C.set_start(w, self.cs, int(e[0]), int(e[1]), int(e[2]))
            store(w, b + L.S_STATE, L.SLOT_ATTACHED)
        elif new or st != L.SLOT_ATTACHED:
            # new, detached (count what was skipped), or left half-joined by a killed process
            self._request_join(count_loss=st == L.SLOT_DETACHED)
        store(w, b + L.S_ATTACHED_NS, time.monotonic_ns())

    def _claim_new_slot(self, name: str) -> int:
        w = self.ring.words
        for i in range(self.ring.max_consumers):
            b = L.slot_base(i)
            if cas(w, b + L.S_STATE, L.SLOT_FREE, L.SLOT_CLAIMED) == L.SLOT_FREE:
                for k in range(L.SLOT_WORDS):
                    if k != L.S_STATE:
                        w[b + k] = 0
                _set_name(w, b, name)
                return i
        raise RingError(f"{self.ring.path}: all {self.ring.max_consumers} consumer slots are taken")

    def _request_join(self, count_loss: bool) -> None:
        w = self.ring.words
        self._joining = True
        self._join_counts_loss = count_loss
        store(w, self._b + L.S_STATE, L.SLOT_JOINING)
        from itchflow.hw.atomics_py import fetch_add
        fetch_add(w, L.W_JOIN_REQ, 1)
        self._finish_join()

    def _finish_join(self) -> bool:
        """Complete a pending join: attached by the producer, or (no live producer) by ourselves."""
        w = self.ring.words
        b = self._b
        st = int(load(w, b + L.S_STATE))
        if st == L.SLOT_JOINING:
            producer_live = load(w, L.W_PROD_STATE) == L.PRODUCER_OPEN and _pid_alive(int(load(w, L.W_PROD_PID)))
            if producer_live:
                return False
            e = np.empty(3, np.int64)
            C.read_edge(w, e)
            store(w, b + L.S_JOIN_POS, e[0])
            store(w, b + L.S_JOIN_REC, e[1])
            store(w, b + L.S_JOIN_PAY, e[2])
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

    def rejoin(self) -> None:
        """After ConsumerDetached: continue at the live edge, counting what was skipped."""
        self._pending = False
        self._request_join(count_loss=True)

    @property
    def lost_records(self) -> int:
        return int(load(self.ring.words, self._b + L.S_LOST_REC))

    @property
    def lost_payload_bytes(self) -> int:
        return int(load(self.ring.words, self._b + L.S_LOST_PAY))

    @property
    def position(self) -> int:
        return int(self.cs[C.C_POS])

    @property
    def records(self) -> int:
        """Records index: how many records the producer had published before our cursor."""
        return int(self.cs[C.C_REC])

    def commit(self) -> None:
        """Release the last batch to the producer (read_batch does this itself)."""
        if self._pending:
            self._pending = False
            if C.commit(self.ring.words, self.cs) == C.DETACHED:
                raise ConsumerDetached(f"{self.ring.path}: consumer {self.name!r} was detached "
                                       "(missed heartbeats); the last batch may be overwritten")

    def read_batch(self, max_records: int | None = None, timeout: float | None = -1.0) -> Batch:
        """The next records (at least one unless the timeout passes: then an empty Batch).
        timeout=-1 means the reader's default. Raises ProducerGone / EOFError (the producer
        closed the ring and everything is read) / ConsumerDetached / RingFormatError."""
        self.commit()
        w = self.ring.words
        if self._joining and not self._finish_join():
            return self._empty()
        n_max = len(self._off) if max_records is None else min(max_records, len(self._off))
        t = self._timeout if timeout == -1.0 else _timeout_ns(timeout)
        C.heartbeat(w, self.cs)
        n = C.wait_poll(w, self.ring.data, self.cs, n_max, self._copy, self._off, self._len,
                        self._typ, self._strategy, t)
        if n > 0:
            self._pending = True
            data = self._copy if self.ring.mode == "lossy" else self.ring.data
            return Batch(data, self._off[:n], self._len[:n], self._typ[:n])
        if n == 0:
            return self._empty()
        if n == C.PRODUCER_CLOSED:
            C.commit(w, self.cs)
            raise EOFError(f"{self.ring.path}: the producer closed the ring")
        if n == C.PRODUCER_GONE:
            C.commit(w, self.cs)
            raise ProducerGone(f"{self.ring.path}: producer pid {int(load(w, L.W_PROD_PID))} is gone "
                               f"(read up to position {self.position})")
        if n == C.DETACHED:
            raise ConsumerDetached(f"{self.ring.path}: consumer {self.name!r} was detached")
        raise RingFormatError(f"{self.ring.path}: corrupt record header at position {self.position} "
                              f"(data offset {self.position & (self.ring.capacity - 1)})")

    def _empty(self) -> Batch:
        return Batch(self.ring.data, self._off[:0], self._len[:0], self._typ[:0])

    def __iter__(self) -> Iterator[bytes]:
        """Each record's payload as bytes, until the producer closes the ring."""
        while True:
            try:
                batch = self.read_batch()
            except EOFError:
                return
            for rec in batch:
                yield rec.tobytes()

    def close(self, leave: bool = False) -> None:
        """Commit. The slot keeps its position (a later Reader with this name resumes there and
        a blocking producer keeps its data) unless leave=True, which frees the slot."""
        if self.cs is None:
            return
        w = self.ring.words
        self._pending = True
        try:
            self.commit()
        except ConsumerDetached:
            pass
        if leave:
            store(w, self._b + L.S_STATE, L.SLOT_FREE)
        self.cs = None

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
