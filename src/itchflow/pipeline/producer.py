"""The pipeline's producer process: reads the source into the ring, and dies with its parent.

The consumer process forks it. If the consumer is killed (SIGKILL: no cleanup runs), the
producer must not run on (for a live feed, forever): the kernel sends it SIGKILL when its
parent dies (``PR_SET_PDEATHSIG``), and since the parent may die before that is set, the
child then checks its parent is still the one that forked it, and keeps checking between
chunks (``ParentStop``, the source loops' stop signal). Ctrl-C goes to the whole foreground
process group: the child ignores SIGINT, the parent stops it through the same signal after
printing its report.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from itchflow.pipeline.sources import SourceSpec, produce

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if the parent ``parent`` is gone
    already (we were re-parented before the request took effect)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):   # not Linux: the parent check below still applies
        pass
    if os.getppid() != parent:
        os._exit(1)


class ParentStop:
    """A stop signal for the source loops (``is_set()``): set when the parent asks (an Event)
    or when the parent is gone (we were re-parented)."""

    def __init__(self, event, parent: int):
        self.event = event
        self.parent = parent

    def is_set(self) -> bool:
        return self.event.is_set() or os.getppid() != self.parent


def _counts(pub) -> dict:
    """What was published (nothing before the publisher existed)."""
    return {"messages": pub.messages if pub else 0, "records": pub.records if pub else 0,
            "bytes": pub.bytes if pub else 0}


def producer_main(ring_path: str, spec: SourceSpec, batch_bytes: int, cpu: int | None, wait: str, conn,
                  stop_event, parent: int) -> None:
    """Body of the forked producer: open the ring as its writer, publish the source, send the
    counters (or the error) to the parent, close the ring."""
    from itchflow.hw.affinity import pin
    from itchflow.pipeline.publish import BatchPublisher
    from itchflow.ring import Ring

    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent stops us with SIGTERM and cleans up itself; its own SIGTERM handler (``itchflow
    # run``), inherited through fork, would make us print its message and unwind instead.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    ring = writer = pub = None
    t0 = time.perf_counter()
    try:   # opening the ring too: a failure there is reported like any other, not a traceback
        pin(cpu)
        ring = Ring.open(ring_path)
        writer = ring.writer(wait=wait)
        pub = BatchPublisher(writer, batch_bytes)
        stop = ParentStop(stop_event, parent)
        stats = produce(spec, pub, stop)
        result = ("ok", {**_counts(pub), "seconds": time.perf_counter() - t0, "stopped": stop.is_set(), **stats})
    except BaseException as e:   # the consumer reports it after draining what was published
        result = ("error", f"{type(e).__name__}: {e}", _counts(pub))
    conn.send(result)            # before close: the consumer sees it no later than the end
    if writer is not None:
        writer.close()
    if ring is not None:
        ring.close()
