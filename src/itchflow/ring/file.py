"""A ring file: create (atomically, 0600), open and validate, close/unlink, and find it stale.

The file is mapped directly with mmap (not multiprocessing.shared_memory, whose resource
tracker unlinks segments when any attached process exits). Every hot operation is one call
into a compiled kernel (producer.py / consumer.py); nothing here runs per record.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import mmap
import os
import stat
import time
import weakref
from typing import Sequence

import numpy as np

from itchflow.hw import sigbus
from itchflow.hw.atomics_py import load
from itchflow.hw.memory import meminfo_value
from itchflow.ring import layout as L
from itchflow.ring.errors import RingBusy, RingFormatError
from itchflow.ring.inspect import snapshot
from itchflow.ring.liveness import process_start, staleness
from itchflow.ring.paths import DEFAULT_DIR, file_kind, hugetlbfs_mount, ring_path, transparent_huge_pages
from itchflow.ring.reader import Reader
from itchflow.ring.slots import get_name, set_name, validate_slots
from itchflow.ring.writer import Writer


_created: dict[str, tuple[int, tuple[int, int]]] = {}   # path -> (creating pid, the file's identity)


def _file_identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _unlink_if_same(path: str, identity: tuple[int, int]) -> None:
    """Remove the name ``path`` if it still names this file: a ring removed by hand (``ring rm
    --force``) and made again under its name by another run was that run's, and its creator's
    exit took the name from under it (probe 48). (A name replaced between the check and the
    removal is a window of two system calls.)"""
    try:
        if _file_identity(os.stat(path)) == identity:
            os.unlink(path)
    except OSError:
        pass


def _put_in_place(tmp: str, path: str, replace: bool) -> None:
    """Give the written ring its name: replacing what is there when asked (exist_ok), else as a
    new name only. The check for an existing ring comes before the ring is written, and a
    rename replaces silently: two runs creating one name at once both succeeded, each
    producer then writing into the one ring left under the name (probe 48). A link fails if
    the name exists; where links are not supported, the check is made again just before."""
    if replace:
        os.rename(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"ring {path} already exists: another process created it at the same time") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
        if os.path.exists(path):
            raise FileExistsError(f"ring {path} already exists (use exist_ok=True or `itchflow ring rm`)") from None
        os.rename(tmp, path)
        return
    os.unlink(tmp)


@atexit.register
def _unlink_created() -> None:
    # Rings created by this process and not explicitly kept are removed at normal exit
    # (not by a forked child that happens to run atexit handlers).
    for path, (pid, identity) in list(_created.items()):
        if pid == os.getpid():
            _unlink_if_same(path, identity)



MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)   # Linux 5.14 (Python 3.11 lacks the name)


def _reserve(fd: int, size: int, path: str, advised: mmap.mmap | None = None) -> None:
    """Reserve the ring's pages now. ftruncate alone leaves a sparse file: on a tmpfs (/dev/shm)
    without room, the first touch of a page then faults (SIGBUS), which the guard for files
    that shrink took for a shrunk file and answered with zeros: a full /dev/shm was reported
    as a corrupt message in the user's input. A file system that cannot reserve (no
    fallocate) is left as it was.

    ``advised``: the mapping, advised MADV_HUGEPAGE. Its pages are faulted in through it
    (MADV_POPULATE_WRITE), where the advice counts: fallocate has no mapping to ask, and
    filled a tmpfs mounted huge=advise with 4 KiB pages, so the advice came too late."""
    if advised is not None:
        try:
            advised.madvise(MADV_POPULATE_WRITE)
            return
        except OSError as e:   # EFAULT (SIGBUS, no room) or ENOMEM: fallocate names the cause
            if e.errno not in (errno.EFAULT, errno.ENOMEM, errno.EINVAL):
                raise
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            free = meminfo_value("HugePages_Free") if os.path.dirname(path) == hugetlbfs_mount() else None
            advice = (f"{free} huge pages free (HugePages_Free): reserve them (sysctl vm.nr_hugepages), or make "
                      "the ring without huge pages" if free is not None else
                      "a smaller --capacity, or free the space: itchflow ring ls")
            raise OSError(e.errno, f"no room for the ring's {size:,} bytes in {os.path.dirname(path) or '.'} "
                                   f"({os.strerror(e.errno)}; {advice})", path) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


def not_yours(path: str) -> str:
    """Why a ring this process may not open is refused: whose it is (rings are made 0600)."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"permission denied ({e.strerror})"
    try:
        import pwd

        owner = f"{pwd.getpwuid(st.st_uid).pw_name}, uid {st.st_uid}"
    except (KeyError, ImportError):
        owner = f"uid {st.st_uid}"
    return (f"permission denied: the ring is another user's ({owner}, mode {stat.S_IMODE(st.st_mode):04o}); "
            f"a ring is private to the user who made it (this process runs as uid {os.getuid()})")


def _file_size_limit() -> str:
    import resource

    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return "RLIMIT_FSIZE" if soft == resource.RLIM_INFINITY else f"ulimit -f: {soft:,} bytes"


def _check_memory(path: str, size: int, on_hugetlbfs: bool) -> None:
    """A ring in /dev/shm is held in memory whole (its pages are reserved at creation): one
    larger than the memory available is refused by name first (--capacity 16G took 13.5 GB of
    a 24 GB machine for a 6 MB day, with other processes' memory at stake: probe 25). Huge
    pages are a pool of their own (_reserve counts them)."""
    if on_hugetlbfs or not os.path.realpath(path).startswith(os.path.realpath(DEFAULT_DIR) + os.sep):
        return
    free = meminfo_value("MemAvailable")
    if free is not None and size > free:
        raise OSError(errno.ENOMEM, f"no room for the ring's {size:,} bytes in memory: this machine has {free:,} "
                                    f"available (MemAvailable), and a ring in {DEFAULT_DIR} is held in memory whole "
                                    "(a smaller --capacity)", path)


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class Ring:
    """A mapped ring file. ``words`` is the file as int64 words, ``data`` the data region."""

    def __init__(self, path: str, fd: int, mm: mmap.mmap, owner: bool, head: np.ndarray | None = None):
        """head: the header words as validated (``validate_header``); default the mapping's
        own (a ring this process just wrote)."""
        self.path = path
        self._fd = fd
        # a ring dropped without close() lets its descriptor go when it is collected (it held
        # the file, and a removed ring's pages in /dev/shm, until the process exited: probe 55)
        self._fd_closer = weakref.finalize(self, _close_fd, fd)
        self._mm = mm
        self.owner = owner
        self._identity = _file_identity(os.fstat(fd))   # (what its name must still be to be removed)
        self.words = np.frombuffer(mm, dtype=np.int64)
        w = self.words if head is None else head
        self.capacity = int(w[L.W_CAPACITY])
        self.header_bytes = int(w[L.W_HEADER_BYTES])
        self.max_payload = int(w[L.W_MAX_PAYLOAD])
        self.max_consumers = int(w[L.W_MAX_CONSUMERS])
        self.mode = "lossy" if w[L.W_MODE] == L.MODE_LOSSY else "blocking"
        self.heartbeat_timeout = int(w[L.W_HB_TIMEOUT]) / 1e9
        self.flags = int(w[L.W_FLAGS])
        geometry = np.zeros(L.G_FIELDS, np.int64)
        geometry[[L.G_CAPACITY, L.G_HEADER_BYTES, L.G_MAX_PAYLOAD, L.G_MODE, L.G_MAX_CONSUMERS,
                  L.G_HB_TIMEOUT_NS]] = (self.capacity, self.header_bytes, self.max_payload, int(w[L.W_MODE]),
                                         self.max_consumers, int(w[L.W_HB_TIMEOUT]))
        self.geometry = geometry   # what the kernels take their bounds from (layout: G_*)
        self.data = np.frombuffer(mm, dtype=np.uint8, count=self.capacity, offset=self.header_bytes)
        self.fault_word = None   # the guard's record of a page found past the file's end (writers check it)
        self._writers: weakref.WeakSet[Writer] = weakref.WeakSet()   # open ones, closed with the ring
        self._readers: weakref.WeakSet[Reader] = weakref.WeakSet()   # told when the ring closes
        if not self.flags & L.FLAG_HUGETLBFS:   # (a huge-page mapping cannot take a 4 KiB page of zeros)
            if sigbus.guard(mm):   # the file truncated under us: pages of zeros and a record (``truncated``)
                self.fault_word = sigbus.fault_word(mm)

    def page_backing(self) -> tuple[str, str]:
        """What pages back the ring: ("hugetlbfs" | "transparent" | "4k", why). A request for
        huge pages with no hugetlbfs mount falls back to transparent huge pages, which /dev/shm
        gives only if mounted with huge=advise (or always): by default it does not, and the ring
        runs on 4 KiB pages, which is said rather than left to be found out."""
        if self.flags & L.FLAG_HUGETLBFS:
            return "hugetlbfs", f"on the hugetlbfs mount {os.path.dirname(self.path)}"
        if not self.flags & L.FLAG_HUGEPAGE_REQUESTED:
            return "4k", "huge pages not requested"
        takes, why = transparent_huge_pages(self.path)
        if takes:
            return "transparent", f"transparent huge pages (madvise; {why})"
        return "4k", (f"huge pages were requested, but no writable hugetlbfs mount exists and {why}, so the "
                      "ring has 4 KiB pages: mount hugetlbfs (mount -t hugetlbfs none /dev/hugepages) and "
                      "reserve pages (sysctl vm.nr_hugepages=N), or remount /dev/shm with huge=advise "
                      "(mount -o remount,huge=advise /dev/shm)")

    def truncated(self) -> str | None:
        """Why the ring is unusable if its file was truncated under this process (shorter than
        the mapping, or a page of it found past the end: read as zeros since), else None."""
        cut = None if self._mm is None else sigbus.shrunk(self._mm)
        if cut is None:
            return None
        return (f"{self.path}: the ring file was truncated to {cut[0]:,} bytes (it is {len(self._mm):,}) by "
                "another process while in use; what was read or written past its new end is not the ring's")

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
        if not 0.001 <= heartbeat_timeout <= 1e9:   # (nan fails too) kept in ns: 0 would read as corrupt
            raise ValueError(f"heartbeat_timeout must be 0.001 to 1e9 seconds, got {heartbeat_timeout!r}")
        bare = "/" not in path
        found = ring_path(path)   # a bare name: /dev/shm's file, or a huge-page ring's of that name
        if os.path.exists(found) and not exist_ok:   # (one name, one ring, wherever it lives)
            raise FileExistsError(f"ring {found} already exists (use exist_ok=True or `itchflow ring rm`)")
        path = os.path.join(DEFAULT_DIR, os.path.basename(found)) if bare else found
        flags = 0
        huge_dir = None
        if hugepages:
            flags |= L.FLAG_HUGEPAGE_REQUESTED
            huge_dir = hugetlbfs_mount()
            if huge_dir is not None and os.path.dirname(path) == DEFAULT_DIR:
                path = os.path.join(huge_dir, os.path.basename(path))
                flags |= L.FLAG_HUGETLBFS
        hb = L.header_bytes(max_consumers, huge=bool(flags & L.FLAG_HUGETLBFS))
        size = hb + capacity
        if os.path.exists(path) and not exist_ok:
            raise FileExistsError(f"ring {path} already exists (use exist_ok=True or `itchflow ring rm`)")
        _check_memory(path, size, bool(flags & L.FLAG_HUGETLBFS))
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        mm = None
        try:
            try:
                os.ftruncate(fd, size)
            except OSError as e:
                if e.errno != errno.EFBIG:
                    raise
                raise OSError(e.errno, f"ring {path}: its {size:,} bytes are past this process's file-size "
                                       f"limit ({_file_size_limit()}): raise it, or a smaller --capacity",
                              path) from None
            try:
                mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as e:   # ENOMEM: no address space for it ("[Errno 12]" named nothing)
                raise OSError(e.errno, f"ring {path}: cannot map its {size:,} bytes ({e.strerror})", path) from None
            advised = False
            if hugepages and not flags & L.FLAG_HUGETLBFS and hasattr(mmap, "MADV_HUGEPAGE"):
                try:
                    mm.madvise(mmap.MADV_HUGEPAGE)
                    advised = True
                except OSError:
                    pass
            _reserve(fd, size, path, mm if advised else None)
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
            w[L.W_CREATOR_START] = process_start(os.getpid())
            w[L.W_FLAGS] = flags
            w[L.W_FILE_BYTES] = size
            w[L.W_TAIL_INTENT] = L.RECORD_HEADER_BYTES
            now = time.monotonic_ns()
            for i, name in enumerate(consumers):
                b = L.slot_base(i)
                set_name(w, b, name)
                w[b + L.S_HB] = now           # the timeout counts from creation
                w[b + L.S_ATTACHED_NS] = now
                w[b + L.S_STATE] = L.SLOT_ATTACHED
            w[L.W_MAGIC] = L.MAGIC            # last: a file without it is not a ring
            del w
            mm.flush()
            _put_in_place(tmp, path, exist_ok)
            if found != path and os.path.exists(found):
                # exist_ok, a bare name made the other way (huge pages or not) than before: the
                # old ring is replaced as one at this path would be, not left under the name
                # (ring_path would find the new one, the old one's pages held for good)
                os.unlink(found)
        except BaseException:
            if mm is not None:
                with contextlib.suppress(BufferError):   # (a view of it still held: it goes with that)
                    mm.close()   # a mapping left open held the file, and the file system, busy
            os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        ring = cls(path, fd, mm, owner=True)
        if not keep:
            _created[path] = (os.getpid(), ring._identity)
        return ring

    @classmethod
    def open(cls, path: str) -> "Ring":
        """Map an existing ring; RingFormatError if the file is not a valid ring."""
        path = ring_path(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)   # (non-blocking: a FIFO of that name never blocks us)
        except IsADirectoryError:
            raise RingFormatError(f"{path}: not a ring (a directory)") from None
        except PermissionError as e:   # (probe 57: `ring ls` called it CORRUPT and advised --force)
            raise PermissionError(e.errno, not_yours(path), path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise RingFormatError(f"{path}: not a ring ({file_kind(st.st_mode)})")
            size = st.st_size
            head = validate_header(path, fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        ring = cls(path, fd, mm, owner=False, head=head)
        try:
            validate_slots(path, ring.words, ring.capacity, ring.mode == "blocking", ring.max_consumers)
        except BaseException:
            ring.close()
            raise
        return ring

    @classmethod
    def reclaim_stale(cls, path: str, wait: float | None = None) -> bool:
        """Remove the ring at ``path`` if it belongs to no live process (creator dead, and no
        producer or consumer heartbeat younger than the ring's timeout); True if it was removed,
        False if there was none. If its processes are dead but their heartbeats still fresh
        (killed a moment ago), wait up to ``wait`` seconds (default: the ring's timeout, plus
        a little) for them to go stale. RingBusy naming who holds it otherwise, or when its
        producer closed it cleanly and a consumer has not read everything (a kept feed)."""
        path = ring_path(path)
        try:
            ring = cls.open(path)
        except FileNotFoundError:
            return False
        try:
            limit = max(ring.heartbeat_timeout, L.PRODUCER_STALE_MIN_NS / 1e9) + 0.5 if wait is None else wait
            deadline = time.monotonic() + limit
            while True:
                s = ring.staleness()
                if s.stale:
                    break
                if s.holders or time.monotonic() > deadline:
                    raise RingBusy(f"{path}: in use by {', '.join(s.holders) or 'processes that only just died'}"
                                   " (a ring is reclaimed only when its processes are dead and their "
                                   "heartbeats stale)")
                time.sleep(0.02)
            unread = [c for c in ring.snapshot()["consumers"] if c["lag_bytes"] > 0]
            if load(ring.words, L.W_PROD_STATE) == L.PRODUCER_CLOSED and unread:
                # a finished feed kept for its readers (listen --ring), not debris of a crash
                raise RingBusy(f"{path}: its producer closed it cleanly and it still holds "
                               + (f"{unread[0]['lag_records']:,} records" if unread[0]["lag_records"] is not None
                                  else f"{unread[0]['lag_bytes']:,} bytes of records")
                               + f" consumer {unread[0]['name']!r} has not read; "
                               "remove it with `itchflow ring rm` if they are not wanted")
        finally:
            ring.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return True

    # ---- lifetime --------------------------------------------------------------------------
    def __reduce__(self):
        # (pickle said "cannot pickle '_dynfunc._Closure' object": probe 59)
        raise TypeError(f"a Ring is a mapping of the shared file {self.path} and does not pickle: pass its path "
                        f"and call Ring.open(path) in the other process")

    def close(self) -> None:
        """Close the ring's open writer (publishing what is pending, the ring marked closed for
        its readers), then unmap it."""
        if self._mm is None:
            return
        for writer in list(self._writers):
            writer.close()   # its heartbeat thread holds the mapping: it must stop first
        for reader in list(self._readers):
            reader._forget()   # (its later calls: "closed", not Numba's typing error for a None)
        self.words = self.data = None  # type: ignore[assignment]
        self.fault_word = None   # the slot may guard another mapping from here on
        try:
            self._mm.close()
            sigbus.unguard(self._mm)   # its address range may be reused at once
        except BufferError:
            pass  # a view (e.g. a Batch) is still alive; the mapping goes when it does
        self._fd_closer()   # (once: a finalizer called is dead)
        self._mm = None
        if self.owner and _created.get(self.path, (None,))[0] == os.getpid():
            self.unlink()

    def fileno(self) -> int:
        """The descriptor the ring is mapped through (the file, whatever its name names now)."""
        return self._fd

    def unlink(self) -> None:
        """Remove the ring's name, if it still names this ring (not another made under it since)."""
        _created.pop(self.path, None)
        _unlink_if_same(self.path, self._identity)

    def keep(self) -> None:
        """Do not remove the file when the creating process exits."""
        _created.pop(self.path, None)

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- sides -------------------------------------------------------------------------------
    def writer(self, wait: str = "spin", timeout: float | None = None) -> Writer:
        w = Writer(self, wait=wait, timeout=timeout)
        self._writers.add(w)
        return w

    def reader(self, name: str, wait: str = "spin", timeout: float | None = None,
               max_batch: int = 4096) -> Reader:
        return Reader(self, name, wait=wait, timeout=timeout, max_batch=max_batch)

    # ---- inspection --------------------------------------------------------------------------
    def find_slot(self, name: str) -> int:
        for i in range(self.max_consumers):
            b = L.slot_base(i)
            if load(self.words, b + L.S_STATE) != L.SLOT_FREE and get_name(self.words, b) == name:
                return i
        return -1

    def snapshot(self) -> dict:
        """Everything `itchflow ring inspect` shows: parameters, edge, producer, consumers."""
        return snapshot(self)

    def staleness(self):
        """Whether no live process holds this ring (liveness.staleness)."""
        return staleness(self.words, self.max_consumers)


def validate_header(path: str, fd: int, size: int) -> np.ndarray:
    """The header's words (a private copy) if they describe a ring of exactly this size, else
    RingFormatError."""
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
    if head[L.W_HB_TIMEOUT] <= 0:
        raise RingFormatError(f"{path}: heartbeat timeout {int(head[L.W_HB_TIMEOUT])} ns is not positive")
    if head[L.W_MODE] not in (L.MODE_BLOCKING, L.MODE_LOSSY):
        raise RingFormatError(f"{path}: unknown mode {int(head[L.W_MODE])}")
    if int(head[L.W_FILE_BYTES]) != hb + cap:
        raise RingFormatError(f"{path}: its header's file size word says {int(head[L.W_FILE_BYTES])} bytes, "
                              f"but header {hb} + capacity {cap} = {hb + cap}")
    if size != hb + cap:
        raise RingFormatError(f"{path}: file is {size} bytes, its header says {hb} + {cap} = {hb + cap}")
    return head


