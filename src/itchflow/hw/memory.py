"""How much memory this machine can still give (Linux: /proc/meminfo's MemAvailable)."""

from __future__ import annotations

MEMINFO = "/proc/meminfo"


def meminfo_value(field: str, meminfo: str = MEMINFO) -> int | None:
    """/proc/meminfo's ``field`` (a size in bytes, or a count such as HugePages_Free); None
    where it is not known (not Linux, or a kernel without it)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith(field + ":"):
                    parts = line.split()
                    return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(meminfo: str = MEMINFO) -> int | None:
    """The kernel's estimate of memory available to a new allocation without swapping
    (MemAvailable), in bytes; None where it is not known (not Linux, or a kernel without it)."""
    return meminfo_value("MemAvailable", meminfo)
