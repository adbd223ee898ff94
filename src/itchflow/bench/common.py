"""Shared benchmark plumbing: machine description, peak memory, timing, peers in subprocesses."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(os.environ.get("ITCHFLOW_BENCH_DIR", ".cache/bench"))
# Bump when the generator's output for the same parameters changes, so every cached day is
# remade (it is in each cached day's name or key). 4: a B carries the locate and tracking
# number of the trade it breaks (it had locate 0).
DAY_FORMAT = 4


def machine() -> dict:
    """Cores, CPU model, Python and library versions: printed with every figure."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "kernel": platform.release()}


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark for this process (Linux >= 4.0), if allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_allocated(fn) -> tuple[object, int]:
    """fn()'s result and the most memory Python and numpy had allocated at once while it ran
    (numpy reports its array buffers to tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def peak_rss_bytes() -> int:
    """Peak resident set size since the last reset (VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def best_of(repeat: int, fn) -> tuple[float, object]:
    """Smallest wall time of ``repeat`` calls (the least disturbed on a noisy machine)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def peer_failure(returncode: int, stderr: str) -> str:
    """Why a peer's process failed, in one line: its last line of stderr, or the signal that
    ended it (a process the kernel's OOM killer ends says nothing itself)."""
    last = (stderr.strip().splitlines() or [""])[-1]
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = " (out of memory? the kernel's OOM killer sends it)" if -returncode == signal.SIGKILL else ""
        return f"killed by {name}{why}" + (f"; last stderr line: {last}" if last else "")
    return last or f"exited with status {returncode}, no message"


def run_peer(code: str, env: dict | None = None, timeout: float = 1800, unset: tuple[str, ...] = ()) -> dict:
    """Run a peer's timing snippet in a fresh interpreter; it prints one JSON object last.
    env: variables set for it; unset: variables of this process it does not inherit."""
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    if proc.returncode != 0:
        return {"error": peer_failure(proc.returncode, proc.stderr)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rate_row(messages: int, seconds: float) -> dict:
    return {"messages": messages, "seconds": seconds,
            "msgs_per_s": messages / seconds if seconds else float("inf"),
            "ns_per_msg": seconds / messages * 1e9 if messages else float("nan")}
