"""Where ring files live: a bare name maps to /dev/shm/itchflow.<name>.ring."""

from __future__ import annotations

import os
import stat
from typing import Iterator

DEFAULT_DIR = "/dev/shm"
SUFFIX = ".ring"


def ring_path(name_or_path: str) -> str:
    """A bare name maps to /dev/shm/itchflow.<name>.ring, or to the same file name on the
    hugetlbfs mount where a huge-page ring of that name was made (``Ring.create(hugepages=True)``
    puts it there: opening it by name found nothing); anything with a '/' is a path."""
    if "/" in name_or_path:
        return name_or_path
    base = f"itchflow.{name_or_path}{SUFFIX}"
    default = os.path.join(DEFAULT_DIR, base)
    if not os.path.exists(default):
        huge = hugetlbfs_mount()
        if huge is not None and os.path.exists(os.path.join(huge, base)):
            return os.path.join(huge, base)
    return default


def ring_folders() -> list[str]:
    """Where rings made by name live: /dev/shm, and the hugetlbfs mount that huge-page rings
    (``hugepages=True``, a run's ``--hugepages`` private ring too) are made on. What lists,
    sweeps or removes rings looks in both: a huge-page ring left behind holds pages no other
    program can have."""
    huge = hugetlbfs_mount()
    return [DEFAULT_DIR] if huge is None or os.path.abspath(huge) == DEFAULT_DIR else [DEFAULT_DIR, huge]


def _mounts() -> Iterator[tuple[str, str, str]]:
    """(mount point, file system type, options) of each mount in /proc/mounts (none if unreadable)."""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4:
                    yield parts[1], parts[2], parts[3]
    except OSError:
        return


def hugetlbfs_mount() -> str | None:
    """A writable hugetlbfs mount point, if the system has one."""
    return next((point for point, fs, _ in _mounts() if fs == "hugetlbfs" and os.access(point, os.W_OK)), None)


SHMEM_THP = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
TAKES = ("advise", "always", "within_size", "force")   # policies under which madvise(MADV_HUGEPAGE) gets them


def shmem_thp_policy() -> str | None:
    """The word in brackets of ``shmem_enabled`` (never, advise, always, within_size, deny,
    force), None if unknown. It rules tmpfs mounts only as "deny" or "force"; otherwise each
    mount's own ``huge=`` option does (``transparent_huge_pages``)."""
    try:
        with open(SHMEM_THP) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def _mount_of(path: str) -> tuple[str, str, str] | None:
    """(mount point, file system type, options) of the mount that holds ``path``."""
    path = os.path.realpath(path)
    inside = [m for m in _mounts() if path == m[0] or path.startswith(m[0].rstrip("/") + "/")]
    return max(inside, key=lambda m: len(m[0]), default=None)


def transparent_huge_pages(path: str) -> tuple[bool, str]:
    """Whether madvise(MADV_HUGEPAGE) on a shared mapping of the file at ``path`` (not on a
    hugetlbfs mount) gets transparent huge pages, and why. A tmpfs mount takes them as its
    ``huge=`` option says (never unless mounted otherwise), unless ``shmem_enabled`` is "deny"
    or "force", which rule every mount; other file systems' shared pages stay 4 KiB."""
    folder = os.path.dirname(os.path.abspath(path))
    mount = _mount_of(folder)
    if mount is None or mount[1] != "tmpfs":
        return False, f"{folder} is not on tmpfs, whose shared pages alone can be huge"
    policy = shmem_thp_policy()
    if policy in ("deny", "force"):
        return policy == "force", f"{SHMEM_THP} is {policy!r}, which rules every tmpfs mount"
    huge = next((o.split("=", 1)[1] for o in mount[2].split(",") if o.startswith("huge=")), "never")
    return huge in TAKES, f"the tmpfs mount {mount[0]} has huge={huge}"


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for an error naming it (``os.stat``'s mode)."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"
