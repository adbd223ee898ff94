"""Where ring files live: a bare name maps to /dev/shm/itchflow.<name>.ring."""

from __future__ import annotations

import os

DEFAULT_DIR = "/dev/shm"
SUFFIX = ".ring"


def ring_path(name_or_path: str) -> str:
    """A bare name maps to /dev/shm/itchflow.<name>.ring; anything with a '/' is a path."""
    if "/" in name_or_path:
        return name_or_path
    return os.path.join(DEFAULT_DIR, f"itchflow.{name_or_path}{SUFFIX}")


def hugetlbfs_mount() -> str | None:
    """A writable hugetlbfs mount point, if the system has one."""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "hugetlbfs" and os.access(parts[1], os.W_OK):
                    return parts[1]
    except OSError:
        pass
    return None
