"""Shared-memory rings: layout descriptor, atomics, SPSC, broadcast, wait strategies.

Python API::

    ring = Ring.create("feed", 1 << 22, consumers=["book"])   # /dev/shm/itchflow.feed.ring
    w = ring.writer()                       # in the producer process
    w.write(b"...", type=1); w.write_batch(buf, offsets)
    rd = Ring.open("feed").reader("book")   # in a consumer process
    for payload in rd: ...                  # bytes, until the writer closes the ring
    batch = rd.read_batch()                 # zero-copy numpy views (blocking mode)

Compiled kernels for other Numba code (all take the ring as ``ring.words`` / ``ring.data`` and
the side's private state ``writer.ps`` / ``reader.cs``): ``itchflow.ring.producer`` (``claim``,
``commit``, ``claim_wait``, ``publish_batch``) and ``itchflow.ring.consumer`` (``poll``,
``poll_copy``, ``commit``, ``wait_poll``). They are compiled without the reference-counting
runtime (``_nrt=False``): call them from ``@njit(_nrt=False)`` loops for the full speed.
Module map: layout (the file format, as data), wait (strategies), producer and consumer
(kernels), errors, paths, file (``Ring``: create, open, validate, reclaim), slots (consumer
entries: names, validation), liveness (heartbeat and pid judgements, staleness), inspect
(snapshots), writer (``Writer``), reader (``Reader``, ``Batch``); api re-exports the old names.
Atomics, clocks and futexes are in ``itchflow.hw``; the benchmark in ``itchflow.bench.ring``.
"""

from itchflow.ring.errors import ConsumerDetached, ProducerGone, RingBusy, RingClosed, RingError, RingFormatError
from itchflow.ring.file import Ring
from itchflow.ring.paths import ring_path
from itchflow.ring.reader import Batch, Reader
from itchflow.ring.writer import Writer

__all__ = ["Batch", "ConsumerDetached", "ProducerGone", "Reader", "Ring", "RingBusy", "RingClosed", "RingError",
           "RingFormatError", "Writer", "ring_path"]
