"""Who is alive on a ring: judged by heartbeat age AND pid, never by pid alone.

A pid can be reused by an unrelated process, and a process can exist yet be stuck or stopped;
a heartbeat can be fresh for a moment after its process was killed. So:

  producer live   state OPEN, pid exists (not a zombie) and heartbeat younger than
                  max(heartbeat_timeout, PRODUCER_STALE_MIN_NS)
  consumer live   a joining/attached slot whose pid exists and whose heartbeat is younger than
                  heartbeat_timeout (what the producer uses to detach it)
  creator alive   its pid exists with the start time recorded at creation
  ring stale      creator dead, and no producer or consumer heartbeat younger than the timeout
                  (dead pids whose heartbeats are still fresh make it "not yet stale")
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from itchflow.hw.atomics_py import load
from itchflow.ring import layout as L


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a SIGKILLed child its parent has not reaped). A
    pid word past Linux's largest is no process (os.kill raised OverflowError on one past 2**31,
    and ``ring ls`` listed nothing: probe 43)."""
    if not 0 < pid <= L.PID_MAX:
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


def left_behind(pid: int) -> bool:
    """Whether what a run named by its pid (a namespace, a folder) was left by a run that is
    gone: the pid is not alive, or it is this process's own (a dead run's pid, reused: called
    before this process makes its own). What a live process named is in use."""
    return pid == os.getpid() or not pid_alive(pid)


def process_start(pid: int) -> int:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _age_ns(words, index: int, now: int) -> int:
    """How old a heartbeat is: never written (0), or more than the ring's time-out ahead of this
    clock (no CLOCK_MONOTONIC reading: a stray write), it is as old as can be."""
    hb = int(load(words, index))
    if not hb or hb - now > int(words[L.W_HB_TIMEOUT]):
        return 1 << 62
    return now - hb


def producer_stale_ns(words) -> int:
    return max(int(words[L.W_HB_TIMEOUT]), L.PRODUCER_STALE_MIN_NS)


def same_process(pid: int, recorded_start: int) -> bool:
    """Whether ``pid`` is alive and is the process whose start time was recorded (0: unknown,
    the pid alone decides): a pid reused by another process is not it."""
    return pid_alive(pid) and (recorded_start == 0 or process_start(pid) in (0, recorded_start))


def producer_process_alive(words) -> int:
    """The producer's pid if that very process is still running (paused, stopped or starved,
    perhaps), else 0: a pid since reused by another process is not the producer's."""
    pid = int(load(words, L.W_PROD_PID))
    return pid if pid and same_process(pid, int(load(words, L.W_PROD_START))) else 0


def producer_live(words, now: int | None = None) -> bool:
    now = time.monotonic_ns() if now is None else now
    return (load(words, L.W_PROD_STATE) == L.PRODUCER_OPEN and producer_process_alive(words) != 0
            and _age_ns(words, L.W_PROD_HB, now) <= producer_stale_ns(words))


def consumer_live(words, base: int, now: int | None = None) -> bool:
    """Slot at word ``base``: held by a live, heart-beating process."""
    return load(words, base + L.S_STATE) in (L.SLOT_JOINING, L.SLOT_ATTACHED) and slot_holder_live(words, base, now)


def slot_holder_live(words, base: int, now: int | None = None) -> bool:
    """Slot at word ``base``, whatever its state: its pid is a live process whose heartbeat in
    the slot is within the ring's time-out."""
    now = time.monotonic_ns() if now is None else now
    return (pid_alive(int(load(words, base + L.S_PID)))
            and _age_ns(words, base + L.S_HB, now) <= int(words[L.W_HB_TIMEOUT]))


def creator_alive(words) -> bool:
    return same_process(int(words[L.W_CREATOR_PID]), int(words[L.W_CREATOR_START]))


def no_producer(words) -> str | None:
    """Why a reader waiting on this ring may wait for ever (no live producer has it open, and
    its creator, when it has exited, cannot be the one to open it), or None."""
    if producer_live(words):
        return None
    pid = int(words[L.W_CREATOR_PID])
    creator = f"its creator, pid {pid}, {'is running' if creator_alive(words) else 'has exited'}"
    return f"no producer has this ring open ({creator})"


@dataclass
class Staleness:
    stale: bool
    holders: list[str]       # who keeps it from being stale ("producer pid 12", ...)
    waiting: bool            # not stale only because dead processes' heartbeats are still fresh


def staleness(words, max_consumers: int) -> Staleness:
    """Whether the ring belongs to no live process (module doc)."""
    now = time.monotonic_ns()
    timeout = int(words[L.W_HB_TIMEOUT])
    holders, fresh_dead = [], False
    if creator_alive(words):
        holders.append(f"creator pid {int(words[L.W_CREATOR_PID])}")
    if load(words, L.W_PROD_STATE) == L.PRODUCER_OPEN:
        pid = int(load(words, L.W_PROD_PID))
        if _age_ns(words, L.W_PROD_HB, now) <= producer_stale_ns(words):
            if producer_process_alive(words):
                holders.append(f"producer pid {pid}")
            else:
                fresh_dead = True
    for i in range(max_consumers):
        b = L.slot_base(i)
        if load(words, b + L.S_STATE) not in (L.SLOT_JOINING, L.SLOT_ATTACHED, L.SLOT_CLAIMED):
            continue
        pid = int(load(words, b + L.S_PID))
        if _age_ns(words, b + L.S_HB, now) <= timeout:
            if pid_alive(pid):
                holders.append(f"consumer pid {pid}")
            else:
                fresh_dead = True
    return Staleness(stale=not holders and not fresh_dead, holders=holders, waiting=not holders and fresh_dead)
