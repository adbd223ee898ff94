"""One row of the comparison: what was measured for one path, and how it is summarised."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OK, NOT_RUN, FAILED = "ok", "not run", "failed"


def latency(samples_ns, kind: str, unit: str) -> dict:
    """p50 <= p99 <= p99.9 <= max (microseconds) and the sample count; kind is "paced" (the
    hand-off itself) or "queueing" (a burst: time spent waiting behind earlier data)."""
    v = np.asarray(samples_ns, np.float64)
    if len(v) == 0:
        return {"kind": kind, "samples": 0, "unit": unit}
    q = np.percentile(v, [50, 99, 99.9])
    return {"kind": kind, "samples": int(len(v)), "unit": unit, "p50_us": q[0] / 1e3, "p99_us": q[1] / 1e3,
            "p99.9_us": q[2] / 1e3, "max_us": float(v.max()) / 1e3}


@dataclass
class Row:
    key: str
    status: str = OK
    reason: str = ""                 # why not run / what failed
    transport: str = ""              # how the data travelled (veth between namespaces, loopback, memory)
    messages: int = 0
    packets: int = 0                 # datagrams, or ring records / file pieces for local paths
    seconds: float = 0.0             # flat-out window
    cpu_ns: int = 0                  # receiving thread's CPU time in the window
    cpu_messages: int = 0            # messages in that window, when fewer than ``messages``
    system_ns: int = 0               # of which in the kernel
    book_ns: float = 0.0             # time in the book engine, when the path measures it (see book_clock)
    book_clock: str = ""
    baseline_cpu_ns_per_msg: float = 0.0   # the in-process row's, set by run_compare
    syscalls: int | None = None      # counted by the kernel (perf) on the receiving thread
    syscalls_error: str = ""
    code_syscalls: int | None = None  # the code's own count of the calls it makes (cross-check)
    code_syscalls_what: str = ""
    voluntary: int = 0
    involuntary: int = 0
    latency: dict = field(default_factory=dict)       # "paced" / "queueing" -> latency()
    digest: str = ""
    books_equal: bool | None = None
    books_difference: str = ""
    counters: dict = field(default_factory=dict)      # the path's own counters (drops, polls, ...)
    samples: dict = field(default_factory=dict, repr=False)   # "paced"/"queueing" -> ns (not in JSON)

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def _cpu_m(self) -> int:
        return self.cpu_messages or self.messages

    @property
    def cpu_ns_per_msg(self) -> float | None:
        return self.cpu_ns / self._cpu_m if self._cpu_m and self.cpu_ns else None

    @property
    def handoff_ns_per_msg(self) -> float | None:
        """Receive-side CPU per message beyond the baseline's (the in-process row: the same
        messages into the same engine, no hand-off): what the path itself costs. Both are the
        receiving thread's CPU clock; noise can make it slightly negative."""
        if self.cpu_ns_per_msg is None or not self.baseline_cpu_ns_per_msg:
            return None
        return self.cpu_ns_per_msg - self.baseline_cpu_ns_per_msg

    @property
    def handoff_ns_per_packet(self) -> float | None:
        h = self.handoff_ns_per_msg
        return h * self.messages / self.packets if h is not None and self.packets else None

    @property
    def syscalls_per_msg(self) -> float | None:
        return self.syscalls / self.messages if self.syscalls is not None and self.messages else None

    @property
    def syscalls_per_packet(self) -> float | None:
        return self.syscalls / self.packets if self.syscalls is not None and self.packets else None

    @property
    def ctx_per_s(self) -> float | None:
        return (self.voluntary + self.involuntary) / self.seconds if self.seconds > 0 else None

    def to_dict(self, info=None) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "samples"}
        d.update(msgs_per_s=self.msgs_per_s, packets_per_s=self.packets_per_s, cpu_ns_per_msg=self.cpu_ns_per_msg,
                 book_ns_per_msg=self.book_ns / self.messages if self.messages and self.book_ns else None,
                 handoff_ns_per_msg=self.handoff_ns_per_msg, handoff_ns_per_packet=self.handoff_ns_per_packet,
                 kernel_share=self.system_ns / self.cpu_ns if self.cpu_ns else None,
                 syscalls_per_msg=self.syscalls_per_msg, syscalls_per_packet=self.syscalls_per_packet,
                 context_switches_per_s=self.ctx_per_s)
        if info is not None:
            d.update(title=info.title, family=info.family, copies_per_message=info.copies,
                     copy_steps=info.copy_steps(), kernel_crossings=info.kernel_crossings,
                     writes_memory=info.writes_memory, backpressure=info.backpressure, wakeup=info.wakeup,
                     privileges=info.privileges, portability=info.portability)
        return d
