"""How much memory this machine can still give (Linux: /proc/meminfo's MemAvailable)."""

from __future__ import annotations

MEMINFO = "/proc/meminfo"


def available_bytes(meminfo: str = MEMINFO) -> int | None:
    """The kernel's estimate of memory available to a new allocation without swapping
    (MemAvailable), in bytes; None where it is not known (not Linux, or a kernel without it)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    value, unit = line.split()[1:3]
                    return int(value) * (1024 if unit == "kB" else 1)
    except (OSError, ValueError, IndexError):
        return None
    return None
