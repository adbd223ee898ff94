"""CPU pinning: put the producer and the consumer on fixed, different cores so the cache line
moves between the same two L1s every time (and the scheduler does not migrate a spinner)."""

from __future__ import annotations

import os


def available_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def parse_cpus(spec: str | None) -> tuple[int, ...] | None:
    """'0,1' -> (0, 1); '' or None -> None (no pinning). Unknown CPUs are a ValueError."""
    if not spec:
        return None
    cpus = tuple(int(x) for x in spec.split(","))
    bad = [c for c in cpus if c not in available_cpus()]
    if bad:
        raise ValueError(f"CPUs {bad} are not available (have {available_cpus()})")
    return cpus


def pin(cpu: int | None) -> None:
    """Pin the calling thread (and the threads it creates later) to one CPU; None: no-op.
    (Linux's sched_setaffinity(0) names the calling thread: a process pins itself this way
    before it starts threads, a worker thread pins only itself.)"""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def pin_for(cpus: tuple[int, ...] | None, role: int) -> set[int] | None:
    """Pin role 0 (producer) / 1 (consumer) to cpus[role] if pinning was asked; returns the
    affinity it had before (None if not pinned), for ``unpin``."""
    if not cpus:
        return None
    before = os.sched_getaffinity(0)
    pin(cpus[role % len(cpus)])
    return before


def unpin(before: set[int] | None) -> None:
    """Give the calling thread back the affinity ``pin_for`` took from it: a run pinned for its
    own sake leaves its caller as it found it (and the threads it starts after, such as a gzip
    day's decompression, free to use the other CPUs)."""
    if before is not None:
        os.sched_setaffinity(0, before)
