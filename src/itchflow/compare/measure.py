"""What every row of the comparison measures the same way: the kernel's count of system calls
made by the receiving thread, its CPU time, its context switches.

System calls are counted by the kernel: ``perf stat -e raw_syscalls:sys_enter -t TID`` started
with its counters disabled and switched on and off through its control pipe, so that only the
measured window counts (the switch itself is two calls of the thread that flips it, when that
thread is the measured one). Where ``perf`` or the tracepoint is missing the counter says why,
and rows fall back to the code's own counters, labelled as such.

CPU time comes from the measured thread's own clock (``time.thread_time_ns``), read by that
thread at the start and the end of the window; context switches from
/proc/<pid>/task/<tid>/status (voluntary: it blocked; involuntary: it was preempted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

PERF_EVENT = "raw_syscalls:sys_enter"


@dataclass
class ThreadUsage:
    """A snapshot of one thread's counters (take two and subtract)."""
    wall_ns: int
    cpu_ns: int
    voluntary: int
    involuntary: int
    system_ns: int = 0       # of cpu_ns, in the kernel (getrusage RUSAGE_THREAD: tick-sampled, scaled)

    def __sub__(self, other: "ThreadUsage") -> "ThreadUsage":
        return ThreadUsage(self.wall_ns - other.wall_ns, self.cpu_ns - other.cpu_ns,
                           self.voluntary - other.voluntary, self.involuntary - other.involuntary,
                           self.system_ns - other.system_ns)


def context_switches(pid: int, tid: int) -> tuple[int, int]:
    """(voluntary, nonvoluntary) context switches of one thread so far; (0, 0) if unreadable."""
    vol = inv = 0
    try:
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    vol = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    inv = int(line.split()[1])
    except OSError:
        pass
    return vol, inv


def this_thread() -> ThreadUsage:
    """The calling thread's counters now (its CPU clock, its context switches)."""
    import resource

    vol, inv = context_switches(os.getpid(), threading.get_native_id())
    ru = resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))
    return ThreadUsage(time.monotonic_ns(), time.thread_time_ns(), vol, inv, int(ru.ru_stime * 1e9))


def steal_ns() -> int:
    """CPU time the hypervisor took from this guest so far, all CPUs (/proc/stat "steal")."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
    except (OSError, IndexError, ValueError):
        return 0


def perf_unavailable_reason() -> str | None:
    """None when ``perf stat -e raw_syscalls:sys_enter`` can count here, else why not."""
    exe = shutil.which("perf")
    if exe is None:
        return "perf is not installed (apt-get install linux-perf)"
    try:
        r = subprocess.run([exe, "stat", "-x,", "-e", PERF_EVENT, "true"], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"perf did not run: {e}"
    if r.returncode != 0 or "<not supported>" in r.stderr or "<not counted>" in r.stderr:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"perf cannot count {PERF_EVENT} here: {last}"
    return None


class SyscallCounter:
    """``perf stat`` on the given thread ids, counters off until ``enable()``.

    enable() and disable() return once perf has acknowledged (its control pipe); count()
    stops perf and returns the system calls entered while enabled. Always close() (or use as
    a context manager): perf is a child process and is ended here, by its pid.
    """

    def __init__(self, tids: list[int]):
        self.tids = list(tids)
        self.proc = None
        self.task_clock_ns: int | None = None
        self._early_err = ""   # perf's output, when it ended before count() asked for it
        self._ctl_w = self._ack_r = -1
        ctl_r, self._ctl_w = os.pipe()
        self._ack_r, ack_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [shutil.which("perf") or "perf", "stat", "-x,", "-D", "-1", "--control", f"fd:{ctl_r},{ack_w}",
                 "-e", f"{PERF_EVENT},task-clock", "-t", ",".join(str(t) for t in self.tids)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, pass_fds=(ctl_r, ack_w))
        finally:
            os.close(ctl_r)
            os.close(ack_w)

    def _send(self, what: bytes) -> None:
        os.write(self._ctl_w, what + b"\n")
        got = b""
        while b"ack" not in got:   # perf answers once it has done it
            chunk = os.read(self._ack_r, 64)
            if not chunk:
                err = ""
                if self.proc.poll() is not None:
                    self._early_err = self.proc.stderr.read() or ""   # (its counts, for count())
                    err = self._early_err.strip()[-300:]
                raise RuntimeError(f"perf ended before acknowledging {what.decode()}: {err}")
            got += chunk

    def enable(self) -> None:
        self._send(b"enable")

    def disable(self) -> None:
        try:
            self._send(b"disable")
        except (BrokenPipeError, RuntimeError):
            # perf stat ends by itself once every thread it watches has ended (the pipeline's
            # reader process, done with the stream before the books are): it stopped counting
            # then, and count() still reads its total. A perf that is still running is an error.
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                raise RuntimeError("perf stopped taking commands but did not end") from None
            if any(os.path.exists(f"/proc/{t}") for t in self.tids):
                raise

    def count(self) -> int:
        """Stop perf; the system calls counted while enabled (``task_clock_ns``: the threads'
        CPU time meanwhile, as perf measured it)."""
        import signal

        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self._close_fds()
        err = self._early_err + (err or "")
        found = None
        for line in err.splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[2] == PERF_EVENT:
                try:
                    found = int(parts[0])
                except ValueError:
                    raise RuntimeError(f"perf counted nothing: {line}") from None
            elif len(parts) > 2 and parts[2] == "task-clock":
                try:
                    self.task_clock_ns = int(float(parts[0]) * 1e6)   # msec
                except ValueError:
                    pass
        if found is None:
            raise RuntimeError(f"perf printed no count: {err.strip()[-300:]}")
        return found

    def _close_fds(self) -> None:
        for fd in (self._ctl_w, self._ack_r):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._ctl_w = self._ack_r = -1

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_fds()

    def __enter__(self) -> "SyscallCounter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Window:
    """One measured window of one thread: its counters and (when perf can) its system calls.

    Use from the measured thread itself: ``w = Window(counting); w.start(); ...; w.stop()``;
    or from another thread/process with ``start_for(pid, tid)`` and snapshots sent back.
    """

    def __init__(self, count_syscalls: bool):
        self.count_syscalls = count_syscalls
        self.counter: SyscallCounter | None = None
        self.before: ThreadUsage | None = None
        self.usage: ThreadUsage | None = None
        self.syscalls: int | None = None
        self.error: str | None = None

    def start(self) -> None:
        """Call in the measured thread: attaches perf to it and starts counting. The snapshot's
        /proc reads come before the counting starts, the clocks after: the window's count holds
        the work and the one call that switches perf on."""
        self.before = this_thread()
        if self.count_syscalls:
            self.counter = SyscallCounter([threading.get_native_id()])
            try:
                self.counter.enable()
            except (OSError, RuntimeError) as e:
                self.error = str(e)
                self.counter.close()
                self.counter = None
        self.before.cpu_ns, self.before.wall_ns = time.thread_time_ns(), time.monotonic_ns()

    def stop(self) -> None:
        """Call in the measured thread at the end of the window."""
        cpu, wall = time.thread_time_ns(), time.monotonic_ns()
        if self.counter is not None:
            try:
                self.counter.disable()
                self.syscalls = self.counter.count()
            except (OSError, RuntimeError) as e:
                self.error = str(e)
            finally:
                self.counter.close()
                self.counter = None
        after = this_thread()
        after.cpu_ns, after.wall_ns = cpu, wall
        self.usage = after - self.before

    def close(self) -> None:
        if self.counter is not None:
            self.counter.close()
            self.counter = None
